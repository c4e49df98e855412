"""The live-kernel rule explorer, driven by setting widget values in code."""

from __future__ import annotations

import json
from pathlib import Path

import ipywidgets as widgets
import pandas as pd
import pytest
from sgaudit.errors import SgauditError
from sgaudit.explorers import MAX_PEER_ROWS, RuleExplorer, figure_bundle, html_table, rule_explorer
from sgaudit.figures import rule_timeline
from test_figures import EVIL, EVIL_TEXT, T0, rules_frame, timeline


def peers_frame(extra: int = 0) -> pd.DataFrame:
    rows = [("sgr-1", "203.0.113.9", 443, 3, "established", 600), ("sgr-1", EVIL, 443, 5, "established", 10),
            ("sgr-3", "10.0.0.2", 53, 3, "inferred", 300)]
    rows += [("sgr-3", f"10.1.{i // 250}.{i % 250}", 443, 1, "inferred", 1) for i in range(extra)]
    df = pd.DataFrame(rows, columns=["rule_id", "peer", "port", "connections", "evidence", "bytes"])
    df.insert(1, "group_id", "sg-0a1")
    df["packets"] = df["connections"]
    df["first_seen"] = pd.to_datetime([T0] * len(df), utc=True)
    df["last_seen"] = pd.to_datetime([T0 + pd.Timedelta("2h")] * len(df), utc=True)
    df["port"] = df["port"].astype("Int64")
    return df


@pytest.fixture
def explorer() -> RuleExplorer:
    return rule_explorer(rules_frame(), timeline(), peers_frame())


def test_explorer_is_a_vbox_showing_the_first_group(explorer):
    assert isinstance(explorer, widgets.VBox)
    assert explorer.group.value == "sg-0a1"
    assert "sg-0a1 (web): 3 of 3 rules pass the filters" in explorer.rules_table.value
    assert [t.name.split()[0] for t in explorer.figure.data] == ["sgr-1", "sgr-3"]
    # Ingress first; the first rule is chosen and its peers are listed, busiest first.
    assert [v for _, v in explorer.rule.options] == ["sgr-1", "sgr-2", "sgr-3"]
    assert explorer.rule.value == "sgr-1"
    assert explorer.peers_table.value.index(EVIL_TEXT) < explorer.peers_table.value.index("203.0.113.9")


def test_dropdown_labels_stay_raw_because_ipywidgets_draws_them_as_text(explorer):
    assert (f"sg-0b2 ({EVIL})", "sg-0b2") in explorer.group.options


def test_tables_escape_text_from_aws(explorer):
    assert EVIL_TEXT in explorer.rules_table.value and "<img" not in explorer.rules_table.value
    assert EVIL_TEXT in explorer.peers_table.value and "<img" not in explorer.peers_table.value
    explorer.group.value = "sg-0b2"
    assert f"sg-0b2 ({EVIL_TEXT}): 1 of 1 rules" in explorer.rules_table.value
    assert "<img" not in explorer.rules_table.value


def test_choosing_a_group_changes_table_chart_rules_and_peers(explorer):
    explorer.group.value = "sg-0b2"
    assert "sgr-4" in explorer.rules_table.value and "sgr-1" not in explorer.rules_table.value
    assert len(explorer.figure.data) == 0
    assert explorer.figure.layout.annotations[0].text == "No matched connections in the window"
    assert EVIL_TEXT in explorer.figure.layout.title.text
    assert explorer.rule.value == "sgr-4"
    assert "sgr-4: no connection matched this rule in the window" in explorer.peers_table.value


def test_status_filter(explorer):
    explorer.status.value = ("unused",)
    assert "1 of 3 rules pass the filters" in explorer.rules_table.value
    assert [v for _, v in explorer.rule.options] == ["sgr-2"]
    assert len(explorer.figure.data) == 0
    explorer.status.value = ()
    assert "0 of 3 rules" in explorer.rules_table.value
    assert explorer.rule.value is None and "No rule selected." in explorer.peers_table.value
    assert "No rule of this group passes the filters." in explorer.figure.layout.annotations[0].text


