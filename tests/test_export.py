"""`moebert export`: trained models as Hugging Face folders that load without the package (same logits), their
model cards, the push to the hub (a mocked API) and the MLflow artifacts."""

import argparse
import ast
import json
import os
import pkgutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest
import torch
import yaml
from conftest import (
    PAIR_BACKBONES,
    REPO,
    random_batch,
    randomize_biases,
    task_batch,
    tiny_bert,
    tiny_task_model,
)
from transformers import AutoTokenizer, BertConfig, BertForQuestionAnswering, BertModel

from moebert import backbones, tracking
from moebert.cli import main
from moebert.errors import MoebertError
from moebert.evaluation import metrics_record
from moebert.export.folder import export
from moebert.export.hub import push_to_hub
from moebert.export.metadata import card_metadata
from moebert.export.sources import model_sources
from moebert.files import write_json
from moebert.models.loading import load_model, parameter_counts
from moebert.students import STUDENTS
from moebert.students.base import MOEBERT_METHOD
from moebert.students.moe import ABLATION_NOTES, CONSTRUCTIONS, adapt
from moebert.students.mpoe import adapt_mpo
from moebert.tasks import get_task

MRPC = {"MRPC": {"accuracy": 71.56862745098039, "f1": 80.97345132743364}}
MRPC_TEACHER = {"MRPC": {"accuracy": 75.49019607843137, "f1": 83.33333333333334}}
SQUAD = {"SQuAD-v1.1": {"exact_match": 12.5, "f1": 20.833333333333332}}
SQUAD_TEACHER = {"SQuAD-v1.1": {"exact_match": 25.0, "f1": 31.25}}
ORDERS = [torch.randperm(64, generator=torch.Generator().manual_seed(i)) for i in range(2)]


@dataclass
class Exported:
    folder: Path
    head: str
    remote: bool  # ships its code
    original: torch.nn.Module  # the model before export
    metrics: Path | None = None
    teacher_metrics: Path | None = None
    batch: dict | None = None  # what it computes on (default: `inputs()`)

    def inputs(self) -> dict:
        return inputs() if self.batch is None else self.batch


# Every file of the backbone registry but its base, each shipped under its own name.
BACKBONE_MODULES = [m.name for m in pkgutil.iter_modules(backbones.__path__) if m.name != "base"]


