"""`analyze`: flow logs + inventory snapshot → rule usage, the one call notebooks and the CLI make.

The stages run in order, each one SQL statement in one DuckDB database that spills to a temporary
folder past its memory limit, so that nothing grows with the input but the disk: read and reduce (one
statement per file layout, with a progress bar), version-2 sides, conversations and buckets, matching,
classification; then the result tables, which come back as pandas DataFrames when first asked for.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from pathlib import Path

import duckdb
import pandas as pd

from . import conversations, fields, matching, records, reduction, remote, sources, usage
from . import timeline as timeline_
from .addresses import IPV4_MACRO, build_address_table, build_ipv6_table, build_respelled_table
from .errors import FlowLogFormatError, FlowLogReadError, SgauditError, WindowError, whole_number
from .fields import parse_format
from .inventory import Inventory
from .inventory import load as load_inventory

#: DuckDB's memory ceiling. Aggregations past it spill to the temporary folder rather than grow.
DEFAULT_MEMORY_LIMIT = os.environ.get("SGAUDIT_MEMORY_LIMIT", "1GB")

def parse_time(value: str | int | float | datetime | pd.Timestamp | None, name: str) -> int | None:
    """A user's ``--start``/``--end`` as Unix milliseconds.

    ISO 8601 (naive means UTC), or a Unix time in seconds -- or in milliseconds from 10**11 on, the
    threshold the records' own ``start`` and ``end`` are read with (`reduction`), so a value copied from
    a record means the same here.

    Raises
    ------
    WindowError
        For text that is not a time, NaN, or a time before 1970 or after 2262.
    """
    if value is None or value == "":
        return None
    hint = "use ISO 8601 such as 2025-02-06T15:00:00Z, or Unix seconds"
    if isinstance(value, (int, float)) or (isinstance(value, str) and value.strip().lstrip("-").isdigit()):
        number = float(value)
        if number != number or number in (float("inf"), float("-inf")):
            raise WindowError(f"{name}: {value!r} is not a time; {hint}")
        ms = int(number) if abs(number) >= reduction.MS_FROM else int(number * 1000)
    else:
        try:
            ts = pd.Timestamp(value)
        except (ValueError, TypeError, OverflowError) as exc:
            raise WindowError(f"{name}: cannot read {value!r} as a time; {hint}") from exc
        if pd.isna(ts):
            raise WindowError(f"{name}: {value!r} is not a time; {hint}")
        if ts.tzinfo is None:
            ts = ts.tz_localize("UTC")
        ms = int(ts.timestamp() * 1000)
    if not 0 <= ms <= reduction.MAX_MS:  # the times a record may carry, too
        raise WindowError(f"{name}: {value!r} is outside 1970-2262; {hint}")
    return ms


def _check_resources(threads: int | None, memory_limit: str) -> None:
    """Fail on a thread count or memory limit DuckDB would refuse, before any file is read."""
    if threads is not None and (not whole_number(threads) or threads < 1):
        raise SgauditError(f"--threads {threads!r}: give a whole number of threads, 1 or more")
    number = re.match(r"\s*([0-9.]+)", str(memory_limit))
    con = duckdb.connect(":memory:")
    try:
        con.execute(f"SET memory_limit = '{memory_limit}'")
        ok = number is not None and float(number.group(1)) > 0
    except (duckdb.Error, ValueError):
        ok = False
    finally:
        con.close()
    if not ok:
        raise SgauditError(f"--memory-limit {memory_limit!r}: give a size such as 1GB, 512MB or 4GiB")


@dataclass
class Analysis:
    """The result of `analyze`. Tables are pandas DataFrames, computed when first asked for.

    Attributes
    ----------
    inventory : Inventory
        The snapshot as read.
    window : tuple of pandas.Timestamp
        ``(start, end)`` in UTC: the user's ``--start/--end`` where given, else the span of the records.
    files : list of sources.FlowLogFile
        The files read, with their layouts.
    """

    inventory: Inventory
    window: tuple[pd.Timestamp | None, pd.Timestamp | None]
    files: list[sources.FlowLogFile]
    con: duckdb.DuckDBPyConnection = field(repr=False)
    problems_list: list[dict] = field(default_factory=list, repr=False)
    _tmpdir: str | None = field(default=None, repr=False)
    #: The user's window in Unix milliseconds (None: open), as the reduction applied it.
    bounds_ms: tuple[int | None, int | None] = field(default=(None, None), repr=False)
    _timelines: dict = field(default_factory=dict, repr=False)
    #: The arguments of the `analyze` call that made this, for `reanalyze`.
    call: dict = field(default_factory=dict, repr=False)
    #: Lines the reader could not type (header lines seen again apart): malformed records, all counted,
    #: the first ones listed in the problems table.
    untyped_lines: int = field(default=0, repr=False)

    @cached_property
    def observed(self) -> set[str]:
        """IDs of the interfaces observed in the window."""
        return usage.observed_interfaces(self.con)

    @cached_property
    def usage(self) -> pd.DataFrame:
        """One row per rule: SPEC's usage table."""
        return usage.usage_table(self.con, self.inventory, self.observed)

    @cached_property
    def conversations(self) -> pd.DataFrame:
        """Every accepted conversation, its direction, evidence and the rules that let it through."""
        return usage.conversations_table(self.con)

    @cached_property
    def unexplained(self) -> pd.DataFrame:
        """Accepted conversations that no rule of their interface's groups explains."""
        return usage.unexplained_table(self.con)

    @cached_property
    def rejected(self) -> pd.DataFrame:
        """Rejected attempts per (interface, direction, protocol, port)."""
        return usage.rejected_table(self.con)

    @cached_property
    def coverage(self) -> pd.DataFrame:
        """Per interface: in the snapshot or not, observed or not, records by kind."""
        return usage.coverage_table(self.con, self.inventory)

    @cached_property
    def quality(self) -> pd.DataFrame:
        """Records by bucket; the ``total`` row is the records read, and the buckets add up to it."""
        counts = dict(self.con.sql("SELECT bucket, sum(records) FROM buckets GROUP BY 1").fetchall())
        untyped = self.untyped_lines
        counts["malformed"] = counts.get("malformed", 0) + untyped
        rows = [{"bucket": b, "records": int(counts.get(b, 0) or 0), "meaning": meaning}
                for b, meaning in conversations.BUCKETS.items()]
        # The total is counted apart from the buckets (every row the reader typed, plus every line it could
        # not), so that a record lost between the stages would show here instead of vanishing.
        read = int(self.con.sql("SELECT coalesce(sum(records), 0) FROM reduced").fetchall()[0][0]) + untyped
        lost = read - sum(r["records"] for r in rows)
        if lost:
            rows.append({"bucket": "unaccounted", "records": lost,
                         "meaning": "records in no bucket: a defect of sgaudit, please report it"})
        rows.append({"bucket": "total", "records": read,
                     "meaning": "records read (every line or row that is not a header)"})
        return pd.DataFrame(rows)

    @cached_property
    def problems(self) -> pd.DataFrame:
        """Every malformed line (file, line, value, reason), empty file and unresolved reference."""
        df = pd.DataFrame(self.problems_list, columns=["kind", "resource", "line", "value", "detail"])
        df["line"] = df["line"].astype("Int64")  # a whole number, or missing for problems of no line
        # Text, also when no problem has a value (pandas would make an empty column float): a Parquet or
        # JSON output must not change its schema with the input.
        for col in ("kind", "resource", "value", "detail"):
            df[col] = df[col].astype(object).where(df[col].notna(), None)
        return df

    def timeline(self, time_bucket: str = "auto",
                 progress: Callable[[int, int], None] | None = None) -> timeline_.Timeline:
        """Connections per rule and per port over time (`sgaudit.timeline`), computed once per bucket width.

        Parameters
        ----------
        time_bucket : str
            ``"auto"`` (at most 72 buckets over the window) or a width such as ``"5min"``, ``"1h"``, ``"1D"``.
        progress : callable, optional
            ``progress(files_done, files_total)`` while the files are read again.
        """
        width = timeline_.choose_bucket(self.window, time_bucket)
        if width not in self._timelines:
            self._require_open()  # before its files are looked for
            self._timelines[width] = timeline_.build(self, str(width), progress)
        return self._timelines[width]

    def reanalyze(self, inventory: str | Path | Inventory) -> Analysis:
        """The same records (files, window, format) analysed against another snapshot.

        How a proposed set of rules is checked: every conversation is read and classified again, and
        matched against the rules of ``inventory`` instead (`sgaudit.plan`). The files this analysis read
        are read again as they are, never fetched again: records that arrived in S3 or CloudWatch since
        would otherwise make the proof one on other records (and a download without the cache twice).
        Athena's table is queried again.
        """
        self._require_open()  # a closed analysis may have lost its downloaded files with its folder
        inv = inventory if isinstance(inventory, Inventory) else load_inventory(inventory)
        # The files' checksums were checked by the first reading; the same bytes need no second check.
        call = {**self.call, "gzip_checked": True}
        return _analyze_files(self.files, [], inv, self.bounds_ms, call, progress=None)

    def write(self, name: str, path: str | Path) -> Path:
        """Write one table (``usage``, ``unexplained``, ``quality``…) to a .csv, .jsonl or .parquet file.

        The per-conversation tables, which can be as long as the input, are written by DuckDB without
        passing through pandas.
        """
        from .output import output_kind, write_table

        if name in usage.LARGE:
            path = Path(path)
            path.parent.mkdir(parents=True, exist_ok=True)
            usage.copy_large(self.con, name, path, output_kind(path))
            return path
        return write_table(getattr(self, name), path)

    def close(self) -> None:
        """Close the database and remove its temporary folder; tables not asked for before are gone.

        ``with sgaudit.analyze(...) as result:`` closes it at the end of the block.
        """
        if not isinstance(self.con, _Closed):
            self.con.close()
            self.con = _Closed()  # type: ignore[assignment]
        if self._tmpdir:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None

    def _require_open(self) -> None:
        if isinstance(self.con, _Closed):
            raise SgauditError(_CLOSED)

    def __enter__(self) -> Analysis:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):  # noqa: D105 - best effort; close() is the real API
        try:
            self.close()
        except Exception:
            pass


