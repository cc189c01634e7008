"""The Snakemake workflow: dry runs of the shipped configs, lint, config validation, and (slow) the tiny
config through the whole DAG, an idle rerun, and a killed training job that resumes."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pandas as pd
import psutil
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SNAKEFILE = REPO / "workflow" / "Snakefile"  # what `snakemake` finds by itself from the repository root
LAPTOP_TASKS = len(yaml.safe_load((REPO / "config" / "config.yaml").read_text())["tasks"])


def snakemake(*args, cwd=REPO, timeout=600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "snakemake", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def job_counts(output: str) -> dict[str, int]:
    """Rule -> job count from the 'Job stats' table of a dry run."""
    table = output.split("Job stats:", 1)[1]
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.MULTILINE)}


def tiny_run_args(workdir: Path, glue: Path, *extra) -> list:
    """Run .test/config/config.yaml in its own working directory, so tests never touch the repo's results/."""
    return [
        "-s",
        SNAKEFILE,
        "--directory",
        workdir,
        "--configfile",
        REPO / ".test" / "config" / "config.yaml",
        "--config",
        f"data={glue}",
        *extra,
    ]


# ---------------------------------------------------------------------------------------------
# Fast: dry runs, lint, schema


@pytest.mark.parametrize(
    "configfile, tasks, qa_tasks, seeds, trained, majority, speed_gpus, device",
    [
        (None, LAPTOP_TASKS, 0, 1, 2, 1, {"cpu": "0"}, "auto"),
        ("config/paper.yaml", 10, 2, 3, 7, 1, {"cpu": "0", "cuda": "1"}, "cuda"),
        ("config/claims.yaml", 3, 0, 2, 12, 1, {"cpu": "0"}, "auto"),
        ("config/sweeps.yaml", 3, 0, 1, 14, 0, {"cpu": "0"}, "auto"),
        ("config/mpoe.yaml", 3, 0, 2, 3, 0, {"cpu": "0"}, "auto"),
        ("config/laptop-qa.yaml", 1, 1, 1, 2, 0, {"cpu": "0"}, "auto"),
        ("config/tiny-qa.yaml", 1, 1, 1, 2, 1, {"cpu": "0"}, "auto"),
        ("config/explain-distill.yaml", 2, 0, 2, 3, 0, {"cpu": "0"}, "auto"),
        ("config/explain-width.yaml", 2, 0, 2, 4, 0, {"cpu": "0"}, "auto"),
        ("config/explain-router.yaml", 2, 0, 2, 4, 0, {"cpu": "0"}, "auto"),
    ],
    ids=[
        "laptop-default",
        "paper",
        "claims",
        "sweeps",
        "mpoe",
        "laptop-qa",
        "tiny-qa",
        "explain-distill",
        "explain-width",
        "explain-router",
    ],
)
def test_dry_run_of_shipped_configs(
    configfile, tasks, qa_tasks, seeds, trained, majority, speed_gpus, device, glue_dir
):
    # -F: count every job even where a previous run left results; --nolock: a running workflow is fine.
    args = ["-n", "-p", "-F", "--nolock"] + (
        ["--configfile", configfile] if configfile else ["--config", f"data={glue_dir}"]
    )
    proc = snakemake(*args)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    counts = job_counts(proc.stdout)
    runs = tasks * seeds
    assert counts["prepare_data"] == tasks
    for rule in ("finetune", "importance"):  # one teacher and one importance run per task and seed
        assert counts[rule] == runs, rule
    assert counts["adapt"] == counts["distill"] == trained * runs
    glue_runs = (tasks - qa_tasks) * seeds  # QA tasks have no majority row
    assert counts["evaluate"] == (1 + trained) * runs + majority * glue_runs  # the teacher and every method
    assert counts["report"] == 1
    # One speed job per device for the random BERT-base and one for the trained models; GPU only for cuda.
    shipped = yaml.safe_load((REPO / (configfile or "config/config.yaml")).read_text())
    random = shipped.get("speed", {}).get("random", ["bert-base"])  # the schema's default
    assert counts.get("speed_random", 0) == (len(speed_gpus) if random else 0)
    assert counts["speed_trained"] == len(speed_gpus)
    job = r"^\s*rule (speed_\w+):.*?device=(\w+).*?resources: [^\n]*gpu=(\d+)"
    jobs = re.findall(job, proc.stdout, re.DOTALL | re.MULTILINE)
    assert {(device, gpus) for _, device, gpus in jobs} == set(speed_gpus.items())
    # Jobs that requested a GPU must run on it (and fail if they got none); the others take CUDA if present.
    for stage in ("finetune", "importance", "distill", "evaluate"):
        commands = re.findall(rf"^Shell command: moebert {stage} .*$", proc.stdout, re.MULTILINE)
        assert commands and all(f"--device {device} " in c for c in commands), stage
    evaluates = re.findall(r"^Shell command: moebert evaluate .*$", proc.stdout, re.MULTILINE)
    assert sum("--majority" in c for c in evaluates) == majority * glue_runs  # the trivial row needs no model
    assert all(("--majority" in c) != ("--model" in c) for c in evaluates)
    # It counts the train rows the teacher trains on, and never waits for a GPU.
    cap = shipped.get("task_settings", {}).get("stsb", {}).get("max_train_samples")
    for command in (c for c in evaluates if "--majority" in c and "--task stsb" in c):
        assert (f"--max-train-samples {cap} " in command) if cap else ("--max-train-samples" not in command)
    majority_jobs = re.findall(
        r"^\s*rule evaluate:\n(?:.*\n)*?\s+wildcards: task=\w+, method=majority.*\n"
        r"\s+resources: [^\n]*gpu=(\d+)",
        proc.stdout,
        re.MULTILINE,
    )
    assert len(majority_jobs) == majority * glue_runs and set(majority_jobs) <= {"0"}
    # A hub teacher is fetched once, on the submit host, and every teacher fine-tunes the fetched copy.
    hub_teacher = configfile == "config/paper.yaml"
    assert counts.get("fetch_model", 0) == (1 if hub_teacher else 0)
    finetunes = re.findall(r"^Shell command: moebert finetune .*$", proc.stdout, re.MULTILINE)
    assert all(("--model resources/models/bert-base-uncased " in c) == hub_teacher for c in finetunes)
    # QA jobs cut windows with the task's stride; an article split is made by prepare_data alone.
    # The fetching rules alone turn the hub back on for their command.
    prepares = re.findall(
        r"^Shell command: HF_HUB_OFFLINE=0 HF_DATASETS_OFFLINE=0 moebert prepare-data .*$",
        proc.stdout,
        re.MULTILINE,
    )
    assert len(prepares) == tasks
    split = shipped.get("task_settings", {}).get("squad", {}).get("eval_articles")
    assert sum("--eval-articles" in c for c in prepares) == (1 if split else 0)
    if qa_tasks:
        squad_jobs = re.findall(r"^Shell command: moebert (\w+) --task squad\b.*$", proc.stdout, re.MULTILINE)
        assert {"finetune", "importance", "distill", "evaluate"} <= set(squad_jobs)
        assert "results/tables/squad.md" in proc.stdout
    if "mpoe" in str(configfile) or "paper" in str(configfile):
        # MPO experts need no importance scores; the Switch copies are MoE experts sharing all
        adapts = re.findall(r"^Shell command: moebert adapt .*$", proc.stdout, re.MULTILINE)
        mpoe = [c for c in adapts if "--student mpoe" in c]
        assert len(mpoe) == runs and not any("--importance" in c for c in mpoe)
        assert all("--router gate-token" in c for c in mpoe)
        switch = [c for c in adapts if "--student moe" in c and "--router gate-token" in c]
        assert len(switch) == runs and all("--gate-scale branch" in c for c in switch)  # Switch's gate place
        masks = re.findall(
            r"^Shell command: moebert distill .*--gradient-mask 0\.5 .*$", proc.stdout, re.MULTILINE
        )
        assert len(masks) == runs


