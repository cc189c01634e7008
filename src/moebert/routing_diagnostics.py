"""What the routers did on a dataset (docs/method.md §8.2): per MoE layer, the share of the real tokens (padding
excluded) each expert received, the load's coefficient of variation and entropy, and for gate routers the mean
entropy of the gate's distribution and the mean probability of the chosen expert.

The recorder only observes: forward hooks read the routes the layers already computed (a hash layer's
`expert_ids`, a gate's output), so the model's outputs are unchanged.
"""

from __future__ import annotations

import math
from typing import Self

import torch

# An expert that receives less than this share of a layer's tokens marks the router as collapsed.
COLLAPSE_SHARE = 0.01


class _LayerCounts:
    def __init__(self, num_experts: int):
        self.tokens = torch.zeros(num_experts, dtype=torch.float64)
        self.gate_entropy = 0.0
        self.chosen_probability = 0.0
        self.gated = False


class RoutingRecorder:
    """Counts the routes of every MoE layer of `model` while it is active (`with RoutingRecorder(model) as r`).
    A model without MoE layers records nothing (`layers()` is empty)."""

    def __init__(self, model):
        layers = model.moe_layers() if hasattr(model, "moe_layers") else []
        self.model = model
        self.moe = layers
        self.counts = [_LayerCounts(model.config.num_experts) for _ in layers]
        self.mask: torch.Tensor | None = None
        self.handles = []

    def __enter__(self) -> Self:
        if self.moe:
            self.handles.append(self.model.register_forward_pre_hook(self._inputs, with_kwargs=True))
        for layer, counts in zip(self.moe, self.counts):
            if layer.router is None:
                self.handles.append(layer.register_forward_pre_hook(self._hash_hook(layer, counts)))
            else:
                self.handles.append(layer.router.register_forward_hook(self._gate_hook(counts)))
        return self

    def __exit__(self, *exc) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles = []

    def _inputs(self, module, args, kwargs) -> None:
        ids = kwargs.get("input_ids", args[0] if args else None)
        mask = kwargs.get("attention_mask")
        self.mask = (torch.ones_like(ids) if mask is None else mask).reshape(-1).bool().cpu()

    def _add(self, counts: _LayerCounts, expert: torch.Tensor) -> None:
        real = expert.reshape(-1).cpu()[self.mask]
        counts.tokens += torch.bincount(real, minlength=len(counts.tokens)).double()

    def _hash_hook(self, layer, counts: _LayerCounts):
        def hook(module, args) -> None:
            self._add(counts, layer.expert_ids)

        return hook

    def _gate_hook(self, counts: _LayerCounts):
        def hook(module, args, output) -> None:
            expert = output[0]
            self._add(counts, expert)
            # One distribution per routed item (token, or sentence for gate-sentence), spread over its tokens.
            probs = module.probabilities(*args).float()
            per_token = probs.repeat_interleave(len(expert) // len(probs), dim=0).cpu()[self.mask]
            entropy = -(per_token * per_token.clamp_min(1e-30).log()).sum(-1)
            counts.gate_entropy += float(entropy.double().sum())
            counts.chosen_probability += float(per_token.max(-1).values.double().sum())
            counts.gated = True

        return hook

    def layers(self) -> list[dict]:
        """Per MoE layer: share (per expert), cv, load_entropy (nats; log N when balanced) and, for gates,
        gate_entropy (nats, the mean over tokens) and chosen_probability (the mean)."""
        return [layer_stats(c.tokens, c.gate_entropy, c.chosen_probability, c.gated) for c in self.counts]


def layer_stats(tokens: torch.Tensor, gate_entropy: float, chosen: float, gated: bool) -> dict:
    total = float(tokens.sum())
    share = (tokens / total) if total else tokens
    mean = float(share.mean())
    stats = {
        "share": [float(s) for s in share],
        "cv": float(share.std(unbiased=False)) / mean if mean else math.nan,
        "load_entropy": -sum(float(s) * math.log(s) for s in share.tolist() if s > 0),
    }
    if gated:
        stats["gate_entropy"] = gate_entropy / total if total else math.nan
        stats["chosen_probability"] = chosen / total if total else math.nan
    return stats


def collapsed(layers: list[dict], threshold: float = COLLAPSE_SHARE) -> list[tuple[int, int, float]]:
    """(layer, expert, share) of every expert that received less than `threshold` of its layer's tokens."""
    return [
        (i, e, share)
        for i, layer in enumerate(layers)
        for e, share in enumerate(layer["share"])
        if share < threshold
    ]


def flat_metrics(routing: dict[str, list[dict]]) -> dict[str, float]:
    """The diagnostics as MLflow metrics: routing/<split>/layer<i>/<name> (expert<e>_share per expert)."""
    out = {}
    for key, layers in routing.items():
        for i, layer in enumerate(layers):
            prefix = f"routing/{key}/layer{i}"
            out.update({f"{prefix}/expert{e}_share": share for e, share in enumerate(layer["share"])})
            out.update({f"{prefix}/{name}": v for name, v in layer.items() if name != "share"})
    return out
