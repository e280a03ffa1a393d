"""dvc.yaml's code dependencies, derived from the import graph: every module a stage's
command imports (directly or through other modules, at the top or inside a function, or runs
from a named file) is a dependency of that stage, so DVC never calls a stage up to date while
its code changed.

    python -m tools.stage_dependencies          # rewrite dvc.yaml's src/ dependencies
    python -m tools.stage_dependencies --check  # exit 1, naming the stages, when it is stale
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
from collections.abc import Sequence
from pathlib import Path

import yaml

REPOSITORY = Path(__file__).resolve().parents[1]
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
        if path is None:
            raise ValueError(f"{name}: not a module of the package")
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
    if handler not in functions:
        raise ValueError(f"cli.py has no handler {handler} for 'digits {subcommand}'")
    top_level = [node for node in cli.body if not isinstance(node, ast.FunctionDef)]
    modules = import_closure(imported_modules([*top_level, functions["main"], functions[handler]]))
    return {SOURCE / PACKAGE / "cli.py", *modules}


def stages() -> dict[str, dict]:
    """dvc.yaml's stages as written."""
    return dict(yaml.safe_load((REPOSITORY / "dvc.yaml").read_text())["stages"])


def stage_dependencies(text: str) -> dict[str, list[str]]:
    """Each stage's code dependencies (paths relative to the repository, sorted)."""
    stages = yaml.safe_load(text)["stages"]
    wanted = {}
    for name, definition in stages.items():
        subcommand = definition.get("do", definition)["cmd"].split()[1]
        wanted[name] = sorted(
            path.relative_to(REPOSITORY).as_posix() for path in stage_closure(subcommand)
        )
    return wanted


_STAGE = re.compile(r"^  ([A-Za-z0-9_-]+):\s*$")
_CODE = re.compile(r"^(\s+)- src/")


def rewritten(text: str) -> str:
    """dvc.yaml with each stage's ``- src/...`` lines replaced, in place, by its derived ones;
    everything else (other dependencies, params, outs, comments) kept as it is."""
    wanted = stage_dependencies(text)
    output: list[str] = []
    stage, written = None, False
    lines = text.splitlines()
    for line in lines:
        heading = _STAGE.match(line)
        if heading:
            stage, written = heading.group(1), False
        code = _CODE.match(line)
        if code and stage in wanted:
            if not written:
                output.extend(f"{code.group(1)}- {path}" for path in wanted[stage])
                written = True
            continue
        output.append(line)
    return "\n".join(output) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only say whether it is current")
    arguments = parser.parse_args()
    dvc_yaml = REPOSITORY / "dvc.yaml"
    current = dvc_yaml.read_text()
    derived = rewritten(current)
    if arguments.check:
        if derived != current:
            print("dvc.yaml's code dependencies are stale: run python -m tools.stage_dependencies")
            return 1
        return 0
    if derived != current:
        dvc_yaml.write_text(derived)
        print("dvc.yaml: code dependencies rewritten from the imports")
    return 0


if __name__ == "__main__":
    sys.exit(main())
