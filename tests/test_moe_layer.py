"""The MoE layer against an independent re-implementation of the reference expert and MoE layer
(SimiaoZuo/MoEBERT `FeedForward` and `MoELayer`, written here from their description), for every router,
both shared-neuron layouts and every experts implementation, in training mode with a fixed dropout mask and
in eval mode."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from moebert.models.bert_experts import IMPLEMENTATIONS
from moebert.models.modeling import MoEBertConfig, MoEBertForSequenceClassification
from moebert.models.moe_layer import MoEFFN
from moebert.models.routing import GATE_ROUTERS, ROUTERS, GateRouter

HIDDEN, EXPERTS = 8, 3


def layer_config(**overrides):
    settings = {
        "num_experts": EXPERTS,
        "expert_dim": 16,
        "shared_dim": 8,
        "hidden_size": HIDDEN,
        "intermediate_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "vocab_size": 50,
        "max_position_embeddings": 32,
        "hidden_dropout_prob": 0.0,
        "expert_dropout": 0.0,
        "layer_norm_eps": 0.1,
    }
    return MoEBertConfig(**(settings | overrides))


def make_layer(seed=0, implementation="eager", **overrides):
    """A MoE layer with weights of unit scale, random biases and random per-expert LayerNorms."""
    from moebert.models.bert_experts import ExpertsImplementation

    torch.manual_seed(seed)
    layer = MoEFFN(layer_config(**overrides), ExpertsImplementation(implementation))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in layer.named_parameters():
            if name.startswith("router"):
                p.mul_(8)  # decisive gates, far from uniform
            else:
                p.copy_(
                    (1.0 if name == "LayerNorm.weight" else 0.0) + torch.randn(p.shape, generator=gen) * 0.5
                )
    return layer


class ReferenceExpert(nn.Module):
    """fc1 -> act -> fc2 -> dropout -> LayerNorm(. + input), each expert with its own LayerNorm."""

    def __init__(self, layer: MoEFFN, e: int):
        super().__init__()
        w1, b1, w2 = layer.experts.up_proj[e].T, layer.experts.up_proj_bias[e], layer.experts.down_proj[e].T
        if layer.shared is not None:  # the tied shared neurons are the first neurons of every expert
            w1 = torch.cat([layer.shared.up_proj.T, w1])
            b1 = torch.cat([layer.shared.up_proj_bias, b1])
            w2 = torch.cat([layer.shared.down_proj.T, w2], dim=1)
        self.fc1 = nn.Linear(HIDDEN, len(b1))
        self.fc2 = nn.Linear(len(b1), HIDDEN)
        self.norm = nn.LayerNorm(HIDDEN, eps=layer.LayerNorm.eps)
        with torch.no_grad():
            self.fc1.weight.copy_(w1)
            self.fc1.bias.copy_(b1)
            self.fc2.weight.copy_(w2)
            self.fc2.bias.copy_(layer.experts.down_proj_bias[e])
            self.norm.weight.copy_(layer.LayerNorm.weight[e])
            self.norm.bias.copy_(layer.LayerNorm.bias[e])

    def forward(self, x, keep, branch_scale=None):
        """`keep`: the dropout mask of these rows (already divided by 1 - p), or None in eval mode;
        `branch_scale`: a gate probability per row that scales fc2's output (gate_scale branch)."""
        y = self.fc2(F.gelu(self.fc1(x)))
        if branch_scale is not None:
            y = y * branch_scale[:, None]
        return self.norm((y if keep is None else y * keep) + x)


