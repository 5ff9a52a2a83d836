"""Prices with intervals and flags, for one house or many: the only way serving predicts.

The dashboards, the batch job and the API all call these functions, so a house gets the
same answer wherever it is priced. `predict_one` is the online path: pure-Python
validation and one call into the compiled trees (or LightGBM's booster), about 25 µs on
this project's machine: no array is built for one house (encode_row, predict_log_one,
finish_one).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np
import pandas as pd

from homevalue.errors import HomevalueError, Problem, ValidationError
from homevalue.explain import Explanation, columns, explain_rows, explanation_of
from homevalue.model import Model, load_model
from homevalue.schema import Flag, check_value, flag_message, validate_frame, validate_record

PRICE_COLUMNS = [
    "predicted_price",
    "price_low",
    "price_high",
    "flags",
    "model_version",
    "dollars_of",
]


@dataclass(frozen=True)
class Prediction:
    """One priced house: the estimate, its 80% interval, and anything to be wary of.

    `interval_coverage` is how often the interval held on the test sales priced in the same
    band (`price_band`, {low, high, label}); `accuracy_here` is the holdout's median error
    for houses like it (see `accuracy_here`).
    """

    price: float
    low: float
    high: float
    flags: tuple[Flag, ...] = ()
    model_version: str = ""
    inputs: dict = field(default_factory=dict, repr=False)
    interval_coverage: float | None = None
    price_band: dict = field(default_factory=dict)
    accuracy_here: dict = field(default_factory=dict)
    dollars_of: str = ""  # "2006-2010": the years whose dollars the price is in
    explanation: Explanation | None = field(default=None, repr=False)

    def to_dict(self) -> dict:
        answer = {
            "price": self.price,
            "low": self.low,
            "high": self.high,
            "interval_coverage": self.interval_coverage,
            "price_band": self.price_band,
            "accuracy_here": self.accuracy_here,
            "flags": [vars(f) for f in self.flags],
            "model_version": self.model_version,
            "dollars_of": self.dollars_of,
        }
        if self.explanation is not None:
            answer["explanation"] = self.explanation.to_dict()
        return answer


@dataclass
class ScoredFrame:
    """A chunk split into what was priced and what was refused (with row, field, reason)."""

    scored: pd.DataFrame
    rejected: pd.DataFrame
    # The scored rows as the booster got them (one column per input, categories as codes):
    # what drift monitoring bins (homevalue.drift). None where a caller has no matrix.
    inputs: np.ndarray | None = None


def encode(model: Model, clean: Mapping) -> np.ndarray:
    """One validated record as the booster's input row."""
    return np.array([encode_row(model, clean)], dtype=np.float64)


def encode_row(model: Model, clean: Mapping) -> list[float]:
    """One validated record as the booster's inputs, a list: what `predict_one` hands the
    model, without the array `encode` builds around it."""
    return [clean[name] if codes is None else codes[clean[name]] for name, codes in model.row_codes]


def finish(model: Model, log_price: np.ndarray) -> tuple[np.ndarray, ...]:
    """Turn log prices into (price, low, high, clamped): never negative, NaN or infinite."""
    bounds = model.card["price_bounds"]
    low_log, high_log = np.log(bounds["floor"]), np.log(bounds["ceiling"])
    finite = np.isfinite(log_price)
    clipped = np.clip(np.where(finite, log_price, np.nan), low_log, high_log)
    clamped = finite & (clipped != log_price)
    price = np.round(np.exp(clipped))
    q = model.bands.log_halfwidth[model.bands.index(price)]  # each row's own band
    low = np.round(np.exp(np.maximum(clipped - q, low_log)))
    high = np.round(np.exp(np.minimum(clipped + q, high_log)))
    return price, low, high, clamped, finite


def finish_one(model: Model, log_price: float) -> tuple[float, float, float, bool]:
    """`finish` for one finite log price without arrays: (price, low, high, clamped).

    `finish` spends ~15 µs on one-element arrays, more than the trees take. The same
    numbers: numpy's own exp (the one `finish` uses), and clip, round-half-even and band
    lookup done on floats, which are exact (tests/test_predict_one.py holds the two
    together).
    """
    low_log, high_log = model.log_price_bounds
    clipped = min(max(log_price, low_log), high_log)
    exp = np.exp  # each result made a float before rounding: round() of numpy's is slow
    price = float(round(float(exp(clipped))))
    q = model.bands.halfwidth_one(price)
    low = float(round(float(exp(max(clipped - q, low_log)))))
    high = float(round(float(exp(min(clipped + q, high_log)))))
    return price, low, high, bool(clipped != log_price)


