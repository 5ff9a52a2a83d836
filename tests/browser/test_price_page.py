"""The "Price a home" page in a browser: every control re-prices, exactly as the library does.

Expected prices are never written down: the test reads the values the form shows and prices
them with `homevalue.predict_one` in the test process, so a page that shows a stale price,
prices other values than it shows, or stops reacting fails.
"""

from __future__ import annotations

import re
import time

import pytest
from playwright.sync_api import Page, expect
from voila_server import kernel_id

import homevalue
from browser.screenshots import open_page
from homevalue.comps import (
    comparable_sales_for,
    neighbourhood_at,
    reference_centres,
    reference_sales,
)
from homevalue.errors import ValidationError
from homevalue.schema import validate_record
from homevalue.ui.form import HouseForm
from homevalue.ui.price import (
    HIGHLIGHT_STYLE,
    accuracy_sentence,
    interval_sentence,
)
from homevalue.ui.render import money

# The last comp circle (comps are drawn in table order) whose centre nothing covers and
# that is not outlined: its index in the table and its centre in window coordinates.
UNCOVERED_COMP = """colour => {
  const paths = [...document.querySelectorAll('.hv-map path.leaflet-interactive')]
    .filter(path => path.getAttribute('fill') === colour);
  for (let index = paths.length - 1; index >= 0; index--) {
    const box = paths[index].getBoundingClientRect();
    const x = box.left + box.width / 2, y = box.top + box.height / 2;
    if (paths[index].getAttribute('stroke') === colour
        && document.elementFromPoint(x, y) === paths[index]) return {index, x, y};
  }
  return null;
}"""
# A point of the map with nothing on it (no sold house, marker or control), where a click
# reaches the map itself: the nearest such point to the map's centre (the town; a point at
# the map's edge can be outside the latitudes and longitudes a house may have).
EMPTY_MAP_POINT = """scope => {
  const map = document.querySelector(scope + ' .leaflet-container');
  const box = map.getBoundingClientRect();
  const spots = [];
  for (let fy = 0.2; fy < 0.81; fy += 0.04) for (let fx = 0.2; fx < 0.81; fx += 0.04)
    spots.push([fx, fy]);
  spots.sort((a, b) => Math.hypot(a[0] - 0.5, a[1] - 0.5) - Math.hypot(b[0] - 0.5, b[1] - 0.5));
  for (const [fx, fy] of spots) {
    const x = box.left + box.width * fx, y = box.top + box.height * fy;
    const hit = document.elementFromPoint(x, y);
    if (hit && map.contains(hit) && !hit.closest('.leaflet-interactive, .leaflet-control,'
        + ' .leaflet-marker-icon') && hit.tagName !== 'path') return {x, y};
  }
  return null;
}"""
LAT, LON = "Latitude", "Longitude"  # the committed model's fields of those roles
UPDATE_TIMEOUT = 15_000  # ms for a change to come back as a new price
COMPS_COLOUR = "#e66101"  # the comparable sales' circles, drawn over the sold houses
READ_FORM = """names => Object.fromEntries(names.map(name => {
  const row = document.querySelector('.hv-row-' + name);
  const select = row.querySelector('select');
  if (select) return [name, select.value];
  return [name, row.querySelector('input').value];
}))"""


@pytest.fixture
def price_page(page, server) -> Page:
    open_page(page, server.url, "price_a_home")
    expect(page.locator(".hv-form")).to_be_visible()
    # The sold houses come after first paint, once the browser has drawn the map.
    expect(page.locator(".hv-map.hv-sales-shown")).to_be_attached()
    return page


@pytest.fixture(scope="module")
def default_house(model) -> dict:
    return HouseForm(model.schema).values()


def form_values(page: Page, schema) -> dict:
    """The house as the form shows it, in the model's terms (codes, not labels)."""
    shown = page.evaluate(READ_FORM, schema.names)
    values = {}
    for feature in schema.features:
        raw = shown[feature.name]
        if feature.is_category:
            codes = dict(zip(feature.shown_labels, feature.categories, strict=True))
            values[feature.name] = codes.get(raw, raw)
        elif feature.kind == "integer":
            values[feature.name] = int(float(raw))
        else:
            values[feature.name] = float(raw)
    return values


