"""The feedback store (homevalue.feedback): what a report keeps, what it refuses, and that
several processes writing at once lose nothing and break no limit.

Expected figures are recomputed here from the reports the test made (statistics.median),
and price bounds from the model card, never written down.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import sqlite3
import statistics
import threading
from datetime import UTC, datetime, timedelta

import pytest

import homevalue
from homevalue import config, feedback
from homevalue.errors import FeedbackLimitError, FeedbackStoreError, ValidationError
from homevalue.feedback import LooksWrong, Sale
from homevalue.predict import Prediction

NOON = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
LIMITS = config.FeedbackLimits(
    per_session_per_hour=3, per_api_client_per_hour=5, max_rows_per_day=100, busy_seconds=5.0
)


def priced(
    price: float = 150_000.0,
    low: float = 130_000.0,
    high: float = 170_000.0,
    version: str = "test-1",
) -> Prediction:
    return Prediction(
        price=price,
        low=low,
        high=high,
        model_version=version,
        inputs={"Gr_Liv_Area": 1500, "Neighborhood": "North_Ames"},
        dollars_of="2006-2010",
    )


def rows(path) -> list[dict]:
    with sqlite3.connect(path) as db:
        db.row_factory = sqlite3.Row
        return [dict(r) for r in db.execute("SELECT * FROM feedback ORDER BY id")]


def problems_of(call) -> dict[str, str]:
    with pytest.raises(ValidationError) as caught:
        call()
    return {p.field: p.reason for p in caught.value.problems}


# --- what is kept ---------------------------------------------------------------------------


def test_a_sale_is_kept_with_the_house_and_the_price_it_was_given(
    feedback_store, model, good_house
):
    assert not feedback_store.exists()  # created on first use
    prediction = homevalue.predict_one(good_house, model=model)
    sale = feedback.check_sale("$182,000", 2009, 6, card=model.card)
    receipt = feedback.record(prediction, sale, source="page", client="page:abc", now=NOON)
    [row] = rows(feedback_store)
    assert row["id"] == receipt.id and row["created_at"] == "2026-11-30T12:00:00.000000Z"
    assert (row["source"], row["client"], row["kind"]) == ("page", "page:abc", "sale")
    assert row["model_version"] == model.version == receipt.model_version
    assert json.loads(row["house"]) == json.loads(json.dumps(prediction.inputs, default=float))
    assert (row["predicted_price"], row["predicted_low"], row["predicted_high"]) == (
        prediction.price,
        prediction.low,
        prediction.high,
    )
    assert (row["sale_price"], row["sale_year"], row["sale_month"]) == (182_000, 2009, 6)
    assert row["reason"] is None and row["comment"] is None
    with sqlite3.connect(feedback_store) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_looks_wrong_is_kept_with_its_reason_and_comment(feedback_store):
    report = feedback.check_looks_wrong("The price is too LOW", "  new roof\r\nand kitchen  ")
    assert report == LooksWrong("too_low", "new roof\nand kitchen")  # label accepted, any case
    feedback.record(priced(), report, source="api", client="api:x", now=NOON)
    [row] = rows(feedback_store)
    assert (row["kind"], row["reason"], row["comment"]) == (
        "looks_wrong",
        "too_low",
        "new roof\nand kitchen",
    )
    assert row["sale_price"] is None


def test_the_default_store_is_beside_the_batch_history(monkeypatch, tmp_path):
    monkeypatch.delenv("HOMEVALUE_FEEDBACK_DB")
    monkeypatch.setenv("HOMEVALUE_BATCH_INBOX", str(tmp_path / "batch" / "inbox"))
    assert config.feedback_db() == tmp_path / "batch" / "feedback.sqlite"


# --- refusals -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "price",
    [
        "abc",
        "",
        "  ",
        None,
        True,
        [182000],
        {"price": 1},
        "182k",
        "1e5",
        "NaN",
        float("nan"),
        float("inf"),
        "$ 182 000 dollars",
        "9" * 400,
        10**400,
    ],
)
def test_a_price_that_is_not_a_number_is_refused(model, price):
    found = problems_of(lambda: feedback.check_sale(price, card=model.card))
    assert list(found) == ["sale.price"]
    assert "number of dollars" in found["sale.price"] or "required" in found["sale.price"]


def test_absurd_prices_are_refused_by_bounds_from_the_card(model):
    low, high = model.card["data"]["price_range"]
    factor = config.FEEDBACK_PRICE_FACTOR
    assert feedback.price_bounds(model.card) == (low / factor, high * factor)
    for absurd in (low / factor - 1, high * factor + 1, 0, -182_000, 182):
        reason = problems_of(lambda p=absurd: feedback.check_sale(p, card=model.card))
        assert "not a believable sale price" in reason["sale.price"]
        assert f"${low / factor:,.0f} and ${high * factor:,.0f}" in reason["sale.price"]
    for fine in (low / factor, high * factor, "182,000", "$182,000.50", 182000.0):
        assert feedback.check_sale(fine, card=model.card).price > 0


def test_sale_year_and_month_are_checked(model):
    first = model.card["data"]["sale_years"][0]
    today = datetime(2026, 11, 30, tzinfo=UTC)
    check = lambda y, m: feedback.check_sale(182000, y, m, card=model.card, today=today)  # noqa: E731
    assert check(2009, 6) == Sale(182000, 2009, 6)
    assert check("2026", "11") == Sale(182000, 2026, 11)
    assert check(None, "") == Sale(182000)
    assert "from 2006" in problems_of(lambda: check(first - 1, None))["sale.year"]
    assert "to 2026" in problems_of(lambda: check(2027, None))["sale.year"]
    assert "1 to 12" in problems_of(lambda: check(2009, 13))["sale.month"]
    assert "year" in problems_of(lambda: check(None, 5))["sale.month"]
    assert "future" in problems_of(lambda: check(2026, 12))["sale.month"]
    assert set(problems_of(lambda: check("soon", True))) == {"sale.year", "sale.month"}
    # a refused year with a good month: the year named, no crash (schemathesis found it)
    assert set(problems_of(lambda: check(False, 1))) == {"sale.year"}
    assert set(problems_of(lambda: check("soon", 1))) == {"sale.year"}


def test_every_problem_of_a_sale_is_named_at_once(model):
    found = problems_of(lambda: feedback.check_sale("abc", 1900, 13, card=model.card))
    assert set(found) == {"sale.price", "sale.year", "sale.month"}


@pytest.mark.parametrize(
    ("comment", "why"),
    [
        ("x" * (config.FEEDBACK_COMMENT_MAX_CHARS + 1), "characters long: at most"),
        ("bell\x07", "U+0007"),
        ("\x1b[31mred", "U+001B"),
        ("nul\x00", "U+0000"),
        ("abc\u202egnp.exe", "U+202E"),
        ("lone \ud800", "U+D800"),
        (42, "must be text"),
    ],
)
def test_comments_too_long_or_with_control_characters_are_refused(comment, why):
    found = problems_of(lambda: feedback.check_looks_wrong("too_high", comment))
    assert why in found["looks_wrong.comment"]


def test_reasons_are_a_fixed_set_and_other_needs_a_comment():
    assert (
        "must be one of too_high"
        in problems_of(lambda: feedback.check_looks_wrong("it's bad"))["looks_wrong.reason"]
    )
    assert (
        "required"
        in problems_of(lambda: feedback.check_looks_wrong("other", " "))["looks_wrong.comment"]
    )
    assert feedback.check_looks_wrong("other", "cracked foundation").reason == "other"
    longest = "é" * config.FEEDBACK_COMMENT_MAX_CHARS + "\n"
    assert feedback.check_looks_wrong("too_high", longest).comment == longest.strip()


@pytest.mark.parametrize(
    ("payload", "fields"),
    [
        ([1, 2], {"body"}),
        ({"sale": {"price": 182000}}, {"house"}),
        ({"house": {}}, {"body"}),
        ({"house": {}, "sale": {"price": 182000}, "looks_wrong": {"reason": "too_low"}}, {"body"}),
        ({"house": {}, "sale": 182000}, {"sale"}),
        ({"house": {}, "sale": {"price": 182000, "when": "2009"}}, {"sale.when"}),
        ({"house": {}, "sale": {"price": "abc", "when": 1}}, {"sale.when", "sale.price"}),
        (
            {"house": {}, "looks_wrong": {"reason": "nope"}, "extra": 1},
            {"extra", "looks_wrong.reason"},
        ),
    ],
)
def test_a_request_of_the_wrong_shape_is_refused_part_by_part(model, payload, fields):
    _house, report, problems = feedback.read_request(payload, model.card)
    assert report is None
    assert {p.field for p in problems} == fields


# --- floods ---------------------------------------------------------------------------------


def test_one_page_may_send_so_many_reports_an_hour(feedback_store):
    sale = Sale(182_000)
    page_a, page_b = (
        {"source": "page", "client": c, "limits": LIMITS} for c in ("page:a", "page:b")
    )
    for minute in range(3):
        feedback.record(priced(), sale, **page_a, now=NOON + timedelta(minutes=minute))
    later = NOON + timedelta(minutes=10)
    with pytest.raises(FeedbackLimitError, match="this page has sent 3 reports") as caught:
        feedback.record(priced(), sale, **page_a, now=later)
    assert caught.value.retry_after == 50 * 60  # when the first of the three is an hour old
    assert len(rows(feedback_store)) == 3  # nothing written
    # Another page is another sender; and the first page may report again an hour on.
    feedback.record(priced(), sale, **page_b, now=later)
    feedback.record(priced(), sale, **page_a, now=NOON + timedelta(hours=1, seconds=1))
    assert len(rows(feedback_store)) == 5


def test_a_sender_that_counts_its_own_reports_is_refused_before_the_store(feedback_store):
    sent = [feedback.stamp(NOON - timedelta(minutes=m)) for m in (70, 40, 20, 5)]
    feedback.check_recent(sent, 4, "page", now=NOON)  # one is over an hour old
    with pytest.raises(FeedbackLimitError, match="this page has sent 3") as caught:
        feedback.check_recent(sent, 3, "page", now=NOON)
    assert caught.value.retry_after == 20 * 60  # when the one 40 minutes old turns an hour
    assert not feedback_store.exists()


def test_an_api_client_has_its_own_hourly_limit(feedback_store):
    for _ in range(LIMITS.per_api_client_per_hour):
        feedback.record(
            priced(), Sale(182_000), source="api", client="api:k", limits=LIMITS, now=NOON
        )
    with pytest.raises(FeedbackLimitError, match="this API client"):
        feedback.record(
            priced(), Sale(182_000), source="api", client="api:k", limits=LIMITS, now=NOON
        )


def test_the_store_takes_so_many_reports_a_day_from_everyone(feedback_store):
    limits = config.FeedbackLimits(3, 3, max_rows_per_day=4, busy_seconds=5.0)
    for n in range(4):
        feedback.record(
            priced(), Sale(182_000), source="api", client=f"api:{n}", limits=limits, now=NOON
        )
    with pytest.raises(FeedbackLimitError, match="4 reports today") as caught:
        feedback.record(
            priced(), Sale(182_000), source="page", client="page:new", limits=limits, now=NOON
        )
    assert caught.value.retry_after == 12 * 3600  # until midnight UTC
    tomorrow = NOON + timedelta(hours=12)
    feedback.record(
        priced(), Sale(182_000), source="page", client="page:new", limits=limits, now=tomorrow
    )
    assert len(rows(feedback_store)) == 5


def test_the_limits_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("HOMEVALUE_FEEDBACK_PER_SESSION_PER_HOUR", "2")
    monkeypatch.setenv("HOMEVALUE_FEEDBACK_MAX_ROWS_PER_DAY", "7")
    limits = config.feedback_limits()
    assert (limits.per_session_per_hour, limits.max_rows_per_day) == (2, 7)
    assert limits.per_api_client_per_hour == config.FEEDBACK_PER_API_CLIENT_PER_HOUR


# --- several processes at once --------------------------------------------------------------


def _write_many(path: str, sender: str, count: int, queue) -> None:
    limits = config.FeedbackLimits(1000, 1000, max_rows_per_day=50, busy_seconds=30.0)
    kept = refused = 0
    for n in range(count):
        try:
            feedback.record(
                priced(price=100_000 + n),
                Sale(150_000),
                source="api",
                client=sender,
                path=path,
                limits=limits,
            )
            kept += 1
        except FeedbackLimitError:
            refused += 1
    queue.put((kept, refused))


def test_writers_in_several_processes_lose_nothing_and_keep_the_daily_cap(feedback_store):
    """4 processes send 20 reports each at once against a cap of 50 a day: exactly 50 are
    kept, the other 30 refused, none lost to a busy store (limits and insert are one
    transaction, one writer at a time)."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    workers = [
        context.Process(target=_write_many, args=(str(feedback_store), f"api:{n}", 20, queue))
        for n in range(4)
    ]
    for worker in workers:
        worker.start()
    results = [queue.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join(timeout=30)
        assert worker.exitcode == 0
    assert sum(kept for kept, _ in results) == 50
    assert sum(refused for _, refused in results) == 30
    assert len(rows(feedback_store)) == 50


def test_readers_are_not_blocked_by_a_writer_and_a_busy_store_fails_closed(feedback_store):
    feedback.record(priced(), Sale(150_000), source="page", client="page:a")
    holder = sqlite3.connect(feedback_store, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process in the middle of its write
    try:
        assert feedback.summary().sales == 1  # WAL: a reader never waits for the writer
        quick = config.FeedbackLimits(10, 10, 100, busy_seconds=0.2)
        with pytest.raises(FeedbackStoreError, match="busy; try again") as caught:
            feedback.record(priced(), Sale(150_000), source="page", client="page:a", limits=quick)
        assert caught.value.retry_after >= 1
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert len(rows(feedback_store)) == 1


def test_a_writer_waits_its_turn_within_the_busy_timeout(feedback_store):
    feedback.record(priced(), Sale(150_000), source="page", client="page:a")
    holder = sqlite3.connect(feedback_store, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    threading.Timer(0.3, lambda: holder.execute("COMMIT")).start()
    feedback.record(priced(), Sale(150_000), source="page", client="page:a")  # waits, then writes
    holder.close()
    assert len(rows(feedback_store)) == 2


def test_a_damaged_store_is_refused_with_a_message_and_a_log_line(feedback_store, caplog):
    feedback_store.write_bytes(b"this is not a database" * 100)
    with caplog.at_level(logging.ERROR, logger="homevalue.feedback"):
        with pytest.raises(FeedbackStoreError, match="cannot be stored right now") as caught:
            feedback.record(priced(), Sale(150_000), source="page", client="page:a")
        with pytest.raises(FeedbackStoreError):
            feedback.summary()
    assert str(feedback_store) not in str(caught.value)  # the sender is not told the path
    assert str(feedback_store) in caplog.text and "move it" in caplog.text


def test_a_store_that_cannot_be_created_fails_closed(tmp_path, caplog):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with (
        caplog.at_level(logging.ERROR, logger="homevalue.feedback"),
        pytest.raises(FeedbackStoreError),
    ):
        feedback.record(
            priced(),
            Sale(150_000),
            source="page",
            client="page:a",
            path=blocker / "feedback.sqlite",
        )
    assert "can be written" in caplog.text


# --- live accuracy --------------------------------------------------------------------------


def test_summary_of_an_absent_store_is_empty_and_creates_nothing(feedback_store):
    found = feedback.summary()
    assert (found.sales, found.median_ape_percent, found.inside_share) == (0, None, None)
    assert found.looks_wrong == dict.fromkeys(feedback.REASONS, 0) and found.empty
    assert not feedback_store.exists()


def test_summary_recomputes_the_measures_from_the_reports(feedback_store):
    reports = [  # (predicted, low, high, sold)
        (150_000, 130_000, 170_000, 160_000),
        (200_000, 180_000, 220_000, 250_000),
        (100_000, 90_000, 110_000, 90_000),
        (300_000, 260_000, 340_000, 310_000),
    ]
    for price, low, high, sold in reports:
        feedback.record(
            priced(price, low, high), Sale(sold), source="api", client="api:a", now=NOON
        )
    for reason in ("too_high", "too_high", "comps_unlike"):
        feedback.record(priced(), LooksWrong(reason), source="page", client="page:b", now=NOON)
    found = feedback.summary(since=NOON - timedelta(minutes=1))
    apes = [abs(price / sold - 1) for price, _, _, sold in reports]
    assert found.sales == 4
    assert found.median_ape_percent == pytest.approx(100 * statistics.median(apes))
    inside = [low <= sold <= high for _, low, high, sold in reports]
    assert found.inside_share == pytest.approx(sum(inside) / len(inside))
    assert found.looks_wrong["too_high"] == 2 and found.looks_wrong["comps_unlike"] == 1
    assert found.looks_wrong_total == 3
    # An odd count takes the middle one.
    feedback.record(priced(100_000), Sale(100_000), source="api", client="api:a", now=NOON)
    assert feedback.summary().median_ape_percent == pytest.approx(
        100 * statistics.median([*apes, 0.0])
    )


def test_summary_since_and_by_model_version(feedback_store):
    now = datetime.now(UTC)
    feedback.record(
        priced(version="old"),
        Sale(150_000),
        source="api",
        client="api:a",
        now=now - timedelta(days=10),
    )
    feedback.record(priced(version="new"), Sale(150_000), source="api", client="api:a", now=now)
    assert feedback.summary().sales == 2
    assert feedback.summary(timedelta(days=7)).sales == 1  # a span back from now
    assert feedback.summary(now - timedelta(days=1)).sales == 1
    naive = (now - timedelta(days=11)).replace(tzinfo=None)  # read as UTC
    assert feedback.summary(naive).sales == 2
    assert feedback.summary(model_version="old").sales == 1
    assert feedback.summary(model_version="none-such").empty
