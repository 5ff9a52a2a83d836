"""One seam for inference: Model owns the model folder's files and prices through one
backend (the compiled trees or LightGBM's library), whose C library is found, declared and
refused as a ModelError, and which several threads may share."""

from __future__ import annotations

import concurrent.futures
import logging
import math
import re
import shutil
from pathlib import Path

import lightgbm.libpath
import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from model_helpers import edit_card, write_table

import homevalue.booster as booster
import homevalue.compiled as compiled
from homevalue import (
    ModelError,
    ModelFileError,
    ModelMissingError,
    ModelRuntimeError,
    ModelSchemaError,
    api,
    comps,
    config,
    load_model,
    predict_frame,
    predict_one,
)
from homevalue.model import Backend, Model, _load, read_holdout
from homevalue.predict import encode_row
from homevalue.schema import validate_record
from homevalue.ui import report
from homevalue.ui.page import Unavailable, build
from homevalue.ui.price import PricePage

SRC = Path(__file__).resolve().parents[1] / "src" / "homevalue"
FOLDER_FILES = (
    "MODEL_FILE",
    "BOOSTER_FILE",
    "CARD_JSON",
    "CARD_PIN",
    "CARD_MARKDOWN",
    "REFERENCE_SALES",
    "HOLDOUT_PREDICTIONS",
)


@pytest.fixture
def model_copy(model, tmp_path: Path) -> Path:
    """A private copy of the committed model folder (its own path, so its own cache entry)."""
    folder = tmp_path / "model"
    shutil.copytree(model.path, folder)
    return folder


@pytest.fixture
def forest(model):
    found = model.compiled(build=True)
    if found is None:
        pytest.skip("this environment cannot compile the model (see the warning logged)")
    return found


def records(model: Model, count: int) -> list[dict]:
    sales = model.reference_sales().head(count)[model.schema.names]
    return [
        {k: (v.item() if hasattr(v, "item") else v) for k, v in r.items()}
        for r in sales.to_dict("records")
    ]


def encoded(model: Model, count: int) -> np.ndarray:
    return np.array(
        [encode_row(model, validate_record(model.schema, r)[0]) for r in records(model, count)]
    )


# --- the backends ---------------------------------------------------------------------------


def test_both_backends_are_backends_and_agree_row_by_row(model, forest):
    matrix = encoded(model, 20)
    for backend, name in ((model.booster, "lightgbm"), (forest, "compiled")):
        assert isinstance(backend, Backend) and backend.name == name
        one_by_one = [backend.predict_row(row) for row in matrix.tolist()]
        np.testing.assert_array_equal(one_by_one, backend.predict(matrix))
    np.testing.assert_allclose(forest.predict(matrix), model.booster.predict(matrix), atol=1e-9)


class Recorder:
    """A prediction backend that answers one log price and counts how it was asked."""

    name = "recorder"

    def __init__(self, log_price: float):
        self.log_price = log_price
        self.rows = 0
        self.matrices = 0

    def predict(self, matrix: np.ndarray, *, threads: int = 1) -> np.ndarray:
        self.matrices += 1
        return np.full(len(matrix), self.log_price)

    def predict_row(self, row) -> float:
        self.rows += 1
        return self.log_price


def test_a_fake_backend_prices_through_model(model, good_house):
    fake = Recorder(math.log(200_000))
    priced = model.with_backend(fake)
    assert isinstance(fake, Backend) and priced.backend is fake
    assert predict_one(good_house, model=priced).price == 200_000
    assert fake.rows == 1 and fake.matrices == 0  # one house: no array built
    frame = predict_frame(pd.DataFrame([good_house] * 3), model=priced)
    assert list(frame["predicted_price"]) == [200_000] * 3 and fake.matrices == 1
    assert priced.compiled(build=True) is None and priced.backend is fake  # never replaced
    assert model.backend is not fake  # the served model is untouched


# --- finding and loading LightGBM's library ---------------------------------------------------


@pytest.mark.parametrize(
    ("system", "name"),
    [
        ("Linux", "lib_lightgbm.so"),
        ("Darwin", "lib_lightgbm.dylib"),
        ("Windows", "lib_lightgbm.dll"),
    ],
)
def test_the_library_is_looked_for_where_lightgbms_libpath_looks(monkeypatch, system, name):
    monkeypatch.setattr(booster.platform, "system", lambda: system)
    package = Path(lightgbm.__file__).resolve().parent
    found = booster.library_candidates()
    assert found[:3] == [package.parent / name, package / "bin" / name, package / "lib" / name]
    assert all(path.name == name for path in found)


@pytest.mark.parametrize(("system", "suffix"), [("Linux", ".so"), ("Darwin", ".dylib")])
def test_the_compiled_library_is_named_as_the_platform_names_one(monkeypatch, system, suffix):
    monkeypatch.setattr(compiled.platform, "system", lambda: system)
    assert compiled.library_path("0" * 64, Path("/cache")).suffix == suffix


def test_the_library_found_is_the_one_lightgbm_loads():
    assert booster._library_path() == Path(lightgbm.libpath._find_lib_path()[0]).resolve()


