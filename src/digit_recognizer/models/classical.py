"""scikit-learn baselines (the second reference project's comparison): plain estimator
builders, their grids, the grid searched on validation, and their size."""

from __future__ import annotations

import itertools
import time
from typing import Any

import numpy as np
import numpy.typing as npt

from digit_recognizer.config import BaselinesConfig
from digit_recognizer.runtime.threads import threads_in_use

BASELINES = ("knn", "decision_tree", "random_forest", "logistic_regression")


def build_baseline(name: str, settings: dict[str, Any], n_jobs: int, seed: int) -> Any:
    """An unfitted estimator taking raw 0-255 pixel rows."""
    from sklearn.decomposition import PCA
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import MinMaxScaler
    from sklearn.tree import DecisionTreeClassifier

    if name == "knn":  # PCA first: 50 components keep the digits and make neighbours cheap
        return make_pipeline(
            PCA(settings["pca_components"], random_state=seed),
            KNeighborsClassifier(settings["neighbors"], n_jobs=n_jobs),
        )
    if name == "decision_tree":
        return DecisionTreeClassifier(max_depth=settings["max_depth"], random_state=seed)
    if name == "random_forest":
        return RandomForestClassifier(
            n_estimators=settings["n_estimators"],
            max_depth=settings["max_depth"],
            n_jobs=n_jobs,
            random_state=seed,
        )
    if name == "logistic_regression":
        return make_pipeline(
            MinMaxScaler(),
            LogisticRegression(C=settings["inverse_regularization"], max_iter=settings["max_iter"]),
        )
    raise ValueError(f"unknown baseline {name!r}; expected one of {BASELINES}")


def candidate_settings(name: str, config: BaselinesConfig) -> list[dict[str, Any]]:
    """Every combination of the listed values in this baseline's section."""
    section = getattr(config, name).model_dump()
    grid = {key: value if isinstance(value, list) else [value] for key, value in section.items()}
    return [dict(zip(grid, values, strict=True)) for values in itertools.product(*grid.values())]


def fit_best(
    name: str,
    config: BaselinesConfig,
    seed: int,
    train_images: npt.NDArray[np.uint8],
    train_labels: npt.NDArray[np.uint8],
    validation_images: npt.NDArray[np.uint8],
    validation_labels: npt.NDArray[np.uint8],
) -> tuple[Any, dict[str, Any], float, float]:
    """Fit every grid candidate on train; keep the best on validation (model, settings,
    validation accuracy, fit seconds of the kept model)."""
    best: tuple[Any, dict[str, Any], float, float] | None = None
    for settings in candidate_settings(name, config):
        estimator = build_baseline(name, settings, threads_in_use(), seed)
        started = time.monotonic()
        estimator.fit(train_images, train_labels)
        fit_seconds = time.monotonic() - started
        accuracy = float((estimator.predict(validation_images) == validation_labels).mean())
        print(
            f"baselines {name}: {settings} validation accuracy {accuracy:.4f} "
            f"(fit {fit_seconds:.1f}s)",
            flush=True,
        )
        if best is None or accuracy > best[2]:
            best = (estimator, settings, accuracy, fit_seconds)
    assert best is not None, "candidate_settings always yields at least one candidate"
    return best


def parameter_count(estimator: Any) -> int:
    """Stored numbers that define the fitted model (what a neural network calls parameters)."""
    final = estimator.steps[-1][1] if hasattr(estimator, "steps") else estimator
    if hasattr(final, "coef_"):
        return int(final.coef_.size + final.intercept_.size)
    if hasattr(final, "tree_"):
        return int(final.tree_.node_count * 3)
    if hasattr(final, "estimators_"):
        return int(sum(tree.tree_.node_count * 3 for tree in final.estimators_))
    if hasattr(final, "_fit_X"):  # KNN keeps its (projected) training set
        pca = estimator.steps[-2][1]
        return int(final._fit_X.size + pca.components_.size)
    return 0
