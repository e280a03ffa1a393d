"""Team mode on the MLflow side, end to end: the project's own command starts PostgreSQL and
an authenticated MLflow server on 127.0.0.1, the pipeline runs against it, promotions from two
project folders are serialised by a lock they share, and everything stops again."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from digit_recognizer.locks import LOCK_URL_VARIABLE, advisory_lock
from tests.conftest import free_port
from tests.pipeline_fixtures import STAGES, commit_all, git_copy_with_tiny_data, ran_stages, run
from tests.registry_fixtures import register_candidate
from tests.test_serving import DIGITS, request, start, stop

MODEL = "digit-recognizer"


def client_settings(path: Path) -> dict[str, str]:
    """The variables an ``export NAME=value`` file sets."""
    pairs = (line.removeprefix("export ").split("=", 1) for line in path.read_text().splitlines())
    return dict(pairs)


def api(
    uri: str, method: str, path: str, user: dict[str, str] | None, body: Any = None
) -> tuple[int, Any]:
    """One REST call to the tracking server as ``user`` (None: no credentials)."""
    request = urllib.request.Request(
        f"{uri}/api/2.0/mlflow/{path}",
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    if user is not None:
        token = f"{user['MLFLOW_TRACKING_USERNAME']}:{user['MLFLOW_TRACKING_PASSWORD']}"
        request.add_header("Authorization", f"Basic {base64.b64encode(token.encode()).decode()}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        return error.code, None


def search_runs(uri: str, user: dict[str, str], experiment_id: str, where: str) -> list[Any]:
    status, found = api(
        uri,
        "POST",
        "runs/search",
        user,
        {"experiment_ids": [experiment_id], "filter": where, "max_results": 1000},
    )
    assert status == 200
    return list(found.get("runs", []))


def tag(run: dict[str, Any], name: str) -> str | None:
    return next((t["value"] for t in run["data"].get("tags", []) if t["key"] == name), None)


def advisory_lock_waiters(lock_url: str, seconds: float) -> int:
    """How many sessions wait for an advisory lock, once at least one does (or time is up)."""
    import psycopg

    deadline = time.monotonic() + seconds
    with psycopg.connect(lock_url, autocommit=True) as connection:
        while True:
            row = connection.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
            ).fetchone()
            waiting = int(row[0]) if row else 0
            if waiting or time.monotonic() > deadline:
                return waiting
            time.sleep(0.5)


def model_champion(uri: str, user: dict[str, str]) -> str:
    status, model = api(uri, "GET", f"registered-models/get?name={MODEL}", user)
    assert status == 200
    aliases = {a["alias"]: a["version"] for a in model["registered_model"]["aliases"]}
    return str(aliases["champion"])


@pytest.mark.slow
def test_the_team_server_runs_the_pipeline_and_serialises_promotions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a project whose params point the team server at free ports and a state folder
    # that PostgreSQL's own user can reach when the tests run as root
    state = Path(tempfile.mkdtemp(prefix="digits-team-server-", dir="/tmp"))
    state.chmod(0o711)
    first = tmp_path / "first"
    first.mkdir()
    environment = git_copy_with_tiny_data(first, labelled_test=True)
    del environment["MLFLOW_TRACKING_URI"]
    params = yaml.safe_load((first / "params.yaml").read_text())
    params["server"].update(state_dir=str(state), port=free_port(), database_port=free_port())
    (first / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    commit_all(first, environment, "team server on free ports")
    uri = f"http://127.0.0.1:{params['server']['port']}"
    try:
        # when the project's command starts the server, and the admin adds two users
        started = run(["digits", "server", "start"], first, environment)
        assert uri in started
        assert oct((state / "secrets.json").stat().st_mode)[-3:] == "600"
        admin = client_settings(state / "admin.env")
        assert admin["MLFLOW_TRACKING_PASSWORD"] != "password1234", "never MLflow's old default"
        run(["digits", "server", "add-user", "ana", "--permission", "edit"], first, environment)
        run(["digits", "server", "add-user", "rui", "--permission", "read"], first, environment)
        editor = {**environment, **client_settings(state / "ana.env")}
        reader = client_settings(state / "rui.env")
        assert LOCK_URL_VARIABLE in editor and LOCK_URL_VARIABLE not in reader, (
            "a read user's settings hold no database credentials"
        )

        # then strangers are turned away
        assert api(uri, "GET", f"registered-models/get?name={MODEL}", None)[0] == 401
        # and no password is in any process's arguments (what ps shows every local user)
        keys = json.loads((state / "secrets.json").read_text())
        for arguments in Path("/proc").glob("[0-9]*/cmdline"):
            try:
                shown = arguments.read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue  # the process ended
            for name, value in keys.items():
                assert value not in shown, f"{name} in the arguments of {arguments.parent.name}"
        # and a user name that is not a plain name is refused before anything is written
        refused = subprocess.run(
            ["digits", "server", "add-user", "../x"],
            cwd=first,
            env=environment,
            capture_output=True,
            text=True,
        )
        assert refused.returncode == 2 and "a user name is a letter" in refused.stderr
        assert not list(state.parent.glob("x.env")) and not (state / "../x.env").exists()

        # when the editor runs the whole pipeline against the server
        assert ran_stages(run(["dvc", "repro"], first, editor)) == set(STAGES)

        # then the server holds the runs, the nested trials, the artifacts and the versions
        status, experiment = api(
            uri, "GET", f"experiments/get-by-name?experiment_name={MODEL}", reader
        )
        assert status == 200
        experiment_id = experiment["experiment"]["experiment_id"]
        every_run = search_runs(uri, reader, experiment_id, "")
        assert {"prepare", "tune", "train", "evaluate", "baselines"} <= {
            tag(found, "stage") for found in every_run
        }
        assert {found["info"]["status"] for found in every_run} == {"FINISHED"}, "none RUNNING"
        searches = [
            found
            for found in search_runs(uri, reader, experiment_id, "tags.stage = 'tune'")
            if tag(found, "mlflow.parentRunId") is None
        ]
        for search in searches:
            trials = search_runs(
                uri,
                reader,
                experiment_id,
                f"tags.mlflow.parentRunId = '{search['info']['run_id']}'",
            )
            assert trials, f"no nested trial runs under {tag(search, 'family')}'s search"
        train_runs = search_runs(uri, reader, experiment_id, "tags.stage = 'train'")
        assert all(
            found["info"]["artifact_uri"].startswith("mlflow-artifacts:") for found in train_runs
        )
        assert list((state / "artifacts").rglob("MLmodel")), "artifacts went through the server"
        assert not (first / "mlruns").exists() and not (first / "mlflow.db").exists()
        status, versions = api(uri, "GET", f"model-versions/search?filter=name='{MODEL}'", reader)
        assert status == 200 and len(versions["model_versions"]) == 2
        status, model = api(uri, "GET", f"registered-models/get?name={MODEL}", reader)
        champion = model_champion(uri, reader)

        # and a read-only user may look but not move the champion
        move = {"name": MODEL, "alias": "champion", "version": "1"}
        assert api(uri, "POST", "registered-models/alias", reader, move)[0] == 403

        # and the registry commands work against the server
        assert f"{champion}" in run(["digits", "registry"], first, editor)
        assert uri in run(["digits", "ui"], first, editor)
        run(["digits", "predict", "--input", "data/test.csv", "--output", "p.csv"], first, editor)

        # given a second project folder, and two more versions to promote
        second = tmp_path / "second"
        shutil.copytree(first, second, symlinks=True)
        for name in ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
            monkeypatch.setenv(name, editor[name])
        extra = [register_candidate(first, "ann", range(step)).version for step in (1, 2)]
        assert extra == ["3", "4"]
        # when one client holds the shared lock, a promotion from the other folder waits
        with advisory_lock(editor[LOCK_URL_VARIABLE], f"digit-recognizer/registry/{MODEL}"):
            waiting = subprocess.Popen(
                ["digits", "promote", "--version", "3", "--force"],
                cwd=second,
                env=editor,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
            assert advisory_lock_waiters(editor[LOCK_URL_VARIABLE], seconds=120) == 1
            assert waiting.poll() is None, "the promotion did not wait for the lock"
            assert model_champion(uri, reader) == champion, "nothing moved while it waited"
        waiting_error = waiting.communicate(timeout=300)[1]
        assert waiting.returncode == 0, waiting_error
        # and two promotions from the two folders race
        racing = [
            subprocess.Popen(
                ["digits", "promote", "--version", version, "--force"],
                cwd=folder,
                env=editor,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
            for folder, version in ((first, "4"), (second, "1"))
        ]
        errors = [process.communicate(timeout=300)[1] for process in racing]
        assert [process.returncode for process in racing] == [0, 0], errors

        # then the history holds every promotion and agrees with the alias
        status, model = api(uri, "GET", f"registered-models/get?name={MODEL}", reader)
        tags = {t["key"]: t["value"] for t in model["registered_model"]["tags"]}
        history = json.loads(tags["champion_history"])
        assert history[0] == champion and history[1] == "3"
        assert sorted(history[2:]) == ["1", "4"], history
        assert model_champion(uri, reader) == history[-1]
        # and digits serve loads the champion through the server
        port = free_port()
        served = start(
            [*DIGITS, "serve", "--port", str(port)], first, f"http://127.0.0.1:{port}/ping"
        )
        try:
            status, answer = request(f"http://127.0.0.1:{port}/model")
            assert status == 200 and json.loads(answer)["version"] == history[-1], answer
        finally:
            stop(served)
    finally:
        # when the server stops, then nothing runs, and clients fail in one line naming it
        stopped = run(["digits", "server", "stop"], first, environment)
    assert "mlflow server" in stopped and "PostgreSQL" in stopped
    assert "stopped" in run(["digits", "server", "status"], first, environment)
    offline = subprocess.run(
        ["digits", "registry"],
        cwd=first,
        env={**editor, "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"},
        capture_output=True,
        text=True,
    )
    assert offline.returncode == 2 and offline.stderr.count("\n") == 1, offline.stderr
    assert uri in offline.stderr and "unreachable" in offline.stderr
    shutil.rmtree(state, ignore_errors=True)
