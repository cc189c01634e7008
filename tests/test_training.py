"""The training loop as the Trainer runs it: what reaches the models, gradient accumulation, loss terms,
divergence, weight decay, devices and which checkpoints may be resumed."""

import itertools
import json
import math
import os
import signal

import pytest
import torch
from conftest import randomize_biases
from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification, TrainerCallback

from moebert.config.options import TrainOptions
from moebert.errors import MoebertError
from moebert.files import write_json
from moebert.hub import PACKAGED_MINILM
from moebert.models.loading import resolve_model
from moebert.students.moe import adapt
from moebert.tasks import data as task_data
from moebert.tasks import get_task, load_split
from moebert.training import time_limit
from moebert.training.distillation import DistillationTrainer
from moebert.training.trainer import (
    FINGERPRINT,
    TaskTrainer,
    TrainConfig,
    checkpoint_dir,
    prepare_checkpoints,
    train,
)

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(resolve_model(PACKAGED_MINILM))


@pytest.fixture(scope="module")
def mrpc_rows(tokenizer, glue_dir):
    """16 real MRPC sentence pairs, tokenised as every stage tokenises them (segment ids 0 and 1)."""
    raw = load_split(get_task("mrpc"), str(glue_dir), "train", max_rows=16, seed=0)
    ds = task_data.tokenize(raw, tokenizer, get_task("mrpc"), 48)
    assert any(1 in row for row in ds["token_type_ids"])
    return ds


def small_bert(vocab_size: int, dropout: float = 0.0, seed: int = 0) -> BertForSequenceClassification:
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=vocab_size,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=64,
        num_labels=2,
        hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=dropout,
    )
    return randomize_biases(BertForSequenceClassification(config), seed)


def moe_student(teacher, expert_dropout: float = 0.0, router: str = "hash-random"):
    orders = [torch.randperm(32, generator=torch.Generator().manual_seed(i)) for i in range(2)]
    student, _ = adapt(
        teacher,
        orders,
        num_experts=2,
        expert_dim=16,
        shared_dim=0,
        router=router,
        expert_dropout=expert_dropout,
    )
    return student


def run_training(model, tmp_path, ds, tokenizer, trainer_cls=TaskTrainer, settings=None, callbacks=(), **kw):
    """`batch_size`: per micro-step (the options' total is it times grad_accum, one process)."""
    run_keys = {k: kw.pop(k) for k in list(kw) if k in TrainConfig.__dataclass_fields__}
    option_keys = {k: kw.pop(k) for k in list(kw) if k in TrainOptions.__dataclass_fields__}
    option_keys = {
        "epochs": 1,
        "lr": 2e-5,
        "batch_size": 8,
        "grad_accum": 1,
        "weight_decay": 0.0,
        **option_keys,
    }
    option_keys["batch_size"] *= option_keys["grad_accum"]
    cfg = TrainConfig(
        TrainOptions(**option_keys), **{"save_minutes": 60, "seed": 0, "logging_steps": 1, **run_keys}
    )
    return train(
        model,
        tmp_path / "out",
        ds,
        task_data.collator(tokenizer),
        tokenizer,
        cfg,
        CPU,
        settings or {},
        trainer_cls=trainer_cls,
        callbacks=callbacks,
        **kw,
    )


class Inputs:
    """Records the keyword inputs of every forward of `module`."""

    def __init__(self, module):
        self.seen = []
        module.register_forward_pre_hook(
            lambda m, args, kwargs: self.seen.append(dict(kwargs)), with_kwargs=True
        )


def by_tokens(ds) -> dict:
    return {tuple(row["input_ids"]): row for row in ds}


def assert_rows_reached(batches: list[dict], ds, keys=("token_type_ids", "attention_mask")):
    """Every row of every recorded batch, padding stripped, is a row of the tokenised dataset, whole."""
    expected = by_tokens(ds)
    rows = 0
    for batch in batches:
        for i in range(len(batch["input_ids"])):
            n = int(batch["attention_mask"][i].sum())
            row = expected[tuple(batch["input_ids"][i, :n].tolist())]
            for key in keys:
                assert batch[key][i, :n].tolist() == row[key], key
            assert not batch["attention_mask"][i, n:].any()
            rows += 1
    assert rows == len(ds)


def test_finetuning_feeds_the_dense_model_every_column(mrpc_rows, tokenizer, tmp_path):
    model = small_bert(tokenizer.vocab_size)
    seen = Inputs(model)
    run_training(model, tmp_path, mrpc_rows, tokenizer, batch_size=8)
    assert len(seen.seen) == 2 and set(seen.seen[0]) >= {
        "input_ids",
        "attention_mask",
        "token_type_ids",
        "labels",
    }
    assert_rows_reached(seen.seen, mrpc_rows)


