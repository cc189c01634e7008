import argparse
import logging
import multiprocessing as mp

import pytest

from moebert import tracking

STEPS = 5
JOBS = 4


def parse(argv):
    parser = argparse.ArgumentParser()
    tracking.add_tracking_arguments(parser)
    return parser.parse_args(argv)


def tracked_job(uri, seed, artifact, barrier):
    """One 'training job': waits for the others so that all four hit the fresh sqlite store at once."""
    from transformers import TrainerState

    args = parse(
        [
            "--tracking-uri",
            uri,
            "--experiment",
            "tiny",
            "--parent-run",
            "grid",
            "--tag",
            "task=mrpc",
            "--tag",
            "method=moebert",
            "--tag",
            f"seed={seed}",
            "--tag",
            "rule=distill",
        ]
    )
    barrier.wait()
    with tracking.tracked_run(args, {"lr": 3e-5, "epochs": 1}) as run:
        callback = run.trainer_callback()
        for step in range(1, STEPS + 1):
            logs = {"loss": 1.0 / step, "learning_rate": 3e-5 * (1 - step / STEPS), "epoch": step / STEPS}
            callback.on_log(None, TrainerState(global_step=step), None, logs=logs)
        run.log_metrics({"MRPC": {"accuracy": 80.0 + seed, "f1": 85.0 + seed}})
        run.log_artifact(artifact)


def test_concurrent_jobs_share_one_sqlite_store(tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.chdir(tmp_path)  # any stray ./mlruns would show up here
    uri = f"sqlite:///{tmp_path}/mlflow/mlflow.db"
    artifact = tmp_path / "metrics.json"
    artifact.write_text("{}")
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(JOBS)
    jobs = [ctx.Process(target=tracked_job, args=(uri, seed, str(artifact), barrier)) for seed in range(JOBS)]
    for job in jobs:
        job.start()
    for job in jobs:
        job.join(timeout=300)
    assert [job.exitcode for job in jobs] == [0] * JOBS

    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("tiny")
    assert experiment.artifact_location == (tmp_path / "mlflow" / "artifacts").as_uri()
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"  # the UI's training view
    assert not (tmp_path / "mlruns").exists()
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if r.data.tags.get(tracking.PARENT_TAG) == "grid"]
    assert len(parents) == 1
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    assert sorted(int(r.data.tags["seed"]) for r in children) == list(range(JOBS))
    for run in children:
        seed = int(run.data.tags["seed"])
        assert run.info.status == "FINISHED"
        assert run.info.run_name == f"distill-mrpc-moebert-{seed}"
        assert run.data.params["lr"] == "3e-05" and run.data.params["seed"] == str(seed)
        assert run.data.tags["task"] == "mrpc" and run.data.tags["rule"] == "distill"
        assert run.data.metrics["MRPC/accuracy"] == 80.0 + seed
        history = client.get_metric_history(run.info.run_id, "loss")
        assert sorted((m.step, m.value) for m in history) == [(s, 1.0 / s) for s in range(1, STEPS + 1)]
        assert len(client.get_metric_history(run.info.run_id, "learning_rate")) == STEPS
        assert [a.path for a in client.list_artifacts(run.info.run_id)] == ["metrics.json"]


