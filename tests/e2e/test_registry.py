"""Registry: a champion is chosen on validation and moves only on evidence (floors plus an
exact McNemar test on the same images); forced moves are recorded; rollback works; racing
promotions from separate processes lose nothing."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import mlflow
import pytest
import yaml

from digit_recognizer import tracking
from digit_recognizer.cli import main
from digit_recognizer.config import Family, load_params
from digit_recognizer.data.kaggle_csv import write_digits_csv
from digit_recognizer.data.robustness import load_robustness_set
from digit_recognizer.data.splits import load_split
from digit_recognizer.models.record import TrainedModel
from digit_recognizer.promotion.champion import HISTORY_TAG
from digit_recognizer.promotion.listing import registry_table
from digit_recognizer.promotion.policy import mcnemar
from digit_recognizer.stages.promote import promote, rollback
from digit_recognizer.tracking import CHAMPION
from tests.helpers.project import (
    REPOSITORY,
    run_data_stages,
    synthetic_digits,
    tiny_params,
    track_data,
    write_tiny_data,
)
from tests.helpers.registry import Candidate, register_candidate
from tests.helpers.warm_digits import warm_bin


@pytest.fixture(scope="session")
def prepared_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project after prepare, split-feedback and robustness, with its own registry (no
    versions yet), the real gates and a labelled 1,000-image test set: made once, copied into
    each test's project (the stages' outputs and the registry's schema take seconds each)."""
    folder = tmp_path_factory.mktemp("registry-template")
    write_tiny_data(folder / "data")
    track_data(folder)
    params = tiny_params()
    params["promote"] = yaml.safe_load((REPOSITORY / "params.yaml").read_text())["promote"]
    (folder / "params.yaml").write_text(yaml.safe_dump(params))  # the real gates, not tiny ones
    shutil.copy(REPOSITORY / "dvc.yaml", folder / "dvc.yaml")
    write_digits_csv(folder / "data/test.csv", synthetic_digits(100, 5))
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{folder / 'registry.db'}")
        run_data_stages()
    return folder


@pytest.fixture
def registry_project(
    monkeypatch: pytest.MonkeyPatch, project: Path, prepared_template: Path
) -> Path:
    """A prepared project of its own, copied from the template, registry included."""
    shutil.copytree(prepared_template, project, dirs_exist_ok=True)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{project / 'registry.db'}")
    return project


def champion() -> str | None:
    try:
        return str(
            mlflow.MlflowClient().get_model_version_by_alias("digit-recognizer", CHAMPION).version
        )
    except mlflow.exceptions.MlflowException:
        return None


def write_trained(families: dict[Family, Candidate]) -> None:
    """models/<family>.json as the train stage writes them."""
    Path("models").mkdir(exist_ok=True)
    for family, candidate in families.items():
        record = TrainedModel(
            family=family,
            run_id=candidate.run_id,
            model_uri="",
            registered_name="digit-recognizer",
            version=candidate.version,
            epochs_all_members=1,
            train_seconds=1.0,
        )
        Path(f"models/{family}.json").write_text(json.dumps(asdict(record)))


def submission_rows() -> list[str]:
    return Path("submissions/submission.csv").read_text().splitlines()


def test_mcnemar_counts_only_the_images_where_the_models_disagree() -> None:
    import numpy as np

    candidate = np.array([True] * 90 + [True] * 8 + [False] * 2)
    champion_ = np.array([True] * 90 + [False] * 8 + [True] * 2)
    comparison = mcnemar(candidate, champion_)
    assert (comparison.candidate_only_right, comparison.champion_only_right) == (8, 2)
    assert comparison.p_value == pytest.approx(56 / 1024)  # P(X >= 8), X ~ Binomial(10, 1/2)
    assert mcnemar(candidate, candidate).p_value == 1.0


def test_candidates_are_chosen_on_validation_never_on_test(registry_project: Path) -> None:
    # given an ANN best on validation and a CNN best on the evaluation split
    ann = register_candidate(registry_project, "ann", range(8), validation_accuracy=0.995)
    cnn = register_candidate(registry_project, "cnn", range(2), validation_accuracy=0.990)
    write_trained({"ann": ann, "cnn": cnn})
    # when the promote stage runs
    assert main(["promote"]) == 0
    # then the validation choice is the one judged and promoted, and its submission is written
    report = json.loads(Path("reports/promotion.json").read_text())
    assert report["candidate_version"] == ann.version, "the test set must not pick the model"
    assert report["decision"] == "promoted" and champion() == ann.version
    rows = submission_rows()
    assert rows[0] == "ImageId,Label" and len(rows) == 1 + 1000
    assert rows[1].startswith("1,")
    # and a rerun judges the same pick again: nothing to do, the other candidate is not tried
    report = promote(load_params(Path("params.yaml")), registry_project)
    assert report.decision == "skipped" and report.candidate_version is None


