"""The controls a reviewer asks for beside MoEBERT (issue 11), built from the same fine-tuned teacher:

distil_half   a half-depth dense student, student layer i (1-based) initialised from teacher layer 2i, so its
              hidden state i is distilled against the teacher's 2i (DistilBERT at equal compute; the layer
              map is `distillation.layer_map`)
dense_narrow  one dense FFN of the expert width keeping the most important neurons (MoEBERT with N = 1):
              the compute per token of one expert, without routing
majority      the trivial predictor: the most frequent train label, or the train mean for regression
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn
from transformers import BertPreTrainedModel

from moebert.errors import MoebertError


def half_depth_layers(num_layers: int) -> list[int]:
    """0-based teacher layers that initialise the half-depth student: 1, 3, 5, ... (teacher layer 2i, 1-based)."""
    if num_layers < 2 or num_layers % 2:
        raise MoebertError(f"a half-depth student needs an even number of teacher layers (got {num_layers})")
    return list(range(1, num_layers, 2))


def _dense_copy(teacher: nn.Module, **config) -> BertPreTrainedModel:
    """A dense model of the teacher's class (its task head) with the teacher's config changed by `config`,
    holding every teacher weight outside the encoder layers (embeddings, pooler, head; the caller fills in the
    layers)."""
    student_config = copy.deepcopy(teacher.config)
    for key, value in config.items():
        setattr(student_config, key, value)
    student = type(teacher)(student_config)
    outside = {k: v for k, v in teacher.state_dict().items() if not k.startswith("bert.encoder.")}
    missing, unexpected = student.load_state_dict(outside, strict=False)
    assert not unexpected and all(k.startswith("bert.encoder.") for k in missing), (missing, unexpected)
    return student


def distil_half(teacher: nn.Module) -> tuple[BertPreTrainedModel, list[int]]:
    """The half-depth student and the teacher layers (0-based) it was made of."""
    layers = half_depth_layers(teacher.config.num_hidden_layers)
    student = _dense_copy(teacher, num_hidden_layers=len(layers))
    for student_layer, index in zip(student.bert.encoder.layer, layers, strict=True):
        student_layer.load_state_dict(teacher.bert.encoder.layer[index].state_dict())
    return student, layers


def dense_narrow(teacher: nn.Module, orders: list[torch.Tensor], width: int
                 ) -> tuple[BertPreTrainedModel, list[list[int]]]:
    """A dense student whose every FFN keeps the `width` most important neurons of the teacher's (in their
    original order), and those indices per layer."""
    config = teacher.config
    if not 1 <= width <= config.intermediate_size:
        raise MoebertError(f"dense-narrow width {width} must be between 1 and the FFN width {config.intermediate_size}")
    if len(orders) != config.num_hidden_layers:
        raise MoebertError(f"importance has {len(orders)} layers but the model has {config.num_hidden_layers}")
    student = _dense_copy(teacher, intermediate_size=width)
    kept = []
    with torch.no_grad():
        for layer_s, layer_t, order in zip(student.bert.encoder.layer, teacher.bert.encoder.layer, orders):
            idx = order[:width].sort().values
            state = layer_t.state_dict()
            state["intermediate.dense.weight"] = state["intermediate.dense.weight"][idx]
            state["intermediate.dense.bias"] = state["intermediate.dense.bias"][idx]
            state["output.dense.weight"] = state["output.dense.weight"][:, idx]
            layer_s.load_state_dict(state)
            kept.append(idx.tolist())
    return student, kept


def majority_prediction(labels, regression: bool) -> float | int:
    """The train split's most frequent class (the lowest index on a tie), or its mean score."""
    labels = np.asarray(labels)
    if len(labels) == 0:
        raise MoebertError("the majority baseline needs a non-empty train split")
    if regression:
        return float(labels.mean())
    return int(np.bincount(labels.astype(int)).argmax())


def majority_logits(prediction: float, count: int, num_labels: int) -> np.ndarray:
    """`count` rows that predict `prediction`: one-hot logits, or the score itself for regression."""
    if num_labels == 1:
        return np.full((count, 1), prediction, dtype=np.float64)
    logits = np.zeros((count, num_labels))
    logits[:, prediction] = 1.0
    return logits
