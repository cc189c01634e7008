"""`moebert report`: GLUE and SQuAD tables, an accuracy-vs-parameters plot and a run manifest, built from the
metrics.json files alone, so the report regenerates from results/ without retraining.

It shows only what exists: a method or task appears when some metrics file has it, never as a
placeholder. Outputs, one table per task family that has results (glue: GLUE, squad: SQuAD, user: user tasks):
  <tables-dir>/<family>.csv  tidy, full precision: method, task, metric, n, mean, std, paper_model, paper, diff
  <tables-dir>/<family>.md, .tex  rows = methods (with their paper row and ours - paper), columns = task metrics;
      a task whose data departs from the standard splits (the offline SQuAD article split) is marked and noted
  <tables-dir>/params.csv, params.md  per method: total, effective (active per token) and per-expert
      parameters, and the MPOE paper's comparison, total parameters switch / mpoe, where both ran
  <plots-dir>/accuracy_vs_params.{png,svg}
  ablations (sweeps) and claims: see ablations.py and claims.py; their confidence intervals come from the
      per-example predictions each metrics file names (bootstrap.py)
  <plots-dir>/routing_<task>.{png,svg}  the share of tokens per layer and expert of every routed method
      (routing.py)
  <tables-dir>/<table>.html  every table above (and, with --speed, speed.html: the timings) as a page of its
      own, which Snakemake's report shows in the browser (a CSV there is only a download link)
  <manifest>  package versions, seeds, sha256 of metrics/data/config files, git commit, hardware
  --description  the report's first page (reStructuredText): what ran, the config and the commit
With tracking on and --parent-run given, the tables and plots directories, the manifest and the --log-artifact
files become artifacts of that parent run (tables/, plots/), beside the jobs' runs.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import json
import logging
import os
import platform
import re
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from moebert import package_commit, tracking
from moebert.errors import MoebertError
from moebert.files import atomic_file, read_json, write_json
from moebert.reporting import ablations as ablation_table
from moebert.reporting import claims as claim_table
from moebert.reporting.ablations import write_ablations
from moebert.reporting.bootstrap import Replicates
from moebert.reporting.claims import write_claims
from moebert.reporting.plots import load_speed, write_speed_plots
from moebert.reporting.routing import collapsed_routers, write_routing_plots
from moebert.tasks import TASKS

log = logging.getLogger(__name__)

PAPER_CSV = Path(__file__).parents[1] / "data" / "paper_results.csv"
# The paper row each of our methods is compared with (MoEBERT paper, Tables 1-3).
PAPER_MODEL = {"teacher": "BERT-base", "moebert": "MoEBERT", "distil-half": "DistilBERT"}
METHOD_ORDER = ("teacher", "moebert")  # first in the tables; other methods follow alphabetically
PACKAGES = ("torch", "transformers", "datasets", "snakemake", "mlflow", "moebert")
AVERAGE = "avg"
PLOT_NAME = "accuracy_vs_params"
# MPOE (COLING 2022) reports this reduction of total parameters against Switch Transformers (T5, GPT-2);
# the report sets our measured ratio beside it.
MPOE_PAPER_REDUCTION = 27.2
# The table of each task family, and the family of each result key ("MRPC", "SQuAD-v1.1", ...); a key that no
# registered task has is a user task's (tasks/custom.py), whose name is its key.
TABLES = {
    "glue": ("glue", "GLUE dev results"),
    "qa": ("squad", "SQuAD dev results"),
    "user": ("user", "User task dev results"),
}
FAMILY = {key: task.family for task in TASKS.values() for key in task.eval_splits.values()}


HELP = "tables, plots and manifest from the results"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--metrics",
        nargs="+",
        required=True,
        metavar="FILE",
        help="metrics.json files (from moebert evaluate), one per task, method and seed",
    )
    parser.add_argument(
        "--paper",
        default=str(PAPER_CSV),
        help="CSV of the paper's numbers: model,task,metric,value (default: the packaged copy)",
    )
    parser.add_argument("--tables-dir", default="results/tables")
    parser.add_argument("--plots-dir", default="results/plots")
    parser.add_argument("--manifest", default="results/manifest.json")
    parser.add_argument(
        "--speed",
        nargs="*",
        default=[],
        metavar="CSV",
        help="outputs of `moebert speed`: adds the latency, speed-up and accuracy-vs-latency plots",
    )
    parser.add_argument(
        "--config-file", default=None, help="config the results came from (hashed into the manifest)"
    )
    parser.add_argument(
        "--data-files",
        nargs="*",
        default=[],
        metavar="PATH",
        help="data files (or directories, walked) the results used; hashed into the manifest",
    )
    parser.add_argument(
        "--description",
        metavar="RST",
        help="write the run's description (what ran, the config, the commit, the headline) to this "
        "reStructuredText file, the first page of Snakemake's report",
    )
    parser.add_argument(
        "--sweeps",
        type=json.loads,
        default={},
        metavar="JSON",
        help="ablation sweeps, {sweep: {value: method}}: adds the ablation table and plots",
    )
    parser.add_argument(
        "--claims",
        type=json.loads,
        default=[],
        metavar="JSON",
        help="claims to check (a config's `claims:` list): adds claims.{md,csv}",
    )
    tracking.add_tracking_arguments(parser)


def run(args: argparse.Namespace) -> None:
    runs, scores = load_metrics(args.metrics)
    paper = load_paper(args.paper)
    # The claims, ablations and the plot average over every task; each family's table over its own.
    stats = summarise(scores, paper)
    notes = {r["task_key"]: r["data_note"] for r in runs if r["data_note"]}
    for family, (name, title) in TABLES.items():
        part = scores[scores.task.map(lambda key: FAMILY.get(key, "user")) == family]
        if len(part):
            write_tables(summarise(part, paper), Path(args.tables_dir), name, title, notes)
    print(write_params_table(runs, Path(args.tables_dir)))
    write_plot(stats, runs, Path(args.plots_dir))
    main = main_metrics(stats)
    tables_dir = Path(args.tables_dir)
    boot = replicates(runs, stats) if args.claims or args.sweeps else None
    ablations = write_ablations(main, AVERAGE, args.sweeps, tables_dir, Path(args.plots_dir), boot)
    write_html_or_remove(
        tables_dir / "ablations.html",
        ablations,
        ablation_table.TITLE,
        ablation_table.NOTE.format(average=AVERAGE),
    )
    claims = write_claims(main, AVERAGE, args.claims, tables_dir, boot, collapsed_routers(runs))
    write_html_or_remove(tables_dir / "claims.html", claims, claim_table.TITLE, claim_table.NOTE)
    write_routing_plots(runs, Path(args.plots_dir))
    if claims is not None:
        print((tables_dir / "claims.md").read_text())
    speed = load_speed(args.speed)
    write_html_or_remove(tables_dir / "speed.html", speed_table(speed) if len(speed) else None, *SPEED_PAGE)
    if args.speed:
        average = stats[stats.task == AVERAGE].set_index("method")["mean"]
        write_speed_plots(
            args.speed, average, stats.task[stats.task != AVERAGE].nunique(), Path(args.plots_dir)
        )
    record = manifest(runs, args)
    write_json(args.manifest, record)
    if args.description:
        with atomic_file(args.description) as tmp:
            tmp.write_text(description(runs, main, record, args.config_file))
    print(f"report: {len(runs)} metrics files -> {args.tables_dir}, {args.plots_dir}, {args.manifest}")
    tracking.log_to_parent(args, [args.tables_dir, args.plots_dir, args.manifest, *args.log_artifact])
    config = read_config(args.config_file)
    tracking.summarise_parent(args, *parent_record(config, main, record))
    tracking.describe_parent(args, parent_note(runs, main, record, config))
    tracking.set_results_view(args, "tags.`rule` = 'evaluate'", VIEW_COLUMNS, "method", HEADLINE)


# ---------------------------------------------------------------------------------------------
# Inputs


def load_metrics(paths) -> tuple[list[dict], pd.DataFrame]:
    """One dict per metrics file (file, task, method, seed, model, effective params) and one score row per
    (file, result key, metric)."""
    runs, rows = [], []
    for path in map(str, paths):
        try:
            metrics = read_json(path)
        except FileNotFoundError:
            raise MoebertError(f"metrics file not found: {path}") from None
        except ValueError as err:
            raise MoebertError(f"metrics file {path} is not valid JSON: {err}") from None
        for key in ("task", "method", "seed", "results"):
            if metrics.get(key) is None:
                raise MoebertError(f"metrics file {path}: key {key!r} is missing or null")
        params = metrics.get("params") or {}
        runs.append(
            {
                "file": path,
                "task": metrics["task"],
                "method": metrics["method"],
                "seed": metrics["seed"],
                "model": metrics.get("model"),
                "effective_params": params.get("effective"),
                "total_params": params.get("total"),
                "per_expert_params": params.get("per_expert"),
                "task_key": next(iter(metrics["results"]), None),
                "data_note": metrics.get("data_note"),
                "examples": str(Path(path).parent / metrics["examples"]) if metrics.get("examples") else None,
                "routing": metrics.get("routing") or {},
            }
        )
        for task, values in metrics["results"].items():
            rows += [
                {
                    "method": metrics["method"],
                    "task": task,
                    "metric": metric,
                    "seed": metrics["seed"],
                    "value": float(value),
                    "file": path,
                }
                for metric, value in values.items()
            ]
    scores = pd.DataFrame(rows, columns=["method", "task", "metric", "seed", "value", "file"])
    twice = scores[scores.duplicated(["method", "task", "metric", "seed"], keep=False)]
    if len(twice):
        first = twice.iloc[0]
        raise MoebertError(
            f"{first.method} {first.task} seed {first.seed} is reported by more than one metrics "
            f"file: {', '.join(sorted(set(twice.file)))}"
        )
    return runs, scores


def replicates(runs: list[dict], stats: pd.DataFrame) -> Replicates | None:
    """The bootstrap replicates of every method's main metric (bootstrap.py) from the per-example predictions
    of the runs that have them; None when none has."""
    main = stats[stats.task != AVERAGE].drop_duplicates(["method", "task"])
    metrics = dict(zip(main.task, main.metric))
    tables = []
    for run in runs:
        if run["examples"] is None:
            continue
        try:
            examples = pd.read_csv(run["examples"])
        except FileNotFoundError:
            raise MoebertError(
                f"{run['file']}: its per-example predictions {run['examples']} are missing"
            ) from None
        for key, table in examples.groupby("split", sort=False):
            tables.append((run["method"], run["seed"], key, table.reset_index(drop=True)))
    return Replicates(tables, metrics) if tables else None


def load_paper(path) -> pd.DataFrame:
    try:
        paper = pd.read_csv(path)
    except FileNotFoundError:
        raise MoebertError(f"paper results file not found: {path}") from None
    missing = {"model", "task", "metric", "value"} - set(paper.columns)
    if missing:
        raise MoebertError(f"paper results file {path}: missing column(s) {', '.join(sorted(missing))}")
    return paper


# ---------------------------------------------------------------------------------------------
# Tables


def column_order(scores: pd.DataFrame, paper: pd.DataFrame) -> list[tuple[str, str]]:
    """(task, metric) columns: tasks in the paper's order, then other tasks alphabetically; within a task the
    paper's metrics first (its headline metric leads), then the rest as they appear."""
    rank = {task: i for i, task in enumerate(dict.fromkeys(paper.task))}
    tasks = sorted(scores.task.unique(), key=lambda task: (rank.get(task, len(rank)), task))
    columns = []
    for task in tasks:
        ours = list(dict.fromkeys(scores.metric[scores.task == task]))
        ranked = [m for m in dict.fromkeys(paper.metric[paper.task == task]) if m in ours]
        columns += [(task, metric) for metric in ranked + [m for m in ours if m not in ranked]]
    return columns


