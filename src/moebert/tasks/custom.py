"""Tasks a user declares in the config (`custom_tasks.<name>`): classification, regression or extractive QA on
their own files (.csv, .tsv, .jsonl, .json; QA also SQuAD-format JSON).

A declaration is checked and its files converted by `prepare` into the layout the registered tasks' stages
already read: classification and regression into the classic GLUE tsv (<output>/<name>/{train,dev,test}.tsv,
columns id, text_a[, text_b], label), extractive QA into the official SQuAD JSON (<output>/<name>/{train,dev}
.json, test questions in test.json). The declaration goes beside them (task.json, with the label order and
the data's size), and every later stage resolves the task from that file (`load_declared`), so a user task
is a GlueTask or a QaTask like the others and needs no flag of its own.

Everything is read and checked before anything is written; each error names the file, the line (CSV, TSV,
JSONL) or record (JSON) and what to do.
"""

from __future__ import annotations

import csv
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import datasets
import numpy as np

from moebert.errors import MoebertError
from moebert.files import atomic_dir, write_json
from moebert.tasks.base import Task
from moebert.tasks.glue import TEXT_NAMES, GlueTask, TsvLayout
from moebert.tasks.squad import QaTask, document_from_rows, rows_from_document

DECLARATION_FILE = "task.json"  # beside the prepared splits: the task as every later stage resolves it
FAMILY = "user"  # result table of user tasks (results/tables/user.*)
KINDS = ("classification", "regression", "extractive-qa")
# The metrics a kind may name (moebert.tasks.metrics computes them; QA's come from the SQuAD v1.1 script,
# which always gives both, exact match first). The first named is the main metric; these are the defaults.
KIND_METRICS = {
    "classification": ("accuracy", "macro_f1", "f1", "mcc"),
    "regression": ("pearson", "spearman"),
    "extractive-qa": ("exact_match", "f1"),
}
DEFAULT_METRICS = {
    "classification": ("accuracy", "macro_f1"),
    "regression": ("pearson", "spearman"),
    "extractive-qa": ("exact_match", "f1"),
}
FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "json"}
HUB_PREFIX = "hub:"  # hub:<dataset id>:<split>, a split of a dataset on the Hugging Face hub
# Tabs and line breaks inside a text become spaces in the prepared tsv: BERT's tokenizers split on any white
# space, so the word pieces are the same.
_BREAKERS = str.maketrans({"\t": " ", "\n": " ", "\r": " "})
# Word pieces per character of English text with a BERT uncased vocabulary, for the cost model's row lengths
# (train rows by the MiniLM tokenizer and by this estimate: MRPC 53.2 and 53, STS-B 27.8 and 27.2).
PIECES_PER_CHAR = 0.21
EVAL_BATCH = 64  # the evaluation batch the cost model's padded length is taken over (tasks.base.Task)


class DeclarationError(MoebertError):
    """A declaration the config layer can refuse before any job: `key` is the declaration's key at fault."""

    def __init__(self, key: str, message: str):
        self.key = key
        super().__init__(message)


# ---------------------------------------------------------------------------------------------
# Reading a user's file: rows of column -> value, each with where it came from


def file_format(path: str, given: str = "auto") -> str:
    if path.startswith(HUB_PREFIX):
        return "hub"
    if given != "auto":
        return given
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise DeclarationError(
            "format",
            f"{path}: cannot tell the format from the extension {suffix!r}; use .csv, .tsv, .jsonl or .json, "
            f"or set format",
        )
    return FORMATS[suffix]


def _text(path: Path) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")  # a leading byte-order mark is UTF-8's own and is dropped
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise MoebertError(
            f"{path}, line {line}: byte 0x{data[err.start]:02x} is not UTF-8; re-save the file as UTF-8 "
            f"(e.g. iconv -f latin1 -t utf-8)"
        ) from None


