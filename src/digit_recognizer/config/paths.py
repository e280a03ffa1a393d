"""Every file location the stages read or write, in one place."""

from __future__ import annotations

from pathlib import Path

from digit_recognizer.config.section import Section


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
    feedback_dir: str = "feedback"
    prepared_feedback_dir: str = "prepared_feedback"

    @property
    def feedback_csv(self) -> Path:
        """People's corrections in Kaggle's train layout (digits feedback export)."""
        return Path(self.feedback_dir) / "feedback.csv"

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

    @property
    def eda_dir(self) -> Path:
        return Path(self.reports_dir) / "eda"

    def best_hyperparameters(self, family: str) -> Path:
        """What the search chose for a family: the train stage's input."""
        return Path(self.hyperparameters_dir) / f"{family}.json"

    def search_state(self, family: str) -> Path:
        """Keras Tuner's folder for a family's search (resumable)."""
        return Path(self.tuning_dir) / family

    def search_table(self, family: str) -> Path:
        return Path(self.reports_dir) / "tuning" / f"{family}_trials.csv"

    def search_chart(self, family: str) -> Path:
        return Path(self.reports_dir) / "tuning" / f"{family}_search.png"

    def trained_model(self, family: str) -> Path:
        return Path(self.models_dir) / f"{family}.keras"

    def trained_record(self, family: str) -> Path:
        """The trained model's run, model URI and registered version (models/<family>.json)."""
        return Path(self.models_dir) / f"{family}.json"

    def training_history(self, family: str) -> Path:
        """Per-epoch metrics: a DVC plot."""
        return Path(self.plots_dir) / family / "history.csv"

    def learning_curve(self, family: str) -> Path:
        return Path(self.reports_dir) / family / "learning_curve.png"

    def model_reports(self, model: str) -> Path:
        """A model's charts (confusion matrix, confident errors, reliability) and scores."""
        return Path(self.reports_dir) / model

    def confusion_data(self, model: str) -> Path:
        """``actual,predicted`` per image: DVC's confusion plot."""
        return Path(self.plots_dir) / model / "confusion.csv"

    def family_submission(self, family: str) -> Path:
        """A family's own predictions for test.csv (the champion's go to champion_submission)."""
        return Path(self.submissions_dir) / f"{family}.csv"