def test_dry_run_of_the_teacher_and_majority_config():
    """explain-majority.yaml: two MRPC teachers on every train row and the majority row, nothing distilled."""
    proc = snakemake("-n", "-p", "-F", "--nolock", "--configfile", "config/explain-majority.yaml")
    assert proc.returncode == 0, proc.stderr + proc.stdout
    counts = job_counts(proc.stdout)
    assert counts["finetune"] == 2 and counts["evaluate"] == 4  # two teachers, two majority rows
    assert not {"importance", "adapt", "distill"} & set(counts)
    finetunes = re.findall(r"^Shell command: moebert finetune .*$", proc.stdout, re.MULTILINE)
    assert len(finetunes) == 2 and all(
        "--task mrpc " in c and "--max-train-samples" not in c for c in finetunes
    )


def test_a_pinned_teacher_revision_reaches_the_fetch_alone():
    """config/deberta-v3.yaml pins the commit whose weights are safetensors; RoBERTa's fetch takes main."""
    for configfile, slug, flag in [
        (
            "deberta-v3.yaml",
            "microsoft--deberta-v3-base",
            "--revision 82d8d18a7b88346261ba15d8b1044900a452cf90 ",
        ),
        ("roberta.yaml", "FacebookAI--roberta-base", None),
    ]:
        proc = snakemake(
            f"resources/models/{slug}", "-n", "-p", "-F", "--nolock", "--configfile", f"config/{configfile}"
        )
        assert proc.returncode == 0, proc.stderr + proc.stdout
        commands = re.findall(r"^Shell command: .*moebert fetch-model .*$", proc.stdout, re.MULTILINE)
        assert len(commands) == 1, proc.stdout
        assert (flag in commands[0]) if flag else ("--revision" not in commands[0]), commands[0]


