"""A real local AWS for the tests: moto's HTTP server, started once per test session.

Never in-process patching: sgaudit talks to it over HTTP with boto3 exactly as it would to AWS, with an
``endpoint_url``. Credentials are fake and set only in the environment of the test session.

    def test_something(moto_server):
        session = moto_server.session()          # boto3 Session with the fake credentials
        ec2 = session.client("ec2", endpoint_url=moto_server.url)
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

import boto3
import pytest

REGION = "us-east-1"
FAKE_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                    "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": REGION}


@dataclass
class MotoServer:
    """The running server: its URL, and helpers to reach it and to start each test from a clean state."""

    url: str

    def session(self, region: str = REGION) -> boto3.Session:
        """A boto3 session with the fake credentials."""
        return boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing",
                             aws_session_token="testing", region_name=region)

    def reset(self) -> None:
        """Forget every resource (moto's own reset endpoint)."""
        import urllib.request

        urllib.request.urlopen(urllib.request.Request(f"{self.url}/moto-api/reset", method="POST")).read()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def moto_server():
    """moto's ThreadedMotoServer on a free loopback port for the whole session, fake credentials set."""
    from moto.server import ThreadedMotoServer

    saved = {k: os.environ.get(k) for k in FAKE_CREDENTIALS}
    os.environ.update(FAKE_CREDENTIALS)
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield MotoServer(url=f"http://127.0.0.1:{port}")
    finally:
        server.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture
def aws(moto_server):
    """The moto server, reset before the test so that each test starts from an empty account."""
    moto_server.reset()
    return moto_server
