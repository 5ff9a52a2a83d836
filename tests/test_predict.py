"""predict_one, predict_frame and score_frame: one answer per house, whichever path priced it,
and the same answer the scikit-learn pipeline gives."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from homevalue import (
    HomevalueError,
    Model,
    ValidationError,
    predict_frame,
    predict_one,
    score_frame,
)
from homevalue.predict import PRICE_COLUMNS, finish, what_if


def usable(reference: pd.DataFrame, schema) -> pd.DataFrame:
    """Reference sales the model can price: all of them, since every neighbourhood with
    sales is in training."""
    known = reference["Neighborhood"].isin(schema.by_name["Neighborhood"].categories)
    assert known.all()
    return reference.reset_index(drop=True)


def pipeline_prices(model: Model, houses: pd.DataFrame) -> pd.DataFrame:
    """What the scikit-learn pipeline itself says, post-processed as the card describes."""
    log_price = model.pipeline.predict(houses[model.schema.names])
    bounds = model.card["price_bounds"]
    floor, ceiling = np.log(bounds["floor"]), np.log(bounds["ceiling"])
    log_price = np.clip(log_price, floor, ceiling)
    q = [band_halfwidth(model, price) for price in np.round(np.exp(log_price))]
    return pd.DataFrame(
        {
            "predicted_price": np.round(np.exp(log_price)),
            "price_low": np.round(np.exp(np.maximum(log_price - q, floor))),
            "price_high": np.round(np.exp(np.minimum(log_price + q, ceiling))),
        }
    )


def band_halfwidth(model: Model, price: float) -> float:
    """The card's half-width for the band holding `price`, looked up the long way."""
    for band in model.card["interval"]["bands"]:
        if (band["low"] is None or price >= band["low"]) and (
            band["high"] is None or price < band["high"]
        ):
            return band["log_halfwidth"]
    raise AssertionError(f"no band holds {price}")


# --- one house ----------------------------------------------------------------------------


def test_predict_one_gives_a_price_inside_its_interval(model, good_house):
    prediction = predict_one(good_house, model=model)
    assert 0 < prediction.low <= prediction.price <= prediction.high
    assert prediction.model_version == model.card["model_version"] == model.version
    assert prediction.flags == ()
    assert prediction.to_dict()["price"] == prediction.price


def band_prices(model: Model) -> list[tuple[dict, float]]:
    """(band, a price inside it) for every band of the card: its low end, or 50k under an
    open one."""
    bands = model.card["interval"]["bands"]
    return [(b, b["low"] if b["low"] is not None else b["high"] - 50_000) for b in bands]


def test_a_house_priced_in_each_band_gets_that_bands_interval_and_coverage(model, good_house):
    bands = band_prices(model)
    assert len(bands) >= 3 and len({b["log_halfwidth"] for b, _ in bands}) == len(bands)
    for band, price in bands:
        prediction = predict_one(good_house, model=answering(model, [np.log(price)]))
        assert prediction.price == price
        q = band["log_halfwidth"]
        # Prices are rounded to the dollar, so the logs agree to about 1e-5 at these prices.
        assert math.isclose(math.log(prediction.high / prediction.price), q, abs_tol=1e-4)
        assert math.isclose(math.log(prediction.price / prediction.low), q, abs_tol=1e-4)
        assert prediction.interval_coverage == pytest.approx(band["coverage_test"], abs=1e-4)
        assert (prediction.price_band["low"], prediction.price_band["high"]) == (
            band["low"],
            band["high"],
        )
        as_json = prediction.to_dict()
        assert as_json["interval_coverage"] == prediction.interval_coverage
        assert as_json["price_band"]["label"].startswith(("under $", "$"))


def test_a_price_just_under_an_edge_is_in_the_band_below(model, good_house):
    upper = model.card["interval"]["bands"][1]
    below = model.card["interval"]["bands"][0]
    prediction = predict_one(good_house, model=answering(model, [np.log(upper["low"] - 1)]))
    assert prediction.price_band["high"] == upper["low"] == below["high"]
    assert math.isclose(
        math.log(prediction.high / prediction.price), below["log_halfwidth"], abs_tol=1e-4
    )


def test_finish_gives_each_row_its_own_bands_interval(model):
    """The batch path: one call, each row banded by its own price (np.searchsorted)."""
    bands = band_prices(model)
    price, low, high, _, _ = finish(model, np.log([p for _, p in bands[::-1]]))
    widths = np.log(high / price)
    np.testing.assert_allclose(widths, [b["log_halfwidth"] for b, _ in bands[::-1]], atol=1e-4)


