"""Generator of a big account: thousands of interfaces, groups and rules, prefix lists of 1,000 entries.

The other axis of scale than `generate.py`'s (many records on a small account): what matching, the plan
and the report cost when the snapshot is large. Deterministic for a given ``--seed``; stdlib only.

Writes DIR/inventory/ (AWS CLI JSON shapes) and DIR/flow-logs/AWSLogs/... (v5 custom format with
tcp-flags and flow-direction, S3 key layout, header line, gzip).

Account shape (defaults): 3000 interfaces, 400 groups, ~8000 rules, 5 groups per interface, a share of
group-referencing rules, 5 prefix lists (10, 50, 200, 1000, 1000 entries), IPv6 on 30 % of interfaces.
--base-group puts group 0 ("baseline") on every interface, with a self-referencing all-traffic rule
(the default-group pattern) and a rule from the 1000-entry prefix list.
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import ipaddress
import json
import random
from datetime import UTC, datetime
from pathlib import Path

ACCOUNT = "123456789012"
REGION = "us-east-1"
FLID = "fl-0123456789abcdef0"
FIELDS = ("version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes start end "
          "action log-status tcp-flags flow-direction")
SERVICES = [22, 80, 443, 3306, 5432, 6379, 8080, 8443, 9000, 9092, 9200, 11211, 2049, 389, 636, 25, 53, 123,
            1433, 27017, 8000, 8001, 8002, 3000, 5000]


def hexid(rng, prefix):
    return f"{prefix}-{rng.getrandbits(68):017x}"[: len(prefix) + 18]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--interfaces", type=int, default=3000)
    ap.add_argument("--groups", type=int, default=400)
    ap.add_argument("--rules", type=int, default=8000)
    ap.add_argument("--per-iface", type=int, default=5)
    ap.add_argument("--ref-share", type=float, default=0.45)
    ap.add_argument("--pl-share", type=float, default=0.05)
    ap.add_argument("--pl-sizes", default="10,50,200,1000,1000")
    ap.add_argument("--base-group", action="store_true")
    ap.add_argument("--records", type=int, default=1_500_000)
    ap.add_argument("--files", type=int, default=24)
    ap.add_argument("--hours", type=float, default=6.0, help="window length")
    ap.add_argument("--start", default="2025-02-06T00:00:00")
    ap.add_argument("--conv-per-record", type=float, default=0.35)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--level", type=int, default=1)
    ap.add_argument("--malformed", type=int, default=0, help="malformed lines spread over the files")
    ap.add_argument("--no-logs", action="store_true")
    a = ap.parse_args()
    rng = random.Random(a.seed)
    out = Path(a.out)
    inv = out / "inventory"
    (inv / "prefix-list-entries").mkdir(parents=True, exist_ok=True)

    # --- interfaces and addresses
    enis, addrs, v6 = [], [], []
    for i in range(a.interfaces):
        eid = hexid(rng, "eni")
        ip = f"10.{i // 60000}.{(i // 250) % 240}.{i % 250 + 4}"
        sec = [f"10.{100 + i // 60000}.{(i // 250) % 240}.{i % 250 + 4}"] if rng.random() < 0.3 else []
        six = []
        if rng.random() < 0.3:
            b, c = rng.getrandbits(16), rng.getrandbits(16)
            six = [f"2600:1f18:4a3:{0x6900 + i // 200:x}:{b:x}:{c:x}::{i % 65535 + 1:x}"]
        enis.append(eid)
        addrs.append([ip] + sec)
        v6.append(six)

    # --- groups and membership (Zipf-like popularity; the last 5 % unattached)
    gids = [hexid(rng, "sg") for _ in range(a.groups)]
    names = [f"grp-{k:03d}" for k in range(a.groups)]
    if a.base_group:
        names[0] = "baseline"
    attachable = list(range(1 if a.base_group else 0, int(a.groups * 0.95)))
    weights = [1.0 / (k + 1) ** 0.8 for k in range(len(attachable))]
    members = {g: [] for g in range(a.groups)}
    iface_groups = []
    for i in range(a.interfaces):
        gs = [0] if a.base_group else []
        while len(gs) < a.per_iface:
            g = rng.choices(attachable, weights)[0]
            if g not in gs:
                gs.append(g)
        iface_groups.append(gs)
        for g in gs:
            members[g].append(i)

    # --- prefix lists
    pls = []
    for n in map(int, a.pl_sizes.split(",")):
        pid = hexid(rng, "pl")
        entries = set()
        while len(entries) < n:
            b, c, d, plen = rng.randint(11, 99), rng.randint(0, 255), rng.randint(0, 255), rng.choice([24, 24, 28, 32])
            entries.add(f"{b}.{c}.{d}.0/{plen}")
        entries = [str(ipaddress.ip_network(e, strict=False)) for e in entries]
        pls.append((pid, sorted(set(entries))))

    # --- rules
    rules = []  # dicts for JSON, plus a generator-side tuple
    gen_rules = {g: [] for g in range(a.groups)}

    def add(g, egress, proto, lo, hi, kind, peer):
        rid = hexid(rng, "sgr")
        r = {"SecurityGroupRuleId": rid, "GroupId": gids[g], "GroupOwnerId": ACCOUNT, "IsEgress": egress,
             "IpProtocol": proto, "FromPort": lo, "ToPort": hi, "Description": f"r{len(rules)}", "Tags": []}
        if kind == "cidr4":
            r["CidrIpv4"] = peer
        elif kind == "cidr6":
            r["CidrIpv6"] = peer
        elif kind == "pl":
            r["PrefixListId"] = pls[peer][0]
        else:
            r["ReferencedGroupInfo"] = {"GroupId": gids[peer], "UserId": ACCOUNT}
        rules.append(r)
        gen_rules[g].append((egress, proto, lo, hi, kind, peer))

    for g in range(a.groups):
        add(g, True, "-1", -1, -1, "cidr4", "0.0.0.0/0")
        add(g, True, "-1", -1, -1, "cidr6", "::/0")
    if a.base_group:
        add(0, False, "-1", -1, -1, "group", 0)
        add(0, False, "tcp", 22, 22, "pl", len(pls) - 1)
    while len(rules) < a.rules:
        g = rng.randrange(a.groups)
        x = rng.random()
        proto = rng.choices(["tcp", "udp", "icmp", "-1"], [0.8, 0.1, 0.05, 0.05])[0]
        if proto in ("tcp", "udp"):
            if rng.random() < 0.1:
                lo = rng.choice([1024, 8000, 30000, 0])
                hi = lo + rng.choice([10, 100, 1000, 35000])
                hi = min(hi, 65535)
            else:
                lo = hi = rng.choice(SERVICES)
        else:
            lo = hi = -1
        if x < a.ref_share:
            ref = rng.choices(attachable, weights)[0] if rng.random() < 0.8 else g
            add(g, False, proto, lo, hi, "group", ref)
        elif x < a.ref_share + a.pl_share:
            add(g, False, proto, lo, hi, "pl", rng.randrange(len(pls)))
        else:
            y = rng.random()
            if y < 0.12:
                add(g, False, proto, lo, hi, "cidr4", "0.0.0.0/0")
            elif y < 0.17:
                add(g, False, proto, lo, hi, "cidr6", "::/0")
            elif y < 0.22:
                add(g, False, proto, lo, hi, "cidr6", f"2600:1f18:4a3:{rng.randint(0x6900, 0x690f):x}::/64")
            elif y < 0.6:
                b, c, plen = rng.randint(0, 1), rng.randint(0, 239), rng.choice([16, 20, 24])
                add(g, False, proto, lo, hi, "cidr4", f"10.{b}.{c}.0/{plen}")
            else:
                octets = [rng.randint(11, 200), rng.randint(0, 255), rng.randint(0, 255), rng.randint(0, 255)]
                add(g, False, proto, lo, hi, "cidr4", ".".join(map(str, octets)) + "/32")
    # normalise the random CIDRs
    for r in rules:
        if "CidrIpv4" in r:
            r["CidrIpv4"] = str(ipaddress.ip_network(r["CidrIpv4"], strict=False))

    groups_json = [{"GroupId": gids[g], "GroupName": names[g], "Description": names[g], "OwnerId": ACCOUNT,
                    "VpcId": "vpc-0a1b2c3d4e5f60718", "IpPermissions": [], "IpPermissionsEgress": []}
                   for g in range(a.groups)]
    enis_json = []
    for i, eid in enumerate(enis):
        n = {"NetworkInterfaceId": eid,
             "Groups": [{"GroupId": gids[g], "GroupName": names[g]} for g in iface_groups[i]],
             "InterfaceType": "interface", "PrivateIpAddress": addrs[i][0],
             "PrivateIpAddresses": [{"Primary": k == 0, "PrivateIpAddress": x} for k, x in enumerate(addrs[i])],
             "Ipv6Addresses": [{"Ipv6Address": x} for x in v6[i]], "Ipv4Prefixes": [], "Ipv6Prefixes": [],
             "VpcId": "vpc-0a1b2c3d4e5f60718", "SubnetId": "subnet-0123456789abcdef0", "OwnerId": ACCOUNT,
             "Description": f"instance {i}", "Status": "in-use",
             "Attachment": {"InstanceId": f"i-{i:017x}", "Status": "attached"}}
        enis_json.append(n)
    (inv / "security-groups.json").write_text(json.dumps({"SecurityGroups": groups_json}))
    (inv / "security-group-rules.json").write_text(json.dumps({"SecurityGroupRules": rules}))
    (inv / "network-interfaces.json").write_text(json.dumps({"NetworkInterfaces": enis_json}))
    (inv / "managed-prefix-lists.json").write_text(json.dumps({"PrefixLists": [
        {"PrefixListId": p, "AddressFamily": "IPv4", "PrefixListName": p, "OwnerId": ACCOUNT, "MaxEntries": len(e)}
        for p, e in pls]}))
    for p, e in pls:
        (inv / "prefix-list-entries" / f"{p}.json").write_text(json.dumps({"Entries": [{"Cidr": c} for c in e]}))
    n_refs = sum(1 for r in rules if "ReferencedGroupInfo" in r)
    print(f"inventory: {a.interfaces} interfaces, {a.groups} groups, {len(rules)} rules "
          f"({n_refs} referencing a group), "
          f"{sum(len(e) for _, e in pls)} prefix-list entries, "
          f"{sum(1 for g in range(a.groups) if not members[g])} groups unattached")
    if a.no_logs:
        return

    # --- traffic
    t0 = int(datetime.fromisoformat(a.start).replace(tzinfo=UTC).timestamp())
    span = int(a.hours * 3600)
    per_file = a.records // a.files
    # active interfaces: 95 % (others silent -> unobserved groups possible)
    active = [i for i in range(a.interfaces) if rng.random() < 0.95]
    # long-lived conversation pool so that conv/record ~ conv_per_record
    pool = []
    ingress_rules = {i: [(g, r) for g in iface_groups[i] for r in gen_rules[g] if not r[0]] for i in active}

    def rand_public4():
        while True:
            x = f"{rng.randint(1, 223)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
            if not x.startswith(("10.", "127.", "100.", "169.", "172.", "192.")):
                return x

    _nets = {}

    def net_of(c):
        if c not in _nets:
            _nets[c] = ipaddress.ip_network(c, strict=False)
        return _nets[c]

    def peer_for(i, rule):
        *_, kind, peer = rule
        if kind == "group":
            m = members[peer]
            if not m:
                return None, None
            j = rng.choice(m)
            if j == i:
                if len(m) == 1:
                    return None, None
                while j == i:
                    j = rng.choice(m)
            if v6[i] and v6[j] and rng.random() < 0.3:
                return v6[j][0], j
            return rng.choice(addrs[j]), j
        if kind == "pl":
            net = net_of(rng.choice(pls[peer][1]))
            return str(net.network_address + rng.randrange(net.num_addresses)), None
        if kind == "cidr6":
            if not v6[i]:
                return None, None
            if peer == "::/0":
                a, b, c, d = rng.randint(0, 9), rng.getrandbits(16), rng.getrandbits(16), rng.getrandbits(16)
                return f"2a0{a}:{b:x}:{c:x}::{d:x}", None
            net = net_of(peer)
            return str(net.network_address + rng.getrandbits(32)), None
        if peer == "0.0.0.0/0":
            return rand_public4(), None
        net = net_of(peer)
        return str(net.network_address + rng.randrange(net.num_addresses)), None

    def port_for(rule):
        _, proto, lo, hi, _, _ = rule
        if proto in ("icmp",):
            return 1, None
        p = 6 if proto in ("tcp", "-1") else 17
        if lo == -1:
            return p, rng.choice(SERVICES)
        return p, rng.randint(lo, hi)

    def rec(eni, src, dst, sport, dport, proto, packets, bytes_, flags, direction, action="ACCEPT"):
        """One version-5 line of `FIELDS`."""
        return (f"5 {ACCOUNT} {eni} {src} {dst} {sport} {dport} {proto} {packets} {bytes_} {ts} {te} {action} OK "
                f"{flags} {direction}")

    base = out / "flow-logs" / "AWSLogs" / ACCOUNT / "vpcflowlogs" / REGION
    mal_left = a.malformed
    n_written = 0
    for f in range(a.files):
        fstart = t0 + span * f // a.files
        fend = t0 + span * (f + 1) // a.files
        lines = []
        while len(lines) < per_file:
            x = rng.random()
            i = rng.choice(active)
            eni = enis[i]
            local4 = addrs[i][0]
            ts = rng.randint(fstart, max(fstart, fend - 60))
            te = ts + rng.randint(5, 59)
            if x < 0.70:  # inbound via one of the interface's ingress rules
                if not ingress_rules[i]:
                    continue
                g, rule = rng.choice(ingress_rules[i])
                peer, j = peer_for(i, rule)
                if peer is None:
                    continue
                proto, port = port_for(rule)
                local = v6[i][0] if ":" in peer else local4
                if proto == 1:
                    lines.append(rec(eni, peer, local, 0, 0, 1, 1, 84, 0, "ingress"))
                    lines.append(rec(eni, local, peer, 0, 0, 1, 1, 84, 0, "egress"))
                    continue
                sport = rng.randint(32768, 60999)
                if rng.random() < (1 - a.conv_per_record * 2) and pool:
                    # a long-lived conversation: mid-stream records both ways
                    c = rng.choice(pool)
                    ceni, cpeer, clocal, cport, csport, cproto = c
                    lines.append(rec(ceni, cpeer, clocal, csport, cport, cproto, 10, 5000, 0, "ingress"))
                    lines.append(rec(ceni, clocal, cpeer, cport, csport, cproto, 8, 9000, 0, "egress"))
                    continue
                if proto == 6:
                    lines.append(rec(eni, peer, local, sport, port, 6, 3, 180, 2, "ingress"))
                    lines.append(rec(eni, local, peer, port, sport, 6, 3, 900, 18, "egress"))
                else:
                    lines.append(rec(eni, peer, local, sport, port, 17, 1, 80, 0, "ingress"))
                    lines.append(rec(eni, local, peer, port, sport, 17, 1, 120, 0, "egress"))
                if len(pool) < 20000 and rng.random() < 0.2:
                    pool.append((eni, peer, local, port, sport, proto))
                if j is not None and j in ingress_rules and rng.random() < 0.5 and ":" not in peer:
                    # the client's end, logged at its own interface
                    jl = peer
                    syn, synack = (2, 18) if proto == 6 else (0, 0)
                    lines.append(rec(enis[j], jl, local, sport, port, proto, 3, 180, syn, "egress"))
                    lines.append(rec(enis[j], local, jl, port, sport, proto, 3, 900, synack, "ingress"))
            elif x < 0.88:  # outbound to the internet
                if v6[i] and rng.random() < 0.2:
                    peer = f"2a0{rng.randint(0, 9)}:{rng.getrandbits(16):x}::{rng.getrandbits(16):x}"
                    local = v6[i][0]
                else:
                    peer, local = rand_public4(), local4
                sport = rng.randint(32768, 60999)
                port = rng.choice([443, 443, 80, 123, 53])
                proto = 17 if port in (53, 123) else 6
                syn, synack = (2, 18) if proto == 6 else (0, 0)
                lines.append(rec(eni, local, peer, sport, port, proto, 2, 120, syn, "egress"))
                lines.append(rec(eni, peer, local, port, sport, proto, 2, 1500, synack, "ingress"))
            elif x < 0.97:  # rejected scans
                peer = rand_public4()
                port = rng.choice([22, 23, 445, 3389, 1433, 5900, 8080, rng.randint(1, 65535)])
                lines.append(rec(eni, peer, local4, rng.randint(1024, 65535), port, 6, 1, 40, 2, "ingress", "REJECT"))
            elif x < 0.985:  # attempted only: SYN with no answer from the internet on an open port
                peer = rand_public4()
                lines.append(rec(eni, peer, local4, rng.randint(1024, 65535), 443, 6, 1, 40, 2, "ingress"))
            else:
                lines.append(f"5 {ACCOUNT} {eni} - - - - - - - {ts} {te} - NODATA - -")
        if mal_left:
            k = min(mal_left, -(-a.malformed // a.files))
            for _ in range(k):
                pos = rng.randrange(len(lines))
                lines[pos] = lines[pos].replace(" 6 ", " abc ", 1) if rng.random() < 0.5 else lines[pos] + " extra"
            mal_left -= k
        when = datetime.fromtimestamp(fend, tz=UTC)
        d = base / when.strftime("%Y/%m/%d")
        d.mkdir(parents=True, exist_ok=True)
        h = hashlib.md5(f"{a.seed}-{f}".encode()).hexdigest()[:8]
        name = f"{ACCOUNT}_vpcflowlogs_{REGION}_{FLID}_{when.strftime('%Y%m%dT%H%MZ')}_{h}.log.gz"
        with gzip.GzipFile(d / name, "wb", compresslevel=a.level, mtime=0) as fh:
            fh.write((FIELDS + "\n" + "\n".join(lines) + "\n").encode())
        n_written += len(lines)
    print(f"flow logs: {n_written} records in {a.files} files")


if __name__ == "__main__":
    main()
