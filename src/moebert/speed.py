"""`moebert speed`: inference latency and throughput of the teacher (dense BERT), MoEBERT and the
dense-narrow control (a dense BERT whose FFN has the expert width, the speed a MoE cannot beat; METHOD §7),
over batch sizes and sequence lengths, on CPU with a fixed thread count or on GPU; and the speed plots.

Timings use random token ids: a forward's cost does not depend on the text, except through the MoE's
per-expert loads, which random ids keep about even. So speed needs no data and, with `--random`, no
trained weights either. Models take turns within every repetition, so a burst of load on a shared
machine hits all of them alike.

Outputs: a CSV with one row per (model, sequence length, batch size) and, beside it, a JSON with the
same rows, every single timing, the settings and the hardware.

Also here: the reference-style MoE forward (`reference_style`), the peer the fast forward of
moe_layer.py is benchmarked against (benchmarks/moe_speed.py).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import logging
import os
import platform
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm
from transformers import AutoConfig, BertConfig, BertForSequenceClassification

from . import tracking
from .device import DEVICE_HELP, resolve_device
from .errors import MoebertError
from .files import atomic_file, write_json
from .modeling import (
    MoEBertConfig,
    MoEBertForSequenceClassification,
    load_model,
    parameter_counts,
    resolve_model,
)
from .moe_layer import MoEFFN
from .routing import HASH_ROUTERS, ROUTERS

log = logging.getLogger(__name__)

# Dimensions for models with random weights; any model dir or hub id works too (its config's dimensions).
PRESETS = {
    "bert-base": {},  # BertConfig's defaults are BERT-base
    "minilm": {"hidden_size": 384, "num_hidden_layers": 6, "num_attention_heads": 12, "intermediate_size": 1536},
}
DIMENSIONS = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
              "hidden_act", "max_position_embeddings", "type_vocab_size", "layer_norm_eps")
RANDOM_MODELS = ("teacher", "moebert", "dense-narrow")
TEACHER = "teacher"
REFERENCE_SUFFIX = "-reference"
PARETO_POINT = (1, 128)  # the paper's speed setting: batch size 1, length 128 (METHOD §8)
COLUMNS = ["model", "weights", "source", "device", "dtype", "threads", "seq_len", "batch_size", "repeats",
           "latency_ms_median", "latency_ms_p90", "latency_ms_min", "latency_ms_max", "examples_per_s",
           "params_total", "params_effective"]


# ---------------------------------------------------------------------------------------------
# The reference-style MoE forward

def _reference_ffn_forward(layer: MoEFFN, routes, hidden_states: torch.Tensor,
                           input_tensor: torch.Tensor) -> torch.Tensor:
    """The reference implementation's grouped forward, from its description: in every layer look the
    routes up, argsort them, gather the tokens in expert order, split them (a host sync for the sizes),
    run each expert, stack the results into a new tensor and gather them back with a second argsort.
    Each expert is MoEFFN.expert, the per-expert arithmetic of the fast forward's usual layout, so
    only the grouping and the data movement differ."""
    expert_ids, scale = routes(hidden_states)
    x = hidden_states.reshape(-1, hidden_states.shape[-1])
    order = expert_ids.argsort()
    sizes = torch.bincount(expert_ids, minlength=layer.num_experts).tolist()
    groups = x[order].split(sizes)
    y = torch.vstack([layer.expert(e, tokens) for e, tokens in enumerate(groups)])
    y = y[order.argsort()]
    if scale is not None:
        y = y * scale.unsqueeze(-1)
    return layer.LayerNorm(layer.dropout(y.view_as(hidden_states)) + input_tensor)


def _gate_routes(layer: MoEFFN):
    """A gate's expert per token and its probability. The gate decides as in the fast forward; its
    grouping is undone here so that the reference-style forward can group again its own way."""

    def routes(hidden_states):
        dispatch, layer.balance_loss = layer.router(hidden_states, layer.attention_mask)
        counts = torch.tensor(dispatch.counts, device=hidden_states.device)
        expert_ids = torch.empty_like(dispatch.order)
        expert_ids[dispatch.order] = torch.repeat_interleave(torch.arange(len(counts), device=counts.device), counts)
        return expert_ids, dispatch.scale

    return routes


@contextlib.contextmanager
def reference_style(model: MoEBertForSequenceClassification):
    """Within the block, `model` runs the reference-style forward in every MoE layer (same outputs).

    Hash routes are then looked up per layer from the input ids, as the reference does, instead of
    once per forward: the model's forward is swapped too, to hand the ids down and skip its own routing.
    """
    layers = model.moe_layers()
    if model.config.router in HASH_ROUTERS:
        ids = {}

        def model_forward(input_ids=None, **kwargs):
            ids["flat"] = input_ids.reshape(-1)
            return BertForSequenceClassification.forward(model, input_ids=input_ids, **kwargs)

        model.forward = model_forward
        routes = [lambda _, i=i: (model.hash_table[i][ids["flat"]], None) for i in range(len(layers))]
    else:
        routes = [_gate_routes(layer) for layer in layers]
    for layer, layer_routes in zip(layers, routes):
        layer.forward = lambda h, r, layer=layer, f=layer_routes: _reference_ffn_forward(layer, f, h, r)
    try:
        yield model
    finally:
        for module in (model, *layers):
            module.__dict__.pop("forward", None)


# ---------------------------------------------------------------------------------------------
# Models

def dimensions(spec: str) -> tuple[str, dict]:
    """(name, BertConfig dimensions) of a preset, a model dir or a hub id."""
    if spec in PRESETS:
        return spec, dict(PRESETS[spec])
    try:
        config = AutoConfig.from_pretrained(resolve_model(spec))
    except OSError as err:
        raise MoebertError(f"--random {spec!r} is neither a preset ({', '.join(PRESETS)}) nor a loadable "
                           f"model config: {err}") from err
    return spec, {key: getattr(config, key) for key in DIMENSIONS}


def random_models(dims: dict, names=RANDOM_MODELS, num_experts: int = 4, expert_dim: int | None = None,
                  router: str = "hash-random", seed: int = 0) -> dict[str, nn.Module]:
    """Models with random weights and the given dimensions: the dense teacher, MoEBERT (experts of
    `expert_dim`, default a 1/num_experts share of the FFN) and the dense-narrow control (FFN width
    expert_dim)."""
    width = expert_dim or BertConfig(**dims).intermediate_size // num_experts
    build = {
        "teacher": lambda: BertForSequenceClassification(BertConfig(**dims)),
        "moebert": lambda: MoEBertForSequenceClassification(MoEBertConfig(
            **dims, num_experts=num_experts, expert_dim=width, shared_dim=0, router=router)),
        "dense-narrow": lambda: BertForSequenceClassification(BertConfig(**{**dims, "intermediate_size": width})),
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
            raise MoebertError(f"sequence length {max(seq_lengths)} exceeds model {label!r}'s "
                               f"max_position_embeddings {limit}; choose --seq-lengths up to {limit}")


def measure(models: dict[str, nn.Module], batch_sizes, seq_lengths, repeats: int = 5, warmup: int = 1,
            device: str | torch.device = "cpu", seed: int = 0, progress: bool = True) -> pd.DataFrame:
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
                for label in labels[r % len(labels):] + labels[:r % len(labels)]:
                    sync()
                    start = time.perf_counter()
                    models[label](**inputs)
                    sync()
                    rows.append({"model": label, "seq_len": seq, "batch_size": batch, "repeat": r,
                                 "seconds": time.perf_counter() - start})
    return pd.DataFrame(rows)


def summarise(timings: pd.DataFrame) -> pd.DataFrame:
    """Latency (ms: median, p90, min, max) and throughput (examples/s at the median) per model and grid point."""
    ms = timings.assign(ms=timings.seconds * 1e3).groupby(["model", "seq_len", "batch_size"], sort=False).ms
    table = ms.agg(repeats="count", latency_ms_median="median", latency_ms_min="min",
                   latency_ms_max="max").reset_index()
    table["latency_ms_p90"] = ms.quantile(0.9).to_numpy()
    table["examples_per_s"] = table.batch_size / table.latency_ms_median * 1e3
    return table


def hardware(device: torch.device) -> dict:
    """What the timings ran on; the thread count is torch's, i.e. what --threads set."""
    info = {"cpu": _cpu_model(), "cpu_count": os.cpu_count(), "threads": torch.get_num_threads(),
            "platform": platform.platform(), "torch": torch.__version__, "device": str(device)}
    if device.type == "cuda":
        info.update(gpu=torch.cuda.get_device_name(device), cuda=torch.version.cuda)
    return info


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    return platform.processor() or platform.machine()


