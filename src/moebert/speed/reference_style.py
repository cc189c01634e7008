"""The reference-style MoE forward (docs/method.md §8): the peer the fast forward of models/moe_layer.py is timed
against (`moebert speed --reference`, benchmarks/moe_speed.py). Same outputs, the reference
implementation's grouping and data movement."""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F

from moebert.models.glu_layer import GluMoEFFN
from moebert.models.modeling import MoEBertForSequenceClassification, MoEBertMixin
from moebert.models.moe_layer import MoEFFN
from moebert.models.routing import HASH_ROUTERS


def _reference_ffn_forward(
    layer: MoEFFN, routes, hidden_states: torch.Tensor, input_tensor: torch.Tensor
) -> torch.Tensor:
    """The reference implementation's grouped forward, from its description: in every layer look the
    routes up, argsort them, gather the tokens in expert order, split them (a host sync for the sizes),
    run each expert whole (fc1, activation, fc2, dropout, its LayerNorm after the residual), stack the
    results into a new tensor and gather them back with a second argsort. The arithmetic of each expert
    is the fast forward's, so only the grouping and the data movement differ."""
    expert_ids, scale = routes(hidden_states)
    width = hidden_states.shape[-1]
    x, residual = hidden_states.reshape(-1, width), input_tensor.reshape(-1, width)
    order = expert_ids.argsort()
    sizes = torch.bincount(expert_ids, minlength=layer.num_experts).tolist()
    norm = layer.LayerNorm
    branch_scale = scale is not None and layer.scale_branch
    scales = scale[order].split(sizes) if branch_scale else [None] * len(sizes)
    outputs = []
    for e, (tokens, tokens_residual, p) in enumerate(
        zip(x[order].split(sizes), residual[order].split(sizes), scales)
    ):
        y = layer.experts.expert(e, tokens)
        if layer.shared is not None:
            y = y + layer.shared(tokens)
        if p is not None:  # gate_scale branch: the gate probability on the FFN's output, before the LayerNorm
            y = y * p.unsqueeze(-1)
        outputs.append(
            F.layer_norm(layer.dropout(y) + tokens_residual, (width,), norm.weight[e], norm.bias[e], norm.eps)
        )
    y = torch.vstack(outputs)[order.argsort()]
    if scale is not None and not branch_scale:
        y = y * scale.unsqueeze(-1)
    return y.view_as(input_tensor)


def _reference_glu_forward(layer: GluMoEFFN, routes, hidden_states: torch.Tensor) -> torch.Tensor:
    """The same grouping for a pre-norm GLU's experts (models/glu_layer.py), which have no LayerNorm and no
    residual of their own."""
    expert_ids, scale = routes(hidden_states)
    y = hidden_states.reshape(-1, hidden_states.shape[-1])
    order = expert_ids.argsort()
    sizes = torch.bincount(expert_ids, minlength=layer.num_experts).tolist()
    outputs = []
    for e, tokens in enumerate(y[order].split(sizes)):
        out = layer.experts.expert(e, tokens)
        if layer.shared is not None:
            out = out + layer.shared(tokens, layer.experts.dropout)
        outputs.append(out)
    out = torch.vstack(outputs)[order.argsort()]
    if scale is not None:
        out = out * scale.unsqueeze(-1)
    return out.view_as(hidden_states)


# The reference-style forward of each FFN contract's MoE layer (backbones/base.py), with that layer's signature.
REFERENCE_FORWARDS = {"pair": _reference_ffn_forward, "glu": _reference_glu_forward}


def _gate_routes(layer: MoEFFN):
    """A gate's expert per token and its probability, as the fast forward's gate decides."""

    def routes(hidden_states):
        expert_ids, scale, layer.balance_loss = layer.router(hidden_states, layer.attention_mask)
        return expert_ids, scale

    return routes


@contextlib.contextmanager
def reference_style(model: MoEBertForSequenceClassification):
    """Within the block, `model` runs the reference-style forward in every MoE layer (same outputs).

    Hash routes are then looked up per layer from the input ids, as the reference does, instead of
    once per forward: the model's forward is swapped too, to hand the ids down and skip its own routing.
    """
    layers = model.moe_layers()
    if model.config.router in HASH_ROUTERS:
        ids = {}

        def model_forward(input_ids=None, **kwargs):
            ids["flat"] = input_ids.reshape(-1)
            # The dense head's forward (BertForSequenceClassification's, ...), under the MoE head's.
            return super(MoEBertMixin, model).forward(input_ids=input_ids, **kwargs)

        model.forward = model_forward
        # The table is stored in a small integer type; as an index it must be int64 (uint8 would be a mask).
        routes = [lambda _, i=i: (model.hash_table[i][ids["flat"]].long(), None) for i in range(len(layers))]
    else:
        routes = [_gate_routes(layer) for layer in layers]
    reference_forward = REFERENCE_FORWARDS[model.backbone.contract.name]
    for layer, layer_routes in zip(layers, routes):
        layer.forward = lambda *args, layer=layer, f=layer_routes: reference_forward(layer, f, *args)
    try:
        yield model
    finally:
        for module in (model, *layers):
            module.__dict__.pop("forward", None)