def test_laptop_default_reads_the_shared_data_beside_the_repo():
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    assert config["data"] == "../shared/data/glue"  # relative to the repository root, where users run


def test_lint_is_clean():
    proc = snakemake("--lint")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Congratulations" in proc.stdout + proc.stderr


# What Snakemake itself puts in every workflow file's namespace: the rule language's functions and objects.
SNAKEMAKE_NAMES = {
    *("workflow", "config", "rules", "checkpoints", "shell", "scatter", "gather", "storage", "access"),
    *("expand", "temp", "temporary", "directory", "protected", "ancient", "touch", "pipe", "service"),
    *("report", "multiext", "unpack", "local", "ensure", "flag", "glob_wildcards", "repeat", "lookup"),
    *("evaluate", "branch", "collect", "exists", "update", "before_update", "from_queue"),
}


def workflow_names(path: Path) -> tuple[set[str], set[str], set[str]]:
    """(names a workflow file reads from its module namespace, names it defines there, names it imports there),
    from the Python that Snakemake compiles the file to."""
    import builtins
    import symtable
    import types

    import snakemake.api  # noqa: F401 (imports the modules snakemake.parser needs in their order)
    from snakemake.parser import parse
    from snakemake.sourcecache import LocalSourceFile

    class Sources:
        def open(self, source):
            return open(source.get_path_or_uri(secret_free=True), encoding="utf-8")

    code, _ = parse(LocalSourceFile(str(path)), types.SimpleNamespace(sourcecache=Sources()), {})
    used, defined, imported = set(), set(), set()

    def walk(table):
        module = table.get_type() == "module"
        for symbol in table.get_symbols():
            if module and symbol.is_imported():
                imported.add(symbol.get_name())
            elif module and symbol.is_assigned():
                defined.add(symbol.get_name())
            if symbol.is_referenced() and (module or symbol.is_global()):
                used.add(symbol.get_name())
        for child in table.get_children():
            walk(child)

    walk(symtable.symtable(code, str(path), "exec"))
    return used - set(dir(builtins)), defined, imported


def test_every_workflow_file_imports_or_defines_what_it_uses():
    """No name works only because another file defined or imported it first: every workflow file uses the names
    it defines or imports, Snakemake's, and what common.smk (included first by the Snakefile) defines."""
    common = workflow_names(REPO / "workflow" / "rules" / "common.smk")[1]
    files = [SNAKEFILE, *sorted((REPO / "workflow" / "rules").glob("*.smk"))]
    for path in files:
        used, defined, imported = workflow_names(path)
        assert used - defined - imported - common - SNAKEMAKE_NAMES == set(), path.name
    # common.smk's names reach the rules because the Snakefile includes it before them.
    includes = re.findall(r'^include: "(.+)"$', files[0].read_text(), re.MULTILINE)
    assert includes[0] == "rules/common.smk"
    assert sorted(includes[1:]) == sorted(f"rules/{p.name}" for p in files[1:] if p.name != "common.smk")


def test_an_empty_config_is_complete_from_the_schema_defaults(tmp_path):
    empty = tmp_path / "empty.yaml"
    empty.write_text("{}\n")
    proc = snakemake("-n", "--nolock", "--directory", tmp_path, "--configfile", empty)
    assert proc.returncode == 0, proc.stderr
    assert job_counts(proc.stdout)["distill"] == 7 * 3  # the paper's seven tasks, three seeds


def test_one_teacher_per_task_with_per_seed_false(tmp_path, glue_dir):
    """The reference's protocol: one teacher (and importance) per task, every seed's students distilled from it."""
    from moebert.dag import dry_run

    config = tmp_path / "one-teacher.yaml"
    raw = yaml.safe_load((REPO / ".test" / "config" / "config.yaml").read_text())
    config.write_text(
        yaml.safe_dump(
            {**raw, "data": str(glue_dir), "seeds": [3, 5], "teacher": {**raw["teacher"], "per_seed": False}}
        )
    )
    found = dry_run(["--configfile", str(config), "--directory", str(tmp_path), "-F", "--nolock"])
    by_rule = {}
    for job in found:
        by_rule.setdefault(job.rule, []).append(job)
    assert {job.wildcards["seed"] for job in by_rule["finetune"] + by_rule["importance"]} == {"3"}
    assert {job.wildcards["seed"] for job in by_rule["distill"]} == {"3", "5"}
    for job in by_rule["distill"] + by_rule["adapt"]:
        assert f"results/teacher/{job.wildcards['task']}/seed3" in job.input
    teacher_rows = [job for job in by_rule["evaluate"] if job.wildcards["method"] == "teacher"]
    assert {job.wildcards["seed"] for job in teacher_rows} == {"3"}


