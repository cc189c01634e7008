# Helpers shared by the rules: config validation, result paths, CLI arguments, MLflow tracking.

import difflib
import hashlib
import json
import os
import shlex
import subprocess
from pathlib import Path

import jsonschema
import yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from moebert.hub import PACKAGED_MINILM, model_slug
from moebert.plan import hyper_parameters, job_threads, job_work, load_speeds, memory_mb, runtime_minutes
from moebert.tasks import QaTask, get_task

SCHEMA = Path(workflow.basedir) / "workflow" / "schemas" / "config.schema.yaml"
# The repository's conda environment: `snakemake --sdm conda` builds it, a plain run uses the
# current Python (where `pip install -e .` put the moebert CLI).
CONDA_ENV = "../../envs/moebert.yaml"
DEFAULT_TRACKING_URI = "sqlite:///results/mlflow/mlflow.db"
# The fetching rules turn the hub back on for their command (the Snakefile turns it off for all others).
HUB_ON = "HF_HUB_OFFLINE=0 HF_DATASETS_OFFLINE=0"
# Device speeds of the cost model that sizes every job (benchmarks/throughput.py measures a device kind).
THROUGHPUT = Path(workflow.basedir) / "config" / "throughput.yaml"
TEACHER = "teacher"  # method name of the fine-tuned dense model in metrics and tables


def _config_key(path) -> str:
    """tasks[1], teacher.lr: the dotted name of a key's path in the config."""
    return "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in path).lstrip(".")


def _did_you_mean(word, allowed) -> str:
    close = difflib.get_close_matches(str(word), [str(a) for a in allowed], n=1)
    return f"did you mean {close[0]!r}? " if close else ""


def _explain(error) -> tuple[list, str]:
    """The offending key and one line for a jsonschema error (its own text dumps the sub-schema)."""
    path = list(error.absolute_path)
    if error.validator == "additionalProperties" and "properties" in error.schema:
        allowed = sorted(error.schema["properties"])
        unknown = sorted(set(error.instance) - set(allowed))[0]
        return path + [unknown], f"unknown key; {_did_you_mean(unknown, allowed)}allowed: {', '.join(allowed)}"
    if error.validator == "enum":
        allowed = [str(value) for value in error.validator_value]
        choices = f"{_did_you_mean(error.instance, allowed)}allowed: {', '.join(allowed)}"
        if "propertyNames" in error.relative_schema_path:
            return path + [error.instance], f"unknown key; {choices}"
        return path, f"{error.instance!r} is not allowed; {choices}"
    if error.validator == "oneOf":  # the text would dump every form: name them instead
        return path, f"give {error.schema['description']}"
    if error.validator == "not" and "const" in error.validator_value:
        return path + [error.instance], "reserved name (the teacher row is always reported); choose another"
    return path, error.message


def _validate_schema(config) -> None:
    try:
        validate(config, str(SCHEMA))
    except WorkflowError as err:
        # validate() raises from inside its `except ValidationError`, which is kept as the context.
        error = err.__context__
        if not isinstance(error, jsonschema.ValidationError):
            raise
        path, message = _explain(error)
        raise WorkflowError(f"invalid config: key {_config_key(path) or '(top level)'}: {message}") from None


def validate_config(config) -> None:
    """Check the config against the schema (filling in defaults) before any job starts; raise a
    one-line error naming the bad key and what is allowed."""
    _validate_schema(config)
    # A listed task without an entry under task_settings runs with the defaults: add an empty entry
    # and validate once more, which fills it in.
    for task in config["tasks"]:
        config["task_settings"].setdefault(task, {})
    _validate_schema(config)
    points = expand_sweeps(config)
    _validate_schema(config)  # fills in the defaults of the methods the sweeps added
    config["sweep_points"] = points  # derived, after the schema (which would call it an unknown key)
    for name, method in config["methods"].items():
        _check_method(name, method)
    _check_claims(config)
    accum, processes = config["training"]["grad_accum"], training_processes()
    for key in ("teacher", "distill"):
        for task in config["tasks"]:
            batch = hyper_parameters(config, key, task)["batch_size"]
            if batch % (accum * processes):
                raise WorkflowError(
                    f"invalid config: key training.grad_accum: {accum} x {processes} GPU(s) (resources.gpus) does "
                    f"not divide the {key} batch size {batch} of task {task} (batch sizes are totals per step)"
                )
    _check_qa_settings(config)
    kind = config["resources"]["device_kind"]
    if kind not in SPEEDS or "cpu" not in SPEEDS:
        missing = kind if "cpu" in SPEEDS else "cpu"
        raise WorkflowError(
            f"invalid config: key resources.device_kind: {missing!r} is not a device kind of {THROUGHPUT} "
            f"(it has {', '.join(SPEEDS)}); measure one with benchmarks/throughput.py --kind {missing} --update"
        )
    for key, family, layout in (("data", "glue", "in the classic GLUE layout"),
                                ("squad_data", "qa", "holding the official SQuAD JSON files")):
        used = any(get_task(task).family == family for task in config["tasks"])
        if used and config[key] != "hub" and not Path(config[key]).is_dir():
            raise WorkflowError(
                f"invalid config: key {key}: directory {config[key]!r} does not exist (relative to "
                f"{os.getcwd()}); give a directory {layout} or 'hub'"
            )


