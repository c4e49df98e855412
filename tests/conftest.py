"""Test configuration: the helpers in tests/builders.py are imported as a plain module."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

# The local AWS (moto's HTTP server) for the tests that need one: `moto_server` (session) and `aws` (reset).
from aws import aws, moto_server  # noqa: E402, F401