def test_a_data_directory_with_a_newer_mtime_prepares_nothing_again(tmp_path, glue_dir):
    """A re-synced or re-mounted data share gets a new mtime; the prepared tasks must not be redone (every
    job of a campaign follows from them)."""
    from moebert.dag import dry_run

    data = tmp_path / "glue"
    for name in ("RTE", "STS-B"):
        shutil.copytree(glue_dir / name, data / name)
    config = tmp_path / "config.yaml"
    raw = yaml.safe_load((REPO / ".test" / "config" / "config.yaml").read_text())
    config.write_text(yaml.safe_dump({**raw, "data": str(data)}))
    for task in ("rte", "stsb"):
        prepared = tmp_path / "resources" / "data" / task
        prepared.mkdir(parents=True)
        os.utime(prepared, (1e9, 1e9))  # 2001, older than the copied data
    rules = {
        job.rule for job in dry_run(["--configfile", str(config), "--directory", str(tmp_path), "--nolock"])
    }
    assert "finetune" in rules and "prepare_data" not in rules, rules


@pytest.mark.skipif(not shutil.which("sbatch"), reason="the slurm executor needs SLURM's commands")
def test_a_cluster_run_refuses_the_shared_sqlite_default_before_any_job(tmp_path, glue_dir, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    args = ("--executor", "slurm", "--jobs", 1, "--slurm-init-seconds-before-status-checks", 1)
    args += ("--directory", tmp_path, "--config", f"data={glue_dir}")
    proc = snakemake(*args, "--until", "resolved_config")
    assert proc.returncode != 0
    assert (
        "tracking: the slurm executor's jobs would all log to the sqlite file sqlite:///results/mlflow/mlflow.db"
        " on the shared file system. Start a tracking server on this host, in tmux: scripts/mlflow-server.sh"
    ) in proc.stderr, proc.stderr[-3000:]
    assert not (tmp_path / "results").exists()
    # Named in the config, it is used as given (resolved_config is a local rule: no cluster needed).
    allowed = snakemake(
        *args, "tracking_uri=sqlite:///results/mlflow/mlflow.db", "--until", "resolved_config"
    )
    assert allowed.returncode == 0, allowed.stderr[-3000:]
    assert (tmp_path / "results" / "config.json").is_file()


def test_a_store_copied_from_another_directory_is_refused_before_any_job(tmp_path, glue_dir, monkeypatch):
    """MLflow keeps absolute artifact locations: a copied project's store would write into the original's
    results/. The run stops before any job and says what to do; the original runs."""
    from mlflow.tracking import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    store = tmp_path / "original" / "results" / "mlflow"
    client = MlflowClient(tracking_uri=f"sqlite:///{store}/mlflow.db")
    client.create_experiment("moebert-laptop", artifact_location=(store / "artifacts").as_uri())
    shutil.copytree(tmp_path / "original", tmp_path / "copy")
    args = ("--cores", 1, "--config", f"data={glue_dir}", "--until", "resolved_config")
    proc = snakemake("--directory", tmp_path / "copy", *args)
    assert proc.returncode != 0
    assert (
        f"tracking: the MLflow store results/mlflow/mlflow.db keeps the files of experiment 'moebert-laptop' in "
        f"{(store / 'artifacts').as_uri()}, not beside it in {(tmp_path / 'copy' / store.relative_to(tmp_path / 'original')).as_uri()}/artifacts"
    ) in proc.stderr.replace("\n", " "), proc.stderr[-3000:]
    assert not (tmp_path / "copy" / "results" / "config.json").exists()
    home = snakemake("--directory", tmp_path / "original", *args)
    assert home.returncode == 0, home.stderr[-3000:]


def test_invalid_config_stops_before_any_job_naming_the_key(tmp_path):
    """The workflow reads its config through moebert.config (tests/test_config.py checks every error)."""
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"methods": {"moebert": {"router": "hash-randm"}}}))
    proc = snakemake("-n", "--nolock", "--directory", tmp_path, "--configfile", bad)
    assert proc.returncode != 0
    output = proc.stdout + proc.stderr
    assert (
        "invalid config: key methods.moebert.router: 'hash-randm' is not allowed; did you mean 'hash-random'? "
        "allowed: hash-random, hash-balance, gate-token, gate-sentence"
    ) in output, output
    assert "Building DAG" not in output and "Traceback" not in output


# ---------------------------------------------------------------------------------------------
# Slow: real runs of .test/config/config.yaml


