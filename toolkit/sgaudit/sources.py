"""Finding flow-log files and telling what each one holds.

A path is a file or a folder; folders are walked recursively, so a local copy of an S3 prefix in either
key layout (``AWSLogs/<account>/vpcflowlogs/<region>/YYYY/MM/DD/`` or the Hive-style
``aws-account-id=…/aws-service=vpcflowlogs/…/year=…/``) works as it is. Each file is sniffed from its
first bytes, not its name: gzip or plain text, Parquet, or the JSON that ``aws logs filter-log-events``
prints. Text files delivered to S3 begin with a header line naming the fields; files without one
(CloudWatch Logs exports) take the user's ``--format``, or the default version-2 format.
"""

from __future__ import annotations

import gzip
import io
import json
import zlib
from dataclasses import dataclass
from pathlib import Path

from . import fields
from .errors import FlowLogFormatError, FlowLogReadError

GZIP_MAGIC = b"\x1f\x8b"
PARQUET_MAGIC = b"PAR1"

#: Names a folder walk passes over: they are documentation or bookkeeping, never flow logs.
_NOT_LOGS = {".md", ".txt.md", ".rst", ".html", ".py", ".yml", ".yaml", ".csv", ".sha256", ".manifest"}


@dataclass(frozen=True)
class FlowLogFile:
    """One input file and how to read it.

    Attributes
    ----------
    path : Path
        The file.
    kind : str
        ``text`` (space-separated records, plain or gzip), ``parquet``, ``cloudwatch-json`` (the output
        of ``aws logs filter-log-events``, or one event object per line) or ``empty``.
    fields : tuple of str
        The AWS field names of its records, in order.
    header : bool
        Whether line 1 is a header line (and so not a record).
    gzip : bool
        Whether the bytes are gzip-compressed (told from the bytes, never from the name).
    columns : tuple of str
        For Parquet, the physical column names, in the order of ``fields``.
    """

    path: Path
    kind: str
    fields: tuple[str, ...]
    header: bool
    gzip: bool
    columns: tuple[str, ...] = ()


def discover(paths: list[str | Path]) -> list[Path]:
    """Expand files and folders into a sorted list of files.

    Parameters
    ----------
    paths : list of str or Path
        Files, or folders to walk recursively. Hidden files and obvious non-log files (``.md``, ``.py``…)
        inside folders are passed over; a file named explicitly is always read.

    Returns
    -------
    list of Path
        Files in a stable order (sorted per argument, arguments in the order given), without repeats.

    Raises
    ------
    FlowLogReadError
        When a path does not exist, or a folder holds no files.
    """
    out: list[Path] = []
    seen: set[Path] = set()
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            found = sorted(
                f for f in p.rglob("*")
                if f.is_file()
                and not any(part.startswith(".") for part in f.relative_to(p).parts)
                and f.suffix.lower() not in _NOT_LOGS
            )
            if not found:
                raise FlowLogReadError(f"{p}: the folder holds no flow-log files")
        elif p.is_file():
            found = [p]
        else:
            raise FlowLogReadError(f"{p}: no such file or folder; check the --flow-logs path")
        for f in found:
            key = f.resolve()
            if key not in seen:
                seen.add(key)
                out.append(f)
    return out


def _first_line(path: Path, is_gzip: bool) -> str:
    """The first non-blank line of a text file, or ``""`` if it has none."""
    opener = gzip.open if is_gzip else open
    try:
        with opener(path, "rb") as fh:
            for raw in io.BufferedReader(fh):  # type: ignore[arg-type]
                if raw.strip():
                    return raw.decode("utf-8", errors="replace").strip()
                # Only blank lines so far: keep looking, a few lines at most in practice.
    except (EOFError, OSError, zlib.error) as exc:
        raise FlowLogReadError(
            f"{path}: cannot read the start of the file ({exc}); the file is damaged or truncated. "
            "Download it again, or leave it out of --flow-logs."
        ) from exc
    return ""


