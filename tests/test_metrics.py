"""GLUE metrics against values worked out by hand, in percent."""

import numpy as np
import pytest

from moebert.tasks import TASKS
from moebert.tasks.metrics import compute_metrics


def logits_for(classes: list[int], num_labels: int = 2) -> np.ndarray:
    """Logits whose argmax is `classes`."""
    logits = np.zeros((len(classes), num_labels), dtype=np.float32)
    logits[np.arange(len(classes)), classes] = 1.0
    return logits


def test_accuracy_and_binary_f1():
    # TP 2 (rows 0, 4), FN 1 (row 1), FP 1 (row 3), TN 1: precision = recall = 2/3, so F1 = 2/3.
    labels = np.array([1, 1, 0, 0, 1])
    result = compute_metrics("mrpc", logits_for([1, 0, 0, 1, 1]), labels)
    assert result == pytest.approx({"accuracy": 60.0, "f1": 200 / 3})
    # Class 1 is the positive class: swapping every label changes F1 (TP 1, FP 1, FN 1 -> 1/2).
    assert compute_metrics("qqp", logits_for([0, 1, 1, 0, 0]), 1 - labels)["f1"] == pytest.approx(50.0)


def test_matthews_correlation_of_a_known_confusion_matrix():
    # TP 3, FN 1, FP 1, TN 3: (3*3 - 1*1) / sqrt(4 * 4 * 4 * 4) = 8 / 16.
    labels = np.array([1, 1, 1, 1, 0, 0, 0, 0])
    predicted = [1, 1, 1, 0, 1, 0, 0, 0]
    assert compute_metrics("cola", logits_for(predicted), labels) == pytest.approx({"mcc": 50.0})


def test_multiclass_accuracy():
    labels = np.array([0, 1, 2, 2])
    assert compute_metrics("mnli", logits_for([0, 1, 2, 0], 3), labels) == pytest.approx({"accuracy": 75.0})


def test_pearson_and_spearman():
    # Deviations from the mean 2.5: x = (-1.5, -.5, .5, 1.5), y = (-1.5, .5, -.5, 1.5): sum xy = 4, sum x^2 = 5.
    labels = np.array([1.0, 3.0, 2.0, 4.0])
    result = compute_metrics("stsb", np.array([1.0, 2.0, 3.0, 4.0]), labels)
    assert result == pytest.approx({"pearson": 80.0, "spearman": 80.0})
    # A monotone distortion keeps the rank correlation and changes the linear one.
    skewed = compute_metrics("stsb", np.array([1.0, 2.0, 3.0, 100.0]), labels)
    assert skewed["spearman"] == pytest.approx(80.0) and skewed["pearson"] < 80.0
    assert compute_metrics("stsb", 2 * labels + 1, labels) == pytest.approx(
        {"pearson": 100.0, "spearman": 100.0}
    )


def test_regression_predictions_of_shape_n_by_one():
    labels = np.array([0.5, 2.0, 4.5, 3.0])
    scores = np.array([0.4, 2.5, 4.0, 3.3])
    assert compute_metrics("stsb", scores[:, None], labels) == compute_metrics("stsb", scores, labels)


def test_wrong_prediction_shapes_are_refused():
    with pytest.raises(
        ValueError, match=r"STS-B predictions have shape \(4, 2\); expected \(4,\) or \(4, 1\)"
    ):
        compute_metrics("stsb", np.zeros((4, 2)), np.zeros(4))
    with pytest.raises(ValueError, match=r"MNLI predictions have shape \(4, 2\); expected \(4, 3\) logits"):
        compute_metrics("mnli", np.zeros((4, 2)), np.zeros(4, dtype=int))
    with pytest.raises(ValueError, match=r"RTE predictions have shape \(3, 2\); expected \(4, 2\) logits"):
        compute_metrics("rte", np.zeros((3, 2)), np.zeros(4, dtype=int))


@pytest.mark.parametrize("name", [name for name, task in TASKS.items() if task.family == "glue"])
def test_every_task_reports_its_metrics_in_percent(name):
    task = TASKS[name]
    labels = np.array([0, 1, 0, 1])
    predictions = labels.astype(float) if task.is_regression else logits_for(list(labels), task.num_labels)
    result = compute_metrics(task, predictions, labels)
    assert list(result) == list(task.metrics)
    assert all(value == pytest.approx(100.0) and isinstance(value, float) for value in result.values())


def test_labels_must_be_a_flat_vector():
    with pytest.raises(ValueError, match=r"^MRPC labels have shape \(4, 1\); expected \(N,\)$"):
        compute_metrics("mrpc", logits_for([0, 1, 0, 1]), np.zeros((4, 1), dtype=int))