@pytest.mark.slow
def test_tiny_config_runs_end_to_end_then_has_nothing_to_do(tmp_path, glue_dir):
    start = time.monotonic()
    proc = snakemake(*tiny_run_args(tmp_path, glue_dir, "--cores", 2), timeout=1800)
    wall = time.monotonic() - start
    assert proc.returncode == 0, proc.stderr[-5000:]
    print(f"tiny end-to-end run: {wall:.0f} s")

    results = tmp_path / "results"
    table = (results / "tables" / "glue.md").read_text()
    for expected in ("teacher", "moebert", "distil-half", "majority", "construction-random", "RTE", "STS-B"):
        assert expected in table
    assert "MoEBERT is within 1 point of its teacher" in (results / "tables" / "claims.md").read_text()
    ablations = (results / "tables" / "ablations.md").read_text()
    assert "construction-random" in ablations and "importance" in ablations
    assert (results / "plots" / "ablation_construction.png").is_file()
    assert (results / "tables" / "glue.csv").is_file() and (results / "tables" / "glue.tex").is_file()
    assert {p.suffix for p in (results / "plots").glob("[!.]*")} == {".png", ".svg"}
    manifest = json.loads((results / "manifest.json").read_text())
    assert manifest
    metrics = json.loads((results / "metrics" / "rte" / "moebert" / "seed0.json").read_text())
    assert metrics["method"] == "moebert" and metrics["task"] == "rte"
    assert metrics["params"]["effective"] < metrics["params"]["total"]
    # Checkpoints are dropped once a training job has saved its model; adapted students before distillation
    # are temporary.
    assert not list(results.glob("**/*.checkpoints"))
    assert not list(results.glob("moe/**/*.safetensors"))
    # The benchmark's files of the predicted row, and one upload of them.
    predictions = results / "predictions" / "moebert" / "seed0"
    with zipfile.ZipFile(predictions / "glue-submission.zip") as bundle:
        assert len(bundle.namelist()) == 11  # every file the benchmark takes, the others placeholders
        assert bundle.read("RTE.tsv") == (predictions / "rte" / "RTE.tsv").read_bytes()
    assert (
        "placeholders, not predictions: CoLA.tsv (every row 0)"
        in (tmp_path / "logs" / "submission" / "moebert" / "seed0.log").read_text()
    )
    rows = (predictions / "rte" / "RTE.tsv").read_text().splitlines()
    assert rows[0] == "index\tprediction" and len(rows) == 3001  # RTE's 3000 test rows

    # The exported row: a Hugging Face folder with its card, logged to its distill run, linked by the parent.
    exported = results / "export" / "rte" / "moebert" / "seed0"
    names = {p.name for p in exported.iterdir()}
    assert {"README.md", "config.json", "model.safetensors", "modeling.py"} <= names
    assert not [name for name in names if name.startswith(".")]  # no Snakemake marker in the model's folder
    card = (exported / "README.md").read_text()
    assert "MoEBERT student for RTE" in card and "\n# rte-moebert-seed0\n" in card

    _check_mlflow_runs(results / "mlflow" / "mlflow.db")

    again = snakemake(*tiny_run_args(tmp_path, glue_dir, "-n"))
    assert again.returncode == 0, again.stderr
    assert "Nothing to be done" in again.stdout + again.stderr
    # A changed student setting rebuilds that student (and what follows), nothing else.
    changed = tmp_path / "changed.yaml"
    config = yaml.safe_load((REPO / ".test" / "config" / "config.yaml").read_text())
    config["methods"]["moebert"]["shared_dim"] = 128
    config["data"] = str(glue_dir)
    changed.write_text(yaml.safe_dump(config))
    rerun = snakemake("-s", SNAKEFILE, "--directory", tmp_path, "--configfile", changed, "-n")
    assert rerun.returncode == 0, rerun.stderr
    counts = job_counts(rerun.stdout)
    # moebert and its sweep point on 2 tasks, then their distillation, evaluation and predictions
    assert counts["adapt"] == 4 and "finetune" not in counts and "importance" not in counts, counts
    assert counts["predict"] == 2 and counts["submission"] == 1 and counts["export"] == 2, counts

    # Snakemake's own HTML report, as a reader sees it in a browser.
    html = tmp_path / "report.html"
    proc = snakemake(*tiny_run_args(tmp_path, glue_dir, "--report", html))
    assert proc.returncode == 0, proc.stderr[-5000:]
    _check_report_in_a_browser(html, results)


def save_tiny_roberta(path: Path, glue_dir: Path) -> Path:
    """A random RoBERTa (hidden 32, FFN 64, 2 layers) with a byte-level BPE tokenizer of 1000 tokens trained on
    RTE sentences: <s> 0, <pad> 1, </s> 2, positions after the padding id, one token type."""
    import torch
    from tokenizers import ByteLevelBPETokenizer
    from transformers import RobertaConfig, RobertaForSequenceClassification, RobertaTokenizer

    from moebert.tasks import load_split

    texts = load_split("rte", glue_dir, "train", max_rows=300)["text_a"]
    bpe = ByteLevelBPETokenizer()
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    bpe.train_from_iterator(texts, vocab_size=1000, special_tokens=specials, show_progress=False)
    files = path / "bpe"
    files.mkdir(parents=True)
    bpe.save_model(str(files))
    tokenizer = RobertaTokenizer(vocab=str(files / "vocab.json"), merges=str(files / "merges.txt"))
    assert (tokenizer.bos_token_id, tokenizer.pad_token_id, tokenizer.eos_token_id) == (0, 1, 2)
    torch.manual_seed(0)
    config = RobertaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64 + 2,  # 64 tokens after the padding id's offset
        type_vocab_size=1,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
    )
    model_dir = path / "resources" / "models" / "tiny-roberta"
    RobertaForSequenceClassification(config).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    return model_dir


