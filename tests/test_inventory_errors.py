"""A bad inventory file is a clear `InventoryError`, never a traceback and never a silent misreading.

Each error names the file, the entry (index and ID when known), the field and the value, and says how to
get a correct file (fix it, or re-export it with the AWS CLI command that writes it). One test per kind
of defect: a missing key, a value that does not parse, a value of the wrong type, a text encoding, an
unreadable file, and a value that used to be read as something it is not (including duplicate rule IDs).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pytest
import sgaudit
from builders import Snapshot, handshake, write_log
from sgaudit.cli import main

RULES, GROUPS, ENIS = "security-group-rules.json", "security-groups.json", "network-interfaces.json"
ENTRIES = "prefix-list-entries/pl-corp.json"
EXPORT = {RULES: "aws ec2 describe-security-group-rules", GROUPS: "aws ec2 describe-security-groups",
          ENIS: "aws ec2 describe-network-interfaces",
          ENTRIES: "aws ec2 get-managed-prefix-list-entries --prefix-list-id pl-corp"}


def snapshot() -> Snapshot:
    """Every kind of peer and address, so that each field a test breaks is there to break."""
    snap = Snapshot().group("sg-web", "web").group("sg-app", "app")
    snap.rule("sgr-http", "sg-web", "tcp", 80, cidr="0.0.0.0/0")                 # SecurityGroupRules[0]
    snap.rule("sgr-ssh", "sg-web", "tcp", 22, cidr="10.0.0.0/8")                 # [1]
    snap.rule("sgr-db", "sg-app", "tcp", 5432, ref="sg-web")                     # [2]
    snap.rule("sgr-corp", "sg-web", "tcp", 443, prefix_list="pl-corp")           # [3]
    snap.rule("sgr-ping", "sg-web", "icmp", 8, -1, cidr="0.0.0.0/0")             # [4]
    snap.rule("sgr-out", "sg-web", "-1", -1, -1, egress=True, cidr="::/0")       # [5]
    snap.interface("eni-a", "10.0.0.5", groups=["sg-web"], secondary=["10.0.0.6"], ipv6=["2600:1f18::5"],
                   prefixes=["10.0.1.192/28"])                                    # NetworkInterfaces[0]
    snap.interface("eni-b", "10.0.0.9", groups=["sg-app"])                        # [1]
    snap.prefix_list("pl-corp", ["192.0.2.0/24"])
    return snap


def write(tmp_path: Path, file: str, change) -> Path:
    """The snapshot with ``change(doc)`` applied to the parsed JSON of ``file``."""
    inv = snapshot().write(tmp_path / "inv")
    doc = json.loads((inv / file).read_text())
    change(doc)
    (inv / file).write_text(json.dumps(doc, indent=4))
    return inv


def error(inv: Path, file: str, *parts: str) -> str:
    """Load ``inv``, expecting an InventoryError that names the file, each of ``parts`` and the advice."""
    with pytest.raises(sgaudit.InventoryError) as exc:
        sgaudit.load_inventory(inv)
    msg = str(exc.value)
    assert msg.startswith((f"{inv / file}: ", f"{inv / file}, line ")), msg
    for part in parts:
        assert part in msg, (part, msg)
    assert "\n" not in msg
    return msg


def rule(i: int):
    return lambda d: d["SecurityGroupRules"][i]


def eni(i: int):
    return lambda d: d["NetworkInterfaces"][i]


# --- 1. Missing keys -------------------------------------------------------------------------------------


@pytest.mark.parametrize("file,pick,key,where", [
    pytest.param(RULES, rule(1), "GroupId", "SecurityGroupRules[1] (sgr-ssh)", id="rule-GroupId"),
    pytest.param(RULES, rule(1), "SecurityGroupRuleId", "SecurityGroupRules[1]", id="rule-SecurityGroupRuleId"),
    pytest.param(RULES, rule(1), "IsEgress", "SecurityGroupRules[1] (sgr-ssh)", id="rule-IsEgress"),
    pytest.param(RULES, rule(1), "IpProtocol", "SecurityGroupRules[1] (sgr-ssh)", id="rule-IpProtocol"),
    pytest.param(RULES, lambda d: d["SecurityGroupRules"][2]["ReferencedGroupInfo"], "GroupId",
                 "SecurityGroupRules[2] (sgr-db), ReferencedGroupInfo", id="rule-ReferencedGroupInfo.GroupId"),
    pytest.param(GROUPS, lambda d: d["SecurityGroups"][1], "GroupId", "SecurityGroups[1]", id="group-GroupId"),
    pytest.param(ENIS, eni(1), "NetworkInterfaceId", "NetworkInterfaces[1]", id="eni-NetworkInterfaceId"),
    pytest.param(ENIS, lambda d: d["NetworkInterfaces"][0]["PrivateIpAddresses"][1], "PrivateIpAddress",
                 "NetworkInterfaces[0] (eni-a), PrivateIpAddresses[1]", id="eni-PrivateIpAddresses.PrivateIpAddress"),
    pytest.param(ENIS, lambda d: d["NetworkInterfaces"][0]["Groups"][0], "GroupId",
                 "NetworkInterfaces[0] (eni-a), Groups[0]", id="eni-Groups.GroupId"),
    pytest.param(ENTRIES, lambda d: d["Entries"][0], "Cidr", "Entries[0]", id="prefix-list-entry-Cidr"),
])
def test_missing_key_names_the_file_entry_and_key(tmp_path, file, pick, key, where):
    inv = write(tmp_path, file, lambda d: pick(d).pop(key))
    # Where the missing key is the entry's ID, the index alone names the entry.
    error(inv, file, f": {where}: {key} is missing", EXPORT[file])


def test_json_syntax_error_names_line_column_and_what_to_do(tmp_path):
    # A hand-edited snapshot: a comma too many.
    inv = snapshot().write(tmp_path / "inv")
    text = (inv / GROUPS).read_text().splitlines()
    at = next(i for i, s in enumerate(text) if '"GroupName": "web"' in s)
    text[at] += ","
    (inv / GROUPS).write_text("\n".join(text))
    msg = error(inv, GROUPS, "not valid JSON (Expecting property name enclosed in double quotes",
                EXPORT[GROUPS], "fix or re-export the file")
    assert msg.startswith(f"{inv / GROUPS}, line {at + 1}, column ") and "near" in msg


# --- 2. Values that do not parse -------------------------------------------------------------------------


@pytest.mark.parametrize("file,pick,key,value,expect", [
    pytest.param(ENIS, eni(0), "PrivateIpAddress", "10.10.0.999",
                 "NetworkInterfaces[0] (eni-a): PrivateIpAddress '10.10.0.999' is not an IPv4 address",
                 id="eni-private-ip"),
    pytest.param(ENIS, lambda d: d["NetworkInterfaces"][0]["Ipv6Addresses"][0], "Ipv6Address", "zz::1::2",
                 "NetworkInterfaces[0] (eni-a), Ipv6Addresses[0]: Ipv6Address 'zz::1::2' is not an IPv6 address",
                 id="eni-ipv6"),
    pytest.param(ENIS, lambda d: d["NetworkInterfaces"][0]["Ipv4Prefixes"][0], "Ipv4Prefix", "bogus",
                 "NetworkInterfaces[0] (eni-a), Ipv4Prefixes[0]: Ipv4Prefix 'bogus' is not an IPv4 CIDR block",
                 id="eni-ipv4-prefix"),
    pytest.param(RULES, rule(1), "CidrIpv4", "10.0.0.0/33",
                 "SecurityGroupRules[1] (sgr-ssh): CidrIpv4 '10.0.0.0/33' is not an IPv4 CIDR block",
                 id="rule-cidr-33"),
    pytest.param(RULES, rule(1), "CidrIpv4", "::/0", "CidrIpv4 '::/0' is not an IPv4 CIDR block",
                 id="rule-ipv6-in-CidrIpv4"),
    pytest.param(RULES, rule(5), "CidrIpv6", "0.0.0.0/0",
                 "SecurityGroupRules[5] (sgr-out): CidrIpv6 '0.0.0.0/0' is not an IPv6 CIDR block",
                 id="rule-ipv4-in-CidrIpv6"),
    pytest.param(ENTRIES, lambda d: d["Entries"][0], "Cidr", "not-a-cidr",
                 "Entries[0]: Cidr 'not-a-cidr' is not an IPv4 or IPv6 CIDR block", id="prefix-list-entry-cidr"),
    pytest.param(RULES, rule(1), "FromPort", None, "(sgr-ssh): FromPort is null, not an integer",
                 id="rule-FromPort-null"),
    pytest.param(RULES, rule(1), "FromPort", "abc", "(sgr-ssh): FromPort is 'abc', not an integer",
                 id="rule-FromPort-abc"),
    pytest.param(RULES, rule(1), "ToPort", 22.5, "(sgr-ssh): ToPort is 22.5, not an integer",
                 id="rule-ToPort-fraction"),
    pytest.param(RULES, rule(1), "IpProtocol", "tcpx", "(sgr-ssh): unknown IpProtocol 'tcpx'",
                 id="rule-IpProtocol-name"),
    pytest.param(RULES, rule(1), "IpProtocol", "300", "(sgr-ssh): IpProtocol '300' is not a protocol number",
                 id="rule-IpProtocol-300"),
])
def test_unparseable_value_names_the_field_and_value(tmp_path, file, pick, key, value, expect):
    inv = write(tmp_path, file, lambda d: pick(d).__setitem__(key, value))
    error(inv, file, expect, EXPORT[file])


# --- 3. Values of the wrong type -------------------------------------------------------------------------


@pytest.mark.parametrize("file,change,expect", [
    pytest.param(ENIS, lambda d: eni(0)(d).__setitem__("Groups", None),
                 "NetworkInterfaces[0] (eni-a): Groups is null, not a list", id="eni-Groups-null"),
    pytest.param(ENIS, lambda d: eni(0)(d).__setitem__("Attachment", "i-123"),
                 "NetworkInterfaces[0] (eni-a), Attachment: is 'i-123', not a JSON object", id="eni-Attachment-text"),
    pytest.param(RULES, lambda d: d.__setitem__("SecurityGroupRules", None),
                 "SecurityGroupRules is null, not a list", id="rules-null"),
    pytest.param(GROUPS, lambda d: d.__setitem__("SecurityGroups", {"GroupId": "sg-web"}),
                 "SecurityGroups is an object, not a list", id="groups-an-object"),
    pytest.param(RULES, lambda d: d["SecurityGroupRules"].append("sgr-oops"),
                 "SecurityGroupRules[6]: is 'sgr-oops', not a JSON object", id="rule-a-string"),
    pytest.param(RULES, lambda d: rule(2)(d).__setitem__("ReferencedGroupInfo", "sg-web"),
                 "SecurityGroupRules[2] (sgr-db), ReferencedGroupInfo: is 'sg-web', not a JSON object",
                 id="rule-ReferencedGroupInfo-text"),
    pytest.param(RULES, lambda d: rule(1)(d).__setitem__("GroupId", ["sg-web"]),
                 "SecurityGroupRules[1] (sgr-ssh): GroupId is a list, not a string", id="rule-GroupId-list"),
    pytest.param(ENTRIES, lambda d: d["Entries"].__setitem__(0, "192.0.2.0/24"),
                 "Entries[0]: is '192.0.2.0/24', not a JSON object", id="prefix-list-entry-a-string"),
])
def test_wrong_type_names_the_field_and_what_was_expected(tmp_path, file, change, expect):
    inv = write(tmp_path, file, change)
    error(inv, file, expect, EXPORT[file])


# --- 4. Text encodings -----------------------------------------------------------------------------------


def unescaped(path: Path) -> str:
    """The JSON text of ``path`` with the \\u00e9 that json.dumps writes turned into a real é."""
    return path.read_text(encoding="utf-8").replace("\\u00e9", "\u00e9")


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16", "utf-16-be", "latin-1", "utf-16-no-bom"])
def test_encodings_with_a_byte_order_mark_are_read_and_others_are_errors_with_the_byte_offset(tmp_path, encoding):
    inv = snapshot().group("sg-cafe", "caf\u00e9").write(tmp_path / "inv")
    if encoding == "latin-1":
        # Refused: a Latin-1 byte (an accented group name), named by line and byte offset.
        data = unescaped(inv / GROUPS).encode("latin-1")
        (inv / GROUPS).write_bytes(data)
        offset = data.index(b"\xe9")
        line = data[:offset].count(b"\n") + 1
        where = f"{inv / GROUPS}, line {line}: byte {offset} (0xe9) is not UTF-8"
        error(inv, GROUPS, where, "re-save the file as UTF-8", EXPORT[GROUPS])
        return
    if encoding == "utf-16-no-bom":
        # Refused: UTF-16 without a byte-order mark, which would otherwise fail as "Expecting value".
        (inv / RULES).write_bytes((inv / RULES).read_text().encode("utf-16-le"))
        error(inv, RULES, "NUL bytes", "re-save the file as UTF-8")
        return
    # Accepted: a byte-order mark names the encoding beyond doubt (Notepad; PowerShell 5's `>` is UTF-16 LE).
    plain = sgaudit.load_inventory(snapshot().group("sg-cafe", "caf\u00e9").write(tmp_path / "plain"))
    for file in (RULES, GROUPS, ENIS):
        data = unescaped(inv / file).encode(encoding)
        if encoding == "utf-16-be":  # Python writes no mark for an explicit byte order: add the one expected
            data = b"\xfe\xff" + data
        (inv / file).write_bytes(data)
    got = sgaudit.load_inventory(inv)
    assert "caf\u00e9" in got.groups["group_name"].tolist()
    for table in ("rules", "groups", "interfaces", "addresses", "prefixes"):
        pd.testing.assert_frame_equal(getattr(got, table), getattr(plain, table))


# --- 5. Unreadable files ---------------------------------------------------------------------------------


def test_unreadable_file_is_an_error_naming_it(tmp_path, monkeypatch):
    inv = snapshot().write(tmp_path / "inv")
    target = inv / GROUPS
    read_bytes = Path.read_bytes

    def denied(self: Path) -> bytes:  # chmod 000 does not stop root, who may run the tests
        if self == target:
            raise PermissionError(13, "Permission denied", str(self))
        return read_bytes(self)

    monkeypatch.setattr(Path, "read_bytes", denied)
    msg = error(inv, GROUPS, "cannot be read (Permission denied)", "readable by this user")
    assert msg.startswith(f"{target}: ")


def test_unreadable_folder_in_a_tree_is_an_error_not_a_skipped_region(tmp_path, monkeypatch):
    for region in ("eu-west-1", "us-east-1"):
        snapshot().write(tmp_path / "tree" / "123456789012" / region)
    walk = os.walk

    def denied(top, onerror=None, **kwargs):
        for d, dirs, files in walk(top, onerror=onerror, **kwargs):
            if d.endswith("us-east-1"):
                onerror(PermissionError(13, "Permission denied", d))
                continue
            yield d, dirs, files

    monkeypatch.setattr(os, "walk", denied)
    with pytest.raises(sgaudit.InventoryError, match="us-east-1: cannot be read"):
        sgaudit.load_inventory(tmp_path / "tree")


# --- 6. Values that used to be read as something else ----------------------------------------------------


@pytest.mark.parametrize("file,change,expect", [
    # "false" is truthy: the rule used to become an egress rule.
    pytest.param(RULES, lambda d: rule(1)(d).__setitem__("IsEgress", "false"),
                 "SecurityGroupRules[1] (sgr-ssh): IsEgress is 'false', not a JSON boolean", id="IsEgress-string"),
    pytest.param(RULES, lambda d: rule(1)(d).__setitem__("IsEgress", 0),
                 "SecurityGroupRules[1] (sgr-ssh): IsEgress is 0, not a JSON boolean", id="IsEgress-number"),
    pytest.param(ENIS, lambda d: eni(0)(d).__setitem__("RequesterManaged", "false"),
                 "NetworkInterfaces[0] (eni-a): RequesterManaged is 'false', not a JSON boolean",
                 id="RequesterManaged-string"),
    pytest.param(RULES, lambda d: rule(1)(d).update(FromPort=70000, ToPort=80000),
                 "SecurityGroupRules[1] (sgr-ssh): FromPort 70000 is not a port (0..65535", id="port-too-big"),
    pytest.param(RULES, lambda d: rule(1)(d).update(FromPort=-5, ToPort=22),
                 "SecurityGroupRules[1] (sgr-ssh): FromPort -5 is not a port", id="port-negative"),
    pytest.param(RULES, lambda d: rule(1)(d).update(FromPort=500, ToPort=400),
                 "SecurityGroupRules[1] (sgr-ssh): FromPort 500 is above ToPort 400", id="ports-reversed"),
    pytest.param(RULES, lambda d: rule(1)(d).update(FromPort=80, ToPort=-1),
                 "SecurityGroupRules[1] (sgr-ssh): FromPort 80 and ToPort -1 mix a port with -1", id="ports-half-all"),
    pytest.param(RULES, lambda d: rule(1)(d).update(PrefixListId="pl-corp"),
                 "SecurityGroupRules[1] (sgr-ssh): has both CidrIpv4 and PrefixListId", id="two-peers"),
    # IDs go into the AWS CLI commands of the plan and the findings: as an option, or as shell.
    pytest.param(RULES, lambda d: rule(1)(d).__setitem__("SecurityGroupRuleId", "--endpoint-url=https://x.example"),
                 "SecurityGroupRules[1]: SecurityGroupRuleId '--endpoint-url=https://x.example' is not an AWS ID "
                 "of the form sgr-…", id="rule-id-option"),
    pytest.param(RULES, lambda d: rule(1)(d).__setitem__("GroupId", "sg-$(reboot)"),
                 "GroupId 'sg-$(reboot)' is not an AWS ID of the form sg-…", id="group-id-shell"),
    pytest.param(ENIS, lambda d: eni(0)(d).__setitem__("NetworkInterfaceId", "eni a"),
                 "NetworkInterfaceId 'eni a' is not an AWS ID of the form eni-…", id="eni-id-space"),
    # Two different rules under one ID: which is true cannot be told, so neither is kept silently.
    pytest.param(RULES, lambda d: d["SecurityGroupRules"].append(dict(rule(1)(d), FromPort=2222, ToPort=2222)),
                 "SecurityGroupRules[6] (sgr-ssh): SecurityGroupRuleId sgr-ssh was already read from", id="dup-id"),
])
def test_values_that_would_be_misread_are_errors(tmp_path, file, change, expect):
    inv = write(tmp_path, file, change)
    msg = error(inv, file, expect, EXPORT[file])
    if "already read" in msg:
        assert f"{inv / RULES} SecurityGroupRules[1] (sgr-ssh)" in msg
        assert "FromPort 22 there, 2222 here" in msg


def test_what_is_not_misread_still_loads(tmp_path):
    # The same rule twice (a folder copied into a tree of snapshots) is one rule, silently.
    inv = write(tmp_path, RULES, lambda d: d["SecurityGroupRules"].append(dict(rule(1)(d))))
    rules = sgaudit.load_inventory(inv).rules
    assert rules["rule_id"].tolist() == ["sgr-http", "sgr-ssh", "sgr-db", "sgr-corp", "sgr-ping", "sgr-out"]
    # ICMP rules hold type and code, and protocol -1 ignores both: only integers are required there.
    def odd_ports(d):
        rule(4)(d).update(FromPort=300, ToPort=-7)
        rule(5)(d).update(FromPort=500, ToPort=400)
    rules = sgaudit.load_inventory(write(tmp_path / "odd", RULES, odd_ports)).rules.set_index("rule_id")
    assert rules.loc["sgr-ping", ["from_port", "to_port"]].tolist() == [300, -7]
    assert rules.loc["sgr-out", ["from_port", "to_port"]].tolist() == [500, 400]
    # Ports written as strings of digits were read before and still are; host bits in a CIDR are AWS's own.
    inv = write(tmp_path / "str", RULES, lambda d: rule(1)(d).update(FromPort="22", ToPort="22", CidrIpv4="10.0.0.5/8"))
    r = sgaudit.load_inventory(inv).rules.set_index("rule_id").loc["sgr-ssh"]
    assert (r["from_port"], r["to_port"], r["peer"]) == (22, 22, "10.0.0.5/8")


def test_the_cli_prints_one_line_and_exits_2(tmp_path, capsys):
    inv = write(tmp_path, RULES, lambda d: rule(1)(d).__setitem__("CidrIpv4", "10.0.0.0/33"))
    log = write_log(tmp_path / "logs" / "flow.log.gz", handshake("eni-a", "198.51.100.7", "10.0.0.5", 40000, 80))
    argv = ["usage", "--flow-logs", str(log), "--inventory", str(inv), "--out", str(tmp_path / "u.csv"),
            "--no-progress"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("sgaudit: error: ") and "Traceback" not in err
    assert f"{inv / RULES}: SecurityGroupRules[1] (sgr-ssh): CidrIpv4 '10.0.0.0/33' is not an IPv4 CIDR block" in err
