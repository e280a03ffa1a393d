"""``digits study --seeds 42 43 44``: the whole pipeline once per seed through DVC's experiment
queue, every model's metrics aggregated over the seeds and compared seed by seed, an MLflow
parent run "study" over the seeds' runs, and the pages users read regenerated from
reports/study.json (``digits study --render`` regenerates them alone)."""

from __future__ import annotations

import datetime
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from digit_recognizer import tracking
from digit_recognizer.config import FAMILIES, Params
from digit_recognizer.errors import UserError
from digit_recognizer.evaluation.scores import evaluation_score
from digit_recognizer.files import replace_block, write_json, write_text
from digit_recognizer.runtime.cpu import cpu_model
from digit_recognizer.study.experiments import (
    committed_file,
    experiment_ref,
    queue_experiment,
    require_idle_queue,
    run_queued,
)
from digit_recognizer.study.pages import (
    README_BEGIN,
    README_END,
    readme_block,
    results_page,
    single_run_block,
    single_run_page,
)
from digit_recognizer.study.summary import (
    METRICS,
    ChampionScores,
    SeedResult,
    seed_result,
    summarise,
)

RESULTS_PAGE = Path("docs") / "results.md"
README = Path("README.md")


def study_path(params: Params) -> Path:
    return Path(params.paths.reports_dir) / "study.json"


def check_request(seeds: Sequence[int], settings: Sequence[str], jobs: int) -> None:
    if jobs < 1:
        raise UserError(f"--jobs {jobs}: give 1 or more queue workers")
    if not seeds or len(set(seeds)) != len(seeds):
        raise UserError(f"--seeds: give distinct seeds, got {' '.join(map(str, seeds)) or 'none'}")
    for setting in settings:
        key, equals, _ = setting.partition("=")
        if not equals or not key.strip():
            raise UserError(f"--set-param {setting}: expected key=value (train.cnn.max_epochs=5)")
        if key.strip() == "seed":
            raise UserError("--set-param seed=...: the seeds come from --seeds")


def champion_scores(registry: tracking.Registry) -> ChampionScores | None:
    """The champion's headline metrics as its version's tags hold them (None: no champion)."""
    version = registry.alias(tracking.CHAMPION)
    record = registry.version(version) if version else None
    accuracy = evaluation_score(record.tags, "accuracy") if record else None
    if record is None or accuracy is None:
        return None
    metrics = {"accuracy": float(accuracy)}
    if "robust_accuracy" in record.tags:
        metrics["robust_accuracy"] = float(record.tags["robust_accuracy"])
    return ChampionScores(record.version, record.tags.get("evaluation_split", "test"), metrics)


def read_seed(params: Params, root: Path, seed: int, name: str) -> SeedResult:
    ref = experiment_ref(root, name)
    if ref is None:
        raise UserError(f"seed {seed}: experiment {name} failed; `dvc queue logs {name}` says why")
    comparison = committed_file(root, ref, Path(params.paths.reports_dir) / "comparison.csv")
    scores: dict[str, str] = {
        family: committed_file(root, ref, params.paths.all_scores(family)) for family in FAMILIES
    }
    return seed_result(seed, name, comparison, scores)


def _record_in_mlflow(
    store: tracking.Store, study_run_id: str, results: Sequence[SeedResult], study: dict[str, Any]
) -> None:
    """One child run per seed (its metrics; its stage runs moved under it) and the aggregates
    on the parent, so the UI groups the seeds and charts their spread."""
    children = tracking.ChildRuns(store, study_run_id, "seed")
    for result in results:
        key = str(result.seed)
        tags = {"stage": "study", "dvc_experiment": result.experiment}
        seed_run_id = children.start(key, f"seed {result.seed}", {"seed": result.seed}, tags)
        metrics = {
            f"{model}_{metric}": values[metric]
            for model, values in result.metrics.items()
            for metric in METRICS
        }
        children.finish(key, "FINISHED", metrics, {"candidate": result.candidate})
        if seed_run_id is not None:
            tracking.adopt_runs(store, seed_run_id, {"dvc_experiment": result.experiment})
    aggregates = {
        f"{model}_{metric}_{statistic}": values[metric][statistic]
        for model, values in study["models"].items()
        for metric in METRICS
        for statistic in ("mean", "std", "min", "max")
    }
    tracking.log_metrics(aggregates)


def pages(params: Params, root: Path) -> dict[Path, str]:
    """docs/results.md and the README's results block, from reports/study.json; before any
    study, from the report stage's reports/summary.md (one run)."""
    source = root / study_path(params)
    if source.exists():
        try:
            study = json.loads(source.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise UserError(f"{source}: not JSON ({error})") from error
        return {RESULTS_PAGE: results_page(study), README: readme_block(study)}
    summary = root / params.paths.reports_dir / "summary.md"
    if not summary.exists():
        raise UserError(f"{source}: not found; run digits study --seeds 42 43 44 first")
    text = summary.read_text(encoding="utf-8")
    return {
        RESULTS_PAGE: single_run_page(text, params.seed),
        README: single_run_block(text, params.seed),
    }


def render(params: Params, root: Path) -> list[Path]:
    """Write the pages users read of the results; those the project has (docs/, README)."""
    written = []
    for path, content in pages(params, root).items():
        target = root / path
        if path == README and target.exists():
            text = target.read_text(encoding="utf-8")
            if README_BEGIN not in text or README_END not in text:
                raise UserError(f"{target}: has no results block ({README_BEGIN} ...)")
            replace_block(target, README_BEGIN, README_END, content)
        elif path == RESULTS_PAGE and target.parent.is_dir():
            write_text(target, content)
        else:
            continue
        written.append(target)
    return written


def run_study(
    params: Params, root: Path, seeds: Sequence[int], settings: Sequence[str], jobs: int
) -> Path:
    """Queue and run one experiment per seed, aggregate, record, render; reports/study.json."""
    check_request(seeds, settings, jobs)
    require_idle_queue(root)
    store = tracking.Store.for_project(params.mlflow, root)
    champion = champion_scores(tracking.Registry(store, params.mlflow.registered_model_name))
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%d-%H%M%S")
    names = {seed: f"study-{stamp}-seed{seed}" for seed in seeds}
    with tracking.run(store, f"study {stamp}", {"stage": "study"}) as study_run_id:
        tracking.log_params({"seeds": " ".join(map(str, seeds)), "settings": " ".join(settings)})
        tracking.describe_run(
            f"{len(seeds)} seeds of the whole pipeline ({', '.join(names.values())}); "
            "each seed's runs are nested under it"
        )
        for seed, name in names.items():
            queue_experiment(root, name, [f"seed={seed}", *settings])
        run_queued(root, jobs)
        results = [read_seed(params, root, seed, name) for seed, name in names.items()]
        context = {
            "cpu": cpu_model(),
            "cores": os.cpu_count(),
            "settings": list(settings),
            "run_id": study_run_id,
        }
        study = summarise(results, champion, context)
        _record_in_mlflow(store, study_run_id, results, study)
        output = root / study_path(params)
        write_json(output, study)
        tracking.log_artifacts([output])
    return output
