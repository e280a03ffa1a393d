"""The one layer that talks to MLflow: the store and its experiment, runs and child runs,
logged models and the model registry. Every other module goes through these names.

Nothing here imports MLflow at import time; each call does.
"""

from digit_recognizer.tracking.child_runs import ChildRuns
from digit_recognizer.tracking.logged_models import (
    LoggedModel,
    log_and_register_model,
    log_sklearn_model,
)
from digit_recognizer.tracking.model_registry import (
    CHAMPION,
    Registry,
    VersionRecord,
    alias_uri,
    download_keras_model,
    load_pyfunc,
    predict_labels,
    version_uri,
)
from digit_recognizer.tracking.runs import (
    FEEDBACK_PREDICTIONS_ARTIFACT,
    HOST_TAG,
    NOTE_TAG,
    PREDICTIONS_ARTIFACT,
    PROCESS_TAG,
    ROBUSTNESS_PREDICTIONS_ARTIFACT,
    close_orphaned_runs,
    describe_run,
    find_run,
    lineage_tags,
    load_run_dict,
    log_artifacts,
    log_datasets,
    log_dict,
    log_metrics,
    log_params,
    process_tags,
    run,
    set_tags,
)
from digit_recognizer.tracking.store import (
    Store,
    activate,
    project_root,
    tracking_uri,
    unreachable_server,
)

__all__ = [
    "CHAMPION",
    "FEEDBACK_PREDICTIONS_ARTIFACT",
    "HOST_TAG",
    "NOTE_TAG",
    "PREDICTIONS_ARTIFACT",
    "PROCESS_TAG",
    "ROBUSTNESS_PREDICTIONS_ARTIFACT",
    "ChildRuns",
    "LoggedModel",
    "Registry",
    "Store",
    "VersionRecord",
    "activate",
    "alias_uri",
    "close_orphaned_runs",
    "describe_run",
    "download_keras_model",
    "find_run",
    "lineage_tags",
    "load_pyfunc",
    "load_run_dict",
    "log_and_register_model",
    "log_artifacts",
    "log_datasets",
    "log_dict",
    "log_metrics",
    "log_params",
    "log_sklearn_model",
    "predict_labels",
    "process_tags",
    "project_root",
    "run",
    "set_tags",
    "tracking_uri",
    "unreachable_server",
    "version_uri",
]
