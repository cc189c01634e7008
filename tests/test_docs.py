"""Words that stay true: every pointer into docs/method.md names a section it has."""

from __future__ import annotations

import re
import subprocess

from test_workflow import REPO

# `docs/method.md §8`, `§8.1`, `§7-8`
POINTER = re.compile(r"method\.md,? §(\d+(?:\.\d+)?)(?:-(\d+))?")


def method_sections() -> set[str]:
    text = (REPO / "docs" / "method.md").read_text()
    return set(re.findall(r"^#{2,3} (\d+(?:\.\d+)?)\.? ", text, flags=re.MULTILINE))


def test_method_sections_are_read_from_the_headings():
    sections = method_sections()
    assert {"2", "8", "8.1", "8.2", "11"} <= sections and "8.9" not in sections


def test_every_pointer_into_the_method_document_resolves():
    files = subprocess.run(
        ["git", "ls-files", "src", "tests", "workflow", "config", "benchmarks", "scripts", "README.md", "docs"],
        cwd=REPO, capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    sections, missing, found = method_sections(), [], 0
    for name in files:
        path = REPO / name
        if path.suffix not in {".py", ".md", ".yaml", ".smk", ".rst", ""} or not path.is_file():
            continue
        for line_no, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            for first, last in POINTER.findall(line):
                found += 1
                wanted = [first] + ([str(n) for n in range(int(first) + 1, int(last) + 1)] if last else [])
                missing += [f"{name}:{line_no}: §{w}" for w in wanted if w not in sections]
    assert found > 40 and not missing, missing
