"""Reduced rows → counted buckets and conversations (SPEC "From records to conversations").

Every reduced row (and so every record in it) lands in exactly one bucket:

=============================  ==========================================================================
``conversation``               traffic of an interface that carries groups: goes on to rule matching
``nodata`` / ``skipdata``      log-status NODATA / SKIPDATA in the window: coverage only
``malformed``                  a record that does not make sense (no start, an action other than
                               ACCEPT/REJECT, an address that is not IPv4 or IPv6, missing ports for TCP/UDP,
                               an unknown log-status or flow-direction, an end before the start, a time
                               outside 1970-2262, negative counts); lines the reader could not even type
                               are counted as malformed too, with file and line
``outside_window``             its ``start`` is outside ``[--start, --end)``
``unattributable``             no interface (``-``, e.g. regional NAT gateway traffic), or, without
                               ``flow-direction``, neither address belongs to the interface
``interface_not_in_snapshot``  the interface is not in network-interfaces.json: coverage only
``no_security_groups``         the interface carries no group (a NAT gateway): coverage only
=============================  ==========================================================================

Sides: ``flow-direction`` decides when present (it wins even when the local address is no longer in the
inventory); otherwise the local side is whichever address belongs to the interface (primary, secondary,
IPv6 or inside a delegated prefix). The destination is tried first: it is E's when both are.
"""

from __future__ import annotations

from .reduction import RST, SLOT_ACC_A, SLOT_ACC_B, SLOT_REJ_A, SLOT_REJ_B, SYN, SYNACK, flag_sql, side_bits_sql

#: Every bucket, with the words the quality table and the summary use for it.
BUCKETS = {
    "conversation": "in a conversation (matched against rules)",
    "nodata": "NODATA (no traffic in the interval: coverage only)",
    "skipdata": "SKIPDATA (records AWS skipped: coverage only)",
    "malformed": "malformed (see the problems table for file, line and value)",
    "outside_window": "outside the window (--start/--end)",
    "unattributable": "unattributable (no interface, or neither address is the interface's)",
    "interface_not_in_snapshot": "interface not in the snapshot (coverage only)",
    "no_security_groups": "interface without security groups, e.g. a NAT gateway (coverage only)",
}

# Swapping sides a and b of a reduced row: its counts, and the slots of its flag bitmask.
_SWAP_BITS = " + ".join(
    f"{side_bits_sql('flag_bits', src)} * {dst}"
    for src, dst in ((SLOT_ACC_B, SLOT_ACC_A), (SLOT_ACC_A, SLOT_ACC_B),
                     (SLOT_REJ_B, SLOT_REJ_A), (SLOT_REJ_A, SLOT_REJ_B))
)

# Version-2 rows: which side is the interface's. The destination is tried first: it is when both are.
V2_SIDES_SQL = """
CREATE OR REPLACE TABLE v2_sides AS
SELECT k.interface_id, k.a_addr, k.b_addr,
    CASE
        WHEN EXISTS (SELECT 1 FROM owned o WHERE o.interface_id = k.interface_id AND o.family = b.family
                     AND b.num BETWEEN o.lo AND o.hi) THEN TRUE
        WHEN EXISTS (SELECT 1 FROM owned o WHERE o.interface_id = k.interface_id AND o.family = a.family
                     AND a.num BETWEEN o.lo AND o.hi) THEN FALSE
    END AS local_is_b
FROM (SELECT DISTINCT interface_id, a_addr, b_addr FROM reduced WHERE bucket = 'ok' AND NOT resolved) k
LEFT JOIN v2_addr a ON a.addr = k.a_addr
LEFT JOIN v2_addr b ON b.addr = k.b_addr
"""

_COLS = "records, packets, bytes, first_ms, last_ms, rej_first_ms, rej_last_ms"

