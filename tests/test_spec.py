"""One named test per rule of docs/SPEC.md, each on a small literal account.

The test names follow SPEC's headings: window/coverage, records → conversations, conversations → rules,
and the usage table. Each asserts the value SPEC prescribes, so breaking the rule fails the test.
"""

from __future__ import annotations

import pytest
import sgaudit
from builders import (
    ARTICLE_HEADER,
    ARTICLE_LINES,
    T0,
    V2,
    Snapshot,
    handshake,
    nodata,
    rec,
    row,
    run,
    write_log,
    write_text,
)
from sgaudit.usage import NACL_OR_LATE, SG_OR_NACL, USAGE_COLUMNS

WEB, DB = "eni-web", "eni-db"
WEB_IP, DB_IP = "10.0.1.10", "10.0.2.20"
CLIENT = "198.51.100.7"


def account(**extra) -> Snapshot:
    """web (tcp 443 from anywhere, ssh from 10/8, default egress) and db (5432 from web-sg)."""
    s = Snapshot()
    s.group("sg-web", "web").group("sg-db", "db")
    s.rule("sgr-https", "sg-web", "tcp", 443, cidr="0.0.0.0/0")
    s.rule("sgr-ssh", "sg-web", "tcp", 22, cidr="10.0.0.0/8")
    s.rule("sgr-web-out", "sg-web", "-1", egress=True, cidr="0.0.0.0/0")
    s.rule("sgr-pg", "sg-db", "tcp", 5432, ref="sg-web")
    s.rule("sgr-db-out", "sg-db", "-1", egress=True, cidr="0.0.0.0/0")
    s.interface(WEB, WEB_IP, ["sg-web"], **extra)
    s.interface(DB, DB_IP, ["sg-db"])
    return s


def conv(result: sgaudit.Analysis, **where) -> list[dict]:
    df = result.conversations
    for k, v in where.items():
        df = df[df[k] == v]
    return df.to_dict("records")


# --- Inputs ----------------------------------------------------------------------------------------------

def test_spec_usage_table_has_exactly_the_spec_columns(tmp_path):
    r = run(tmp_path, account(), handshake(WEB, CLIENT, WEB_IP, 40000, 443))
    assert list(r.usage.columns) == USAGE_COLUMNS == [
        "group_id", "group_name", "rule_id", "direction", "protocol", "from_port", "to_port", "peer", "status",
        "evidence", "connections", "exclusive", "peers", "ports", "first_seen", "last_seen", "bytes", "packets"]
    assert len(r.usage) == 5  # one row per rule in the inventory


# --- Window and coverage -----------------------------------------------------------------------------------

def test_spec_window_is_span_of_records_read(tmp_path):
    recs = handshake(WEB, CLIENT, WEB_IP, 40000, 443, start=T0) + handshake(WEB, CLIENT, WEB_IP, 40001, 443,
                                                                           start=T0 + 3600)
    r = run(tmp_path, account(), recs)
    assert r.window[0].timestamp() == T0
    assert r.window[1].timestamp() == T0 + 3600 + 13


def test_spec_start_end_filter_the_records(tmp_path):
    early = handshake(WEB, CLIENT, WEB_IP, 40000, 443, start=T0)
    late = handshake(WEB, "10.9.9.9", WEB_IP, 40001, 22, start=T0 + 7200)
    r = run(tmp_path, account(), early + late, start=T0 + 3600, end=T0 + 10800)
    assert row(r, "sgr-https")["status"] == "unused"
    assert row(r, "sgr-ssh")["status"] == "used"
    q = r.quality.set_index("bucket")["records"]
    assert q["outside_window"] == 2 and q["conversation"] == 2 and q["total"] == 4


@pytest.mark.parametrize("status", ["NODATA", "SKIPDATA"])
def test_spec_interface_with_only_nodata_or_skipdata_is_observed(tmp_path, status):
    r = run(tmp_path, account(), [nodata(WEB, status=status)])
    assert row(r, "sgr-https")["status"] == "unused"  # observed, nothing matched
    assert row(r, "sgr-pg")["status"] == "unobserved"  # db has no record at all
    assert r.quality.set_index("bucket")["records"][status.lower()] == 1


def test_spec_interface_observed_by_reject_only(tmp_path):
    r = run(tmp_path, account(), [rec(WEB, CLIENT, WEB_IP, 40000, 23, flags=2, direction="ingress",
                                      action="REJECT")])
    assert row(r, "sgr-https")["status"] == "unused"


# --- From records to conversations ---------------------------------------------------------------------

def test_spec_flow_direction_decides_sides_even_for_unknown_local_address(tmp_path):
    # 10.0.1.99 is not an address of eni-web in the inventory; flow-direction still makes it local.
    recs = handshake(WEB, CLIENT, "10.0.1.99", 40000, 443)
    r = run(tmp_path, account(), recs)
    assert row(r, "sgr-https")["status"] == "used"
    [c] = conv(r)
    assert c["peer"] == CLIENT and c["local_port"] == 443 and c["direction"] == "inbound"


@pytest.mark.parametrize("local", ["10.0.1.10", "10.0.1.11", "2600:1f18::10", "10.0.1.200"],
                         ids=["primary", "secondary", "ipv6", "delegated-prefix"])
def test_spec_v2_local_side_is_the_address_belonging_to_the_interface(tmp_path, local):
    snap = account(secondary=["10.0.1.11"], ipv6=["2600:1f18::10"], prefixes=["10.0.1.192/28"])
    snap.rule("sgr-https6", "sg-web", "tcp", 443, cidr="::/0")
    peer = "2001:db8::7" if ":" in local else CLIENT
    recs = [rec(WEB, peer, local, 40000, 443), rec(WEB, local, peer, 443, 40000)]
    r = run(tmp_path, snap, recs, fmt=V2)
    [c] = conv(r)
    assert (c["peer"], c["local_port"], c["direction"]) == (peer, 443, "inbound")
    assert c["evidence"] == "inferred"  # v2 two-way traffic


