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
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest
import sgaudit

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


SGAUDIT_CODE = str(Path(sgaudit.__file__).resolve().parent)


def _called_by_sgaudit() -> bool:
    """True when a frame of sgaudit's own code (not a test's) is on the stack of this AWS call."""
    frame = sys._getframe(2)
    while frame is not None:
        if frame.f_code.co_filename.startswith(SGAUDIT_CODE):
            return True
        frame = frame.f_back
    return False


@contextmanager
def policy_guard():
    """Every AWS operation sgaudit's code sends must be an action of docs/aws.md's IAM policy.

    botocore's one funnel for API calls (``BaseClient._make_api_call``, which paginators use too) is
    wrapped for the test session: a call from sgaudit's code outside `collect.ALLOWED_ACTIONS` fails the
    test that made it. Calls the tests make themselves (setting up the account) are not checked.
    """
    from botocore.client import BaseClient
    from sgaudit import collect

    original = BaseClient._make_api_call

    def guarded(self, operation_name, api_params):
        if _called_by_sgaudit():
            action = collect.iam_action(self.meta.service_model.signing_name, operation_name)
            if action not in collect.ALLOWED_ACTIONS:
                raise AssertionError(f"sgaudit called {action} ({operation_name}), which the IAM policy of "
                                     "docs/aws.md does not allow")
            CALLED.add(action)
        return original(self, operation_name, api_params)

    BaseClient._make_api_call = guarded
    try:
        yield
    finally:
        BaseClient._make_api_call = original


#: The IAM actions sgaudit's code called during the test session (all of them allowed).
CALLED: set[str] = set()


@pytest.fixture(scope="session")
def moto_server():
    """moto's ThreadedMotoServer on a free loopback port for the whole session, fake credentials set,
    and every AWS call of sgaudit's code checked against the IAM policy (`policy_guard`)."""
    from moto.server import ThreadedMotoServer

    saved = {k: os.environ.get(k) for k in FAKE_CREDENTIALS}
    os.environ.update(FAKE_CREDENTIALS)
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        with policy_guard():
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
