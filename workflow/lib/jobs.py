"""What each rule's job computes and what it asks for: the workflow's side of the cost model.

The cost model (moebert.cost) knows dimensions, rows and device speeds; this module knows the rules. For a
job (its rule and wildcards) it gives the work, the GPUs and threads, and the resources the workflow
requests: `gpu`, `runtime` (the estimate with resources.safety, times the attempt), `mem_mb`, and
`estimate_s_<kind>` (the estimate on every device kind that could run it), which `moebert plan` adds up.
"""

from __future__ import annotations

import math
import os

from moebert import cost
from moebert.config import TEACHER, Settings
from moebert.errors import MoebertError
from moebert.training.time_limit import signal_margin_s

TRAINING_RULES = ("finetune", "distill")
# Rules whose jobs form chains, each submitted to a cluster as one job (a `group`). A chain ends with its
# training step: when any member of a group job fails, Snakemake deletes the outputs of every member and its
# retry runs every member again (`--force` on each), so a finished model in a group with a later step that
# fails would be thrown away and trained again. A teacher's chain is its fine-tuning, a student's its
# adaptation and distillation; importance, which the students' chains need, is a job of its own; the
# evaluations, predictions and exports of every row and seed of a task are one chain after all its models.
SCORES_RULES = ("evaluate", "predict", "export")
CHAIN_RULES = ("finetune", "adapt", "distill", *SCORES_RULES)
TEACHER_CHAIN = "teacher-{task}-seed{seed}"
STUDENT_CHAIN = "{method}-{task}-seed{seed}"
SCORES_CHAIN = "{task}-scores"
# The rules the submit host runs (their `localrules:`): never a submission.
LOCAL_RULES = ("prepare_data", "fetch_model", "resolved_config", "report", "submission")
SPEED_RULES = ("speed_random", "speed_trained")
EVAL_BATCH = 64  # moebert evaluate's batch


def load_speeds(path) -> dict[str, cost.DeviceSpeed]:
    """The device speeds that size every job (benchmarks/throughput.py measures a device kind); a workflow
    always has CPU jobs, so the table must have a cpu row."""
    speeds = cost.load_speeds(path)
    if "cpu" not in speeds:
        raise MoebertError(
            f"{path} has no cpu row; measure one with benchmarks/throughput.py --device cpu --kind cpu --update"
        )
    return speeds


def gpus(settings: Settings, rule: str, wildcards) -> int:
    """Training jobs take every GPU of `resources.gpus`; importance, evaluate and cuda speed one; data, adapt,
    the majority row and cpu speed none."""
    gpus = settings.resources.gpus
    if rule in TRAINING_RULES:
        return gpus
    if rule in SPEED_RULES:
        return 1 if wildcards["device"] == "cuda" else 0
    if rule == "evaluate" and not _trains(settings, wildcards.get("method")):
        return 0
    return min(gpus, 1) if rule in ("importance", "evaluate", "predict") else 0


def chain(rule: str) -> str:
    """The chain (CHAIN_RULES) a rule's jobs belong to, as a group name with wildcards. A scores chain's jobs
    need their models, not each other, so each is a connected part of its own, which Snakemake submits apart
    unless the profile's `group-components` (slurm/config.yaml) joins them into one job."""
    if rule == "finetune":
        return TEACHER_CHAIN
    if rule in ("adapt", "distill"):
        return STUDENT_CHAIN
    if rule in SCORES_RULES:
        return SCORES_CHAIN
    raise MoebertError(f"rule {rule} is in no chain")


def on_gpu_node(settings: Settings, rule: str, wildcards) -> bool:
    """Whether a job runs on a GPU node: it uses a GPU, or the rest of its chain does (a chain is one job, and
    every chain holds a GPU step: training, or the evaluation of a trained model)."""
    if gpus(settings, rule, wildcards):
        return True
    return rule in CHAIN_RULES and settings.resources.gpus > 0


def threads(settings: Settings, rule: str) -> int:
    """The threads a job runs on: the speed rules' own, every other rule the shared count."""
    return settings.speed.threads if rule in SPEED_RULES else settings.resources.threads


def _trains(settings: Settings, method: str | None) -> bool:
    return method is None or method == TEACHER or settings.methods[method].kind.trains


def _speed_dims(preset: str) -> cost.Dims:
    """A speed preset's dimensions: its config values, of its `model_type` (BERT without one), through the
    backbone's arithmetic as for a teacher."""
    from transformers import AutoConfig

    from moebert.speed.measure import PRESETS

    values = dict(PRESETS[preset])
    return cost.config_dims(AutoConfig.for_model(values.pop("model_type", "bert"), **values))


