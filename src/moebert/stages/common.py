"""What the stage commands share: their common flags (defaults from the config schema, so a stage run by
hand behaves as the workflow's default job), resolving the task once, and training and saving a model."""

from __future__ import annotations

import argparse
from pathlib import Path

from moebert import tracking
from moebert.config import schema_default
from moebert.config.options import TrainOptions, flag
from moebert.config.validation import declaration, method_keys, taken_by
from moebert.device import DEVICE_HELP
from moebert.errors import MoebertError
from moebert.files import atomic_dir, identity
from moebert.models.bert_experts import IMPLEMENTATIONS

DATA_HELP = (
    "a directory (GLUE: the classic layout <dir>/<TASK>/train.tsv ...; SQuAD: the official JSON files or a "
    "prepared copy) or 'hub' (nyu-mll/glue, rajpurkar/squad, rajpurkar/squad_v2)"
)
# Options of question answering only; every other task refuses them.
QA_OPTIONS = ("doc_stride", "n_best", "max_answer_length", "null_threshold", "eval_articles")


def add_task_arguments(parser: argparse.ArgumentParser, task: bool = True, data: bool = True) -> None:
    if task:
        parser.add_argument("--task", required=True, help="GLUE or SQuAD task (see `moebert tasks`)")
    if data:
        parser.add_argument("--data", required=True, help=DATA_HELP)
    parser.add_argument("--seed", type=int, default=0)
    add_window_arguments(parser)
    tracking.add_tracking_arguments(parser)


def add_window_arguments(parser, stride_note: str = "") -> None:
    """How examples are cut into model inputs: --max-length and, for QA, --doc-stride."""
    add_declared(parser, "task.max_length")
    add_declared(parser, "task.doc_stride", note=stride_note)


def add_device_argument(parser: argparse.ArgumentParser, experts: bool = False) -> None:
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help=DEVICE_HELP)
    if experts:
        parser.add_argument(
            "--experts-implementation",
            choices=("auto", *IMPLEMENTATIONS),
            help="MoE students only: how the experts are computed: auto (default), the fastest on the "
            "device, or one of transformers' experts implementations (the same function)",
        )


def place(model, device, args: argparse.Namespace):
    """The model on `device`, a MoE student's experts computed as --experts-implementation asks (not given: the
    config schema's default, auto: the fastest there); a model without such experts refuses the flag. The
    value is written back to `args`, whose run parameters record it."""
    model = model.to(device)
    given = args.experts_implementation
    args.experts_implementation = given or schema_default("resources.experts_implementation")
    if hasattr(model, "set_experts_implementation") and getattr(model.config, "ffn", None) == "moe":
        model.set_experts_implementation(args.experts_implementation, device)
    elif given is not None:
        what = getattr(model.config, "ffn", None) or "dense"
        raise MoebertError(
            f"--experts-implementation: only MoE students (student moe) compute experts; this model's FFNs "
            f"are {what}; leave it out"
        )
    return model


def check_max_length(model, max_length: int | None) -> None:
    """A given --max-length within the model's positions, refused by name instead of failing in the
    embeddings' lookup."""
    from moebert.models.loading import max_positions

    limit = max_positions(model.config)
    if max_length is not None and max_length > limit:
        raise MoebertError(
            f"--max-length {max_length}: the model has {limit} position embeddings "
            f"(max_position_embeddings of its config); give at most {limit}"
        )


def add_declared(group, path: str, *, default=None, note: str = "") -> None:
    """The flag of a config key (its dotted schema path) with the key's type, allowed values and description;
    not given (None) unless `default`; `note` adds what the flag means beside the config key."""
    prop = declaration(path)
    text = " ".join(prop["description"].split()) + (f" {note}" if note else "")
    shown = f" (default {default})" if default is not None else ""
    group.add_argument(
        flag(path.rsplit(".", 1)[-1]),
        help=(text + shown).replace("%", "%%"),
        **_argument_type(prop),
        **({"default": default} if default is not None else {}),
    )


