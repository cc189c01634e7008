"""`moebert prepare-data`: a task's data validated and written as a prepared copy (GLUE tsv, SQuAD json), from a
directory or the hub; offline, SQuAD's train and dev can be cut from its dev file by article."""

from __future__ import annotations

from moebert.config import schema_default
from moebert.stages.common import DATA_HELP, resolve_task

HELP = "validate a task's data and write a prepared copy (GLUE tsv, SQuAD json)"


def add_arguments(parser) -> None:
    parser.add_argument("--task", required=True)
    parser.add_argument("--source", required=True, help=DATA_HELP)
    parser.add_argument(
        "--output",
        required=True,
        help="directory that receives <TASK>/<split>.tsv (GLUE) or <TASK>/<split>.json (SQuAD)",
    )
    parser.add_argument(
        "--eval-articles",
        type=int,
        help="QA tasks, offline: make train and dev from the dev file alone, this many articles going "
        "to dev (a non-standard split, labelled so in the tables)",
    )
    parser.add_argument(
        "--split-seed",
        type=int,
        help=f"with --eval-articles: seed of the article split (default {schema_default('task.split_seed')})",
    )


def run(args) -> None:
    from moebert.errors import MoebertError
    from moebert.tasks import QaTask

    task = resolve_task(args)
    if args.split_seed is not None and args.eval_articles is None:
        raise MoebertError("--split-seed: only an article split (--eval-articles) is seeded; leave it out")
    split = {}
    if isinstance(task, QaTask):
        seed = schema_default("task.split_seed") if args.split_seed is None else args.split_seed
        split = {"eval_articles": args.eval_articles, "split_seed": seed}
    print(f"{task.display} -> {task.prepare(args.source, args.output, **split)}")
