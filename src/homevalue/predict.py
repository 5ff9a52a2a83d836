"""Prices with intervals and flags, for one house or many: the only way serving predicts.

The dashboards, the batch job and the API all call these functions, so a house gets the
same answer wherever it is priced. `predict_one` is the online path: pure-Python
validation and one call into LightGBM's booster, well under a millisecond.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from homevalue.errors import HomevalueError, Problem, ValidationError
from homevalue.model import Model, load_model
from homevalue.schema import Flag, flag_message, validate_frame, validate_record

PRICE_COLUMNS = ["predicted_price", "price_low", "price_high", "flags", "model_version"]


@dataclass(frozen=True)
class Prediction:
    """One priced house: the estimate, its 80% interval, and anything to be wary of."""

    price: float
    low: float
    high: float
    flags: tuple[Flag, ...] = ()
    model_version: str = ""
    inputs: dict = field(default_factory=dict, repr=False)

    def to_dict(self) -> dict:
        return {
            "price": self.price,
            "low": self.low,
            "high": self.high,
            "flags": [vars(f) for f in self.flags],
            "model_version": self.model_version,
        }


@dataclass
class ScoredFrame:
    """A chunk split into what was priced and what was refused (with row, field, reason)."""

    scored: pd.DataFrame
    rejected: pd.DataFrame


def encode(model: Model, clean: Mapping) -> np.ndarray:
    """One validated record as the booster's input row."""
    codes = model.category_codes
    row = [
        codes[name][clean[name]] if name in codes else clean[name] for name in model.schema.names
    ]
    return np.array([row], dtype=np.float64)


def finish(model: Model, log_price: np.ndarray) -> tuple[np.ndarray, ...]:
    """Turn log prices into (price, low, high, clamped): never negative, NaN or infinite."""
    bounds = model.card["price_bounds"]
    low_log, high_log = np.log(bounds["floor"]), np.log(bounds["ceiling"])
    finite = np.isfinite(log_price)
    clipped = np.clip(np.where(finite, log_price, np.nan), low_log, high_log)
    clamped = finite & (clipped != log_price)
    q = model.log_halfwidth
    price, low, high = (
        np.round(np.exp(clipped)),
        np.round(np.exp(np.maximum(clipped - q, low_log))),
        np.round(np.exp(np.minimum(clipped + q, high_log))),
    )
    return price, low, high, clamped, finite


def predict_one(record: Mapping, *, model: Model | None = None) -> Prediction:
    """Price one house given as {field: value}; raise ValidationError naming every bad field."""
    model = model or load_model()
    clean, flags = validate_record(model.schema, record)
    log_price = model.predict_log(encode(model, clean))
    price, low, high, clamped, finite = finish(model, log_price)
    if not finite[0]:
        raise HomevalueError(f"the model gave no finite price for {clean}: run `make model`")
    if clamped[0]:
        flags.append(Flag("price_clamped", "price", flag_message(None, "price_clamped")))
    return Prediction(
        float(price[0]), float(low[0]), float(high[0]), tuple(flags), model.version, clean
    )


def encode_frame(model: Model, values: pd.DataFrame) -> np.ndarray:
    """Validated columns as the booster's input matrix (rows that failed hold NaN)."""
    columns = []
    for name in model.schema.names:
        if name in model.category_codes:
            codes = pd.Categorical(values[name], categories=list(model.category_codes[name])).codes
            columns.append(np.where(codes < 0, np.nan, codes).astype(np.float64))
        else:
            columns.append(np.asarray(values[name], dtype=np.float64))
    return np.column_stack(columns) if columns else np.empty((len(values), 0))


def score_frame(
    frame: pd.DataFrame, *, model: Model | None = None, first_row: int = 1, threads: int = 1
) -> ScoredFrame:
    """Price every valid row of `frame`; rows that fail come back in `rejected` with reasons.

    The scored part keeps the input's own columns (ids, addresses) and adds the price
    columns; `rejected` has one line per problem: row, field, value, reason.
    """
    model = model or load_model()
    checked = validate_frame(model.schema, frame, first_row=first_row)
    ok = checked.ok
    log_price = np.full(len(frame), np.nan)
    if ok.any():
        log_price[ok] = model.predict_log(encode_frame(model, checked.values)[ok], threads=threads)
    price, low, high, clamped, finite = finish(model, log_price)
    problems = list(checked.problems)
    for position in np.flatnonzero(ok & ~finite):
        problems.append(
            Problem("price", None, "the model gave no finite price", first_row + int(position))
        )
    ok = ok & finite
    flags = checked.flag_strings()
    for position in np.flatnonzero(clamped):
        flags[position] = ";".join(filter(None, [flags[position], "price_clamped:price"]))
    # Our row number replaces an input column of that name, as the price columns do.
    scored = frame.reset_index(drop=True)[ok].drop(columns="row", errors="ignore")
    for name, codes in checked.codes.items():  # "north ames" comes out as North_Ames
        given, written = codes[ok], scored[name].to_numpy(dtype=object)
        relabelled = ~pd.isna(given)  # empty or refused cells stay as written
        relabelled[relabelled] = given[relabelled] != written[relabelled]
        if relabelled.any():
            scored[name] = np.where(relabelled, given, written)
    scored["predicted_price"] = price[ok].astype(np.int64)
    scored["price_low"] = low[ok].astype(np.int64)
    scored["price_high"] = high[ok].astype(np.int64)
    scored["flags"] = flags[ok]
    scored["model_version"] = model.version
    scored.insert(0, "row", np.arange(first_row, first_row + len(frame))[ok])
    rejected = pd.DataFrame(
        [(p.row, p.field, "" if p.value is None else str(p.value), p.reason) for p in problems],
        columns=["row", "field", "value", "reason"],
    )
    return ScoredFrame(scored, rejected)


def predict_frame(frame: pd.DataFrame, *, model: Model | None = None) -> pd.DataFrame:
    """Price every row or none: raise ValidationError (with row numbers) if any row is bad."""
    result = score_frame(frame, model=model)
    if len(result.rejected):
        problems = [
            Problem(r.field, r.value, r.reason, int(r.row))
            for r in result.rejected.itertuples(index=False)
        ]
        raise ValidationError(problems)
    return result.scored[["row", *PRICE_COLUMNS]].set_index(frame.index)


def what_if(record: Mapping, feature: str, values, *, model: Model | None = None) -> pd.DataFrame:
    """Prices of one house as `feature` takes each of `values`, everything else held.

    One validation and one booster call for the whole curve, so a chart can follow every
    change of the form. Values the schema refuses for `feature` are dropped. A field that
    must be at least `feature` (remodelled no earlier than built) is raised along with it,
    so "what if it were built in 2005" is a house remodelled in 2005, not an invalid one.
    """
    model = model or load_model()
    clean, _ = validate_record(model.schema, record)
    spec = model.schema.by_name[feature]
    followers = [f.name for f in model.schema.features if f.at_least == feature]
    rows = []
    for value in values:
        varied = {**clean, feature: value}
        for name in followers:
            varied[name] = max(varied[name], value)
        try:
            candidate, _ = validate_record(model.schema, varied)
        except ValidationError:
            continue
        rows.append(candidate)
    if not rows:
        return pd.DataFrame(columns=[feature, "price", "low", "high"])
    matrix = np.vstack([encode(model, row) for row in rows])
    price, low, high, _, _ = finish(model, model.predict_log(matrix))
    values = [row[spec.name] for row in rows]
    return pd.DataFrame({feature: values, "price": price, "low": low, "high": high})
