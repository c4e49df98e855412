"""The tightening plan (`sgaudit.plan`): literal accounts, the sample account, and properties over random ones.

Every literal case also runs `verify`: the plan is re-attributed on the same records and must lose nothing.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shlex
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
import sgaudit
from builders import T0, Snapshot, handshake, nodata, rec, run, write_log
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sgaudit import findings as findings_
from sgaudit import plan as plan_
from sgaudit.errors import SgauditError
from sgaudit.inventory import protocol_number

SAMPLE = Path(__file__).resolve().parents[1] / "sample_logs"
SRV, SRV_IP = "eni-srv", "10.0.0.5"


def actions(p: plan_.Plan) -> dict[str, str]:
    return dict(zip(p.actions["rule_id"], p.actions["action"], strict=True))


def proposed_for(p: plan_.Plan, rule_id: str) -> pd.DataFrame:
    return p.proposed_rules[p.proposed_rules["replaces"] == rule_id].reset_index(drop=True)


def assert_proved(result: sgaudit.Analysis, p: plan_.Plan) -> pd.DataFrame:
    lost = plan_.verify(result, p)
    assert len(lost) == 0, lost.to_string()
    assert lost.attrs["lost"] == 0 and lost.attrs["checked"] > 0
    return lost


def server(*rules) -> Snapshot:
    """One group on one interface, with the rules given as (rule id, protocol, from, to, keyword arguments)."""
    s = Snapshot()
    s.group("sg-srv", "server")
    for rid, proto, lo, hi, kw in rules:
        s.rule(rid, "sg-srv", proto, lo, hi, **kw)
    s.interface(SRV, SRV_IP, ["sg-srv"])
    return s


def udp_two_way(eni: str, peer: str, local: str, peer_port: int, local_port: int, *, inbound: bool) -> list[dict]:
    """A request and its answer without handshake flags, as ``eni`` logs them."""
    there = rec(eni, peer, local, peer_port, local_port, proto=17, direction="ingress")
    back = rec(eni, local, peer, local_port, peer_port, proto=17, direction="egress")
    return [there, back] if inbound else [back, there]


def ssh_from_two_internet_addresses(tmp_path: Path) -> sgaudit.Analysis:
    """SSH open to 0.0.0.0/0, reached by two internet addresses with a full handshake each."""
    snap = server(("sgr-ssh", "tcp", 22, 22, {"cidr": "0.0.0.0/0"}))
    logs = (handshake(SRV, "198.51.100.7", SRV_IP, 40000, 22)
            + handshake(SRV, "203.0.113.9", SRV_IP, 40001, 22))
    return run(tmp_path, snap, logs)


# --- Literal accounts -------------------------------------------------------------------------------------


def test_world_open_rule_reached_from_the_internet_keeps_its_peer_unless_narrow_internet(tmp_path):
    # The internet addresses of one window are not who needs a world-open rule: a public endpoint's next
    # client, a changing address, or a scanner that completed a handshake. By default the plan keeps the
    # peer; --narrow-internet lists the addresses seen (next test).
    result = ssh_from_two_internet_addresses(tmp_path)
    p = plan_.propose(result)
    assert actions(p) == {"sgr-ssh": "keep"} and len(p.proposed_rules) == 0
    reason = p.actions.iloc[0]["reason"]
    assert "reached from 2 internet addresses (198.51.100.7, 203.0.113.9): kept open" in reason
    assert "--narrow-internet" in reason
    assert any("1 rule(s) open to the internet that internet addresses reached keep their peer" in x
               for x in p.limits)
    assert_proved(result, p)
    with pytest.raises(SgauditError, match="narrow_internet 'yes': must be True or False"):
        plan_.propose(result, narrow_internet="yes")


def test_world_open_rule_keeps_its_peer_but_narrows_its_ports(tmp_path):
    snap = server(("sgr-any", "tcp", -1, -1, {"cidr": "0.0.0.0/0"}), ("sgr-any6", "tcp", 0, 65535, {"cidr": "::/0"}))
    logs = (handshake(SRV, "198.51.100.7", SRV_IP, 40000, 443) + handshake(SRV, "203.0.113.9", SRV_IP, 40001, 80)
            + handshake(SRV, "2001:db8::7", "2001:db8:1::5", 40002, 443))
    result = run(tmp_path, snap, logs)
    p = plan_.propose(result)
    assert actions(p) == {"sgr-any": "replace", "sgr-any6": "replace"}
    v4, v6 = proposed_for(p, "sgr-any"), proposed_for(p, "sgr-any6")
    assert v4[["from_port", "to_port", "peer"]].values.tolist() == [[80, 80, "0.0.0.0/0"], [443, 443, "0.0.0.0/0"]]
    assert v6[["from_port", "to_port", "peer"]].values.tolist() == [[443, 443, "::/0"]]
    assert "it stays open to the internet on the ports they used" in \
        p.actions.set_index("rule_id").loc["sgr-any", "reason"]
    assert_proved(result, p)


def test_world_open_rule_is_narrowed_to_internal_peers_on_ports_no_internet_address_used(tmp_path):
    snap = server(("sgr-out", "-1", -1, -1, {"egress": True, "cidr": "0.0.0.0/0"}))
    logs = (handshake(SRV, SRV_IP, "52.216.8.93", 40000, 443, inbound=False)
            + handshake(SRV, SRV_IP, "10.0.2.9", 40001, 5432, inbound=False))
    result = run(tmp_path, snap, logs)
    p = plan_.propose(result)
    new = proposed_for(p, "sgr-out")
    assert new[["protocol", "from_port", "peer"]].values.tolist() == [["tcp", 443, "0.0.0.0/0"],
                                                                      ["tcp", 5432, "10.0.2.9/32"]]
    assert_proved(result, p)


def test_world_open_rule_reached_only_from_private_addresses_is_narrowed_to_them(tmp_path):
    # Private, shared (carrier-grade NAT) and VPN addresses are who they are: the plan lists them.
    snap = server(("sgr-ssh", "tcp", 22, 22, {"cidr": "0.0.0.0/0"}))
    logs = handshake(SRV, "10.8.0.7", SRV_IP, 40000, 22) + handshake(SRV, "100.64.3.9", SRV_IP, 40001, 22)
    result = run(tmp_path, snap, logs)
    p = plan_.propose(result)
    assert actions(p) == {"sgr-ssh": "replace"}
    assert sorted(proposed_for(p, "sgr-ssh")["peer"]) == ["10.8.0.7/32", "100.64.3.9/32"]
    assert not any("open to the internet that internet addresses reached" in x for x in p.limits)
    assert_proved(result, p)


def test_world_open_ssh_used_by_two_peers_becomes_two_host_rules_with_narrow_internet(tmp_path):
    result = ssh_from_two_internet_addresses(tmp_path)
    p = plan_.propose(result, narrow_internet=True)
    assert actions(p) == {"sgr-ssh": "replace"}
    assert any("--narrow-internet" in x and "scanners" in x for x in p.limits)
    new = proposed_for(p, "sgr-ssh")
    assert sorted(new["peer"]) == ["198.51.100.7/32", "203.0.113.9/32"]
    assert set(new["protocol"]) == {"tcp"} and set(new["from_port"]) == {22} and set(new["to_port"]) == {22}
    assert not new["is_egress"].any()
    assert set(new["description"]) == {"sgaudit: replaces sgr-ssh"}
    row = p.actions.iloc[0]
    assert row["old"] == "ingress tcp 22 from 0.0.0.0/0" and row["carried"] == 2
    assert "ingress tcp 22 from 198.51.100.7/32" in row["new"]
    # The new inventory holds the proposed rules instead of the old one.
    assert set(p.inventory.rules["rule_id"]) == {"sgr-proposed-0001", "sgr-proposed-0002"}
    assert_proved(result, p)


def test_budget_merges_forty_peers_into_at_most_five_blocks_inside_the_rule(tmp_path):
    snap = server(("sgr-wide", "tcp", 443, 443, {"cidr": "10.0.0.0/8"}))
    peers = [f"10.0.1.{i}" for i in range(3, 243, 6)]
    assert len(peers) == 40
    logs = [r for i, peer in enumerate(peers) for r in handshake(SRV, peer, SRV_IP, 40000 + i, 443)]
    result = run(tmp_path, snap, logs)
    p = plan_.propose(result, rule_budget=5)
    new = proposed_for(p, "sgr-wide")
    assert 1 <= len(new) <= 5
    blocks = [ipaddress.ip_network(c) for c in new["peer"]]
    assert all(b.subnet_of(ipaddress.ip_network("10.0.0.0/8")) for b in blocks)
    assert all(any(ipaddress.ip_address(x) in b for b in blocks) for x in peers)
    # Merging stays tight: the peers span 10.0.1.3-10.0.1.237, so nothing beyond 10.0.1.0/24 is needed.
    assert all(b.subnet_of(ipaddress.ip_network("10.0.1.0/24")) for b in blocks)
    assert_proved(result, p)
    # Without the budget pressure every peer is its own /32.
    assert len(proposed_for(plan_.propose(result, rule_budget=100), "sgr-wide")) == 40


def test_a_plan_past_aws_rules_quota_says_so(tmp_path):
    # 70 peers, each its own /32 under a budget of 100: more than AWS's default 60 inbound IPv4 rules.
    snap = server(("sgr-wide", "tcp", 443, 443, {"cidr": "10.0.0.0/8"}))
    peers = [f"10.0.1.{i}" for i in range(3, 213, 3)]
    logs = [r for i, peer in enumerate(peers) for r in handshake(SRV, peer, SRV_IP, 40000 + i, 443)]
    result = run(tmp_path, snap, logs)
    wide = plan_.propose(result, rule_budget=100)
    assert len(proposed_for(wide, "sgr-wide")) == 70
    [line] = [x for x in wide.limits if "quota" in x]
    assert "1 group(s) would hold more than 60 rules" in line and "ingress IPv4 (70 rules)" in line
    assert not [x for x in plan_.propose(result, rule_budget=25).limits if "quota" in x]


def test_merging_never_goes_wider_than_the_rule_itself(tmp_path):
    snap = server(("sgr-16", "tcp", 22, 22, {"cidr": "10.1.0.0/16"}))
    logs = handshake(SRV, "10.1.0.5", SRV_IP, 40000, 22) + handshake(SRV, "10.1.255.7", SRV_IP, 40001, 22)
    result = run(tmp_path, snap, logs)
    # A budget of one: the only block holding both peers is the rule's own /16, so the rule stays as it is.
    p = plan_.propose(result, rule_budget=1)
    assert actions(p) == {"sgr-16": "keep"} and len(p.proposed_rules) == 0
    assert_proved(result, p)
    # Values a notebook parameter or a caller could pass by mistake: errors, never read as something else.
    for bad in (0, "abc", None, 2.5, True):
        with pytest.raises(SgauditError, match="rule_budget .* must be a whole number, at least 1"):
            plan_.propose(result, rule_budget=bad)
    with pytest.raises(SgauditError, match="keep_attempted 'false': must be True or False"):
        plan_.propose(result, keep_attempted="false")


def test_all_protocols_rule_becomes_one_rule_per_protocol(tmp_path):
    snap = server(("sgr-out", "-1", -1, -1, {"egress": True, "cidr": "0.0.0.0/0"}))
    logs = (handshake(SRV, SRV_IP, "192.0.2.10", 40000, 443, inbound=False)
            + udp_two_way(SRV, "10.0.0.2", SRV_IP, 53, 51000, inbound=False)
            + [rec(SRV, SRV_IP, "10.0.3.3", 0, 0, proto=1, direction="egress"),
               rec(SRV, "10.0.3.3", SRV_IP, 0, 0, proto=1, direction="ingress")])
    result = run(tmp_path, snap, logs)
    p = plan_.propose(result, narrow_internet=True)
    new = proposed_for(p, "sgr-out")
    got = {(r.protocol, r.from_port, r.to_port, r.peer) for r in new.itertuples()}
    assert got == {("tcp", 443, 443, "192.0.2.10/32"), ("udp", 53, 53, "10.0.0.2/32"), ("icmp", -1, -1, "10.0.3.3/32")}
    assert new["is_egress"].all()
    assert_proved(result, p)


def test_unused_rule_is_removed_and_attempted_rule_too_unless_kept(tmp_path):
    snap = server(("sgr-https", "tcp", 443, 443, {"cidr": "0.0.0.0/0"}),
                  ("sgr-rdp", "tcp", 3389, 3389, {"cidr": "0.0.0.0/0"}),
                  ("sgr-syslog", "udp", 514, 514, {"cidr": "10.0.0.0/8"}),
                  ("sgr-db", "tcp", 5432, 5432, {"cidr": "10.0.0.0/8"}))
    logs = (handshake(SRV, "198.51.100.7", SRV_IP, 40000, 443)
            + [rec(SRV, "203.0.113.66", SRV_IP, 50000, 3389, flags=2, direction="ingress"),  # unanswered SYN
               rec(SRV, "10.0.9.9", SRV_IP, 40514, 514, proto=17, direction="ingress")])  # one-way UDP
    result = run(tmp_path, snap, logs)
    p = plan_.propose(result, narrow_internet=True)
    assert actions(p) == {"sgr-https": "replace", "sgr-rdp": "remove", "sgr-syslog": "remove", "sgr-db": "remove"}
    reasons = dict(zip(p.actions["rule_id"], p.actions["reason"], strict=True))
    assert reasons["sgr-db"].startswith("unused") and reasons["sgr-rdp"].startswith("only attempted")
    assert any("not kept" in s for s in p.limits)
    assert_proved(result, p)

    kept = plan_.propose(result, keep_attempted=True, narrow_internet=True)
    assert actions(kept)["sgr-rdp"] == "replace" and actions(kept)["sgr-syslog"] == "replace"
    assert list(proposed_for(kept, "sgr-syslog")["peer"]) == ["10.0.9.9/32"]
    assert actions(kept)["sgr-db"] == "remove"
    lost = assert_proved(result, kept)
    assert lost.attrs["checked"] == 3  # the handshake, the SYN and the one-way UDP


def test_unobserved_and_unattached_rules_are_kept_and_say_why(tmp_path):
    snap = server(("sgr-ssh", "tcp", 22, 22, {"cidr": "0.0.0.0/0"}))
    snap.group("sg-quiet", "quiet").rule("sgr-quiet", "sg-quiet", "tcp", 80, 80, cidr="0.0.0.0/0")
    snap.interface("eni-quiet", "10.0.0.9", ["sg-quiet"])
    snap.group("sg-spare", "spare").rule("sgr-spare", "sg-spare", "tcp", 21, 21, cidr="0.0.0.0/0")
    result = run(tmp_path, snap, handshake(SRV, "198.51.100.7", SRV_IP, 40000, 22))
    p = plan_.propose(result)
    a = p.actions.set_index("rule_id")
    assert a.loc["sgr-quiet", "action"] == "keep" and a.loc["sgr-quiet", "status"] == "unobserved"
    assert a.loc["sgr-spare", "action"] == "keep" and a.loc["sgr-spare", "status"] == "unattached"
    assert a.loc["sgr-quiet", "reason"].startswith("no evidence")
    assert a.loc["sgr-spare", "reason"].startswith("no evidence")
    # The plan keeps an unattached group's rules; deleting the group is what the findings advise, and the
    # reason says so rather than contradicting them.
    assert "unattached_group finding advises deleting the group" in a.loc["sgr-spare", "reason"]
    [group] = [f for f in findings_.findings(result).to_dict("records") if f["kind"] == "unattached_group"]
    assert group["group_id"] == "sg-spare" and "delete-security-group" in group["fix"]
    assert "sgr-quiet" in set(p.inventory.rules["rule_id"])
    assert any(s.startswith("1 interface(s) of the snapshot had no record") for s in p.limits)
    assert_proved(result, p)


def test_peers_that_are_one_groups_interfaces_become_a_referenced_group(tmp_path):
    s = Snapshot()
    s.group("sg-db", "db").group("sg-app", "app").group("sg-other", "other")
    s.rule("sgr-pg", "sg-db", "tcp", 5432, 5432, cidr="10.0.0.0/16")
    s.interface("eni-db", "10.0.9.9", ["sg-db"])
    s.interface("eni-app1", "10.0.1.1", ["sg-app", "sg-other"])
    s.interface("eni-app2", "10.0.1.2", ["sg-app"], secondary=["10.0.1.22"])
    logs = (handshake("eni-db", "10.0.1.1", "10.0.9.9", 40000, 5432)
            + handshake("eni-db", "10.0.1.22", "10.0.9.9", 40001, 5432))
    result = run(tmp_path, s, logs)
    p = plan_.propose(result)
    new = proposed_for(p, "sgr-pg")
    assert list(new["peer_kind"]) == ["group"] and list(new["peer"]) == ["sg-app"]
    assert "referenced group" in p.actions.set_index("rule_id").loc["sgr-pg", "reason"]
    assert_proved(result, p)


def test_no_referenced_group_when_the_group_reaches_outside_the_rule(tmp_path):
    s = Snapshot()
    s.group("sg-db", "db").group("sg-app", "app")
    s.rule("sgr-pg", "sg-db", "tcp", 5432, 5432, cidr="10.0.1.0/24")
    s.interface("eni-db", "10.0.1.9", ["sg-db"])
    s.interface("eni-app1", "10.0.1.1", ["sg-app"])
    s.interface("eni-app2", "10.0.2.2", ["sg-app"])  # outside 10.0.1.0/24: sg-app would admit more
    result = run(tmp_path, s, handshake("eni-db", "10.0.1.1", "10.0.1.9", 40000, 5432))
    p = plan_.propose(result)
    assert list(proposed_for(p, "sgr-pg")["peer"]) == ["10.0.1.1/32"]
    assert_proved(result, p)


def test_no_referenced_group_across_vpcs(tmp_path):
    s = Snapshot()
    s.group("sg-db", "db").group("sg-app", "app", vpc="vpc-2")
    s.rule("sgr-pg", "sg-db", "tcp", 5432, 5432, cidr="10.0.0.0/16")
    s.interface("eni-db", "10.0.9.9", ["sg-db"])
    s.interface("eni-app1", "10.0.1.1", ["sg-app"])
    result = run(tmp_path, s, handshake("eni-db", "10.0.1.1", "10.0.9.9", 40000, 5432))
    assert list(proposed_for(plan_.propose(result), "sgr-pg")["peer_kind"]) == ["cidr"]


def test_prefix_list_and_referenced_group_rules_keep_their_peer_and_narrow_ports(tmp_path):
    s = Snapshot()
    s.group("sg-srv", "server").group("sg-app", "app")
    s.prefix_list("pl-vpn", ["172.20.0.0/16", "192.168.0.0/24"])
    s.rule("sgr-vpn", "sg-srv", "tcp", 0, 65535, prefix_list="pl-vpn")
    s.rule("sgr-vpn-exact", "sg-srv", "tcp", 22, 22, prefix_list="pl-vpn")
    s.rule("sgr-app", "sg-srv", "tcp", 8000, 8100, ref="sg-app")
    s.interface(SRV, SRV_IP, ["sg-srv"])
    s.interface("eni-app", "10.0.2.2", ["sg-app"])
    logs = (handshake(SRV, "172.20.1.1", SRV_IP, 40000, 443)
            + handshake(SRV, "192.168.0.7", SRV_IP, 40001, 22)
            + handshake(SRV, "10.0.2.2", SRV_IP, 40002, 8080))
    result = run(tmp_path, s, logs)
    p = plan_.propose(result)
    a = actions(p)
    assert a["sgr-vpn-exact"] == "keep"  # its ports are already exact
    assert a["sgr-vpn"] == "replace" and a["sgr-app"] == "replace"
    vpn = proposed_for(p, "sgr-vpn")
    # Port 22 from the VPN is already allowed by the kept rule; 443 needs a rule of its own, same list.
    assert [(r.peer_kind, r.peer, r.from_port, r.to_port) for r in vpn.itertuples()] == [
        ("prefix_list", "pl-vpn", 443, 443)]
    app = proposed_for(p, "sgr-app")
    assert [(r.peer_kind, r.peer, r.from_port, r.to_port) for r in app.itertuples()] == [
        ("group", "sg-app", 8080, 8080)]
    assert_proved(result, p)


def test_consecutive_ports_of_the_same_peers_become_one_range_and_a_budget_merges_ranges(tmp_path):
    snap = server(("sgr-range", "tcp", 1000, 2000, {"cidr": "10.0.0.0/8"}))
    ports = [1100, 1101, 1102, 1500, 1900]
    logs = [r for i, port in enumerate(ports) for r in handshake(SRV, "10.0.7.7", SRV_IP, 40000 + i, port)]
    result = run(tmp_path, snap, logs)
    exact = proposed_for(plan_.propose(result), "sgr-range")
    assert [(r.from_port, r.to_port) for r in exact.itertuples()] == [(1100, 1102), (1500, 1500), (1900, 1900)]
    tight = proposed_for(plan_.propose(result, rule_budget=2), "sgr-range")
    # The smaller gap (1102 → 1500) closes first.
    assert [(r.from_port, r.to_port) for r in tight.itertuples()] == [(1100, 1500), (1900, 1900)]
    assert_proved(result, plan_.propose(result, rule_budget=2))


def test_a_replacement_never_duplicates_a_kept_rule(tmp_path):
    snap = server(("sgr-world", "tcp", 22, 22, {"cidr": "0.0.0.0/0"}),
                  ("sgr-admin", "tcp", 22, 22, {"cidr": "198.51.100.200/32"}))
    logs = (handshake(SRV, "198.51.100.200", SRV_IP, 40000, 22)
            + handshake(SRV, "203.0.113.5", SRV_IP, 40001, 22))
    result = run(tmp_path, snap, logs)
    p = plan_.propose(result, narrow_internet=True)
    assert actions(p) == {"sgr-world": "replace", "sgr-admin": "keep"}
    assert list(proposed_for(p, "sgr-world")["peer"]) == ["203.0.113.5/32"]
    assert_proved(result, p)


def test_reanalysis_reads_the_records_the_analysis_read_not_ones_added_since(tmp_path):
    # The proof of a plan must be on the same records: a file delivered (or fetched) after the analysis
    # must not enter it, as it would with an open --end on S3 or CloudWatch.
    snap = server(("sgr-ssh", "tcp", 22, 22, {"cidr": "10.0.0.0/8"}))
    inv = snap.write(tmp_path / "inventory")
    logs = tmp_path / "logs"
    write_log(logs / "a.log.gz", handshake(SRV, "10.1.0.7", SRV_IP, 40000, 22))
    result = sgaudit.analyze(logs, inv)
    write_log(logs / "b.log.gz", handshake(SRV, "10.1.0.8", SRV_IP, 40001, 22, start=T0 + 60))
    again = result.reanalyze(inv)
    assert [str(f.path) for f in again.files] == [str(logs / "a.log.gz")]
    pd.testing.assert_frame_equal(again.usage, result.usage)
    assert len(plan_.verify(result, plan_.propose(result))) == 0


def test_a_plan_selected_for_one_group_changes_that_group_alone(tmp_path):
    snap = server(("sgr-ssh", "tcp", 22, 22, {"cidr": "10.0.0.0/8"}))
    snap.group("sg-db", "db").rule("sgr-pg", "sg-db", "tcp", 5432, 5432, cidr="10.0.0.0/8")
    snap.interface("eni-db", "10.0.0.9", ["sg-db"])
    logs = handshake(SRV, "10.1.0.7", SRV_IP, 40000, 22) + handshake("eni-db", "10.1.0.8", "10.0.0.9", 40001, 5432)
    result = run(tmp_path, snap, logs)
    whole = plan_.propose(result)
    assert set(whole.proposed_rules["group_id"]) == {"sg-srv", "sg-db"}
    one = plan_.select(whole, result, ["sg-db"])
    assert set(one.actions["group_id"]) == set(one.proposed_rules["group_id"]) == {"sg-db"}
    assert set(re.findall(r"--group-id (\S+)", plan_.to_aws_cli(one))) == {"sg-db"}
    # The other group keeps its rules as they are, and the proof is of these changes alone.
    rules = one.inventory.rules
    assert "sgr-ssh" in set(rules["rule_id"]) and "sgr-pg" not in set(rules["rule_id"])
    assert_proved(result, one)
    assert plan_.select(whole, result, []) is whole
    with pytest.raises(SgauditError, match="group_ids: 'sg-dbb' \\(closest: sg-db\\) not in the snapshot"):
        plan_.select(whole, result, ["sg-dbb"])


def test_a_guessed_direction_is_kept_working_both_ways(tmp_path):
    # A gRPC connection opened before the window (no SYN): client port 40000, below the service's 50051.
    # Both directions' rules allow it, so SPEC's lower-port rule calls it outbound and the service rule
    # unused. It may well be inbound: the plan keeps both ways, and verify catches a plan that does not.
    snap = server(("sgr-svc", "tcp", 50051, 50051, {"cidr": "10.0.0.0/16"}),
                  ("sgr-out", "-1", -1, -1, {"egress": True, "cidr": "0.0.0.0/0"}))
    logs = [rec(SRV, "10.0.2.7", SRV_IP, 40000, 50051, flags=0, direction="ingress"),
            rec(SRV, SRV_IP, "10.0.2.7", 50051, 40000, flags=0, direction="egress")]
    result = run(tmp_path, snap, logs)
    assert result.conversations["direction"].tolist() == ["outbound"]
    assert result.usage.set_index("rule_id").loc["sgr-svc", "status"] == "unused"  # SPEC's reading
    p = plan_.propose(result)
    assert actions(p) == {"sgr-svc": "replace", "sgr-out": "replace"}
    assert proposed_for(p, "sgr-svc")[["from_port", "peer"]].values.tolist() == [[50051, "10.0.2.7/32"]]
    assert proposed_for(p, "sgr-out")[["from_port", "peer"]].values.tolist() == [[40000, "10.0.2.7/32"]]
    assert "their direction is a guess" in p.actions.set_index("rule_id").loc["sgr-svc", "reason"]
    # The service rule's proposal exists only for the other way round, and says so to its reviewer.
    assert proposed_for(p, "sgr-svc")[["why", "description"]].values.tolist() == [
        ["direction guessed", "sgaudit: replaces sgr-svc, direction guessed"]]
    assert proposed_for(p, "sgr-out")[["why", "description"]].values.tolist() == [
        ["observed", "sgaudit: replaces sgr-out"]]
    assert_proved(result, p)
    rules = p.inventory.rules
    broken = replace(p, inventory=replace(p.inventory, rules=rules[rules["is_egress"]]))  # sgr-svc's part dropped
    lost = plan_.verify(result, broken)
    assert len(lost) == 1 and lost.iloc[0]["why"].startswith("its direction is a guess")


def test_a_ping_from_the_interface_keeps_its_egress_rule(tmp_path):
    # ICMP has no ports: equal "ports" count as inbound, so a ping E sent is credited to the ingress rule.
    # The egress rule must still let E's pings out.
    snap = server(("sgr-in", "-1", -1, -1, {"cidr": "10.0.0.0/16"}),
                  ("sgr-out", "-1", -1, -1, {"egress": True, "cidr": "0.0.0.0/0"}))
    logs = ([rec(SRV, SRV_IP, "10.0.2.7", 0, 0, proto=1, direction="egress"),
             rec(SRV, "10.0.2.7", SRV_IP, 0, 0, proto=1, direction="ingress")]
            + handshake(SRV, SRV_IP, "10.0.2.7", 40000, 443, inbound=False))
    result = run(tmp_path, snap, logs)
    p = plan_.propose(result)
    out = proposed_for(p, "sgr-out")
    assert sorted(out["protocol"]) == ["icmp", "tcp"]
    assert_proved(result, p)


def test_one_way_icmp_is_kept_by_the_plan(tmp_path):
    # Path MTU Discovery's "fragmentation needed" comes one way from routers: `attempted` by SPEC, yet
    # removing the rule hangs large transfers. The plan keeps it, and narrows an all-traffic rule to keep it.
    snap = Snapshot().group("sg-srv", "server")
    snap.rule("sgr-pmtud", "sg-srv", "icmp", 3, 4, cidr="0.0.0.0/0").rule("sgr-all", "sg-srv", "-1", cidr="::/0")
    snap.rule("sgr-https", "sg-srv", "tcp", 443, 443, cidr="0.0.0.0/0")
    snap.interface(SRV, SRV_IP, ["sg-srv"], ipv6=["2600:1f18::5"])
    logs = ([rec(SRV, "203.0.113.1", SRV_IP, 0, 0, proto=1, direction="ingress"),
             rec(SRV, "2001:db8::1", "2600:1f18::5", 0, 0, proto=58, direction="ingress")]
            + handshake(SRV, "2001:db8::2", "2600:1f18::5", 40000, 443)
            + handshake(SRV, "198.51.100.7", SRV_IP, 40001, 443))
    result = run(tmp_path, snap, logs)
    usage = result.usage.set_index("rule_id")
    assert usage.loc["sgr-pmtud", "status"] == "attempted"
    p = plan_.propose(result)
    assert actions(p)["sgr-pmtud"] == "keep"
    assert sorted(proposed_for(p, "sgr-all")["protocol"]) == ["icmpv6", "tcp"]
    assert dict(proposed_for(p, "sgr-all")[["protocol", "why"]].values.tolist()) == {
        "icmpv6": "one-way ICMP", "tcp": "observed"}
    assert "one-way ICMP" in p.actions.set_index("rule_id").loc["sgr-all", "reason"]
    lost = assert_proved(result, p)
    assert lost.attrs["checked"] == 4
    broken = replace(p, inventory=replace(p.inventory, rules=p.inventory.rules[
        p.inventory.rules["rule_id"] != "sgr-pmtud"]))
    assert plan_.verify(result, broken).attrs["lost"] == 1


def test_merging_ports_keeps_the_internet_on_a_port_it_reached(tmp_path):
    # 8000 only from a private address, 8002 from the internet: with room for one rule the two ranges
    # merge, and the merged range must stay open to the internet, not become a supernet of the peers.
    snap = server(("sgr-w", "tcp", 8000, 8010, {"cidr": "0.0.0.0/0"}))
    logs = handshake(SRV, "172.16.0.9", SRV_IP, 40000, 8000) + handshake(SRV, "198.51.100.7", SRV_IP, 40001, 8002)
    result = run(tmp_path, snap, logs)
    roomy = plan_.propose(result)
    assert sorted(proposed_for(roomy, "sgr-w")[["from_port", "peer"]].values.tolist()) == [
        [8000, "172.16.0.9/32"], [8002, "0.0.0.0/0"]]
    tight = plan_.propose(result, rule_budget=1)
    assert proposed_for(tight, "sgr-w")[["from_port", "to_port", "peer"]].values.tolist() == [[8000, 8002, "0.0.0.0/0"]]
    assert_proved(result, tight)


def test_world_open_rule_reached_only_by_the_snapshots_own_addresses_is_narrowed(tmp_path):
    # A VPC's IPv6 addresses are public ones, but an address of the snapshot is no internet client.
    snap = Snapshot().group("sg-srv", "server").rule("sgr-6", "sg-srv", "tcp", 8080, 8080, cidr="::/0")
    snap.interface(SRV, SRV_IP, ["sg-srv"], ipv6=["2600:1f18::5"])
    snap.interface("eni-peer", "10.0.0.6", ["sg-srv"], ipv6=["2600:1f18::11"])
    result = run(tmp_path, snap, handshake(SRV, "2600:1f18::11", "2600:1f18::5", 40000, 8080))
    p = plan_.propose(result)
    assert proposed_for(p, "sgr-6")["peer"].tolist() == ["2600:1f18::11/128"]
    assert_proved(result, p)


def test_untracked_pairs_are_counted_from_either_side(tmp_path):
    # SSH from 0.0.0.0/0 with the allow-all egress rule: untracked flows. Removing the egress rule (kept
    # SSH) cuts them at once as surely as changing the SSH rule.
    snap = server(("sgr-ssh", "tcp", 22, 22, {"cidr": "0.0.0.0/0"}),
                  ("sgr-out", "-1", -1, -1, {"egress": True, "cidr": "0.0.0.0/0"}))
    result = run(tmp_path, snap, handshake(SRV, "198.51.100.7", SRV_IP, 40000, 22))
    p = plan_.propose(result)
    assert actions(p) == {"sgr-ssh": "keep", "sgr-out": "remove"}
    assert any("(1 of the rules to replace or remove are such)" in x for x in p.limits)
    assert_proved(result, p)


def test_verify_lists_the_conversation_a_broken_plan_loses(tmp_path):
    result = ssh_from_two_internet_addresses(tmp_path)
    p = plan_.propose(result, narrow_internet=True)
    dropped = p.proposed_rules.loc[p.proposed_rules["peer"] == "203.0.113.9/32", "rule_id"].item()
    rules = p.inventory.rules
    broken = replace(p, inventory=replace(p.inventory, rules=rules[rules["rule_id"] != dropped]))
    lost = plan_.verify(result, broken)
    assert lost.attrs == {"checked": 2, "lost": 1}
    row = lost.iloc[0]
    assert (row["interface_id"], row["peer"], row["peer_port"], row["local_port"], row["direction"]) == (
        SRV, "203.0.113.9", 40001, 22, "inbound")
    assert row["rules_before"] == "sgr-ssh" and row["rules_after"] == "" and row["evidence"] == "established"
    assert "no proposed or kept rule" in row["why"]
    assert "1 lost" in plan_.to_markdown(broken, lost)


def test_verify_catches_a_direction_that_changes_with_the_rules(tmp_path):
    # Flag-less two-way UDP: its direction comes from the rules. Before, only the egress rule allows it
    # (outbound); a plan that drops the egress rule and adds an ingress one flips it to inbound: lost.
    snap = server(("sgr-out", "udp", 5000, 5000, {"egress": True, "cidr": "10.0.0.0/8"}))
    result = run(tmp_path, snap, udp_two_way(SRV, "10.0.3.3", SRV_IP, 5000, 4000, inbound=False))
    assert result.conversations["direction"].tolist() == ["outbound"]
    p = plan_.propose(result)
    assert_proved(result, p)
    flipped = pd.DataFrame([{"rule_id": "sgr-in", "group_id": "sg-srv", "is_egress": False, "ip_protocol": "udp",
                             "protocol": 17, "from_port": 4000, "to_port": 4000, "peer_kind": "cidr",
                             "peer": "10.0.3.3/32", "description": ""}])
    broken = replace(p, inventory=replace(p.inventory, rules=flipped))
    lost = plan_.verify(result, broken)
    assert len(lost) == 1 and lost.iloc[0]["why"] == "direction changed: outbound -> inbound"


def test_no_traffic_at_all_checks_nothing_and_keeps_every_rule_unobserved(tmp_path):
    snap = server(("sgr-ssh", "tcp", 22, 22, {"cidr": "0.0.0.0/0"}))
    result = run(tmp_path, snap, [nodata("eni-other")])
    p = plan_.propose(result)
    assert actions(p) == {"sgr-ssh": "keep"}
    lost = plan_.verify(result, p)
    assert lost.attrs == {"checked": 0, "lost": 0} and list(lost.columns) == plan_.LOST_COLUMNS


def test_rule_budget_below_one_is_an_error(tmp_path):
    result = run(tmp_path, server(("sgr-ssh", "tcp", 22, 22, {"cidr": "0.0.0.0/0"})),
                 handshake(SRV, "198.51.100.7", SRV_IP, 40000, 22))
    with pytest.raises(SgauditError, match="rule_budget 0"):
        plan_.propose(result, rule_budget=0)


# --- Reviewable output -----------------------------------------------------------------------------------

HOSTILE = "web'; rm -rf / #\n$(reboot) ${var} \"x\" |pipe| <b>"


@pytest.fixture
def mixed_plan(tmp_path):
    s = Snapshot()
    s.group("sg-srv", HOSTILE).group("sg-app", "app")
    s.prefix_list("pl-vpn", ["172.20.0.0/16"])
    s.rule("sgr-ssh", "sg-srv", "tcp", 22, 22, cidr="0.0.0.0/0")
    s.rule("sgr-ssh6", "sg-srv", "tcp", 22, 22, cidr="::/0")
    s.rule("sgr-vpn", "sg-srv", "tcp", 0, 65535, prefix_list="pl-vpn")
    s.rule("sgr-app", "sg-srv", "tcp", 8000, 8100, ref="sg-app")
    s.rule("sgr-unused", "sg-srv", "tcp", 3306, 3306, cidr="10.0.0.0/8")
    s.rule("sgr-out", "sg-srv", "-1", -1, -1, egress=True, cidr="0.0.0.0/0")
    s.interface(SRV, SRV_IP, ["sg-srv"], ipv6=["2600:1f18::5"])
    s.interface("eni-app", "10.0.2.2", ["sg-app"])
    logs = (handshake(SRV, "198.51.100.7", SRV_IP, 40000, 22)
            + handshake(SRV, "2001:db8::7", "2600:1f18::5", 40000, 22)
            + handshake(SRV, "172.20.1.1", SRV_IP, 40001, 443)
            + handshake(SRV, "10.0.2.2", SRV_IP, 40002, 8080)
            + handshake(SRV, SRV_IP, "192.0.2.10", 40003, 443, inbound=False)
            + [rec(SRV, SRV_IP, "10.0.3.3", 0, 0, proto=1, direction="egress"),
               rec(SRV, "10.0.3.3", SRV_IP, 0, 0, proto=1, direction="ingress")])
    result = run(tmp_path, s, logs)
    p = plan_.propose(result, narrow_internet=True)
    yield result, p
    result.close()


def test_mixed_plan_is_proved(mixed_plan):
    result, p = mixed_plan
    assert actions(p) == {"sgr-ssh": "replace", "sgr-ssh6": "replace", "sgr-vpn": "replace", "sgr-app": "replace",
                          "sgr-unused": "remove", "sgr-out": "replace"}
    assert_proved(result, p)


def test_aws_cli_authorizes_before_it_revokes_with_valid_json(mixed_plan):
    _, p = mixed_plan
    text = plan_.to_aws_cli(p)
    assert "sgaudit NEVER runs these commands" in text
    lines = text.splitlines()
    commands = [shlex.split(x) for x in lines if x.startswith("aws ")]
    auth = [i for i, c in enumerate(commands) if c[2].startswith("authorize-")]
    revoke = [i for i, c in enumerate(commands) if c[2].startswith("revoke-")]
    assert auth and revoke and max(auth) < min(revoke)
    perms = []
    for c in commands:
        assert c[:2] == ["aws", "ec2"] and c[c.index("--group-id") + 1] == "sg-srv"
        if c[2].startswith("authorize-"):
            perms += json.loads(c[c.index("--ip-permissions") + 1])
    assert len(perms) == len(p.proposed_rules)
    by_kind = {next(k for k in ("IpRanges", "Ipv6Ranges", "PrefixListIds", "UserIdGroupPairs") if k in q): q
               for q in perms if q["IpProtocol"] == "tcp" and q["FromPort"] in (22, 443, 8080)}
    assert by_kind["IpRanges"]["IpRanges"][0]["CidrIp"] in ("198.51.100.7/32", "192.0.2.10/32")
    assert by_kind["Ipv6Ranges"]["Ipv6Ranges"][0]["CidrIpv6"] == "2001:db8::7/128"
    assert by_kind["PrefixListIds"]["PrefixListIds"][0]["PrefixListId"] == "pl-vpn"
    assert by_kind["UserIdGroupPairs"]["UserIdGroupPairs"][0]["GroupId"] == "sg-app"
    revoked = {r for c in commands if c[2].startswith("revoke-") for r in c[c.index("--security-group-rule-ids") + 1:]}
    assert revoked == {"sgr-ssh", "sgr-ssh6", "sgr-vpn", "sgr-app", "sgr-unused", "sgr-out"}
    # The hostile group name stays inside its comment line: every line is a comment, a command or blank.
    assert all(x == "" or x.startswith(("#", "aws ", "set -eu")) for x in lines)


def test_terraform_has_one_resource_per_proposed_rule(mixed_plan):
    _, p = mixed_plan
    text = plan_.to_terraform(p)
    assert text.count('resource "aws_vpc_security_group_ingress_rule"') == int((~p.proposed_rules["is_egress"]).sum())
    assert text.count('resource "aws_vpc_security_group_egress_rule"') == int(p.proposed_rules["is_egress"].sum())
    for needle in (r'cidr_ipv4 += "198\.51\.100\.7/32"', r'cidr_ipv6 += "2001:db8::7/128"',
                   r'prefix_list_id += "pl-vpn"', r'referenced_security_group_id = "sg-app"',
                   r'ip_protocol += "icmp"', r'security_group_id += "sg-srv"', r'from_port += 443',
                   r'description += "sgaudit: replaces sgr-ssh"'):
        assert re.search(needle, text), needle
    assert "#   sgr-unused of sg-srv (remove)" in text
    assert all(x == "" or x.startswith(("#", "resource ", "  ", "}")) for x in text.splitlines())


def test_hcl_strings_are_escaped():
    assert plan_._hcl('a"b\\c\n${x}%{y}') == '"a\\"b\\\\c\\n$${x}%%{y}"'


def test_markdown_shows_limits_actions_and_hostile_text_as_text(mixed_plan):
    result, p = mixed_plan
    md = plan_.to_markdown(p, plan_.verify(result, p))
    assert "none lost: proved on these records" in md
    assert "## What this cannot prove" in md and "The window is " in md
    assert "<b>" not in md and "&lt;b&gt;" in md
    table = [x for x in md.splitlines() if x.startswith("| sg-srv")]
    # The name's own pipes are escaped (\|), so each row still has its 10 cell borders.
    assert len(table) == 6 and all(len(re.findall(r"(?<!\\)\|", x)) == 10 for x in table)


def test_markdown_shows_links_and_images_in_aws_names_as_text():
    # AWS allows [ ] ( ) ! in group names: unescaped, a Markdown viewer would show a live link and fetch
    # a remote image when the plan is reviewed.
    name = "web [Approved by SecOps](https://attacker.example/x) ![t](https://attacker.example/b.png) **ok**"
    cell = plan_._md(name)
    assert "\\[Approved by SecOps\\](https" in cell and "\\!\\[t\\]" in cell and "\\*\\*ok" in cell
    assert "](" not in cell.replace("\\](", "")


def test_limits_name_the_window_length_tracking_and_nacls(mixed_plan):
    _, p = mixed_plan
    text = " ".join(p.limits)
    assert "The window is 13 seconds long" in text
    assert "untracked" in text.lower() or "does not track" in text
    assert "network ACL" in text
    # sgr-ssh (world-open tcp) and the allow-all egress rule sgr-out, both replaced: an untracked pair, and
    # changing either half cuts its flows. sgr-ssh6 (::/0) has no ::/0 egress rule beside it.
    assert "(2 of the rules to replace or remove are such)" in text


def test_table_is_the_actions(mixed_plan):
    _, p = mixed_plan
    t = plan_.to_table(p)
    assert list(t.columns) == plan_.ACTION_COLUMNS and len(t) == 6


# --- The sample account ----------------------------------------------------------------------------------


def test_sample_account_plan_loses_nothing():
    result = sgaudit.analyze([SAMPLE / "flow-logs", SAMPLE / "cloudwatch" / "app-eni.log"], SAMPLE / "inventory")
    try:
        for keep_attempted in (False, True):
            p = plan_.propose(result, keep_attempted=keep_attempted)
            assert set(p.actions["rule_id"]) == set(result.inventory.rules["rule_id"])
            counts = p.proposed_rules.groupby(["group_id", "is_egress"]).size()
            kept = p.actions[p.actions["action"] == "keep"].groupby(["group_id", "direction"]).size()
            for (gid, egress), n in counts.items():
                assert n + kept.get((gid, "egress" if egress else "ingress"), 0) <= 25
            assert_proved(result, p)
            assert_contained(result.inventory, p)
    finally:
        result.close()


# --- Properties over random small accounts ---------------------------------------------------------------


def assert_contained(inv: sgaudit.Inventory, p: plan_.Plan) -> None:
    """Every proposed rule lies inside the rule it replaces: protocol, ports and peers."""
    old = inv.rules.set_index("rule_id")
    members = inv.interface_groups.merge(inv.addresses, on="interface_id")
    vpc = dict(zip(inv.groups["group_id"], inv.groups["vpc_id"], strict=True))
    for new in p.proposed_rules.itertuples(index=False):
        r = old.loc[new.replaces]
        assert new.group_id == r["group_id"] and bool(new.is_egress) == bool(r["is_egress"]), new
        proto = protocol_number(new.protocol)
        assert r["protocol"] in (-1, proto), new
        if proto in (6, 17):
            lo, hi = (0, 65535) if r["protocol"] == -1 or r["from_port"] == -1 else (r["from_port"], r["to_port"])
            assert lo <= new.from_port <= new.to_port <= hi, new
        elif r["protocol"] == -1:
            assert (new.from_port, new.to_port) == (-1, -1), new
        else:
            assert (new.from_port, new.to_port) == (r["from_port"], r["to_port"]), new
        if r["peer_kind"] == "cidr":
            outer = ipaddress.ip_network(r["peer"], strict=False)
            if new.peer_kind == "cidr":
                inner = ipaddress.ip_network(new.peer)
                assert inner.version == outer.version and inner.subnet_of(outer), new
            else:
                assert new.peer_kind == "group" and vpc[new.peer] == vpc[new.group_id], new
                addrs = members.loc[members["group_id"] == new.peer, "address"]
                assert len(addrs) and all(ipaddress.ip_address(a) in outer for a in addrs), new
        else:
            assert (new.peer_kind, new.peer) == (r["peer_kind"], r["peer"]), new


#: A tiny account: two groups on three interfaces (one with IPv6), and peers inside and outside it.
IFACES = {"eni-1": ("10.0.0.5", "sg-a", None), "eni-2": ("10.0.0.6", "sg-a sg-b", "2600:1f18::6"),
          "eni-3": ("10.0.1.7", "sg-b", None)}
PEERS4 = ["10.0.0.5", "10.0.0.6", "10.0.1.7", "10.0.0.9", "10.0.3.3", "10.9.0.1", "172.20.1.1",
          "198.51.100.7", "198.51.100.9", "203.0.113.70", "8.8.8.8"]
PEERS6 = ["2600:1f18::6", "2001:db8::1", "2001:db8:ff::2"]
PORTS = [22, 23, 53, 80, 443, 444, 8080]
CIDR_BASES = PEERS4 + PEERS6 + ["0.0.0.0"]


@st.composite
def rule_spec(draw, i: int) -> dict:
    proto = draw(st.sampled_from(["tcp", "tcp", "udp", "icmp", "-1"]))
    if proto in ("tcp", "udp"):
        lo = draw(st.sampled_from(PORTS))
        hi = draw(st.sampled_from([p for p in PORTS if p >= lo] + [65535]))
        if draw(st.integers(0, 5)) == 0:
            lo, hi = 0, 65535
    else:
        lo = hi = -1
    kind = draw(st.sampled_from(["cidr"] * 6 + ["group", "prefix_list"]))
    peer: dict = {}
    if kind == "cidr":
        base = ipaddress.ip_address(draw(st.sampled_from(CIDR_BASES)))
        plen = draw(st.sampled_from([0, 8, 16, 24, 28, 32] if base.version == 4 else [0, 32, 64, 128]))
        peer["cidr"] = str(ipaddress.ip_network(f"{base}/{plen}", strict=False))
    elif kind == "group":
        peer["ref"] = draw(st.sampled_from(["sg-a", "sg-b"]))
    else:
        peer["prefix_list"] = "pl-1"
    return {"rid": f"sgr-{i:02d}", "group": draw(st.sampled_from(["sg-a", "sg-b"])), "proto": proto,
            "lo": lo, "hi": hi, "egress": draw(st.booleans()), **peer}


GROUP_ADDRS = {g: [a for ip4, groups, ip6 in IFACES.values() if g in groups.split() for a in (ip4, ip6) if a]
               for g in ("sg-a", "sg-b")}
PREFIX_LIST = ["198.51.100.0/24", "10.0.0.0/24"]


@st.composite
def peer_inside(draw, spec: dict) -> str | None:
    """An address the rule's peer admits: near one of the pool's addresses, so that peers cluster and merge."""
    if "ref" in spec:
        return draw(st.sampled_from(GROUP_ADDRS[spec["ref"]]))
    net = ipaddress.ip_network(spec["cidr"] if "cidr" in spec else draw(st.sampled_from(PREFIX_LIST)))
    pool = [ipaddress.ip_address(a) for a in PEERS4 + PEERS6]
    near = [a for a in pool if a in net]
    if near and draw(st.booleans()):
        return str(draw(st.sampled_from(near)))
    base = int(draw(st.sampled_from(near))) if near else int(net.network_address)
    offset = draw(st.integers(0, min(net.num_addresses, 256) - 1))
    addr = (base & ~0xFF) | offset
    if addr not in range(int(net.network_address), int(net.broadcast_address) + 1):
        addr = int(net.network_address) + offset % net.num_addresses
    return str(ipaddress.ip_address(addr) if net.version == 4 else ipaddress.IPv6Address(addr))


@st.composite
def conversation(draw, k: int, specs: list[dict]) -> list[dict]:
    """One conversation at a logged interface: established, inferred (two-way, no flags) or attempted.

    Mostly traffic some rule allows (its peer, port, protocol and direction at an interface of its group),
    sometimes anything.
    """
    spec = draw(st.sampled_from(specs + [None]))
    peer = draw(peer_inside(spec)) if spec else None
    fam6 = peer is not None and ":" in peer
    enis = [e for e, (_, groups, ip6) in IFACES.items()
            if (spec is None or spec["group"] in groups.split()) and (ip6 or not fam6)]
    if not enis or spec is None:
        enis, fam6 = sorted(IFACES), False
        peer = None
    eni = draw(st.sampled_from(enis))
    ip4, _, ip6 = IFACES[eni]
    fam6 = fam6 or (peer is None and ip6 is not None and draw(st.integers(0, 3)) == 0)
    local = ip6 if fam6 else ip4
    if peer is None:
        peer = draw(st.sampled_from(PEERS6 if fam6 else PEERS4))
    if peer == local:
        peer = PEERS6[1] if fam6 else "198.51.100.7"
    if spec and spec["proto"] != "-1":
        proto = protocol_number(spec["proto"])
    else:
        proto = draw(st.sampled_from([6, 6, 17, 1]))
    if proto in (1, 58):
        proto = 58 if fam6 else 1
    inbound = (not spec["egress"]) if spec else draw(st.booleans())
    kind = draw(st.sampled_from(["established", "inferred", "attempted"]))
    if proto in (6, 17):
        lo, hi = (spec["lo"], spec["hi"]) if spec and spec["proto"] != "-1" else (1, 65535)
        lo = max(lo, 1)
        fits = [p for p in PORTS if lo <= p <= hi]
        service = draw(st.sampled_from(fits) if fits and draw(st.booleans()) else st.integers(lo, hi))
    else:
        service = 0
    eph = 40000 + k if proto in (6, 17) else 0
    start = T0 + 60 * k
    client, server_ = (peer, local) if inbound else (local, peer)
    to_server = rec(eni, client, server_, eph, service, proto=proto, direction="ingress" if inbound else "egress",
                    flags=(2 if kind != "inferred" else 0) if proto == 6 else None, start=start)
    to_client = rec(eni, server_, client, service, eph, proto=proto, direction="egress" if inbound else "ingress",
                    flags=(18 if kind == "established" else 0) if proto == 6 else None, start=start)
    return [to_server] if kind == "attempted" else [to_server, to_client]


@st.composite
def account(draw) -> tuple[Snapshot, list[dict]]:
    s = Snapshot()
    s.group("sg-a", "a").group("sg-b", "b")
    s.prefix_list("pl-1", PREFIX_LIST)
    specs = [draw(rule_spec(i)) for i in range(draw(st.integers(1, 5)))]
    for r in specs:
        kw = {k: r[k] for k in ("cidr", "ref", "prefix_list") if k in r}
        s.rule(r["rid"], r["group"], r["proto"], r["lo"], r["hi"], egress=r["egress"], **kw)
    for eni, (ip4, groups, ip6) in IFACES.items():
        s.interface(eni, ip4, groups.split(), ipv6=[ip6] if ip6 else [])
    n = draw(st.integers(1, 10))
    records = [r for k in range(n) for r in draw(conversation(k, specs))]
    return s, records


def analyze_account(snap: Snapshot, records: list[dict]) -> sgaudit.Analysis:
    with tempfile.TemporaryDirectory(prefix="sgaudit-plan-") as tmp:
        inv = snap.write(Path(tmp) / "inventory")
        log = write_log(Path(tmp) / "logs" / "flow.log.gz", records)
        result = sgaudit.analyze(log, inv, threads=1)
        result.usage  # noqa: B018 - read while the files exist (propose needs no more than this)
    return result


RUNS: dict[str, list[float]] = {"verify": [], "contained": []}


#: Multiplies the number of examples, for a longer bug hunt (``SGAUDIT_PROPERTY_SCALE=10``), as in test_properties.
SCALE = float(os.environ.get("SGAUDIT_PROPERTY_SCALE", "1"))


def examples(n: int) -> settings:
    return settings(max_examples=max(1, int(n * SCALE)), deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@examples(60)
@given(acct=account(), budget=st.integers(1, 6), keep_attempted=st.booleans(), narrow_internet=st.booleans())
def test_property_a_plan_loses_no_conversation(acct, budget, keep_attempted, narrow_internet):
    snap, records = acct
    t = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="sgaudit-plan-") as tmp:
        inv = snap.write(Path(tmp) / "inventory")
        log = write_log(Path(tmp) / "logs" / "flow.log.gz", records)
        result = sgaudit.analyze(log, inv, threads=1)
        try:
            p = plan_.propose(result, rule_budget=budget, keep_attempted=keep_attempted,
                              narrow_internet=narrow_internet)
            lost = plan_.verify(result, p)
            for action in sorted(set(p.actions["action"])):
                event(f"action {action}")
            event(f"checked {min(lost.attrs['checked'], 3)}{'+' if lost.attrs['checked'] >= 3 else ''}")
            if (p.proposed_rules["peer_kind"] == "group").any():
                event("referenced group proposed")
            if any(ipaddress.ip_network(c).prefixlen < ipaddress.ip_network(c).max_prefixlen
                   for c in p.proposed_rules.loc[p.proposed_rules["peer_kind"] == "cidr", "peer"]):
                event("peers merged into a block")
            assert len(lost) == 0, (lost.to_string(), p.actions.to_string(), p.proposed_rules.to_string())
        finally:
            result.close()
    RUNS["verify"].append(time.perf_counter() - t)


@examples(100)
@given(acct=account(), budget=st.integers(1, 6), keep_attempted=st.booleans(), narrow_internet=st.booleans())
def test_property_b_every_proposed_rule_lies_inside_the_rule_it_replaces(acct, budget, keep_attempted,
                                                                          narrow_internet):
    snap, records = acct
    t = time.perf_counter()
    result = analyze_account(snap, records)
    try:
        p = plan_.propose(result, rule_budget=budget, keep_attempted=keep_attempted,
                          narrow_internet=narrow_internet)
        assert_contained(result.inventory, p)
        assert set(p.actions["rule_id"]) == set(result.inventory.rules["rule_id"])
        assert p.proposed_rules["rule_id"].is_unique
        # Within the budget, unless a limit says why not.
        kept = p.actions[p.actions["action"] == "keep"]
        for (gid, egress), n in p.proposed_rules.groupby(["group_id", "is_egress"]).size().items():
            total = n + int(((kept["group_id"] == gid) & (kept["direction"] == ("egress" if egress else
                                                                                   "ingress"))).sum())
            assert total <= budget or any(x.startswith(f"{gid} {'egress' if egress else 'ingress'}:")
                                          for x in p.limits), (total, budget, p.limits)
        # No proposed rule duplicates another rule of its group (AWS would refuse it).
        seen = set()
        for r in p.inventory.rules.itertuples(index=False):
            key = (r.group_id, r.is_egress, r.protocol, r.from_port, r.to_port, r.peer_kind, r.peer)
            assert key not in seen or not r.rule_id.startswith("sgr-proposed"), key
            seen.add(key)
    finally:
        result.close()
    RUNS["contained"].append(time.perf_counter() - t)


def test_property_run_counts():
    """Not a property: reports how many examples the two properties ran, and how long each took."""
    for name, times in RUNS.items():
        if times:
            print(f"\n{name}: {len(times)} examples, {sum(times):.1f} s, {max(times):.2f} s max")
