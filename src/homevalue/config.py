"""Where things live, in one place.

Paths are anchored to the package, not the working directory, so a notebook, a cron job
and a test all find the same model. Environment variables override them for deployments
and tests that want a private copy.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
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
# Said once per run with rejected rows (a rejected row names only its nearest values).
BATCH_SCHEMA_HINT = "every column's allowed values: homevalue batch schema"
# Uploads in the dashboard travel over the kernel's websocket (voila.json raises its message
# limit above this); larger files belong in the batch job's inbox.
UPLOAD_LIMIT_BYTES = 50 * 1024 * 1024
# Rows per chunk when scoring an upload: small enough for the progress bar to move.
UPLOAD_CHUNK_ROWS = 10_000
# A file modified this recently may still be arriving (scp, a slow share): leave it for the
# next run rather than score half of it.
BATCH_SETTLE_SECONDS = 60.0
# Whatever the settle window, a file is scored only if its size and modification time are
# the same at two looks this far apart (a writer appending a row a second is caught), and
# again once it has been scored (a writer that paused longer is caught then).
BATCH_LOOK_SECONDS = 1.0

# The shape of a batch file (CLI, inbox and dashboard upload alike), checked before any work:
# past a limit the file is refused whole with a message naming the limit. 200 rows x 50,000
# columns (20 MB) took 541 s and 2 GB to score, since the cost grows with columns x chunks.
# The model has 16 inputs; an honest file carries a few ids, addresses and notes with them
# (the full Ames data set has about 80 columns; a listings export a few hundred at most).
BATCH_MAX_COLUMNS = 500
# The most a spreadsheet cell can hold (Excel, LibreOffice Calc), so no file saved from one
# is refused; a longer cell is not a house's data.
BATCH_MAX_CELL_CHARS = 32_767
# One physical line of a CSV. An honest line is ~100 bytes to a few KB; 1 MiB bounds what one
# line can make the reader hold before the other limits are checked (a file without line
# ends would otherwise be read whole).
BATCH_MAX_LINE_BYTES = 1024 * 1024


def batch_settle_seconds() -> float:
    """The settle window, overridable with HOMEVALUE_BATCH_SETTLE_SECONDS (0 = none)."""
    return float(os.environ.get("HOMEVALUE_BATCH_SETTLE_SECONDS", BATCH_SETTLE_SECONDS))


def batch_look_seconds() -> float:
    """The pause between the two looks, overridable with HOMEVALUE_BATCH_LOOK_SECONDS."""
    return float(os.environ.get("HOMEVALUE_BATCH_LOOK_SECONDS", BATCH_LOOK_SECONDS))


def batch_max_columns() -> int:
    """Columns per batch file, overridable with HOMEVALUE_BATCH_MAX_COLUMNS."""
    return int(os.environ.get("HOMEVALUE_BATCH_MAX_COLUMNS", BATCH_MAX_COLUMNS))


def batch_max_cell_chars() -> int:
    """Characters per cell, overridable with HOMEVALUE_BATCH_MAX_CELL_CHARS."""
    return int(os.environ.get("HOMEVALUE_BATCH_MAX_CELL_CHARS", BATCH_MAX_CELL_CHARS))


def batch_max_line_bytes() -> int:
    """Bytes per CSV line, overridable with HOMEVALUE_BATCH_MAX_LINE_BYTES."""
    return int(os.environ.get("HOMEVALUE_BATCH_MAX_LINE_BYTES", BATCH_MAX_LINE_BYTES))


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
# Houses explained per request (`?explain=true`, `"explain": true`): an explanation costs
# about 2 ms of the event loop (TreeSHAP over the 800 trees), twenty times the price, so 100
# explained houses would hold the server 0.2 s. More is refused; the batch job explains files.
API_MAX_EXPLAINED = 10
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


# The dashboards' limits (homevalue.dashboards), each overridable by its environment variable.
# A page's kernel measured 154-172 MB RSS (tests/benchmarks/bench_dashboards.py): budget 200.
KERNEL_TYPICAL_MB = 200
# Scoring a 49 MB upload took the batch page's kernel to 774 MB at its peak: twice that.
KERNEL_MEMORY_LIMIT_MB = 1536
# The share of the machine's memory the dashboards' kernels may take, at the typical size.
KERNEL_MEMORY_SHARE = 0.75
# Below this much free host memory no kernel is started; below half of it the largest
# viewer kernel is shut down.
HOST_MEMORY_FLOOR_MB = 1024
# New pages (kernels) per client address per minute: a person reloading never meets it.
KERNELS_PER_CLIENT_PER_MINUTE = 10
# A page served but never connected to by a browser (a script's GET) keeps its kernel this
# long; 20 viewers arriving at once on 2 cores connected within 70 s (bench).
UNCLAIMED_KERNEL_SECONDS = 120.0

# A price page's link (its URL query, also what the page keeps in the browser's address):
# every field of a house takes about 400 characters; anything far longer is refused whole.
LINK_MAX_CHARS = 2048
LINK_MAX_FIELDS = 64
LINK_PROBLEMS_SHOWN = 5  # a link's unusable values listed in its notice (the rest counted)


@dataclass(frozen=True)
class DashboardLimits:
    max_kernels: int
    kernels_per_client_per_minute: int
    kernel_memory_limit_mb: int
    host_memory_floor_mb: int
    unclaimed_seconds: float
    # Addresses of reverse proxies whose X-Forwarded-For names the real client.
    trusted_proxies: tuple[str, ...]


# Set it to require a token for the dashboards (Jupyter's token login: open the site once
# with ?token=..., a cookie does the rest). Unset: open, as on a developer's machine.
DASHBOARD_TOKEN_ENV = "HOMEVALUE_DASHBOARD_TOKEN"


def machine_memory_mb() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20


# The preheated pools: a pool's kernels wait, built, for the next viewers (a burst takes
# them at once, each saving its viewer a cold start of about 2 CPU-s). A pool with a
# "pool_max" in voila.json gets as many typical kernels as fit in this share of the
# machine's memory, between its "pool_size" and its "pool_max" (HOMEVALUE_POOL_MEMORY_SHARE;
# 0: voila.json's pool_size).
POOL_MEMORY_SHARE = 0.05


def pool_size_from_memory(least: int, most: int) -> int:
    """A preheated pool's size: KERNEL_TYPICAL_MB kernels in POOL_MEMORY_SHARE of the
    machine's memory (6 on 24 GiB), at least `least` and at most `most`."""
    share = float(os.environ.get("HOMEVALUE_POOL_MEMORY_SHARE", POOL_MEMORY_SHARE))
    fits = int(machine_memory_mb() * share / KERNEL_TYPICAL_MB)
    return max(least, min(most, fits))


