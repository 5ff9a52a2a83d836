"""load_model refuses a model folder it cannot vouch for, and says how to fix it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import lightgbm
import numpy as np
import pytest
import sklearn

import homevalue
import homevalue.model
from homevalue import (
    ModelMissingError,
    ModelSchemaError,
    ModelVersionError,
    config,
    load_model,
)
from homevalue.booster import BoosterError, NativeBooster


@pytest.fixture
def model_copy(model, tmp_path: Path) -> Path:
    """A private copy of the committed model folder (its own path, so its own cache entry)."""
    folder = tmp_path / "model"
    shutil.copytree(model.path, folder)
    return folder


def edit_card(folder: Path, change) -> None:
    path = folder / config.CARD_JSON
    card = json.loads(path.read_text())
    change(card)
    path.write_text(json.dumps(card, indent=2))


def feature(card: dict, name: str) -> dict:
    return next(f for f in card["features"] if f["name"] == name)


def test_a_faithful_copy_loads(model, model_copy):
    copy = load_model(model_copy)
    assert copy is not model
    assert copy.path == model_copy.resolve()
    assert copy.schema == model.schema


@pytest.mark.parametrize("name", [config.MODEL_FILE, config.BOOSTER_FILE])
def test_missing_artifact(model_copy, name):
    (model_copy / name).unlink()
    with pytest.raises(ModelMissingError, match="make model") as caught:
        load_model(model_copy)
    assert name in str(caught.value)
    assert isinstance(caught.value, FileNotFoundError)


def test_missing_card(model_copy):
    (model_copy / config.CARD_JSON).unlink()
    with pytest.raises(ModelMissingError, match="make model"):
        load_model(model_copy)


@pytest.mark.parametrize(
    ("library", "running"),
    [("scikit-learn", sklearn.__version__), ("lightgbm", lightgbm.__version__)],
)
def test_other_library_versions(model_copy, library, running):
    edit_card(model_copy, lambda card: card["versions"].update({library: "0.0.1"}))
    with pytest.raises(ModelVersionError) as caught:
        load_model(model_copy)
    message = str(caught.value)
    assert f"trained with {library} 0.0.1" in message
    assert f"this environment has {running}" in message
    assert "make model" in message


@pytest.mark.parametrize("name", [config.MODEL_FILE, config.BOOSTER_FILE])
def test_artifact_changed_by_one_byte(model_copy, name):
    artifact = model_copy / name
    data = bytearray(artifact.read_bytes())
    data[len(data) // 2] ^= 0x01
    artifact.write_bytes(bytes(data))
    with pytest.raises(ModelSchemaError, match="changed after training") as caught:
        load_model(model_copy)
    assert "make model" in str(caught.value)


def test_card_with_a_renamed_feature(model_copy):
    edit_card(model_copy, lambda card: feature(card, "Lot_Area").update(name="Lot_Size"))
    with pytest.raises(ModelSchemaError, match="do not match the card") as caught:
        load_model(model_copy)
    assert "Lot_Size" in str(caught.value) and "make model" in str(caught.value)


def test_card_with_features_in_another_order(model_copy):
    def swap(card):
        features = card["features"]
        features[4], features[5] = features[5], features[4]

    edit_card(model_copy, swap)
    with pytest.raises(ModelSchemaError, match="do not match the card"):
        load_model(model_copy)


@pytest.mark.parametrize(
    "change",
    [
        lambda categories: categories.pop(),  # one fewer
        lambda categories: categories.append("Castle"),  # one more
        lambda categories: categories.reverse(),  # same ones, other codes
    ],
    ids=["removed", "added", "reordered"],
)
def test_card_with_other_categories(model_copy, change):
    edit_card(model_copy, lambda card: change(feature(card, "Bldg_Type")["categories"]))
    with pytest.raises(ModelSchemaError, match="categories for Bldg_Type differ"):
        load_model(model_copy)


def test_load_model_loads_each_folder_once(model_copy, monkeypatch):
    calls = []
    real_load = homevalue.model._load

    def counting_load(folder):
        calls.append(folder)
        return real_load(folder)

    monkeypatch.setattr(homevalue.model, "_load", counting_load)
    first = load_model(model_copy)
    assert load_model(model_copy) is first
    assert load_model(str(model_copy)) is first
    assert load_model(model_copy / ".." / "model") is first
    assert calls == [model_copy.resolve()]


def test_default_model_is_the_same_object_every_time(model):
    assert load_model() is load_model() is model


def test_default_model_does_not_depend_on_the_current_directory(model, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert load_model() is model
    # A fresh process started elsewhere finds the same folder.
    env = {k: v for k, v in os.environ.items() if k != "HOMEVALUE_MODEL_DIR"}
    script = "import homevalue; m = homevalue.load_model(); print(m.path); print(m.version)"
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    path, version = done.stdout.split()
    assert Path(path) == (config.PROJ_ROOT / "model").resolve()
    assert version == model.version


def test_environment_variable_points_at_another_folder(model, model_copy, monkeypatch):
    monkeypatch.setenv("HOMEVALUE_MODEL_DIR", str(model_copy))
    copy = load_model()
    assert copy.path == model_copy.resolve() and copy is not model


def test_pricing_never_imports_scikit_learn_lightgbm_or_skops(good_house):
    """Every dashboard kernel loads the model: those imports cost +95 MB and a second there.

    Pricing goes through LightGBM's C library (homevalue.booster); the pipeline is loaded
    only when asked for, and then gives the same price.
    """
    script = f"""
import sys, homevalue
m = homevalue.load_model()
price = homevalue.predict_one({good_house!r}).price
print(sorted({{"sklearn", "lightgbm", "skops"}} & set(sys.modules)))
import numpy as np, pandas as pd
row = pd.DataFrame([{good_house!r}])[m.schema.names]
print(price == homevalue.predict.finish(m, m.pipeline.predict(row))[0][0])
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:2] == ["[]", "True"]


def test_the_native_booster_refuses_rows_of_another_width(model):
    with pytest.raises(ValueError, match="15 columns given, the model takes 16"):
        model.booster.predict(np.zeros((1, 15)))
    assert model.booster.predict(np.zeros((0, 16))).shape == (0,)


def test_a_corrupt_native_model_is_refused_with_lightgbms_reason(model):
    with pytest.raises(BoosterError, match="LGBM_BoosterLoadModelFromString"):
        NativeBooster("tree\nversion=v4\nnot a model", model.schema.names, {})