def perturbed(model, seed):
    """Weights moved off their construction, so that the experts differ and every route matters."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn(param.shape, generator=gen) * 0.05)
    return model.eval()


def tiny_qa():
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=50,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=32,
    )
    return randomize_biases(BertForQuestionAnswering(config)).eval()


def write_metrics(path, model, task, results, method, seed=0):
    record = metrics_record(
        get_task(task),
        parameter_counts(model),
        f"results/student/{task}/{method}/seed{seed}",
        results,
        {key: 408 for key in results},
        method,
        seed,
    )
    write_json(path, record)
    return path


def resolved_config(path):
    """A resolved workflow config whose `moebert` method is the tiny student below."""
    from moebert.config import load_settings

    raw = yaml.safe_load((REPO / ".test" / "config" / "config.yaml").read_text())
    raw["methods"]["moebert"] = {"num_experts": 4, "expert_dim": 32, "shared_dim": 24}
    write_json(path, load_settings(raw).resolved)
    return path


def inputs():
    batch = random_batch()  # sentence pairs: token_type_ids 0 then 1, right padding
    del batch["labels"]
    return batch


def outputs(out, head):
    return out.logits if head == "classification" else torch.stack([out.start_logits, out.end_logits])


@pytest.fixture(scope="module")
def exported(tmp_path_factory, tiny_model_dir) -> dict[str, Exported]:
    """Every kind of model exported: MoE students (copied and tied shared neurons, hash and gate routers), an
    MPOE student, a QA MoE student and the dense teacher. The first goes through the CLI, with the metrics of it
    and its teacher and the config."""
    root = tmp_path_factory.mktemp("export")
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    teacher = tiny_bert(num_labels=2)
    qa_teacher = tiny_qa()
    models = {
        "moe-copied-hash": adapt(teacher, ORDERS, 4, 32, 24, router="hash-random", seed=3)[0],
        "moe-tied-gate": adapt(teacher, ORDERS, 4, 32, 24, router="gate-token", shared="tied", seed=4)[0],
        "moe-tied-hash-balance": adapt(
            teacher, ORDERS, 4, 32, 24, router="hash-balance", shared="tied", token_counts=torch.arange(50)
        )[0],
        "moe-copied-gate-sentence": adapt(teacher, ORDERS, 2, 40, 16, router="gate-sentence", seed=5)[0],
        "mpoe": adapt_mpo(teacher, 3, in_factors=[2, 4, 2], out_factors=[4, 4, 4], seed=6),
        "qa-moe": adapt(qa_teacher, ORDERS, 2, 32, 16, router="gate-token", seed=7)[0],
        "teacher": teacher,
        # A MoE student of every other pair backbone, under another router each, and a QA one.
        **{
            f"{backbone}-moe": adapt(
                tiny_task_model(backbone, num_labels=2),
                ORDERS,
                4,
                32,
                24,
                router=router,
                seed=8,
                token_counts=torch.arange(50),
            )[0]
            for backbone, router in zip(
                PAIR_BACKBONES[1:],
                ["hash-random", "hash-balance", "gate-token", "gate-sentence"],
                strict=True,
            )
        },
        "qa-deberta-v2-moe": adapt(
            tiny_task_model("deberta-v2", "question-answering"),
            ORDERS,
            2,
            32,
            16,
            router="hash-random",
            seed=9,
        )[0],
    }
    result = {}
    for i, (name, model) in enumerate(models.items()):
        model = perturbed(model, i) if name != "teacher" else model
        source = root / "trained" / name
        model.save_pretrained(source)
        tokenizer.save_pretrained(source)
        qa = name.startswith("qa")
        task, results, teacher_results = (
            ("squad", SQUAD, SQUAD_TEACHER) if qa else ("mrpc", MRPC, MRPC_TEACHER)
        )
        method = "teacher" if name == "teacher" else "moebert" if name.startswith("moe") else name
        metrics = write_metrics(root / "metrics" / f"{name}.json", model, task, results, method)
        teacher_metrics = write_metrics(
            root / "metrics" / f"{name}-teacher.json",
            qa_teacher if qa else teacher,
            task,
            teacher_results,
            "teacher",
        )
        folder = root / "exported" / name
        if name == "moe-copied-hash":
            config = resolved_config(root / "config.json")
            argv = ["export", "--model", source, "--output", folder, "--metrics", metrics]
            argv += [
                "--teacher-metrics",
                teacher_metrics,
                "--config",
                config,
                "--tag",
                "git_commit=0123456789ab",
            ]
            assert main([str(a) for a in argv]) == 0
        else:
            export(source, folder, metrics, teacher_metrics)
        head = "question-answering" if qa else "classification"
        batch = None
        if model.config.model_type != "moebert" and name != "teacher":  # RoBERTa's pad id, token types, ...
            batch = {k: v for k, v in task_batch(model.config).items() if k != "labels"}
        result[name] = Exported(folder, head, name != "teacher", model, metrics, teacher_metrics, batch)
    return result


RELOAD = r"""
import importlib.abc, json, os, sys

# The package may be installed in this interpreter. An editable install puts its source directory on the path:
# dropped. A regular one sits in site-packages beside torch, and an editable one may use a finder: a finder
# in front of all others refuses it.
sys.path[:] = [
    p for p in sys.path if "site-packages" in p or not os.path.isdir(os.path.join(p or os.getcwd(), "moebert"))
]


class NoMoebert(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "moebert":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)


sys.meta_path.insert(0, NoMoebert())
try:
    import moebert
except ModuleNotFoundError:
    pass
else:
    sys.exit(f"moebert is importable from {moebert.__file__}")

import torch
from transformers import AutoModelForQuestionAnswering, AutoModelForSequenceClassification

jobs = json.loads(sys.argv[1])
out = {}
for name, (folder, head, remote, batch) in jobs.items():
    batch = torch.load(batch)
    auto = AutoModelForSequenceClassification if head == "classification" else AutoModelForQuestionAnswering
    model = auto.from_pretrained(folder, **({"trust_remote_code": True} if remote else {})).eval()
    module = type(model).__module__
    assert module.startswith("transformers_modules.") == remote, module
    assert remote or module.startswith("transformers.models.bert"), module
    assert type(model).__name__.startswith("MoE") == remote, type(model).__name__
    with torch.no_grad():
        o = model(**batch)
    out[name] = o.logits if head == "classification" else torch.stack([o.start_logits, o.end_logits])
