"""Independent reference implementation ("oracle") of SPEC.md, for differential testing of sgaudit.

Written only from ``/work/shared/SPEC.md`` (the contract), ``docs/decisions.md`` (sections "Reading",
"Window", "Buckets", "Sides and conversations", "Initiator and evidence", "Rules", "The usage table",
"Rejected attempts"), ``/work/shared/AWS-FACTS.md`` and ``tests/builders.py``; never from the product's code.
Pure standard library, plain loops and dictionaries, each step commented with the sentence it implements.

Usage::

    from reference import analyze
    result = analyze([path_to_log, ...], path_to_inventory_folder, start_ms=None, end_ms=None)
    result.usage          # one dict per rule, SPEC's columns
    result.buckets        # bucket name -> record count (adds up to the records read)
    result.conversations  # accepted conversations at interfaces with groups
    result.unexplained    # those that no rule explains
    result.rejected       # rejected attempts per (interface, direction, protocol, port)
    result.observed       # observed interface IDs

Interpretations where SPEC and decisions.md leave room are marked ``INTERPRETATION`` in the comments.
"""

from __future__ import annotations

import gzip
import ipaddress
import json
from dataclasses import dataclass, field
from pathlib import Path

# --------------------------------------------------------------------------------------------------------
# Constants
# --------------------------------------------------------------------------------------------------------

#: The default version-2 format (AWS-FACTS §1: "Default format = all v2 fields in table order").
DEFAULT_FORMAT = ("version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes "
                  "start end action log-status").split()

#: Every flow-log field name AWS-FACTS §1 lists (versions 2-11), in AWS's hyphenated spelling. Used only to
#: tell a header line from a record.
KNOWN_FIELDS = set((
    "version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes start end action "
    "log-status vpc-id subnet-id instance-id tcp-flags type pkt-srcaddr pkt-dstaddr region az-id "
    "sublocation-type sublocation-id pkt-src-aws-service pkt-dst-aws-service flow-direction traffic-path "
    "resource-type tgw-id tgw-attachment-id tgw-src-vpc-account-id tgw-dst-vpc-account-id tgw-src-vpc-id "
    "tgw-dst-vpc-id tgw-src-subnet-id tgw-dst-subnet-id tgw-src-eni tgw-dst-eni tgw-src-az-id tgw-dst-az-id "
    "tgw-pair-attachment-id packets-lost-no-route packets-lost-blackhole packets-lost-mtu-exceeded "
    "packets-lost-ttl-expired ecs-cluster-arn ecs-cluster-name ecs-container-instance-arn "
    "ecs-container-instance-id ecs-container-id ecs-second-container-id ecs-service-name "
    "ecs-task-definition-arn ecs-task-arn ecs-task-id reject-reason resource-id encryption-status "
    "instance-tag instance-tag-2 interface-tag interface-tag-2 asg-tag asg-tag-2 interface-type "
    "next-hop-interface-id next-hop-subnet-id next-hop-az-id next-hop-vpc-id next-hop-interface-type"
).split())

#: Integer fields this oracle reads (AWS-FACTS §1 table: INT_32 / INT_64).
INT_FIELDS = ("srcport", "dstport", "protocol", "packets", "bytes", "start", "end", "tcp-flags")

#: SPEC: "names and numbers both: tcp 6, udp 17, icmp 1, icmpv6 58".
PROTOCOL_NAMES = {"tcp": 6, "udp": 17, "icmp": 1, "icmpv6": 58}

TCP, UDP = 6, 17
#: decisions.md: "Port-less protocols are all but TCP (6) and UDP (17)".
PORTED = (TCP, UDP)

BUCKETS = ("conversation", "nodata", "skipdata", "malformed", "outside_window", "unattributable",
           "interface_not_in_snapshot", "no_security_groups")

#: SPEC evidence, "strongest first".
EVIDENCE_RANK = {"established": 3, "inferred": 2, "attempted": 1, "": 0}

LOCAL, PEER = "local", "peer"
OTHER = {LOCAL: PEER, PEER: LOCAL}

USAGE_COLUMNS = ("group_id", "group_name", "rule_id", "direction", "protocol", "from_port", "to_port", "peer",
                 "status", "evidence", "connections", "exclusive", "peers", "ports", "first_seen", "last_seen",
                 "bytes", "packets")


