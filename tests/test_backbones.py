"""The backbone registry: every entry gives what its consumers ask of it, and is exercised on a tiny model."""

from __future__ import annotations

import pytest
from conftest import PAIR_BACKBONES

from moebert.backbones import BACKBONES, backbone_of
from moebert.errors import MoebertError
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