# ---------------------------------------------------------------------------------------------
# Command

def add_arguments(parser: argparse.ArgumentParser) -> None:
    models = parser.add_argument_group("models (at least one of --model, --random)")
    models.add_argument("--model", action="append", default=[], metavar="LABEL=DIR",
                        help="a trained model and its label, e.g. teacher=results/teacher/rte/seed0 (repeatable; "
                             "label = the method name in metrics.json, for the accuracy-vs-latency plot)")
    models.add_argument("--random", metavar="DIMS",
                        help=f"also time models with random weights and these dimensions: a preset "
                             f"({', '.join(PRESETS)}), a model dir or a hub id")
    models.add_argument("--random-models", nargs="+", choices=RANDOM_MODELS, default=list(RANDOM_MODELS),
                        help="which random models (default: all)")
    models.add_argument("--num-experts", type=int, default=4, help="experts of the random MoEBERT")
    models.add_argument("--expert-dim", type=int,
                        help="expert width of the random MoEBERT and the dense-narrow control "
                             "(default: FFN width / experts)")
    models.add_argument("--router", choices=ROUTERS, default="hash-random", help="router of the random MoEBERT")
    models.add_argument("--reference", action="store_true",
                        help="also time every MoE model with the reference-style forward (label <model>-reference)")
    grid = parser.add_argument_group("grid")
    grid.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 32, 128])
    grid.add_argument("--seq-lengths", type=int, nargs="+", default=[64, 128, 256])
    grid.add_argument("--repeats", type=int, default=5, help="timed forwards per model and grid point")
    grid.add_argument("--warmup", type=int, default=1, help="untimed forwards per model and grid point first")
    hw = parser.add_argument_group("hardware")
    hw.add_argument("--device", default="auto", help=DEVICE_HELP + " (or cuda:N)")
    hw.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), default="float32")
    hw.add_argument("--threads", type=int, help="CPU threads (default: torch's default, all cores)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights and token ids")
    parser.add_argument("--output", required=True, help="CSV of the results; the JSON goes beside it (.json)")
    parser.add_argument("--plots-dir", help="also write the speed plots here")
    parser.add_argument("--metrics", nargs="*", default=[], metavar="FILE",
                        help="metrics.json files for the accuracy-vs-latency plot (with --plots-dir)")
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
    models, sources = _build_models(args)
    for model in models.values():
        model.to(device=device, dtype=getattr(torch, args.dtype))
    params = {label: parameter_counts(model) for label, model in models.items()}
    with contextlib.ExitStack() as stack:
        if args.reference:
            for label in [label for label, model in models.items() if hasattr(model, "moe_layers")]:
                reference = label + REFERENCE_SUFFIX
                models[reference] = stack.enter_context(reference_style(copy.deepcopy(models[label])))
                sources[reference], params[reference] = sources[label], params[label]
        with tracking.tracked_run(args, _run_params(args)) as run_handle:
            timings = measure(models, args.batch_sizes, args.seq_lengths, args.repeats, args.warmup, device,
                              args.seed)
            table = _results_table(timings, sources, params, device, args)
            _write_results(args.output, table, timings, hardware(device), args)
            if run_handle is not None:
                run_handle.log_metrics({f"latency_ms/{r.model}/b{r.batch_size}_s{r.seq_len}": r.latency_ms_median
                                        for r in table.itertuples()})
                run_handle.log_artifact(args.output)
    print(table[["model", "seq_len", "batch_size", "latency_ms_median", "latency_ms_p90", "examples_per_s"]]
          .to_string(index=False, float_format=lambda v: f"{v:.1f}"))
    if args.plots_dir:
        for path in write_speed_plots([args.output], args.metrics, args.plots_dir):
            print(f"plot: {path}")


