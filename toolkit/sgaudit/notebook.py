"""Display set-up for sgaudit notebooks: one call in the first code cell, ``setup()``.

Views elsewhere in sgaudit return figures, tables and widgets; notebooks display them. What this module
decides is how those displays are stored, so that one executed notebook reads well in two places:

- **JupyterLab** renders plotly's own mimetype (``application/vnd.plotly.v1+json``) and live widgets.
- **The offline HTML report** (`sgaudit.report`, nbconvert) cannot render that mimetype, so every figure
  also carries a ``text/html`` copy, with plotly.js embedded once per notebook; DataFrames become
  itables tables whose DataTables bundle is embedded once too. Nothing is loaded from a CDN, so the
  report opens with no network at all.
"""

from __future__ import annotations

from importlib import resources

import plotly.io as pio
from plotly.io.base_renderers import NotebookRenderer

#: The plotly renderer `setup` registers: plotly's "notebook" renderer without its MathJax CDN script.
RENDERER = "sgaudit_notebook"
#: The default renderer string `setup` sets: the mimetype for JupyterLab, the HTML for nbconvert.
DEFAULT_RENDERERS = f"plotly_mimetype+{RENDERER}"


#: Every figure's plotly.js config. plotly.js 4 puts a "Share chart..." button on every figure, which sends
#: the figure's data (addresses, group and rule IDs) to Plotly's cloud after one confirmation, and a logo
#: linking to plotly.com: an audit report reads from AWS and sends nothing anywhere, so neither is there.
FIGURE_CONFIG = {"showSendToCloud": False, "displaylogo": False}

#: The version of the plotly.js cartesian bundle in ``sgaudit/vendor`` (see its README).
PLOTLY_JS_VERSION = "4.1.1"


def plotly_js() -> str:
    """The plotly.js a report embeds: the vendored cartesian bundle, or plotly.py's full one.

    sgaudit draws bar, scatter and heatmap traces only, which the cartesian bundle (1.5 MB) holds; the full
    one (4.8 MB) adds maps and 3D. The vendored bundle is used only when plotly.py writes figures for the
    same plotly.js version: with any other plotly.py, its own full bundle is, as before.
    """
    from plotly.offline import get_plotlyjs, get_plotlyjs_version

    if get_plotlyjs_version() != PLOTLY_JS_VERSION:
        return get_plotlyjs()
    bundle = resources.files("sgaudit") / "vendor" / f"plotly-cartesian-{PLOTLY_JS_VERSION}.min.js"
    return bundle.read_text(encoding="utf-8")


class OfflineNotebookRenderer(NotebookRenderer):
    """Plotly's ``notebook`` renderer, minus the request for MathJax, embedding `plotly_js`.

    Plotly 7.1's ``notebook`` renderer writes ``<script src="https://cdnjs…/mathjax/…/tex-svg.min.js">``
    beside every figure (``include_mathjax="cdn"`` is hard-coded in its ``to_mimebundle``): offline that
    is a failed request per figure, and sgaudit's figures have no LaTeX labels to typeset. plotly.js is
    embedded once, when the renderer is activated (the first figure), as the parent does, but the smaller
    bundle of `plotly_js` when it fits.
    """

    def activate(self) -> None:
        """Embed plotly.js once, before the first figure, as a plain script (it sets ``window.Plotly``)."""
        if not self.global_init or self.connected:
            super().activate()
            return
        from IPython.display import HTML, display

        display(HTML("<script>window.PlotlyConfig = {MathJaxConfig: 'local'};</script>\n"
                     f"<script>{plotly_js()}</script>"))

    def to_mimebundle(self, fig_dict: dict) -> dict:
        """The figure as ``text/html``: a div and the script that draws it with the embedded plotly.js."""
        html = pio.to_html(
            fig_dict, config=self.config, auto_play=self.auto_play, include_plotlyjs=self.include_plotlyjs,
            include_mathjax=False, post_script=self.post_script, full_html=False,
            animation_opts=self.animation_opts, default_width="100%", default_height=525, validate=False,
        )
        return {"text/html": html}


