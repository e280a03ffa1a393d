"""Latency and throughput of a running `digits serve` (loopback only, bounded in count).

    python benchmarks/serve_latency.py --url http://127.0.0.1:5001/invocations

Sends single-image requests (p50/p99 of the round trip) and batches of 256 (images/second),
using rows from prepared/test.npz so the payloads are real digits.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import urllib.request
from pathlib import Path

import numpy as np

COLUMNS = [f"pixel{index}" for index in range(784)]


def post(url: str, rows: np.ndarray) -> float:
    body = json.dumps({"dataframe_split": {"columns": COLUMNS, "data": rows.tolist()}}).encode()
    request = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=60) as response:
        response.read()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", default="http://127.0.0.1:5001/invocations")
    parser.add_argument("--single", type=int, default=300, help="single-image requests")
    parser.add_argument("--batches", type=int, default=20, help="requests of 256 images")
    arguments = parser.parse_args()
    with np.load(Path("prepared/test.npz")) as arrays:
        images = arrays["images"].astype(np.int64)
    for index in range(10):  # warm-up
        post(arguments.url, images[index : index + 1])
    single = sorted(
        post(arguments.url, images[i % len(images)][None]) * 1000 for i in range(arguments.single)
    )
    p50 = statistics.median(single)
    p99 = single[min(len(single) - 1, int(0.99 * len(single)))]
    batch_seconds = [
        post(arguments.url, images[(i * 256) % 9000 :][:256]) for i in range(arguments.batches)
    ]
    throughput = 256 * len(batch_seconds) / sum(batch_seconds)
    print(
        f"single image: p50 {p50:.1f} ms, p99 {p99:.1f} ms ({arguments.single} requests); "
        f"batch 256: {throughput:.0f} images/s ({arguments.batches} requests)"
    )


if __name__ == "__main__":
    main()
