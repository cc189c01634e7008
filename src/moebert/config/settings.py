"""The validated config as typed settings (`Settings`), and the options of every stage's job derived from them:
what the workflow renders into each job's flags and the cost model reads."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, fields
from typing import Any

from moebert.config.options import (
    AdaptOptions,
    DistillOptions,
    EvaluateOptions,
    ImportanceOptions,
    PredictOptions,
    PrepareOptions,
    SpeedGrid,
    TrainOptions,
    flag,
)
from moebert.config.validation import TEACHER, hyper_parameters, method_keys, validate
from moebert.students import StudentKind, get_student
from moebert.tasks import QaTask, Task, get_task

# Keys that only add outputs of models already trained (prediction files, exported folders, registered
# models): a config that adds them is the same experiment and its jobs join the same parent run.
OUTPUT_ONLY_KEYS = ("predictions", "exports", "register_exports")


def config_hash(resolved: dict) -> str:
    """Short hash of a validated config (defaults included, `OUTPUT_ONLY_KEYS` left out): which config produced
    a run."""
    kept = {key: value for key, value in resolved.items() if key not in OUTPUT_ONLY_KEYS}
    return hashlib.sha256(json.dumps(kept, sort_keys=True).encode()).hexdigest()[:12]


def _typed(cls, values: dict):
    return cls(**{f.name: values[f.name] for f in fields(cls)})


@dataclass(frozen=True)
class Hyper:
    """A training stage's hyper-parameters on one task (task overrides merged in)."""

    epochs: float
    lr: float
    batch_size: int
    weight_decay: float
    distill_weight: float | None = None  # distillation only


@dataclass(frozen=True)
class QaConfig:
    doc_stride: int | None
    eval_articles: int | None
    split_seed: int
    n_best: int | None
    max_answer_length: int | None
    null_threshold: float | None


@dataclass(frozen=True)
class TaskSettings:
    task: Task
    max_length: int | None
    max_train_samples: int | None
    max_eval_samples: int | None
    qa: QaConfig | None  # question answering only
    teacher: Hyper
    distill: Hyper

    @property
    def doc_stride(self) -> int | None:
        return self.qa.doc_stride if self.qa else None


@dataclass(frozen=True)
class Method:
    """A row of the tables: its student kind and that kind's options."""

    name: str
    kind: StudentKind
    options: dict[str, Any]


@dataclass(frozen=True)
class Teacher:
    model: str
    per_seed: bool
    revision: str | None


@dataclass(frozen=True)
class Training:
    grad_accum: int
    precision: str
    save_minutes: float
    sampler: str
    padding: str


@dataclass(frozen=True)
class Importance:
    split: str
    max_samples: int | str
    batch_size: int


@dataclass(frozen=True)
class Resources:
    gpus: int
    threads: int
    experts_implementation: str
    device_kind: str
    safety: float
    min_runtime: int
    max_runtime: int
    max_mem_mb: int
    retries: int


@dataclass(frozen=True)
class Speed:
    random: list[str]
    batch_sizes: list[int]
    seq_lengths: list[int]
    repeats: int
    threads: int
    devices: list[str]


