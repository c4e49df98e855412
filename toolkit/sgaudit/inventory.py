"""The inventory snapshot: security groups, their rules, network interfaces and prefix lists.

The snapshot is a folder of what the AWS CLI prints as JSON (see ``docs/SPEC.md``):

- ``security-group-rules.json``   ``aws ec2 describe-security-group-rules``
- ``security-groups.json``        ``aws ec2 describe-security-groups``
- ``network-interfaces.json``     ``aws ec2 describe-network-interfaces``
- ``managed-prefix-lists.json``   ``aws ec2 describe-managed-prefix-lists`` (optional)
- ``prefix-list-entries/<pl-id>.json``  ``aws ec2 get-managed-prefix-list-entries`` (optional)

A folder may instead hold one such folder per account and region (what ``sgaudit collect`` writes for
several); they are read together. IDs are the API's own (``SecurityGroupRuleId``), never home-made.

Every entry is checked as it is read (`_rule`, `_group`, `_interface`, `_prefix_entry`): a missing key, a
value of the wrong type or one that does not parse is an `InventoryError` naming the file, the entry
(``SecurityGroupRules[3] (sgr-…)``), the field and the value, and saying how to get a correct file. Values
are not coerced into meaning something (a string ``"false"`` is not read as a boolean), so what the
analysis sees is what AWS said.
"""

from __future__ import annotations

import codecs
import difflib
import ipaddress
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from .errors import InventoryError, SgauditError, as_list

RULES_FILE = "security-group-rules.json"
GROUPS_FILE = "security-groups.json"
INTERFACES_FILE = "network-interfaces.json"
PREFIX_LISTS_FILE = "managed-prefix-lists.json"
PREFIX_ENTRIES_DIR = "prefix-list-entries"

#: The AWS CLI command that writes each file: errors name it as the way to a correct file.
EXPORT_COMMANDS = {
    RULES_FILE: "aws ec2 describe-security-group-rules",
    GROUPS_FILE: "aws ec2 describe-security-groups",
    INTERFACES_FILE: "aws ec2 describe-network-interfaces",
    PREFIX_LISTS_FILE: "aws ec2 describe-managed-prefix-lists",
}

#: The characters of an AWS resource ID after its prefix (``sgr-0abc…``; the tests' ``sg-web`` too).
_ID = re.compile(r"[a-z]+-[A-Za-z0-9]+(-[A-Za-z0-9]+)*")
#: IpProtocol names the API uses, to IANA numbers; ``-1`` is every protocol.
PROTOCOLS = {"tcp": 6, "udp": 17, "icmp": 1, "icmpv6": 58, "-1": -1, "all": -1}
#: Protocol number → the name the EC2 API uses for it (the protocols rules may name).
PROTOCOL_NAMES = {number: name for name, number in PROTOCOLS.items() if number >= 0}
#: The keys that name a rule's peer; a rule has exactly one of them (AWS-FACTS §6).
PEER_KEYS = ("CidrIpv4", "CidrIpv6", "PrefixListId", "ReferencedGroupInfo")
#: Problems that leave a rule's peers unknown (a referenced group or prefix list outside the snapshot): such
#: a rule could match nothing, so its status says nothing about its use.
UNRESOLVED = ("referenced_group_unresolved", "prefix_list_entries_missing")
#: Peers that mean "the whole internet" of an address family.
WORLD = frozenset({"0.0.0.0/0", "::/0"})
#: Rule columns → the AWS field they come from, to name what differs between two copies of a rule.
RULE_FIELDS = {"group_id": "GroupId", "is_egress": "IsEgress", "ip_protocol": "IpProtocol",
               "protocol": "IpProtocol", "from_port": "FromPort", "to_port": "ToPort", "peer_kind": "peer",
               "peer": "peer", "description": "Description"}


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

    def unresolved_rules(self) -> dict[str, str]:
        """Rule ID → why its peers are unknown, for each rule whose referenced group or prefix list is missing.

        Such a rule (`UNRESOLVED`) could match nothing here, so its status says nothing about its use.
        """
        return {p["resource"]: p["detail"] for p in self.problems if p["kind"] in UNRESOLVED}

    def world_rules(self) -> set[str]:
        """IDs of the rules open to the whole internet of an address family.

        That is ``0.0.0.0/0``, ``::/0``, or a prefix list whose entries together cover either
        (``0.0.0.0/1`` and ``128.0.0.0/1`` do too).
        """
        world = {ipaddress.ip_network(n) for n in WORLD}
        open_lists = set()
        for pl_id, cidrs in self.prefix_lists.items():
            nets = [ipaddress.ip_network(c.strip(), strict=False) for c in cidrs]
            for version in (4, 6):
                if world & set(ipaddress.collapse_addresses(n for n in nets if n.version == version)):
                    open_lists.add(pl_id)
        r = self.rules
        cidr = (r["peer_kind"] == "cidr") & r["peer"].astype(str).str.strip().isin(WORLD)
        listed = (r["peer_kind"] == "prefix_list") & r["peer"].isin(open_lists)
        return set(r.loc[cidr | listed, "rule_id"])


