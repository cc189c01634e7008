"""Expert adaptation (docs/method.md §3): expert widths, neuron choice, the adapted student against the dense teacher
with every token restricted to its expert's neurons."""

import re

import pytest
import torch
from conftest import random_batch, tiny_bert

from moebert.errors import MoebertError
from moebert.models.modeling import MoEBertForSequenceClassification
from moebert.models.routing import hash_balance_table
from moebert.students.moe import (
    CONSTRUCTIONS,
    adapt,
    balanced_kmeans,
    check_expert_shape,
    construct,
    expert_indices,
    token_counts,
)


@pytest.fixture(scope="module")
def teacher():
    return tiny_bert(seed=3, initializer_range=0.3)  # FFNs that move the logits visibly


def random_orders(layers=2, width=64, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randperm(width, generator=gen) for _ in range(layers)]


# --- expert widths -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "ffn, n, width, shared",
    [
        (10, 3, 4, 1),  # 1 + 9 // 3 = 4: just fits
        (10, 3, 4, 3),  # 3 + 7 // 3 = 5
        (10, 3, 5, 3),  # 3 + 7 // 3 = 5: just fits
        (10, 1, 10, 0),  # one expert as wide as the FFN
        (10, 2, 5, 0),  # an even split
        (10, 3, 5, 5),  # every neuron shared
        (1, 1, 1, 0),  # the smallest valid setting
    ],
)
def test_settings_at_the_boundary_are_accepted(ffn, n, width, shared):
    check_expert_shape(ffn, n, width, shared)


@pytest.mark.parametrize(
    "ffn, n, width, shared, message",
    [
        # d = 10, N = 3, s = 1: 1 + 9 // 3 = 4 < 5. s = 2 gives 2 + 8 // 3 = 4, s = 3 gives 3 + 7 // 3 = 5.
        (
            10,
            3,
            5,
            1,
            (
                "from an FFN of width 10 sharing 1 neurons: each expert gets only 1 shared + 3 private = 4 "
                "neurons. Use expert_dim <= 4, or shared_dim >= 3, or fewer experts"
            ),
        ),
        # s = 0..4 give 3, 4, 4, 5, 6.
        (
            10,
            3,
            6,
            0,
            (
                "each expert gets only 0 shared + 3 private = 3 neurons. Use expert_dim <= 3, "
                "or shared_dim >= 4"
            ),
        ),
        # 4 experts of width 5 from 11: s = 2 gives 2 + 9 // 4 = 4, s = 3 gives 3 + 8 // 4 = 5.
        (
            11,
            4,
            5,
            2,
            (
                "cannot build 4 experts of width 5 from an FFN of width 11 sharing 2 neurons: each expert "
                "gets only 2 shared + 2 private = 4 neurons. Use expert_dim <= 4, or shared_dim >= 3"
            ),
        ),
        # Only sharing everything fits: s = 8 gives 8 + 2 // 3 = 8 < 9.
        (
            10,
            3,
            9,
            0,
            "each expert gets only 0 shared + 3 private = 3 neurons. Use expert_dim <= 3, or shared_dim >= 9",
        ),
        (10, 1, 11, 0, "expert_dim=11 exceeds the FFN width 10; use expert_dim <= 10"),
        (10, 3, 4, 5, "shared_dim=5 exceeds expert_dim=4; use shared_dim <= 4"),
        (10, 0, 4, 1, "need num_experts >= 1, expert_dim >= 1, shared_dim >= 0 (got 0, 4, 1)"),
        (10, 3, 0, 0, "need num_experts >= 1, expert_dim >= 1, shared_dim >= 0 (got 3, 0, 0)"),
        (10, 3, 4, -1, "need num_experts >= 1, expert_dim >= 1, shared_dim >= 0 (got 3, 4, -1)"),
    ],
)
def test_settings_past_the_boundary_fail_with_a_fix(ffn, n, width, shared, message):
    with pytest.raises(MoebertError, match=re.escape(message)):
        check_expert_shape(ffn, n, width, shared)