def test_accuracy_here_is_the_neighbourhoods_when_it_has_enough_test_sales(model, good_house):
    accuracy = model.card["accuracy_here"]
    place, figures = max(accuracy["neighbourhoods"].items(), key=lambda kv: kv[1]["n_test"])
    assert figures["n_test"] >= accuracy["min_sales"]
    prediction = predict_one(dict(good_house, Neighborhood=place), model=model)
    assert prediction.accuracy_here == {
        "scope": "neighbourhood",
        "value": place,
        "median_error_percent": round(figures["median_ape_percent"], 1),
        "n_test": figures["n_test"],
    }
    assert prediction.to_dict()["accuracy_here"] == prediction.accuracy_here


def test_accuracy_here_falls_back_to_the_price_band(model, good_house):
    accuracy = model.card["accuracy_here"]
    few = [
        f
        for f in model.schema.by_name["Neighborhood"].categories
        if f not in accuracy["neighbourhoods"]
    ]
    assert few, "some neighbourhood has fewer test sales than min_sales"
    for index, (band, price) in enumerate(band_prices(model)):
        house = dict(good_house, Neighborhood=few[0])
        here = predict_one(house, model=answering(model, [np.log(price)])).accuracy_here
        expected = accuracy["bands"][index]
        assert (here["scope"], here["n_test"]) == ("price_band", expected["n_test"])
        assert (
            here["value"]
            == predict_one(house, model=answering(model, [np.log(price)])).price_band["label"]
        )
        assert here["median_error_percent"] == round(expected["median_ape_percent"], 1)
        assert (band["low"], band["high"]) == (expected["low"], expected["high"])


def test_predict_one_equals_the_pipeline(model, good_house):
    prediction = predict_one(good_house, model=model)
    expected = pipeline_prices(model, pd.DataFrame([prediction.inputs])).iloc[0]
    assert (prediction.price, prediction.low, prediction.high) == tuple(expected)


def test_predict_one_uses_the_default_model(model, good_house):
    assert predict_one(good_house) == predict_one(good_house, model=model)


def test_predict_one_flags_defaults_and_unusual_inputs(model, schema, good_house):
    del good_house["Garage_Cars"]
    good_house["Gr_Liv_Area"] = schema.by_name["Gr_Liv_Area"].train_max + 500
    prediction = predict_one(good_house, model=model)
    assert {(f.code, f.field) for f in prediction.flags} == {
        ("default_used", "Garage_Cars"),
        ("above_training_range", "Gr_Liv_Area"),
    }
    assert prediction.low <= prediction.price <= prediction.high
    assert prediction.to_dict()["flags"][0].keys() == {"code", "field", "message"}


def test_predict_one_refuses_bad_input_naming_every_field(model, good_house):
    good_house.update(Gr_Liv_Area=-5, Neighborhood="Atlantis")
    with pytest.raises(ValidationError) as caught:
        predict_one(good_house, model=model)
    assert [p.field for p in caught.value.problems] == ["Neighborhood", "Gr_Liv_Area"]
    assert "Gr_Liv_Area = -5: must be between 200 and 10,000 sq ft" in str(caught.value)


def test_a_bigger_house_costs_more(model, good_house):
    small = predict_one(dict(good_house, Gr_Liv_Area=900), model=model)
    large = predict_one(dict(good_house, Gr_Liv_Area=2500), model=model)
    assert large.price > small.price


# --- many houses --------------------------------------------------------------------------


def test_fast_path_equals_the_sklearn_pipeline_on_every_reference_sale(model, reference):
    houses = usable(reference, model.schema)
    priced = predict_frame(houses, model=model)
    expected = pipeline_prices(model, houses)
    for column in ["predicted_price", "price_low", "price_high"]:
        np.testing.assert_array_equal(priced[column].to_numpy(float), expected[column].to_numpy())
    assert (priced["model_version"] == model.version).all()
    assert priced["row"].tolist() == list(range(1, len(houses) + 1))


