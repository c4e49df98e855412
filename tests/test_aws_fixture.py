"""The local AWS the tests use is a real HTTP server: boto3 reaches it over the network."""

from __future__ import annotations


def test_moto_server_answers_over_http_and_resets(aws):
    s3 = aws.session().client("s3", endpoint_url=aws.url)
    s3.create_bucket(Bucket="flow-logs")
    assert [b["Name"] for b in s3.list_buckets()["Buckets"]] == ["flow-logs"]
    aws.reset()
    assert s3.list_buckets()["Buckets"] == []
