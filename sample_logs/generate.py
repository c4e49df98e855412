#!/usr/bin/env python3
"""Deterministic generator of the sgaudit sample data (see README.md next to this file).

    python sample_logs/generate.py [OUTPUT_DIR]      # OUTPUT_DIR defaults to this script's folder

Python 3.11 standard library only. Fixed seeds, no clock, no network; gzip members are written with
mtime=0 and no file name, so running it twice gives byte-identical files.

What it writes (all under OUTPUT_DIR):
  inventory/                       the AWS CLI's JSON for one VPC (security groups, rules, ENIs, prefix lists)
  flow-logs/AWSLogs/.../2025/02/06 S3 text flow logs: set A (v5 custom format, 13:00-16:00 UTC) and the
                                   article's two records (a second flow log with another field order)
  cloudwatch/app-eni.log           set B: v2 default format, app ENI only, 11:00-12:00 UTC, no header
  cloudwatch/filter-log-events.json  the same set B records as `aws logs filter-log-events` prints them
  expected/*.json                  the usage table etc. that SPEC.md implies, computed from the generator's
                                   own ground truth (who really initiated each connection), not by
                                   re-reading the logs

Every traffic function below says which SPEC.md rule it exercises.
"""
from __future__ import annotations

import gzip
import hashlib
import ipaddress
import json
import random
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

# --------------------------------------------------------------------------------------------------
# The account
# --------------------------------------------------------------------------------------------------
ACCOUNT = "002244369527"
REGION = "us-east-1"
VPC = "vpc-0d585d9ae3c06759b"
VPC_CIDR4, VPC_CIDR6 = "10.10.0.0/16", "2600:1f18:4a3:6900::/56"
FLOW_LOG_ID = "fl-0a1b2c3d4e5f60789"          # set A, VPC-wide, v5 custom format, 1-minute interval
ARTICLE_FLOW_LOG_ID = "fl-0424bc06d27c0fa1c"  # the article's flow log (other field order)
SEED = "sgaudit-sample-v1"

# Windows (Unix seconds). Set A: 2025-02-06 13:00-16:00 UTC. Set B (CloudWatch): 11:00-12:00 UTC.
S3_START, S3_END = 1738846800, 1738846800 + 3 * 3600
CW_START, CW_END = 1738839600, 1738839600 + 3600
WINDOWS = {"s3": (S3_START, S3_END), "cwl": (CW_START, CW_END), "article": (1738854240, 1738854254)}


def minute(hhmm: str, sec: float = 0.0) -> float:
    """2025-02-06 HH:MM(:sec) UTC as Unix seconds."""
    hh, mm = hhmm.split(":")
    return 1738800000 + int(hh) * 3600 + int(mm) * 60 + sec


@dataclass
class Subnet:
    id: str
    cidr4: str
    cidr6: str
    az: str
    az_id: str


SUBNETS = {
    "a": Subnet("subnet-081cfbbbb8bfeb867", "10.10.0.0/24", "2600:1f18:4a3:6900::/64", "us-east-1a", "use1-az6"),
    "b": Subnet("subnet-02edf5e5a32d8527c", "10.10.1.0/24", "2600:1f18:4a3:6901::/64", "us-east-1b", "use1-az1"),
}


@dataclass
class Eni:
    key: str
    id: str
    subnet: str
    ip4: str
    groups: list[str]                       # group keys
    instance: str | None = None             # instance id (None: requester-managed or detached)
    ip6: list[str] = field(default_factory=list)
    secondary4: list[str] = field(default_factory=list)
    prefixes4: list[str] = field(default_factory=list)
    kind: str = "instance"                  # instance | alb | nat
    public_ip: str | None = None
    description: str = ""
    name: str = ""

    @property
    def addresses(self) -> list[str]:
        return [self.ip4, *self.secondary4, *self.ip6]


ENIS = {e.key: e for e in [
    Eni("alb-a", "eni-05e533b585d4529e5", "a", "10.10.0.21", ["alb"], kind="alb",
        ip6=["2600:1f18:4a3:6900:8c2e:5b7a:1d3f:9e41"], public_ip="54.208.117.36",
        description="ELB app/web-alb/7d3c1e9a5b2f4086"),
    Eni("alb-b", "eni-092fc000a8c60393c", "b", "10.10.1.21", ["alb"], kind="alb",
        ip6=["2600:1f18:4a3:6901:42d1:9a0b:7c3e:15f8"], public_ip="52.22.149.201",
        description="ELB app/web-alb/7d3c1e9a5b2f4086"),
    Eni("web-1", "eni-00a3b041006077e3d", "a", "10.10.0.101", ["web"], "i-0abb4671ac6c1e300",
        ip6=["2600:1f18:4a3:6900:d5e3:21b0:6f4a:c812"], name="web-1"),
    Eni("web-2", "eni-05f0250ba2c5e69ca", "b", "10.10.1.102", ["web"], "i-00860dd73fd2095df",
        ip6=["2600:1f18:4a3:6901:7b19:e0c4:3a25:4d6e"], name="web-2"),
    Eni("app", "eni-08d92826b27a542dc", "a", "10.10.0.150", ["app", "monitoring"], "i-09e02503771176eca",
        secondary4=["10.10.0.151"], name="app-1"),
    Eni("db", "eni-0b120d67d15dac6da", "b", "10.10.1.200", ["db"], "i-07c905395a75863ab", name="db-1"),
    Eni("bastion", "eni-07a93e423b3ff6908", "a", "10.10.0.10", ["bastion"], "i-0db756afc278d47b2",
        public_ip="54.164.23.18", name="bastion"),
    Eni("nat", "eni-04f6caf6fe987397e", "a", "10.10.0.5", [], kind="nat", public_ip="3.219.84.12",
        description="Interface for NAT Gateway nat-0f42953322bcdf1df"),
    Eni("article", "eni-027ce9d7c95605b1d", "a", "10.10.0.73", ["article"], "i-03efaa125b5acbd69",
        name="article-service"),
    Eni("reports", "eni-0caa2e388c3602b24", "b", "10.10.1.60", ["reports"], "i-0f0e2ea9f98a3b41d",
        name="reports"),
    Eni("batch", "eni-0b491f74b1aa05d16", "b", "10.10.1.50", ["batch"], "i-0145ce72ba79f4287",
        prefixes4=["10.10.1.176/28"], name="batch-worker"),
]}

# Which interfaces each data set logs. Set A is the VPC-wide flow log; the article's interface has its
# own flow log (the article file), and batch has no records at all (its instance is stopped).
LOGGED = {
    "s3": {"alb-a", "alb-b", "web-1", "web-2", "app", "db", "bastion", "nat", "reports"},
    "cwl": {"app"},
    "article": {"article"},
}

# Outside addresses. Documentation ranges stand in for the internet; S3 addresses are real S3 space so
# that they fall in the AWS-managed S3 prefix list.
CORP_DNS = "10.20.0.2"                  # corporate DNS server, reached over the VPN (VGW)
PROMETHEUS = "10.10.1.30"               # monitoring server in the VPC, not in the inventory
CACHE_CLIENT = "10.10.1.77"             # worker using app:6379 (the rule allowing it was removed)
ADMIN_HOME = "198.51.100.200"           # the real bastion admin
VPN_USER, OFFICE_USER = "10.200.3.41", "172.20.17.9"
EXTERNAL_API = "192.0.2.10"
PARTNER_API = "192.0.2.44"
APT_MIRROR = "192.0.2.80"
LOG_COLLECTOR6 = "2001:db8:4000::25"
S3_ADDRS = ["52.216.8.93", "52.217.44.38", "52.216.177.82"]
APP_OLD_IPV6 = "2600:1f18:4a3:6900:1f0e:88c3:b2d4:a17"   # removed from the app ENI before the snapshot
EXTERNAL_API6 = "2001:db8:4100::10"

# --------------------------------------------------------------------------------------------------
# Security groups and rules
# --------------------------------------------------------------------------------------------------
PEER_ACCOUNT, PEER_VPC, PEER_PCX = "111122223333", "vpc-03771bd743d66fb15", "pcx-0b193dd3bae821ccd"
PEER_GROUP = "sg-01369f43df859fc0e"      # in the peered VPC: NOT in security-groups.json
PL_CORP = "pl-0c30419d7386028f3"
PL_S3 = "pl-63a5400a"

