"""A batch job's time limit, as its training sees it: stop with a checkpoint `signal_margin_s()` before it.

SLURM's `--signal=TERM@<margin>` (the profile asks for it) is not enough on its own: under
`ProctrackType=proctrack/cgroup` SLURM signals only the step's task, the job's own Snakemake, which stops
scheduling but does not pass the signal to the command it runs, so the training never hears it and is
killed at the limit. Training therefore also reads the job's time left from the scheduler and stops at the
same margin by itself; the signal remains the way to stop it early (scancel --signal=TERM, preemption).
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys

from moebert.errors import MoebertError

SIGNAL_MARGIN_S = 180
# squeue's %L: time left as [days-][hours:]minutes:seconds, or a word (UNLIMITED, NOT_SET, INVALID).
_LEFT = re.compile(r"^(?:(\d+)-)?(?:(\d+):)?(\d+):(\d+)$")


def signal_margin_s() -> int:
    """Seconds before its time limit at which a training job saves a checkpoint and stops (SLURM sends the
    step SIGTERM then, perhaps up to a minute earlier): MOEBERT_SLURM_SIGNAL_S, read by the workflow when it
    submits and by the job, which inherits the submitting environment."""
    text = os.environ.get("MOEBERT_SLURM_SIGNAL_S", str(SIGNAL_MARGIN_S))
    if not text.isdigit() or int(text) < 60:
        raise MoebertError(
            f"MOEBERT_SLURM_SIGNAL_S must be a whole number of seconds, at least 60; got {text!r}"
        )
    return int(text)


def parse_time_left(text: str) -> float | None:
    """Seconds of squeue's %L field: inf for a job without a limit, None where squeue cannot say."""
    if text.strip() == "UNLIMITED":
        return math.inf
    match = _LEFT.match(text.strip())
    if not match:
        return None
    days, hours, minutes, seconds = (int(part or 0) for part in match.groups())
    return ((days * 24 + hours) * 60 + minutes) * 60 + seconds


def _job() -> str | None:
    """This process's SLURM job as squeue names it: an array's task as <array>_<task>, since the array's
    first task shares its job id with the whole array, which squeue would list task by task."""
    array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    return f"{array}_{task}" if array and task else os.environ.get("SLURM_JOB_ID")


def seconds_left() -> float | None:
    """Seconds until this process's SLURM job reaches its time limit: inf outside a SLURM job or for a job
    without a limit; None when squeue does not answer (not known: the caller keeps what it knew)."""
    job = _job()
    if not job:
        return math.inf
    try:
        answer = subprocess.run(
            ["squeue", "--noheader", "--jobs", job, "--format", "%L"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError) as err:
        print(f"warning: no time limit read for SLURM job {job} ({err})", file=sys.stderr)
        return None
    lines = answer.split()
    return parse_time_left(lines[0]) if len(lines) == 1 else None