def price_band(model: Model, price: float) -> tuple[int, dict]:
    """The band of predicted price a price falls in: its index and {low, high, label}."""
    band = model.bands.index_one(price) if math.isfinite(price) else int(model.bands.index(price))
    low, high = model.bands.bounds[band]
    return band, {"low": low, "high": high, "label": model.bands.label(band)}


def accuracy_here(model: Model, clean: Mapping, price: float) -> dict:
    """The holdout's median absolute % error for houses like this one, as Zillow quotes
    median error by area: its neighbourhood's when that had enough test sales, otherwise
    that of the test sales priced in the same band.

    {scope: "neighbourhood" | "price_band", value: the code or band label,
    median_error_percent, n_test}; median_error_percent is None if nothing was measured.
    """
    accuracy = model.accuracy
    place = clean.get(model.schema.role("neighbourhood").name)
    if place in accuracy.neighbourhoods:
        median, n = accuracy.neighbourhoods[place]
        return {
            "scope": "neighbourhood",
            "value": place,
            "median_error_percent": round(median, 1),
            "n_test": n,
        }
    band, about = price_band(model, price)
    median, n = accuracy.bands[band]
    measured = None if np.isnan(median) else round(float(median), 1)
    return {
        "scope": "price_band",
        "value": about["label"],
        "median_error_percent": measured,
        "n_test": n,
    }


def predict_one(
    record: Mapping,
    *,
    model: Model | None = None,
    explain: bool = False,
    unknown: Literal["refuse", "ignore"] = "refuse",
    suggest: bool = True,
) -> Prediction:
    """Price one house given as {field: value}; raise ValidationError naming every bad field.

    With `explain`, the prediction carries its `explanation` (see `explain_prediction`).
    A key that names no field is refused; `unknown="ignore"` takes a row of a table as the
    batch job does, and without `suggest` the refusal names no nearest field
    (`validate_record`).
    """
    model = model or load_model()
    clean, flags = validate_record(model.schema, record, unknown=unknown, suggest=suggest)
    log_price = model.predict_log_one(encode_row(model, clean))
    if not math.isfinite(log_price):
        raise HomevalueError(f"the model gave no finite price for {clean}: run `make model`")
    price, low, high, clamped = finish_one(model, log_price)
    if clamped:
        flags.append(Flag("price_clamped", "price", flag_message(None, "price_clamped")))
    band, about = price_band(model, price)
    coverage = float(model.bands.coverage[band])
    prediction = Prediction(
        price,
        low,
        high,
        tuple(flags),
        model.version,
        clean,
        dollars_of=model.dollars_of,
        interval_coverage=None if math.isnan(coverage) else round(coverage, 4),
        price_band=about,
        accuracy_here=accuracy_here(model, clean, price),
    )
    return explain_prediction(prediction, model=model) if explain else prediction


def explain_prediction(prediction: Prediction, *, model: Model | None = None) -> Prediction:
    """`prediction` with its explanation: each feature's exact contribution (TreeSHAP, from
    LightGBM) in log price and in whole dollars, from the typical house's price to this one's
    (homevalue.explain). A page that already priced a house explains it with this, so its
    numbers are predict_one's."""
    model = model or load_model()
    matrix = encode(model, prediction.inputs)
    clamped = finish(model, model.predict_log(matrix))[3]
    price = np.array([prediction.price])
    logs, base_log, dollars, base_price = explain_rows(model, matrix, price, clamped)
    found = explanation_of(
        model, prediction.inputs, logs[0], base_log, dollars[0], base_price, prediction.price
    )
    return replace(prediction, explanation=found)


def encode_frame(model: Model, values: pd.DataFrame) -> np.ndarray:
    """Validated columns as the booster's input matrix (rows that failed hold NaN)."""
    columns = []
    for name, codes in model.row_codes:
        if codes is None:
            columns.append(np.asarray(values[name], dtype=np.float64))
        else:
            columns.append(_category_positions(values[name], list(codes)))
    return np.column_stack(columns) if columns else np.empty((len(values), 0))


