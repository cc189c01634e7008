"""`moebert` command line: one command per pipeline stage, explicit inputs and outputs.

Every stage reads and validates its inputs before it writes anything, and writes its outputs atomically. Each
command is a module of moebert/stages/, of the command's name; this file only dispatches.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from moebert.errors import MoebertError

# Command -> the module that defines it (HELP, add_arguments, run), in the order of the help text.
COMMANDS = {
    "tasks": "moebert.stages.tasks",
    "plan": "moebert.stages.plan",
    "fetch-model": "moebert.stages.fetch_model",
    "prepare-data": "moebert.stages.prepare_data",
    "finetune": "moebert.stages.finetune",
    "importance": "moebert.stages.importance",
    "adapt": "moebert.stages.adapt",
    "distill": "moebert.stages.distill",
    "evaluate": "moebert.stages.evaluate",
    "predict": "moebert.stages.predict",
    "export": "moebert.stages.export",
    "submission": "moebert.stages.submission",
    "speed": "moebert.stages.speed",
    "report": "moebert.stages.report",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="moebert", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(module_name)
        command = sub.add_parser(name, help=module.HELP)
        module.add_arguments(command)
        command.set_defaults(func=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except MoebertError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
