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
            elif "LayerNorm.weight" in name:
                param.copy_(1 + torch.randn(param.shape, generator=gen) * 0.1)
    return model


def tiny_bert(num_labels: int = 3, seed: int = 0, **overrides) -> BertForSequenceClassification:
    """A random BERT small enough for exact gradient checks (2 layers, FFN 64), with random biases."""
    torch.manual_seed(seed)
    settings = {
        "vocab_size": 50,
        "hidden_size": 16,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": 64,
        "max_position_embeddings": 32,
        "num_labels": num_labels,
        "problem_type": "regression" if num_labels == 1 else "single_label_classification",
    }
    config = BertConfig(**{**settings, **overrides})
    return randomize_biases(BertForSequenceClassification(config), seed).eval()


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
