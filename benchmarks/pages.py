"""docs/benchmarks.md, generated: one row per benchmark from its report in reports/benchmarks/.

    python -m benchmarks.pages          # after any benchmark wrote its report

Every benchmark writes reports/benchmarks/NAME.json with the CPU it ran on; this page lists
each one's headline, the CPU and where the details are, and says which have no report yet.
Nothing on the page is typed by hand: a test compares it with this rendering.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from digit_recognizer.files import write_text

Report = dict[str, Any]


def _load(report: Report) -> str:
    sustained = report["sustained"]
    above = sum(
        sum(step["not_200"].values())
        for step in report["steps"]
        if step["users"] >= report["concurrency_limit"]
    )
    return (
        f"{sustained['requests_per_s']:.0f} requests/s of mixed traffic with p99 "
        f"{sustained['p99_ms']:.0f} ms ({sustained['users']} users); {above:,} answers of 503 "
        f"at or above the limit of {report['concurrency_limit']}; resident memory "
        f"{report['resident_mb']['growth']:+.1%}"
    )


def _hostile(report: Report) -> str:
    bombs = report["under_bombs"]["bombs"].values()
    slowest = max(bomb["max_seconds"] for bomb in bombs)
    generated = report["generated_pictures"]
    return (
        f"every bomb refused within {slowest * 1000:.0f} ms; {len(generated['server_errors'])} "
        f"server errors in {generated['examples']:,} generated pictures"
    )


def _monitoring(report: Report) -> str:
    drift = report["drift"]
    return (
        f"{drift['false_alarms']} false alarms in 10 windows; {drift['flagged']} of "
        f"{len(drift['shifted_windows'])} shifted windows flagged; the log adds "
        f"{report['log_cost']['p50_added_ms']:+.2f} ms to a one-row answer"
    )


def _feedback_loop(report: Report) -> str:
    seeds = report["seeds"]
    before = statistics.mean(item["held_out_accuracy_before"] for item in seeds)
    after = statistics.mean(item["held_out_accuracy_after"] for item in seeds)
    return (
        f"other writers' held-out digits {before:.2%} before, {after:.2%} after the loop "
        f"(mean of {len(seeds)} seed(s))"
    )


def _serve_latency(report: Report) -> str:
    json_rows = report["forms"]["json"]
    return (
        f"one JSON row p50 {json_rows['single'][0]['p50_ms']:.1f} ms at concurrency 1; "
        f"batches of 256: {json_rows['batch_images_per_s']:,.0f} images/s"
    )


def _page_latency(report: Report) -> str:
    return (
        f"answer {report['p50_ms']:.1f} ms (p50) after a stroke ends, {report['strokes']} strokes"
    )


def _team_tls(report: Report) -> str:
    return (
        f"HTTPS {report['median_ms']['https']:.1f} ms against HTTP "
        f"{report['median_ms']['http']:.1f} ms per request: {report['ratio']:.2f}x"
    )


def _robustness_readers(report: Report) -> str:
    return "; ".join(
        f"{name}: robustness set {scores['robustness set']['after']:.2%} read the MNIST way "
        f"({scores['robustness set']['before']:.1%} before), other writers "
        f"{scores['other writers']['after']:.2%}"
        for name, scores in report["accuracy"].items()
    )


def _time_to_accuracy(report: Report) -> str:
    ours, theirs = report["results"]
    return (
        f"to {report['target']:.1%}: ours {ours['seconds_to_target']} s, the Keras example "
        f"{theirs['seconds_to_target']} s of training (None: not reached), medians of "
        f"{report['runs']} races; {report['speedup_median']}x (median ratio)"
    )


def _test_times(report: Report) -> str:
    return "; ".join(
        f"`make {target}` median {times['median_seconds']:.0f} s of {len(times['seconds'])} runs "
        f"({', '.join(f'{value:.0f}' for value in times['seconds'])} s; {times['cpu']})"
        for target, times in sorted(report["targets"].items())
    )


@dataclass(frozen=True)
class Benchmark:
    name: str
    measures: str
    details: str  # the page with its table, or this one
    headline: Callable[[Report], str]


BENCHMARKS = [
    Benchmark("load", "mixed traffic at rising concurrency; a worker killed", "serving.md", _load),
    Benchmark("hostile", "bombs, generated pictures, `/ping` meanwhile", "serving.md", _hostile),
    Benchmark("serve_latency", "one image and batches, JSON and CSV", "serving.md", _serve_latency),
    Benchmark("page_latency", "the drawing page in chromium", "serving.md", _page_latency),
    Benchmark("monitoring", "drift alarms, the log's cost", "monitoring.md", _monitoring),
    Benchmark(
        "feedback_loop", "the loop on another writers' digits", "monitoring.md", _feedback_loop
    ),
    Benchmark(
        "robustness_readers", "accuracy per kind of picture", "serving.md", _robustness_readers
    ),
    Benchmark(
        "time_to_accuracy", "our CNN against the Keras example", "decisions.md", _time_to_accuracy
    ),
    Benchmark("team_tls", "what TLS costs the team server", "team.md", _team_tls),
    Benchmark(
        "test_times", "`make check` and `make test` from a fresh clone", "testing.md", _test_times
    ),
]

HEADER = """# Benchmarks

<!-- generated by `python -m benchmarks.pages` from reports/benchmarks/*.json; edits are lost -->

Each benchmark is a module in `benchmarks/`, run from the project root after `make run`
(`python -m benchmarks.NAME`, `--help` for its options). It writes
`reports/benchmarks/NAME.json` with the CPU it ran on; this page is generated from those
reports. Times are for the named CPU only: on another machine, rerun the benchmark (and a
reference beside it) rather than compare across machines. Why the settings are what they are:
[Decisions](decisions.md).

| benchmark | what it measures | CPU (cores) | headline | details |
| --- | --- | --- | --- | --- |
"""


def row(benchmark: Benchmark, reports: Path) -> str:
    path = reports / f"{benchmark.name}.json"
    command = f"`python -m benchmarks.{benchmark.name}`"
    if not path.exists():
        return (
            f"| {command} | {benchmark.measures} | | no report yet | [page]({benchmark.details}) |"
        )
    report = json.loads(path.read_text(encoding="utf-8"))
    return (
        f"| {command} | {benchmark.measures} | {report['cpu']} ({report['cores']}) | "
        f"{benchmark.headline(report)} | [page]({benchmark.details}) |"
    )


def rendered(root: Path) -> str:
    reports = root / "reports" / "benchmarks"
    return HEADER + "\n".join(row(benchmark, reports) for benchmark in BENCHMARKS) + "\n"


def main() -> None:
    root = Path.cwd()
    write_text(root / "docs" / "benchmarks.md", rendered(root))
    print("written docs/benchmarks.md")


if __name__ == "__main__":
    main()
