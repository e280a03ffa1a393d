"""Team mode on the MLflow side, end to end, as steps that share one server: the project's own
command starts PostgreSQL and an authenticated MLflow server over TLS; a teammate on a second
machine (a network namespace, when the tests run as root) runs the pipeline against it,
promotes, rolls back and serves; promotions from the two machines are serialised by the lock
they share; everything stops."""

from __future__ import annotations

import base64
import contextlib
import getpass
import ipaddress
import itertools
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psutil
import pytest
import yaml

from digit_recognizer.config.environment import LOCK_URL_VARIABLE, PREDICTION_LOG_URL_VARIABLE
from digit_recognizer.locks import advisory_lock
from digit_recognizer.team.state import StatePaths
from tests.helpers.accounts import server_account_let_through
from tests.helpers.pipeline import STAGES, commit_all, git_copy_with_tiny_data, ran_stages, run
from tests.helpers.registry import register_candidate
from tests.helpers.servers import free_port
from tests.helpers.warm_digits import warm_bin, warm_server_on

MODEL = "digit-recognizer"


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
    authority = (user or {}).get("MLFLOW_TRACKING_SERVER_CERT_PATH")
    context = ssl.create_default_context(cafile=authority) if authority else None
    try:
        with urllib.request.urlopen(request, timeout=30, context=context) as response:
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


# Counts the sessions waiting for an advisory lock, once one waits (or time is up).
WAITERS = """
import sys, time, psycopg
deadline = time.monotonic() + float(sys.argv[1])
with psycopg.connect(sys.stdin.read(), autocommit=True) as connection:
    while True:
        row = connection.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
        ).fetchone()
        if row[0] or time.monotonic() > deadline:
            print(row[0])
            break
        time.sleep(0.5)
"""


def advisory_lock_waiters(lock_url: str, seconds: float) -> int:
    """How many sessions wait for an advisory lock, asked from a process of its own: this one
    loaded TensorFlow, whose BoringSSL symbols crash libpq's SSL (see locks.advisory_lock)."""
    counted = subprocess.run(
        [sys.executable, "-c", WAITERS, str(seconds)],
        input=lock_url,  # not an argument: ps would show the password
        capture_output=True,
        text=True,
        check=True,
    )
    return int(counted.stdout)


def champion_history(uri: str, user: dict[str, str]) -> list[str]:
    status, model = api(uri, "GET", f"registered-models/get?name={MODEL}", user)
    assert status == 200
    tags = {t["key"]: t["value"] for t in model["registered_model"]["tags"]}
    return list(json.loads(tags["champion_history"]))


def wait_for_json(url: str, process: subprocess.Popen[bytes]) -> Any:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert process.poll() is None, f"exited with {process.returncode}"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return json.loads(response.read())
        except (urllib.error.URLError, OSError):
            time.sleep(1)
    raise AssertionError(f"{url} did not answer")


def model_champion(uri: str, user: dict[str, str]) -> str:
    status, model = api(uri, "GET", f"registered-models/get?name={MODEL}", user)
    assert status == 200
    aliases = {a["alias"]: a["version"] for a in model["registered_model"]["aliases"]}
    return str(aliases["champion"])


@dataclass(frozen=True)
class Machines:
    """Where the teammate's commands run: a network namespace joined to this machine by a veth
    pair (a second machine), or, without root, this machine itself."""

    namespace: str | None
    network: str
    server_address: str
    teammate_address: str

    def teammate(self, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.namespace, *argv] if self.namespace else argv


def _ip(*arguments: str) -> None:
    subprocess.run(["ip", *arguments], check=True, capture_output=True)


def _free_network(start: int) -> ipaddress.IPv4Network:
    """A 10.77.N.0/24 no interface here is on: a namespace left by a killed run (or another
    run's) keeps its route, and replies to a second 10.77.0.2 would go to it."""
    listed = subprocess.run(["ip", "-o", "-4", "addr"], capture_output=True, text=True, check=True)
    addresses = re.findall(r"inet (\S+)", listed.stdout)
    taken = {ipaddress.ip_interface(address).network for address in addresses}
    for offset in range(256):
        network = ipaddress.IPv4Network(f"10.77.{(start + offset) % 256}.0/24")
        if not any(network.overlaps(other) for other in taken):
            return network
    raise RuntimeError("no free 10.77.N.0/24 network for the second machine")