def test_suggested_fixes_work():
    """The expert_dim and shared_dim the message suggests pass the check; one neuron less shared does not."""
    for ffn, n, width, shared in [
        (10, 3, 5, 1),
        (10, 3, 6, 0),
        (64, 4, 32, 16),
        (3072, 4, 1024, 0),
        (100, 7, 30, 2),
    ]:
        with pytest.raises(MoebertError) as err:
            check_expert_shape(ffn, n, width, shared)
        fit, min_shared = map(
            int, re.search(r"expert_dim <= (\d+), or shared_dim >= (\d+)", str(err.value)).groups()
        )
        check_expert_shape(ffn, n, fit, shared)
        check_expert_shape(ffn, n, width, min_shared)
        with pytest.raises(MoebertError):
            check_expert_shape(ffn, n, fit + 1, shared)
        with pytest.raises(MoebertError):
            check_expert_shape(ffn, n, width, min_shared - 1)


# --- neuron choice -----------------------------------------------------------------------------------------


def test_expert_indices_when_the_rest_does_not_divide():
    order = torch.tensor([5, 9, 0, 7, 2, 8, 1, 6, 3, 4])  # by importance
    experts = expert_indices(order, num_experts=3, expert_dim=4, shared_dim=1)
    # shared [5]; rest 9 0 7 2 8 1 6 3 4 dealt round-robin: e0 9 2 6, e1 0 8 3, e2 7 1 4.
    assert [e.tolist() for e in experts] == [[5, 9, 2, 6], [5, 0, 8, 3], [5, 7, 1, 4]]
    # Narrower experts keep the most important of their neurons.
    narrow = expert_indices(order, num_experts=3, expert_dim=3, shared_dim=2)
    assert [e.tolist() for e in narrow] == [[5, 9, 0], [5, 9, 7], [5, 9, 2]]


def test_token_counts():
    assert token_counts([[1, 2, 2], [0, 4], []], vocab_size=6).tolist() == [1, 1, 2, 0, 1, 0]
    empty = token_counts([[], []], vocab_size=3)
    assert empty.dtype == torch.long and empty.tolist() == [0, 0, 0]


# --- adaptation --------------------------------------------------------------------------------------------


def restricted_teacher_forward(teacher, batch, table, indices):
    """The dense teacher with, in each layer, every token's FFN activations outside its expert's neurons set
    to zero: W2[:, idx] gelu(W1[idx] a + b1[idx]) + b2 is exactly that expert."""
    ids = batch["input_ids"]
    handles = []
    for layer_index, layer in enumerate(teacher.bert.encoder.layer):
        width = layer.intermediate.dense.out_features
        keep = torch.zeros(len(indices[layer_index]), width)
        for e, idx in enumerate(indices[layer_index]):
            keep[e, idx] = 1.0
        mask = keep[table[layer_index][ids].long()]  # [batch, seq, ffn]
        handles.append(layer.intermediate.register_forward_hook(lambda m, a, out, mask=mask: out * mask))
    try:
        with torch.no_grad():
            return teacher(**batch, output_hidden_states=True)
    finally:
        for h in handles:
            h.remove()


@pytest.mark.parametrize("router", ["hash-random", "hash-balance"])
def test_student_equals_teacher_restricted_to_each_tokens_expert(teacher, router):
    orders = random_orders()
    counts = torch.arange(50) % 7
    student, indices = adapt(
        teacher,
        orders,
        num_experts=3,
        expert_dim=24,
        shared_dim=8,
        router=router,
        seed=4,
        token_counts=counts,
    )
    assert [[len(e) for e in layer] for layer in indices] == [[24] * 3] * 2
    # The table: seeded; hash-random draws a row per layer, hash-balance (the reference's) one for all layers.
    table = student.hash_table
    if router == "hash-random":
        assert torch.equal(table, torch.randint(3, (2, 50), generator=torch.Generator().manual_seed(4)))
        assert not torch.equal(table[0], table[1])
    else:
        assert torch.equal(table, hash_balance_table(counts, num_layers=2, num_experts=3, seed=4))
        assert torch.equal(table[0], table[1])
    batch = {k: v for k, v in random_batch(batch=5, seq=12, seed=2).items() if k != "labels"}
    expected = restricted_teacher_forward(teacher, batch, table, indices)
    with torch.no_grad():
        got = student.eval()(**batch, output_hidden_states=True)
    torch.testing.assert_close(got.logits, expected.logits, rtol=1e-5, atol=1e-6)
    for s, t in zip(got.hidden_states, expected.hidden_states, strict=True):
        torch.testing.assert_close(s, t, rtol=1e-5, atol=1e-6)
    # And it is not the unrestricted teacher.
    with torch.no_grad():
        dense = teacher(**batch).logits
    assert (dense - got.logits).abs().max() > 1e-3


