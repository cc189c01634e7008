"""The fast MoE forward against a per-token computation and the reference-style forward; `moebert speed`
and the speed plots (`moebert.reporting.plots`) on tiny models. No timing is asserted: timings belong to benchmarks/moe_speed.py."""

import argparse
import contextlib
import gc
import json
import weakref

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from conftest import TINY_SIZE, random_batch, tiny_bert

from moebert.errors import MoebertError
from moebert.models.bert_experts import IMPLEMENTATIONS
from moebert.models.modeling import MoEBertConfig, MoEBertForSequenceClassification
from moebert.models.routing import ROUTERS, hash_balance_table
from moebert.reporting import plots
from moebert.speed import measure as speed
from moebert.speed.reference_style import reference_style

TINY = TINY_SIZE
EXPERTS = 4


def tiny_moe(router: str, seed: int = 0, gate_scale: str = "output") -> MoEBertForSequenceClassification:
    """A tiny MoEBERT with weights large enough that every expert and the gate scale matter."""
    torch.manual_seed(seed)
    model = MoEBertForSequenceClassification(
        MoEBertConfig(
            **TINY,
            num_labels=3,
            num_experts=EXPERTS,
            expert_dim=8,
            shared_dim=0,
            router=router,
            expert_dropout=0.0,
            gate_scale=gate_scale,
        )
    )
    with torch.no_grad():
        for layer in model.moe_layers():
            for p in layer.parameters():  # experts, gate and LayerNorm
                p.normal_(0, 0.5)
        if router == "hash-balance":
            counts = torch.arange(TINY["vocab_size"]).flip(0)
            model.hash_table.copy_(hash_balance_table(counts, TINY["num_hidden_layers"], EXPERTS, seed=3))
    return model.eval()


def _gate_routes(layer, hidden_states):
    """Top-1 of the gate's softmax, per token or per sentence (masked mean), straight from the definition."""
    mask = layer.attention_mask.to(hidden_states.dtype)
    if layer.router.per_sentence:
        pooled = (hidden_states * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True)
        prob, expert = layer.router.gate(pooled).softmax(-1).max(-1)
        seq = hidden_states.shape[1]
        return expert.repeat_interleave(seq), prob.repeat_interleave(seq)
    prob, expert = layer.router.gate(hidden_states).softmax(-1).max(-1)
    return expert.reshape(-1), prob.reshape(-1)


@contextlib.contextmanager
def per_token(model):
    """Every MoE layer computes token by token: route the token, run its expert on that one row, its
    LayerNorm after the residual, the gate probability after that."""
    ids = {}
    hook = model.register_forward_pre_hook(
        lambda m, a, kw: ids.update(flat=kw["input_ids"].reshape(-1)), with_kwargs=True
    )

    def forward(layer, index, hidden_states, input_tensor):
        if layer.router is None:
            experts, scale = model.hash_table[index][ids["flat"]], torch.ones(ids["flat"].shape)
        else:
            experts, scale = _gate_routes(layer, hidden_states)
        width = hidden_states.shape[-1]
        rows = []
        for x, r, e, s in zip(
            hidden_states.reshape(-1, width), input_tensor.reshape(-1, width), experts.tolist(), scale
        ):
            w = layer.experts
            y = (
                layer.experts.act_fn(x @ w.up_proj[e] + w.up_proj_bias[e]) @ w.down_proj[e]
                + w.down_proj_bias[e]
            )
            norm = torch.nn.functional.layer_norm(
                y + r, (width,), layer.LayerNorm.weight[e], layer.LayerNorm.bias[e], layer.LayerNorm.eps
            )
            rows.append(s * norm)
        return torch.stack(rows).view_as(hidden_states)

    layers = model.moe_layers()
    for i, layer in enumerate(layers):
        layer.forward = lambda h, r, layer=layer, i=i: forward(layer, i, h, r)
    try:
        yield model
    finally:
        hook.remove()
        for layer in layers:
            del layer.forward


