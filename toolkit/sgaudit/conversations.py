"""Directed flows → counted buckets and conversations (SPEC "From records to conversations").

Every directed flow (and so every record in it) lands in exactly one bucket:

=============================  ==========================================================================
``conversation``               traffic of an interface that carries groups: goes on to rule matching
``nodata`` / ``skipdata``      log-status NODATA / SKIPDATA in the window: coverage only
``malformed``                  a record that does not make sense (no start, an action other than
                               ACCEPT/REJECT, an address that is not IPv4 or IPv6, missing ports for TCP/UDP,
                               an unknown log-status or flow-direction); lines the reader could not even
                               type are counted as malformed too, with file and line
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

BUCKETS = (
    "conversation", "nodata", "skipdata", "malformed", "outside_window", "unattributable",
    "interface_not_in_snapshot", "no_security_groups",
)

# Which side is local, for records without flow-direction: NULL when neither address is E's.
_OWNED = """
    EXISTS (SELECT 1 FROM owned o WHERE o.interface_id = b.interface_id AND o.family = b.{a}_family
            AND b.{a}_num BETWEEN o.lo AND o.hi)
"""

SIDES_SQL = """
CREATE OR REPLACE TABLE sides AS
WITH f AS (
    SELECT f.*, s.family AS src_family, s.num AS src_num, d.family AS dst_family, d.num AS dst_num,
           i.interface_id IS NOT NULL AS in_snapshot, coalesce(i.has_groups, FALSE) AS has_groups
    FROM flows f
    LEFT JOIN addr s ON s.addr = f.srcaddr
    LEFT JOIN addr d ON d.addr = f.dstaddr
    LEFT JOIN snapshot_interfaces i ON i.interface_id = f.interface_id
),
b AS (
    SELECT *,
        CASE
            WHEN in_window IS NULL THEN 'malformed'
            WHEN log_status IN ('NODATA', 'SKIPDATA') AND NOT in_window THEN 'outside_window'
            WHEN log_status = 'NODATA' THEN 'nodata'
            WHEN log_status = 'SKIPDATA' THEN 'skipdata'
            WHEN coalesce(log_status, 'OK') <> 'OK'
              OR action IS NULL OR action NOT IN ('ACCEPT', 'REJECT')
              OR protocol IS NULL OR last_ms IS NULL
              OR (protocol IN (6, 17) AND (srcport IS NULL OR dstport IS NULL))
              OR src_family IS NULL OR dst_family IS NULL OR src_family <> dst_family
              OR (flow_direction IS NOT NULL AND flow_direction NOT IN ('ingress', 'egress'))
                THEN 'malformed'
            WHEN NOT in_window THEN 'outside_window'
            WHEN interface_id IS NULL THEN 'unattributable'
            WHEN NOT in_snapshot THEN 'interface_not_in_snapshot'
            WHEN NOT has_groups THEN 'no_security_groups'
            ELSE 'conversation'
        END AS bucket
    FROM f
),
l AS (
    SELECT *,
        CASE
            WHEN bucket <> 'conversation' THEN NULL
            WHEN flow_direction = 'ingress' THEN TRUE
            WHEN flow_direction = 'egress' THEN FALSE
            WHEN {dst_owned} THEN TRUE
            WHEN {src_owned} THEN FALSE
        END AS local_is_dst
    FROM b
)
SELECT *,
    CASE WHEN bucket = 'conversation' AND local_is_dst IS NULL THEN 'unattributable' ELSE bucket END
        AS final_bucket
FROM l
"""

CONVERSATIONS_SQL = """
CREATE OR REPLACE TABLE conversations AS
WITH s AS (
    SELECT interface_id, protocol,
        CASE WHEN local_is_dst THEN dstaddr ELSE srcaddr END AS local_addr,
        CASE WHEN local_is_dst THEN srcaddr ELSE dstaddr END AS peer_addr,
        CASE WHEN local_is_dst THEN src_num ELSE dst_num END AS peer_num,
        src_family AS family,
        -- Port-less protocols (ICMP and all but TCP and UDP): one conversation per (E, protocol, peer).
        CASE WHEN protocol IN (6, 17) THEN CASE WHEN local_is_dst THEN dstport ELSE srcport END END
            AS local_port,
        CASE WHEN protocol IN (6, 17) THEN CASE WHEN local_is_dst THEN srcport ELSE dstport END END
            AS peer_port,
        local_is_dst AS from_peer, action = 'ACCEPT' AS acc,
        records, packets, bytes, first_ms, last_ms, syn, synack, rst
    FROM sides WHERE final_bucket = 'conversation'
)
SELECT row_number() OVER (ORDER BY interface_id, protocol, local_port, family, peer_num, peer_port)
           AS conversation_id,
       *
