"""The CLI end to end on a tiny model and real MRPC rows, resume after a crash, and bad-input errors."""

import json

import numpy as np
import pandas as pd
import pytest
from safetensors import safe_open
from transformers import TrainerCallback

from moebert.cli import main
from moebert.tasks.metrics import compute_metrics

ROWS = ["--max-train-samples", "32", "--max-length", "64", "--batch-size", "8"]


def run(*args):
    return main([str(a) for a in args])


def test_pipeline_stage_by_stage(tiny_model_dir, glue_dir, tmp_path):
    data = ["--task", "mrpc", "--data", glue_dir]
    teacher, student = tmp_path / "teacher", tmp_path / "student"
    assert run("finetune", *data, "--model", tiny_model_dir, "--output", teacher, "--epochs", 1, *ROWS) == 0
    assert (
        run(
            "importance",
            *data,
            "--model",
            teacher,
            "--output",
            tmp_path / "imp.safetensors",
            "--max-samples",
            16,
            "--max-length",
            64,
        )
        == 0
    )
    assert (
        run(
            "adapt",
            "--model",
            teacher,
            "--importance",
            tmp_path / "imp.safetensors",
            "--output",
            tmp_path / "moe",
            "--num-experts",
            4,
            "--expert-dim",
            24,
            "--shared-dim",
            16,
        )
        == 0
    )
    assert (
        run(
            "distill",
            *data,
            "--teacher",
            teacher,
            "--student",
            tmp_path / "moe",
            "--output",
            student,
            "--epochs",
            1,
            *ROWS,
        )
        == 0
    )
    assert (
        run(
            "evaluate",
            *data,
            "--model",
            student,
            "--output",
            tmp_path / "eval.json",
            "--max-eval-samples",
            16,
            "--method",
            "moebert",
        )
        == 0
    )

    record = json.loads((tmp_path / "eval.json").read_text())
    assert record["task"] == "mrpc" and record["method"] == "moebert"
    assert set(record["results"]["MRPC"]) == {"accuracy", "f1"} and record["num_examples"] == {"MRPC": 16}
    assert record["params"]["effective"] < record["params"]["total"]
    assert not (student / "metrics.json").exists()  # evaluated once, by `moebert evaluate`
    experts = json.loads((tmp_path / "moe" / "experts.json").read_text())
    assert len(experts["indices"]) == 2 and all(len(e) == 24 for e in experts["indices"][0])
    with safe_open(student / "model.safetensors", "pt") as f:
        keys = list(f.keys())
    assert "hash_table" in keys and not any("teacher" in k for k in keys)
    assert not (tmp_path / "student.checkpoints").exists()  # removed after success


class Crash(TrainerCallback):
    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == 3:
            raise KeyboardInterrupt("killed")


@pytest.mark.parametrize(
    "rerun_lr, expected",
    [
        ("1e-4", "resuming from checkpoint"),
        ("3e-4", "made with other settings (lr changed); training from scratch"),
    ],
    ids=["same-settings-resume", "other-settings-start-afresh"],
)
def test_killed_training_resumes_only_with_the_same_settings(
    rerun_lr, expected, tiny_model_dir, glue_dir, tmp_path, monkeypatch, capsys
):
    from moebert.training import trainer as training

    out = tmp_path / "teacher"
    args = [
        "finetune",
        "--task",
        "mrpc",
        "--data",
        glue_dir,
        "--model",
        tiny_model_dir,
        "--output",
        out,
        "--epochs",
        2,
        "--save-minutes",
        0,
        *ROWS,
    ]
    real_train = training.train
    monkeypatch.setattr(
        training, "train", lambda *a, callbacks=(), **k: real_train(*a, callbacks=[Crash()], **k)
    )
    with pytest.raises(KeyboardInterrupt):
        run(*args, "--lr", "1e-4")
    assert not out.exists()  # nothing half-written
    assert (tmp_path / "teacher.checkpoints" / "checkpoint-2").is_dir()
    monkeypatch.setattr(training, "train", real_train)
    capsys.readouterr()
    assert run(*args, "--lr", rerun_lr) == 0
    log = capsys.readouterr().out
    assert expected in log, log
    assert ("resuming" in log) == (rerun_lr == "1e-4")
    assert (out / "model.safetensors").is_file()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--task", "mrcp"], "unknown task 'mrcp'; did you mean 'mrpc'?"),
        (["--data", "{tmp}/nowhere"], "data directory {tmp}/nowhere not found"),
        (["--model", "{tmp}/no-model"], "model path '{tmp}/no-model' does not exist"),
    ],
)
def test_bad_input_names_the_thing_and_writes_nothing(
    args, message, tiny_model_dir, glue_dir, tmp_path, capsys
):
    defaults = {"--task": "mrpc", "--data": str(glue_dir), "--model": str(tiny_model_dir)}
    defaults.update(dict(zip(args[::2], [a.format(tmp=tmp_path) for a in args[1::2]])))
    out = tmp_path / "out"
    argv = ["finetune", *[x for kv in defaults.items() for x in kv], "--output", out, *ROWS]
    assert run(*argv) == 2
    assert message.format(tmp=tmp_path) in capsys.readouterr().err
    assert not out.exists() and not (tmp_path / "out.checkpoints").exists()


