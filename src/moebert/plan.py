"""`moebert plan`: every job of a config, estimated before it runs.

The jobs come from a Snakemake dry run of the workflow, through Snakemake's API (`moebert.dag`); each
carries the resources the workflow asks for it: GPUs, threads, the runtime it requests and
`estimate_s_<kind>`, its expected wall seconds on every device kind that could run it (`cpu`, or each GPU
kind of the throughput table; the cost model, `moebert.cost`, applied by workflow/lib/jobs.py). This module adds them up:
device-hours per rule and kind, the hours requested, and for a CPU-only config the wall time of a local run
on a given number of cores.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from moebert.cost import DeviceSpeed
from moebert.dag import Job
from moebert.errors import MoebertError


@dataclass(frozen=True)
class JobEstimate:
    rule: str
    wildcards: dict
    gpus: int
    threads: int
    requested_min: int  # the runtime the workflow asks the scheduler for
    seconds: dict  # device kind -> estimated seconds of the job on it
    inputs: tuple = ()
    outputs: tuple = ()
    checkpoint_mb: int = 0  # one checkpoint of a training job (0: the job writes none)
    train_steps: int = 0
    save_s: int = 0  # seconds of training between checkpoints (0: every step)
    signal_s: int = 0  # seconds between SIGTERM and the time limit (a training job's last checkpoint)
    group: str | None = None  # the group job it is submitted in, if any
    local: bool = False  # run by the submit host: never submitted


ESTIMATE = "estimate_s_"  # + device kind: the resource holding a job's estimated seconds on that kind


def estimate(job: Job) -> JobEstimate:
    """A dry-run job with the estimate the workflow attached to it."""
    # 0: a kind that cannot run the job (a GPU job has no cpu estimate); every real estimate is at least a second.
    seconds = {
        key.removeprefix(ESTIMATE): float(value)
        for key, value in job.resources.items()
        if key.startswith(ESTIMATE) and value
    }
    if not seconds:
        raise MoebertError(
            f"plan: job {job.rule} {job.wildcards} carries no {ESTIMATE}<kind> resource; every rule "
            f"of the workflow must size itself with workflow/lib/jobs.py"
        )
    return JobEstimate(
        job.rule,
        job.wildcards,
        int(job.resources.get("gpu", 0)),
        job.threads,
        int(job.resources.get("runtime", 0)),
        seconds,
        tuple(job.input),
        tuple(job.output),
        int(job.resources.get("checkpoint_mb", 0)),
        int(job.resources.get("train_steps", 0)),
        int(job.resources.get("save_s", 0)),
        int(job.resources.get("signal_s", 0)),
        job.group,
        bool(job.resources.get("local", 0)),
    )


def checkpoints(job: JobEstimate, kind: str) -> int:
    """Checkpoints a training job writes on `kind`: one per `save_s` of its estimated time there (every step
    with save_s 0), never more than its steps. The SIGTERM one before a time limit replaces a due one."""
    if not job.checkpoint_mb or kind not in job.seconds:
        return 0
    if not job.save_s:
        return job.train_steps
    return min(job.train_steps, int(job.seconds[kind] // job.save_s))


def device_hours(job: JobEstimate, kind: str) -> float:
    """Hours the job holds devices of `kind`: GPUs x wall time, or CPU threads x wall time."""
    return job.seconds.get(kind, 0.0) * (job.gpus or job.threads) / 3600


SHORT_S = 600  # a submission with less work than this waits in the queue for longer than it runs


def submissions(estimates: list[JobEstimate]) -> list[list[JobEstimate]]:
    """The cluster submissions: each group job, and each job in none; local rules are none."""
    grouped: dict[str, list[JobEstimate]] = {}
    alone = []
    for e in estimates:
        if e.local:
            continue
        if e.group is None:
            alone.append([e])
        else:
            grouped.setdefault(e.group, []).append(e)
    return [*grouped.values(), *alone]


def submission_seconds(members: list[JobEstimate], kind: str) -> float:
    """A submission's estimated work on GPU kind `kind` (its CPU jobs on cpu), its members one after another."""
    return sum(e.seconds.get(kind, e.seconds.get("cpu", 0.0)) for e in members)


def local_wall_s(estimates: list[JobEstimate], cores: int) -> float:
    """Wall time of a local run on `cores` cores: every job starts as soon as the jobs making its inputs
    have finished and it has its threads free (a greedy schedule, as Snakemake's is for these DAGs). Ready
    jobs start longest first: Snakemake prints a dry run's jobs in no fixed order, and the estimate must not
    follow it."""
    producer = {path: i for i, e in enumerate(estimates) for path in e.outputs}
    needs = [{producer[path] for path in e.inputs if path in producer} for e in estimates]
    finished, running = set(), []
    pending = sorted(
        range(len(estimates)),
        key=lambda i: (
            -estimates[i].seconds["cpu"],
            estimates[i].rule,
            sorted(estimates[i].wildcards.items()),
        ),
    )
    now, free = 0.0, cores
    while pending or running:
        for i in list(pending):
            threads = min(estimates[i].threads, cores)
            if needs[i] <= finished and threads <= free:
                running.append((now + estimates[i].seconds["cpu"], i, threads))
                pending.remove(i)
                free -= threads
        if not running:
            raise MoebertError("plan: the dry run's jobs wait on each other (no job can start)")
        running.sort()
        now, i, threads = running.pop(0)
        finished.add(i)
        free += threads
    return now