def test_distillation_feeds_student_and_teacher_the_real_segment_ids(mrpc_rows, tokenizer, tmp_path):
    teacher = small_bert(tokenizer.vocab_size)
    student = moe_student(teacher)
    to_student, to_teacher = Inputs(student), Inputs(teacher)
    run_training(
        student,
        tmp_path,
        mrpc_rows,
        tokenizer,
        trainer_cls=DistillationTrainer,
        teacher=teacher,
        distill_weight=1.0,
    )
    assert len(to_student.seen) == len(to_teacher.seen) == 2
    for key in ("input_ids", "attention_mask", "token_type_ids"):
        for s, t in zip(to_student.seen, to_teacher.seen):
            assert torch.equal(s[key], t[key])
    assert_rows_reached(to_student.seen, mrpc_rows)
    assert "labels" not in to_teacher.seen[0]


def one_step(kind, tokenizer, ds, tmp_path, batch_size, grad_accum):
    """Weights and logged grad norm after one optimiser step."""
    teacher = small_bert(tokenizer.vocab_size)
    if kind == "teacher":
        model, extra = teacher, {}
    else:
        model, extra = (
            moe_student(teacher),
            {
                "trainer_cls": DistillationTrainer,
                "teacher": small_bert(tokenizer.vocab_size, seed=1),
                "distill_weight": 2.0,
            },
        )
    trainer = run_training(
        model,
        tmp_path,
        ds,
        tokenizer,
        batch_size=batch_size,
        grad_accum=grad_accum,
        lr=1e-3,
        weight_decay=0.01,
        **extra,
    )
    assert trainer.state.global_step == 1
    grad_norm = next(log["grad_norm"] for log in trainer.state.log_history if "grad_norm" in log)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}, grad_norm


@pytest.mark.parametrize("kind", ["teacher", "student"])
def test_two_accumulation_steps_equal_one_step_of_twice_the_batch(kind, tokenizer, tmp_path):
    # Rows of one length: per-batch means then average exactly (no padding in the hidden-state MSE).
    ds = task_data.tokenize(_fixed_length_pairs(), tokenizer, get_task("mrpc"), 32)
    assert len({len(ids) for ids in ds["input_ids"]}) == 1
    whole, norm_whole = one_step(kind, tokenizer, ds, tmp_path / "a", batch_size=8, grad_accum=1)
    accumulated, norm_acc = one_step(kind, tokenizer, ds, tmp_path / "b", batch_size=4, grad_accum=2)
    assert norm_acc == pytest.approx(norm_whole, rel=1e-4)
    for key in whole:
        torch.testing.assert_close(accumulated[key], whole[key], rtol=1e-5, atol=1e-6, msg=key)


def _fixed_length_pairs():
    import datasets

    words = ["good", "bad", "fine", "dull", "great", "poor", "nice", "grim"]
    return datasets.Dataset.from_dict(
        {
            "text_a": [" ".join(words[(i + j) % 8] for j in range(6)) for i in range(8)],
            "text_b": [" ".join(words[(3 * i + j) % 8] for j in range(4)) for i in range(8)],
            "label": [i % 2 for i in range(8)],
        }
    )


def test_every_loss_term_is_logged_and_the_loss_is_their_weighted_sum(mrpc_rows, tokenizer, tmp_path):
    teacher = small_bert(tokenizer.vocab_size)
    student = moe_student(small_bert(tokenizer.vocab_size, seed=2), router="gate-token")
    student.config.load_balance = 0.5
    # Two micro-batches per optimiser step: each logged term is their mean, as the logged loss is.
    trainer = run_training(
        student,
        tmp_path,
        mrpc_rows,
        tokenizer,
        trainer_cls=DistillationTrainer,
        teacher=teacher,
        distill_weight=3.0,
        batch_size=4,
        grad_accum=2,
    )
    logs = [log for log in trainer.state.log_history if "loss" in log]
    assert len(logs) == 2
    for log in logs:
        terms = {k: log[f"loss/{k}"] for k in ("task", "hidden", "prediction", "balance")}
        assert all(v > 0 for v in terms.values()), terms
        expected = terms["task"] + 3.0 * (terms["hidden"] + terms["prediction"]) + 0.5 * terms["balance"]
        assert log["loss"] == pytest.approx(expected, rel=1e-3)