def test_adapt_rejects_impossible_experts_before_writing(tiny_model_dir, tmp_path, capsys):
    import torch
    from safetensors.torch import save_file

    save_file({f"order.{i}": torch.arange(64) for i in range(2)}, tmp_path / "imp.safetensors")
    code = run(
        "adapt",
        "--model",
        tiny_model_dir,
        "--importance",
        tmp_path / "imp.safetensors",
        "--output",
        tmp_path / "moe",
        "--num-experts",
        4,
        "--expert-dim",
        48,
        "--shared-dim",
        16,
    )
    assert code == 2 and "Use expert_dim <= 28, or shared_dim >= 43" in capsys.readouterr().err
    assert not (tmp_path / "moe").exists()


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize("stage", ["finetune", "importance", "distill", "evaluate"])
def test_device_cuda_without_a_gpu_fails_clearly(stage, tiny_model_dir, glue_dir, tmp_path, capsys):
    data = ["--task", "mrpc", "--data", glue_dir]
    model = {"distill": ["--teacher", tiny_model_dir, "--student", tiny_model_dir]}.get(
        stage, ["--model", tiny_model_dir]
    )
    out = tmp_path / "out"
    assert run(stage, *data, *model, "--output", out, "--device", "cuda") == 2
    assert "error: --device cuda: no CUDA device is available on this machine" in capsys.readouterr().err
    assert not out.exists() and not (tmp_path / "out.checkpoints").exists()


def test_every_stage_runs_its_model_on_the_resolved_device(tiny_model_dir, glue_dir, tmp_path, monkeypatch):
    """importance and evaluate move the model to the device; training hands it to the Trainer."""
    import torch

    from moebert import evaluation
    from moebert.stages import evaluate, finetune
    from moebert.stages import importance as importance_stage
    from moebert.training import importance
    from moebert.training import trainer as training

    meta = torch.device("meta")  # a device no stage would pick by itself
    for stage in (evaluate, finetune, importance_stage):
        monkeypatch.setattr(stage, "resolve_device", lambda name: meta)
    seen = {}

    def record(stage, value):
        seen[stage] = value

    monkeypatch.setattr(
        importance,
        "importance_scores",
        lambda model, loader: record("importance", next(model.parameters()).device) or [],
    )
    monkeypatch.setattr(
        evaluation,
        "evaluate",
        lambda model, *a, **k: record("evaluate", next(model.parameters()).device) or ({}, {}, {}),
    )
    monkeypatch.setattr(
        training,
        "train",
        lambda model, output, ds, coll, tok, cfg, device, *a, **k: record("finetune", device),
    )
    data = ["--task", "mrpc", "--data", glue_dir]
    run(
        "importance",
        *data,
        "--model",
        tiny_model_dir,
        "--output",
        tmp_path / "imp.safetensors",
        "--max-samples",
        4,
    )
    run(
        "evaluate", *data, "--model", tiny_model_dir, "--output", tmp_path / "m.json", "--max-eval-samples", 4
    )
    run("finetune", *data, "--model", tiny_model_dir, "--output", tmp_path / "t", *ROWS)
    assert seen == {"importance": meta, "evaluate": meta, "finetune": meta}


class Diverge(TrainerCallback):
    def on_step_begin(self, args, state, control, model=None, **kwargs):
        if state.global_step == 2:
            with __import__("torch").no_grad():
                model.classifier.bias.fill_(float("inf"))