def test_noise_does_not_swap_the_champion_but_a_clear_gain_does(registry_project: Path) -> None:
    params = load_params(Path("params.yaml"))
    sitting = register_candidate(registry_project, "cnn", range(10))  # 99.0 %
    assert promote(params, registry_project, version=sitting.version).decision == "promoted"
    # given a challenger that differs from the champion on 2 images, one each way (99.0 %)
    noisy = register_candidate(registry_project, "cnn", [*range(9), 500])
    write_trained({"cnn": noisy})
    # when promoting, then the significance gate refuses and records the test
    report = promote(params, registry_project)
    assert report.decision == "rejected" and report.reason == "failed gates: significantly_better"
    assert report.comparison is not None
    assert (report.comparison.candidate_only_right, report.comparison.champion_only_right) == (1, 1)
    assert champion() == sitting.version
    tags = mlflow.MlflowClient().get_model_version("digit-recognizer", noisy.version).tags
    assert tags["promotion_decision"] == "rejected"
    assert json.loads(tags["promotion"])["mcnemar"]["p_value"] == pytest.approx(0.75)
    # given one that fixes 8 of the champion's 10 errors and makes no new one (99.8 %)
    better = register_candidate(registry_project, "cnn", range(2))
    write_trained({"cnn": better})
    report = promote(params, registry_project)
    assert report.decision == "promoted", report.reason
    assert report.comparison is not None and report.comparison.p_value < 0.01
    assert champion() == better.version


def test_a_champion_scored_on_other_data_is_rescored_on_todays(registry_project: Path) -> None:
    params = load_params(Path("params.yaml"))
    # given a champion whose logged predictions are for other images (an untrained network)
    old = register_candidate(registry_project, "ann", [], other_data=True)
    assert promote(params, registry_project, version=old.version, force=True).decision == "promoted"
    challenger = register_candidate(registry_project, "cnn", range(5))
    write_trained({"cnn": challenger})
    # when promoting, then the champion is predicted again on today's images, and loses
    report = promote(params, registry_project)
    assert report.comparison is not None
    assert report.comparison.champion_only_right < 200, "an untrained ANN is near chance"
    assert report.decision == "promoted" and champion() == challenger.version


def test_each_floor_can_refuse(registry_project: Path) -> None:
    params = load_params(Path("params.yaml"))
    labels = load_split(Path("prepared"), "test").labels
    assert labels is not None
    eights = [int(index) for index in (labels == 8).nonzero()[0]]
    low_recall = register_candidate(registry_project, "cnn", eights[:10])
    slow = register_candidate(registry_project, "cnn", [], latency_ms=500.0)
    weak = register_candidate(registry_project, "ann", range(0, 1000, 40))  # 97.5 %
    for candidate, gate in (
        (low_recall, "min_class_recall"),
        (slow, "max_latency_ms"),
        (weak, "min_evaluation_accuracy"),
    ):
        report = promote(params, registry_project, version=candidate.version)
        assert report.decision == "rejected" and report.reason == f"failed gates: {gate}"
    assert champion() is None


def test_a_candidate_much_less_robust_than_the_champion_is_refused_however_it_wins(
    registry_project: Path,
) -> None:
    # given a champion right on every robustness picture but 15 evaluation images wrong
    params = load_params(Path("params.yaml"))
    robustness = load_robustness_set(params.paths.robustness_set)
    assert len(robustness.kinds) == 30, "5 pictures of each of the 6 kinds (tiny params)"
    sitting = register_candidate(registry_project, "cnn", range(15))
    assert promote(params, registry_project, version=sitting.version).decision == "promoted"
    # when a candidate right on every evaluation image loses 2 of the 30 pictures (6.7 points)
    fragile = register_candidate(registry_project, "cnn", [], robust_wrong=[0, 7])
    report = promote(params, registry_project, version=fragile.version)
    # then it is refused on robustness alone, though it wins McNemar's test by far
    assert report.decision == "rejected", report.reason
    assert report.reason == "failed gates: max_robust_accuracy_drop"
    assert report.comparison is not None and report.comparison.p_value < 1e-4
    # and one as robust as the champion goes through; a robustness floor refuses on its own
    steady = register_candidate(registry_project, "cnn", [])
    report = promote(params, registry_project, version=steady.version)
    assert report.decision == "promoted", report.reason
    shaky = register_candidate(registry_project, "cnn", [], robust_wrong=range(0, 30, 2))
    report = promote(params, registry_project, version=shaky.version, force=False)
    assert "min_robust_accuracy" in report.reason, report.reason
    assert champion() == steady.version


