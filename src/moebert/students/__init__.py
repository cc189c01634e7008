"""Student kinds: how a student is built from a fine-tuned teacher. MoEBERT's importance-guided experts (and
their ablation constructions), the MPOE experts, and the controls (half-depth, dense-narrow, majority).

The registry below is what the config, the CLI, the workflow and the cost model ask about a kind
(`students.base.StudentKind`); a new kind is one file of this package, one entry here, the value of the
config schema's `student` enum and its name in the `students` of each method key it takes."""

from __future__ import annotations

import difflib

from moebert.errors import MoebertError
from moebert.students.base import StudentKind, StudentOptionError
from moebert.students.dense_narrow import DenseNarrow
from moebert.students.distil_half import DistilHalf
from moebert.students.majority import Majority
from moebert.students.moe import MoE
from moebert.students.mpoe import MPOE

STUDENTS: dict[str, StudentKind] = {
    kind.name: kind for kind in (MoE(), MPOE(), DenseNarrow(), DistilHalf(), Majority())
}

__all__ = ["STUDENTS", "StudentKind", "StudentOptionError", "get_student"]


def get_student(name: str) -> StudentKind:
    if name not in STUDENTS:
        close = difflib.get_close_matches(name, STUDENTS, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise MoebertError(f"unknown student {name!r}; {hint}choose one of {', '.join(STUDENTS)}")
    return STUDENTS[name]
