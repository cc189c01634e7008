"""What the package needs to know of an encoder architecture (a backbone): where each layer's FFN sits, how
its weights read as neurons, how the FFN joins the layer (its contract), its config's names, the inputs its
heads take, and the words the model card uses. One file per architecture family, one entry in the registry
(`moebert.backbones.BACKBONES`); the models, students, importance, cost model and card ask the entry.

This package imports nothing else of moebert but moebert.errors: an exported model ships it beside
models/modeling.py (export/sources.py).

Two FFN contracts (docs/method.md §4):
- "pair", the post-norm pair of BERT, RoBERTa, XLM-R, ELECTRA and DeBERTa-v2/v3:
  `LayerNorm(dropout(W2 act(W1 x + b1) + b2) + x)`, split over `intermediate` (W1, act) and `output` (W2,
  dropout, LayerNorm, residual). The experts replace the pair, each with its own LayerNorm.
- "glu", the pre-norm gated branch of ModernBERT: `x + Wo(dropout(act(Wi_a y) * Wi_g y))`, y = mlp_norm(x),
  the norm and the residual outside the `mlp` module. The experts replace `mlp`.
A neuron j is row j of the input projection (and of the gate projection, for a GLU), its bias entries, and
column j of the output projection: `FFNWeights` holds a layer's FFN in those terms.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import ClassVar

import torch
from torch import nn

from moebert.errors import MoebertError


@dataclass(frozen=True)
class FFNWeights:
    """A dense FFN as neurons: neuron j is row j of `up` (and of `gate`), entry j of their biases and column j
    of `down`. `up` is the activated projection; `gate` the linear half of a GLU (None for a plain FFN)."""

    up: torch.Tensor  # [ffn, hidden]
    up_bias: torch.Tensor | None
    down: torch.Tensor  # [hidden, ffn]
    down_bias: torch.Tensor | None
    gate: torch.Tensor | None = None  # [ffn, hidden]
    gate_bias: torch.Tensor | None = None

    @property
    def inputs(self) -> torch.Tensor:
        """Each neuron's input weights, one row per neuron: its `up` row, and its `gate` row beside it for a
        GLU (what a construction that clusters neurons by their weights compares)."""
        return self.up if self.gate is None else torch.cat([self.up, self.gate], dim=1)

    @property
    def width(self) -> int:
        return self.up.shape[0]

    def select(self, neurons: torch.Tensor) -> FFNWeights:
        """The FFN of the given neurons only (in the given order); the output bias is the whole layer's."""

        def rows(t):
            return None if t is None else t[neurons]

        return replace(
            self,
            up=self.up[neurons],
            up_bias=rows(self.up_bias),
            down=self.down[:, neurons],
            gate=rows(self.gate),
            gate_bias=rows(self.gate_bias),
        )


class FFNContract:
    """How an FFN joins its layer: which submodule the experts replace, how the dense FFN reads and writes as
    `FFNWeights`, which state-dict keys belong to it, and where importance finds its activations."""

    name: ClassVar[str]
    # The hidden x ffn matrices a token's FFN multiplies (the cost model's count).
    matrices: ClassVar[int]

    def read(self, layer: nn.Module) -> FFNWeights:
        raise NotImplementedError

    def narrow_state(self, state: dict[str, torch.Tensor], neurons: torch.Tensor) -> dict[str, torch.Tensor]:
        """A dense layer's state dict with its FFN cut to `neurons` (in their order): the state of the same
        layer with an FFN of len(neurons) neurons."""
        raise NotImplementedError

    def install(self, layer: nn.Module, module: nn.Module) -> None:
        """Put `module` (the contract's MoE layer) in place of the layer's FFN."""
        raise NotImplementedError

    def moe_module(self, layer: nn.Module) -> nn.Module:
        """The MoE module `install` put in the layer."""
        raise NotImplementedError

    def is_ffn_key(self, key: str) -> bool:
        """A state-dict key of a weight the experts replace."""
        raise NotImplementedError

    def norm(self, layer: nn.Module) -> nn.Module | None:
        """The LayerNorm inside the FFN block (post-norm), which every expert copies; None when it is outside."""
        return None

    def importance_linears(self, layer: nn.Module) -> tuple[nn.Linear, nn.Linear]:
        """The dense FFN's input projection (its output: the neurons' pre-activations, one row of its weight
        per output) and output projection (its input: the neurons' activations, one column per neuron), whose
        weight x gradient terms make a neuron's importance (training/importance.py)."""
        raise NotImplementedError

    def neuron_terms(self, rows: torch.Tensor, columns: torch.Tensor) -> torch.Tensor:
        """A neuron's weight x gradient term [..., ffn] from those of the input projection's rows [..., rows]
        and of the output projection's columns [..., ffn]: one row per neuron, their sum."""
        return rows + columns


