"""The typed options of the stages: what a CLI command parses its flags into and what the workflow renders a
job's flags from, so that one definition serves both.

A field is a flag: `--field-name value`; None leaves the flag out (the field's default, or the command's,
applies), a bool is a bare switch, a list gives its items after the flag. `flags(...)` renders options for a shell command,
`from_args(...)` reads them back from an argparse namespace; `from_args(parse(flags(o))) == o`. The fields of
the method keys (AdaptOptions, DistillOptions) are made from the keys' declarations in the config schema.
"""

from __future__ import annotations

import argparse
import copy
import shlex
from dataclasses import MISSING, dataclass, field, fields, make_dataclass
from typing import Any, TypeVar

from moebert.config.validation import TRAINED, method_keys

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


def _method_fields(stage: str) -> list[tuple]:
    """The fields of the method keys that `stage` reads, made from their schema declarations, in the schema's
    order: a key every trained kind takes defaults to the schema's default, a kind's own key to None (not
    given: the kind resolves it, or refuses it)."""
    made = []
    for key, prop in method_keys().items():
        if prop["stage"] == stage:
            default = copy.deepcopy(prop["default"]) if prop["students"] == TRAINED else None
            made.append((key, Any, field(default=default)))
    return made


def _options(name: str, doc: str, fields_: list[tuple]) -> type:
    made = make_dataclass(name, fields_, frozen=True)
    made.__doc__, made.__module__ = doc, __name__
    return made


DistillOptions = _options(
    "DistillOptions",
    """What `distill` adds to training: the loss of Eq. 7 and the student's own training keys (the method keys
    of stage distill).""",
    [("distill_weight", float | None, field(default=None)), *_method_fields("distill")],
)

AdaptOptions = _options(
    "AdaptOptions",
    """How `adapt` builds a student: its kind and the kind's own options (the method keys of stage adapt; None:
    not given, or not this kind's); with a hash-balance router the train rows it counts tokens on.""",
    [
        ("student", str),
        ("importance", str | None, field(default=None)),
        *_method_fields("adapt"),
        *(
            (name, Any, field(default=None))
            for name in ("task", "data", "max_length", "max_train_samples", "doc_stride")
        ),
    ],
)


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