def test_predict_one_equals_predict_frame_for_50_reference_sales(model, reference):
    houses = usable(reference, model.schema).sample(50, random_state=7)
    priced = predict_frame(houses, model=model)
    assert priced.index.equals(houses.index)
    for index, house in houses.iterrows():
        one = predict_one(house.to_dict(), model=model, unknown="ignore")  # a table's row
        row = priced.loc[index]
        assert (one.price, one.low, one.high) == (
            row["predicted_price"],
            row["price_low"],
            row["price_high"],
        )
        assert {f"{f.code}:{f.field}" for f in one.flags} == set(
            filter(None, row["flags"].split(";"))
        )


def test_predict_frame_keeps_the_index_and_returns_only_price_columns(model, good_house):
    frame = pd.DataFrame([good_house, good_house], index=["a", "b"]).assign(house_id=[1, 2])
    priced = predict_frame(frame, model=model)
    assert list(priced.columns) == ["row", *PRICE_COLUMNS]
    assert priced.index.tolist() == ["a", "b"]
    assert priced["predicted_price"].nunique() == 1


def test_predict_frame_refuses_the_whole_frame_naming_bad_rows(model, good_house):
    frame = pd.DataFrame(
        [good_house, dict(good_house, Gr_Liv_Area="huge"), good_house, dict(good_house, Latitude=9)]
    )
    with pytest.raises(ValidationError) as caught:
        predict_frame(frame, model=model)
    assert [(p.row, p.field) for p in caught.value.problems] == [
        (2, "Gr_Liv_Area"),
        (4, "Latitude"),
    ]
    message = str(caught.value)
    assert "row 2, Gr_Liv_Area = 'huge': must be a number" in message
    assert "row 4, Latitude = " in message
    assert "must be between 41.95 and 42.1 °" in message


def test_a_frame_with_its_own_row_column_is_priced(model, good_house):
    frame = pd.DataFrame([good_house, good_house]).assign(row=["x", "y"])
    assert predict_frame(frame, model=model)["row"].tolist() == [1, 2]
    assert score_frame(frame, model=model, first_row=5).scored["row"].tolist() == [5, 6]


def test_score_frame_splits_good_and_bad_rows_and_keeps_extra_columns(model, good_house):
    frame = pd.DataFrame(
        [
            good_house,
            dict(good_house, Gr_Liv_Area=-1, Fireplaces="lots"),
            dict(good_house, Garage_Cars=None),
            dict(good_house, Neighborhood=None),
        ]
    ).assign(house_id=["h1", "h2", "h3", "h4"], address=["1 Elm", "2 Elm", "3 Elm", "4 Elm"])
    frame.index = [10, 20, 30, 40]
    result = score_frame(frame, model=model, first_row=11)

    scored = result.scored
    assert list(scored.columns) == ["row", *frame.columns, *PRICE_COLUMNS]
    assert scored["row"].tolist() == [11, 13]
    assert scored["house_id"].tolist() == ["h1", "h3"]
    assert scored["address"].tolist() == ["1 Elm", "3 Elm"]
    assert scored["flags"].tolist() == ["", "default_used:Garage_Cars"]
    assert (scored["price_low"] <= scored["predicted_price"]).all()
    assert (scored["predicted_price"] <= scored["price_high"]).all()
    expected = predict_one(frame.iloc[2].to_dict(), model=model, unknown="ignore").price
    assert scored["predicted_price"].iloc[1] == expected

    rejected = result.rejected
    assert list(rejected.columns) == ["row", "field", "value", "reason"]
    assert rejected[["row", "field", "value"]].values.tolist() == [
        [12, "Gr_Liv_Area", "-1"],
        [12, "Fireplaces", "lots"],
        [14, "Neighborhood", ""],
    ]
    assert rejected["reason"].tolist() == [
        "must be between 200 and 10,000 sq ft",
        "must be a number",
        "is required",
    ]


def test_score_frame_of_an_empty_frame(model, good_house):
    result = score_frame(pd.DataFrame([good_house]).iloc[:0], model=model)
    assert len(result.scored) == 0 and len(result.rejected) == 0
    assert list(result.rejected.columns) == ["row", "field", "value", "reason"]


# --- post-processing: no price is ever NaN, negative or absurd ------------------------------


class FixedAnswers:
    """A prediction backend that answers `log_prices`, repeated over the rows."""

    name = "fixed"

    def __init__(self, log_prices: list[float]):
        self.log_prices = np.asarray(log_prices, dtype=float)

    def predict(self, matrix: np.ndarray, *, threads: int = 1) -> np.ndarray:
        return np.resize(self.log_prices, len(matrix))

    def predict_row(self, row) -> float:
        return float(self.log_prices[0])


