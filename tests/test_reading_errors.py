"""Reading damaged or odd files: a clear error naming the file, line and fix, or a counted and listed record.

The files here are ones a user really meets: exports re-saved in another encoding or cut short, folders
and files without permission, CloudWatch events with empty or multi-line messages, Windows line endings,
byte-order marks, archives passed instead of their contents. Every malformed record is counted once and
listed once, with its file and line (or Parquet row).
"""

from __future__ import annotations

import bz2
import errno
import functools
import gzip
import io
import json
import os
import tempfile
import zipfile
import zlib
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sgaudit
from builders import T0, V2, V5, Snapshot, handshake, line, rec, row, write_text
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sgaudit import sources

SERVER, CLIENT = "10.0.0.5", "198.51.100.7"
GOOD = handshake("eni-a", CLIENT, SERVER, 40000, 80)
PROBE = rec("eni-a", "198.51.100.8", SERVER, 40001, 80, flags=2, direction="ingress")


def web_snapshot(tmp_path: Path) -> Path:
    snap = Snapshot().group("sg-web", "web")
    snap.rule("sgr-http", "sg-web", "tcp", 80, cidr="0.0.0.0/0")
    snap.interface("eni-a", SERVER, groups=["sg-web"])
    return snap.write(tmp_path / "inv")


def quality(result: sgaudit.Analysis) -> dict[str, int]:
    q = result.quality.set_index("bucket")["records"].to_dict()
    assert sum(v for k, v in q.items() if k != "total") == q["total"], "buckets must add up to the total"
    return q


def listed(result: sgaudit.Analysis, path: Path) -> list[list]:
    """The malformed records listed for one file: [line, value], by line."""
    p = result.problems
    rows = p[(p["resource"] == str(path)) & p["kind"].isin(["malformed_line", "malformed_record"])]
    return sorted([int(n), v] for n, v in zip(rows["line"], rows["value"], strict=True))


def with_value(field: str, value: str, r: dict = PROBE) -> str:
    """A record as a V5 line, with one field replaced by ``value``."""
    values = line(r, V5).split()
    values[V5.index(field)] = value
    return " ".join(values)


def export(messages: list[str], **dump) -> str:
    """What ``aws logs filter-log-events`` prints for these messages."""
    events = [{"logStreamName": "eni-a-all", "timestamp": T0 * 1000, "message": m, "ingestionTime": T0 * 1000,
               "eventId": str(i)} for i, m in enumerate(messages)]
    return json.dumps({"events": events, "searchedLogStreams": []}, **dump)


def good_export(**dump) -> str:
    return export([line(r, V5) for r in GOOD], **dump)


# --- A. CloudWatch exports that cannot be read -----------------------------------------------------------


def test_cloudwatch_export_in_latin1_names_the_byte_and_the_encoding(tmp_path):
    inv = web_snapshot(tmp_path)
    log = tmp_path / "events.json"
    log.write_bytes(good_export(ensure_ascii=False).replace("eni-a-all", "café").encode("latin-1"))
    with pytest.raises(sgaudit.FlowLogReadError) as exc:
        sgaudit.analyze(log, inv, log_format=" ".join(V5))
    msg = str(exc.value)
    assert str(log) in msg and "0xe9" in msg and "not UTF-8" in msg and "iconv" in msg