def test_the_loss_terms_are_the_distillation_losses_of_the_batch(tokenizer, tmp_path):
    """compute_loss against an independent computation of Eq. 7 on one batch, student != teacher."""
    import torch.nn.functional as F
    from conftest import random_batch
    from transformers import TrainingArguments

    teacher = small_bert(50)
    student = moe_student(small_bert(50, seed=3), router="gate-sentence").eval()
    student.config.load_balance = 0.25
    trainer = DistillationTrainer(
        model=student,
        args=TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none"),
        teacher=teacher,
        distill_weight=2.0,
    )
    batch = random_batch(num_labels=2)
    loss = trainer.compute_loss(student, batch)
    s = student(**batch, output_hidden_states=True)
    t = teacher(**{k: v for k, v in batch.items() if k != "labels"}, output_hidden_states=True)
    mask = batch["attention_mask"].bool()
    hidden = sum(((a - b)[mask] ** 2).mean() for a, b in zip(s.hidden_states, t.hidden_states))
    p, q = t.logits.softmax(-1), s.logits.softmax(-1)
    kl = 0.5 * ((p * (p / q).log()).sum(-1) + (q * (q / p).log()).sum(-1)).mean()
    task = F.cross_entropy(s.logits, batch["labels"])
    assert hidden > 0 and kl > 0 and s.balance_loss > 0
    torch.testing.assert_close(loss, task + 2.0 * (hidden + kl) + 0.25 * s.balance_loss, rtol=1e-5, atol=1e-6)
    loss_too, outputs = trainer.compute_loss(student, batch, return_outputs=True)
    torch.testing.assert_close(loss_too, loss)
    torch.testing.assert_close(outputs.logits, s.logits)
    # The reference's hidden-state MSE averages over padding too.
    trainer.padded_losses = True
    unmasked = sum(F.mse_loss(a, b) for a, b in zip(s.hidden_states, t.hidden_states))
    assert not torch.isclose(unmasked, hidden)
    torch.testing.assert_close(
        trainer.compute_loss(student, batch),
        task + 2.0 * (unmasked + kl) + 0.25 * s.balance_loss,
        rtol=1e-5,
        atol=1e-6,
    )


class PoisonAt(TrainerCallback):
    """Sets one parameter of `module` to NaN when optimiser step `step` begins."""

    def __init__(self, module, step):
        self.module, self.step = module, step

    def on_step_begin(self, args, state, control, **kwargs):
        if state.global_step + 1 == self.step:
            with torch.no_grad():
                next(self.module.parameters()).fill_(float("nan"))


def test_a_non_finite_loss_stops_training_naming_the_step_and_term(mrpc_rows, tokenizer, tmp_path):
    model = small_bert(tokenizer.vocab_size)
    with pytest.raises(
        MoebertError, match=r"loss term 'task' is nan at optimiser step 2 of 4; no model was saved \(a rerun "
    ):
        run_training(model, tmp_path, mrpc_rows, tokenizer, batch_size=4, callbacks=[PoisonAt(model, 2)])


def test_a_diverged_teacher_term_is_named(mrpc_rows, tokenizer, tmp_path):
    teacher = small_bert(tokenizer.vocab_size)
    student = moe_student(small_bert(tokenizer.vocab_size))
    with pytest.raises(MoebertError, match=r"loss term 'hidden', 'prediction' is nan at optimiser step 1 "):
        run_training(
            student,
            tmp_path,
            mrpc_rows,
            tokenizer,
            trainer_cls=DistillationTrainer,
            teacher=teacher,
            distill_weight=1.0,
            callbacks=[PoisonAt(teacher.bert.embeddings, 1)],
        )


def test_weight_decay_falls_on_weight_matrices_only(tokenizer, tmp_path):
    """Dense and MoE models: every weight matrix but no bias and no LayerNorm (one per expert included); MPOE
    students: none of the MPO tensors either (decay on a chain's factors is not decay on its matrix)."""
    from transformers import TrainingArguments

    from moebert.students.mpoe import adapt_mpo

    teacher = small_bert(50)
    student = moe_student(teacher)
    mpoe = adapt_mpo(teacher, num_experts=2, in_factors=[2, 2, 4], out_factors=[2, 4, 4])
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none")
    decayed = {
        id(model): set(TaskTrainer(model=model, args=args).get_decay_parameter_names(model))
        for model in (teacher, student, mpoe)
    }
    matrices = {
        "attention.self.query.weight",
        "attention.self.key.weight",
        "attention.self.value.weight",
        "attention.output.dense.weight",
    }
    layer = "bert.encoder.layer.0."
    outside = {
        "bert.embeddings.word_embeddings.weight",
        "bert.embeddings.position_embeddings.weight",
        "bert.embeddings.token_type_embeddings.weight",
        "bert.pooler.dense.weight",
        "classifier.weight",
    }
    for model, ffn in (
        (teacher, {"intermediate.dense.weight", "output.dense.weight"}),
        (student, {"output.experts.up_proj", "output.experts.down_proj"}),
        (mpoe, {"output.router.gate.weight"}),
    ):
        expected = outside | {f"bert.encoder.layer.{i}.{name}" for i in range(2) for name in matrices | ffn}
        assert decayed[id(model)] == expected
    assert f"{layer}output.w_in.central" in dict(mpoe.named_parameters())


