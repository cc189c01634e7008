"""Cost model of the workflow's jobs: how long and how much memory each job needs, from its work.

A job's seconds on a device kind are

    job_s + rows / tokenizer speed + steps * (accumulation * layers * step_s_per_layer
                                              + params * optimizer_s_per_param) + FLOPs / (GPUs * FLOP/s)

(start-up, tokenizing, a per-step cost: kernel launches and Python per layer in every accumulated
micro-batch, which dominate small batches on a GPU, and AdamW's pass over every parameter, which dominates
them on a CPU; and the arithmetic, which alone is shared by a multi-GPU job's processes). FLOPs are
counted per token from the model's dimensions: a forward costs 2 FLOPs per weight plus the attention scores,
training three forwards' worth; tokens are rows x epochs x the task's typical padded length. The device
speeds come from `config/throughput.yaml`, written by `benchmarks/throughput.py` on the device itself.

Pure functions of dimensions, rows and a device row: the workflow (workflow/lib/jobs.py) turns each job
into its `Work` and sizes its `runtime`, `mem_mb` and `estimate_s` with them; `moebert plan` adds the
estimates up before anything runs."""

from __future__ import annotations

import functools
import math
import os
from dataclasses import dataclass
from pathlib import Path

import yaml

from moebert.errors import MoebertError
from moebert.tasks.base import Task

# Hub models the plan must know without downloading them (dry runs on machines without the hub): the values
# of each one's config.json that its cost depends on, enough to build the config offline and ask its backbone.
# Other models are read from their local config.json.
_BERT_BASE = {"model_type": "bert", "num_hidden_layers": 12, "hidden_size": 768, "intermediate_size": 3072}
_BERT_LARGE = {**_BERT_BASE, "num_hidden_layers": 24, "hidden_size": 1024, "intermediate_size": 4096}
KNOWN_MODELS = {
    "bert-base-uncased": {**_BERT_BASE, "vocab_size": 30522},
    "bert-base-cased": {**_BERT_BASE, "vocab_size": 28996},
    "bert-large-uncased": {**_BERT_LARGE, "vocab_size": 30522},
    "bert-large-cased": {**_BERT_LARGE, "vocab_size": 28996},
    "FacebookAI/roberta-base": {**_BERT_BASE, "model_type": "roberta", "vocab_size": 50265},
    "microsoft/deberta-v3-base": {
        **_BERT_BASE,
        "model_type": "deberta-v2",
        "vocab_size": 128100,
        "relative_attention": True,
        "position_buckets": 256,
        "max_relative_positions": -1,
        "pos_att_type": ["p2c", "c2p"],
    },
    "answerdotai/ModernBERT-base": {
        "model_type": "modernbert",
        "num_hidden_layers": 22,
        "hidden_size": 768,
        "intermediate_size": 1152,  # Wi is 768 x 2304: the activated and the gate half
        "vocab_size": 50368,
    },
}
# Every job tokenizes its rows first, on one host core: 4400 sentence pairs (MRPC) to 17000 single sentences
# (CoLA) a second, measured here with the fast BERT tokenizer; the slower bound.
TOKENIZE_ROWS_PER_S = 4000
MB = 2**20


@dataclass(frozen=True)
class Dims:
    """What a forward costs: layers, hidden size, and the FFN width a token passes through (an MoE layer's
    token sees one expert: its width, not the sum of the experts')."""

    layers: int
    hidden: int
    ffn: int
    vocab: int = 30522  # BERT's uncased word pieces
    moe: bool = False  # its FFNs are experts a router picks from
    stored_ffn: int | None = None  # weights an FFN layer stores (all its experts); None: the dense FFN's
    rebuilt_ffn: int = (
        0  # weights an FFN layer rebuilds every forward (an MPO layer: every expert's matrices)
    )
    ffn_matrices: int = 2  # hidden x ffn matrices of an FFN (the backbone's): 2 for the pair, 3 for a GLU
    relative_scores: int = 0  # attention score columns per token and layer beyond QK^T (DeBERTa's c2p, p2c)

    @property
    def weights(self) -> int:
        """Weights of the encoder layers, as the forward multiplies them (embeddings cost no FLOPs)."""
        return self.layers * (4 * self.hidden**2 + self.ffn_matrices * self.hidden * self.ffn)

    @property
    def params(self) -> int:
        """What the model stores, and the optimiser updates every step: the encoder (every expert of every
        layer) and the word and 512 position embeddings."""
        ffn = self.ffn_matrices * self.hidden * self.ffn if self.stored_ffn is None else self.stored_ffn
        return self.layers * (4 * self.hidden**2 + ffn) + (self.vocab + 512) * self.hidden

    def forward_flops(self, seq: int) -> float:
        """FLOPs per token of one forward at sequence length `seq`: the weights, plus QK^T and the weighted sum
        of the values (2 * seq * hidden each, per layer), plus the relative-position scores (2 * hidden per
        column, per layer). A DeBERTa layer's projection of its relative embeddings, once per forward and
        not per token, is left out: 0.3M FLOPs a token at base size in a batch of 32 x 128 tokens, 2% of
        the 16.1M the layer counts."""
        return 2 * self.weights + (4 * seq + 2 * self.relative_scores) * self.hidden * self.layers


