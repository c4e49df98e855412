"""A tightening plan: rules that keep every observed connection and nothing more, proved on the same records.

`propose` gives every rule of the inventory an action:

- ``remove`` — the rule is ``unused`` (an interface carrying its group was observed and nothing matched),
  or only ``attempted`` (unless ``keep_attempted``), and carries none of two kinds of conversation a plan
  keeps working anyway: one-way ICMP (`kept_sql`), and conversations whose direction is a guess, which the
  plan keeps allowed both ways (`conversations.GUESSED_SQL`);
- ``keep`` — the rule is already as narrow as what it carried; or there is no evidence about it
  (``unobserved``, ``unattached``, a peer outside the snapshot), which is said in its reason;
- ``replace`` — the rule carried traffic but allows more: replacement rules cover exactly the ports that
  counted and the peers seen, collapsed into CIDR blocks (never wider than the rule's own), a referenced
  group, or the rule's own prefix list or referenced group with narrower ports.

`verify` re-runs the attribution on the same records with the proposed rules in place
(`Analysis.reanalyze`) and lists every observed conversation the plan would lose: zero rows is the proof,
for these records. The plan is text for review (`to_aws_cli`, `to_terraform`, `to_markdown`): sgaudit
never changes anything in AWS.

The merge algorithm, per group and direction, when the exact rules exceed ``rule_budget``:

1. Ports of one replaced rule and protocol that are consecutive and used by the same peers become one
   range (no new access). Then, only if there are still more (rule, protocol, port range) services than
   the budget leaves room for, neighbouring ranges merge, the smallest gap first.
2. Each service's peers start as /32 (/128) blocks, exact neighbours collapsed. Then, over all services of
   the group and direction together, the merge of two neighbouring blocks into their smallest common
   supernet that adds the fewest new (address, port) pairs goes first, until the count fits. The common
   supernet of two blocks inside the rule's CIDR is inside it too, so no proposal is ever wider.
"""

from __future__ import annotations

import heapq
import ipaddress
import json
import re
import shlex
from bisect import bisect_left, bisect_right
from collections import defaultdict
from dataclasses import dataclass, field, replace
from itertools import pairwise
from operator import itemgetter
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .errors import SgauditError, as_list, whole_number
from .inventory import PROTOCOL_NAMES, WORLD, check_group_ids, protocol_number
from .output import md_escape
from .summaries import skipped_text

if TYPE_CHECKING:
    from .analysis import Analysis
    from .inventory import Inventory

#: Evidence that a conversation worked: what every plan keeps.
KEPT_EVIDENCE = ("established", "inferred")
#: Addresses that are not the internet's: private (RFC 1918), shared (RFC 6598, carrier-grade NAT), loopback,
#: link-local and unique local IPv6. Every other address a world-open rule carried is an internet peer.
#: (Documentation ranges such as 198.51.100.0/24 count as the internet: examples use them for it.)
INTERNAL = tuple(ipaddress.ip_network(n) for n in (
    "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
    "fc00::/7", "fe80::/10", "::1/128"))

ACTION_COLUMNS = ["group_id", "group_name", "rule_id", "direction", "status", "action", "old", "new", "carried",
                  "reason"]
PROPOSED_COLUMNS = ["rule_id", "group_id", "replaces", "is_egress", "protocol", "from_port", "to_port",
                    "peer_kind", "peer", "description", "why"]
#: A proposed rule's ``why``: what it keeps working (`_kept_for`).
OBSERVED, GUESSED, ONE_WAY_ICMP = "observed", "direction guessed", "one-way ICMP"
LOST_COLUMNS = ["interface_id", "direction", "protocol", "local_port", "peer", "peer_port", "port", "evidence",
                "rules_before", "rules_after", "why"]


@dataclass
class Plan:
    """A proposed set of rules, for review; nothing is applied.

    Attributes
    ----------
    actions : pandas.DataFrame
        One row per rule of the inventory: ``group_id, group_name, rule_id, direction, status, action``
        (``keep``, ``replace``, ``remove``), ``old`` (the rule as text), ``new`` (its replacements as text,
        ``; ``-separated), ``carried`` (the conversations the plan keeps for it) and ``reason``.
        ``carried`` is not the usage table's ``connections``: it leaves out ``attempted`` conversations
        (unless ``keep_attempted``) but keeps one-way ICMP, and it adds the conversations whose direction
        is only a guess that would need the rule were they running the other way.
    proposed_rules : pandas.DataFrame
        One row per new rule: ``rule_id`` (``sgr-proposed-0001``…), ``group_id``, ``replaces`` (the rule id),
        ``is_egress``, ``protocol`` (the API's ``IpProtocol``), ``from_port``, ``to_port``, ``peer_kind``
        (``cidr``, ``prefix_list``, ``group``), ``peer``, ``description`` and ``why``: ``observed`` (it
        carries conversations seen its way), ``direction guessed`` (only conversations whose direction is a
        guess need it, run the other way: a rule on a client's ephemeral port, say) or ``one-way ICMP``.
    inventory : Inventory
        The snapshot with the proposed rules in place of those replaced or removed.
    limits : list of str
        What the plan cannot prove, one sentence each.
    rule_budget : int
        At most this many rules per group and direction were aimed at.
    keep_attempted : bool
        Whether only-attempted conversations were kept as well.
    narrow_internet : bool
        Whether rules open to the internet were narrowed to the internet addresses seen as well.
    """

    actions: pd.DataFrame
    proposed_rules: pd.DataFrame
    inventory: Inventory
    limits: list[str] = field(default_factory=list)
    rule_budget: int = 25
    keep_attempted: bool = False
    narrow_internet: bool = False

    @property
    def kept_evidence(self) -> tuple[str, ...]:
        """The evidence of the conversations the plan keeps (and `verify` checks)."""
        return KEPT_EVIDENCE + (("attempted",) if self.keep_attempted else ())


# --- Rules as values ---------------------------------------------------------------------------------------


def _ports(protocol: int, from_port: int, to_port: int) -> tuple[int, int]:
    """A rule's port range as compared here: TCP/UDP ``-1`` is 0-65535; other protocols keep the API's values."""
    if protocol in (6, 17) and from_port == -1:
        return 0, 65535
    return int(from_port), int(to_port)


def _peer_value(kind: str, peer: str) -> str:
    """A peer as compared here: CIDRs normalised (``10.0.0.5/8`` is ``10.0.0.0/8``), ids as they are."""
    return str(ipaddress.ip_network(peer, strict=False)) if kind == "cidr" else peer


def _ip_protocol(protocol: int) -> str:
    return PROTOCOL_NAMES.get(protocol, str(protocol))


def rule_text(is_egress: bool, ip_protocol: str, from_port: int, to_port: int, peer: str) -> str:
    """One rule in words: ``ingress tcp 22 from 0.0.0.0/0``, ``egress udp 5000-5010 to 10.0.0.0/16``."""
    proto = protocol_number(ip_protocol)
    if proto == -1:
        what = "all traffic"
    elif proto in (6, 17):
        lo, hi = _ports(proto, from_port, to_port)
        what = f"{_ip_protocol(proto)} " + ("all ports" if (lo, hi) == (0, 65535) else
                                           str(lo) if lo == hi else f"{lo}-{hi}")
    elif proto in (1, 58):
        kind = "all types" if from_port == -1 else f"type {from_port}" + ("" if to_port == -1 else f" code {to_port}")
        what = f"{_ip_protocol(proto)} {kind}"
    else:
        what = f"protocol {proto}"
    return f"{'egress' if is_egress else 'ingress'} {what} {'to' if is_egress else 'from'} {peer}"


