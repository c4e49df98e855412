"""The auditor's report, as the auditor gets it: `sgaudit report` on sample_logs/, opened in Chromium offline.

The snapshot is the sample one with hostile strings put where AWS lets account users write free text (a
group name, a rule description, an interface description, a tag): they must show as text and never run.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from browser import open_offline
from sgaudit import cli

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_logs"

BASTION = "sg-0f92669b1becefdac"  # has rules used over time, so the group's chart has lines
RULE_PROBE = "<img src=x onerror=alert(1)>"
GROUP_PROBE = "<b>ops</b><img src=x onerror=window.__xss=1>"  # plotly.js would draw <b> if it were not escaped
IFACE_PROBE = "<script>window.__xss=2</script>bastion"
# plotly.js (1.5 MB, or 4.8 MB with another plotly.py: `notebook.plotly_js`) and DataTables once, plus the data
SIZE_BUDGET = 12 * 2**20


def hostile_inventory(folder: Path) -> Path:
    inv = folder / "inventory"
    shutil.copytree(SAMPLE / "inventory", inv)
    groups = json.loads((inv / "security-groups.json").read_text())
    for g in groups["SecurityGroups"]:
        if g["GroupId"] == BASTION:
            g["GroupName"] = GROUP_PROBE
    (inv / "security-groups.json").write_text(json.dumps(groups))
    rules = json.loads((inv / "security-group-rules.json").read_text())
    for r in rules["SecurityGroupRules"]:
        if r["GroupId"] == BASTION:
            r["Description"] = RULE_PROBE
    (inv / "security-group-rules.json").write_text(json.dumps(rules))
    enis = json.loads((inv / "network-interfaces.json").read_text())
    for e in enis["NetworkInterfaces"]:
        if any(g["GroupId"] == BASTION for g in e.get("Groups", [])):
            e["Description"] = IFACE_PROBE
    (inv / "network-interfaces.json").write_text(json.dumps(enis))
    return inv


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("audit")
    inv = hostile_inventory(folder)
    out = folder / "audit_report.html"
    rc = cli.main(["report", "--flow-logs", str(SAMPLE / "flow-logs"), str(SAMPLE / "cloudwatch" / "app-eni.log"),
                   "--inventory", str(inv), "--out", str(out), "--no-progress"])
    assert rc == 0
    return out


def plot_titled(page, words: str):
    return page.locator(".js-plotly-plot", has=page.locator(".gtitle", has_text=words)).first


def test_report_is_written_with_the_executed_notebook_within_the_size_budget(report, record_property):
    assert report.with_suffix(".ipynb").exists()
    size = report.stat().st_size
    record_property("audit_report_html_bytes", size)
    assert 1_000_000 < size < SIZE_BUDGET
    html = report.read_text(encoding="utf-8")
    assert html.count("window.Plotly = Plotly;") == 1  # plotly.js embedded once, whatever the figures
    # JupyterLab draws the executed notebook's figures from plotly's mimetype: no cloud button there either.
    cells = json.loads(report.with_suffix(".ipynb").read_text(encoding="utf-8"))["cells"]
    figures = [o["data"]["application/vnd.plotly.v1+json"] for c in cells for o in c.get("outputs", [])
               if "application/vnd.plotly.v1+json" in o.get("data", {})]
    assert len(figures) >= 6 and all(f["config"]["showSendToCloud"] is False for f in figures)


def test_report_names_the_hour_with_no_logs_at_its_top(report):
    # The sample's CloudWatch export ends at 12:00 and its S3 logs begin at 13:00.
    text = report.read_text(encoding="utf-8")
    gap = text.index("A gap in the logs:")
    assert "2025-02-06T12:00:00Z to 2025-02-06T13:00:00Z (1 h): 1 h of the 4 h 59 min window" in text
    assert gap < text.index("Window and coverage")


def test_report_says_its_conclusion_in_short_at_its_top(report):
    # The hostile inventory changes names, not counts: the sample's 36 rules, 37 findings, 6 unexplained.
    text = report.read_text(encoding="utf-8")
    short = text.index("In short:")
    # The conclusion comes first: before the note on the log gap, the definitions and every table.
    assert short < text.index("A gap in the logs:") < text.index("What the words mean") < text.index(
        "Window and coverage")
    said = text[short:text.index("</div>", short)]
    assert "36 rules in 11 security groups over the 4 h 59 min from 2025-02-06T11:00:00Z" in said
    assert "19 used, 2 only attempted, 6 unused, 1 of unknown use" in said
    assert "37 findings: 1 critical, 1 high" in said and "6 accepted conversations no rule explains." in said
    assert "For 1 h of the window no interface has any traffic" in said
    # The critical finding by name, its group's hostile name escaped.
    assert "Critical: RDP (3389) open to the internet, rule sgr-0ebcdc0614747177d of &lt;b&gt;ops&lt;/b&gt;" in said


def test_report_opens_offline_with_no_request_and_no_error(report):
    with open_offline(report) as view:
        view.page.wait_for_selector(".js-plotly-plot .main-svg")
        view.page.wait_for_timeout(500)
        assert view.blocked == [] and view.errors == []
        # No figure offers to send its data to Plotly's cloud ("Share chart...") or links to plotly.com.
        page = view.page
        assert page.locator(".modebar-btn").count() > 0
        assert page.locator('.modebar-btn[data-title^="Share chart"], a.modebar-btn[href*="plotly"]').count() == 0
        # Cells with no input shown and no output (parameters, analyze) leave no empty band.
        empty = view.page.evaluate("() => Array.from(document.querySelectorAll("
                                   "'.jp-CodeCell.jp-mod-noInput.jp-mod-noOutputs'), c => c.offsetHeight)")
        assert len(empty) >= 3 and set(empty) == {0}


def test_figures_are_drawn_heatmap_and_per_group_view_included(report):
    with open_offline(report) as view:
        page = view.page
        page.wait_for_selector(".js-plotly-plot .main-svg")
        assert page.locator(".js-plotly-plot").count() >= 6
        heatmap = plot_titled(page, "Inbound traffic by port")
        assert heatmap.locator(".hm image").count() == 1  # plotly paints a heatmap as one image
        timeline = plot_titled(page, "Connections per rule")
        assert timeline.locator(".scatterlayer .trace").count() >= 1
        assert plot_titled(page, "Rules by status").locator(".barlayer .point").count() >= 10


def test_group_dropdown_changes_what_is_shown(report):
    with open_offline(report) as view:
        page = view.page
        page.wait_for_selector(".js-plotly-plot .main-svg")
        timeline = plot_titled(page, "Connections per rule")
        before = timeline.locator(".legend").text_content()
        assert BASTION not in timeline.locator(".gtitle").text_content()
        timeline.locator(".updatemenu-header-group").first.click()
        timeline.locator(".updatemenu-dropdown-button", has_text=BASTION).first.click()
        page.wait_for_timeout(300)
        after = timeline.locator(".legend").text_content()
        assert after != before and "sgr-" in after
        assert BASTION in timeline.locator(".gtitle").text_content()


def test_tables_search_and_sort(report):
    with open_offline(report) as view:
        page = view.page
        page.wait_for_selector("table.dataTable tbody tr")
        rules = page.locator(".dt-container", has=page.locator("caption", has_text="Every rule")).first
        first = rules.locator("tbody tr").first.inner_text()
        rules.locator("thead th", has_text="connections").locator(".dt-column-order").click()
        rules.locator("thead th", has_text="connections").locator(".dt-column-order").click()
        page.wait_for_timeout(200)
        assert rules.locator("tbody tr").first.inner_text() != first
        rules.locator("input[type=search]").fill("onerror=alert")
        page.wait_for_timeout(300)
        rows = rules.locator("tbody tr")
        assert rows.count() >= 1
        assert RULE_PROBE in rows.first.inner_text()  # found, and shown as the text it is


def test_findings_fit_the_page_and_sort_by_severity_when_their_column_name_is_clicked(report):
    order = ["critical", "high", "medium", "low", "info"]
    with open_offline(report) as view:
        page = view.page
        page.wait_for_selector("table.dataTable tbody tr")
        found = page.locator(".dt-container", has=page.locator("caption", has_text="Findings, most severe first"))
        # The sentence and the fix wrap: the table is no wider than the page (it was 8,600 px).
        assert found.first.evaluate("e => e.scrollWidth <= e.clientWidth + 1")
        header = found.locator("thead th", has_text="severity").first
        shown = found.locator("tbody tr td:first-child")
        header.click()  # the name itself, not only its small arrow
        page.wait_for_timeout(200)
        ascending = shown.all_inner_texts()
        assert [order.index(s) for s in ascending] == sorted(order.index(s) for s in ascending)  # not a→z
        header.click()
        page.wait_for_timeout(200)
        assert shown.first.inner_text() == "info"


def test_amounts_show_thousands_separators_and_still_sort_as_numbers(report):
    with open_offline(report) as view:
        page = view.page
        page.wait_for_selector("table.dataTable tbody tr")
        rules = page.locator(".dt-container", has=page.locator("caption", has_text="Every rule")).first
        column = [t.strip() for t in rules.locator("thead th").all_inner_texts()].index("bytes") + 1
        rules.locator("thead th", has_text="bytes").first.click()
        rules.locator("thead th", has_text="bytes").first.click()  # descending: the biggest first
        page.wait_for_timeout(200)
        cells = rules.locator(f"tbody tr td:nth-child({column})").all_inner_texts()
        assert "," in cells[0]
        numbers = [int(c.replace(",", "") or 0) for c in cells]
        assert numbers == sorted(numbers, reverse=True)


def test_printed_report_holds_every_row_and_fits_tables_and_figures_on_the_paper_and_comes_back_after(report):
    # Audit evidence is often filed as PDF: a printed table must hold all its rows, not the page on screen,
    # and nothing may be cut at the paper's edge: not the 21 columns of the rules, not a figure drawn for a
    # wide window. The paper is A4 landscape (the print style's @page): 1,047 px between its margins.
    paper = 1047
    tables_js = ("() => Array.from(document.querySelectorAll('table.dataTable'), "
                 "t => [t.getBoundingClientRect().right, t.style.zoom])")
    figures_js = ("() => Array.from(document.querySelectorAll('.js-plotly-plot'), "
                  "g => [g.querySelector('.main-svg').getBoundingClientRect().right, g.layout.width ?? null])")
    with open_offline(report) as view:
        page = view.page
        page.set_viewport_size({"width": 1600, "height": 1000})  # a desktop window, wider than the paper
        page.wait_for_selector(".js-plotly-plot .main-svg")
        page.wait_for_timeout(500)
        rules = page.locator(".dt-container", has=page.locator("caption", has_text="Every rule")).first
        total = int(rules.locator(".dt-info").inner_text().split(" of ")[1].split()[0].replace(",", ""))
        assert total > 25 and rules.locator("tbody tr").count() == 25  # one screen page
        assert max(right for right, _ in page.evaluate(figures_js)) > paper
        page.set_viewport_size({"width": paper, "height": 1000})
        page.emulate_media(media="print")
        page.wait_for_timeout(500)
        assert rules.locator("tbody tr").count() == total
        assert not rules.locator(".dt-search").is_visible() and not rules.locator(".dt-paging").is_visible()
        assert not rules.locator(".dt-info").is_visible()  # "Showing 1 to 36": the caption says the rows
        tables = page.evaluate(tables_js)
        assert all(right <= paper for right, _ in tables), tables
        assert any(zoom for _, zoom in tables)  # the widest were scaled down to fit, not cut
        figures = page.evaluate(figures_js)
        assert len(figures) >= 6 and all(right <= paper for right, _ in figures), figures
        # A figure with a menu prints one entry: the page says which, and that the file holds the others.
        notes = page.locator(".sgaudit-print-note").all_text_contents()
        assert len(notes) >= 2 and all(re.fullmatch(r"Printed: sg-[0-9a-f]+ \(.+\), one of the \d+ entries of this "
                                                    r"figure's menu; the HTML file shows every one\.", n)
                                       for n in notes), notes
        page.emulate_media(media="screen")
        page.set_viewport_size({"width": 1600, "height": 1000})
        page.wait_for_timeout(500)
        assert rules.locator("tbody tr").count() == 25 and rules.locator(".dt-search").is_visible()
        assert not any(zoom for _, zoom in page.evaluate(tables_js))
        assert all(width is None for _, width in page.evaluate(figures_js))  # back to the window's width
        assert page.locator(".sgaudit-print-note").count() == 0
        assert page.pdf(format="A4")[:5] == b"%PDF-"  # print-to-PDF itself runs through the same events
        assert rules.locator("tbody tr").count() == 25 and view.errors == []


def test_strings_from_aws_stay_text(report):
    with open_offline(report) as view:
        page = view.page
        page.wait_for_selector(".js-plotly-plot .main-svg")
        page.wait_for_timeout(500)
        assert page.evaluate("window.__xss") is None
        assert page.locator('img[src="x"]').count() == 0
        assert view.blocked == []  # an <img src=x> that rendered would have requested x
        # The hostile group name is the label of a dropdown entry, as text.
        timeline = plot_titled(page, "Connections per rule")
        timeline.locator(".updatemenu-header-group").first.click()
        labels = timeline.locator(".updatemenu-dropdown-button").all_text_contents()
        # Labels are cut at 60 characters; the start of the name is there, tags and all, as text.
        assert any(f"{BASTION} ({GROUP_PROBE[:20]}" in label for label in labels), labels
        # Picked, and printed: the note over the figure names it as text too.
        timeline.locator(".updatemenu-dropdown-button", has_text=BASTION).first.click()
        page.emulate_media(media="print")
        page.wait_for_timeout(500)
        notes = page.locator(".sgaudit-print-note").all_text_contents()
        assert any(f"Printed: {BASTION} ({GROUP_PROBE[:20]}" in n for n in notes), notes
        assert page.evaluate("window.__xss") is None and page.locator('img[src="x"]').count() == 0
        page.emulate_media(media="screen")
        coverage = page.locator(".dt-container", has=page.locator("caption", has_text="Interfaces")).first
        coverage.locator("input[type=search]").fill("window.__xss=2")
        page.wait_for_timeout(300)
        assert IFACE_PROBE in coverage.locator("tbody tr").first.inner_text()


def test_a_sound_report_shows_no_warning(report):
    assert 'role="alert"' not in report.read_text(encoding="utf-8")


def test_report_of_a_window_without_records_says_so_at_the_top(tmp_path):
    # A weekly job with a wrong window (or a late delivery) must not read as "nothing observed".
    out = tmp_path / "empty_window.html"
    rc = cli.main(["report", "--flow-logs", str(SAMPLE / "flow-logs"), "--inventory", str(SAMPLE / "inventory"),
                   "--start", "2024-01-01", "--end", "2024-01-02", "--out", str(out), "--no-progress"])
    assert rc == 0
    with open_offline(out) as view:
        alert = view.page.locator('[role="alert"]').first
        text = alert.inner_text()
        assert "none of the 30,708 records read is in the window" in text
        assert "check --start and --end" in text
        # Before the first table: the reader sees it first.
        assert alert.bounding_box()["y"] < view.page.locator("table").first.bounding_box()["y"]


def test_removal_candidates_leave_out_rules_whose_peers_are_unknown(report):
    # sgr-0cbccd950a7c96c2a refers to a group of a peered VPC, not in the snapshot: "unused" says nothing.
    nb = json.loads(report.with_suffix(".ipynb").read_text(encoding="utf-8"))
    [cell] = [c for c in nb["cells"] if c["cell_type"] == "code"
              and 'caption="Unused and attempted-only rules"' in "".join(c["source"])]
    shown = "".join("".join(o.get("data", {}).get("text/html", "")) for o in cell["outputs"])
    assert "sgr-" in shown and "unused" in shown
    assert "sgr-0cbccd950a7c96c2a" not in shown
    assert "sgr-0cbccd950a7c96c2a" in report.read_text(encoding="utf-8")  # the problems table names it