QA_SETTINGS = ("doc_stride", "eval_articles", "n_best", "max_answer_length", "null_threshold")


def is_qa(task) -> bool:
    return isinstance(get_task(task), QaTask)


def _check_qa_settings(config) -> None:
    """Settings of question answering only where a QA task can use them."""
    for task in config["tasks"]:
        settings = config["task_settings"][task]
        if not is_qa(task):
            given = [key for key in QA_SETTINGS if settings[key] is not None]
            if given:
                raise WorkflowError(f"invalid config: key task_settings.{task}.{given[0]}: only question-answering "
                                    f"tasks (squad, squad_v2) take it; drop the key")
        elif settings["eval_articles"] is not None and config["squad_data"] == "hub":
            raise WorkflowError(f"invalid config: key task_settings.{task}.eval_articles: an article split is made "
                                f"from a dev file on disk; set squad_data to a directory or drop the key")


def _method_error(name, key, message):
    return WorkflowError(f"invalid config: key methods.{name}.{key}: {message}")


def _check_method(name, method) -> None:
    """What the schema cannot say: combinations of a method's keys."""
    kind = method["student"]
    if kind == "mpoe" and method["router"] != "gate-token":
        raise _method_error(name, "router", f"student mpoe is routed by a learned token gate; set router: "
                                            f"gate-token (not {method['router']})")
    if kind != "mpoe" and method["gradient_mask"] is not None:
        raise _method_error(name, "gradient_mask", "only MPO experts have central tensors to mask; set "
                                                   "student: mpoe or drop the key")
    if kind != "moe" and method["construction"] != "importance":
        raise _method_error(name, "construction", f"only student moe cuts experts (this one is {kind}); "
                                                  f"drop the key")
    if kind == "moe" and method["shared_dim"] > method["expert_dim"]:
        raise _method_error(name, "shared_dim", f"{method['shared_dim']} is larger than expert_dim "
                                                f"{method['expert_dim']} (the shared neurons are part of every expert)")
    if kind == "moe" and method["construction"] == "kmeans" and method["shared_dim"]:
        raise _method_error(name, "shared_dim", f"construction kmeans shares no neurons; set shared_dim: 0 "
                                                f"(not {method['shared_dim']})")


# The students that use each key a sweep may vary: a sweep over a key its method ignores would train
# identical models under different names.
SWEEP_KEY_STUDENTS = {"router": ("moe",), "num_experts": ("moe", "mpoe"), "expert_dim": ("moe", "dense-narrow"),
                      "shared_dim": ("moe",), "construction": ("moe",),
                      "distill_scope": ("moe", "mpoe", "dense-narrow", "distil-half")}


def _check_sweep_values(sweep, spec, kind, method_schema) -> None:
    key = spec["key"]
    if kind not in SWEEP_KEY_STUDENTS[key]:
        raise WorkflowError(f"invalid config: key sweeps.{sweep}.key: a {kind} student does not use {key}; "
                            f"sweep one of its keys or another method")
    key_schema = method_schema["properties"][key]
    for i, value in enumerate(spec["values"]):
        error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(key_schema).iter_errors(value))
        if error is not None:
            path, message = _explain(error)
            raise WorkflowError(f"invalid config: key sweeps.{sweep}.values[{i}]: {message}")


