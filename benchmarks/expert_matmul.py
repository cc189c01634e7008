"""What bounds the MoE forward at small batches: the expert matmuls alone, against the dense-narrow FFN's.

Both do the same multiply-adds per token (BERT-base hidden 768, experts of 768). The dense FFN runs two
[tokens, 768] x [768, 768] matmuls; the MoE runs them per expert on a quarter of the tokens, as one
batched matmul over the experts (MoEFFN's padded layout, small batches) or one matmul per expert (its
usual layout), and reads four experts' weights instead of one. Weights are timed cold (12 layers of them
cycled, as a forward reads them, more than fit the cache) and hot (the same layer twice running).
`torch._grouped_mm` (all groups in one call, their bounds a device tensor) is timed beside them: on CPU it
runs as fast as one matmul per expert and no faster (2 threads of an AMD EPYC: 1.32x, 1.04x, 1.01x the
dense FFN at 128, 1024, 4096 tokens, one matmul each 1.31x, 1.01x, 1.00x), so MoEFFN does not use it there.

    python benchmarks/expert_matmul.py --threads 2
"""

from __future__ import annotations

import argparse
import time

import pandas as pd
import torch

from moebert.files import atomic_file, write_json
from moebert.speed.measure import hardware

HIDDEN = WIDTH = 768
EXPERTS, LAYERS = 4, 12


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--tokens",
        type=int,
        nargs="+",
        default=[128, 1024, 4096],
        help="tokens per forward (batch x length: 128 = batch 1 at length 128)",
    )
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="results/benchmarks/expert_matmul")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    dense = [
        (torch.randn(HIDDEN, WIDTH, generator=gen), torch.randn(WIDTH, HIDDEN, generator=gen))
        for _ in range(LAYERS)
    ]
    experts = [
        (
            torch.randn(EXPERTS, HIDDEN, WIDTH, generator=gen),
            torch.randn(EXPERTS, WIDTH, HIDDEN, generator=gen),
        )
        for _ in range(LAYERS)
    ]
    rows = []
    with torch.inference_mode():
        for tokens in args.tokens:
            group = tokens // EXPERTS
            x, grouped = torch.randn(tokens, HIDDEN), torch.randn(EXPERTS, group, HIDDEN)
            flat, offsets = grouped.view(-1, HIDDEN), torch.arange(1, EXPERTS + 1, dtype=torch.int32) * group
            kinds = {
                "dense-narrow FFN": lambda i, x=x: x @ dense[i][0] @ dense[i][1],
                "experts, one batched matmul": lambda i, g=grouped: torch.bmm(
                    torch.bmm(g, experts[i][0]), experts[i][1]
                ),
                "experts, one matmul each": lambda i, g=grouped: [
                    g[e] @ experts[i][0][e] @ experts[i][1][e] for e in range(EXPERTS)
                ],
                # torch._grouped_mm: the groups' bounds stay on the device, so no host-side group sizes.
                "experts, one grouped matmul": lambda i, f=flat, o=offsets: torch._grouped_mm(
                    torch._grouped_mm(f, experts[i][0], offs=o), experts[i][1], offs=o
                ),
            }
            for r in range(args.rounds):
                for kind, run in kinds.items():  # in turn, so load bursts hit every kind alike
                    for weights, layers in (("cold", range(LAYERS)), ("hot", [0] * LAYERS)):
                        run(layers[0])
                        start = time.perf_counter()
                        for i in layers:
                            run(i)
                        rows.append(
                            {
                                "tokens": tokens,
                                "kind": kind,
                                "weights": weights,
                                "round": r,
                                "ms_per_layer": (time.perf_counter() - start) * 1e3 / LAYERS,
                            }
                        )
    timings = pd.DataFrame(rows)
    table = (
        timings.groupby(["tokens", "weights", "kind"], sort=False).ms_per_layer.median().unstack("weights")
    )
    table = table.reset_index()
    for weights in ("cold", "hot"):
        dense_ms = table[table.kind == "dense-narrow FFN"].set_index("tokens")[weights]
        table[f"{weights}_vs_dense"] = table[weights] / table.tokens.map(dense_ms)
    hw = hardware(torch.device("cpu"))
    print(f"ms per layer (median of {args.rounds}), {hw['threads']} threads, {hw['cpu']}")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    with atomic_file(f"{args.out}.csv") as tmp:
        table.round(4).to_csv(tmp, index=False)
    write_json(
        f"{args.out}.json",
        {
            "hardware": hw,
            "settings": vars(args),
            "results": table.to_dict(orient="records"),
            "timings": timings.to_dict(orient="records"),
        },
    )


if __name__ == "__main__":
    main()
