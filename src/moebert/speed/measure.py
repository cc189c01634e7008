"""`moebert speed`: inference latency and throughput of the teacher (dense BERT), MoEBERT and the
dense-narrow control (a dense BERT whose FFN has the expert width, the speed a MoE cannot beat; docs/method.md §7),
over batch sizes and sequence lengths, on CPU with a fixed thread count or on GPU.

Timings use random token ids: a forward's cost does not depend on the text, except through the MoE's
per-expert loads, which random ids keep about even. So speed needs no data and, with `--random`, no
trained weights either. The command loads one model at a time (a job may time a dozen trained students)
and times its whole grid, its reference-style twin beside it; `measure` itself lets the models it is given
take turns within every repetition (benchmarks/moe_speed.py), so a burst of load hits all of them alike.

Outputs: a CSV with one row per (model, sequence length, batch size) and, beside it, a JSON with the
same rows, every single timing, the settings and the hardware; `moebert report --speed` plots them.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import inspect
import logging
import os
import platform
import time
from pathlib import Path

import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm
from transformers import AutoConfig

from moebert import tracking
from moebert.backbones import backbone_of
from moebert.device import DEVICE_HELP, cpu_model, resolve_device
from moebert.errors import MoebertError
from moebert.files import atomic_file, write_json
from moebert.models.bert_experts import IMPLEMENTATIONS
from moebert.models.loading import load_model, parameter_counts, resolve_model
from moebert.models.modeling import MOE_HEADS, MoEConfigMixin
from moebert.models.routing import ROUTERS
from moebert.speed import COLUMNS
from moebert.speed.reference_style import reference_style

log = logging.getLogger(__name__)

# Dimensions for models with random weights: a config's values, of its `model_type` (BERT without one); any
# model dir or hub id works too (its config's values). The hub models' published config.json values.
PRESETS = {
    "bert-base": {},  # BertConfig's defaults are BERT-base
    "minilm": {
        "hidden_size": 384,
        "num_hidden_layers": 6,
        "num_attention_heads": 12,
        "intermediate_size": 1536,
    },
    "deberta-v3-base": {
        "model_type": "deberta-v2",
        "vocab_size": 128100,
        "hidden_size": 768,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "intermediate_size": 3072,
        "hidden_act": "gelu",
        "max_position_embeddings": 512,
        "type_vocab_size": 0,
        "layer_norm_eps": 1e-7,
        "relative_attention": True,
        "position_buckets": 256,
        "max_relative_positions": -1,
        "pos_att_type": ["p2c", "c2p"],
        "share_att_key": True,
        "position_biased_input": False,
        "norm_rel_ebd": "layer_norm",
        "pad_token_id": 0,
    },
    "modernbert-base": {
        "model_type": "modernbert",
        "vocab_size": 50368,
        "hidden_size": 768,
        "num_hidden_layers": 22,
        "num_attention_heads": 12,
        "intermediate_size": 1152,
        "hidden_activation": "gelu",
        "max_position_embeddings": 8192,
        "global_attn_every_n_layers": 3,
        "local_attention": 128,
        "norm_eps": 1e-5,
        "norm_bias": False,
        "attention_bias": False,
        "mlp_bias": False,
        "pad_token_id": 50283,
        "bos_token_id": 50281,
        "eos_token_id": 50282,
        "cls_token_id": 50281,
        "sep_token_id": 50282,
    },
}
# What a model dir's config holds beyond its dimensions.
NOT_DIMENSIONS = (
    "architectures",
    "id2label",
    "label2id",
    "num_labels",
    "problem_type",
    "finetuning_task",
    "auto_map",
    "transformers_version",
    "_name_or_path",
    "dtype",
    "torch_dtype",
    "model_type",
)
RANDOM_MODELS = ("teacher", "moebert", "moebert-tied", "dense-narrow")
# Those of RANDOM_MODELS with MoE layers: `--reference` times each beside its reference-style twin.
RANDOM_MOE = ("moebert", "moebert-tied")
REFERENCE_SUFFIX = "-reference"


# ---------------------------------------------------------------------------------------------
# Models


def dimensions(spec: str) -> tuple[str, dict]:
    """(name, config values with their model_type) of a preset, a model dir or a hub id."""
    if spec in PRESETS:
        return spec, dict(PRESETS[spec])
    try:
        config = AutoConfig.from_pretrained(resolve_model(spec))
    except OSError as err:
        raise MoebertError(
            f"--random {spec!r} is neither a preset ({', '.join(PRESETS)}) nor a loadable model config: {err}"
        ) from err
    backbone = backbone_of(config)  # an architecture without MoE classes is refused here
    # A saved MoE student's dimensions are its dense backbone's: its own MoE settings are left out (the random
    # models set theirs).
    moe_keys = set(inspect.signature(MoEConfigMixin.__init__).parameters)
    values = {k: v for k, v in config.to_diff_dict().items() if k not in NOT_DIMENSIONS and k not in moe_keys}
    return spec, {"model_type": backbone.model_types[0], **values}


def _config(dims: dict, **changes):
    """The dense config of `dims` (a preset's values), with `changes`."""
    values = {**dims, **changes}
    return AutoConfig.for_model(values.pop("model_type", "bert"), **values)


def random_models(
    dims: dict,
    names=RANDOM_MODELS,
    num_experts: int = 4,
    expert_dim: int | None = None,
    router: str = "hash-random",
    seed: int = 0,
) -> dict[str, nn.Module]:
    """Models with random weights and the given dimensions (of their backbone): the dense teacher, MoEBERT (experts of
    `expert_dim`, default a 1/num_experts share of the FFN, two thirds of them shared as in the paper's 512
    of 768) with the shared neurons copied into every expert or tied (stored once), and the dense-narrow
    control (FFN width expert_dim)."""
    dense = _config(dims)
    teacher = backbone_of(dense).heads["classification"]
    moe_class = MOE_HEADS[teacher]
    width = expert_dim or dense.intermediate_size // num_experts
    moe = {"num_experts": num_experts, "expert_dim": width, "shared_dim": 2 * width // 3, "router": router}
    values = {k: v for k, v in dims.items() if k != "model_type"}
    build = {
        "teacher": lambda: teacher(_config(dims)),
        "moebert": lambda: moe_class(moe_class.config_class(**values, **moe)),
        "moebert-tied": lambda: moe_class(moe_class.config_class(**values, **moe, shared="tied")),
        "dense-narrow": lambda: teacher(_config(dims, intermediate_size=width)),
    }
    models = {}
    for name in names:
        torch.manual_seed(seed)
        models[name] = build[name]().eval()
    return models


def parse_model_spec(spec: str) -> tuple[str, str]:
    label, sep, path = spec.partition("=")
    if not sep or not label or not path:
        raise MoebertError(f"--model {spec!r}: expected LABEL=DIR, e.g. teacher=results/teacher/rte/seed0")
    return label, path


# ---------------------------------------------------------------------------------------------
# Measuring


def random_inputs(batch_size: int, seq_len: int, vocab_size: int, device, seed: int = 0) -> dict:
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(vocab_size, (batch_size, seq_len), generator=gen)
    return {"input_ids": ids.to(device), "attention_mask": torch.ones_like(ids).to(device)}


def _check_lengths(models: dict, seq_lengths) -> None:
    for label, model in models.items():
        limit = model.config.max_position_embeddings
        if max(seq_lengths) > limit:
            raise MoebertError(
                f"sequence length {max(seq_lengths)} exceeds model {label!r}'s "
                f"max_position_embeddings {limit}; choose --seq-lengths up to {limit}"
            )


def measure(
    models: dict[str, nn.Module],
    batch_sizes,
    seq_lengths,
    repeats: int = 5,
    warmup: int = 1,
    device: str | torch.device = "cpu",
    seed: int = 0,
    progress: bool = True,
) -> pd.DataFrame:
    """Seconds per forward: one row per (model, seq_len, batch_size, repeat). The models run on the same
    inputs in a rotating order within every repetition, after `warmup` untimed forwards each."""
    _check_lengths(models, seq_lengths)
    device = torch.device(device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    labels = list(models)
    vocab = min(model.config.vocab_size for model in models.values())
    rows = []
    grid = [(seq, batch) for seq in seq_lengths for batch in batch_sizes]
    with torch.inference_mode():
        for seq, batch in tqdm(grid, desc="speed", disable=not progress):
            inputs = random_inputs(batch, seq, vocab, device, seed)
            for model in models.values():
                for _ in range(warmup):
                    model(**inputs)
            for r in range(repeats):
                for label in labels[r % len(labels) :] + labels[: r % len(labels)]:
                    sync()
                    start = time.perf_counter()
                    models[label](**inputs)
                    sync()
                    rows.append(
                        {
                            "model": label,
                            "seq_len": seq,
                            "batch_size": batch,
                            "repeat": r,
                            "seconds": time.perf_counter() - start,
                        }
                    )
    return pd.DataFrame(rows)


def summarise(timings: pd.DataFrame) -> pd.DataFrame:
    """Latency (ms: median, p90, min, max) and throughput (examples/s at the median) per model and grid point."""
    ms = timings.assign(ms=timings.seconds * 1e3).groupby(["model", "seq_len", "batch_size"], sort=False).ms
    table = ms.agg(
        repeats="count", latency_ms_median="median", latency_ms_min="min", latency_ms_max="max"
    ).reset_index()
    table["latency_ms_p90"] = ms.quantile(0.9).to_numpy()
    table["examples_per_s"] = table.batch_size / table.latency_ms_median * 1e3
    return table


def hardware(device: torch.device) -> dict:
    """What the timings ran on; the thread count is torch's, i.e. what --threads set."""
    info = {
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "device": str(device),
    }
    if device.type == "cuda":
        info.update(gpu=torch.cuda.get_device_name(device), cuda=torch.version.cuda)
    return info


# ---------------------------------------------------------------------------------------------
# Command

HELP = "latency and throughput of dense, MoE and dense-narrow models"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    models = parser.add_argument_group("models (at least one of --model, --random)")
    models.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="LABEL=DIR",
        help="a trained model and its label, e.g. teacher=results/teacher/rte/seed0 (repeatable; "
        "label = the method name in metrics.json, for the accuracy-vs-latency plot)",
    )
    models.add_argument(
        "--random",
        metavar="DIMS",
        help=f"also time models with random weights and these dimensions: a preset "
        f"({', '.join(PRESETS)}), a model dir or a hub id",
    )
    models.add_argument(
        "--random-models",
        nargs="+",
        choices=RANDOM_MODELS,
        default=list(RANDOM_MODELS),
        help="which random models (default: all)",
    )
    models.add_argument("--num-experts", type=int, default=4, help="experts of the random MoEBERT")
    models.add_argument(
        "--expert-dim",
        type=int,
        help="expert width of the random MoEBERT and the dense-narrow control (default: FFN width / experts)",
    )
    models.add_argument(
        "--router", choices=ROUTERS, default="hash-random", help="router of the random MoEBERT"
    )
    models.add_argument(
        "--reference",
        action="store_true",
        help="also time every MoE model with the reference-style forward (label <model>-reference)",
    )
    grid = parser.add_argument_group("grid")
    grid.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 32, 128])
    grid.add_argument("--seq-lengths", type=int, nargs="+", default=[64, 128, 256])
    grid.add_argument("--repeats", type=int, default=5, help="timed forwards per model and grid point")
    grid.add_argument("--warmup", type=int, default=1, help="untimed forwards per model and grid point first")
    hw = parser.add_argument_group("hardware")
    hw.add_argument("--device", default="auto", help=DEVICE_HELP + " (or cuda:N)")
    hw.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), default="float32")
    hw.add_argument(
        "--experts-implementation",
        choices=("auto", *IMPLEMENTATIONS),
        default="auto",
        help="how the MoE models compute their experts: auto, the fastest on the device, or one of "
        "transformers' experts implementations",
    )
    hw.add_argument("--threads", type=int, help="CPU threads (default: torch's default, all cores)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights and token ids")
    parser.add_argument("--output", required=True, help="CSV of the results; the JSON goes beside it (.json)")
    tracking.add_tracking_arguments(parser)


