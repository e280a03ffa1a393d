"""Configuration: params.yaml parses into typed objects; a wrong key or type is named."""

from __future__ import annotations

from pathlib import Path

import pytest

from digit_recognizer.config import load_params, parse_params
from digit_recognizer.errors import UserError
from tests.helpers.project import REPOSITORY


def test_repository_params_parse() -> None:
    params = load_params(REPOSITORY / "params.yaml")
    assert params.prepare.validation_fraction == pytest.approx(0.1)
    assert params.paths.train_csv == Path("data/train.csv")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"prepare": {"validation_fractoin": 0.2}}, "unknown key 'prepare.validation_fractoin'"),
        (
            {"promote": {"min_test_accuracy": 0.98}},
            "key 'promote.min_test_accuracy' is now 'promote.min_evaluation_accuracy'",
        ),
        ({"seed": "forty-two"}, "key 'seed': Input should be a valid integer"),
        ({"prepare": {"validation_fraction": 0.9}}, "key 'prepare.validation_fraction'"),
        ({"prepare": {"eda_samples_per_class": True}}, "key 'prepare.eda_samples_per_class'"),
        (["not", "a", "mapping"], "expected a mapping"),
    ],
)
def test_bad_params_name_the_key(raw: object, expected: str) -> None:
    with pytest.raises(UserError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        parse_params(raw)


def test_missing_and_invalid_files(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="parameters file not found"):
        load_params(tmp_path / "params.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("seed: 1\nprepare: [unclosed\n")
    with pytest.raises(UserError, match="invalid YAML at line"):
        load_params(broken)


def test_params_are_frozen() -> None:
    params = parse_params({})
    with pytest.raises(ValueError, match="frozen"):
        params.prepare.validation_fraction = 0.3
