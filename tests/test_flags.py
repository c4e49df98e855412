"""Table tests of the TCP-flag classification (SPEC "Initiator (TCP)", "Initiator without handshake flags",
"Evidence" and "REJECT").

One conversation at one interface E (10.0.0.5) with one peer, written as v5 records with flow-direction
and tcp-flags. Each row gives the records each side sent (their flags, one record per entry, ``None`` for
a missing ``-`` value) and their action; the expectation is the conversation's direction and evidence in
``result.conversations`` and the status of the ingress rule ``tcp 443 from 0.0.0.0/0`` and of the default
egress rule (``-1`` to ``0.0.0.0/0``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from builders import T0, Snapshot, rec, row, run

E, E_IP = "eni-e", "10.0.0.5"
PEER, PEER_PORT = "203.0.113.7", 51000
LOCAL_PORT = 443
MISSING = "-"  # a record whose tcp-flags is `-`


def default_snapshot() -> Snapshot:
    snap = Snapshot()
    snap.group("sg-e", "e")
    snap.rule("sgr-https", "sg-e", "tcp", 443, 443, cidr="0.0.0.0/0")
    snap.rule("sgr-out", "sg-e", "-1", -1, -1, egress=True, cidr="0.0.0.0/0")
    snap.interface(E, E_IP, groups=["sg-e"])
    return snap


def from_peer(flags, *, action="ACCEPT", start=T0, peer=PEER, peer_port=PEER_PORT, local_port=LOCAL_PORT,
              proto=6) -> dict:
    return rec(E, peer, E_IP, peer_port, local_port, proto=proto, flags=None if flags == MISSING else flags,
               direction="ingress", action=action, start=start, end=start + 59, packets=2, bytes_=120)


def from_e(flags, *, action="ACCEPT", start=T0, peer=PEER, peer_port=PEER_PORT, local_port=LOCAL_PORT,
           proto=6) -> dict:
    return rec(E, E_IP, peer, local_port, peer_port, proto=proto, flags=None if flags == MISSING else flags,
               direction="egress", action=action, start=start, end=start + 59, packets=3, bytes_=400)


@dataclass
class Case:
    id: str
    peer: tuple | None  # flags of the records the peer sent, one per record; None: no record
    local: tuple | None  # flags of the records E sent
    direction: str | None  # expected; None: no accepted conversation
    evidence: str | None
    https: str  # expected status of sgr-https (ingress tcp 443 from 0.0.0.0/0)
    out: str  # expected status of sgr-out (egress -1 to 0.0.0.0/0)
    peer_action: str = "ACCEPT"
    local_action: str = "ACCEPT"
    local_delay: int = 0  # seconds between the peer's first record and E's first record
    rejected: dict = field(default_factory=dict)  # expected row of result.rejected, if any

    def records(self) -> list[dict]:
        out = []
        for i, f in enumerate(self.peer or ()):
            out.append(from_peer(f, action=self.peer_action, start=T0 + 60 * i))
        for i, f in enumerate(self.local or ()):
            out.append(from_e(f, action=self.local_action, start=T0 + self.local_delay + 60 * i))
        return out


IN_ATTEMPT = {"direction": "inbound", "protocol": 6, "port": 443, "attempts": 1, "peers": 1}

CASES = [
    Case("syn/synack-2/18", (2,), (18,), "inbound", "established", "used", "unused"),
    Case("short-connection-with-fin-3/19", (3,), (19,), "inbound", "established", "used", "unused"),
    Case("syn-with-later-records", (2, 0, 1), (18, 0, 1), "inbound", "established", "used", "unused"),
    Case("outbound-syn-from-E/synack-from-peer", (18,), (2,), "outbound", "established", "unused", "used"),
    Case("outbound-fin-3/19", (19,), (3,), "outbound", "established", "unused", "used"),
    # The SYN closes one aggregation interval, the SYN-ACK is in the next minute's record.
    Case("syn-and-synack-in-adjacent-intervals", (2,), (18,), "inbound", "established", "used", "unused",
         local_delay=60),
    Case("outbound-syn-and-synack-in-adjacent-intervals", (0, 18), (2,), "outbound", "established", "unused",
         "used"),
    # A conversation is every record of its key in the window, so its flags are pooled over the window:
    # "same or adjacent intervals" allows, it does not limit (docs/decisions.md, "Initiator and evidence").
    Case("syn-and-synack-hours-apart-one-conversation", (2,), (18,), "inbound", "established", "used", "unused",
         local_delay=3 * 3600),
    Case("synack-without-syn-opened-before-window", (0,), (18,), "inbound", "inferred", "used", "unused"),
    Case("synack-without-syn-flags-missing-on-peer", (MISSING,), (18,), "inbound", "inferred", "used", "unused"),
    Case("synack-only-from-E", None, (18,), "inbound", "inferred", "used", "unused"),
    Case("outbound-synack-without-syn", (18,), (0,), "outbound", "inferred", "unused", "used"),
    Case("syn-answered-by-rst-4", (2,), (4,), "inbound", "attempted", "attempted", "unused"),
    Case("syn-and-rst-in-adjacent-intervals", (2,), (4,), "inbound", "attempted", "attempted", "unused",
         local_delay=60),
    Case("outbound-syn-answered-by-rst", (4,), (2,), "outbound", "attempted", "unused", "attempted"),
    # RST-ACK (4 + 16): the RST bit is what counts, as for any flag on top of it.
    Case("syn-answered-by-rst-ack-20", (2,), (20,), "inbound", "attempted", "attempted", "unused"),
    Case("syn-only-no-answer", (2,), None, "inbound", "attempted", "attempted", "unused"),
    Case("syn-retransmitted-no-answer", (2, 2, 2), None, "inbound", "attempted", "attempted", "unused"),
    Case("outbound-syn-only", None, (2,), "outbound", "attempted", "unused", "attempted"),
    # No handshake flags: both directions' rules allow it (ingress 443, egress all), so the lower port
    # (443, E's) is the responder.
    Case("mid-stream-flags-0", (0,), (0,), "inbound", "inferred", "used", "unused"),
    Case("fin-both-ways-1/1", (1,), (1,), "inbound", "inferred", "used", "unused"),
    Case("flags-missing-both-ways", (MISSING,), (MISSING,), "inbound", "inferred", "used", "unused"),
    Case("syn-accepted-synack-rejected", (2,), (18,), "inbound", "attempted", "attempted", "unused",
         local_action="REJECT", rejected=IN_ATTEMPT),
    Case("reject-both-ways", (2,), (18,), None, None, "unused", "unused", peer_action="REJECT",
         local_action="REJECT", rejected=IN_ATTEMPT),
    Case("reject-syn-only", (2, 2), None, None, None, "unused", "unused", peer_action="REJECT",
         rejected=IN_ATTEMPT),
    # Unsupported bits on top of a SYN-ACK or a SYN: `flags & 18` still decides.
    Case("synack-with-rst-bit-22", (2,), (22,), "inbound", "established", "used", "unused"),
    Case("synack-with-psh-bit-26", (2,), (26,), "inbound", "established", "used", "unused"),
    Case("syn-with-bit-8-is-10", (10,), (18,), "inbound", "established", "used", "unused"),
    Case("outbound-syn-with-bit-8-is-10", (18,), (10,), "outbound", "established", "unused", "used"),
    # A SYN-ACK alone is not a SYN: 18 from both sides proves no initiator by flags.
    Case("synack-both-ways-falls-to-inference", (18,), (18,), "inbound", "inferred", "used", "unused"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_flag_classification(tmp_path, case: Case):
    result = run(tmp_path, default_snapshot(), case.records())
    try:
        conv = result.conversations
        if case.direction is None:
            assert conv.empty
        else:
            assert len(conv) == 1, conv
            c = conv.iloc[0]
            assert (c["direction"], c["evidence"]) == (case.direction, case.evidence)
            assert c["port"] == (LOCAL_PORT if case.direction == "inbound" else PEER_PORT)
            assert c["peer"] == PEER and c["interface_id"] == E
        assert row(result, "sgr-https")["status"] == case.https
        assert row(result, "sgr-out")["status"] == case.out
        rej = result.rejected
        if case.rejected:
            assert len(rej) == 1, rej
            got = rej.iloc[0]
            assert got["interface_id"] == E
            assert {k: got[k] for k in case.rejected} == case.rejected
        else:
            assert rej.empty, rej
        # REJECT is never usage: a rule's numbers only count accepted records.
        for rid in ("sgr-https", "sgr-out"):
            r = row(result, rid)
            if r["status"] not in ("used", "attempted"):
                assert r["connections"] == 0 and r["evidence"] == ""
    finally:
        result.close()


def test_syn_and_synack_from_both_sides_leave_the_direction_to_the_rules(tmp_path):
    # Both sides sent a SYN and a SYN-ACK (a simultaneous open, or a port reused both ways in the window):
    # the flags name no initiator (docs/decisions.md), so the rules decide. Here only the egress rule can
    # allow it (E's port 51000 is in no ingress rule): outbound, to the peer's port 443.
    recs = [from_peer(f, local_port=51000, peer_port=443, start=T0 + 60 * i) for i, f in enumerate((2, 18))]
    recs += [from_e(f, local_port=51000, peer_port=443, start=T0 + 60 * i) for i, f in enumerate((2, 18))]
    result = run(tmp_path, default_snapshot(), recs)
    try:
        [c] = result.conversations.to_dict("records")
        assert (c["direction"], c["port"]) == ("outbound", 443)
        assert row(result, "sgr-out")["status"] == "used" and row(result, "sgr-https")["status"] == "unused"
    finally:
        result.close()


def test_rejected_attempts_count_distinct_peer_and_peer_port(tmp_path):
    """REJECT both ways: no usage; attempts per (interface, direction, protocol, port) = distinct (peer, port)."""
    other = "198.51.100.20"
    logs = [
        from_peer(2, action="REJECT"), from_e(18, action="REJECT"),  # (PEER, 51000)
        from_peer(2, action="REJECT", start=T0 + 60),  # (PEER, 51000) again: not a new attempt
        from_peer(2, action="REJECT", peer_port=51001), from_e(18, action="REJECT", peer_port=51001),
        from_peer(2, action="REJECT", peer=other),  # (other, 51000)
        from_peer(2, action="REJECT", local_port=22),  # another port: another row
    ]
    result = run(tmp_path, default_snapshot(), logs)
    try:
        assert result.conversations.empty
        rej = result.rejected.set_index("port")
        assert set(rej.index) == {443, 22}
        assert (rej.loc[443, "attempts"], rej.loc[443, "peers"], rej.loc[443, "records"]) == (3, 2, 6)
        assert rej.loc[443, "direction"] == "inbound" and rej.loc[443, "protocol"] == 6
        assert (rej.loc[22, "attempts"], rej.loc[22, "peers"], rej.loc[22, "records"]) == (1, 1, 1)
        for rid in ("sgr-https", "sgr-out"):
            r = row(result, rid)
            assert (r["status"], r["evidence"], r["connections"]) == ("unused", "", 0)
        assert result.quality.set_index("bucket").loc["conversation", "records"] == len(logs)
    finally:
        result.close()


# --- Without handshake flags (SPEC "Initiator without handshake flags") ------------------------------


def narrow_snapshot() -> Snapshot:
    """Ingress tcp 443 and egress tcp 443 only: which direction the rules allow depends on the ports."""
    snap = Snapshot()
    snap.group("sg-e", "e")
    snap.rule("sgr-in-443", "sg-e", "tcp", 443, 443, cidr="0.0.0.0/0")
    snap.rule("sgr-out-443", "sg-e", "tcp", 443, 443, egress=True, cidr="0.0.0.0/0")
    snap.interface(E, E_IP, groups=["sg-e"])
    return snap


def wide_snapshot() -> Snapshot:
    """Every TCP and UDP port allowed both ways: the rules never decide."""
    snap = Snapshot()
    snap.group("sg-e", "e")
    snap.rule("sgr-in-tcp", "sg-e", "tcp", 0, 65535, cidr="0.0.0.0/0")
    snap.rule("sgr-in-udp", "sg-e", "udp", 0, 65535, cidr="0.0.0.0/0")
    snap.rule("sgr-out", "sg-e", "-1", -1, -1, egress=True, cidr="0.0.0.0/0")
    snap.interface(E, E_IP, groups=["sg-e"])
    return snap


def _one_conversation(tmp_path, snap: Snapshot, logs: list[dict]):
    result = run(tmp_path, snap, logs)
    conv = result.conversations
    assert len(conv) == 1, conv
    return result, conv.iloc[0]


@pytest.mark.parametrize(
    "local_port, peer_port, flags, direction, rule",
    [
        # Only the ingress rule allows it (local port 443), although E's port is the higher one.
        pytest.param(443, 80, 0, "inbound", "sgr-in-443", id="only-ingress-allows-despite-ports"),
        # Only the egress rule allows it (remote port 443), although E's port is the lower one.
        pytest.param(80, 443, 0, "outbound", "sgr-out-443", id="only-egress-allows-despite-ports"),
        pytest.param(443, 80, MISSING, "inbound", "sgr-in-443", id="only-ingress-flags-missing"),
        pytest.param(80, 443, 1, "outbound", "sgr-out-443", id="only-egress-fin-both-ways"),
    ],
)
def test_exactly_one_direction_allowed_decides(tmp_path, local_port, peer_port, flags, direction, rule):
    logs = [from_peer(flags, local_port=local_port, peer_port=peer_port),
            from_e(flags, local_port=local_port, peer_port=peer_port)]
    result, c = _one_conversation(tmp_path, narrow_snapshot(), logs)
    try:
        assert (c["direction"], c["evidence"], c["rules"]) == (direction, "inferred", rule)
        assert row(result, rule)["status"] == "used"
    finally:
        result.close()


@pytest.mark.parametrize(
    "snapshot, local_port, peer_port, direction, rules",
    [
        # Both directions allowed: the lower port is the responder.
        pytest.param(wide_snapshot, 443, 51000, "inbound", "sgr-in-tcp", id="both-allow-local-port-lower"),
        pytest.param(wide_snapshot, 51000, 443, "outbound", "sgr-out", id="both-allow-peer-port-lower"),
        # Neither direction allowed (unexplained): the lower port is the responder too.
        pytest.param(narrow_snapshot, 22, 50000, "inbound", "", id="neither-allows-local-port-lower"),
        pytest.param(narrow_snapshot, 50000, 22, "outbound", "", id="neither-allows-peer-port-lower"),
    ],
)
def test_neither_or_both_directions_lower_port_is_responder(tmp_path, snapshot, local_port, peer_port,
                                                            direction, rules):
    logs = [from_peer(0, local_port=local_port, peer_port=peer_port),
            from_e(0, local_port=local_port, peer_port=peer_port)]
    result, c = _one_conversation(tmp_path, snapshot(), logs)
    try:
        assert (c["direction"], c["evidence"], c["rules"]) == (direction, "inferred", rules)
        unexplained = result.unexplained
        assert len(unexplained) == (0 if rules else 1)
    finally:
        result.close()


@pytest.mark.parametrize(
    "proto, sender, flags, direction, rule",
    [
        # The lower port (53, the peer's) would make the peer the responder; one-way traffic says otherwise.
        pytest.param(17, "peer", None, "inbound", "sgr-in-udp", id="one-way-udp-from-peer"),
        pytest.param(17, "E", None, "outbound", "sgr-out", id="one-way-udp-from-E"),
        pytest.param(6, "peer", 0, "inbound", "sgr-in-tcp", id="one-way-tcp-mid-stream-from-peer"),
        pytest.param(6, "E", 1, "outbound", "sgr-out", id="one-way-tcp-fin-from-E"),
    ],
)
def test_one_way_traffic_sender_initiated(tmp_path, proto, sender, flags, direction, rule):
    if sender == "peer":
        logs = [from_peer(flags, proto=proto, local_port=51000, peer_port=53),
                from_peer(flags, proto=proto, local_port=51000, peer_port=53, start=T0 + 60)]
    else:
        logs = [from_e(flags, proto=proto, local_port=53, peer_port=51000)]
    result, c = _one_conversation(tmp_path, wide_snapshot(), logs)
    try:
        assert (c["direction"], c["evidence"], c["rules"]) == (direction, "attempted", rule)
        assert row(result, rule)["status"] == "attempted"
    finally:
        result.close()
