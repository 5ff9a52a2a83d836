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
from pathlib import Path

import lightgbm
import numpy as np
import sklearn

from homevalue import config
from homevalue.errors import ModelMissingError, ModelSchemaError, ModelVersionError
from homevalue.schema import Schema

# The only types skops may rebuild from the artifact; anything else is refused.
TRUSTED_TYPES = [
    "collections.OrderedDict",
    "lightgbm.basic.Booster",
    "lightgbm.sklearn.LGBMRegressor",
]
FIX = "run `make model` to retrain, or install the pinned versions (`make test` reinstalls them)"


@dataclass(frozen=True)
class Model:
    """The fitted pipeline plus what the card says about it, ready to price houses."""

    pipeline: object
    card: dict
    schema: Schema
    path: Path

    @functools.cached_property
    def booster(self) -> lightgbm.Booster:
        return self.pipeline.named_steps["regress"].booster_

    @property
    def version(self) -> str:
        return self.card["model_version"]

    @property
    def log_halfwidth(self) -> float:
        return self.card["interval"]["log_halfwidth"]

    @functools.cached_property
    def category_codes(self) -> dict[str, dict[str, float]]:
        """Category → code exactly as the fitted encoder assigns it."""
        encoder = self.pipeline.named_steps["encode"].named_transformers_["categories"]
        return {
            name: {value: float(code) for code, value in enumerate(values)}
            for name, values in zip(encoder.feature_names_in_, encoder.categories_, strict=True)
        }

    def predict_log(self, matrix: np.ndarray, *, threads: int = 1) -> np.ndarray:
        """Log price for encoded rows; the booster directly, skipping pandas on the hot path."""
        return self.booster.predict(matrix, num_threads=threads)


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
    running = {"scikit-learn": sklearn.__version__, "lightgbm": lightgbm.__version__}
    for library, version in running.items():
        trained = card["versions"].get(library)
        if trained != version:
            raise ModelVersionError(
                f"{folder} was trained with {library} {trained}, this environment has "
                f"{version}: {FIX}"
            )


def _check_schema(pipeline, schema: Schema, folder: Path) -> None:
    expected = schema.names
    encode = pipeline.named_steps["encode"]
    given, produced = list(encode.feature_names_in_), list(encode.get_feature_names_out())
    if given != expected or produced != expected:
        raise ModelSchemaError(
            f"{folder}: the artifact's features {given} do not match the card's {expected}: {FIX}"
        )
    encoder = encode.named_transformers_["categories"]
    for name, categories in zip(encoder.feature_names_in_, encoder.categories_, strict=True):
        if list(categories) != list(schema.by_name[name].categories):
            raise ModelSchemaError(
                f"{folder}: the artifact's categories for {name} differ from the card's: {FIX}"
            )


def _load(folder: Path) -> Model:
    import skops.io as sio

    card = read_card(folder)
    artifact = folder / card.get("artifact", config.MODEL_FILE)
    if not artifact.exists():
        raise ModelMissingError(f"no model artifact at {artifact}: {FIX}")
    _check_versions(card, folder)
    if sha256_file(artifact) != card["artifact_sha256"]:
        raise ModelSchemaError(f"{artifact} was changed after training (hash differs): {FIX}")
    unknown = sorted(set(sio.get_untrusted_types(file=artifact)) - set(TRUSTED_TYPES))
    if unknown:
        raise ModelSchemaError(f"{artifact} holds types this code does not trust {unknown}: {FIX}")
    pipeline = sio.load(artifact, trusted=TRUSTED_TYPES)
    schema = Schema.from_list(card["features"])
    _check_schema(pipeline, schema, folder)
    return Model(pipeline, card, schema, folder)


@functools.lru_cache(maxsize=4)
def _load_cached(folder: Path) -> Model:
    return _load(folder)


def load_model(folder: Path | str | None = None) -> Model:
    """The model in `folder` (default: the package's `model/`), loaded once per process."""
    return _load_cached(Path(folder or config.model_dir()).resolve())
