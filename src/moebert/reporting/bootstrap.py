"""Paired bootstrap over dev examples and seeds (docs/method.md §8.1; Efron and Tibshirani 1993, ch. 13;
Dror et al. 2018): how far a difference between two methods' scores can be trusted.

One replicate draws, for every result key (dev split), its examples with replacement, and for every set of
seeds its seeds with replacement; every method is scored on the same drawn examples (paired), methods run
with the same seeds on the same drawn seeds. A method's score in a replicate is its metric recomputed on the
drawn examples (non-decomposable metrics such as F1, MCC and the correlations too), the mean over its drawn
seeds, and for the average the mean over the keys, as the report's tables compute it. The 95% interval of a
statistic (a difference, a spread) is the 2.5 and 97.5 percentiles of its replicates.

A verdict compares the interval with the claim's threshold: holds when the whole interval is on the claimed
side, fails when it is wholly on the other, inconclusive when it contains the threshold.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import rankdata

RESAMPLES = 2000
CONFIDENCE = 0.95
SEED = 0


def accuracy(labels: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    return 100.0 * (labels == predicted).mean(-1)


def binary_f1(labels: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """F1 of class 1; 0 where there is no positive prediction or label (as scikit-learn gives)."""
    tp = ((predicted == 1) & (labels == 1)).sum(-1)
    fp = ((predicted == 1) & (labels != 1)).sum(-1)
    fn = ((predicted != 1) & (labels == 1)).sum(-1)
    denominator = 2 * tp + fp + fn
    return 100.0 * np.divide(2 * tp, denominator, out=np.zeros(denominator.shape), where=denominator > 0)


def mcc(labels: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """Matthews correlation of K classes from the confusion margins (Gorodkin's R_K, scikit-learn's form);
    0 where a margin is constant."""
    classes = np.union1d(np.unique(labels), np.unique(predicted))
    true = np.stack([(labels == c).sum(-1) for c in classes], -1).astype(np.float64)
    pred = np.stack([(predicted == c).sum(-1) for c in classes], -1).astype(np.float64)
    n = float(labels.shape[-1])
    correct = (labels == predicted).sum(-1).astype(np.float64)
    cov_tp = correct * n - (true * pred).sum(-1)
    cov_pp = n * n - (pred * pred).sum(-1)
    cov_tt = n * n - (true * true).sum(-1)
    denominator = cov_tt * cov_pp
    return 100.0 * np.divide(cov_tp, np.sqrt(denominator), out=np.zeros(cov_tp.shape), where=denominator > 0)


def _pearson(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    xc = x - x.mean(-1, keepdims=True)
    yc = y - y.mean(-1, keepdims=True)
    r = (xc * yc).sum(-1) / np.sqrt((xc * xc).sum(-1) * (yc * yc).sum(-1))
    return np.clip(r, -1.0, 1.0)


def pearson(labels: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """0 for constant scores, as tasks/metrics.py gives."""
    constant = np.ptp(scores, axis=-1) == 0
    with np.errstate(invalid="ignore", divide="ignore"):
        return 100.0 * np.where(constant, 0.0, _pearson(scores.astype(np.float64), labels.astype(np.float64)))


def spearman(labels: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Pearson of the ranks (ties share their mean rank); 0 for constant scores."""
    constant = np.ptp(scores, axis=-1) == 0
    with np.errstate(invalid="ignore", divide="ignore"):
        r = _pearson(rankdata(scores, axis=-1), rankdata(labels, axis=-1))
    return 100.0 * np.where(constant, 0.0, r)


# The GLUE metrics of tasks/metrics.py over the last axis, for any number of resamples at once. A metric
# that is a mean of per-example scores (SQuAD's exact match and F1) is a column of the example table instead.
METRICS = {"accuracy": accuracy, "f1": binary_f1, "mcc": mcc, "pearson": pearson, "spearman": spearman}


