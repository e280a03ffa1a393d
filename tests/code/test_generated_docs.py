"""What users read of the measurements is what the benchmark wrote: docs/monitoring.md's table
is generated from reports/benchmarks/monitoring.json, never typed."""

from __future__ import annotations

import json

from benchmarks.monitoring import BEGIN, END, rendered
from tests.conftest import REPOSITORY


def test_the_monitoring_page_shows_the_report_s_numbers() -> None:
    page = (REPOSITORY / "docs" / "monitoring.md").read_text(encoding="utf-8")
    report = json.loads((REPOSITORY / "reports/benchmarks/monitoring.json").read_text())
    shown = page[page.index(BEGIN) : page.index(END) + len(END)]
    assert shown == rendered(report), (
        "docs/monitoring.md differs from reports/benchmarks/monitoring.json: run "
        "python -m benchmarks.monitoring --render"
    )
