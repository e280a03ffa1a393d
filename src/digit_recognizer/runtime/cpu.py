"""What the CPU is and can do, read from /proc/cpuinfo at run time (machines differ: Xeons
and EPYCs, with or without AVX-512), never assumed."""

from __future__ import annotations

import platform
from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")


def _cpuinfo_field(key: str, cpuinfo: Path) -> str | None:
    try:
        text = cpuinfo.read_text()
    except OSError:
        return None
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if name.strip() == key:
            return value.strip()
    return None


def cpu_flags(cpuinfo: Path = CPUINFO) -> frozenset[str]:
    """The CPU's feature flags (Linux); empty where /proc/cpuinfo does not exist."""
    return frozenset((_cpuinfo_field("flags", cpuinfo) or "").split())


def cpu_model(cpuinfo: Path = CPUINFO) -> str:
    """The CPU's name and the vector extensions its kernels use, for reports beside timings."""
    name = _cpuinfo_field("model name", cpuinfo) or platform.processor() or "unknown CPU"
    flags = cpu_flags(cpuinfo)
    vectors = "AVX-512" if "avx512f" in flags else "AVX2, no AVX-512" if "avx2" in flags else ""
    return f"{name} ({vectors})" if vectors else name
