"""The MPOE layer (docs/method.md §9): every expert starts as the dense FFN, the central tensor is one shared
Parameter, and both forward modes equal a Switch-style FFN written out here from the dense matrices."""

import pytest
import torch
from conftest import randomize_biases, task_batch, tiny_bert, tiny_task_model
from torch import nn
from transformers import BertConfig
from transformers.models.bert.modeling_bert import BertLayer

from moebert.backbones import PairContract
from moebert.errors import MoebertError
from moebert.models import mpo
from moebert.models.mpoe_layer import MPOEFFN

# hidden 24 = 2*3*4, ffn 48 = 2*4*6: bonds [4, 24], a central tensor [4, 3, 4, 24] as large as the matrix.
MPO_SETTINGS = {"mpo_in_factors": [2, 3, 4], "mpo_out_factors": [2, 4, 6]}


def config(**overrides) -> BertConfig:
    settings = {
        "hidden_size": 24,
        "intermediate_size": 48,
        "num_attention_heads": 2,
        "num_experts": 3,
        **MPO_SETTINGS,
        **overrides,
    }
    return BertConfig(**settings)


@pytest.fixture(scope="module")
def dense():
    """A BERT layer with random non-zero biases and LayerNorm: the teacher FFN."""
    torch.manual_seed(0)
    return randomize_biases(BertLayer(config())).eval()


def from_dense(dense_layer, **overrides) -> MPOEFFN:
    layer = MPOEFFN(config(**overrides))
    layer.load_dense(PairContract().read(dense_layer), dense_layer.output.LayerNorm)
    return layer.eval()


class FixedRouter(nn.Module):
    """Routes token t to expert_ids[t], scaled by `scale` (None: unscaled), with a zero balance loss."""

    def __init__(self, expert_ids: torch.Tensor, num_experts: int, scale: torch.Tensor | None = None):
        super().__init__()
        self.expert_ids, self.num_experts, self.scale = expert_ids, num_experts, scale

    def forward(self, x, attention_mask):
        scale = torch.ones(len(self.expert_ids)) if self.scale is None else self.scale
        return self.expert_ids, scale, x.new_zeros(())


def random_inputs(shape=(2, 5, 24), seed=1, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=gen, dtype=dtype), torch.randn(shape, generator=gen, dtype=dtype)


@pytest.mark.parametrize("mode", ["rebuild", "contract"])
def test_every_expert_is_the_dense_ffn_at_initialisation(dense, mode):
    layer = from_dense(dense, mpo_forward=mode)
    x, residual = random_inputs()
    with torch.no_grad():
        expected = dense.output(dense.intermediate(x), residual)
        for e in range(3):
            layer.router = FixedRouter(torch.full((10,), e), 3)
            torch.testing.assert_close(layer(x, residual), expected, atol=1e-5, rtol=1e-5)


def test_experts_hold_the_same_auxiliaries_and_the_dense_biases(dense):
    layer = from_dense(dense)
    for experts, linear in ((layer.w_in, dense.intermediate.dense), (layer.w_out, dense.output.dense)):
        for stacked in experts.auxiliary:
            assert all(torch.equal(stacked[e], stacked[0]) for e in range(3))
        assert all(torch.equal(experts.bias[e], linear.bias) for e in range(3))
        torch.testing.assert_close(mpo.reconstruct(experts.tensors(2)), linear.weight.T, atol=1e-6, rtol=1e-5)
    for name in ("weight", "bias"):
        assert torch.equal(getattr(layer.LayerNorm, name), getattr(dense.output.LayerNorm, name))
    assert layer.LayerNorm.eps == dense.output.LayerNorm.eps


def test_the_central_tensor_carries_the_norm_of_the_dense_matrix(dense):
    layer = from_dense(dense)
    for experts, linear in ((layer.w_in, dense.intermediate.dense), (layer.w_out, dense.output.dense)):
        assert experts.central.norm().item() == pytest.approx(linear.weight.norm().item(), rel=1e-5)


