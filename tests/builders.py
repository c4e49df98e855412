"""Small literal inventories and flow-log records for tests.

A test states an account in a few lines (groups, rules, interfaces), writes records as dictionaries of
AWS field names, and runs the real `sgaudit.analyze` on the files it wrote::

    snap = Snapshot()
    snap.group("sg-web", "web")
    snap.rule("sgr-ssh", "sg-web", "tcp", 22, 22, cidr="10.0.0.0/8")
    snap.interface("eni-a", "10.0.0.5", groups=["sg-web"])
    logs = [rec("eni-a", "10.0.0.9", "10.0.0.5", 40000, 22, flags=2, direction="ingress"), ...]
    result = run(tmp_path, snap, logs)
    assert row(result, "sgr-ssh")["status"] == "used"
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import sgaudit

ACCOUNT = "123456789012"
T0 = 1738854240  # 2025-02-06T15:04:00Z

#: A version-5 custom format with every field the engine uses.
V5 = ("version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes start end "
      "action log-status tcp-flags flow-direction").split()
#: The default version-2 format.
V2 = ("version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes start end "
      "action log-status").split()


class Snapshot:
    """An inventory snapshot built in code and written as the AWS CLI's JSON."""

    def __init__(self) -> None:
        self.groups: list[dict] = []
        self.rules: list[dict] = []
        self.enis: list[dict] = []
        self.prefix_lists: dict[str, list[str]] = {}

    def group(self, gid: str, name: str = "", vpc: str = "vpc-1") -> Snapshot:
        self.groups.append({"GroupId": gid, "GroupName": name or gid, "Description": "", "OwnerId": ACCOUNT,
                            "VpcId": vpc, "IpPermissions": [], "IpPermissionsEgress": []})
        return self

    def rule(self, rid: str, gid: str, proto: str | int = "tcp", from_port: int = -1, to_port: int | None = None,
             *, egress: bool = False, cidr: str | None = None, prefix_list: str | None = None,
             ref: str | None = None, ref_info: dict | None = None) -> Snapshot:
        r = {"SecurityGroupRuleId": rid, "GroupId": gid, "GroupOwnerId": ACCOUNT, "IsEgress": egress,
             "IpProtocol": str(proto), "FromPort": from_port, "ToPort": from_port if to_port is None else to_port,
             "Description": "", "Tags": []}
        if cidr and ":" in cidr:
            r["CidrIpv6"] = cidr
        elif cidr:
            r["CidrIpv4"] = cidr
        elif prefix_list:
            r["PrefixListId"] = prefix_list
        elif ref or ref_info:
            r["ReferencedGroupInfo"] = ref_info or {"GroupId": ref, "UserId": ACCOUNT}
        self.rules.append(r)
        return self

    def interface(self, eni: str, ip: str | None, groups: list[str] = (), *, secondary: list[str] = (),
                  ipv6: list[str] = (), prefixes: list[str] = (), itype: str = "interface") -> Snapshot:
        addrs = ([{"Primary": True, "PrivateIpAddress": ip}] if ip else []) + [
            {"Primary": False, "PrivateIpAddress": a} for a in secondary]
        n = {"NetworkInterfaceId": eni, "Groups": [{"GroupId": g, "GroupName": g} for g in groups],
             "InterfaceType": itype, "PrivateIpAddresses": addrs, "Ipv6Addresses": [{"Ipv6Address": a} for a in ipv6],
             "Ipv4Prefixes": [{"Ipv4Prefix": p} for p in prefixes if ":" not in p],
             "Ipv6Prefixes": [{"Ipv6Prefix": p} for p in prefixes if ":" in p],
             "VpcId": "vpc-1", "SubnetId": "subnet-1", "OwnerId": ACCOUNT, "Description": "", "Status": "in-use"}
        if ip:
            n["PrivateIpAddress"] = ip
        self.enis.append(n)
        return self

    def prefix_list(self, pl: str, cidrs: list[str]) -> Snapshot:
        self.prefix_lists[pl] = cidrs
        return self

    def write(self, folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "security-groups.json").write_text(json.dumps({"SecurityGroups": self.groups}, indent=4))
        (folder / "security-group-rules.json").write_text(json.dumps({"SecurityGroupRules": self.rules}, indent=4))
        (folder / "network-interfaces.json").write_text(json.dumps({"NetworkInterfaces": self.enis}, indent=4))
        if self.prefix_lists:
            (folder / "managed-prefix-lists.json").write_text(json.dumps({"PrefixLists": [
                {"PrefixListId": pl, "AddressFamily": "IPv4", "PrefixListName": pl, "OwnerId": ACCOUNT}
                for pl in self.prefix_lists]}))
            (folder / "prefix-list-entries").mkdir(exist_ok=True)
            for pl, cidrs in self.prefix_lists.items():
                (folder / "prefix-list-entries" / f"{pl}.json").write_text(
                    json.dumps({"Entries": [{"Cidr": c, "Description": ""} for c in cidrs]}))
        return folder


