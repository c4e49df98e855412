"""Writing result tables as CSV, JSON lines or Parquet, chosen by the file's extension."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pandas as pd

from .errors import SgauditError

#: Output formats by extension: ``.json`` is one JSON array (what ``json.load`` reads), ``.jsonl`` one object
#: a line.
FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".parquet": "parquet"}


def iso_time(t: pd.Timestamp | None) -> str:
    """A tz-aware time → ISO 8601 in UTC with a ``Z`` (``2025-02-06T15:04:13Z``); "" when missing.

    Milliseconds are written only when the time has them, so whole-second times read as AWS writes them
    and times from millisecond records keep what tells them apart.
    """
    if t is None or pd.isna(t):
        return ""
    t = t.tz_convert("UTC")
    ms = t.microsecond // 1000
    return t.strftime("%Y-%m-%dT%H:%M:%S") + (f".{ms:03d}" if ms else "") + "Z"


def iso_utc(s: pd.Series) -> pd.Series:
    """tz-aware times → `iso_time` strings; empty when missing."""
    return pd.Series([iso_time(t) for t in s.dt.tz_convert("UTC")], index=s.index, dtype=object)


def output_kind(path: Path, also: tuple[str, ...] = ()) -> str:
    """``csv``, ``jsonl``, ``json`` or ``parquet`` from a file's extension; `SgauditError` for any other.

    ``also`` names the other extensions the caller takes (``.md``), for the error's list.
    """
    kind = FORMATS.get(Path(path).suffix.lower())
    if kind is None:
        if Path(path).is_dir():
            raise _is_a_folder(Path(path))  # the likelier mistake than an extension: say that one
        known = ", ".join([*FORMATS, *also])
        raise SgauditError(f"{path}: unknown output extension {Path(path).suffix!r}; use one of {known}")
    return kind


def check_writable(path: str | Path) -> None:
    """Fail before the analysis, not after it, on an output path that cannot be written.

    Raises
    ------
    SgauditError
        When ``path`` is a folder, or its nearest existing folder cannot be written to.
    """
    path = Path(path)
    if path.is_dir():
        raise _is_a_folder(path)
    parent = next((p for p in path.absolute().parents if p.exists()), None)
    if parent is None or not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise SgauditError(f"{path}: cannot write there ({parent} is not a folder you can write to); "
                           "choose another --out")


def _is_a_folder(path: Path) -> SgauditError:
    return SgauditError(f"{path}: is a folder; give the name of a file to write in it, e.g. "
                        f"{path / ('out' + (path.suffix or '.csv'))}")


def write_table(df: pd.DataFrame, path: str | Path) -> Path:
    """Write ``df`` to ``path`` in the format its extension names.

    Raises
    ------
    SgauditError
        For an extension other than .csv, .jsonl/.ndjson, .json or .parquet.
    """
    path = Path(path)
    kind = output_kind(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pandas(df, preserve_index=False)
        # A text column with no value in this run (no problem has a line text) is still text: a file's
        # schema must not change with the input it was made from.
        schema = pa.schema([f.with_type(pa.string()) if pa.types.is_null(f.type) else f for f in table.schema],
                           metadata=table.schema.metadata)
        pq.write_table(table.cast(schema), path)
        return path
    text = df.copy()
    for col in text.columns:
        if isinstance(text[col].dtype, pd.DatetimeTZDtype):
            text[col] = iso_utc(text[col])
    if kind == "csv":
        text.to_csv(path, index=False)
    elif kind == "json":
        path.write_text(_unescape_slashes(text.to_json(orient="records")), encoding="utf-8")
    elif len(text):
        path.write_text(_unescape_slashes(text.to_json(orient="records", lines=True)), encoding="utf-8")
    else:
        path.write_text("")  # no rows: no lines (pandas would write one empty line, which is no JSON)
    return path


#: One escape sequence of a JSON string: a backslash and the character after it.
_JSON_ESCAPE = re.compile(r"\\(.)")


def _unescape_slashes(text: str) -> str:
    r"""Pandas' JSON with ``\/`` written as ``/``, so that a CIDR such as ``0.0.0.0/0`` can be grepped.

    Pandas escapes every ``/`` and has no option against it in all versions. The escapes are matched from
    left to right, a backslash with the character after it, so that a backslash in the data (written
    ``\\``) followed by a slash (``\\\/``) keeps its backslash. Backslashes occur only inside
    JSON strings, so nothing else is touched.
    """
    return _JSON_ESCAPE.sub(lambda m: "/" if m.group(1) == "/" else m.group(0), text)


def companion(path: str | Path, name: str) -> Path:
    """``usage.csv`` → ``usage.<name>.csv``: where the companion tables of an output go."""
    path = Path(path)
    return path.with_name(f"{path.stem}.{name}{path.suffix}")


#: Markdown's syntax characters and HTML's, as text in a Markdown table cell (AWS names are free text).
_MD_ESCAPES = {"\\": "\\\\", "`": "\\`", "*": "\\*", "_": "\\_", "[": "\\[", "]": "\\]", "|": "\\|", "~": "\\~",
               "#": "\\#", "!": "\\!", "&": "&amp;", "<": "&lt;", ">": "&gt;"}


def md_escape(value) -> str:
    """Text safe in a Markdown table cell: Markdown syntax, ``|`` and HTML ``<``, ``>``, ``&`` escaped."""
    text = "" if value is None or (not isinstance(value, str) and pd.isna(value)) else str(value)
    text = " ".join(text.split())  # a newline would end the table row
    return "".join(_MD_ESCAPES.get(ch, ch) for ch in text)
