"""Model inputs from loaded splits: tokenisation without padding, and the collator that pads per batch."""

from __future__ import annotations

import datasets
from transformers import DataCollatorWithPadding

from moebert.tasks import TEXT_NAMES, GlueTask, get_task


def tokenize(ds: datasets.Dataset, tokenizer, task: str | GlueTask, max_length: int) -> datasets.Dataset:
    """Model inputs and "labels" (none for an unlabelled test split), truncated to `max_length`; padding is
    left to `collator`."""
    task = get_task(task)
    text_names = list(TEXT_NAMES[: len(task.text_columns)])

    def encode(batch):
        return tokenizer(*(batch[name] for name in text_names), truncation=True, max_length=max_length)

    encoded = ds.map(encode, batched=True, remove_columns=text_names, desc=f"tokenizing {task.display}")
    targets = ["labels"] if "label" in encoded.column_names else []
    if targets:
        encoded = encoded.rename_column("label", "labels")
    inputs = [name for name in tokenizer.model_input_names if name in encoded.column_names]
    return encoded.select_columns([*inputs, *targets])


def collator(tokenizer, max_length: int | None = None) -> DataCollatorWithPadding:
    """Pads each batch to its longest row, or with `max_length` every row to that length (the reference's)."""
    if max_length is None:
        return DataCollatorWithPadding(tokenizer)
    return DataCollatorWithPadding(tokenizer, padding="max_length", max_length=max_length)