def test_direction_filter(explorer):
    explorer.direction.value = "egress"
    assert [v for _, v in explorer.rule.options] == ["sgr-3"]
    assert [t.name.split()[0] for t in explorer.figure.data] == ["sgr-3"]
    assert "10.0.0.2" in explorer.peers_table.value


def test_vpc_filter_limits_the_groups(explorer):
    explorer.vpc.value = "vpc-2"
    assert [v for _, v in explorer.group.options] == ["sg-0b2"]
    assert explorer.group.value == "sg-0b2"
    assert "sgr-4" in explorer.rules_table.value
    explorer.vpc.value = "vpc-1"
    assert [v for _, v in explorer.group.options] == ["sg-0a1", "sg-0c3"]


def test_choosing_a_rule_drills_down_to_its_peers(explorer):
    explorer.rule.value = "sgr-3"
    table = explorer.peers_table.value
    assert "sgr-3: 1 peer and port pair(s)" in table
    assert "10.0.0.2" in table and "203.0.113.9" not in table
    assert "2025-02-06T02:00:00Z" in table


def test_long_drill_downs_say_how_many_rows_are_shown():
    explorer = rule_explorer(rules_frame(), timeline(), peers_frame(extra=300))
    explorer.rule.value = "sgr-3"
    assert f"showing {MAX_PEER_ROWS} of 301 peer and port pairs" in explorer.peers_table.value


def test_the_explorer_prints_nothing_outside_a_kernel(capsys):
    explorer = rule_explorer(rules_frame(), timeline(), peers_frame())
    explorer.group.value = "sg-0c3"
    assert capsys.readouterr() == ("", "")
    assert explorer.chart.outputs == ()


def test_missing_columns_are_named():
    with pytest.raises(SgauditError, match="peers frame lacks the column\\(s\\) evidence"):
        rule_explorer(rules_frame(), timeline(), peers_frame().drop(columns=["evidence"]))


def test_html_table_escapes_cells_and_note():
    page = html_table(pd.DataFrame({"description": [EVIL]}), note=f"about {EVIL}")
    assert page.count(EVIL_TEXT) == 2 and "<img" not in page


def test_figure_bundle_is_plotly_json_with_escaped_text():
    bundle = figure_bundle(rule_timeline(timeline(), rules_frame()))
    assert set(bundle) == {"application/vnd.plotly.v1+json", "text/plain"}
    text = json.dumps(bundle)
    assert EVIL_TEXT in text and "<img" not in text
    # No "Share chart..." button (it would send the data to Plotly's cloud) and no plotly.com logo.
    assert bundle["application/vnd.plotly.v1+json"]["config"] == {"showSendToCloud": False, "displaylogo": False}


def test_in_a_kernel_the_chart_shows_the_selected_group(tmp_path, monkeypatch):
    """Run in a real kernel: the Output widget holds the figure and follows the group dropdown.

    The kernel sets the widget's state itself. Output displayed *into* an Output widget makes nbclient
    (papermill, `sgaudit report`) send the state back on the shell channel while it waits there for the
    cell's reply, and that can hang a headless run forever (jupyter/nbclient#312).
    """
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    from nbclient.output_widget import OutputWidget

    synced_back = []
    monkeypatch.setattr(OutputWidget, "sync_state", lambda self: synced_back.append(self.comm_id))
    source = [
        f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r})",
        "from test_explorers import peers_frame\nfrom test_figures import rules_frame, timeline\n"
        "from sgaudit.explorers import rule_explorer\ne = rule_explorer(rules_frame(), timeline(), peers_frame())",
        "def titles():\n    return [o['data']['application/vnd.plotly.v1+json']['layout']['title']['text']"
        " for o in e.chart.outputs]\nprint(titles())\ne.group.value = 'sg-0b2'",
        "print(titles())",
    ]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in source])
    nbclient.NotebookClient(nb, timeout=60, kernel_name="python3", resources={"metadata": {"path": tmp_path}}).execute()
    printed = ["".join(o.get("text", "") for o in cell.outputs).strip() for cell in nb.cells[2:]]
    assert printed == ["['Connections per rule, per hour — sg-0a1 (web)']",
                       f"['Connections per rule, per hour — sg-0b2 ({EVIL_TEXT})']"]
    assert synced_back == [], "output was routed into the Output widget: a headless run can hang on it"
