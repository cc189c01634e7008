"""MoEBERT: turn a fine-tuned BERT into a Mixture-of-Experts model (Zuo et al., NAACL 2022)."""

import subprocess
from pathlib import Path

__version__ = "0.1.0"


def package_commit() -> str:
    """The git commit of this package's checkout (with -dirty for uncommitted changes), or "unknown": what
    the model cards and the report record as the code that made them."""
    root = Path(__file__).resolve().parents[2]

    def git(*args):
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, check=False)

    try:
        head = git("rev-parse", "--short=12", "HEAD")
        if head.returncode:
            return "unknown"
        dirty = git("status", "--porcelain", "--untracked-files=no").stdout.strip()
    except OSError:
        return "unknown"
    return head.stdout.strip() + ("-dirty" if dirty else "")
