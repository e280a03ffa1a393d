"""What users read of the measurements is what a command wrote: the docs' tables are generated
from reports/benchmarks/*.json (docs/benchmarks.md lists them all), the README's results and
docs/results.md from reports/study.json (before any study, the report stage's summary), the
README's serving line from the serving benchmarks; never typed."""

from __future__ import annotations

import json
from types import ModuleType

import pytest

from benchmarks import (
    feedback_loop,
    hostile,
    load,
    monitoring,
    robustness_readers,
    time_to_accuracy,
)
from benchmarks import pages as benchmark_pages
from digit_recognizer.config import load_params
from digit_recognizer.study.commands import README, pages
from digit_recognizer.study.pages import README_BEGIN, README_END
from tests.helpers.project import REPOSITORY


def block(page: str, begin: str, end: str) -> str:
    text = (REPOSITORY / page).read_text(encoding="utf-8")
    return text[text.index(begin) : text.index(end) + len(end)]


def report(name: str) -> dict[str, object]:
    return dict(json.loads((REPOSITORY / "reports" / "benchmarks" / f"{name}.json").read_text()))


@pytest.mark.parametrize(
    ("benchmark", "page"),
    [
        (monitoring, "docs/monitoring.md"),
        (feedback_loop, "docs/monitoring.md"),
        (hostile, "docs/serving.md"),
        (load, "docs/serving.md"),
        (robustness_readers, "docs/serving.md"),
        (time_to_accuracy, "docs/decisions.md"),
    ],
)
def test_each_benchmark_s_table_shows_its_report(benchmark: ModuleType, page: str) -> None:
    name = benchmark.__name__.rsplit(".", 1)[1]
    assert block(page, benchmark.BEGIN, benchmark.END) == benchmark.rendered(report(name)), (
        f"{page} differs from reports/benchmarks/{name}.json: run "
        f"python -m benchmarks.{name} --render"
    )


def test_the_benchmarks_page_lists_every_report() -> None:
    shown = (REPOSITORY / "docs" / "benchmarks.md").read_text(encoding="utf-8")
    assert shown == benchmark_pages.rendered(REPOSITORY), (
        "docs/benchmarks.md differs from reports/benchmarks/: run python -m benchmarks.pages"
    )
    listed = {benchmark.name for benchmark in benchmark_pages.BENCHMARKS}
    reports = {path.stem for path in (REPOSITORY / "reports" / "benchmarks").glob("*.json")}
    assert reports <= listed, f"reports no row shows: {sorted(reports - listed)}"


def test_the_readme_s_measured_lines_are_the_benchmarks() -> None:
    shown = block("README.md", load.README_BEGIN, load.README_END)
    assert shown == load.readme_lines(report("load"), report("hostile")), (
        "README.md's serving line differs from the reports: run python -m benchmarks.load --render"
    )
    shown = block("README.md", feedback_loop.README_BEGIN, feedback_loop.README_END)
    assert shown == feedback_loop.readme_line(report("feedback_loop")), (
        "README.md's loop line differs from the report: "
        "run python -m benchmarks.feedback_loop --render"
    )


def test_the_results_users_read_are_generated_from_the_reports() -> None:
    params = load_params(REPOSITORY / "params.yaml")
    for path, content in pages(params, REPOSITORY).items():
        if path == README:
            shown = block("README.md", README_BEGIN, README_END)
        else:
            shown = (REPOSITORY / path).read_text(encoding="utf-8")
        assert shown == content, (
            f"{path} differs from reports/study.json (or, before any study, reports/summary.md): "
            "run digits study --render"
        )
