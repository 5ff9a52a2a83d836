"""load_model refuses a model folder it cannot vouch for, and says how to fix it."""

from __future__ import annotations

import hashlib
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
from model_helpers import edit_card

import homevalue
import homevalue.model
from homevalue import (
    ModelError,
    ModelFileError,
    ModelMissingError,
    ModelSchemaError,
    ModelVersionError,
    config,
    load_model,
    read_card,
)
from homevalue.booster import BoosterError, NativeBooster
from homevalue.model import write_card_pin

GOOD_BOOSTER = json.loads((config.PROJ_ROOT / "model" / config.BOOSTER_FILE).read_text())


@pytest.fixture
def model_copy(model, tmp_path: Path) -> Path:
    """A private copy of the committed model folder (its own path, so its own cache entry)."""
    folder = tmp_path / "model"
    shutil.copytree(model.path, folder)
    return folder


def write_artifact(folder: Path, name: str, data: bytes, key: str = "booster") -> None:
    """`data` as an artifact whose hash the (re-pinned) card records, as if training wrote
    it: what a broken training run or a consistent tampering leaves, so that loading gets
    past the hash checks to the content itself."""
    (folder / name).write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    edit_card(folder, lambda card: card.update({key: name, f"{key}_sha256": digest}))


def refused_as(error_type, folder: Path, *names: str):
    """load_model's refusal: the error's type, every file named, and the fix."""
    with pytest.raises(error_type) as caught:
        load_model(folder)
    message = str(caught.value)
    for name in names:
        assert name in message, message
    assert "make model" in message or "pip install" in message, message
    assert isinstance(caught.value, ModelError)
    return message


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
    def edit(card: dict) -> None:  # categories and their labels alike, as training writes them
        change(feature(card, "Bldg_Type")["categories"])
        change(feature(card, "Bldg_Type")["labels"])

    edit_card(model_copy, edit)
    with pytest.raises(ModelSchemaError, match="categories for Bldg_Type differ"):
        load_model(model_copy)


def test_a_card_written_before_labels_loads_and_shows_codes_readably(model_copy):
    """Cards from before labels and help texts existed still load: each label falls back to
    its code made readable, and those readable codes are accepted as labels."""

    def forget_labels(card: dict) -> None:
        for entry in card["features"]:
            entry.pop("labels", None)
            entry.pop("help", None)

    edit_card(model_copy, forget_labels)
    schema = load_model(model_copy).schema
    neighbourhood = schema.by_name["Neighborhood"]
    assert neighbourhood.labels == ()
    assert neighbourhood.label_of("North_Ames") == "North Ames"
    assert neighbourhood.code_for("north ames") == "North_Ames"
    assert schema.by_name["Gr_Liv_Area"].help == ""


def test_a_card_with_a_label_too_few_is_refused(model_copy):
    edit_card(model_copy, lambda card: feature(card, "Bldg_Type")["labels"].pop())
    with pytest.raises(ModelFileError, match="Bldg_Type: 4 labels for 5 categories"):
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
    # Not `is model`: earlier tests that load other folders may have evicted the session's
    # copy from the small cache (a process serves one model), which is not what this tests.
    first = load_model()
    assert load_model() is first and first.path == model.path


def test_default_model_does_not_depend_on_the_current_directory(model, tmp_path, monkeypatch):
    before = load_model()
    monkeypatch.chdir(tmp_path)
    assert load_model() is before and before.path == model.path
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
    """Whole (every tree where the header says) but without num_class: LightGBM's refusal."""
    text = GOOD_BOOSTER["lightgbm_model"].replace("num_class=1\n", "", 1)
    with pytest.raises(BoosterError, match="LGBM_BoosterLoadModelFromString"):
        NativeBooster(text, model.schema.names, {})


# --- the card is pinned ---------------------------------------------------------------------


def test_the_committed_card_is_pinned(model):
    pin = (model.path / config.CARD_PIN).read_text()
    digest = hashlib.sha256((model.path / config.CARD_JSON).read_bytes()).hexdigest()
    assert pin == f"{digest}  {config.CARD_JSON}\n"  # `sha256sum -c` reads it too


@pytest.mark.parametrize(
    "change",
    [
        lambda card: feature(card, "Gr_Liv_Area").update(max=1e9),  # a wider range
        lambda card: card.update(booster="../elsewhere/booster.json"),  # a redirected path
        lambda card: card["metrics"].update(rmsle=0.01),  # a better story
    ],
    ids=["range", "path", "metrics"],
)
def test_a_card_changed_after_training_is_refused(model_copy, change):
    edit_card(model_copy, change, repin=False)
    message = refused_as(ModelSchemaError, model_copy, config.CARD_JSON, config.CARD_PIN)
    assert "changed after training" in message
    with pytest.raises(ModelSchemaError):
        read_card(model_copy)  # what the model report reads


