"""Drift: how far a batch run's inputs and prices are from what the model was trained on.

Training stores, in the model card, a histogram of every input over the training sales and
of the prices the model gives them (`training_distribution`: fixed bin edges and counts).
Each batch run bins its valid rows into the same bins, chunk by chunk, as a `Profile`:
plain counts, so the profiles of a run's parts (or of a week's runs) add up to the whole.
The population stability index (PSI) compares a profile with training, bin by bin:

    PSI = sum over bins of (run share - training share) * ln(run share / training share)

with an empty bin's share taken as `config.PSI_EPSILON`. Thresholds and the fewest rows
worth judging are in config.py, with their sources.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

from homevalue import config
from homevalue.schema import short_money

PRICE = "predicted_price"  # the profile's name for the predicted prices (the output column)
OTHER = "other/missing"  # a category's extra bin: a level training did not have, or none


# --- the training distribution (written into the card at `make model`) ----------------------


def numeric_edges(values: np.ndarray, bins: int = config.DRIFT_BINS) -> list[float]:
    """Inner bin edges for a numeric column: one bin per value when it has at most `bins`
    distinct values (counts, small integers), else the deciles (for `bins` = 10), fewer
    where values tie across a decile.

    Edges at or below the smallest value are dropped, so no bin is empty in training (a
    column where 10% of sales share the lowest value would otherwise start with one).
    """
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    distinct = np.unique(values)
    if len(distinct) <= bins:
        return [float(v) for v in distinct[1:]]
    # "lower": each edge is a training value, so every bin from it up holds at least one sale.
    quantiles = np.quantile(values, np.arange(1, bins) / bins, method="lower")
    return [float(e) for e in np.unique(quantiles) if e > distinct[0]]


def bin_numbers(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts per bin: bin 0 is below edges[0], bin i from edges[i-1] up to edges[i], the
    last from edges[-1] up. Open at both ends, so any number has a bin; NaN is not counted."""
    values = np.asarray(values, dtype=np.float64)
    missing = np.isnan(values)
    if missing.any():  # never for validated rows: no copy then
        values = values[~missing]
    return np.bincount(np.searchsorted(edges, values, side="right"), minlength=len(edges) + 1)


def bin_codes(codes: np.ndarray, levels: int) -> np.ndarray:
    """Counts per level for category codes 0..levels-1, then one "other/missing" bin for
    anything else (NaN: a level the encoder does not know, or no value)."""
    codes = np.asarray(codes, dtype=np.float64)
    known = (codes >= 0) & (codes < levels)
    counts = np.bincount(codes[known].astype(np.int64), minlength=levels)
    return np.append(counts, np.count_nonzero(~known))


def training_distribution(
    inputs: Mapping[str, np.ndarray],
    categories: Mapping[str, Iterable[str]],
    prices: np.ndarray,
    bins: int = config.DRIFT_BINS,
) -> dict:
    """The card's `training_distribution`: for each input (in `inputs`' order) and for the
    predicted prices, the bins and the training counts in them.

    `inputs` holds each feature's training values (category columns as their level names);
    `categories` the levels of each category feature, in the encoder's order.
    """
    features = {}
    for name, values in inputs.items():
        if name in categories:
            levels = [str(level) for level in categories[name]]
            index = {level: code for code, level in enumerate(levels)}
            codes = np.array([index.get(str(v), np.nan) for v in values], dtype=np.float64)
            counts = bin_codes(codes, len(levels))
            features[name] = {"kind": "category", "levels": levels, "counts": counts.tolist()}
        else:
            edges = numeric_edges(values, bins)
            counts = bin_numbers(values, np.array(edges))
            features[name] = {"kind": "numeric", "edges": edges, "counts": counts.tolist()}
    price_edges = numeric_edges(prices, bins)
    return {
        "method": f"training sales binned by their deciles ({bins} bins; a feature with at "
        f"most {bins} distinct values gets one bin per value); categories by level, plus "
        f"'{OTHER}'; prices are the model's own predictions for the training sales, in dollars",
        "rows": int(len(prices)),
        "features": features,
        PRICE: {
            "kind": "numeric",
            "unit": "USD",
            "edges": price_edges,
            "counts": bin_numbers(prices, np.array(price_edges)).tolist(),
        },
    }


# --- the reference, as serving reads it from the card ---------------------------------------