def rec(eni: str | None, src: str, dst: str, sport: int | None = None, dport: int | None = None, *,
        proto: int = 6, flags: int | None = None, direction: str | None = None, action: str = "ACCEPT",
        start: int = T0, end: int | None = None, packets: int = 1, bytes_: int = 60,
        status: str = "OK") -> dict:
    """One record as a dict of AWS field names; ``None`` is written as ``-``."""
    return {"version": 5, "account-id": ACCOUNT, "interface-id": eni, "srcaddr": src, "dstaddr": dst,
            "srcport": sport, "dstport": dport, "protocol": proto, "packets": packets, "bytes": bytes_,
            "start": start, "end": start + 13 if end is None else end, "action": action, "log-status": status,
            "tcp-flags": flags, "flow-direction": direction}


def nodata(eni: str, start: int = T0, status: str = "NODATA") -> dict:
    """A NODATA (or SKIPDATA) record: every traffic field ``-``."""
    return {"version": 5, "account-id": ACCOUNT, "interface-id": eni, "srcaddr": None, "dstaddr": None,
            "srcport": None, "dstport": None, "protocol": None, "packets": None, "bytes": None, "start": start,
            "end": start + 60, "action": None, "log-status": status, "tcp-flags": None, "flow-direction": None}


def line(r: dict, fmt: list[str]) -> str:
    return " ".join("-" if r.get(f) is None else str(r[f]) for f in fmt)


def write_text(path: Path, lines: list[str], *, compress: bool = True) -> Path:
    """Write lines as they are, gzip-compressed or plain."""
    text = "".join(s + "\n" for s in lines)
    path.parent.mkdir(parents=True, exist_ok=True)
    if compress:
        with gzip.open(path, "wt", encoding="utf-8") as fh:
            fh.write(text)
    else:
        path.write_text(text)
    return path


def write_log(path: Path, records: list[dict], fmt: list[str] = V5, *, header: bool = True,
              compress: bool = True) -> Path:
    """Write records as an S3-style text file (header line, gzip) or a bare text file."""
    lines = ([" ".join(fmt)] if header else []) + [line(r, fmt) for r in records]
    return write_text(path, lines, compress=compress)


#: The two records of the VPC Flow Logs article that motivated sgaudit, with their header line.
ARTICLE_HEADER = ("account-id action az-id bytes dstaddr dstport end flow-direction instance-id interface-id "
                  "log-status packets pkt-dst-aws-service pkt-dstaddr pkt-src-aws-service pkt-srcaddr protocol "
                  "region srcaddr srcport start sublocation-id sublocation-type subnet-id tcp-flags traffic-path "
                  "type version vpc-id")
ARTICLE_LINES = [
    "002244369527 ACCEPT use1-az6 11814 10.10.0.73 4000 1738854253 ingress i-03efaa125b5acbd69 "
    "eni-027ce9d7c95605b1d OK 22 - 10.10.0.73 - 100.64.0.39 6 us-east-1 100.64.0.39 18762 1738854240 - - "
    "subnet-081cfbbbb8bfeb867 2 - IPv4 5 vpc-0d585d9ae3c06759b",
    "002244369527 ACCEPT use1-az6 9025 100.64.0.39 18762 1738854253 egress i-03efaa125b5acbd69 "
    "eni-027ce9d7c95605b1d OK 17 - 100.64.0.39 - 10.10.0.73 6 us-east-1 10.10.0.73 4000 1738854240 - - "
    "subnet-081cfbbbb8bfeb867 18 1 IPv4 5 vpc-0d585d9ae3c06759b",
]


def run(tmp_path: Path, snap: Snapshot, records: list[dict], fmt: list[str] = V5, **kwargs) -> sgaudit.Analysis:
    """Write the snapshot and one log file, and analyze them."""
    inv = snap.write(tmp_path / "inventory")
    log = write_log(tmp_path / "logs" / "flow.log.gz", records, fmt, header=fmt is not V2 or kwargs.pop("header", True))
    return sgaudit.analyze(log, inv, **kwargs)


def row(result: sgaudit.Analysis, rule_id: str) -> pd.Series:
    """The usage-table row of one rule."""
    u = result.usage.set_index("rule_id")
    return u.loc[rule_id]


def handshake(eni: str, client: str, server: str, cport: int, sport: int, *, inbound: bool = True,
              start: int = T0, req_flags: int = 2, resp_flags: int = 18) -> list[dict]:
    """The two records of one TCP handshake as the interface ``eni`` logs them (v5, with flow-direction).

    ``inbound``: ``eni`` is the server (client's SYN arrives as ingress); otherwise ``eni`` is the client.
    """
    to_server = rec(eni, client, server, cport, sport, flags=req_flags, start=start,
                    direction="ingress" if inbound else "egress", packets=3, bytes_=180)
    to_client = rec(eni, server, client, sport, cport, flags=resp_flags, start=start,
                    direction="egress" if inbound else "ingress", packets=2, bytes_=120)
    return [to_server, to_client]


def write_parquet(path: Path, recs: list[dict]) -> Path:
    """Records as a Parquet file with Athena's underscore column names and AWS's Parquet types."""
    int32 = {"version", "srcport", "dstport", "protocol", "tcp-flags"}
    int64 = {"packets", "bytes", "start", "end"}
    cols = {}
    for name in V5:
        typ = pa.int32() if name in int32 else pa.int64() if name in int64 else pa.string()
        cols[name.replace("-", "_")] = pa.array([r.get(name) for r in recs], type=typ)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(cols), path)
    return path
