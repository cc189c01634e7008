"""Ablation sweeps (MoEBERT Figures 2-3): one table row per sweep point with each task's main metric and
their average, its difference from the sweep's base point (the method the sweep varies) with a 95% confidence
interval from the paired bootstrap (reporting/bootstrap.py), and one plot per sweep (`sweeps:` in a config; the
workflow names the point methods, `<sweep>-<value>` for every point but the base).

Outputs: <tables-dir>/ablations.{csv,md,tex}, <plots-dir>/ablation_<sweep>.{png,svg}.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from moebert.files import atomic_file
from moebert.reporting.bootstrap import interval, verdict

# A point against its sweep's base: its interval wholly above 0, wholly below, or containing 0.
DIRECTIONS = {"holds": "higher", "fails": "lower", "inconclusive": "inconclusive"}


def base_point(sweep: str, points: dict[str, str]) -> str | None:
    """The method a sweep varies: its point not named `<sweep>-<value>` (none when no value equals it)."""
    return next((m for v, m in points.items() if m != f"{sweep}-{v}"), None)


def comparisons(table: pd.DataFrame, sweeps: dict, average: str, boot) -> pd.DataFrame:
    """vs (the base point), diff (avg - the base's avg), ci_low, ci_high and the direction for each row."""
    keys = [c for c in table.columns[3:] if c != average]
    rows = []
    avg = dict(zip(table.method, table[average]))
    for sweep, method in zip(table.sweep, table.method):
        base = base_point(sweep, sweeps[sweep])
        if base is None or base == method or base not in avg:
            rows.append(
                {"vs": base or "", "diff": float("nan"), "ci_low": float("nan"), "ci_high": float("nan")}
            )
            continue
        draws = boot.average(method, keys) - boot.average(base, keys) if boot else [float("nan")]
        low, high = interval(pd.Series(draws).to_numpy())
        rows.append({"vs": base, "diff": avg[method] - avg[base], "ci_low": low, "ci_high": high})
    out = pd.DataFrame(rows, columns=["vs", "diff", "ci_low", "ci_high"], index=table.index)
    out["vs base"] = [
        "" if pd.isna(d) else "no interval" if pd.isna(lo) else DIRECTIONS[verdict(lo, hi, 0.0)]
        for d, lo, hi in zip(out["diff"], out.ci_low, out.ci_high)
    ]
    return out


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


TITLE = "Ablations"
NOTE = (
    "Each sweep varies one setting of a method (the point that equals it is the method itself, named in "
    "brackets in the plots); columns: each task's main metric and their average ({average}), mean over "
    "seeds; diff: the point's average minus that of the method (vs), with its 95% confidence interval "
    "from a paired bootstrap over dev examples and seeds (docs/method.md §8.1); 'vs base': higher or lower "
    "when the interval excludes 0, else inconclusive."
)


def write_ablations(
    main: pd.DataFrame,
    average: str,
    sweeps: dict[str, dict[str, str]],
    tables_dir: Path,
    plots_dir: Path,
    boot=None,
) -> pd.DataFrame | None:
    """The ablation table and plots; none without sweeps (and stale ones are removed). Returns the table as
    ablations.md shows it."""
    if not sweeps:
        for path in [*tables_dir.glob("ablations.*"), *plots_dir.glob("ablation_*")]:
            path.unlink()
        return None
    table = ablation_table(main, sweeps)
    compared = pd.concat([table, comparisons(table, sweeps, average, boot)], axis=1)
    with atomic_file(tables_dir / "ablations.csv") as tmp:
        compared.round(6).to_csv(tmp, index=False)
    # The comparison as text: blank on a sweep's base row, which is compared with nothing.
    shown = compared.round(1).assign(
        diff=["" if pd.isna(d) else f"{d:+.1f}" for d in compared["diff"]],
        ci=[
            "" if pd.isna(lo) else f"[{lo:+.1f}, {hi:+.1f}]"
            for lo, hi in zip(compared.ci_low, compared.ci_high)
        ],
    )
    shown = shown[[*table.columns, "vs", "diff", "ci", "vs base"]]
    note = NOTE.format(average=average)
    with atomic_file(tables_dir / "ablations.md") as tmp:
        tmp.write_text(f"# {TITLE}\n\n{note}\n\n{shown.to_markdown(index=False, floatfmt='.1f')}\n")
    with atomic_file(tables_dir / "ablations.tex") as tmp:
        tmp.write_text(f"% {note}\n" + shown.to_latex(index=False, float_format="%.1f", escape=True))
    plots_dir.mkdir(parents=True, exist_ok=True)
    for sweep, rows in table.groupby("sweep", sort=False):
        _plot(rows.reset_index(drop=True), sweep, average, plots_dir)
    return shown
