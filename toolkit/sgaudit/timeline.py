"""Rule usage over time: connections per rule and per port in time buckets sized to the window.

The usage table says *whether* a rule is used; the views over time say *when*. They are drawn from the
same reduction (`reduction.REDUCE_SQL`) run a second time with its rows kept apart per time bucket, then
joined to the conversations the analysis already classified, so that a conversation has one direction,
one port that counts and one set of rules however many buckets it spans. The second pass reads the files
again rather than making the first one heavier: `sgaudit usage` does not pay for views it does not draw.

What a cell counts (decisions, see docs/decisions.md):

- a bucket holds the records whose ``start`` falls in it (the window filter uses ``start`` too);
- ``connections``: distinct accepted conversations with accepted records in the bucket (for a rule: those
  the rule let through, the conversations its ``connections`` counts); ``bytes``/``packets`` of those
  accepted records;
- ``rejected``: distinct (peer, peer port) pairs with REJECT records in the bucket, SPEC's measure of
  rejected attempts;
- per group: the conversations a rule of the group let through; rejected attempts at the interfaces
  that carry the group (a REJECT names no rule, so it cannot be put on one group more than another).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import pandas as pd

from .errors import SgauditError
from .inventory import PROTOCOL_NAMES

if TYPE_CHECKING:
    from .analysis import Analysis

#: Bucket sizes "auto" chooses from: the smallest that gives at most `MAX_BUCKETS` columns.
NICE_BUCKETS = ["1min", "5min", "10min", "15min", "30min", "1h", "2h", "3h", "6h", "12h", "1D", "7D", "30D"]
MAX_BUCKETS = 72
#: The most columns a width the user chose may give: past it a heatmap takes minutes and gigabytes.
MAX_COLUMNS = 5000



@dataclass
class Timeline:
    """Connections per rule and per port over time.

    Attributes
    ----------
    bucket : pandas.Timedelta
        The width of a time bucket.
    window : tuple of pandas.Timestamp
        The analysis window (UTC).
    times : pandas.DatetimeIndex
        The start of every bucket in the window, empty ones included (UTC).
    labels : dict
        Group and interface ID → a label for people (``sg-… (name)``, ``eni-… (description)``); raw text
        from AWS, to be escaped by whoever renders it.
    rules : pandas.DataFrame
        ``rule_id, group_id, time, connections, bytes, packets``: one row per rule and bucket with traffic.
    ports : pandas.DataFrame
        ``scope, scope_id, direction, protocol, port, time, connections, bytes, rejected``: per group
        (``scope = 'group'``) and per interface, direction (``inbound``/``outbound``), protocol name and
        the port that counted (missing for port-less protocols), one row per bucket with traffic.
    memberships : pandas.DataFrame
        ``interface_id, group_id``: which interface carries which group, so that a filter by one also
        selects the other.
    active : frozenset of pandas.Timestamp
        The buckets in which any interface has any traffic, of the whole analysis: computed from ``rules``
        and ``ports`` when not given, and kept by a selection, so that a stretch without logs
        (`summaries.quiet_stretches`) is not confused with selected groups being idle.
    """

    bucket: pd.Timedelta
    window: tuple[pd.Timestamp, pd.Timestamp]
    times: pd.DatetimeIndex
    labels: dict[str, str]
    rules: pd.DataFrame
    ports: pd.DataFrame
    memberships: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["interface_id", "group_id"]))
    active: frozenset | None = None

    def __post_init__(self) -> None:
        if self.active is None:
            # Distinct times first: the per-port table has a row per port and bucket, millions on a big account.
            self.active = frozenset(self.ports["time"].unique()) | frozenset(self.rules["time"].unique())

    def select(self, group_ids=None, interface_ids=None) -> Timeline:
        """The same timeline restricted to some groups and/or interfaces (empty or None: all).

        Rules are kept when their group is selected; port rows when their group or interface is. Given
        groups alone, the interfaces are those that carry them; given interfaces alone, the groups are
        those they carry (a group's rows still sum all of its interfaces).
        """
        groups, ifaces = set(group_ids or ()), set(interface_ids or ())
        m = self.memberships
        if groups and not ifaces:
            ifaces = set(m.loc[m["group_id"].isin(groups), "interface_id"]) or {None}
        elif ifaces and not groups:
            groups = set(m.loc[m["interface_id"].isin(ifaces), "group_id"]) or {None}
        rules, ports = self.rules, self.ports
        if groups:
            rules = rules[rules["group_id"].isin(groups)]
            ports = ports[(ports["scope"] != "group") | ports["scope_id"].isin(groups)]
        if ifaces:
            ports = ports[(ports["scope"] != "interface") | ports["scope_id"].isin(ifaces)]
        return replace(self, rules=rules.reset_index(drop=True), ports=ports.reset_index(drop=True))


def choose_bucket(window: tuple[pd.Timestamp | None, pd.Timestamp | None], time_bucket: str = "auto") -> pd.Timedelta:
    """The width of a time bucket.

    ``time_bucket`` itself (``"15min"``, ``"1h"``, ``"1D"``) or, for ``"auto"``, the smallest of
    `NICE_BUCKETS` that cuts the window into at most `MAX_BUCKETS` columns.

    Raises
    ------
    SgauditError
        When ``time_bucket`` is not a duration pandas understands, or not positive.
    """
    if time_bucket in (None, "", "auto"):
        if window[0] is None or window[1] is None:
            return pd.Timedelta(NICE_BUCKETS[0])
        for size in NICE_BUCKETS:
            # Columns as `build` lays them out: buckets start at multiples of the width since the epoch,
            # so a window that does not start on one can take a column more than its span alone.
            if _bucket_count(window, pd.Timedelta(size)) <= MAX_BUCKETS:
                return pd.Timedelta(size)
        return pd.Timedelta(NICE_BUCKETS[-1])
    try:
        # "1d" is what people write; pandas 3 deprecates the lower-case day unit in favour of "1D".
        width = pd.Timedelta(re.sub(r"(\d)\s*d$", r"\1D", time_bucket.strip())
                             if isinstance(time_bucket, str) else time_bucket)
        if pd.isna(width):  # "nan", "NaT": pandas reads them, as no duration
            raise ValueError(time_bucket)
    except (ValueError, TypeError) as exc:
        raise SgauditError(f"time_bucket {time_bucket!r} is not a duration; use 'auto' or a width such as "
                           "'5min', '1h' or '1D'") from exc
    # Flow logs aggregate over 1 or 10 minutes: a narrower bucket only spreads the same records thinner.
    if width < pd.Timedelta("1min"):
        raise SgauditError(f"time_bucket {time_bucket!r} is too small; use at least '1min'")
    columns = _bucket_count(window, width) if window[0] is not None and window[1] is not None else 0
    if columns > MAX_COLUMNS:
        raise SgauditError(f"time_bucket {time_bucket!r} cuts the window into {columns:,} columns, more than the "
                           f"views can draw ({MAX_COLUMNS:,}); use a wider bucket, 'auto', or a shorter window "
                           "(--start/--end)")
    return width


# A time-bucketed reduced row, oriented as the conversations were (version-2 rows through v2_sides) and
# joined to its classified conversation. Rows that did not become conversations (unattributable,
# interfaces without groups or outside the snapshot) find none and drop out here: they are counted in
# the quality table already.
_CONVERSATION_SLOTS_SQL = """
CREATE OR REPLACE TABLE conversation_slots AS
WITH o AS (
    SELECT r.interface_id, r.protocol, r.time_slot,
           NOT r.resolved AND v.local_is_b AS swap,
           r.a_addr, r.a_port, r.b_addr, r.b_port,
           r.acc_a + r.acc_b AS accepted, r.rej_a + r.rej_b AS rejected, r.bytes, r.packets
    FROM reduced_slots r
    LEFT JOIN v2_sides v ON NOT r.resolved AND v.interface_id = r.interface_id
        AND v.a_addr = r.a_addr AND v.b_addr = r.b_addr
    WHERE r.bucket = 'ok' AND (r.resolved OR v.local_is_b IS NOT NULL)
),
k AS (
    SELECT interface_id, protocol, time_slot,
           CASE WHEN swap THEN b_port ELSE a_port END AS local_port,
           coalesce(n.canon, CASE WHEN swap THEN a_addr ELSE b_addr END) AS peer_addr,
           CASE WHEN swap THEN a_port ELSE b_port END AS peer_port,
           accepted, rejected, bytes, packets
    FROM o LEFT JOIN peer_canon n ON n.addr = CASE WHEN swap THEN o.a_addr ELSE o.b_addr END
)
SELECT c.conversation_id, k.time_slot, sum(k.accepted) AS accepted, sum(k.rejected) AS rejected,
       sum(k.bytes) AS bytes, sum(k.packets) AS packets
FROM k JOIN classified c
    ON c.interface_id = k.interface_id AND c.protocol = k.protocol AND c.peer_addr = k.peer_addr
    AND c.local_port IS NOT DISTINCT FROM k.local_port AND c.peer_port IS NOT DISTINCT FROM k.peer_port
GROUP BY c.conversation_id, k.time_slot
"""

_RULES_SQL = """
SELECT cr.rule_id, r.group_id, s.time_slot, count(*) AS connections,
       sum(s.bytes) AS bytes, sum(s.packets) AS packets
FROM conversation_slots s
JOIN classified c USING (conversation_id)
JOIN conversation_rules cr USING (conversation_id)
JOIN rules r USING (rule_id)
WHERE c.accepted AND s.accepted > 0
GROUP BY ALL
"""

# Per interface: every conversation at it. Per group: accepted conversations a rule of the group let
# through (once, however many of its rules did), and rejected attempts at the interfaces carrying it.
_PORTS_SQL = """
WITH s AS (
    SELECT s.*, c.interface_id, c.direction, c.protocol, c.port, c.peer_addr, c.peer_port,
           c.accepted AND s.accepted > 0 AS counts
    FROM conversation_slots s JOIN classified c USING (conversation_id)
),
by_group AS (
    SELECT DISTINCT r.group_id, s.conversation_id, s.time_slot, s.direction, s.protocol, s.port, s.bytes, s.packets
    FROM s JOIN conversation_rules cr USING (conversation_id) JOIN rules r USING (rule_id)
    WHERE s.counts
)
SELECT 'interface' AS scope, interface_id AS scope_id, direction, protocol, port, time_slot,
       count(CASE WHEN counts THEN 1 END) AS connections,
       sum(CASE WHEN counts THEN bytes ELSE 0 END) AS bytes,
       count(DISTINCT CASE WHEN rejected > 0 THEN peer_addr || ' ' || coalesce(peer_port::VARCHAR, '') END)
           AS rejected
FROM s GROUP BY ALL
UNION ALL
SELECT 'group', group_id, direction, protocol, port, time_slot, count(*), sum(bytes), 0
FROM by_group GROUP BY ALL
UNION ALL
SELECT 'group', g.group_id, s.direction, s.protocol, s.port, s.time_slot, 0, 0,
       count(DISTINCT s.interface_id || ' ' || s.peer_addr || ' ' || coalesce(s.peer_port::VARCHAR, ''))
FROM s JOIN iface_groups g USING (interface_id)
WHERE s.rejected > 0
GROUP BY ALL
"""


def build(analysis: Analysis, time_bucket: str = "auto",
          progress: Callable[[int, int], None] | None = None) -> Timeline:
    """Connections per rule and per port over time, for `Analysis.timeline`.

    Parameters
    ----------
    analysis : Analysis
        A finished analysis; its files are read a second time.
    time_bucket : str
        ``"auto"`` or a width pandas understands (``"5min"``, ``"1h"``, ``"1D"``).
    progress : callable, optional
        ``progress(files_done, files_total)`` while the files are read.

    Returns
    -------
    Timeline
    """
    from pathlib import Path

    from .analysis import _reduce

    width = choose_bucket(analysis.window, time_bucket)
    slot_ms = int(width / pd.Timedelta("1ms"))
    con = analysis.con
    lo, hi = analysis.bounds_ms
    _reduce(con, analysis.files, Path(analysis._tmpdir), lo, hi, progress, table="reduced_slots", slot_ms=slot_ms)
    con.execute(_CONVERSATION_SLOTS_SQL)
    con.execute("DROP TABLE reduced_slots")

    def frame(sql: str) -> pd.DataFrame:
        df = con.sql(sql).df()
        df.insert(df.columns.get_loc("time_slot"), "time",
                  pd.to_datetime(df.pop("time_slot").astype("int64") * slot_ms, unit="ms", utc=True))
        return df

    rules = frame(_RULES_SQL).sort_values(["group_id", "rule_id", "time"], ignore_index=True)
    ports = frame(_PORTS_SQL)
    ports = (ports.groupby(["scope", "scope_id", "direction", "protocol", "port", "time"], dropna=False,
                           as_index=False)[["connections", "bytes", "rejected"]].sum())
    ports["protocol"] = ports["protocol"].map(lambda p: PROTOCOL_NAMES.get(int(p), str(int(p))))
    ports["port"] = ports["port"].astype("Int64")
    for df in (rules, ports):
        for col in ("connections", "bytes", "packets", "rejected"):
            if col in df:
                df[col] = df[col].fillna(0).astype("int64")
    ports = ports.sort_values(["scope", "scope_id", "direction", "protocol", "port", "time"], ignore_index=True)

    times = bucket_starts(analysis.window, width)
    memberships = analysis.inventory.interface_groups[["interface_id", "group_id"]].reset_index(drop=True)
    return Timeline(width, analysis.window, times, labels(analysis.inventory), rules, ports, memberships)


def bucket_starts(window: tuple[pd.Timestamp | None, pd.Timestamp | None], width: pd.Timedelta) -> pd.DatetimeIndex:
    """Every bucket that a record start in the window ``[lo, hi)`` can fall in: the columns of the views.

    The SQL's buckets start at multiples of the width since the epoch.
    """
    if window[0] is None:
        return pd.DatetimeIndex([], tz="UTC")
    return pd.date_range(*_first_and_last_bucket(window, width), freq=width)


def _bucket_count(window: tuple[pd.Timestamp, pd.Timestamp], width: pd.Timedelta) -> int:
    """``len(bucket_starts(window, width))``, counted without listing them (a long window has millions)."""
    first, last = _first_and_last_bucket(window, width)
    return int((last - first) // width) + 1


def _first_and_last_bucket(window: tuple[pd.Timestamp, pd.Timestamp],
                           width: pd.Timedelta) -> tuple[pd.Timestamp, pd.Timestamp]:
    """The starts of the buckets of the window's first and last millisecond (``hi`` is not in ``[lo, hi)``)."""
    w_lo, w_hi = window
    return _floor(w_lo, width), _floor(max(w_lo, w_hi - pd.Timedelta("1ms")), width)


def _floor(ts: pd.Timestamp, width: pd.Timedelta) -> pd.Timestamp:
    """``ts`` down to a multiple of ``width`` since the Unix epoch: the buckets the SQL made."""
    ms = int(width / pd.Timedelta("1ms"))
    return pd.Timestamp(int(ts.value // 1_000_000 // ms * ms), unit="ms", tz="UTC")


def labels(inventory) -> dict[str, str]:
    """Group and interface ID → ``id (name)``: what a person recognises them by."""
    out = {}
    for g in inventory.groups.itertuples(index=False):
        out[g.group_id] = f"{g.group_id} ({g.group_name})" if g.group_name else g.group_id
    for i in inventory.interfaces.itertuples(index=False):
        out[i.interface_id] = f"{i.interface_id} ({i.description})" if i.description else i.interface_id
    return out
