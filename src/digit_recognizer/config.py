"""params.yaml parsed once into frozen, typed objects; unknown or mistyped keys are refused.

Every stage receives the piece of configuration it needs; nothing reads params.yaml again.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveInt,
    ValidationError,
    field_validator,
    model_validator,
)

from digit_recognizer.errors import UserError

Family = Literal["ann", "cnn"]
FAMILIES: tuple[Family, ...] = ("ann", "cnn")


class Section(BaseModel):
    """Base for every section: no unknown keys, no silent type coercion, immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class PathsConfig(Section):
    """Every file location the stages read or write; dvc.yaml interpolates the same keys."""

    data_dir: str = "data"
    prepared_dir: str = "prepared"
    reports_dir: str = "reports"
    metrics_dir: str = "metrics"
    tuning_dir: str = "tuning"
    hyperparameters_dir: str = "hyperparameters"
    models_dir: str = "models"
    plots_dir: str = "plots"
    submissions_dir: str = "submissions"
    robustness_dir: str = "robustness"

    @property
    def robustness_set(self) -> Path:
        return Path(self.robustness_dir) / "robustness.npz"

    @property
    def robustness_examples(self) -> Path:
        return Path(self.robustness_dir) / "examples.png"

    @property
    def train_csv(self) -> Path:
        return Path(self.data_dir) / "train.csv"

    @property
    def test_csv(self) -> Path:
        return Path(self.data_dir) / "test.csv"

    def headline_metrics(self, model: str) -> Path:
        """A model's DVC metrics: the few numbers `dvc metrics show` compares across models."""
        return Path(self.metrics_dir) / f"{model}.json"

    def all_scores(self, model: str) -> Path:
        """Every score of a model (per class too) and the split they come from."""
        return Path(self.reports_dir) / model / "scores.json"

    def search_metrics(self, family: str) -> Path:
        return Path(self.metrics_dir) / f"tune_{family}.json"

    def search_summary(self, family: str) -> Path:
        return Path(self.reports_dir) / "tuning" / f"{family}_summary.json"

    @property
    def data_statistics(self) -> Path:
        return Path(self.reports_dir) / "eda" / "statistics.json"

    @property
    def promotion_report(self) -> Path:
        return Path(self.reports_dir) / "promotion.json"

    @property
    def champion_submission(self) -> Path:
        """The deliverable: the champion's predictions for test.csv, ready to upload."""
        return Path(self.submissions_dir) / "submission.csv"

    @property
    def data_dvc(self) -> Path:
        """The top-level .dvc file that tracks data_dir."""
        return Path(f"{self.data_dir}.dvc")


class MlflowConfig(Section):
    experiment_name: str = Field(default="digit-recognizer", min_length=1)
    registered_model_name: str = Field(default="digit-recognizer", min_length=1)


class PrepareConfig(Section):
    validation_fraction: float = Field(default=0.1, gt=0.0, lt=0.5)
    # Only when test.csv has no labels (Kaggle's): a labelled share of train.csv that no stage
    # fits, stops early or searches on; final scores and promotion use it instead of test.csv.
    holdout_fraction: float = Field(default=0.1, gt=0.0, lt=0.5)
    eda_samples_per_class: int = Field(default=10, ge=1, le=30)


class RobustnessConfig(Section):
    """The robustness set: evaluation digits as pictures people hand over, read the MNIST way."""

    images_per_kind: int = Field(default=1000, ge=1, le=10_000)


class ComputeConfig(Section):
    """How search trials and final training use the machine."""

    # auto: bfloat16 where the CPU has AMX, float32 elsewhere (see models/precision.py)
    precision: Literal["auto", "float32", "bfloat16"] = "auto"
    # auto: every CPU, or an equal share under parallel DVC queue workers (models/threads.py).
    # No stage depends on it in dvc.yaml: it changes how fast, not what is computed.
    threads: Literal["auto"] | PositiveInt = "auto"