def read_rows(
    path: str | os.PathLike, fmt: str, quoting: str = "csv", hub_config: str | None = None
) -> list[tuple[str, dict]]:
    """(where, row) for every row of a .csv/.tsv (header first), .jsonl (an object per line) or .json file (a
    list of objects, or {"data": [...]} for SQuAD, returned as one row), or of a hub split."""
    if fmt == "hub":
        return _hub_rows(str(path), hub_config)
    path = Path(path)
    if not path.is_file():
        raise MoebertError(f"{path}: file not found; check the path (relative to the repository root)")
    text = _text(path)
    if fmt in ("csv", "tsv"):
        return _table_rows(path, text, "," if fmt == "csv" else "\t", quoting)
    if fmt == "jsonl":
        rows = []
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            where = f"{path}, line {number}"
            rows.append((where, _object(_json(line, where), where)))
        return rows
    document = _json(text, str(path))
    if isinstance(document, dict) and isinstance(document.get("data"), list):
        return [(str(path), document)]
    if not isinstance(document, list):
        raise MoebertError(f"{path}: expected a JSON list of objects (one per row) or a SQuAD file")
    return [(f"{path}, record {i}", _object(row, f"{path}, record {i}")) for i, row in enumerate(document)]


def _hub_rows(spec: str, config: str | None) -> list[tuple[str, dict]]:
    """The rows of hub:<dataset id>:<split> (through the mirror where MOEBERT_HUB_MIRROR is set); class
    labels as their names, and the -1 of an unlabelled test split as no label."""
    from moebert.hub import hub_source

    dataset, _, split = spec[len(HUB_PREFIX) :].rpartition(":")
    if not dataset or not split:
        raise DeclarationError(
            "", f"{spec}: give a hub split as hub:<dataset id>:<split>, e.g. hub:imdb:train"
        )
    try:
        loaded = datasets.load_dataset(hub_source(dataset), config, split=split)
    except (OSError, ValueError, MoebertError) as err:  # network, not found, split or config, mirror
        raise MoebertError(f"{spec}: could not load it from the Hugging Face hub: {err}") from None
    names = {
        column: feature.names
        for column, feature in loaded.features.items()
        if isinstance(feature, datasets.ClassLabel)
    }
    rows = []
    for i, row in enumerate(loaded.to_list()):
        for column, labels in names.items():
            if row.get(column) == -1:
                del row[column]
            elif row.get(column) is not None:
                row[column] = labels[row[column]]
        rows.append((f"{spec}, row {i}", row))
    return rows