def test_step_metrics_of_a_server_run_are_queued_and_waited_for_at_the_end(tmp_path, monkeypatch):
    """A store that is not a sqlite file (a tracking server; here MLflow's file store, which behaves alike)
    takes the training steps' metrics asynchronously: the step does not wait, the run's end does."""
    from mlflow.tracking import MlflowClient
    from transformers import TrainerState

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    monkeypatch.setenv("MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING", "false")
    uri = (tmp_path / "mlruns").as_uri()
    with tracking.tracked_run(parse(["--tracking-uri", uri, "--experiment", "x"]), {"lr": 1}) as run:
        callback = run.trainer_callback()
        for step in range(1, STEPS + 1):
            callback.on_log(None, TrainerState(global_step=step), None, logs={"loss": 1.0 / step})
        assert len(run.pending) == STEPS
        run.log_metrics({"accuracy": 80.0})  # not a training step: written at once
        assert len(run.pending) == STEPS
    assert run.pending == []
    client = MlflowClient(tracking_uri=uri)
    (logged,) = client.search_runs([client.get_experiment_by_name("x").experiment_id])
    history = client.get_metric_history(logged.info.run_id, "loss")
    assert sorted((m.step, m.value) for m in history) == [(s, 1.0 / s) for s in range(1, STEPS + 1)]
    assert logged.data.metrics["accuracy"] == 80.0 and logged.info.status == "FINISHED"
    sqlite = parse(["--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db", "--experiment", "x"])
    with tracking.tracked_run(sqlite, {}) as run:
        run.trainer_callback().on_log(None, TrainerState(global_step=1), None, logs={"loss": 1.0})
        assert not run.background and run.pending == []  # sqlite: written at once, retried when locked


def test_an_experiment_made_without_its_kind_gets_it(tmp_path):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(tracking_uri=uri)
    made = client.create_experiment("older", artifact_location=(tmp_path / "artifacts").as_uri())
    assert tracking._experiment_id(client, "older", uri) == made
    assert client.get_experiment(made).tags["mlflow.experimentKind"] == "custom_model_development"


def test_concurrent_parent_creators_converge_on_the_oldest(tmp_path):
    """The scheme a remote store relies on: a job that missed another's parent creates its own, sees both
    on re-search, keeps the older one and deletes its own."""
    import time

    from mlflow.entities import ViewType
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    experiment_id = client.create_experiment("tiny", artifact_location=(tmp_path / "artifacts").as_uri())
    theirs = client.create_run(experiment_id, run_name="grid", tags={tracking.PARENT_TAG: "grid"}).info.run_id
    time.sleep(0.01)

    class StaleFirstSearch:  # the first search happened before the other job's parent was committed
        searches = 0

        def __getattr__(self, name):
            return getattr(client, name)

        def search_runs(self, *args, **kwargs):
            self.searches += 1
            return [] if self.searches == 1 else client.search_runs(*args, **kwargs)

    assert tracking._parent_run_id(StaleFirstSearch(), experiment_id, "grid") == theirs
    assert tracking._parent_run_id(client, experiment_id, "grid") == theirs
    runs = client.search_runs([experiment_id], run_view_type=ViewType.ALL)
    assert sorted(r.info.lifecycle_stage for r in runs) == ["active", "deleted"]


def test_retry_survives_a_locked_database():
    calls, sleeps = [], []

    def flaky(x):
        calls.append(x)
        if len(calls) <= 2:
            raise RuntimeError("(sqlite3.OperationalError) database is locked")
        return x * 2

    assert tracking.retry(flaky, 21, sleep=sleeps.append, base_delay=1.0) == 42
    assert len(calls) == 3
    assert 0.5 <= sleeps[0] <= 1.0 and 1.0 <= sleeps[1] <= 2.0  # exponential, jittered


def test_retry_gives_up_on_permanent_errors_at_once():
    sleeps = []

    def broken():
        raise ValueError("invalid param name")

    with pytest.raises(ValueError):
        tracking.retry(broken, sleep=sleeps.append)
    assert sleeps == []


def test_failed_tracking_warns_and_spares_the_job(caplog):
    class DeadClient:
        def log_batch(self, *args, **kwargs):
            raise ConnectionError("tracking server gone")

    run = tracking.TrackedRun(DeadClient(), "run123")
    with caplog.at_level(logging.WARNING):
        run.log_metrics({"loss": 1.0}, step=1)
        run.log_metrics({"loss": 0.5}, step=2)  # quiet now: no second round of retries
    assert run.failed
    assert len(caplog.records) == 1 and "MLFLOW TRACKING FAILED" in caplog.text