@pytest.mark.slow
def test_tiny_roberta_config_runs_end_to_end(tmp_path, glue_dir):
    """Another backbone through every stage: a random RoBERTa teacher (a local directory of the working
    directory, as .test/config/roberta.yaml names it), every student kind, report, predictions and export."""
    save_tiny_roberta(tmp_path, glue_dir)
    config = REPO / ".test" / "config" / "roberta.yaml"
    args = ["-s", SNAKEFILE, "--directory", tmp_path, "--configfile", config, "--config", f"data={glue_dir}"]
    start = time.monotonic()
    proc = snakemake(*args, "--cores", 2, timeout=1800)
    wall = time.monotonic() - start
    assert proc.returncode == 0, proc.stderr[-5000:]
    print(f"tiny RoBERTa end-to-end run: {wall:.0f} s")

    results = tmp_path / "results"
    table = (results / "tables" / "glue.md").read_text()
    for expected in ("teacher", "moebert", "gate", "dense-narrow", "distil-half", "majority", "RTE"):
        assert expected in table
    for method, model_type in (
        ("moebert", "moe-roberta"),
        ("gate", "moe-roberta"),
        ("distil-half", "roberta"),
    ):
        saved = json.loads((results / "student" / "rte" / method / "seed0" / "config.json").read_text())
        assert saved["model_type"] == model_type, method
    rows = (results / "predictions" / "moebert" / "seed0" / "rte" / "RTE.tsv").read_text().splitlines()
    assert rows[0] == "index\tprediction" and len(rows) == 3001
    assert (results / "predictions" / "moebert" / "seed0" / "glue-submission.zip").is_file()
    for method in ("moebert", "gate"):
        exported = results / "export" / "rte" / method / "seed0"
        card = (exported / "README.md").read_text()
        assert "of a RoBERTa teacher." in card and "| backbone | RoBERTa |" in card, method
        auto_map = json.loads((exported / "config.json").read_text())["auto_map"]
        assert auto_map["AutoModelForSequenceClassification"] == (
            "modeling.MoERobertaForSequenceClassification"
        )
    speed = pd.read_csv(results / "speed" / "cpu" / "trained" / "rte" / "seed0.csv")
    assert {"teacher", "moebert", "gate", "dense-narrow", "distil-half"} <= set(speed["model"]), speed
    assert "moebert" in (results / "tables" / "speed.html").read_text()


# The tables of the tiny config's report (label: page), and what each plot's caption names.
REPORT_TABLES = {
    "GLUE dev results": "glue",
    "Parameters": "params",
    "The paper's claims": "claims",
    "Ablations": "ablations",
    "Inference speed": "speed",
}
PLOT_CAPTIONS = {
    "accuracy_vs_params": "effective parameters (x, millions)",
    "ablation_construction": "Ablation sweep construction",
    "speed_latency": "Latency against batch size, on cpu with 1 thread(s)",
    "speed_speedup": "Speed-up over the teacher against batch size, on cpu",
    "accuracy_vs_latency": "against its median latency (x, milliseconds) on cpu",
    "routing_rte": "Routing on the dev split rte: the share of its real tokens",
}


def _check_report_in_a_browser(html: Path, results: Path) -> None:
    """Every table is shown in the page (not a download link) with the cells of its file, every plot is shown
    with a caption of its own; the first page says what ran and at which commit."""
    import browser
    from test_report import html_cells

    assert browser.chromium(), (
        "the report is read in headless Chromium: apt-get install chromium (.ci/run does)"
    )
    wanted = [("Tables", title) for title in REPORT_TABLES] + [("Plots", name) for name in PLOT_CAPTIONS]
    shown = browser.shown_results(html, wanted)
    assert ("error", "error") not in shown, shown[("error", "error")]
    for title, name in REPORT_TABLES.items():
        assert (title, "shown") in shown, (title, {k: v[:60] for k, v in shown.items() if k[0] == title})
        cells = browser.cells(shown[(title, "shown")])
        assert cells == html_cells((results / "tables" / f"{name}.html").read_text()) and len(cells) >= 6
        assert f"results/tables/{name}" in shown[(title, "caption")]
    glue = browser.cells(shown[("GLUE dev results", "shown")])
    table = pd.read_csv(results / "tables" / "glue.csv")
    moebert = table[(table.method == "moebert") & (table.task == "RTE")].iloc[0]
    assert f"{moebert['mean']:.1f}" in glue and "RTE accuracy" in glue
    captions = {}
    for name, quantity in PLOT_CAPTIONS.items():
        assert shown[(name, "image")].startswith("data:image/png"), name
        caption = shown[(name, "caption")].split("Description", 1)[1].split("Size", 1)[0]
        assert quantity in caption, (name, caption)
        captions[name] = caption
    assert len(set(captions.values())) == len(captions)  # one caption per plot
    first = browser.first_page(html)  # as it opens, nothing clicked
    assert "MoEBERT reproduction" in first and "Results of 10 evaluations: tasks rte, stsb" in first
    assert "experiment <tt" in first and "commit: <tt" in first


