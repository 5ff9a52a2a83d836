"""Whatever is thrown at the pricing functions, they either price sensibly or refuse with a
ValidationError that names the field; nothing else escapes and no price is ever absurd."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from homevalue import ValidationError, predict_frame, predict_one, score_frame

SETTINGS = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

# Ints up to a few hundred digits: far beyond float range, still printable. (Python refuses to
# print ints over 4,300 digits, so those cannot even appear in an error message.)
huge_ints = st.integers(min_value=-(10**400), max_value=10**400)

anything = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    huge_ints,
    st.floats(),
    st.floats(allow_nan=False, allow_infinity=False, min_value=-1e4, max_value=3e5),
    st.text(max_size=15),
    st.sampled_from(["nan", "-inf", "Infinity", "", "  ", ",", "1,500", " 1975 ", "1e3", "0x10"]),
    # Other scripts' digits, which float() reads as numbers: refused alike by both validators.
    st.sampled_from(["١٥٠٠", "𝟏𝟓𝟎𝟎", "１５００", "१९७५", "1,٥00", "ınf", "½", "²"]),
    st.text(alphabet=st.characters(categories=["Nd"]), min_size=1, max_size=5),
    # Labels and codes in other spellings, accepted for their category, and near misses.
    st.sampled_from(
        [
            "north ames",
            "NORTH-AMES",
            " yes",
            "n",
            "Single-family detached",
            "townhouse, end unit",
            "above_average",
            "Nort Ames",
            "Townhouse",
        ]
    ),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
)

EXTRA_KEYS = ["id", "row", "address", "predicted_price", "flags", ""]


@st.composite
def houses(draw, schema, base: dict) -> tuple[dict, set[str]]:
    """A valid house with some fields replaced by anything and some removed.

    Returns the house and the fields that were touched (only those may be blamed).
    """
    names = schema.names
    house = dict(base)
    replaced = draw(st.dictionaries(st.sampled_from(names), anything, max_size=4))
    removed = draw(st.sets(st.sampled_from(names), max_size=3))
    extra = draw(st.dictionaries(st.sampled_from(EXTRA_KEYS), anything, max_size=2))
    house.update(replaced)
    for name in removed:
        house.pop(name, None)
    house.update(extra)
    touched = set(replaced) | removed | set(extra)  # a key that is no field is refused
    if "Year_Built" in touched:  # a new Year_Built can make the old Year_Remod_Add too early
        touched.add("Year_Remod_Add")
    return house, touched


def assert_sensible(price: float, low: float, high: float) -> None:
    assert all(math.isfinite(v) for v in (price, low, high))
    assert 0 < low <= price <= high


def assert_names_fields(error: ValidationError, allowed: set[str]) -> None:
    assert error.problems
    message = str(error)
    for problem in error.problems:
        assert problem.field in message
        assert problem.field in allowed, f"{problem.field} blamed but not touched: {message}"


@SETTINGS
@given(data=st.data())
def test_predict_one_prices_or_names_the_bad_field(model, good_house, data):
    house, touched = data.draw(houses(model.schema, good_house))
    try:
        prediction = predict_one(house, model=model)
    except ValidationError as error:
        assert_names_fields(error, touched)
        return
    assert_sensible(prediction.price, prediction.low, prediction.high)
    assert prediction.model_version == model.version


@SETTINGS
@given(record=st.dictionaries(st.text(max_size=12), anything, max_size=6) | anything)
def test_predict_one_on_arbitrary_input(model, record):
    with pytest.raises(ValidationError) as caught:
        predict_one(record, model=model)  # nothing is required-complete: always refused
    keys = set(record) if isinstance(record, dict) else set()  # each refused by its name
    assert_names_fields(caught.value, {"record", *model.schema.names, *keys})


@SETTINGS
@given(data=st.data())
def test_predict_frame_prices_every_row_or_names_rows_and_fields(model, good_house, data):
    rows = data.draw(st.lists(houses(model.schema, good_house), min_size=1, max_size=6))
    frame = pd.DataFrame([house for house, _ in rows])
    touched = set().union(*(t for _, t in rows))
    try:
        priced = predict_frame(frame, model=model)
    except ValidationError as error:
        assert_names_fields(error, touched)
        assert {p.row for p in error.problems} <= set(range(1, len(frame) + 1))
        return
    assert len(priced) == len(frame)
    for price, low, high in priced[["predicted_price", "price_low", "price_high"]].itertuples(
        index=False
    ):
        assert_sensible(price, low, high)


@SETTINGS
@given(data=st.data())
def test_score_frame_agrees_with_predict_one_row_by_row(model, good_house, data):
    rows = data.draw(st.lists(houses(model.schema, good_house), min_size=1, max_size=5))
    frame = pd.DataFrame([house for house, _ in rows])
    result = score_frame(frame, model=model)
    scored = result.scored.set_index("row")
    refused = set(result.rejected["row"])
    assert refused.isdisjoint(scored.index)
    assert refused | set(scored.index) == set(range(1, len(frame) + 1))
    for number, record in enumerate(frame.to_dict("records"), start=1):
        try:
            one = predict_one(record, model=model, unknown="ignore")  # a table's row
        except ValidationError as error:
            assert number in refused
            mine = result.rejected.loc[result.rejected["row"] == number, ["field", "reason"]]
            assert set(mine.itertuples(index=False, name=None)) == {
                (p.field, p.reason) for p in error.problems
            }
            continue
        assert number in scored.index
        row = scored.loc[number]
        assert (one.price, one.low, one.high) == (
            row["predicted_price"],
            row["price_low"],
            row["price_high"],
        )


@SETTINGS
@given(
    columns=st.dictionaries(
        st.sampled_from([*EXTRA_KEYS, "Gr_Liv_Area", "Neighborhood", "Latitude", "Fireplaces"]),
        st.lists(anything, min_size=3, max_size=3),
        max_size=5,
    ),
    as_objects=st.booleans(),
)
def test_predict_frame_on_arbitrary_columns(model, good_house, columns, as_objects):
    frame = pd.DataFrame([good_house] * 3)
    for name, values in columns.items():  # kept as given, or typed as pandas infers
        frame[name] = pd.Series(values, dtype=object if as_objects else None)
    try:
        priced = predict_frame(frame, model=model)
    except ValidationError as error:
        assert_names_fields(error, set(columns))
        return
    assert np.isfinite(priced[["predicted_price", "price_low", "price_high"]].to_numpy()).all()
    assert (priced["price_low"] > 0).all()
    assert (priced["price_low"] <= priced["predicted_price"]).all()
    assert (priced["predicted_price"] <= priced["price_high"]).all()
