"""The predict stage: GLUE submission files from the real test splits, MNLI with the diagnostic set AX, the
zip, SQuAD's prediction JSON, and the inputs it refuses."""

import csv
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import write_tsv
from transformers import AutoTokenizer, BertForSequenceClassification

from moebert.cli import build_parser, main
from moebert.errors import MoebertError
from moebert.evaluation import evaluate
from moebert.models.loading import load_model
from moebert.prediction import TEST_ROWS
from moebert.tasks import TASKS, get_task, load_test_split
from moebert.tasks.qa import QaSettings

MAX_LENGTH = 32  # the tiny model has 128 positions; short rows keep every test in seconds
BATCH = 64
LOCAL = ["cola", "sst2", "mrpc", "stsb", "rte", "wnli"]  # the tasks with a test.tsv in the shared data


def run_predict(task, data, model, output, *options, max_length=MAX_LENGTH) -> None:
    """The stage through the CLI; a refusal (MoebertError) propagates to the caller."""
    args = build_parser().parse_args(
        [
            "predict",
            "--task",
            task,
            "--data",
            str(data),
            "--model",
            str(model),
            "--output",
            str(output),
            "--max-length",
            str(max_length),
            *map(str, options),
        ]
    )
    args.func(args)


def read_tsv(path: Path) -> list[list[str]]:
    with open(path, encoding="utf-8-sig", newline="") as handle:
        return list(csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))


def save_classifier(path: Path, base: Path, num_labels: int) -> Path:
    """The tiny random BERT of `base` with a new random head of `num_labels` outputs, saved with its tokenizer."""
    torch.manual_seed(num_labels)
    model = BertForSequenceClassification.from_pretrained(
        base, num_labels=num_labels, ignore_mismatched_sizes=True
    )
    model.save_pretrained(path)
    AutoTokenizer.from_pretrained(base).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def models(tiny_model_dir, tmp_path_factory) -> dict[int, Path]:
    """Model directories by number of outputs: regression, binary, MNLI's three classes."""
    root = tmp_path_factory.mktemp("predict-models")
    return {n: save_classifier(root / f"labels{n}", tiny_model_dir, n) for n in (1, 2, 3)}


def expected_logits(model_dir: Path, texts: list[list[str]], output: str = "logits") -> np.ndarray:
    """The model's logits (or another output) computed here by hand: the tokenizer and the model, batches of
    BATCH padded to their longest row (as the stage batches), no moebert code."""
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = BertForSequenceClassification.from_pretrained(model_dir).eval()
    run = model if output == "logits" else model.bert
    logits = []
    for start in range(0, len(texts[0]), BATCH):
        batch = [column[start : start + BATCH] for column in texts]
        inputs = tokenizer(*batch, truncation=True, max_length=MAX_LENGTH, padding=True, return_tensors="pt")
        with torch.no_grad():
            logits.append(getattr(run(**inputs), output).numpy())
    return np.concatenate(logits)


def read_test_file(path: Path, task) -> tuple[list[str], list[list[str]]]:
    """Index column and text columns of a classic test file, read by header name."""
    rows = read_tsv(path)
    header, body = rows[0], rows[1:]
    texts = [[row[header.index(name)] for row in body] for name in task.tsv.text_fields]
    return [row[header.index(task.tsv.test_index)] for row in body], texts


# ---------------------------------------------------------------------------------------------
# GLUE submission files


@pytest.mark.parametrize("name", LOCAL)
def test_submission_file_of_each_local_task_holds_the_models_labels(name, glue_dir, models, tmp_path):
    task = get_task(name)
    model_dir = models[task.num_labels]
    out = tmp_path / "submission"
    run_predict(name, glue_dir, model_dir, out, "--batch-size", BATCH)

    assert sorted(p.name for p in out.iterdir()) == [f"{task.display}.tsv"]
    rows = read_tsv(out / f"{task.display}.tsv")
    index, texts = read_test_file(glue_dir / task.display / "test.tsv", task)
    assert rows[0] == ["index", "prediction"]
    assert len(rows) - 1 == len(index) == len(load_test_split(task, glue_dir, "test"))
    assert [row[0] for row in rows[1:]] == index
    logits = expected_logits(model_dir, texts)
    predictions = [row[1] for row in rows[1:]]
    if task.is_regression:
        assert predictions == [f"{score:.3f}" for score in np.clip(logits[:, 0], 0, 5)]
    else:
        assert predictions == [task.labels[i] for i in logits.argmax(axis=1)]
        assert set(predictions) <= set(task.labels)


