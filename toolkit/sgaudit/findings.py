"""What an auditor should act on, one row per finding, each told in one sentence.

A finding names one resource (a rule, a group, an interface) and one reason: a rule that nothing used in
the window, a rule only scanners reached, a rule open to the whole internet, a rule that another rule
already covers, a group on no interface, traffic that no rule of the snapshot explains. The sentence
carries the numbers behind it (window length, coverage, peers, connections), the way prowler writes
"Security group X (sg-…) has SSH port 22 open to the Internet."

Static checks (what a rule allows) and observed ones (what flow logs show it carried) are combined: a
world-open rule that carried nothing but scanners is the clearest case for removal; one that carries real
traffic is to be tightened to its peers (`sgaudit plan`), not removed. The severity and exposure rules are
written down in ``docs/decisions.md`` ("Findings").

Every string from AWS (names, descriptions) stays raw in the DataFrame; views escape it, and so does
`to_markdown`.
"""

from __future__ import annotations

import functools
import ipaddress
import itertools
from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pandas as pd

from . import summaries
from .errors import SgauditError
from .output import md_escape
from .usage import ALL_ACCEPTED, NONE_ACCEPTED, SOME_ACCEPTED, accepted_share

if TYPE_CHECKING:
    from .analysis import Analysis

#: Most severe first; `findings` sorts by this order.
SEVERITIES = ("critical", "high", "medium", "low", "info")

#: The columns a report shows, in this order: the sentence names the group, rule or interface and gives the
#: numbers, so the IDs, the evidence and the ranking figures stay in the files `sgaudit findings` writes
#: (a table of every column was wider than any screen).
REPORT_COLUMNS = ["severity", "title", "group_name", "sentence", "fix", "control"]

#: Kind → what it means, in one line.
KINDS = {
    "all_traffic_rule": "an ingress rule allows every protocol and port (protocol -1); egress to anywhere is "
                        "AWS's default and is reported as info",
    "admin_port_open_to_world": "an ingress rule opens a remote administration port (SSH 22, RDP 3389) to "
                                "0.0.0.0/0 or ::/0",
    "database_port_open_to_world": "an ingress rule opens a database port to 0.0.0.0/0 or ::/0",
    "world_open_ingress": "an ingress rule allows 0.0.0.0/0 or ::/0 on some other port",
    "wide_port_range": "a TCP/UDP rule allows more than 100 ports, or all of them",
    "wide_cidr": "an ingress rule allows a CIDR wider than /16 (IPv4) or /48 (IPv6) that is not the whole internet",
    "unused_rule": "no conversation matched the rule although an interface of its group was observed",
    "attempted_only_rule": "the rule let through only attempts: one-way traffic or SYNs answered by RST",
    "redundant_rule": "every conversation the rule carried is also allowed by another rule of the interface",
    "shadowed_rule": "another rule of the same group and direction allows everything this rule allows",
    "unattached_group": "the security group is on no network interface",
    "unobserved_group": "no interface of the group sent flow logs in the window: no evidence either way",
    "default_group_in_use": "a VPC default security group is attached to network interfaces",
    "default_group_has_rules": "a VPC default security group has rules (it should allow nothing)",
    "unexplained_traffic": "an interface accepted conversations that no rule of the snapshot allows",
    "rejected_scan": "REJECT records at an interface, per direction, over its ports (EC2.19 ports apart)",
}

#: The columns of `findings`, in order.
COLUMNS = ["severity", "kind", "group_id", "group_name", "rule_id", "interface_id", "title", "sentence",
           "evidence", "fix", "control", "exposure", "observed_use"]

#: Remote administration ports and their AWS Security Hub controls.
ADMIN_PORTS = {22: "EC2.13", 3389: "EC2.14"}
#: The ports of Security Hub control EC2.19 ("security groups should not allow unrestricted access to ports
#: with high risk").
HIGH_RISK_PORTS = frozenset({20, 21, 22, 23, 25, 110, 135, 143, 445, 1433, 1434, 3000, 3306, 3389, 4333, 5000,
                             5432, 5500, 5601, 8080, 8088, 8888, 9200, 9300})
#: Database ports. Those outside EC2.19's list still fail EC2.18 when open to the world.
DATABASE_PORTS = {1433: "SQL Server", 1434: "SQL Server browser", 1521: "Oracle", 3306: "MySQL", 4333: "mSQL",
                  5432: "PostgreSQL", 6379: "Redis", 9200: "Elasticsearch", 9300: "Elasticsearch",
                  27017: "MongoDB"}
#: Ports EC2.18 authorises by default for unrestricted ingress.
WEB_PORTS = frozenset({80, 443})
#: A TCP/UDP range with more ports than this is "wide".
WIDE_PORT_RANGE = 100
#: A CIDR with a shorter prefix than these is "wide" (and /0 is "the world", reported apart).
WIDE_IPV4_PREFIX = 16
WIDE_IPV6_PREFIX = 48
#: Exposure counts an IPv6 /64 as one address (one subnet, the unit a host lives in), capped at the size of
#: the IPv4 internet, so that ::/0 and 0.0.0.0/0 weigh the same and a /48 weighs as a /16.
WORLD_ADDRESSES = 2**32
ALL_PORTS = 65536

_RANK = {s: i for i, s in enumerate(SEVERITIES)}
_PROTOCOL_NAMES = {6: "TCP", 17: "UDP", 1: "ICMP", 58: "ICMPv6"}


