"""Shared fixtures (a project folder, a real temporary MLflow store, one reproduced pipeline)
and the marker of each test's group; the helpers they use live in tests/helpers/."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from _pytest.nodeid import NodeId

from tests.helpers.project import (
    ReproducedProject,
    copy_data_stage_outputs,
    run_data_stages,
    write_tiny_project,
)

# Tests live in a folder per what they guard; each folder's tests carry its marker, so
# `pytest -m data` (or `-m "not team"`) picks a group. Slow tests are marked `slow` besides.
GROUPS = ("code", "data", "model", "e2e", "team")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        group = item.path.parent.name
        if group not in GROUPS:
            raise pytest.UsageError(f"{item.nodeid}: a test belongs in one of tests/{GROUPS}")
        item.add_marker(group)
        # one worker builds the reproduced project (minutes) and runs every test that reads it
        if "reproduced" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.xdist_group("reproduced"))
    # slow tests first: xdist hands out tests in this order, so the minutes-long ones start at
    # once and the short ones fill both workers at the end, instead of one worker finishing a
    # long test alone (stable: a group's tests keep their file order)
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
    if hasattr(config, "workerinput") and config.getvalue("loadgroup"):
        for item in items:
            name_group(item)


def name_group(item: pytest.Item) -> None:
    """Put a grouped test's group in its node id, which --dist loadgroup schedules by: xdist 3.8
    writes that suffix to ``_nodeid``, an attribute pytest 9 no longer reads, so no test was
    grouped."""
    groups = sorted({str(mark.args[0]) for mark in item.iter_markers("xdist_group")})
    if groups and "@" not in item.nodeid:
        item._id = NodeId.parse(f"{item.nodeid}@{'_'.join(groups)}")


@pytest.fixture(scope="session")
def mlflow_store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One real sqlite MLflow store for the session (creating its schema takes seconds)."""
    folder = tmp_path_factory.mktemp("mlflow")
    return f"sqlite:///{folder / 'mlflow.db'}"


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mlflow_store: str) -> Iterator[Path]:
    """A project folder with tiny data tracked by data.dvc, and params, as the working directory."""
    import mlflow

    write_tiny_project(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_store)
    mlflow.set_tracking_uri(mlflow_store)  # not the store an earlier test in this process set
    yield tmp_path


@pytest.fixture(scope="session")
def prepared_tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny project after its data stages, tracked in a store of its own: made once per
    worker and copied by `prepared_project` (the stages take seconds each, in many tests)."""
    folder = tmp_path_factory.mktemp("prepared-tiny")
    with pytest.MonkeyPatch.context() as patch:
        write_tiny_project(folder)
        patch.chdir(folder)
        patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{folder / 'data-stages.db'}")
        run_data_stages()
    return folder


@pytest.fixture
def prepared_project(project: Path, prepared_tiny: Path) -> Path:
    """`project` with the data stages' outputs in place, as if it had run them."""
    copy_data_stage_outputs(prepared_tiny, project)
    return project


@pytest.fixture(scope="session")
def reproduced(tmp_path_factory: pytest.TempPathFactory) -> ReproducedProject:
    """A git copy of the repository with tiny data after one whole `dvc repro`, committed and
    pushed to a git remote (a bare repository), with a DVC remote (a folder, as a mounted share
    would be). Shared by the end-to-end tests to pay for one repro; a test that changes the
    workspace puts it back."""
    from tests.helpers.pipeline import commit_all, git_copy_with_tiny_data, run

    folder = tmp_path_factory.mktemp("reproduced")
    environment = git_copy_with_tiny_data(folder, labelled_test=True)
    remotes = tmp_path_factory.mktemp("remotes")
    run(["git", "init", "-q", "--bare", str(remotes / "origin.git")], folder, environment)
    run(["git", "remote", "add", "origin", str(remotes / "origin.git")], folder, environment)
    run(["dvc", "remote", "add", "-d", "team", str(remotes / "dvc-cache")], folder, environment)
    output = run(["dvc", "repro"], folder, environment)
    commit_all(folder, environment, "results")
    run(["git", "push", "-q", "origin", "HEAD:refs/heads/main"], folder, environment)
    return ReproducedProject(folder, environment, output)
