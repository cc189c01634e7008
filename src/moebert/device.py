"""Which device a stage runs on: one rule for every command (training, importance, evaluation, speed)."""

from __future__ import annotations

import contextlib
import platform
from pathlib import Path
from typing import TYPE_CHECKING

from moebert.errors import MoebertError

if TYPE_CHECKING:
    import torch

DEVICE_HELP = "auto (CUDA when present, else CPU), cpu or cuda"


def resolve_device(name: str) -> torch.device:
    """`auto` takes CUDA when present; asking for CUDA where there is none is an error, not a silent CPU run
    (a cluster job holding a GPU it does not use)."""
    import torch  # here, so that cpu_model needs no torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise MoebertError(f"--device {name!r}: {err}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise MoebertError(
            f"--device {name}: no CUDA device is available on this machine; use --device auto or "
            f"cpu (in the workflow, --device cuda comes with resources.gpus > 0: set it to 0)"
        )
    return device


def cpu_model() -> str:
    """The CPU's model name: what a timing ran on, and what the throughput table's cpu row was measured on."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    return platform.processor() or platform.machine()
