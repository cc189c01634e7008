# Shared by the rules: the typed config (read once), result paths, input functions, and the params
# functions that render each job's flags from the config (moebert.config: every setting's meaning lives
# there) and its resources from the cost model (workflow/lib/jobs.py).

import getpass
import os
import shlex
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.logging import logger

from moebert.config import TEACHER, ConfigError, flags, load_settings
from moebert.hub import is_hub_model, model_slug

# The repository: the main Snakefile is its workflow/Snakefile.
REPOSITORY = Path(workflow.basedir).parent
sys.path.insert(0, str(REPOSITORY / "workflow" / "lib"))
import controller  # noqa: E402 (workflow/lib: one controller at a time on a working directory)
import jobs  # noqa: E402 (workflow/lib: what each rule's job computes and asks for)
import runs  # noqa: E402 (workflow/lib: how a job's command starts and where it logs)

# The repository's conda environment: `snakemake --sdm conda` builds it, a plain run uses the
# current Python (where `pip install -e .` put the moebert CLI).
CONDA_ENV = "../../envs/moebert.yaml"
# The fetching rules turn the hub back on for their command (the Snakefile turns it off for all others).
HUB_ON = "HF_HUB_OFFLINE=0 HF_DATASETS_OFFLINE=0"
SPEEDS = jobs.load_speeds(REPOSITORY / "config" / "throughput.yaml")


def load_config(config) -> object:
    """The typed settings of the config, checked before the DAG is built so a bad config stops before any
    job, with the one-line error that names the key."""
    try:
        return load_settings(config, SPEEDS)
    except ConfigError as err:
        raise WorkflowError(str(err)) from None


SETTINGS = load_config(config)
# Retries belong to the controlling Snakemake, which resubmits a failed job with the next attempt's memory and
# time; the Snakemake inside a cluster job would restart it at once in the same allocation, about to end.
RETRIES = 0 if workflow.remote_exec else SETTINGS.resources.retries
TRACKING = runs.Tracking.of(SETTINGS, str(REPOSITORY))


# ---------------------------------------------------------------------------------------------
# Paths. Every (task, seed) has one teacher (shared by the seeds with teacher.per_seed false); every
# (task, method, seed) one student.


def data_dir(wildcards):
    return f"resources/data/{wildcards.task}"


def data_source(wildcards):
    """Input of prepare_data: the configured directory of the task's family (none for the hub), or a user
    task's files. A directory counts as ancient: its mtime moves when the share is re-synced or re-mounted or
    an entry is added, never when a file in it is edited, and a newer one would re-prepare every task and so
    retrain the whole campaign. After changing the data, rerun with `-R prepare_data`."""
    return [ancient(path) if Path(path).is_dir() else path for path in SETTINGS.data_inputs(wildcards.task)]


def hub_model(wildcards) -> str:
    """Params function of fetch_model: the hub id of the model fetched into resources/models/<slug>."""
    name = SETTINGS.teacher.model
    return {model_slug(name): name}[wildcards.model] if is_hub_model(name) else ""


def hub_revision(wildcards) -> str:
    """Params function of fetch_model: the flag of the teacher's pinned revision, if any."""
    revision = SETTINGS.teacher.revision
    return f"--revision {shlex.quote(revision)}" if revision else ""


def teacher_students(wildcards) -> str:
    """Params function of fetch_model: the student kinds built from the teacher, which the fetch refuses if
    the teacher's backbone cannot build one (a local teacher is checked with the config)."""
    return " ".join(sorted({method["student"] for method in SETTINGS.resolved["methods"].values()}))


def pretrained_model() -> str:
    """What the teacher fine-tunes: its fetched copy for a hub id, else the local or packaged model itself."""
    name = SETTINGS.teacher.model
    return f"resources/models/{model_slug(name)}" if is_hub_model(name) else name


def pretrained_input(wildcards) -> list[str]:
    """Input of finetune: the fetched model (none for a local or packaged one)."""
    return [pretrained_model()] if is_hub_model(SETTINGS.teacher.model) else []


def teacher_path(task, seed) -> str:
    return f"results/teacher/{task}/seed{SETTINGS.teacher_seed(int(seed))}"


def model_path(task, method, seed) -> str:
    """The teacher itself or a distilled student."""
    if method == TEACHER:
        return teacher_path(task, seed)
    return f"results/student/{task}/{method}/seed{seed}"


def teacher_dir(wildcards) -> str:
    return teacher_path(wildcards.task, wildcards.seed)


def importance_path(wildcards) -> str:
    return f"results/importance/{wildcards.task}/seed{SETTINGS.teacher_seed(int(wildcards.seed))}.safetensors"


