"""Hub code paths without the network: models fetched and GLUE loaded from a local mirror of hub clones,
through the same functions that reach the hub (MOEBERT_HUB_MIRROR), and the safetensors-only rule."""

from __future__ import annotations

import filecmp
import subprocess
from pathlib import Path

import datasets
import pytest
import torch

from moebert.cli import main
from moebert.errors import MoebertError
from moebert.hub import MIRROR_ENV, fetch_model, hub_source, model_slug
from moebert.models.loading import load_model
from moebert.tasks import get_task, load_split, load_test_split
from moebert.tasks.glue import TEXT_NAMES


@pytest.fixture
def mirror(tmp_path, monkeypatch, tiny_model_dir) -> Path:
    """A mirror with a model clone (the files a hub repository holds, a pickled copy and a README too)."""
    root = tmp_path / "mirror"
    clone = root / "someorg" / "tiny-bert"
    clone.mkdir(parents=True)
    for path in Path(tiny_model_dir).iterdir():
        (clone / path.name).write_bytes(path.read_bytes())
    (clone / "pytorch_model.bin").write_bytes(b"pickled weights")
    (clone / "README.md").write_text("# a model card\n")
    monkeypatch.setenv(MIRROR_ENV, str(root))
    return root


def test_fetch_copies_the_model_files_and_never_the_pickled_weights(mirror, tmp_path, tiny_model_dir):
    out = tmp_path / "resources" / "models" / model_slug("someorg/tiny-bert")
    assert out.name == "someorg--tiny-bert"
    main(["fetch-model", "--model", "someorg/tiny-bert", "--output", str(out)])
    names = {p.name for p in out.iterdir()}
    assert "config.json" in names and "model.safetensors" in names
    assert "pytorch_model.bin" not in names and "README.md" not in names
    assert filecmp.cmp(out / "model.safetensors", Path(tiny_model_dir) / "model.safetensors", shallow=False)
    fetched, original = load_model(str(out)), load_model(str(tiny_model_dir))
    for (name, a), (_, b) in zip(fetched.state_dict().items(), original.state_dict().items()):
        assert torch.equal(a, b), name