def test_spec_v2_record_with_no_address_of_the_interface_is_unattributable(tmp_path):
    recs = [rec(WEB, CLIENT, "10.7.7.7", 40000, 443), rec(WEB, CLIENT, WEB_IP, 40001, 443)]
    r = run(tmp_path, account(), recs, fmt=V2)
    q = r.quality.set_index("bucket")["records"]
    assert q["unattributable"] == 1 and q["conversation"] == 1 and q["total"] == 2


def test_spec_conversation_is_protocol_local_port_peer_and_peer_port_in_either_direction(tmp_path):
    recs = handshake(WEB, CLIENT, WEB_IP, 40000, 443) + [
        rec(WEB, CLIENT, WEB_IP, 40000, 443, flags=0, direction="ingress", start=T0 + 60),
        rec(WEB, WEB_IP, CLIENT, 443, 40000, flags=1, direction="egress", start=T0 + 120),
    ] + handshake(WEB, CLIENT, WEB_IP, 40001, 443)  # another peer port: another conversation
    r = run(tmp_path, account(), recs)
    assert len(r.conversations) == 2
    assert row(r, "sgr-https")["connections"] == 2



@pytest.mark.parametrize(("fmt", "spellings", "shown"), [
    ("v5", ("2001:db8::1", "2001:DB8:0:0:0:0:0:1"), "2001:db8::1"),
    ("v2", ("2001:db8::1", "2001:DB8:0:0:0:0:0:1"), "2001:db8::1"),
    ("v5", ("2001:DB8::1", "2001:db8:0::1"), "2001:db8::1"),  # neither canonical: shown canonically
    ("v5", ("2001:DB8::1", "2001:DB8::1"), "2001:DB8::1"),  # written one way: shown as written
], ids=["v5", "v2", "neither-canonical", "one-spelling"])
def test_spec_conversation_peer_is_the_address_however_it_is_written(tmp_path, fmt, spellings, shown):
    # The same IPv6 peer spelled two ways (a tool rewrote the logs): one peer address, so one conversation,
    # and the SYN and the SYN-ACK in it make it established. The views over time key it the same way.
    snap = account(ipv6=["2600:1f18:aa::10"])
    snap.rule("sgr-https6", "sg-web", "tcp", 443, cidr="::/0")
    syn = rec(WEB, spellings[0], "2600:1f18:aa::10", 40000, 443, flags=2, direction="ingress")
    synack = rec(WEB, "2600:1f18:aa::10", spellings[1], 443, 40000, flags=18, direction="egress")
    if fmt == "v2":
        syn, synack = [dict(r, **{"flow-direction": None, "tcp-flags": None}) for r in (syn, synack)]
    r = run(tmp_path, snap, [syn, synack])
    u = row(r, "sgr-https6")
    assert (u["connections"], u["exclusive"], u["peers"]) == (1, 1, 1)
    assert u["evidence"] == ("established" if fmt == "v5" else "inferred")
    [c] = conv(r)
    assert c["peer"] == shown and c["packets"] == 2
    cells = r.timeline("1h").rules
    assert cells.loc[cells["rule_id"] == "sgr-https6", "connections"].sum() == 1


def test_spec_ipv4_with_a_leading_zero_is_not_an_address(tmp_path):
    # "010.0.0.1" is no address AWS writes (and Python's ipaddress refuses it): malformed, never a second
    # spelling of 10.0.0.1 that would split one conversation in two.
    recs = [rec(WEB, "010.0.0.1", WEB_IP, 40000, 22, flags=2, direction="ingress"),
            rec(WEB, WEB_IP, "10.0.0.1", 22, 40000, flags=18, direction="egress")]
    r = run(tmp_path, account(), recs)
    q = r.quality.set_index("bucket")["records"]
    assert (q["malformed"], q["conversation"]) == (1, 1)
    assert row(r, "sgr-ssh")["evidence"] == "inferred"

def test_spec_icmp_is_one_conversation_per_interface_protocol_and_peer(tmp_path):
    snap = account()
    snap.rule("sgr-icmp", "sg-web", "icmp", -1, cidr="10.0.0.0/8")
    recs = [rec(WEB, "10.0.9.9", WEB_IP, 0, 0, proto=1, direction="ingress"),
            rec(WEB, WEB_IP, "10.0.9.9", 0, 0, proto=1, direction="egress"),
            rec(WEB, "10.0.9.9", WEB_IP, 0, 0, proto=1, direction="ingress", start=T0 + 600)]
    r = run(tmp_path, snap, recs)
    [c] = conv(r)
    assert c["protocol"] == 1 and c["evidence"] == "inferred"
    assert row(r, "sgr-icmp")["status"] == "used" and row(r, "sgr-icmp")["ports"] == ""


@pytest.mark.parametrize("req,resp", [(2, 18), (3, 19)], ids=["2-18", "3-19"])
def test_spec_initiator_is_the_syn_sender_confirmed_by_syn_ack(tmp_path, req, resp):
    r = run(tmp_path, account(), handshake(WEB, CLIENT, WEB_IP, 40000, 443, req_flags=req, resp_flags=resp))
    [c] = conv(r)
    assert (c["direction"], c["evidence"], c["port"]) == ("inbound", "established", 443)


def test_spec_syn_and_syn_ack_in_adjacent_intervals(tmp_path):
    syn, synack = handshake(WEB, CLIENT, WEB_IP, 40000, 443)
    synack["start"], synack["end"] = T0 + 60, T0 + 70
    r = run(tmp_path, account(), [syn, synack])
    assert row(r, "sgr-https")["evidence"] == "established"


