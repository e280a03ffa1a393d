"""dvc.yaml's code dependencies are the ones the import graph gives (tools/stage_dependencies.py
derives them): every module a stage's command imports, at the top or inside a function, or runs
from a named file, so DVC never calls a stage up to date while its code changed."""

from __future__ import annotations

from tools.stage_dependencies import PACKAGE, REPOSITORY, SOURCE, rewritten, stage_closure


def test_dvc_yaml_lists_what_the_imports_give() -> None:
    current = (REPOSITORY / "dvc.yaml").read_text()
    assert rewritten(current) == current, (
        "dvc.yaml's code dependencies are stale: run python -m tools.stage_dependencies"
    )


def test_a_new_import_is_added_to_the_stage_and_nothing_else_moves() -> None:
    # given dvc.yaml with one of prepare's modules dropped by hand
    current = (REPOSITORY / "dvc.yaml").read_text()
    dropped = current.replace("      - src/digit_recognizer/data/eda.py\n", "", 1)
    assert dropped != current
    # then the rewrite puts it back where it was, and changes nothing else
    assert rewritten(dropped) == current


def test_the_checker_sees_function_level_imports() -> None:
    # the evaluate stage imports models/pyfunc.py only inside run_evaluate
    assert SOURCE / PACKAGE / "models" / "pyfunc.py" in stage_closure("evaluate")


def test_the_checker_sees_code_run_from_a_named_file() -> None:
    # MLflow runs models/pyfunc_code.py when a version loads; train logs it by file name
    assert SOURCE / PACKAGE / "models" / "pyfunc_code.py" in stage_closure("train")


def test_the_checker_counts_a_package_init_with_code() -> None:
    # config/__init__.py parses params.yaml: a change there must rerun every stage
    assert SOURCE / PACKAGE / "config" / "__init__.py" in stage_closure("prepare")
