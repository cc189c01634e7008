"""One controller at a time on a working directory.

Snakemake's lock keeps a second controller out while the first one lives, but not the jobs a dead one left
behind: a controller killed, or stopped by SIGTERM (Snakemake then submits nothing more and waits for its
running jobs, and SLURM kills it at its own time limit), leaves its cluster jobs running, and a new
controller cannot adopt them: it sees their outputs as incomplete and would submit the same jobs again, two
jobs writing one output. (Ctrl-C, SIGINT, makes Snakemake cancel its jobs with scancel instead.) So a
controller refuses to start while jobs an earlier controller submitted from the same working directory are
queued or running (squeue: the user's jobs whose working directory it is, Snakemake's by their `rule_...`
comment), naming them and the `scancel` line that ends them; `python workflow/lib/controller.py` waits for
them instead (the controller job's first step, README).
"""

from __future__ import annotations

import getpass
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

# squeue's fields: job id, working directory, comment (Snakemake's slurm executor comments each job with
# rule_<rule or group>...), state.
SQUEUE_FORMAT = "%i|%Z|%k|%T"
POLL_S = 60


def earlier_jobs(squeue_output: str, workdir: str | os.PathLike, own_job: str | None = None) -> list[str]:
    """The ids of the queued or running jobs of `squeue -h -o SQUEUE_FORMAT` that Snakemake submitted from
    `workdir`, leaving out the controller's own job (a controller running as a SLURM job)."""
    here = Path(workdir).resolve()
    found = []
    for line in squeue_output.splitlines():
        fields = line.strip().split("|")
        if len(fields) != 4:
            continue
        job, folder, comment, _state = fields
        if job != own_job and comment.startswith("rule_") and Path(folder).resolve() == here:
            found.append(job)
    return found


def squeue(user: str) -> str:
    return subprocess.run(
        ["squeue", "-h", "-u", user, "-o", SQUEUE_FORMAT], capture_output=True, text=True, check=True
    ).stdout


def refusal(workdir: str | os.PathLike, user: str, own_job: str | None, query=squeue) -> str | None:
    """Why a controller must not start here, or None. Where squeue cannot be asked (no SLURM client on this
    host, or its controller down), nothing is checked: the executor's own squeue status checks would fail the
    same way, so no job can be submitted twice from here."""
    try:
        queued = query(user)
    except (OSError, subprocess.CalledProcessError) as err:
        print(
            f"controller: squeue failed ({err}); not checking for an earlier controller's jobs",
            file=sys.stderr,
        )
        return None
    jobs = earlier_jobs(queued, workdir, own_job)
    if not jobs:
        return None
    return (
        f"{len(jobs)} cluster job(s) an earlier controller submitted from {Path(workdir).resolve()} are still "
        f"queued or running: {' '.join(jobs)}. This controller would submit them again. Wait for them to end "
        f"(python workflow/lib/controller.py waits), or stop them: scancel {' '.join(jobs)}"
    )


def wait_for_earlier_jobs(
    workdir: str | os.PathLike,
    user: str,
    own_job: str | None = None,
    query: Callable[[str], str] = squeue,
    sleep: Callable[[float], None] = time.sleep,
    say: Callable[[str], None] = print,
    poll_s: float = POLL_S,
) -> int:
    """Wait until no job an earlier controller submitted from `workdir` is queued or running; the number of
    polls that found some."""
    polls = 0
    while jobs := earlier_jobs(query(user), workdir, own_job):
        if polls == 0:
            say(f"waiting for the jobs an earlier controller left running here: {' '.join(jobs)}")
        polls += 1
        sleep(poll_s)
    return polls


def capped_threads(cores: int | None, threads: int) -> str | None:
    """Why a cluster controller must not start with `cores` (its --cores) when jobs want `threads`: Snakemake
    caps every job's threads at --cores, cluster jobs too, so `--cores all` inside a small controller job
    would starve every job it submits."""
    if cores is None or cores >= threads:
        return None
    return (
        f"--cores {cores} caps every cluster job's threads at {cores}, below the config's {threads} "
        f"(resources.threads, speed.threads): give --cores {threads} or more"
    )


if __name__ == "__main__":
    wait_for_earlier_jobs(Path.cwd(), getpass.getuser(), os.environ.get("SLURM_JOB_ID"))
