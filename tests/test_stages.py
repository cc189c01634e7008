"""The package's seams: every `moebert` command is the stage module of its name, and every stage module a
command."""

from __future__ import annotations

import importlib
import pkgutil

import moebert.stages
from moebert.cli import COMMANDS, build_parser


def test_every_command_is_the_stage_module_of_its_name():
    assert COMMANDS == {name: f"moebert.stages.{name.replace('-', '_')}" for name in COMMANDS}
    modules = {m.name for m in pkgutil.iter_modules(moebert.stages.__path__)} - {"common"}
    assert modules == {name.replace("-", "_") for name in COMMANDS}
    for module in map(importlib.import_module, COMMANDS.values()):
        assert isinstance(module.HELP, str) and callable(module.add_arguments) and callable(module.run)
    parser = build_parser()
    assert (
        parser.parse_args(["speed", "--output", "x.csv"]).func
        is importlib.import_module(COMMANDS["speed"]).run
    )
