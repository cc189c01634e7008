"""MPOE's gradient mask (docs/method.md §9): the central tensors receive gradient from every expert while each
auxiliary tensor sees only its expert's tokens ("unbalanced optimisation"). Before each optimiser step,
with probability p_b, the central tensors' gradients are dropped, so that neither the step nor AdamW's
moments nor its weight decay move them and only the auxiliary tensors learn. p_b = 1 freezes them (the
released code's only mode); p_b = 0 trains everything."""

from __future__ import annotations

import torch
from torch import nn
from transformers import TrainerCallback

from moebert.errors import MoebertError


def masked_step(seed: int, step: int, p_b: float) -> bool:
    """Whether optimiser step `step` drops the central gradients. A draw of its own per (seed, step), so
    a run resumed from a checkpoint continues the very sequence of draws it would have made."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + step)
    return bool(torch.rand((), generator=generator) < p_b)


class CentralGradientMask(TrainerCallback):
    def __init__(self, central: list[nn.Parameter], p_b: float, seed: int):
        if not 0 <= p_b <= 1:
            raise MoebertError(f"gradient mask probability p_b={p_b} must lie in [0, 1]")
        if not central:
            raise MoebertError("a gradient mask needs a model with central tensors (an MPOE student)")
        self.central, self.p_b, self.seed = central, p_b, seed
        self.masked_steps = 0  # of the whole run, resumed parts included (set at its end)

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        # After clipping: the clip norm is that of the whole gradient, as in an unmasked step.
        if masked_step(self.seed, state.global_step, self.p_b):
            for param in self.central:
                param.grad = None  # AdamW skips a parameter without a gradient: no step, no moment, no decay

    def on_train_end(self, args, state, control, **kwargs):
        self.masked_steps = sum(masked_step(self.seed, step, self.p_b) for step in range(state.global_step))
