"""Property-based tests: invariants of `sgaudit.analyze` over random, realistic traffic.

A small fixed inventory (three logged interfaces with an IPv4 and one or two IPv6 addresses, a NAT interface
without groups, three groups of which one is attached nowhere, rules of every kind SPEC names) and
random traffic generated as *conversations*: TCP with and without handshake flags (SYN/SYN-ACK, FIN, RST,
SYN-ACK without SYN, mid-stream, flags missing), UDP one-way and two-way, ICMP/ICMPv6, with ACCEPT and
REJECT on either side, 1-3 records per side, between a logged interface and a peer from a small pool
(internet, internal, or another logged interface, which then may log its own end too). The records are
rendered as version-5 lines with flow-direction and tcp-flags, plus some coverage-only records (NODATA,
SKIPDATA, an interface without groups, one missing from the snapshot, ``-`` as interface).

Run with ``--hypothesis-show-statistics`` to see how many examples each property ran.
"""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path

import pandas as pd
import pytest
import sgaudit
from builders import T0, V2, V5, Snapshot, nodata, rec, write_log
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sgaudit.usage import USAGE_COLUMNS

# --- The inventory -------------------------------------------------------------------------------------

LOGGED = {  # interface → (IPv4, IPv6 addresses, groups)
    "eni-a": ("10.0.0.5", ["2600:1f18:1::5"], ["sg-web"]),
    "eni-b": ("10.0.0.6", ["2600:1f18:1::6"], ["sg-web", "sg-app"]),
    # Two IPv6 addresses: AWS writes the one used, and one conversation may reach both.
    "eni-c": ("10.0.1.7", ["2600:1f18:1::7", "2600:1f18:1::77"], ["sg-app"]),
}
NAT = ("eni-nat", "10.0.2.9")  # in the snapshot, no groups: coverage only
UNKNOWN = "eni-gone"  # not in the snapshot: coverage only


def snapshot() -> Snapshot:
    snap = Snapshot()
    snap.group("sg-web", "web").group("sg-app", "app").group("sg-spare", "spare")
    # sg-web: a world-open port, a CIDR rule, an IPv6 rule, ICMP, the default egress rule.
    snap.rule("sgr-web-https", "sg-web", "tcp", 443, 443, cidr="0.0.0.0/0")
    snap.rule("sgr-web-ssh", "sg-web", "tcp", 22, 22, cidr="10.0.0.0/16")
    snap.rule("sgr-web-https6", "sg-web", "tcp", 443, 443, cidr="::/0")
    snap.rule("sgr-web-icmp", "sg-web", "icmp", -1, -1, cidr="0.0.0.0/0")
    snap.rule("sgr-web-out", "sg-web", "-1", -1, -1, egress=True, cidr="0.0.0.0/0")
    # sg-app: a port range from a referenced group, UDP, ICMPv6, narrow egress rules.
    snap.rule("sgr-app-ports", "sg-app", "tcp", 8000, 8100, ref="sg-web")
    snap.rule("sgr-app-udp", "sg-app", "udp", 5000, 5010, cidr="0.0.0.0/0")
    snap.rule("sgr-app-icmp6", "sg-app", "icmpv6", -1, -1, cidr="::/0")
    snap.rule("sgr-app-dns", "sg-app", "udp", 53, 53, egress=True, cidr="0.0.0.0/0")
    snap.rule("sgr-app-db", "sg-app", "tcp", 5432, 5432, egress=True, cidr="10.0.0.0/16")
    snap.rule("sgr-app-out6", "sg-app", "tcp", 443, 443, egress=True, cidr="::/0")
    # sg-spare is on no interface.
    snap.rule("sgr-spare-rdp", "sg-spare", "tcp", 3389, 3389, cidr="0.0.0.0/0")
    for eni, (ip4, ip6, groups) in LOGGED.items():
        snap.interface(eni, ip4, groups=groups, ipv6=ip6)
    snap.interface(NAT[0], NAT[1], groups=[], itype="nat_gateway")
    return snap


