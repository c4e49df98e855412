"""Widgets for a live kernel: pick a group, filter its rules, see their traffic, drill down to the peers.

These need a running kernel (the callbacks are Python); an offline report uses the figures' dropdowns
instead. Text from AWS reaches the page as text: tables are rendered by ``DataFrame.to_html(escape=True)``
before going into ``HTML`` widgets (which set ``innerHTML``), while dropdown labels are left raw because
ipywidgets draws them with ``textContent`` (escaping them would show ``&lt;``).
"""

from __future__ import annotations

import html
import json

import ipywidgets as widgets
import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio
from IPython import get_ipython

from .figures import empty_figure, group_labels, rule_summary, rule_timeline, rules_in_order
from .notebook import FIGURE_CONFIG
from .tables import readable, require_columns
from .usage import STATUSES

RULE_COLUMNS = ["group_id", "group_name", "rule_id", "direction", "protocol", "from_port", "to_port", "peer",
                "status", "evidence", "connections", "exclusive", "peers", "ports", "last_seen", "description",
                "vpc_id"]
PEER_COLUMNS = ["rule_id", "group_id", "peer", "port", "connections", "evidence", "bytes", "packets", "first_seen",
                "last_seen"]
#: What the rules table shows, in order; ``rule`` is `rule_summary`.
SHOWN_RULE_COLUMNS = ["rule_id", "rule", "description", "status", "evidence", "connections", "exclusive", "peers",
                      "ports", "last_seen"]
#: At most this many peer rows under a rule: the drill-down is for reading, the CSV has them all.
MAX_PEER_ROWS = 200
ALL = ""


def html_table(df: pd.DataFrame, note: str = "") -> str:
    """`df` as an HTML table with every cell escaped, preceded by an escaped note.

    Parameters
    ----------
    df : pandas.DataFrame
    note : str
        A sentence shown above the table (row counts, truncation).

    Returns
    -------
    str
        HTML safe to put in an ``ipywidgets.HTML`` value.
    """
    table = readable(df).to_html(escape=True, index=False, border=0, na_rep="") if len(df.columns) else ""
    return f"<p>{html.escape(note)}</p>{table}" if note else table


def figure_bundle(fig: go.Figure) -> dict:
    """The figure as plotly's MIME type, which JupyterLab draws with the plotly extension.

    Not the ``notebook`` renderer's HTML: that one embeds plotly.js (about 5 MB) the first time, which
    would go into the widget's state, and stalls a headless run (nbclient, papermill) until its timeout.
    """
    payload = {**json.loads(pio.to_json(fig, validate=False)), "config": FIGURE_CONFIG}  # no cloud button
    return {"application/vnd.plotly.v1+json": payload, "text/plain": f"<figure: {len(fig.data)} traces>"}