# --- Reading the files ------------------------------------------------------------------------------------


def _command(path: Path) -> str:
    """The AWS CLI command that writes an inventory file."""
    if path.parent.name == PREFIX_ENTRIES_DIR:
        return f"aws ec2 get-managed-prefix-list-entries --prefix-list-id {path.stem}"
    return EXPORT_COMMANDS.get(path.name, "the AWS CLI")


def _advice(path: Path) -> str:
    """What to do about a bad file: fix it, or export it again with the command that writes it."""
    return f"fix or re-export the file with {_command(path)}"


def _decode(path: Path, raw: bytes) -> str:
    """The text of a JSON file, which the AWS CLI writes as UTF-8.

    A byte-order mark names its encoding beyond doubt, so UTF-8 with one (Notepad, PowerShell's
    ``Out-File -Encoding utf8``) and UTF-16 with one (what Windows PowerShell's ``>`` writes) are read as
    they are rather than refused. Without a mark, anything but UTF-8 is an error: guessing Latin-1 or
    Windows-1252 would read a wrong name without a word.
    """
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            return raw.decode("utf-16")
        except UnicodeDecodeError as exc:
            raise InventoryError(f"{path}: starts with a UTF-16 byte-order mark but byte {exc.start} is not "
                                 "UTF-16; re-save the file as UTF-8") from None
    # JSON text holds no NUL byte (it must be written \u0000): NULs are UTF-16 without a byte-order mark,
    # which would otherwise decode as UTF-8 and fail as "Expecting value" with no hint why.
    if b"\x00" in raw:
        raise InventoryError(f"{path}: holds NUL bytes, so it is not UTF-8 text (UTF-16 without a byte-order "
                             "mark?); re-save the file as UTF-8, e.g. PowerShell's Out-File -Encoding utf8")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise InventoryError(f"{path}, line {line}: byte {exc.start} (0x{raw[exc.start]:02x}) is not UTF-8 (a "
                             "file saved as Latin-1 or Windows-1252?); re-save the file as UTF-8 or re-export it "
                             f"with {_command(path)}") from None


def _load(path: Path, key: str, required: bool = True) -> list:
    if not path.exists():
        if required:
            raise InventoryError(
                f"{path}: missing. The inventory folder needs {RULES_FILE}, {GROUPS_FILE} and "
                f"{INTERFACES_FILE} (the JSON printed by aws ec2 describe-security-group-rules, "
                "describe-security-groups and describe-network-interfaces), or run 'sgaudit collect'."
            )
        return []
    text = _decode(path, path.read_bytes())
    if not text.strip():
        raise InventoryError(f"{path}: is empty; re-export it with {_command(path)}")
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        line = exc.doc.splitlines()[exc.lineno - 1] if exc.doc.splitlines()[exc.lineno - 1:] else ""
        near = line[max(0, exc.colno - 41):exc.colno + 20].strip()
        raise InventoryError(f"{path}, line {exc.lineno}, column {exc.colno}: not valid JSON ({exc.msg}"
                             + (f", near {near!r}" if near else "") + f"); {_advice(path)}") from exc
    if not isinstance(doc, dict) or key not in doc:
        found = list(doc)[:5] if isinstance(doc, dict) else type(doc).__name__
        raise InventoryError(f"{path}: expected a JSON object with key {key!r} (AWS CLI output); found {found}")
    if not isinstance(doc[key], list):
        raise InventoryError(f"{path}: {key} is {_show(doc[key])}, not a list; {_advice(path)}")
    return doc[key]


