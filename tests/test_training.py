"""Retraining reproduces the committed model: same metrics, interval, schema and prices.

Training is deterministic and takes seconds, so this runs in every `make test`: a change
to the data, the cleaning or the library versions shows up here first.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from homevalue import config, load_model, predict_frame, predict_one
from homevalue.model import card_pin
from homevalue.train import main as train_main
from homevalue.train import train


@pytest.fixture(scope="module")
def retrained(tmp_path_factory) -> tuple[Path, dict]:
    folder = tmp_path_factory.mktemp("retrained")
    return folder, train(folder)


@pytest.fixture(scope="module")
def committed() -> dict:
    return json.loads((config.PROJ_ROOT / "model" / config.CARD_JSON).read_text())


def assert_same(got, expected, where: str) -> None:
    """Equal, floats to 1e-9 relative, however deeply nested."""
    if isinstance(expected, float):
        assert math.isclose(got, expected, rel_tol=1e-9), where
    elif isinstance(expected, dict):
        assert got.keys() == expected.keys(), where
        for key, value in expected.items():
            assert_same(got[key], value, f"{where}.{key}")
    elif isinstance(expected, list):
        assert len(got) == len(expected), where
        for index, value in enumerate(expected):
            assert_same(got[index], value, f"{where}[{index}]")
    else:
        assert got == expected, where


@pytest.mark.parametrize(
    "section", ["metrics", "cross_validation", "interval", "accuracy_here", "training_distribution"]
)
def test_metrics_and_interval_equal_the_committed_card(retrained, committed, section):
    _, card = retrained
    assert_same(card[section], committed[section], section)


def test_schema_data_and_bounds_equal_the_committed_card(retrained, committed):
    _, card = retrained
    assert card["features"] == committed["features"]
    assert card["price_bounds"] == committed["price_bounds"]
    assert card["data"] == committed["data"]
    assert card["params"] == committed["params"]
    assert card["feature_importance_gain_share"] == pytest.approx(
        committed["feature_importance_gain_share"], abs=1e-6
    )


def test_the_training_distribution_counts_every_training_sale_once(retrained):
    """Each input's bins and the price's hold the train part's sales, every one once, and
    serving reads them back (homevalue.drift.Reference)."""
    from homevalue.drift import reference_of

    _, card = retrained
    stored = card["training_distribution"]
    assert stored["rows"] == card["data"]["split"]["train"]
    reference = reference_of(card)
    assert reference is not None
    assert reference.names == [f["name"] for f in card["features"]] + ["predicted_price"]
    for histogram in reference:
        assert histogram.counts.sum() == stored["rows"], histogram.name
        if histogram.kind == "category":  # every level was seen in training, none other
            assert histogram.counts[:-1].min() > 0 and histogram.counts[-1] == 0, histogram.name
        else:  # no bin of training is empty (the edges are training values)
            assert histogram.counts.min() > 0, histogram.name


def test_metrics_meet_the_bars(retrained):
    _, card = retrained
    assert card["metrics"]["rmsle"] <= 0.105  # model 1.0.0 had 0.1022 on the same test part
    assert card["metrics"]["mape_percent"] <= config.TARGET_MAPE_PERCENT
    assert 0.78 <= card["interval"]["coverage_test"] <= 0.82
    assert card["interval"]["level"] == 0.8


def test_cross_validation_is_reported(retrained):
    _, card = retrained
    cv = card["cross_validation"]
    assert cv["folds"] == len(cv["rmsle_by_fold"]) == 5
    assert cv["n"] == card["data"]["split"]["train"]
    assert cv["rmsle_mean"] == pytest.approx(np.mean(cv["rmsle_by_fold"]))
    assert cv["rmsle_sd"] == pytest.approx(np.std(cv["rmsle_by_fold"], ddof=1))
    assert 0 < cv["rmsle_sd"] < cv["rmsle_mean"] <= config.TARGET_RMSLE


def band_of(holdout: pd.DataFrame, band: dict) -> pd.Series:
    price = holdout["Predicted_Price"]
    low = price >= band["low"] if band["low"] is not None else True
    return low & (price < band["high"] if band["high"] is not None else True)


def test_interval_coverage_holds_in_every_band_of_predicted_price(retrained):
    """Recomputed from the written holdout: 75-85% in every band with 50+ test sales,
    78-82% overall, and the card says the same."""
    folder, card = retrained
    holdout = pd.read_csv(folder / config.HOLDOUT_PREDICTIONS)
    inside = holdout["Sale_Price"].between(holdout["Price_Low"], holdout["Price_High"])
    assert 0.78 <= inside.mean() <= 0.82
    assert inside.mean() == pytest.approx(card["interval"]["coverage_test"])
    bands = card["interval"]["bands"]
    assert bands[0]["low"] is None and bands[-1]["high"] is None
    assert [b["high"] for b in bands[:-1]] == [b["low"] for b in bands[1:]]
    assert sum(b["n_test"] for b in bands) == len(holdout)
    assert sum(b["n_calibration"] for b in bands) == card["data"]["split"]["train"]
    for band in bands:
        rows = band_of(holdout, band)
        assert rows.sum() == band["n_test"], band
        assert inside[rows].mean() == pytest.approx(band["coverage_test"]), band
        if band["n_test"] >= 50:
            assert 0.75 <= band["coverage_test"] <= 0.85, band
        width = np.log(holdout["Price_High"][rows] / holdout["Predicted_Price"][rows])
        assert np.allclose(width, band["log_halfwidth"], atol=1e-4), band
    assert sum(b["n_test"] >= 50 for b in bands) >= 3


def test_every_neighbourhood_with_sales_is_learned(retrained, reference):
    """No neighbourhood is left to the test part alone (Green_Hills and Landmark were)."""
    _, card = retrained
    neighbourhood = next(f for f in card["features"] if f["name"] == "Neighborhood")
    assert set(reference["Neighborhood"]) <= set(neighbourhood["categories"])
    assert card["data"]["split"]["train"] + card["data"]["split"]["test"] == len(reference)


def test_accuracy_here_is_the_holdouts_median_error(retrained):
    folder, card = retrained
    holdout = pd.read_csv(folder / config.HOLDOUT_PREDICTIONS)
    ape = (holdout["Predicted_Price"] - holdout["Sale_Price"]).abs() / holdout["Sale_Price"] * 100
    accuracy = card["accuracy_here"]
    counts = holdout["Neighborhood"].value_counts()
    assert set(accuracy["neighbourhoods"]) == set(counts[counts >= accuracy["min_sales"]].index)
    for place, figures in accuracy["neighbourhoods"].items():
        rows = holdout["Neighborhood"] == place
        assert figures["n_test"] == rows.sum()
        assert figures["median_ape_percent"] == pytest.approx(ape[rows].median())
    for band, interval_band in zip(accuracy["bands"], card["interval"]["bands"], strict=True):
        rows = band_of(holdout, band)
        assert band["n_test"] == rows.sum() == interval_band["n_test"]
        assert band["median_ape_percent"] == pytest.approx(ape[rows].median())


def test_the_written_folder_is_complete_and_consistent(retrained):
    folder, card = retrained
    for name in [
        config.MODEL_FILE,
        config.CARD_JSON,
        config.CARD_MARKDOWN,
        config.REFERENCE_SALES,
        config.HOLDOUT_PREDICTIONS,
    ]:
        assert (folder / name).stat().st_size > 0, name
    assert json.loads((folder / config.CARD_JSON).read_text()) == card
    holdout = pd.read_csv(folder / config.HOLDOUT_PREDICTIONS)
    assert len(holdout) == card["metrics"]["n_test"]
    people = (folder / config.CARD_MARKDOWN).read_text()
    assert f"v{card['model_version']}" in people
    assert "(bar: 0.13)" in people and "(bar: 10%)" in people  # the bars, as config sets them


def test_training_pins_the_card_it_writes(retrained):
    """The pin loading checks the card against; `sha256sum -c` reads it too."""
    folder, _ = retrained
    pin = (folder / config.CARD_PIN).read_text()
    assert pin == card_pin((folder / config.CARD_JSON).read_bytes())
    if shutil.which("sha256sum"):
        check = subprocess.run(["sha256sum", "-c", config.CARD_PIN], cwd=folder)
        assert check.returncode == 0


def test_the_retrained_model_loads_and_prices_like_the_committed_one(
    retrained, model, good_house, reference
):
    folder, _ = retrained
    again = load_model(folder)
    assert again is not model and again.path == folder.resolve()
    assert predict_one(good_house, model=again) == predict_one(good_house, model=model)
    houses = reference[
        reference["Neighborhood"].isin(model.schema.by_name["Neighborhood"].categories)
    ]
    np.testing.assert_array_equal(
        predict_frame(houses, model=again).to_numpy(), predict_frame(houses, model=model).to_numpy()
    )


def test_split_moves_a_neighbourhood_seen_only_in_test_into_train():
    """Whichever part a neighbourhood's only sale falls in, it ends in train; the split is
    the same on every call."""
    from homevalue.train import split_sales

    for rare_row in range(0, 100, 7):
        sales = pd.DataFrame({"Neighborhood": ["Common"] * 100, "Sale_ID": range(100)})
        sales.loc[rare_row, "Neighborhood"] = "Rare"
        parts = split_sales(sales)
        assert "Rare" in set(parts["train"]["Neighborhood"]), rare_row
        assert "Rare" not in set(parts["test"]["Neighborhood"]), rare_row
        assert len(parts["train"]) + len(parts["test"]) == 100
        again = split_sales(sales)
        assert parts["test"]["Sale_ID"].tolist() == again["test"]["Sale_ID"].tolist()


def test_from_an_installed_wheel_training_needs_out_and_never_rewrites_site_packages(
    monkeypatch, capsys
):
    """Installed from a wheel, the model is pip's package data: `--out` is asked for."""
    monkeypatch.delenv(config.MODEL_DIR_ENV, raising=False)
    monkeypatch.setattr(config, "FROM_CHECKOUT", False)
    with pytest.raises(SystemExit) as stopped:
        train_main([])
    assert stopped.value.code == 2
    assert "give --out DIR" in capsys.readouterr().err