def test_truncated_bonds_build_and_load_the_best_chain_of_that_size(dense):
    layer = from_dense(dense, mpo_max_bond=3)
    W = dense.intermediate.dense.weight.T.double()
    bound = mpo.decompose(W, [2, 3, 4], [2, 4, 6], max_bond=3).error_bound
    error = (mpo.reconstruct(layer.w_in.tensors(1)).double() - W).norm().item()
    assert 0 < error <= bound * (1 + 1e-5)
    assert layer.expert_parameters() < from_dense(dense).expert_parameters()


def test_one_central_parameter_per_matrix_shared_by_every_expert(dense):
    layer = from_dense(dense)
    state = layer.state_dict()
    assert sorted(k for k in state if "central" in k) == ["w_in.central", "w_out.central"]
    # Stacked tensors: 2 centres, 2 x 2 auxiliaries, 2 biases, LayerNorm and router: a few entries in all.
    assert len(state) == 11
    assert layer.central_parameters() == [layer.w_in.central, layer.w_out.central]
    for experts in (layer.w_in, layer.w_out):
        assert all(experts.tensors(e)[1] is experts.central for e in range(3))
    # The Trainer exempts parameters named "bias" from weight decay; the biases are stacked per expert.
    assert {k for k in state if "bias" in k} >= {"w_in.bias", "w_out.bias"}
    assert layer.w_in.bias.shape == (3, 48) and layer.w_out.bias.shape == (3, 24)


def test_gradients_of_every_experts_tokens_accumulate_in_the_central_tensor(dense):
    layer = from_dense(dense)
    expert_ids = torch.tensor([0, 2, 2, 1, 0, 2, 1, 1, 0, 2])
    layer.router = FixedRouter(
        expert_ids, 3, scale=torch.rand(10, generator=torch.Generator().manual_seed(0))
    )
    x, residual = random_inputs()
    weights = torch.randn(10, 24, generator=torch.Generator().manual_seed(2))
    out = layer(x, residual).reshape(10, 24)
    per_expert = [(out[expert_ids == e] * weights[expert_ids == e]).sum() for e in range(3)]
    central = layer.central_parameters()
    total = torch.autograd.grad(sum(per_expert), central, retain_graph=True)
    parts = [torch.autograd.grad(loss, central, retain_graph=True) for loss in per_expert]
    for g, g_parts in zip(total, zip(*parts)):
        assert all(p.abs().sum() > 0 for p in g_parts)
        torch.testing.assert_close(g, sum(g_parts))
    # An expert's own tensors see only its tokens.
    first = layer.w_in.auxiliary[0]
    g0 = torch.autograd.grad(per_expert[0], first, retain_graph=True)[0]
    assert g0[0].abs().sum() > 0 and torch.equal(g0[1:], torch.zeros_like(g0[1:]))


