"""What a study found, from each seed's files: every model's metrics as mean, standard
deviation, min and max over the seeds (times as medians), and paired comparisons per seed
(CNN against ANN; the candidate chosen on validation against the champion)."""

from __future__ import annotations

import csv
import io
import json
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from digit_recognizer.errors import UserError

# the report stage's comparison.csv columns a study aggregates (accuracy is on the evaluation
# split: Kaggle's test.csv when it is labelled, else the holdout)
METRICS = ("accuracy", "macro_f1", "robust_accuracy", "train_seconds", "latency_ms_batch1")
COMPARED = ("accuracy", "robust_accuracy")


@dataclass(frozen=True)
class SeedResult:
    """One seed's experiment: every model's metrics, and the families' validation accuracy
    (what promotion chooses a candidate on)."""

    seed: int
    experiment: str
    evaluation_split: str
    kinds: dict[str, str]
    metrics: dict[str, dict[str, float]]  # model -> metric -> value
    validation_accuracy: dict[str, float]  # family -> value

    @property
    def candidate(self) -> str:
        """The family promotion would put forward: the best on validation, never on test."""
        return max(self.validation_accuracy, key=lambda family: self.validation_accuracy[family])


@dataclass(frozen=True)
class ChampionScores:
    """The champion when the study began, as its registered version's tags record it."""

    version: str
    evaluation_split: str
    metrics: dict[str, float]


def seed_result(
    seed: int, experiment: str, comparison_csv: str, family_scores: Mapping[str, str]
) -> SeedResult:
    """Parse one seed's comparison.csv and its families' scores.json texts."""
    try:
        rows = list(csv.DictReader(io.StringIO(comparison_csv)))
        metrics = {row["model"]: {key: float(row[key]) for key in METRICS} for row in rows}
        kinds = {row["model"]: row["kind"] for row in rows}
        scores = {family: json.loads(text) for family, text in family_scores.items()}
        validation = {
            family: float(values["validation_accuracy"]) for family, values in scores.items()
        }
        splits = {str(values.get("evaluation_split", "test")) for values in scores.values()}
    except (KeyError, ValueError, TypeError) as error:
        raise UserError(f"experiment {experiment}: unreadable report ({error!r})") from error
    if not rows or len(splits) != 1:
        raise UserError(f"experiment {experiment}: its reports name no single evaluation split")
    return SeedResult(seed, experiment, splits.pop(), kinds, metrics, validation)


def spread(values: Sequence[float]) -> dict[str, Any]:
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "min": min(values),
        "max": max(values),
        "median": statistics.median(values),
        "values": list(values),
    }


def paired(
    name: str, metric: str, seeds: Sequence[int], first: Sequence[float], second: Sequence[float]
) -> dict[str, Any]:
    """``first`` minus ``second`` seed by seed; wins: the seeds where ``first`` is ahead."""
    differences = [a - b for a, b in zip(first, second, strict=True)]
    return {
        "name": name,
        "metric": metric,
        "seeds": list(seeds),
        **spread(differences),
        "wins": sum(difference > 0 for difference in differences),
    }


def comparisons(
    results: Sequence[SeedResult], champion: ChampionScores | None
) -> list[dict[str, Any]]:
    seeds = [result.seed for result in results]
    found = []
    if all({"cnn", "ann"} <= result.metrics.keys() for result in results):
        for metric in COMPARED:
            found.append(
                paired(
                    "cnn against ann",
                    metric,
                    seeds,
                    [result.metrics["cnn"][metric] for result in results],
                    [result.metrics["ann"][metric] for result in results],
                )
            )
    if champion is not None and champion.evaluation_split == results[0].evaluation_split:
        for metric in COMPARED:
            if metric in champion.metrics:
                found.append(
                    paired(
                        f"candidate against champion v{champion.version}",
                        metric,
                        seeds,
                        [result.metrics[result.candidate][metric] for result in results],
                        [champion.metrics[metric]] * len(results),
                    )
                )
    return found


def summarise(
    results: Sequence[SeedResult],
    champion: ChampionScores | None,
    context: Mapping[str, Any],
) -> dict[str, Any]:
    """reports/study.json's content; ``context`` adds who ran it where (CPU, settings, run)."""
    splits = {result.evaluation_split for result in results}
    if len(splits) != 1:
        raise UserError(f"the seeds were scored on different splits: {', '.join(sorted(splits))}")
    models = set.intersection(*(set(result.metrics) for result in results))
    aggregated: dict[str, dict[str, Any]] = {
        model: {
            "kind": results[0].kinds[model],
            **{
                metric: spread([result.metrics[model][metric] for result in results])
                for metric in METRICS
            },
        }
        for model in models
    }
    ranked = dict(sorted(aggregated.items(), key=lambda item: -item[1]["accuracy"]["mean"]))
    return {
        **context,
        "evaluation_split": splits.pop(),
        "seeds": [result.seed for result in results],
        "experiments": {str(result.seed): result.experiment for result in results},
        "candidates": {str(result.seed): result.candidate for result in results},
        "champion": None if champion is None else champion.version,
        "models": ranked,
        "comparisons": comparisons(results, champion),
    }
