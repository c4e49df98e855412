#!/usr/bin/env python3
"""Deterministic generator of version-5 VPC Flow Logs plus a matching inventory snapshot.

Writes, under ``--out DIR``:

* ``flow-logs/AWSLogs/123456789012/vpcflowlogs/us-east-1/2025/02/06/
  123456789012_vpcflowlogs_us-east-1_fl-0123456789abcdef0_20250206THHMMZ_<hash>.log.gz`` -- ``--files``
  gzip files holding ``--records`` records in total, each beginning with the 29-field header line that S3
  delivery writes. A file named ``THHMMZ`` holds records whose ``end`` lies in ``[HH:MM, HH:MM+5)`` (the
  S3 naming rule, AWS-FACTS.md section 5); up to 288 files cover one day in 5-minute windows, more files
  share windows (different hash, as when a 75 MB file is split).
* ``inventory/security-group-rules.json``, ``security-groups.json``, ``network-interfaces.json`` -- what
  ``aws ec2 describe-*`` prints, for ~200 interfaces in 20 groups of ~10 rules each.
* ``manifest.json`` -- the parameters, per-file record counts and sizes; written last, so a folder without
  it is an interrupted run.

The traffic follows the rules (AWS-FACTS.md sections 2, 3, 6): an inbound TCP connection is an ingress
record with SYN (2) from the peer and an egress SYN-ACK (18) from the interface in the same minute
(3/19 when it also closed), some continuing with 0 and finally FIN (1) in later minutes; the peer is
picked inside the source of an ingress rule of one of the interface's groups (internet addresses for
``0.0.0.0/0``, private addresses of the referenced group's interfaces, ...). Traffic between two logged
interfaces is written at both ends. Outbound connections follow egress rules (egress SYN, ingress
SYN-ACK). Some rules get no traffic on purpose (their weight is 0), some interfaces only log NODATA,
one group is attached to nothing and one only to interfaces that never appear in the logs, so every
``status`` of SPEC.md occurs.

Record shares (measured on 1M records, see README.md): ~80 % inbound TCP, ~10 % outbound TCP, ~5 % UDP,
~3 % REJECT, ~1.5 % ICMP, a few NODATA. Same seed, records and files => byte-identical output.

``--long-lived F`` (default 0: the mix above, unchanged) makes a share F of the records come from
`LONG_LIVED_POOL` long-lived inbound TCP connections instead (connection pools, keep-alive clients of
a database or an internal service): the same connections, opened before the day began, write mid-stream
records (tcp-flags 0) at both ends in every file. Conversations per record fall from ~0.38 to about
0.38 × (1 - F): the knob shows how the cost of a run depends on the shape of the traffic.

Stdlib only. Files are generated in parallel (``--workers``, default 2), lines are built with f-strings
and written in large blocks through ``gzip.GzipFile`` (``mtime=0`` for reproducible bytes).
"""

from __future__ import annotations

import argparse
import bisect
import gzip
import hashlib
import json
import multiprocessing as mp
import os
import random
import shutil
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

GENERATOR_VERSION = 1

ACCOUNT = "123456789012"
REGION = "us-east-1"
FLOW_LOG_ID = "fl-0123456789abcdef0"
DAY = datetime(2025, 2, 6, tzinfo=UTC)
KEY_PREFIX = f"flow-logs/AWSLogs/{ACCOUNT}/vpcflowlogs/{REGION}/{DAY:%Y/%m/%d}"
HEADER = (
    "version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes start end "
    "action log-status vpc-id subnet-id instance-id tcp-flags type pkt-srcaddr pkt-dstaddr region az-id "
    "sublocation-type sublocation-id pkt-src-aws-service pkt-dst-aws-service flow-direction traffic-path"
)
assert len(HEADER.split()) == 29

WINDOWS_PER_DAY = 288  # 5-minute S3 delivery windows
CHUNK_LINES = 40_000  # lines joined and compressed per write