torch.save(out, sys.argv[2])
"""


@pytest.fixture(scope="module")
def reloaded(exported, tmp_path_factory) -> dict[str, torch.Tensor]:
    """Outputs of every exported model loaded by transformers alone, in a Python that cannot import moebert
    (-I: no PYTHONPATH, no current directory; the script drops the package's path and refuses its import), on
    one fixed batch."""
    tmp = tmp_path_factory.mktemp("reload")
    jobs = {}
    for name, e in exported.items():
        torch.save(e.inputs(), tmp / f"{name}.pt")
        jobs[name] = (str(e.folder), e.head, e.remote, str(tmp / f"{name}.pt"))
    env = {**os.environ, "HF_HOME": str(tmp / "hf"), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-I", "-c", RELOAD, json.dumps(jobs), str(tmp / "out.pt")],
        check=False,
        cwd=tmp,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return torch.load(tmp / "out.pt")


@pytest.mark.parametrize(
    "name",
    [
        "moe-copied-hash",
        "moe-tied-gate",
        "moe-tied-hash-balance",
        "moe-copied-gate-sentence",
        "mpoe",
        "qa-moe",
        "teacher",
        *(f"{backbone}-moe" for backbone in PAIR_BACKBONES[1:]),
        "qa-deberta-v2-moe",
    ],
)
def test_exported_model_loads_without_the_package_with_the_same_outputs(exported, reloaded, name):
    e = exported[name]
    package = load_model(str(e.folder)).eval()
    assert type(package) is type(e.original)
    with torch.no_grad():
        own = outputs(package(**e.inputs()), e.head)
        before = outputs(e.original(**e.inputs()), e.head)
    torch.testing.assert_close(reloaded[name], own, rtol=0, atol=1e-6)
    torch.testing.assert_close(own, before, rtol=0, atol=1e-6)


def test_the_folder_has_the_hugging_face_layout(exported):
    folder = exported["moe-tied-gate"].folder
    names = {p.name for p in folder.iterdir()}
    assert {"config.json", "model.safetensors", "README.md", "tokenizer_config.json", "modeling.py"} <= names
    assert not any(n.endswith((".bin", ".pt", ".pth")) for n in names)  # safetensors only
    config = json.loads((folder / "config.json").read_text())
    assert config["auto_map"] == {
        "AutoConfig": "modeling.MoEBertConfig",
        "AutoModelForSequenceClassification": "modeling.MoEBertForSequenceClassification",
    }
    qa = json.loads((exported["qa-moe"].folder / "config.json").read_text())
    assert qa["auto_map"]["AutoModelForQuestionAnswering"] == "modeling.MoEBertForQuestionAnswering"
    assert "AutoModelForSequenceClassification" not in qa["auto_map"]
    assert not list(folder.parent.glob(".*tmp*"))  # written atomically: no temporary left


def test_every_file_of_the_folder_has_the_same_mode_as_a_new_file(exported):
    umask = os.umask(0)
    os.umask(umask)
    for e in exported.values():
        modes = {p.name: oct(p.stat().st_mode & 0o777) for p in e.folder.iterdir()}
        assert set(modes.values()) == {oct(0o666 & ~umask)}, modes  # model.safetensors included


def _run_without_terminal(code: str, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-I", "-c", code],
        stdin=subprocess.DEVNULL,
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_cards_load_snippet_runs_without_a_terminal(exported, tmp_path):
    """The card's code as a user pastes it, with stdin closed, whole and its tokenizer line alone (after the
    model, the folder's classes are registered; alone, AutoTokenizer reads the folder's auto_map and, without
    trust_remote_code, asks on the terminal)."""
    e = exported["moe-copied-hash"]
    text = (e.folder / "README.md").read_text()
    code = text.split("## How to load", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    # Its loading lines: the test's tiny model has a smaller vocabulary than the tokenizer it was saved with.
    code = code[: code.index("\n", code.index("AutoTokenizer.from_pretrained"))]
    (tokenizer_line,) = [line for line in code.splitlines() if line.startswith("tokenizer = ")]
    ids = '\nprint(tokenizer("A sentence.")["input_ids"][:1])'
    for snippet, expected in (
        (code + "\nprint(type(model).__name__)" + ids, "MoEBertForSequenceClassification\n[101]"),
        ("from transformers import AutoTokenizer\n" + tokenizer_line + ids, "[101]"),
    ):
        done = _run_without_terminal(snippet, tmp_path)
        assert done.returncode == 0, done.stderr[-3000:]
        assert done.stdout.strip() == expected  # no prompt
        assert "custom code" not in done.stderr and "model of type" not in done.stderr, done.stderr[-3000:]


def test_shipped_sources_are_the_package_modules_with_relative_imports(exported):
    from transformers.dynamic_module_utils import get_relative_import_files

    folder = exported["mpoe"].folder
    shipped = {p.name: p.read_text() for p in folder.glob("*.py")}
    assert shipped == model_sources()  # generated from the package's files at export time
    assert set(shipped) == {
        "modeling.py",
        "moe_layer.py",
        "glu_layer.py",
        "bert_experts.py",
        "routing.py",
        "mpoe_layer.py",
        "mpo.py",
        "errors.py",
        # the backbone registry: its __init__ and one file per family
        "backbones.py",
        "base.py",
        *(f"{module.rsplit('.', 1)[-1]}.py" for module in BACKBONE_MODULES),
    }
    for name, text in shipped.items():
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Import):
                assert all(not a.name.startswith("moebert") for a in node.names), name
            if isinstance(node, ast.ImportFrom) and node.level == 0:
                assert not node.module.startswith("moebert"), (name, node.module)
    assert "from .routing import GateRouter" in shipped["mpoe_layer.py"]
    # Everything transformers copies into its module cache, from the file auto_map names.
    reached = {Path(p).name for p in get_relative_import_files(str(folder / "modeling.py"))}
    assert reached | {"modeling.py"} == set(shipped)
    # Outside the shipped code, the package's model modules import only each other and moebert.errors.
    package = Path(sys.modules["moebert.models.modeling"].__file__).parent
    backbones = package.parent / "backbones"
    for name in shipped:
        source = {"errors.py": package.parent / "errors.py", "backbones.py": backbones / "__init__.py"}.get(
            name, package / name if (package / name).is_file() else backbones / name
        )
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module.startswith("moebert"):
                assert node.module.startswith(("moebert.models", "moebert.backbones", "moebert.errors"))


def test_a_dense_teacher_exports_without_code(exported):
    folder = exported["teacher"].folder
    assert not list(folder.glob("*.py"))
    config = json.loads((folder / "config.json").read_text())
    assert "auto_map" not in config and config["model_type"] == "bert"
    card = (folder / "README.md").read_text()
    assert "trust_remote_code" not in card.split("## How to load")[1].split("```")[1]
    meta = card_metadata(folder)
    assert "mixture-of-experts" not in meta["tags"] and "teacher" in meta["tags"]


def test_model_card_metadata_parses_and_its_numbers_are_the_metrics_files(exported):
    e = exported["moe-copied-hash"]
    text = (e.folder / "README.md").read_text()
    meta = yaml.safe_load(text.split("---\n")[1])
    assert meta == card_metadata(e.folder)
    record = json.loads(e.metrics.read_text())
    teacher = json.loads(e.teacher_metrics.read_text())
    assert meta["license"] == "apache-2.0"  # the config's teacher: the packaged all-MiniLM-L6-v2
    assert meta["base_model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert meta["library_name"] == "transformers" and meta["pipeline_tag"] == "text-classification"
    assert meta["datasets"] == ["nyu-mll/glue"] and meta["metrics"] == ["accuracy", "f1"]
    assert {"moebert", "mixture-of-experts", "mrpc"} <= set(meta["tags"])
    (index,) = meta["model-index"]
    (result,) = index["results"]
    assert result["dataset"] == {
        "name": "GLUE MRPC",
        "type": "nyu-mll/glue",
        "config": "mrpc",
        "split": "validation",
    }
    assert {m["type"]: m["value"] for m in result["metrics"]} == record["results"]["MRPC"]  # exactly
    # The body: the student's and the teacher's dev results and parameters, as the files give them.
    for metric, name in (("accuracy", "Accuracy"), ("f1", "F1")):
        row = f"| MRPC | {name} | {record['results']['MRPC'][metric]:.2f} | {teacher['results']['MRPC'][metric]:.2f} |"
        assert row in text
    params = record["params"]
    assert f"| effective (what a token uses: one expert per layer) | {params['effective']:,} |" in text
    assert (
        f"| total (encoder with embeddings and pooler) | {params['total']:,} | {teacher['params']['total']:,} |"
        in text
    )
    # The method and its citation, the experts, the config and commit, how to load it.
    assert "arXiv:2204.07675" in text and "zuo-etal-2022-moebert" in text and "2203.01104" not in text
    assert "| experts per layer | 4 |" in text and "a copy in every expert" in text and "hash-random" in text
    assert "`0123456789ab`" in text and "config hash: `" in text and '"expert_dim": 32' in text
    # Named by its task, method and seed (the folder's name says none of them); loaded from the folder as given.
    assert text.split("---\n", 2)[2].startswith("\n# mrpc-moebert-seed0\n")
    assert index["name"] == "mrpc-moebert-seed0"
    assert f'AutoModelForSequenceClassification.from_pretrained("{e.folder}", trust_remote_code=True)' in text
    assert f'AutoTokenizer.from_pretrained("{e.folder}", trust_remote_code=True)' in text
    # A dense teacher has no experts: its column says so rather than 0.
    assert f"| one more expert in every layer | {params['per_expert']:,} | - |" in text
    assert "License not set" not in text
    assert "trained with the task loss and distillation of the hidden states of `all` layers" in text


def test_cards_of_the_other_students(exported):
    tied = (exported["moe-tied-gate"].folder / "README.md").read_text()
    assert "stored once (tied)" in tied and "gate-token" in tied
    assert (
        "| gate scale | the gate probability scales the expert's output after its residual and LayerNorm"
        in tied
    )
    hashed = (exported["moe-copied-hash"].folder / "README.md").read_text()
    assert "gate scale" not in hashed  # a hash table has no gate probability
    mpoe = (exported["mpoe"].folder / "README.md").read_text()
    assert "arXiv:2203.01104" in mpoe and "gao-etal-2022-mpoe" in mpoe and "arXiv:2204.07675" in mpoe
    assert "| MPO bonds |" in mpoe and "in [2, 4, 2], out [4, 4, 4]" in mpoe
    assert "mpoe" in card_metadata(exported["mpoe"].folder)["tags"]
    qa = exported["qa-moe"]
    meta = card_metadata(qa.folder)
    assert meta["pipeline_tag"] == "question-answering" and meta["datasets"] == ["rajpurkar/squad"]
    (result,) = meta["model-index"][0]["results"]
    assert {m["type"]: m["value"] for m in result["metrics"]} == SQUAD["SQuAD-v1.1"]
    assert "AutoModelForQuestionAnswering" in (qa.folder / "README.md").read_text()
    # No config: the base model and its license are unknown, and the card says so.
    assert meta["license"] == "unknown" and "base_model" not in meta
    assert "License not set" in (qa.folder / "README.md").read_text()


def test_the_card_names_the_backbone_and_the_student_kind(exported):
    roberta = (exported["roberta-moe"].folder / "README.md").read_text()
    assert "by moebert" in roberta and "built from a RoBERTa fine-tuned on MRPC by moebert" in roberta
    assert "This model is a MoEBERT student (student kind `moe`) of a RoBERTa teacher." in roberta
    assert (
        "|  | |\n" not in roberta
        and "| backbone | RoBERTa |" in roberta
        and "| student kind | `moe` |" in roberta
    )
    assert "fine-tuned encoder (BERT in the paper)" in roberta and "BERT teacher" not in roberta
    deberta = (exported["qa-deberta-v2-moe"].folder / "README.md").read_text()
    assert "of a DeBERTa-v2/v3 teacher." in deberta and "| backbone | DeBERTa-v2/v3 |" in deberta
    mpoe = (exported["mpoe"].folder / "README.md").read_text()
    assert "This model is an MPOE student (student kind `mpoe`) of a BERT teacher." in mpoe
    teacher = (exported["teacher"].folder / "README.md").read_text()
    assert "This model is the dense BERT teacher." in teacher and "| backbone | BERT |" in teacher
    assert "| student kind |" not in teacher and "A dense BERT: transformers loads it" in teacher


def test_a_config_that_did_not_make_the_model_is_refused_for_every_backbone(exported, tmp_path):
    """The method's settings in the config must be the saved student's, whatever its backbone."""
    e = exported["roberta-moe"]
    config = json.loads(resolved_config(tmp_path / "config.json").read_text())
    methods = config["methods"]
    methods["roberta-moe"] = dict(methods["moebert"])  # how it was built
    write_json(tmp_path / "same.json", config)
    export(e.folder, tmp_path / "same", e.metrics, config=tmp_path / "same.json")
    methods["roberta-moe"]["num_experts"] = 2
    write_json(tmp_path / "other.json", config)
    with pytest.raises(
        MoebertError, match="sets num_experts=2 for method 'roberta-moe', but the model has num_experts=4"
    ):
        export(e.folder, tmp_path / "out", e.metrics, config=tmp_path / "other.json")


def test_every_student_kind_states_its_own_card_words():
    """The card's title and Method text of a kind come from the kind's own entry in the student registry: a new
    kind (or a subclass of one) that states none fails here, instead of a card calling it another kind."""
    for name, kind in STUDENTS.items():
        own = vars(type(kind))
        assert "card_title" in own and "card_text" in own, name
        if name != "moe":  # the one kind whose words depend on the model (below)
            assert kind.describe(None, {}) == (kind.card_title, kind.card_text), name
    for words in ("card_title", "card_text"):
        texts = [getattr(kind, words) for kind in STUDENTS.values()]
        assert len(set(texts)) == len(texts), words


def test_the_card_tells_switch_copies_and_construction_ablations_from_moebert():
    moe = STUDENTS["moe"]
    switch = adapt(tiny_bert(num_labels=2), ORDERS, 4, 64, 64, router="gate-token")[0]
    assert moe.describe(switch.config, {})[0] == "a Switch-style MoE student (copies of the dense FFN)"
    assert (
        "every expert starts as an exact copy of the teacher's fine-tuned FFN"
        in moe.describe(switch.config, {})[1]
    )
    sliced = adapt(tiny_bert(num_labels=2), ORDERS, 4, 32, 24)[0]
    assert moe.describe(sliced.config, {}) == moe.describe(sliced.config, {"construction": "importance"})
    assert moe.describe(sliced.config, {}) == ("a MoEBERT student", MOEBERT_METHOD)
    assert set(ABLATION_NOTES) == set(CONSTRUCTIONS) - {"importance"}
    for construction, note in ABLATION_NOTES.items():
        title, text = moe.describe(sliced.config, {"construction": construction})
        assert title == "a MoEBERT student"
        assert (
            text
            == f"{MOEBERT_METHOD} This model is an ablation of that construction (`construction: {construction}`): its experts are cut from {note}."
        )


def test_the_package_never_loads_remote_code(exported, monkeypatch):
    """No call in the package passes trust_remote_code, and loading an exported folder uses the package's
    registered classes: transformers' remote-code loader is never reached."""
    for path in (REPO / "src" / "moebert").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.keyword):
                assert node.arg != "trust_remote_code", path

    def refuse(*args, **kwargs):
        raise AssertionError("remote code loaded")

    from transformers.models.auto import auto_factory, configuration_auto

    from moebert.models.modeling import MoEBertForQuestionAnswering, MoEBertForSequenceClassification

    monkeypatch.setattr(auto_factory, "get_class_from_dynamic_module", refuse)
    monkeypatch.setattr(configuration_auto, "get_class_from_dynamic_module", refuse)
    assert type(load_model(str(exported["moe-tied-gate"].folder))) is MoEBertForSequenceClassification
    assert type(load_model(str(exported["qa-moe"].folder))) is MoEBertForQuestionAnswering


