"""sgaudit against an independent reference implementation of SPEC.md (`reference`).

`reference` is SPEC.md and docs/decisions.md written again as plain Python loops over records, by an
engineer who did not read sgaudit's code; it shares nothing with the library but the snapshot's JSON.
Every table SPEC defines must come out the same from both: the usage table column by column, every
accepted conversation with its direction, port, evidence and rules, the rejected attempts and the
record buckets. A disagreement is a defect in one of the two, and the message shows both sides.

The traffic is the property tests' (`test_properties.traffic`): TCP with every handshake shape, UDP, ICMP,
IPv4 and IPv6, ACCEPT and REJECT on either side, interfaces logging both ends, coverage-only noise; it is
written in three layouts: version 5 with flow-direction and tcp-flags, flags without flow-direction (the
sides come from the inventory), and the version-2 default format. Loose records drawn one by one, against a
snapshot with every kind of rule and address, in several files and windows, and the sample account are
compared too.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pandas as pd
import pytest
import reference
import sgaudit
from builders import V2, V5, Snapshot, nodata, rec, write_log
from hypothesis import given
from hypothesis import strategies as st
from sgaudit.usage import USAGE_COLUMNS
from test_properties import SNAPSHOT, examples, traffic

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "sample_logs"

#: Version 5 without flow-direction: handshake flags, but the sides come from the inventory.
V5_NO_DIRECTION = [f for f in V5 if f != "flow-direction"]
LAYOUTS = {"v5": V5, "v5-no-direction": V5_NO_DIRECTION, "v2": V2}


# --- Both sides in one shape ------------------------------------------------------------------------------


def _ms(value) -> int | None:
    if value is None or pd.isna(value):
        return None
    if isinstance(value, int):  # the reference's Unix milliseconds
        return value
    return int(pd.Timestamp(value).value // 1_000_000)


def _port(value) -> int | None:
    return None if value is None or pd.isna(value) else int(value)


def usage_rows(rows) -> dict[str, dict]:
    """rule_id → the usage row with times as Unix ms and numbers as ints, from either implementation."""
    out = {}
    for r in rows:
        row = {c: r[c] for c in USAGE_COLUMNS}
        for c in ("connections", "exclusive", "peers", "bytes", "packets"):
            row[c] = int(row[c])
        for c in ("from_port", "to_port"):
            row[c] = _port(row[c])
        row["protocol"] = str(row["protocol"])
        row["first_seen"], row["last_seen"] = _ms(row["first_seen"]), _ms(row["last_seen"])
        row["ports"] = str(row["ports"])
        row["evidence"] = row["evidence"] or ""
        out[row["rule_id"]] = row
    return out


def conversation_rows(rows) -> dict[tuple, tuple]:
    """(interface, protocol, local port, peer, peer port) → (direction, port, evidence, rules)."""
    out = {}
    for r in rows:
        key = (r["interface_id"], int(r["protocol"]), _port(r["local_port"]), r["peer"], _port(r["peer_port"]))
        rules = r["rules"].split() if isinstance(r["rules"], str) else list(r["rules"])
        value = (r["direction"], _port(r["port"]), r["evidence"], tuple(sorted(rules)))
        assert key not in out, f"conversation {key} appears twice"
        out[key] = value
    return out


def rejected_rows(rows) -> dict[tuple, tuple]:
    """(interface, direction, protocol, port) → (attempts, peers, records)."""
    return {(r["interface_id"], r["direction"], int(r["protocol"]), _port(r["port"])):
            (int(r["attempts"]), int(r["peers"]), int(r["records"])) for r in rows}


def assert_same(got: dict, want: dict, what: str) -> None:
    """Equal mappings, or a message listing every key where sgaudit (got) and the reference (want) differ."""
    if got == want:
        return
    lines = [f"{what}: sgaudit and the reference disagree"]
    for key in sorted(set(got) | set(want), key=repr):
        if got.get(key) != want.get(key):
            lines.append(f"  {key}:\n    sgaudit   {got.get(key)}\n    reference {want.get(key)}")
    raise AssertionError("\n".join(lines[:40]))


def compare(result: sgaudit.Analysis, ref: reference.Result) -> None:
    """Every SPEC table of ``result`` equals the reference's."""
    assert_same(usage_rows(result.usage.to_dict("records")), usage_rows(ref.usage), "usage table")
    assert_same(conversation_rows(result.conversations.to_dict("records")),
                conversation_rows(ref.conversations), "conversations")
    assert_same(conversation_rows(result.unexplained.assign(rules="").to_dict("records")),
                conversation_rows(ref.unexplained), "unexplained conversations")
    assert_same(rejected_rows(result.rejected.to_dict("records")), rejected_rows(ref.rejected), "rejected")
    q = result.quality.set_index("bucket")["records"]
    buckets = {b: int(n) for b, n in q.items() if b != "total" and n}
    assert_same(buckets, {b: n for b, n in ref.buckets.items() if n}, "record buckets")
    assert result.observed == set(ref.observed)


