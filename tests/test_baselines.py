"""The controls beside MoEBERT: the half-depth student, the dense-narrow student and the majority row."""

import copy

import numpy as np
import pytest
import torch
from conftest import inputs, random_batch, task_batch, tiny_bert, tiny_task_model

from moebert.backbones import backbone_of
from moebert.errors import MoebertError
from moebert.students.dense_narrow import dense_narrow
from moebert.students.distil_half import distil_half, half_depth_layers
from moebert.students.majority import majority_logits, majority_prediction
from moebert.tasks.metrics import compute_metrics


def teacher(layers=4):
    return tiny_bert(seed=3, num_hidden_layers=layers, initializer_range=0.3)


def test_half_depth_student_copies_every_other_teacher_layer_exactly(pair_backbone):
    big = tiny_task_model(pair_backbone, seed=3, num_hidden_layers=4, initializer_range=0.3)
    student, layers = distil_half(big)
    assert layers == [1, 3] and student.config.num_hidden_layers == 2 and type(student) is type(big)
    assert student.config.intermediate_size == big.config.intermediate_size
    backbone = backbone_of(big.config)
    for s, t in zip(
        backbone.layer_list(student), [backbone.layer_list(big)[1], backbone.layer_list(big)[3]], strict=True
    ):
        for (name, a), (_, b) in zip(s.state_dict().items(), t.state_dict().items(), strict=True):
            assert torch.equal(a, b), name
    others = {k: v for k, v in big.state_dict().items() if ".layer." not in k}
    assert others and all(torch.equal(student.state_dict()[k], v) for k, v in others.items())
    # Which is the teacher with layers 0 and 2 skipped.
    batch = inputs(task_batch(big.config, seed=5))
    skipped = copy.deepcopy(big)
    del backbone.layer_list(skipped)[2]
    del backbone.layer_list(skipped)[0]
    skipped.config.num_hidden_layers = 2
    with torch.no_grad():
        torch.testing.assert_close(student.eval()(**batch).logits, skipped(**batch).logits, rtol=0, atol=0)


def test_half_depth_needs_an_even_depth():
    assert half_depth_layers(6) == [1, 3, 5] and half_depth_layers(12) == [1, 3, 5, 7, 9, 11]
    assert half_depth_layers(2) == [1]
    for odd in (0, 1):
        with pytest.raises(MoebertError, match=f"\\(got {odd}\\)"):
            half_depth_layers(odd)
    with pytest.raises(MoebertError, match="even number of teacher layers \\(got 3\\)"):
        distil_half(teacher(layers=3))


def _orders(model, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [
        torch.randperm(model.config.intermediate_size, generator=gen)
        for _ in range(model.config.num_hidden_layers)
    ]


def test_dense_narrow_with_every_neuron_equals_the_teacher(pair_backbone):
    big = tiny_task_model(pair_backbone, seed=3, initializer_range=0.3)
    student, kept = dense_narrow(big, _orders(big), width=64)
    assert kept == [list(range(64))] * 2 and type(student) is type(big)
    batch = inputs(task_batch(big.config, seed=5))
    with torch.no_grad():
        torch.testing.assert_close(student.eval()(**batch).logits, big(**batch).logits, rtol=1e-6, atol=1e-6)


def test_dense_narrow_keeps_the_most_important_neurons():
    big = teacher(layers=2)
    orders = _orders(big, seed=1)
    student, kept = dense_narrow(big, orders, width=10)
    assert student.config.intermediate_size == 10
    for layer_s, layer_t, order, idx in zip(student.bert.encoder.layer, big.bert.encoder.layer, orders, kept):
        assert idx == sorted(order[:10].tolist())
        assert torch.equal(layer_s.intermediate.dense.weight, layer_t.intermediate.dense.weight[idx])
        assert torch.equal(layer_s.intermediate.dense.bias, layer_t.intermediate.dense.bias[idx])
        assert torch.equal(layer_s.output.dense.weight, layer_t.output.dense.weight[:, idx])
        assert torch.equal(layer_s.output.dense.bias, layer_t.output.dense.bias)
        assert torch.equal(layer_s.attention.self.query.weight, layer_t.attention.self.query.weight)
    # Dropping neurons changes the function: a narrow student is not the teacher.
    batch = random_batch(seed=5)
    with torch.no_grad():
        assert (student.eval()(**batch).logits - big(**batch).logits).abs().max() > 1e-3
    with pytest.raises(MoebertError, match="width 65 must be between 1 and the FFN width 64"):
        dense_narrow(big, orders, width=65)
    one, kept = dense_narrow(big, orders, width=1)
    assert one.config.intermediate_size == 1 and kept == [[order[0].item()] for order in orders]
    with pytest.raises(MoebertError, match="^importance has 1 layers but the model has 2$"):
        dense_narrow(big, orders[:1], width=8)


def test_majority_row_equals_a_hand_computed_value():
    train = [1, 0, 1, 1, 2]
    assert majority_prediction(train, regression=False) == 1
    assert majority_prediction([0, 1, 1, 0], regression=False) == 0  # a tie: the lowest class
    assert majority_prediction([1.0, 2.0, 4.5], regression=True) == pytest.approx(2.5)
    assert majority_prediction([2], regression=False) == 2
    with pytest.raises(MoebertError, match="^the majority baseline needs a non-empty train split$"):
        majority_prediction([], regression=False)
    dev = np.array([1, 0, 1, 0, 0])  # MRPC-like: 2 of 5 are class 1
    result = compute_metrics("mrpc", majority_logits(1, 5, 2), dev)
    # accuracy 2/5; F1 of always "1": precision 2/5, recall 1 -> 2 * 0.4 / 1.4
    assert result == pytest.approx({"accuracy": 40.0, "f1": 100 * 0.8 / 1.4})
    stsb = compute_metrics("stsb", majority_logits(2.5, 3, 1), np.array([1.0, 2.0, 5.0]))
    assert stsb == {"pearson": 0.0, "spearman": 0.0}  # a constant has no correlation
    assert compute_metrics("cola", majority_logits(1, 4, 2), np.array([1, 1, 0, 1])) == {"mcc": 0.0}