GROUPS = {  # key: (GroupId, GroupName, Description)
    "alb": ("sg-0a5c66cbda00f555b", "alb-sg", "web-alb load balancer"),
    "web": ("sg-065020594ff618000", "web-sg", "web tier"),
    "app": ("sg-0b553a59028de3b25", "app-sg", "application tier"),
    "monitoring": ("sg-0349e0be7f745e04f", "monitoring-sg", "metrics agents"),
    "db": ("sg-0bd3b3153febd854e", "db-sg", "database"),
    "bastion": ("sg-0f92669b1becefdac", "bastion-sg", "bastion host"),
    "article": ("sg-0dce701e9ebe736d5", "article-sg", "article service"),
    "reports": ("sg-081795ba9c4d38f37", "reports-sg", "reporting server"),
    "batch": ("sg-081e515cc8e989285", "batch-sg", "batch workers"),
    "legacy": ("sg-0599f4f1f6aacc53f", "legacy-sg", "legacy FTP server (decommissioned)"),
    "default": ("sg-0420e291bc62e8af7", "default", "default VPC security group"),
}


@dataclass
class Rule:
    name: str          # stable handle used by README/expected files
    group: str         # group key
    egress: bool
    proto: str         # tcp udp icmp icmpv6 -1
    from_port: int
    to_port: int
    peer: tuple        # ("cidr4", c) ("cidr6", c) ("pl", id) ("sg", group key) ("sg-peer", id)
    description: str | None = None

    @property
    def id(self) -> str:
        return "sgr-0" + hashlib.sha256(self.name.encode()).hexdigest()[:16]


def _r(name, group, egress, proto, ports, peer, desc=None):
    lo, hi = ports if isinstance(ports, tuple) else (ports, ports)
    return Rule(name, group, egress, proto, lo, hi, peer, desc)


ALL = (-1, -1)
RULES = [
    _r("alb-in-443-v4", "alb", False, "tcp", 443, ("cidr4", "0.0.0.0/0"), "HTTPS from the internet"),
    _r("alb-in-443-v6", "alb", False, "tcp", 443, ("cidr6", "::/0"), "HTTPS from the internet"),
    _r("alb-in-80-v4", "alb", False, "tcp", 80, ("cidr4", "0.0.0.0/0"), "HTTP redirect"),
    _r("alb-in-80-v6", "alb", False, "tcp", 80, ("cidr6", "::/0"), "HTTP redirect"),
    _r("alb-out-8080-web", "alb", True, "tcp", 8080, ("sg", "web"), "to web targets"),
    _r("web-in-8080-alb", "web", False, "tcp", 8080, ("sg", "alb"), "from web-alb"),
    _r("web-in-22-vpn", "web", False, "tcp", 22, ("pl", PL_CORP), "SSH from corporate VPN"),
    _r("web-in-icmp-vpc", "web", False, "icmp", ALL, ("cidr4", VPC_CIDR4), "ping from the VPC"),
    _r("web-out-all-v4", "web", True, "-1", ALL, ("cidr4", "0.0.0.0/0")),
    _r("web-out-all-v6", "web", True, "-1", ALL, ("cidr6", "::/0")),
    _r("app-in-8443-web", "app", False, "tcp", 8443, ("sg", "web"), "API from web tier"),
    _r("app-in-9000-peer", "app", False, "tcp", 9000, ("sg-peer", PEER_GROUP), "partner ingest over peering"),
    _r("app-out-all-v4", "app", True, "-1", ALL, ("cidr4", "0.0.0.0/0")),
    _r("app-out-443-s3", "app", True, "tcp", 443, ("pl", PL_S3), "S3 via gateway endpoint"),
    _r("mon-in-9100-prom", "monitoring", False, "tcp", 9100, ("cidr4", PROMETHEUS + "/32"), "Prometheus node exporter"),
    _r("mon-in-8125-statsd", "monitoring", False, "udp", 8125, ("cidr4", VPC_CIDR4), "statsd"),
    _r("mon-out-all-v4", "monitoring", True, "-1", ALL, ("cidr4", "0.0.0.0/0")),
    _r("db-in-5432-app", "db", False, "tcp", 5432, ("sg", "app"), "PostgreSQL from app tier"),
    _r("db-in-3306-vpc", "db", False, "tcp", 3306, ("cidr4", VPC_CIDR4), "MySQL (migration, obsolete)"),
    _r("db-out-all-v4", "db", True, "-1", ALL, ("cidr4", "0.0.0.0/0")),
    _r("bastion-in-22-admin", "bastion", False, "tcp", 22, ("cidr4", ADMIN_HOME + "/32"), "SSH admin home"),
    _r("bastion-in-22-any", "bastion", False, "tcp", 22, ("cidr4", "0.0.0.0/0"), "SSH (temporary)"),
    _r("bastion-in-3389-any", "bastion", False, "tcp", 3389, ("cidr4", "0.0.0.0/0"), "RDP (temporary)"),
    _r("bastion-out-all-v4", "bastion", True, "-1", ALL, ("cidr4", "0.0.0.0/0")),
    _r("article-in-4000", "article", False, "tcp", 4000, ("cidr4", "100.64.0.0/10"), "service port"),
    _r("article-out-all-v4", "article", True, "-1", ALL, ("cidr4", "0.0.0.0/0")),
    _r("reports-in-443-vpc", "reports", False, "tcp", 443, ("cidr4", VPC_CIDR4), "HTTPS from the VPC"),
    _r("reports-out-all-v4", "reports", True, "-1", ALL, ("cidr4", "0.0.0.0/0")),
    _r("batch-in-22-bastion", "batch", False, "tcp", 22, ("sg", "bastion"), "SSH from bastion"),
    _r("batch-out-all-v4", "batch", True, "-1", ALL, ("cidr4", "0.0.0.0/0")),
    _r("legacy-in-21", "legacy", False, "tcp", 21, ("cidr4", "0.0.0.0/0"), "FTP"),
    _r("legacy-in-8000-8100", "legacy", False, "tcp", (8000, 8100), ("cidr4", "10.0.0.0/8"), "internal HTTP"),
    _r("legacy-out-all-v4", "legacy", True, "-1", ALL, ("cidr4", "0.0.0.0/0")),
    _r("default-in-self", "default", False, "-1", ALL, ("sg", "default")),
    _r("default-out-all-v4", "default", True, "-1", ALL, ("cidr4", "0.0.0.0/0")),
    _r("default-out-all-v6", "default", True, "-1", ALL, ("cidr6", "::/0")),
]

PREFIX_LISTS = {  # id: (name, family, owner, entries[(cidr, description)])
    PL_CORP: ("corp-vpn", "IPv4", ACCOUNT, [("10.200.0.0/16", "Client VPN pool"),
                                           ("172.20.16.0/20", "HQ office LAN"),
                                           ("172.21.0.0/20", "DR office LAN")]),
    PL_S3: ("com.amazonaws.us-east-1.s3", "IPv4", "AWS",
            [(c, None) for c in ["3.5.0.0/19", "16.15.176.0/20", "16.182.0.0/16", "18.34.0.0/19",
                                 "18.34.232.0/21", "52.216.0.0/15", "54.231.0.0/16"]]),
    "pl-02cd2c6b": ("com.amazonaws.us-east-1.dynamodb", "IPv4", "AWS", None),
    "pl-3b927c52": ("com.amazonaws.global.cloudfront.origin-facing", "IPv4", "AWS", None),
}

# --------------------------------------------------------------------------------------------------
# Record engine
# --------------------------------------------------------------------------------------------------
FIELDS_V5 = ("version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes start "
             "end action log-status vpc-id subnet-id instance-id tcp-flags type pkt-srcaddr pkt-dstaddr region "
             "az-id sublocation-type sublocation-id pkt-src-aws-service pkt-dst-aws-service flow-direction "
             "traffic-path").split()
FIELDS_V2 = FIELDS_V5[:14]
FIELDS_ARTICLE = ("account-id action az-id bytes dstaddr dstport end flow-direction instance-id interface-id "
                  "log-status packets pkt-dst-aws-service pkt-dstaddr pkt-src-aws-service pkt-srcaddr protocol "
                  "region srcaddr srcport start sublocation-id sublocation-type subnet-id tcp-flags traffic-path "
                  "type version vpc-id").split()
TCP, UDP, ICMP = 6, 17, 1
SYN, FIN, RST, SYNACK = 2, 1, 4, 18


@dataclass
class Rec:
    """One flow-log record plus the ground truth behind it (never written to the logs)."""
    ds: str
    f: dict
    eni: str
    conv: tuple | None = None        # (protocol, local port, peer address, peer port); None = no traffic
    direction: str | None = None     # who really initiated, seen from this ENI: inbound / outbound
    by_initiator: bool | None = None
    unattributable: bool = False
    seq: int = 0


RECS: list[Rec] = []


