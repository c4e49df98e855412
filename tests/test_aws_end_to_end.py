"""From AWS to the report, against moto's HTTP server: `sgaudit collect`, then flow logs read from S3 and
from CloudWatch Logs give the same usage table as the local files they were uploaded from, and
`sgaudit report` runs on the S3 copy.
"""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
from builders import V5, handshake, line, rec, write_log
from sgaudit.cli import main
from test_collect import ACCOUNT, REGION, _account

BUCKET = "flow-logs-us-east-1"  # the bucket _account creates
GROUP = "/vpc/flow-logs"
FORMAT = " ".join(f"${{{f}}}" for f in V5)


def traffic(acct: dict, start: int) -> list[dict]:
    eni = acct["web_eni"]
    return (handshake(eni, "10.9.0.9", "10.0.1.11", 40000, 22, start=start)
            + handshake(eni, "10.0.1.20", "10.0.1.10", 40001, 443, start=start + 60)
            + handshake(eni, "203.0.113.7", "10.0.1.10", 40002, 8080, start=start + 120)
            + [rec(eni, "198.51.100.1", "10.0.1.10", 50000, 3306, flags=2, direction="ingress", action="REJECT",
                   start=start + 180)])


def s3_key(start: int) -> str:
    """Where AWS delivers a flow-log file: the S3 key layout, with the file's time in its name."""
    t = time.gmtime(start)
    day = time.strftime("%Y/%m/%d", t)
    stamp = time.strftime("%Y%m%dT%H%MZ", t)
    return (f"AWSLogs/{ACCOUNT}/vpcflowlogs/{REGION}/{day}/"
            f"{ACCOUNT}_vpcflowlogs_{REGION}_fl-0123456789abcdef0_{stamp}_0a1b2c3d.log.gz")


def usage_csv(tmp_path: Path, name: str, *args: str) -> pd.DataFrame:
    out = tmp_path / f"{name}.csv"
    assert main(["usage", *args, "--inventory", str(tmp_path / "inv"), "--out", str(out), "--no-progress"]) == 0
    return pd.read_csv(out)


def test_collect_then_s3_and_cloudwatch_sources_equal_the_local_files(aws, tmp_path, capsys):
    acct = _account(aws)
    assert main(["collect", "--endpoint-url", aws.url, "--region", REGION, "--out", str(tmp_path / "inv"),
                 "--no-progress"]) == 0

    # Yesterday: CloudWatch Logs refuses events older than 14 days.
    start = (int(time.time()) - 86400) // 3600 * 3600
    records = traffic(acct, start)
    local = write_log(tmp_path / "local" / "flow.log.gz", records)
    session = aws.session()
    session.client("s3", endpoint_url=aws.url).put_object(Bucket=BUCKET, Key=s3_key(start),
                                                          Body=local.read_bytes())  # write_log gzips
    logs = session.client("logs", endpoint_url=aws.url)
    logs.create_log_group(logGroupName=GROUP)
    logs.create_log_stream(logGroupName=GROUP, logStreamName=acct["web_eni"] + "-all")
    logs.put_log_events(logGroupName=GROUP, logStreamName=acct["web_eni"] + "-all", logEvents=[
        {"timestamp": r["start"] * 1000, "message": line(r, V5)} for r in sorted(records, key=lambda r: r["start"])])

    expected = usage_csv(tmp_path, "local", "--flow-logs", str(local))
    assert set(expected.loc[expected["status"] == "used", "rule_id"]) == {
        acct["rules"][22], acct["rules"][443], acct["rules"][8080]}
    from_s3 = usage_csv(tmp_path, "s3", "--flow-logs", f"s3://{BUCKET}/AWSLogs/", "--endpoint-url", aws.url,
                        "--no-cache")
    from_cw = usage_csv(tmp_path, "cw", "--flow-logs", f"cloudwatch://{GROUP}", "--format", FORMAT,
                        "--endpoint-url", aws.url)
    pd.testing.assert_frame_equal(from_s3, expected)
    pd.testing.assert_frame_equal(from_cw, expected)

    # The report's notebook reads the same URIs in its own kernel (AWS_ENDPOINT_URL from --endpoint-url).
    for name, source in (("s3", ["--flow-logs", f"s3://{BUCKET}/AWSLogs/"]),
                         ("cw", ["--flow-logs", f"cloudwatch://{GROUP}", "--format", FORMAT])):
        html = tmp_path / f"report-{name}.html"
        assert main(["report", *source, "--inventory", str(tmp_path / "inv"), "--endpoint-url", aws.url,
                     "--out", str(html), "--no-progress"]) == 0
        text = html.read_text()
        assert all(acct["rules"][port] in text for port in (22, 443, 8080, 3306)), name
