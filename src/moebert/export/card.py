"""README.md of an exported model, the model card: its YAML metadata (metadata.py), then the model in words
(the student kind's own description, from the student registry), its architecture, parameters and dev results
as the metrics files give them (never recomputed), how to load it, and the config and commit that made it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import yaml

from moebert.backbones import backbone_of
from moebert.config import TEACHER, config_hash
from moebert.export.metadata import UNKNOWN_LICENSE, front_matter
from moebert.export.results import parameters_section, results_section, table
from moebert.models.modeling import MoEConfigMixin
from moebert.students import STUDENTS
from moebert.students.base import MOEBERT_METHOD, StudentKind

AUTO_CLASSES = {
    "classification": "AutoModelForSequenceClassification",
    "question-answering": "AutoModelForQuestionAnswering",
}
MOEBERT_CITATION = """@inproceedings{zuo-etal-2022-moebert,
  title = {{MoEBERT}: from {BERT} to Mixture-of-Experts via Importance-Guided Adaptation},
  author = {Zuo, Simiao and Zhang, Qingru and Liang, Chen and He, Pengcheng and Zhao, Tuo and Chen, Weizhu},
  booktitle = {Proceedings of the 2022 Conference of the North American Chapter of the Association for
               Computational Linguistics: Human Language Technologies (NAACL)},
  year = {2022},
  eprint = {2204.07675},
  archivePrefix = {arXiv},
}"""


class Described(StudentKind):
    """A model that is no student: the teacher, or a dense model exported without the metrics file and config
    that would say what it is. Only its card's words (and dense architecture rows) are used."""

    def __init__(self, name: str, title: str, text: str):
        self.name, self.card_title, self.card_text = name, title, text


NOT_STUDENTS = {
    TEACHER: Described(
        TEACHER,
        "a dense teacher",
        "This is the dense teacher of the MoEBERT pipeline: the base model fine-tuned on the task, from which "
        "the students' experts are cut and against which they are distilled. " + MOEBERT_METHOD,
    ),
    "dense": Described("dense", "a dense model", MOEBERT_METHOD),
}


@dataclass
class ModelCard:
    """README.md of an exported model: YAML metadata, then the sections (see `render`). `record` and `teacher` are
    the metrics files of the model and its teacher, `resolved` the workflow config (each None if not given);
    `source` is where the card loads the model from."""

    name: str
    source: str
    head: str
    model: Any
    counts: dict
    task: Any
    record: dict | None
    teacher: dict | None
    resolved: dict | None
    commit: str
    base: str | None
    base_id: str | None
    license: str | None

    def __post_init__(self):
        self.config = self.model.config
        self.backbone = backbone_of(self.config)
        self.ffn = self.config.ffn if isinstance(self.config, MoEConfigMixin) else None
        self.method = (self.record or {}).get("method")
        methods = (self.resolved or {}).get("methods") or {}
        self.method_config = methods.get(self.method) if self.method else None
        self.student = STUDENTS.get(self.kind) or NOT_STUDENTS[self.kind]

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
        task = f" for {self.task.display}" if self.task else ""
        return self.student.describe(self.config, self.method_config or {})[0] + task

    def tags(self) -> list[str]:
        tags = ["moebert", *self.student.card_tags]
        tags.append("distillation" if self.kind != "teacher" else "teacher")
        if self.task:
            tags += [self.task.family if self.task.family != "qa" else "squad", self.task.name]
        return list(dict.fromkeys(tags))

    # The sections

    def intro(self) -> str:
        base = (
            f"[{self.base_id}](https://huggingface.co/{self.base_id})"
            if self.base_id
            else (f"`{self.base}`" if self.base else f"a {self.backbone.title}")
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

    def model_note(self) -> str:
        """What this model is, in the terms of the Method text: its backbone and student kind."""
        title = self.backbone.title
        if self.kind == TEACHER:
            return f"This model is the dense {title} teacher."
        if self.kind == "dense":
            return f"This model is a dense {title}."
        return (
            f"This model is {self.student.describe(self.config, self.method_config or {})[0]} (student kind "
            f"`{self.kind}`) of a {title} teacher."
        )

    def method_section(self) -> str:
        text = self.student.describe(self.config, self.method_config or {})[1]
        citations = [MOEBERT_CITATION, *self.student.card_citations]
        training = self.training_note()
        return "\n".join(
            [
                "## Method",
                "",
                text,
                "",
                self.model_note(),
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
        notes += self.student.card_notes(settings)
        return f"This model was trained with {'; '.join(notes)}." if notes else None

    def layout_section(self) -> str:
        c = self.config
        rows = [
            ["backbone", self.backbone.title],
            *([["student kind", f"`{self.kind}`"]] if self.kind in STUDENTS else []),
            ["layers", str(c.num_hidden_layers)],
            ["hidden size", str(c.hidden_size)],
            ["attention heads", str(c.num_attention_heads)],
            *self.student.card_rows(self.model),
        ]
        return "\n".join(["## Architecture", "", table(["", ""], rows)])

    def parameters_section(self) -> str:
        return parameters_section(self.counts, self.record, self.teacher, bool(self.ffn))

    def results_section(self) -> str:
        return results_section(self.record, self.teacher)

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
            lines += [
                f"A dense {self.backbone.title}: transformers loads it with its own classes, no remote code."
            ]
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
            if self.student.needs_importance:
                part["importance"] = r.get("importance")
        if self.task is not None and self.task.name in (r.get("task_settings") or {}):
            part["task_settings"] = {self.task.name: r["task_settings"][self.task.name]}
        part["training"] = r.get("training")
        return {k: v for k, v in part.items() if v is not None}

    def render(self) -> str:
        meta = front_matter(
            name=self.name,
            head=self.head,
            tags=self.tags(),
            task=self.task,
            record=self.record,
            license=self.license,
            base_id=self.base_id,
        )
        front = yaml.safe_dump(meta, sort_keys=False, allow_unicode=True, width=1000)
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
