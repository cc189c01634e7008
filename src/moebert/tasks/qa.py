"""Extractive QA windows and answer search (SQuAD; squad.py loads the questions).

Pre-processing: each question with its context becomes windows of at most `max_length` tokens, question
first, the context cut into overlapping pieces (`doc_stride` tokens shared by neighbours). Training windows
carry the answer's start and end token; a window that does not contain the whole answer, and an unanswerable
question (v2.0), point at [CLS] (position 0).

Post-processing (`best_answers`): for every question, over all its windows, the `n_best` highest start and
end logits are paired into spans that lie inside the context, do not run backwards and are at most
`max_answer_length` tokens long; the best span by start + end logit wins. For v2.0 the null score (the
[CLS] start + end logits, the lowest over the windows) competes: the answer is empty when
null - best span > `null_threshold`. That difference is also returned as the question's no-answer score,
from which the metrics find the best threshold.

Loss (`span_loss`): the mean of the start and the end cross-entropies over a window's own positions. Padding
is no position of the window: it is left out of both distributions, so a window's loss does not depend on
the batch it is padded in (BertForQuestionAnswering's own loss runs over the padding too).
"""

from __future__ import annotations

from dataclasses import dataclass

import datasets
import numpy as np
import torch
import torch.nn.functional as F

from moebert.errors import MoebertError


@dataclass
class QaSettings:
    """How windows are cut and answers searched (defaults: the usual SQuAD settings)."""

    doc_stride: int = 128
    n_best: int = 20
    max_answer_length: int = 30
    null_threshold: float = 0.0


def without_padding(logits: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    """Start or end logits [windows, positions] with the padding positions made impossible."""
    if attention_mask is None:
        return logits
    return logits.masked_fill(attention_mask == 0, torch.finfo(logits.dtype).min)


def span_loss(
    start_logits: torch.Tensor,
    end_logits: torch.Tensor,
    start_positions: torch.Tensor,
    end_positions: torch.Tensor,
    attention_mask: torch.Tensor | None,
) -> torch.Tensor:
    """The QA loss of every window [windows]: the mean of its start and end cross-entropies over its own
    positions."""
    start = F.cross_entropy(without_padding(start_logits, attention_mask), start_positions, reduction="none")
    end = F.cross_entropy(without_padding(end_logits, attention_mask), end_positions, reduction="none")
    return (start + end) / 2


def _windows(examples: datasets.Dataset, tokenizer, max_length: int, doc_stride: int):
    if not getattr(tokenizer, "is_fast", False):
        raise MoebertError(
            "question answering needs a fast tokenizer (offset mappings); this model's is slow"
        )
    if doc_stride >= max_length:
        raise MoebertError(f"doc_stride {doc_stride} must be smaller than max_length {max_length}")
    # Leading white space in a question only costs tokens (some SQuAD v2 questions have a lot of it).
    questions = [q.lstrip() for q in examples["question"]]
    return tokenizer(
        questions,
        list(examples["context"]),
        truncation="only_second",
        max_length=max_length,
        stride=doc_stride,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
    )


def _context_span(encoded, i: int) -> tuple[int, int]:
    """First and last token of window i that belong to the context."""
    sequence = encoded.sequence_ids(i)
    tokens = [t for t, s in enumerate(sequence) if s == 1]
    return tokens[0], tokens[-1]


def answer_positions(
    offsets: list[tuple[int, int]], context: tuple[int, int], start_char: int, end_char: int
) -> tuple[int, int]:
    """Start and end token of the answer characters [start_char, end_char) in a window, (0, 0) ([CLS]) if
    the window's context tokens `context` (first, last) do not hold all of it."""
    first, last = context
    if offsets[first][0] > start_char or offsets[last][1] < end_char:
        return 0, 0
    start = max(t for t in range(first, last + 1) if offsets[t][0] <= start_char)
    end = min(t for t in range(first, last + 1) if offsets[t][1] >= end_char)
    return start, end


def train_features(
    examples: datasets.Dataset, tokenizer, max_length: int, doc_stride: int
) -> datasets.Dataset:
    """Model inputs with start_positions and end_positions (the first gold answer), one row per window."""
    encoded = _windows(examples, tokenizer, max_length, doc_stride)
    starts, ends = [], []
    for i, example in enumerate(encoded["overflow_to_sample_mapping"]):
        answers = examples[example]["answers"]
        if not answers["text"]:
            start, end = 0, 0
        else:
            start_char = answers["answer_start"][0]
            start, end = answer_positions(
                encoded["offset_mapping"][i],
                _context_span(encoded, i),
                start_char,
                start_char + len(answers["text"][0]),
            )
        starts.append(start)
        ends.append(end)
    inputs = {name: encoded[name] for name in tokenizer.model_input_names if name in encoded}
    return datasets.Dataset.from_dict({**inputs, "start_positions": starts, "end_positions": ends})


@dataclass
class EvalWindows:
    """Model inputs of the evaluation windows, and per window its question (row index) and the character
    span of every token, None outside the context."""

    inputs: datasets.Dataset
    example: list[int]
    offsets: list[list[tuple[int, int] | None]]


def eval_features(examples: datasets.Dataset, tokenizer, max_length: int, doc_stride: int) -> EvalWindows:
    encoded = _windows(examples, tokenizer, max_length, doc_stride)
    offsets = []
    for i, window in enumerate(encoded["offset_mapping"]):
        first, last = _context_span(encoded, i)
        offsets.append([tuple(span) if first <= t <= last else None for t, span in enumerate(window)])
    inputs = {name: encoded[name] for name in tokenizer.model_input_names if name in encoded}
    return EvalWindows(
        datasets.Dataset.from_dict(inputs), list(encoded["overflow_to_sample_mapping"]), offsets
    )


def best_answers(
    examples: datasets.Dataset,
    windows: EvalWindows,
    start_logits: list[np.ndarray],
    end_logits: list[np.ndarray],
    with_null: bool,
    n_best: int = 20,
    max_answer_length: int = 30,
    null_threshold: float = 0.0,
) -> tuple[dict[str, str], dict[str, float]]:
    """The answer text of every question (by id) and, with `with_null` (v2.0), its no-answer score
    (null - best span). `start_logits[w]`/`end_logits[w]` are window w's logits over its tokens."""
    by_example: dict[int, list[int]] = {}
    for w, example in enumerate(windows.example):
        by_example.setdefault(example, []).append(w)
    answers, null_scores = {}, {}
    for example, row in enumerate(examples):
        best_score, best_text, null = -np.inf, "", np.inf
        for w in by_example.get(example, []):
            starts, ends, offsets = start_logits[w], end_logits[w], windows.offsets[w]
            null = min(null, float(starts[0] + ends[0]))
            top_starts = np.argsort(starts)[::-1][:n_best]
            top_ends = np.argsort(ends)[::-1][:n_best]
            for s in top_starts:
                for e in top_ends:
                    if offsets[s] is None or offsets[e] is None or e < s or e - s + 1 > max_answer_length:
                        continue
                    score = float(starts[s] + ends[e])
                    if score > best_score:
                        best_score, best_text = score, row["context"][offsets[s][0] : offsets[e][1]]
        if with_null:
            null_scores[row["id"]] = null - best_score  # +inf when no span qualifies: certainly no answer
            answers[row["id"]] = "" if null - best_score > null_threshold else best_text
        else:
            answers[row["id"]] = best_text
    return answers, null_scores
