"""Every page on a phone (390×844) and a tablet (768×1024): nothing runs off the right edge,
the price and its range are in the first screen, and what a finger taps is 44 px tall."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page

from browser.screenshots import PAGES, SIZES, open_page

# Visible elements past the right edge, outside the boxes that scroll or clip sideways on
# purpose (a table's wrap, the header's nav, a map's panes).
OVERFLOWING = """() => {
  const scrolls = '.hv-table-wrap, .hv-nav, .leaflet-container';
  const out = [];
  for (const e of document.querySelectorAll('body *')) {
    const box = e.getBoundingClientRect();
    if (!box.width || !box.height || box.right <= innerWidth + 1) continue;
    if (e.closest(scrolls) || getComputedStyle(e).visibility === 'hidden') continue;
    out.push(`${e.tagName.toLowerCase()}.${[...e.classList].join('.')} ends at ${box.right}`);
  }
  return out;
}"""
# Buttons, selects and inputs a finger taps, shorter than 44 px (the file input itself is
# hidden behind its button).
SMALL_TARGETS = """() => [...document.querySelectorAll('button, select, input:not([type=file])')]
  .filter(e => e.getBoundingClientRect().width > 0 && e.getBoundingClientRect().height < 43.5)
  .map(e => `${e.tagName.toLowerCase()} "${(e.textContent || e.value || '').trim()}"`
    + ` ${e.getBoundingClientRect().height}px`)"""


@pytest.fixture
def sized(page: Page, server, request) -> Page:
    name, size = request.param
    page.set_viewport_size(SIZES[size])
    open_page(page, server.url, name)
    page.wait_for_timeout(1000)  # charts and the map lay out for the width
    return page


CASES = [(name, size) for name in PAGES for size in SIZES]


@pytest.mark.parametrize("sized", CASES, ids=[f"{n}-{s}" for n, s in CASES], indirect=True)
def test_nothing_is_wider_than_the_screen(sized: Page):
    width = sized.evaluate("innerWidth")
    assert sized.evaluate("document.documentElement.scrollWidth") <= width
    assert sized.evaluate(OVERFLOWING) == []


@pytest.mark.parametrize(
    "sized", [("price_a_home", s) for s in SIZES], ids=list(SIZES), indirect=True
)
def test_the_price_and_its_range_are_in_the_first_screen(sized: Page):
    height = sized.evaluate("innerHeight")
    for css in (".hv-price", ".hv-interval"):
        box = sized.locator(css).first.bounding_box()
        assert box and box["y"] >= 0 and box["y"] + box["height"] <= height, css


@pytest.mark.parametrize("sized", [(n, "phone") for n in PAGES], ids=list(PAGES), indirect=True)
def test_touch_targets_are_44_px_tall_on_a_phone(sized: Page):
    assert sized.evaluate(SMALL_TARGETS) == []


@pytest.mark.parametrize("sized", [("price_a_home", "phone")], ids=["phone"], indirect=True)
def test_a_legend_is_folded_on_a_phone_and_a_tap_unfolds_it(sized: Page):
    legend = sized.locator("div.leaflet-control-legend").first
    legend.scroll_into_view_if_needed()
    folded = legend.bounding_box()["height"]
    legend.locator("h4").click()
    assert legend.bounding_box()["height"] > folded * 2
    assert folded < 40


@pytest.mark.parametrize("sized", [("price_a_home", "phone")], ids=["phone"], indirect=True)
def test_why_this_price_is_a_readable_list_on_a_phone(sized: Page):
    """The waterfall's labels leave a phone's bars no room: its steps show as words."""
    steps = sized.locator("ul.hv-drivers-list li")
    steps.first.scroll_into_view_if_needed()
    assert steps.count() >= 3
    box = steps.first.bounding_box()
    assert box and box["width"] > 200 and box["height"] >= 16
    assert sized.locator(".hv-waterfall").evaluate("e => getComputedStyle(e).visibility") == (
        "hidden"
    )