def test_a_prepared_copy_predicts_the_same_file_as_its_source(glue_dir, models, tmp_path):
    from moebert.tasks import prepare

    prepare("wnli", glue_dir, tmp_path / "prepared")
    for data, out in ((glue_dir, "from-source"), (tmp_path / "prepared", "from-copy")):
        run_predict("wnli", data, models[2], tmp_path / out)
    assert (tmp_path / "from-copy" / "WNLI.tsv").read_bytes() == (
        tmp_path / "from-source" / "WNLI.tsv"
    ).read_bytes()


def test_stsb_scores_are_clipped_to_the_0_to_5_scale(glue_dir, tiny_model_dir, tmp_path):
    model_dir = save_classifier(tmp_path / "stsb-model", tiny_model_dir, 1)
    texts = read_test_file(glue_dir / "STS-B" / "test.tsv", get_task("stsb"))[1]
    # A random BERT's pooled outputs barely differ between rows: a head along a random direction, standardised
    # over the test rows, spreads its raw scores as N(2.5, 4), a quarter of them below 0 and a quarter above 5.
    direction = np.random.default_rng(0).standard_normal(32)
    projection = expected_logits(model_dir, texts, output="pooler_output") @ direction
    scale = 4 / projection.std()
    model = BertForSequenceClassification.from_pretrained(model_dir)
    with torch.no_grad():
        model.classifier.weight.copy_(torch.tensor(scale * direction)[None])
        model.classifier.bias.fill_(2.5 - scale * projection.mean())
    model.save_pretrained(model_dir)
    out = tmp_path / "out"
    run_predict("stsb", glue_dir, model_dir, out)
    raw = expected_logits(model_dir, texts)[:, 0]
    assert (raw < 0).sum() > 100 and (raw > 5).sum() > 100 and ((raw > 0) & (raw < 5)).sum() > 100
    scores = [row[1] for row in read_tsv(out / "STS-B.tsv")[1:]]
    assert scores == [f"{score:.3f}" for score in np.clip(raw, 0, 5)]
    assert {"0.000", "5.000"} <= set(scores) and all(0 <= float(s) <= 5 for s in scores)


MNLI_TEST = [
    "index",
    "promptID",
    "pairID",
    "genre",
    "sentence1_binary_parse",
    "sentence2_binary_parse",
    "sentence1_parse",
    "sentence2_parse",
    "sentence1",
    "sentence2",
]
PAIRS = [
    ("A man eats.", "Someone eats."),
    ("A man eats.", "He is hungry."),
    ('He said "no.', "He agreed."),
    ("The cat sat on the mat.", "The cat did not sit on the mat."),
    ("Dogs bark.", "Animals make noise."),
]


def mnli_test_rows(pairs, first_index=0) -> list[list[str]]:
    rows = [MNLI_TEST]
    for i, (premise, hypothesis) in enumerate(pairs, start=first_index):
        values = {"index": str(i), "sentence1": premise, "sentence2": hypothesis}
        rows.append([values.get(name, f"x{i}") for name in MNLI_TEST])
    return rows


@pytest.fixture
def mnli_dir(tmp_path) -> Path:
    """MNLI's two test files and the diagnostic set in the classic layout (AX's index counts from 0 like the
    real one; the mismatched file starts at 7 to show that the file's index, not the row number, is written)."""
    root = tmp_path / "glue"
    write_tsv(root / "MNLI" / "test_matched.tsv", mnli_test_rows(PAIRS[:3]))
    write_tsv(root / "MNLI" / "test_mismatched.tsv", mnli_test_rows(PAIRS[3:], first_index=7))
    write_tsv(
        root / "diagnostic" / "diagnostic.tsv",
        [["index", "sentence1", "sentence2"], *([str(i), *pair] for i, pair in enumerate(PAIRS))],
    )
    return root


