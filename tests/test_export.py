"""The valuation to take away: one HTML file, every section, nothing that runs or loads."""

from __future__ import annotations

import base64
import re
from dataclasses import replace
from datetime import UTC, datetime
from html.parser import HTMLParser

import pytest

import homevalue
from homevalue import export
from homevalue.export import (
    SECTIONS,
    Accuracy,
    Coverage,
    Curve,
    Driver,
    Drivers,
    Field,
    Table,
    Valuation,
    valuation_filename,
    valuation_html,
)
from homevalue.ui import PricePage
from homevalue.ui.render import money

WHEN = datetime(2026, 11, 30, 9, 5, tzinfo=UTC)
HOSTILE = '<script>alert(1)</script>"><img src=x onerror=alert(2)>'
SIZE_LIMIT = 100_000  # bytes; the file is tens of kilobytes


class Parsed(HTMLParser):
    """The tags, attributes, headings and text of a document, as a browser would parse it."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.attributes: list[tuple[str, str | None]] = []
        self.headings: list[str] = []
        self.text: list[str] = []
        self._heading: list[str] | None = None
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attributes += attrs
        if tag in ("h1", "h2"):
            self._heading = []

    def handle_endtag(self, tag):
        if tag in ("h1", "h2") and self._heading is not None:
            self.headings.append("".join(self._heading))
            self._heading = None

    def handle_data(self, data):
        self.text.append(data)
        if self._heading is not None:
            self._heading.append(data)

    @property
    def all_text(self) -> str:
        return "".join(self.text)


def full_valuation(**changes) -> Valuation:
    """A valuation with every optional section filled in."""
    valuation = Valuation(
        title="North Ames, 1,472 sq ft, built 1976",
        price=157_022,
        low=138_249,
        high=178_346,
        level=0.8,
        inputs=(Field("Living area", "1,472", "sq ft"), Field("Neighbourhood", "North Ames")),
        model_version="1.0.0",
        valued_at=WHEN,
        caveat="Prices are in 2006–2010 dollars (the Ames sales the model learned from)",
        trained_at="2026-11-26T16:39:37Z",
        flags=("Lot area is outside the sold houses' range",),
        coverage=Coverage(0.79, "houses priced $150k – $200k", 142),
        accuracy=Accuracy(0.064, "North Ames", 83),
        drivers=Drivers(
            180_000,
            (
                Driver("Living area 1,472 sq ft", -12_300),
                Driver("Year built 1976", -6_000),
                Driver("Everything else", -4_678),
            ),
        ),
        comps=Table(
            ("Distance (km)", "Sold for"),
            (("0.21", "$181,500"), ("0.40", "$218,000")),
            (True, True),
        ),
        comps_note="2 comparable sales within 0.40 km",
        curve=Curve(
            "Year built",
            "",
            (1900.0, 1950.0, 2000.0),
            (120_000.0, 140_000.0, 190_000.0),
            (100_000.0, 120_000.0, 165_000.0),
            (140_000.0, 160_000.0, 215_000.0),
            1976.0,
            157_022.0,
            grouping=False,
        ),
    )
    return replace(valuation, **changes)


@pytest.fixture
def page(model) -> PricePage:
    return PricePage(model)


def test_every_section_is_there_with_its_figures():
    html = valuation_html(full_valuation())
    parsed = Parsed(html)
    assert parsed.headings == ["Home valuation", *SECTIONS.values()]
    text = parsed.all_text
    for shown in (
        "$157,022",
        "$138,249 – $178,346",
        "80% interval",
        "79.0%",
        "houses priced $150k – $200k",
        "142",
        "6.4%",
        "North Ames",
        "83",
        "Living area 1,472 sq ft",
        "−$12,300",
        "$180,000",
        "Living area",
        "1,472 sq ft",
        "$181,500",
        "0.40",
        "Distance (km)",
        "1.0.0",
        "30 November 2026, 09:05 UTC",
        "2026-11-26T16:39:37Z",
        "Prices are in 2006–2010 dollars (the Ames sales the model learned from)",
        "Lot area is outside the sold houses' range",
        "The red dot is this house (1976)",
    ):
        assert shown in text, f"{shown!r} is missing from the file"
    assert parsed.tags.count("svg") == 2  # the waterfall and the what-if chart


def test_optional_sections_are_left_out_when_not_given():
    bare = full_valuation(coverage=None, accuracy=None, drivers=None, curve=None, comps=None)
    parsed = Parsed(valuation_html(bare))
    assert parsed.headings == [
        "Home valuation",
        "Price",
        "The house",
        "Comparable sales",
        "About this valuation",
    ]
    assert "Coverage" not in parsed.all_text
    assert "No comparable sales were found." in parsed.all_text
    assert "svg" not in parsed.tags


def hostile_everywhere() -> Valuation:
    """Every text field of the valuation, and of each of its parts, set to markup."""
    v = full_valuation()
    return replace(
        v,
        title=HOSTILE,
        model_version=HOSTILE,
        caveat=HOSTILE,
        trained_at=HOSTILE,
        flags=(HOSTILE,),
        comps_note=HOSTILE,
        inputs=(Field(HOSTILE, HOSTILE, HOSTILE),),
        coverage=replace(v.coverage, scope=HOSTILE),
        accuracy=replace(v.accuracy, scope=HOSTILE),
        drivers=Drivers(1000.0, (Driver(HOSTILE, 5.0),), start_label=HOSTILE),
        comps=Table((HOSTILE, HOSTILE), ((HOSTILE, HOSTILE),)),
        curve=replace(v.curve, label=HOSTILE, unit=HOSTILE),
    )


def test_markup_in_any_field_is_shown_as_text_and_never_becomes_a_tag():
    html = valuation_html(hostile_everywhere())
    parsed = Parsed(html)
    assert "script" not in parsed.tags and "img" not in parsed.tags
    assert not [name for name, _ in parsed.attributes if name.startswith("on")]
    assert parsed.all_text.count(HOSTILE) >= 10, "the markup should be shown, as text"
    assert "<script" not in html.lower() and "<img" not in html.lower()


def test_the_file_runs_nothing_and_loads_nothing():
    html = valuation_html(full_valuation())
    parsed = Parsed(html)
    assert "script" not in parsed.tags
    for tag in ("link", "img", "iframe", "object", "embed", "base", "form"):
        assert tag not in parsed.tags
    assert not re.search(r"https?:|//[a-z]|url\(", html, re.I), "nothing may come from elsewhere"
    assert not [a for a, _ in parsed.attributes if a in ("src", "href", "action")]
    policy = next(
        value
        for name, value in parsed.attributes
        if name == "content" and value and "default-src" in value
    )
    assert "default-src 'none'" in policy and "script-src" not in policy


def test_the_waterfall_walks_from_the_start_to_the_price():
    drivers = Drivers(180_000, (Driver("up", 20_000), Driver("down", -30_000)))
    svg = export.waterfall_svg(drivers, 170_000)
    bars = re.findall(
        r'<rect x="([\d.]+)" y="[\d.]+" width="([\d.]+)" height="[\d.]+" '
        r'fill="(#[0-9a-f]+)"',
        svg,
    )
    colours = [colour for _, _, colour in bars]
    assert colours == [export.COLOURS[k] for k in ("total", "up", "down", "total")]
    (start, _, _), (up_x, up_w, _), (down_x, down_w, _), (end, _, _) = (
        (float(x), float(w), c) for x, w, c in bars
    )
    # the "up" bar starts at the start marker, the "down" bar ends where "up" ended...
    assert up_x == pytest.approx(start + 2)
    assert down_x + down_w == pytest.approx(up_x + up_w)
    # ... and goes 1.5 times as far back; the price marker is where it ends
    assert down_w == pytest.approx(1.5 * up_w, abs=0.05)
    assert end + 2 == pytest.approx(down_x)


def test_the_what_if_chart_draws_every_point_and_the_house():
    curve = full_valuation().curve
    svg = export.curve_svg(curve)
    line = re.search(r'<polyline points="([^"]+)"', svg).group(1).split()
    band = re.search(r'<polygon points="([^"]+)"', svg).group(1).split()
    assert len(line) == len(curve.x) and len(band) == 2 * len(curve.x)
    assert svg.count("<circle") == 1
    assert ">1940<" in svg and ">1,940<" not in svg  # years without a thousands separator


@pytest.mark.parametrize(
    ("parts", "expected"),
    [
        (("North_Ames", "1500sqft"), "homevalue-valuation-2026-11-30-North_Ames-1500sqft.html"),
        (("../../etc/passwd", "<x>"), "homevalue-valuation-2026-11-30-etc_passwd-x.html"),
        (("",), "homevalue-valuation-2026-11-30.html"),
    ],
)
def test_the_file_name_is_safe_and_says_what_it_is(parts, expected):
    assert valuation_filename(WHEN, *parts) == expected


def test_the_page_valuation_is_what_the_page_shows(page, model):
    valuation = page.valuation(WHEN)
    p = homevalue.predict_one(page.form.values(), model=model)
    assert (valuation.price, valuation.low, valuation.high) == (p.price, p.low, p.high)
    assert valuation.model_version == model.version
    assert [f.label for f in valuation.inputs] == [f.label for f in model.schema.features]
    assert [row[2] for row in valuation.comps.rows] == [money(v) for v in page.comps["Sale_Price"]]
    assert valuation.curve.x == tuple(float(x) for x in page.curve[page.what_if_choice.value])
    assert valuation.curve.price == tuple(float(y) for y in page.curve["price"])
    first, last = model.card["data"]["sale_years"]
    assert f"{first}–{last} dollars" in valuation.caveat
    assert valuation.coverage.share == p.interval_coverage
    assert p.price_band["label"] in valuation.coverage.scope
    assert valuation.accuracy.median_error * 100 == p.accuracy_here["median_error_percent"]
    assert valuation.accuracy.sales == p.accuracy_here["n_test"]


def test_the_page_valuation_follows_a_change(page):
    before = page.valuation(WHEN)
    page.form.inputs["Gr_Liv_Area"].value = 2400
    after = page.valuation(WHEN)
    assert after.price != before.price and after.comps != before.comps
    assert "2,400" in after.title
    assert Field("Living area", "2,400", "sq ft") in after.inputs


def test_the_valuation_keeps_the_last_good_price_while_an_entry_is_bad(page):
    good = page.valuation(WHEN)
    page.form.inputs["Gr_Liv_Area"].value = 50_000
    assert page.valuation(WHEN) == good


def downloaded(page: PricePage) -> tuple[str, str, str]:
    """The token, file name and content of the page's download link."""
    found = re.search(
        r'data-autoclick="([^"]+)" download="([^"]+)" href="data:text/html;base64,([^"]+)"',
        page.download_link.value,
    )
    assert found, page.download_link.value
    token, name, payload = found.groups()
    return token, name, base64.b64decode(payload).decode("utf-8")


def test_the_button_builds_the_file_of_the_house_on_the_page(page, model):
    assert page.download_link.value == ""  # nothing is built until asked for
    page.form.inputs["Gr_Liv_Area"].value = 1500
    page.download_button.click()
    token, name, content = downloaded(page)
    today = datetime.now(UTC).strftime("%Y-%m-%d")
    neighbourhood = page.last.inputs["Neighborhood"]
    assert name == f"homevalue-valuation-{today}-{neighbourhood}-1500sqft.html"
    assert Parsed(content).headings[0] == "Home valuation"
    assert money(page.last.price) in content
    assert len(content.encode()) < SIZE_LIMIT
    page.download_button.click()
    assert downloaded(page)[0] != token, "a second click must give a new link to click"
    assert page.status.value == ""


def test_a_page_without_a_price_says_so(page):
    page.last = None
    page.download_button.click()
    assert "no price to download" in page.status.value
    assert page.download_link.value == ""