# --------------------------------------------------------------------------------------------------------
# Result
# --------------------------------------------------------------------------------------------------------

@dataclass
class Result:
    """What the oracle computes.

    Attributes
    ----------
    usage : list of dict
        One row per rule in the inventory, with SPEC's usage-table columns (times in Unix milliseconds).
    buckets : dict
        Bucket name to record count; the counts add up to the records read.
    conversations : list of dict
        One per conversation with at least one accepted record, at an interface with security groups.
    unexplained : list of dict
        The conversations that no rule of the interface's groups, in their direction, allows.
    rejected : list of dict
        Rejected attempts per (interface_id, direction, protocol, port).
    observed : set of str
        The observed interface IDs.
    """

    usage: list[dict] = field(default_factory=list)
    buckets: dict[str, int] = field(default_factory=dict)
    conversations: list[dict] = field(default_factory=list)
    unexplained: list[dict] = field(default_factory=list)
    rejected: list[dict] = field(default_factory=list)
    observed: set[str] = field(default_factory=set)


# --------------------------------------------------------------------------------------------------------
# Inventory
# --------------------------------------------------------------------------------------------------------

def _ip(text):
    """Return the address as an ``ipaddress`` object, or None when it is neither IPv4 nor IPv6."""
    if text is None:
        return None
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _net(text):
    """Return a network (host bits tolerated) or None when it does not parse."""
    if not text:
        return None
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        return None


def _load_json(path):
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


@dataclass
class Rule:
    """One security group rule from ``describe-security-group-rules``, prepared for matching."""

    raw: dict
    rule_id: str
    group_id: str
    egress: bool
    protocol: int | None  # None = "-1", all protocols
    from_port: int | None
    to_port: int | None
    peer: str
    #: The peer networks for a CIDR or prefix-list rule (empty = matches nothing).
    networks: list = field(default_factory=list)
    #: For a referenced-group rule: the set of admitted addresses (empty = matches nothing).
    members: set | None = None

    def allows(self, protocol, port, peer_ip):
        """Whether this rule lets (protocol, port that counts, peer address) through (SPEC "matches")."""
        # SPEC: "the protocol fits (`-1` matches all; names and numbers both ...)".
        if self.protocol is not None and self.protocol != protocol:
            return False
        # SPEC: "for TCP and UDP the port lies in `FromPort..ToPort` (`-1` = all)". AWS-FACTS §6: "-1 or a
        # protocol number other than tcp, udp ... allows traffic on all ports", so ports are only looked at
        # for a TCP or UDP rule. SPEC: "an ICMP conversation matches every ICMP rule of its family".
        if self.protocol in PORTED and self.from_port is not None and self.from_port != -1:
            low = self.from_port
            high = self.to_port if self.to_port is not None and self.to_port != -1 else self.from_port
            if port is None or not (low <= port <= high):
                return False
        # SPEC: "the peer lies in R's CidrIpv4/CidrIpv6, in an entry of R's prefix list, or among the private
        # addresses ... of the interfaces that carry R's referenced group. IPv4 and IPv6 never cross".
        if self.members is not None:
            return peer_ip in self.members
        for net in self.networks:
            if net.version == peer_ip.version and peer_ip in net:
                return True
        return False


def _rule_protocol(value):
    """Return the rule's IpProtocol as a number, None for "-1" (all)."""
    text = str(value).strip().lower()
    if text == "-1":
        return None
    if text in PROTOCOL_NAMES:
        return PROTOCOL_NAMES[text]
    return int(text)


def _int_or_none(value):
    if value is None:
        return None
    return int(value)


@dataclass
class Inventory:
    """The snapshot folder, read as SPEC "Inputs 2" describes."""

    rules: list[Rule]
    group_names: dict[str, str]
    #: interface ID -> list of group IDs attached to it
    eni_groups: dict[str, list[str]]
    #: interface ID -> set of its private addresses (primary, secondary, IPv6)
    eni_addresses: dict[str, set]
    #: interface ID -> list of its delegated prefixes (networks)
    eni_prefixes: dict[str, list]
    #: group ID -> the interfaces that carry it
    group_enis: dict[str, list[str]]
    #: group ID -> its rules
    rules_by_group: dict[str, list[Rule]]