@dataclass
class _Service:
    """What one replacement needs for one (protocol, port range): the peers seen, or a fixed peer."""

    rule_id: str
    protocol: int
    lo: int
    hi: int
    peers: set = field(default_factory=set)  # ip_address objects, for a CIDR peer
    fixed: tuple[str, str] | None = None  # (peer_kind, peer) kept as it is
    blocks: list = field(default_factory=list)  # sorted (network number, prefix length), after collapsing
    bits: int = 32

    @property
    def width(self) -> int:
        """Ports the service opens (1 for port-less protocols): the unit a peer merge multiplies."""
        return self.hi - self.lo + 1 if self.protocol in (6, 17) else 1

    def count(self) -> int:
        """Rules this service needs."""
        return 1 if self.fixed else len(self.blocks)

    def items(self) -> list[tuple[int, int, int, str, str]]:
        """The service's rules as ``(protocol, from, to, peer_kind, peer)``."""
        if self.fixed:
            return [(self.protocol, self.lo, self.hi, *self.fixed)]
        return [(self.protocol, self.lo, self.hi, "cidr", _block_str(b, self.bits)) for b in self.blocks]


def _block_str(block: tuple[int, int], bits: int) -> str:
    net, plen = block
    addr = ipaddress.IPv4Address(net) if bits == 32 else ipaddress.IPv6Address(net)
    return f"{addr}/{plen}"


def _blocks(peers: set) -> tuple[list[tuple[int, int]], int]:
    """Peers as sorted, disjoint blocks: /32 (/128) each, exact neighbours collapsed (no new address).

    What `ipaddress.collapse_addresses` gives, on integers: two neighbouring blocks of one size whose union
    is an aligned block of twice the size merge, until none does (objects per address cost 20 s on a big
    account's plan).
    """
    if not peers:
        return [], 32
    bits = next(iter(peers)).max_prefixlen
    blocks = sorted({(int(p), bits) for p in peers})
    merged = True
    while merged:
        merged, out, i = False, [], 0
        while i < len(blocks):
            a = blocks[i]
            size = 1 << (bits - a[1])
            if (i + 1 < len(blocks) and a[1] > 0 and blocks[i + 1] == (a[0] + size, a[1])
                    and a[0] % (2 * size) == 0):
                out.append((a[0], a[1] - 1))
                merged, i = True, i + 2
            else:
                out.append(a)
                i += 1
        blocks = out
    return blocks, bits


def _supernet(a: tuple[int, int], b: tuple[int, int], bits: int) -> tuple[int, int]:
    """The smallest block that holds blocks ``a`` and ``b``: their common leading bits."""
    plen = min(a[1], b[1], bits - (a[0] ^ b[0]).bit_length())
    mask = ((1 << bits) - 1) ^ ((1 << (bits - plen)) - 1)
    return a[0] & mask, plen


class _HashedOnce:
    """An address that computes its hash once, equal to `ipaddress`'s own, so that both mix in sets.

    The plan puts the same peers in sets and dictionaries millions of times on a big account, and
    `ipaddress`'s hash is a Python-level ``hash(hex(int(self._ip)))`` each time. (The slot is declared by
    each address class: a mixin's slot would clash with `ipaddress`'s layout.)
    """

    __slots__ = ()

    def __init__(self, address):
        super().__init__(address)
        self._hash = super().__hash__()

    def __hash__(self) -> int:
        return self._hash


class _Peer4(_HashedOnce, ipaddress.IPv4Address):
    __slots__ = ("_hash",)


class _Peer6(_HashedOnce, ipaddress.IPv6Address):
    __slots__ = ("_hash",)


