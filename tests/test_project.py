"""The project's own promises: the environment file matches pyproject, and CI runs the README's command."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _pyproject_requirements() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return set(project["dependencies"]) | set(project["optional-dependencies"]["test"])


def test_environment_yml_lists_exactly_the_pyproject_requirements():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    deps = env["dependencies"]
    pip = next(d["pip"] for d in deps if isinstance(d, dict) and "pip" in d)
    assert set(pip) - {"-e ."} == _pyproject_requirements()
    python = next(d for d in deps if isinstance(d, str) and d.startswith("python"))
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert python == "python" + requires


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    commands = re.findall(r"^python3 tasks\.py (\w+)$", readme, flags=re.M)
    assert "demo" in commands and "test" in commands
    assert "python3 tasks.py test" in (ROOT / ".ci" / "run").read_text()


def test_console_script_is_sgaudit():
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"sgaudit": "sgaudit.cli:main"}


def test_notebooks_are_committed_without_outputs():
    import json

    for nb in (ROOT / "notebooks").rglob("*.ipynb"):
        cells = json.loads(nb.read_text())["cells"]
        assert not any(c.get("outputs") for c in cells if c["cell_type"] == "code"), nb


def test_the_functions_the_docs_name_are_reached_from_import_sgaudit_alone():
    # README says `sgaudit.report.run(...)` and `sgaudit.notebook.setup()` after `import sgaudit`.
    import subprocess
    import sys

    docs = [ROOT / "README.md", *(ROOT / "docs").glob("*.md"), *(ROOT / "notebooks").glob("*.ipynb")]
    named = sorted({m for d in docs for m in re.findall(r"\bsgaudit\.[a-z_]+\.[a-z_]+", d.read_text())})
    assert "sgaudit.report.run" in named and "sgaudit.notebook.setup" in named
    script = ("import sys, sgaudit\n"
              "heavy = [m for m in ('plotly', 'papermill', 'boto3', 'ipywidgets') if m in sys.modules]\n"
              "assert not heavy, heavy\n"  # the analysis alone does not pay for the reports
              + "".join(f"assert callable({name}), {name!r}\n" for name in named))
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