@pytest.mark.parametrize("uri", [None, "off"])
def test_tracking_off_without_uri(monkeypatch, uri):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    args = parse([] if uri is None else ["--tracking-uri", uri])
    with tracking.tracked_run(args, {"lr": 1e-5}) as run:
        assert run is None


def test_bad_tag_is_rejected():
    with pytest.raises(SystemExit):
        parse(["--tag", "no-equals-sign"])


def test_a_sigterm_ed_job_leaves_its_run_killed(tmp_path):
    """SLURM ends a job at its time limit with SIGTERM: the run must say KILLED, not RUNNING forever."""
    import signal
    import subprocess
    import sys
    import time

    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    started = tmp_path / "started"
    job = f"""
import argparse, pathlib, time
from moebert import tracking
parser = argparse.ArgumentParser()
tracking.add_tracking_arguments(parser)
args = parser.parse_args(["--tracking-uri", {uri!r}, "--experiment", "term", "--parent-run", "grid"])
with tracking.tracked_run(args, {{"lr": 1}}) as run:
    pathlib.Path({str(started)!r}).touch()
    time.sleep(120)
"""
    proc = subprocess.Popen([sys.executable, "-c", job], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not started.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert started.exists(), proc.stderr.read() if proc.poll() is not None else "job did not start"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) != 0
    assert "Terminated: terminated by signal 15" in proc.stderr.read()
    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name("term").experiment_id])
    child = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert [r.info.status for r in child] == ["KILLED"]


def test_only_the_first_process_of_a_launch_tracks(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RANK", "1")
    with tracking.tracked_run(parse(["--tracking-uri", "sqlite:///never.db"]), {}) as run:
        assert run is None
    assert not list(tmp_path.iterdir())


def test_system_metrics_are_logged_for_every_tracked_run(tmp_path, monkeypatch):
    import time

    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "0.5")
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    with tracking.tracked_run(parse(["--tracking-uri", uri, "--experiment", "sys"]), {"lr": 1}) as run:
        time.sleep(2.0)  # a few sampling intervals
    metrics = MlflowClient(tracking_uri=uri).get_run(run.run_id).data.metrics
    assert "system/cpu_utilization_percentage" in metrics
    assert "system/system_memory_usage_percentage" in metrics
    assert run.monitor is None  # stopped when the run ended


def test_system_metrics_can_be_turned_off(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING", "false")
    with tracking.tracked_run(parse(["--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db"]), {}) as run:
        assert run.monitor is None


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("", 0))
        return sock.getsockname()[1]


