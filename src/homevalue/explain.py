"""Why this price: each feature's share of a house's price, exact in log price and in dollars.

LightGBM computes exact TreeSHAP contributions itself (`NativeBooster.contributions`, its C
API's contribution prediction): for each house, one number per feature that, added to the
expected value of the model (the log price of a typical house, the *base*), gives the
model's log price exactly. Log contributions add up; people read dollars, so
`dollar_contributions` turns them into whole dollars that add up exactly to the price shown.
`homevalue.predict` attaches them to a price (`predict_one(..., explain=True)`,
`score_frame(..., explain=True)`); the page, the API and the batch job all show these.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from homevalue.model import Model
from homevalue.schema import Feature, fmt_for

TOP_DRIVERS = 6  # what the page's waterfall and the summaries show; the rest are grouped
BASE_LABEL = "Typical house"
OTHER_LABEL = "Other features"


def dollar_contributions(
    logs: np.ndarray, base_log: float, price: np.ndarray, clamped: np.ndarray
) -> tuple[np.ndarray, int]:
    """Whole dollars per feature (rows x features) and the base price, summing exactly to
    `price` (each row: base price + its dollars == its price, to the dollar).

    Each feature gets its log contribution times the logarithmic mean of the base price B
    and the house's price R, L(B, R) = (R − B) / (ln R − ln B), the log-mean Divisia index
    (LMDI) used to split a multiplicative change into additive parts. It is exact (the
    parts add up to R − B because the logs add up to ln R − ln B), keeps each
    contribution's sign, does not depend on any order of the features, and is smooth: a
    house near the typical one (logs summing to about 0) gets B times each log, where
    apportioning R − B in proportion to the logs would divide by almost zero. A clamped
    price (beyond the card's price bounds) is explained as shown: every contribution is
    scaled by the same factor, so they add up to the bound.

    Rounding each to whole dollars leaves a residual of a few dollars (the price and the
    base are rounded too, at most half the number of features plus one); it goes, a dollar
    each, to the largest contributions, so the waterfall adds up to the price shown exactly
    and no contribution moves by more than a dollar.
    """
    logs = np.asarray(logs, dtype=np.float64)
    price = np.asarray(price, dtype=np.float64)
    base = float(np.exp(base_log))
    total = logs.sum(axis=1)
    # Clamped rows are explained up to the bound: the log change shown is ln P - base.
    shown = np.where(clamped, np.log(price) - base_log, total)
    small = np.abs(shown) < 1e-9
    growth = np.where(small, 1.0 + shown / 2, np.expm1(shown) / np.where(small, 1.0, shown))
    scale = np.where(clamped, shown / np.where(total == 0, 1.0, total), 1.0)
    dollars = logs * (base * growth * scale)[:, None]
    base_price = round(base)
    rounded = np.rint(dollars).astype(np.int64)
    residual = np.rint(price).astype(np.int64) - base_price - rounded.sum(axis=1)
    # The i-th largest |contribution| of each row gets a dollar while i < |residual|.
    order = np.argsort(-np.abs(dollars), axis=1, kind="stable")
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(logs.shape[1])[None, :], axis=1)
    rounded += np.sign(residual)[:, None] * (rank < np.abs(residual)[:, None])
    return rounded, base_price


def category_text(feature: Feature, value: object) -> str:
    """A category value as the form shows it: the card's label (OneFam -> Single-family
    detached)."""
    return feature.label_of(str(value))


def value_text(feature: Feature, value: object) -> str:
    """The house's value as people write it: "1,472 sq ft", "1976", "North Ames"."""
    if feature.is_category:
        return category_text(feature, value)
    number = fmt_for(feature, float(value))
    if not feature.unit:
        return number
    return f"{number}{feature.unit}" if feature.unit == "°" else f"{number} {feature.unit}"


def money(dollars: float) -> str:
    """$157,022 (as `ui.render.money` writes a price)."""
    return f"${dollars:,.0f}"


def signed_money(dollars: float) -> str:
    """+$12,300, −$4,100 (a true minus sign), $0."""
    if dollars == 0:
        return "$0"
    return f"{'+' if dollars > 0 else '−'}${abs(dollars):,.0f}"