class RuleExplorer(widgets.VBox):
    """The rules of one security group at a time: filters, a table, a chart, and the peers behind a rule.

    Attributes
    ----------
    vpc, group, direction, status, rule : ipywidgets selection widgets
        Change their ``value`` (by hand or in code) to change what is shown.
    rules_table, peers_table : ipywidgets.HTML
        The escaped HTML tables of the group's rules and of the selected rule's peers and ports.
    chart : ipywidgets.Output
        Where the figure is displayed in a kernel.
    figure : plotly.graph_objects.Figure
        The figure last drawn (connections per rule over time for the group).
    """

    def __init__(self, rules: pd.DataFrame, timeline, peers: pd.DataFrame) -> None:
        require_columns(rules, RULE_COLUMNS, "the rules frame")
        require_columns(peers, PEER_COLUMNS, "the peers frame")
        self._rules, self._timeline, self._peers = rules, timeline, peers
        self._labels = group_labels(rules, timeline.labels)
        self._quiet = False
        vpcs = sorted(rules["vpc_id"].dropna().unique())
        self.vpc = widgets.Dropdown(description="VPC", options=[("all VPCs", ALL)] + [(v, v) for v in vpcs])
        self.group = widgets.Dropdown(description="group", layout={"width": "480px"})
        self.direction = widgets.Dropdown(description="direction", options=[("both", ALL), ("ingress", "ingress"),
                                                                             ("egress", "egress")])
        self.status = widgets.SelectMultiple(description="status", options=STATUSES, value=STATUSES, rows=5)
        self.rule = widgets.Dropdown(description="rule", layout={"width": "640px"})
        self.summary, self.rules_table, self.peers_table = widgets.HTML(), widgets.HTML(), widgets.HTML()
        self.chart = widgets.Output()
        self.figure = None
        super().__init__(children=[
            widgets.HBox([self.vpc, self.group]), widgets.HBox([self.direction, self.status]), self.summary,
            self.rules_table, self.chart, self.rule, self.peers_table,
        ])
        self.vpc.observe(lambda _: self._show_groups(), "value")
        for control in (self.group, self.direction, self.status):
            control.observe(lambda _: self._show_group(), "value")
        self.rule.observe(lambda _: self._show_peers(), "value")
        self._show_groups()

    def _set(self, control: widgets.Dropdown, options: list, keep) -> None:
        """Replace a dropdown's options without firing its callbacks; keep the value if it is still offered."""
        values = [value for _, value in options]
        self._quiet = True
        try:
            control.options = options
            control.value = keep if keep in values else (values[0] if values else None)
        finally:
            self._quiet = False

    def _show_groups(self) -> None:
        rules = self._rules if self.vpc.value == ALL else self._rules[self._rules["vpc_id"] == self.vpc.value]
        groups = sorted(rules["group_id"].unique(), key=lambda g: self._labels[g])
        self._set(self.group, [(self._labels[g], g) for g in groups], self.group.value)
        self._show_group()

    def _selected_rules(self) -> pd.DataFrame:
        """The rules of the chosen group that pass the direction and status filters."""
        rules = self._rules[self._rules["group_id"] == self.group.value]
        if self.direction.value != ALL:
            rules = rules[rules["direction"] == self.direction.value]
        return rules_in_order(rules[rules["status"].isin(self.status.value)])

    def _show_group(self) -> None:
        if self._quiet:
            return
        gid = self.group.value
        rules = self._selected_rules()
        total = int((self._rules["group_id"] == gid).sum())
        label = self._labels.get(gid, "no group in this VPC")
        shown = rules.assign(rule=[rule_summary(r) for r in rules.itertuples(index=False)])[SHOWN_RULE_COLUMNS]
        self.rules_table.value = html_table(shown, f"{label}: {len(rules)} of {total} rules pass the filters")
        self._draw(rules, gid)
        options = [(f"{r.rule_id}  {rule_summary(r)}", r.rule_id) for r in rules.itertuples(index=False)]
        self._set(self.rule, options, self.rule.value)
        self._show_peers()

    def _draw(self, rules: pd.DataFrame, gid: str | None) -> None:
        if rules.empty:
            self.figure = empty_figure("Connections per rule", "No rule of this group passes the filters.")
        else:
            self.figure = rule_timeline(self._timeline, rules, gid)
        # Without IPython there is no front end to draw in; `figure` still holds what would be shown.
        # The figure is set as the Output widget's state from the kernel, never displayed into it with
        # `with self.chart:`: output routed into an Output widget makes a headless client (nbclient, so
        # papermill and `sgaudit report`) send the widget's state back on the shell channel while it waits
        # there for the cell's reply, which can hang the run for good (jupyter/nbclient#312; seen here
        # with nine reports at once). JupyterLab draws the same state.
        if get_ipython() is not None:
            self.chart.outputs = ({"output_type": "display_data", "data": figure_bundle(self.figure),
                                   "metadata": {}},)

    def _show_peers(self) -> None:
        if self._quiet:
            return
        rid = self.rule.value
        if rid is None:
            self.peers_table.value = html_table(pd.DataFrame(), "No rule selected.")
            return
        rows = self._peers[self._peers["rule_id"] == rid]
        rows = rows.sort_values(["connections", "bytes"], ascending=False, kind="stable")
        kept = rows.head(MAX_PEER_ROWS)[PEER_COLUMNS[2:]]
        note = (f"{rid}: {len(rows)} peer and port pair(s)" if len(kept) == len(rows) else
                f"{rid}: showing {len(kept)} of {len(rows):,} peer and port pairs (most connections first)")
        if rows.empty:
            note = f"{rid}: no connection matched this rule in the window"
        self.peers_table.value = html_table(kept, note)


def rule_explorer(rules: pd.DataFrame, timeline, peers: pd.DataFrame) -> RuleExplorer:
    """An explorer of rules per security group, for a live kernel.

    Parameters
    ----------
    rules : pandas.DataFrame
        The rules frame (SPEC usage table plus ``description`` and ``vpc_id``).
    timeline : Timeline
        For the chart of connections per rule over time.
    peers : pandas.DataFrame
        The drill-down frame: one row per rule, peer address and port.

    Returns
    -------
    RuleExplorer
        An ``ipywidgets.VBox``; the first group (by label) is selected.
    """
    return RuleExplorer(rules, timeline, peers)