def test_a_diverging_run_writes_no_model(tiny_model_dir, glue_dir, tmp_path, monkeypatch, capsys):
    from moebert.training import trainer as training

    real_train = training.train
    monkeypatch.setattr(
        training, "train", lambda *a, callbacks=(), **k: real_train(*a, callbacks=[Diverge()], **k)
    )
    out = tmp_path / "teacher"
    assert (
        run(
            "finetune",
            "--task",
            "mrpc",
            "--data",
            glue_dir,
            "--model",
            tiny_model_dir,
            "--output",
            out,
            *ROWS,
        )
        == 2
    )
    assert (
        "error: training diverged: loss term 'task' is nan at optimiser step 3 of 12"
        in capsys.readouterr().err
    )
    assert not out.exists()


def _central(model_dir):
    from moebert.models.loading import load_model

    return [p.detach().clone() for p in load_model(str(model_dir)).central_parameters()]


@pytest.mark.parametrize("p_b", [1.0, 0.0])
def test_mpoe_and_switch_students_through_the_cli(p_b, tiny_model_dir, glue_dir, tmp_path, capsys):
    """adapt --student mpoe -> distill with the gradient mask -> evaluate; and the Switch copies."""
    import torch

    from moebert.models.loading import load_model

    data = ["--task", "mrpc", "--data", glue_dir]
    teacher = tmp_path / "teacher"
    assert run("finetune", *data, "--model", tiny_model_dir, "--output", teacher, "--epochs", 1, *ROWS) == 0
    mpoe, student = tmp_path / "mpoe", tmp_path / "student"
    assert (
        run(
            "adapt",
            "--model",
            teacher,
            "--output",
            mpoe,
            "--student",
            "mpoe",
            "--num-experts",
            2,
            "--mpo-in-factors",
            2,
            4,
            4,
            "--mpo-out-factors",
            4,
            4,
            4,
        )
        == 0
    )
    experts = json.loads((mpoe / "experts.json").read_text())
    assert experts["student"] == "mpoe" and experts["matrices"]["intermediate"]["in_factors"] == [2, 4, 4]
    assert (
        run(
            "distill",
            *data,
            "--teacher",
            teacher,
            "--student",
            mpoe,
            "--output",
            student,
            "--epochs",
            1,
            "--gradient-mask",
            p_b,
            "--lr",
            "1e-3",
            *ROWS,
        )
        == 0
    )
    assert (
        f"central tensors held at {4 if p_b else 0} of the run's optimiser steps" in capsys.readouterr().out
    )
    before, after = _central(mpoe), _central(student)
    assert len(before) == 4 and all(torch.equal(a, b) == bool(p_b) for a, b in zip(after, before))
    aux = [load_model(str(m)).moe_layers()[0].w_in.auxiliary[0].detach() for m in (mpoe, student)]
    assert not torch.equal(*aux)  # the auxiliaries learn either way
    assert (
        run("evaluate", *data, "--model", student, "--output", tmp_path / "m.json", "--max-eval-samples", 8)
        == 0
    )
    params = json.loads((tmp_path / "m.json").read_text())["params"]
    assert params["effective"] == params["total"] - params["per_expert"] > 0

    switch = tmp_path / "switch"
    assert (
        run(
            "adapt",
            "--model",
            teacher,
            "--importance",
            _importance(teacher, data, tmp_path),
            "--output",
            switch,
            "--num-experts",
            2,
            "--expert-dim",
            64,
            "--shared-dim",
            64,
            "--router",
            "gate-token",
            "--expert-dropout",
            0,
        )
        == 0
    )
    examples = tmp_path / "examples" / "s.csv"
    assert (
        run(
            "evaluate",
            *data,
            "--model",
            switch,
            "--output",
            tmp_path / "s.json",
            "--max-eval-samples",
            8,
            "--examples",
            examples,
        )
        == 0
    )
    switch_record = json.loads((tmp_path / "s.json").read_text())
    switch_params = switch_record["params"]
    # The per-example predictions recompute the metrics; the routes of every layer cover the two experts.
    assert switch_record["examples"] == "examples/s.csv"
    rows = pd.read_csv(examples)
    assert rows.columns.tolist() == ["split", "example", "label", "prediction"] and len(rows) == 8
    logits = np.eye(2)[rows.prediction]
    assert compute_metrics("mrpc", logits, rows.label) == pytest.approx(switch_record["results"]["MRPC"])
    routing = switch_record["routing"]["MRPC"]
    assert len(routing) == 2 and all(sum(layer["share"]) == pytest.approx(1) for layer in routing)
    assert all(0 < layer["chosen_probability"] <= 1 for layer in routing)
    assert switch_params["per_expert"] > params["per_expert"]  # a whole FFN per expert, against auxiliaries


