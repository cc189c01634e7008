"""Distillation losses: zero for identical models, the symmetric KL against a direct computation."""

import torch
from conftest import random_batch, tiny_bert

from moebert.training.distillation import hidden_mse, prediction_loss, symmetric_kl


def test_losses_are_zero_when_student_equals_teacher():
    model = tiny_bert()
    batch = random_batch()
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    with torch.no_grad():
        out = model(**inputs, output_hidden_states=True)
    assert len(out.hidden_states) == 3  # embedding output + 2 layers
    assert hidden_mse(out.hidden_states, out.hidden_states, batch["attention_mask"]) == 0
    assert hidden_mse(out.hidden_states, out.hidden_states, None) == 0
    assert symmetric_kl(out.logits, out.logits).abs() < 1e-7
    assert prediction_loss(out.logits[:, :1], out.logits[:, :1]) == 0


def test_symmetric_kl_equals_a_direct_computation():
    gen = torch.Generator().manual_seed(0)
    s, t = torch.randn(5, 3, generator=gen), torch.randn(5, 3, generator=gen)
    p, q = t.softmax(-1), s.softmax(-1)
    kl_pq = (p * (p / q).log()).sum(-1).mean()
    kl_qp = (q * (q / p).log()).sum(-1).mean()
    torch.testing.assert_close(symmetric_kl(s, t), 0.5 * (kl_pq + kl_qp))


def test_symmetric_kl_stays_finite_on_extreme_logits():
    s = torch.tensor([[1000.0, -1000.0]])
    t = torch.tensor([[-1000.0, 1000.0]])
    assert torch.isfinite(symmetric_kl(s, t))


def test_hidden_mse_mask_leaves_padding_out():
    s = torch.zeros(1, 3, 2)
    t = torch.zeros(1, 3, 2)
    t[0, 2] = 10.0  # only the padding position differs
    mask = torch.tensor([[1, 1, 0]])
    assert hidden_mse((s,), (t,), mask) == 0
    torch.testing.assert_close(hidden_mse((s,), (t,), None), torch.tensor(100.0 * 2 / 6))


def test_regression_prediction_loss_is_logit_mse():
    torch.testing.assert_close(
        prediction_loss(torch.tensor([[1.0], [3.0]]), torch.tensor([[2.0], [1.0]])), torch.tensor(2.5)
    )


def test_trainer_loss_is_task_loss_when_the_student_is_the_teacher(tmp_path):
    from transformers import TrainingArguments

    from moebert.students.moe import adapt
    from moebert.training.distillation import DistillationTrainer
    from moebert.training.importance import importance_scores, orders

    teacher = tiny_bert()
    student, _ = adapt(
        teacher, orders(importance_scores(teacher, [random_batch()], progress=False)), 1, 64, 0
    )
    trainer = DistillationTrainer(
        model=student.eval(),
        args=TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none"),
        teacher=teacher,
        distill_weight=5.0,
    )
    assert not trainer.teacher.training and not any(p.requires_grad for p in trainer.teacher.parameters())
    batch = random_batch()
    loss = trainer.compute_loss(student, batch)
    torch.testing.assert_close(loss, student(**batch).loss, atol=1e-5, rtol=1e-5)
    trainer.model.train()  # the Trainer switches the student to train mode; the teacher stays in eval mode
    assert not trainer.teacher.training


def test_hidden_mse_refuses_hidden_states_of_other_depths():
    import pytest

    from moebert.errors import MoebertError

    with pytest.raises(MoebertError, match="student has 2 hidden states, teacher 3: give a layer map"):
        hidden_mse((torch.zeros(1, 2, 2),) * 2, (torch.zeros(1, 2, 2),) * 3, None)


def test_layer_maps_of_every_scope_and_depth():
    from moebert.training.distillation import layer_map

    assert layer_map(6, 6) == [(j, j) for j in range(7)]
    assert layer_map(3, 6) == [(0, 0), (1, 2), (2, 4), (3, 6)]  # half depth: student layer i -> teacher 2i
    assert layer_map(6, 6, "every-other") == [(0, 0), (2, 2), (4, 4), (6, 6)]
    assert layer_map(6, 6, "last") == [(6, 6)]
    assert layer_map(3, 6, "last") == [(3, 6)]
    assert layer_map(3, 6, "every-other") == [(0, 0), (2, 4), (3, 6)]  # the last layer always
    import pytest

    from moebert.errors import MoebertError

    with pytest.raises(MoebertError, match="4 layers cannot be matched layer-wise to a teacher of 6"):
        layer_map(4, 6)
    with pytest.raises(
        MoebertError, match="unknown distillation scope 'first'; choose one of all, every-other, last$"
    ):
        layer_map(6, 6, "first")


def test_half_depth_distillation_compares_student_layer_i_with_teacher_layer_2i(tmp_path):
    """The trainer's hidden term for a half-depth student, against the MSE computed by hand."""
    from transformers import TrainingArguments

    from moebert.students.distil_half import distil_half
    from moebert.training.distillation import DistillationTrainer

    teacher = tiny_bert(num_hidden_layers=4, seed=3)
    student, _ = distil_half(teacher)
    with torch.no_grad():  # make the student differ from its initialisation
        for p in student.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    batch = random_batch(seed=6)
    for scope, pairs in (
        ("all", [(0, 0), (1, 2), (2, 4)]),
        ("last", [(2, 4)]),
        ("every-other", [(0, 0), (2, 4)]),
    ):
        trainer = DistillationTrainer(
            model=student.eval(),
            args=TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none"),
            teacher=teacher,
            distill_weight=1.0,
            scope=scope,
        )
        _, terms = trainer.loss_terms(student, batch)
        with torch.no_grad():
            s = student(**batch, output_hidden_states=True).hidden_states
            t = teacher(**batch, output_hidden_states=True).hidden_states
        mask = batch["attention_mask"].unsqueeze(-1).float()
        expected = sum(((s[i] - t[j]) ** 2 * mask).sum() / (mask.sum() * s[i].shape[-1]) for i, j in pairs)
        torch.testing.assert_close(terms["hidden"][1], expected, msg=scope)