def test_checkpoints_of_other_settings_or_inputs_are_discarded(tmp_path, capsys):
    out = tmp_path / "model"
    ckpt = checkpoint_dir(out)
    settings = {"lr": 1e-5, "inputs": {"teacher": [["model.safetensors", 10, 1]]}, "data": tmp_path / "data"}
    assert prepare_checkpoints(out, settings) is None
    (ckpt / "checkpoint-4").mkdir()
    (ckpt / "checkpoint-4" / "trainer_state.json").write_text("{}")
    assert (
        prepare_checkpoints(out, dict(reversed(settings.items()))) == ckpt / "checkpoint-4"
    )  # any key order
    assert "discarding" not in capsys.readouterr().out
    assert prepare_checkpoints(out, {**settings, "lr": 2e-5}) is None
    log = capsys.readouterr().out
    assert f"discarding checkpoints in {ckpt}: made with other settings (lr changed)" in log
    assert not (ckpt / "checkpoint-4").exists()
    (ckpt / "checkpoint-5").mkdir()
    (ckpt / "checkpoint-5" / "trainer_state.json").write_text("{}")
    assert (
        prepare_checkpoints(
            out, {**settings, "lr": 3e-5, "inputs": {"teacher": [["model.safetensors", 10, 2]]}}
        )
        is None
    )
    assert "(inputs, lr changed)" in capsys.readouterr().out
    assert json.loads((ckpt / "fingerprint.json").read_text())["settings"]["inputs"]["teacher"][0][2] == 2
    # Where and how often it saves does not change what a run computes.
    (ckpt / "checkpoint-5").mkdir()
    (ckpt / "checkpoint-5" / "trainer_state.json").write_text("{}")
    assert (
        prepare_checkpoints(
            out,
            {
                **settings,
                "lr": 3e-5,
                "inputs": {"teacher": [["model.safetensors", 10, 2]]},
                "device": "cuda",
                "save_minutes": 7,
                "logging_steps": 3,
            },
        )
        == ckpt / "checkpoint-5"
    )
    (ckpt / "fingerprint.json").unlink()
    (ckpt / "checkpoint-6").mkdir()
    assert prepare_checkpoints(out, settings) is None
    assert "(no fingerprint)" in capsys.readouterr().out


def test_terms_of_steps_after_the_last_log_stay_out_of_the_run_summary(mrpc_rows, tokenizer, tmp_path):
    trainer = run_training(small_bert(tokenizer.vocab_size), tmp_path, mrpc_rows, tokenizer, logging_steps=3)
    logged = [log["step"] for log in trainer.state.log_history if "loss" in log]
    assert trainer.state.global_step == 2 and logged == [1]  # the first step is always logged
    summary = trainer.state.log_history[-1]
    assert "train_loss" in summary and not any(key.startswith("loss/") for key in summary)


def test_the_trainer_follows_the_paper_recipe(mrpc_rows, tokenizer, tmp_path):
    """docs/method.md §6: AdamW (0.9, 0.999), clipping at 1.0, no warm-up, linear decay to 0; one checkpoint kept."""
    model = small_bert(tokenizer.vocab_size)
    trainer = run_training(
        model,
        tmp_path,
        mrpc_rows,
        tokenizer,
        batch_size=4,
        lr=1e-3,
        weight_decay=0.05,
        save_minutes=0,
        seed=3,
    )
    args = trainer.args
    assert (args.seed, args.per_device_train_batch_size, args.num_train_epochs) == (3, 4, 1)
    assert args.save_strategy == "no" and args.save_total_limit == 1  # CheckpointClock decides when
    assert (args.adam_beta1, args.adam_beta2, args.max_grad_norm, args.warmup_steps) == (0.9, 0.999, 1.0, 0)
    assert args.use_cpu and args.dataloader_num_workers == 0 and args.report_to in ("none", [])
    lrs = [log["learning_rate"] for log in trainer.state.log_history if "learning_rate" in log]
    assert lrs == pytest.approx(
        [1e-3 * (1 - step / 4) for step in range(4)]
    )  # logged before each step's decay
    groups = trainer.optimizer.param_groups
    assert sorted(g["weight_decay"] for g in groups) == [0.0, 0.05] and all(
        g["betas"] == (0.9, 0.999) for g in groups
    )
    assert [p.name for p in checkpoint_dir(tmp_path / "out").glob("checkpoint-*")] == ["checkpoint-4"]


def test_an_unreadable_fingerprint_counts_as_none(tmp_path, capsys):
    out = tmp_path / "model"
    prepare_checkpoints(out, {"lr": 1})
    (checkpoint_dir(out) / "fingerprint.json").write_text('{"fingerp')  # cut off mid-write by a kill
    assert prepare_checkpoints(out, {"lr": 1}) is None
    assert "(no fingerprint); training from scratch" in capsys.readouterr().out


def test_input_identity_is_each_files_size_and_time_without_snakemake_stamps(tmp_path):
    import os

    from moebert.files import identity

    (tmp_path / "model.safetensors").write_bytes(b"1234")
    os.utime(tmp_path / "model.safetensors", ns=(5, 7))
    (tmp_path / ".snakemake_timestamp").write_text("")
    assert identity(tmp_path) == [["model.safetensors", 4, 7]]
    assert identity(tmp_path / "model.safetensors") == [["model.safetensors", 4, 7]]
    assert identity("bert-base-uncased") == "bert-base-uncased"  # a hub id