def _build_models(args) -> tuple[dict[str, nn.Module], dict[str, tuple[str, str]]]:
    """Models by label, and each label's (weights, source)."""
    models, sources = {}, {}
    for spec in args.model:
        label, path = parse_model_spec(spec)
        if label in models:
            raise MoebertError(f"--model label {label!r} is given twice")
        models[label], sources[label] = load_model(path).eval(), ("trained", path)
    if args.random:
        name, dims = dimensions(args.random)
        built = random_models(dims, args.random_models, args.num_experts, args.expert_dim, args.router, args.seed)
        for label, model in built.items():
            if label in models:
                raise MoebertError(f"label {label!r} is both a --model and a --random model; label the trained "
                                   f"one differently or leave {label} out of --random-models")
            models[label], sources[label] = model, ("random", name)
    return models, sources


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
    settings = {key: getattr(args, key) for key in ("batch_sizes", "seq_lengths", "repeats", "warmup", "dtype",
                                                     "seed", "random", "num_experts", "expert_dim", "router")}
    write_json(output.with_suffix(".json"), {
        "hardware": hw, "settings": settings,
        "results": table.to_dict(orient="records"), "timings": timings.to_dict(orient="records"),
    })
    with atomic_file(output) as tmp:
        table.round(4).to_csv(tmp, index=False)


