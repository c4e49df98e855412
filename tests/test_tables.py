"""Offline interactive tables: escaped cells, honest truncation captions, readable values."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest
from sgaudit import tables
from sgaudit.errors import SgauditError
from sgaudit.tables import datatable, offline_datatables, protocol_name, readable

EVIL = "<img src=x onerror=alert(1)>"
EVIL_TEXT = "&lt;img src=x onerror=alert(1)&gt;"


def usage() -> pd.DataFrame:
    return pd.DataFrame({
        "rule_id": ["sgr-1", "sgr-2", "sgr-3", "sgr-4", "sgr-5"],
        "group_name": ["web", EVIL, "db", "db", "a & b"],
        "protocol": ["tcp", "6", "-1", "47", "250"],
        "description": [EVIL, "", "ssh", "", ""],
        "connections": [5, 0, 12, 3, 7],
        "port": pd.array([22, None, 443, 80, 53], dtype="Int64"),
        "last_seen": pd.to_datetime(["2025-02-06T02:00:00Z", None, "2025-02-06T03:04:05Z", None, None], utc=True),
    })


def dt_args(page: str) -> dict:
    """The arguments itables hands to DataTables, from the page's script."""
    text = re.search(r"let dt_args = (\{.*?\n\s*\});", page, re.S).group(1)
    return json.loads(text)


def rows(page: str) -> list[list]:
    return json.loads(dt_args(page)["data_json"])


def test_datatable_returns_html_for_notebooks():
    table = datatable(usage())
    assert hasattr(table, "_repr_html_")
    assert "<table" in table._repr_html_()


def test_cells_header_and_caption_from_aws_render_as_text():
    df = usage().rename(columns={"description": f"description {EVIL}"})
    page = datatable(df, caption=f"rules of {EVIL}")._repr_html_()
    assert "<img" not in page
    args = dt_args(page)
    assert rows(page)[0][3] == EVIL_TEXT
    assert rows(page)[1][1] == EVIL_TEXT
    assert rows(page)[4][1] == "a &amp; b"
    assert f"<th>description {EVIL_TEXT}</th>" in args["table_html"]
    assert args["caption"].startswith(f"rules of {EVIL_TEXT}")


def test_truncation_is_said_in_the_caption_and_keeps_the_first_rows_of_the_sort():
    page = datatable(usage(), caption="Rules", max_rows=2, sort_by="-connections")._repr_html_()
    assert dt_args(page)["caption"] == "Rules — showing 2 of 5 rows (sorted by connections descending)"
    assert [r[0] for r in rows(page)] == ["sgr-3", "sgr-5"]


@pytest.mark.parametrize(("sort_by", "caption"), [
    (None, "showing 2 of 5 rows (in the order given)"),
    (["rule_id"], "showing 2 of 5 rows (sorted by rule_id ascending)"),
    (["group_name", "-connections"], "showing 2 of 5 rows (sorted by group_name ascending, connections descending)"),
], ids=["unsorted", "ascending", "two-keys"])
def test_truncation_caption_names_the_sort(sort_by, caption):
    assert dt_args(datatable(usage(), max_rows=2, sort_by=sort_by)._repr_html_())["caption"] == caption


def test_an_untruncated_table_gives_its_row_count():
    assert dt_args(datatable(usage())._repr_html_())["caption"] == "5 rows"
    assert dt_args(datatable(usage().head(1))._repr_html_())["caption"] == "1 row"


def test_itables_does_not_downsample_behind_the_caption():
    big = pd.DataFrame({"rule_id": [f"sgr-{i}" for i in range(1500)], "description": ["x" * 100] * 1500})
    page = datatable(big)._repr_html_()
    assert len(rows(page)) == 1500
    assert "downsampling_warning" not in dt_args(page)


def test_datatable_is_offline_sortable_and_searchable():
    page = datatable(pd.DataFrame({"connections": range(15)}))._repr_html_()
    # The offline template waits for the bundle `offline_datatables` injects; nothing is fetched.
    assert "window._itables_" in page
    assert not re.search(r"<script[^>]+src=|import .+ from", page)
    assert dt_args(page)["layout"]["topEnd"] == "search"
    assert dt_args(page)["order"] == []
    assert rows(page)[3] == [3]


def test_offline_datatables_carries_the_library_and_fetches_nothing():
    page = offline_datatables()._repr_html_()
    assert "injectModule" in page and len(page) > 500_000
    # The only addresses are a help link and SVG namespaces, none loaded.
    assert set(re.findall(r"https?://[^\s\"'<>)]*", page)) <= {
        "https://itables.org/", "http://www.w3.org/2000/svg", "http://www.w3.org/1999/xlink"}