def expand_sweeps(config) -> dict:
    """Add a method per sweep point (see the schema's `sweeps`); returns each sweep's points,
    {sweep: {value: method}}, for the report."""
    points = {}
    method_schema = yaml.safe_load(SCHEMA.read_text())["$defs"]["method"] if config["sweeps"] else None
    for sweep, spec in config["sweeps"].items():
        if spec["method"] not in config["methods"]:
            raise WorkflowError(f"invalid config: key sweeps.{sweep}.method: {spec['method']!r} is not a method; "
                                f"{_did_you_mean(spec['method'], config['methods'])}methods: "
                                f"{', '.join(config['methods'])}")
        base = config["methods"][spec["method"]]
        _check_sweep_values(sweep, spec, base["student"], method_schema)
        points[sweep] = {}
        for value in spec["values"]:
            name = spec["method"] if base.get(spec["key"]) == value else f"{sweep}-{value}"
            if name != spec["method"]:
                if name in config["methods"] and config["methods"][name] != {**base, spec["key"]: value}:
                    raise WorkflowError(f"invalid config: key sweeps.{sweep}: point {name!r} clashes with the "
                                        f"method of that name; rename the sweep or the method")
                config["methods"][name] = {**base, spec["key"]: value}
            points[sweep][str(value)] = name
    return points


def _check_claims(config) -> None:
    known = [TEACHER, *config["methods"]]
    for i, claim in enumerate(config["claims"]):
        for method in [claim.get("method"), claim.get("vs"), *claim.get("methods", [])]:
            if method is not None and method not in known:
                raise WorkflowError(f"invalid config: key claims[{i}]: {method!r} is not a method; "
                                    f"{_did_you_mean(method, known)}methods: {', '.join(known)}")


def student(method: str) -> str:
    """The student kind of a method (see the schema)."""
    return config["methods"][method]["student"]


def write_plan_config(config) -> None:
    """For `moebert plan`: the validated config its dry run estimates, where MOEBERT_PLAN_CONFIG says."""
    if path := os.environ.get("MOEBERT_PLAN_CONFIG"):
        Path(path).write_text(json.dumps(config))


def config_hash(config) -> str:
    """Short hash of the validated config (defaults included): which config produced a run."""
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:12]


def git_commit() -> str:
    """HEAD of the repository, with -dirty when tracked files have uncommitted changes."""

    def git(*args):
        return subprocess.run(
            ["git", "-C", workflow.basedir, *args], capture_output=True, text=True
        )

    head = git("rev-parse", "--short=12", "HEAD")
    if head.returncode:
        return "unknown"
    dirty = git("status", "--porcelain", "--untracked-files=no").stdout.strip()
    return head.stdout.strip() + ("-dirty" if dirty else "")


# ---------------------------------------------------------------------------------------------
# Paths. Every (task, seed) has one teacher; every (task, method, seed) one student.

def data_setting(task) -> str:
    """The configured source of a task's data: `squad_data` for QA tasks, `data` for GLUE."""
    return config["squad_data" if is_qa(task) else "data"]


def data_source(wildcards):
    """Input of prepare_data: the configured directory of the task's family (none for the hub)."""
    source = data_setting(wildcards.task)
    return [] if source == "hub" else source


def data_dir(wildcards):
    return f"resources/data/{wildcards.task}"


def prepare_args(wildcards) -> str:
    settings = config["task_settings"][wildcards.task]
    args = f"--source {shlex.quote(data_setting(wildcards.task))}"
    if settings["eval_articles"] is not None:
        args = f"{args} {_options(eval_articles=settings['eval_articles'], split_seed=settings['split_seed'])}"
    return args


def _is_hub_model(name: str) -> bool:
    return name != PACKAGED_MINILM and not Path(name).expanduser().is_dir()


def hub_model(wildcards) -> str:
    """Params function of fetch_model: the hub id of the model fetched into resources/models/<slug>."""
    models = {model_slug(name): name for name in [config["teacher"]["model"]] if _is_hub_model(name)}
    return models[wildcards.model]


def pretrained_model() -> str:
    """What the teacher fine-tunes: its fetched copy for a hub id, else the local or packaged model itself."""
    name = config["teacher"]["model"]
    return f"resources/models/{model_slug(name)}" if _is_hub_model(name) else name


def pretrained_input(wildcards) -> list[str]:
    """Input of finetune: the fetched model (none for a local or packaged one)."""
    return [pretrained_model()] if _is_hub_model(config["teacher"]["model"]) else []


