"""The online path's short cuts give what the long way gives: validate_record's fast lane,
finish_one, the compiled forest's one-row call and load_model's default folder."""

from __future__ import annotations

import math
import threading

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_schema import records

from homevalue import Model, ModelError, ValidationError, config, load_model
from homevalue.predict import encode_frame, encode_row, finish, finish_one, predict_one
from homevalue.schema import validate_frame, validate_record


class Text(str):
    """Text that is not of type str exactly: validate_record takes the full path for it."""


def the_long_way(value: object) -> object:
    """The same value, of a type the fast lane leaves to the full path (numpy's numbers are
    subclasses of float and int for the rest of the code, but not `type(v) is float`)."""
    if type(value) is float:
        return np.float64(value)
    if type(value) is int and -(2**63) <= value < 2**63:
        return np.int64(value)
    if type(value) is str:
        return Text(value)
    return value


def verdict(schema, record: dict):
    try:
        clean, flags = validate_record(schema, record)
    except ValidationError as error:
        return "refused", [(p.field, p.reason) for p in error.problems]
    return clean, flags


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_the_fast_lane_takes_every_record_as_the_full_path_does(schema, data):
    record = data.draw(records(schema))
    fast = verdict(schema, record)
    slow = verdict(schema, {name: the_long_way(value) for name, value in record.items()})
    assert fast == slow
    if fast[0] != "refused":
        assert [type(v) for v in fast[0].values()] == [type(v) for v in slow[0].values()]


def test_the_fast_lane_keeps_the_limits_and_flags_of_each_number(schema, good_house):
    """At each end of the allowed range and of the training range, and just past them."""
    for feature in schema.features:
        if feature.is_category:
            continue
        step = 1 if feature.kind == "integer" else 1e-6
        for value in (feature.min, feature.max, feature.train_min, feature.train_max):
            for given_value in (value - step, value, value + step):
                number = int(given_value) if feature.kind == "integer" else float(given_value)
                house = dict(good_house, **{feature.name: number})
                if feature.name == "Year_Built":
                    house["Year_Remod_Add"] = max(house["Year_Remod_Add"], number)
                slow = {name: the_long_way(value) for name, value in house.items()}
                assert verdict(schema, house) == verdict(schema, slow), (feature.name, number)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, 10**400, True, 1.5])
def test_values_the_fast_lane_refuses_get_the_full_paths_answer(schema, good_house, value):
    house = dict(good_house, Garage_Cars=value)
    assert verdict(schema, house) == verdict(schema, dict(house, Garage_Cars=the_long_way(value)))


def test_finish_one_gives_finish_s_numbers(model):
    """Across the whole range of prices, at each band's edges and past the bounds."""
    low_log, high_log = model.log_price_bounds
    logs = np.random.default_rng(1).uniform(low_log - 1, high_log + 1, 20_000)
    edges = np.log(model.bands.edges)
    logs = np.concatenate([logs, edges, np.nextafter(edges, 0), np.nextafter(edges, 99)])
    logs = np.concatenate([logs, [low_log, high_log]])
    price, low, high, clamped, _ = finish(model, logs)
    for i, log_price in enumerate(logs.tolist()):
        assert finish_one(model, log_price) == (price[i], low[i], high[i], clamped[i]), log_price


def test_one_row_gets_the_forests_price_for_every_reference_sale(model, reference):
    forest = model.compiled(build=True)
    assert forest is not None, "this environment cannot compile the model: see the warning"
    checked = validate_frame(model.schema, reference)
    matrix = encode_frame(model, checked.values[checked.ok])
    expected = forest.predict(matrix)
    found = [forest.predict_row(row) for row in matrix.tolist()]
    np.testing.assert_array_equal(found, expected)
    assert all(type(value) is float for value in found)


def test_one_row_at_a_time_from_many_threads(model, reference):
    """Each thread has its own buffers: answers never cross between threads."""
    forest = model.compiled(build=True)
    checked = validate_frame(model.schema, reference)
    matrix = encode_frame(model, checked.values[checked.ok])[:400]
    expected = forest.predict(matrix)
    wrong = []

    def price_all(offset: int) -> None:
        for i in range(len(matrix)):
            at = (i + offset) % len(matrix)
            if forest.predict_row(matrix[at].tolist()) != expected[at]:
                wrong.append(at)

    threads = [threading.Thread(target=price_all, args=(k * 97,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert wrong == []


def test_one_row_of_another_width_is_refused(model):
    forest = model.compiled(build=True)
    with pytest.raises(ValueError, match="15 values given, the model takes 16"):
        forest.predict_row([0.0] * 15)


def test_predict_log_one_is_predict_log_on_either_backend(model, good_house, monkeypatch):
    clean, _ = validate_record(model.schema, good_house)
    row = encode_row(model, clean)
    compiled = Model(model.booster, model.card, model.schema, model.path)
    assert compiled.compiled(build=True) is not None
    assert compiled.predict_log_one(row) == compiled.predict_log(np.array([row]))[0]
    monkeypatch.setenv("HOMEVALUE_COMPILED", "0")
    native = Model(model.booster, model.card, model.schema, model.path)
    assert native.predict_log_one(row) == model.booster.predict(np.array([row]))[0]
    assert native.compiled() is None
    assert math.isclose(native.predict_log_one(row), compiled.predict_log_one(row), abs_tol=1e-9)


def test_predict_one_prices_with_lightgbm_where_nothing_is_compiled(model, good_house, monkeypatch):
    monkeypatch.setenv("HOMEVALUE_COMPILED", "0")
    native = Model(model.booster, model.card, model.schema, model.path)
    assert predict_one(good_house, model=native) == predict_one(good_house, model=model)


def test_the_default_model_follows_the_environment(model, monkeypatch, tmp_path):
    monkeypatch.delenv(config.MODEL_DIR_ENV, raising=False)
    # Not `is model`: tests that load other folders may have evicted the session's model
    # from load_model's 4-entry cache (as in test_model_loading).
    default = load_model()
    assert load_model(config.model_dir()) is default and default.path == model.path
    monkeypatch.setenv(config.MODEL_DIR_ENV, str(model.path))
    assert load_model() is default
    monkeypatch.setenv(config.MODEL_DIR_ENV, str(tmp_path))
    with pytest.raises(ModelError, match=str(tmp_path)):
        load_model()
