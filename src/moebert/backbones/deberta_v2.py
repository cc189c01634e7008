"""DeBERTa-v2 and -v3 (He et al., 2021, 2023): disentangled relative attention, BERT's FFN pair. v3 has no
token types (type_vocab_size 0): its heads take token_type_ids and ignore them when the embeddings have none."""

from transformers import DebertaV2ForQuestionAnswering, DebertaV2ForSequenceClassification

from moebert.backbones.base import Backbone, PairContract

DEBERTA_V2 = Backbone(
    name="deberta-v2",
    title="DeBERTa-v2/v3",
    model_types=("deberta-v2",),
    contract=PairContract(),
    heads={
        "classification": DebertaV2ForSequenceClassification,
        "question-answering": DebertaV2ForQuestionAnswering,
    },
    moe_model_type="moe-deberta-v2",
)