def _make_tmpdir(workdir: str | Path | None) -> str:
    """A temporary folder for one analysis, named after this process, after removing those of dead ones.

    `Analysis.close` removes its folder, but a process killed on the way (a notebook kernel restarted, a
    report's kernel stopped on a failing cell) cannot: its folder, downloaded flow logs and all, would stay
    in /tmp. A folder whose process no longer runs is removed here, the next time sgaudit runs.
    """
    base = Path(workdir) if workdir is not None else Path(tempfile.gettempdir())
    for old in base.glob("sgaudit-p*-*"):
        match = re.fullmatch(r"sgaudit-p(\d+)-.*", old.name)
        if match and old.is_dir() and not _running(int(match.group(1))):
            shutil.rmtree(old, ignore_errors=True)
    return tempfile.mkdtemp(prefix=f"sgaudit-p{os.getpid()}-", dir=workdir)


def _running(pid: int) -> bool:
    """Whether a process of that ID runs (a reused ID keeps a folder: the safe side)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


class _Closed:
    """The database of a closed `Analysis`: any use says so, instead of DuckDB's "connection closed"."""

    def __getattr__(self, name: str):
        raise SgauditError(_CLOSED)


_CLOSED = ("this analysis is closed (close() was called, or its with-block ended): the tables asked for before "
           "stay, the others are gone; run sgaudit.analyze again")