def shown_answer(page: Page) -> tuple[str, str, str]:
    return tuple(page.inner_text(f".hv-{part}") for part in ("price", "interval", "accuracy"))


def expected_answer(values: dict, model) -> tuple[str, str, str]:
    p = homevalue.predict_one(values, model=model)
    return money(p.price), interval_sentence(p), accuracy_sentence(p, model.schema)


def assert_priced_as_shown(page: Page, model) -> dict:
    """The price and interval are predict_one's for the values in the form; those values.

    Polls briefly: the form's values and the price arrive as separate widget updates.
    """
    deadline = time.monotonic() + UPDATE_TIMEOUT / 1000
    while True:
        values = form_values(page, model.schema)
        expected, shown = expected_answer(values, model), shown_answer(page)
        if shown == expected or time.monotonic() > deadline:
            break
        page.wait_for_timeout(100)
    assert shown == expected, f"the page's answer is not the model's for {values}"
    return values


def assert_comps_follow(page: Page, model, values: dict) -> None:
    """The comparable sales table lists the library's comps for the house, each with the
    model's price for it."""
    comps = comparable_sales_for(values, folder=model.path, with_model_price=True)
    table = page.locator(".hv-table")  # the only table on the page: comparable sales
    expect(table.locator("tbody tr td:nth-child(2)")).to_have_text(
        [f"{d:.2f}" for d in comps["distance_km"]], timeout=UPDATE_TIMEOUT
    )
    expect(table.locator("tbody tr td:nth-child(3)")).to_have_text(
        [money(p) for p in comps["Sale_Price"]], timeout=UPDATE_TIMEOUT
    )
    expect(table.locator("tbody tr td:nth-child(4)")).to_have_text(
        [money(p) for p in comps["model_price"]], timeout=UPDATE_TIMEOUT
    )


def assert_explained_as_shown(page: Page, model, values: dict) -> None:
    """The "Why this price" waterfall (its words and its chart's rows) is predict_one's
    explanation of the house in the form."""
    explanation = homevalue.predict_one(values, model=model, explain=True).explanation
    rows = [step.text for step in explanation.steps()]
    expect(page.locator(".hv-sr-only li")).to_have_text(rows, timeout=UPDATE_TIMEOUT)
    ticks = page.locator(".hv-waterfall .tick text")  # its rows' labels, then its dollars
    for row in rows:
        expect(ticks.filter(has_text=row)).to_have_count(1, timeout=UPDATE_TIMEOUT)


def changed(page: Page, before: str) -> None:
    expect(page.locator(".hv-price")).not_to_have_text(before, timeout=UPDATE_TIMEOUT)


def test_each_control_reprices_the_house(price_page, model, default_house):
    """The default house is priced on load; a count's stepper, a number and a dropdown each
    re-price it, and the interval and the comps follow."""
    page = price_page
    assert assert_priced_as_shown(page, model) == default_house
    assert_comps_follow(page, model, default_house)

    before = page.inner_text(".hv-price")
    page.locator(".hv-row-Full_Bath input").press("ArrowUp")
    changed(page, before)
    assert assert_priced_as_shown(page, model)["Full_Bath"] == default_house["Full_Bath"] + 1

    before = page.inner_text(".hv-price")
    area = page.locator(".hv-row-Gr_Liv_Area input")
    area.fill("2400")
    area.press("Enter")
    changed(page, before)
    values = assert_priced_as_shown(page, model)
    assert values["Gr_Liv_Area"] == 2400
    assert_comps_follow(page, model, values)
    assert_explained_as_shown(page, model, values)

    before = page.inner_text(".hv-price")
    page.locator(".hv-row-Neighborhood select").select_option(
        label=model.schema.by_name["Neighborhood"].label_of("Northridge_Heights")
    )
    changed(page, before)
    values = assert_priced_as_shown(page, model)
    assert values["Neighborhood"] == "Northridge_Heights"
    # The house moved to the neighbourhood's centre, and its comps with it.
    centre = reference_centres(model.path)["Northridge_Heights"]
    assert (values[LAT], values[LON]) == pytest.approx(centre, abs=1e-6)  # as the form shows
    assert_comps_follow(page, model, values)


