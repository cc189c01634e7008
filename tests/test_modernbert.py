"""ModernBERT, the pre-norm GLU contract: every student kind equals its dense construction exactly or is refused,
importance equals its per-example brute force, and the exported folder reloads without the package."""

import copy
import json
import os
import subprocess
import sys

import pytest
import torch
from conftest import randomize_biases
from test_export import RELOAD
from transformers import (
    AutoTokenizer,
    ModernBertConfig,
    ModernBertForQuestionAnswering,
    ModernBertForSequenceClassification,
)

from moebert.backbones import MODERNBERT, backbone_of
from moebert.cli import main
from moebert.errors import MoebertError
from moebert.export.folder import export
from moebert.models.bert_experts import IMPLEMENTATIONS
from moebert.models.glu_layer import GluMoEFFN
from moebert.models.loading import load_model, parameter_counts
from moebert.models.routing import HASH_ROUTERS, ROUTERS
from moebert.speed.reference_style import reference_style
from moebert.students.dense_narrow import dense_narrow
from moebert.students.distil_half import distil_half
from moebert.students.moe import adapt
from moebert.students.mpoe import adapt_mpo
from moebert.training.importance import importance_scores, importance_scores_autograd, orders

WIDTH = 48  # intermediate_size
PAD = 50283  # ModernBERT's pad id, near its other special ids: a vocabulary of at least 50368


def tiny_modernbert(head=ModernBertForSequenceClassification, seed=0, **overrides):
    """4 layers (global, local, local, global attention), a local window shorter than the inputs, random
    norm weights (and biases where the config has them) so that no term of a formula is a trivial 1 or 0."""
    torch.manual_seed(seed)
    settings = {
        "vocab_size": 50368,
        "hidden_size": 32,
        "intermediate_size": WIDTH,
        "num_hidden_layers": 4,
        "num_attention_heads": 4,
        "global_attn_every_n_layers": 3,
        "local_attention": 8,
        "max_position_embeddings": 64,
        "num_labels": 2 if head is ModernBertForQuestionAnswering else 3,  # QA: start and end
    }
    return randomize_biases(head(ModernBertConfig(**{**settings, **overrides})), seed).eval()


def batch(size=3, seq=20, seed=1, labels=True):
    """Token ids over the whole vocabulary, right padding with the pad id (rows 2 and 3 padded), labels."""
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 50368, (size, seq), generator=gen)
    mask = torch.ones(size, seq, dtype=torch.long)
    mask[1, 12:] = 0
    mask[2, 5:] = 0
    out = {"input_ids": ids.masked_fill(mask == 0, PAD), "attention_mask": mask}
    if labels:
        out["labels"] = torch.randint(3, (size,), generator=gen)
    return out


def random_orders(seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randperm(WIDTH, generator=gen) for _ in range(4)]


def no_dropout(model):
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    return model


@pytest.fixture(scope="module")
def teacher():
    return tiny_modernbert()


def test_the_backbone_is_read_from_the_config():
    assert backbone_of(ModernBertConfig()) is MODERNBERT and backbone_of("moe-modernbert") is MODERNBERT
    assert MODERNBERT.activation(ModernBertConfig(hidden_activation="silu")) == "silu"


@pytest.mark.parametrize("bias", [False, True], ids=["no-bias", "mlp-bias"])
def test_the_contract_reads_neurons_as_the_activated_row_the_gate_row_and_the_output_column(bias):
    model = tiny_modernbert(mlp_bias=bias, norm_bias=bias)
    layer = model.model.layers[1]
    dense = MODERNBERT.contract.read(layer)
    wi, wo = layer.mlp.Wi, layer.mlp.Wo
    assert torch.equal(dense.up, wi.weight[:WIDTH]) and torch.equal(dense.gate, wi.weight[WIDTH:])
    assert torch.equal(dense.down, wo.weight)
    if bias:
        assert torch.equal(dense.up_bias, wi.bias[:WIDTH]) and torch.equal(dense.gate_bias, wi.bias[WIDTH:])
        assert torch.equal(dense.down_bias, wo.bias)
    else:
        assert dense.up_bias is dense.gate_bias is dense.down_bias is None
    # The module computes act(up y) * (gate y) through Wo: the halves are in the order the contract reads them.
    y = torch.randn(5, 32)
    by_hand = torch.nn.functional.linear(
        layer.mlp.act(torch.nn.functional.linear(y, dense.up, dense.up_bias))
        * torch.nn.functional.linear(y, dense.gate, dense.gate_bias),
        dense.down,
        dense.down_bias,
    )
    torch.testing.assert_close(layer.mlp(y), by_hand, rtol=0, atol=1e-6)


