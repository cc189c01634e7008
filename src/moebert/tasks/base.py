"""What every task shares, whatever its family (GLUE classification/regression, extractive QA)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from moebert.errors import MoebertError

HUB = "hub"  # the `data` argument that selects the Hugging Face hub instead of a directory


@dataclass(frozen=True, kw_only=True)
class Task:
    """A task of the registry. Each family (glue.GlueTask, squad.QaTask) adds its columns and implements
    `prepare` (validate a source, write the prepared copy) and `features` (model inputs with labels)."""

    name: str  # canonical lower-case id
    display: str  # name in result tables and directory name in the data layout
    metrics: tuple[str, ...]
    max_length: int
    eval_splits: dict[str, str]  # split stem -> result key in metrics.json (and the paper's task name)
    family: str  # "glue" or "qa": which result table the task's columns go to
    head: str  # "classification" or "question-answering": which model class the task trains
    # Size of the work, for the cost model (moebert.cost): rows of the published train split and of the eval
    # splits together (QA: questions); the mean row length in BERT uncased word pieces, which length-grouped
    # training batches barely pad beyond; and the mean length random batches of 64 pad to (evaluation). Measured
    # on the offline train files where there are some, estimated for the others.
    train_rows: int
    eval_rows: int
    mean_tokens: int
    batch_tokens: int

    @property
    def splits(self) -> tuple[str, ...]:
        return ("train", *self.eval_splits)

    def check_split(self, split: str) -> None:
        if split not in self.splits:
            raise MoebertError(
                f"unknown split '{split}' for {self.display}; expected one of: {', '.join(self.splits)}"
            )


def subsample(columns: dict[str, list], max_rows: int | None, seed: int) -> dict[str, list]:
    """A seeded random subset of `max_rows` rows of equal-length columns, in the original order."""
    if max_rows is not None and max_rows < 1:
        raise MoebertError(f"max_rows must be a positive number of rows, got {max_rows}")
    total = len(next(iter(columns.values())))
    if max_rows is None or max_rows >= total:
        return columns
    # Sorted so the subsample keeps the file order.
    keep = np.sort(np.random.default_rng(seed).choice(total, size=max_rows, replace=False))
    return {name: [values[i] for i in keep] for name, values in columns.items()}
