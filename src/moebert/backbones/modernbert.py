"""ModernBERT (Warner et al., 2024): pre-norm layers, rotary positions, alternating local and global attention,
and a gated FFN (GLU) with the norm and the residual outside it:

    x + Wo(dropout(act(Wi_a y) * Wi_g y)),   y = mlp_norm(x),   [Wi_a; Wi_g] = mlp.Wi

`mlp.Wi` maps hidden -> 2 x intermediate, the activated half first; neuron j is row j of Wi_a, row j of Wi_g
(row j + I of Wi) and column j of Wo. The experts replace `mlp` (models/glu_layer.py); `mlp_norm` stays the
layer's, shared by every expert. No token types (its heads take none)."""

from __future__ import annotations

import re

import torch
from transformers import ModernBertForQuestionAnswering, ModernBertForSequenceClassification

from moebert.backbones.base import Backbone, FFNContract, FFNWeights


class GluContract(FFNContract):
    """ModernBERT's `mlp` (Wi, act, dropout, Wo): a module with its signature `forward(y)` replaces it."""

    name = "glu"
    matrices = 3  # Wi's activated and gate halves, Wo
    _key = re.compile(r"\.layers\.\d+\.mlp\.")

    def read(self, layer):
        wi, wo = layer.mlp.Wi, layer.mlp.Wo
        up, gate = wi.weight.chunk(2, dim=0)
        up_bias, gate_bias = (None, None) if wi.bias is None else wi.bias.chunk(2)
        return FFNWeights(up, up_bias, wo.weight, wo.bias, gate=gate, gate_bias=gate_bias)

    def narrow_state(self, state, neurons):
        width = state["mlp.Wo.weight"].shape[1]
        rows = torch.cat([neurons, neurons + width])  # the activated half's rows, then the gate half's
        narrowed = {
            **state,
            "mlp.Wi.weight": state["mlp.Wi.weight"][rows],
            "mlp.Wo.weight": state["mlp.Wo.weight"][:, neurons],
        }
        if "mlp.Wi.bias" in state:
            narrowed["mlp.Wi.bias"] = state["mlp.Wi.bias"][rows]
        return narrowed

    def install(self, layer, module):
        layer.mlp = module

    def moe_module(self, layer):
        return layer.mlp

    def is_ffn_key(self, key):
        # `attn.Wo` is the attention's; `mlp_norm` stays outside the experts.
        return self._key.search(key) is not None

    def importance_linears(self, layer):
        return layer.mlp.Wi, layer.mlp.Wo

    def neuron_terms(self, rows, columns):
        """Neuron j's term from Wi's rows j (activated half) and j + I (gate half) and Wo's column j. The gate
        row's term equals the column's (both sum_t h_tj dL/dh_tj without biases): they count once, as their
        mean, so that a neuron has one term for its activated input and one for its output, as a BERT neuron
        has (docs/method.md §4.2)."""
        activated, gate = rows.chunk(2, dim=-1)
        return activated + (gate + columns) / 2


MODERNBERT = Backbone(
    name="modernbert",
    title="ModernBERT",
    model_types=("modernbert",),
    contract=GluContract(),
    heads={
        "classification": ModernBertForSequenceClassification,
        "question-answering": ModernBertForQuestionAnswering,
    },
    moe_model_type="moe-modernbert",
    layers="layers",
    activation_key="hidden_activation",
    dropout_key="mlp_dropout",
    norm_eps_key="norm_eps",
    token_type_ids=False,
    refuses={
        "distil-half": (
            "ModernBERT's first layer has no attention norm (the embeddings' norm serves it), so teacher "
            "layer 2, which has one, cannot become student layer 1 without dropping its norm"
        ),
        "mpoe": (
            "MPOE decomposes each FFN matrix into an MPO whose central tensor the experts share; ModernBERT's "
            "fused GLU input matrix (activated and gate halves) has no MPO layer in this package"
        ),
    },
)
