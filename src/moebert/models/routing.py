"""Routing: which expert each token goes to (MoEBERT §4).

Hash routers are fixed tables token-id -> expert, one row per layer, kept as model buffers so a saved
model routes exactly as it did in training. Gate routers are learned: top-1 of a softmax, with the
chosen probability scaling the expert output and an optional load-balancing loss.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

HASH_ROUTERS = ("hash-random", "hash-balance")
GATE_ROUTERS = ("gate-token", "gate-sentence")
ROUTERS = HASH_ROUTERS + GATE_ROUTERS


def hash_random_table(num_layers: int, vocab_size: int, num_experts: int, seed: int) -> torch.Tensor:
    """A random expert per token id, drawn independently for every layer: shape [layers, vocab]."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(num_experts, (num_layers, vocab_size), generator=gen)


def hash_balance_table(
    token_counts: torch.Tensor, num_layers: int, num_experts: int, seed: int
) -> torch.Tensor:
    """Greedy balance: tokens, most frequent first, go to the currently least-loaded expert.

    Tokens never seen in the training split carry no load, so greedy assignment would pile them all onto
    one expert; they keep a random expert instead. Each layer relabels the experts with its own random
    permutation, so layers differ while every layer stays balanced.
    """
    table = hash_random_table(num_layers, token_counts.numel(), num_experts, seed)
    seen = torch.nonzero(token_counts > 0).flatten()
    seen = seen[torch.argsort(token_counts[seen], descending=True, stable=True)]
    load = [0] * num_experts
    balanced = torch.empty(seen.numel(), dtype=torch.long)
    for i, (token, count) in enumerate(zip(seen.tolist(), token_counts[seen].tolist())):
        expert = min(range(num_experts), key=load.__getitem__)
        load[expert] += count
        balanced[i] = expert
    gen = torch.Generator().manual_seed(seed + 1)
    for layer in range(num_layers):
        relabel = torch.randperm(num_experts, generator=gen)
        table[layer, seen] = relabel[balanced]
    return table


@dataclass
class Dispatch:
    """Where the tokens of one layer go, in the two layouts the MoE layer runs its experts in.

    Grouped: `order` lists token positions grouped by expert, `counts` the group sizes (host ints, so
    slicing needs no further sync). Padded: every group padded to the largest (`capacity` rows) for one
    batched matmul over all experts; `source` is the token each padded row reads (padding rows read
    token 0: any real row keeps them finite) and `slot` the padded row of each token. `scale` is an
    optional per-token multiplier (the gate probability)."""

    order: torch.Tensor
    counts: list[int]
    source: torch.Tensor
    slot: torch.Tensor
    scale: torch.Tensor | None = None

    @property
    def capacity(self) -> int:
        return max(self.counts)

    def spans(self) -> list[tuple[int, slice]]:
        """(expert, its block of `order`) for every expert that has tokens."""
        spans, start = [], 0
        for expert, count in enumerate(self.counts):
            if count:
                spans.append((expert, slice(start, start + count)))
            start += count
        return spans


def dispatch_all(expert_ids: torch.Tensor, num_experts: int) -> list[Dispatch]:
    """Both layouts for every layer at once from expert_ids [layers, tokens]: a few whole-tensor ops
    and one host sync per forward, none per layer."""
    layers, tokens = expert_ids.shape
    sorted_ids, order = torch.sort(expert_ids, dim=-1, stable=True)
    counts = torch.zeros(layers, num_experts, dtype=torch.long, device=expert_ids.device)
    counts.scatter_add_(1, expert_ids, torch.ones_like(expert_ids))
    capacity = counts.max(dim=1, keepdim=True).values
    starts = counts.cumsum(1) - counts
    rank = torch.arange(tokens, device=expert_ids.device) - starts.gather(1, sorted_ids)  # place in its group
    padded = sorted_ids * capacity + rank  # padded row of each token, in grouped order
    slot = torch.empty_like(order).scatter_(1, order, padded)
    host_counts = counts.tolist()  # the sync
    rows = [num_experts * max(c) for c in host_counts]
    source = order.new_zeros(layers, max(rows)).scatter_(1, padded, order)
    return [Dispatch(o, c, src[:n], s) for o, c, src, s, n in zip(order, host_counts, source, slot, rows)]


class GateRouter(nn.Module):
    """Learned top-1 gate over tokens (`gate-token`) or over the masked mean of a sequence (`gate-sentence`)."""

    def __init__(self, hidden_size: int, num_experts: int, per_sentence: bool):
        super().__init__()
        self.gate = nn.Linear(hidden_size, num_experts, bias=False)
        self.per_sentence = per_sentence
        self.num_experts = num_experts

    def forward(self, x: torch.Tensor, attention_mask: torch.Tensor | None) -> tuple[Dispatch, torch.Tensor]:
        """x: [batch, seq, hidden]. Returns the dispatch and the load-balancing loss of this layer."""
        batch, seq, _ = x.shape
        mask = torch.ones(batch, seq, device=x.device) if attention_mask is None else attention_mask.to(x.dtype)
        if self.per_sentence:
            pooled = (x * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True).clamp(min=1)
            probs = self.gate(pooled).softmax(-1)  # [batch, experts]
            weight = torch.ones(batch, device=x.device)
        else:
            probs = self.gate(x).softmax(-1).reshape(batch * seq, -1)  # [tokens, experts]
            weight = mask.reshape(-1)
        top_prob, top_expert = probs.max(-1)
        balance = self.balance_loss(probs, top_expert, weight)
        if self.per_sentence:
            # One expert per sentence; every token of it carries the sentence's probability. The
            # reference skips this scaling at batch size 1; here it always applies.
            top_prob = top_prob.repeat_interleave(seq)
            top_expert = top_expert.repeat_interleave(seq)
        dispatch = dispatch_all(top_expert.unsqueeze(0), self.num_experts)[0]
        dispatch.scale = top_prob
        return dispatch, balance

    def balance_loss(self, probs: torch.Tensor, chosen: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """Switch-style N * sum_i P_i f_i: P_i the mean gate probability, f_i the share of routed items."""
        total = weight.sum().clamp(min=1)
        mean_prob = (probs * weight.unsqueeze(-1)).sum(0) / total
        share = torch.zeros(self.num_experts, device=probs.device, dtype=probs.dtype)
        share.scatter_add_(0, chosen, weight.to(probs.dtype))
        return self.num_experts * (mean_prob * share / total).sum()
