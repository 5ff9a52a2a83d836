"""Feedback in the pages without a browser: the price page's "Is this price right?" box and
the report page's accuracy on reported sales."""

from __future__ import annotations

import pytest
from feedback_helpers import stored_reports

import homevalue
from homevalue import config, feedback
from homevalue.feedback import LooksWrong, Sale
from homevalue.ui import PricePage, ReportPage
from homevalue.ui.feedback import (
    NO_PRICE,
    holdout_figures,
    live_accuracy_html,
    live_accuracy_panel,
    live_accuracy_summary,
)
from homevalue.ui.render import money


@pytest.fixture
def page(model) -> PricePage:
    return PricePage(model)


def test_reporting_a_sale_keeps_it_against_the_price_shown(page, model, feedback_store):
    page.form.set_values({"Gr_Liv_Area": 1800})
    box = page.feedback_box
    box.sale_price.value = "$182,000"
    box.sale_year.value, box.sale_month.value = 2009, 6
    box.sale_button.click()
    expected = homevalue.predict_one(page.form.values(), model=model)
    [row] = stored_reports(feedback_store)
    assert (row["source"], row["kind"], row["sale_price"], row["sale_year"], row["sale_month"]) == (
        "page",
        "sale",
        182_000,
        2009,
        6,
    )
    assert row["predicted_price"] == expected.price and row["client"] == box.client
    assert "Thank you: the sale for $182,000 in June 2009 was recorded" in box.result.value
    assert money(expected.price) in box.result.value
    assert box.sale_price.value == "" and box.sale_year.value == ""  # cleared once kept
    assert "hv-live" in box.result._dom_classes  # said by the page's polite live region


def test_a_price_that_is_not_a_number_is_refused_on_the_page(page, feedback_store):
    box = page.feedback_box
    box.sale_price.value = "about 180 grand"
    box.sale_button.click()
    assert f"Not recorded: Sale price {feedback.NOT_A_PRICE}." in box.result.value
    assert box.sale_price.value == "about 180 grand"  # kept, to be corrected
    box.sale_price.value = "182"
    box.sale_button.click()
    assert "Sale price is not a believable sale price" in box.result.value
    assert stored_reports(feedback_store) == []


def test_looks_wrong_needs_a_reason_and_plain_text(page, feedback_store):
    box = page.feedback_box
    box.wrong_button.click()
    assert "choose what looks wrong first" in box.result.value
    box.reason.value, box.comment.value = "too_high", "\x1b[31mred"
    box.wrong_button.click()
    assert "Comment holds a control character (U+001B)" in box.result.value
    box.comment.value = "x" * (config.FEEDBACK_COMMENT_MAX_CHARS + 1)
    box.wrong_button.click()
    assert "characters long" in box.result.value
    assert stored_reports(feedback_store) == []
    box.comment.value = "<b>overpriced</b>"
    box.wrong_button.click()
    assert "“The price is too high” was recorded" in box.result.value
    [row] = stored_reports(feedback_store)
    assert (row["reason"], row["comment"]) == ("too_high", "<b>overpriced</b>")
    assert box.reason.value == "" and box.comment.value == ""


def test_no_report_while_a_field_is_marked(page, feedback_store):
    page.form.inputs["Gr_Liv_Area"].value = -5
    box = page.feedback_box
    box.sale_price.value = "182,000"
    box.sale_button.click()
    assert NO_PRICE.split(":")[0] in box.result.value
    assert stored_reports(feedback_store) == []


def test_one_page_is_one_sender_for_the_flood_limit(model, feedback_store, monkeypatch):
    monkeypatch.setenv("HOMEVALUE_FEEDBACK_PER_SESSION_PER_HOUR", "2")
    first, second = PricePage(model), PricePage(model)
    for _ in range(2):
        first.feedback_box.sale_price.value = "182,000"
        first.feedback_box.sale_button.click()
    keep = feedback.record

    def store_untouched(*args, **kwargs):
        raise AssertionError("a page over its limit opened the store")

    monkeypatch.setattr(feedback, "record", store_untouched)  # refused in the kernel
    first.feedback_box.sale_price.value = "182,000"
    first.feedback_box.sale_button.click()
    monkeypatch.setattr(feedback, "record", keep)
    assert "Not recorded: this page has sent 2 reports in the last hour" in (
        first.feedback_box.result.value
    )
    second.feedback_box.sale_price.value = "182,000"
    second.feedback_box.sale_button.click()
    assert "Thank you" in second.feedback_box.result.value
    assert len(stored_reports(feedback_store)) == 3


def test_a_broken_store_is_a_refusal_not_a_traceback(page, feedback_store):
    feedback_store.write_bytes(b"not a database" * 100)
    page.feedback_box.sale_price.value = "182,000"
    page.feedback_box.sale_button.click()
    assert f"Not recorded: {feedback.UNAVAILABLE}." in page.feedback_box.result.value
    assert page.status.value == ""  # not a bug: the page says nothing went wrong on its side


def test_the_panel_says_what_may_be_reported(page, model):
    low, high = feedback.price_bounds(model.card)
    text = repr(page.feedback)
    assert text.startswith("Is this price right?: report the actual sale price")
    assert f"{money(low)} to {money(high)}" in text
    assert f"{config.FEEDBACK_PER_SESSION_PER_HOUR} reports an hour" in text


# --- live accuracy --------------------------------------------------------------------------


def test_live_accuracy_has_an_empty_state(model):
    markup = live_accuracy_html(feedback.summary(), model.card)
    assert "No sale price has been reported yet" in markup and "<table" not in markup


def test_live_accuracy_sits_beside_the_holdouts(model, feedback_store, good_house):
    p = homevalue.predict_one(good_house, model=model)
    for sold in (p.price, p.high * 1.5):
        feedback.record(p, Sale(sold), source="api", client="api:a")
    feedback.record(p, LooksWrong("too_low"), source="page", client="page:a")
    found = feedback.summary(model_version=model.version)
    markup = live_accuracy_html(found, model.card)
    h = holdout_figures(model.card)
    assert "<td>2</td>" in markup and f"<td>{h['sales']:,}</td>" in markup
    assert f"<td>{found.median_ape_percent / 100:.1%}</td>" in markup
    assert "<td>50.0%</td>" in markup  # one sale of two inside its range
    assert f"<td>{h['inside_share']:.1%}</td>" in markup
    assert "The price is too low: 1" in markup
    text = live_accuracy_summary(found, model.card)
    assert text.startswith("2 reported sales") and "looks wrong: too_low 1" in text


def test_the_report_page_shows_live_accuracy_with_a_stable_summary(
    model, feedback_store, good_house
):
    empty = ReportPage().live
    p = homevalue.predict_one(good_house, model=model)
    feedback.record(p, Sale(p.price), source="api", client="api:a")
    filled = ReportPage().live
    assert repr(empty) == repr(filled)  # what nbval compares does not depend on the store
    assert "median error" in repr(filled)
    assert "No sale price" in empty.children[0].value
    assert "<table" in filled.children[0].value


def test_the_report_page_survives_a_broken_store(feedback_store):
    feedback_store.write_bytes(b"not a database" * 100)
    live = live_accuracy_panel(ReportPage().card)
    assert "cannot be read now" in live.children[0].value