def emit(ds, eni: Eni, src, dst, sport, dport, proto, packets, nbytes, start, end, action, flags,
         flow_dir, *, path="-", pkt_src=None, pkt_dst=None, src_svc="-", dst_svc="-",
         conv=None, direction=None, by_initiator=None, unattributable=False):
    """Append one record (dropped when this data set does not log the interface)."""
    if eni.key not in LOGGED[ds]:
        return
    sn = SUBNETS[eni.subnet]
    f = {
        "version": "5", "account-id": ACCOUNT, "interface-id": eni.id, "srcaddr": src, "dstaddr": dst,
        "srcport": str(sport), "dstport": str(dport), "protocol": str(proto), "packets": str(packets),
        "bytes": str(nbytes), "start": str(int(start)), "end": str(int(end)), "action": action,
        "log-status": "OK", "vpc-id": VPC, "subnet-id": sn.id, "instance-id": eni.instance or "-",
        "tcp-flags": str(flags), "type": "IPv6" if ":" in src else "IPv4",
        "pkt-srcaddr": pkt_src or src, "pkt-dstaddr": pkt_dst or dst, "region": REGION, "az-id": sn.az_id,
        "sublocation-type": "-", "sublocation-id": "-", "pkt-src-aws-service": src_svc,
        "pkt-dst-aws-service": dst_svc, "flow-direction": flow_dir,
        "traffic-path": path if flow_dir == "egress" else "-",
    }
    RECS.append(Rec(ds, f, eni.key, conv, direction, by_initiator, unattributable, len(RECS)))


def emit_status(ds, eni: Eni, start, status):
    """NODATA / SKIPDATA: only version, account, interface, start, end and log-status are set."""
    if eni.key not in LOGGED[ds]:
        return
    f = {k: "-" for k in FIELDS_V5}
    f.update({"version": "5", "account-id": ACCOUNT, "interface-id": eni.id, "start": str(int(start)),
              "end": str(int(start) + 59), "log-status": status})
    RECS.append(Rec(ds, f, eni.key, seq=len(RECS)))


@dataclass
class Side:
    """One end of a connection. `eni` is set when the address belongs to an interface of the inventory;
    `path` is the traffic-path of that ENI's egress records towards the other end; `svc` is the
    pkt-*-aws-service value of this address."""
    addr: str
    port: int
    eni: Eni | None = None
    path: str = "1"
    svc: str = "-"


_USED_PORTS: dict[str, set[int]] = {}


def eph(rng: random.Random, addr: str) -> int:
    """A fresh ephemeral port (32768-60999) for addr, never reused, so that no two connections of the
    generator share a conversation key by accident."""
    used = _USED_PORTS.setdefault(addr, set())
    while True:
        p = rng.randint(32768, 60999)
        if p not in used:
            used.add(p)
            return p


