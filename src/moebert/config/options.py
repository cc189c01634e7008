"""The typed options of the stages: what a CLI command parses its flags into and what the workflow renders a
job's flags from, so that one definition serves both.

A field is a flag: `--field-name value`; None leaves the flag out (the field's default, or the command's,
applies), a bool is a bare switch, a list gives its items after the flag. `flags(...)` renders options for a shell command,
`from_args(...)` reads them back from an argparse namespace; `from_args(parse(flags(o))) == o`.
"""

from __future__ import annotations

import argparse
import shlex
from dataclasses import MISSING, dataclass, fields
from typing import Any, TypeVar

from moebert.config.validation import schema_default

T = TypeVar("T")


@dataclass(frozen=True)
class TrainOptions:
    """How `finetune` and `distill` train: the stage's hyper-parameters on its task, and the shared settings."""

    epochs: float
    lr: float
    batch_size: int  # total per optimiser step
    grad_accum: int
    weight_decay: float
    max_length: int | None = None
    max_train_samples: int | None = None
    doc_stride: int | None = None
    sampler: str = "length-grouped"
    padding: str = "dynamic"
    fp16: bool = False
    bf16: bool = False


@dataclass(frozen=True)
class DistillOptions:
    """What `distill` adds to training: the loss of Eq. 7 and the student's own training keys."""

    distill_weight: float | None = None  # scope none: no distillation loss to weigh
    load_balance: float | None = None  # gate routers only
    distill_scope: str = schema_default("method.distill_scope")
    gradient_mask: float | None = None  # MPOE only
    teacher_dropout: bool = schema_default("method.teacher_dropout")


@dataclass(frozen=True)
class ImportanceOptions:
    split: str = "train"
    max_samples: int | str = 2048  # or "all"
    batch_size: int = 16
    max_length: int | None = None
    doc_stride: int | None = None


@dataclass(frozen=True)
class EvaluateOptions:
    """What `evaluate` scores (a model, or the majority of the train rows) and how."""

    model: str | None = None
    majority: bool = False
    max_train_samples: int | None = None
    max_length: int | None = None
    max_eval_samples: int | None = None
    doc_stride: int | None = None
    n_best: int | None = None
    max_answer_length: int | None = None
    null_threshold: float | None = None


@dataclass(frozen=True)
class PredictOptions:
    """What `predict` reads: windows and answers as evaluated, and for an MNLI model the diagnostic set too."""

    max_length: int | None = None
    doc_stride: int | None = None
    n_best: int | None = None
    max_answer_length: int | None = None
    null_threshold: float | None = None
    diagnostic: bool = False


@dataclass(frozen=True)
class AdaptOptions:
    """How `adapt` builds a student: its kind and the kind's own options (None: not this kind's); with a
    hash-balance router the train rows it counts tokens on."""

    student: str
    importance: str | None = None
    num_experts: int | None = None
    expert_dim: int | None = None
    shared_dim: int | None = None
    construction: str | None = None
    router: str | None = None
    expert_dropout: float | None = None
    gate_sentence_batch1: str | None = None
    hash_balance: str | None = None
    shared: str | None = None
    mpo_max_bond: int | None = None
    mpo_forward: str | None = None
    mpo_in_factors: list[int] | None = None
    mpo_out_factors: list[int] | None = None
    task: str | None = None
    data: str | None = None
    max_length: int | None = None
    max_train_samples: int | None = None
    doc_stride: int | None = None


@dataclass(frozen=True)
class PrepareOptions:
    source: str | None  # None: a user task, whose declaration names its files
    eval_articles: int | None = None
    split_seed: int | None = None
    declaration: str | None = None  # a user task's declaration (custom_tasks.<name>) as JSON


@dataclass(frozen=True)
class SpeedGrid:
    repeats: int
    threads: int
    device: str
    batch_sizes: list[int]
    seq_lengths: list[int]


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def flags(*options) -> str:
    """`--name value` for every set field of the options, in field order."""
    parts = []
    for option in options:
        for f in fields(option):
            value = getattr(option, f.name)
            if value is None or value is False:
                continue
            if value is True:
                parts.append(flag(f.name))
            elif isinstance(value, list | tuple):
                parts.append(" ".join([flag(f.name), *(shlex.quote(str(v)) for v in value)]))
            else:
                parts.append(f"{flag(f.name)} {shlex.quote(str(value))}")
    return " ".join(parts)


def from_args(cls: type[T], args: argparse.Namespace, **fixed: Any) -> T:
    """The options of `cls` from a parsed command line (its destinations are the field names). A flag not given
    (None) takes the field's default, which is written back to `args` too, so that the run's parameters record
    the value the stage used."""
    values = {}
    for f in fields(cls):
        if f.name in fixed:
            continue
        value = getattr(args, f.name)
        if value is None and f.default is not MISSING and f.default is not None:
            value = f.default
            setattr(args, f.name, value)
        values[f.name] = value
    return cls(**values, **fixed)
