"""A workflow config checked against the one schema (schema.yaml beside this file), its defaults filled in,
its sweeps expanded into methods and every method resolved by its student kind; every error names the
dotted key, what is wrong, what is allowed and, where one is close, the likely intended value."""

from __future__ import annotations

import copy
import difflib
import functools
import os
from collections.abc import Iterable
from pathlib import Path

import jsonschema
import yaml

from moebert.errors import MoebertError
from moebert.hub import is_hub_model
from moebert.students import STUDENTS, StudentOptionError, get_student
from moebert.tasks import TASKS, QaTask, declare, get_task

SCHEMA_PATH = Path(__file__).with_name("schema.yaml")
TEACHER = "teacher"  # the dense model's row in metrics and tables: no method may take its name
QA_KEYS = ("doc_stride", "eval_articles", "n_best", "max_answer_length", "null_threshold")


class ConfigError(MoebertError):
    """One bad key of a config: `key` is its dotted name (tasks[1], methods.moebert.router)."""

    def __init__(self, path: Iterable, message: str):
        self.key = dotted(path) or "(top level)"
        super().__init__(f"invalid config: key {self.key}: {message}")


def dotted(path: Iterable) -> str:
    """tasks[1], teacher.lr: the dotted name of a key's path in the config."""
    return "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in path).lstrip(".")


def did_you_mean(word, allowed) -> str:
    close = difflib.get_close_matches(str(word), [str(a) for a in allowed], n=1)
    return f"did you mean {close[0]!r}? " if close else ""


@functools.cache
def schema() -> dict:
    return yaml.safe_load(SCHEMA_PATH.read_text())


def declaration(path: str) -> dict:
    """A key's declaration, by its dotted path from the top (training.save_minutes) or from a definition
    (method.num_experts, task.distill.epochs)."""
    first, *rest = path.split(".")
    node = schema()["$defs"][first] if first in schema()["$defs"] else schema()["properties"][first]
    for part in rest:
        node = node["properties"][part]
    return node


def schema_default(path: str):
    """The default of a key, by its dotted path (see `declaration`)."""
    return copy.deepcopy(declaration(path)["default"])


# A method key's `students` that names every kind that is trained, not a list.
TRAINED = "trained"


def method_keys() -> dict[str, dict]:
    """Every method key but `student`, in the schema's order: its declaration (type, default, allowed values,
    description, `students` taking it, `stage` reading it)."""
    return {key: prop for key, prop in schema()["$defs"]["method"]["properties"].items() if key != "student"}


def taken_by(key: str) -> list[str]:
    """The student kinds that take a method key, in the registry's order."""
    students = method_keys()[key]["students"]
    return [
        name for name, kind in STUDENTS.items() if (kind.trains if students == TRAINED else name in students)
    ]


def _filling_validator():
    """jsonschema's validator, extended to write each property's default into the instance before
    validating it (the extension jsonschema's documentation describes)."""
    base = jsonschema.Draft202012Validator
    properties = base.VALIDATORS["properties"]

    def fill_then_validate(validator, props, instance, schema_):
        if isinstance(instance, dict):
            for name, sub in props.items():
                if "default" in sub:
                    instance.setdefault(name, copy.deepcopy(sub["default"]))
        yield from properties(validator, props, instance, schema_)

    return jsonschema.validators.extend(base, {"properties": fill_then_validate})


def _explain(error: jsonschema.ValidationError) -> tuple[list, str]:
    """The offending key and one line for a jsonschema error (its own text dumps the sub-schema)."""
    path = list(error.absolute_path)
    if error.validator == "additionalProperties" and "properties" in error.schema:
        allowed = sorted(error.schema["properties"])
        unknown = min(set(error.instance) - set(allowed))
        return path + [unknown], f"unknown key; {did_you_mean(unknown, allowed)}allowed: {', '.join(allowed)}"
    if error.validator == "enum":
        allowed = [str(value) for value in error.validator_value]
        choices = f"{did_you_mean(error.instance, allowed)}allowed: {', '.join(allowed)}"
        if "propertyNames" in error.relative_schema_path:
            return path + [error.instance], f"unknown key; {choices}"
        return path, f"{error.instance!r} is not allowed; {choices}"
    if error.validator == "oneOf":  # the text would dump every form: name them instead
        return path, f"give {error.schema['description']}"
    if error.validator == "not" and "const" in error.validator_value:
        return path + [error.instance], "reserved name (the teacher row is always reported); choose another"
    return path, error.message


