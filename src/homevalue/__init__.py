"""homevalue: Ames house prices from a scikit-learn model, online and in batch.

The names a notebook, the batch job or the API needs; everything else is internal.
"""

import os
import sys

# pandas imports pyarrow whenever it is installed, and pyarrow is a third of a price page's
# kernel (45 MiB of 154); that page never reads Arrow data. voila.json sets this variable for
# the price page's kernels only, so pandas there keeps strings in Python objects instead.
# It must run before pandas is first imported, which is why it sits here.
if os.environ.get("HOMEVALUE_WITHOUT_PYARROW") == "1" and "pandas" not in sys.modules:
    sys.modules.setdefault("pyarrow", None)

from homevalue.comps import comparable_sales
from homevalue.errors import (
    BatchFileError,
    HomevalueError,
    ModelError,
    ModelFileError,
    ModelMissingError,
    ModelRuntimeError,
    ModelSchemaError,
    ModelVersionError,
    Problem,
    ValidationError,
)
from homevalue.model import Model, load_model, read_card
from homevalue.predict import Prediction, predict_frame, predict_one, score_frame
from homevalue.schema import Feature, Flag, Schema

__all__ = [
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