def test_cut_gzipped_cloudwatch_export_says_it_ends_early(tmp_path):
    inv = web_snapshot(tmp_path)
    log = tmp_path / "events.json.gz"
    data = gzip.compress(export([line(PROBE, V5)] * 200).encode())
    log.write_bytes(data[: len(data) // 2])
    with pytest.raises(sgaudit.FlowLogReadError, match="the gzip data ends early") as exc:
        sgaudit.analyze(log, inv, log_format=" ".join(V5))
    assert str(log) in str(exc.value) and "Download it again" in str(exc.value)


@pytest.mark.parametrize("cut", [-30, -3])
def test_cut_pretty_printed_export_says_where_it_breaks_off(tmp_path, cut):
    inv = web_snapshot(tmp_path)
    log = tmp_path / "events.json"
    text = good_export(indent=4)
    log.write_text(text[:cut])  # -30: inside the last event's fields, -3: between the closing brackets
    with pytest.raises(sgaudit.FlowLogReadError) as exc:
        sgaudit.analyze(log, inv, log_format=" ".join(V5))
    msg = str(exc.value)
    last = text[:cut].rstrip().splitlines()
    assert f"{log}: the JSON document breaks off at line {len(last)}, column {len(last[-1])}" in msg
    assert "truncated" in msg and "filter-log-events" in msg
    assert "line 1: not JSON" not in msg


# --- B. Folders and files without permission ------------------------------------------------------------


@pytest.fixture
def deny(monkeypatch):
    """Make a file or folder unreadable: chmod 000, and, for root (who reads anyway), fail as the OS would."""
    denied: list[Path] = []

    def deny_(path: Path) -> Path:
        error = PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        if os.geteuid() == 0 and path.is_dir():
            scandir = os.scandir

            def fake_scandir(p="."):
                if not isinstance(p, int) and Path(p) == path:  # shutil.rmtree scans by descriptor
                    raise error
                return scandir(p)

            monkeypatch.setattr(os, "scandir", fake_scandir)
        elif os.geteuid() == 0:
            def fake_open(p, *args, **kwargs):
                if Path(p) == path:
                    raise error
                return open(p, *args, **kwargs)

            monkeypatch.setattr(sources, "open", fake_open, raising=False)
        path.chmod(0)
        denied.append(path)
        return path

    yield deny_
    for path in denied:
        path.chmod(0o755)  # so that the temporary folder can be removed


def test_unreadable_subfolder_is_an_error_naming_it(tmp_path, deny):
    inv = web_snapshot(tmp_path)
    write_text(tmp_path / "logs" / "a.log.gz", [" ".join(V5)] + [line(r, V5) for r in GOOD])
    write_text(tmp_path / "logs" / "sub" / "b.log.gz", [" ".join(V5), line(PROBE, V5)])
    sub = deny(tmp_path / "logs" / "sub")
    with pytest.raises(sgaudit.FlowLogReadError, match="cannot list the folder") as exc:
        sgaudit.analyze(tmp_path / "logs", inv)
    assert str(exc.value).startswith(f"{sub}: ") and "Permission denied" in str(exc.value)


def test_unreadable_file_is_an_error_naming_it(tmp_path, deny):
    inv = web_snapshot(tmp_path)
    write_text(tmp_path / "logs" / "a.log.gz", [" ".join(V5)] + [line(r, V5) for r in GOOD])
    b = deny(write_text(tmp_path / "logs" / "b.log.gz", [" ".join(V5), line(PROBE, V5)]))
    with pytest.raises(sgaudit.FlowLogReadError, match="cannot be opened") as exc:
        sgaudit.analyze(tmp_path / "logs", inv)
    assert str(exc.value).startswith(f"{b}: ") and "Permission denied" in str(exc.value)


# --- C. CloudWatch events: one event, one record, one line ----------------------------------------------


@pytest.mark.parametrize("message", ["", "  \t "], ids=["empty", "whitespace"])
def test_empty_cloudwatch_message_is_one_malformed_record(tmp_path, message):
    inv = web_snapshot(tmp_path)
    log = tmp_path / "events.json"
    log.write_text(export([line(GOOD[0], V5), message, line(GOOD[1], V5), "not a record"]))
    result = sgaudit.analyze(log, inv, log_format=" ".join(V5))
    q = quality(result)
    assert (q["total"], q["malformed"], q["conversation"]) == (4, 2, 2)
    assert listed(result, log) == [[2, sources.EMPTY_MESSAGE], [4, "not a record"]]


def test_line_break_in_a_cloudwatch_message_keeps_one_record_per_event(tmp_path):
    inv = web_snapshot(tmp_path)
    log = tmp_path / "events.json"
    log.write_text(export([line(GOOD[0], V5), "garbage\nmore garbage\r\n", line(GOOD[1], V5), "bad event"]))
    result = sgaudit.analyze(log, inv, log_format=" ".join(V5))
    q = quality(result)
    assert (q["total"], q["malformed"], q["conversation"]) == (4, 2, 2)
    assert listed(result, log) == [[2, "garbage more garbage"], [4, "bad event"]]
    assert row(result, "sgr-http")["evidence"] == "established"


# --- D, E, F. Every malformed record listed, once -------------------------------------------------------


def test_line_with_a_tab_or_no_break_space_inside_a_value_is_listed(tmp_path):
    inv = web_snapshot(tmp_path)
    tab, nbsp = with_value("action", "ACCEPT\tX"), with_value("action", "ACCEPT\u00a0")
    log = write_text(tmp_path / "flow.log.gz", [" ".join(V5), line(GOOD[0], V5), tab, nbsp, line(GOOD[1], V5)])
    result = sgaudit.analyze(log, inv)
    assert quality(result)["malformed"] == 2
    assert listed(result, log) == [[3, tab], [4, nbsp]]


def test_parquet_rows_that_fail_typing_are_listed_with_their_row_number(tmp_path):
    inv = web_snapshot(tmp_path)
    recs = [GOOD[0], PROBE, GOOD[1], PROBE]
    cols = {n.replace("-", "_"): pa.array([None if r[n] is None else str(r[n]) for r in recs]) for n in V5}
    cols["srcport"] = pa.array(["40000", "abc", "80", "99999"])
    log = tmp_path / "flow.parquet"
    pq.write_table(pa.table(cols), log)
    result = sgaudit.analyze(log, inv)
    q = quality(result)
    assert (q["total"], q["malformed"], q["conversation"]) == (4, 2, 2)
    assert listed(result, log) == [[2, with_value("srcport", "abc")], [4, with_value("srcport", "99999")]]
    assert not (result.problems["kind"] == "listing_truncated").any()


def test_line_that_fails_typing_is_listed_once_beside_another_malformed_record(tmp_path):
    inv = web_snapshot(tmp_path)
    untyped, senseless = with_value("srcport", "abc"), with_value("action", "MAYBE", GOOD[1])
    log = write_text(tmp_path / "flow.log.gz", [" ".join(V5), untyped, senseless, line(GOOD[0], V5)])
    result = sgaudit.analyze(log, inv)
    assert quality(result)["malformed"] == 2
    assert listed(result, log) == [[2, untyped], [3, senseless]]


def test_records_whose_peer_is_not_an_address_are_listed_with_file_line_and_text(tmp_path):
    # Addresses are checked after the reduction, which keeps no file or line for a sound record; the
    # problems table still names both, in every format the record can come in.
    inv = web_snapshot(tmp_path)
    ingress = with_value("srcaddr", "999.1.2.3")
    egress = with_value("dstaddr", "nope", rec("eni-a", SERVER, "198.51.100.9", 80, 40002, flags=18,
                                                direction="egress"))
    v5 = write_text(tmp_path / "v5.log.gz", [" ".join(V5), line(GOOD[0], V5), ingress, line(GOOD[1], V5), egress])
    v2_bad = line(rec("eni-a", "10.0.0.256", SERVER, 40003, 80), V2)
    v2 = write_text(tmp_path / "v2.log", [" ".join(V2), v2_bad], compress=False)
    events = tmp_path / "events.json"
    events.write_text(export([line(GOOD[0], V5), with_value("srcaddr", "fe80::1::2")]))
    parquet = tmp_path / "flow.parquet"
    bad_row = dict(PROBE, srcaddr="1.2.3")
    pq.write_table(pa.table({n.replace("-", "_"): pa.array([None if r[n] is None else str(r[n])
                                                            for r in (GOOD[0], bad_row)]) for n in V5}), parquet)

    result = sgaudit.analyze([v5, v2, parquet], inv)
    assert quality(result)["malformed"] == 4
    assert listed(result, v5) == [[3, ingress], [5, egress]]
    assert listed(result, v2) == [[2, v2_bad]]
    assert listed(result, parquet)[0][0] == 2
    p = result.problems
    details = p.loc[p["kind"] == "malformed_record", "detail"].tolist()
    assert sorted(details) == sorted(f"the peer address {a!r} is neither IPv4 nor IPv6"
                                     for a in ("999.1.2.3", "nope", "10.0.0.256", "1.2.3"))

    exported = sgaudit.analyze(events, inv, log_format=" ".join(V5))
    assert listed(exported, events) == [[2, with_value("srcaddr", "fe80::1::2")]]


def test_records_whose_peer_is_not_an_address_are_capped_and_the_gap_is_said(tmp_path, monkeypatch):
    monkeypatch.setattr(sgaudit.analysis, "_LISTED_LINES", 1)
    inv = web_snapshot(tmp_path)
    bad = [with_value("srcaddr", a) for a in ("1.2.3.999", "1.2.3.998")]
    log = write_text(tmp_path / "flow.log.gz", [" ".join(V5), *bad])
    result = sgaudit.analyze(log, inv)
    rows = result.problems[result.problems["resource"] == str(log)]
    assert rows["kind"].tolist() == ["malformed_record", "listing_truncated"]
    assert rows["line"].iloc[0] == 2
    assert "1 of the 2 records of this file whose peer is not an address" in rows["detail"].iloc[1]


def test_records_whose_peer_is_not_an_address_are_listed_by_interface_when_not_found_again(tmp_path, monkeypatch):
    # Records reduced elsewhere (Athena) cannot be found in local files: they are still listed, by
    # interface and peer, never left out.
    monkeypatch.setattr(sgaudit.analysis, "_RECORDS_OF_BAD_PEERS",
                        sgaudit.analysis._RECORDS_OF_BAD_PEERS + " AND FALSE")
    inv = web_snapshot(tmp_path)
    log = write_text(tmp_path / "flow.log.gz", [" ".join(V5), with_value("srcaddr", "999.1.2.3")])
    result = sgaudit.analyze(log, inv)
    p = result.problems[result.problems["kind"] == "malformed_record"]
    assert p[["resource", "value", "detail"]].values.tolist() == [
        ["eni-a", "999.1.2.3", "1 record(s) whose peer address is neither IPv4 nor IPv6"]]


# --- G. Line endings ------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad,where", [
    pytest.param(lambda ls: ls[:3] + [ls[3] + "\r"] + ls[4:], "line 4: the line ends with CR LF", id="one-crlf"),
    pytest.param(lambda ls: ls[:2] + ["\r"] + ls[2:], "line 3: the line ends with CR LF", id="blank-cr"),
    pytest.param(lambda ls: [s + "\r" for s in ls[:2]] + ls[2:], "line 3: the line ends with a bare LF",
                 id="lf-in-crlf"),
])
@pytest.mark.parametrize("compress", [True, False], ids=["gzip", "plain"])
def test_mixed_line_endings_name_the_line_and_the_fix(tmp_path, bad, where, compress):
    inv = web_snapshot(tmp_path)
    lines = [" ".join(V5), line(GOOD[0], V5), line(PROBE, V5), line(GOOD[1], V5), line(PROBE, V5)]
    log = write_text(tmp_path / "flow.log", bad(lines), compress=compress)
    with pytest.raises(sgaudit.FlowLogReadError) as exc:
        sgaudit.analyze(log, inv)
    msg = str(exc.value)
    assert msg.startswith(f"{log}, {where}") and "tr -d '\\r'" in msg