class FakeHfApi:
    """huggingface_hub.HfApi as push_to_hub uses it, recording the calls and the files uploaded."""

    calls: ClassVar[list] = []

    def __init__(self, token=None):
        self.calls.append(("init", token))

    def create_repo(self, repo_id, **kwargs):
        self.calls.append(("create_repo", repo_id, kwargs))
        return f"https://huggingface.co/{repo_id}"

    def upload_folder(self, **kwargs):
        files = sorted(p.name for p in Path(kwargs["folder_path"]).iterdir())
        self.calls.append(("upload_folder", kwargs, files))


@pytest.fixture
def fake_hub(monkeypatch):
    import huggingface_hub

    FakeHfApi.calls = []
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeHfApi)
    return FakeHfApi.calls


def test_push_to_hub_creates_the_repo_and_uploads_the_folder(exported, fake_hub, tmp_path, capsys):
    e = exported["moe-copied-hash"]
    config = e.folder.parent.parent / "config.json"
    output = tmp_path / "pushed"
    argv = ["export", "--model", e.folder, "--output", output, "--metrics", e.metrics, "--config", config]
    assert main([str(a) for a in [*argv, "--push-to-hub", "someone/tiny-moebert", "--private"]]) == 0
    assert fake_hub[0] == ("init", None)  # the token is huggingface_hub's own ($HF_TOKEN or the login)
    assert fake_hub[1] == (
        "create_repo",
        "someone/tiny-moebert",
        {"repo_type": "model", "private": True, "exist_ok": True},
    )
    kind, upload, files = fake_hub[2]
    assert kind == "upload_folder" and upload["repo_id"] == "someone/tiny-moebert"
    assert upload["folder_path"] == str(output) and upload["repo_type"] == "model"
    assert ".snakemake_timestamp" in upload["ignore_patterns"]  # a workflow's marker is no part of the model
    assert {"README.md", "config.json", "model.safetensors", "modeling.py"} <= set(files)
    assert "https://huggingface.co/someone/tiny-moebert" in capsys.readouterr().out
    # The card names the repository and loads from it.
    assert card_metadata(output)["model-index"][0]["name"] == "someone/tiny-moebert"
    assert (
        'from_pretrained("someone/tiny-moebert", trust_remote_code=True)'
        in (output / "README.md").read_text()
    )