def test_adapt_records_its_settings_and_indices(teacher):
    orders = random_orders(seed=1)
    student, indices = adapt(
        teacher, orders, num_experts=4, expert_dim=20, shared_dim=8, router="gate-token", expert_dropout=0.25
    )
    assert isinstance(student, MoEBertForSequenceClassification)
    c = student.config
    assert (c.num_experts, c.expert_dim, c.shared_dim, c.router, c.expert_dropout) == (
        4,
        20,
        8,
        "gate-token",
        0.25,
    )
    assert c.architectures == ["MoEBertForSequenceClassification"]
    assert c.hidden_size == 16 and c.intermediate_size == 64 and c.num_labels == 3
    assert not hasattr(student, "hash_table")
    for layer, order in zip(indices, orders, strict=True):
        shared = order[:8].tolist()
        rest = order[8:].tolist()
        assert layer == [shared + rest[e::4][:12] for e in range(4)]
    for layer_s, layer_t, layer_idx in zip(student.bert.encoder.layer, teacher.bert.encoder.layer, indices):
        ffn = layer_s.output
        assert ffn.dropout.p == 0.25
        for e, idx in enumerate(layer_idx):
            assert torch.equal(ffn.experts.up_proj_bias[e], layer_t.intermediate.dense.bias[idx])
            assert torch.equal(ffn.experts.down_proj_bias[e], layer_t.output.dense.bias)


def test_adapt_refuses_inconsistent_inputs(teacher):
    with pytest.raises(MoebertError, match="^importance has 1 layers but the model has 2$"):
        adapt(teacher, random_orders(layers=1), 4, 16, 0)
    message = "router 'hash-balance' needs training-split token counts (give --task and --data)"
    with pytest.raises(MoebertError, match=f"^{re.escape(message)}$"):
        adapt(teacher, random_orders(), 4, 16, 0, router="hash-balance")
    with pytest.raises(MoebertError, match="expert_dim=80 exceeds the FFN width 64"):
        adapt(teacher, random_orders(), 4, 80, 0)


def test_adapt_leaves_the_teacher_alone(teacher):
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    student, _ = adapt(teacher, random_orders(), 2, 32, 0)
    with torch.no_grad():
        for p in student.parameters():
            p.add_(1.0)
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())


def test_default_seed_is_zero(teacher):
    student, _ = adapt(teacher, random_orders(), num_experts=3, expert_dim=24, shared_dim=8)
    assert torch.equal(
        student.hash_table, torch.randint(3, (2, 50), generator=torch.Generator().manual_seed(0))
    )
    assert student.config.expert_dropout == 0.1  # the paper's expert dropout


# --- constructions (the ablations of how to cut an FFN into experts) ---------------------------------------


def test_importance_construction_shares_the_most_important_and_inverse_the_least():
    order = torch.randperm(64, generator=torch.Generator().manual_seed(5))
    w_in = torch.randn(64, 16)
    importance = construct("importance", order, w_in, 4, 20, 8, seed=0)
    inverse = construct("inverse", order, w_in, 4, 20, 8, seed=0)
    least = order.flip(0)
    for e in range(4):
        assert importance[e][:8].tolist() == order[:8].tolist()
        assert inverse[e].tolist() == least[:8].tolist() + least[8:][e::4][:12].tolist()
    assert set(inverse[0][:8].tolist()).isdisjoint(order[:56].tolist())  # the 8 least important of all