def test_file_of_crlf_lines_is_read(tmp_path):
    inv = web_snapshot(tmp_path)
    lines = [" ".join(V5), line(GOOD[0], V5), with_value("action", "MAYBE"), line(GOOD[1], V5)]
    log = write_text(tmp_path / "flow.log", [s + "\r" for s in lines])
    result = sgaudit.analyze(log, inv)
    assert (quality(result)["malformed"], row(result, "sgr-http")["evidence"]) == (1, "established")
    assert listed(result, log) == [[3, with_value("action", "MAYBE")]]


# --- G2. Files joined into one ----------------------------------------------------------------------------


def test_files_of_one_format_joined_into_one_read_as_the_files_apart(tmp_path):
    # `cat a.log.gz b.log.gz > c.log.gz` is a valid gzip file of two members, read as one stream: the
    # second file's header line is no record, and is passed over and named.
    inv = web_snapshot(tmp_path)
    first = write_text(tmp_path / "apart" / "a.log.gz", [" ".join(V5), line(GOOD[0], V5)])
    second = write_text(tmp_path / "apart" / "b.log.gz", [" ".join(V5), line(GOOD[1], V5), line(PROBE, V5)])
    joined = tmp_path / "joined.log.gz"
    joined.write_bytes(first.read_bytes() + second.read_bytes())

    apart, together = sgaudit.analyze(tmp_path / "apart", inv), sgaudit.analyze(joined, inv)
    pd.testing.assert_frame_equal(together.usage, apart.usage)
    assert quality(together) == quality(apart) and quality(together)["total"] == 3
    found = together.problems[together.problems["kind"] == "repeated_header"]
    assert found[["resource", "line", "value"]].values.tolist() == [[str(joined), 3, " ".join(V5)]]
    assert listed(together, joined) == []


