"""The paper's claims checked on our numbers (`claims:` in a config, e.g. config/claims.yaml): each claim
is stated with the measured averages and whether it holds. A reproduction reports a claim that does not
hold as not holding.

Two forms, on the average main metric (mean over seeds, then over tasks; the report's `avg` column):
  method/vs/at_least      holds when avg(method) - avg(vs) >= at_least points; with every_task, when the
                          difference is that large on every task
  methods/spread_at_most  holds when the best and the worst of the methods are at most that far apart

`main` is the report's main-metric table: one row per method, one column per task and `avg`.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from moebert.files import atomic_file


def check(claim: dict, main: pd.DataFrame, average: str) -> dict:
    """{claim, measured, holds}; holds is None when a method it names has no average (not run, or a task
    missing)."""
    names = [claim["method"], claim["vs"]] if "method" in claim else list(claim["methods"])
    per_task = main.drop(columns=average)
    averages = main[average].dropna()
    absent = [m for m in names if m not in averages.index]
    if absent:
        return {
            "claim": claim["claim"],
            "measured": f"not measured: no average for {', '.join(absent)}",
            "holds": None,
        }
    if "method" in claim:
        a, b = averages[claim["method"]], averages[claim["vs"]]
        diff = per_task.loc[claim["method"]] - per_task.loc[claim["vs"]]
        tasks = ", ".join(f"{task} {value:+.1f}" for task, value in diff.dropna().items())
        if claim.get("every_task"):
            measured = (
                f"{claim['method']} - {claim['vs']} per task {tasks}: smallest {diff.min():+.1f} (holds at "
                f">= {claim['at_least']:+.1f} on every task)"
            )
            return {
                "claim": claim["claim"],
                "measured": measured,
                "holds": bool(diff.min() >= claim["at_least"]),
            }
        measured = (
            f"{claim['method']} {a:.1f} vs {claim['vs']} {b:.1f}: {a - b:+.1f} (holds at >= "
            f"{claim['at_least']:+.1f}); per task {tasks}"
        )
        return {"claim": claim["claim"], "measured": measured, "holds": bool(a - b >= claim["at_least"])}
    values = averages[names]
    spread = values.max() - values.min()
    listed = ", ".join(f"{m} {v:.1f}" for m, v in values.items())
    measured = f"{listed}: spread {spread:.1f} (holds at <= {claim['spread_at_most']:.1f})"
    return {"claim": claim["claim"], "measured": measured, "holds": bool(spread <= claim["spread_at_most"])}


def write_claims(
    main: pd.DataFrame, average: str, claims: list[dict], tables_dir: Path
) -> pd.DataFrame | None:
    """claims.csv and claims.md; none when the config states no claims (and a stale pair is removed)."""
    paths = [tables_dir / f"claims.{ext}" for ext in ("csv", "md")]
    if not claims:
        for path in paths:
            path.unlink(missing_ok=True)
        return None
    table = pd.DataFrame([check(claim, main, average) for claim in claims])
    with atomic_file(tables_dir / "claims.csv") as tmp:
        table.to_csv(tmp, index=False)
    verdict = table.holds.map({True: "holds", False: "does not hold", None: "not measured"})
    shown = table.assign(holds=verdict)[["holds", "claim", "measured"]]
    text = (
        "# The paper's claims on these runs\n\nAverage main metric over the tasks (mean over seeds), in "
        "points; a claim that does not hold is reported as such.\n\n" + shown.to_markdown(index=False) + "\n"
    )
    with atomic_file(tables_dir / "claims.md") as tmp:
        tmp.write_text(text)
    return table
