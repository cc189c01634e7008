"""Training through transformers' Trainer, shared by teacher fine-tuning and distillation.

The Trainer brings gradient accumulation, mixed precision, checkpointing and resume. Checkpoints live
beside the final output (`<output>.checkpoints/`), outside what the workflow declares, so a killed job
leaves them in place and its rerun resumes; they are removed once the final model is saved.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import Trainer, TrainingArguments
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR


@dataclass
class TrainConfig:
    epochs: float = 3.0
    lr: float = 2e-5
    batch_size: int = 32
    grad_accum: int = 1
    weight_decay: float = 0.0
    save_steps: int = 200
    logging_steps: int = 10
    seed: int = 0
    fp16: bool = False
    bf16: bool = False


def last_complete_checkpoint(ckpt: Path) -> Path | None:
    """The newest checkpoint the Trainer finished writing. A kill during a save leaves a newer directory
    without trainer_state.json (written last); resuming from it would fail on every rerun."""
    done = [d for d in ckpt.glob(f"{PREFIX_CHECKPOINT_DIR}-*") if (d / "trainer_state.json").is_file()]
    return max(done, key=lambda d: int(d.name.rsplit("-", 1)[1]), default=None)


def checkpoint_dir(output: str | Path) -> Path:
    output = Path(output)
    return output.with_name(output.name + ".checkpoints")


def train(model, output, train_dataset, collator, tokenizer, cfg: TrainConfig, trainer_cls=Trainer, callbacks=(),
          **trainer_kwargs) -> Trainer:
    """Train `model` in place (resuming from `<output>.checkpoints` if a checkpoint is there)."""
    ckpt = checkpoint_dir(output)
    args = TrainingArguments(
        output_dir=str(ckpt),
        num_train_epochs=cfg.epochs,
        learning_rate=cfg.lr,
        per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum,
        weight_decay=cfg.weight_decay,
        # METHOD §6: AdamW (0.9, 0.999), gradient clipping at 1.0, no warm-up, linear decay.
        adam_beta1=0.9,
        adam_beta2=0.999,
        max_grad_norm=1.0,
        warmup_steps=0,
        lr_scheduler_type="linear",
        save_strategy="steps",
        save_steps=cfg.save_steps,
        save_total_limit=1,
        logging_steps=cfg.logging_steps,
        seed=cfg.seed,
        fp16=cfg.fp16,
        bf16=cfg.bf16,
        use_cpu=not torch.cuda.is_available(),
        report_to="none",
        dataloader_num_workers=0,
    )
    trainer = trainer_cls(
        model=model,
        args=args,
        train_dataset=train_dataset,
        data_collator=collator,
        processing_class=tokenizer,
        callbacks=list(callbacks),
        **trainer_kwargs,
    )
    last = last_complete_checkpoint(ckpt)
    if last:
        print(f"resuming from checkpoint {last}", flush=True)
    trainer.train(resume_from_checkpoint=str(last) if last else None)
    return trainer


def discard_checkpoints(output) -> None:
    shutil.rmtree(checkpoint_dir(output), ignore_errors=True)