def _importance(teacher, data, tmp_path):
    out = tmp_path / "imp.safetensors"
    assert (
        run("importance", *data, "--model", teacher, "--output", out, "--max-samples", 8, "--max-length", 32)
        == 0
    )
    return out


def test_stages_refuse_an_unsupported_backbone_or_a_refused_student(
    tiny_model_dir, glue_dir, tmp_path, capsys, monkeypatch
):
    """Outside the workflow too: the first stage that loads the teacher refuses its backbone, adapt a student
    kind the backbone refuses (here a fake refusal of BERT's)."""
    from moebert.backbones import BACKBONES

    gpt = tmp_path / "gpt"
    gpt.mkdir()
    (gpt / "config.json").write_text('{"model_type": "gpt2"}')
    argv = ["finetune", "--task", "rte", "--data", glue_dir, "--model", gpt, "--output", tmp_path / "t"]
    assert run(*argv) == 2
    assert capsys.readouterr().err == (
        "error: model type 'gpt2' is not a supported backbone; supported: bert, roberta, xlm-roberta, electra, "
        "deberta-v2, modernbert\n"
    )
    monkeypatch.setitem(BACKBONES["bert"].refuses, "distil-half", "a test's reason")
    assert (
        run("adapt", "--model", tiny_model_dir, "--student", "distil-half", "--output", tmp_path / "s") == 2
    )
    assert capsys.readouterr().err == (
        f"error: teacher '{tiny_model_dir}': student distil-half cannot be built from a BERT teacher: a test's "
        "reason\n"
    )
    assert not (tmp_path / "s").exists() and not (tmp_path / "t").exists()


def test_mpoe_adapt_refuses_a_hash_router_and_moe_needs_its_settings(tiny_model_dir, tmp_path, capsys):
    assert (
        run(
            "adapt",
            "--model",
            tiny_model_dir,
            "--output",
            tmp_path / "a",
            "--student",
            "mpoe",
            "--router",
            "hash-random",
            "--mpo-in-factors",
            2,
            4,
            4,
            "--mpo-out-factors",
            4,
            4,
            4,
        )
        == 2
    )
    assert (
        "--router: student mpoe is routed by a learned token gate; set router: gate-token (not hash-random)"
        in (capsys.readouterr().err)
    )
    assert run("adapt", "--model", tiny_model_dir, "--output", tmp_path / "b", "--expert-dim", 16) == 2
    assert (
        "--shared-dim: 512 is larger than expert_dim 16 (the shared neurons are part of every expert) "
        "(shared_dim is at its default, 512)"
    ) in capsys.readouterr().err
    assert (
        run(
            "adapt",
            "--model",
            tiny_model_dir,
            "--output",
            tmp_path / "b",
            "--expert-dim",
            16,
            "--shared-dim",
            8,
        )
        == 2
    )
    assert "--student moe needs --importance (the teacher's neuron order)" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_adapt_seeds_the_learned_router(tiny_model_dir, tmp_path):
    """Experts that start identical (MPO chains, Switch copies) differ only by where the router sends tokens."""
    import torch

    from moebert.models.loading import load_model

    def router(seed, name):
        assert (
            run(
                "adapt",
                "--model",
                tiny_model_dir,
                "--output",
                tmp_path / name,
                "--student",
                "mpoe",
                "--seed",
                seed,
                "--num-experts",
                2,
                "--mpo-in-factors",
                2,
                4,
                4,
                "--mpo-out-factors",
                4,
                4,
                4,
            )
            == 0
        )
        return load_model(str(tmp_path / name)).moe_layers()[0].router.gate.weight

    assert torch.equal(router(0, "a"), router(0, "b")) and not torch.equal(router(0, "a"), router(1, "c"))


def test_every_seed_draws_its_own_hash_table_and_random_experts(tiny_model_dir, glue_dir, tmp_path):
    import torch

    from moebert.models.loading import load_model

    data = ["--task", "mrpc", "--data", glue_dir]
    importance = _importance(tiny_model_dir, data, tmp_path)

    def adapt(seed, name):
        out = tmp_path / name
        assert (
            run(
                "adapt",
                "--model",
                tiny_model_dir,
                "--output",
                out,
                "--importance",
                importance,
                "--seed",
                seed,
                "--num-experts",
                4,
                "--expert-dim",
                24,
                "--shared-dim",
                16,
                "--construction",
                "random",
            )
            == 0
        )
        return load_model(str(out)).hash_table, json.loads((out / "experts.json").read_text())["indices"]

    (table_a, experts_a), (table_b, experts_b), (table_c, experts_c) = (
        adapt(1, "a"),
        adapt(1, "b"),
        adapt(2, "c"),
    )
    assert torch.equal(table_a, table_b) and experts_a == experts_b
    assert not torch.equal(table_a, table_c) and experts_a != experts_c