def main_metric(key: str, metrics: list[str], paper: pd.DataFrame | None = None) -> str:
    """A result's main metric among `metrics`: the paper's first for that result key (its headline, e.g. F1 for
    MRPC), else the first given; as the tables order a task's columns."""
    paper = load_paper(PAPER_CSV) if paper is None else paper
    ranked = [m for m in dict.fromkeys(paper.metric[paper.task == key]) if m in metrics]
    return (ranked or list(metrics))[0]


def main_result(results: dict) -> tuple[str, float]:
    """("<result key>/<metric>", value) of the main metric of a metrics file's first result."""
    key, values = next(iter(results.items()))
    metric = main_metric(key, list(values))
    return f"{key}/{metric}", float(values[metric])


def method_order(methods) -> list[str]:
    return [m for m in METHOD_ORDER if m in methods] + sorted(set(methods) - set(METHOD_ORDER))


def summarise(scores: pd.DataFrame, paper: pd.DataFrame) -> pd.DataFrame:
    """Tidy table: mean and sample std (ddof=1; NaN for one seed) over seeds per (method, task, metric), the
    paper's number for the method's paper row and ours - paper. Rows with task 'avg' hold the average over
    all task columns of each task's main (first) metric, for methods (and paper rows) that have all of them."""
    stats = (
        scores.groupby(["method", "task", "metric"])["value"]
        .agg(n="count", mean="mean", std="std")
        .reset_index()
    )
    stats["paper_model"] = stats.method.map(PAPER_MODEL)
    reference = paper.rename(columns={"model": "paper_model", "value": "paper"})
    stats = stats.merge(
        reference[["paper_model", "task", "metric", "paper"]],
        on=["paper_model", "task", "metric"],
        how="left",
    )
    stats["diff"] = stats["mean"] - stats["paper"]

    columns = column_order(scores, paper)
    main = list(dict.fromkeys(task for task, _ in columns))  # a task's first column is its main metric
    main = [(task, next(m for t, m in columns if t == task)) for task in main]
    averages = []
    for method, rows in stats.groupby("method"):
        cells = rows.set_index(["task", "metric"]).reindex(main)
        if cells["mean"].notna().all():
            avg = {
                "method": method,
                "task": AVERAGE,
                "metric": "main",
                "n": cells.n.min(),
                "mean": cells["mean"].mean(),
                "paper_model": PAPER_MODEL.get(method),
            }
            avg["paper"] = cells.paper.mean() if cells.paper.notna().all() else float("nan")
            avg["diff"] = avg["mean"] - avg["paper"]
            averages.append(avg)
    stats = pd.concat([stats, pd.DataFrame(averages)], ignore_index=True)

    order = {key: i for i, key in enumerate(columns + [(AVERAGE, "main")])}
    methods = {m: i for i, m in enumerate(method_order(stats.method.unique()))}
    stats["_order"] = [(methods[m], order[(t, k)]) for m, t, k in zip(stats.method, stats.task, stats.metric)]
    return stats.sort_values("_order").drop(columns="_order").reset_index(drop=True)


