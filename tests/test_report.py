"""``sgaudit report`` and `sgaudit.report`: a notebook run with papermill, exported as one offline HTML file.

The fixture notebook (tests/fixtures/report_fixture.ipynb) holds one of each output a report carries: a
plotly figure with a dropdown, an itables table, an ipywidgets widget, prose. Its report is opened in
Debian's chromium with every network request blocked (tests/browser.py) and checked for what an auditor
sees: the figure drawn and switching with the dropdown, the table sorting, the note in place of the widget,
no request and no script error.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import nbformat
import plotly.graph_objects as go
import plotly.io as pio
import pytest
from browser import open_offline
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output
from sgaudit import notebook, report
from sgaudit.cli import _parser, main, report_parameters
from sgaudit.errors import SgauditError
from sgaudit.notebook import DEFAULT_RENDERERS, OfflineNotebookRenderer

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = Path(__file__).parent / "fixtures" / "report_fixture.ipynb"
SAMPLE = ROOT / "sample_logs"
SIZE_BUDGET = 12_000_000  # bytes: plotly.js (~4.7 MB) and the DataTables bundle (~1 MB) embedded once each
PLOTLY = "application/vnd.plotly.v1+json"
# Elements whose src/href the browser fetches by itself, when the URL is off the page.
FETCHED_URL = re.compile(r"""<(script|link|img|iframe)\b[^>]*?\b(src|href)\s*=\s*["']?\s*(https?:)?//""",
                         re.IGNORECASE)


def failing_cell_number() -> int:
    cells = nbformat.read(FIXTURE, as_version=4).cells
    return next(i for i, c in enumerate(cells) if c.source.startswith("if fail:")) + 1


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> report.Report:
    """The fixture's report, made once for the module (a kernel start and an export take a few seconds)."""
    out = tmp_path_factory.mktemp("report") / "fixture.html"
    return report.run(FIXTURE, out, {"time_bucket": "1d"}, progress=False)


@pytest.fixture(scope="module")
def html(built) -> str:
    return built.html.read_text(encoding="utf-8")


# --- the files ------------------------------------------------------------------------------------------