def _check(instance, schema_: dict, prefix=()) -> None:
    """Validate (filling defaults) against `schema_`, raising the best error as a ConfigError."""
    validator = _filling_validator()(schema_, format_checker=None)
    error = jsonschema.exceptions.best_match(validator.iter_errors(instance))
    if error is not None:
        path, message = _explain(error)
        raise ConfigError([*prefix, *path], message)


def validate(raw: dict, device_kinds: Iterable[str] | None = None) -> dict:
    """The resolved config: `raw` checked, every default filled in, sweeps expanded (their points under
    `sweep_points`), every method holding its student kind's options only. `device_kinds` are the rows of the
    throughput table that resources.device_kind must name (None: not checked). Relative data directories are
    checked from the current directory."""
    config = copy.deepcopy(raw)
    given_methods = copy.deepcopy(config.get("methods") or schema_default("methods"))
    _check(config, schema())
    _check_custom_tasks(config)
    # A listed task without an entry under task_settings runs with the defaults.
    for task in config["tasks"]:
        config["task_settings"].setdefault(task, {})
    _check(config, schema())
    points = _expand_sweeps(config, given_methods)
    # A sweep's base may carry keys that act on some of its points only (load_balance for the gate points of a
    # router sweep): each point leaves out the inherited keys that do nothing for it, the base those that act
    # on some point.
    inherited, acting_on = {}, {}  # point -> keys it inherits; base -> its points
    for sweep, values in points.items():
        spec = config["sweeps"][sweep]
        for name in values.values():
            if name != spec["method"]:
                inherited[name] = set(given_methods[spec["method"]]) - {spec["key"]}
                acting_on.setdefault(spec["method"], []).append(name)
    resolved = {
        name: _resolve_method(name, given, inherited.get(name, ()))
        for name, given in given_methods.items()
        if name not in acting_on
    }
    for base, names in acting_on.items():
        resolved[base] = _resolve_method(
            base, given_methods[base], {key for name in names for key in resolved[name]}
        )
    config["methods"] = {name: resolved[name] for name in given_methods}
    config["sweep_points"] = points
    _check_claims(config)
    _check_trained_rows(config, "predictions")
    _check_trained_rows(config, "exports")
    _check_batches(config)
    if config["training"]["precision"] == "fp16" and config["resources"]["gpus"] == 0:
        raise ConfigError(
            ["training", "precision"],
            "fp16 mixed precision needs a GPU (resources.gpus is 0); use bf16 or fp32 on a CPU",
        )
    _check_tasks(config)
    _check_used(raw, config)
    _check_teacher(config)
    kind = config["resources"]["device_kind"]
    if device_kinds is not None and kind not in set(device_kinds):
        raise ConfigError(
            ["resources", "device_kind"],
            f"{kind!r} is not a device kind of the throughput table "
            f"(it has {', '.join(device_kinds)}); measure one with "
            f"benchmarks/throughput.py --kind {kind} --update",
        )
    return config


def _resolve_method(name: str, given: dict, tolerate=frozenset()) -> dict:
    """A method as its student kind takes it: the given keys checked (the schema's types and values, then the
    kind's), the kind's other keys at their defaults; given keys in `tolerate` that do nothing for this method
    (they act on its sweep points) are left out."""
    method_schema = schema()["$defs"]["method"]
    _check(
        copy.deepcopy(given),
        {
            **method_schema,
            "properties": {
                key: {k: v for k, v in prop.items() if k != "default"}
                for key, prop in method_schema["properties"].items()
            },
        },
        ["methods", name],
    )
    kind = get_student(given.get("student", schema_default("method.student")))
    defaults = {key: schema_default(f"method.{key}") for key in method_schema["properties"]}
    try:
        options = kind.options({k: v for k, v in given.items() if k != "student"}, defaults, tolerate)
    except StudentOptionError as err:
        raise ConfigError(["methods", name, err.key], err.why) from None
    return {"student": kind.name, **options}


