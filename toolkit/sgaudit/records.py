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
import tempfile
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pandas as pd

from . import fields
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


def _select_used(available: tuple[str, ...], cast: bool) -> str:
    """The USED columns, typed, from a scan whose columns are ``available`` (AWS names)."""
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
    # The file a record came from: kept by the reduction for malformed records only, so that they can be
    # listed with their line afterwards (`malformed_lines`).
    cols.append("filename AS source_file")
    return ", ".join(cols)


def scan_sql(group: FileGroup, workdir: Path) -> str:
    """A DuckDB table expression over one group of files with the typed USED columns.

    Parameters
    ----------
    group : FileGroup
        Files of one layout.
    workdir : Path
        Where CloudWatch JSON exports are unpacked into plain text (one line per event).

    Returns
    -------
    str
        ``(SELECT … FROM read_csv(…))`` ready to use as a subquery.
    """
    if group.kind == "parquet":
        # Parquet columns carry underscore names; rename them to AWS's names first.
        renames = ", ".join(f'"{c}" AS "{n}"' for c, n in zip(group.columns, group.fields, strict=True))
        src = (f"(SELECT {renames}, filename FROM read_parquet({_file_list(group.paths)}, union_by_name=true, "
               "filename=true))")
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
        f"compression='{compression}', store_rejects=true, strict_mode=true, filename=true)"
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


def rejected_lines(con: duckdb.DuckDBPyConnection) -> list[tuple[str, int, str, str]]:
    """Every line the reader could not type, once each: (file, line, text, reason).

    A line can fail in several columns at once; it is one malformed record, reported with its first
    reason. CloudWatch exports are reported against the JSON file, with the event's index as line - 1.
    """
    try:
        rows = con.sql(
            """
            SELECT s.file_path, e.line, first(e.csv_line ORDER BY e.column_idx),
                   first(e.error_type || ' in ' || coalesce(e.column_name, '?') || ': ' || e.error_message
                         ORDER BY e.column_idx)
            FROM reject_errors e JOIN reject_scans s USING (scan_id, file_id)
            GROUP BY ALL ORDER BY 1, 2
            """
        ).fetchall()
    except duckdb.CatalogException:
        return []  # no text scan ran, so there is no rejects table
    return [(original_path(f), int(n), str(t).strip(), r) for f, n, t, r in rows]


def raise_read_error(exc: Exception, group: FileGroup) -> None:
    """Turn a DuckDB IO error into a `FlowLogReadError` that names the file and says what to do."""
    msg = str(exc)
    culprit = next((str(p) for p in group.paths if str(p) in msg), None)
    where = culprit or ", ".join(str(p) for p in group.paths[:3]) + (" …" if len(group.paths) > 3 else "")
    hint = (
        "The gzip data ends early: the file was cut short in transfer. Download it again, or leave it "
        "out of --flow-logs."
        if "GZIP" in msg.upper() or "gzip" in msg else "Check that the file is a VPC flow log."
    )
    raise FlowLogReadError(f"{where}: cannot read ({msg.splitlines()[0]}). {hint}") from exc


def _lines(f: FlowLogFile) -> list[str]:
    if f.kind == "cloudwatch-json":
        return cloudwatch_messages(f.path)
    opener = gzip.open if f.gzip else open
    with opener(f.path, "rt", encoding="utf-8", errors="replace") as fh:
        return fh.read().splitlines()


def senseless_lines(con: duckdb.DuckDBPyConnection, f: FlowLogFile, lo: int | None, hi: int | None,
                    limit: int = 1000) -> list[tuple[int, str]]:
    """Lines of one file that type correctly but that the reduction counts as malformed: (line, text).

    Applies the reduction's own bucket expression (`reduction.bucket_sql`) to the file's lines, so the
    listing cannot disagree with the count.
    """
    from . import reduction

    if f.kind not in ("text", "cloudwatch-json"):
        return []
    rows = []
    for i, text in enumerate(_lines(f), 1):
        if (f.header and i == 1) or not text.strip():
            continue
        values = text.split()
        if len(values) == len(f.fields):
            rows.append([i, text] + [None if v == "-" else v for v in values])
    if not rows:
        return []
    df = pd.DataFrame(rows, columns=["line", "text"] + list(f.fields), dtype=object)
    typed = ", ".join(
        f'TRY_CAST("{fields.BY_NAME[n].name}" AS {fields.BY_NAME[n].sql_type}) AS "{fields.BY_NAME[n].column}"'
        if n in f.fields else f'CAST(NULL AS {fields.BY_NAME[n].sql_type}) AS "{fields.BY_NAME[n].column}"'
        for n in fields.USED)
    con.register("_lines", df)
    try:
        sql = reduction.bucket_sql(f"(SELECT line, text, {typed} FROM _lines)",
                                   lo if lo is not None else -(2**62), hi if hi is not None else 2**62)
        return con.sql(f"SELECT line, text FROM ({sql}) WHERE bucket = 'malformed' ORDER BY line "
                       f"LIMIT {int(limit)}").fetchall()
    finally:
        con.unregister("_lines")
