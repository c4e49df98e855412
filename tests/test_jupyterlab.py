"""What an investigator sees in JupyterLab: the live rule explorer of `notebooks/rule_usage.ipynb`.

The offline reports are tested in `test_audit_report.py` and `test_report.py`; widgets only work with a
live kernel, so this test starts a real JupyterLab server, opens the notebook in headless Chromium, runs
every cell and uses the explorer's group dropdown as a user would.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from browser import CHROMIUM_ARGS, chromium_or_skip

ROOT = Path(__file__).resolve().parents[1]
TITLE = ".widget-output .js-plotly-plot .gtitle"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def jupyterlab(tmp_path):
    """A JupyterLab server on localhost serving a copy of rule_usage.ipynb next to the sample account."""
    pytest.importorskip("jupyterlab")
    (tmp_path / "notebooks").mkdir()
    shutil.copy(ROOT / "notebooks" / "rule_usage.ipynb", tmp_path / "notebooks")
    # The notebook's default parameters name ../sample_logs, as in the repository.
    (tmp_path / "sample_logs").symlink_to(ROOT / "sample_logs")
    port = _free_port()
    state = tmp_path / "lab-state"
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(state / "config"), "JUPYTER_RUNTIME_DIR": str(state / "run")}
    log = open(tmp_path / "jupyterlab.log", "w")  # closed below, after the server
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}", "--allow-root",
         "--ServerApp.token=", "--ServerApp.password=", f"--ServerApp.root_dir={tmp_path}",
         "--LabApp.expose_app_in_browser=True", f"--LabApp.workspaces_dir={state / 'workspaces'}",
         f"--LabApp.user_settings_dir={state / 'settings'}", "--LabApp.news_url=",
         "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"],
        stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(f"{url}/api", timeout=1)
                break
            except OSError:
                if server.poll() is not None:
                    pytest.fail(f"JupyterLab exited: {(tmp_path / 'jupyterlab.log').read_text()[-2000:]}")
                time.sleep(0.5)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


def test_the_rule_explorer_draws_and_follows_the_group_dropdown_in_jupyterlab(jupyterlab):
    chromium = chromium_or_skip()
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(180_000)
            errors = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(f"{jupyterlab}/lab/tree/notebooks/rule_usage.ipynb")
            page.wait_for_function("window.jupyterapp !== undefined")
            page.wait_for_selector(".jp-Notebook")
            # Run all once the notebook's kernel is up.
            page.wait_for_function("() => window.jupyterapp.shell.currentWidget?.sessionContext?.session"
                                   "?.kernel?.status === 'idle'")
            page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")

            page.wait_for_selector(TITLE)
            first = page.text_content(TITLE)
            assert first.startswith("Connections per rule")
            group = page.locator(".widget-dropdown", has_text="group").locator("select")
            labels = group.locator("option").all_text_contents()
            assert len(labels) > 2, labels
            group.select_option(index=1)
            page.wait_for_function(
                "([sel, before]) => { const t = document.querySelector(sel); return t && t.textContent !== before; }",
                arg=[TITLE, first])
            second = page.text_content(TITLE)
            assert labels[1].split()[0] in second, (labels[1], second)
            # The peers table under the dropdowns follows too.
            assert page.locator(".widget-html table").count() >= 1
            # Nothing failed, itables' dark-theme switch included (`notebook.setup` orders its outputs).
            assert errors == []
        finally:
            browser.close()