def test_blank_lines_before_the_header_leave_it_a_header(tmp_path):
    inv = web_snapshot(tmp_path)
    log = write_text(tmp_path / "flow.log", ["", "", " ".join(V5), *(line(r, V5) for r in GOOD)], compress=False)
    result = sgaudit.analyze(log, inv)
    assert (quality(result)["total"], quality(result)["malformed"]) == (2, 0)
    assert row(result, "sgr-http")["evidence"] == "established"
    assert result.problems.loc[result.problems["kind"] == "repeated_header", "line"].tolist() == [3]


@pytest.mark.parametrize("first_has_header", [True, False], ids=["header", "no-header"])
def test_files_of_two_formats_joined_into_one_name_the_line_and_the_fix(tmp_path, first_has_header):
    inv = web_snapshot(tmp_path)
    first = [" ".join(V5)] if first_has_header else []
    fmt = V5 if first_has_header else V2
    lines = first + [line(GOOD[0], fmt), " ".join(V2), line(GOOD[1], V2)]
    log = write_text(tmp_path / "joined.log.gz", lines)
    with pytest.raises(sgaudit.FlowLogFormatError) as exc:
        sgaudit.analyze(log, inv)
    where = len(first) + 2
    msg = str(exc.value)
    assert msg.startswith(f"{log}, line {where}: a header line of another format")
    assert f"split this one before line {where}" in msg and "Pass the original files" in msg