def activity(first, last, syn_t, syn_flag, fin_t, lo, hi, rate, seg, hdr, rng, data_from=None):
    """Split one direction of a flow into 1-minute aggregation records clipped to [lo, hi).
    Payload flows from data_from (default: first) on. Yields (start, end, packets, bytes, tcp_flags)."""
    data_from = first if data_from is None else data_from
    m = int(max(lo, first) // 60 * 60)
    while m < hi and m <= last:
        a, b = max(m, first, lo), min(m + 59.999, last, hi - 0.001)
        if a <= b:
            payload = int(rate * max(0.0, b - max(a, data_from)) * rng.uniform(0.8, 1.2))
            flags, n = 0, (payload + seg - 1) // seg
            if syn_t is not None and m <= syn_t < m + 60 and lo <= syn_t:
                flags, n = flags | syn_flag, n + 1
            if fin_t is not None and m <= fin_t < m + 60 and fin_t < hi:
                flags, n = flags | FIN, n + 1
            n = max(n, 1)
            yield a, b, n, n * hdr + payload, flags
        m += 60


def _emit_flow(ds, proto, sender: Side, receiver: Side, recs, action_at_receiver, initiator_sends,
               nat=None):
    """Write the records of one direction of a flow at every logged ENI on its path."""
    conv_at = lambda me, other: (proto, me.port, other.addr, other.port)  # noqa: E731
    for start, end, n, nb, flags in recs:
        fl = flags if proto == TCP else 0
        if sender.eni:
            emit(ds, sender.eni, sender.addr, receiver.addr, sender.port, receiver.port, proto, n, nb, start,
                 end, "ACCEPT", fl, "egress", path=sender.path, src_svc=sender.svc, dst_svc=receiver.svc,
                 conv=conv_at(sender, receiver),
                 direction="outbound" if initiator_sends else "inbound", by_initiator=initiator_sends)
        if receiver.eni:
            emit(ds, receiver.eni, sender.addr, receiver.addr, sender.port, receiver.port, proto, n, nb,
                 start, end, action_at_receiver, fl, "ingress", src_svc=sender.svc, dst_svc=receiver.svc,
                 conv=conv_at(receiver, sender),
                 direction="inbound" if initiator_sends else "outbound", by_initiator=initiator_sends)
        if nat:
            _emit_nat_legs(ds, proto, sender, receiver, nat, start, end, n, nb, fl, initiator_sends)


def _emit_nat_legs(ds, proto, sender, receiver, nat, start, end, n, nb, fl, outbound_leg):
    """The NAT gateway ENI sees each direction twice (inside leg and internet leg); pkt-* keep the
    real endpoints (AWS-FACTS 3). The NAT ENI has no groups: coverage only."""
    gw, nat_port = nat      # nat_port: the source port the NAT gateway uses towards the internet
    inside, outside = (sender, receiver) if outbound_leg else (receiver, sender)
    ckey_in, ckey_out = (proto, outside.port, inside.addr, inside.port), (proto, nat_port, outside.addr, outside.port)
    if outbound_leg:
        emit(ds, gw, inside.addr, gw.ip4, inside.port, outside.port, proto, n, nb, start, end, "ACCEPT", fl,
             "ingress", pkt_dst=outside.addr, dst_svc=outside.svc, conv=ckey_in, direction="inbound",
             by_initiator=True)
        emit(ds, gw, gw.ip4, outside.addr, nat_port, outside.port, proto, n, nb, start, end, "ACCEPT", fl,
             "egress", path="2", dst_svc=outside.svc, conv=ckey_out, direction="outbound", by_initiator=True)
    else:
        emit(ds, gw, outside.addr, gw.ip4, outside.port, nat_port, proto, n, nb, start, end, "ACCEPT", fl,
             "ingress", src_svc=outside.svc, conv=ckey_out, direction="outbound", by_initiator=False)
        emit(ds, gw, gw.ip4, inside.addr, outside.port, inside.port, proto, n, nb, start, end, "ACCEPT", fl,
             "egress", path="1", pkt_src=outside.addr, src_svc=outside.svc, conv=ckey_in, direction="inbound",
             by_initiator=False)


def tcp(ds, c: Side, s: Side, t_open, t_close=None, *, rng, up=1.0, down=1.0, synack=None, mode="ok",
        nat=None, tries=1):
    """One TCP connection from client c to server s, written at every logged ENI it crosses.
    t_open = time of the client's SYN (may lie before the window: then no SYN is logged);
    t_close = time of the client's FIN (None: still open at the end of the window).
    up/down = payload bytes per second client->server / server->client.
    mode: ok (handshake, data, FIN) | rst (server answers the SYN with RST) | reject (dropped at the
    server's ENI: REJECT there, ACCEPT at the client's ENI) | syn (SYN never answered)."""
    lo, hi = WINDOWS[ds]
    hdr = 72 if ":" in c.addr else 52
    if mode in ("rst", "reject", "syn"):
        if not lo <= t_open < hi:
            return
        syn_hdr = hdr + 8 if mode != "rst" else hdr - 8
        end = min(t_open + (3.0 if tries > 1 else 0.0), t_open // 60 * 60 + 59)   # retries: +1 s, +3 s
        c2s = [(t_open, end, tries, tries * syn_hdr, SYN)]
        _emit_flow(ds, TCP, c, s, c2s, "REJECT" if mode == "reject" else "ACCEPT", True, nat)
        if mode == "rst":
            _emit_flow(ds, TCP, s, c, [(t_open, t_open, 1, hdr - 12, RST)], "ACCEPT", False, nat)
        return
    rtt = synack if synack is not None else rng.uniform(0.0004, 0.02)
    c_last = t_close if t_close is not None else hi + 1
    s_last = t_close + rtt if t_close is not None else hi + 1
    c2s = list(activity(t_open, c_last, t_open, SYN, t_close, lo, hi, up, 600, hdr, rng, data_from=t_open + rtt))
    s2c = list(activity(t_open + rtt, s_last, t_open + rtt, SYNACK, None if t_close is None else t_close + rtt,
                        lo, hi, down, 1400, hdr, rng))
    _emit_flow(ds, TCP, c, s, c2s, "ACCEPT", True, nat)
    _emit_flow(ds, TCP, s, c, s2c, "ACCEPT", False, nat)


def udp(ds, c: Side, s: Side, t_first, t_last, *, rng, up, down=None, nat=None):
    """UDP exchange from c to s; down=None means one-way (no answer ever)."""
    lo, hi = WINDOWS[ds]
    hdr = 48 if ":" in c.addr else 28
    c2s = list(activity(t_first, t_last, None, 0, None, lo, hi, up, 200, hdr, rng))
    _emit_flow(ds, UDP, c, s, c2s, "ACCEPT", True, nat)
    if down is not None:
        s2c = list(activity(t_first + 0.002, t_last + 0.002, None, 0, None, lo, hi, down, 400, hdr, rng))
        _emit_flow(ds, UDP, s, c, s2c, "ACCEPT", False, nat)


def icmp(ds, a: Side, b: Side, t_first, t_last, *, rng, pps=0.1):
    """ICMP echo from a to b with replies; ports 0/0 (AWS-FACTS 4)."""
    lo, hi = WINDOWS[ds]
    req = list(activity(t_first, t_last, None, 0, None, lo, hi, pps * 56, 56, 28, rng))
    rep = req   # one echo reply per request, same size, same seconds
    _emit_flow(ds, ICMP, Side(a.addr, 0, a.eni, a.path), Side(b.addr, 0, b.eni, b.path), req, "ACCEPT", True)
    _emit_flow(ds, ICMP, Side(b.addr, 0, b.eni, b.path), Side(a.addr, 0, a.eni, a.path), rep, "ACCEPT", False)


def at(key, port, path="1"):
    """Side of a logged interface (its primary IPv4)."""
    return Side(ENIS[key].ip4, port, ENIS[key], path)


def at6(key, port, path="8"):
    return Side(ENIS[key].ip6[0], port, ENIS[key], path)


def R(name: str) -> random.Random:
    return random.Random(f"{SEED}:{name}")


def minutes(ds, skip=()):
    lo, hi = WINDOWS[ds]
    return [m for m in range(lo, hi, 60) if m not in skip]


BASTION_QUIET = set(range(int(minute("14:20")), int(minute("14:25")), 60))  # bastion sends/receives nothing

# --------------------------------------------------------------------------------------------------
# Traffic, set A (S3, v5 with tcp-flags and flow-direction) and set B (CloudWatch, v2)
# --------------------------------------------------------------------------------------------------


def alb_https_clients_ipv4(ds="s3"):
    """SPEC: TCP initiator from flags (SYN 2 / SYN-ACK 18, short ones 3 / 19, long ones 0 then FIN 1)
    -> inbound, `established`, rule alb-in-443-v4. Includes one connection whose SYN fell before the
    window (SYN-ACK without SYN -> `inferred`) and connections whose SYN and SYN-ACK sit in adjacent
    minutes (and adjacent files)."""
    rng = R("alb443v4")
    for key in ("alb-a", "alb-b"):
        for m in minutes(ds):
            for _ in range(rng.randint(3, 7)):
                client = f"198.51.100.{rng.randint(1, 126)}"
                t = m + rng.uniform(0, 59.5)
                dur = rng.uniform(0.3, 15) if rng.random() < 0.7 else rng.uniform(30, 240)
                tcp(ds, Side(client, eph(rng, client), path="-"), at(key, 443, "2"), t, t + dur, rng=rng,
                    up=rng.uniform(400, 3000), down=rng.uniform(3000, 40000))
    # SYN at 12:59:59.7 (before the window), SYN-ACK at 13:00:00.1 -> only the SYN-ACK is logged.
    client = "198.51.100.7"
    tcp(ds, Side(client, eph(rng, client)), at("alb-a", 443, "2"), S3_START - 0.3, S3_START + 41, rng=rng,
        synack=0.4, up=900, down=12000)
    # SYN and SYN-ACK in adjacent minutes, across 5-minute file boundaries.
    for hhmm in ("13:34", "14:59", "15:19"):
        client = f"198.51.100.{rng.randint(1, 126)}"
        t = minute(hhmm, 59.96)
        tcp(ds, Side(client, eph(rng, client)), at("alb-b", 443, "2"), t, t + 25, rng=rng, synack=0.07,
            up=1200, down=15000)


def alb_http_redirects(ds="s3"):
    """SPEC: short connections, flags 3 / 19 -> `established`, rule alb-in-80-v4 (IPv4 only: the
    ::/0 port-80 rule stays `unused` because IPv4 and IPv6 never cross)."""
    rng = R("alb80")
    for key in ("alb-a", "alb-b"):
        for m in minutes(ds):
            for _ in range(rng.randint(0, 2)):
                client = f"198.51.100.{rng.randint(1, 126)}"
                t = m + rng.uniform(0, 58)
                tcp(ds, Side(client, eph(rng, client)), at(key, 80, "2"), t, t + rng.uniform(0.1, 0.8),
                    rng=rng, up=500, down=700)


def alb_https_clients_ipv6(ds="s3"):
    """SPEC: IPv6 peers match only IPv6 CIDRs -> rule alb-in-443-v6 `established`."""
    rng = R("alb443v6")
    for key in ("alb-a", "alb-b"):
        for m in minutes(ds):
            for _ in range(rng.randint(0, 2)):
                client = f"2001:db8:{rng.randint(0x100, 0xfff):x}:{rng.randint(1, 0xffff):x}::{rng.randint(2, 0xfff):x}"
                t = m + rng.uniform(0, 58)
                tcp(ds, Side(client, eph(rng, client)), at6(key, 443, "2"), t, t + rng.uniform(0.5, 20), rng=rng,
                    up=rng.uniform(400, 2000), down=rng.uniform(3000, 30000))


def alb_target_pools(ds="s3"):
    """SPEC: traffic between two logged ENIs is two conversations, one at each end. ALB -> web:8080
    keep-alive connections: at the ALB egress rule alb-out-8080-web (referenced group web-sg), at the
    web host ingress rule web-in-8080-alb (referenced group alb-sg). The first connection of each pair
    opened before the window: mid-stream (flags 0) -> `inferred` by the port rule."""
    rng = R("albpool")
    lo, hi = WINDOWS[ds]
    for a in ("alb-a", "alb-b"):
        for w in ("web-1", "web-2"):
            for _slot in range(2):
                t = lo - rng.uniform(60, 900)
                while t < hi:
                    dur = rng.uniform(480, 1500)
                    tcp(ds, at(a, eph(rng, ENIS[a].ip4)), at(w, 8080), t, t + dur if t + dur < hi else None,
                        rng=rng, up=rng.uniform(300, 900), down=rng.uniform(4000, 20000))
                    t += dur + rng.uniform(0.5, 5)


def alb_health_checks(ds="s3"):
    """SPEC: many short established conversations between two logged ENIs (every 30 s per target)."""
    rng = R("albhc")
    for a in ("alb-a", "alb-b"):
        for w in ("web-1", "web-2"):
            phase = rng.uniform(0, 29)
            for m in minutes(ds):
                for half in (0, 30):
                    t = m + half + phase
                    tcp(ds, at(a, eph(rng, ENIS[a].ip4)), at(w, 8080), t, t + 0.004, rng=rng, synack=0.0006,
                        up=180 / 0.004, down=260 / 0.004)


def web_to_app_pools(ds="s3"):
    """SPEC: web -> app:8443, rule app-in-8443-web (referenced group web-sg) at the app ENI and the
    default egress rule web-out-all-v4 at the web ENIs. In set B (v2, no flags) the port rule decides:
    both directions are allowed at app, the lower port (8443) is the responder -> inbound, `inferred`."""
    rng = R("webapp")
    lo, hi = WINDOWS[ds]
    for w in ("web-1", "web-2"):
        for _slot in range(2):
            t = lo - rng.uniform(30, 1200)
            while t < hi:
                dur = rng.uniform(600, 2400)
                tcp(ds, at(w, eph(rng, ENIS[w].ip4)), at("app", 8443), t, t + dur if t + dur < hi else None,
                    rng=rng, up=rng.uniform(200, 700), down=rng.uniform(1000, 6000))
                t += dur + rng.uniform(0.2, 3)


def app_to_db_pool(ds="s3"):
    """SPEC: app -> db:5432. Pool connections opened before the window are mid-stream (flags 0): at db
    both directions are allowed (ingress 5432 from app-sg, default egress) and the lower port decides
    -> inbound; at app only egress allows it -> outbound. db-out-all-v4 must stay `unused`."""
    rng = R("appdb")
    lo, hi = WINDOWS[ds]
    for _slot in range(4):
        t = lo - rng.uniform(600, 7200)
        while t < hi:
            dur = rng.uniform(1800, 5400)
            tcp(ds, at("app", eph(rng, ENIS["app"].ip4)), at("db", 5432), t, t + dur if t + dur < hi else None,
                rng=rng, up=rng.uniform(300, 1500), down=rng.uniform(1500, 9000))
            t += dur + rng.uniform(0.1, 2)


def app_dns(ds="s3"):
    """SPEC: two-way UDP without flags; only egress rules could allow it -> outbound, `inferred`
    (app-out-all-v4 and mon-out-all-v4, not exclusive)."""
    rng = R("dns")
    for m in minutes(ds):
        for _ in range(2):
            t = m + rng.uniform(0, 59.9)
            port = eph(rng, ENIS["app"].ip4)
            udp(ds, at("app", port, "3"), Side(CORP_DNS, 53), t, t + 0.001, rng=rng, up=45 / 0.001, down=120 / 0.001)


def app_to_s3(ds="s3"):
    """SPEC: peer in an AWS-managed prefix list -> app-out-443-s3 AND the default egress rules match
    (exclusive 0 for all three). Direct through the S3 gateway endpoint (traffic-path 7)."""
    rng = R("s3")
    for m in minutes(ds)[::2]:
        t = m + rng.uniform(0, 50)
        dst = rng.choice(S3_ADDRS)
        dur = rng.uniform(0.5, 8)
        big = rng.uniform(50_000, 500_000)
        tcp(ds, at("app", eph(rng, ENIS["app"].ip4), "7"), Side(dst, 443, svc="S3"), t, t + dur, rng=rng,
            up=2000 / dur, down=big / dur)


def nat_internet_calls(ds="s3"):
    """SPEC: instance egress through the NAT gateway. The instance ENI sees the real remote address
    (default egress rule, `established`); the NAT ENI (no groups) counts for coverage only."""
    rng = R("nat")
    nat = ENIS["nat"]
    for m in minutes(ds)[::3]:
        t = m + rng.uniform(0, 55)
        tcp(ds, at("app", eph(rng, ENIS["app"].ip4)), Side(EXTERNAL_API, 443), t, t + rng.uniform(0.3, 2),
            rng=rng, up=1500, down=4000, nat=(nat, eph(rng, nat.ip4)))
    for w in ("web-1", "web-2"):
        for m in minutes(ds)[::10]:
            t = m + rng.uniform(0, 55)
            tcp(ds, at(w, eph(rng, ENIS[w].ip4)), Side(PARTNER_API, 443), t, t + rng.uniform(0.2, 1.5),
                rng=rng, up=900, down=2500, nat=(nat, eph(rng, nat.ip4)))


def statsd(ds="s3"):
    """SPEC: one-way UDP -> `attempted`. Each web host sends metrics to app:8125 from one socket all
    window long: one conversation per web host. At app: mon-in-8125-statsd `attempted`; at web the
    default egress rule gets an `attempted` conversation too (its status stays used)."""
    rng = R("statsd")
    lo, hi = WINDOWS[ds]
    for w, port in (("web-1", 41876), ("web-2", 38214)):
        _USED_PORTS.setdefault(ENIS[w].ip4, set()).add(port)
        udp(ds, at(w, port), at("app", 8125), lo + rng.uniform(0, 3), hi, rng=rng, up=rng.uniform(20, 60))


def prometheus_scrapes(ds="s3"):
    """SPEC: CIDR /32 rule mon-in-9100-prom; keep-alive connections re-opened every ~30 min (the
    first one opened before the window)."""
    rng = R("prom")
    lo, hi = WINDOWS[ds]
    t = lo - rng.uniform(100, 1500)
    while t < hi:
        dur = rng.uniform(1500, 2100)
        tcp(ds, Side(PROMETHEUS, eph(rng, PROMETHEUS)), at("app", 9100), t, t + dur if t + dur < hi else None,
            rng=rng, up=30, down=1100)
        t += dur + rng.uniform(1, 15)


def cache_client_unexplained(ds="s3"):
    """SPEC: an accepted, established inbound conversation that no rule explains (app:6379 from a
    worker; the rule was removed after these records) -> reported as unexplained, never dropped."""
    rng = R("redis")
    t = minute("14:10", 12.4)
    while t < WINDOWS[ds][1] - 300:
        tcp(ds, Side(CACHE_CLIENT, eph(rng, CACHE_CLIENT)), at("app", 6379), t, t + rng.uniform(60, 200),
            rng=rng, up=400, down=2500)
        t += rng.uniform(1100, 1300)


def web2_to_app_9000_rejected(ds="s3"):
    """SPEC: REJECT is never usage. web-2 retries app:9000, which only the (unresolvable) peered group
    may reach: REJECT at app (rejected attempts, app-in-9000-peer stays `unused`); ACCEPT one-way at
    web-2 (an `attempted` conversation on web-out-all-v4)."""
    rng = R("p9000")
    bursts = {"s3": ["13:33", "14:52", "15:41"], "cwl": ["11:37"]}[ds]
    for hhmm in bursts:
        for i in range(3):
            tcp(ds, at("web-2", eph(rng, ENIS["web-2"].ip4)), at("app", 9000), minute(hhmm, 10 + 7 * i),
                rng=rng, mode="reject", tries=3)


def web1_ipv6_log_shipping(ds="s3"):
    """SPEC: mid-stream TCP only (opened before the window, FIN at 15:20:14) -> `inferred`; only the
    IPv6 egress rule web-out-all-v6 can allow it (exactly-one-direction rule) -> outbound."""
    rng = R("logship")
    tcp(ds, at6("web-1", eph(rng, ENIS["web-1"].ip6[0])), Side(LOG_COLLECTOR6, 6514), S3_START - 5000,
        minute("15:20", 14.2), rng=rng, up=2500, down=60)


def corp_vpn_ssh(ds="s3"):
    """SPEC: prefix-list peer (corp-vpn) -> web-in-22-vpn. The web-1 session's SYN is at 14:29:59.9
    and its SYN-ACK at 14:30:00.05: adjacent minutes and adjacent files, still `established`."""
    rng = R("vpnssh")
    tcp(ds, Side(VPN_USER, eph(rng, VPN_USER)), at("web-1", 22, "3"), minute("14:29", 59.9), minute("15:02", 10),
        rng=rng, synack=0.15, up=60, down=400)
    tcp(ds, Side(OFFICE_USER, eph(rng, OFFICE_USER)), at("web-2", 22, "3"), minute("13:40", 12), minute("13:55", 40),
        rng=rng, up=50, down=300)


def bastion_admin_ssh(ds="s3"):
    """SPEC: every matching rule gets the conversation: the admin's sessions match both
    bastion-in-22-admin (/32) and bastion-in-22-any (0.0.0.0/0) -> exclusive 0 for both."""
    rng = R("admin")
    for a, b in (("13:05", "13:48"), ("15:10", "15:31")):
        tcp(ds, Side(ADMIN_HOME, eph(rng, ADMIN_HOME)), at("bastion", 22, "8"), minute(a, 31.2), minute(b, 2.7),
            rng=rng, up=80, down=700)


def bastion_ssh_scanners(ds="s3"):
    """SPEC: internet scanners grabbing the SSH banner: SYN 3 / SYN-ACK 19 -> `established`, matched
    only by bastion-in-22-any (exclusive)."""
    rng = R("sshscan")
    for m in minutes(ds, BASTION_QUIET):
        if rng.random() < 0.35:
            src = f"203.0.113.{rng.randint(1, 254)}"
            t = m + rng.uniform(0, 57)
            tcp(ds, Side(src, eph(rng, src)), at("bastion", 22, "8"), t, t + rng.uniform(0.2, 2), rng=rng,
                up=300, down=600)


def bastion_rdp_scanners(ds="s3"):
    """SPEC: a SYN answered by RST (flags 4): the rule let the packet through but nothing listens ->
    bastion-in-3389-any is `attempted`."""
    rng = R("rdpscan")
    for m in minutes(ds, BASTION_QUIET):
        if rng.random() < 0.15:
            src = f"203.0.113.{rng.randint(1, 254)}"
            tcp(ds, Side(src, eph(rng, src)), at("bastion", 3389, "8"), m + rng.uniform(0, 59), rng=rng, mode="rst")


def rejected_scans(ds="s3"):
    """SPEC: REJECT records are rejected attempts per (interface, direction, protocol, port), counting
    distinct (peer, peer port); never usage. Ports 23, 445, 3306 at the bastion and the ALB."""
    rng = R("rejects")
    for key in ("bastion", "alb-a", "alb-b"):
        skip = BASTION_QUIET if key == "bastion" else ()
        for m in minutes(ds, skip):
            if rng.random() < 0.3:
                src = f"203.0.113.{rng.randint(1, 254)}"
                port = rng.choice((23, 445, 3306))
                tcp(ds, Side(src, eph(rng, src)), at(key, port), m + rng.uniform(0, 56), rng=rng, mode="reject",
                    tries=rng.choice((1, 1, 2)))


def bastion_pings_web(ds="s3"):
    """SPEC: ICMP: one conversation per (ENI, protocol, peer), matched by every ICMP rule of its
    family. At the bastion only egress allows it -> outbound. At web both directions are allowed and
    the ports are both 0: the port rule cannot decide (see README: the echo request is always written
    first; expected inbound -> web-in-icmp-vpc `used`/`inferred`)."""
    rng = R("ping")
    lo, hi = WINDOWS[ds]
    for w in ("web-1", "web-2"):
        icmp(ds, at("bastion", 0), at(w, 0), lo + rng.uniform(0, 5), minute("14:20") - 1, rng=rng)
        icmp(ds, at("bastion", 0), at(w, 0), minute("14:25", rng.uniform(0, 5)), hi, rng=rng)


def bastion_apt(ds="s3"):
    """SPEC: outbound established through the internet gateway -> bastion-out-all-v4."""
    rng = R("apt")
    for hhmm in ("13:50", "15:35"):
        for i, port in enumerate((80, 80, 443)):
            t = minute(hhmm, 5 + 4 * i)
            tcp(ds, at("bastion", eph(rng, ENIS["bastion"].ip4), "8"), Side(APT_MIRROR, port), t,
                t + rng.uniform(2, 20), rng=rng, up=300, down=200_000)


def reports_nodata(ds="s3"):
    """SPEC: an interface is observed when it has any record, NODATA included: the idle reports host
    has only NODATA records -> its rules are `unused`, not `unobserved`."""
    for m in minutes(ds):
        emit_status(ds, ENIS["reports"], m, "NODATA")


def bastion_quiet_nodata(ds="s3"):
    """SPEC: NODATA for a quiet 5-minute span of a busy interface (bastion, 14:20-14:24)."""
    for m in sorted(BASTION_QUIET):
        emit_status(ds, ENIS["bastion"], m, "NODATA")


def web2_skipdata(ds="s3"):
    """SPEC: SKIPDATA carries no traffic but tells coverage."""
    emit_status(ds, ENIS["web-2"], minute("14:47"), "SKIPDATA")


def article_records():
    """The article's two records (inbound TCP 4000 from 100.64.0.39, flags 2 / 18) -> article-in-4000
    `established`. Kept verbatim; parsed here only for the ground truth."""
    for line in ARTICLE_LINES:
        f = dict(zip(FIELDS_ARTICLE, line.split(" "), strict=True))
        ingress = f["flow-direction"] == "ingress"
        peer, pport = (f["srcaddr"], f["srcport"]) if ingress else (f["dstaddr"], f["dstport"])
        RECS.append(Rec("article", f, "article", (TCP, 4000, peer, int(pport)), "inbound", ingress, seq=len(RECS)))


ARTICLE_LINES = [
    "002244369527 ACCEPT use1-az6 11814 10.10.0.73 4000 1738854253 ingress i-03efaa125b5acbd69 "
    "eni-027ce9d7c95605b1d OK 22 - 10.10.0.73 - 100.64.0.39 6 us-east-1 100.64.0.39 18762 1738854240 - - "
    "subnet-081cfbbbb8bfeb867 2 - IPv4 5 vpc-0d585d9ae3c06759b",
    "002244369527 ACCEPT use1-az6 9025 100.64.0.39 18762 1738854253 egress i-03efaa125b5acbd69 "
    "eni-027ce9d7c95605b1d OK 17 - 100.64.0.39 - 10.10.0.73 6 us-east-1 10.10.0.73 4000 1738854240 - - "
    "subnet-081cfbbbb8bfeb867 18 1 IPv4 5 vpc-0d585d9ae3c06759b",
]


def app_old_ipv6_unattributable(ds="cwl"):
    """SPEC (v2 sides): without flow-direction the local side is the address that belongs to the ENI
    in the inventory. The app ENI still had an IPv6 address during set B that was removed before the
    snapshot: neither address of these records is the ENI's -> unattributable, counted, never dropped."""
    rng = R("oldv6")
    app = ENIS["app"]
    port = eph(rng, APP_OLD_IPV6)
    for m in (minute("11:12"), minute("11:13"), minute("11:14")):
        for src, dst, sp, dp, n, nb in ((APP_OLD_IPV6, EXTERNAL_API6, port, 443, 9, 1800),
                                        (EXTERNAL_API6, APP_OLD_IPV6, 443, port, 14, 16800)):
            emit(ds, app, src, dst, sp, dp, TCP, n + rng.randint(0, 4), nb + rng.randint(0, 900), m + 2, m + 57,
                 "ACCEPT", 0, "egress" if src == APP_OLD_IPV6 else "ingress", unattributable=True)


def generate_traffic():
    RECS.clear()
    _USED_PORTS.clear()
    for fn in (alb_https_clients_ipv4, alb_http_redirects, alb_https_clients_ipv6, alb_target_pools,
               alb_health_checks, web_to_app_pools, app_to_db_pool, app_dns, app_to_s3, nat_internet_calls,
               statsd, prometheus_scrapes, cache_client_unexplained, web2_to_app_9000_rejected,
               web1_ipv6_log_shipping, corp_vpn_ssh, bastion_admin_ssh, bastion_ssh_scanners,
               bastion_rdp_scanners, rejected_scans, bastion_pings_web, bastion_apt, reports_nodata,
               bastion_quiet_nodata, web2_skipdata):
        fn("s3")
    article_records()
    # Set B: the same application behaviour two hours earlier (11:00-12:00), app ENI only, v2 format.
    for fn in (web_to_app_pools, app_to_db_pool, app_dns, app_to_s3, nat_internet_calls, statsd,
               prometheus_scrapes, web2_to_app_9000_rejected, app_old_ipv6_unattributable):
        fn("cwl")


# --------------------------------------------------------------------------------------------------
# Writers: flow logs
# --------------------------------------------------------------------------------------------------

def write_gzip(path: Path, text: str):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0,
                                                  compresslevel=9) as gz:
        gz.write(text.encode())


def s3_name(flow_log_id: str, bucket_start: int) -> str:
    stamp = datetime.fromtimestamp(bucket_start, UTC).strftime("%Y%m%dT%H%MZ")
    h = hashlib.sha256(f"{flow_log_id}{stamp}".encode()).hexdigest()[:8]
    return f"{ACCOUNT}_vpcflowlogs_{REGION}_{flow_log_id}_{stamp}_{h}.log.gz"


def write_s3(out: Path):
    """Set A: one gzip file per 5 minutes, named by the 5-minute span holding the records' end time,
    each starting with the header line. Plus the article's file (other flow log, other field order)."""
    day = out / "flow-logs" / "AWSLogs" / ACCOUNT / "vpcflowlogs" / REGION / "2025" / "02" / "06"
    if day.exists():
        for old in day.glob(f"{ACCOUNT}_vpcflowlogs_*.log.gz"):
            old.unlink()
    buckets: dict[int, list[Rec]] = {}
    for r in RECS:
        if r.ds == "s3":
            end = int(r.f["end"])
            buckets.setdefault(end - (end - S3_START) % 300, []).append(r)
    for b, recs in sorted(buckets.items()):
        recs.sort(key=lambda r: (int(r.f["start"]), r.seq))
        lines = [" ".join(FIELDS_V5)] + [" ".join(r.f[k] for k in FIELDS_V5) for r in recs]
        write_gzip(day / s3_name(FLOW_LOG_ID, b), "\n".join(lines) + "\n")
    article_bucket = 1738854253 - 1738854253 % 300
    write_gzip(day / s3_name(ARTICLE_FLOW_LOG_ID, article_bucket),
               " ".join(FIELDS_ARTICLE) + "\n" + "\n".join(ARTICLE_LINES) + "\n")


def write_cloudwatch(out: Path):
    """Set B: v2 default format, no header; bare lines and the filter-log-events JSON (same records)."""
    recs = sorted((r for r in RECS if r.ds == "cwl"), key=lambda r: (int(r.f["start"]), r.seq))
    lines = [" ".join(("2" if k == "version" else r.f[k]) for k in FIELDS_V2) for r in recs]
    d = out / "cloudwatch"
    d.mkdir(parents=True, exist_ok=True)
    (d / "app-eni.log").write_text("\n".join(lines) + "\n")
    rng = R("cwl-events")
    stream = f"{ENIS['app'].id}-all"
    events = []
    for r, line in zip(recs, lines, strict=True):
        ts = int(r.f["start"]) * 1000
        ingest = int(r.f["end"]) * 1000 + rng.randint(240_000, 420_000)
        event_id = str(int(hashlib.sha256(f"{stream}{r.seq}".encode()).hexdigest(), 16))[:56].rjust(56, "3")
        events.append({"logStreamName": stream, "timestamp": ts, "message": line, "ingestionTime": ingest,
                       "eventId": event_id})
    doc = {"events": events, "searchedLogStreams": [{"logStreamName": stream, "searchedCompletely": True}]}
    (d / "filter-log-events.json").write_text(json.dumps(doc, indent=4) + "\n")


# --------------------------------------------------------------------------------------------------
# Writers: inventory (AWS CLI JSON shapes)
# --------------------------------------------------------------------------------------------------

def gid(key):
    return GROUPS[key][0]


def rule_json(r: Rule) -> dict:
    d = {"SecurityGroupRuleId": r.id, "GroupId": gid(r.group), "GroupOwnerId": ACCOUNT, "IsEgress": r.egress,
         "IpProtocol": r.proto, "FromPort": r.from_port, "ToPort": r.to_port}
    kind, val = r.peer
    if kind == "cidr4":
        d["CidrIpv4"] = val
    elif kind == "cidr6":
        d["CidrIpv6"] = val
    elif kind == "pl":
        d["PrefixListId"] = val
    elif kind == "sg":
        d["ReferencedGroupInfo"] = {"GroupId": gid(val), "UserId": ACCOUNT}
    else:
        d["ReferencedGroupInfo"] = {"GroupId": val, "PeeringStatus": "active", "UserId": PEER_ACCOUNT,
                                    "VpcId": PEER_VPC, "VpcPeeringConnectionId": PEER_PCX}
    if r.description:
        d["Description"] = r.description
    d["Tags"] = []
    d["SecurityGroupRuleArn"] = f"arn:aws:ec2:{REGION}:{ACCOUNT}:security-group-rule/{r.id}"
    return d


def ip_permissions(rules: list[Rule]) -> list[dict]:
    """describe-security-groups merges the rules that share (protocol, ports) into one IpPermission."""
    perms: dict[tuple, dict] = {}
    for r in rules:
        k = (r.proto, r.from_port, r.to_port)
        if k not in perms:
            p = {} if r.proto == "-1" else {"FromPort": r.from_port}
            p["IpProtocol"] = r.proto
            p.update({"IpRanges": [], "Ipv6Ranges": [], "PrefixListIds": []})
            if r.proto != "-1":
                p["ToPort"] = r.to_port
            p["UserIdGroupPairs"] = []
            perms[k] = p
        p, (kind, val), desc = perms[k], r.peer, ({"Description": r.description} if r.description else {})
        if kind == "cidr4":
            p["IpRanges"].append({"CidrIp": val, **desc})
        elif kind == "cidr6":
            p["Ipv6Ranges"].append({"CidrIpv6": val, **desc})
        elif kind == "pl":
            p["PrefixListIds"].append({**desc, "PrefixListId": val})
        elif kind == "sg":
            p["UserIdGroupPairs"].append({**desc, "GroupId": gid(val), "UserId": ACCOUNT})
        else:
            p["UserIdGroupPairs"].append({**desc, "GroupId": val, "PeeringStatus": "active", "UserId": PEER_ACCOUNT,
                                          "VpcId": PEER_VPC, "VpcPeeringConnectionId": PEER_PCX})
    return list(perms.values())


def security_groups_json() -> dict:
    out = []
    for key, (group_id, name, desc) in GROUPS.items():
        rules = [r for r in RULES if r.group == key]
        g = {"Description": desc, "GroupName": name,
             "IpPermissions": ip_permissions([r for r in rules if not r.egress]), "OwnerId": ACCOUNT,
             "GroupId": group_id, "IpPermissionsEgress": ip_permissions([r for r in rules if r.egress])}
        if key != "default":
            g["Tags"] = [{"Key": "Name", "Value": name}]
        g["VpcId"] = VPC
        g["SecurityGroupArn"] = f"arn:aws:ec2:{REGION}:{ACCOUNT}:security-group/{group_id}"
        out.append(g)
    return {"SecurityGroups": out}


def _mac(e: Eni) -> str:
    h = hashlib.sha256(e.id.encode()).hexdigest()
    return "0e:" + ":".join(h[i:i + 2] for i in range(0, 10, 2))


def _dns(ip: str) -> str:
    return "ip-" + ip.replace(".", "-") + ".ec2.internal"


def _association(e: Eni) -> dict:
    return {"IpOwnerId": "amazon", "PublicDnsName": f"ec2-{e.public_ip.replace('.', '-')}.compute-1.amazonaws.com",
            "PublicIp": e.public_ip}


def eni_json(e: Eni) -> dict:
    sn = SUBNETS[e.subnet]
    d: dict = {}
    if e.public_ip:
        d["Association"] = _association(e)
    att_prefix = "eni-attach-0" if e.kind == "instance" else "ela-attach-0"
    att_id = att_prefix + hashlib.sha256(e.id.encode()).hexdigest()[20:36]
    if e.kind == "instance":
        d["Attachment"] = {"AttachTime": "2024-11-18T09:12:44+00:00", "AttachmentId": att_id,
                           "DeleteOnTermination": True, "DeviceIndex": 0, "NetworkCardIndex": 0,
                           "InstanceId": e.instance, "InstanceOwnerId": ACCOUNT, "Status": "attached"}
    else:
        d["Attachment"] = {"AttachmentId": att_id, "DeleteOnTermination": False, "DeviceIndex": 1,
                           "NetworkCardIndex": 0,
                           "InstanceOwnerId": "amazon-elb" if e.kind == "alb" else "amazon-aws",
                           "Status": "attached"}
    d["AvailabilityZone"] = sn.az
    d["Description"] = e.description
    d["Groups"] = [{"GroupName": GROUPS[g][1], "GroupId": gid(g)} for g in e.groups]
    d["InterfaceType"] = "nat_gateway" if e.kind == "nat" else "interface"
    d["Ipv6Addresses"] = [{"Ipv6Address": a, "IsPrimaryIpv6": False} for a in e.ip6]
    d["MacAddress"] = _mac(e)
    d["NetworkInterfaceId"] = e.id
    d["OwnerId"] = ACCOUNT
    d["PrivateDnsName"] = _dns(e.ip4)
    d["PrivateIpAddress"] = e.ip4
    addrs = []
    for i, ip in enumerate([e.ip4, *e.secondary4]):
        a = {}
        if i == 0 and e.public_ip:
            a["Association"] = _association(e)
        a.update({"Primary": i == 0, "PrivateDnsName": _dns(ip), "PrivateIpAddress": ip})
        addrs.append(a)
    d["PrivateIpAddresses"] = addrs
    if e.prefixes4:
        d["Ipv4Prefixes"] = [{"Ipv4Prefix": p} for p in e.prefixes4]
    if e.kind == "alb":
        d["RequesterId"] = "amazon-elb"
    elif e.kind == "nat":
        d["RequesterId"] = "036872051663"
    d["RequesterManaged"] = e.kind != "instance"
    d["SourceDestCheck"] = e.kind != "nat"
    d["Status"] = "in-use"
    d["SubnetId"] = sn.id
    d["TagSet"] = [{"Key": "Name", "Value": e.name}] if e.name else []
    d["VpcId"] = VPC
    return d


def write_inventory(out: Path):
    inv = out / "inventory"
    (inv / "prefix-list-entries").mkdir(parents=True, exist_ok=True)

    def dump(rel, obj):
        (inv / rel).write_text(json.dumps(obj, indent=4) + "\n")

    dump("security-group-rules.json", {"SecurityGroupRules": [rule_json(r) for r in RULES]})
    dump("security-groups.json", security_groups_json())
    dump("network-interfaces.json", {"NetworkInterfaces": [eni_json(e) for e in ENIS.values()]})
    lists = []
    for pl_id, (name, fam, owner, entries) in PREFIX_LISTS.items():
        arn_owner = "aws" if owner == "AWS" else ACCOUNT
        d = {"PrefixListId": pl_id, "AddressFamily": fam,
             "State": "modify-complete" if owner != "AWS" else "create-complete",
             "PrefixListArn": f"arn:aws:ec2:{REGION}:{arn_owner}:prefix-list/{pl_id}", "PrefixListName": name}
        if owner != "AWS":   # AWS-managed lists come without MaxEntries/Version
            d.update({"MaxEntries": 5, "Version": 3})
        d.update({"Tags": [{"Key": "Name", "Value": name}] if owner != "AWS" else [], "OwnerId": owner})
        lists.append(d)
        if entries is not None:
            dump(f"prefix-list-entries/{pl_id}.json",
                 {"Entries": [{"Cidr": c, **({"Description": s} if s else {})} for c, s in entries]})
    dump("managed-prefix-lists.json", {"PrefixLists": lists})


# --------------------------------------------------------------------------------------------------
# Expected results (SPEC.md), from the ground truth recorded with each record
# --------------------------------------------------------------------------------------------------
PROTO_NUM = {"tcp": 6, "udp": 17, "icmp": 1, "icmpv6": 58}
PROTO_NAME = {6: "tcp", 17: "udp", 1: "icmp", 58: "icmpv6"}
RANK = {"established": 3, "inferred": 2, "attempted": 1}


def _iso(t: int) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _group_addresses(key) -> list[str]:
    return [a for e in ENIS.values() if key in e.groups for a in e.addresses]


def _peer_ok(rule: Rule, peer: str) -> bool:
    ip = ipaddress.ip_address(peer)
    kind, val = rule.peer
    if kind in ("cidr4", "cidr6"):
        return ip in ipaddress.ip_network(val)
    if kind == "pl":
        entries = PREFIX_LISTS[val][3] or []
        return any(ip in ipaddress.ip_network(c) for c, _ in entries)
    if kind == "sg":
        return peer in _group_addresses(val)
    return False  # a group of another account, not in the inventory: its addresses are unknown


def rule_matches(rule: Rule, direction: str, proto: int, port: int | None, peer: str) -> bool:
    if rule.egress != (direction == "outbound"):
        return False
    if rule.proto != "-1":
        if PROTO_NUM[rule.proto] != proto:
            return False
        if proto in (TCP, UDP) and rule.from_port != -1 and not rule.from_port <= port <= rule.to_port:
            return False
    return _peer_ok(rule, peer)


def conversation_evidence(recs: list[Rec], flags_known: bool) -> str | None:
    acc = [r for r in recs if r.f["action"] == "ACCEPT"]
    if not acc:
        return None
    init = [r for r in acc if r.by_initiator]
    resp = [r for r in acc if not r.by_initiator]
    if init and resp and acc[0].conv[0] == TCP and flags_known:
        syn = any(int(r.f["tcp-flags"]) & 18 == 2 for r in init)
        synack = any(int(r.f["tcp-flags"]) & 18 == 18 for r in resp)
        if syn and synack:
            return "established"
        if syn and all(int(r.f["tcp-flags"]) & 4 for r in resp):
            return "attempted"   # SYN answered by RST
    return "inferred" if init and resp else "attempted"


def expected(datasets: set[str]) -> dict:
    recs = [r for r in RECS if r.ds in datasets]
    starts = [int(r.f["start"]) for r in recs]
    ends = [int(r.f["end"]) for r in recs]
    observed = {r.eni for r in recs}
    convs: dict[tuple, list[Rec]] = {}
    for r in recs:
        if r.conv is not None and not r.unattributable:
            convs.setdefault((r.eni, r.conv), []).append(r)
    rows = {r.name: {"conns": [], "excl": 0} for r in RULES}
    unexplained, rejected = [], {}
    for (eni_key, conv), crecs in sorted(convs.items(), key=lambda kv: (kv[0][0], str(kv[0][1]))):
        eni = ENIS[eni_key]
        direction = crecs[0].direction
        proto, lport, peer, pport = conv
        if not eni.groups:
            continue   # coverage only
        ev = conversation_evidence(crecs, flags_known=all(r.ds != "cwl" for r in crecs))
        port = None if proto not in (TCP, UDP) else (lport if direction == "inbound" else pport)
        if ev is None:
            assert all(r.f["action"] == "REJECT" for r in crecs)
            key = (eni.id, direction, PROTO_NAME[proto], port)
            rejected.setdefault(key, set()).add((peer, pport))
            continue
        assert all(r.f["action"] == "ACCEPT" for r in crecs), conv
        matching = [ru for ru in RULES if ru.group in eni.groups and rule_matches(ru, direction, proto, port, peer)]
        acc = crecs   # all ACCEPT (asserted above)
        summary = {"interface": eni.id, "direction": direction, "protocol": PROTO_NAME[proto], "local_port": lport,
                   "peer": peer, "peer_port": pport, "evidence": ev,
                   "first": min(int(r.f["start"]) for r in acc), "last": max(int(r.f["end"]) for r in acc),
                   "bytes": sum(int(r.f["bytes"]) for r in acc), "packets": sum(int(r.f["packets"]) for r in acc),
                   "port": port}
        if not matching:
            unexplained.append(summary)
        for ru in matching:
            rows[ru.name]["conns"].append(summary)
            if len(matching) == 1:
                rows[ru.name]["excl"] += 1
    table = []
    for ru in RULES:
        carriers = [e for e in ENIS.values() if ru.group in e.groups]
        conns = rows[ru.name]["conns"]
        best = max((c["evidence"] for c in conns), key=RANK.get, default="")
        if best in ("established", "inferred"):
            status = "used"
        elif best == "attempted":
            status = "attempted"
        elif not carriers:
            status = "unattached"
        elif any(e.key in observed for e in carriers):
            status = "unused"
        else:
            status = "unobserved"
        kind, val = ru.peer
        peer = {"sg": lambda v: gid(v)}.get(kind, lambda v: v)(val)
        table.append({
            "group_id": gid(ru.group), "group_name": GROUPS[ru.group][1], "rule_id": ru.id, "rule_name": ru.name,
            "direction": "egress" if ru.egress else "ingress", "protocol": ru.proto, "from_port": ru.from_port,
            "to_port": ru.to_port, "peer": peer, "status": status, "evidence": best,
            "connections": len(conns), "exclusive": rows[ru.name]["excl"],
            "peers": len({c["peer"] for c in conns}),
            "ports": sorted({c["port"] for c in conns if c["port"] is not None}),
            "first_seen": _iso(min(c["first"] for c in conns)) if conns else "",
            "last_seen": _iso(max(c["last"] for c in conns)) if conns else "",
            "bytes": sum(c["bytes"] for c in conns), "packets": sum(c["packets"] for c in conns),
            "evidence_counts": {k: sum(c["evidence"] == k for c in conns) for k in RANK},
        })
    unexpl = {}
    for u in unexplained:
        k = (u["interface"], u["direction"], u["protocol"], u["port"], u["peer"])
        d = unexpl.setdefault(k, {"interface": u["interface"], "direction": u["direction"], "protocol": u["protocol"],
                                  "port": u["port"], "peer": u["peer"], "conversations": 0, "evidence": {}})
        d["conversations"] += 1
        d["evidence"][u["evidence"]] = d["evidence"].get(u["evidence"], 0) + 1
    return {
        "datasets": sorted(datasets),
        "window": {"start": _iso(min(starts)), "end": _iso(max(ends))},
        "records": len(recs),
        "observed_interfaces": sorted(ENIS[k].id for k in observed),
        "unattributable_records": sum(r.unattributable for r in recs),
        "rules": table,
        "unexplained": list(unexpl.values()),
        "rejected": [{"interface": k[0], "direction": k[1], "protocol": k[2], "port": k[3], "attempts": len(v),
                      "peers": len({p for p, _ in v})} for k, v in sorted(rejected.items(), key=str)],
    }


def write_expected(out: Path):
    d = out / "expected"
    d.mkdir(parents=True, exist_ok=True)
    for name, ds in (("usage-flow-logs.json", {"s3", "article"}), ("usage-cloudwatch.json", {"cwl"}),
                     ("usage-combined.json", {"s3", "article", "cwl"})):
        (d / name).write_text(json.dumps(expected(ds), indent=2) + "\n")


def main(argv: list[str]) -> int:
    out = Path(argv[1]) if len(argv) > 1 else Path(__file__).resolve().parent
    generate_traffic()
    write_inventory(out)
    write_s3(out)
    write_cloudwatch(out)
    write_expected(out)
    n = {ds: sum(r.ds == ds for r in RECS) for ds in ("s3", "article", "cwl")}
    print(f"wrote {out}: {n['s3']} set-A records, {n['article']} article records, {n['cwl']} CloudWatch records")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