def work(settings: Settings, rule: str, wildcards) -> cost.Work:
    """What one job computes. Jobs without a model (data, report) cost their start-up only."""
    teacher = cost.model_dims(settings.teacher.model)
    methods = settings.methods
    if rule in SPEED_RULES:
        speed = settings.speed
        if rule == "speed_random":
            from moebert.speed.measure import RANDOM_MODELS, RANDOM_MOE

            # Every random model of the same dimensions, and each MoE one again as its reference-style
            # twin (the rule passes --reference).
            models = [_speed_dims(wildcards["dims"])] * (len(RANDOM_MODELS) + len(RANDOM_MOE))
        else:
            models = [teacher, *(m.kind.dims(teacher, m.options) for m in methods.values() if m.kind.trains)]
        return cost.speed_work(models, speed.batch_sizes, speed.seq_lengths, speed.repeats)
    if "task" not in wildcards:
        return cost.Work(train=False)
    task_settings = settings.tasks[wildcards["task"]]
    task, length = task_settings.task, task_settings.max_length
    method = methods.get(wildcards.get("method"))
    train_rows = cost.rows(task, task_settings.max_train_samples)
    training = settings.training
    batching = {"accum": training.grad_accum, "sampler": training.sampler, "padding": training.padding}
    if rule == "finetune":
        hyper = task_settings.teacher
        return cost.training_work(
            task, teacher, train_rows, hyper.epochs, hyper.batch_size, length, **batching
        )
    if rule == "distill":
        hyper = task_settings.distill
        distilled = method.options["distill_scope"] != "none"  # scope none trains on the task loss alone
        return cost.training_work(
            task,
            method.kind.dims(teacher, method.options),
            train_rows,
            hyper.epochs,
            hyper.batch_size,
            length,
            teacher=teacher if distilled else None,
            **batching,
        )
    if rule == "importance":
        importance = settings.importance
        cap = None if importance.max_samples == "all" else importance.max_samples
        return cost.inference_work(
            task,
            teacher,
            cost.rows(task, cap, importance.split),
            importance.batch_size,
            length,
            backward=True,
        )
    if rule == "evaluate":
        if not _trains(settings, wildcards["method"]):
            return cost.Work(train=False)
        dims = teacher if method is None else method.kind.dims(teacher, method.options)
        return cost.inference_work(
            task, dims, cost.rows(task, task_settings.max_eval_samples, "dev"), EVAL_BATCH, length
        )
    if rule == "predict":  # forwards over the test rows, about as many as the dev rows
        dims = teacher if method is None else method.kind.dims(teacher, method.options)
        return cost.inference_work(task, dims, cost.rows(task, None, "dev"), EVAL_BATCH, length)
    if rule == "adapt":  # slicing or decomposing weights: the teacher and its student in memory, then saved
        student = method.kind.dims(teacher, method.options).params
        return cost.Work(train=False, weights=teacher.params + student, saves=student)
    if rule == "export":  # loads the model and writes a copy of it
        stored = (teacher if method is None else method.kind.dims(teacher, method.options)).params
        return cost.Work(train=False, weights=stored, saves=stored)
    return cost.Work(train=False)


def estimates(
    settings: Settings, speeds: dict[str, cost.DeviceSpeed], rule: str, wildcards
) -> dict[str, float]:
    """Seconds of one job on every device kind that could run it: a GPU job on each GPU kind of the table, a
    CPU job on `cpu` (at its thread count)."""
    job_gpus = gpus(settings, rule, wildcards)
    job_work = work(settings, rule, wildcards)
    kinds = [kind for kind in speeds if kind != "cpu"] if job_gpus else ["cpu"]
    return {
        kind: speeds[kind].seconds(job_work, threads=threads(settings, rule), devices=max(job_gpus, 1))
        for kind in kinds
    }


def runtime_minutes(
    settings: Settings, speeds: dict[str, cost.DeviceSpeed], rule: str, wildcards: dict, attempt: int
) -> int:
    """The wall time a job asks for (cost.runtime_minutes) such that its group job's, the sum of its members'
    (Snakemake's sbatch -t), stays within resources.max_runtime: distillation leaves its chain's adaptation
    its minutes. The scores chain's jobs, many to a group, ask no floor of their own: each estimate already
    holds its start-up (the device row's job_s), and the floor would be paid once per row; nor do they get
    SIGTERM before their time limit (they save nothing), which would come before they start. A signalled
    job's time outlasts its signal margin (SLURM may send it a minute early) by at least a minute."""
    res = settings.resources
    seconds = estimates(settings, speeds, rule, wildcards)[
        res.device_kind if gpus(settings, rule, wildcards) else "cpu"
    ]
    cap = res.max_runtime
    if rule == "distill":
        cap -= runtime_minutes(settings, speeds, "adapt", wildcards, attempt)
    floor = 1 if rule in SCORES_RULES else max(res.min_runtime, math.ceil(signal_margin_s() / 60) + 2)
    return cost.runtime_minutes(seconds, res.safety, attempt, floor, max(cap, 1))