def model_path(task, method, seed) -> str:
    """The teacher itself or a distilled student."""
    if method == TEACHER:
        return f"results/teacher/{task}/seed{seed}"
    return f"results/student/{task}/{method}/seed{seed}"


def model_dir(wildcards):
    """The model that `evaluate` scores (none for the majority baseline)."""
    if wildcards.method != TEACHER and student(wildcards.method) == "majority":
        return []
    return model_path(wildcards.task, wildcards.method, wildcards.seed)


def trained_methods() -> list[str]:
    """The methods that train a student (all but the majority baseline)."""
    return [m for m in config["methods"] if student(m) != "majority"]


def task_methods(task) -> list[str]:
    """The rows of a task: the teacher and every method, but no majority row for QA (no label to count)."""
    return [TEACHER, *(m for m in config["methods"] if not (is_qa(task) and student(m) == "majority"))]


def all_metrics():
    return [
        f"results/metrics/{task}/{method}/seed{seed}.json"
        for task in config["tasks"]
        for method in task_methods(task)
        for seed in config["seeds"]
    ]


def result_tables() -> list[str]:
    """The tables of the task families the config runs: glue.* and (with a QA task) squad.*."""
    names = [name for name, family in (("glue", "glue"), ("squad", "qa"))
             if any(get_task(task).family == family for task in config["tasks"])]
    return [f"results/tables/{name}.{ext}" for name in names for ext in ("md", "csv", "tex")]


# ---------------------------------------------------------------------------------------------
# CLI arguments. Hyper-parameters are params computed from wildcards only, so Snakemake reruns a job
# whose hyper-parameters changed.

def _options(**options) -> str:
    """--key value for every option that is set (None = leave the CLI default)."""
    return " ".join(
        f"--{key.replace('_', '-')} {shlex.quote(str(value))}"
        for key, value in options.items()
        if value is not None
    )


def model_device(wildcards, output) -> str:
    """Params function: --device of a model job. A job that requested GPUs must run on one (and fails
    clearly if it got none); otherwise the CLI's default, CUDA when present. It takes `output` so that
    Snakemake leaves it out of its rerun check: where a model was computed does not make it stale."""
    return "--device " + ("cuda" if config["resources"]["gpus"] > 0 else "auto")


def eval_args(wildcards) -> str:
    """What `evaluate` scores: the model, or the majority of the train rows that training uses."""
    settings = config["task_settings"][wildcards.task]
    model = model_dir(wildcards)
    scored = _options(model=model) if model else f"--majority {_options(max_train_samples=settings['max_train_samples'])}"
    limits = _options(max_length=settings["max_length"], max_eval_samples=settings["max_eval_samples"],
                      **{key: settings[key] for key in QA_SETTINGS if key != "eval_articles"})
    return f"{scored} {limits}"


def training_processes() -> int:
    """Processes of a training job: one per GPU (resources.gpus), one on CPU."""
    return max(config["resources"]["gpus"], 1)


def launcher(wildcards, output) -> str:
    """Params function: how a training job starts the CLI. With several GPUs, one process each through
    `accelerate launch`, which shares the config's total batch among them (the CLI divides it). It takes
    `output` so that Snakemake leaves it out of its rerun check: how many GPUs trained a model does not make
    it stale."""
    processes = training_processes()
    if processes == 1:
        return "moebert"
    return (f"accelerate launch --num_processes {processes} --num_machines 1 --mixed_precision no "
            f"--dynamo_backend no -m moebert.cli")


def training_args(stage: str):
    """Params function: the training options of `stage` (teacher or distill) for a job's task."""

    def args(wildcards) -> str:
        settings = config["task_settings"][wildcards.task]
        hyper = hyper_parameters(config, stage, wildcards.task)
        training = config["training"]
        precision = {"fp32": "", "fp16": " --fp16", "bf16": " --bf16"}[training["precision"]]
        return _options(
            epochs=hyper["epochs"],
            lr=hyper["lr"],
            batch_size=hyper["batch_size"],
            grad_accum=training["grad_accum"],
            weight_decay=hyper["weight_decay"],
            save_steps=training["save_steps"],
            max_length=settings["max_length"],
            max_train_samples=settings["max_train_samples"],
            doc_stride=settings["doc_stride"],
            sampler=training["sampler"],
            padding=training["padding"],
        ) + precision

    return args