# ---------------------------------------------------------------------------------------------------
# The inventory: roles of security groups. A rule is (protocol, from, to, peer, weight, description);
# peer is a CIDR or "@role" (the group of that role with the same variant index, modulo the count);
# weight is the relative amount of traffic the rule attracts, 0 = never used (an "unused" rule).
# ---------------------------------------------------------------------------------------------------
ROLES: list[dict] = [
    dict(name="web", groups=4, enis=18, weight=10.0, ipv6=0.5, egress="default", ingress=[
        ("tcp", 443, 443, "0.0.0.0/0", 50, "HTTPS from the internet"),
        ("tcp", 80, 80, "0.0.0.0/0", 8, "HTTP from the internet, redirected to HTTPS"),
        ("tcp", 443, 443, "::/0", 4, "HTTPS from the internet, IPv6"),
        ("tcp", 80, 80, "::/0", 0.5, "HTTP from the internet, IPv6"),
        ("tcp", 22, 22, "@bastion", 0.3, "SSH from the bastion"),
        ("tcp", 9100, 9100, "@monitoring", 1, "node exporter scrape"),
        ("icmp", -1, -1, "10.0.0.0/16", 1, "ping from the VPC"),
        ("tcp", 8443, 8443, "10.0.0.0/16", 0, "old admin console"),
        ("tcp", 22, 22, "203.0.113.0/24", 0, "SSH from the office (legacy)"),
    ]),
    dict(name="app", groups=4, enis=14, weight=0.5, ipv6=0.0, egress="default", ingress=[
        ("tcp", 8080, 8089, "@web", 30, "application ports from the web tier"),
        ("tcp", 8000, 8999, "10.0.0.0/16", 3, "internal services"),
        ("tcp", 8080, 8080, "10.1.0.0/16", 3, "API for the peered analytics VPC"),
        ("udp", 7946, 7946, "@app", 1, "cluster gossip"),
        ("tcp", 9100, 9100, "@monitoring", 1, "node exporter scrape"),
        ("tcp", 22, 22, "@bastion", 0.3, "SSH from the bastion"),
        ("icmp", -1, -1, "10.0.0.0/16", 0.5, "ping from the VPC"),
        ("tcp", 5005, 5005, "10.0.0.0/16", 0, "remote debugger"),
        ("tcp", 443, 443, "198.51.100.0/24", 0, "partner webhook (retired)"),
    ]),
    dict(name="db", groups=3, enis=6, weight=0.4, ipv6=0.0, egress="db", ingress=[
        ("tcp", 5432, 5432, "@app", 25, "PostgreSQL from the app tier"),
        ("tcp", 5432, 5432, "@db", 1, "replication"),
        ("tcp", 5432, 5432, "10.1.0.0/16", 1, "reporting from the peered analytics VPC"),
        ("tcp", 3306, 3306, "@app", 0, "MySQL from the app tier (migrated away)"),
        ("tcp", 5432, 5432, "203.0.113.10/32", 0, "DBA workstation"),
        ("tcp", 9100, 9100, "@monitoring", 1, "node exporter scrape"),
        ("tcp", 9187, 9187, "@monitoring", 1, "postgres exporter scrape"),
        ("tcp", 22, 22, "@bastion", 0.1, "SSH from the bastion"),
    ]),
    dict(name="cache", groups=2, enis=8, weight=0.3, ipv6=0.0, egress="default", ingress=[
        ("tcp", 6379, 6379, "@app", 20, "Redis from the app tier"),
        ("tcp", 6379, 6379, "@web", 2, "Redis sessions from the web tier"),
        ("tcp", 11211, 11211, "@app", 0, "memcached (retired)"),
        ("tcp", 9100, 9100, "@monitoring", 1, "node exporter scrape"),
        ("tcp", 9121, 9121, "@monitoring", 1, "redis exporter scrape"),
        ("tcp", 22, 22, "@bastion", 0.1, "SSH from the bastion"),
        ("icmp", -1, -1, "10.0.0.0/16", 0.2, "ping from the VPC"),
        ("tcp", 16379, 16379, "@cache", 0, "cluster bus"),
    ]),
    dict(name="bastion", groups=1, enis=2, weight=0.5, ipv6=1.0, egress="default", ingress=[
        ("tcp", 22, 22, "198.51.100.0/24", 5, "SSH from the office"),
        ("tcp", 22, 22, "203.0.113.0/24", 3, "SSH from the VPN"),
        ("tcp", 22, 22, "2001:db8:1234::/48", 1, "SSH from the office, IPv6"),
        ("tcp", 3389, 3389, "0.0.0.0/0", 0, "RDP (should be removed)"),
        ("icmp", -1, -1, "0.0.0.0/0", 1, "ping from anywhere"),
        ("tcp", 443, 443, "198.51.100.0/24", 0, "web console"),
        ("tcp", 9100, 9100, "@monitoring", 1, "node exporter scrape"),
        ("udp", 1194, 1194, "0.0.0.0/0", 0, "OpenVPN (replaced)"),
    ]),
    dict(name="monitoring", groups=1, enis=4, weight=1.0, ipv6=0.0, egress="default", ingress=[
        ("udp", 8125, 8125, "10.0.0.0/16", 5, "statsd"),
        ("udp", 514, 514, "10.0.0.0/16", 2, "syslog"),
        ("tcp", 9090, 9090, "10.0.0.0/16", 3, "Prometheus"),
        ("tcp", 3000, 3000, "198.51.100.0/24", 1, "Grafana from the office"),
        ("tcp", 3000, 3000, "203.0.113.0/24", 0.5, "Grafana from the VPN"),
        ("tcp", 22, 22, "@bastion", 0.1, "SSH from the bastion"),
        ("tcp", 9093, 9093, "10.0.0.0/16", 0, "Alertmanager"),
        ("icmp", -1, -1, "10.0.0.0/16", 0.2, "ping from the VPC"),
    ]),
    dict(name="dns", groups=1, enis=4, weight=1.0, ipv6=0.0, egress="default", ingress=[
        ("udp", 53, 53, "10.0.0.0/16", 10, "DNS from the VPC"),
        ("tcp", 53, 53, "10.0.0.0/16", 1, "DNS over TCP from the VPC"),
        ("udp", 53, 53, "10.1.0.0/16", 2, "DNS from the peered analytics VPC"),
        ("udp", 123, 123, "10.0.0.0/16", 2, "NTP from the VPC"),
        ("tcp", 853, 853, "10.0.0.0/16", 0, "DNS over TLS"),
        ("tcp", 9100, 9100, "@monitoring", 1, "node exporter scrape"),
        ("tcp", 22, 22, "@bastion", 0.1, "SSH from the bastion"),
        ("icmp", -1, -1, "10.0.0.0/16", 0.2, "ping from the VPC"),
    ]),
    dict(name="batch", groups=2, enis=10, weight=0.5, ipv6=0.0, egress="default", ingress=[
        ("tcp", 22, 22, "@bastion", 0.3, "SSH from the bastion"),
        ("tcp", 8000, 8999, "10.0.0.0/16", 0, "job API"),
        ("tcp", 9100, 9100, "@monitoring", 1, "node exporter scrape"),
        ("tcp", 4040, 4040, "198.51.100.0/24", 0, "Spark UI from the office"),
        ("udp", 8125, 8125, "@monitoring", 0, "statsd back-channel"),
        ("tcp", 7077, 7077, "@batch", 1, "Spark master"),
        ("tcp", 7078, 7100, "@batch", 2, "Spark executors"),
        ("icmp", -1, -1, "10.0.0.0/16", 0.2, "ping from the VPC"),
    ]),
    # Attached to no interface: every rule is "unattached".
    dict(name="legacy-ftp", groups=1, enis=0, weight=0.0, ipv6=0.0, egress="default", ingress=[
        ("tcp", 21, 21, "0.0.0.0/0", 1, "FTP control"),
        ("tcp", 20, 20, "0.0.0.0/0", 1, "FTP data"),
        ("tcp", 990, 990, "0.0.0.0/0", 1, "FTPS"),
        ("tcp", 50000, 50100, "0.0.0.0/0", 1, "FTP passive range"),
        ("tcp", 22, 22, "@bastion", 1, "SSH from the bastion"),
        ("icmp", -1, -1, "0.0.0.0/0", 1, "ping"),
        ("tcp", 23, 23, "203.0.113.0/24", 1, "telnet"),
        ("udp", 69, 69, "10.0.0.0/16", 1, "TFTP"),
    ]),
    # Attached only to interfaces that never show up in the logs: every rule is "unobserved".
    dict(name="quarantine", groups=1, enis=8, weight=0.0, ipv6=0.0, egress="quarantine", ingress=[
        ("tcp", 22, 22, "@bastion", 1, "SSH from the bastion for forensics"),
        ("tcp", 443, 443, "198.51.100.0/24", 1, "forensics agent"),
        ("icmp", -1, -1, "10.0.0.0/16", 1, "ping from the VPC"),
        ("tcp", 9100, 9100, "@monitoring", 1, "node exporter scrape"),
        ("tcp", 8080, 8080, "10.0.0.0/16", 1, "inspection proxy"),
        ("udp", 514, 514, "10.0.0.0/16", 1, "syslog"),
        ("tcp", 5985, 5986, "198.51.100.0/24", 1, "WinRM"),
        ("tcp", 3389, 3389, "198.51.100.0/24", 1, "RDP for forensics"),
    ]),
]