@dataclass(frozen=True)
class Histogram:
    """One feature's bins (edges for a number, levels for a category) and training counts."""

    name: str
    kind: str  # "numeric" or "category"
    counts: np.ndarray
    edges: np.ndarray = field(default_factory=lambda: np.empty(0))
    levels: tuple[str, ...] = ()

    @property
    def bins(self) -> int:
        return len(self.counts)

    def count(self, values: np.ndarray) -> np.ndarray:
        """Bin `values` (numbers, or category codes as the booster gets them)."""
        if self.kind == "category":
            return bin_codes(values, len(self.levels))
        return bin_numbers(values, self.edges)

    def labels(self, money: bool = False) -> list[str]:
        """Each bin as people read it: "1,200 to 1,450", "under 2", "North_Ames"."""
        if self.kind == "category":
            return [*self.levels, OTHER]
        shown = [_short(e, money) for e in self.edges]
        if len(shown) == 0:
            return ["all"]
        middle = [
            # a bin of one whole number (a count's own bin) is named by it: "2", not "2 to 3"
            low
            if not money and self.edges[i + 1] - self.edges[i] == 1 and low.isdigit()
            else f"{low} to {high}"
            for i, (low, high) in enumerate(zip(shown[:-1], shown[1:], strict=True))
        ]
        return [f"under {shown[0]}", *middle, f"{shown[-1]} and over"]


def _short(value: float, money: bool) -> str:
    if money:
        return short_money(value)
    # Years stay 1950 (not 1,950); lot areas past 10,000 sq ft get their comma.
    return f"{value:,.0f}" if abs(value) >= 10_000 else f"{value:g}"


@dataclass(frozen=True)
class Reference:
    """The card's training distribution: every input's histogram, then the price's.

    `fingerprint` names the bins: profiles binned by another card's bins (another model)
    are not comparable, and are never added to or compared with this one.
    """

    histograms: tuple[Histogram, ...]
    fingerprint: str
    rows: int

    @property
    def names(self) -> list[str]:
        return [h.name for h in self.histograms]

    @property
    def features(self) -> tuple[Histogram, ...]:
        """The inputs' histograms (all but the price's), in the model's column order."""
        return self.histograms[:-1]

    @property
    def price(self) -> Histogram:
        return self.histograms[-1]

    def by_name(self, name: str) -> Histogram:
        return next(h for h in self.histograms if h.name == name)

    @classmethod
    def from_card(cls, card: Mapping) -> Reference | None:
        """The reference in `card`, or None for a card trained before drift was measured.

        Raises ValueError if it is there but malformed (counts that do not match the bins).
        """
        stored = card.get("training_distribution")
        if not isinstance(stored, Mapping):
            return None
        histograms = [_histogram(name, spec) for name, spec in stored["features"].items()]
        histograms.append(_histogram(PRICE, stored[PRICE]))
        canonical = json.dumps(
            [stored["features"], stored[PRICE]], sort_keys=True, separators=(",", ":")
        )
        fingerprint = hashlib.sha256(canonical.encode()).hexdigest()[:16]
        return cls(tuple(histograms), fingerprint, int(stored["rows"]))

    def empty_profile(self) -> Profile:
        return Profile(self.fingerprint, {h.name: np.zeros(h.bins, np.int64) for h in self})

    def __iter__(self):
        return iter(self.histograms)


def _histogram(name: str, spec: Mapping) -> Histogram:
    counts = np.array(spec["counts"], dtype=np.int64)
    if spec["kind"] == "category":
        levels = tuple(str(level) for level in spec["levels"])
        if len(counts) != len(levels) + 1:
            raise ValueError(f"{name}: {len(counts)} counts for {len(levels)} levels + other")
        return Histogram(name, "category", counts, levels=levels)
    edges = np.array(spec["edges"], dtype=np.float64)
    if len(counts) != len(edges) + 1 or np.any(np.diff(edges) <= 0):
        raise ValueError(f"{name}: {len(counts)} counts for {len(edges)} ascending edges")
    return Histogram(name, "numeric", counts, edges=edges)


def reference_of(card: Mapping) -> Reference | None:
    """The card's training distribution, or None if it has none (or one this code cannot
    read: drift is then not measured, and scoring goes on)."""
    try:
        return Reference.from_card(card)
    except (KeyError, TypeError, ValueError, StopIteration):
        return None


# --- a run's profile: additive counts ----------------------------------------------------------