@dataclass(frozen=True)
class Contribution:
    """One feature's share of one house's price: in log price and in whole dollars."""

    feature: str
    label: str
    value: float | int | str
    value_text: str
    log: float
    dollars: int

    @property
    def text(self) -> str:
        """ "Living area 1,472 sq ft: +$12,300" """
        return f"{self.label} {self.value_text}: {signed_money(self.dollars)}"

    def to_dict(self) -> dict:
        return {
            "feature": self.feature,
            "label": self.label,
            "value": self.value,
            "value_text": self.value_text,
            "log": self.log,
            "dollars": self.dollars,
            "text": self.text,
        }


@dataclass(frozen=True)
class Step:
    """One bar of the waterfall: from `start` to `end` dollars (a total starts at 0)."""

    label: str
    start: int
    end: int
    kind: str  # "total" (base, price) or "change"

    @property
    def dollars(self) -> int:
        return self.end - self.start

    @property
    def text(self) -> str:
        """ "Typical house: $172,221", "Living area 2,600 sq ft: +$31,606" """
        return f"{self.label}: {money(self.end)}" if self.kind == "total" else self.label


@dataclass(frozen=True)
class Explanation:
    """Why a house's price is what it is: the typical house's price (the base), then every
    feature's contribution; base_price + sum of dollars == price, to the dollar."""

    base_log: float
    base_price: int
    price: int
    contributions: tuple[Contribution, ...]  # in the schema's order

    def ranked(self) -> list[Contribution]:
        """Largest effect first (in dollars, then in log, then the schema's order)."""
        return sorted(self.contributions, key=lambda c: (-abs(c.dollars), -abs(c.log)))

    def steps(self, top: int = TOP_DRIVERS) -> list[Step]:
        """The waterfall: the base, the `top` largest drivers, the rest as one, the price."""
        ranked = self.ranked()
        drivers, rest = ranked[:top], ranked[top:]
        steps = [Step(BASE_LABEL, 0, self.base_price, "total")]
        level = self.base_price
        for c in drivers:
            steps.append(Step(c.text, level, level + c.dollars, "change"))
            level += c.dollars
        if rest:
            other = sum(c.dollars for c in rest)
            label = f"{OTHER_LABEL} ({len(rest)}): {signed_money(other)}"
            steps.append(Step(label, level, level + other, "change"))
            level += other
        steps.append(Step("Price", 0, level, "total"))
        return steps

    def summary(self, top: int = TOP_DRIVERS) -> str:
        """The waterfall in one sentence, for screen readers and the notebook's text."""
        return "; ".join(step.text for step in self.steps(top))

    def to_dict(self) -> dict:
        return {
            "base_price": self.base_price,
            "base_log": self.base_log,
            "price": self.price,
            "contributions": [c.to_dict() for c in self.ranked()],
        }


BASE_COLUMN = "base_price"
COLUMN_PREFIX = "contribution_"


def columns(schema) -> list[str]:
    """The batch output's explanation columns: the base price, then one per feature (whole
    dollars); a scored row's base_price plus its contributions is its predicted_price."""
    return [BASE_COLUMN, *(COLUMN_PREFIX + name for name in schema.names)]


def explain_rows(
    model: Model, matrix: np.ndarray, price: np.ndarray, clamped: np.ndarray, *, threads: int = 1
) -> tuple[np.ndarray, float, np.ndarray, int]:
    """(log contributions rows x features, base log, whole dollars, base price) for encoded
    rows whose shown prices (and whether they were clamped) `homevalue.predict` gave."""
    values = model.booster.contributions(matrix, threads=threads)
    logs = values[:, :-1]
    base_log = float(values[0, -1]) if len(values) else float("nan")
    if not len(values):
        return logs, base_log, np.empty(logs.shape, dtype=np.int64), 0
    dollars, base_price = dollar_contributions(logs, base_log, price, clamped)
    return logs, base_log, dollars, base_price


def _plain(feature: Feature, value: object) -> float | int | str:
    """The value as JSON shows it best: 1975, not 1975.0, for a whole-number field."""
    if feature.kind == "integer":
        return int(value)
    return value if isinstance(value, str) else float(value)


def explanation_of(
    model: Model,
    inputs: Mapping,
    logs: Sequence[float],
    base_log: float,
    dollars: Sequence[int],
    base_price: int,
    price: float,
) -> Explanation:
    """One house's row of `explain_rows` with each feature's label and value."""
    contributions = tuple(
        Contribution(
            feature.name,
            feature.label,
            _plain(feature, inputs[feature.name]),
            value_text(feature, inputs[feature.name]),
            float(log),
            int(dollar),
        )
        for feature, log, dollar in zip(model.schema.features, logs, dollars, strict=True)
    )
    return Explanation(float(base_log), int(base_price), int(price), contributions)