def _entries(path: Path, key: str, required: bool = True) -> list[_Entry]:
    """The objects of the list ``key`` of a file, each ready to be read field by field."""
    return [_Entry(path, f"{key}[{i}]", item) for i, item in enumerate(_load(path, key, required))]


def _snapshot_dirs(root: Path) -> list[Path]:
    if root.is_file():
        raise InventoryError(f"{root}: is a file; the inventory is the folder that holds {RULES_FILE}, "
                             f"{GROUPS_FILE} and {INTERFACES_FILE}: pass --inventory {root.parent}")
    if not root.is_dir():
        raise InventoryError(f"{root}: no such inventory folder; pass --inventory DIR (see 'sgaudit collect')")
    if (root / RULES_FILE).exists() or (root / INTERFACES_FILE).exists():
        return [root]

    def unreadable(exc: OSError) -> None:
        # os.walk (like Path.rglob) skips a folder it cannot list: a region's snapshot would vanish unsaid.
        raise exc

    # followlinks: the same folders as Path.rglob, which follows links to folders.
    subs = sorted(Path(d) for d, _, files in os.walk(root, onerror=unreadable, followlinks=True)
                  if RULES_FILE in files)
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
        For a missing or unreadable file, JSON of the wrong shape, or an entry with a missing, mistyped
        or unparseable field (naming the file, the entry, the field and the value), or two different
        rules with one ``SecurityGroupRuleId``.
    """
    try:
        return _read(Path(root))
    except OSError as exc:
        raise InventoryError(f"{exc.filename or root}: cannot be read ({exc.strerror or exc}); check that the "
                             "files and folders of the inventory are readable by this user") from exc


def _read(root: Path) -> Inventory:
    rules, groups, interfaces = [], [], []
    entries: dict[str, list[str]] = {}
    for d in _snapshot_dirs(root):
        rules += [_rule(e) for e in _entries(d / RULES_FILE, "SecurityGroupRules")]
        groups += [_group(e) for e in _entries(d / GROUPS_FILE, "SecurityGroups")]
        interfaces += [_interface(e) for e in _entries(d / INTERFACES_FILE, "NetworkInterfaces")]
        # Not used yet beyond its shape: the entries files say what a list holds.
        _entries(d / PREFIX_LISTS_FILE, "PrefixLists", required=False)
        ent_dir = d / PREFIX_ENTRIES_DIR
        if ent_dir.is_dir():
            for f in sorted(ent_dir.glob("*.json")):
                entries[f.stem] = [_prefix_entry(e) for e in _entries(f, "Entries")]
    return _build(_unique(rules), groups, interfaces, entries)


# --- Checking entries -------------------------------------------------------------------------------------


def _show(value: object) -> str:
    """A value as the JSON file spells it (``null``, ``true``), or Python's repr for a string, shortened."""
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


