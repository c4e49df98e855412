"""Matched conversations → the tables users read (SPEC "The usage table").

All of these are small (one row per rule, per interface, per rejected port…) and come back as pandas
DataFrames; the per-conversation tables stay in DuckDB until asked for.
"""

from __future__ import annotations

import duckdb
import pandas as pd

from .inventory import Inventory
from .reduction import SLOT_ACC_A, SLOT_ACC_B, SYN, SYNACK, flag_sql

#: A rule's status, in the order reports list them: what was seen first, then the degrees of "not seen".
STATUSES = ("used", "attempted", "unused", "unobserved", "unattached")

#: SPEC's usage table, exactly, in order.
USAGE_COLUMNS = [
    "group_id", "group_name", "rule_id", "direction", "protocol", "from_port", "to_port", "peer", "status",
    "evidence", "connections", "exclusive", "peers", "ports", "first_seen", "last_seen", "bytes", "packets",
]


#: Evidence as a number, strongest highest: the best evidence of a group of conversations is the max.
EVIDENCE_RANK = {"established": 3, "inferred": 2, "attempted": 1}
EVIDENCE_BY_RANK = {rank: name for name, rank in EVIDENCE_RANK.items()}


def evidence_rank_sql(column: str) -> str:
    """SQL for the `EVIDENCE_RANK` of an evidence column (NULL for none)."""
    return f"CASE {column} " + " ".join(f"WHEN '{e}' THEN {r}" for e, r in EVIDENCE_RANK.items()) + " END"


# Each (conversation, rule) candidate appears once, so counting rows counts conversations. Distinct
# peers and ports are counted by grouping first: a per-rule DISTINCT over millions of peers is slower.
RULE_STATS_SQL = f"""
WITH cr AS (
    SELECT m.rule_id, c.family, c.peer_num, c.port, c.first_ms, c.last_ms, c.bytes, c.packets,
           {evidence_rank_sql("c.evidence")} AS rank,
           CASE WHEN c.n_rules = 1 THEN 1 ELSE 0 END AS sole
    FROM candidates m JOIN classified c USING (conversation_id)
    WHERE c.accepted AND m.is_egress = (c.direction = 'outbound')
),
stats AS (
    SELECT rule_id, max(rank) AS best, count(*) AS connections, sum(sole) AS exclusive,
           min(first_ms) AS first_ms, max(last_ms) AS last_ms, sum(bytes) AS bytes, sum(packets) AS packets
    FROM cr GROUP BY rule_id
),
peers AS (
    SELECT rule_id, count(*) AS peers FROM (SELECT DISTINCT rule_id, family, peer_num FROM cr) GROUP BY rule_id
),
-- The distinct ports that counted, ascending, comma-separated; none for port-less traffic.
ports AS (
    SELECT rule_id, string_agg(CAST(port AS VARCHAR), ',' ORDER BY port) AS ports
    FROM (SELECT DISTINCT rule_id, port FROM cr WHERE port IS NOT NULL) GROUP BY rule_id
)
SELECT s.*, p.peers, coalesce(o.ports, '') AS ports
FROM stats s JOIN peers p USING (rule_id) LEFT JOIN ports o USING (rule_id)
"""


def observed_interfaces(con: duckdb.DuckDBPyConnection) -> set[str]:
    """Interfaces with any sound record in the window (OK, REJECT, NODATA or SKIPDATA)."""
    rows = con.sql("""
        SELECT DISTINCT interface_id FROM buckets
        WHERE interface_id IS NOT NULL AND bucket NOT IN ('malformed', 'outside_window')
    """).fetchall()
    return {r[0] for r in rows}


def ms_to_utc(s: pd.Series) -> pd.Series:
    """Unix milliseconds → tz-aware UTC timestamps (NaT for missing)."""
    return pd.to_datetime(pd.to_numeric(s, errors="coerce"), unit="ms", utc=True)


def usage_table(con: duckdb.DuckDBPyConnection, inv: Inventory, observed: set[str]) -> pd.DataFrame:
    """One row per rule of the inventory with its status and what it carried.

    Parameters
    ----------
    con : duckdb.DuckDBPyConnection
        Holding ``classified`` and ``candidates``.
    inv : Inventory
    observed : set of str
        Interface IDs observed in the window.

    Returns
    -------
    pandas.DataFrame
        Columns `USAGE_COLUMNS`; times tz-aware UTC.
    """
    stats = con.sql(RULE_STATS_SQL).df()
    rules = inv.rules.merge(inv.groups[["group_id", "group_name"]], on="group_id", how="left")
    df = rules.merge(stats, on="rule_id", how="left")

    attached = inv.interface_groups.groupby("group_id")["interface_id"].apply(set).to_dict()

    def status(row) -> str:
        ifaces = attached.get(row.group_id, set())
        if not ifaces:
            return "unattached"
        if row.best == 3 or row.best == 2:
            return "used"
        if row.best == 1:
            return "attempted"
        return "unused" if ifaces & observed else "unobserved"

    df["status"] = [status(r) for r in df.itertuples(index=False)]
    df["evidence"] = [EVIDENCE_BY_RANK.get(b, "") if pd.notna(b) else "" for b in df["best"]]
    df["direction"] = df["is_egress"].map({True: "egress", False: "ingress"})
    df["protocol"] = df["ip_protocol"]
    for col in ("connections", "exclusive", "peers", "bytes", "packets"):
        df[col] = pd.to_numeric(df[col]).fillna(0).astype("int64")
    df["ports"] = df["ports"].fillna("").astype(str)
    df["first_seen"] = ms_to_utc(df["first_ms"])
    df["last_seen"] = ms_to_utc(df["last_ms"])
    df["group_name"] = df["group_name"].fillna("")
    return df[USAGE_COLUMNS].sort_values(["group_id", "direction", "rule_id"], kind="stable").reset_index(drop=True)


