"""GLUE tasks: classification and regression on one sentence or a pair.

GLUE labels are kept as the strings of the classic tsv files, in the class-index order of the Hugging Face
`nyu-mll/glue` ClassLabel, so a hub integer and a tsv string of the same example map to the same index.

Default max sequence lengths follow the MoEBERT paper (Table 7): 512 for GLUE, except 128 for MNLI and QQP.
Tokenisation pads dynamically, so a long limit only costs time on the few long examples; configs that need
speed over fidelity (the laptop config) pass a shorter --max-length.

Loading: load_split() reads a split from a classic GLUE directory or the hub into the same shape,
"text_a", "text_b" (pair tasks only) and "label" (class index, or float32 score for regression), so nothing
downstream knows where the data came from; load_test_split() reads an unlabelled test split (what the GLUE
benchmark's server scores) into the texts and each row's "index"; prepare() writes a validated copy in the
classic layout.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import datasets
import numpy as np

from moebert.errors import MoebertError
from moebert.files import atomic_dir
from moebert.hub import hub_source
from moebert.tasks.base import HUB, Task, subsample

# GLUE's diagnostic set AX: unlabelled NLI pairs, predicted with an MNLI model. The classic download keeps it
# beside the tasks (<dir>/diagnostic/diagnostic.tsv), the hub as its own config.
DIAGNOSTIC = "diagnostic"
DIAGNOSTIC_NAME = "AX"
DIAGNOSTIC_HUB_CONFIG = "ax"
# Classic split file stem -> split name on the hub.
HUB_SPLITS = {
    "train": "train",
    "dev": "validation",
    "dev_matched": "validation_matched",
    "dev_mismatched": "validation_mismatched",
    "test": "test",
    "test_matched": "test_matched",
    "test_mismatched": "test_mismatched",
    DIAGNOSTIC: "test",
}
HUB_DATASET = "nyu-mll/glue"
TEXT_NAMES = ("text_a", "text_b")  # text columns of a loaded split
# The classic files have no quoting: a field runs to the next tab, so these cannot appear inside one.
_TSV_BREAKERS = ("\t", "\n", "\r")


@dataclass(frozen=True, kw_only=True)
class TsvLayout:
    """Columns of a task's file in the classic GLUE download.

    Files with a header are read by column name (the order and the extra columns vary between GLUE
    releases, e.g. MNLI dev files carry five annotator labels that train lacks); CoLA has no header, so
    its column names here are positional."""

    columns: tuple[str, ...]  # header written by prepare(); CoLA: positional names
    text_fields: tuple[str, ...]
    label_field: str
    has_header: bool = True
    test_index: str = "index"  # the example id column of the unlabelled test file (which always has a header)


@dataclass(frozen=True, kw_only=True)
class GlueTask(Task):
    text_columns: tuple[str, ...]  # canonical names, identical to the hub's column names
    labels: tuple[str, ...] | None  # tsv label strings in class-index order; None => regression
    hub_label_names: tuple[str, ...] | None  # the hub ClassLabel names of the same classes, same order
    tsv: TsvLayout
    hub_config: str
    predicts_diagnostic: bool = False  # its models also predict the diagnostic set AX (MNLI)

    @property
    def is_regression(self) -> bool:
        return self.labels is None

    @property
    def num_labels(self) -> int:
        return 1 if self.labels is None else len(self.labels)

    @property
    def is_pair(self) -> bool:
        return len(self.text_columns) == 2

    @property
    def test_splits(self) -> dict[str, str]:
        """Unlabelled test split stem -> the benchmark's name for its predictions (file <name>.tsv): the name
        of the matching dev split's result (CoLA, MNLI-m, MNLI-mm, ...), and AX for the diagnostic set."""
        splits = {stem.replace("dev", "test", 1): key for stem, key in self.eval_splits.items()}
        return {**splits, DIAGNOSTIC: DIAGNOSTIC_NAME} if self.predicts_diagnostic else splits

    def label_text(self) -> str:
        if self.is_regression:
            return "score (regression)"
        return ", ".join(
            label if label == name else f"{label}={name}"
            for label, name in zip(self.labels, self.hub_label_names)
        )

    def prepare(self, source: str | os.PathLike, output: str | os.PathLike) -> Path:
        return prepare(self, source, output)

    def features(
        self,
        tokenizer,
        data: str | os.PathLike,
        split: str,
        max_length: int | None = None,
        max_rows: int | None = None,
        seed: int = 0,
    ) -> datasets.Dataset:
        """Model inputs and "labels" of a split (a seeded subset of `max_rows`), padding left to the collator."""
        from moebert.tasks.data import tokenize

        return tokenize(
            load_split(self, data, split, max_rows, seed), tokenizer, self, max_length or self.max_length
        )