def analyze(
    flow_logs: str | Path | Iterable[str | Path] | None,
    inventory: str | Path | Inventory,
    start: str | datetime | None = None,
    end: str | datetime | None = None,
    log_format: str | list[str] | None = None,
    *,
    threads: int | None = None,
    memory_limit: str = DEFAULT_MEMORY_LIMIT,
    progress: Callable[[int, int], None] | None = None,
    workdir: str | Path | None = None,
    aws_session=None,
    endpoint_url: str | None = None,
    cache: bool | str | Path = True,
    engine: str = "duckdb",
    engine_options: dict | None = None,
) -> Analysis:
    """Tell, for every security group rule, whether flow logs show it used.

    Parameters
    ----------
    flow_logs : path or list of paths
        Flow-log files or folders (walked recursively): text (plain or gzip) with or without a header
        line, Parquet, or CloudWatch Logs JSON exports; different layouts may be mixed. Required, except
        with ``engine="athena"``, which reads its table instead (pass ``[]``).
    inventory : path or Inventory
        The snapshot folder (see `sgaudit.inventory`), or one already loaded.
    start, end : str or datetime, optional
        The window ``[start, end)``: records whose ``start`` is outside it are counted, not used.
        ISO 8601 (naive means UTC) or Unix seconds. Default: the span of the records.
    log_format : str or list of str, optional
        The log format of files without a header line (``${version} ${srcaddr} …`` or plain names, or
        a list of the names). Default: the version-2 default format.
    threads : int, optional
        DuckDB threads; default all cores.
    memory_limit : str
        DuckDB's memory ceiling (``"1GB"``); larger work spills to disk.
    progress : callable, optional
        Called as ``progress(files_done, files_total)`` while the files are read (a few times a second).
    workdir : path, optional
        Where the temporary database lives (default: the system's temporary folder).
    aws_session : boto3.Session or str, optional
        For ``s3://bucket/prefix`` and ``cloudwatch://log-group[?stream=NAME]`` entries of ``flow_logs``
        (`sgaudit.remote`): the session, or the name of an AWS profile. Default: boto3's default chain.
    endpoint_url : str, optional
        Another AWS endpoint for those entries (a VPC endpoint, a local test server).
    cache : bool or path
        Keep downloaded S3 objects in ``~/.cache/sgaudit`` (True; ``$SGAUDIT_CACHE_DIR`` or
        ``$XDG_CACHE_HOME`` move it) and skip those already there, keep them in this folder, or only in
        the temporary folder for the length of the analysis (False).
    engine : str
        Where the reduction runs (`sgaudit.engines`): ``"duckdb"`` (here), ``"spark"`` (the files read
        here, reduced by Spark; options ``master``, ``session``) or ``"athena"`` (an Athena table reduced
        where it is; options ``database``, ``table``, ``workgroup``, ``output_location``, ``session``,
        ``region``, ``endpoint_url``, ``create``). Everything after the reduction runs here.
    engine_options : dict, optional
        The engine's options.

    Returns
    -------
    Analysis
    """
    _check_resources(threads, memory_limit)
    lo = parse_time(start, "--start")
    hi = parse_time(end, "--end")
    if lo is not None and hi is not None and lo >= hi:
        raise WindowError(f"--start {start} is not before --end {end}; the window would be empty")
    inv = inventory if isinstance(inventory, Inventory) else load_inventory(inventory)
    if isinstance(log_format, (list, tuple)):
        log_format = " ".join(map(str, log_format))  # field names as a list, as fields.parse_format returns
    fmt = parse_format(log_format) if log_format else None
    paths = ([] if flow_logs is None else [flow_logs] if isinstance(flow_logs, (str, Path)) else list(flow_logs))
    if not paths and engine != "athena":
        raise SgauditError("no flow logs given: pass files, folders, s3:// or cloudwatch:// URIs as flow_logs "
                           "(only engine='athena' reads them where they are)")
    inventory_dir = None if isinstance(inventory, Inventory) else Path(inventory).resolve()
    call = dict(flow_logs=paths, start=start, end=end, log_format=log_format, threads=threads,
                memory_limit=memory_limit, workdir=workdir, aws_session=aws_session, endpoint_url=endpoint_url,
                cache=cache, engine=engine, engine_options=engine_options,
                # What was read and when, for a report to name (`summaries.overview`): absolute paths, since
                # a relative one means nothing to the reader of a report (a notebook runs in its own folder).
                inventory=str(inventory_dir) if inventory_dir else None, started=pd.Timestamp.now(tz="UTC").floor("s"),
                flow_logs_shown=[str(p) if remote.is_uri(p) else str(Path(p).resolve()) for p in paths])
    tmpdir = _make_tmpdir(workdir)
    try:
        # URIs (s3://, cloudwatch://) become local files first, then are read like any other; a
        # CloudWatch flow log's own LogFormat applies to its files unless log_format is given. CloudWatch
        # events, and S3 objects without the cache, live in tmpdir, which goes with the Analysis.
        local, formats = remote.fetch_all(paths, lo, hi, log_format=log_format, aws_session=aws_session,
                                          endpoint_url=endpoint_url, cache=cache,
                                          scratch=os.path.join(tmpdir, "remote"), progress=progress is not None)
        passed_over: list[Path] = []
        found = sources.discover(local, passed_over)
        # A snapshot folder inside a flow-log folder is the inventory, not flow logs.
        logs = [p for p in found if inventory_dir is None or inventory_dir not in p.resolve().parents]
        if found and not logs:
            raise FlowLogReadError(
                f"{', '.join(map(str, paths))}: holds no flow-log files, only the inventory snapshot given as "
                f"--inventory ({inventory_dir}); pass the folder of the flow logs to --flow-logs")
        files = [sources.sniff(p, formats.get(p, fmt)) for p in logs]
        # Empty files hold no record to count twice: each is listed as empty, never as a copy.
        copies = sources.find_copies([f.path for f in files if f.kind != "empty"])
        files = [f for f in files if f.path not in {copy for copy, _ in copies}]
    except BaseException:
        shutil.rmtree(tmpdir, ignore_errors=True)
        raise
    problems = [{"kind": "duplicate_file", "resource": str(copy),
                 "detail": f"the same bytes as {original}: read once, so that no record counts twice"}
                for copy, original in copies]
    problems += [{"kind": "not_flow_logs", "resource": str(p),
                  "detail": "passed over in the folder: its name says documentation or bookkeeping (.md, .csv, "
                            "README…), not flow logs; name the file itself in --flow-logs to read it"}
                 for p in passed_over]
    return _analyze_files(files, problems, inv, (lo, hi), call, progress, tmpdir)