class _Entry:
    """One object of an inventory file, read field by field; every error names the file and the entry.

    Parameters
    ----------
    path : Path
        The file.
    label : str
        Where the object is in the file: ``SecurityGroupRules[3]``, ``NetworkInterfaces[0] (eni-1),
        Groups[1]``. `name` adds the entry's ID once it is read.
    item : object
        The parsed JSON; anything but an object is an error.
    """

    def __init__(self, path: Path, label: str, item: object) -> None:
        self.path, self.label = path, label
        if not isinstance(item, dict):
            raise self.error(f"is {_show(item)}, not a JSON object")
        self.item: dict = item

    def name(self, ident: str) -> None:
        """Add the entry's ID to its label, for the errors that follow."""
        self.label = f"{self.label} ({ident})"

    def error(self, what: str) -> InventoryError:
        """The error for this entry: ``<file>: <entry>: <what>; <advice>``."""
        return InventoryError(f"{self.path}: {self.label}: {what}; {_advice(self.path)}")

    def child(self, key: str, item: object) -> _Entry:
        """A nested object (``ReferencedGroupInfo``, ``Groups[1]``), labelled inside this one."""
        return _Entry(self.path, f"{self.label}, {key}", item)

    def _absent(self, key: str) -> InventoryError:
        """The error for a required field that is missing, null or empty."""
        return self.error(f"{key} is missing" if key not in self.item else f"{key} is {_show(self.item[key])}")

    def text(self, key: str, required: bool = True) -> str | None:
        """A string field. An optional one that is absent, null or empty is None, as ``.get`` read it."""
        value = self.item.get(key)
        if value is None or value == "":
            if required:
                raise self._absent(key)
            return None
        if not isinstance(value, str):
            raise self.error(f"{key} is {_show(value)}, not a string")
        return value

    def ident(self, key: str, prefix: str) -> str:
        """An AWS ID (``sg-…``, ``sgr-…``, ``eni-…``, ``pl-…``): its prefix, then letters, digits and dashes.

        Checked because IDs end up in the AWS CLI commands of the plan and the findings: a value starting
        with ``-`` would be read there as an option, one with ``$(…)`` or a quote as shell.
        """
        value = self.text(key)
        if not _ID.fullmatch(value) or not value.startswith(prefix + "-"):
            raise self.error(f"{key} {_show(value)} is not an AWS ID of the form {prefix}-… (letters, digits, "
                             "dashes)")
        return value

    def flag(self, key: str, default: bool | None = None) -> bool:
        """A boolean field: JSON ``true`` or ``false`` only; absent or null is ``default`` (None: required).

        The AWS CLI writes booleans unquoted. A string is refused, not parsed: ``"false"`` is truthy in
        Python and once turned an inbound rule into an outbound one, and "true"/"false"/"0"/"no" spellings
        say the file went through some other tool whose other changes are unknown.
        """
        value = self.item.get(key)
        if value is None:
            if default is None:
                raise self._absent(key)
            return default
        if not isinstance(value, bool):
            raise self.error(f"{key} is {_show(value)}, not a JSON boolean (true or false, without quotes)")
        return value

    def integer(self, key: str, default: int) -> int:
        """An integer field, ``default`` when absent; a string of digits is read too (IpProtocol is one)."""
        if key not in self.item:
            return default
        value = self.item[key]
        number = None
        if isinstance(value, int) and not isinstance(value, bool):
            number = value
        elif isinstance(value, float) and value.is_integer():
            number = int(value)
        elif isinstance(value, str):
            try:
                number = int(value.strip())
            except ValueError:
                pass
        if number is None:
            raise self.error(f"{key} is {_show(value)}, not an integer")
        return number

    def objects(self, key: str) -> list[_Entry]:
        """A list of objects; absent is empty (as ``.get(key, [])`` read it), null is an error."""
        value = self.item.get(key, [])
        if not isinstance(value, list):
            raise self.error(f"{key} is {_show(value)}, not a list")
        return [self.child(f"{key}[{i}]", v) for i, v in enumerate(value)]

    def address(self, key: str, version: int,
                required: bool = True) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
        """An IPv4 or IPv6 address field (per ``version``), parsed; None for an absent optional one."""
        value = self.text(key, required)
        if value is None:
            return None
        try:
            ip = ipaddress.ip_address(value)
        except ValueError:
            ip = None
        if ip is None or ip.version != version:
            raise self.error(f"{key} {_show(value)} is not an IPv{version} address")
        return ip

    def network(self, key: str, version: int | None = None) -> str:
        """A CIDR block field of the family ``version`` (None: either), returned as written.

        Host bits are allowed (``10.0.0.5/8``): the matching code ignores them, as AWS does.
        """
        value = self.text(key)
        try:
            net = ipaddress.ip_network(value.strip(), strict=False)
        except ValueError:
            net = None
        if net is None or (version is not None and net.version != version):
            family = f"IPv{version}" if version else "IPv4 or IPv6"
            raise self.error(f"{key} {_show(value)} is not an {family} CIDR block")
        return value