@pytest.mark.slow
def test_tiny_qa_config_runs_end_to_end(tmp_path):
    squad = REPO.parent / "shared" / "data" / "squad"
    if not (squad / "dev-v1.1.json").is_file():
        pytest.skip(f"shared SQuAD dev file not found in {squad}")
    proc = snakemake(
        "-s",
        SNAKEFILE,
        "--directory",
        tmp_path,
        "--configfile",
        REPO / "config" / "tiny-qa.yaml",
        "--config",
        f"squad_data={squad}",
        "--cores",
        2,
        timeout=1800,
    )
    assert proc.returncode == 0, proc.stderr[-5000:]
    tables = tmp_path / "results" / "tables"
    table = (tables / "squad.md").read_text()
    for expected in (
        "teacher",
        "moebert",
        "distil-half",
        "SQuAD-v1.1* exact_match",
        "SQuAD-v1.1* f1",
        "non-standard split: train and dev are article-disjoint parts of dev-v1.1.json",
    ):
        assert expected in table
    assert "majority" not in table and not (tables / "glue.md").exists()
    metrics = json.loads((tmp_path / "results" / "metrics" / "squad" / "moebert" / "seed0.json").read_text())
    assert len(metrics["predictions"]["SQuAD-v1.1"]) == metrics["num_examples"]["SQuAD-v1.1"] == 24
    assert metrics["params"]["effective"] < metrics["params"]["total"]


def _check_mlflow_runs(db: Path) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{db}")
    experiment = client.get_experiment_by_name("moebert-tiny")
    runs = client.search_runs([experiment.experiment_id])
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    # Per task: finetune, importance, adapt and distill x3 (moebert, distil-half, construction-random),
    # evaluate x5 (those, the teacher and majority); one speed job.
    assert len(children) == 2 * 13 + 1
    assert len({r.data.tags["mlflow.parentRunId"] for r in children}) == 1
    for run in children:
        for tag in ("task", "method", "seed", "rule", "config_hash", "git_commit"):
            assert tag in run.data.tags, (tag, run.info.run_name)
    distill = next(r for r in children if r.data.tags["rule"] == "distill" and r.data.tags["task"] == "rte")
    assert {"train_loss", "loss/task", "loss/hidden", "loss/prediction"} <= set(distill.data.metrics)
    assert "RTE/accuracy" not in distill.data.metrics  # metrics come from the evaluate job alone
    evaluate = next(
        r
        for r in children
        if r.data.tags["rule"] == "evaluate"
        and r.data.tags["method"] == "moebert"
        and r.data.tags["task"] == "rte"
    )
    assert "RTE/accuracy" in evaluate.data.metrics
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    rte = next(
        r
        for r in children
        if r.data.tags["rule"] == "distill"
        and r.data.tags["method"] == "moebert"
        and r.data.tags["task"] == "rte"
    )
    assert [a.path for a in client.list_artifacts(rte.info.run_id, "export")] == ["export/seed0.log"]
    # The export is a logged model of the run that trained it.
    (model,) = client.search_logged_models(
        [experiment.experiment_id], filter_string="name = 'rte-moebert-seed0'"
    )
    assert model.source_run_id == rte.info.run_id
    parent = client.get_run(children[0].data.tags["mlflow.parentRunId"])
    note = parent.data.tags["mlflow.note.content"]
    assert f"- [rte/moebert/seed0](#/experiments/{experiment.experiment_id}/models/{model.model_id})" in note
    assert "[stsb/moebert/seed0]" in note and note.startswith("MoEBERT reproduction")
    # The parent run carries the config and the results.
    assert parent.data.params["experiment"] == "moebert-tiny" and "exports" not in parent.data.params
    assert {"moebert/avg", "teacher/avg", "moebert/RTE", "majority/STS-B"} <= set(parent.data.metrics)
    assert "main" in evaluate.data.metrics


def _kill_job(snakemake_pid: int, command: str) -> None:
    """SIGKILL the job running `command` under our Snakemake, as the OOM killer or a scheduler's time
    limit would: its shell and the Python process below it (killing the shell alone orphans Python)."""
    job = []
    for child in psutil.Process(snakemake_pid).children(recursive=True):
        try:
            if command in " ".join(child.cmdline()):
                job.append(child)
        except psutil.NoSuchProcess:
            continue
    assert job, f"no running '{command}'"
    for process in reversed(job):  # children() lists parents first: kill Python before its shell
        process.send_signal(signal.SIGKILL)


