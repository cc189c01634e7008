"""The backbone registry: every architecture family the package turns into a MoE, by its config's model_type
(see backbones/base.py). A new family is a file of this package and an entry below."""

from __future__ import annotations

from moebert.backbones.base import Backbone, FFNContract, FFNWeights, PairContract
from moebert.backbones.bert import BERT
from moebert.backbones.deberta_v2 import DEBERTA_V2
from moebert.backbones.electra import ELECTRA
from moebert.backbones.modernbert import MODERNBERT
from moebert.backbones.roberta import ROBERTA, XLM_ROBERTA
from moebert.errors import MoebertError

BACKBONES: dict[str, Backbone] = {
    b.name: b for b in (BERT, ROBERTA, XLM_ROBERTA, ELECTRA, DEBERTA_V2, MODERNBERT)
}
_BY_MODEL_TYPE = {t: b for b in BACKBONES.values() for t in (*b.model_types, b.moe_model_type)}


def backbone_of(config) -> Backbone:
    """The backbone of a model config (dense or MoE), by its model_type; an unsupported one is refused, naming
    those supported."""
    model_type = getattr(config, "model_type", config)
    if model_type not in _BY_MODEL_TYPE:
        raise MoebertError(
            f"model type '{model_type}' is not a supported backbone; supported: "
            f"{', '.join(t for b in BACKBONES.values() for t in b.model_types)}"
        )
    return _BY_MODEL_TYPE[model_type]


__all__ = ["BACKBONES", "Backbone", "FFNContract", "FFNWeights", "PairContract", "backbone_of"]