class KillAt(TrainerCallback):
    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == 3:
            raise KeyboardInterrupt("killed")


def test_a_killed_run_resumes_from_its_last_checkpoint(mrpc_rows, tokenizer, tmp_path, capsys):
    from moebert.training.trainer import discard_checkpoints

    ckpt = checkpoint_dir(tmp_path / "out")
    assert ckpt == tmp_path / "out.checkpoints"
    with pytest.raises(KeyboardInterrupt):
        run_training(
            small_bert(tokenizer.vocab_size),
            tmp_path,
            mrpc_rows,
            tokenizer,
            batch_size=4,
            save_minutes=0,
            callbacks=[KillAt()],
        )
    assert sorted(p.name for p in ckpt.glob("checkpoint-*")) == ["checkpoint-2"]
    capsys.readouterr()
    steps = []
    count = type(
        "Count",
        (TrainerCallback,),
        {"on_step_end": lambda self, a, state, c, **k: steps.append(state.global_step)},
    )
    trainer = run_training(
        small_bert(tokenizer.vocab_size),
        tmp_path,
        mrpc_rows,
        tokenizer,
        batch_size=4,
        save_minutes=0,
        callbacks=[count()],
    )
    assert f"resuming from checkpoint {ckpt / 'checkpoint-2'}\n" in capsys.readouterr().out
    assert steps == [3, 4] and trainer.state.global_step == 4  # steps 1-2 came from the checkpoint
    discard_checkpoints(tmp_path / "out")
    assert not ckpt.exists()


class SigtermAt(TrainerCallback):
    """What SLURM does at --signal time: SIGTERM to the job, here during optimiser step 2."""

    def on_step_begin(self, args, state, control, **kwargs):
        if state.global_step == 1:
            os.kill(os.getpid(), signal.SIGTERM)


def test_sigterm_saves_a_checkpoint_and_stops_then_the_rerun_resumes(mrpc_rows, tokenizer, tmp_path, capsys):
    """The step under way finishes, is checkpointed (whatever the interval), and the run stops with Terminated;
    the rerun resumes from that checkpoint and the handler before training is back."""
    from moebert.tracking import Terminated

    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Terminated, match="terminated at optimiser step 2 of 4, after saving a checkpoint"):
        run_training(
            small_bert(tokenizer.vocab_size),
            tmp_path,
            mrpc_rows,
            tokenizer,
            batch_size=4,
            save_minutes=60,
            callbacks=[SigtermAt()],
        )
    assert signal.getsignal(signal.SIGTERM) == before
    ckpt = tmp_path / "out.checkpoints"
    assert sorted(p.name for p in ckpt.glob("checkpoint-*")) == ["checkpoint-2"]
    assert "SIGTERM: checkpoint at optimiser step 2, then stopping" in capsys.readouterr().out
    trainer = run_training(
        small_bert(tokenizer.vocab_size), tmp_path, mrpc_rows, tokenizer, batch_size=4, save_minutes=60
    )
    assert f"resuming from checkpoint {ckpt / 'checkpoint-2'}" in capsys.readouterr().out
    assert trainer.state.global_step == 4


@pytest.mark.parametrize(
    "text, seconds",
    [
        ("1-02:03:04", 93784),
        ("2:03:04", 7384),
        ("03:04", 184),
        ("0:00", 0),
        ("UNLIMITED", math.inf),
        ("INVALID", None),
    ],
)
def test_squeue_time_left_reads_as_seconds(text, seconds):
    assert time_limit.parse_time_left(text) == seconds


def test_the_time_left_is_this_jobs_from_squeue(tmp_path, monkeypatch, capsys):
    squeue = tmp_path / "squeue"
    squeue.write_text(f'#!/bin/sh\necho "$@" > {tmp_path}/asked\necho 1:00:00\n')
    squeue.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    for name in ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID"):
        monkeypatch.delenv(name, raising=False)
    assert time_limit.seconds_left() == math.inf and not (tmp_path / "asked").exists()  # not a SLURM job
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    assert time_limit.seconds_left() == 3600
    assert (tmp_path / "asked").read_text() == "--noheader --jobs 4242 --format %L\n"
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "4240")  # an array's task: squeue would list the whole array
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "2")
    assert time_limit.seconds_left() == 3600
    assert (tmp_path / "asked").read_text() == "--noheader --jobs 4240_2 --format %L\n"
    squeue.write_text("#!/bin/sh\necho 1:00:00; echo 2:00:00\n")
    assert time_limit.seconds_left() is None  # not one job's answer: not known
    squeue.write_text("#!/bin/sh\nexit 1\n")
    assert time_limit.seconds_left() is None
    assert "no time limit read for SLURM job 4240_2" in capsys.readouterr().err