# Every reduced row with the interface's side as "local" (l) and the other as "peer" (p). A version-2 row
# is unattributable only at an interface that carries groups: elsewhere it counts for coverage only, in
# the interface-not-in-snapshot or no-security-groups bucket, like any other record there.
ORIENTED_SQL = """
CREATE OR REPLACE VIEW oriented AS
SELECT bucket, interface_id, action, protocol,
       local_addr, a_port AS local_port, b_addr AS peer_addr, b_port AS peer_port,
       acc_a AS acc_l, acc_b AS acc_p, rej_a AS rej_l, rej_b AS rej_p, flag_bits, {cols}, b_num4 AS peer_num4
FROM reduced WHERE bucket <> 'ok' OR resolved
UNION ALL
SELECT CASE WHEN v.local_is_b IS NULL AND coalesce(si.has_groups, FALSE) THEN 'unattributable' ELSE 'ok' END,
       r.interface_id, r.action, r.protocol,
       CASE WHEN v.local_is_b THEN r.b_addr ELSE r.a_addr END,
       CASE WHEN v.local_is_b THEN r.b_port ELSE r.a_port END,
       CASE WHEN v.local_is_b THEN r.a_addr ELSE r.b_addr END,
       CASE WHEN v.local_is_b THEN r.a_port ELSE r.b_port END,
       CASE WHEN v.local_is_b THEN r.acc_b ELSE r.acc_a END,
       CASE WHEN v.local_is_b THEN r.acc_a ELSE r.acc_b END,
       CASE WHEN v.local_is_b THEN r.rej_b ELSE r.rej_a END,
       CASE WHEN v.local_is_b THEN r.rej_a ELSE r.rej_b END,
       CASE WHEN v.local_is_b THEN {swap} ELSE r.flag_bits END,
       {rcols},
       CASE WHEN v.local_is_b THEN ipv4_num(r.a_addr) ELSE r.b_num4 END
FROM reduced r LEFT JOIN v2_sides v
    ON v.interface_id = r.interface_id AND v.a_addr = r.a_addr AND v.b_addr = r.b_addr
LEFT JOIN snapshot_interfaces si ON si.interface_id = r.interface_id
WHERE r.bucket = 'ok' AND NOT r.resolved
""".format(cols=_COLS, swap=_SWAP_BITS.replace("flag_bits", "r.flag_bits"),
           rcols=", ".join("r." + c.strip() for c in _COLS.split(",")))

# Records of interfaces that carry groups, per conversation. An interface outside the snapshot, or
# without groups, counts for coverage only. When the reduction ran as one statement over resolved
# records, its rows already are conversations and the sum is skipped (`CONVERSATIONS_RAW_VIEW`).
CONVERSATIONS_RAW_SQL = """
CREATE OR REPLACE TABLE conv_merged AS
SELECT o.interface_id, o.protocol, o.local_port, coalesce(k.canon, o.peer_addr) AS peer_addr, o.peer_port,
       min(o.local_addr) AS local_addr, min(o.peer_num4) AS peer_num4,
       sum(o.records) AS records,
       sum(o.acc_l) AS acc_l, sum(o.acc_p) AS acc_p, sum(o.rej_l) AS rej_l, sum(o.rej_p) AS rej_p,
       bit_or(o.flag_bits) AS flag_bits,
       sum(o.packets) AS packets, sum(o.bytes) AS bytes,
       min(o.first_ms) AS first_ms, max(o.last_ms) AS last_ms,
       min(o.rej_first_ms) AS rej_first_ms, max(o.rej_last_ms) AS rej_last_ms
FROM oriented o JOIN snapshot_interfaces i ON i.interface_id = o.interface_id AND i.has_groups
LEFT JOIN peer_canon k ON k.addr = o.peer_addr
WHERE o.bucket = 'ok'
GROUP BY o.interface_id, o.protocol, o.local_port, coalesce(k.canon, o.peer_addr), o.peer_port;
CREATE OR REPLACE VIEW conv_raw AS SELECT rowid AS conversation_id, * FROM conv_merged
"""

