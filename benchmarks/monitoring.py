"""The loop after deployment, measured on a project where `make run` has run (a champion,
prepared/); servers on 127.0.0.1 only, every loop bounded in count.

    python -m benchmarks.monitoring            # from the project root

1. Drift. Windows of 500 answers compared with the evaluation split as the champion sees it,
   by `digits monitor`'s own statistics: 10 in-distribution windows (test digits as Kaggle
   rows, and as canvas drawings read by the picture reader, alternately) must raise no alert;
   windows in which 30 % of the pictures come from another population (inverted photos; other
   writers' digits photographed on paper) must. The champion answers every picture.
2. The log's cost. Two `digits serve` on the champion, log on and log off, one worker each:
   single Kaggle rows (round-trip p50) and batches of 256 (images/s), alternated in rounds.
3. Nothing lost. 10,000 rows answered, then SIGTERM at once: the log must hold 10,000 records;
   and with two workers under 8 concurrent clients, exactly one record per answer.
4. `digits monitor` over 100,000 records, as a whole command.

Writes reports/benchmarks/monitoring.json (the CPU named), docs/figures/monitor-drift.png, and
the table in docs/monitoring.md (`--render` rewrites only the table, from the report).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from benchmarks.common import DIGITS, Server
from benchmarks.robustness_readers import other_writers
from digit_recognizer import tracking
from digit_recognizer.config import Params, load_params
from digit_recognizer.data.kaggle_csv import PIXEL_COLUMNS
from digit_recognizer.data.robustness import png_bytes, read_rendered, render
from digit_recognizer.data.splits import evaluation_split
from digit_recognizer.files import replace_block, write_json
from digit_recognizer.monitoring.commands import compare, drawn_as_pictures, reference_as_served
from digit_recognizer.monitoring.log import (
    AnswerBatch,
    LoggedWindow,
    PredictionLog,
    new_prediction_ids,
)
from digit_recognizer.monitoring.report import draw_chart
from digit_recognizer.runtime.cpu import cpu_model

WINDOW = 500
KIND_OF_FORM = {"rows": "json", "canvas": "picture"}  # the log's kind of each form of request
SHARE = 0.3


def canvas(row: npt.NDArray[np.uint8], rng: np.random.Generator) -> npt.NDArray[np.uint8]:
    """A digit as the page sends it: dark ink anywhere on a light canvas of any size, at
    30-80 % of its height (not how the reference draws it: plain, one size), read back."""
    drawn = 255 - render(row, "offcentre", rng)
    return read_rendered(png_bytes(drawn), "canvas")


def window_of(
    pixels: npt.NDArray[np.uint8], probabilities: npt.NDArray[np.float32], kinds: list[str]
) -> Any:
    count = len(pixels)
    return LoggedWindow(
        prediction_ids=[str(index) for index in range(count)],
        created_at=np.arange(count, dtype=np.float64),
        versions=["champion"] * count,
        input_kinds=kinds,
        labels=probabilities.argmax(axis=1).astype(np.int64),
        probabilities=probabilities,
        latency_ms=np.ones(count),
        pixels=pixels,
        pixel_rows=np.arange(count),
        corrected={},
    )


def drift(params: Params, root: Path, figures: Path) -> dict[str, Any]:
    from digit_recognizer.models.embedding import EmbeddingModel

    store = tracking.Store.for_project(params.mlflow, root)
    registry = tracking.Registry(store, params.mlflow.registered_model_name)
    champion = registry.alias(tracking.CHAMPION)
    assert champion is not None, "run make run first: no champion"
    with tempfile.TemporaryDirectory() as folder:
        network = EmbeddingModel(
            tracking.download_keras_model(registry.name, champion, store, Path(folder))
        )
    _, evaluation = evaluation_split(root / params.paths.prepared_dir)
    rng = np.random.default_rng(params.seed)
    reference_rows = rng.choice(len(evaluation), params.monitoring.reference_rows, replace=False)
    reference_pixels = evaluation.images[reference_rows]
    unseen = np.setdiff1d(np.arange(len(evaluation)), reference_rows)
    as_pictures = drawn_as_pictures(reference_pixels, root / params.monitoring.log_dir)

    def judged(pixels: npt.NDArray[np.uint8], kinds: list[str]) -> Any:
        """As digits monitor judges a window: the reference through the window's doors."""
        window = window_of(pixels, network(pixels)[1], kinds)
        reference = reference_as_served(
            network, reference_pixels, as_pictures, window.picture_share(), champion, params.seed
        )
        return compare(window, reference, lambda p: network(p)[0], params)

    quiet = []
    for number in range(10):
        rows = evaluation.images[rng.choice(unseen, WINDOW, replace=False)]
        form = "rows" if number % 2 == 0 else "canvas"
        pixels = rows if form == "rows" else np.stack([canvas(row, rng) for row in rows])
        report, _ = judged(pixels, [KIND_OF_FORM[form]] * WINDOW)
        quiet.append({**report.metrics(), "form": form, "alerted": [m.name for m in report.alerts]})
        print(f"drift: in-distribution window {number + 1} ({form}): {report.summary()}")
    writers, _ = other_writers()
    count = round(WINDOW * SHARE)
    # each population: where its digits come from, and how they are photographed
    populations = {
        "inverted photos": (evaluation.images[unseen], "inverted"),
        "other writers on paper": (writers, "paper"),
    }
    shifted = []
    for name, (source, kind) in populations.items():
        base = evaluation.images[rng.choice(unseen, WINDOW - count, replace=False)]
        chosen = source[rng.choice(len(source), count, replace=False)]
        foreign = np.stack(
            [read_rendered(png_bytes(render(row, kind, rng)), kind) for row in chosen]
        )
        order = rng.permutation(WINDOW)
        pixels = np.concatenate([base, foreign])[order]
        kinds = np.array(["json"] * len(base) + ["picture"] * len(foreign))[order].tolist()
        report, distributions = judged(pixels, kinds)
        shifted.append(
            {**report.metrics(), "population": name, "alerted": [m.name for m in report.alerts]}
        )
        print(f"drift: 30 % {name}: {report.summary()}")
        if name == "other writers on paper":
            draw_chart(report, distributions, figures / "monitor-drift.png")
    return {
        "champion_version": champion,
        "window": WINDOW,
        "foreign_share": SHARE,
        "in_distribution_windows": quiet,
        "false_alarms": sum(bool(item["alerted"]) for item in quiet),
        "shifted_windows": shifted,
        "flagged": sum(bool(item["alerted"]) for item in shifted),
    }