def test_the_time_left_is_asked_again_every_five_minutes(monkeypatch):
    """The scheduler says 1000 s are left at time 0 (and as many fewer later): with a 180 s margin, time is up
    at 820; squeue is asked at 0, 300 and 819, not at 299, 599 or 820."""
    from moebert.training.trainer import CheckpointClock

    asked = []
    monkeypatch.setattr(time_limit, "seconds_left", lambda: asked.append(now) or 1000 - now)
    clock = CheckpointClock(15, margin_s=180)
    ups = []
    for now in (0, 299, 300, 599, 819, 820):
        ups.append(clock.time_up(now))
    assert ups == [False] * 5 + [True] and asked == [0, 300, 819]


def test_a_deadline_known_survives_a_poll_squeue_does_not_answer(monkeypatch):
    """1000 s left at 0 (time up at 820); at 700 squeue fails: the deadline stays. No limit: never up."""
    from moebert.training.trainer import CheckpointClock

    answers = iter([1000, None, math.inf])
    monkeypatch.setattr(time_limit, "seconds_left", lambda: next(answers))
    clock = CheckpointClock(15, margin_s=180)
    assert [clock.time_up(now) for now in (0, 700, 819, 820)] == [False, False, False, True]
    assert not clock.time_up(10**9)  # polled again: no limit now


def test_the_margin_is_180_s_unless_set_and_at_least_60(monkeypatch):
    monkeypatch.delenv("MOEBERT_SLURM_SIGNAL_S", raising=False)
    assert time_limit.signal_margin_s() == 180
    monkeypatch.setenv("MOEBERT_SLURM_SIGNAL_S", "60")
    assert time_limit.signal_margin_s() == 60
    for wrong in ("59", "2m", ""):
        monkeypatch.setenv("MOEBERT_SLURM_SIGNAL_S", wrong)
        with pytest.raises(
            MoebertError, match=f"MOEBERT_SLURM_SIGNAL_S must be .* at least 60; got '{wrong}'"
        ):
            time_limit.signal_margin_s()


def test_the_margin_before_the_time_limit_saves_a_checkpoint_and_stops(
    mrpc_rows, tokenizer, tmp_path, monkeypatch, capsys
):
    """Under proctrack/cgroup SIGTERM never reaches the training: it stops by itself MOEBERT_SLURM_SIGNAL_S
    before the limit squeue states. 301 s left after step 1, 300 after step 2, margin 300: step 2 is saved
    and the run stops as after SIGTERM; the rerun resumes there."""
    from moebert.tracking import Terminated
    from moebert.training.trainer import CheckpointClock

    monkeypatch.setenv("MOEBERT_SLURM_SIGNAL_S", "300")
    monkeypatch.setattr(CheckpointClock, "POLL_S", 0)
    left = iter([301, 300])
    monkeypatch.setattr(time_limit, "seconds_left", lambda: next(left))
    with pytest.raises(Terminated, match="terminated at optimiser step 2 of 4, after saving a checkpoint"):
        run_training(
            small_bert(tokenizer.vocab_size), tmp_path, mrpc_rows, tokenizer, batch_size=4, save_minutes=60
        )
    assert sorted(p.name for p in (tmp_path / "out.checkpoints").glob("checkpoint-*")) == ["checkpoint-2"]
    assert "300 s before the job's time limit: checkpoint at optimiser step 2, then stopping" in (
        capsys.readouterr().out
    )
    monkeypatch.setattr(time_limit, "seconds_left", lambda: None)
    trainer = run_training(
        small_bert(tokenizer.vocab_size), tmp_path, mrpc_rows, tokenizer, batch_size=4, save_minutes=60
    )
    assert "resuming from checkpoint" in capsys.readouterr().out and trainer.state.global_step == 4


def test_checkpoints_follow_the_clock_not_the_steps(mrpc_rows, tokenizer, tmp_path, monkeypatch):
    """The clock reads 7 minutes later at every look: with a checkpoint every 15 minutes, step 3 is saved (then
    6): only the clock decides; the last checkpoint is kept."""
    from moebert.training import trainer as training

    saved = []
    ticks = iter(range(0, 10**6, 7 * 60))
    monkeypatch.setattr(training, "monotonic", lambda: next(ticks))
    record = type(
        "Saves",
        (TrainerCallback,),
        {"on_save": lambda self, a, state, c, **k: saved.append(state.global_step)},
    )
    run_training(
        small_bert(tokenizer.vocab_size),
        tmp_path,
        mrpc_rows,
        tokenizer,
        batch_size=4,
        epochs=2,
        save_minutes=15,
        callbacks=[record()],
    )
    assert saved == [3, 6] and sorted(
        p.name for p in (tmp_path / "out.checkpoints").glob("checkpoint-*")
    ) == ["checkpoint-6"]


def test_resume_skips_a_checkpoint_cut_off_mid_save(tmp_path):
    from moebert.training.trainer import discard_checkpoints, last_complete_checkpoint

    for step, complete in ((2, True), (10, True), (4, True), (12, False)):
        d = tmp_path / f"checkpoint-{step}"
        d.mkdir()
        if complete:
            (d / "trainer_state.json").write_text("{}")
    assert last_complete_checkpoint(tmp_path) == tmp_path / "checkpoint-10"  # by step, not by name
    assert last_complete_checkpoint(tmp_path / "missing") is None
    discard_checkpoints(tmp_path / "missing")  # nothing to discard is no error


