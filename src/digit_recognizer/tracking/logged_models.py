"""Models logged into a run: the Kaggle-row pyfunc (registered) and scikit-learn baselines,
each with the exact versions of the packages they need."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class LoggedModel:
    model_uri: str
    version: str


def log_and_register_model(
    keras_path: Path,
    registered_name: str,
    tags: Mapping[str, str],
    model_code: Path,
    signature: Any,
) -> LoggedModel:
    """Log the pyfunc that ``model_code`` builds (models-from-code: the file is stored and run
    at load, nothing pickled) around a saved Keras model, and register a new version."""
    import mlflow

    import digit_recognizer

    package_dir = Path(digit_recognizer.__file__).parent
    info = mlflow.pyfunc.log_model(
        name="model",
        python_model=str(model_code),
        artifacts={"keras_model": str(keras_path)},
        signature=signature,
        code_paths=[str(package_dir)],  # the model loads without this project installed
        pip_requirements=_pinned_requirements(),
    )
    # register_model prints "Created version ..." itself; the train stage says it in its line
    with contextlib.redirect_stderr(io.StringIO()):
        version = mlflow.register_model(info.model_uri, registered_name, tags=dict(tags))
    return LoggedModel(model_uri=info.model_uri, version=str(version.version))


def _pinned_requirements() -> list[str]:
    from importlib.metadata import PackageNotFoundError, version

    requirements = []
    for package in (
        "mlflow",
        "tensorflow-cpu",
        "keras",
        "numpy",
        "pandas",
        "pyarrow",
        "pyyaml",
        "pydantic",
        "scikit-learn",
    ):
        try:
            requirements.append(f"{package}=={version(package)}")
        except PackageNotFoundError:
            continue
    return requirements


def log_sklearn_model(estimator: Any, example: Any) -> str:
    """Log a scikit-learn model whose signature takes the columns of ``example`` (a frame)."""
    import mlflow
    from mlflow.models import infer_signature
    from skops.io import dumps, get_untrusted_types

    signature = infer_signature(example, estimator.predict(example.to_numpy()))
    # skops (no pickle) refuses types it does not know; these are the ones we just trained.
    trusted = get_untrusted_types(data=dumps(estimator))
    info = mlflow.sklearn.log_model(
        estimator,
        name="model",
        signature=signature,
        pip_requirements=_pinned_requirements(),
        skops_trusted_types=trusted,
    )
    return str(info.model_uri)