def resources(settings: Settings, speeds: dict[str, cost.DeviceSpeed], rule: str) -> dict:
    """A rule's `resources:`, each a function of the job's wildcards. On SLURM `gpu` becomes sbatch --gpus;
    the partition of GPU jobs and a typed GPU come from the environment (see slurm/config.yaml), so CPU jobs
    never queue for a GPU."""
    res = settings.resources

    def named(wildcards) -> dict:  # Snakemake's wildcards as a dict: `in` on them tests values, not names
        return dict(wildcards.items())

    def job_gpus(wildcards) -> int:
        return gpus(settings, rule, named(wildcards))

    def runtime(wildcards, attempt):
        return runtime_minutes(settings, speeds, rule, named(wildcards), attempt)

    def mem_mb(wildcards, attempt):
        job_work, on_gpu = work(settings, rule, named(wildcards)), job_gpus(wildcards) > 0
        processes = settings.processes() if rule in TRAINING_RULES else 1
        return min(cost.memory_mb(job_work, on_gpu, res.safety, attempt, processes), res.max_mem_mb)

    requested = {"gpu": job_gpus, "runtime": runtime, "mem_mb": mem_mb}
    if rule in LOCAL_RULES:  # for `moebert plan`'s count of submissions
        requested["local"] = 1
    if rule in TRAINING_RULES:  # for `moebert plan`'s checkpoint write volume
        requested["checkpoint_mb"] = lambda wildcards: cost.checkpoint_mb(
            work(settings, rule, named(wildcards))
        )
        requested["train_steps"] = lambda wildcards: work(settings, rule, named(wildcards)).steps
        requested["save_s"] = round(settings.training.save_minutes * 60)
        requested["signal_s"] = signal_margin_s()  # the time it has to save a checkpoint when told to stop
    for kind in speeds:
        requested[f"estimate_s_{kind}"] = lambda wildcards, kind=kind: round(
            estimates(settings, speeds, rule, named(wildcards)).get(kind, 0)
        )
    partition, gpu_partition = (
        os.environ.get("MOEBERT_SLURM_PARTITION"),
        os.environ.get("MOEBERT_SLURM_GPU_PARTITION"),
    )

    def gpu_node(wildcards) -> bool:
        return on_gpu_node(settings, rule, named(wildcards))

    # The site's settings are the rules' own resources, not the profile's default-resources, which a
    # --default-resources on the command line would replace whole (signal, account and partition gone).
    if rule not in SCORES_RULES:  # nothing of theirs to save, and their short times are all work
        requested["slurm_extra"] = f"--signal=TERM@{signal_margin_s()}"
    if account := os.environ.get("MOEBERT_SLURM_ACCOUNT"):
        requested["slurm_account"] = account
    if gpu_partition or partition:
        requested["slurm_partition"] = lambda wildcards: (
            gpu_partition if gpu_partition and gpu_node(wildcards) else partition or ""
        )
    if gpu_type := os.environ.get("MOEBERT_SLURM_GPU_TYPE"):
        requested["gpu_model"] = lambda wildcards: gpu_type if gpu_node(wildcards) else ""
    return requested


def memory_capped(settings: Settings) -> list[str]:
    """The training jobs whose first attempt already asks resources.max_mem_mb: a retry after an
    out-of-memory kill asks no more, so it is pointless (e.g. several GPUs' processes on one node)."""
    res, capped = settings.resources, []
    for task in settings.tasks:
        for rule, methods in (("finetune", [TEACHER]), ("distill", settings.trained_methods())):
            for method in methods:
                wildcards = {"task": task, "seed": "0", "method": method}
                job_work = work(settings, rule, wildcards)
                need = cost.memory_mb(
                    job_work, gpus(settings, rule, wildcards) > 0, res.safety, 1, settings.processes()
                )
                if need >= res.max_mem_mb:
                    capped.append(
                        f"{rule} {task}" + ("" if method == TEACHER else f" {method}") + f" ({need} MB)"
                    )
    return capped
