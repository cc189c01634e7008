"""The model source an exported MoE folder ships: models/modeling.py and every module of this package it imports,
copied from the package at export time with their `moebert` imports made relative, so that transformers loads
the classes with `trust_remote_code=True` and without the package."""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

# The module whose classes auto_map names; every module it imports from this package ships beside it.
MODEL_MODULE = "moebert.models.modeling"
# What shipped code may import from this package: the model modules, the backbone registry they are built
# from, and the error type they raise.
SHIPPABLE = ("moebert.models.", "moebert.backbones", "moebert.errors")


def _module_file(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None:
        raise RuntimeError(f"cannot find the source of module {name}")
    return Path(spec.origin)


def _is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


def _moebert_imports(
    tree: ast.Module, module: str
) -> list[tuple[ast.stmt, list[tuple[str, str, str | None]]]]:
    """Every import of this package in `tree`: (statement, [(module imported, name, alias)]); name is None where
    the statement imports the module itself."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "moebert" for a in node.names):
            raise RuntimeError(
                f"{module}: `import {node.names[0].name}` cannot be shipped; write `from ... import ...`"
            )
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module.split(".")[0] == "moebert":
            targets = []
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                if _is_module(sub):  # from moebert.models import mpo
                    targets.append((sub, None, alias.asname))
                else:
                    targets.append((node.module, alias.name, alias.asname))
            found.append((node, targets))
    return found


def _file_name(module: str) -> str:
    """The flat file an exported folder holds a module in: moebert.models.mpo -> mpo.py."""
    return module.rsplit(".", 1)[-1] + ".py"


def model_sources() -> dict[str, str]:
    """{file name: source} of models/modeling.py and every module of this package it imports, directly or not,
    each with its imports of this package rewritten relative (`from moebert.models.mpo import X` -> `from .mpo
    import X`). Only the model modules and moebert.errors may be imported: anything else would not ship."""
    sources, todo, seen = {}, [MODEL_MODULE], set()
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        text = _module_file(module).read_text(encoding="utf-8")
        lines = text.splitlines(keepends=True)
        imports = _moebert_imports(ast.parse(text), module)
        # Replaced bottom-up so the line numbers of the statements above stay valid.
        for node, targets in sorted(imports, key=lambda item: item[0].lineno, reverse=True):
            statements = []
            for target, name, alias in targets:
                if not target.startswith(SHIPPABLE):
                    raise RuntimeError(
                        f"{module} imports {target}, which an exported model cannot ship: the model modules "
                        f"may import only moebert.models.*, moebert.backbones and moebert.errors"
                    )
                todo.append(target)
                short, renamed = target.rsplit(".", 1)[-1], f" as {alias}" if alias else ""
                statements.append(
                    f"from . import {short}{renamed}"
                    if name is None
                    else f"from .{short} import {name}{renamed}"
                )
            indent = lines[node.lineno - 1][: node.col_offset]
            merged = _merge_from_imports(statements)
            lines[node.lineno - 1 : node.end_lineno] = [f"{indent}{s}\n" for s in merged]
        header = (
            f"# {_file_name(module)}: {module} of the moebert package, shipped by `moebert export` with its\n"
            f"# imports of the package made relative. Generated: edit the package's source, not this copy.\n"
        )
        name = _file_name(module)
        if name in sources:
            raise RuntimeError(f"two shipped modules would both be {name}")
        sources[name] = header + "".join(lines)
    return sources


def _merge_from_imports(statements: list[str]) -> list[str]:
    """`from .x import a` and `from .x import b` -> `from .x import a, b`, in first-seen order."""
    merged: dict[str, list[str]] = {}
    for statement in statements:
        head, _, name = statement.partition(" import ")
        merged.setdefault(head, []).append(name)
    return [f"{head} import {', '.join(names)}" for head, names in merged.items()]


def check_shipped(folder: Path, files: list[str]) -> None:
    """What transformers will copy and import from the folder: every shipped file is reached from modeling.py
    by relative imports it detects, and none imports this package."""
    from transformers.dynamic_module_utils import get_imports, get_relative_import_files

    reached = {Path(p).name for p in get_relative_import_files(str(folder / "modeling.py"))} | {"modeling.py"}
    if reached != set(files):
        raise RuntimeError(
            f"transformers would load {sorted(reached)} of the shipped files {sorted(files)}: write the "
            f"model modules' imports of each other as `from moebert.models.X import name`"
        )
    for name in files:
        if "moebert" in get_imports(str(folder / name)):
            raise RuntimeError(f"shipped {name} still imports moebert")