def findings(analysis: Analysis) -> pd.DataFrame:
    """Every finding of an analysis, most severe and most exposed first.

    Parameters
    ----------
    analysis : Analysis
        A finished `sgaudit.analyze` result.

    Returns
    -------
    pandas.DataFrame
        One row per finding, columns `COLUMNS`: ``severity`` (one of `SEVERITIES`), ``kind`` (a key of
        `KINDS`), ``group_id``, ``group_name``, ``rule_id``, ``interface_id`` (empty where not applicable),
        ``title``, ``sentence`` (one sentence naming the resource and the reason, with the numbers),
        ``evidence``, ``fix``, ``control`` (AWS Security Hub control or empty), ``exposure`` (addresses ×
        ports the rule allows; see ``docs/decisions.md``) and ``observed_use`` (accepted conversations).
        Sorted by severity, exposure (descending), then group, rule, interface and kind.
    """
    ctx = _Context.build(analysis, summaries.rules(analysis), summaries.world_open(analysis))
    rows: list[dict] = []
    for r in ctx.rule_rows:
        if r.status == "unattached":
            continue  # the group's finding covers its rules: on no interface, they expose nothing today
        rows += _permissive(ctx, r)
        rows += _status(ctx, r)
    shadowed = _shadowed(ctx)
    rows += shadowed
    # A rule already reported as shadowed is not reported as redundant too: the static finding says more.
    rows += _redundant(ctx, analysis, {f["rule_id"] for f in shadowed})
    rows += _groups(ctx)
    rows += _unexplained(ctx, analysis.unexplained)
    rows += _rejected(ctx, analysis, analysis.rejected)
    df = pd.DataFrame(rows, columns=COLUMNS)
    for col in COLUMNS:
        if col not in ("exposure", "observed_use"):
            df[col] = df[col].fillna("").astype(str)
    df["exposure"] = pd.to_numeric(df["exposure"]).fillna(0).astype("int64")
    df["observed_use"] = pd.to_numeric(df["observed_use"]).fillna(0).astype("int64")
    df["_rank"] = df["severity"].map(_RANK)
    df = df.sort_values(["_rank", "exposure", "group_id", "rule_id", "interface_id", "kind"],
                        ascending=[True, False, True, True, True, True], kind="stable")
    return df.drop(columns="_rank").reset_index(drop=True)


def counts(df: pd.DataFrame) -> str:
    """``"37 findings: 1 critical, 1 high, 4 medium, 14 low, 17 info"`` (severities with none left out)."""
    by_severity = df["severity"].value_counts()
    parts = [f"{by_severity[s]:,} {s}" for s in SEVERITIES if s in by_severity]
    return f"{len(df):,} finding{'' if len(df) == 1 else 's'}" + (": " + ", ".join(parts) if parts else "")


# --- context -------------------------------------------------------------------------------------------

@dataclass
class _Context:
    """What every check needs, computed once: rules with their exposure, coverage per group, the window."""

    rules: pd.DataFrame
    window: str
    group_ifaces: dict[str, list[str]]
    observed: set[str]
    iface_groups: dict[str, list[str]]
    group_names: dict[str, str]
    unresolved: dict[str, str]
    prefix_lists: dict[str, list[str]]
    guessed: dict[str, int]
    #: `rules` as tuples, read once: every per-rule check walks them.
    rule_rows: list

    @classmethod
    def build(cls, analysis: Analysis, rules: pd.DataFrame, world: pd.DataFrame) -> _Context:
        inv = analysis.inventory
        extra = inv.rules[["rule_id", "protocol", "peer_kind"]].rename(columns={"protocol": "proto_num"})
        df = rules.merge(extra, on="rule_id", how="left")
        df = df.merge(world[["rule_id", "attempt_peers"]], on="rule_id", how="left")
        df["attempt_peers"] = df["attempt_peers"].fillna(0).astype("int64")
        members = inv.interface_groups.merge(inv.addresses, on="interface_id")
        members_per_group = members.groupby("group_id")["address"].nunique().to_dict()
        unresolved = inv.unresolved_rules()
        list_sizes = {pl: _list_size(cidrs) for pl, cidrs in inv.prefix_lists.items()}
        df["addresses"] = [_addresses(kind, peer, list_sizes, members_per_group)
                           for kind, peer in zip(df["peer_kind"], df["peer"], strict=True)]
        df["port_count"] = [_port_count(int(p), int(f), int(t))
                            for p, f, t in zip(df["proto_num"], df["from_port"], df["to_port"], strict=True)]
        df["exposure"] = df["addresses"] * df["port_count"]
        df["world"] = df["rule_id"].isin(inv.world_rules())
        lo, hi = analysis.window
        return cls(
            rules=df,
            window=summaries.duration(hi - lo) if lo is not None and hi is not None else "",
            group_ifaces=inv.interface_groups.groupby("group_id")["interface_id"].apply(sorted).to_dict(),
            observed=set(analysis.observed),
            iface_groups=inv.interface_groups.groupby("interface_id")["group_id"].apply(sorted).to_dict(),
            group_names=dict(zip(inv.groups["group_id"], inv.groups["group_name"], strict=True)),
            unresolved=unresolved,
            guessed=_guessed(analysis),
            prefix_lists=inv.prefix_lists,
            rule_rows=list(df.itertuples(index=False)),
        )

    def in_window(self) -> str:
        """"in the 4 h 59 min window", or what to say when there were no records."""
        return f"in the {self.window} window" if self.window else "with no records in the window"

    def coverage(self, group_id: str) -> tuple[int, int, list[str]]:
        """(observed interfaces, interfaces, the observed ones) of a group."""
        ifaces = self.group_ifaces.get(group_id, [])
        seen = [i for i in ifaces if i in self.observed]
        return len(seen), len(ifaces), seen


def _guessed(analysis: Analysis) -> dict[str, int]:
    """Rule ID → accepted conversations it would carry the other way, for those whose direction is a guess.

    A conversation without handshake flags that rules of both directions allow gets its direction from its
    ports (SPEC), which can be wrong; a rule of the other direction may be what it really needs
    (`conversations.GUESSED_SQL`, and `sgaudit plan` keeps both ways).
    """
    df = analysis.con.sql("SELECT rule_id, count(DISTINCT conversation_id) AS n FROM guessed_other_way "
                          "GROUP BY rule_id").df()
    return dict(zip(df["rule_id"], df["n"].astype(int), strict=True))


def _addresses(kind: str, peer: str, list_sizes: dict[str, int], members: dict[str, int]) -> int:
    """How many addresses a rule's peer admits, IPv6 counted in /64s (see `WORLD_ADDRESSES`).

    ``list_sizes`` is `_list_size` of every prefix list, ``members`` the addresses of each group.
    """
    if kind == "cidr":
        return _cidr_size(peer)
    if kind == "prefix_list":
        return list_sizes.get(peer, 0)
    return int(members.get(peer, 0))  # a referenced group: its members' private addresses, 0 when unknown


def _list_size(cidrs: list[str]) -> int:
    """How many addresses a prefix list's entries admit, as `_addresses` counts them."""
    return min(WORLD_ADDRESSES, sum(_cidr_size(c) for c in cidrs))


