"""Bad input gives a clear error or a counted skip: never a crash, never a silent drop.

Errors are the typed ones of `sgaudit.errors`, naming the file (and line, field) and what to do. Records
that cannot be used are counted in `Analysis.quality`, whose buckets add up to the records read.
"""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import pandas as pd
import pytest
import sgaudit
from builders import T0, V2, V5, Snapshot, handshake, line, nodata, rec, row, run, write_log, write_parquet, write_text
from sgaudit import plan, summaries

SERVER, CLIENT = "10.0.0.5", "198.51.100.7"


def web_snapshot() -> Snapshot:
    snap = Snapshot().group("sg-web", "web")
    snap.rule("sgr-http", "sg-web", "tcp", 80, cidr="0.0.0.0/0")
    snap.interface("eni-a", SERVER, groups=["sg-web"])
    return snap


def quality(result: sgaudit.Analysis) -> dict[str, int]:
    q = result.quality.set_index("bucket")["records"].to_dict()
    assert sum(v for k, v in q.items() if k != "total") == q["total"], "buckets must add up to the total"
    return q


# --- Files that cannot be read --------------------------------------------------------------------------


@pytest.mark.parametrize("cut", ["last-8-bytes", "last-byte", "half"])
def test_truncated_gzip_names_the_file_and_what_to_do(tmp_path, cut):
    inv = web_snapshot().write(tmp_path / "inv")
    recs = [r for i in range(50) for r in handshake("eni-a", CLIENT, SERVER, 40000 + i, 80)]
    log = write_log(tmp_path / "flow.log.gz", recs)
    data = log.read_bytes()
    log.write_bytes({"last-8-bytes": data[:-8], "last-byte": data[:-1], "half": data[: len(data) // 2]}[cut])
    with pytest.raises(sgaudit.FlowLogReadError) as exc:
        sgaudit.analyze(log, inv)
    msg = str(exc.value)
    assert str(log) in msg
    assert "Download it again" in msg


def test_header_with_an_unknown_field(tmp_path):
    fmt = [("flow-dir" if n == "flow-direction" else n) for n in V5]
    inv = web_snapshot().write(tmp_path / "inv")
    log = write_log(tmp_path / "flow.log.gz", handshake("eni-a", CLIENT, SERVER, 40000, 80), fmt)
    with pytest.raises(sgaudit.FlowLogFormatError, match=r"unknown flow-log field 'flow-dir'") as exc:
        sgaudit.analyze(log, inv)
    assert f"{log}, line 1 (header)" in str(exc.value)
    assert "'flow-direction'" in str(exc.value)


@pytest.mark.parametrize("missing", [
    pytest.param(["interface-id"], id="no-interface-id"),
    pytest.param(["interface-id", "action", "dstport"], id="three-missing"),
])
def test_header_lacking_required_fields_lists_them_all(tmp_path, missing):
    fmt = [n for n in V5 if n not in missing]
    inv = web_snapshot().write(tmp_path / "inv")
    log = write_log(tmp_path / "flow.log.gz", handshake("eni-a", CLIENT, SERVER, 40000, 80), fmt)
    with pytest.raises(sgaudit.FlowLogFormatError) as exc:
        sgaudit.analyze(log, inv)
    msg = str(exc.value)
    assert str(log) in msg
    lacks = msg.split("lacks ", 1)[1].split(";", 1)[0]
    assert lacks.split(", ") == [n for n in ("interface-id", "dstport", "action") if n in missing]


def test_headerless_file_with_a_field_count_unlike_the_default_format(tmp_path):
    inv = web_snapshot().write(tmp_path / "inv")
    log = write_log(tmp_path / "cwl.log", handshake("eni-a", CLIENT, SERVER, 40000, 80), V5, header=False,
                    compress=False)
    with pytest.raises(sgaudit.FlowLogFormatError) as exc:
        sgaudit.analyze(log, inv)
    msg = str(exc.value)
    assert f"{log}, line 1" in msg
    assert "16 fields" in msg and "has 14" in msg
    assert "--format" in msg


def test_headerless_file_with_a_field_count_unlike_the_given_format(tmp_path):
    inv = web_snapshot().write(tmp_path / "inv")
    log = write_log(tmp_path / "cwl.log", handshake("eni-a", CLIENT, SERVER, 40000, 80), V5, header=False,
                    compress=False)
    with pytest.raises(sgaudit.FlowLogFormatError, match=r"line 1: the record has 16 fields but --format has 15"):
        sgaudit.analyze(log, inv, log_format=" ".join(V5[:-1]))


@pytest.mark.parametrize("content", [
    pytest.param('{"events": [{"message": "2 1', id="cut-json-document"),
    pytest.param('{"message": "x"}\n{"message": ', id="cut-event-per-line"),
])
def test_broken_cloudwatch_json(tmp_path, content):
    inv = web_snapshot().write(tmp_path / "inv")
    log = tmp_path / "events.json"
    log.write_text(content)
    with pytest.raises(sgaudit.FlowLogReadError) as exc:
        sgaudit.analyze(log, inv)
    assert str(log) in str(exc.value) and "filter-log-events" in str(exc.value)


def test_damaged_parquet(tmp_path):
    inv = web_snapshot().write(tmp_path / "inv")
    log = tmp_path / "flow.parquet"
    log.write_bytes(b"PAR1" + b"\0" * 64)
    with pytest.raises(sgaudit.FlowLogReadError, match="not a readable Parquet file") as exc:
        sgaudit.analyze(log, inv)
    assert str(log) in str(exc.value)


# --- Garbage inside a good file -------------------------------------------------------------------------

GOOD = handshake("eni-a", CLIENT, SERVER, 40000, 80)
PROBE = rec("eni-a", "198.51.100.8", SERVER, 40001, 80, flags=2, direction="ingress")


def with_value(field: str, value: str) -> str:
    """PROBE as a V5 line, with one field replaced by ``value``."""
    values = line(PROBE, V5).split()
    values[V5.index(field)] = value
    return " ".join(values)


# (id, line text) of lines the reader cannot type: each is one malformed record with file and line.
UNREADABLE = [
    ("random-text", "the quick brown fox jumps over the lazy dog"),
    ("too-few-fields", " ".join(line(PROBE, V5).split()[:10])),
    ("too-many-fields", line(PROBE, V5) + " extra"),
    ("abc-as-port", with_value("dstport", "abc")),
    ("99999-as-port", with_value("srcport", "99999")),
    ("protocol-300", with_value("protocol", "300")),
    ("text-as-bytes", with_value("bytes", "lots")),
]


def test_garbage_lines_are_counted_listed_with_file_and_line_and_good_records_used(tmp_path):
    inv = web_snapshot().write(tmp_path / "inv")
    lines = [" ".join(V5), line(GOOD[0], V5)]
    expected = {}  # line number → text
    for i, (_, text) in enumerate(UNREADABLE):
        lines.append(text)
        expected[len(lines)] = text
        if i == 2:
            lines.append("")  # a blank line: neither a record nor a problem, and it must not shift numbers
    lines.append(line(GOOD[1], V5))
    log = write_text(tmp_path / "flow.log.gz", lines)
    result = sgaudit.analyze(log, inv)

    r = row(result, "sgr-http")
    assert (r["status"], r["evidence"], r["connections"], r["bytes"]) == ("used", "established", 1, 300)
    q = quality(result)
    assert q["total"] == sum(1 for s in lines[1:] if s.strip()) == 2 + len(UNREADABLE)
    assert (q["malformed"], q["conversation"]) == (len(UNREADABLE), 2)
    found = result.problems[result.problems["kind"] == "malformed_line"]
    assert set(found["resource"]) == {str(log)}
    assert dict(zip(found["line"].astype(int), found["value"], strict=True)) == expected
    assert found["detail"].str.len().min() > 0


def test_a_line_the_reader_cannot_type_says_why_in_flow_log_words(tmp_path):
    inv = web_snapshot().write(tmp_path / "inv")
    n = len(V5)
    lines = [" ".join(V5)] + [text for _, text in UNREADABLE]
    log = write_text(tmp_path / "flow.log.gz", lines)
    p = sgaudit.analyze(log, inv).problems
    why = dict(zip(p["line"].dropna().astype(int), p.loc[p["line"].notna(), "detail"], strict=True))
    assert why[3] == f"the line has 10 fields where its format has {n} (fields are separated by single spaces)"
    assert why[4] == f"the line has {n + 1} fields where its format has {n} (fields are separated by single spaces)"
    assert why[5] == "dstport 'abc' is not a whole number from 0 to 65535"
    assert why[6] == "srcport '99999' is not a whole number from 0 to 65535"
    assert why[7] == "protocol '300' is not a whole number from 0 to 255"
    assert why[8] == "bytes 'lots' is not a whole number"


@pytest.mark.parametrize("field,value,why", [
    pytest.param("action", "MAYBE", "an action other than ACCEPT or REJECT", id="action-MAYBE"),
    pytest.param("log-status", "BROKEN", "a log-status other than OK, NODATA or SKIPDATA", id="log-status-BROKEN"),
    pytest.param("flow-direction", "sideways", "a flow-direction other than ingress or egress",
                 id="flow-direction-sideways"),
    pytest.param("start", "-", "no start", id="no-start"),
    pytest.param("srcaddr", "999.1.2.3", "the peer address '999.1.2.3' is neither IPv4 nor IPv6",
                 id="peer-not-an-address"),
    pytest.param("bytes", "-99999999", "negative bytes", id="negative-bytes"),
    pytest.param("packets", "-3", "negative packets", id="negative-packets"),
    pytest.param("end", "1", "an end before the start", id="end-before-start"),
    pytest.param("start", "9000000000000000000", "a start outside 1970-2262", id="start-past-2262"),
    pytest.param("start", "-60", "a start outside 1970-2262", id="start-before-1970"),
])
def test_typed_but_senseless_record_is_counted_as_malformed(tmp_path, field, value, why):
    inv = web_snapshot().write(tmp_path / "inv")
    lines = [" ".join(V5), line(GOOD[0], V5), with_value(field, value), line(GOOD[1], V5)]
    result = sgaudit.analyze(write_text(tmp_path / "flow.log.gz", lines), inv)
    q = quality(result)
    assert (q["malformed"], q["conversation"], q["total"]) == (1, 2, 3)
    assert row(result, "sgr-http")["connections"] == 1  # PROBE's conversation (port 40001) is not used
    [detail] = result.problems.loc[result.problems["kind"] == "malformed_record", "detail"]
    assert detail.split(": no record AWS writes")[0] == why  # the first check the record fails, by name


def test_senseless_record_is_listed_with_file_line_and_text(tmp_path):
    inv = web_snapshot().write(tmp_path / "inv")
    bad = with_value("action", "MAYBE")
    log = write_text(tmp_path / "flow.log.gz", [" ".join(V5), line(GOOD[0], V5), bad, line(GOOD[1], V5)])
    result = sgaudit.analyze(log, inv)
    listed = result.problems[result.problems["resource"] == str(log)]
    assert listed[["line", "value"]].values.tolist() == [[3, bad]]


def test_a_capped_listing_says_how_many_it_left_out(tmp_path, monkeypatch):
    # The problems table lists at most so many malformed records per file; it never leaves a silent gap
    # between the count and the list.
    monkeypatch.setattr(sgaudit.analysis, "_LISTED_LINES", 2)
    inv = web_snapshot().write(tmp_path / "inv")
    bad = [with_value("action", v) for v in ("MAYBE", "PERHAPS", "NEVER")]
    log = write_text(tmp_path / "flow.log.gz", [" ".join(V5), line(GOOD[0], V5), *bad])
    result = sgaudit.analyze(log, inv)
    assert quality(result)["malformed"] == 3
    listed = result.problems[result.problems["resource"] == str(log)]
    assert listed["kind"].tolist() == ["malformed_record", "malformed_record", "listing_truncated"]
    assert listed["line"].tolist()[:2] == [3, 4] and str(listed["line"].dtype) == "Int64"
    assert "2 of the 3 malformed records of this file are listed (the first ones)" in listed["detail"].iloc[2]


def test_lines_the_reader_cannot_type_are_listed_up_to_the_cap_and_all_counted(tmp_path, monkeypatch):
    # A delivery of millions of bad lines made a problems table of millions of rows (4 GB). The listing is
    # capped like the malformed records' one; the count, a repeated header past the cap and the warning
    # are not.
    monkeypatch.setattr(sgaudit.analysis, "_LISTED_LINES", 2)
    monkeypatch.setattr(sgaudit.analysis, "_LISTED_FILES", 1)
    inv = web_snapshot().write(tmp_path / "inv")
    header = " ".join(V5)
    one = write_text(tmp_path / "a.log.gz", [header, line(GOOD[0], V5), "garbage 1", "garbage 2", "garbage 3",
                                             header, line(GOOD[1], V5)])
    two = write_text(tmp_path / "b.log.gz", [header, "garbage 4", line(GOOD[0], V5)])
    result = sgaudit.analyze([one, two], inv)
    assert quality(result)["malformed"] == 4 and quality(result)["total"] == 7
    p = result.problems
    mine = p[p["resource"] == str(one)]
    assert mine["kind"].tolist() == ["malformed_line", "malformed_line", "repeated_header", "listing_truncated"]
    assert mine["line"].tolist()[:3] == [3, 4, 6]
    assert "2 of the 3 lines of this file the reader could not type are listed" in mine["detail"].iloc[3]
    assert p.loc[p["resource"] == str(two), "kind"].tolist() == ["listing_truncated"]
    assert "listed for 1 of 2 files" in p.loc[p["resource"] == "files", "detail"].item()
    assert any("4 of the 7 records read (57%) are malformed" in w for w in summaries.warnings(result))
    assert any("4 of the 7 records read were malformed" in x for x in plan.propose(result).limits)


def test_analyze_needs_flow_logs_and_takes_a_format_as_a_list(tmp_path):
    inv = web_snapshot().write(tmp_path / "inv")
    for nothing in (None, []):
        with pytest.raises(sgaudit.SgauditError, match="no flow logs given"):
            sgaudit.analyze(nothing, inv)
    log = tmp_path / "bare.log"
    log.write_text(line(GOOD[0], V5) + "\n" + line(GOOD[1], V5) + "\n")
    as_text = sgaudit.analyze(log, inv, log_format=" ".join(V5))
    as_list = sgaudit.analyze(log, inv, log_format=list(V5))
    pd.testing.assert_frame_equal(as_text.usage, as_list.usage)
    assert quality(as_list)["conversation"] == 2


def test_malformed_line_in_cloudwatch_json_points_at_the_json_file_and_event(tmp_path):
    inv = web_snapshot().write(tmp_path / "inv")
    messages = [line(GOOD[0], V5), "not a flow log record", line(GOOD[1], V5)]
    events = [{"logStreamName": "eni-a-all", "timestamp": T0 * 1000, "message": m, "ingestionTime": T0 * 1000,
               "eventId": str(i)} for i, m in enumerate(messages)]
    log = tmp_path / "events.json"
    log.write_text(json.dumps({"events": events, "searchedLogStreams": []}))
    result = sgaudit.analyze(log, inv, log_format=" ".join(V5))
    assert quality(result)["malformed"] == 1
    found = result.problems[result.problems["kind"] == "malformed_line"]
    assert found[["resource", "line", "value"]].values.tolist() == [[str(log), 2, "not a flow log record"]]
    assert row(result, "sgr-http")["evidence"] == "established"


# --- Empty files ----------------------------------------------------------------------------------------


def write_empty(path, kind: str):
    if kind == "zero-bytes":
        path.write_bytes(b"")
    elif kind == "empty-gzip":
        path.write_bytes(gzip.compress(b""))
    elif kind == "gzip-header-only":
        write_text(path, [" ".join(V5)])
    else:  # blank lines only
        path.write_text("\n\n  \n")
    return path


EMPTY_KINDS = ["zero-bytes", "empty-gzip", "gzip-header-only", "blank-lines"]


@pytest.mark.parametrize("kind", EMPTY_KINDS)
def test_an_empty_file_alone(tmp_path, kind):
    inv = web_snapshot().write(tmp_path / "inv")
    log = write_empty(tmp_path / "flow.log.gz", kind)
    result = sgaudit.analyze(log, inv)
    assert quality(result)["total"] == 0
    assert row(result, "sgr-http")["status"] == "unobserved"
    assert result.window == (None, None)
    # A file with only a header holds no records either: every kind is listed.
    listed = result.problems[result.problems["kind"] == "empty_file"]
    assert listed["resource"].tolist() == [str(log)]


def test_empty_files_beside_a_good_one(tmp_path):
    inv = web_snapshot().write(tmp_path / "inv")
    logs = tmp_path / "logs"
    logs.mkdir()
    empties = [write_empty(logs / f"{k}.log.gz", k) for k in EMPTY_KINDS]
    write_log(logs / "good.log.gz", GOOD)
    result = sgaudit.analyze(logs, inv)
    q = quality(result)
    assert (q["total"], q["conversation"]) == (2, 2)
    assert row(result, "sgr-http")["evidence"] == "established"
    listed = set(result.problems.loc[result.problems["kind"] == "empty_file", "resource"])
    assert {str(p) for p in empties if "header-only" not in p.name} <= listed
    assert str(logs / "good.log.gz") not in listed
    # Two empty files of the same bytes are two empty files, not a file and its copy.
    for kind in ("zero-bytes", "empty-gzip"):
        (logs / f"{kind}-again.log.gz").write_bytes((logs / f"{kind}.log.gz").read_bytes())
    again = sgaudit.analyze(logs, inv).problems
    assert {str(logs / f"{k}-again.log.gz") for k in ("zero-bytes", "empty-gzip")} <= set(
        again.loc[again["kind"] == "empty_file", "resource"])
    assert not (again["kind"] == "duplicate_file").any()



def test_missing_packets_and_bytes_add_nothing_in_every_table(tmp_path):
    # "-" counts (AWS writes them only on NODATA/SKIPDATA) on accepted records: the usage table, the
    # conversations and the unexplained table all say 0, never an empty cell in one and 0 in another.
    dashes = dict(packets=None, bytes_=None)
    used = [rec("eni-a", CLIENT, SERVER, 40000, 80, flags=2, direction="ingress", **dashes)]
    unexplained = [rec("eni-a", CLIENT, SERVER, 40000, 8080, flags=2, direction="ingress", **dashes)]
    result = run(tmp_path, web_snapshot(), used + unexplained)
    assert row(result, "sgr-http")[["connections", "packets", "bytes"]].tolist() == [1, 0, 0]
    for table in (result.conversations, result.unexplained):
        assert table[["packets", "bytes"]].to_numpy().tolist() == [[0, 0]] * len(table) and len(table)
    assert len(result.unexplained) == 1


def test_counts_in_the_result_tables_are_integers(tmp_path):
    reject = rec("eni-a", "203.0.113.9", SERVER, 50000, 22, flags=2, direction="ingress", action="REJECT")
    result = run(tmp_path, web_snapshot(), GOOD + [reject])
    assert result.rejected["records"].dtype == "int64" and result.rejected["records"].tolist() == [1]
    assert result.conversations["rule_count"].dtype == "int64"


def test_column_types_do_not_depend_on_the_rows(tmp_path):
    # A scheduled Parquet output must keep its schema: ports stay nullable 16-bit integers with or without
    # a port-less (ICMP) conversation, and likely_cause stays text in an empty rejected table.
    tcp = run(tmp_path / "tcp", web_snapshot(), handshake("eni-a", CLIENT, SERVER, 40000, 8080))
    icmp = run(tmp_path / "icmp", web_snapshot(), handshake("eni-a", CLIENT, SERVER, 40000, 8080)
               + [rec("eni-a", CLIENT, SERVER, 0, 0, proto=1, direction="ingress")])
    for table in ("unexplained", "conversations"):
        assert getattr(tcp, table).dtypes.to_dict() == getattr(icmp, table).dtypes.to_dict(), table
        assert str(getattr(tcp, table)["port"].dtype) == "UInt16"
    assert tcp.rejected.empty and tcp.rejected["likely_cause"].dtype == object
    assert str(tcp.rejected["port"].dtype) == "UInt16"

# --- Interfaces and groups the snapshot does not know ---------------------------------------------------


def test_interface_missing_from_snapshot_counts_for_coverage_only(tmp_path):
    ghost = handshake("eni-ghost", CLIENT, "10.0.0.99", 40000, 80) + [nodata("eni-ghost", T0 + 60)]
    result = run(tmp_path, web_snapshot(), GOOD + ghost)
    q = quality(result)
    assert (q["interface_not_in_snapshot"], q["nodata"], q["conversation"], q["total"]) == (2, 1, 2, 5)
    assert "eni-ghost" not in set(result.unexplained["interface_id"])
    assert "eni-ghost" not in set(result.conversations["interface_id"])
    cov = result.coverage.set_index("interface_id")
    assert cov.loc["eni-ghost", ["in_snapshot", "observed", "records", "nodata"]].tolist() == [False, True, 3, 1]
    assert cov.loc["eni-a", ["in_snapshot", "observed"]].tolist() == [True, True]
    assert row(result, "sgr-http")["connections"] == 1


def test_unattributable_records_are_counted(tmp_path):
    # No interface ("-", e.g. regional NAT gateway traffic); and, in the v2 format, a record where neither
    # address is the interface's.
    no_eni = rec(None, CLIENT, SERVER, 40000, 80, direction="ingress")
    inv = web_snapshot().write(tmp_path / "inv")
    write_log(tmp_path / "logs" / "a.log.gz", GOOD + [no_eni])
    strangers = [rec("eni-a", "192.0.2.1", "192.0.2.2", 1000, 80), rec("eni-a", "192.0.2.2", "192.0.2.1", 80, 1000)]
    write_log(tmp_path / "logs" / "b.log", strangers, V2, header=False, compress=False)
    result = sgaudit.analyze(tmp_path / "logs", inv)
    q = quality(result)
    assert (q["unattributable"], q["conversation"], q["total"]) == (3, 2, 5)
    assert row(result, "sgr-http")["connections"] == 1


def test_interface_without_groups_counts_for_coverage_only(tmp_path):
    snap = web_snapshot().interface("eni-nat", "10.0.0.50", groups=[], itype="nat_gateway")
    result = run(tmp_path, snap, GOOD + handshake("eni-nat", CLIENT, "10.0.0.50", 40000, 80))
    q = quality(result)
    assert (q["no_security_groups"], q["conversation"]) == (2, 2)
    assert "eni-nat" not in set(result.unexplained["interface_id"])


def test_rule_referencing_a_group_outside_the_snapshot_is_reported_not_guessed(tmp_path):
    snap = web_snapshot()
    snap.rule("sgr-peer", "sg-web", "tcp", 5432, ref_info={
        "GroupId": "sg-0peer", "UserId": "210987654321", "VpcId": "vpc-9", "PeeringStatus": "active",
        "VpcPeeringConnectionId": "pcx-0123"})
    # Traffic from an address of the peered VPC: the rule might be what lets it in, but that is unknown.
    recs = GOOD + handshake("eni-a", "172.31.5.5", SERVER, 50000, 5432)
    result = run(tmp_path, snap, recs)
    found = result.problems[result.problems["kind"] == "referenced_group_unresolved"]
    assert found["resource"].tolist() == ["sgr-peer"]
    assert "sg-0peer" in found["detail"].iloc[0] and "pcx-0123" in found["detail"].iloc[0]
    r = row(result, "sgr-peer")
    assert (r["status"], r["connections"], r["evidence"]) == ("unused", 0, "")
    unexplained = result.unexplained
    assert unexplained[["peer", "port"]].values.tolist() == [["172.31.5.5", 5432]]


# --- Inventory folders ----------------------------------------------------------------------------------


def test_inventory_missing_network_interfaces(tmp_path):
    inv = web_snapshot().write(tmp_path / "inv")
    (inv / "network-interfaces.json").unlink()
    with pytest.raises(sgaudit.InventoryError) as exc:
        sgaudit.load_inventory(inv)
    msg = str(exc.value)
    assert str(inv / "network-interfaces.json") in msg
    assert "describe-network-interfaces" in msg and "sgaudit collect" in msg


def test_inventory_folder_that_does_not_exist(tmp_path):
    with pytest.raises(sgaudit.InventoryError, match="no such inventory folder"):
        sgaudit.analyze(write_log(tmp_path / "f.log.gz", GOOD), tmp_path / "nowhere")


def test_inventory_given_as_one_of_its_files_names_the_folder_to_pass(tmp_path):
    inv = web_snapshot().write(tmp_path / "inv")
    with pytest.raises(sgaudit.InventoryError, match="security-group-rules.json: is a file; the inventory is the "
                                                     "folder") as exc:
        sgaudit.analyze(write_log(tmp_path / "f.log.gz", GOOD), inv / "security-group-rules.json")
    assert str(exc.value).endswith(f"pass --inventory {inv}")


@pytest.mark.parametrize("file,content,key", [
    pytest.param("security-group-rules.json", {"SecurityGroups": []}, "SecurityGroupRules", id="rules-wrong-key"),
    pytest.param("network-interfaces.json", [], "NetworkInterfaces", id="interfaces-a-list"),
    pytest.param("security-groups.json", {"Reservations": []}, "SecurityGroups", id="groups-wrong-key"),
])
def test_inventory_json_of_the_wrong_shape_names_the_expected_key(tmp_path, file, content, key):
    inv = web_snapshot().write(tmp_path / "inv")
    (inv / file).write_text(json.dumps(content))
    with pytest.raises(sgaudit.InventoryError) as exc:
        sgaudit.analyze(write_log(tmp_path / "f.log.gz", GOOD), inv)
    assert str(inv / file) in str(exc.value)
    assert repr(key) in str(exc.value)


def test_inventory_invalid_json_gives_the_line(tmp_path):
    inv = web_snapshot().write(tmp_path / "inv")
    (inv / "security-groups.json").write_text('{\n    "SecurityGroups": [\n        {"GroupId": "sg-web",,}\n    ]\n}')
    with pytest.raises(sgaudit.InventoryError) as exc:
        sgaudit.load_inventory(inv)
    assert f"{inv / 'security-groups.json'}, line 3" in str(exc.value)


# --- The window -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("start,end,match", [
    pytest.param("2025-02-06T16:00:00Z", "2025-02-06T15:00:00Z", "not before --end", id="start-after-end"),
    pytest.param("2025-02-06T15:00:00Z", "2025-02-06T15:00:00Z", "not before --end", id="empty-window"),
    pytest.param("yesterday-ish", None, "--start: cannot read 'yesterday-ish'", id="unparseable-start"),
    pytest.param(None, "2025-13-45", "--end: cannot read", id="unparseable-end"),
    pytest.param("nan", None, "--start: 'nan' is not a time", id="nan"),
    pytest.param(None, "99999999999999999999999", "--end: .* is outside 1970-2262", id="end-past-2262"),
    pytest.param("-5", None, "outside 1970-2262", id="negative"),
])
def test_bad_window(tmp_path, start, end, match):
    inv = web_snapshot().write(tmp_path / "inv")
    with pytest.raises(sgaudit.WindowError, match=match):
        sgaudit.analyze(write_log(tmp_path / "f.log.gz", GOOD), inv, start=start, end=end)


def test_window_in_unix_milliseconds_means_what_it_means_in_a_record(tmp_path):
    # A start copied from a record written in milliseconds (10**11 and more, as `reduction` reads them).
    inv = web_snapshot().write(tmp_path / "inv")
    log = write_log(tmp_path / "f.log.gz", GOOD)
    seconds = sgaudit.analyze(log, inv, start="1738854000", end="1738857600")
    millis = sgaudit.analyze(log, inv, start="1738854000000", end=1738857600000)
    assert seconds.window == millis.window
    assert seconds.window[0] == pd.Timestamp("2025-02-06T15:00:00Z")


def test_records_outside_the_window_are_counted_not_used(tmp_path):
    snap = web_snapshot().rule("sgr-ssh", "sg-web", "tcp", 22, cidr="0.0.0.0/0")
    later = handshake("eni-a", CLIENT, SERVER, 50000, 22, start=T0 + 3600)
    result = run(tmp_path, snap, GOOD + later + [nodata("eni-a", T0 - 3600)],
                 start="2025-02-06T15:00:00Z", end="2025-02-06T15:30:00Z")
    q = quality(result)
    assert (q["outside_window"], q["conversation"], q["nodata"], q["total"]) == (3, 2, 0, 5)
    assert row(result, "sgr-http")["status"] == "used"
    assert (row(result, "sgr-ssh")["status"], row(result, "sgr-ssh")["connections"]) == ("unused", 0)
    assert [str(t) for t in result.window] == ["2025-02-06 15:00:00+00:00", "2025-02-06 15:30:00+00:00"]
    assert result.coverage.set_index("interface_id").loc["eni-a", "records"] == 2


def test_json_that_is_not_a_cloudwatch_export_is_an_error(tmp_path):
    inv = web_snapshot().write(tmp_path / "inv")
    other = tmp_path / "logs" / "something.json"
    other.parent.mkdir()
    other.write_text('{"SecurityGroups": []}')
    with pytest.raises(sgaudit.FlowLogReadError, match="not a CloudWatch Logs export"):
        sgaudit.analyze(other, inv)


def test_inventory_folder_inside_the_flow_log_folder_is_not_read_as_flow_logs(tmp_path):
    inv = web_snapshot().write(tmp_path / "inventory")
    write_log(tmp_path / "logs" / "flow.log.gz", handshake("eni-a", "198.51.100.7", "10.0.0.5", 40000, 80))
    result = sgaudit.analyze(tmp_path, inv)
    assert [f.path.name for f in result.files] == ["flow.log.gz"]


# --- Runs that say nothing: warned, never silent ----------------------------------------------------------


def _warnings(result: sgaudit.Analysis) -> list[str]:
    from sgaudit import notebook, summaries

    found = summaries.warnings(result)
    box = notebook.warnings(result)
    assert (box is None) == (not found)
    if box is not None:
        assert all(w.replace("'", "&#x27;") in box.data for w in found) and 'role="alert"' in box.data
    return found


def test_a_sound_run_has_no_warning(tmp_path):
    result = run(tmp_path, web_snapshot(), handshake("eni-a", CLIENT, SERVER, 40000, 80))
    assert _warnings(result) == []


def test_a_run_of_empty_files_warns_that_nothing_was_read(tmp_path):
    inv = web_snapshot().write(tmp_path / "inv")
    log = write_text(tmp_path / "flow.log", [" ".join(V5)], compress=False)
    assert [w.split(":")[0] for w in _warnings(sgaudit.analyze(log, inv))] == ["no flow-log record was read (the files "
                                                                              "are empty or hold only header lines)"]


def test_a_window_holding_no_record_warns_and_gives_the_records_span(tmp_path):
    inv = web_snapshot().write(tmp_path / "inv")
    log = write_log(tmp_path / "flow.log.gz", handshake("eni-a", CLIENT, SERVER, 40000, 80))
    result = sgaudit.analyze(log, inv, start="2024-01-01", end="2024-01-02")
    [w] = _warnings(result)
    assert w.startswith("none of the 2 records read is in the window (they span 2025-02-06T15:04:00Z to ")
    assert "check --start and --end" in w


def test_a_run_of_malformed_records_only_warns(tmp_path):
    inv = web_snapshot().write(tmp_path / "inv")
    bad = [line(rec("eni-a", CLIENT, SERVER, 40000, 80), V2).replace(" ACCEPT ", " MAYBE "),
           " ".join(["x"] * len(V2))]
    log = write_text(tmp_path / "flow.log", bad, compress=False)
    result = sgaudit.analyze(log, inv)
    [w] = _warnings(result)
    assert w.startswith("every one of the 2 records read is malformed")


def test_a_snapshot_of_another_account_warns(tmp_path):
    result = run(tmp_path, web_snapshot(), handshake("eni-elsewhere", CLIENT, SERVER, 40000, 80))
    assert _warnings(result) == ["no interface of the snapshot is in these logs: is the snapshot of another account "
                                 "or region than the flow logs?"]


# --- The same file twice ------------------------------------------------------------------------------------


def test_a_copy_of_a_file_is_read_once_and_named(tmp_path):
    # The same delivery downloaded twice would double every byte and packet (connections would not move).
    inv = web_snapshot().write(tmp_path / "inv")
    first = write_log(tmp_path / "logs" / "a" / "flow.log.gz", GOOD)
    copy = tmp_path / "logs" / "b" / "again.log.gz"
    copy.parent.mkdir()
    copy.write_bytes(first.read_bytes())
    other = write_log(tmp_path / "logs" / "c" / "other.log.gz", [PROBE])
    result = sgaudit.analyze(tmp_path / "logs", inv)
    assert [str(f.path) for f in result.files] == [str(first), str(other)]
    assert quality(result)["total"] == 3
    apart = sgaudit.analyze([first, other], inv)
    once = sum(r["bytes"] for r in GOOD + [PROBE])
    assert row(result, "sgr-http")["bytes"] == row(apart, "sgr-http")["bytes"] == once
    dup = result.problems[result.problems["kind"] == "duplicate_file"]
    assert dup[["resource", "detail"]].values.tolist() == [
        [str(copy), f"the same bytes as {first}: read once, so that no record counts twice"]]
    from sgaudit.cli import summary

    assert "files       2 read; 1 left out as the same bytes as another (see problems)" in summary(result)


def test_files_of_equal_size_and_other_bytes_are_all_read(tmp_path):
    inv = web_snapshot().write(tmp_path / "inv")
    a = write_text(tmp_path / "logs" / "a.log", [" ".join(V5), line(GOOD[0], V5)], compress=False)
    b = write_text(tmp_path / "logs" / "b.log", [" ".join(V5), line(GOOD[1], V5)], compress=False)
    b.write_text(b.read_text()[:a.stat().st_size - 1].ljust(a.stat().st_size - 1) + "\n")
    assert a.stat().st_size == b.stat().st_size and a.read_bytes() != b.read_bytes()
    result = sgaudit.analyze(tmp_path / "logs", inv)
    assert len(result.files) == 2 and not (result.problems["kind"] == "duplicate_file").any()


def test_a_notebook_filtered_by_a_group_the_snapshot_lacks_stops_with_the_closest_id(tmp_path):
    from sgaudit import notebook

    result = run(tmp_path, web_snapshot(), handshake("eni-a", CLIENT, SERVER, 40000, 80))
    assert notebook.warnings(result, ["sg-web"]) is None
    with pytest.raises(sgaudit.SgauditError, match=r"group_ids: 'sg-wbe' \(closest: sg-web\) not in the snapshot"):
        notebook.warnings(result, ["sg-wbe"])


def test_a_closed_analysis_says_so_and_keeps_what_was_asked_before(tmp_path):
    inv = web_snapshot().write(tmp_path / "inv")
    log = write_log(tmp_path / "flow.log.gz", GOOD)
    with sgaudit.analyze(log, inv) as result:
        usage = result.usage
        folder = result._tmpdir
    assert result.usage is usage and not os.path.exists(folder)
    for use in (lambda: result.rejected, lambda: result.timeline("5min"), lambda: result.reanalyze(inv)):
        with pytest.raises(sgaudit.SgauditError, match="this analysis is closed"):
            use()
    result.close()  # twice is fine


def test_the_folder_of_a_killed_analysis_is_removed_by_the_next_one(tmp_path):
    # A notebook kernel killed mid-analysis cannot remove its temporary folder (downloaded flow logs
    # and all); the next analysis removes the folders of processes that no longer run.
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = tmp_path / f"sgaudit-p{int(done.stdout)}-abc"
    alive = tmp_path / f"sgaudit-p{os.getpid()}-def"
    other = tmp_path / "sgaudit-not-ours"
    for folder in (dead, alive, other):
        (folder / "remote").mkdir(parents=True)
        (folder / "remote" / "flow.log.gz").write_bytes(b"x")
    inv = web_snapshot().write(tmp_path / "inv")
    with sgaudit.analyze(write_log(tmp_path / "flow.log.gz", GOOD), inv, workdir=tmp_path) as result:
        assert Path(result._tmpdir).name.startswith(f"sgaudit-p{os.getpid()}-")
    assert not dead.exists() and alive.exists() and other.exists()


@pytest.mark.parametrize("off", [0, 4, 5])  # the page header's field types, its sizes, its compressed data
def test_parquet_whose_data_pages_are_damaged_names_the_file_among_others(tmp_path, off):
    # The metadata reads (so the file is taken for Parquet), but a page of a column sgaudit reads does not:
    # DuckDB raises its bare Error ("TProtocolException", "don't know what type") or an input error, and
    # names no file; the damaged one is found by reading each alone.
    import pyarrow.parquet as pq

    inv = web_snapshot().write(tmp_path / "inv")
    write_parquet(tmp_path / "logs" / "a.parquet", handshake("eni-a", CLIENT, SERVER, 40000, 80))
    bad = write_parquet(tmp_path / "logs" / "b.parquet", handshake("eni-a", "198.51.100.8", SERVER, 40001, 80))
    chunk = next(c for c in (pq.ParquetFile(bad).metadata.row_group(0).column(i) for i in range(16))
                 if c.path_in_schema == "srcaddr")
    data = bytearray(bad.read_bytes())
    data[(chunk.dictionary_page_offset or chunk.data_page_offset) + off] ^= 0xFF
    bad.write_bytes(bytes(data))
    with pytest.raises(sgaudit.FlowLogReadError) as exc:
        sgaudit.analyze(tmp_path / "logs", inv)
    msg = str(exc.value)
    assert msg.startswith(f"{bad}: cannot read (") and "a.parquet" not in msg
    assert "The Parquet file is damaged" in msg and "leave it out of --flow-logs" in msg


def test_a_folder_walk_names_the_files_it_passes_over(tmp_path):
    # Documentation kept beside the logs is no flow log, and is named rather than read or dropped unseen;
    # `.txt` is read (a CloudWatch export saved by hand may be one), and a file named itself is always read.
    inv = web_snapshot().write(tmp_path / "inv")
    logs = tmp_path / "logs"
    log = write_log(logs / "flow.log.gz", handshake("eni-a", CLIENT, SERVER, 40000, 80))
    export = write_log(logs / "export.txt", handshake("eni-a", CLIENT, SERVER, 40001, 80), compress=False)
    notes = [logs / "README.txt", logs / "README", logs / "sub" / "notes.md", logs / "LICENSE",
             logs / "expected.csv", logs / "manifest.yaml"]
    for p in notes:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("Flow logs of the web tier, copied from S3 on Monday.\n")
    (logs / ".flow.log.gz.etag").write_text('"abc"')  # hidden: bookkeeping of the S3 cache, not named
    result = sgaudit.analyze(logs, inv)
    assert sorted(str(f.path) for f in result.files) == sorted([str(log), str(export)])
    assert row(result, "sgr-http")["connections"] == 2
    named = result.problems[result.problems["kind"] == "not_flow_logs"]
    assert sorted(named["resource"]) == sorted(map(str, notes))
    assert named["detail"].str.contains("name the file itself in --flow-logs").all()
    with pytest.raises(sgaudit.FlowLogFormatError, match="if the file is not a flow log, leave it out of --flow-logs"):
        sgaudit.analyze([log, logs / "README.txt"], inv)


def test_the_inventory_folder_given_as_flow_logs_is_an_error(tmp_path):
    inv = web_snapshot().write(tmp_path / "inv")
    with pytest.raises(sgaudit.FlowLogReadError, match="holds no flow-log files, only the inventory snapshot "
                                                       "given as --inventory"):
        sgaudit.analyze(inv, inv)
    # Inside a flow-log folder, the snapshot is passed over and the logs beside it read.
    log = write_log(tmp_path / "flow.log.gz", handshake("eni-a", CLIENT, SERVER, 40000, 80))
    result = sgaudit.analyze(tmp_path, inv)
    assert [f.path for f in result.files] == [log]


def test_a_snapshot_without_interfaces_warns(tmp_path):
    # Every record is then at an interface not in the snapshot, and every rule unattached: a snapshot
    # taken without describe-network-interfaces, or of another account, not a finding about the rules.
    snap = Snapshot().group("sg-web", "web")
    snap.rule("sgr-http", "sg-web", "tcp", 80, cidr="0.0.0.0/0")
    result = run(tmp_path, snap, handshake("eni-a", CLIENT, SERVER, 40000, 80))
    assert _warnings(result) == [
        "the snapshot holds no network interface (network-interfaces.json lists none), so every rule is unattached "
        "and the 2 records, at interfaces not in it, count for coverage only: was it taken in the account and "
        "region of the flow logs?"]
    # And the conclusion does not call every conversation allowed when none was there to check.
    from sgaudit import findings

    assert summaries.verdict(result, findings.findings(result))[-1] == (
        "No accepted conversation at an interface of the snapshot, so no traffic was checked against its rules.")


def test_skipdata_is_said_in_the_conclusion_and_the_plans_limits(tmp_path):
    # SPEC counts an interface with SKIPDATA observed, so its rules can be unused on traffic AWS dropped.
    from sgaudit import findings

    snap = web_snapshot()
    snap.interface("eni-b", "10.0.0.6", groups=["sg-web"])
    result = run(tmp_path, snap, [*handshake("eni-a", CLIENT, SERVER, 40000, 80), nodata("eni-b", status="SKIPDATA"),
                                  nodata("eni-b", T0 + 600, status="SKIPDATA")])
    sentence = ("AWS skipped records at 1 interface (2 SKIPDATA records): the traffic of those intervals is in no "
                "result, so rules of their groups may look unused or less used than they were.")
    assert summaries.skipped_text(result) == sentence
    assert sentence in summaries.verdict(result, findings.findings(result))
    assert any(limit.startswith(sentence) for limit in plan.propose(result).limits)
    assert _warnings(result) == []  # data lost in places: said where rules are judged, not a run saying nothing
    sound = run(tmp_path / "sound", web_snapshot(), handshake("eni-a", CLIENT, SERVER, 40000, 80))
    assert summaries.skipped_text(sound) == ""


def test_control_bytes_of_a_garbage_line_are_shown_not_passed_on(tmp_path):
    # A NUL or an escape sequence copied raw into the problems CSV or a report page would be acted on (a
    # truncated cell, a recoloured terminal) instead of shown.
    inv = web_snapshot().write(tmp_path / "inv")
    garbage = "\x1b[31mred\x00 nul\x7f"
    log = write_text(tmp_path / "flow.log", [" ".join(V5), line(GOOD[0], V5), garbage], compress=False)
    result = sgaudit.analyze(log, inv)
    [value] = result.problems.loc[result.problems["kind"] == "malformed_line", "value"]
    assert value == "\\x1b[31mred\\x00 nul\\x7f"


def test_flow_logs_aws_writes_that_sgaudit_cannot_use_say_what_they_are(tmp_path):
    inv = web_snapshot().write(tmp_path / "inv")
    # A transit gateway's flow log names no interface: no custom format can fix that, so none is asked for.
    tgw = ["version", "resource-type", "account-id", "tgw-id", "tgw-attachment-id", "srcaddr", "dstaddr",
           "srcport", "dstport", "protocol", "packets", "bytes", "start", "end", "log-status", "tcp-flags"]
    log = write_text(tmp_path / "tgw" / "x.log.gz", [" ".join(tgw), " ".join(
        ["6", "TransitGateway", "123456789012", "tgw-0a", "tgw-attach-0b", CLIENT, SERVER, "40000", "80", "6", "1",
         "60", str(T0), str(T0 + 60), "OK", "2"])])
    with pytest.raises(sgaudit.FlowLogFormatError, match="a transit gateway flow log .*no interface-id, action.*"
                                                         "VPC flow logs of the VPCs behind the transit gateway"):
        sgaudit.analyze(log, inv)
    # A CloudWatch Logs export task's file: every line starts with the event's timestamp.
    export = write_text(tmp_path / "exportedlogs" / "000000.gz",
                        ["2025-02-06T15:04:00.000Z " + line(GOOD[0], V2)])
    export_task = (r"starts with a timestamp \(2025-02-06T15:04:00.000Z\), as the files of a CloudWatch Logs "
                   r"export task.*cut -d' ' -f2-")
    with pytest.raises(sgaudit.FlowLogFormatError, match=export_task):
        sgaudit.analyze(export, inv)
    # A Parquet file gzipped whole: AWS compresses inside Parquet, and the fix is to gunzip it.
    parquet = write_parquet(tmp_path / "p" / "x.parquet", GOOD)
    packed = tmp_path / "p" / "x.parquet.gz"
    packed.write_bytes(gzip.compress(parquet.read_bytes()))
    with pytest.raises(sgaudit.FlowLogReadError, match="a Parquet file compressed whole with gzip; gunzip it first"):
        sgaudit.analyze(packed, inv)