def adapt_importance(wildcards) -> list[str]:
    """Input of adapt: the importance scores, for the students that keep the most important neurons."""
    return [importance_path(wildcards)] if SETTINGS.methods[wildcards.method].kind.needs_importance else []


def model_dir(wildcards):
    """The model that `evaluate` scores (none for an untrained row: majority)."""
    if wildcards.method != TEACHER and not SETTINGS.methods[wildcards.method].kind.trains:
        return []
    return model_path(wildcards.task, wildcards.method, wildcards.seed)


def chain_group(rule: str) -> str:
    """Group of a chain rule: the chain its jobs belong to (workflow/lib/jobs.py), submitted to a cluster as
    one job."""
    return jobs.chain(rule)


def all_metrics() -> list[str]:
    """Every row of every task and seed; the teacher's once per teacher."""
    return [
        f"results/metrics/{task}/{method}/seed{seed}.json"
        for task in SETTINGS.tasks
        for method in SETTINGS.task_methods(task)
        for seed in sorted(
            {SETTINGS.teacher_seed(s) for s in SETTINGS.seeds} if method == TEACHER else SETTINGS.seeds
        )
    ]


def glue_predictions(wildcards) -> list[str]:
    """Input of submission: the prediction directories of a row's GLUE tasks."""
    glue = [task for task, settings in SETTINGS.tasks.items() if settings.task.family == "glue"]
    return [f"results/predictions/{wildcards.method}/seed{wildcards.seed}/{task}" for task in glue]


def all_predictions() -> list[str]:
    """What `predictions:` asks for: every task's prediction directory and, with a GLUE task, the upload."""
    glue = any(settings.task.family == "glue" for settings in SETTINGS.tasks.values())
    return [
        path
        for row in SETTINGS.predictions
        for seed in SETTINGS.seeds
        for path in [
            *(f"results/predictions/{row}/seed{seed}/{task}" for task in SETTINGS.tasks),
            *([f"results/predictions/{row}/seed{seed}/glue-submission.zip"] if glue else []),
        ]
    ]


def metrics_path(task, method, seed) -> str:
    """A row's metrics file; a student's teacher is the one its seed starts from."""
    if method == TEACHER:
        seed = SETTINGS.teacher_seed(int(seed))
    return f"results/metrics/{task}/{method}/seed{seed}.json"


def all_exports() -> list[str]:
    """What `exports:` asks for: every task and seed of each row (the teacher's once per teacher)."""
    return sorted(
        {
            f"results/export/{task}/{row}/seed{seed}/README.md"
            for row in SETTINGS.exports
            for task in SETTINGS.tasks
            for seed in SETTINGS.seeds
            for seed in [SETTINGS.teacher_seed(seed) if row == TEACHER else seed]
        }
    )


def result_tables() -> list[str]:
    """The tables of the task families the config runs: glue.*, (with a QA task) squad.* and (with a user
    task) user.*."""
    families = {settings.task.family for settings in SETTINGS.tasks.values()}
    tables = (("glue", "glue"), ("squad", "qa"), ("user", "user"))
    names = [name for name, family in tables if family in families]
    return [f"results/tables/{name}.{ext}" for name in names for ext in ("md", "csv", "tex")]


# The label of each table in the report's Results.
TABLE_TITLES = {
    "glue": "GLUE dev results",
    "squad": "SQuAD dev results",
    "user": "User task dev results",
    "params": "Parameters",
    "claims": "The paper's claims",
    "ablations": "Ablations",
    "speed": "Inference speed",
}


def result_pages() -> list[str]:
    """The HTML page of every table the config makes: the task families', the parameters', the claims' and
    ablations' where it states them, the timings' where it times a device."""
    names = [Path(path).stem for path in result_tables() if path.endswith(".csv")] + ["params"]
    names += ["claims"] * bool(SETTINGS.claims) + ["ablations"] * bool(SETTINGS.sweep_points)
    names += ["speed"] * bool(speed_results())
    return [f"results/tables/{name}.html" for name in names]


def report_facts(wildcards, output) -> dict:
    """What the captions name: the teacher, the timed devices and settings, the task and seed whose trained
    models are timed."""
    speed = SETTINGS.speed
    return {
        "teacher": SETTINGS.teacher.model,
        "devices": ", ".join(speed.devices) or "none",
        "threads": speed.threads,
        "random": ", ".join(speed.random) or "none",
        "batch_sizes": ", ".join(map(str, speed.batch_sizes)),
        "seq_lengths": ", ".join(map(str, speed.seq_lengths)),
        "timed_task": next(iter(SETTINGS.tasks)),
        "timed_seed": SETTINGS.seeds[0],
        "tasks": len(SETTINGS.tasks),
    }


# ---------------------------------------------------------------------------------------------
# Flags. A job's options are params computed from its wildcards only, so Snakemake reruns a job whose
# options changed; those of where and how it runs take `output` too, which keeps them out of that check.