@contextlib.contextmanager
def two_machines() -> Iterator[Machines]:
    """A second machine at 10.77.N.2 reaching this one at 10.77.N.1, removed afterwards."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        yield Machines(None, "127.0.0.1/32", "127.0.0.1", "127.0.0.1")
        return
    suffix = str(os.getpid() % 100000)
    namespace, here, there = f"digits-mate-{suffix}", f"dgh{suffix}", f"dgm{suffix}"
    network = _free_network(os.getpid())
    server_address, teammate_address = (str(host) for host in itertools.islice(network.hosts(), 2))
    _ip("netns", "add", namespace)
    try:
        _ip("link", "add", here, "type", "veth", "peer", "name", there)
        _ip("link", "set", there, "netns", namespace)
        _ip("addr", "add", f"{server_address}/24", "dev", here)
        _ip("link", "set", here, "up")
        for command in (
            ("addr", "add", f"{teammate_address}/24", "dev", there),
            ("link", "set", there, "up"),
            ("link", "set", "lo", "up"),
        ):
            _ip("netns", "exec", namespace, "ip", *command)
        yield Machines(namespace, str(network), server_address, teammate_address)
    finally:
        left = subprocess.run(
            ["ip", "netns", "pids", namespace], capture_output=True, text=True, check=False
        ).stdout.split()
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
        subprocess.run(["ip", "netns", "delete", namespace], capture_output=True, check=False)
        subprocess.run(["ip", "link", "delete", here], capture_output=True, check=False)


def log_tail(log: Path, lines: int = 40) -> str:
    text = log.read_text(errors="replace") if log.exists() else "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def sourced(settings: Path, home: Path) -> dict[str, str]:
    """A fresh login's environment after ``source settings`` (only PATH and HOME before)."""
    home.mkdir(parents=True, exist_ok=True)
    bare = {"PATH": os.pathsep.join((str(warm_bin()), os.environ["PATH"]))}
    bare |= {"HOME": str(home), "LANG": "C.UTF-8"}
    printed = subprocess.run(
        ["bash", "-c", 'source "$1" && env -0', "bash", str(settings)],
        env=bare,
        capture_output=True,
        check=True,
    ).stdout.decode()
    return dict(line.split("=", 1) for line in printed.split("\0") if "=" in line)


# Who is connected to MLflow's database, and as what (asked in a process of its own: see
# advisory_lock_waiters).
SESSIONS = """
import json, sys, psycopg
with psycopg.connect(sys.stdin.read(), autocommit=True) as connection:
    def one(query):
        return connection.execute(query).fetchone()[0]
    print(json.dumps({
        "store_is_superuser": one("SELECT rolsuper FROM pg_roles WHERE rolname = 'digits_store'"),
        "database_owner": one(
            "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'mlflow'"
        ),
        "on_mlflow": sorted({row[0] for row in connection.execute(
            "SELECT usename FROM pg_stat_activity WHERE datname = 'mlflow'"
        )}),
    }))
"""


# Run on the teammate's machine: what answers there, and what is refused.
PROBE = """
import json, ssl, sys, urllib.request, psycopg
uri, authority, lock_url = sys.argv[1:4]
found = {}
def fetch(url, context=None):
    try:
        with urllib.request.urlopen(url, timeout=10, context=context) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except Exception as error:
        return type(error).__name__
found["https"] = fetch(f"{uri}/health", ssl.create_default_context(cafile=authority))
found["clear_http"] = fetch(uri.replace("https://", "http://", 1) + "/health")
found["stranger"] = fetch(
    f"{uri}/api/2.0/mlflow/registered-models/get?name=digit-recognizer",
    ssl.create_default_context(cafile=authority),
)
for mode in ("verify-full", "disable"):
    url = lock_url.split("?")[0] + f"?sslmode={mode}&sslrootcert={authority}"
    try:
        with psycopg.connect(url, connect_timeout=10, autocommit=True) as connection:
            found[mode] = "connected"
            try:
                connection.execute("CREATE TEMPORARY TABLE scratch (x int)")
                found["temporary_table"] = "created"
            except psycopg.Error as error:
                found["temporary_table"] = type(error).__name__
    except psycopg.Error as error:
        found[mode] = str(error).strip().splitlines()[0]
print(json.dumps(found))
"""