def test_datetimes_are_iso_utc_and_missing_values_empty():
    table = rows(datatable(usage(), columns=["rule_id", "last_seen", "port"])._repr_html_())
    assert table[0] == ["sgr-1", "2025-02-06T02:00:00Z", "22"]
    assert table[1] == ["sgr-2", "", ""]
    assert table[2][1] == "2025-02-06T03:04:05Z"


def test_missing_text_is_empty_not_none():
    # The problems table: a problem of no line has no value (None), which a page must not show as "None",
    # also when no problem has one (pandas keeps such a column as objects, not as text).
    problems = pd.DataFrame({"kind": ["empty_file", "malformed_line"], "value": [None, "garbage"]})
    assert rows(datatable(problems)._repr_html_()) == [["empty_file", ""], ["malformed_line", "garbage"]]
    none = pd.DataFrame({"kind": ["empty_file"], "value": [None]}, dtype=object)
    assert rows(datatable(none)._repr_html_()) == [["empty_file", ""]]


def test_protocols_are_readable():
    assert [r[0] for r in rows(datatable(usage(), columns=["protocol"])._repr_html_())] == [
        "tcp", "tcp", "all", "gre", "250"]


@pytest.mark.parametrize(("value", "name"), [
    (6, "tcp"), ("6", "tcp"), ("tcp", "tcp"), ("TCP", "tcp"), ("-1", "all"), (-1, "all"), (58, "icmpv6"),
    (132, "sctp"), (250, "250"), (None, ""), (pd.NA, ""),
])
def test_protocol_name(value, name):
    assert protocol_name(value) == name


def test_readable_keeps_numbers_numeric():
    out = readable(usage())
    assert out["connections"].tolist() == [5, 0, 12, 3, 7]
    assert out.shape == usage().shape


def test_columns_and_sort_keys_that_do_not_exist_are_all_named():
    with pytest.raises(SgauditError, match="lacks the column\\(s\\) nope, never"):
        datatable(usage(), columns=["rule_id", "nope"], sort_by="-never")


def test_generated_code_is_highlighted_when_short_and_shown_plain_folded_when_long():
    # A group name from AWS inside the generated text: escaped either way.
    line = 'description = "web <script>alert(1)</script> & co"\n'
    short = tables.code(line, language="terraform")
    assert 'class="highlight"' in short._repr_html_() and "<script>" not in short._repr_html_()
    long_text = line * (tables.HIGHLIGHT_LIMIT // len(line) + 1)
    long = tables.code(long_text, language="terraform")
    page = long._repr_html_()
    assert page.startswith("<details><summary>") and "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; co" in page
    assert f"{long_text.count(chr(10)):,} lines of terraform" in page
    assert 'class="highlight"' not in page and not hasattr(long, "_repr_latex_")
    assert repr(long) == long_text


def test_text_reads_from_the_left_long_text_wraps_and_ranked_columns_sort_by_meaning():
    df = pd.DataFrame({"severity": ["low", "critical", "info"], "sentence": ["x" * 80, "y", "z"], "n": [1, 2, 3]})
    page = datatable(df)._repr_html_()
    args = dt_args(page)
    defs = args["columnDefs"]
    assert {"targets": [0], "className": "dt-left"} in defs  # a notebook's style right-aligns every cell
    assert {"targets": [1], "className": "dt-left sgaudit-long"} in defs and "sgaudit-long{white-space:normal" in page
    assert not [d for d in defs if d["targets"] == [2] and "className" in d]  # numbers stay right-aligned
    # Severity sorts by a hidden rank: critical 0 … info 4, not alphabetically.
    assert {"targets": [0], "orderData": [3]} in defs
    assert {"targets": [3], "visible": False, "searchable": False} in defs
    assert [r[3] for r in rows(page)] == [3, 0, 4]
    assert not args.get("text_in_header_can_be_selected", False)  # a click on the name sorts
    assert args["pageLength"] == 25


def test_a_column_named_like_a_ranked_one_but_holding_other_values_sorts_as_text():
    args = dt_args(datatable(pd.DataFrame({"status": ["open", "closed"]}))._repr_html_())
    assert args["columnDefs"] == [{"targets": [0], "className": "dt-left"}]


def test_amounts_get_thousands_separators_and_identifiers_do_not():
    df = pd.DataFrame({"bytes": [354747199], "connections": [1200], "from_port": [65535], "port": [8080],
                       "protocol": [6]})
    defs = dt_args(datatable(df)._repr_html_())["columnDefs"]
    rendered = {d["targets"][0] for d in defs if "render" in d}
    assert rendered == {0, 1}
    assert all("toLocaleString('en-US')" in d["render"] for d in defs if "render" in d)