def switch_ffn(layer: MPOEFFN, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
    """The layer written out per token: top-1 of the gate's softmax, the expert's dense matrices rebuilt
    from its chain, the output scaled by the chosen probability before the residual and LayerNorm."""
    rows, res = x.reshape(-1, x.shape[-1]), residual.reshape(-1, x.shape[-1])
    probs = torch.softmax(rows @ layer.router.gate.weight.T, dim=-1)
    out = []
    for token, e in enumerate(probs.argmax(-1).tolist()):
        w_in, w_out = (mpo.reconstruct(m.tensors(e)) for m in (layer.w_in, layer.w_out))
        hidden = torch.nn.functional.gelu(rows[token] @ w_in + layer.w_in.bias[e])
        y = (hidden @ w_out + layer.w_out.bias[e]) * probs[token, e]
        out.append(layer.LayerNorm(res[token] + y))
    return torch.stack(out).view_as(x)


def test_both_forward_modes_equal_the_switch_ffn_in_outputs_and_gradients(dense):
    layer = from_dense(dense).double()
    torch.manual_seed(3)
    with torch.no_grad():
        layer.router.gate.weight.normal_(std=1.0)
        for p in (*layer.w_in.auxiliary, *layer.w_out.auxiliary, layer.w_in.bias, layer.w_out.bias):
            p.add_(torch.randn_like(p) * 0.1)  # experts that differ
    x, residual = random_inputs(shape=(3, 7, 24), dtype=torch.float64)
    assert len(set(layer.router.gate(x).argmax(-1).flatten().tolist())) == 3  # every expert gets tokens
    expected = switch_ffn(layer, x, residual)
    grads = {}
    for mode in ("rebuild", "contract"):
        layer.forward_mode = mode
        layer.zero_grad()
        out = layer(x, residual)
        torch.testing.assert_close(out, expected)
        (out * torch.arange(24, dtype=out.dtype)).sum().backward()
        grads[mode] = {name: p.grad.clone() for name, p in layer.named_parameters()}
        assert layer.balance_loss.ndim == 0 and torch.isfinite(layer.balance_loss)
    assert grads["rebuild"].keys() == grads["contract"].keys()
    for name, g in grads["rebuild"].items():
        torch.testing.assert_close(grads["contract"][name], g, msg=name)
    assert grads["rebuild"]["router.gate.weight"].abs().sum() > 0  # the scale trains the gate


def test_dropout_after_the_expert_in_training_only(dense):
    """Training mode, dropout p = 1: nothing of the expert is left, only LayerNorm(residual); p = 0.5 drops
    (and rescales) some of the expert's output; eval mode none."""
    x, residual = random_inputs()
    layer = from_dense(dense, hidden_dropout_prob=1.0).train()
    torch.testing.assert_close(layer(x, residual), layer.LayerNorm(residual), rtol=1e-6, atol=1e-6)
    layer = from_dense(dense, hidden_dropout_prob=0.5)
    evaluated = layer.eval()(x, residual)
    torch.manual_seed(0)
    trained = layer.train()(x, residual)
    assert (trained - evaluated).abs().max() > 1e-2
    torch.testing.assert_close(layer.eval()(x, residual), evaluated, rtol=0, atol=0)


def test_the_mpoe_student_starts_as_its_teacher_and_round_trips_through_save_and_load(
    pair_backbone, tmp_path
):
    from moebert.models.loading import load_model
    from moebert.students.mpoe import adapt_mpo

    teacher = tiny_task_model(pair_backbone)  # hidden 16 = 2*4*2, ffn 64 = 4*4*4
    student = adapt_mpo(teacher, 2, in_factors=[2, 4, 2], out_factors=[4, 4, 4])
    layers = student.moe_layers()
    assert all(isinstance(layer, MPOEFFN) for layer in layers) and student.config.ffn == "mpoe"
    batch = {k: v for k, v in task_batch(teacher.config).items() if k != "labels"}
    routers = [layer.router for layer in layers]
    # Layer by layer, every expert at full bond is the teacher's FFN with its LayerNorm and residual.
    x, residual = random_inputs((2, 5, 16))
    backbone = student.backbone
    with torch.no_grad():
        for layer, dense_layer in zip(layers, backbone.layer_list(teacher), strict=True):
            expected = dense_layer.output(dense_layer.intermediate(x), residual)
            for e in range(2):
                layer.router = FixedRouter(torch.full((10,), e), 2)
                torch.testing.assert_close(layer.eval()(x, residual), expected, atol=1e-5, rtol=1e-5)
    for layer in layers:
        layer.router = FixedRouter(torch.arange(40) % 2, 2)  # batch 4 x length 10, alternating experts
    with torch.no_grad():
        torch.testing.assert_close(
            student.eval()(**batch).logits, teacher(**batch).logits, atol=1e-5, rtol=1e-5
        )
    for layer, router in zip(layers, routers):
        layer.router = router
    student.save_pretrained(tmp_path)
    loaded = load_model(str(tmp_path)).eval()
    assert sum(".central" in key for key in loaded.state_dict()) == 2 * 2  # one per matrix and layer
    with torch.no_grad():
        torch.testing.assert_close(loaded(**batch).logits, student(**batch).logits, rtol=0, atol=0)
    assert loaded.central_parameters() and len(loaded.central_parameters()) == 4


def test_parameter_counts_at_bert_base_size():
    layer = MPOEFFN(BertConfig(num_experts=4))  # hidden 768, ffn 3072, default factors
    central, auxiliary = 2_359_296, 184_720  # per matrix (docs/method.md §9)
    assert [p.numel() for p in layer.central_parameters()] == [central, central]
    per_expert = 2 * auxiliary + 3072 + 768
    assert layer.expert_parameters() == per_expert
    shared = 2 * central + 2 * 768 + 768 * 4  # centres, LayerNorm, router
    assert sum(p.numel() for p in layer.parameters()) == shared + 4 * per_expert


def test_random_init_has_the_dense_scale():
    layer = MPOEFFN(
        config(
            initializer_range=0.02,
            mpo_in_factors=None,
            mpo_out_factors=None,
            hidden_size=384,
            intermediate_size=1536,
        )
    )
    W = mpo.reconstruct(layer.w_in.tensors(0))
    assert W.shape == (384, 1536) and W.std().item() == pytest.approx(0.02, rel=0.02)


def test_clear_errors_for_bad_factorisations_and_modes():
    with pytest.raises(MoebertError, match=r"in factors \[2, 3, 5\] multiply to 30.* dimension is 24"):
        MPOEFFN(config(mpo_in_factors=[2, 3, 5]))
    with pytest.raises(MoebertError, match="no default MPO factorisation for a 24x48"):
        MPOEFFN(config(mpo_in_factors=None, mpo_out_factors=None))
    with pytest.raises(MoebertError, match="both mpo_in_factors and mpo_out_factors"):
        MPOEFFN(config(mpo_out_factors=None))
    with pytest.raises(MoebertError, match="unknown mpo_forward 'fast'"):
        MPOEFFN(config(mpo_forward="fast"))


def test_inference_reuses_rebuilt_matrices_until_a_tensor_changes(dense, monkeypatch):
    layer = from_dense(dense)
    calls = []
    real = mpo.reconstruct
    monkeypatch.setattr(mpo, "reconstruct", lambda tensors: calls.append(1) or real(tensors))
    x = torch.randn(5, 24)
    with torch.no_grad():
        first = layer.w_in(1, x, "rebuild")
        assert len(calls) == 1
        torch.testing.assert_close(layer.w_in(1, x, "rebuild"), first, rtol=0, atol=0)
        assert len(calls) == 1  # kept
        layer.w_in.auxiliary[0].mul_(2)  # a changed auxiliary: the matrix is rebuilt
        assert not torch.equal(layer.w_in(1, x, "rebuild"), first) and len(calls) == 2
    layer.w_in(1, x, "rebuild")  # under autograd: rebuilt every call, with gradients
    layer.train()
    with torch.no_grad():
        layer.w_in(1, x, "rebuild")
    assert len(calls) == 4


def test_the_mpoe_config_is_checked_and_carries_its_settings():
    from moebert.models.modeling import MoEBertConfig
    from moebert.students.mpoe import adapt_mpo

    with pytest.raises(MoebertError, match="unknown ffn 'dense'; choose one of moe, mpoe"):
        MoEBertConfig(ffn="dense")
    with pytest.raises(MoebertError, match="use router 'gate-token', not 'hash-random'"):
        MoEBertConfig(ffn="mpoe", router="hash-random")
    student = adapt_mpo(
        tiny_bert(), 3, max_bond=2, forward="contract", in_factors=[2, 4, 2], out_factors=[4, 4, 4]
    )
    config = student.config
    assert (config.num_experts, config.mpo_max_bond, config.mpo_forward) == (3, 2, "contract")
    layer = student.moe_layers()[0]
    assert layer.num_experts == 3 and layer.forward_mode == "contract"
    assert max(t.shape[-1] for t in layer.w_in.tensors(0)) == 2
