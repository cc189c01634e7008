"""An exported folder uploaded to a Hugging Face Hub model repository (`moebert export --push-to-hub`)."""

from __future__ import annotations

import os
from pathlib import Path

from moebert.errors import MoebertError
from moebert.export.metadata import UNKNOWN_LICENSE, card_metadata

# What a workflow leaves in a folder that is not the model's: Snakemake's marker of a directory output's time.
NOT_UPLOADED = (".snakemake_timestamp", ".snakemake*")


def push_to_hub(
    folder: str | os.PathLike, repo_id: str, private: bool = False, token: str | None = None
) -> str:
    """Upload an exported folder to the hub repository `repo_id` (created if missing; `private` on creation);
    returns the repository's URL. The token is `token`, else huggingface_hub's own ($HF_TOKEN or the login).
    A card whose license is still the placeholder is refused: the Hub would publish an unlicensed model."""
    from huggingface_hub import HfApi

    folder = Path(folder)
    if not (folder / "README.md").is_file() or not (folder / "config.json").is_file():
        raise MoebertError(f"'{folder}' is not an exported model folder (no README.md and config.json)")
    if card_metadata(folder).get("license") == UNKNOWN_LICENSE:
        raise MoebertError(
            f"the model card of '{folder}' has no license (the base model's is unknown): export again with "
            f"--license, or set `license:` in {folder}/README.md, before pushing"
        )
    api = HfApi(token=token)
    try:
        url = api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
        api.upload_folder(
            repo_id=repo_id,
            repo_type="model",
            folder_path=str(folder),
            ignore_patterns=list(NOT_UPLOADED),
            commit_message=f"Upload {folder.name} exported by moebert",
        )
    except Exception as err:
        raise MoebertError(f"could not push '{folder}' to the hub repository '{repo_id}': {err}") from err
    return str(url)
