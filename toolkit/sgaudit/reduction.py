"""The heavy step: records → conversation rows, written once as SQL.

One pass over the records does all the work that grows with the input: it puts every record in a
bucket, orients it (which side is the interface's), and sums it into its conversation. What follows
runs on the reduced rows only. The statement needs nothing but the records (no inventory), so the
same definition can later run where the data is (Athena, Spark) and send back only the reduced rows;
it uses plain SQL that sqlglot transpiles (``&`` becomes ``BITWISE_AND``, ``BIT_OR`` becomes
``BITWISE_OR_AGG`` on Athena).

Orientation: ``flow-direction`` decides when present: ``ingress`` → the destination is local,
``egress`` → the source is. Such rows are ``resolved`` and their side *a* is the interface's, *b* the
peer's; the local address is not part of their key. Records without it (the version-2 format) keep
*a* = source and *b* = destination, and are resolved against the inventory afterwards
(`conversations.V2_SIDES_SQL`), on the reduced rows.

Handshake flags: a SYN-only record (``flags & 18 = 2``: 2 and 3) cannot be told from a SYN-ACK (18, 19)
once both are OR-ed into 18, so each record contributes three facts (SYN-only 1, SYN-ACK 2, RST 4) to
its side's and action's slot of one bitmask, OR-ed per conversation:

==========  ============================
bits 0-2    accepted, sent by side *a*
bits 3-5    accepted, sent by side *b*
bits 6-8    rejected, sent by side *a*
bits 9-11   rejected, sent by side *b*
==========  ============================

Counts are ``COUNT(CASE … THEN 1 END)``, not ``SUM(CASE … THEN 1 ELSE 0 END)``: the same number, but a
64-bit state instead of a 128-bit one in every group, which matters when the groups spill to disk.

Timestamps: "Contra the docs, the start and end fields can contain millisecond-based timestamps"
(flowlogs-reader). Seconds stay below 10**11 until the year 5138 and milliseconds pass it in 1973, so
that is the threshold; everything downstream is in milliseconds.
"""

from __future__ import annotations

#: The latest time a record may carry, in Unix milliseconds: the last moment a pandas timestamp holds (2262).
MAX_MS = 9_223_372_036_854

#: Bit values of the three facts, and the multipliers of the four slots (see the module docstring).
SYN, SYNACK, RST = 1, 2, 4
SLOT_ACC_A, SLOT_ACC_B, SLOT_REJ_A, SLOT_REJ_B = 1, 8, 64, 512  # side b's slot = side a's × 8

#: From this value on a time is in milliseconds, below it in seconds (the module docstring says why).
MS_FROM = 10**11

_MS = "CASE WHEN {c} >= " + str(MS_FROM) + " THEN {c} ELSE {c} * 1000 END"

# A record that passes these checks is "ok": it goes on to conversations. The order only decides which
# bucket a record with several faults counts in; each record counts once.
# Times before 1970 or past 2262 (the last moment a pandas timestamp holds), an end before the start and
# negative counts are no record AWS writes: they are malformed rather than stretching the window or sums.
# Each check is (condition, why): the bucket expression and the reason a listed line gives (`why_sql`)
# are built from the same list, so that they cannot disagree.
_TIME_CHECKS = [
    ("start_ms IS NULL", "no start"),
    ("start_ms < 0 OR start_ms > {max_ms}", "a start outside 1970-2262"),
]
_RECORD_CHECKS = [
    ("coalesce(log_status, 'OK') <> 'OK'", "a log-status other than OK, NODATA or SKIPDATA"),
    ("action IS NULL", "no action"),
    ("action NOT IN ('ACCEPT', 'REJECT')", "an action other than ACCEPT or REJECT"),
    ("end_ms IS NULL", "no end"),
    ("end_ms < start_ms", "an end before the start"),
    ("end_ms > {max_ms}", "an end after 2262"),
    ("packets < 0", "negative packets"),
    ("bytes < 0", "negative bytes"),
    ("protocol IS NULL", "no protocol"),
    ("srcaddr IS NULL", "no srcaddr"),
    ("dstaddr IS NULL", "no dstaddr"),
    ("protocol IN (6, 17) AND (srcport IS NULL OR dstport IS NULL)", "TCP or UDP without ports"),
    ("flow_direction IS NOT NULL AND flow_direction NOT IN ('ingress', 'egress')",
     "a flow-direction other than ingress or egress"),
]