def distill_args(wildcards) -> str:
    method = config["methods"][wildcards.method]
    distill = _options(
        distill_weight=hyper_parameters(config, "distill", wildcards.task)["distill_weight"],
        load_balance=method["load_balance"],
        distill_scope=method["distill_scope"],
        gradient_mask=method["gradient_mask"],
    ) + (" --teacher-dropout" if method["teacher_dropout"] else "")
    return f"{training_args('distill')(wildcards)} {distill}"


def importance_path(wildcards) -> str:
    return f"results/importance/{wildcards.task}/seed{wildcards.seed}.safetensors"


def adapt_args(wildcards) -> str:
    """Params function of adapt: every setting of the method's student (a change reruns the job)."""
    method = config["methods"][wildcards.method]
    kind = method["student"]
    if kind == "distil-half":
        return _options(student=kind)
    if kind == "dense-narrow":
        return _options(student=kind, importance=importance_path(wildcards), expert_dim=method["expert_dim"])
    if kind == "mpoe":
        return _options(student=kind, num_experts=method["num_experts"], router=method["router"],
                        mpo_max_bond=method["mpo_max_bond"], mpo_forward=method["mpo_forward"])
    args = _options(
        student=kind,
        importance=importance_path(wildcards),
        num_experts=method["num_experts"],
        expert_dim=method["expert_dim"],
        shared_dim=method["shared_dim"],
        construction=method["construction"],
        router=method["router"],
        expert_dropout=method["expert_dropout"],
        gate_sentence_batch1=method["gate_sentence_batch1"] if method["router"] == "gate-sentence" else None,
    )
    if method["router"] == "hash-balance":  # it assigns tokens by their frequency in the train split
        settings = config["task_settings"][wildcards.task]
        rows = _options(max_length=settings["max_length"], max_train_samples=settings["max_train_samples"],
                        doc_stride=settings["doc_stride"])
        args = f"{args} --task {wildcards.task} --data {data_dir(wildcards)} {rows}"
    return args


def adapt_importance(wildcards) -> list[str]:
    """Input of adapt: the importance scores, for the students that keep the most important neurons."""
    if student(wildcards.method) not in ("moe", "dense-narrow"):
        return []
    return [importance_path(wildcards)]


def importance_args(wildcards) -> str:
    importance = config["importance"]
    return _options(
        split=importance["split"],
        max_samples=importance["max_samples"],
        batch_size=importance["batch_size"],
        max_length=config["task_settings"][wildcards.task]["max_length"],
        doc_stride=config["task_settings"][wildcards.task]["doc_stride"],
    )


# ---------------------------------------------------------------------------------------------
# MLflow. The config hash and git commit are computed once per Snakemake process.

def tracking(rule: str, method: str | None = None):
    """Params function: the MLflow options of one job.

    It takes `output` only so that Snakemake treats the value as derived and leaves it out of its
    rerun check: a new commit or an edit elsewhere in the config must not retrain finished jobs.
    """

    def args(wildcards, output) -> str:
        job_method = method or wildcards.method
        # Speed jobs differ only by device.
        job_rule = "-".join(filter(None, [rule, getattr(wildcards, "device", None)]))
        tags = {"task": wildcards.task, "method": job_method, "seed": wildcards.seed, "rule": job_rule,
                "config_hash": CONFIG_HASH, "git_commit": GIT_COMMIT}
        return " ".join(
            [
                _store_options(),
                f"--run-name {job_rule}-{wildcards.task}-{job_method}-seed{wildcards.seed}",
                *(f"--tag {shlex.quote(f'{key}={value}')}" for key, value in tags.items()),
            ]
        )

    return args


def _store_options() -> str:
    """Where every run of this config goes: the store, the experiment and the parent run."""
    return (f"--tracking-uri {shlex.quote(TRACKING_URI)} --experiment {config['experiment']}"
            f" --parent-run {config['experiment']}-{CONFIG_HASH}")


def report_tracking(wildcards, output) -> str:
    """Params function: the MLflow options of the report, which logs its tables and plots to the parent
    run of the jobs above (no task or seed, so no run of its own). `output` as in tracking()."""
    return _store_options()


