"""Atomic outputs: every artefact is written under a temporary name and renamed into place,
so a failed or killed run never leaves a half-written file that a rerun would trust."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path


def _tmp_sibling(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike):
    """Yield a temporary directory that replaces `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_sibling(path)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if path.exists():
        shutil.rmtree(path)
    os.replace(tmp, path)


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike):
    """Yield a temporary file path that replaces `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_sibling(path)
    try:
        yield tmp
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)


def write_json(path: str | os.PathLike, obj) -> None:
    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_json(path: str | os.PathLike):
    return json.loads(Path(path).read_text())


def identity(source: str | os.PathLike) -> str | list:
    """What a run read from `source`: for a file or directory the name, size and modification time of each
    file (cheap, and new whenever a rule rebuilt it); otherwise the name itself (a hub id)."""
    path = Path(source)
    if not path.exists():
        return str(source)
    # Snakemake stamps a directory output with .snakemake_timestamp when its job ends (also on --touch):
    # bookkeeping, not content.
    files = (
        [path]
        if path.is_file()
        else sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".snakemake"))
    )
    return [
        [str(p.relative_to(path) if p != path else p.name), p.stat().st_size, p.stat().st_mtime_ns]
        for p in files
    ]
