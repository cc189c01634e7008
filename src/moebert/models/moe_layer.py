"""The MoE feed-forward layer (MoEBERT §4; docs/method.md §4): N experts in place of BERT's FFN, one per token.

It replaces the pair `BertIntermediate` + `BertOutput` of a `BertLayer` and keeps BertOutput's contract,
`forward(hidden_states, input_tensor)`. Every expert is the reference implementation's expert,

    expert_e(x) = LayerNorm_e(dropout(fc2_e(act(fc1_e(x)))) + x)      (dropout at the expert rate)

with a LayerNorm of its own (each initialised as a copy of the teacher's); a gate router multiplies the
expert's output, after its LayerNorm, by the gate probability (`gate_scale: output`, the reference's), or the
branch fc2_e(...) before the residual and LayerNorm (`gate_scale: branch`, the Switch Transformer's place).
Three parts, MegaBlocks' split: the router (models/routing.py) picks each token's expert, the experts
(models/bert_experts.py, transformers' experts interface) compute fc1 -> act -> fc2, and this layer adds the
residual and applies the expert's LayerNorm.

Shared neurons (`shared`): "copied" (the paper's model) gives every expert its own copy of the shared_dim
shared neurons, which then train apart; "tied" stores them once, as one dense FFN that every token runs,
beside experts of expert_dim - shared_dim private neurons. Since the activation acts neuron by neuron, the
two are the same function at initialisation:

    fc2_e(act(fc1_e(x))) = W2[:, S] act(W1[S] x + b1[S]) + W2[:, P_e] act(W1[P_e] x + b1[P_e]) + b2_e
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers.activations import ACT2FN

from moebert.backbones import backbone_of
from moebert.models.bert_experts import BertExperts, ExpertsImplementation
from moebert.models.routing import RoutedLayer

SHARED_LAYOUTS = ("copied", "tied")


class ExpertLayerNorm(nn.Module):
    """One LayerNorm per expert, applied to every token with its expert's weight and bias. The normalisation
    is the same for all experts, so it runs once over all tokens and only the affine part is gathered."""

    def __init__(self, num_experts: int, hidden_size: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(num_experts, hidden_size))
        self.bias = nn.Parameter(torch.zeros(num_experts, hidden_size))
        self.eps = eps

    def forward(self, x: torch.Tensor, expert: torch.Tensor) -> torch.Tensor:
        """x [tokens, hidden], expert [tokens]."""
        normalized = F.layer_norm(x, x.shape[-1:], eps=self.eps)
        return torch.addcmul(
            self.bias.index_select(0, expert), normalized, self.weight.index_select(0, expert)
        )


class SharedNeurons(nn.Module):
    """The shared neurons of a tied layout: a dense FFN without output bias (each expert keeps its own b2)."""

    def __init__(self, config):
        super().__init__()
        h, s = config.hidden_size, config.shared_dim
        self.up_proj = nn.Parameter(torch.empty(h, s))
        self.up_proj_bias = nn.Parameter(torch.zeros(s))
        self.down_proj = nn.Parameter(torch.empty(s, h))
        for w in (self.up_proj, self.down_proj):
            nn.init.normal_(w, std=config.initializer_range)
        self.act_fn = ACT2FN[backbone_of(config.model_type).activation(config)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act_fn(torch.addmm(self.up_proj_bias, x, self.up_proj)) @ self.down_proj


class MoEFFN(RoutedLayer):
    def __init__(self, config, implementation: ExpertsImplementation):
        super().__init__()
        n, h = config.num_experts, config.hidden_size
        self.num_experts = n
        tied = config.shared == "tied" and config.shared_dim > 0
        self.shared = SharedNeurons(config) if tied else None
        self.experts = BertExperts(
            implementation, config, config.expert_dim - config.shared_dim if tied else config.expert_dim
        )
        self.dropout = nn.Dropout(config.expert_dropout)
        self.scale_branch = config.gate_scale == "branch"
        self.LayerNorm = ExpertLayerNorm(n, h, backbone_of(config.model_type).norm_eps(config))
        self.init_routing(config)

    def expert_parameters(self) -> int:
        """Parameters one more expert adds: its private neurons, its output bias and its LayerNorm."""
        return (
            self.experts.expert_parameters()
            + self.LayerNorm.weight[0].numel()
            + self.LayerNorm.bias[0].numel()
        )

    @torch.no_grad()
    def load_experts(self, dense, chosen: list[torch.Tensor], layer_norm: nn.LayerNorm) -> None:
        """Cut the experts from a dense FFN (`dense`: backbones.FFNWeights): expert e gets the neurons
        `chosen[e]`, a copy of the FFN's output bias and of its LayerNorm. In a tied layout the first
        shared_dim neurons of every expert (the same for all) go to the shared FFN once."""
        private = 0
        if self.shared is not None:
            private = self.shared.up_proj.shape[-1]
            common = dense.select(chosen[0][:private])
            self.shared.up_proj.copy_(common.up.T)
            self.shared.up_proj_bias.copy_(common.up_bias)
            self.shared.down_proj.copy_(common.down.T)
        for e, idx in enumerate(chosen):
            own = dense.select(idx[private:])
            self.experts.up_proj[e].copy_(own.up.T)
            self.experts.up_proj_bias[e].copy_(own.up_bias)
            self.experts.down_proj[e].copy_(own.down.T)
            self.experts.down_proj_bias[e].copy_(dense.down_bias)
        self.LayerNorm.weight.copy_(layer_norm.weight.expand_as(self.LayerNorm.weight))
        self.LayerNorm.bias.copy_(layer_norm.bias.expand_as(self.LayerNorm.bias))

    def forward(self, hidden_states: torch.Tensor, input_tensor: torch.Tensor) -> torch.Tensor:
        expert, scale = self.routes(hidden_states)
        width = hidden_states.shape[-1]
        x = hidden_states.reshape(-1, width)
        y = self.experts(x, expert.unsqueeze(-1), x.new_ones(len(x), 1))
        if self.shared is not None:
            y = y + self.shared(x)
        if scale is not None and self.scale_branch:
            y = y * scale.unsqueeze(-1).to(y.dtype)
        out = self.LayerNorm(self.dropout(y) + input_tensor.reshape(-1, width), expert)
        if scale is not None and not self.scale_branch:
            out = out * scale.unsqueeze(-1).to(out.dtype)
        return out.view_as(input_tensor)
