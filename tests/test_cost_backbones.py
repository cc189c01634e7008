"""The cost model on every backbone: a GLU FFN's three matrices and DeBERTa's relative-position scores, against
hand-computed numbers and torch's own count of a random model of each architecture; the hub models' known
dimensions; and `moebert plan` on the configs of the hub models."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from torch.utils.flop_counter import FlopCounterMode
from transformers import DebertaV2Config, DebertaV2Model, ModernBertConfig, ModernBertModel

from moebert.backbones import BACKBONES, backbone_of
from moebert.config import load_settings
from moebert.cost import KNOWN_MODELS, Dims, activation_bytes, model_dims
from moebert.students import get_student

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow" / "lib"))
import jobs


def test_flops_and_parameters_of_a_tiny_pair_glu_and_relative_attention_by_hand():
    # Pair, 2 layers of hidden 8, FFN 32: per layer 4 * 8^2 attention + 2 * 8 * 32 FFN weights.
    pair = Dims(2, 8, 32)
    assert pair.weights == 2 * (256 + 512) == 1536
    # Per token at length 4: 2 FLOPs a weight, QK^T and the weighted values 2 * 4 * 8 each, in 2 layers.
    assert pair.forward_flops(4) == 2 * 1536 + 2 * 2 * (2 * 4 * 8) == 3328
    # GLU of 12 neurons: Wi is 8 x 24 (the activated and the gate half), Wo 12 x 8: 3 * 8 * 12 weights.
    glu = Dims(2, 8, 12, vocab=100, ffn_matrices=3)
    assert glu.weights == 2 * (256 + 288) == 1088
    assert glu.forward_flops(4) == 2 * 1088 + 2 * 2 * (2 * 4 * 8) == 2432
    assert glu.params == 1088 + (100 + 512) * 8 == 5984
    # DeBERTa's c2p and p2c over a span of 4: 2 x 2 x 4 = 16 score columns, 2 * 8 FLOPs each, in 2 layers.
    relative = Dims(2, 8, 32, relative_scores=16)
    assert relative.forward_flops(4) == 3328 + 2 * 16 * 2 * 8 == 3840
    assert relative.weights == pair.weights and relative.params == pair.params


@pytest.mark.parametrize(("layers", "hidden", "ffn", "seq"), [(3, 64, 48, 16), (2, 96, 40, 24)])
def test_forward_flops_match_torchs_count_of_a_modernbert_encoder(layers, hidden, ffn, seq):
    """A GLU layer multiplies three hidden x ffn matrices (Wi's two halves and Wo): the count with
    ffn_matrices=3 is torch's, embeddings and norms costing no matmul."""
    config = ModernBertConfig(
        vocab_size=50368,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        intermediate_size=ffn,
        local_attention=8,  # eager attention masks the window: every layer scores the whole sequence
        attn_implementation="eager",
    )
    model = ModernBertModel(config).eval()
    batch = 3
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.randint(5, 100, (batch, seq)))
    assert (
        Dims(layers, hidden, ffn, ffn_matrices=3).forward_flops(seq) * batch * seq
        == counter.get_total_flops()
    )


@pytest.mark.parametrize(("buckets", "seq"), [(6, 20), (16, 8)])
def test_forward_flops_match_torchs_count_of_a_deberta_encoder_but_the_relative_projection(buckets, seq):
    """DeBERTa's c2p and p2c scores against all 2 x span relative embeddings are counted per token; the
    projection of those embeddings through query_proj and key_proj, once per forward, is what the cost
    model leaves out (cost.Dims.forward_flops)."""
    layers, hidden, ffn, batch = 2, 64, 256, 3
    config = DebertaV2Config(
        vocab_size=100,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        intermediate_size=ffn,
        relative_attention=True,
        position_buckets=buckets,
        max_relative_positions=-1,
        pos_att_type="p2c|c2p",
        share_att_key=True,
        position_biased_input=False,
        type_vocab_size=0,
        norm_rel_ebd="layer_norm",
        attn_implementation="eager",
    )
    model = DebertaV2Model(config).eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.randint(5, 100, (batch, seq)))
    dims = Dims(layers, hidden, ffn, relative_scores=backbone_of(config).relative_scores(config))
    assert dims.relative_scores == 2 * 2 * buckets
    projection = layers * 2 * 2 * (2 * buckets) * hidden * hidden  # query_proj and key_proj, 2 FLOPs a weight
    assert dims.forward_flops(seq) * batch * seq + projection == counter.get_total_flops()


def test_relative_scores_follow_debertas_span_and_terms():
    deberta = BACKBONES["deberta-v2"]
    v3 = DebertaV2Config(
        relative_attention=True, position_buckets=256, max_relative_positions=-1, pos_att_type="p2c|c2p"
    )
    assert deberta.relative_scores(v3) == 2 * 2 * 256
    unbucketed = DebertaV2Config(
        relative_attention=True, position_buckets=-1, max_relative_positions=-1, pos_att_type=["c2p"]
    )
    assert deberta.relative_scores(unbucketed) == 1 * 2 * 512  # the span: max_position_embeddings
    capped = DebertaV2Config(
        relative_attention=True, position_buckets=-1, max_relative_positions=128, pos_att_type=["c2p"]
    )
    assert deberta.relative_scores(capped) == 2 * 128
    assert deberta.relative_scores(DebertaV2Config(relative_attention=False)) == 0
    assert BACKBONES["bert"].relative_scores(v3) == 0 and BACKBONES["roberta"].ffn_matrices == 2


