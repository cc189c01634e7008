"""MoEBERT as a real transformers model, for every registered backbone (moebert.backbones): a config class and
task models per backbone, save_pretrained / from_pretrained in safetensors, loadable through the Auto classes
once this module is imported (no remote code).

A MoE model is the backbone's dense task model (BertForSequenceClassification, RobertaForQuestionAnswering, ...)
with each layer's FFN replaced by a MoE module through the backbone's FFN contract (backbones/base.py):
submodules are replaced, never whole layers, since transformers records hidden states with hooks on its layer
classes. Which MoE module a layer gets follows the config's `ffn` and the contract: importance-sliced narrow
experts (models/moe_layer.py, `ffn="moe"`) or MPO experts (models/mpoe_layer.py, `ffn="mpoe"`). Hash routes
are looked up for all layers before the encoder runs; gates route inside their layer.

This module and the ones it imports (moe_layer, bert_experts, routing, mpoe_layer, mpo, moebert.backbones and
moebert.errors) import nothing else of moebert: `moebert export` ships their source beside an exported model,
its imports made relative, so that transformers loads the model without this package (remote code). Loading
helpers that need the rest of the package live in models/loading.py.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers import (
    AutoConfig,
    AutoModelForQuestionAnswering,
    AutoModelForSequenceClassification,
)
from transformers.modeling_outputs import QuestionAnsweringModelOutput, SequenceClassifierOutput

from moebert.backbones import BACKBONES, Backbone, backbone_of
from moebert.backbones.bert import BERT
from moebert.errors import MoebertError
from moebert.models.bert_experts import (
    IMPLEMENTATIONS,
    ExpertsImplementation,
    resolve_implementation,
)
from moebert.models.glu_layer import GluMoEFFN
from moebert.models.moe_layer import SHARED_LAYOUTS, MoEFFN
from moebert.models.mpo import DEFAULT_FORWARD
from moebert.models.mpoe_layer import MPOEFFN, MPOExperts
from moebert.models.routing import GATE_SCALES, HASH_ROUTERS, ROUTERS, SENTENCE_GATE_BATCH1, hash_random_table

# The expert types a layer can hold: importance-sliced narrow experts (MoEBERT; also N full copies of the
# dense FFN, the Switch-style baseline) or MPO experts sharing a central tensor (MPOE). Per FFN contract: the
# MoE module that takes the place of that contract's FFN.
FFN_TYPES = {"moe": {"pair": MoEFFN, "glu": GluMoEFFN}, "mpoe": {"pair": MPOEFFN}}


class MoEConfigMixin:
    """The MoE settings a MoE model's config adds to its backbone's config class."""

    def __init__(
        self,
        num_experts: int = 4,
        expert_dim: int = 768,
        shared_dim: int = 512,
        router: str = "hash-random",
        expert_dropout: float = 0.1,
        load_balance: float = 0.0,
        ffn: str = "moe",
        mpo_in_factors: list[int] | None = None,
        mpo_out_factors: list[int] | None = None,
        mpo_max_bond: int | None = None,
        mpo_forward: str = DEFAULT_FORWARD,
        shared: str = "copied",
        gate_sentence_batch1: str = "scale",
        gate_scale: str = "output",
        **kwargs,
    ):
        super().__init__(**kwargs)
        for key, value, allowed in (
            ("router", router, ROUTERS),
            ("ffn", ffn, FFN_TYPES),
            ("shared", shared, SHARED_LAYOUTS),
            ("gate_sentence_batch1", gate_sentence_batch1, SENTENCE_GATE_BATCH1),
            ("gate_scale", gate_scale, GATE_SCALES),
        ):
            if value not in allowed:
                raise MoebertError(f"unknown {key} '{value}'; choose one of {', '.join(allowed)}")
        contract = backbone_of(self.model_type).contract.name
        if contract not in FFN_TYPES[ffn]:
            raise MoebertError(
                f"ffn '{ffn}' has no MoE layer for the {contract} FFN of a {backbone_of(self.model_type).title} "
                f"(it has one for: {', '.join(FFN_TYPES[ffn])})"
            )
        if ffn == "mpoe" and router != "gate-token":
            raise MoebertError(
                f"MPOE experts are routed by a learned token gate (Switch style): use router "
                f"'gate-token', not '{router}'"
            )
        self.num_experts = num_experts
        self.expert_dim = expert_dim
        self.shared_dim = shared_dim
        self.router = router
        self.expert_dropout = expert_dropout
        self.load_balance = load_balance
        self.ffn = ffn
        self.mpo_in_factors = mpo_in_factors
        self.mpo_out_factors = mpo_out_factors
        self.mpo_max_bond = mpo_max_bond
        self.mpo_forward = mpo_forward
        self.shared = shared
        self.gate_sentence_batch1 = gate_sentence_batch1
        self.gate_scale = gate_scale


@dataclass
class MoESequenceClassifierOutput(SequenceClassifierOutput):
    balance_loss: torch.Tensor | None = None


@dataclass
class MoEQuestionAnsweringOutput(QuestionAnsweringModelOutput):
    balance_loss: torch.Tensor | None = None


class MoEBertMixin:
    """What makes a task model of a backbone a MoEBERT, whatever its head and backbone: the FFNs replaced by
    experts, the routes set before the encoder runs, and the balance loss returned beside the head's outputs.
    The classes below set `backbone`."""

    backbone: Backbone

    def _install_experts(self, config) -> None:
        self.experts_implementation = ExpertsImplementation()
        contract = self.backbone.contract
        module = FFN_TYPES[config.ffn][contract.name]
        for layer in self.backbone.layer_list(self):
            contract.install(layer, module(config, self.experts_implementation))
        if config.router in HASH_ROUTERS:
            # A buffer, not a plain attribute: the routing table is part of the trained model.
            self.register_buffer(
                "hash_table",
                hash_random_table(config.num_hidden_layers, config.vocab_size, config.num_experts, seed=0),
            )

    def set_experts_implementation(self, name: str, device: torch.device | None = None) -> str:
        """The kernel every MoE layer's experts run with (models/bert_experts.py; MPOE experts have their own):
        one of IMPLEMENTATIONS, or "auto", the fastest on `device` (default: where the model is) for the
        model's widths and dtype. Returns the one set."""
        if name not in ("auto", *IMPLEMENTATIONS):
            raise MoebertError(
                f"unknown experts implementation '{name}'; choose one of auto, {', '.join(IMPLEMENTATIONS)}"
            )
        weights = next(self.parameters())
        dims = [self.config.hidden_size]
        if self.config.ffn == "moe":
            dims += [self.moe_layers()[0].experts.down_proj.shape[-2]]  # the experts' width
        device = device or weights.device
        chosen = resolve_implementation(name, torch.device(device).type, dims, weights.dtype)
        self.experts_implementation._experts_implementation = chosen
        return chosen

    def moe_layers(self) -> list[nn.Module]:
        contract = self.backbone.contract
        return [contract.moe_module(layer) for layer in self.backbone.layer_list(self)]

    def no_weight_decay(self) -> set[str]:
        """Parameters AdamW must not decay: the tensors of MPO experts. Decay on each of the n factors of a chain
        is not decay on the matrix they multiply to: it shrinks the matrix about n times as fast, and, since a
        chain's neighbouring factors can trade any scale between them, it pulls the factors towards equal
        norms rather than the matrix towards zero."""
        return {
            f"{name}.{param}"
            for name, module in self.named_modules()
            if isinstance(module, MPOExperts)
            for param, _ in module.named_parameters()
        }

    def central_parameters(self) -> list[nn.Parameter]:
        """The MPO central tensors shared by the experts of each layer (none for sliced experts)."""
        return [
            p for layer in self.moe_layers() if isinstance(layer, MPOEFFN) for p in layer.central_parameters()
        ]

    def _routed_forward(
        self,
        head_forward,
        output_class,
        input_ids,
        attention_mask,
        output_hidden_states,
        output_attentions,
        **inputs,
    ):
        layers = self.moe_layers()
        if self.config.router in HASH_ROUTERS:
            # Routes of all layers follow from the input ids: looked up once, before the encoder runs. The
            # table holds the ids in its smallest type; the experts index with int64.
            for layer, expert_ids in zip(layers, self.hash_table[:, input_ids.reshape(-1)].long()):
                layer.expert_ids = expert_ids
        else:
            for layer in layers:
                layer.attention_mask = attention_mask
        if inputs.get("token_type_ids") is not None and not self.backbone.token_type_ids:
            raise MoebertError(
                f"a {self.backbone.title} model takes no token_type_ids; tokenize without them"
            )
        # Unset inputs are left out: not every backbone's head names every one (ModernBERT: no token types).
        options = {
            k: v
            for k, v in (
                *inputs.items(),
                ("output_hidden_states", output_hidden_states),
                ("output_attentions", output_attentions),
            )
            if v is not None
        }
        try:
            out = head_forward(input_ids=input_ids, attention_mask=attention_mask, **options)
        finally:
            for layer in layers:
                layer.expert_ids = layer.attention_mask = None
        # The balance loss is returned, not added to `loss`: the trainer weighs every loss term (training/trainer.py).
        balance = None
        if self.config.router not in HASH_ROUTERS:
            balance = torch.stack([layer.balance_loss for layer in layers]).sum()
        return output_class(**out, balance_loss=balance)


