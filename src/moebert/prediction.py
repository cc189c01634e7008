"""Test predictions in the formats their scorers read: the GLUE benchmark's submission files, and the answer
JSON of SQuAD's official evaluation scripts.

GLUE (gluebenchmark.com scores the unlabelled test splits): one tab-separated file per test split, named as the
benchmark names it (CoLA.tsv, SST-2.tsv, MRPC.tsv, STS-B.tsv, QQP.tsv, MNLI-m.tsv, MNLI-mm.tsv, QNLI.tsv,
RTE.tsv, WNLI.tsv, and AX.tsv for the diagnostic set, predicted with an MNLI model), with the header
`index<TAB>prediction` and one row per test row, under that row's index; the files go, at the top level, into
one zip for upload, which the benchmark takes only with all eleven: a test split not predicted gets a placeholder
file (`placeholders()`, a constant on each of its rows). Labels are spelled as in the classic GLUE files, which the registry keeps (GlueTask.labels):
0/1 for CoLA, SST-2, MRPC, QQP and WNLI, entailment/not_entailment for QNLI and RTE,
entailment/neutral/contradiction for MNLI and AX; the STS-B score is clipped to its 0-5 scale and written with 3
decimals. This is what jiant, maintained by the benchmark's authors, submits (nyu-mll/jiant-v1-legacy,
jiant/evaluate.py): `_write_glue_preds` with strict_glue_format writes these label strings per task, the
index/prediction header and STS-B as `min(max(0, score), 5)` with "%.3f" (jiant's head predicts score / 5, ours
the score itself); GLUE_NAME_MAP has these file names. nyu-mll/jiant's
jiant/scripts/postproc/glue/glue_submission_formatter.py has the same file names and header, and the GLUE
baselines (nyu-mll/GLUE-baselines, src/tasks.py, MultiNLITask) read diagnostic.tsv as part of MNLI's test data,
predicted with MNLI's classes.

SQuAD has no public test set: the answers to the task's eval split go to {question id: answer text} ("" when
a v2.0 question gets no answer), the predictions file that the official evaluate-v1.1.py / evaluate-v2.0.py
read beside the dataset file.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import datasets
import numpy as np

from moebert.errors import MoebertError
from moebert.evaluation import answer_questions, predict_unlabelled
from moebert.files import atomic_file, write_json
from moebert.tasks import GlueTask, QaTask
from moebert.tasks import data as task_data
from moebert.tasks.glue import GLUE_TASKS
from moebert.tasks.qa import QaSettings

SUBMISSION_HEADER = ("index", "prediction")
SCORE_RANGE = (0.0, 5.0)  # STS-B, the one regression task: similarity from 0 to 5
# The benchmark takes an upload only with every file, each with every row of its test split; rows are numbered
# 0..n-1 in each (the classic files' `index` column, the hub's `idx`). These counts are those splits' sizes.
TEST_ROWS = {
    "CoLA": 1063,
    "SST-2": 1821,
    "MRPC": 1725,
    "STS-B": 1379,
    "QQP": 390965,
    "MNLI-m": 9796,
    "MNLI-mm": 9847,
    "QNLI": 5463,
    "RTE": 3000,
    "WNLI": 146,
    "AX": 1104,
}
# What the file of a test split that was not predicted holds: one constant for every row, the first label as
# the GLUE files spell it (0, or entailment for the inference tasks), STS-B the middle of its scale. It scores as
# a trivial predictor; the upload's other files are the model's.
PLACEHOLDER_SCORE = "2.500"


def submission_files() -> list[str]:
    """Every file name of a complete GLUE submission."""
    return [f"{name}.tsv" for task in GLUE_TASKS.values() for name in task.test_splits.values()]


def unlabelled_logits(
    model, tokenizer, task: GlueTask, test: datasets.Dataset, max_length: int, batch_size: int = 64
) -> np.ndarray:
    """The model's outputs on every row of a test split (load_test_split), in row order."""
    outputs = model.config.num_labels
    if outputs != task.num_labels:
        raise MoebertError(
            f"the model has {outputs} output(s), but {task.display} needs {task.num_labels} "
            f"({task.label_text()}): give a model fine-tuned on {task.name}"
        )
    dataset = task_data.tokenize(test, tokenizer, task, max_length)
    logits = predict_unlabelled(model, dataset, task_data.collator(tokenizer), batch_size)
    bad = np.flatnonzero(~np.isfinite(logits).all(axis=1))
    if bad.size:
        raise MoebertError(
            f"the model's output for the {task.display} test row with index {test['index'][bad[0]]} "
            f"is not a finite number ({logits[bad[0]].tolist()}); it cannot be submitted"
        )
    return logits


