"""`moebert export`: the trained model in `model_dir` as a folder in the Hugging Face layout, loadable without this
package. The folder holds what `save_pretrained` writes (config.json, safetensors weights), the tokenizer, the
model card (README.md, card.py) and, for a MoE model, the source of its classes (sources.py), named in
config.json's `auto_map`: `AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True)`
(or the QA class) builds the model with exactly the package's code. A dense model (the teacher, distil-half,
dense-narrow) is a plain BERT that transformers loads natively: it ships no code. The package itself loads an
exported folder with its own registered classes (models/loading.py), never with the folder's code."""

from __future__ import annotations

import os
from pathlib import Path

from moebert import package_commit
from moebert.config import TEACHER
from moebert.errors import MoebertError
from moebert.export.card import AUTO_CLASSES, ModelCard
from moebert.export.metadata import base_model_and_license
from moebert.export.sources import check_shipped, model_sources
from moebert.files import atomic_dir, read_json
from moebert.models.modeling import MoEConfigMixin

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt")


def _read_record(path: str | os.PathLike, what: str) -> dict:
    if not Path(path).is_file():
        raise MoebertError(f"{what} '{path}' does not exist (give the metrics.json `moebert evaluate` wrote)")
    try:
        record = read_json(path)
    except (OSError, ValueError) as err:
        raise MoebertError(f"{what} '{path}' is not readable JSON: {err}") from err
    if not isinstance(record, dict) or not isinstance(record.get("results"), dict) or "task" not in record:
        raise MoebertError(
            f"{what} '{path}' is not a metrics file of `moebert evaluate` (no task and results)"
        )
    return record


def _model_head(model_dir: Path) -> str:
    """The head of a saved task model, refusing anything that is not one."""
    config = model_dir / "config.json"
    if not model_dir.is_dir() or not config.is_file():
        raise MoebertError(
            f"model '{model_dir}' is not a model directory (no config.json): give a trained model, e.g. "
            f"results/student/<task>/<method>/seed<seed>"
        )
    try:
        architectures = read_json(config).get("architectures") or []
    except (OSError, ValueError, AttributeError) as err:
        raise MoebertError(f"model '{model_dir}': config.json is not a model config: {err}") from err
    for head, suffix in (
        ("classification", "ForSequenceClassification"),
        ("question-answering", "ForQuestionAnswering"),
    ):
        if any(a.endswith(suffix) for a in architectures):
            return head
    raise MoebertError(
        f"model '{model_dir}' is a {', '.join(architectures) or 'model of no architecture'}, not a task model: "
        f"export a fine-tuned teacher or a trained student"
    )


def _declared_task(name: str, config: str | os.PathLike | None):
    """A user task by its declaration in the resolved config (custom_tasks), its files read again; None if
    the config declares no task of that name."""
    from moebert.tasks import custom

    if config is None or not Path(config).is_file():
        return None
    from moebert.config.validation import check_custom_task

    declared = (read_json(config).get("custom_tasks") or {}).get(name)
    return None if declared is None else custom.read(name, check_custom_task(name, declared))[0]