@dataclass
class Profile:
    """A run's (or a part's) counts in the reference's bins, per input and for the price.

    Counts add: `a + b` is the profile of both parts, so a run split over many workers,
    or a week of runs, is profiled by summing. `reference` is the fingerprint of the bins.
    """

    reference: str
    counts: dict[str, np.ndarray]

    @property
    def rows(self) -> int:
        """Rows profiled (every row lands in exactly one price bin)."""
        return int(self.counts[PRICE].sum()) if PRICE in self.counts else 0

    def add(self, reference: Reference, inputs: np.ndarray, prices: np.ndarray) -> None:
        """Count valid rows: `inputs` as the booster got them (one column per input in the
        model's order, categories as codes), `prices` the predicted prices in dollars."""
        shape = (len(prices), len(reference.features))
        # One column after another in memory: binning a strided column cost twice as much.
        columns = np.ascontiguousarray(np.asarray(inputs, dtype=np.float64).reshape(shape).T)
        for column, histogram in zip(columns, reference.features, strict=True):
            self.counts[histogram.name] += histogram.count(column)
        self.counts[PRICE] += reference.price.count(prices)

    def __add__(self, other: Profile) -> Profile:
        if other.reference != self.reference or other.counts.keys() != self.counts.keys():
            raise ValueError(
                f"profiles binned differently (reference {self.reference} and "
                f"{other.reference}) cannot be added"
            )
        return Profile(self.reference, {k: v + other.counts[k] for k, v in self.counts.items()})

    def to_json(self) -> str:
        counts = {name: values.tolist() for name, values in self.counts.items()}
        return json.dumps({"reference": self.reference, "counts": counts}, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Profile:
        data = json.loads(text)
        counts = {str(k): np.array(v, dtype=np.int64) for k, v in data["counts"].items()}
        return cls(str(data["reference"]), counts)


def sum_profiles(profiles: Iterable[Profile | None]) -> Profile | None:
    """The sum of the profiles given (None ones skipped), or None if there are none."""
    total = None
    for profile in profiles:
        if profile is not None:
            total = profile if total is None else total + profile
    return total


def profile_rows(reference: Reference, inputs: np.ndarray, prices: np.ndarray) -> Profile:
    """The profile of some rows at once (training, a test, a file read whole)."""
    profile = reference.empty_profile()
    profile.add(reference, inputs, prices)
    return profile


# --- PSI ---------------------------------------------------------------------------------------


def psi(expected: np.ndarray, actual: np.ndarray, epsilon: float = config.PSI_EPSILON) -> float:
    """Population stability index of `actual` counts against `expected` counts (same bins).

    Shares of zero become `epsilon` on both sides (the log is then finite); NaN when
    `actual` has no rows.
    """
    expected, actual = np.asarray(expected, np.float64), np.asarray(actual, np.float64)
    if actual.sum() == 0 or expected.sum() == 0:
        return float("nan")
    e = np.maximum(expected / expected.sum(), epsilon)
    a = np.maximum(actual / actual.sum(), epsilon)
    return float(np.sum((a - e) * np.log(a / e)))


def level(value: float, rows: int) -> str:
    """ "act", "watch" or "ok" for a PSI over `rows` rows; "few rows" below DRIFT_MIN_ROWS
    (where noise alone reaches the thresholds), "none" without rows."""
    if rows == 0 or np.isnan(value):
        return "none"
    if rows < config.DRIFT_MIN_ROWS:
        return "few rows"
    if value >= config.PSI_ACT:
        return "act"
    return "watch" if value >= config.PSI_WATCH else "ok"


@dataclass(frozen=True)
class Drift:
    """PSI per input and for the price (under "predicted_price"), over `rows` rows."""

    psi: dict[str, float]
    rows: int

    def level(self, name: str) -> str:
        return level(self.psi[name], self.rows)

    @property
    def worst(self) -> tuple[str, float]:
        """The name and PSI of the input or price furthest from training."""
        known = {k: v for k, v in self.psi.items() if not np.isnan(v)}
        if not known:
            return "", float("nan")
        name = max(known, key=known.get)
        return name, known[name]

    @property
    def crossed(self) -> dict[str, str]:
        """{name: "watch" | "act"} for every PSI judged over a threshold."""
        found = {name: self.level(name) for name in self.psi}
        return {k: v for k, v in found.items() if v in ("watch", "act")}


def drift(reference: Reference, profile: Profile) -> Drift:
    """Each input's and the price's PSI against training; raises ValueError if `profile`
    was binned by another model's bins."""
    if profile.reference != reference.fingerprint:
        raise ValueError(
            f"the profile was binned for another training distribution ({profile.reference}, "
            f"the model's is {reference.fingerprint})"
        )
    values = {h.name: psi(h.counts, profile.counts[h.name]) for h in reference}
    return Drift(values, profile.rows)
