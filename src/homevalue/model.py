"""Load the trained model once per process, refusing anything we cannot vouch for.

Version drift is the usual way a served model breaks silently, so loading checks the
library versions, the artifact's hash and its schema against the card before any price is
given, and every refusal says how to fix it (`make model`).

What vouches for what: training writes the card's SHA-256 beside it (`model_card.json.sha256`),
the card holds the artifacts' hashes, and every file is read from inside the model folder
only. So a card edited after training (a wider range, an artifact path pointing elsewhere)
is refused, and so is an artifact changed or swapped. The pin sits in the same folder: it
catches accidents and careless edits, not someone who can write the folder (they could
retrain too); that is what the folder's permissions are for. Every way a file can fail to
load is a ModelError naming the file and the fix, so the API reports not ready and the
dashboards show their "unavailable" panel rather than a traceback.

One seam: `Model` owns every file of the folder (this is the only module that names
them, besides training, which writes them) and prices through one `Backend`, the
compiled trees or LightGBM's library, settled once per process. Threads: a loaded Model
may be shared. Its backends are thread-safe (each says why), settling the backend holds
a lock, and the tables it reads are read whole before anyone sees them.
"""

from __future__ import annotations

import bisect
import functools
import hashlib
import io
import json
import logging
import os
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from importlib.metadata import version as installed_version
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

from homevalue import config
from homevalue.booster import BoosterError, LibraryError, NativeBooster
from homevalue.errors import (
    ModelError,
    ModelFileError,
    ModelMissingError,
    ModelRuntimeError,
    ModelSchemaError,
    ModelVersionError,
    shown,
)
from homevalue.schema import Schema, short_money

if TYPE_CHECKING:
    import pandas as pd

    from homevalue import compiled

# The only types skops may rebuild from the artifact; anything else is refused.
TRUSTED_TYPES = [
    "collections.OrderedDict",
    "lightgbm.basic.Booster",
    "lightgbm.sklearn.LGBMRegressor",
]
FIX = "run `make model` to retrain, or install the pinned versions (`make test` reinstalls them)"
REINSTALL = (
    "reinstall LightGBM with `.venv/bin/pip install --force-reinstall -c .ci/constraints.txt "
    "lightgbm`"
)
CHECKED_LIBRARIES = ("scikit-learn", "lightgbm")
# What serving reads from the card, with its JSON type: checked once, at loading.
CARD_SHAPE = {
    "model_version": str,
    "versions": dict,
    "features": list,
    "interval": dict,
    "price_bounds": dict,
    "accuracy_here": dict,
}
_PIN = re.compile(rf"([0-9a-f]{{64}})  {re.escape(config.CARD_JSON)}\n?")
log = logging.getLogger("homevalue.model")


@runtime_checkable
class Backend(Protocol):
    """What turns encoded rows into log prices: compiled.CompiledForest (the fast one) or
    booster.NativeBooster (LightGBM's library), or a test's stand-in. Both methods give
    the same number for the same row; both may be called from several threads at once."""

    name: str  # for logs and metrics: "compiled", "lightgbm"

    def predict(self, matrix: np.ndarray, *, threads: int = 1) -> np.ndarray:
        """Log prices of a 2-D float matrix's rows; `threads` may split the rows."""
        ...

    def predict_row(self, row: Sequence[float]) -> float:
        """Log price of one row given as numbers, without building arrays."""
        ...


def band_label(low: float | None, high: float | None) -> str:
    """A band of price as people read it: "under $100k", "$150k – $200k", "$300k and over"."""
    if low is None:
        return f"under {short_money(high)}"
    if high is None:
        return f"{short_money(low)} and over"
    return f"{short_money(low)} – {short_money(high)}"