# Every input of the heads' forwards below is named, with no **kwargs: the Trainer keeps only the batch columns
# a forward names (token_type_ids of sentence pairs must reach the model), and takes **kwargs to mean the model
# scales its loss for gradient accumulation itself.


class _MoEHead:
    """What a MoE task model does on construction: the dense head's, then the experts in place of the FFNs."""

    def __init__(self, config):
        super().__init__(config)
        self._install_experts(config)
        self.post_init()
        self.set_experts_implementation("auto", "cpu")  # a stage sets it again for its device


class MoEClassification(_MoEHead):
    """The forward of a MoE sequence classifier."""

    def forward(
        self,
        input_ids=None,
        attention_mask=None,
        token_type_ids=None,
        position_ids=None,
        labels=None,
        output_hidden_states=None,
        output_attentions=None,
    ):
        return self._routed_forward(
            super().forward,
            MoESequenceClassifierOutput,
            input_ids,
            attention_mask,
            output_hidden_states,
            output_attentions,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            labels=labels,
        )


class MoEQuestionAnswering(_MoEHead):
    """The forward of a MoE extractive-QA model."""

    def forward(
        self,
        input_ids=None,
        attention_mask=None,
        token_type_ids=None,
        position_ids=None,
        start_positions=None,
        end_positions=None,
        output_hidden_states=None,
        output_attentions=None,
    ):
        return self._routed_forward(
            super().forward,
            MoEQuestionAnsweringOutput,
            input_ids,
            attention_mask,
            output_hidden_states,
            output_attentions,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            start_positions=start_positions,
            end_positions=end_positions,
        )


