"""`PricePage.on_priced`: an analyst's panel follows the house through the throttled repricing.

The throttle only holds repricings back while an event loop runs (as in a kernel), so the
rapid-change test runs the page inside `asyncio.run`, as Voilà's kernel would, with the
throttle's interval raised from 0.15 s to 0.5 s so a loaded test machine still makes each
burst of changes faster than it.
"""

from __future__ import annotations

import asyncio
import functools

import ipywidgets as widgets
import pytest

import homevalue
from homevalue.comps import comparable_sales_for
from homevalue.errors import HomevalueError
from homevalue.ui import PricePage
from homevalue.ui import page as ui_page
from homevalue.ui import price as ui_price
from homevalue.ui.page import HOOK_FAILED, Throttle
from homevalue.ui.price import Priced

AREA = "Gr_Liv_Area"
# The default house has 1,210 sq ft; each burst ends on a value none other has.
BURSTS = ([1600, 1700, 1800, 1900], [2100, 2200, 2300], [1475, 1525])
THROTTLE_SECONDS = 0.5


def rapid_changes(model, register) -> tuple[PricePage, list]:
    """Bursts of changes faster than the throttle, a pause after each, in an event loop.

    `register(page)` wires the observers under test; returns the page and the areas each
    burst ended on.
    """

    async def scenario() -> PricePage:
        page = PricePage(model)
        register(page)
        for burst in BURSTS:
            for area in burst:
                page.form.inputs[AREA].value = area
            await asyncio.sleep(2 * THROTTLE_SECONDS)  # the trailing repricing runs
        return page

    return asyncio.run(scenario()), [burst[-1] for burst in BURSTS]


def assert_consistent(state: Priced, model) -> None:
    """Every part of a state belongs to the same house."""
    house = dict(state.house)
    assert state.prediction == homevalue.predict_one(house, model=model)
    assert state.explanation is not None
    assert state.explanation.price == pytest.approx(state.prediction.price, abs=1)
    expected = comparable_sales_for(house, folder=model.path, with_model_price=True)
    assert list(state.comps["Sale_ID"]) == list(expected["Sale_ID"])
    varied = state.curve.columns[0]  # the what-if's feature: the house's own value is on it
    assert state.house[varied] in set(state.curve[varied])


def test_a_hook_sees_every_final_state_after_rapid_changes(model, monkeypatch):
    monkeypatch.setattr(
        ui_price, "Throttle", functools.partial(Throttle, interval=THROTTLE_SECONDS)
    )
    seen: list[Priced] = []
    # What a cell hooked to the form's changes reads: (the area just set, the area of the
    # page's last price).
    naive: list[tuple] = []

    def register(page: PricePage) -> None:
        page.on_priced(seen.append)
        page.form.on_change(
            lambda: naive.append((page.form.inputs[AREA].value, page.last.inputs[AREA]))
        )

    page, finals = rapid_changes(model, register)
    areas = [state.house[AREA] for state in seen]
    # Called at once for the price shown, then after each repricing: fewer than the changes
    # (the throttle collapsed each burst), and each burst's last value among them, in order.
    assert seen[0].house[AREA] == page.schema.default_record()[AREA]
    assert len(seen) < 1 + sum(map(len, BURSTS))
    assert [a for a in areas if a in finals] == finals
    assert (
        seen[-1].prediction == page.last == homevalue.predict_one(page.form.values(), model=model)
    )
    for state in seen:
        assert_consistent(state, model)
    # The same bursts fool an observer of the form: it read a price from before its change.
    # Not every change: one that comes after the interval (a loaded machine pricing the one
    # before for longer) is priced at once, so the test asks for at least one stale read.
    assert any(read != given for given, read in naive)


def test_a_hook_is_called_at_once_with_the_price_shown(model):
    page = PricePage(model)
    seen: list[Priced] = []
    page.on_priced(seen.append)
    assert len(seen) == 1 and seen[0].prediction is page.last
    assert_consistent(seen[0], model)


def test_a_hook_cannot_change_what_the_page_shows(model):
    page = PricePage(model)

    def vandal(state: Priced) -> None:
        state.comps["Sale_Price"] = 0
        state.curve["price"] = 0
        with pytest.raises(TypeError):
            state.house[AREA] = 1  # read-only

    page.on_priced(vandal)
    page.form.inputs[AREA].value = 2000
    assert (page.comps["Sale_Price"] > 0).all() and (page.curve["price"] > 0).all()


def test_a_hook_is_not_called_while_a_field_is_invalid(model):
    page = PricePage(model)
    seen: list[Priced] = []
    page.on_priced(seen.append)
    page.form.inputs[AREA].value = 50_000  # outside the card's range: marked, not priced
    assert len(seen) == 1
    page.form.inputs[AREA].value = 2000
    assert len(seen) == 2 and seen[-1].house[AREA] == 2000


def test_a_failing_hook_does_not_break_the_page(model, caplog, monkeypatch):
    page = PricePage(model)
    own_line = widgets.HTML()
    broken = {"now": True}
    after: list[Priced] = []

    def fragile(state: Priced) -> None:
        if broken["now"]:
            raise RuntimeError("secret internals")

    page.on_priced(fragile, status=own_line)
    page.on_priced(after.append)
    monkeypatch.setattr(ui_page.log, "propagate", True)  # let caplog see the server log line
    with caplog.at_level("ERROR", logger="homevalue.ui"):
        page.form.inputs[AREA].value = 2400
    # The page priced the house and the next hook ran with it.
    assert page.last == homevalue.predict_one(page.form.values(), model=model)
    assert after[-1].prediction == page.last
    assert "$" in page.price_html.value and page.status.value == ""
    # The failure: a short line in the hook's own panel, the traceback in the server log.
    assert HOOK_FAILED in own_line.value
    assert "secret internals" not in own_line.value and "Traceback" not in own_line.value
    assert "secret internals" in caplog.text and "fragile" in caplog.text
    # Mended, the line clears at the next repricing.
    broken["now"] = False
    page.form.inputs[AREA].value = 2500
    assert own_line.value == ""


def test_a_hook_without_its_own_line_reports_on_the_pages_line(model):
    page = PricePage(model)

    def refuses(state: Priced) -> None:
        if state.house[AREA] > 3000:
            raise HomevalueError("Price per square foot is not shown above 3,000 sq ft.")

    page.on_priced(refuses)
    page.form.inputs[AREA].value = 3500
    assert "not shown above 3,000 sq ft" in page.status.value
    assert page.last.inputs[AREA] == 3500
    page.form.inputs[AREA].value = 2000  # the page's line clears with each good price
    assert page.status.value == ""