@pytest.mark.slow
@pytest.mark.parametrize("retries", [0, 1], ids=["rerun", "retry"])
def test_training_job_killed_mid_run_resumes_from_its_checkpoint(tmp_path, glue_dir, retries):
    # Enough steps to kill the teacher mid-run: 96 rows / batch 8 = 12 steps, and save_minutes 0 writes a
    # checkpoint after every step. With retries the same Snakemake run starts the job again (as after a SLURM time limit);
    # without, the user's rerun does.
    override = tmp_path / "resume.yaml"
    config = yaml.safe_load((REPO / ".test" / "config" / "config.yaml").read_text())
    config["tasks"] = ["rte"]
    config["task_settings"]["rte"]["max_train_samples"] = 96
    config["training"]["save_minutes"] = 0
    config["resources"]["retries"] = retries
    override.write_text(yaml.safe_dump(config))
    target = "results/teacher/rte/seed0"
    args = [
        "-s",
        SNAKEFILE,
        "--directory",
        tmp_path,
        "--configfile",
        override,
        "--config",
        f"data={glue_dir}",
        "--cores",
        1,
        target,
    ]
    checkpoints = tmp_path / (target + ".checkpoints")

    first = subprocess.Popen(
        [sys.executable, "-m", "snakemake", *map(str, args)],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 600
        while not list(checkpoints.glob("checkpoint-*/trainer_state.json")):
            assert first.poll() is None, "the run ended before it wrote a checkpoint"
            assert time.monotonic() < deadline, "no checkpoint within 10 minutes"
            time.sleep(0.1)
        # Kill at once: the Trainer writes trainer_state.json last, so the checkpoint seen is complete.
        _kill_job(first.pid, "moebert finetune")
        code = first.wait(timeout=600)
    finally:
        if first.poll() is None:
            first.kill()
    if retries:
        assert code == 0
    else:
        assert code != 0
        assert not (tmp_path / target).exists()
        rerun = snakemake(*args)
        assert rerun.returncode == 0, rerun.stderr[-5000:]
    log = (tmp_path / "logs" / "finetune" / "rte" / "seed0.log").read_text()
    resumed = re.findall(rf"resuming from checkpoint {target}\.checkpoints/checkpoint-(\d+)", log)
    assert resumed and 1 <= int(resumed[0]) < 12, log[-3000:]
    # The Trainer's progress bar continues from the checkpoint's global step instead of counting from 1.
    steps = [int(step) for step in re.findall(r"\| *(\d+)/12 \[", log)]
    assert steps and min(s for s in steps if s > 0) > int(resumed[0]), steps
    assert (tmp_path / target / "model.safetensors").is_file()
    assert not checkpoints.exists()


def test_several_gpus_launch_training_through_accelerate_with_the_total_batch(tmp_path, glue_dir):
    config = yaml.safe_load((REPO / ".test" / "config" / "config.yaml").read_text())
    config["data"] = str(glue_dir)
    config["resources"].update(gpus=2, threads=8)
    path = tmp_path / "two-gpus.yaml"
    path.write_text(yaml.safe_dump(config))
    proc = snakemake(
        "-n", "-p", "-F", "--nolock", "--cores", 8, "--directory", tmp_path, "--configfile", path
    )
    assert proc.returncode == 0, proc.stderr + proc.stdout
    # A free port each (two such jobs may share a node) and half the job's 8 cores per process.
    launch = (
        "TORCH_ELASTIC_SHUTDOWN_TIMEOUT=180 accelerate launch --multi_gpu --num_processes 2 --num_machines 1 "
        "--main_process_port 0 "
        "--num_cpu_threads_per_process 4 --mixed_precision no --dynamo_backend no -m moebert.cli"
    )
    for stage in ("finetune", "distill"):
        commands = re.findall(rf"^Shell command: .* {stage} --task .*$", proc.stdout, re.MULTILINE)
        assert commands and all(c.startswith(f"Shell command: {launch} {stage} ") for c in commands), stage
        assert all("--batch-size 8 --grad-accum 1 " in c for c in commands)  # the total: the CLI divides it
    for stage in ("importance", "evaluate"):
        assert re.findall(rf"^Shell command: moebert {stage} ", proc.stdout, re.MULTILINE), stage
    gpus = dict(
        re.findall(r"^\s*rule (\w+):\n(?:.*\n)*?\s+resources: [^\n]*gpu=(\d+)", proc.stdout, re.MULTILINE)
    )
    assert gpus["finetune"] == gpus["distill"] == "2" and gpus["importance"] == "1"

    config["resources"]["gpus"] = 3
    path.write_text(yaml.safe_dump(config))
    proc = snakemake("-n", "--nolock", "--directory", tmp_path, "--configfile", path)
    assert proc.returncode != 0
    assert (
        "invalid config: key training.grad_accum: 1 x 3 GPU(s) (resources.gpus) does not divide the teacher "
        "batch size 8 of task rte"
    ) in proc.stderr + proc.stdout