@dataclass
class _Rule:
    """A checked rule: its `Inventory.rules` row, what `_build` needs to explain it, and where it was read."""

    row: dict
    entry: _Entry
    ref: dict | None = None
    owner: str | None = None


def _rule(e: _Entry) -> _Rule:
    """Check one entry of ``SecurityGroupRules`` and turn it into a rules row."""
    rid = e.ident("SecurityGroupRuleId", "sgr")
    e.name(rid)
    gid = e.ident("GroupId", "sg")
    egress = e.flag("IsEgress")
    ip_protocol = e.item.get("IpProtocol")
    if ip_protocol is None or isinstance(ip_protocol, (bool, dict, list, float)):
        raise e.error("IpProtocol is missing" if "IpProtocol" not in e.item
                      else f"IpProtocol is {_show(ip_protocol)}, not a protocol name or number")
    try:
        protocol = protocol_number(ip_protocol)
    except InventoryError as exc:
        raise e.error(str(exc)) from None
    if not -1 <= protocol <= 255:
        raise e.error(f"IpProtocol {_show(ip_protocol)} is not a protocol number (0..255, or -1 for all)")
    from_port, to_port = _ports(e, protocol)
    kind, peer, ref = _peer(e)
    row = {"rule_id": rid, "group_id": gid, "is_egress": egress, "ip_protocol": str(ip_protocol),
           "protocol": protocol, "from_port": from_port, "to_port": to_port, "peer_kind": kind, "peer": peer,
           "description": e.item.get("Description", "")}
    return _Rule(row, e, ref, e.item.get("GroupOwnerId"))


def _ports(e: _Entry, protocol: int) -> tuple[int, int]:
    """FromPort and ToPort of a rule (absent: -1), range-checked where they are ports."""
    from_port, to_port = e.integer("FromPort", -1), e.integer("ToPort", -1)
    # Only TCP and UDP rules hold ports here. ICMP rules hold the type and code (-1 = all), and AWS ignores
    # both fields for any other protocol ("allows traffic on all ports, regardless of any port range").
    if protocol not in (6, 17):
        return from_port, to_port
    for key, port in (("FromPort", from_port), ("ToPort", to_port)):
        if not -1 <= port <= 65535:
            raise e.error(f"{key} {port} is not a port (0..65535, or -1 for all)")
    # A single -1 beside a port has no meaning AWS gives it (the matching code would read it as all
    # ports, or as none), and a reversed range matches nothing: both are refused, not interpreted.
    if (from_port == -1) != (to_port == -1):
        raise e.error(f"FromPort {from_port} and ToPort {to_port} mix a port with -1 (all ports); use -1 for "
                      "both, or a range 0..65535 for both")
    if from_port > to_port:
        raise e.error(f"FromPort {from_port} is above ToPort {to_port} (a reversed port range)")
    return from_port, to_port


def _peer(e: _Entry) -> tuple[str, str, dict | None]:
    """``(peer_kind, peer, ReferencedGroupInfo)`` of a rule, which names exactly one peer."""
    present = [k for k in PEER_KEYS if e.item.get(k)]
    if not present:
        raise e.error("has no CidrIpv4, CidrIpv6, PrefixListId or ReferencedGroupInfo (is this "
                      "describe-security-group-rules output?)")
    if len(present) > 1:
        raise e.error(f"has both {present[0]} and {present[1]}, but a rule has exactly one peer")
    key = present[0]
    if key == "CidrIpv4":
        return "cidr", e.network(key, 4), None
    if key == "CidrIpv6":
        return "cidr", e.network(key, 6), None
    if key == "PrefixListId":
        return "prefix_list", e.ident(key, "pl"), None
    ref = e.child(key, e.item[key])
    return "group", ref.ident("GroupId", "sg"), ref.item