@functools.lru_cache(maxsize=1 << 16)
def _network(cidr: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """A CIDR of the snapshot as a network; cached, as a big account's prefix lists are read once per rule."""
    return ipaddress.ip_network(cidr.strip(), strict=False)


def _cidr_size(cidr: str) -> int:
    net = _network(cidr)
    if net.version == 4:
        return net.num_addresses
    return min(WORLD_ADDRESSES, 2 ** max(0, 64 - net.prefixlen))


def _port_count(protocol: int, from_port: int, to_port: int) -> int:
    # Protocol -1 and "all ports" weigh as 65,536 ports; port-less protocols (ICMP, ESP…) as one.
    if protocol == -1 or (protocol in (6, 17) and from_port == -1):
        return ALL_PORTS
    if protocol in (6, 17):
        return max(1, to_port - from_port + 1)
    return 1


# --- phrases -------------------------------------------------------------------------------------------

def _plural(n: int, word: str, many: str | None = None) -> str:
    return f"{n:,} {word if n == 1 else (many or word + 's')}"


def _what(r) -> str:
    """What a rule allows, as an engineer says it: ``TCP 22``, ``TCP 8000-8100``, ``all traffic``."""
    p = int(r.proto_num)
    if p == -1:
        return "all traffic"
    name = _PROTOCOL_NAMES.get(p, f"protocol {p}")
    if p in (6, 17):
        if r.from_port == -1 or (r.from_port == 0 and r.to_port == 65535):
            return f"all {name} ports"
        return f"{name} {r.from_port}" if r.from_port == r.to_port else f"{name} {r.from_port}-{r.to_port}"
    if p in (1, 58) and r.from_port != -1:
        return f"{name} type {r.from_port}" + (f" code {r.to_port}" if r.to_port != -1 else "")
    return name


def _peer(r) -> str:
    if r.peer_kind == "prefix_list":
        return f"prefix list {r.peer}" + (", whose entries cover the whole internet" if r.world else "")
    if r.peer_kind == "group":
        return "its own members" if r.peer == r.group_id else f"members of {r.peer}"
    return r.peer


def _rule(r) -> str:
    """``Rule sgr-… of sg-… (web) allows TCP 22 from 0.0.0.0/0``."""
    name = f" ({r.group_name})" if r.group_name else ""
    way = "to" if r.direction == "egress" else "from"
    return f"Rule {r.rule_id} of {r.group_id}{name} allows {_what(r)} {way} {_peer(r)}"


def _revoke(r) -> str:
    return (f"aws ec2 revoke-security-group-{r.direction} --group-id {r.group_id} "
            f"--security-group-rule-ids {r.rule_id}")


def _evidence(ctx: _Context, r) -> str:
    seen, total, _ = ctx.coverage(r.group_id)
    parts = [f"status {r.status}", f"connections {r.connections:,}", f"peers {r.peers:,}"]
    if r.ports:
        parts.append(f"ports {r.ports}")
    if pd.notna(r.last_seen):
        parts.append(f"last seen {r.last_seen.strftime('%Y-%m-%dT%H:%M:%SZ')}")
    parts += [f"window {ctx.window or 'empty'}", f"interfaces observed {seen}/{total}",
              f"exposure {_plural(int(r.addresses), 'address', 'addresses')} x {_plural(int(r.port_count), 'port')}"]
    return "; ".join(parts)


def _unanswered(r) -> str:
    """How an only-attempted rule's conversations went unanswered, in the words of its protocol."""
    p = int(r.proto_num)
    if p == 6:
        return "every one was answered with RST or nothing"
    if p == -1:
        return "none was answered (one-way traffic, or SYNs answered by RST or nothing)"
    if p in (1, 58):
        return ("nothing came back (one-way ICMP, as Path MTU Discovery's messages are by design, or pings nobody "
                "answered)")
    return "nothing came back (one-way traffic, which some services such as statsd or syslog expect)"


def _use(ctx: _Context, r) -> str:
    """What the window showed of a rule, as the second half of a sentence."""
    if r.status == "used":
        ports = f" on port {r.ports}" if r.ports and "," not in r.ports else (
            f" on ports {r.ports.replace(',', ', ')}" if r.ports else "")
        way = "to" if r.direction == "egress" else "from"
        return (f"{ctx.in_window()} it carried {_plural(r.connections, 'connection')} {way} "
                f"{_plural(r.peers, 'address', 'addresses')}{ports}")
    if r.status == "attempted":
        return (f"{ctx.in_window()} only {_plural(r.peers, 'address', 'addresses')} reached it "
                f"({_plural(r.connections, 'connection')}) and {_unanswered(r)}")
    if r.status == "unused":
        seen, total, ids = ctx.coverage(r.group_id)
        where = (f"the group's interface {ids[0]} was observed" if total == 1
                 else f"{seen} of the group's {total} interfaces were observed")
        return f"{ctx.in_window()} nothing matched it although {where}"
    return f"no interface of the group sent flow logs {ctx.in_window()}, so its use is unknown"


def _is_world(r) -> bool:
    """Whether the rule admits the whole internet: 0.0.0.0/0, ::/0, or a prefix list covering either."""
    return bool(r.world)


def _wide(r, prefix_lists: dict[str, list[str]]) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    """The rule's CIDR, or its prefix list's widest entry, when wider than the thresholds but not the world."""
    if _is_world(r) or r.peer_kind not in ("cidr", "prefix_list"):
        return None
    cidrs = [r.peer] if r.peer_kind == "cidr" else prefix_lists.get(r.peer, [])
    nets = [_network(c) for c in cidrs]
    wide = [n for n in nets if n.prefixlen < (WIDE_IPV4_PREFIX if n.version == 4 else WIDE_IPV6_PREFIX)]
    return min(wide, key=lambda n: (n.prefixlen, n.version, n)) if wide else None


def _ports_in(r, ports) -> list[int]:
    """Which of ``ports`` the rule opens (TCP/UDP, or every protocol)."""
    p = int(r.proto_num)
    if p == -1 or (p in (6, 17) and r.from_port == -1):
        return sorted(ports)
    if p in (6, 17):
        return sorted(x for x in ports if r.from_port <= x <= r.to_port)
    return []


def _finding(severity: str, kind: str, title: str, sentence: str, evidence: str, fix: str, *, group_id: str = "",
             group_name: str = "", rule_id: str = "", interface_id: str = "", control: str = "",
             exposure: int = 0, observed_use: int = 0) -> dict:
    return {"severity": severity, "kind": kind, "group_id": group_id, "group_name": group_name, "rule_id": rule_id,
            "interface_id": interface_id, "title": title, "sentence": sentence, "evidence": evidence, "fix": fix,
            "control": control, "exposure": exposure, "observed_use": observed_use}


def _rule_finding(ctx: _Context, r, severity: str, kind: str, title: str, sentence: str, fix: str,
                  control: str = "") -> dict:
    evidence = _evidence(ctx, r)
    if r.rule_id in ctx.unresolved:
        evidence += f"; {ctx.unresolved[r.rule_id]}"
    return _finding(severity, kind, title, sentence, evidence, fix, group_id=r.group_id,
                    group_name=r.group_name, rule_id=r.rule_id, control=control, exposure=int(r.exposure),
                    observed_use=int(r.connections))


# --- rules: what they allow ----------------------------------------------------------------------------

def _permissive(ctx: _Context, r) -> list[dict]:
    """Static checks of one rule: all traffic, world-open ports, wide port ranges, wide CIDRs."""
    out = []
    world, wide = _is_world(r), _wide(r, ctx.prefix_lists)
    not_used = r.status in ("attempted", "unused")
    # `sgaudit plan` narrows a world-open rule's ports but keeps its peer: a window's internet addresses are
    # not who needs it, and scanners complete handshakes too.
    tighten = ("restrict it to the addresses that should reach it and the ports in use (`sgaudit plan` narrows "
               "the ports; `--narrow-internet` lists the internet addresses seen, scanners included)"
               if world else "restrict it to the observed peers and ports (see `sgaudit plan`)")
    remove = f"remove the rule ({_revoke(r)})"
    act = remove if not_used else tighten
    if r.direction == "ingress" and world:
        out.append(_world_finding(ctx, r, not_used, act))
    if r.direction == "egress" and int(r.proto_num) == -1 and world:
        # A new group's allow-all outbound rule: AWS's default, a tightening opportunity, not an exposure.
        out.append(_rule_finding(
            ctx, r, "info", "all_traffic_rule", "all outbound traffic allowed (AWS default)",
            f"{_rule(r)}, AWS's default outbound rule; {_use(ctx, r)}.",
            "keep it, or restrict outbound traffic to the observed ports and peers (see `sgaudit plan`)"
            # A rule that conversations of guessed direction would need the other way: the unused_rule
            # finding says to keep it narrowed to them, as the plan does; this one must not say remove.
            if r.status == "used" or r.rule_id in ctx.guessed
            else f"remove it if the hosts need no outbound traffic ({_revoke(r)})"))
    if r.direction == "ingress" and int(r.proto_num) == -1 and not world:
        if wide is not None:
            severity, why = "high", "a wide address range"
        elif r.peer_kind == "group" and r.peer == r.group_id:
            severity, why = "info", "its own members (the default group's pattern)"
        else:
            severity, why = "low", "a narrow peer"
        out.append(_rule_finding(
            ctx, r, severity, "all_traffic_rule", f"all traffic allowed from {why}",
            f"{_rule(r)}, every protocol and port; {_use(ctx, r)}.", act))
    if int(r.proto_num) in (6, 17) and r.port_count > WIDE_PORT_RANGE:
        if r.direction == "egress":
            severity = "info"
        else:
            severity = "high" if world else ("medium" if wide is not None else "low")
        out.append(_rule_finding(
            ctx, r, severity, "wide_port_range", f"{_plural(int(r.port_count), 'port')} open",
            f"{_rule(r)}, {r.port_count:,} ports where a service needs a few; {_use(ctx, r)}.",
            f"narrow it to the ports in use ({r.ports}): see `sgaudit plan`" if r.ports else act))
    if r.direction == "ingress" and wide is not None:
        public = wide.is_global
        out.append(_rule_finding(
            ctx, r, "medium" if public else "low", "wide_cidr", f"/{wide.prefixlen} source range",
            f"{_rule(r)}, {r.addresses:,} {'public' if public else 'non-public'} "
            f"{'addresses' if wide.version == 4 else '/64 subnets'} (wider than /"
            f"{WIDE_IPV4_PREFIX if wide.version == 4 else WIDE_IPV6_PREFIX}); {_use(ctx, r)}.", act))
    return out


def _world_finding(ctx: _Context, r, not_used: bool, act: str) -> dict:
    """The one world-open finding of an ingress rule from 0.0.0.0/0 or ::/0: the most specific kind."""
    admin = _ports_in(r, ADMIN_PORTS)
    database = _ports_in(r, DATABASE_PORTS)
    risky = _ports_in(r, HIGH_RISK_PORTS)
    use = _use(ctx, r)
    if int(r.proto_num) == -1:
        return _rule_finding(ctx, r, "critical", "all_traffic_rule", "all traffic allowed from the internet",
                             f"{_rule(r)}, every protocol and port open to the internet; {use}.",
                             f"remove the rule ({_revoke(r)}) and allow only the ports in use"
                             + (f" ({r.ports})" if r.ports else ""), "EC2.18, EC2.19")
    if admin:
        names = " and ".join({22: "SSH (22)", 3389: "RDP (3389)"}[p] for p in admin)
        fix = (f"{act}; reach the hosts through AWS Systems Manager Session Manager, EC2 Instance Connect "
               "Endpoint or a VPN instead of from the internet")
        return _rule_finding(ctx, r, "critical" if not_used else "high", "admin_port_open_to_world",
                             f"{names} open to the internet", f"{_rule(r)}, exposing {names}; {use}.", fix,
                             ", ".join(ADMIN_PORTS[p] for p in admin))
    if database:
        names = ", ".join(f"{DATABASE_PORTS[p]} ({p})" for p in database)
        control = "EC2.19" if set(database) & HIGH_RISK_PORTS else "EC2.18"
        return _rule_finding(ctx, r, "critical" if not_used else "high", "database_port_open_to_world",
                             f"{names} open to the internet", f"{_rule(r)}, exposing {names}; {use}.",
                             f"{act}; a database should be reached from the application's security group",
                             control)
    if int(r.proto_num) in (1, 58):
        # ICMP from anywhere is how Path MTU Discovery reaches a host (one-way, from routers on the path):
        # a look, not an exposure; only an unused rule is worth removing.
        unused = r.status == "unused"
        fix = act if unused else ("keep it if the hosts need Path MTU Discovery (ICMP type 3 code 4, ICMPv6 "
                                  "type 2) or to answer pings from anywhere; otherwise restrict it")
        return _rule_finding(ctx, r, "low" if unused else "info", "world_open_ingress",
                             "ICMP open to the internet", f"{_rule(r)}; {use}.", fix)
    ports = set(range(int(r.from_port), int(r.to_port) + 1)) if int(r.proto_num) in (6, 17) else set()
    if risky:
        severity, control, title = ("high" if not_used else "medium"), "EC2.19", "high-risk port open to the internet"
    elif ports and ports <= WEB_PORTS:
        # A public web endpoint is what 0.0.0.0/0 on 80/443 is for; only an unused one is worth a look.
        severity, control, title = ("low" if not_used else "info"), "", "web port open to the internet"
    else:
        severity, control, title = ("medium" if not_used else "low"), "EC2.18", "port open to the internet"
    return _rule_finding(ctx, r, severity, "world_open_ingress", title, f"{_rule(r)}; {use}.", act, control)


# --- rules: what they carried --------------------------------------------------------------------------

def _status(ctx: _Context, r) -> list[dict]:
    """Observed checks of one rule: unused, or reached only by attempts."""
    if r.status == "unused":
        if r.rule_id in ctx.unresolved:
            # A rule whose peers are not in the snapshot could match nothing here: its use is unknown.
            return [_rule_finding(
                ctx, r, "info", "unused_rule", "no match: peers not in the snapshot",
                f"{_rule(r)} but its peers are not in the snapshot, so {ctx.in_window()} it could match nothing "
                "and its use is unknown.",
                "add the referenced group's account and VPC (or the prefix list's entries) to the snapshot and "
                "run again before judging this rule")]
        if r.rule_id in ctx.guessed:
            n = ctx.guessed[r.rule_id]
            return [_rule_finding(
                ctx, r, "info", "unused_rule", "unused, unless traffic runs the other way",
                f"{_rule(r)}; {_use(ctx, r)}, but {_plural(n, 'conversation')} whose direction is a guess (no "
                "handshake flags, and rules of both directions allow them) would match it if they ran the other "
                "way.", "keep it narrowed to them, as `sgaudit plan` does, unless you know which way they run")]
        severity = "medium" if r.direction == "ingress" and _is_world(r) else "low"
        return [_rule_finding(
            ctx, r, severity, "unused_rule", "rule unused in the window", f"{_rule(r)}; {_use(ctx, r)}.",
            f"remove the rule ({_revoke(r)}) once you know no traffic outside the window (monthly jobs, "
            "failover, backups) needs it")]
    if r.status == "attempted":
        if int(r.proto_num) not in (-1, 6):
            severity = "info"  # one-way UDP (statsd, syslog) can be the protocol working as meant
        else:
            severity = "medium" if r.direction == "ingress" and _is_world(r) else "low"
        peers = int(r.attempt_peers) or int(r.peers)
        if int(r.proto_num) in (-1, 6):
            fix = f"remove the rule ({_revoke(r)})"
        elif int(r.proto_num) in (1, 58):
            fix = (f"keep it if it lets Path MTU Discovery through (ICMP type 3 code 4, ICMPv6 type 2), which "
                   f"`sgaudit plan` keeps; otherwise remove the rule ({_revoke(r)})")
        else:
            fix = f"if the service needs no replies, keep it; otherwise remove the rule ({_revoke(r)})"
        return [_rule_finding(
            ctx, r, severity, "attempted_only_rule", "reached only by attempts",
            f"{_rule(r)}; {ctx.in_window()} only {_plural(peers, 'address', 'addresses')} reached it "
            f"({_plural(r.connections, 'connection')}) and {_unanswered(r)}.", fix)]
    return []


def _contains(outer, inner, prefix_lists: dict[str, list[str]]) -> bool:
    """Whether rule ``outer`` allows everything ``inner`` allows (same group and direction assumed)."""
    po, pi = int(outer.proto_num), int(inner.proto_num)
    if po != -1 and po != pi:
        return False
    if po != -1:
        if po in (6, 17) and outer.from_port != -1:
            if inner.from_port == -1 or not (outer.from_port <= inner.from_port and inner.to_port <= outer.to_port):
                return False
        if po in (1, 58) and outer.from_port != -1:
            if outer.from_port != inner.from_port or (outer.to_port != -1 and outer.to_port != inner.to_port):
                return False
    if outer.peer_kind == inner.peer_kind and outer.peer == inner.peer:
        return True
    if outer.peer_kind != "cidr":
        return False
    o = _network(outer.peer)
    if inner.peer_kind == "cidr":
        i = _network(inner.peer)
        return i.version == o.version and i.subnet_of(o)
    if inner.peer_kind == "prefix_list" and o.prefixlen == 0:
        # Only the world contains a prefix list for good: its entries change (AWS-managed ones included).
        entries = [_network(c) for c in prefix_lists.get(inner.peer, [])]
        return bool(entries) and all(e.version == o.version for e in entries)
    return False


def _shadowed(ctx: _Context) -> list[dict]:
    out = []
    # Rules as tuples, grouped in one pass: pandas per group cost seconds on a big account.
    by_group: dict[tuple[str, str], list] = defaultdict(list)
    for r in ctx.rule_rows:
        if r.status != "unattached":
            by_group[r.group_id, r.direction].append(r)
    for key in sorted(by_group):
        rows = by_group[key]
        for inner in rows:
            wider = [o for o in rows if o.rule_id != inner.rule_id and _contains(o, inner, ctx.prefix_lists)
                     # Of two identical rules, the later ID is reported, not both.
                     and not (_contains(inner, o, ctx.prefix_lists) and o.rule_id > inner.rule_id)]
            if not wider:
                continue
            names = ", ".join(o.rule_id for o in wider[:2]) + (f" and {len(wider) - 2} more" if len(wider) > 2 else "")
            carried = (f"; {ctx.in_window()} it carried {_plural(inner.connections, 'connection')}, all of them "
                       "allowed by the wider rule too" if inner.connections else "")
            out.append(_rule_finding(
                ctx, inner, "low", "shadowed_rule", "covered by a wider rule of the group",
                f"{_rule(inner)}, all of which rule {names} of the same group already allows{carried}.",
                f"remove it ({_revoke(inner)}), or better narrow {wider[0].rule_id} so that this precise rule is "
                "the one that counts"))
    return out


def _redundant(ctx: _Context, analysis: Analysis, shadowed: set[str]) -> list[dict]:
    """Used rules whose every conversation another rule of the interface's groups also allowed."""
    cand = ctx.rules[(ctx.rules["status"] == "used") & (ctx.rules["exclusive"] == 0)
                     & ~ctx.rules["rule_id"].isin(shadowed)]
    if cand.empty:
        return []
    ids = pd.DataFrame({"rule_id": cand["rule_id"].astype(str)})
    analysis.con.register("_finding_rules", ids)
    try:
        # The other rules that carried the same conversations, busiest first: who covers for this one.
        cover = analysis.con.sql("""
            SELECT a.rule_id, b.rule_id AS other, count(*) AS shared
            FROM conversation_rules a JOIN conversation_rules b
                 ON a.conversation_id = b.conversation_id AND a.rule_id <> b.rule_id
            JOIN classified c ON c.conversation_id = a.conversation_id
            WHERE c.accepted AND a.rule_id IN (SELECT rule_id FROM _finding_rules)
            GROUP BY ALL ORDER BY a.rule_id, shared DESC, other
        """).df()
    finally:
        analysis.con.unregister("_finding_rules")
    by_rule = {k: list(zip(g["other"], g["shared"], strict=True)) for k, g in cover.groupby("rule_id")}
    redundant = set(cand["rule_id"])
    out = []
    for r in cand.itertuples(index=False):
        others = by_rule.get(r.rule_id, [])
        named = ", ".join(f"{o} ({n:,} of {r.connections:,})" for o, n in others[:2])
        # Another finding that says to remove a rule covering this one: acting on both would cut the traffic.
        mutual = [o for o, _ in others if o in redundant or o in shadowed]
        kind = "shadowed" if mutual and mutual[0] in shadowed else "redundant"
        caution = (f"; {mutual[0]} is reported for removal too (as {kind}), so remove one of them, not both"
                   if mutual else "")
        out.append(_rule_finding(
            ctx, r, "low", "redundant_rule", "every connection also allowed elsewhere",
            f"{_rule(r)}; {ctx.in_window()} it carried {_plural(r.connections, 'connection')}, every one also "
            f"allowed by another rule of the interface's groups: {named or 'unknown'}{caution}.",
            f"remove it ({_revoke(r)}) after checking with `sgaudit plan` that nothing observed breaks"))
    return out


# --- groups --------------------------------------------------------------------------------------------

def _groups(ctx: _Context) -> list[dict]:
    out = []
    # The rules as tuples, grouped in one pass, not a pandas filter per group: a big account has thousands.
    of_group: dict[str, list] = defaultdict(list)
    referenced_by: dict[str, list[str]] = defaultdict(list)
    for r in ctx.rule_rows:
        of_group[r.group_id].append(r)
        if r.peer_kind == "group" and r.peer != r.group_id:
            referenced_by[r.peer].append(r.rule_id)
    # Every group of the snapshot, with or without rules: an empty group on no interface is still litter.
    for gid in sorted(set(ctx.group_names) | set(of_group)):
        g = of_group.get(gid, [])
        name = ctx.group_names.get(gid, "")
        label = f"{gid} ({name})" if name else gid
        ingress = [r for r in g if r.direction == "ingress"]
        world = [r for r in ingress if _is_world(r)]
        exposure = sum(int(r.exposure) for r in ingress)
        ifaces = ctx.group_ifaces.get(gid, [])
        seen, total, _ = ctx.coverage(gid)
        counts = f"{_plural(len(g), 'rule')}, {len(ingress)} ingress, {len(world)} open to the internet"
        world_txt = ", ".join(f"{_what(r)} from {r.peer}" for r in world)
        is_default = name == "default"
        if is_default and ifaces:
            out.append(_finding(
                "high" if len(world) else "medium", "default_group_in_use", "default security group in use",
                f"Security group {label}, the VPC's default, is on {_plural(total, 'interface')} "
                f"({', '.join(ifaces[:3])}{' …' if total > 3 else ''}) and has {counts}: whatever is launched "
                "without a group of its own gets these rules too.",
                f"{counts}; interfaces {' '.join(ifaces)}",
                "attach purpose-made groups to these interfaces, then remove every rule of the default group",
                group_id=gid, group_name=name, interface_id=ifaces[0] if total == 1 else "", control="EC2.2",
                exposure=exposure, observed_use=sum(int(r.connections) for r in g)))
        elif is_default and len(g):
            out.append(_finding(
                "low", "default_group_has_rules", "default security group has rules",
                f"Security group {label}, the VPC's default, is on no interface but has {counts}, which anything "
                "launched without a group of its own would get.",
                counts, _revoke_all(gid, g), group_id=gid, group_name=name, control="EC2.2", exposure=exposure))
        if not ifaces and not is_default:  # a default group cannot be deleted; EC2.2 covers it
            refs = referenced_by.get(gid, [])
            first = (f"first remove the rules that reference it ({', '.join(refs[:3])}), then "
                     if len(refs) else "")
            armed = f", including {world_txt}," if world_txt else ""
            out.append(_finding(
                "medium" if len(world) else "low", "unattached_group", "security group on no interface",
                f"Security group {label} is on no network interface in the snapshot; its {_plural(len(g), 'rule')}"
                f"{armed} protect nothing and would apply to whatever it is attached to next.",
                f"{counts}; interfaces 0; referenced by {len(refs)} rules of other groups",
                f"{first}delete it (aws ec2 delete-security-group --group-id {gid}) once no launch template or "
                "stack still names it",
                group_id=gid, group_name=name, control="EC2.22", exposure=exposure))
        elif ifaces and seen == 0 and len(g):
            out.append(_finding(
                "info", "unobserved_group", "no flow logs from the group's interfaces",
                f"Security group {label} is on {_plural(total, 'interface')} ({', '.join(ifaces[:3])}"
                f"{' …' if total > 3 else ''}), none of which sent flow-log records {ctx.in_window()}, so there is "
                f"no evidence either way for its {_plural(len(g), 'rule')}.",
                f"{counts}; interfaces observed 0/{total}: {' '.join(ifaces)}",
                "enable flow logs for these interfaces (or their subnet or VPC) and run again over a longer window "
                "before changing its rules",
                group_id=gid, group_name=name, interface_id=ifaces[0] if total == 1 else "", exposure=exposure))
    return out


def _revoke_all(gid: str, rules: list) -> str:
    cmds = []
    for direction in ("ingress", "egress"):
        ids = [r.rule_id for r in rules if r.direction == direction]
        if ids:
            cmds.append(f"aws ec2 revoke-security-group-{direction} --group-id {gid} "
                        f"--security-group-rule-ids {' '.join(ids)}")
    return f"remove its rules ({'; '.join(cmds)}); a default group cannot be deleted"


# --- traffic -------------------------------------------------------------------------------------------

def _protocol(p) -> str:
    return _PROTOCOL_NAMES.get(int(p), f"protocol {int(p)}") if pd.notna(p) else "?"


def _groups_of(ctx: _Context, iface: str) -> tuple[str, str, str]:
    """(group_id, group_name, text) of an interface: the ID only when it carries exactly one group."""
    gids = ctx.iface_groups.get(iface, [])
    names = [f"{g} ({ctx.group_names[g]})" if ctx.group_names.get(g) else g for g in gids]
    text = ", ".join(names[:-1]) + " and " + names[-1] if len(names) > 1 else "".join(names)
    if len(gids) == 1:
        return gids[0], ctx.group_names.get(gids[0], ""), text
    return "", "", text


def _unexplained(ctx: _Context, df: pd.DataFrame) -> list[dict]:
    """One finding per interface with unexplained conversations: its busiest (direction, protocol, port) named.

    Computed for all interfaces at once: a big account's snapshot taken in another region leaves thousands.
    """
    if df.empty:
        return []
    df = df.assign(proto=[_protocol(p) for p in df["protocol"]],
                   port_txt=[f" {int(p)}" if pd.notna(p) else "" for p in df["port"]])
    # Busiest first; of equal counts, in (direction, protocol, port) order.
    what = (df.groupby(["interface_id", "direction", "proto", "port_txt"], sort=True).size().rename("n")
            .reset_index().sort_values(["interface_id", "n"], ascending=[True, False], kind="stable"))
    tops = {iface: list(zip(g["direction"], g["proto"], g["port_txt"], g["n"], strict=True))
            for iface, g in what.groupby("interface_id", sort=False)}
    per = df.groupby("interface_id", sort=True).agg(
        conversations=("direction", "size"), peers=("peer", "nunique"), first_seen=("first_seen", "min"),
        last_seen=("last_seen", "max"), inbound=("direction", lambda d: (d == "inbound").any()),
        outbound=("direction", lambda d: (d == "outbound").any()))
    out = []
    for iface, conversations, peers, first_seen, last_seen, inbound, outbound in per.itertuples(name=None):
        gid, gname, groups = _groups_of(ctx, iface)
        what = tops[iface]
        top = ", ".join(f"{d} {p}{t}: {n:,}" for d, p, t, n in what[:3])
        more = f" and {len(what) - 3} more" if len(what) > 3 else ""
        way = "with" if inbound == outbound else ("from" if inbound else "to")
        out.append(_finding(
            "medium", "unexplained_traffic", "accepted traffic no rule explains",
            f"Interface {iface}, carrying {groups or 'no group'}, accepted {_plural(conversations, 'conversation')} "
            f"{way} {_plural(peers, 'address', 'addresses')} {ctx.in_window()} that no rule of its groups allows "
            f"({top}{more}): a rule changed since the snapshot, or a snapshot of another account or region.",
            f"conversations {conversations:,}; peers {peers:,}; {top}{more}; first seen "
            f"{first_seen:%Y-%m-%dT%H:%M:%SZ}; last seen {last_seen:%Y-%m-%dT%H:%M:%SZ}",
            "take a fresh snapshot of this account and region and run again; if the traffic stays unexplained, "
            "look for a rule changed during the window (AWS CloudTrail: AuthorizeSecurityGroupIngress, "
            "RevokeSecurityGroupIngress, ModifySecurityGroupRules)",
            group_id=gid, group_name=gname, interface_id=iface, exposure=peers, observed_use=conversations))
    return out


#: The ports a grouped ``rejected_scan`` finding names, busiest first; the rest are counted.
REJECTED_PORTS_NAMED = 5


def _rejected(ctx: _Context, analysis: Analysis, df: pd.DataFrame) -> list[dict]:
    """One finding per interface, direction, likely cause and EC2.19 risk, over the rejected table's rows.

    A scan touches hundreds of ports: one finding per port (the rejected table's grain) buried the other
    findings under thousands of lines. The rows are grouped instead, keeping apart what calls for a
    different reading: the EC2.19 ports (low, not info), and rows whose conversations also had accepted
    packets (a network ACL or a late packet is likelier than the security group), had none, or both.
    """
    if df.empty:
        return []
    df = df.copy()
    df["risky"] = [d == "inbound" and pd.notna(p) and int(p) in HIGH_RISK_PORTS and int(pr) in (6, 17)
                   for d, p, pr in zip(df["direction"], df["port"], df["protocol"], strict=True)]
    df["cause"] = [accepted_share(n, a) for n, a in zip(df["attempts"], df["attempts_also_accepted"], strict=True)]
    peers = _rejected_peers(analysis, df)
    keys = ["interface_id", "direction", "risky", "cause"]
    # One sort, then plain lists per finding: a scanned big account has thousands of findings here, and
    # pandas per finding cost seconds. Within a finding, the busiest port first.
    df = df.sort_values(keys + ["attempts", "protocol", "port"], ascending=[True] * len(keys) + [False, True, True],
                        kind="stable")
    rows = zip(*(df[c].tolist() for c in keys), [_port_text(p, q) for p, q in zip(df["protocol"], df["port"],
                                                                                   strict=True)],
               df["attempts"].tolist(), df["records"].tolist(), df["attempts_also_accepted"].tolist(),
               df["first_seen"].tolist(), df["last_seen"].tolist(), strict=True)
    out = []
    for (iface, direction, risky, cause), group in itertools.groupby(rows, key=lambda row: row[:4]):
        g = list(group)
        gid, gname, groups = _groups_of(ctx, iface)
        named = [row[4] for row in g]
        attempts, records = sum(row[5] for row in g), sum(row[6] for row in g)
        n_peers = peers[(iface, direction, bool(risky), cause)]
        if len(g) == 1:
            at = named[0]
        else:
            busiest = ", ".join(f"{row[4]} ({int(row[5]):,})" for row in g[:REJECTED_PORTS_NAMED])
            more = f" and {_plural(len(g) - REJECTED_PORTS_NAMED, 'more port')}" if len(g) > REJECTED_PORTS_NAMED \
                else ""
            at = f"{len(g):,} ports ({busiest}{more})"
        first_seen = min((row[8] for row in g if pd.notna(row[8])), default=pd.NaT)
        last_seen = max((row[9] for row in g if pd.notna(row[9])), default=pd.NaT)
        # Flow logs do not say what rejected: a security group never rejects the reply of a connection it
        # allowed, so accepted packets in the same conversations point at a network ACL or a late packet.
        also = sum(row[7] for row in g)
        why = {ALL_ACCEPTED: "other packets of these conversations were accepted, so a network ACL or a late "
                              "packet is likelier",
               NONE_ACCEPTED: "none of these conversations was accepted",
               SOME_ACCEPTED: f"{_plural(also, 'attempt')} of these also had accepted packets, where a network ACL "
                               "or a late packet is likelier; the others had none"}[cause]
        nacl_fix = "check the subnet's network ACL allows the return traffic (ephemeral ports 1024-65535)"
        closed_fix = ("nothing to change if these ports are meant to be closed; if this traffic is expected, find "
                      "whether the security group or the subnet's network ACL blocks it")
        fix = {ALL_ACCEPTED: nacl_fix, NONE_ACCEPTED: closed_fix,
               SOME_ACCEPTED: f"{nacl_fix}, for the attempts that also had accepted packets; for the others, "
                               f"{closed_fix}"}[cause]
        out.append(_finding(
            "low" if risky else "info", "rejected_scan",
            f"rejected {direction} attempts at {named[0] if len(g) == 1 else _plural(len(g), 'port')}",
            f"Interface {iface}, carrying {groups or 'no group'}, rejected "
            f"{_plural(attempts, direction + ' attempt')} at {at} from "
            f"{_plural(n_peers, 'address', 'addresses')} {ctx.in_window()}; a REJECT may come from a security "
            f"group, a network ACL or a late packet, and {why}.",
            f"attempts {attempts:,}; peers {n_peers:,}; records {records:,}; ports {', '.join(named)}; first seen "
            f"{first_seen:%Y-%m-%dT%H:%M:%SZ}; last seen {last_seen:%Y-%m-%dT%H:%M:%SZ}",
            fix, group_id=gid, group_name=gname, interface_id=iface, exposure=attempts))
    return out


def _port_text(protocol, port) -> str:
    return f"{_protocol(protocol)} {int(port)}" if pd.notna(port) else _protocol(protocol)


def _rejected_peers(analysis: Analysis, rejected: pd.DataFrame) -> dict[tuple, int]:
    """Distinct peers with REJECT records per (interface, direction, risky, cause) of `_rejected`'s rows.

    The rejected table counts peers per port; a peer that tried several ports of one finding counts once.
    Each peer's port takes its row's ``risky`` and ``cause`` from ``rejected``, so both stay decided in one
    place (pandas merges a missing port with a missing port, as the rejected table groups them).
    """
    peers = analysis.con.sql("""
        SELECT DISTINCT interface_id, direction, protocol, port, family, CAST(peer_num AS VARCHAR) AS peer
        FROM classified WHERE rej_p + rej_l > 0
    """).df()
    keys = ["interface_id", "direction", "protocol", "port"]
    rows = rejected[keys + ["risky", "cause"]].copy()
    for frame in (peers, rows):  # one dtype on both sides: DuckDB's small unsigned ints, pandas' floats
        frame[["protocol", "port"]] = frame[["protocol", "port"]].astype("float64")
    merged = peers.merge(rows, on=keys, how="inner")
    counts = merged.drop_duplicates(["interface_id", "direction", "risky", "cause", "family", "peer"]).groupby(
        ["interface_id", "direction", "risky", "cause"]).size()
    return {(i, d, bool(r), c): int(n) for (i, d, r, c), n in counts.items()}


# --- Markdown ------------------------------------------------------------------------------------------

def to_markdown(df: pd.DataFrame, title: str = "Security group findings") -> str:
    """A Markdown document of a `findings` frame: counts by severity, then one table row per finding.

    Parameters
    ----------
    df : pandas.DataFrame
        What `findings` returned (or a filtered part of it).
    title : str
        The document's heading.

    Returns
    -------
    str
        Markdown; every cell is escaped (`md_escape`), so AWS names and descriptions stay text.
    """
    missing = [c for c in ("severity", "kind", "sentence", "fix", "control") if c not in df.columns]
    if missing:
        raise SgauditError(f"to_markdown needs a findings table; missing column(s) {', '.join(missing)}")
    lines = [f"# {md_escape(title)}", ""]
    if df.empty:
        return "\n".join(lines + ["No findings.", ""])
    counts = df["severity"].value_counts()
    lines.append(f"{len(df):,} findings: " + ", ".join(f"{counts[s]:,} {s}" for s in SEVERITIES if s in counts) + ".")
    lines += ["", "| severity | kind | resource | finding | fix | control |", "|---|---|---|---|---|---|"]
    for r in df.itertuples(index=False):
        resource = " / ".join(v for v in (getattr(r, c, "") for c in ("rule_id", "group_id", "interface_id")) if v)
        cells = [r.severity, r.kind, resource, r.sentence, r.fix, r.control]
        lines.append("| " + " | ".join(md_escape(c) for c in cells) + " |")
    lines += ["", "Kinds:", ""] + [f"- {md_escape(k)}: {md_escape(KINDS[k])}" for k in sorted(set(df["kind"]))
                                   if k in KINDS]
    return "\n".join(lines) + "\n"
