"""Extractive question answering: SQuAD v1.1 and v2.0 (MoEBERT paper, Table 2).

Data comes from the official SQuAD JSON files (`train-v1.1.json`, `dev-v1.1.json`, `train-v2.0.json`,
`dev-v2.0.json`) or the hub (`rajpurkar/squad`, `rajpurkar/squad_v2`), and is loaded into the hub's flat
shape: one row per question with id, title, context, question and answers {"text": [...], "answer_start":
[...]} (empty lists: unanswerable, v2.0 only). `prepare` validates a source and writes
`<output>/<display>/{train,dev}.json` in the official format; with `eval_articles` it makes both parts from
the dev file alone, split by article (offline, where no train file exists), and records that the split is
non-standard in `split.json`, which the metrics and tables carry on.

Model inputs (`features`, `eval_features`) are windows of `max_length` tokens over the context, `doc_stride`
tokens of overlap, the question first; a window that does not hold the answer, and an unanswerable
question, points at [CLS] (position 0).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import datasets
import numpy as np

from moebert.errors import MoebertError
from moebert.files import atomic_dir
from moebert.hub import hub_source
from moebert.tasks.base import HUB, Task, subsample

SPLIT_FILE = "split.json"  # written beside an article split's parts: what they were made of


@dataclass(frozen=True, kw_only=True)
class QaTask(Task):
    version: str  # "1.1" or "2.0", the official file's version
    hub_dataset: str
    source_files: dict[str, str]  # split stem -> official file name in a source directory
    doc_stride: int = 128

    @property
    def has_unanswerable(self) -> bool:
        return self.version == "2.0"

    def label_text(self) -> str:
        return "answer span" + (" or none" if self.has_unanswerable else "")

    def prepare(
        self,
        source: str | os.PathLike,
        output: str | os.PathLike,
        eval_articles: int | None = None,
        split_seed: int = 0,
    ) -> Path:
        return prepare(self, source, output, eval_articles, split_seed)

    def features(
        self,
        tokenizer,
        data: str | os.PathLike,
        split: str,
        max_length: int | None = None,
        max_rows: int | None = None,
        seed: int = 0,
        doc_stride: int | None = None,
    ) -> datasets.Dataset:
        """Training windows of a split (a seeded subset of `max_rows` questions) with start/end positions."""
        from moebert.tasks.qa import train_features

        examples = load_split(self, data, split, max_rows, seed)
        return train_features(
            examples, tokenizer, max_length or self.max_length, doc_stride or self.doc_stride
        )


def _squad(display: str, version: str, hub_dataset: str, name: str, **sizes) -> QaTask:
    suffix = f"v{version}"
    return QaTask(
        name=name,
        display=display,
        version=version,
        hub_dataset=hub_dataset,
        family="qa",
        head="question-answering",
        metrics=("exact_match", "f1"),
        max_length=384,
        eval_splits={"dev": display},
        source_files={"train": f"train-{suffix}.json", "dev": f"dev-{suffix}.json"},
        **sizes,
    )


QA_TASKS: dict[str, QaTask] = {
    task.name: task
    for task in (
        # Question plus context: 177 word pieces on average in dev-v1.1, 2% over 384, so a random batch of
        # 64 nearly always holds a full window. v2.0 shares the articles.
        _squad(
            "SQuAD-v1.1",
            "1.1",
            "rajpurkar/squad",
            "squad",
            train_rows=87599,
            eval_rows=10570,
            mean_tokens=177,
            batch_tokens=384,
        ),
        _squad(
            "SQuAD-v2.0",
            "2.0",
            "rajpurkar/squad_v2",
            "squad_v2",
            train_rows=130319,
            eval_rows=11873,
            mean_tokens=177,
            batch_tokens=384,
        ),
    )
}
HUB_SPLITS = {"train": "train", "dev": "validation"}
COLUMNS = ("id", "title", "context", "question", "answers")


def _rows_features() -> datasets.Features:
    return datasets.Features(
        {
            "id": datasets.Value("string"),
            "title": datasets.Value("string"),
            "context": datasets.Value("string"),
            "question": datasets.Value("string"),
            "answers": {
                "text": datasets.Sequence(datasets.Value("string")),
                "answer_start": datasets.Sequence(datasets.Value("int32")),
            },
        }
    )


# ---------------------------------------------------------------------------------------------
# Official JSON <-> rows


def _read_json(path: Path) -> dict:
    try:
        with open(path, encoding="utf-8") as handle:
            document = json.load(handle)
    except json.JSONDecodeError as err:
        raise MoebertError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(document, dict) or not isinstance(document.get("data"), list):
        raise MoebertError(f"{path}: not a SQuAD file: expected an object with a 'data' list of articles")
    return document


def _field(value, kind, where: str, name: str):
    if not isinstance(value, kind):
        raise MoebertError(f"{where}: '{name}' is missing or not a {kind.__name__}")
    return value


def rows_from_document(task: QaTask, document: dict, source: str) -> dict[str, list]:
    """Validated flat rows of an official SQuAD document; `source` names it in errors."""
    rows = {name: [] for name in COLUMNS}
    seen = set()
    for a, article in enumerate(document["data"]):
        title = _field(article.get("title"), str, f"{source}: article {a}", "title")
        for p, paragraph in enumerate(
            _field(article.get("paragraphs"), list, f"{source}: article {a} ({title})", "paragraphs")
        ):
            where = f"{source}: article {a} ({title}), paragraph {p}"
            context = _field(paragraph.get("context"), str, where, "context")
            for q, qa in enumerate(_field(paragraph.get("qas"), list, where, "qas")):
                qid = qa.get("id")
                if not isinstance(qid, str) or not qid:
                    raise MoebertError(f"{where}, question {q}: no 'id'")
                if qid in seen:
                    raise MoebertError(f"{source}: question id {qid} appears twice")
                seen.add(qid)
                rows["id"].append(qid)
                rows["title"].append(title)
                rows["context"].append(context)
                rows["question"].append(
                    _field(qa.get("question"), str, f"{source}: question {qid}", "question")
                )
                rows["answers"].append(_answers(task, qa, context, f"{source}: question {qid}"))
    if not rows["id"]:
        raise MoebertError(f"{source}: holds no questions")
    return rows


def _answers(task: QaTask, qa: dict, context: str, where: str) -> dict[str, list]:
    answers = _field(qa.get("answers", []), list, where, "answers")
    impossible = qa.get("is_impossible", False)
    if impossible and not task.has_unanswerable:
        raise MoebertError(
            f"{where}: is_impossible is set, but SQuAD v1.1 has no unanswerable questions (use task squad_v2)"
        )
    if impossible and answers:
        raise MoebertError(f"{where}: is_impossible is set but it lists {len(answers)} answer(s)")
    if not answers and not task.has_unanswerable:
        raise MoebertError(f"{where}: has no answer (every SQuAD v1.1 question has one)")
    if not answers and not impossible:
        raise MoebertError(f"{where}: has no answer and is_impossible is not set")
    texts, starts = [], []
    for answer in answers:
        text = _field(answer.get("text"), str, where, "text")
        start = answer.get("answer_start")
        if not isinstance(start, int) or isinstance(start, bool):
            raise MoebertError(f"{where}: answer {text!r} has no integer answer_start")
        found = context[start : start + len(text)]
        if not text or found != text:
            raise MoebertError(
                f"{where}: answer {text!r} does not match the context at answer_start {start} "
                f"(the context has {found!r} there)"
            )
        texts.append(text)
        starts.append(start)
    return {"text": texts, "answer_start": starts}


def document_from_rows(task: QaTask, rows: dict[str, list]) -> dict:
    """The official format of flat rows (questions of one paragraph kept together, in row order)."""
    data, articles, paragraphs = [], {}, {}
    for qid, title, context, question, answers in zip(*(rows[name] for name in COLUMNS)):
        if title not in articles:
            articles[title] = {"title": title, "paragraphs": []}
            data.append(articles[title])
        if (title, context) not in paragraphs:
            paragraphs[(title, context)] = {"context": context, "qas": []}
            articles[title]["paragraphs"].append(paragraphs[(title, context)])
        qa = {
            "id": qid,
            "question": question,
            "answers": [
                {"text": t, "answer_start": s} for t, s in zip(answers["text"], answers["answer_start"])
            ],
        }
        if task.has_unanswerable:
            qa["is_impossible"] = not answers["text"]
        paragraphs[(title, context)]["qas"].append(qa)
    return {"version": task.version, "data": data}


def _load_hub(task: QaTask, split: str) -> dict[str, list]:
    try:
        hub = datasets.load_dataset(hub_source(task.hub_dataset), split=HUB_SPLITS[split])
    except OSError as exc:  # datasets reports network and not-found failures as OSError subclasses
        raise MoebertError(
            f"could not load {task.hub_dataset} split '{HUB_SPLITS[split]}' from the Hugging Face hub: {exc}"
        ) from exc
    missing = [name for name in COLUMNS if name not in hub.column_names]
    if missing:
        raise MoebertError(
            f"{task.hub_dataset} lacks column(s) {', '.join(missing)}; found: {', '.join(hub.column_names)}"
        )
    # Through the official format, so hub rows pass the same checks as a file.
    document = document_from_rows(task, hub.select_columns(list(COLUMNS)).to_dict())
    return rows_from_document(task, document, f"{task.hub_dataset}/{HUB_SPLITS[split]}")


# ---------------------------------------------------------------------------------------------
# Loading and preparing


def prepared_path(task: QaTask, data: str | os.PathLike, split: str) -> Path:
    return Path(data) / task.display / f"{split}.json"


def _split_path(task: QaTask, data: str | os.PathLike, split: str) -> Path:
    """A prepared copy (<data>/<display>/<split>.json) or an official download (<data>/<official name>)."""
    candidates = [prepared_path(task, data, split), Path(data) / task.source_files[split]]
    if not Path(data).is_dir():
        raise MoebertError(
            f"data directory {data} not found; expected SQuAD files ({candidates[1].name}) or "
            f"'{HUB}' to load {task.hub_dataset} from the Hugging Face hub"
        )
    found = next((path for path in candidates if path.is_file()), None)
    if found is None:
        raise MoebertError(
            f"missing file: the {task.display} '{split}' split is neither {candidates[0]} nor {candidates[1]}"
        )
    return found


def _read_split(task: QaTask, data, split: str) -> dict[str, list]:
    if os.fspath(data) == HUB:
        return _load_hub(task, split)
    path = _split_path(task, data, split)
    return rows_from_document(task, _read_json(path), str(path))


def load_split(
    task: QaTask, data: str | os.PathLike, split: str, max_rows: int | None = None, seed: int = 0
) -> datasets.Dataset:
    """Validated questions of one split ("train" or "dev"); with `max_rows`, a seeded subset in file order."""
    task.check_split(split)
    rows = subsample(_read_split(task, data, split), max_rows, seed)
    return datasets.Dataset.from_dict(rows, features=_rows_features())


def split_note(task: QaTask, data: str | os.PathLike) -> str | None:
    """How a prepared copy departs from the standard splits (an article split), or None."""
    path = Path(data) / task.display / SPLIT_FILE
    return json.loads(path.read_text())["note"] if path.is_file() else None


def article_split(
    task: QaTask, document: dict, eval_articles: int, seed: int
) -> tuple[dict, dict, list[int]]:
    """Two article-disjoint documents (train, eval) from one: `eval_articles` articles, drawn by a seeded
    permutation, go to eval; each part keeps the file order. Also returns the eval article indices."""
    total = len(document["data"])
    if not 1 <= eval_articles < total:
        raise MoebertError(
            f"eval_articles must be between 1 and {total - 1} (the file has {total} articles), "
            f"got {eval_articles}"
        )
    held = sorted(np.random.default_rng(seed).permutation(total)[:eval_articles].tolist())
    part = lambda keep: {
        "version": document.get("version", task.version),
        "data": [a for i, a in enumerate(document["data"]) if (i in held) == keep],
    }
    return part(False), part(True), held


def prepare(
    task: QaTask,
    source: str | os.PathLike,
    output: str | os.PathLike,
    eval_articles: int | None = None,
    split_seed: int = 0,
) -> Path:
    """Validate `task`'s splits from `source` (a directory of official files, or "hub") and write them to
    <output>/<display>/{train,dev}.json; returns that directory. With `eval_articles`, both parts come from
    the dev file alone, split by article (see `article_split`), and split.json records it.

    Everything is read and checked before anything is written, so bad input leaves no output."""
    extra = {}
    if eval_articles is None:
        documents = {
            split: document_from_rows(task, _read_split(task, source, split)) for split in task.splits
        }
    else:
        if os.fspath(source) == HUB:
            raise MoebertError(
                "an article split is made from a dev file on disk; give a directory, not 'hub'"
            )
        path = _split_path(task, source, "dev")
        whole = _read_json(path)
        rows_from_document(task, whole, str(path))  # every question checked before the split
        train, dev, held = article_split(task, whole, eval_articles, split_seed)
        documents = {"train": train, "dev": dev}
        titles = lambda doc: [article["title"] for article in doc["data"]]
        count = lambda doc: sum(len(p["qas"]) for article in doc["data"] for p in article["paragraphs"])
        extra[SPLIT_FILE] = {
            "note": (
                f"non-standard split: train and dev are article-disjoint parts of {path.name} "
                f"({len(train['data'])} and {len(dev['data'])} articles, {count(train)} and {count(dev)} "
                f"questions, seed {split_seed})"
            ),
            "source": str(path),
            "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
            "eval_articles": held,
            "seed": split_seed,
            "train_titles": titles(train),
            "dev_titles": titles(dev),
        }
    target = Path(output) / task.display
    with atomic_dir(target) as tmp:
        for name, document in {**{f"{s}.json": d for s, d in documents.items()}, **extra}.items():
            (tmp / name).write_text(json.dumps(document, ensure_ascii=False, indent=None), encoding="utf-8")
    return target
