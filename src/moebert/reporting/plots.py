"""The speed plots, from the CSVs `moebert speed` wrote: latency vs batch size per model, speed-up over the
teacher, and accuracy vs latency (with the report's task averages), as PNG and SVG."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from moebert.errors import MoebertError
from moebert.files import atomic_file
from moebert.speed import COLUMNS

log = logging.getLogger(__name__)

TEACHER = "teacher"  # the label the speed-ups are over
PARETO_POINT = (1, 128)  # the paper's speed setting: batch size 1, length 128 (docs/method.md §8)


def write_speed_plots(speed_csvs, average: pd.Series, tasks: int, plots_dir) -> list[Path]:
    """Latency vs batch size per model, speed-up over the teacher and accuracy vs latency (`average`: each
    method's main metric averaged over `tasks` tasks), as PNG and SVG in `plots_dir`. A plot without data is
    not written (and a stale one is removed). Returns the paths written."""
    import matplotlib

    matplotlib.use("Agg")  # no display on cluster nodes

    speed = load_speed(speed_csvs)
    plots_dir = Path(plots_dir)
    plots_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, draw in (
        ("speed_latency", _draw_latency),
        ("speed_speedup", _draw_speedup),
        ("accuracy_vs_latency", lambda data: _draw_pareto(data, average, tasks)),
    ):
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
    return (
        pd.concat(frames, ignore_index=True)
        if frames
        else pd.DataFrame(columns=[*COLUMNS, "setting", "label", "run"])
    )


def _label_run(frame: pd.DataFrame) -> pd.DataFrame:
    """The panel title of one results file (only the models of one run were timed under the same
    conditions) and each model's legend label, which marks random-weight controls beside trained models."""
    trained = (frame.weights == "trained").any()
    what = "trained models" if trained else "random " + ", ".join(dict.fromkeys(frame.source.astype(str)))
    hw = " · ".join(
        f"{d} · {t} thread{'s' * (t != 1)}" for d, t in dict.fromkeys(zip(frame.device, frame.threads))
    )
    random_beside_trained = trained & (frame.weights == "random")
    return frame.assign(
        setting=f"{what} · {hw}",
        label=frame.model.where(~random_beside_trained, frame.model + " (random weights)"),
    )


def _panels(speed: pd.DataFrame, ylabel: str):
    """A figure with one panel per (results file, sequence length) and, for each, its axes and rows."""
    import matplotlib.pyplot as plt

    runs, lengths = list(dict.fromkeys(zip(speed.run, speed.setting))), sorted(speed.seq_len.unique())
    fig, axes = plt.subplots(
        len(runs), len(lengths), figsize=(3.6 * len(lengths), 3 * len(runs)), squeeze=False
    )
    panels = []
    for i, (run, setting) in enumerate(runs):
        for j, seq in enumerate(lengths):
            ax = axes[i, j]
            ax.set_title(f"{setting}\nlength {seq}", fontsize=8)
            ax.set_xscale("log", base=2)
            ax.set_xticks(
                sorted(speed.batch_size.unique()), labels=map(str, sorted(speed.batch_size.unique()))
            )
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
            ax.errorbar(
                rows.batch_size,
                rows.latency_ms_median,
                yerr=[np.zeros(len(rows)), rows.latency_ms_p90 - rows.latency_ms_median],
                marker="o",
                ms=3,
                capsize=2,
                label=label,
                color=_color(speed, rows),
            )
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
            ax.plot(
                rows.batch_size,
                base[rows.batch_size].to_numpy() / rows.latency_ms_median,
                marker="o",
                ms=3,
                label=label,
                color=_color(speed, rows),
            )
        ax.axhline(1, color="grey", lw=0.8)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def _draw_pareto(speed: pd.DataFrame, score: pd.Series, tasks: int):
    """Task-average main metric against latency at one grid point, for the trained models whose label is
    a method of `score`; the line joins the Pareto front (no other point faster and better)."""
    import matplotlib.pyplot as plt

    trained = speed[speed.weights == "trained"]
    if score.empty or trained.empty:
        return None
    points = trained.groupby(["batch_size", "seq_len"]).model.apply(set)
    shared = [point for point, models in points.items() if models & set(score.index)]
    if not shared:
        log.warning("no trained model in the speed results is a method of the metrics files: no Pareto plot")
        return None
    batch, seq = PARETO_POINT if PARETO_POINT in shared else min(shared)
    at = (
        trained[(trained.batch_size == batch) & (trained.seq_len == seq)]
        .groupby("model")
        .latency_ms_median.median()
    )
    data = pd.DataFrame({"latency": at, "score": score}).dropna().sort_values("latency")
    front = data[data.score >= data.score.cummax()]
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.step(front.latency, front.score, where="post", color="grey", lw=0.8, label="Pareto front")
    ax.scatter(data.latency, data.score, zorder=3)
    for method, point in data.iterrows():
        ax.annotate(
            method, (point.latency, point.score), textcoords="offset points", xytext=(5, 5), fontsize=8
        )
    ax.set_xlabel(f"latency (ms), batch {batch}, length {seq}")
    ax.set_ylabel(f"average main metric, {tasks} tasks (%)")
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
