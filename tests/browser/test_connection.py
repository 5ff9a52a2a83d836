"""The connection-lost notice, seen in the same tab as a viewer would see it.

The notice follows one thing: the page's kernel connection, as Voilà's frontend keeps it
(homevalue.js, section 4). Each test here takes the page's kernel or server away the way
it happens in production, and waits for the notice in the tab that was already open:
the kernel process killed (the server restarts it: the page's widgets are gone), the
kernel shut down by the server (idle culling, the REST API), the server stopped.
"""

from __future__ import annotations

import os
import signal

import pytest
import requests
from playwright.sync_api import Page, expect
from voila_server import serve, write_notebook

from browser.conftest import Problems, page_kernel
from browser.screenshots import READY_TIMEOUT
from browser.test_security import KERNEL_SETTLED

NOTICE_TIMEOUT = 20_000  # ms: the server's 2 s check, the page's 4 s grace, a busy machine
# Resolves once the page's kernel has been idle for `quietMs` in a row: the price page keeps
# its kernel busy for a moment after the first idle (the map, the URL), and a kernel shut
# down while busy is interrupted, which it logs as an ERROR.
KERNEL_QUIET = """async quietMs => {
  const kernel = window.jupyterapp.widgetManager.kernel;
  let since = Date.now();
  kernel.statusChanged.connect(() => { since = Date.now(); });
  while (!(kernel.status === 'idle' && Date.now() - since >= quietMs)) {
    await new Promise(resolve => setTimeout(resolve, 100));
  }
}"""


def open_settled(page: Page, url: str) -> None:
    """Open the page and wait until its kernel connection is up and the kernel quiet."""
    page.goto(url, wait_until="load")
    page.wait_for_selector("#loading", state="detached", timeout=READY_TIMEOUT)
    page.wait_for_function(KERNEL_SETTLED, timeout=READY_TIMEOUT)
    page.evaluate(KERNEL_QUIET, 1500)


def notice(page: Page):
    return page.locator("#hv-connection-lost")


def test_a_killed_kernel_shows_the_notice_in_the_same_tab(page, server):
    open_settled(page, f"{server.url}voila/render/price_a_home.ipynb")
    expect(notice(page)).to_be_hidden()
    server.kill_kernel(page_kernel(page))

    expect(notice(page)).to_be_visible(timeout=NOTICE_TIMEOUT)
    expect(notice(page)).to_contain_text("Connection to the server was lost")
    assert notice(page).get_attribute("data-reason").startswith("kernel ")
    # The server started the kernel again (empty: the page's widgets are gone, so the
    # notice stays); let it finish starting before the tab's closing shuts it down.
    page.wait_for_function(KERNEL_SETTLED, timeout=READY_TIMEOUT)
    expect(notice(page)).to_be_visible()


def test_a_kernel_the_server_shuts_down_shows_the_notice(page, server):
    """As idle culling or an operator does it: DELETE /api/kernels/<id>."""
    open_settled(page, f"{server.url}voila/render/price_a_home.ipynb")
    kernel = page_kernel(page)
    with requests.Session() as session:
        session.get(server.url, timeout=10)  # the _xsrf cookie
        deleted = session.delete(
            f"{server.url}api/kernels/{kernel}",
            headers={"X-XSRFToken": session.cookies.get("_xsrf", "")},
            timeout=30,
        )
    assert deleted.status_code == 204, deleted.text
    expect(notice(page)).to_be_visible(timeout=NOTICE_TIMEOUT)
    # the server told the page's kernel connection "dead": it stopped, with no retries
    assert notice(page).get_attribute("data-reason") == "kernel dead"
    page.wait_for_timeout(3000)
    assert page.evaluate("window.jupyterapp.widgetManager.kernel.isDisposed")


@pytest.fixture
def small_server(tmp_path):
    """A server of its own (this test stops it) on a one-widget page."""
    notebooks = tmp_path / "notebooks"
    write_notebook(notebooks / "one_widget.ipynb", ["import ipywidgets\nipywidgets.IntText(3)"])
    with serve(tmp_path / "server.log", notebooks=notebooks) as running:
        yield running


def test_a_stopped_server_shows_the_notice(browser, small_server):
    context = browser.new_context()
    try:
        page = context.new_page()
        problems = Problems()
        problems.watch(page)
        open_settled(page, f"{small_server.url}voila/render/one_widget.ipynb")
        expect(notice(page)).to_be_hidden()

        os.killpg(small_server.process.pid, signal.SIGTERM)  # as `make serve` is stopped
        expect(notice(page)).to_be_visible(timeout=NOTICE_TIMEOUT)
        assert notice(page).get_attribute("data-reason") in {"reconnecting", "disconnected"}
        assert problems.page_errors == [], problems.page_errors
    finally:
        context.close()
