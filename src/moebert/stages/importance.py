"""`moebert importance`: the importance of every FFN neuron of a fine-tuned teacher (paper Eq. 4; docs/method.md
§2), which decides what the experts keep."""

from __future__ import annotations

import argparse

from moebert import tracking
from moebert.config import from_args, schema_default
from moebert.config.options import ImportanceOptions
from moebert.device import resolve_device
from moebert.files import atomic_file
from moebert.stages.common import (
    add_declared,
    add_device_argument,
    add_task_arguments,
    check_max_length,
    features,
    resolve_task,
    run_params,
)

HELP = "score FFN neurons by importance (Eq. 4)"


def rows_or_all(text: str) -> int | str:
    if text == "all":
        return text
    rows = int(text)
    if rows < 1:
        raise argparse.ArgumentTypeError(f"{rows}: give a positive number of rows or 'all'")
    return rows


def add_arguments(parser) -> None:
    add_task_arguments(parser)
    parser.add_argument("--model", required=True, help="the fine-tuned teacher")
    parser.add_argument(
        "--output", required=True, help="safetensors file with scores.<layer> and order.<layer>"
    )
    add_declared(parser, "importance.split", default=schema_default("importance.split"))
    parser.add_argument(
        "--max-samples",
        type=rows_or_all,
        default=schema_default("importance.max_samples"),
        help="seeded subsample of each split, or 'all' (the reference scores every dev row)",
    )
    add_declared(parser, "importance.batch_size", default=schema_default("importance.batch_size"))
    add_device_argument(parser)


def run(args) -> None:
    import datasets
    from safetensors.torch import save_file
    from torch.utils.data import DataLoader

    from moebert.models.loading import load_tokenizer, load_trained
    from moebert.tasks import data as task_data
    from moebert.training.importance import importance_scores, orders

    task = resolve_task(args)
    options = from_args(ImportanceOptions, args)
    device = resolve_device(args.device)
    tokenizer = load_tokenizer(args.model)
    model = load_trained(args.model, task).to(device)
    check_max_length(model, options.max_length)
    # dev: every eval split, as the reference sums over (MNLI: matched and mismatched), each capped alike. QA: windows
    # with answer positions, so the loss of Eq. 4 is defined on them.
    splits = ["train"] if options.split == "train" else list(task.eval_splits)
    rows = None if options.max_samples == "all" else options.max_samples
    dataset = datasets.concatenate_datasets(
        [
            features(
                task, tokenizer, args.data, split, options.max_length, rows, args.seed, options.doc_stride
            )
            for split in splits
        ]
    )
    loader = DataLoader(dataset, batch_size=options.batch_size, collate_fn=task_data.collator(tokenizer))
    with tracking.tracked_run(args, run_params(args)) as run_:
        scores = importance_scores(model, loader)
        tensors = {f"scores.{i}": s.float() for i, s in enumerate(scores)}
        tensors.update({f"order.{i}": o for i, o in enumerate(orders(scores))})
        with atomic_file(args.output) as tmp:
            save_file(
                tensors,
                str(tmp),
                metadata={"task": task.name, "split": "+".join(splits), "examples": str(len(dataset))},
            )
        if run_:
            run_.log_metrics({"examples": len(dataset)})
    print(
        f"importance of {len(scores)} layers from {len(dataset)} {'+'.join(splits)} examples -> {args.output}"
    )