@dataclass(frozen=True)
class PriceBands:
    """The card's bands of predicted price, as arrays: each band has its own interval
    half-width (log) and the coverage measured on the test sales priced in it."""

    edges: np.ndarray  # the inner edges, ascending: band i is [edges[i-1], edges[i])
    log_halfwidth: np.ndarray
    coverage: np.ndarray
    bounds: tuple[tuple[float | None, float | None], ...]

    @classmethod
    def from_card(cls, interval: dict) -> PriceBands:
        """Raise ValueError (or KeyError, TypeError) unless the bands are contiguous, open at
        both ends, and their widths and coverages are numbers in range."""
        bands = interval["bands"]
        if not isinstance(bands, list) or not bands:
            raise ValueError("interval.bands is not a non-empty list")
        bounds = tuple((_edge(b["low"]), _edge(b["high"])) for b in bands)
        edges = [high for _, high in bounds[:-1]]
        if bounds[0][0] is not None or bounds[-1][1] is not None:
            raise ValueError("the first band must have no low end and the last no high end")
        if any(e is None for e in edges) or edges != [low for low, _ in bounds[1:]]:
            raise ValueError("the bands do not meet end to end")
        if edges != sorted(set(edges)):
            raise ValueError("the band edges do not ascend")
        widths = np.array([float(b["log_halfwidth"]) for b in bands])
        # No test sale priced in a band leaves its coverage unmeasured (None: NaN here).
        coverage = np.array([_number_or_nan(b["coverage_test"]) for b in bands])
        if not (np.isfinite(widths).all() and (widths >= 0).all()):
            raise ValueError("a band's log_halfwidth is not a number >= 0")
        if ((coverage < 0) | (coverage > 1)).any():
            raise ValueError("a band's coverage_test is not between 0 and 1")
        return cls(np.array(edges, dtype=np.float64), widths, coverage, bounds)

    def index(self, price: np.ndarray) -> np.ndarray:
        """The band of each price (NaN falls in the last band; its interval is NaN anyway)."""
        return np.searchsorted(self.edges, price, side="right")

    def index_one(self, price: float) -> int:
        """`index` of one finite price, without an array (the online path)."""
        return bisect.bisect_right(self._edge_list, price)

    def halfwidth_one(self, price: float) -> float:
        """The log half-width of one finite price's band, as a float (the online path)."""
        return self._halfwidth_list[bisect.bisect_right(self._edge_list, price)]

    @functools.cached_property
    def _edge_list(self) -> list[float]:
        return self.edges.tolist()

    @functools.cached_property
    def _halfwidth_list(self) -> list[float]:
        return self.log_halfwidth.tolist()

    def label(self, band: int) -> str:
        return self._labels[band]

    @functools.cached_property
    def _labels(self) -> tuple[str, ...]:
        return tuple(band_label(*bounds) for bounds in self.bounds)


@dataclass(frozen=True)
class AccuracyHere:
    """The test part's median absolute % error per neighbourhood (those with enough test
    sales to quote) and per band of predicted price, as the card stores them."""

    neighbourhoods: dict[str, tuple[float, int]]  # code -> (median %, test sales)
    bands: tuple[tuple[float, int], ...]  # per band of PriceBands: (median % or NaN, sales)
    min_sales: int

    @classmethod
    def from_card(cls, card: dict) -> AccuracyHere:
        """Raise ValueError (or KeyError, TypeError) unless it matches the interval's bands."""
        accuracy = card["accuracy_here"]
        places = {
            str(code): (float(row["median_ape_percent"]), int(row["n_test"]))
            for code, row in accuracy["neighbourhoods"].items()
        }
        bands = tuple(
            (_number_or_nan(b["median_ape_percent"]), int(b["n_test"])) for b in accuracy["bands"]
        )
        if len(bands) != len(card["interval"]["bands"]):
            raise ValueError("accuracy_here.bands and interval.bands differ in number")
        return cls(places, bands, int(accuracy["min_sales"]))


def _number_or_nan(value: object) -> float:
    return float("nan") if value is None else float(value)


def _edge(value: object) -> float | None:
    if value is None:
        return None
    number = float(value)
    if not np.isfinite(number) or number <= 0:
        raise ValueError(f"band edge {value!r} is not a positive price")
    return number