def _argument_type(prop: dict) -> dict:
    """argparse's type, choices or action for a schema declaration."""
    if "enum" in prop:
        return {"choices": prop["enum"]}
    (kind,) = [t for t in ([prop["type"]] if isinstance(prop["type"], str) else prop["type"]) if t != "null"]
    scalar = {"integer": int, "number": float}
    if kind == "boolean":
        return {"action": "store_true", "default": None}
    if kind == "array":
        return {"type": scalar[prop["items"]["type"]], "nargs": "+"}
    return {"type": scalar[kind]}


def method_help(key: str) -> str:
    """A method key's flag help: the student kinds that take it, its description and its default(s)."""
    from moebert.students import STUDENTS

    prop = method_keys()[key]
    kinds = taken_by(key)
    defaults = {name: STUDENTS[name].defaults.get(key, prop["default"]) for name in kinds}
    shown = {name: "none" if value is None else value for name, value in defaults.items()}
    if len(set(map(repr, defaults.values()))) == 1:
        default = f"default {shown[kinds[0]]}"
    else:
        default = "defaults " + ", ".join(f"{name} {value}" for name, value in shown.items())
    description = " ".join(prop["description"].split()).replace("%", "%%")
    return f"{', '.join(kinds)}: {description} ({default})"


def add_method_arguments(group, stage: str) -> None:
    """The flags of the method keys that `stage` (adapt or distill) reads, made from their declarations in the
    config schema. Each defaults to not given (None): the student kind, or the stage, applies the schema's
    default after, so a flag given to a kind that does not take it is refused."""
    for key, prop in method_keys().items():
        if prop["stage"] == stage:
            group.add_argument(flag(key), help=method_help(key), **_argument_type(prop))


def add_train_arguments(parser: argparse.ArgumentParser, stage: str) -> None:
    """The flags of TrainOptions; hyper-parameters default to the schema's `stage` block (teacher, or a task's
    distill), the shared settings to its `training` block."""
    hyper = "teacher" if stage == "teacher" else "task.distill"
    g = parser.add_argument_group("training")
    for key in ("epochs", "lr", "batch_size", "weight_decay"):
        note = "(over all processes and accumulation steps: each device takes batch / (processes x --grad-accum))"
        add_declared(
            g,
            f"{hyper}.{key}",
            default=schema_default(f"{hyper}.{key}"),
            note=note if key == "batch_size" else "",
        )
    add_declared(g, "task.max_train_samples")
    for key in ("grad_accum", "save_minutes", "sampler", "padding"):
        add_declared(g, f"training.{key}", default=schema_default(f"training.{key}"))
    g.add_argument("--fp16", action="store_true", help="mixed precision (GPU)")
    g.add_argument("--bf16", action="store_true", help="bfloat16 mixed precision")


def add_answer_arguments(parser: argparse.ArgumentParser) -> None:
    """How a QA model's answers are searched: `evaluate` and `predict` take the same options."""
    group = parser.add_argument_group("question answering")
    for key in ("n_best", "max_answer_length", "null_threshold"):
        add_declared(group, f"task.{key}")


def answer_settings(task, options):
    """The QaSettings of a QA task from the options given (`doc_stride`, `n_best`, `max_answer_length`,
    `null_threshold`; None leaves the default), the task's stride by default; one place for `evaluate` and
    `predict`, so a prediction file holds the answers that were scored."""
    from moebert.tasks.qa import QaSettings

    given = {
        name: getattr(options, name)
        for name in vars(QaSettings())
        if getattr(options, name, None) is not None
    }
    return QaSettings(**{"doc_stride": task.doc_stride, **given})


