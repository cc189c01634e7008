"""The MoE feed-forward layer (MoEBERT §4): N narrow experts in place of BERT's FFN, one per token.

It replaces the pair `BertIntermediate` + `BertOutput` of a `BertLayer` and keeps BertOutput's contract,
`forward(hidden_states, input_tensor)`, with dropout, residual and LayerNorm after the expert. Expert
weights are stacked tensors [experts, ...] so the whole layer saves as a few safetensors entries.

The forward groups tokens by expert and runs every expert once on its contiguous group; each result is
written straight into its rows of the output (index_copy_), so there is no stacking and no second sort
to restore token order.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers.activations import ACT2FN

from .routing import GATE_ROUTERS, Dispatch, GateRouter


class MoEFFN(nn.Module):
    def __init__(self, config):
        super().__init__()
        n, d, h = config.num_experts, config.expert_dim, config.hidden_size
        self.num_experts = n
        self.w1 = nn.Parameter(torch.empty(n, d, h))  # rows of BertIntermediate.dense.weight
        self.b1 = nn.Parameter(torch.zeros(n, d))
        self.w2 = nn.Parameter(torch.empty(n, h, d))  # columns of BertOutput.dense.weight
        self.b2 = nn.Parameter(torch.zeros(n, h))  # every expert starts from the full dense bias
        for w in (self.w1, self.w2):
            nn.init.normal_(w, std=config.initializer_range)
        self.act = ACT2FN[config.hidden_act]
        self.expert_dropout = nn.Dropout(config.expert_dropout)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.LayerNorm = nn.LayerNorm(h, eps=config.layer_norm_eps)
        self.router = (
            GateRouter(h, n, per_sentence=config.router == "gate-sentence") if config.router in GATE_ROUTERS else None
        )
        # Set by the model for one forward: the hash dispatch of this layer, or the attention mask a gate needs.
        self.dispatch: Dispatch | None = None
        self.attention_mask: torch.Tensor | None = None
        self.balance_loss: torch.Tensor | None = None

    def experts_forward(self, x: torch.Tensor, dispatch: Dispatch) -> torch.Tensor:
        """x: [tokens, hidden] -> [tokens, hidden], every token through its own expert."""
        out = x.new_empty(x.shape)
        start = 0
        for e, count in enumerate(dispatch.counts):
            if count == 0:
                continue
            rows = dispatch.order[start : start + count]
            start += count
            hidden = self.act(torch.addmm(self.b1[e], x.index_select(0, rows), self.w1[e].t()))
            y = torch.addmm(self.b2[e], self.expert_dropout(hidden), self.w2[e].t())
            if dispatch.scale is not None:
                y = y * dispatch.scale.index_select(0, rows).unsqueeze(-1)
            out.index_copy_(0, rows, y)
        return out

    def forward(self, hidden_states: torch.Tensor, input_tensor: torch.Tensor) -> torch.Tensor:
        if self.router is not None:
            dispatch, self.balance_loss = self.router(hidden_states, self.attention_mask)
        elif self.dispatch is None:
            raise RuntimeError("hash-routed MoEFFN called outside MoEBert's forward (no dispatch set)")
        else:
            dispatch = self.dispatch
        flat = hidden_states.reshape(-1, hidden_states.shape[-1])
        y = self.experts_forward(flat, dispatch).view_as(hidden_states)
        return self.LayerNorm(self.dropout(y) + input_tensor)
