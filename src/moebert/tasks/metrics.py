"""GLUE metrics in percent (x100), the scale of the paper's tables, computed locally with sklearn/scipy."""

from __future__ import annotations

import numpy as np
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

from moebert.tasks import GlueTask, get_task

# name -> f(labels, predictions); f1 is binary with class 1 as positive (MRPC "equivalent", QQP "duplicate").
METRICS = {
    "accuracy": accuracy_score,
    "f1": lambda labels, predicted: f1_score(labels, predicted, pos_label=1, average="binary"),
    # User tasks: the unweighted mean of the per-class F1s over the classes the labels or predictions hold.
    "macro_f1": lambda labels, predicted: f1_score(labels, predicted, average="macro", zero_division=0),
    "mcc": matthews_corrcoef,
    "pearson": lambda labels, scores: _correlation(pearsonr, scores, labels),
    "spearman": lambda labels, scores: _correlation(spearmanr, scores, labels),
}


def _correlation(correlate, scores, labels) -> float:
    """A correlation, 0 for constant scores (the majority baseline predicts the train mean): undefined there
    (scipy gives NaN), and 0, no relation at all, keeps the row in the task averages."""
    if np.ptp(scores) == 0:
        return 0.0
    return correlate(scores, labels)[0]


def predicted(task: GlueTask, predictions: np.ndarray, count: int) -> np.ndarray:
    """Class indices from logits, or scores as a flat vector for regression: what every metric reads."""
    if task.is_regression:
        scores = predictions[:, 0] if predictions.shape == (count, 1) else predictions
        if scores.shape == (count,):
            return scores
        expected = f"({count},) or ({count}, 1)"
    elif predictions.shape == (count, task.num_labels):
        return predictions.argmax(axis=-1)
    else:
        expected = f"({count}, {task.num_labels}) logits"
    raise ValueError(f"{task.display} predictions have shape {predictions.shape}; expected {expected}")


def compute_metrics(task: str | GlueTask, predictions, labels) -> dict[str, float]:
    """The task's metrics in percent; `predictions` are logits (N, C), or scores (N,) / (N, 1) for regression."""
    task = get_task(task)
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"{task.display} labels have shape {labels.shape}; expected (N,)")
    values = predicted(task, np.asarray(predictions), len(labels))
    return {name: 100.0 * float(METRICS[name](labels, values)) for name in task.metrics}