def load_inventory(folder):
    """Read the snapshot folder (the AWS CLI's JSON) into an ``Inventory``.

    Parameters
    ----------
    folder : str or Path
        Folder with security-group-rules.json, security-groups.json, network-interfaces.json and optionally
        managed-prefix-lists.json and prefix-list-entries/<pl-id>.json.

    Returns
    -------
    Inventory
    """
    folder = Path(folder)
    raw_rules = _load_json(folder / "security-group-rules.json").get("SecurityGroupRules", [])
    raw_groups = _load_json(folder / "security-groups.json").get("SecurityGroups", [])
    raw_enis = _load_json(folder / "network-interfaces.json").get("NetworkInterfaces", [])

    group_names = {}
    known_groups = set()
    for g in raw_groups:
        known_groups.add(g["GroupId"])
        group_names[g["GroupId"]] = g.get("GroupName", "") or ""

    eni_groups, eni_addresses, eni_prefixes, group_enis = {}, {}, {}, {}
    for n in raw_enis:
        eni = n["NetworkInterfaceId"]
        groups = [g["GroupId"] for g in n.get("Groups", []) or []]
        eni_groups[eni] = groups
        for g in n.get("Groups", []) or []:
            known_groups.add(g["GroupId"])
            group_names.setdefault(g["GroupId"], g.get("GroupName", "") or "")
            group_enis.setdefault(g["GroupId"], []).append(eni)
        # SPEC: "the private addresses (primary, secondary, IPv6)".
        addrs = set()
        for text in [n.get("PrivateIpAddress")] + [a.get("PrivateIpAddress") for a in
                                                   n.get("PrivateIpAddresses", []) or []] + \
                [a.get("Ipv6Address") for a in n.get("Ipv6Addresses", []) or []]:
            ip = _ip(text)
            if ip is not None:
                addrs.add(ip)
        eni_addresses[eni] = addrs
        # SPEC sides: "primary, secondary, IPv6, delegated prefix".
        prefixes = []
        for p in n.get("Ipv4Prefixes", []) or []:
            net = _net(p.get("Ipv4Prefix"))
            if net is not None:
                prefixes.append(net)
        for p in n.get("Ipv6Prefixes", []) or []:
            net = _net(p.get("Ipv6Prefix"))
            if net is not None:
                prefixes.append(net)
        eni_prefixes[eni] = prefixes

    # decisions.md Rules: "A referenced group admits the primary, secondary and IPv6 addresses of the interfaces
    # that carry it ... not addresses inside their delegated prefixes."
    group_members = {}
    for gid, enis in group_enis.items():
        members = set()
        for eni in enis:
            members |= eni_addresses[eni]
        group_members[gid] = members

    prefix_dir = folder / "prefix-list-entries"
    prefix_entries = {}

    def entries_of(pl):
        # decisions.md Rules: "a prefix list whose entries are not in it, matches nothing".
        if pl not in prefix_entries:
            nets = []
            path = prefix_dir / f"{pl}.json"
            if path.is_file():
                for e in _load_json(path).get("Entries", []) or []:
                    net = _net(e.get("Cidr"))
                    if net is not None:
                        nets.append(net)
            prefix_entries[pl] = nets
        return prefix_entries[pl]

    rules, rules_by_group = [], {}
    for r in raw_rules:
        if r.get("CidrIpv4"):
            peer, networks, members = r["CidrIpv4"], [_net(r["CidrIpv4"])], None
        elif r.get("CidrIpv6"):
            peer, networks, members = r["CidrIpv6"], [_net(r["CidrIpv6"])], None
        elif r.get("PrefixListId"):
            peer, networks, members = r["PrefixListId"], entries_of(r["PrefixListId"]), None
        elif r.get("ReferencedGroupInfo"):
            peer = r["ReferencedGroupInfo"].get("GroupId", "") or ""
            # decisions.md Rules: "A referenced group that is not in the snapshot ... matches nothing".
            # INTERPRETATION: "in the snapshot" = in security-groups.json or attached to an interface of
            # network-interfaces.json; its members are the interfaces carrying it (possibly none).
            networks, members = [], (group_members.get(peer, set()) if peer in known_groups else set())
        else:
            peer, networks, members = "", [], None
        networks = [n for n in networks if n is not None]
        rule = Rule(raw=r, rule_id=r["SecurityGroupRuleId"], group_id=r["GroupId"], egress=bool(r.get("IsEgress")),
                    protocol=_rule_protocol(r.get("IpProtocol", "-1")), from_port=_int_or_none(r.get("FromPort")),
                    to_port=_int_or_none(r.get("ToPort")), peer=peer, networks=networks, members=members)
        rules.append(rule)
        rules_by_group.setdefault(rule.group_id, []).append(rule)

    return Inventory(rules=rules, group_names=group_names, eni_groups=eni_groups, eni_addresses=eni_addresses,
                     eni_prefixes=eni_prefixes, group_enis=group_enis, rules_by_group=rules_by_group)


