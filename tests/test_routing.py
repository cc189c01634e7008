"""Routing (docs/method.md §4): hash tables and the learned gates with their
load-balancing loss, each against a computation written out here or numbers worked out by hand."""

import math

import numpy as np
import pytest
import torch

from moebert.models.routing import GateRouter, balance_loss, hash_balance_table, hash_random_table

# --- hash-random -------------------------------------------------------------------------------------------


def test_hash_random_table_is_seeded_and_drawn_per_layer():
    table = hash_random_table(num_layers=3, vocab_size=200, num_experts=4, seed=5)
    assert table.shape == (3, 200) and table.dtype == torch.uint8  # the smallest type for 4 expert ids
    assert table.min() == 0 and table.max() == 3
    # Reproducible from the seed alone (the table is an artifact of the adapted model) ...
    assert torch.equal(table, hash_random_table(3, 200, 4, seed=5))
    expected = torch.randint(4, (3, 200), generator=torch.Generator().manual_seed(5))
    assert torch.equal(table, expected)
    # ... another seed gives another table, and every layer has its own row (not one table shared by all).
    assert not torch.equal(table, hash_random_table(3, 200, 4, seed=6))
    for a in range(3):
        for b in range(a + 1, 3):
            assert (table[a] != table[b]).float().mean() > 0.5


# --- hash-balance ------------------------------------------------------------------------------------------


def reference_hash_balance(counts: list[int], num_layers: int, num_experts: int, seed: int) -> torch.Tensor:
    """The per-layer layout (docs/method.md §4) written out: unseen tokens keep the seeded random table; seen tokens, most frequent first
    (ties by token id), go to the least-loaded expert (lowest index on ties); each layer then relabels the
    experts by its own permutation drawn from a generator seeded with seed + 1."""
    table = torch.randint(
        num_experts, (num_layers, len(counts)), generator=torch.Generator().manual_seed(seed)
    )
    seen = sorted((t for t, c in enumerate(counts) if c > 0), key=lambda t: (-counts[t], t))
    load, assigned = [0] * num_experts, {}
    for t in seen:
        expert = min(range(num_experts), key=lambda e: (load[e], e))
        load[expert] += counts[t]
        assigned[t] = expert
    gen = torch.Generator().manual_seed(seed + 1)
    for layer in range(num_layers):
        relabel = torch.randperm(num_experts, generator=gen).tolist()
        for t, e in assigned.items():
            table[layer, t] = relabel[e]
    return table


def test_hash_balance_greedy_assignment_worked_by_hand():
    # Tokens 1..6 with counts 6, 5, 4, 1, 1, 1; token 0 and 7..29 never occur. Three experts, greedy:
    # 1 -> e0 (6,0,0); 2 -> e1 (6,5,0); 3 -> e2 (6,5,4); 4 -> e2 (6,5,5); 5 -> e1 (6,6,5); 6 -> e2 (6,6,6).
    counts = torch.zeros(30, dtype=torch.long)
    counts[1:7] = torch.tensor([6, 5, 4, 1, 1, 1])
    table = hash_balance_table(counts, num_layers=4, num_experts=3, seed=2, layout="per-layer")
    groups = [[1], [2, 5], [3, 4, 6]]
    for layer in table:
        labels = [{int(layer[t]) for t in group} for group in groups]
        assert all(len(s) == 1 for s in labels), labels  # every group shares one expert
        assert len(set.union(*labels)) == 3  # and the three groups use three different experts
    assert torch.equal(table, reference_hash_balance(counts.tolist(), 4, 3, seed=2))
    # Unseen tokens keep the seeded random experts: spread over all experts, not piled onto one.
    unseen = torch.tensor([0] + list(range(7, 30)))
    random = torch.randint(3, (4, 30), generator=torch.Generator().manual_seed(2))
    assert torch.equal(table[:, unseen], random[:, unseen])
    assert all(len(set(row.tolist())) == 3 for row in table[:, unseen])


