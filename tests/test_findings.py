"""Findings (`sgaudit.findings`): one test per kind on a small literal account, and the sample account.

Each test builds the few groups, rules and records the kind needs, runs the real `sgaudit.analyze`, and
asserts the kind, severity and Security Hub control, and that the sentence names the resource and the
reason with the right numbers. Negative tests pin what must *not* be reported (AWS's default egress is
not high, a world-open 443 carrying real traffic is not attempted-only…).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import sgaudit
from builders import T0, Snapshot, handshake, nodata, rec, run
from sgaudit.findings import COLUMNS, KINDS, SEVERITIES, findings, md_escape, to_markdown

ENI, IP = "eni-web", "10.0.1.10"
SAMPLE = Path(__file__).resolve().parents[1] / "sample_logs"


def web(*rules: tuple, name: str = "web", attach: bool = True) -> Snapshot:
    """Group sg-web with ``rules`` (args of Snapshot.rule without the group), on eni-web when ``attach``."""
    s = Snapshot().group("sg-web", name)
    for rid, *args, kw in rules:
        s.rule(rid, "sg-web", *args, **kw)
    if attach:
        s.interface(ENI, IP, ["sg-web"])
    return s


def observed(hours: int = 2) -> list[dict]:
    """eni-web observed over ``hours`` h 1 min (two NODATA records), nothing matched."""
    return [nodata(ENI, start=T0), nodata(ENI, start=T0 + hours * 3600)]


def scan(peers: list[str], port: int, *, start: int = T0) -> list[dict]:
    """Each peer sends a SYN to ``port`` of eni-web and gets an RST back: accepted, attempted."""
    out = []
    for n, peer in enumerate(peers):
        out += [rec(ENI, peer, IP, 50000 + n, port, flags=2, direction="ingress", start=start),
                rec(ENI, IP, peer, port, 50000 + n, flags=4, direction="egress", start=start)]
    return out


def find(tmp_path, snap: Snapshot, records: list[dict], **kwargs) -> pd.DataFrame:
    result = run(tmp_path, snap, records, **kwargs)
    try:
        return findings(result)
    finally:
        result.close()


def one(df: pd.DataFrame, kind: str, **where) -> pd.Series:
    rows = df[df["kind"] == kind]
    for col, value in where.items():
        rows = rows[rows[col] == value]
    assert len(rows) == 1, f"expected one {kind} {where}, got {len(rows)}:\n{df[['kind', 'rule_id', 'group_id']]}"
    return rows.iloc[0]


def kinds_of(df: pd.DataFrame, rule_id: str) -> set[str]:
    return set(df.loc[df["rule_id"] == rule_id, "kind"])


# --- the table ---------------------------------------------------------------------------------------------

def test_findings_columns_types_and_order(tmp_path):
    snap = web(("sgr-ssh", "tcp", 22, {"cidr": "0.0.0.0/0"}), ("sgr-in", "tcp", 8443, {"cidr": "10.0.0.0/8"}),
               ("sgr-out", "-1", {"egress": True, "cidr": "0.0.0.0/0"}))
    df = find(tmp_path, snap, observed())
    assert list(df.columns) == COLUMNS
    assert df["exposure"].dtype == "int64" and df["observed_use"].dtype == "int64"
    assert set(df["severity"]) <= set(SEVERITIES) and set(df["kind"]) <= set(KINDS)
    ranks = df["severity"].map(SEVERITIES.index)
    assert ranks.is_monotonic_increasing
    for _, same in df.groupby("severity"):
        assert same["exposure"].is_monotonic_decreasing
    # one sentence each: it ends with a full stop and has no other sentence end inside
    assert all(s.endswith(".") and ". " not in s for s in df["sentence"])


def test_findings_keep_aws_strings_raw(tmp_path):
    hostile = "web | <script>alert(1)</script> *x*"
    df = find(tmp_path, web(("sgr-in", "tcp", 8443, {"cidr": "10.0.0.0/8"}), name=hostile), observed())
    assert (df["group_name"] == hostile).all()
    assert hostile in one(df, "unused_rule")["sentence"]


# --- rules: what they carried ------------------------------------------------------------------------------

def test_unused_rule_states_window_and_coverage(tmp_path):
    df = find(tmp_path, web(("sgr-in", "tcp", 8443, {"cidr": "10.0.0.0/8"})), observed(hours=2))
    f = one(df, "unused_rule", rule_id="sgr-in")
    assert (f["severity"], f["control"], f["group_id"], f["observed_use"]) == ("low", "", "sg-web", 0)
    assert "sgr-in" in f["sentence"] and "sg-web (web)" in f["sentence"] and "TCP 8443 from 10.0.0.0/8" in f["sentence"]
    assert "2 h 1 min window" in f["sentence"] and "eni-web was observed" in f["sentence"]
    assert "revoke-security-group-ingress --group-id sg-web --security-group-rule-ids sgr-in" in f["fix"]
    assert "interfaces observed 1/1" in f["evidence"]


def test_unused_world_rule_is_medium_and_unresolved_peer_is_info(tmp_path):
    snap = web(("sgr-world", "tcp", 8443, {"cidr": "0.0.0.0/0"}), ("sgr-ref", "tcp", 9000, {"ref": "sg-gone"}))
    df = find(tmp_path, snap, observed())
    assert one(df, "unused_rule", rule_id="sgr-world")["severity"] == "medium"
    f = one(df, "unused_rule", rule_id="sgr-ref")
    assert f["severity"] == "info" and "not in the snapshot" in f["sentence"] and "sg-gone" in f["evidence"]


def test_unused_rule_that_a_guessed_conversation_would_need_is_info(tmp_path):
    # A connection without handshake flags to 50051 from client port 40000: both ways allowed, so SPEC's
    # lower-port rule makes it outbound and the service rule unused; it may well be inbound.
    snap = web(("sgr-svc", "tcp", 50051, {"cidr": "10.0.0.0/16"}),
               ("sgr-out", "-1", {"egress": True, "cidr": "0.0.0.0/0"}))
    recs = [rec(ENI, "10.0.2.7", IP, 40000, 50051, flags=0, direction="ingress"),
            rec(ENI, IP, "10.0.2.7", 50051, 40000, flags=0, direction="egress")]
    f = one(find(tmp_path, snap, recs), "unused_rule", rule_id="sgr-svc")
    assert f["severity"] == "info" and "1 conversation whose direction is a guess" in f["sentence"]
    assert "remove" not in f["fix"]


def test_allow_all_egress_that_a_guessed_conversation_would_need_is_not_told_to_go(tmp_path):
    # Local port 40000 is the lower one, so SPEC makes the flagless connection inbound; run the other way it
    # needs the allow-all egress rule, which is "unused": both of its findings say to keep it.
    snap = web(("sgr-svc", "tcp", 40000, {"cidr": "10.0.0.0/16"}),
               ("sgr-out", "-1", {"egress": True, "cidr": "0.0.0.0/0"}))
    recs = [rec(ENI, "10.0.2.7", IP, 50051, 40000, flags=0, direction="ingress"),
            rec(ENI, IP, "10.0.2.7", 40000, 50051, flags=0, direction="egress")]
    df = find(tmp_path, snap, recs)
    assert "remove" not in one(df, "unused_rule", rule_id="sgr-out")["fix"]
    assert "remove" not in one(df, "all_traffic_rule", rule_id="sgr-out")["fix"]


def test_unused_rule_is_not_reported_for_an_unobserved_group(tmp_path):
    snap = web(("sgr-in", "tcp", 8443, {"cidr": "10.0.0.0/8"})).group("sg-x").interface("eni-x", "10.0.9.9", ["sg-x"])
    df = find(tmp_path, snap, [nodata("eni-x")])
    assert "unused_rule" not in set(df["kind"])
    assert one(df, "unobserved_group", group_id="sg-web")["severity"] == "info"


def test_attempted_only_rule_reached_by_scanners(tmp_path):
    scanners = ["203.0.113.1", "203.0.113.2", "203.0.113.3"]
    df = find(tmp_path, web(("sgr-ssh", "tcp", 22, {"cidr": "0.0.0.0/0"})), scan(scanners, 22))
    f = one(df, "attempted_only_rule", rule_id="sgr-ssh")
    assert (f["severity"], f["observed_use"]) == ("medium", 3)
    assert "only 3 addresses reached it (3 connections)" in f["sentence"]
    assert "answered with RST or nothing" in f["sentence"]
    # the same rule is world-open SSH that nothing legitimate used: the strongest case for removal
    admin = one(df, "admin_port_open_to_world", rule_id="sgr-ssh")
    assert (admin["severity"], admin["control"]) == ("critical", "EC2.13")
    assert "remove the rule" in admin["fix"]


def test_attempted_only_udp_is_info_with_its_caveat(tmp_path):
    snap = web(("sgr-statsd", "udp", 8125, {"cidr": "10.0.0.0/8"}))
    df = find(tmp_path, snap, [rec(ENI, "10.0.5.5", IP, 40000, 8125, proto=17, direction="ingress")])
    f = one(df, "attempted_only_rule", rule_id="sgr-statsd")
    assert f["severity"] == "info" and "one-way" in f["sentence"]


def test_world_open_443_carrying_real_traffic_is_not_attempted_only(tmp_path):
    recs = handshake(ENI, "198.51.100.7", IP, 40000, 443) + handshake(ENI, "198.51.100.8", IP, 40001, 443)
    df = find(tmp_path, web(("sgr-https", "tcp", 443, {"cidr": "0.0.0.0/0"})), recs)
    assert kinds_of(df, "sgr-https") == {"world_open_ingress"}
    f = one(df, "world_open_ingress", rule_id="sgr-https")
    assert (f["severity"], f["control"], f["observed_use"]) == ("info", "", 2)
    assert "carried 2 connections from 2 addresses on port 443" in f["sentence"]


# --- rules: what they allow ------------------------------------------------------------------------------

def test_all_traffic_rule_from_the_world_is_critical(tmp_path):
    df = find(tmp_path, web(("sgr-all", "-1", {"cidr": "0.0.0.0/0"})), observed())
    f = one(df, "all_traffic_rule", rule_id="sgr-all")
    assert f["severity"] == "critical" and "EC2.18" in f["control"]
    assert "allows all traffic from 0.0.0.0/0" in f["sentence"]
    assert f["exposure"] == 2**32 * 65536


@pytest.mark.parametrize("peer,severity", [({"ref": "sg-web"}, "info"), ({"cidr": "10.0.0.0/8"}, "high"),
                                           ({"cidr": "10.1.2.0/24"}, "low")], ids=["self", "wide", "narrow"])
def test_all_traffic_rule_from_other_peers(tmp_path, peer, severity):
    df = find(tmp_path, web(("sgr-all", "-1", peer)), observed())
    assert one(df, "all_traffic_rule", rule_id="sgr-all")["severity"] == severity


def test_aws_default_egress_is_info_not_high(tmp_path):
    recs = handshake(ENI, IP, "203.0.113.9", 50000, 443, inbound=False)
    df = find(tmp_path, web(("sgr-out", "-1", {"egress": True, "cidr": "0.0.0.0/0"})), recs)
    f = one(df, "all_traffic_rule", rule_id="sgr-out")
    assert f["severity"] == "info" and "AWS's default outbound rule" in f["sentence"]
    assert not (df["severity"].isin(["critical", "high"])).any()


@pytest.mark.parametrize("port,world,peer,control", [(22, "0.0.0.0/0", "198.51.100.7", "EC2.13"),
                                                     (3389, "::/0", "2001:db8::7", "EC2.14")], ids=["ssh", "rdp-v6"])
def test_admin_port_open_to_world_used_is_high_and_tightened(tmp_path, port, world, peer, control):
    recs = handshake(ENI, peer, IP, 40000, port)
    df = find(tmp_path, web((f"sgr-{port}", "tcp", port, {"cidr": world})), recs)
    f = one(df, "admin_port_open_to_world", rule_id=f"sgr-{port}")
    assert (f["severity"], f["control"], f["observed_use"]) == ("high", control, 1)
    assert f"allows TCP {port} from {world}" in f["sentence"] and "carried 1 connection from 1 address" in f["sentence"]
    assert "sgaudit plan" in f["fix"] and "revoke" not in f["fix"]


def test_port_range_over_admin_ports_names_both_controls_and_is_wide(tmp_path):
    df = find(tmp_path, web(("sgr-range", "tcp", 0, 65535, {"cidr": "0.0.0.0/0"})), observed())
    f = one(df, "admin_port_open_to_world", rule_id="sgr-range")
    assert f["control"] == "EC2.13, EC2.14" and "SSH (22) and RDP (3389)" in f["sentence"]
    w = one(df, "wide_port_range", rule_id="sgr-range")
    assert w["severity"] == "high" and "65,536 ports" in w["sentence"]


@pytest.mark.parametrize("port,control", [(5432, "EC2.19"), (3306, "EC2.19"), (6379, "EC2.18")])
def test_database_port_open_to_world(tmp_path, port, control):
    df = find(tmp_path, web(("sgr-db", "tcp", port, {"cidr": "0.0.0.0/0"})), observed())
    f = one(df, "database_port_open_to_world", rule_id="sgr-db")
    assert (f["severity"], f["control"]) == ("critical", control)
    assert f"({port})" in f["sentence"] and "nothing matched it" in f["sentence"]


@pytest.mark.parametrize("port,severity,control", [(8080, "high", "EC2.19"), (8443, "medium", "EC2.18"),
                                                   (80, "low", "")])
def test_world_open_ingress_by_port(tmp_path, port, severity, control):
    df = find(tmp_path, web(("sgr-w", "tcp", port, {"cidr": "0.0.0.0/0"})), observed())
    f = one(df, "world_open_ingress", rule_id="sgr-w")
    assert (f["severity"], f["control"]) == (severity, control)


def test_unattached_groups_rules_get_no_permissive_findings(tmp_path):
    snap = web(("sgr-ftp", "tcp", 21, {"cidr": "0.0.0.0/0"}), ("sgr-wide", "tcp", 8000, 8100, {"cidr": "10.0.0.0/8"}),
               name="legacy", attach=False)
    snap.group("sg-x").interface("eni-x", "10.0.9.9", ["sg-x"])
    df = find(tmp_path, snap, [nodata("eni-x")])
    assert kinds_of(df, "sgr-ftp") == set() and kinds_of(df, "sgr-wide") == set()
    f = one(df, "unattached_group", group_id="sg-web")
    assert (f["severity"], f["control"]) == ("medium", "EC2.22")
    assert "sg-web (legacy) is on no network interface" in f["sentence"]
    assert "TCP 21 from 0.0.0.0/0" in f["sentence"] and "delete-security-group --group-id sg-web" in f["fix"]


def test_unattached_group_without_rules_is_reported_and_empty_unobserved_group_is_not(tmp_path):
    snap = Snapshot().group("sg-empty", "empty").group("sg-quiet", "quiet").interface("eni-q", "10.0.9.8", ["sg-quiet"])
    snap.group("sg-x").interface("eni-x", "10.0.9.9", ["sg-x"])
    df = find(tmp_path, snap, [nodata("eni-x")])
    assert one(df, "unattached_group", group_id="sg-empty")["severity"] == "low"
    assert "unobserved_group" not in set(df["kind"])


def test_unattached_group_referenced_by_another_says_remove_that_first(tmp_path):
    snap = web(("sgr-in", "tcp", 443, {"cidr": "10.0.0.0/8"}), attach=False)
    snap.group("sg-x").rule("sgr-x", "sg-x", "tcp", 443, ref="sg-web").interface("eni-x", "10.0.9.9", ["sg-x"])
    df = find(tmp_path, snap, [nodata("eni-x")])
    f = one(df, "unattached_group", group_id="sg-web")
    assert f["severity"] == "low" and "sgr-x" in f["fix"]


@pytest.mark.parametrize("ports,wide", [((1000, 1100), True), ((1000, 1099), False)], ids=["101", "100"])
def test_wide_port_range_threshold(tmp_path, ports, wide):
    df = find(tmp_path, web(("sgr-r", "tcp", *ports, {"cidr": "10.1.0.0/16"})), observed())
    assert ("wide_port_range" in kinds_of(df, "sgr-r")) is wide
    if wide:
        assert one(df, "wide_port_range")["severity"] == "low" and "TCP 1000-1100" in one(df, "wide_port_range")[
            "sentence"]


def test_wide_port_range_used_says_the_ports_in_use(tmp_path):
    snap = web(("sgr-r", "tcp", 0, 65535, {"cidr": "10.1.0.0/16"}))
    df = find(tmp_path, snap, handshake(ENI, "10.1.0.5", IP, 40000, 8443))
    assert "8443" in one(df, "wide_port_range", rule_id="sgr-r")["fix"]


@pytest.mark.parametrize("cidr,severity", [("203.0.0.0/8", "medium"), ("10.0.0.0/8", "low"), ("2600::/32", "medium"),
                                           ("10.0.0.0/16", None), ("2600:1f18::/48", None), ("0.0.0.0/0", None)])
def test_wide_cidr(tmp_path, cidr, severity):
    df = find(tmp_path, web(("sgr-c", "tcp", 8443, {"cidr": cidr})), observed())
    if severity is None:
        assert "wide_cidr" not in kinds_of(df, "sgr-c")
    else:
        f = one(df, "wide_cidr", rule_id="sgr-c")
        assert f["severity"] == severity and cidr in f["sentence"]


# --- redundancy --------------------------------------------------------------------------------------------

def test_redundant_rule_names_the_rule_that_covers_it(tmp_path):
    snap = Snapshot().group("sg-a", "a").group("sg-b", "b")
    snap.rule("sgr-narrow", "sg-a", "tcp", 443, cidr="10.1.0.0/16")
    snap.rule("sgr-wide", "sg-b", "tcp", 443, cidr="10.0.0.0/8")
    snap.interface(ENI, IP, ["sg-a", "sg-b"])
    recs = handshake(ENI, "10.1.2.3", IP, 40000, 443) + handshake(ENI, "10.2.3.4", IP, 40001, 443)
    df = find(tmp_path, snap, recs)
    f = one(df, "redundant_rule", rule_id="sgr-narrow")
    assert f["severity"] == "low" and "sgr-wide (1 of 1)" in f["sentence"]
    assert "carried 1 connection" in f["sentence"] and "remove one of them" not in f["sentence"]
    assert "redundant_rule" not in kinds_of(df, "sgr-wide")  # it alone carried 10.2.3.4


def test_redundant_rules_that_cover_each_other_say_not_both(tmp_path):
    snap = Snapshot().group("sg-a", "a").group("sg-b", "b")
    snap.rule("sgr-a", "sg-a", "tcp", 443, cidr="10.0.0.0/8").rule("sgr-b", "sg-b", "tcp", 443, cidr="10.0.0.0/8")
    snap.interface(ENI, IP, ["sg-a", "sg-b"])
    df = find(tmp_path, snap, handshake(ENI, "10.1.2.3", IP, 40000, 443))
    assert "not both" in one(df, "redundant_rule", rule_id="sgr-a")["sentence"]
    assert "not both" in one(df, "redundant_rule", rule_id="sgr-b")["sentence"]


def test_redundant_rule_covered_by_a_shadowed_one_says_not_both(tmp_path):
    # sgr-narrow is shadowed by sgr-wide; sgr-wide carried nothing sgr-narrow did not: redundant. Each finding
    # says to remove its rule, and doing both would cut SSH: the redundant one must say so.
    snap = web(("sgr-narrow", "tcp", 22, {"cidr": "10.0.0.0/24"}), ("sgr-wide", "tcp", 22, {"cidr": "10.0.0.0/16"}))
    df = find(tmp_path, snap, handshake(ENI, "10.0.0.9", IP, 40000, 22))
    assert "shadowed_rule" in kinds_of(df, "sgr-narrow")
    f = one(df, "redundant_rule", rule_id="sgr-wide")
    assert "sgr-narrow is reported for removal too (as shadowed), so remove one of them, not both" in f["sentence"]


def test_used_egress_rule_carried_connections_to_its_peers(tmp_path):
    snap = web(("sgr-out", "-1", {"egress": True, "cidr": "0.0.0.0/0"}))
    df = find(tmp_path, snap, handshake(ENI, IP, "198.51.100.7", 40000, 443, inbound=False))
    assert "carried 1 connection to 1 address on port 443" in one(df, "all_traffic_rule", rule_id="sgr-out")["sentence"]


def test_prefix_list_open_to_the_world_is_world_open(tmp_path):
    # A prefix list holding 0.0.0.0/0, or the two halves of the internet, opens a port to everyone.
    snap = web(("sgr-ssh", "tcp", 22, {"prefix_list": "pl-anywhere"}),
               ("sgr-rdp", "tcp", 3389, {"prefix_list": "pl-halves"}),
               ("sgr-wide", "tcp", 443, {"prefix_list": "pl-wide"}),
               ("sgr-narrow", "tcp", 8443, {"prefix_list": "pl-vpn"}))
    snap.prefix_list("pl-anywhere", ["0.0.0.0/0"]).prefix_list("pl-halves", ["0.0.0.0/1", "128.0.0.0/1"])
    snap.prefix_list("pl-wide", ["203.0.0.0/8", "10.0.0.0/24"]).prefix_list("pl-vpn", ["172.20.0.0/16"])
    df = find(tmp_path, snap, handshake(ENI, "198.51.100.7", IP, 40000, 22))
    ssh = one(df, "admin_port_open_to_world", rule_id="sgr-ssh")
    assert (ssh["severity"], ssh["control"]) == ("high", "EC2.13")
    assert "from prefix list pl-anywhere, whose entries cover the whole internet" in ssh["sentence"]
    assert one(df, "admin_port_open_to_world", rule_id="sgr-rdp")["severity"] == "critical"  # unused
    wide = one(df, "wide_cidr", rule_id="sgr-wide")
    assert wide["title"] == "/8 source range" and "world_open_ingress" not in kinds_of(df, "sgr-wide")
    assert kinds_of(df, "sgr-narrow") == {"unused_rule"}
    result = run(tmp_path / "again", snap, handshake(ENI, "198.51.100.7", IP, 40000, 22))
    assert set(sgaudit.summaries.world_open(result)["rule_id"]) == {"sgr-ssh", "sgr-rdp"}
    result.close()


def test_world_open_icmp_is_not_told_to_go(tmp_path):
    # Path MTU Discovery: routers send "fragmentation needed" (ICMP type 3 code 4) one way. The rule is only
    # attempted, by SPEC, but neither finding may tell to remove it, and none speaks of RST.
    snap = web(("sgr-pmtud", "icmp", 3, 4, {"cidr": "0.0.0.0/0"}), ("sgr-ping", "icmp", 8, -1, {"cidr": "0.0.0.0/0"}))
    recs = [rec(ENI, "203.0.113.1", IP, 0, 0, proto=1, direction="ingress"),
            rec(ENI, "203.0.113.2", IP, 0, 0, proto=1, direction="ingress")]
    df = find(tmp_path, snap, recs)
    for kind in ("world_open_ingress", "attempted_only_rule"):
        f = one(df, kind, rule_id="sgr-pmtud")
        assert f["severity"] == "info" and "RST" not in f["sentence"] and "one-way ICMP" in f["sentence"]
        assert f["fix"].startswith("keep it if")
    world = one(df, "world_open_ingress", rule_id="sgr-pmtud")
    assert (world["title"], world["control"]) == ("ICMP open to the internet", "")


def test_shadowed_rule_inside_a_wider_rule_of_the_same_group(tmp_path):
    snap = web(("sgr-world", "tcp", 22, {"cidr": "0.0.0.0/0"}), ("sgr-one", "tcp", 22, {"cidr": "198.51.100.7/32"}),
               ("sgr-other-port", "tcp", 23, {"cidr": "198.51.100.7/32"}),
               ("sgr-range", "tcp", 20, 30, {"cidr": "198.51.0.0/16"}))
    df = find(tmp_path, snap, handshake(ENI, "198.51.100.7", IP, 40000, 22))
    f = one(df, "shadowed_rule", rule_id="sgr-one")
    assert f["severity"] == "low" and "sgr-world" in f["sentence"] and "sgr-range" in f["sentence"]
    assert "carried 1 connection" in f["sentence"]
    assert "redundant_rule" not in kinds_of(df, "sgr-one")  # the static finding already says it
    assert "shadowed_rule" in kinds_of(df, "sgr-other-port")  # 23 lies in sgr-range's 20-30
    assert "shadowed_rule" not in kinds_of(df, "sgr-world") and "shadowed_rule" not in kinds_of(df, "sgr-range")


def test_shadowed_rule_negatives_and_prefix_list_in_the_world(tmp_path):
    snap = web(("sgr-v4", "-1", {"egress": True, "cidr": "0.0.0.0/0"}),
               ("sgr-v6", "-1", {"egress": True, "cidr": "::/0"}),
               ("sgr-pl", "tcp", 443, {"egress": True, "prefix_list": "pl-s3"}),
               ("sgr-in", "tcp", 443, {"cidr": "10.0.0.0/8"}))
    snap.prefix_list("pl-s3", ["52.216.0.0/15"])
    snap.group("sg-other").rule("sgr-elsewhere", "sg-other", "tcp", 443, cidr="10.1.0.0/16")
    snap.interface("eni-o", "10.0.9.9", ["sg-other"])
    df = find(tmp_path, snap, observed())
    assert "sgr-v4" in one(df, "shadowed_rule", rule_id="sgr-pl")["sentence"]
    # IPv4 never contains IPv6; ingress is not egress; another group's rule does not shadow
    assert not (df["kind"] == "shadowed_rule").loc[df["rule_id"].isin(["sgr-v6", "sgr-in", "sgr-elsewhere"])].any()


def test_identical_rules_report_one_of_them(tmp_path):
    snap = web(("sgr-a", "tcp", 443, {"cidr": "10.0.0.0/8"}), ("sgr-b", "tcp", 443, {"cidr": "10.0.0.0/8"}))
    df = find(tmp_path, snap, observed())
    assert list(df.loc[df["kind"] == "shadowed_rule", "rule_id"]) == ["sgr-b"]


# --- groups --------------------------------------------------------------------------------------------------

def test_unobserved_group_names_its_interfaces(tmp_path):
    snap = web(("sgr-in", "tcp", 443, {"cidr": "10.0.0.0/8"}))
    snap.group("sg-x").interface("eni-x", "10.0.9.9", ["sg-x"])
    snap.rule("sgr-x", "sg-x", "tcp", 443, cidr="10.0.0.0/8")
    df = find(tmp_path, snap, observed(hours=3))
    f = one(df, "unobserved_group", group_id="sg-x")
    assert (f["severity"], f["interface_id"], f["control"]) == ("info", "eni-x", "")
    assert "eni-x" in f["sentence"] and "3 h 1 min window" in f["sentence"]
    assert "no evidence either way for its 1 rule" in f["sentence"]
    assert "unobserved_group" not in set(df.loc[df["group_id"] == "sg-web", "kind"])


def test_default_group_in_use(tmp_path):
    snap = web(("sgr-self", "-1", {"ref": "sg-web"}), ("sgr-out", "-1", {"egress": True, "cidr": "0.0.0.0/0"}),
               name="default")
    df = find(tmp_path, snap, observed())
    f = one(df, "default_group_in_use", group_id="sg-web")
    assert (f["severity"], f["control"], f["interface_id"]) == ("medium", "EC2.2", ENI)
    assert "the VPC's default" in f["sentence"] and "eni-web" in f["sentence"]


def test_default_group_with_a_world_rule_is_high(tmp_path):
    df = find(tmp_path, web(("sgr-ssh", "tcp", 22, {"cidr": "0.0.0.0/0"}), name="default"), observed())
    assert one(df, "default_group_in_use")["severity"] == "high"


def test_unattached_default_group_with_rules(tmp_path):
    snap = web(("sgr-self", "-1", {"ref": "sg-web"}), ("sgr-out", "-1", {"egress": True, "cidr": "0.0.0.0/0"}),
               name="default", attach=False)
    snap.group("sg-empty", "default", vpc="vpc-2")
    snap.group("sg-x").interface("eni-x", "10.0.9.9", ["sg-x"])
    df = find(tmp_path, snap, [nodata("eni-x")])
    f = one(df, "default_group_has_rules")
    assert (f["severity"], f["control"], f["group_id"]) == ("low", "EC2.2", "sg-web")
    assert "revoke-security-group-ingress --group-id sg-web --security-group-rule-ids sgr-self" in f["fix"]
    assert "revoke-security-group-egress --group-id sg-web --security-group-rule-ids sgr-out" in f["fix"]
    # a default group cannot be deleted, so it is never "unattached_group"; one without rules is fine
    assert "unattached_group" not in set(df.loc[df["group_id"].isin(["sg-web", "sg-empty"]), "kind"])
    assert set(df.loc[df["group_id"] == "sg-empty", "kind"]) == set()


# --- traffic -----------------------------------------------------------------------------------------------

def test_unexplained_traffic_per_interface(tmp_path):
    snap = web(("sgr-in", "tcp", 443, {"cidr": "10.0.0.0/8"}))
    recs = handshake(ENI, "10.1.0.77", IP, 40000, 6379) + handshake(ENI, "10.1.0.77", IP, 40001, 6379)
    df = find(tmp_path, snap, recs)
    f = one(df, "unexplained_traffic")
    assert (f["severity"], f["interface_id"], f["group_id"], f["observed_use"]) == ("medium", ENI, "sg-web", 2)
    assert "accepted 2 conversations from 1 address" in f["sentence"] and "inbound TCP 6379: 2" in f["sentence"]
    assert "snapshot" in f["sentence"]


def test_no_unexplained_traffic_when_rules_explain_it(tmp_path):
    df = find(tmp_path, web(("sgr-in", "tcp", 443, {"cidr": "10.0.0.0/8"})), handshake(ENI, "10.1.0.7", IP, 1, 443))
    assert "unexplained_traffic" not in set(df["kind"])


@pytest.mark.parametrize("port,severity", [(23, "low"), (12345, "info")])
def test_rejected_scan(tmp_path, port, severity):
    recs = [rec(ENI, peer, IP, 50000 + n, port, flags=2, direction="ingress", action="REJECT")
            for n, peer in enumerate(["203.0.113.1", "203.0.113.2", "203.0.113.2"])]
    df = find(tmp_path, web(("sgr-in", "tcp", 443, {"cidr": "10.0.0.0/8"})), recs)
    f = one(df, "rejected_scan")
    assert (f["severity"], f["interface_id"], f["exposure"], f["observed_use"]) == (severity, ENI, 3, 0)
    assert f"rejected 3 inbound attempts at TCP {port} from 2 addresses" in f["sentence"]
    assert "security group, a network ACL or a late packet" in f["sentence"]


def test_rejected_scan_groups_the_ports_of_one_interface(tmp_path):
    # One peer tries 7 ordinary ports and 2 EC2.19 ports, two more peers one ordinary port each: one info
    # finding for the ordinary ports (distinct peers over all of them: 3, where no port saw more than 2) and
    # one low finding for 22 and 3389.
    ordinary = [8443, 27017, 6379, 9000, 9001, 9002, 9003]
    recs = [rec(ENI, "198.51.100.1", IP, 40000 + i, port, flags=2, direction="ingress", action="REJECT")
            for i, port in enumerate(ordinary + [22, 3389])]
    recs += [rec(ENI, peer, IP, 41000 + i, port, flags=2, direction="ingress", action="REJECT")
             for i, (peer, port) in enumerate([("198.51.100.2", 8443), ("198.51.100.2", 8443),
                                               ("198.51.100.3", 27017)])]
    df = find(tmp_path, web(("sgr-in", "tcp", 443, {"cidr": "10.0.0.0/8"})), recs)
    scans = df[df["kind"] == "rejected_scan"].set_index("severity")
    assert sorted(scans.index) == ["info", "low"]
    info, low = scans.loc["info"], scans.loc["low"]
    assert info["exposure"] == 10 and info["title"] == "rejected inbound attempts at 7 ports"
    assert ("rejected 10 inbound attempts at 7 ports (TCP 8443 (3), TCP 27017 (2), TCP 6379 (1), TCP 9000 (1), "
            "TCP 9001 (1) and 2 more ports) from 3 addresses") in info["sentence"]
    assert "ports TCP 8443, TCP 27017, TCP 6379, TCP 9000, TCP 9001, TCP 9002, TCP 9003;" in info["evidence"]
    assert low["exposure"] == 2 and "at 2 ports (TCP 22 (1), TCP 3389 (1)) from 1 address " in low["sentence"]


def test_rejected_reply_of_an_accepted_connection_points_at_the_network_acl(tmp_path):
    syn, synack = handshake(ENI, "10.1.0.7", IP, 40000, 443)
    synack["action"] = "REJECT"
    df = find(tmp_path, web(("sgr-in", "tcp", 443, {"cidr": "10.0.0.0/8"})), [syn, synack])
    f = one(df, "rejected_scan")
    assert "network ACL or a late packet is likelier" in f["sentence"] and "network ACL" in f["fix"]



def test_rejected_attempts_of_both_kinds_at_one_port_say_how_many_of_each(tmp_path):
    syn, synack = handshake(ENI, "10.1.0.7", IP, 40000, 443)
    synack["action"] = "REJECT"
    probe = rec(ENI, "203.0.113.7", IP, 50000, 443, flags=2, direction="ingress", action="REJECT")
    df = find(tmp_path, web(("sgr-in", "tcp", 443, {"cidr": "10.0.0.0/8"})), [syn, synack, probe])
    f = one(df, "rejected_scan")
    assert "rejected 2 inbound attempts at TCP 443" in f["sentence"]
    assert "1 attempt of these also had accepted packets, where a network ACL or a late packet is likelier; " \
           "the others had none" in f["sentence"]
    assert f["fix"].startswith("check the subnet's network ACL") and "for the others, nothing to change" in f["fix"]

# --- Markdown ------------------------------------------------------------------------------------------------

def test_md_escape():
    assert md_escape("a|b <script> *x* [l](u) `c` _u_ \\ &") == (
        "a\\|b &lt;script&gt; \\*x\\* \\[l\\](u) \\`c\\` \\_u\\_ \\\\ &amp;")
    assert md_escape("two\nlines") == "two lines" and md_escape(None) == ""


def test_to_markdown_escapes_cells_and_counts(tmp_path):
    hostile = "web|<b>x</b>"
    df = find(tmp_path, web(("sgr-in", "tcp", 8443, {"cidr": "10.0.0.0/8"}), name=hostile), observed())
    md = to_markdown(df)
    assert md.startswith("# Security group findings\n")
    assert "<b>" not in md and "web\\|&lt;b&gt;x&lt;/b&gt;" in md
    rows = [line for line in md.splitlines() if line.startswith("| ") and "severity" not in line]
    assert len(rows) == len(df)
    assert all(line.count(" | ") == 5 for line in rows)  # six cells: no unescaped | inside
    assert f"{len(df)} findings:" in md


def test_to_markdown_of_nothing():
    assert "No findings." in to_markdown(pd.DataFrame(columns=COLUMNS))
    with pytest.raises(sgaudit.SgauditError, match="severity"):
        to_markdown(pd.DataFrame({"x": [1]}))


# --- the sample account ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def sample():
    result = sgaudit.analyze([SAMPLE / "flow-logs", SAMPLE / "cloudwatch" / "app-eni.log"], SAMPLE / "inventory")
    yield findings(result)
    result.close()


def test_sample_account_kinds(sample):
    assert set(sample["kind"]) == {
        "admin_port_open_to_world", "all_traffic_rule", "attempted_only_rule", "default_group_has_rules",
        "redundant_rule", "rejected_scan", "shadowed_rule", "unattached_group", "unexplained_traffic",
        "unobserved_group", "unused_rule", "wide_cidr", "world_open_ingress",
    }


def test_sample_account_headline_findings(sample):
    top = sample.iloc[0]
    assert (top["severity"], top["kind"], top["rule_id"], top["control"]) == (
        "critical", "admin_port_open_to_world", "sgr-0ebcdc0614747177d", "EC2.14")
    assert "4 h 59 min window only 22 addresses reached it (24 connections)" in top["sentence"]
    ssh = one(sample, "admin_port_open_to_world", rule_id="sgr-06f169bac89fda46e")
    assert ssh["severity"] == "high" and "55 connections from 48 addresses" in ssh["sentence"]
    legacy = one(sample, "unattached_group", group_id="sg-0599f4f1f6aacc53f")
    assert legacy["control"] == "EC2.22" and "legacy-sg" in legacy["sentence"]
    assert one(sample, "unobserved_group")["interface_id"] == "eni-0b491f74b1aa05d16"
    assert one(sample, "unexplained_traffic")["interface_id"] == "eni-08d92826b27a542dc"
    assert one(sample, "shadowed_rule", rule_id="sgr-09dba774fa532276a")["severity"] == "low"
    # AWS's default egress rules are info, never high
    egress = sample[(sample["kind"] == "all_traffic_rule")]
    assert len(egress) == 9 and set(egress["severity"]) == {"info"}
