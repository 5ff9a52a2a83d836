"""Feedback on prices: the actual sale price of a priced house, or "this price looks wrong".

The price page and `POST /v1/feedback` both call `record` with the Prediction the viewer or
client was given, so every report carries the house's inputs, the price and interval it is
about and the model version that gave them: the API re-prices the house it is sent rather
than trust a price from the client. `summary` turns the reported sales into live accuracy
(median absolute % error, share inside the interval) to set beside the holdout's.

The store is one SQLite file (config.feedback_db(), `batch/feedback.sqlite` by default),
created on first use, in WAL mode: readers never wait for the writer, and writers (viewers'
kernels, API workers, each in its own process) take turns through SQLite's own lock, each
waiting at most config.FEEDBACK_BUSY_SECONDS. The flood limits are checked inside the same
write transaction as the insert, so two processes cannot both take the last place. A report
refused for any reason writes nothing.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import re
import sqlite3
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from homevalue import config
from homevalue.errors import (
    FeedbackLimitError,
    FeedbackStoreError,
    Problem,
    ValidationError,
)

if TYPE_CHECKING:
    from homevalue.predict import Prediction

log = logging.getLogger("homevalue.feedback")

# What can look wrong about a price: the page's dropdown shows the labels; the API takes the
# code (or the label, in any case). "other" needs a comment saying what.
REASONS = {
    "too_high": "The price is too high",
    "too_low": "The price is too low",
    "range_too_wide": "The range is too wide to be useful",
    "missing_detail": "Something that matters about this house is not in the form",
    "comps_unlike": "The comparable sales are not like this house",
    "other": "Something else (say what in the comment)",
}
NEEDS_COMMENT = {"other"}
SOURCES = ("page", "api")
KINDS = ("sale", "looks_wrong")
SCHEMA_VERSION = 1
SCHEMA = """
CREATE TABLE IF NOT EXISTS feedback (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created_at TEXT NOT NULL,
    source TEXT NOT NULL CHECK (source IN ('page', 'api')),
    client TEXT NOT NULL,
    model_version TEXT NOT NULL,
    house TEXT NOT NULL,
    predicted_price REAL NOT NULL,
    predicted_low REAL NOT NULL,
    predicted_high REAL NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('sale', 'looks_wrong')),
    sale_price REAL,
    sale_year INTEGER,
    sale_month INTEGER,
    reason TEXT,
    comment TEXT,
    CHECK ((kind = 'sale' AND sale_price > 0 AND reason IS NULL)
        OR (kind = 'looks_wrong' AND reason IS NOT NULL AND sale_price IS NULL))
);
CREATE INDEX IF NOT EXISTS feedback_client_time ON feedback (client, created_at);
CREATE INDEX IF NOT EXISTS feedback_time ON feedback (created_at);
"""
COLUMNS = (
    "created_at",
    "source",
    "client",
    "model_version",
    "house",
    "predicted_price",
    "predicted_low",
    "predicted_high",
    "kind",
    "sale_price",
    "sale_year",
    "sale_month",
    "reason",
    "comment",
)
HOUR = timedelta(hours=1)
# A price as people write it: 182000, 182,000, $182,000, 182000.00 (no "k", no words).
_PRICE_TEXT = re.compile(r"\$?\s*(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?")
_PRICE_TEXT_MAX = 32  # characters; anything longer is not a price
# Invisible characters that reorder the text around them ("Trojan source"): a comment is read
# by people, who must see what was written.
_BIDI = set("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f")
BUSY = "the feedback store is busy; try again in a moment"
UNAVAILABLE = "feedback cannot be stored right now; the problem has been logged for the operator"


# --- a report, checked ----------------------------------------------------------------------


@dataclass(frozen=True)
class Sale:
    """The house sold for `price` dollars (in `year`, `month` when given)."""

    price: float
    year: int | None = None
    month: int | None = None


@dataclass(frozen=True)
class LooksWrong:
    """The viewer or client thinks the price is off, for one of REASONS."""

    reason: str
    comment: str | None = None


Report = Sale | LooksWrong


def price_bounds(card: Mapping) -> tuple[float, float]:
    """The sale prices taken: the training sales' range widened FEEDBACK_PRICE_FACTOR each way."""
    low, high = card["data"]["price_range"]
    factor = config.FEEDBACK_PRICE_FACTOR
    return float(low) / factor, float(high) * factor


def _money(value: float) -> str:
    return f"${value:,.0f}"