# ---------------------------------------------------------------------------------------------
# Resources. Every job asks for what its work needs (moebert.plan: rows x epochs x length x model size on
# the device kind's measured speed, times resources.safety), and a job that ran out of time asks for more on
# each retry (it resumes from its checkpoint). On SLURM `gpu` becomes sbatch --gpus; the partition of GPU
# jobs and a typed GPU come from the environment (see slurm/config.yaml), so CPU jobs never queue for a GPU.

TRAINING_RULES = ("finetune", "distill")
SPEEDS = load_speeds(THROUGHPUT)


def job_gpus(rule_name: str, wildcards) -> int:
    """Training jobs take every GPU of `resources.gpus`; importance, evaluate and cuda speed one; data,
    adapt, the majority row and cpu speed none."""
    gpus = config["resources"]["gpus"]
    if rule_name in TRAINING_RULES:
        return gpus
    if rule_name in ("speed_random", "speed_trained"):
        return 1 if wildcards.device == "cuda" else 0
    if rule_name == "evaluate" and model_dir(wildcards) == []:
        return 0
    return min(gpus, 1) if rule_name in ("importance", "evaluate") else 0


def device_speed(gpus: int):
    return SPEEDS[config["resources"]["device_kind"] if gpus else "cpu"]


def job_estimate_s(rule_name: str, wildcards) -> float:
    """Seconds of one job on the device it asks for (CPU jobs at their thread count)."""
    gpus = job_gpus(rule_name, wildcards)
    work = job_work(config, rule_name, dict(wildcards.items()))
    return device_speed(gpus).seconds(work, threads=job_threads(config, rule_name), devices=max(gpus, 1))


def job_resources(rule_name: str) -> dict:
    res = config["resources"]

    def runtime(wildcards, attempt):
        return runtime_minutes(job_estimate_s(rule_name, wildcards), res["safety"], attempt, res["min_runtime"],
                               res["max_runtime"])

    def mem_mb(wildcards):
        work = job_work(config, rule_name, dict(wildcards.items()))
        return min(memory_mb(work, job_gpus(rule_name, wildcards) > 0, res["safety"]), res["max_mem_mb"])

    resources = {"gpu": lambda wildcards: job_gpus(rule_name, wildcards), "runtime": runtime, "mem_mb": mem_mb}
    partition, gpu_partition = os.environ.get("MOEBERT_SLURM_PARTITION"), os.environ.get("MOEBERT_SLURM_GPU_PARTITION")
    if gpu_partition:
        resources["slurm_partition"] = lambda wildcards: (
            gpu_partition if job_gpus(rule_name, wildcards) else partition or "")
    if gpu_type := os.environ.get("MOEBERT_SLURM_GPU_TYPE"):
        resources["gpu_model"] = lambda wildcards: gpu_type if job_gpus(rule_name, wildcards) else ""
    return resources


# Speed (workflow/rules/speed.smk)

def speed_grid(wildcards) -> str:
    speed = config["speed"]
    return _options(repeats=speed["repeats"], threads=speed["threads"], device=wildcards.device) + "".join(
        f" --{key.replace('_', '-')} " + " ".join(map(str, speed[key])) for key in ("batch_sizes", "seq_lengths")
    )


def speed_control(wildcards, input) -> str:
    """The random-weight dense-narrow control beside the trained models (teacher dimensions, the expert width
    of the first moe method), unless a trained dense-narrow is timed already."""
    kinds = [method["student"] for method in config["methods"].values()]
    moe = [method for method in config["methods"].values() if method["student"] == "moe"]
    if "dense-narrow" in kinds or not moe:
        return ""
    width = _options(expert_dim=moe[0]["expert_dim"])
    return f"--random {shlex.quote(input.teacher)} --random-models dense-narrow {width}"


def speed_models(wildcards) -> dict:
    """The trained models of one task and seed: the teacher and every method's student, by method name."""
    return {method: model_path(wildcards.task, method, wildcards.seed) for method in [TEACHER, *trained_methods()]}


def speed_results() -> list[str]:
    """What the report plots: random-weight runs, and the trained models of the first task and seed
    (speed does not depend on the task)."""
    speed = config["speed"]
    return [
        path
        for device in speed["devices"]
        for path in [f"results/speed/{device}/random-{dims}.csv" for dims in speed["random"]]
        + [f"results/speed/{device}/trained/{config['tasks'][0]}/seed{config['seeds'][0]}.csv"]
    ]
