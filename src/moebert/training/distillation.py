"""Layer-wise distillation (MoEBERT Eqs. 5-7, docs/method.md §5).

loss = task loss + lambda * (L_trm + L_pred) [+ load_balance * L_balance], with
L_trm the MSE of every hidden state (embedding output and each layer) against the frozen teacher and
L_pred the symmetric KL of the predictions (MSE of the logits for regression; for extractive QA the mean of
the start and the end distributions' symmetric KLs).

A student shallower than its teacher (the half-depth baseline) matches its hidden state j against the
teacher's j * depth ratio; the distillation scope (an ablation) keeps all hidden states, every other one, or
the last one only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from moebert.errors import MoebertError
from moebert.tasks.qa import without_padding
from moebert.training.importance import TARGETS
from moebert.training.trainer import TaskTrainer

SCOPES = ("all", "every-other", "last")


def layer_map(student_layers: int, teacher_layers: int, scope: str = "all") -> list[tuple[int, int]]:
    """(student, teacher) hidden-state indices that L_trm compares; index 0 is the embedding output.

    all          every student hidden state j against the teacher's j * ratio (ratio = teacher / student depth)
    every-other  the even j (the embeddings, layers 2, 4, ...) and always the last layer
    last         only the last layer's
    """
    if teacher_layers % student_layers:
        raise MoebertError(
            f"a student of {student_layers} layers cannot be matched layer-wise to a teacher of "
            f"{teacher_layers}: the depth ratio must be a whole number"
        )
    ratio = teacher_layers // student_layers
    kept = {
        "all": range(student_layers + 1),
        "every-other": sorted({*range(0, student_layers + 1, 2), student_layers}),
        "last": [student_layers],
    }
    if scope not in kept:
        raise MoebertError(f"unknown distillation scope {scope!r}; choose one of {', '.join(SCOPES)}")
    return [(j, j * ratio) for j in kept[scope]]


def hidden_mse(
    student: tuple,
    teacher: tuple,
    attention_mask: torch.Tensor | None,
    pairs: list[tuple[int, int]] | None = None,
) -> torch.Tensor:
    """Sum over the (student, teacher) hidden-state `pairs` (default: all, one to one) of their mean squared
    error. With a mask, padding positions are left out (the reference averages over them too: pass
    attention_mask=None for that)."""
    if pairs is None:
        if len(student) != len(teacher):
            raise MoebertError(
                f"student has {len(student)} hidden states, teacher {len(teacher)}: give a layer map"
            )
        pairs = [(j, j) for j in range(len(student))]
    total = student[0].new_zeros(())
    for s, t in ((student[i], teacher[j]) for i, j in pairs):
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


def span_prediction_loss(student, teacher, attention_mask: torch.Tensor | None) -> torch.Tensor:
    """Extractive QA: the mean of the symmetric KLs of the start and of the end distributions over a window's
    positions; padding positions (attention_mask 0) are no position of the window and are left out."""
    start = symmetric_kl(
        without_padding(student.start_logits, attention_mask),
        without_padding(teacher.start_logits, attention_mask),
    )
    end = symmetric_kl(
        without_padding(student.end_logits, attention_mask),
        without_padding(teacher.end_logits, attention_mask),
    )
    return (start + end) / 2


class DistillationTrainer(TaskTrainer):
    """A Trainer whose loss adds layer-wise distillation from a frozen teacher (Eq. 7): the terms `hidden`
    (L_trm) and `prediction` (L_pred), each weighted by lambda, beside the task (and balance) terms.

    The teacher is an attribute of the trainer, never of the student, so it is not saved in checkpoints; it
    stays in eval mode (no dropout) whatever mode the student is in, or, with `teacher_dropout`, in training
    mode as the reference's teacher is (its dropout on, its weights frozen)."""

    def __init__(
        self,
        *args,
        teacher: nn.Module,
        distill_weight: float,
        scope: str = "all",
        teacher_dropout: bool = False,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        self.teacher = teacher.train(teacher_dropout).requires_grad_(False).to(self.args.device)
        self.distill_weight = distill_weight
        self.pairs = layer_map(self.model.config.num_hidden_layers, teacher.config.num_hidden_layers, scope)

    def loss_terms(self, model, inputs):
        student, terms = super().loss_terms(model, {**inputs, "output_hidden_states": True})
        with torch.no_grad():
            teacher = self.teacher(
                **{k: v for k, v in inputs.items() if k not in TARGETS}, output_hidden_states=True
            )
        mask = self.loss_mask(inputs)
        terms["hidden"] = (
            self.distill_weight,
            hidden_mse(student.hidden_states, teacher.hidden_states, mask, self.pairs),
        )
        if hasattr(student, "start_logits"):
            prediction = span_prediction_loss(student, teacher, mask)
        else:
            prediction = prediction_loss(student.logits, teacher.logits)
        terms["prediction"] = (self.distill_weight, prediction)
        return student, terms
