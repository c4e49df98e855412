#!/usr/bin/env python3
"""Check a data set written by ``generate.py``: valid gzip, 29-field records that make sense, an inventory
that is consistent with itself and with the logs; print the traffic mix and which rules the TCP
handshakes hit (a rough oracle to compare with ``sgaudit usage`` output).

    python bench/verify_data.py bench/data/1000000

Exit status 0 when every check passed. Stdlib only; reads every record (about 1M records/5 s).
"""

from __future__ import annotations

import argparse
import collections
import gzip
import ipaddress
import json
import re
import sys
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from generate import ACCOUNT, HEADER, REGION  # noqa: E402

NAME_RE = re.compile(
    rf"^{ACCOUNT}_vpcflowlogs_{REGION}_fl-[0-9a-f]+_(\d{{8}}T\d{{4}}Z)_[0-9a-f]{{8}}\.log\.gz$")
PROTO = {"tcp": 6, "udp": 17, "icmp": 1, "icmpv6": 58, "-1": -1}


class Checker:
    def __init__(self) -> None:
        self.errors: list[str] = []
        self.counts: collections.Counter = collections.Counter()

    def fail(self, msg: str) -> None:
        self.counts["errors"] += 1
        if len(self.errors) < 30:
            self.errors.append(msg)


def load_inventory(inv: Path, ck: Checker) -> dict:
    rules = json.loads((inv / "security-group-rules.json").read_text())["SecurityGroupRules"]
    sgs = json.loads((inv / "security-groups.json").read_text())["SecurityGroups"]
    enis = json.loads((inv / "network-interfaces.json").read_text())["NetworkInterfaces"]
    sg_ids = {g["GroupId"] for g in sgs}
    if len(sg_ids) != len(sgs):
        ck.fail("duplicate GroupId in security-groups.json")
    ids = [r["SecurityGroupRuleId"] for r in rules]
    if len(set(ids)) != len(ids):
        ck.fail("duplicate SecurityGroupRuleId")
    by_group = collections.defaultdict(list)
    for r in rules:
        by_group[r["GroupId"]].append(r)
        if r["GroupId"] not in sg_ids:
            ck.fail(f"rule {r['SecurityGroupRuleId']}: GroupId {r['GroupId']} not in security-groups.json")
        peers = [k for k in ("CidrIpv4", "CidrIpv6", "PrefixListId", "ReferencedGroupInfo") if k in r]
        if len(peers) != 1:
            ck.fail(f"rule {r['SecurityGroupRuleId']}: {len(peers)} peer fields")
        if "ReferencedGroupInfo" in r and r["ReferencedGroupInfo"]["GroupId"] not in sg_ids:
            ck.fail(f"rule {r['SecurityGroupRuleId']}: referenced group missing")
        for k in ("GroupOwnerId", "IsEgress", "IpProtocol", "FromPort", "ToPort", "Tags", "SecurityGroupRuleArn"):
            if k not in r:
                ck.fail(f"rule {r['SecurityGroupRuleId']}: no {k}")
    for g in sgs:
        for key, egress in (("IpPermissions", False), ("IpPermissionsEgress", True)):
            n = sum(len(p["IpRanges"]) + len(p["Ipv6Ranges"]) + len(p["UserIdGroupPairs"]) + len(p["PrefixListIds"])
                    for p in g[key])
            m = sum(1 for r in by_group[g["GroupId"]] if r["IsEgress"] == egress)
            if n != m:
                ck.fail(f"group {g['GroupId']}: {key} holds {n} peers, security-group-rules.json {m} rules")
    eni_by_id = {}
    for e in enis:
        eni_by_id[e["NetworkInterfaceId"]] = e
        for g in e["Groups"]:
            if g["GroupId"] not in sg_ids:
                ck.fail(f"{e['NetworkInterfaceId']}: group {g['GroupId']} not in security-groups.json")
        prim = [p for p in e["PrivateIpAddresses"] if p["Primary"]]
        if len(prim) != 1 or prim[0]["PrivateIpAddress"] != e["PrivateIpAddress"]:
            ck.fail(f"{e['NetworkInterfaceId']}: primary address inconsistent")
    if len(eni_by_id) != len(enis):
        ck.fail("duplicate NetworkInterfaceId")
    attached = {g["GroupId"] for e in enis for g in e["Groups"]}
    # private addresses per group, for referenced-group rules
    members = collections.defaultdict(set)
    for e in enis:
        addrs = {p["PrivateIpAddress"] for p in e["PrivateIpAddresses"]}
        addrs |= {a["Ipv6Address"] for a in e.get("Ipv6Addresses", [])}
        for g in e["Groups"]:
            members[g["GroupId"]] |= addrs
    print(f"inventory: {len(sgs)} groups ({len(sg_ids - attached)} attached to nothing), {len(rules)} rules "
          f"({sum(1 for r in rules if 'ReferencedGroupInfo' in r)} referencing a group, "
          f"{sum(1 for r in rules if r['IsEgress'])} egress), {len(enis)} interfaces "
          f"({sum(len(e['Groups']) > 1 for e in enis)} with 2 groups, "
          f"{sum(bool(e['Ipv6Addresses']) for e in enis)} with IPv6)")
    return dict(rules=rules, by_group=by_group, enis=eni_by_id, members=members, sgs=sgs)