def starve_experts(model, batch: dict) -> None:
    """Make experts 2 and 3 get no token in the first layer: hash ids that route elsewhere, or a gate
    whose logits for 2 and 3 (zero) never beat max(x.v, -x.v) >= 0 of experts 0 and 1."""
    if model.config.router.startswith("hash"):
        allowed = torch.nonzero(model.hash_table[0] < 2).flatten()
        ids = batch["input_ids"]
        batch["input_ids"] = torch.where(ids > 0, allowed[ids % len(allowed)], ids)
        return
    gate = model.moe_layers()[0].router.gate.weight
    with torch.no_grad():
        v = torch.randn(gate.shape[1])
        gate.copy_(torch.stack([v, -v, torch.zeros_like(v), torch.zeros_like(v)]))


def outputs(model, batch):
    out = model(**batch, output_hidden_states=True)
    return [out.logits, *out.hidden_states]


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("starved", [False, True], ids=["all-experts", "empty-expert"])
@pytest.mark.parametrize("router", ROUTERS)
def test_fast_forward_equals_per_token_and_reference_style(router, starved, implementation):
    model = tiny_moe(router)
    model.set_experts_implementation(implementation)
    batch = {k: v for k, v in random_batch(batch=4, seq=10).items() if k != "labels"}  # ragged, padded
    if starved:
        starve_experts(model, batch)
    routes = []
    first = model.moe_layers()[0]
    first.experts.register_forward_hook(lambda m, a, out: routes.append(a[1].flatten()))
    with torch.no_grad():
        fast = outputs(model, batch)
        with per_token(model):
            plain = outputs(model, batch)
        with reference_style(model):
            reference = outputs(model, batch)
    assert not starved or len(set(routes[0].tolist())) < EXPERTS  # an expert without tokens
    for f, p, r in zip(fast, plain, reference, strict=True):
        torch.testing.assert_close(f, p, atol=1e-5, rtol=1e-5)  # every position, padding included
        torch.testing.assert_close(f, r, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("router", ["gate-token", "gate-sentence"])
def test_reference_style_scales_the_branch_where_the_model_does(router):
    """gate_scale branch: the reference-style twin puts the gate probability where the fast forward does."""
    model = tiny_moe(router, gate_scale="branch")
    batch = {k: v for k, v in random_batch(batch=4, seq=10).items() if k != "labels"}
    with torch.no_grad():
        fast = outputs(model, batch)
        with reference_style(model):
            reference = outputs(model, batch)
        at_output = outputs(tiny_moe(router), batch)
    for f, r in zip(fast, reference, strict=True):
        torch.testing.assert_close(f, r, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(fast[-1], at_output[-1], atol=1e-3)


@pytest.mark.parametrize("router", ["hash-random", "gate-token", "gate-sentence"])
def test_fast_forward_gradients_equal_per_token(router):
    model = tiny_moe(router)
    batch = random_batch(batch=3, seq=8)
    grads = []
    for context in (contextlib.nullcontext(model), per_token(model)):
        model.zero_grad()
        with context:
            model(**batch).loss.backward()
        grads.append({name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and any("up_proj" in name for name in grads[0])
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], atol=1e-5, rtol=1e-4, msg=name)


def test_reference_style_is_undone_after_the_block():
    model = tiny_moe("hash-random")
    with reference_style(model):
        assert "forward" in vars(model) and all("forward" in vars(layer) for layer in model.moe_layers())
    assert "forward" not in vars(model) and not any("forward" in vars(layer) for layer in model.moe_layers())


# ---------------------------------------------------------------------------------------------
# The command and its plots


def run_speed(*argv):
    parser = argparse.ArgumentParser()
    speed.add_arguments(parser)
    speed.run(parser.parse_args([str(a) for a in argv]))


@pytest.fixture(scope="module")
def trained_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    tiny_bert().save_pretrained(root / "teacher")
    tiny_moe("hash-random").save_pretrained(root / "moebert")
    return root


def test_speed_command_writes_results_that_the_plots_read(trained_dirs, tmp_path):
    out = tmp_path / "speed" / "cpu.csv"
    run_speed(
        "--model",
        f"teacher={trained_dirs / 'teacher'}",
        "--model",
        f"moebert={trained_dirs / 'moebert'}",
        "--random",
        trained_dirs / "teacher",
        "--random-models",
        "dense-narrow",
        "--reference",
        "--batch-sizes",
        1,
        2,
        "--seq-lengths",
        8,
        16,
        "--repeats",
        2,
        "--threads",
        1,
        "--device",
        "cpu",
        "--output",
        out,
    )
    table = pd.read_csv(out)
    assert list(table.columns) == speed.COLUMNS
    assert sorted(table.model.unique()) == ["dense-narrow", "moebert", "moebert-reference", "teacher"]
    assert len(table) == 4 * 2 * 2 and (table.repeats == 2).all() and (table.threads == 1).all()
    assert (table.latency_ms_p90 >= table.latency_ms_median).all() and (table.examples_per_s > 0).all()
    narrow = table[table.model == "dense-narrow"].iloc[0]
    assert (
        narrow.weights == "random"
        and narrow.params_total < table[table.model == "teacher"].params_total.iloc[0]
    )
    record = json.loads(out.with_suffix(".json").read_text())
    assert {"cpu", "threads", "torch", "device"} <= set(record["hardware"]) and record["hardware"][
        "threads"
    ] == 1
    assert len(record["timings"]) == len(table) * 2
    average = pd.Series({"teacher": 80.0, "moebert": 78.0})  # the report's task averages of two methods
    written = plots.write_speed_plots([out], average, 1, tmp_path / "plots")
    assert sorted(p.name for p in written) == [
        f"{name}.{fmt}"
        for name in ("accuracy_vs_latency", "speed_latency", "speed_speedup")
        for fmt in ("png", "svg")
    ]


def test_speed_command_holds_one_model_and_its_twin_at_a_time(trained_dirs, tmp_path, monkeypatch):
    timed, alive = [], []
    original = speed.measure

    def recording(models, *args):
        gc.collect()
        assert not [ref for ref in alive if ref() is not None], "an earlier model is still in memory"
        timed.append(sorted(models))
        alive.extend(weakref.ref(model) for model in models.values())
        return original(models, *args)

    monkeypatch.setattr(speed, "measure", recording)
    run_speed(
        *("--model", f"teacher={trained_dirs / 'teacher'}", "--model", f"moebert={trained_dirs / 'moebert'}"),
        *("--random", trained_dirs / "teacher", "--random-models", "dense-narrow", "--reference"),
        *("--batch-sizes", 1, "--seq-lengths", 8, "--repeats", 1, "--threads", 1, "--device", "cpu"),
        *("--output", tmp_path / "cpu.csv"),
    )
    assert timed == [["teacher"], ["moebert", "moebert-reference"], ["dense-narrow"]]


def test_speed_plots_skip_what_has_no_data(trained_dirs, tmp_path):
    out = tmp_path / "random.csv"
    run_speed(
        "--random",
        trained_dirs / "teacher",
        "--random-models",
        "moebert",
        "--batch-sizes",
        1,
        "--seq-lengths",
        8,
        "--repeats",
        1,
        "--warmup",
        0,
        "--output",
        out,
    )
    stale = tmp_path / "plots" / "speed_speedup.png"
    stale.parent.mkdir()
    stale.write_text("old")
    written = plots.write_speed_plots([out], pd.Series({"teacher": 80.0}), 1, tmp_path / "plots")
    assert sorted(p.name for p in written) == [
        "speed_latency.png",
        "speed_latency.svg",
    ]  # no teacher, no trained
    assert not stale.exists()


def test_each_results_file_is_one_panel_row_with_its_random_controls_marked(tmp_path):
    def results(name, rows):
        frame = pd.DataFrame(
            [
                dict.fromkeys(speed.COLUMNS, 1.0)
                | dict(zip(("model", "weights", "source"), row), device="cpu", threads=2)
                for row in rows
            ]
        )
        frame.to_csv(tmp_path / name, index=False)
        return tmp_path / name

    trained = [
        ("teacher", "trained", "results/teacher"),
        ("moebert", "trained", "results/moe"),
        ("dense-narrow", "random", "results/teacher"),
    ]
    files = [
        results("a.csv", trained),
        results("b.csv", trained),
        results("c.csv", [("teacher", "random", "bert-base"), ("dense-narrow", "random", "bert-base")]),
    ]
    table = plots.load_speed(files)
    assert table.groupby("run").setting.unique().map(list).tolist() == [
        ["trained models · cpu · 2 threads"],
        ["trained models · cpu · 2 threads"],
        ["random bert-base · cpu · 2 threads"],
    ]
    assert table.label.tolist() == ["teacher", "moebert", "dense-narrow (random weights)"] * 2 + [
        "teacher",
        "dense-narrow",
    ]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--batch-sizes", 1, "--seq-lengths", 64], "sequence length 64 exceeds model 'teacher'"),
        (["--model", "teacher"], "expected LABEL=DIR"),
        (["--random-models", "teacher", "--model", "teacher={teacher}"], "label 'teacher' is both"),
        (["--batch-sizes", 0], "must be positive"),
    ],
)
def test_speed_command_errors_name_the_problem(trained_dirs, tmp_path, argv, message):
    teacher = trained_dirs / "teacher"
    argv = [str(a).format(teacher=teacher) for a in argv]
    with pytest.raises(MoebertError, match=message):
        run_speed(
            "--random", teacher, "--seq-lengths", 8, "--repeats", 1, *argv, "--output", tmp_path / "x.csv"
        )