def test_experts_hold_the_rows_and_columns_of_their_neurons(teacher):
    student, indices = adapt(teacher, random_orders(), num_experts=4, expert_dim=24, shared_dim=16)
    for layer_s, layer_t, chosen in zip(student.model.layers, teacher.model.layers, indices, strict=True):
        experts, wi, wo = layer_s.mlp.experts, layer_t.mlp.Wi.weight, layer_t.mlp.Wo.weight
        assert type(layer_s.mlp) is GluMoEFFN and type(layer_s.mlp_norm) is torch.nn.LayerNorm
        for e, idx in enumerate(chosen):
            idx = torch.tensor(idx)
            torch.testing.assert_close(
                experts.gate_up_proj[e], wi[torch.cat([idx, idx + WIDTH])].T, rtol=0, atol=0
            )
            torch.testing.assert_close(experts.down_proj[e], wo[:, idx].T, rtol=0, atol=0)


def _forward(model, head_batch):
    with torch.no_grad():
        return model(**head_batch, output_hidden_states=True)


def _assert_same(got, expected, mask, atol=1e-5):
    for name in ("logits", "start_logits", "end_logits"):
        if hasattr(expected, name):
            torch.testing.assert_close(getattr(got, name), getattr(expected, name), rtol=1e-5, atol=atol)
    for s, t in zip(got.hidden_states, expected.hidden_states, strict=True):
        torch.testing.assert_close(s[mask], t[mask], rtol=1e-5, atol=atol)


@pytest.mark.parametrize("head", [ModernBertForSequenceClassification, ModernBertForQuestionAnswering])
@pytest.mark.parametrize("router", ROUTERS)
def test_experts_holding_every_neuron_equal_the_dense_teacher(head, router):
    """Every expert all neurons in a permuted order (a hash router: 4 experts; a gate router: 1 expert, whose
    probability is exactly 1; with more, see the next test): the teacher's function, logits and every hidden
    state, under padding."""
    teacher = tiny_modernbert(head)
    experts = 4 if router in HASH_ROUTERS else 1
    student, _ = adapt(
        teacher,
        random_orders(),
        experts,
        WIDTH,
        WIDTH,
        router=router,
        token_counts=torch.arange(50368),
    )
    inputs = batch(labels=False)
    _assert_same(_forward(student.eval(), inputs), _forward(teacher, inputs), inputs["attention_mask"].bool())


def test_a_gate_scales_the_branch_by_its_probability_not_the_residual(teacher):
    """Switch copies (every neuron in each of 4 experts) under a token gate: each layer's MoE module returns the
    dense GLU times the chosen probability, from the pre-normed input it was given."""
    student, _ = adapt(teacher, random_orders(), 4, WIDTH, WIDTH, router="gate-token", seed=2)
    y = torch.randn(2, 7, 32)
    for layer_s, layer_t in zip(student.eval().model.layers, teacher.model.layers, strict=True):
        moe = layer_s.mlp
        probability = moe.router.gate(y).softmax(-1).max(-1).values
        with torch.no_grad():
            torch.testing.assert_close(moe(y), layer_t.mlp(y) * probability[..., None], rtol=1e-5, atol=1e-6)
        assert moe.balance_loss > 0