def _json(text: str, where: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise MoebertError(f"{where}: not valid JSON ({err.msg} at column {err.colno})") from None


def _object(row, where: str) -> dict:
    if not isinstance(row, dict):
        raise MoebertError(f"{where}: expected a JSON object of column -> value, found {type(row).__name__}")
    return row


def _table_rows(path: Path, text: str, delimiter: str, quoting: str) -> list[tuple[str, dict]]:
    mode = csv.QUOTE_NONE if quoting == "none" else csv.QUOTE_MINIMAL
    reader = csv.reader(text.splitlines(keepends=True), delimiter=delimiter, quoting=mode)
    header = next(reader, None)
    if not header:
        raise MoebertError(f"{path}, line 1: empty; the first line must name the columns")
    rows, start = [], reader.line_num + 1
    for fields in reader:
        where = f"{path}, line {start}"
        start = reader.line_num + 1
        if not fields:
            continue
        if len(fields) != len(header):
            raise MoebertError(
                f"{where}: {len(fields)} fields, but the header names {len(header)} ({', '.join(header)}); "
                f"quote fields that hold the delimiter"
                + ("" if quoting == "none" else ", or set quoting: none if the text has stray quotes")
            )
        rows.append((where, dict(zip(header, fields))))
    return rows


# ---------------------------------------------------------------------------------------------
# Checked columns


def _column(path: str, rows, name: str, key: str) -> None:
    for where, row in rows:
        if name not in row:
            found = ", ".join(map(str, row)) or "none"
            raise MoebertError(
                f"{where}: no column {name!r} (declared as {key}); found: {found}. Fix the column name "
                f"under {key} or the file"
            )


def _texts(rows, names: list[str], key: str) -> list[list[str]]:
    columns = []
    for name in names:
        values = []
        for where, row in rows:
            value = row[name]
            if not isinstance(value, str):
                raise MoebertError(f"{where}: {key} column {name!r} holds {value!r}, not text")
            if not value.strip():
                raise MoebertError(f"{where}: {key} column {name!r} is empty; fill it in or drop the row")
            values.append(value)
        columns.append(values)
    return columns


def _label_strings(rows, name: str) -> list[str]:
    labels = []
    for where, row in rows:
        value = row[name]
        label = json.dumps(value) if isinstance(value, bool) else str(value)
        if value is None or not label.strip():
            raise MoebertError(f"{where}: label column {name!r} is empty; give every labelled row a label")
        if any(char in label for char in "\t\n\r"):
            raise MoebertError(f"{where}: label {label!r} holds a tab or line break; rename the label")
        labels.append(label)
    return labels


def _scores(rows, name: str) -> list[float]:
    scores = []
    for where, row in rows:
        value = row[name]
        try:
            score = float(value) if not isinstance(value, bool) else math.nan
        except (TypeError, ValueError):
            score = math.nan
        if not math.isfinite(score):
            raise MoebertError(
                f"{where}: regression label {name!r} is {value!r}, not a finite number; fix the value or "
                f"declare the task as classification"
            )
        scores.append(score)
    return scores


def _ids(rows, name: str | None, split: str) -> list[str]:
    if name is None:
        return [str(i) for i in range(len(rows))]  # the row's place in its file, from 0
    ids, seen = [], {}
    for where, row in rows:
        value = str(row[name]).strip()
        if not value or any(char in value for char in "\t\n\r"):
            raise MoebertError(f"{where}: id {row[name]!r} is empty or holds a tab or line break")
        if value in seen:
            raise MoebertError(
                f"{where}: id {value!r} appears twice (first at {seen[value]}); ids must be unique"
            )
        seen[value] = where
        ids.append(value)
    return ids


def _sort_key(label: str):
    """Numbers in numeric order, before other labels in string order: a stable order that puts "0" before "1"
    and "2" before "10"."""
    try:
        return (0, float(label), label)
    except ValueError:
        return (1, 0.0, label)


def label_order(declaration: dict, train_labels: list[str], train: str) -> list[str]:
    """The class order: `label_names` where declared (each must occur in train), else train's labels sorted."""
    seen = set(train_labels)
    names = declaration.get("label_names")
    if names:
        unused = [name for name in names if name not in seen]
        if unused:
            raise MoebertError(
                f"{train}: label_names lists {', '.join(map(repr, unused))}, which no train row has; "
                f"drop it from label_names or add training rows with it"
            )
        extra = sorted(seen - set(names), key=_sort_key)
        if extra:
            raise MoebertError(
                f"{train}: label {extra[0]!r} is not in label_names ({', '.join(names)}); add it there"
            )
        return list(names)
    if len(seen) < 2:
        raise MoebertError(
            f"{train}: every row has the label {train_labels[0]!r}; a classifier needs at least two classes "
            f"in train"
        )
    return sorted(seen, key=_sort_key)


# ---------------------------------------------------------------------------------------------
# The task classes


class CustomTask:
    """What a user task adds to its family's class: its declaration, the test split it predicts, and its
    predictions file (one row per row of the predicted split: its id and the prediction)."""

    declaration: dict

    @property
    def predict_split(self) -> str:
        """The split `moebert predict` writes: test where declared, else dev."""
        return "test" if self.declaration.get("test") else "dev"

    def predictions_path(self, output: str | os.PathLike) -> Path:
        return Path(output) / f"{self.predict_split}-predictions.tsv"


@dataclass(frozen=True, kw_only=True)
class CustomTextTask(CustomTask, GlueTask):
    """A user's classification or regression task on one text or a pair (a GlueTask on its prepared tsv)."""

    declaration: dict = field(compare=False)

    def prepare(self, source, output) -> Path:
        return prepare(self.name, self.declaration, output)

    def predict_rows(self, data: str | os.PathLike) -> tuple[list[str], datasets.Dataset]:
        """Ids and texts of the prepared predicted split."""
        path = Path(data) / self.display / f"{self.predict_split}.tsv"
        with open(path, encoding="utf-8", newline="") as handle:
            reader = csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
            rows = list(reader)
        texts = TEXT_NAMES[: len(self.text_columns)]
        columns = {name: [row[name] for row in rows] for name in texts}
        columns["index"] = list(range(len(rows)))
        return [row["id"] for row in rows], datasets.Dataset.from_dict(columns)

    def write_predictions(self, model, tokenizer, data, output, max_length: int, batch_size: int, qa=None):
        from moebert.files import atomic_file
        from moebert.prediction import unlabelled_logits

        ids, rows = self.predict_rows(data)
        logits = unlabelled_logits(model, tokenizer, self, rows, max_length, batch_size)
        if self.is_regression:
            predictions = [f"{score:.6g}" for score in logits[:, 0]]
        else:
            predictions = [self.labels[i] for i in logits.argmax(axis=1)]
        path = self.predictions_path(output)
        with atomic_file(path) as tmp, open(tmp, "w", encoding="utf-8", newline="") as handle:
            handle.write("id\tprediction\n")
            handle.writelines(f"{i}\t{p}\n" for i, p in zip(ids, predictions, strict=True))
        return [path]


@dataclass(frozen=True, kw_only=True)
class CustomQaTask(CustomTask, QaTask):
    """A user's extractive QA task (a QaTask on its prepared SQuAD-format JSON; every question has an answer,
    as in SQuAD v1.1)."""

    declaration: dict = field(compare=False)

    def prepare(self, source, output, eval_articles=None, split_seed=0) -> Path:
        return prepare(self.name, self.declaration, output)

    def predict_rows(self, data: str | os.PathLike) -> datasets.Dataset:
        path = Path(data) / self.display / f"{self.predict_split}.json"
        rows = json.loads(path.read_text(encoding="utf-8"))
        if "data" in rows:  # dev: the official format (test.json holds the columns id, context, question)
            rows = rows_from_document(self, rows, str(path))
        columns = {name: rows[name] for name in ("id", "context", "question")}
        return datasets.Dataset.from_dict(columns)

    def write_predictions(self, model, tokenizer, data, output, max_length: int, batch_size: int, qa=None):
        from moebert.evaluation import answer_questions
        from moebert.files import atomic_file
        from moebert.tasks.qa import QaSettings

        questions = self.predict_rows(data)
        answers, _ = answer_questions(
            model, tokenizer, self, questions, max_length, qa or QaSettings(self.doc_stride), batch_size
        )
        path = self.predictions_path(output)
        with atomic_file(path) as tmp, open(tmp, "w", encoding="utf-8", newline="") as handle:
            handle.write("id\tprediction\n")
            handle.writelines(f"{qid}\t{answers[qid].translate(_BREAKERS)}\n" for qid in questions["id"])
        return [path]


def build(name: str, declaration: dict, labels: list[str] | None, size: dict) -> Task:
    """The task object of a checked declaration, its label order and its data's size (train_rows, eval_rows,
    mean_tokens, batch_tokens; see tasks.base.Task)."""
    kind = declaration["kind"]
    common = dict(
        name=name,
        display=name,
        metrics=tuple(declaration["metrics"] or DEFAULT_METRICS[kind]),
        max_length=declaration["max_length"],
        eval_splits={"dev": name},
        family=FAMILY,
        declaration=declaration,
        **size,
    )
    if kind == "extractive-qa":
        return CustomQaTask(
            version="1.1",
            hub_dataset="",
            source_files={"train": "train.json", "dev": "dev.json"},
            head="question-answering",
            **common,
        )
    texts = declaration["text"]
    columns = ("id", *TEXT_NAMES[: len(texts)], "label")
    return CustomTextTask(
        text_columns=tuple(texts),
        labels=tuple(labels) if kind == "classification" else None,
        hub_label_names=tuple(labels) if kind == "classification" else None,
        tsv=TsvLayout(columns=columns, text_fields=TEXT_NAMES[: len(texts)], label_field="label"),
        hub_config="",
        head="classification",
        **common,
    )


# ---------------------------------------------------------------------------------------------
# Reading and checking a declaration's files


@dataclass
class Split:
    ids: list[str]
    texts: list[list[str]] | None = None  # classification/regression: one list per text column
    labels: list | None = None  # label strings or scores; None: unlabelled (test)
    where: list[str] | None = None
    qa: dict | None = None  # extractive QA: flat rows (squad.COLUMNS)


def check_declaration(name: str, declaration: dict) -> None:
    """What can be refused without reading a file."""
    from moebert.tasks import TASKS, _normalise

    registered = {_normalise(task): task for task in TASKS}
    if _normalise(name) in registered:
        raise DeclarationError(
            "",
            f"the name collides with the registered task {registered[_normalise(name)]!r}; rename the "
            f"user task (or list the registered one under tasks)",
        )
    for split in ("train", "dev"):
        if not declaration.get(split):
            raise DeclarationError(split, f"give the {split} file (or hub:<dataset id>:<split>)")
    kind = declaration["kind"]
    allowed = KIND_METRICS[kind]
    for metric in declaration["metrics"] or ():
        if metric not in allowed:
            raise DeclarationError(
                "metrics",
                f"{metric!r} is not a metric of a {kind} task; allowed: {', '.join(allowed)}",
            )
    if kind == "extractive-qa":
        if declaration["metrics"] and list(declaration["metrics"]) != list(allowed):
            raise DeclarationError(
                "metrics", f"extractive QA reports {', '.join(allowed)}, in that order; drop the key"
            )
        if declaration["label_names"]:
            raise DeclarationError("label_names", "extractive QA has no label set; drop the key")
        return
    if not 1 <= len(declaration["text"]) <= 2:
        raise DeclarationError("text", "give one or two text columns (a text, or a pair)")
    if kind == "regression" and declaration["label_names"]:
        raise DeclarationError("label_names", "a regression task has no label set; drop the key")
    metrics = declaration["metrics"] or DEFAULT_METRICS[kind]
    if "f1" in metrics and declaration["label_names"] and len(declaration["label_names"]) != 2:
        raise DeclarationError("metrics", "f1 is binary (the second label positive); use macro_f1")
    for split in ("train", "dev", "test"):
        if declaration.get(split):
            file_format(declaration[split], declaration["format"])


def _rows(declaration: dict, split: str) -> list[tuple[str, dict]]:
    path = declaration[split]
    fmt = file_format(path, declaration["format"])
    return read_rows(path, fmt, declaration["quoting"], declaration["hub_config"])


def _read_text_split(declaration: dict, split: str) -> Split:
    path = declaration[split]
    rows = _rows(declaration, split)
    if not rows:
        raise MoebertError(f"{path}: holds no rows; the {split} split needs at least one")
    texts = declaration["text"]
    for name in texts:
        _column(path, rows, name, "text")
    if declaration["id"] is not None:
        _column(path, rows, declaration["id"], "id")
    label = declaration["label"]
    labelled = split != "test" or all(label in row for _, row in rows)
    if labelled:
        _column(path, rows, label, "label")
    values = None
    if labelled:
        read = _scores if declaration["kind"] == "regression" else _label_strings
        values = read(rows, label)
    return Split(
        ids=_ids(rows, declaration["id"], split),
        texts=_texts(rows, texts, "text"),
        labels=values,
        where=[where for where, _ in rows],
    )


def _qa_rows(declaration: dict, split: str, task: QaTask) -> dict[str, list]:
    """Flat question rows (squad.COLUMNS) of a QA split: a SQuAD-format file, or rows with question,
    context and answers columns (answers as the hub gives them, {"text": [...], "answer_start": [...]},
    or SQuAD's list of {"text", "answer_start"}; a CSV cell holds it as JSON)."""
    path = declaration[split]
    rows = _rows(declaration, split)
    if len(rows) == 1 and "data" in rows[0][1] and isinstance(rows[0][1]["data"], list):
        if split == "test":
            document = rows[0][1]
            flat = {"id": [], "context": [], "question": []}
            for a, article in enumerate(document["data"]):
                for p, paragraph in enumerate(article.get("paragraphs", [])):
                    for q, qa in enumerate(paragraph.get("qas", [])):
                        where = f"{path}: article {a}, paragraph {p}, question {q}"
                        texts = (qa.get("id"), paragraph.get("context"), qa.get("question"))
                        if not all(isinstance(text, str) and text.strip() for text in texts):
                            raise MoebertError(f"{where}: needs an id, a context and a question, as text")
                        for name, text in zip(("id", "context", "question"), texts):
                            flat[name].append(text)
            if len(set(flat["id"])) != len(flat["id"]):
                raise MoebertError(f"{path}: a question id appears twice; ids must be unique")
            return flat
        return rows_from_document(task, rows[0][1], str(path))
    if not rows:
        raise MoebertError(f"{path}: holds no rows; the {split} split needs at least one")
    names = {key: declaration[key] for key in ("question", "context")}
    for key, name in names.items():
        _column(path, rows, name, key)
    questions, contexts = _texts(rows, [names["question"], names["context"]], "question/context")
    ids = _ids(rows, declaration["id"], split)
    if split == "test":
        return {"id": ids, "context": contexts, "question": questions}
    _column(path, rows, declaration["answers"], "answers")
    flat = {"id": ids, "title": [], "context": contexts, "question": questions, "answers": []}
    for (where, row), context in zip(rows, contexts):
        answers = _answers(row[declaration["answers"]], where)
        if not answers["text"]:
            raise MoebertError(
                f"{where}: no answer; every question of a user QA task needs one (unanswerable questions "
                f"are not supported): give one or drop the row"
            )
        for text, start in zip(answers["text"], answers["answer_start"]):
            if context[start : start + len(text)] != text:
                raise MoebertError(
                    f"{where}: answer {text!r} is not in the context at answer_start {start} (the context "
                    f"has {context[start : start + len(text)]!r} there); fix answer_start (a character "
                    f"offset from 0) or the answer"
                )
        flat["title"].append(declaration["name"])
        flat["answers"].append(answers)
    return flat


def _answers(value, where: str) -> dict[str, list]:
    if isinstance(value, str):
        value = _json(value, f"{where}: answers") if value.strip() else []
    if isinstance(value, list):  # SQuAD's list of {"text", "answer_start"}
        if not all(isinstance(a, dict) for a in value):
            raise MoebertError(f"{where}: answers must be objects with text and answer_start")
        value = {
            "text": [a.get("text") for a in value],
            "answer_start": [a.get("answer_start") for a in value],
        }
    if not isinstance(value, dict) or not isinstance(value.get("text"), list):
        raise MoebertError(
            f'{where}: answers must be {{"text": [...], "answer_start": [...]}} or a list of '
            f'{{"text", "answer_start"}} objects'
        )
    texts, starts = value["text"], value.get("answer_start")
    if not isinstance(starts, list) or len(starts) != len(texts):
        raise MoebertError(f"{where}: answers need one answer_start per text")
    for text, start in zip(texts, starts):
        if not isinstance(text, str) or not text or not isinstance(start, int) or isinstance(start, bool):
            raise MoebertError(
                f"{where}: answer {text!r} at {start!r}: each answer needs a non-empty text and an integer "
                f"answer_start"
            )
    return {"text": list(texts), "answer_start": list(starts)}


def _pieces(*texts: str) -> int:
    """Estimated word pieces of a row: its texts' characters and the special tokens ([CLS], one [SEP] each)."""
    return round(PIECES_PER_CHAR * sum(len(text) for text in texts)) + 1 + len(texts)


def size(train_lengths: list[int], eval_lengths: list[int]) -> dict:
    """The task's size for the cost model: rows, mean length and the mean longest row of eval batches."""
    batches = [max(eval_lengths[i : i + EVAL_BATCH]) for i in range(0, len(eval_lengths), EVAL_BATCH)]
    return {
        "train_rows": len(train_lengths),
        "eval_rows": len(eval_lengths),
        "mean_tokens": max(1, round(float(np.mean(train_lengths)))),
        "batch_tokens": max(1, round(float(np.mean(batches)))),
    }


def read(name: str, declaration: dict) -> tuple[Task, dict]:
    """Read and check every file of a declaration: the task, and its prepared files (name -> content)."""
    check_declaration(name, declaration)
    declaration = {**declaration, "name": name}
    splits = [split for split in ("train", "dev", "test") if declaration.get(split)]
    if declaration["kind"] == "extractive-qa":
        probe = build(name, declaration, None, size([1], [1]))
        rows = {split: _qa_rows(declaration, split, probe) for split in splits}
        lengths = {
            split: [_pieces(q, c) for q, c in zip(rows[split]["question"], rows[split]["context"])]
            for split in splits
        }
        task = build(name, declaration, None, size(lengths["train"], lengths["dev"]))
        files = {f"{split}.json": document_from_rows(task, rows[split]) for split in ("train", "dev")}
        if "test" in rows:
            files["test.json"] = rows["test"]
        return task, {**files, DECLARATION_FILE: _record(task, None)}
    data = {split: _read_text_split(declaration, split) for split in splits}
    labels = None
    if declaration["kind"] == "classification":
        labels = label_order(declaration, data["train"].labels, declaration["train"])
        known = set(labels)
        for split in splits[1:]:
            for where, label in zip(data[split].where, data[split].labels or ()):
                if label not in known:
                    raise MoebertError(
                        f"{where}: label {label!r} never occurs in train ({declaration['train']}; its labels: "
                        f"{', '.join(labels)}); fix the label or add training rows with it"
                    )
        if "f1" in (declaration["metrics"] or ()) and len(labels) != 2:
            raise DeclarationError(
                "metrics", f"f1 is binary, but train has {len(labels)} labels; use macro_f1"
            )
    lengths = {split: [_pieces(*row) for row in zip(*data[split].texts)] for split in splits}
    task = build(name, declaration, labels, size(lengths["train"], lengths["dev"]))
    files = {f"{split}.tsv": _tsv(task, data[split], split) for split in splits}
    return task, {**files, DECLARATION_FILE: _record(task, labels)}


def _tsv(task: CustomTextTask, split: Split, name: str) -> str:
    labelled = name != "test"
    texts = [[text.translate(_BREAKERS) for text in column] for column in split.texts]
    header = list(task.tsv.columns if labelled else ("index", *task.tsv.columns[:-1]))
    lines = ["\t".join(header)]
    for i, row in enumerate(zip(split.ids, *texts)):
        fields = ([str(i)] if not labelled else []) + list(row)
        if labelled:
            label = split.labels[i]
            fields.append(str(np.float32(label)) if task.is_regression else label)
        lines.append("\t".join(fields))
    return "\n".join(lines) + "\n"


def _record(task: Task, labels: list[str] | None) -> dict:
    return {
        "name": task.name,
        "declaration": {k: v for k, v in task.declaration.items() if k != "name"},
        "label_names": labels,
        "size": {
            key: getattr(task, key) for key in ("train_rows", "eval_rows", "mean_tokens", "batch_tokens")
        },
    }


def prepare(name: str, declaration: dict, output: str | os.PathLike) -> Path:
    """Check a declaration's files and write them, with task.json, to <output>/<name>/; nothing is written
    when a check fails."""
    _, files = read(name, declaration)
    target = Path(output) / name
    with atomic_dir(target) as tmp:
        for file, content in files.items():
            if isinstance(content, str):
                (tmp / file).write_text(content, encoding="utf-8", newline="")
            else:
                write_json(tmp / file, content)
    return target


def load_declared(name: str, data: str | os.PathLike) -> Task | None:
    """The user task `name` as prepared under `data` (<data>/<name>/task.json), or None if there is none."""
    path = Path(data) / name / DECLARATION_FILE
    if not path.is_file():
        return None
    from moebert.config.validation import check_custom_task

    record = json.loads(path.read_text(encoding="utf-8"))
    declaration = {**check_custom_task(record["name"], record["declaration"]), "name": record["name"]}
    return build(record["name"], declaration, record["label_names"], record["size"])