def _unique(rules: list[_Rule]) -> list[_Rule]:
    """Each rule once, in the order read.

    A tree of snapshot folders may list the same rule twice (one folder copied into another): identical
    copies are one rule. Two different rules with one ID mean a stale copy, and which one is true cannot
    be told from the files: an error naming both and what differs.
    """
    first: dict[str, _Rule] = {}
    for r in rules:
        seen = first.setdefault(r.row["rule_id"], r)
        if seen is r or seen.row == r.row:
            continue
        diff = [k for k in r.row if r.row[k] != seen.row[k]]
        fields = ", ".join(dict.fromkeys(RULE_FIELDS[k] for k in diff))
        values = "; ".join(f"{RULE_FIELDS[k]} {_show(seen.row[k])} there, {_show(r.row[k])} here" for k in diff[:3])
        raise r.entry.error(
            f"SecurityGroupRuleId {r.row['rule_id']} was already read from {seen.entry.path} {seen.entry.label} "
            f"with a different {fields} ({values}); remove the stale copy, or re-export both folders with "
            f"{EXPORT_COMMANDS[RULES_FILE]}"
        )
    return list(first.values())


def _group(e: _Entry) -> dict:
    """Check one entry of ``SecurityGroups`` and turn it into a groups row."""
    gid = e.ident("GroupId", "sg")
    e.name(gid)
    return {"group_id": gid, "group_name": e.item.get("GroupName", ""), "vpc_id": e.item.get("VpcId"),
            "owner_id": e.item.get("OwnerId"), "description": e.item.get("Description", "")}


@dataclass
class _Interface:
    """A checked network interface: its `Inventory.interfaces` row and its groups, addresses and prefixes."""

    row: dict
    group_ids: list[str]
    addresses: list[dict]
    prefixes: list[dict]


def _interface(e: _Entry) -> _Interface:
    """Check one entry of ``NetworkInterfaces`` and turn it into its rows."""
    eid = e.ident("NetworkInterfaceId", "eni")
    e.name(eid)
    gids = [g.ident("GroupId", "sg") for g in e.objects("Groups")]
    attachment = e.child("Attachment", e.item["Attachment"]) if e.item.get("Attachment") else None
    primary = e.address("PrivateIpAddress", 4, required=False)
    row = {
        "interface_id": eid, "interface_type": e.item.get("InterfaceType", "interface"),
        "description": e.item.get("Description", ""), "vpc_id": e.item.get("VpcId"),
        "subnet_id": e.item.get("SubnetId"), "instance_id": attachment.item.get("InstanceId") if attachment else None,
        "owner_id": e.item.get("OwnerId"), "requester_managed": e.flag("RequesterManaged", default=False),
        "private_ip": e.item.get("PrivateIpAddress"), "group_ids": " ".join(gids),
    }
    addresses, seen = [], set()
    if primary is not None:
        addresses.append({"interface_id": eid, "address": e.item["PrivateIpAddress"], "kind": "primary"})
        seen.add(e.item["PrivateIpAddress"])
    for a in e.objects("PrivateIpAddresses"):
        a.address("PrivateIpAddress", 4)
        ip = a.item["PrivateIpAddress"]
        kind = "primary" if a.flag("Primary", default=False) else "secondary"
        if ip not in seen:
            seen.add(ip)
            addresses.append({"interface_id": eid, "address": ip, "kind": kind})
    for a in e.objects("Ipv6Addresses"):
        addresses.append({"interface_id": eid, "address": str(a.address("Ipv6Address", 6)), "kind": "ipv6"})
    prefixes = [{"interface_id": eid, "cidr": p.network("Ipv4Prefix", 4)} for p in e.objects("Ipv4Prefixes")]
    prefixes += [{"interface_id": eid, "cidr": p.network("Ipv6Prefix", 6)} for p in e.objects("Ipv6Prefixes")]
    return _Interface(row, gids, addresses, prefixes)


def _prefix_entry(e: _Entry) -> str:
    """Check one entry of a prefix list's ``Entries``: its CIDR block."""
    return e.network("Cidr")


# --- The tables -------------------------------------------------------------------------------------------