SNAPSHOT = snapshot()
RULE_IDS = sorted(r["SecurityGroupRuleId"] for r in SNAPSHOT.rules)

INTERNET = {4: ["203.0.113.7", "198.51.100.20"], 6: ["2001:db8::1", "2001:db8::2"]}
INTERNAL = {4: ["10.0.3.3"], 6: ["2600:1f18:1::99"]}
#: (protocol, service port): mostly what some rule allows in some direction, a few that nothing allows.
SERVICES = [("tcp", 443)] * 3 + [("tcp", 22), ("tcp", 8080), ("tcp", 5432), ("udp", 53), ("udp", 5005),
                                 ("icmp", 0), ("icmp", 0), ("tcp", 3389), ("udp", 443)]
EPHEMERAL_PORTS = [40000, 40001, 51000]
ANY = ["internet", "internal", "logged"]
WEB, APP = ["eni-a", "eni-b"], ["eni-b", "eni-c"]
#: Flows the rules were written for: (interfaces, peer initiates, protocol, port, family, peer kinds).
FLOWS = [
    (WEB, True, "tcp", 443, 4, ANY), (WEB, True, "tcp", 443, 6, ANY),
    (WEB, True, "tcp", 22, 4, ["internal", "logged"]), (WEB, True, "icmp", 0, 4, ANY),
    (WEB, False, "any", None, 4, ANY),
    (APP, True, "tcp", 8080, 4, ["web"]), (APP, True, "tcp", 8080, 6, ["web"]),
    (APP, True, "udp", 5005, 4, ANY), (APP, True, "icmp", 0, 6, ANY),
    (APP, False, "udp", 53, 4, ANY), (APP, False, "tcp", 5432, 4, ["internal", "logged"]),
    (APP, False, "tcp", 443, 6, ANY),
]

#: TCP conversation shapes: (initiator's first flags, responder's first flags or None for no answer).
TCP_KINDS = {
    "handshake": (2, 18),
    "short-with-fin": (3, 19),
    "syn-rst": (2, 4),
    "syn-only": (2, None),
    "synack-without-syn": (0, 18),
    "mid-stream": (0, 0),
    "fin": (1, 1),
    "flags-missing": (None, None),
}
ACTIONS = [("ACCEPT", "ACCEPT")] * 4 + [("REJECT", "REJECT"), ("ACCEPT", "REJECT"), ("REJECT", "ACCEPT")]


# --- Traffic as conversations --------------------------------------------------------------------------