@dataclass(frozen=True)
class Model:
    """The booster that prices houses plus what the card says about it, and every other
    file of its folder (`reference_sales`, `holdout`, `pipeline`).

    Pricing never touches scikit-learn (see homevalue.booster); the fitted pipeline is
    loaded on first use of `pipeline`, by training checks, tests and benchmarks. Prices
    come from `backend`; `fixed_backend` replaces the one this process would settle on
    (tests price through a stand-in this way; serving never sets it).
    """

    booster: NativeBooster
    card: dict
    schema: Schema
    path: Path
    fixed_backend: Backend | None = field(default=None, repr=False)

    @functools.cached_property
    def pipeline(self):
        return _load_pipeline(self.path, self.card, self.schema)

    @property
    def version(self) -> str:
        return self.card["model_version"]

    @functools.cached_property
    def dollars_of(self) -> str:
        """The years whose dollars every price is in ("2006-2010"): the sales it learned from."""
        return dollars_of(self.card)

    @functools.cached_property
    def bands(self) -> PriceBands:
        """The interval's bands of predicted price (checked when the model was loaded)."""
        return PriceBands.from_card(self.card["interval"])

    @functools.cached_property
    def log_price_bounds(self) -> tuple[float, float]:
        """The card's floor and ceiling of a price, in log (numpy's log, as `finish` takes)."""
        bounds = self.card["price_bounds"]
        return float(np.log(bounds["floor"])), float(np.log(bounds["ceiling"]))

    @functools.cached_property
    def accuracy(self) -> AccuracyHere:
        """The holdout's median error by neighbourhood and band (checked at loading)."""
        return AccuracyHere.from_card(self.card)

    @functools.cached_property
    def category_codes(self) -> dict[str, dict[str, float]]:
        """Category → code exactly as the fitted encoder assigns it."""
        return {
            name: {value: float(code) for code, value in enumerate(values)}
            for name, values in self.booster.categories.items()
        }

    @functools.cached_property
    def row_codes(self) -> tuple[tuple[str, dict[str, float] | None], ...]:
        """Each input in the booster's order with its category codes (None for a number):
        how a validated record becomes a row (homevalue.predict.encode_row)."""
        codes = self.category_codes
        return tuple((name, codes.get(name)) for name in self.schema.names)

    def reference_sales(self) -> pd.DataFrame:
        """The sold houses the model learned from (cleaned), as training stored them, each
        with the card's inputs: comparable sales, the map of sales. Read once per version
        of the file; the frame is shared, so callers do not change it."""
        names = self.schema.names
        return _table(self.path, self.card, config.REFERENCE_SALES, "reference sales", names)

    def holdout(self, columns: Sequence[str] = ()) -> pd.DataFrame:
        """The test sales with their predictions, as training wrote them (`read_holdout`)."""
        return read_holdout(self.path, columns, card=self.card)

    def with_backend(self, backend: Backend) -> Model:
        """This model pricing through `backend` instead (a test's stand-in, say)."""
        return replace(self, fixed_backend=backend)

    @property
    def backend(self) -> Backend:
        """What prices in this process: the compiled forest when the cache has it
        (homevalue.compiled), otherwise LightGBM's library. The two agree to 1e-9 on every
        reference sale (tests/test_compiled.py). Settled once (a dictionary read after)."""
        engine = self._engine
        if not engine.settled:
            self.compiled()
        return engine.backend

    def predict_log(self, matrix: np.ndarray, *, threads: int = 1) -> np.ndarray:
        """Log price for encoded rows, skipping pandas on the hot path."""
        return self.backend.predict(matrix, threads=threads)

    def predict_log_one(self, row: Sequence[float]) -> float:
        """Log price of one encoded row (a list of numbers): `predict_log` without building
        arrays, which cost a single row more than its trees do."""
        return self.backend.predict_row(row)

    @functools.cached_property
    def _engine(self) -> _Engine:
        fixed = self.fixed_backend is not None
        backend = self.fixed_backend if fixed else self.booster
        return _Engine(backend, settled=fixed, fixed=fixed)

    def compiled(self, *, build: bool = False) -> compiled.CompiledForest | None:
        """The compiled forest, or None when prices come from LightGBM's library.

        The cache (config.cache_dir, keyed by the booster's SHA-256) is looked at once per
        process; with `build`, a library missing or unusable there is compiled now (about
        12 s). Why it cannot be had is logged once, as a warning, and LightGBM prices; so
        it does with HOMEVALUE_COMPILED=0. A model given a backend (`with_backend`) keeps
        it: None, and nothing is built. Which backend prices is logged once, at INFO.
        """
        from homevalue import compiled  # here: `python -m homevalue.compiled` imports us

        engine = self._engine
        if engine.fixed or (engine.settled and (engine.forest or not build)):
            return engine.forest
        with engine.lock:
            wanted = compiled.enabled()
            if wanted and engine.forest is None and not (engine.settled and engine.build_tried):
                engine.forest = self._find_forest(engine, build)
            if not engine.settled:
                log.info("prices come from %s", (engine.forest or self.booster).name)
            engine.backend = engine.forest or self.booster
            engine.settled = True  # after the backend: a reader that sees it sees that
        return engine.forest

    def _find_forest(self, engine: _Engine, build: bool) -> compiled.CompiledForest | None:
        from homevalue import compiled

        path = compiled.library_path(self.card["booster_sha256"])
        features = len(self.schema.names)
        try:
            if _exists(path):
                try:
                    return self._checked(compiled.CompiledForest(path, features))
                except ModelError:
                    if not build:
                        raise
            if not build:
                return None  # not compiled yet: `make model`, or the next large batch
            engine.build_tried = True
            compiled.build(self._model_text(), path)
            return self._checked(compiled.CompiledForest(path, features))
        except ModelError as error:
            if not engine.warned:
                engine.warned = True
                log.warning("prices come from LightGBM's library, not compiled trees: %s", error)
            return None

    def _checked(self, forest: compiled.CompiledForest) -> compiled.CompiledForest:
        from homevalue import compiled

        compiled.check_against(forest, self.booster, self._check_rows())
        return forest

    def _check_rows(self) -> np.ndarray:
        """Rows that walk many paths of the trees: the typical house, then each number at
        the ends of its training range and each category at each of its values."""
        names, codes = self.schema.names, self.category_codes
        typical = self.schema.default_record()

        def row(record: dict) -> list[float]:
            values = [codes[n].get(record[n]) if n in codes else record[n] for n in names]
            return [np.nan if v is None else float(v) for v in values]

        rows = [row(typical)]
        for feature in self.schema.features:
            ends = feature.categories or (feature.train_min, feature.train_max)
            rows.extend(row({**typical, feature.name: value}) for value in ends)
        return np.array(rows, dtype=np.float64)

    def _model_text(self) -> str:
        """LightGBM's text of the booster, re-read (and its hash re-checked) for compiling."""
        path = _artifact(self.card, self.path, "booster", config.BOOSTER_FILE)
        return json.loads(path.read_text())["lightgbm_model"]


