"""The shipped sample account against the results its generator expects (sample_logs/expected/).

The expected files were derived from SPEC.md by the generator's own reasoning about each conversation it
wrote, independently of the engine, so these tests compare two readings of the SPEC.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sgaudit
from sgaudit.output import iso_utc

ROOT = Path(__file__).resolve().parents[1] / "sample_logs"
INVENTORY = ROOT / "inventory"
S3 = ROOT / "flow-logs"
CW_TEXT = ROOT / "cloudwatch" / "app-eni.log"
CW_JSON = ROOT / "cloudwatch" / "filter-log-events.json"
COLUMNS = ["status", "evidence", "connections", "exclusive", "peers", "ports", "first_seen", "last_seen",
           "bytes", "packets"]

CASES = {
    "s3-v5": ("usage-flow-logs.json", [S3]),
    "cloudwatch-v2-text": ("usage-cloudwatch.json", [CW_TEXT]),
    "cloudwatch-v2-json": ("usage-cloudwatch.json", [CW_JSON]),
    "combined": ("usage-combined.json", [S3, CW_TEXT]),
}


@pytest.fixture(scope="module", params=list(CASES), ids=list(CASES))
def case(request):
    expected_file, paths = CASES[request.param]
    expected = json.loads((ROOT / "expected" / expected_file).read_text())
    result = sgaudit.analyze(paths, INVENTORY)
    yield expected, result
    result.close()


def _expected_value(rule: dict, column: str):
    value = rule.get(column)
    if column == "ports":
        return ",".join(str(p) for p in value or [])
    if value is None:
        return "" if column in ("evidence", "first_seen", "last_seen") else 0
    return value


def test_every_rule_matches_the_expected_usage(case):
    expected, result = case
    usage = result.usage.copy()
    usage["first_seen"] = iso_utc(usage["first_seen"])
    usage["last_seen"] = iso_utc(usage["last_seen"])
    got = usage.set_index("rule_id")
    assert set(got.index) == {r["rule_id"] for r in expected["rules"]}
    diffs = [
        (r["rule_name"], col, _expected_value(r, col), got.loc[r["rule_id"], col])
        for r in expected["rules"] for col in COLUMNS
        if str(_expected_value(r, col)) != str(got.loc[r["rule_id"], col])
    ]
    assert diffs == []


def test_window_records_and_observed_interfaces(case):
    expected, result = case
    lo, hi = result.window
    assert lo.strftime("%Y-%m-%dT%H:%M:%SZ") == expected["window"]["start"]
    assert hi.strftime("%Y-%m-%dT%H:%M:%SZ") == expected["window"]["end"]
    q = result.quality.set_index("bucket")["records"]
    assert q["total"] == expected["records"]
    assert q.drop("total").sum() == q["total"]
    assert q["unattributable"] == expected["unattributable_records"]
    assert sorted(result.observed) == sorted(expected["observed_interfaces"])


def test_unexplained_conversations(case):
    expected, result = case
    got = result.unexplained.groupby(["interface_id", "direction", "port", "peer"]).size().to_dict()
    want = {(u["interface"], u["direction"], u["port"], u["peer"]): u["conversations"] for u in expected["unexplained"]}
    assert got == want


def test_rejected_attempts(case):
    expected, result = case
    got = {(r.interface_id, r.direction, r.port): (r.attempts, r.peers) for r in result.rejected.itertuples()}
    want = {(r["interface"], r["direction"], r["port"]): (r["attempts"], r["peers"]) for r in expected["rejected"]}
    assert got == want


def test_sample_logs_are_small_enough_to_commit():
    size = sum(p.stat().st_size for p in ROOT.rglob("*") if p.is_file())
    assert size < 5 * 2**20


def test_generator_is_deterministic(tmp_path):
    """Re-running the generator reproduces the committed files byte for byte."""
    import subprocess
    import sys

    subprocess.run([sys.executable, str(ROOT / "generate.py"), str(tmp_path)], check=True, capture_output=True)
    for committed in (ROOT / "flow-logs").rglob("*.gz"):
        fresh = tmp_path / committed.relative_to(ROOT)
        assert fresh.read_bytes() == committed.read_bytes(), committed.name
