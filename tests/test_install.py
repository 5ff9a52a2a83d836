"""A package whose `import homevalue.config` stays light."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import homevalue

# The names `import homevalue as hv` has offered notebooks and scripts all along.
PUBLIC_NAMES = [
    "BatchFileError", "Feature", "Flag", "HomevalueError", "Model", "ModelError",
    "ModelFileError", "ModelMissingError", "ModelRuntimeError", "ModelSchemaError",
    "ModelVersionError", "Prediction", "Problem", "Schema", "ValidationError",
    "comparable_sales", "load_model", "predict_frame", "predict_one", "read_card",
    "score_frame",
]  # fmt: skip
HEAVY = ("pandas", "numpy", "sklearn", "lightgbm", "pyarrow", "homevalue.model")
STEP_TIMEOUT = 180


def run(command: list[str], **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run(command, capture_output=True, text=True, timeout=STEP_TIMEOUT, **kwargs)
    assert done.returncode == 0, f"{command}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


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
