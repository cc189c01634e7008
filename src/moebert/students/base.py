"""What every student kind declares (`StudentKind`), and the model-building steps the kinds share.

A kind is one file of this package and one entry of its registry (`moebert.students.STUDENTS`). The config
schema declares which method keys it takes (config keys under `methods.<name>`, flags of `moebert adapt` and
`distill`: each key's `students`); the kind says which of them a sweep may vary, whether it needs importance scores, how wide a token's path through it
is (the cost model's dimensions), its own checks, and how it is built from a fine-tuned teacher. The
config, the CLI, the workflow and the cost model ask the kind; none of them branches on its name.
"""

from __future__ import annotations

import copy
from collections.abc import Collection
from typing import Any, ClassVar

import torch
from torch import nn
from transformers import PreTrainedModel

from moebert.backbones import backbone_of
from moebert.cost import Dims
from moebert.errors import MoebertError


class StudentOptionError(MoebertError):
    """A method key (config) or option (CLI) the student cannot take: `key` and why, for the caller to name in
    its own terms (`methods.<m>.<key>` or `--<key>`)."""

    def __init__(self, key: str, why: str):
        super().__init__(f"{key}: {why}")
        self.key, self.why = key, why


class StudentKind:
    """One kind of student. Subclasses set the class attributes and override what differs."""

    name: ClassVar[str]
    # Its keys a sweep may vary (a sweep over a key the kind ignores would train identical models).
    sweep_keys: ClassVar[tuple[str, ...]] = ()
    # Defaults that differ from the config schema's for this kind.
    defaults: ClassVar[dict[str, Any]] = {}
    needs_importance: ClassVar[bool] = False
    trains: ClassVar[bool] = True
    # Its model computes its experts through transformers' experts interface (--experts-implementation).
    computes_experts: ClassVar[bool] = False
    # A trained student of this kind is the dense control `moebert speed` times the MoE against.
    speed_control: ClassVar[bool] = False

    @property
    def keys(self) -> tuple[str, ...]:
        """Its own method keys: those whose declaration in the config schema names this kind, in its order."""
        from moebert.config.validation import TRAINED, method_keys

        return tuple(
            key
            for key, prop in method_keys().items()
            if prop["students"] != TRAINED and self.name in prop["students"]
        )

    @property
    def distill_keys(self) -> tuple[str, ...]:
        """Its own keys that distillation reads (the others, adaptation)."""
        from moebert.config.validation import method_keys

        return tuple(key for key in self.keys if method_keys()[key]["stage"] == "distill")

    @property
    def accepted(self) -> tuple[str, ...]:
        """Its own keys, then those of every trained kind (schema `students: trained`) if it is trained."""
        from moebert.config.validation import TRAINED, method_keys

        training = tuple(key for key, prop in method_keys().items() if prop["students"] == TRAINED)
        return self.keys + (training if self.trains else ())

    @property
    def sweepable(self) -> tuple[str, ...]:
        return self.sweep_keys + (("distill_scope",) if self.trains else ())

    def unused(self, key: str, options: dict) -> str | None:
        """Why `key` does nothing given the other `options` (None: it is used)."""
        if key == "teacher_dropout" and options.get("distill_scope") == "none":
            return "distill_scope none trains on the task loss alone, with no teacher"
        return None

    def check(self, options: dict) -> None:
        """Combinations of the kind's options that cannot be built; raise StudentOptionError."""

    def options(self, given: dict, defaults: dict, tolerate: Collection[str] = ()) -> dict:
        """The kind's options: `given` (method keys or CLI options that were set), checked, with `defaults` (the
        config schema's, then this kind's own) for the rest. A given key the kind does not take, or that does
        nothing beside the others, is refused, unless `tolerate` names it (a key that acts on the points of a
        sweep of this method): then it is left out."""
        for key in given:
            if key not in self.accepted:
                raise StudentOptionError(key, f"not a setting of student {self.name}; leave it out")
        merged = {
            key: given[key] if key in given else self.defaults.get(key, defaults[key])
            for key in self.accepted
        }
        options = {}
        for key, value in merged.items():
            why = self.unused(key, merged)
            if why is None:
                options[key] = value
            elif key in given and key not in tolerate:
                raise StudentOptionError(key, why)
        try:
            self.check(options)
        except StudentOptionError as err:
            if err.key in given:
                raise
            raise StudentOptionError(
                err.key, f"{err.why} ({err.key} is at its default, {options[err.key]!r})"
            ) from None
        return options

    def dims(self, teacher: Dims, options: dict) -> Dims:
        """What one token passes through: the cost model's dimensions of this student."""
        return teacher

    def build(
        self,
        teacher: nn.Module,
        options: dict,
        *,
        seed: int,
        orders: list[torch.Tensor] | None,
        token_counts: torch.Tensor | None,
    ) -> tuple[nn.Module, dict]:
        """The untrained student from the teacher, and what experts.json records of how it was built."""
        raise MoebertError(f"student {self.name} has no model to build")

    def needs_train_tokens(self, options: dict) -> bool:
        """Whether building needs token counts of the train split (hash-balance routing)."""
        return False

    # How the model card of an exported student (moebert export) names and describes it: `card_title` follows
    # the card's first words, `card_text` is its Method section. Every kind states its own (no default), so a
    # new kind without them fails the registry's test instead of being described as another kind.
    card_title: ClassVar[str]
    card_text: ClassVar[str]
    # The card's tags and citations beyond MoEBERT's, which every card has.
    card_tags: ClassVar[tuple[str, ...]] = ()
    card_citations: ClassVar[tuple[str, ...]] = ()

    def describe(self, config, settings: dict) -> tuple[str, str]:
        """(title, Method section) of the model card of a student of this kind: `config` is the saved model's,
        `settings` the method's in the workflow config ({} when the export was given none)."""
        return self.card_title, self.card_text

    def card_notes(self, settings: dict) -> list[str]:
        """How the kind's own method settings trained the model, for the card's training sentence."""
        return []

    def card_rows(self, model) -> list[list[str]]:
        """The card's architecture rows beyond layers, hidden size and heads: a dense model's FFN."""
        title = backbone_of(model.config).title
        return [["FFN width", str(model.config.intermediate_size)], ["experts", f"none (a dense {title})"]]


