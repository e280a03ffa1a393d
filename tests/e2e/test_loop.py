"""The whole loop after deployment, with a tiny model and real servers: a stream of another
population's pictures is served, drift is flagged, people correct the answers through
POST /feedback, `digits monitor --retrain` exports them and runs `dvc repro`, the gates
promote the retrained model, and the running server answers with it."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from digit_recognizer.monitoring.commands import EXIT_ALERT
from tests.e2e.test_pipeline import champion_version
from tests.e2e.test_serving import request_with_headers, split_payload, start, stop
from tests.helpers.pipeline import commit_all, git_copy_with_tiny_data, ran_stages, run
from tests.helpers.project import synthetic_digits
from tests.helpers.servers import free_port
from tests.helpers.warm_digits import warm_bin

DIGITS = [sys.executable, "-m", "digit_recognizer.cli"]


def other_population(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Another population's digits: the same shapes, photographed as light ink on dark paper."""
    table = synthetic_digits(count // 10, seed)
    assert table.labels is not None
    return 255 - table.images, table.labels.astype(np.int64)


def answer(base: str, pixels: np.ndarray) -> tuple[list[str], np.ndarray, str]:
    """Serve rows in batches of 50: their prediction ids, the answered digits, the version."""
    ids, labels, version = [], [], ""
    for start_row in range(0, len(pixels), 50):
        status, body, headers = request_with_headers(
            f"{base}/invocations", split_payload(pixels[start_row : start_row + 50].tolist())
        )
        assert status == 200, body
        ids += headers["x-prediction-id"].split(",")
        labels += [row["label"] for row in json.loads(body)["predictions"]]
        version = headers["x-model-version"]
    return ids, np.array(labels), version


def digits(folder: Path, environment: dict[str, str], *arguments: str) -> tuple[int, str]:
    # by its path: cron's PATH below has no digits
    result = subprocess.run(
        [str(warm_bin() / "digits"), *arguments],
        cwd=folder,
        env=environment,
        capture_output=True,
        text=True,
    )
    return result.returncode, result.stdout + result.stderr


@pytest.mark.slow
def test_corrections_of_a_drifted_stream_retrain_and_promote_a_better_champion(
    tmp_path: Path,
) -> None:
    # given the pipeline run once on tiny data, and its champion served
    environment = git_copy_with_tiny_data(tmp_path, labelled_test=True)
    params = yaml.safe_load((tmp_path / "params.yaml").read_text())
    params["serve"].update(poll_seconds=0.5, max_request_bytes=1_000_000)
    params["monitoring"].update(min_window_rows=50, retrain_after=100)
    # enough training for a tiny network to learn both populations once it has corrections
    for family in ("ann", "cnn"):
        params["train"][family].update(max_epochs=6, min_steps_per_epoch=20)
    params["train"]["feedback_weight"] = 1.0
    params["promote"]["min_feedback_accuracy"] = 0.6
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["dvc", "repro"], tmp_path, environment)
    commit_all(tmp_path, environment, "results")
    first_champion = champion_version(environment)
    port = free_port()
    server = start(
        [*DIGITS, "serve", "--port", str(port)],
        tmp_path,
        f"http://127.0.0.1:{port}/ping",
        environment,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        # when 300 pictures of the other population are served
        stream, truth = other_population(300, seed=11)
        ids, answered, version = answer(base, stream)
        assert version == first_champion
        before = float(np.mean(answered == truth))
        # then the monitor flags the drift in one line and exits 3
        status, output = digits(tmp_path, environment, "monitor", "--last", "300")
        assert status == EXIT_ALERT, output
        assert "ALERT" in output and "pixel_shift" in output, output
        # when a person labels every answer (confirming the right ones, correcting the rest)
        for identifier, label in zip(ids, truth.tolist(), strict=True):
            status, body, _ = request_with_headers(
                f"{base}/feedback",
                json.dumps({"prediction_id": identifier, "label": label}).encode(),
            )
            assert status == 204, body
        # and the monitor is asked to retrain, from cron (whose PATH holds no project tools)
        cron = {**environment, "PATH": "/usr/bin:/bin"}
        status, output = digits(tmp_path, cron, "monitor", "--last", "300", "--retrain")
        # then the corrections were exported and only what they feed ran again: no new search
        assert status == EXIT_ALERT, output
        assert "300 corrected pictures exported" in output, output
        assert ran_stages(output) == {
            "feedback",
            "train@ann",
            "train@cnn",
            "evaluate@ann",
            "evaluate@cnn",
            "baselines",
            "report",
            "promote",
        }, output
        assert "retrain: dvc repro ran (drift: " in output and "300 new corrections" in output
        promotion = json.loads((tmp_path / "reports/promotion.json").read_text())
        assert promotion["decision"] == "promoted", promotion["reason"]
        gates = {gate["name"] for gate in promotion["gates"]}
        assert {
            "min_feedback_accuracy",
            "not_worse_on_evaluation",
            "not_worse_on_feedback",
        } <= gates
        new_champion = champion_version(environment)
        assert new_champion != first_champion
        metrics = json.loads((tmp_path / "reports/cnn/scores.json").read_text())
        assert metrics["feedback_rows"] > 0 and "feedback_accuracy" in metrics
        # and the running server follows the alias to the new champion
        deadline = time.monotonic() + 60
        fresh, fresh_truth = other_population(200, seed=12)
        while time.monotonic() < deadline:
            _, answered_after, version = answer(base, fresh[:50])
            if version == new_champion:
                break
            time.sleep(1)
        assert version == new_champion
        # which reads the other population's new pictures better than the first champion did
        _, answered_after, _ = answer(base, fresh)
        after = float(np.mean(answered_after == fresh_truth))
        assert after > before + 0.2, (before, after)
    finally:
        stop(server)