def _analyze_files(files: list[sources.FlowLogFile], problems: list[dict], inv: Inventory,
                   bounds: tuple[int | None, int | None], call: dict, progress, tmpdir: str | None = None
                   ) -> Analysis:
    """`analyze` once its files are local and sniffed: the database, then every stage (`_run`)."""
    if tmpdir is None:
        tmpdir = _make_tmpdir(call["workdir"])
    # In memory, spilling to temp_directory past memory_limit: the tables are written once and read a
    # few times, so a database file would only add writes.
    con = duckdb.connect(":memory:")
    con.execute(f"SET memory_limit = '{call['memory_limit']}'")
    con.execute(f"SET temp_directory = '{os.path.join(tmpdir, 'spill')}'")
    con.execute("SET preserve_insertion_order = false")
    if call["threads"]:
        con.execute(f"SET threads = {int(call['threads'])}")
    result = Analysis(inv, (None, None), files, con, problems, tmpdir, bounds, call=call)
    try:
        _run(result, files, inv, *bounds, progress)
    except BaseException:
        result.close()  # the temporary folder and the database go with the failure
        raise
    return result


def _run(result: Analysis, files: list[sources.FlowLogFile], inv: Inventory, lo: int | None, hi: int | None,
         progress: Callable[[int, int], None] | None) -> None:
    """The stages of `analyze`, in order, filling ``result``."""
    con, tmpdir = result.con, result._tmpdir
    problems = result.problems_list
    problems += [{"kind": p["kind"], "resource": p["resource"], "detail": p["detail"]} for p in inv.problems]
    problems += [{"kind": "empty_file", "resource": str(f.path), "detail": "the file holds no records"}
                 for f in files if f.kind == "empty"]

    con.execute(IPV4_MACRO)
    engine = result.call.get("engine", "duckdb")
    # Before the long read: DuckDB, which reads the local files for every engine but Athena (whose list is
    # empty), does not check gzip's checksum, and a damaged file is an error.
    if not result.call.get("gzip_checked"):
        if progress:
            progress(0, len(files))  # the bar shows while the checksums are checked (4-5 s at 50M records)
        sources.verify_gzip([f.path for f in files if f.gzip and f.kind == "text"],
                            int(result.call.get("threads") or os.cpu_count() or 1))
    if engine == "duckdb":
        statements = _reduce(con, files, Path(tmpdir), lo, hi, progress)
    else:
        from . import engines  # only the engines' own users pay for importing sqlglot

        statements = engines.reduce_with_engine(engine, con, files, Path(tmpdir), lo, hi,
                                                result.call.get("engine_options"), progress)
    by_path = {str(f.path): f for f in files}
    untyped, result.untyped_lines = _untyped_lines(con, by_path)
    problems += untyped

    matching.load_inventory_tables(con, inv)
    _conversations(con, statements)
    problems += _malformed_records(con, by_path, Path(tmpdir), lo, hi)
    con.execute(matching.CANDIDATES_SQL)
    con.execute(conversations.classify_sql())
    con.execute(matching.CONVERSATION_RULES_SQL)

    span = con.sql("""SELECT min(first_ms), max(last_ms) FROM buckets
                      WHERE bucket NOT IN ('malformed', 'outside_window')""").fetchall()[0]
    w_lo = lo if lo is not None else span[0]
    w_hi = hi if hi is not None else span[1]
    result.window = tuple(pd.Timestamp(v, unit="ms", tz="UTC") if v is not None else None
                          for v in (w_lo, w_hi))  # type: ignore[assignment]