# The reduction's own rows, when they already are conversations. A conversation is identified by its
# row (DuckDB's ``rowid``: the table is written once and never changed), so nothing is copied.
_ROWS_AS_CONVERSATIONS = """
SELECT r.rowid AS conversation_id, r.interface_id, r.protocol, r.a_port AS local_port, r.b_addr AS peer_addr,
       r.b_port AS peer_port, r.local_addr, r.b_num4 AS peer_num4, r.records,
       r.acc_a AS acc_l, r.acc_b AS acc_p, r.rej_a AS rej_l, r.rej_b AS rej_p, r.flag_bits, r.packets, r.bytes,
       r.first_ms, r.last_ms, r.rej_first_ms, r.rej_last_ms
FROM reduced r JOIN snapshot_interfaces i ON i.interface_id = r.interface_id AND i.has_groups
WHERE r.bucket = 'ok'"""
CONVERSATIONS_RAW_VIEW = f"CREATE OR REPLACE VIEW conv_raw AS {_ROWS_AS_CONVERSATIONS}\n"

# The same when some peers are written two ways (`addresses.build_respelled_table`, ``peer_canon``; rare:
# a tool rewrote the logs). Their conversations, and their slots over time, are keyed by the canonical
# spelling; an address written one way keeps its spelling, whatever it is. Only the rows of those peers,
# under any spelling they were written in (``peer_canon.addr``), are summed; a merged conversation is
# identified by the first of its rows, which no other conversation has. A view, like the one above:
# measured at 10M records with one peer taken this way, it cost about 1.7 s more than that one, and a
# table written once 3.5 s.
CONVERSATIONS_RESPELLED_SQL = f"""
CREATE OR REPLACE VIEW conv_raw AS
{_ROWS_AS_CONVERSATIONS} AND r.b_addr NOT IN (SELECT addr FROM peer_canon)
UNION ALL
SELECT min(r.rowid), r.interface_id, r.protocol, r.a_port, coalesce(k.canon, r.b_addr), r.b_port,
       min(r.local_addr), min(r.b_num4), sum(r.records), sum(r.acc_a), sum(r.acc_b), sum(r.rej_a), sum(r.rej_b),
       bit_or(r.flag_bits), sum(r.packets), sum(r.bytes),
       min(r.first_ms), max(r.last_ms), min(r.rej_first_ms), max(r.rej_last_ms)
FROM reduced r JOIN snapshot_interfaces i ON i.interface_id = r.interface_id AND i.has_groups
LEFT JOIN peer_canon k ON k.addr = r.b_addr
WHERE r.bucket = 'ok' AND r.b_addr IN (SELECT addr FROM peer_canon)
GROUP BY r.interface_id, r.protocol, r.a_port, coalesce(k.canon, r.b_addr), r.b_port
"""

# The peer as a number (`addresses`); a peer that is neither IPv4 nor IPv6 gets family NULL, and its
# records count as malformed.
CONVERSATIONS_SQL = """
CREATE OR REPLACE VIEW conversations AS
SELECT c.conversation_id, c.interface_id, c.protocol, c.local_port, c.peer_addr, c.peer_port, c.local_addr,
       CASE WHEN c.peer_num4 IS NOT NULL THEN 4 ELSE v6.family END::TINYINT AS family,
       coalesce(c.peer_num4, v6.num) AS peer_num,
       c.records::BIGINT AS records, c.acc_p::BIGINT AS acc_p, c.acc_l::BIGINT AS acc_l,
       c.rej_p::BIGINT AS rej_p, c.rej_l::BIGINT AS rej_l, coalesce(c.flag_bits, 0)::SMALLINT AS flag_bits,
       c.packets::BIGINT AS packets, c.bytes::BIGINT AS bytes,
       c.first_ms, c.last_ms, c.rej_first_ms, c.rej_last_ms
FROM conv_raw c
LEFT JOIN addr v6 ON v6.addr = c.peer_addr
"""