# Egress rule sets: (protocol, from, to, peer, description). The default egress rule of a new group has
# no description.
EGRESS = {
    "default": [("-1", -1, -1, "0.0.0.0/0", None), ("-1", -1, -1, "::/0", None)],
    "db": [
        ("tcp", 443, 443, "0.0.0.0/0", "backups to S3 and the AWS APIs"),
        ("udp", 123, 123, "0.0.0.0/0", "NTP"),
        ("tcp", 5432, 5432, "@db", "replication"),
    ],
    "quarantine": [("tcp", 443, 443, "198.51.100.0/24", "forensics upload")],
}

# Outbound traffic that each egress rule shape attracts: (proto, port, peer kind, weight).
# Peer kinds: "inet4", "inet6", "s3", "peered" (10.1.0.0/16), "@role" (interfaces of a group).
OUTBOUND_FOR_ALL4 = [("tcp", 443, "inet4", 10), ("tcp", 443, "s3", 4), ("tcp", 80, "inet4", 1),
                     ("tcp", 443, "peered", 0.5), ("udp", 123, "inet4", 1), ("udp", 443, "inet4", 1)]
OUTBOUND_FOR_ALL6 = [("tcp", 443, "inet6", 2)]

# First octets of public unicast IPv4 space (excluding 0, 10, 100, 127, 169, 172, 192, 198, 203, 224+),
# so "internet" peers never fall inside the private or documentation CIDRs of the rules above.
PUBLIC_FIRST_OCTETS = [o for o in range(1, 224) if o not in (10, 100, 127, 169, 172, 192, 198, 203)]

VPC_CIDR = "10.0.0.0/16"
PEERED_CIDR = "10.1.0.0/16"
AZS = [("us-east-1a", "use1-az1"), ("us-east-1b", "use1-az2"), ("us-east-1c", "use1-az4"),
       ("us-east-1d", "use1-az6")]
IPV6_VPC = "2600:1f18:4a3:6b00"  # /56; subnets 2600:1f18:4a3:6b0N::/64


def ip4_int(s: str) -> int:
    a, b, c, d = (int(x) for x in s.split("."))
    return (a << 24) | (b << 16) | (c << 8) | d


def int_ip4(n: int) -> str:
    return f"{n >> 24}.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}"


# ---------------------------------------------------------------------------------------------------
# Model: deterministic from the seed, rebuilt identically in the parent and in every worker.
# ---------------------------------------------------------------------------------------------------
def build_model(seed: int) -> dict:
    r = random.Random(f"sgaudit-bench-inventory:{seed}")

    def hexid(prefix: str) -> str:
        return f"{prefix}{r.getrandbits(68):017x}"

    vpc_id = hexid("vpc-")
    subnets = []
    for i, (az_name, az_id) in enumerate(AZS):
        subnets.append(dict(id=hexid("subnet-"), az=az_name, az_id=az_id, base=ip4_int(f"10.0.{16 * i}.0"),
                            ipv6=f"{IPV6_VPC[:-1]}{i}"))

    groups = []  # dict(id, name, role, variant, ingress=[...], egress=[...])
    by_role: dict[str, list[dict]] = {}
    for role in ROLES:
        for v in range(role["groups"]):
            suffix = chr(ord("a") + v) if role["groups"] > 1 else ""
            g = dict(id=hexid("sg-"), name=f"{role['name']}{'-' + suffix if suffix else ''}",
                     role=role["name"], variant=v, rules=[])
            groups.append(g)
            by_role.setdefault(role["name"], []).append(g)

    def resolve(peer: str, variant: int) -> dict:
        if peer.startswith("@"):
            cands = by_role[peer[1:]]
            return dict(kind="group", group=cands[variant % len(cands)]["id"])
        return dict(kind="cidr6" if ":" in peer else "cidr4", cidr=peer)

    for role in ROLES:
        for g in by_role[role["name"]]:
            for proto, fp, tp, peer, weight, desc in role["ingress"]:
                g["rules"].append(dict(id=hexid("sgr-"), egress=False, proto=proto, from_port=fp, to_port=tp,
                                       peer=resolve(peer, g["variant"]), weight=weight, desc=desc))
            for proto, fp, tp, peer, desc in EGRESS[role["egress"]]:
                g["rules"].append(dict(id=hexid("sgr-"), egress=True, proto=proto, from_port=fp, to_port=tp,
                                       peer=resolve(peer, g["variant"]), weight=1, desc=desc))

    # Interfaces: per group of a role, role["enis"] interfaces; batch interfaces also carry the app group
    # of the same variant, and a few web interfaces carry a second web group (two groups on one ENI).
    enis = []
    used_ips: set[int] = set()
    for role in ROLES:
        for g in by_role[role["name"]]:
            for k in range(role["enis"]):
                sn = subnets[r.randrange(len(subnets))]
                while True:
                    ip = sn["base"] + 4 + r.randrange(16 * 256 - 5)  # AWS reserves .0-.3 and the last one
                    if ip not in used_ips:
                        used_ips.add(ip)
                        break
                gids = [g["id"]]
                if role["name"] == "batch":
                    gids.append(by_role["app"][g["variant"] % len(by_role["app"])]["id"])
                if role["name"] == "web" and k < 2:
                    gids.append(by_role["web"][(g["variant"] + 1) % len(by_role["web"])]["id"])
                ipv6 = None
                if r.random() < role["ipv6"]:
                    ipv6 = f"{sn['ipv6']}:{r.getrandbits(16):x}:{r.getrandbits(16):x}:{r.getrandbits(16):x}:" \
                           f"{r.getrandbits(16):x}"
                secondary = []
                if r.random() < 0.1:
                    sec = ip + 1 + r.randrange(8)
                    if sec not in used_ips and sec < sn["base"] + 16 * 256 - 1:
                        used_ips.add(sec)
                        secondary.append(int_ip4(sec))
                # batch-b interfaces are idle (NODATA only), so batch-b's rules come out "unused".
                idle = (role["name"] == "batch" and g["variant"] == 1) or (
                    role["name"] not in ("quarantine",) and r.random() < 0.04)
                enis.append(dict(
                    id=hexid("eni-"), instance=hexid("i-"), subnet=sn, ip=int_ip4(ip), ipv6=ipv6,
                    secondary=secondary, groups=gids, role=role["name"], idle=idle,
                    hidden=role["name"] == "quarantine",
                    weight=role["weight"] * r.lognormvariate(0.0, 0.6),
                    mac=":".join(f"{r.getrandbits(8):02x}" for _ in range(6)),
                ))
    return dict(vpc_id=vpc_id, subnets=subnets, groups=groups, enis=enis, seed=seed)


