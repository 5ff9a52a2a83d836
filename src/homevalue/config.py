"""Where things live, in one place.

Paths are anchored to the package, not the working directory, so a notebook, a cron job
and a test all find the same folders; environment variables override them for deployments
and tests that want a private copy. Two kinds of folder, and where each is found:

- The model, only ever read: HOMEVALUE_MODEL_DIR; else, when the package runs from a
  checkout (`make install`'s editable install, the tests), the checkout's model/, which
  `make model` rewrites; else, installed from a wheel (`pip install .`, a wheel file), the
  copy the wheel carries as package data (homevalue/data/model in site-packages,
  pyproject.toml's force-include).
- What homevalue writes (the batch job's inbox, outputs and run history, the feedback
  store): under HOMEVALUE_HOME; else the checkout (its batch/, beside model/); else, from a
  wheel, $XDG_DATA_HOME/homevalue (~/.local/share/homevalue): never site-packages, which
  its users may not write, nor the working directory, which differs between cron, a
  dashboard's kernel and a shell. Each also has a variable of its own
  (HOMEVALUE_BATCH_INBOX, HOMEVALUE_FEEDBACK_DB). Compiled trees are a cache: cache_dir().

This module imports nothing beyond the standard library (`homevalue/__init__.py` is lazy):
the CLI, the servers and the Dask scheduler read it before deciding what else to load.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
# The checkout the package runs from, if any (src/homevalue/ in a folder with pyproject.toml):
# its model/, batch/, voila.json, deploy/ and tests/. A wheel installed in site-packages has
# none, and nothing that runs from a wheel may need it.
PROJ_ROOT = PACKAGE_DIR.parents[1]
FROM_CHECKOUT = PACKAGE_DIR.parent.name == "src" and (PROJ_ROOT / "pyproject.toml").is_file()
# The model a wheel carries (absent from a checkout, whose model/ is read instead).
PACKAGED_MODEL_DIR = PACKAGE_DIR / "data" / "model"
HOME_VARIABLE = "HOMEVALUE_HOME"


def home() -> Path:
    """The folder homevalue writes to (see above), re-read from the environment."""
    if os.environ.get(HOME_VARIABLE):
        return Path(os.environ[HOME_VARIABLE])
    if FROM_CHECKOUT:
        return PROJ_ROOT
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "homevalue"


MODEL_DIR_ENV = "HOMEVALUE_MODEL_DIR"
MODEL_DIR = Path(
    os.environ.get(MODEL_DIR_ENV) or (PROJ_ROOT / "model" if FROM_CHECKOUT else PACKAGED_MODEL_DIR)
)
# The model folder's files: training writes them, homevalue.model alone reads them.
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

# The batch job's inbox, under home() (as this process started; batch_inbox() re-reads),
# so cron (whatever its working directory) and the dashboard (whose kernel runs in
# notebooks/) see the same runs.
BATCH_INBOX = home() / "batch" / "inbox"
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


# `homevalue batch score --workers N` (a Dask LocalCluster, homevalue.scaleout): scoring is
# CPU-bound, so worker processes past the CPUs only share them, each with its own model copy
# in memory; more is refused (HOMEVALUE_BATCH_MAX_WORKERS raises it).
# `--cluster ADDRESS`: how long to wait for the scheduler to answer, then for it to have a
# worker, before saying which is missing (HOMEVALUE_DASK_CONNECT_SECONDS).
DASK_CONNECT_SECONDS = 10.0


def batch_max_workers() -> int:
    """Most --workers for a local cluster: this machine's CPUs, or HOMEVALUE_BATCH_MAX_WORKERS."""
    return int(os.environ.get("HOMEVALUE_BATCH_MAX_WORKERS") or os.cpu_count() or 1)


def dask_connect_seconds() -> float:
    """The wait for a Dask scheduler (and a worker), overridable with
    HOMEVALUE_DASK_CONNECT_SECONDS."""
    return float(os.environ.get("HOMEVALUE_DASK_CONNECT_SECONDS", DASK_CONNECT_SECONDS))


