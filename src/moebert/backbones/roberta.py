"""RoBERTa (Liu et al., 2019) and XLM-R (Conneau et al., 2020): BERT's layers, one token type (its tokenizers
give no token_type_ids; the heads take them, all zeros), position ids after the padding index."""

from transformers import (
    RobertaForQuestionAnswering,
    RobertaForSequenceClassification,
    XLMRobertaForQuestionAnswering,
    XLMRobertaForSequenceClassification,
)

from moebert.backbones.base import Backbone, PairContract

ROBERTA = Backbone(
    name="roberta",
    title="RoBERTa",
    model_types=("roberta",),
    contract=PairContract(),
    heads={
        "classification": RobertaForSequenceClassification,
        "question-answering": RobertaForQuestionAnswering,
    },
    moe_model_type="moe-roberta",
    position_offset=True,
)

XLM_ROBERTA = Backbone(
    name="xlm-roberta",
    title="XLM-RoBERTa",
    model_types=("xlm-roberta",),
    contract=PairContract(),
    heads={
        "classification": XLMRobertaForSequenceClassification,
        "question-answering": XLMRobertaForQuestionAnswering,
    },
    moe_model_type="moe-xlm-roberta",
    position_offset=True,
)