@pytest.mark.parametrize("synack_from,local_port,peer_port,direction", [
    ("local", 443, 40000, "inbound"), ("local", 50000, 443, "inbound"),
    ("peer", 443, 40000, "outbound"), ("peer", 50000, 443, "outbound"),
], ids=["E-answers-low-port", "E-answers-high-port", "peer-answers-high-port", "peer-answers-low-port"])
def test_spec_syn_ack_without_syn_gives_direction_and_inferred(tmp_path, synack_from, local_port, peer_port,
                                                              direction):
    # The SYN-ACK's sender is the responder, whatever the ports say; rules allow both ways here.
    snap = account()
    snap.rule("sgr-all-in", "sg-web", "tcp", 0, 65535, cidr="0.0.0.0/0")
    from_local = synack_from == "local"
    recs = [rec(WEB, WEB_IP, CLIENT, local_port, peer_port, flags=18 if from_local else 0, direction="egress"),
            rec(WEB, CLIENT, WEB_IP, peer_port, local_port, flags=0 if from_local else 18, direction="ingress")]
    r = run(tmp_path, snap, recs)
    [c] = conv(r)
    assert (c["direction"], c["evidence"]) == (direction, "inferred")


def test_spec_outbound_connection_counts_the_remote_port(tmp_path):
    r = run(tmp_path, account(), handshake(WEB, WEB_IP, "203.0.113.5", 50000, 8443, inbound=False))
    [c] = conv(r)
    assert (c["direction"], c["port"]) == ("outbound", 8443)
    assert row(r, "sgr-web-out")["ports"] == "8443"
    assert row(r, "sgr-https")["status"] == "unused"


@pytest.mark.parametrize("allowed,local_port,peer_port", [("inbound", 5000, 53), ("outbound", 53, 5000)],
                         ids=["only-ingress-allows", "only-egress-allows"])
def test_spec_without_flags_rules_of_exactly_one_direction_decide(tmp_path, allowed, local_port, peer_port):
    # Two-way UDP where the rules of one direction only could allow it: that direction wins, even
    # against the lower-port rule (which would pick the other one in both cases).
    snap = Snapshot().group("sg-x", "x")
    if allowed == "inbound":
        snap.rule("sgr-x", "sg-x", "udp", local_port, cidr="10.0.0.0/8")
    else:
        snap.rule("sgr-x", "sg-x", "udp", peer_port, egress=True, cidr="10.0.0.0/8")
    snap.interface(WEB, WEB_IP, ["sg-x"])
    recs = [rec(WEB, WEB_IP, "10.1.1.1", local_port, peer_port, proto=17, direction="egress"),
            rec(WEB, "10.1.1.1", WEB_IP, peer_port, local_port, proto=17, direction="ingress")]
    r = run(tmp_path, snap, recs)
    [c] = conv(r)
    assert (c["direction"], c["evidence"]) == (allowed, "inferred")
    assert row(r, "sgr-x")["status"] == "used"


@pytest.mark.parametrize("local_port,peer_port,direction", [(443, 40000, "inbound"), (50000, 443, "outbound")],
                         ids=["local-lower", "peer-lower"])
def test_spec_without_flags_lower_port_is_the_responder_when_rules_do_not_decide(tmp_path, local_port, peer_port,
                                                                                   direction):
    # Both directions allowed (ingress all tcp from anywhere, egress all), flags 0 (mid-stream).
    snap = account()
    snap.rule("sgr-all-in", "sg-web", "tcp", 0, 65535, cidr="0.0.0.0/0")
    recs = [rec(WEB, CLIENT, WEB_IP, peer_port, local_port, flags=0, direction="ingress"),
            rec(WEB, WEB_IP, CLIENT, local_port, peer_port, flags=0, direction="egress")]
    r = run(tmp_path, snap, recs)
    [c] = conv(r)
    assert (c["direction"], c["port"], c["evidence"]) == (direction, min(local_port, peer_port), "inferred")


def test_spec_without_flags_equal_ports_count_as_inbound(tmp_path):
    # SPEC is silent on a tie (ICMP, or equal ports with both directions allowed): sgaudit counts it as
    # initiated by the peer (docs/decisions.md).
    snap = account()
    snap.rule("sgr-ntp-in", "sg-web", "udp", 123, cidr="0.0.0.0/0")
    recs = [rec(WEB, CLIENT, WEB_IP, 123, 123, proto=17, direction="ingress"),
            rec(WEB, WEB_IP, CLIENT, 123, 123, proto=17, direction="egress")]
    r = run(tmp_path, snap, recs)
    [c] = conv(r)
    assert c["direction"] == "inbound"


@pytest.mark.parametrize("sender", ["peer", "local"])
def test_spec_one_way_traffic_the_sender_initiated_and_udp_is_attempted(tmp_path, sender):
    # The sender initiated even from the lower port (514 < 41000), which the port rule would make the
    # responder; one-way UDP is only an attempt.
    snap = account()
    snap.rule("sgr-syslog", "sg-web", "udp", 41000, cidr="10.0.0.0/8")
    snap.rule("sgr-514", "sg-web", "udp", 514, cidr="10.0.0.0/8")  # so the rules allow both ways
    if sender == "peer":
        recs = [rec(WEB, "10.3.3.3", WEB_IP, 514, 41000, proto=17, direction="ingress")]
    else:
        recs = [rec(WEB, WEB_IP, "10.3.3.3", 514, 41000, proto=17, direction="egress")]
    r = run(tmp_path, snap, recs)
    [c] = conv(r)
    assert (c["direction"], c["port"], c["evidence"]) == (
        "inbound" if sender == "peer" else "outbound", 41000, "attempted")
    assert row(r, "sgr-syslog" if sender == "peer" else "sgr-web-out")["status"] == "attempted"