def test_random_construction_is_a_seeded_permutation_with_the_requested_sizes():
    order = torch.arange(64)  # importance would share 0..7: the random split must not
    w_in = torch.randn(64, 16)
    experts = construct("random", order, w_in, 4, 20, 8, seed=3)
    again = construct("random", order, w_in, 4, 20, 8, seed=3)
    other = construct("random", order, w_in, 4, 20, 8, seed=4)
    permutation = torch.randperm(64, generator=torch.Generator().manual_seed(3))
    assert [e.tolist() for e in experts] == [e.tolist() for e in again] != [e.tolist() for e in other]
    assert [len(e) for e in experts] == [20] * 4
    shared = experts[0][:8].tolist()
    assert shared == permutation[:8].tolist() and all(e[:8].tolist() == shared for e in experts)
    private = [set(e[8:].tolist()) for e in experts]
    assert all(a.isdisjoint(b) for i, a in enumerate(private) for b in private[i + 1 :])
    assert shared != list(range(8))


def test_kmeans_groups_are_balanced_cover_every_neuron_and_follow_the_clusters():
    gen = torch.Generator().manual_seed(0)
    centres = torch.randn(4, 16, generator=gen) * 10
    truth = torch.randperm(64, generator=gen) % 4
    w_in = centres[truth] + torch.randn(64, 16, generator=gen) * 0.1  # four clear clusters of 16
    order = torch.randperm(64, generator=gen)
    experts = construct("kmeans", order, w_in, 4, 16, 0, seed=1)
    assert sorted(torch.cat(experts).tolist()) == list(range(64))
    assert sorted(len(e) for e in experts) == [16] * 4
    assert sorted(sorted(truth[e].unique().tolist()) for e in experts) == [[0], [1], [2], [3]]
    # Narrower experts keep the most important neurons of their cluster.
    narrow = construct("kmeans", order, w_in, 4, 5, 0, seed=1)
    rank = {n: r for r, n in enumerate(order.tolist())}
    for full, kept in zip(experts, narrow, strict=True):
        assert kept.tolist() == sorted(full.tolist(), key=rank.get)[:5]


def test_balanced_kmeans_balances_even_skewed_data():
    points = torch.cat([torch.zeros(60, 2), torch.ones(4, 2)]) + torch.randn(64, 2) * 0.01
    assert torch.bincount(balanced_kmeans(points, 4, seed=0)).tolist() == [16] * 4
    with pytest.raises(MoebertError, match="FFN width 63 to be a multiple of num_experts=4"):
        balanced_kmeans(torch.randn(63, 2), 4, seed=0)


def test_constructions_refuse_what_they_cannot_build(teacher):
    with pytest.raises(
        MoebertError, match="construction 'kmeans' shares no neurons: use shared_dim 0, not 8"
    ):
        adapt(teacher, random_orders(), 4, 16, 8, construction="kmeans")
    with pytest.raises(
        MoebertError,
        match="unknown construction 'louvain'; choose one of importance, inverse, random, kmeans$",
    ):
        adapt(teacher, random_orders(), 4, 16, 0, construction="louvain")


@pytest.mark.parametrize("construction", CONSTRUCTIONS)
def test_every_construction_builds_the_experts_it_reports(teacher, construction):
    orders = random_orders()
    student, indices = adapt(teacher, orders, 4, 16, 0, construction=construction, seed=2)
    for layer, order, layer_t in zip(indices, orders, teacher.bert.encoder.layer, strict=True):
        expected = construct(construction, order, layer_t.intermediate.dense.weight, 4, 16, 0, seed=2)
        assert layer == [e.tolist() for e in expected]  # this construction, on this layer's W1 rows
    if construction != "importance":
        assert indices != adapt(teacher, orders, 4, 16, 0, seed=2)[1]
    for layer_s, layer_t, layer_idx in zip(student.bert.encoder.layer, teacher.bert.encoder.layer, indices):
        for e, idx in enumerate(layer_idx):
            assert torch.equal(layer_s.output.experts.up_proj[e], layer_t.intermediate.dense.weight[idx].T)
            assert torch.equal(layer_s.output.experts.down_proj[e], layer_t.output.dense.weight[:, idx].T)
