"""Optional MLflow tracking for the CLI jobs (finetune, distill, evaluate, ...).

Tracking is a view on the pipeline, not part of it: the files under results/ are the source of truth.
So every MLflow call is retried on transient store errors (sqlite "database is locked" when several
jobs write at once), and when a call still fails the run is abandoned with a loud warning while the
job itself carries on: a tracking outage must never kill a long training or corrupt its outputs. The one
exception comes before any work: a tracking server that does not answer when a job starts fails the job
within seconds, naming its address (`unreachable`), instead of running every job of a campaign untracked
after minutes of MLflow's own connection retries.

Runs talk to MLflow through MlflowClient with explicit run ids (no fluent global active run), so each
call can be retried on its own and several runs can never get mixed up.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import logging
import math
import numbers
import os
import random
import signal
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

log = logging.getLogger(__name__)

RETRY_ATTEMPTS = 8
RETRY_BASE_DELAY_S = 0.5
RETRY_MAX_DELAY_S = 30.0
# Substrings of errors that go away when retried: sqlite lock contention. MLflow wraps sqlalchemy's
# OperationalError as MlflowException(TEMPORARILY_UNAVAILABLE). HTTP errors are retried by MLflow's
# own REST client already.
TRANSIENT_MARKERS = ("database is locked", "database is busy", "OperationalError", "TEMPORARILY_UNAVAILABLE")
PARENT_TAG = "moebert.parent_run"
# On the parent run, + "<task>/<method>/seed<seed>": the logged model an export is (models:/<model id>).
EXPORT_TAG = "moebert.export."
# Marks an experiment as model training (MLflow 3's experiment kind; the UI's experiment-type setting writes
# the same tag), for UIs that read it to open the runs rather than the GenAI overview of traces. MLflow 3.17's
# does not: a switch kept in the browser (GenAI by default) or this URL query picks the view, so the links
# written here carry the query and the README gives the URL.
EXPERIMENT_KIND_TAG = ("mlflow.experimentKind", "custom_model_development")
TRAINING_VIEW = "workflowType=machine_learning"
MAX_PARAMS_PER_BATCH = 100  # MLflow's log_batch limit
# Seconds between samples of a run's system metrics (system/cpu_utilization_percentage, memory, disk,
# network; GPU with nvidia-ml-py): several points even for jobs of a minute or two. The environment's
# MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL overrides it; MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING=false
# turns them off.
SYSTEM_METRICS_INTERVAL_S = 10.0


# argparse destinations of the options below: they configure tracking and are not run parameters.
OPTION_DESTS = ("tracking_uri", "experiment", "parent_run", "run_name", "tag", "log_artifact")


def add_tracking_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("tracking (MLflow)")
    group.add_argument(
        "--tracking-uri",
        default=None,
        help="MLflow tracking URI, e.g. sqlite:///results/mlflow/mlflow.db or http://host:5000 "
        "(default: $MLFLOW_TRACKING_URI; if neither is set, or 'off', tracking is off)",
    )
    group.add_argument("--experiment", default="moebert", help="MLflow experiment name (default: moebert)")
    group.add_argument(
        "--parent-run", default=None, help="name of the parent run to nest this run under; created if missing"
    )
    group.add_argument(
        "--run-name", default=None, help="run name (default: built from the rule/task/method/seed tags)"
    )
    group.add_argument(
        "--tag",
        action="append",
        default=[],
        type=_key_value,
        metavar="KEY=VALUE",
        help="run tag, also logged as a param (repeatable), e.g. task=mrpc seed=0 rule=distill",
    )
    group.add_argument(
        "--log-artifact",
        action="append",
        default=[],
        metavar="PATH",
        help="file uploaded when the run ends, e.g. the job's log (repeatable; missing is skipped)",
    )


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def _is_transient(exc: BaseException) -> bool:
    seen = set()
    while exc is not None and id(exc) not in seen:  # chains can loop
        seen.add(id(exc))
        text = f"{type(exc).__name__} {getattr(exc, 'error_code', '')} {exc}"
        if any(marker in text for marker in TRANSIENT_MARKERS):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def retry(
    fn,
    *args,
    attempts: int = RETRY_ATTEMPTS,
    base_delay: float = RETRY_BASE_DELAY_S,
    sleep=time.sleep,
    **kwargs,
):
    """Call fn(*args, **kwargs), retrying transient store errors with exponential backoff and jitter."""
    for attempt in range(attempts):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            if attempt == attempts - 1 or not _is_transient(exc):
                raise
            delay = min(RETRY_MAX_DELAY_S, base_delay * 2**attempt)
            # Jitter: jobs that collided once would otherwise retry in lockstep and collide again.
            sleep(random.uniform(delay / 2, delay))


def _flatten(d: dict, prefix: str = "") -> dict:
    """{"MRPC": {"f1": 89.0}} -> {"MRPC/f1": 89.0}, so nested results log as one metric each."""
    flat = {}
    for key, value in d.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{name}/"))
        else:
            flat[name] = value
    return flat


class TrackedRun:
    """Handle of one MLflow run. After a call fails for good, the handle goes quiet (no more calls), so
    a dead tracking server costs the job one round of retries, not one per logging step."""

    def __init__(self, client, run_id: str, end_artifacts=(), monitor=None, background=False):
        self.client = client
        self.run_id = run_id
        self.end_artifacts = list(end_artifacts)
        self.monitor = monitor  # mlflow's SystemMetricsMonitor of the run, or None
        self.failed = False
        # Step metrics go through MLflow's asynchronous queue (a training step never waits for the server);
        # not to a sqlite file, where a write is local and fast and "database is locked" needs our retries.
        self.background = background
        self.pending = []  # the queued writes, waited for when the run ends

    def _call(self, what: str, fn, *args, **kwargs) -> None:
        if self.failed:
            return
        try:
            retry(fn, *args, **kwargs)
        except Exception as exc:  # noqa: BLE001 -- any tracking error must spare the job
            self.failed = True
            log.warning(
                "MLFLOW TRACKING FAILED (%s) for run %s: %s: %s -- tracking is off for the rest of "
                "this job; its outputs under results/ are unaffected.",
                what,
                self.run_id,
                type(exc).__name__,
                exc,
            )

    def log_params(self, params: dict) -> None:
        from mlflow.entities import Param

        items = [Param(str(k), str(v)) for k, v in _flatten(params).items()]
        for i in range(0, len(items), MAX_PARAMS_PER_BATCH):
            self._call(
                "log params", self.client.log_batch, self.run_id, params=items[i : i + MAX_PARAMS_PER_BATCH]
            )

    def log_metrics(self, metrics: dict, step: int | None = None, background: bool = False) -> None:
        """Log the numeric values of a (possibly nested) dict; anything else (e.g. strings) is skipped. With
        `background`, queued without waiting where the run logs in the background."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [
            Metric(k, float(v), now, step or 0)
            for k, v in _flatten(metrics).items()
            if isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)
        ]
        if not items:
            return
        if background and self.background:
            self._call("queue metrics", self._queue, items)
        else:
            self._call("log metrics", self.client.log_batch, self.run_id, metrics=items)

    def _queue(self, metrics) -> None:
        self.pending.append(self.client.log_batch(self.run_id, metrics=metrics, synchronous=False))

    def log_artifact(self, path: str | os.PathLike) -> None:
        self._call(f"log artifact {path}", self.client.log_artifact, self.run_id, str(path))

    def trainer_callback(self):
        """A transformers TrainerCallback that logs every Trainer log event (loss, learning_rate, ...)
        at its global step."""
        from transformers import TrainerCallback

        run = self

        class MlflowStepLogger(TrainerCallback):
            def on_log(self, args, state, control, logs=None, **kwargs):
                run.log_metrics(logs or {}, step=state.global_step, background=True)

        return MlflowStepLogger()

    def end(self, status: str) -> None:
        if self.monitor is not None:  # before the run ends: it flushes its last samples
            self.monitor.finish()
            self.monitor = None
        for operation in self.pending:
            self._call("log metrics in the background", operation.wait)
        self.pending = []
        for path in self.end_artifacts:
            if Path(path).is_file():
                self.log_artifact(path)
        self._call("end run", self.client.set_terminated, self.run_id, status)


