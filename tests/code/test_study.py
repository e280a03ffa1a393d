"""A study's arithmetic and its checks: aggregates over seeds, paired comparisons, the
candidate chosen on validation, and one-line errors for bad requests and reports."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from digit_recognizer.config import load_params
from digit_recognizer.errors import UserError
from digit_recognizer.runtime.programs import program, program_environment
from digit_recognizer.study.commands import check_request, read_seed
from digit_recognizer.study.experiments import require_idle_queue
from digit_recognizer.study.pages import readme_block, results_page
from digit_recognizer.study.summary import ChampionScores, SeedResult, seed_result, summarise
from tests.helpers.project import REPOSITORY

HEADER = "model,kind,accuracy,macro_f1,robust_accuracy,train_seconds,latency_ms_batch1\n"


def seed(number: int, cnn: float, ann: float, *, ann_validation: float = 0.9) -> SeedResult:
    comparison = (
        f"{HEADER}cnn,neural network,{cnn},{cnn},{cnn - 0.01},100,1.2\n"
        f"ann,neural network,{ann},{ann},{ann - 0.01},{number},0.6\n"
        "knn,classical,0.97,0.97,0.96,2,2.0\n"
    )
    scores = {
        "cnn": json.dumps({"validation_accuracy": 0.95, "evaluation_split": "test"}),
        "ann": json.dumps({"validation_accuracy": ann_validation, "evaluation_split": "test"}),
    }
    return seed_result(number, f"study-seed{number}", comparison, scores)


def test_every_model_is_aggregated_over_the_seeds_and_ranked_by_mean_accuracy() -> None:
    # given three seeds' reports
    results = [seed(42, 0.99, 0.98), seed(43, 0.995, 0.985), seed(44, 0.98, 0.99)]

    # when they are summarised
    study = summarise(results, None, {"cpu": "a CPU", "cores": 2})

    # then each metric has mean, std, min, max and median over the seeds, best model first
    assert list(study["models"]) == ["cnn", "ann", "knn"]
    cnn = study["models"]["cnn"]["accuracy"]
    assert cnn["values"] == [0.99, 0.995, 0.98]
    assert (cnn["min"], cnn["max"], cnn["median"]) == (0.98, 0.995, 0.99)
    assert cnn["mean"] == pytest.approx(0.988333, abs=1e-6)
    assert cnn["std"] == pytest.approx(0.007638, abs=1e-6)
    assert study["models"]["ann"]["train_seconds"]["median"] == 43
    assert study["cpu"] == "a CPU" and study["seeds"] == [42, 43, 44]

    # and CNN against ANN is paired seed by seed: ahead on two seeds of three
    paired = {(found["name"], found["metric"]): found for found in study["comparisons"]}
    against_ann = paired[("cnn against ann", "accuracy")]
    assert against_ann["values"] == pytest.approx([0.01, 0.01, -0.01])
    assert against_ann["wins"] == 2


def test_each_seed_s_candidate_is_chosen_on_validation_and_compared_with_the_champion() -> None:
    # given a seed whose ANN validates better though its CNN tests better
    results = [seed(42, 0.99, 0.98, ann_validation=0.99), seed(43, 0.99, 0.98)]
    champion = ChampionScores("7", "test", {"accuracy": 0.985, "robust_accuracy": 0.97})

    # when summarised against the champion
    study = summarise(results, champion, {})

    # then seed 42's candidate is the ANN (never picked on the test split), seed 43's the CNN
    assert study["candidates"] == {"42": "ann", "43": "cnn"}
    paired = {(found["name"], found["metric"]): found for found in study["comparisons"]}
    against = paired[("candidate against champion v7", "accuracy")]
    assert against["values"] == pytest.approx([0.98 - 0.985, 0.99 - 0.985])

    # and a champion scored on another split is not compared
    holdout = ChampionScores("7", "holdout", {"accuracy": 0.985})
    names = {found["name"] for found in summarise(results, holdout, {})["comparisons"]}
    assert names == {"cnn against ann"}


def test_the_pages_show_the_means_and_ranges_of_the_report() -> None:
    results = [seed(42, 0.99, 0.98), seed(43, 0.995, 0.985)]
    study = summarise(results, None, {"cpu": "a CPU", "cores": 2, "settings": [], "run_id": "r1"})

    block = readme_block(study)
    assert "| cnn | neural network | 99.25% (99.00-99.50) |" in block
    # best first, also once reports/study.json (its keys sorted by name) is read back
    read_back = json.loads(json.dumps(study, sort_keys=True))
    rows = [line.split(" | ")[0] for line in readme_block(read_back).splitlines()]
    assert rows.index("| cnn") < rows.index("| ann") < rows.index("| knn")
    assert "2 seeds (42, 43)" in block and "2-core a CPU" in block
    page = results_page(study)
    assert "| cnn | 99.00% | 99.50% |" in page and "`r1`" in page and "(none)" in page


@pytest.mark.parametrize(
    ("comparison", "reason"),
    [
        ("model,kind\ncnn,neural network\n", "unreadable report"),
        (HEADER + "cnn,neural network,not a number,1,1,1,1\n", "unreadable report"),
        (HEADER, "no single evaluation split"),
    ],
)
def test_an_unreadable_report_is_one_line_naming_the_experiment(
    comparison: str, reason: str
) -> None:
    scores = {"cnn": json.dumps({"validation_accuracy": 0.9})}
    with pytest.raises(UserError, match=f"experiment study-seed1: .*{reason}"):
        seed_result(1, "study-seed1", comparison, scores)


@pytest.mark.parametrize(
    ("seeds", "settings", "jobs", "reason"),
    [
        ([], [], 1, "give distinct seeds"),
        ([42, 42], [], 1, "give distinct seeds"),
        ([42], ["train.cnn.max_epochs"], 1, "expected key=value"),
        ([42], ["seed=3"], 1, "come from --seeds"),
        ([42], [], 0, "1 or more queue workers"),
    ],
)
def test_a_bad_study_request_is_refused_before_anything_runs(
    seeds: list[int], settings: list[str], jobs: int, reason: str
) -> None:
    with pytest.raises(UserError, match=reason):
        check_request(seeds, settings, jobs)


def test_a_seed_whose_experiment_failed_is_named_with_where_to_read_why(tmp_path: Path) -> None:
    # given a project whose queue left no experiment for the seed (its pipeline failed)
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    params = load_params(REPOSITORY / "params.yaml")
    # when the study reads it, then one line names the seed and the log to read
    with pytest.raises(UserError, match=r"seed 43: experiment study-1-seed43 failed; `dvc queue"):
        read_seed(params, tmp_path, 43, "study-1-seed43")


def test_a_study_from_cron_or_without_an_activated_environment_finds_this_dvc(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a git + DVC project, and a PATH without this environment's programs (cron's, or
    # `.venv/bin/digits study` from a shell that did not activate it)
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run([program("dvc"), "init", "-q"], cwd=tmp_path, check=True)
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    # when the study asks DVC whether its queue is idle, then DVC answers (no error)
    require_idle_queue(tmp_path)
    # and what DVC's queue workers run finds digits too
    assert shutil.which("digits", path=program_environment()["PATH"]) is not None