def test_spec_tcp_flags_on_other_protocols_are_ignored(tmp_path):
    # "Initiator (TCP)": the handshake flags are TCP's. A UDP record carrying a SYN and its reply a SYN-ACK
    # (AWS writes 0 there) would make E the initiator and the conversation established; ignored, the
    # rules allow both ways and the lower port (E's 514) is the responder: inbound, inferred.
    snap = account()
    snap.rule("sgr-514", "sg-web", "udp", 514, cidr="10.0.0.0/8")
    recs = [rec(WEB, WEB_IP, "10.3.3.3", 514, 41000, proto=17, flags=2, direction="egress"),
            rec(WEB, "10.3.3.3", WEB_IP, 41000, 514, proto=17, flags=18, direction="ingress")]
    r = run(tmp_path, snap, recs)
    [c] = conv(r)
    assert (c["direction"], c["port"], c["evidence"]) == ("inbound", 514, "inferred")
    assert row(r, "sgr-514")[["status", "evidence"]].tolist() == ["used", "inferred"]


def test_spec_syn_answered_by_rst_is_attempted(tmp_path):
    r = run(tmp_path, account(), handshake(WEB, CLIENT, WEB_IP, 40000, 443, resp_flags=4))
    assert row(r, "sgr-https")[["status", "evidence"]].tolist() == ["attempted", "attempted"]


@pytest.mark.parametrize("syn_from", ["local", "peer"])
def test_spec_syn_sender_decides_the_direction_whatever_the_ports(tmp_path, syn_from):
    # A SYN from port 443 to 40000, answered by RST: the SYN's sender initiated, so the port that counts
    # is 40000 although 443 is the lower port. Rules allow both ways.
    snap = account()
    snap.rule("sgr-all-in", "sg-web", "tcp", 0, 65535, cidr="0.0.0.0/0")
    local_port, peer_port = (443, 40000) if syn_from == "local" else (40000, 443)
    recs = [rec(WEB, WEB_IP, CLIENT, local_port, peer_port, flags=2 if syn_from == "local" else 4, direction="egress"),
            rec(WEB, CLIENT, WEB_IP, peer_port, local_port, flags=4 if syn_from == "local" else 2, direction="ingress")]
    r = run(tmp_path, snap, recs)
    [c] = conv(r)
    assert (c["direction"], c["port"], c["evidence"]) == (
        "outbound" if syn_from == "local" else "inbound", 40000, "attempted")


def test_spec_only_the_initiators_side_is_attempted(tmp_path):
    r = run(tmp_path, account(), [rec(WEB, CLIENT, WEB_IP, 40000, 443, flags=2, direction="ingress")])
    assert row(r, "sgr-https")["status"] == "attempted"


def test_spec_v2_two_way_traffic_is_inferred_never_established(tmp_path):
    recs = [rec(WEB, CLIENT, WEB_IP, 40000, 443), rec(WEB, WEB_IP, CLIENT, 443, 40000)]
    r = run(tmp_path, account(), recs, fmt=V2)
    assert row(r, "sgr-https")["evidence"] == "inferred"


def test_spec_reject_is_never_usage_and_is_reported_per_port_counting_peer_and_peer_port(tmp_path):
    recs = [rec(WEB, CLIENT, WEB_IP, p, 443, flags=2, direction="ingress", action="REJECT")
            for p in (40000, 40000, 40001)]
    recs.append(rec(WEB, "198.51.100.8", WEB_IP, 40000, 443, flags=2, direction="ingress", action="REJECT"))
    r = run(tmp_path, account(), recs)
    assert row(r, "sgr-https")["status"] == "unused"
    [rej] = r.rejected.to_dict("records")
    assert (rej["interface_id"], rej["direction"], rej["protocol"], rej["port"]) == (WEB, "inbound", 6, 443)
    assert rej["attempts"] == 3 and rej["peers"] == 2 and rej["records"] == 4
    assert "network ACL" in rej["likely_cause"]
    # The coverage table counts REJECT records, and its column says so: they are not attempts.
    cov = r.coverage.set_index("interface_id")
    assert "rejected" not in cov.columns and cov.loc[WEB, "rejected_records"] == 4



def test_spec_rejected_attempts_never_cross_ipv4_and_ipv6(tmp_path):
    # 10.0.0.9 and ::a00:9 are one number and two peers (SPEC: IPv4 and IPv6 never cross): two attempts,
    # also when both were also accepted.
    recs = [rec(WEB, peer, dst, 40000, 443, flags=2, direction="ingress", action=action)
            for peer, dst in (("10.0.0.9", WEB_IP), ("::a00:9", "2001:db8::5")) for action in ("ACCEPT", "REJECT")]
    [rej] = run(tmp_path, account(), recs).rejected.to_dict("records")
    assert (rej["attempts"], rej["peers"], rej["records"], rej["attempts_also_accepted"]) == (2, 2, 2, 2)


def test_rejected_row_holding_both_kinds_of_attempt_says_so(tmp_path):
    # Port 22: a client whose SYN was accepted but whose SYN-ACK was rejected (a network ACL or a late
    # packet is likelier), and a scanner with nothing accepted. One row, as SPEC groups them, that names
    # neither cause for both: it counts the first kind and says the row is mixed.
    recs = [rec(WEB, "10.9.9.9", WEB_IP, 40000, 22, flags=2, direction="ingress"),
            rec(WEB, WEB_IP, "10.9.9.9", 22, 40000, flags=18, direction="egress", action="REJECT"),
            rec(WEB, "203.0.113.7", WEB_IP, 50000, 22, flags=2, direction="ingress", action="REJECT")]
    r = run(tmp_path, account(), recs)
    [rej] = r.rejected.to_dict("records")
    assert (rej["port"], rej["attempts"], rej["attempts_also_accepted"], rej["records"]) == (22, 2, 1, 2)
    assert rej["likely_cause"].startswith("mixed: 1 of 2 attempts also had accepted packets")
    alone = run(tmp_path / "alone", account(), recs[:2]).rejected.iloc[0]
    assert (alone["attempts_also_accepted"], alone["likely_cause"]) == (1, NACL_OR_LATE)
    scan = run(tmp_path / "scan", account(), recs[2:]).rejected.iloc[0]
    assert (scan["attempts_also_accepted"], scan["likely_cause"]) == (0, SG_OR_NACL)

