"""How a job's command starts and where it logs: the MLflow options of a config's runs (store, experiment,
parent run, each job's name and tags) and the launcher of a multi-process training job.

The config hash and git commit are computed once per Snakemake process; the rules pass these options as
params that take `output`, so that a new commit or an edit elsewhere in the config does not make finished
jobs stale.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import sqlite3
import subprocess
from dataclasses import dataclass

import moebert.config
from moebert import tracking
from moebert.config import Settings
from moebert.tracking import sqlite_path

DEFAULT_TRACKING_URI = "sqlite:///results/mlflow/mlflow.db"


def config_hash(settings: Settings) -> str:
    """Short hash of the validated config (defaults included; keys that only add outputs left out): which
    config produced a run."""
    return moebert.config.config_hash(settings.resolved)


def git_commit(repository: str) -> str:
    """HEAD of the repository, with -dirty when tracked files have uncommitted changes."""

    def git(*args):
        return subprocess.run(["git", "-C", repository, *args], capture_output=True, text=True, check=False)

    head = git("rev-parse", "--short=12", "HEAD")
    if head.returncode:
        return "unknown"
    dirty = git("status", "--porcelain", "--untracked-files=no").stdout.strip()
    return head.stdout.strip() + ("-dirty" if dirty else "")


@dataclass(frozen=True)
class Tracking:
    """The MLflow store, experiment and parent run of one config's jobs."""

    uri: str
    named: bool  # the config or the environment names the store (else the sqlite default)
    experiment: str
    config_hash: str
    git_commit: str

    @classmethod
    def of(cls, settings: Settings, repository: str) -> Tracking:
        named = settings.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
        return cls(
            named or DEFAULT_TRACKING_URI,
            bool(named),
            settings.experiment,
            config_hash(settings),
            git_commit(repository),
        )

    def store_options(self) -> str:
        """Where every run of this config goes: the store, the experiment and the parent run."""
        return (
            f"--tracking-uri {shlex.quote(self.uri)} --experiment {self.experiment}"
            f" --parent-run {self.experiment}-{self.config_hash}"
        )

    def job_options(self, rule: str, task: str, method: str, seed: str) -> str:
        """The MLflow options of one job: the store's, its run name and its tags."""
        tags = {
            "task": task,
            "method": method,
            "seed": seed,
            "rule": rule,
            "config_hash": self.config_hash,
            "git_commit": self.git_commit,
        }
        return " ".join(
            [
                self.store_options(),
                f"--run-name {rule}-{task}-{method}-seed{seed}",
                *(f"--tag {shlex.quote(f'{k}={v}')}" for k, v in tags.items()),
            ]
        )

    def refusal(self, cluster: bool, executor: str) -> str | None:
        """Why a run must not start: a sqlite store whose artifacts live in another directory
        (`_foreign_store`); a tracking server that does not answer (every job would fail at its start);
        cluster jobs on many nodes must not all write the default sqlite file on the shared file system (its
        locks are unreliable there, and every logging call of every job waits on them). A store the config or
        the environment names is used as given."""
        if foreign := _foreign_store(self.uri):
            return foreign
        if down := tracking.unreachable(self.uri):
            return down
        if not cluster or self.named:
            return None
        return (
            f"tracking: the {executor} executor's jobs would all log to the sqlite file {DEFAULT_TRACKING_URI} "
            "on the shared file system. Start a tracking server on this host, in tmux: "
            "scripts/mlflow-server.sh, run the `export MLFLOW_TRACKING_URI=...` line it prints, and start "
            f"snakemake again from that shell. Or keep sqlite with `tracking_uri: {DEFAULT_TRACKING_URI}` in "
            "the config, or `tracking_uri: off`."
        )


def _foreign_store(uri: str) -> str | None:
    """Why a sqlite store must not be written: MLflow records every experiment's artifact location as an
    absolute path, so a store copied or moved from another directory (a copied project) would write its new
    runs' files into that directory. The jobs put a sqlite store's artifacts beside it (`artifacts/`); an
    experiment elsewhere is refused by name. A store not yet made, or not a sqlite file, is fine."""
    db = sqlite_path(uri)
    if db is None or not db.is_file():
        return None
    expected = (db.parent / "artifacts").resolve().as_uri()
    try:
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as connection:
            rows = connection.execute("SELECT name, artifact_location FROM experiments").fetchall()
    except sqlite3.Error:
        return None  # not (yet) an MLflow store: MLflow says what is wrong with it
    elsewhere = [
        (name, location)
        for name, location in rows
        if location
        and location.startswith("file:")
        and location.rstrip("/") != expected
        and not location.startswith(expected + "/")
    ]
    if not elsewhere:
        return None
    name, location = elsewhere[0]
    return (
        f"tracking: the MLflow store {db} keeps the files of experiment {name!r} in {location}, not beside it in "
        f"{expected}: it was copied or moved from another directory, and MLflow records absolute artifact "
        "locations, so this project's runs would write into that one. Move it aside to start a store here "
        f"(mv {db.parent} {db.parent}.moved), or log to the original store with `tracking_uri:` in the config."
    )


def launcher(processes: int, threads: int, grace_s: int) -> str:
    """How a training job starts the CLI: with several GPUs, one process each through `accelerate launch`,
    which shares the config's total batch among them (the CLI divides it). Each process gets its share of
    the job's cores (Snakemake's OMP_NUM_THREADS is the whole count), and a free port: two jobs on one node
    would otherwise both take 29500.

    --multi_gpu starts the processes through torchrun whatever devices the node has: left to detect them,
    accelerate starts a single process where it sees fewer than two GPUs. torchrun forwards SIGTERM to its
    processes and kills them `TORCH_ELASTIC_SHUTDOWN_TIMEOUT` seconds later (30 by default, shorter than a
    large model's checkpoint on a slow file system): `grace_s`, the job's SIGTERM margin, lets their save
    run until SLURM's own kill at the time limit."""
    if processes == 1:
        return "moebert"
    return (
        f"TORCH_ELASTIC_SHUTDOWN_TIMEOUT={grace_s} accelerate launch --multi_gpu"
        f" --num_processes {processes} --num_machines 1 --main_process_port 0"
        f" --num_cpu_threads_per_process {max(1, threads // processes)}"
        " --mixed_precision no --dynamo_backend no -m moebert.cli"
    )