class Killed(BaseException):
    """The process dying between two registry calls (nothing in the project catches it)."""


def kill_at_write(monkeypatch: pytest.MonkeyPatch, step: int) -> None:
    """Make the registry write number ``step`` (from 0) of this process die."""
    writes = {"done": 0}

    def dying(original: Callable[..., object]) -> Callable[..., object]:
        def write(*arguments: object, **keywords: object) -> object:
            if writes["done"] == step:
                raise Killed(f"killed at registry write {step}")
            writes["done"] += 1
            return original(*arguments, **keywords)

        return write

    for name in ("set_model_tag", "set_alias", "delete_alias", "tag_version", "record_move"):
        original = getattr(tracking.Registry, name)
        monkeypatch.setattr(tracking.Registry, name, dying(original))


def test_a_champion_move_killed_between_any_two_registry_calls_is_finished_by_the_next(
    registry_project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    params = load_params(Path("params.yaml"))
    first, sitting, challenger = (
        register_candidate(registry_project, "cnn", range(errors)).version for errors in (9, 6, 0)
    )
    for version in (first, sitting):
        assert main(["promote", "--version", version, "--force"]) == 0
    client = mlflow.MlflowClient()
    # a promotion writes the move, the history, two aliases, the version's tags, the move's
    # record, clears the move and records the decision: eight registry writes; it dies before
    # each one in turn
    for step in range(8):
        with pytest.MonkeyPatch.context() as patch, pytest.raises(Killed):
            kill_at_write(patch, step)
            promote(params, registry_project, version=challenger, force=True)
        written = step >= 1  # the move was written before the process died
        capsys.readouterr()
        # then the listing works, and the next rollback first finishes the move, then undoes it
        assert main(["registry"]) == 0
        assert main(["rollback"]) == 0, f"killed before write {step}: {capsys.readouterr()}"
        output = capsys.readouterr().out
        expected = (challenger, sitting) if written else (sitting, first)
        assert f"from version {expected[0]} back to version {expected[1]}" in output, (
            f"killed before write {step}: {output}"
        )
        model = client.get_registered_model("digit-recognizer")
        history = json.loads(model.tags[HISTORY_TAG])
        assert str(model.aliases[CHAMPION]) == history[-1] == expected[1], step
        previous = model.aliases.get("previous-champion")
        assert (str(previous) if previous else None) == (history[-2] if history[1:] else None)
        assert not model.tags.get("champion_move"), "no move left pending"
        if not written:  # back to the sitting champion for the next step
            assert main(["promote", "--version", sitting, "--force"]) == 0
    # and each promotion the process wrote down before dying is recorded once, however often
    # its move was carried out
    moves = tracking.Registry(
        tracking.Store.for_project(params.mlflow, registry_project), "digit-recognizer"
    ).recorded_moves()
    assert sum(move["move"] == "promote" and move["to"] == challenger for move in moves) == 7


def test_a_record_naming_another_run_is_refused(
    registry_project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # given models/cnn.json naming a version that another run registered (another store)
    registered = register_candidate(registry_project, "cnn", [])
    write_trained({"cnn": Candidate(registered.version, "0123456789abcdef")})
    capsys.readouterr()
    # when the promote stage runs, then it refuses in one line and moves nothing
    assert main(["promote"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("digits promote: error: models/cnn.json: names version"), error
    assert "\n" not in error, error
    assert champion() is None


def test_experiments_do_not_move_the_champion(
    registry_project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    params = load_params(Path("params.yaml"))
    sitting = register_candidate(registry_project, "cnn", range(10))
    assert promote(params, registry_project, version=sitting.version).decision == "promoted"
    better = register_candidate(registry_project, "cnn", [])
    write_trained({"cnn": better})
    # given a `dvc exp run`, when its promote stage runs, then it reports but moves nothing
    monkeypatch.setenv("DVC_EXP_NAME", "bushy-lion")
    assert main(["promote"]) == 0
    report = json.loads(Path("reports/promotion.json").read_text())
    assert report["decision"] == "skipped" and "bushy-lion" in report["reason"]
    assert champion() == sitting.version
    # and a deliberate promotion of the experiment's version still goes through the gates
    assert main(["promote", "--version", better.version]) == 0
    assert champion() == better.version


@pytest.mark.parametrize("why", ["promote.enabled false", "a first dvc exp run"])
def test_the_stage_reports_without_failing_when_no_champion_is_made_by_design(
    registry_project: Path, monkeypatch: pytest.MonkeyPatch, why: str
) -> None:
    # given a trained model and no champion yet, and params or an experiment that keep the
    # champion where it is
    write_trained({"cnn": register_candidate(registry_project, "cnn", [])})
    if why == "promote.enabled false":
        params = yaml.safe_load(Path("params.yaml").read_text())
        params["promote"]["enabled"] = False
        Path("params.yaml").write_text(yaml.safe_dump(params))
    else:
        monkeypatch.setenv("DVC_EXP_NAME", "first-try")
    # when the promote stage runs, then it reports the skip and succeeds (dvc repro goes on)
    assert main(["promote"]) == 0
    report = json.loads(Path("reports/promotion.json").read_text())
    assert report["decision"] == "skipped" and champion() is None
    assert not Path("submissions/submission.csv").exists(), "no champion, no submission"
    # and a deliberate promotion that ends with no champion still fails
    worst = register_candidate(registry_project, "ann", range(500))
    assert main(["promote", "--version", worst.version]) == 2
    assert champion() is None


def test_forced_promotion_is_recorded_and_rollback_restores(
    registry_project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    params = load_params(Path("params.yaml"))
    good = register_candidate(registry_project, "cnn", range(3))
    bad = register_candidate(registry_project, "ann", range(100))
    assert promote(params, registry_project, version=good.version).decision == "promoted"
    # when a gated-out version is forced
    assert main(["promote", "--version", bad.version, "--force"]) == 0
    assert champion() == bad.version
    version = mlflow.MlflowClient().get_model_version("digit-recognizer", bad.version)
    assert json.loads(version.tags["promotion"])["forced"] is True
    assert "forced past failing gates: min_evaluation_accuracy" in str(version.description)
    # when rolled back, then the previous champion serves again and writes the submission
    capsys.readouterr()
    assert main(["rollback"]) == 0
    assert champion() == good.version
    rolled_back = mlflow.MlflowClient().get_model_version("digit-recognizer", bad.version)
    assert len(rolled_back.tags) <= 12, rolled_back.tags
    output = capsys.readouterr().out
    assert f"from version {bad.version} back to version {good.version}" in output
    assert f"holds version {good.version}'s predictions" in output
    # and a rerun of the promote stage does not undo the rollback
    write_trained({"ann": bad})
    assert promote(params, registry_project).decision == "skipped"
    assert champion() == good.version
    # and a second rollback has nowhere to go
    assert main(["rollback"]) == 2
    assert "nothing to roll back to" in capsys.readouterr().err
    table = registry_table(params, registry_project)
    assert "champion" in table and "cnn" in table


@pytest.mark.slow
def test_racing_promotions_in_separate_processes_keep_one_champion_and_full_history(
    registry_project: Path,
) -> None:
    versions = [
        register_candidate(registry_project, "cnn", range(step)).version for step in range(4)
    ]
    # when four processes promote at the same moment (each a process of its own, forked warm)
    environment = {
        **os.environ,
        "PATH": os.pathsep.join((str(warm_bin()), os.environ["PATH"])),
    }
    processes = [
        subprocess.Popen(
            ["digits", "promote", "--version", version, "--force"],
            env=environment,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for version in versions
    ]
    errors = [process.communicate(timeout=300)[1] for process in processes]
    assert [process.returncode for process in processes] == [0] * 4, errors
    # then every promotion is in the history and the alias agrees with its last entry
    client = mlflow.MlflowClient()
    model = client.get_registered_model("digit-recognizer")
    history = json.loads(model.tags[HISTORY_TAG])
    assert sorted(history) == sorted(versions), "every promotion is in the history"
    assert str(model.aliases[CHAMPION]) == history[-1], "one champion: the last promoted"
    params = load_params(Path("params.yaml"))
    assert rollback(params, registry_project) == (history[-1], history[-2])


def test_promote_without_the_version_fails_clearly(
    registry_project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["promote", "--version", "99"]) == 2
    assert "has no version 99" in capsys.readouterr().err
