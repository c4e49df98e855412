"""Typed exceptions, all under one root so that callers can catch `SgauditError` alone.

Every message names the thing (file, line, field, rule), the value, and what to do about it.
"""

from __future__ import annotations


def whole_number(value: object) -> bool:
    """Whether a count, limit or budget a caller passed is an ``int``: ``True`` is one in Python, and is not.

    The checks that raise the errors below on such values share this, and each says its own bound.
    """
    return isinstance(value, int) and not isinstance(value, bool)


def as_list(value: object) -> list:
    """A filter a caller passed as one value or several: ``"sg-1"`` and ``["sg-1"]`` alike; None or "" none."""
    if value is None or value == "":
        return []
    return [value] if isinstance(value, str) else list(value)


class SgauditError(Exception):
    """Root of every error sgaudit raises on purpose; the CLI prints it and exits with status 2."""


class FlowLogFormatError(SgauditError):
    """A flow-log format or header that sgaudit cannot use (unknown field, missing required field)."""


class FlowLogReadError(SgauditError):
    """A flow-log file that cannot be read at all (truncated gzip, not a flow log, unreadable)."""


class InventoryError(SgauditError):
    """An inventory snapshot folder that is missing a file or holds JSON of the wrong shape."""


class WindowError(SgauditError):
    """A ``--start``/``--end`` that cannot be parsed or is empty."""