_CONVERSATION_COLUMNS = f"""
    c.conversation_id, c.interface_id, c.direction, c.protocol, c.local_addr AS local_address,
    c.local_port, c.peer_addr AS peer, c.peer_port, c.port, c.evidence,
    c.acc_p + c.acc_l AS accepted_records, c.rej_p + c.rej_l AS rejected_records,
    c.packets, c.bytes, c.first_ms, c.last_ms,
    {flag_sql("c.flag_bits", SLOT_ACC_B, SYN)} = 1 AS peer_syn,
    {flag_sql("c.flag_bits", SLOT_ACC_B, SYNACK)} = 1 AS peer_synack,
    {flag_sql("c.flag_bits", SLOT_ACC_A, SYN)} = 1 AS local_syn,
    {flag_sql("c.flag_bits", SLOT_ACC_A, SYNACK)} = 1 AS local_synack
"""


def _times(df: pd.DataFrame, first: str = "first_ms", last: str = "last_ms") -> pd.DataFrame:
    df.insert(df.columns.get_loc(first), "first_seen", ms_to_utc(df[first]))
    df.insert(df.columns.get_loc(last), "last_seen", ms_to_utc(df[last]))
    return df.drop(columns=[first, last])


# By the conversation's key (SPEC's, with the interface): the same rows in the same order in every run.
# ``conversation_id`` names a conversation within one analysis only (DuckDB numbers rows as its threads
# write them), so it cannot order what is written.
_CONVERSATION_ORDER = "c.interface_id, c.protocol, c.local_port, c.peer_addr, c.peer_port"

CONVERSATIONS_SQL = f"""
SELECT {_CONVERSATION_COLUMNS}, coalesce(r.rules, '') AS rules, c.n_rules AS rule_count
FROM classified c
LEFT JOIN conversation_rule_list r USING (conversation_id)
WHERE c.accepted ORDER BY {_CONVERSATION_ORDER}
"""

UNEXPLAINED_SQL = f"""
SELECT {_CONVERSATION_COLUMNS}, i.group_ids
FROM classified c LEFT JOIN snapshot_interfaces i USING (interface_id)
WHERE c.accepted AND c.n_rules = 0
ORDER BY {_CONVERSATION_ORDER}
"""

#: Tables that can be as long as the input (one row per conversation): written by DuckDB, not pandas.
LARGE = {"conversations": CONVERSATIONS_SQL, "unexplained": UNEXPLAINED_SQL}


