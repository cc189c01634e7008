"""`moebert tasks`: the task registry as a table."""

from __future__ import annotations

HELP = "list the GLUE and SQuAD tasks with their metrics"


def add_arguments(parser) -> None:
    pass


def run(args) -> None:
    from moebert.tasks import format_task_table

    print(format_task_table())
