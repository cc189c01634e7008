"""One controller at a time (workflow/lib/controller.py): the jobs an earlier controller left in a working
directory, read from squeue's output, and the cap --cores puts on every cluster job's threads."""

from __future__ import annotations

import subprocess
import sys

from test_workflow import REPO

sys.path.insert(0, str(REPO / "workflow" / "lib"))
import controller


def _squeue(workdir, other):
    return "\n".join(
        [
            f"101|{workdir}|rule_teacher-rte-seed0_finetune_wildcards_rte_0|RUNNING",
            f"102|{workdir}|rule_importance_wildcards_rte_0|PENDING",
            f"103|{other}|rule_importance_wildcards_rte_0|RUNNING",  # another campaign
            f"104|{workdir}|(null)|RUNNING",  # not Snakemake's: e.g. the controller job or an MLflow server
            f"105|{workdir}/|rule_rte-scores_evaluate|RUNNING",
        ]
    )


def test_earlier_jobs_are_snakemakes_from_this_directory_but_the_controllers_own(tmp_path):
    here, other = tmp_path / "campaign", tmp_path / "other"
    here.mkdir()
    other.mkdir()
    output = _squeue(here, other)
    assert controller.earlier_jobs(output, here) == ["101", "102", "105"]
    assert controller.earlier_jobs(output, here, own_job="102") == ["101", "105"]
    assert controller.earlier_jobs(output, other) == ["103"]
    assert controller.earlier_jobs("", here) == []


def test_a_second_controller_is_refused_with_the_jobs_and_the_scancel_line(tmp_path):
    reason = controller.refusal(tmp_path, "me", None, query=lambda user: _squeue(tmp_path, "/elsewhere"))
    assert reason.startswith(f"3 cluster job(s) an earlier controller submitted from {tmp_path.resolve()}")
    assert reason.endswith("scancel 101 102 105")
    assert controller.refusal(tmp_path, "me", None, query=lambda user: "") is None


def test_without_squeue_to_ask_nothing_is_refused_and_it_says_so(tmp_path, capsys):
    """No SLURM client on the host, or its controller down: the executor could submit nothing either."""

    def down(user):
        raise subprocess.CalledProcessError(1, ["squeue"], stderr="slurm_load_jobs error")

    def absent(user):
        raise FileNotFoundError(2, "No such file or directory", "squeue")

    for query in (down, absent):
        assert controller.refusal(tmp_path, "me", None, query=query) is None
        assert "squeue failed" in capsys.readouterr().err


def test_the_controller_job_waits_until_the_earlier_jobs_are_gone(tmp_path):
    answers = iter([_squeue(tmp_path, "/x"), f"101|{tmp_path}|rule_a|RUNNING", ""])
    users, slept, said = [], [], []

    def query(user):
        users.append(user)
        return next(answers)

    polls = controller.wait_for_earlier_jobs(
        tmp_path, "me", query=query, sleep=slept.append, say=said.append, poll_s=7
    )
    assert polls == 2 and slept == [7, 7] and users == ["me"] * 3
    assert said == ["waiting for the jobs an earlier controller left running here: 101 102 105"]


def test_cores_below_the_jobs_threads_are_refused():
    assert controller.capped_threads(None, 8) is None
    assert controller.capped_threads(8, 8) is None
    assert controller.capped_threads(2, 8) == (
        "--cores 2 caps every cluster job's threads at 2, below the config's 8 "
        "(resources.threads, speed.threads): give --cores 8 or more"
    )