def _peer(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """An address as the plan keeps it (`_Peer4`, `_Peer6`)."""
    return _Peer6(address) if ":" in address else _Peer4(address)


# --- propose ---------------------------------------------------------------------------------------------


def propose(analysis: Analysis, *, rule_budget: int = 25, keep_attempted: bool = False,
            narrow_internet: bool = False) -> Plan:
    """Propose, for every rule, to keep, replace or remove it, so that every observed connection still works.

    Parameters
    ----------
    analysis : Analysis
        A finished `sgaudit.analyze` result.
    rule_budget : int
        At most this many rules per group and direction (kept ones included): peers merge into wider
        blocks, never wider than the rule they replace, and, if that is not enough, ports into ranges.
    keep_attempted : bool
        Also keep conversations only attempted (one-way UDP such as syslog, unanswered SYNs); rules only
        attempted are then narrowed like used ones instead of removed.
    narrow_internet : bool
        Also narrow a rule open to the whole internet (``0.0.0.0/0``, ``::/0``) that internet addresses
        reached, to those addresses. Off by default: the internet addresses of a window are not who needs
        the rule (a public endpoint's next client, a dynamic address, a scanner that completed a
        handshake), so such a rule keeps its peer and only its ports narrow.

    Returns
    -------
    Plan

    Raises
    ------
    SgauditError
        For a ``rule_budget`` that is not a whole number of at least 1, or a ``keep_attempted`` that is not
        True or False (the string ``"false"`` would read as true), or the same for ``narrow_internet``.
    """
    if not whole_number(rule_budget) or rule_budget < 1:
        raise SgauditError(f"rule_budget {rule_budget!r}: must be a whole number, at least 1")
    for name, value in (("keep_attempted", keep_attempted), ("narrow_internet", narrow_internet)):
        if not isinstance(value, bool):
            raise SgauditError(f"{name} {value!r}: must be True or False")
    inv = analysis.inventory
    evidence = KEPT_EVIDENCE + (("attempted",) if keep_attempted else ())
    usage = analysis.usage
    status_of = dict(zip(usage["rule_id"], usage["status"], strict=True))
    connections_of = dict(zip(usage["rule_id"], usage["connections"], strict=True))
    rules = inv.rules.merge(inv.groups[["group_id", "group_name", "vpc_id"]], on="group_id", how="left")
    unresolved = inv.unresolved_rules()
    # The snapshot's own addresses are no internet peers, whatever their range (a VPC's IPv6 is public).
    carried, internet = _carried(analysis, evidence, {ipaddress.ip_address(a) for a in inv.addresses["address"]})

    decisions: dict[str, dict] = {}
    narrow: dict[str, list[tuple]] = {}  # rule → its `_carried` rows, for the rules narrowed
    for r in rules.itertuples(index=False):
        status = status_of.get(r.rule_id, "unobserved")
        d = decisions[r.rule_id] = {"status": status, "action": "", "carried": 0, "reason": ""}
        if r.rule_id in unresolved:
            d.update(action="keep", reason="its peers (a referenced group or prefix list) are not in the snapshot, "
                                           "so sgaudit cannot tell what it carries: kept untouched")
        elif status == "unobserved":
            d.update(action="keep", reason="no evidence: no interface carrying the group was observed in the "
                                           "window, so the rule was never put to the test")
        elif status == "unattached":
            # The plan changes rules, never groups: deleting the whole group is the unattached_group
            # finding's advice, which the reason points to so that the two read the same way.
            d.update(action="keep", reason="no evidence: the group is on no interface, so nothing can use the "
                                           "rule; the unattached_group finding advises deleting the group "
                                           "itself once no launch template or stack names it")
        elif status == "unused" and r.rule_id not in carried:
            d.update(action="remove", reason="unused: an interface carrying the group was observed and no "
                                             "accepted conversation matched the rule")
        elif status == "attempted" and not keep_attempted and r.rule_id not in carried:
            n = int(connections_of[r.rule_id])
            d.update(action="remove", reason=f"only attempted: {n} conversation(s) matched, none answered "
                                             "(one-way traffic or a SYN answered by RST); keep_attempted would "
                                             "narrow it instead")
        else:
            rows = carried.get(r.rule_id, [])
            d["carried"] = sum(c[0] for c in rows)
            narrow[r.rule_id] = rows
            d["needed"] = _needed(status, rows)

    by_id = {r.rule_id: r for r in rules.itertuples(index=False)}
    members = _group_members(inv)
    vpcs = dict(zip(inv.groups["group_id"], inv.groups["vpc_id"], strict=True))
    # Rules already as narrow as what they carried are kept; their conversations need nothing more from
    # the other rules of the group (a replacement identical to a kept rule is an error at AWS, too).
    internet = frozenset() if narrow_internet else internet
    services = {rid: _replacement(by_id[rid], rows, decisions[rid], internet)
                for rid, rows in narrow.items()}
    for rid in list(services):
        if _equal(by_id[rid], services[rid]):
            decisions[rid].update(action="keep", reason=_internet_reason(decisions[rid], "kept open")
                                  if "internet" in decisions[rid] else "already as narrow as what it carried")
    kept_by_group = defaultdict(set)
    for rid, d in decisions.items():
        if d["action"] == "keep":
            kept_by_group[by_id[rid].group_id].add(rid)
    for rid, rows in narrow.items():
        if decisions[rid].get("action") == "keep":
            continue
        others = kept_by_group[by_id[rid].group_id]
        left = [c for c in rows if not (c[5] & others)]
        if len(left) < len(rows):
            also = sorted({o for c in rows for o in c[5] & others})
            decisions[rid]["also"] = (sum(c[0] for c in rows) - sum(c[0] for c in left), also)
        if not left:
            decisions[rid].update(action="remove", reason="everything it carried is also allowed by kept rule(s) "
                                                          + ", ".join(also))
            continue
        decisions[rid]["action"] = "replace"
        if len(left) < len(rows):  # else the first pass made these very services
            services[rid] = _replacement(by_id[rid], left, decisions[rid], internet)
        _prefer_group(by_id[rid], services[rid], members, vpcs)

    # The budget, per group and direction.
    over = []
    for (gid, egress), rids in _by_group_direction(rules).items():
        todo = [rid for rid in rids if decisions[rid]["action"] == "replace"]
        if not todo:
            continue
        fixed = sum(1 for rid in rids if decisions[rid]["action"] == "keep")
        svcs = [s for rid in todo for s in services[rid]]
        svcs = _fit_ports(svcs, int(rule_budget) - fixed)
        for s in svcs:
            if not s.fixed:
                s.blocks, s.bits = _blocks(s.peers)
        total = _fit_peers(svcs, int(rule_budget) - fixed) + fixed
        if total > rule_budget:
            over.append((gid, egress, total))
        for rid in todo:
            services[rid] = [s for s in svcs if s.rule_id == rid]
            if _equal(by_id[rid], services[rid]):
                decisions[rid].update(action="keep", reason="its traffic needs all it allows, within the rule budget")

    proposed = _reconcile(rules, decisions, services)
    actions, proposed_df, new_inventory = _assemble(inv, rules, decisions, proposed, narrow)
    plan = Plan(actions, proposed_df, new_inventory, [], int(rule_budget), bool(keep_attempted),
                bool(narrow_internet))
    plan.limits = _limits(analysis, plan, over)
    return plan


def select(plan: Plan, analysis: Analysis, group_ids=None) -> Plan:
    """The part of a plan that changes only some groups: the rest of the snapshot stays as it is.

    An auditor reviewing one group's report must get commands that change that group alone, and a proof
    of exactly those changes: `verify` of the selected plan re-runs the attribution with these groups'
    proposed rules and every other group's rules unchanged.

    Parameters
    ----------
    plan : Plan
        From `propose` on ``analysis``.
    analysis : Analysis
    group_ids : str or list of str, optional
        Security group IDs; empty or None: the whole plan.

    Raises
    ------
    SgauditError
        For a group ID the snapshot does not hold (a typo would otherwise give an empty plan).
    """
    ids = as_list(group_ids)
    if not ids:
        return plan
    original = analysis.inventory
    check_group_ids(original, ids)
    mine = plan.inventory.rules[plan.inventory.rules["group_id"].isin(ids)]
    rules = pd.concat([original.rules[~original.rules["group_id"].isin(ids)], mine], ignore_index=True)
    gone = set(original.rules.loc[original.rules["group_id"].isin(ids), "rule_id"]) - set(mine["rule_id"])
    inventory = replace(original, rules=rules, problems=[p for p in original.problems if p["resource"] not in gone])
    return replace(plan, actions=plan.actions[plan.actions["group_id"].isin(ids)].reset_index(drop=True),
                   proposed_rules=plan.proposed_rules[plan.proposed_rules["group_id"].isin(ids)]
                   .reset_index(drop=True), inventory=inventory)


def _quoted(evidence: tuple[str, ...]) -> str:
    """Evidence levels as an SQL list: ``'established', 'inferred'``."""
    return ", ".join("'" + e + "'" for e in evidence)


def kept_sql(evidence: tuple[str, ...]) -> str:
    """SQL: whether a conversation of `classified` (alias ``c``) is one a plan keeps working.

    Accepted with ``evidence``; or one-way ICMP, whatever ``evidence``: its error messages are one-way by
    design (Path MTU Discovery's "fragmentation needed", ICMPv6's "packet too big", which IPv6 cannot do
    without), flow logs carry no ICMP type to tell them from an unanswered ping, and losing them hangs
    connections silently instead of failing them.
    """
    return f"c.accepted AND (c.evidence IN ({_quoted(evidence)}) OR c.protocol IN (1, 58))"


def _carried(analysis: Analysis, evidence: tuple[str, ...],
             known: set) -> tuple[dict[str, list[tuple]], frozenset]:
    """Per rule, its kept conversations; and which of their peers are internet addresses.

    A rule's conversations are grouped as ``(count, protocol, port, peer address, family, rules, why)``; the
    internet addresses are the peers that are neither `INTERNAL` nor ``known`` (the snapshot's own addresses).
    ``rules`` is the set of every rule that matched those conversations in the rule's direction, read as in
    `sgaudit.summaries.peers`. ``why`` is ``"seen"`` for the conversations the rule carried; ``"guess"`` for
    those whose direction is a guess (`conversations.GUESSED_SQL`) that the rule allows the other way, with
    the port that counts that way: whichever way they really run, the plan keeps it working; ``"icmp"`` for
    one-way ICMP (`kept_sql`). Grouping in DuckDB keeps this as small as the distinct peers and ports.
    """
    df = analysis.con.sql(f"""
        WITH kept AS (
            SELECT cr.conversation_id, cr.rule_id, c.direction = 'outbound' AS is_egress, c.protocol, c.port,
                   c.peer_addr, c.family,
                   CASE WHEN c.evidence IN ({_quoted(evidence)}) THEN 'seen' ELSE 'icmp' END AS why
            FROM conversation_rules cr JOIN classified c USING (conversation_id)
            WHERE {kept_sql(evidence)}
            UNION ALL
            SELECT g.conversation_id, g.rule_id, g.is_egress, c.protocol,
                   CASE WHEN g.is_egress THEN c.peer_port ELSE c.local_port END, c.peer_addr, c.family, 'guess'
            FROM guessed_other_way g JOIN classified c USING (conversation_id)
            WHERE {kept_sql(evidence)}
        ),
        sets AS (SELECT conversation_id, is_egress, array_to_string(list_sort(list(rule_id)), ' ') AS rules
                 FROM kept GROUP BY ALL)
        SELECT k.rule_id, k.protocol, k.port, k.peer_addr, k.family, s.rules, k.why, count(*) AS n
        FROM kept k JOIN sets s USING (conversation_id, is_egress)
        GROUP BY ALL
        ORDER BY ALL
    """).fetchnumpy()
    # One address object and one rule set per distinct value, and plain Python values row by row: a big
    # account has hundreds of thousands of rows here, and pandas' per-row access cost seconds.
    addresses = {a: _peer(a) for a in set(df["peer_addr"].tolist())}
    internet = frozenset(p for p in addresses.values() if p not in known and not any(p in net for net in INTERNAL))
    sets = {k: frozenset(k.split(" ")) for k in set(df["rules"].tolist())}
    # A port-less protocol's port is NULL: a masked array, whose tolist() gives None there.
    rows = list(zip(df["n"].tolist(), df["protocol"].tolist(), df["port"].tolist(),
                    [addresses[a] for a in df["peer_addr"].tolist()], df["family"].tolist(),
                    [sets[k] for k in df["rules"].tolist()], df["why"].tolist(), strict=True))
    # Sorted by rule: each rule's rows are one slice.
    ids = df["rule_id"]
    starts = [0, *(np.flatnonzero(ids[1:] != ids[:-1]) + 1).tolist(), len(ids)] if len(ids) else [0]
    return {ids[a]: rows[a:b] for a, b in pairwise(starts)}, internet


def _needed(status: str, rows: list[tuple]) -> str:
    """Why a rule carries conversations that its own status does not show (`_carried`'s ``why``), or ""."""
    guess = sum(c[0] for c in rows if c[6] == "guess")
    icmp = sum(c[0] for c in rows if c[6] == "icmp")
    parts = []
    if guess:
        parts.append(f"{guess} of them would need it if they ran the other way: their direction is a guess (no "
                     "handshake flags, and the rules of both directions allow them), so the plan keeps both ways "
                     "working")
    if icmp:
        parts.append(f"{icmp} of them one-way ICMP, kept: flow logs carry no ICMP type, and one-way messages such as "
                     "Path MTU Discovery's cannot be told from an unanswered ping")
    if not parts:
        return ""
    lead = f"its status is {status}, but " if status in ("unused", "attempted") else ""
    return lead + "; ".join(parts)


def _services(rule, rows: list[tuple], internet: set = frozenset()) -> list[_Service]:
    """The exact replacement of one rule: one service per (protocol, port) seen, with its peers.

    Consecutive ports with the same peers become one range (no new access). A service that carried one of
    the ``internet`` peers (`_internet_peers` of a rule open to the whole internet) keeps the rule's own peer
    and narrows only its protocol and ports; one that carried only other addresses is narrowed to them.
    """
    original = int(rule.protocol)
    fixed = None if rule.peer_kind == "cidr" else (rule.peer_kind, rule.peer)
    # A whole protocol family keeps -1 (flow logs carry no ICMP type or code); an ICMP rule keeps its own
    # type and code.
    portless = (-1, -1) if original == -1 else (int(rule.from_port), int(rule.to_port))
    by_key: dict[tuple[int, int, int], set] = defaultdict(set)
    for row in rows:  # hundreds of thousands of rows on a big account: kept plain
        proto = row[1]
        if proto == 6 or proto == 17:
            by_key[(proto, row[2], row[2])].add(row[3])
        else:
            by_key[(proto, *portless)].add(row[3])
    out: list[_Service] = []
    for (proto, lo, hi), peers in sorted(by_key.items()):
        own = fixed or (("cidr", rule.peer) if peers & internet else None)
        prev = out[-1] if out else None
        if (prev and proto in (6, 17) and prev.protocol == proto and prev.hi + 1 == lo
                and prev.fixed == own and (own or prev.peers == peers)):
            prev.hi = hi
            continue
        out.append(_Service(rule.rule_id, proto, lo, hi, set(peers), own))
    for s in out:
        if not s.fixed:
            s.blocks, s.bits = _blocks(s.peers)
    return out


def _replacement(rule, rows: list[tuple], decision: dict, internet: frozenset) -> list[_Service]:
    """`_services` for the conversations ``rows``; notes in ``decision`` the internet peers that keep the peer.

    ``internet``: the internet addresses among all peers (`_carried`), empty when the plan narrows rules
    open to the internet as well.
    """
    mine = _internet_peers(rule, rows, internet)
    decision.pop("internet", None)
    if mine:
        decision["internet"] = mine
    return _services(rule, rows, mine)


def _internet_peers(rule, rows: list[tuple], internet: frozenset) -> set:
    """The ``internet`` addresses (`_carried`) that a rule open to the whole internet carried."""
    if not internet or rule.peer_kind != "cidr" or _peer_value("cidr", rule.peer) not in WORLD:
        return set()
    return internet.intersection(map(itemgetter(3), rows))


def _internet_reason(d: dict, what: str) -> str:
    """Why a rule open to the internet that internet addresses reached keeps its peer."""
    peers = sorted(d["internet"], key=lambda a: (a.version, int(a)))
    shown = ", ".join(map(str, peers[:3])) + (" …" if len(peers) > 3 else "")
    many = "" if len(peers) == 1 else "es"
    return (f"open to the internet and reached from {len(peers):,} internet address{many} ({shown}): "
            f"{what}, since the addresses of one window are not who needs it (a public endpoint's next client, "
            "a changing address, a scanner that completed a handshake); restrict it by hand to who should reach "
            "it, or narrow it to these addresses with --narrow-internet (narrow_internet=True)")


def _equal(rule, services: list[_Service]) -> bool:
    """Whether a rule's proposal (its services) is the rule itself."""
    if sum(s.count() for s in services) != 1:  # counted before any rule is written out
        return False
    proto, lo, hi, kind, peer = next(s for s in services if s.count()).items()[0]
    return (proto == int(rule.protocol) and (lo, hi) == _ports(proto, int(rule.from_port), int(rule.to_port))
            and kind == rule.peer_kind and _peer_value(kind, peer) == _peer_value(rule.peer_kind, rule.peer))


def _group_members(inv: Inventory) -> dict[str, set]:
    """Per group, the private addresses (primary, secondary, IPv6) of the interfaces that carry it."""
    out: dict[str, set] = defaultdict(set)
    joined = inv.interface_groups.merge(inv.addresses, on="interface_id")
    for g, a in zip(joined["group_id"], joined["address"], strict=True):
        out[g].add(ipaddress.ip_address(a))
    return out


def _prefer_group(rule, svcs: list[_Service], members: dict[str, set], vpcs: dict[str, str]) -> None:
    """Use a referenced group instead of CIDRs where it admits exactly a subset of the rule's CIDR.

    Every peer must be a private address of interfaces that all carry the group G (in the VPC of the rule's
    group), and every address of G's interfaces must lie inside the rule's CIDR, so that G admits nothing
    the old rule did not. The group with the fewest addresses wins.
    """
    if rule.peer_kind != "cidr" or not svcs or any(s.fixed for s in svcs):
        return
    vpc = vpcs.get(rule.group_id)
    if not isinstance(vpc, str) or not vpc:
        return
    net = ipaddress.ip_network(rule.peer, strict=False)
    peers = set().union(*(s.peers for s in svcs))
    candidates = None
    for p in peers:
        owners = {g for g, addrs in members.items() if p in addrs}
        candidates = owners if candidates is None else candidates & owners
        if not candidates:
            return
    eligible = [(len(members[g]), g) for g in sorted(candidates or ())
                if vpcs.get(g) == vpc and all(a.version == net.version and a in net for a in members[g])]
    if eligible:
        g = min(eligible)[1]
        for s in svcs:
            s.fixed = ("group", g)


def _by_group_direction(rules: pd.DataFrame) -> dict[tuple[str, bool], list[str]]:
    out: dict[tuple[str, bool], list[str]] = defaultdict(list)
    for gid, egress, rid in zip(rules["group_id"], rules["is_egress"], rules["rule_id"], strict=True):
        out[(gid, bool(egress))].append(rid)
    return out


def _fit_ports(svcs: list[_Service], room: int) -> list[_Service]:
    """Merge neighbouring port ranges of one rule and protocol, smallest gap first, until ``room`` services.

    Only when the services alone exceed the room: each needs at least one rule. The gap between two
    neighbours does not change when either merges with its other neighbour, so taking the smallest gaps
    first is the greedy order; neighbours of one kind (both keeping the rule's own peer, or both narrowed to
    peers) go before mixed ones. A merged range keeps the rule's own peer when either part did: a port the
    internet reached must stay open to it (the rule's own peer is never wider than the rule).
    """
    excess = len(svcs) - max(room, 0)
    if excess <= 0:
        return svcs
    chains: dict[tuple[str, int], list[_Service]] = defaultdict(list)
    for s in svcs:
        chains[(s.rule_id, s.protocol)].append(s)
    gaps = []
    for key, chain in chains.items():
        if key[1] not in (6, 17):
            continue
        chain.sort(key=lambda s: s.lo)
        gaps += [(a.fixed != b.fixed, b.lo - a.hi - 1, key, i) for i, (a, b) in enumerate(pairwise(chain))]
    join = {(key, i) for _, _, key, i in sorted(gaps)[:excess]}
    out = []
    for key, chain in chains.items():
        current = chain[0]
        out.append(current)
        for i, nxt in enumerate(chain[1:]):
            if (key, i) in join:
                current.hi = nxt.hi
                current.peers |= nxt.peers
                current.fixed = current.fixed or nxt.fixed
            else:
                current = nxt
                out.append(current)
    return out


def _fit_peers(svcs: list[_Service], room: int) -> int:
    """Merge neighbouring peer blocks until the services need at most ``room`` rules; return what they need.

    Greedy over all services together: the merge adding the fewest new (address, port) pairs first (ties:
    the one saving more rules). Entries of the heap go stale when a block they name is merged away; they
    are checked when popped, and re-queued when the blocks between changed their cost.
    """
    total = sum(s.count() for s in svcs)
    if total <= room:
        return total
    present = [set(s.blocks) for s in svcs]
    heap: list = []
    seq = 0

    def cost(i: int, a, b) -> tuple[int, int, tuple[int, int], int, int]:
        s = svcs[i]
        sup = _supernet(a, b, s.bits)
        end = sup[0] + (1 << (s.bits - sup[1])) - 1
        i0 = bisect_left(s.blocks, (sup[0], -1))
        i1 = bisect_right(s.blocks, (end, s.bits + 1))
        covered = sum(1 << (s.bits - p) for _, p in s.blocks[i0:i1])
        return ((1 << (s.bits - sup[1])) - covered) * s.width, -(i1 - i0 - 1), sup, i0, i1

    def push(i: int, a, b) -> None:
        nonlocal seq
        c, saves, _, _, _ = cost(i, a, b)
        heapq.heappush(heap, (c, saves, seq, i, a, b))
        seq += 1

    for i, s in enumerate(svcs):
        if not s.fixed:
            for a, b in pairwise(s.blocks):
                push(i, a, b)
    while total > room and heap:
        c, saves, _, i, a, b = heapq.heappop(heap)
        if a not in present[i] or b not in present[i]:
            continue
        now = cost(i, a, b)
        if (now[0], now[1]) != (c, saves):
            push(i, a, b)
            continue
        _, saves, sup, i0, i1 = now
        s = svcs[i]
        for blk in s.blocks[i0:i1]:
            present[i].discard(blk)
        s.blocks[i0:i1] = [sup]
        present[i].add(sup)
        total += saves  # saves is negative: rules saved
        if i0 > 0:
            push(i, s.blocks[i0 - 1], sup)
        if i0 + 1 < len(s.blocks):
            push(i, sup, s.blocks[i0 + 1])
    return total


def _reconcile(rules: pd.DataFrame, decisions: dict, services: dict) -> dict[str, list[tuple]]:
    """The proposed rules per replaced rule, without any that AWS would refuse as a duplicate.

    AWS refuses to add a rule identical to one the group holds, and the plan adds before it revokes. A
    proposal identical to an existing rule of the group is dropped, and that rule kept (it is then needed,
    and it holds the proposal); identical proposals of two rules are made once. Each round starts again
    from the full proposals, since a rule kept in one round changes what the others may drop; keeping only
    grows, so the rounds end.
    """
    full = {rid: [it for s in services.get(rid, []) for it in s.items()]
            for rid, d in decisions.items() if d["action"] == "replace"}
    existing: dict[tuple, str] = {}
    for r in rules.itertuples(index=False):
        existing[(r.group_id, bool(r.is_egress), int(r.protocol),
                  *_ports(int(r.protocol), int(r.from_port), int(r.to_port)),
                  r.peer_kind, _peer_value(r.peer_kind, r.peer))] = r.rule_id
    group_of = {r.rule_id: (r.group_id, bool(r.is_egress)) for r in rules.itertuples(index=False)}
    while True:
        changed = False
        seen: set = set()
        proposed: dict[str, list[tuple]] = {}
        for rid in sorted(full):
            if decisions[rid]["action"] != "replace":
                continue
            items = []
            for it in full[rid]:
                key = (*group_of[rid], it[0], it[1], it[2], it[3], _peer_value(it[3], it[4]))
                other = existing.get(key)
                if other is not None and other != rid:
                    if decisions[other]["action"] != "keep":
                        decisions[other].update(action="keep", reason=f"needed as it is: the replacement of {rid} "
                                                                      "would be identical to it")
                        changed = True
                    continue
                if key not in seen:
                    seen.add(key)
                    items.append(it)
            proposed[rid] = items
        for rid, items in proposed.items():
            if not items and decisions[rid]["action"] == "replace":
                decisions[rid].update(action="remove", reason="everything it carried is allowed by kept rules or "
                                                              "by other replacements identical to its own")
                changed = True
        if not changed:
            return {rid: items for rid, items in proposed.items() if decisions[rid]["action"] == "replace"}


def _kept_for(rows: list[tuple], item: tuple) -> str:
    """Why a proposed rule is there: `OBSERVED`, or only `GUESSED` or `ONE_WAY_ICMP` conversations need it.

    ``rows`` are the replaced rule's `_carried` rows, ``item`` the proposed rule ``(protocol, from, to,
    peer_kind, peer)``; a rule whose every row was seen its way is `OBSERVED` without a look at the item.
    """
    if all(row[6] == "seen" for row in rows):
        return OBSERVED
    proto, lo, hi, kind, peer = item
    net = ipaddress.ip_network(peer, strict=False) if kind == "cidr" else None
    found = {row[6] for row in rows
             if row[1] == proto and (proto not in (6, 17) or lo <= row[2] <= hi)
             and (net is None or (row[3].version == net.version and row[3] in net))}
    if not found or "seen" in found:
        return OBSERVED
    return ONE_WAY_ICMP if found == {"icmp"} else GUESSED


def _assemble(inv: Inventory, rules: pd.DataFrame, decisions: dict, proposed: dict[str, list[tuple]],
              carried: dict[str, list[tuple]]):
    """The actions table, the proposed rules with their new ids, and the inventory with them in place.

    A proposed rule kept only for conversations of guessed direction (or one-way ICMP) says so in its
    ``why`` and its description: on a client's ephemeral port it would otherwise look like a mistake.
    """
    new_rows, n = [], 0
    by_id = {r.rule_id: r for r in rules.itertuples(index=False)}
    for rid in sorted(proposed, key=lambda x: (by_id[x].group_id, bool(by_id[x].is_egress), x)):
        r = by_id[rid]
        for item in sorted(proposed[rid], key=lambda it: (it[0], it[1], it[2], it[3], it[4])):
            proto, lo, hi, kind, peer = item
            why = _kept_for(carried.get(rid, []), item)
            n += 1
            new_rows.append({"rule_id": f"sgr-proposed-{n:04d}", "group_id": r.group_id, "replaces": rid,
                             "is_egress": bool(r.is_egress), "protocol": _ip_protocol(proto),
                             "from_port": int(lo), "to_port": int(hi), "peer_kind": kind, "peer": peer,
                             "description": f"sgaudit: replaces {rid}" + ("" if why == OBSERVED else f", {why}"),
                             "why": why, "_proto": proto})
    proposed_df = pd.DataFrame(new_rows, columns=PROPOSED_COLUMNS + ["_proto"])
    texts = defaultdict(list)
    for p in new_rows:
        texts[p["replaces"]].append(rule_text(p["is_egress"], p["protocol"], p["from_port"], p["to_port"], p["peer"]))
    as_group = {p["replaces"] for p in new_rows if p["peer_kind"] == "group"}

    rows = []
    for r in rules.itertuples(index=False):
        d = decisions[r.rule_id]
        reason = d["reason"]
        if d["action"] == "replace" and "internet" in d:
            reason = f"carried {d['carried']} conversation(s); " + _internet_reason(
                d, "it stays open to the internet on the ports they used")
        elif d["action"] == "replace":
            reason = f"carried {d['carried']} conversation(s); the {len(texts[r.rule_id])} replacement rule(s) " \
                     "cover exactly their ports and peers"
            if r.rule_id in as_group and r.peer_kind == "cidr":
                reason += ", as a referenced group whose every address lies inside the old CIDR"
        if "also" in d and d["action"] == "replace":
            reason += f"; {d['also'][0]} of them are also allowed by kept rule(s) {', '.join(d['also'][1])}"
        if d.get("needed") and d["action"] in ("replace", "keep"):
            reason += f"; {d['needed']}"
        rows.append({"group_id": r.group_id, "group_name": "" if pd.isna(r.group_name) else r.group_name,
                     "rule_id": r.rule_id, "direction": "egress" if r.is_egress else "ingress",
                     "status": d["status"], "action": d["action"],
                     "old": rule_text(bool(r.is_egress), r.ip_protocol, int(r.from_port), int(r.to_port), r.peer),
                     "new": "; ".join(texts.get(r.rule_id, [])), "carried": int(d["carried"]), "reason": reason})
    actions = pd.DataFrame(rows, columns=ACTION_COLUMNS)
    actions = actions.sort_values(["group_id", "direction", "rule_id"], kind="stable").reset_index(drop=True)

    gone = {rid for rid, d in decisions.items() if d["action"] in ("replace", "remove")}
    kept = inv.rules[~inv.rules["rule_id"].isin(gone)]
    added = pd.DataFrame({
        "rule_id": proposed_df["rule_id"], "group_id": proposed_df["group_id"],
        "is_egress": proposed_df["is_egress"].astype(bool), "ip_protocol": proposed_df["protocol"],
        "protocol": proposed_df["_proto"].astype("int64"), "from_port": proposed_df["from_port"].astype("int64"),
        "to_port": proposed_df["to_port"].astype("int64"), "peer_kind": proposed_df["peer_kind"],
        "peer": proposed_df["peer"], "description": proposed_df["description"],
    }, columns=inv.rules.columns)
    new_rules = pd.concat([kept, added], ignore_index=True) if len(added) else kept.reset_index(drop=True)
    problems = [p for p in inv.problems if p["resource"] not in gone]
    return actions, proposed_df[PROPOSED_COLUMNS].reset_index(drop=True), replace(inv, rules=new_rules,
                                                                                   problems=problems)


# --- What the plan cannot prove ----------------------------------------------------------------------------


def _duration(td: pd.Timedelta) -> str:
    """Every unit spelt out, down to the second: the plan's first limit says exactly what was seen."""
    seconds = int(td.total_seconds())
    parts = [(seconds // 86400, "day"), (seconds // 3600 % 24, "hour"), (seconds // 60 % 60, "minute"),
             (seconds % 60, "second")]
    words = [f"{n} {unit}{'s' if n != 1 else ''}" for n, unit in parts if n]
    return " ".join(words) or "0 seconds"


def _limits(analysis: Analysis, plan: Plan, over: list[tuple[str, bool, int]]) -> list[str]:
    inv = analysis.inventory
    a = plan.actions
    lo, hi = analysis.window
    out = []
    if lo is None or hi is None or pd.isna(lo) or pd.isna(hi):
        out.append("The logs hold no records: nothing is proved, and no rule is judged by traffic.")
    else:
        out.append(f"The window is {_duration(hi - lo)} long ({lo:%Y-%m-%d %H:%M:%S} to {hi:%Y-%m-%d %H:%M:%S} "
                   "UTC): traffic rarer than that (monthly jobs, failover, disaster recovery, a new client) is not "
                   "in it, and a rule or peer it needs is removed; compare with a window covering every cycle "
                   "before applying.")
    cov = analysis.coverage
    snap = cov[cov["in_snapshot"]]
    unobserved_ifaces = int((~snap["observed"]).sum())
    unobserved_groups = a.loc[a["status"] == "unobserved", "group_id"].nunique()
    unattached_groups = a.loc[a["status"] == "unattached", "group_id"].nunique()
    seen = dict(zip(snap["interface_id"], snap["observed"], strict=True))
    ig = inv.interface_groups
    mixed = sum(1 for _, ifaces in ig.groupby("group_id")["interface_id"]
                if len({bool(seen.get(i, False)) for i in ifaces}) == 2)
    out.append(f"{unobserved_ifaces} interface(s) of the snapshot had no record in the window, and "
               f"{unobserved_groups} group(s) are carried only by such interfaces ({unattached_groups} more are "
               "on no interface): their rules are kept as they are, with no evidence either way."
               + (f" {mixed} group(s) are on both observed and unobserved interfaces: their rules are judged by "
                  "the observed ones alone, and the unobserved ones lose what only they needed; turn flow logs on "
                  "for every interface of a group before applying its plan." if mixed else ""))
    attempted = int(analysis.con.sql("SELECT count(*) FROM classified WHERE accepted AND evidence = 'attempted'")
                    .fetchall()[0][0])
    if plan.keep_attempted:
        out.append(f"Only-attempted conversations ({attempted}: one-way traffic, SYNs answered by RST) are kept "
                   "like working ones, scanners included: rules that only scanners reached stay open to them.")
    else:
        out.append(f"Only-attempted conversations ({attempted}: one-way traffic, SYNs answered by RST) are not "
                   "kept, one-way ICMP apart (Path MTU Discovery needs it): rules only attempted are removed and "
                   "replacements leave them out. One-way UDP (syslog, metrics, SNMP traps) looks exactly like this; "
                   "to keep it, run sgaudit plan --keep-attempted (keep_attempted=True from Python).")
    guessed = int(analysis.con.sql("SELECT count(*) FROM classified WHERE guessed").fetchall()[0][0])
    if guessed:
        out.append(f"{guessed} conversation(s) had no handshake flags, and rules of both directions allow them: "
                   "their direction is a guess from their ports, so the plan keeps them allowed both ways, and "
                   "a rule that only they need the other way is narrowed, not removed.")
    if plan.narrow_internet:
        out.append("Rules open to the internet are narrowed to the internet addresses of the window "
                   "(--narrow-internet), scanners that completed a handshake included: a client that did not come "
                   "in the window, or whose address changes, is shut out.")
    else:
        kept_open = int(a["reason"].str.contains("open to the internet and reached from", regex=False).sum())
        if kept_open:
            out.append(f"{kept_open} rule(s) open to the internet that internet addresses reached keep their "
                       "peer (only their ports narrow): the addresses of one window are not who needs them. "
                       "Restrict them by hand, or list the addresses seen with --narrow-internet.")
    untracked = _untracked(inv, set(a.loc[a["action"] != "keep", "rule_id"]))
    out.append("Security groups track connections: a connection open when a rule is revoked goes on until it "
               "closes or idles out (TCP: 5 days by default), so a mistake may show days later; but flows the group "
               "does not track, TCP or UDP under a rule open to 0.0.0.0/0 or ::/0 with a rule of the other direction "
               f"letting every port back, are cut at once ({untracked} of the rules to replace or remove are such).")
    out.append("REJECT records are never usage, and flow logs do not say whether a group or a network ACL "
               "rejected: traffic a network ACL blocks today never reaches a rule, so a rule it needs once the "
               "ACL is opened looks unused here; traffic through NAT gateways, load balancers or peering shows the "
               "addresses AWS writes, which the plan keeps as it saw them.")
    if skipped := skipped_text(analysis):
        out.append(skipped[0].upper() + skipped[1:] + " The plan removes such a rule as it removes any unused one.")
    q = analysis.quality.set_index("bucket")["records"]
    malformed = int(q.get("malformed", 0))
    if malformed:
        out.append(f"{malformed:,} of the {int(q.get('total', 0)):,} records read were malformed (the problems "
                   "table lists them): their traffic is not in this plan, so a rule only they used looks unused "
                   "and is removed.")
    unexplained = len(analysis.unexplained)
    if unexplained:
        out.append(f"{unexplained} accepted conversation(s) no rule of the snapshot explains (a rule changed "
                   "since the snapshot, or another account or region): the plan cannot keep what it cannot "
                   "attribute; take a fresh snapshot.")
    unresolved = len(inv.unresolved_rules())
    if unresolved:
        out.append(f"{unresolved} rule(s) refer to a group or prefix list that is not in the snapshot: kept as "
                   "they are, since what they carry cannot be told.")
    for gid, egress, total in over:
        out.append(f"{gid} {'egress' if egress else 'ingress'}: {total} rules are needed even after merging "
                   f"everything the replaced rules allow, more than the budget of {plan.rule_budget}.")
    crowded = _over_quota(plan.inventory.rules)
    if crowded:
        out.append(f"{len(crowded)} group(s) would hold more than {RULES_QUOTA} rules of one direction and address "
                   f"family, AWS's default quota of rules per security group ({', '.join(crowded[:5])}"
                   f"{' …' if len(crowded) > 5 else ''}): authorizing the new rules would stop with "
                   "RulesPerSecurityGroupLimitExceeded. Lower the rule budget, or raise the quota first.")
    return out


#: AWS's default quota of inbound, and of outbound, rules per security group, counted apart for IPv4 and
#: IPv6 ("Inbound or outbound rules per security group", Amazon VPC quotas).
RULES_QUOTA = 60


def _over_quota(rules: pd.DataFrame) -> list[str]:
    """``group direction family (n rules)`` for each group the plan would take past `RULES_QUOTA`.

    A rule naming a group or a prefix list is counted once for each family, a lower bound (AWS counts a
    prefix list as its maximum entries).
    """
    family = rules["peer"].astype(str).map(lambda p: "IPv6" if ":" in p else "IPv4")
    per_family = rules.assign(family=family)
    both = rules["peer_kind"] != "cidr"
    per_family = pd.concat([per_family[~both], rules[both].assign(family="IPv4"), rules[both].assign(family="IPv6")])
    counts = per_family.groupby(["group_id", "is_egress", "family"]).size()
    return [f"{gid} {'egress' if egress else 'ingress'} {fam} ({n} rules)"
            for (gid, egress, fam), n in counts.items() if n > RULES_QUOTA]


def _untracked(inv: Inventory, rule_ids: set[str]) -> int:
    """How many of ``rule_ids`` are one half of a pair of rules whose flows the group does not track.

    AWS does not track a TCP or UDP flow that a rule allows from (to) 0.0.0.0/0 or ::/0 when a rule of the
    other direction allows all its responses: the same protocol (or -1), the same peer, every port. Either
    rule of such a pair, revoked or replaced, cuts those flows at once: the request's rule, or the one that
    lets the responses through.
    """
    r = inv.rules
    world = list(r[r["peer"].isin(WORLD) & r["protocol"].isin((-1, 6, 17))].itertuples(index=False))
    ig = inv.interface_groups
    ifaces_of = ig.groupby("group_id")["interface_id"].apply(set).to_dict()
    groups_of = ig.groupby("interface_id")["group_id"].apply(set).to_dict()
    by_group = defaultdict(list)
    for o in world:
        by_group[o.group_id].append(o)

    def all_ports(rule) -> bool:
        return rule.protocol == -1 or _ports(int(rule.protocol), int(rule.from_port), int(rule.to_port)) == (0, 65535)

    count = 0
    for rule in (w for w in world if w.rule_id in rule_ids):
        # The groups beside this rule's group on any of its interfaces (its own included).
        groups = set().union(*(groups_of[i] for i in ifaces_of.get(rule.group_id, ())))
        count += any(o.is_egress != rule.is_egress and o.peer == rule.peer
                     and (o.protocol == rule.protocol or -1 in (o.protocol, rule.protocol))
                     and (all_ports(o) or all_ports(rule)) for g in groups for o in by_group[g])
    return count


# --- verify ------------------------------------------------------------------------------------------------


def verify(analysis: Analysis, plan: Plan) -> pd.DataFrame:
    """The observed conversations the plan would lose, found by re-running the attribution with its rules.

    Every accepted conversation that some rule explained with evidence the plan keeps (``established``,
    ``inferred``, and ``attempted`` with ``keep_attempted``; one-way ICMP always, see `kept_sql`) is looked
    up, by (interface, protocol, local port, peer, peer port), in `Analysis.reanalyze` with
    ``plan.inventory`` on the same records. It is lost when no rule explains it there, when its direction
    changed (flag-less traffic takes its direction from the rules; a changed direction is another rule's
    traffic), or when its direction was a guess that rules of both directions allowed and only one
    direction still allows it (it may run the other way).

    Parameters
    ----------
    analysis : Analysis
    plan : Plan
        From `propose` on ``analysis``.

    Returns
    -------
    pandas.DataFrame
        One row per lost conversation (`LOST_COLUMNS`, ``why`` says how); no rows means the plan keeps
        every one of them on these records. ``attrs["checked"]`` and ``attrs["lost"]`` are the counts.
    """
    before = analysis.con.sql(f"""
        SELECT c.interface_id, c.direction, c.protocol, c.local_port, c.peer_addr AS peer, c.peer_port, c.port,
               c.evidence, r.rules AS rules_before, c.guessed
        FROM classified c
        JOIN conversation_rule_list r USING (conversation_id)
        WHERE {kept_sql(plan.kept_evidence)}
    """).df()
    again = analysis.reanalyze(plan.inventory)
    try:
        again.con.register("_before", before)
        lost = again.con.sql("""
            WITH after AS (
                SELECT c.interface_id, c.protocol, c.local_port, c.peer_addr, c.peer_port, c.direction, c.n_rules,
                       c.guessed, coalesce(r.rules, '') AS rules
                FROM classified c
                LEFT JOIN conversation_rule_list r USING (conversation_id)
                WHERE c.accepted
            )
            SELECT b.*, coalesce(a.rules, '') AS rules_after,
                   CASE WHEN a.interface_id IS NULL THEN 'not in the re-run'
                        WHEN a.n_rules = 0 THEN 'no proposed or kept rule allows it'
                        WHEN a.direction <> b.direction THEN 'direction changed: ' || b.direction || ' -> '
                                                             || a.direction
                        ELSE 'its direction is a guess (no handshake flags, and rules of both directions allowed '
                             || 'it): no proposed or kept rule allows it the other way' END AS why
            FROM _before b
            LEFT JOIN after a ON a.interface_id = b.interface_id AND a.protocol = b.protocol
                AND a.local_port IS NOT DISTINCT FROM b.local_port AND a.peer_addr = b.peer
                AND a.peer_port IS NOT DISTINCT FROM b.peer_port
            WHERE a.interface_id IS NULL OR a.n_rules = 0 OR a.direction <> b.direction
                OR (b.guessed AND NOT a.guessed)
            ORDER BY b.interface_id, b.direction, b.protocol, b.port, b.peer, b.peer_port
        """).df()
        again.con.unregister("_before")
    finally:
        again.close()
    lost = lost[LOST_COLUMNS].reset_index(drop=True)
    lost.attrs["checked"] = len(before)
    lost.attrs["lost"] = len(lost)
    return lost


# --- Reviewable output -------------------------------------------------------------------------------------


def to_table(plan: Plan) -> pd.DataFrame:
    """The actions, one row per rule of the inventory (a copy, for writing or showing)."""
    return plan.actions.copy()


def _one_line(text: object) -> str:
    """Text safe inside a ``#`` comment: no line breaks or other control characters (AWS names are free text)."""
    return re.sub(r"[\x00-\x1f\x7f\u2028\u2029\x85]", " ", str(text))


def _permission(p) -> dict:
    """One proposed rule as an ``IpPermission`` of ``authorize-security-group-ingress|egress``."""
    perm: dict = {"IpProtocol": p.protocol}
    if p.protocol in ("tcp", "udp", "icmp", "icmpv6"):
        perm["FromPort"], perm["ToPort"] = int(p.from_port), int(p.to_port)
    desc = p.description
    if p.peer_kind == "group":
        perm["UserIdGroupPairs"] = [{"GroupId": p.peer, "Description": desc}]
    elif p.peer_kind == "prefix_list":
        perm["PrefixListIds"] = [{"PrefixListId": p.peer, "Description": desc}]
    elif ":" in p.peer:
        perm["Ipv6Ranges"] = [{"CidrIpv6": p.peer, "Description": desc}]
    else:
        perm["IpRanges"] = [{"CidrIp": p.peer, "Description": desc}]
    return perm


def _header(plan: Plan) -> list[str]:
    """What the plan cannot prove, as ``#`` comment lines (for the shell script and the Terraform file)."""
    return ["# Not proved by the flow logs:"] + [f"#   - {_one_line(x)}" for x in plan.limits]


def to_aws_cli(plan: Plan) -> str:
    """The plan as AWS CLI commands, per group: authorize the new rules first, then revoke the old ones.

    Adding before revoking means nothing that works is cut in between. sgaudit never runs these; the text
    says so. Values are JSON-encoded and shell-quoted.
    """
    out = ["#!/bin/sh",
           "# sgaudit tightening plan: AWS CLI commands for review. sgaudit NEVER runs these commands and never",
           "# calls an AWS API that changes anything. Read them, run `sgaudit plan` again on fresh logs if in",
           "# doubt, then run them yourself. Per group: the new rules are authorized first, then the old ones",
           "# revoked, so that nothing working is cut in between.",
           *_header(plan), "set -eu", ""]
    names = dict(zip(plan.actions["group_id"], plan.actions["group_name"], strict=True))
    prop = plan.proposed_rules
    gone = plan.actions[plan.actions["action"].isin(["replace", "remove"])]
    # One pass over each table, not a filter per group: a big account has thousands of groups.
    new_of = {key: rows for key, rows in prop.groupby(["group_id", "is_egress"], sort=False)}
    old_of = {key: list(rows) for key, rows in gone.groupby(["group_id", "direction"], sort=False)["rule_id"]}
    for gid in sorted(set(prop["group_id"]) | set(gone["group_id"])):
        out.append(f"# {_one_line(gid)} ({_one_line(names.get(gid, ''))})")
        for egress, word in ((False, "ingress"), (True, "egress")):
            if (gid, egress) in new_of:
                perms = json.dumps([_permission(p) for p in new_of[gid, egress].itertuples(index=False)])
                out.append(f"aws ec2 authorize-security-group-{word} --group-id {shlex.quote(gid)} "
                           f"--ip-permissions {shlex.quote(perms)}")
        for word in ("ingress", "egress"):
            if (gid, word) in old_of:
                ids = " ".join(shlex.quote(r) for r in old_of[gid, word])
                out.append(f"aws ec2 revoke-security-group-{word} --group-id {shlex.quote(gid)} "
                           f"--security-group-rule-ids {ids}")
        out.append("")
    return "\n".join(out)


def _hcl(value: object) -> str:
    """A Terraform (HCL) string literal: quotes, backslashes, control characters and templates escaped."""
    s = str(value).replace("\\", "\\\\").replace('"', '\\"')
    s = s.replace("${", "$${").replace("%{", "%%{")
    s = s.replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
    s = re.sub(r"[\x00-\x1f\x7f]", lambda m: f"\\u{ord(m.group()):04x}", s)
    return f'"{s}"'


def to_terraform(plan: Plan) -> str:
    """The new rules as ``aws_vpc_security_group_ingress_rule`` / ``_egress_rule`` resources, and what to remove.

    Apply the new resources first, then remove the listed rules (from your configuration, or with the
    revoke commands of `to_aws_cli`). sgaudit never applies anything.
    """
    out = ["# sgaudit tightening plan (Terraform, AWS provider 5 or later). sgaudit never applies this: review it,",
           "# apply these new rules first, and only then remove the rules listed at the end.",
           *_header(plan), ""]
    for p in plan.proposed_rules.itertuples(index=False):
        kind = "egress" if p.is_egress else "ingress"
        name = re.sub(r"[^A-Za-z0-9_]", "_", f"sgaudit_{p.rule_id}")
        body = [("security_group_id", _hcl(p.group_id)), ("description", _hcl(p.description)),
                ("ip_protocol", _hcl(p.protocol))]
        if p.protocol in ("tcp", "udp", "icmp", "icmpv6"):
            body += [("from_port", str(int(p.from_port))), ("to_port", str(int(p.to_port)))]
        peer_attr = {"group": "referenced_security_group_id", "prefix_list": "prefix_list_id"}.get(
            p.peer_kind, "cidr_ipv6" if ":" in p.peer else "cidr_ipv4")
        body.append((peer_attr, _hcl(p.peer)))
        width = max(len(k) for k, _ in body)
        out.append(f'resource "aws_vpc_security_group_{kind}_rule" "{name}" {{')
        out += [f"  {k.ljust(width)} = {v}" for k, v in body]
        out += ["}", ""]
    gone = plan.actions[plan.actions["action"].isin(["replace", "remove"])]
    out.append("# Rules to remove once the rules above are in place:" if len(gone) else "# No rule to remove.")
    for g in gone.itertuples(index=False):
        out.append(f"#   {_one_line(g.rule_id)} of {_one_line(g.group_id)} ({g.action}): {_one_line(g.old)}")
    return "\n".join(out) + "\n"


def _md(value: object) -> str:
    """A Markdown table cell that shows AWS's free text as text: Markdown syntax and HTML escaped, one line.

    A group name may hold ``[text](https://…)`` or ``![](…)`` (AWS allows those characters): unescaped, a
    reviewer's Markdown viewer would show a live link or fetch a remote image.
    """
    return md_escape(value)


def to_markdown(plan: Plan, lost: pd.DataFrame | None = None) -> str:
    """The plan for a reviewer: the re-check's result, what it cannot prove, every action and the new rules."""
    a = plan.actions
    counts = a["action"].value_counts()
    out = ["# Security group tightening plan", "",
           "sgaudit proposes; it never changes anything in AWS. Apply the new rules before revoking the old ones.", "",
           f"- rules: {len(a)}: {counts.get('keep', 0)} keep, {counts.get('replace', 0)} replace, "
           f"{counts.get('remove', 0)} remove",
           f"- proposed rules: {len(plan.proposed_rules)} (budget {plan.rule_budget} per group and direction)",
           f"- conversations kept: evidence {', '.join(plan.kept_evidence)}"]
    if lost is not None:
        checked = lost.attrs.get("checked", "?")
        verdict = ("none lost: proved on these records" if len(lost) == 0
                   else f"**{len(lost)} lost: do not apply this plan**")
        out.append(f"- re-check with the proposed rules on the same records: {checked} conversation(s), {verdict}")
    out += ["", "## What this cannot prove", ""] + [f"- {_md(s)}" for s in plan.limits]
    if lost is not None and len(lost):
        out += ["", "## Lost conversations", "", _md_table(lost, LOST_COLUMNS)]
    out += ["", "## Actions", "", _md_table(a, ["group_id", "group_name", "rule_id", "status", "action", "old", "new",
                                                 "carried", "reason"])]
    out += ["", "## Proposed rules", "", _md_table(plan.proposed_rules, PROPOSED_COLUMNS)]
    return "\n".join(out) + "\n"


def _md_table(df: pd.DataFrame, cols: list[str]) -> str:
    if not len(df):
        return "(none)"
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_md(v) for v in row) + " |" for row in df[cols].itertuples(index=False)]
    return "\n".join(lines)


def limits_table(plan: Plan) -> pd.DataFrame:
    """What the plan cannot prove, one sentence a row, for a table in a notebook or report."""
    return pd.DataFrame({"not proved by the flow logs": plan.limits})
