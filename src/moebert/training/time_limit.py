"""A batch job's time limit, as its training sees it: stop with a checkpoint `signal_margin_s()` before it.

SLURM's `--signal=TERM@<margin>` (the profile asks for it) is not enough on its own: under
`ProctrackType=proctrack/cgroup` SLURM signals only the step's task, the job's own Snakemake, which stops
scheduling but does not pass the signal to the command it runs, so the training never hears it and is
killed at the limit. Training therefore also reads the job's time left from the scheduler and stops at the
same margin by itself; the signal remains the way to stop it early (scancel --signal=TERM, preemption).
"""

from __future__ import annotations

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


def parse_time_left(text: str) -> int | None:
    """Seconds of squeue's %L field; None for a job without a limit (or one squeue cannot say)."""
    match = _LEFT.match(text.strip())
    if not match:
        return None
    days, hours, minutes, seconds = (int(part or 0) for part in match.groups())
    return ((days * 24 + hours) * 60 + minutes) * 60 + seconds


def seconds_left() -> int | None:
    """Seconds until this process's SLURM job reaches its time limit; None outside a SLURM job, for a job
    without a limit, or when squeue does not answer (then only the signal can stop the training early)."""
    job = os.environ.get("SLURM_JOB_ID")
    if not job:
        return None
    try:
        answer = subprocess.run(
            ["squeue", "--noheader", "--jobs", job, "--format", "%L"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError) as err:
        print(f"warning: no time limit read for SLURM job {job} ({err}); SIGTERM only", file=sys.stderr)
        return None
    return parse_time_left(answer.splitlines()[0]) if answer.strip() else None