def main_metrics(stats: pd.DataFrame) -> pd.DataFrame:
    """Mean main metric per method (rows) and task (columns, in table order), and their average."""
    main = stats.drop_duplicates(["method", "task"])  # summarise orders a task's main metric first
    wide = main.pivot(index="method", columns="task", values="mean")
    tasks = [task for task in dict.fromkeys(main.task) if task != AVERAGE]
    return wide.reindex(index=list(dict.fromkeys(main.method)), columns=[*tasks, AVERAGE])


def _number(value, fmt: str = ".1f") -> str:
    return "" if pd.isna(value) else format(value, fmt)


def display_table(stats: pd.DataFrame) -> pd.DataFrame:
    """Wide table for people: per method a row 'ours' (mean ± std, std only with >1 seed) and, when the paper
    has numbers for it, a row with the paper's row and one with ours - paper."""
    stats = stats.assign(
        column=[AVERAGE if t == AVERAGE else f"{t} {m}" for t, m in zip(stats.task, stats.metric)]
    )
    columns = list(dict.fromkeys(stats.column))
    rows = []
    for method in dict.fromkeys(stats.method):
        cells = stats[stats.method == method].set_index("column")
        seeds = cells.n[cells.task != AVERAGE]
        n = str(seeds.min()) if seeds.min() == seeds.max() else f"{seeds.min()}-{seeds.max()}"
        ours = {
            c: _number(r["mean"]) + (f" ± {r['std']:.1f}" if r.n > 1 and c != AVERAGE else "")
            for c, r in cells.iterrows()
        }
        rows.append({"method": method, "row": "ours", "n": n, **ours})
        if cells.paper.notna().any():
            model = cells.paper_model.iloc[0]
            rows.append(
                {
                    "method": method,
                    "row": f"paper: {model}",
                    "n": "",
                    **{c: _number(v) for c, v in cells.paper.items()},
                }
            )
            rows.append(
                {
                    "method": method,
                    "row": "ours - paper",
                    "n": "",
                    **{c: _number(v, "+.1f") for c, v in cells["diff"].items()},
                }
            )
    return pd.DataFrame(rows).reindex(columns=["method", "row", "n", *columns]).fillna("")