def reference_moe(layer: MoEFFN, x, expert_ids=None, attention_mask=None, keep=None, branch=False):
    """The reference MoE layer on x [batch, seq, hidden]: routes, expert-order grouping, experts, the gate
    probability after each expert's LayerNorm (or, with `branch`, on fc2's output before it); returns the
    output and the balance loss (0 for hashes)."""
    batch, seq, _ = x.shape
    experts = [ReferenceExpert(layer, e) for e in range(EXPERTS)]
    flat = x.reshape(-1, HIDDEN)
    keep = None if keep is None else keep.reshape(-1, HIDDEN)
    gate = None if layer.router is None else layer.router.gate.weight
    prob = torch.ones(batch * seq)
    balance = torch.zeros(())
    if gate is not None and layer.router.per_sentence:
        mask = torch.ones(batch, seq) if attention_mask is None else attention_mask.float()
        mean = (x * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
        probs = torch.softmax(mean @ gate.T, -1)
        choice = probs.argmax(-1)
        if batch > 1 or layer.router.batch1 == "scale":
            f = torch.bincount(choice, minlength=EXPERTS).float() / batch
            balance = EXPERTS * (probs.mean(0) * f).sum()
            prob = probs.gather(1, choice[:, None]).squeeze(1).repeat_interleave(seq)
        expert_ids = choice.repeat_interleave(seq)
    elif gate is not None:
        probs = torch.softmax(flat @ gate.T, -1)
        expert_ids = probs.argmax(-1)
        f = torch.bincount(expert_ids, minlength=EXPERTS).float() / len(expert_ids)
        balance = EXPERTS * (probs.mean(0) * f).sum()  # every token, padding included
        prob = probs.gather(1, expert_ids[:, None]).squeeze(1)
    out = torch.empty_like(flat)
    for e in range(EXPERTS):
        rows = (expert_ids == e).nonzero().flatten()
        if len(rows):
            mask = None if keep is None else keep[rows]
            if branch:
                out[rows] = experts[e](flat[rows], mask, branch_scale=prob[rows])
            else:
                out[rows] = experts[e](flat[rows], mask) * prob[rows, None]
    return out.view_as(x), balance


def fixed_dropout(layer, p, seed):
    """Replace the layer's dropout by one mask drawn here (training mode), to compare with the reference."""
    keep = (torch.rand(2, 7, HIDDEN, generator=torch.Generator().manual_seed(seed)) > p).float() / (1 - p)

    class Fixed(nn.Module):
        def forward(self, y):
            return y * keep.reshape(-1, HIDDEN)

    layer.dropout = Fixed()
    return keep


def routed(layer, router, x, seed):
    """Set what the model would set before a forward; the hash routes (or None for gates)."""
    if router in GATE_ROUTERS:
        layer.attention_mask = torch.tensor([[1] * 7, [1] * 4 + [0] * 3])
        return None
    ids = torch.randint(EXPERTS, (x.shape[0] * x.shape[1],), generator=torch.Generator().manual_seed(seed))
    layer.expert_ids = ids
    return ids


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("shared", ["copied", "tied"])
@pytest.mark.parametrize("router", ROUTERS)
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_layer_equals_the_reference_layer(router, shared, implementation, mode):
    layer = make_layer(
        seed=1, router=router, shared=shared, implementation=implementation, expert_dropout=0.3
    )
    x = torch.randn(2, 7, HIDDEN, generator=torch.Generator().manual_seed(2))
    ids = routed(layer, router, x, seed=3)
    keep = fixed_dropout(layer, 0.3, seed=4) if mode == "train" else None
    layer.train(mode == "train")
    out = layer(x, x)
    expected, balance = reference_moe(layer, x, ids, layer.attention_mask, keep)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    if router in GATE_ROUTERS:
        torch.testing.assert_close(layer.balance_loss, balance, rtol=1e-6, atol=1e-6)
        assert layer.router.gate.weight.grad is None
        out.sum().backward()  # the gate learns through the probability that scales the output
        assert layer.router.gate.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("router", ["hash-random", "gate-token"])
def test_tied_layout_input_gradient_equals_the_reference(router):
    """The gradient w.r.t. the layer's input passes through the tied shared neurons as through the first
    neurons of every reference expert (a shared FFN cut off from the input's gradient would train alike)."""
    layer = make_layer(seed=5, router=router, shared="tied")
    x = torch.randn(2, 7, HIDDEN, generator=torch.Generator().manual_seed(6), requires_grad=True)
    ids = routed(layer, router, x, seed=7)
    weights = torch.randn(2, 7, HIDDEN, generator=torch.Generator().manual_seed(8))
    (layer(x, x) * weights).sum().backward()
    x_ref = x.detach().clone().requires_grad_(True)
    expected, _ = reference_moe(layer, x_ref, ids, layer.attention_mask)
    (expected * weights).sum().backward()
    assert x.grad.abs().sum() > 0
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-5, atol=1e-5)


