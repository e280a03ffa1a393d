"""Which floating-point precision training computes in, chosen from what the CPU can do.

bfloat16 pays only where the CPU multiplies bfloat16 matrices natively (Intel AMX). Measured on
a 2-core Xeon with AVX-512 bf16 but no AMX, ``mixed_bfloat16`` trained the default CNN at 0.78x
the images per second of float32 (docs/decisions.md, "training throughput"), so ``auto``
takes bfloat16 only where AMX is present. Variables stay float32 either way, and the saved
model is always float32: serving and evaluation do not depend on the training machine.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from digit_recognizer.runtime.cpu import cpu_flags

PrecisionSetting = Literal["auto", "float32", "bfloat16"]
AMX_FLAGS = frozenset({"amx_bf16", "amx_tile"})


@dataclass(frozen=True)
class PrecisionChoice:
    policy: Literal["float32", "mixed_bfloat16"]  # a Keras dtype policy
    reason: str  # logged beside the policy: why this one on this machine


def choose_precision(setting: PrecisionSetting, flags: frozenset[str]) -> PrecisionChoice:
    if setting == "float32":
        return PrecisionChoice("float32", "compute.precision: float32")
    if setting == "bfloat16":
        return PrecisionChoice("mixed_bfloat16", "compute.precision: bfloat16")
    if flags >= AMX_FLAGS:
        return PrecisionChoice("mixed_bfloat16", "auto: the CPU has AMX (amx_bf16, amx_tile)")
    has_avx512_bf16 = "avx512_bf16" in flags
    return PrecisionChoice(
        "float32",
        "auto: no AMX on this CPU"
        + ("; AVX-512 bf16 alone trains slower than float32" if has_avx512_bf16 else ""),
    )


def announce_compute(
    setting: PrecisionSetting, stage: str
) -> tuple[PrecisionChoice, dict[str, str]]:
    """The precision for ``setting`` on this CPU, printed as ``stage`` starts; with the params
    that record it and the thread budget in the stage's MLflow run."""
    from digit_recognizer.runtime.threads import threads_in_use

    choice = choose_precision(setting, cpu_flags())
    print(f"{stage}: {choice.policy} ({choice.reason})", flush=True)
    logged = {
        "precision": choice.policy,
        "precision_reason": choice.reason,
        "threads": str(threads_in_use()),
    }
    return choice, logged


def use_precision(choice: PrecisionChoice) -> None:
    """Make ``choice`` the policy of every model built from now on in this process."""
    import keras

    keras.mixed_precision.set_global_policy(choice.policy)
