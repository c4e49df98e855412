"""Rule usage over time (`sgaudit.timeline`) and the report's tables (`sgaudit.summaries`).

Small literal accounts pin what one cell counts; the sample account checks that the views over time add
up to the usage table they are drawn beside.
"""

from __future__ import annotations

import ipaddress
import re
import warnings
from pathlib import Path

import pandas as pd
import pytest
import sgaudit
from builders import T0, V2, Snapshot, handshake, rec, run
from sgaudit import summaries
from sgaudit.errors import SgauditError
from sgaudit.output import iso_time
from sgaudit.timeline import bucket_starts, choose_bucket

SAMPLE = Path(__file__).resolve().parents[1] / "sample_logs"
WEB, WEB_IP, CLIENT, SCANNER = "eni-web", "10.0.1.10", "198.51.100.7", "203.0.113.9"


def account() -> Snapshot:
    s = Snapshot()
    s.group("sg-web", "web").group("sg-ops", "ops")
    s.rule("sgr-https", "sg-web", "tcp", 443, cidr="0.0.0.0/0")
    s.rule("sgr-https-too", "sg-web", "tcp", 400, 500, cidr="198.51.100.0/24")
    s.rule("sgr-out", "sg-web", "-1", egress=True, cidr="0.0.0.0/0")
    s.rule("sgr-ops-https", "sg-ops", "tcp", 443, cidr="198.51.100.0/24")
    s.interface(WEB, WEB_IP, ["sg-web", "sg-ops"])
    return s


def at(t: pd.Timestamp | str) -> pd.Timestamp:
    return pd.Timestamp(t, tz="UTC") if not isinstance(t, pd.Timestamp) else t


def cells(df: pd.DataFrame, **where) -> dict:
    for k, v in where.items():
        df = df[df[k] == v]
    return {row.time: row for row in df.itertuples(index=False)}


# --- Bucket width ------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("span", "expected"), [
    ("30min", "1min"), ("5h", "5min"), ("6h5min", "10min"), ("1D", "30min"), ("7D", "3h"), ("90D", "7D"),
    ("1000D", "30D"),
])
def test_auto_bucket_gives_at_most_72_columns(span, expected):
    lo = pd.Timestamp("2025-02-06", tz="UTC")
    assert choose_bucket((lo, lo + pd.Timedelta(span)), "auto") == pd.Timedelta(expected)


def test_auto_bucket_counts_the_columns_of_a_window_off_the_bucket_grid():
    # 72 hours from 00:30: hourly buckets start on the hour, so 1h would need 73 columns.
    lo = pd.Timestamp("2025-02-06 00:30", tz="UTC")
    window = (lo, lo + pd.Timedelta("72h"))
    assert len(bucket_starts(window, pd.Timedelta("1h"))) == 73
    assert choose_bucket(window, "auto") == pd.Timedelta("2h")
    assert len(bucket_starts(window, pd.Timedelta("2h"))) == 37
    # A window of decades is answered without listing its minutes.
    assert choose_bucket((pd.Timestamp("1970-01-01", tz="UTC"), lo), "auto") == pd.Timedelta("30D")


def test_explicit_bucket_and_bad_bucket():
    window = (pd.Timestamp("2025-02-06", tz="UTC"), pd.Timestamp("2025-02-07", tz="UTC"))
    assert choose_bucket(window, "15min") == pd.Timedelta("15min")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # pandas 3 deprecates "d" for days: people still write it
        assert choose_bucket(window, "1d") == choose_bucket(window, " 1 d") == pd.Timedelta("1D")
    with pytest.raises(SgauditError, match="'fortnightly' is not a duration"):
        choose_bucket(window, "fortnightly")
    for nothing in ("nan", "NaT"):
        with pytest.raises(SgauditError, match=f"'{nothing}' is not a duration"):
            choose_bucket(window, nothing)
    with pytest.raises(SgauditError, match="'30s' is too small; use at least '1min'"):
        choose_bucket(window, "30s")
    decades = (pd.Timestamp("1970-01-01", tz="UTC"), pd.Timestamp("2100-01-01", tz="UTC"))
    with pytest.raises(SgauditError, match="cuts the window into 68,374,080 columns, more than the views can draw"):
        choose_bucket(decades, "1min")


# --- What a cell counts ------------------------------------------------------------------------------------

