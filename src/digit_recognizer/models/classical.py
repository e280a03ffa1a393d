"""scikit-learn baselines (the second seed's comparison): plain estimator builders and grids."""

from __future__ import annotations

import itertools
from typing import Any

from digit_recognizer.config import BaselinesConfig

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