def _exists(path: Path) -> bool:
    """Whether the cache holds `path`; a cache this user cannot look into holds nothing
    (another user's home, say), and a batch that compiles says so when it cannot write."""
    try:
        return path.is_file()
    except OSError:
        return False


@dataclass
class _Engine:
    """Which backend prices for a Model in this process (see Model.compiled)."""

    backend: Backend  # LightGBM's library until the compiled forest is found
    lock: threading.Lock = field(default_factory=threading.Lock)
    forest: compiled.CompiledForest | None = None
    settled: bool = False  # the cache has been looked at (or a backend was given)
    fixed: bool = False  # given: never replaced by a compiled forest
    build_tried: bool = False
    warned: bool = False


def dollars_of(card: dict) -> str:
    """The years whose dollars prices are in ("2006-2010"), from the card's sale years: a
    reader who takes them for today's would be misled by the inflation since."""
    years = card.get("data", {}).get("sale_years") or ["?", "?"]
    return f"{years[0]}-{years[-1]}"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def model_file(folder: Path, name: object, what: str) -> Path:
    """The file `name` of the model folder, resolved: a regular file inside the folder once
    links are followed, or a ModelError saying why not (`what` names it in the message)."""
    root = Path(folder).resolve()
    if not isinstance(name, str) or not name or "\x00" in name:
        raise ModelFileError(f"{root / config.CARD_JSON} names its {what} {shown(name)}: {FIX}")
    given = root / name
    try:
        path = given.resolve()
    except (OSError, RuntimeError) as error:  # a loop of links
        raise ModelFileError(f"{given} cannot be followed ({error}): {FIX}") from None
    if not path.is_relative_to(root):
        raise ModelFileError(
            f"{given} is outside the model folder {root} (once links are followed): "
            f"refused; a model reads only its own folder: {FIX}"
        )
    if not path.exists():
        raise ModelMissingError(f"no {what} at {given}: {FIX}")
    if not path.is_file():
        raise ModelFileError(f"{given} is not a regular file: {FIX}")
    return path


def card_pin(card: bytes) -> str:
    """The pin for a card's bytes: its SHA-256 in `sha256sum` format, so that
    `sha256sum -c model_card.json.sha256`, run in the folder, checks it too."""
    return f"{hashlib.sha256(card).hexdigest()}  {config.CARD_JSON}\n"


def write_card_pin(folder: Path) -> Path:
    """Pin the card in `folder` as it is now; training calls this once the card is written."""
    pin = Path(folder) / config.CARD_PIN
    pin.write_text(card_pin((Path(folder) / config.CARD_JSON).read_bytes()))
    return pin


def _read_head(path: Path, limit: int) -> bytes:
    """At most limit + 1 bytes of `path`: enough to know it is over `limit`."""
    with open(path, "rb") as handle:
        return handle.read(limit + 1)