@pytest.mark.slow  # the server takes 15-30 s to start on 2 busy cores
def test_jobs_log_to_the_cluster_server_script(tmp_path, monkeypatch):
    """scripts/mlflow-server.sh for real: a job logs to the URI it prints, over HTTP, never through the sqlite
    lock; the store and artifacts land in MOEBERT_MLFLOW_DIR."""
    import os
    import signal
    import subprocess
    import time
    import urllib.request
    from pathlib import Path

    from mlflow.tracking import MlflowClient

    script = Path(__file__).parents[1] / "scripts" / "mlflow-server.sh"
    store = tmp_path / "server"
    env = {**os.environ, "MOEBERT_MLFLOW_DIR": str(store), "MOEBERT_MLFLOW_PORT": str(_free_port())}
    env.pop("MLFLOW_TRACKING_URI", None)
    out = tmp_path / "server.log"
    with open(out, "w") as log_file:
        server = subprocess.Popen(
            ["bash", str(script)],
            env=env,
            cwd=tmp_path,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 120
        uri = None
        while time.monotonic() < deadline and server.poll() is None:
            exports = [line for line in out.read_text().splitlines() if line.startswith("export ")]
            uri = uri or (exports[0].removeprefix("export MLFLOW_TRACKING_URI=") if exports else None)
            try:
                if uri and urllib.request.urlopen(f"{uri}/health", timeout=5).status == 200:
                    break
            except OSError:
                pass
            time.sleep(0.5)
        else:
            pytest.fail(f"server did not come up:\n{out.read_text()}")
        fqdn = subprocess.check_output(["hostname", "-f"], text=True).strip()
        assert uri == f"http://{fqdn}:{env['MOEBERT_MLFLOW_PORT']}"

        def no_flock(*args):
            raise AssertionError("an http store must not take the sqlite setup lock")

        monkeypatch.setattr(tracking.fcntl, "flock", no_flock)
        artifact = tmp_path / "metrics.json"
        artifact.write_text("{}")
        args = parse(
            [
                "--tracking-uri",
                uri,
                "--experiment",
                "cluster",
                "--parent-run",
                "grid",
                "--tag",
                "rule=distill",
                "--tag",
                "task=mrpc",
                "--log-artifact",
                str(artifact),
            ]
        )
        with tracking.tracked_run(args, {"lr": 3e-5}) as run:
            assert run is not None
            run.log_metrics({"loss": 0.5}, step=1)
        assert not run.failed, out.read_text()

        client = MlflowClient(tracking_uri=uri)
        finished = client.get_run(run.run_id)
        assert finished.info.status == "FINISHED"
        assert finished.data.metrics["loss"] == 0.5 and finished.data.params["lr"] == "3e-05"
        parent = client.get_run(finished.data.tags["mlflow.parentRunId"])
        assert parent.data.tags[tracking.PARENT_TAG] == "grid"
        assert [a.path for a in client.list_artifacts(run.run_id)] == ["metrics.json"]
        assert (store / "mlflow.db").is_file() and list((store / "artifacts").rglob("metrics.json"))
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_tracking_server_that_does_not_answer_fails_the_job_at_once_naming_it(tmp_path):
    """Nothing listens at the address: the job stops before any work, within seconds, with the address in
    the message (MLflow's client would retry the refused connection for minutes)."""
    import time

    from moebert.errors import MoebertError

    uri = f"http://127.0.0.1:{_free_port()}"
    args = argparse.Namespace(
        tracking_uri=uri, tag=[], run_name=None, experiment="e", parent_run=None, log_artifact=[]
    )
    started = time.monotonic()
    with (
        pytest.raises(MoebertError, match=f"MLflow server at {uri} did not answer within 10 s"),
        tracking.tracked_run(args, {}),
    ):
        pytest.fail("the job's work ran")
    assert time.monotonic() - started < 10  # refused at once, not after MLflow's retries


def test_a_silent_tracking_server_times_out_and_any_http_answer_counts_as_there(monkeypatch):
    import http.server
    import socket
    import threading

    # Accepts the connection but never answers: the probe gives up after its timeout.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        uri = f"http://127.0.0.1:{silent.getsockname()[1]}"
        monkeypatch.setenv("MOEBERT_TRACKING_TIMEOUT_S", "0.5")
        assert "did not answer within 0.5 s" in tracking.unreachable(uri)

    class Answers(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(404 if self.path != "/health" else 401)  # even an error is an answer
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Answers)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        assert tracking.unreachable(f"http://127.0.0.1:{server.server_port}/") is None
    finally:
        server.shutdown()
    assert tracking.unreachable("sqlite:///mlflow.db") is None  # not a server: nothing to ask


def test_the_workflow_refuses_to_start_on_a_tracking_server_that_does_not_answer():
    """The controller's check (onstart) before any job: the same message as a job's."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parents[1] / "workflow" / "lib"))
    import runs

    uri = f"http://127.0.0.1:{_free_port()}"
    store = runs.Tracking(uri, True, "e", "hash", "commit")
    assert store.refusal(cluster=True, executor="slurm").startswith(f"tracking: the MLflow server at {uri}")
    assert runs.Tracking("sqlite:///x/mlflow.db", True, "e", "hash", "commit").refusal(True, "slurm") is None
