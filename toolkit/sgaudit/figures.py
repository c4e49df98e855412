"""Figures an auditor reads offline: rule status per group, connections per rule over time, ports over time.

Every builder returns a ``plotly.graph_objects.Figure`` and never shows it. The interactivity lives in
the figure itself (``updatemenus`` dropdowns and buttons, hover), so it works in an HTML file opened with
no kernel and no network.

Text from AWS (group names, descriptions, ids, peers) goes through `as_text` before it reaches a figure.
plotly.js draws every string (hover, tick labels, legend, titles, button labels) through its own
pseudo-HTML parser, which turns ``<b>``, ``<a href=…>``, ``<span style=…>`` and a few others into
formatting or links and decodes ``&lt;``-style entities into plain characters. Escaping ``<``, ``>`` and
``&`` therefore shows the original characters and never a tag. ``%`` is escaped too because plotly.js
fills ``%{…}`` placeholders in trace names and labels from the trace's ``meta``.
"""

from __future__ import annotations

import difflib
import html
from collections.abc import Sequence

import pandas as pd
import plotly.graph_objects as go

from .errors import SgauditError
from .output import iso_time
from .summaries import PEERS_UNKNOWN, quiet_stretches, shown_statuses
from .tables import protocol_name, require_columns
from .usage import STATUSES

#: The statuses of SPEC's usage table, in the order they stack and are listed.
#: Fixed colours, so that every figure of a report reads the same way.
STATUS_COLOURS = {
    "used": "#2ca02c", "attempted": "#ff7f0e", "unused": "#d62728", "unobserved": "#8c8c8c",
    "unattached": "#d9d9d9",
}
#: Directions, and the rules of a group over time, take colours the statuses do not use: red means unused
#: and green used everywhere in a report, so a used rule drawn red (plotly's cycle) read as the opposite.
DIRECTION_COLOURS = {"inbound": "#1f77b4", "outbound": "#9467bd"}
RULE_COLOURS = ("#1f77b4", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#393b79", "#637939",
                "#7b4173", "#3182bd")
#: Top talkers are peers, not rules: one colour that is no status.
PEER_COLOUR = "#4c78a8"
TEMPLATE = "plotly_white"
#: Stacked bars list their legend in stacking order (plotly reverses it for stacks by default).
_LEGEND_ON_TOP = {"orientation": "h", "y": 1.02, "yanchor": "bottom", "x": 0, "traceorder": "normal"}
#: Longest label on an axis, in a legend or on a button; hover always carries the whole text.
SHORT = 60
#: The heatmap layers the buttons switch between: column, what the colour bar says, colour scale.
LAYERS = (
    ("connections", "connections", [[0, "#f7fbff"], [1, "#08306b"]]),
    ("bytes", "bytes", [[0, "#f7fcf5"], [1, "#00441b"]]),
    ("rejected", "rejected attempts", [[0, "#fff5f0"], [1, "#67000d"]]),
)
REJECT_CAUSES = "REJECT may come from a security group, a network ACL or a packet arriving after the connection closed"

RULE_COLUMNS = ("group_id", "group_name", "rule_id", "direction", "protocol", "from_port", "to_port", "peer",
                "status", "description")
PORT_COLUMNS = ("scope", "scope_id", "direction", "protocol", "port", "time", "connections", "bytes", "rejected")


def as_text(value: object) -> str:
    """`value` as plotly text that shows literally: no tag, no entity, no ``%{…}`` placeholder survives.

    Parameters
    ----------
    value : object
        Any value; missing values become ``""``.

    Returns
    -------
    str
        ``html.escape`` without quotes (plotly.js does not decode ``&quot;``) and ``%`` as ``&#37;``.
    """
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return ""
    return html.escape(str(value), quote=False).replace("%", "&#37;")