def _price_reason(card: Mapping) -> str:
    low, high = price_bounds(card)
    seen_low, seen_high = card["data"]["price_range"]
    return (
        f"is not a believable sale price: it must be between {_money(low)} and "
        f"{_money(high)} (the model's sales ranged {_money(seen_low)} – {_money(seen_high)}); "
        "write the whole amount in dollars, e.g. 182,000"
    )


NOT_A_PRICE = "must be a number of dollars, e.g. 182,000"


def parse_price(value: object) -> float | None:
    """A price from a number or from text as people write it ($182,000); None if neither."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        number = float(value) if abs(value) < 1e300 else math.inf
        return number if math.isfinite(number) else None
    if isinstance(value, str) and len(value) <= _PRICE_TEXT_MAX:
        found = _PRICE_TEXT.fullmatch(value.strip())
        if found:
            return float(found[1].replace(",", "") + (found[2] or ""))
    return None


def _whole(value: object) -> int | None:
    """An integer given as a JSON integer or as digits; None for anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e6:
        return int(value)
    if isinstance(value, str) and value.strip().isdigit() and len(value.strip()) <= 6:
        return int(value.strip())
    return None


def _blank(value: object) -> bool:
    return value is None or isinstance(value, str) and not value.strip()


def _sale(
    price: object, year: object, month: object, card: Mapping, today: datetime
) -> tuple[Sale | None, list[Problem]]:
    problems = []
    number = parse_price(price)
    low, high = price_bounds(card)
    if _blank(price):
        problems.append(Problem("sale.price", price, "is required: what the house sold for"))
    elif number is None:
        problems.append(Problem("sale.price", price, NOT_A_PRICE))
    elif not low <= number <= high:
        problems.append(Problem("sale.price", price, _price_reason(card)))
    first = int(card["data"]["sale_years"][0])
    sold_year = None if _blank(year) else _whole(year)
    if not _blank(year) and (sold_year is None or not first <= sold_year <= today.year):
        reason = f"must be a year from {first} (the model's first sales) to {today.year}"
        problems.append(Problem("sale.year", year, reason))
    sold_month = None if _blank(month) else _whole(month)
    if not _blank(month):
        if sold_month is None or not 1 <= sold_month <= 12:
            problems.append(Problem("sale.month", month, "must be a month from 1 to 12"))
        elif _blank(year):
            problems.append(Problem("sale.month", month, "needs the sale year with it"))
        elif sold_year is not None and (sold_year, sold_month) > (today.year, today.month):
            problems.append(Problem("sale.month", month, "is in the future"))
    if problems:
        return None, problems
    return Sale(round(number, 2), sold_year, sold_month), []


def check_sale(
    price: object,
    year: object = None,
    month: object = None,
    *,
    card: Mapping,
    today: datetime | None = None,
) -> Sale:
    """A reported sale, or a ValidationError naming each bad part (sale.price, sale.year,
    sale.month). A price may be text as people write it ($182,000); it must lie within
    `price_bounds(card)`. Year and month are optional; a month needs its year."""
    sale, problems = _sale(price, year, month, card, today or datetime.now(UTC))
    if problems:
        raise ValidationError(problems)
    return sale


def reason_code(value: object) -> str | None:
    """A reason's code from its code or its label, in any case; None if it is neither."""
    if not isinstance(value, str):
        return None
    wanted = value.strip().casefold()
    for code, label in REASONS.items():
        if wanted in (code, label.casefold()):
            return code
    return None


def comment_problem(comment: str) -> str | None:
    """Why a comment cannot be kept (too long, or a control character), or None."""
    limit = config.FEEDBACK_COMMENT_MAX_CHARS
    if len(comment) > limit:
        return f"is {len(comment):,} characters long: at most {limit} are kept"
    for position, character in enumerate(comment, 1):
        if character == "\n":
            continue
        if unicodedata.category(character) in ("Cc", "Cs") or character in _BIDI:
            return (
                f"holds a control character (U+{ord(character):04X}) at character "
                f"{position}: write plain text"
            )
    return None


def _looks_wrong(reason: object, comment: object) -> tuple[LooksWrong | None, list[Problem]]:
    problems = []
    code = reason_code(reason)
    if code is None:
        choices = ", ".join(REASONS)
        problems.append(Problem("looks_wrong.reason", reason, f"must be one of {choices}"))
    text = None
    if not _blank(comment):
        if not isinstance(comment, str):
            problems.append(Problem("looks_wrong.comment", comment, "must be text"))
        else:
            text = comment.replace("\r\n", "\n").strip()
            if why := comment_problem(text):
                problems.append(Problem("looks_wrong.comment", comment, why))
    if code in NEEDS_COMMENT and text is None and not problems:
        problems.append(Problem("looks_wrong.comment", comment, "is required: say what is wrong"))
    if problems:
        return None, problems
    return LooksWrong(code, text), []