def matching_rules(inv, eni, direction, protocol, port, peer_ip):
    """Return the IDs of the rules of ``eni``'s groups in ``direction`` that allow the conversation.

    SPEC: "A conversation matches rule R of group G when G is attached to E, R's direction fits, ...".
    """
    egress = direction == "outbound"  # SPEC: inbound -> ingress rules, outbound -> egress rules
    ids = []
    for gid in inv.eni_groups.get(eni, []):
        for rule in inv.rules_by_group.get(gid, []):
            if rule.egress == egress and rule.allows(protocol, port, peer_ip):
                ids.append(rule.rule_id)
    return sorted(set(ids))


# --------------------------------------------------------------------------------------------------------
# Reading flow-log files
# --------------------------------------------------------------------------------------------------------

def _field_name(token):
    """Normalise a field name: ``${tcp-flags}`` or Athena's ``tcp_flags`` -> ``tcp-flags``."""
    token = token.strip()
    if token.startswith("${") and token.endswith("}"):
        token = token[2:-1]
    return token.replace("_", "-").lower()


def _read_lines(path):
    """Return the file's text lines; gzip is told from the magic bytes 1f 8b, never from the name."""
    with open(path, "rb") as fh:
        data = fh.read()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    return data.decode("utf-8", errors="replace").splitlines()


def _is_header(tokens):
    """decisions.md Reading: a header "when at least half of its tokens are field names"."""
    names = sum(1 for t in tokens if _field_name(t) in KNOWN_FIELDS)
    return names * 2 >= len(tokens) and names > 0


def _to_ms(value):
    """decisions.md Reading: "a start/end of 10^11 or more is in milliseconds"; else seconds."""
    if value is None:
        return None
    return value if value >= 10**11 else value * 1000


def read_records(files, log_format=None):
    """Yield each record as a dict of field name -> value (None for ``-``), or None for an untypable line.

    Parameters
    ----------
    files : list of str or Path
        Flow-log text files, plain or gzip.
    log_format : list of str or str, optional
        Field order for files without a header line; default the version-2 default format.

    Yields
    ------
    dict or None
        Records with integer fields typed and start/end in milliseconds; None for a line that cannot be typed
        (wrong field count, a non-integer in an integer field, a port outside 0..65535): decisions.md
        "Lines the reader cannot type at all ... are malformed too".
    """
    if isinstance(log_format, str):
        log_format = log_format.split()
    default = [_field_name(f) for f in (log_format or DEFAULT_FORMAT)]
    for path in files:
        fmt = None
        for text in _read_lines(path):
            tokens = text.split()
            if not tokens:
                continue  # blank lines are neither header nor record
            if fmt is None:
                # decisions.md Reading: "The first non-blank line of a text file is a header when ...".
                if _is_header(tokens):
                    fmt = [_field_name(t) for t in tokens]
                    continue
                fmt = default
            if len(tokens) != len(fmt):
                yield None
                continue
            rec = {}
            ok = True
            for name, value in zip(fmt, tokens, strict=True):
                if value == "-":  # SPEC: "`-` is a missing value"
                    rec[name] = None
                elif name in INT_FIELDS:
                    try:
                        rec[name] = int(value)
                    except ValueError:
                        ok = False
                        break
                else:
                    rec[name] = value
            if not ok:
                yield None
                continue
            for port in ("srcport", "dstport"):
                if rec.get(port) is not None and not (0 <= rec[port] <= 65535):
                    ok = False
            if not ok:
                yield None
                continue
            # decisions.md Reading: "A format without log-status reads every record as OK".
            if "log-status" not in fmt:
                rec["log-status"] = "OK"
            rec["start"] = _to_ms(rec.get("start"))
            rec["end"] = _to_ms(rec.get("end"))
            yield rec