# --- Random traffic -----------------------------------------------------------------------------------------


def check(snapshot: Snapshot, files: list[tuple[list[dict], list[str]]], *, header: bool = True,
          window: tuple[int | None, int | None] = (None, None)) -> None:
    """Write the snapshot and ``(records, fields)`` files; sgaudit's tables must equal the reference's.

    Without ``header`` the files are bare lines in one format, given to both as the log format. ``window``
    is ``(start, end)`` in Unix seconds.
    """
    lo, hi = window
    log_format = None if header else files[0][1]
    with tempfile.TemporaryDirectory(prefix="sgaudit-ref-") as tmp:
        tmp = Path(tmp)
        inv = snapshot.write(tmp / "inventory")
        paths = [write_log(tmp / "logs" / f"part-{i}.log.gz", recs, fmt, header=header)
                 for i, (recs, fmt) in enumerate(files)]
        result = sgaudit.analyze(paths, inv, start=lo, end=hi, threads=1,
                                 log_format=log_format and " ".join(log_format))
        try:
            ref = reference.analyze(paths, inv, start_ms=lo and lo * 1000, end_ms=hi and hi * 1000,
                                    log_format=log_format)
            compare(result, ref)
        finally:
            result.close()


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@examples(40)
@given(records=traffic(max_conversations=12), header=st.booleans())
def test_every_table_matches_the_reference_on_random_traffic(layout, records, header):
    fmt = LAYOUTS[layout]
    check(SNAPSHOT, [([{k: v for k, v in r.items() if k in fmt} for r in records], fmt)], header=header)


# --- The sample account -----------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["flow-logs", "cloudwatch"])
def test_every_table_matches_the_reference_on_the_sample_account(which):
    inv = SAMPLE / "inventory"
    if which == "flow-logs":
        files = sorted((SAMPLE / "flow-logs").rglob("*.log.gz"))
        result = sgaudit.analyze(SAMPLE / "flow-logs", inv)
    else:
        files = [SAMPLE / "cloudwatch" / "app-eni.log"]
        result = sgaudit.analyze(files, inv)
    try:
        assert len(result.conversations) > 0
        compare(result, reference.analyze(files, inv))
    finally:
        result.close()


# --- Records drawn one by one, against a snapshot with every kind of rule and address ----------------------
# The conversation-shaped traffic above follows the rules; these records do not. They are drawn each on its
# own from small pools (so that they collide into conversations), most with a reply, and cover what
# that traffic does not: secondary addresses and delegated prefixes (sides without flow-direction), prefix
# lists, a referenced group missing from the snapshot, a group referencing itself, protocol numbers written
# as numbers, an ICMP rule with a type, a port-less protocol other than ICMP, equal ports, millisecond times,
# a window, records a reader can type but that make no sense, and several files in different layouts.


