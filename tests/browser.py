"""Open a local HTML file in headless Chromium with the network cut off, for tests of what auditors see.

    from browser import open_offline

    with open_offline(tmp_path / "report.html") as view:
        view.page.wait_for_selector(".js-plotly-plot svg")
        assert view.blocked == [] and view.errors == []

Every request other than the file itself is recorded and aborted (``data:`` and ``blob:`` URLs never reach
the network, so they are not requests to block). The browser is Debian's ``/usr/bin/chromium``, never a
downloaded one; tests skip, with the reason, only when it is absent (``.ci/run`` installs it in CI).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = "/usr/bin/chromium"
# No first-run, sync, component-update or background requests of Chromium's own: every request the page
# log shows is one the HTML made. --disable-quic keeps any (blocked) request on the routed HTTP stack.
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


@dataclass
class OfflineView:
    """A page opened by `open_offline`, with what it tried to fetch and what went wrong in it.

    Attributes
    ----------
    page : playwright.sync_api.Page
        The page, loaded; use it for clicks and queries.
    url : str
        The ``file://`` URL of the HTML file.
    blocked : list of str
        Every request the page made for anything but the file itself, in order (all were aborted).
    console_errors : list of str
        Console messages of type ``error``.
    page_errors : list of str
        Uncaught exceptions in the page's scripts.
    """

    page: Any
    url: str
    blocked: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)

    @property
    def errors(self) -> list[str]:
        """Console errors and uncaught page errors together."""
        return self.console_errors + self.page_errors


def chromium_or_skip() -> str:
    """The Chromium executable; skips the calling test when Debian's chromium is not installed."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium; .ci/run does it in CI)")
    return CHROMIUM


@contextmanager
def open_offline(html_path: str | Path, *, timeout_ms: float = 30_000) -> Iterator[OfflineView]:
    """Open ``html_path`` in headless Chromium with every network request recorded and aborted.

    Parameters
    ----------
    html_path : str or Path
        A local HTML file.
    timeout_ms : float
        Playwright's default timeout for the page's waits and actions.

    Yields
    ------
    OfflineView
        The loaded page (``load`` event fired), with the lists of blocked requests and errors, which keep
        filling while the test interacts with the page.
    """
    executable = chromium_or_skip()
    from playwright.sync_api import sync_playwright

    url = Path(html_path).resolve().as_uri()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, headless=True)
        try:
            # Service workers would serve requests outside the routes; a report has no business with them.
            context = browser.new_context(service_workers="block")
            context.set_default_timeout(timeout_ms)
            page = context.new_page()
            view = OfflineView(page=page, url=url)

            def route(r) -> None:
                if r.request.url == url:
                    r.continue_()
                else:
                    r.abort()

            def request(req) -> None:
                # Recorded here rather than in route(): this sees every request, routed or not.
                if req.url != url and not req.url.startswith(("data:", "blob:")):
                    view.blocked.append(req.url)

            context.route("**/*", route)
            page.on("request", request)
            page.on("websocket", lambda ws: view.blocked.append(ws.url))
            page.on("console", lambda msg: view.console_errors.append(msg.text) if msg.type == "error" else None)
            page.on("pageerror", lambda exc: view.page_errors.append(str(exc)))
            page.goto(url, wait_until="load")
            yield view
        finally:
            browser.close()
