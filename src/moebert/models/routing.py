"""Routing: which expert each token goes to (MoEBERT §4; docs/method.md §4).

Hash routers are fixed tables token-id -> expert, one row per layer, kept as model buffers so a saved
model routes exactly as it did in training. Gate routers are learned: top-1 of a softmax, the chosen
probability scaling the layer's output, and a Switch-style load-balancing loss. A router only decides;
the experts (models/bert_experts.py) compute and the layer (models/moe_layer.py) combines.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

HASH_ROUTERS = ("hash-random", "hash-balance")
GATE_ROUTERS = ("gate-token", "gate-sentence")
ROUTERS = HASH_ROUTERS + GATE_ROUTERS
# gate-sentence at batch size 1: "scale" by the gate probability as at every other batch size, or "skip" the
# scaling and the balance loss as the reference does (docs/method.md, difference 7).
SENTENCE_GATE_BATCH1 = ("scale", "skip")
# Where a gate's probability scales the layer: "output", the MoE module's output (in BERT's post-norm layer the
# expert's output after its residual and LayerNorm, as the reference), or "branch", the FFN's output before them
# (the Switch Transformer's place; docs/method.md §4).
GATE_SCALES = ("output", "branch")
# hash-balance: the reference's one table for every layer, or the project's earlier table relabelled per layer
# (docs/method.md §4).
HASH_BALANCE_LAYOUTS = ("reference", "per-layer")


def expert_id_dtype(num_experts: int) -> torch.dtype:
    """The smallest integer type that holds every expert id: a hash table has an entry per layer and token id
    (12 x 250,002 for XLM-R-base), a byte each instead of eight up to 256 experts."""
    for dtype in (torch.uint8, torch.int16, torch.int32):
        if num_experts - 1 <= torch.iinfo(dtype).max:
            return dtype
    return torch.int64


def hash_random_table(num_layers: int, vocab_size: int, num_experts: int, seed: int) -> torch.Tensor:
    """A random expert per token id, drawn independently for every layer: shape [layers, vocab], in
    `expert_id_dtype` (the draws are those of an int64 table: the routes do not depend on the type)."""
    gen = torch.Generator().manual_seed(seed)
    table = torch.randint(num_experts, (num_layers, vocab_size), generator=gen)
    return table.to(expert_id_dtype(num_experts))


def hash_balance_table(
    token_counts: torch.Tensor, num_layers: int, num_experts: int, seed: int, layout: str = "reference"
) -> torch.Tensor:
    """Greedy balance: token ids, most frequent first, go to the currently least-loaded expert (the lowest
    index among equals). Ids never seen in the training split carry no load, so greedy assignment would pile
    them all onto one expert; they get a random expert instead. Shape [layers, vocab].

    layout "reference" builds the reference's table (its hash_balance.py) and uses it in every layer: ids in
    the order of numpy's default argsort of the counts, reversed (equal counts in the order that sort leaves
    them, reversed), unseen ids drawn in that order from numpy's RandomState(seed) (the reference seeds 0).
    layout "per-layer" (the project's earlier construction) orders equal counts by id (a stable sort), draws
    unseen ids per layer from torch's generator and relabels the experts per layer with a random
    permutation, so that layers differ while each stays balanced.

    The table is in `expert_id_dtype(num_experts)`.
    """
    if layout == "reference":
        counts = token_counts.numpy()
        order = np.argsort(counts)[::-1]
        unseen = order[counts[order] == 0]
        row = np.empty(len(counts), dtype=np.int64)
        row[unseen] = np.random.RandomState(seed).randint(0, num_experts, size=len(unseen))
        load = [0] * num_experts
        for token in order[counts[order] > 0].tolist():
            expert = min(range(num_experts), key=load.__getitem__)
            load[expert] += int(counts[token])
            row[token] = expert
        return torch.from_numpy(row).to(expert_id_dtype(num_experts)).expand(num_layers, -1).clone()
    if layout != "per-layer":
        raise ValueError(
            f"unknown hash-balance layout {layout!r}; choose one of {', '.join(HASH_BALANCE_LAYOUTS)}"
        )
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
        table[layer, seen] = relabel[balanced].to(table.dtype)
    return table


def balance_loss(probs: torch.Tensor, chosen: torch.Tensor, num_experts: int) -> torch.Tensor:
    """Switch-style N * sum_i P_i f_i over the routed items (tokens or sentences): P_i the mean gate
    probability of expert i, f_i the share of items routed to it. Every item counts, padding tokens
    included, as in the reference."""
    share = torch.zeros(num_experts, device=probs.device, dtype=probs.dtype)
    share.scatter_add_(0, chosen, torch.ones_like(chosen, dtype=probs.dtype))
    return num_experts * (probs.mean(0) * share / len(chosen)).sum()


class GateRouter(nn.Module):
    """Learned top-1 gate over tokens (`gate-token`) or over the masked mean of a sequence (`gate-sentence`)."""

    def __init__(self, hidden_size: int, num_experts: int, per_sentence: bool, batch1: str = "scale"):
        super().__init__()
        self.gate = nn.Linear(hidden_size, num_experts, bias=False)
        self.per_sentence = per_sentence
        self.num_experts = num_experts
        self.batch1 = batch1

    def probabilities(self, x: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        """The gate's distribution over the experts for every routed item: [batch, experts] for sentences
        (from the mean of their real tokens), [batch * seq, experts] for tokens."""
        batch, seq, _ = x.shape
        if self.per_sentence:
            mask = x.new_ones(batch, seq) if attention_mask is None else attention_mask.to(x.dtype)
            pooled = (x * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True).clamp(min=1)
            return self.gate(pooled).softmax(-1)
        return self.gate(x.reshape(batch * seq, -1)).softmax(-1)

    def forward(
        self, x: torch.Tensor, attention_mask: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """x: [batch, seq, hidden]. Returns the expert of every token [batch * seq], the probability that
        scales its output (None: no scaling) and this layer's load-balancing loss. Nothing here waits on
        the device: the expert ids stay tensors."""
        batch, seq, _ = x.shape
        probs = self.probabilities(x, attention_mask)
        top_prob, top_expert = probs.max(-1)
        balance = balance_loss(probs, top_expert, self.num_experts)
        if not self.per_sentence:
            return top_expert, top_prob, balance
        if batch == 1 and self.batch1 == "skip":
            return top_expert.expand(seq), None, balance.new_zeros(())
        return top_expert.repeat_interleave(seq), top_prob.repeat_interleave(seq), balance


class RoutedLayer(nn.Module):
    """What a MoE layer of sliced experts (moe_layer.MoEFFN, glu_layer.GluMoEFFN) shares of routing: a gate
    router for the gate routers, the routes the model sets before a forward, and the balance loss read
    after it."""

    def init_routing(self, config) -> None:
        self.router = None
        if config.router in GATE_ROUTERS:
            self.router = GateRouter(
                config.hidden_size,
                config.num_experts,
                per_sentence=config.router == "gate-sentence",
                batch1=config.gate_sentence_batch1,
            )
        # Set by the model for one forward: the hash routes of this layer, or the attention mask a sentence
        # gate pools with; read after it: a gate's balance loss.
        self.expert_ids: torch.Tensor | None = None
        self.attention_mask: torch.Tensor | None = None
        self.balance_loss: torch.Tensor | None = None

    def routes(self, hidden_states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(expert of every token, the gate's scale or None) of this forward."""
        if self.router is not None:
            expert, scale, self.balance_loss = self.router(hidden_states, self.attention_mask)
            return expert, scale
        if self.expert_ids is None:
            raise RuntimeError(
                f"hash-routed {type(self).__name__} called outside the MoE model's forward (no routes set)"
            )
        return self.expert_ids, None