def setup(tables: bool = True) -> None:
    """Set up displays for a notebook that is read in JupyterLab and exported as an offline report.

    Call it once, in the first code cell. It

    - registers `OfflineNotebookRenderer` and makes ``plotly_mimetype+sgaudit_notebook`` plotly's default:
      each figure is stored both as plotly's mimetype (what JupyterLab draws) and as HTML (what the
      exported report draws), and plotly.js is embedded once, before the first figure;
    - initialises itables offline (``connected=False``, every DataFrame displayed as a sortable,
      searchable table): its DataTables bundle is displayed once, here, as an HTML output that shows
      nothing when scripts run, followed by `printing.print_support` (a printed report holds every row
      of its tables, and its figures fit the paper).

    It displays nothing else and returns nothing.

    Parameters
    ----------
    tables : bool, default True
        False for a notebook that shows no table (port_heatmap): DataTables (0.7 MB, about 1 MB once
        embedded) is then left out of its report, and a DataFrame it displays anyway is pandas' plain table.
    """
    from IPython.display import display
    from IPython.utils.capture import capture_output
    from itables import init_notebook_mode

    from .printing import print_support

    pio.renderers[RENDERER] = OfflineNotebookRenderer(config=FIGURE_CONFIG)
    pio.renderers["plotly_mimetype"].config = FIGURE_CONFIG  # JupyterLab's view of the same figures
    pio.renderers.default = DEFAULT_RENDERERS
    # itables displays its dark-theme switch (a module script) before the library that switch awaits. The
    # exported report runs module scripts once the page is read, but JupyterLab runs each output as it
    # arrives, and there the switch failed ("Cannot destructure 'set_or_remove_dark_class'"): tables
    # never followed a dark theme. The library goes first; the outputs are otherwise itables' own.
    if tables:
        with capture_output(stdout=False, stderr=False) as shown:
            init_notebook_mode(all_interactive=True, connected=False)
        for output in sorted(shown.outputs, key=_is_module_script):
            output.display()
    display(print_support())


def _is_module_script(output) -> bool:
    return str(output.data.get("text/html", "")).lstrip().startswith('<script type="module">')


def warnings(analysis, group_ids=None):
    """A box naming what makes this result say nothing (`sgaudit.summaries.warnings`), or None when sound.

    The last expression of a cell, after ``analyze``: a scheduled report of an empty delivery, a wrong
    window or another account's snapshot then says so at the top instead of reading as "nothing observed".

    Parameters
    ----------
    analysis : sgaudit.Analysis
    group_ids : list of str, optional
        The notebook's group filter, checked against the snapshot.

    Returns
    -------
    IPython.display.HTML or None

    Raises
    ------
    SgauditError
        For a group ID the snapshot does not hold: a report filtered by a typo would be silently empty.
    """
    import html

    from IPython.display import HTML

    from .inventory import check_group_ids
    from .summaries import warnings as found

    check_group_ids(analysis.inventory, group_ids)
    items = found(analysis)
    if not items:
        return None
    rows = "".join(f"<li>{html.escape(w)}</li>" for w in items)
    return HTML('<div role="alert" style="border:2px solid #c0392b;background:#fdecea;color:#611a15;'
                'padding:0.6em 1em;margin:0.5em 0"><strong>Warning: this result says little.</strong>'
                f"<ul style=\"margin:0.3em 0 0 0\">{rows}</ul></div>")


def verdict(analysis, found, group_ids=None, timeline=None):
    """The report's conclusion in a few sentences (`sgaudit.summaries.verdict`), for the top of a report.

    Parameters
    ----------
    analysis : sgaudit.Analysis
    found : pandas.DataFrame
        The findings the report shows.
    group_ids : list of str, optional
        The notebook's group filter.
    timeline : sgaudit.timeline.Timeline, optional
        The analysis' timeline (or a selection of it), for the stretches without traffic.

    Returns
    -------
    IPython.display.HTML
    """
    import html

    from IPython.display import HTML

    from .summaries import verdict as sentences

    text = " ".join(html.escape(s) for s in sentences(analysis, found, group_ids, timeline))
    return HTML('<div role="note" style="border-left:4px solid #4c78a8;background:#f4f7fb;padding:0.6em 1em;'
                f'margin:0.5em 0;font-size:1.05em"><strong>In short:</strong> {text}</div>')


def quiet(timeline):
    """A box naming the stretches of the window without any traffic (`sgaudit.summaries.quiet_stretches`), or None.

    The last expression of a cell, early in a report: a findings sentence says "in the 4 h 59 min window",
    and the auditor must know when an hour of it had no logs at all.

    Parameters
    ----------
    timeline : sgaudit.timeline.Timeline
        The analysis' timeline (``result.timeline(time_bucket)``), or a selection of it: the stretches are
        the whole analysis' either way.

    Returns
    -------
    IPython.display.HTML or None
    """
    import html

    from IPython.display import HTML

    from .summaries import quiet_stretches, quiet_text

    text = quiet_text(quiet_stretches(timeline), timeline.window)
    if not text:
        return None
    return HTML('<div role="note" style="border:2px solid #b7950b;background:#fef9e7;color:#5b4a05;'
                'padding:0.6em 1em;margin:0.5em 0"><strong>A gap in the logs:</strong> '
                f"{html.escape(text)}</div>")