# ---------------------------------------------------------------------------------------------
# Plots

def write_speed_plots(speed_csvs, metrics_paths, plots_dir) -> list[Path]:
    """Latency vs batch size per model, speed-up over the teacher and, from the metrics.json files,
    accuracy vs latency, as PNG and SVG in `plots_dir`. A plot without data is not written (and a stale
    one is removed). Returns the paths written."""
    import matplotlib

    matplotlib.use("Agg")  # no display on cluster nodes

    speed = load_speed(speed_csvs)
    plots_dir = Path(plots_dir)
    plots_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, draw in (("speed_latency", _draw_latency), ("speed_speedup", _draw_speedup),
                       ("accuracy_vs_latency", lambda data: _draw_pareto(data, metrics_paths))):
        fig = draw(speed) if len(speed) else None
        paths = [plots_dir / f"{name}.{fmt}" for fmt in ("png", "svg")]
        if fig is None:
            for path in paths:
                path.unlink(missing_ok=True)
            continue
        written += _save(fig, paths)
    return written


def load_speed(paths) -> pd.DataFrame:
    frames = []
    for run, path in enumerate(map(Path, paths)):
        try:
            frame = pd.read_csv(path)
        except FileNotFoundError:
            raise MoebertError(f"speed results file not found: {path}") from None
        missing = set(COLUMNS) - set(frame.columns)
        if missing:
            raise MoebertError(f"speed results file {path}: missing column(s) {', '.join(sorted(missing))}")
        frames.append(_label_run(frame).assign(run=run))
    return (pd.concat(frames, ignore_index=True) if frames
            else pd.DataFrame(columns=[*COLUMNS, "setting", "label", "run"]))


def _label_run(frame: pd.DataFrame) -> pd.DataFrame:
    """The panel title of one results file (only the models of one run were timed under the same
    conditions) and each model's legend label, which marks random-weight controls beside trained models."""
    trained = (frame.weights == "trained").any()
    what = "trained models" if trained else "random " + ", ".join(dict.fromkeys(frame.source.astype(str)))
    hw = " · ".join(f"{d} · {t} thread{'s' * (t != 1)}" for d, t in dict.fromkeys(zip(frame.device, frame.threads)))
    random_beside_trained = trained & (frame.weights == "random")
    return frame.assign(setting=f"{what} · {hw}",
                        label=frame.model.where(~random_beside_trained, frame.model + " (random weights)"))


def _panels(speed: pd.DataFrame, ylabel: str):
    """A figure with one panel per (results file, sequence length) and, for each, its axes and rows."""
    import matplotlib.pyplot as plt

    runs, lengths = list(dict.fromkeys(zip(speed.run, speed.setting))), sorted(speed.seq_len.unique())
    fig, axes = plt.subplots(len(runs), len(lengths), figsize=(3.6 * len(lengths), 3 * len(runs)), squeeze=False)
    panels = []
    for i, (run, setting) in enumerate(runs):
        for j, seq in enumerate(lengths):
            ax = axes[i, j]
            ax.set_title(f"{setting}\nlength {seq}", fontsize=8)
            ax.set_xscale("log", base=2)
            ax.set_xticks(sorted(speed.batch_size.unique()), labels=map(str, sorted(speed.batch_size.unique())))
            ax.grid(alpha=0.3)
            ax.set_xlabel("batch size")
            ax.set_ylabel(ylabel if j == 0 else "")
            panels.append((ax, speed[(speed.run == run) & (speed.seq_len == seq)]))
    return fig, panels


