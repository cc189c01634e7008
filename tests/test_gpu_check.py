"""benchmarks/gpu_check.py with --device cpu: the checks a GPU machine runs, at small sizes, so the script is known
to work before a GPU is there to run it."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_gpu_check_runs_every_step_on_cpu(tmp_path, glue_dir):
    out = tmp_path / "check"
    done = subprocess.run(
        [
            sys.executable,
            "benchmarks/gpu_check.py",
            "--device",
            "cpu",
            "--out",
            out,
            "--data",
            glue_dir,
            "--cores",
            "2",
        ],
        check=False,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    summary = json.loads((out / "summary.json").read_text())
    assert done.returncode == 0, done.stdout + "".join(
        (out / f"{s}.log").read_text()[-2000:] for s in summary["steps"]
    )
    assert list(summary["steps"]) == ["layer_tests", "pipeline", "throughput", "speed"]
    assert all(step["ok"] for step in summary["steps"].values())
    assert (out / "pipeline" / "results" / "tables" / "glue.md").is_file()
    speed = (out / "moe_speed.csv").read_text()
    for model in ("moebert[eager]", "moebert[grouped_mm]", "moebert-tied[grouped_mm]"):
        assert model in speed
    assert json.loads((out / "throughput" / "cpu.json").read_text())["row"]["train_tflops"] > 0