def test_hash_balance_matches_reference_with_many_ties():
    gen = torch.Generator().manual_seed(0)
    counts = torch.randint(0, 4, (300,), generator=gen)  # many equal counts, a quarter unseen
    table = hash_balance_table(counts, num_layers=3, num_experts=4, seed=9, layout="per-layer")
    assert torch.equal(table, reference_hash_balance(counts.tolist(), 3, 4, seed=9))
    assert torch.equal(table, hash_balance_table(counts, 3, 4, seed=9, layout="per-layer"))  # reproducible


def reference_code_hash_balance(frequency: list[int], num_buckets: int, seed: int) -> list[int]:
    """The reference's hash_balance.py construction, step by step as it is written there: the counts sorted
    descending beside numpy's argsort reversed, walked together; a zero count draws a bucket from numpy's global
    generator seeded once, a positive one takes np.argmin of the bucket loads."""
    np.random.seed(seed)
    frequency = np.array(frequency)
    frequency_sorted = np.sort(frequency)[::-1].tolist()
    frequency_ind = np.argsort(frequency)[::-1].tolist()
    balance_list = [0 for _ in range(len(frequency))]
    bucket_size = np.array([0 for _ in range(num_buckets)])
    for freq, ind in zip(frequency_sorted, frequency_ind):
        if freq == 0:
            balance_list[ind] = np.random.randint(low=0, high=num_buckets)
        else:
            bucket_ind = np.argmin(bucket_size)
            bucket_size[bucket_ind] += freq
            balance_list[ind] = int(bucket_ind)
    return balance_list


def test_hash_balance_reference_layout_worked_by_hand():
    # Counts of ids 0..5: 0, 3, 5, 3, 0, 1. numpy's argsort of a short array keeps equal counts in id order, so
    # reversed the larger id comes first: 2 (5), 3 (3), 1 (3), 5 (1), then the unseen 4 and 0. Three experts:
    # 2 -> e0 (5,0,0); 3 -> e1 (5,3,0); 1 -> e2 (5,3,3); 5 -> e1 (5,4,3). A stable descending sort would take 1
    # before 3 and swap their experts.
    counts = [0, 3, 5, 3, 0, 1]
    assert np.argsort(np.array(counts)).tolist() == [0, 4, 5, 1, 3, 2], "numpy orders equal counts otherwise"
    table = hash_balance_table(torch.tensor(counts), num_layers=3, num_experts=3, seed=0)
    unseen = np.random.RandomState(0).randint(0, 3, size=2).tolist()  # drawn for 4, then 0
    expected = [unseen[1], 2, 0, 1, unseen[0], 1]
    assert table.tolist() == [expected] * 3  # one table for every layer
    per_layer = hash_balance_table(
        torch.tensor(counts), num_layers=1, num_experts=3, seed=0, layout="per-layer"
    )
    # The stable order's partition: 2 -> e0; 1 -> e1; 3 -> e2; 5 -> e1: id 5 meets id 1, not id 3.
    assert per_layer[0, 5] == per_layer[0, 1] and len({int(per_layer[0, t]) for t in (2, 1, 3)}) == 3


@pytest.mark.parametrize("seed", [0, 5])
def test_hash_balance_reference_layout_equals_the_reference_construction(seed):
    """Many ties, a quarter of the ids unseen, a vocabulary long enough for numpy's argsort not to be stable."""
    gen = torch.Generator().manual_seed(seed)
    counts = torch.randint(0, 6, (3000,), generator=gen) * torch.randint(0, 40, (3000,), generator=gen)
    table = hash_balance_table(counts, num_layers=4, num_experts=4, seed=seed)
    expected = reference_code_hash_balance(counts.tolist(), 4, seed)
    assert table.tolist() == [expected] * 4
    # Not the per-layer layout, whose tie order and labels differ; both balance the load the same way.
    per_layer = hash_balance_table(counts, num_layers=4, num_experts=4, seed=seed, layout="per-layer")
    assert not torch.equal(table, per_layer)
    for row in (table[0], per_layer[0]):
        load = torch.zeros(4, dtype=torch.long).scatter_add_(0, row.long(), counts)
        assert load.max() - load.min() <= counts.max()


def test_hash_balance_layout_is_checked():
    with pytest.raises(
        ValueError, match="unknown hash-balance layout 'shared'; choose one of reference, per-layer"
    ):
        hash_balance_table(torch.ones(5, dtype=torch.long), 1, 2, 0, layout="shared")