def test_the_gradient_mask_draws_from_the_run_seed(tiny_model_dir, glue_dir, tmp_path, monkeypatch):
    from moebert.training import gradient_mask

    seeds = []
    monkeypatch.setattr(gradient_mask, "masked_step", lambda seed, step, p_b: seeds.append(seed) or False)
    data = ["--task", "mrpc", "--data", glue_dir]
    mpoe = tmp_path / "mpoe"
    assert (
        run(
            "adapt",
            "--model",
            tiny_model_dir,
            "--output",
            mpoe,
            "--student",
            "mpoe",
            "--num-experts",
            2,
            "--mpo-in-factors",
            2,
            4,
            4,
            "--mpo-out-factors",
            4,
            4,
            4,
        )
        == 0
    )
    assert (
        run(
            "distill",
            *data,
            "--teacher",
            tiny_model_dir,
            "--student",
            mpoe,
            "--output",
            tmp_path / "s",
            "--epochs",
            1,
            "--gradient-mask",
            0.5,
            "--seed",
            7,
            *ROWS,
        )
        == 0
    )
    assert seeds and set(seeds) == {7}


def test_stage_defaults_are_the_documented_ones():
    """Defaults a workflow config leaves to the CLI: importance on train (the reference scores dev), padding left
    out of the losses, length-grouped batches, a teacher without dropout, the paper's expert settings."""
    from moebert.cli import build_parser
    from moebert.config import from_args
    from moebert.config.options import AdaptOptions
    from moebert.students import get_student

    parser = build_parser()
    importance = parser.parse_args(
        ["importance", "--task", "mrpc", "--data", "d", "--model", "m", "--output", "o"]
    )
    assert (importance.split, importance.max_samples, importance.batch_size) == ("train", 2048, 16)
    distill = parser.parse_args(
        ["distill", "--task", "mrpc", "--data", "d", "--teacher", "t", "--student", "s", "--output", "o"]
    )
    from moebert.config.options import DistillOptions

    assert (distill.distill_scope, distill.teacher_dropout) == (None, None)  # not given, until resolved:
    from_args(DistillOptions, distill)
    assert (
        distill.padding,
        distill.sampler,
        distill.teacher_dropout,
        distill.distill_scope,
        distill.distill_weight,
        distill.load_balance,
    ) == ("dynamic", "length-grouped", False, "all", None, None)  # weight: the schema's 1.0 unless scope none
    from moebert.stages.adapt import student_options

    adapt = from_args(AdaptOptions, parser.parse_args(["adapt", "--model", "m", "--output", "o"]))
    assert adapt.student == "moe" and adapt.num_experts is None  # the student kind resolves its defaults:
    assert student_options(get_student("moe"), adapt) == {
        "num_experts": 4,
        "expert_dim": 768,
        "shared_dim": 512,
        "construction": "importance",
        "router": "hash-random",
        "expert_dropout": 0.1,
        "shared": "copied",
        "distill_scope": "all",
        "teacher_dropout": False,
    }
    assert student_options(get_student("mpoe"), AdaptOptions(student="mpoe"))["router"] == "gate-token"


def test_importance_scores_the_train_split_by_default(tiny_model_dir, glue_dir, tmp_path):
    data = ["--task", "mrpc", "--data", glue_dir]
    with safe_open(_importance(tiny_model_dir, data, tmp_path), "pt") as f:
        assert f.metadata()["split"] == "train"