def config_dims(config) -> Dims:
    """The dimensions of a model config, with what its backbone adds to BERT's arithmetic."""
    from moebert.backbones import backbone_of

    backbone = backbone_of(config)
    return Dims(
        config.num_hidden_layers,
        config.hidden_size,
        config.intermediate_size,
        config.vocab_size,
        ffn_matrices=backbone.ffn_matrices,
        relative_scores=backbone.relative_scores(config),
    )


@functools.cache
def model_dims(name_or_path: str) -> Dims:
    """The teacher's dimensions: a known hub name, or the config.json of a local or packaged model."""
    from transformers import AutoConfig

    if name_or_path in KNOWN_MODELS:
        values = dict(KNOWN_MODELS[name_or_path])
        return config_dims(AutoConfig.for_model(values.pop("model_type"), **values))

    from moebert.hub import model_slug
    from moebert.models.loading import resolve_model

    fetched = Path("resources/models") / model_slug(name_or_path)  # fetch_model's copy, in a workflow
    source = str(fetched) if fetched.is_dir() else resolve_model(name_or_path)
    if not Path(source).is_dir():
        raise MoebertError(
            f"plan: dimensions of model '{name_or_path}' are unknown offline; fetch it first "
            f"(resources/models/) or add it to moebert.cost.KNOWN_MODELS"
        )
    return config_dims(AutoConfig.from_pretrained(source))


@dataclass(frozen=True)
class Work:
    """One job's work: optimiser steps (or forward batches) and FLOPs, and the model the steps run through."""

    steps: int = 0
    accum: int = 1  # forward-backward passes (micro-batches) per optimiser step, each launching every layer
    flops: float = 0.0
    layers: int = 0
    train: bool = True
    rows_read: int = 0  # rows tokenized before the first step
    params: int = 0  # parameters the optimiser updates every step (none without training)
    moe: bool = False  # the model routes tokens to experts (slower per FLOP than a dense one: moe_factor)
    teacher_flops: float = 0.0  # distillation's teacher forwards (dense, no grad), beside `flops`
    teacher_layers: int = 0  # the teacher's layers, each forward launching its own kernels every step
    weights: int = 0  # parameters held in memory at once (every model's stored ones: teacher + student)
    activations: float = 0.0  # bytes of activations per step (training keeps them for the backward)
    saves: int = 0  # parameters the job saves at its end (safetensors serialises a copy of them)


def tokens_per_row(task: Task, max_length: int | None, grouped: bool, padded: bool = False) -> int:
    """The typical padded length of a row, capped by the max length: about the mean in length-grouped
    batches, the longest of the batch in random ones, the max length itself when every row is padded to it."""
    cap = max_length or task.max_length
    return cap if padded else min(task.mean_tokens if grouped else task.batch_tokens, cap)


def rows(task: Task, cap: int | None, split: str = "train") -> int:
    total = task.train_rows if split == "train" else task.eval_rows
    return min(total, cap) if cap else total


# An MPO layer's rebuild of its experts' matrices holds the chain's intermediates: about 10 times the rebuilt
# weights in training (kept for the backward), 3 times in inference (einsum temporaries), as
# benchmarks/memory.py measured at MiniLM and BERT-base dimensions (the same multiples at both).
REBUILD_TRAIN, REBUILD_INFER = 10, 3


