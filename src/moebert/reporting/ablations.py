"""Ablation sweeps (MoEBERT Figures 2-3): one table row per sweep point with each task's main metric and
their average, and one plot per sweep (`sweeps:` in a config; the workflow names the point methods).

Outputs: <tables-dir>/ablations.{csv,md,tex}, <plots-dir>/ablation_<sweep>.{png,svg}.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from moebert.files import atomic_file


def ablation_table(main: pd.DataFrame, sweeps: dict[str, dict[str, str]]) -> pd.DataFrame:
    """sweep, value, method, then the columns of the report's main-metric table `main` (each task's main
    metric and their average); points whose method has no results are left out."""
    rows = [
        {"sweep": sweep, "value": value, "method": method, **main.loc[method].to_dict()}
        for sweep, points in sweeps.items()
        for value, method in points.items()
        if method in main.index
    ]
    return pd.DataFrame(rows, columns=["sweep", "value", "method", *main.columns])


def _plot(rows: pd.DataFrame, sweep: str, average: str, plots_dir: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    positions = range(len(rows))
    for column in rows.columns[3:]:
        style = {"linewidth": 2.5, "color": "black"} if column == average else {"alpha": 0.7}
        ax.plot(positions, rows[column], marker="o", label=column, **style)
    ax.set_xticks(
        list(positions),
        [f"{v}\n({m})" if m != f"{sweep}-{v}" else str(v) for v, m in zip(rows.value, rows.method)],
        fontsize=8,
    )
    ax.set_xlabel(sweep)
    ax.set_ylabel("main metric (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    for fmt in ("png", "svg"):
        with atomic_file(plots_dir / f"ablation_{sweep}.{fmt}") as tmp:
            fig.savefig(tmp, format=fmt, dpi=150, bbox_inches="tight")
    plt.close(fig)


def write_ablations(
    main: pd.DataFrame, average: str, sweeps: dict[str, dict[str, str]], tables_dir: Path, plots_dir: Path
) -> pd.DataFrame | None:
    """The ablation table and plots; none without sweeps (and stale ones are removed)."""
    if not sweeps:
        for path in [*tables_dir.glob("ablations.*"), *plots_dir.glob("ablation_*")]:
            path.unlink()
        return None
    table = ablation_table(main, sweeps)
    with atomic_file(tables_dir / "ablations.csv") as tmp:
        table.round(6).to_csv(tmp, index=False)
    shown = table.round(1)
    note = (
        "Each sweep varies one setting of a method (the point that equals it is the method itself, named in "
        f"brackets in the plots); columns: each task's main metric and their average ({average}), mean over seeds."
    )
    with atomic_file(tables_dir / "ablations.md") as tmp:
        tmp.write_text(f"# Ablations\n\n{note}\n\n{shown.to_markdown(index=False, floatfmt='.1f')}\n")
    with atomic_file(tables_dir / "ablations.tex") as tmp:
        tmp.write_text(f"% {note}\n" + shown.to_latex(index=False, float_format="%.1f", escape=True))
    plots_dir.mkdir(parents=True, exist_ok=True)
    for sweep, rows in table.groupby("sweep", sort=False):
        _plot(rows.reset_index(drop=True), sweep, average, plots_dir)
    return table