# The accuracy bar a model must meet on its held-out sales, set when the project began
# (issue 2): RMSLE at most 0.13 (a typical miss of about 13%, large misses weighing more)
# and MAPE at most 10%. The model report marks each as met or MISSED; MODEL_CARD.md quotes
# them; tests/test_training.py holds the cross-validated RMSLE to the first.
TARGET_RMSLE = 0.13
TARGET_MAPE_PERCENT = 10.0

# Drift monitoring (homevalue.drift): each batch run's inputs and prices against the training
# distribution in the model card, by the population stability index (PSI).
# Bins per numeric input: the training data's deciles (a feature with at most this many
# distinct values gets one bin per value); categories get one bin per level plus "other".
DRIFT_BINS = 10
# PSI thresholds, the credit-scoring convention PSI was made for (Siddiqi, "Credit Risk
# Scorecards", Wiley 2006; Yurdakul, "Statistical properties of the population stability
# index", 2018): under 0.10 no real change; 0.10 to 0.25 a change worth watching; 0.25 and
# over a shift to act on (look at the inputs; retrain if they are genuine).
PSI_WATCH = 0.10
PSI_ACT = 0.25
# The share given to an empty bin (of the run or of training) so the logarithm stays finite;
# Evidently's PSI does the same with 0.0001. One empty bin where training had 10% adds
# about 0.1 x ln(0.1 / 0.0001) = 0.69: a real shift still reads as one.
PSI_EPSILON = 1e-4
# Below this many valid rows a run's PSI is shown but not judged: sampling noise alone gives
# PSI of about (bins - 1) / rows (it is a chi-square over rows), 0.2 for 44 rows in 10 bins.
# At 500 rows the 95th percentile of that noise is under 0.10 even for the 29 bins of the
# neighbourhood (chi-square 41.3 / 500 = 0.083).
DRIFT_MIN_ROWS = 500
# The latest runs the Monitoring page and `homevalue monitor` list one by one.
MONITOR_RUNS_SHOWN = 12
# `homevalue monitor` exits with this when a PSI reaches PSI_ACT (1 stays "could not run",
# 2 a usage error such as a bad --since), so cron can mail an alert.
EXIT_DRIFT = 3

# Where compiled models are kept (homevalue.compiled): one shared library per booster,
# named by the booster's SHA-256, so every process on the machine compiles it once. Outside
# model/ (which the servers only read) and outside the package. Whoever can write this
# folder can run code in every process that prices, as with the virtual environment: keep
# it the serving user's own (the default is).
CACHE_SUBDIR = "homevalue"
# A batch file at least this large compiles the model first if the cache lacks it: 12 s of
# compiling saves ~25 µs a row, so it pays for itself within the run from ~500k rows
# (~40 MB of CSV). Smaller files use LightGBM's library until `make model` or
# `python -m homevalue.compiled` has compiled it.
BATCH_COMPILE_MIN_BYTES = 32 * 1024 * 1024