def payload(rows: npt.NDArray[np.uint8]) -> bytes:
    return json.dumps(
        {"dataframe_split": {"columns": list(PIXEL_COLUMNS), "data": rows.tolist()}}
    ).encode()


def post(url: str, body: bytes) -> float:
    request = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=120) as response:
        response.read()
    return time.perf_counter() - started


def log_cost(root: Path, folder: Path, images: npt.NDArray[np.uint8]) -> dict[str, Any]:
    with_log, without_log = Server(root, folder, "on"), Server(root, folder, "off", enabled=False)
    singles = [payload(images[index : index + 1]) for index in range(200)]
    batches = [payload(images[start : start + 256]) for start in range(0, 256 * 8, 256)]
    rounds: dict[str, dict[str, list[float]]] = {
        "on": {"p50_ms": [], "images_per_s": []},
        "off": {"p50_ms": [], "images_per_s": []},
    }
    try:
        for server in (with_log, without_log):  # warm-up
            for body in singles[:20]:
                post(server.url, body)
        for _ in range(7):
            for name, server in (("on", with_log), ("off", without_log)):
                seconds = [post(server.url, body) for body in singles]
                rounds[name]["p50_ms"].append(statistics.median(seconds) * 1000)
                elapsed = sum(post(server.url, body) for body in batches)
                rounds[name]["images_per_s"].append(256 * len(batches) / elapsed)
    finally:
        with_log.stop()
        without_log.stop()
    on, off = rounds["on"], rounds["off"]
    result = {
        "rounds": 7,
        "p50_ms_log_on": statistics.median(on["p50_ms"]),
        "p50_ms_log_off": statistics.median(off["p50_ms"]),
        "p50_added_ms": statistics.median(
            [a - b for a, b in zip(on["p50_ms"], off["p50_ms"], strict=True)]
        ),
        "batch_throughput_ratio": statistics.median(
            [a / b for a, b in zip(on["images_per_s"], off["images_per_s"], strict=True)]
        ),
        "per_round": rounds,
    }
    print(
        f"log cost: p50 {result['p50_ms_log_on']:.2f} ms on, {result['p50_ms_log_off']:.2f} ms "
        f"off ({result['p50_added_ms']:+.2f} ms); batch throughput "
        f"{result['batch_throughput_ratio']:.1%} of log off (medians of 7 alternated rounds)"
    )
    return result


def nothing_lost(root: Path, folder: Path, images: npt.NDArray[np.uint8]) -> dict[str, Any]:
    server = Server(root, folder, "sigterm", flush_seconds=30.0, batch_size=100_000)
    body = payload(images[:250])
    try:
        for _ in range(40):
            post(server.url, body)
    finally:
        server.stop()
    across_sigterm = server.records()
    concurrent = Server(root, folder, "concurrent", workers=2)
    singles = [payload(images[index : index + 1]) for index in range(2_000)]
    try:
        with ThreadPoolExecutor(8) as pool:
            answered = len(list(pool.map(lambda body: post(concurrent.url, body), singles)))
    finally:
        concurrent.stop()
    result = {
        "sent_before_sigterm": 10_000,
        "kept_across_sigterm": across_sigterm,
        "answered_two_workers": answered,
        "records_two_workers": concurrent.records(),
    }
    print(
        f"nothing lost: {across_sigterm} of 10,000 records kept across SIGTERM; "
        f"{result['records_two_workers']} records for {answered} answers (2 workers, 8 clients)"
    )
    return result


