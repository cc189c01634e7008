"""`moebert plan`: every job of a config estimated on every device kind, before anything runs (run it where
you run snakemake: the repository root). The jobs and their estimates come from a dry run of the workflow."""

from __future__ import annotations

import argparse
import os

from moebert.files import atomic_file

HELP = "estimate every job of a config (device-hours per device kind) before it runs"


def add_arguments(parser) -> None:
    parser.add_argument(
        "--configfile", help="workflow config (default: the laptop default, config/config.yaml)"
    )
    parser.add_argument(
        "--all", action="store_true", help="every job of the config, also those whose outputs exist"
    )
    parser.add_argument(
        "--throughput",
        default="config/throughput.yaml",
        help="the workflow's device speeds, whose cpu row is compared with this machine's CPU",
    )
    parser.add_argument(
        "--cores", type=int, default=os.cpu_count(), help="cores of a local run, for its wall time"
    )
    parser.add_argument("--output", help="CSV with every job's estimate")
    parser.add_argument("snakemake", nargs=argparse.REMAINDER, help="after --: further snakemake options")


def run(args) -> None:
    import pandas as pd

    from moebert import plan
    from moebert.cost import load_speeds
    from moebert.dag import dry_run

    extra = args.snakemake[1:] if args.snakemake[:1] == ["--"] else args.snakemake
    jobs = dry_run(
        [
            "--cores",
            "all",
            *(["--configfile", args.configfile] if args.configfile else []),
            *(["--forceall"] if args.all else []),
            *extra,
        ]
    )
    estimates = [plan.estimate(job) for job in jobs]
    if not estimates:
        print("nothing to run (--all estimates every job of the config)")
        return
    kinds = sorted({kind for e in estimates for kind in e.seconds}, key=lambda kind: (kind != "cpu", kind))
    print(plan.plan_table(estimates, kinds, args.cores))
    if any(e.gpus == 0 for e in estimates) and (
        note := plan.other_machine_note(load_speeds(args.throughput), args.throughput)
    ):
        print(note)
    if args.output:
        rows = [
            {
                "rule": e.rule,
                **e.wildcards,
                "gpus": e.gpus,
                "threads": e.threads,
                "requested_min": e.requested_min,
                "checkpoint_mb": e.checkpoint_mb,
                "train_steps": e.train_steps,
                **{f"{kind}_s": round(s, 1) for kind, s in e.seconds.items()},
                **{f"{kind}_checkpoints": plan.checkpoints(e, kind) for kind in e.seconds},
            }
            for e in estimates
        ]
        with atomic_file(args.output) as tmp:
            pd.DataFrame(rows).to_csv(tmp, index=False)
        print(f"every job: {args.output}")
