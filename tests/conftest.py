"""Test configuration: the helpers in tests/builders.py are imported as a plain module."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
