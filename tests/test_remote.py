"""Flow logs read straight from S3 and CloudWatch Logs (`sgaudit.remote`), against moto's HTTP server.

Each remote run is compared with the same data read from local files: fetching must change nothing but
where the bytes come from. The S3 tests also count the requests, to show that keys outside the window
are never listed nor downloaded.
"""

from __future__ import annotations

import gzip
import io
import os
import stat
import threading
import time
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sgaudit
import urllib3
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ClientError
from builders import V2, V5, Snapshot, handshake, write_log
from sgaudit import remote
from sgaudit.cli import main
from sgaudit.errors import SgauditError
from sgaudit.sources import cloudwatch_messages

ROOT = Path(__file__).resolve().parents[1] / "sample_logs"
INVENTORY = ROOT / "inventory"
S3_SAMPLE = ROOT / "flow-logs"
CW_TEXT = ROOT / "cloudwatch" / "app-eni.log"
BUCKET = "flow-bucket"
DAY_PREFIX = "vpc/AWSLogs/002244369527/vpcflowlogs/us-east-1/"
HOUR = 3600


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch):
    """Never touch the user's ~/.cache: the default cache folder is moved under the test's tmp_path."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("SGAUDIT_CACHE_DIR", str(folder))
    return folder


class Calls:
    """The S3 requests a session's clients make: (operation, Prefix or Key)."""

    def __init__(self, session):
        self.seen: list[tuple[str, str]] = []
        session.events.register("before-parameter-build.s3", self._record)

    def _record(self, params, model, **_):
        self.seen.append((model.name, params.get("Prefix", params.get("Key", ""))))

    def of(self, operation: str) -> list[str]:
        return [arg for op, arg in self.seen if op == operation]


def s3_client(aws):
    return aws.session().client("s3", endpoint_url=aws.url)


def upload_folder(client, folder: Path, prefix: str) -> list[str]:
    """Upload every file under ``folder`` keeping its relative path as the key under ``prefix``."""
    keys = []
    for f in sorted(p for p in folder.rglob("*") if p.is_file()):
        key = prefix + f.relative_to(folder).as_posix()
        client.put_object(Bucket=BUCKET, Key=key, Body=f.read_bytes())
        keys.append(key)
    return keys


@pytest.fixture
def sample_bucket(aws):
    client = s3_client(aws)
    client.create_bucket(Bucket=BUCKET)
    upload_folder(client, S3_SAMPLE, "vpc/")
    return client


def analyze_s3(aws, uri, inventory=INVENTORY, session=None, **kwargs):
    return sgaudit.analyze(uri, inventory, endpoint_url=aws.url, aws_session=session or aws.session(), **kwargs)


def assert_same_usage(a: sgaudit.Analysis, b: sgaudit.Analysis) -> None:
    pd.testing.assert_frame_equal(a.usage.reset_index(drop=True), b.usage.reset_index(drop=True))


# --- S3 -----------------------------------------------------------------------------------------------------

