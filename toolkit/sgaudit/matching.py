"""Conversations × rules (SPEC "From conversations to rules").

A rule's peer becomes one or more numeric ranges: its CIDR; each entry of its prefix list; or each
private address (primary, secondary, IPv6) of the interfaces that carry its referenced group. Matching
is then one join of conversations with their interface's rules:

- the rule's group is attached to the interface, and the rule's direction fits (ingress for inbound);
- the protocol fits: ``-1`` matches all, otherwise the numbers are equal (``tcp`` = 6, ``icmpv6`` = 58);
- for TCP and UDP rules, the port lies in ``FromPort..ToPort`` (``-1`` = all); other protocols carry no
  ports in flow logs, and flow logs carry no ICMP type or code, so an ICMP conversation matches every
  ICMP rule of its family;
- the peer lies in one of the rule's ranges of the same family (IPv4 and IPv6 never cross).

Both directions of every accepted conversation are matched (the *candidates*), because the inference
of the initiator for flag-less traffic asks whether "the rules of exactly one direction could allow the
conversation"; a conversation then belongs to the candidates of its own direction.
"""

from __future__ import annotations

import ipaddress

import duckdb
import pandas as pd

from .addresses import cidr_range
from .inventory import Inventory


def load_inventory_tables(con: duckdb.DuckDBPyConnection, inv: Inventory) -> None:
    """Create the inventory tables the SQL steps join against.

    Tables: ``snapshot_interfaces(interface_id, group_ids, has_groups)``, ``iface_groups(interface_id, group_id)``,
    ``rules`` (from `Inventory.rules`), ``iface_rule_ranges`` and ``iface_rule_members`` (each interface's
    rules with their peer ranges, or referenced-group member addresses) and
    ``owned(interface_id, family, lo, hi)`` (the addresses and delegated prefixes of each interface).
    """
    ifaces = inv.interfaces[["interface_id", "group_ids"]].copy()
    ifaces["has_groups"] = ifaces["interface_id"].isin(set(inv.interface_groups["interface_id"]))
    _put(con, "snapshot_interfaces", ifaces)
    _put(con, "iface_groups", inv.interface_groups)
    _put(con, "rules", inv.rules[["rule_id", "group_id", "is_egress", "protocol", "from_port", "to_port",
                                  "peer_kind", "peer"]])

    # Ranges for CIDR and prefix-list peers (few per rule); single addresses for referenced groups
    # (possibly many), which are joined on equality instead of tested as ranges.
    members = inv.interface_groups.merge(inv.addresses, on="interface_id")
    ranges, singles = [], []
    for r in inv.rules.itertuples(index=False):
        if r.peer_kind == "group":
            for a in members.loc[members["group_id"] == r.peer, "address"].unique():
                fam, lo, _ = cidr_range(a)
                singles.append((r.rule_id, fam, str(lo), str(lo)))
            continue
        cidrs = [r.peer] if r.peer_kind == "cidr" else inv.prefix_lists.get(r.peer, [])
        for c in _collapse(cidrs):
            fam, lo, hi = cidr_range(c)
            ranges.append((r.rule_id, fam, str(lo), str(hi)))
    _put_ranges(con, "rule_ranges", "rule_id", ranges)
    _put_ranges(con, "rule_members", "rule_id", singles)
    # Per interface, the rules of its groups with their peers: the right side of one hash join.
    for name, src, cols in (("iface_rule_ranges", "rule_ranges", "p.lo, p.hi"),
                            ("iface_rule_members", "rule_members", "p.lo AS num")):
        con.execute(f"""
            CREATE OR REPLACE TABLE {name} AS
            SELECT g.interface_id, r.rule_id, r.is_egress, r.protocol, r.from_port, r.to_port, p.family, {cols}
            FROM iface_groups g JOIN rules r ON r.group_id = g.group_id JOIN {src} p ON p.rule_id = r.rule_id
        """)

    owned = [(a.interface_id, *_str_range(a.address)) for a in inv.addresses.itertuples(index=False)]
    owned += [(p.interface_id, *_str_range(p.cidr)) for p in inv.prefixes.itertuples(index=False)]
    _put_ranges(con, "owned", "interface_id", owned)


def _collapse(cidrs: list[str]) -> list[str]:
    """The same address space without overlaps (a prefix list may hold 10.0.0.0/8 and 10.1.0.0/16)."""
    nets = [ipaddress.ip_network(c.strip(), strict=False) for c in cidrs]
    out = []
    for version in (4, 6):
        out += [str(n) for n in ipaddress.collapse_addresses(n for n in nets if n.version == version)]
    return out


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


# The port a rule tests: the local port for an ingress rule (an inbound conversation), the remote one
# for an egress rule. Both directions are tried for every accepted conversation: the inference of the
# initiator asks whether "the rules of exactly one direction could allow the conversation".
_FITS = """
    (r.protocol = -1 OR r.protocol = c.protocol)
    AND (r.protocol NOT IN (6, 17) OR r.from_port = -1
         OR (CASE WHEN r.is_egress THEN c.peer_port ELSE c.local_port END) BETWEEN r.from_port AND r.to_port)
"""

# A rule's ranges do not overlap (`_collapse`) and a referenced group's members are distinct, so each
# (conversation, rule) pair comes out once without a DISTINCT.
CANDIDATES_SQL = f"""
CREATE OR REPLACE TABLE candidates AS
SELECT conversation_id, rule_id, is_egress FROM (
    SELECT c.conversation_id, r.rule_id, r.is_egress
    FROM conversations c
    JOIN iface_rule_ranges r ON r.interface_id = c.interface_id AND r.family = c.family
    WHERE c.acc_p + c.acc_l > 0 AND c.peer_num BETWEEN r.lo AND r.hi AND {_FITS}
    UNION ALL
    SELECT c.conversation_id, r.rule_id, r.is_egress
    FROM conversations c
    JOIN iface_rule_members r ON r.interface_id = c.interface_id AND r.family = c.family
        AND r.num = c.peer_num
    WHERE c.acc_p + c.acc_l > 0 AND {_FITS}
)
"""

# Every matching rule gets the conversation, in the conversation's own direction. A view: it is read
# once for the usage table, and again only if the per-conversation table is asked for.
CONVERSATION_RULES_SQL = """
CREATE OR REPLACE VIEW conversation_rules AS
SELECT m.conversation_id, m.rule_id
FROM candidates m JOIN classified c USING (conversation_id)
WHERE m.is_egress = (c.direction = 'outbound')
;
-- The same as one line per conversation, its rule IDs space-separated in order: what the tables show.
CREATE OR REPLACE VIEW conversation_rule_list AS
SELECT conversation_id, string_agg(rule_id, ' ' ORDER BY rule_id) AS rules
FROM conversation_rules GROUP BY conversation_id
"""
