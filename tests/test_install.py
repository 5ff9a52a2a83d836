"""homevalue installed from its wheel, away from this checkout, as a user of `pip install .`
has it; and a package whose `import homevalue.config` stays light.

The wheel is built with the pinned build backend from .venv (no build isolation, no
index: nothing is downloaded) and installed without dependencies into a fresh virtual
environment, which borrows .venv's installed packages through a .pth file. .venv's own
.pth files (the editable install's path to src/) are not read from there, so the source
tree is not on that interpreter's path, and each check runs from a temporary folder.
"""

from __future__ import annotations

import csv
import json
import os
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import homevalue
from homevalue import config

# The names `import homevalue as hv` has offered notebooks and scripts all along.
PUBLIC_NAMES = [
    "BatchFileError",
    "Feature",
    "Flag",
    "HomevalueError",
    "Model",
    "ModelError",
    "ModelFileError",
    "ModelMissingError",
    "ModelRuntimeError",
    "ModelSchemaError",
    "ModelVersionError",
    "Prediction",
    "Problem",
    "Schema",
    "ValidationError",
    "comparable_sales",
    "load_model",
    "predict_frame",
    "predict_one",
    "read_card",
    "score_frame",
]
HEAVY = ("pandas", "numpy", "sklearn", "lightgbm", "pyarrow", "homevalue.model")
STEP_TIMEOUT = 180
PRICE_SCRIPT = """
import json, sys
import homevalue as hv
model = hv.load_model()
prediction = hv.predict_one(json.loads(sys.argv[1]))
print(json.dumps({"package": hv.__file__, "model": str(model.path), "price": prediction.price,
                  "compiled": model.compiled() is not None, "sys_path": sys.path}))
"""


def run(command: list[str], **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run(command, capture_output=True, text=True, timeout=STEP_TIMEOUT, **kwargs)
    assert done.returncode == 0, f"{command}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def within(path: str | Path, folder: Path) -> bool:
    return Path(path).resolve().is_relative_to(folder.resolve())


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel of this checkout, built as `pip wheel .` builds it, but offline."""
    dist = tmp_path_factory.mktemp("dist")
    run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--wheel-dir",
            str(dist),
            str(config.PROJ_ROOT),
        ]
    )
    (built,) = dist.glob("homevalue-*.whl")
    return built


@pytest.fixture(scope="module")
def wheel_python(wheel, tmp_path_factory) -> Path:
    """The python of a fresh virtual environment with the wheel installed."""
    venv = tmp_path_factory.mktemp("venv")
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    python = venv / "bin" / "python"
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    dependencies = "\n".join(site.getsitepackages())  # .venv's, not its .pth files
    (venv / "lib" / version / "site-packages" / "dependencies.pth").write_text(dependencies)
    run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "--no-deps",
            "--no-index",
            str(wheel),
        ]
    )
    return python


@pytest.fixture
def outside(tmp_path) -> tuple[Path, dict]:
    """A working folder outside the checkout, and an environment with no HOMEVALUE_* setting
    but HOMEVALUE_HOME there (what homevalue writes goes under it)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("HOMEVALUE_") and k not in ("PYTHONPATH", "PYTHONHOME")
    }
    env["HOMEVALUE_HOME"] = str(tmp_path / "home")
    assert not within(tmp_path, config.PROJ_ROOT)
    return tmp_path, env


