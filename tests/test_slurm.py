"""The slurm profile for real, on a one-node SLURM cluster (Debian's slurm-wlm + munge, started here by
../shared/tools/local-slurm.sh as root): the tiny pipeline through sbatch with its chains grouped, a failing
job that stops nothing else, a failure after training that keeps the trained model, a job killed for memory
that succeeds on its retry, and a job told its time is up that checkpoints and resumes.

Every campaign runs as a normal user (created if missing), from a copy of the workflow that user owns, as on
a cluster: root ignores permissions, so a run as root hides what a read-only file does to Snakemake."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest
import yaml
from test_workflow import REPO

pytestmark = pytest.mark.slurm

# How a training step says it saved and stopped: at SIGTERM, or at the same margin before the job's time limit
# by itself (under proctrack/cgroup the signal never reaches it).
STOPPED = r"(?:SIGTERM|\d+ s before the job's time limit): checkpoint at optimiser step (\d+), then stopping"
LOCAL_SLURM = REPO.parent / "shared" / "tools" / "local-slurm.sh"
SLURM_CONF = Path("/etc/slurm/slurm.conf")
# What makes the local cluster kill a job step whose processes hold more than the job's --mem: the memory
# of every task sampled each second.
ENFORCE_MEMORY = "JobAcctGatherType=jobacct_gather/linux\nJobAcctGatherFrequency=task=1\nJobAcctGatherParams=OverMemoryKill\n"
SUBMITTED = r"Job \S+ has been submitted with SLURM jobid (\d+)"
# Who runs the campaigns: any normal user; created if missing.
USER = os.environ.get("MOEBERT_SLURM_TEST_USER", "moebert-slurm")
# What a user's copy of the workflow holds: the workflow, its configs and profile, and the package's source
# (PYTHONPATH), so the jobs run this checkout's code.
WORKFLOW = ("workflow", "config", "slurm", "envs", "scripts", "src")
SLURMCTLD_LOG = Path("/var/log/slurm/slurmctld.log")


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


@dataclass
class Campaign:
    """A normal user's copy of the workflow (`root`, owned by `user`), run there with the slurm profile
    exactly as users type it."""

    root: Path
    user: str
    partition: str

    def config(self, glue_dir: Path, **changes) -> Path:
        """.test/config/config.yaml with the shared data, sqlite tracking named explicitly (a cluster run refuses
        the default), and `changes` merged into its top-level sections."""
        config = yaml.safe_load((REPO / ".test" / "config" / "config.yaml").read_text())
        config.update(data=str(glue_dir), tracking_uri="sqlite:///results/mlflow/mlflow.db")
        for key, value in changes.items():
            config[key] = {**config.get(key, {}), **value} if isinstance(value, dict) else value
        path = self.root / "test-config.yaml"
        path.write_text(yaml.safe_dump(config))
        return path

    def env(self) -> dict:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MOEBERT_SLURM_", "MLFLOW_TRACKING"))}
        home = Path(f"~{self.user}").expanduser()
        env.update(
            HOME=str(home),
            USER=self.user,
            LOGNAME=self.user,
            PYTHONPATH=str(self.root / "src"),
            MOEBERT_SLURM_PARTITION=self.partition,
            PATH=f"{Path(sys.executable).parent}:{env.get('PATH', '/usr/bin:/bin')}",
        )
        env.pop("TMPDIR", None)  # pytest's may be root's own
        return env

    def run(self, config: Path, *extra, env: dict | None = None, timeout=1800, wait=True):
        """Snakemake as the user; with wait False, the started process (its output in `controller.log`)."""
        subprocess.run(["chown", "-R", f"{self.user}:", str(self.root.parent)], check=True)
        argv = ["--cores", "all", "--profile", "slurm", *map(str, extra), "--configfile", str(config)]
        command = ["runuser", "-u", self.user, "--", sys.executable, "-m", "snakemake", *argv]
        if not wait:
            with open(self.root / "controller.log", "w") as log:
                return subprocess.Popen(
                    command, cwd=self.root, env=env or self.env(), stdout=log, stderr=subprocess.STDOUT
                )
        # the targets before --configfile, which takes several files
        proc = subprocess.run(
            command,
            cwd=self.root,
            env=env or self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        return proc, proc.stdout + proc.stderr

    def first_finetune_log(self, folder: Path) -> str:
        """The log of the fine-tuning attempt that was stopped, from its MLflow run (the retry overwrites the
        rule's log file): the tiny config's experiment holds one KILLED and one FINISHED finetune run."""
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=f"sqlite:///{self.root / 'results' / 'mlflow' / 'mlflow.db'}")
        experiment = client.get_experiment_by_name("moebert-tiny")
        runs = client.search_runs([experiment.experiment_id], filter_string="tags.rule = 'finetune'")
        assert sorted(r.info.status for r in runs) == ["FINISHED", "KILLED"]
        killed = next(r for r in runs if r.info.status == "KILLED")
        return Path(client.download_artifacts(killed.info.run_id, "seed0.log", str(folder))).read_text()


def _can(user: str, *test) -> bool:
    return subprocess.run(["runuser", "-u", user, "--", "test", *test], check=False).returncode == 0


@pytest.fixture(scope="module")
def slurm_user(slurm_cluster) -> str:
    """The normal user, able to run this interpreter: a folder on its way that others may not enter (a
    pyenv Python under /root) gets their search bit (x), not their read bit."""
    if subprocess.run(["id", "-u", USER], capture_output=True, check=False).returncode != 0:
        subprocess.run(["useradd", "--create-home", USER], check=True)
    interpreter = Path(sys.executable).resolve()
    for folder in reversed(interpreter.parents):
        if not _can(USER, "-x", str(folder)):
            folder.chmod(folder.stat().st_mode | 0o001)
    if not _can(USER, "-x", str(interpreter)):
        pytest.skip(f"user {USER} cannot run {interpreter}")
    return USER


@pytest.fixture
def campaign(slurm_cluster, slurm_user, glue_dir):
    """A fresh copy of the workflow owned by the normal user, outside root's temporary directories (which
    only root may enter); removed afterwards."""
    root = Path(tempfile.mkdtemp(prefix="moebert-slurm-")) / "campaign"
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for name in WORKFLOW:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, root / name, ignore=ignore)
        else:
            root.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, root / name)
    yield Campaign(root, slurm_user, slurm_cluster)
    shutil.rmtree(root.parent, ignore_errors=True)


def submissions(output: str) -> dict[str, str]:
    """SLURM job id -> the group or rule Snakemake submitted as it (its log folder names it)."""
    found = re.findall(SUBMITTED + r" \(log: \S*slurm_logs/(?:group|rule)_([^/]+)/", output)
    return dict(found)


def endings(jobs) -> dict[str, tuple[str, float]]:
    """The scheduler's own record of how and when each job ended (slurmctld's log: `[time] _job_complete:
    JobId=N WEXITSTATUS c`, in local time): job id -> (exit status, epoch seconds)."""
    log = SLURMCTLD_LOG.read_text(errors="replace")
    return {
        job: (m.group(2), datetime.fromisoformat(m.group(1)).timestamp())
        for job in jobs
        if (m := re.search(rf"\[([\d\-T:.]+)\] _job_complete: JobId={job} WEXITSTATUS (\d+)", log))
    }


def test_tiny_pipeline_runs_end_to_end_through_sbatch_one_submission_per_chain(campaign, glue_dir):
    proc, output = campaign.run(campaign.config(glue_dir))
    assert proc.returncode == 0, output[-8000:]
    submitted = re.findall(SUBMITTED, output)
    # One submission per chain: per task the teacher's training (finetune), its importance, each student's
    # training (adapt, distill) for moebert, distil-half and the construction-random point, and the task's
    # scores (every row's evaluation, moebert's predictions and export); and one speed job. 32 without the
    # chains.
    assert len(set(submitted)) == len(submitted) == 2 * (1 + 1 + 3 + 1) + 1
    results = campaign.root / "results"
    assert (results / "speed" / "cpu" / "trained" / "rte" / "seed0.csv").is_file()
    assert (results / "tables" / "glue.md").is_file()
    assert (results / "metrics" / "stsb" / "moebert" / "seed0.json").is_file()
    assert (results / "export" / "rte" / "moebert" / "seed0" / "README.md").is_file()
    assert (results / "predictions" / "moebert" / "seed0" / "glue-submission.zip").is_file()
    assert not list(results.glob("moe/*/*/*"))  # the adapted students stayed temporary inside their chains


def test_a_failing_job_stops_nothing_that_does_not_need_it(campaign, glue_dir):
    # RTE's teacher cannot write its checkpoints (a file where their folder goes): it fails on every attempt.
    blocked = campaign.root / "results" / "teacher" / "rte" / "seed0.checkpoints"
    blocked.parent.mkdir(parents=True)
    blocked.write_text("in the way\n")
    config = campaign.config(glue_dir, resources={"retries": 0}, predictions=[], exports=[])
    proc, output = campaign.run(config)
    assert proc.returncode != 0
    assert "Error in group teacher-rte-seed0" in output, output[-8000:]
    results = campaign.root / "results"
    for method in ("teacher", "moebert", "distil-half", "construction-random", "majority"):
        assert (results / "metrics" / "stsb" / method / "seed0.json").is_file(), method
    assert not (results / "teacher" / "rte" / "seed0").exists()
    # RTE's rows are scored in one job once all its models exist: none of them, the majority row included.
    assert not (results / "metrics" / "rte").exists()


FAULTY_EVALUATE = """#!/bin/bash
# The moebert CLI, except that its first evaluate fails: a fault after the teacher's training finished.
if [ "$1" = evaluate ] && rm "$(dirname "$0")/../evaluate-fails" 2>/dev/null; then
  echo "injected fault: evaluate fails once" >&2
  exit 3