def test_mnli_model_writes_both_test_files_and_with_diagnostic_ax(mnli_dir, models, tmp_path):
    mnli = get_task("mnli")
    out = tmp_path / "out"
    run_predict("mnli", mnli_dir, models[3], out)
    assert sorted(p.name for p in out.iterdir()) == ["MNLI-m.tsv", "MNLI-mm.tsv"]

    run_predict("mnli", mnli_dir, models[3], out, "--diagnostic")
    assert sorted(p.name for p in out.iterdir()) == ["AX.tsv", "MNLI-m.tsv", "MNLI-mm.tsv"]
    labels = [
        mnli.labels[i] for i in expected_logits(models[3], [list(p) for p in zip(*PAIRS)]).argmax(axis=1)
    ]
    assert read_tsv(out / "AX.tsv") == [
        ["index", "prediction"],
        *([str(i), label] for i, label in enumerate(labels)),
    ]
    assert read_tsv(out / "MNLI-m.tsv")[1:] == [["0", labels[0]], ["1", labels[1]], ["2", labels[2]]]
    assert read_tsv(out / "MNLI-mm.tsv")[1:] == [["7", labels[3]], ["8", labels[4]]]
    assert set(labels) <= {"entailment", "neutral", "contradiction"}
    zipped = tmp_path / "mnli.zip"
    assert main(["submission", "--predictions", str(out), "--output", str(zipped)]) == 0
    with zipfile.ZipFile(zipped) as bundle:
        for name in ("AX.tsv", "MNLI-m.tsv", "MNLI-mm.tsv"):
            assert bundle.read(name) == (out / name).read_bytes()


def test_submission_zips_the_tasks_directories_at_its_top_level(glue_dir, models, tmp_path, capsys, caplog):
    dirs = [tmp_path / name for name in ("wnli", "cola")]
    (dirs[0] / "notes.tsv").parent.mkdir()
    (dirs[0] / "notes.tsv").write_text("not a benchmark file\n")
    for name, out in zip(("wnli", "cola"), dirs, strict=True):
        run_predict(name, glue_dir, models[2], out)
    zipped = tmp_path / "up" / "submission.zip"
    assert main(["submission", "--predictions", *map(str, dirs), "--output", str(zipped)]) == 0
    names = ["CoLA", "SST-2", "MRPC", "STS-B", "QQP", "MNLI-m", "MNLI-mm", "QNLI", "RTE", "WNLI", "AX"]
    with zipfile.ZipFile(zipped) as bundle:
        assert sorted(bundle.namelist()) == sorted(f"{name}.tsv" for name in names)  # every file it takes
        for name, directory in (("CoLA.tsv", dirs[1]), ("WNLI.tsv", dirs[0])):
            assert bundle.read(name) == (directory / name).read_bytes()
        # The others: a constant on every row of their test split, numbered as the benchmark numbers them.
        for name, label, rows in (
            ("RTE.tsv", "entailment", 3000),
            ("STS-B.tsv", "2.500", 1379),
            ("QQP.tsv", "0", 390965),
            ("MNLI-mm.tsv", "entailment", 9847),
            ("AX.tsv", "entailment", 1104),
        ):
            lines = bundle.read(name).decode().splitlines()
            assert lines[0] == "index\tprediction" and len(lines) == rows + 1
            assert lines[1:] == [f"{i}\t{label}" for i in range(rows)]
    # The local test files have the sizes the placeholders are written with.
    for name in ("CoLA", "SST-2", "MRPC", "STS-B", "RTE", "WNLI"):
        assert len(read_tsv(glue_dir / name / "test.tsv")) - 1 == TEST_ROWS[name], name
    assert len(read_tsv(glue_dir / "diagnostic" / "diagnostic.tsv")) - 1 == TEST_ROWS["AX"]
    err = caplog.text
    assert "9 of its 11 files are placeholders, not predictions: SST-2.tsv (every row 0), MRPC.tsv" in err
    assert "STS-B.tsv (every row 2.500)" in err and "AX.tsv (every row entailment)" in err
    assert [p.name for p in zipped.parent.iterdir()] == ["submission.zip"]  # no temporary file left behind
    # Or refused, naming what is missing; nothing written.
    strict = tmp_path / "strict.zip"
    argv = ["submission", "--predictions", *map(str, dirs), "--output", str(strict), "--no-placeholders"]
    assert main(argv) == 2 and not strict.exists()
    assert "not predicted: SST-2.tsv, MRPC.tsv, STS-B.tsv, QQP.tsv" in capsys.readouterr().err
    assert main(["submission", "--predictions", str(dirs[1]), str(dirs[1]), "--output", str(zipped)]) == 2
    assert "CoLA.tsv is in both" in capsys.readouterr().err


def test_every_benchmark_file_name_is_known():
    from moebert.prediction import submission_files

    names = "CoLA SST-2 MRPC STS-B QQP MNLI-m MNLI-mm QNLI RTE WNLI AX"
    assert sorted(submission_files()) == sorted(f"{name}.tsv" for name in names.split())


# ---------------------------------------------------------------------------------------------
# SQuAD


CONTEXT = "The Eiffel Tower was built in 1889 by Gustave Eiffel. It stands in Paris, the capital of France."