def test_dropout_is_one_dropout_after_fc2_at_the_expert_rate():
    """p = 1 leaves each expert LayerNorm_e(input): nothing of fc1 or fc2, whatever hidden_dropout_prob says."""
    layer = make_layer(seed=5, expert_dropout=1.0, hidden_dropout_prob=0.0).train()
    assert [m.p for m in layer.modules() if isinstance(m, nn.Dropout)] == [1.0]
    x = torch.randn(2, 7, HIDDEN)
    ids = routed(layer, "hash-random", x, seed=6)
    expected = torch.stack(
        [
            F.layer_norm(row, (HIDDEN,), layer.LayerNorm.weight[e], layer.LayerNorm.bias[e], 0.1)
            for row, e in zip(x.reshape(-1, HIDDEN), ids)
        ]
    )
    torch.testing.assert_close(layer(x, x).reshape(-1, HIDDEN), expected, rtol=1e-5, atol=1e-5)
    layer = make_layer(seed=5, expert_dropout=0.0, hidden_dropout_prob=1.0).train()
    layer.expert_ids = ids
    torch.testing.assert_close(layer(x, x), reference_moe(layer, x, ids)[0], rtol=1e-5, atol=1e-5)


def test_each_expert_has_its_own_layer_norm():
    layer = make_layer(seed=7).eval()
    x = torch.randn(1, 6, HIDDEN)
    layer.expert_ids = torch.tensor([0, 1, 2, 0, 1, 2])
    before = layer(x, x)
    with torch.no_grad():
        layer.LayerNorm.weight[1] *= 2
    after = layer(x, x)
    changed = (after - before).abs().amax(-1)[0] > 1e-4
    assert changed.tolist() == [False, True, False, False, True, False]


def test_residual_other_than_the_input():
    layer = make_layer(seed=8).eval()
    x, residual = torch.randn(2, 7, HIDDEN), torch.randn(2, 7, HIDDEN)
    ids = routed(layer, "hash-random", x, seed=9)
    expected = []
    for t, e in enumerate(ids):
        expert = ReferenceExpert(layer, e)
        y = expert.fc2(F.gelu(expert.fc1(x.reshape(-1, HIDDEN)[t])))
        expected.append(expert.norm(y + residual.reshape(-1, HIDDEN)[t]))
    torch.testing.assert_close(
        layer(x, residual).reshape(-1, HIDDEN), torch.stack(expected), rtol=1e-5, atol=1e-5
    )


@pytest.mark.parametrize("batch1", ["scale", "skip"])
def test_sentence_gate_at_batch_one(batch1):
    """The reference skips the probability (and the balance loss) at batch size 1; `skip` restores that."""
    layer = make_layer(seed=10, router="gate-sentence", gate_sentence_batch1=batch1).eval()
    x = torch.randn(1, 7, HIDDEN)
    out = layer(x, x)
    expected, balance = reference_moe(layer, x)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(layer.balance_loss, balance)
    scaled = batch1 == "scale"
    assert (layer.balance_loss > 0) == scaled
    probs = torch.softmax(layer.router.gate.weight @ x[0].mean(0), 0)
    assert probs.max() < 0.999  # so scaling is visible
    unscaled = reference_moe(make_layer(seed=10, router="gate-sentence", gate_sentence_batch1="skip"), x)[0]
    assert torch.allclose(out, unscaled, rtol=1e-5, atol=1e-5) != scaled


@pytest.mark.parametrize("router", ["gate-token", "gate-sentence"])
@pytest.mark.parametrize("training", [False, True])
def test_gate_scale_branch_scales_the_ffn_before_the_residual_and_norm(router, training):
    """gate_scale branch: LayerNorm_e(x + p * dropout(fc2_e(...))), the gradient reaching the gate through p;
    the default (output) is the reference's p * LayerNorm_e(x + ...), a different function."""
    layer = make_layer(seed=11, router=router, gate_scale="branch", expert_dropout=0.3 if training else 0.0)
    layer.train(training)
    keep = fixed_dropout(layer, 0.3, seed=4) if training else None
    x = torch.randn(2, 7, HIDDEN, requires_grad=True)
    routed(layer, router, x, seed=0)
    out = layer(x, x)
    mask = layer.attention_mask
    expected, balance = reference_moe(layer, x, attention_mask=mask, keep=keep, branch=True)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(layer.balance_loss, balance)
    grad = torch.autograd.grad(out.square().sum(), layer.router.gate.weight)[0]
    reference_grad = torch.autograd.grad(expected.square().sum(), layer.router.gate.weight)[0]
    torch.testing.assert_close(grad, reference_grad, rtol=1e-4, atol=1e-4)
    assert grad.abs().sum() > 0
    scaled_after = reference_moe(layer, x, attention_mask=mask, keep=keep)[0]
    assert not torch.allclose(out, scaled_after, rtol=1e-3, atol=1e-3)


