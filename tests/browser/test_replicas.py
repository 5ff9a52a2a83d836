"""Ten viewers of the price page through `make serve-replicas` (2 Voilà servers, nginx).

Each viewer is its own browser context (own cookies, as separate people are). Every page
must be priced and repriced by its own kernel: the kernel of a page lives in one replica,
and the page's websocket and its shutdown on close only work if nginx sends them there. A
page whose websocket reached the other replica would never get a price. Which replica holds
a page's kernel is read from the process tree (the kernel is a child of that server), not
from anything the proxy says.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pytest
from playwright.sync_api import expect
from replicas_server import Replicas, serve_replicas

import homevalue
from browser.conftest import (
    CLOSED_SOCKET_WRITE,
    KERNEL_SHUTDOWN_WAIT,
    SERVER_LOG_ERROR,
    TEST_VIEWPORT,
    Problems,
    page_kernel,
)
from browser.screenshots import READY_TIMEOUT, page_url
from homevalue.ui.form import HouseForm
from homevalue.ui.render import money

VIEWERS = 10
# Arrivals are random (the first request's id, hashed): all ten on one replica happens with
# probability 2 / 2**10; then up to this many more viewers come, one of whom lands on the
# other replica unless the proxy never sends anyone there (2**-20).
EXTRA_VIEWERS = 10
UPDATE_TIMEOUT = 30_000  # ms: ten pages' kernels reprice at once on 2 cores


@pytest.fixture(scope="module")
def replicas(tmp_path_factory) -> Iterator[Replicas]:
    run_dir = tmp_path_factory.mktemp("replicas")
    # Without preheated pools: each replica would otherwise run its pages' notebooks for
    # four idle kernels at start and again for every pool kernel a viewer takes, which is
    # most of this test's CPU on 2 cores, and routing is the same either way.
    with serve_replicas(run_dir, count=2, voila_args="--preheat_kernel=False") as running:
        yield running


def arrive(browser, replicas: Replicas, problems: Problems):
    """A new viewer: a fresh context (no cookies) opening the price page."""
    context = browser.new_context(viewport=TEST_VIEWPORT)
    tab = context.new_page()
    problems.watch(tab)
    tab.goto(page_url(replicas.url, "price_a_home"), wait_until="commit")
    return context, tab


def ready(tab) -> None:
    tab.wait_for_selector("#loading", state="detached", timeout=READY_TIMEOUT)
    expect(tab.locator(".hv-price")).to_be_visible(timeout=READY_TIMEOUT)


def route_cookie(context) -> str:
    return next(c["value"] for c in context.cookies() if c["name"] == "hv_route")


def test_ten_viewers_each_reprice_through_their_own_kernel_on_both_replicas(
    browser, replicas, model
):
    problems = Problems()
    logs_before = [len(replicas.log(n)) for n in (1, 2)]
    # All ten arrive before any page is ready, as a crowd does.
    viewers = [arrive(browser, replicas, problems) for _ in range(VIEWERS)]
    try:
        for _, tab in viewers:
            ready(tab)
        holders = [replicas.holder(page_kernel(tab)) for _, tab in viewers]
        while set(holders) != {1, 2} and len(viewers) < VIEWERS + EXTRA_VIEWERS:
            viewers.append(arrive(browser, replicas, problems))
            ready(viewers[-1][1])
            holders.append(replicas.holder(page_kernel(viewers[-1][1])))
        assert set(holders) == {1, 2}, f"every page went to replica {holders[0]}"
        kernels = [page_kernel(tab) for _, tab in viewers]
        assert len(set(kernels)) == len(viewers), "two pages share a kernel"

        # The viewer's route cookie is what keeps them there.
        for (context, _), holder in zip(viewers, holders, strict=True):
            assert replicas.probe({"hv_route": route_cookie(context)})[0] == holder

        # Each page asks for its own living area, all before any answer is checked.
        house = HouseForm(model.schema).values()
        areas = [1300 + 97 * i for i in range(len(viewers))]
        for (_, tab), area in zip(viewers, areas, strict=True):
            field = tab.locator(".hv-row-Gr_Liv_Area input")
            field.fill(str(area))
            field.press("Enter")
        for (_, tab), area in zip(viewers, areas, strict=True):
            own = homevalue.predict_one({**house, "Gr_Liv_Area": area}, model=model)
            expect(tab.locator(".hv-price")).to_have_text(money(own.price), timeout=UPDATE_TIMEOUT)
    finally:
        for _context, tab in viewers:
            tab.close(run_before_unload=True)  # the page's shutdown goes through the proxy
    # Closing a page shut its kernel down on the replica that holds it.
    deadline = time.monotonic() + KERNEL_SHUTDOWN_WAIT
    for kernel, holder in zip(kernels, holders, strict=True):
        while f"Kernel shutdown: {kernel}" not in replicas.log(holder):
            assert time.monotonic() < deadline, f"closing its page left kernel {kernel} running"
            time.sleep(0.1)
    for context, _ in viewers:
        context.close()
    assert not problems.all(), "the browser reported problems:\n" + "\n".join(problems.all())
    for number, start in zip((1, 2), logs_before, strict=True):
        log = CLOSED_SOCKET_WRITE.sub("", replicas.log(number)[start:])
        errors = [line for line in log.splitlines() if SERVER_LOG_ERROR.search(line)]
        assert not errors, f"replica {number} logged errors:\n" + "\n".join(errors)
    assert not re.search(r"\[(error|crit|alert|emerg)\]", replicas.nginx_log())


def test_a_dead_replicas_viewer_is_told_and_a_reload_lands_on_a_live_one(browser, replicas, model):
    """Runs last (it kills replica 1 with its kernels, as a machine dying would): its viewer
    sees the connection-lost notice, the other replica's viewer is unaffected, and a reload
    gets a working page (and websocket) from the live replica."""
    problems, viewers = Problems(), {}
    while len(viewers) < 2:
        context, tab = arrive(browser, replicas, problems)
        ready(tab)
        viewers.setdefault(replicas.holder(page_kernel(tab)), (context, tab))
    dying = replicas.server(1)
    for process in [*dying.children(recursive=True), dying]:
        process.kill()
    lost, survivor = viewers[1][1], viewers[2][1]
    expect(lost.locator("#hv-connection-lost")).to_be_visible(timeout=UPDATE_TIMEOUT)
    expect(survivor.locator("#hv-connection-lost")).to_be_hidden()
    house = HouseForm(model.schema).values()
    for tab, area in ((survivor, 2222), (lost, 1777)):
        if tab is lost:
            tab.reload(wait_until="commit")
            ready(tab)
            assert replicas.holder(page_kernel(tab)) == 2
        field = tab.locator(".hv-row-Gr_Liv_Area input")
        field.fill(str(area))
        field.press("Enter")
        own = homevalue.predict_one({**house, "Gr_Liv_Area": area}, model=model)
        expect(tab.locator(".hv-price")).to_have_text(money(own.price), timeout=UPDATE_TIMEOUT)
    for context, tab in viewers.values():
        tab.close(run_before_unload=True)
        context.close()