def _any(checks: list[tuple[str, str]]) -> str:
    return " OR ".join(f"({cond})" for cond, _ in checks)


_BUCKET = f"""
CASE
    WHEN {_any(_TIME_CHECKS)} THEN 'malformed'
    WHEN start_ms < {{lo}} OR start_ms >= {{hi}} THEN 'outside_window'
    WHEN log_status = 'NODATA' THEN 'nodata'
    WHEN log_status = 'SKIPDATA' THEN 'skipdata'
    WHEN {_any(_RECORD_CHECKS)} THEN 'malformed'
    WHEN interface_id IS NULL THEN 'unattributable'
    ELSE 'ok'
END
"""

# Why a malformed record is: the first check it fails, in the bucket's order.
_WHY = "CASE " + " ".join(f"WHEN {cond} THEN '{why}'" for cond, why in _TIME_CHECKS + _RECORD_CHECKS) + " END"


def why_sql() -> str:
    """SQL for why a record of ``bucket_sql`` counts as malformed (NULL for the others): its first failed check."""
    return _WHY.format(max_ms=MAX_MS)


REDUCE_SQL = """
SELECT bucket, interface_id, action, protocol, a_addr, a_port, b_addr, b_port, resolved, source_file{slot},
       MIN(local_addr) AS local_addr,
       COUNT(*) AS records,
       COUNT(CASE WHEN acc AND NOT from_b THEN 1 END) AS acc_a,
       COUNT(CASE WHEN acc AND from_b THEN 1 END) AS acc_b,
       COUNT(CASE WHEN rej AND NOT from_b THEN 1 END) AS rej_a,
       COUNT(CASE WHEN rej AND from_b THEN 1 END) AS rej_b,
       BIT_OR(flag_bits) AS flag_bits,
       -- `-` counts (AWS writes them only on NODATA/SKIPDATA) add nothing: a sum is never NULL.
       SUM(CASE WHEN acc THEN coalesce(packets, 0) ELSE 0 END) AS packets,
       SUM(CASE WHEN acc THEN coalesce(bytes, 0) ELSE 0 END) AS bytes,
       MIN(CASE WHEN NOT rej THEN start_ms END) AS first_ms,
       MAX(CASE WHEN NOT rej THEN end_ms END) AS last_ms,
       MIN(CASE WHEN rej THEN start_ms END) AS rej_first_ms,
       MAX(CASE WHEN rej THEN end_ms END) AS rej_last_ms
FROM (
    SELECT bucket, interface_id,
           CASE WHEN ok THEN NULL ELSE action END AS action,
           CASE WHEN ok THEN protocol END AS protocol,
           -- SPEC's conversation key has no local address (AWS writes E's primary one anyway), so a
           -- resolved row keeps it out of the key; a version-2 row needs it to be resolved later.
           CASE WHEN NOT ok OR flow_direction IS NOT NULL THEN NULL ELSE srcaddr END AS a_addr,
           CASE WHEN ok THEN (CASE WHEN from_b THEN dstaddr ELSE srcaddr END) END AS local_addr,
           CASE WHEN NOT ok OR protocol NOT IN (6, 17) THEN NULL WHEN from_b THEN dstport ELSE srcport END
               AS a_port,
           CASE WHEN NOT ok THEN NULL WHEN from_b THEN srcaddr ELSE dstaddr END AS b_addr,
           CASE WHEN NOT ok OR protocol NOT IN (6, 17) THEN NULL WHEN from_b THEN srcport ELSE dstport END
               AS b_port,
           CASE WHEN ok THEN flow_direction IS NOT NULL END AS resolved,
           ok AND action = 'ACCEPT' AS acc,
           ok AND action = 'REJECT' AS rej,
           CASE WHEN bucket = 'malformed' THEN source_file END AS source_file,
           from_b, packets, bytes, start_ms, end_ms{slot_expr},
           -- Handshake flags are TCP's: on any other protocol they are ignored (SPEC "Initiator without
           -- handshake flags" lists UDP, ICMP and the others), whatever the field holds.
           CASE WHEN ok AND protocol <> 6 THEN 0 WHEN ok THEN
               ((CASE WHEN (tcp_flags & 18) = 2 THEN {syn} WHEN (tcp_flags & 18) = 18 THEN {synack} ELSE 0 END)
                + (CASE WHEN (tcp_flags & 4) = 4 THEN {rst} ELSE 0 END))
               * (CASE WHEN action = 'ACCEPT' THEN {acc_a} ELSE {rej_a} END)
               * (CASE WHEN from_b THEN {to_b} ELSE 1 END)
           END AS flag_bits
    FROM (
        SELECT *, bucket = 'ok' AS ok, coalesce(flow_direction = 'ingress', FALSE) AS from_b
        FROM ({bucketed}) AS bucketed
    ) AS oriented
) AS reduced
GROUP BY bucket, interface_id, action, protocol, a_addr, a_port, b_addr, b_port, resolved, source_file{slot}
"""