def other_machine_note(speeds: dict[str, DeviceSpeed], table: str | os.PathLike) -> str | None:
    """A warning when the table's cpu row was measured on another CPU model than this machine's: CPU speeds
    differ by several times between models (MiniLM's training step: 0.081 TFLOP/s a thread on one Xeon,
    0.027 on one EPYC), so the CPU estimates are this machine's only once its own row is measured. The row's
    CPU is the one benchmarks/throughput.py names in its source ('... on <CPU> (<date>)')."""
    from moebert.device import cpu_model

    if "cpu" not in speeds:
        return None
    measured = re.search(r" on (.+) \(\d{4}-\d{2}-\d{2}\)$", speeds["cpu"].source)
    here = cpu_model()
    if measured and measured.group(1) == here:
        return None
    return (
        f"note: the cpu row of {table} was not measured on this machine's CPU ('{here}'; the row: "
        f"{speeds['cpu'].source}). For estimates of this machine: python benchmarks/throughput.py --device cpu "
        f"--kind cpu --update"
    )


def plan_table(estimates: list[JobEstimate], kinds: list[str], cores: int) -> str:
    """Per rule: jobs, GPUs per job, estimated device-hours on each kind, and the hours requested; then the
    totals, and for a CPU-only plan the wall time of a local run on `cores` cores."""
    rules = sorted({e.rule for e in estimates}, key=[e.rule for e in estimates].index)
    header = ["rule", "jobs", "GPUs/job", *(f"{k} h" for k in kinds), "requested h"]
    lines = [header]
    for rule in rules:
        mine = [e for e in estimates if e.rule == rule]
        lines.append(
            [
                rule,
                str(len(mine)),
                "/".join(map(str, sorted({e.gpus for e in mine}))),
                *(f"{sum(device_hours(e, k) for e in mine):.2f}" for k in kinds),
                f"{sum(e.requested_min * max(e.gpus, 1) for e in mine) / 60:.1f}",
            ]
        )
    lines.append(
        [
            "total",
            str(len(estimates)),
            "",
            *(f"{sum(device_hours(e, k) for e in estimates):.2f}" for k in kinds),
            f"{sum(e.requested_min * max(e.gpus, 1) for e in estimates) / 60:.1f}",
        ]
    )
    widths = [max(len(row[i]) for row in lines) for i in range(len(header))]
    text = "\n".join(
        "  ".join(cell.rjust(w) if i else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths)))
        for row in lines
    )
    notes = [
        (
            "GPU jobs are estimated on every GPU kind of the table, CPU jobs on cpu (core-hours); 'requested h' "
            "is what the jobs ask the scheduler for (GPU-hours for GPU jobs, with the safety factor)."
        )
    ]
    if any(e.checkpoint_mb for e in estimates):
        volumes = ", ".join(
            f"{sum(checkpoints(e, k) for e in estimates)} checkpoints, "
            f"{sum(checkpoints(e, k) * e.checkpoint_mb for e in estimates) / 1024:.1f} GB written on {k}"
            for k in kinds
            if any(e.checkpoint_mb and k in e.seconds for e in estimates)
        )
        notes.append(f"Training checkpoints (weights and Adam moments, one kept per job): {volumes}.")
        largest = max((e for e in estimates if e.checkpoint_mb), key=lambda e: e.checkpoint_mb)
        if largest.signal_s:
            notes.append(
                f"The largest checkpoint ({largest.checkpoint_mb} MB, {largest.rule}) must be written within "
                f"the {largest.signal_s} s between SIGTERM and the time limit: at least "
                f"{largest.checkpoint_mb / largest.signal_s:.0f} MB/s on the results file system."
            )
    if (cluster := submissions(estimates)) and any(e.group for e in estimates):
        short = (
            ", ".join(
                f"{sum(submission_seconds(s, k) < SHORT_S for s in cluster)} on {k}"
                for k in kinds
                if k != "cpu"
            )
            or f"{sum(submission_seconds(s, 'cpu') < SHORT_S for s in cluster)} on cpu"
        )
        notes.append(
            f"Cluster submissions (group jobs and single jobs): {len(cluster)}; with under "
            f"{SHORT_S // 60} minutes of estimated work: {short}."
        )
    if all(e.gpus == 0 for e in estimates):
        notes.append(
            f"A local run on {cores} cores: about {local_wall_s(estimates, cores) / 60:.0f} min "
            f"(its jobs scheduled as their inputs and cores allow)."
        )
    return text + "\n\n" + "\n".join(notes)
