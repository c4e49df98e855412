"""Every flow-log input format sgaudit reads has a named test here (SPEC "Inputs", AWS-FACTS sections 1 and 5).

Each test writes the same few records in one layout and checks the usage the engine derives from them, so
a test fails when support for its layout breaks, not only when reading raises.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sgaudit
from builders import T0, V2, V5, Snapshot, handshake, line, nodata, rec, row, run, write_log, write_parquet
from sgaudit import fields, records, sources

SERVER, CLIENT = "10.0.0.5", "198.51.100.7"
FIRST_SEEN = pd.Timestamp(T0, unit="s", tz="UTC")  # 2025-02-06T15:04:00Z
LAST_SEEN = pd.Timestamp(T0 + 13, unit="s", tz="UTC")


def web_snapshot() -> Snapshot:
    """eni-a (10.0.0.5) carries sg-web: HTTP in from anywhere, SSH in from 10/8, HTTPS and DNS out."""
    snap = Snapshot().group("sg-web", "web")
    snap.rule("sgr-http", "sg-web", "tcp", 80, cidr="0.0.0.0/0")
    snap.rule("sgr-ssh", "sg-web", "tcp", 22, cidr="10.0.0.0/8")
    snap.rule("sgr-https-out", "sg-web", "tcp", 443, egress=True, cidr="0.0.0.0/0")
    snap.rule("sgr-dns-out", "sg-web", "udp", 53, egress=True, cidr="10.0.0.0/16")
    snap.interface("eni-a", SERVER, groups=["sg-web"])
    return snap


def http_handshake() -> list[dict]:
    """One inbound HTTP connection to eni-a with its SYN and SYN-ACK (v5 records)."""
    return handshake("eni-a", CLIENT, SERVER, 40000, 80)


def assert_http_established(result: sgaudit.Analysis) -> None:
    r = row(result, "sgr-http")
    assert (r["status"], r["evidence"]) == ("used", "established")
    assert (r["connections"], r["peers"], r["ports"]) == (1, 1, "80")
    assert (r["bytes"], r["packets"]) == (300, 5)
    assert (r["first_seen"], r["last_seen"]) == (FIRST_SEEN, LAST_SEEN)
    assert row(result, "sgr-ssh")["status"] == "unused"


def write_cloudwatch(path: Path, recs: list[dict], fmt: list[str] = V2, *, per_line: bool = False) -> Path:
    """What ``aws logs filter-log-events`` prints (or one event object per line): headerless messages."""
    events = [{"logStreamName": r["interface-id"] + "-all", "timestamp": r["start"] * 1000,
               "message": line(r, fmt), "ingestionTime": (r["end"] + 300) * 1000, "eventId": str(36000000 + i)}
              for i, r in enumerate(recs)]
    path.parent.mkdir(parents=True, exist_ok=True)
    if per_line:
        path.write_text("".join(json.dumps(e) + "\n" for e in events))
    else:
        path.write_text(json.dumps({"events": events, "searchedLogStreams": []}, indent=4))
    return path


# --- Text: default format, custom header, --format ---------------------------------------------------


def test_default_v2_format_without_header_plain_text(tmp_path):
    # What CloudWatch Logs exports: bare default-format records, no header, no --format.
    inv = web_snapshot().write(tmp_path / "inv")
    log = write_log(tmp_path / "eni-a.log", http_handshake(), V2, header=False, compress=False)
    result = sgaudit.analyze(log, inv)
    assert [(f.kind, f.header, f.gzip, f.fields) for f in result.files] == [("text", False, False, tuple(V2))]
    r = row(result, "sgr-http")
    # v2 carries no tcp-flags: two-way traffic is inferred (SPEC "Evidence"), the direction from the ports.
    assert (r["status"], r["evidence"], r["connections"], r["ports"]) == ("used", "inferred", 1, "80")
    assert (r["bytes"], r["packets"], r["last_seen"]) == (300, 5, LAST_SEEN)


def test_custom_format_from_header_in_reversed_order_gzip(tmp_path):
    fmt = list(reversed(V5))
    result = run(tmp_path, web_snapshot(), http_handshake(), fmt)
    assert [(f.kind, f.header, f.gzip, f.fields) for f in result.files] == [("text", True, True, tuple(fmt))]
    assert_http_established(result)


@pytest.mark.parametrize("form", [
    pytest.param(lambda names: " ".join(f"${{{n}}}" for n in names), id="aws-LogFormat-${}"),
    pytest.param(lambda names: " ".join(names), id="plain-names"),
    pytest.param(lambda names: " ".join(n.replace("-", "_") for n in names), id="athena-underscore-names"),
])
def test_log_format_given_for_headerless_file(tmp_path, form):
    fmt = V5[7:] + V5[:7]  # not the default order: the records only read right through log_format
    inv = web_snapshot().write(tmp_path / "inv")
    log = write_log(tmp_path / "cwl.log", http_handshake(), fmt, header=False, compress=False)
    result = sgaudit.analyze(log, inv, log_format=form(fmt))
    assert result.files[0].fields == tuple(fmt)
    assert_http_established(result)


def test_file_header_wins_over_log_format(tmp_path):
    inv = web_snapshot().write(tmp_path / "inv")
    log = write_log(tmp_path / "s3.log.gz", http_handshake(), V5)
    result = sgaudit.analyze(log, inv, log_format=" ".join(f"${{{n}}}" for n in reversed(V5)))
    assert result.files[0].fields == tuple(V5)
    assert_http_established(result)


# --- CloudWatch Logs JSON -------------------------------------------------------------------------------


@pytest.mark.parametrize("per_line", [False, True], ids=["filter-log-events-document", "event-per-line"])
def test_cloudwatch_filter_log_events_json(tmp_path, per_line):
    inv = web_snapshot().write(tmp_path / "inv")
    log = write_cloudwatch(tmp_path / "events.json", http_handshake(), V5, per_line=per_line)
    result = sgaudit.analyze(log, inv, log_format=" ".join(V5))
    assert result.files[0].kind == "cloudwatch-json"
    assert_http_established(result)
    assert result.quality.set_index("bucket").loc["total", "records"] == 2


def test_cloudwatch_json_in_default_format(tmp_path):
    inv = web_snapshot().write(tmp_path / "inv")
    log = write_cloudwatch(tmp_path / "events.json", http_handshake(), V2)
    result = sgaudit.analyze(log, inv)
    r = row(result, "sgr-http")
    assert (r["status"], r["evidence"], r["bytes"]) == ("used", "inferred", 300)


# --- Field names ----------------------------------------------------------------------------------------


def test_every_field_through_version_7_accepted_in_a_header(tmp_path):
    names = [f.name for f in fields.FIELDS if f.version <= 7]
    assert len(names) == 57  # 14 (v2) + 7 (v3) + 4 (v4) + 4 (v5) + 18 (v6) + 10 (v7)
    random.Random(7).shuffle(names)
    # Fields the engine does not use are "-" (rec() has no value for them, line() writes "-").
    result = run(tmp_path, web_snapshot(), http_handshake(), names)
    assert result.files[0].fields == tuple(names)
    assert_http_established(result)
    assert result.quality.set_index("bucket").loc["malformed", "records"] == 0


@pytest.mark.parametrize("where", ["header", "log_format"])
def test_unknown_field_name_is_named_with_the_close_match_and_the_known_fields(tmp_path, where):
    fmt = [("tcp-flag" if n == "tcp-flags" else n) for n in V5]
    inv = web_snapshot().write(tmp_path / "inv")
    if where == "header":
        log = write_log(tmp_path / "flow.log.gz", http_handshake(), fmt)
        kwargs = {}
    else:
        log = write_log(tmp_path / "flow.log", http_handshake(), V5, header=False, compress=False)
        kwargs = {"log_format": " ".join(fmt)}
    with pytest.raises(sgaudit.FlowLogFormatError) as exc:
        sgaudit.analyze(log, inv, **kwargs)
    msg = str(exc.value)
    assert "'tcp-flag'" in msg
    assert "Did you mean 'tcp-flags'?" in msg
    assert "Known fields" in msg and all(f.name in msg for f in fields.FIELDS)
    if where == "header":
        assert str(log) in msg


# --- Compression, Parquet -------------------------------------------------------------------------------


@pytest.mark.parametrize("compress", [True, False], ids=["gzip", "plain"])
def test_text_gzip_and_plain(tmp_path, compress):
    inv = web_snapshot().write(tmp_path / "inv")
    log = write_log(tmp_path / ("flow.log.gz" if compress else "flow.log"), http_handshake(), V5, compress=compress)
    result = sgaudit.analyze(log, inv)
    assert (result.files[0].kind, result.files[0].gzip) == ("text", compress)
    assert_http_established(result)


def test_parquet_with_athena_column_names(tmp_path):
    inv = web_snapshot().write(tmp_path / "inv")
    log = write_parquet(tmp_path / "flow.parquet", http_handshake() + [nodata("eni-a", T0 + 60)])
    schema = pq.read_schema(log)
    assert "tcp_flags" in schema.names and schema.field("srcport").type == pa.int32()
    result = sgaudit.analyze(log, inv)
    assert result.files[0].kind == "parquet"
    assert_http_established(result)
    q = result.quality.set_index("bucket")["records"]
    assert (q["conversation"], q["nodata"], q["malformed"], q["total"]) == (2, 1, 0, 3)


# --- Folder trees in the S3 key layouts -----------------------------------------------------------------

PLAIN = "AWSLogs/123456789012/vpcflowlogs/us-east-1/2025/02/06/{hour}"
HIVE = ("AWSLogs/aws-account-id=123456789012/aws-service=vpcflowlogs/aws-region=us-east-1/"
        "year=2025/month=02/day=06/hour={hour}")


@pytest.mark.parametrize("layout", [PLAIN, HIVE], ids=["plain", "hive"])
def test_s3_key_layout_folder_walked_recursively(tmp_path, layout):
    inv = web_snapshot().write(tmp_path / "inv")
    syn, synack = http_handshake()
    # The SYN and the SYN-ACK in files of different hours: both must be found and joined.
    for hour, r in (("15", syn), ("16", synack)):
        name = f"123456789012_vpcflowlogs_us-east-1_fl-0123456789abcdef0_20250206T{hour}05Z_fe123456.log.gz"
        write_log(tmp_path / "bucket" / layout.format(hour=hour) / name, [r])
    result = sgaudit.analyze(tmp_path / "bucket", inv)
    assert len(result.files) == 2
    assert all("AWSLogs" in str(f.path) for f in result.files)
    assert_http_established(result)


# --- Many files, many formats, one run ------------------------------------------------------------------


def mixed_records() -> dict[str, list[dict]]:
    """Records for four conversations of eni-a, by the file they go to.

    Records for the version-2 files have no tcp-flags and no flow-direction, as that format has none.
    """
    syn, synack = http_handshake()  # established, its two halves in two formats
    ssh = [rec("eni-a", "10.1.0.9", SERVER, 50000, 22, start=T0 + 60),
           rec("eni-a", SERVER, "10.1.0.9", 22, 50000, start=T0 + 60)]
    https = [rec("eni-a", SERVER, "203.0.113.10", 43000, 443, start=T0 + 120),
             rec("eni-a", "203.0.113.10", SERVER, 443, 43000, start=T0 + 120)]
    dns = [rec("eni-a", SERVER, "10.0.0.2", 5353, 53, proto=17, direction="egress", start=T0 + 180)]
    return {"v5": [syn, nodata("eni-a", T0 + 240)], "v2": ssh, "parquet": [synack] + dns, "cloudwatch": https}


@pytest.mark.parametrize("with_parquet", [
    pytest.param(True, id="v5-gzip+v2-plain+parquet+cloudwatch-json"),
    pytest.param(False, id="v5-gzip+v2-plain+v5-reversed-plain+cloudwatch-json"),
])
def test_mixed_formats_in_one_run_equal_one_file(tmp_path, with_parquet):
    inv = web_snapshot().write(tmp_path / "inv")
    parts = mixed_records()
    mixed = tmp_path / "mixed"
    write_log(mixed / "s3" / "a.log.gz", parts["v5"], V5)
    write_log(mixed / "export" / "b.log", parts["v2"], V2, header=False, compress=False)
    if with_parquet:
        write_parquet(mixed / "s3" / "c.parquet", parts["parquet"])
    else:
        write_log(mixed / "s3" / "c.log", parts["parquet"], list(reversed(V5)), compress=False)
    write_cloudwatch(mixed / "export" / "d.json", parts["cloudwatch"], V2)
    together = sgaudit.analyze(mixed, inv)
    assert sorted(f.kind for f in together.files) == sorted(
        ["cloudwatch-json", "parquet" if with_parquet else "text", "text", "text"])

    everything = [r for part in parts.values() for r in part]
    single = sgaudit.analyze(write_log(tmp_path / "one" / "all.log.gz", everything, V5), inv)

    pd.testing.assert_frame_equal(together.usage, single.usage)
    pd.testing.assert_frame_equal(together.quality, single.quality)
    got = together.usage.set_index("rule_id")[["status", "evidence", "connections"]].T.to_dict("list")
    assert got == {"sgr-dns-out": ["attempted", "attempted", 1], "sgr-http": ["used", "established", 1],
                   "sgr-https-out": ["used", "inferred", 1], "sgr-ssh": ["used", "inferred", 1]}
    assert together.quality.set_index("bucket").loc["total", "records"] == len(everything) == 8


def test_one_file_and_many_files_agree_on_conversations_across_local_addresses(tmp_path):
    snap = web_snapshot()
    snap.enis[0]["PrivateIpAddresses"].append({"Primary": False, "PrivateIpAddress": "10.0.0.6"})
    inv = snap.write(tmp_path / "inv")
    to_primary = handshake("eni-a", CLIENT, SERVER, 40000, 80)
    to_secondary = handshake("eni-a", CLIENT, "10.0.0.6", 40000, 80, start=T0 + 60)
    single = sgaudit.analyze(write_log(tmp_path / "one" / "f.log.gz", to_primary + to_secondary), inv)
    write_log(tmp_path / "two" / "a.log.gz", to_primary)
    write_log(tmp_path / "two" / "b.log.gz", to_secondary, list(reversed(V5)))
    split = sgaudit.analyze(tmp_path / "two", inv)
    assert row(split, "sgr-http")["connections"] == 1
    assert row(single, "sgr-http")["connections"] == row(split, "sgr-http")["connections"]


# --- Values: "-", milliseconds, NODATA / SKIPDATA -------------------------------------------------------


@pytest.mark.parametrize(("flags", "evidence"), [
    pytest.param((2, 18), "established", id="syn-synack"),
    pytest.param((None, None), "inferred", id="dash-means-no-flags"),
    pytest.param((2, None), "inferred", id="syn-answered-by-dash"),
])
def test_dash_is_a_missing_value(tmp_path, flags, evidence):
    recs = [rec("eni-a", CLIENT, SERVER, 40000, 80, flags=flags[0], direction="ingress"),
            rec("eni-a", SERVER, CLIENT, 80, 40000, flags=flags[1], direction="egress")]
    result = run(tmp_path, web_snapshot(), recs)
    r = row(result, "sgr-http")
    assert (r["status"], r["evidence"]) == ("used", evidence)
    assert result.quality.set_index("bucket").loc["malformed", "records"] == 0


def test_dash_in_tcp_flags_is_read_as_null(tmp_path):
    log = write_log(tmp_path / "flow.log.gz", [rec("eni-a", CLIENT, SERVER, 40000, 80, flags=None)], V5)
    group = records.group_files([sources.sniff(log)])[0]
    con = duckdb.connect()
    got = con.sql(f"SELECT tcp_flags, flow_direction, dstport FROM {records.scan_sql(group, tmp_path)}").fetchall()
    assert got == [(None, None, 80)]


@pytest.mark.parametrize("scale", [1, 1000], ids=["seconds", "milliseconds"])
def test_millisecond_timestamps_give_the_same_times(tmp_path, scale):
    recs = http_handshake()
    for r in recs:
        r["start"], r["end"] = r["start"] * scale, r["end"] * scale
    result = run(tmp_path, web_snapshot(), recs)
    assert_http_established(result)
    assert result.window == (FIRST_SEEN, LAST_SEEN)
    conv = result.conversations
    assert (conv["first_seen"].tolist(), conv["last_seen"].tolist()) == ([FIRST_SEEN], [LAST_SEEN])


def test_nodata_and_skipdata_make_an_interface_observed(tmp_path):
    snap = web_snapshot()
    snap.group("sg-idle").rule("sgr-idle", "sg-idle", "tcp", 5432, cidr="10.0.0.0/8")
    snap.group("sg-dark").rule("sgr-dark", "sg-dark", "tcp", 6379, cidr="10.0.0.0/8")
    snap.interface("eni-idle", "10.0.0.20", groups=["sg-idle"])
    snap.interface("eni-skip", "10.0.0.21", groups=["sg-dark"])
    snap.interface("eni-dark", "10.0.0.22", groups=["sg-dark"])
    snap.group("sg-unseen").rule("sgr-unseen", "sg-unseen", "tcp", 8080, cidr="10.0.0.0/8")
    snap.interface("eni-unseen", "10.0.0.23", groups=["sg-unseen"])
    recs = http_handshake() + [nodata("eni-idle"), nodata("eni-idle", T0 + 60),
                               nodata("eni-skip", status="SKIPDATA")]
    result = run(tmp_path, snap, recs)
    assert row(result, "sgr-idle")["status"] == "unused"  # only NODATA: observed, nothing matched
    assert row(result, "sgr-dark")["status"] == "unused"  # SKIPDATA on one of its interfaces
    assert row(result, "sgr-unseen")["status"] == "unobserved"
    assert row(result, "sgr-idle")["evidence"] == ""
    q = result.quality.set_index("bucket")["records"]
    assert (q["nodata"], q["skipdata"], q["conversation"], q["malformed"], q["total"]) == (2, 1, 2, 0, 5)
    cov = result.coverage.set_index("interface_id")
    assert cov.loc["eni-idle", ["observed", "nodata", "skipdata"]].tolist() == [True, 2, 0]
    assert cov.loc["eni-skip", ["observed", "nodata", "skipdata"]].tolist() == [True, 0, 1]
    assert not cov.loc["eni-unseen", "observed"]
    assert set(result.conversations["interface_id"]) == {"eni-a"}


# --- Types the reader produces --------------------------------------------------------------------------


def test_text_reader_column_types(tmp_path):
    log = write_log(tmp_path / "flow.log.gz", http_handshake(), list(reversed(V5)))
    group = records.group_files([sources.sniff(log)])[0]
    assert isinstance(group, records.FileGroup)
    con = duckdb.connect()
    described = con.sql(f"DESCRIBE SELECT * FROM {records.scan_sql(group, tmp_path)}").fetchall()
    types = {name: typ for name, typ, *_ in described}
    assert list(types) == [fields.BY_NAME[n].column for n in fields.USED] + ["source_file"]
    assert {c: types[c] for c in ("srcport", "dstport", "protocol", "tcp_flags", "bytes", "packets")} == {
        "srcport": "USMALLINT", "dstport": "USMALLINT", "protocol": "UTINYINT", "tcp_flags": "SMALLINT",
        "bytes": "BIGINT", "packets": "BIGINT"}
    assert types["start"] == types["end"] == "BIGINT"
    assert types["srcaddr"] == types["interface_id"] == "VARCHAR"
    values = con.sql(f"SELECT srcport, dstport, protocol, tcp_flags, bytes FROM {records.scan_sql(group, tmp_path)} "
                     "ORDER BY tcp_flags").fetchall()
    assert values == [(40000, 80, 6, 2, 180), (80, 40000, 6, 18, 120)]


@pytest.mark.parametrize("name,compress", [
    pytest.param("flow.log.gz", True, id="gzip-named-gz"),
    pytest.param("flow.log", False, id="plain-named-log"),
    pytest.param("flow.data", True, id="gzip-named-data"),
    pytest.param("flow.log.gz", False, id="plain-named-gz"),
])
def test_compression_is_sniffed_by_content_not_name(tmp_path, name, compress):
    inv = web_snapshot().write(tmp_path / "inv")
    log = write_log(tmp_path / name, http_handshake(), V5, compress=compress)
    assert log.read_bytes()[:2] == (b"\x1f\x8b" if compress else b"ve")
    result = sgaudit.analyze(log, inv)
    assert result.files[0].gzip == compress
    assert_http_established(result)
    assert result.quality.set_index("bucket").loc["total", "records"] == 2


def test_a_window_of_millisecond_records_is_shown_with_its_milliseconds(tmp_path):
    # A window that ends at 15:04:00.500 printed as 15:04:00 .. 15:04:00 (and "0 s") says less than the logs.
    from sgaudit import summaries
    from sgaudit.cli import summary

    recs = http_handshake()
    for r in recs:
        r["start"], r["end"] = r["start"] * 1000, r["start"] * 1000 + 500
    result = run(tmp_path, web_snapshot(), recs)
    lo, hi = result.window
    assert (hi - lo) == pd.Timedelta(milliseconds=500)
    assert f"window      {lo:%Y-%m-%dT%H:%M:%S}Z .. {hi:%Y-%m-%dT%H:%M:%S}.500Z" in summary(result)
    assert summaries.duration(hi - lo) == "0.5 s"


def test_cloudwatch_pages_appended_to_one_file_are_read_in_order(tmp_path):
    # `aws logs filter-log-events --starting-token … >> events.json`, page by page: whole documents in a row.
    inv = web_snapshot().write(tmp_path / "inv")
    syn, synack = http_handshake()
    first = write_cloudwatch(tmp_path / "p1.json", [syn], V5).read_text()
    second = write_cloudwatch(tmp_path / "p2.json", [synack], V5).read_text()
    log = tmp_path / "events.json"
    log.write_text(first + "\n" + second + "\n")
    result = sgaudit.analyze(log, inv, log_format=" ".join(V5))
    assert_http_established(result)
    assert result.quality.set_index("bucket").loc["total", "records"] == 2
