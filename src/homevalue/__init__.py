"""homevalue: Ames house prices from a scikit-learn model, online and in batch.

The names a notebook, the batch job or the API needs; everything else is internal.

They are imported on first use (PEP 562), not here: `import homevalue.config`, which the
CLI, the servers and the Dask scheduler do before anything else, would otherwise load
pandas and the model layer (620 ms) for a path or a limit. `hv.predict_one` works as ever;
so does `homevalue.<submodule>` after a plain `import homevalue`.
"""

import importlib
import os
import sys

# pandas imports pyarrow whenever it is installed, and pyarrow is a third of a price page's
# kernel (45 MiB of 154); that page never reads Arrow data. voila.json sets this variable for
# the price page's kernels only, so pandas there keeps strings in Python objects instead.
# It must run before pandas is first imported, which is why it sits here: every import of
# homevalue or of any of its modules runs this file first.
if os.environ.get("HOMEVALUE_WITHOUT_PYARROW") == "1" and "pandas" not in sys.modules:
    sys.modules.setdefault("pyarrow", None)

# The public names, by the module that defines them.
_PUBLIC = {
    "comps": ("comparable_sales",),
    "errors": (
        "BatchFileError",
        "HomevalueError",
        "ModelError",
        "ModelFileError",
        "ModelMissingError",
        "ModelRuntimeError",
        "ModelSchemaError",
        "ModelVersionError",
        "Problem",
        "ValidationError",
    ),
    "model": ("Model", "load_model", "read_card"),
    "predict": ("Prediction", "predict_frame", "predict_one", "score_frame"),
    "schema": ("Feature", "Flag", "Schema"),
}
_MODULE_OF = {name: module for module, names in _PUBLIC.items() for name in names}

__all__ = sorted(_MODULE_OF)


def __getattr__(name: str):
    """A public name, imported from its module on first use and kept here; or a submodule
    (`homevalue.predict`), imported as `import homevalue.predict` would."""
    if name in _MODULE_OF:
        value = getattr(importlib.import_module(f"{__name__}.{_MODULE_OF[name]}"), name)
        globals()[name] = value  # later lookups no longer come here
        return value
    if not name.startswith("__"):
        try:
            return importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as error:
            if error.name != f"{__name__}.{name}":
                raise  # the submodule exists but something it imports does not
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