@dataclass(frozen=True)
class Settings:
    experiment: str
    tracking_uri: str | None
    data: str
    squad_data: str
    seeds: list[int]
    teacher: Teacher
    tasks: dict[str, TaskSettings]
    methods: dict[str, Method]
    sweep_points: dict[str, dict[str, str]]
    claims: list[dict]
    predictions: list[str]
    exports: list[str]
    register_exports: bool
    importance: Importance
    training: Training
    resources: Resources
    speed: Speed
    resolved: dict  # the validated config as a dict, defaults filled in (results/config.json)

    # --- what the config means for the jobs ------------------------------------------------------------

    def data_source(self, task: str) -> str:
        """The configured source of a task's data: `squad_data` for QA tasks, `data` for GLUE."""
        return self.squad_data if isinstance(self.tasks[task].task, QaTask) else self.data

    def data_inputs(self, task: str) -> list[str]:
        """What prepare_data reads for a task: a user task's files, else the configured directory (none for
        the hub)."""
        declared = self.resolved["custom_tasks"].get(task)
        if declared is not None:
            splits = [declared[split] for split in ("train", "dev", "test") if declared[split]]
            return [path for path in splits if not path.startswith("hub:")]  # a hub split is no file
        source = self.data_source(task)
        return [] if source == "hub" else [source]

    def teacher_seed(self, seed: int) -> int:
        """The seed of the teacher (and importance) a seed's students start from."""
        return seed if self.teacher.per_seed else self.seeds[0]

    def trained_methods(self) -> list[str]:
        return [name for name, method in self.methods.items() if method.kind.trains]

    def task_methods(self, task: str) -> list[str]:
        """The rows of a task: the teacher and every method, but no untrained row (majority) for QA."""
        qa = isinstance(self.tasks[task].task, QaTask)
        return [TEACHER, *(name for name, m in self.methods.items() if m.kind.trains or not qa)]

    def experts_flag(self, row: str) -> str:
        """--experts-implementation of a job on a row's model, where the config names one and the model computes
        experts (a MoE student; the teacher and the other students refuse the flag)."""
        name = self.resources.experts_implementation
        method = self.methods.get(row)
        if name == "auto" or method is None or not method.kind.computes_experts:
            return ""
        return f"{flag('experts_implementation')} {name}"

    def processes(self) -> int:
        """Processes of a training job: one per GPU (resources.gpus), one on CPU."""
        return max(self.resources.gpus, 1)

    # --- the options of each stage's job -----------------------------------------------------------------

    def train_options(self, stage: str, task: str) -> TrainOptions:
        """`finetune` (stage teacher) or `distill` on a task."""
        settings, training = self.tasks[task], self.training
        hyper = getattr(settings, stage)
        return TrainOptions(
            epochs=hyper.epochs,
            lr=hyper.lr,
            batch_size=hyper.batch_size,
            grad_accum=training.grad_accum,
            weight_decay=hyper.weight_decay,
            max_length=settings.max_length,
            max_train_samples=settings.max_train_samples,
            doc_stride=settings.doc_stride,
            sampler=training.sampler,
            padding=training.padding,
            fp16=training.precision == "fp16",
            bf16=training.precision == "bf16",
        )

    def distill_options(self, method: str, task: str) -> DistillOptions:
        """`distill` of a method's student on a task: the method's keys that distillation reads (schema
        `stage: distill`), and the task's distillation weight where it distils."""
        kind, options = self.methods[method].kind, self.methods[method].options
        keys = method_keys()
        distill = {
            key: options[key] for key in kind.accepted if key in options and keys[key]["stage"] == "distill"
        }
        distills = options["distill_scope"] != "none"
        return DistillOptions(
            distill_weight=self.tasks[task].distill.distill_weight if distills else None, **distill
        )

    def importance_options(self, task: str) -> ImportanceOptions:
        settings = self.tasks[task]
        return ImportanceOptions(
            split=self.importance.split,
            max_samples=self.importance.max_samples,
            batch_size=self.importance.batch_size,
            max_length=settings.max_length,
            doc_stride=settings.doc_stride,
        )

    def adapt_options(self, method: str, task: str, importance: str | None, data: str | None) -> AdaptOptions:
        """`adapt` of a method's student on a task: `importance` and `data` are the paths of the job's inputs
        (used where the kind needs them)."""
        kind, options = self.methods[method].kind, self.methods[method].options
        adapt = {key: options[key] for key in kind.keys if key in options and key not in kind.distill_keys}
        if kind.needs_train_tokens(options):  # hash-balance counts the train rows the student trains on
            settings = self.tasks[task]
            adapt.update(
                task=task,
                data=data,
                max_length=settings.max_length,
                max_train_samples=settings.max_train_samples,
                doc_stride=settings.doc_stride,
            )
        return AdaptOptions(
            student=kind.name, importance=importance if kind.needs_importance else None, **adapt
        )

    def answer_options(self, task: str) -> dict:
        """How a QA task's windows are cut and its answers searched, for `evaluate` and `predict` alike (the
        prediction files must hold the answers that were scored); none for the other tasks."""
        qa = self.tasks[task].qa
        if qa is None:
            return {}
        return {
            key: getattr(qa, key) for key in ("doc_stride", "n_best", "max_answer_length", "null_threshold")
        }

    def evaluate_options(self, task: str, model: str | None) -> EvaluateOptions:
        """`evaluate` of a model, or (model None) of the majority of the train rows the teacher trains on."""
        settings = self.tasks[task]
        answers = self.answer_options(task)
        return EvaluateOptions(
            model=model,
            majority=model is None,
            max_train_samples=None if model else settings.max_train_samples,
            max_length=settings.max_length,
            max_eval_samples=settings.max_eval_samples,
            **answers,
        )

    def predict_options(self, task: str) -> PredictOptions:
        settings = self.tasks[task]
        return PredictOptions(
            max_length=settings.max_length,
            diagnostic=getattr(settings.task, "predicts_diagnostic", False),
            **self.answer_options(task),
        )

    def prepare_options(self, task: str) -> PrepareOptions:
        declared = self.resolved["custom_tasks"].get(task)
        if declared is not None:  # a user task: its declaration, whose files the job reads
            return PrepareOptions(source=None, declaration=json.dumps(declared, sort_keys=True))
        qa = self.tasks[task].qa
        split = qa is not None and qa.eval_articles is not None
        return PrepareOptions(
            source=self.data_source(task),
            eval_articles=qa.eval_articles if split else None,
            split_seed=qa.split_seed if split else None,
        )

    def speed_grid(self, device: str) -> SpeedGrid:
        speed = self.speed
        return SpeedGrid(
            repeats=speed.repeats,
            threads=speed.threads,
            device=device,
            batch_sizes=speed.batch_sizes,
            seq_lengths=speed.seq_lengths,
        )

    def speed_control_width(self) -> int | None:
        """The width of the random-weight control timed beside the trained models (the `expert_dim` of the
        first method that has one), or None where a trained student is that control already (dense-narrow) or
        no method has a width."""
        methods = self.methods.values()
        widths = [m.options["expert_dim"] for m in methods if "expert_dim" in m.options]
        if not widths or any(m.kind.speed_control for m in methods):
            return None
        return widths[0]