# Records per interface and bucket: what the quality table and coverage are made of.
BUCKETS_SQL = """
CREATE OR REPLACE TABLE buckets AS
SELECT interface_id, bucket, sum(records) AS records, sum(rejected) AS rejected,
       min(first_ms) AS first_ms, max(last_ms) AS last_ms
FROM (
    SELECT o.interface_id,
           CASE WHEN o.bucket <> 'ok' THEN o.bucket
                WHEN i.interface_id IS NULL THEN 'interface_not_in_snapshot'
                ELSE 'no_security_groups' END AS bucket,
           o.records, CASE WHEN o.action = 'REJECT' THEN o.records ELSE o.rej_l + o.rej_p END AS rejected,
           least(o.first_ms, o.rej_first_ms) AS first_ms, greatest(o.last_ms, o.rej_last_ms) AS last_ms
    FROM oriented o LEFT JOIN snapshot_interfaces i ON i.interface_id = o.interface_id
    WHERE o.bucket <> 'ok' OR i.interface_id IS NULL OR NOT i.has_groups
    UNION ALL
    SELECT interface_id, CASE WHEN family IS NULL THEN 'malformed' ELSE 'conversation' END,
           records, rej_l + rej_p, least(first_ms, rej_first_ms), greatest(last_ms, rej_last_ms)
    FROM conversations
)
GROUP BY interface_id, bucket
"""


# --- Initiator and evidence -------------------------------------------------------------------------
# The facts are taken from the accepted records when there are any (evidence must rest on what was
# allowed), otherwise from the rejected ones (a REJECT-only conversation still has a direction, for the
# rejected-attempts report). P = the peer sent it, L = the interface E sent it.

# The flag bitmask of the reduction (see `reduction`), one fact per column.
# Side a is the interface's (l) and side b the peer's (p) once rows are oriented.
_FLAGS = ", ".join(
    f"{flag_sql('flag_bits', slot, fact)} AS {name}"
    for name, slot, fact in (
        ("acc_p_syn", SLOT_ACC_B, SYN), ("acc_p_synack", SLOT_ACC_B, SYNACK), ("acc_p_rst", SLOT_ACC_B, RST),
        ("acc_l_syn", SLOT_ACC_A, SYN), ("acc_l_synack", SLOT_ACC_A, SYNACK), ("acc_l_rst", SLOT_ACC_A, RST),
        ("rej_p_syn", SLOT_REJ_B, SYN), ("rej_p_synack", SLOT_REJ_B, SYNACK),
        ("rej_l_syn", SLOT_REJ_A, SYN), ("rej_l_synack", SLOT_REJ_A, SYNACK),
    )
)

_BASIS = """
    (acc_p + acc_l) > 0 AS accepted,
    CASE WHEN (acc_p + acc_l) > 0 THEN acc_p ELSE rej_p END AS n_p,
    CASE WHEN (acc_p + acc_l) > 0 THEN acc_l ELSE rej_l END AS n_l,
    CASE WHEN (acc_p + acc_l) > 0 THEN acc_p_syn ELSE rej_p_syn END AS s_p,
    CASE WHEN (acc_p + acc_l) > 0 THEN acc_l_syn ELSE rej_l_syn END AS s_l,
    CASE WHEN (acc_p + acc_l) > 0 THEN acc_p_synack ELSE rej_p_synack END AS a_p,
    CASE WHEN (acc_p + acc_l) > 0 THEN acc_l_synack ELSE rej_l_synack END AS a_l
"""

# SPEC "Initiator (TCP)" then "Initiator without handshake flags", as (condition, initiator, basis) steps,
# the first that holds decides. Decisions where SPEC is silent (docs/decisions.md): both sides proven or
# both sending SYN falls through to the inference; one-way traffic is settled before the rules are asked;
# a tie in ports (ICMP, equal ports) counts as inbound. The basis ``ports`` is a guess: no handshake flag,
# traffic both ways, and the rules of both directions (or of neither) allow it.
_INITIATOR_STEPS = (
    ("(s_p = 1 AND a_l = 1) AND NOT (s_l = 1 AND a_p = 1)", "P", "flags"),
    ("(s_l = 1 AND a_p = 1) AND NOT (s_p = 1 AND a_l = 1)", "L", "flags"),
    ("s_p = 1 AND s_l = 0", "P", "flags"),
    ("s_l = 1 AND s_p = 0", "L", "flags"),
    ("a_l = 1 AND a_p = 0", "P", "flags"),
    ("a_p = 1 AND a_l = 0", "L", "flags"),
    ("n_p > 0 AND n_l = 0", "P", "one-way"),
    ("n_l > 0 AND n_p = 0", "L", "one-way"),
    ("accepted AND allows_in AND NOT allows_out", "P", "rules"),
    ("accepted AND allows_out AND NOT allows_in", "L", "rules"),
    ("local_port < peer_port", "P", "ports"),
    ("peer_port < local_port", "L", "ports"),
)


