"""Evaluation on a task's dev split(s): predictions, the task's metrics (GLUE, or SQuAD EM/F1 from the best
answer spans), the per-example predictions a resampling of the examples recomputes the metrics from
(reporting/bootstrap.py), what the routers did (routing_diagnostics.py) and the metrics.json record. The model
runs the same way for the test predictions (moebert.prediction)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from moebert.routing_diagnostics import RoutingRecorder
from moebert.students.majority import majority_logits, majority_prediction
from moebert.tasks import GlueTask, QaTask, Task, load_split
from moebert.tasks import data as task_data
from moebert.tasks import squad as squad_data
from moebert.tasks.metrics import compute_metrics, predicted
from moebert.tasks.qa import QaSettings, best_answers, eval_features
from moebert.tasks.squad_metrics import question_scores, squad_v1, squad_v2


def glue_examples(key: str, values: np.ndarray, labels: np.ndarray) -> pd.DataFrame:
    """The per-example table: the result key (split) and the example's position in it, then the label and the
    prediction (class index, or score for regression). A QA task's has the question id and its scores."""
    return pd.DataFrame(
        {"split": key, "example": np.arange(len(labels)), "label": labels, "prediction": values}
    )


def _outputs(model, dataset, collator, batch_size: int, progress: bool):
    """(batch, model outputs) for every batch of a tokenised dataset, in order, without gradients; the targets
    stay in the batch and out of the model."""
    model.eval()
    device = next(model.parameters()).device
    for batch in tqdm(
        DataLoader(dataset, batch_size=batch_size, collate_fn=collator), desc="evaluate", disable=not progress
    ):
        with torch.no_grad():
            out = model(**{k: v.to(device) for k, v in batch.items() if k != "labels"})
        yield batch, out


