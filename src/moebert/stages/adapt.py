"""`moebert adapt`: a method's untrained student, built from the fine-tuned teacher by its student kind (the
registry `moebert.students`): experts cut from each FFN (MoEBERT and its ablations), MPO experts sharing a
central tensor (MPOE), or a dense control."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

from moebert import tracking
from moebert.config import from_args, schema_default
from moebert.config.options import AdaptOptions, flag
from moebert.errors import MoebertError
from moebert.files import atomic_dir, write_json
from moebert.stages.common import (
    DATA_HELP,
    add_method_arguments,
    add_task_arguments,
    features,
    require_file,
    resolve_task,
    run_params,
)
from moebert.students import STUDENTS, StudentOptionError, get_student

HELP = "build a student from the teacher: experts (moe, mpoe) or a dense control"
# The rows hash-balance counts its tokens on: the options of a student that needs train tokens only.
TRAIN_ROWS = ("task", "data", "max_length", "max_train_samples", "doc_stride")
# Options of some student kinds: each kind takes its own (students/<kind>.py) and refuses the others.
KIND_OPTIONS = tuple(
    f.name for f in fields(AdaptOptions) if f.name not in ("student", "importance", *TRAIN_ROWS)
)


def add_arguments(parser) -> None:
    add_task_arguments(parser, task=False, data=False)
    parser.add_argument("--model", required=True, help="the fine-tuned teacher")
    parser.add_argument(
        "--output", required=True, help="directory for the student and experts.json (how it was built)"
    )
    parser.add_argument(
        "--student",
        choices=tuple(kind for kind, spec in STUDENTS.items() if spec.trains),
        default=schema_default("method.student"),
        help="moe: experts cut from each FFN (MoEBERT; all neurons shared = Switch copies); "
        "mpoe: MPO experts sharing a central tensor (MPOE); dense-narrow: one dense FFN of the "
        "--expert-dim most important neurons; distil-half: every other teacher layer, dense",
    )
    parser.add_argument("--importance", help="output of `moebert importance` (moe, dense-narrow)")
    add_method_arguments(
        parser.add_argument_group("student options (each kind takes its own; defaults: the config schema's)"),
        "adapt",
    )
    g = parser.add_argument_group("train rows (a student whose router is hash-balance counts their tokens)")
    g.add_argument("--task", help="task of the train rows")
    g.add_argument("--data", help=DATA_HELP)
    g.add_argument("--max-train-samples", type=int, help="seeded subsample of the train rows")


def student_options(kind, adapt: AdaptOptions) -> dict:
    """The kind's options from the command line: the flags given, checked by the kind, its defaults for the rest."""
    given = {name: getattr(adapt, name) for name in KIND_OPTIONS if getattr(adapt, name) is not None}
    defaults = {key: schema_default(f"method.{key}") for key in kind.accepted}
    try:
        return kind.options(given, defaults)
    except StudentOptionError as err:
        raise MoebertError(f"{flag(err.key)}: {err.why}") from None


def token_counts(args, teacher, tokenizer, adapt: AdaptOptions):
    """How often every token id occurs in the train rows (hash-balance), or None where the student needs none."""
    from moebert.students.moe import token_counts as count

    if not (adapt.task and adapt.data):
        raise MoebertError("router 'hash-balance' needs --task and --data (token counts of the train split)")
    task = resolve_task(args)
    rows = features(
        task,
        tokenizer,
        adapt.data,
        "train",
        adapt.max_length,
        adapt.max_train_samples,
        args.seed,
        adapt.doc_stride,
    )
    return count(rows["input_ids"], teacher.config.vocab_size)


def importance_orders(path: str, layers: int):
    from safetensors.torch import load_file

    scores = load_file(require_file(path, "importance file", "run `moebert importance` first"))
    return [scores[f"order.{i}"] for i in range(layers) if f"order.{i}" in scores]


def run(args) -> None:
    from moebert.models.loading import check_teacher, load_model, load_tokenizer

    adapt = from_args(AdaptOptions, args)
    kind = get_student(adapt.student)
    check_teacher(args.model, [kind.name])
    options = student_options(kind, adapt)
    if kind.needs_importance and adapt.importance is None:
        raise MoebertError(f"--student {kind.name} needs --importance (the teacher's neuron order)")
    if not kind.needs_importance and adapt.importance is not None:
        raise MoebertError(
            f"--importance: a --student {kind.name} keeps no neurons by importance; leave it out"
        )
    rows = [flag(name) for name in TRAIN_ROWS if getattr(adapt, name) is not None]
    if rows and not kind.needs_train_tokens(options):
        raise MoebertError(
            f"{', '.join(rows)}: only a student routed by hash-balance counts train tokens; leave "
            f"{'them' if len(rows) > 1 else 'it'} out"
        )
    tokenizer = load_tokenizer(args.model)
    teacher = load_model(args.model)
    orders = (
        importance_orders(adapt.importance, teacher.config.num_hidden_layers)
        if kind.needs_importance
        else None
    )
    counts = token_counts(args, teacher, tokenizer, adapt) if kind.needs_train_tokens(options) else None
    student, built = kind.build(teacher, options, seed=args.seed, orders=orders, token_counts=counts)
    with tracking.tracked_run(args, run_params(args)) as run_:
        with atomic_dir(args.output) as tmp:
            student.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            write_json(tmp / "experts.json", {"student": kind.name, **built})
        if run_:
            run_.log_artifact(Path(args.output) / "experts.json")
    print(f"student ({kind.name}) -> {args.output}")
