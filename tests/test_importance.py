"""Eq. 4 with one backward pass per batch equals the literal per-example autograd computation."""

import pytest
import torch
from conftest import random_batch, tiny_bert

from moebert.importance import importance_scores, importance_scores_autograd, orders


@pytest.mark.parametrize("num_labels", [3, 1], ids=["classification", "regression"])
def test_one_backward_equals_per_example_autograd(num_labels):
    model = tiny_bert(num_labels=num_labels).double()
    batches = [random_batch(num_labels=num_labels, seed=s) for s in (1, 2)]
    for b in batches:
        b["labels"] = b["labels"].double() if num_labels == 1 else b["labels"]
    fast = importance_scores(model, batches, progress=False)
    slow = importance_scores_autograd(model, batches)
    for f, s in zip(fast, slow, strict=True):
        assert f.shape == (64,)
        torch.testing.assert_close(f, s, rtol=1e-5, atol=0)
        assert (s > 0).all()


def test_float32_scores_agree_within_1e_5():
    model = tiny_bert()
    batch = [random_batch(batch=6)]
    for f, s in zip(importance_scores(model, batch, progress=False), importance_scores_autograd(model, batch)):
        torch.testing.assert_close(f, s, rtol=1e-5, atol=1e-7)


def test_abs_is_taken_per_example_not_per_batch():
    model = tiny_bert()
    a, b = random_batch(batch=2, seed=3), random_batch(batch=2, seed=4)
    both = {k: torch.cat([a[k], b[k]]) for k in a}
    summed = [x + y for x, y in zip(importance_scores(model, [a], False), importance_scores(model, [b], False))]
    for s, t in zip(importance_scores(model, [both], False), summed):
        torch.testing.assert_close(s, t, rtol=1e-5, atol=1e-7)


def test_orders_put_the_most_important_first():
    assert orders([torch.tensor([0.1, 3.0, 2.0, 3.0])])[0].tolist() == [1, 3, 2, 0]