def check_looks_wrong(reason: object, comment: object = None) -> LooksWrong:
    """A "looks wrong" report, or a ValidationError naming each bad part
    (looks_wrong.reason, looks_wrong.comment)."""
    report, problems = _looks_wrong(reason, comment)
    if problems:
        raise ValidationError(problems)
    return report


REQUEST_KEYS = ("house", "sale", "looks_wrong")
SALE_KEYS = ("price", "year", "month")
LOOKS_WRONG_KEYS = ("reason", "comment")
REQUEST_SHAPE = (
    'must be {"house": {...}, "sale": {"price": ...}} or '
    '{"house": {...}, "looks_wrong": {"reason": ...}}'
)


def _part(payload: Mapping, name: str, keys: tuple[str, ...]) -> tuple[dict, list[Problem]]:
    """payload[name]'s values for `keys` (None where absent), and the problems with its shape:
    not an object (then no values), or keys it should not have."""
    part = payload[name]
    if not isinstance(part, Mapping):
        return {}, [Problem(name, part, f"must be an object with {', '.join(keys)}")]
    extra = [
        Problem(f"{name}.{key}", part[key], f"is not one of {', '.join(keys)}")
        for key in part
        if key not in keys
    ]
    return {key: part.get(key) for key in keys}, extra


def read_request(
    payload: object, card: Mapping, today: datetime | None = None
) -> tuple[object, Report | None, list[Problem]]:
    """(the house as sent, the report, problems) from a feedback request's JSON.

    The house is returned as sent, for the caller to price (and to refuse, with its own
    problems); the report is None whenever a problem was found.
    """
    today = today or datetime.now(UTC)
    if not isinstance(payload, Mapping):
        return None, None, [Problem("body", payload, REQUEST_SHAPE)]
    problems = [
        Problem(key, payload[key], f"is not one of {', '.join(REQUEST_KEYS)}")
        for key in payload
        if key not in REQUEST_KEYS
    ]
    if "house" not in payload:
        problems.append(Problem("house", None, "is required: the house as priced"))
    given = [name for name in ("sale", "looks_wrong") if name in payload]
    if len(given) != 1:
        reason = "holds both sale and looks_wrong: send one" if given else REQUEST_SHAPE
        return payload.get("house"), None, [*problems, Problem("body", None, reason)]
    if given == ["sale"]:
        values, found = _part(payload, "sale", SALE_KEYS)
        report, more = _sale(*map(values.get, SALE_KEYS), card, today) if values else (None, [])
    else:
        values, found = _part(payload, "looks_wrong", LOOKS_WRONG_KEYS)
        report, more = _looks_wrong(*map(values.get, LOOKS_WRONG_KEYS)) if values else (None, [])
    problems += found + more
    return payload.get("house"), None if problems else report, problems


# --- the store ------------------------------------------------------------------------------


def stamp(moment: datetime) -> str:
    """A time as stored: UTC, ISO 8601, microseconds, so text order is time order."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse_stamp(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def is_damaged(error: sqlite3.Error) -> bool:
    code = getattr(error, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)
    return "malformed" in str(error) or "not a database" in str(error)


def is_busy(error: sqlite3.Error) -> bool:
    code = getattr(error, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    return "locked" in str(error) or "busy" in str(error)


def _store_error(error: Exception, path: Path, doing: str) -> FeedbackStoreError:
    """What the sender is told (never the path), with the operator's details in the log."""
    if isinstance(error, sqlite3.Error) and is_busy(error):
        log.warning("feedback store %s busy while %s: %s", path, doing, error)
        return FeedbackStoreError(BUSY, retry_after=max(1, math.ceil(config.FEEDBACK_BUSY_SECONDS)))
    advice = (
        "it is damaged: move it (and its -wal and -shm files) aside; the next report starts a "
        "new one"
        if isinstance(error, sqlite3.Error) and is_damaged(error)
        else "check that its folder exists and can be written"
    )
    log.error("feedback store %s failed while %s (%s): %s", path, doing, error, advice)
    return FeedbackStoreError(UNAVAILABLE)