def conversations_table(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Accepted conversations with direction, evidence and the rules that matched them."""
    return _ports(_times(con.sql(CONVERSATIONS_SQL).df()))


def unexplained_table(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Accepted conversations that no rule of the interface's groups explains."""
    return _ports(_times(con.sql(UNEXPLAINED_SQL).df()))


def _ports(df: pd.DataFrame) -> pd.DataFrame:
    """Ports as nullable 16-bit integers, whether or not a port-less conversation is among the rows.

    pandas makes a column with no missing value ``uint16`` and one with some ``UInt16``: a table's types
    must not depend on its data (a scheduled Parquet output would change its schema).
    """
    for col in ("local_port", "peer_port", "port"):
        df[col] = df[col].astype("UInt16")
    return df


ISO_MACRO = """
CREATE OR REPLACE MACRO iso_ms(ms) AS CASE
    WHEN ms IS NULL THEN NULL
    WHEN ms % 1000 = 0 THEN strftime(make_timestamp(ms * 1000), '%Y-%m-%dT%H:%M:%SZ')
    ELSE strftime(make_timestamp(ms * 1000), '%Y-%m-%dT%H:%M:%S.%gZ')
END
"""


def copy_large(con: duckdb.DuckDBPyConnection, name: str, path, kind: str) -> None:
    """Write one of the `LARGE` tables straight from DuckDB (CSV, JSON lines, a JSON array or Parquet)."""
    con.execute(ISO_MACRO)
    sql = LARGE[name]
    if kind == "parquet":
        select = (f"SELECT * EXCLUDE (first_ms, last_ms), make_timestamptz(first_ms * 1000) AS first_seen, "
                  f"make_timestamptz(last_ms * 1000) AS last_seen FROM ({sql})")
        options = "FORMAT parquet"
    else:
        select = (f"SELECT * EXCLUDE (first_ms, last_ms), iso_ms(first_ms) AS first_seen, "
                  f"iso_ms(last_ms) AS last_seen FROM ({sql})")
        options = {"csv": "FORMAT csv, HEADER true", "json": "FORMAT json, ARRAY true"}.get(kind, "FORMAT json")
    target = str(path).replace("'", "''")
    con.execute(f"COPY ({select}) TO '{target}' ({options})")


REJECTED_SQL = """
SELECT interface_id, direction, protocol, port,
       -- A peer is its family and number: 10.0.0.9 and ::a00:9 are the same number, not the same peer.
       count(DISTINCT (family, peer_num, peer_port)) AS attempts,
       count(DISTINCT (family, peer_num)) AS peers,
       sum(rej_p + rej_l)::BIGINT AS records,
       min(rej_first_ms) AS first_ms, max(rej_last_ms) AS last_ms,
       count(DISTINCT CASE WHEN accepted THEN (family, peer_num, peer_port) END) AS attempts_also_accepted
FROM classified WHERE rej_p + rej_l > 0
GROUP BY ALL ORDER BY attempts DESC, interface_id, direction, protocol, port
"""


#: ``likely_cause`` of rejected attempts whose conversations also had accepted packets: a security group
#: is stateful and never rejects the reply of a connection it allowed.
NACL_OR_LATE = "network ACL or late packet (other packets of the same conversation were accepted)"
#: ``likely_cause`` of rejected attempts with nothing accepted: flow logs do not say which of the two.
SG_OR_NACL = "security group or network ACL"


#: How many of a rejected row's attempts also had accepted packets (`accepted_share`).
ALL_ACCEPTED, NONE_ACCEPTED, SOME_ACCEPTED = "all", "none", "some"


def accepted_share(attempts: int, also_accepted: int) -> str:
    """`ALL_ACCEPTED`, `NONE_ACCEPTED` or `SOME_ACCEPTED`: how many of ``attempts`` also had accepted packets."""
    if also_accepted == 0:
        return NONE_ACCEPTED
    return ALL_ACCEPTED if also_accepted >= attempts else SOME_ACCEPTED


def likely_cause(attempts: int, also_accepted: int) -> str:
    """What probably rejected a row's attempts, of which ``also_accepted`` also had accepted packets."""
    share = accepted_share(attempts, also_accepted)
    if share == NONE_ACCEPTED:
        return SG_OR_NACL
    if share == ALL_ACCEPTED:
        return NACL_OR_LATE
    return (f"mixed: {also_accepted:,} of {attempts:,} attempts also had accepted packets (for those, network ACL "
            f"or late packet); for the others, {SG_OR_NACL}")


def rejected_table(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """REJECT records per (interface, direction, protocol, port), counting distinct (peer, peer port).

    A REJECT can come from a security group, a network ACL, or a packet arriving after the connection
    closed; ``likely_cause`` says which is likelier, never more, and ``attempts_also_accepted`` counts the
    attempts whose conversation also had accepted packets (a row can hold both kinds: a port's late
    packets and a scanner's probes).
    """
    df = _times(con.sql(REJECTED_SQL).df())
    df["attempts_also_accepted"] = df["attempts_also_accepted"].astype("int64")
    df["likely_cause"] = pd.Series([likely_cause(int(n), int(a)) for n, a in
                                    zip(df["attempts"], df["attempts_also_accepted"], strict=True)],
                                   index=df.index, dtype=object)  # text also when there are no rows
    df["port"] = df["port"].astype("UInt16")
    return df


def coverage_table(con: duckdb.DuckDBPyConnection, inv: Inventory) -> pd.DataFrame:
    """Per interface (in the snapshot or in the logs): observed or not, and how many records of each kind."""
    seen = con.sql("""
        SELECT interface_id,
            sum(records) AS records,
            sum(CASE WHEN bucket = 'nodata' THEN records ELSE 0 END) AS nodata,
            sum(CASE WHEN bucket = 'skipdata' THEN records ELSE 0 END) AS skipdata,
            -- Records, not attempts: the rejected table counts attempts as distinct (peer, peer port).
            sum(rejected) AS rejected_records,
            min(first_ms) AS first_ms, max(last_ms) AS last_ms
        FROM buckets
        WHERE interface_id IS NOT NULL AND bucket NOT IN ('malformed', 'outside_window')
        GROUP BY interface_id
    """).df()
    snap = inv.interfaces[["interface_id", "interface_type", "description", "group_ids", "instance_id"]]
    df = snap.merge(seen, on="interface_id", how="outer")
    df["in_snapshot"] = df["interface_id"].isin(set(snap["interface_id"]))
    for col in ("records", "nodata", "skipdata", "rejected_records"):
        df[col] = pd.to_numeric(df[col]).fillna(0).astype("int64")
    df["observed"] = df["records"] > 0
    df["group_ids"] = df["group_ids"].fillna("")
    df = _times(df)
    cols = ["interface_id", "in_snapshot", "observed", "interface_type", "description", "instance_id",
            "group_ids", "records", "rejected_records", "nodata", "skipdata", "first_seen", "last_seen"]
    return df[cols].sort_values("interface_id").reset_index(drop=True)