def test_conversation_spanning_buckets_counts_in_each_and_bytes_where_they_fell(tmp_path):
    # One conversation: handshake at T0, more data 20 minutes later (bucket 15 min).
    recs = handshake(WEB, CLIENT, WEB_IP, 40000, 443) + [
        rec(WEB, CLIENT, WEB_IP, 40000, 443, flags=16, direction="ingress", start=T0 + 1200, bytes_=1000)]
    t = run(tmp_path, account(), recs).timeline("15min")
    b0 = pd.Timestamp(T0 // 900 * 900, unit="s", tz="UTC")
    https = cells(t.rules, rule_id="sgr-https")
    assert {k: (v.connections, v.bytes) for k, v in https.items()} == {
        b0: (1, 300), b0 + pd.Timedelta("15min"): (1, 1000)}
    # Every rule that let it through gets it, in the same buckets.
    assert set(t.rules["rule_id"]) == {"sgr-https", "sgr-https-too", "sgr-ops-https"}
    assert list(t.times) == [b0, b0 + pd.Timedelta("15min")]


def test_group_cell_counts_a_conversation_once_however_many_of_its_rules_matched(tmp_path):
    t = run(tmp_path, account(), handshake(WEB, CLIENT, WEB_IP, 40000, 443)).timeline("1h")
    web = t.ports[(t.ports.scope == "group") & (t.ports.scope_id == "sg-web")]
    assert web[["direction", "protocol", "port", "connections", "bytes"]].values.tolist() == [
        ["inbound", "tcp", 443, 1, 300]]
    iface = t.ports[t.ports.scope == "interface"]
    assert iface[["scope_id", "connections", "rejected"]].values.tolist() == [[WEB, 1, 0]]


def test_rejected_cell_counts_distinct_peer_and_peer_port(tmp_path):
    scans = [rec(WEB, SCANNER, WEB_IP, 50000 + (i % 2), 22, flags=2, direction="ingress", action="REJECT",
                 start=T0 + i) for i in range(4)]
    t = run(tmp_path, account(), scans).timeline("1h")
    for scope, scope_id in (("interface", WEB), ("group", "sg-web"), ("group", "sg-ops")):
        [c] = cells(t.ports, scope=scope, scope_id=scope_id).values()
        assert (c.port, c.connections, c.rejected) == (22, 0, 2)
    assert t.rules.empty  # a REJECT is never usage of a rule


def test_outbound_port_that_counts_is_the_remote_one(tmp_path):
    recs = handshake(WEB, WEB_IP, "192.0.2.80", 51000, 8443, inbound=False)
    t = run(tmp_path, account(), recs).timeline("1h")
    [c] = cells(t.ports, scope="interface").values()
    assert (c.direction, c.port) == ("outbound", 8443)
    assert set(t.rules["rule_id"]) == {"sgr-out"}


def test_version_2_records_are_oriented_like_their_conversations(tmp_path):
    recs = [rec(WEB, CLIENT, WEB_IP, 40000, 443, start=T0), rec(WEB, WEB_IP, CLIENT, 443, 40000, start=T0 + 3600)]
    r = run(tmp_path, account(), recs, fmt=V2)
    t = r.timeline("1h")
    https = cells(t.rules, rule_id="sgr-https")
    assert [v.connections for v in https.values()] == [1, 1]
    assert sum(v.bytes for v in https.values()) == r.usage.set_index("rule_id").loc["sgr-https", "bytes"]


def test_window_filter_applies_to_the_timeline_too(tmp_path):
    recs = handshake(WEB, CLIENT, WEB_IP, 40000, 443) + handshake(WEB, CLIENT, WEB_IP, 40001, 443, start=T0 + 7200)
    r = run(tmp_path, account(), recs, start=T0 + 3600)
    t = r.timeline("1h")
    assert t.rules.groupby("rule_id")["connections"].sum().to_dict() == {
        "sgr-https": 1, "sgr-https-too": 1, "sgr-ops-https": 1}


def test_select_keeps_the_chosen_groups_and_interfaces(tmp_path):
    t = run(tmp_path, account(), handshake(WEB, CLIENT, WEB_IP, 40000, 443)).timeline("1h")
    ops = t.select(group_ids=["sg-ops"])
    assert set(ops.rules["group_id"]) == {"sg-ops"}
    assert set(ops.ports.loc[ops.ports.scope == "group", "scope_id"]) == {"sg-ops"}
    assert t.select(interface_ids=["eni-other"]).ports.query("scope == 'interface'").empty
    assert len(t.select().rules) == len(t.rules)


def test_select_by_groups_keeps_their_interfaces_and_by_interfaces_their_groups(tmp_path):
    # The port heatmaps of a group filter show the group's interfaces, not every interface.
    snap = account().group("sg-db", "db").rule("sgr-pg", "sg-db", "tcp", 5432, cidr="10.0.0.0/8")
    snap.interface("eni-db", "10.0.0.9", ["sg-db"])
    recs = handshake(WEB, CLIENT, WEB_IP, 40000, 443) + handshake("eni-db", "10.1.0.7", "10.0.0.9", 40001, 5432)
    t = run(tmp_path, snap, recs).timeline("1h")
    db = t.select(group_ids=["sg-db"])
    assert set(db.ports.loc[db.ports.scope == "interface", "scope_id"]) == {"eni-db"}
    web = t.select(interface_ids=[WEB])
    assert set(web.ports.loc[web.ports.scope == "group", "scope_id"]) == {"sg-web", "sg-ops"}
    assert set(web.rules["group_id"]) == {"sg-web", "sg-ops"}
    # Both given: each filter as it is.
    both = t.select(group_ids=["sg-db"], interface_ids=[WEB])
    assert set(both.ports["scope_id"]) == {"sg-db", WEB}


def test_timeline_is_computed_once_per_width(tmp_path):
    r = run(tmp_path, account(), handshake(WEB, CLIENT, WEB_IP, 40000, 443))
    assert r.timeline("1h") is r.timeline("60min")
    assert r.timeline("1h") is not r.timeline("15min")


# --- The sample account: the views add up to the usage table ------------------------------------------------

@pytest.fixture(scope="module")
def sample():
    result = sgaudit.analyze([SAMPLE / "flow-logs", SAMPLE / "cloudwatch" / "app-eni.log"], SAMPLE / "inventory")
    yield result
    result.close()


def test_sample_rule_timeline_adds_up_to_usage(sample):
    t = sample.timeline()
    u = sample.usage.set_index("rule_id")
    sums = t.rules.groupby("rule_id")[["bytes", "packets"]].sum()
    assert (sums["bytes"] == u.loc[sums.index, "bytes"]).all()
    assert (sums["packets"] == u.loc[sums.index, "packets"]).all()
    assert set(sums.index) == set(u.index[u["connections"] > 0])
    peak = t.rules.groupby("rule_id")["connections"].max()
    assert (peak <= u.loc[peak.index, "connections"]).all()
    assert t.rules["time"].isin(t.times).all() and t.ports["time"].isin(t.times).all()
    assert len(t.times) <= 72 and t.bucket == pd.Timedelta("5min")


def test_sample_interface_heatmap_bytes_add_up_to_conversations(sample):
    t = sample.timeline()
    iface = t.ports[t.ports.scope == "interface"]
    assert iface["bytes"].sum() == sample.conversations["bytes"].sum()
    rejected = sample.rejected
    assert iface["rejected"].sum() >= rejected["attempts"].sum()  # per bucket ≥ over the window


def test_sample_summaries(sample):
    rules = summaries.rules(sample)
    assert list(rules.columns[:18]) == list(sample.usage.columns)
    assert {"description", "vpc_id"} <= set(rules.columns) and len(rules) == len(sample.usage)
    # The sample's rule referring to a group of a peered VPC: its peers are unknown, its "unused" says nothing.
    assert rules.loc[~rules["peers_known"], "rule_id"].tolist() == ["sgr-0cbccd950a7c96c2a"]
    by_status = summaries.rules_by_status(sample.usage)
    assert by_status["rules"].sum() == len(sample.usage)
    # From the rules frame, the unused rule whose referenced group is in a peered VPC is counted apart.
    shown = summaries.rules_by_status(summaries.rules(sample))
    assert shown[summaries.PEERS_UNKNOWN].sum() == 1
    assert shown["unused"].sum() == by_status["unused"].sum() - 1 and shown["rules"].sum() == len(sample.usage)
    world = summaries.world_open(sample)
    assert set(world["peer"]) <= {"0.0.0.0/0", "::/0"} and not world.empty
    rdp = world[world["to_port"] == 3389].iloc[0]  # the scanners' port: knocked on, never answered
    assert rdp["attempt_peers"] > 0 and rdp["established_peers"] == 0
    # A peer counts once, under its best evidence: in the sample one peer of 443 both completed a
    # handshake and talked without one, and the three columns still add up to the rule's peers.
    by_kind = world[["established_peers", "inferred_peers", "attempt_peers"]].sum(axis=1)
    assert (by_kind == world["peers"]).all()
    peers = summaries.peers(sample, limit=100_000)
    u = sample.usage.set_index("rule_id")
    per_rule = peers.groupby("rule_id")["connections"].sum()
    assert (per_rule == u.loc[per_rule.index, "connections"]).all()  # nothing cut at this size
    busiest = summaries.peers(sample, limit=3)
    assert busiest.groupby("rule_id").size().max() == 3
    assert busiest.attrs["total"] == len(peers) > len(busiest)
    # The caption names each cut rule with its full count, for the part of the table shown.
    rows_of = peers.groupby("rule_id").size()
    assert busiest.attrs["cut"] == {rid: int(n) for rid, n in rows_of.items() if n > 3}
    one = max(busiest.attrs["cut"], key=busiest.attrs["cut"].get)
    part = busiest[busiest["rule_id"] == one]
    assert summaries.peers_caption(part) == (f"Peers and ports per rule: the busiest 3 of each rule; cut: {one} 3 of "
                                             f"{rows_of[one]:,}")
    assert summaries.peers_caption(peers) == "Peers and ports per rule: every peer and port"
    talkers = summaries.top_talkers(sample, 5)
    assert len(talkers) == 5 and talkers["connections"].is_monotonic_decreasing
    assert talkers["bytes"].dtype == "int64"


def test_per_interface_tables_and_top_talkers_follow_a_group_filter(sample):
    bastion = "sg-065020594ff618000"
    ig = sample.inventory.interface_groups
    mine = set(ig.loc[ig["group_id"] == bastion, "interface_id"])
    assert summaries.interfaces_of(sample, [bastion]) == mine and summaries.interfaces_of(sample, []) is None
    for table in (sample.coverage, sample.rejected, sample.unexplained):
        kept = summaries.for_groups(table, sample, [bastion])
        assert set(kept["interface_id"]) <= mine
        assert len(summaries.for_groups(table, sample, None)) == len(table)
    assert len(summaries.for_groups(sample.rejected, sample, [bastion])) < len(sample.rejected)
    talkers = summaries.top_talkers(sample, 1000, [bastion])
    everyone = summaries.top_talkers(sample, 1000)
    assert 0 < talkers["connections"].sum() < everyone["connections"].sum()
    assert (talkers["interfaces"] <= len(mine)).all()


def test_filter_rules_and_its_errors(sample):
    rules = summaries.rules(sample)
    used_in = summaries.filter_rules(rules, status=["used"], direction="ingress")
    assert set(used_in["status"]) == {"used"} and set(used_in["direction"]) == {"ingress"}
    assert len(summaries.filter_rules(rules, status="all")) == len(rules)
    with pytest.raises(SgauditError, match="status 'usd' is not one of used"):
        summaries.filter_rules(rules, status="usd")


def test_conversations_of_an_interface_or_a_peer(sample):
    iface = sample.coverage.query("observed and in_snapshot").iloc[0]["interface_id"]
    mine = summaries.conversations_of(sample, interface_id=iface)
    assert not mine.empty and set(mine["interface_id"]) == {iface}
    scanners = summaries.conversations_of(sample, peer="0.0.0.0/0", limit=100_000)
    assert scanners.attrs["total"] == len(scanners)
    assert summaries.conversations_of(sample, peer="0.0.0.0/0", limit=10).attrs["total"] == len(scanners)
    assert (scanners["evidence"] == "rejected").any()
    assert (scanners.loc[scanners["evidence"] == "rejected", "rules"] == "").all()  # a REJECT uses no rule
    assert (scanners["explained"] == (scanners["rules"] != "")).all()
    assert (~scanners["explained"]).sum() >= len(sample.unexplained)
    # The whole IPv6 space, and its top half, whose numbers do not fit a signed 128-bit integer.
    v6 = summaries.conversations_of(sample, peer="::/0", limit=100_000)
    assert not v6.empty and v6["peer"].str.contains(":").all()
    top = summaries.conversations_of(sample, peer="8000::/1", limit=100_000)
    assert top.attrs["total"] == sum(int(ipaddress.ip_address(a)) >= 2**127 for a in v6["peer"])
    with pytest.raises(SgauditError, match="not an IPv4 or IPv6"):
        summaries.conversations_of(sample, peer="example.com")
    with pytest.raises(SgauditError, match="give an interface_id"):
        summaries.conversations_of(sample)
    # Found or not, the same columns; a limit that is no count is an error, not DuckDB's.
    quiet = sample.coverage.query("in_snapshot and not observed").iloc[0]["interface_id"]
    none = summaries.conversations_of(sample, interface_id=quiet)
    assert none.empty and list(none.columns) == list(mine.columns)
    # An interface neither the snapshot nor the logs name (a typo, or the notebook's default against other
    # logs) is an error naming the closest one and the busiest, not an empty investigation.
    with pytest.raises(SgauditError) as typo:
        summaries.conversations_of(sample, interface_id=iface[:-1] + ("0" if iface[-1] != "0" else "1"))
    busiest = sample.coverage.sort_values("records", ascending=False).iloc[0]
    assert f"is neither in the snapshot nor in the flow logs (closest: {iface})" in str(typo.value)
    assert f"the interfaces with the most records: {busiest['interface_id']} ({busiest['records']:,} records)" in (
        str(typo.value))
    for bad in (-1, "abc", None):
        with pytest.raises(SgauditError, match="limit .* must be a whole number"):
            summaries.conversations_of(sample, interface_id=iface, limit=bad)
        with pytest.raises(SgauditError, match="must be a whole number"):
            summaries.top_talkers(sample, bad)


def test_quiet_stretches_name_the_hour_without_logs_and_nothing_else(sample):
    # The CloudWatch export covers 11:00-12:00 and the S3 logs 13:00-16:00; a connection logged in both
    # spans the hole as a conversation, but its records do not.
    t = sample.timeline("auto")
    assert summaries.quiet_stretches(t) == [(pd.Timestamp("2025-02-06T12:00Z"), pd.Timestamp("2025-02-06T13:00Z"))]
    # A selection (a report of some groups) keeps the whole analysis' stretches: alb-sg's interfaces log only
    # from 13:00, but other interfaces had traffic from 11:00, so 11:00-12:00 is no gap in the logs.
    alb = sample.inventory.groups.set_index("group_name").loc["alb-sg", "group_id"]
    assert summaries.quiet_stretches(t.select(group_ids=[alb])) == summaries.quiet_stretches(t)
    alone = sgaudit.analyze([SAMPLE / "flow-logs"], SAMPLE / "inventory")
    try:
        assert summaries.quiet_stretches(alone.timeline("auto")) == []
        assert summaries.quiet_stretches(alone.timeline("1min")) == []  # a quiet minute or two is ordinary
    finally:
        alone.close()


def test_a_quiet_stretch_starts_no_earlier_than_a_window_off_the_bucket_grid():
    # --start 12:07 in the hour without logs: the first 5-minute bucket starts at 12:05, the window at 12:07.
    result = sgaudit.analyze([SAMPLE / "flow-logs", SAMPLE / "cloudwatch" / "app-eni.log"], SAMPLE / "inventory",
                             start="2025-02-06T12:07:00Z")
    try:
        t = result.timeline("5min")
        assert t.times[0] == pd.Timestamp("2025-02-06T12:05Z")
        assert summaries.quiet_stretches(t) == [(pd.Timestamp("2025-02-06T12:07Z"), pd.Timestamp("2025-02-06T13:00Z"))]
    finally:
        result.close()


def test_overview_names_window_and_coverage(sample):
    o = summaries.overview(sample).set_index("item")["value"]
    # No --start/--end: the window is the records' span, both ends included, and the labels say so.
    assert o["window start (UTC, the first record's start)"] == "2025-02-06T11:00:00Z"
    assert o["window end (UTC, the last record's end)"] == iso_time(sample.window[1])
    assert o["accounts in the snapshot"] == "002244369527"  # the scope, for an auditor with only the report
    assert o["VPCs in the snapshot"] == str(sample.inventory.groups["vpc_id"].nunique())
    # Absolute paths: a report is read far from where the notebook ran.
    assert o["flow logs"] == ", ".join(str(Path(p).resolve()) for p in sample.call["flow_logs"])
    assert o["inventory snapshot"].endswith("sample_logs/inventory")
    assert re.fullmatch(r"20\d\d-\d\d-\d\dT\d\d:\d\d:\d\dZ by sgaudit " + re.escape(sgaudit.__version__),
                        o["analysed (UTC)"])
    assert o["rules"] == str(len(sample.usage))
    # The rule whose referenced group is in a peered VPC outside the snapshot: unused by SPEC, its use unknown.
    unknown = sample.usage["rule_id"].isin(sample.inventory.unresolved_rules()) & (sample.usage["status"] == "unused")
    assert int(unknown.sum()) == 1
    assert int(o["… unused"]) == int((sample.usage["status"] == "unused").sum()) - 1
    assert o[f"… {summaries.PEERS_UNKNOWN}"] == "1"
    assert sum(int(v) for k, v in o.items() if k.startswith("… ") and k[2:] in summaries.STATUSES + (
        summaries.PEERS_UNKNOWN,)) == len(sample.usage)
    assert int(o["… not observed (no flow logs: no evidence either way)"]) == int(
        (~sample.coverage.query("in_snapshot")["observed"]).sum())


def test_overview_says_a_window_the_user_gave_excludes_its_end():
    given = sgaudit.analyze([SAMPLE / "flow-logs"], SAMPLE / "inventory",
                            start="2025-02-06T13:00:00Z", end="2025-02-06T14:00:00Z")
    try:
        o = summaries.overview(given).set_index("item")["value"]
    finally:
        given.close()
    assert o["window start (UTC, included)"] == "2025-02-06T13:00:00Z"
    assert o["window end (UTC, excluded)"] == "2025-02-06T14:00:00Z"


def test_verdict_counts_what_the_tables_count(sample):
    from sgaudit import findings

    found = findings.findings(sample)
    first, skipped, removal, severities, critical, high, unexplained = summaries.verdict(sample, found)
    # The sample's one SKIPDATA record: AWS dropped an interval's records there, which "unused" cannot see.
    assert skipped == ("AWS skipped records at 1 interface (1 SKIPDATA record): the traffic of those intervals is "
                       "in no result, so rules of their groups may look unused or less used than they were.")
    # The critical and high findings by name, most severe first.
    assert critical == "Critical: RDP (3389) open to the internet, rule sgr-0ebcdc0614747177d of bastion-sg."
    assert high == "High: SSH (22) open to the internet, rule sgr-06f169bac89fda46e of bastion-sg."
    u = sample.usage["status"].value_counts()
    unknown = int((sample.usage["rule_id"].isin(sample.inventory.unresolved_rules())
                   & (sample.usage["status"] == "unused")).sum())
    assert first.startswith(f"{len(sample.usage)} rules in {sample.usage['group_id'].nunique()} security groups over")
    assert (f"{u['used']} used, {u['attempted']} only attempted, {u['unused'] - unknown} unused, {unknown} of "
            "unknown use") in first
    assert removal.startswith(f"{u['unused'] - unknown + u['attempted']} rules are candidates for removal")
    assert severities == findings.counts(found) + "."
    assert unexplained == f"{len(sample.unexplained)} accepted conversations no rule explains."
    # A report of one group speaks of that group's rules and of the conversations at its interfaces.
    # Given the timeline, the hour without any log is said right after the window.
    with_gap = summaries.verdict(sample, found, timeline=sample.timeline("auto"))
    assert with_gap[0] == first and with_gap[1].startswith("For 1 h of the window no interface has any traffic")
    assert with_gap[2:] == [skipped, removal, severities, critical, high, unexplained]
    bastion = summaries.verdict(sample, found.iloc[0:0], ["sg-0f92669b1becefdac"])
    assert bastion[0].startswith("4 rules in 1 security group over") and bastion[3] == "0 findings."
    assert bastion[2] == "1 rule is a candidate for removal: unused or only attempted in this window."
    assert bastion[-1] == "Every accepted conversation is allowed by a rule of the snapshot."