def _pinned_card(folder: Path) -> tuple[Path, bytes]:
    """The card's path and bytes, once its pin vouches for them."""
    card_path = model_file(folder, config.CARD_JSON, "model card")
    pin_path = model_file(folder, config.CARD_PIN, "pin of the model card (training writes it)")
    data = _read_head(card_path, config.CARD_MAX_BYTES)
    if len(data) > config.CARD_MAX_BYTES:
        raise ModelFileError(
            f"{card_path} is over {config.CARD_MAX_BYTES:,} bytes: not a model card: {FIX}"
        )
    pinned = _PIN.fullmatch(_read_head(pin_path, 200).decode("ascii", errors="replace"))
    if pinned is None:
        raise ModelSchemaError(
            f"{pin_path} is not a pin (`<sha256>  {config.CARD_JSON}`): the folder was "
            f"changed after training: {FIX}"
        )
    if pinned[1] != hashlib.sha256(data).hexdigest():
        raise ModelSchemaError(
            f"{card_path} was changed after training: its SHA-256 is not the one in "
            f"{pin_path}: {FIX}"
        )
    return card_path, data


def read_holdout(
    folder: Path | str | None = None, columns: Sequence[str] = (), *, card: dict | None = None
) -> pd.DataFrame:
    """The test sales with their predictions, as training wrote them, for pages that only
    show facts (the model report) and need not load the model: refused when it lacks
    `columns` or has no rows. Read once per process (per version of the file). `card` is
    the folder's, when the caller has read it already (its hash of the file is checked)."""
    folder = Path(folder or config.model_dir())
    card = card if card is not None else read_card(folder)
    return _table(folder, card, config.HOLDOUT_PREDICTIONS, "holdout predictions", columns)


def _table(folder: Path, card: dict, name: str, what: str, columns: Sequence[str]) -> pd.DataFrame:
    """A table training wrote into the folder, unchanged since (its SHA-256 is the card's),
    with `columns` and rows; read once per version of the file: a stat per call keys the
    cache, so a retrained folder is read again rather than served stale. The frame is
    shared: callers do not change it."""
    path = model_file(folder, name, what)
    pinned = card.get("tables_sha256")
    expected = pinned.get(name) if isinstance(pinned, dict) else None
    if not isinstance(expected, str):
        raise ModelSchemaError(f"the model card in {folder} pins no {name}: {FIX}")
    try:
        stat = path.stat()
    except OSError as error:
        raise ModelFileError(f"{path} cannot be read ({error.strerror}): {FIX}") from None
    version = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
    table = _read_table(path, version, what, expected)
    missing = [column for column in columns if column not in table.columns]
    if missing or table.empty:
        raise ModelSchemaError(f"{path} lacks the columns {missing} or has no rows: {FIX}")
    return table


@functools.lru_cache(maxsize=8)
def _read_table(path: Path, version: tuple, what: str, expected: str) -> pd.DataFrame:
    """The CSV at `path` (as of `version`) if its SHA-256 is `expected`, or the ModelError
    saying why it cannot be used. Two threads asking at once may both read it; each gets a
    whole frame."""
    import pandas as pd

    try:
        data = path.read_bytes()
    except OSError as error:
        raise ModelFileError(f"{path} cannot be read ({error.strerror}): {FIX}") from None
    if hashlib.sha256(data).hexdigest() != expected:
        raise ModelSchemaError(
            f"{path} is not the file this model was trained with (its hash differs from the "
            f"card's; after a retrain, restart the servers): {FIX}"
        )
    try:
        return pd.read_csv(io.BytesIO(data))
    except ValueError as error:  # not UTF-8, not CSV, empty (pandas' errors are ValueErrors)
        raise ModelFileError(
            f"{path} cannot be read as the {what} ({type(error).__name__}: "
            f"{str(error)[:80]}): {FIX}"
        ) from None


def read_card(folder: Path | None = None) -> dict:
    """The model card as a dict, once its pin vouches for it; cheap, and enough for pages
    that only show facts."""
    path, data = _pinned_card(Path(folder or config.model_dir()))
    try:
        card = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as error:
        reason = f"not UTF-8 text ({error.reason} at byte {error.start})"
        raise ModelFileError(f"{path} is {reason}: {FIX}") from None
    except (ValueError, RecursionError) as error:  # json.JSONDecodeError, nesting too deep
        raise ModelFileError(f"{path} is not JSON ({str(error)[:80]}): {FIX}") from None
    if not isinstance(card, dict):
        raise ModelFileError(f"{path} is not a model card (a JSON object): {FIX}")
    return card


