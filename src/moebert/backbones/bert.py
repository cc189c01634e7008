"""BERT (Devlin et al., 2019): the paper's and the reference's backbone."""

from transformers import BertForQuestionAnswering, BertForSequenceClassification

from moebert.backbones.base import Backbone, PairContract

BERT = Backbone(
    name="bert",
    title="BERT",
    model_types=("bert",),
    contract=PairContract(),
    heads={"classification": BertForSequenceClassification, "question-answering": BertForQuestionAnswering},
    # The name every saved MoEBERT student carries since the first version.
    moe_model_type="moebert",
)