#: Control characters other than tab: a garbage line can hold NUL or escape bytes, which a CSV reader, a
#: terminal or a report page would act on rather than show.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def _shown(text: str, limit: int = 300) -> str:
    r"""A malformed line as the problems table shows it.

    Its first ``limit`` characters, control characters written as ``\xNN``: what is shown is what the file
    holds, and nothing acts on it.
    """
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text[:limit])


def _is_own_header(f: sources.FlowLogFile | None, line: int, text: str) -> bool:
    """Whether a line the reader could not type is the header of its text file, seen again.

    S3 files joined into one (``cat a.log.gz b.log.gz``: gzip members read as one stream) repeat their
    header line; that line is no record and is passed over. A header of *another* format means that the
    lines after it are in fields the reader does not expect: an error, never a stream of misread records.

    Raises
    ------
    FlowLogFormatError
        For a header line of another format inside a text file.
    """
    if f is None or f.kind != "text" or not fields.looks_like_header(text):
        return False
    try:
        names = fields.parse_format(text, where=f"{f.path}, line {line}")
    except FlowLogFormatError:
        names = ()
    if f.header and names == f.fields:
        return True
    first = "the header it begins with" if f.header else "its first record's format (it has no header line)"
    raise FlowLogFormatError(
        f"{f.path}, line {line}: a header line of another format than {first}: {text[:200]!r}. The file "
        "looks like flow-log files of different formats joined into one (cat a.log.gz b.log.gz > c.log.gz), "
        "and the lines after it cannot be read with the first format's fields. Pass the original files "
        f"instead, or split this one before line {line}."
    )