def test_a_speed_csv_missing_a_column_is_named_and_no_plot_is_written(tmp_path):
    path = tmp_path / "old.csv"
    pd.DataFrame([dict.fromkeys(c for c in speed.COLUMNS if c != "examples_per_s")]).to_csv(path, index=False)
    with pytest.raises(
        MoebertError, match=f"speed results file {path}: missing column\\(s\\) examples_per_s"
    ):
        plots.write_speed_plots([path], pd.Series(dtype=float), 0, tmp_path / "plots")
    with pytest.raises(MoebertError, match=f"speed results file not found: {tmp_path / 'none.csv'}"):
        plots.load_speed([tmp_path / "none.csv"])
    assert not (tmp_path / "plots").exists()


def test_random_moe_names_exactly_the_random_models_with_moe_layers():
    """The cost model counts a reference-style twin for each name in RANDOM_MOE: it must be every random
    model with MoE layers, and only those."""
    dims = {
        "hidden_size": 32,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "intermediate_size": 48,
        "vocab_size": 64,
        "max_position_embeddings": 32,
    }
    models = speed.random_models(dims)
    assert set(models) == set(speed.RANDOM_MODELS)
    assert {name for name, model in models.items() if hasattr(model, "moe_layers")} == set(speed.RANDOM_MOE)


