"""The dense-narrow control: one dense FFN of the expert width keeping the most important neurons (MoEBERT with
N = 1), the compute per token of one expert without routing: the speed a MoE forward cannot beat."""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import nn
from transformers import PreTrainedModel

from moebert.backbones import backbone_of
from moebert.cost import Dims
from moebert.errors import MoebertError
from moebert.students.base import MOEBERT_METHOD, StudentKind, dense_copy


def dense_narrow(
    teacher: nn.Module, orders: list[torch.Tensor], width: int
) -> tuple[PreTrainedModel, list[list[int]]]:
    """A dense student whose every FFN keeps the `width` most important neurons of the teacher's (in their
    original order), and those indices per layer."""
    config = teacher.config
    if not 1 <= width <= config.intermediate_size:
        raise MoebertError(
            f"dense-narrow width {width} must be between 1 and the FFN width {config.intermediate_size}"
        )
    if len(orders) != config.num_hidden_layers:
        raise MoebertError(
            f"importance has {len(orders)} layers but the model has {config.num_hidden_layers}"
        )
    student = dense_copy(teacher, intermediate_size=width)
    kept = []
    with torch.no_grad():
        backbone = backbone_of(config)
        layers = zip(backbone.layer_list(student), backbone.layer_list(teacher), orders, strict=True)
        for layer_s, layer_t, order in layers:
            idx = order[:width].sort().values
            layer_s.load_state_dict(backbone.contract.narrow_state(layer_t.state_dict(), idx))
            kept.append(idx.tolist())
    return student, kept


class DenseNarrow(StudentKind):
    name = "dense-narrow"
    sweep_keys = ("expert_dim",)
    needs_importance = True
    speed_control = True

    def dims(self, teacher: Dims, options: dict) -> Dims:
        return replace(teacher, ffn=options["expert_dim"])

    def build(self, teacher, options, *, seed, orders, token_counts):
        student, kept = dense_narrow(teacher, orders, options["expert_dim"])
        return student, {"expert_dim": options["expert_dim"], "indices": kept}

    card_title = "a dense-narrow student (one narrow FFN)"
    card_text = (
        "A control of the MoEBERT reproduction: a dense student whose FFNs keep only the most important "
        "neurons (MoEBERT with one expert), trained with the same layer-wise distillation. " + MOEBERT_METHOD
    )