def cache_dir() -> Path:
    """HOMEVALUE_CACHE_DIR, else $XDG_CACHE_HOME/homevalue, else ~/.cache/homevalue."""
    if os.environ.get("HOMEVALUE_CACHE_DIR"):
        return Path(os.environ["HOMEVALUE_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / CACHE_SUBDIR


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
    return Path(os.environ.get(MODEL_DIR_ENV) or MODEL_DIR)


def batch_inbox() -> Path:
    """The inbox folder: HOMEVALUE_BATCH_INBOX, else batch/inbox under home()."""
    return Path(os.environ.get("HOMEVALUE_BATCH_INBOX") or home() / "batch" / "inbox")


# Feedback (homevalue.feedback): sale prices and "this price looks wrong" reports from the
# price page and POST /v1/feedback, in one SQLite file beside the batch history (so the
# dashboards and the API of one machine share it; HOMEVALUE_FEEDBACK_DB moves it).
FEEDBACK_DB_NAME = "feedback.sqlite"
# How long a report waits for another process's write before it is refused as "busy" (a
# write takes milliseconds; a viewer or client is told to try again in a moment).
FEEDBACK_BUSY_SECONDS = 5.0
# A reported sale price outside the training sales' prices (the card's data.price_range)
# widened by this factor each way is refused as absurd: $8,750 to $2,500,000 for the shipped
# model. Wide enough for an unusual house and for today's dollars (the model's are
# 2006-2010's), narrow enough to catch a price typed in thousands ("182" for $182,000) or
# with digits too many.
FEEDBACK_PRICE_FACTOR = 4.0
# A "looks wrong" comment: a sentence or two, one line or a few. Longer text is not feedback
# on one price, and every character is kept for someone to read.
FEEDBACK_COMMENT_MAX_CHARS = 500
# Floods: reports in the last hour from one viewer's page (its kernel's session: reloading
# starts another, which the dashboards' kernel budget per address bounds) and from one API
# client (its API key, or its address when the API is open). Over them a report is refused
# with when to try again, and nothing is written. A person reports a handful of houses; a
# client app may send its sales as they close.
FEEDBACK_PER_SESSION_PER_HOUR = 10
FEEDBACK_PER_API_CLIENT_PER_HOUR = 200
# Reports kept per UTC day in all, whoever sends them: bounds the store's growth (a report
# is about 1 KB, so at most about 10 MB a day) whatever the number of sessions or keys.
FEEDBACK_MAX_ROWS_PER_DAY = 10_000
# One POST /v1/feedback: a house and a report is under 2 KB; far more is not one report.
FEEDBACK_MAX_BODY_BYTES = 16 * 1024


def feedback_db() -> Path:
    """The feedback store, overridable with HOMEVALUE_FEEDBACK_DB (default: beside the batch
    history, `batch/feedback.sqlite`)."""
    default = batch_inbox().parent / FEEDBACK_DB_NAME
    return Path(os.environ.get("HOMEVALUE_FEEDBACK_DB") or default)


@dataclass(frozen=True)
class FeedbackLimits:
    per_session_per_hour: int
    per_api_client_per_hour: int
    max_rows_per_day: int
    busy_seconds: float


def feedback_limits() -> FeedbackLimits:
    """The feedback limits, each overridable by its environment variable."""
    env = os.environ.get
    return FeedbackLimits(
        per_session_per_hour=int(
            env("HOMEVALUE_FEEDBACK_PER_SESSION_PER_HOUR", FEEDBACK_PER_SESSION_PER_HOUR)
        ),
        per_api_client_per_hour=int(
            env("HOMEVALUE_FEEDBACK_PER_API_CLIENT_PER_HOUR", FEEDBACK_PER_API_CLIENT_PER_HOUR)
        ),
        max_rows_per_day=int(env("HOMEVALUE_FEEDBACK_MAX_ROWS_PER_DAY", FEEDBACK_MAX_ROWS_PER_DAY)),
        busy_seconds=float(env("HOMEVALUE_FEEDBACK_BUSY_SECONDS", FEEDBACK_BUSY_SECONDS)),
    )


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

# Prometheus metrics, `GET /metrics` on the API and on the dashboards' server
# (homevalue.metrics). They tell traffic, load and the model version, which anonymous viewers
# have no business reading: without a token they are served only to this machine, asked
# directly (a loopback peer, no proxy's X-Forwarded-For/Forwarded/X-Real-IP); with
# HOMEVALUE_METRICS_TOKEN set, only to a request carrying `Authorization: Bearer <token>`
# (Prometheus' `authorization: {credentials_file: ...}`), loopback included.
METRICS_PATH = "/metrics"
METRICS_TOKEN_VARIABLE = "HOMEVALUE_METRICS_TOKEN"
METRICS_TOKEN_MIN_LENGTH = 16
# The API's latency histogram: a price takes about 1 ms (p50) and 7 ms (p99) on 2 cores, a
# list of 100 houses or ten explanations tens of ms; anything past a second is an incident.
METRICS_LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
)  # fmt: skip
# The dashboards' page histogram: a page is streamed while its cells run, 1-3 s (bench).
METRICS_PAGE_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 60.0)


def metrics_token() -> str | None:
    """HOMEVALUE_METRICS_TOKEN as set (None when unset), re-read at each start."""
    return os.environ.get(METRICS_TOKEN_VARIABLE)


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
# Compiled page templates the dashboards' server keeps for all its renders
# (homevalue.dashboards.rendering): the price page uses 15, each a few kB of code; the bound
# only matters for a server whose templates are edited while it runs.
COMPILED_TEMPLATES_KEPT = 256


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