def test_the_form_shows_the_cards_labels_and_help_texts(price_page, model):
    """The viewer reads labels ("Single-family detached") and each field's help text; the
    values behind the dropdown stay the codes the model takes."""
    page = price_page
    bldg = model.schema.by_name["Bldg_Type"]
    options = page.locator(".hv-row-Bldg_Type select option")
    expect(options).to_have_text(list(bldg.labels))
    for feature in model.schema.features:
        help_line = page.locator(f".hv-row-{feature.name} .hv-help")
        expect(help_line).to_be_visible()
        expect(help_line).to_have_text(feature.help)


def marker_in_map(page: Page) -> tuple[float, float]:
    """Where the house's marker is inside the map (page scrolling moves both)."""
    marker = page.locator(".hv-map .leaflet-marker-icon").bounding_box()
    frame = page.locator(".hv-map .leaflet-container").bounding_box()
    return marker["x"] - frame["x"], marker["y"] - frame["y"]


def test_clicking_the_map_moves_the_house_and_reprices_it(price_page, model, default_house):
    page = price_page
    before = page.inner_text(".hv-price")
    page.locator(".hv-map").scroll_into_view_if_needed()
    point = page.evaluate(EMPTY_MAP_POINT, ".hv-map")
    assert point, "the map has no empty spot in view"
    page.mouse.click(point["x"], point["y"])
    changed(page, before)
    values = assert_priced_as_shown(page, model)
    assert (values[LAT], values[LON]) != (default_house[LAT], default_house[LON])
    assert_comps_follow(page, model, values)


def test_a_sold_house_on_the_map_can_be_the_starting_point(
    price_page, problems, model, circle_point
):
    """Clicking a sold house offers it and leaves the house where it is; accepting fills
    the form with it (its location too) and re-prices."""
    page = price_page
    before = assert_priced_as_shown(page, model)
    sale = circle_point(page, ".hv-map", skip=COMPS_COLOUR)
    marker = marker_in_map(page)
    page.mouse.click(*sale)
    start = page.get_by_role("button", name="Start from this house")
    expect(start).to_be_visible(timeout=UPDATE_TIMEOUT)
    page.wait_for_timeout(1500)  # a map click, had one been sent, would have moved it by now
    assert form_values(page, model.schema) == before, "a click on a sale moved the house"
    assert marker_in_map(page) == marker
    offer = page.get_by_text(re.compile(r"^Sold \d+ for")).inner_text()
    found = re.search(r"Sold (\d+) for \$([\d,]+): ([\d,]+) sq ft, built (\d+), (.+)\.", offer)
    assert found, f"unexpected offer text {offer!r}"
    year_sold, price, area, built, place = found.groups()
    sales = reference_sales(model.path)
    sale = sales[
        (sales["Year_Sold"] == int(year_sold))
        & (sales["Sale_Price"] == int(price.replace(",", "")))
        & (sales["Gr_Liv_Area"] == int(area.replace(",", "")))
        & (sales["Year_Built"] == int(built))
        & (sales["Neighborhood"].map(model.schema.by_name["Neighborhood"].label_of) == place)
    ]
    assert len(sale) == 1, f"the offer {offer!r} matches {len(sale)} sales"
    start.click()
    expect(start).to_be_hidden(timeout=UPDATE_TIMEOUT)
    expect(page.locator(".hv-row-Gr_Liv_Area input")).to_have_value(area.replace(",", ""))
    values = assert_priced_as_shown(page, model)
    record = sale.iloc[0]
    assert values == {
        f.name: (record[f.name] if f.is_category else pytest.approx(record[f.name]))
        for f in model.schema.features
    }
    found = problems.take()  # the what-if chart is redrawn for the new house
    assert not found, "\n".join(found)