# --- From conversations to rules -----------------------------------------------------------------------

@pytest.mark.parametrize("proto", ["tcp", "6", "-1"], ids=["name", "number", "all"])
def test_spec_protocol_names_numbers_and_all(tmp_path, proto):
    snap = Snapshot().group("sg-x")
    snap.rule("sgr-x", "sg-x", proto, 443 if proto != "-1" else -1, cidr="0.0.0.0/0")
    snap.interface(WEB, WEB_IP, ["sg-x"])
    r = run(tmp_path, snap, handshake(WEB, CLIENT, WEB_IP, 40000, 443))
    assert row(r, "sgr-x")["status"] == "used"


@pytest.mark.parametrize("lo,hi,used", [(400, 500, True), (444, 500, False), (-1, -1, True)],
                         ids=["in-range", "out-of-range", "all-ports"])
def test_spec_port_range(tmp_path, lo, hi, used):
    snap = Snapshot().group("sg-x")
    snap.rule("sgr-x", "sg-x", "tcp", lo, hi, cidr="0.0.0.0/0")
    snap.interface(WEB, WEB_IP, ["sg-x"])
    r = run(tmp_path, snap, handshake(WEB, CLIENT, WEB_IP, 40000, 443))
    assert (row(r, "sgr-x")["status"] == "used") is used


def test_spec_only_rules_of_groups_attached_to_the_interface_match(tmp_path):
    # db's group would allow 443 from anywhere, but the traffic is at web.
    snap = account()
    snap.rule("sgr-db-443", "sg-db", "tcp", 443, cidr="0.0.0.0/0")
    r = run(tmp_path, snap, handshake(WEB, CLIENT, WEB_IP, 40000, 443) + [nodata(DB)])
    assert row(r, "sgr-db-443")["status"] == "unused"


def test_spec_direction_must_fit(tmp_path):
    # An egress rule for tcp 443 does not explain an inbound connection to 443.
    snap = Snapshot().group("sg-x")
    snap.rule("sgr-out-443", "sg-x", "tcp", 443, egress=True, cidr="0.0.0.0/0")
    snap.interface(WEB, WEB_IP, ["sg-x"])
    r = run(tmp_path, snap, handshake(WEB, CLIENT, WEB_IP, 40000, 443))
    assert row(r, "sgr-out-443")["status"] == "unused"
    assert len(r.unexplained) == 1


def test_spec_peer_in_prefix_list_entry(tmp_path):
    snap = account().prefix_list("pl-corp", ["192.0.2.0/24", "198.51.100.0/24"])
    snap.rule("sgr-pl", "sg-web", "tcp", 8443, prefix_list="pl-corp")
    r = run(tmp_path, snap, handshake(WEB, CLIENT, WEB_IP, 40000, 8443))
    assert row(r, "sgr-pl")["status"] == "used"


def test_spec_prefix_list_entries_never_cross_ipv4_and_ipv6(tmp_path):
    # An IPv6 entry holding the numbers of IPv4 addresses (::/64 holds 0 to 2**64 - 1) admits no IPv4 peer,
    # and an IPv4 entry no IPv6 peer of the same number.
    snap = account().prefix_list("pl-v6", ["::/64"]).prefix_list("pl-v4", ["0.0.0.0/24"])
    snap.rule("sgr-pl6", "sg-web", "tcp", 8443, prefix_list="pl-v6")
    snap.rule("sgr-pl4", "sg-web", "tcp", 9443, prefix_list="pl-v4")
    recs = handshake(WEB, "0.0.0.5", WEB_IP, 40000, 8443) + handshake(WEB, "::5", "2001:db8::5", 40000, 9443)
    r = run(tmp_path, snap, recs)
    assert row(r, "sgr-pl6")["status"] == "unused" and row(r, "sgr-pl4")["status"] == "unused"
    assert len(r.unexplained) == 2


@pytest.mark.parametrize("which", ["primary", "secondary", "ipv6"])
def test_spec_referenced_group_admits_private_addresses_of_its_interfaces(tmp_path, which):
    snap = Snapshot().group("sg-web").group("sg-db")
    snap.rule("sgr-pg", "sg-db", "tcp", 5432, ref="sg-web")
    snap.rule("sgr-pg6", "sg-db", "tcp", 5432, ref="sg-web")
    snap.interface(WEB, WEB_IP, ["sg-web"], secondary=["10.0.1.11"], ipv6=["2600:1f18::10"])
    snap.interface(DB, DB_IP, ["sg-db"], ipv6=["2600:1f18::20"])
    client = {"primary": WEB_IP, "secondary": "10.0.1.11", "ipv6": "2600:1f18::10"}[which]
    server = "2600:1f18::20" if which == "ipv6" else DB_IP
    r = run(tmp_path, snap, handshake(DB, client, server, 40000, 5432))
    assert row(r, "sgr-pg")["status"] == "used"


def test_spec_referenced_group_does_not_admit_other_addresses(tmp_path):
    r = run(tmp_path, account(), handshake(DB, "10.0.1.99", DB_IP, 40000, 5432))
    assert row(r, "sgr-pg")["status"] == "unused"
    assert len(r.unexplained) == 1


def test_spec_unresolvable_referenced_group_is_reported_not_guessed(tmp_path):
    snap = account()
    snap.rule("sgr-peer", "sg-db", "tcp", 9000,
              ref_info={"GroupId": "sg-0peer", "UserId": "111122223333", "VpcPeeringConnectionId": "pcx-1",
                        "PeeringStatus": "active"})
    r = run(tmp_path, snap, handshake(DB, "10.50.0.5", DB_IP, 40000, 9000))
    assert row(r, "sgr-peer")["connections"] == 0
    probs = r.problems[r.problems["kind"] == "referenced_group_unresolved"]
    assert "sgr-peer" in set(probs["resource"]) and "peered VPC" in probs["detail"].iloc[0]
    assert len(r.unexplained) == 1