def write_tables(
    stats: pd.DataFrame,
    tables_dir: Path,
    name: str = "glue",
    title: str = "GLUE dev results",
    data_notes: dict[str, str] | None = None,
) -> None:
    """<name>.csv, .md and .tex; a task of `data_notes` (result key -> how its data is not the standard
    split) gets a * on its columns and the note below the table."""
    notes = {key: text for key, text in (data_notes or {}).items() if key in set(stats.task)}
    marked = stats.assign(task=[f"{t}*" if t in notes else t for t in stats.task])
    table = display_table(marked)
    note = (
        "Mean ± sample std over n seeds (std only when n > 1), in percent. 'paper' rows: the MoEBERT "
        f"paper's numbers for the corresponding model; '{AVERAGE}': mean over the task columns of each task's "
        "first (main) metric, only for rows that have all of them."
    )
    note += "".join(
        f" *{key}: {text}; not comparable with the paper's numbers." for key, text in notes.items()
    )
    with atomic_file(tables_dir / f"{name}.csv") as tmp:
        # 6 decimals: exact enough, and no float noise like 0.0999999
        stats.assign(data_note=stats.task.map(notes)).round(6).to_csv(tmp, index=False)
    with atomic_file(tables_dir / f"{name}.md") as tmp:
        tmp.write_text(f"# {title}\n\n{note}\n\n{table.to_markdown(index=False, disable_numparse=True)}\n")
    latex = table.to_latex(index=False, escape=True, column_format="ll" + "r" * (table.shape[1] - 2))
    with atomic_file(tables_dir / f"{name}.tex") as tmp:
        tmp.write_text(f"% {note}\n" + latex.replace("±", r"$\pm$"))
    write_html(tables_dir / f"{name}.html", table, title, note)