def _glue(display: str, **fields) -> GlueTask:
    name = display.lower().replace("-", "")
    return GlueTask(
        name=name,
        display=display,
        hub_config=name,
        family="glue",
        head="classification",
        eval_splits=fields.pop("eval_splits", {"dev": display}),
        max_length=fields.pop("max_length", 512),
        **fields,
    )


_BINARY = ("0", "1")
_NLI = ("entailment", "not_entailment")

GLUE_TASKS: dict[str, GlueTask] = {
    task.name: task
    for task in (
        _glue(
            "CoLA",
            train_rows=8551,
            eval_rows=1043,
            mean_tokens=11,
            batch_tokens=25,
            text_columns=("sentence",),
            labels=_BINARY,
            hub_label_names=("unacceptable", "acceptable"),
            metrics=("mcc",),
            tsv=TsvLayout(
                columns=("source", "label", "original-label", "sentence"),
                text_fields=("sentence",),
                label_field="label",
                has_header=False,
            ),
        ),
        _glue(
            "SST-2",
            train_rows=67349,
            eval_rows=872,
            mean_tokens=13,
            batch_tokens=45,
            text_columns=("sentence",),
            labels=_BINARY,
            hub_label_names=("negative", "positive"),
            metrics=("accuracy",),
            tsv=TsvLayout(columns=("sentence", "label"), text_fields=("sentence",), label_field="label"),
        ),
        _glue(
            "MRPC",
            train_rows=3668,
            eval_rows=408,
            mean_tokens=53,
            batch_tokens=84,
            text_columns=("sentence1", "sentence2"),
            labels=_BINARY,
            hub_label_names=("not_equivalent", "equivalent"),
            metrics=("accuracy", "f1"),
            tsv=TsvLayout(
                columns=("Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"),
                text_fields=("#1 String", "#2 String"),
                label_field="Quality",
            ),
        ),
        _glue(
            "STS-B",
            train_rows=5749,
            eval_rows=1500,
            mean_tokens=28,
            batch_tokens=76,
            text_columns=("sentence1", "sentence2"),
            labels=None,
            hub_label_names=None,
            metrics=("pearson", "spearman"),
            tsv=TsvLayout(
                columns=(
                    "index",
                    "genre",
                    "filename",
                    "year",
                    "old_index",
                    "source1",
                    "source2",
                    "sentence1",
                    "sentence2",
                    "score",
                ),
                text_fields=("sentence1", "sentence2"),
                label_field="score",
            ),
        ),
        _glue(
            "QQP",
            train_rows=363846,
            eval_rows=40430,
            mean_tokens=30,
            batch_tokens=90,  # lengths estimated
            text_columns=("question1", "question2"),
            labels=_BINARY,
            hub_label_names=("not_duplicate", "duplicate"),
            metrics=("accuracy", "f1"),
            max_length=128,
            tsv=TsvLayout(
                columns=("id", "qid1", "qid2", "question1", "question2", "is_duplicate"),
                text_fields=("question1", "question2"),
                label_field="is_duplicate",
                test_index="id",  # QQP's test.tsv: id, question1, question2
            ),
        ),
        _glue(
            "MNLI",
            train_rows=392702,
            eval_rows=19647,
            mean_tokens=39,
            batch_tokens=110,  # lengths estimated
            text_columns=("premise", "hypothesis"),
            labels=("entailment", "neutral", "contradiction"),
            hub_label_names=("entailment", "neutral", "contradiction"),
            metrics=("accuracy",),
            max_length=128,
            eval_splits={"dev_matched": "MNLI-m", "dev_mismatched": "MNLI-mm"},
            predicts_diagnostic=True,
            # The train header; dev files add label2..label5 before gold_label, which reading by name absorbs.
            tsv=TsvLayout(
                columns=(
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
                ),
                text_fields=("sentence1", "sentence2"),
                label_field="gold_label",
            ),
        ),
        _glue(
            "QNLI",
            train_rows=104743,
            eval_rows=5463,
            mean_tokens=50,
            batch_tokens=140,  # lengths estimated
            text_columns=("question", "sentence"),
            labels=_NLI,
            hub_label_names=_NLI,
            metrics=("accuracy",),
            tsv=TsvLayout(
                columns=("index", "question", "sentence", "label"),
                text_fields=("question", "sentence"),
                label_field="label",
            ),
        ),
        _glue(
            "RTE",
            train_rows=2490,
            eval_rows=277,
            mean_tokens=70,
            batch_tokens=199,
            text_columns=("sentence1", "sentence2"),
            labels=_NLI,
            hub_label_names=_NLI,
            metrics=("accuracy",),
            tsv=TsvLayout(
                columns=("index", "sentence1", "sentence2", "label"),
                text_fields=("sentence1", "sentence2"),
                label_field="label",
            ),
        ),
        _glue(
            "WNLI",
            train_rows=635,
            eval_rows=71,
            mean_tokens=37,
            batch_tokens=89,
            text_columns=("sentence1", "sentence2"),
            labels=_BINARY,
            hub_label_names=("not_entailment", "entailment"),
            metrics=("accuracy",),
            tsv=TsvLayout(
                columns=("index", "sentence1", "sentence2", "label"),
                text_fields=("sentence1", "sentence2"),
                label_field="label",
            ),
        ),
    )
}


