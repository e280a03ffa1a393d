"""Latency and throughput of a running `digits serve` (loopback only, bounded in count).

    python -m benchmarks.serve_latency --url http://127.0.0.1:5001/invocations

For JSON (`dataframe_split` with the Kaggle columns) and CSV (Kaggle header) bodies: single
images at concurrency 1 and 8 (p50/p99 of the round trip) and batches of 256 (images/second).
Rows come from prepared/test.npz, so the payloads are real digits. Writes
reports/benchmarks/serve_latency.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import write_report

COLUMNS = [f"pixel{index}" for index in range(784)]


def body(rows: np.ndarray, form: str) -> tuple[bytes, str]:
    if form == "csv":
        lines = [",".join(COLUMNS), *(",".join(map(str, row)) for row in rows.tolist())]
        return ("\n".join(lines) + "\n").encode(), "text/csv"
    split = {"dataframe_split": {"columns": COLUMNS, "data": rows.tolist()}}
    return json.dumps(split).encode(), "application/json"


def post(url: str, payload: tuple[bytes, str]) -> float:
    request = urllib.request.Request(url, payload[0], {"Content-Type": payload[1]})
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=60) as response:
        response.read()
    return time.perf_counter() - started


def percentiles(seconds: list[float]) -> tuple[float, float]:
    ordered = sorted(value * 1000 for value in seconds)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", default="http://127.0.0.1:5001/invocations")
    parser.add_argument("--single", type=int, default=400, help="single-image requests per case")
    parser.add_argument("--batches", type=int, default=20, help="requests of 256 images per form")
    arguments = parser.parse_args()
    with np.load(Path("prepared/test.npz")) as arrays:
        images = arrays["images"].astype(np.int64)
    forms: dict[str, dict[str, Any]] = {}
    for form in ("json", "csv"):
        forms[form] = {"single": []}
        singles = [body(images[i % len(images)][None], form) for i in range(arguments.single)]
        for payload in singles[:20]:  # warm-up
            post(arguments.url, payload)
        for concurrency in (1, 8):
            started = time.perf_counter()
            with ThreadPoolExecutor(concurrency) as pool:
                seconds = list(pool.map(lambda payload: post(arguments.url, payload), singles))
            elapsed = time.perf_counter() - started
            p50, p99 = percentiles(seconds)
            forms[form]["single"].append(
                {
                    "concurrency": concurrency,
                    "p50_ms": round(p50, 2),
                    "p99_ms": round(p99, 2),
                    "requests_per_s": round(len(singles) / elapsed, 1),
                    "requests": len(singles),
                }
            )
            print(
                f"{form} single image, concurrency {concurrency}: p50 {p50:.1f} ms, "
                f"p99 {p99:.1f} ms, {len(singles) / elapsed:.0f} requests/s "
                f"({len(singles)} requests)"
            )
        batches = [body(images[(i * 256) % 9000 :][:256], form) for i in range(arguments.batches)]
        seconds = [post(arguments.url, payload) for payload in batches]
        forms[form]["batch_images_per_s"] = round(256 * len(seconds) / sum(seconds))
        print(
            f"{form} batches of 256: {256 * len(seconds) / sum(seconds):.0f} images/s "
            f"({len(seconds)} requests)"
        )
    print(f"written {write_report(Path.cwd(), 'serve_latency', {'forms': forms})}")


if __name__ == "__main__":
    main()