# What the team's prediction log holds of the given prediction ids, read with the settings'
# URL (the writer role, through the pure-Python driver), and whether that role may delete.
LOGGED = """
import json, os, sys, time
import sqlalchemy as sa
from digit_recognizer.config import MonitoringConfig
from digit_recognizer.monitoring.log import PredictionLog
log = PredictionLog(os.environ["DIGITS_PREDICTION_LOG_URL"])
found = {
    "known": sorted(log.known_ids(sys.argv[1:])),
    "corrections": log.newest_corrections(sys.argv[1:]),
    "retention": log.apply_retention(MonitoringConfig(retention_rows=1), time.time()),
}
with log.engine.connect() as connection:
    found["versions"] = sorted(
        {row[0] for row in connection.execute(sa.select(log.predictions.c.version))}
    )
    found["ssl"] = connection.execute(
        sa.text("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
    ).scalar()
try:
    with log.engine.begin() as connection:
        connection.execute(log.predictions.delete())
    found["delete"] = "deleted"
except sa.exc.DBAPIError:
    found["delete"] = "refused"
print(json.dumps(found))
"""

# Tries to end the admin's lock sessions with the lock URL read from stdin; says what happened.
TERMINATE = """
import sys, psycopg
with psycopg.connect(sys.stdin.read(), autocommit=True) as connection:
    try:
        ended = connection.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name LIKE 'digits admin@%'"
        ).fetchall()
        print(f"ended {ended}")
    except psycopg.errors.InsufficientPrivilege:
        print("refused")
"""


@dataclass
class TeamScenario:
    """One team server, its users' settings and a teammate's `dvc repro` against it: what the
    steps below share, in the order they are written."""

    machines: Machines
    folder: Path  # the users' homes and the colleague's copy go here
    state: Path
    project: Path
    teammate: Path
    environment: dict[str, str]
    params: dict[str, Any]
    uri: str
    started: str
    keys: dict[str, str]
    editor: dict[str, str]
    reader: dict[str, str]
    admin: dict[str, str]
    repro_output: str


# The steps share one server on one worker, in file order (xdist sends a group to one worker).
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("team_server")]


