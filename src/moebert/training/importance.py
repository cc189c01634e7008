"""Neuron importance scores (MoEBERT Eq. 4, docs/method.md §2).

For neuron j of a layer's FFN, with w1_j its row of the intermediate weight and w2_j its column of the
output weight,

    I_j = sum over examples (x, y) of | w1_j . grad_{w1_j} L(x, y) + w2_j . grad_{w2_j} L(x, y) |.

Both dot products follow from activations and their gradients: with z = W1 a + b1 and h the input of W2,
w1_j . grad_{w1_j} L = sum_t dL/dz_tj (z_tj - b1_j) and w2_j . grad_{w2_j} L = sum_t h_tj dL/dh_tj.
Examples are independent in eval mode, so one backward pass of the summed per-example loss gives every
example's terms at once (`importance_scores`), instead of one autograd call per example per matrix as in
the reference (`importance_scores_autograd`, kept as the slow ground truth for tests and benchmarks).
The backbone's FFN contract names the two projections and turns their per-row and per-column terms into a
neuron's (a GLU neuron has two rows of its input projection: backbones/modernbert.py); hooks keep the input
projection's output z and the output projection's input h of every layer of the last forward.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from moebert.backbones import backbone_of
from moebert.tasks.qa import span_loss

# Batch columns that hold targets, not model inputs (classification/regression; extractive QA).
TARGETS = ("labels", "start_positions", "end_positions")


def per_example_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Task loss of every example on gold labels: CE for classification, squared error for regression."""
    if logits.shape[-1] == 1:
        return (logits.squeeze(-1) - labels.to(logits.dtype)) ** 2
    return F.cross_entropy(logits, labels, reduction="none")


def _ffn_linears(model: nn.Module):
    """(input projection, output projection) of every layer's dense FFN, as its backbone's contract names them."""
    contract = backbone_of(model.config).contract
    for layer in backbone_of(model.config).layer_list(model):
        yield contract.importance_linears(layer)


def _forward_loss(model: nn.Module, batch: dict) -> torch.Tensor:
    out = model(**{k: v for k, v in batch.items() if k not in TARGETS})
    if "start_positions" in batch:
        return span_loss(
            out.start_logits,
            out.end_logits,
            batch["start_positions"],
            batch["end_positions"],
            batch.get("attention_mask"),
        )
    return per_example_loss(out.logits, batch["labels"])


def importance_scores(model: nn.Module, batches: Iterable[dict], progress: bool = True) -> list[torch.Tensor]:
    """Eq. 4 with one backward pass per batch; returns one score vector per layer (float64)."""
    model.eval()
    device = next(model.parameters()).device
    contract = backbone_of(model.config).contract
    layers = list(_ffn_linears(model))
    z_seen: list[torch.Tensor] = []
    h_seen: list[torch.Tensor] = []
    handles = [fc1.register_forward_hook(lambda m, a, out: z_seen.append(out)) for fc1, _ in layers]
    handles += [fc2.register_forward_pre_hook(lambda m, a: h_seen.append(a[0])) for _, fc2 in layers]
    scores = [torch.zeros(fc2.in_features, dtype=torch.float64, device=device) for _, fc2 in layers]
    try:
        for batch in tqdm(batches, desc="importance", disable=not progress):
            z_seen.clear()
            h_seen.clear()
            loss = _forward_loss(model, {k: v.to(device) for k, v in batch.items()}).sum()
            # Gradients w.r.t. the activations only: autograd skips every weight gradient, a third of the
            # work of a training step's backward.
            grads = torch.autograd.grad(loss, z_seen + h_seen)
            dz, dh = grads[: len(layers)], grads[len(layers) :]
            with torch.no_grad():
                for i, (fc1, _) in enumerate(layers):
                    z = z_seen[i] if fc1.bias is None else z_seen[i] - fc1.bias
                    rows = (dz[i] * z).sum(dim=1)  # [batch, rows of fc1]
                    columns = (h_seen[i] * dh[i]).sum(dim=1)  # [batch, ffn]
                    scores[i] += contract.neuron_terms(rows, columns).abs().sum(0).double()
    finally:
        for handle in handles:
            handle.remove()
    return [s.cpu() for s in scores]


def importance_scores_autograd(model: nn.Module, batches: Iterable[dict]) -> list[torch.Tensor]:
    """The reference's literal formulation: one forward per batch, then for every example one autograd
    call per weight matrix (2 x layers x batch backward passes through the batch's graph)."""
    model.eval()
    device = next(model.parameters()).device
    contract = backbone_of(model.config).contract
    weights = [(fc1.weight, fc2.weight) for fc1, fc2 in _ffn_linears(model)]
    scores = [torch.zeros(w2.shape[1], dtype=torch.float64, device=device) for _, w2 in weights]
    for batch in batches:
        losses = _forward_loss(model, {k: v.to(device) for k, v in batch.items()})
        for loss in losses:
            for i, (w1, w2) in enumerate(weights):
                (g1,) = torch.autograd.grad(loss, w1, retain_graph=True)
                (g2,) = torch.autograd.grad(loss, w2, retain_graph=True)
                scores[i] += contract.neuron_terms((w1 * g1).sum(1), (w2 * g2).sum(0)).abs().double()
    return [s.cpu() for s in scores]


def orders(scores: list[torch.Tensor]) -> list[torch.Tensor]:
    """Neurons of every layer by importance, most important first (ties keep index order)."""
    return [torch.argsort(s, descending=True, stable=True) for s in scores]