def test_importance_on_dev_sums_every_eval_split(tiny_model_dir, tmp_path):
    """The reference's importance: MNLI's matched and mismatched dev rows together, all of them."""
    from transformers import AutoTokenizer, BertForSequenceClassification

    header = (
        "index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\tsentence1_parse\t"
        "sentence2_parse\tsentence1\tsentence2\tlabel1\tgold_label\n"
    )
    labels = ("entailment", "neutral", "contradiction")
    mnli = tmp_path / "glue" / "MNLI"
    mnli.mkdir(parents=True)
    for split, rows in (("train", 6), ("dev_matched", 5), ("dev_mismatched", 3)):
        lines = [
            f"{i}\t\t\t\t\t\t\t\tA {split} premise {i}.\tA hypothesis.\t\t{labels[i % 3]}\n"
            for i in range(rows)
        ]
        (mnli / f"{split}.tsv").write_text(header + "".join(lines))
    model = tmp_path / "mnli-model"
    BertForSequenceClassification.from_pretrained(
        tiny_model_dir, num_labels=3, ignore_mismatched_sizes=True
    ).save_pretrained(model)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(model)
    out = tmp_path / "imp.safetensors"
    assert (
        run(
            "importance",
            "--task",
            "mnli",
            "--data",
            tmp_path / "glue",
            "--model",
            model,
            "--output",
            out,
            "--split",
            "dev",
            "--max-samples",
            "all",
        )
        == 0
    )
    with safe_open(out, "pt") as f:
        assert f.metadata()["split"] == "dev_matched+dev_mismatched" and f.metadata()["examples"] == "8"


def test_baseline_students_and_the_majority_row_through_the_cli(tiny_model_dir, glue_dir, tmp_path, capsys):
    """adapt --student dense-narrow / distil-half -> distill (layer-wise, or the task loss alone) -> evaluate;
    and evaluate --majority against the train labels counted by hand."""
    import csv

    data = ["--task", "mrpc", "--data", glue_dir]
    teacher = tmp_path / "teacher"
    assert run("finetune", *data, "--model", tiny_model_dir, "--output", teacher, "--epochs", 1, *ROWS) == 0
    importance = _importance(teacher, data, tmp_path)
    narrow, half = tmp_path / "narrow", tmp_path / "half"
    assert (
        run(
            "adapt",
            "--model",
            teacher,
            "--output",
            narrow,
            "--student",
            "dense-narrow",
            "--importance",
            importance,
            "--expert-dim",
            16,
        )
        == 0
    )
    assert json.loads((narrow / "experts.json").read_text())["student"] == "dense-narrow"
    assert run("adapt", "--model", teacher, "--output", half, "--student", "distil-half") == 0
    assert json.loads((half / "experts.json").read_text()) == {
        "student": "distil-half",
        "teacher_layers": [1],
    }
    for student, scope in ((narrow, "all"), (half, "all"), (half, "none")):
        out = tmp_path / f"{student.name}-{scope}"
        assert (
            run(
                "distill",
                *data,
                "--teacher",
                teacher,
                "--student",
                student,
                "--output",
                out,
                "--epochs",
                1,
                "--distill-scope",
                scope,
                *ROWS,
            )
            == 0
        )
        log = capsys.readouterr().out
        assert ("loss/hidden" in log) == (scope != "none") and "loss/task" in log
        assert (
            run("evaluate", *data, "--model", out, "--output", tmp_path / "m.json", "--max-eval-samples", 8)
            == 0
        )
        params = json.loads((tmp_path / "m.json").read_text())["params"]
        assert params["per_expert"] == 0 and params["effective"] == params["total"]
    # Options a model has nothing for are refused by name, never ignored.
    dense = "--experts-implementation: only MoE students (student moe) compute experts; this model's FFNs are dense"
    refused = [
        (["evaluate", *data, "--model", tmp_path / "half-all"], ["--experts-implementation", "eager"], dense),
        (["predict", *data, "--model", tmp_path / "narrow-all"], ["--experts-implementation", "auto"], dense),
        (["predict", *data, "--model", teacher], ["--experts-implementation", "eager"], dense),
        (
            ["evaluate", *data, "--majority"],
            ["--experts-implementation", "eager"],
            "--experts-implementation: --majority scores no model; leave it out",
        ),
        (
            ["distill", *data, "--teacher", teacher, "--student", narrow, *ROWS[:2]],
            ["--experts-implementation", "eager"],
            dense,
        ),
        (
            ["evaluate", *data, "--model", teacher],
            ["--max-length", 200],
            (
                "--max-length 200: the model has 128 position embeddings (max_position_embeddings of its config); "
                "give at most 128"
            ),
        ),
        (
            ["finetune", *data, "--model", tiny_model_dir, *ROWS[:2]],
            ["--max-length", 129],
            "--max-length 129: the model has 128 position embeddings",
        ),
    ]
    for command, args, message in refused:
        assert run(*command, "--output", tmp_path / "refused", *args) == 2, command
        assert message in capsys.readouterr().err
        assert not (tmp_path / "refused").exists()

    majority_examples = tmp_path / "majority.examples.csv"
    assert (
        run(
            "evaluate",
            *data,
            "--majority",
            "--output",
            tmp_path / "majority.json",
            "--method",
            "majority",
            "--examples",
            majority_examples,
        )
        == 0
    )
    record = json.loads((tmp_path / "majority.json").read_text())
    rows = pd.read_csv(majority_examples)
    with open(glue_dir / "MRPC" / "train.tsv", newline="") as f:
        train = [row["Quality"] for row in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)]
    with open(glue_dir / "MRPC" / "dev.tsv", newline="", encoding="utf-8-sig") as f:  # this file has a BOM
        dev = [row["Quality"] for row in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)]
    majority = max(set(train), key=train.count)
    accuracy = 100 * dev.count(majority) / len(dev)
    assert record["prediction"] == int(majority) and record["params"]["total"] == 0
    assert record["results"]["MRPC"]["accuracy"] == pytest.approx(accuracy)
    assert rows.label.astype(str).tolist() == dev and set(rows.prediction) == {int(majority)}
    assert "routing" not in record  # no router


