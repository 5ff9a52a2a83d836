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
from homevalue.train import train


@pytest.fixture(scope="module")
def retrained(tmp_path_factory) -> tuple[Path, dict]:
    folder = tmp_path_factory.mktemp("retrained")
    return folder, train(folder)


@pytest.fixture(scope="module")
def committed() -> dict:
    return json.loads((config.PROJ_ROOT / "model" / config.CARD_JSON).read_text())


@pytest.mark.parametrize("section", ["metrics", "interval"])
def test_metrics_and_interval_equal_the_committed_card(retrained, committed, section):
    _, card = retrained
    assert card[section].keys() == committed[section].keys()
    for key, value in committed[section].items():
        if isinstance(value, float):
            assert math.isclose(card[section][key], value, rel_tol=1e-9), (section, key)
        else:
            assert card[section][key] == value, (section, key)


def test_schema_data_and_bounds_equal_the_committed_card(retrained, committed):
    _, card = retrained
    assert card["features"] == committed["features"]
    assert card["price_bounds"] == committed["price_bounds"]
    assert card["data"] == committed["data"]
    assert card["params"] == committed["params"]
    assert card["feature_importance_gain_share"] == pytest.approx(
        committed["feature_importance_gain_share"], abs=1e-6
    )


def test_metrics_meet_the_bars(retrained):
    _, card = retrained
    assert card["metrics"]["rmsle"] <= 0.13
    assert card["metrics"]["mape_percent"] <= 10
    assert 0.75 <= card["interval"]["coverage_test"] <= 0.85
    assert card["interval"]["level"] == 0.8


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
    assert f"v{card['model_version']}" in (folder / config.CARD_MARKDOWN).read_text()


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