def test_push_refuses_a_card_without_license_and_reports_hub_errors(
    exported, fake_hub, monkeypatch, tmp_path
):
    with pytest.raises(MoebertError, match="no license.*--license"):
        push_to_hub(exported["qa-moe"].folder, "someone/qa")
    assert fake_hub == []
    # A license given, or a base model whose license is known, lets it go.
    licensed = export(exported["qa-moe"].folder, tmp_path / "mit", license="mit")
    assert (
        card_metadata(licensed)["license"] == "mit"
        and "License not set" not in (licensed / "README.md").read_text()
    )
    based = export(exported["qa-moe"].folder, tmp_path / "based", base_model="bert-base-uncased")
    meta = card_metadata(based)
    assert meta["license"] == "apache-2.0" and meta["base_model"] == "google-bert/bert-base-uncased"
    push_to_hub(based, "someone/qa")
    assert [call[0] for call in fake_hub] == ["init", "create_repo", "upload_folder"]

    def fail(self, repo_id, **kwargs):
        raise OSError("401 Unauthorized")

    monkeypatch.setattr(FakeHfApi, "create_repo", fail)
    with pytest.raises(MoebertError, match="could not push .* 'someone/tiny'.*401"):
        push_to_hub(exported["moe-copied-hash"].folder, "someone/tiny")


