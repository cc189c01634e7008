"""Importance scores: one backward pass per batch vs the per-example autograd formulation.

Same model (the packaged MiniLM fine-tuning start point with a fresh 2-class head), same MRPC batches.
Prints both times, their ratio and the largest relative difference of the scores; writes CSV and JSON.

    python benchmarks/importance_speed.py --data ../shared/data/glue --batches 4 --batch-size 16
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pandas as pd
import torch
from torch.utils.data import DataLoader

from moebert.hub import PACKAGED_MINILM
from moebert.models.loading import load_model, load_tokenizer
from moebert.tasks import data as task_data
from moebert.tasks import get_task, load_split
from moebert.training.importance import importance_scores, importance_scores_autograd


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/glue")
    parser.add_argument("--model", default=PACKAGED_MINILM)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--batches", type=int, default=4)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="results/benchmarks/importance_speed")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    task = get_task("mrpc")
    tokenizer = load_tokenizer(args.model)
    model = load_model(args.model, num_labels=task.num_labels)
    raw = load_split(task, args.data, "train", max_rows=args.batch_size * args.batches, seed=0)
    dataset = task_data.tokenize(raw, tokenizer, task, args.max_length)
    batches = list(DataLoader(dataset, batch_size=args.batch_size, collate_fn=task_data.collator(tokenizer)))

    importance_scores(model, batches[:1], progress=False)  # warm-up: allocator and thread pool
    start = time.perf_counter()
    fast = importance_scores(model, batches, progress=False)
    t_fast = time.perf_counter() - start
    start = time.perf_counter()
    slow = importance_scores_autograd(model, batches)
    t_slow = time.perf_counter() - start

    rel = max(((f - s).abs() / s.abs().clamp(min=1e-30)).max().item() for f, s in zip(fast, slow))
    row = {
        "model": args.model,
        "examples": len(dataset),
        "batch_size": args.batch_size,
        "threads": args.threads,
        "one_backward_s": round(t_fast, 3),
        "per_example_autograd_s": round(t_slow, 3),
        "speedup": round(t_slow / t_fast, 1),
        "max_rel_diff": rel,
    }
    table = pd.DataFrame([row])
    print(table.to_string(index=False))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out.with_suffix(".csv"), index=False)
    out.with_suffix(".json").write_text(json.dumps(row, indent=2) + "\n")


if __name__ == "__main__":
    main()