# --- the bound of benchmarks/moe_speed.py ------------------------------------------------------------------


def test_the_bounds_kernels_compute_the_models_experts_and_dense_narrows_ffn():
    """Each kernel's output rows are the model's experts applied to the tokens it routes to them (computed
    token by token here), and the dense part is dense-narrow's FFN before its residual and LayerNorm."""
    from moebert.speed import bound

    models = speed.random_models(TINY, ["moebert", "dense-narrow"])
    moe, dense = models["moebert"], models["dense-narrow"]
    with torch.no_grad():
        for p in moe.moe_layers()[1].experts.parameters():  # biases not zero, so that they count
            p.normal_(0, 0.5)
    tokens, kernels = 13, ["eager", "padded_bmm"]
    if bound.grouped_mm_available(torch.device("cpu"), torch.float32):
        kernels.append("grouped_mm")
    timed = bound.parts({"eager": moe}, dense, tokens, kernels, seed=5)
    assert set(timed) == {
        *(bound.GEMM_PREFIX + k for k in kernels),
        bound.DENSE_GEMMS,
        bound.LAYER_PREFIX + "eager",
        bound.DENSE_LAYER,
    }
    gen = torch.Generator().manual_seed(5)  # what `parts` draws: the token ids, then the hidden states
    ids = torch.randint(TINY["vocab_size"], (tokens,), generator=gen)
    x = torch.randn(tokens, TINY["hidden_size"], generator=gen)
    with torch.no_grad():
        outputs = {name: timed[bound.GEMM_PREFIX + name]() for name in kernels}
        for i, layer in enumerate(moe.moe_layers()):
            routes = moe.hash_table[i][ids]
            e = layer.experts
            expected = torch.stack(
                [
                    F.gelu(x[t] @ e.up_proj[r] + e.up_proj_bias[r]) @ e.down_proj[r] + e.down_proj_bias[r]
                    for r, t in sorted(zip(routes.tolist(), range(tokens)))
                ]
            )
            counts = torch.bincount(routes, minlength=EXPERTS).tolist()
            assert max(counts) > min(counts)  # padding to the largest group pads something
            padded = torch.cat([outputs["padded_bmm"][i][r, :n] for r, n in enumerate(counts)])
            for name, got in {**outputs, "padded_bmm": [None] * i + [padded]}.items():
                torch.testing.assert_close(got[i], expected, rtol=1e-5, atol=1e-5, msg=name)
        for (intermediate, output), got in zip(
            [(layer.intermediate, layer.output) for layer in dense.bert.encoder.layer],
            timed[bound.DENSE_GEMMS](),
        ):
            torch.testing.assert_close(got, output.dense(intermediate(x)))