# ---------------------------------------------------------------------------------------------------
# Inventory JSON, shaped like the AWS CLI output (AWS-FACTS.md sections 6 and 7).
# ---------------------------------------------------------------------------------------------------
def _ports(proto: str, fp: int, tp: int) -> dict:
    return {} if proto == "-1" else {"FromPort": fp, "ToPort": tp}


def inventory_json(model: dict) -> dict[str, dict]:
    gname = {g["id"]: g["name"] for g in model["groups"]}
    rules_out = []
    sgs_out = []
    for g in model["groups"]:
        perms: dict[bool, dict[tuple, dict]] = {False: {}, True: {}}
        for rule in g["rules"]:
            d = {
                "SecurityGroupRuleId": rule["id"],
                "GroupId": g["id"],
                "GroupOwnerId": ACCOUNT,
                "IsEgress": rule["egress"],
                "IpProtocol": rule["proto"],
                "FromPort": rule["from_port"],
                "ToPort": rule["to_port"],
            }
            peer = rule["peer"]
            if peer["kind"] == "cidr4":
                d["CidrIpv4"] = peer["cidr"]
            elif peer["kind"] == "cidr6":
                d["CidrIpv6"] = peer["cidr"]
            else:
                d["ReferencedGroupInfo"] = {"GroupId": peer["group"], "UserId": ACCOUNT}
            if rule["desc"]:
                d["Description"] = rule["desc"]
            d["Tags"] = []
            d["SecurityGroupRuleArn"] = f"arn:aws:ec2:{REGION}:{ACCOUNT}:security-group-rule/{rule['id']}"
            rules_out.append(d)

            key = (rule["proto"], rule["from_port"], rule["to_port"])
            p = perms[rule["egress"]].get(key)
            if p is None:
                p = {"IpProtocol": rule["proto"], **_ports(*key), "UserIdGroupPairs": [], "IpRanges": [],
                     "Ipv6Ranges": [], "PrefixListIds": []}
                perms[rule["egress"]][key] = p
            desc = {"Description": rule["desc"]} if rule["desc"] else {}
            if peer["kind"] == "cidr4":
                p["IpRanges"].append({"CidrIp": peer["cidr"], **desc})
            elif peer["kind"] == "cidr6":
                p["Ipv6Ranges"].append({"CidrIpv6": peer["cidr"], **desc})
            else:
                p["UserIdGroupPairs"].append({**desc, "UserId": ACCOUNT, "GroupId": peer["group"]})
        sgs_out.append({
            "GroupId": g["id"],
            "GroupName": g["name"],
            "Description": f"{g['role']} tier ({g['name']})",
            "OwnerId": ACCOUNT,
            "VpcId": model["vpc_id"],
            "IpPermissions": list(perms[False].values()),
            "IpPermissionsEgress": list(perms[True].values()),
            "Tags": [{"Key": "Name", "Value": g["name"]}],
            "SecurityGroupArn": f"arn:aws:ec2:{REGION}:{ACCOUNT}:security-group/{g['id']}",
        })

    enis_out = []
    for n, e in enumerate(model["enis"]):
        sn = e["subnet"]
        dns = f"ip-{e['ip'].replace('.', '-')}.ec2.internal"
        priv = [{"Primary": True, "PrivateDnsName": dns, "PrivateIpAddress": e["ip"]}]
        for s in e["secondary"]:
            priv.append({"Primary": False, "PrivateDnsName": f"ip-{s.replace('.', '-')}.ec2.internal",
                         "PrivateIpAddress": s})
        enis_out.append({
            "Attachment": {
                "AttachTime": "2025-01-15T09:30:00+00:00",
                "AttachmentId": f"eni-attach-{hashlib.sha256(e['id'].encode()).hexdigest()[:17]}",
                "DeleteOnTermination": True,
                "DeviceIndex": 0,
                "NetworkCardIndex": 0,
                "InstanceId": e["instance"],
                "InstanceOwnerId": ACCOUNT,
                "Status": "attached",
            },
            "AvailabilityZone": sn["az"],
            "Description": f"Primary network interface ({e['role']} #{n})",
            "Groups": [{"GroupId": gid, "GroupName": gname[gid]} for gid in e["groups"]],
            "InterfaceType": "interface",
            "Ipv6Addresses": [{"Ipv6Address": e["ipv6"], "IsPrimaryIpv6": False}] if e["ipv6"] else [],
            "MacAddress": e["mac"],
            "NetworkInterfaceId": e["id"],
            "OwnerId": ACCOUNT,
            "PrivateDnsName": dns,
            "PrivateIpAddress": e["ip"],
            "PrivateIpAddresses": priv,
            "RequesterId": None,
            "RequesterManaged": False,
            "SourceDestCheck": True,
            "Status": "in-use",
            "SubnetId": sn["id"],
            "TagSet": [],
            "VpcId": model["vpc_id"],
        })
        del enis_out[-1]["RequesterId"]  # absent for interfaces you own
    return {
        "security-group-rules.json": {"SecurityGroupRules": rules_out},
        "security-groups.json": {"SecurityGroups": sgs_out},
        "network-interfaces.json": {"NetworkInterfaces": enis_out},
    }


# ---------------------------------------------------------------------------------------------------
# Traffic model for the workers.
# ---------------------------------------------------------------------------------------------------
def _weighted(items: list, weights: list[float]):
    """(items, cumulative weights, total) for bisect-based weighted choice; None if nothing positive."""
    pairs = [(i, w) for i, w in zip(items, weights, strict=True) if w > 0]
    if not pairs:
        return None
    cum = []
    t = 0.0
    for _, w in pairs:
        t += w
        cum.append(t)
    return ([i for i, _ in pairs], cum, t)


class Eni:
    __slots__ = ("id", "ip", "ipv6", "pre", "meta", "loc", "inbound_tcp", "inbound_udp", "inbound_icmp",
                 "outbound_tcp", "outbound_udp", "default_egress", "active", "weight", "idx")