@pytest.fixture(scope="module")
def team(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TeamScenario]:
    # given a project whose params put the team server on this machine's address (on every
    # address with a namespace, as the README says), and a state folder that PostgreSQL's own
    # user can reach when the tests run as root
    folder = tmp_path_factory.mktemp("team")
    with (
        two_machines() as machines,
        server_account_let_through(),
        warm_server_on(machines.teammate) if machines.namespace else contextlib.nullcontext(),
    ):
        state = Path(tempfile.mkdtemp(prefix="digits-team-server-", dir="/tmp"))
        state.chmod(0o711)
        project = folder / "project"
        project.mkdir()
        environment = git_copy_with_tiny_data(project, labelled_test=True)
        del environment["MLFLOW_TRACKING_URI"]
        params = yaml.safe_load((project / "params.yaml").read_text())
        params["server"].update(state_dir=str(state), port=free_port(), database_port=free_port())
        if machines.namespace:
            params["server"].update(
                host="0.0.0.0",
                address=machines.server_address,
                database_host="0.0.0.0",
                allowed_networks=[machines.network],
            )
        params["serve"]["host"] = machines.teammate_address  # the teammate serves on their machine
        (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        commit_all(project, environment, "team server on free ports")
        try:
            # when the project's command starts the server, and the admin adds two users
            started = run(["digits", "server", "start"], project, environment)
            run(
                ["digits", "server", "add-user", "ana", "--permission", "edit"],
                project,
                environment,
            )
            run(
                ["digits", "server", "add-user", "rui", "--permission", "read"],
                project,
                environment,
            )
            # and each settings file is all its user gets, sourced on their own machine
            editor = sourced(state / "ana.env", folder / "ana-home")
            # and the teammate, on their machine, runs the whole pipeline against the server
            teammate = folder / "teammate"
            shutil.copytree(project, teammate, symlinks=True)
            try:
                repro_output = run(machines.teammate(["dvc", "repro"]), teammate, editor)
            except AssertionError as failure:  # what the server said is half the story
                paths = StatePaths(state)
                logs = (paths.mlflow_log, paths.postgres_log)
                tails = "".join(f"\n{log} ends:\n{log_tail(log)}" for log in logs)
                raise AssertionError(f"{failure}{tails}") from None
            yield TeamScenario(
                machines=machines,
                folder=folder,
                state=state,
                project=project,
                teammate=teammate,
                environment=environment,
                params=params,
                uri=f"https://{machines.server_address}:{params['server']['port']}",
                started=started,
                keys=json.loads((state / "secrets.json").read_text()),
                editor=editor,
                reader=sourced(state / "rui.env", folder / "rui-home"),
                admin=sourced(state / "admin.env", folder / "admin-home"),
                repro_output=repro_output,
            )
        finally:
            # the last step stops it and checks; this stops it when a step before failed
            subprocess.run(
                ["digits", "server", "stop"], cwd=project, env=environment, capture_output=True
            )
            shutil.rmtree(state, ignore_errors=True)


def test_each_user_gets_their_settings_and_no_secret_shows_in_any_process(
    team: TeamScenario,
) -> None:
    editor, reader, admin, state = team.editor, team.reader, team.admin, team.state
    assert team.uri in team.started
    assert oct((state / "secrets.json").stat().st_mode)[-3:] == "600"
    assert editor["MLFLOW_TRACKING_URI"] == team.uri and Path(
        editor["MLFLOW_TRACKING_SERVER_CERT_PATH"]
    ).is_relative_to(team.folder / "ana-home"), "the authority saved in the user's home"
    assert admin["MLFLOW_TRACKING_PASSWORD"] != "password1234", "never MLflow's old default"
    assert LOCK_URL_VARIABLE in editor and LOCK_URL_VARIABLE not in reader
    assert "postgresql://" not in (state / "rui.env").read_text(), (
        "a read user's settings hold no database credentials"
    )
    assert team.keys["database_password"] not in (state / "ana.env").read_text(), (
        "nobody gets the backend store's credentials"
    )
    # then no password is in any process's arguments (what ps shows every local user)
    secrets = {**team.keys, "ana": editor["MLFLOW_TRACKING_PASSWORD"]}
    secrets["rui"] = reader["MLFLOW_TRACKING_PASSWORD"]
    for arguments in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            shown = arguments.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue  # the process ended
        for name, value in secrets.items():
            assert value not in shown, f"{name} in the arguments of {arguments.parent.name}"
    # and a user name that is not a plain name is refused before anything is written
    refused = subprocess.run(
        ["digits", "server", "add-user", "../x"],
        cwd=team.project,
        env=team.environment,
        capture_output=True,
        text=True,
    )
    assert refused.returncode == 2 and "a user name is a letter" in refused.stderr
    assert not list(state.parent.glob("x.env")) and not (state / "../x.env").exists()


def test_from_another_machine_the_server_answers_over_tls_only(team: TeamScenario) -> None:
    # when the teammate's machine probes: then the server answers over TLS only, strangers get
    # 401, and PostgreSQL admits the lock role over SSL only
    editor = team.editor
    probed = json.loads(
        run(
            team.machines.teammate(
                [
                    sys.executable,
                    "-c",
                    PROBE,
                    team.uri,
                    editor["MLFLOW_TRACKING_SERVER_CERT_PATH"],
                    editor[LOCK_URL_VARIABLE],
                ]
            ),
            team.folder,
            editor,
        )
    )
    assert probed["https"] == 200 and probed["stranger"] == 401, probed
    assert probed["clear_http"] not in (200, 401), "no answer in clear text"
    assert probed["verify-full"] == "connected", probed
    assert probed["temporary_table"] == "InsufficientPrivilege", "the lock role only locks"
    assert urlsplit(editor[LOCK_URL_VARIABLE]).username == "digits_lock_ana", "ana's own"
    if team.machines.namespace:  # loopback may connect without SSL; other machines may not
        assert "no encryption" in probed["disable"], probed


def test_the_teammate_s_pipeline_lands_on_the_server(team: TeamScenario) -> None:
    uri, reader = team.uri, team.reader
    assert ran_stages(team.repro_output) == set(STAGES)
    # then the server holds the runs, the nested trials, the artifacts and the versions
    status, experiment = api(uri, "GET", f"experiments/get-by-name?experiment_name={MODEL}", reader)
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
            uri, reader, experiment_id, f"tags.mlflow.parentRunId = '{search['info']['run_id']}'"
        )
        assert trials, f"no nested trial runs under {tag(search, 'family')}'s search"
    train_runs = search_runs(uri, reader, experiment_id, "tags.stage = 'train'")
    assert all(
        found["info"]["artifact_uri"].startswith("mlflow-artifacts:") for found in train_runs
    )
    assert list((team.state / "artifacts").rglob("MLmodel")), "artifacts went through the server"
    assert not (team.teammate / "mlruns").exists() and not (team.teammate / "mlflow.db").exists()
    status, versions = api(uri, "GET", f"model-versions/search?filter=name='{MODEL}'", reader)
    assert status == 200 and len(versions["model_versions"]) == 2


