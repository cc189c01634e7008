"""MoEBERT as a real transformers model: its own config class, save_pretrained / from_pretrained in
safetensors, loadable through the Auto classes once this module is imported (no remote code).

The FFN-replacement point is `install_ffn`: BertLayer.feed_forward_chunk calls
`output(intermediate(x), x)`; with `intermediate` an identity, any module with BertOutput's signature
`forward(hidden_states, input_tensor)` can stand in for the whole FFN: a MoE layer of sliced experts
(models/moe_layer.py, `ffn="moe"`) or of MPO experts (models/mpoe_layer.py, `ffn="mpoe"`). Hash routes are
looked up for all layers before the encoder runs; gates route inside their layer.

This module and the ones it imports (moe_layer, bert_experts, routing, mpoe_layer, mpo, and
moebert.errors) import nothing else of moebert: `moebert export` ships their source beside an exported
model, its imports made relative, so that transformers loads the model without this package (remote code).
Loading helpers that need the rest of the package live in models/loading.py.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers import (
    AutoConfig,
    AutoModelForQuestionAnswering,
    AutoModelForSequenceClassification,
    BertConfig,
    BertForQuestionAnswering,
    BertForSequenceClassification,
)
from transformers.modeling_outputs import QuestionAnsweringModelOutput, SequenceClassifierOutput

from moebert.errors import MoebertError
from moebert.models.bert_experts import (
    IMPLEMENTATIONS,
    ExpertsImplementation,
    resolve_implementation,
)
from moebert.models.moe_layer import SHARED_LAYOUTS, MoEFFN
from moebert.models.mpo import DEFAULT_FORWARD
from moebert.models.mpoe_layer import MPOEFFN, MPOExperts
from moebert.models.routing import HASH_ROUTERS, ROUTERS, SENTENCE_GATE_BATCH1, hash_random_table

# The expert types a layer can hold: importance-sliced narrow experts (MoEBERT; also N full copies of the
# dense FFN, the Switch-style baseline) or MPO experts sharing a central tensor (MPOE).
FFN_TYPES = {"moe": MoEFFN, "mpoe": MPOEFFN}


class MoEBertConfig(BertConfig):
    model_type = "moebert"

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
        **kwargs,
    ):
        super().__init__(**kwargs)
        for key, value, allowed in (
            ("router", router, ROUTERS),
            ("ffn", ffn, FFN_TYPES),
            ("shared", shared, SHARED_LAYOUTS),
            ("gate_sentence_batch1", gate_sentence_batch1, SENTENCE_GATE_BATCH1),
        ):
            if value not in allowed:
                raise MoebertError(f"unknown {key} '{value}'; choose one of {', '.join(allowed)}")
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


def install_ffn(model: nn.Module, make_ffn) -> None:
    """Replace every BertLayer's FFN by `make_ffn(layer_index)` (BertOutput's forward signature)."""
    for i, layer in enumerate(model.bert.encoder.layer):
        layer.intermediate = nn.Identity()
        layer.output = make_ffn(i)


@dataclass
class MoESequenceClassifierOutput(SequenceClassifierOutput):
    balance_loss: torch.Tensor | None = None


@dataclass
class MoEQuestionAnsweringOutput(QuestionAnsweringModelOutput):
    balance_loss: torch.Tensor | None = None


class MoEBertMixin:
    """What makes a BERT task model a MoEBERT, whatever its head: the FFNs replaced by experts, the routes
    set before the encoder runs, and the balance loss returned beside the head's outputs."""

    config_class = MoEBertConfig

    def _install_experts(self, config: MoEBertConfig) -> None:
        self.experts_implementation = ExpertsImplementation()
        if config.ffn == "moe":
            install_ffn(self, lambda i: MoEFFN(config, self.experts_implementation))
        else:
            install_ffn(self, lambda i: MPOEFFN(config))
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
            dims += [self.moe_layers()[0].experts.up_proj.shape[-1]]
        device = device or weights.device
        chosen = resolve_implementation(name, torch.device(device).type, dims, weights.dtype)
        self.experts_implementation._experts_implementation = chosen
        return chosen

    def moe_layers(self) -> list[MoEFFN | MPOEFFN]:
        return [layer.output for layer in self.bert.encoder.layer]

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
            # Routes of all layers follow from the input ids: looked up once, before the encoder runs.
            for layer, expert_ids in zip(layers, self.hash_table[:, input_ids.reshape(-1)]):
                layer.expert_ids = expert_ids
        else:
            for layer in layers:
                layer.attention_mask = attention_mask
        options = {
            k: v
            for k, v in (
                ("output_hidden_states", output_hidden_states),
                ("output_attentions", output_attentions),
            )
            if v is not None
        }
        try:
            out = head_forward(input_ids=input_ids, attention_mask=attention_mask, **inputs, **options)
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


class MoEBertForSequenceClassification(MoEBertMixin, BertForSequenceClassification):
    def __init__(self, config: MoEBertConfig):
        super().__init__(config)
        self._install_experts(config)
        self.post_init()
        self.set_experts_implementation("auto", "cpu")  # a stage sets it again for its device

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


class MoEBertForQuestionAnswering(MoEBertMixin, BertForQuestionAnswering):
    def __init__(self, config: MoEBertConfig):
        super().__init__(config)
        self._install_experts(config)
        self.post_init()
        self.set_experts_implementation("auto", "cpu")  # a stage sets it again for its device

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


# The MoE model of each dense head, and the Auto class that loads each head (task.head).
MOE_HEADS = {
    BertForSequenceClassification: MoEBertForSequenceClassification,
    BertForQuestionAnswering: MoEBertForQuestionAnswering,
}
AUTO_HEADS = {
    "classification": AutoModelForSequenceClassification,
    "question-answering": AutoModelForQuestionAnswering,
}


AutoConfig.register("moebert", MoEBertConfig)
AutoModelForSequenceClassification.register(MoEBertConfig, MoEBertForSequenceClassification)
AutoModelForQuestionAnswering.register(MoEBertConfig, MoEBertForQuestionAnswering)
