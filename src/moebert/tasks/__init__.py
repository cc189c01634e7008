"""Task registry: every supported task is declared once, in its family's module (glue.py, squad.py), and
loaders, metrics, the CLI and the workflow read it here. A stage resolves the task once (`get_task`) and
works on the object."""

from __future__ import annotations

import difflib

from moebert.errors import MoebertError
from moebert.tasks.base import HUB, Task
from moebert.tasks.glue import (
    DIAGNOSTIC,
    GLUE_TASKS,
    HUB_DATASET,
    TEXT_NAMES,
    GlueTask,
    hub_columns,
    hub_test_columns,
    load_split,
    load_test_split,
    prepare,
    tsv_path,
    unlabelled_path,
)
from moebert.tasks.squad import QA_TASKS, QaTask

TASKS: dict[str, Task] = {**GLUE_TASKS, **QA_TASKS}
# User tasks (tasks/custom.py) this process has resolved from their declaration: the config's, or the
# prepared data's task.json. get_task finds them by their exact name.
DECLARED: dict[str, Task] = {}

__all__ = [
    "DIAGNOSTIC",
    "HUB",
    "HUB_DATASET",
    "TASKS",
    "TEXT_NAMES",
    "GlueTask",
    "QaTask",
    "Task",
    "declare",
    "format_task_table",
    "get_task",
    "hub_columns",
    "hub_test_columns",
    "load_split",
    "load_test_split",
    "prepare",
    "tsv_path",
    "unlabelled_path",
]


def _normalise(name: str) -> str:
    return name.lower().replace("-", "").replace("_", "").replace(" ", "")


_KEYS = {_normalise(name): name for name in TASKS}


def get_task(name: str | Task) -> Task:
    """Look a task up by any common spelling ("MRPC", "sst-2", "STS_B", "squad_v2"); a Task passes through."""
    if isinstance(name, Task):
        return name
    if str(name) in DECLARED:
        return DECLARED[str(name)]
    key = _normalise(str(name))
    if key in _KEYS:
        return TASKS[_KEYS[key]]
    known = ", ".join(TASKS)
    guess = difflib.get_close_matches(str(name).lower(), TASKS, n=1)
    hint = f"; did you mean '{guess[0]}'?" if guess else ";"
    raise MoebertError(f"unknown task '{name}'{hint} known: {known}")


def declare(task: Task) -> Task:
    """Make a user task known to get_task in this process (its name cannot be a registered task's)."""
    DECLARED[task.name] = task
    return task


def format_task_table() -> str:
    """The table printed by `moebert tasks`."""
    rows = [("task", "id", "metrics", "labels", "eval splits (result key)", "max len")]
    for task in TASKS.values():
        splits = ", ".join(f"{stem} ({key})" for stem, key in task.eval_splits.items())
        rows.append(
            (
                task.display,
                task.name,
                ", ".join(task.metrics),
                task.label_text(),
                splits,
                str(task.max_length),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)