def test_the_server_runs_unprivileged_and_its_files_are_its_own(team: TeamScenario) -> None:
    # then the state folder is the owner's alone: no file another account could read
    assert_owner_only(team.state)
    # and no process of the server runs as root: started by root, it runs as its account
    server = psutil.Process(int((team.state / "mlflow.pid").read_text()))
    owners = {process.username() for process in [server, *server.children(recursive=True)]}
    assert owners == ({"digits"} if os.geteuid() == 0 else {getpass.getuser()}), owners
    # and MLflow's store logs in as a role that owns its database, never as the superuser
    superuser = (
        f"postgresql://digits:{team.keys['database_password']}@127.0.0.1:"
        f"{team.params['server']['database_port']}/postgres?sslmode=disable"
    )
    sessions = json.loads(
        subprocess.run(
            [sys.executable, "-c", SESSIONS],
            input=superuser,  # not an argument: ps would show the password
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    assert sessions["store_is_superuser"] is False, sessions
    assert "digits_store" in sessions["on_mlflow"], sessions
    assert all(
        role == "digits_store" or role.startswith("digits_lock_") for role in sessions["on_mlflow"]
    ), sessions
    assert sessions["database_owner"] == "digits_store", sessions


def test_a_read_user_may_look_but_writes_nothing(team: TeamScenario) -> None:
    uri, reader = team.uri, team.reader
    champion = model_champion(uri, reader)
    experiment_id = api(uri, "GET", f"experiments/get-by-name?experiment_name={MODEL}", reader)[1][
        "experiment"
    ]["experiment_id"]
    run_id = search_runs(uri, reader, experiment_id, "")[0]["info"]["run_id"]
    writes = [
        ("experiments/create", {"name": "rui's"}),
        ("runs/create", {"experiment_id": experiment_id}),
        ("runs/set-tag", {"run_id": run_id, "key": "k", "value": "v"}),
        ("runs/log-metric", {"run_id": run_id, "key": "m", "value": 1, "timestamp": 1}),
        ("runs/delete", {"run_id": run_id}),
        ("registered-models/alias", {"name": MODEL, "alias": "champion", "version": "1"}),
        ("registered-models/set-tag", {"name": MODEL, "key": "k", "value": "v"}),
        ("model-versions/set-tag", {"name": MODEL, "version": "1", "key": "k", "value": "v"}),
    ]
    for path, body in writes:
        assert api(uri, "POST", path, reader, body)[0] == 403, path
    for path, body in [
        ("registered-models/alias", {"name": MODEL, "alias": "champion"}),
        ("model-versions/delete", {"name": MODEL, "version": "1"}),
        ("registered-models/delete", {"name": MODEL}),
    ]:
        assert api(uri, "DELETE", path, reader, body)[0] == 403, path
    assert model_champion(uri, reader) == champion


def test_the_registry_commands_work_from_the_teammate_s_machine(team: TeamScenario) -> None:
    teammate, editor = team.teammate, team.editor
    champion = model_champion(team.uri, team.reader)
    registry = run(team.machines.teammate(["digits", "registry"]), teammate, editor)
    assert f"{champion}" in registry
    assert team.uri in run(team.machines.teammate(["digits", "ui"]), teammate, editor)
    predict = ["digits", "predict", "--input", "data/test.csv", "--output", "p.csv"]
    run(team.machines.teammate(predict), teammate, editor)


def test_promotions_from_two_machines_wait_for_one_lock_and_roll_back(
    team: TeamScenario, monkeypatch: pytest.MonkeyPatch
) -> None:
    machines, teammate, editor, admin = team.machines, team.teammate, team.editor, team.admin
    uri, reader = team.uri, team.reader
    champion = model_champion(uri, reader)
    # given a colleague on the server's machine with the teammate's results, and two more
    # versions to promote
    colleague = team.folder / "colleague"
    shutil.copytree(teammate, colleague, symlinks=True)
    for name in (
        "MLFLOW_TRACKING_URI",
        "MLFLOW_TRACKING_USERNAME",
        "MLFLOW_TRACKING_PASSWORD",
        "MLFLOW_TRACKING_SERVER_CERT_PATH",
    ):
        monkeypatch.setenv(name, admin[name])
    extra = [register_candidate(colleague, "ann", range(step)).version for step in (1, 2)]
    assert extra == ["3", "4"]
    promote_three = ["promote", "--version", "3", "--force"]
    lock_name = f"digit-recognizer/registry/{MODEL}"
    # when the colleague holds the shared lock, a promotion from the teammate's machine
    # waits, and one with a short timeout gives up naming the holder
    with advisory_lock(admin[LOCK_URL_VARIABLE], lock_name, 60):
        short = yaml.safe_load((teammate / "params.yaml").read_text())
        short["promote"]["lock_timeout_seconds"] = 2.0
        (teammate / "short-wait.yaml").write_text(yaml.safe_dump(short))
        impatient = subprocess.run(
            machines.teammate(["digits", "--params", "short-wait.yaml", *promote_three]),
            cwd=teammate,
            env=editor,
            capture_output=True,
            text=True,
        )
        assert impatient.returncode == 2, impatient.stderr
        assert impatient.stderr.count("\n") == 1, impatient.stderr
        holder = f"held by admin@{socket.gethostname()} pid {os.getpid()}"
        assert holder in impatient.stderr, impatient.stderr
        waiting = subprocess.Popen(
            machines.teammate(["digits", *promote_three]),
            cwd=teammate,
            env=editor,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert advisory_lock_waiters(admin[LOCK_URL_VARIABLE], seconds=120) == 1
        assert waiting.poll() is None, "the promotion did not wait for the lock"
        # and the teammate's lock role cannot end the holder's session to take the lock
        ended = subprocess.run(
            machines.teammate([sys.executable, "-c", TERMINATE]),
            input=editor[LOCK_URL_VARIABLE],
            capture_output=True,
            text=True,
            check=True,
        )
        assert ended.stdout.strip() == "refused", ended.stdout
        assert model_champion(uri, reader) == champion, "nothing moved while it waited"
    waiting_error = waiting.communicate(timeout=300)[1]
    assert waiting.returncode == 0, waiting_error
    # and promotions from the two machines race
    racing = [
        subprocess.Popen(
            command,
            cwd=folder,
            env=settings,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for command, folder, settings in (
            (
                machines.teammate(["digits", "promote", "--version", "4", "--force"]),
                teammate,
                editor,
            ),
            (
                ["digits", "promote", "--version", "1", "--force"],
                colleague,
                {**team.environment, **admin},
            ),
        )
    ]
    errors = [process.communicate(timeout=300)[1] for process in racing]
    assert [process.returncode for process in racing] == [0, 0], errors

    # then the history holds every promotion and agrees with the alias
    history = champion_history(uri, reader)
    assert history[0] == champion and history[1] == "3"
    assert sorted(history[2:]) == ["1", "4"], history
    assert model_champion(uri, reader) == history[-1]
    # when the teammate rolls back, then the champion before the last is back
    run(machines.teammate(["digits", "rollback"]), teammate, editor)
    assert model_champion(uri, reader) == history[-2]


def test_the_teammate_serves_the_champion_and_logs_to_the_team_s_log(team: TeamScenario) -> None:
    machines, teammate, editor = team.machines, team.teammate, team.editor
    champion = model_champion(team.uri, team.reader)
    # when the teammate serves the champion on their machine, loaded through the server
    port = free_port()
    served = subprocess.Popen(
        machines.teammate(["digits", "serve", "--port", str(port)]),
        cwd=teammate,
        env=editor,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    served_at = f"http://{machines.teammate_address}:{port}"
    try:
        answer = wait_for_json(f"{served_at}/model", served)
        assert answer["version"] == champion, answer
        # and its answers and a correction go to the team's prediction log
        answered = urllib.request.urlopen(
            urllib.request.Request(
                f"{served_at}/invocations",
                data=json.dumps({"inputs": [[0] * 784, [255] * 784]}).encode(),
                headers={"Content-Type": "application/json"},
            ),
            timeout=60,
        )
        identifiers = answered.headers["X-Prediction-Id"].split(",")
        corrected = urllib.request.urlopen(
            urllib.request.Request(
                f"{served_at}/feedback",
                data=json.dumps({"prediction_id": identifiers[0], "label": 3}).encode(),
                headers={"Content-Type": "application/json"},
            ),
            timeout=60,
        )
        assert corrected.status == 204
    finally:
        os.killpg(served.pid, signal.SIGTERM)  # flushes the log's queue
        served.wait(timeout=30)
    # then the log holds them, read over SSL with the teammate's own settings, and the
    # writer role may read and add, never delete
    logged = json.loads(
        subprocess.run(
            machines.teammate([sys.executable, "-c", LOGGED, *identifiers]),
            cwd=teammate,
            env=editor,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    assert logged["known"] == sorted(identifiers), logged
    assert logged["corrections"] == {identifiers[0]: 3}, logged
    assert logged["versions"] == [champion], logged
    assert logged["delete"] == "refused" and logged["retention"] is None, logged
    assert logged["ssl"] is True, logged
    assert PREDICTION_LOG_URL_VARIABLE not in team.reader, "a read user writes no log"
    assert urlsplit(team.admin[PREDICTION_LOG_URL_VARIABLE]).username == "digits_log_owner"


def test_when_the_server_stops_clients_fail_in_one_line_naming_it(team: TeamScenario) -> None:
    # when the server stops, then nothing runs, and clients fail in one line naming it
    stopped = run(["digits", "server", "stop"], team.project, team.environment)
    assert "mlflow server" in stopped and "PostgreSQL" in stopped
    assert "stopped" in run(["digits", "server", "status"], team.project, team.environment)
    offline = subprocess.run(
        team.machines.teammate(["digits", "registry"]),
        cwd=team.teammate,
        env={**team.editor, "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"},
        capture_output=True,
        text=True,
    )
    assert offline.returncode == 2 and offline.stderr.count("\n") == 1, offline.stderr
    assert team.uri in offline.stderr and "unreachable" in offline.stderr


def assert_owner_only(state: Path) -> None:
    """No file or folder under ``state`` (the folder itself aside: the cluster's owner passes
    through it) lets its group or others in, and an unprivileged local account reads none."""
    import stat

    entries = [path for path in state.rglob("*") if not path.is_socket()]
    open_to_others = [
        str(path.relative_to(state))
        for path in entries
        if path.lstat().st_mode & 0o077 and not stat.S_ISLNK(path.lstat().st_mode)
    ]
    assert not open_to_others, f"readable beyond their owner: {open_to_others[:10]}"
    files = [str(path) for path in entries if path.is_file()]
    assert any(path.endswith("MLmodel") for path in files) and len(files) > 20
    as_nobody = subprocess.run(
        [
            "runuser",
            "-u",
            "nobody",
            "--",
            "/bin/sh",
            "-c",
            'for f; do [ -r "$f" ] && echo "$f"; done',
            "sh",
            *files,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert as_nobody.stdout == "", f"an unprivileged account reads: {as_nobody.stdout[:500]}"