def test_the_wheel_carries_the_model_and_the_template(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in (
        config.CARD_JSON,
        config.CARD_PIN,
        config.BOOSTER_FILE,
        config.MODEL_FILE,
        config.REFERENCE_SALES,
        config.HOLDOUT_PREDICTIONS,
    ):
        assert f"homevalue/data/model/{name}" in names
    assert "homevalue/data/new_listings.csv" in names
    assert any(n.endswith("share/jupyter/voila/templates/homevalue/conf.json") for n in names)
    assert not any(n.startswith(("tests/", "notebooks/", "model/")) for n in names)


def test_the_installed_wheel_prices_a_house_from_its_own_model(
    wheel_python, outside, model, good_house
):
    folder, env = outside
    expected = homevalue.predict_one(good_house, model=model)
    done = run([str(wheel_python), "-c", PRICE_SCRIPT, json.dumps(good_house)], cwd=folder, env=env)
    found = json.loads(done.stdout)
    venv = wheel_python.parents[1]
    assert within(found["package"], venv)
    assert Path(found["model"]) == (Path(found["package"]).parent / "data" / "model").resolve()
    source = {(config.PROJ_ROOT / part).resolve() for part in ("", "src", "tests")}
    assert not [p for p in found["sys_path"] if (folder / p).resolve() in source]
    assert found["price"] == pytest.approx(expected.price, abs=0.5)
    # the compiled trees come from the same cache, keyed by the same booster
    assert found["compiled"] == (model.compiled() is not None)
    assert "Traceback" not in done.stderr


def test_without_compiled_trees_it_prices_with_lightgbm(wheel_python, outside, model, good_house):
    folder, env = outside
    env["HOMEVALUE_CACHE_DIR"] = str(folder / "empty-cache")
    done = run([str(wheel_python), "-c", PRICE_SCRIPT, json.dumps(good_house)], cwd=folder, env=env)
    found = json.loads(done.stdout)
    assert found["compiled"] is False
    assert found["price"] == pytest.approx(homevalue.predict_one(good_house).price, abs=0.5)
    assert "Traceback" not in done.stderr


def test_the_installed_wheel_scores_a_file_and_writes_under_its_home(
    wheel_python, outside, good_house
):
    folder, env = outside
    houses = folder / "houses.csv"
    rows = [good_house, {**good_house, "Gr_Liv_Area": 2200}, {**good_house, "Gr_Liv_Area": -5}]
    with houses.open("w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=list(good_house))
        writer.writeheader()
        writer.writerows(rows)
    homevalue_command = wheel_python.parent / "homevalue"
    run(
        [str(homevalue_command), "batch", "score", "houses.csv", "--out", "results"],
        cwd=folder,
        env=env,
    )
    with (folder / "results" / "houses.scored.csv").open() as scored:
        prices = [float(row["predicted_price"]) for row in csv.DictReader(scored)]
    expected = [homevalue.predict_one(row).price for row in rows[:2]]
    assert prices == pytest.approx(expected, abs=0.5)
    with (folder / "results" / "houses.rejected.csv").open() as rejected:
        assert [row["field"] for row in csv.DictReader(rejected)] == ["Gr_Liv_Area"]
    # the run's history went to HOMEVALUE_HOME, not into site-packages
    assert (folder / "home" / "batch" / "history.sqlite").is_file()
    assert not (wheel_python.parents[1] / "lib" / "batch").exists()


def test_what_homevalue_writes_goes_under_its_home(tmp_path, monkeypatch):
    """HOMEVALUE_HOME; else the checkout; else, from a wheel, $XDG_DATA_HOME/homevalue."""
    for name in ("HOMEVALUE_HOME", "HOMEVALUE_BATCH_INBOX", "HOMEVALUE_FEEDBACK_DB"):
        monkeypatch.delenv(name, raising=False)
    assert config.FROM_CHECKOUT and config.home() == config.PROJ_ROOT
    assert config.batch_inbox() == config.PROJ_ROOT / "batch" / "inbox"
    monkeypatch.setattr(config, "FROM_CHECKOUT", False)  # as in site-packages
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert config.home() == tmp_path / "data" / "homevalue"
    monkeypatch.setenv("HOMEVALUE_HOME", str(tmp_path / "home"))
    assert config.batch_inbox() == tmp_path / "home" / "batch" / "inbox"
    assert config.feedback_db() == tmp_path / "home" / "batch" / "feedback.sqlite"


def python_says(script: str, **env: str) -> str:
    """What a fresh interpreter prints running `script` (HOMEVALUE_WITHOUT_PYARROW unset
    unless given)."""
    base = {k: v for k, v in os.environ.items() if k != "HOMEVALUE_WITHOUT_PYARROW"}
    return run([sys.executable, "-c", script], env={**base, **env}).stdout.strip()


def imported(statement: str) -> list[str]:
    """Which of HEAVY a fresh interpreter holds after `statement`."""
    listing = f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    return json.loads(python_says(f"import json, sys\n{statement}\n{listing}"))


def test_importing_the_config_loads_no_heavy_library():
    """The CLI, the servers and the Dask scheduler import config first: it took 620 ms and
    pandas, scikit-learn and LightGBM's layer when the package's __init__ imported them."""
    assert imported("import homevalue.config") == []
    assert imported("import homevalue") == []
    assert {"pandas", "homevalue.model"} <= set(imported("import homevalue; homevalue.predict_one"))


def test_the_public_names_are_the_same_and_load_on_first_use():
    assert homevalue.__all__ == PUBLIC_NAMES
    assert set(PUBLIC_NAMES) <= set(dir(homevalue))
    for name in PUBLIC_NAMES:
        value = getattr(homevalue, name)
        assert value.__module__.startswith("homevalue."), name
    from homevalue import predict, ui  # submodules, as before

    assert homevalue.predict_one is predict.predict_one and ui.__name__ == "homevalue.ui"
    with pytest.raises(AttributeError, match="has no attribute 'predict_won'"):
        homevalue.predict_won  # noqa: B018


def test_without_pyarrow_still_acts_before_pandas_loads():
    """The price page's kernels: the switch in homevalue/__init__.py runs whichever module
    of homevalue is imported first."""
    script = "import sys, homevalue.config, pandas; print(sys.modules.get('pyarrow') is None)"
    assert python_says(script, HOMEVALUE_WITHOUT_PYARROW="1") == "True"
    assert python_says(script) == "False"  # without the switch, pandas does load pyarrow