def test_token_gate_balance_counts_every_token():
    """N * sum_i P_i f_i over all tokens, padding included (the reference's), worked out by hand."""
    router = GateRouter(2, 2, per_sentence=False)
    with torch.no_grad():
        router.gate.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    x = torch.tensor([[[2.0, 0.0], [0.0, 1.0], [3.0, 3.5]]])
    expert, prob, balance = router(x, torch.tensor([[1, 1, 0]]))
    assert expert.tolist() == [0, 1, 1]
    p = torch.softmax(x[0], -1)
    torch.testing.assert_close(prob, p.max(-1).values)
    torch.testing.assert_close(balance, 2 * (p.mean(0) * torch.tensor([1 / 3, 2 / 3])).sum())


# --- experts implementations -----------------------------------------------------------------------------


DEVICES = [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU")),
]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("router", ROUTERS)
@pytest.mark.parametrize("implementation", ["batched_mm", "grouped_mm", "padded_bmm"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("tokens", ["empty-expert", "one-token", "batch"])
def test_implementations_match_eager_outputs_and_gradients(device, router, implementation, dtype, tokens):
    """Outputs and every gradient (inputs, experts, LayerNorms, the gate) equal the per-expert loop's, within
    what the dtype allows, with an expert that gets no token and with a batch of one token."""
    ids = {"empty-expert": [0, 2, 2, 0, 2, 0, 0], "one-token": [1], "batch": [0, 1, 2, 1, 0, 2, 2]}[tokens]
    outputs = {}
    for name in ("eager", implementation):
        layer = make_layer(seed=11, implementation=name, router=router).to(device=device, dtype=dtype).train()
        x = (
            torch.randn(1, len(ids), HIDDEN, generator=torch.Generator().manual_seed(12))
            .abs()
            .to(device, dtype)
        )
        x.requires_grad_(True)
        if layer.router is None:
            layer.expert_ids = torch.tensor(ids, device=device)
        else:
            layer.attention_mask = torch.ones(1, len(ids), device=device)
            if tokens == "empty-expert":
                with torch.no_grad():  # positive inputs, a gate row far below zero: expert 1 never wins
                    layer.router.gate.weight[1] = -100 * layer.router.gate.weight[1].abs()
                assert 1 not in layer.router(x, layer.attention_mask)[0].tolist()
        out = layer(x, x)
        (out.float() * torch.linspace(-1, 1, HIDDEN, device=device)).sum().backward()
        outputs[name] = (out, x.grad, *(p.grad for p in layer.parameters() if p.grad is not None))
    tolerance = {"rtol": 1e-5, "atol": 1e-5} if dtype == torch.float32 else {"rtol": 2e-2, "atol": 2e-2}
    assert len(outputs["eager"]) == len(outputs[implementation])
    for a, b in zip(outputs["eager"], outputs[implementation], strict=True):
        torch.testing.assert_close(b, a, **tolerance)


def test_unknown_implementation_is_refused():
    from moebert.errors import MoebertError

    model = MoEBertForSequenceClassification(layer_config())
    with pytest.raises(
        MoebertError,
        match=r"^unknown experts implementation 'fast'; choose one of auto, eager, "
        r"batched_mm, grouped_mm, padded_bmm$",
    ):
        model.set_experts_implementation("fast")
    assert model.set_experts_implementation("batched_mm") == "batched_mm"
    assert {layer.experts.config._experts_implementation for layer in model.moe_layers()} == {"batched_mm"}


def padded_and_eager_experts(mode, num_experts=EXPERTS, seed=13):
    """Two BertExperts with the same random weights and biases: padded_bmm and the eager loop."""
    from moebert.models.bert_experts import BertExperts, ExpertsImplementation

    config = layer_config(num_experts=num_experts)
    pair = []
    for name in ("eager", "padded_bmm"):
        torch.manual_seed(seed)
        experts = BertExperts(ExpertsImplementation(name), config, 16).train(mode == "train")
        with torch.no_grad():
            for p in experts.parameters():
                p.copy_(torch.randn(p.shape, generator=torch.Generator().manual_seed(seed)))
        pair.append(experts)
    return pair


@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize(
    "routes",
    [
        [0, 3, 3, 1, 3, 0, 3, 3, 1],  # expert 2 gets none, expert 3 twice the largest other group
        [2],  # one token: three empty experts and a group of one row
        [[0, 3], [3, 1], [2, 3], [3, 0], [1, 2]],  # two experts per token, expert 3 in four of five
    ],
    ids=["empty-expert", "one-token", "top-2"],
)
def test_padded_bmm_equals_the_eager_loop(mode, routes):
    """Outputs and the gradients of the input, the weights and both biases equal the per-expert loop's to
    float32 rounding (1e-6 of the tensor's largest entry: a batched GEMM rounds its sums in another order
    than one GEMM per expert), with empty experts, a single token and two weighted experts per token."""
    index = torch.tensor(routes).reshape(len(routes), -1)
    weights = torch.rand(index.shape, generator=torch.Generator().manual_seed(14)) + 0.5
    x = torch.randn(len(routes), HIDDEN, generator=torch.Generator().manual_seed(15))
    results = []
    for experts in padded_and_eager_experts(mode, num_experts=4):
        inputs = x.clone().requires_grad_(mode == "train")
        with torch.set_grad_enabled(mode == "train"):
            out = experts(inputs, index, weights)
            if mode == "train":
                (out * torch.linspace(-1, 1, HIDDEN)).sum().backward()
        results.append(
            [out, *(() if mode == "eval" else (inputs.grad, *(p.grad for p in experts.parameters())))]
        )
    eager, padded = results
    assert len(eager) == (1 if mode == "eval" else 6)
    for a, b in zip(eager, padded, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-6, atol=1e-6 * a.abs().max().item())
    if mode == "train":
        grads = dict(zip(("input", "up", "up_bias", "down", "down_bias"), eager[1:]))
        idle = sorted(set(range(4)) - set(index.flatten().tolist()))
        for name in ("up", "up_bias", "down", "down_bias"):  # an expert without tokens learns nothing
            assert grads[name][idle].abs().sum() == 0 and grads[name].abs().sum() > 0


def test_every_cpu_kernel_takes_a_forward_without_tokens():
    from moebert.models.bert_experts import BertExperts, ExpertsImplementation

    for name in ("eager", "padded_bmm", "auto_cpu"):
        experts = BertExperts(ExpertsImplementation(name), layer_config(num_experts=4), 16)
        out = experts(torch.randn(0, HIDDEN), torch.zeros(0, 1, dtype=torch.long), torch.ones(0, 1))
        assert out.shape == (0, HIDDEN), name


def test_auto_picks_the_devices_default_where_the_grouped_kernel_can_run(monkeypatch):
    from moebert.models import bert_experts

    monkeypatch.setitem(bert_experts.EXPERTS_DEFAULT, "cpu", "grouped_mm")
    aligned = MoEBertForSequenceClassification(layer_config())  # hidden 8, private width 16: 32 and 64 bytes
    assert aligned.set_experts_implementation("auto") == "grouped_mm"
    assert aligned.to(torch.bfloat16).set_experts_implementation("auto") == "grouped_mm"  # 16 and 32 bytes
    odd = MoEBertForSequenceClassification(layer_config(expert_dim=10, shared_dim=4))  # 40 bytes a row
    assert odd.set_experts_implementation("auto") == "eager"
    assert odd.experts_implementation._experts_implementation == "eager"
    monkeypatch.setitem(bert_experts.EXPERTS_DEFAULT, "cpu", "eager")
    assert aligned.set_experts_implementation("auto") == "eager"
    assert (
        aligned.set_experts_implementation("auto", torch.device("cuda"))
        == bert_experts.EXPERTS_DEFAULT["cuda"]
    )


def test_auto_on_a_cpu_is_padded_bmm_up_to_the_measured_group_size_then_eager(monkeypatch):
    """ "auto" resolves once, at setup, to auto_cpu on a CPU; auto_cpu chooses per forward by the largest
    group: padded_bmm while no expert has more than PADDED_BMM_MAX_ROWS slots (tokens x k), the eager loop
    above, both exact. A collapsed router (few tokens, all on one expert) goes to the eager loop, where the
    average group size would have chosen padding."""
    from moebert.models import bert_experts

    model = MoEBertForSequenceClassification(layer_config())
    assert model.set_experts_implementation("auto", torch.device("cpu")) == "auto_cpu"
    assert model.set_experts_implementation("auto", torch.device("cuda")) == "grouped_mm"
    calls = []
    for name in ("padded_bmm", "eager"):
        kernel = getattr(bert_experts, f"{name}_experts_forward")
        monkeypatch.setattr(
            bert_experts,
            f"{name}_experts_forward",
            lambda *args, _name=name, _kernel=kernel: calls.append(_name) or _kernel(*args),
        )
    limit = bert_experts.PADDED_BMM_MAX_ROWS
    assert limit == 256  # where benchmarks/auto_threshold.py puts the two within noise (README, Benchmarks)
    auto, eager = padded_and_eager_experts("eval", num_experts=4)
    auto.config._experts_implementation = "auto_cpu"
    balanced = torch.arange(4 * limit) % 4  # every expert exactly at the limit
    for name, index, chosen in [
        ("balanced at the limit", balanced.unsqueeze(1), "padded_bmm"),
        ("one slot over", torch.cat([balanced, torch.tensor([2])]).unsqueeze(1), "eager"),
        ("collapsed", torch.zeros(limit + 1, 1, dtype=torch.long), "eager"),
        ("top-2 at the limit", balanced.view(-1, 2), "padded_bmm"),
        ("top-2 one over", torch.cat([balanced, torch.tensor([1, 3])]).view(-1, 2), "eager"),
    ]:
        gen = torch.Generator().manual_seed(len(index))
        weights = torch.rand(index.shape, generator=gen)
        x = torch.randn(len(index), HIDDEN, generator=gen)
        calls.clear()
        with torch.no_grad():
            out = auto(x, index, weights)
            assert calls == [chosen], name
            torch.testing.assert_close(
                out, eager(x, index, weights), rtol=1e-6, atol=1e-6 * out.abs().max().item()
            )


def refuse_host_reads(monkeypatch) -> None:
    """Every read of a tensor's value into Python (what makes a GPU forward wait for the device) raises."""
    for name in ("tolist", "item", "nonzero"):

        def read(self, *args, _name=name, **kwargs):
            raise AssertionError(f"host read: Tensor.{_name}")

        monkeypatch.setattr(torch.Tensor, name, read)


@pytest.mark.parametrize("router", ["hash-random", "gate-token", "gate-sentence"])
def test_the_grouped_forward_never_waits_for_the_device(router, monkeypatch):
    """grouped_mm keeps the group sizes on the device: a forward reads no tensor back to the host. The eager
    loop does (its group sizes), which shows that the probe catches a read. With a GPU, torch's sync debug
    mode asserts the same on the device itself."""
    model = MoEBertForSequenceClassification(layer_config(router=router)).eval()
    ids = torch.randint(1, 50, (2, 7), generator=torch.Generator().manual_seed(0))
    batch = {
        "input_ids": ids,
        "attention_mask": torch.ones_like(ids),
        "token_type_ids": torch.zeros_like(ids),
    }
    with torch.no_grad():
        model.set_experts_implementation("eager")
        expected = model(**batch).logits
        refuse_host_reads(monkeypatch)
        model.set_experts_implementation("grouped_mm")
        torch.testing.assert_close(model(**batch).logits, expected, rtol=1e-5, atol=1e-5)
        model.set_experts_implementation("eager")
        with pytest.raises(AssertionError, match="host read: Tensor.tolist"):
            model(**batch)
    monkeypatch.undo()
    if torch.cuda.is_available():
        gpu = model.cuda()
        gpu.set_experts_implementation("grouped_mm")
        torch.cuda.set_sync_debug_mode("error")
        try:
            with torch.no_grad():
                gpu(**{k: v.cuda() for k, v in batch.items()})
        finally:
            torch.cuda.set_sync_debug_mode("default")