@st.composite
def conversation(draw) -> list[dict]:
    """The v5 records of one conversation at a logged interface (and at the peer's end when it is logged)."""
    # Mostly a flow some rule was written for (a template), sometimes anything (then often unexplained).
    template = draw(st.sampled_from(FLOWS + [None]))
    if template is None:
        enis, peer_initiates, proto_name, service, fam, where = (
            sorted(LOGGED), draw(st.booleans()), *draw(st.sampled_from(SERVICES)), draw(st.sampled_from([4, 6])),
            ["internet", "internal", "logged"])
    else:
        enis, peer_initiates, proto_name, service, fam, where = template
    if proto_name == "any":
        proto_name, service = draw(st.sampled_from(SERVICES))
    eni = draw(st.sampled_from(enis))
    local = LOGGED[eni][0] if fam == 4 else draw(st.sampled_from(LOGGED[eni][1]))
    where = draw(st.sampled_from(where))
    peer_eni = None
    if where == "logged" or where == "web":
        members = [e for e in sorted(LOGGED) if e != eni and (where == "logged" or "sg-web" in LOGGED[e][2])]
        peer_eni = draw(st.sampled_from(members))
        peer = LOGGED[peer_eni][0] if fam == 4 else draw(st.sampled_from(LOGGED[peer_eni][1]))
    else:
        peer = draw(st.sampled_from((INTERNET if where == "internet" else INTERNAL)[fam]))
    proto = {"tcp": 6, "udp": 17, "icmp": 1 if fam == 4 else 58}[proto_name]

    if proto_name == "tcp":
        first_i, first_r = TCP_KINDS[draw(st.sampled_from(sorted(TCP_KINDS)))]
    else:
        first_i, first_r = None, (None if draw(st.booleans()) else "two-way")
    two_way = first_r is not None
    act_i, act_r = draw(st.sampled_from(ACTIONS))
    n_i = draw(st.integers(1, 3))
    n_r = draw(st.integers(1, 3)) if two_way else 0
    if proto_name == "tcp" and first_i == 0 and first_r == 18 and draw(st.booleans()):
        n_i = 0  # a SYN-ACK without SYN, and nothing else from the initiator in the window

    later = st.sampled_from([0, 0, 1, None]) if proto_name == "tcp" else st.just(None)

    def side_flags(first, n):
        if proto_name != "tcp":
            return [None] * n
        return [first] + [draw(later) for _ in range(n - 1)] if n else []

    flags_i, flags_r = side_flags(first_i, n_i), side_flags(first_r, n_r)
    eph = draw(st.sampled_from(EPHEMERAL_PORTS))
    begin = T0 + draw(st.integers(0, 3 * 60)) * 60 + draw(st.integers(0, 59))
    resp_delay = draw(st.sampled_from([0, 0, 60]))  # the answer may fall in the next aggregation interval

    # E's side may use each of E's IPv6 addresses in turn: one conversation by SPEC's key (ICMP from one
    # peer to both addresses, or the same peer port reaching both).
    spread = fam == 6 and len(LOGGED[eni][1]) > 1 and draw(st.booleans())
    locals_ = LOGGED[eni][1] if spread else [local]
    # Ports of the initiator and the responder; ICMP carries no ports (AWS writes 0).
    ini_port, rsp_port = (eph, service) if proto in (6, 17) else (0, 0)
    mirror = peer_eni is not None and draw(st.booleans())

    out = []
    for from_initiator, flags, action, offset in ((True, flags_i, act_i, 0), (False, flags_r, act_r, resp_delay)):
        from_local = from_initiator != peer_initiates
        for i, f in enumerate(flags):
            here = locals_[i % len(locals_)]
            src, dst = (here, peer) if from_local else (peer, here)
            sport, dport = (ini_port, rsp_port) if from_initiator else (rsp_port, ini_port)
            start = begin + offset + 60 * i
            dur = draw(st.integers(0, 59))
            packets = draw(st.integers(1, 20))
            common = {"proto": proto, "flags": f, "action": action, "start": start, "end": start + dur,
                      "packets": packets, "bytes_": packets * draw(st.integers(40, 1500))}
            out.append(rec(eni, src, dst, sport, dport, direction="egress" if from_local else "ingress", **common))
            if mirror:
                out.append(rec(peer_eni, src, dst, sport, dport, direction="ingress" if from_local else "egress",
                               **common))
    return out


@st.composite
def noise(draw) -> dict:
    """One coverage-only record."""
    kind = draw(st.sampled_from(["nodata", "skipdata", "nat", "unknown", "no-interface"]))
    start = T0 + draw(st.integers(0, 3 * 60)) * 60
    if kind in ("nodata", "skipdata"):
        eni = draw(st.sampled_from(sorted(LOGGED) + [NAT[0], UNKNOWN]))
        return nodata(eni, start, status=kind.upper())
    if kind == "nat":
        return rec(NAT[0], NAT[1], "203.0.113.7", 40000, 443, flags=2, direction="egress", start=start)
    if kind == "unknown":
        return rec(UNKNOWN, "10.0.9.9", "203.0.113.7", 40000, 443, flags=2, direction="egress", start=start)
    return rec(None, "203.0.113.7", "10.0.0.5", 40000, 443, flags=2, direction="ingress", start=start)


@st.composite
def traffic(draw, max_conversations: int = 8) -> list[dict]:
    convs = draw(st.lists(conversation(), min_size=1, max_size=max_conversations))
    extra = draw(st.lists(noise(), max_size=3))
    records = [r for c in convs for r in c] + extra
    return draw(st.permutations(records))


# --- Running the engine --------------------------------------------------------------------------------

