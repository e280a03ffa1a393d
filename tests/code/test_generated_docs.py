"""What users read of the measurements is what a command wrote: docs/monitoring.md's table
is generated from reports/benchmarks/monitoring.json, the README's results are the report
stage's table; never typed."""

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


def test_the_readme_results_are_the_report_stage_s_table() -> None:
    readme = (REPOSITORY / "README.md").read_text(encoding="utf-8")
    summary = (REPOSITORY / "reports" / "summary.md").read_text(encoding="utf-8")
    shown = readme[readme.index("<!-- results:") : readme.index("<!-- end results -->")]
    table = [line for line in summary.splitlines() if line.startswith("| ")]
    assert table and [line for line in shown.splitlines() if line.startswith("| ")] == table, (
        "README.md's results differ from reports/summary.md (the report stage's): copy its table"
    )
