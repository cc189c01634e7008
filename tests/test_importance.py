"""Eq. 4 with one backward pass per batch equals the literal per-example autograd computation."""

import pytest
import torch
from conftest import random_batch, randomize_biases, task_batch, tiny_bert, tiny_task_model
from transformers import BertConfig, BertForSequenceClassification

from moebert.training.importance import importance_scores, importance_scores_autograd, orders


@pytest.mark.parametrize(
    "head, num_labels",
    [("classification", 3), ("classification", 1), ("question-answering", 2)],
    ids=["classification", "regression", "qa"],
)
def test_one_backward_equals_per_example_autograd(pair_backbone, head, num_labels):
    model = tiny_task_model(pair_backbone, head, num_labels=num_labels).double()
    batches = [task_batch(model.config, num_labels=num_labels, seed=s, head=head) for s in (1, 2)]
    if num_labels == 1:
        for b in batches:
            b["labels"] = b["labels"].double()
    fast = importance_scores(model, batches, progress=False)
    slow = importance_scores_autograd(model, batches)
    assert len(fast) == len(slow) == 2
    for f, s in zip(fast, slow, strict=True):
        assert f.shape == (64,)
        torch.testing.assert_close(f, s, rtol=1e-5, atol=0)
        assert (s > 0).all()


def test_float32_scores_agree_within_1e_5():
    model = tiny_bert()
    batch = [random_batch(batch=6)]
    for f, s in zip(
        importance_scores(model, batch, progress=False), importance_scores_autograd(model, batch)
    ):
        torch.testing.assert_close(f, s, rtol=1e-5, atol=1e-7)


def test_abs_is_taken_per_example_not_per_batch():
    model = tiny_bert()
    a, b = random_batch(batch=2, seed=3), random_batch(batch=2, seed=4)
    both = {k: torch.cat([a[k], b[k]]) for k in a}
    summed = [
        x + y for x, y in zip(importance_scores(model, [a], False), importance_scores(model, [b], False))
    ]
    for s, t in zip(importance_scores(model, [both], False), summed):
        torch.testing.assert_close(s, t, rtol=1e-5, atol=1e-7)


def test_orders_put_the_most_important_first():
    assert orders([torch.tensor([0.1, 3.0, 2.0, 3.0])])[0].tolist() == [1, 3, 2, 0]


def test_scores_ignore_dropout_the_model_is_put_in_eval_mode():
    """A model handed over in training mode with dropout on scores as in eval mode (and is left in eval)."""
    model = tiny_bert(hidden_dropout_prob=0.3, attention_probs_dropout_prob=0.3)
    batch = [random_batch(seed=6)]
    expected = importance_scores(model.eval(), batch, progress=False)
    for score in (importance_scores, importance_scores_autograd):
        torch.manual_seed(0)
        got = (
            score(model.train(), batch)
            if score is importance_scores_autograd
            else score(model.train(), batch, False)
        )
        assert not model.training
        for g, e in zip(got, expected, strict=True):
            torch.testing.assert_close(g, e, rtol=1e-5, atol=1e-7)


def test_fast_scores_leave_the_bias_out_even_when_it_is_large():
    """w1_j . grad_{w1_j} L = sum_t dL/dz_tj (z_tj - b1_j): the one-backward form must take b1 back out of z.
    Large first-layer biases make any slip visible."""
    model = tiny_bert().double()
    batch = [random_batch(seed=7)]
    fast, slow = importance_scores(model, batch, False), importance_scores_autograd(model, batch)
    for f, s in zip(fast, slow, strict=True):
        torch.testing.assert_close(f, s, rtol=1e-7, atol=0)
    with torch.no_grad():
        for layer in model.bert.encoder.layer:
            layer.intermediate.dense.bias.add_(0.5)
    shifted = importance_scores_autograd(model, batch)
    for f, s in zip(importance_scores(model, batch, False), shifted, strict=True):
        torch.testing.assert_close(f, s, rtol=1e-7, atol=0)


