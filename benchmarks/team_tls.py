"""What TLS costs the team server: two servers started by the project's own code on loopback,
one with `server.tls: true` (the default), one with `tls: false`, and the same MLflow client
calls alternated between them, round after round.

    python -m benchmarks.team_tls --rounds 6 --calls 40

Each round makes `--calls` authenticated `get_experiment_by_name` requests (the kind a
pipeline makes hundreds of) against each server in turn; the median per-request time of each
server over the rounds, and their ratio, go to reports/benchmarks/team_tls.json. Needs
PostgreSQL's programs, as `make test` does; everything runs in a temporary folder and is
stopped afterwards.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks.common import write_report
from digit_recognizer.config import MlflowConfig, TeamServerConfig
from digit_recognizer.team import server
from digit_recognizer.team.state import load_secrets, state_paths


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def per_request_ms(config: TeamServerConfig, root: Path, calls: int) -> float:
    import mlflow

    keys = load_secrets(state_paths(config, root))
    os.environ["MLFLOW_TRACKING_USERNAME"] = "admin"
    os.environ["MLFLOW_TRACKING_PASSWORD"] = keys["admin_password"]
    authority = state_paths(config, root).tls / "ca.pem"
    if config.tls:
        os.environ["MLFLOW_TRACKING_SERVER_CERT_PATH"] = str(authority)
    else:
        os.environ.pop("MLFLOW_TRACKING_SERVER_CERT_PATH", None)
    client = mlflow.MlflowClient(server.tracking_uri_of(config))
    started = time.perf_counter()
    for _ in range(calls):
        client.get_experiment_by_name(MlflowConfig().experiment_name)
    return (time.perf_counter() - started) / calls * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--calls", type=int, default=40)
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="digits-tls-bench-", dir="/tmp") as folder:
        root = Path(folder)
        root.chmod(0o711)
        configs = {
            name: TeamServerConfig(
                tls=tls,
                port=free_port(),
                database_port=free_port(),
                state_dir=str(root / name),
                workers=1,
            )
            for name, tls in (("https", True), ("http", False))
        }
        try:
            for config in configs.values():
                server.start(config, root)
            for config in configs.values():
                per_request_ms(config, root, 5)  # warm: connections, the auth cache
            times: dict[str, list[float]] = {name: [] for name in configs}
            for _ in range(arguments.rounds):
                for name, config in configs.items():
                    times[name].append(per_request_ms(config, root, arguments.calls))
        finally:
            for config in configs.values():
                server.stop(config, root)
    medians = {name: statistics.median(values) for name, values in times.items()}
    for name, values in times.items():
        rounds = ", ".join(f"{value:.1f}" for value in values)
        print(f"{name}: median {medians[name]:.1f} ms per request (rounds: {rounds})")
    ratio = medians["https"] / medians["http"]
    print(f"https / http: {ratio:.2f}x")
    rounded = {name: [round(value, 2) for value in values] for name, values in times.items()}
    results = {
        "calls_per_round": arguments.calls,
        "rounds_ms": rounded,
        "ratio": round(ratio, 3),
        "median_ms": {name: round(value, 2) for name, value in medians.items()},
    }
    print(f"written {write_report(Path.cwd(), 'team_tls', results)}")


if __name__ == "__main__":
    main()