class SearchBudget(Section):
    """How much compute one family's search may spend."""

    max_epochs: int = Field(default=4, ge=1)  # hyperband: most epochs a trial gets
    max_trials: int = Field(default=8, ge=1)  # random / bayesian: number of trials
    hyperband_factor: int = Field(default=3, ge=2)
    search_fraction: float = Field(default=0.3, gt=0.0, le=1.0)  # share of the train split
    batch_size: int = Field(default=128, ge=1)
    early_stopping_patience: int = Field(default=2, ge=1)
    # cosine: each trial anneals its rate towards zero at max_epochs, so a short trial's score
    # reflects the architecture rather than how noisy its last steps at the full rate were
    learning_rate_schedule: Literal["constant", "cosine"] = "constant"
    # an epoch is at least this many batches: small data is passed over more than once
    min_steps_per_epoch: int = Field(default=100, ge=1)


class AnnSearchSpace(Section):
    """Each key lists the values to try; one value fixes it."""

    hidden_layers: list[int] = Field(default=[1, 2, 3], min_length=1)
    units: list[int] = Field(default=[128, 256, 512], min_length=1)
    activation: list[Literal["relu", "elu", "gelu", "tanh"]] = Field(
        default=["relu", "elu", "gelu", "tanh"], min_length=1
    )
    dropout: list[float] = Field(default=[0.0, 0.2, 0.4], min_length=1)
    batch_norm: list[bool] = Field(default=[True, False], min_length=1)
    learning_rate: list[float] = Field(default=[1e-3, 3e-3], min_length=1)


class CnnSearchSpace(Section):
    conv_blocks: list[int] = Field(default=[2, 3], min_length=1)
    convs_per_block: list[int] = Field(default=[1], min_length=1)
    filters: list[int] = Field(default=[16, 32], min_length=1)
    kernel_size: list[int] = Field(default=[3, 5], min_length=1)
    batch_norm: list[bool] = Field(default=[True, False], min_length=1)
    dropout: list[float] = Field(default=[0.0, 0.25], min_length=1)
    dense_units: list[int] = Field(default=[64, 128], min_length=1)
    learning_rate: list[float] = Field(default=[1e-3, 3e-3], min_length=1)


class AnnTuneConfig(Section):
    budget: SearchBudget = SearchBudget()
    space: AnnSearchSpace = AnnSearchSpace()


class CnnTuneConfig(Section):
    budget: SearchBudget = SearchBudget()
    space: CnnSearchSpace = CnnSearchSpace()


class TuneConfig(Section):
    tuner: Literal["hyperband", "bayesian", "random"] = "hyperband"
    ann: AnnTuneConfig = AnnTuneConfig()
    cnn: CnnTuneConfig = CnnTuneConfig()

    def family(self, family: Family) -> AnnTuneConfig | CnnTuneConfig:
        return self.ann if family == "ann" else self.cnn


class AugmentationConfig(Section):
    enabled: bool = False
    rotation_degrees: float = Field(default=10.0, ge=0.0, le=45.0)
    shift_fraction: float = Field(default=0.1, ge=0.0, le=0.3)
    zoom_fraction: float = Field(default=0.1, ge=0.0, le=0.3)


class TrainFamilyConfig(Section):
    max_epochs: int = Field(default=20, ge=1)
    batch_size: int = Field(default=128, ge=1)
    early_stopping_patience: int = Field(default=4, ge=1)  # plateau only
    # plateau: validation loss drives the rate (reduce_lr_*) and validation accuracy stops the
    # run early; cosine: warm-up, then annealing to zero at max_epochs, which ends the run
    learning_rate_schedule: Literal["plateau", "cosine"] = "plateau"
    reduce_lr_patience: int = Field(default=2, ge=1)
    reduce_lr_factor: float = Field(default=0.5, gt=0.0, lt=1.0)
    warmup_epochs: int = Field(default=1, ge=0)
    min_steps_per_epoch: int = Field(default=100, ge=1)  # an epoch is at least this many batches
    # share of each target spread evenly over the ten classes (0: plain cross-entropy)
    label_smoothing: float = Field(default=0.0, ge=0.0, lt=1.0)
    # networks trained with seeds seed, seed+1, ...; above 1 they are saved as one model that
    # averages their probabilities (an ensemble)
    members: int = Field(default=1, ge=1, le=20)
    augmentation: AugmentationConfig = AugmentationConfig()