def connect(path: Path, busy_seconds: float) -> sqlite3.Connection:
    """Open (or create) the store in WAL mode; sqlite3/OS errors pass through."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, timeout=busy_seconds, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise sqlite3.DatabaseError(
                f"the store was written by a newer homevalue (schema {version}, this one "
                f"knows {SCHEMA_VERSION})"
            )
        if version < SCHEMA_VERSION:
            db.executescript(SCHEMA + f"PRAGMA user_version = {SCHEMA_VERSION};")
    except BaseException:
        db.close()
        raise
    return db


@dataclass(frozen=True)
class Receipt:
    """A report kept: its id and time, and the price it was kept against."""

    id: int
    recorded_at: str
    kind: str
    model_version: str
    price: float
    low: float
    high: float
    dollars_of: str = ""

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "recorded_at": self.recorded_at,
            "kind": self.kind,
            "model_version": self.model_version,
            "price": self.price,
            "low": self.low,
            "high": self.high,
            "dollars_of": self.dollars_of,
        }


def _plain(value: object) -> object:
    """numpy scalars (a validated house may hold them) as the JSON numbers they are."""
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON")


def _row(prediction: Prediction, report: Report, source: str, client: str, now: datetime):
    sale = report if isinstance(report, Sale) else None
    wrong = report if isinstance(report, LooksWrong) else None
    return (
        stamp(now),
        source,
        client,
        prediction.model_version,
        json.dumps(prediction.inputs, sort_keys=True, default=_plain),
        float(prediction.price),
        float(prediction.low),
        float(prediction.high),
        "sale" if sale else "looks_wrong",
        sale.price if sale else None,
        sale.year if sale else None,
        sale.month if sale else None,
        wrong.reason if wrong else None,
        wrong.comment if wrong else None,
    )


def _wait_text(seconds: int) -> str:
    if seconds < 90:
        return f"{seconds} seconds"
    if seconds < 90 * 60:
        return f"{round(seconds / 60)} minutes"
    return f"{seconds / 3600:.1f} hours"


def _hourly_refusal(sent: int, oldest: str | None, source: str, now: datetime):
    frees = _parse_stamp(oldest) + HOUR if oldest else now + HOUR  # a limit of 0: none
    wait = max(1, math.ceil((frees - now).total_seconds()))
    who = "this page" if source == "page" else "this API client (its key, or its address)"
    return FeedbackLimitError(
        f"{who} has sent {sent} reports in the last hour, the most taken from one sender; "
        f"try again in {_wait_text(wait)}",
        retry_after=wait,
    )


def check_recent(
    recorded: list[str], per_hour: int, source: str, now: datetime | None = None
) -> None:
    """Refuse, before the store is opened, a sender that knows it has sent `per_hour`
    reports in the last hour (the `recorded_at` of its receipts): a page clicked in a loop
    then costs its own kernel a comparison, not the store's write lock. `record` checks
    the same in the store, which stays the authority."""
    now = now or datetime.now(UTC)
    recent = sorted(at for at in recorded if at > stamp(now - HOUR))
    if len(recent) >= per_hour:
        raise _hourly_refusal(len(recent), recent[0] if recent else None, source, now)


def _check_flood(
    db: sqlite3.Connection,
    client: str,
    per_hour: int,
    per_day: int,
    source: str,
    now: datetime,
) -> None:
    """Refuse a report over the sender's hourly limit or the store's daily cap (inside the
    write transaction, so the count cannot change before the insert)."""
    sent, oldest = db.execute(
        "SELECT COUNT(*), MIN(created_at) FROM feedback WHERE client = ? AND created_at > ?",
        (client, stamp(now - HOUR)),
    ).fetchone()
    if sent >= per_hour:
        raise _hourly_refusal(sent, oldest, source, now)
    midnight = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    (today,) = db.execute(
        "SELECT COUNT(*) FROM feedback WHERE created_at >= ?", (stamp(midnight),)
    ).fetchone()
    if today >= per_day:
        wait = max(1, math.ceil((midnight + timedelta(days=1) - now).total_seconds()))
        raise FeedbackLimitError(
            f"the feedback store has taken {today:,} reports today, the most it takes in a day "
            f"(UTC); try again after midnight UTC, in {_wait_text(wait)}",
            retry_after=wait,
        )


def record(
    prediction: Prediction,
    report: Report,
    *,
    source: str,
    client: str,
    path: Path | None = None,
    limits: config.FeedbackLimits | None = None,
    now: datetime | None = None,
) -> Receipt:
    """Keep one report about `prediction` (the price the sender was shown); its Receipt.

    `client` names the sender for the flood limits: a page session's id, an API key's or an
    address's digest (never the key itself). Raises FeedbackLimitError over a limit and
    FeedbackStoreError when the store cannot be written; nothing is written then.
    """
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}, not {source!r}")
    if not client:
        raise ValueError("client must name the sender")
    path = Path(path or config.feedback_db())
    limits = limits or config.feedback_limits()
    now = now or datetime.now(UTC)
    per_hour = limits.per_session_per_hour if source == "page" else limits.per_api_client_per_hour
    row = _row(prediction, report, source, client, now)
    try:
        with contextlib.closing(connect(path, limits.busy_seconds)) as db:
            db.execute("BEGIN IMMEDIATE")  # the write lock first: limits and insert are one
            try:
                _check_flood(db, client, per_hour, limits.max_rows_per_day, source, now)
                cursor = db.execute(
                    f"INSERT INTO feedback ({', '.join(COLUMNS)}) "
                    f"VALUES ({', '.join('?' * len(COLUMNS))})",
                    row,
                )
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
    except (sqlite3.Error, OSError) as error:
        raise _store_error(error, path, "recording a report") from error
    return Receipt(
        cursor.lastrowid,
        row[0],
        row[8],
        prediction.model_version,
        prediction.price,
        prediction.low,
        prediction.high,
        prediction.dollars_of,
    )


# --- live accuracy --------------------------------------------------------------------------


@dataclass(frozen=True)
class FeedbackSummary:
    """Accuracy on reported sales, and the "looks wrong" reports by reason.

    `median_ape_percent`: median of |predicted / sale price - 1| in percent (the holdout's
    `median_ape_percent` is the same measure); `inside_share`: share of the reported sales
    inside the interval they were given; both None without a reported sale. `looks_wrong`
    holds every reason of REASONS, zero included, in that order.
    """

    sales: int = 0
    median_ape_percent: float | None = None
    inside_share: float | None = None
    looks_wrong: dict[str, int] = field(default_factory=lambda: dict.fromkeys(REASONS, 0))
    since: datetime | None = None
    model_version: str | None = None

    @property
    def looks_wrong_total(self) -> int:
        return sum(self.looks_wrong.values())

    @property
    def empty(self) -> bool:
        return self.sales == 0 and self.looks_wrong_total == 0


def _since(since: datetime | timedelta | None, now: datetime) -> datetime | None:
    if since is None or isinstance(since, datetime):
        return since if since is None or since.tzinfo else since.replace(tzinfo=UTC)
    return now - since


def summary(
    since: datetime | timedelta | None = None,
    *,
    path: Path | None = None,
    model_version: str | None = None,
) -> FeedbackSummary:
    """Live accuracy from the reports since `since` (a time, or a span back from now; None:
    all), of one model version or all. An absent store is an empty summary; one that cannot
    be read raises FeedbackStoreError (the details go to the log)."""
    path = Path(path or config.feedback_db())
    start = _since(since, datetime.now(UTC))
    empty = FeedbackSummary(since=start, model_version=model_version)
    if not path.exists():
        return empty
    where, params = ["1 = 1"], []
    if start is not None:
        where, params = [*where, "created_at >= ?"], [*params, stamp(start)]
    if model_version is not None:
        where, params = [*where, "model_version = ?"], [*params, model_version]
    clause = " AND ".join(where)
    uri = f"{path.resolve().as_uri()}?mode=ro"
    try:
        with contextlib.closing(
            sqlite3.connect(uri, uri=True, timeout=config.feedback_limits().busy_seconds)
        ) as db:
            if not db.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'feedback'"
            ).fetchone():
                return empty
            return _summarise(db, clause, params, start, model_version)
    except sqlite3.Error as error:
        raise _store_error(error, path, "reading the summary") from error


def _summarise(db, clause: str, params: list, start, model_version) -> FeedbackSummary:
    sales_clause = f"kind = 'sale' AND {clause}"
    count, inside = db.execute(
        "SELECT COUNT(*), SUM(sale_price BETWEEN predicted_low AND predicted_high) "
        f"FROM feedback WHERE {sales_clause}",
        params,
    ).fetchone()
    median = None
    if count:
        middle = [
            row[0]
            for row in db.execute(
                "SELECT ABS(predicted_price / sale_price - 1) AS ape FROM feedback "
                f"WHERE {sales_clause} ORDER BY ape LIMIT ? OFFSET ?",
                [*params, 2 - count % 2, (count - 1) // 2],
            )
        ]
        median = 100 * sum(middle) / len(middle)
    reasons = dict.fromkeys(REASONS, 0)
    for reason, n in db.execute(
        f"SELECT reason, COUNT(*) FROM feedback WHERE kind = 'looks_wrong' AND {clause} "
        "GROUP BY reason",
        params,
    ):
        reasons[reason] = n
    return FeedbackSummary(
        sales=count,
        median_ape_percent=median,
        inside_share=inside / count if count else None,
        looks_wrong=reasons,
        since=start,
        model_version=model_version,
    )