def test_s3_prefix_equals_the_local_folder(aws, sample_bucket, cache_dir):
    remote_result = analyze_s3(aws, f"s3://{BUCKET}/vpc")
    local_result = sgaudit.analyze(S3_SAMPLE, INVENTORY)
    assert_same_usage(remote_result, local_result)
    assert len(remote_result.files) == len(local_result.files) == 37
    assert all(cache_dir / "s3" / BUCKET in f.path.parents for f in remote_result.files)
    # Flow logs name internal addresses: a new cache is its owner's alone.
    assert stat.S_IMODE(cache_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE(remote_result.files[0].path.stat().st_mode) == 0o600
    first = remote_result.files[0].path
    assert stat.S_IMODE((first.parent / f".{first.name}.etag").stat().st_mode) == 0o600
    assert stat.S_IMODE(first.parent.stat().st_mode) == 0o700


def test_s3_with_cache_off_leaves_no_download_behind(aws, sample_bucket, cache_dir):
    result = analyze_s3(aws, f"s3://{BUCKET}/vpc/", cache=False)
    assert_same_usage(result, sgaudit.analyze(S3_SAMPLE, INVENTORY))
    assert not cache_dir.exists()
    downloaded = result.files[0].path
    result.close()
    assert not downloaded.exists()


def test_s3_second_run_downloads_nothing_but_changed_objects(aws, sample_bucket):
    session = aws.session()
    calls = Calls(session)
    first = analyze_s3(aws, f"s3://{BUCKET}/vpc", session=session)
    assert len(calls.of("GetObject")) == 37
    calls.seen.clear()
    second = analyze_s3(aws, f"s3://{BUCKET}/vpc", session=session)
    assert calls.of("GetObject") == []
    assert_same_usage(first, second)
    # `reanalyze` (what `sgaudit plan` checks its proposal with) reads the same URI again, from the cache.
    assert_same_usage(second.reanalyze(INVENTORY), second)
    assert calls.of("GetObject") == []
    # A re-delivered object (same key, other bytes) has another ETag: it alone is fetched again.
    key = sample_bucket.list_objects_v2(Bucket=BUCKET, Prefix="vpc/")["Contents"][0]["Key"]
    body = gzip.decompress(sample_bucket.get_object(Bucket=BUCKET, Key=key)["Body"].read())
    sample_bucket.put_object(Bucket=BUCKET, Key=key, Body=gzip.compress(body + b"\n"))
    calls.seen.clear()
    analyze_s3(aws, f"s3://{BUCKET}/vpc", session=session)
    assert calls.of("GetObject") == [key]


def test_s3_window_lists_and_fetches_only_its_day(aws, sample_bucket):
    # Files of other days and months, in the same layout: none may be listed nor fetched.
    extra = []
    for day in ("2025/02/04", "2025/02/05", "2025/02/07", "2025/01/06", "2024/02/06"):
        stamp = day.replace("/", "") + "T1400Z"
        key = f"{DAY_PREFIX}{day}/002244369527_vpcflowlogs_us-east-1_fl-0a1b2c3d4e5f60789_{stamp}_00000000.log.gz"
        sample_bucket.put_object(Bucket=BUCKET, Key=key, Body=b"not even gzip")
        extra.append(key)
    session = aws.session()
    calls = Calls(session)
    start, end = "2025-02-06T14:00:00Z", "2025-02-06T15:00:00Z"
    result = analyze_s3(aws, f"s3://{BUCKET}/vpc", session=session, start=start, end=end)
    listed = calls.of("ListObjectsV2")
    fetched = calls.of("GetObject")
    assert f"{DAY_PREFIX}2025/02/06/" in listed
    assert not [p for p in listed if any(p.startswith(k.rsplit("/", 1)[0]) for k in extra)]
    assert f"{DAY_PREFIX}2025/01/" not in listed and f"{DAY_PREFIX}2024/" not in listed
    assert fetched and not set(fetched) & set(extra)
    # Within the day, file names prune too: only deliveries from 13:00 to 16:00 (the window ± 1 h).
    stamps = sorted(k.split("_")[-2] for k in fetched)
    assert stamps[0] >= "20250206T1300Z" and stamps[-1] < "20250206T1600Z"
    assert_same_usage(result, sgaudit.analyze(S3_SAMPLE, INVENTORY, start=start, end=end))


LAYOUTS = {
    "plain-hourly": "logs/AWSLogs/123456789012/vpcflowlogs/us-east-1/{y}/{m}/{d}/{h}/",
    "hive-hourly": ("logs/AWSLogs/aws-account-id=123456789012/aws-service=vpcflowlogs/aws-region=us-east-1/"
                    "year={y}/month={m}/day={d}/hour={h}/"),
}


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_s3_hourly_partitions_outside_the_window_are_never_listed(aws, tmp_path, layout):
    snap = Snapshot().group("sg-web").rule("sgr-http", "sg-web", "tcp", 80, cidr="0.0.0.0/0")
    snap.interface("eni-a", "10.0.0.5", groups=["sg-web"])
    inv = snap.write(tmp_path / "inventory")
    client = s3_client(aws)
    client.create_bucket(Bucket=BUCKET)
    day0 = 1738800000  # 2025-02-06T00:00:00Z
    # One handshake per delivery hour, each from its own client port, on 06 and 07 February.
    local = tmp_path / "local"
    for n, t in enumerate([day0 + h * HOUR for h in (3, 9, 10, 11, 12, 20)] + [day0 + 86400 + 10 * HOUR]):
        ts = time.gmtime(t)
        parts = {"y": f"{ts.tm_year}", "m": f"{ts.tm_mon:02d}", "d": f"{ts.tm_mday:02d}", "h": f"{ts.tm_hour:02d}"}
        name = f"123456789012_vpcflowlogs_us-east-1_fl-1_{time.strftime('%Y%m%dT%H%MZ', ts)}_{n:08x}.log.gz"
        f = write_log(local / name, handshake("eni-a", "198.51.100.7", "10.0.0.5", 40000 + n, 80, start=t))
        client.put_object(Bucket=BUCKET, Key=LAYOUTS[layout].format(**parts) + name, Body=f.read_bytes())
    session = aws.session()
    calls = Calls(session)
    start, end = "2025-02-06T10:00:00Z", "2025-02-06T11:00:00Z"
    result = analyze_s3(aws, f"s3://{BUCKET}/logs/", inventory=inv, session=session, start=start, end=end)
    hours = {p.rstrip("/").rsplit("/", 1)[-1].rpartition("=")[2] for p in calls.of("ListObjectsV2")
             if p.count("/") == LAYOUTS[layout].count("/")}
    assert hours == {"09", "10", "11"}  # the window's hour and one more on each side
    fetched_hours = sorted(k.split("_")[-2][9:11] for k in calls.of("GetObject"))
    assert fetched_hours == ["09", "10", "11"]
    assert not any("day=07" in p or "/07/" in p for p in calls.of("ListObjectsV2"))
    expected = sgaudit.analyze(local, inv, start=start, end=end)
    assert_same_usage(result, expected)
    assert result.usage.set_index("rule_id").loc["sgr-http", "connections"] == 1


def test_s3_parquet_object_with_athena_column_names(aws, tmp_path):
    snap = Snapshot().group("sg-web").rule("sgr-http", "sg-web", "tcp", 80, cidr="0.0.0.0/0")
    snap.interface("eni-a", "10.0.0.5", groups=["sg-web"])
    inv = snap.write(tmp_path / "inventory")
    recs = handshake("eni-a", "198.51.100.7", "10.0.0.5", 40000, 80)
    int32, int64 = {"version", "srcport", "dstport", "protocol", "tcp-flags"}, {"packets", "bytes", "start", "end"}
    table = pa.table({n.replace("-", "_"): pa.array([r[n] for r in recs], type=pa.int32() if n in int32
                                                    else pa.int64() if n in int64 else pa.string()) for n in V5})
    local = tmp_path / "flow.log.parquet"
    pq.write_table(table, local)
    client = s3_client(aws)
    client.create_bucket(Bucket=BUCKET)
    key = ("AWSLogs/123456789012/vpcflowlogs/us-east-1/2025/02/06/"
           "123456789012_vpcflowlogs_us-east-1_fl-1_20250206T1505Z_abcdef01.log.parquet")
    client.put_object(Bucket=BUCKET, Key=key, Body=local.read_bytes())
    result = analyze_s3(aws, f"s3://{BUCKET}", inventory=inv, start="2025-02-06T15:00:00Z")
    assert [f.kind for f in result.files] == ["parquet"]
    assert_same_usage(result, sgaudit.analyze(local, inv, start="2025-02-06T15:00:00Z"))
    assert result.usage.set_index("rule_id").loc["sgr-http", "evidence"] == "established"


def test_s3_two_runs_sharing_the_cache_both_download(aws, sample_bucket, cache_dir, monkeypatch):
    key = sample_bucket.list_objects_v2(Bucket=BUCKET, Prefix="vpc/")["Contents"][0]["Key"]
    target = cache_dir / "s3" / BUCKET / key
    # A killed run's partial file is in the way of neither run.
    target.parent.mkdir(parents=True)
    target.with_name(f".{target.name}.part").write_bytes(b"half a download")
    # Both runs rename only once both have written their download: the interleaving where one run
    # renames away the partial file the other is still writing, made certain instead of left to timing.
    both_written = threading.Barrier(2, timeout=30)
    real_replace = os.replace

    def replace_when_both_written(src, dst):
        if str(src).endswith(".part"):
            both_written.wait()
        real_replace(src, dst)

    monkeypatch.setattr(remote.os, "replace", replace_when_both_written)
    results: list = [None, None]

    def run(i: int) -> None:
        try:
            results[i] = remote.fetch_all([f"s3://{BUCKET}/{key}"], None, None, scratch=cache_dir / f"scratch{i}",
                                          aws_session=aws.session(), endpoint_url=aws.url)[0]
        except Exception as exc:  # the thread's failure, reported by the assertion below
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [[target], [target]]
    assert target.read_bytes() == sample_bucket.get_object(Bucket=BUCKET, Key=key)["Body"].read()


def test_s3_single_object_uri(aws, sample_bucket):
    key = sample_bucket.list_objects_v2(Bucket=BUCKET, Prefix="vpc/")["Contents"][0]["Key"]
    result = analyze_s3(aws, f"s3://{BUCKET}/{key}")
    assert [f.path.name for f in result.files] == [key.rsplit("/", 1)[-1]]


# --- CloudWatch Logs ----------------------------------------------------------------------------------------

def shifted_sample(tmp_path: Path) -> tuple[Path, list[str], int]:
    """The CloudWatch sample moved to yesterday: CloudWatch (and moto) refuse events older than 14 days."""
    lines = [s.split() for s in CW_TEXT.read_text().splitlines() if s.strip()]
    first = min(int(f[10]) for f in lines)
    shift = (int(time.time()) - 86400 - first) // 86400 * 86400
    for f in lines:
        f[10], f[11] = str(int(f[10]) + shift), str(int(f[11]) + shift)
    text = [" ".join(f) for f in lines]
    path = tmp_path / "app-eni.log"
    path.write_text("".join(s + "\n" for s in text))
    return path, text, shift


def put_events(aws, group: str, stream: str, lines: list[str]) -> None:
    logs = aws.session().client("logs", endpoint_url=aws.url)
    try:
        logs.create_log_group(logGroupName=group)
    except ClientError:
        pass  # a second stream in the same group
    logs.create_log_stream(logGroupName=group, logStreamName=stream)
    events = sorted(({"timestamp": int(s.split()[10]) * 1000, "message": s} for s in lines),
                    key=lambda e: e["timestamp"])
    for i in range(0, len(events), 1000):
        resp = logs.put_log_events(logGroupName=group, logStreamName=stream, logEvents=events[i:i + 1000])
        assert not resp.get("rejectedLogEventsInfo"), resp["rejectedLogEventsInfo"]


def test_cloudwatch_group_equals_the_local_file(aws, tmp_path):
    local, lines, _ = shifted_sample(tmp_path)
    put_events(aws, "/aws/vpc/flow-logs", "eni-08d92826b27a542dc-all", lines)
    result = analyze_s3(aws, "cloudwatch:///aws/vpc/flow-logs", log_format=" ".join(V2))
    assert [f.kind for f in result.files] == ["cloudwatch-json"]
    assert_same_usage(result, sgaudit.analyze(local, INVENTORY, log_format=" ".join(V2)))
    assert (result.usage["status"] == "used").any()


def test_cloudwatch_window_and_stream(aws, tmp_path):
    local, lines, shift = shifted_sample(tmp_path)
    put_events(aws, "flow-logs", "eni-08d92826b27a542dc-all", lines)
    put_events(aws, "flow-logs", "eni-other-all", [lines[0].replace("eni-08d92826b27a542dc", "eni-0ffffffffffffffff")])
    start, end = 1738840500 + shift, 1738842300 + shift
    result = analyze_s3(aws, "cloudwatch://flow-logs?stream=eni-08d92826b27a542dc-all", start=start, end=end)
    assert_same_usage(result, sgaudit.analyze(local, INVENTORY, start=start, end=end))
    messages = cloudwatch_messages(result.files[0].path)
    assert messages and all(start <= int(m.split()[10]) < end for m in messages)
    assert not any("eni-0ffffffffffffffff" in m for m in messages)


def test_cloudwatch_format_comes_from_describe_flow_logs(aws, tmp_path):
    _, lines, _ = shifted_sample(tmp_path)
    put_events(aws, "flow-logs", "eni-08d92826b27a542dc-all", lines[:5])
    ec2 = aws.session().client("ec2", endpoint_url=aws.url)
    vpc = ec2.create_vpc(CidrBlock="10.10.0.0/16")["Vpc"]["VpcId"]
    fmt = " ".join(f"${{{f}}}" for f in V2)
    ec2.create_flow_logs(ResourceIds=[vpc], ResourceType="VPC", TrafficType="ALL", LogFormat=fmt,
                         LogDestinationType="cloud-watch-logs", LogGroupName="flow-logs",
                         DeliverLogsPermissionArn="arn:aws:iam::002244369527:role/flow-logs")
    paths, formats = remote.fetch_all(["cloudwatch://flow-logs"], None, None, aws_session=aws.session(),
                                      endpoint_url=aws.url, scratch=tmp_path / "scratch")
    assert len(paths) == 1 and formats == {paths[0]: tuple(V2)}


def create_flow_log(aws, group: str, fields: list[str]) -> None:
    """A flow log of a VPC of its own delivering to ``group`` in this format."""
    ec2 = aws.session().client("ec2", endpoint_url=aws.url)
    vpc = ec2.create_vpc(CidrBlock="10.10.0.0/16")["Vpc"]["VpcId"]
    ec2.create_flow_logs(ResourceIds=[vpc], ResourceType="VPC", TrafficType="ALL",
                         LogFormat=" ".join(f"${{{f}}}" for f in fields), LogDestinationType="cloud-watch-logs",
                         LogGroupName=group, DeliverLogsPermissionArn="arn:aws:iam::002244369527:role/flow-logs")


def test_cloudwatch_user_format_wins_over_the_flow_log_format(aws, tmp_path):
    # The flow log was recreated in version 5: the events of the window are older, in version 2.
    local, lines, _ = shifted_sample(tmp_path)
    put_events(aws, "flow-logs", "eni-08d92826b27a542dc-all", lines)
    create_flow_log(aws, "flow-logs", V5)
    result = analyze_s3(aws, "cloudwatch://flow-logs", log_format=" ".join(V2))
    assert result.files[0].fields == tuple(V2)
    assert_same_usage(result, sgaudit.analyze(local, INVENTORY, log_format=" ".join(V2)))


def test_cloudwatch_mixed_flow_log_formats_are_read_with_format(aws, tmp_path):
    local, lines, _ = shifted_sample(tmp_path)
    put_events(aws, "flow-logs", "eni-08d92826b27a542dc-all", lines)
    create_flow_log(aws, "flow-logs", V2)
    create_flow_log(aws, "flow-logs", V5)
    with pytest.raises(remote.RemoteError, match=r"cannot tell which one wrote which stream.*Pass --format"):
        analyze_s3(aws, "cloudwatch://flow-logs?stream=eni-08d92826b27a542dc-all")
    # The advice works: --format reads the streams whatever the flow logs' formats.
    result = analyze_s3(aws, "cloudwatch://flow-logs?stream=eni-08d92826b27a542dc-all", log_format=" ".join(V2))
    assert_same_usage(result, sgaudit.analyze(local, INVENTORY, log_format=" ".join(V2)))


def test_cloudwatch_events_go_to_the_analysis_scratch_not_the_cache(aws, tmp_path, cache_dir):
    _, lines, _ = shifted_sample(tmp_path)
    put_events(aws, "flow-logs", "eni-08d92826b27a542dc-all", lines)
    first = analyze_s3(aws, "cloudwatch://flow-logs", log_format=" ".join(V2))
    # A second run of the same query (a weekly cron, another notebook) while the first is still open.
    second = analyze_s3(aws, "cloudwatch://flow-logs", log_format=" ".join(V2))
    assert not (cache_dir / "cloudwatch").exists()
    assert first.timeline("1h").rules["connections"].sum() > 0  # reads the first run's files again
    files = [f.path for f in first.files]
    first.close()
    assert not any(p.exists() for p in files)  # they went with their analysis
    assert all(f.path.exists() for f in second.files)
    second.close()


def throttle(session, event: str, times: int, status: int, body: bytes) -> list[int]:
    """Make the first ``times`` requests of ``event`` answer with a throttling error, through botocore's
    own hook (moto never throttles); returns the list the answered requests are counted in."""
    seen: list[int] = []

    def answer(request, **_):
        seen.append(1)
        if len(seen) <= times:
            raw = urllib3.HTTPResponse(body=io.BytesIO(body), status=status, preload_content=False)
            return AWSResponse(request.url, status, {}, raw)
        return None

    session.events.register(event, answer)
    return seen


def test_cloudwatch_throttling_is_retried(aws, tmp_path):
    local, lines, _ = shifted_sample(tmp_path)
    put_events(aws, "flow-logs", "eni-08d92826b27a542dc-all", lines)
    session = aws.session()
    seen = throttle(session, "before-send.logs.FilterLogEvents", 3, 400,
                    b'{"__type": "ThrottlingException", "message": "Rate exceeded"}')
    result = analyze_s3(aws, "cloudwatch://flow-logs", session=session, log_format=" ".join(V2))
    assert len(seen) > 3
    assert_same_usage(result, sgaudit.analyze(local, INVENTORY, log_format=" ".join(V2)))


def test_s3_throttling_is_retried(aws, sample_bucket):
    session = aws.session()
    seen = throttle(session, "before-send.s3.GetObject", 3, 503,
                    b"<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>")
    key = sample_bucket.list_objects_v2(Bucket=BUCKET, Prefix="vpc/")["Contents"][0]["Key"]
    result = analyze_s3(aws, f"s3://{BUCKET}/{key}", session=session)
    assert len(seen) == 4 and len(result.files) == 1


# --- Errors -------------------------------------------------------------------------------------------------

def test_missing_bucket_is_named(aws):
    with pytest.raises(remote.RemoteError, match="bucket 'no-such-bucket' does not exist"):
        analyze_s3(aws, "s3://no-such-bucket/AWSLogs/")


def test_empty_prefix_says_what_to_check(aws, sample_bucket):
    with pytest.raises(remote.RemoteError, match=r"s3://flow-bucket/vpc: no objects in the window 2030"):
        analyze_s3(aws, f"s3://{BUCKET}/vpc", start="2030-01-01", end="2030-01-02")


def test_missing_log_group_is_named(aws):
    with pytest.raises(remote.RemoteError, match="log group 'nope' does not exist in us-east-1"):
        analyze_s3(aws, "cloudwatch://nope")


@pytest.mark.parametrize("uri", ["gs://bucket/logs", "s3://", "cloudwatch://", "cloudwatch://g?strem=x"])
def test_bad_uris_say_how_to_write_them(aws, uri):
    with pytest.raises(SgauditError, match="s3://|cloudwatch://"):
        analyze_s3(aws, uri)


def test_access_denied_names_the_iam_action():
    denied = ClientError({"Error": {"Code": "AccessDenied", "Message": "Access Denied"}}, "GetObject")
    msg = str(remote._s3_error(denied, "b", "AWSLogs/k.log.gz", "s3:GetObject"))
    assert "s3:GetObject on arn:aws:s3:::b/AWSLogs/k.log.gz" in msg
    msg = str(remote._s3_error(denied, "b", "AWSLogs/", "s3:ListBucket"))
    assert "s3:ListBucket on arn:aws:s3:::b " in msg
    denied = ClientError({"Error": {"Code": "AccessDeniedException", "Message": "no"}}, "FilterLogEvents")
    assert "logs:FilterLogEvents" in str(remote._logs_error(denied, "g", "us-east-1", []))


def test_cloudwatch_without_a_region_is_an_sgaudit_error(aws, tmp_path, monkeypatch, capsys):
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    assert main(["usage", "--flow-logs", "cloudwatch://flow-logs", "--inventory", str(INVENTORY),
                 "--endpoint-url", aws.url, "--out", str(tmp_path / "u.csv"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "no AWS region" in err and "?region=REGION" in err and "AWS_REGION" in err and "--profile" in err


def test_invalid_endpoint_url_is_an_sgaudit_error(tmp_path, capsys):
    assert main(["usage", "--flow-logs", "s3://bucket/logs/", "--inventory", str(INVENTORY),
                 "--endpoint-url", "notaurl", "--out", str(tmp_path / "u.csv"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "--endpoint-url 'notaurl'" in err and "http://localhost:5000" in err


def test_paths_pass_through_untouched(tmp_path):
    paths = [S3_SAMPLE, "some/folder"]
    assert remote.fetch_all(paths, None, None, scratch=tmp_path) == (paths, {})
    assert remote.is_uri("s3://b/k") and not remote.is_uri(Path("s3://b/k")) and not remote.is_uri("C:\\logs")