def test_adapt_refuses_settings_of_other_students(tiny_model_dir, glue_dir, tmp_path, capsys):
    """An option is refused, never ignored, where the student cannot use it."""
    importance = _importance(tiny_model_dir, ["--task", "mrpc", "--data", glue_dir], tmp_path)
    mpoe = ["--student", "mpoe", "--mpo-in-factors", 2, 4, 4, "--mpo-out-factors", 4, 4, 4]
    moe = ["--importance", importance, "--expert-dim", 24, "--shared-dim", 16]
    cases = [
        (
            ["--student", "distil-half", "--expert-dim", 16],
            "--expert-dim: not a setting of student distil-half",
        ),
        (
            ["--student", "distil-half", "--expert-dropout", 0.2],
            "--expert-dropout: not a setting of student distil-half",
        ),
        (
            [
                "--student",
                "dense-narrow",
                "--importance",
                importance,
                "--expert-dim",
                16,
                "--expert-dropout",
                0.2,
            ],
            "--expert-dropout: not a setting of student dense-narrow",
        ),
        (
            ["--student", "dense-narrow", "--importance", importance, "--expert-dim", 16, "--num-experts", 2],
            "--num-experts: not a setting of student dense-narrow",
        ),
        ([*mpoe, "--expert-dropout", 0.2], "--expert-dropout: not a setting of student mpoe"),
        ([*moe, "--mpo-max-bond", 8], "--mpo-max-bond: not a setting of student moe"),
        ([*moe, "--mpo-forward", "contract"], "--mpo-forward: not a setting of student moe"),
        (
            [*moe, "--gate-sentence-batch1", "skip"],
            "--gate-sentence-batch1: only router gate-sentence routes whole",
        ),
        ([*moe, "--hash-balance", "per-layer"], "--hash-balance: only router hash-balance builds a balanced"),
        ([*moe, "--gate-scale", "branch"], "--gate-scale: router hash-random is a fixed table with no gate"),
        (
            [*moe, "--task", "mrpc", "--data", glue_dir],
            "--task, --data: only a student routed by hash-balance counts",
        ),
        (["--student", "dense-narrow", "--expert-dim", 16], "--student dense-narrow needs --importance"),
        (
            ["--student", "distil-half", "--importance", importance],
            "--importance: a --student distil-half keeps no",
        ),
        (
            ["--student", "distil-half", "--construction", "random"],
            "--construction: not a setting of student distil-half",
        ),
        (
            ["--student", "distil-half", "--router", "gate-token"],
            "--router: not a setting of student distil-half",
        ),
    ]
    for i, (args, message) in enumerate(cases):
        assert run("adapt", "--model", tiny_model_dir, "--output", tmp_path / f"s{i}", *args) == 2, args
        assert message in capsys.readouterr().err, args
    assert not any((tmp_path / f"s{i}").exists() for i in range(len(cases)))
    assert run("evaluate", "--task", "mrpc", "--data", "x", "--output", tmp_path / "m.json") == 2
    assert "give either --model or --majority" in capsys.readouterr().err
    assert (
        run(
            "evaluate",
            "--task",
            "mrpc",
            "--data",
            "x",
            "--model",
            tiny_model_dir,
            "--max-train-samples",
            8,
            "--output",
            tmp_path / "m.json",
        )
        == 2
    )
    assert "--max-train-samples: only --majority counts train rows" in capsys.readouterr().err
    assert not (tmp_path / "m.json").exists()