def export(
    model_dir: str | os.PathLike,
    output: str | os.PathLike,
    metrics: str | os.PathLike | None = None,
    teacher_metrics: str | os.PathLike | None = None,
    config: str | os.PathLike | None = None,
    *,
    name: str | None = None,
    repo: str | None = None,
    commit: str | None = None,
    base_model: str | None = None,
    license: str | None = None,
) -> Path:
    """Write the Hugging Face folder of the trained model in `model_dir` to `output`, atomically; returns it.

    `metrics` and `teacher_metrics` are metrics.json files of `moebert evaluate` for this model and its
    teacher; `config` the resolved workflow config (results/config.json). `name` is what the card calls the
    model (default: the hub repository `repo`, else `<task>-<method>-seed<seed>` of the metrics file, else the
    folder's name); the card loads it from `repo`, else from `output` as given; `commit` the git commit recorded
    (default: this package's checkout); `base_model` and `license` override what the config's teacher gives."""
    from moebert.models.loading import load_model, load_tokenizer, parameter_counts
    from moebert.models.modeling import MoEBertMixin
    from moebert.tasks import get_task

    model_dir, output = Path(model_dir), Path(output)
    head = _model_head(model_dir)
    if output.resolve() == model_dir.resolve() or output.resolve() in model_dir.resolve().parents:
        raise MoebertError(f"--output '{output}' would replace the model '{model_dir}': export elsewhere")
    if not any((model_dir / f).is_file() for f in TOKENIZER_FILES):
        raise MoebertError(
            f"model '{model_dir}' has no tokenizer ({', '.join(TOKENIZER_FILES)}): a trained model is saved "
            f"with its tokenizer"
        )
    if teacher_metrics is not None and metrics is None:
        raise MoebertError("--teacher-metrics: give the model's own --metrics too, to compare them")
    record = _read_record(metrics, "metrics file") if metrics is not None else None
    teacher = _read_record(teacher_metrics, "teacher metrics file") if teacher_metrics is not None else None
    task = None
    if record is not None:
        try:
            task = get_task(record["task"])
        except MoebertError as err:
            task = _declared_task(record["task"], config)
            if task is None:
                raise MoebertError(f"metrics file '{metrics}': {err}") from err
        if task.head != head:
            raise MoebertError(
                f"metrics file '{metrics}' scores {task.name}, a {task.head} task, but model '{model_dir}' "
                f"has a {head} head: give the metrics of this model"
            )
        if teacher is not None and teacher["task"] != record["task"]:
            raise MoebertError(
                f"teacher metrics file '{teacher_metrics}' scores {teacher['task']}, the model's scores "
                f"{record['task']}: give the teacher of the same task"
            )
    resolved = None
    if config is not None:
        if not Path(config).is_file():
            raise MoebertError(
                f"config '{config}' does not exist (give the resolved config, results/config.json)"
            )
        try:
            resolved = read_json(config)
        except (OSError, ValueError) as err:
            raise MoebertError(f"config '{config}' is not readable JSON: {err}") from err
        if not isinstance(resolved, dict) or "methods" not in resolved:
            raise MoebertError(f"config '{config}' is not a resolved workflow config (results/config.json)")

    model = load_model(str(model_dir))
    counts = parameter_counts(model)
    if record is not None and record.get("params") != counts:
        raise MoebertError(
            f"metrics file '{metrics}' counts {record.get('params')} parameters, but model '{model_dir}' has "
            f"{counts}: it scores another model"
        )
    tokenizer = load_tokenizer(str(model_dir))

    moe = isinstance(model, MoEBertMixin)
    if resolved is not None and record is not None:
        _check_method(resolved, config, record, model, metrics)
    base = base_model or ((resolved or {}).get("teacher") or {}).get("model")
    base_id, base_license = base_model_and_license(base)
    if name is None and repo is None and record is not None:
        name = f"{record['task']}-{record['method']}-seed{record['seed']}"
    card = ModelCard(
        name=name or repo or output.name,
        source=repo or str(output),
        head=head,
        model=model,
        counts=counts,
        task=task,
        record=record,
        teacher=teacher,
        resolved=resolved,
        commit=commit or package_commit(),
        base=base,
        base_id=base_id,
        license=license or base_license,
    )
    with atomic_dir(output) as tmp:
        if moe:
            model.config.auto_map = {
                "AutoConfig": f"modeling.{type(model.config).__name__}",
                AUTO_CLASSES[head]: f"modeling.{type(model).__name__}",
            }
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if moe:
            sources = model_sources()
            for file, text in sources.items():
                (tmp / file).write_text(text, encoding="utf-8")
            check_shipped(tmp, list(sources))
        (tmp / "README.md").write_text(card.render(), encoding="utf-8")
        # Every file as the card, which the umask made: the weights are otherwise written private (0600) while
        # the rest is readable by all.
        mode = (tmp / "README.md").stat().st_mode & 0o777
        for path in tmp.iterdir():
            path.chmod(mode)
    return output


# Settings a method of the config and a MoEBERT config share: they must agree, or the card describes another model.
CHECKED_SETTINGS = ("num_experts", "expert_dim", "shared_dim", "router", "shared", "mpo_max_bond")


def _check_method(resolved: dict, config, record: dict, model, metrics) -> None:
    """The config must hold the metrics file's method, with the settings the model was built with."""
    method = record.get("method")
    if method is None or method == TEACHER:
        return
    if method not in resolved["methods"]:
        raise MoebertError(
            f"config '{config}' has no method '{method}' (the method of metrics file '{metrics}'): give the "
            f"config that produced the model"
        )
    settings = resolved["methods"][method]
    for key in CHECKED_SETTINGS:
        if (
            isinstance(model.config, MoEConfigMixin)
            and key in settings
            and settings[key] != getattr(model.config, key)
        ):
            raise MoebertError(
                f"config '{config}' sets {key}={settings[key]!r} for method '{method}', but the model has "
                f"{key}={getattr(model.config, key)!r}: give the config that produced the model"
            )