def stage_flags(options):
    """Params function: the flags of `options(wildcards)`, a stage's typed options (moebert.config.options)."""
    return lambda wildcards: flags(*options(wildcards))


def model_device(wildcards, output) -> str:
    """--device of a model job: a job that requested GPUs must run on one (and fails clearly if it got none);
    otherwise the CLI's default, CUDA when present."""
    return "--device " + ("cuda" if SETTINGS.resources.gpus > 0 else "auto")


def experts_implementation(wildcards, output) -> str:
    """How MoE students compute their experts, where the config names one (else each job's fastest)."""
    name = SETTINGS.resources.experts_implementation
    return "" if name == "auto" else f"--experts-implementation {name}"


def checkpoints(wildcards, output) -> str:
    """How often a training job checkpoints: where its checkpoints go does not change its model."""
    return f"--save-minutes {SETTINGS.training.save_minutes}"


def launcher(wildcards, output, threads) -> str:
    """How a training job starts the CLI (workflow/lib/runs.py)."""
    return runs.launcher(SETTINGS.processes(), threads, jobs.signal_margin_s())


def speed_control(wildcards, input) -> str:
    """The random-weight dense-narrow control beside the trained models, unless a trained one is timed."""
    width = SETTINGS.speed_control_width()
    if width is None:
        return ""
    return f"--random {shlex.quote(input.teacher)} --random-models dense-narrow --expert-dim {width}"


def speed_models(wildcards) -> dict:
    """The trained models of one task and seed: the teacher and every method's student, by method name."""
    return {m: model_path(wildcards.task, m, wildcards.seed) for m in [TEACHER, *SETTINGS.trained_methods()]}


def speed_results() -> list[str]:
    """What the report plots: random-weight runs, and the trained models of the first task and seed
    (speed does not depend on the task)."""
    task, seed = next(iter(SETTINGS.tasks)), SETTINGS.seeds[0]
    return [
        path
        for device in SETTINGS.speed.devices
        for path in [
            *(f"results/speed/{device}/random-{dims}.csv" for dims in SETTINGS.speed.random),
            f"results/speed/{device}/trained/{task}/seed{seed}.csv",
        ]
    ]


# ---------------------------------------------------------------------------------------------
# MLflow (workflow/lib/runs.py). These params take `output`, which keeps them out of the params check.


def tracking(rule: str, method: str | None = None):
    """Params function: the MLflow options of one job; speed jobs differ by device."""

    def args(wildcards, output) -> str:
        job_rule = "-".join(filter(None, [rule, getattr(wildcards, "device", None)]))
        return TRACKING.job_options(job_rule, wildcards.task, method or wildcards.method, wildcards.seed)

    return args


def report_tracking(wildcards, output) -> str:
    """The MLflow options of the report, which logs its tables and plots to the parent run of the jobs."""
    return TRACKING.store_options()


def refuse_shared_sqlite(cluster: bool, executor: str) -> None:
    if reason := TRACKING.refusal(cluster, executor):
        raise WorkflowError(reason)


def refuse_second_controller(executor: str, submitted_from) -> None:
    """On SLURM, no controller starts beside the jobs an earlier one left running here (workflow/lib/controller.py).
    `submitted_from`: the directory the slurm executor submits its jobs from (sbatch -D), where Snakemake started.
    """
    if executor == "slurm":
        own = os.environ.get("SLURM_JOB_ID")
        if reason := controller.refusal(submitted_from, getpass.getuser(), own):
            raise WorkflowError(reason)


def refuse_capped_threads(cluster: bool, cores) -> None:
    """`cores`: Snakemake's `_cores` resource (--cores), or None."""
    threads = max(SETTINGS.resources.threads, SETTINGS.speed.threads)
    if cluster and (reason := controller.capped_threads(getattr(cores, "value", cores), threads)):
        raise WorkflowError(reason)


def warn_memory_capped(cluster: bool) -> None:
    """Say before any job when a training job's first request is already the cap, so that its retries after
    an out-of-memory kill would ask no more."""
    if cluster and SETTINGS.resources.retries and (capped := jobs.memory_capped(SETTINGS)):
        logger.warning(
            f"{len(capped)} training job(s) ask resources.max_mem_mb ({SETTINGS.resources.max_mem_mb} MB) at "
            f"their first attempt, so a retry after an out-of-memory kill asks no more memory: "
            f"{', '.join(capped[:5])}{' ...' if len(capped) > 5 else ''}. Raise max_mem_mb to your nodes' "
            f"memory, or use fewer GPUs (processes) per job."
        )


def job_resources(rule: str) -> dict:
    return jobs.resources(SETTINGS, SPEEDS, rule)
