"""The pipeline's sections: what each stage computes (prepare to promote)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveInt

from digit_recognizer.config.section import Family, Section


class MlflowConfig(Section):
    experiment_name: str = Field(default="digit-recognizer", min_length=1)
    registered_model_name: str = Field(default="digit-recognizer", min_length=1)


class PrepareConfig(Section):
    validation_fraction: float = Field(default=0.1, gt=0.0, lt=0.5)
    # Only when test.csv has no labels (Kaggle's): a labelled share of train.csv that no stage
    # fits, stops early or searches on; final scores and promotion use it instead of test.csv.
    holdout_fraction: float = Field(default=0.1, gt=0.0, lt=0.5)
    eda_samples_per_class: int = Field(default=10, ge=1, le=30)


class FeedbackConfig(Section):
    """The feedback stage: people's corrections (feedback/feedback.csv) split in two."""

    # This share, chosen by a seeded hash of each picture, only scores and gates
    # (feedback-eval); the rest (feedback-train) is mixed into training.
    eval_fraction: float = Field(default=0.3, ge=0.0, le=1.0)


class RobustnessConfig(Section):
    """The robustness set: evaluation digits as pictures people hand over, read the MNIST way."""

    images_per_kind: int = Field(default=1000, ge=1, le=10_000)


class ComputeConfig(Section):
    """How search trials and final training use the machine."""

    # auto: bfloat16 where the CPU has AMX, float32 elsewhere (see runtime/precision.py)
    precision: Literal["auto", "float32", "bfloat16"] = "auto"
    # auto: every CPU, or an equal share under parallel DVC queue workers (runtime/threads.py).
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
    # each feedback-train picture counts as this many train-split digits (0: none mixed in)
    feedback_weight: float = Field(default=5.0, ge=0.0, le=100.0)
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
    min_evaluation_accuracy: float = Field(default=0.98, ge=0.0, le=1.0)
    # one-sided exact McNemar test against the champion on the same images
    significance_level: float = Field(default=0.05, gt=0.0, lt=1.0)
    min_class_recall: float = Field(default=0.95, ge=0.0, le=1.0)
    max_latency_ms: float = Field(default=50.0, gt=0.0)  # one image, batch of 1
    # on the robustness set (pictures read the MNIST way): a floor, and the most a candidate
    # may fall below the sitting champion, however much better it is on the plain split
    min_robust_accuracy: float = Field(default=0.9, ge=0.0, le=1.0)
    max_robust_accuracy_drop: float = Field(default=0.01, ge=0.0, le=1.0)
    # on feedback-eval (people's corrected digits), once there are any
    min_feedback_accuracy: float = Field(default=0.9, ge=0.0, le=1.0)
    # how long a promotion or rollback waits for another's lock before failing, naming the holder
    lock_timeout_seconds: float = Field(default=600.0, gt=0.0)
