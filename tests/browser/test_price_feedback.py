"""The price page's "Is this price right?" in a browser: a viewer reports what the house on
screen sold for, with the keyboard, hears the confirmation (the page's polite live region)
and the report is in the feedback store with the price they were shown; a bad price is
refused in words and nothing is kept.

The expected price is the library's for the values the form shows, never written down.
"""

from __future__ import annotations

import json

import pytest
from feedback_helpers import stored_reports
from playwright.sync_api import Page, expect

import homevalue
from browser.conftest import feedback_db
from browser.screenshots import open_page
from browser.test_price_page import UPDATE_TIMEOUT, assert_priced_as_shown, changed
from homevalue import feedback
from homevalue.ui.render import money

REPORT_SALE = "Report the actual sale price"


@pytest.fixture
def price_page(page, server) -> Page:
    open_page(page, server.url, "price_a_home")
    expect(page.locator(".hv-form")).to_be_visible()
    return page


def stored(server) -> list[dict]:
    return stored_reports(feedback_db(server))


def test_a_viewer_reports_a_sale_with_the_keyboard_and_it_is_stored(price_page, server, model):
    page = price_page
    before_rows = len(stored(server))
    area = page.locator(".hv-row-Gr_Liv_Area input")
    before = page.inner_text(".hv-price")
    area.fill("1700")
    area.press("Enter")
    changed(page, before)
    values = assert_priced_as_shown(page, model)
    expected = homevalue.predict_one(values, model=model)

    result = page.locator(".hv-feedback-result")
    expect(result).to_have_attribute("role", "status")  # a live region before it speaks
    expect(result).to_have_attribute("aria-live", "polite")

    # A price that is not one is refused in words, and nothing is kept.
    price = page.get_by_label("Sale price ($)")
    price.fill("about 180 grand")
    page.get_by_role("button", name=REPORT_SALE).focus()
    page.keyboard.press("Enter")
    expect(result).to_contain_text(
        f"Not recorded: Sale price {feedback.NOT_A_PRICE}", timeout=UPDATE_TIMEOUT
    )
    assert len(stored(server)) == before_rows

    # The keyboard alone: type, tab to the year and month, choose, tab to the button, Enter.
    price.fill("$182,000")
    page.get_by_label("Year sold").select_option(label="2009")
    page.get_by_label("Month sold").select_option(label="June")
    page.get_by_label("Month sold").focus()
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent").strip() == REPORT_SALE
    page.keyboard.press("Enter")
    expect(result).to_contain_text(
        "Thank you: the sale for $182,000 in June 2009 was recorded", timeout=UPDATE_TIMEOUT
    )
    expect(result).to_contain_text(money(expected.price))
    expect(price).to_have_value("")

    rows = stored(server)
    assert len(rows) == before_rows + 1
    row = rows[-1]
    assert (row["source"], row["kind"], row["sale_price"], row["sale_year"], row["sale_month"]) == (
        "page",
        "sale",
        182_000,
        2009,
        6,
    )
    assert (row["predicted_price"], row["predicted_low"], row["predicted_high"]) == (
        expected.price,
        expected.low,
        expected.high,
    )
    assert row["model_version"] == model.version
    assert json.loads(row["house"])["Gr_Liv_Area"] == values["Gr_Liv_Area"] == 1700


def test_a_viewer_says_the_price_looks_wrong(price_page, server):
    page = price_page
    before_rows = len(stored(server))
    page.get_by_label("What looks wrong").select_option(label=feedback.REASONS["too_low"])
    page.get_by_label("Comment (optional)").fill("new kitchen in 2008")
    page.get_by_role("button", name="This price looks wrong").click()
    expect(page.locator(".hv-feedback-result")).to_contain_text(
        "“The price is too low” was recorded", timeout=UPDATE_TIMEOUT
    )
    row = stored(server)[-1]
    assert len(stored(server)) == before_rows + 1
    assert (row["kind"], row["reason"], row["comment"]) == (
        "looks_wrong",
        "too_low",
        "new kitchen in 2008",
    )