def _conversations(con: duckdb.DuckDBPyConnection, statements: int) -> None:
    """Reduced rows → oriented rows → conversations and per-interface bucket counts."""
    unresolved = con.sql("SELECT count(*) FROM reduced WHERE bucket = 'ok' AND NOT resolved").fetchall()[0][0]
    if unresolved:
        build_address_table(con, "SELECT a_addr AS a FROM reduced WHERE bucket = 'ok' AND NOT resolved "
                                 "UNION ALL SELECT b_addr FROM reduced WHERE bucket = 'ok' AND NOT resolved",
                            table="v2_addr")
        con.execute(conversations.V2_SIDES_SQL)
    else:
        con.execute("CREATE OR REPLACE TABLE v2_sides (interface_id VARCHAR, a_addr VARCHAR, b_addr VARCHAR, "
                    "local_is_b BOOLEAN)")
    con.execute(conversations.ORIENTED_SQL)
    # Every IPv6 address a peer can be (a version-2 row's peer is either of its addresses), and those
    # written two ways (by a tool that rewrote the logs): one address is one peer, so one conversation.
    peers = "SELECT b_addr AS a FROM reduced WHERE bucket = 'ok' AND b_addr LIKE '%:%'"
    if unresolved:
        peers += " UNION ALL SELECT a_addr FROM reduced WHERE bucket = 'ok' AND NOT resolved AND a_addr LIKE '%:%'"
    build_ipv6_table(con, peers, table="addr")
    respelled = build_respelled_table(con, table="addr", out="peer_canon")
    # The reduction's rows already are conversations when one statement read every record and each
    # record said its direction (only the rows of peers spelled two ways are then summed); otherwise rows
    # of one conversation may be several, and are summed.
    if statements == 1 and not unresolved:
        con.execute(conversations.CONVERSATIONS_RESPELLED_SQL if respelled else conversations.CONVERSATIONS_RAW_VIEW)
    else:
        con.execute(conversations.CONVERSATIONS_RAW_SQL)
    con.execute(conversations.CONVERSATIONS_SQL)
    con.execute(conversations.BUCKETS_SQL)


def _untyped_lines(con: duckdb.DuckDBPyConnection, by_path: dict[str, sources.FlowLogFile]
                   ) -> tuple[list[dict], int]:
    """The lines the reader could not type, as problems, and how many of them are malformed (headers apart).

    Listed as the malformed records are (the first `_LISTED_LINES` of the first `_LISTED_FILES` files, a
    ``listing_truncated`` row saying how many more), so that a delivery of millions of bad lines does not
    make a problems table of millions of rows; the quality table counts every one.
    """
    listed, counts = records.rejected_lines(con, _LISTED_LINES, _LISTED_FILES)
    out, headers, shown = [], defaultdict(int), defaultdict(int)
    for path, line, text, reason, within in listed:
        if _is_own_header(by_path.get(path), line, text):
            headers[path] += 1
            out.append({"kind": "repeated_header", "resource": path, "line": line, "value": _shown(text),
                        "detail": "the file's header line again (files joined with cat, or blank lines "
                                  "before the header): not a record, passed over"})
        elif within:
            shown[path] += 1
            out.append({"kind": "malformed_line", "resource": path, "line": line, "value": _shown(text),
                        "detail": reason})
    bad = {path: n - headers[path] for path, n in counts.items() if n > headers[path]}
    for path, n in sorted(bad.items()):
        if shown[path] < n:
            out.append({"kind": "listing_truncated", "resource": path,
                        "detail": f"{shown[path]:,} of the {n:,} lines of this file the reader could not type are "
                                  "listed; the quality table counts them all"})
    if len(bad) > _LISTED_FILES:
        out.append({"kind": "listing_truncated", "resource": "files",
                    "detail": f"lines the reader could not type are listed for {_LISTED_FILES} of {len(bad):,} "
                              "files; the quality table counts them all"})
    return out, sum(bad.values())


def _malformed_records(con: duckdb.DuckDBPyConnection, by_path: dict[str, sources.FlowLogFile], workdir: Path,
                       lo: int | None, hi: int | None) -> list[dict]:
    """The records counted as malformed although the reader could type them, with file, line and text.

    The reduction keeps only the file of such records; their lines are found again by re-reading those
    files (they are few) and applying the reduction's own bucket expression to every line. Records whose
    peer is not an address come first (`_malformed_peers`).
    """
    out = _malformed_peers(con, by_path, workdir, lo, hi)
    counted = con.sql("SELECT source_file, sum(records) FROM reduced WHERE bucket = 'malformed' "
                      "AND source_file IS NOT NULL GROUP BY 1 ORDER BY 1").fetchall()
    for i, (source, n) in enumerate(counted):
        path = records.original_path(source)
        if i == _LISTED_FILES:
            out.append({"kind": "listing_truncated", "resource": "files",
                        "detail": f"malformed records are listed for {_LISTED_FILES} of {len(counted):,} files; "
                                  "the quality table counts them all"})
            break
        f = by_path.get(path)
        listed = records.senseless_lines(con, f, lo, hi, limit=_LISTED_LINES) if f is not None else []
        for line, text, why in listed:
            out.append({"kind": "malformed_record", "resource": path, "line": line, "value": _shown(text),
                        "detail": f"{why}: no record AWS writes"})
        if len(listed) < int(n):
            # Never a silent gap between the count and the list: say how many were not listed.
            out.append({"kind": "listing_truncated", "resource": path,
                        "detail": f"{len(listed):,} of the {int(n):,} malformed records of this file are listed"
                                  + (" (the first ones)" if len(listed) == _LISTED_LINES else "")
                                  + "; the quality table counts them all"})
    return out