def run(args: argparse.Namespace) -> None:
    for n in args.batch_sizes + args.seq_lengths + [args.repeats]:
        if n < 1:
            raise MoebertError(f"batch sizes, sequence lengths and --repeats must be positive, got {n}")
    if not args.model and not args.random:
        raise MoebertError("nothing to time: give --model LABEL=DIR and/or --random DIMS")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    loaders, sources = _model_loaders(args)
    timings, params = [], {}
    with tracking.tracked_run(args, _run_params(args)) as run_handle:
        # One model in memory at a time (a job may time a dozen trained students): each times its whole grid,
        # with its reference-style twin beside it.
        for label, load in loaders.items():
            model = load().to(device=device, dtype=getattr(torch, args.dtype))
            if getattr(model.config, "ffn", None) == "moe":
                model.set_experts_implementation(args.experts_implementation, device)
            timed = {label: model}
            params[label] = parameter_counts(model)
            with contextlib.ExitStack() as stack:
                if args.reference and hasattr(model, "moe_layers"):
                    reference = label + REFERENCE_SUFFIX
                    timed[reference] = stack.enter_context(reference_style(copy.deepcopy(model)))
                    sources[reference], params[reference] = sources[label], params[label]
                timings.append(
                    measure(
                        timed,
                        args.batch_sizes,
                        args.seq_lengths,
                        args.repeats,
                        args.warmup,
                        device,
                        args.seed,
                    )
                )
            del model, timed
        timings = pd.concat(timings, ignore_index=True)
        table = _results_table(timings, sources, params, device, args)
        _write_results(args.output, table, timings, hardware(device), args)
        if run_handle is not None:
            run_handle.log_metrics(
                {
                    f"latency_ms/{r.model}/b{r.batch_size}_s{r.seq_len}": r.latency_ms_median
                    for r in table.itertuples()
                }
            )
            run_handle.log_artifact(args.output)
    print(
        table[
            ["model", "seq_len", "batch_size", "latency_ms_median", "latency_ms_p90", "examples_per_s"]
        ].to_string(index=False, float_format=lambda v: f"{v:.1f}")
    )