def parameter_table(runs: list[dict]) -> pd.DataFrame:
    """Per method (rows in table order) its parameters in millions: the mean over its runs, which differ
    only by task head, left out of the counts."""
    columns = {"total_params": "total", "effective_params": "effective", "per_expert_params": "per expert"}
    frame = pd.DataFrame(runs)[["method", *columns]].astype({c: float for c in columns})
    table = frame.groupby("method")[list(columns)].mean().rename(columns=columns) / 1e6
    return table.loc[method_order(table.index)]


def switch_mpoe_ratio(table: pd.DataFrame) -> str | None:
    if not {"switch", "mpoe"} <= set(table.index):
        return None
    total = table.loc["switch", "total"] / table.loc["mpoe", "total"]
    experts = table.loc["switch", "per expert"] / table.loc["mpoe", "per expert"]
    return (
        f"Total parameters switch / mpoe: {total:.1f}x (MPOE paper, against Switch Transformers on T5 and "
        f"GPT-2: {MPOE_PAPER_REDUCTION}x, with more experts: the ratio grows with their number); parameters "
        f"per added expert: {experts:.1f}x."
    )


PARAMS_NOTE = (
    "Encoder with embeddings and pooler, no task head (the paper's count); effective = active per token (one "
    "expert per layer); per expert = what one more expert in every layer adds."
)