# --- gates -------------------------------------------------------------------------------------------------


def test_gate_has_no_bias():
    router = GateRouter(hidden_size=8, num_experts=3, per_sentence=False)
    assert [(name, tuple(p.shape)) for name, p in router.named_parameters()] == [("gate.weight", (3, 8))]


def balance(probs: list[list[float]], experts: list[int]) -> float:
    """N * sum_i P_i f_i over the routed items, by loops."""
    n, items = len(probs[0]), len(probs)
    mean = [sum(p[i] for p in probs) / items for i in range(n)]
    share = [experts.count(i) / items for i in range(n)]
    return n * sum(m * s for m, s in zip(mean, share))


def reference_gate(x: torch.Tensor, mask: torch.Tensor, weight: torch.Tensor, per_sentence: bool):
    """Expert and probability of every token, and the balance loss, token by token: the token gate's items are
    all tokens (padding included), the sentence gate's the sentences, each pooled over its real tokens."""
    batch, seq, _ = x.shape
    experts, probs, routed_probs, routed = [], [], [], []
    for b in range(batch):
        real = [t for t in range(seq) if mask[b, t]]
        if per_sentence:
            pooled = sum(x[b, t] for t in real) / len(real)
            p = torch.softmax(weight @ pooled, 0)
            e = int(p.argmax())
            experts += [e] * seq
            probs += [float(p[e])] * seq
            routed_probs.append(p.tolist())
            routed.append(e)
        else:
            for t in range(seq):
                p = torch.softmax(weight @ x[b, t], 0)
                e = int(p.argmax())
                experts.append(e)
                probs.append(float(p[e]))
                routed_probs.append(p.tolist())
                routed.append(e)
    return experts, probs, balance(routed_probs, routed)


def check_gate(router, x, mask):
    expert, scale, loss = router(x, mask)
    experts, probs, expected_loss = reference_gate(
        x.double(),
        torch.ones(x.shape[:2]) if mask is None else mask,
        router.gate.weight.detach().double(),
        router.per_sentence,
    )
    assert expert.tolist() == experts
    torch.testing.assert_close(scale.double(), torch.tensor(probs, dtype=torch.float64), rtol=1e-5, atol=1e-6)
    assert loss.item() == pytest.approx(expected_loss, rel=1e-5)
    return expert, scale, loss


def gate_inputs(batch=3, seq=5, hidden=8, seed=0, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, seq, hidden, generator=gen, dtype=dtype) * 2
    lengths = torch.tensor([seq, 1, 3, 4, 2, 5][:batch])  # a row of one token, the rest ragged
    mask = (torch.arange(seq)[None] < lengths[:, None]).long()
    return x, mask


@pytest.mark.parametrize("per_sentence", [False, True], ids=["gate-token", "gate-sentence"])
def test_gate_routes_and_scales_like_the_reference(per_sentence):
    torch.manual_seed(0)
    router = GateRouter(8, 4, per_sentence=per_sentence)
    with torch.no_grad():
        router.gate.weight.mul_(8)  # confident, varied gates
    x, mask = gate_inputs()
    check_gate(router, x, mask)


@pytest.mark.parametrize("per_sentence", [False, True], ids=["gate-token", "gate-sentence"])
def test_padding_changes_no_route_of_a_real_token(per_sentence):
    """... and the sentence gate's balance loss neither; the token gate's counts every token, as the
    reference's does."""
    torch.manual_seed(1)
    router = GateRouter(8, 4, per_sentence=per_sentence)
    x, mask = gate_inputs(seed=1)
    noisy = x + 100 * torch.randn(x.shape) * (1 - mask).unsqueeze(-1)  # garbage at padding only
    (a, scale_a, loss_a), (b, scale_b, loss_b) = router(x, mask), router(noisy, mask)
    real = mask.reshape(-1).bool()
    assert torch.equal(a[real], b[real])
    torch.testing.assert_close(scale_a[real], scale_b[real])
    assert torch.isclose(loss_a, loss_b) == per_sentence