fi
exec "{moebert}" "$@"
"""


def test_a_failure_after_training_keeps_the_trained_model(campaign, glue_dir):
    """The teacher's evaluation fails at its first attempt, after its fine-tuning finished (a stand-in
    `moebert` first on the jobs' PATH fails once): the retry evaluates the same model, the teacher is trained
    once, keeps its file and mtime, and the controller ends cleanly (no PermissionError on a read-only
    output, no ProtectedOutputException); a second controller has nothing to do."""
    faults = campaign.root / "faults"
    (faults / "bin").mkdir(parents=True)
    stand_in = faults / "bin" / "moebert"
    stand_in.write_text(FAULTY_EVALUATE.format(moebert=Path(sys.executable).parent / "moebert"))
    stand_in.chmod(0o755)
    (faults / "evaluate-fails").write_text("")
    env = campaign.env()
    env["PATH"] = f"{faults / 'bin'}:{env['PATH']}"
    config = campaign.config(glue_dir, resources={"retries": 1})
    targets = ("results/metrics/rte/teacher/seed0.json", "results/importance/rte/seed0.safetensors")
    proc, output = campaign.run(config, *targets, env=env)
    assert proc.returncode == 0, output[-8000:]
    assert "PermissionError" not in output and "ProtectedOutput" not in output, output[-8000:]
    assert not (faults / "evaluate-fails").exists()  # the fault did happen
    jobs = submissions(output)
    # The training chain and importance once, the scores chain twice.
    assert sorted(jobs.values()) == [
        "importance",
        "rte-scores_evaluate",
        "rte-scores_evaluate",
        "teacher-rte-seed0_finetune",
    ], output[-8000:]
    # The scheduler's own log: the first scores job failed, every other job succeeded.
    ended = endings(jobs)
    scores = sorted(int(job) for job, group in jobs.items() if group == "rte-scores_evaluate")
    assert [ended[str(job)][0] for job in scores] == ["1", "0"], ended
    assert all(ended[job][0] == "0" for job, group in jobs.items() if "scores" not in group), ended
    # The model was written before the failure, and never again.
    model = campaign.root / "results" / "teacher" / "rte" / "seed0" / "model.safetensors"
    trained_at = model.stat().st_mtime_ns
    assert trained_at / 1e9 < ended[str(scores[0])][1], (trained_at, ended)
    metrics = campaign.root / "results" / "metrics" / "rte" / "teacher" / "seed0.json"
    assert metrics.stat().st_mtime_ns > trained_at

    again, output = campaign.run(config, *targets)
    assert again.returncode == 0, output[-8000:]
    assert "Nothing to be done" in output, output[-8000:]
    assert model.stat().st_mtime_ns == trained_at


def _submitted_since(job: int) -> list[str]:
    """The jobs slurmctld accepted after job id `job`, in order."""
    found = re.findall(r"_slurm_rpc_submit_batch_job: JobId=(\d+)", SLURMCTLD_LOG.read_text(errors="replace"))
    return [j for j in found if int(j) > job]


def _wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not (found := condition()):
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(2)
    return found


def test_a_restarted_controller_never_runs_a_job_twice(campaign, glue_dir):
    """A controller killed while its training job runs leaves the job running; the next one refuses to start,
    naming the job and the scancel line; `workflow/lib/controller.py` waits for it; the one after builds its
    DAG on the finished teacher and only adds importance. The scheduler ran one job per output."""
    config = campaign.config(glue_dir, resources={"retries": 0}, teacher={"epochs": 3})
    target = "results/importance/rte/seed0.safetensors"
    before = _submitted_since(0)
    before = int(before[-1]) if before else 0
    first = campaign.run(config, target, wait=False)
    log = campaign.root / "controller.log"
    training = _wait_for(
        lambda: re.findall(SUBMITTED, log.read_text()), 300, "the training job's submission"
    )[0]
    _wait_for(
        lambda: (
            "RUNNING"
            in subprocess.run(
                ["squeue", "-h", "-j", training, "-o", "%T"], capture_output=True, text=True, check=False
            ).stdout
        ),
        300,
        f"job {training} to run",
    )
    # SIGKILL to the controller itself (runuser's child): nothing of it survives to cancel its jobs.
    children = Path(f"/proc/{first.pid}/task/{first.pid}/children").read_text().split()
    for child in children:
        os.kill(int(child), signal.SIGKILL)
    first.wait(timeout=60)

    unlock, output = campaign.run(config, target, "--unlock")
    assert unlock.returncode == 0, output[-4000:]
    second, output = campaign.run(config, target)
    assert second.returncode != 0
    assert f"still queued or running: {training}." in output and f"scancel {training}" in output, output[
        -4000:
    ]
    assert not re.findall(SUBMITTED, output)

    waited = subprocess.run(
        ["runuser", "-u", campaign.user, "--", sys.executable, "workflow/lib/controller.py"],
        cwd=campaign.root,
        env=campaign.env(),
        capture_output=True,
        text=True,
        timeout=900,
        check=True,
    )
    assert f"left running here: {training}" in waited.stdout
    third, output = campaign.run(config, target)
    assert third.returncode == 0, output[-8000:]
    assert list(submissions(output).values()) == ["importance"], output[-8000:]
    ended = endings([training])
    assert ended[training][0] == "0", ended
    # The scheduler's own log: the three controllers made two jobs, the teacher's and importance's.
    assert _submitted_since(before) == [training, *submissions(output)], output[-8000:]


def test_the_controller_job_hands_over_to_its_successor_at_its_time_limit(campaign, glue_dir):
    """scripts/controller-job.sh with a 2-minute limit while the teacher trains for longer: SLURM ends the
    first link at its limit (the training job goes on); the successor it queued starts, waits for that job,
    finds the teacher done, submits nothing, and cancels its own successor. One training job in all."""
    config = campaign.config(
        glue_dir,
        resources={"retries": 0},
        training={"save_minutes": 60},  # no checkpoint every step
        task_settings={"rte": {"max_length": 64, "max_train_samples": 2490, "distill": {"epochs": 1}}},
        teacher={"epochs": 1},  # 312 steps: 3-5 minutes here
    )
    # Every link on one of the node's two CPUs, so that link 2 starts beside the training job it waits for.
    script = campaign.root / "scripts" / "controller-job.sh"
    script.write_text(
        script.read_text().replace("--cpus-per-task=2", "--cpus-per-task=1").replace("--mem=8G", "--mem=3G")
    )
    before = _submitted_since(0)
    before = int(before[-1]) if before else 0
    subprocess.run(["chown", "-R", f"{campaign.user}:", str(campaign.root.parent)], check=True)
    submit = subprocess.run(
        [
            "runuser",
            "-u",
            campaign.user,
            "--",
            "sbatch",
            "--parsable",
            "--time=2",
            "--cpus-per-task=1",
            "--mem=3G",
            "scripts/controller-job.sh",
            "results/teacher/rte/seed0",
            "--configfile",
            str(config),
        ],
        cwd=campaign.root,
        env=campaign.env(),
        capture_output=True,
        text=True,
        check=True,
    )
    first = submit.stdout.strip()

    def settled():
        jobs = _submitted_since(before)
        states = subprocess.run(
            ["squeue", "-h", "-u", campaign.user, "-o", "%i"], capture_output=True, text=True, check=False
        ).stdout.split()
        return jobs if len(jobs) >= 4 and not states else None

    jobs = _wait_for(settled, 1500, "the controller links and their jobs to end")
    log = SLURMCTLD_LOG.read_text(errors="replace")
    # Link 1, link 2 (queued by link 1 before anything else), the training job, link 3 (queued by link 2,
    # cancelled by it): four jobs, one of them training.
    assert len(jobs) == 4 and jobs[0] == first, jobs
    link1, link2, training, link3 = jobs
    limit = re.search(rf"\[([\d\-T:.]+)\] Time limit exhausted for JobId={link1}\b", log)
    assert limit, log[-3000:]
    started = re.search(rf"\[([\d\-T:.]+)\] sched: Allocate JobId={link2}\b", log)
    ended = endings([training, link2])
    assert ended[training][0] == "0" and ended[link2][0] == "0", ended
    # The training outlived link 1; link 2 started beside it and waited for it.
    assert datetime.fromisoformat(limit.group(1)).timestamp() < ended[training][1], (limit, ended)
    assert datetime.fromisoformat(started.group(1)).timestamp() < ended[training][1], (started, ended)
    assert re.search(rf"(?:KILL|CANCEL)\w* JobId={link3}\b", log), log[-3000:]
    assert not (campaign.root / f"slurm-{link3}.out").exists()  # it never ran
    second = (campaign.root / f"slurm-{link2}.out").read_text()
    assert f"left running here: {training}" in second and "Nothing to be done" in second, second[-3000:]
    assert (campaign.root / "results" / "teacher" / "rte" / "seed0" / "model.safetensors").is_file()


def test_a_job_killed_for_memory_succeeds_on_its_retry(memory_enforcing, campaign, glue_dir):
    """The cost model's request is an upper bound, so the first request is forced below what the job holds
    (about 1.5 GB: fine-tuning MiniLM and Snakemake's own process in the job's step), growing with the
    attempt as the workflow's own does: 600 MB and 1200 MB are killed, 1800 MB suffices."""
    config = campaign.config(glue_dir, resources={"retries": 2})
    proc, output = campaign.run(
        config, "results/teacher/rte/seed0", "--set-resources", "finetune:mem_mb=600*attempt"
    )
    assert proc.returncode == 0, output[-8000:]
    requests = [int(mem) for mem in re.findall(r"rule finetune:(?:.*\n)*?.*mem_mb=(\d+)", output)]
    assert requests == [600, 1200, 1800], output[-8000:]
    # Killed by SLURM for memory, as the job logs say (squeue, which the profile polls, does not say why).
    logs = sorted((campaign.root / ".snakemake" / "slurm_logs").rglob("*.log"))
    killed = [log for log in logs if "Exceeded job memory limit" in log.read_text()]
    assert len(killed) == 2, [log.read_text()[-2000:] for log in logs]
    assert (campaign.root / "results" / "teacher" / "rte" / "seed0" / "model.safetensors").is_file()