def _resolve(task: str | GlueTask) -> GlueTask:
    from moebert.tasks import get_task  # the registry imports this module

    return get_task(task)


def features(task: GlueTask) -> datasets.Features:
    """Columns of every split load_split returns for `task`."""
    columns = {name: datasets.Value("string") for name in TEXT_NAMES[: len(task.text_columns)]}
    columns["label"] = (
        datasets.Value("float32") if task.is_regression else datasets.ClassLabel(names=list(task.labels))
    )
    return datasets.Features(columns)


def unlabelled_features(task: GlueTask) -> datasets.Features:
    """Columns of every split load_test_split returns for `task`."""
    columns = {name: datasets.Value("string") for name in TEXT_NAMES[: len(task.text_columns)]}
    return datasets.Features({**columns, "index": datasets.Value("int64")})


def tsv_path(task: GlueTask, data: str | os.PathLike, split: str) -> Path:
    """Where the classic layout keeps a split (e.g. for workflow rule inputs)."""
    return Path(data) / task.display / f"{split}.tsv"


def unlabelled_path(task: GlueTask, data: str | os.PathLike, split: str) -> Path:
    """Where the classic layout keeps an unlabelled test split; the diagnostic set lies beside the tasks."""
    folder = DIAGNOSTIC if split == DIAGNOSTIC else task.display
    return Path(data) / folder / f"{split}.tsv"


def _existing_tsv(task: GlueTask, data: str | os.PathLike, split: str, path: Path) -> Path:
    layout = f"<data>/{path.relative_to(data).as_posix()}"
    if not Path(data).is_dir():
        raise MoebertError(
            f"data directory {data} not found; expected a classic GLUE download holding {path} "
            f"(or '{HUB}' to load {HUB_DATASET} from the Hugging Face hub)"
        )
    if not path.is_file():
        raise MoebertError(
            f"missing file {path}: expected the {task.display} '{split}' split in the classic GLUE layout {layout}"
        )
    return path