# --- H. Byte-order marks and files that are no flow log -------------------------------------------------


@pytest.mark.parametrize("kind", ["header", "no-header", "cloudwatch-json"])
def test_utf8_byte_order_mark_is_passed_over(tmp_path, kind):
    inv = web_snapshot(tmp_path)
    log = tmp_path / "flow.log"
    if kind == "cloudwatch-json":
        text = good_export(indent=2)
    else:
        fmt = V5 if kind == "header" else V2
        text = "".join(s + "\n" for s in ([" ".join(fmt)] if kind == "header" else [])
                       + [line(r, fmt) for r in GOOD] + [line(PROBE, fmt).replace("ACCEPT", "MAYBE")])
    log.write_bytes(b"\xef\xbb\xbf" + text.encode())
    result = sgaudit.analyze(log, inv, log_format=" ".join(V5) if kind == "cloudwatch-json" else None)
    assert row(result, "sgr-http")["connections"] == 1
    q = quality(result)
    if kind != "cloudwatch-json":
        assert q["malformed"] == 1
        assert listed(result, log) == [[3 + (kind == "header"), line(PROBE, V2 if kind == "no-header" else V5)
                                        .replace("ACCEPT", "MAYBE")]]


def _zip(text: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("flow.log", text)
    return buf.getvalue()


@pytest.mark.parametrize("encode,what", [
    pytest.param(lambda t: t.decode().encode("utf-16"), "is UTF-16 text", id="utf-16"),
    pytest.param(lambda t: t.decode().encode("utf-16-le"), "is UTF-16 text", id="utf-16-no-bom"),
    pytest.param(lambda t: gzip.compress(t.decode().encode("utf-16")), "inside the gzip data is UTF-16 text",
                 id="gzip-utf-16"),
    pytest.param(_zip, "is a zip archive", id="zip"),
    pytest.param(bz2.compress, "is bzip2-compressed", id="bzip2"),
])
def test_files_that_are_no_flow_log_are_named_by_their_first_bytes(tmp_path, encode, what):
    inv = web_snapshot(tmp_path)
    log = tmp_path / "flow.log"
    log.write_bytes(encode("".join(s + "\n" for s in [" ".join(V5)] + [line(r, V5) for r in GOOD]).encode()))
    with pytest.raises(sgaudit.FlowLogReadError) as exc:
        sgaudit.analyze(log, inv)
    msg = str(exc.value)
    assert msg.startswith(f"{log}: the file {what}, not a flow log") and "--format" not in msg


#: Binary content: control bytes but no NUL, bytes that are not UTF-8 but no control byte, pseudo-random
#: bytes, an image (with NULs, but not UTF-16).
_CONTROL_BYTES = bytes(range(1, 128)) * 40
_NOT_UTF8 = bytes(range(0x80, 0x100)) * 40
_RANDOM = bytes((i * 7919 + 13) % 251 + (i % 5) for i in range(5000))
_PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x01\x00\x00\x00\x01\x00\x08\x06\x00\x00\x00" + _RANDOM


@pytest.mark.parametrize("data,content,inside", [
    pytest.param(_CONTROL_BYTES, _CONTROL_BYTES, "", id="control-bytes"),
    pytest.param(_NOT_UTF8, _NOT_UTF8, "", id="not-utf-8"),
    pytest.param(_RANDOM, _RANDOM, "", id="random"),
    pytest.param(_PNG, _PNG, "", id="png"),
    pytest.param(gzip.compress(_CONTROL_BYTES), _CONTROL_BYTES, " inside the gzip data", id="gzip-control-bytes"),
    pytest.param(gzip.compress(_NOT_UTF8), _NOT_UTF8, " inside the gzip data", id="gzip-not-utf-8"),
])
def test_binary_file_is_named_by_its_first_bytes_in_hex(tmp_path, data, content, inside):
    # Read as text, such a file was a record with the wrong number of fields: the advice to pass --format
    # sent the user the wrong way, and the quoted line put raw binary on the terminal.
    inv = web_snapshot(tmp_path)
    log = tmp_path / "flow.log.gz"
    log.write_bytes(data)
    with pytest.raises(sgaudit.FlowLogReadError) as exc:
        sgaudit.analyze(log, inv)
    msg = str(exc.value)
    shown = " ".join(f"0x{b:02x}" for b in content[:8])
    assert msg == (f"{log}: the file{inside} is binary data, not a flow log: its first bytes are {shown} …; "
                   "leave it out of --flow-logs.")
    assert msg.isprintable() and msg.replace("…", "").isascii()


# --- I. Files without records ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["header-only", "header-and-blank-lines", "no-events", "no-events-gzip"])
def test_header_only_file_and_export_without_events_are_listed_as_empty(tmp_path, kind):
    inv = web_snapshot(tmp_path)
    log = tmp_path / "logs" / "empty.log"
    if kind.startswith("header"):
        write_text(log, [" ".join(V5)] + (["", "  "] if "blank" in kind else []), compress=False)
    else:
        data = json.dumps({"events": [], "searchedLogStreams": [{"logStreamName": "eni-a-all"}]}).encode()
        log.parent.mkdir()
        log.write_bytes(gzip.compress(data) if "gzip" in kind else data)
    write_text(tmp_path / "logs" / "good.log.gz", [" ".join(V5)] + [line(r, V5) for r in GOOD])
    result = sgaudit.analyze(tmp_path / "logs", inv)
    assert quality(result)["total"] == 2
    empty = result.problems[result.problems["kind"] == "empty_file"]
    assert empty["resource"].tolist() == [str(log)]


# --- J. gzip damage, told apart -------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["flow.log.gz", "events.json.gz"])
def test_gzip_with_trailing_bytes_says_so(tmp_path, name):
    inv = web_snapshot(tmp_path)
    log = tmp_path / name
    text = good_export() if name.startswith("events") else "".join(
        s + "\n" for s in [" ".join(V5)] + [line(r, V5) for r in GOOD])
    data = gzip.compress(text.encode())
    log.write_bytes(data + b"some junk appended")
    with pytest.raises(sgaudit.FlowLogReadError) as exc:
        sgaudit.analyze(log, inv, log_format=" ".join(V5))
    msg = str(exc.value)
    assert msg.startswith(f"{log}: 18 trailing bytes after the gzip data (which ends at byte {len(data)}")
    assert "ends early" not in msg and "Download it again" in msg


@pytest.mark.parametrize(("damage", "engine"), [(b"4x001", "duckdb"), (b"40002", "duckdb"), (b"40002", "spark")],
                         ids=["garbled", "still-well-formed", "spark-reads-with-duckdb-too"])
def test_gzip_damaged_inside_its_data_is_an_error_not_changed_records(tmp_path, damage, engine):
    # DuckDB does not check gzip's checksum. Stored (level 0) deflate blocks hold the text as it is, so
    # changing bytes of it changes one record while the data still decompresses, as damage in transfer or
    # on disk that does not stop decompression does: into a malformed record, or into another sound one
    # (another peer port here; in a fuzz run, another interface or peer address).
    # Half a megabyte of records before the damaged one: reading the start of the file (to find its format)
    # does not reach the end, where a checksum is checked, so only the check of the whole file can see it.
    inv = web_snapshot(tmp_path)
    before = [rec("eni-a", "198.51.100.9", SERVER, 1024 + i, 80, flags=2, direction="ingress") for i in range(5000)]
    text = "".join(s + "\n" for s in [" ".join(V5)] + [line(r, V5) for r in before + GOOD + [PROBE]]).encode()
    assert len(text) > 500_000
    packer = zlib.compressobj(level=0, wbits=31)
    data = packer.compress(text) + packer.flush()
    at = data.rindex(b"40001")
    log = tmp_path / "flow.log.gz"
    log.write_bytes(data[:at] + damage + data[at + 5:])
    with pytest.raises(sgaudit.FlowLogReadError) as exc:
        # The check comes before any engine starts: Spark is never launched for a damaged file.
        sgaudit.analyze(log, inv, engine=engine)
    msg = str(exc.value)
    assert msg.startswith(f"{log}: the gzip file is damaged: its checksum does not match the text it holds")
    assert "Download it again" in msg
    # The same malformed line in a sound gzip file is a counted, listed record, not an error.
    sound = tmp_path / "sound" / "flow.log.gz"
    sound.parent.mkdir()
    sound.write_bytes(gzip.compress(text.replace(b"40001", b"4x001")))
    result = sgaudit.analyze(sound, inv)
    assert quality(result)["malformed"] == 1 and quality(result)["conversation"] == 5002


def test_gzip_checksums_are_checked_once_per_analysis_not_again_when_reanalysed(tmp_path, monkeypatch):
    inv = web_snapshot(tmp_path)
    log = write_text(tmp_path / "flow.log.gz", [" ".join(V5)] + [line(r, V5) for r in GOOD])
    checked = []
    real = sources.verify_gzip
    monkeypatch.setattr(sources, "verify_gzip", lambda paths, threads: (checked.append(list(paths)),
                                                                        real(paths, threads)))
    with sgaudit.analyze(log, inv) as result:
        assert checked == [[log]]
        result.reanalyze(inv).close()  # the plan's proof reads the same bytes again: no second check
    assert checked == [[log]]


_SAMPLE_LOG = sorted((Path(__file__).resolve().parents[1] / "sample_logs" / "flow-logs").rglob("*.log.gz"))[5]
_SAMPLE_INV = Path(__file__).resolve().parents[1] / "sample_logs" / "inventory"


@functools.cache
def _sample_usage() -> pd.DataFrame:
    with sgaudit.analyze(_SAMPLE_LOG, _SAMPLE_INV) as result:
        return result.usage


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(where=st.floats(min_value=0, max_value=1, exclude_max=True), bit=st.integers(min_value=0, max_value=7))
def test_a_bit_flipped_anywhere_in_a_gzip_file_is_an_error_or_changes_nothing(tmp_path, where, bit):
    # A flip in the header's time or OS byte changes no record; anywhere else the data or its checksum no
    # longer agree. Never a result computed from records that are not the ones AWS wrote.
    data = bytearray(_SAMPLE_LOG.read_bytes())
    at = int(where * len(data))
    data[at] ^= 1 << bit
    folder = Path(tempfile.mkdtemp(dir=tmp_path))
    log = folder / _SAMPLE_LOG.name
    log.write_bytes(bytes(data))
    try:
        with sgaudit.analyze(log, _SAMPLE_INV) as result:
            usage = result.usage
    except (sgaudit.FlowLogReadError, sgaudit.FlowLogFormatError):
        event("an error")
        return
    event("nothing changed")
    pd.testing.assert_frame_equal(usage, _sample_usage())