def rich_snapshot():
    snap = Snapshot()
    for gid in ("sg-a", "sg-b", "sg-c", "sg-d"):
        snap.group(gid, gid.replace("sg-", "group "))
    snap.prefix_list("pl-corp", ["192.0.2.0/24", "198.51.100.0/25"])
    snap.rule("sgr-a-ssh", "sg-a", "tcp", 22, 22, prefix_list="pl-corp")
    snap.rule("sgr-a-web", "sg-a", "tcp", 80, 90, cidr="10.0.0.0/8")
    snap.rule("sgr-a-ntp", "sg-a", "17", 123, 123, cidr="0.0.0.0/0")
    snap.rule("sgr-a-https6", "sg-a", "6", 443, 443, cidr="::/0")
    snap.rule("sgr-a-ping", "sg-a", "icmp", 8, -1, cidr="0.0.0.0/0")
    snap.rule("sgr-a-sctp", "sg-a", "132", -1, -1, cidr="10.0.0.0/8")
    snap.rule("sgr-a-out", "sg-a", "-1", -1, -1, egress=True, cidr="0.0.0.0/0")
    snap.rule("sgr-b-db", "sg-b", "tcp", 5432, 5432, ref="sg-a")
    snap.rule("sgr-b-peered", "sg-b", "tcp", 0, 65535, ref_info={"GroupId": "sg-elsewhere", "UserId": "210987654321",
                                                                   "VpcPeeringConnectionId": "pcx-1"})
    snap.rule("sgr-b-icmp6", "sg-b", "icmpv6", -1, -1, cidr="::/0")
    snap.rule("sgr-b-https-out", "sg-b", "tcp", 443, 443, egress=True, cidr="0.0.0.0/0")
    snap.rule("sgr-b-dns-out", "sg-b", "udp", 53, 53, egress=True, cidr="10.0.0.2/32")
    snap.rule("sgr-b-self-out", "sg-b", "tcp", 5432, 5432, egress=True, ref="sg-b")
    snap.rule("sgr-b-any-in", "sg-b", "-1", -1, -1, ref="sg-b")
    snap.rule("sgr-c-rdp", "sg-c", "tcp", 3389, 3389, cidr="0.0.0.0/0")
    snap.rule("sgr-d-ssh", "sg-d", "tcp", 22, 22, cidr="10.0.0.0/8")
    snap.interface("eni-1", "10.0.0.5", groups=["sg-a"], secondary=["10.0.0.6"], ipv6=["2600:1f18::5"])
    snap.interface("eni-2", "10.0.1.7", groups=["sg-a", "sg-b"], prefixes=["10.0.1.32/28"])
    snap.interface("eni-3", "10.0.2.9", groups=["sg-b"], ipv6=["2600:1f18::9"])
    snap.interface("eni-4", "10.0.3.3", groups=["sg-d"])
    snap.interface("eni-nat", "10.0.0.254", groups=[], itype="nat_gateway")
    return snap


RICH = rich_snapshot()
#: Each logged interface's own addresses (one inside eni-2's delegated prefix), as AWS may write them.
OWN = {"eni-1": ["10.0.0.5", "10.0.0.6", "2600:1f18::5"], "eni-2": ["10.0.1.7", "10.0.1.40"],
       "eni-3": ["10.0.2.9", "2600:1f18::9"], "eni-nat": ["10.0.0.254"], "eni-gone": ["10.0.9.9"]}
PEERS = ["192.0.2.10", "10.0.1.7", "198.51.100.200", "10.0.2.9", "10.0.0.5", "10.0.0.6", "10.0.1.40", "203.0.113.9",
         "10.0.0.2", "2001:db8::7", "2600:1f18::9", "2600:1f18::5"]
TCP_FLAGS = [None, 0, 1, 2, 3, 4, 16, 18, 19, 20, 24]
T0_RICH = 1738854240


SERVICE_PORTS = [22, 80, 85, 123, 443, 5432, 53, 3389]
EPHEMERAL = [40000, 40001, 123]
#: TCP (first flags, reply flags): handshakes of every shape, and anything at all.
TCP_PAIRS = [(2, 18), (3, 19), (2, 4), (0, 18), (2, 18), (None, None)]