def answering(model: Model, log_prices: list[float]) -> Model:
    """A copy of `model` pricing through FixedAnswers(`log_prices`)."""
    return model.with_backend(FixedAnswers(log_prices))


def test_finish_clamps_to_the_price_bounds_and_marks_non_finite(model):
    bounds = model.card["price_bounds"]
    floor, ceiling = bounds["floor"], bounds["ceiling"]
    log_price = np.array([np.log(200_000), 50.0, -50.0, np.nan, np.inf, -np.inf])
    price, low, high, clamped, finite = finish(model, log_price)
    assert finite.tolist() == [True, True, True, False, False, False]
    assert clamped.tolist() == [False, True, True, False, False, False]
    assert price[0] == 200_000
    assert (price[1], high[1]) == (ceiling, ceiling)
    assert (price[2], low[2]) == (floor, floor)
    assert np.isfinite(price[finite]).all()
    assert (low[finite] <= price[finite]).all() and (price[finite] <= high[finite]).all()
    assert (low[finite] >= floor).all() and (high[finite] <= ceiling).all()


@pytest.mark.parametrize(("log_price", "bound"), [(40.0, "ceiling"), (-3.0, "floor")])
def test_predict_one_clamps_absurd_prices_and_says_so(model, good_house, log_price, bound):
    prediction = predict_one(good_house, model=answering(model, [log_price]))
    assert prediction.price == model.card["price_bounds"][bound]
    assert prediction.low <= prediction.price <= prediction.high
    assert [f.code for f in prediction.flags] == ["price_clamped"]
    assert "capped" in prediction.flags[0].message


@pytest.mark.parametrize("log_price", [np.nan, np.inf, -np.inf])
def test_predict_one_never_returns_a_non_finite_price(model, good_house, log_price):
    with pytest.raises(HomevalueError, match="no finite price"):
        predict_one(good_house, model=answering(model, [log_price]))


def test_score_frame_rejects_rows_without_a_finite_price(model, good_house):
    broken = answering(model, [np.log(150_000), np.nan, 99.0, np.inf])
    result = score_frame(pd.DataFrame([good_house] * 4), model=broken)
    assert result.scored["row"].tolist() == [1, 3]
    assert result.scored["predicted_price"].tolist() == [
        150_000,
        model.card["price_bounds"]["ceiling"],
    ]
    assert result.scored["flags"].tolist() == ["", "price_clamped:price"]
    assert result.rejected[["row", "field", "reason"]].values.tolist() == [
        [2, "price", "the model gave no finite price"],
        [4, "price", "the model gave no finite price"],
    ]
    with pytest.raises(ValidationError, match="row 2, price"):
        predict_frame(pd.DataFrame([good_house] * 4), model=broken)


# --- dollars of which years -----------------------------------------------------------------


def test_every_price_says_the_years_of_its_dollars(model, good_house, reference):
    """A 2006-2010 price read as today's is wrong by the inflation since: every answer says
    whose dollars it is in, from the card's sale years."""
    first, last = model.card["data"]["sale_years"]
    assert (first, last) == (2006, 2010)
    prediction = predict_one(good_house, model=model)
    assert prediction.dollars_of == prediction.to_dict()["dollars_of"] == "2006-2010"
    scored = score_frame(reference.head(20), model=model).scored
    assert (scored["dollars_of"] == "2006-2010").all()


# --- what if ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["Gr_Liv_Area", "Year_Built", "Year_Remod_Add", "Bldg_Type"])
def test_what_if_prices_each_value_as_predict_one_would(model, reference, name):
    """The curve validates the house once and each value alone: every point must still be
    the price of the whole varied house, and exactly the values a whole check would refuse
    are dropped (out of range, remodelled before built, not a category)."""
    house = reference.iloc[7][model.schema.names].to_dict()
    spec = model.schema.by_name[name]
    followers = [f.name for f in model.schema.features if f.at_least == name]
    values = (
        [*spec.categories, "Castle"]
        if spec.is_category
        else [spec.min - 1, spec.min, 1900, 1955, house[name], 2005, spec.max, spec.max + 1]
    )
    expected = []
    for value in values:
        varied = {**house, name: value}
        for follower in followers:
            varied[follower] = max(varied[follower], value)
        try:
            expected.append((value, predict_one(varied, model=model).price))
        except ValidationError:
            continue
    curve = what_if(house, name, values, model=model)
    assert list(zip(curve[name], curve["price"], strict=True)) == expected
