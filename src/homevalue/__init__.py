"""homevalue: Ames house prices from a scikit-learn model, online and in batch.

The names a notebook, the batch job or the API needs; everything else is internal.
"""

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
