"""The model report in a browser: its charts are drawn with every mark, its tables filled.

What each chart and table should hold is read from the model folder with the report's own
functions, so a chart that renders empty (or half its data) fails.
"""

from __future__ import annotations

import html
import re

import ipywidgets as widgets
import pytest
from playwright.sync_api import Page, expect

from browser.screenshots import open_page
from homevalue import config
from homevalue.model import read_card
from homevalue.schema import Schema
from homevalue.ui.report import (
    HOVER_PROMPT,
    hover_handler,
    importance_table,
    metric_rows,
    neighbourhood_geojson,
    place_columns,
    read_holdout,
    residuals_by_neighbourhood,
)


@pytest.fixture
def report_page(page, server) -> Page:
    open_page(page, server.url, "model_report")
    return page


@pytest.fixture(scope="module")
def card(model) -> dict:
    return read_card(model.path)


@pytest.fixture(scope="module")
def holdout(model):
    return read_holdout(model.path)


def test_the_charts_are_drawn_with_all_their_marks(report_page, card, holdout):
    page = report_page
    accuracy, importance = page.locator(".bqplot").all()
    # one dot per test sale and the diagonal, drawn as numbers (no NaN in the path)
    expect(accuracy.locator("svg .object_grp path.dot")).to_have_count(len(holdout))
    diagonal = accuracy.locator("svg path.line").first.get_attribute("d")
    assert diagonal and "NaN" not in diagonal
    # one bar per feature, each with a width
    bars = importance.locator("svg .bargroup rect.bar")
    expect(bars).to_have_count(len(importance_table(card)))
    widths = bars.evaluate_all("rects => rects.map(r => r.getBBox().width)")
    assert all(width > 0 for width in widths)
    axis_labels = importance.locator("svg .axis .tick text").all_text_contents()
    assert set(importance_table(card)["label"]) <= set(axis_labels)


def by_neighbourhood(card: dict, holdout):
    """The page's table of neighbourhoods, as the page builds it from the card's roles."""
    places = place_columns(Schema.from_list(card["features"]), holdout, config.model_dir())
    return residuals_by_neighbourhood(holdout, places=places)


def test_the_tables_hold_the_model_cards_figures(report_page, card, holdout):
    page = report_page
    metrics = page.locator(
        "table.hv-table", has=page.locator("caption", has_text="Accuracy on the test sales")
    )
    shown = metrics.locator("tbody tr").evaluate_all(
        "rows => rows.map(r => [...r.cells].slice(0, 2).map(c => c.textContent))"
    )
    assert shown == metric_rows(card).iloc[:, :2].to_numpy(str).tolist()
    neighbourhoods = page.locator(
        "table.hv-table", has=page.locator("th", has_text="Median error")
    ).locator("tbody tr")
    expect(neighbourhoods).to_have_count(len(by_neighbourhood(card, holdout)))
    expect(page.locator("table.hv-pairs")).to_have_count(3)  # data, training, versions
    expect(page.locator("table.hv-pairs").first).to_contain_text(card["data"]["data_sha256"])


def test_pointing_at_a_neighbourhood_shows_its_figures(report_page, card, holdout, circle_point):
    page = report_page
    table = by_neighbourhood(card, holdout)
    circles = page.locator(".leaflet-container path.leaflet-interactive")
    expect(circles).to_have_count(len(table))  # one per neighbourhood
    status = page.get_by_text(HOVER_PROMPT)
    expect(status).to_be_visible()
    page.mouse.move(*circle_point(page, ".leaflet-container"))
    expect(status).to_have_count(0)
    shown = page.get_by_text(re.compile(r"^[^:]+: \d+ test sales, median error")).inner_text()
    name = shown.split(":")[0]
    feature = next(
        f for f in neighbourhood_geojson(table)["features"] if f["properties"]["name"] == name
    )
    expected = widgets.HTML()
    hover_handler(expected)(feature=feature)
    assert shown == html.unescape(re.sub(r"<[^>]+>", "", expected.value))