class Terminated(KeyboardInterrupt):
    """SIGTERM: what SLURM sends at a job's time limit or on scancel, some seconds before SIGKILL."""


def _terminate(signum, frame):
    raise Terminated(f"terminated by signal {signum}")


@contextlib.contextmanager
def _sigterm_raises():
    """Turn SIGTERM into an exception for the block, so the run is closed before the process dies (left to
    Python's default, a SIGTERM-ed job would leave its run RUNNING forever)."""
    if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
        yield
        return
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def tracked_run(args: argparse.Namespace, params: dict):
    """Yield a TrackedRun for this job, or None when tracking is off or could not start.

    The run ends FINISHED, FAILED (exception) or KILLED (Ctrl-C, SIGTERM); the exception is re-raised.
    """
    uri = _tracking_uri(args)
    if uri is None:
        yield None
        return
    run = _start_run(uri, args, params)
    if run is None:
        yield None
        return
    try:
        with _sigterm_raises():
            yield run
    except BaseException as exc:
        run.end("KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED")
        raise
    run.end("FINISHED")


def _tracking_uri(args: argparse.Namespace) -> str | None:
    """The store this process logs to, or None when tracking is off."""
    uri = args.tracking_uri if args.tracking_uri is not None else os.environ.get("MLFLOW_TRACKING_URI", "")
    # Under accelerate launch every process runs the job: the first one records it.
    if uri.lower() in ("", "off") or int(os.environ.get("RANK", "0")) != 0:
        return None
    return uri


