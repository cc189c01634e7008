"""ELECTRA (Clark et al., 2020), the discriminator: BERT's layers; its embeddings may be narrower than the
hidden size (a projection follows them), which the FFN never sees."""

from transformers import ElectraForQuestionAnswering, ElectraForSequenceClassification

from moebert.backbones.base import Backbone, PairContract

ELECTRA = Backbone(
    name="electra",
    title="ELECTRA",
    model_types=("electra",),
    contract=PairContract(),
    heads={
        "classification": ElectraForSequenceClassification,
        "question-answering": ElectraForQuestionAnswering,
    },
    moe_model_type="moe-electra",
)