def _parse_label(task: GlueTask, value: str, where: str) -> int | float:
    if task.is_regression:
        try:
            score = float(value)
        except ValueError:
            score = math.nan
        if not math.isfinite(score):
            raise MoebertError(f"{where}: score {value!r} is not a finite number")
        return score
    if value not in task.labels:
        raise MoebertError(
            f"{where}: label {value!r} is not a {task.display} label; allowed: {', '.join(task.labels)}"
        )
    return task.labels.index(value)


def _parse_index(value: str | int, where: str, seen: dict[int, str], place: str) -> int:
    """A test row's index, which its prediction is filed under: an integer >= 0 that no earlier row has
    (`seen`: index -> the place of its row)."""
    try:
        index = int(value)
    except ValueError:
        index = None
    if index is None or index < 0:
        raise MoebertError(f"{where}: index {value!r} is not a non-negative integer")
    if index in seen:
        raise MoebertError(f"{where}: index {index} appears twice (first at {seen[index]})")
    seen[index] = place
    return index


def _line(path: Path, number: int) -> str:
    return f"{path}, line {number}"


def _tsv_records(
    path: Path, needed: tuple[str, ...], layout: str, header: tuple[str, ...] | None = None
) -> Iterator[tuple[int, list[str]]]:
    """(line number, fields of `needed` in that order) of every data line of a classic GLUE tsv. The header
    (the file's first line unless given) must name every needed column of the `layout`, and each line must
    have as many fields as it."""
    # utf-8-sig drops the BOM some files (MRPC dev) start with; QUOTE_NONE because GLUE text holds
    # unbalanced '"' that a quoting parser would run across lines.
    with open(path, encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(reader, None) if header is None else list(header)
        if header is None:
            raise MoebertError(f"{path} is empty; expected a header line naming {', '.join(needed)}")
        missing = [name for name in needed if name not in header]
        if missing:
            raise MoebertError(
                f"{path}: header lacks column(s) {', '.join(missing)} of the {layout} layout; "
                f"found: {', '.join(header)}"
            )
        positions = [header.index(name) for name in needed]
        for row in reader:
            if len(row) != len(header):
                raise MoebertError(
                    f"{_line(path, reader.line_num)}: expected {len(header)} tab-separated fields "
                    f"({', '.join(header)}), found {len(row)}"
                )
            yield reader.line_num, [row[position] for position in positions]


def _read_tsv(task: GlueTask, path: Path) -> dict[str, list]:
    layout = task.tsv
    texts = TEXT_NAMES[: len(layout.text_fields)]
    columns: dict[str, list] = {name: [] for name in (*texts, "label")}
    header = None if layout.has_header else layout.columns
    for number, (*row_texts, label) in _tsv_records(
        path, (*layout.text_fields, layout.label_field), task.display, header
    ):
        for name, text in zip(texts, row_texts):
            columns[name].append(text)
        columns["label"].append(_parse_label(task, label, _line(path, number)))
    return columns


def _read_test_tsv(task: GlueTask, path: Path, layout: str) -> dict[str, list]:
    """A test file always has a header (CoLA's too), the index column first."""
    texts = TEXT_NAMES[: len(task.tsv.text_fields)]
    columns: dict[str, list] = {name: [] for name in (*texts, "index")}
    seen: dict[int, str] = {}
    for number, (index, *row_texts) in _tsv_records(
        path, (task.tsv.test_index, *task.tsv.text_fields), layout
    ):
        columns["index"].append(_parse_index(index, _line(path, number), seen, f"line {number}"))
        for name, text in zip(texts, row_texts):
            columns[name].append(text)
    if not columns["index"]:
        raise MoebertError(f"{path} holds no rows below its header; expected the {layout} split")
    return columns


def _load_hub(config: str, split: str) -> datasets.Dataset:
    try:
        return datasets.load_dataset(hub_source(HUB_DATASET), config, split=split)
    except OSError as exc:  # datasets reports network and not-found failures as OSError subclasses
        raise MoebertError(
            f"could not load {HUB_DATASET} config '{config}' split '{split}' from the Hugging Face hub: {exc}"
        ) from exc


def _hub_values(hub: datasets.Dataset, source: str, expected: tuple[str, ...]) -> dict[str, list]:
    missing = [name for name in expected if name not in hub.column_names]
    if missing:
        raise MoebertError(
            f"{source} lacks column(s) {', '.join(missing)}; found: {', '.join(hub.column_names)}"
        )
    return hub.select_columns(list(expected)).to_dict()


def hub_columns(task: GlueTask, hub: datasets.Dataset) -> dict[str, list]:
    """Map one split of the hub's nyu-mll/glue to text_a/text_b/label lists."""
    source = f"{HUB_DATASET}/{task.hub_config}"
    values = _hub_values(hub, source, (*task.text_columns, "label"))
    if not task.is_regression:
        names = getattr(hub.features["label"], "names", None)
        # The registry relies on hub class indices equalling its own; a reordered hub copy must not
        # silently swap classes.
        if names != list(task.hub_label_names):
            raise MoebertError(f"{source} label names are {names}, expected {list(task.hub_label_names)}")
    labels = values["label"]
    if not task.is_regression:
        bad = next((i for i, label in enumerate(labels) if not 0 <= label < task.num_labels), None)
        if bad is not None:
            raise MoebertError(
                f"{source} row {bad}: label {labels[bad]} outside 0..{task.num_labels - 1} "
                "(test splits of the hub are unlabelled)"
            )
    columns = {name: values[column] for name, column in zip(TEXT_NAMES, task.text_columns)}
    columns["label"] = labels
    return columns


def hub_test_columns(task: GlueTask, hub: datasets.Dataset, source: str) -> dict[str, list]:
    """Map an unlabelled test split of nyu-mll/glue (its labels are all -1, and ignored) to text_a/text_b
    and the index lists; `source` names the split in errors."""
    values = _hub_values(hub, source, (*task.text_columns, "idx"))
    seen: dict[int, str] = {}
    columns = {name: values[column] for name, column in zip(TEXT_NAMES, task.text_columns)}
    columns["index"] = [
        _parse_index(index, f"{source} row {row}", seen, f"row {row}")
        for row, index in enumerate(values["idx"])
    ]
    return columns


def load_split(
    task: str | GlueTask,
    data: str | os.PathLike,
    split: str,
    max_rows: int | None = None,
    seed: int = 0,
) -> datasets.Dataset:
    """Load and validate one split from a classic GLUE directory or, with data="hub", from the hub.

    `split` is "train" or one of the task's eval split stems ("dev", "dev_matched", "dev_mismatched").
    With `max_rows`, a seeded random subset in the original order."""
    task = _resolve(task)
    task.check_split(split)
    if os.fspath(data) == HUB:
        columns = hub_columns(task, _load_hub(task.hub_config, HUB_SPLITS[split]))
    else:
        columns = _read_tsv(task, _existing_tsv(task, data, split, tsv_path(task, data, split)))
    return datasets.Dataset.from_dict(subsample(columns, max_rows, seed), features=features(task))


def load_test_split(task: str | GlueTask, data: str | os.PathLike, split: str) -> datasets.Dataset:
    """Load and validate an unlabelled test split, whole, from a classic GLUE directory or the hub: "text_a",
    "text_b" (pair tasks) and each row's "index", under which the benchmark expects its prediction.

    `split` is one of the task's test splits: "test" (MNLI: "test_matched", "test_mismatched"), and for MNLI
    also DIAGNOSTIC, the diagnostic set AX (hub config "ax")."""
    task = _resolve(task)
    if split not in task.test_splits:
        raise MoebertError(
            f"unknown test split '{split}' for {task.display}; expected one of: {', '.join(task.test_splits)}"
        )
    layout = DIAGNOSTIC_NAME if split == DIAGNOSTIC else f"{task.display} {split}"
    if os.fspath(data) == HUB:
        config = DIAGNOSTIC_HUB_CONFIG if split == DIAGNOSTIC else task.hub_config
        source = f"{HUB_DATASET}/{config}/{HUB_SPLITS[split]}"
        columns = hub_test_columns(task, _load_hub(config, HUB_SPLITS[split]), source)
    else:
        path = _existing_tsv(task, data, split, unlabelled_path(task, data, split))
        columns = _read_test_tsv(task, path, layout)
    return datasets.Dataset.from_dict(columns, features=unlabelled_features(task))


def _tsv_text(text: str, where: str) -> str:
    if any(char in text for char in _TSV_BREAKERS):
        raise MoebertError(f"{where}: text {text[:60]!r} holds a tab or line break, which a GLUE tsv cannot")
    return text


def _tsv_lines(task: GlueTask, ds: datasets.Dataset, split: str) -> list[str]:
    layout = task.tsv
    values = ds.to_dict()
    texts = [values[name] for name in TEXT_NAMES[: len(layout.text_fields)]]
    text_at = [layout.columns.index(name) for name in layout.text_fields]
    label_at = layout.columns.index(layout.label_field)
    lines = ["\t".join(layout.columns) + "\n"] if layout.has_header else []
    for number, (label, *row_texts) in enumerate(zip(values["label"], *texts)):
        fields = [""] * len(layout.columns)
        for position, text in zip(text_at, row_texts):
            fields[position] = _tsv_text(text, f"{task.display} {split} row {number}")
        # float32 str() is the shortest text that reads back to the same float32.
        fields[label_at] = str(np.float32(label)) if task.is_regression else task.labels[label]
        lines.append("\t".join(fields) + "\n")
    return lines


def _test_tsv_lines(task: GlueTask, ds: datasets.Dataset, split: str) -> list[str]:
    """A test split as its index column and the text columns the pipeline reads (by name, as always)."""
    layout = task.tsv
    values = ds.to_dict()
    texts = [values[name] for name in TEXT_NAMES[: len(layout.text_fields)]]
    lines = ["\t".join((layout.test_index, *layout.text_fields)) + "\n"]
    for number, (index, *row_texts) in enumerate(zip(values["index"], *texts)):
        fields = [_tsv_text(text, f"{task.display} {split} row {number}") for text in row_texts]
        lines.append("\t".join((str(index), *fields)) + "\n")
    return lines


def prepare(task: str | GlueTask, source: str | os.PathLike, output: str | os.PathLike) -> Path:
    """Validate every split of `task` from `source` (a GLUE directory or "hub") and write them to
    <output>/<display>/{train,<eval splits>}.tsv in the task's classic layout; returns that directory. The
    unlabelled test splits that `source` has go beside them (<display>/test.tsv, MNLI's diagnostic set to
    <output>/diagnostic/diagnostic.tsv, as in the classic download).

    Every split is loaded and rendered before anything is written, so bad input leaves no output. Classic
    columns the pipeline does not read (ids, parses, genre, annotator labels) are written empty, and test
    files keep only the index and text columns."""
    task = _resolve(task)
    files = {
        tsv_path(task, output, split): _tsv_lines(task, load_split(task, source, split), split)
        for split in task.splits
    }
    # The hub has every test split; a directory without them still serves training and evaluation.
    tests = [
        split
        for split in task.test_splits
        if os.fspath(source) == HUB or unlabelled_path(task, source, split).is_file()
    ]
    files.update(
        {
            unlabelled_path(task, output, split): _test_tsv_lines(
                task, load_test_split(task, source, split), split
            )
            for split in tests
        }
    )
    for folder in dict.fromkeys(path.parent for path in files):
        with atomic_dir(folder) as tmp:
            for path, lines in files.items():
                if path.parent == folder:
                    with open(tmp / path.name, "w", encoding="utf-8", newline="") as handle:
                        handle.writelines(lines)
    return Path(output) / task.display
