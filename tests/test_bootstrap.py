"""The paired bootstrap of the claims and ablation tables (reporting/bootstrap.py): metrics recomputed on
resamples as tasks/metrics.py computes them, a hand-computed case, the three verdicts, and the interval's
coverage on simulated models that differ by a known amount."""

import numpy as np
import pandas as pd
import pytest

from moebert.reporting import bootstrap
from moebert.reporting.claims import check
from moebert.tasks.metrics import compute_metrics


def glue_table(labels, predictions):
    return pd.DataFrame({"label": labels, "prediction": predictions})


@pytest.mark.parametrize(
    "task, classes",
    [("mrpc", 2), ("cola", 2), ("mnli", 3), ("stsb", None)],
)
def test_every_metric_of_a_resample_equals_the_tasks_own(task, classes):
    """Non-decomposable metrics (F1, MCC, Pearson, Spearman) are recomputed on each resample, exactly."""
    rng = np.random.default_rng(3)
    n = 60
    if classes is None:
        labels = rng.integers(0, 6, n).astype(float)  # ties, as STS-B's labels have
        predictions = labels + rng.normal(0, 1.5, n).round(1)
    else:
        labels = rng.integers(classes, size=n)
        predictions = np.where(rng.random(n) < 0.6, labels, rng.integers(classes, size=n))
    table = glue_table(labels, predictions)
    draws = rng.integers(n, size=(5, n))
    for metric in compute_metrics(task, np.eye(classes)[predictions] if classes else predictions, labels):
        got = bootstrap.score(metric, table, draws)
        for row, value in zip(draws, got):
            logits = np.eye(classes)[predictions[row]] if classes else predictions[row]
            assert value == pytest.approx(compute_metrics(task, logits, labels[row])[metric], abs=1e-9)


def test_degenerate_resamples_score_as_the_task_metrics_do():
    """A constant predictor: correlations 0 and MCC 0 (tasks/metrics.py), F1 0 without a positive."""
    labels = np.array([0, 1, 1, 0])
    table = glue_table(labels, np.zeros(4, dtype=int))
    draws = np.array([[0, 1, 2, 3]])
    assert bootstrap.score("mcc", table, draws).tolist() == [0.0]
    assert bootstrap.score("f1", table, draws).tolist() == [0.0]
    scores = glue_table(labels.astype(float), np.full(4, 2.5))
    assert bootstrap.score("pearson", scores, draws).tolist() == [0.0]
    assert bootstrap.score("spearman", scores, draws).tolist() == [0.0]


def test_a_per_example_column_is_averaged():
    """SQuAD's exact match and F1 are means of per-question scores, kept as columns."""
    table = pd.DataFrame({"id": ["a", "b", "c"], "exact_match": [1.0, 0.0, 0.0], "f1": [1.0, 0.5, 0.0]})
    draws = np.array([[0, 0, 1], [1, 2, 2]])
    assert bootstrap.score("f1", table, draws).tolist() == [pytest.approx(250 / 3), pytest.approx(50 / 3)]
    assert bootstrap.score("exact_match", table, draws).tolist() == [pytest.approx(200 / 3), 0.0]


def test_hand_computed_replicates_over_examples_and_seeds():
    labels = np.array([1, 0, 1, 1])
    a = glue_table(labels, np.array([1, 0, 0, 1]))  # wrong on example 2
    b = glue_table(labels, np.array([0, 0, 1, 1]))  # wrong on example 0
    draws = np.array([[0, 0, 1, 2], [3, 3, 3, 3], [2, 2, 2, 0]])
    # a: 3 of 4 right, 4 of 4, 1 of 4 (example 0 only); b: 2 of 4, 4 of 4, 3 of 4.
    assert bootstrap.score("accuracy", a, draws).tolist() == [75.0, 100.0, 25.0]
    assert bootstrap.score("accuracy", b, draws).tolist() == [50.0, 100.0, 75.0]
    # Two seeds; replicate r takes the seeds at seed_draws[r]: (0, 0) -> seed 0 twice, (0, 1) both, (1, 1).
    per_seed = np.array([[75.0, 100.0, 25.0], [50.0, 100.0, 75.0]])
    seed_draws = np.array([[0, 0], [0, 1], [1, 1]])
    assert bootstrap.seed_means(per_seed, seed_draws).tolist() == [75.0, 100.0, 75.0]
    # Percentiles with linear interpolation: of 0, 10, ..., 100 the 2.5% point is 2.5, the 97.5% point 97.5.
    assert bootstrap.interval(np.arange(0.0, 101.0, 10.0)) == pytest.approx((2.5, 97.5))