@pytest.fixture
def library_at(monkeypatch):
    """Make LightGBM's library be found at a given path, for loads after this; the real one
    is found again after the test."""

    def use(path: Path | None) -> None:
        if path is None:
            monkeypatch.setattr(
                booster, "library_candidates", lambda: [Path("/nowhere/lib_lightgbm.so")]
            )
        else:
            monkeypatch.setattr(booster, "_library_path", lambda: path)
        booster._library.cache_clear()

    yield use
    monkeypatch.undo()
    booster._library.cache_clear()


def not_lightgbm() -> Path:
    """A real shared object that is not LightGBM's library: numpy's own extension."""
    return Path(np._core._multiarray_umath.__file__)


def broken(kind: str, tmp_path: Path) -> Path | None:
    if kind == "none":
        return None
    if kind == "missing":
        return tmp_path / "lib_lightgbm.so"
    if kind == "not_a_library":
        (tmp_path / "lib_lightgbm.so").write_text("not a shared object")
        return tmp_path / "lib_lightgbm.so"
    return not_lightgbm()


LIBRARIES = ["none", "missing", "not_a_library", "not_lightgbm"]


@pytest.mark.parametrize("kind", LIBRARIES)
def test_a_library_missing_broken_or_foreign_is_a_model_runtime_error(
    model_copy, library_at, tmp_path, kind
):
    library_at(broken(kind, tmp_path))
    with pytest.raises(ModelRuntimeError) as caught:
        load_model(model_copy)
    message = str(caught.value)
    assert "LightGBM's library" in message or "LGBM_" in message
    assert "pip install" in message and "lightgbm" in message  # the fix
    if kind == "none":
        assert "/nowhere/lib_lightgbm.so" in message
    if kind in ("missing", "not_a_library"):
        assert f"{tmp_path / 'lib_lightgbm.so'} cannot be loaded" in message
    if kind == "not_lightgbm":
        assert f"{not_lightgbm()} has no LGBM_GetLastError" in message


@pytest.mark.parametrize("kind", LIBRARIES)
def test_the_price_page_and_predict_one_say_unavailable_for_a_bad_library(
    model_copy, library_at, tmp_path, monkeypatch, good_house, kind
):
    monkeypatch.setenv(config.MODEL_DIR_ENV, str(model_copy))
    library_at(broken(kind, tmp_path))
    page = build(PricePage, "Price a home")
    assert isinstance(page, Unavailable)
    assert "unavailable" in repr(page.form)
    with pytest.raises(ModelError):
        predict_one(good_house)


def test_the_api_is_not_ready_and_logs_one_line_for_a_foreign_library(
    model_copy, library_at, caplog
):
    library_at(not_lightgbm())
    app = api.create_app(model_copy)
    with caplog.at_level(logging.ERROR, logger=api.log.name), TestClient(app) as client:
        assert client.get("/readyz").status_code == 503
    [error] = [record for record in caplog.records if record.name == api.log.name]
    assert "has no LGBM_" in error.getMessage()
    assert error.exc_info is None  # a ModelError's sentence, not a bug's traceback


def test_every_function_called_is_declared():
    library = booster._library()
    called = set(re.findall(r"\"(LGBM_\w+)\"|\.(LGBM_\w+)\(", Path(booster.__file__).read_text()))
    names = {a or b for a, b in called}
    assert names and names <= set(booster._SIGNATURES)
    for name in names:
        assert getattr(library, name).argtypes is not None, name


# --- output buffers sized by LGBM_BoosterCalcNumPredict ---------------------------------------


@pytest.fixture
def sizes(monkeypatch):
    """Record what LGBM_BoosterCalcNumPredict answers; `sizes.extra` adds to its answer."""
    library = booster._library()
    real = library.LGBM_BoosterCalcNumPredict

    class Spy:
        extra = 0
        asked: list[tuple[int, int, int]] = []

        def __call__(self, handle, rows, kind, start, iterations, out):
            code = real(handle, rows, kind, start, iterations, out)
            out._obj.value += self.extra
            self.asked.append((rows, kind, out._obj.value))
            return code

    spy = Spy()
    spy.asked = []
    monkeypatch.setattr(library, "LGBM_BoosterCalcNumPredict", spy)
    return spy


def test_buffers_are_the_size_lightgbm_gives(model, sizes):
    matrix = encoded(model, 3)
    features = len(model.schema.names)
    assert model.booster.predict(matrix).shape == (3,)
    assert model.booster.contributions(matrix).shape == (3, features + 1)
    assert model.booster.contributions(matrix[:0]).shape == (0, features + 1)
    assert sizes.asked == [(3, 0, 3), (3, 3, 3 * (features + 1)), (1, 3, features + 1)]


def test_a_size_lightgbm_did_not_write_is_refused(model, sizes):
    sizes.extra = 3  # LightGBM writes 3 values into a buffer of 6: nothing overrun, refused
    with pytest.raises(ModelFileError, match="LightGBM wrote 3 values for 3 rows, 6 expected"):
        model.booster.predict(encoded(model, 3))