def test_html_is_written_next_to_the_executed_notebook(built, html):
    assert built.html.is_file() and built.notebook == built.html.with_suffix(".ipynb")
    executed = nbformat.read(built.notebook, as_version=4)
    injected = [c for c in executed.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1 and 'time_bucket = "1d"' in injected[0].source
    assert "time bucket 1d" in html  # the parameter reached the notebook, and its printed output the report
    assert "<title>Report fixture</title>" in html  # the title is the notebook's first heading


def test_report_shows_prose_and_outputs_but_no_code(html):
    assert "Click a header to sort." in html  # markdown
    for code in ("import ipywidgets", "go.Figure(", "if fail:", "from sgaudit.notebook import setup"):
        assert code not in html
    assert re.search(r'<div class="jp-(In|Out)putPrompt', html) is None  # no In [ ]/Out[ ] prompts either


def test_figures_are_stored_for_jupyterlab_and_for_the_html(built):
    """setup()'s renderer: plotly's mimetype (JupyterLab draws it) plus HTML (nbconvert exports that)."""
    executed = nbformat.read(built.notebook, as_version=4)
    figures = [o for c in executed.cells for o in c.get("outputs", []) if PLOTLY in o.get("data", {})]
    assert len(figures) == 1 and "text/html" in figures[0]["data"]
    assert report.external_references(figures[0]["data"]["text/html"]) == []


# --- nothing leaves the file ---------------------------------------------------------------------------

def test_no_url_the_browser_would_fetch(html):
    assert FETCHED_URL.findall(html) == []
    assert report.external_references(html) == []
    # What nbconvert's lab template would have loaded from CDNs, and the widget state, are gone.
    for absent in ("require.min.js", "ajax/libs/mathjax", "mermaid.esm", "@jupyter-widgets/html-manager",
                   "application/vnd.jupyter.widget-state+json", report.WIDGET_VIEW):
        assert absent not in html


def test_html_size_budget(built, record_property):
    size = built.size
    record_property("report_html_bytes", size)
    print(f"report HTML: {size:,} bytes")
    assert size < SIZE_BUDGET, f"{built.html} is {size:,} bytes, over the {SIZE_BUDGET:,} budget"


@pytest.mark.parametrize("snippet, expected", [
    ('<script src="https://cdn.example/x.js"></script>', ["https://cdn.example/x.js"]),
    ("<link rel=stylesheet href=//cdn.example/a.css>", ["//cdn.example/a.css"]),
    ('<img srcset="a.png 1x, http://i.example/b.png 2x">', ["http://i.example/b.png"]),
    ('<iframe src="https://x.example/"></iframe>', ["https://x.example/"]),
    ('<style>@import "https://f.example/f.css";</style>', ["https://f.example/f.css"]),
    ("<div style=\"background: url('https://i.example/c.png')\"></div>", ["https://i.example/c.png"]),
    ("<script type=module>import { a } from 'https://m.example/a.js';</script>", ["https://m.example/a.js"]),
    ('<script>import("http://m.example/b.js")</script>', ["http://m.example/b.js"]),
    ('<a href="https://docs.aws.amazon.com/">a link is not fetched</a>', []),
    ('<script src="data:text/javascript;base64,AAAA"></script><img src="data:image/png;base64,AA">', []),
    ('<script>var tiles = "https://tile.example/{z}/{x}/{y}.png";</script>', []),
], ids=["script", "link", "srcset", "iframe", "css-import", "style-url", "module-import", "dynamic-import",
        "anchor", "data-urls", "string-in-script"])
def test_external_references(snippet, expected):
    assert report.external_references(snippet) == expected


def test_stock_plotly_notebook_renderer_would_fetch_mathjax_and_sgaudits_does_not():
    """Why sgaudit.notebook registers its own renderer: plotly's "notebook" one adds a MathJax CDN script."""
    fig = go.Figure(go.Bar(x=[1], y=[1])).to_dict()
    stock = pio.renderers["notebook"].to_mimebundle(fig)["text/html"]
    ours = OfflineNotebookRenderer().to_mimebundle(fig)["text/html"]
    assert any("mathjax" in url for url in report.external_references(stock))
    assert report.external_references(ours) == []
    assert DEFAULT_RENDERERS.startswith("plotly_mimetype+")


def test_export_refuses_an_output_that_loads_from_the_network(tmp_path):
    nb = new_notebook(cells=[new_markdown_cell("# Leaky"), new_code_cell("x", execution_count=1, outputs=[
        new_output("display_data", data={"text/html": '<script src="https://cdn.example/lib.js"></script>',
                                         "text/plain": "lib"})])])
    executed = tmp_path / "leaky.ipynb"
    nbformat.write(nb, executed)
    with pytest.raises(report.ReportError, match=r"https://cdn\.example/lib\.js.*would not work offline"):
        report.export_html(executed, tmp_path / "leaky.html")
    assert not (tmp_path / "leaky.html").exists()


def test_export_drops_cells_tagged_remove(tmp_path):
    nb = new_notebook(cells=[
        new_markdown_cell("# Tags"),
        new_markdown_cell("internal note", metadata={"tags": ["remove-cell"]}),
        new_code_cell("print('noise')", execution_count=1, metadata={"tags": ["remove-output"]},
                      outputs=[new_output("stream", name="stdout", text="noisy output\n")]),
        new_markdown_cell("kept prose"),
    ])
    nbformat.write(nb, tmp_path / "tags.ipynb")
    text = report.export_html(tmp_path / "tags.ipynb", tmp_path / "tags.html").read_text(encoding="utf-8")
    assert "kept prose" in text and "internal note" not in text and "noisy output" not in text


# --- what the auditor sees, offline ----------------------------------------------------------------------

def test_report_opens_offline_without_requests_or_errors(built):
    with open_offline(built.html) as view:
        view.page.wait_for_selector(".js-plotly-plot .main-svg")
        view.page.wait_for_selector("table.dataTable")
        view.page.wait_for_load_state("networkidle")
        assert view.blocked == []
        assert view.errors == []


def test_plotly_figure_is_drawn_and_the_dropdown_switches_traces(built):
    visible = "() => document.querySelector('.js-plotly-plot').data.map(t => t.visible !== false)"
    ticks = "() => [...document.querySelectorAll('.js-plotly-plot .ytick text')].map(t => t.textContent)"
    with open_offline(built.html) as view:
        page = view.page
        page.wait_for_selector(".js-plotly-plot svg.main-svg")
        assert page.locator(".js-plotly-plot .bars path").count() == 4  # tcp/22's four bars
        assert page.evaluate(visible) == [True, False]
        assert page.evaluate(ticks)[-1] == "4"  # tcp/22 peaks at 4
        page.locator(".js-plotly-plot .updatemenu-header-group").click()
        page.locator(".js-plotly-plot .updatemenu-dropdown-button", has_text="tcp/443").click()
        page.wait_for_function("() => document.querySelector('.js-plotly-plot').data[1].visible === true")
        assert page.evaluate(visible) == [False, True]
        assert page.evaluate(ticks)[-1] == "9"  # the axis now follows tcp/443, which peaks at 9
        assert view.errors == [] and view.blocked == []


def test_itables_table_sorts_on_a_header_click(built):
    first_column = "() => [...document.querySelectorAll('table.dataTable tbody tr')].map(r => r.cells[0].textContent)"
    with open_offline(built.html) as view:
        page = view.page
        page.wait_for_selector("table.dataTable tbody tr")
        assert page.evaluate(first_column) == ["sgr-b", "sgr-a", "sgr-c"]  # the DataFrame's order
        # itables orders on the header's sort icon (DataTables' data-dt-order="icon-only").
        page.locator("table.dataTable thead th", has_text="connections").locator(".dt-column-order").click()
        page.wait_for_function(f"() => ({first_column})()[0] !== 'sgr-b'")  # DataTables redraws asynchronously
        assert page.evaluate(first_column) == ["sgr-c", "sgr-b", "sgr-a"]  # 1, 7, 30 connections
        assert view.errors == [] and view.blocked == []


def test_widget_is_replaced_by_a_note(built, html):
    assert html.count(report.WIDGET_NOTE) == 1
    executed = nbformat.read(built.notebook, as_version=4)  # the notebook keeps the widget, for JupyterLab
    assert any(report.WIDGET_VIEW in o.get("data", {}) for c in executed.cells for o in c.get("outputs", []))
    with open_offline(built.html) as view:
        assert view.page.get_by_text(report.WIDGET_NOTE).is_visible()
        assert view.page.locator(".jupyter-widgets").count() == 0


def test_browser_helper_records_and_blocks_requests(tmp_path):
    """The zero-request assertions above mean something: a page that fetches is caught."""
    page = tmp_path / "leaky.html"
    page.write_text('<script src="https://cdn.example/x.js"></script><img src="other.png">'
                    "<script>missing()</script>", encoding="utf-8")
    with open_offline(page) as view:
        view.page.wait_for_load_state("networkidle")
        # Chromium's preload scanner may ask for either first.
        assert sorted(view.blocked) == sorted(["https://cdn.example/x.js", (tmp_path / "other.png").as_uri()])
        assert any("missing is not defined" in e for e in view.page_errors)
        assert view.console_errors  # the failed loads


# --- failures --------------------------------------------------------------------------------------------

def test_failing_cell_names_the_cell_and_writes_no_report(tmp_path):
    out = tmp_path / "failed.html"
    out.write_text("an earlier report", encoding="utf-8")  # must not survive a failed run
    with pytest.raises(report.NotebookExecutionError) as caught:
        report.run(FIXTURE, out, {"fail": True}, progress=False)
    err = caught.value
    assert isinstance(err, SgauditError)
    number = failing_cell_number()
    assert (err.cell, err.ename, err.evalue) == (number, "ValueError", "the fixture was asked to fail")
    message = str(err)
    assert f"cell {number} ('if fail:')" in message
    assert "ValueError: the fixture was asked to fail" in message
    assert str(tmp_path / "failed.ipynb") in message
    assert not out.exists()
    executed = nbformat.read(err.executed, as_version=4)
    assert any(o.get("output_type") == "error" for c in executed.cells for o in c.get("outputs", []))


def test_cli_failing_cell_exits_2_with_the_message(tmp_path, capsys):
    status = main(["report", "--notebook", str(FIXTURE), "-p", "fail", "true",
                   "--out", str(tmp_path / "r.html"), "--no-progress"])
    err = capsys.readouterr().err
    assert status == 2
    assert err.startswith("sgaudit: error: notebook report_fixture.ipynb failed in cell "
                          f"{failing_cell_number()} ('if fail:'): ValueError: the fixture was asked to fail")
    assert not (tmp_path / "r.html").exists() and (tmp_path / "r.ipynb").exists()


def test_wrong_parameter_name_is_an_error_listing_the_parameters(tmp_path):
    with pytest.raises(report.ReportError) as caught:
        report.run(FIXTURE, tmp_path / "r.html", {"time_buckett": "1d"}, progress=False)
    message = str(caught.value)
    assert "has no parameter 'time_buckett' (closest match: time_bucket)" in message
    for name in ("flow_logs", "inventory", "start", "end", "log_format", "time_bucket", "fail"):
        assert f"\n  {name}" in message
    assert "# width of the time buckets" in message  # each with its help
    assert not (tmp_path / "r.ipynb").exists()  # refused before running anything


def test_cli_wrong_parameter_name_exits_2(tmp_path, capsys):
    status = main(["report", "--notebook", str(FIXTURE), "-p", "bogus", "1", "--out", str(tmp_path / "r.html")])
    assert status == 2
    assert "has no parameter 'bogus'; its parameters are:" in capsys.readouterr().err


def test_unknown_kernel(tmp_path):
    with pytest.raises(report.ReportError, match="no Jupyter kernel named 'no-such-kernel'"):
        report.run(FIXTURE, tmp_path / "r.html", kernel_name="no-such-kernel", progress=False)


def test_notebook_without_a_kernel_in_its_metadata_needs_one_named(tmp_path, capsys):
    nb = new_notebook(cells=[new_markdown_cell("# No kernelspec"),
                             new_code_cell("x = 1", metadata={"tags": ["parameters"]}), new_code_cell("print(x * 2)")])
    nbformat.write(nb, tmp_path / "bare.ipynb")
    with pytest.raises(report.ReportError, match="bare.ipynb names no Jupyter kernel.*--kernel python3"):
        report.run(tmp_path / "bare.ipynb", tmp_path / "r.html", {"x": 3}, progress=False)
    assert main(["report", "--notebook", str(tmp_path / "bare.ipynb"), "-p", "x", "3",
                 "--out", str(tmp_path / "r.html"), "--no-progress"]) == 2
    assert "names no Jupyter kernel" in capsys.readouterr().err
    done = report.run(tmp_path / "bare.ipynb", tmp_path / "r.html", {"x": 3}, kernel_name="python3", progress=False)
    assert "6" in "".join(o.get("text", "") for o in nbformat.read(done.notebook, as_version=4).cells[-1].outputs)


@pytest.mark.parametrize("content", ["not json", "{}", "[]"])
def test_a_file_that_is_not_a_notebook_is_a_clear_error(tmp_path, capsys, content):
    (tmp_path / "bad.ipynb").write_text(content)
    with pytest.raises(report.ReportError, match="bad.ipynb: not a Jupyter notebook"):
        report.run(tmp_path / "bad.ipynb", tmp_path / "r.html", progress=False)
    assert main(["report", "--notebook", str(tmp_path / "bad.ipynb"), "--out", str(tmp_path / "r.html")]) == 2
    assert "not a Jupyter notebook" in capsys.readouterr().err


def test_parameters_file_not_utf8_or_with_keys_that_are_not_names(tmp_path):
    (tmp_path / "b.yaml").write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(report.ReportError, match="b.yaml: byte 0 is not UTF-8"):
        report.read_parameters_file(tmp_path / "b.yaml")
    (tmp_path / "k.yaml").write_text("1: 2\n")
    with pytest.raises(report.ReportError, match="k.yaml: 1 is not a parameter name"):
        report.read_parameters_file(tmp_path / "k.yaml")


@pytest.mark.parametrize("args,message", [
    pytest.param(["-p", "top", "abc"], "parameter top is int (top = 20), not 'abc'; e.g. -p top 10", id="int"),
    pytest.param(["-p", "top", "true"], "parameter top is int", id="bool-for-int"),
    pytest.param(["-p", "group_ids", "5"], "parameter group_ids is list", id="number-for-list"),
    pytest.param(["--time-bucket", "10s"], "time_bucket '10s' is too small; use at least '1min'",
                 id="time-bucket-too-small"),
    pytest.param(["--time-bucket", "hourly"], "time_bucket 'hourly' is not a duration", id="time-bucket-not-a-width"),
])
def test_a_parameter_of_the_wrong_type_is_refused_before_running(tmp_path, capsys, args, message):
    assert main(["report", "--notebook", "audit_report", *args, "--out", str(tmp_path / "r.html")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "r.ipynb").exists()  # refused before the kernel started


@pytest.mark.parametrize("given,missing", [(["--inventory", "inv"], "flow_logs"),
                                           (["--flow-logs", "logs/"], "inventory")])
def test_one_input_is_not_read_against_the_samples_other(tmp_path, capsys, given, missing):
    # The shipped notebooks default to the sample account: an auditor's snapshot must not meet its logs.
    assert main(["report", "--notebook", "audit_report", *given, "--out", str(tmp_path / "r.html")]) == 2
    err = capsys.readouterr().err
    assert f"is given but not {missing}, whose default is the bundled sample account's" in err
    assert f"give --{missing.replace('_', '-')} ({missing}) too" in err
    assert not (tmp_path / "r.ipynb").exists()  # refused before the kernel started


def test_a_bool_parameter_refuses_text_and_a_list_takes_one_value(tmp_path):
    with pytest.raises(report.ReportError, match="parameter keep_attempted is bool"):
        report.run("findings", tmp_path / "r.html", {"keep_attempted": "maybe"}, progress=False)
    path = report.notebook_path("audit_report")
    assert report._check_parameters(path, {"group_ids": "sg-1", "start": 1738839600}, "python3") == {
        "group_ids": ["sg-1"], "start": 1738839600}


def test_out_under_a_file_is_refused_before_running(tmp_path):
    (tmp_path / "afile").write_text("")
    with pytest.raises(SgauditError, match="afile/r.html: cannot write there"):
        report.run(FIXTURE, tmp_path / "afile" / "r.html", progress=False)


def test_out_must_be_html(tmp_path):
    with pytest.raises(report.ReportError, match="ending in .html"):
        report.run(FIXTURE, tmp_path / "r.ipynb", progress=False)


# --- resolving notebooks ---------------------------------------------------------------------------------

def test_shipped_notebooks_live_in_the_repository_notebooks_folder():
    assert report.NOTEBOOKS_DIR == ROOT / "notebooks"
    assert sorted(p.stem for p in report.NOTEBOOKS_DIR.glob("*.ipynb")) == sorted(report.SHIPPED_NOTEBOOKS)


def test_a_wheel_carries_the_notebooks_and_sgaudit_finds_them_there(tmp_path):
    """Installed from a wheel (no clone beside it), sgaudit report runs the notebooks the wheel installed."""
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(wheels), str(ROOT)], check=True, capture_output=True)
    (wheel,) = wheels.glob("sgaudit-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        carried = {Path(n).name for n in zf.namelist() if "/data/share/sgaudit/notebooks/" in n}
    assert carried == {f"{n}.ipynb" for n in report.SHIPPED_NOTEBOOKS}

    env_dir = tmp_path / "env"
    venv.create(env_dir, with_pip=False)
    python = env_dir / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q",
                    str(wheel)], check=True, capture_output=True)
    # sgaudit's dependencies come from this environment, sgaudit itself from the wheel: this environment's
    # site-packages on PYTHONPATH hold no sgaudit package (it is installed editable, through a path hook
    # that PYTHONPATH does not run).
    deps = next(p for p in map(Path, sys.path) if p.name == "site-packages" and (p / "nbformat").is_dir())
    probe = ("import sgaudit.report as r, sgaudit.notebook as n; print(r.__file__); print(r.NOTEBOOKS_DIR); "
             "print(r.notebook_path('audit_report')); print(len(n.plotly_js()))")
    out = subprocess.run([str(python), "-c", probe], check=True, capture_output=True, text=True, cwd=tmp_path,
                         env={**os.environ, "PYTHONPATH": str(deps)}).stdout.splitlines()
    assert Path(out[0]).is_relative_to(env_dir)
    assert Path(out[1]) == env_dir / "share" / "sgaudit" / "notebooks"
    assert Path(out[2]).read_bytes() == (ROOT / "notebooks" / "audit_report.ipynb").read_bytes()
    # The vendored plotly.js bundle travels in the wheel, and the installed sgaudit reads it from there.
    assert int(out[3]) == len(notebook.plotly_js())