def predict(
    model, dataset, collator, batch_size: int = 64, progress: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Logits and labels of a tokenised dataset, in dataset order."""
    logits, labels = [], []
    for batch, out in _outputs(model, dataset, collator, batch_size, progress):
        labels.append(batch["labels"].numpy())
        logits.append(out.logits.float().cpu().numpy())
    return np.concatenate(logits), np.concatenate(labels)


def predict_unlabelled(model, dataset, collator, batch_size: int = 64, progress: bool = True) -> np.ndarray:
    """Logits of a tokenised dataset without labels (a test split), in dataset order."""
    return np.concatenate(
        [
            out.logits.float().cpu().numpy()
            for _, out in _outputs(model, dataset, collator, batch_size, progress)
        ]
    )


def evaluate(
    model,
    tokenizer,
    task: Task,
    data: str,
    max_length: int,
    max_eval_samples: int | None = None,
    seed: int = 0,
    batch_size: int = 64,
    qa: QaSettings | None = None,
) -> tuple[dict, dict, dict]:
    """Metrics (percent) and example counts for every eval split of the task, keyed like the paper's tables,
    and what else the record keeps: `examples`, the per-example table (`glue_examples`: what the metrics
    are recomputed from), and for a MoE model `routing`, per split the diagnostics of every MoE layer (QA:
    also the predicted answers, and how the data departs from the standard)."""
    if isinstance(task, QaTask):
        return evaluate_qa(
            model,
            tokenizer,
            task,
            data,
            max_length,
            qa or QaSettings(task.doc_stride),
            max_eval_samples,
            seed,
            batch_size,
        )
    results, counts, examples, routing = {}, {}, [], {}
    collate = task_data.collator(tokenizer)
    for split, key in task.eval_splits.items():
        raw = load_split(task, data, split, max_rows=max_eval_samples, seed=seed)
        dataset = task_data.tokenize(raw, tokenizer, task, max_length)
        with RoutingRecorder(model) as recorder:
            logits, labels = predict(model, dataset, collate, batch_size)
        results[key] = compute_metrics(task, logits, labels)
        counts[key] = len(dataset)
        examples.append(glue_examples(key, predicted(task, logits, len(labels)), labels))
        if recorder.moe:
            routing[key] = recorder.layers()
    return results, counts, {"examples": pd.concat(examples, ignore_index=True), **_routing(routing)}


def _routing(routing: dict) -> dict:
    return {"routing": routing} if routing else {}


def predict_spans(
    model, dataset, collator, batch_size: int = 64, progress: bool = True
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Start and end logits of every window of a tokenised dataset over its own tokens, in dataset order."""
    lengths = iter([len(ids) for ids in dataset["input_ids"]])
    starts, ends = [], []
    for _, out in _outputs(model, dataset, collator, batch_size, progress):
        for start, end in zip(out.start_logits.float().cpu().numpy(), out.end_logits.float().cpu().numpy()):
            length = next(lengths)
            starts.append(start[:length])
            ends.append(end[:length])
    return starts, ends


def answer_questions(
    model, tokenizer, task: QaTask, examples, max_length: int, qa: QaSettings, batch_size: int = 64
) -> tuple[dict[str, str], dict[str, float]]:
    """The answer text of every question of `examples` (by id) and, for v2.0, its no-answer score: what the
    official evaluation scripts read (see qa.best_answers)."""
    windows = eval_features(examples, tokenizer, max_length, qa.doc_stride)
    starts, ends = predict_spans(model, windows.inputs, task_data.collator(tokenizer), batch_size)
    return best_answers(
        examples,
        windows,
        starts,
        ends,
        task.has_unanswerable,
        qa.n_best,
        qa.max_answer_length,
        qa.null_threshold,
    )


def evaluate_qa(
    model,
    tokenizer,
    task: QaTask,
    data: str,
    max_length: int,
    qa: QaSettings,
    max_eval_samples: int | None = None,
    seed: int = 0,
    batch_size: int = 64,
) -> tuple[dict, dict, dict]:
    """EM and F1 as the official SQuAD scripts define them (v2.0: also HasAns/NoAns and the best threshold)."""
    results, counts, predictions, per_question, routing = {}, {}, {}, [], {}
    for split, key in task.eval_splits.items():
        examples = squad_data.load_split(task, data, split, max_rows=max_eval_samples, seed=seed)
        with RoutingRecorder(model) as recorder:
            answers, null_scores = answer_questions(
                model, tokenizer, task, examples, max_length, qa, batch_size
            )
        gold = dict(zip(examples["id"], (a["text"] for a in examples["answers"])))
        scores = squad_v2(answers, gold, null_scores) if task.has_unanswerable else squad_v1(answers, gold)
        # Question counts are not scores: they go with the example counts.
        results[key] = {name: value for name, value in scores.items() if not name.endswith("_total")}
        counts[key] = len(examples)
        predictions[key] = answers
        exact, f1 = question_scores(answers, gold, task.has_unanswerable)
        per_question.append(
            pd.DataFrame(
                {
                    "split": key,
                    "example": np.arange(len(gold)),
                    "id": list(gold),
                    "exact_match": [exact[q] for q in gold],
                    "f1": [f1[q] for q in gold],
                }
            )
        )
        if recorder.moe:
            routing[key] = recorder.layers()
    extra = {
        "predictions": predictions,
        "qa_settings": vars(qa),
        "examples": pd.concat(per_question, ignore_index=True),
        **_routing(routing),
    }
    note = squad_data.split_note(task, data)
    return results, counts, {**extra, **({"data_note": note} if note else {})}


def evaluate_majority(
    task: GlueTask,
    data: str,
    max_train_samples: int | None = None,
    max_eval_samples: int | None = None,
    seed: int = 0,
) -> tuple[dict, dict, float | int, pd.DataFrame]:
    """Like `evaluate`, for the trivial predictor: every eval example gets what the train rows (capped as for
    training) favour. Also returns that prediction and the per-example table."""
    train = load_split(task, data, "train", max_rows=max_train_samples, seed=seed)
    prediction = majority_prediction(train["label"], task.is_regression)
    results, counts, examples = {}, {}, []
    for split, key in task.eval_splits.items():
        labels = np.asarray(load_split(task, data, split, max_rows=max_eval_samples, seed=seed)["label"])
        logits = majority_logits(prediction, len(labels), task.num_labels)
        results[key] = compute_metrics(task, logits, labels)
        counts[key] = len(labels)
        examples.append(glue_examples(key, predicted(task, np.asarray(logits), len(labels)), labels))
    return results, counts, prediction, pd.concat(examples, ignore_index=True)


def metrics_record(
    task: Task,
    params: dict,
    model_path: str | None,
    results: dict,
    counts: dict,
    method: str | None,
    seed: int,
    **extra,
) -> dict:
    """The metrics.json record; `params` as `models.loading.parameter_counts` gives them (`NO_PARAMS`: no model)."""
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