class TrainConfig(Section):
    ann: TrainFamilyConfig = TrainFamilyConfig()
    cnn: TrainFamilyConfig = TrainFamilyConfig(augmentation=AugmentationConfig(enabled=True))

    def family(self, family: Family) -> TrainFamilyConfig:
        return self.ann if family == "ann" else self.cnn


class KnnConfig(Section):
    pca_components: int = Field(default=50, ge=1, le=784)
    neighbors: list[int] = Field(default=[3, 5], min_length=1)


class DecisionTreeConfig(Section):
    max_depth: list[int] = Field(default=[12, 20], min_length=1)


class RandomForestConfig(Section):
    n_estimators: list[int] = Field(default=[60], min_length=1)
    max_depth: list[int] = Field(default=[20], min_length=1)


class LogisticRegressionConfig(Section):
    inverse_regularization: list[float] = Field(default=[0.1], min_length=1)
    max_iter: int = Field(default=100, ge=1)


class BaselinesConfig(Section):
    """scikit-learn baselines; each list is a small grid searched on the validation split."""

    knn: KnnConfig = KnnConfig()
    decision_tree: DecisionTreeConfig = DecisionTreeConfig()
    random_forest: RandomForestConfig = RandomForestConfig()
    logistic_regression: LogisticRegressionConfig = LogisticRegressionConfig()


class EvaluateConfig(Section):
    gallery_size: int = Field(default=24, ge=1, le=100)
    latency_repeats: int = Field(default=50, ge=1)


class PromoteConfig(Section):
    """Gates a candidate must pass before the ``champion`` alias moves to it."""

    enabled: bool = True
    from_experiments: bool = False  # may a `dvc exp run` move the champion?
    min_test_accuracy: float = Field(default=0.98, ge=0.0, le=1.0)
    # one-sided exact McNemar test against the champion on the same images
    significance_level: float = Field(default=0.05, gt=0.0, lt=1.0)
    min_class_recall: float = Field(default=0.95, ge=0.0, le=1.0)
    max_latency_ms: float = Field(default=50.0, gt=0.0)  # one image, batch of 1
    # on the robustness set (pictures read the MNIST way): a floor, and the most a candidate
    # may fall below the sitting champion, however much better it is on the plain split
    min_robust_accuracy: float = Field(default=0.9, ge=0.0, le=1.0)
    max_robust_accuracy_drop: float = Field(default=0.01, ge=0.0, le=1.0)
    # how long a promotion or rollback waits for another's lock before failing, naming the holder
    lock_timeout_seconds: float = Field(default=600.0, gt=0.0)


class ServeConfig(Section):
    host: str = "127.0.0.1"
    port: int = Field(default=5001, ge=1, le=65535)
    workers: int = Field(default=1, ge=1)  # uvicorn worker processes, each with the model
    poll_seconds: float = Field(default=5.0, gt=0.0, le=3600.0)  # alias checks (champion)
    max_request_bytes: int = Field(default=8_000_000, ge=10_000)  # larger bodies get 413
    ui_port: int = Field(default=5000, ge=1, le=65535)


class PicturesConfig(Section):
    """What ``digits predict`` and ``digits serve`` accept as a picture of a digit."""

    max_pixels: int = Field(default=40_000_000, ge=784)  # width x height; larger: refused
    max_bytes: int = Field(default=20_000_000, ge=1_000)  # a file for predict (serve: its body)