#: Field orders for headers: AWS's, reversed, and a fixed shuffle.
REVERSED = list(reversed(V5))
SHUFFLED = random.Random(7).sample(V5, len(V5))
FORMATS = {"v5": V5, "reversed": REVERSED, "shuffled": SHUFFLED}


def analyze(files: list[tuple[list[dict], list[str], bool, bool]]) -> sgaudit.Analysis:
    """Write ``(records, fields, gzip, header)`` files and the snapshot to a fresh folder and analyze them.

    The result's tables are computed before the folder goes away; call ``.close()`` when done.
    """
    with tempfile.TemporaryDirectory(prefix="sgaudit-prop-") as tmp:
        tmp = Path(tmp)
        inv = SNAPSHOT.write(tmp / "inventory")
        paths = []
        for i, (records, fmt, gz, header) in enumerate(files):
            name = f"part-{i:02d}.log" + (".gz" if gz else "")
            paths.append(write_log(tmp / "logs" / name, records, fmt, header=header, compress=gz))
        result = sgaudit.analyze(paths, inv, threads=1)
        for table in ("usage", "conversations", "unexplained", "rejected", "quality"):
            getattr(result, table)
    return result


def analyze_one(records: list[dict], fmt: list[str] = V5) -> sgaudit.Analysis:
    return analyze([(records, fmt, True, True)])


def usage_of(result: sgaudit.Analysis) -> pd.DataFrame:
    return result.usage[USAGE_COLUMNS].sort_values("rule_id").reset_index(drop=True)


def assert_same_usage(a: sgaudit.Analysis, b: sgaudit.Analysis) -> None:
    pd.testing.assert_frame_equal(usage_of(a), usage_of(b))


def is_local(r: dict) -> bool:
    return r["interface-id"] in LOGGED


def sent_by_interface(r: dict) -> bool:
    return r["flow-direction"] == "egress"




#: Multiplies every property's number of examples, for a longer bug hunt (``SGAUDIT_PROPERTY_SCALE=10``).
SCALE = float(os.environ.get("SGAUDIT_PROPERTY_SCALE", "1"))


