"""Every params.yaml key a stage's code reads is one of that stage's params in dvc.yaml;
otherwise DVC would call a stage up to date after the key changed (as it once did for
``prepare.holdout_fraction``).

The keys are derived from the source, function by function: from the stage's handler in
cli.py, through every package function it passes ``params`` (or a section of it) to, each
``params.section.key`` read on the way. A section a function takes whole (``model_dump()``,
or a call outside the package) counts as reading the section.
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers.project import REPOSITORY
from tools.stage_dependencies import PACKAGE, module_file, stages

ITEM = "<item>"  # a foreach stage's family: `${item}` in dvc.yaml, `family` in the code
FAMILY_NAMES = frozenset({"ann", "cnn", ITEM})
# Keys no stage lists, and why DVC must not rerun a stage when they change.
NOT_RESULTS = {
    "paths": "dvc.yaml names the files themselves as dependencies and outputs",
    "mlflow": "where runs are logged and versions registered, not what a stage computes",
    "compute.threads": "the machine's cores, like its CPU: a teammate's clone stays up to date",
}


def _join(base: str, name: str) -> str:
    return f"{base}.{name}" if base else name


@dataclass
class ParamsReads:
    """The params keys read by a function and the package functions it hands params to."""

    found: set[str] = field(default_factory=set)
    visited: set[tuple[str, str, tuple[tuple[str, str], ...]]] = field(default_factory=set)

    def function(self, module: str, name: str, bindings: dict[str, str]) -> None:
        key = (module, name, tuple(sorted(bindings.items())))
        path = module_file(module)
        if key in self.visited or path is None:
            return
        self.visited.add(key)
        tree = _parsed(path)
        definition = _definition(tree, name)
        if definition is None:
            return
        imports = _imports(tree, module)
        local = dict(bindings)
        for node in ast.walk(definition):  # bind simple aliases first: config = params.train
            if isinstance(node, ast.Assign) and len(node.targets) == 1:
                target, value = node.targets[0], self.path_of(node.value, local)
                if isinstance(target, ast.Name) and value is not None:
                    local[target.id] = value
        consumed: set[int] = set()
        methods: set[int] = set()  # x.model_dump, x.exists: calls on a key, not keys
        for node in ast.walk(definition):
            if isinstance(node, ast.Call):
                self.call(node, local, imports, module, consumed)
                methods.add(id(node.func))
        for node in ast.walk(definition):
            if id(node) in consumed | methods:
                continue
            read = self.path_of(node, local)
            if read is not None and not self._inside_longer_chain(node, definition, local):
                self.found.add(read)

    def _inside_longer_chain(self, node: ast.AST, root: ast.AST, local: dict[str, str]) -> bool:
        """Whether ``node`` is the start of a longer key (``params`` in ``params.seed``)."""
        for parent in ast.walk(root):
            if (
                isinstance(parent, ast.Attribute)
                and parent.value is node
                and self.path_of(parent, local) is not None
            ):
                return not _is_method(parent, root)
        return any(
            isinstance(parent, ast.Call) and self.path_of(parent, local) is not None
            for parent in ast.walk(root)
            if isinstance(parent, ast.Call)
            and isinstance(parent.func, ast.Attribute)
            and parent.func.value is node
            and parent.func.attr == "family"
        )

    def path_of(self, node: ast.AST, bindings: dict[str, str]) -> str | None:
        """The params key an expression names: a bound name, attributes below it,
        ``section.family(family)`` or ``getattr(section, family)``."""
        if isinstance(node, ast.Name):
            return bindings.get(node.id)
        if isinstance(node, ast.Attribute):
            base = self.path_of(node.value, bindings)
            return None if base is None else _join(base, node.attr)
        if isinstance(node, ast.Call):
            if isinstance(node.func, ast.Attribute) and node.func.attr == "family":
                base = self.path_of(node.func.value, bindings)
                return None if base is None else _join(base, ITEM)
            if isinstance(node.func, ast.Name) and node.func.id == "getattr" and node.args:
                base = self.path_of(node.args[0], bindings)
                return None if base is None else _join(base, ITEM)
        return None

    def call(
        self,
        node: ast.Call,
        bindings: dict[str, str],
        imports: dict[str, tuple[str, str | None]],
        module: str,
        consumed: set[int],
    ) -> None:
        """Follow params (or a section) into a package function the call names."""
        callee = _callee(node.func, imports, module)
        if callee is None:
            return
        target = module_file(callee[0])
        definition = _definition(_parsed(target), callee[1]) if target else None
        if definition is None:
            return
        names = [argument.arg for argument in definition.args.args]
        passed = list(zip(names, node.args, strict=False)) + [
            (keyword.arg, keyword.value) for keyword in node.keywords if keyword.arg
        ]
        inner = {}
        for name, value in passed:
            key = self.path_of(value, bindings)
            if key is not None:
                inner[name] = key
                consumed.add(id(value))
        if inner:
            self.function(callee[0], callee[1], inner)


@functools.cache
def _parsed(path: Path) -> ast.Module:
    """Each module parsed once, however many functions and stages visit it."""
    return ast.parse(path.read_text())


def _is_method(attribute: ast.Attribute, root: ast.AST) -> bool:
    """``attribute`` is called (``section.model_dump()``), unless it picks a family."""
    return attribute.attr != "family" and any(
        isinstance(node, ast.Call) and node.func is attribute for node in ast.walk(root)
    )


def _definition(tree: ast.Module, name: str) -> ast.FunctionDef | None:
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == name:
            return node
    return None


def _imports(tree: ast.Module, module: str) -> dict[str, tuple[str, str | None]]:
    """Local name -> (module, function or None for a module), package imports anywhere."""
    found: dict[str, tuple[str, str | None]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                local = alias.asname or alias.name
                if module_file(submodule) is not None:
                    found[local] = (submodule, None)
                else:
                    found[local] = (node.module, alias.name)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                found[alias.asname or alias.name] = (alias.name, None)
    return found


def _callee(
    function: ast.expr, imports: dict[str, tuple[str, str | None]], module: str
) -> tuple[str, str] | None:
    if isinstance(function, ast.Name):
        imported = imports.get(function.id)
        if imported is None:
            return (module, function.id)
        return (imported[0], imported[1]) if imported[1] else None
    if isinstance(function, ast.Attribute) and isinstance(function.value, ast.Name):
        imported = imports.get(function.value.id)
        if imported is not None and imported[1] is None:
            return (imported[0], function.attr)
    return None


def stage_reads(subcommand: str) -> set[str]:
    reads = ParamsReads()
    reads.function(f"{PACKAGE}.cli", f"_{subcommand.replace('-', '_')}", {"params": ""})
    return reads.found


def _same(read: list[str], listed: list[str]) -> bool:
    return len(read) >= len(listed) and all(
        a == b or {a, b} <= FAMILY_NAMES for a, b in zip(read, listed, strict=False)
    )


@functools.cache
def _params_yaml() -> dict[str, Any]:
    return dict(yaml.safe_load((REPOSITORY / "params.yaml").read_text()))


def _leaves(key: str) -> list[str]:
    """The keys under ``key`` in params.yaml (a section read whole reads all of them)."""
    value = _params_yaml()
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            return [key]
        value = value[part]
    if not isinstance(value, dict) or not value:
        return [key]
    return [leaf for name in value for leaf in _leaves(f"{key}.{name}")]


def missing_params(reads: set[str], listed: list[str]) -> list[str]:
    """The keys read that no listed param (a key or a section above it) covers."""
    wanted = [entry.replace("${item}", ITEM).split(".") for entry in listed]
    return sorted(
        {
            leaf
            for read in reads
            for leaf in _leaves(read)
            if not any(_same(leaf.split("."), key) for key in wanted)
            and not any(leaf == name or leaf.startswith(f"{name}.") for name in NOT_RESULTS)
        }
    )


def stage_definitions() -> Iterator[tuple[str, str, list[str]]]:
    for name, definition in sorted(stages().items()):
        body = definition.get("do", definition)
        listed = [entry for entry in body.get("params", []) if isinstance(entry, str)]
        yield name, body["cmd"].split()[1], listed


@pytest.mark.parametrize(
    ("stage", "subcommand", "listed"), list(stage_definitions()), ids=lambda value: str(value)
)
def test_every_params_key_a_stage_reads_is_one_of_its_params(
    stage: str, subcommand: str, listed: list[str]
) -> None:
    reads = stage_reads(subcommand)
    assert reads, f"found no params read by digits {subcommand}: the checker lost its way"
    missing = missing_params(reads, listed)
    assert not missing, f"dvc.yaml stage '{stage}' reads params it does not list: {missing}"


def test_the_checker_finds_a_key_read_deep_below_the_stage() -> None:
    # given prepare's params without the holdout fraction, which run_prepare reads and passes
    # on; when checked, then the key is reported missing
    reads = stage_reads("prepare")
    listed = [
        "seed",
        "prepare.validation_fraction",
        "prepare.eda_samples_per_class",
        "prepare.feedback_eval_fraction",
    ]
    assert missing_params(reads, listed) == ["prepare.holdout_fraction"], sorted(reads)
    # and a family's keys, read through params.train.family(family), are matched to
    # `${item}` and missed without it
    train = stage_reads("train")
    assert f"train.{ITEM}.max_epochs" in train, sorted(train)
    listed = ["seed", "compute.precision", "train.feedback_weight"]
    assert not missing_params(train, [*listed, "train.${item}"])
    assert f"train.{ITEM}.max_epochs" in missing_params(train, listed)
