"""The MoE layer of a pre-norm gated FFN (the "glu" contract, ModernBERT; docs/method.md §4.2): N
experts in place of the layer's `mlp`, one per token, with `mlp`'s signature `forward(y)`, y the output of the
layer's own pre-norm, which stays outside the experts and is shared by all of them, as is the residual. Expert e
is the dense GLU cut to its neurons, the teacher's FFN dropout at the expert rate:

    expert_e(y) = Wo_e dropout(act(Wi_a,e y + b_a,e) * (Wi_g,e y + b_g,e)) + bo          (biases: mlp_bias)

and the layer returns expert_e(y) for a hash router, p_e(y) * expert_e(y) for a gate router (p the gate's
probability), so that the layer adds x + p * expert(y): the reference scales its expert's output after the
expert's LayerNorm, the residual included; here the residual is outside the module and only the branch is
scaled. Both values of `gate_scale` therefore scale the same thing here: this module's output is the branch.
Routers see the module's input y (the pre-normed hidden state).

The experts run through transformers' experts interface with its GLU form (has_gate=True), whose kernels
call the experts' `_apply_gate` on the stacked input projection: here act(first half) * second half,
ModernBERT's order, then the expert dropout; an expert's `gate_up_proj` is [Wi_a,e; Wi_g,e] as Wi stacks
them (transposed: [experts, hidden, 2 width]).

Shared neurons (`shared`) as in models/moe_layer.py: "copied" gives every expert a copy of them, "tied"
stores them once as one dense GLU every token runs, beside experts of their private neurons only; since the
GLU acts neuron by neuron, the two are the same function at initialisation.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn
from transformers.activations import ACT2FN
from transformers.integrations.moe import use_experts_implementation

from moebert.backbones import backbone_of
from moebert.models.bert_experts import (
    EXPERTS_FUNCTIONS,
    ExpertsImplementation,
    eager_experts_forward,
)
from moebert.models.routing import RoutedLayer


class _GluExperts(nn.Module):
    """N GLU FFNs of `width` neurons, weights in the interface's transposed layout [experts, in, out]. The
    output bias is the dense layer's, one per expert (as the reference's experts each copy BERT's)."""

    bias: ClassVar[bool]  # the experts have biases (config.mlp_bias)

    def __init__(self, implementation: ExpertsImplementation, config, width: int):
        super().__init__()
        n, h = config.num_experts, config.hidden_size
        self.num_experts = n
        self.gate_up_proj = nn.Parameter(torch.empty(n, h, 2 * width))  # Wi rows of the neurons, transposed
        self.down_proj = nn.Parameter(torch.empty(n, width, h))  # Wo columns of the neurons, transposed
        for w in (self.gate_up_proj, self.down_proj):
            nn.init.normal_(w, std=config.initializer_range)
        if self.bias:
            self.gate_up_proj_bias = nn.Parameter(torch.zeros(n, 2 * width))
            self.down_proj_bias = nn.Parameter(torch.zeros(n, h))
        self.act_fn = ACT2FN[backbone_of(config.model_type).activation(config)]
        # The expert dropout acts between the GLU product and Wo, where the dense GLU has its dropout: the
        # interface's kernels apply `_apply_gate` there.
        self.dropout = nn.Dropout(config.expert_dropout)

    def _apply_gate(self, gate_up: torch.Tensor) -> torch.Tensor:
        activated, linear = gate_up.chunk(2, dim=-1)
        return self.dropout(self.act_fn(activated) * linear)

    def expert(self, e: int, y: torch.Tensor) -> torch.Tensor:
        """Expert `e` on the rows y [rows, hidden]."""
        gate_up = y @ self.gate_up_proj[e]
        if self.has_bias:
            gate_up = gate_up + self.gate_up_proj_bias[e]
        out = self._apply_gate(gate_up) @ self.down_proj[e]
        return out + self.down_proj_bias[e] if self.has_bias else out

    forward = eager_experts_forward  # the "eager" implementation; the interface dispatches the others

    def expert_parameters(self) -> int:
        """Parameters one more expert adds."""
        return sum(p[0].numel() for p in self.parameters())


# The interface fixes at decoration whether the experts have biases: one class per case (config.mlp_bias).
@use_experts_implementation(
    experts_interface=EXPERTS_FUNCTIONS, is_transposed=True, has_bias=False, has_gate=True
)
class GluExperts(_GluExperts):
    bias = False


