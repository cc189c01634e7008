"""The paper's claims checked on our numbers (`claims:` in a config, e.g. config/claims.yaml): each claim
is stated with the measured averages, the difference it is about with a 95% confidence interval from a paired
bootstrap over dev examples and seeds (reporting/bootstrap.py), and a verdict: holds, fails, or inconclusive
when the interval contains the threshold. A reproduction reports a claim that does not hold as not holding.

Two forms, on the average main metric (mean over seeds, then over tasks; the report's `avg` column):
  method/vs/at_least      the statistic avg(method) - avg(vs) should be >= at_least points; with every_task,
                          the smallest per-task difference should be
  methods/spread_at_most  the statistic best - worst average of the methods should be <= spread_at_most

`main` is the report's main-metric table: one row per method, one column per task and `avg`. A method whose
router collapsed (an expert with under 1% of a layer's tokens, routing_diagnostics.py) is flagged.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from moebert.files import atomic_file
from moebert.reporting.bootstrap import interval, verdict

COLUMNS = ["verdict", "claim", "difference", "ci_low", "ci_high", "measured", "routing", "note"]


def _statistic(
    claim: dict, averages: pd.Series, per_task: pd.DataFrame, boot, keys
) -> tuple[float, np.ndarray]:
    """The claim's statistic on the measured means and its bootstrap replicates (NaN without examples)."""
    if "methods" in claim:
        values = averages[list(claim["methods"])]
        draws = (
            np.stack([boot.average(m, keys) for m in claim["methods"]]) if boot else np.full((1, 1), np.nan)
        )
        return float(values.max() - values.min()), draws.max(0) - draws.min(0)
    a, b = claim["method"], claim["vs"]
    if claim.get("every_task"):
        diff = per_task.loc[a] - per_task.loc[b]
        draws = np.stack([boot.key(a, k) - boot.key(b, k) for k in keys]) if boot else np.full((1, 1), np.nan)
        return float(diff.min()), draws.min(0)
    draws = boot.average(a, keys) - boot.average(b, keys) if boot else np.full(1, np.nan)
    return float(averages[a] - averages[b]), draws


def check(claim: dict, main: pd.DataFrame, average: str, boot=None, collapsed: dict | None = None) -> dict:
    """{verdict, claim, difference, ci_low, ci_high, measured, routing, note}. `boot`: a bootstrap.Replicates (None:
    no interval); `collapsed`: method -> where its router collapsed. Without an interval the verdict is the
    point estimate's, marked as such; "not measured" when a method it names has no average."""
    names = [claim["method"], claim["vs"]] if "method" in claim else list(claim["methods"])
    per_task = main.drop(columns=average)
    averages = main[average].dropna()
    keys = list(per_task.columns)
    flags = "; ".join(f"{m}: {collapsed[m]}" for m in dict.fromkeys(names) if collapsed and m in collapsed)
    row = {"claim": claim["claim"], "routing": flags, "note": claim.get("note", "")}
    absent = [m for m in names if m not in averages.index]
    if absent:
        return {
            **row,
            "verdict": "not measured",
            "measured": f"not measured: no average for {', '.join(absent)}",
        }
    value, draws = _statistic(claim, averages, per_task, boot, keys)
    low, high = interval(draws)
    at_most = "methods" in claim
    threshold = claim["spread_at_most"] if at_most else claim["at_least"]
    if np.isnan(low):
        held = value <= threshold if at_most else value >= threshold
        result = f"{'holds' if held else 'fails'} (no interval)"
        shown = "no interval (per-example predictions missing or not paired)"
    else:
        result = verdict(low, high, threshold, at_most)
        shown = f"95% CI [{low:+.1f}, {high:+.1f}]"
    if at_most:
        listed = ", ".join(f"{m} {v:.1f}" for m, v in averages[names].items())
        measured = f"{listed}: spread {value:.1f}, {shown} (holds at <= {threshold:.1f})"
    else:
        a, b = claim["method"], claim["vs"]
        diff = per_task.loc[a] - per_task.loc[b]
        tasks = ", ".join(f"{task} {v:+.1f}" for task, v in diff.dropna().items())
        if claim.get("every_task"):
            measured = (
                f"{a} - {b} per task {tasks}: smallest {value:+.1f}, {shown} (holds at >= {threshold:+.1f} "
                f"on every task)"
            )
        else:
            measured = (
                f"{a} {averages[a]:.1f} vs {b} {averages[b]:.1f}: {value:+.1f}, {shown} (holds at >= "
                f"{threshold:+.1f}); per task {tasks}"
            )
    return {
        **row,
        "verdict": result,
        "difference": value,
        "ci_low": low,
        "ci_high": high,
        "measured": measured,
    }


TITLE = "The paper's claims on these runs"
NOTE = (
    "Average main metric over the tasks (mean over seeds), in points. Each claim's difference comes with a 95% "
    "confidence interval from a paired bootstrap over the dev examples and the seeds (docs/method.md §8.1): "
    "it **holds** when the whole interval clears the threshold, **fails** when none of it does, and is "
    "**inconclusive** when the interval contains the threshold. routing: a method whose router sent under 1% "
    "of a layer's tokens to some expert (collapsed)."
)


def write_claims(
    main: pd.DataFrame,
    average: str,
    claims: list[dict],
    tables_dir: Path,
    boot=None,
    collapsed: dict | None = None,
) -> pd.DataFrame | None:
    """claims.csv and claims.md; none when the config states no claims (and a stale pair is removed). Returns
    the table as claims.md shows it."""
    paths = [tables_dir / f"claims.{ext}" for ext in ("csv", "md")]
    if not claims:
        for path in paths:
            path.unlink(missing_ok=True)
        return None
    table = pd.DataFrame([check(claim, main, average, boot, collapsed) for claim in claims], columns=COLUMNS)
    with atomic_file(tables_dir / "claims.csv") as tmp:
        table.round(6).to_csv(tmp, index=False)
    shown = table[["verdict", "claim", "measured"]]
    if table.routing.fillna("").str.len().any():
        shown = shown.assign(routing=table.routing.fillna(""))
    text = f"# {TITLE}\n\n{NOTE}\n\n" + shown.to_markdown(index=False) + "\n"
    # Notes under the table, not in a column: they are paragraphs (an experiment and its numbers).
    notes = [f"- **{row.claim}** ({row.verdict}): {row.note}" for row in table.itertuples() if row.note]
    if notes:
        text += "\n## Notes\n\n" + "\n".join(notes) + "\n"
    with atomic_file(tables_dir / "claims.md") as tmp:
        tmp.write_text(text)
    return shown