def _build(rules: list[_Rule], groups: list[dict], interfaces: list[_Interface],
           entries: dict[str, list[str]]) -> Inventory:
    problems: list[dict] = []
    groups_df = pd.DataFrame(groups, columns=["group_id", "group_name", "vpc_id", "owner_id", "description"])
    groups_df = groups_df.drop_duplicates("group_id").reset_index(drop=True)
    known_groups = set(groups_df["group_id"])
    # A referenced group is resolved when the snapshot knows its members: it is listed in the groups file,
    # carried by an interface (its members are those interfaces), or owns rules (a group of this account
    # and region, whose members are the interfaces of the snapshot that carry it: maybe none).
    resolved = (known_groups | {g for n in interfaces for g in n.group_ids}
                | {r.row["group_id"] for r in rules})

    for r in rules:
        rid, gid, kind, peer = r.row["rule_id"], r.row["group_id"], r.row["peer_kind"], r.row["peer"]
        if kind == "prefix_list" and peer not in entries:
            problems.append({
                "kind": "prefix_list_entries_missing", "resource": rid,
                "detail": f"rule {rid} of {gid} refers to prefix list {peer}, "
                          f"whose entries are not in the snapshot ({PREFIX_ENTRIES_DIR}/{peer}.json): "
                          "it can match no traffic until they are added",
            })
        elif kind == "group" and peer not in resolved:
            problems.append({
                "kind": "referenced_group_unresolved", "resource": rid,
                "detail": f"rule {rid} of {gid} refers to {peer}, {_why_unresolved(r.ref, r.owner)}; its members "
                          "are unknown, so the rule matches no traffic here (not guessed)",
            })
    rules_df = pd.DataFrame([r.row for r in rules], columns=[
        "rule_id", "group_id", "is_egress", "ip_protocol", "protocol", "from_port", "to_port",
        "peer_kind", "peer", "description",
    ])
    for gid in sorted(set(rules_df["group_id"]) - known_groups):
        problems.append({"kind": "group_missing", "resource": gid,
                         "detail": f"{gid} has rules in {RULES_FILE} but is not in {GROUPS_FILE}: its name "
                                   "and VPC are unknown"})

    iface_df = pd.DataFrame([n.row for n in interfaces], columns=[
        "interface_id", "interface_type", "description", "vpc_id", "subnet_id", "instance_id", "owner_id",
        "requester_managed", "private_ip", "group_ids",
    ]).drop_duplicates("interface_id").reset_index(drop=True)
    ig_rows = [{"interface_id": n.row["interface_id"], "group_id": g} for n in interfaces for g in n.group_ids]
    return Inventory(
        rules=rules_df,
        groups=groups_df,
        interfaces=iface_df,
        interface_groups=pd.DataFrame(ig_rows, columns=["interface_id", "group_id"]).drop_duplicates(),
        addresses=pd.DataFrame([a for n in interfaces for a in n.addresses],
                               columns=["interface_id", "address", "kind"]).drop_duplicates(),
        prefixes=pd.DataFrame([p for n in interfaces for p in n.prefixes],
                              columns=["interface_id", "cidr"]).drop_duplicates(),
        prefix_lists=entries,
        problems=problems,
    )


def _why_unresolved(ref: dict, owner: str | None) -> str:
    if ref.get("VpcPeeringConnectionId") or ref.get("PeeringStatus"):
        return f"a group in a peered VPC (peering {ref.get('VpcPeeringConnectionId', '?')}) not in the snapshot"
    if ref.get("UserId") and owner and ref["UserId"] != owner:
        return f"a group of another account ({ref['UserId']}) not in the snapshot"
    return "a group that is not in the snapshot (deleted, or in another account or region)"


def check_group_ids(inventory: Inventory, group_ids) -> None:
    """Fail on a group ID the snapshot does not hold, naming the closest one it does.

    A filter by a mistyped ID would otherwise give a silently empty report.

    Raises
    ------
    SgauditError
        For any ID the groups, rules and interfaces of the snapshot do not name.
    """
    known = set(inventory.groups["group_id"]) | set(inventory.rules["group_id"]) | set(
        inventory.interface_groups["group_id"])
    unknown = [g for g in as_list(group_ids) if g not in known]
    if unknown:
        hints = [f"{g!r}" + (f" (closest: {close[0]})" if (close := difflib.get_close_matches(g, known, n=1))
                             else "") for g in unknown]
        raise SgauditError(f"group_ids: {', '.join(hints)} not in the snapshot, which has {len(known)} groups; "
                           "check the ID (sg-…)")