def test_a_job_told_its_time_is_up_checkpoints_and_resumes(campaign, glue_dir, tmp_path):
    """The profile asks SLURM for SIGTERM 3 minutes before the time limit (SLURM may send it a minute
    early): with 5 minutes, fine-tuning (312 steps, 2-6 minutes on a shared 2-core machine) gets it after 1
    or 2, saves a checkpoint and stops; the retry, with twice the time as the workflow's own request grows,
    resumes. The time is forced down: the cost model's request, with its safety factor, would let the job
    finish. (With 4 minutes the first attempt may get its signal as it starts.) Under proctrack/cgroup the
    signal stops at the job's Snakemake, and the training stops by the time left that squeue states."""
    config = campaign.config(
        glue_dir,
        resources={"retries": 1},
        training={"save_minutes": 60},  # no checkpoint but the one the signal asks for
        task_settings={"rte": {"max_length": 64, "max_train_samples": 2490, "distill": {"epochs": 1}}},
        teacher={"epochs": 1},
    )
    proc, output = campaign.run(
        config, "results/teacher/rte/seed0", "--set-resources", "finetune:runtime=5*attempt"
    )
    assert proc.returncode == 0, output[-8000:]
    runtimes = [int(m) for m in re.findall(r"rule finetune:(?:.*\n)*?.*runtime=(\d+)", output)]
    assert runtimes == [5, 10], output[-8000:]
    log = (campaign.root / "logs" / "finetune" / "rte" / "seed0.log").read_text()
    resumed = re.findall(
        r"resuming from checkpoint results/teacher/rte/seed0\.checkpoints/checkpoint-(\d+)", log
    )
    assert resumed and int(resumed[0]) > 0, log[-3000:]
    first = campaign.first_finetune_log(tmp_path)
    assert re.findall(STOPPED, first) == resumed[:1], first[-3000:]