def _expand_sweeps(config: dict, methods: dict) -> dict:
    """Add a method per sweep point (see the schema's `sweeps`) to `methods` (given keys); returns each sweep's
    points, {sweep: {value: method}}, for the report."""
    points = {}
    key_schemas = schema()["$defs"]["method"]["properties"]
    for sweep, spec in config["sweeps"].items():
        if spec["method"] not in methods:
            raise ConfigError(
                ["sweeps", sweep, "method"],
                f"{spec['method']!r} is not a method; "
                f"{did_you_mean(spec['method'], methods)}methods: "
                f"{', '.join(methods)}",
            )
        base = methods[spec["method"]]
        kind = get_student(base.get("student", schema_default("method.student")))
        key = spec["key"]
        if key not in kind.sweepable:
            raise ConfigError(
                ["sweeps", sweep, "key"],
                f"a {kind.name} student does not use {key}; sweep one of "
                f"its keys ({', '.join(kind.sweepable)}) or another method",
            )
        for i, value in enumerate(spec["values"]):
            _check(
                copy.deepcopy(value),
                {k: v for k, v in key_schemas[key].items() if k != "default"},
                ["sweeps", sweep, "values", i],
            )
        points[sweep] = {}
        for value in spec["values"]:
            current = base.get(key, kind.defaults.get(key, schema_default(f"method.{key}")))
            name = spec["method"] if current == value else f"{sweep}-{value}"
            if name != spec["method"]:
                if name in methods and methods[name] != {**base, key: value}:
                    raise ConfigError(
                        ["sweeps", sweep],
                        f"point {name!r} clashes with the method of that name; "
                        f"rename the sweep or the method",
                    )
                methods[name] = {**base, key: value}
            points[sweep][str(value)] = name
    return points


def _check_trained_rows(config: dict, key: str) -> None:
    """A list of rows that need a model file: the teacher and the trained students."""
    trained = [TEACHER, *(name for name, m in config["methods"].items() if get_student(m["student"]).trains)]
    for i, row in enumerate(config[key]):
        if row not in trained:
            raise ConfigError(
                [key, i],
                f"{row!r} is not a row with a trained model; "
                f"{did_you_mean(row, trained)}rows: {', '.join(trained)}",
            )


def _check_claims(config: dict) -> None:
    known = [TEACHER, *config["methods"]]
    for i, claim in enumerate(config["claims"]):
        for method in [claim.get("method"), claim.get("vs"), *claim.get("methods", [])]:
            if method is not None and method not in known:
                raise ConfigError(
                    ["claims", i],
                    f"{method!r} is not a method; {did_you_mean(method, known)}methods: {', '.join(known)}",
                )


def _check_batches(config: dict) -> None:
    """Batch sizes are totals per optimiser step: they must divide into processes x accumulation steps."""
    accum, processes = config["training"]["grad_accum"], max(config["resources"]["gpus"], 1)
    for task in config["tasks"]:
        for stage in ("teacher", "distill"):
            batch = hyper_parameters(config, stage, task)["batch_size"]
            if batch % (accum * processes):
                raise ConfigError(
                    ["training", "grad_accum"],
                    f"{accum} x {processes} GPU(s) (resources.gpus) does not divide the {stage} batch "
                    f"size {batch} of task {task} (batch sizes are totals per step)",
                )


def _check_tasks(config: dict) -> None:
    """Settings of question answering only where a QA task can use them; data directories that exist."""
    for task in config["tasks"]:
        settings = config["task_settings"][task]
        if not isinstance(get_task(task), QaTask):
            given = [key for key in QA_KEYS if settings[key] is not None]
            if given:
                raise ConfigError(
                    ["task_settings", task, given[0]],
                    "only question-answering tasks (squad, squad_v2) take it; drop the key",
                )
        elif settings["null_threshold"] is not None and not get_task(task).has_unanswerable:
            raise ConfigError(
                ["task_settings", task, "null_threshold"],
                f"{task} has no unanswerable questions (only SQuAD v2.0 does), so no answer is ever left "
                f"empty; drop the key",
            )
        elif settings["eval_articles"] is not None and config["squad_data"] == "hub":
            raise ConfigError(
                ["task_settings", task, "eval_articles"],
                "an article split is made from a dev file "
                "on disk; set squad_data to a directory or "
                "drop the key",
            )
    for key, family, layout in (
        ("data", "glue", "in the classic GLUE layout"),
        ("squad_data", "qa", "holding the official SQuAD JSON files"),
    ):
        used = any(get_task(task).family == family for task in config["tasks"])
        if used and config[key] != "hub" and not Path(config[key]).is_dir():
            raise ConfigError(
                [key],
                f"directory {config[key]!r} does not exist (relative to {os.getcwd()}); give a "
                f"directory {layout} or 'hub'",
            )


