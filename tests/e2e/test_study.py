"""End to end: `digits study` runs the pipeline per seed through DVC's real experiment queue
in a temporary git copy with tiny data, then aggregates, records in MLflow and renders."""

from __future__ import annotations

import csv
import json
import subprocess

import mlflow
import pytest
import yaml

from digit_recognizer.study.pages import README_BEGIN, README_END
from tests.helpers.pipeline import run
from tests.helpers.project import ReproducedProject

GENERATED = ("README.md", "docs/results.md")


def children(client: mlflow.MlflowClient, parent: str) -> list[mlflow.entities.Run]:
    experiment = client.get_experiment_by_name("digit-recognizer")
    assert experiment is not None
    return client.search_runs([experiment.experiment_id], f"tags.mlflow.parentRunId = '{parent}'")


def stages_under(client: mlflow.MlflowClient, parent: str) -> set[str]:
    return {child.data.tags.get("stage", "") for child in children(client, parent)}


@pytest.mark.slow
def test_a_study_runs_each_seed_as_an_experiment_and_writes_what_users_read(
    reproduced: ReproducedProject,
) -> None:
    # given the reproduced project (its pipeline ran at its params' seed) and one more seed
    folder, environment = reproduced.folder, reproduced.environment
    ran_seed = yaml.safe_load((folder / "params.yaml").read_text())["seed"]
    new_seed = ran_seed + 1
    workspace_scores = {
        row["model"]: float(row["accuracy"])
        for row in csv.DictReader((folder / "reports/comparison.csv").open())
    }
    try:
        # when a study runs both seeds
        output = run(
            ["digits", "study", "--seeds", str(ran_seed), str(new_seed)], folder, environment
        )

        # then reports/study.json aggregates every model over the two seeds
        assert "study: wrote reports/study.json, docs/results.md, README.md" in output, output
        study = json.loads((folder / "reports/study.json").read_text())
        assert study["seeds"] == [ran_seed, new_seed]
        assert set(study["models"]) == set(workspace_scores)
        for model, metrics in study["models"].items():
            accuracy = metrics["accuracy"]
            assert len(accuracy["values"]) == 2 and accuracy["min"] <= accuracy["mean"]
            # and the seed that had run is DVC's cached result, read back exactly
            assert accuracy["values"][0] == workspace_scores[model], model
        assert study["cpu"] and study["cores"] >= 1
        compared = {(found["name"], found["metric"]) for found in study["comparisons"]}
        assert ("cnn against ann", "accuracy") in compared
        assert any(name.startswith("candidate against champion v") for name, _ in compared)

        # and MLflow has a parent run "study" with one child per seed; the new seed's stage
        # runs sit under its child, the cached seed ran no stage
        client = mlflow.MlflowClient(environment["MLFLOW_TRACKING_URI"])
        parent = client.get_run(study["run_id"])
        assert parent.info.run_name.startswith("study ") and parent.info.status == "FINISHED"
        cnn = study["models"]["cnn"]["accuracy"]
        assert parent.data.metrics["cnn_accuracy_mean"] == cnn["mean"]
        by_seed = {
            run.data.params["seed"]: run.info.run_id for run in children(client, study["run_id"])
        }
        assert set(by_seed) == {str(ran_seed), str(new_seed)}
        # (an evaluation run sits under its training run, a search's trials under the search)
        under_new_seed = stages_under(client, by_seed[str(new_seed)])
        assert {"prepare", "tune", "train", "baselines"} <= under_new_seed, under_new_seed
        assert stages_under(client, by_seed[str(ran_seed)]) == set()

        # and the README's table and docs/results.md show the report's numbers
        readme = (folder / "README.md").read_text()
        block = readme[readme.index(README_BEGIN) : readme.index(README_END)]
        assert f"{cnn['mean']:.2%} ({cnn['min'] * 100:.2f}-{cnn['max'] * 100:.2f})" in block
        assert study["run_id"] in (folder / "docs/results.md").read_text()

        # and a second study on a queue that still holds work is refused in one line
        run(["dvc", "exp", "run", "--queue", "-S", f"seed={new_seed + 1}"], folder, environment)
        refused = subprocess.run(
            ["digits", "study", "--seeds", "1", "2"],
            cwd=folder,
            env=environment,
            capture_output=True,
            text=True,
        )
        assert refused.returncode == 2 and "queue already holds" in refused.stderr, refused
        assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    finally:
        subprocess.run(["dvc", "queue", "remove", "--queued"], cwd=folder, env=environment)
        subprocess.run(["git", "checkout", "--", *GENERATED], cwd=folder, env=environment)
        (folder / "reports/study.json").unlink(missing_ok=True)
