"""Conversations × rules (SPEC "From conversations to rules").

A rule's peer becomes one or more numeric ranges: its CIDR; each entry of its prefix list; or each
private address (primary, secondary, IPv6) of the interfaces that carry its referenced group. Matching
joins conversations with their interface's rules, three ways so that no table grows as interfaces ×
rules × addresses: CIDR rules (and a prefix list's few wide entries) as ranges per interface; a prefix
list's narrow entries once per list, found by the peer's leading bits; a referenced group's addresses
once per group, found by the peer's number. A conversation matches a rule when

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

#: Prefix-list entries at least this narrow (IPv4 /16, IPv6 /48) lie in one bucket of peers that share
#: their leading bits, and are joined on that bucket: a list's entries are stored once, not once per rule
#: and interface (1,000-entry lists on thousands of interfaces made millions of rows). Wider ones, like
#: CIDR rules, are few and tested per interface.
BUCKET_BITS = {4: 16, 6: 48}


def load_inventory_tables(con: duckdb.DuckDBPyConnection, inv: Inventory) -> None:
    """Create the inventory tables the SQL steps join against.

    Tables: ``snapshot_interfaces(interface_id, group_ids, has_groups)``, ``iface_groups(interface_id, group_id)``,
    ``rules`` (from `Inventory.rules`), ``iface_rules`` (each interface's rules), ``iface_rule_ranges`` (each
    interface's CIDR rules, and prefix-list rules' wide entries, as ranges), ``list_ranges(prefix_list_id,
    family, bucket, lo, hi)`` (the narrow entries of each prefix list, `BUCKET_BITS`),
    ``group_addresses(group_id, family, num)`` (the private addresses of each group's interfaces, which a
    rule referencing the group admits) and ``owned(interface_id, family, lo, hi)`` (the addresses and
    delegated prefixes of each interface).
    """
    ifaces = inv.interfaces[["interface_id", "group_ids"]].copy()
    ifaces["has_groups"] = ifaces["interface_id"].isin(set(inv.interface_groups["interface_id"]))
    _put(con, "snapshot_interfaces", ifaces)
    _put(con, "iface_groups", inv.interface_groups)
    _put(con, "rules", inv.rules[["rule_id", "group_id", "is_egress", "protocol", "from_port", "to_port",
                                  "peer_kind", "peer"]])
    con.execute("""
        CREATE OR REPLACE TABLE iface_rules AS
        SELECT g.interface_id, r.rule_id, r.is_egress, r.protocol, r.from_port, r.to_port, r.peer_kind, r.peer
        FROM iface_groups g JOIN rules r ON r.group_id = g.group_id
    """)

    # Each prefix list collapsed once (its entries may overlap), narrow entries bucketed, wide ones kept.
    narrow, wide = [], {}
    for pl_id, cidrs in inv.prefix_lists.items():
        wide[pl_id] = []
        for c in _collapse(cidrs):
            fam, lo, hi = cidr_range(c)
            shift = (32 if fam == 4 else 128) - BUCKET_BITS[fam]
            if lo >> shift == hi >> shift:
                narrow.append((pl_id, fam, lo >> shift, lo, hi))
            else:
                wide[pl_id].append((fam, str(lo), str(hi)))
    ranges = []
    for r in inv.rules.itertuples(index=False):
        if r.peer_kind == "cidr":
            ranges.append((r.rule_id, *_str_range(r.peer)))
        elif r.peer_kind == "prefix_list":
            ranges += [(r.rule_id, *w) for w in wide.get(r.peer, [])]
    _put_ranges(con, "rule_ranges", "rule_id", ranges)
    con.execute("""
        CREATE OR REPLACE TABLE iface_rule_ranges AS
        SELECT r.interface_id, r.rule_id, r.is_egress, r.protocol, r.from_port, r.to_port, p.family, p.lo, p.hi
        FROM iface_rules r JOIN rule_ranges p ON p.rule_id = r.rule_id
    """)
    _put_ranges(con, "list_ranges", "prefix_list_id", narrow, columns=("family", "bucket", "lo", "hi"))

    # A referenced group's members: every address converted once, however many groups it is in.
    members = inv.interface_groups.merge(inv.addresses, on="interface_id")[["group_id", "address"]]
    members = members.drop_duplicates()
    number = {a: _str_range(a) for a in members["address"].unique()}
    _put_ranges(con, "group_addresses", "group_id",
                [(g, *number[a][:2]) for g, a in zip(members["group_id"], members["address"], strict=True)],
                columns=("family", "num"))

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


def _put_ranges(con: duckdb.DuckDBPyConnection, name: str, key: str, rows: list[tuple],
                columns: tuple[str, ...] = ("family", "lo", "hi")) -> None:
    # 128-bit numbers travel as decimal strings: pandas has no 128-bit integer type.
    df = pd.DataFrame(rows, columns=[key, *columns]).astype({c: str for c in (key, *columns[1:])})
    numbers = ", ".join(f"CAST({c} AS UHUGEINT) AS {c}" for c in columns[1:])
    con.register("_df", df)
    con.execute(f"CREATE OR REPLACE TABLE {name} AS SELECT {key}, CAST(family AS TINYINT) AS family, {numbers} "
                "FROM _df")
    con.unregister("_df")


# The port a rule tests: the local port for an ingress rule (an inbound conversation), the remote one
# for an egress rule. Both directions are tried for every accepted conversation: the inference of the
# initiator asks whether "the rules of exactly one direction could allow the conversation".
_FITS = """
    (r.protocol = -1 OR r.protocol = c.protocol)
    AND (r.protocol NOT IN (6, 17) OR r.from_port = -1
         OR (CASE WHEN r.is_egress THEN c.peer_port ELSE c.local_port END) BETWEEN r.from_port AND r.to_port)
