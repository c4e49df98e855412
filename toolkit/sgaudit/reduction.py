"""The heavy step: records → directed flows, written once as SQL.

Every record is reduced to its *directed flow*: the records of one interface with the same source,
destination, ports, protocol, action, log status and flow direction. This needs nothing but the records
(no inventory), so the same statement can later run where the data is (Athena, Spark) and send back only
the reduced rows. It uses plain SQL that sqlglot transpiles: ``&`` becomes ``BITWISE_AND`` on Athena.

Timestamps: "Contra the docs, the start and end fields can contain millisecond-based timestamps"
(flowlogs-reader). Seconds stay below 10**11 until the year 5138 and milliseconds pass it in 1973, so
that is the threshold; everything downstream is in milliseconds.

Handshake flags are kept per directed flow as three 0/1 facts, not OR-ed together: a SYN-only record
(``flags & 18 = 2``, so 2 and 3) cannot be told from a SYN-ACK (18, 19) once both are OR-ed into 18.
"""

from __future__ import annotations

#: Columns of the directed-flow table, key first.
FLOW_KEY = (
    "interface_id", "log_status", "action", "flow_direction", "srcaddr", "dstaddr",
    "srcport", "dstport", "protocol", "in_window",
)

_MS = "CASE WHEN {c} >= 100000000000 THEN {c} ELSE {c} * 1000 END"

REDUCE_SQL = """
SELECT interface_id, log_status, action, flow_direction, srcaddr, dstaddr,
       srcport, dstport, protocol, in_window,
       COUNT(*) AS records,
       SUM(packets) AS packets,
       SUM(bytes) AS bytes,
       MIN(start_ms) AS first_ms,
       MAX(end_ms) AS last_ms,
       MAX(CASE WHEN (tcp_flags & 18) = 2 THEN 1 ELSE 0 END) AS syn,
       MAX(CASE WHEN (tcp_flags & 18) = 18 THEN 1 ELSE 0 END) AS synack,
       MAX(CASE WHEN (tcp_flags & 4) = 4 THEN 1 ELSE 0 END) AS rst
FROM (
    SELECT interface_id, log_status, action, flow_direction, srcaddr, dstaddr,
           srcport, dstport, protocol, packets, bytes, tcp_flags, start_ms, end_ms,
           start_ms >= {lo} AND start_ms < {hi} AS in_window
    FROM (
        SELECT *, {start_ms} AS start_ms, {end_ms} AS end_ms
        FROM {records}
    ) AS typed
) AS windowed
GROUP BY interface_id, log_status, action, flow_direction, srcaddr, dstaddr,
         srcport, dstport, protocol, in_window
"""


def reduce_sql(records: str, lo_ms: int, hi_ms: int) -> str:
    """The reduction over a table expression of typed records.

    Parameters
    ----------
    records : str
        A table or subquery with the columns of `fields.USED` (underscore names).
    lo_ms, hi_ms : int
        The window ``[lo, hi)`` in Unix milliseconds; a record is in it when its ``start`` is.

    Returns
    -------
    str
        A SELECT statement producing the directed-flow table.
    """
    return REDUCE_SQL.format(
        records=records, lo=int(lo_ms), hi=int(hi_ms),
        start_ms=_MS.format(c="start"), end_ms=_MS.format(c='"end"'),
    )