@pytest.mark.parametrize("gate_scale", ["output", "branch"])
def test_both_gate_scales_are_the_branch_and_the_card_says_so(teacher, gate_scale):
    """A pre-norm layer's module output is the branch: both values give the same model, and its card names
    the branch, not a LayerNorm the experts do not have."""
    from moebert.students.moe import PRE_NORM_GATE_SCALE, MoE

    student, _ = adapt(
        teacher, random_orders(), 4, 24, 16, router="gate-token", seed=3, gate_scale=gate_scale
    )
    reference, _ = adapt(teacher, random_orders(), 4, 24, 16, router="gate-token", seed=3)
    inputs = batch(labels=False)
    with torch.no_grad():
        torch.testing.assert_close(student.eval()(**inputs).logits, reference.eval()(**inputs).logits)
    assert ["gate scale", PRE_NORM_GATE_SCALE] in MoE().card_rows(student)


@pytest.mark.parametrize("router", ROUTERS)
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_tied_equals_copied_at_initialisation(teacher, router, mode):
    built = {
        shared: adapt(
            teacher,
            random_orders(),
            4,
            24,
            16,
            router=router,
            seed=3,
            token_counts=torch.arange(50368),
            shared=shared,
        )[0]
        for shared in ("copied", "tied")
    }
    assert built["tied"].moe_layers()[0].experts.gate_up_proj.shape == (4, 32, 16)  # 8 private neurons
    inputs = batch(labels=False)
    outputs = {}
    for shared, student in built.items():
        no_dropout(student).train(mode == "train")
        outputs[shared] = student(**inputs, output_hidden_states=True)
    _assert_same(outputs["tied"], outputs["copied"], inputs["attention_mask"].bool())
    if router.startswith("gate"):
        torch.testing.assert_close(outputs["tied"].balance_loss, outputs["copied"].balance_loss)


@pytest.mark.parametrize("bias", [False, True], ids=["no-bias", "mlp-bias"])
def test_dense_narrow_equals_one_expert_of_the_same_neurons(bias):
    """Two independent cuts of the same neurons (the contract's narrow_state; the expert's rows and columns):
    the same function. At full width, the teacher's."""
    teacher = tiny_modernbert(mlp_bias=bias, norm_bias=bias)
    order = random_orders()
    narrow, kept = dense_narrow(teacher, order, 20)
    assert narrow.config.intermediate_size == 20 and narrow.model.layers[0].mlp.Wi.out_features == 40
    one_expert, _ = adapt(teacher, [torch.tensor(k) for k in kept], 1, 20, 0)
    inputs = batch(labels=False)
    _assert_same(
        _forward(narrow, inputs), _forward(one_expert.eval(), inputs), inputs["attention_mask"].bool()
    )
    full, _ = dense_narrow(teacher, order, WIDTH)
    _assert_same(_forward(full, inputs), _forward(teacher, inputs), inputs["attention_mask"].bool(), atol=0)


@pytest.mark.parametrize("router", ROUTERS)
def test_padding_changes_no_real_token(teacher, router):
    """More padding at the end of the batch: the logits and the real tokens' hidden states stay (the hash routes
    index the tokens in the layer's [batch, seq] order; a sentence gate pools real tokens only)."""
    student, _ = adapt(
        teacher, random_orders(), 4, 24, 16, router=router, seed=4, token_counts=torch.arange(50368)
    )
    inputs = batch(labels=False)
    longer = {
        "input_ids": torch.cat([inputs["input_ids"], torch.full((3, 6), PAD)], 1),
        "attention_mask": torch.cat([inputs["attention_mask"], torch.zeros(3, 6, dtype=torch.long)], 1),
    }
    short, long_ = _forward(student.eval(), inputs), _forward(student, longer)
    torch.testing.assert_close(long_.logits, short.logits, rtol=1e-5, atol=1e-6)
    mask = inputs["attention_mask"].bool()
    for a, b in zip(long_.hidden_states, short.hidden_states, strict=True):
        torch.testing.assert_close(a[:, :20][mask], b[mask], rtol=1e-5, atol=1e-5)


def test_token_type_ids_are_refused(teacher):
    student, _ = adapt(teacher, random_orders(), 4, 24, 16)
    inputs = batch(labels=False)
    with pytest.raises(MoebertError, match="ModernBERT model takes no token_type_ids"):
        student(**inputs, token_type_ids=torch.zeros_like(inputs["input_ids"]))