def test_squad_predictions_are_the_answers_by_question_id(tiny_model_dir, tmp_path):
    questions = [
        ("q0", "When was the tower built?", "1889"),
        ("q1", "Where does it stand?", "Paris"),
        ("q2", "Who built it?", "Gustave Eiffel"),
    ]
    qas = [
        {
            "id": qid,
            "question": question,
            "answers": [{"text": answer, "answer_start": CONTEXT.index(answer)}],
        }
        for qid, question, answer in questions
    ]
    document = {
        "version": "1.1",
        "data": [{"title": "Tower", "paragraphs": [{"context": CONTEXT, "qas": qas}]}],
    }
    (tmp_path / "dev-v1.1.json").write_text(json.dumps(document))
    model_dir = tmp_path / "qa-model"
    load_model(str(tiny_model_dir), head="question-answering").save_pretrained(model_dir)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(model_dir)

    out = tmp_path / "out"
    run_predict("squad", tmp_path, model_dir, out, "--doc-stride", 8, max_length=24)
    answers = json.loads((out / "SQuAD-v1.1-predictions.json").read_text())
    assert sorted(answers) == ["q0", "q1", "q2"] and all(answer in CONTEXT for answer in answers.values())
    squad = get_task("squad")
    model = load_model(str(model_dir))
    results, _, extra = evaluate(
        model, AutoTokenizer.from_pretrained(model_dir), squad, str(tmp_path), 24, qa=QaSettings(doc_stride=8)
    )
    assert answers == extra["predictions"]["SQuAD-v1.1"]
    # One row per question with its scores; their means are the overall scores.
    examples = extra["examples"]
    assert examples.id.tolist() == ["q0", "q1", "q2"] and examples.example.tolist() == [0, 1, 2]
    for metric in ("exact_match", "f1"):
        assert 100 * examples[metric].mean() == pytest.approx(results["SQuAD-v1.1"][metric])
    assert sorted(p.name for p in out.iterdir()) == ["SQuAD-v1.1-predictions.json"]


# ---------------------------------------------------------------------------------------------
# Refused inputs: nothing is written


@pytest.mark.parametrize(
    "rows, message",
    [
        (
            [["index", "sentence1", "sentence2"], ["0", "a", "b"], ["1", "a"]],
            "RTE/test.tsv, line 3: expected 3 tab-separated fields (index, sentence1, sentence2), found 2",
        ),
        (
            [["id", "sentence1", "sentence2"], ["0", "a", "b"]],
            "RTE/test.tsv: header lacks column(s) index of the RTE test layout; found: id, sentence1, sentence2",
        ),
        (
            [["index", "sentence1", "sentence2"], ["0", "a", "b"], ["1", "a", "b"], ["0", "c", "d"]],
            "RTE/test.tsv, line 4: index 0 appears twice (first at line 2)",
        ),
    ],
)
def test_a_malformed_test_file_is_refused_with_file_and_row(rows, message, models, tmp_path):
    path = write_tsv(tmp_path / "glue" / "RTE" / "test.tsv", rows)
    out = tmp_path / "out"
    with pytest.raises(MoebertError) as err:
        run_predict("rte", tmp_path / "glue", models[2], out)
    assert str(err.value) == f"{tmp_path / 'glue'}/{message}" and path.is_file()
    assert not out.exists()


def test_a_missing_test_file_is_named(glue_dir, models, tmp_path):
    data = tmp_path / "glue"
    (data / "MNLI").mkdir(parents=True)
    with pytest.raises(
        MoebertError,
        match=f"missing file {data}/MNLI/test_matched.tsv: expected the MNLI "
        f"'test_matched' split in the classic GLUE layout <data>/MNLI/",
    ):
        run_predict("mnli", data, models[3], tmp_path / "out")
    write_tsv(data / "MNLI" / "test_matched.tsv", mnli_test_rows(PAIRS))
    write_tsv(data / "MNLI" / "test_mismatched.tsv", mnli_test_rows(PAIRS))
    with pytest.raises(
        MoebertError,
        match=f"missing file {data}/diagnostic/diagnostic.tsv: expected the MNLI "
        f"'diagnostic' split in the classic GLUE layout <data>/diagnostic/",
    ):
        run_predict("mnli", data, models[3], tmp_path / "out", "--diagnostic")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("name", ["rte", "qnli", "stsb", "squad"])
def test_diagnostic_is_refused_for_every_task_but_mnli(name, glue_dir, models, tmp_path):
    with pytest.raises(
        MoebertError,
        match=f"--diagnostic: GLUE's diagnostic set AX is predicted with an MNLI "
        f"model, and {name} is not MNLI; leave it out",
    ):
        run_predict(name, glue_dir, models[2], tmp_path / "out", "--diagnostic")
    assert not (tmp_path / "out").exists()