def is_on(args: argparse.Namespace) -> bool:
    """Whether this process tracks (a store is given and it is the first process of a launch)."""
    return _tracking_uri(args) is not None


def log_to_parent(args: argparse.Namespace, paths) -> None:
    """Upload files and directories (each as a folder of its name) to the run named `--parent-run`, found or
    created as the jobs do, so the UI shows e.g. the report's tables beside the child runs. Nothing happens
    when tracking is off or no parent is named; missing paths are skipped; a tracking failure only warns."""
    uri = _tracking_uri(args)
    if uri is None or not args.parent_run:
        return

    def parent(client):
        return _parent_run_id(client, _experiment_id(client, args.experiment, uri), args.parent_run)

    _upload(uri, f"parent run {args.parent_run!r}", parent, paths)


def _on_parent(args: argparse.Namespace, what: str, action) -> None:
    """Call `action(client, parent_run_id)` on the run named `--parent-run`, found or created as the jobs do;
    nothing when tracking is off or no parent is named; a tracking failure only warns."""
    from mlflow.tracking import MlflowClient

    uri = _tracking_uri(args)
    if uri is None or not args.parent_run:
        return
    try:
        with _setup_lock(uri):
            client = MlflowClient(tracking_uri=uri)
            parent = _parent_run_id(client, _experiment_id(client, args.experiment, uri), args.parent_run)
            action(client, parent)
    except Exception as exc:  # noqa: BLE001 -- any tracking error must spare the job
        log.warning("MLFLOW TRACKING FAILED to %s at %s: %s: %s", what, uri, type(exc).__name__, exc)


def link_export(args: argparse.Namespace, name: str, model_id: str) -> None:
    """Record on the parent run that the model `name` (task/method/seed) is exported as the logged model
    `model_id`; `describe_parent` lists these links."""
    _on_parent(
        args,
        f"link the export of {name} on the parent run",
        lambda client, parent: retry(client.set_tag, parent, EXPORT_TAG + name, f"models:/{model_id}"),
    )


def summarise_parent(args: argparse.Namespace, params: dict, metrics: dict, tags: dict) -> None:
    """The config as the parent run's params (flattened), the results as its metrics, and `tags`, so the runs
    table shows them on the parent's row. Nothing when tracking is off or no parent is named; a tracking
    failure only warns."""

    def record(client, parent) -> None:
        run = TrackedRun(client, parent)
        run.log_params(params)
        run.log_metrics(metrics)
        for key, value in tags.items():
            run._call(f"tag {key}", client.set_tag, parent, key, str(value))

    _on_parent(args, "record the config and results on the parent run", record)


