"""`digits` with its libraries already imported, for the tests' many short pipeline runs.

A tiny stage does about a second of work after 8-12 s of importing TensorFlow, Keras, MLflow
and scikit-learn, and the suite runs about a hundred of them. A server imports those once and
forks a child per `digits` command; a `digits` on PATH before the environment's own hands the
child its arguments, working directory, environment and standard streams, relays signals to it
and exits with its status. The child runs the same `digit_recognizer.cli.main` a fresh process
would, after the same environment is in place (thread budgets are read by TensorFlow when it
first runs, not when it is imported). Its interpreter is named as this folder's `python`, so the
pipelines it starts (a study's queue, a retrain) find this `digits` beside it and start warm too.
Each machine (network namespace) has its own server. Commands that must be a process of their
own (servers a test kills or restarts), another user's, or those of a namespace without a
server run the real `digits`.
"""

from __future__ import annotations

import array
import atexit
import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path

# Commands a test may signal or kill as a process of its own, or which outlive the command.
OWN_PROCESS = {"serve", "server", "ui", "page"}
PR_SET_PDEATHSIG = 1

CLIENT = r"""
import array, json, os, signal, socket, struct, sys

def real():
    os.execv(REAL, [REAL, *sys.argv[1:]])

arguments = sys.argv[1:]
if not arguments or arguments[0] in OWN_PROCESS:
    real()
netns = os.readlink("/proc/self/ns/net")
connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
try:
    connection.connect(os.path.join(SOCKETS, netns.strip("net:[]")))
except OSError:
    real()
request = json.dumps({
    "argv": arguments, "cwd": os.getcwd(), "environ": dict(os.environ), "netns": netns,
}).encode()
connection.sendmsg(
    [struct.pack("!I", len(request)), request],
    [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [0, 1, 2]))],
)
reply = connection.makefile("rb")
first = reply.readline()
if first.startswith(b"refused"):
    real()
child = int(first)
for number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
    signal.signal(number, lambda received, frame: os.kill(child, received))
status = reply.readline()
sys.exit(int(status) if status else 128 + signal.SIGKILL)
"""


def _serve_forever(listener: socket.socket, python: str) -> None:
    netns = os.readlink("/proc/self/ns/net")
    while True:
        connection, _ = listener.accept()
        _reap()
        descriptors: list[int] = []
        try:  # a client that went away mid-request costs its request, never the server
            header, descriptors = _receive(connection)
            request = json.loads(header)
            peer_uid = struct.unpack(
                "3i",
                connection.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")),
            )[1]
            if request["netns"] != netns or peer_uid != os.getuid():
                connection.sendall(b"refused\n")
            elif os.fork() == 0:
                listener.close()
                _run_child(connection, descriptors, request, python)
        except (OSError, ValueError) as error:
            print(f"warm digits: a request failed: {error}", file=sys.stderr, flush=True)
        for descriptor in descriptors:
            os.close(descriptor)
        connection.close()


def _reap() -> None:
    try:
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass
    except ChildProcessError:
        pass


def _receive(connection: socket.socket) -> tuple[bytes, list[int]]:
    size_bytes, ancillary, _, _ = connection.recvmsg(
        4, socket.CMSG_SPACE(3 * array.array("i").itemsize)
    )
    descriptors = array.array("i")
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            descriptors.frombytes(data[: len(data) - len(data) % descriptors.itemsize])
    (size,) = struct.unpack("!I", size_bytes)
    body = b""
    while len(body) < size:
        received = connection.recv(size - len(body))
        if not received:
            raise ConnectionError("the client went away")
        body += received
    return body, list(descriptors)