def _category_positions(values, categories: list[str]) -> np.ndarray:
    """Each value's position in `categories` (NaN where it is none of them), as
    pd.Categorical's codes: Arrow's hash lookup, a fifth of the time of pandas' on Python
    strings; pandas' for a column Arrow does not take as text."""
    import pyarrow as pa
    import pyarrow.compute as pc

    try:
        text = pa.array(values, type=pa.string(), from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        codes = pd.Categorical(values, categories=categories).codes
        return np.where(codes < 0, np.nan, codes).astype(np.float64)
    found = pc.index_in(text, value_set=pa.array(categories, type=pa.string()))
    return np.asarray(found.to_numpy(zero_copy_only=False), dtype=np.float64)


def _any_relabelled(given: np.ndarray, written: pd.Series) -> bool:
    """Whether some cell's code (`given`, None where there is none) is not the text written:
    one Arrow comparison, where the cell-by-cell Python one cost ~14 ms per 100,000 rows
    of a column whose cells are nearly always their code already. True when unsure."""
    import pyarrow as pa
    import pyarrow.compute as pc

    try:
        codes = pa.array(given, type=pa.string(), from_pandas=True)
        cells = pa.array(written, type=pa.string(), from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return True
    differs = pc.fill_null(pc.not_equal(codes, cells), True)  # a code for a missing cell
    return bool(pc.any(pc.and_(pc.is_valid(codes), differs)).as_py())


def score_frame(
    frame: pd.DataFrame,
    *,
    model: Model | None = None,
    first_row: int = 1,
    threads: int = 1,
    explain: bool = False,
) -> ScoredFrame:
    """Price every valid row of `frame`; rows that fail come back in `rejected` with reasons.

    The scored part keeps the input's own columns (ids, addresses) and adds the price
    columns; `rejected` has one line per problem: row, field, value, reason. With
    `explain`, it also gets `explain.columns` (the numbers `predict_one(..., explain=True)`
    gives; computing them costs far more than the price, and uses `threads`).
    """
    model = model or load_model()
    checked = validate_frame(model.schema, frame, first_row=first_row)
    ok = checked.ok
    log_price = np.full(len(frame), np.nan)
    matrix = None
    if ok.any():
        matrix = encode_frame(model, checked.values)
        log_price[ok] = model.predict_log(matrix[ok], threads=threads)
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
        given = codes[ok]
        if not _any_relabelled(given, scored[name]):
            continue
        written = scored[name].to_numpy(dtype=object)
        relabelled = ~pd.isna(given)  # empty or refused cells stay as written
        relabelled[relabelled] = given[relabelled] != written[relabelled]
        if relabelled.any():
            scored[name] = np.where(relabelled, given, written)
    scored["predicted_price"] = price[ok].astype(np.int64)
    scored["price_low"] = low[ok].astype(np.int64)
    scored["price_high"] = high[ok].astype(np.int64)
    scored["flags"] = flags[ok]
    scored["model_version"] = model.version
    scored["dollars_of"] = model.dollars_of
    scored.insert(0, "row", np.arange(first_row, first_row + len(frame))[ok])
    if explain:
        contributions = np.empty((0, len(model.schema.names)), dtype=np.int64)
        base_price = 0
        if ok.any():
            _, _, contributions, base_price = explain_rows(
                model, matrix[ok], price[ok], clamped[ok], threads=threads
            )
        names = columns(model.schema)
        scored[names[0]] = np.full(len(scored), base_price, dtype=np.int64)
        scored[names[1:]] = contributions
    rejected = pd.DataFrame(
        [(p.row, p.field, "" if p.value is None else str(p.value), p.reason) for p in problems],
        columns=["row", "field", "value", "reason"],
    )
    inputs = matrix[ok] if matrix is not None else np.empty((0, len(model.schema.names)))
    return ScoredFrame(scored, rejected, inputs)


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
    schema = model.schema
    clean, _ = validate_record(schema, record)
    spec = schema.by_name[feature]
    followers = [f for f in schema.features if f.at_least == feature]
    kept = []
    for value in values:
        # The house was validated once; each value needs only its own field's check and the
        # cross-field rules it can break (validating 40 whole houses cost 2.5 ms a curve).
        checked, reason = check_value(spec, value)
        if reason is not None or (spec.at_least and checked < clean[spec.at_least]):
            continue
        if all(check_value(f, max(clean[f.name], checked))[1] is None for f in followers):
            kept.append(checked)
    if not kept:
        return pd.DataFrame(columns=[feature, "price", "low", "high"])
    matrix = np.repeat(encode(model, clean), len(kept), axis=0)
    column = schema.names.index
    if spec.is_category:
        codes = model.category_codes[feature]
        matrix[:, column(feature)] = [codes[value] for value in kept]
    else:
        varied = np.array(kept, dtype=np.float64)
        matrix[:, column(feature)] = varied
        for follower in followers:
            matrix[:, column(follower.name)] = np.maximum(clean[follower.name], varied)
    price, low, high, _, _ = finish(model, model.predict_log(matrix))
    return pd.DataFrame({feature: kept, "price": price, "low": low, "high": high})