def pool_sizes(pools: dict) -> dict:
    """voila.json's kernel_pools_config with each "pool_max" entry sized from memory."""
    return {
        name: {**entry, "pool_size": pool_size_from_memory(entry["pool_size"], entry["pool_max"])}
        if "pool_max" in entry
        else entry
        for name, entry in pools.items()
    }


# Kernels forked from a warm interpreter (homevalue.dashboards.zygote) instead of started
# cold: a kernel start is a fork plus its notebook, without the ~1.6 CPU-s of Python starting
# and importing ipykernel, pandas, scikit-learn, LightGBM and the widgets (bench).
# Off by default until it passes the whole suite: with it on, tests/test_dashboard_security.py
# ::test_the_server_never_holds_more_kernels_than_its_cap admitted a 7th viewer where the cap
# (pool of 4 + 6 viewers = 10) should have refused it. HOMEVALUE_KERNEL_FORK=1 turns it on.
KERNEL_FORK_ENV = "HOMEVALUE_KERNEL_FORK"
# What the zygote imports once for all its kernels: ipykernel and what the price page (the
# page crowds open) imports; homevalue first, so HOMEVALUE_WITHOUT_PYARROW acts before
# pandas loads. Imports only: nothing that starts threads or loads the model (zygote.py).
ZYGOTE_PRELOAD = ("homevalue", "ipykernel.kernelapp", "ipykernel.ipkernel", "homevalue.ui.price")
# Thread pools some of those imports start at load (OpenBLAS, with numpy: one thread per
# core; Arrow's jemalloc, with pandas: a background thread) would be lost in a fork, so the
# zygote imports without them (unless the environment sets these). Its kernels inherit
# single-threaded BLAS: a one-house page does no sizeable linear algebra.
ZYGOTE_ENV_DEFAULTS = {
    "OPENBLAS_NUM_THREADS": "1",
    "JE_ARROW_MALLOC_CONF": "background_thread:false",
}
# The zygote's imports take a cold kernel's start (~2 s) on a quiet host; far more under a
# crowd on 2 cores. Kernels asked for meanwhile wait for it, then fork.
ZYGOTE_READY_SECONDS = 120.0
# A fork answers in milliseconds; a zygote that takes this long is stopped and not used again.
ZYGOTE_FORK_SECONDS = 10.0
# After a zygote fails (it died, or did not become ready), kernels start cold for this long
# before another zygote is tried: a zygote that cannot start does not cost every viewer.
ZYGOTE_RETRY_SECONDS = 30.0
# Kernels with different environments (beyond Voilà's per-kernel variables) fork from
# different zygotes (each about one kernel's memory); beyond this many, they start cold.
ZYGOTE_MAX = 4
# A forked kernel's exit is seen at once through its pidfd; the zygote's report of its exit
# status follows within milliseconds. Waited for this long, then the status is "unknown".
ZYGOTE_EXIT_REPORT_SECONDS = 1.0


def kernel_fork_enabled() -> bool:
    """Whether the dashboards fork kernels from a zygote (HOMEVALUE_KERNEL_FORK, default off)."""
    return os.environ.get(KERNEL_FORK_ENV, "0").strip().lower() in ("1", "true", "yes", "on")


def default_max_kernels() -> int:
    """As many typical kernels as fit in the dashboards' share of this machine's memory."""
    return max(4, int(machine_memory_mb() * KERNEL_MEMORY_SHARE / KERNEL_TYPICAL_MB))


def dashboard_limits() -> DashboardLimits:
    env = os.environ.get
    proxies = env("HOMEVALUE_TRUSTED_PROXIES", "")
    return DashboardLimits(
        max_kernels=int(env("HOMEVALUE_MAX_KERNELS") or default_max_kernels()),
        kernels_per_client_per_minute=int(
            env("HOMEVALUE_KERNELS_PER_CLIENT_PER_MINUTE", KERNELS_PER_CLIENT_PER_MINUTE)
        ),
        kernel_memory_limit_mb=int(env("HOMEVALUE_KERNEL_MEMORY_MB", KERNEL_MEMORY_LIMIT_MB)),
        host_memory_floor_mb=int(env("HOMEVALUE_HOST_MEMORY_FLOOR_MB", HOST_MEMORY_FLOOR_MB)),
        unclaimed_seconds=float(
            env("HOMEVALUE_UNCLAIMED_KERNEL_SECONDS", UNCLAIMED_KERNEL_SECONDS)
        ),
        trusted_proxies=tuple(p.strip() for p in proxies.split(",") if p.strip()),
    )