def test_spec_ipv4_and_ipv6_never_cross(tmp_path):
    snap = account(ipv6=["2600:1f18::10"])  # sgr-https is 0.0.0.0/0 only
    r = run(tmp_path, snap, handshake(WEB, "2001:db8::7", "2600:1f18::10", 40000, 443))
    assert row(r, "sgr-https")["status"] == "unused"
    assert len(r.unexplained) == 1


def test_spec_icmp_matches_every_icmp_rule_of_its_family(tmp_path):
    snap = account(ipv6=["2600:1f18::10"])
    snap.rule("sgr-echo", "sg-web", "icmp", 8, 0, cidr="10.0.0.0/8")  # type 8 code 0: flow logs cannot tell
    snap.rule("sgr-unreach", "sg-web", "icmp", 3, -1, cidr="10.0.0.0/8")
    snap.rule("sgr-icmp6", "sg-web", "icmpv6", -1, cidr="::/0")
    recs = [rec(WEB, "10.0.9.9", WEB_IP, 0, 0, proto=1, direction="ingress"),
            rec(WEB, WEB_IP, "10.0.9.9", 0, 0, proto=1, direction="egress")]
    r = run(tmp_path, snap, recs)
    assert row(r, "sgr-echo")["status"] == row(r, "sgr-unreach")["status"] == "used"
    assert row(r, "sgr-echo")["exclusive"] == 0
    assert row(r, "sgr-icmp6")["status"] == "unused"


def test_spec_every_matching_rule_gets_the_conversation_and_exclusive_counts_sole_matches(tmp_path):
    snap = account()
    snap.rule("sgr-https-corp", "sg-web", "tcp", 443, cidr="198.51.100.0/24")
    recs = handshake(WEB, CLIENT, WEB_IP, 40000, 443) + handshake(WEB, "203.0.113.9", WEB_IP, 40001, 443)
    r = run(tmp_path, snap, recs)
    assert row(r, "sgr-https")[["connections", "exclusive"]].tolist() == [2, 1]
    assert row(r, "sgr-https-corp")[["connections", "exclusive"]].tolist() == [1, 0]


def test_spec_exclusive_spans_all_groups_of_the_interface(tmp_path):
    snap = account()
    snap.group("sg-extra").rule("sgr-extra-443", "sg-extra", "tcp", 443, cidr="0.0.0.0/0")
    snap.enis[0]["Groups"].append({"GroupId": "sg-extra", "GroupName": "extra"})
    r = run(tmp_path, snap, handshake(WEB, CLIENT, WEB_IP, 40000, 443))
    assert row(r, "sgr-https")["exclusive"] == 0 and row(r, "sgr-extra-443")["exclusive"] == 0


def test_spec_unexplained_accepted_conversation_is_reported(tmp_path):
    r = run(tmp_path, account(), handshake(WEB, CLIENT, WEB_IP, 40000, 6379))
    [u] = r.unexplained.to_dict("records")
    assert (u["interface_id"], u["direction"], u["port"], u["evidence"]) == (WEB, "inbound", 6379, "established")


@pytest.mark.parametrize("case", ["no-groups", "not-in-snapshot"])
def test_spec_interfaces_without_groups_or_missing_count_for_coverage_only(tmp_path, case):
    snap = account()
    if case == "no-groups":
        snap.interface("eni-nat", "10.0.0.5", [], itype="nat_gateway")
    recs = handshake("eni-nat", CLIENT, "10.0.0.5", 40000, 443)
    r = run(tmp_path, snap, recs)
    bucket = "no_security_groups" if case == "no-groups" else "interface_not_in_snapshot"
    assert r.quality.set_index("bucket")["records"][bucket] == 2
    assert len(r.unexplained) == 0 and len(r.conversations) == 0
    cov = r.coverage.set_index("interface_id").loc["eni-nat"]
    assert bool(cov["observed"]) and bool(cov["in_snapshot"]) is (case == "no-groups")


# --- The usage table -------------------------------------------------------------------------------------

def test_spec_status_used_attempted_unused_unobserved_unattached(tmp_path):
    snap = account()
    snap.group("sg-legacy").rule("sgr-legacy", "sg-legacy", "tcp", 21, cidr="0.0.0.0/0")
    snap.group("sg-batch").rule("sgr-batch", "sg-batch", "tcp", 8080, cidr="10.0.0.0/8")
    snap.interface("eni-batch", "10.0.3.3", ["sg-batch"])
    recs = handshake(WEB, CLIENT, WEB_IP, 40000, 443) + [
        rec(WEB, "10.1.1.1", WEB_IP, 40001, 22, flags=2, direction="ingress")] + [nodata(DB)]
    r = run(tmp_path, snap, recs)
    got = {k: row(r, k)["status"] for k in ("sgr-https", "sgr-ssh", "sgr-pg", "sgr-batch", "sgr-legacy")}
    assert got == {"sgr-https": "used", "sgr-ssh": "attempted", "sgr-pg": "unused", "sgr-batch": "unobserved",
                   "sgr-legacy": "unattached"}
    assert row(r, "sgr-pg")["evidence"] == "" and row(r, "sgr-ssh")["evidence"] == "attempted"


def test_spec_evidence_is_the_best_among_matched_conversations(tmp_path):
    recs = [rec(WEB, CLIENT, WEB_IP, 40000, 443, flags=2, direction="ingress")]  # attempted
    recs += [rec(WEB, CLIENT, WEB_IP, 40001, 443, flags=0, direction="ingress"),
             rec(WEB, WEB_IP, CLIENT, 443, 40001, flags=0, direction="egress")]  # inferred
    r = run(tmp_path, account(), recs)
    assert row(r, "sgr-https")[["status", "evidence", "connections"]].tolist() == ["used", "inferred", 2]