def reduce_sql(records: str, lo_ms: int, hi_ms: int, slot_ms: int | None = None) -> str:
    """The reduction over a table expression of typed records.

    Parameters
    ----------
    records : str
        A table or subquery with the columns of `fields.USED` (underscore names).
    lo_ms, hi_ms : int
        The window ``[lo, hi)`` in Unix milliseconds; a record is in it when its ``start`` is.
    slot_ms : int, optional
        When given, rows are also split by time (``start // slot_ms``, a ``time_slot`` column): the same
        reduction, kept apart per slot, is what the views over time are drawn from (`sgaudit.timeline`).

    Returns
    -------
    str
        A SELECT statement producing reduced rows: one per (bucket, interface, action) for records that
        are not ``ok``, one per oriented conversation (and slot) for those that are.
    """
    return REDUCE_SQL.format(
        slot=", time_slot" if slot_ms else "",
        slot_expr=f", start_ms // {int(slot_ms)} AS time_slot" if slot_ms else "",
        bucketed=bucket_sql(records, lo_ms, hi_ms),
        syn=SYN, synack=SYNACK, rst=RST,
        acc_a=SLOT_ACC_A, rej_a=SLOT_REJ_A, to_b=SLOT_ACC_B // SLOT_ACC_A,
    )


def bucket_sql(records: str, lo_ms: int | None, hi_ms: int | None) -> str:
    """Every record of ``records`` with its times in milliseconds and its bucket.

    The reduction's first step, and on its own the way to find the lines of a few malformed records again.
    A window side that is None is open.
    """
    start_ms, end_ms = _MS.format(c="start"), _MS.format(c='"end"')
    lo_ms = -(2**62) if lo_ms is None else lo_ms
    hi_ms = 2**62 if hi_ms is None else hi_ms
    bucket = _BUCKET.format(lo=int(lo_ms), hi=int(hi_ms), max_ms=MAX_MS)
    return (f"SELECT *, {bucket} AS bucket FROM "
            f"(SELECT *, {start_ms} AS start_ms, {end_ms} AS end_ms FROM {records}) AS timed")


def flag_sql(column: str, slot: int, fact: int) -> str:
    """SQL for one fact (`SYN`, `SYNACK`, `RST`) of one slot of the flag bitmask in ``column``: 0 or 1."""
    return f"(({column} // {slot * fact}) % 2)"


def side_bits_sql(column: str, slot: int) -> str:
    """SQL for the three facts of one slot of the bitmask, as a number 0..7."""
    return f"(({column} // {slot}) % 8)"