def score(metric: str, examples: pd.DataFrame, draws: np.ndarray) -> np.ndarray:
    """`metric` (percent) of one run's example table on each row of `draws` (example positions): [resamples]."""
    if metric in examples.columns:
        return 100.0 * examples[metric].to_numpy(np.float64)[draws].mean(-1)
    if metric not in METRICS:
        raise KeyError(f"no per-example form of metric {metric!r}; the table has {list(examples.columns)}")
    return METRICS[metric](examples.label.to_numpy()[draws], examples.prediction.to_numpy()[draws])


def same_examples(tables: list[pd.DataFrame]) -> bool:
    """Whether the runs scored the same examples in the same order (what pairing needs): equal lengths and
    equal labels, or equal question ids. Regression labels are compared as float32: a model's evaluation
    reads them through float32 tensors, the majority row straight from the data."""
    column = "id" if "id" in tables[0].columns else "label"
    first = tables[0][column].to_numpy()

    def same(values: np.ndarray) -> bool:
        if len(values) != len(first):
            return False
        if first.dtype.kind == "f" or values.dtype.kind == "f":
            return bool((values.astype(np.float32) == first.astype(np.float32)).all())
        return bool((values == first).all())

    return all(same(t[column].to_numpy()) for t in tables[1:])


def seed_means(per_seed: np.ndarray, seed_draws: np.ndarray) -> np.ndarray:
    """per_seed [seeds, resamples], seed_draws [resamples, seeds] (seed positions): the mean over each
    replicate's drawn seeds, [resamples]."""
    return per_seed[seed_draws, np.arange(per_seed.shape[1])[:, None]].mean(-1)


def interval(replicates: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The percentile interval; NaN where a replicate is NaN."""
    if np.isnan(replicates).any():
        return float("nan"), float("nan")
    tail = (1 - confidence) / 2
    low, high = np.quantile(replicates, [tail, 1 - tail])
    return float(low), float(high)


def verdict(low: float, high: float, threshold: float, at_most: bool = False) -> str:
    """holds / fails / inconclusive for a claim `statistic >= threshold` (`at_most`: `<= threshold`) from the
    interval [low, high]; an interval that contains the threshold, its ends included, is inconclusive."""
    if np.isnan(low) or np.isnan(high):
        return "not measured"
    below, above = high < threshold, low > threshold
    if at_most:
        below, above = above, below
    return "holds" if above else "fails" if below else "inconclusive"


class Replicates:
    """Each method's bootstrap replicates of its main metric per result key, and of their average.

    `runs`: (method, seed, key, example table) for every run that has one; `metrics`: the main metric of every
    key. Methods whose runs of a key lack examples, or disagree on them, have no replicates for that key."""

    def __init__(
        self,
        runs: list[tuple[str, int, str, pd.DataFrame]],
        metrics: dict[str, str],
        resamples: int = RESAMPLES,
        seed: int = SEED,
    ):
        rng = np.random.default_rng(seed)
        self.resamples = resamples
        by_key: dict[str, dict[str, dict[int, pd.DataFrame]]] = {}
        for method, run_seed, key, table in runs:
            by_key.setdefault(key, {}).setdefault(method, {})[run_seed] = table
        self.per_key: dict[str, dict[str, np.ndarray]] = {}
        seed_draws: dict[tuple, np.ndarray] = {}
        for key in sorted(by_key):
            methods = by_key[key]
            tables = [t for seeds in methods.values() for t in seeds.values()]
            if key not in metrics or not same_examples(tables):
                continue
            n = len(tables[0])
            draws = rng.integers(n, size=(resamples, n))
            for method, seeds in sorted(methods.items()):
                order = tuple(sorted(seeds))
                if order not in seed_draws:
                    seed_draws[order] = rng.integers(len(order), size=(resamples, len(order)))
                per_seed = np.stack([score(metrics[key], seeds[s], draws) for s in order])
                self.per_key.setdefault(method, {})[key] = seed_means(per_seed, seed_draws[order])

    def key(self, method: str, key: str) -> np.ndarray:
        """Replicates of `method` on `key`; NaN when it has none."""
        return self.per_key.get(method, {}).get(key, np.full(self.resamples, np.nan))

    def average(self, method: str, keys: list[str]) -> np.ndarray:
        """Replicates of the mean over `keys` (the report's average); NaN when a key has none."""
        return np.mean([self.key(method, key) for key in keys], axis=0)