def test_a_moe_student_of_a_glu_teacher_stores_three_matrices_per_expert():
    teacher = Dims(22, 768, 1152, ffn_matrices=3)
    moe = {"num_experts": 4, "expert_dim": 288, "shared_dim": 192, "shared": "copied"}
    copied = get_student("moe").dims(teacher, moe)
    assert (copied.ffn, copied.ffn_matrices, copied.stored_ffn) == (288, 3, 4 * 3 * 768 * 288)
    tied = get_student("moe").dims(teacher, {**moe, "shared": "tied"})
    assert tied.stored_ffn == 3 * 768 * (192 + 4 * 96)
    assert get_student("dense-narrow").dims(teacher, {"expert_dim": 288}).weights == 22 * (
        4 * 768**2 + 3 * 768 * 288
    )


def test_a_glu_keeps_four_tensors_of_its_width_per_token_for_the_backward():
    # Per token and layer: 16 x hidden, the FFN's tensors, 12 x seq; 4 bytes each.
    assert activation_bytes(Dims(1, 8, 12), batch=1, seq=1, backward=True) == 4 * (128 + 2 * 12 + 12)
    assert activation_bytes(Dims(1, 8, 12, ffn_matrices=3), batch=1, seq=1, backward=True) == 4 * (
        128 + 4 * 12 + 12
    )


def test_known_hub_models_have_their_config_jsons_dimensions():
    assert model_dims("FacebookAI/roberta-base") == Dims(12, 768, 3072, 50265)
    assert model_dims("microsoft/deberta-v3-base") == Dims(12, 768, 3072, 128100, relative_scores=1024)
    assert model_dims("bert-base-cased") == Dims(12, 768, 3072, 28996)
    assert all("model_type" in values for values in KNOWN_MODELS.values())


def test_modernbert_base_is_known_with_its_glu():
    assert model_dims("answerdotai/ModernBERT-base") == Dims(22, 768, 1152, 50368, ffn_matrices=3)


def test_a_configs_teacher_work_follows_its_per_task_recipe():
    """The DeBERTa-v3 config's QQP teacher: 8 epochs at batch 64 (the repository's script), rows padded to
    the longest of a random batch, every token through the relative-position scores."""
    raw = yaml.safe_load((REPO / "config" / "deberta-v3.yaml").read_text())
    settings = load_settings(raw, jobs.load_speeds(REPO / "config" / "throughput.yaml"))
    qqp = settings.tasks["qqp"]
    assert (qqp.teacher.epochs, qqp.teacher.batch_size, qqp.max_length) == (8, 64, 320)
    work = jobs.work(settings, "finetune", {"task": "qqp", "seed": "0"})
    teacher = model_dims("microsoft/deberta-v3-base")
    seq = min(qqp.task.batch_tokens, 320)
    assert work.flops == qqp.task.train_rows * 8 * seq * 3 * teacher.forward_flops(seq)
    assert work.steps == -(-qqp.task.train_rows * 8 // 64)


HUB_CONFIGS = [
    pytest.param("roberta.yaml", id="roberta"),
    pytest.param("deberta-v3.yaml", id="deberta-v3"),
    pytest.param("modernbert.yaml", id="modernbert"),
]


@pytest.mark.parametrize("configfile", HUB_CONFIGS)
def test_plan_prints_every_job_of_a_hub_models_config_offline(configfile, tmp_path):
    """Every teacher, importance and student job of the config's tasks, seeds and methods, estimated without
    the hub (the teacher's dimensions from KNOWN_MODELS)."""
    out = tmp_path / "plan.csv"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "moebert.cli",
            "plan",
            "--configfile",
            f"config/{configfile}",
            "--all",
            "--output",
            out,
            "--",
            "--nolock",
        ],
        cwd=REPO,
        check=False,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert done.returncode == 0, done.stderr + done.stdout
    config = yaml.safe_load((REPO / "config" / configfile).read_text())
    runs = len(config["tasks"]) * len(config["seeds"])
    trained = [name for name, row in config["methods"].items() if row.get("student") != "majority"]
    counts = pd.read_csv(out)["rule"].value_counts().to_dict()
    assert counts["finetune"] == counts["importance"] == runs
    assert counts["distill"] == counts["adapt"] == runs * len(trained)
    total = re.search(r"^total\s+(\d+)\s", done.stdout, re.MULTILINE)
    assert int(total[1]) == sum(counts.values())


def test_speed_presets_are_sized_through_their_backbone(monkeypatch):
    from moebert.speed import measure

    assert jobs._speed_dims("bert-base") == Dims(12, 768, 3072)
    assert jobs._speed_dims("minilm") == Dims(6, 384, 1536)
    deberta = {**KNOWN_MODELS["microsoft/deberta-v3-base"], "num_attention_heads": 12}
    monkeypatch.setitem(measure.PRESETS, "deberta-v3-base", deberta)
    assert jobs._speed_dims("deberta-v3-base") == model_dims("microsoft/deberta-v3-base")