class TeamServerConfig(Section):
    """``digits server``: the team's MLflow server on PostgreSQL, with basic auth and TLS."""

    host: str = "127.0.0.1"  # what the MLflow server listens on; 0.0.0.0 for other machines
    # The name or address teammates reach this machine by: it goes into their settings and the
    # certificate. Empty: ``host`` itself (refused when ``host`` listens on every address).
    address: str = ""
    port: int = Field(default=5050, ge=1, le=65535)
    workers: int = Field(default=2, ge=1)
    state_dir: str = ".team-server"  # cluster, artifacts, logs, secrets (git-ignored)
    # An existing PostgreSQL (postgresql://user:password@host:port/database) instead of a
    # cluster in state_dir; DIGITS_SERVER_DATABASE_URL overrides it (keep passwords out of git).
    database_url: str = ""
    # With database_url: the database (or role) users take the promotion lock on, never the
    # store's own; DIGITS_SERVER_LOCK_DATABASE_URL overrides it.
    lock_database_url: str = ""
    database_host: str = "127.0.0.1"  # the cluster in state_dir listens here
    database_port: int = Field(default=5433, ge=1, le=65535)
    # Networks (CIDR) whose clients the cluster admits, over SSL when tls is on; loopback always.
    allowed_networks: list[str] = []
    # HTTPS and PostgreSQL SSL with a certificate made on first start, or the files below.
    tls: bool = True
    tls_certificate: str = ""  # PEM chain the clients' own trust store accepts
    tls_key: str = ""
    # Listening beyond loopback without TLS sends passwords in clear text: refused unless true.
    allow_clear_text: bool = False
    # Where proxied artifacts go: empty for state_dir/artifacts, or a URL (s3://bucket/path with
    # the usual AWS_* / MLFLOW_S3_ENDPOINT_URL variables for S3-compatible stores).
    artifacts_destination: str = ""

    @field_validator("allowed_networks")
    @classmethod
    def _networks(cls, networks: list[str]) -> list[str]:
        for network in networks:
            ipaddress.ip_network(network, strict=False)  # ValueError names the bad one
        return networks

    @model_validator(mode="after")
    def _certificate_and_key(self) -> TeamServerConfig:
        if bool(self.tls_certificate) != bool(self.tls_key):
            raise ValueError("tls_certificate and tls_key go together (both or neither)")
        return self


class Params(Section):
    seed: int = 42
    paths: PathsConfig = PathsConfig()
    mlflow: MlflowConfig = MlflowConfig()
    prepare: PrepareConfig = PrepareConfig()
    robustness: RobustnessConfig = RobustnessConfig()
    compute: ComputeConfig = ComputeConfig()
    baselines: BaselinesConfig = BaselinesConfig()
    tune: TuneConfig = TuneConfig()
    train: TrainConfig = TrainConfig()
    evaluate: EvaluateConfig = EvaluateConfig()
    promote: PromoteConfig = PromoteConfig()
    serve: ServeConfig = ServeConfig()
    pictures: PicturesConfig = PicturesConfig()
    server: TeamServerConfig = TeamServerConfig()


def parse_params(raw: Any, source: str = "params.yaml") -> Params:
    """Validate an already-loaded mapping; the error names the first offending key."""
    if not isinstance(raw, dict):
        raise UserError(f"{source}: expected a mapping of sections at the top level")
    try:
        return Params.model_validate(raw)
    except ValidationError as error:
        first = error.errors()[0]
        key = ".".join(str(part) for part in first["loc"]) or "(top level)"
        if first["type"] == "extra_forbidden":
            raise UserError(f"{source}: unknown key '{key}'") from None
        raise UserError(
            f"{source}: key '{key}': {first['msg']} (got {first.get('input')!r})"
        ) from None


def load_params(path: Path) -> Params:
    """Read and validate params.yaml."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{path}: parameters file not found") from None
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(f"{path}: cannot read parameters file ({error})") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise UserError(f"{path}: invalid YAML{where}") from None
    return parse_params(raw if raw is not None else {}, str(path))