def test_bad_inputs_are_refused_by_name_and_write_nothing(exported, tmp_path, capsys):
    e = exported["moe-tied-gate"]
    source = e.folder
    output = tmp_path / "out"
    missing = tmp_path / "nowhere.json"
    with pytest.raises(MoebertError, match=f"metrics file '{missing}' does not exist"):
        export(source, output, missing)
    with pytest.raises(MoebertError, match=f"model '{tmp_path}' is not a model directory"):
        export(tmp_path, output, e.metrics)
    BertModel(
        BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2)
    ).save_pretrained(tmp_path / "encoder")
    with pytest.raises(MoebertError, match="is a BertModel, not a task model"):
        export(tmp_path / "encoder", output)
    with pytest.raises(MoebertError, match="would replace the model"):
        export(source, source)
    no_tokenizer = tmp_path / "no-tokenizer"
    e.original.save_pretrained(no_tokenizer)
    with pytest.raises(MoebertError, match=f"model '{no_tokenizer}' has no tokenizer"):
        export(no_tokenizer, output)
    # Metrics of another model (the teacher's), or of another task.
    with pytest.raises(MoebertError, match="it scores another model"):
        export(source, output, e.teacher_metrics)
    with pytest.raises(MoebertError, match="scores squad, a question-answering task"):
        export(source, output, exported["qa-moe"].metrics)
    with pytest.raises(MoebertError, match="give the model's own --metrics too"):
        export(source, output, None, e.teacher_metrics)
    # A config whose method is not the model.
    config = exported["moe-copied-hash"].folder.parent.parent / "config.json"
    with pytest.raises(
        MoebertError, match="sets router='hash-random' for method 'moebert'.*router='gate-token'"
    ):
        export(source, output, e.metrics, config=config)
    assert not output.exists()
    # Through the CLI: exit 2, the message names the file.
    assert main(["export", "--model", str(source), "--output", str(output), "--metrics", str(missing)]) == 2
    assert str(missing) in capsys.readouterr().err
    assert main(["export", "--model", str(source), "--output", str(output), "--private"]) == 2
    assert "--private" in capsys.readouterr().err
    assert not output.exists()