@st.composite
def loose_record(draw) -> list[dict]:
    """One record, and half the time its reply."""
    eni = draw(st.sampled_from(["eni-1"] * 3 + ["eni-2"] * 3 + ["eni-3"] * 3 + ["eni-nat", "eni-gone", None]))
    start = T0_RICH + draw(st.sampled_from([0, 30, 60, 120, 600, 1800]))
    millis = draw(st.sampled_from([False, False, False, True]))
    status = draw(st.sampled_from(["OK"] * 20 + ["NODATA", "SKIPDATA", "BAD"]))
    if status in ("NODATA", "SKIPDATA"):
        return [nodata(eni or "eni-1", start, status=status)]
    own = OWN.get(eni, ["10.0.0.5"])
    local = draw(st.sampled_from(own * 8 + ["10.0.7.7"]))
    peer = draw(st.sampled_from(PEERS * 20 + ["not-an-address"]))
    proto = draw(st.sampled_from([6] * 6 + [17, 17, 1, 58, 132]))
    if proto in (6, 17):
        service, eph = draw(st.sampled_from(SERVICE_PORTS)), draw(st.sampled_from(EPHEMERAL))
        # Mostly someone talking to a service port: the peer to E's (inbound) or E to the peer's.
        lport, pport = draw(st.sampled_from([(service, eph), (service, eph), (eph, service), (eph, service),
                                             (service, service)]))
    else:
        lport, pport = 0, 0
    sent_by_local = draw(st.booleans())
    direction = draw(st.sampled_from(["ingress"] * 10 + ["egress"] * 10 + ["-", "sideways"]))
    if direction in ("ingress", "egress"):
        sent_by_local = direction == "egress"
    if proto == 6:
        first, reply = draw(st.sampled_from(TCP_PAIRS))
        if first is None:
            first, reply = draw(st.sampled_from(TCP_FLAGS)), draw(st.sampled_from(TCP_FLAGS))
    else:
        # AWS writes 0 or `-` here; a SYN or SYN-ACK value checks that other protocols ignore the flags.
        first, reply = (draw(st.sampled_from([None, 0, 0, 2, 18])) for _ in range(2))
    action = draw(st.sampled_from(["ACCEPT"] * 8 + ["REJECT"] * 2 + ["DROP"]))
    sides = [sent_by_local] + ([not sent_by_local] if draw(st.integers(0, 3)) else [])
    out = []
    for i, from_local in enumerate(sides):
        src, dst, sport, dport = (local, peer, lport, pport) if from_local else (peer, local, pport, lport)
        when = start + 60 * i * draw(st.integers(0, 1))
        d = direction if direction not in ("ingress", "egress") else ("egress" if from_local else "ingress")
        act = action if i == 0 else draw(st.sampled_from(["ACCEPT"] * 4 + ["REJECT"]))
        end = when + draw(st.integers(0, 59))
        r = rec(eni, src, dst, sport, dport, proto=proto, flags=reply if i else first, direction=d, action=act,
                start=when * 1000 if millis else when, end=end * 1000 if millis else end,
                packets=draw(st.integers(1, 9)), bytes_=draw(st.integers(40, 900)), status=status)
        r["flow-direction"] = None if d == "-" else d
        out.append(r)
    return out


@st.composite
def loose_files(draw) -> list[tuple[list[dict], list[str]]]:
    records = [r for group in draw(st.lists(loose_record(), min_size=3, max_size=40)) for r in group]
    k = draw(st.integers(1, 3))
    where = draw(st.lists(st.integers(0, k - 1), min_size=len(records), max_size=len(records)))
    files = []
    for i in range(k):
        fmt = LAYOUTS[draw(st.sampled_from(sorted(LAYOUTS)))]
        files.append(([{f: r.get(f) for f in fmt} for r, w in zip(records, where, strict=True) if w == i], fmt))
    return files


WINDOWS = [None, (T0_RICH + 30, T0_RICH + 1800), (T0_RICH + 60, None), (None, T0_RICH + 600)]


@examples(150)
@given(files=loose_files(), window=st.sampled_from(WINDOWS))
def test_every_table_matches_the_reference_on_loose_records_and_every_kind_of_rule(files, window):
    check(RICH, files, window=window or (None, None))