@pytest.mark.parametrize("gpus", [1, 2])
def test_training_refuses_several_gpus_in_one_process(gpus, mrpc_rows, tokenizer, tmp_path, monkeypatch):
    from transformers import Trainer, TrainingArguments

    monkeypatch.setattr(TrainingArguments, "n_gpu", property(lambda self: gpus))
    monkeypatch.setattr(
        Trainer, "train", lambda self, **kwargs: None
    )  # nothing to run on GPUs that are not there
    if gpus == 1:
        run_training(small_bert(tokenizer.vocab_size), tmp_path, mrpc_rows, tokenizer)
        return
    with pytest.raises(
        MoebertError,
        match=r"training sees 2 GPUs in one process: start one process per GPU with `accelerate launch --num_processes 2 ",
    ):
        run_training(small_bert(tokenizer.vocab_size), tmp_path, mrpc_rows, tokenizer)


def test_mixed_precision_flags_reach_the_trainer(mrpc_rows, tokenizer, tmp_path):
    trainer = run_training(small_bert(tokenizer.vocab_size), tmp_path, mrpc_rows, tokenizer, bf16=True)
    assert trainer.args.bf16 is True and trainer.args.fp16 is False


def test_batches_are_grouped_by_length_and_shuffled():
    """The same batches as transformers' length grouping (each within one sorted mega-batch), but in random
    order instead of longest to shortest within every mega-batch."""
    from transformers.trainer_pt_utils import get_length_grouped_indices

    from moebert.training.trainer import ShuffledLengthGroupedSampler

    def batches(order):
        return [tuple(order[i : i + 8]) for i in range(0, len(order), 8)]

    lengths = torch.randint(5, 120, (400,), generator=torch.Generator().manual_seed(0)).tolist()
    torch.manual_seed(1)
    grouped = get_length_grouped_indices(lengths, 8)
    torch.manual_seed(1)
    ours = list(ShuffledLengthGroupedSampler(8, lengths=lengths))
    assert sorted(ours) == list(range(400))
    assert sorted(batches(ours)) == sorted(batches(grouped)) and batches(ours) != batches(grouped)
    longest = [max(lengths[i] for i in batch) for batch in batches(ours)]
    sweeps = sum(
        a >= b for a, b in itertools.pairwise(longest)
    )  # transformers' order: almost all steps go down
    assert sweeps < 0.75 * (len(longest) - 1)
    padded = sum(len(batch) * max(lengths[i] for i in batch) for batch in batches(ours))
    random_batches = batches(torch.randperm(400, generator=torch.Generator().manual_seed(2)).tolist())
    assert padded < 0.7 * sum(len(b) * max(lengths[i] for i in b) for b in random_batches)


def test_training_batches_come_from_the_shuffled_length_sampler(mrpc_rows, tokenizer, tmp_path):
    from moebert.training.trainer import ShuffledLengthGroupedSampler

    trainer = run_training(small_bert(tokenizer.vocab_size), tmp_path, mrpc_rows, tokenizer, batch_size=4)
    sampler = trainer._get_train_sampler()
    assert isinstance(sampler, ShuffledLengthGroupedSampler) and sampler.batch_size == 4


def test_random_sampler_and_max_length_padding_restore_the_reference(mrpc_rows, tokenizer, tmp_path):
    """sampler random: the Trainer's RandomSampler; padding max-length: rows padded to the max length, and the
    hidden-state MSE over every position (the reference's), instead of the real tokens only."""
    from torch.utils.data import RandomSampler

    from moebert.training.distillation import DistillationTrainer, hidden_mse

    trainer = run_training(
        small_bert(tokenizer.vocab_size), tmp_path, mrpc_rows, tokenizer, sampler="random", epochs=0.01
    )
    assert isinstance(trainer._get_train_sampler(), RandomSampler)
    batch = task_data.collator(tokenizer, max_length=64)([mrpc_rows[i] for i in range(3)])
    assert batch["input_ids"].shape == (3, 64) and (batch["attention_mask"] == 0).any()
    teacher = small_bert(tokenizer.vocab_size, seed=1)
    student = small_bert(tokenizer.vocab_size, seed=2).train()
    for padded, mask in ((False, batch["attention_mask"]), (True, None)):
        distiller = DistillationTrainer(
            model=student, args=trainer.args, teacher=teacher, distill_weight=1.0, padded_losses=padded
        )
        torch.manual_seed(0)
        _, terms = distiller.loss_terms(student, dict(batch))
        torch.manual_seed(0)
        s = student(**batch, output_hidden_states=True).hidden_states
        t = teacher(
            **{k: v for k, v in batch.items() if k != "labels"}, output_hidden_states=True
        ).hidden_states
        torch.testing.assert_close(terms["hidden"][1], hidden_mse(s, t, mask))