def moe_student(teacher: nn.Module, **moe) -> nn.Module:
    """A MoE model with the teacher's head and config plus `moe` (MoEBertConfig fields), holding every teacher
    weight outside the FFNs (embeddings, attention, pooler, head); the caller fills in the FFNs."""
    from moebert.models.modeling import MOE_HEADS

    if type(teacher) not in MOE_HEADS:
        raise MoebertError(
            f"cannot build experts from a {type(teacher).__name__}: the teacher must be a dense "
            f"{', '.join(sorted(cls.__name__ for cls in MOE_HEADS))}"
        )
    moe_class = MOE_HEADS[type(teacher)]
    config = moe_class.config_class(**moe, **teacher.config.to_diff_dict())
    config.architectures = [moe_class.__name__]
    student = moe_class(config)
    in_ffn = moe_class.backbone.contract.is_ffn_key
    outside = {k: v for k, v in teacher.state_dict().items() if not in_ffn(k)}
    missing, unexpected = student.load_state_dict(outside, strict=False)
    assert not unexpected and all(in_ffn(k) or k == "hash_table" for k in missing), (missing, unexpected)
    return student


def init_gates(student: nn.Module, seed: int) -> None:
    """Every gate router from `seed` alone, N(0, initializer_range) as BERT initialises a linear layer (the
    reference's gates get the same): with experts that start alike, the gate's init is what tells them apart,
    and it must not depend on what else the model holds (copied or tied experts draw different numbers)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in student.moe_layers():
            nn.init.normal_(
                layer.router.gate.weight, std=student.config.initializer_range, generator=generator
            )


def dense_copy(teacher: nn.Module, **config) -> PreTrainedModel:
    """A dense model of the teacher's class (its task head) with the teacher's config changed by `config`,
    holding every teacher weight outside the encoder layers (embeddings, pooler, head; the caller fills in the
    layers)."""
    student_config = copy.deepcopy(teacher.config)
    for key, value in config.items():
        setattr(student_config, key, value)
    student = type(teacher)(student_config)
    layers = backbone_of(teacher.config).layer_prefix(teacher)
    outside = {k: v for k, v in teacher.state_dict().items() if not k.startswith(layers)}
    missing, unexpected = student.load_state_dict(outside, strict=False)
    assert not unexpected and all(k.startswith(layers) for k in missing), (missing, unexpected)
    return student


# ---------------------------------------------------------------------------------------------
# The model card's words shared by the kinds

# The method every student of this package comes from, as a model card states it (the card names the backbone
# and the student kind of its model beside it: export/card.py).
MOEBERT_METHOD = (
    "MoEBERT (Zuo et al., NAACL 2022, [arXiv:2204.07675](https://arxiv.org/abs/2204.07675)) turns a "
    "fine-tuned encoder (BERT in the paper) into a mixture of experts: it scores every FFN neuron of the "
    "teacher by its "
    "importance (how much the task loss depends on it), cuts each FFN into experts that share the "
    "most important neurons and divide the others, routes each token to one expert, and trains the "
    "student with the task loss and layer-wise distillation from the dense teacher. A token passes "
    "through one expert per layer, so the model computes like a narrower encoder while keeping most of "
    "the teacher's parameters."
)
# What each router does, as a model card's architecture table says it.
ROUTER_NOTES = {
    "hash-random": " (a fixed random token-id -> expert table per layer, saved with the weights)",
    "hash-balance": " (a fixed token-id -> expert table per layer, balanced on the train split's token counts)",
    "gate-token": " (a learned top-1 gate per token; its probability scales the expert's output)",
    "gate-sentence": " (a learned top-1 gate per sequence, from the mean of its tokens)",
}
