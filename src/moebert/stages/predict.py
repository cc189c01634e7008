"""`moebert predict`: a trained model's predictions as the benchmarks take them. GLUE: the submission file of
each unlabelled test split (<output>/<Name>.tsv; with --diagnostic an MNLI model also writes AX.tsv), which
`moebert submission` zips, several tasks' together, for upload. SQuAD, which has no public test set: the
answers to the eval split in the JSON the official evaluation script reads (moebert.prediction)."""

from __future__ import annotations

import argparse

from moebert.device import resolve_device
from moebert.errors import MoebertError
from moebert.stages.common import (
    add_answer_arguments,
    add_device_argument,
    add_window_arguments,
    answer_settings,
    check_max_length,
    place,
    resolve_task,
)

HELP = "predictions on a task's test split as the benchmark takes them (GLUE files, SQuAD JSON)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--task", required=True, help="GLUE or SQuAD task (see `moebert tasks`)")
    parser.add_argument(
        "--data",
        required=True,
        help="a directory (GLUE: the classic layout with <TASK>/test.tsv, MNLI test_matched.tsv and "
        "test_mismatched.tsv, and diagnostic/diagnostic.tsv for --diagnostic; SQuAD: the "
        "official JSON files or a prepared copy) or 'hub' (nyu-mll/glue, rajpurkar/squad, "
        "rajpurkar/squad_v2)",
    )
    parser.add_argument("--model", required=True, help="a model fine-tuned on the task (teacher or student)")
    parser.add_argument(
        "--output",
        required=True,
        help="directory receiving the submission file(s) (GLUE: <Name>.tsv and submission.zip; "
        "SQuAD: <result key>-predictions.json)",
    )
    add_window_arguments(
        parser,
        "Give this and the answer options below as `evaluate` was given them, so that the file holds the "
        "answers it scored.",
    )
    add_answer_arguments(parser)
    parser.add_argument("--batch-size", type=int, default=64)
    add_device_argument(parser, experts=True)
    parser.add_argument(
        "--diagnostic",
        action="store_true",
        help="MNLI only: also predict GLUE's diagnostic set (AX.tsv) with this model",
    )


def run(args: argparse.Namespace) -> None:
    from moebert import prediction
    from moebert.models.loading import load_tokenizer, load_trained
    from moebert.tasks import DIAGNOSTIC, QaTask, load_test_split
    from moebert.tasks import squad as squad_data
    from moebert.tasks.custom import CustomTask

    task = resolve_task(args)
    if args.diagnostic and not getattr(task, "predicts_diagnostic", False):
        raise MoebertError(
            f"--diagnostic: GLUE's diagnostic set AX is predicted with an MNLI model, and {task.name} "
            f"is not MNLI; leave it out"
        )
    for flag, value in (("--max-length", args.max_length), ("--batch-size", args.batch_size)):
        if value is not None and value < 1:
            raise MoebertError(f"{flag} must be a positive number, got {value}")
    max_length = args.max_length or task.max_length
    if isinstance(task, CustomTask):  # a user task: one file, a prediction per row of its test split
        device = resolve_device(args.device)
        tokenizer = load_tokenizer(args.model)
        model = place(load_trained(args.model, task), device, args)
        check_max_length(model, args.max_length)
        qa = answer_settings(task, args) if isinstance(task, QaTask) else None  # as `evaluate` searches them
        for path in task.write_predictions(
            model, tokenizer, args.data, args.output, max_length, args.batch_size, qa
        ):
            print(f"{task.display} predictions -> {path}")
        return
    # The data is read and checked before the model loads, so a missing or bad file fails at once.
    if isinstance(task, QaTask):
        inputs = {split: squad_data.load_split(task, args.data, split) for split in task.eval_splits}
    else:
        inputs = {
            split: load_test_split(task, args.data, split)
            for split in task.test_splits
            if split != DIAGNOSTIC or args.diagnostic
        }
    device = resolve_device(args.device)
    tokenizer = load_tokenizer(args.model)
    model = place(load_trained(args.model, task), device, args)
    check_max_length(model, args.max_length)
    if isinstance(task, QaTask):
        qa = answer_settings(task, args)  # as `evaluate` searches them
        written = prediction.squad_predictions(
            model, tokenizer, task, inputs, args.output, max_length, args.batch_size, qa
        )
    else:
        written = prediction.glue_submission(
            model, tokenizer, task, inputs, args.output, max_length, args.batch_size
        )
    for path in written:
        print(f"{task.display} predictions -> {path}")