# --------------------------------------------------------------------------------------------------------
# Conversations
# --------------------------------------------------------------------------------------------------------

def _new_side():
    return {"sent": False, "syn": False, "synack": False, "rst": False}


def _new_conversation(eni, protocol, local_port, peer, peer_port, peer_ip):
    return {
        "interface_id": eni, "protocol": protocol, "local_port": local_port, "peer": peer, "peer_port": peer_port,
        "peer_ip": peer_ip,
        # facts per side, from accepted and from rejected records separately
        "accepted": {LOCAL: _new_side(), PEER: _new_side()},
        "rejected_facts": {LOCAL: _new_side(), PEER: _new_side()},
        "n_accepted": 0, "n_rejected": 0,
        "first_seen": None, "last_seen": None, "bytes": 0, "packets": 0,
    }


def _add_fact(side, flags, protocol):
    side["sent"] = True
    # SPEC "Initiator (TCP)": flags are read for TCP only; "without tcp-flags every record is 'without
    # handshake flags'" (decisions.md Reading). INTERPRETATION: tcp-flags of non-TCP records are ignored.
    if protocol != TCP or flags is None:
        return
    if flags & 18 == 2:  # SPEC: "SYN and not SYN-ACK (flags & 18 == 2, so 2 and 3)"
        side["syn"] = True
    if flags & 18 == 18:  # SPEC: "a SYN-ACK (flags & 18 == 18, so 18 and 19)"
        side["synack"] = True
    if flags & 4:  # decisions.md: "answered by an RST (flag 4)"
        side["rst"] = True


def _initiator_from_facts(facts):
    """decisions.md "Initiator and evidence" steps 1-4; None when they do not decide."""
    # 1. "A side that sent SYN answered by the other side's SYN-ACK initiated. If both sides qualify ... the
    #    flags do not decide and the steps below do."
    qualify = [s for s in (LOCAL, PEER) if facts[s]["syn"] and facts[OTHER[s]]["synack"]]
    if len(qualify) == 1:
        return qualify[0]
    # 2. "Otherwise a side that sent SYN while the other did not initiated."
    syn = [s for s in (LOCAL, PEER) if facts[s]["syn"]]
    if len(syn) == 1:
        return syn[0]
    # 3. "Otherwise a side that sent SYN-ACK while the other did not is the responder."
    synack = [s for s in (LOCAL, PEER) if facts[s]["synack"]]
    if len(synack) == 1:
        return OTHER[synack[0]]
    # 4. "one-way traffic: the sender initiated".
    sent = [s for s in (LOCAL, PEER) if facts[s]["sent"]]
    if len(sent) == 1:
        return sent[0]
    return None


def _initiator_from_ports(conv):
    """decisions.md step 6: "The side with the lower port is the responder. Equal ports ... count as inbound"."""
    lp, pp = conv["local_port"], conv["peer_port"]
    if lp is not None and pp is not None and pp < lp:
        return LOCAL  # the peer has the lower port: it responds, E initiated -> outbound
    return PEER  # local port lower, or equal ports (port-less protocols too): inbound


def _evidence(facts, initiator):
    """decisions.md "Evidence, on accepted records only"."""
    i, r = facts[initiator], facts[OTHER[initiator]]
    # "established when the initiator's SYN and the responder's SYN-ACK were both accepted"
    if i["syn"] and r["synack"]:
        return "established"
    # "attempted when the initiator's SYN was answered by an RST (flag 4) and no SYN-ACK"
    if i["syn"] and r["rst"] and not r["synack"]:
        return "attempted"
    # "inferred ... for a SYN-ACK seen without its SYN even when nothing else of the initiator's side is in
    # the window"
    if r["synack"]:
        return "inferred"
    # "inferred for any other two-way traffic"
    if i["sent"] and r["sent"]:
        return "inferred"
    # "attempted when only the initiator's side was seen"
    return "attempted"