def test_a_missing_pin_is_refused(model_copy):
    (model_copy / config.CARD_PIN).unlink()
    refused_as(ModelMissingError, model_copy, config.CARD_PIN)


@pytest.mark.parametrize("text", ["", "not a hash\n", "0" * 64 + "  other.json\n", "é" * 5000])
def test_a_garbled_pin_is_refused(model_copy, text):
    (model_copy / config.CARD_PIN).write_text(text)
    refused_as(ModelSchemaError, model_copy, config.CARD_PIN)


# --- every file the card names stays inside the folder --------------------------------------


@pytest.mark.parametrize(
    "name",
    ["../elsewhere/booster.json", "{outside}/elsewhere/booster.json", "../../../../../etc/passwd"],
    ids=["relative", "absolute", "etc-passwd"],
)
def test_an_artifact_outside_the_folder_is_refused_even_with_its_hash(model_copy, name):
    elsewhere = model_copy.parent / "elsewhere"
    elsewhere.mkdir()
    shutil.copy(model_copy / config.BOOSTER_FILE, elsewhere / config.BOOSTER_FILE)
    name = name.format(outside=model_copy.parent)
    edit_card(model_copy, lambda card: card.update(booster=name))
    message = refused_as(ModelFileError, model_copy, name)
    assert "outside the model folder" in message


@pytest.mark.parametrize("name", [config.BOOSTER_FILE, config.CARD_JSON, config.CARD_PIN])
def test_a_symlink_out_of_the_folder_is_refused(model_copy, name):
    """The same bytes, hash and all, but living elsewhere: not part of this model."""
    outside = model_copy.parent / f"outside-{name}"
    shutil.move(model_copy / name, outside)
    (model_copy / name).symlink_to(outside)
    message = refused_as(ModelFileError, model_copy, name)
    assert "outside the model folder" in message


def test_an_artifact_that_is_a_folder_is_refused(model_copy):
    (model_copy / config.BOOSTER_FILE).unlink()
    (model_copy / config.BOOSTER_FILE).mkdir()
    message = refused_as(ModelFileError, model_copy, config.BOOSTER_FILE)
    assert "not a regular file" in message


def test_an_artifact_that_is_a_pipe_is_refused_without_hanging(model_copy):
    """Hashing a FIFO would wait for a writer forever (checked in a child, with a deadline)."""
    (model_copy / config.BOOSTER_FILE).unlink()
    os.mkfifo(model_copy / config.BOOSTER_FILE)
    script = f"import homevalue; homevalue.load_model({str(model_copy)!r})"
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert "ModelFileError" in done.stderr and "not a regular file" in done.stderr


# --- every way a file can be unreadable is a ModelError naming the file and the fix ---------


@pytest.mark.parametrize(
    "data",
    [
        b"\xff\xfe\x00garbage\x9c",  # not UTF-8: was a raw UnicodeDecodeError
        b"{not json",
        json.dumps(GOOD_BOOSTER).encode()[:50_000],  # cut short
        b"[]",
        json.dumps({**GOOD_BOOSTER, "lightgbm_model": None}).encode(),
        json.dumps({k: v for k, v in GOOD_BOOSTER.items() if k != "categories"}).encode(),
        json.dumps({**GOOD_BOOSTER, "categories": []}).encode(),
        json.dumps({**GOOD_BOOSTER, "lightgbm_model": "tree\nversion=v4\nno model"}).encode(),
        json.dumps(
            {**GOOD_BOOSTER, "lightgbm_model": GOOD_BOOSTER["lightgbm_model"].replace("num_", "")}
        ).encode(),
    ],
    ids=[
        "not-utf8",
        "not-json",
        "truncated-json",
        "not-an-object",
        "no-model-text",
        "no-categories",
        "categories-not-a-map",
        "not-lightgbm-text",
        "lightgbm-refuses",
    ],
)
def test_an_unreadable_booster_is_a_model_file_error(model_copy, data):
    write_artifact(model_copy, config.BOOSTER_FILE, data)
    refused_as(ModelFileError, model_copy, config.BOOSTER_FILE)


@pytest.mark.parametrize("share", [0.0005, 0.1, 0.9])
def test_a_model_text_cut_short_is_refused_not_a_crash(model_copy, share):
    """LightGBM trusts the header's tree sizes: text cut short made it read past the end of
    the buffer and abort (SIGABRT) or segfault the whole process. Checked in a child."""
    text = GOOD_BOOSTER["lightgbm_model"]
    cut = {**GOOD_BOOSTER, "lightgbm_model": text[: int(len(text) * share)]}
    write_artifact(model_copy, config.BOOSTER_FILE, json.dumps(cut).encode())
    script = f"import homevalue; homevalue.load_model({str(model_copy)!r})"
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 1, f"the process died with {done.returncode}"
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("homevalue.errors.ModelFileError") and config.BOOSTER_FILE in last
    assert "cut short" in last and "make model" in last