def build_traffic(model: dict) -> dict:
    """Per interface: weighted tables of the traffic it receives and sends, derived from its rules."""
    groups = {g["id"]: g for g in model["groups"]}
    enis = []
    for i, e in enumerate(model["enis"]):
        x = Eni()
        x.idx = i
        x.id = e["id"]
        x.ip = e["ip"]
        x.ipv6 = e["ipv6"]
        x.pre = f"5 {ACCOUNT} {e['id']} "
        x.meta = f"{model['vpc_id']} {e['subnet']['id']} {e['instance']} "
        x.loc = f"{REGION} {e['subnet']['az_id']} - - "
        x.active = not e["idle"] and not e["hidden"]
        x.weight = e["weight"]
        x.default_egress = any(r["egress"] and r["proto"] == "-1" and r["peer"].get("cidr") == "0.0.0.0/0"
                               for gid in e["groups"] for r in groups[gid]["rules"])
        enis.append(x)
    members: dict[str, list[Eni]] = {}
    for e, x in zip(model["enis"], enis, strict=True):
        if x.active:
            for gid in e["groups"]:
                members.setdefault(gid, []).append(x)
    # Interfaces that may open connections to anything in the VPC (peers for "10.0.0.0/16" sources).
    vpc_clients = [x for x in enis if x.active and x.default_egress]

    def peer_spec(peer: dict, v6: bool, me: Eni):
        """How to draw a peer address for a rule's source/destination, or None if impossible."""
        if peer["kind"] == "group":
            cands = [x for x in members.get(peer["group"], []) if x is not me]
            return ("eni", cands) if cands else None
        cidr = peer["cidr"]
        if peer["kind"] == "cidr6":
            if not v6:
                return None
            if cidr == "::/0":
                return ("inet6", None)
            return ("net6", cidr.split("::")[0])
        net, bits = cidr.split("/")
        size = 1 << (32 - int(bits))
        if cidr == "0.0.0.0/0":
            return ("inet4", None)
        if cidr == VPC_CIDR:
            return ("vpc", [x for x in vpc_clients if x is not me])
        return ("net4", (ip4_int(net), size))

    for e, x in zip(model["enis"], enis, strict=True):
        in_tcp, in_udp, in_icmp, out_tcp, out_udp = [], [], [], [], []
        for gid in e["groups"]:
            for rule in groups[gid]["rules"]:
                proto = rule["proto"]
                if not rule["egress"]:
                    spec = peer_spec(rule["peer"], x.ipv6 is not None, x)
                    if spec is None or rule["weight"] <= 0:
                        continue
                    ports = tuple(range(rule["from_port"], rule["to_port"] + 1))
                    t = (ports, spec)
                    {"tcp": in_tcp, "udp": in_udp, "icmp": in_icmp}[proto].append((t, rule["weight"]))
                else:
                    peer = rule["peer"]
                    if proto == "-1":
                        table = OUTBOUND_FOR_ALL6 if peer["kind"] == "cidr6" else OUTBOUND_FOR_ALL4
                        for p, port, kind, w in table:
                            if kind == "inet6" and x.ipv6 is None:
                                continue
                            spec = {"inet4": ("inet4", None), "inet6": ("inet6", None), "s3": ("s3", None),
                                    "peered": ("net4", (ip4_int("10.1.0.0"), 1 << 16))}[kind]
                            (out_tcp if p == "tcp" else out_udp).append((((port,), spec), w))
                    else:
                        spec = peer_spec(peer, x.ipv6 is not None, x)
                        if spec is None:
                            continue
                        if spec[0] == "inet4" and rule["from_port"] == 443:
                            (out_tcp if proto == "tcp" else out_udp).append((((443,), ("s3", None)), 3))
                        ports = tuple(range(rule["from_port"], rule["to_port"] + 1))
                        (out_tcp if proto == "tcp" else out_udp).append(((ports, spec), 1))
        x.inbound_tcp = _weighted([t for t, _ in in_tcp], [w for _, w in in_tcp])
        x.inbound_udp = _weighted([t for t, _ in in_udp], [w for _, w in in_udp])
        x.inbound_icmp = _weighted([t for t, _ in in_icmp], [w for _, w in in_icmp])
        x.outbound_tcp = _weighted([t for t, _ in out_tcp], [w for _, w in out_tcp])
        x.outbound_udp = _weighted([t for t, _ in out_udp], [w for _, w in out_udp])

    act = [x for x in enis if x.active]

    def table(pred):
        sel = [x for x in act if pred(x)]
        return _weighted(sel, [x.weight for x in sel])

    return dict(
        enis=enis,
        idle=[x for x in enis if not x.active and not model["enis"][x.idx]["hidden"]],
        in_tcp=table(lambda x: x.inbound_tcp is not None),
        out_tcp=table(lambda x: x.outbound_tcp is not None),
        udp=table(lambda x: x.inbound_udp is not None or x.outbound_udp is not None),
        icmp=table(lambda x: x.inbound_icmp is not None),
        any=table(lambda x: True),
    )


# Conversation mix (probabilities per conversation, tuned so the *record* shares come out near
# 80 % inbound TCP / 10 % outbound TCP / 5 % UDP / 3 % REJECT / ~1.5 % ICMP; see README.md).
P_IN_TCP = 0.80
P_OUT_TCP = 0.03
P_UDP = 0.07
P_ICMP = 0.012
# the rest: REJECT
P_CONTINUE = 0.3  # a TCP connection goes on in later minutes
LONG_LIVED_POOL = 20_000  # long-lived connections, with --long-lived
P_SHORT = 0.4  # ...otherwise it also closed within its first minute (flags 3 / 19)
HEALTH_CHECK_NET = ip4_int("54.243.31.192")  # ROUTE53_HEALTHCHECKS range (a /26)
S3_NET = ip4_int("52.216.0.0")  # part of the S3 range in us-east-1 (a /15)
SCAN_PORTS = (22, 23, 445, 3389, 1433, 3306, 5900, 8080, 6379, 25, 139, 8443, 9200, 27017, 5432, 2375)

_W = None  # worker state: the traffic model


def _init_worker(seed: int) -> None:
    global _W
    _W = build_traffic(build_model(seed))


def file_name(index: int, files: int, seed: int) -> tuple[str, int]:
    window = index if files <= WINDOWS_PER_DAY else index * WINDOWS_PER_DAY // files
    t = DAY + timedelta(minutes=5 * window)
    h = hashlib.sha256(f"{seed}:{files}:{index}".encode()).hexdigest()[:8]
    return f"{ACCOUNT}_vpcflowlogs_{REGION}_{FLOW_LOG_ID}_{t:%Y%m%dT%H%MZ}_{h}.log.gz", int(t.timestamp())


