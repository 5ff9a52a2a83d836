"""Every page for people who do not see it, or do not use a mouse.

axe-core (tests/browser/axe.py) checks each built page in both themes: no serious or
critical violation of WCAG A/AA or axe's best practices. On the price page every input is
found by its label, the keyboard alone prices a house (focus visible all the way), and the
price is in a polite live region that says the settled price once.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from browser import axe
from browser.screenshots import THEMES, open_page

PAGES = ("price_a_home", "score_a_batch", "model_report", "monitoring")
UPDATE_TIMEOUT = 15_000  # ms for a change to come back as a new price
MAX_TABS = 80  # from the top of the page to the garage's stepper, with room to spare
FOCUSED = """() => {
  const e = document.activeElement;
  const style = getComputedStyle(e);
  const label = e.labels && e.labels.length ? e.labels[0].textContent.trim() : '';
  return {tag: e.tagName, label, outline: style.outlineStyle, width: style.outlineWidth};
}"""


@pytest.mark.parametrize("theme", THEMES)
@pytest.mark.parametrize("name", PAGES)
def test_axe_finds_no_serious_or_critical_violation(page, server, name, theme):
    open_page(page, server.url, name, theme)
    page.wait_for_timeout(800)  # charts and the map draw after the page is built
    found = axe.failing(axe.run(page))
    assert not found, f"axe-core {axe.AXE_VERSION} on {name} ({theme}):\n" + "\n".join(
        v.describe() for v in found
    )


@pytest.fixture
def price_page(page, server) -> Page:
    open_page(page, server.url, "price_a_home")
    expect(page.locator(".hv-form")).to_be_visible()
    return page


def test_every_field_is_found_by_its_label(price_page, model):
    """A screen reader names each input by the card's label (a slider once had no name)."""
    for feature in model.schema.features:
        field = price_page.get_by_label(feature.label, exact=True)
        expect(field).to_have_count(1)
        expect(field).to_be_visible()
        row = price_page.locator(f".hv-row-{feature.name}")
        assert field.evaluate("(e, row) => row.contains(e)", row.element_handle())


def test_counts_are_steppers_a_finger_can_hit(price_page, model):
    """Bounded to the card's range, 44 px tall, with the browser's arrows and typing."""
    for feature in model.schema.features:
        if feature.kind != "integer" or feature.max - feature.min > 10:
            continue
        stepper = price_page.get_by_label(feature.label, exact=True)
        expect(stepper).to_have_attribute("type", "number")
        expect(stepper).to_have_attribute("min", str(int(feature.min)))
        expect(stepper).to_have_attribute("max", str(int(feature.max)))
        assert stepper.bounding_box()["height"] >= 44, f"{feature.label} is too small to tap"


def test_the_keyboard_alone_prices_a_house_and_the_price_is_announced(price_page, model):
    """Tab from the top of the page to the garage's stepper (each stop visibly focused),
    step it up with the arrow key: the price changes, and the live region says the new one
    (once the change has settled)."""
    page = price_page
    label = model.schema.by_name["Garage_Cars"].label
    # The price's own region, heard and not seen (the feedback box's is visible: its own test).
    region = page.locator(".hv-live.hv-sr-only[role='status'][aria-live='polite']")
    expect(region).to_have_count(1)
    expect(region).to_have_text(re.compile(r"^Price \$[\d,]+, between \$[\d,]+ and \$[\d,]+\.$"))
    before_price, before_cars = page.inner_text(".hv-price"), page.get_by_label(label).input_value()

    page.locator("body").focus()
    stops = []
    for _ in range(MAX_TABS):
        page.keyboard.press("Tab")
        focused = page.evaluate(FOCUSED)
        stops.append(focused)
        if focused["tag"] in ("INPUT", "SELECT"):
            assert focused["outline"] != "none" and focused["width"] != "0px", (
                f"no visible focus on {focused}"
            )
        if focused["label"] == label:
            break
    else:
        pytest.fail(f"{label} was not reached in {MAX_TABS} tabs: {stops}")

    page.keyboard.press("ArrowUp")
    expect(page.get_by_label(label)).to_have_value(str(int(before_cars) + 1))
    expect(page.locator(".hv-price")).not_to_have_text(before_price, timeout=UPDATE_TIMEOUT)
    price = page.inner_text(".hv-price")
    assert re.fullmatch(r"\$[\d,]+", price)
    expect(region).to_contain_text(f"Price {price},", timeout=UPDATE_TIMEOUT)
