"""The price page keeps its house in the browser's address: Reload brings it back.

The address is written with history.replaceState after each reprice (homevalue.js,
"address"), so Back does not step through every change; a hostile address fails closed
with a notice and is replaced by the canonical one for the house shown.
"""

from __future__ import annotations

import urllib.parse

from playwright.sync_api import Page, expect
from voila_server import kernel_id

from browser.screenshots import open_page
from browser.test_price_page import (
    UPDATE_TIMEOUT,
    assert_priced_as_shown,
    changed,
    form_values,
)
from homevalue.ui.page import FRIENDLY
from homevalue.ui.price import share_query


def address(page: Page) -> str:
    return page.evaluate("location.search")


def wait_for_address(page: Page, query: str) -> None:
    page.wait_for_function("q => location.search === q", arg=query, timeout=UPDATE_TIMEOUT)


def test_the_address_keeps_the_house_and_a_reload_brings_it_back(page, server, model):
    open_page(page, server.url, "price_a_home")
    expect(page.locator(".hv-form")).to_be_visible()
    assert address(page) == ""  # a plain first visit keeps its plain address
    expect(page.locator(".hv-kept")).to_have_count(0)
    path, history_length = page.evaluate("location.pathname"), page.evaluate("history.length")

    for name, value in (("Gr_Liv_Area", "2400"), ("Year_Built", "1950")):
        before = page.inner_text(".hv-price")
        field = page.locator(f".hv-row-{name} input")
        field.fill(value)
        field.press("Enter")
        changed(page, before)
        values = assert_priced_as_shown(page, model)
        wait_for_address(page, "?" + share_query(values, model.schema))
    assert page.evaluate("location.pathname") == path
    assert page.evaluate("history.length") == history_length, "an entry per change (pushState)"
    price, first_kernel = page.inner_text(".hv-price"), kernel_id(page.content())

    page.reload(wait_until="load")
    page.wait_for_selector("#loading", state="detached", timeout=60_000)
    expect(page.locator(".hv-row-Gr_Liv_Area input")).to_have_value("2400")
    assert kernel_id(page.content()) != first_kernel  # a new kernel, the same house
    assert assert_priced_as_shown(page, model) == values
    assert page.inner_text(".hv-price") == price
    kept = page.locator(".hv-kept")
    expect(kept).to_contain_text("Your house from before was kept")
    expect(kept).to_contain_text("2,400 sq ft, built 1950")
    expect(page.locator(".hv-notice")).to_have_count(0)

    page.get_by_role("link", name="Start again").click()
    page.wait_for_selector("#loading", state="detached", timeout=60_000)
    expect(page.locator(".hv-form")).to_be_visible()
    expect(page.locator(".hv-kept")).to_have_count(0)
    assert address(page) == ""
    assert form_values(page, model.schema)["Gr_Liv_Area"] != 2400


def test_a_hostile_address_fails_closed_with_a_notice(page, server, model):
    hostile = urllib.parse.urlencode(
        {
            "Gr_Liv_Area": "1e400",
            "Neighborhood": "<script>alert(1)</script>",
            "javascript:alert(1)": "x",
            "Year_Built": "1950",
        }
    )
    open_page(page, server.url, "price_a_home", query=hostile)
    notice = page.locator(".hv-notice")
    expect(notice).to_contain_text("The link had values that were not used", timeout=UPDATE_TIMEOUT)
    expect(notice).to_contain_text("Gr_Liv_Area=1e400")
    expect(notice).to_contain_text("javascript:alert(1) is not a field of this model")
    expect(page.locator(".hv-kept")).to_have_count(0)
    values = assert_priced_as_shown(page, model)
    assert values["Year_Built"] == 1950  # the good value was used
    # The address is now the canonical one for the house shown: nothing hostile is kept.
    wait_for_address(page, "?" + share_query(values, model.schema))
    body = page.inner_text("body")
    assert "Traceback" not in body and FRIENDLY not in body

    too_long = urllib.parse.urlencode({"Gr_Liv_Area": "9" * 3000})
    open_page(page, server.url, "price_a_home", query=too_long)
    expect(page.locator(".hv-notice")).to_contain_text(
        "The link is too long", timeout=UPDATE_TIMEOUT
    )
    values = assert_priced_as_shown(page, model)
    wait_for_address(page, "?" + share_query(values, model.schema))
