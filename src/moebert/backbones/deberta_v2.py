"""DeBERTa-v2 and -v3 (He et al., 2021, 2023): disentangled relative attention, BERT's FFN pair. v3 has no
token types (type_vocab_size 0): its heads take token_type_ids and ignore them when the embeddings have none."""

from transformers import DebertaV2ForQuestionAnswering, DebertaV2ForSequenceClassification

from moebert.backbones.base import Backbone, PairContract


def relative_scores(config) -> int:
    """Columns of relative-position scores a token computes per layer: each of the c2p and p2c terms multiplies
    it against all 2 x span relative embeddings (span: position_buckets, else max_relative_positions, else
    the positions) before gathering the ones at its distances, as transformers' DebertaV2 attention does."""
    if not config.relative_attention:
        return 0
    span = (
        config.max_relative_positions
        if config.max_relative_positions >= 1
        else config.max_position_embeddings
    )
    if getattr(config, "position_buckets", -1) > 0:
        span = config.position_buckets
    return len(config.pos_att_type or ()) * 2 * span


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
    relative_scores=relative_scores,
)
