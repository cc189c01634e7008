"""The MoE feed-forward layer (MoEBERT §4): N narrow experts in place of BERT's FFN, one per token.

It replaces the pair `BertIntermediate` + `BertOutput` of a `BertLayer` and keeps BertOutput's contract,
`forward(hidden_states, input_tensor)`, with dropout, residual and LayerNorm after the expert. Expert
weights are stacked tensors [experts, ...] so the whole layer saves as a few safetensors entries.

Tokens are grouped by expert once per layer and each result lands straight on its token's row: no
stacking into a new tensor, no second sort, and the residual add is fused into the write-back. Two
layouts, by group size:
- per expert (the usual case): one matmul per expert on its contiguous block of the gathered tokens,
  each result added onto its tokens' rows of the residual (index_add_);
- padded (small groups, e.g. batch 1): all experts as two batched matmuls (baddbmm) over the groups
  padded to the largest. On 2 CPU threads a separate 32-row matmul per expert splits poorly across the
  threads and is a fork/join that other load stretches; the batched call hands each thread whole experts.
  BERT-base at batch 1, latency over the dense-narrow control: padded +12%, per expert +25%.
The reference-style forward it is benchmarked against is `moebert.speed.reference_style`.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers.activations import ACT2FN

from .routing import GATE_ROUTERS, Dispatch, GateRouter

# Experts run padded while no group has more tokens than this (about batch 1-3 at length 128 with 4
# experts). With larger groups per-expert matmuls are as efficient as one dense matmul and waste nothing
# on padding, and the padded path's extra full-size buffers cost page faults (benchmarks/moe_speed.py).
PADDED_MAX_ROWS = 128
# ... and while padding at most doubles the rows: a small batch routed mostly to one expert goes per
# expert, which reads only the busy experts' weights.
PADDED_MAX_GROWTH = 2.0


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

    def experts(self, x: torch.Tensor, which: slice = slice(None)) -> torch.Tensor:
        """Experts `which` (all by default), each on its own rows: x [experts, rows, hidden]."""
        w1, b1, w2, b2 = (p[which] for p in (self.w1, self.b1, self.w2, self.b2))
        hidden = self.expert_dropout(self.act(torch.baddbmm(b1.unsqueeze(1), x, w1.transpose(1, 2))))
        return torch.baddbmm(b2.unsqueeze(1), hidden, w2.transpose(1, 2))

    def forward(self, hidden_states: torch.Tensor, input_tensor: torch.Tensor) -> torch.Tensor:
        if self.router is not None:
            dispatch, self.balance_loss = self.router(hidden_states, self.attention_mask)
        elif self.dispatch is None:
            raise RuntimeError("hash-routed MoEFFN called outside MoEBert's forward (no dispatch set)")
        else:
            dispatch = self.dispatch
        width = hidden_states.shape[-1]
        x, residual = hidden_states.reshape(-1, width), input_tensor.reshape(-1, width)
        padded_rows = self.num_experts * dispatch.capacity
        if dispatch.capacity <= PADDED_MAX_ROWS and padded_rows <= PADDED_MAX_GROWTH * len(x):
            out = self.dropout(self.padded_experts(x, dispatch))
            out += residual  # in place: a fresh tensor of this layer's, and one allocation fewer
        else:
            out = self.grouped_experts(x, dispatch, residual)
        return self.LayerNorm(out.view_as(input_tensor))

    def padded_experts(self, x: torch.Tensor, dispatch: Dispatch) -> torch.Tensor:
        """Every token through its expert, all experts in one batched matmul per weight; token order."""
        padded = x.index_select(0, dispatch.source).view(self.num_experts, dispatch.capacity, -1)
        y = self.experts(padded).view(-1, x.shape[-1]).index_select(0, dispatch.slot)
        return y if dispatch.scale is None else y * dispatch.scale.unsqueeze(-1)

    def grouped_experts(self, x: torch.Tensor, dispatch: Dispatch, residual: torch.Tensor) -> torch.Tensor:
        """Residual + every token through its expert, one matmul per expert on its contiguous block; each
        result is added straight onto its tokens' rows (no stacking, no second sort)."""
        grouped = x.index_select(0, dispatch.order)
        scale = None if dispatch.scale is None else dispatch.scale.index_select(0, dispatch.order).unsqueeze(-1)
        out = residual.clone()  # not in place: under autograd the attention output may be saved (a gate reads it)
        for e, rows in dispatch.spans():
            y = self.experts(grouped[rows].unsqueeze(0), slice(e, e + 1))[0]
            if scale is not None:
                y = y * scale[rows]
            out.index_add_(0, dispatch.order[rows], self.dropout(y))
        return out