class PairContract(FFNContract):
    """BERT's `intermediate` (dense W1, activation) + `output` (dense W2, dropout, LayerNorm, residual): a module
    with BertOutput's signature `forward(hidden_states, input_tensor)` replaces `output`, `intermediate`
    becomes the identity."""

    name = "pair"
    matrices = 2  # W1, W2
    _key = re.compile(r"\.layer\.\d+\.(intermediate|output)\.")

    def read(self, layer):
        fc1, fc2 = layer.intermediate.dense, layer.output.dense
        return FFNWeights(fc1.weight, fc1.bias, fc2.weight, fc2.bias)

    def narrow_state(self, state, neurons):
        return {
            **state,
            "intermediate.dense.weight": state["intermediate.dense.weight"][neurons],
            "intermediate.dense.bias": state["intermediate.dense.bias"][neurons],
            "output.dense.weight": state["output.dense.weight"][:, neurons],
        }

    def install(self, layer, module):
        layer.intermediate = nn.Identity()
        layer.output = module

    def moe_module(self, layer):
        return layer.output

    def is_ffn_key(self, key):
        # `attention.output` is the attention's, not the FFN's.
        return self._key.search(key) is not None

    def norm(self, layer):
        return layer.output.LayerNorm

    def importance_linears(self, layer):
        return layer.intermediate.dense, layer.output.dense


@dataclass(frozen=True)
class Backbone:
    """One architecture family. `heads` maps a task head (tasks.Task.head) to its dense transformers class;
    `layers` is the attribute path from the base model (`model.base_model`) to its list of layers; the
    `*_key` fields name the config attributes the experts read."""

    name: str
    title: str  # as a model card names the architecture
    model_types: tuple[str, ...]
    contract: FFNContract
    heads: dict[str, type]
    moe_model_type: str  # the config model_type of its MoE students
    layers: str = "encoder.layer"
    activation_key: str = "hidden_act"
    dropout_key: str = "hidden_dropout_prob"
    norm_eps_key: str = "layer_norm_eps"
    # Its heads take token_type_ids (sentence-pair segments; RoBERTa's family takes them with one type, all
    # zeros); ModernBERT's take none.
    token_type_ids: bool = True
    # Position ids start after the padding index (RoBERTa's family): the first pad_token_id + 1 position
    # embeddings are no token's.
    position_offset: bool = False
    # Student kinds it cannot build, with the reason (refused before any job).
    refuses: dict[str, str] = field(default_factory=dict)
    # For the cost model (moebert.cost.Dims), from a config: the columns of attention scores a token adds per
    # layer beyond QK^T (DeBERTa's relative-position scores).
    relative_scores: Callable[[object], int] = field(default=lambda config: 0)  # none

    @property
    def ffn_matrices(self) -> int:
        """For the cost model: the hidden x ffn matrices a token's FFN multiplies (its contract's)."""
        return self.contract.matrices

    def check_student(self, kind: str) -> None:
        """Refuse a student kind this backbone lists in `refuses`, with the reason."""
        if kind in self.refuses:
            raise MoebertError(
                f"student {kind} cannot be built from a {self.title} teacher: {self.refuses[kind]}"
            )

    def layer_list(self, model: nn.Module) -> nn.ModuleList:
        """The encoder layers of a task model (or of its base model)."""
        module = getattr(model, "base_model", model)
        for part in self.layers.split("."):
            module = getattr(module, part)
        return module

    def layer_prefix(self, model: nn.Module) -> str:
        """The state-dict prefix of the layers in a task model: 'bert.encoder.layer.'."""
        return f"{model.base_model_prefix}.{self.layers}."

    def activation(self, config) -> str:
        return getattr(config, self.activation_key)

    def dropout(self, config) -> float:
        return getattr(config, self.dropout_key)

    def norm_eps(self, config) -> float:
        return getattr(config, self.norm_eps_key)

    def max_positions(self, config) -> int:
        """The longest input the model embeds: its position embeddings, less any offset of its position ids."""
        offset = config.pad_token_id + 1 if self.position_offset else 0
        return config.max_position_embeddings - offset