def submission_labels(task: GlueTask, logits: np.ndarray) -> list[str]:
    """Each row's prediction as the benchmark spells it: the label of the highest logit, or the score clipped to
    SCORE_RANGE with 3 decimals."""
    if task.is_regression:
        return [f"{score:.3f}" for score in np.clip(logits[:, 0], *SCORE_RANGE)]
    return [task.labels[label] for label in logits.argmax(axis=1)]


def write_submission(path: str | os.PathLike, index: list[int], predictions: list[str]) -> Path:
    """One submission file: the header, then `index<TAB>prediction` per row."""
    with atomic_file(path) as tmp, open(tmp, "w", encoding="utf-8", newline="") as handle:
        handle.write("\t".join(SUBMISSION_HEADER) + "\n")
        handle.writelines(f"{i}\t{prediction}\n" for i, prediction in zip(index, predictions, strict=True))
    return Path(path)


def glue_submission(
    model,
    tokenizer,
    task: GlueTask,
    tests: dict[str, datasets.Dataset],
    output: str | os.PathLike,
    max_length: int,
    batch_size: int = 64,
) -> list[Path]:
    """Write <output>/<name>.tsv for every loaded test split of `tests` (split stem -> load_test_split's
    dataset; names from task.test_splits). All are predicted before any is written."""
    labels = {
        split: submission_labels(
            task, unlabelled_logits(model, tokenizer, task, test, max_length, batch_size)
        )
        for split, test in tests.items()
    }
    return [
        write_submission(Path(output) / f"{task.test_splits[split]}.tsv", tests[split]["index"][:], rows)
        for split, rows in labels.items()
    ]


def placeholders() -> dict[str, str]:
    """File name -> the placeholder prediction of its test split."""
    return {
        f"{name}.tsv": PLACEHOLDER_SCORE if task.is_regression else task.labels[0]
        for task in GLUE_TASKS.values()
        for name in task.test_splits.values()
    }


def zip_submission(
    directories: list[str | os.PathLike], archive: str | os.PathLike, fill: bool = True
) -> tuple[Path, list[str]]:
    """Zip the GLUE submission files that `directories` hold (the predictions of one model on several tasks) at
    the top level of `archive`, as the benchmark takes them, every file it expects: one not predicted holds
    `placeholders()` on each row (with `fill` false, it is refused by name). A file name found twice is
    refused. Returns the archive and the names of the placeholder files."""
    found = {}
    for directory in map(Path, directories):
        for name in submission_files():
            if (directory / name).is_file():
                if name in found:
                    raise MoebertError(
                        f"{name} is in both {found[name]} and {directory}: one submission takes "
                        f"one prediction per test split"
                    )
                found[name] = directory
    if not found:
        raise MoebertError(
            f"{', '.join(map(str, directories))} hold none of the GLUE submission files "
            f"({', '.join(submission_files())})"
        )
    missing = [name for name in submission_files() if name not in found]
    if missing and not fill:
        raise MoebertError(
            f"the benchmark takes an upload with all {len(submission_files())} files; not predicted: "
            f"{', '.join(missing)}"
        )
    filler = placeholders()
    with atomic_file(archive) as tmp, zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as bundle:
        for name in submission_files():
            if name in found:
                bundle.write(found[name] / name, arcname=name)
            else:
                rows = TEST_ROWS[Path(name).stem]
                lines = ["\t".join(SUBMISSION_HEADER), *(f"{i}\t{filler[name]}" for i in range(rows))]
                bundle.writestr(name, "\n".join(lines) + "\n")
    return Path(archive), missing


def squad_predictions(
    model,
    tokenizer,
    task: QaTask,
    examples: dict[str, datasets.Dataset],
    output: str | os.PathLike,
    max_length: int,
    batch_size: int = 64,
    qa: QaSettings | None = None,
) -> list[Path]:
    """Write <output>/<result key>-predictions.json, {question id: answer text}, for every loaded eval split of
    `examples` (split stem -> squad.load_split's questions). All are answered before any is written."""
    qa = qa or QaSettings(task.doc_stride)
    answers = {
        split: answer_questions(model, tokenizer, task, questions, max_length, qa, batch_size)[0]
        for split, questions in examples.items()
    }
    paths = {split: Path(output) / f"{task.eval_splits[split]}-predictions.json" for split in answers}
    for split, path in paths.items():
        write_json(path, answers[split])
    return list(paths.values())