def test_reports_embed_the_vendored_cartesian_plotly_js_only_for_the_version_it_was_made_for(monkeypatch):
    from plotly.offline import get_plotlyjs

    monkeypatch.setattr("plotly.offline.get_plotlyjs_version", lambda: notebook.PLOTLY_JS_VERSION)
    small = notebook.plotly_js()
    assert small.startswith(f"/**\n* plotly.js (cartesian - minified) v{notebook.PLOTLY_JS_VERSION}\n")
    assert "window.Plotly = Plotly;" in small and len(small) < len(get_plotlyjs()) / 2
    # plotly.py writing figures for another plotly.js: its own full bundle, whatever sgaudit vendors.
    monkeypatch.setattr("plotly.offline.get_plotlyjs_version", lambda: "99.0.0")
    assert notebook.plotly_js() == get_plotlyjs()


def test_notebook_names_and_paths(tmp_path, monkeypatch):
    monkeypatch.setattr(report, "NOTEBOOKS_DIR", tmp_path)
    nbformat.write(new_notebook(), tmp_path / "audit_report.ipynb")
    assert report.notebook_path("audit_report") == tmp_path / "audit_report.ipynb"
    assert report.notebook_path(FIXTURE) == FIXTURE
    with pytest.raises(report.ReportError, match="the shipped notebook 'investigate' is missing"):
        report.notebook_path("investigate")
    with pytest.raises(report.ReportError) as caught:
        report.notebook_path("audit_reprot")
    assert "closest match: audit_report" in str(caught.value)
    assert "audit_report, findings, investigate, port_heatmap, rule_usage" in str(caught.value)
    with pytest.raises(report.ReportError, match="no such file"):
        report.notebook_path(tmp_path / "nowhere.ipynb")