@pytest.mark.parametrize("teacher_dropout", [False, True])
def test_the_teacher_distils_in_eval_mode_unless_told(teacher_dropout, tokenizer, tmp_path):
    from transformers import TrainingArguments

    from moebert.training.distillation import DistillationTrainer

    teacher = small_bert(tokenizer.vocab_size, dropout=0.5)
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none")
    distiller = DistillationTrainer(
        model=small_bert(tokenizer.vocab_size),
        args=args,
        teacher=teacher,
        distill_weight=1.0,
        teacher_dropout=teacher_dropout,
    )
    assert distiller.teacher.training == teacher_dropout
    assert not any(p.requires_grad for p in distiller.teacher.parameters())


@pytest.mark.parametrize(
    "world, total, accum, expected", [("1", 32, 1, 32), ("2", 32, 1, 16), ("2", 32, 4, 4), ("4", 32, 2, 4)]
)
def test_the_total_batch_is_shared_by_processes_and_accumulation(world, total, accum, expected, monkeypatch):
    from moebert.training.trainer import per_device_batch

    monkeypatch.setenv("WORLD_SIZE", world)
    assert per_device_batch(total, accum) == expected


def test_a_total_batch_that_does_not_divide_is_refused(monkeypatch):
    from moebert.training.trainer import per_device_batch

    monkeypatch.setenv("WORLD_SIZE", "3")
    with pytest.raises(
        MoebertError,
        match="--batch-size 16 does not divide into 3 process\\(es\\) x --grad-accum 2; "
        "choose a total batch that is a multiple of 6",
    ):
        per_device_batch(16, 2)


@pytest.mark.slow
def test_two_processes_share_the_total_batch_and_the_rows(tiny_model_dir, glue_dir, tmp_path):
    """Two real processes (torchrun on CPU, gloo; the workflow's `accelerate launch` sets the same
    WORLD_SIZE/RANK on GPUs) fine-tune: 64 rows at a total batch of 8 take 8 steps. DataParallel-style growth
    (8 per process) would take 4, two processes each training on every row 16."""
    import re
    import subprocess
    import sys

    from moebert.cli import main

    data = tmp_path / "data"
    assert main(["prepare-data", "--task", "mrpc", "--source", str(glue_dir), "--output", str(data)]) == 0
    # The CLI, with the first process slow to prepare the checkpoints and the other checking, when its turn comes,
    # that the first has stamped them: without a barrier between the two this fails every time, not by chance.
    cli = tmp_path / "cli_first_process_slow.py"
    cli.write_text("""import os, sys, time
from moebert.cli import main
from moebert.files import read_json
from moebert.training import trainer

prepare = trainer.prepare_checkpoints

def first_process_slow(output, settings):
    if os.environ["RANK"] == "0":
        time.sleep(1)
    else:
        stamp = read_json(trainer.checkpoint_dir(output) / trainer.FINGERPRINT)
        assert stamp["fingerprint"] != "stale", "rank 1 looked at the checkpoints before rank 0 had prepared them"
    return prepare(output, settings)

trainer.prepare_checkpoints = first_process_slow
sys.exit(main())
""")

    def launch(stage, *args, batch=8):
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--standalone",
                "--nproc_per_node",
                "2",
                str(cli),
                stage,
                "--task",
                "mrpc",
                "--data",
                str(data),
                "--epochs",
                "1",
                "--max-train-samples",
                "64",
                "--max-length",
                "64",
                "--batch-size",
                str(batch),
                "--tracking-uri",
                "none",
                *map(str, args),
            ],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        # torchrun's summary names only the first failure; each process's own traceback is in its "[rankN]:" lines.
        assert proc.returncode == 0, "\n".join(line for line in proc.stderr.splitlines() if "[rank" in line)[
            -8000:
        ]
        assert (
            len(re.findall(r"^trained model -> ", proc.stdout, re.MULTILINE)) == 1
        )  # only the first process saves
        discarded.append(len(re.findall(r"^discarding checkpoints in ", proc.stdout, re.MULTILINE)))
        # The Trainer's progress bar is the one without a description ("tokenizing ...:", "Loading ...:").
        bars = (
            re.match(r"\s*\d+%\|[^|]*\| *\d+/(\d+) \[", part) for part in re.split(r"[\r\n]", proc.stderr)
        )
        return {int(bar.group(1)) for bar in bars if bar}

    discarded = []
    assert launch("finetune", "--model", tiny_model_dir, "--output", tmp_path / "t8") == {8}
    # Stale checkpoints: the first process discards them and stamps the directory before the other looks, so the
    # other finds its own settings there (racing, it would delete the stamp the first is writing).
    write_json(
        checkpoint_dir(tmp_path / "t16") / FINGERPRINT, {"fingerprint": "stale", "settings": {"lr": 1}}
    )
    assert launch("finetune", "--model", tiny_model_dir, "--output", tmp_path / "t16", batch=16) == {4}
    assert discarded == [0, 1]