def rule_matches(r: dict, proto: int, port: int, peer: str, members: dict, nets: dict) -> bool:
    rp = PROTO.get(r["IpProtocol"], None)
    if rp is None:
        rp = int(r["IpProtocol"])
    if rp != -1 and rp != proto:
        return False
    if rp in (6, 17) and r["FromPort"] != -1 and not (r["FromPort"] <= port <= r["ToPort"]):
        return False
    if "ReferencedGroupInfo" in r:
        return peer in members[r["ReferencedGroupInfo"]["GroupId"]]
    cidr = r.get("CidrIpv4") or r.get("CidrIpv6")
    net = nets.get(cidr)
    if net is None:
        net = nets[cidr] = ipaddress.ip_network(cidr)
    a = ipaddress.ip_address(peer)
    return a.version == net.version and a in net


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dir", type=Path, help="data folder (holding flow-logs/, inventory/, manifest.json)")
    a = ap.parse_args(argv)
    d: Path = a.dir
    ck = Checker()
    if not (d / "manifest.json").is_file():
        ap.error(f"{d}: no manifest.json, so not a data set of generate.py (run.py deletes what it generated "
                 "unless --keep; make one with: python bench/generate.py --records N --out DIR)")
    manifest = json.loads((d / "manifest.json").read_text())
    inv = load_inventory(d / "inventory", ck)
    enis = inv["enis"]
    eni_addrs = {k: ({e["PrivateIpAddress"]} | {x["Ipv6Address"] for x in e["Ipv6Addresses"]})
                 for k, e in enis.items()}
    groups_of = {k: [g["GroupId"] for g in e["Groups"]] for k, e in enis.items()}
    sub_of = {k: e["SubnetId"] for k, e in enis.items()}
    files = sorted((d / "flow-logs").rglob("*"))
    files = [f for f in files if f.is_file()]
    listed = {f["path"]: f for f in manifest["file_list"]}
    if {str(f.relative_to(d)) for f in files} != set(listed):
        ck.fail("files on disk differ from manifest.json")
    mix = collections.Counter()
    flags_seen = collections.Counter()
    seen_enis = set()
    valid_addr: set[str] = set()
    syn_total = syn_paired = 0
    rule_hits = collections.Counter()
    nets: dict = {}
    unexplained = 0
    total = 0
    line_bytes = 0
    for f in files:
        m = NAME_RE.match(f.name)
        if not m:
            ck.fail(f"{f.name}: name does not follow the S3 pattern")
            continue
        t0 = int(datetime.strptime(m.group(1), "%Y%m%dT%H%MZ").replace(tzinfo=UTC).timestamp())
        try:
            with gzip.open(f, "rt") as fh:
                text = fh.read()
        except (OSError, EOFError) as exc:
            ck.fail(f"{f.name}: not valid gzip ({exc})")
            continue
        lines = text.split("\n")
        if lines[-1] == "":
            lines.pop()
        else:
            ck.fail(f"{f.name}: no final newline")
        if lines[0] != HEADER:
            ck.fail(f"{f.name}: header line differs")
        recs = lines[1:]
        if len(recs) != listed[str(f.relative_to(d))]["records"]:
            ck.fail(f"{f.name}: {len(recs)} records, manifest says {listed[str(f.relative_to(d))]['records']}")
        total += len(recs)
        line_bytes += len(text) - len(lines[0]) - 1
        syns = {}  # (eni, initiator, responder, sport, dport) -> direction
        synacks = set()
        parsed = []
        for ln in recs:
            p = ln.split(" ")
            if len(p) != 29:
                ck.fail(f"{f.name}: {len(p)} fields: {ln[:120]}")
                continue
            (ver, acct, eni, src, dst, sp, dp, proto, pk, by, st, en, action, status, vpc, subnet, inst, fl, typ,
             psrc, pdst, region, az, sublt, subli, ssvc, dsvc, dirn, tpath) = p
            if ver != "5" or acct != ACCOUNT or region != REGION:
                ck.fail(f"{f.name}: version/account/region: {ln[:120]}")
            if eni not in enis:
                ck.fail(f"{f.name}: interface {eni} not in network-interfaces.json")
                continue
            seen_enis.add(eni)
            if subnet != sub_of[eni] or vpc != enis[eni]["VpcId"] or inst != enis[eni]["Attachment"]["InstanceId"]:
                ck.fail(f"{f.name}: vpc/subnet/instance differ from the inventory: {ln[:120]}")
            s, e = int(st), int(en)
            if not (s <= e and t0 <= e < t0 + 300):
                ck.fail(f"{f.name}: start/end {s} {e} outside the file's window {t0}")
            if status == "NODATA":
                if set(p[3:10]) != {"-"} or action != "-":
                    ck.fail(f"{f.name}: NODATA record with traffic fields: {ln[:120]}")
                mix["nodata"] += 1
                continue
            if status != "OK" or action not in ("ACCEPT", "REJECT"):
                ck.fail(f"{f.name}: action/log-status: {ln[:120]}")
            for ad in (src, dst):
                if ad not in valid_addr:
                    try:
                        v = ipaddress.ip_address(ad).version
                    except ValueError:
                        ck.fail(f"{f.name}: bad address {ad}")
                        continue
                    if (v == 6) != (typ == "IPv6"):
                        ck.fail(f"{f.name}: type {typ} with address {ad}")
                    valid_addr.add(ad)
            if psrc != src or pdst != dst:
                ck.fail(f"{f.name}: pkt-srcaddr/pkt-dstaddr differ: {ln[:120]}")
            isp, idp, ipr, ifl = int(sp), int(dp), int(proto), int(fl)
            if not (0 <= isp <= 65535 and 0 <= idp <= 65535) or int(pk) <= 0 or int(by) <= 0:
                ck.fail(f"{f.name}: ports/counters: {ln[:120]}")
            local = dst if dirn == "ingress" else src if dirn == "egress" else None
            if local is None or local not in eni_addrs[eni]:
                ck.fail(f"{f.name}: flow-direction {dirn} but the local address {local} is not {eni}'s")
            if (dirn == "ingress") != (tpath == "-"):
                ck.fail(f"{f.name}: traffic-path {tpath} on an {dirn} record")
            if az[:4] != "use1" or sublt != "-" or subli != "-":
                ck.fail(f"{f.name}: location fields: {ln[:120]}")
            flags_seen[(ipr, ifl)] += 1
            if action == "REJECT":
                mix["reject"] += 1
                continue
            parsed.append((eni, src, dst, isp, idp, ipr, ifl, dirn))
            if ipr == 6:
                if ifl & 18 == 2:
                    syns[(eni, src, dst, isp, idp)] = "in" if dirn == "ingress" else "out"
                elif ifl & 18 == 18:
                    synacks.add((eni, dst, src, idp, isp))
        # classify accepted records through the conversation's SYN; check SYNs are answered
        convs = {}
        for key, direction in syns.items():
            syn_total += 1
            syn_paired += key in synacks
            eni, c, s_, cp, spt = key
            convs[(eni, c, s_, cp, spt)] = direction
            convs[(eni, s_, c, spt, cp)] = direction
            # rule the handshake hits: inbound -> ingress rules, local port; outbound -> egress, remote port
            egress = direction == "out"
            peer = s_ if egress else c
            hit = [r["SecurityGroupRuleId"] for g in groups_of[eni] for r in inv["by_group"][g]
                   if r["IsEgress"] == egress and rule_matches(r, 6, spt, peer, inv["members"], nets)]
            if not hit:
                unexplained += 1
            for rid in hit:
                rule_hits[rid] += 1
        for eni, src, dst, isp, idp, ipr, _ifl, _dirn in parsed:
            if ipr == 6:
                dirn_c = convs.get((eni, src, dst, isp, idp))
                mix[f"tcp-{dirn_c}" if dirn_c else "tcp-no-syn-in-file"] += 1
            else:
                mix[{17: "udp", 1: "icmp"}.get(ipr, f"proto-{ipr}")] += 1
    if total != manifest["records"]:
        ck.fail(f"{total} records in the files, manifest says {manifest['records']}")
    missing = seen_enis - set(enis)
    print(f"records: {total:,} in {len(files)} files, {line_bytes / max(total, 1):.0f} bytes/record "
          f"(text), gzip {manifest['gz_bytes'] / 1e6:.1f} MB; {len(seen_enis)} interfaces in the logs, "
          f"{len(missing)} of them not in the inventory")
    print("mix (records): " + ", ".join(f"{k} {v:,} ({100 * v / total:.1f} %)" for k, v in mix.most_common()))
    print("(proto, tcp-flags) of OK records: " + ", ".join(f"{k}: {v:,}" for k, v in sorted(flags_seen.items())))
    print(f"TCP SYNs answered by a SYN-ACK in the same file: {syn_paired:,}/{syn_total:,} "
          f"({100 * syn_paired / max(syn_total, 1):.2f} %); SYNs no rule explains: {unexplained:,}")
    hit_rules = set(rule_hits)
    rules = inv["rules"]
    tcp_rules = [r for r in rules if r["IpProtocol"] in ("tcp", "-1")]
    print(f"rules hit by a TCP handshake: {len(hit_rules)} of {len(tcp_rules)} TCP/all-protocol rules "
          f"({len(rules)} rules in total)")
    if ck.errors:
        print(f"\nFAILED: {ck.counts['errors']} problems, first ones:")
        for e in ck.errors:
            print("  " + e)
        return 1
    print("OK: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
