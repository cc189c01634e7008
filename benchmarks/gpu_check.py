"""The checks a GPU must pass, in one run and one output folder, within about 8 minutes on an H100:

1. the MoE layer's tests on the device (every experts implementation against the reference layer; the
   grouped forward with torch's sync debug mode on, so a host synchronisation fails it);
2. the tiny pipeline end to end (.test/config/config.yaml, every model job on the device);
3. the cost model's row of the device (benchmarks/throughput.py, BERT-base in bf16; not written into
   config/throughput.yaml: copy the row from the output if it is to replace the assumed one);
4. the speed of BERT-base, dense-narrow, MoEBERT (every experts implementation, copied and tied shared
   neurons) and the reference-style forward at batch 1, 32 and 128 (benchmarks/moe_speed.py).

    python benchmarks/gpu_check.py --device cuda --out results/gpu_check
    python benchmarks/gpu_check.py --device cpu --out results/gpu_check   # the same checks, small sizes

Each step's output goes to <out>/<step>.log (and its CSV/JSON beside it); <out>/summary.json says which
passed and how long each took. Run from the repository root, with ../shared/data beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def steps(device: str, out: Path, data: Path, cores: int) -> dict[str, list[str]]:
    """Each check's command: full sizes on a GPU, small ones on a CPU (the CI's slow test)."""
    gpu = device == "cuda"
    config = yaml.safe_load((REPO / ".test" / "config" / "config.yaml").read_text())
    config.update(data=str(data), tracking_uri="off")
    config["resources"] = {**config["resources"], "gpus": 1 if gpu else 0}
    tiny = out / "tiny.yaml"
    tiny.write_text(yaml.safe_dump(config))
    python = sys.executable
    return {
        "layer_tests": [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_moe_layer.py"],
        "pipeline": [
            python,
            "-m",
            "snakemake",
            "--cores",
            str(cores),
            "--configfile",
            str(tiny),
            "--directory",
            str(out / "pipeline"),
            "--snakefile",
            str(REPO / "workflow" / "Snakefile"),
        ],
        "throughput": [
            python,
            "benchmarks/throughput.py",
            "--device",
            device,
            "--kind",
            "h100" if gpu else "cpu",
            "--model",
            "bert-base" if gpu else "minilm",
            "--dtype",
            "bf16" if gpu else "fp32",
            "--rounds",
            "10" if gpu else "2",
            "--out",
            str(out / "throughput"),
        ],
        "speed": [
            python,
            "benchmarks/moe_speed.py",
            "--device",
            device,
            "--dims",
            "bert-base" if gpu else "minilm",
            "--batch-sizes",
            *(["1", "32", "128"] if gpu else ["1", "8"]),
            "--rounds",
            "10" if gpu else "2",
            "--out",
            str(out / "moe_speed"),
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--out", default="results/gpu_check")
    parser.add_argument(
        "--data",
        default=str(REPO.parent / "shared" / "data" / "glue"),
        help="GLUE data in the classic layout (for the tiny pipeline)",
    )
    parser.add_argument("--cores", type=int, default=os.cpu_count())
    args = parser.parse_args()
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    summary = {"device": args.device, "steps": {}}
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    for name, command in steps(args.device, out, Path(args.data).resolve(), args.cores).items():
        start = time.monotonic()
        with open(out / f"{name}.log", "w") as log:
            code = subprocess.run(
                command, check=False, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env=env
            ).returncode
        seconds = time.monotonic() - start
        summary["steps"][name] = {"ok": code == 0, "seconds": round(seconds, 1), "command": " ".join(command)}
        print(
            f"{name:<12} {'ok' if code == 0 else f'FAILED ({code})':<12} {seconds:7.1f} s   {out / f'{name}.log'}",
            flush=True,
        )
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    if not all(step["ok"] for step in summary["steps"].values()):
        sys.exit(1)


if __name__ == "__main__":
    main()