def _steps_case(pick) -> str:
    whens = "\n".join(f"    WHEN {cond} THEN {pick(who, basis)}" for cond, who, basis in _INITIATOR_STEPS)
    return f"CASE\n{whens}\n    ELSE {pick('P', 'ports')}\nEND"


INITIATOR_SQL = _steps_case(lambda who, basis: f"'{who}'")
#: Whether a conversation's direction is a guess (`_INITIATOR_STEPS`' ``ports``) that rules of both
#: directions allow: the usage table follows SPEC's guess, but a plan must keep both directions working,
#: since the connection may well run the other way (a client port below the server's, a ping from E).
GUESSED_SQL = "(accepted AND allows_in AND allows_out AND " + _steps_case(
    lambda who, basis: "TRUE" if basis == "ports" else "FALSE") + ")"

# SPEC "Evidence", on accepted records only; NULL for a conversation with no accepted record.
EVIDENCE_SQL = """
CASE
    WHEN NOT accepted THEN NULL
    WHEN (CASE WHEN initiator = 'P' THEN acc_p_syn ELSE acc_l_syn END) = 1
     AND (CASE WHEN initiator = 'P' THEN acc_l_synack ELSE acc_p_synack END) = 1 THEN 'established'
    WHEN acc_p > 0 AND acc_l > 0
     AND (CASE WHEN initiator = 'P' THEN acc_p_syn ELSE acc_l_syn END) = 1
     AND (CASE WHEN initiator = 'P' THEN acc_l_rst ELSE acc_p_rst END) = 1 THEN 'attempted'
    WHEN acc_p > 0 AND acc_l > 0 THEN 'inferred'
    WHEN (CASE WHEN initiator = 'P' THEN acc_l_synack ELSE acc_p_synack END) = 1 THEN 'inferred'
    ELSE 'attempted'
END
"""

# ``n_in``/``n_out``: how many rules of each direction could allow the conversation.
CLASSIFY_SQL = """
CREATE OR REPLACE TABLE classified AS
WITH c AS (SELECT *, {flags} FROM conversations WHERE family IS NOT NULL),
m AS (SELECT conversation_id, sum(CASE WHEN is_egress THEN 0 ELSE 1 END)::BIGINT AS n_in,
             sum(CASE WHEN is_egress THEN 1 ELSE 0 END)::BIGINT AS n_out
      FROM candidates GROUP BY conversation_id),
k AS (
    SELECT c.*, coalesce(m.n_in, 0) > 0 AS allows_in, coalesce(m.n_out, 0) > 0 AS allows_out,
           coalesce(m.n_in, 0) AS n_in, coalesce(m.n_out, 0) AS n_out,
        {basis}
    FROM c LEFT JOIN m USING (conversation_id)
),
i AS (SELECT *, {initiator} AS initiator, {guessed} AS guessed FROM k)
-- Only what the result tables read: this table is as long as the input has conversations.
SELECT conversation_id, interface_id, protocol, local_addr, local_port, peer_addr, peer_port, family, peer_num,
    accepted, acc_p, acc_l, rej_p, rej_l, flag_bits, packets, bytes, first_ms, last_ms, rej_first_ms, rej_last_ms,
    CASE WHEN initiator = 'P' THEN 'inbound' ELSE 'outbound' END AS direction,
    CASE WHEN initiator = 'P' THEN local_port ELSE peer_port END AS port,
    CASE WHEN NOT accepted THEN 0 WHEN initiator = 'P' THEN n_in ELSE n_out END AS n_rules,
    guessed, {evidence} AS evidence
FROM i
"""


def classify_sql() -> str:
    """The statement that gives every conversation its initiator, direction, port and evidence."""
    return CLASSIFY_SQL.format(flags=_FLAGS, basis=_BASIS, initiator=INITIATOR_SQL, guessed=GUESSED_SQL,
                               evidence=EVIDENCE_SQL)
