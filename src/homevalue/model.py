"""Load the trained model once per process, refusing anything we cannot vouch for.

Version drift is the usual way a served model breaks silently, so loading checks the
library versions, the artifact's hash and its schema against the card before any price is
given, and every refusal says how to fix it (`make model`).
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass
from importlib.metadata import version as installed_version
from pathlib import Path

import numpy as np

from homevalue import config
from homevalue.booster import NativeBooster
from homevalue.errors import ModelMissingError, ModelSchemaError, ModelVersionError
from homevalue.schema import Schema

# The only types skops may rebuild from the artifact; anything else is refused.
TRUSTED_TYPES = [
    "collections.OrderedDict",
    "lightgbm.basic.Booster",
    "lightgbm.sklearn.LGBMRegressor",
]
FIX = "run `make model` to retrain, or install the pinned versions (`make test` reinstalls them)"
CHECKED_LIBRARIES = ("scikit-learn", "lightgbm")


@dataclass(frozen=True)
class Model:
    """The booster that prices houses plus what the card says about it.

    Pricing never touches scikit-learn (see homevalue.booster); the fitted pipeline is
    loaded on first use of `pipeline`, by training checks, tests and benchmarks.
    """

    booster: NativeBooster
    card: dict
    schema: Schema
    path: Path

    @functools.cached_property
    def pipeline(self):
        return _load_pipeline(self.path, self.card, self.schema)

    @property
    def version(self) -> str:
        return self.card["model_version"]

    @property
    def log_halfwidth(self) -> float:
        return self.card["interval"]["log_halfwidth"]

    @functools.cached_property
    def category_codes(self) -> dict[str, dict[str, float]]:
        """Category → code exactly as the fitted encoder assigns it."""
        return {
            name: {value: float(code) for code, value in enumerate(values)}
            for name, values in self.booster.categories.items()
        }

    def predict_log(self, matrix: np.ndarray, *, threads: int = 1) -> np.ndarray:
        """Log price for encoded rows; the booster directly, skipping pandas on the hot path."""
        return self.booster.predict(matrix, threads=threads)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_card(folder: Path | None = None) -> dict:
    """The model card as a dict; cheap, and enough for pages that only show facts."""
    folder = Path(folder or config.model_dir())
    path = folder / config.CARD_JSON
    if not path.exists():
        raise ModelMissingError(f"no model card at {path}: {FIX}")
    return json.loads(path.read_text())


def _check_versions(card: dict, folder: Path) -> None:
    for library in CHECKED_LIBRARIES:
        trained, running = card["versions"].get(library), installed_version(library)
        if trained != running:
            raise ModelVersionError(
                f"{folder} was trained with {library} {trained}, this environment has "
                f"{running}: {FIX}"
            )


def _check_encoding(given, produced, categories: dict, schema: Schema, folder: Path) -> None:
    """The artifact's input features and category codes are the card's, in the same order."""
    expected = schema.names
    if list(given) != expected or list(produced) != expected:
        raise ModelSchemaError(
            f"{folder}: the artifact's features {list(given)} do not match the card's "
            f"{expected}: {FIX}"
        )
    for name, values in categories.items():
        if list(values) != list(schema.by_name[name].categories):
            raise ModelSchemaError(
                f"{folder}: the artifact's categories for {name} differ from the card's: {FIX}"
            )


def _artifact(card: dict, folder: Path, key: str, default: str) -> Path:
    """An artifact the card names, present and unchanged since training."""
    path = folder / card.get(key, default)
    if not path.exists():
        raise ModelMissingError(f"no model artifact at {path}: {FIX}")
    if sha256_file(path) != card.get(f"{key}_sha256"):
        raise ModelSchemaError(f"{path} was changed after training (hash differs): {FIX}")
    return path


def _load_pipeline(folder: Path, card: dict, schema: Schema):
    """The fitted scikit-learn pipeline, rebuilt from trusted types only."""
    import skops.io as sio

    artifact = _artifact(card, folder, "artifact", config.MODEL_FILE)
    unknown = sorted(set(sio.get_untrusted_types(file=artifact)) - set(TRUSTED_TYPES))
    if unknown:
        raise ModelSchemaError(f"{artifact} holds types this code does not trust {unknown}: {FIX}")
    pipeline = sio.load(artifact, trusted=TRUSTED_TYPES)
    encode = pipeline.named_steps["encode"]
    encoder = encode.named_transformers_["categories"]
    categories = dict(zip(encoder.feature_names_in_, encoder.categories_, strict=True))
    _check_encoding(
        encode.feature_names_in_, encode.get_feature_names_out(), categories, schema, folder
    )
    return pipeline


def _load(folder: Path) -> Model:
    """Check the card, the versions and both artifacts' hashes, then read the booster."""
    card = read_card(folder)
    _check_versions(card, folder)
    _artifact(card, folder, "artifact", config.MODEL_FILE)
    booster = NativeBooster.read(_artifact(card, folder, "booster", config.BOOSTER_FILE))
    schema = Schema.from_list(card["features"])
    names = booster.feature_names
    _check_encoding(names, names, booster.categories, schema, folder)
    return Model(booster, card, schema, folder)


@functools.lru_cache(maxsize=4)
def _load_cached(folder: Path) -> Model:
    return _load(folder)


def load_model(folder: Path | str | None = None) -> Model:
    """The model in `folder` (default: the package's `model/`), loaded once per process."""
    return _load_cached(Path(folder or config.model_dir()).resolve())
