"""How a report prints: every table whole and every figure within the paper, for audit evidence filed as PDF.

On screen a table shows one page of rows and a figure the width of the window. Printed (or saved as PDF
from the browser) that lost every row but the first page, and cut wide tables and figures at the paper's
edge. `print_support` is shown once a page, after the DataTables library (`notebook.setup` and
`tables.offline_datatables` do it): it shows nothing, and only acts while the page prints.
"""

from __future__ import annotations

from IPython.display import HTML

#: The page prints in A4 landscape: the usage tables have up to 21 columns.
#: - Tables lose their search box, page buttons, "Showing 1 to N" and sort arrows, put their caption on
#:   top (not alone at the foot of a page), drop the column widths set on screen, and every cell
#:   wraps, anywhere if it must, but never inside a column's name (which keeps short columns wide enough
#:   for their words); long text gets room to be read.
#: - Figures are never cut at a page break or by their cells' overflow.
_STYLE = """<style>@media print {
@page {size: A4 landscape; margin: 10mm}
div.dt-container .dt-search, div.dt-container .dt-length, div.dt-container .dt-paging {display: none}
div.dt-container .dt-info, table.dataTable thead .dt-column-order {display: none}
table.dataTable {caption-side: top !important}
table.dataTable caption {break-after: avoid}
div.dt-container .dt-layout-cell {overflow: visible !important}
table.dataTable {width: 100% !important; font-size: 7.5pt}
table.dataTable th, table.dataTable td {width: auto !important; padding: 2px 3px !important}
table.dataTable.nowrap th, table.dataTable.nowrap td {white-space: normal !important; overflow-wrap: anywhere}
table.dataTable.nowrap thead th {overflow-wrap: normal}
table.dataTable.nowrap td.sgaudit-long {min-width: 14em !important; max-width: none !important}
.jp-OutputArea, .jp-OutputArea-child, .jp-OutputArea-output, .jp-RenderedHTML {overflow: visible !important}
.js-plotly-plot {break-inside: avoid}
.sgaudit-print-note {font-size: 8pt; font-style: italic; margin: 0 0 2px; break-after: avoid}
}</style>"""

#: DataTables keeps only the current page of rows in the document, and plotly.js draws a figure at a fixed
#: width in pixels, so CSS alone cannot do it. While the page prints:
#: - every table shows all its rows, and one still wider than the paper is scaled down to fit (``zoom``);
#: - every figure is drawn again at the paper's width.
#: Afterwards everything is as it was. It runs on ``beforeprint`` (the layout is still the screen's then,
#: so figures take a width that fits A4 landscape) and again on a change of the ``print`` media query (the
#: printed layout, measured; what a print media emulation and Chromium's print-to-PDF give).
_SCRIPT = """<script>
(function () {
    var DataTable = null, tables = [], zoomed = [], figures = [], notes = [], PAPER = 1000;
    if (window.{loaded}) { window.{loaded}.then(function (module) { DataTable = module.default; }); }
    function everyRow() {
        if (!DataTable || tables.length) { return; }
        DataTable.tables().forEach(function (node) {
            var table = new DataTable.Api(node);
            tables.push([table, table.page.len(), table.page()]);
            table.page.len(-1).draw(false);
        });
    }
    function fitTables() {
        zoomed.forEach(function (t) { t.style.zoom = ""; });
        zoomed = [];
        document.querySelectorAll("table.dataTable").forEach(function (t) {
            var room = (t.closest(".dt-container") || t.parentElement).clientWidth, width = t.scrollWidth;
            if (room && width > room) { t.style.zoom = (room / width).toFixed(3); zoomed.push(t); }
        });
    }
    function fitFigures(measured) {
        if (!window.Plotly) { return; }
        document.querySelectorAll(".js-plotly-plot").forEach(function (gd) {
            if (figures.indexOf(gd) < 0) { figures.push(gd); }
            var width = measured ? Math.min(gd.clientWidth || PAPER, PAPER) : PAPER;
            window.Plotly.relayout(gd, {width: width});
        });
        if (notes.length) { return; }
        // Paper holds one state of a figure: a menu's other entries are not printed, and the page says so.
        figures.forEach(function (gd) {
            var menu = ((gd.layout || {}).updatemenus || []).filter(function (m) {
                return (m.type || "dropdown") === "dropdown" && (m.buttons || []).length > 1;
            })[0];
            if (!menu) { return; }
            var shown = menu.buttons[menu.active || 0] || {}, note = document.createElement("p");
            // Labels are plotly text, entities escaped (figures.as_text): parsed inert, read back as text.
            var label = new DOMParser().parseFromString(shown.label || "", "text/html").documentElement.textContent;
            note.className = "sgaudit-print-note";
            note.textContent = "Printed: " + (label || "the menu's entry shown") + ", one of the " +
                menu.buttons.length + " entries of this figure's menu; the HTML file shows every one.";
            gd.parentNode.insertBefore(note, gd);
            notes.push(note);
        });
    }
    function printing(measured) { everyRow(); fitTables(); fitFigures(measured); }
    function asBefore() {
        tables.forEach(function (s) { s[0].page.len(s[1]).page(s[2]).draw(false); });
        zoomed.forEach(function (t) { t.style.zoom = ""; });
        figures.forEach(function (gd) { window.Plotly.relayout(gd, {width: null}); });
        notes.forEach(function (n) { n.remove(); });
        tables = []; zoomed = []; figures = []; notes = [];
    }
    window.addEventListener("beforeprint", function () { printing(false); });
    window.addEventListener("afterprint", asBefore);
    window.matchMedia("print").addEventListener("change", function (m) { m.matches ? printing(true) : asBefore(); });
})();
</script>"""


def print_support() -> HTML:
    """Styles and a script that print every table whole and every figure within the paper (A4 landscape).

    Show it once a page, after the DataTables library; it shows nothing.
    """
    import itables

    loaded = "_itables_" + itables.__version__.replace(".", "_")  # the promise of the library's module
    return HTML(_STYLE + "\n" + _SCRIPT.replace("{loaded}", loaded))
