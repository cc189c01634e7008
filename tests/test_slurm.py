"""The slurm profile for real: config/tiny.yaml end-to-end through sbatch on a one-node SLURM cluster
(Debian's slurm-wlm + munge, started here by ../shared/tools/local-slurm.sh as root)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import pytest
from test_workflow import REPO, tiny_run_args

pytestmark = pytest.mark.slurm

LOCAL_SLURM = REPO.parent / "shared" / "tools" / "local-slurm.sh"


def _cluster_is_up() -> bool:
    return (
        bool(shutil.which("sinfo"))
        and subprocess.run(["sinfo", "-h"], capture_output=True, check=False).returncode == 0
    )


@pytest.fixture(scope="module")
def slurm_cluster():
    """The partition of the local cluster; stopped afterwards unless it was already running."""
    if os.geteuid() != 0:
        pytest.skip("starting the local SLURM cluster needs root")
    if not LOCAL_SLURM.is_file():
        pytest.skip(f"{LOCAL_SLURM} is missing")
    was_up = _cluster_is_up()
    start = subprocess.run(
        ["bash", str(LOCAL_SLURM)], capture_output=True, text=True, timeout=900, check=False
    )
    if start.returncode != 0:
        pytest.skip(f"the local SLURM cluster did not start: {start.stderr.strip()[-2000:]}")
    yield start.stdout.split()[-1]
    if not was_up:
        subprocess.run(["bash", str(LOCAL_SLURM), "stop"], capture_output=True, timeout=60, check=True)


def test_tiny_pipeline_runs_end_to_end_through_sbatch(slurm_cluster, tmp_path, glue_dir):
    # Exactly as users type it, from the repository root, so `--profile slurm` resolves to ./slurm.
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOEBERT_SLURM_")}
    env["MOEBERT_SLURM_PARTITION"] = slurm_cluster
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "--cores",
            "all",
            "--profile",
            "slurm",
            *map(str, tiny_run_args(tmp_path, glue_dir)),
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-8000:]

    submitted = re.findall(r"Job \d+ has been submitted with SLURM jobid (\d+)", output)
    # Every model job went through sbatch: per task finetune, importance, adapt and distill for moebert,
    # distil-half and the construction-random sweep point, evaluate for those, the teacher and majority;
    # and one speed job for the trained models. prepare_data, resolved_config and report are local rules.
    assert len(set(submitted)) == len(submitted) == 2 * (1 + 1 + 3 + 3 + 5) + 1
    assert (tmp_path / "results" / "speed" / "cpu" / "trained" / "rte" / "seed0.csv").is_file()
    assert (tmp_path / "results" / "tables" / "glue.md").is_file()
    assert (tmp_path / "results" / "metrics" / "stsb" / "moebert" / "seed0.json").is_file()
