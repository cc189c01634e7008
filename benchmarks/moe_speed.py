"""MoE inference speed: the fast forward against dense BERT, the dense-narrow control and the reference-style
forward, as the ratios the targets are stated in (BERT-base dims, 4 experts of 768, hash routing, length 128).

The four models run in turn within every round, so each ratio is also taken round by round between
neighbouring runs; the table gives the ratio of the medians, the median and quartiles of those paired
ratios (their spread says how far to trust the ratio on a shared machine) and the ratio of the fastest
runs (what the machine gives without other load). The load average before and after is printed, since
other processes skew every timing. Writes CSV and JSON.

    python benchmarks/moe_speed.py --threads 2
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import os

import pandas as pd
import torch

from moebert.files import atomic_file, write_json
from moebert.speed.measure import (
    PRESETS,
    REFERENCE_SUFFIX,
    dimensions,
    hardware,
    measure,
    random_models,
    summarise,
)
from moebert.speed.reference_style import reference_style

MOE, REFERENCE = "moebert", "moebert" + REFERENCE_SUFFIX
# Rounds per batch size: small batches are cheap and noisier, so they get more.
ROUNDS = {1: 40, 8: 15, 32: 9, 128: 5}
# (name, numerator, denominator, batch sizes, target): ratio = latency(numerator) / latency(denominator).
TARGETS = [
    ("speed-up over BERT-base", "teacher", MOE, [32], ">= 1.8"),
    ("latency vs dense-narrow", MOE, "dense-narrow", [32], "<= 1.05"),
    ("latency vs dense-narrow", MOE, "dense-narrow", [1], "<= 1.15"),
    ("speed-up over reference-style", REFERENCE, MOE, [32], ">= 1.1"),
    ("speed-up over reference-style", REFERENCE, MOE, "all", ">= 1.0"),
    # No target: a forward no faster than dense-narrow (the limit) gains at most this over the reference.
    ("bound on that speed-up", REFERENCE, "dense-narrow", "all", None),
]


def ratios(timings: pd.DataFrame, batch_sizes) -> pd.DataFrame:
    wide = timings.pivot_table(index=["batch_size", "repeat"], columns="model", values="seconds")
    rows = []
    for name, num, den, batches, target in TARGETS:
        for batch in batch_sizes if batches == "all" else [b for b in batches if b in batch_sizes]:
            runs = wide.loc[batch]
            paired = runs[num] / runs[den]
            value = runs[num].median() / runs[den].median()
            if target is None:
                met = None
            else:
                bound = float(target.split()[1])
                met = value >= bound if target.startswith(">=") else value <= bound
            rows.append(
                {
                    "ratio": f"{name} ({num} / {den})",
                    "batch": batch,
                    "target": target or "-",
                    "ratio_of_medians": value,
                    "paired_median": paired.median(),
                    "paired_q1": paired.quantile(0.25),
                    "paired_q3": paired.quantile(0.75),
                    "ratio_of_mins": runs[num].min() / runs[den].min(),
                    "rounds": len(runs),
                    "met": "-" if met is None else met,
                }
            )
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dims", default="bert-base", help=f"a preset ({', '.join(PRESETS)}) or a model dir")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 32, 128])
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--rounds", type=int, help=f"rounds for every batch size (default: {ROUNDS})")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="results/benchmarks/moe_speed")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()

    models = random_models(dimensions(args.dims)[1], num_experts=4, router="hash-random")
    timings = []
    with contextlib.ExitStack() as stack:
        models[REFERENCE] = stack.enter_context(reference_style(copy.deepcopy(models[MOE])))
        for batch in args.batch_sizes:
            rounds = args.rounds or ROUNDS.get(batch, 5)
            timings.append(measure(models, [batch], [args.seq_len], repeats=rounds, warmup=1))
    timings = pd.concat(timings, ignore_index=True)
    latency = summarise(timings)
    quartiles = timings.assign(ms=timings.seconds * 1e3).groupby(["model", "batch_size"]).ms
    latency = latency.merge(
        quartiles.quantile(0.25).rename("latency_ms_q1").reset_index(), on=["model", "batch_size"]
    )
    latency = latency.merge(
        quartiles.quantile(0.75).rename("latency_ms_q3").reset_index(), on=["model", "batch_size"]
    )
    table = ratios(timings, args.batch_sizes)
    hw = hardware(torch.device("cpu"))
    hw["load_average_1_5_15min"] = {"before": load_before, "after": os.getloadavg()}

    pd.set_option("display.width", 160)
    print(
        f"{args.dims} dims, 4 experts, hash-random, length {args.seq_len}, {hw['threads']} threads, {hw['cpu']}; "
        f"load average before {load_before[0]:.2f}, after {os.getloadavg()[0]:.2f}"
    )
    print(
        latency[
            [
                "model",
                "batch_size",
                "repeats",
                "latency_ms_median",
                "latency_ms_q1",
                "latency_ms_q3",
                "latency_ms_min",
            ]
        ].to_string(index=False, float_format=lambda v: f"{v:.1f}")
    )
    print()
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    for suffix, frame in (("", table), ("_latency", latency)):
        with atomic_file(f"{args.out}{suffix}.csv") as tmp:
            frame.round(4).to_csv(tmp, index=False)
    write_json(
        f"{args.out}.json",
        {
            "hardware": hw,
            "settings": vars(args),
            "ratios": table.to_dict(orient="records"),
            "latency": latency.to_dict(orient="records"),
            "timings": timings.to_dict(orient="records"),
        },
    )


if __name__ == "__main__":
    main()