# MLflow keeps no default columns for an experiment's runs table (its UI remembers a choice per browser); its
# UI does open a view shared by URL (?viewStateShareKey=<key>), whose state it reads from this experiment tag
# + key: the filter, the sort, the columns and the grouping (not which rows are expanded: a parent run stays
# folded, so the view lists the evaluate runs, which hold the results, grouped by method with the average of
# their main metric on each group's row). The experiment's description links it.
SHARED_VIEW_TAG = "mlflow.sharedViewState."
RESULTS_VIEW = "results"


def results_view_link(experiment_id: str) -> str:
    return f"#/experiments/{experiment_id}/runs?viewStateShareKey={RESULTS_VIEW}&{TRAINING_VIEW}"


def set_results_view(
    args: argparse.Namespace, search: str, columns: list[str], group_by: str, description: str
) -> None:
    """The experiment's view `RESULTS_VIEW`: the runs that match `search` (e.g. the evaluate runs), newest
    first, with `columns` ("tags.`task`", "metrics.`main`"), grouped by the tag `group_by` (each group's row
    averages its runs' metrics); and the experiment's description, `description` and a link to the view. Nothing
    when tracking is off or no parent is named; a tracking failure only warns."""
    from mlflow.utils.mlflow_tags import MLFLOW_RUN_NOTE

    def view(client, parent) -> None:
        experiment_id = retry(client.get_run, parent).info.experiment_id
        state = {
            "searchFilter": search,
            "orderByKey": "attributes.start_time",
            "orderByAsc": False,
            "selectedColumns": columns,
            "groupBy": {
                "aggregateFunction": "average",
                "groupByKeys": [{"mode": "tag", "groupByData": group_by}],
            },
        }
        retry(client.set_experiment_tag, experiment_id, SHARED_VIEW_TAG + RESULTS_VIEW, json.dumps(state))
        named = ", ".join(column.split("`")[1] for column in columns)
        link = results_view_link(experiment_id)
        note = f"{description}\n\n[The results]({link}): `{search}`, with {named}, by {group_by}."
        retry(client.set_experiment_tag, experiment_id, MLFLOW_RUN_NOTE, note)

    _on_parent(args, "set the experiment's results view", view)


def describe_parent(args: argparse.Namespace, summary: str = "") -> None:
    """The parent run's description (the UI renders it as markdown on the run's page): `summary` (what ran and
    its results), then a link to every exported model's folder, among the artifacts of the run that trained it,
    and to its logged model."""
    from mlflow.utils.mlflow_tags import MLFLOW_RUN_NOTE

    def note(client, parent) -> None:
        run = retry(client.get_run, parent)
        exports = sorted(
            (k[len(EXPORT_TAG) :], v) for k, v in run.data.tags.items() if k.startswith(EXPORT_TAG)
        )
        if not exports and not summary:
            return
        lines = [summary, ""] if summary else []
        if exports:
            lines += [
                (
                    "Exported models (moebert export): Hugging Face folders with their model cards, each a logged "
                    "model of the run that trained it (the experiment's Models tab)."
                ),
                "",
            ]
        for name, uri in exports:
            model_id = uri.removeprefix("models:/")
            link = f"#/experiments/{run.info.experiment_id}/models/{model_id}"
            lines.append(f"- [{name}]({link}): `{uri}`")
        retry(client.set_tag, parent, MLFLOW_RUN_NOTE, "\n".join(lines).strip() + "\n")

    _on_parent(args, "describe the parent run", note)