@pytest.mark.parametrize("per_sentence", [False, True], ids=["gate-token", "gate-sentence"])
def test_no_attention_mask_means_every_token_is_real(per_sentence):
    torch.manual_seed(2)
    router = GateRouter(8, 3, per_sentence=per_sentence)
    x, _ = gate_inputs(seed=2)
    none = check_gate(router, x, None)
    ones = router(x, torch.ones(x.shape[:2], dtype=torch.long))
    for got, expected in zip(ones, none, strict=True):
        assert torch.equal(got, expected)


def test_gate_sentence_scales_at_batch_size_one_by_default():
    """The reference skips the probability scaling at batch size 1 (batch1="skip"); by default every token
    carries it here, as at every other batch size."""
    torch.manual_seed(3)
    router = GateRouter(8, 4, per_sentence=True)
    x, mask = gate_inputs(batch=1, seed=3)
    expert, scale, _ = check_gate(router, x, mask)
    assert expert.unique().numel() == 1  # one expert for the whole sentence
    assert (scale < 1).all() and torch.unique(scale).numel() == 1
    router.batch1 = "skip"
    skipped, no_scale, loss = router(x, mask)
    assert torch.equal(skipped, expert) and no_scale is None and loss.item() == 0.0


def test_gate_in_double_precision():
    torch.manual_seed(4)
    for per_sentence in (False, True):
        router = GateRouter(8, 4, per_sentence=per_sentence).double()
        x, mask = gate_inputs(seed=4, dtype=torch.float64)
        _, _, loss = check_gate(router, x, mask)
        assert loss.dtype == torch.float64


# --- load-balancing loss -----------------------------------------------------------------------------------


def test_balance_loss_worked_by_hand():
    probs = torch.tensor([[0.7, 0.3], [0.4, 0.6], [0.9, 0.1]])
    # P = (2/3, 1/3), f = (2/3, 1/3): 2 * (4/9 + 1/9) = 10/9.
    assert balance_loss(probs, torch.tensor([0, 1, 0]), 2).item() == pytest.approx(10 / 9)
    # A single item: P = (0.25, 0.75), f = (0, 1): 2 * 0.75.
    assert balance_loss(torch.tensor([[0.25, 0.75]]), torch.tensor([1]), 2).item() == pytest.approx(1.5)
    # Perfectly uniform gates give 1 whatever the routing.
    uniform = torch.full((4, 2), 0.5)
    assert balance_loss(uniform, torch.tensor([0, 0, 0, 1]), 2).item() == pytest.approx(1.0)


def test_balance_loss_three_experts_float64():
    probs = torch.tensor(
        [[0.5, 0.3, 0.2], [0.1, 0.1, 0.8], [0.2, 0.6, 0.2], [0.6, 0.2, 0.2]], dtype=torch.float64
    )
    chosen = torch.tensor([0, 2, 1, 0])
    loss = balance_loss(probs, chosen, 3)
    # P = (1.4, 1.2, 1.4) / 4, f = (2, 1, 1) / 4: 3 * (2.8 + 1.2 + 1.4) / 16.
    assert loss.dtype == torch.float64
    assert loss.item() == pytest.approx(3 * 5.4 / 16, rel=1e-12)
    assert math.isclose(loss.item(), balance(probs.tolist(), chosen.tolist()), rel_tol=1e-12)


# --- devices -----------------------------------------------------------------------------------------------


def test_routing_follows_its_inputs_not_the_default_device():
    """Every tensor is made on the inputs' device: with another default device (as on a GPU host) CPU inputs
    route exactly as before. (Meta tensors cannot be read back, so a stray one fails loudly.)"""
    torch.manual_seed(5)
    routers = [GateRouter(8, 4, per_sentence=p) for p in (False, True)]
    x, mask = gate_inputs(seed=5)
    gated = [r(x, m) for r in routers for m in (mask, None)]
    probs, chosen = torch.softmax(torch.randn(6, 4), -1), torch.tensor([0, 1, 1, 2, 3, 3])
    loss = balance_loss(probs, chosen, 4)
    with torch.device("meta"):
        for got, expected in zip([r(x, m) for r in routers for m in (mask, None)], gated, strict=True):
            for a, b in zip(got, expected, strict=True):
                assert torch.equal(a, b)
        assert torch.equal(balance_loss(probs, chosen, 4), loss)
