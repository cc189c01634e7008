import os
from pathlib import Path

import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification

REPO = Path(__file__).resolve().parents[1]


def randomize_biases(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Non-zero random biases and LayerNorm parameters (a fresh BERT has zero biases and unit LayerNorms),
    so that every bias term of a formula is exercised."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("bias"):
                param.copy_(torch.randn(param.shape, generator=gen) * 0.1)
            elif name.lower().endswith("norm.weight"):  # BERT's LayerNorm, ModernBERT's *_norm
                param.copy_(1 + torch.randn(param.shape, generator=gen) * 0.1)
    return model


# The size of every tiny random model: 2 layers, hidden 16, FFN 64, 50 token ids.
TINY_SIZE = {
    "vocab_size": 50,
    "hidden_size": 16,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "max_position_embeddings": 32,
}


def tiny_bert(num_labels: int = 3, seed: int = 0, **overrides) -> BertForSequenceClassification:
    """A random BERT small enough for exact gradient checks (2 layers, FFN 64), with random biases."""
    torch.manual_seed(seed)
    settings = {
        **TINY_SIZE,
        "num_labels": num_labels,
        "problem_type": "regression" if num_labels == 1 else "single_label_classification",
    }
    config = BertConfig(**{**settings, **overrides})
    return randomize_biases(BertForSequenceClassification(config), seed).eval()


# The post-norm pair backbones (backbones/base.py), each built tiny from its own config class below.
PAIR_BACKBONES = ("bert", "roberta", "xlm-roberta", "electra", "deberta-v2")
# What each architecture's tiny config sets beyond BERT's names, for its quirks to be exercised: RoBERTa's
# family counts positions after its padding id 1 and has one token type; ELECTRA's embeddings are narrower
# than its hidden size; DeBERTa-v3 has relative attention (both directions, log buckets), no absolute
# positions and no token types.
_TINY_QUIRKS = {
    "bert": {},
    "roberta": {"pad_token_id": 1, "bos_token_id": 0, "eos_token_id": 2, "type_vocab_size": 1},
    "xlm-roberta": {"pad_token_id": 1, "bos_token_id": 0, "eos_token_id": 2, "type_vocab_size": 1},
    "electra": {"embedding_size": 8},
    "deberta-v2": {
        "relative_attention": True,
        "pos_att_type": ["p2c", "c2p"],
        "position_buckets": 8,
        "max_relative_positions": -1,
        "position_biased_input": False,
        "norm_rel_ebd": "layer_norm",
        "share_att_key": True,
        "type_vocab_size": 0,
    },
}


def tiny_task_model(
    backbone: str, head: str = "classification", num_labels: int = 3, seed: int = 0, **overrides
) -> torch.nn.Module:
    """A random task model of a registered backbone at tiny_bert's size (2 layers, hidden 16, FFN 64, 50
    token ids), with random biases and LayerNorms, in eval mode."""
    from moebert.backbones import BACKBONES

    b = BACKBONES[backbone]
    torch.manual_seed(seed)
    settings = {
        **TINY_SIZE,
        "num_labels": num_labels,
        "problem_type": "regression" if num_labels == 1 else "single_label_classification",
        **_TINY_QUIRKS[backbone],
    }
    if b.position_offset:
        settings["max_position_embeddings"] += settings["pad_token_id"] + 1
    if head != "classification":  # a span head: start and end logits
        settings.update(num_labels=2, problem_type=None)
    dense = b.heads[head]
    config = dense.config_class(**{**settings, **overrides})
    return randomize_biases(dense(config), seed).eval()


def task_batch(
    config, batch: int = 4, seq: int = 10, num_labels: int = 3, seed: int = 1, head: str = "classification"
) -> dict:
    """random_batch as the model of `config` takes it: padding with its pad id (no real token is the pad id),
    segment ids only where it has token types, span targets for a QA head."""
    out = random_batch(batch, seq, config.vocab_size, num_labels, seed)
    pad = config.pad_token_id or 0
    mask = out["attention_mask"].bool()
    ids = torch.where(out["input_ids"] == pad, torch.full_like(out["input_ids"], pad + 1), out["input_ids"])
    out["input_ids"] = torch.where(mask, ids, torch.full_like(ids, pad))
    if getattr(config, "type_vocab_size", 2) < 2:
        del out["token_type_ids"]
    if head == "question-answering":
        gen = torch.Generator().manual_seed(seed)
        starts = torch.randint(0, seq // 2, (batch,), generator=gen)
        del out["labels"]
        out.update(
            start_positions=starts, end_positions=starts + torch.randint(0, 3, (batch,), generator=gen)
        )
    return out


@pytest.fixture(scope="module", params=PAIR_BACKBONES)
def pair_backbone(request) -> str:
    """Each post-norm pair backbone in turn."""
    return request.param


@pytest.fixture(scope="module")
def pair_teacher(pair_backbone) -> tuple[torch.nn.Module, list[torch.Tensor]]:
    """A tiny classifier of each pair backbone and its FFN neurons by importance on one random batch."""
    from moebert.training.importance import importance_scores, orders

    model = tiny_task_model(pair_backbone)
    return model, orders(importance_scores(model, [task_batch(model.config)], progress=False))


def write_tsv(path: Path, rows: list[list[str]]) -> Path:
    """A tab-separated file of `rows` (no quoting, like the classic GLUE files), its folders made."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join("\t".join(row) + "\n" for row in rows), encoding="utf-8")
    return path


def random_batch(batch: int = 4, seq: int = 10, vocab: int = 50, num_labels: int = 3, seed: int = 1) -> dict:
    """Sentence pairs: token ids with ragged lengths (right padding), segment ids 0 then 1 (a random split
    point per row), and labels."""
    gen = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(1, vocab, (batch, seq), generator=gen)
    lengths = torch.randint(seq // 2, seq, (batch,), generator=gen)  # every row but the first is padded
    lengths[0] = seq
    mask = (torch.arange(seq)[None] < lengths[:, None]).long()
    input_ids = input_ids * mask
    second = (
        torch.rand(batch, 1, generator=gen) * lengths[:, None] * 0.5 + 1
    ).long()  # first token of segment 2
    token_type_ids = ((torch.arange(seq)[None] >= second) & mask.bool()).long()
    labels = (
        torch.rand(batch, generator=gen) * 5
        if num_labels == 1
        else torch.randint(num_labels, (batch,), generator=gen)
    )
    return {
        "input_ids": input_ids,
        "attention_mask": mask,
        "token_type_ids": token_type_ids,
        "labels": labels,
    }


def inputs(batch: dict) -> dict:
    """A batch as a model's forward takes it: without the labels."""
    return {k: v for k, v in batch.items() if k != "labels"}


@pytest.fixture(scope="module")
def teacher() -> BertForSequenceClassification:
    """The tiny dense teacher that experts are cut from (a test module may define its own)."""
    return tiny_bert()


@pytest.fixture(scope="module")
def teacher_orders(teacher) -> list[torch.Tensor]:
    """Its FFN neurons of each layer, most important first, scored on one random batch."""
    from moebert.training.importance import importance_scores, orders

    return orders(importance_scores(teacher, [random_batch()], progress=False))


@pytest.fixture(scope="session")
def glue_dir() -> Path:
    """The shared classic-GLUE copy (never inside the repo); MOEBERT_SHARED_DATA overrides its parent."""
    shared = Path(os.environ.get("MOEBERT_SHARED_DATA") or REPO.parent / "shared" / "data")
    glue = shared / "glue"
    if not glue.is_dir():
        pytest.skip(f"shared GLUE data not found at {glue}; set MOEBERT_SHARED_DATA to the dir holding glue/")
    return glue


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A saved random BERT (hidden 32, FFN 64, 2 layers) with the packaged MiniLM tokenizer: a model
    directory the CLI can fine-tune in seconds."""
    from transformers import AutoTokenizer

    from moebert.hub import PACKAGED_MINILM
    from moebert.models.loading import resolve_model

    tokenizer = AutoTokenizer.from_pretrained(resolve_model(PACKAGED_MINILM))
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    path = tmp_path_factory.mktemp("tiny-bert")
    randomize_biases(BertForSequenceClassification(config)).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
