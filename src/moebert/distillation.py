"""Layer-wise distillation (MoEBERT Eqs. 5-7, METHOD §5).

loss = task loss + lambda * (L_trm + L_pred) [+ load_balance * L_balance], with
L_trm the MSE of every hidden state (embedding output and each layer) against the frozen teacher and
L_pred the symmetric KL of the predictions (MSE of the logits for regression).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .training import TaskTrainer


def hidden_mse(student: tuple, teacher: tuple, attention_mask: torch.Tensor | None) -> torch.Tensor:
    """Sum over hidden states of their mean squared error. With a mask, padding positions are left out
    (the reference averages over them too: pass attention_mask=None for that)."""
    total = student[0].new_zeros(())
    for s, t in zip(student, teacher, strict=True):
        if attention_mask is None:
            total = total + F.mse_loss(s, t)
        else:
            mask = attention_mask.unsqueeze(-1).to(s.dtype)
            total = total + ((s - t) ** 2 * mask).sum() / (mask.sum() * s.shape[-1])
    return total


def symmetric_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """0.5 * (KL(p||q) + KL(q||p)) at temperature 1, batch mean; log_softmax keeps it finite where the
    reference's log(softmax) can produce NaN."""
    log_q = F.log_softmax(student_logits, dim=-1)
    log_p = F.log_softmax(teacher_logits, dim=-1)
    kl_pq = F.kl_div(log_q, log_p, log_target=True, reduction="batchmean")
    kl_qp = F.kl_div(log_p, log_q, log_target=True, reduction="batchmean")
    return 0.5 * (kl_pq + kl_qp)


def prediction_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    if student_logits.shape[-1] == 1:
        return F.mse_loss(student_logits, teacher_logits)
    return symmetric_kl(student_logits, teacher_logits)


class DistillationTrainer(TaskTrainer):
    """A Trainer whose loss adds layer-wise distillation from a frozen teacher (Eq. 7): the terms `hidden`
    (L_trm) and `prediction` (L_pred), each weighted by lambda, beside the task (and balance) terms.

    The teacher is an attribute of the trainer, never of the student, so it is not saved in checkpoints,
    and it stays in eval mode (no dropout) whatever mode the student is in."""

    def __init__(self, *args, teacher: nn.Module, distill_weight: float, mask_padding: bool = True, **kwargs):
        super().__init__(*args, **kwargs)
        self.teacher = teacher.eval().requires_grad_(False).to(self.args.device)
        self.distill_weight = distill_weight
        self.mask_padding = mask_padding

    def loss_terms(self, model, inputs):
        student, terms = super().loss_terms(model, {**inputs, "output_hidden_states": True})
        with torch.no_grad():
            teacher = self.teacher(**{k: v for k, v in inputs.items() if k != "labels"}, output_hidden_states=True)
        mask = inputs.get("attention_mask") if self.mask_padding else None
        terms["hidden"] = (self.distill_weight, hidden_mse(student.hidden_states, teacher.hidden_states, mask))
        terms["prediction"] = (self.distill_weight, prediction_loss(student.logits, teacher.logits))
        return student, terms