def monitor_time(root: Path, folder: Path, images: npt.NDArray[np.uint8]) -> dict[str, Any]:
    url = f"sqlite:///{folder / 'large.db'}"
    log = PredictionLog(url)
    log.create_tables()
    rng = np.random.default_rng(0)
    now = time.time()
    for start in range(0, 100_000, 5_000):
        chosen = rng.integers(0, len(images), 5_000)
        probabilities = rng.dirichlet(np.ones(10) * 0.1, 5_000).astype(np.float32)
        log.insert(
            [
                AnswerBatch(
                    new_prediction_ids(5_000),
                    now - 100_000 + start,
                    "1",
                    "json",
                    probabilities,
                    images[chosen],
                    1.0,
                )
            ]
        )
    seconds = []
    for _ in range(3):
        started = time.perf_counter()
        subprocess.run(
            [*DIGITS, "monitor", "--last", "100000", "--output", str(folder / "report")],
            cwd=root,
            env={**os.environ, "DIGITS_PREDICTION_LOG_URL": url},
            capture_output=True,
            check=False,
        )
        seconds.append(time.perf_counter() - started)
    result = {"records": log.count(), "runs": 3, "median_seconds": statistics.median(seconds)}
    records, median = result["records"], result["median_seconds"]
    print(f"monitor over {records:,} records: {median:.1f} s (median of 3)")
    return result


BEGIN = (
    "<!-- benchmarks/monitoring: generated by `python -m benchmarks.monitoring`; do not edit -->"
)
END = "<!-- end benchmarks/monitoring -->"


def rendered(results: dict[str, Any]) -> str:
    """The docs' table of what was measured, from reports/benchmarks/monitoring.json."""
    drift_results, cost = results["drift"], results["log_cost"]
    lost, monitor = results["nothing_lost"], results["monitor"]
    shifted = "; ".join(
        f"{item['population']}: {', '.join(item['alerted']) or 'not flagged'}"
        for item in drift_results["shifted_windows"]
    )
    rows = [
        (
            "false alarms, 10 in-distribution windows of 500 (rows, canvas)",
            f"{drift_results['false_alarms']} of 10",
        ),
        (
            f"windows of 500 with {drift_results['foreign_share']:.0%} another population flagged",
            f"{drift_results['flagged']} of {len(drift_results['shifted_windows'])} ({shifted})",
        ),
        (
            "serving p50, one row, log on / off, medians of 7 alternated rounds "
            "(added: the median of the rounds' differences)",
            f"{cost['p50_ms_log_on']:.2f} / {cost['p50_ms_log_off']:.2f} ms "
            f"({cost['p50_added_ms']:+.2f} ms)",
        ),
        (
            "batch throughput with the log, against without (batches of 256)",
            f"{cost['batch_throughput_ratio']:.1%}",
        ),
        (
            "records kept of 10,000 answered right before SIGTERM",
            f"{lost['kept_across_sigterm']:,}",
        ),
        (
            "records for answers, 2 workers, 8 concurrent clients (SQLite)",
            f"{lost['records_two_workers']:,} for {lost['answered_two_workers']:,}",
        ),
        (
            f"`digits monitor` over {monitor['records']:,} records (whole command, median of 3)",
            f"{monitor['median_seconds']:.1f} s",
        ),
    ]
    table = "\n".join(f"| {what} | {value} |" for what, value in rows)
    return (
        f"{BEGIN}\nOn {results['cpu']} ({results['cores']} cores), champion version "
        f"{drift_results['champion_version']} of a fresh clone's `make run`:\n\n"
        f"| what | measured |\n| --- | --- |\n{table}\n\n"
        "![the monitor's chart of the window with other writers' digits]"
        "(figures/monitor-drift.png)\n"
        f"{END}"
    )


def write_docs(results: dict[str, Any], page: Path) -> None:
    replace_block(page, BEGIN, END, rendered(results))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--render", action="store_true", help="only rewrite docs/monitoring.md from the report"
    )
    parser.add_argument(
        "--drift-only", action="store_true", help="measure drift again, keep the rest of the report"
    )
    arguments = parser.parse_args()
    root = Path.cwd()
    output = root / "reports" / "benchmarks" / "monitoring.json"
    page = root / "docs" / "monitoring.md"
    if arguments.render:
        write_docs(json.loads(output.read_text()), page)
        return
    params = load_params(root / "params.yaml")
    figures = root / "docs" / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    _, evaluation = evaluation_split(root / params.paths.prepared_dir)
    results: dict[str, Any] = {"cpu": cpu_model(), "cores": os.cpu_count()}
    if arguments.drift_only:
        results = {**json.loads(output.read_text()), **results}
    results["drift"] = drift(params, root, figures)
    if not arguments.drift_only:
        with tempfile.TemporaryDirectory(prefix="digits-monitoring-bench-") as name:
            folder = Path(name)
            results["log_cost"] = log_cost(root, folder, evaluation.images)
            results["nothing_lost"] = nothing_lost(root, folder, evaluation.images)
            results["monitor"] = monitor_time(root, folder, evaluation.images)
    write_json(output, results)
    write_docs(results, page)
    print(f"written {output} and {page}")


if __name__ == "__main__":
    main()
