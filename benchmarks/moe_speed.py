"""MoE inference speed against dense BERT, the dense-narrow control and the reference-style forward, as the
ratios the targets are stated in (BERT-base dims, 4 experts of 768 sharing 512 neurons, hash routing,
length 128): every experts implementation (transformers' experts interface: eager, batched_mm, grouped_mm)
and both layouts of the shared neurons (copied into every expert, the paper's; tied: stored once, run as one
dense FFN beside the routed private neurons).

The models run in turn within every round, so each ratio is also taken round by round between neighbouring
runs; the table gives the ratio of the medians, the median and quartiles of those paired ratios (their
spread says how far to trust the ratio on a shared machine) and the ratio of the fastest runs (what the
machine gives without other load). The load average before and after is printed, since other processes
skew every timing. batched_mm copies every token's expert weights, so it is timed only where that copy
stays under --batched-mm-limit-gb.

The bound (moebert.speed.bound), measured in the same run after each batch size's models: the experts'
GEMMs alone (fc1 -> act -> fc2 per expert on the model's routes, with every kernel: the eager loop of
matmul pairs, torch's grouped GEMM where it runs on the device, the padded batched GEMM) against
dense-narrow's FFN GEMM pair on the same tokens, and beside them the whole MoE FFN layer with every experts
implementation against dense-narrow's FFN layer. Its table gives per batch size the best kernel's ratio (the
bound), the best layer's and the whole model's ratio to dense-narrow, and how far the layer is above the
bound. Writes CSV and JSON.

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
from moebert.models.bert_experts import IMPLEMENTATIONS
from moebert.speed.bound import KERNELS, bound_table, grouped_mm_available, parts, time_parts
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

MOE, TIED = "moebert", "moebert-tied"
REFERENCE = MOE + REFERENCE_SUFFIX
# Rounds per batch size: small batches are cheap and noisier, so they get more.
ROUNDS = {1: 40, 8: 15, 32: 9, 128: 5}


def label(layout: str, implementation: str) -> str:
    return f"{layout}[{implementation}]"


def targets(implementations) -> list[tuple]:
    """(name, numerator, denominator, batch sizes, target): ratio = latency(numerator) / latency(denominator)."""
    rows = []
    for implementation in implementations:
        for layout in (MOE, TIED):
            rows.append(
                ("latency vs dense-narrow", label(layout, implementation), "dense-narrow", "all", None)
            )
    rows += [
        ("tied vs dense-narrow", label(TIED, "{best}"), "dense-narrow", [1], "<= 1.05"),
        ("tied vs copied", label(TIED, "{best}"), label(MOE, "{best}"), "all", None),
        ("speed-up over BERT-base", "teacher", label(MOE, "{best}"), [32], ">= 1.8"),
        ("speed-up over reference-style", REFERENCE, label(MOE, "{best}"), "all", ">= 1.0"),
        # No target: a forward no faster than dense-narrow (the limit) gains at most this over the reference.
        ("bound on that speed-up", REFERENCE, "dense-narrow", "all", None),
    ]
    return rows


def ratios(timings: pd.DataFrame, batch_sizes, implementations) -> pd.DataFrame:
    wide = timings.pivot_table(index=["batch_size", "repeat"], columns="model", values="seconds")
    rows = []
    for name, num, den, batches, target in targets(implementations):
        for batch in batch_sizes if batches == "all" else [b for b in batches if b in batch_sizes]:
            runs = wide.loc[batch]
            # {best}: the fastest implementation of that layout at this batch size (the default to choose).
            best = {
                f"{layout}[{{best}}]": min(
                    (c for c in runs if c.startswith(layout + "[") and runs[c].notna().all()),
                    key=lambda c: runs[c].median(),
                )
                for layout in (MOE, TIED)
            }
            num_, den_ = best.get(num, num), best.get(den, den)
            if num_ not in runs or den_ not in runs or runs[num_].isna().any():
                continue  # batched_mm beyond its memory limit
            paired = runs[num_] / runs[den_]
            value = runs[num_].median() / runs[den_].median()
            met = None
            if target is not None:
                bound = float(target.split()[1])
                met = value >= bound if target.startswith(">=") else value <= bound
            rows.append(
                {
                    "ratio": f"{name} ({num_} / {den_})",
                    "batch": batch,
                    "target": target or "-",
                    "ratio_of_medians": value,
                    "paired_median": paired.median(),
                    "paired_q1": paired.quantile(0.25),
                    "paired_q3": paired.quantile(0.75),
                    "ratio_of_mins": runs[num_].min() / runs[den_].min(),
                    "rounds": len(runs),
                    "met": "-" if met is None else met,
                }
            )
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dims", default="bert-base", help=f"a preset ({', '.join(PRESETS)}) or a model dir")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 32, 128])
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--rounds", type=int, help=f"rounds for every batch size (default: {ROUNDS})")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--implementations", nargs="+", choices=IMPLEMENTATIONS, default=list(IMPLEMENTATIONS)
    )
    parser.add_argument(
        "--batched-mm-limit-gb",
        type=float,
        default=2.0,
        help="time batched_mm only where its copy of the tokens' expert weights stays below this",
    )
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    parser.add_argument(
        "--device", default="cpu", help="cpu or cuda (synchronised around every timed forward)"
    )
    parser.add_argument("--out", default="results/benchmarks/moe_speed")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()

    built = random_models(dimensions(args.dims)[1], num_experts=4, router="hash-random")
    dtype = getattr(torch, args.dtype)
    width, hidden = built[MOE].config.expert_dim, built[MOE].config.hidden_size
    kernels = [
        k for k in KERNELS if k != "grouped_mm" or grouped_mm_available(torch.device(args.device), dtype)
    ]
    # The bound's kernels are the pair contract's GEMMs (fc1 -> act -> fc2); a GLU's are not written here.
    bounded = built[MOE].backbone.contract.name == "pair"
    timings, part_timings = [], []
    with contextlib.ExitStack() as stack:
        base = {name: built[name] for name in ("teacher", "dense-narrow")}
        for layout in (MOE, TIED):
            for implementation in args.implementations:
                model = copy.deepcopy(built[layout])
                model.set_experts_implementation(implementation)
                base[label(layout, implementation)] = model
        base[REFERENCE] = stack.enter_context(reference_style(copy.deepcopy(built[MOE])))
        for model in base.values():
            model.to(device=args.device, dtype=dtype)
        for batch in args.batch_sizes:
            copy_gb = batch * args.seq_len * hidden * width * dtype.itemsize / 2**30
            models = {
                name: model
                for name, model in base.items()
                if "[batched_mm]" not in name or copy_gb <= args.batched_mm_limit_gb
            }
            rounds = args.rounds or ROUNDS.get(batch, 5)
            timings.append(
                measure(models, [batch], [args.seq_len], repeats=rounds, warmup=1, device=args.device)
            )
            moe = {
                name[len(MOE) + 1 : -1]: model for name, model in models.items() if name.startswith(MOE + "[")
            }
            if bounded:
                timed = parts(moe, base["dense-narrow"], batch * args.seq_len, kernels, args.device)
                part_timings.append(time_parts(timed, rounds, device=args.device).assign(batch_size=batch))
    timings = pd.concat(timings, ignore_index=True)
    latency = summarise(timings)
    quartiles = timings.assign(ms=timings.seconds * 1e3).groupby(["model", "batch_size"]).ms
    for name, q in (("latency_ms_q1", 0.25), ("latency_ms_q3", 0.75)):
        latency = latency.merge(quartiles.quantile(q).rename(name).reset_index(), on=["model", "batch_size"])
    table = ratios(timings, args.batch_sizes, args.implementations)
    model_ratios = {
        batch: frame.paired_median.min()
        for batch, frame in table[table.ratio.str.startswith(f"latency vs dense-narrow ({MOE}[")].groupby(
            "batch"
        )
    }
    bound = bound_table(pd.concat(part_timings, ignore_index=True), model_ratios) if bounded else None
    hw = hardware(torch.device(args.device))
    hw["load_average_1_5_15min"] = {"before": load_before, "after": os.getloadavg()}

    pd.set_option("display.width", 200)
    where = hw.get("gpu") or f"{hw['threads']} threads, {hw['cpu']}"
    print(
        f"{args.dims} dims, 4 experts of {width} sharing {built[MOE].config.shared_dim}, hash-random, length "
        f"{args.seq_len}, {args.dtype}, {where}; load average before {load_before[0]:.2f}, after "
        f"{os.getloadavg()[0]:.2f}"
    )
    columns = [
        "model",
        "batch_size",
        "repeats",
        "latency_ms_median",
        "latency_ms_q1",
        "latency_ms_q3",
        "latency_ms_min",
    ]
    print(latency[columns].to_string(index=False, float_format=lambda v: f"{v:.1f}"))
    print()
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print()
    frames = {"": table, "_latency": latency}
    if bounded:
        print(
            f"The bound ({MOE}, copied layout): experts' GEMMs / dense-narrow's FFN GEMMs per kernel, the best "
            "kernel's; MoE FFN layer / dense-narrow's per implementation, the best; the model's best ratio; "
            "the best layer's distance above the bound"
        )
        print(bound.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
        frames["_bound"] = bound
    else:
        print(f"No bound: its kernels are the post-norm pair's GEMMs, and {args.dims} has a GLU FFN.")
    for suffix, frame in frames.items():
        with atomic_file(f"{args.out}{suffix}.csv") as tmp:
            frame.round(4).to_csv(tmp, index=False)
    write_json(
        f"{args.out}.json",
        {
            "hardware": hw,
            "settings": vars(args),
            "ratios": table.to_dict(orient="records"),
            "latency": latency.to_dict(orient="records"),
            "bound": bound.to_dict(orient="records") if bounded else None,
            "timings": timings.to_dict(orient="records"),
            "bound_timings": pd.concat(part_timings).to_dict(orient="records") if bounded else None,
        },
    )


if __name__ == "__main__":
    main()