def test_the_export_is_a_logged_model_of_the_run_that_trained_it(exported, tmp_path, monkeypatch, caplog):
    from mlflow.tracking import MlflowClient

    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(tracking_uri=uri)
    experiment = client.create_experiment("tiny", artifact_location=(tmp_path / "artifacts").as_uri())

    def trained(rule, seed):
        tags = {"rule": rule, "task": "mrpc", "method": "moebert", "seed": str(seed)}
        return client.create_run(experiment, tags=tags).info.run_id

    distill, other_seed, evaluate = trained("distill", 0), trained("distill", 1), trained("evaluate", 0)
    e = exported["moe-tied-gate"]
    log = tmp_path / "export.log"
    log.write_text("exported\n")
    tags = ["--tag", "task=mrpc", "--tag", "method=moebert", "--tag", "seed=0", "--tag", "rule=export"]
    argv = ["export", "--model", e.folder, "--output", tmp_path / "out", "--metrics", e.metrics]
    argv += ["--tracking-uri", uri, "--parent-run", "grid", "--experiment", "tiny", "--register"]
    assert main([str(a) for a in [*argv, *tags, "--log-artifact", log]]) == 0
    # The folder is a logged model whose source is the distill run (and one of its outputs); the run keeps the
    # job's log.
    (model,) = client.search_logged_models([experiment])
    assert model.name == "mrpc-moebert-seed0" and model.source_run_id == distill and model.status == "READY"
    assert model.tags["task"] == "mrpc" and model.tags["seed"] == "0"
    record = json.loads(e.metrics.read_text())
    assert model.params["MRPC F1"] == str(record["results"]["MRPC"]["f1"])
    assert {"README.md", "config.json", "model.safetensors", "modeling.py"} <= {
        Path(f.path).name for f in client.list_logged_model_artifacts(model.model_id)
    }
    assert [o.model_id for o in client.get_run(distill).outputs.model_outputs] == [model.model_id]
    assert {f.path for f in client.list_artifacts(distill, "export")} == {"export/export.log"}
    assert not client.list_artifacts(other_seed) and not client.list_artifacts(evaluate)
    # Registered as mrpc-moebert, its version aliased seed0 and, the only one, best.
    version = client.get_model_version_by_alias("mrpc-moebert", "best")
    assert version.source == model.artifact_location and version.run_id == distill
    assert client.get_model_version_by_alias("mrpc-moebert", "seed0").version == version.version
    links = json.loads(client.get_logged_model(model.model_id).tags["mlflow.modelVersions"])
    assert links == [{"name": "mrpc-moebert", "version": version.version}]  # the Models tab's link
    # A better seed takes best; a worse one does not (main metric of MRPC: F1, as the tables rank it).
    for seed, f1 in ((1, record["results"]["MRPC"]["f1"] + 1), (2, 0.0)):
        trained("distill", seed)
        metrics = tmp_path / f"seed{seed}.json"
        metrics.write_text(
            json.dumps({**record, "seed": seed, "results": {"MRPC": {"accuracy": 99.0, "f1": f1}}})
        )
        again = [
            *argv[:4],
            tmp_path / f"out{seed}",
            "--metrics",
            metrics,
            *argv[7:],
            *tags[:5],
            f"seed={seed}",
        ]
        assert main([str(a) for a in again]) == 0
    best = client.get_model_version_by_alias("mrpc-moebert", "best")
    assert (
        best.version == client.get_model_version_by_alias("mrpc-moebert", "seed1").version != version.version
    )
    assert best.tags["main_metric"] == repr(record["results"]["MRPC"]["f1"] + 1)
    # The parent run links the export, and the report turns the links into the parent's description.
    (parent,) = client.search_runs([experiment], filter_string="tags.`moebert.parent_run` = 'grid'")
    assert parent.data.tags["moebert.export.mrpc/moebert/seed0"] == f"models:/{model.model_id}"
    tracking.describe_parent(tracking_args(uri, "--experiment", "tiny", "--parent-run", "grid"))
    note = client.get_run(parent.info.run_id).data.tags["mlflow.note.content"]
    link = f"#/experiments/{experiment}/models/{model.model_id}"
    assert f"- [mrpc/moebert/seed0]({link}): `models:/{model.model_id}`" in note.splitlines()
    # No such run (another seed): a warning, and the export stands.
    tags[5] = "seed=7"
    assert main([str(a) for a in [*argv[:-1], *tags]]) == 0
    assert (
        "found no run tagged rule=distill, task=mrpc, method=moebert, seed=7 in experiment 'tiny'"
        in caplog.text
    )
    assert (tmp_path / "out" / "README.md").is_file()


