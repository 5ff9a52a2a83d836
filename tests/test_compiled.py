"""The compiled forest (homevalue.compiled): LightGBM's prices to 1e-9, a cache that is
never half-written, and LightGBM's library as the fallback wherever compiling is impossible."""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from batch_helpers import houses, read_text_csv, write_csv

from homevalue import Model, ModelError, ModelRuntimeError, config
from homevalue import compiled as compiling
from homevalue.batch import score_file
from homevalue.predict import encode_frame
from homevalue.schema import validate_frame


@pytest.fixture(scope="session")
def forest(model) -> compiling.CompiledForest:
    """The committed model's compiled forest, from the cache (`make install` fills it) or
    compiled now (about 12 s, once per machine)."""
    found = model.compiled(build=True)
    assert found is not None, "this environment cannot compile the model: see the warning"
    return found


def fresh(model: Model) -> Model:
    """The same model as a new object: its own choice of backend, made anew."""
    return Model(model.booster, model.card, model.schema, model.path)


def reference_matrix(model: Model, reference) -> np.ndarray:
    checked = validate_frame(model.schema, reference)
    assert checked.ok.all()
    return encode_frame(model, checked.values)


@pytest.fixture
def private_cache(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("HOMEVALUE_CACHE_DIR", str(folder))
    return folder


def no_lleaves(monkeypatch) -> None:
    """As on a machine where lleaves (or llvmlite) is not installed: importing it fails."""
    monkeypatch.setitem(sys.modules, "lleaves", None)
    monkeypatch.setitem(sys.modules, "lleaves.compiler", None)


# --- the same prices --------------------------------------------------------------------


@pytest.mark.parametrize("threads", [1, 2])
def test_every_reference_sale_gets_lightgbms_log_price_to_1e9(model, reference, forest, threads):
    matrix = reference_matrix(model, reference)
    expected = model.booster.predict(matrix)
    found = forest.predict(matrix, threads=threads)
    assert len(matrix) > 2000
    np.testing.assert_allclose(found, expected, rtol=0, atol=1e-9)


def test_missing_values_take_lightgbms_branches_too(model, reference, forest):
    """NaN (a refused category's code) goes where LightGBM sends it, in every column."""
    matrix = reference_matrix(model, reference)[:200]
    for column in range(matrix.shape[1]):
        holed = matrix.copy()
        holed[::3, column] = np.nan
        np.testing.assert_allclose(
            forest.predict(holed), model.booster.predict(holed), rtol=0, atol=1e-9
        )


def test_predict_log_uses_the_compiled_forest_once_it_is_cached(model, reference, forest):
    priced = fresh(model)
    matrix = reference_matrix(model, reference)[:50]
    np.testing.assert_allclose(
        priced.predict_log(matrix), model.booster.predict(matrix), rtol=0, atol=1e-9
    )
    assert priced.compiled() is not None and priced.compiled().path == forest.path


def test_the_forest_refuses_rows_of_another_width(model, forest):
    with pytest.raises(ValueError, match="15 columns given, the model takes 16"):
        forest.predict(np.zeros((1, 15)))
    assert forest.predict(np.zeros((0, 16))).shape == (0,)


def test_pricing_with_the_compiled_forest_imports_no_compiler(forest, good_house):
    """A dashboard kernel loads the cached library with ctypes: no LLVM, lleaves or
    LightGBM's Python package, whose imports cost memory in every kernel."""
    script = f"""
import sys, homevalue
m = homevalue.load_model()
homevalue.predict_one({good_house!r})
heavy = {{"llvmlite", "lleaves", "lightgbm", "sklearn"}}
print(m.compiled() is not None, sorted(heavy & set(sys.modules)))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "True []"


# --- the cache ----------------------------------------------------------------------------


def test_the_library_is_named_by_the_boosters_sha256_outside_the_model_folder(model, private_cache):
    path = compiling.library_path(model.card["booster_sha256"])
    assert path.parent == private_cache
    assert model.card["booster_sha256"] in path.name
    assert not path.is_relative_to(model.path)


def test_the_default_cache_is_the_users_cache_folder(monkeypatch, tmp_path):
    monkeypatch.delenv("HOMEVALUE_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert config.cache_dir() == tmp_path / "homevalue"


def test_a_cached_library_is_loaded_not_compiled_again(model, forest, private_cache, monkeypatch):
    target = compiling.library_path(model.card["booster_sha256"])
    target.parent.mkdir(parents=True)
    shutil.copyfile(forest.path, target)
    no_lleaves(monkeypatch)  # compiling would fail: loading must not need it
    found = fresh(model).compiled(build=True)
    assert found is not None and found.path == target


def test_a_garbage_library_is_a_model_error_not_an_oserror(model, private_cache, caplog):
    target = compiling.library_path(model.card["booster_sha256"])
    target.parent.mkdir(parents=True)
    target.write_bytes(b"\x7fELF but not really")
    with pytest.raises(ModelRuntimeError, match="cannot be loaded") as caught:
        compiling.CompiledForest(target, 16)
    assert str(target) in str(caught.value) and "delete it" in str(caught.value)

    priced = fresh(model)
    with caplog.at_level(logging.WARNING, logger="homevalue"):
        assert priced.compiled() is None  # LightGBM prices, and says why once
        priced.predict_log(np.zeros((3, 16)))
    assert len(caplog.records) == 1 and str(target) in caplog.text


def test_a_library_that_prices_differently_is_refused(model, private_cache, tmp_path, caplog):
    """A stale or foreign file under the booster's name would misprice every house."""
    source = tmp_path / "zero.c"
    source.write_text(
        "void forest_root(double *rows, double *out, int start, int end)\n"
        "{ for (int i = start; i < end; i++) out[i] = 12.0; }\n"
    )
    target = compiling.library_path(model.card["booster_sha256"])
    target.parent.mkdir(parents=True)
    subprocess.run(["cc", "-shared", "-fPIC", "-o", str(target), str(source)], check=True)
    with caplog.at_level(logging.WARNING, logger="homevalue"):
        assert fresh(model).compiled() is None
    assert "disagrees with LightGBM" in caplog.text


def test_a_failed_link_leaves_nothing_in_the_cache(model, private_cache, monkeypatch):
    monkeypatch.setattr(compiling, "_object_code", lambda text, scratch: b"not an object file")
    target = compiling.library_path(model.card["booster_sha256"])
    with pytest.raises(ModelRuntimeError, match="linking the compiled model failed"):
        compiling.build("model text", target)
    assert not target.exists()
    assert list(private_cache.iterdir()) == []  # no temporary either


# --- the fallback -------------------------------------------------------------------------


@pytest.mark.parametrize("missing", ["lleaves", "linker"])
def test_batches_are_priced_by_lightgbm_when_compiling_is_impossible(
    model, private_cache, tmp_path, monkeypatch, caplog, missing
):
    if missing == "lleaves":
        no_lleaves(monkeypatch)
    else:
        monkeypatch.setenv("CC", "no-such-compiler-here")
    monkeypatch.setattr(config, "BATCH_COMPILE_MIN_BYTES", 0)  # every file tries to compile
    priced = fresh(model)
    source = write_csv(houses(30), tmp_path / "houses.csv")

    with caplog.at_level(logging.WARNING, logger="homevalue"):
        first = score_file(source, tmp_path / "out", model=priced, progress=False)
        score_file(source, tmp_path / "again", model=priced, progress=False)

    assert priced.compiled() is None
    assert len(caplog.records) == 1, caplog.text  # said once, not per run or per chunk
    assert ("lleaves" if missing == "lleaves" else "C compiler") in caplog.text
    assert not private_cache.exists() or list(private_cache.iterdir()) == []
    scored = read_text_csv(first.scored_path)
    matrix = encode_frame(model, validate_frame(model.schema, houses(30)).values)
    expected = np.round(np.exp(model.booster.predict(matrix))).astype(int)
    assert scored["predicted_price"].astype(int).tolist() == expected.tolist()


def test_homevalue_compiled_0_keeps_prices_on_lightgbm(model, forest, monkeypatch):
    monkeypatch.setenv("HOMEVALUE_COMPILED", "0")
    assert fresh(model).compiled(build=True) is None


def test_the_warm_up_command_compiles_into_the_cache(model, forest, private_cache):
    """What `make install` and `make model` run; with the library already built elsewhere,
    copied in, it is a load and a check (the compile itself is the session fixture's)."""
    target = compiling.library_path(model.card["booster_sha256"])
    target.parent.mkdir(parents=True)
    shutil.copyfile(forest.path, target)
    done = subprocess.run(
        [sys.executable, "-m", "homevalue.compiled"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert str(target) in done.stdout


def test_every_compile_failure_is_a_model_error(model, private_cache, monkeypatch):
    def broken(text, scratch):
        raise RuntimeError("LLVM said no")

    monkeypatch.setattr(compiling, "_compile_to_object", broken)
    with pytest.raises(ModelError, match="LLVM said no"):
        compiling.build("model text", compiling.library_path("0" * 64))
