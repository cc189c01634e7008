"""MPOE's gradient mask: masked steps leave the central tensor bit-for-bit unchanged under AdamW with
weight decay, p_b = 0 trains it, and the draws are a function of (seed, step) alone."""

import pytest
import torch
from transformers import TrainerControl, TrainerState, TrainingArguments

from moebert.errors import MoebertError
from moebert.training.gradient_mask import CentralGradientMask, masked_step


def steps(p_b: float, n: int = 6, seed: int = 0):
    """n AdamW steps (weight decay on) of a central and an auxiliary tensor through the callback."""
    torch.manual_seed(0)
    central, aux = torch.nn.Parameter(torch.randn(3, 3)), torch.nn.Parameter(torch.randn(3))
    start = central.detach().clone(), aux.detach().clone()
    opt = torch.optim.AdamW([central, aux], lr=0.1, weight_decay=0.1)
    mask = CentralGradientMask([central], p_b, seed)
    state, history = TrainerState(), []
    for step in range(n):
        state.global_step = step
        before = central.detach().clone()
        ((central @ aux).sum() ** 2).backward()
        mask.on_pre_optimizer_step(TrainingArguments(output_dir="unused"), state, TrainerControl())
        opt.step()
        opt.zero_grad()
        history.append(torch.equal(central.detach(), before))
    return central, aux, start, history, opt


def test_p_b_one_freezes_the_central_tensor_bit_for_bit():
    central, aux, (central0, aux0), unchanged, opt = steps(1.0)
    assert torch.equal(central.detach(), central0) and all(unchanged)
    assert not torch.allclose(aux.detach(), aux0)
    assert central not in opt.state or not opt.state[central]  # no AdamW moments either


def test_p_b_zero_trains_the_central_tensor_every_step():
    _, _, _, unchanged, _ = steps(0.0)
    assert not any(unchanged)


def test_masked_steps_follow_the_seeded_draws():
    _, _, _, unchanged, _ = steps(0.5, n=40, seed=3)
    assert unchanged == [masked_step(3, step, 0.5) for step in range(40)]
    assert 8 < sum(unchanged) < 32  # about half
    assert [masked_step(3, s, 0.5) for s in range(40)] != [masked_step(4, s, 0.5) for s in range(40)]


def test_bad_probability_or_no_central_tensor_is_refused():
    with pytest.raises(MoebertError, match=r"p_b=1.5 must lie in \[0, 1\]"):
        CentralGradientMask([torch.nn.Parameter(torch.zeros(1))], 1.5, 0)
    with pytest.raises(MoebertError, match="needs a model with central tensors"):
        CentralGradientMask([], 0.5, 0)