def log_to_run(args: argparse.Namespace, tags: dict, paths, under: str | None = None) -> str | None:
    """Upload files and directories (each as a folder of its name, inside `under`) to the latest run of
    `--experiment` that carries every tag of `tags` (e.g. the distill run of a task, method and seed), so a
    later job's outputs join the run of the model they come from. Returns that run's id; None when tracking is
    off, no such run exists (a warning), or tracking fails (a warning: the job carries on)."""
    uri = _tracking_uri(args)
    if uri is None:
        return None
    what = "run tagged " + ", ".join(f"{k}={v}" for k, v in tags.items())

    def tagged(client):
        run = _latest_tagged_run(client, args.experiment, tags)
        return run.info.run_id if run else None

    return _upload(uri, f"{what} in experiment {args.experiment!r}", tagged, paths, under)


def _latest_tagged_run(client, experiment_name: str, tags: dict):
    """The latest run of the experiment that carries every tag of `tags`, or None."""
    experiment = retry(client.get_experiment_by_name, experiment_name)
    if experiment is None:
        return None
    condition = " and ".join(f"tags.`{k}` = '{v}'" for k, v in tags.items())
    runs = retry(
        client.search_runs,
        [experiment.experiment_id],
        filter_string=condition,
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return runs[0] if runs else None


# On a registered model's version: the main metric that decides which version is `best`.
SCORE_TAG = "main_metric"
BEST_ALIAS = "best"


def log_exported_model(
    args: argparse.Namespace,
    run_tags: dict,
    folder,
    name: str,
    params: dict,
    register: tuple[str, str, float] | None = None,
) -> str | None:
    """The exported folder as an MLflow logged model named `name`, with `params`, made by (and an output of) the
    latest run of `--experiment` tagged `run_tags`, the run that trained it. With `register` = (registered model,
    alias, score), also a version of that registered model with the alias, and the alias `best` when its score
    beats the current best's. Returns the logged model's id; None when tracking is off, no such run exists or
    tracking fails (a warning: the job carries on)."""
    from mlflow.entities import LoggedModelOutput
    from mlflow.tracking import MlflowClient

    uri = _tracking_uri(args)
    if uri is None:
        return None
    what = "run tagged " + ", ".join(f"{k}={v}" for k, v in run_tags.items())
    try:
        with _setup_lock(uri):
            client = MlflowClient(tracking_uri=uri)
            run = _latest_tagged_run(client, args.experiment, run_tags)
        if run is None:
            log.warning(
                "MLflow: found no %s in experiment %r at %s -- no logged model.", what, args.experiment, uri
            )
            return None
        run_id = run.info.run_id
        model = retry(
            client.create_logged_model,
            run.info.experiment_id,
            name=name,
            source_run_id=run_id,
            tags={key: str(value) for key, value in run_tags.items() if key != "rule"},
            params={key: str(value) for key, value in params.items()},
            model_type="transformers",
        )
        retry(client.log_model_artifacts, model.model_id, str(folder))
        retry(client.finalize_logged_model, model.model_id, "READY")
        retry(client.log_outputs, run_id, [LoggedModelOutput(model.model_id, step=0)])
        if register is not None:
            with _setup_lock(uri):  # the best alias is read, compared and moved by one job at a time
                _register(client, model, run_id, *register)
    except Exception as exc:  # noqa: BLE001 -- any tracking error must spare the job
        log.warning(
            "MLFLOW TRACKING FAILED to log the model of the %s at %s: %s: %s -- the folder under results/ is "
            "unaffected.",
            what,
            uri,
            type(exc).__name__,
            exc,
        )
        return None
    return model.model_id


def _register(client, model, run_id: str, name: str, alias: str, score: float) -> None:
    from mlflow.exceptions import MlflowException
    from mlflow.utils.mlflow_tags import MLFLOW_MODEL_VERSIONS

    try:
        retry(client.create_registered_model, name)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    version = retry(
        client.create_model_version,
        name,
        # The model's files, not models:/<id>: MLflow's sqlite registry looks that up in the process's global
        # store (MLFLOW_TRACKING_URI), not this client's.
        source=model.artifact_location,
        run_id=run_id,
        model_id=model.model_id,
        tags={SCORE_TAG: repr(float(score))},
    ).version
    retry(client.set_registered_model_alias, name, alias, version)
    # The logged model's link to its version, as mlflow.register_model records it (the Models tab shows it).
    versions = json.loads(model.tags.get(MLFLOW_MODEL_VERSIONS, "[]")) + [{"name": name, "version": version}]
    retry(client.set_logged_model_tags, model.model_id, {MLFLOW_MODEL_VERSIONS: json.dumps(versions)})
    try:
        best = retry(client.get_model_version_by_alias, name, BEST_ALIAS)
    except MlflowException:
        best = None
    if best is None or float(best.tags.get(SCORE_TAG, "-inf")) < score:
        retry(client.set_registered_model_alias, name, BEST_ALIAS, version)


def _upload(uri: str, what: str, find_run, paths, under: str | None = None) -> str | None:
    """Find a run with `find_run(client)` (its id, or None) and upload `paths` to it: a directory as the folder
    of its name, a file as itself, both inside `under`; missing paths are skipped. Tracking errors warn."""
    from mlflow.tracking import MlflowClient

    try:
        with _setup_lock(uri):
            client = MlflowClient(tracking_uri=uri)
            run_id = find_run(client)
    except Exception as exc:  # noqa: BLE001 -- any tracking error must spare the job
        log.warning(
            "MLFLOW TRACKING FAILED to find the %s at %s: %s: %s -- nothing logged; the outputs under "
            "results/ are unaffected.",
            what,
            uri,
            type(exc).__name__,
            exc,
        )
        return None
    if run_id is None:
        log.warning("MLflow: found no %s at %s -- nothing logged.", what, uri)
        return None
    sys.stdout.flush()  # the job's log may be among the paths
    sys.stderr.flush()
    run = TrackedRun(client, run_id)
    for path in map(Path, paths):
        if path.is_dir():
            folder = f"{under}/{path.name}" if under else path.name
            run._call(f"log artifacts {path}", client.log_artifacts, run_id, str(path), folder)
        elif path.is_file():
            run._call(f"log artifact {path}", client.log_artifact, run_id, str(path), under)
    return run_id


def _system_metrics(uri: str, run_id: str):
    """Start mlflow's system metrics monitor on a run (a thread sampling every SYSTEM_METRICS_INTERVAL_S);
    None when turned off or unavailable (it needs psutil)."""
    from mlflow.environment_variables import MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING as ENABLED

    if ENABLED.defined and not ENABLED.get():
        return None
    try:
        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

        monitor = SystemMetricsMonitor(run_id, sampling_interval=SYSTEM_METRICS_INTERVAL_S, tracking_uri=uri)
        monitor.start()
    except Exception as exc:  # noqa: BLE001 -- a run without system metrics is still a run
        log.warning("MLflow system metrics are off for run %s: %s: %s", run_id, type(exc).__name__, exc)
        return None
    return monitor


# Seconds a job waits for the tracking server's first answer (MOEBERT_TRACKING_TIMEOUT_S overrides it).
SERVER_TIMEOUT_S = 10.0


def unreachable(uri: str, timeout: float | None = None) -> str | None:
    """Why the tracking server at an http(s) `uri` cannot be used: it gave no answer within `timeout` seconds.
    MLflow's client retries a refused connection for minutes (MLFLOW_HTTP_REQUEST_MAX_RETRIES with backoff),
    which every job of a campaign would pay; one short request to the server's /health says it at once. Any
    HTTP answer, an error status included, shows a server there. Other stores (sqlite, files): None."""
    if not uri.startswith(("http://", "https://")):
        return None
    if timeout is None:
        timeout = float(os.environ.get("MOEBERT_TRACKING_TIMEOUT_S", SERVER_TIMEOUT_S))
    try:
        urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout).close()
    except urllib.error.HTTPError:
        return None
    except OSError as exc:  # refused, unknown host, timed out (URLError is an OSError)
        reason = getattr(exc, "reason", exc)
        return (
            f"tracking: the MLflow server at {uri} did not answer within {timeout:g} s ({reason}). Start it "
            "(scripts/mlflow-server.sh), point MLFLOW_TRACKING_URI or the config's tracking_uri at a running "
            "one, or set tracking_uri: off"
        )
    return None