def test_scores_by_hand_for_a_one_neuron_network():
    """A BERT whose FFN is a single neuron per layer: Eq. 4 is one number per layer, summed over examples of
    |w1 . dL/dw1 + w2 . dL/dw2|, here from one autograd call per example."""
    config = BertConfig(
        vocab_size=50,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=1,
        max_position_embeddings=32,
        num_labels=3,
    )
    torch.manual_seed(0)
    model = randomize_biases(BertForSequenceClassification(config)).double().eval()
    batches = [random_batch(batch=3, seed=8)]
    expected = [torch.zeros(1, dtype=torch.float64) for _ in range(2)]
    inputs = {k: v for k, v in batches[0].items() if k != "labels"}
    for i in range(3):
        single = {k: v[i : i + 1] for k, v in inputs.items()}
        loss = torch.nn.functional.cross_entropy(model(**single).logits, batches[0]["labels"][i : i + 1])
        for layer_index, layer in enumerate(model.bert.encoder.layer):
            w1, w2 = layer.intermediate.dense.weight, layer.output.dense.weight
            g1, g2 = torch.autograd.grad(loss, [w1, w2], retain_graph=True)
            expected[layer_index] += ((w1 * g1).sum() + (w2 * g2).sum()).abs()
    for got, exp in zip(importance_scores(model, batches, False), expected, strict=True):
        assert got.dtype == torch.float64 and got.device.type == "cpu"
        torch.testing.assert_close(got, exp, rtol=1e-9, atol=0)


def test_no_hooks_are_left_behind():
    model = tiny_bert()
    importance_scores(model, [random_batch()], progress=False)
    for layer in model.bert.encoder.layer:
        assert not layer.intermediate._forward_hooks and not layer.intermediate.dense._forward_hooks


def test_per_example_loss_by_hand():
    from moebert.training.importance import per_example_loss

    # Regression: squared error (1.5 - 1)^2, (0 - 2)^2, in the logits' dtype.
    got = per_example_loss(torch.tensor([[1.5], [0.0]]), torch.tensor([1.0, 2.0], dtype=torch.float64))
    assert got.dtype == torch.float32 and got.tolist() == [0.25, 4.0]
    # Classification: -log softmax at the gold label; logits (0, log 3) give p = (1/4, 3/4).
    ce = per_example_loss(
        torch.tensor([[0.0, float(torch.log(torch.tensor(3.0)))]] * 2), torch.tensor([0, 1])
    )
    torch.testing.assert_close(
        ce, torch.tensor([float(torch.log(torch.tensor(4.0))), float(torch.log(torch.tensor(4 / 3)))])
    )


def test_progress_bar_on_request_only(capsys):
    model = tiny_bert()
    importance_scores(model, [random_batch()])
    assert "importance: 100%" in capsys.readouterr().err
    importance_scores(model, [random_batch()], progress=False)
    assert capsys.readouterr().err == ""


def test_scores_follow_the_model_not_the_default_device():
    """Every tensor is made on the model's device: with another default device (as on a GPU host with a
    CPU model) the scores are unchanged."""
    model = tiny_bert()
    batch = [random_batch(seed=9)]
    expected = importance_scores(model, batch, False)
    with torch.device("meta"):
        fast = importance_scores(model, batch, False)
        slow = importance_scores_autograd(model, batch)
    for f, s, e in zip(fast, slow, expected, strict=True):
        assert torch.equal(f, e)
        torch.testing.assert_close(s, e, rtol=1e-5, atol=1e-7)


def test_orders_break_ties_by_index():
    gen = torch.Generator().manual_seed(0)
    scores = torch.randint(0, 5, (4000,), generator=gen).double()
    expected = sorted(range(4000), key=lambda j: (-scores[j].item(), j))
    assert orders([scores])[0].tolist() == expected
