"""The local AWS the tests use is a real HTTP server: boto3 reaches it over the network."""

from __future__ import annotations

import pytest


def test_moto_server_answers_over_http_and_resets(aws):
    s3 = aws.session().client("s3", endpoint_url=aws.url)
    s3.create_bucket(Bucket="flow-logs")
    assert [b["Name"] for b in s3.list_buckets()["Buckets"]] == ["flow-logs"]
    aws.reset()
    assert s3.list_buckets()["Buckets"] == []



def test_policy_guard_fails_a_call_of_sgaudit_outside_the_policy(aws, monkeypatch):
    from sgaudit import collect

    # Take DescribeRegions off the policy: sgaudit calling it must now fail the test that made the call.
    monkeypatch.setattr(collect, "ALLOWED_ACTIONS",
                        tuple(a for a in collect.ALLOWED_ACTIONS if a != "ec2:DescribeRegions"))
    with pytest.raises(AssertionError, match="ec2:DescribeRegions"):
        collect.enabled_regions(aws.session(), endpoint_url=aws.url)
    aws.session().client("ec2", endpoint_url=aws.url).describe_regions()  # the test's own call: not checked