def activation_bytes(dims: Dims, batch: int, seq: int, backward: bool) -> float:
    """Hidden states, attention probabilities and FFN activations of one step, every layer's where the backward
    needs them and one layer's in a forward alone, and the intermediates of rebuilt weights, 4 bytes each. The
    FFN keeps two tensors of its width per input projection: the pair's W1 output and its activation, a
    GLU's two halves of Wi, the activated half and their product."""
    kept = dims.layers if backward else 1
    rebuilt = dims.layers * dims.rebuilt_ffn * (REBUILD_TRAIN if backward else REBUILD_INFER)
    ffn = 2 * (dims.ffn_matrices - 1) * dims.ffn
    return 4 * (batch * seq * kept * (16 * dims.hidden + ffn + 12 * seq) + rebuilt)


def training_work(
    task: Task,
    dims: Dims,
    rows_: int,
    epochs: float,
    batch: int,
    max_length: int | None,
    teacher: Dims | None = None,
    accum: int = 1,
    sampler: str = "length-grouped",
    padding: str = "dynamic",
) -> Work:
    """Fine-tuning (or, with `teacher`, distillation: a teacher forward beside every student forward).
    `batch` is the total batch of an optimiser step, `accum` the micro-batches it is accumulated from;
    `sampler` and `padding` are the config's (training.sampler, training.padding), which set the padded
    length of a row."""
    seq = tokens_per_row(
        task, max_length, grouped=sampler == "length-grouped", padded=padding == "max-length"
    )
    tokens = rows_ * epochs * seq
    return Work(
        steps=math.ceil(rows_ / batch * epochs),
        accum=accum,
        flops=tokens * 3 * dims.forward_flops(seq),
        layers=dims.layers,
        rows_read=rows_,
        params=dims.params,
        moe=dims.moe,
        teacher_flops=tokens * teacher.forward_flops(seq) if teacher else 0.0,
        teacher_layers=teacher.layers if teacher else 0,
        weights=dims.params + (teacher.params if teacher else 0),
        activations=activation_bytes(dims, batch // accum, seq, backward=True),
        saves=dims.params,
    )


def inference_work(
    task: Task, dims: Dims, rows_: int, batch: int, max_length: int | None, backward: bool = False
) -> Work:
    """Forwards over `rows_` rows (importance adds the backward for its gradients)."""
    seq = tokens_per_row(task, max_length, grouped=False)
    passes = 3 if backward else 1
    return Work(
        steps=math.ceil(rows_ / batch),
        flops=rows_ * seq * passes * dims.forward_flops(seq),
        layers=dims.layers,
        train=backward,
        rows_read=rows_,
        moe=dims.moe,
        weights=dims.params,
        activations=activation_bytes(dims, batch, seq, backward),
    )


def speed_work(models: list[Dims], batch_sizes, seq_lengths, repeats: int, warmup: int = 1) -> Work:
    """moebert speed: every model, every grid point, `repeats` timed and `warmup` untimed forwards; the models
    are loaded one at a time."""
    flops = sum(b * s * d.forward_flops(s) for d in models for b in batch_sizes for s in seq_lengths)
    steps = len(models) * len(batch_sizes) * len(seq_lengths) * (repeats + warmup)
    return Work(
        steps=steps,
        flops=flops * (repeats + warmup),
        layers=max(d.layers for d in models),
        train=False,
        weights=max(d.params for d in models),
    )


@dataclass(frozen=True)
class DeviceSpeed:
    """A device kind's measured (or assumed: see `source`) speeds; CPU rates are per thread."""

    name: str
    source: str
    train_tflops: float
    infer_tflops: float
    train_step_ms_per_layer: float
    infer_step_ms_per_layer: float
    optimizer_ns_per_param: float  # AdamW's update, which reads and writes every parameter each step
    moe_factor: (
        float  # an MoE model's step time over a dense model's of the same FLOPs (routing, small matmuls)
    )
    job_s: float
    per_thread: bool = False

    def seconds(self, work: Work, threads: int = 1, devices: int = 1) -> float:
        """Wall seconds of `work` on `threads` threads (CPU) or `devices` GPUs, one process each. The
        processes split the FLOPs; each still starts up, tokenizes, and runs every step on its share of the
        batch, launching the same kernels and updating every parameter."""
        scale = threads if self.per_thread else 1
        rate = (self.train_tflops if work.train else self.infer_tflops) * 1e12 * scale * devices
        step_ms = self.train_step_ms_per_layer if work.train else self.infer_step_ms_per_layer
        passes = work.steps * work.accum
        compute = (passes * work.layers * step_ms / 1e3 / scale + work.flops / rate) * (
            self.moe_factor if work.moe else 1
        )
        optimizer = work.steps * work.params * self.optimizer_ns_per_param / 1e9 / scale
        teacher = (
            passes * work.teacher_layers * self.infer_step_ms_per_layer / 1e3
            + work.teacher_flops / (self.infer_tflops * 1e12 * devices)
        ) / scale
        return self.job_s + work.rows_read / TOKENIZE_ROWS_PER_S + compute + optimizer + teacher


FIELDS = (
    "source",
    "train_tflops",
    "infer_tflops",
    "train_step_ms_per_layer",
    "infer_step_ms_per_layer",
    "optimizer_ns_per_param",
    "moe_factor",
    "job_s",
)


def load_speeds(path: str | os.PathLike) -> dict[str, DeviceSpeed]:
    """The throughput table: device kind -> speeds. A missing or misspelt field stops with its name."""
    path = Path(path)
    if not path.is_file():
        raise MoebertError(f"throughput table '{path}' does not exist")
    table = yaml.safe_load(path.read_text()) or {}
    speeds = {}
    for kind, entry in table.items():
        if not isinstance(entry, dict):
            raise MoebertError(f"{path}: device kind '{kind}' must map field names to values")
        unknown = set(entry) - {*FIELDS, "per_thread"}
        missing = [f for f in FIELDS if f not in entry]
        if unknown or missing:
            raise MoebertError(
                f"{path}: device kind '{kind}': "
                + "; ".join(
                    filter(
                        None,
                        [
                            unknown and f"unknown field(s) {', '.join(sorted(unknown))}",
                            missing and f"missing field(s) {', '.join(missing)}",
                        ],
                    )
                )
            )
        speeds[kind] = DeviceSpeed(name=kind, **entry)
    return speeds


# Host memory of a process before any model: Python, torch, transformers, datasets and a task's rows (measured
# 560-660 MB on CPU, benchmarks/memory.py; rounded up), and on a GPU node the CUDA libraries and context on the
# host besides (assumed, not measured: no GPU row exists yet).
PROCESS_MB = 800
CUDA_HOST_MB = 2500
# The Snakemake processes that run a job on a cluster node, besides the job's own: the job script's and its
# step's, each holding the workflow (518 MB resident for a dry run of .test/config/config.yaml, rounded up).
SNAKEMAKE_MB = 1000


def memory_mb(work: Work, on_gpu: bool, safety: float, attempt: int = 1, processes: int = 1) -> int:
    """Host memory a job asks for, per node: every process holds the framework, every model's stored weights
    (4 bytes each; on a GPU loaded on the host first) and a copy of what it saves (safetensors serialises one);
    computing on the CPU it holds the gradients and two Adam moments of what it trains (12 bytes each) and the
    activations too; beside them, the Snakemake processes running the job. Times resources.safety and the
    attempt (a job killed for memory asks for more on its retry), rounded up to 500 MB."""
    need = PROCESS_MB * MB + 4 * (work.weights + work.saves)
    if on_gpu:
        need += CUDA_HOST_MB * MB
    else:
        need += (12 * work.params if work.train else 0) + work.activations
    need = need * processes + SNAKEMAKE_MB * MB
    return int(math.ceil(need * safety * attempt / MB / 500) * 500)


def checkpoint_mb(work: Work) -> int:
    """One training checkpoint, as the Trainer writes it: the stored weights (4 bytes each) and the two Adam
    moments of what it trains (8 bytes each); the scheduler's and random states are a few kB."""
    return round((4 * work.saves + 8 * work.params) / MB) if work.train and work.saves else 0


def runtime_minutes(seconds: float, safety: float, attempt: int, floor: int, cap: int) -> int:
    """The wall time a job asks for: the estimate with its safety factor, at least `floor` minutes, times the
    attempt (a job that ran out of time resumes from its checkpoint with more), at most `cap` minutes."""
    return int(min(cap, max(floor, math.ceil(seconds * safety / 60)) * attempt))
