"""`moebert prepare-data`: a task's data validated and written as a prepared copy (GLUE tsv, SQuAD json), from a
directory or the hub; offline, SQuAD's train and dev can be cut from its dev file by article."""

from __future__ import annotations

import json

from moebert.config import schema_default
from moebert.stages.common import DATA_HELP, resolve_task

HELP = "validate a task's data and write a prepared copy (GLUE tsv, SQuAD json)"


def add_arguments(parser) -> None:
    parser.add_argument("--task", required=True)
    parser.add_argument("--source", help=f"{DATA_HELP}; not with --declaration")
    parser.add_argument(
        "--declaration",
        metavar="JSON",
        help="a user task: its declaration (a config's custom_tasks.<task>, as JSON), which names its files",
    )
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

    if args.declaration is not None:
        return _prepare_declared(args)
    if args.source is None:
        raise MoebertError("--source: give the task's data (or a user task's --declaration)")
    task = resolve_task(args)
    if args.split_seed is not None and args.eval_articles is None:
        raise MoebertError("--split-seed: only an article split (--eval-articles) is seeded; leave it out")
    split = {}
    if isinstance(task, QaTask):
        seed = schema_default("task.split_seed") if args.split_seed is None else args.split_seed
        split = {"eval_articles": args.eval_articles, "split_seed": seed}
    print(f"{task.display} -> {task.prepare(args.source, args.output, **split)}")


def _prepare_declared(args) -> None:
    """A user task: its declaration checked against the schema (defaults filled in), its files read, checked
    and written with task.json beside them."""
    from moebert.config.validation import ConfigError, check_custom_task
    from moebert.errors import MoebertError
    from moebert.tasks import custom

    given = [name for name in ("source", "eval_articles", "split_seed") if getattr(args, name) is not None]
    if given:
        raise MoebertError(f"--{given[0].replace('_', '-')}: a user task's declaration names its files")
    try:
        try:
            given = json.loads(args.declaration)
        except json.JSONDecodeError as err:
            raise MoebertError(f"--declaration: not JSON ({err})") from None
        declaration = check_custom_task(args.task, given)
        target = custom.prepare(args.task, declaration, args.output)
    except custom.DeclarationError as err:
        raise ConfigError(["custom_tasks", args.task, *([err.key] if err.key else [])], str(err)) from None
    print(f"{args.task} -> {target}")