def _check_used(raw: dict, config: dict) -> None:
    """Given keys that no method's training reads are refused: a task's distill_weight where every trained
    method trains on the task loss alone (distill_scope none), importance settings where no student keeps
    neurons by importance."""
    kinds = {name: get_student(m["student"]) for name, m in config["methods"].items()}
    distilled = [
        name
        for name, kind in kinds.items()
        if kind.trains and config["methods"][name]["distill_scope"] != "none"
    ]
    for task, settings in (raw.get("task_settings") or {}).items():
        if not distilled and "distill_weight" in ((settings or {}).get("distill") or {}):
            raise ConfigError(
                ["task_settings", task, "distill", "distill_weight"],
                "no method distils (every trained method has distill_scope none, the task loss alone); "
                "drop the key",
            )
    given = sorted(raw.get("importance") or {})
    if given and not any(kind.needs_importance for kind in kinds.values()):
        raise ConfigError(
            ["importance", given[0]],
            f"no method keeps neurons by importance (students: "
            f"{', '.join(sorted({kind.name for kind in kinds.values()}))}), so no importance is scored; "
            f"drop the importance block",
        )


def _check_teacher(config: dict) -> None:
    """The teacher's backbone, from its config.json where it is available here (a local directory, the packaged
    MiniLM, a fetched or mirrored hub model), supported and able to build every method's student kind; a hub
    id not fetched yet is checked when fetch_model fetches it."""
    from moebert.models.loading import check_teacher

    model = config["teacher"]["model"]
    if config["teacher"]["revision"] is not None and not is_hub_model(model):
        raise ConfigError(
            ["teacher", "revision"],
            f"a revision selects a hub repository's branch, tag or commit; teacher '{model}' is not on the hub",
        )
    try:
        backbone = check_teacher(model)
    except MoebertError as err:
        raise ConfigError(["teacher", "model"], str(err)) from None
    if backbone is None:
        return
    for name, method in config["methods"].items():
        try:
            backbone.check_student(method["student"])
        except MoebertError as err:
            raise ConfigError(["methods", name, "student"], f"teacher '{model}': {err}") from None


def _check_custom_tasks(config: dict) -> None:
    """Every listed task registered or declared under custom_tasks; each declared task that is listed read
    and checked whole (its files, columns, labels: tasks/custom.py) and made known to get_task, so a bad
    file stops the run before any job."""
    from moebert.tasks import custom

    declared = config["custom_tasks"]
    known = [*TASKS, *declared]
    for key, names in (("tasks", list(config["tasks"])), ("task_settings", list(config["task_settings"]))):
        for i, name in enumerate(names):
            if name not in known:
                path, what = (
                    ([key, i], f"{name!r} is not allowed") if key == "tasks" else ([key, name], "unknown key")
                )
                raise ConfigError(
                    path,
                    f"{what}; {did_you_mean(name, known)}allowed: {', '.join(known)} "
                    f"(or declare it under custom_tasks)",
                )
    for name, declaration in declared.items():
        try:
            custom.check_declaration(name, declaration)
            if name in config["tasks"]:
                declare(custom.read(name, declaration)[0])
        except custom.DeclarationError as err:
            raise ConfigError(["custom_tasks", name, *([err.key] if err.key else [])], str(err)) from None
        except MoebertError as err:
            raise ConfigError(["custom_tasks", name], str(err)) from None
        if (config["task_settings"].get(name) or {}).get("eval_articles") is not None:
            raise ConfigError(
                ["task_settings", name, "eval_articles"],
                "a user task has its own dev file; drop the key (the article split is SQuAD's)",
            )


def check_custom_task(name: str, declaration: dict) -> dict:
    """One user task's declaration checked against the schema, defaults filled in (moebert prepare-data)."""
    declaration = copy.deepcopy(declaration)
    _check(declaration, schema()["$defs"]["custom_task"], ["custom_tasks", name])
    return declaration


def hyper_parameters(config: dict, stage: str, task: str) -> dict:
    """Hyper-parameters of `stage` (teacher or distill) on `task`: the per-task values, for the teacher falling
    back to the top-level teacher block."""
    own = config["task_settings"][task][stage]
    if stage == "distill":
        return own
    return {
        key: value
        for key, value in {**config["teacher"], **{k: v for k, v in own.items() if v is not None}}.items()
        if key in own
    }


__all__ = [
    "STUDENTS",
    "TEACHER",
    "ConfigError",
    "did_you_mean",
    "dotted",
    "schema",
    "schema_default",
    "validate",
]
