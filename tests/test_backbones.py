"""The backbone registry: every entry gives what its consumers ask of it, and is exercised on a tiny model."""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from conftest import PAIR_BACKBONES, REPO

from moebert.backbones import BACKBONES, FFNWeights, backbone_of
from moebert.cost import KNOWN_MODELS
from moebert.errors import MoebertError
from moebert.models.loading import teacher_backbone
from moebert.models.modeling import FFN_TYPES, MOE_CONFIGS, MOE_HEADS
from moebert.students import STUDENTS
from moebert.tasks import TASKS

# The tiny-model test suites per contract: tests/conftest.py builds the pair backbones, tests/test_modernbert.py
# the GLU one. A new entry without tiny tests fails below.
TESTED = {*PAIR_BACKBONES, "modernbert"}


def test_every_backbone_is_exercised_by_tiny_model_tests():
    assert set(BACKBONES) == TESTED


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_every_backbone_gives_what_its_consumers_ask(name):
    backbone = BACKBONES[name]
    # A head for every head a registered task trains, each with its MoE class registered.
    assert {task.head for task in TASKS.values()} <= set(backbone.heads)
    for dense in backbone.heads.values():
        assert MOE_HEADS[dense].backbone is backbone
        assert dense.config_class.model_type in backbone.model_types
    assert MOE_CONFIGS[name].model_type == backbone.moe_model_type
    # Its contract has the sliced experts' MoE layer and a matrix count for the cost model.
    assert backbone.contract.name in FFN_TYPES["moe"]
    assert backbone.contract.matrices in (2, 3)
    # Its refusals name registered student kinds and say why.
    assert set(backbone.refuses) <= set(STUDENTS) and all(backbone.refuses.values())
    for model_type in (*backbone.model_types, backbone.moe_model_type):
        assert backbone_of(model_type) is backbone


def test_an_unknown_model_type_is_refused_naming_the_supported_ones():
    with pytest.raises(MoebertError) as err:
        backbone_of("gpt2")
    supported = ", ".join(t for b in BACKBONES.values() for t in b.model_types)
    assert str(err.value) == f"model type 'gpt2' is not a supported backbone; supported: {supported}"


def _hub_configs():
    """The shipped configs whose teacher is a hub model (checked on its config.json only when fetched)."""
    for path in sorted((REPO / "config").glob("*.yaml")):
        raw = yaml.safe_load(path.read_text())
        if (raw.get("teacher") or {}).get("model") in KNOWN_MODELS:
            yield pytest.param(raw, id=path.stem)


@pytest.mark.parametrize("raw", list(_hub_configs()))
def test_every_hub_config_asks_only_for_students_its_teacher_builds(raw, tmp_path):
    """A refused student in a hub config would pass the offline checks and stop the campaign at fetch_model."""
    teacher = raw["teacher"]["model"]
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"model_type": KNOWN_MODELS[teacher].get("model_type", "bert")}))
    students = {method.get("student", "moe") for method in raw["methods"].values()}
    teacher_backbone(config, teacher, students)


def test_a_moe_student_is_refused_as_a_teacher(tmp_path):
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"model_type": "moe-roberta"}))
    with pytest.raises(MoebertError) as err:
        teacher_backbone(config, "runs/student")
    assert str(err.value) == (
        "teacher 'runs/student': it is a MoE student (model type 'moe-roberta'); the teacher is a dense model, "
        "pretrained or fine-tuned"
    )


def test_a_glu_neurons_inputs_are_its_activated_and_gate_rows():
    up, gate = torch.arange(6.0).reshape(3, 2), -torch.arange(6.0).reshape(3, 2)
    weights = FFNWeights(up, None, torch.zeros(2, 3), None, gate=gate)
    assert torch.equal(weights.inputs, torch.cat([up, gate], 1))
    assert torch.equal(weights.select(torch.tensor([2, 0])).inputs, torch.cat([up, gate], 1)[[2, 0]])
    assert FFNWeights(up, None, torch.zeros(2, 3), None).inputs is up


@pytest.mark.parametrize("shared", ["copied", "tied"])
def test_the_pair_layers_read_the_activation_dropout_and_epsilon_under_the_backbones_names(
    monkeypatch, shared
):
    """A backbone whose config names them differently (as `activation` and `dropout` would be) gets its own
    values in the MoE and MPOE layers, not BERT's attributes of the same config."""
    import dataclasses

    from moebert import backbones
    from moebert.models.bert_experts import ExpertsImplementation
    from moebert.models.modeling import MoEBertConfig
    from moebert.models.moe_layer import MoEFFN
    from moebert.models.mpoe_layer import MPOEFFN

    renamed = dataclasses.replace(
        backbones.BERT, activation_key="act_probe", dropout_key="drop_probe", norm_eps_key="eps_probe"
    )
    monkeypatch.setitem(backbones._BY_MODEL_TYPE, "moebert", renamed)
    config = MoEBertConfig(
        hidden_size=8, intermediate_size=16, num_attention_heads=2, num_experts=2, expert_dim=8,
        shared_dim=4, shared=shared, hidden_act="gelu", hidden_dropout_prob=0.1, layer_norm_eps=1e-12,
    )  # fmt: skip
    config.act_probe, config.drop_probe, config.eps_probe = "relu", 0.25, 0.5
    config.mpo_in_factors, config.mpo_out_factors = [2, 2, 2], [2, 4, 2]
    moe = MoEFFN(config, ExpertsImplementation("eager"))
    activations = [moe.experts.act_fn] + ([moe.shared.act_fn] if moe.shared is not None else [])
    assert {type(a).__name__ for a in activations} == {"ReLU"} and moe.LayerNorm.eps == 0.5
    mpoe = MPOEFFN(config)
    assert type(mpoe.act).__name__ == "ReLU"
    assert (mpoe.dropout.p, mpoe.LayerNorm.eps) == (0.25, 0.5)
