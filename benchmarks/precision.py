"""bf16 against fp32 on CPU: a training step (forward, backward, AdamW) and an inference forward of the dense
teacher and the MoE student, at MiniLM and BERT-base dimensions with random weights, under torch's CPU
autocast (as `--bf16` trains: transformers' Trainer autocasts the forward on CPU too). The models take turns
within every round; the table gives median milliseconds and bf16 / fp32 per model and stage. Where the CPU
has native bf16 matmuls (AVX512-BF16, AMX) bf16 may pay; where it has not, it costs conversions.

    python benchmarks/precision.py --threads 2
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import os
import time

import pandas as pd
import torch

from moebert.files import atomic_file, write_json
from moebert.speed.measure import dimensions, hardware, random_inputs, random_models

MODELS = ("teacher", "moebert")


def step(model, optimizer, inputs, labels, bf16: bool, train: bool) -> None:
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    if not train:
        with torch.inference_mode(), autocast:
            model(**inputs)
        return
    with autocast:
        loss = model(**inputs, labels=labels).loss
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dims", nargs="+", default=["minilm", "bert-base"])
    parser.add_argument("--train-batch", type=int, default=16)
    parser.add_argument("--infer-batch", type=int, default=32)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="results/benchmarks/precision")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    rows = []
    for dims in args.dims:
        built = random_models(dimensions(dims)[1], names=MODELS)
        for stage, batch in (("train", args.train_batch), ("infer", args.infer_batch)):
            inputs = random_inputs(batch, args.seq_len, built["teacher"].config.vocab_size, "cpu")
            labels = torch.randint(2, (batch,), generator=torch.Generator().manual_seed(0))
            runs = {}
            for name, model in built.items():
                for bf16 in (False, True):
                    twin = copy.deepcopy(model).train(stage == "train")
                    optimizer = torch.optim.AdamW(twin.parameters(), lr=1e-5)
                    runs[(name, bf16)] = (twin, optimizer)
            for (name, bf16), (twin, optimizer) in runs.items():  # warm-up
                step(twin, optimizer, inputs, labels, bf16, stage == "train")
            for r in range(args.rounds):
                order = list(runs)[r % len(runs) :] + list(runs)[: r % len(runs)]
                for name, bf16 in order:
                    twin, optimizer = runs[(name, bf16)]
                    start = time.perf_counter()
                    step(twin, optimizer, inputs, labels, bf16, stage == "train")
                    rows.append(
                        {
                            "dims": dims,
                            "stage": stage,
                            "batch": batch,
                            "model": name,
                            "precision": "bf16" if bf16 else "fp32",
                            "round": r,
                            "seconds": time.perf_counter() - start,
                        }
                    )
    timings = pd.DataFrame(rows)
    median = (
        timings.groupby(["dims", "stage", "batch", "model", "precision"])
        .seconds.median()
        .unstack("precision")
    )
    table = (median * 1e3).rename(columns=lambda c: f"{c}_ms").reset_index()
    table["bf16_over_fp32"] = table.bf16_ms / table.fp32_ms
    hw = hardware(torch.device("cpu"))
    hw["load_average_1_5_15min"] = {"before": load_before, "after": os.getloadavg()}
    print(
        f"length {args.seq_len}, {hw['threads']} threads, {hw['cpu']}; load average before {load_before[0]:.2f}, "
        f"after {os.getloadavg()[0]:.2f}"
    )
    print(table.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    with atomic_file(f"{args.out}.csv") as tmp:
        table.round(4).to_csv(tmp, index=False)
    write_json(
        f"{args.out}.json",
        {
            "hardware": hw,
            "settings": vars(args),
            "table": table.to_dict(orient="records"),
            "timings": timings.to_dict(orient="records"),
        },
    )


if __name__ == "__main__":
    main()
