"""The price page taken away: "Download this valuation" and the browser's Print / Save as PDF.

The downloaded file is opened in a new browser context with JavaScript off, as a viewer
would open it from their downloads folder years later; the live page is printed to PDF and
the PDF's text is read back. What must be there is taken from the page itself and from the
library, never written down.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime

import pypdf
import pytest
from playwright.sync_api import Page, expect

from browser.screenshots import open_page
from browser.test_price_page import UPDATE_TIMEOUT, assert_priced_as_shown, changed
from homevalue.comps import comparable_sales_for
from homevalue.export import SECTIONS
from homevalue.ui.render import money

DOWNLOAD = "Download this valuation"
PRINTED_PAGES_LIMIT = 5  # the whole page, with the map capped: three Letter pages today


@pytest.fixture
def price_page(page, server) -> Page:
    open_page(page, server.url, "price_a_home")
    expect(page.locator(".hv-form")).to_be_visible()
    return page


def expected_sections() -> list[str]:
    """Every section, "Why this price" included."""
    return list(SECTIONS.values())


def download(page: Page, tmp_path, name: str):
    """Click the button once; the browser's download, saved under `tmp_path`."""
    with page.expect_download(timeout=UPDATE_TIMEOUT) as started:
        page.get_by_role("button", name=DOWNLOAD).click()
    saved = tmp_path / name / started.value.suggested_filename
    saved.parent.mkdir()
    started.value.save_as(saved)
    return started.value, saved


def test_one_click_downloads_a_valuation_that_reads_without_javascript(
    price_page, browser, model, tmp_path
):
    page = price_page
    area = page.locator(".hv-row-Gr_Liv_Area input")
    before = page.inner_text(".hv-price")
    area.fill("1500")
    area.press("Enter")
    changed(page, before)
    values = assert_priced_as_shown(page, model)

    started, saved = download(page, tmp_path, "first")
    # Read after the download: the comps table of the new price may arrive a moment after
    # the price (its own widget message); the kernel handles the click only after the
    # whole reprice, so by now the page shows what the file holds.
    comps_shown = page.locator(".hv-table tbody tr").all_inner_texts()
    today = datetime.now(UTC).strftime("%Y-%m-%d")
    name = f"homevalue-valuation-{today}-{values['Neighborhood']}-1500sqft.html"
    assert started.suggested_filename == name
    # the link that was clicked stays on the page, for a browser that held the click back
    expect(page.locator(f'a.hv-download[download="{name}"]')).to_be_visible()

    offline = browser.new_context(java_script_enabled=False)
    try:
        reader = offline.new_page()
        requests: list[str] = []
        reader.on("request", lambda request: requests.append(request.url))
        reader.goto(saved.as_uri())
        assert reader.locator("h2").all_inner_texts() == expected_sections()
        assert reader.inner_text(".price") == page.inner_text(".hv-price")
        assert "2006–2010 dollars" in reader.inner_text("header")
        assert model.version in reader.inner_text("#about")
        assert reader.locator("#comps tbody tr").count() == len(comps_shown)
        for file_row, page_row in zip(
            reader.locator("#comps tbody tr").all_inner_texts(), comps_shown, strict=True
        ):
            assert file_row.split("\t")[:4] == page_row.split("\t")[:4]
        assert reader.locator("#what-if svg polyline").count() == 1
        assert requests == [saved.as_uri()], "the file must load nothing but itself"
    finally:
        offline.close()

    # A second click is a second download, even for the same house.
    again, _ = download(page, tmp_path, "second")
    assert again.suggested_filename == name


def test_print_to_pdf_has_the_whole_page_down_to_the_comparable_sales(price_page, model):
    """Before the print stylesheet, the PDF stopped after the price (a fixed-height box)."""
    page = price_page
    values = assert_priced_as_shown(page, model)
    pdf = pypdf.PdfReader(io.BytesIO(page.pdf()))
    text = "\n".join(p.extract_text() for p in pdf.pages)
    assert len(pdf.pages) <= PRINTED_PAGES_LIMIT
    assert page.inner_text(".hv-price") in text
    comps = comparable_sales_for(values, folder=model.path)
    assert "Comparable sales" in text and "Sold for" in text
    for sale in comps.itertuples():
        assert f"{sale.distance_km:.2f} {money(sale.Sale_Price)}" in text
    assert "What if" in text and "Why this price" in text
    assert DOWNLOAD not in text, "buttons are left out of the printout"
    assert "copy it to share" not in text
    # the charts and the map, scaled down for the paper, are back to their screen size
    assert page.locator("[data-hv-print-width]").count() == 0
    zooms = page.locator(".bqplot").evaluate_all("charts => charts.map(c => c.style.zoom)")
    assert zooms == [""] * 2, "both charts (why this price, what if) are back to screen size"