def _start_run(uri: str, args: argparse.Namespace, params: dict) -> TrackedRun | None:
    from mlflow.tracking import MlflowClient
    from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

    from moebert.errors import MoebertError

    if down := unreachable(uri):
        raise MoebertError(down)
    tags = dict(args.tag)
    name = args.run_name or "-".join(tags[k] for k in ("rule", "task", "method", "seed") if k in tags) or None
    try:
        with _setup_lock(uri):
            client = MlflowClient(tracking_uri=uri)
            experiment_id = _experiment_id(client, args.experiment, uri)
            if args.parent_run:
                tags[MLFLOW_PARENT_RUN_ID] = _parent_run_id(client, experiment_id, args.parent_run)
        run_id = retry(client.create_run, experiment_id, run_name=name, tags=tags).info.run_id
    except Exception as exc:  # noqa: BLE001 -- any tracking error must spare the job
        log.warning(
            "MLFLOW TRACKING FAILED to start a run at %s: %s: %s -- this job runs untracked; its "
            "outputs under results/ are unaffected.",
            uri,
            type(exc).__name__,
            exc,
        )
        return None
    run = TrackedRun(
        client, run_id, args.log_artifact, _system_metrics(uri, run_id), background=sqlite_path(uri) is None
    )
    # Tags are params too, so the UI's run comparison shows e.g. the config hash and git commit.
    run.log_params({**params, **dict(args.tag)})
    return run


