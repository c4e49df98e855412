"""Result tables as sortable, searchable HTML that works offline (itables/DataTables, no kernel, no CDN).

Every value from AWS (names, descriptions, tags) reaches the page as text: itables escapes ``&``, ``<``
and ``>`` in every non-numeric cell and in the header when ``allow_html`` is False, which is forced here;
the caption, which itables inserts as it is, is escaped here.

The DataTables library itself is not in each table: a report shows `offline_datatables()` once, anywhere
in the page (a table waits for it), which is what ``itables.init_notebook_mode(connected=False)``
displays, returned instead. Without it a table stays on "Loading ITables…".
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence

import pandas as pd
from IPython.display import HTML, Code

from .errors import SgauditError

#: IANA protocol numbers worth a name in a security-group audit; ``-1`` is AWS's "all protocols".
PROTOCOL_NAMES = {
    -1: "all", 1: "icmp", 2: "igmp", 4: "ipip", 6: "tcp", 17: "udp", 41: "ipv6", 47: "gre", 50: "esp",
    51: "ah", 58: "icmpv6", 89: "ospf", 132: "sctp",
}

#: ISO 8601 in UTC, the form the CSV outputs use, so a table and a file can be compared by eye.
ISO_UTC = "%Y-%m-%dT%H:%M:%SZ"


def protocol_name(value: object) -> str:
    """The readable name of a protocol given as a number, a numeric string or a name.

    Parameters
    ----------
    value : int, str or missing
        ``6``, ``"6"``, ``"tcp"``, ``"-1"``…

    Returns
    -------
    str
        ``"tcp"`` for 6, ``"all"`` for -1, the number itself when it has no common name, ``""`` when missing.
    """
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return ""
    text = str(value).strip()
    try:
        number = int(text)
    except ValueError:
        return text.lower()
    return PROTOCOL_NAMES.get(number, str(number))


def require_columns(df: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    """Raise one error naming every column `what` lacks (rather than failing on the first).

    Raises
    ------
    SgauditError
        When any of `columns` is missing from `df`.
    """
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise SgauditError(f"{what} lacks the column(s) {', '.join(missing)}; it has {', '.join(map(str, df.columns))}")


def _sort_keys(sort_by: str | Sequence[str] | None) -> list[tuple[str, bool]]:
    """``"-connections"`` → ``[("connections", False)]``: a leading minus means descending."""
    if sort_by is None:
        return []
    names = [sort_by] if isinstance(sort_by, str) else list(sort_by)
    return [(n[1:], False) if n.startswith("-") else (n, True) for n in names]


def _describe_sort(keys: list[tuple[str, bool]]) -> str:
    if not keys:
        return "in the order given"
    return "sorted by " + ", ".join(f"{name} {'ascending' if asc else 'descending'}" for name, asc in keys)


def readable(df: pd.DataFrame) -> pd.DataFrame:
    """A copy for people: datetimes as ISO UTC text (NaT as empty), protocol numbers as names, missing text empty.

    Parameters
    ----------
    df : pandas.DataFrame

    Returns
    -------
    pandas.DataFrame
        Same rows and columns; values are not escaped (the renderer does that).
    """
    out = df.copy()
    for name in out.columns:
        col = out[name]
        if isinstance(col.dtype, pd.DatetimeTZDtype):
            out[name] = col.dt.tz_convert("UTC").dt.strftime(ISO_UTC).fillna("")
        elif pd.api.types.is_datetime64_dtype(col.dtype):
            # Naive datetimes in sgaudit are UTC by construction (parsed at the edge).
            out[name] = col.dt.strftime(ISO_UTC).fillna("")
        elif name == "protocol":
            out[name] = col.map(protocol_name)
        elif isinstance(col.dtype, pd.api.extensions.ExtensionDtype) and col.isna().any():
            # Nullable integers with NA (a port-less protocol's port) go out as text: NA is not JSON.
            out[name] = col.astype(object).where(col.notna(), "").astype(str)
        elif col.dtype == object and col.isna().any():
            out[name] = col.where(col.notna(), "")  # a missing text (a problem with no line) is blank, not "None"
    return out


def truncation_note(shown: int, total: int, keys: list[tuple[str, bool]]) -> str:
    """``"showing 2,000 of 14,203 rows (sorted by connections descending)"``, or the row count."""
    if shown < total:
        return f"showing {shown:,} of {total:,} rows ({_describe_sort(keys)})"
    return f"{total:,} row{'s' if total != 1 else ''}"


#: Text longer than this (characters, in any row) makes a column wrap: a finding's sentence on one line
#: pushed the table thousands of pixels wide, out of sight.
LONG_TEXT = 60

#: Rows a table page shows: the window overview (21 rows) and most per-group tables fit on one.
PAGE_LENGTH = 25

#: Cell styles a table needs beyond DataTables' own: long text wraps (the table is ``nowrap`` so that IDs
#: never break at their hyphens), with room to be read; captions read from the left.
_STYLE = ("<style>table.dataTable.nowrap td.sgaudit-long{white-space:normal;min-width:24em;max-width:48em}"
          "table.dataTable caption{text-align:left}</style>")


#: A DataTables renderer: whole numbers displayed with thousands separators, sorted and searched as they are.
_THOUSANDS = ("function (data, type) { return type === 'display' && data !== null && data !== '' "
              "&& !isNaN(data) ? Number(data).toLocaleString('en-US') : data; }")

#: Whole-number columns that are identifiers, not amounts: shown as AWS writes them (port 65535, not 65,535).
_IDENTIFIERS = re.compile(r"port|protocol|family|code|type|_id$|^id$")


def _orders() -> dict[str, tuple[str, ...]]:
    """Columns sorted by meaning, not alphabet: severity from critical down, status and evidence strongest first."""
    from .findings import SEVERITIES
    from .usage import EVIDENCE_RANK, STATUSES

    return {"severity": SEVERITIES, "status": STATUSES,
            "evidence": tuple(sorted(EVIDENCE_RANK, key=EVIDENCE_RANK.get, reverse=True))}


def _column_defs(df: pd.DataFrame) -> tuple[pd.DataFrame, list[dict]]:
    """DataTables ``columnDefs`` for ``df`` (readable values), and ``df`` with a hidden rank column per ranked one.

    Text reads from the left (a notebook's own style right-aligns every cell), long text wraps, and a
    column of `_orders` sorts by a hidden rank column.
    """
    from itables import JavascriptFunction

    defs: list[dict] = []
    out = df.copy()
    for i, name in enumerate(df.columns):
        col = df[name]
        if pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col):
            if pd.api.types.is_integer_dtype(col) and not _IDENTIFIERS.search(str(name)):
                # 354,747,199 bytes, read at a glance; sorting still sees the number.
                defs.append({"targets": [i], "render": JavascriptFunction(_THOUSANDS)})
            continue
        text = col.astype(str)
        long = bool(len(text)) and int(text.str.len().max()) > LONG_TEXT
        defs.append({"targets": [i], "className": "dt-left sgaudit-long" if long else "dt-left"})
        order = _orders().get(name)
        if order and set(text) <= set(order) | {""}:
            rank = len(out.columns)
            out[f"{name} (rank)"] = [order.index(v) if v in order else len(order) for v in text]
            defs += [{"targets": [i], "orderData": [rank]},
                     {"targets": [rank], "visible": False, "searchable": False}]
    return out, defs


def datatable(df: pd.DataFrame, caption: str | None = None, max_rows: int = 2000,
              sort_by: str | Sequence[str] | None = None, columns: Sequence[str] | None = None) -> HTML:
    """An interactive table (sort, search, pages) that works in an offline HTML file.

    Parameters
    ----------
    df : pandas.DataFrame
        Any sgaudit table; values from AWS are shown as text, never as HTML.
    caption : str, optional
        Shown under the table, followed by the row count or an honest truncation note.
    max_rows : int
        At most this many rows go into the page (after sorting); the caption says how many were left out.
    sort_by : str or list of str, optional
        Column names; a leading ``-`` sorts that column descending (``"-connections"``). Applied before
        truncation, so the rows kept are the first ones in this order.
    columns : list of str, optional
        The columns to show, in order. Default: all.

    Returns
    -------
    IPython.display.HTML
        ``_repr_html_`` gives the table; it needs `offline_datatables()` shown once in the same page.

    Raises
    ------
    SgauditError
        When `columns` or `sort_by` name columns `df` lacks.
    """
    import itables

    keys = _sort_keys(sort_by)
    require_columns(df, list(columns or []) + [name for name, _ in keys], "the table")
    if columns is not None:
        df = df[list(columns)]
    if keys:
        df = df.sort_values([n for n, _ in keys], ascending=[a for _, a in keys], kind="stable")
    total = len(df)
    df = readable(df.head(max_rows)).reset_index(drop=True)
    note = truncation_note(len(df), total, keys)
    text = f"{caption} — {note}" if caption else note
    df, defs = _column_defs(df)
    page = itables.to_html_datatable(
        df, caption=html.escape(text), connected=False, allow_html=False, showIndex=False,
        # itables would otherwise downsample past 64 KB on its own, silently as far as the caption goes.
        maxBytes=0, maxRows=0, maxColumns=0, display_logo_when_loading=False,
        # A click on a column's name sorts it (itables' default keeps the name selectable instead, and
        # only the small arrow sorts).
        text_in_header_can_be_selected=False, columnDefs=defs, pageLength=PAGE_LENGTH,
    )
    return HTML(_STYLE + page)


def offline_datatables() -> HTML:
    """The DataTables library, to be shown once in a report that has `datatable` tables.

    Returns
    -------
    IPython.display.HTML
        The script and styles (about 1 MB) ``itables.init_notebook_mode(connected=False)`` would display.
    """
    from itables import options
    from itables.javascript import generate_init_offline_itables_html

    from .printing import print_support

    return HTML(generate_init_offline_itables_html(options.dt_bundle) + print_support().data)


#: Generated text longer than this (characters) is shown plain, folded, instead of highlighted: on a big
#: account's plan (13,000 proposed rules) highlighting made 40 MB of notebook output for 4 MB of Terraform,
#: in HTML and LaTeX, and a 25 MB report; text that long is searched and copied, not read line by line.
HIGHLIGHT_LIMIT = 200_000


class PlainCode:
    """A long block of generated text: escaped, unhighlighted, in a folded ``<details>`` with its size."""

    def __init__(self, text: str, language: str) -> None:
        self.text, self.language = text, language

    def __repr__(self) -> str:
        return self.text

    def _repr_html_(self) -> str:
        lines = self.text.count("\n") + (not self.text.endswith("\n"))
        summary = (f"{lines:,} lines of {html.escape(self.language)}, {len(self.text) / 1e6:.1f} MB: shown without "
                   "highlighting (click to open)")
        return f"<details><summary>{summary}</summary><pre>{html.escape(self.text)}</pre></details>"


def code(text: str, language: str = "sh") -> Code | PlainCode:
    """A block of generated text (AWS CLI commands, Terraform) shown highlighted and escaped, never run.

    Text longer than `HIGHLIGHT_LIMIT` is shown plain and folded (`PlainCode`), escaped all the same.
    """
    if len(text) > HIGHLIGHT_LIMIT:
        return PlainCode(text, language)
    return Code(text, language=language)