def _color(speed: pd.DataFrame, rows: pd.DataFrame) -> str:
    """One colour per model across all panels."""
    return f"C{list(dict.fromkeys(speed.model)).index(rows.model.iloc[0]) % 10}"


def _draw_latency(speed: pd.DataFrame):
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    fig, panels = _panels(speed, "ms per batch (median; bar: p90)")
    for ax, data in panels:
        for label, rows in data.sort_values("batch_size").groupby("label", sort=False):
            ax.errorbar(rows.batch_size, rows.latency_ms_median,
                        yerr=[np.zeros(len(rows)), rows.latency_ms_p90 - rows.latency_ms_median],
                        marker="o", ms=3, capsize=2, label=label, color=_color(speed, rows))
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(LogLocator(subs=(1, 2, 5)))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))  # 20, 50, 100 rather than 2x10^1
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def _draw_speedup(speed: pd.DataFrame):
    if TEACHER not in set(speed.model):
        log.warning("no %r rows in the speed results: no speed-up plot", TEACHER)
        return None
    fig, panels = _panels(speed, f"speed-up over the {TEACHER} (x)")
    for ax, data in panels:
        base = data[data.model == TEACHER].set_index("batch_size").latency_ms_median
        for label, rows in data[data.model != TEACHER].sort_values("batch_size").groupby("label", sort=False):
            rows = rows[rows.batch_size.isin(base.index)]
            ax.plot(rows.batch_size, base[rows.batch_size].to_numpy() / rows.latency_ms_median, marker="o", ms=3,
                    label=label, color=_color(speed, rows))
        ax.axhline(1, color="grey", lw=0.8)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def _draw_pareto(speed: pd.DataFrame, metrics_paths):
    """Task-average main metric against latency at one grid point, for the trained models whose label is
    a method of the metrics files; the line joins the Pareto front (no other point faster and better)."""
    import matplotlib.pyplot as plt

    from .report import AVERAGE, PAPER_CSV, load_metrics, load_paper
    from .report import summarise as summarise_metrics

    trained = speed[speed.weights == "trained"]
    if not metrics_paths or trained.empty:
        return None
    _, scores = load_metrics(metrics_paths)
    stats = summarise_metrics(scores, load_paper(PAPER_CSV))
    score = stats[stats.task == AVERAGE].set_index("method")["mean"]
    points = trained.groupby(["batch_size", "seq_len"]).model.apply(set)
    shared = [point for point, models in points.items() if models & set(score.index)]
    if not shared:
        log.warning("no trained model in the speed results is a method of the metrics files: no Pareto plot")
        return None
    batch, seq = PARETO_POINT if PARETO_POINT in shared else min(shared)
    at = trained[(trained.batch_size == batch) & (trained.seq_len == seq)].groupby("model").latency_ms_median.median()
    data = pd.DataFrame({"latency": at, "score": score}).dropna().sort_values("latency")
    front = data[data.score >= data.score.cummax()]
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.step(front.latency, front.score, where="post", color="grey", lw=0.8, label="Pareto front")
    ax.scatter(data.latency, data.score, zorder=3)
    for method, point in data.iterrows():
        ax.annotate(method, (point.latency, point.score), textcoords="offset points", xytext=(5, 5), fontsize=8)
    ax.set_xlabel(f"latency (ms), batch {batch}, length {seq}")
    ax.set_ylabel(f"average main metric, {stats.task[stats.task != AVERAGE].nunique()} tasks (%)")
    ax.margins(0.2)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def _save(fig, paths) -> list[Path]:
    import matplotlib.pyplot as plt

    for path in paths:
        with atomic_file(path) as tmp:
            fig.savefig(tmp, format=path.suffix[1:], dpi=150, bbox_inches="tight")
    plt.close(fig)
    return paths
