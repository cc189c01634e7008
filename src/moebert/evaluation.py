"""Evaluation on a task's dev split(s): predictions, GLUE metrics and the metrics.json record."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from . import data as task_data
from .baselines import majority_logits, majority_prediction
from .metrics import compute_metrics
from .tasks import GlueTask, load_split


@torch.no_grad()
def predict(model, dataset, collator, batch_size: int = 64, progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Logits and labels of a tokenised dataset, in dataset order."""
    model.eval()
    device = next(model.parameters()).device
    logits, labels = [], []
    for batch in tqdm(DataLoader(dataset, batch_size=batch_size, collate_fn=collator), desc="evaluate",
                      disable=not progress):
        labels.append(batch.pop("labels").numpy())
        out = model(**{k: v.to(device) for k, v in batch.items()})
        logits.append(out.logits.float().cpu().numpy())
    return np.concatenate(logits), np.concatenate(labels)


def evaluate(model, tokenizer, task: GlueTask, data: str, max_length: int, max_eval_samples: int | None = None,
             seed: int = 0, batch_size: int = 64) -> tuple[dict, dict]:
    """Metrics (percent) and example counts for every eval split of the task, keyed like the paper's tables."""
    results, counts = {}, {}
    collate = task_data.collator(tokenizer)
    for split, key in task.eval_splits.items():
        raw = load_split(task, data, split, max_rows=max_eval_samples, seed=seed)
        dataset = task_data.tokenize(raw, tokenizer, task, max_length)
        logits, labels = predict(model, dataset, collate, batch_size)
        results[key] = compute_metrics(task, logits, labels)
        counts[key] = len(dataset)
    return results, counts


def evaluate_majority(task: GlueTask, data: str, max_train_samples: int | None = None,
                      max_eval_samples: int | None = None, seed: int = 0) -> tuple[dict, dict, float | int]:
    """Like `evaluate`, for the trivial predictor: every eval example gets what the train rows (capped as for
    training) favour. Also returns that prediction."""
    train = load_split(task, data, "train", max_rows=max_train_samples, seed=seed)
    prediction = majority_prediction(train["label"], task.is_regression)
    results, counts = {}, {}
    for split, key in task.eval_splits.items():
        labels = load_split(task, data, split, max_rows=max_eval_samples, seed=seed)["label"]
        results[key] = compute_metrics(task, majority_logits(prediction, len(labels), task.num_labels), labels)
        counts[key] = len(labels)
    return results, counts, prediction


def metrics_record(task: GlueTask, params: dict, model_path: str | None, results: dict, counts: dict,
                   method: str | None, seed: int, **extra) -> dict:
    """The metrics.json record; `params` as `modeling.parameter_counts` gives them (`NO_PARAMS`: no model)."""
    return {
        "task": task.name,
        "model": None if model_path is None else str(model_path),
        "method": method,
        "seed": seed,
        "results": results,
        "num_examples": counts,
        "params": params,
        **extra,
    }


NO_PARAMS = {"total": 0, "effective": 0, "head": 0, "per_expert": 0}
