"""The paper's claims checked on our numbers (`claims:` in a config, e.g. config/claims.yaml): each claim
is stated with the measured averages and whether it holds. A reproduction reports a claim that does not
hold as not holding.

Two forms, on the average main metric (mean over seeds, then over tasks; the report's `avg` column):
  method/vs/at_least      holds when avg(method) - avg(vs) >= at_least points
  methods/spread_at_most  holds when the best and the worst of the methods are at most that far apart
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from moebert.files import atomic_file

AVERAGE = "avg"


def _main_scores(stats: pd.DataFrame) -> tuple[pd.Series, pd.DataFrame]:
    """Average main metric per method, and the main metric per (method, task)."""
    average = stats[stats.task == AVERAGE].set_index("method")["mean"]
    per_task = stats[stats.task != AVERAGE].drop_duplicates(["method", "task"])  # first metric = main
    return average, per_task.pivot(index="method", columns="task", values="mean")


def check(claim: dict, average: pd.Series, per_task: pd.DataFrame) -> dict:
    """{claim, measured, holds}; holds is None when a method it names has no average (not run, or a task
    missing)."""
    names = [claim["method"], claim["vs"]] if "method" in claim else list(claim["methods"])
    absent = [m for m in names if m not in average.index]
    if absent:
        return {"claim": claim["claim"], "measured": f"not measured: no average for {', '.join(absent)}",
                "holds": None}
    if "method" in claim:
        a, b = average[claim["method"]], average[claim["vs"]]
        diff = per_task.loc[claim["method"]] - per_task.loc[claim["vs"]]
        tasks = ", ".join(f"{task} {value:+.1f}" for task, value in diff.dropna().items())
        measured = (f"{claim['method']} {a:.1f} vs {claim['vs']} {b:.1f}: {a - b:+.1f} (holds at >= "
                    f"{claim['at_least']:+.1f}); per task {tasks}")
        return {"claim": claim["claim"], "measured": measured, "holds": bool(a - b >= claim["at_least"])}
    values = average[names]
    spread = values.max() - values.min()
    listed = ", ".join(f"{m} {v:.1f}" for m, v in values.items())
    measured = f"{listed}: spread {spread:.1f} (holds at <= {claim['spread_at_most']:.1f})"
    return {"claim": claim["claim"], "measured": measured, "holds": bool(spread <= claim["spread_at_most"])}


def write_claims(stats: pd.DataFrame, claims: list[dict], tables_dir: Path) -> pd.DataFrame | None:
    """claims.csv and claims.md; nothing when the config states no claims."""
    if not claims:
        return None
    average, per_task = _main_scores(stats)
    table = pd.DataFrame([check(claim, average, per_task) for claim in claims])
    with atomic_file(tables_dir / "claims.csv") as tmp:
        table.to_csv(tmp, index=False)
    verdict = table.holds.map({True: "holds", False: "does not hold", None: "not measured"})
    shown = table.assign(holds=verdict)[["holds", "claim", "measured"]]
    text = ("# The paper's claims on these runs\n\nAverage main metric over the tasks (mean over seeds), in "
            "points; a claim that does not hold is reported as such.\n\n"
            + shown.to_markdown(index=False) + "\n")
    with atomic_file(tables_dir / "claims.md") as tmp:
        tmp.write_text(text)
    return table
