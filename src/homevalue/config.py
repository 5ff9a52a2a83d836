"""Where things live, in one place.

Paths are anchored to the package, not the working directory, so a notebook, a cron job
and a test all find the same model. Environment variables override them for deployments
and tests that want a private copy.
"""

from __future__ import annotations

import os
from pathlib import Path

PROJ_ROOT = Path(__file__).resolve().parents[2]

MODEL_DIR = Path(os.environ.get("HOMEVALUE_MODEL_DIR", PROJ_ROOT / "model"))
MODEL_FILE = "pipeline.skops"
# The same booster for serving, readable without scikit-learn (homevalue.booster).
BOOSTER_FILE = "booster.json"
CARD_JSON = "model_card.json"
# The card's SHA-256, written by training beside it (`sha256sum` format): the card holds the
# artifacts' hashes, so this one line vouches for the whole folder.
CARD_PIN = "model_card.json.sha256"
# A card is about 10 KB; one far larger is not a card, and is refused before it is read.
CARD_MAX_BYTES = 1024 * 1024
CARD_MARKDOWN = "MODEL_CARD.md"
REFERENCE_SALES = "reference_sales.csv"
HOLDOUT_PREDICTIONS = "holdout.csv"

# The batch job's inbox. Anchored to the project like the model, so cron (whatever its
# working directory) and the dashboard (whose kernel runs in notebooks/) see the same runs.
BATCH_INBOX = PROJ_ROOT / "batch" / "inbox"
BATCH_CHUNK_ROWS = 100_000
# Uploads in the dashboard travel over the kernel's websocket (voila.json raises its message
# limit above this); larger files belong in the batch job's inbox.
UPLOAD_LIMIT_BYTES = 50 * 1024 * 1024
# Rows per chunk when scoring an upload: small enough for the progress bar to move.
UPLOAD_CHUNK_ROWS = 10_000
# A file modified this recently may still be arriving (scp, a slow share): leave it for the
# next run rather than score half of it.
BATCH_SETTLE_SECONDS = 60.0


def batch_settle_seconds() -> float:
    """The settle window, overridable with HOMEVALUE_BATCH_SETTLE_SECONDS (0 = none)."""
    return float(os.environ.get("HOMEVALUE_BATCH_SETTLE_SECONDS", BATCH_SETTLE_SECONDS))


def model_dir() -> Path:
    """The model folder, re-read from the environment so tests can point elsewhere."""
    return Path(os.environ.get("HOMEVALUE_MODEL_DIR", MODEL_DIR))


def batch_inbox() -> Path:
    """The inbox folder, overridable with HOMEVALUE_BATCH_INBOX."""
    return Path(os.environ.get("HOMEVALUE_BATCH_INBOX", BATCH_INBOX))


# The HTTP API (`make api`, homevalue.api). Loopback by default: exposing it to other machines
# is a deliberate `--host 0.0.0.0` (or HOMEVALUE_API_HOST), normally behind a proxy.
API_HOST = os.environ.get("HOMEVALUE_API_HOST", "127.0.0.1")
API_PORT = int(os.environ.get("HOMEVALUE_API_PORT", "8000"))
# uvicorn processes; each loads its own model copy (measured in tests/benchmarks/bench_api.py).
API_WORKERS = int(os.environ.get("HOMEVALUE_API_WORKERS", "1"))
# Houses per POST /v1/predict: priced one by one in the event loop (about 0.1 ms each), so the
# limit bounds how long one request can hold the server. More belongs in the batch job.
API_MAX_HOUSES = 100
# A request body larger than this is refused with 413 before it is read whole; 100 houses
# take about 38 KB of JSON (52 KB indented), so any honest request fits.
API_MAX_BODY_BYTES = 256 * 1024
# Keys in one house: four times the model's 16 fields. A house with more is refused whole,
# with one problem, before it is validated: 256 KB of JSON holds 21,000 keys, and listing
# each as "not a field of this model" made a 2.5 MB answer and held the server 0.2 s.
API_MAX_KEYS_PER_HOUSE = 64
# ',' and ':' in one body, counted before it is parsed: about two per value, so 100 houses of
# 64 keys. No valid request comes near (100 full houses, indented, numbers as "1,800": 3,700),
# and a body over it is refused in microseconds instead of parsed (6-20 ms for 256 KB of
# keys or numbers).
API_MAX_SEPARATORS = 2 * API_MAX_HOUSES * API_MAX_KEYS_PER_HOUSE
# Opt-in API keys (homevalue.apikeys): comma-separated in this variable, and/or one per line
# in the file this one names ('#' starts a comment). Neither set: the API is open, as fits
# loopback, and says so at start-up. Keys are at least this long, in the characters a Bearer
# token may hold (letters, digits, - . _ ~ + / and trailing =).
API_KEYS_VARIABLE = "HOMEVALUE_API_KEYS"
API_KEYS_FILE_VARIABLE = "HOMEVALUE_API_KEYS_FILE"
API_KEY_MIN_LENGTH = 16
# Answered without a key even when keys are set: liveness and readiness probes (a load
# balancer or Kubernetes should not need a secret; they tell only "ok" and the version).
API_OPEN_PATHS = ("/healthz", "/readyz")


def api_key_settings() -> tuple[str | None, str | None]:
    """(HOMEVALUE_API_KEYS, HOMEVALUE_API_KEYS_FILE) as set, None when unset; re-read from
    the environment at each start so tests and operators can change them."""
    return os.environ.get(API_KEYS_VARIABLE), os.environ.get(API_KEYS_FILE_VARIABLE)


# Problems listed in one 422 (all are counted, in `problems_total`): a refusal stays a few
# tens of KB whatever is sent.
API_MAX_PROBLEMS = 50