# The peer of a typed record ``r`` at its interface, as the conversations have it: flow-direction decides,
# and for a version-2 record the sides found for the reduced rows (`conversations.V2_SIDES_SQL`).
_RECORD_PEER = """
CASE WHEN r.flow_direction = 'ingress' THEN r.srcaddr WHEN r.flow_direction = 'egress' THEN r.dstaddr
     WHEN v.local_is_b THEN r.srcaddr WHEN NOT v.local_is_b THEN r.dstaddr END"""

_RECORDS_OF_BAD_PEERS = """
SELECT {select} FROM {records}
LEFT JOIN v2_sides v ON r.flow_direction IS NULL AND v.interface_id = r.interface_id
    AND v.a_addr = r.srcaddr AND v.b_addr = r.dstaddr
JOIN _bad_peers b ON b.interface_id = r.interface_id AND b.peer_addr = {peer}
WHERE r.bucket = 'ok'"""


def _malformed_peers(con: duckdb.DuckDBPyConnection, by_path: dict[str, sources.FlowLogFile], workdir: Path,
                     lo: int | None, hi: int | None) -> list[dict]:
    """The records whose peer address is neither IPv4 nor IPv6, with file, line and text.

    Addresses are checked once each, after the reduction (checking every record would slow every run), so
    the reduced rows no longer say where such a record was. When there are any, the files are scanned
    again for them (AWS writes no such address: a run on AWS's own logs never pays for it), and then the
    lines of the first files that hold them are listed. Records read elsewhere (Athena) are listed by
    interface and peer only.
    """
    bad = con.sql("""SELECT interface_id, peer_addr, sum(records)::BIGINT AS records FROM conversations
                     WHERE family IS NULL GROUP BY ALL ORDER BY 3 DESC, 1, 2""").df()
    if bad.empty:
        return []
    con.register("_bad_peers", bad)
    try:
        located = []
        for group in records.group_files(list(by_path.values())):
            scan = reduction.bucket_sql(records.scan_sql(group, workdir, keep_rejects=False), lo, hi)
            located += con.sql(_RECORDS_OF_BAD_PEERS.format(
                select="r.source_file, count(*)", records=f"({scan}) AS r", peer=_RECORD_PEER)
                + " GROUP BY 1 ORDER BY 1").fetchall()
        if sum(n for _, n in located) != bad["records"].sum():
            return _malformed_peers_unlocated(bad)  # read elsewhere (Athena), or the files changed since
        out = []
        for i, (source, n) in enumerate(located):
            path = records.original_path(source)
            if i == _LISTED_FILES:
                out.append({"kind": "listing_truncated", "resource": "files",
                            "detail": f"records whose peer is not an address are listed for {_LISTED_FILES} of "
                                      f"{len(located):,} files; the quality table counts them all"})
                break
            listed = records.typed_lines(
                con, by_path[path], lo, hi, lambda recs: _RECORDS_OF_BAD_PEERS.format(
                    select="r.line, r.text, b.peer_addr", records=recs, peer=_RECORD_PEER),
                limit=_LISTED_LINES)
            out += [{"kind": "malformed_record", "resource": path, "line": line, "value": _shown(text),
                     "detail": f"the peer address {peer!r} is neither IPv4 nor IPv6"} for line, text, peer in listed]
            if len(listed) < n:
                out.append({"kind": "listing_truncated", "resource": path,
                            "detail": f"{len(listed):,} of the {n:,} records of this file whose peer is not an "
                                      "address are listed" + (" (the first ones)" if len(listed) == _LISTED_LINES
                                                              else "") + "; the quality table counts them all"})
        return out
    finally:
        con.unregister("_bad_peers")


def _malformed_peers_unlocated(bad: pd.DataFrame) -> list[dict]:
    """Records whose peer is not an address, by interface and peer, when their files were not read here."""
    out = [{"kind": "malformed_record", "resource": iface, "value": peer,
            "detail": f"{int(n)} record(s) whose peer address is neither IPv4 nor IPv6"}
           for iface, peer, n in bad.head(_LISTED_PEERS).itertuples(index=False)]
    if len(bad) > _LISTED_PEERS:
        out.append({"kind": "listing_truncated", "resource": "peer addresses",
                    "detail": f"{_LISTED_PEERS:,} of {len(bad):,} (interface, peer) pairs with a peer that is not "
                              "an address are listed, the most frequent first; the quality table counts them all"})
    return out