@pytest.mark.parametrize("bias", [False, True], ids=["no-bias", "mlp-bias"])
def test_importance_equals_the_per_example_brute_force(bias):
    """Per example, by autograd over the actual weights: neuron j's term is its activated row's (Wi row j)
    plus the mean of its gate row's (Wi row j + I) and its output column's (Wo column j)."""
    model = tiny_modernbert(mlp_bias=bias, norm_bias=bias).double()
    batches = [batch(seed=s) for s in (1, 2)]
    expected = [torch.zeros(WIDTH, dtype=torch.float64) for _ in range(4)]
    for b in batches:
        for i in range(len(b["labels"])):
            one = {k: v[i : i + 1] for k, v in b.items() if k != "labels"}
            loss = torch.nn.functional.cross_entropy(model(**one).logits, b["labels"][i : i + 1])
            for layer, score in zip(model.model.layers, expected, strict=True):
                wi, wo = layer.mlp.Wi.weight, layer.mlp.Wo.weight
                gi, go = torch.autograd.grad(loss, [wi, wo], retain_graph=True)
                activated, gate = (wi[:WIDTH] * gi[:WIDTH]).sum(1), (wi[WIDTH:] * gi[WIDTH:]).sum(1)
                column = (wo * go).sum(0)
                if not bias:  # the gate row's term is the output column's (docs/method.md)
                    torch.testing.assert_close(gate, column, rtol=1e-9, atol=1e-12)
                score += (activated + (gate + column) / 2).abs()
    fast = importance_scores(model, batches, progress=False)
    slow = importance_scores_autograd(model, batches)
    for f, s, e in zip(fast, slow, expected, strict=True):
        assert (e > 0).all()
        torch.testing.assert_close(f, e, rtol=1e-7, atol=0)
        torch.testing.assert_close(s, e, rtol=1e-9, atol=0)
    assert orders(fast)[0].shape == (WIDTH,)


def test_parameter_counts_of_a_glu_expert(teacher):
    """One more expert: its activated and gate rows and its output columns, 3 x hidden x expert width (no bias,
    no LayerNorm of its own); tied shared neurons are stored once."""
    copied, _ = adapt(teacher, random_orders(), 4, 24, 16)
    tied, _ = adapt(teacher, random_orders(), 4, 24, 16, shared="tied")
    assert parameter_counts(copied)["per_expert"] == 4 * 3 * 32 * 24
    assert parameter_counts(tied)["per_expert"] == 4 * 3 * 32 * 8
    dense = sum(p.numel() for p in teacher.model.parameters())
    assert parameter_counts(copied)["effective"] == dense - 4 * 3 * 32 * (WIDTH - 24)


def test_refused_students_say_why_before_building(teacher, tmp_path, capsys):
    for kind, words in (("distil-half", "no attention norm"), ("mpoe", "fused GLU")):
        with pytest.raises(
            MoebertError, match=f"student {kind} cannot be built from a ModernBERT teacher.*{words}"
        ):
            MODERNBERT.check_student(kind)
    with pytest.raises(MoebertError, match="distil-half cannot be built"):
        distil_half(teacher)
    with pytest.raises(MoebertError, match="mpoe cannot be built"):
        adapt_mpo(teacher, 2)
    # The adapt stage refuses from the teacher's config alone: this folder has no tokenizer to load.
    teacher.save_pretrained(tmp_path / "teacher")
    argv = ["adapt", "--model", str(tmp_path / "teacher"), "--output", str(tmp_path / "out")]
    assert main([*argv, "--student", "distil-half"]) == 2
    assert "distil-half cannot be built from a ModernBERT teacher" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_saved_student_reloads_to_the_same_outputs(teacher, tmp_path):
    student, _ = adapt(teacher, random_orders(), 4, 24, 16, router="gate-sentence", shared="tied", seed=5)
    student.save_pretrained(tmp_path)
    reloaded = load_model(str(tmp_path)).eval()
    inputs = batch(labels=False)
    torch.testing.assert_close(
        _forward(reloaded, inputs).logits, _forward(student.eval(), inputs).logits, rtol=0, atol=0
    )