def test_a_revision_is_fetched_from_a_mirror_only_where_its_clone_is_checked_out_at_it(mirror, tmp_path):
    clone = mirror / "someorg" / "tiny-bert"
    with pytest.raises(MoebertError, match=r"is not a git clone holding revision 'v1'; check that revision"):
        fetch_model("someorg/tiny-bert", tmp_path / "plain", revision="v1")
    git = ["git", "-C", str(clone), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "weights"], check=True)
    subprocess.run([*git, "tag", "v1"], check=True)
    (clone / "README.md").write_text("# a newer card\n")
    subprocess.run([*git, "commit", "-qam", "card"], check=True)
    head = subprocess.run(
        [*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert (
        fetch_model("someorg/tiny-bert", tmp_path / "head", revision=head) / "model.safetensors"
    ).is_file()
    with pytest.raises(MoebertError, match=rf"is checked out at {head[:12]}, not at revision 'v1' \("):
        fetch_model("someorg/tiny-bert", tmp_path / "old", revision="v1")
    assert not (tmp_path / "old").exists()


def test_fetch_refuses_a_model_with_only_pickled_weights(mirror, tmp_path):
    clone = mirror / "someorg" / "tiny-bert"
    for path in clone.glob("*.safetensors"):
        path.unlink()
    out = tmp_path / "model"
    with pytest.raises(MoebertError, match="has no safetensors weights; pickled weights .* are never loaded"):
        fetch_model("someorg/tiny-bert", out)
    assert not out.exists() and not list(tmp_path.glob(".model.tmp-*"))  # nothing half-written


def test_a_mirror_without_the_clone_names_the_expected_directory(mirror):
    with pytest.raises(
        MoebertError, match=rf"{MIRROR_ENV}=.* holds no clone of nyu-mll/glue .*mirror/nyu-mll/glue"
    ):
        hub_source("nyu-mll/glue")


def test_fetch_without_mirror_downloads_the_model_files_through_huggingface_hub(
    tmp_path, monkeypatch, tiny_model_dir
):
    monkeypatch.delenv(MIRROR_ENV, raising=False)
    calls = []

    def snapshot_download(repo_id, revision, local_dir, allow_patterns):  # the hub, without the network
        calls.append((repo_id, revision, tuple(allow_patterns)))
        for path in Path(tiny_model_dir).iterdir():
            (Path(local_dir) / path.name).write_bytes(path.read_bytes())
        (Path(local_dir) / ".cache").mkdir()

    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    out = fetch_model("bert-base-uncased", tmp_path / "bert", revision="main")
    assert calls[0][:2] == ("bert-base-uncased", "main") and "*.safetensors" in calls[0][2]
    assert "pytorch_model.bin" not in calls[0][2]
    assert (out / "model.safetensors").is_file() and not (out / ".cache").exists()


def _hub_clone_of_glue(root: Path, glue_dir: Path, task_name: str) -> None:
    """nyu-mll/glue as a git clone of it looks: README.md with the configs, parquet files per split (the test
    split unlabelled, -1)."""
    task = get_task(task_name)
    features = datasets.Features(
        {
            **{column: datasets.Value("string") for column in task.text_columns},
            "label": datasets.ClassLabel(names=list(task.hub_label_names)),
            "idx": datasets.Value("int32"),
        }
    )
    clone = root / "nyu-mll" / "glue"
    (clone / task.hub_config).mkdir(parents=True)
    for split, hub_split in (("train", "train"), ("dev", "validation")):
        rows = load_split(task, glue_dir, split).to_dict()  # text_a, text_b: the hub names come back
        columns = {column: rows[name] for column, name in zip(task.text_columns, TEXT_NAMES)}
        hub = datasets.Dataset.from_dict(
            {**columns, "label": rows["label"], "idx": list(range(len(rows["label"])))}, features=features
        )
        hub.to_parquet(str(clone / task.hub_config / f"{hub_split}-00000-of-00001.parquet"))
    rows = load_test_split(task, glue_dir, "test").to_dict()
    columns = {column: rows[name] for column, name in zip(task.text_columns, TEXT_NAMES)}
    test = datasets.Dataset.from_dict(
        {**columns, "label": [-1] * len(rows["index"]), "idx": rows["index"]}, features=features
    )
    test.to_parquet(str(clone / task.hub_config / "test-00000-of-00001.parquet"))
    (clone / "README.md").write_text(
        "---\nconfigs:\n"
        f"- config_name: {task.hub_config}\n  data_files:\n"
        f"  - split: train\n    path: {task.hub_config}/train-*\n"
        f"  - split: validation\n    path: {task.hub_config}/validation-*\n"
        f"  - split: test\n    path: {task.hub_config}/test-*\n---\n"
    )


def test_glue_from_a_local_hub_clone_prepares_the_same_files_as_the_tsv(tmp_path, monkeypatch, glue_dir):
    monkeypatch.setenv(MIRROR_ENV, str(tmp_path / "mirror"))
    _hub_clone_of_glue(tmp_path / "mirror", glue_dir, "mrpc")
    main(["prepare-data", "--task", "mrpc", "--source", "hub", "--output", str(tmp_path / "from-hub")])
    main(
        ["prepare-data", "--task", "mrpc", "--source", str(glue_dir), "--output", str(tmp_path / "from-tsv")]
    )
    for split in ("train", "dev", "test"):
        assert filecmp.cmp(
            tmp_path / "from-hub" / "MRPC" / f"{split}.tsv",
            tmp_path / "from-tsv" / "MRPC" / f"{split}.tsv",
            shallow=False,
        ), split


def test_fetch_refuses_an_unsupported_backbone_or_a_refused_student_and_writes_nothing(
    mirror, tmp_path, monkeypatch, capsys
):
    import json

    from moebert.backbones import BACKBONES

    config = mirror / "someorg" / "tiny-bert" / "config.json"
    out = tmp_path / "model"
    monkeypatch.setitem(BACKBONES["bert"].refuses, "mpoe", "a test's reason")
    rc = main(
        ["fetch-model", "--model", "someorg/tiny-bert", "--output", str(out), "--students", "moe", "mpoe"]
    )
    assert rc != 0 and capsys.readouterr().err == (
        "error: teacher 'someorg/tiny-bert': student mpoe cannot be built from a BERT teacher: a test's reason\n"
    )
    assert not out.exists() and not list(tmp_path.glob(".model.tmp-*"))
    fetch_model("someorg/tiny-bert", out, students=["moe", "distil-half"])
    assert (out / "config.json").is_file()
    config.write_text(json.dumps({**json.loads(config.read_text()), "model_type": "gpt2"}))
    with pytest.raises(
        MoebertError, match=r"^teacher 'someorg/tiny-bert': model type 'gpt2' is not a supported"
    ):
        fetch_model("someorg/tiny-bert", tmp_path / "other")
    assert not (tmp_path / "other").exists()