def test_null_threshold_is_refused_where_no_question_is_unanswerable(capsys):
    """SQuAD v1.1 answers every question: a threshold for leaving one unanswered would do nothing."""
    for command in (
        ["evaluate", "--model", "m"],
        ["predict", "--model", "m"],
    ):
        args = [*command, "--task", "squad", "--data", "hub", "--output", "o", "--null-threshold", 0.5]
        assert run(*args) == 2
        assert (
            "--null-threshold: squad has no unanswerable questions (only SQuAD v2.0 does)"
            in capsys.readouterr().err
        )


def test_distill_refuses_what_its_student_has_nothing_for(tiny_model_dir, glue_dir, tmp_path, capsys):
    data = ["--task", "mrpc", "--data", glue_dir]
    importance = _importance(tiny_model_dir, data, tmp_path)
    hashed = tmp_path / "hashed"
    assert (
        run(
            "adapt",
            "--model",
            tiny_model_dir,
            "--output",
            hashed,
            "--importance",
            importance,
            "--expert-dim",
            24,
            "--shared-dim",
            16,
        )
        == 0
    )
    cases = [
        (
            ["--load-balance", 0.01],
            ("--load-balance: the student has no gate to balance (router hash-random is a fixed table)"),
        ),
        (["--load-balance", 0], "--load-balance: the student has no gate to balance"),  # given, though 0
        (["--gradient-mask", 0.5], "--gradient-mask: only MPOE students have central tensors to mask"),
        (["--teacher-dropout", "--distill-scope", "none"], "--teacher-dropout: --distill-scope none trains"),
        (
            ["--distill-weight", 3, "--distill-scope", "none"],
            "--distill-weight: --distill-scope none trains on the task loss alone, with no distillation loss",
        ),
    ]
    for args, message in cases:
        assert (
            run(
                "distill",
                *data,
                "--teacher",
                tiny_model_dir,
                "--student",
                hashed,
                "--output",
                tmp_path / "s",
                *args,
                *ROWS,
            )
            == 2
        )
        assert message in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


def test_wnli_on_the_local_files_through_every_stage_and_the_report(tiny_model_dir, glue_dir, tmp_path):
    """WNLI like any GLUE task: prepared (its test split too), fine-tuned, scored, its majority row (the class
    most train rows have, which beats most models on the adversarial dev set) and its report column."""
    import csv

    data = tmp_path / "data"
    assert run("prepare-data", "--task", "wnli", "--source", glue_dir, "--output", data) == 0
    assert sorted(p.name for p in (data / "WNLI").iterdir()) == ["dev.tsv", "test.tsv", "train.tsv"]
    task = ["--task", "wnli", "--data", data]
    teacher = tmp_path / "teacher"
    assert run("finetune", *task, "--model", tiny_model_dir, "--output", teacher, "--epochs", 1, *ROWS) == 0
    assert (
        run(
            "evaluate",
            *task,
            "--model",
            teacher,
            "--output",
            tmp_path / "teacher.json",
            "--max-length",
            64,
            "--method",
            "teacher",
        )
        == 0
    )
    assert (
        run("evaluate", *task, "--majority", "--output", tmp_path / "majority.json", "--method", "majority")
        == 0
    )
    majority = json.loads((tmp_path / "majority.json").read_text())
    # Train: 323 rows of class 0, 312 of class 1; dev: 40 of 71 are class 0.
    assert majority["prediction"] == 0 and majority["results"] == {
        "WNLI": {"accuracy": pytest.approx(100 * 40 / 71)}
    }
    assert json.loads((tmp_path / "teacher.json").read_text())["num_examples"] == {"WNLI": 71}
    tables = tmp_path / "tables"
    assert (
        run(
            "report",
            "--metrics",
            tmp_path / "teacher.json",
            tmp_path / "majority.json",
            "--tables-dir",
            tables,
            "--plots-dir",
            tmp_path / "plots",
            "--manifest",
            tmp_path / "manifest.json",
        )
        == 0
    )
    rows = {
        row["method"]: row
        for row in csv.DictReader((tables / "glue.csv").read_text().splitlines())
        if row["task"] == "WNLI"
    }
    assert float(rows["majority"]["mean"]) == pytest.approx(100 * 40 / 71) and set(rows) == {
        "teacher",
        "majority",
    }
    assert "| majority | ours  | 1   | 56.3" in (tables / "glue.md").read_text()