# --- threads ------------------------------------------------------------------------------


@pytest.mark.parametrize("engine", ["lightgbm", "compiled"])
def test_predict_one_from_several_threads_equals_serial(model, engine, request):
    backend = model.booster if engine == "lightgbm" else request.getfixturevalue("forest")
    priced = model.with_backend(backend)
    houses = records(model, 200) * 3
    serial = [predict_one(house, model=priced).price for house in houses]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        threaded = list(pool.map(lambda house: predict_one(house, model=priced).price, houses))
    assert threaded == serial


def test_explanations_from_several_threads_equal_serial(model):
    """Contributions are LightGBM's own (its predict runs concurrently corrupted the heap:
    LightGBM #5482); the booster's calls take turns."""
    houses = records(model, 40) * 3

    def explained(house: dict) -> tuple:
        return predict_one(house, model=model, explain=True).explanation.to_dict()

    serial = [explained(house) for house in houses]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        assert list(pool.map(explained, houses)) == serial


# --- the folder's files belong to Model -----------------------------------------------------


def test_only_the_model_module_names_the_folders_files():
    """Training writes them, config spells them, homevalue.model reads them: nobody else."""
    names = "|".join(FOLDER_FILES)
    literals = "|".join(re.escape(getattr(config, name)) for name in FOLDER_FILES)
    pattern = re.compile(rf"config\.({names})\b|[\"']({literals})[\"']")
    allowed = {"model.py", "train.py", "config.py"}
    found = [
        f"{path.relative_to(SRC)}:{line}"
        for path in SRC.rglob("*.py")
        if path.name not in allowed or path.parent != SRC
        for line, text in enumerate(path.read_text().splitlines(), 1)
        if pattern.search(text)
    ]
    assert found == []


def test_reference_sales_and_holdout_are_read_once_and_checked(model):
    sales = model.reference_sales()
    assert sales is model.reference_sales() is comps.reference_sales(model.path)
    pd.testing.assert_frame_equal(sales, pd.read_csv(model.path / config.REFERENCE_SALES))
    assert set(model.schema.names) <= set(sales.columns)
    assert model.holdout() is read_holdout(model.path) is model.holdout(["Sale_Price"])
    assert report.read_holdout(model.path) is model.holdout()  # the page asks homevalue.model


def test_a_rewritten_table_is_read_again(model_copy):
    copy = load_model(model_copy)
    first = copy.reference_sales()
    write_table(model_copy, config.REFERENCE_SALES, first.head(10).to_csv(index=False).encode())
    with pytest.raises(ModelSchemaError, match="restart the servers"):
        copy.reference_sales()  # the model this process loaded pins the old table
    assert len(_load(model_copy).reference_sales()) == 10  # as a restarted server loads it


@pytest.mark.parametrize(
    ("damage", "error", "words"),
    [
        ("missing", ModelMissingError, "no reference sales at"),
        ("changed", ModelSchemaError, "is not the file this model was trained with"),
        ("unpinned", ModelSchemaError, "pins no reference_sales.csv"),
        ("garbage", ModelFileError, "cannot be read as the reference sales"),
        ("empty", ModelFileError, "cannot be read as the reference sales"),
        ("no_rows", ModelSchemaError, "has no rows"),
        ("a_column_short", ModelSchemaError, "lacks the columns ['Gr_Liv_Area']"),
        ("outside", ModelFileError, "is outside the model folder"),
    ],
)
def test_damaged_reference_sales_are_a_model_error_and_the_page_unavailable(
    model_copy, monkeypatch, tmp_path, damage, error, words
):
    """Every way the table can be wrong; the damage that keeps the card's hash (a broken
    training run, `write_table`) reaches the reading and the columns."""
    path = model_copy / config.REFERENCE_SALES
    sales = pd.read_csv(path)
    path.unlink()
    name = config.REFERENCE_SALES
    if damage == "changed":
        sales.head(100).to_csv(path, index=False)
    elif damage == "unpinned":
        sales.to_csv(path, index=False)
        edit_card(model_copy, lambda card: card.pop("tables_sha256"))
    elif damage == "garbage":
        write_table(model_copy, name, b"\x89PNG\r\n\x1a\n\xff\xfe\x00garbage")
    elif damage == "empty":
        write_table(model_copy, name, b"")
    elif damage == "no_rows":
        write_table(model_copy, name, sales.head(0).to_csv(index=False).encode())
    elif damage == "a_column_short":
        short = sales.drop(columns="Gr_Liv_Area")
        write_table(model_copy, name, short.to_csv(index=False).encode())
    elif damage == "outside":
        sales.to_csv(tmp_path / "elsewhere.csv", index=False)
        path.symlink_to(tmp_path / "elsewhere.csv")
    with pytest.raises(error) as caught:
        load_model(model_copy).reference_sales()
    assert words in str(caught.value) and "make model" in str(caught.value)
    monkeypatch.setenv(config.MODEL_DIR_ENV, str(model_copy))
    assert isinstance(build(PricePage, "Price a home"), Unavailable)