def examples(n: int) -> settings:
    """Each example runs the engine once or twice (0.1-0.3 s): few examples, no deadline, no database."""
    return settings(max_examples=max(1, int(n * SCALE)), deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


# --- 1. Order does not matter ---------------------------------------------------------------------------


@examples(25)
@given(records=traffic(), data=st.data())
def test_usage_is_unchanged_when_records_are_shuffled(records, data):
    shuffled = data.draw(st.permutations(records), label="shuffled")
    a, b = analyze_one(records), analyze_one(shuffled)
    try:
        assert_same_usage(a, b)
    finally:
        a.close(), b.close()


# --- 2. Files do not matter ------------------------------------------------------------------------------


@st.composite
def split(draw, records: list[dict]) -> list[tuple[list[dict], list[str], bool, bool]]:
    """The same records in k files: each a layout (field order, gzip or plain); assignment random or by sender.

    "by-sender" puts every record E sent in one file and every record E received in another, so the SYN
    and the SYN-ACK of every connection are in different files.
    """
    k = draw(st.integers(2, 4), label="k")
    how = draw(st.sampled_from(["random", "by-sender", "by-sender"]), label="split")
    if how == "random":
        where = draw(st.lists(st.integers(0, k - 1), min_size=len(records), max_size=len(records)))
    else:
        where = [(0 if sent_by_interface(r) else 1) % k for r in records]
    files = []
    for i in range(k):
        fmt = draw(st.sampled_from(sorted(FORMATS)), label=f"format {i}")
        part = [r for r, w in zip(records, where, strict=True) if w == i]
        files.append((part, FORMATS[fmt], draw(st.booleans(), label=f"gzip {i}"), True))
    return files


@examples(25)
@given(records=traffic(), data=st.data())
def test_usage_is_unchanged_when_records_are_split_across_files(records, data):
    files = data.draw(split(records), label="files")
    a, b = analyze_one(records), analyze(files)
    try:
        assert_same_usage(a, b)
        assert a.quality.equals(b.quality)
    finally:
        a.close(), b.close()


# --- 3. Accounting ---------------------------------------------------------------------------------------


@examples(30)
@given(records=traffic())
def test_quality_buckets_add_up_to_the_records_written(records):
    result = analyze_one(records)
    try:
        q = result.quality.set_index("bucket")["records"]
        assert q.drop("total").sum() == q["total"]
        assert q["total"] == len(records)
        # Every record in the snapshot's logged interfaces goes on to conversations; the noise does not.
        assert q["conversation"] == sum(is_local(r) and r["log-status"] == "OK" for r in records)
        assert q["nodata"] + q["skipdata"] == sum(r["log-status"] != "OK" for r in records)
    finally:
        result.close()


# --- 4. The usage table is consistent ---------------------------------------------------------------------


@examples(30)
@given(records=traffic())
def test_usage_table_is_consistent(records):
    result = analyze_one(records)
    try:
        u = result.usage
        assert sorted(u["rule_id"]) == RULE_IDS
        assert list(u.columns) == USAGE_COLUMNS
        assert (u["exclusive"] <= u["connections"]).all()
        assert (u["exclusive"] >= 0).all()
        for r in u.itertuples(index=False):
            if r.status == "used":
                assert r.evidence in ("established", "inferred"), r
            assert (r.status == "attempted") == (r.evidence == "attempted"), r
            if r.status in ("unused", "unobserved", "unattached"):
                assert r.connections == 0 and r.evidence == "" and r.peers == 0 and r.bytes == 0, r
            else:
                assert r.connections >= 1 and r.peers >= 1 and r.peers <= r.connections, r
        assert (u.loc[u["group_id"] == "sg-spare", "status"] == "unattached").all()
    finally:
        result.close()


# --- 5. Every accepted conversation is explained or reported; REJECT is never usage ----------------------


def conversation_key(r: dict) -> tuple:
    """(interface, protocol, local port, peer, peer port) of a record, from its flow-direction."""
    portless = r["protocol"] not in (6, 17)
    if sent_by_interface(r):
        key = (r["protocol"], r["srcport"], r["dstaddr"], r["dstport"])
    else:
        key = (r["protocol"], r["dstport"], r["srcaddr"], r["srcport"])
    return (r["interface-id"], key[0], None if portless else key[1], key[2], None if portless else key[3])


def _key_of_row(c) -> tuple:
    port = None if pd.isna(c.local_port) else int(c.local_port)
    peer_port = None if pd.isna(c.peer_port) else int(c.peer_port)
    return (c.interface_id, int(c.protocol), port, c.peer, peer_port)


@examples(25)
@given(records=traffic())
def test_every_accepted_conversation_is_matched_or_unexplained(records):
    result = analyze_one(records)
    without_rejects = analyze_one([r for r in records if r["action"] != "REJECT"])
    try:
        conv = result.conversations
        expected = {conversation_key(r) for r in records if is_local(r) and r["action"] == "ACCEPT"}
        got = [_key_of_row(c) for c in conv.itertuples(index=False)]
        assert len(got) == len(set(got)), "a conversation appears twice"
        assert set(got) == expected
        unexplained = set(result.unexplained["conversation_id"])
        matched = set(conv.loc[conv["rules"] != "", "conversation_id"])
        assert matched.isdisjoint(unexplained)
        assert matched | unexplained == set(conv["conversation_id"])
        assert (conv.loc[conv["rules"] != "", "rule_count"] >= 1).all()

        # REJECT records never count: without them the table is the same, but for observation (an
        # interface seen only through REJECTs is observed, so its idle rules are unused, not unobserved).
        def normalized(res):
            u = usage_of(res)
            u["status"] = u["status"].replace({"unobserved": "unused"})
            return u

        pd.testing.assert_frame_equal(normalized(result), normalized(without_rejects))
    finally:
        result.close(), without_rejects.close()


@examples(15)
@given(records=traffic())
def test_reject_only_traffic_never_makes_a_rule_used(records):
    rejected = [dict(r, action="REJECT") if r["log-status"] == "OK" else r for r in records]
    result = analyze_one(rejected)
    try:
        u = result.usage
        assert not u["status"].isin(["used", "attempted"]).any()
        assert (u["connections"] == 0).all() and (u["evidence"] == "").all()
        assert result.conversations.empty
        rej = result.rejected
        n_rejected_local = sum(is_local(r) and r["action"] == "REJECT" for r in rejected)
        assert rej["records"].sum() == n_rejected_local
    finally:
        result.close()


# --- 6. Version 2: no flags, so never "established" --------------------------------------------------------


@examples(20)
@given(records=traffic(), header=st.booleans())
def test_v2_never_yields_established(records, header):
    v2 = [{k: v for k, v in r.items() if k in V2} for r in records]
    result = analyze([(v2, V2, True, header)])
    v5 = analyze_one(records)
    try:
        assert "established" not in set(result.usage["evidence"])
        assert "established" not in set(result.conversations["evidence"])
        assert result.quality.set_index("bucket").loc["total", "records"] == len(records)
        # The inventory tells the sides apart as well as flow-direction does: the same conversations.
        assert sorted(map(_key_of_row, result.conversations.itertuples(index=False))) == sorted(
            map(_key_of_row, v5.conversations.itertuples(index=False)))
    finally:
        result.close(), v5.close()


# --- A bug the split property found, kept as explicit examples ----------------------------------------------
# With one file layout and flow-direction on every record the reduction's rows were taken as conversations,
# but it grouped by the local address too: one conversation reaching two IPv6 addresses of E counted twice
# in one file, once when split across layouts. Fixed in the library while these tests were written.

TWO_V6 = "2600:1f18:1::5", "2600:1f18:1::55"


def two_ipv6_snapshot() -> Snapshot:
    """One interface with two IPv6 addresses (AWS writes the IPv6 address actually used, not a primary)."""
    snap = Snapshot()
    snap.group("sg-e", "e")
    snap.rule("sgr-https6", "sg-e", "tcp", 443, 443, cidr="::/0")
    snap.interface("eni-e", "10.0.0.5", groups=["sg-e"], ipv6=list(TWO_V6))
    return snap


#: The same peer and peer port reach local port 443 on both addresses: by SPEC one conversation, whose key
#: is (protocol, local port, peer address, peer port), not the local address.
TWO_V6_RECORDS = [rec("eni-e", "2001:db8::1", local, 51000, 443, flags=2, direction="ingress") for local in TWO_V6]


def _analyze_two_ipv6(tmp_path: Path, files: list[tuple[list[dict], list[str]]]) -> sgaudit.Analysis:
    inv = two_ipv6_snapshot().write(tmp_path / "inventory")
    paths = [write_log(tmp_path / "logs" / f"part-{i}.log.gz", recs, fmt) for i, (recs, fmt) in enumerate(files)]
    return sgaudit.analyze(paths, inv)


@pytest.mark.parametrize("layout", ["one-file", "two-layouts"])
def test_conversation_does_not_depend_on_the_local_address(tmp_path, layout):
    """SPEC: records with the same (protocol, local port, peer, peer port) at E are one conversation."""
    if layout == "one-file":
        files = [(TWO_V6_RECORDS, V5)]
    else:
        files = [(TWO_V6_RECORDS[:1], V5), (TWO_V6_RECORDS[1:], REVERSED)]
    result = _analyze_two_ipv6(tmp_path, files)
    try:
        assert len(result.conversations) == 1
        u = result.usage.set_index("rule_id").loc["sgr-https6"]
        assert (u["status"], u["connections"], u["exclusive"], u["peers"]) == ("attempted", 1, 1, 1)
    finally:
        result.close()


def test_split_invariance_with_two_ipv6_addresses(tmp_path):
    one = _analyze_two_ipv6(tmp_path / "one", [(TWO_V6_RECORDS, V5)])
    two = _analyze_two_ipv6(tmp_path / "two", [(TWO_V6_RECORDS[:1], V5), (TWO_V6_RECORDS[1:], REVERSED)])
    try:
        assert_same_usage(one, two)
    finally:
        one.close(), two.close()
