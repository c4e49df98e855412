"""The ``sgaudit`` command, run in-process through `sgaudit.cli.main` (and once as ``python -m sgaudit``)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import sgaudit
from builders import ARTICLE_HEADER, ARTICLE_LINES, T0, Snapshot, handshake, nodata, rec, write_log
from sgaudit.cli import COMPANIONS, main
from sgaudit.output import output_kind, write_table
from sgaudit.usage import USAGE_COLUMNS

SERVER = "10.0.0.5"


def web_snapshot() -> Snapshot:
    snap = Snapshot().group("sg-web", "web")
    snap.rule("sgr-http", "sg-web", "tcp", 80, cidr="0.0.0.0/0")
    snap.rule("sgr-ssh", "sg-web", "tcp", 22, cidr="0.0.0.0/0")
    snap.rule("sgr-ref", "sg-web", "tcp", 5432, ref="sg-gone")  # a group outside the snapshot: a problem
    snap.interface("eni-a", SERVER, groups=["sg-web"])
    return snap


def web_records() -> list[dict]:
    return (handshake("eni-a", "198.51.100.7", SERVER, 40000, 80)                  # sgr-http, established
            + handshake("eni-a", "203.0.113.9", SERVER, 41000, 2222, start=T0 + 60)  # no rule: unexplained
            + [rec("eni-a", "203.0.113.66", SERVER, 42000, 23, flags=2, direction="ingress", action="REJECT",
                   start=T0 + 120),
               nodata("eni-a", T0 + 180)])  # NODATA ends at T0 + 240: 15:08:00Z


@pytest.fixture
def setup(tmp_path):
    inv = web_snapshot().write(tmp_path / "inv")
    log = write_log(tmp_path / "logs" / "flow.log.gz", web_records())
    return tmp_path, inv, log


def usage_args(log, inv, out, *extra) -> list[str]:
    return ["usage", "--flow-logs", str(log), "--inventory", str(inv), "--out", str(out), "--no-progress", *extra]


def read(path: Path) -> pd.DataFrame:
    if path.suffix == ".csv":
        return pd.read_csv(path, dtype=str, keep_default_na=False)
    if path.suffix == ".jsonl":
        return pd.read_json(path, lines=True, dtype=False)
    if path.suffix == ".json":
        return pd.DataFrame(json.loads(path.read_text()))  # one array, as json.load reads it
    return pd.read_parquet(path)


@pytest.mark.parametrize("ext", [".csv", ".jsonl", ".json", ".parquet"])
def test_usage_writes_spec_columns_and_companions(setup, ext, capsys):
    tmp_path, inv, log = setup
    out = tmp_path / "out" / f"usage{ext}"
    assert main(usage_args(log, inv, out)) == 0
    usage = read(out)
    assert list(usage.columns) == USAGE_COLUMNS
    got = usage.set_index("rule_id")
    assert got["status"].to_dict() == {"sgr-http": "used", "sgr-ssh": "unused", "sgr-ref": "unused"}
    assert got.loc["sgr-http", "evidence"] == "established"
    last_seen = got.loc["sgr-http", "last_seen"]
    if ext == ".parquet":
        assert last_seen == pd.Timestamp("2025-02-06T15:04:13Z")
    else:
        assert last_seen == "2025-02-06T15:04:13Z"
    assert str(got.loc["sgr-http", "bytes"]) == "300"

    written = sorted(p.name for p in out.parent.iterdir())
    assert written == sorted([out.name] + [f"usage.{name}{ext}" for name in COMPANIONS])
    tables = {name: read(out.with_name(f"usage.{name}{ext}")) for name in COMPANIONS}
    assert tables["unexplained"]["peer"].tolist() == ["203.0.113.9"]
    assert [str(p) for p in tables["rejected"]["port"]] == ["23"]
    quality = tables["quality"].set_index("bucket")["records"].astype(int)
    assert (quality["conversation"], quality["nodata"], quality["total"]) == (5, 1, 6)
    assert tables["coverage"]["interface_id"].tolist() == ["eni-a"]
    assert tables["problems"]["kind"].tolist() == ["referenced_group_unresolved"]
    assert str(out) in capsys.readouterr().out


@pytest.mark.parametrize("ext", [".jsonl", ".json"])
def test_json_outputs_write_slashes_unescaped(setup, ext):
    # Pandas writes "0.0.0.0\/0": grepping the output for a CIDR found nothing.
    tmp_path, inv, log = setup
    out = tmp_path / "out" / f"usage{ext}"
    assert main(usage_args(log, inv, out)) == 0
    assert '"0.0.0.0/0"' in out.read_text() and "\\/" not in out.read_text()
    assert read(out).set_index("rule_id").loc["sgr-http", "peer"] == "0.0.0.0/0"

    # A backslash in the data before a slash keeps its backslash; the other values load as before.
    df = pd.DataFrame({"peer": ["0.0.0.0/0", "a\\/b", None], "port": [80, None, 22],
                       "seen": pd.to_datetime(["2025-02-06T15:04:13Z", None, "2025-02-06T15:05:00Z"], utc=True)})
    path = write_table(df, tmp_path / f"t{ext}")
    text = path.read_text()
    assert '"0.0.0.0/0"' in text and '"a\\\\/b"' in text  # the data's backslash escaped, the slash not
    rows = ([json.loads(line) for line in text.splitlines()] if ext == ".jsonl" else json.loads(text))
    assert rows == [{"peer": "0.0.0.0/0", "port": 80.0, "seen": "2025-02-06T15:04:13Z"},
                    {"peer": "a\\/b", "port": None, "seen": ""},  # a missing time is empty (iso_utc)
                    {"peer": None, "port": 22.0, "seen": "2025-02-06T15:05:00Z"}]


def test_parquet_columns_keep_their_types_when_a_run_leaves_them_empty(tmp_path):
    # A scheduled job appends its Parquet outputs to a dataset: a column must not turn from text into
    # Arrow's null type because no problem had a line this time, or no traffic was unexplained.
    import pyarrow.parquet as pq

    inv = web_snapshot().write(tmp_path / "inv")
    log = write_log(tmp_path / "flow.log.gz", handshake("eni-a", "198.51.100.7", SERVER, 40000, 80))
    out = tmp_path / "out" / "usage.parquet"
    assert main(usage_args(log, inv, out)) == 0
    problems = pq.read_schema(out.with_name("usage.problems.parquet"))
    assert {n: str(problems.field(n).type) for n in problems.names} == {
        "kind": "string", "resource": "string", "line": "int64", "value": "string", "detail": "string"}
    for name in ("unexplained", "rejected"):
        schema = pq.read_schema(out.with_name(f"usage.{name}.parquet"))
        assert pq.read_table(out.with_name(f"usage.{name}.parquet")).num_rows == 0
        assert not [f.name for f in schema if str(f.type) == "null"], name


def test_summary_shows_window_rules_by_status_and_records_by_bucket(setup, capsys):
    tmp_path, inv, log = setup
    assert main(usage_args(log, inv, tmp_path / "usage.csv")) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "window      2025-02-06T15:04:00Z .. 2025-02-06T15:08:00Z"
    # One of the unused rules references a group that is not in the snapshot: the summary counts it apart.
    assert ("rules       3: 1 used, 0 attempted, 2 unused (of them 1 of unknown use: peers not in the snapshot), "
            "0 unobserved, 0 unattached") in out
    records = out[out.index("records") + 1: next(i for i, s in enumerate(out) if s.startswith("unexplained"))]
    by_meaning = {s.split(None, 1)[1]: int(s.split(None, 1)[0].replace(",", "")) for s in records}
    assert by_meaning == {
        "in a conversation (matched against rules)": 5,
        "NODATA (no traffic in the interval: coverage only)": 1,
        "total read (the buckets above add up to it)": 6,
    }
    assert "unexplained 1 accepted conversation(s) no rule explains" in out
    assert any(s.startswith("problems") and "1 referenced_group_unresolved" in s for s in out)


def _truncate(path: Path) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def test_summary_warns_when_no_interface_of_the_snapshot_is_in_the_logs(setup, capsys):
    tmp_path, inv, log = setup
    assert main(usage_args(log, inv, tmp_path / "ok.csv")) == 0
    assert "warning" not in capsys.readouterr().out
    other = write_log(tmp_path / "other" / "flow.log.gz", handshake("eni-0other", "192.0.2.7", "10.9.0.5", 40000, 443))
    assert main(usage_args(other, inv, tmp_path / "other.csv")) == 0
    assert "no interface of the snapshot is in these logs: is the snapshot of another account or region" in (
        capsys.readouterr().out)


@pytest.mark.parametrize("case", [
    "missing-inventory-file", "missing-inventory-folder", "truncated-gzip", "xlsx-output", "no-such-log",
    "unknown-header-field", "bad-start", "out-is-a-folder", "threads-negative", "memory-limit-not-a-size",
    "memory-limit-zero",
])
def test_errors_exit_2_with_a_message_and_no_traceback(setup, capsys, case):
    tmp_path, inv, log = setup
    out = tmp_path / "out" / "usage.csv"
    extra: list[str] = []
    if case == "missing-inventory-file":
        (inv / "network-interfaces.json").unlink()
        name = "network-interfaces.json"
    elif case == "missing-inventory-folder":
        inv = tmp_path / "no-inventory"
        name = str(inv)
    elif case == "truncated-gzip":
        name = str(_truncate(log))
    elif case == "xlsx-output":
        out = tmp_path / "out" / "usage.xlsx"
        name = "usage.xlsx"
    elif case == "no-such-log":
        log = tmp_path / "logs" / "missing.log.gz"
        name = str(log)
    elif case == "unknown-header-field":
        log = write_log(tmp_path / "logs" / "flow.log.gz", web_records(),
                        "version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes "
                        "start end action log-status tcp-flags flow-dir".split())
        name = str(log)
    elif case == "out-is-a-folder":
        out = tmp_path / "out" / "usage.csv"
        out.mkdir(parents=True)
        name = "is a folder"
    elif case == "threads-negative":
        extra, name = ["--threads", "-3"], "--threads -3"
    elif case == "memory-limit-not-a-size":
        extra, name = ["--memory-limit", "abc"], "--memory-limit 'abc'"
    elif case == "memory-limit-zero":
        extra, name = ["--memory-limit", "0"], "--memory-limit '0'"
    else:
        extra = ["--start", "last tuesday"]
        name = "--start"
    assert main(usage_args(log, inv, out, *extra)) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("sgaudit: error: ")
    assert name in captured.err
    assert "Traceback" not in captured.err + captured.out
    if case != "out-is-a-folder":
        assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    else:
        assert not any(out.iterdir())


@pytest.mark.parametrize("start,end", [
    pytest.param("2025-02-06T15:00:00Z", "2025-02-06T15:30:00Z", id="iso"),
    pytest.param(str(T0 - 240), str(T0 + 1560), id="unix-seconds"),
])
def test_start_end_filter(tmp_path, capsys, start, end):
    inv = web_snapshot().write(tmp_path / "inv")
    recs = (handshake("eni-a", "198.51.100.7", SERVER, 40000, 80)
            + handshake("eni-a", "198.51.100.8", SERVER, 40001, 22, start=T0 + 3600))
    log = write_log(tmp_path / "flow.log.gz", recs)
    out = tmp_path / "usage.csv"
    assert main(usage_args(log, inv, out, "--start", start, "--end", end)) == 0
    usage = read(out).set_index("rule_id")
    assert usage["status"].to_dict() == {"sgr-http": "used", "sgr-ssh": "unused", "sgr-ref": "unused"}
    quality = read(out.with_name("usage.quality.csv")).set_index("bucket")["records"].astype(int)
    assert (quality["outside_window"], quality["conversation"], quality["total"]) == (2, 2, 4)
    assert capsys.readouterr().out.splitlines()[0] == "window      2025-02-06T15:00:00Z .. 2025-02-06T15:30:00Z"


def test_article_records(tmp_path, capsys):
    snap = Snapshot().group("sg-0app", "app")
    snap.rule("sgr-4000", "sg-0app", "tcp", 4000, cidr="100.64.0.0/10")
    snap.interface("eni-027ce9d7c95605b1d", "10.10.0.73", groups=["sg-0app"])
    inv = snap.write(tmp_path / "inv")
    log = tmp_path / "article.log"
    log.write_text(ARTICLE_HEADER + "\n" + "\n".join(ARTICLE_LINES) + "\n")
    out = tmp_path / "usage.csv"
    assert main(usage_args(log, inv, out)) == 0
    r = read(out).set_index("rule_id").loc["sgr-4000"]
    assert (r["status"], r["evidence"], r["last_seen"]) == ("used", "established", "2025-02-06T15:04:13Z")
    assert (r["first_seen"], r["connections"], r["peers"], r["ports"]) == ("2025-02-06T15:04:00Z", "1", "1", "4000")
    assert (r["bytes"], r["packets"]) == (str(11814 + 9025), str(22 + 17))
    assert "1 used" in capsys.readouterr().out


def test_missing_required_option_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["usage", "--inventory", "inv", "--out", "u.csv"])
    assert exc.value.code == 2
    assert "--flow-logs" in capsys.readouterr().err


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"sgaudit {sgaudit.__version__}"


def test_python_dash_m_help():
    done = subprocess.run([sys.executable, "-m", "sgaudit", "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: sgaudit")
    assert "usage" in done.stdout.split("\n", 1)[1]
    assert done.stderr == ""


def test_out_of_memory_is_a_clear_error(tmp_path, capsys):
    # A memory limit far too small for DuckDB to work in: the command explains, it does not crash.
    inv = Snapshot().group("sg-0app", "app").rule("sgr-4000", "sg-0app", "tcp", 4000, cidr="100.64.0.0/10")
    inv.interface("eni-027ce9d7c95605b1d", "10.10.0.73", groups=["sg-0app"])
    log = tmp_path / "a.log"
    log.write_text(ARTICLE_HEADER + "\n" + "\n".join(ARTICLE_LINES) + "\n")
    argv = ["usage", "--flow-logs", str(log), "--inventory", str(inv.write(tmp_path / "inv")),
            "--out", str(tmp_path / "o" / "u.csv"), "--memory-limit", "1KB", "--no-progress"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "sgaudit: error:" in err and "--memory-limit" in err and "Traceback" not in err


SAMPLE = Path(__file__).resolve().parents[1] / "sample_logs"
SAMPLE_ARGS = ["--flow-logs", str(SAMPLE / "flow-logs"), str(SAMPLE / "cloudwatch" / "app-eni.log"),
               "--inventory", str(SAMPLE / "inventory"), "--no-progress"]


def test_empty_tables_are_valid_files_of_their_format(tmp_path):
    empty = pd.DataFrame({"rule_id": pd.Series([], dtype=object)})
    assert write_table(empty, tmp_path / "e.jsonl").read_text() == ""  # no rows, no lines
    assert json.loads(write_table(empty, tmp_path / "e.json").read_text()) == []
    with pytest.raises(sgaudit.SgauditError, match="unknown output extension '.txt'; use one of .csv, .jsonl, "
                                                   ".ndjson, .json, .parquet, .md"):
        output_kind(tmp_path / "f.txt", also=(".md",))
    (tmp_path / "reports").mkdir()  # --out naming a folder: that is the mistake to name, not its extension
    with pytest.raises(sgaudit.SgauditError, match="reports: is a folder; give the name of a file"):
        output_kind(tmp_path / "reports")


@pytest.mark.parametrize("ext", [".md", ".csv", ".jsonl", ".json"])
def test_findings_command_writes_findings(tmp_path, capsys, ext):
    out = tmp_path / f"findings{ext}"
    assert main(["findings", *SAMPLE_ARGS, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "findings    " in printed and "admin_port_open_to_world" in printed
    text = out.read_text()
    assert "sgr-0ebcdc0614747177d" in text and "EC2.14" in text
    if ext in (".csv", ".json"):
        df = pd.read_csv(out) if ext == ".csv" else pd.DataFrame(json.loads(text))
        assert {"severity", "kind", "sentence", "fix", "control"} <= set(df.columns)


def test_plan_command_writes_plan_commands_terraform_and_an_empty_recheck(tmp_path, capsys):
    out = tmp_path / "plan.md"
    assert main(["plan", *SAMPLE_ARGS, "--out", str(out), "--rule-budget", "10"]) == 0
    printed = capsys.readouterr().out
    assert "re-check" in printed and ": 0 lost" in printed and "not proved" in printed
    cli_text = (tmp_path / "plan.aws.sh").read_text()
    first_authorize = cli_text.index("aws ec2 authorize-security-group-")
    assert first_authorize < cli_text.index("aws ec2 revoke-security-group-")
    assert "resource \"aws_vpc_security_group_ingress_rule\"" in (tmp_path / "plan.tf").read_text()
    assert pd.read_csv(tmp_path / "plan.lost.csv").empty
    proposed = pd.read_csv(tmp_path / "plan.proposed.csv")
    assert proposed.groupby(["group_id", "is_egress"]).size().max() <= 10


def test_plan_tables_follow_the_out_format(tmp_path):
    out = tmp_path / "plan.jsonl"
    assert main(["plan", *SAMPLE_ARGS, "--out", str(out)]) == 0
    written = sorted(p.name for p in tmp_path.iterdir())
    assert written == ["plan.aws.sh", "plan.jsonl", "plan.lost.jsonl", "plan.proposed.jsonl", "plan.tf"]
    assert not pd.read_json(tmp_path / "plan.proposed.jsonl", lines=True).empty


@pytest.mark.parametrize(("argv", "message"), [
    (["findings", "--out", "f.xlsx"], "unknown output extension '.xlsx'"),
    (["plan", "--out", "p.md", "--rule-budget", "0"], "--rule-budget 0: must be at least 1"),
])
def test_findings_and_plan_errors(tmp_path, capsys, argv, message):
    argv = [argv[0], *SAMPLE_ARGS, *[str(tmp_path / a) if a.endswith((".xlsx", ".md")) else a for a in argv[1:]]]
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_unexplained_rows_come_in_the_order_of_their_key_in_every_run(tmp_path):
    # Scheduled outputs are diffed: the rows must not follow the order DuckDB's threads wrote them in.
    inv = web_snapshot().write(tmp_path / "inv")
    recs = [r for i in range(300) for r in handshake("eni-a", f"203.0.113.{i % 250 + 1}", SERVER, 60000 - i,
                                                      2000 + i % 7, start=T0 + i % 5 * 60)]
    log = write_log(tmp_path / "flow.log.gz", recs)
    runs = []
    for n in (1, 2):
        out = tmp_path / f"run{n}" / "usage.csv"
        assert main(usage_args(log, inv, out, "--threads", "2")) == 0
        runs.append(pd.read_csv(out.with_name("usage.unexplained.csv"), dtype=str, keep_default_na=False))
    first, second = (df.drop(columns="conversation_id") for df in runs)
    pd.testing.assert_frame_equal(first, second)
    keys = [(r.interface_id, int(r.protocol), int(r.local_port), r.peer, int(r.peer_port))
            for r in first.itertuples(index=False)]
    assert len(keys) == 300 and keys == sorted(keys)  # the peer as text, as DuckDB sorts it


class _Terminal:
    """A stderr that says it is a terminal, as the bar is drawn on one only."""

    def __init__(self) -> None:
        self.text = ""

    def isatty(self) -> bool:
        return True

    def write(self, s: str) -> int:
        self.text += s
        return len(s)

    def flush(self) -> None:
        pass


def test_files_bar_says_what_runs_once_every_file_is_read(monkeypatch):
    from sgaudit.cli import _FilesBar

    term = _Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    bar = _FilesBar()
    bar.update(3, 10)
    assert "reading flow logs" in term.text and "3/10" in term.text and "matching" not in term.text
    bar.update(10, 10)
    last = term.text.rsplit("\r", 1)[-1]
    assert "files read; matching rules" in last and "10/10" in last
    bar.close()


def test_files_bar_says_what_it_does_before_it_knows_how_many_files(monkeypatch):
    # Finding 100,000 files and reading their headers takes seconds before the bar has a total.
    from sgaudit.cli import _FilesBar

    term = _Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    bar = _FilesBar()
    assert term.text == _FilesBar.FINDING
    bar.update(0, 10)
    assert term.text.startswith(_FilesBar.FINDING + "\r\x1b[K") and "0/10" in term.text
    bar.close()
    assert term.text.count(_FilesBar.FINDING) == 1

    term = _Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    _FilesBar().close()  # an error before the first file: its message starts on a clean line
    assert term.text == _FilesBar.FINDING + "\r\x1b[K"


def test_files_bar_writes_nothing_off_a_terminal(monkeypatch, capsys):
    from sgaudit.cli import _FilesBar

    bar = _FilesBar()
    bar.update(1, 2)
    bar.close()
    assert capsys.readouterr().err == ""


def test_progress_counts_the_reading_as_the_first_half_of_duckdbs_estimate(tmp_path, monkeypatch):
    # DuckDB's estimate for the reduction (a scan into a hash aggregate) is at 50 % when every file is read;
    # shown as it is, the bar sat at half the files and jumped to all of them at the end.
    inv = web_snapshot().write(tmp_path / "inv")
    for i in range(4):
        write_log(tmp_path / "logs" / f"flow{i}.log.gz", web_records())
    real = sgaudit.analysis._execute_with_progress

    def as_duckdb_reports(con, sql, on_fraction):
        if on_fraction is not None:
            for frac in (0.0, 0.125, 0.25, 0.5, 0.75):
                on_fraction(frac)
        real(con, sql, None)

    monkeypatch.setattr(sgaudit.analysis, "_execute_with_progress", as_duckdb_reports)
    calls = []
    sgaudit.analyze(tmp_path / "logs", inv, progress=lambda done, total: calls.append((done, total))).close()
    assert calls == [(0, 4), (0, 4), (1, 4), (2, 4), (4, 4), (4, 4), (4, 4)]


def test_progress_starts_at_zero_files_before_the_checksums_are_checked_and_ends_at_all(setup, monkeypatch):
    tmp_path, inv, log = setup
    calls = []
    real = sgaudit.sources.verify_gzip
    monkeypatch.setattr(sgaudit.sources, "verify_gzip",
                        lambda paths, threads: (calls.append("verify"), real(paths, threads)))
    sgaudit.analyze(log, inv, progress=lambda done, total: calls.append((done, total))).close()
    assert calls[:2] == [(0, 1), "verify"] and calls[-1] == (1, 1)