# --------------------------------------------------------------------------------------------------------
# The analysis
# --------------------------------------------------------------------------------------------------------

def _belongs(inv, eni, ip):
    """Whether ``ip`` is one of E's addresses: "primary, secondary, IPv6, delegated prefix" (SPEC sides)."""
    if ip is None:
        return False
    if ip in inv.eni_addresses.get(eni, set()):
        return True
    for net in inv.eni_prefixes.get(eni, []):
        if net.version == ip.version and ip in net:
            return True
    return False


def _sort_key(*values):
    return tuple((v is None, v if v is not None else 0) for v in values)


def analyze(files, inventory, start_ms=None, end_ms=None, log_format=None):
    """Compute rule usage from flow-log files and an inventory snapshot, following SPEC.md to the letter.

    Parameters
    ----------
    files : list of str or Path
        Flow-log text files (plain or gzip; header line or ``log_format``).
    inventory : str or Path
        The snapshot folder.
    start_ms, end_ms : int, optional
        The window ``[start_ms, end_ms)`` in Unix milliseconds; records are selected by their ``start``.
    log_format : list of str, optional
        Field order of files without a header line (default: the version-2 default format).

    Returns
    -------
    Result
    """
    if isinstance(files, str | Path):
        files = [files]
    inv = load_inventory(inventory)
    buckets = dict.fromkeys(BUCKETS, 0)
    observed = set()
    conversations = {}

    for rec in read_records(files, log_format):
        if rec is None:
            buckets["malformed"] += 1
            continue
        start = rec.get("start")
        # Buckets, "Checked in this order, first match wins: no start -> malformed;"
        if start is None:
            buckets["malformed"] += 1
            continue
        # "outside the window" — decisions.md Window: "start <= record.start < end".
        if (start_ms is not None and start < start_ms) or (end_ms is not None and start >= end_ms):
            buckets["outside_window"] += 1
            continue
        eni = rec.get("interface-id")
        status = rec.get("log-status")
        # "NODATA; SKIPDATA;" — and decisions.md: observed means "at least one record in a non-malformed bucket
        # inside the window (OK, REJECT, NODATA, SKIPDATA, also unattributable ones)".
        if status == "NODATA":
            buckets["nodata"] += 1
            if eni is not None:
                observed.add(eni)
            continue
        if status == "SKIPDATA":
            buckets["skipdata"] += 1
            if eni is not None:
                observed.add(eni)
            continue
        # "other malformed (unknown log-status or action, no end/protocol/address, TCP/UDP without ports, a
        # flow-direction other than ingress/egress)"
        action = rec.get("action")
        protocol = rec.get("protocol")
        direction = rec.get("flow-direction")
        src, dst = rec.get("srcaddr"), rec.get("dstaddr")
        if status != "OK" or action not in ("ACCEPT", "REJECT") or rec.get("end") is None or protocol is None:
            buckets["malformed"] += 1
            continue
        # INTERPRETATION: a flow-direction of `-` is a missing value ("`-` is missing"), so the sides come from
        # the inventory as for a format without flow-direction; only other values are malformed.
        if direction is not None and direction not in ("ingress", "egress"):
            buckets["malformed"] += 1
            continue
        # "no ... address". decisions.md: "With flow-direction, only the peer address is validated; the local
        # one is never used". INTERPRETATION: with flow-direction only the peer address must be present.
        if direction == "ingress":
            needed = [src]
        elif direction == "egress":
            needed = [dst]
        else:
            needed = [src, dst]
        if any(a is None for a in needed):
            buckets["malformed"] += 1
            continue
        if protocol in PORTED and (rec.get("srcport") is None or rec.get("dstport") is None):
            buckets["malformed"] += 1
            continue
        # "no interface (`-`, e.g. regional NAT gateway traffic) -> unattributable"
        if eni is None:
            buckets["unattributable"] += 1
            continue
        # "interface not in the snapshot"
        if eni not in inv.eni_groups:
            buckets["interface_not_in_snapshot"] += 1
            observed.add(eni)
            continue
        # "interface without security groups (a NAT gateway: its own bucket, coverage only)"
        if not inv.eni_groups[eni]:
            buckets["no_security_groups"] += 1
            observed.add(eni)
            continue
        # SPEC Sides: "flow-direction decides: ingress -> the destination is local, egress -> the source is
        # local". Without it: "the local side is whichever address belongs to E in the inventory";
        # decisions.md: "when both addresses belong to the interface ..., the destination is taken as local."
        if direction == "ingress":
            local_is_dst = True
        elif direction == "egress":
            local_is_dst = False
        elif _belongs(inv, eni, _ip(dst)):
            local_is_dst = True
        elif _belongs(inv, eni, _ip(src)):
            local_is_dst = False
        else:
            # "v2 record where neither address is the interface's -> unattributable"
            buckets["unattributable"] += 1
            observed.add(eni)
            continue
        if local_is_dst:
            peer_text, peer_port, local_port, sender = src, rec.get("srcport"), rec.get("dstport"), PEER
        else:
            peer_text, peer_port, local_port, sender = dst, rec.get("dstport"), rec.get("srcport"), LOCAL
        # "a peer address that is neither IPv4 nor IPv6 -> malformed"
        peer_ip = _ip(peer_text)
        if peer_ip is None:
            buckets["malformed"] += 1
            continue
        # "otherwise a conversation"
        buckets["conversation"] += 1
        observed.add(eni)
        # SPEC Conversation: "the same (protocol, local port, peer address, peer port)"; "ICMP and other
        # port-less protocols: one conversation per (E, protocol, peer)". INTERPRETATION: port-less
        # conversations carry None for local_port/peer_port/port; the peer is written in ipaddress's
        # canonical form (IPv6 compressed), so two spellings of one address are one peer.
        if protocol not in PORTED:
            local_port = peer_port = None
        peer = str(peer_ip)
        key = (eni, protocol, local_port, peer, peer_port)
        conv = conversations.get(key)
        if conv is None:
            conv = conversations[key] = _new_conversation(eni, protocol, local_port, peer, peer_port, peer_ip)
        flags = rec.get("tcp-flags")
        if action == "ACCEPT":
            conv["n_accepted"] += 1
            _add_fact(conv["accepted"][sender], flags, protocol)
            # decisions.md usage table: first_seen/last_seen/bytes/packets "come from the accepted records";
            # SPEC: "earliest start / latest end".
            end = rec["end"]
            conv["first_seen"] = start if conv["first_seen"] is None else min(conv["first_seen"], start)
            conv["last_seen"] = end if conv["last_seen"] is None else max(conv["last_seen"], end)
            conv["bytes"] += rec.get("bytes") or 0
            conv["packets"] += rec.get("packets") or 0
        else:
            conv["n_rejected"] += 1
            _add_fact(conv["rejected_facts"][sender], flags, protocol)

    # ---- classify every conversation ----------------------------------------------------------------
    out_convs, unexplained = [], []
    rejected = {}
    rule_convs = {}  # rule ID -> list of (conversation output dict, conv)
    for key in sorted(conversations, key=lambda k: _sort_key(*k)):
        conv = conversations[key]
        eni, protocol = conv["interface_id"], conv["protocol"]
        accepted = conv["n_accepted"] > 0
        # decisions.md: "The facts come from the conversation's accepted records when it has any ...,
        # otherwise from its rejected records (... for it the rules are not asked)".
        facts = conv["accepted"] if accepted else conv["rejected_facts"]
        initiator = _initiator_from_facts(facts)
        in_rules = matching_rules(inv, eni, "inbound", protocol, conv["local_port"], conv["peer_ip"])
        out_rules = matching_rules(inv, eni, "outbound", protocol, conv["peer_port"], conv["peer_ip"])
        if initiator is None and accepted:
            # 5. "If the rules of exactly one direction could allow it, that direction."
            if in_rules and not out_rules:
                initiator = PEER
            elif out_rules and not in_rules:
                initiator = LOCAL
        if initiator is None:
            initiator = _initiator_from_ports(conv)  # 6.
        # SPEC Direction: "Initiated by the peer: inbound — ingress rules ..., the port that counts is the local
        # port. Initiated by E: outbound — egress rules, the remote port."
        if initiator == PEER:
            direction, port, rules = "inbound", conv["local_port"], in_rules
        else:
            direction, port, rules = "outbound", conv["peer_port"], out_rules

        # decisions.md Rejected attempts: "Grouped by (interface, direction, protocol, port that counts);
        # attempts counts distinct (peer, peer port), peers distinct peers, records the REJECT records."
        if conv["n_rejected"]:
            rkey = (eni, direction, protocol, port)
            entry = rejected.setdefault(rkey, {"pairs": set(), "peers": set(), "records": 0})
            entry["pairs"].add((conv["peer"], conv["peer_port"]))
            entry["peers"].add(conv["peer"])
            entry["records"] += conv["n_rejected"]

        if not accepted:
            continue  # SPEC: "REJECT records are never usage of a rule"
        evidence = _evidence(conv["accepted"], initiator)
        row = {"interface_id": eni, "protocol": protocol, "local_port": conv["local_port"], "peer": conv["peer"],
               "peer_port": conv["peer_port"], "direction": direction, "port": port, "evidence": evidence,
               "rules": list(rules)}
        out_convs.append(row)
        # SPEC: "Accepted conversations that no rule explains are reported as unexplained".
        if not rules:
            unexplained.append(row)
        # SPEC: "Every matching rule gets the conversation."
        for rid in rules:
            rule_convs.setdefault(rid, []).append((row, conv))

    # ---- the usage table ----------------------------------------------------------------------------
    usage = []
    for rule in inv.rules:
        matched = rule_convs.get(rule.rule_id, [])
        enis = inv.group_enis.get(rule.group_id, [])
        best = ""
        for row, _conv in matched:
            if EVIDENCE_RANK[row["evidence"]] > EVIDENCE_RANK[best]:
                best = row["evidence"]
        # SPEC status: used (best evidence established or inferred), attempted (attempts only), unused (an
        # interface carrying the group was observed and nothing matched), unobserved (no interface carrying
        # the group was observed), unattached (the group is on no interface).
        if not enis:
            status = "unattached"
        elif best in ("established", "inferred"):
            status = "used"
        elif best == "attempted":
            status = "attempted"
        elif any(e in observed for e in enis):
            status = "unused"
        else:
            status = "unobserved"
        # SPEC: "exclusive counts the conversations that no other rule of E's groups, in that direction,
        # allows."
        exclusive = sum(1 for row, _conv in matched if row["rules"] == [rule.rule_id])
        peers = {row["peer"] for row, _conv in matched}
        # decisions.md: "ports the distinct ports that counted, ascending, comma-separated, empty for port-less
        # traffic".
        ports = sorted({row["port"] for row, _conv in matched if row["port"] is not None})
        firsts = [c["first_seen"] for _row, c in matched if c["first_seen"] is not None]
        lasts = [c["last_seen"] for _row, c in matched if c["last_seen"] is not None]
        usage.append({
            "group_id": rule.group_id,
            "group_name": inv.group_names.get(rule.group_id, ""),
            "rule_id": rule.rule_id,
            "direction": "egress" if rule.egress else "ingress",
            "protocol": rule.raw.get("IpProtocol"),
            "from_port": rule.raw.get("FromPort"),
            "to_port": rule.raw.get("ToPort"),
            "peer": rule.peer,
            "status": status,
            "evidence": best,
            "connections": len(matched),
            "exclusive": exclusive,
            "peers": len(peers),
            "ports": ",".join(str(p) for p in ports),
            "first_seen": min(firsts) if firsts else None,
            "last_seen": max(lasts) if lasts else None,
            "bytes": sum(c["bytes"] for _row, c in matched),
            "packets": sum(c["packets"] for _row, c in matched),
        })
    # decisions.md: "Rows are sorted by group, then direction, then rule ID."
    usage.sort(key=lambda u: (u["group_id"], u["direction"], u["rule_id"]))

    rejected_rows = [{"interface_id": k[0], "direction": k[1], "protocol": k[2], "port": k[3],
                      "attempts": len(v["pairs"]), "peers": len(v["peers"]), "records": v["records"]}
                     for k, v in sorted(rejected.items(), key=lambda kv: _sort_key(*kv[0]))]

    return Result(usage=usage, buckets=buckets, conversations=out_convs, unexplained=unexplained,
                  rejected=rejected_rows, observed=observed)