def test_the_bound_table_is_the_best_kernel_and_the_best_layer_against_dense_narrow():
    """Known timings: ratios are medians of round-by-round ratios, the bound the smallest kernel's."""
    from moebert.speed import bound

    seconds = {
        bound.GEMM_PREFIX + "eager": [2.0, 4.0, 6.0],
        bound.GEMM_PREFIX + "padded_bmm": [1.5, 3.0, 9.0],  # round ratios 1.5, 1.5, 3: median 1.5
        bound.DENSE_GEMMS: [1.0, 2.0, 3.0],
        bound.LAYER_PREFIX + "eager": [3.0, 6.0, 3.0],
        bound.LAYER_PREFIX + "padded_bmm": [1.6, 3.2, 1.0],  # 1.6, 1.6, 0.5: median 1.6
        bound.DENSE_LAYER: [1.0, 2.0, 2.0],
    }
    timings = pd.DataFrame(
        [
            {"part": part, "repeat": r, "seconds": s, "batch_size": 8}
            for part, runs in seconds.items()
            for r, s in enumerate(runs)
        ]
    )
    (row,) = bound.bound_table(timings, {8: 1.3, 32: 9.9}).to_dict(orient="records")
    assert row == pytest.approx(
        {
            "batch": 8,
            "gemms[eager]": 2.0,
            "gemms[padded_bmm]": 1.5,
            "bound": 1.5,
            "bound_kernel": "padded_bmm",
            "layer[eager]": 3.0,
            "layer[padded_bmm]": 1.6,
            "layer": 1.6,
            "layer_implementation": "padded_bmm",
            "model": 1.3,
            "layer_over_bound": 1.6 / 1.5 - 1,
            "rounds": 3,
        }
    )


