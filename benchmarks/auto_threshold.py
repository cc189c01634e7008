"""Where `auto` on a CPU should switch from padded_bmm to the eager loop: the MoE FFN layers of a
hash-routed MoEBERT alone (routing, grouping, GEMMs, LayerNorm; moebert.speed.bound.parts), with each of
the two implementations, at growing token counts. models/bert_experts.py's PADDED_BMM_MAX_ROWS is read
from this; medians of round-by-round ratios, the implementations taking turns every round.

    python benchmarks/auto_threshold.py --threads 2 --tokens 128 1024 2048 4096
"""

from __future__ import annotations

import argparse
import copy

import torch

from moebert.speed.bound import parts, time_parts
from moebert.speed.measure import dimensions, random_models

IMPLEMENTATIONS = ("eager", "padded_bmm")
EXPERTS = 4


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--dims", default="bert-base", help="a preset of benchmarks/moe_speed.py or a model dir"
    )
    parser.add_argument("--tokens", type=int, nargs="+", default=[128, 1024, 2048, 4096])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    built = random_models(
        dimensions(args.dims)[1], names=("moebert", "dense-narrow"), num_experts=EXPERTS, router="hash-random"
    )
    models = {}
    for name in IMPLEMENTATIONS:
        models[name] = copy.deepcopy(built["moebert"])
        models[name].set_experts_implementation(name)
    layers = len(built["moebert"].moe_layers())
    print(
        f"{args.dims}: {layers} MoE FFN layers, {EXPERTS} experts, hash-random, {args.threads} threads, "
        f"{args.rounds} rounds"
    )
    for tokens in args.tokens:
        timed = {
            name: run
            for name, run in parts(models, built["dense-narrow"], tokens, kernels=[]).items()
            if name.startswith("MoE layer ")
        }
        wide = time_parts(timed, args.rounds).pivot_table(index="repeat", columns="part", values="seconds")
        ms = {name: 1e3 * wide[f"MoE layer {name}"].median() for name in IMPLEMENTATIONS}
        ratio = (wide["MoE layer padded_bmm"] / wide["MoE layer eager"]).median()
        print(
            f"{tokens:6d} tokens ({tokens / EXPERTS:.0f} rows an expert on average): eager {ms['eager']:.1f} ms, "
            f"padded_bmm {ms['padded_bmm']:.1f} ms, padded_bmm / eager {ratio:.3f}"
        )


if __name__ == "__main__":
    main()