@pytest.mark.parametrize(
    "data",
    [
        b"\xff\xfe{}",
        b"{not json",
        b"[]",
        json.dumps({"versions": {}}).encode(),  # no features
        b"{" + b" " * (2 << 20) + b"}",  # far larger than any card
        b"[" * 100_000,  # nested deeper than the parser goes
    ],
    ids=["not-utf8", "not-json", "not-an-object", "incomplete", "huge", "deep"],
)
def test_an_unreadable_card_is_a_model_file_error(model_copy, data):
    (model_copy / config.CARD_JSON).write_bytes(data)
    write_card_pin(model_copy)
    refused_as(ModelFileError, model_copy, config.CARD_JSON)


def test_a_card_whose_schema_cannot_be_read_is_a_model_file_error(model_copy):
    edit_card(model_copy, lambda card: feature(card, "Lot_Area").update(colour="blue"))
    refused_as(ModelFileError, model_copy, config.CARD_JSON)


def _bands(card: dict) -> list[dict]:
    return card["interval"]["bands"]


@pytest.mark.parametrize(
    "change",
    [
        lambda card: card["interval"].pop("bands"),
        lambda card: card["interval"].update(bands=[]),
        lambda card: _bands(card)[0].update(low=50_000.0),  # not open below
        lambda card: _bands(card)[-1].update(high=900_000.0),  # not open above
        lambda card: _bands(card)[1].update(low=120_000.0),  # a gap between bands
        lambda card: _bands(card).reverse(),  # descending
        lambda card: _bands(card)[2].update(log_halfwidth=-0.1),
        lambda card: _bands(card)[2].update(log_halfwidth="wide"),
        lambda card: _bands(card)[2].update(coverage_test=1.5),
        lambda card: card["accuracy_here"]["bands"].pop(),  # fewer than the interval's
        lambda card: card["accuracy_here"]["neighbourhoods"].update(X={"n_test": 3}),
        lambda card: card.pop("accuracy_here"),
    ],
    ids=[
        "no-bands",
        "empty",
        "closed-below",
        "closed-above",
        "gap",
        "descending",
        "negative-width",
        "text-width",
        "coverage-over-1",
        "accuracy-bands",
        "accuracy-place",
        "no-accuracy",
    ],
)
def test_a_card_whose_bands_or_accuracy_cannot_be_used_is_a_model_file_error(model_copy, change):
    """A price must never get another band's interval, or none: such a card is refused."""
    edit_card(model_copy, change)
    refused_as(ModelFileError, model_copy, config.CARD_JSON)


def test_a_band_without_test_sales_loads_with_its_coverage_unmeasured(model_copy):
    edit_card(model_copy, lambda card: _bands(card)[0].update(coverage_test=None))
    model = load_model(model_copy)
    cheap = np.log(_bands(model.card)[0]["high"] - 20_000)
    assert np.isnan(model.bands.coverage[0])
    assert model.bands.index(np.exp(cheap)) == 0


def test_an_unreadable_pipeline_is_a_model_file_error_when_asked_for(model_copy):
    write_artifact(model_copy, config.MODEL_FILE, b"PK\x03\x04 not a zip", key="artifact")
    model = load_model(model_copy)  # pricing does not need it
    with pytest.raises(ModelFileError, match="make model") as caught:
        model.pipeline  # noqa: B018
    assert config.MODEL_FILE in str(caught.value)


def test_the_pages_show_unavailable_for_a_garbage_booster(model_copy, monkeypatch):
    """The dashboards' `build` shows its friendly panel for any ModelError."""
    from homevalue.ui.page import Unavailable, build
    from homevalue.ui.price import PricePage

    write_artifact(model_copy, config.BOOSTER_FILE, b"\x89garbage\xff")
    monkeypatch.setenv("HOMEVALUE_MODEL_DIR", str(model_copy))
    page = build(PricePage, "Price a home")
    assert isinstance(page, Unavailable)
    assert "unavailable" in repr(page.form)


@pytest.mark.parametrize("name", ["", "bad\x00name", 42, None], ids=["empty", "nul", "int", "null"])
def test_an_artifact_name_that_is_not_a_file_name_is_refused(model_copy, name):
    edit_card(model_copy, lambda card: card.update(booster=name))
    refused_as(ModelFileError, model_copy, config.CARD_JSON)
