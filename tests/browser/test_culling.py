"""Culling, on a real server with short timeouts: only a gone viewer loses their kernel soon.

voila.json culls a kernel without a connection (its tab crashed or lost the network, so
Voilà's shutdown beacon never came) after `cull_idle_timeout`, and a page still open only
after `connected_idle_timeout`, much longer. Here both are shortened on the command line
(`make serve VOILA_ARGS=...`), with the same policy.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pytest
from playwright.sync_api import expect
from voila_server import VoilaServer, serve

from browser.conftest import page_kernel, watched_page
from browser.screenshots import open_page
from browser.test_price_page import assert_priced_as_shown, changed

GONE_TIMEOUT = 8  # s idle for a kernel whose page has gone (voila.json: 300)
OPEN_TIMEOUT = 40  # s idle for a kernel whose page is still open (voila.json: 14,400)
CULL_INTERVAL = 1
MARGIN = 20  # s for a loaded machine: a check may start late


@pytest.fixture(scope="module")
def culling_server(tmp_path_factory) -> Iterator[VoilaServer]:
    args = (
        f"--MappingKernelManager.cull_idle_timeout={GONE_TIMEOUT} "
        f"--MappingKernelManager.cull_interval={CULL_INTERVAL} "
        f"--LimitedKernelManager.connected_idle_timeout={OPEN_TIMEOUT}"
    )
    with serve(tmp_path_factory.mktemp("culling") / "server.log", voila_args=args) as server:
        yield server


def wait_for_log(server: VoilaServer, pattern: str, seconds: float) -> float:
    """Seconds until `pattern` appears in the server's log; fails after `seconds`."""
    start = time.monotonic()
    while not re.search(pattern, server.log()):
        assert time.monotonic() - start < seconds, f"no {pattern!r} in the log in {seconds} s"
        time.sleep(0.2)
    return time.monotonic() - start


def test_a_crashed_tab_is_culled_and_an_open_idle_page_is_kept(
    browser, culling_server, problems, model
):
    server = culling_server
    with watched_page(browser, server, problems) as open_tab:
        open_page(open_tab, server.url, "price_a_home")
        kept = page_kernel(open_tab)

        # A viewer whose tab crashes: its websocket goes, the shutdown beacon never comes
        # (the log shows that the culler, not a beacon, ended the kernel).
        context = browser.new_context()
        crashing = context.new_page()
        open_page(crashing, server.url, "price_a_home")
        gone = page_kernel(crashing)
        context.close()  # no unload handlers run: as when a tab's process dies
        waited = wait_for_log(
            server,
            rf"Culling '\w+' kernel '\w+' \({gone}\) with 0 connections",
            GONE_TIMEOUT + MARGIN,
        )
        assert f"Kernel shutdown: {gone}" in server.log()
        deadline = time.monotonic() + MARGIN
        while gone in server.kernel_ids():  # its process ends after a graceful shutdown
            assert time.monotonic() < deadline, f"the culled kernel {gone} still runs"
            time.sleep(0.2)

        # The open page has been idle longer than a gone viewer's kernel is kept: it stays.
        idle_since = time.monotonic() - waited
        time.sleep(max(0.0, idle_since + GONE_TIMEOUT + 3 * CULL_INTERVAL - time.monotonic()))
        assert kept in server.kernel_ids()
        assert f"({kept})" not in server.log()
        before = open_tab.inner_text(".hv-price")
        area = open_tab.locator(".hv-row-Gr_Liv_Area input")
        area.fill("2100")
        area.press("Enter")
        changed(open_tab, before)
        assert assert_priced_as_shown(open_tab, model)["Gr_Liv_Area"] == 2100

        # ... until it has been idle for the open page's own, much longer, limit.
        waited = wait_for_log(
            server,
            rf"shutting kernel {kept} down: its page is open but was idle",
            OPEN_TIMEOUT + MARGIN,
        )
        assert waited > OPEN_TIMEOUT - 1, f"culled after {waited:.0f} s, before {OPEN_TIMEOUT} s"
        expect(open_tab.locator(".hv-price")).to_be_visible()
        problems.take()  # the page may complain that its kernel went: that was the point
