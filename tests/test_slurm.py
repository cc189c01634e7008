"""The slurm profile for real, on a one-node SLURM cluster (Debian's slurm-wlm + munge, started here by
../shared/tools/local-slurm.sh as root): the tiny pipeline through sbatch with its chains grouped, a failing
job that stops nothing else, a job killed for memory that succeeds on its retry, and a job told its time is
up that checkpoints and resumes."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from test_workflow import REPO

pytestmark = pytest.mark.slurm

LOCAL_SLURM = REPO.parent / "shared" / "tools" / "local-slurm.sh"
SLURM_CONF = Path("/etc/slurm/slurm.conf")
# What makes the local cluster kill a job step whose processes hold more than the job's --mem: the memory
# of every task sampled each second.
ENFORCE_MEMORY = "JobAcctGatherType=jobacct_gather/linux\nJobAcctGatherFrequency=task=1\nJobAcctGatherParams=OverMemoryKill\n"
SUBMITTED = r"Job \S+ has been submitted with SLURM jobid (\d+)"


def _cluster_is_up() -> bool:
    return (
        bool(shutil.which("sinfo"))
        and subprocess.run(["sinfo", "-h"], capture_output=True, check=False).returncode == 0
    )


def _start() -> str:
    start = subprocess.run(
        ["bash", str(LOCAL_SLURM)], capture_output=True, text=True, timeout=900, check=False
    )
    if start.returncode != 0:
        pytest.skip(f"the local SLURM cluster did not start: {start.stderr.strip()[-2000:]}")
    return start.stdout.split()[-1]


def _stop() -> None:
    subprocess.run(["bash", str(LOCAL_SLURM), "stop"], capture_output=True, timeout=60, check=True)
    for _ in range(30):
        if not subprocess.run(["pgrep", "-x", "slurmctld|slurmd"], capture_output=True, check=False).stdout:
            return
        time.sleep(1)


@pytest.fixture(scope="module")
def slurm_cluster():
    """The partition of the local cluster; stopped afterwards unless it was already running."""
    if os.geteuid() != 0:
        pytest.skip("starting the local SLURM cluster needs root")
    if not LOCAL_SLURM.is_file():
        pytest.skip(f"{LOCAL_SLURM} is missing")
    was_up = _cluster_is_up()
    yield _start()
    if not was_up:
        _stop()


@pytest.fixture
def memory_enforcing(slurm_cluster):
    """The local cluster restarted with memory enforcement, and restarted as it was afterwards."""
    _stop()
    _start()
    SLURM_CONF.write_text(SLURM_CONF.read_text() + ENFORCE_MEMORY)
    for daemon in ("slurmctld", "slurmd"):
        subprocess.run(["pkill", "-x", daemon], check=False)
    time.sleep(2)
    for daemon in ("slurmctld", "slurmd"):
        subprocess.run([daemon], check=True)
    for _ in range(30):
        if re.search(
            r"idle|mix", subprocess.run(["sinfo", "-h"], capture_output=True, text=True, check=False).stdout
        ):
            break
        time.sleep(1)
    yield slurm_cluster
    _stop()
    _start()


def tiny_config(tmp_path: Path, glue_dir: Path, **changes) -> Path:
    """config/tiny.yaml with the shared data, sqlite tracking named explicitly (a cluster run refuses the
    default), and `changes` merged into its top-level sections."""
    config = yaml.safe_load((REPO / "config" / "tiny.yaml").read_text())
    config.update(data=str(glue_dir), tracking_uri="sqlite:///results/mlflow/mlflow.db")
    for key, value in changes.items():
        config[key] = {**config.get(key, {}), **value} if isinstance(value, dict) else value
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def through_sbatch(partition: str, workdir: Path, config: Path, *extra, timeout=1800):
    """Snakemake with the slurm profile exactly as users type it, from the repository root (so that
    `--profile slurm` resolves to ./slurm)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MOEBERT_SLURM_", "MLFLOW_TRACKING"))}
    env["MOEBERT_SLURM_PARTITION"] = partition
    argv = ["--cores", "all", "--profile", "slurm", "-s", "Snakefile", "--directory", workdir]
    proc = subprocess.run(
        # the targets before --configfile, which takes several files
        [sys.executable, "-m", "snakemake", *map(str, argv), *map(str, extra), "--configfile", str(config)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return proc, proc.stdout + proc.stderr


def test_tiny_pipeline_runs_end_to_end_through_sbatch_one_submission_per_chain(
    slurm_cluster, tmp_path, glue_dir
):
    proc, output = through_sbatch(slurm_cluster, tmp_path / "run", tiny_config(tmp_path, glue_dir))
    assert proc.returncode == 0, output[-8000:]
    submitted = re.findall(SUBMITTED, output)
    # One submission per chain: per task the teacher's (finetune, importance, evaluate) and each student's
    # (adapt, distill, evaluate; predict and export for moebert) for moebert, distil-half and the
    # construction-random point; the majority row's evaluation; and one speed job. 32 without the chains.
    assert len(set(submitted)) == len(submitted) == 2 * (1 + 3 + 1) + 1
    results = tmp_path / "run" / "results"
    assert (results / "speed" / "cpu" / "trained" / "rte" / "seed0.csv").is_file()
    assert (results / "tables" / "glue.md").is_file()
    assert (results / "metrics" / "stsb" / "moebert" / "seed0.json").is_file()
    assert (results / "export" / "rte" / "moebert" / "seed0" / "README.md").is_file()
    assert (results / "predictions" / "moebert" / "seed0" / "glue-submission.zip").is_file()
    assert not list(results.glob("moe/*/*/*"))  # the adapted students stayed temporary inside their chains


def test_a_failing_job_stops_nothing_that_does_not_need_it(slurm_cluster, tmp_path, glue_dir):
    workdir = tmp_path / "run"
    # RTE's teacher cannot write its checkpoints (a file where their folder goes): it fails on every attempt.
    blocked = workdir / "results" / "teacher" / "rte" / "seed0.checkpoints"
    blocked.parent.mkdir(parents=True)
    blocked.write_text("in the way\n")
    config = tiny_config(tmp_path, glue_dir, resources={"retries": 0}, predictions=[], exports=[])
    proc, output = through_sbatch(slurm_cluster, workdir, config)
    assert proc.returncode != 0
    assert "Error in group teacher-rte-seed0" in output, output[-8000:]
    results = workdir / "results"
    for method in ("teacher", "moebert", "distil-half", "construction-random", "majority"):
        assert (results / "metrics" / "stsb" / method / "seed0.json").is_file(), method
    assert not (results / "teacher" / "rte" / "seed0").exists()
    assert (results / "metrics" / "rte" / "majority" / "seed0.json").is_file()  # needs no teacher


def test_a_job_killed_for_memory_succeeds_on_its_retry(memory_enforcing, tmp_path, glue_dir):
    """The cost model's request is an upper bound, so the first request is forced below what the job holds
    (about 1.5 GB: fine-tuning MiniLM and Snakemake's own process in the job's step), growing with the
    attempt as the workflow's own does: 600 MB and 1200 MB are killed, 1800 MB suffices."""
    config = tiny_config(tmp_path, glue_dir, resources={"retries": 2})
    proc, output = through_sbatch(
        memory_enforcing,
        tmp_path / "run",
        config,
        "results/teacher/rte/seed0",
        "--set-resources",
        "finetune:mem_mb=600*attempt",
    )
    assert proc.returncode == 0, output[-8000:]
    requests = [int(mem) for mem in re.findall(r"rule finetune:(?:.*\n)*?.*mem_mb=(\d+)", output)]
    assert requests == [600, 1200, 1800], output[-8000:]
    # Killed by SLURM for memory, as the job logs say (squeue, which the profile polls, does not say why).
    logs = sorted((tmp_path / "run" / ".snakemake" / "slurm_logs").rglob("*.log"))
    killed = [log for log in logs if "Exceeded job memory limit" in log.read_text()]
    assert len(killed) == 2, [log.read_text()[-2000:] for log in logs]
    assert (tmp_path / "run" / "results" / "teacher" / "rte" / "seed0" / "model.safetensors").is_file()


def test_a_job_told_its_time_is_up_checkpoints_and_resumes(slurm_cluster, tmp_path, glue_dir):
    """The profile asks SLURM for SIGTERM 3 minutes before the time limit: with 4 minutes, fine-tuning (624
    steps, 2-5 minutes) gets it after 1 or 2, saves a checkpoint and stops; the retry, with twice the time as
    the workflow's own request grows, resumes. The time is forced down: the cost model's request, with its
    safety factor, would let the job finish."""
    config = tiny_config(
        tmp_path,
        glue_dir,
        resources={"retries": 1},
        training={"save_minutes": 60},  # no checkpoint but the one the signal asks for
        task_settings={"rte": {"max_length": 64, "max_train_samples": 2490, "distill": {"epochs": 1}}},
        teacher={"epochs": 2},
    )
    proc, output = through_sbatch(
        slurm_cluster,
        tmp_path / "run",
        config,
        "results/teacher/rte/seed0",
        "--set-resources",
        "finetune:runtime=4*attempt",
    )
    assert proc.returncode == 0, output[-8000:]
    runtimes = [int(m) for m in re.findall(r"rule finetune:(?:.*\n)*?.*runtime=(\d+)", output)]
    assert runtimes == [4, 8], output[-8000:]
    log = (tmp_path / "run" / "logs" / "finetune" / "rte" / "seed0.log").read_text()
    resumed = re.findall(
        r"resuming from checkpoint results/teacher/rte/seed0\.checkpoints/checkpoint-(\d+)", log
    )
    assert resumed and int(resumed[0]) > 0, log[-3000:]
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'run' / 'results' / 'mlflow' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("moebert-tiny")
    runs = client.search_runs([experiment.experiment_id], filter_string="tags.rule = 'finetune'")
    assert sorted(r.info.status for r in runs) == ["FINISHED", "KILLED"]