def resolve_task(args: argparse.Namespace):
    """The task of `--task`, resolved once; QA-only options are refused for the other tasks. A user task is
    resolved from the declaration its prepared data holds (<data>/<task>/task.json)."""
    from moebert.tasks import TASKS, QaTask, declare, get_task
    from moebert.tasks.custom import load_declared

    data = getattr(args, "data", None)
    if args.task not in TASKS and data and data != "hub":
        declared = load_declared(args.task, data)
        if declared is not None:
            declare(declared)
    task = get_task(args.task)
    if not isinstance(task, QaTask):
        given = [flag(name) for name in QA_OPTIONS if getattr(args, name, None) is not None]
        if given:
            raise MoebertError(
                f"{', '.join(given)}: only question-answering tasks take it ({task.name} is not one)"
            )
    elif not task.has_unanswerable and getattr(args, "null_threshold", None) is not None:
        raise MoebertError(
            f"--null-threshold: {task.name} has no unanswerable questions (only SQuAD v2.0 does), so no "
            f"answer is ever left empty; leave it out"
        )
    return task


def features(
    task,
    tokenizer,
    data: str,
    split: str,
    max_length: int | None,
    rows: int | None,
    seed: int,
    doc_stride: int | None,
):
    """Model inputs with labels of a split of `task`, a seeded subsample of `rows` rows (QA: questions)."""
    from moebert.tasks import QaTask

    qa = {"doc_stride": doc_stride} if isinstance(task, QaTask) else {}
    return task.features(tokenizer, data, split, max_length, rows, seed, **qa)


def train_rows(args: argparse.Namespace, task, tokenizer, options: TrainOptions):
    """The rows a training stage trains on: the train split, capped and cut as its options say."""
    return features(
        task,
        tokenizer,
        args.data,
        "train",
        options.max_length,
        options.max_train_samples,
        args.seed,
        options.doc_stride,
    )


def run_params(args: argparse.Namespace) -> dict:
    """The command's own options as run parameters; tracking options travel as tags instead."""
    skip = {"func", *tracking.OPTION_DESTS}
    return {k: v for k, v in vars(args).items() if k not in skip}


def train(
    args,
    options: TrainOptions,
    task,
    model,
    tokenizer,
    train_ds,
    *,
    device,
    run,
    inputs: dict[str, str],
    callbacks=(),
    **trainer,
):
    """Train on `device` with the command's training options (parsed from `args` by the stage), resuming only
    a checkpoint of the same run parameters and the same `inputs` (name -> path, fingerprinted by their
    files). `trainer`: the trainer class and its own arguments (distillation)."""
    from moebert.tasks import data as task_data
    from moebert.training.trainer import TrainConfig
    from moebert.training.trainer import train as train_model

    if options.fp16 and device.type != "cuda":
        raise MoebertError(
            f"--fp16: fp16 mixed precision needs a GPU (this job runs on {device.type}); use --bf16 or fp32"
        )
    padded_to = (options.max_length or task.max_length) if options.padding == "max-length" else None
    fingerprint = {**run_params(args), "inputs": {name: identity(path) for name, path in inputs.items()}}
    train_model(
        model,
        args.output,
        train_ds,
        task_data.collator(tokenizer, padded_to),
        tokenizer,
        TrainConfig(options, args.save_minutes, args.seed),
        device,
        fingerprint,
        callbacks=[*callbacks, *([run.trainer_callback()] if run else [])],
        **trainer,
    )


def save_trained(output: str, model, tokenizer) -> None:
    """Save the trained model atomically and drop its checkpoints. It is evaluated by `moebert evaluate`
    alone, so the workflow has one place where metrics come from."""
    from moebert.training.trainer import discard_checkpoints, is_main_process

    if not is_main_process():  # under accelerate launch every process holds the same model: one saves it
        return
    with atomic_dir(output) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    discard_checkpoints(output)
    print(f"trained model -> {output}")


def require_file(path: str, what: str, hint: str) -> Path:
    if not Path(path).is_file():
        raise MoebertError(f"{what} '{path}' does not exist ({hint})")
    return Path(path)