def _run_child(
    connection: socket.socket, descriptors: list[int], request: dict, python: str
) -> None:
    """The command, in the forked child; never returns (the child must not serve)."""
    status = 1
    try:
        for target, descriptor in enumerate(descriptors):
            os.dup2(descriptor, target)
            os.close(descriptor)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["environ"])
        sys.argv = ["digits", *request["argv"]]
        # digits runs the programs beside its interpreter (dvc, and digits for DVC's stages):
        # the warm folder's, so the stages of a pipeline it starts (a study, a retrain) are warm
        sys.executable = python
        for number in (signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD):
            signal.signal(number, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        connection.sendall(f"{os.getpid()}\n".encode())
        from digit_recognizer.cli import main

        status = main(request["argv"])
    except SystemExit as exit_:
        status = exit_.code if isinstance(exit_.code, int) else 1
    except BaseException:
        traceback.print_exc()
    finally:
        # what a normal interpreter exit does: wait for threads, run atexit (MLflow ends runs)
        threading._shutdown()  # type: ignore[attr-defined]
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
        with contextlib.suppress(OSError):
            connection.sendall(f"{status}\n".encode())
        os._exit(status)


def _import_libraries() -> None:
    from digit_recognizer import console

    console.quiet_libraries()
    console.import_tensorflow_quietly()
    import keras  # noqa: F401
    import matplotlib.pyplot  # noqa: F401
    import mlflow
    import mlflow.store.tracking.sqlalchemy_store  # noqa: F401
    import sklearn.ensemble  # noqa: F401
    from mlflow.utils import requirements_utils

    import digit_recognizer.cli  # noqa: F401

    # the installed packages' module map MLflow builds (2 s) before it logs each model
    requirements_utils._init_modules_to_packages_map()


def main() -> None:
    sockets, python = sys.argv[1:3]
    # ends with the test process that started it, however that ends (not passed to children)
    ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    _import_libraries()
    # one server per network namespace (a machine): a command finds its own by its namespace
    socket_path = Path(sockets) / os.readlink("/proc/self/ns/net").strip("net:[]")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(f"{socket_path}.tmp")
    os.rename(f"{socket_path}.tmp", socket_path)
    listener.listen(64)
    _serve_forever(listener, python)


WARM = Path(tempfile.gettempdir()) / f"warm-digits-{os.getpid()}"


def _write_bin(folder: Path) -> None:
    """The environment's programs, but `digits` the warm one and `python` the environment's
    under this folder's name."""
    environment_bin = Path(sys.executable).parent
    folder.mkdir(parents=True)
    for program in environment_bin.iterdir():
        if program.name == "digits":
            (folder / "digits").write_text(
                f"#!{sys.executable} -IS\n"
                f"REAL = {str(program)!r}\nSOCKETS = {str(WARM / 'sockets')!r}\n"
                f"OWN_PROCESS = {sorted(OWN_PROCESS)!r}\n{CLIENT}"
            )
            (folder / "digits").chmod(0o755)
        elif program.name.startswith("python"):
            (folder / program.name).write_text(f'#!/bin/sh\nexec {sys.executable} "$@"\n')
            (folder / program.name).chmod(0o755)
        else:
            (folder / program.name).symlink_to(program)


def _start_server(machine: Callable[[list[str]], list[str]]) -> subprocess.Popen[bytes]:
    """A warm server on ``machine`` (which wraps a command to run it there); until it has
    imported everything and listens, `digits` there runs the real one."""
    return subprocess.Popen(
        machine(
            [
                sys.executable,
                "-m",
                "tests.helpers.warm_digits",
                str(WARM / "sockets"),
                str(WARM / "bin" / "python"),
            ]
        ),
        cwd=Path(__file__).resolve().parents[2],
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )


def warm_bin() -> Path:
    """A folder whose `digits` runs on this machine's warm server, started on first use (one
    per test process)."""
    if not (WARM / "bin").exists():
        shutil.rmtree(WARM, ignore_errors=True)  # a folder a killed run of this pid left
        _write_bin(WARM / "bin")
        (WARM / "sockets").mkdir()
        atexit.register(_start_server(lambda command: command).kill)
        atexit.register(shutil.rmtree, WARM, ignore_errors=True)
    return WARM / "bin"


@contextlib.contextmanager
def warm_server_on(machine: Callable[[list[str]], list[str]]) -> Iterator[None]:
    """A warm server on another machine (a network namespace) while the block runs."""
    warm_bin()
    server = _start_server(machine)
    try:
        yield
    finally:
        server.kill()
        server.wait()


if __name__ == "__main__":
    main()
