"""SQuAD exact match and F1 in percent (x100), following the official evaluation scripts evaluate-v1.1.py
(SQuAD v1.1) and evaluate-v2.0.py (SQuAD v2.0) definition for definition.

Written by hand because runs are offline: the `evaluate` library's squad metrics are scripts downloaded from
the hub at run time.

Departures from the official scripts:
- v2.0 turns a prediction into "no answer" when its na_prob exceeds a threshold (default 1.0) before scoring;
  here the caller has already chosen null or span with its own threshold, so the overall numbers are those
  of the given predictions (an empty string is the null answer), as the official default gives for
  probabilities.
- A missing prediction is an error (the caller gives every id), not a 0; v2.0's "exact" key is exact_match.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Callable

from moebert.errors import MoebertError

_PUNCTUATION = set(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(text: str) -> str:
    """Lower case, no punctuation, no articles, single spaces (the official order)."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def _overlap_f1(pred_tokens: list[str], gold_tokens: list[str]) -> float:
    num_same = sum((Counter(pred_tokens) & Counter(gold_tokens)).values())
    if num_same == 0:
        return 0.0
    precision = num_same / len(pred_tokens)
    recall = num_same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def exact_match_v1(prediction: str, gold: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(gold))


def f1_v1(prediction: str, gold: str) -> float:
    return _overlap_f1(normalize_answer(prediction).split(), normalize_answer(gold).split())


def exact_match_v2(prediction: str, gold: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(gold))


def f1_v2(prediction: str, gold: str) -> float:
    pred_tokens, gold_tokens = normalize_answer(prediction).split(), normalize_answer(gold).split()
    # v2.0 scores "no answer" against "no answer" as a full match, where v1.1's overlap would give 0.
    if not pred_tokens or not gold_tokens:
        return float(pred_tokens == gold_tokens)
    return _overlap_f1(pred_tokens, gold_tokens)


def _check_ids(scores: dict, answers: dict[str, list[str]], what: str) -> None:
    missing = [qid for qid in answers if qid not in scores]
    if missing:
        raise MoebertError(
            f"{what} lack {len(missing)} of the {len(answers)} question ids (first missing: {missing[0]!r})"
        )


def _best(metric: Callable[[str, str], float], prediction: str, golds: list[str]) -> float:
    return max(metric(prediction, gold) for gold in golds)


def question_scores(
    predictions: dict[str, str], answers: dict[str, list[str]], unanswerable: bool
) -> tuple[dict[str, float], dict[str, float]]:
    """Exact match and F1 of every question of `answers` (0 to 1, the best over its golds), as v1.1 scores
    them or, with `unanswerable`, as v2.0 does (see squad_v2). Their means are the overall scores; the
    per-question values are what a resampling of the questions needs (reporting/bootstrap.py)."""
    _check_ids(predictions, answers, "predictions")
    if unanswerable:
        golds = {qid: [t for t in texts if normalize_answer(t)] or [""] for qid, texts in answers.items()}
        em, f1 = exact_match_v2, f1_v2
    else:
        empty = [qid for qid, texts in answers.items() if not texts]
        if empty:
            # v1.1 has no unanswerable questions; the official script would crash on max() of nothing.
            raise MoebertError(
                f"SQuAD v1.1 needs gold answers; {len(empty)} questions have none (first: {empty[0]!r})"
            )
        golds, em, f1 = answers, exact_match_v1, f1_v1
    exact = {qid: _best(em, predictions[qid], g) for qid, g in golds.items()}
    overlap = {qid: _best(f1, predictions[qid], g) for qid, g in golds.items()}
    return exact, overlap


def squad_v1(predictions: dict[str, str], answers: dict[str, list[str]]) -> dict[str, float]:
    """{"exact_match", "f1"} in percent over the question ids of `answers`, each the max over its golds."""
    exact, f1 = question_scores(predictions, answers, unanswerable=False)
    n = len(answers)
    return {"exact_match": 100.0 * sum(exact.values()) / n, "f1": 100.0 * sum(f1.values()) / n}


def _find_best_thresh(
    predictions: dict[str, str],
    raw: dict[str, float],
    null_scores: dict[str, float],
    has_ans: dict[str, bool],
) -> tuple[float, float]:
    """Best score over thresholds on null_scores: every question above the threshold answered "no answer"."""
    # Threshold below every score: all null, which is right exactly on the unanswerable questions.
    cur = best = sum(not h for h in has_ans.values())
    best_thresh = 0.0
    for qid in sorted(raw, key=lambda q: null_scores[q]):
        # Answering this question too: gain its score if answerable; lose the free null point if not,
        # unless the prediction was empty anyway (the official test is on the raw string).
        cur += raw[qid] if has_ans[qid] else (-1 if predictions[qid] else 0)
        if cur > best:
            best, best_thresh = cur, null_scores[qid]
    return 100.0 * best / len(raw), float(best_thresh)


def squad_v2(
    predictions: dict[str, str], answers: dict[str, list[str]], null_scores: dict[str, float] | None = None
) -> dict[str, float]:
    """Exact match and F1 in percent over the question ids of `answers`, split into HasAns/NoAns, and with
    `null_scores` (higher = more likely unanswerable) the best exact match and F1 over null thresholds.

    `answers[qid]` lists the gold texts, empty for an unanswerable question. As in the official script, texts
    that normalize to nothing are dropped, and a question left with none is scored against "" (only an empty
    prediction scores); HasAns/NoAns follow the raw list being non-empty, also as there."""
    exact, f1 = question_scores(predictions, answers, unanswerable=True)
    has_ans = {qid: bool(texts) for qid, texts in answers.items()}

    result: dict[str, float] = {
        "exact_match": 100.0 * sum(exact.values()) / len(answers),
        "f1": 100.0 * sum(f1.values()) / len(answers),
    }
    for prefix, kind in (("HasAns", True), ("NoAns", False)):
        qids = [qid for qid in answers if has_ans[qid] == kind]
        if qids:
            result[f"{prefix}_exact_match"] = 100.0 * sum(exact[q] for q in qids) / len(qids)
            result[f"{prefix}_f1"] = 100.0 * sum(f1[q] for q in qids) / len(qids)
            result[f"{prefix}_total"] = len(qids)
    if null_scores is not None:
        _check_ids(null_scores, answers, "null_scores")
        for name, raw in (("exact_match", exact), ("f1", f1)):
            result[f"best_{name}"], result[f"best_{name}_thresh"] = _find_best_thresh(
                predictions, raw, null_scores, has_ans
            )
    return result
