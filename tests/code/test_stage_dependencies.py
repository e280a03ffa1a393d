"""Every module a stage's command imports (directly or through other modules, at the top or
inside a function) is a dependency of that stage in dvc.yaml; otherwise DVC would call a
stage up to date while its code changed."""

from __future__ import annotations

import ast
from collections.abc import Sequence
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPOSITORY

PACKAGE = "digit_recognizer"
SOURCE = REPOSITORY / "src"


def module_file(name: str) -> Path | None:
    """The source file of a package module, None for anything outside the package."""
    if name != PACKAGE and not name.startswith(f"{PACKAGE}."):
        return None
    base = SOURCE / name.replace(".", "/")
    if base.with_suffix(".py").exists():
        return base.with_suffix(".py")
    return base / "__init__.py" if (base / "__init__.py").exists() else None


def executed_nodes(roots: Sequence[ast.AST]) -> list[ast.AST]:
    """Every node below ``roots`` except ``if TYPE_CHECKING:`` blocks, which never run."""
    nodes: list[ast.AST] = []
    pending: list[ast.AST] = list(roots)
    while pending:
        node = pending.pop()
        if isinstance(node, ast.If) and ast.unparse(node.test).endswith("TYPE_CHECKING"):
            pending.extend(node.orelse)
            continue
        nodes.append(node)
        pending.extend(ast.iter_child_nodes(node))
    return nodes


def imported_modules(roots: Sequence[ast.AST]) -> set[str]:
    """Package modules named by the import statements anywhere below ``roots``."""
    found: set[str] = set()
    for node in executed_nodes(roots):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            # `from digit_recognizer import tracking` names a module, not an attribute
            found.update(
                f"{node.module}.{alias.name}"
                for alias in node.names
                if module_file(f"{node.module}.{alias.name}") is not None
            )
    return {name for name in found if module_file(name) is not None}


def named_files(tree: ast.Module, path: Path) -> list[str]:
    """Source files beside ``path`` that it names as strings (``"pyfunc_code.py"``): code run
    by another program (MLflow loads the pyfunc from such a file), not imported."""
    return [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and node.value.endswith(".py")
        and (path.parent / node.value).is_file()
    ]


def import_closure(start: set[str]) -> set[Path]:
    """Files of every package module reachable from ``start`` (package markers left out)."""
    seen: set[str] = set()
    pending = list(start)
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        path = module_file(name)
        assert path is not None
        tree = ast.parse(path.read_text())
        pending.extend(imported_modules([tree]))
        pending.extend(f"{name.rpartition('.')[0]}.{code[:-3]}" for code in named_files(tree, path))
    files = {module_file(name) for name in seen}
    return {path for path in files if path is not None and not is_package_marker(path)}


def is_package_marker(path: Path) -> bool:
    """An ``__init__.py`` holding nothing but a docstring (one with code is a module too)."""
    body = ast.parse(path.read_text()).body
    return path.name == "__init__.py" and all(
        isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) for node in body
    )


def stage_closure(subcommand: str) -> set[Path]:
    """What ``digits <subcommand>`` runs: cli.py's top-level imports, those of ``main`` (which
    every command runs) and its handler's."""
    cli = ast.parse((SOURCE / PACKAGE / "cli.py").read_text())
    handler = f"_{subcommand.replace('-', '_')}"
    functions = {node.name: node for node in cli.body if isinstance(node, ast.FunctionDef)}
    assert handler in functions, f"cli.py has no handler {handler} for 'digits {subcommand}'"
    top_level = [node for node in cli.body if not isinstance(node, ast.FunctionDef)]
    modules = import_closure(imported_modules([*top_level, functions["main"], functions[handler]]))
    return {SOURCE / PACKAGE / "cli.py", *modules}


def stages() -> dict[str, dict]:
    return yaml.safe_load((REPOSITORY / "dvc.yaml").read_text())["stages"]


@pytest.mark.parametrize("stage", sorted(stages()))
def test_every_imported_module_is_a_stage_dependency(stage: str) -> None:
    definition = stages()[stage]
    subcommand = definition.get("do", definition)["cmd"].split()[1]
    declared = [
        REPOSITORY / dependency
        for dependency in definition.get("do", definition)["deps"]
        if dependency.startswith("src/")
    ]
    missing = sorted(
        path.relative_to(REPOSITORY).as_posix()
        for path in stage_closure(subcommand)
        if not any(path == folder or folder in path.parents for folder in declared)
    )
    assert not missing, f"dvc.yaml stage '{stage}' runs code it does not depend on: {missing}"


def test_the_checker_sees_function_level_imports() -> None:
    # the evaluate stage imports models/pyfunc.py only inside run_evaluate
    assert SOURCE / PACKAGE / "models" / "pyfunc.py" in stage_closure("evaluate")


def test_the_checker_sees_code_run_from_a_named_file() -> None:
    # MLflow runs models/pyfunc_code.py when a version loads; train logs it by file name
    assert SOURCE / PACKAGE / "models" / "pyfunc_code.py" in stage_closure("train")


def test_the_checker_counts_a_package_init_with_code() -> None:
    # config/__init__.py parses params.yaml: a change there must rerun every stage
    assert SOURCE / PACKAGE / "config" / "__init__.py" in stage_closure("prepare")
