#!/usr/bin/env python3
"""Set up and run sgaudit from a fresh clone, with nothing but Python 3.11+.

    python3 tasks.py demo    # create .venv, install sgaudit, run it on sample_logs/ -> out/usage.csv and
                             # the audit report out/audit_report.html
    python3 tasks.py test    # create .venv, install sgaudit with its test tools, run ruff and pytest

Both are idempotent: an existing .venv is reused and brought up to date.
"""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")


def sh(*args: str | Path) -> None:
    """Run a command from the repository root; stop with its exit status if it fails."""
    print("+", " ".join(str(a) for a in args), flush=True)
    status = subprocess.call([str(a) for a in args], cwd=ROOT)
    if status:
        sys.exit(status)


def setup(extra: str = "") -> None:
    """Create .venv if needed and install sgaudit (editable) into it."""
    if sys.version_info < (3, 11):  # noqa: UP036 - this script must run, and explain, on older Pythons
        sys.exit(f"sgaudit needs Python 3.11 or newer; this is {sys.version.split()[0]}")
    if not (BIN / "python").exists():
        print(f"+ creating {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    sh(BIN / "python", "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-e", f".{extra}")


def demo() -> None:
    """The main job on the shipped sample account: the usage table, then the auditor's offline HTML report."""
    setup()
    sources = ["--flow-logs", "sample_logs/flow-logs", "sample_logs/cloudwatch/app-eni.log",
               "--inventory", "sample_logs/inventory"]
    sh(BIN / "sgaudit", "usage", *sources, "--out", "out/usage.csv")
    sh(BIN / "sgaudit", "report", *sources, "--out", "out/audit_report.html")


def test() -> None:
    """Lint, then the whole test suite."""
    setup("[test]")
    sh(BIN / "ruff", "check", "toolkit", "tests", "bench", "sample_logs", "notebooks", "tasks.py")
    sh(BIN / "python", "-m", "pytest", "-q", *sys.argv[2:])


if __name__ == "__main__":
    tasks = {"demo": demo, "test": test}
    if len(sys.argv) < 2 or sys.argv[1] not in tasks:
        sys.exit(__doc__)
    tasks[sys.argv[1]]()