def _check_shape(card: dict, folder: Path) -> Schema:
    """The schema, once the card has what serving reads, of the right types."""
    path = folder / config.CARD_JSON
    wrong = [key for key, kind in CARD_SHAPE.items() if not isinstance(card.get(key), kind)]
    if wrong:
        raise ModelFileError(f"{path} lacks {', '.join(wrong)}, or has them of another type: {FIX}")
    try:
        PriceBands.from_card(card["interval"])
        AccuracyHere.from_card(card)
        float(card["price_bounds"]["floor"]) + float(card["price_bounds"]["ceiling"])
        schema = Schema.from_list(card["features"])
    except (KeyError, TypeError, ValueError) as error:
        raise ModelFileError(
            f"{path} holds an interval, accuracy, price bounds or features this code cannot read "
            f"({type(error).__name__}: {error}): {FIX}"
        ) from None
    schema.check_roles()  # the pages find location, size, type by role: all must be there
    return schema


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
    """An artifact the card names, inside the folder and unchanged since training."""
    path = model_file(folder, card.get(key, default), "model artifact")
    if sha256_file(path) != card.get(f"{key}_sha256"):
        raise ModelSchemaError(f"{path} was changed after training (hash differs): {FIX}")
    return path


def _read_booster(path: Path) -> NativeBooster:
    """The booster in `path`, or why it cannot be used, as a ModelError."""
    try:
        return NativeBooster.read(path)
    except LibraryError as error:
        raise ModelRuntimeError(f"{error}: {REINSTALL}") from None
    except BoosterError as error:
        raise ModelFileError(f"{path} cannot be used as the model: {error}: {FIX}") from None


def _load_pipeline(folder: Path, card: dict, schema: Schema):
    """The fitted scikit-learn pipeline, rebuilt from trusted types only."""
    import skops.io as sio

    artifact = _artifact(card, folder, "artifact", config.MODEL_FILE)
    try:
        unknown = sorted(set(sio.get_untrusted_types(file=artifact)) - set(TRUSTED_TYPES))
        if unknown:
            raise ModelSchemaError(
                f"{artifact} holds types this code does not trust {unknown}: {FIX}"
            )
        pipeline = sio.load(artifact, trusted=TRUSTED_TYPES)
        encode = pipeline.named_steps["encode"]
        encoder = encode.named_transformers_["categories"]
        categories = dict(zip(encoder.feature_names_in_, encoder.categories_, strict=True))
        _check_encoding(
            encode.feature_names_in_, encode.get_feature_names_out(), categories, schema, folder
        )
    except ModelError:
        raise
    except Exception as error:  # a damaged archive fails in many ways: zip, JSON, numpy, ...
        raise ModelFileError(
            f"{artifact} cannot be read as the fitted pipeline ({type(error).__name__}: "
            f"{error}): {FIX}"
        ) from None
    return pipeline


def _load(folder: Path) -> Model:
    """Check the card (pinned), the versions and both artifacts' hashes, then read the
    booster."""
    card = read_card(folder)
    schema = _check_shape(card, folder)
    _check_versions(card, folder)
    _artifact(card, folder, "artifact", config.MODEL_FILE)
    booster = _read_booster(_artifact(card, folder, "booster", config.BOOSTER_FILE))
    names = booster.feature_names
    _check_encoding(names, names, booster.categories, schema, folder)
    return Model(booster, card, schema, folder)


@functools.lru_cache(maxsize=4)
def _load_cached(folder: Path) -> Model:
    return _load(folder)


def load_model(folder: Path | str | None = None) -> Model:
    """The model in `folder` (default: the package's `model/`), loaded once per process."""
    # config.model_dir() without building a Path (as long as a tenth of a price).
    given = str(folder) if folder else os.environ.get(config.MODEL_DIR_ENV)
    if not given:  # unset or empty: the default, as config.model_dir() reads it
        given = str(config.MODEL_DIR)
    # Resolving a path walks it with a system call per part (~50 µs, as long as a whole
    # price): remembered per path as given and, for a relative one, per working directory.
    return _load_cached(_resolved(given, "" if os.path.isabs(given) else os.getcwd()))


@functools.lru_cache(maxsize=64)
def _resolved(given: str, cwd: str) -> Path:
    return (Path(cwd) / given).resolve()