def test_the_speed_benchmark_writes_the_bound_on_a_tiny_config(tmp_path, monkeypatch, capsys):
    """benchmarks/moe_speed.py end to end on tiny dimensions: every kernel and implementation in the bound."""
    import runpy
    from pathlib import Path

    from transformers import BertConfig

    # Experts of 24 with 16 shared: every width a multiple of 16 bytes, as torch's grouped GEMM needs.
    BertConfig(**{**TINY, "intermediate_size": 96}).save_pretrained(tmp_path / "dims")
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "moe_speed.py"
    argv = [
        "--dims",
        str(tmp_path / "dims"),
        "--batch-sizes",
        "1",
        "2",
        "--seq-len",
        "8",
        "--rounds",
        "2",
        "--threads",
        "1",
    ]
    monkeypatch.setattr("sys.argv", [str(script), *argv, "--out", str(tmp_path / "speed")])
    threads = torch.get_num_threads()
    try:
        runpy.run_path(str(script), run_name="__main__")
    finally:
        torch.set_num_threads(threads)
    table = pd.read_csv(tmp_path / "speed_bound.csv")
    assert table.batch.tolist() == [1, 2]
    assert {f"layer[{name}]" for name in IMPLEMENTATIONS} <= set(table.columns)
    assert {"gemms[eager]", "gemms[padded_bmm]", "bound", "layer", "model", "layer_over_bound"} <= set(table)
    assert (table.bound <= table[[c for c in table if c.startswith("gemms[")]].min(axis=1) + 1e-4).all()
    assert "The bound (moebert, copied layout)" in capsys.readouterr().out


def test_the_auto_threshold_benchmark_times_both_implementations_at_every_size(tmp_path, monkeypatch, capsys):
    import runpy
    from pathlib import Path

    from transformers import BertConfig

    BertConfig(**{**TINY, "intermediate_size": 96}).save_pretrained(tmp_path / "dims")
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "auto_threshold.py"
    argv = ["--dims", str(tmp_path / "dims"), "--tokens", "8", "40", "--rounds", "2", "--threads", "1"]
    monkeypatch.setattr("sys.argv", [str(script), *argv])
    threads = torch.get_num_threads()
    try:
        runpy.run_path(str(script), run_name="__main__")
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    assert out.startswith(f"{tmp_path / 'dims'}: 2 MoE FFN layers, 4 experts")
    lines = [line for line in out.splitlines() if "rows an expert on average" in line]
    assert [line.split()[0] for line in lines] == ["8", "40"]
    assert [line.split("(")[1].split()[0] for line in lines] == ["2", "10"]
    assert all(float(line.rsplit(" ", 1)[1]) > 0 for line in lines)  # padded_bmm / eager


@pytest.mark.parametrize(
    ("model_type", "extra", "teacher"),
    [
        ("bert", {}, "BertForSequenceClassification"),
        (
            "deberta-v2",
            {"relative_attention": True, "type_vocab_size": 0},
            "DebertaV2ForSequenceClassification",
        ),
        ("modernbert", {"vocab_size": 50368}, "ModernBertForSequenceClassification"),
    ],
)
def test_random_models_are_of_the_presets_backbone(model_type, extra, teacher):
    dims = {
        "model_type": model_type,
        "hidden_size": 16,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": 48,
        **extra,
    }
    built = speed.random_models(dims, num_experts=4)
    assert type(built["teacher"]).__name__ == teacher
    assert type(built["moebert"]).__name__ == "MoE" + teacher
    assert type(built["dense-narrow"]).__name__ == teacher
    assert built["dense-narrow"].config.intermediate_size == 12 == built["moebert"].config.expert_dim
    assert built["moebert-tied"].config.shared == "tied" and built["moebert"].config.shared_dim == 8


def test_every_preset_names_a_supported_backbone():
    from moebert.backbones import backbone_of

    for preset in speed.PRESETS.values():
        backbone_of(preset.get("model_type", "bert"))


def test_a_saved_moe_students_dimensions_are_its_dense_backbones(tmp_path):
    config = MoEBertConfig(
        vocab_size=100,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        num_experts=2,
        expert_dim=16,
        shared_dim=8,
    )
    MoEBertForSequenceClassification(config).save_pretrained(tmp_path)
    _, dims = speed.dimensions(str(tmp_path))
    assert dims["model_type"] == "bert" and dims["intermediate_size"] == 64
    assert not {"num_experts", "expert_dim", "shared_dim", "router"} & set(dims)
    built = speed.random_models(dims, ["moebert"], num_experts=4)
    assert built["moebert"].config.num_experts == 4 and built["moebert"].config.expert_dim == 16