FROM (
    SELECT interface_id, protocol, local_port, family, peer_num, peer_port,
        min(peer_addr) AS peer_addr, min(local_addr) AS local_addr,
        sum(CASE WHEN acc AND from_peer THEN records ELSE 0 END) AS acc_p,
        sum(CASE WHEN acc AND NOT from_peer THEN records ELSE 0 END) AS acc_l,
        sum(CASE WHEN NOT acc AND from_peer THEN records ELSE 0 END) AS rej_p,
        sum(CASE WHEN NOT acc AND NOT from_peer THEN records ELSE 0 END) AS rej_l,
        max(CASE WHEN acc AND from_peer THEN syn ELSE 0 END) AS acc_p_syn,
        max(CASE WHEN acc AND from_peer THEN synack ELSE 0 END) AS acc_p_synack,
        max(CASE WHEN acc AND from_peer THEN rst ELSE 0 END) AS acc_p_rst,
        max(CASE WHEN acc AND NOT from_peer THEN syn ELSE 0 END) AS acc_l_syn,
        max(CASE WHEN acc AND NOT from_peer THEN synack ELSE 0 END) AS acc_l_synack,
        max(CASE WHEN acc AND NOT from_peer THEN rst ELSE 0 END) AS acc_l_rst,
        max(CASE WHEN NOT acc AND from_peer THEN syn ELSE 0 END) AS rej_p_syn,
        max(CASE WHEN NOT acc AND from_peer THEN synack ELSE 0 END) AS rej_p_synack,
        max(CASE WHEN NOT acc AND NOT from_peer THEN syn ELSE 0 END) AS rej_l_syn,
        max(CASE WHEN NOT acc AND NOT from_peer THEN synack ELSE 0 END) AS rej_l_synack,
        sum(CASE WHEN acc THEN packets ELSE 0 END) AS packets,
        sum(CASE WHEN acc THEN bytes ELSE 0 END) AS bytes,
        min(CASE WHEN acc THEN first_ms END) AS first_ms,
        max(CASE WHEN acc THEN last_ms END) AS last_ms,
        min(CASE WHEN NOT acc THEN first_ms END) AS rej_first_ms,
        max(CASE WHEN NOT acc THEN last_ms END) AS rej_last_ms
    FROM s
    GROUP BY interface_id, protocol, local_port, family, peer_num, peer_port
)
"""


def sides_sql() -> str:
    """The statement that buckets every directed flow and decides its local side."""
    return SIDES_SQL.format(dst_owned=_OWNED.format(a="dst"), src_owned=_OWNED.format(a="src"))


# --- Initiator and evidence -------------------------------------------------------------------------
# The facts are taken from the accepted records when there are any (evidence must rest on what was
# allowed), otherwise from the rejected ones (a REJECT-only conversation still has a direction, for the
# rejected-attempts report). P = the peer sent it, L = the interface E sent it.

_BASIS = """
    (acc_p + acc_l) > 0 AS accepted,
    CASE WHEN (acc_p + acc_l) > 0 THEN acc_p ELSE rej_p END AS n_p,
    CASE WHEN (acc_p + acc_l) > 0 THEN acc_l ELSE rej_l END AS n_l,
    CASE WHEN (acc_p + acc_l) > 0 THEN acc_p_syn ELSE rej_p_syn END AS s_p,
    CASE WHEN (acc_p + acc_l) > 0 THEN acc_l_syn ELSE rej_l_syn END AS s_l,
    CASE WHEN (acc_p + acc_l) > 0 THEN acc_p_synack ELSE rej_p_synack END AS a_p,
    CASE WHEN (acc_p + acc_l) > 0 THEN acc_l_synack ELSE rej_l_synack END AS a_l
"""

# SPEC "Initiator (TCP)" then "Initiator without handshake flags". Decisions where SPEC is silent
# (docs/decisions.md): both sides proven or both sending SYN falls through to the inference; one-way
# traffic is settled before the rules are asked; a tie in ports (ICMP, equal ports) counts as inbound.
INITIATOR_SQL = """
CASE
    WHEN (s_p = 1 AND a_l = 1) AND NOT (s_l = 1 AND a_p = 1) THEN 'P'
    WHEN (s_l = 1 AND a_p = 1) AND NOT (s_p = 1 AND a_l = 1) THEN 'L'
    WHEN s_p = 1 AND s_l = 0 THEN 'P'
    WHEN s_l = 1 AND s_p = 0 THEN 'L'
    WHEN a_l = 1 AND a_p = 0 THEN 'P'
    WHEN a_p = 1 AND a_l = 0 THEN 'L'
    WHEN n_p > 0 AND n_l = 0 THEN 'P'
    WHEN n_l > 0 AND n_p = 0 THEN 'L'
    WHEN accepted AND allows_in AND NOT allows_out THEN 'P'
    WHEN accepted AND allows_out AND NOT allows_in THEN 'L'
    WHEN local_port < peer_port THEN 'P'
    WHEN peer_port < local_port THEN 'L'
    ELSE 'P'
END
"""

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

CLASSIFY_SQL = """
CREATE OR REPLACE TABLE classified AS
WITH k AS (
    SELECT c.*,
        coalesce(ki.n, 0) > 0 AS allows_in,
        coalesce(ko.n, 0) > 0 AS allows_out,
        {basis}
    FROM conversations c
    LEFT JOIN key_counts ki ON ki.direction = 'inbound' AND ki.interface_id = c.interface_id
        AND ki.protocol = c.protocol AND ki.family = c.family AND ki.peer_num = c.peer_num
        AND ki.port IS NOT DISTINCT FROM c.local_port
    LEFT JOIN key_counts ko ON ko.direction = 'outbound' AND ko.interface_id = c.interface_id
        AND ko.protocol = c.protocol AND ko.family = c.family AND ko.peer_num = c.peer_num
        AND ko.port IS NOT DISTINCT FROM c.peer_port
),
i AS (SELECT *, {initiator} AS initiator FROM k)
SELECT *,
    CASE WHEN initiator = 'P' THEN 'inbound' ELSE 'outbound' END AS direction,
    CASE WHEN initiator = 'P' THEN local_port ELSE peer_port END AS port,
    {evidence} AS evidence
FROM i
"""


def classify_sql() -> str:
    """The statement that gives every conversation its initiator, direction, port and evidence."""
    return CLASSIFY_SQL.format(basis=_BASIS, initiator=INITIATOR_SQL, evidence=EVIDENCE_SQL)
