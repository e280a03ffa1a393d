"""The loop on a new population, end to end, on a project where `make run` has run:

    python -m benchmarks.feedback_loop          # from the project root; changes feedback/

Another writers' digits (scikit-learn's bundled UCI optical digits: 1,797 by 43 writers,
photographed the way the robustness set draws `paper`) are split, seeded: 1,000 are served
through `digits serve` as pictures and every answer is labelled through POST /feedback (a
labelling session: right answers confirmed, wrong ones corrected); the other 797 are only
scored. Then `digits feedback export`, `dvc repro` (the gates decide), and the 797 are scored
again by whatever the server then serves. Nothing is chosen on the 797.

Appends one seed's result to reports/benchmarks/feedback_loop.json (the CPU named).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from benchmarks.robustness_readers import other_writers
from digit_recognizer.config import load_params
from digit_recognizer.data.robustness import png_bytes, render
from digit_recognizer.files import write_json
from digit_recognizer.runtime.cpu import cpu_model

SERVED = 1_000
DIGITS = [sys.executable, "-m", "digit_recognizer.cli"]


def post(url: str, body: bytes, content_type: str) -> tuple[dict[str, str], Any]:
    request = urllib.request.Request(url, body, {"Content-Type": content_type})
    with urllib.request.urlopen(request, timeout=120) as response:
        headers = {key.lower(): value for key, value in response.headers.items()}
        content = response.read()
    return headers, json.loads(content) if content else None


def read(base: str, pictures: list[bytes]) -> tuple[list[str], npt.NDArray[np.int64], set[str]]:
    """Each picture sent as the page or a phone would: one image/png request each."""
    ids, labels, versions = [], [], set()
    for picture in pictures:
        headers, answer = post(f"{base}/invocations", picture, "image/png")
        ids.append(headers["x-prediction-id"])
        labels.append(answer["predictions"][0]["label"])
        versions.add(headers["x-model-version"])
    return ids, np.array(labels), versions


def main() -> None:
    root = Path.cwd()
    params = load_params(root / "params.yaml")
    writers, labels = other_writers()
    rng = np.random.default_rng(params.seed)
    order = rng.permutation(len(writers))
    pictures = [png_bytes(render(writers[index], "paper", rng)) for index in order]
    served, held_out = pictures[:SERVED], pictures[SERVED:]
    served_labels, held_out_labels = labels[order[:SERVED]], labels[order[SERVED:]]
    with tempfile.TemporaryDirectory(prefix="digits-loop-") as folder:
        environment = {
            **os.environ,
            "DIGITS_PREDICTION_LOG_URL": f"sqlite:///{Path(folder) / 'log.db'}",
            # dvc and the digits its stages run: this environment's
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        }
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        base = f"http://127.0.0.1:{port}"
        server = subprocess.Popen(
            [*DIGITS, "serve", "--port", str(port)],
            cwd=root,
            env=environment,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            for _ in range(360):
                try:
                    urllib.request.urlopen(f"{base}/ping", timeout=5)
                    break
                except OSError:
                    time.sleep(0.5)
            _, before_held_out, versions_before = read(base, held_out)
            ids, answered, _ = read(base, served)
            for identifier, label in zip(ids, served_labels.tolist(), strict=True):
                body = json.dumps({"prediction_id": identifier, "label": label}).encode()
                post(f"{base}/feedback", body, "application/json")
            started = time.monotonic()
            subprocess.run([*DIGITS, "feedback", "export"], cwd=root, env=environment, check=True)
            subprocess.run(["dvc", "repro"], cwd=root, env=environment, check=True)
            repro_seconds = time.monotonic() - started
            promotion = json.loads((root / params.paths.promotion_report).read_text())
            time.sleep(3 * params.serve.poll_seconds)  # the server follows the alias
            _, after_held_out, versions_after = read(base, held_out)
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=120)
    cnn = json.loads((root / params.paths.headline_metrics("cnn")).read_text())
    result = {
        "seed": params.seed,
        "served_and_labelled": SERVED,
        "served_accuracy": float(np.mean(answered == served_labels)),
        "held_out": len(held_out),
        "held_out_accuracy_before": float(np.mean(before_held_out == held_out_labels)),
        "held_out_accuracy_after": float(np.mean(after_held_out == held_out_labels)),
        "versions_before": sorted(versions_before),
        "versions_after": sorted(versions_after),
        "promotion": promotion["decision"],
        "promotion_reason": promotion["reason"],
        "cnn_test_accuracy_after": cnn["test_accuracy"],
        "cnn_feedback_accuracy_after": cnn.get("feedback_accuracy"),
        "export_and_repro_seconds": round(repro_seconds, 1),
    }
    print(json.dumps(result, indent=2))
    output = root / "reports" / "benchmarks" / "feedback_loop.json"
    earlier = json.loads(output.read_text())["seeds"] if output.exists() else []
    seeds = [item for item in earlier if item["seed"] != params.seed] + [result]
    write_json(output, {"cpu": cpu_model(), "cores": os.cpu_count(), "seeds": seeds})


if __name__ == "__main__":
    main()
