"""The half-depth control (DistilBERT at equal compute): a dense student of every other teacher layer, student
layer i (1-based) initialised from teacher layer 2i, so its hidden state i is distilled against the
teacher's 2i (the layer map is `training.distillation.layer_map`)."""

from __future__ import annotations

from dataclasses import replace

from torch import nn
from transformers import PreTrainedModel

from moebert.backbones import backbone_of
from moebert.cost import Dims
from moebert.errors import MoebertError
from moebert.students.base import MOEBERT_METHOD, StudentKind, dense_copy


def half_depth_layers(num_layers: int) -> list[int]:
    """0-based teacher layers that initialise the half-depth student: 1, 3, 5, ... (teacher layer 2i, 1-based)."""
    if num_layers < 2 or num_layers % 2:
        raise MoebertError(f"a half-depth student needs an even number of teacher layers (got {num_layers})")
    return list(range(1, num_layers, 2))


def distil_half(teacher: nn.Module) -> tuple[PreTrainedModel, list[int]]:
    """The half-depth student and the teacher layers (0-based) it was made of."""
    backbone = backbone_of(teacher.config)
    backbone.check_student(DistilHalf.name)
    layers = half_depth_layers(teacher.config.num_hidden_layers)
    student = dense_copy(teacher, num_hidden_layers=len(layers))
    teacher_layers = backbone.layer_list(teacher)
    for student_layer, index in zip(backbone.layer_list(student), layers, strict=True):
        student_layer.load_state_dict(teacher_layers[index].state_dict())
    return student, layers


class DistilHalf(StudentKind):
    name = "distil-half"
    card_title = "a distil-half student (dense, half depth)"
    card_text = (
        "A control of the MoEBERT reproduction: a dense student of half the teacher's depth (every "
        "other teacher layer, DistilBERT-style), trained with the same layer-wise distillation as "
        "the MoEBERT students, at about their compute per token. " + MOEBERT_METHOD
    )

    def dims(self, teacher: Dims, options: dict) -> Dims:
        return replace(teacher, layers=max(teacher.layers // 2, 1))

    def build(self, teacher, options, *, seed, orders, token_counts):
        student, layers = distil_half(teacher)
        return student, {"teacher_layers": layers}