def _short(text: str, limit: int = SHORT) -> str:
    """Cut raw text before escaping it, so that an entity is never cut in half."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def group_label(group_id: str, group_name: object = "") -> str:
    """``"sg-0a1 (web)"``, or the id alone when the group has no other name (raw text)."""
    name = "" if group_name is None or pd.isna(group_name) else str(group_name)
    return f"{group_id} ({name})" if name and name != group_id else str(group_id)


def port_label(protocol: object, port: object) -> str:
    """``"tcp/22"``, or the protocol alone for traffic without ports (``"icmp"``); raw text."""
    name = protocol_name(protocol)
    if port is None or pd.isna(port):
        return name
    return f"{name}/{int(port)}"


def _port_labels(frame: pd.DataFrame) -> list[str]:
    """Escaped `port_label` of every row of a frame with ``protocol`` and ``port`` columns."""
    return [as_text(port_label(p, n)) for p, n in zip(frame["protocol"], frame["port"], strict=True)]


def _rule_ports(protocol: str, from_port: int, to_port: int) -> str:
    if protocol in ("icmp", "icmpv6"):
        # For ICMP, AWS keeps the type in FromPort and the code in ToPort; -1 means any.
        if from_port == -1:
            return ""
        return f"type {from_port}" + (f" code {to_port}" if to_port != -1 else "")
    if protocol == "all" or from_port == -1 or (from_port, to_port) == (0, 65535):
        return "all ports" if protocol in ("tcp", "udp") else ""
    return str(from_port) if from_port == to_port else f"{from_port}-{to_port}"


def rule_summary(rule) -> str:
    """``"ingress tcp 22 from 10.0.0.0/8"``: what a rule allows, in one line (raw text).

    Parameters
    ----------
    rule : namedtuple or pandas.Series
        A row of the rules frame (``direction``, ``protocol``, ``from_port``, ``to_port``, ``peer``).
    """
    proto = protocol_name(rule.protocol)
    ports = _rule_ports(proto, int(rule.from_port), int(rule.to_port))
    towards = "from" if rule.direction == "ingress" else "to"
    return " ".join(part for part in (rule.direction, proto, ports, towards, str(rule.peer)) if part)


def rules_in_order(rules: pd.DataFrame) -> pd.DataFrame:
    """Ingress rules before egress rules (the order the console lists them), then by rule id."""
    def key(column: pd.Series) -> pd.Series:
        return column.map({"ingress": 0, "egress": 1}) if column.name == "direction" else column

    return rules.sort_values(["direction", "rule_id"], key=key, kind="stable")


def _bucket_words(bucket: pd.Timedelta) -> str:
    """``"hour"``, ``"6 hours"``, ``"5 minutes"``, ``"day"``: a bucket length in words."""
    seconds = int(pd.Timedelta(bucket).total_seconds())
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
        if seconds % size == 0:
            count = seconds // size
            return unit if count == 1 else f"{count} {unit}s"
    return str(bucket)


def _naive_utc(times) -> pd.DatetimeIndex:
    """UTC wall-clock times without the offset: plotly.js would not apply one, so none is left to ignore."""
    index = pd.DatetimeIndex(times)
    return index.tz_convert("UTC").tz_localize(None) if index.tz is not None else index


def _layout(fig: go.Figure, title: str, height: int, subtitle: str = "") -> go.Figure:
    """Template, title and size; room above the plot for the title and, when there are any, the menus."""
    menus = bool(fig.layout.updatemenus)
    fig.update_layout(
        template=TEMPLATE, height=height + (35 if menus else 0), hoverlabel={"align": "left"},
        title={"text": title, "subtitle": {"text": subtitle}, "x": 0.01, "y": 1, "yref": "container",
               "yanchor": "top", "pad": {"t": 14}},
        margin={"l": 20, "r": 20, "t": 125 if menus else 90, "b": 40},
    )
    return fig


def _whole_numbers(largest: int) -> dict:
    """Axis settings that keep ticks on whole numbers for small counts (no "0.5 rules")."""
    return {"dtick": 1, "tick0": 0} if largest <= 10 else {"tickformat": ",d"}


def _message(text: str, y: float = 0.5) -> dict:
    """A centred note in the plot area: the empty state of a figure or of one dropdown choice."""
    return {"text": text, "xref": "paper", "yref": "paper", "x": 0.5, "y": y, "showarrow": False,
            "font": {"size": 15, "color": "#555"}}


def empty_figure(title: str, message: str) -> go.Figure:
    """A figure that says there is nothing to draw, rather than an error or a blank canvas.

    Parameters
    ----------
    title, message : str
        Plotly text: escape anything from AWS with `as_text` first.
    """
    fig = go.Figure()
    fig.update_layout(annotations=[_message(message)], xaxis={"visible": False}, yaxis={"visible": False})
    return _layout(fig, title, 300)


def _dropdown(labels: Sequence[str], updates: Sequence[list], method: str = "update", y: float = 1.02) -> dict:
    """An ``updatemenus`` dropdown above the plot, one button per (escaped) label."""
    buttons = [{"label": label, "method": method, "args": args} for label, args in zip(labels, updates, strict=True)]
    return {"type": "dropdown", "buttons": buttons, "active": 0, "x": 0, "xanchor": "left", "y": y,
            "yanchor": "bottom", "showactive": True}


def _visibility(spans: Sequence[tuple[int, int]], total: int, chosen: int) -> list[bool]:
    """The ``visible`` array that shows the traces of span `chosen` only."""
    start, count = spans[chosen]
    return [start <= i < start + count for i in range(total)]


# --- rule status per group ---------------------------------------------------------------------------


def _status_marker(status: str) -> dict:
    """A status's fixed colour; a rule of unknown use is hatched in unobserved's grey: no evidence either way."""
    if status == PEERS_UNKNOWN:
        return {"color": "#ffffff", "line": {"color": STATUS_COLOURS["unobserved"], "width": 1},
                "pattern": {"shape": "/", "fgcolor": STATUS_COLOURS["unobserved"], "solidity": 0.3}}
    return {"color": STATUS_COLOURS[status]}


def status_by_group(rules: pd.DataFrame) -> go.Figure:
    """One horizontal bar per security group, split into its rules' counts by status.

    Parameters
    ----------
    rules : pandas.DataFrame
        The rules frame (SPEC usage table plus ``description`` and ``vpc_id``).

    Returns
    -------
    plotly.graph_objects.Figure
        Segments in the order of `STATUSES` with fixed colours; groups sorted by label, top to bottom.
        Given ``peers_known`` (a `summaries.rules` frame), unused rules whose referenced group or prefix
        list is not in the snapshot are a hatched segment of their own, `summaries.PEERS_UNKNOWN`.

    Raises
    ------
    SgauditError
        When a column is missing or a status is not one of SPEC's.
    """
    require_columns(rules, ["group_id", "group_name", "status"], "the rules frame")
    title = "Rules by status, per security group"
    if rules.empty:
        return empty_figure(title, "No security group rules in the snapshot.")
    unknown = sorted(set(rules["status"]) - set(STATUSES))
    if unknown:
        raise SgauditError(f"the rules frame has status(es) {', '.join(map(str, unknown))}; "
                           f"expected {', '.join(STATUSES)}")
    names = rules.drop_duplicates("group_id").set_index("group_id")["group_name"]
    labels = {g: group_label(g, names[g]) for g in names.index}
    shown, order = shown_statuses(rules)
    counts = pd.crosstab(rules["group_id"], shown.rename("status")).reindex(columns=order, fill_value=0)
    counts = counts.loc[sorted(counts.index, key=lambda g: labels[g])]
    axis = [as_text(_short(labels[g])) for g in counts.index]
    full = [as_text(labels[g]) for g in counts.index]
    totals = counts.sum(axis=1).tolist()
    fig = go.Figure()
    for status in order:
        fig.add_trace(go.Bar(
            orientation="h", name=status, y=axis, x=counts[status].tolist(), marker=_status_marker(status),
            customdata=[[f, t] for f, t in zip(full, totals, strict=True)],
            hovertemplate=f"%{{customdata[0]}}<br>{status}: %{{x}} of %{{customdata[1]}} rules<extra></extra>",
        ))
    fig.update_layout(barmode="stack", yaxis={"autorange": "reversed", "type": "category"},
                      xaxis={"title": {"text": "rules"}, **_whole_numbers(int(counts.sum(axis=1).max()))},
                      legend=_LEGEND_ON_TOP)
    return _layout(fig, title, max(300, 150 + 26 * len(axis)))


# --- connections per rule over time ----------------------------------------------------------------


def group_labels(rules: pd.DataFrame, labels: dict) -> dict[str, str]:
    """Group id → raw label for every group of `rules`; `labels` (the timeline's) win over ``id (name)``."""
    names = rules.drop_duplicates("group_id").set_index("group_id")["group_name"]
    return {g: str(labels.get(g) or group_label(g, names[g])) for g in names.index}


def _check_group(group_id: str, known: Sequence[str]) -> None:
    if group_id not in known:
        close = difflib.get_close_matches(group_id, list(known), n=1)
        hint = f"; closest match is {close[0]}" if close else ""
        raise SgauditError(f"group {group_id} has no rules in the rules frame{hint}")


def _rule_series(timeline, rules: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Connections and bytes per bucket (rows, every bucket of the window) and rule (columns)."""
    times = pd.DatetimeIndex(timeline.times)
    traffic = timeline.rules[timeline.rules["rule_id"].isin(set(rules["rule_id"]))]
    tables = []
    for value in ("connections", "bytes"):
        wide = traffic.pivot_table(index="time", columns="rule_id", values=value, aggfunc="sum", fill_value=0)
        tables.append(wide.reindex(times, fill_value=0).fillna(0).astype("int64"))
    return tables[0], tables[1]


def _rule_trace(rule, x, connections: pd.Series, bytes_: pd.Series, colour: str) -> go.Scatter:
    """One rule's line; a rule only attempted is dashed, as its "connections" were attempts."""
    summary = rule_summary(rule)
    description = "" if pd.isna(rule.description) else str(rule.description)
    meta = [as_text(f"{rule.rule_id}: {summary}"), as_text(description or "(no description)"), as_text(rule.status)]
    return go.Scatter(
        x=x, y=connections.tolist(), customdata=bytes_.tolist(), mode="lines+markers", line_shape="hv",
        marker={"size": 4}, line={"color": colour, "dash": "dash" if rule.status == "attempted" else "solid"},
        name=as_text(_short(f"{rule.rule_id} {summary}")), meta=meta,
        hovertemplate="<b>%{meta[0]}</b><br>%{meta[1]}<br>status: %{meta[2]}<br>"
                      "%{x|%Y-%m-%d %H:%M} UTC: %{y:,} conversations active in this bucket (a long one counts "
                      "in every bucket it spans), %{customdata:,} bytes<extra></extra>",
    )


def _count(number: int, noun: str) -> str:
    """``"1 port"``, ``"3 ports"``."""
    return f"{number:,} {noun}{'' if number == 1 else 's'}"


def _add_rule_traces(fig: go.Figure, rules: pd.DataFrame, x, connections: pd.DataFrame, bytes_: pd.DataFrame) -> int:
    """Add a trace for each of `rules` that matched connections; return how many were added."""
    busy = [r for r in rules.itertuples(index=False)
            if r.rule_id in connections.columns and connections[r.rule_id].sum() > 0]
    for i, rule in enumerate(busy):
        fig.add_trace(_rule_trace(rule, x, connections[rule.rule_id], bytes_[rule.rule_id],
                                  RULE_COLOURS[i % len(RULE_COLOURS)]))
    return len(busy)


def _timeline_note(drawn: int, total: int) -> str:
    if drawn == 0:
        return f"{_count(total, 'rule')}, none matched a connection in the window"
    quiet = total - drawn
    rest = f"; {_count(quiet, 'rule')} without any not drawn" if quiet else ""
    return f"{drawn:,} of {_count(total, 'rule')} matched connections{rest}"


def rule_timeline(timeline, rules: pd.DataFrame, group_id: str | None = None, max_groups: int = 60) -> go.Figure:
    """Connections per rule and time bucket for a group, or for every group behind a dropdown.

    Parameters
    ----------
    timeline : Timeline
        ``times`` (every bucket start of the window, UTC), ``rules`` (rule_id, group_id, time, connections,
        bytes, packets; a missing row means 0), ``labels`` (id → display label), ``bucket``.
    rules : pandas.DataFrame
        The rules frame; it decides which groups and rules are drawn, so a filtered frame draws less.
    group_id : str, optional
        Draw this group only (no dropdown). Default: every group of `rules`, the first one shown and a
        dropdown to pick another.
    max_groups : int
        At most this many groups in the dropdown, the busiest (most connections) kept, the subtitle saying
        how many were left out: every entry of a dropdown carries a flag for every trace of the figure, so
        the figure grows as groups × rules (85 MB of dropdown alone at 800 groups).

    Returns
    -------
    plotly.graph_objects.Figure
        One step line per rule that matched connections (x = every bucket of the window, zeros filled);
        rules that matched none are counted in the subtitle, and a group with no traffic says so in the plot.

    Raises
    ------
    SgauditError
        When a column is missing or `group_id` has no rules in `rules`.
    """
    require_columns(rules, RULE_COLUMNS, "the rules frame")
    require_columns(timeline.rules, ["rule_id", "group_id", "time", "connections", "bytes"], "timeline.rules")
    every = f"per {_bucket_words(timeline.bucket)}"
    if rules.empty:
        return empty_figure(f"Connections per rule, {every}", "No security group rules in the snapshot.")
    labels = group_labels(rules, timeline.labels)
    groups = sorted(labels, key=labels.get)
    if group_id is not None:
        _check_group(group_id, groups)
        groups = [group_id]
    connections, bytes_ = _rule_series(timeline, rules)
    left_out = ""
    if len(groups) > max_groups:
        per_rule = connections.sum()
        busy = rules.assign(n=rules["rule_id"].map(per_rule).fillna(0)).groupby("group_id")["n"].sum()
        keep = set(sorted(groups, key=lambda g: (-busy.get(g, 0), labels[g]))[:max_groups])
        left_out = (f" · the busiest {max_groups} of {len(groups):,} groups are in the menu; draw another with "
                    "group_id=")
        groups = [g for g in groups if g in keep]
    x = _naive_utc(timeline.times)
    fig, spans, titles, notes, messages = go.Figure(), [], [], [], []
    for gid in groups:
        mine = rules_in_order(rules[rules["group_id"] == gid])
        drawn = _add_rule_traces(fig, mine, x, connections, bytes_)
        spans.append((len(fig.data) - drawn, drawn))
        titles.append(f"Connections per rule, {every} — {as_text(labels[gid])}")
        notes.append(_timeline_note(drawn, len(mine)) + left_out)
        messages.append([] if drawn else [_message("No matched connections in the window")])
    for i, trace in enumerate(fig.data):
        trace.visible = spans[0][0] <= i < spans[0][0] + spans[0][1]
    # Dates even with no trace to tell plotly so: the range and the quiet bands are times, and on an axis
    # plotly guesses to be linear they draw as NaN paths (a window of NODATA only, or with no record).
    xaxis = {"title": {"text": "UTC"}, "type": "date"}
    if all(t is not None and not pd.isna(t) for t in timeline.window):
        # The whole window, so that quiet stretches at either end show as quiet rather than cut off.
        xaxis["range"] = [t.isoformat() for t in _naive_utc(list(timeline.window))]
    fig.update_layout(annotations=messages[0], xaxis=xaxis, shapes=_quiet_shapes(timeline),
                      yaxis={"title": {"text": "conversations active"}, "rangemode": "tozero",
                             **_whole_numbers(int(connections.to_numpy().max(initial=0)))})
    if len(groups) > 1:
        updates = [[{"visible": _visibility(spans, len(fig.data), i)},
                    {"title.text": titles[i], "title.subtitle.text": notes[i], "annotations": messages[i]}]
                   for i in range(len(groups))]
        fig.update_layout(updatemenus=[_dropdown([as_text(_short(labels[g])) for g in groups], updates)])
    return _layout(fig, titles[0], 520, notes[0])


def _quiet_shapes(timeline, layer: str = "below") -> list[dict]:
    """A grey band over every stretch without any traffic (`summaries.quiet_stretches`), labelled.

    Without it the lines drop to zero there, and the heatmaps' cells are empty, which reads as an hour of
    no use rather than as no data. The band is a shape, so it stays when a dropdown switches groups
    (annotations do not); over a heatmap it lies ``above`` the cells, which would hide it.
    """
    out = []
    for start, end in quiet_stretches(timeline):
        x0, x1 = (t.isoformat() for t in _naive_utc([start, end]))
        out.append({"type": "rect", "xref": "x", "yref": "paper", "x0": x0, "x1": x1, "y0": 0, "y1": 1,
                    "fillcolor": "#8c8c8c", "opacity": 0.18, "line": {"width": 0}, "layer": layer,
                    "label": {"text": "no traffic: logs missing or all idle", "textposition": "top center",
                              "font": {"size": 11, "color": "#444"}}})
    return out


# --- ports over time --------------------------------------------------------------------------------


def _counted_ports(timeline, scope: str, direction: str) -> pd.DataFrame:
    """The ports rows of one scope and direction, labelled, keeping ports that counted anything."""
    ports = timeline.ports
    rows = ports[(ports["scope"] == scope) & (ports["direction"] == direction)].copy()
    rows["label"] = _port_labels(rows)
    rows["time"] = pd.to_datetime(rows["time"], utc=True)
    return rows[(rows["connections"] > 0) | (rows["bytes"] > 0) | (rows["rejected"] > 0)]


def _ranked_ports(rows: pd.DataFrame) -> list[str]:
    """Port labels ordered by connections, then rejected attempts, then label."""
    totals = rows.groupby("label")[["connections", "rejected"]].sum().reset_index()
    totals = totals.sort_values(["connections", "rejected", "label"], ascending=[False, False, True])
    return totals["label"].tolist()


def _layer_matrix(rows: pd.DataFrame, ports: list[str], times: pd.DatetimeIndex, value: str) -> list[list[int]]:
    wide = rows.pivot_table(index="label", columns="time", values=value, aggfunc="sum", fill_value=0)
    wide = wide.reindex(index=ports, columns=times, fill_value=0).fillna(0).astype("int64")
    return wide.values.tolist()


def _heatmap_trace(ports: list[str], x, z: list[list[int]], bucket: pd.Timedelta) -> go.Heatmap:
    _, name, scale = LAYERS[0]
    return go.Heatmap(
        x=x, y=ports, z=z, colorscale=scale, xgap=1, ygap=1, colorbar={"title": {"text": name}},
        # A bucket's cell starts at its start time instead of being centred on it.
        xperiod=int(pd.Timedelta(bucket).total_seconds() * 1000), xperiod0=x[0].isoformat(), xperiodalignment="middle",
        hovertemplate=f"%{{y}}<br>%{{x|%Y-%m-%d %H:%M}} UTC<br>{name}: %{{z:,}}<extra></extra>",
    )


def _layer_buttons(layers: dict[str, list], count: int) -> dict:
    """Buttons that swap every heatmap's ``z`` (and scale, hover, colour-bar title) to another layer.

    They restyle ``z`` instead of toggling visibility, so they stay independent of the dropdown that
    toggles visibility to pick the group or interface.
    """
    buttons = []
    for column, name, scale in LAYERS:
        hover = f"%{{y}}<br>%{{x|%Y-%m-%d %H:%M}} UTC<br>{name}: %{{z:,}}<extra></extra>"
        buttons.append({"label": name, "method": "restyle", "args": [{
            "z": layers[column], "colorscale": [scale] * count, "hovertemplate": [hover] * count,
            "colorbar.title.text": [name] * count}]})
    return {"type": "buttons", "direction": "right", "buttons": buttons, "active": 0, "showactive": True,
            "x": 1, "xanchor": "right", "y": 1.02, "yanchor": "bottom"}


def port_heatmap(timeline, scope: str = "group", direction: str = "inbound", top: int = 25,
                 max_items: int = 60) -> go.Figure:
    """Traffic per port and time bucket for each group (or interface), one direction per figure.

    Parameters
    ----------
    timeline : Timeline
        ``ports`` (scope, scope_id, direction, protocol, port, time, connections, bytes, rejected),
        ``times``, ``labels``, ``bucket``.
    scope : {'group', 'interface'}
        One heatmap per security group or per network interface; a dropdown picks which one is shown,
        busiest (most connections) first.
    direction : {'inbound', 'outbound'}
    top : int
        At most this many ports per group or interface, by connections then rejected attempts; the
        subtitle says when ports were left out (``top 25 of 140 ports``).
    max_items : int
        At most this many groups or interfaces in the dropdown, the busiest; the subtitle says when
        some were left out. Each one carries three layers of ports × buckets into the page.

    Returns
    -------
    plotly.graph_objects.Figure
        Rows are ports (``tcp/22``, ``icmp``), columns every bucket of the window; buttons switch the
        colour among connections, bytes and rejected attempts. No traffic gives a figure that says so.

    Raises
    ------
    SgauditError
        When a column of ``timeline.ports`` is missing or `scope`/`direction` is not one of the above.
    """
    require_columns(timeline.ports, PORT_COLUMNS, "timeline.ports")
    if scope not in ("group", "interface") or direction not in ("inbound", "outbound"):
        raise SgauditError(f"port_heatmap takes scope 'group' or 'interface' and direction 'inbound' or "
                           f"'outbound', not scope={scope!r}, direction={direction!r}")
    title = f"{direction.capitalize()} traffic by port, per {_bucket_words(timeline.bucket)}"
    rows = _counted_ports(timeline, scope, direction)
    if rows.empty or len(timeline.times) == 0:
        # Per group, only conversations a rule of the group let through count (docs/decisions.md): traffic
        # that no rule explains is in the unexplained table, not here.
        what = (f"No {direction} traffic matched by a rule of any group in the window." if scope == "group"
                else f"No {direction} traffic at any interface in the window.")
        return empty_figure(title, what)
    busiest = rows.groupby("scope_id")["connections"].sum().sort_values(ascending=False, kind="stable")
    dropped = f" (busiest {max_items} of {len(busiest):,} {scope}s)" if len(busiest) > max_items else ""
    busiest = busiest.head(max_items)
    times = pd.DatetimeIndex(timeline.times).tz_convert("UTC")
    x = _naive_utc(times)
    fig, subtitles, layers, tallest = go.Figure(), [], {c: [] for c, _, _ in LAYERS}, 1
    for sid in busiest.index:
        mine = rows[rows["scope_id"] == sid]
        ranked = _ranked_ports(mine)
        ports = ranked[:top]
        for column, _, _ in LAYERS:
            layers[column].append(_layer_matrix(mine, ports, times, column))
        fig.add_trace(_heatmap_trace(ports, x, layers["connections"][-1], timeline.bucket))
        cut = _count(len(ports), "port") if len(ranked) == len(ports) else f"top {len(ports)} of {len(ranked):,} ports"
        label = as_text(timeline.labels.get(sid) or sid)
        subtitles.append(f"{scope} {label} — {cut}{dropped}")
        tallest = max(tallest, len(ports))
    count = len(fig.data)
    for i, trace in enumerate(fig.data):
        trace.visible = i == 0
    menus = [_layer_buttons(layers, count)]
    if count > 1:
        spans = [(i, 1) for i in range(count)]
        updates = [[{"visible": _visibility(spans, count, i)}, {"title.subtitle.text": subtitles[i]}]
                   for i in range(count)]
        names = [as_text(_short(str(timeline.labels.get(s) or s))) for s in busiest.index]
        menus.insert(0, _dropdown(names, updates))
    fig.update_layout(updatemenus=menus, yaxis={"autorange": "reversed", "type": "category"},
                      xaxis={"title": {"text": "UTC"}}, shapes=_quiet_shapes(timeline, layer="above"))
    return _layout(fig, title, max(320, 190 + 22 * tallest), subtitles[0])


# --- peers and rejected ports ---------------------------------------------------------------------------


def top_talkers(talkers: pd.DataFrame, n: int = 20) -> go.Figure:
    """The `n` peers with the most accepted connections, as horizontal bars.

    Parameters
    ----------
    talkers : pandas.DataFrame
        peer, connections, interfaces, ports, bytes, packets, last_seen.
    n : int
        How many peers to draw; the title says of how many.

    Returns
    -------
    plotly.graph_objects.Figure
    """
    require_columns(talkers, ["peer", "connections", "interfaces", "ports", "bytes", "packets", "last_seen"],
                    "the talkers frame")
    if talkers.empty:
        return empty_figure("Top peers by accepted connections", "No accepted connections in the window.")
    top = talkers.sort_values(["connections", "bytes"], ascending=False, kind="stable").head(n)
    # The talkers frame may already be cut to its top rows, so "of N" only when this cut more.
    of = f" of {len(talkers):,}" if len(talkers) > len(top) else ""
    title = f"Top {len(top)}{of} peers by accepted connections"
    custom = [[as_text(r.peer), r.interfaces, as_text(_short(str(r.ports), 80)), r.bytes, r.packets,
               iso_time(r.last_seen)] for r in top.itertuples(index=False)]
    fig = go.Figure(go.Bar(
        orientation="h", y=[as_text(_short(str(p))) for p in top["peer"]], x=top["connections"].tolist(),
        customdata=custom, marker_color=PEER_COLOUR,
        hovertemplate="%{customdata[0]}<br>%{x:,} connections with %{customdata[1]} interface(s)<br>"
                      "ports: %{customdata[2]}<br>%{customdata[3]:,} bytes, %{customdata[4]:,} packets<br>"
                      "last seen %{customdata[5]}<extra></extra>",
    ))
    fig.update_layout(yaxis={"autorange": "reversed", "type": "category"},
                      xaxis={"title": {"text": "accepted connections"},
                             **_whole_numbers(int(top["connections"].max()))})
    return _layout(fig, title, max(300, 150 + 24 * len(top)))


def _rejected_by_port(rejected: pd.DataFrame) -> pd.DataFrame:
    """One row per (protocol, port, direction): attempts and peers summed over interfaces."""
    rows = rejected.assign(label=_port_labels(rejected))
    rows["also_accepted"] = rows["attempts_also_accepted"] > 0 if "attempts_also_accepted" in rows.columns else False
    return rows.groupby(["label", "direction"], as_index=False).agg(
        attempts=("attempts", "sum"), peers=("peers", "sum"), interfaces=("interface_id", "nunique"),
        also_accepted=("also_accepted", "any"))


def rejected_ports(rejected: pd.DataFrame, n: int = 20) -> go.Figure:
    """The `n` (protocol, port) pairs with the most rejected attempts, inbound and outbound stacked.

    Parameters
    ----------
    rejected : pandas.DataFrame
        One row per interface, direction, protocol and port: attempts (distinct peer and peer port),
        peers, and ``attempts_also_accepted`` when present (as in `Analysis.rejected`).
    n : int
        How many ports to draw; the title says of how many.

    Returns
    -------
    plotly.graph_objects.Figure
        Hover says that a REJECT may come from a security group, a network ACL or a late packet.
    """
    require_columns(rejected, ["interface_id", "direction", "protocol", "port", "attempts", "peers"],
                    "the rejected frame")
    if rejected.empty:
        return empty_figure("Rejected attempts by port", "No rejected traffic in the window.")
    rows = _rejected_by_port(rejected)
    totals = rows.groupby("label")["attempts"].sum().sort_values(ascending=False, kind="stable")
    order = totals.index[:n].tolist()
    fig = go.Figure()
    for direction in ("inbound", "outbound"):
        mine = rows[rows["direction"] == direction].set_index("label").reindex(order).dropna(subset=["attempts"])
        if mine.empty:
            continue
        custom = [[int(r.peers), int(r.interfaces),
                   "some conversations were also accepted: a network ACL or a late packet is likelier"
                   if r.also_accepted else ""] for r in mine.itertuples()]
        fig.add_trace(go.Bar(
            orientation="h", name=direction, y=mine.index.tolist(), x=mine["attempts"].astype(int).tolist(),
            customdata=custom, marker_color=DIRECTION_COLOURS[direction],
            hovertemplate=f"%{{y}} {direction}: %{{x:,}} rejected attempts<br>"
                          "%{customdata[0]:,} peers (summed over interfaces) on %{customdata[1]} interface(s)<br>"
                          f"%{{customdata[2]}}<br>{REJECT_CAUSES}<extra></extra>",
        ))
    fig.update_layout(barmode="stack", yaxis={"autorange": "reversed", "type": "category",
                                              "categoryorder": "array", "categoryarray": order},
                      xaxis={"title": {"text": "rejected attempts (distinct peer and peer port)"},
                             **_whole_numbers(int(totals.max()))},
                      legend=_LEGEND_ON_TOP, showlegend=True)  # one direction alone still names its colour
    title = f"Top {len(order)} of {len(totals):,} ports by rejected attempts"
    return _layout(fig, title, max(300, 150 + 24 * len(order)), "a REJECT may come from a security group, "
                   "a network ACL or a late packet")