#: How much of the malformed records the problems table lists (the quality table counts every one).
_LISTED_LINES, _LISTED_FILES, _LISTED_PEERS = 1000, 100, 1000



def _execute_with_progress(con: duckdb.DuckDBPyConnection, sql: str,
                           on_fraction: Callable[[float], None] | None) -> None:
    """Run one statement; while it runs, report DuckDB's own estimate of how far it is (0..1)."""
    if on_fraction is None:
        con.execute(sql)
        return
    # DuckDB tracks progress only with its progress bar on; sgaudit draws its own bar over files.
    con.execute("SET enable_progress_bar = true")
    con.execute("SET enable_progress_bar_print = false")
    con.execute("SET progress_bar_time = 0")
    failure: list[BaseException] = []

    def work() -> None:
        try:
            con.execute(sql)
        except BaseException as exc:  # re-raised in the calling thread below
            failure.append(exc)

    worker = threading.Thread(target=work, daemon=True)
    worker.start()
    while worker.is_alive():
        worker.join(0.25)
        try:
            pct = con.query_progress()
        except duckdb.Error:
            pct = -1
        if pct is not None and pct >= 0:
            on_fraction(min(pct, 100.0) / 100.0)
    if failure:
        raise failure[0]


def _files_fraction(statement_fraction: float) -> float:
    """How much of a reduction statement's files are read, from DuckDB's estimate of the whole statement.

    DuckDB weighs a statement's pipelines by their estimated rows, and estimates a hash aggregate's output
    at its input's rows: reading the files into the aggregate is the first half of the estimate, and
    producing the aggregate's rows the second. Taken as it is, the bar sat near half the files until the
    statement ended and then jumped to all of them (4,000 small files: at 51 % for 5.6 s).
    """
    return min(1.0, 2.0 * statement_fraction)


def _reduce(con, files, workdir: Path, lo: int | None, hi: int | None, progress, *,
            table: str = "reduced", slot_ms: int | None = None) -> int:
    """Read every file into the ``reduced`` table (`reduction.REDUCE_SQL`): one statement per layout.

    One statement for all files of a layout lets DuckDB read them in parallel and sum each conversation
    once. Returns the number of statements run: with more than one, a conversation's rows may be split
    across them and are summed afterwards. With ``slot_ms`` the rows are also split by time, into
    ``table`` (`sgaudit.timeline`).
    """
    lo_ms = lo if lo is not None else -(2**62)
    hi_ms = hi if hi is not None else 2**62
    created = False
    total = len(files)
    done = sum(1 for f in files if f.kind == "empty")
    groups = records.group_files(files)
    for group in groups:
        # The peer's number (IPv4) is computed here, once per reduced row, outside the portable reduction.
        sql = (f"SELECT *, ipv4_num(b_addr) AS b_num4 FROM "
               f"({reduction.reduce_sql(records.scan_sql(group, workdir), lo_ms, hi_ms, slot_ms)}) AS reduced_rows")
        sql = f"INSERT INTO {table} {sql}" if created else f"CREATE OR REPLACE TABLE {table} AS {sql}"
        base, size = done, len(group.paths)
        report = ((lambda frac, base=base, size=size: progress(base + int(_files_fraction(frac) * size), total))
                  if progress else None)
        try:
            _execute_with_progress(con, sql, report)
        except duckdb.Error as exc:
            if records.is_read_error(exc, group):
                records.raise_read_error(exc, group)
            raise
        created = True
        done += size
        if progress:
            progress(done, total)
    if not created:
        # No records at all (only empty files): an empty table of the right shape keeps the rest simple.
        empty = ("(SELECT * FROM (SELECT NULL::VARCHAR AS interface_id, NULL::VARCHAR AS srcaddr, "
                 "NULL::VARCHAR AS dstaddr, NULL::USMALLINT AS srcport, NULL::USMALLINT AS dstport, "
                 "NULL::UTINYINT AS protocol, NULL::BIGINT AS packets, NULL::BIGINT AS bytes, "
                 "NULL::BIGINT AS start, NULL::BIGINT AS \"end\", NULL::VARCHAR AS action, "
                 "NULL::VARCHAR AS log_status, NULL::SMALLINT AS tcp_flags, "
                 "NULL::VARCHAR AS flow_direction, NULL::VARCHAR AS source_file) WHERE FALSE)")
        con.execute(f"CREATE OR REPLACE TABLE {table} AS SELECT *, ipv4_num(b_addr) AS b_num4 FROM "
                    f"({reduction.reduce_sql(empty, lo_ms, hi_ms, slot_ms)}) AS reduced_rows")
    return len(groups)