def test_two_processes_told_their_time_is_up_checkpoint_and_resume(campaign, glue_dir, tmp_path):
    """The same for a training job of two processes (`accelerate launch`, as for two GPUs; the local cluster
    has none, so the copy's jobs ask SLURM for none and run on the CPU): SLURM signals every process of the
    step, torchrun forwards the signal to its two workers and waits the profile's margin for them rather
    than its own 30 s, both save the same step, and the retry's two processes resume from it. Two processes
    on the node's two cores take 2.5-5 s a step: 156 steps, 5 minutes (the signal after 1 or 2), then 20 for
    the retry; the memory cap within the node's.

    Under proctrack/cgroup (PROCTRACK=cgroup) SLURM sends the --signal only to the step's task, the job's
    Snakemake, which lets its running job go on (Slurm 22.05 here): there the first process stops by the
    time left that squeue states, at the same margin, and tells the other."""
    config = campaign.config(
        glue_dir,
        resources={"retries": 1, "gpus": 2, "threads": 2, "max_mem_mb": 8000},
        training={"save_minutes": 60},
        task_settings={"rte": {"max_length": 64, "max_train_samples": 1245, "distill": {"epochs": 1}}},
        teacher={"epochs": 1},
    )
    rules = campaign.root / "workflow" / "rules" / "common.smk"
    device = '"cuda" if SETTINGS.resources.gpus > 0 else "auto"'
    assert device in rules.read_text()
    rules.write_text(rules.read_text().replace(device, '"cpu"'))
    proc, output = campaign.run(
        config,
        "results/teacher/rte/seed0",
        "--set-resources",
        "finetune:runtime=15*attempt-10",
        "finetune:gpu=0",
    )
    assert proc.returncode == 0, output[-8000:]
    runtimes = [int(m) for m in re.findall(r"rule finetune:(?:.*\n)*?.*runtime=(\d+)", output)]
    assert runtimes == [5, 20], output[-8000:]
    # The scheduler's own log: the first job failed (signalled), its retry succeeded.
    jobs = list(submissions(output))
    ended = endings(jobs)
    assert len(jobs) == 2 and ended[jobs[0]][0] != "0" and ended[jobs[1]][0] == "0", ended
    first = campaign.first_finetune_log(tmp_path)
    stopped = re.findall(STOPPED, first)
    assert len(stopped) == 2 and len(set(stopped)) == 1, first[-3000:]  # both processes, the same step
    if "SIGTERM: checkpoint" in first:  # the signal came first: torchrun passed it on
        assert "Received 15 death signal, shutting down workers" in first, first[-3000:]
    log = (campaign.root / "logs" / "finetune" / "rte" / "seed0.log").read_text()
    resumed = re.findall(
        r"resuming from checkpoint results/teacher/rte/seed0\.checkpoints/checkpoint-(\d+)", log
    )
    assert resumed == [stopped[0]] * 2, log[-3000:]
    assert (campaign.root / "results" / "teacher" / "rte" / "seed0" / "model.safetensors").is_file()