def sqlite_path(uri: str) -> Path | None:
    prefix = "sqlite:///"
    if not uri.startswith(prefix) or uri == prefix + ":memory:":
        return None
    return Path(uri[len(prefix) :].split("?", 1)[0])


@contextlib.contextmanager
def _setup_lock(uri: str):
    """Serialise store creation and parent find-or-create between jobs sharing one sqlite file: a fresh
    database is initialised by its first user (concurrent schema migrations clash) and concurrent
    find-or-create would make one parent per job. Remote stores rely on _parent_run_id converging."""
    db = sqlite_path(uri)
    if db is None:
        yield
        return
    db.parent.mkdir(parents=True, exist_ok=True)
    with open(db.with_name(db.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        yield


def _experiment_id(client, name: str, uri: str) -> str:
    experiment = retry(client.get_experiment_by_name, name)
    if experiment is not None:
        if EXPERIMENT_KIND_TAG[0] not in experiment.tags:  # made by an earlier version, or by hand
            retry(client.set_experiment_tag, experiment.experiment_id, *EXPERIMENT_KIND_TAG)
        return experiment.experiment_id
    db = sqlite_path(uri)
    # Without an explicit location MLflow writes sqlite-store artifacts into ./mlruns of whatever
    # directory the job runs in; keep them beside the database instead.
    location = (db.parent / "artifacts").resolve().as_uri() if db else None
    try:
        return retry(
            client.create_experiment, name, artifact_location=location, tags=dict([EXPERIMENT_KIND_TAG])
        )
    except Exception:
        # Another job (on a remote store) created it between our lookup and our create.
        experiment = retry(client.get_experiment_by_name, name)
        if experiment is None:
            raise
        return experiment.experiment_id


def _parent_run_id(client, experiment_id: str, name: str) -> str:
    """Find or create the parent run called `name`. Concurrent creators converge: each one re-searches
    after creating, all settle on the oldest candidate, and the others delete their own."""

    def oldest() -> str | None:
        runs = retry(client.search_runs, [experiment_id], filter_string=f"tags.`{PARENT_TAG}` = '{name}'")
        runs = sorted(runs, key=lambda r: (r.info.start_time, r.info.run_id))
        return runs[0].info.run_id if runs else None

    found = oldest()
    if found:
        return found
    mine = retry(client.create_run, experiment_id, run_name=name, tags={PARENT_TAG: name}).info.run_id
    retry(client.set_terminated, mine)  # a parent only groups its children; it never runs itself
    winner = oldest()
    if winner != mine:
        retry(client.delete_run, mine)
    return winner
