"""The shipped notebooks: thin, parameterised, committed clean, and each one runs under papermill.

Every notebook is executed on sample_logs/ with overridden parameters (never ``--allow-errors``): a
failing cell fails the test. The executed notebooks are checked for what a reader must see.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import nbformat
import papermill
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
SAMPLE = ROOT / "sample_logs"
NAMES = ["audit_report", "rule_usage", "port_heatmap", "investigate", "findings"]
PLOTLY = "application/vnd.plotly.v1+json"

COMMON = {
    "flow_logs": [str(SAMPLE / "flow-logs"), str(SAMPLE / "cloudwatch" / "app-eni.log")],
    "inventory": str(SAMPLE / "inventory"),
}
# Overrides that change what each notebook shows, so that a parameter ignored by the notebook would show.
OVERRIDES = {
    "audit_report": {"time_bucket": "15min", "top": 5},
    "rule_usage": {"group_ids": ["sg-0f92669b1becefdac"], "status": ["used", "attempted"], "direction": "ingress"},
    "port_heatmap": {"start": "2025-02-06T12:00:00Z", "end": "2025-02-06T14:00:00Z", "time_bucket": "10min",
                     "top_ports": 5},
    "investigate": {"interface_id": "", "peer": "203.0.113.0/24", "limit": 50},
    "findings": {"group_ids": ["sg-0f92669b1becefdac"], "rule_budget": 3, "keep_attempted": True},
}


def load(name: str) -> nbformat.NotebookNode:
    return nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)


def test_every_shipped_notebook_is_tested():
    assert sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb")) == sorted(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_notebook_is_thin_and_clean(name):
    nb = load(name)
    code = [c for c in nb.cells if c.cell_type == "code"]
    tagged = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1 and code[0] is tagged[0], "one parameters cell, the first code cell"
    assert all(not c.outputs and c.execution_count is None for c in code), "committed without outputs"
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")
    # Thin: after the parameters, every cell is one statement (the setup cell imports, then one call), which
    # may be wrapped over lines to stay within ruff's line length.
    for c in code[2:]:
        assert len(ast.parse(c.source).body) == 1, f"{name}: cell does more than one call:\n{c.source}"


@pytest.mark.parametrize("name", NAMES)
def test_every_parameter_is_documented_for_help_notebook(name):
    params = papermill.inspect_notebook(str(NOTEBOOKS / f"{name}.ipynb"))
    assert {"flow_logs", "inventory", "start", "end", "log_format"} <= set(params)
    for p in params.values():
        assert p["help"], f"{name}: parameter {p['name']} has no trailing comment"
        assert p["inferred_type_name"] != "None", f"{name}: parameter {p['name']} has no type"
    assert set(OVERRIDES[name]) <= set(params)


@pytest.fixture(scope="module", params=NAMES)
def executed(request, tmp_path_factory):
    name = request.param
    out = tmp_path_factory.mktemp(name) / f"{name}.ipynb"
    papermill.execute_notebook(str(NOTEBOOKS / f"{name}.ipynb"), str(out), cwd=str(NOTEBOOKS),
                               parameters={**COMMON, **OVERRIDES[name]}, progress_bar=False, kernel_name="python3")
    return name, nbformat.read(out, as_version=4)


def outputs(nb: nbformat.NotebookNode) -> list[dict]:
    return [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]


def test_notebook_runs_under_papermill_with_overrides(executed):
    name, nb = executed
    assert not [o for o in outputs(nb) if o.output_type == "error"]
    injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1 and all(k in injected[0].source for k in OVERRIDES[name])
    text = json.dumps([o.get("data", {}) for o in outputs(nb)])
    if name == "investigate":
        assert "203.0.113." in text and "sgr-" in text
        assert "eni-07a93e423b3ff6908" in text  # the bastion, where those peers connect
    elif name != "findings":
        assert PLOTLY in text
    if name == "rule_usage":
        assert "sg-0f92669b1becefdac" in text and "sg-0a5c66cbda00f555b" not in text  # the group filter held
    # DataTables (0.7 MB, embedded base64) goes into the notebooks that show tables, and only there.
    assert ("function injectModule(base64JS)" in text) == (name != "port_heatmap")
    if name == "port_heatmap":
        figures = [o["data"][PLOTLY] for o in outputs(nb) if PLOTLY in o.get("data", {})]
        assert len(figures) == 4
        xs = {x for f in figures for t in f["data"] for x in (t.get("x") or [])}
        assert xs and min(xs) >= "2025-02-06T12:00" and max(xs) < "2025-02-06T14:00"
    if name == "findings":
        assert "sgr-proposed-" in text and "authorize-security-group-" in text
        assert "would cut (empty: none) \\u2014 0 rows" in text  # the proof held
        assert "sg-0a5c66cbda00f555b" not in text.split("Findings, most severe first")[1].split("Per rule")[0]
        # The commands for review change the selected group alone.
        commands = [o["data"] for o in outputs(nb) if "authorize-security-group" in json.dumps(o.get("data", {}))]
        groups = set(re.findall(r"--group-id (sg-[0-9a-f]+)", json.dumps(commands)))
        assert groups == {"sg-0f92669b1becefdac"}, groups
    if name == "audit_report":
        for section in ("Window and coverage", "World-open rules", "Rejected scans", "Data quality"):
            assert any(section in c.source for c in nb.cells if c.cell_type == "markdown")
