"""The trivial predictor: the most frequent train label, or the train mean for regression. No model: it says
whether a teacher learned anything."""

from __future__ import annotations

import numpy as np

from moebert.errors import MoebertError
from moebert.students.base import StudentKind


def majority_prediction(labels, regression: bool) -> float | int:
    """The train split's most frequent class (the lowest index on a tie), or its mean score."""
    labels = np.asarray(labels)
    if len(labels) == 0:
        raise MoebertError("the majority baseline needs a non-empty train split")
    if regression:
        return float(labels.mean())
    return int(np.bincount(labels.astype(int)).argmax())


def majority_logits(prediction: float, count: int, num_labels: int) -> np.ndarray:
    """`count` rows that predict `prediction`: one-hot logits, or the score itself for regression."""
    if num_labels == 1:
        return np.full((count, 1), prediction, dtype=np.float64)
    logits = np.zeros((count, num_labels))
    logits[:, prediction] = 1.0
    return logits


class Majority(StudentKind):
    name = "majority"
    trains = False
    # No weights, so no card is ever rendered; stated for the registry all the same.
    card_title = "a majority baseline (no model)"
    card_text = (
        "A baseline of the MoEBERT reproduction: the train split's most frequent label (or, for regression, "
        "its mean score) predicted for every example, which says whether a teacher learned anything."
    )
