"""The inventory snapshot: security groups, their rules, network interfaces and prefix lists.

The snapshot is a folder of what the AWS CLI prints as JSON (see ``../shared/SPEC.md``):

- ``security-group-rules.json``   ``aws ec2 describe-security-group-rules``
- ``security-groups.json``        ``aws ec2 describe-security-groups``
- ``network-interfaces.json``     ``aws ec2 describe-network-interfaces``
- ``managed-prefix-lists.json``   ``aws ec2 describe-managed-prefix-lists`` (optional)
- ``prefix-list-entries/<pl-id>.json``  ``aws ec2 get-managed-prefix-list-entries`` (optional)

A folder may instead hold one such folder per account and region (what ``sgaudit collect`` writes for
several); they are read together. Required keys are indexed (``rule["GroupId"]``) so a wrong file fails
loudly; optional ones use ``.get``. IDs are the API's own (``SecurityGroupRuleId``), never home-made.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from .errors import InventoryError

RULES_FILE = "security-group-rules.json"
GROUPS_FILE = "security-groups.json"
INTERFACES_FILE = "network-interfaces.json"
PREFIX_LISTS_FILE = "managed-prefix-lists.json"
PREFIX_ENTRIES_DIR = "prefix-list-entries"

#: IpProtocol names the API uses, to IANA numbers; ``-1`` is every protocol.
PROTOCOLS = {"tcp": 6, "udp": 17, "icmp": 1, "icmpv6": 58, "-1": -1, "all": -1}
#: Protocol number → the name the EC2 API uses for it (the protocols rules may name).
PROTOCOL_NAMES = {number: name for name, number in PROTOCOLS.items() if number >= 0}


def protocol_number(value: str | int) -> int:
    """IANA number of an ``IpProtocol`` value (``tcp`` → 6, ``"50"`` → 50, ``-1`` → -1)."""
    s = str(value).strip().lower()
    if s in PROTOCOLS:
        return PROTOCOLS[s]
    try:
        return int(s)
    except ValueError:
        raise InventoryError(f"unknown IpProtocol {value!r}; expected tcp, udp, icmp, icmpv6, -1 or a number") from None


@dataclass
class Inventory:
    """A parsed snapshot, as DataFrames.

    Attributes
    ----------
    rules : pandas.DataFrame
        One row per rule: ``rule_id, group_id, is_egress, ip_protocol, protocol, from_port, to_port,
        peer_kind`` (``cidr``, ``prefix_list``, ``group``), ``peer``, ``description``.
    groups : pandas.DataFrame
        ``group_id, group_name, vpc_id, owner_id, description``.
    interfaces : pandas.DataFrame
        ``interface_id, interface_type, description, vpc_id, subnet_id, instance_id, owner_id,
        requester_managed, private_ip, group_ids``.
    interface_groups : pandas.DataFrame
        ``interface_id, group_id``: which groups each interface carries.
    addresses : pandas.DataFrame
        ``interface_id, address, kind`` (``primary``, ``secondary``, ``ipv6``) for every private address.
    prefixes : pandas.DataFrame
        ``interface_id, cidr``: delegated IPv4/IPv6 prefixes.
    prefix_lists : dict
        Prefix-list id → list of CIDRs, for the lists whose entries are in the snapshot.
    problems : list of dict
        What could not be resolved (a referenced group outside the snapshot, prefix-list entries
        missing), each with ``kind``, ``resource`` and ``detail``. Never guessed, always reported.
    """

    rules: pd.DataFrame
    groups: pd.DataFrame
    interfaces: pd.DataFrame
    interface_groups: pd.DataFrame
    addresses: pd.DataFrame
    prefixes: pd.DataFrame
    prefix_lists: dict[str, list[str]] = field(default_factory=dict)
    problems: list[dict] = field(default_factory=list)


def _load(path: Path, key: str, required: bool = True) -> list[dict]:
    if not path.exists():
        if required:
            raise InventoryError(
                f"{path}: missing. The inventory folder needs {RULES_FILE}, {GROUPS_FILE} and "
                f"{INTERFACES_FILE} (the JSON printed by aws ec2 describe-security-group-rules, "
                "describe-security-groups and describe-network-interfaces), or run 'sgaudit collect'."
            )
        return []
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InventoryError(f"{path}, line {exc.lineno}: not valid JSON ({exc.msg})") from exc
    if not isinstance(doc, dict) or key not in doc:
        found = list(doc)[:5] if isinstance(doc, dict) else type(doc).__name__
        raise InventoryError(f"{path}: expected a JSON object with key {key!r} (AWS CLI output); found {found}")
    return doc[key]


def _snapshot_dirs(root: Path) -> list[Path]:
    if not root.is_dir():
        raise InventoryError(f"{root}: no such inventory folder; pass --inventory DIR (see 'sgaudit collect')")
    if (root / RULES_FILE).exists() or (root / INTERFACES_FILE).exists():
        return [root]
    subs = sorted(p.parent for p in root.rglob(RULES_FILE))
    if not subs:
        _load(root / RULES_FILE, "SecurityGroupRules")  # raises the "missing" error with its advice
    return subs


def load(root: str | Path) -> Inventory:
    """Read an inventory snapshot folder (or a tree of them).

    Parameters
    ----------
    root : str or Path
        The snapshot folder.

    Returns
    -------
    Inventory

    Raises
    ------
    InventoryError
        For a missing file or JSON of the wrong shape, naming the file and the key.
    """
    rules, groups, enis, pls = [], [], [], []
    entries: dict[str, list[str]] = {}
    for d in _snapshot_dirs(Path(root)):
        rules += _load(d / RULES_FILE, "SecurityGroupRules")
        groups += _load(d / GROUPS_FILE, "SecurityGroups")
        enis += _load(d / INTERFACES_FILE, "NetworkInterfaces")
        pls += _load(d / PREFIX_LISTS_FILE, "PrefixLists", required=False)
        ent_dir = d / PREFIX_ENTRIES_DIR
        if ent_dir.is_dir():
            for f in sorted(ent_dir.glob("*.json")):
                entries[f.stem] = [e["Cidr"] for e in _load(f, "Entries")]
    return _build(rules, groups, enis, entries, Path(root))


def _build(rules: list[dict], groups: list[dict], enis: list[dict], entries: dict[str, list[str]],
           where: Path) -> Inventory:
    problems: list[dict] = []
    group_rows = [
        {"group_id": g["GroupId"], "group_name": g.get("GroupName", ""), "vpc_id": g.get("VpcId"),
         "owner_id": g.get("OwnerId"), "description": g.get("Description", "")}
        for g in groups
    ]
    groups_df = pd.DataFrame(group_rows, columns=["group_id", "group_name", "vpc_id", "owner_id", "description"])
    groups_df = groups_df.drop_duplicates("group_id").reset_index(drop=True)
    known_groups = set(groups_df["group_id"])

    iface_rows, ig_rows, addr_rows, prefix_rows = [], [], [], []
    for n in enis:
        eid = n["NetworkInterfaceId"]
        gids = [g["GroupId"] for g in n.get("Groups", [])]
        iface_rows.append({
            "interface_id": eid, "interface_type": n.get("InterfaceType", "interface"),
            "description": n.get("Description", ""), "vpc_id": n.get("VpcId"), "subnet_id": n.get("SubnetId"),
            "instance_id": (n.get("Attachment") or {}).get("InstanceId"), "owner_id": n.get("OwnerId"),
            "requester_managed": bool(n.get("RequesterManaged", False)),
            "private_ip": n.get("PrivateIpAddress"), "group_ids": " ".join(gids),
        })
        ig_rows += [{"interface_id": eid, "group_id": g} for g in gids]
        seen = set()
        if n.get("PrivateIpAddress"):
            addr_rows.append({"interface_id": eid, "address": n["PrivateIpAddress"], "kind": "primary"})
            seen.add(n["PrivateIpAddress"])
        for a in n.get("PrivateIpAddresses", []):
            ip = a["PrivateIpAddress"]
            if ip not in seen:
                seen.add(ip)
                addr_rows.append({"interface_id": eid, "address": ip,
                                  "kind": "primary" if a.get("Primary") else "secondary"})
        for a in n.get("Ipv6Addresses", []):
            addr_rows.append({"interface_id": eid, "address": str(ipaddress.ip_address(a["Ipv6Address"])),
                              "kind": "ipv6"})
        for p in n.get("Ipv4Prefixes", []):
            prefix_rows.append({"interface_id": eid, "cidr": p["Ipv4Prefix"]})
        for p in n.get("Ipv6Prefixes", []):
            prefix_rows.append({"interface_id": eid, "cidr": p["Ipv6Prefix"]})

    rule_rows = []
    for r in rules:
        if r.get("CidrIpv4"):
            kind, peer = "cidr", r["CidrIpv4"]
        elif r.get("CidrIpv6"):
            kind, peer = "cidr", r["CidrIpv6"]
        elif r.get("PrefixListId"):
            kind, peer = "prefix_list", r["PrefixListId"]
            if peer not in entries:
                problems.append({
                    "kind": "prefix_list_entries_missing", "resource": r["SecurityGroupRuleId"],
                    "detail": f"rule {r['SecurityGroupRuleId']} of {r['GroupId']} refers to prefix list {peer}, "
                              f"whose entries are not in the snapshot ({PREFIX_ENTRIES_DIR}/{peer}.json): "
                              "it can match no traffic until they are added",
                })
        elif r.get("ReferencedGroupInfo"):
            ref = r["ReferencedGroupInfo"]
            kind, peer = "group", ref["GroupId"]
            if peer not in known_groups:
                problems.append({
                    "kind": "referenced_group_unresolved", "resource": r["SecurityGroupRuleId"],
                    "detail": f"rule {r['SecurityGroupRuleId']} of {r['GroupId']} refers to {peer}, "
                              f"{_why_unresolved(ref, r.get('GroupOwnerId'))}; its members are unknown, so "
                              "the rule matches no traffic here (not guessed)",
                })
        else:
            raise InventoryError(
                f"{where}: rule {r.get('SecurityGroupRuleId')} has no CidrIpv4, CidrIpv6, PrefixListId or "
                "ReferencedGroupInfo; is this describe-security-group-rules output?"
            )
        rule_rows.append({
            "rule_id": r["SecurityGroupRuleId"], "group_id": r["GroupId"], "is_egress": bool(r["IsEgress"]),
            "ip_protocol": str(r["IpProtocol"]), "protocol": protocol_number(r["IpProtocol"]),
            "from_port": int(r.get("FromPort", -1)), "to_port": int(r.get("ToPort", -1)),
            "peer_kind": kind, "peer": peer, "description": r.get("Description", ""),
        })
    rules_df = pd.DataFrame(rule_rows, columns=[
        "rule_id", "group_id", "is_egress", "ip_protocol", "protocol", "from_port", "to_port",
        "peer_kind", "peer", "description",
    ]).drop_duplicates("rule_id").reset_index(drop=True)
    for gid in sorted(set(rules_df["group_id"]) - known_groups):
        problems.append({"kind": "group_missing", "resource": gid,
                         "detail": f"{gid} has rules in {RULES_FILE} but is not in {GROUPS_FILE}: its name "
                                   "and VPC are unknown"})

    interfaces = pd.DataFrame(iface_rows, columns=[
        "interface_id", "interface_type", "description", "vpc_id", "subnet_id", "instance_id", "owner_id",
        "requester_managed", "private_ip", "group_ids",
    ]).drop_duplicates("interface_id").reset_index(drop=True)
    return Inventory(
        rules=rules_df,
        groups=groups_df,
        interfaces=interfaces,
        interface_groups=pd.DataFrame(ig_rows, columns=["interface_id", "group_id"]).drop_duplicates(),
        addresses=pd.DataFrame(addr_rows, columns=["interface_id", "address", "kind"]).drop_duplicates(),
        prefixes=pd.DataFrame(prefix_rows, columns=["interface_id", "cidr"]).drop_duplicates(),
        prefix_lists=entries,
        problems=problems,
    )


def _why_unresolved(ref: dict, owner: str | None) -> str:
    if ref.get("VpcPeeringConnectionId") or ref.get("PeeringStatus"):
        return f"a group in a peered VPC (peering {ref.get('VpcPeeringConnectionId', '?')}) not in the snapshot"
    if ref.get("UserId") and owner and ref["UserId"] != owner:
        return f"a group of another account ({ref['UserId']}) not in the snapshot"
    return "a group that is not in the snapshot (deleted, or in another account or region)"