def load_settings(raw: dict, device_kinds=None) -> Settings:
    """Validate a config (see validation.validate) and type it."""
    config = validate(raw, device_kinds)
    tasks = {}
    for name in config["tasks"]:
        own = config["task_settings"][name]
        task = get_task(name)
        qa = _typed(QaConfig, own) if isinstance(task, QaTask) else None
        tasks[name] = TaskSettings(
            task=task,
            max_length=own["max_length"],
            max_train_samples=own["max_train_samples"],
            max_eval_samples=own["max_eval_samples"],
            qa=qa,
            teacher=Hyper(**hyper_parameters(config, "teacher", name)),
            distill=Hyper(**hyper_parameters(config, "distill", name)),
        )
    methods = {
        name: Method(name, get_student(m["student"]), {k: v for k, v in m.items() if k != "student"})
        for name, m in config["methods"].items()
    }
    return Settings(
        experiment=config["experiment"],
        tracking_uri=config["tracking_uri"],
        data=config["data"],
        squad_data=config["squad_data"],
        seeds=config["seeds"],
        teacher=_typed(Teacher, config["teacher"]),
        tasks=tasks,
        methods=methods,
        sweep_points=config["sweep_points"],
        claims=config["claims"],
        predictions=config["predictions"],
        exports=config["exports"],
        register_exports=config["register_exports"],
        importance=_typed(Importance, config["importance"]),
        training=_typed(Training, config["training"]),
        resources=_typed(Resources, config["resources"]),
        speed=_typed(Speed, config["speed"]),
        resolved=config,
    )