def test_replicates_pair_the_examples_and_the_seeds():
    """Two methods with equal predictions have a difference of exactly 0 in every replicate (the same drawn
    examples and seeds), however much each method's own score varies."""
    rng = np.random.default_rng(0)
    labels = rng.integers(2, size=50)
    runs = []
    for seed in (0, 1):
        predictions = np.where(rng.random(50) < 0.7, labels, 1 - labels)
        runs += [(method, seed, "RTE", glue_table(labels, predictions)) for method in ("a", "b")]
    boot = bootstrap.Replicates(runs, {"RTE": "accuracy"}, resamples=200)
    assert np.ptp(boot.average("a", ["RTE"])) > 5  # examples and seeds do vary
    assert (boot.average("a", ["RTE"]) - boot.average("b", ["RTE"]) == 0).all()
    assert np.isnan(boot.average("a", ["RTE", "MRPC"])).all()  # a key without examples: no replicate


def test_regression_labels_pair_across_float32_and_float64():
    """A model's evaluation writes STS-B's 3.8 as float32 (3.799999952316284), the majority row as 3.8."""
    labels = np.array([3.8, 0.2, 5.0])
    as_float32 = labels.astype(np.float32).astype(np.float64)
    assert bootstrap.same_examples([glue_table(labels, labels), glue_table(as_float32, labels)])
    assert not bootstrap.same_examples([glue_table(labels, labels), glue_table(labels + 0.01, labels)])


def test_runs_on_different_examples_get_no_interval():
    runs = [
        ("a", 0, "RTE", glue_table([0, 1, 1], [0, 1, 0])),
        ("b", 0, "RTE", glue_table([1, 1, 1], [0, 1, 0])),
    ]
    boot = bootstrap.Replicates(runs, {"RTE": "accuracy"}, resamples=10)
    assert np.isnan(bootstrap.interval(boot.average("a", ["RTE"]) - boot.average("b", ["RTE"]))).all()


@pytest.mark.parametrize(
    "low, high, threshold, at_most, expected",
    [
        (0.2, 1.5, 0.0, False, "holds"),
        (-1.5, -0.2, 0.0, False, "fails"),
        (-0.3, 0.8, 0.0, False, "inconclusive"),
        (0.0, 0.8, 0.0, False, "inconclusive"),  # the threshold on the interval's end: not cleared
        (-0.8, 0.0, 0.0, False, "inconclusive"),
        (1.0, 1.4, 1.0, True, "inconclusive"),
        (0.4, 1.0, 1.0, True, "inconclusive"),
        (-2.0, -1.2, -1.0, False, "fails"),
        (0.1, 0.9, 1.0, True, "holds"),
        (1.1, 1.9, 1.0, True, "fails"),
        (0.5, 1.5, 1.0, True, "inconclusive"),
    ],
)
def test_verdicts(low, high, threshold, at_most, expected):
    assert bootstrap.verdict(low, high, threshold, at_most) == expected


def claim_boot(gap: int, n: int = 400):
    """Method "a" right on every example, "b" wrong on `gap` of the n (one seed): every replicate's difference
    is 100 * (b's wrong examples drawn) / n, around 100 * gap / n."""
    labels = np.zeros(n, dtype=int)
    wrong = np.zeros(n, dtype=int)
    wrong[:gap] = 1
    runs = [("a", 0, "RTE", glue_table(labels, labels)), ("b", 0, "RTE", glue_table(labels, wrong))]
    return bootstrap.Replicates(runs, {"RTE": "accuracy"}, resamples=500)


@pytest.mark.parametrize(
    "gap, expected",
    [(40, "holds"), (4, "inconclusive"), (0, "fails")],  # +10 points, +1 (interval about [0, 2]), +0
)
def test_a_claim_gets_each_verdict_from_its_interval(gap, expected):
    main = pd.DataFrame({"RTE": [100.0, 100.0 - gap / 4], "avg": [100.0, 100.0 - gap / 4]}, index=["a", "b"])
    claim = {"claim": "a is 1 ahead", "method": "a", "vs": "b", "at_least": 1.0}
    row = check(claim, main, "avg", claim_boot(gap))
    assert row["verdict"] == expected
    assert row["difference"] == gap / 4
    assert row["ci_low"] <= gap / 4 <= row["ci_high"]
    assert "95% CI [" in row["measured"]


def test_the_interval_covers_a_known_difference_at_about_the_nominal_rate():
    """Two models, correct with probability 0.80 and 0.75 on independent examples: the true difference is 5
    points. Over 200 simulated dev sets of 300 examples, the 95% interval should contain 5 about 95% of the
    time (binomial sd 1.5%)."""
    rng = np.random.default_rng(12345)
    n, simulations, covered = 300, 200, 0
    labels = np.zeros(n, dtype=int)
    for i in range(simulations):
        a = (rng.random(n) >= 0.80).astype(int)
        b = (rng.random(n) >= 0.75).astype(int)
        runs = [("a", 0, "X", glue_table(labels, a)), ("b", 0, "X", glue_table(labels, b))]
        boot = bootstrap.Replicates(runs, {"X": "accuracy"}, resamples=400, seed=i)
        low, high = bootstrap.interval(boot.key("a", "X") - boot.key("b", "X"))
        covered += low <= 5.0 <= high
    assert 0.90 <= covered / simulations <= 0.99