def test_spec_counts_peers_ports_times_bytes_and_packets(tmp_path):
    recs = handshake(WEB, CLIENT, WEB_IP, 40000, 443, start=T0)
    recs += handshake(WEB, CLIENT, WEB_IP, 40001, 443, start=T0 + 100)
    recs += handshake(WEB, "203.0.113.9", WEB_IP, 40002, 443, start=T0 + 200)
    recs += [rec(WEB, CLIENT, WEB_IP, 40003, 443, flags=2, direction="ingress", action="REJECT",
                 start=T0 + 900, packets=5, bytes_=999)]  # REJECT: not counted for the rule
    r = run(tmp_path, account(), recs)
    got = row(r, "sgr-https")
    assert (got["connections"], got["peers"], got["ports"]) == (3, 2, "443")
    assert got["first_seen"].timestamp() == T0 and got["last_seen"].timestamp() == T0 + 213
    assert (got["bytes"], got["packets"]) == (3 * 300, 3 * 5)  # both ways: 180 + 120 bytes, 3 + 2 packets
    assert str(got["last_seen"].tz) == "UTC"


def test_spec_first_and_last_seen_come_from_accepted_records(tmp_path):
    # A late packet of the same conversation, rejected after the connection ended (SPEC: "REJECT can come
    # from ... a late packet"), and one rejected before it: neither moves the rule's times nor its sums
    # (docs/decisions.md); the rejected table keeps their times.
    recs = handshake(WEB, CLIENT, WEB_IP, 40000, 443, start=T0)
    recs += [rec(WEB, CLIENT, WEB_IP, 40000, 443, flags=1, direction="ingress", action="REJECT", start=T0 + 600),
             rec(WEB, CLIENT, WEB_IP, 40000, 443, flags=2, direction="ingress", action="REJECT", start=T0 - 600)]
    r = run(tmp_path, account(), recs)
    got = row(r, "sgr-https")
    assert (got["status"], got["evidence"], got["connections"]) == ("used", "established", 1)
    assert got["first_seen"].timestamp() == T0 and got["last_seen"].timestamp() == T0 + 13
    assert (got["bytes"], got["packets"]) == (300, 5)
    [rej] = r.rejected.to_dict("records")
    assert rej["first_seen"].timestamp() == T0 - 600 and rej["last_seen"].timestamp() == T0 + 613


def test_spec_ports_lists_the_distinct_ports_that_counted(tmp_path):
    recs = (handshake(WEB, WEB_IP, "203.0.113.5", 50000, 443, inbound=False)
            + handshake(WEB, WEB_IP, "203.0.113.5", 50001, 80, inbound=False)
            + handshake(WEB, WEB_IP, "203.0.113.6", 50002, 443, inbound=False))
    r = run(tmp_path, account(), recs)
    assert row(r, "sgr-web-out")["ports"] == "80,443"


def test_spec_traffic_between_two_logged_interfaces_is_two_conversations(tmp_path):
    # web → db on 5432, logged at both ends: outbound at web (egress rule), inbound at db (sgr-pg).
    recs = handshake(WEB, WEB_IP, DB_IP, 41000, 5432, inbound=False) + handshake(DB, WEB_IP, DB_IP, 41000, 5432)
    r = run(tmp_path, account(), recs)
    assert len(r.conversations) == 2
    assert row(r, "sgr-web-out")["status"] == "used" and row(r, "sgr-pg")["status"] == "used"
    assert row(r, "sgr-pg")["evidence"] == "established"


def test_spec_article_records(tmp_path):
    """The two records of the VPC Flow Logs article: the rule is used, established, last seen 15:04:13Z."""
    log = write_text(tmp_path / "article.log", [ARTICLE_HEADER, *ARTICLE_LINES], compress=False)
    snap = Snapshot().group("sg-app", "app")
    snap.rule("sgr-4000", "sg-app", "tcp", 4000, cidr="100.64.0.0/10")
    snap.interface("eni-027ce9d7c95605b1d", "10.10.0.73", ["sg-app"])
    r = sgaudit.analyze(log, snap.write(tmp_path / "inv"))
    got = row(r, "sgr-4000")
    assert (got["status"], got["evidence"]) == ("used", "established")
    assert got["last_seen"].strftime("%Y-%m-%dT%H:%M:%SZ") == "2025-02-06T15:04:13Z"
    assert (got["bytes"], got["packets"]) == (11814 + 9025, 22 + 17)


def test_spec_record_counts_add_up(tmp_path):
    recs = handshake(WEB, CLIENT, WEB_IP, 40000, 443) + [nodata(WEB), nodata(WEB, status="SKIPDATA"),
                                                         rec(None, CLIENT, WEB_IP, 1, 2, direction="ingress")]
    log = write_log(tmp_path / "l.log", recs, compress=False)
    with open(log, "a") as fh:
        fh.write("this is not a record\n")
    r = sgaudit.analyze(log, account().write(tmp_path / "inv"))
    q = r.quality.set_index("bucket")["records"]
    assert q["total"] == 6 == q.drop("total").sum()
    assert (q["conversation"], q["nodata"], q["skipdata"], q["unattributable"], q["malformed"]) == (2, 1, 1, 1, 1)


def test_spec_v2_records_of_an_interface_missing_from_the_snapshot_count_for_coverage(tmp_path):
    recs = [rec("eni-gone", CLIENT, "10.9.9.9", 40000, 443), rec("eni-gone", "10.9.9.9", CLIENT, 443, 40000)]
    r = run(tmp_path, account(), recs, fmt=V2)
    assert r.quality.set_index("bucket")["records"]["interface_not_in_snapshot"] == 2


