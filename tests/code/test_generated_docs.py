"""What users read of the measurements is what a command wrote: the docs' tables are generated
from reports/benchmarks/*.json, the README's results are the report stage's table and its
serving line the serving benchmarks'; never typed."""

from __future__ import annotations

import json
from types import ModuleType

import pytest

from benchmarks import hostile, load, monitoring
from tests.helpers.project import REPOSITORY


def block(page: str, begin: str, end: str) -> str:
    text = (REPOSITORY / page).read_text(encoding="utf-8")
    return text[text.index(begin) : text.index(end) + len(end)]


def report(name: str) -> dict[str, object]:
    return dict(json.loads((REPOSITORY / "reports" / "benchmarks" / f"{name}.json").read_text()))


@pytest.mark.parametrize(
    ("benchmark", "page"),
    [(monitoring, "docs/monitoring.md"), (hostile, "docs/serving.md"), (load, "docs/serving.md")],
)
def test_each_benchmark_s_table_shows_its_report(benchmark: ModuleType, page: str) -> None:
    name = benchmark.__name__.rsplit(".", 1)[1]
    assert block(page, benchmark.BEGIN, benchmark.END) == benchmark.rendered(report(name)), (
        f"{page} differs from reports/benchmarks/{name}.json: run "
        f"python -m benchmarks.{name} --render"
    )


def test_the_readme_s_serving_line_is_the_serving_benchmarks() -> None:
    shown = block("README.md", load.README_BEGIN, load.README_END)
    assert shown == load.readme_lines(report("load"), report("hostile")), (
        "README.md's serving line differs from the reports: run python -m benchmarks.load --render"
    )


def test_the_readme_results_are_the_report_stage_s_table() -> None:
    readme = (REPOSITORY / "README.md").read_text(encoding="utf-8")
    summary = (REPOSITORY / "reports" / "summary.md").read_text(encoding="utf-8")
    shown = readme[readme.index("<!-- results:") : readme.index("<!-- end results -->")]
    table = [line for line in summary.splitlines() if line.startswith("| ")]
    assert table and [line for line in shown.splitlines() if line.startswith("| ")] == table, (
        "README.md's results differ from reports/summary.md (the report stage's): copy its table"
    )
