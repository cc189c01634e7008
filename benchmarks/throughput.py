"""Measure a device kind's row of the cost model's table (config/throughput.yaml, see moebert.cost).

Times AdamW's step alone (per parameter), then Trainer-like training steps (forward, backward, AdamW) and
no-grad forwards of a BERT with random weights at a small shape, where the per-step cost dominates, and a
large one, where the arithmetic does; the two equations  t = layers * step_s + optimizer + FLOPs / rate
give both. Then MoEBERT's training step against what those predict for its FLOPs (`moe_factor`). `job_s`
is a job that computes next to nothing (imports, a model, outputs). CPU rates are per thread (measured on
one thread, as the laptop configs run their jobs).

    python benchmarks/throughput.py --device cpu --kind cpu
    python benchmarks/throughput.py --device cuda --kind h100 --model bert-base --dtype bf16 --update

`--update` writes the row into config/throughput.yaml (other rows are kept).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import torch
import yaml
from transformers import BertConfig, BertForSequenceClassification

from moebert.cost import Dims, load_speeds
from moebert.files import atomic_file, write_json
from moebert.speed.measure import PRESETS, hardware, random_models

TABLE = Path("config/throughput.yaml")
SHAPES = {"small": (1, 16), "large": (16, 128)}  # (batch, sequence length)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _time(fn, device, rounds: int) -> float:
    fn()  # warm-up: allocator, kernels, Adam state
    _sync(device)
    start = time.perf_counter()
    for _ in range(rounds):
        fn()
    _sync(device)
    return (time.perf_counter() - start) / rounds


def optimizer_seconds(model, optimiser, device, rounds: int) -> float:
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    seconds = _time(optimiser.step, device, rounds)
    optimiser.zero_grad(set_to_none=True)
    return seconds


def measure(model, dims: Dims, device, dtype, rounds: int, shapes=SHAPES) -> dict:
    # Fused, as the Trainer's default optimiser (adamw_torch_fused).
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=True)
    autocast = torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32)
    out = {
        "optimizer_s": optimizer_seconds(model, optimiser, device, rounds),
        "params": sum(p.numel() for p in model.parameters()),
    }
    for name, (batch, seq) in shapes.items():
        ids = torch.randint(1000, 2000, (batch, seq), device=device)
        labels = torch.zeros(batch, dtype=torch.long, device=device)

        def train_step(ids=ids, labels=labels):
            with autocast:
                loss = model(input_ids=ids, labels=labels).loss
            loss.backward()
            optimiser.step()
            optimiser.zero_grad(set_to_none=True)

        def forward(ids=ids):
            with torch.no_grad(), autocast:
                model(input_ids=ids)

        out[name] = {
            "batch": batch,
            "seq": seq,
            "flops": batch * seq * dims.forward_flops(seq),
            "train_s": _time(train_step, device, rounds),
            "infer_s": _time(forward, device, rounds),
        }
    return out


def solve(points: dict, layers: int, kind: str) -> tuple[float, float]:
    """Per-layer step ms and TFLOP/s from the small and large shapes (training counts three forwards and
    pays the optimiser's step, measured apart)."""
    passes, optimizer = (3, points["optimizer_s"]) if kind == "train" else (1, 0.0)
    small, large = points["small"], points["large"]
    rate = passes * (large["flops"] - small["flops"]) / max(large[f"{kind}_s"] - small[f"{kind}_s"], 1e-9)
    step = max(small[f"{kind}_s"] - optimizer - passes * small["flops"] / rate, 0.0)
    return step / layers * 1e3, rate / 1e12


def job_seconds(preset: str, device: str, out: Path) -> float:
    """A job that computes next to nothing: the CLI's imports, building a model, one forward, the outputs."""
    command = [
        sys.executable,
        "-m",
        "moebert.cli",
        "speed",
        "--random",
        preset,
        "--batch-sizes",
        "1",
        "--seq-lengths",
        "8",
        "--repeats",
        "1",
        "--device",
        device,
        "--output",
        str(out / "job_s.csv"),
    ]
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="torch device to measure")
    parser.add_argument(
        "--kind", required=True, help="device kind: the row's name in the table (cpu, h100, ...)"
    )
    parser.add_argument(
        "--model",
        choices=sorted(PRESETS),
        default="minilm",
        help="dimensions of the measured BERT (random weights)",
    )
    parser.add_argument(
        "--dtype",
        choices=("fp32", "fp16", "bf16"),
        default="fp32",
        help="autocast dtype, as the config's training.precision",
    )
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--update", action="store_true", help=f"write the row into {TABLE}")
    parser.add_argument("--out", default="results/benchmarks/throughput")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(1)
    dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[args.dtype]
    bert = BertConfig(**PRESETS[args.model])
    dims = Dims(bert.num_hidden_layers, bert.hidden_size, bert.intermediate_size)
    torch.manual_seed(0)
    model = BertForSequenceClassification(bert).to(device)
    points = measure(model, dims, device, dtype, args.rounds)
    train_ms, train_tflops = solve(points, dims.layers, "train")
    infer_ms, infer_tflops = solve(points, dims.layers, "infer")
    # MoEBERT (4 experts of a quarter of the FFN, hash routing) at the large shape, against what the dense
    # rates predict for its FLOPs: the factor covers routing, gathers and the smaller per-expert matmuls.
    moe_dims = Dims(dims.layers, dims.hidden, bert.intermediate_size // 4, moe=True)
    moe = random_models(dict(PRESETS[args.model]), names=("moebert",))["moebert"].train().to(device)
    moe_point = measure(moe, moe_dims, device, dtype, args.rounds, shapes={"large": SHAPES["large"]})
    large = moe_point["large"]
    predicted = dims.layers * train_ms / 1e3 + 3 * large["flops"] / (train_tflops * 1e12)
    moe_factor = (large["train_s"] - moe_point["optimizer_s"]) / predicted
    points["moebert"] = moe_point
    machine = hardware(device)
    row = {
        "source": f"benchmarks/throughput.py --device {args.device} --model {args.model} --dtype {args.dtype}"
        f" on {machine.get('gpu', machine['cpu'])} ({time.strftime('%Y-%m-%d')})",
        "train_tflops": round(train_tflops, 4),
        "infer_tflops": round(infer_tflops, 4),
        "train_step_ms_per_layer": round(train_ms, 3),
        "infer_step_ms_per_layer": round(infer_ms, 3),
        "optimizer_ns_per_param": round(points["optimizer_s"] / points["params"] * 1e9, 3),
        "moe_factor": round(moe_factor, 2),
        "job_s": round(job_seconds(args.model, args.device, out), 1),
        "per_thread": device.type == "cpu",
    }
    print(f"{'shape':<6} {'batch':>5} {'seq':>4} {'train ms':>9} {'forward ms':>10}")
    for name, p in ((name, points[name]) for name in SHAPES):
        print(
            f"{name:<6} {p['batch']:>5} {p['seq']:>4} {p['train_s'] * 1e3:>9.1f} {p['infer_s'] * 1e3:>10.1f}"
        )
    print(yaml.safe_dump({args.kind: row}, sort_keys=False))
    write_json(out / f"{args.kind}.json", {"points": points, "row": row})
    if args.update:
        text = TABLE.read_text() if TABLE.is_file() else ""
        header = "".join(line for line in text.splitlines(keepends=True) if line.startswith("#"))
        table = {**(yaml.safe_load(text) or {}), args.kind: row}
        with atomic_file(TABLE) as tmp:
            Path(tmp).write_text(header + yaml.safe_dump(table, sort_keys=False, width=200))
            load_speeds(tmp)  # the table still parses before it replaces the old one
        print(f"wrote {args.kind} into {TABLE}")


if __name__ == "__main__":
    main()
