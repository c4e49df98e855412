"""Conversations × rules (SPEC "From conversations to rules").

A rule's peer becomes one or more numeric ranges: its CIDR; each entry of its prefix list; or each
private address (primary, secondary, IPv6) of the interfaces that carry its referenced group. Matching
is then one join per direction key ``(interface, direction, protocol, port, family, peer)``:

- the rule's group is attached to the interface, and the rule's direction fits (ingress for inbound);
- the protocol fits: ``-1`` matches all, otherwise the numbers are equal (``tcp`` = 6, ``icmpv6`` = 58);
- for TCP and UDP rules, the port lies in ``FromPort..ToPort`` (``-1`` = all); other protocols carry no
  ports in flow logs, and flow logs carry no ICMP type or code, so an ICMP conversation matches every
  ICMP rule of its family;
- the peer lies in one of the rule's ranges of the same family (IPv4 and IPv6 never cross).

Both direction keys of every accepted conversation are matched, because the inference of the initiator
for flag-less traffic asks whether "the rules of exactly one direction could allow the conversation".
"""

from __future__ import annotations

import duckdb
import pandas as pd

from .addresses import cidr_range
from .inventory import Inventory


def load_inventory_tables(con: duckdb.DuckDBPyConnection, inv: Inventory) -> None:
    """Create the inventory tables the SQL steps join against.

    Tables: ``snapshot_interfaces(interface_id, has_groups)``, ``iface_groups(interface_id, group_id)``,
    ``rules`` (from `Inventory.rules`), ``rule_ranges(rule_id, family, lo, hi)`` and
    ``owned(interface_id, family, lo, hi)`` (the addresses and delegated prefixes of each interface).
    """
    ifaces = inv.interfaces[["interface_id"]].copy()
    ifaces["has_groups"] = ifaces["interface_id"].isin(set(inv.interface_groups["interface_id"]))
    _put(con, "snapshot_interfaces", ifaces)
    _put(con, "iface_groups", inv.interface_groups)
    _put(con, "rules", inv.rules[["rule_id", "group_id", "is_egress", "protocol", "from_port", "to_port",
                                  "peer_kind", "peer"]])

    members = inv.interface_groups.merge(inv.addresses, on="interface_id")
    ranges = []
    for r in inv.rules.itertuples(index=False):
        if r.peer_kind == "cidr":
            cidrs = [r.peer]
        elif r.peer_kind == "prefix_list":
            cidrs = inv.prefix_lists.get(r.peer, [])
        else:
            cidrs = list(members.loc[members["group_id"] == r.peer, "address"].unique())
        for c in cidrs:
            fam, lo, hi = cidr_range(c)
            ranges.append((r.rule_id, fam, str(lo), str(hi)))
    _put_ranges(con, "rule_ranges", "rule_id", ranges)

    owned = [(a.interface_id, *_str_range(a.address)) for a in inv.addresses.itertuples(index=False)]
    owned += [(p.interface_id, *_str_range(p.cidr)) for p in inv.prefixes.itertuples(index=False)]
    _put_ranges(con, "owned", "interface_id", owned)


def _str_range(cidr: str) -> tuple[int, str, str]:
    fam, lo, hi = cidr_range(cidr)
    return fam, str(lo), str(hi)


def _put(con: duckdb.DuckDBPyConnection, name: str, df: pd.DataFrame) -> None:
    con.register("_df", df)
    con.execute(f"CREATE OR REPLACE TABLE {name} AS SELECT * FROM _df")
    con.unregister("_df")


def _put_ranges(con: duckdb.DuckDBPyConnection, name: str, key: str, rows: list[tuple]) -> None:
    # 128-bit numbers travel as decimal strings: pandas has no 128-bit integer type.
    df = pd.DataFrame(rows, columns=[key, "family", "lo", "hi"]).astype({key: str, "lo": str, "hi": str})
    con.register("_df", df)
    con.execute(f"""
        CREATE OR REPLACE TABLE {name} AS
        SELECT {key}, CAST(family AS TINYINT) AS family, CAST(lo AS UHUGEINT) AS lo, CAST(hi AS UHUGEINT) AS hi
        FROM _df
    """)
    con.unregister("_df")


KEY_MATCHES_SQL = """
CREATE OR REPLACE TABLE key_matches AS
WITH keys AS (
    SELECT DISTINCT interface_id, 'inbound' AS direction, protocol, local_port AS port, family, peer_num
    FROM conversations WHERE acc_p + acc_l > 0
    UNION
    SELECT DISTINCT interface_id, 'outbound' AS direction, protocol, peer_port AS port, family, peer_num
    FROM conversations WHERE acc_p + acc_l > 0
)
SELECT DISTINCT k.interface_id, k.direction, k.protocol, k.port, k.family, k.peer_num, r.rule_id
FROM keys k
JOIN iface_groups g ON g.interface_id = k.interface_id
JOIN rules r ON r.group_id = g.group_id
    AND r.is_egress = (k.direction = 'outbound')
    AND (r.protocol = -1 OR r.protocol = k.protocol)
    AND (r.protocol NOT IN (6, 17) OR r.from_port = -1 OR k.port BETWEEN r.from_port AND r.to_port)
JOIN rule_ranges p ON p.rule_id = r.rule_id AND p.family = k.family
    AND k.peer_num BETWEEN p.lo AND p.hi
"""

KEY_COUNTS_SQL = """
CREATE OR REPLACE TABLE key_counts AS
SELECT interface_id, direction, protocol, port, family, peer_num, count(*) AS n
FROM key_matches GROUP BY ALL
"""

# Every matching rule gets the conversation, in the conversation's own direction.
CONVERSATION_RULES_SQL = """
CREATE OR REPLACE TABLE conversation_rules AS
SELECT c.conversation_id, m.rule_id
FROM classified c
JOIN key_matches m ON m.interface_id = c.interface_id AND m.direction = c.direction
    AND m.protocol = c.protocol AND m.family = c.family AND m.peer_num = c.peer_num
    AND m.port IS NOT DISTINCT FROM c.port
WHERE c.accepted
"""