def sniff(path: Path, fmt: tuple[str, ...] | None = None) -> FlowLogFile:
    """Tell what a file holds and which fields its records have.

    Parameters
    ----------
    path : Path
        The file.
    fmt : tuple of str, optional
        The user's ``--format``, for files without a header line. The default version-2 format when
        not given. A file's own header always wins over it.

    Returns
    -------
    FlowLogFile

    Raises
    ------
    FlowLogFormatError
        For a header naming an unknown field, or a format lacking a field sgaudit needs.
    FlowLogReadError
        For a file that cannot be read.
    """
    with open(path, "rb") as fh:
        magic = fh.read(4)
    if not magic:
        return FlowLogFile(path, "empty", (), False, False)
    if magic == PARQUET_MAGIC:
        names, columns = _parquet_fields(path)
        return FlowLogFile(path, "parquet", names, False, False, columns)
    is_gzip = magic[:2] == GZIP_MAGIC
    line = _first_line(path, is_gzip)
    if not line:
        return FlowLogFile(path, "empty", (), False, is_gzip)
    if line[0] in "{[":
        names = fmt or fields.DEFAULT_FORMAT
        fields.check_required(names, f"{path} (--format)")
        return FlowLogFile(path, "cloudwatch-json", names, False, is_gzip)
    if fields.looks_like_header(line):
        names = fields.parse_format(line, where=f"{path}, line 1 (header)")
        fields.check_required(names, f"{path}, line 1 (header)")
        return FlowLogFile(path, "text", names, True, is_gzip)
    names = fmt or fields.DEFAULT_FORMAT
    n = len(line.split())
    if n != len(names):
        origin = "--format" if fmt else "the default version-2 format (no header line, no --format given)"
        raise FlowLogFormatError(
            f"{path}, line 1: the record has {n} fields but {origin} has {len(names)}: {line[:200]!r}. "
            "Pass --format with the flow log's LogFormat (aws ec2 describe-flow-logs shows it)."
        )
    fields.check_required(names, f"{path} (--format)")
    return FlowLogFile(path, "text", names, False, is_gzip)


def _parquet_fields(path: Path) -> tuple[tuple[str, ...], tuple[str, ...]]:
    import pyarrow.parquet as pq

    try:
        names = pq.read_schema(path).names
    except Exception as exc:  # pyarrow raises several unrelated types for a damaged footer
        raise FlowLogReadError(f"{path}: not a readable Parquet file ({exc}); download it again") from exc
    # Athena's DDL and AWS's Parquet delivery use underscore names (tcp_flags); accept AWS's too.
    out = fields.parse_format(" ".join(names), where=f"{path} (Parquet columns)")
    fields.check_required(out, f"{path} (Parquet columns)")
    return out, tuple(names)


def cloudwatch_messages(path: Path) -> list[str]:
    """The record lines inside a CloudWatch Logs JSON export.

    Accepts what ``aws logs filter-log-events`` (or ``get-log-events``) prints, ``{"events": [...]}``, a
    bare list of events, and one event object per line. Event ``i`` becomes line ``i + 1`` so that
    errors can point at it.

    Raises
    ------
    FlowLogReadError
        When the JSON cannot be parsed or holds no ``message``.
    """
    opener = gzip.open if _is_gzip(path) else open
    with opener(path, "rt", encoding="utf-8") as fh:
        text = fh.read()
    try:
        doc = json.loads(text)
        if isinstance(doc, dict) and "events" not in doc:
            raise FlowLogReadError(
                f"{path}: JSON with keys {list(doc)[:4]} but no 'events': not a CloudWatch Logs export "
                "(the output of 'aws logs filter-log-events'). Inventory files go to --inventory; leave this "
                "file out of --flow-logs."
            )
        events = doc["events"] if isinstance(doc, dict) else doc
    except json.JSONDecodeError:
        events = []
        for i, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise FlowLogReadError(
                    f"{path}, line {i}: not JSON ({exc.msg}): {line[:120]!r}. Expected the output of "
                    "'aws logs filter-log-events' or one event object per line."
                ) from exc
    msgs = []
    for i, ev in enumerate(events):
        if not isinstance(ev, dict) or "message" not in ev:
            raise FlowLogReadError(f"{path}: event {i} has no 'message' field: {str(ev)[:120]!r}")
        msgs.append(str(ev["message"]).strip())
    return msgs


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(2) == GZIP_MAGIC
