"""The MoE feed-forward layer (MoEBERT §4): N narrow experts in place of BERT's FFN, one per token.

It replaces the pair `BertIntermediate` + `BertOutput` of a `BertLayer` and keeps BertOutput's contract,
`forward(hidden_states, input_tensor)`, with dropout, residual and LayerNorm after the expert. Expert
weights are stacked tensors [experts, in, out] so the whole layer saves as a few safetensors entries and
a token's expert is `x @ w`: a batched matmul reads the weights as stored, where a transposed view
would cost it a copy of every expert's weights on each call (CPU).

The forward groups the tokens by expert once and keeps them grouped through the residual add and the
LayerNorm, which work row by row, so the only data movement is one gather in and one scatter out. The
reference instead stacks the expert outputs into a new tensor, gathers them back into token order and
only then adds the residual (`moebert.speed.reference_style`, the peer benchmarks/moe_speed.py
measures). Two layouts, by group size:
- per expert (the usual case): one matmul pair per expert on its contiguous block of grouped tokens.
  Outside autograd its output is added in place onto the block, which already holds the residual,
  since the residual of BertOutput is its own input;
- padded (small groups, e.g. batch 1): all experts as one batched matmul pair over the groups padded
  to the largest. A 32-row matmul split across CPU threads is mostly overhead; the batched call hands
  each thread whole experts (benchmarks/expert_matmul.py, 128 tokens on 2 threads: one matmul per
  expert takes 1.9x the dense-narrow FFN's time, the batched pair 1.45x).
"""

from __future__ import annotations

import torch
from torch import nn
from transformers.activations import ACT2FN

from moebert.models.routing import GATE_ROUTERS, Dispatch, GateRouter

# Experts run padded while no group has more tokens than this (about batch 1-3 at length 128 with 4
# experts). Larger groups run per expert as efficiently as one dense matmul and waste nothing on padding.
PADDED_MAX_ROWS = 128
# ... and while padding at most doubles the rows: a small batch routed mostly to one expert goes per
# expert, which reads only the busy experts' weights.
PADDED_MAX_GROWTH = 2.0


class MoEFFN(nn.Module):
    def __init__(self, config):
        super().__init__()
        n, d, h = config.num_experts, config.expert_dim, config.hidden_size
        self.num_experts = n
        self.w_in = nn.Parameter(torch.empty(n, h, d))  # rows of BertIntermediate.dense.weight, transposed
        # Named "bias*" so the Trainer exempts them from weight decay, as it does the dense model's biases.
        self.bias_in = nn.Parameter(torch.zeros(n, d))
        self.w_out = nn.Parameter(torch.empty(n, d, h))  # columns of BertOutput.dense.weight, transposed
        self.bias_out = nn.Parameter(torch.zeros(n, h))  # every expert starts from the full dense bias
        for w in (self.w_in, self.w_out):
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

    def expert_parameters(self) -> int:
        """Parameters one more expert adds."""
        return sum(p[0].numel() for p in (self.w_in, self.bias_in, self.w_out, self.bias_out))

    def expert(self, e: int, x: torch.Tensor) -> torch.Tensor:
        """Expert `e` on the rows x [rows, hidden], without residual: the FFN of a BERT whose intermediate
        width is the expert's."""
        hidden = self.expert_dropout(self.act(torch.addmm(self.bias_in[e], x, self.w_in[e])))
        return torch.addmm(self.bias_out[e], hidden, self.w_out[e])

    def forward(self, hidden_states: torch.Tensor, input_tensor: torch.Tensor) -> torch.Tensor:
        if self.router is not None:
            dispatch, self.balance_loss = self.router(hidden_states, self.attention_mask)
        elif self.dispatch is None:
            raise RuntimeError("hash-routed MoEFFN called outside MoEBert's forward (no dispatch set)")
        else:
            dispatch = self.dispatch
        width = hidden_states.shape[-1]
        x, residual = hidden_states.reshape(-1, width), input_tensor.reshape(-1, width)
        if dispatch.capacity <= PADDED_MAX_ROWS and self.num_experts * dispatch.capacity <= PADDED_MAX_GROWTH * len(x):
            out = self.padded_experts(x, dispatch)
            out += residual  # in place: a fresh tensor that backward does not need
            out = self.LayerNorm(out)
        else:
            grouped = self.grouped_experts(x, residual if input_tensor is not hidden_states else None, dispatch)
            out = torch.empty_like(grouped).index_copy_(0, dispatch.order, self.LayerNorm(grouped))
        return out.view_as(input_tensor)

    def padded_experts(self, x: torch.Tensor, dispatch: Dispatch) -> torch.Tensor:
        """Dropout(every token through its expert, scaled), all experts in one batched matmul per weight;
        token order."""
        padded = x.index_select(0, dispatch.source).view(self.num_experts, dispatch.capacity, -1)
        hidden = self.expert_dropout(self.act(torch.baddbmm(self.bias_in.unsqueeze(1), padded, self.w_in)))
        y = torch.baddbmm(self.bias_out.unsqueeze(1), hidden, self.w_out).view(-1, x.shape[-1])
        y = y.index_select(0, dispatch.slot)
        return self.dropout(y if dispatch.scale is None else y * dispatch.scale.unsqueeze(-1))

    def grouped_experts(self, x: torch.Tensor, residual: torch.Tensor | None, dispatch: Dispatch) -> torch.Tensor:
        """Residual + dropout(every token through its expert, scaled), in grouped order. `residual` None
        means x itself (BertOutput's residual is its input), whose grouped rows then serve as both."""
        grouped = x.index_select(0, dispatch.order)
        base = grouped if residual is None else residual.index_select(0, dispatch.order)
        # Outside autograd the sums land in place on the fresh grouped rows; under it every row they
        # overwrite is still needed for backward, so they go to a new tensor.
        out = base if not torch.is_grad_enabled() else torch.empty_like(base)
        scale = None if dispatch.scale is None else dispatch.scale.index_select(0, dispatch.order).unsqueeze(-1)
        for e, rows in dispatch.spans():
            y = self.expert(e, grouped[rows])
            if scale is not None:
                y = y * scale[rows]
            y = self.dropout(y)
            if out is base:
                out[rows] += y
            else:
                out[rows] = base[rows] + y
        return out