def test_register_needs_tracking_and_metrics(exported, tmp_path, capsys):
    e = exported["moe-tied-gate"]
    argv = ["export", "--model", str(e.folder), "--output", str(tmp_path / "out"), "--register"]
    assert main([*argv, "--tracking-uri", "off", "--metrics", str(e.metrics)]) == 2
    assert main([*argv, "--tracking-uri", f"sqlite:///{tmp_path}/db"]) == 2
    assert "--register: the model registry is MLflow's" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def tracking_args(uri, *argv):
    parser = argparse.ArgumentParser()
    tracking.add_tracking_arguments(parser)
    return parser.parse_args(["--tracking-uri", uri, *argv])


def test_the_training_run_is_the_finetune_run_for_the_teacher(exported, monkeypatch, tmp_path, caplog):
    from moebert import tracking
    from moebert.cli import build_parser
    from moebert.stages.export import log_to_training_run

    logged = []
    monkeypatch.setattr(tracking, "log_to_run", lambda args, tags, paths, under: logged.append((tags, under)))
    monkeypatch.setattr(
        tracking, "log_exported_model", lambda args, tags, *rest: logged.append((tags, "model"))
    )
    folder = str(exported["teacher"].folder)
    store = ["--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db"]

    def args(*tags):
        argv = ["export", "--model", "m", "--output", "o", *store]
        return build_parser().parse_args([*argv, *(x for tag in tags for x in ("--tag", tag))])

    teacher = args("task=rte", "method=teacher", "seed=1")
    log_to_training_run(teacher, dict(teacher.tag), [folder])
    run = {"rule": "finetune", "task": "rte", "method": "teacher", "seed": "1"}
    assert logged == [(run, "model"), (run, "export")]
    untagged = args("task=rte")
    log_to_training_run(untagged, dict(untagged.tag), [folder])
    assert len(logged) == 2 and "--tag method=..., seed=... missing" in caplog.text
    store[1] = "off"
    log_to_training_run(args(), {}, [folder])
    assert len(logged) == 2