def _model_loaders(args) -> tuple[dict, dict[str, tuple[str, str]]]:
    """A function loading each model by label, and each label's (weights, source); nothing is loaded yet."""
    loaders, sources = {}, {}
    for spec in args.model:
        label, path = parse_model_spec(spec)
        if label in loaders:
            raise MoebertError(f"--model label {label!r} is given twice")
        loaders[label], sources[label] = (lambda path=path: load_model(path).eval()), ("trained", path)
    if args.random:
        name, dims = dimensions(args.random)
        for label in args.random_models:
            if label in loaders:
                raise MoebertError(
                    f"label {label!r} is both a --model and a --random model; label the trained "
                    f"one differently or leave {label} out of --random-models"
                )
            loaders[label] = lambda label=label: random_models(
                dims, [label], args.num_experts, args.expert_dim, args.router, args.seed
            )[label]
            sources[label] = ("random", name)
    return loaders, sources


def _run_params(args) -> dict:
    return {k: v for k, v in vars(args).items() if k != "func" and k not in tracking.OPTION_DESTS}


def _results_table(timings, sources, params, device, args) -> pd.DataFrame:
    table = summarise(timings)
    table["weights"] = table.model.map(lambda label: sources[label][0])
    table["source"] = table.model.map(lambda label: sources[label][1])
    table["params_total"] = table.model.map(lambda label: params[label]["total"])
    table["params_effective"] = table.model.map(lambda label: params[label]["effective"])
    table = table.assign(device=str(device), dtype=args.dtype, threads=torch.get_num_threads())
    return table[COLUMNS]


def _write_results(output: str, table: pd.DataFrame, timings: pd.DataFrame, hw: dict, args) -> None:
    output = Path(output)
    settings = {
        key: getattr(args, key)
        for key in (
            "batch_sizes",
            "seq_lengths",
            "repeats",
            "warmup",
            "dtype",
            "seed",
            "random",
            "num_experts",
            "expert_dim",
            "router",
        )
    }
    write_json(
        output.with_suffix(".json"),
        {
            "hardware": hw,
            "settings": settings,
            "results": table.to_dict(orient="records"),
            "timings": timings.to_dict(orient="records"),
        },
    )
    with atomic_file(output) as tmp:
        table.round(4).to_csv(tmp, index=False)
