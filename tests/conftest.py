"""Fixtures shared by the test modules: the committed model and one ordinary house; and
the `browser` marker on every test that launches chromium."""

from __future__ import annotations

import pandas as pd
import pytest
from browser import chromium

import homevalue
from homevalue import config


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items):
    """Every test that launches chromium (through the `browser` fixture, tests/browser/)
    carries the `browser` marker, so `-m "not browser"` runs all the others where there is
    no chromium. First, before pytest's own -m deselects by markers."""
    for item in items:
        if "browser" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.browser)


def pytest_collection_finish(session):
    """Without chromium, stop before the first test, with how to get one, rather than fail
    each browser test in turn (`make test` has found or installed one already)."""
    if session.config.option.collectonly:
        return
    if any(item.get_closest_marker("browser") for item in session.items):
        try:
            chromium.require()
        except chromium.ChromiumNotFound as error:
            raise pytest.UsageError(str(error)) from None


@pytest.fixture(scope="session")
def model() -> homevalue.Model:
    """The committed model, loaded once (load_model caches it per folder anyway)."""
    return homevalue.load_model()


@pytest.fixture(scope="session")
def schema(model: homevalue.Model) -> homevalue.Schema:
    return model.schema


@pytest.fixture
def good_house() -> dict:
    """A valid, unremarkable house with every field given and inside the training range."""
    return {
        "Neighborhood": "North_Ames",
        "Overall_Cond": "Average",
        "Bldg_Type": "OneFam",
        "Central_Air": "Y",
        "Gr_Liv_Area": 1500,
        "Total_Bsmt_SF": 1000,
        "Lot_Area": 9000,
        "Year_Built": 1975,
        "Year_Remod_Add": 1990,
        "Garage_Cars": 2,
        "Full_Bath": 2,
        "Half_Bath": 0,
        "Bedroom_AbvGr": 3,
        "Fireplaces": 1,
        "Longitude": -93.62,
        "Latitude": 42.03,
    }


@pytest.fixture
def reference(model: homevalue.Model) -> pd.DataFrame:
    """The reference sales stored next to the model (a fresh copy per test)."""
    return pd.read_csv(model.path / config.REFERENCE_SALES)


@pytest.fixture(autouse=True)
def own_batch_folder(monkeypatch, tmp_path_factory):
    """The batch job's default folder is the test's own: `homevalue batch score` records its
    runs in the history beside the default inbox, which is otherwise `./batch/` of the
    checkout (subprocesses inherit the variable too)."""
    folder = tmp_path_factory.mktemp("batch")
    monkeypatch.setenv("HOMEVALUE_BATCH_INBOX", str(folder / "inbox"))


@pytest.fixture(autouse=True)
def no_settle_window(monkeypatch):
    """Test files are written a moment before the inbox runs; the window has its own test.

    So do the two looks at a file (a second apart by default): they have their own tests,
    one of them in a real process with the default pause.
    """
    monkeypatch.setenv("HOMEVALUE_BATCH_SETTLE_SECONDS", "0")
    monkeypatch.setenv("HOMEVALUE_BATCH_LOOK_SECONDS", "0")


@pytest.fixture(autouse=True)
def feedback_store(tmp_path, monkeypatch):
    """Each test's feedback goes to its own store, never to the checkout's batch/ folder
    (the API's and the pages' tests report houses)."""
    path = tmp_path / "feedback.sqlite"
    monkeypatch.setenv("HOMEVALUE_FEEDBACK_DB", str(path))
    return path
