"""Finding flow-log files and telling what each one holds.

A path is a file or a folder; folders are walked recursively, so a local copy of an S3 prefix in either
key layout (``AWSLogs/<account>/vpcflowlogs/<region>/YYYY/MM/DD/`` or the Hive-style
``aws-account-id=…/aws-service=vpcflowlogs/…/year=…/``) works as it is. Each file is sniffed from its
first bytes, not its name: gzip or plain text, Parquet, or the JSON that ``aws logs filter-log-events``
prints. Text files delivered to S3 begin with a header line naming the fields; files without one
(CloudWatch Logs exports) take the user's ``--format``, or the default version-2 format.

Damage is named, never passed over: a folder or file that cannot be read, gzip data cut short or followed
by other bytes, an export that is not UTF-8 or breaks off, a file that is no flow log at all (UTF-16 text,
a zip or bzip2 archive, binary data: told from its first bytes). A UTF-8 byte-order mark is passed over.
"""

from __future__ import annotations

import codecs
import gzip
import io
import json
import os
import re
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from . import fields
from .errors import FlowLogFormatError, FlowLogReadError

GZIP_MAGIC = b"\x1f\x8b"
PARQUET_MAGIC = b"PAR1"

#: First bytes of files that are not flow logs but are often mistaken for them: (magic, what, what to do).
#: UTF-32 before UTF-16, whose byte-order mark is a prefix of UTF-32's little-endian one.
_OTHER_FILES = [
    (b"\xff\xfe\x00\x00", "UTF-32 text", "re-save it as UTF-8 (iconv -f UTF-32 -t UTF-8 FILE > FIXED)"),
    (b"\x00\x00\xfe\xff", "UTF-32 text", "re-save it as UTF-8 (iconv -f UTF-32 -t UTF-8 FILE > FIXED)"),
    (b"\xff\xfe", "UTF-16 text", "re-save it as UTF-8 (iconv -f UTF-16 -t UTF-8 FILE > FIXED)"),
    (b"\xfe\xff", "UTF-16 text", "re-save it as UTF-8 (iconv -f UTF-16 -t UTF-8 FILE > FIXED)"),
    (b"PK\x03\x04", "a zip archive", "unzip it first and pass the files inside"),
    (b"PK\x05\x06", "an empty zip archive", "leave it out of --flow-logs"),
    (b"BZh", "bzip2-compressed", "decompress it first (bunzip2), or compress it with gzip instead"),
    (b"\xfd7zXZ\x00", "xz-compressed", "decompress it first (unxz), or compress it with gzip instead"),
    (b"\x28\xb5\x2f\xfd", "zstd-compressed", "decompress it first (unzstd), or compress it with gzip instead"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive", "extract it first and pass the files inside"),
]

#: Bytes no flow log holds: control characters other than tab, line feed and carriage return. They tell
#: binary data (an image, an encrypted file…) from text, with bytes that are mostly not UTF-8.
_CONTROL = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")

#: What a CloudWatch event with an empty message becomes: a line the reader cannot type, so that the event
#: counts as one malformed record (a blank line would be passed over, and the event lost).
EMPTY_MESSAGE = "(empty message)"

#: The start of a line of a CloudWatch Logs export task's file: the event's own timestamp, then its message.
_EXPORT_TASK_LINE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z \S")

#: Extensions a folder walk passes over: they are documentation or bookkeeping, never flow logs.
_NOT_LOGS = {".md", ".rst", ".html", ".py", ".yml", ".yaml", ".csv", ".sha256", ".manifest"}
#: Names a folder walk passes over whatever their extension (``README``, ``README.txt``, ``LICENSE``): not
#: ``.txt`` as such, which a CloudWatch export saved by hand may well be.
_NOT_LOGS_NAMES = re.compile(r"(readme|license|licence|notice|changelog)([._-].*)?", re.IGNORECASE)


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


def discover(paths: list[str | Path], passed_over: list[Path] | None = None) -> list[Path]:
    """Expand files and folders into a sorted list of files.

    Parameters
    ----------
    paths : list of str or Path
        Files, or folders to walk recursively. Hidden files and obvious non-log files (``.md``, ``.py``,
        ``README``…) inside folders are passed over; a file named explicitly is always read.
    passed_over : list, optional
        When given, the non-log files passed over (not the hidden ones) are appended to it, for the
        problems table to name.

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
        try:
            is_dir, is_file = p.is_dir(), p.is_file()
        except OSError as exc:  # a folder on the way that may not be entered
            raise FlowLogReadError(f"{p}: cannot be accessed ({exc.strerror}); check the permissions of it and "
                                   "of the folders above it") from exc
        if is_dir:
            found = _walk(p, passed_over)
            if not found:
                raise FlowLogReadError(f"{p}: the folder holds no flow-log files")
        elif is_file:
            found = [p]
        else:
            raise FlowLogReadError(f"{p}: no such file or folder; check the --flow-logs path")
        for f in found:
            key = f.resolve()
            if key not in seen:
                seen.add(key)
                out.append(f)
    return out


def find_copies(paths: list[Path]) -> list[tuple[Path, Path]]:
    """The files with the same bytes as an earlier one, to be left out: each record is read once.

    The same delivery downloaded into two folders, or a folder passed beside a copy of one of its files,
    would otherwise count every record twice: bytes and packets double while connections do not.
    Only files of equal size are compared (by their BLAKE2 digest), so a run without copies reads
    nothing more than a ``stat`` of each file. Copies in another form (a gzip file and its text, a
    CloudWatch export in two formats) are not found: each record must be given once.

    Returns
    -------
    list of (Path, Path)
        Each copy, with the earlier file it repeats, in the order given.
    """
    import hashlib

    by_size: dict[int, list[Path]] = {}
    for p in paths:
        by_size.setdefault(p.stat().st_size, []).append(p)
    first: dict[bytes, Path] = {}
    copies: dict[Path, Path] = {}
    for same in by_size.values():
        if len(same) < 2:
            continue
        for p in same:
            digest = hashlib.blake2b()
            with open(p, "rb") as fh:
                for chunk in iter(lambda fh=fh: fh.read(1 << 20), b""):
                    digest.update(chunk)
            key = digest.digest()
            if key in first:
                copies[p] = first[key]
            else:
                first[key] = p
    return [(p, copies[p]) for p in paths if p in copies]


def _walk(folder: Path, passed_over: list[Path] | None = None) -> list[Path]:
    """The flow-log files under a folder, sorted: hidden entries and obvious non-log files passed over.

    The non-log files are appended to ``passed_over`` when it is given.

    Raises
    ------
    FlowLogReadError
        For a folder (the given one or one below it) that cannot be listed: skipping it would drop its
        records without a word.
    """
    def fail(exc: OSError) -> None:
        raise FlowLogReadError(
            f"{exc.filename}: cannot list the folder ({exc.strerror}); its files would be left out. Make it "
            "readable (chmod, or run as its owner), or pass the other folders to --flow-logs instead."
        ) from exc

    found = []
    for root, dirs, names in os.walk(folder, onerror=fail):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for f in (Path(root) / n for n in names if not n.startswith(".")):
            if not f.is_file():
                continue
            if f.suffix.lower() in _NOT_LOGS or _NOT_LOGS_NAMES.fullmatch(f.name):
                if passed_over is not None:
                    passed_over.append(f)
            else:
                found.append(f)
    return sorted(found)


def _start(path: Path, is_gzip: bool) -> tuple[bytes, list[str]]:
    """The first bytes of a file's content and its first two non-blank lines (fewer if it has fewer).

    The content is the decompressed one for gzip; a UTF-8 byte-order mark is taken off line 1 (DuckDB
    passes over it too). Two lines, so that a header line alone can be told from a header with records.
    """
    opener = gzip.open if is_gzip else open
    lines: list[str] = []
    try:
        with opener(path, "rb") as fh:
            reader = io.BufferedReader(fh)  # type: ignore[arg-type]
            start = reader.peek(64)[:64]
            for raw in reader:
                text = raw.decode("utf-8", errors="replace").removeprefix("\ufeff").strip()
                if text:
                    lines.append(text)
                    if len(lines) == 2:
                        break
                # Blank lines so far: keep looking, a few lines at most in practice.
    except (EOFError, OSError, zlib.error) as exc:
        if is_gzip:
            check_gzip(path)  # says how the gzip data is damaged: cut short, trailing bytes, corrupt
        raise FlowLogReadError(
            f"{path}: cannot read the start of the file ({exc}); the file is damaged or truncated. "
            "Download it again, or leave it out of --flow-logs."
        ) from exc
    return start, lines


def _not_text(path: Path, start: bytes, inside: str = "") -> None:
    """Raise a clear error for a file that is no flow log at all, told from its first bytes.

    Such files would otherwise be read as text with the wrong number of fields, and the advice to pass
    ``--format`` would send the user the wrong way.
    """
    if inside and start.startswith(PARQUET_MAGIC):
        # A literal reading of "each file is compressed": AWS compresses inside Parquet, not around it.
        raise FlowLogReadError(f"{path}: a Parquet file compressed whole with gzip; gunzip it first "
                               "(Parquet compresses its own pages, and sgaudit reads such files as they are).")
    for magic, what, todo in _OTHER_FILES:
        if start.startswith(magic):
            raise FlowLogReadError(f"{path}: the file{inside} is {what}, not a flow log; {todo}.")
    if b"\x00" in start:
        # Text in UTF-16 without a byte-order mark: every other byte of ASCII characters is zero.
        if start[1::2].count(0) >= len(start) // 4 or start[0::2].count(0) >= len(start) // 4:
            raise FlowLogReadError(f"{path}: the file{inside} is UTF-16 text, not a flow log; "
                                   "re-save it as UTF-8 (iconv -f UTF-16 -t UTF-8 FILE > FIXED).")
    if _CONTROL.search(start) or _mostly_not_utf8(start):
        # Shown as hex, never as text: the bytes themselves would garble the terminal.
        shown = " ".join(f"0x{b:02x}" for b in start[:8]) + (" …" if len(start) > 8 else "")
        raise FlowLogReadError(f"{path}: the file{inside} is binary data, not a flow log: its first bytes are "
                               f"{shown}; leave it out of --flow-logs.")


def _mostly_not_utf8(start: bytes) -> bool:
    """Whether a file's first bytes are not UTF-8 and over a quarter of them not ASCII: binary, not text.

    Text in a legacy encoding (a Latin-1 export with one ``é``) is mostly ASCII: it is left to the reader,
    which names the byte and the encoding. A character cut off at the end of ``start`` is no error.
    """
    try:
        codecs.getincrementaldecoder("utf-8")().decode(start, final=False)
    except UnicodeDecodeError:
        return sum(b >= 0x80 for b in start) * 4 > len(start)
    return False


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
        Of kind ``empty`` also for a header line without records and a CloudWatch export without events,
        so that every file without records is reported alike.

    Raises
    ------
    FlowLogFormatError
        For a header naming an unknown field, or a format lacking a field sgaudit needs.
    FlowLogReadError
        For a file that cannot be read, or that is no flow log (UTF-16 text, a zip archive, binary data…).
    """
    try:
        with open(path, "rb") as fh:
            magic = fh.read(64)
    except OSError as exc:
        raise FlowLogReadError(f"{path}: cannot be opened ({exc.strerror}); make it readable (chmod, or run as "
                               "its owner), or leave it out of --flow-logs") from exc
    if not magic:
        return FlowLogFile(path, "empty", (), False, False)
    if magic.startswith(PARQUET_MAGIC):
        names, columns = _parquet_fields(path)
        return FlowLogFile(path, "parquet", names, False, False, columns)
    is_gzip = magic[:2] == GZIP_MAGIC
    if not is_gzip:
        _not_text(path, magic)
    start, lines = _start(path, is_gzip)
    if is_gzip:
        _not_text(path, start, " inside the gzip data")
    if not lines:
        return FlowLogFile(path, "empty", (), False, is_gzip)
    line = lines[0]
    if line[0] in "{[":
        names = fmt or fields.DEFAULT_FORMAT
        fields.check_required(names, f"{path} (--format)")
        kind = "cloudwatch-json" if _holds_events(path, is_gzip) else "empty"
        return FlowLogFile(path, kind, names, False, is_gzip)
    if fields.looks_like_header(line):
        names = fields.parse_format(line, where=f"{path}, line 1 (header)")
        fields.check_required(names, f"{path}, line 1 (header)")
        return FlowLogFile(path, "text" if len(lines) > 1 else "empty", names, True, is_gzip)
    names = fmt or fields.DEFAULT_FORMAT
    n = len(line.split())
    if n != len(names) and _EXPORT_TASK_LINE.match(line):
        # CreateExportTask (CloudWatch Logs → S3) writes each event as "<its ISO timestamp> <message>".
        raise FlowLogFormatError(
            f"{path}, line 1: starts with a timestamp ({line.split()[0]}), as the files of a CloudWatch Logs "
            "export task (aws logs create-export-task) write each event: that is no flow-log field. Cut it off "
            "first (zcat FILE | cut -d' ' -f2- > FILE.log) and pass the result with --format set to the flow "
            "log's LogFormat, or read the log group directly: --flow-logs cloudwatch://LOG-GROUP."
        )
    if n != len(names):
        origin = "--format" if fmt else "the default version-2 format (no header line, no --format given)"
        raise FlowLogFormatError(
            f"{path}, line 1: the record has {n} fields but {origin} has {len(names)}: {line[:200]!r}. "
            "Pass --format with the flow log's LogFormat (aws ec2 describe-flow-logs shows it); if the file "
            "is not a flow log, leave it out of --flow-logs."
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


def verify_gzip(paths: list[Path], threads: int) -> None:
    """Check every gzip file's checksum, ``threads`` at a time; raise for the first damaged one in order.

    DuckDB, which reads the files, does not check gzip's CRC-32: a file damaged inside its compressed data
    (a bit changed in transfer or on disk) is read as quietly different records, another interface or
    peer among them. ISA-L decompresses into one reused buffer at about a quarter of the time ``pigz -dc``
    takes for the same files, so every run affords it.

    Raises
    ------
    FlowLogReadError
        Naming the first damaged file (in the given order) and how it is damaged (`check_gzip`).
    """
    from concurrent.futures import ThreadPoolExecutor

    buffers = threading.local()  # one per thread: a new 4 MiB buffer per file made 4,000 small files take 6 s

    def crc_matches(path: Path) -> bool:
        if not hasattr(buffers, "buffer"):
            buffers.buffer = bytearray(1 << 22)
        return _crc_matches(path, buffers.buffer)

    with ThreadPoolExecutor(max(1, threads)) as pool:
        sound = list(pool.map(crc_matches, paths))
    for path, ok in zip(paths, sound, strict=True):
        if not ok:
            check_gzip(path)  # says how it is damaged
            raise FlowLogReadError(f"{path}: the gzip file is damaged. Download it again, or leave it out of "
                                   "--flow-logs.")


def _crc_matches(path: Path, buffer: bytearray) -> bool:
    """Whether a gzip file decompresses to its end with every member's CRC-32 and length as recorded.

    ``buffer`` receives the text and is overwritten: only the checksums matter.
    """
    from isal import igzip
    from isal.isal_zlib import error as isal_error

    try:
        with igzip.open(path, "rb") as fh:
            while fh.readinto(buffer):
                pass
    except (OSError, EOFError, isal_error):  # a bad checksum or length is igzip's BadGzipFile, an OSError
        return False
    return True


def check_gzip(path: Path) -> None:
    """Read a gzip file to its end, and raise a `FlowLogReadError` that says how it is damaged, if it is."""
    for _ in _inflate(path):
        pass


def gunzip(path: Path) -> bytes:
    """A whole gzip file decompressed; a `FlowLogReadError` that says how it is damaged, if it is."""
    return b"".join(_inflate(path))


def _inflate(path: Path, chunk: int = 1 << 20) -> Iterator[bytes]:
    """The decompressed bytes of a gzip file, member after member (``cat a.gz b.gz`` is gzip too).

    Raises
    ------
    FlowLogReadError
        When the data ends early, bytes that are no gzip member follow the data, or the data is corrupt.
    """
    # The member's decompressor; the file offset of the first byte not yet decompressed; bytes of text out.
    d, at, out = zlib.decompressobj(wbits=31), 0, 0
    with open(path, "rb") as fh:
        data = fh.read(chunk)
        while data:
            if d.eof:  # a member ended: what follows must be another one
                if len(data) < 2:
                    data += fh.read(chunk)
                if data[:2] != GZIP_MAGIC:
                    size = path.stat().st_size
                    raise FlowLogReadError(
                        f"{path}: {size - at:,} trailing bytes after the gzip data (which ends at byte {at:,}): "
                        "the file was damaged after it was written. Download it again, or cut it at the end of "
                        f"the data (head -c {at} FILE > FIXED.gz)."
                    )
                d = zlib.decompressobj(wbits=31)
            try:
                text = d.decompress(data)
            except zlib.error as exc:
                # zlib says "incorrect data check" when the data decompresses but its CRC-32 does not match.
                what = ("its checksum does not match the text it holds" if "data check" in str(exc)
                        else "the data is corrupt")
                raise FlowLogReadError(
                    f"{path}: the gzip file is damaged: {what} ({exc}). Download it again, or leave it out "
                    "of --flow-logs."
                ) from exc
            out += len(text)
            yield text
            at += len(data) - len(d.unused_data)
            data = d.unused_data if d.eof else b""
            data = data or fh.read(chunk)
    if not d.eof:
        raise FlowLogReadError(
            f"{path}: the gzip data ends early (after {out:,} bytes of text): the file was cut short in "
            "transfer. Download it again, or leave it out of --flow-logs."
        )


def _holds_events(path: Path, is_gzip: bool) -> bool:
    """Whether a CloudWatch export holds any event.

    A ``"message"`` key near the start says so cheaply (events come first in what the AWS CLI prints);
    without one the whole export is parsed, which is quick for the few small files that lack it.
    """
    if is_gzip:
        head = b""
        for part in _inflate(path):
            head += part
            if len(head) >= 1 << 20:
                break
    else:
        with open(path, "rb") as fh:
            head = fh.read(1 << 20)
    return b'"message"' in head or bool(cloudwatch_messages(path))


def cloudwatch_messages(path: Path) -> list[str]:
    """The record lines inside a CloudWatch Logs JSON export: one line per event.

    Accepts what ``aws logs filter-log-events`` (or ``get-log-events``) prints, ``{"events": [...]}``, a
    bare list of events, and one event object per line. Event ``i`` becomes line ``i + 1`` so that
    errors can point at it: a line break inside a message becomes a space, and an empty message
    `EMPTY_MESSAGE`, so that every event stays one line, and so one record.

    Raises
    ------
    FlowLogReadError
        When the file is not UTF-8, is cut short, cannot be parsed or holds an event without ``message``.
    """
    data = gunzip(path) if _is_gzip(path) else path.read_bytes()
    events = _events(path, _decode(path, data))
    lines = []
    for i, ev in enumerate(events):
        if not isinstance(ev, dict) or "message" not in ev:
            raise FlowLogReadError(f"{path}: event {i} has no 'message' field: {str(ev)[:120]!r}")
        lines.append(_event_line(ev["message"]))
    return lines


def _event_line(message: object) -> str:
    """One event's message as one line of text (see `cloudwatch_messages`)."""
    text = "" if message is None else str(message)
    # DuckDB ends a line at \n or \r only; other characters Python calls line breaks stay inside the line.
    text = re.sub(r"[\r\n]+", " ", text.strip())
    return text or EMPTY_MESSAGE


def _decode(path: Path, data: bytes) -> str:
    """An export's bytes as text: UTF-8, with or without a byte-order mark."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        near = data[max(0, exc.start - 40):exc.start + 10]
        raise FlowLogReadError(
            f"{path}, line {line}: byte 0x{data[exc.start]:02x} at offset {exc.start:,} is not UTF-8 "
            f"(near {near!r}): the export was saved in another encoding (Latin-1 or Windows-1252?). Re-save it "
            "as UTF-8 (iconv -f latin1 -t utf-8 FILE > FIXED.json), or export it again with 'aws logs "
            "filter-log-events'."
        ) from exc


def _events(path: Path, text: str) -> list:
    """The events of an export's text: a whole JSON document, or one event object per line."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        if exc.msg != "Extra data":  # more than one value: one event per line; otherwise a broken document
            raise FlowLogReadError(_json_problem(path, text, exc)) from exc
        pages = _appended_pages(text)
        return [ev for page in pages for ev in page["events"]] if pages else _event_per_line(path, text)
    if isinstance(doc, dict) and "events" not in doc:
        if "message" in doc:
            return [doc]  # a file of one event object per line, with one line
        raise FlowLogReadError(
            f"{path}: JSON with keys {list(doc)[:4]} but no 'events': not a CloudWatch Logs export "
            "(the output of 'aws logs filter-log-events'). Inventory files go to --inventory; leave this "
            "file out of --flow-logs."
        )
    events = doc["events"] if isinstance(doc, dict) else doc
    if not isinstance(events, list):
        raise FlowLogReadError(f"{path}: 'events' is not a list but {str(events)[:120]!r}; expected the output "
                               "of 'aws logs filter-log-events'")
    return events


def _appended_pages(text: str) -> list[dict] | None:
    """Several ``{"events": [...]}`` documents one after the other, or None when the text is not that.

    What ``aws logs filter-log-events … >> FILE`` leaves when it is run page by page (``--starting-token``):
    each page is a whole document, and the events are those of every page in order.
    """
    decoder, pages, pos = json.JSONDecoder(), [], 0
    while pos < len(text):
        if text[pos].isspace():
            pos += 1
            continue
        try:
            doc, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError:
            return None
        if not (isinstance(doc, dict) and isinstance(doc.get("events"), list)):
            return None
        pages.append(doc)
    return pages


def _json_problem(path: Path, text: str, exc: json.JSONDecodeError) -> str:
    """What is wrong with a JSON document that does not parse, and where.

    A document cut short (the usual damage) fails at its very end, or in a string that never closes (a
    string cannot span lines, so an unterminated one runs to the end of the text): that is said plainly,
    rather than pointing at the line where the unfinished value began.
    """
    end = len(text.rstrip())
    if exc.pos >= end or exc.msg.startswith("Unterminated string"):
        line = text.count("\n", 0, end) + 1
        column = end - text.rfind("\n", 0, end) - 1  # of the last character
        return (f"{path}: the JSON document breaks off at line {line}, column {column} (the end of the file) "
                f"before it is complete ({exc.msg}): the export is truncated, cut short in transfer or while "
                "it was written. Run 'aws logs filter-log-events' again, or leave it out of --flow-logs.")
    near = text[max(0, exc.pos - 40):exc.pos + 40]
    return (f"{path}, line {exc.lineno}, column {exc.colno}: not valid JSON ({exc.msg}) near {near!r}. Expected "
            "the output of 'aws logs filter-log-events' or one event object per line.")


def _event_per_line(path: Path, text: str) -> list:
    """The events of a file of one JSON event object per line."""
    events = []
    numbered = [(i, line) for i, line in enumerate(text.split("\n"), 1) if line.strip()]
    for i, line in numbered:
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError as exc:
            cut = " (the last line: the file may be truncated)" if i == numbered[-1][0] else ""
            raise FlowLogReadError(
                f"{path}, line {i}: not JSON ({exc.msg}){cut}: {line[:120]!r}. Expected the output of "
                "'aws logs filter-log-events' or one event object per line."
            ) from exc
    return events


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(2) == GZIP_MAGIC
