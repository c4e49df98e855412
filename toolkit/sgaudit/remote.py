"""Flow logs straight from AWS: ``s3://bucket/prefix`` and ``cloudwatch://log-group`` inputs.

`analyze` hands every ``--flow-logs`` entry that is a URI to `fetch_all`, which turns it into local files
that `sgaudit.sources` then reads like any other. Nothing here parses records.

S3
    Only the objects that can hold records of the window are listed and downloaded. VPC Flow Logs write
    keys as ``AWSLogs/[<org-id>/]<account>/vpcflowlogs/<region>/YYYY/MM/DD/[HH/]<file>`` or, Hive-style,
    ``AWSLogs/aws-account-id=<a>/aws-service=vpcflowlogs/aws-region=<r>/year=YYYY/month=MM/day=DD/
    [hour=HH/]<file>``. The walk lists one level at a time (``Delimiter='/'``) and descends only into the
    year, month, day and hour partitions that overlap the window widened by `MARGIN_MS` on each side,
    then keeps only the files whose name timestamp (``…_YYYYMMDDTHHmmZ_…``) falls in it too. Objects
    are downloaded in parallel into ``<cache>/s3/<bucket>/<key>``; an object whose cached copy has the
    same size and ETag (kept in a hidden sidecar file) is not downloaded again.
CloudWatch Logs
    ``cloudwatch://<log-group>[?stream=<name>&stream=…&region=<region>]``: ``FilterLogEvents`` over the
    window, written as the JSON ``aws logs filter-log-events`` prints, into the analysis's scratch folder
    (never the cache: events are fetched anew on every run). CloudWatch events carry no header, so the
    format is the user's ``--format``, else the flow log's ``LogFormat`` from ``DescribeFlowLogs`` when
    the caller may read it, else the version-2 default.

Every client is made with `sgaudit.collect`'s retry configuration (adaptive mode, 10 attempts), so that
throttling slows a fetch down instead of failing it.

Every AWS error becomes a `RemoteError` naming the bucket, key or log group, the IAM action that was
refused, and what to do.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, unquote

from .collect import retry_config
from .errors import SgauditError
from .fields import parse_format

#: How far past each end of the window objects are listed. A file's partition and name come from its
#: delivery window (5 minutes, 10 for the longest aggregation interval), not from its records' ``start``;
#: an hour keeps records at the edges of the window, late deliveries included.
MARGIN_MS = 3_600_000
#: Downloads at once: S3 GETs are latency-bound, and a few in flight fill a home connection.
DOWNLOAD_THREADS = 8
#: Events per JSON file written from CloudWatch Logs: `sources.cloudwatch_messages` reads a file whole.
EVENTS_PER_FILE = 100_000
#: The name timestamp of a delivered file: the start of its 5-minute delivery window.
_FILE_TIME = re.compile(r"_(\d{8}T\d{4})Z_")
_FILE_SPAN_MS = 5 * 60_000
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_ACCOUNT_LEVEL = re.compile(r"^(aws-account-id=)?\d{12}$|^o-[a-z0-9]{10,32}$")
_SERVICE_LEVEL = {"vpcflowlogs", "aws-service=vpcflowlogs"}


class RemoteError(SgauditError):
    """A flow-log URI that cannot be read: bad URI, missing bucket or log group, access denied."""


def is_uri(value: object) -> bool:
    """Whether a ``--flow-logs`` entry is a URI (``s3://…``, ``cloudwatch://…``) rather than a path.

    Only strings can be: `pathlib.Path` folds ``//`` away.
    """
    return isinstance(value, str) and bool(_URI.match(value))


def cache_root(cache: bool | str | Path = True) -> Path:
    """The folder downloads are kept in between runs.

    Parameters
    ----------
    cache : bool, str or Path
        A folder to use as it is, or True for ``$SGAUDIT_CACHE_DIR``, else ``$XDG_CACHE_HOME/sgaudit``,
        else ``~/.cache/sgaudit``.
    """
    if not isinstance(cache, bool):
        return Path(cache).expanduser()
    if os.environ.get("SGAUDIT_CACHE_DIR"):
        return Path(os.environ["SGAUDIT_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "sgaudit"


@dataclass
class Fetched:
    """What one URI became.

    Attributes
    ----------
    uri : str
        The URI as given.
    paths : list of Path
        The local files, in key (or write) order.
    log_format : tuple of str or None
        The format of these files when known from AWS (a CloudWatch flow log's ``LogFormat``) or given by
        the user; None leaves it to `sources.sniff` (header line, else the version-2 default).
    downloaded : int
        Objects actually transferred (0 when every one was cached).
    """

    uri: str
    paths: list[Path]
    log_format: tuple[str, ...] | None
    downloaded: int = 0


def fetch_all(entries: Iterable[str | Path], start_ms: int | None, end_ms: int | None, *,
              scratch: str | Path, log_format: str | None = None, aws_session=None,
              endpoint_url: str | None = None, cache: bool | str | Path = True,
              progress: bool = False) -> tuple[list[str | Path], dict[Path, tuple[str, ...]]]:
    """Replace the URIs among ``--flow-logs`` entries by local files; paths pass through unchanged.

    Parameters
    ----------
    entries : iterable of str or Path
        The user's ``--flow-logs``.
    start_ms, end_ms : int or None
        The window ``[start, end)`` in Unix milliseconds; None leaves that side open.
    scratch : path
        A folder that lives as long as the files are read (the analysis's temporary folder): CloudWatch
        events always go there, and S3 objects too when ``cache`` is False.
    log_format : str, optional
        The user's ``--format``. For CloudWatch log groups it wins over the flow log's ``LogFormat``: a
        flow log's format changes only by recreating it, so older events may be in another format.
    aws_session : boto3.Session or str, optional
        The session (or the name of a profile) to call AWS with; default boto3's default chain.
    endpoint_url : str, optional
        Another endpoint for every service (a local test server, a VPC endpoint).
    cache : bool, str or Path
        Keep S3 downloads in `cache_root` (True), in this folder, or only in ``scratch`` (False).
    progress : bool
        Draw a progress bar over the S3 objects (on a terminal).

    Returns
    -------
    list of str or Path
        The entries with every URI replaced by its files, in the order given.
    dict
        For files whose format AWS or the user stated: path → field names.
    """
    entries = list(entries)
    if not any(is_uri(e) for e in entries):
        return entries, {}
    root = Path(scratch) if cache is False else cache_root(cache)
    if not root.exists():
        # Flow logs name a network's internal addresses: a new cache is its owner's alone (downloads are
        # written 0600 by mkstemp already; an existing folder keeps the mode its owner gave it).
        root.mkdir(parents=True, mode=0o700)
    session = boto_session(aws_session)
    out: list[str | Path] = []
    formats: dict[Path, tuple[str, ...]] = {}
    for entry in entries:
        if not is_uri(entry):
            out.append(entry)
            continue
        got = fetch(entry, start_ms, end_ms, session=session, endpoint_url=endpoint_url, root=root,
                    scratch=Path(scratch), log_format=log_format, progress=progress)
        out.extend(got.paths)
        if got.log_format:
            formats.update(dict.fromkeys(got.paths, got.log_format))
    return out, formats


def fetch(uri: str, start_ms: int | None, end_ms: int | None, *, session, endpoint_url: str | None,
          root: Path, scratch: Path, log_format: str | None = None, progress: bool = False) -> Fetched:
    """Fetch one URI: S3 objects into ``root`` (the cache or the scratch), CloudWatch events into ``scratch``.

    See `fetch_all`.

    Raises
    ------
    RemoteError
        For an unsupported or malformed URI, a missing bucket or log group, denied access, or a window
        that holds nothing.
    """
    scheme = uri.split("://", 1)[0].lower()
    if scheme == "s3":
        bucket, prefix = _parse_s3(uri)
        return fetch_s3(bucket, prefix, start_ms, end_ms, session=session, endpoint_url=endpoint_url,
                        root=root, progress=progress, uri=uri)
    if scheme in ("cloudwatch", "logs"):
        group, streams, region = _parse_cloudwatch(uri)
        # Never into the cache: events are fetched anew on every run, so a cached copy is never reused,
        # and another run of the same query would overwrite files an open analysis still reads.
        return fetch_cloudwatch(group, streams, start_ms, end_ms, session=session, endpoint_url=endpoint_url,
                                root=scratch, region=region, log_format=log_format, uri=uri)
    raise RemoteError(f"{uri}: sgaudit reads s3://bucket/prefix and cloudwatch://log-group URIs, not {scheme}://. "
                      "Download the files and pass the folder to --flow-logs instead.")


# --- S3 -----------------------------------------------------------------------------------------------------

def _parse_s3(uri: str) -> tuple[str, str]:
    rest = uri.split("://", 1)[1]
    bucket, _, prefix = rest.partition("/")
    if not bucket or "?" in rest:
        raise RemoteError(f"{uri}: not an S3 URI sgaudit can read; write s3://BUCKET/PREFIX, for example "
                          "s3://my-flow-logs/AWSLogs/123456789012/vpcflowlogs/")
    return bucket, prefix


def fetch_s3(bucket: str, prefix: str, start_ms: int | None, end_ms: int | None, *, session,
             endpoint_url: str | None, root: Path, progress: bool = False, uri: str | None = None) -> Fetched:
    """Download the objects under ``s3://bucket/prefix`` that can hold records of the window.

    Returns
    -------
    Fetched
        ``paths`` under ``root/s3/<bucket>/<key>``, in key order.
    """
    uri = uri or f"s3://{bucket}/{prefix}"
    client = _client(session, "s3", endpoint_url, None, uri)
    objects = list_objects(client, bucket, prefix, start_ms, end_ms)
    if not objects:
        raise RemoteError(f"{uri}: no objects {_window_text(start_ms, end_ms)}. Check the prefix "
                          f"(aws s3 ls {uri} --recursive | head) and --start/--end.")
    base = root / "s3" / bucket
    todo = []
    paths = []
    for obj in objects:
        path = base.joinpath(*[p if p not in ("", ".", "..") else "_" for p in obj["Key"].split("/")])
        paths.append(path)
        if not _cached(path, obj):
            todo.append((obj, path))
    if todo:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(todo), unit="file", desc=f"s3://{bucket}", disable=None if progress else True)
        with bar, ThreadPoolExecutor(max_workers=min(DOWNLOAD_THREADS, len(todo))) as pool:
            # map() re-raises the first failure here, naming its key.
            for _ in pool.map(lambda item: _download(client, bucket, *item), todo):
                bar.update()
    return Fetched(uri, paths, None, len(todo))


def list_objects(client, bucket: str, prefix: str, start_ms: int | None, end_ms: int | None) -> list[dict]:
    """The objects (``Key``, ``Size``, ``ETag``) under a prefix that can hold records of the window.

    With no window, one flat listing. With one, a walk of the key layout that lists only the partitions
    overlapping the window widened by `MARGIN_MS` (see the module docstring).
    """
    if prefix and not prefix.endswith("/"):
        # A key or a folder? One listing at that level says; "logs" must not match "logs-old/".
        subs, objs = _list_level(client, bucket, prefix)
        exact = [o for o in objs if o["Key"] == prefix]
        if exact:
            return exact
        if prefix + "/" not in subs:
            return []
        prefix += "/"
    lo = None if start_ms is None else start_ms - MARGIN_MS
    hi = None if end_ms is None else end_ms + MARGIN_MS
    if lo is None and hi is None:
        return [o for o in _list_flat(client, bucket, prefix) if not o["Key"].endswith("/")]
    found: list[dict] = []
    stack = [prefix]
    while stack:
        subs, objs = _list_level(client, bucket, stack.pop())
        found += [o for o in objs if not o["Key"].endswith("/") and _file_overlaps(o["Key"], lo, hi)]
        stack += [s for s in subs if _partition_overlaps(s, lo, hi)]
    return sorted(found, key=lambda o: o["Key"])


def _list_level(client, bucket: str, prefix: str) -> tuple[list[str], list[dict]]:
    subs: list[str] = []
    objs: list[dict] = []
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix, Delimiter="/")
    for page in _s3_calls(pages, bucket, prefix, "s3:ListBucket"):
        subs += [c["Prefix"] for c in page.get("CommonPrefixes", [])]
        objs += page.get("Contents", [])
    return subs, objs


def _list_flat(client, bucket: str, prefix: str) -> list[dict]:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return [o for page in _s3_calls(pages, bucket, prefix, "s3:ListBucket") for o in page.get("Contents", [])]


def _s3_calls(pages, bucket: str, key: str, action: str):
    """Yield from a paginator, turning AWS errors into `RemoteError`."""
    try:
        yield from pages
    except Exception as exc:  # botocore's ClientError and connection errors alike
        raise _s3_error(exc, bucket, key, action) from exc


def _s3_error(exc: Exception, bucket: str, key: str, action: str) -> Exception:
    code = _code(exc)
    where = f"s3://{bucket}/{key}"
    if code == "NoSuchBucket":
        return RemoteError(f"{where}: the bucket {bucket!r} does not exist (or not in this partition). Check the "
                           "name in the flow log's destination (aws ec2 describe-flow-logs).")
    if code in ("AccessDenied", "403", "AllAccessDisabled"):
        arn = f"arn:aws:s3:::{bucket}" + ("" if action == "s3:ListBucket" else f"/{key}")
        return RemoteError(f"{where}: access denied. Allow {action} on {arn} to the caller ({_who()}); "
                           "for SSE-KMS objects also kms:Decrypt on the key.")
    if code in ("NoSuchKey", "404"):
        return RemoteError(f"{where}: the object disappeared while it was being read (a lifecycle rule?); "
                           "run again.")
    return _generic_error(exc, where)


def _file_overlaps(key: str, lo: int | None, hi: int | None) -> bool:
    """Whether a delivered file's name window meets ``[lo, hi]``; True when the name has no timestamp."""
    m = _FILE_TIME.search(key.rsplit("/", 1)[-1])
    if not m:
        return True
    t = int(datetime.strptime(m.group(1), "%Y%m%dT%H%M").replace(tzinfo=UTC).timestamp() * 1000)
    return (lo is None or t + _FILE_SPAN_MS > lo) and (hi is None or t < hi)


def _partition_overlaps(prefix: str, lo: int | None, hi: int | None) -> bool:
    """Whether to descend into ``prefix``: False only for a partition shown to lie outside ``[lo, hi]``."""
    parts = prefix.rstrip("/").split("/")
    if "AWSLogs" not in parts:
        return True  # still in the user's own folders above AWS's layout
    rest = parts[parts.index("AWSLogs") + 1:]
    service = next((i for i, p in enumerate(rest) if p in _SERVICE_LEVEL), None)
    if service is None:
        # Between AWSLogs and vpcflowlogs come only the org and account levels; other services' logs
        # (CloudTrail, ELB) share the tree and are never listed.
        return not rest or bool(_ACCOUNT_LEVEL.match(rest[-1]))
    date = rest[service + 2:]  # after the region level
    if not date:
        return True
    try:
        values = [int(p.rpartition("=")[2]) for p in date]
    except ValueError:
        return True  # not a date partition sgaudit knows: read it rather than miss records
    if len(values) > 4:
        return True
    y, m, d, h = (values + [None, None, None])[:4]
    try:
        t0 = datetime(y, m or 1, d or 1, h or 0, tzinfo=UTC)
    except ValueError:
        return True
    if h is not None:
        t1 = t0 + timedelta(hours=1)
    elif d is not None:
        t1 = t0 + timedelta(days=1)
    elif m is not None:
        t1 = datetime(y + (m == 12), m % 12 + 1, 1, tzinfo=UTC)
    else:
        t1 = datetime(y + 1, 1, 1, tzinfo=UTC)
    ms0, ms1 = int(t0.timestamp() * 1000), int(t1.timestamp() * 1000)
    return (lo is None or ms1 > lo) and (hi is None or ms0 < hi)


def _sidecar(path: Path) -> Path:
    # Hidden, so that `sources.discover` passes over it when the cache folder itself is given as a path.
    return path.with_name(f".{path.name}.etag")


def _cached(path: Path, obj: dict) -> bool:
    try:
        return path.stat().st_size == obj["Size"] and _sidecar(path).read_text() == obj["ETag"]
    except OSError:
        return False


def _download(client, bucket: str, obj: dict, path: Path) -> None:
    key = obj["Key"]
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)  # as the cache root: its owner's alone
    # A name of its own for every download: two runs sharing the cache may fetch the same object at
    # once, and one must not truncate or rename away the other's partial file. Hidden, so that a file
    # left by a killed run is never read as flow logs.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    part = Path(tmp)
    try:
        with os.fdopen(fd, "wb") as fh:
            resp = client.get_object(Bucket=bucket, Key=key)
            shutil.copyfileobj(resp["Body"], fh, 1 << 20)
    except Exception as exc:
        part.unlink(missing_ok=True)
        raise _s3_error(exc, bucket, key, "s3:GetObject") from exc
    # The file appears whole or not at all, and the ETag only after it: an interrupted run never leaves
    # a truncated file that the next run would take for a cached one. A concurrent run's finished copy
    # holds the same object: replacing it is harmless.
    os.replace(part, path)
    _write_private(_sidecar(path), resp.get("ETag", obj["ETag"]))


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by its owner only (0600), as the downloads beside it."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)


# --- CloudWatch Logs ----------------------------------------------------------------------------------------

def _parse_cloudwatch(uri: str) -> tuple[str, list[str], str | None]:
    rest = uri.split("://", 1)[1]
    group, _, query = rest.partition("?")
    group = unquote(group)
    params = parse_qs(query, keep_blank_values=True)
    unknown = set(params) - {"stream", "region"}
    if not group or unknown:
        raise RemoteError(f"{uri}: not a CloudWatch URI sgaudit can read; write cloudwatch://LOG-GROUP, "
                          "optionally ?stream=NAME (repeatable) and &region=REGION, for example "
                          "cloudwatch:///aws/vpc/flow-logs?stream=eni-0abc-all"
                          + (f" (unknown parameter {sorted(unknown)[0]!r})" if unknown else ""))
    return group, params.get("stream", []), (params.get("region") or [None])[-1]


def fetch_cloudwatch(group: str, streams: list[str], start_ms: int | None, end_ms: int | None, *, session,
                     endpoint_url: str | None, root: Path, region: str | None = None,
                     log_format: str | None = None, uri: str | None = None) -> Fetched:
    """Write the events of a log group (or some of its streams) in the window as CloudWatch JSON files.

    Events are fetched anew on every run: a log group gives no cheap way to tell that nothing changed.
    So ``root`` should be a folder of this run alone (see `fetch`), not the cache.

    Parameters
    ----------
    log_format : str, optional
        The user's ``--format``; it wins over the flow log's ``LogFormat`` (see `_flow_log_format`).

    Returns
    -------
    Fetched
        ``paths`` under ``root/cloudwatch/<region>/<group>/``, and the format of their messages.
    """
    uri = uri or f"cloudwatch://{group}"
    logs = _client(session, "logs", endpoint_url, region, uri)
    region = logs.meta.region_name
    kwargs: dict = {"logGroupName": group}
    if streams:
        kwargs["logStreamNames"] = streams
    if start_ms is not None:
        kwargs["startTime"] = int(start_ms)
    if end_ms is not None:
        kwargs["endTime"] = int(end_ms) - 1  # FilterLogEvents' endTime is inclusive, the window's end is not
    folder = root / "cloudwatch" / region / group.strip("/").replace("/", "__")
    stem = "{}_{}_{}".format("+".join(streams) or "all", start_ms if start_ms is not None else "min",
                             end_ms if end_ms is not None else "max")
    folder.mkdir(parents=True, exist_ok=True)
    base, n = stem, 1
    while (folder / f"{stem}-0000.json").exists():
        # The same query twice in one run: the first one's files are still to be read, keep them.
        n += 1
        stem = f"{base}~{n}"
    paths: list[Path] = []
    chunk: list[dict] = []

    def flush() -> None:
        path = folder / f"{stem}-{len(paths):04d}.json"
        path.write_text(json.dumps({"events": chunk, "searchedLogStreams": []}))
        paths.append(path)
        chunk.clear()

    try:
        for page in logs.get_paginator("filter_log_events").paginate(**kwargs):
            for ev in page.get("events", []):
                chunk.append(ev)
                if len(chunk) >= EVENTS_PER_FILE:
                    flush()
    except Exception as exc:
        raise _logs_error(exc, group, region, streams) from exc
    if chunk:
        flush()
    if not paths:
        what = f"streams {', '.join(streams)} of " if streams else ""
        raise RemoteError(f"{uri}: no events in {what}log group {group!r} ({region}) "
                          f"{_window_text(start_ms, end_ms)}. Check --start/--end and the stream names "
                          f"(aws logs describe-log-streams --log-group-name {group}).")
    # The user's format first: a flow log's format changes only by deleting and recreating it, so older
    # events of the group may be in another format than the LogFormat of today's flow log.
    fmt = log_format or _flow_log_format(session, endpoint_url, region, group)
    return Fetched(uri, paths, parse_format(fmt) if fmt else None, len(paths))


def _flow_log_format(session, endpoint_url: str | None, region: str, group: str) -> str | None:
    """The ``LogFormat`` of the flow logs that deliver to ``group``, or None when it cannot be told.

    Raises
    ------
    RemoteError
        When flow logs of different formats deliver to the group: DescribeFlowLogs names no stream,
        and two flow logs covering the same interface write into the same stream, so which format a
        stream holds cannot be told here; the user's ``--format`` must say.
    """
    try:
        ec2 = _client(session, "ec2", endpoint_url, region, f"cloudwatch://{group}")
        pages = ec2.get_paginator("describe_flow_logs").paginate(
            Filters=[{"Name": "log-group-name", "Values": [group]}])
        found = {(fl["FlowLogId"], fl.get("LogFormat")) for page in pages for fl in page.get("FlowLogs", [])}
    except Exception:
        # ec2:DescribeFlowLogs is a convenience, not a requirement: the user's --format stands in.
        return None
    formats = {f for _, f in found if f}
    if len(formats) > 1:
        listing = "; ".join(f"{i}: {f}" for i, f in sorted(found))
        raise RemoteError(f"cloudwatch://{group}: flow logs with different formats deliver to this log group "
                          f"({listing}), and sgaudit cannot tell which one wrote which stream (DescribeFlowLogs "
                          "names none, and flow logs of the same interface share its stream). Pass --format "
                          "with the format of the events to read (it wins over the flow logs' LogFormat), and "
                          "read the streams of one flow log at a time with ?stream=NAME.")
    return formats.pop() if formats else None


def _logs_error(exc: Exception, group: str, region: str, streams: list[str]) -> Exception:
    code = _code(exc)
    where = f"cloudwatch://{group}"
    if code == "ResourceNotFoundException":
        what = f"the log group {group!r}" + (f" or one of the streams {streams}" if streams else "")
        return RemoteError(f"{where}: {what} does not exist in {region}. List them with aws logs "
                           "describe-log-groups, and add ?region=REGION to the URI if the flow log "
                           "delivers to another region.")
    if code in ("AccessDeniedException", "AccessDenied"):
        return RemoteError(f"{where}: access denied. Allow logs:FilterLogEvents on "
                           f"arn:aws:logs:{region}:<account>:log-group:{group} to the caller ({_who()}).")
    if code == "InvalidParameterException":
        return RemoteError(f"{where}: CloudWatch Logs refused the query ({exc}); check the stream names "
                           "(at most 100) and --start/--end.")
    return _generic_error(exc, where)


# --- Shared -------------------------------------------------------------------------------------------------

def _client(session, service: str, endpoint_url: str | None, region: str | None, uri: str):
    """A client of ``service`` that retries as `sgaudit.collect`'s do; a bad endpoint or no region is a `RemoteError`.

    Adaptive retries slow the client down on throttling replies instead of failing: a FilterLogEvents over
    a busy log group or many parallel GETs would otherwise lose every page already fetched.

    Parameters
    ----------
    session : boto3.Session
    service : str
        ``"s3"``, ``"logs"`` or ``"ec2"``.
    endpoint_url : str or None
        The user's ``--endpoint-url``.
    region : str or None
        The URI's ``?region=``; None for the session's region.
    uri : str
        The URI being read, named in the error.
    """
    from botocore.exceptions import NoRegionError

    try:
        return session.client(service, endpoint_url=endpoint_url, region_name=region, config=retry_config())
    except NoRegionError:
        raise RemoteError(f"{uri}: no AWS region is configured. Add ?region=REGION to the URI, set AWS_REGION "
                          "(or AWS_DEFAULT_REGION), or pass a --profile whose configuration has a region.") from None
    except ValueError as exc:  # botocore's "Invalid endpoint"
        raise RemoteError(f"--endpoint-url {endpoint_url!r}: {exc}; give a URL such as http://localhost:5000, "
                          "or leave it out to call AWS itself.") from None


def boto_session(aws_session=None, region: str | None = None):
    """The boto3 session sgaudit calls AWS with: ``aws_session`` itself, or one made from a profile name.

    None is the environment's credentials. ``region`` applies to a session made here (``--athena-region``
    over the profile's own).
    """
    import boto3

    if aws_session is None:
        return boto3.Session(region_name=region)
    if isinstance(aws_session, str):
        try:
            return boto3.Session(profile_name=aws_session, region_name=region)
        except Exception as exc:  # botocore's ProfileNotFound
            raise RemoteError(f"AWS profile {aws_session!r}: {exc}; check --profile against "
                              "aws configure list-profiles") from exc
    return aws_session


def _code(exc: Exception) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))


def _who() -> str:
    return "the identity aws sts get-caller-identity shows"


def _generic_error(exc: Exception, where: str) -> Exception:
    name = type(exc).__name__
    if name in ("NoCredentialsError", "PartialCredentialsError"):
        return RemoteError(f"{where}: no AWS credentials found. Use --profile, or set them up with "
                           "aws configure (or AWS_PROFILE).")
    if name in ("EndpointConnectionError", "ConnectTimeoutError", "ConnectionClosedError"):
        return RemoteError(f"{where}: cannot reach AWS ({exc}); check the network, the region and "
                           "--endpoint-url.")
    if hasattr(exc, "response"):
        return RemoteError(f"{where}: AWS refused the request ({exc}).")
    return exc  # not an AWS error: a defect or the local disk; let it through as it is


def _window_text(start_ms: int | None, end_ms: int | None) -> str:
    def iso(ms: int | None) -> str:
        return "…" if ms is None else datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    if start_ms is None and end_ms is None:
        return "at all"
    return f"in the window {iso(start_ms)} .. {iso(end_ms)}"