def test_spec_referenced_group_missing_from_the_groups_file_is_resolved_by_its_interfaces(tmp_path):
    # security-groups.json lacks sg-web (a partial listing), but the interfaces that carry it are in the
    # snapshot: its members are known, the rule matches them, and no problem says otherwise.
    snap = Snapshot().group("sg-db")
    snap.rule("sgr-pg", "sg-db", "tcp", 5432, ref="sg-web")
    snap.interface(WEB, WEB_IP, ["sg-web"])
    snap.interface(DB, DB_IP, ["sg-db"])
    r = run(tmp_path, snap, handshake(DB, WEB_IP, DB_IP, 40000, 5432))
    assert row(r, "sgr-pg")["status"] == "used"
    assert "referenced_group_unresolved" not in set(r.problems["kind"])


# --- Pinned by fixed inputs (mutation testing found these caught only by the randomised tests) ----------

def test_spec_udp_rules_hold_their_port_range(tmp_path):
    snap = Snapshot().group("sg-x")  # no egress rule: nothing else could explain port 123
    snap.rule("sgr-dns", "sg-x", "udp", 53, cidr="0.0.0.0/0")
    snap.interface(WEB, WEB_IP, ["sg-x"])
    recs = [rec(WEB, CLIENT, WEB_IP, 40000, 123, proto=17, direction="ingress"),
            rec(WEB, WEB_IP, CLIENT, 123, 40000, proto=17, direction="egress"),
            rec(WEB, CLIENT, WEB_IP, 40001, 53, proto=17, direction="ingress"),
            rec(WEB, WEB_IP, CLIENT, 53, 40001, proto=17, direction="egress")]
    r = run(tmp_path, snap, recs)
    assert row(r, "sgr-dns")[["status", "connections", "ports"]].tolist() == ["used", 1, "53"]
    assert r.unexplained["local_port"].tolist() == [123]


def test_spec_peers_counts_addresses_not_address_and_port(tmp_path):
    snap = account()
    snap.rule("sgr-range", "sg-web", "tcp", 8000, 8100, cidr="0.0.0.0/0")
    r = run(tmp_path, snap, handshake(WEB, CLIENT, WEB_IP, 40000, 8080) + handshake(WEB, CLIENT, WEB_IP, 40001, 8081))
    assert row(r, "sgr-range")[["connections", "peers", "ports"]].tolist() == [2, 1, "8080,8081"]


def test_spec_interface_observed_by_an_unattributable_record(tmp_path):
    # It has a record in the window (SPEC "observed"), though neither of its addresses is the interface's.
    r = run(tmp_path, account(), [rec(WEB, "192.0.2.1", "192.0.2.2", 40000, 443)], fmt=V2)
    assert r.quality.set_index("bucket")["records"]["unattributable"] == 1
    assert row(r, "sgr-https")["status"] == "unused" and row(r, "sgr-pg")["status"] == "unobserved"


def test_spec_v2_record_between_two_addresses_of_the_interface_takes_the_destination_as_local(tmp_path):
    # 10.0.1.11 (secondary) → 10.0.1.10 (primary) on 443: both are the interface's (docs/decisions.md), so
    # the one record is the peer's, received: an inbound attempt on 443.
    r = run(tmp_path, account(secondary=["10.0.1.11"]), [rec(WEB, "10.0.1.11", WEB_IP, 40000, 443)], fmt=V2)
    [c] = r.conversations.to_dict("records")
    assert (c["direction"], c["local_port"], c["peer"], c["peer_port"]) == ("inbound", 443, "10.0.1.11", 40000)
    assert row(r, "sgr-https")["status"] == "attempted"


def test_spec_icmpv6_rules_match_protocol_58(tmp_path):
    snap = account(ipv6=["2600:1f18::10"])
    snap.rule("sgr-icmp6", "sg-web", "icmpv6", -1, cidr="::/0")
    snap.rule("sgr-icmp4", "sg-web", "icmp", -1, cidr="0.0.0.0/0")
    recs = [rec(WEB, "2001:db8::9", "2600:1f18::10", 0, 0, proto=58, direction="ingress"),
            rec(WEB, "2600:1f18::10", "2001:db8::9", 0, 0, proto=58, direction="egress")]
    r = run(tmp_path, snap, recs)
    assert row(r, "sgr-icmp6")["status"] == "used" and row(r, "sgr-icmp4")["status"] == "unused"


def test_spec_ipv6_any_admits_no_ipv4_peer(tmp_path):
    snap = Snapshot().group("sg-x")
    snap.rule("sgr-v6", "sg-x", "tcp", 443, cidr="::/0")
    snap.interface(WEB, WEB_IP, ["sg-x"])
    r = run(tmp_path, snap, handshake(WEB, CLIENT, WEB_IP, 40000, 443))
    assert row(r, "sgr-v6")["status"] == "unused" and len(r.unexplained) == 1


def test_spec_rejected_outbound_attempt_counts_the_remote_port(tmp_path):
    recs = [rec(WEB, WEB_IP, "203.0.113.5", 50000, 8443, flags=2, direction="egress", action="REJECT")]
    [rej] = run(tmp_path, account(), recs).rejected.to_dict("records")
    assert (rej["direction"], rej["port"], rej["attempts"]) == ("outbound", 8443, 1)


def test_spec_window_takes_records_by_their_start_and_excludes_the_end(tmp_path):
    # --start T0+60 --end T0+180: a record starting at T0 (ending inside) is outside; one starting at T0+180
    # (the end) is outside; one starting at T0+60 is inside.
    recs = [rec(WEB, CLIENT, WEB_IP, 40000, 443, flags=2, direction="ingress", start=T0, end=T0 + 100),
            rec(WEB, CLIENT, WEB_IP, 40001, 443, flags=2, direction="ingress", start=T0 + 60),
            rec(WEB, CLIENT, WEB_IP, 40002, 443, flags=2, direction="ingress", start=T0 + 180)]
    r = run(tmp_path, account(), recs, start=T0 + 60, end=T0 + 180)
    q = r.quality.set_index("bucket")["records"]
    assert (q["outside_window"], q["conversation"]) == (2, 1)
    assert r.conversations["peer_port"].tolist() == [40001]