def test_doc_stride_is_refused_for_glue_tasks(glue_dir, models, tmp_path):
    with pytest.raises(
        MoebertError, match=r"--doc-stride: only question-answering tasks take it \(rte is not one\)"
    ):
        run_predict("rte", glue_dir, models[2], tmp_path / "out", "--doc-stride", 16)
    assert not (tmp_path / "out").exists()


def test_a_model_with_another_number_of_outputs_is_refused(mnli_dir, models, tmp_path):
    with pytest.raises(
        MoebertError,
        match=r"the model has 2 output\(s\), but MNLI needs 3 \(entailment, neutral, "
        r"contradiction\): give a model fine-tuned on mnli",
    ):
        run_predict("mnli", mnli_dir, models[2], tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_every_glue_task_names_its_test_splits():
    assert {name: task.test_splits for name, task in TASKS.items() if task.family == "glue"} == {
        "cola": {"test": "CoLA"},
        "sst2": {"test": "SST-2"},
        "mrpc": {"test": "MRPC"},
        "stsb": {"test": "STS-B"},
        "qqp": {"test": "QQP"},
        "mnli": {"test_matched": "MNLI-m", "test_mismatched": "MNLI-mm", "diagnostic": "AX"},
        "qnli": {"test": "QNLI"},
        "rte": {"test": "RTE"},
        "wnli": {"test": "WNLI"},
    }


def test_squad_predictions_use_the_answer_settings_evaluate_scored_with(tiny_model_dir, tmp_path):
    """The workflow renders both jobs' flags from one config: predicting the dev file gives exactly the
    answers that evaluate scored, with a config's own n-best, answer length and null threshold (and those
    settings matter: the defaults answer otherwise)."""
    from moebert.config import flags, load_settings

    qas = [
        {
            "id": "q0",
            "question": "When was the tower built?",
            "answers": [{"text": "1889", "answer_start": 30}],
        },
        {"id": "q1", "question": "Where does it stand?", "answers": [{"text": "Paris", "answer_start": 67}]},
        {
            "id": "q2",
            "question": "Who built it?",
            "answers": [{"text": "Gustave Eiffel", "answer_start": 38}],
        },
        {"id": "q3", "question": "What is the capital?", "answers": [{"text": "France", "answer_start": 89}]},
        {"id": "q4", "question": "How tall is it?", "answers": [], "is_impossible": True},
        {"id": "q5", "question": "Who painted it?", "answers": [], "is_impossible": True},
    ]
    for qa in qas:
        for answer in qa["answers"]:
            assert CONTEXT[answer["answer_start"] :].startswith(answer["text"])
    document = {
        "version": "v2.0",
        "data": [{"title": "Tower", "paragraphs": [{"context": CONTEXT, "qas": qas}]}],
    }
    (tmp_path / "dev-v2.0.json").write_text(json.dumps(document))
    model_dir = tmp_path / "qa-model"
    load_model(str(tiny_model_dir), head="question-answering").save_pretrained(model_dir)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(model_dir)
    answers = {
        "n_best": 2,
        "max_answer_length": 3,
        "null_threshold": -0.05,
        "doc_stride": 8,
        "max_length": 24,
    }
    settings = load_settings({"tasks": ["squad_v2"], "task_settings": {"squad_v2": answers}})

    def cli(*argv):
        args = build_parser().parse_args([str(a) for a in argv])
        args.func(args)

    common = ["--task", "squad_v2", "--data", tmp_path, "--model", model_dir]
    evaluate_flags = flags(settings.evaluate_options("squad_v2", None)).replace("--majority", "").split()
    cli("evaluate", *common, "--output", tmp_path / "metrics.json", *evaluate_flags)
    cli(
        "predict", *common, "--output", tmp_path / "out", *flags(settings.predict_options("squad_v2")).split()
    )
    scored = json.loads((tmp_path / "metrics.json").read_text())["predictions"]["SQuAD-v2.0"]
    predicted = json.loads((tmp_path / "out" / "SQuAD-v2.0-predictions.json").read_text())
    assert predicted == scored and sorted(predicted) == [qa["id"] for qa in qas]
    cli("predict", *common, "--output", tmp_path / "default", "--max-length", 24, "--doc-stride", 8)
    assert json.loads((tmp_path / "default" / "SQuAD-v2.0-predictions.json").read_text()) != predicted