# The MoE forward of each task head (tasks.Task.head), and the Auto class that loads the head.
HEAD_FORWARDS = {"classification": MoEClassification, "question-answering": MoEQuestionAnswering}
AUTO_HEADS = {
    "classification": AutoModelForSequenceClassification,
    "question-answering": AutoModelForQuestionAnswering,
}


def _moe_classes(backbone: Backbone) -> tuple[type, dict[type, type]]:
    """The MoE config class of a backbone and its MoE task model per dense task model, registered with the
    Auto classes. Named after the dense classes (MoEBertConfig, MoERobertaForSequenceClassification, ...):
    an exported model's auto_map names them."""
    dense_config = next(iter(backbone.heads.values())).config_class
    config_class = type(
        f"MoE{dense_config.__name__}",
        (MoEConfigMixin, dense_config),
        # __init__ named in the class body: transformers would otherwise derive the config's own from its
        # dataclass fields, without the MoE settings.
        {"model_type": backbone.moe_model_type, "__module__": __name__, "__init__": MoEConfigMixin.__init__},
    )
    AutoConfig.register(backbone.moe_model_type, config_class)
    models = {}
    for head, dense in backbone.heads.items():
        moe = type(
            f"MoE{dense.__name__}",
            (HEAD_FORWARDS[head], MoEBertMixin, dense),
            {"config_class": config_class, "backbone": backbone, "__module__": __name__},
        )
        AUTO_HEADS[head].register(config_class, moe)
        models[dense] = moe
    return config_class, models


# Every backbone's MoE classes, as names of this module (an exported model's auto_map names them there).
MOE_CONFIGS: dict[str, type] = {}
MOE_HEADS: dict[type, type] = {}  # dense task model class -> its MoE class
for _backbone in BACKBONES.values():
    MOE_CONFIGS[_backbone.name], _heads = _moe_classes(_backbone)
    MOE_HEADS.update(_heads)
    globals().update({cls.__name__: cls for cls in (MOE_CONFIGS[_backbone.name], *_heads.values())})
MoEBertConfig = MOE_CONFIGS["bert"]
MoEBertForSequenceClassification = MOE_HEADS[BERT.heads["classification"]]
MoEBertForQuestionAnswering = MOE_HEADS[BERT.heads["question-answering"]]