def test_cli_unknown_notebook_exits_2(capsys):
    assert main(["report", "--notebook", "heatmap"]) == 2
    assert "unknown notebook 'heatmap'" in capsys.readouterr().err


# --- parameters ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, value", [
    ("3", 3), ("2.5", 2.5), ("true", True), ("null", None), ("[a, b]", ["a", "b"]), ("1h", "1h"),
    ("2025-02-06T12:00:00Z", "2025-02-06T12:00:00Z"), ("2025-02-06", "2025-02-06"), ("[a", "[a"),
    ("sg-0f92669b1becefdac", "sg-0f92669b1becefdac"),
], ids=["int", "float", "bool", "null", "list", "text", "timestamp", "date", "not-yaml", "group-id"])
def test_p_values_are_yaml_with_times_kept_as_text(text, value):
    assert report.parse_parameter_value(text) == value


def test_parameters_file_then_p_then_flags(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("time_bucket: 1d\nstart: 2025-02-06T00:00:00Z\nfail: false\ninventory: from-yaml\n",
                      encoding="utf-8")
    args = _parser().parse_args(["report", "--parameters", str(params), "-p", "time_bucket", "6h",
                                 "-p", "inventory", "from-p", "--inventory", "from-flag", "--flow-logs", "a", "b"])
    assert report_parameters(args) == {"time_bucket": "6h", "start": "2025-02-06T00:00:00Z", "fail": False,
                                       "inventory": "from-flag", "flow_logs": ["a", "b"]}
    args = _parser().parse_args(["report", "--end", "1738800000", "--format", "${version}", "--time-bucket", "1h"])
    assert report_parameters(args) == {"end": "1738800000", "log_format": "${version}", "time_bucket": "1h"}


@pytest.mark.parametrize("text, message", [
    ("- a\n- b\n", "expected a mapping"),
    ("a: [1, 2\nb: 3\n", r"line \d+: not valid YAML"),
], ids=["list", "invalid"])
def test_parameters_file_errors(tmp_path, text, message):
    path = tmp_path / "p.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(report.ReportError, match=message):
        report.read_parameters_file(path)


def test_cli_list_parameters(capsys):
    assert main(["report", "--notebook", str(FIXTURE), "--list-parameters"]) == 0
    out = capsys.readouterr().out
    assert '  time_bucket: str = "1h"  # width of the time buckets' in out
    assert "  fail: bool       = False  # raise in the last code cell" in out


def test_cli_report_with_relative_paths_from_another_folder(tmp_path, monkeypatch, capsys):
    """Paths are taken from where the command runs; the notebook itself runs in its own folder."""
    monkeypatch.chdir(tmp_path)
    params = tmp_path / "params.yaml"
    params.write_text("time_bucket: 1d\n", encoding="utf-8")
    status = main(["report", "--notebook", str(FIXTURE), "--parameters", "params.yaml",
                   "--flow-logs", os.path.relpath(SAMPLE / "flow-logs"), os.path.relpath(SAMPLE / "cloudwatch"),
                   "--inventory", os.path.relpath(SAMPLE / "inventory"), "--time-bucket", "15min", "--no-progress"])
    out = capsys.readouterr().out
    assert status == 0
    html, executed = tmp_path / "out" / "report_fixture.html", tmp_path / "out" / "report_fixture.ipynb"
    assert "wrote       out/report_fixture.html (" in out and "\n            out/report_fixture.ipynb" in out
    text = html.read_text(encoding="utf-8")
    assert "2 flow-log path(s); time bucket 15min" in text  # the flag overrode the YAML file
    assert report.external_references(text) == []
    injected = next(c for c in nbformat.read(executed, as_version=4).cells
                    if "injected-parameters" in c.metadata.get("tags", []))
    assert f'inventory = "{SAMPLE / "inventory"}"' in injected.source  # made absolute


def test_an_ipython_kernel_keeps_its_shutdown_log_off_stderr_and_other_kernels_get_no_option(tmp_path, monkeypatch):
    # jupyter_client interrupts a kernel before shutting it down, and a busy IPython kernel then logged
    # "KeyboardInterrupt caught in kernel" into the log of a report that was written fine.
    assert report._quiet_kernel("python3") == ["--IPKernelApp.log_level=CRITICAL"]
    spec = tmp_path / "kernels" / "other"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text('{"argv": ["xpython", "-f", "{connection_file}"], "display_name": "x", '
                                      '"language": "python"}')
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path))
    assert report._quiet_kernel("other") == [] and report._quiet_kernel("no-such-kernel") == []
