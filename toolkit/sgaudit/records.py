"""Typed flow-log records, read by DuckDB.

Each group of files with the same layout (kind, fields, header) becomes one DuckDB table expression with
the columns of `fields.USED` under their underscore names, typed from the field table: small unsigned
ints for ports and protocol, SMALLINT flags, BIGINT bytes and packets, and ``start``/``end`` as given
(seconds, or milliseconds where AWS wrote those). A field the format lacks is NULL. ``-`` is NULL.

Lines that do not fit the format (wrong number of fields, ``abc`` as a port) are not dropped: DuckDB's
``store_rejects`` keeps each with its file, line number and text, and `rejected_lines` reports them.
"""

from __future__ import annotations

import gzip
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pandas as pd

from . import fields, sources
from .errors import FlowLogReadError
from .sources import FlowLogFile, cloudwatch_messages


def _sql_str(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def _file_list(paths: list[Path]) -> str:
    return "[" + ", ".join(_sql_str(str(p)) for p in paths) + "]"


@dataclass
class FileGroup:
    """Files that share one layout and so can be read by one scan."""

    kind: str
    fields: tuple[str, ...]
    header: bool
    gzip: bool
    columns: tuple[str, ...]
    paths: list[Path]


def group_files(files: list[FlowLogFile]) -> list[FileGroup]:
    """Group sniffed files by layout, keeping the input order within and across groups."""
    groups: dict[tuple, FileGroup] = {}
    for f in files:
        if f.kind == "empty":
            continue
        key = (f.kind, f.fields, f.header, f.gzip, f.columns)
        groups.setdefault(key, FileGroup(*key, [])).paths.append(f.path)
    return list(groups.values())


def _typed_used(available: tuple[str, ...], cast: bool) -> list[str]:
    """The USED columns, typed, from columns named ``available`` (AWS names); cast with ``TRY_CAST``."""
    cols = []
    for name in fields.USED:
        fld = fields.BY_NAME[name]
        if name in available:
            src = f'"{name}"'
            # Parquet columns arrive typed by AWS (INT_32 ports); cast to sgaudit's types. A value that
            # does not fit becomes NULL and the record is reported as malformed downstream.
            expr = f"TRY_CAST({src} AS {fld.sql_type})" if cast else src
        else:
            expr = f"CAST(NULL AS {fld.sql_type})"
        cols.append(f'{expr} AS "{fld.column}"')
    return cols


def _select_used(available: tuple[str, ...], cast: bool) -> str:
    """The USED columns, typed, from a scan whose columns are ``available`` (AWS names)."""
    # The file a record came from: kept by the reduction for malformed records only, so that they can be
    # listed with their line afterwards (`senseless_lines`).
    return ", ".join(_typed_used(available, cast) + ["filename AS source_file"])


def _parquet_source(paths: list[Path], columns: tuple[str, ...], names: tuple[str, ...], extra: str = "") -> str:
    """Parquet files with their columns renamed to AWS's names (they carry underscore names)."""
    renames = ", ".join(f'"{c}" AS "{n}"' for c, n in zip(columns, names, strict=True))
    return (f"(SELECT {renames}, filename{extra} FROM read_parquet({_file_list(paths)}, union_by_name=true, "
            f"filename=true{', file_row_number=true' if extra else ''}))")


def scan_sql(group: FileGroup, workdir: Path, *, keep_rejects: bool = True) -> str:
    """A DuckDB table expression over one group of files with the typed USED columns.

    Parameters
    ----------
    group : FileGroup
        Files of one layout.
    workdir : Path
        Where CloudWatch JSON exports are unpacked into plain text (one line per event).
    keep_rejects : bool, default True
        Keep the lines that cannot be typed for `rejected_lines`. A second scan of files already read
        passes False: they were kept by the first, and are passed over.

    Returns
    -------
    str
        ``(SELECT … FROM read_csv(…))`` ready to use as a subquery.
    """
    if group.kind == "parquet":
        src = _parquet_source(group.paths, group.columns, group.fields)
        return f"(SELECT {_select_used(group.fields, cast=True)} FROM {src})"
    paths = group.paths
    if group.kind == "cloudwatch-json":
        paths = [_unpack_cloudwatch(p, workdir) for p in paths]
    columns = "{" + ", ".join(
        f"{_sql_str(n)}: {_sql_str(fields.BY_NAME[n].sql_type)}" for n in group.fields
    ) + "}"
    # quote/escape off: flow-log values never quote, and a stray quote must not swallow the next lines.
    # Compression as sniffed from the bytes: DuckDB would otherwise guess it from the file name.
    compression = "gzip" if group.gzip and group.kind == "text" else "none"
    read = (
        f"read_csv({_file_list(paths)}, delim=' ', header=false, skip={1 if group.header else 0}, "
        f"columns={columns}, nullstr='-', quote='', escape='', auto_detect=false, "
        f"compression='{compression}', {'store_rejects' if keep_rejects else 'ignore_errors'}=true, "
        f"strict_mode=true, filename=true)"
    )
    return f"(SELECT {_select_used(group.fields, cast=False)} FROM {read})"


#: Unpacked CloudWatch exports: the text file DuckDB reads → the JSON file the user gave. The text files
#: live in the analysis' temporary folder and go with it.
_unpacked: dict[str, str] = {}


def _unpack_cloudwatch(path: Path, workdir: Path) -> Path:
    """Write a CloudWatch JSON export's messages as a text file: event i on line i + 1."""
    msgs = cloudwatch_messages(path)
    out = Path(tempfile.mkstemp(prefix=path.name + ".", suffix=".log", dir=workdir)[1])
    out.write_text("".join(m + "\n" for m in msgs), encoding="utf-8")
    _unpacked[str(out)] = str(path)
    return out


def original_path(path: str) -> str:
    """Map a path DuckDB read back to the user's file (an unpacked CloudWatch export to its JSON)."""
    return _unpacked.get(path, path)


#: A line made only of lowercase words (letters, digits, ``-``, ``_``): maybe a header line, which the
#: caller must see whatever the listing's cap (a repeated header is passed over, another format is an error).
_HEADERISH = r"^\s*[a-z][a-z0-9_-]*(\s+[a-z][a-z0-9_-]*)*\s*$"


def rejected_lines(con: duckdb.DuckDBPyConnection, per_file: int, files: int
                   ) -> tuple[list[tuple[str, int, str, str, bool]], dict[str, int]]:
    """The lines the reader could not type: some listed, all counted.

    A line can fail in several columns at once; it is one malformed record, reported with its first
    reason. CloudWatch exports are reported against the JSON file, with the event's index as line - 1.

    Parameters
    ----------
    per_file, files : int
        The listing's cap: the first ``per_file`` lines of each of the first ``files`` files. Lines that
        may be header lines are returned too, whatever the cap, so that none is counted as malformed.

    Returns
    -------
    listed : list of (file, line, text, reason, within_cap)
    counts : dict
        File → how many lines of it the reader could not type (listed or not).
    """
    try:
        con.execute("""
            CREATE OR REPLACE TEMP TABLE rejected_line AS
            SELECT s.file_path, e.line, first(e.csv_line ORDER BY e.column_idx) AS text,
                   first(e.error_type ORDER BY e.column_idx) AS kind,
                   first(e.column_name ORDER BY e.column_idx) AS column_name,
                   first(e.error_message ORDER BY e.column_idx) AS message
            FROM reject_errors e JOIN reject_scans s USING (scan_id, file_id)
            GROUP BY ALL
        """)
    except duckdb.CatalogException:
        return [], {}  # no text scan ran, so there is no rejects table
    rows = con.sql(f"""
        WITH ranked AS (
            SELECT *, row_number() OVER (PARTITION BY file_path ORDER BY line) AS k,
                   dense_rank() OVER (ORDER BY file_path) AS f
            FROM rejected_line
        )
        SELECT file_path, line, text, kind, column_name, message, k <= {int(per_file)} AND f <= {int(files)}
        FROM ranked
        WHERE (k <= {int(per_file)} AND f <= {int(files)}) OR regexp_matches(text, '{_HEADERISH}')
        ORDER BY 1, 2
    """).fetchall()
    counts = dict(con.sql("SELECT file_path, count(*) FROM rejected_line GROUP BY 1").fetchall())
    con.execute("DROP TABLE rejected_line")
    return ([(original_path(f), int(n), str(t).strip(), _reason(kind, column, message), bool(within))
             for f, n, t, kind, column, message, within in rows],
            {original_path(f): int(n) for f, n in counts.items()})


#: What a value of each type the reader casts to must be, in words.
_TYPE_WORDS = {"USMALLINT": "a whole number from 0 to 65535", "UTINYINT": "a whole number from 0 to 255",
               "SMALLINT": "a whole number from -32768 to 32767", "INTEGER": "a whole number",
               "BIGINT": "a whole number"}
_CAST = re.compile(r"Could not convert string \"(?P<value>.*)\" to '(?P<type>\w+)'", re.DOTALL)
_COUNT = re.compile(r"Expected Number of Columns: (?P<expected>\d+) Found: (?P<found>\d+)")


def _reason(kind: str, column: str | None, message: str) -> str:
    """Why the reader could not type a line, in the words of flow logs rather than DuckDB's.

    ``srcport 'abc' is not a whole number from 0 to 65535``; ``the line has 13 fields where its format has 14``.
    Any other error keeps DuckDB's own text.
    """
    name = fields.BY_COLUMN[column].name if column in fields.BY_COLUMN else column
    cast = _CAST.search(message or "")
    if kind == "CAST" and cast:
        what = _TYPE_WORDS.get(cast["type"], f"of type {cast['type']}")
        return f"{name} {cast['value']!r} is not {what}"
    count = _COUNT.search(message or "")
    if kind in ("MISSING COLUMNS", "TOO MANY COLUMNS") and count:
        return (f"the line has {count['found']} fields where its format has {count['expected']} (fields are "
                "separated by single spaces)")
    return f"{kind} in {name or '?'}: {message}"


def is_read_error(exc: BaseException, group: FileGroup) -> bool:
    """Whether a DuckDB error from scanning ``group`` is about its files, to be told as `raise_read_error` does.

    IO and input errors always are. DuckDB's Parquet reader also raises its bare ``Error`` for damaged data
    pages (``dictionary offset out of range``, ``invalid TType``, ``Out of buffer``), which for a Parquet
    group is the file's fault too; running out of memory or being interrupted never is.
    """
    if isinstance(exc, (duckdb.IOException, duckdb.InvalidInputException)):
        return True
    return (group.kind == "parquet" and isinstance(exc, duckdb.Error)
            and not isinstance(exc, (duckdb.OutOfMemoryException, duckdb.InterruptException)))


def _unreadable_parquet(paths: list[Path]) -> Path | None:
    """The first of ``paths`` whose data DuckDB cannot read to the end (each read alone, every column).

    Every value is hashed: ``min``/``max`` or ``count`` could be answered from the file's statistics
    without reading a page.
    """
    con = duckdb.connect()
    try:
        for path in paths:
            try:
                con.execute("SELECT bit_xor(hash(COLUMNS(*))) FROM read_parquet(?)", [str(path)]).fetchall()
            except duckdb.Error:
                return path
    finally:
        con.close()
    return None


def raise_read_error(exc: Exception, group: FileGroup) -> None:
    """Turn a DuckDB IO error into a `FlowLogReadError` that names the file and says what to do.

    DuckDB's message says little (``Input is not a GZIP stream`` names no file), so on this path, which
    ends the analysis anyway, the files are looked at again to say which one is damaged and how.
    """
    msg = str(exc)
    # The longest path the message names: a.log.gz rather than a.log when both are read.
    culprit = max((p for p in group.paths if str(p) in msg), key=lambda p: len(str(p)), default=None)
    suspects = [culprit] if culprit else list(group.paths)
    if "GZIP" in msg.upper() and group.gzip:
        for path in suspects:
            sources.check_gzip(path)  # raises, naming the damage, for the first damaged file
    if "state machine" in msg and group.kind == "text":
        for path in suspects:
            _check_line_endings(path, group.gzip)
    if group.kind == "parquet" and culprit is None:
        # DuckDB's Parquet errors rarely name the file: each is read alone to find the damaged one.
        culprit = _unreadable_parquet(group.paths)
    where = culprit or ", ".join(str(p) for p in group.paths[:3]) + (" …" if len(group.paths) > 3 else "")
    if group.kind == "parquet":
        hint = ("The Parquet file is damaged: its metadata reads but its data does not. Download or write it "
                "again, or leave it out of --flow-logs.")
    elif "GZIP" in msg.upper() or "gzip" in msg:
        hint = ("The gzip data ends early: the file was cut short in transfer. Download it again, or leave it "
                "out of --flow-logs.")
    else:
        hint = ("Check that the file is a VPC flow log: text with one record per line and its fields separated "
                "by single spaces.")
    raise FlowLogReadError(f"{where}: cannot read ({msg.splitlines()[0]}). {hint}") from exc


def _check_line_endings(path: Path, is_gzip: bool) -> None:
    """Raise a clear error for a text file whose lines do not all end alike, which DuckDB cannot read.

    DuckDB takes the line ending from the start of a file (LF or CR LF) and fails on any other one later
    (a CR LF line among LF ones, a blank line that is just CR), without a line number.
    """
    crlf = None  # whether line 1 ends with CR LF
    with (gzip.open if is_gzip else open)(path, "rb") as fh:
        for i, raw in enumerate(fh, 1):  # binary lines end at LF only, as DuckDB's do
            line = raw.removesuffix(b"\n")
            cr = line.endswith(b"\r")
            crlf = cr if crlf is None else crlf
            if b"\r" in (line[:-1] if cr else line):
                what = "holds a carriage return (CR, \\r) inside it"
            elif cr != crlf:
                what = ("ends with a bare LF while line 1 ends with CR LF" if crlf
                        else "ends with CR LF (Windows) while line 1 ends with a bare LF")
            else:
                continue
            fix = "zcat FILE | tr -d '\\r' | gzip > FIXED.gz" if is_gzip else "tr -d '\\r' < FILE > FIXED"
            raise FlowLogReadError(
                f"{path}, line {i}: the line {what}; a file must end all its lines alike to be read. Remove "
                f"the carriage returns ({fix}), then pass the fixed file."
            )


def _lines(f: FlowLogFile) -> list[str]:
    """A file's lines as the reader sees them: numbered alike, and split at the same line endings.

    DuckDB ends lines at LF (a CR before it is part of the ending: a file of CR LF lines is read) and at
    nothing else, where Python's ``splitlines`` also splits at form feeds and other characters.
    """
    if f.kind == "cloudwatch-json":
        return cloudwatch_messages(f.path)
    # DuckDB does not check a gzip file's checksum; this does, and names a damaged file rather than fail.
    data = sources.gunzip(f.path) if f.gzip else f.path.read_bytes()
    text = data.decode("utf-8", errors="replace").removeprefix("\ufeff")
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()  # the line ending of the last line
    return [line.removesuffix("\r") for line in lines]


def _rejected_line_numbers(con: duckdb.DuckDBPyConnection, path: Path) -> set[int]:
    """The lines of one file that the reader could not type (and `rejected_lines` lists already)."""
    read_as = [str(path)] + [text for text, original in _unpacked.items() if original == str(path)]
    try:
        rows = con.sql(
            f"""
            SELECT DISTINCT e.line FROM reject_errors e JOIN reject_scans s USING (scan_id, file_id)
            WHERE s.file_path IN ({", ".join(_sql_str(p) for p in read_as)})
            """
        ).fetchall()
    except duckdb.CatalogException:
        return set()  # no text scan ran, so there is no rejects table
    return {int(n) for (n,) in rows}


def _text_records(con: duckdb.DuckDBPyConnection, f: FlowLogFile) -> str | None:
    """The typed lines of a text file or CloudWatch export, with ``line`` and ``text``, as a table expression.

    Lines are split at single spaces, as the reader does: a tab or a no-break space stays inside a value.
    Lines the reader could not type are left out: they are listed already, each malformed record once.
    """
    rejected = _rejected_line_numbers(con, f.path)
    rows = []
    for i, text in enumerate(_lines(f), 1):
        if (f.header and i == 1) or not text or i in rejected:
            continue  # the reader passes over blank lines too
        values = text.split(" ")
        if len(values) == len(f.fields):
            rows.append([i, text] + [None if v == "-" else v for v in values])
    if not rows:
        return None
    con.register("_lines", pd.DataFrame(rows, columns=["line", "text"] + list(f.fields), dtype=object))
    return f"(SELECT line, text, {', '.join(_typed_used(f.fields, cast=True))} FROM _lines)"


def _parquet_records(f: FlowLogFile) -> str:
    """The typed rows of a Parquet file, with ``line`` (the row number from 1) and ``text`` (its values)."""
    text = "concat_ws(' ', " + ", ".join(f"coalesce(CAST(\"{n}\" AS VARCHAR), '-')" for n in f.fields) + ")"
    src = _parquet_source([f.path], f.columns, f.fields, extra=", file_row_number")
    return (f"(SELECT file_row_number + 1 AS line, {text} AS text, {', '.join(_typed_used(f.fields, cast=True))} "
            f"FROM {src})")


def senseless_lines(con: duckdb.DuckDBPyConnection, f: FlowLogFile, lo: int | None, hi: int | None,
                    limit: int = 1000) -> list[tuple[int, str, str]]:
    """Lines of one file that type correctly but that the reduction counts as malformed: (line, text, why).

    Applies the reduction's own bucket expression (`reduction.bucket_sql`) to the file's lines (rows of a
    Parquet file, numbered from 1, their values as text), so the listing cannot disagree with the count;
    ``why`` is the first check the record fails (`reduction.why_sql`).
    """
    from . import reduction

    return typed_lines(con, f, lo, hi, lambda r: f"SELECT line, text, {reduction.why_sql()} FROM {r} "
                                                 "WHERE bucket = 'malformed'", limit)


def typed_lines(con: duckdb.DuckDBPyConnection, f: FlowLogFile, lo: int | None, hi: int | None,
                query: Callable[[str], str], limit: int = 1000) -> list[tuple]:
    """Lines of one file picked by ``query``, first ``line`` first.

    Parameters
    ----------
    con : duckdb.DuckDBPyConnection
        The analysis' connection.
    f : FlowLogFile
        A text, CloudWatch or Parquet file.
    lo, hi : int or None
        The window in Unix milliseconds, as the reduction had it.
    query : callable
        Given a table expression of the file's typed records with ``line``, ``text`` and the reduction's
        ``bucket`` (`reduction.bucket_sql`), returns a SELECT whose first column is ``line``.
    limit : int, default 1000
        At most this many lines.

    Returns
    -------
    list of tuple
        The rows of ``query``; empty for a file whose lines cannot be read again.
    """
    from . import reduction

    if f.kind == "parquet":
        records = _parquet_records(f)
    elif f.kind in ("text", "cloudwatch-json"):
        records = _text_records(con, f)
    else:
        return []
    if records is None:
        return []
    try:
        sql = reduction.bucket_sql(records, lo, hi)
        return con.sql(f"SELECT * FROM ({query(f'({sql}) AS r')}) ORDER BY 1 LIMIT {int(limit)}").fetchall()
    finally:
        if f.kind != "parquet":
            con.unregister("_lines")