@use_experts_implementation(
    experts_interface=EXPERTS_FUNCTIONS, is_transposed=True, has_bias=True, has_gate=True
)
class GluExpertsWithBias(_GluExperts):
    bias = True


class SharedGlu(nn.Module):
    """The shared neurons of a tied layout: a dense GLU, without output bias (each expert keeps its own)."""

    def __init__(self, config, bias: bool):
        super().__init__()
        h, s = config.hidden_size, config.shared_dim
        self.gate_up_proj = nn.Parameter(torch.empty(h, 2 * s))
        self.gate_up_proj_bias = nn.Parameter(torch.zeros(2 * s)) if bias else None
        self.down_proj = nn.Parameter(torch.empty(s, h))
        for w in (self.gate_up_proj, self.down_proj):
            nn.init.normal_(w, std=config.initializer_range)
        self.act_fn = ACT2FN[backbone_of(config.model_type).activation(config)]

    def forward(self, y: torch.Tensor, dropout: nn.Module) -> torch.Tensor:
        gate_up = y @ self.gate_up_proj
        if self.gate_up_proj_bias is not None:
            gate_up = gate_up + self.gate_up_proj_bias
        activated, linear = gate_up.chunk(2, dim=-1)
        return dropout(self.act_fn(activated) * linear) @ self.down_proj


def _stack(up: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
    """[activated; gate] rows of some neurons as the interface's transposed input projection [hidden, 2 n]."""
    return torch.cat([up, gate]).T


class GluMoEFFN(RoutedLayer):
    def __init__(self, config, implementation: ExpertsImplementation):
        super().__init__()
        n = config.num_experts
        bias = config.mlp_bias
        self.num_experts = n
        tied = config.shared == "tied" and config.shared_dim > 0
        self.shared = SharedGlu(config, bias) if tied else None
        width = config.expert_dim - config.shared_dim if tied else config.expert_dim
        self.experts = (GluExpertsWithBias if bias else GluExperts)(implementation, config, width)
        self.init_routing(config)

    def expert_parameters(self) -> int:
        """Parameters one more expert adds: its private neurons and its output bias (no LayerNorm of its own)."""
        return self.experts.expert_parameters()

    @torch.no_grad()
    def load_experts(self, dense, chosen: list[torch.Tensor], layer_norm: nn.Module | None = None) -> None:
        """Cut the experts from a dense GLU (`dense`: backbones.FFNWeights with `gate`): expert e gets the
        neurons `chosen[e]` (their activated and gate rows and output columns) and a copy of the output bias.
        The pre-norm stays the layer's (`layer_norm`: None). In a tied layout the first shared_dim neurons of
        every expert (the same for all) go to the shared GLU once."""
        if layer_norm is not None:
            raise ValueError("a pre-norm GLU's experts have no LayerNorm of their own")
        private = 0
        if self.shared is not None:
            private = self.shared.down_proj.shape[0]
            common = dense.select(chosen[0][:private])
            self.shared.gate_up_proj.copy_(_stack(common.up, common.gate))
            if self.shared.gate_up_proj_bias is not None:
                self.shared.gate_up_proj_bias.copy_(torch.cat([common.up_bias, common.gate_bias]))
            self.shared.down_proj.copy_(common.down.T)
        for e, idx in enumerate(chosen):
            own = dense.select(idx[private:])
            self.experts.gate_up_proj[e].copy_(_stack(own.up, own.gate))
            self.experts.down_proj[e].copy_(own.down.T)
            if self.experts.has_bias:
                self.experts.gate_up_proj_bias[e].copy_(torch.cat([own.up_bias, own.gate_bias]))
                self.experts.down_proj_bias[e].copy_(dense.down_bias)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """hidden_states: [batch, seq, hidden], the pre-normed y; the hash routes index its tokens in that order
        (input_ids.reshape(-1))."""
        expert, scale = self.routes(hidden_states)
        y = hidden_states.reshape(-1, hidden_states.shape[-1])
        out = self.experts(y, expert.unsqueeze(-1), y.new_ones(len(y), 1))
        if self.shared is not None:
            out = out + self.shared(y, self.experts.dropout)
        if scale is not None:
            out = out * scale.unsqueeze(-1).to(out.dtype)
        return out.view_as(hidden_states)