def test_an_out_of_range_entry_is_marked_and_keeps_the_last_price(price_page, model):
    page = price_page
    price = page.inner_text(".hv-price")
    values = form_values(page, model.schema)
    with pytest.raises(ValidationError) as refused:
        validate_record(model.schema, {**values, "Gr_Liv_Area": 50_000})
    reason = next(p.reason for p in refused.value.problems if p.field == "Gr_Liv_Area")

    area = page.locator(".hv-row-Gr_Liv_Area input")
    area.fill("50000")
    area.press("Enter")
    error = page.locator(".hv-row-Gr_Liv_Area .hv-field-error")
    label = model.schema.by_name["Gr_Liv_Area"].label
    expect(error).to_have_text(f"{label} {reason}", timeout=UPDATE_TIMEOUT)
    expect(page.locator(".hv-notice")).to_contain_text("the last price is shown")
    assert page.locator(".hv-field-error").count() == 1, "another field was marked too"
    assert page.inner_text(".hv-price") == price

    area.fill("1800")
    area.press("Enter")
    changed(page, price)
    expect(error).to_have_count(0)
    expect(page.locator(".hv-notice")).to_have_count(0)
    assert assert_priced_as_shown(page, model)["Gr_Liv_Area"] == 1800


def test_a_link_prefills_the_form_in_a_preheated_kernel(page, server, model, default_house):
    """Voilà hands the query to a kernel that ran the page before the viewer asked for it."""
    open_page(page, server.url, "price_a_home", query="Gr_Liv_Area=2500&lat=42.05&lon=-93.63")
    # A spot without a neighbourhood takes the neighbourhood its sales say.
    hood = neighbourhood_at(42.05, -93.63, folder=model.path)
    assert hood != default_house["Neighborhood"]
    linked = {**default_house, "Gr_Liv_Area": 2500, LAT: 42.05, LON: -93.63, "Neighborhood": hood}
    expect(page.locator(".hv-row-Gr_Liv_Area input")).to_have_value("2500")
    assert assert_priced_as_shown(page, model) == linked
    assert expected_answer(linked, model)[0] != expected_answer(default_house, model)[0]
    expect(page.locator(".hv-notice")).to_have_count(0)  # every value of the link was used
    kernel = kernel_id(page.content())
    assert f"Using pre-heated kernel: {kernel} for price_a_home.ipynb" in server.log()


def test_picking_a_comp_outlines_it_on_the_map_and_offers_it(price_page, model):
    """The comps' buttons work from the keyboard; the picked comp is drawn larger with a
    dark outline; clicking another comp's circle on the map picks that one instead."""
    page = price_page
    before = assert_priced_as_shown(page, model)
    comps = comparable_sales_for(before, folder=model.path)
    outlined = page.locator(
        f'.hv-map path.leaflet-interactive[stroke="{HIGHLIGHT_STYLE["color"]}"]'
        f'[stroke-width="{HIGHLIGHT_STYLE["weight"]}"]'
    )
    expect(outlined).to_have_count(0)
    button = page.locator(".hv-comp-choice button", has_text="2")
    button.focus()
    page.keyboard.press("Enter")
    expect(outlined).to_have_count(1, timeout=UPDATE_TIMEOUT)
    offer = page.get_by_text(re.compile(r"^Sold \d+ for"))
    expect(offer).to_contain_text(money(comps["Sale_Price"].iloc[1]), timeout=UPDATE_TIMEOUT)
    box = outlined.bounding_box()
    assert box["width"] >= 2 * HIGHLIGHT_STYLE["radius"]  # drawn larger than the others

    page.locator(".hv-map").scroll_into_view_if_needed()
    other = page.evaluate(UNCOVERED_COMP, COMPS_COLOUR)
    assert other, "no comp's circle is uncovered on the map"
    page.mouse.click(other["x"], other["y"])
    active = page.locator(".hv-comp-choice button.mod-active")
    expect(active).to_have_text(str(other["index"] + 1), timeout=UPDATE_TIMEOUT)
    expect(offer).to_contain_text(money(comps["Sale_Price"].iloc[other["index"]]))
    expect(outlined).to_have_count(1)
    assert form_values(page, model.schema) == before, "picking a comp moved the house"