def write_params_table(runs: list[dict], tables_dir: Path) -> str:
    """params.csv and params.md; returns the markdown."""
    table = parameter_table(runs)
    ratio = switch_mpoe_ratio(table)
    with atomic_file(tables_dir / "params.csv") as tmp:
        table.mul(1e6).round().astype("Int64").rename_axis("method").to_csv(tmp)
    text = (
        f"# Parameters (millions)\n\n{PARAMS_NOTE}\n\n"
        + table.to_markdown(floatfmt=".2f")
        + "\n"
        + (f"\n{ratio}\n" if ratio else "")
    )
    with atomic_file(tables_dir / "params.md") as tmp:
        tmp.write_text(text)
    note = PARAMS_NOTE + (f" {ratio}" if ratio else "")
    write_html(
        tables_dir / "params.html",
        table.rename_axis("method").reset_index(),
        "Parameters (millions)",
        note,
        2,
    )
    return text


# ---------------------------------------------------------------------------------------------
# HTML pages: Snakemake's report shows an HTML result in the page (a CSV only as a download link)

# The speed table's columns, as `moebert speed` names them and as the page heads them.
SPEED_COLUMNS = {
    "model": "model",
    "weights": "weights",
    "source": "source",
    "device": "device",
    "dtype": "dtype",
    "threads": "threads",
    "seq_len": "length",
    "batch_size": "batch",
    "latency_ms_median": "median ms",
    "latency_ms_p90": "p90 ms",
    "examples_per_s": "examples/s",
    "params_effective": "effective params (M)",
}
SPEED_NOTE = (
    "One forward pass per batch (moebert speed): median and 90th percentile latency over the repeats, and "
    "examples per second at the median; trained models and, where the config asks, random-weight models of a "
    "named size ('source')."
)
SPEED_PAGE = ("Inference speed", SPEED_NOTE)
PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: sans-serif; font-size: 14px; margin: 1em; }}
table {{ border-collapse: collapse; }}
th, td {{ padding: 0.2em 0.6em; border-bottom: 1px solid #ddd; text-align: right; white-space: nowrap; }}
th {{ background: #f3f3f3; }}
td:first-child, th:first-child {{ text-align: left; }}
p {{ max-width: 60em; }}
</style></head>
<body><h1>{title}</h1>
<p>{note}</p>
{table}
</body></html>
"""


def write_html(path: Path, table: pd.DataFrame, title: str, note: str = "", decimals: int = 1) -> Path:
    """`table` as a page of its own: the title, the note and the table, its numbers with `decimals` (as the
    markdown table beside it)."""
    body = table.to_html(
        index=False, border=0, na_rep="", float_format=lambda v: f"{v:.{decimals}f}", escape=True
    )
    with atomic_file(path) as tmp:
        # The notes are the markdown tables' own: their **bold** is bold in the page too.
        note = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", html_escape(note))
        tmp.write_text(PAGE.format(title=html_escape(title), note=note, table=body))
    return path


def write_html_or_remove(path: Path, table: pd.DataFrame | None, title: str, note: str) -> None:
    """The page of a table the config asks for; a stale page removed when it asks for none."""
    if table is None:
        path.unlink(missing_ok=True)
        return
    write_html(path, table, title, note)


def speed_table(speed: pd.DataFrame) -> pd.DataFrame:
    """The timings of every speed results file, one row per model, length and batch size."""
    table = speed[list(SPEED_COLUMNS)].rename(columns=SPEED_COLUMNS)
    return table.assign(**{"effective params (M)": table["effective params (M)"] / 1e6})


def html_escape(text: str) -> str:
    import html

    return html.escape(text, quote=False)


# ---------------------------------------------------------------------------------------------
# The report's first page


def read_config(path: str | None) -> dict:
    """The config the results came from (the workflow's resolved results/config.json, or a YAML file)."""
    import yaml

    if path is None:
        return {}
    config = yaml.safe_load(Path(path).read_text())
    return config if isinstance(config, dict) else {}


def description(runs: list[dict], main: pd.DataFrame, record: dict, config_file: str | None) -> str:
    """What ran (tasks, methods, seeds, the teacher), the config and its hash, the commit and the headline:
    each method's average main metric, as reStructuredText."""
    from moebert.config import config_hash

    config = read_config(config_file)
    tasks = sorted({r["task"] for r in runs})
    methods = method_order({r["method"] for r in runs})
    seeds = ", ".join(map(str, record["seeds"]))
    lines = [
        f"Results of {len(runs)} evaluations: tasks {', '.join(tasks)}; methods {', '.join(methods)}; seeds {seeds}.",
        "",
    ]
    if config:
        teacher = config.get("teacher", {}).get("model", "unknown")
        what = f"experiment ``{config.get('experiment')}``, hash ``{config_hash(config)}``"
        lines.append(
            f"- config: {what} (``{config_file}``: every key with its default); teacher ``{teacher}``"
        )
    hardware = record["hardware"]
    lines += [
        f"- commit: ``{record['git_commit']}``; report made {record['created']} on {hardware['cpu']}"
        + (f" and {hardware['gpu']}" if hardware["gpu"] else ""),
        "",
    ]
    average = main[AVERAGE].dropna() if AVERAGE in main else pd.Series(dtype=float)
    if len(average):
        lines += ["Average main metric over the tasks (%):", ""]
        lines += [f"- {method}: {value:.1f}" for method, value in average.items()]
        lines.append("")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# The parent run of the config's MLflow runs

HEADLINE = (
    "MoEBERT reproduction: a fine-tuned encoder teacher per task (BERT in the paper), its FFNs split into experts that share the most "
    "important neurons, one expert per token, trained by layer-wise distillation and evaluated on the dev split."
)


def parent_record(config: dict, main: pd.DataFrame, record: dict) -> tuple[dict, dict, dict]:
    """(params, metrics, tags) of the parent run: the config without the keys that only add outputs (they do
    not change the run, whose name is the hash of the rest), each method's main metric per task and their
    average as `<method>/<task>` (`<method>/avg`), and the config hash and commit (tags: a new commit reuses
    the parent)."""
    from moebert.config import config_hash
    from moebert.config.settings import OUTPUT_ONLY_KEYS

    params = {key: value for key, value in config.items() if key not in OUTPUT_ONLY_KEYS}
    metrics = {
        f"{method}/{task}": value
        for method, row in main.iterrows()
        for task, value in row.items()
        if pd.notna(value)
    }
    tags = {"git_commit": record["git_commit"]}
    if config:
        tags["config_hash"] = config_hash(config)
    return params, metrics, tags


# The columns of the experiment's results view, which lists the evaluate runs by method: what each scored and
# its main metric (a method's row: their average).
VIEW_COLUMNS = [
    *(f"tags.`{key}`" for key in ("task", "method", "seed")),
    "metrics.`main`",
    "tags.`config_hash`",
]


def parent_note(runs: list[dict], main: pd.DataFrame, record: dict, config: dict) -> str:
    """The parent run's description (markdown): the headline, what ran, and the main metrics' table."""
    tasks = ", ".join(sorted({r["task"] for r in runs}))
    seeds = ", ".join(map(str, record["seeds"]))
    teacher = (config.get("teacher") or {}).get("model", "unknown")
    table = main.map(lambda v: "-" if pd.isna(v) else f"{v:.1f}").rename_axis("method").reset_index()
    lines = [
        HEADLINE,
        "",
        (
            f"This run groups the jobs of experiment `{config.get('experiment', '')}` (teacher `{teacher}`; tasks "
            f"{tasks}; seeds {seeds}; commit `{record['git_commit']}`): its params are the config, its metrics each "
            "method's main metric per task and their average (`<method>/<task>`), its artifacts the tables, plots and "
            "manifest. Main metric per task (%), mean over seeds:"
        ),
        "",
        table.to_markdown(index=False, disable_numparse=True),
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Plot


def write_plot(stats: pd.DataFrame, runs: list[dict], plots_dir: Path) -> None:
    """Task-average score against effective (active per token) parameters, one point per method that has
    both. Without any such method no plot is written and a stale one is removed."""
    import matplotlib

    matplotlib.use("Agg")  # no display on cluster nodes
    import matplotlib.pyplot as plt

    params = pd.DataFrame(runs).astype({"effective_params": float}).groupby("method").effective_params.mean()
    avg = stats[stats.task == AVERAGE].set_index("method")["mean"]
    points = pd.DataFrame({"score": avg, "params": params / 1e6}).dropna()
    points = points.loc[method_order(points.index)]
    plots_dir.mkdir(parents=True, exist_ok=True)
    paths = [plots_dir / f"{PLOT_NAME}.{fmt}" for fmt in ("png", "svg")]
    if points.empty:
        log.warning("no method has both a task average and effective params: no plot written")
        for path in paths:
            path.unlink(missing_ok=True)
        return
    tasks = stats.task[stats.task != AVERAGE].nunique()
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.scatter(points.params, points.score)
    for method, point in points.iterrows():
        ax.annotate(method, (point.params, point.score), textcoords="offset points", xytext=(5, 5))
    ax.set_xlabel("effective parameters (millions, active per token)")
    ax.set_ylabel(f"average main metric, {tasks} tasks (%)")
    ax.margins(0.2)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    for path in paths:
        with atomic_file(path) as tmp:
            fig.savefig(tmp, format=path.suffix[1:], dpi=150, bbox_inches="tight")  # keep edge labels
    plt.close(fig)


# ---------------------------------------------------------------------------------------------
# Manifest


def sha256(path) -> str:
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    except FileNotFoundError:
        raise MoebertError(f"file not found: {path}") from None
    return digest.hexdigest()


def _files(paths) -> list[Path]:
    """The given files, with directories replaced by the files under them."""
    files = []
    for path in map(Path, paths):
        files += sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    return files


def hardware() -> dict:
    """The machine that runs the report (on a cluster not necessarily the one that trained)."""
    import torch

    cpu = platform.processor() or "unknown"
    if Path("/proc/cpuinfo").is_file():
        names = [
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ]
        cpu = names[0] if names else cpu
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"cpu": cpu, "cores": os.cpu_count(), "gpu": gpu, "platform": platform.platform()}


def versions() -> dict:
    found = {}
    for name in PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue  # e.g. snakemake when the report runs outside the workflow
    return found


def manifest(runs: list[dict], args: argparse.Namespace) -> dict:
    out = {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        # The checkout of the package that made the numbers, not the directory the report runs in (the
        # workflow's --directory may be anywhere).
        "git_commit": package_commit(),
        "python": platform.python_version(),
        "packages": versions(),
        "hardware": hardware(),
        "seeds": sorted({r["seed"] for r in runs}),
        "runs": [
            {**{k: v for k, v in r.items() if k != "routing"}, "sha256": sha256(r["file"])} for r in runs
        ],
        "data_files": {str(p): sha256(p) for p in _files(args.data_files)},
        "paper_results": {"path": str(args.paper), "sha256": sha256(args.paper)},
    }
    if args.config_file:
        out["config_file"] = {"path": args.config_file, "sha256": sha256(args.config_file)}
    return out