@pytest.mark.parametrize("router", ["hash-random", "gate-token"])
def test_exported_folder_reloads_without_the_package(teacher, tmp_path, router):
    """The folder, loaded by transformers alone with trust_remote_code in a Python that cannot import moebert:
    the same logits."""
    from moebert.hub import PACKAGED_MINILM
    from moebert.models.loading import resolve_model

    student, _ = adapt(teacher, random_orders(), 4, 24, 16, router=router, shared="tied", seed=6)
    gen = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for param in student.parameters():  # off its construction: every expert and route matters
            param.add_(torch.randn(param.shape, generator=gen) * 0.05)
    source, folder = tmp_path / "trained", tmp_path / "exported"
    student.save_pretrained(source)
    AutoTokenizer.from_pretrained(resolve_model(PACKAGED_MINILM)).save_pretrained(source)
    export(source, folder)
    inputs = batch(labels=False)
    torch.save(inputs, tmp_path / "batch.pt")
    done = subprocess.run(
        [
            sys.executable,
            "-I",
            "-c",
            RELOAD,
            json.dumps({"m": (str(folder), "classification", True, str(tmp_path / "batch.pt"))}),
            str(tmp_path / "out.pt"),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    got = torch.load(tmp_path / "out.pt")["m"]
    torch.testing.assert_close(got, _forward(student.eval(), inputs).logits, rtol=0, atol=1e-6)


@pytest.mark.parametrize("router", ["hash-random", "gate-token"])
def test_the_reference_style_forward_has_the_same_outputs(teacher, router):
    """`moebert speed --reference` on a ModernBERT: the reference's grouping around the GLU experts."""
    student, _ = adapt(teacher, random_orders(), 4, 24, 16, router=router, shared="tied", seed=8)
    inputs = batch(labels=False)
    fast = _forward(student.eval(), inputs).logits
    with reference_style(copy.deepcopy(student)) as reference, torch.no_grad():
        assert all("forward" in vars(layer) for layer in reference.moe_layers())
        torch.testing.assert_close(reference(**inputs).logits, fast, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("bias", [False, True], ids=["no-bias", "mlp-bias"])
@pytest.mark.parametrize("implementation", [i for i in (*IMPLEMENTATIONS, "auto") if i != "eager"])
def test_every_experts_implementation_computes_the_eager_glu(bias, implementation):
    """The interface's kernels split the stacked projection as the eager expert does (act of the first half
    times the second): the same outputs and gradients, with an expert that gets no token."""
    teacher = tiny_modernbert(mlp_bias=bias, norm_bias=bias)
    student = adapt(teacher, random_orders(), 4, 24, 16, router="gate-token", seed=9)[0].eval()
    gen = torch.Generator().manual_seed(10)
    with torch.no_grad():
        for param in student.parameters():
            param.add_(torch.randn(param.shape, generator=gen) * 0.05)
    layer = student.moe_layers()[1]
    y = torch.randn(2, 9, 32, generator=gen)
    results = {}
    for name in ("eager", implementation):
        student.set_experts_implementation(name)
        student.zero_grad()
        layer.expert_ids = torch.randint(3, (18,), generator=torch.Generator().manual_seed(11))  # no expert 3
        layer.router = None
        out = layer(y)
        out.pow(2).sum().backward()
        results[name] = (out.detach(), [p.grad.clone() for p in layer.experts.parameters()])
    torch.testing.assert_close(results[implementation][0], results["eager"][0], rtol=1e-5, atol=1e-6)
    for got, expected in zip(results[implementation][1], results["eager"][1], strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def test_tied_shared_weights_get_the_sum_of_the_copies_gradients(teacher):
    built = {
        shared: adapt(teacher, random_orders(), 4, 24, 16, expert_dropout=0.0, shared=shared)[0]
        for shared in ("copied", "tied")
    }
    b = batch()
    for student in built.values():
        no_dropout(student).train()
        student(**b).loss.backward()
    for copied, tied in zip(built["copied"].moe_layers(), built["tied"].moe_layers(), strict=True):
        copies, shared = copied.experts, tied.shared
        # gate_up_proj's columns: the activated half, then the gate half, each shared neurons first.
        halves = copies.gate_up_proj.grad.split(24, dim=-1)
        torch.testing.assert_close(
            shared.gate_up_proj.grad, torch.cat([h[..., :16] for h in halves], -1).sum(0)
        )
        torch.testing.assert_close(shared.down_proj.grad, copies.down_proj.grad[:, :16].sum(0))
        torch.testing.assert_close(
            tied.experts.gate_up_proj.grad, torch.cat([h[..., 16:] for h in halves], -1)
        )
        assert shared.gate_up_proj.grad.abs().sum() > 0


def tiny_modernbert_dir(path):
    """A saved random ModernBERT with the packaged MiniLM's word pieces, tokenized without token types (as
    ModernBERT's own tokenizer does), its special ids the tokenizer's; a head of RTE's two labels."""
    from moebert.hub import PACKAGED_MINILM
    from moebert.models.loading import resolve_model

    tokenizer = AutoTokenizer.from_pretrained(
        resolve_model(PACKAGED_MINILM), model_input_names=["input_ids", "attention_mask"]
    )
    special = {"pad_token_id": tokenizer.pad_token_id, "cls_token_id": tokenizer.cls_token_id}
    special |= {"sep_token_id": tokenizer.sep_token_id, "bos_token_id": tokenizer.cls_token_id}
    model = tiny_modernbert(
        max_position_embeddings=128, eos_token_id=tokenizer.sep_token_id, num_labels=2, **special
    )
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.mark.slow
def test_tiny_modernbert_config_runs_end_to_end(tmp_path, glue_dir):
    """The workflow on a random ModernBERT teacher: every stage through report, export and predict, the MoE
    student under a tied token gate, dense-narrow and majority."""
    import yaml
    from test_workflow import REPO, SNAKEFILE, snakemake

    config = yaml.safe_load((REPO / ".test" / "config" / "config.yaml").read_text())
    config["teacher"]["model"] = str(tiny_modernbert_dir(tmp_path / "modernbert"))
    config["tasks"] = ["rte"]
    config["methods"] = {
        "moebert": {
            "num_experts": 4,
            "expert_dim": 24,
            "shared_dim": 16,
            "router": "gate-token",
            "shared": "tied",
        },
        "dense-narrow": {"student": "dense-narrow", "expert_dim": 24},
        "majority": {"student": "majority"},
    }
    for key in ("sweeps", "claims"):
        config.pop(key)
    del config["task_settings"]["stsb"]
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    argv = ["-s", SNAKEFILE, "--directory", tmp_path / "run", "--configfile", tmp_path / "config.yaml"]
    proc = snakemake(*argv, "--config", f"data={glue_dir}", "--cores", 2, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-5000:]
    results = tmp_path / "run" / "results"
    table = (results / "tables" / "glue.md").read_text()
    assert all(name in table for name in ("teacher", "moebert", "dense-narrow", "majority"))
    metrics = json.loads((results / "metrics" / "rte" / "moebert" / "seed0.json").read_text())
    assert metrics["params"]["effective"] < metrics["params"]["total"]
    exported = results / "export" / "rte" / "moebert" / "seed0"
    assert {"glu_layer.py", "modernbert.py", "modeling.py"} <= {p.name for p in exported.iterdir()}
    assert json.loads((exported / "config.json").read_text())["model_type"] == "moe-modernbert"
    rows = (results / "predictions" / "moebert" / "seed0" / "rte" / "RTE.tsv").read_text().splitlines()
    assert len(rows) == 3001


def test_tied_equals_copied_with_biases():
    """mlp_bias: the shared GLU keeps its neurons' input biases, every expert its own and the output bias."""
    teacher = tiny_modernbert(mlp_bias=True, norm_bias=True)
    built = [
        adapt(teacher, random_orders(), 4, 24, 16, seed=3, shared=s)[0].eval() for s in ("copied", "tied")
    ]
    assert built[1].moe_layers()[0].shared.gate_up_proj_bias.shape == (32,)
    inputs = batch(labels=False)
    _assert_same(_forward(built[1], inputs), _forward(built[0], inputs), inputs["attention_mask"].bool())