"""

# A rule's ranges do not overlap (`_collapse`: a prefix list's entries are either narrow or wide, never
# both) and a referenced group's addresses are distinct, so each (conversation, rule) pair comes out once
# without a DISTINCT.
CANDIDATES_SQL = f"""
CREATE OR REPLACE TABLE candidates AS
WITH c AS (
    SELECT conversation_id, interface_id, family, peer_num, protocol, local_port, peer_port,
           CASE WHEN family = 4 THEN peer_num >> {32 - BUCKET_BITS[4]} ELSE peer_num >> {128 - BUCKET_BITS[6]} END
               AS bucket
    FROM conversations WHERE acc_p + acc_l > 0
)
SELECT conversation_id, rule_id, is_egress FROM (
    SELECT c.conversation_id, r.rule_id, r.is_egress
    FROM c JOIN iface_rule_ranges r ON r.interface_id = c.interface_id AND r.family = c.family
    WHERE c.peer_num BETWEEN r.lo AND r.hi AND {_FITS}
    UNION ALL
    SELECT c.conversation_id, r.rule_id, r.is_egress
    FROM c JOIN list_ranges p ON p.family = c.family AND p.bucket = c.bucket AND c.peer_num BETWEEN p.lo AND p.hi
    JOIN iface_rules r ON r.interface_id = c.interface_id AND r.peer_kind = 'prefix_list'
        AND r.peer = p.prefix_list_id
    WHERE {_FITS}
    UNION ALL
    SELECT c.conversation_id, r.rule_id, r.is_egress
    FROM c JOIN group_addresses m ON m.family = c.family AND m.num = c.peer_num
    JOIN iface_rules r ON r.interface_id = c.interface_id AND r.peer_kind = 'group' AND r.peer = m.group_id
    WHERE {_FITS}
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
-- The rules of the other direction that allow a conversation whose direction is a guess
-- (`conversations.GUESSED_SQL`): it may run that way, so the plan keeps them and the findings say so.
CREATE OR REPLACE VIEW guessed_other_way AS
SELECT m.conversation_id, m.rule_id, m.is_egress
FROM candidates m JOIN classified c USING (conversation_id)
WHERE c.guessed AND m.is_egress <> (c.direction = 'outbound')
;
-- The same as one line per conversation, its rule IDs space-separated in order: what the tables show.
CREATE OR REPLACE VIEW conversation_rule_list AS
SELECT conversation_id, string_agg(rule_id, ' ' ORDER BY rule_id) AS rules
FROM conversation_rules GROUP BY conversation_id
"""