def generate_file(task: tuple) -> dict:
    """Write one gzip file of exactly ``quota`` records; returns its statistics."""
    index, files, quota, seed, level, out_dir, long_lived = task
    W = _W
    name, T = file_name(index, files, seed)
    path = Path(out_dir) / KEY_PREFIX / name
    tmp = path.with_name(path.name + ".tmp")
    rng = random.Random(f"sgaudit-bench-file:{seed}:{files}:{index}")
    rnd = rng.random
    grb = rng.getrandbits
    bis = bisect.bisect
    pub = PUBLIC_FIRST_OCTETS
    npub = len(pub)

    def pick(tbl):
        items, cum, tot = tbl
        return items[bis(cum, rnd() * tot)]

    def inet4() -> str:
        x = grb(24)
        return f"{pub[int(rnd() * npub)]}.{x >> 16}.{(x >> 8) & 255}.{x & 255}"

    def inet6() -> str:
        return f"2a0{int(rnd() * 10)}:{grb(16):x}:{grb(16):x}:{grb(16):x}::{grb(16):x}"

    def draw_peer(spec, port):
        """-> (address, peer Eni or None, type, aws-service, traffic-path seen from the local ENI)."""
        kind, arg = spec
        if kind == "inet4":
            if port in (80, 443) and rnd() < 0.02:
                return int_ip4(HEALTH_CHECK_NET + int(rnd() * 64)), None, "IPv4", "ROUTE53_HEALTHCHECKS", "8"
            return inet4(), None, "IPv4", "-", "8"
        if kind == "eni":
            x = arg[int(rnd() * len(arg))]
            return x.ip, x, "IPv4", "-", "1"
        if kind == "vpc":
            if arg and rnd() < 0.6:
                x = arg[int(rnd() * len(arg))]
                return x.ip, x, "IPv4", "-", "1"
            # an address of the VPC outside the inventory's subnets (10.0.64.0/18): Lambda, ECS, ...
            return f"10.0.{64 + int(rnd() * 64)}.{1 + int(rnd() * 254)}", None, "IPv4", "-", "1"
        if kind == "net4":
            base, size = arg
            a = base + (int(rnd() * size) if size > 1 else 0)
            return int_ip4(a), None, "IPv4", "-", ("4" if (a >> 24) == 10 else "8")
        if kind == "s3":
            return int_ip4(S3_NET + int(rnd() * 131072)), None, "IPv4", "S3", "7"
        if kind == "inet6":
            return inet6(), None, "IPv6", "-", "8"
        if kind == "net6":
            return f"{arg}:{grb(16):x}:{grb(16):x}::{grb(16):x}", None, "IPv6", "-", "8"
        raise ValueError(kind)

    lines: list[str] = []
    out = lines.append
    stats = {"in_tcp": 0, "out_tcp": 0, "udp": 0, "icmp": 0, "reject": 0, "nodata": 0, "long_lived": 0}

    def long_lived_pool() -> list[tuple]:
        """The same `LONG_LIVED_POOL` connections in every file: drawn with a generator of the seed alone."""
        nonlocal rnd, grb
        own = (rnd, grb)
        pool_rng = random.Random(f"sgaudit-bench-pool:{seed}")
        rnd, grb = pool_rng.random, pool_rng.getrandbits
        pool = []
        while len(pool) < LONG_LIVED_POOL:
            e = pick(W["in_tcp"])
            ports, spec = pick(e.inbound_tcp)
            dport = ports[int(rnd() * len(ports))] if len(ports) > 1 else ports[0]
            p_ip, p_eni, typ, svc, tpath = draw_peer(spec, dport)
            if typ != "IPv4":
                continue
            pool.append((p_ip, p_eni, e.ip, e, 32768 + int(rnd() * 28232), dport, typ, svc, tpath))
        rnd, grb = own
        return pool

    pool = long_lived_pool() if long_lived else []

    def slot(k):
        en = T + 60 * k + int(rnd() * 60)
        return en - 40 - int(rnd() * 20), en

    def conv(proto, c_ip, c_eni, s_ip, s_eni, sport, dport, typ, c_svc, s_svc, path_c, path_s, k,
             two_way=True):
        """One conversation, written at each end that is a logged interface.

        path_c: traffic-path of the client's egress records (towards the server); path_s likewise.
        """
        n0 = len(lines)
        st, en = slot(k)
        if proto == 6:
            cont = rnd() < P_CONTINUE
            short = (not cont) and rnd() < P_SHORT
            fc, fs = (3, 19) if short else (2, 18)
            pk = 2 + int(rnd() * 10)
            by = pk * 52 + int(rnd() * 1500)
            pk2 = 2 + int(rnd() * 14)
            by2 = pk2 * 52 + int(rnd() * 30000)
            if s_eni is not None:
                out(f"{s_eni.pre}{c_ip} {s_ip} {sport} {dport} 6 {pk} {by} {st} {en} ACCEPT OK {s_eni.meta}"
                    f"{fc} {typ} {c_ip} {s_ip} {s_eni.loc}{c_svc} - ingress -\n")
                out(f"{s_eni.pre}{s_ip} {c_ip} {dport} {sport} 6 {pk2} {by2} {st} {en} ACCEPT OK {s_eni.meta}"
                    f"{fs} {typ} {s_ip} {c_ip} {s_eni.loc}- {c_svc} egress {path_s}\n")
            if c_eni is not None:
                out(f"{c_eni.pre}{c_ip} {s_ip} {sport} {dport} 6 {pk} {by} {st} {en} ACCEPT OK {c_eni.meta}"
                    f"{fc} {typ} {c_ip} {s_ip} {c_eni.loc}- {s_svc} egress {path_c}\n")
                out(f"{c_eni.pre}{s_ip} {c_ip} {dport} {sport} 6 {pk2} {by2} {st} {en} ACCEPT OK {c_eni.meta}"
                    f"{fs} {typ} {s_ip} {c_ip} {c_eni.loc}{s_svc} - ingress -\n")
            if cont:
                last = k + 1 + int(rnd() * 3)
                for m in range(k + 1, min(last, 4) + 1):
                    f = 1 if m == last else 0
                    st, en = slot(m)
                    pk = 1 + int(rnd() * 200)
                    by = pk * (52 + int(rnd() * 400))
                    pk2 = 1 + int(rnd() * 300)
                    by2 = pk2 * (52 + int(rnd() * 1400))
                    if s_eni is not None:
                        out(f"{s_eni.pre}{c_ip} {s_ip} {sport} {dport} 6 {pk} {by} {st} {en} ACCEPT OK "
                            f"{s_eni.meta}{f} {typ} {c_ip} {s_ip} {s_eni.loc}{c_svc} - ingress -\n")
                        out(f"{s_eni.pre}{s_ip} {c_ip} {dport} {sport} 6 {pk2} {by2} {st} {en} ACCEPT OK "
                            f"{s_eni.meta}{f} {typ} {s_ip} {c_ip} {s_eni.loc}- {c_svc} egress {path_s}\n")
                    if c_eni is not None:
                        out(f"{c_eni.pre}{c_ip} {s_ip} {sport} {dport} 6 {pk} {by} {st} {en} ACCEPT OK "
                            f"{c_eni.meta}{f} {typ} {c_ip} {s_ip} {c_eni.loc}- {s_svc} egress {path_c}\n")
                        out(f"{c_eni.pre}{s_ip} {c_ip} {dport} {sport} 6 {pk2} {by2} {st} {en} ACCEPT OK "
                            f"{c_eni.meta}{f} {typ} {s_ip} {c_ip} {c_eni.loc}{s_svc} - ingress -\n")
        else:  # UDP / ICMP: request, and (usually) a response; tcp-flags 0
            pk = 1 + int(rnd() * 4)
            by = pk * (84 if proto == 1 else 60 + int(rnd() * 400))
            pk2 = pk
            by2 = pk * (84 if proto == 1 else 60 + int(rnd() * 1200))
            if s_eni is not None:
                out(f"{s_eni.pre}{c_ip} {s_ip} {sport} {dport} {proto} {pk} {by} {st} {en} ACCEPT OK "
                    f"{s_eni.meta}0 {typ} {c_ip} {s_ip} {s_eni.loc}{c_svc} - ingress -\n")
                if two_way:
                    out(f"{s_eni.pre}{s_ip} {c_ip} {dport} {sport} {proto} {pk2} {by2} {st} {en} ACCEPT OK "
                        f"{s_eni.meta}0 {typ} {s_ip} {c_ip} {s_eni.loc}- {c_svc} egress {path_s}\n")
            if c_eni is not None:
                out(f"{c_eni.pre}{c_ip} {s_ip} {sport} {dport} {proto} {pk} {by} {st} {en} ACCEPT OK "
                    f"{c_eni.meta}0 {typ} {c_ip} {s_ip} {c_eni.loc}- {s_svc} egress {path_c}\n")
                if two_way:
                    out(f"{c_eni.pre}{s_ip} {c_ip} {dport} {sport} {proto} {pk2} {by2} {st} {en} ACCEPT OK "
                        f"{c_eni.meta}0 {typ} {s_ip} {c_ip} {c_eni.loc}{s_svc} - ingress -\n")
        return len(lines) - n0

    raw_bytes = 0
    written = 0
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(tmp, "wb") as fh, gzip.GzipFile(filename="", mode="wb", compresslevel=level, fileobj=fh,
                                              mtime=0) as gz:
        head = (HEADER + "\n").encode()
        gz.write(head)
        raw_bytes += len(head)
        # NODATA: every idle interface, every minute (1 minute only for tiny files), capped at 1 %.
        minutes = 5 if quota >= 100_000 else 1
        for k in range(minutes):
            for x in W["idle"]:
                if len(lines) >= max(1, quota // 100):
                    break
                st, en = slot(k)
                out(f"5 {ACCOUNT} {x.id} - - - - - - - {st} {en} - NODATA {x.meta}- - - - {x.loc}- - - -\n")
        stats["nodata"] = len(lines)

        in_tcp, out_tcp, udp_t, icmp_t, any_t = W["in_tcp"], W["out_tcp"], W["udp"], W["icmp"], W["any"]
        t_out = P_IN_TCP + P_OUT_TCP
        t_udp = t_out + P_UDP
        t_icmp = t_udp + P_ICMP
        while written < quota:
            target = min(CHUNK_LINES, quota - written)
            while len(lines) < target:
                if long_lived and rnd() < long_lived:
                    # One minute of a long-lived connection: mid-stream (tcp-flags 0), both ways, at each
                    # logged end.
                    c_ip, c_eni, s_ip, s_eni, sport, dport, typ, svc, tpath = pool[int(rnd() * len(pool))]
                    st, en = slot(int(rnd() * 5))
                    pk, pk2 = 1 + int(rnd() * 50), 1 + int(rnd() * 80)
                    by, by2 = pk * (52 + int(rnd() * 400)), pk2 * (52 + int(rnd() * 1400))
                    for x, here_is_server in ((s_eni, True), (c_eni, False)):
                        if x is None:
                            continue
                        to_srv, to_cli = ("ingress", "egress") if here_is_server else ("egress", "ingress")
                        path_to_srv, path_to_cli = ("-", tpath) if here_is_server else (tpath, "-")
                        out(f"{x.pre}{c_ip} {s_ip} {sport} {dport} 6 {pk} {by} {st} {en} ACCEPT OK {x.meta}0 "
                            f"{typ} {c_ip} {s_ip} {x.loc}- - {to_srv} {path_to_srv}\n")
                        out(f"{x.pre}{s_ip} {c_ip} {dport} {sport} 6 {pk2} {by2} {st} {en} ACCEPT OK {x.meta}0 "
                            f"{typ} {s_ip} {c_ip} {x.loc}- - {to_cli} {path_to_cli}\n")
                        stats["long_lived"] += 2
                    continue
                u = rnd()
                k = int(rnd() * 5)
                if u < P_IN_TCP:
                    e = pick(in_tcp)
                    ports, spec = pick(e.inbound_tcp)
                    dport = ports[int(rnd() * len(ports))] if len(ports) > 1 else ports[0]
                    p_ip, p_eni, typ, svc, tpath = draw_peer(spec, dport)
                    local = e.ip if typ == "IPv4" else e.ipv6
                    sport = (32768 + int(rnd() * 28232)) if p_eni is not None else (1024 + int(rnd() * 64511))
                    stats["in_tcp"] += conv(6, p_ip, p_eni, local, e, sport, dport, typ, svc, "-", "1", tpath, k)
                elif u < t_out:
                    e = pick(out_tcp)
                    ports, spec = pick(e.outbound_tcp)
                    dport = ports[int(rnd() * len(ports))] if len(ports) > 1 else ports[0]
                    p_ip, p_eni, typ, svc, tpath = draw_peer(spec, dport)
                    local = e.ip if typ == "IPv4" else e.ipv6
                    sport = 32768 + int(rnd() * 28232)
                    stats["out_tcp"] += conv(6, local, e, p_ip, p_eni, sport, dport, typ, "-", svc, tpath, "1", k)
                elif u < t_udp:
                    e = pick(udp_t)
                    if e.inbound_udp is not None and (e.outbound_udp is None or rnd() < 0.7):
                        ports, spec = pick(e.inbound_udp)
                        dport = ports[int(rnd() * len(ports))] if len(ports) > 1 else ports[0]
                        p_ip, p_eni, typ, svc, tpath = draw_peer(spec, dport)
                        two_way = dport not in (8125, 514)  # statsd and syslog are one-way
                        local = e.ip if typ == "IPv4" else e.ipv6
                        sport = 32768 + int(rnd() * 28232)
                        stats["udp"] += conv(17, p_ip, p_eni, local, e, sport, dport, typ, svc, "-", "1", tpath, k,
                                             two_way)
                    else:
                        ports, spec = pick(e.outbound_udp)
                        dport = ports[int(rnd() * len(ports))] if len(ports) > 1 else ports[0]
                        p_ip, p_eni, typ, svc, tpath = draw_peer(spec, dport)
                        local = e.ip if typ == "IPv4" else e.ipv6
                        sport = 32768 + int(rnd() * 28232)
                        stats["udp"] += conv(17, local, e, p_ip, p_eni, sport, dport, typ, "-", svc, tpath, "1", k)
                elif u < t_icmp:
                    e = pick(icmp_t)
                    ports, spec = pick(e.inbound_icmp)
                    p_ip, p_eni, typ, svc, tpath = draw_peer(spec, 0)
                    if typ != "IPv4":
                        continue
                    stats["icmp"] += conv(1, p_ip, p_eni, e.ip, e, 0, 0, typ, svc, "-", "1", tpath, k)
                else:  # a scan from the internet, rejected
                    e = pick(any_t)
                    st, en = slot(k)
                    src = inet4()
                    n = 1 + int(rnd() * 2)
                    if rnd() < 0.85:
                        dport = SCAN_PORTS[int(rnd() * len(SCAN_PORTS))] if rnd() < 0.8 else 1 + int(rnd() * 65535)
                        out(f"{e.pre}{src} {e.ip} {1024 + int(rnd() * 64511)} {dport} 6 {n} {n * 44} {st} {en} "
                            f"REJECT OK {e.meta}2 IPv4 {src} {e.ip} {e.loc}- - ingress -\n")
                    else:
                        dport = (161, 1900, 123, 53, 5060)[int(rnd() * 5)]
                        out(f"{e.pre}{src} {e.ip} {1024 + int(rnd() * 64511)} {dport} 17 {n} {n * 78} {st} {en} "
                            f"REJECT OK {e.meta}0 IPv4 {src} {e.ip} {e.loc}- - ingress -\n")
                    stats["reject"] += 1
            if len(lines) > target:
                del lines[target:]  # exact count; may cut the last conversation of the file in half
            data = "".join(lines).encode()
            gz.write(data)
            raw_bytes += len(data)
            written += len(lines)
            lines.clear()
    os.replace(tmp, path)
    return dict(index=index, name=name, path=str(path.relative_to(out_dir)), records=written,
                raw_bytes=raw_bytes, gz_bytes=path.stat().st_size, counts=stats)


def default_files(records: int) -> int:
    """One file per 250k records (~10 MB of gzip, a busy 5-minute S3 object), at least 4."""
    return max(4, -(-records // 250_000))


def generate(records: int, files: int, out: Path, seed: int = 1, level: int = 6, workers: int = 2,
             quiet: bool = False, long_lived: float = 0.0) -> dict:
    """Generate the data set into ``out`` (replacing what is there); returns the manifest."""
    if records < files:
        raise SystemExit(f"--records ({records}) must be at least --files ({files})")
    t0 = time.perf_counter()
    out = Path(out)
    if out.exists():
        for sub in ("flow-logs", "inventory", "manifest.json"):
            p = out / sub
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()
    (out / "inventory").mkdir(parents=True, exist_ok=True)
    (out / KEY_PREFIX).mkdir(parents=True, exist_ok=True)

    model = build_model(seed)
    for name, doc in inventory_json(model).items():
        (out / "inventory" / name).write_text(json.dumps(doc, indent=4) + "\n")

    base, extra = divmod(records, files)
    tasks = [(i, files, base + (1 if i < extra else 0), seed, level, str(out), long_lived) for i in range(files)]
    results = []
    done = 0
    last_print = 0.0
    ctx = mp.get_context("fork")
    with ctx.Pool(processes=max(1, min(workers, files)), initializer=_init_worker, initargs=(seed,)) as pool:
        for res in pool.imap_unordered(generate_file, tasks, chunksize=1):
            results.append(res)
            done += res["records"]
            now = time.perf_counter()
            if not quiet and (now - last_print > 2 or len(results) == files):
                last_print = now
                el = now - t0
                print(f"[generate] {len(results)}/{files} files, {done:,}/{records:,} records, "
                      f"{el:.1f} s, {done / el / 1e6:.2f}M records/s", flush=True)
    results.sort(key=lambda r: r["index"])
    secs = time.perf_counter() - t0
    counts: dict[str, int] = {}
    for r in results:
        for k, v in r["counts"].items():
            counts[k] = counts.get(k, 0) + v
    manifest = dict(
        generator_version=GENERATOR_VERSION, records=records, files=files, seed=seed, level=level,
        long_lived=long_lived, workers=workers, seconds=round(secs, 2),
        raw_bytes=sum(r["raw_bytes"] for r in results), gz_bytes=sum(r["gz_bytes"] for r in results),
        record_counts_before_truncation=counts,
        flow_logs="flow-logs", inventory="inventory",
        file_list=[dict(path=r["path"], records=r["records"], gz_bytes=r["gz_bytes"]) for r in results],
    )
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    if not quiet:
        print(f"[generate] done: {records:,} records in {files} files, "
              f"{manifest['gz_bytes'] / 1e6:.1f} MB gzip ({manifest['raw_bytes'] / 1e6:.1f} MB text, "
              f"{manifest['raw_bytes'] / records:.0f} bytes/record), {secs:.1f} s, "
              f"{records / secs / 1e6:.2f}M records/s -> {out}", flush=True)
    return manifest


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, required=True, help="total number of flow-log records")
    ap.add_argument("--files", type=int, default=None,
                    help="number of gzip files (default: one per 250k records, at least 4)")
    ap.add_argument("--out", type=Path, required=True, help="output folder (its generated content is replaced)")
    ap.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    ap.add_argument("--level", type=int, default=6, choices=range(1, 10), metavar="1-9",
                    help="gzip compression level (default 6, gzip's default)")
    ap.add_argument("--workers", type=int, default=2, help="generator processes (default 2)")
    ap.add_argument("--long-lived", type=float, default=0.0, metavar="F",
                    help="share of records from long-lived connections (default 0; see above)")
    ap.add_argument("-q", "--quiet", action="store_true")
    a = ap.parse_args(argv)
    files = a.files or default_files(a.records)
    if a.records <= 0 or files <= 0:
        ap.error("--records and --files must be positive")
    if not 0 <= a.long_lived < 1:
        ap.error("--long-lived must be at least 0 and below 1")
    generate(a.records, files, a.out, seed=a.seed, level=a.level, workers=a.workers, quiet=a.quiet,
             long_lived=a.long_lived)
    return 0


if __name__ == "__main__":
    sys.exit(main())
