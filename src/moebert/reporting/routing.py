"""What the routers did, from the metrics files' routing diagnostics (routing_diagnostics.py): one heatmap per
result key (dev split) with a panel per routed method, layer x expert, the share of the real tokens each expert
received (mean over seeds); and the methods whose router collapsed, for the claims table.

Outputs: <plots-dir>/routing_<key>.{png,svg}; stale ones are removed.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from moebert.files import atomic_file
from moebert.routing_diagnostics import COLLAPSE_SHARE, collapsed


def shares(runs: list[dict]) -> dict[str, dict[str, np.ndarray]]:
    """key -> method -> [layers, experts] share of tokens, the mean over the method's seeds."""
    found: dict[str, dict[str, list[np.ndarray]]] = {}
    for run in runs:
        for key, layers in run["routing"].items():
            table = np.array([layer["share"] for layer in layers])
            found.setdefault(key, {}).setdefault(run["method"], []).append(table)
    return {key: {m: np.mean(t, axis=0) for m, t in methods.items()} for key, methods in found.items()}


def collapsed_routers(runs: list[dict], threshold: float = COLLAPSE_SHARE) -> dict[str, str]:
    """method -> where its router collapsed: the first run and layer with an expert under `threshold` of the
    tokens, and how many (run, layer, expert) cases there are in all."""
    found: dict[str, list[str]] = {}
    for run in sorted(runs, key=lambda r: (r["method"], r["task"], r["seed"])):
        for key, layers in run["routing"].items():
            for layer, expert, share in collapsed(layers, threshold):
                found.setdefault(run["method"], []).append(
                    f"{key} seed {run['seed']} layer {layer} expert {expert}: {100 * share:.1f}% of tokens"
                )
    return {
        m: f"collapsed router ({cases[0]}" + (f"; {len(cases) - 1} more" if len(cases) > 1 else "") + ")"
        for m, cases in found.items()
    }


def _name(key: str) -> str:
    return "routing_" + re.sub(r"[^a-z0-9]+", "-", key.lower()).strip("-")


def write_routing_plots(runs: list[dict], plots_dir: Path) -> list[Path]:
    """A heatmap figure per result key with routing diagnostics; returns the paths written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plots_dir.mkdir(parents=True, exist_ok=True)
    data = shares(runs)
    for stale in plots_dir.glob("routing_*"):
        if stale.stem not in {_name(key) for key in data}:
            stale.unlink()
    written = []
    for key, methods in sorted(data.items()):
        names = sorted(methods)
        layers = max(t.shape[0] for t in methods.values())
        fig, axes = plt.subplots(
            1, len(names), figsize=(2.2 + 1.6 * len(names), 1.2 + 0.35 * layers), squeeze=False
        )
        for ax, method in zip(axes[0], names):
            table = methods[method]
            image = ax.imshow(100 * table, vmin=0, vmax=200 / table.shape[1], cmap="viridis")
            for (i, e), share in np.ndenumerate(table):
                ax.text(e, i, f"{100 * share:.0f}", ha="center", va="center", fontsize=6, color="white")
            ax.set_title(method, fontsize=8)
            ax.set_xlabel("expert", fontsize=7)
            ax.set_xticks(range(table.shape[1]))
            ax.set_yticks(range(table.shape[0]))
            ax.tick_params(labelsize=6)
        axes[0][0].set_ylabel("layer", fontsize=7)
        fig.colorbar(image, ax=axes[0].tolist(), shrink=0.8, label="% of tokens")
        fig.suptitle(
            f"{key}: share of the dev tokens (padding excluded) each expert receives, per layer; mean over "
            f"seeds. Balanced: {100 / table.shape[1]:.0f}% each; under {100 * COLLAPSE_SHARE:.0f}%: collapsed",
            fontsize=7,
        )
        for fmt in ("png", "svg"):
            path = plots_dir / f"{_name(key)}.{fmt}"
            with atomic_file(path) as tmp:
                fig.savefig(tmp, format=fmt, dpi=150, bbox_inches="tight")
            written.append(path)
        plt.close(fig)
    return written
