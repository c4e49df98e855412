"""Figure builders on small literal frames: traces, values, dropdown visibility, layer buttons, escaping."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pandas as pd
import pytest
from builders import Snapshot, handshake, run
from sgaudit import figures, summaries
from sgaudit.errors import SgauditError

EVIL = "<img src=x onerror=alert(1)>"
EVIL_TEXT = "&lt;img src=x onerror=alert(1)&gt;"
T0 = pd.Timestamp("2025-02-06T00:00:00Z")
TIMES = pd.date_range(T0, periods=4, freq="h")

RULE_COLUMNS = ["group_id", "group_name", "rule_id", "direction", "protocol", "from_port", "to_port", "peer",
                "status", "evidence", "connections", "description", "vpc_id"]


def rules_frame() -> pd.DataFrame:
    """Three groups: web (traffic on two of three rules), one named EVIL (no traffic), one unattached."""
    rows = [
        ("sg-0a1", "web", "sgr-1", "ingress", "tcp", 443, 443, "0.0.0.0/0", "used", "established", 5, EVIL, "vpc-1"),
        ("sg-0a1", "web", "sgr-2", "ingress", "tcp", 22, 22, "10.0.0.0/8", "unused", "", 0, "ssh", "vpc-1"),
        ("sg-0a1", "web", "sgr-3", "egress", "-1", -1, -1, "0.0.0.0/0", "used", "inferred", 3, "", "vpc-1"),
        ("sg-0b2", EVIL, "sgr-4", "ingress", "tcp", 5432, 5432, "sg-0a1", "attempted", "attempted", 0, "db 100%{x}",
         "vpc-2"),
        ("sg-0c3", "idle", "sgr-5", "ingress", "icmp", 8, -1, "pl-123", "unattached", "", 0, "", "vpc-1"),
    ]
    df = pd.DataFrame(rows, columns=RULE_COLUMNS)
    df["exclusive"] = [1, 0, 0, 0, 0]
    df["peers"] = [2, 0, 1, 0, 0]
    df["ports"] = ["443", "", "53,443", "", ""]
    df["first_seen"] = pd.to_datetime([T0, None, T0, None, None], utc=True)
    df["last_seen"] = pd.to_datetime([T0 + pd.Timedelta("2h"), None, T0, None, None], utc=True)
    df["bytes"] = [1000, 0, 300, 0, 0]
    df["packets"] = [10, 0, 3, 0, 0]
    return df


def timeline(ports: pd.DataFrame | None = None) -> SimpleNamespace:
    """Four hourly buckets; sgr-1 has traffic in buckets 0 and 2, sgr-3 in bucket 1."""
    rules = pd.DataFrame({"rule_id": ["sgr-1", "sgr-1", "sgr-3"], "group_id": ["sg-0a1"] * 3,
                          "time": [TIMES[0], TIMES[2], TIMES[1]], "connections": [2, 3, 3],
                          "bytes": [400, 600, 300], "packets": [4, 6, 3]})
    if ports is None:
        ports = pd.DataFrame({
            "scope": ["group", "group", "group", "group", "interface"],
            "scope_id": ["sg-0a1", "sg-0a1", "sg-0a1", "sg-0b2", "eni-9"],
            "direction": ["inbound"] * 5,
            "protocol": ["tcp", "tcp", "icmp", "tcp", "tcp"],
            "port": pd.array([443, 22, None, 5432, 443], dtype="Int64"),
            "time": [TIMES[0], TIMES[1], TIMES[1], TIMES[3], TIMES[0]],
            "connections": [2, 0, 1, 0, 2], "bytes": [400, 0, 84, 0, 400], "rejected": [0, 7, 0, 4, 0]})
    return SimpleNamespace(
        bucket=pd.Timedelta("1h"), window=(T0, T0 + pd.Timedelta("4h")), times=TIMES, rules=rules, ports=ports,
        active=frozenset(rules["time"]) | frozenset(ports["time"]),
        labels={"sg-0a1": "sg-0a1 (web)", "sg-0b2": f"sg-0b2 ({EVIL})", "sg-0c3": "sg-0c3 (idle)",
                "eni-9": f"eni-9 ({EVIL})"})


def talkers_frame() -> pd.DataFrame:
    return pd.DataFrame({"peer": ["203.0.113.9", EVIL, "198.51.100.1"], "connections": [9, 3, 12],
                         "interfaces": [1, 2, 1], "ports": ["443", "22,80", "53"], "bytes": [900, 30, 50],
                         "packets": [9, 3, 12],
                         "last_seen": pd.to_datetime(["2025-02-06T02:00Z", "2025-02-06T03:00Z", None], utc=True)})


def rejected_frame() -> pd.DataFrame:
    return pd.DataFrame({
        "interface_id": ["eni-9", "eni-8", "eni-9", "eni-8"],
        "direction": ["inbound", "inbound", "outbound", "inbound"],
        "protocol": [6, 6, 6, 1], "port": pd.array([22, 22, 22, None], dtype="Int64"),
        "attempts": [40, 5, 3, 2], "peers": [12, 2, 1, 2], "records": [50, 5, 3, 2],
        "first_seen": pd.to_datetime([T0] * 4, utc=True), "last_seen": pd.to_datetime([T0] * 4, utc=True),
        "attempts_also_accepted": [0, 0, 3, 0], "likely_cause": ["", "", "", ""]})


def strings(fig) -> list[str]:
    """Every string in the figure as plotly.js receives it (traces, layout, menus and their arguments)."""
    out = []

    def walk(node):
        if isinstance(node, str):
            out.append(node)
        elif isinstance(node, dict):
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(json.loads(fig.to_json()))
    return out


def assert_escaped(fig) -> None:
    texts = strings(fig)
    assert not [t for t in texts if "<img" in t]
    assert any(EVIL_TEXT in t for t in texts)


def buttons(fig, menu: int = 0) -> list:
    return fig.layout.updatemenus[menu].buttons


# --- text helpers ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "text"), [
    (EVIL, EVIL_TEXT),
    ("a & b", "a &amp; b"),
    ("&lt;", "&amp;lt;"),
    ("100%{meta[0]}", "100&#37;{meta[0]}"),
    ('say "hi" it\'s', 'say "hi" it\'s'),
    (None, ""),
    (float("nan"), ""),
    (42, "42"),
], ids=["tag", "ampersand", "entity", "placeholder", "quotes", "none", "nan", "number"])
def test_as_text_leaves_no_tag_entity_or_placeholder(raw, text):
    assert figures.as_text(raw) == text


@pytest.mark.parametrize(("protocol", "port", "label"), [
    ("tcp", 22, "tcp/22"), (6, 443, "tcp/443"), ("17", 53, "udp/53"), ("icmp", pd.NA, "icmp"),
    ("47", None, "gre"), ("253", pd.NA, "253"),
], ids=["name", "number", "numeric-string", "portless", "gre", "unnamed"])
def test_port_label(protocol, port, label):
    assert figures.port_label(protocol, port) == label


@pytest.mark.parametrize(("values", "summary"), [
    (("ingress", "tcp", 22, 22, "10.0.0.0/8"), "ingress tcp 22 from 10.0.0.0/8"),
    (("ingress", "tcp", 1024, 65535, "sg-0a1"), "ingress tcp 1024-65535 from sg-0a1"),
    (("ingress", "tcp", 0, 65535, "pl-1"), "ingress tcp all ports from pl-1"),
    (("egress", "-1", -1, -1, "0.0.0.0/0"), "egress all to 0.0.0.0/0"),
    (("ingress", "icmp", 8, -1, "::/0"), "ingress icmp type 8 from ::/0"),
    (("ingress", "icmpv6", 1, 4, "::/0"), "ingress icmpv6 type 1 code 4 from ::/0"),
    (("ingress", "icmp", -1, -1, "10.0.0.0/8"), "ingress icmp from 10.0.0.0/8"),
    (("ingress", "50", -1, -1, "10.0.0.0/8"), "ingress esp from 10.0.0.0/8"),
], ids=["port", "range", "all-ports", "all-protocols", "icmp-type", "icmp-code", "icmp-any", "esp"])
def test_rule_summary(values, summary):
    rule = SimpleNamespace(**dict(zip(["direction", "protocol", "from_port", "to_port", "peer"], values, strict=True)))
    assert figures.rule_summary(rule) == summary


@pytest.mark.parametrize(("bucket", "words"), [
    ("1h", "hour"), ("6h", "6 hours"), ("5min", "5 minutes"), ("1D", "day"), ("30s", "30 seconds"),
])
def test_bucket_words(bucket, words):
    assert figures._bucket_words(pd.Timedelta(bucket)) == words


# --- status_by_group ------------------------------------------------------------------------------------


def test_status_by_group_stacks_rule_counts_in_fixed_status_order_and_colours():
    fig = figures.status_by_group(rules_frame())
    assert [t.name for t in fig.data] == list(figures.STATUSES)
    assert [t.marker.color for t in fig.data] == [figures.STATUS_COLOURS[s] for s in figures.STATUSES]
    assert fig.layout.barmode == "stack"
    # Groups sorted by label, top to bottom; the name from AWS escaped on the axis.
    assert list(fig.data[0].y) == ["sg-0a1 (web)", f"sg-0b2 ({EVIL_TEXT})", "sg-0c3 (idle)"]
    counts = {t.name: list(t.x) for t in fig.data}
    assert counts == {"used": [2, 0, 0], "attempted": [0, 1, 0], "unused": [1, 0, 0], "unobserved": [0, 0, 0],
                      "unattached": [0, 0, 1]}
    assert list(fig.data[0].customdata[0]) == ["sg-0a1 (web)", 3]
    assert "of %{customdata[1]} rules" in fig.data[0].hovertemplate
    assert_escaped(fig)


def test_status_by_group_height_grows_with_the_groups():
    many = pd.concat([rules_frame().assign(group_id=f"sg-{i}") for i in range(40)])
    assert figures.status_by_group(many).layout.height > figures.status_by_group(rules_frame()).layout.height


def test_status_by_group_of_no_rules_says_so():
    fig = figures.status_by_group(rules_frame().iloc[0:0])
    assert len(fig.data) == 0
    assert "No security group rules" in fig.layout.annotations[0].text


def test_status_by_group_rejects_an_unknown_status():
    with pytest.raises(SgauditError, match="status.*retired"):
        figures.status_by_group(rules_frame().assign(status="retired"))


def test_missing_columns_are_all_named_at_once():
    with pytest.raises(SgauditError, match="group_name, status"):
        figures.status_by_group(rules_frame()[["group_id", "rule_id"]])


# --- rule_timeline --------------------------------------------------------------------------------------


def test_rule_timeline_draws_every_bucket_of_the_window_with_zeros_filled():
    fig = figures.rule_timeline(timeline(), rules_frame(), "sg-0a1")
    # Ingress before egress; sgr-2 matched nothing and is not drawn.
    assert [t.name for t in fig.data] == ["sgr-1 ingress tcp 443 from 0.0.0.0/0", "sgr-3 egress all to 0.0.0.0/0"]
    sgr1, sgr3 = fig.data
    assert list(sgr1.x) == list(TIMES.tz_localize(None))
    assert list(sgr1.y) == [2, 0, 3, 0]
    assert list(sgr3.y) == [0, 3, 0, 0]
    assert list(sgr1.customdata) == [400, 0, 600, 0]
    assert fig.layout.title.subtitle.text == "2 of 3 rules matched connections; 1 rule without any not drawn"
    assert list(fig.layout.xaxis.range) == ["2025-02-06T00:00:00", "2025-02-06T04:00:00"]
    assert not fig.layout.updatemenus


def test_rule_timeline_hover_names_the_rule_with_its_description_as_text():
    sgr1 = figures.rule_timeline(timeline(), rules_frame(), "sg-0a1").data[0]
    assert sgr1.meta == ("sgr-1: ingress tcp 443 from 0.0.0.0/0", EVIL_TEXT, "used")
    for field in ("%{meta[0]}", "%{meta[1]}", "status: %{meta[2]}", "%{y:,} conversations active in this bucket"):
        assert field in sgr1.hovertemplate


def test_rule_timeline_colours_are_no_status_colours_and_attempts_are_dashed():
    # Red means unused in every figure of a report: a used rule drawn red read as the opposite.
    rules = rules_frame()
    rules.loc[rules["rule_id"] == "sgr-3", "status"] = "attempted"
    fig = figures.rule_timeline(timeline(), rules, "sg-0a1")
    colours = [t.line.color for t in fig.data]
    assert colours and not set(colours) & set(figures.STATUS_COLOURS.values())
    assert len(set(colours)) == len(colours)
    assert [t.line.dash for t in fig.data] == ["dash" if s == "attempted" else "solid" for s in
                                                (t.meta[2] for t in fig.data)]
    assert "attempted" in [t.meta[2] for t in fig.data]
    assert not set(figures.DIRECTION_COLOURS.values()) & set(figures.STATUS_COLOURS.values())


def test_rule_timeline_of_all_groups_has_a_dropdown_of_group_visibility():
    fig = figures.rule_timeline(timeline(), rules_frame())
    assert [t.visible for t in fig.data] == [True, True]
    menu = buttons(fig)
    assert [b.label for b in menu] == ["sg-0a1 (web)", f"sg-0b2 ({EVIL_TEXT})", "sg-0c3 (idle)"]
    assert [b.method for b in menu] == ["update"] * 3
    assert [b.args[0]["visible"] for b in menu] == [[True, True], [False, False], [False, False]]
    assert_escaped(fig)


def test_a_group_without_traffic_still_gets_a_button_and_says_so():
    menu = buttons(figures.rule_timeline(timeline(), rules_frame()))
    layout = menu[1].args[1]
    assert layout["title.text"] == f"Connections per rule, per hour — sg-0b2 ({EVIL_TEXT})"
    assert layout["annotations"][0]["text"] == "No matched connections in the window"
    assert layout["title.subtitle.text"] == "1 rule, none matched a connection in the window"
    assert menu[0].args[1]["annotations"] == []


def test_rule_timeline_menu_keeps_the_busiest_groups_and_says_how_many_it_left_out():
    # Every entry of the menu carries a flag per trace: past max_groups, only the busiest groups are in it.
    fig = figures.rule_timeline(timeline(), rules_frame(), max_groups=1)
    assert not fig.layout.updatemenus and [t.visible for t in fig.data] == [True, True]
    assert fig.layout.title.text.endswith("sg-0a1 (web)")
    assert fig.layout.title.subtitle.text.endswith("the busiest 1 of 3 groups are in the menu; draw another "
                                                   "with group_id=")
    two = buttons(figures.rule_timeline(timeline(), rules_frame(), max_groups=2))
    assert [b.label for b in two][0] == "sg-0a1 (web)" and len(two) == 2


def test_rule_timeline_of_one_quiet_group_shows_the_empty_state():
    fig = figures.rule_timeline(timeline(), rules_frame(), "sg-0b2")
    assert len(fig.data) == 0
    assert fig.layout.annotations[0].text == "No matched connections in the window"
    assert EVIL_TEXT in fig.layout.title.text
    # With no trace plotly would take the axis for numbers, and draw the window's range and the quiet
    # bands, which are times, as NaN paths (a window of NODATA only): the axis says it holds dates.
    assert fig.layout.xaxis.type == "date"


def test_rule_timeline_draws_only_the_rules_of_the_frame_it_is_given():
    rules = rules_frame()
    fig = figures.rule_timeline(timeline(), rules[rules["rule_id"] != "sgr-3"], "sg-0a1")
    assert [t.name.split()[0] for t in fig.data] == ["sgr-1"]


def test_rule_timeline_names_the_closest_group_when_asked_for_an_unknown_one():
    with pytest.raises(SgauditError, match="sg-0a1x has no rules.*closest match is sg-0a1"):
        figures.rule_timeline(timeline(), rules_frame(), "sg-0a1x")


def test_rule_timeline_of_no_rules_says_so():
    fig = figures.rule_timeline(timeline(), rules_frame().iloc[0:0])
    assert "No security group rules" in fig.layout.annotations[0].text


# --- port_heatmap ---------------------------------------------------------------------------------------


def test_port_heatmap_rows_are_ports_by_connections_then_rejected():
    fig = figures.port_heatmap(timeline())
    web = fig.data[0]
    assert list(web.y) == ["tcp/443", "icmp", "tcp/22"]
    assert list(web.x) == list(TIMES.tz_localize(None))
    assert [list(row) for row in web.z] == [[2, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 0]]
    assert fig.layout.title.text == "Inbound traffic by port, per hour"
    assert fig.layout.title.subtitle.text == "group sg-0a1 (web) — 3 ports"
    # Cells span their bucket rather than being centred on its start.
    assert web.xperiod == 3_600_000 and web.xperiodalignment == "middle"


def test_port_heatmap_dropdown_picks_the_group_busiest_first():
    fig = figures.port_heatmap(timeline())
    assert [t.visible for t in fig.data] == [True, False]
    menu = buttons(fig, 0)
    assert [b.label for b in menu] == ["sg-0a1 (web)", f"sg-0b2 ({EVIL_TEXT})"]
    assert [b.args[0]["visible"] for b in menu] == [[True, False], [False, True]]
    assert menu[1].args[1] == {"title.subtitle.text": f"group sg-0b2 ({EVIL_TEXT}) — 1 port"}
    assert_escaped(fig)


def test_port_heatmap_layer_buttons_restyle_every_heatmap():
    fig = figures.port_heatmap(timeline())
    layer = buttons(fig, 1)
    assert [b.label for b in layer] == ["connections", "bytes", "rejected attempts"]
    assert {b.method for b in layer} == {"restyle"}
    rejected = layer[2].args[0]
    assert rejected["z"] == [[[0, 0, 0, 0], [0, 0, 0, 0], [0, 7, 0, 0]], [[0, 0, 0, 4]]]
    assert rejected["colorbar.title.text"] == ["rejected attempts"] * 2
    assert "rejected attempts: %{z:,}" in rejected["hovertemplate"][0]
    assert layer[1].args[0]["z"][0][1] == [0, 84, 0, 0]
    # The layer buttons do not touch visibility, so they compose with the dropdown.
    assert "visible" not in rejected


def test_port_heatmap_says_when_ports_were_cut():
    fig = figures.port_heatmap(timeline(), top=1)
    assert list(fig.data[0].y) == ["tcp/443"]
    assert fig.layout.title.subtitle.text == "group sg-0a1 (web) — top 1 of 3 ports"
    assert buttons(fig, 1)[2].args[0]["z"][0] == [[0, 0, 0, 0]]


def test_port_heatmap_per_interface_has_no_dropdown_for_a_single_one():
    fig = figures.port_heatmap(timeline(), scope="interface")
    assert len(fig.data) == 1 and len(fig.layout.updatemenus) == 1
    assert fig.layout.title.subtitle.text == f"interface eni-9 ({EVIL_TEXT}) — 1 port"
    assert_escaped(fig)


@pytest.mark.parametrize("ports", [None, "empty"], ids=["no-outbound-rows", "empty-frame"])
def test_port_heatmap_without_traffic_says_so(ports):
    frame = None if ports is None else timeline().ports.iloc[0:0]
    fig = figures.port_heatmap(timeline(frame), direction="outbound")
    assert len(fig.data) == 0
    assert fig.layout.annotations[0].text == "No outbound traffic matched by a rule of any group in the window."
    # Per interface every conversation counts, explained or not.
    fig = figures.port_heatmap(timeline(frame), scope="interface", direction="outbound")
    assert fig.layout.annotations[0].text == "No outbound traffic at any interface in the window."


def test_port_heatmap_rejects_an_unknown_scope():
    with pytest.raises(SgauditError, match="scope='vpc'"):
        figures.port_heatmap(timeline(), scope="vpc")


# --- top talkers and rejected ports ---------------------------------------------------------------------


def test_top_talkers_draws_the_busiest_peers_first():
    fig = figures.top_talkers(talkers_frame(), n=2)
    assert list(fig.data[0].y) == ["198.51.100.1", "203.0.113.9"]
    assert list(fig.data[0].x) == [12, 9]
    assert fig.layout.title.text == "Top 2 of 3 peers by accepted connections"
    assert list(fig.data[0].customdata[1]) == ["203.0.113.9", 1, "443", 900, 9, "2025-02-06T02:00:00Z"]
    assert list(fig.data[0].customdata[0])[-1] == ""


def test_top_talkers_escapes_peers():
    fig = figures.top_talkers(talkers_frame())
    assert fig.layout.title.text == "Top 3 peers by accepted connections"
    assert_escaped(fig)


def test_rejected_ports_sums_attempts_over_interfaces_per_direction():
    fig = figures.rejected_ports(rejected_frame())
    inbound, outbound = fig.data
    assert (inbound.name, list(inbound.y), list(inbound.x)) == ("inbound", ["tcp/22", "icmp"], [45, 2])
    assert (outbound.name, list(outbound.y), list(outbound.x)) == ("outbound", ["tcp/22"], [3])
    assert list(inbound.customdata[0])[:2] == [14, 2]
    assert "network ACL or a late packet" in outbound.customdata[0][2]
    assert "REJECT may come from a security group, a network ACL or a packet arriving" in inbound.hovertemplate
    assert fig.layout.title.text == "Top 2 of 2 ports by rejected attempts"


def test_rejected_ports_keeps_the_top_n_ports():
    fig = figures.rejected_ports(rejected_frame(), n=1)
    assert {tuple(t.y) for t in fig.data} == {("tcp/22",)}
    assert fig.layout.title.text == "Top 1 of 2 ports by rejected attempts"


def test_rejected_ports_without_also_accepted_column():
    fig = figures.rejected_ports(rejected_frame().drop(columns=["attempts_also_accepted"]))
    assert fig.data[1].customdata[0][2] == ""



def test_rejected_ports_of_an_analysis_say_when_attempts_were_also_accepted(tmp_path):
    # The analysis' own rejected table, not a hand-made frame: its count of attempts also accepted
    # reaches the hover text.
    snap = Snapshot().group("sg-x").rule("sgr-in", "sg-x", "tcp", 443, cidr="10.0.0.0/8")
    snap.interface("eni-x", "10.0.0.5", ["sg-x"])
    syn, synack = handshake("eni-x", "10.1.0.7", "10.0.0.5", 40000, 443)
    synack["action"] = "REJECT"
    fig = figures.rejected_ports(run(tmp_path, snap, [syn, synack]).rejected)
    assert "network ACL or a late packet" in fig.data[0].customdata[0][2]

@pytest.mark.parametrize(("build", "frame", "message"), [
    (figures.top_talkers, talkers_frame, "No accepted connections"),
    (figures.rejected_ports, rejected_frame, "No rejected traffic"),
], ids=["talkers", "rejected"])
def test_bar_figures_of_empty_frames_say_so(build, frame, message):
    fig = build(frame().iloc[0:0])
    assert len(fig.data) == 0 and message in fig.layout.annotations[0].text


def test_every_builder_uses_the_same_template():
    figs = [figures.status_by_group(rules_frame()), figures.rule_timeline(timeline(), rules_frame()),
            figures.port_heatmap(timeline()), figures.top_talkers(talkers_frame()),
            figures.rejected_ports(rejected_frame())]
    assert {json.loads(f.to_json())["layout"]["template"]["layout"]["paper_bgcolor"] for f in figs} == {"white"}


def test_port_heatmap_says_when_groups_were_left_out():
    fig = figures.port_heatmap(timeline(), max_items=1)
    assert len(fig.data) == 1 and len(fig.layout.updatemenus) == 1
    assert fig.layout.title.subtitle.text == "group sg-0a1 (web) — 3 ports (busiest 1 of 2 groups)"


def test_status_by_group_draws_unused_rules_whose_peers_are_unknown_apart():
    # sgr-2 references a group that is not in the snapshot: SPEC's `unused`, but its use is unknown.
    rules = rules_frame().assign(peers_known=[True, False, True, True, True])
    fig = figures.status_by_group(rules)
    unknown = summaries.PEERS_UNKNOWN
    assert [t.name for t in fig.data] == ["used", "attempted", "unused", unknown, "unobserved", "unattached"]
    counts = {t.name: list(t.x) for t in fig.data}
    assert counts["unused"] == [0, 0, 0] and counts[unknown] == [1, 0, 0]
    hatched = fig.data[3].marker
    assert hatched.pattern.shape == "/" and hatched.pattern.fgcolor == figures.STATUS_COLOURS["unobserved"]
    # Without any such rule the figure keeps SPEC's five statuses.
    assert [t.name for t in figures.status_by_group(rules_frame().assign(peers_known=True)).data] == list(
        figures.STATUSES)


def test_rule_timeline_shades_a_stretch_without_any_traffic_and_keeps_it_across_the_dropdown():
    # Traffic in the first and the last hour only: the two hours between are no data, not "no use".
    t = timeline()
    t.rules = t.rules.assign(time=[TIMES[0], TIMES[3], TIMES[0]])
    t.ports = t.ports.assign(time=TIMES[0])
    t.active = frozenset({TIMES[0], TIMES[3]})
    fig = figures.rule_timeline(t, rules_frame())
    [band] = fig.layout.shapes
    assert (band.x0, band.x1) == (TIMES[1].tz_convert(None).isoformat(), TIMES[3].tz_convert(None).isoformat())
    assert band.yref == "paper" and "logs missing" in band.label.text
    # The dropdown's entries change traces, titles and annotations, never the shapes.
    assert all("shapes" not in str(b.args) for b in fig.layout.updatemenus[0].buttons)
    assert figures.rule_timeline(timeline(), rules_frame()).layout.shapes == ()  # no gap, no band
    # The heatmaps get the same band, above their cells (below, the cells would hide it).
    [over] = figures.port_heatmap(t, scope="group", direction="inbound").layout.shapes
    assert (over.x0, over.x1, over.layer) == (band.x0, band.x1, "above")


def test_a_rule_timeline_without_any_trace_draws_its_window_and_band_as_times_in_chromium(tmp_path):
    # A group with no matched connection, in a window with a stretch of no traffic (NODATA only, or a window
    # holding no record): plotly, given no trace, took the axis for numbers and drew NaN paths.
    from pathlib import Path

    from browser import open_offline

    t = timeline()
    t.rules = t.rules.assign(time=[TIMES[0], TIMES[3], TIMES[0]])
    t.active = frozenset({TIMES[0], TIMES[3]})
    fig = figures.rule_timeline(t, rules_frame(), "sg-0b2")
    assert len(fig.data) == 0 and len(fig.layout.shapes) == 1
    plotly_js = next((Path(figures.__file__).parent / "vendor").glob("plotly-*.min.js")).read_text()
    page = tmp_path / "figure.html"
    page.write_text(f"<html><head><meta charset='utf-8'><script>{plotly_js}</script></head><body>"
                    + fig.to_html(include_plotlyjs=False, full_html=False) + "</body></html>")
    with open_offline(page) as view:
        view.page.wait_for_selector(".js-plotly-plot svg")
        assert view.blocked == [] and view.errors == []
        ticks = view.page.locator(".xtick text").all_text_contents()
        band = view.page.locator(".shapelayer path").first.get_attribute("d")
    assert ticks and not any(tick.lstrip("−-").isdigit() for tick in ticks), ticks  # times, not -1 … 6
    assert "NaN" not in band, band