def _proctrack() -> str:
    config = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True, check=True).stdout
    return re.search(r"ProctrackType\s*=\s*proctrack/(\w+)", config).group(1)


def test_an_orphan_of_a_step_dies_with_it_under_cgroup_only(slurm_cluster, slurm_user, tmp_path):
    """What process tracking does to a process that a step's main process leaves behind (a launcher's worker,
    a detached server): proctrack/cgroup kills it when the step ends, as production clusters do;
    linuxproc, which tracks by parent process, lets it escape (this cluster's default; PROCTRACK=cgroup
    ../shared/tools/local-slurm.sh after a stop switches)."""
    folder = Path(tempfile.mkdtemp(prefix="moebert-orphan-"))
    folder.chmod(0o777)
    pid_file = folder / "pid"
    step = f"setsid sleep 600 </dev/null >/dev/null 2>&1 & echo $! > {pid_file}"
    submitted = subprocess.run(
        ["runuser", "-u", slurm_user, "--", "sbatch", "--parsable", "-p", slurm_cluster, "-t", "2",
         "-o", str(folder / "job.out"), "--wrap", f"srun bash -c '{step}'"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    job = submitted.split(";")[0]
    for _ in range(120):
        queued = subprocess.run(["squeue", "-h", "-j", job], capture_output=True, text=True, check=False)
        if not queued.stdout.strip():
            break
        time.sleep(1)
    time.sleep(2)  # slurmstepd's cleanup of the step
    pid = int(pid_file.read_text())
    alive = Path(f"/proc/{pid}").exists()
    if alive:
        os.kill(pid, signal.SIGKILL)
    shutil.rmtree(folder, ignore_errors=True)
    tracking = _proctrack()
    print(f"proctrack/{tracking}: orphan {pid} of job {job} {'survived' if alive else 'killed'}")
    assert alive == (tracking == "linuxproc"), tracking
