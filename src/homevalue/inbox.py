"""The cron job: score every new file dropped in an inbox, once, safely, with a history.

Layout beside the inbox (default `./batch/inbox`):

    batch/inbox/     files to score (.csv/.parquet; names starting with "." or ending in
                     .part/.tmp are ignored, so copy in under such a name and rename; a
                     file modified in the last minute is left for the next run)
    batch/outbox/    <name>.run<id>.scored.csv and <name>.run<id>.rejected.csv
    batch/archive/   inputs whose outputs are safely on disk
    batch/failed/    inputs that cannot be scored, each with <name>.error.txt saying why
    batch/history.sqlite   one row per file per run, and one per upload on the batch page
                           (source "page"; its outputs went to the viewer, not the outbox)
    batch/.inbox.lock      held while a run is going; a second run refuses to start

Order of work per file: record "running", write outputs atomically, record "ok", then move
the input to archive. A crash at any point leaves the input in the inbox and no partial
output under a real name; the next run marks the crashed record "interrupted" and scores
the file again. A file whose content was already scored is archived as "skipped".

A file is scored only once it has settled: older than the settle window, the same size and
time at two looks a second apart, and still the same once scored (else it is "waiting").
Whose fault a failure is decides where the input goes: a file that cannot be scored goes to
failed/; an outbox that cannot be written (read-only, full) is the operator's to fix, so the
input stays in the inbox for the next run ("error"). A history that cannot be read is moved
aside (history.sqlite.corrupt-<time>) and a new one started, so scoring never stops on it.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from homevalue import config
from homevalue.batch import fingerprint, fsync_dir, score_file, writing_into
from homevalue.drift import Profile, reference_of
from homevalue.errors import (
    BatchFileChangedError,
    BatchFileError,
    BatchOutputError,
    HomevalueError,
)
from homevalue.model import Model, load_model, sha256_file
from homevalue.monitor import RUN_COLUMNS, TABLES, record_drift, run_columns_sql

log = logging.getLogger("homevalue.inbox")

# A folder of the job that cannot be written is the operator's to fix, not the file's fault.
FIX_FOLDER = "Free or fix that folder and run again"
IGNORED_SUFFIXES = (".part", ".tmp", ".partial", ".crdownload")
SCHEMA = (
    """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    file TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    rows_scored INTEGER,
    rows_rejected INTEGER,
    status TEXT NOT NULL,
    error TEXT,
    output TEXT,
    rejected_output TEXT,
    model_version TEXT,
    pid INTEGER,
    source TEXT NOT NULL DEFAULT 'inbox'
);
CREATE INDEX IF NOT EXISTS runs_sha256 ON runs (sha256, status);
"""
    + TABLES
)  # each run's profile and drift (homevalue.monitor)
# Where a run came from: the cron job's inbox, a viewer's upload on the batch page (whose
# outputs were the viewer's downloads, so it has no output on disk), or `homevalue batch
# score` (its outputs where the operator asked).
SOURCES = ("inbox", "page", "cli")
# A history written before runs had a source: its rows were all inbox runs.
ADD_SOURCE = "ALTER TABLE runs ADD COLUMN source TEXT NOT NULL DEFAULT 'inbox'"


class InboxBusy(HomevalueError):
    """Another inbox run holds the lock."""


@dataclass(frozen=True)
class BatchDirs:
    """The folders and files of one inbox, all beside it."""

    inbox: Path

    @property
    def root(self) -> Path:
        return self.inbox.parent

    @property
    def outbox(self) -> Path:
        return self.root / "outbox"

    @property
    def archive(self) -> Path:
        return self.root / "archive"

    @property
    def failed(self) -> Path:
        return self.root / "failed"

    @property
    def history(self) -> Path:
        return self.root / "history.sqlite"

    @property
    def lock(self) -> Path:
        return self.root / ".inbox.lock"

    def create(self) -> None:
        """Make the folders; one that cannot be made is reported for each file that needs it."""
        self.inbox.mkdir(parents=True, exist_ok=True)
        for folder in (self.outbox, self.archive, self.failed):
            with contextlib.suppress(OSError):
                folder.mkdir(parents=True, exist_ok=True)


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@contextlib.contextmanager
def exclusive_lock(path: Path) -> Iterator[None]:
    """Hold an flock for the run; the kernel releases it if the process dies."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as error:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            raise InboxBusy(
                f"another inbox run is in progress ({holder}); this one did nothing"
            ) from error
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} since {now()}\n")
        handle.flush()
        try:
            yield
        finally:
            handle.seek(0)
            handle.truncate()
            fcntl.flock(handle, fcntl.LOCK_UN)


def connect(history: Path) -> sqlite3.Connection:
    """Open (or create) the history; sqlite3.DatabaseError if it is damaged."""
    history.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(history, isolation_level=None, timeout=30)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.executescript(SCHEMA)
        _add_source(db)
        # A truncated file can open and still hold broken pages: find them now, not mid-run.
        problems = [row[0] for row in db.execute("PRAGMA quick_check")]
        if problems != ["ok"]:
            raise sqlite3.DatabaseError(f"database disk image is malformed: {problems[0]}")
    except BaseException:
        db.close()
        raise
    return db


def _columns(db: sqlite3.Connection) -> set[str]:
    return {row[1] for row in db.execute("PRAGMA table_info(runs)")}


def _add_source(db: sqlite3.Connection) -> None:
    """Give an older history its `source` column; a process doing the same meanwhile wins."""
    if "source" in _columns(db):
        return
    try:
        db.execute(ADD_SOURCE)
    except sqlite3.OperationalError as error:
        if "duplicate column" not in str(error):
            raise


def is_damaged(error: sqlite3.Error) -> bool:
    """Whether sqlite says the file is not a database or is corrupt (not merely busy)."""
    code = getattr(error, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)
    return "malformed" in str(error) or "not a database" in str(error)


def open_history(history: Path, outbox: Path) -> sqlite3.Connection:
    """The history, or a new one if it cannot be read: a damaged file must not stop scoring.

    The damaged file (and its -wal/-shm) is kept beside it for inspection, the move is
    logged and recorded as the new history's first row, and run ids go on above those in
    the outbox's file names, so no earlier output is overwritten.
    """
    if not _sqlite_or_absent(history):  # set aside before sqlite touches its -wal and -shm
        reason = "file is not a database"
    else:
        try:
            return connect(history)
        except sqlite3.DatabaseError as error:
            if not is_damaged(error):
                raise
            reason = error
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    aside = history.with_name(f"{history.name}.corrupt-{stamp}")
    digest = sha256_file(history)
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.replace(
                history.with_name(history.name + suffix), aside.with_name(aside.name + suffix)
            )
    log.warning(
        "the batch history %s could not be read (%s); it was moved to %s and a new history "
        "was started",
        history,
        reason,
        aside,
    )
    db = connect(history)
    db.execute(
        "INSERT INTO runs (id, started_at, finished_at, file, sha256, status, error, pid) "
        "VALUES (?, ?, ?, ?, ?, 'reset', ?, ?)",
        (
            _last_run_id(outbox) + 1,
            now(),
            now(),
            history.name,
            digest,
            f"the previous history could not be read ({reason}); it was moved to {aside.name}",
            os.getpid(),
        ),
    )
    return db


def _sqlite_or_absent(history: Path) -> bool:
    """Whether the file is absent, empty, or starts as every SQLite database does."""
    try:
        with open(history, "rb") as handle:
            return handle.read(16) in (b"", b"SQLite format 3\0")
    except FileNotFoundError:
        return True


def _last_run_id(outbox: Path) -> int:
    """The highest run id in the outbox's names (`<name>.run<id>.scored.csv`), or 0."""
    found = re.compile(r"\.run(\d+)\.(?:scored|rejected)\.[^.]+$")
    with contextlib.suppress(OSError):
        ids = [int(m[1]) for p in outbox.iterdir() if (m := found.search(p.name))]
        return max(ids, default=0)
    return 0


def record_upload(
    history: Path,
    *,
    file: str,
    sha256: str,
    status: str,
    started_at: str,
    rows_scored: int | None = None,
    rows_rejected: int | None = None,
    error: str | None = None,
    model_version: str | None = None,
    source: str = "page",
    profile: Profile | None = None,
    card: dict | None = None,
) -> int:
    """Add a finished page upload (or, with `source="cli"`, a `homevalue batch score` run)
    to the history, with its drift against `card`'s training data if `profile` is given; its
    id.

    One transaction of a finished row (never "running", which the next inbox run would mark
    interrupted), under sqlite's own locking, so it is safe while the cron job writes. A
    damaged history raises sqlite3.DatabaseError and is left for the inbox job to set aside.
    """
    with contextlib.closing(connect(history)) as db:
        db.execute("BEGIN IMMEDIATE")
        try:
            run_id = db.execute(
                "INSERT INTO runs (started_at, finished_at, file, sha256, rows_scored, "
                "rows_rejected, status, error, model_version, pid, source) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    started_at,
                    now(),
                    file,
                    sha256,
                    rows_scored,
                    rows_rejected,
                    status,
                    error,
                    model_version,
                    os.getpid(),
                    source,
                ),
            ).lastrowid
            record_drift(db, run_id, reference_of(card or {}), profile)
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        return run_id


# The monitor's columns plus where a run's output went and why it failed; `source` last,
# so the CLI's columns stay where scripts reading them expect them.
HISTORY_COLUMNS = [
    *RUN_COLUMNS[:-2],
    "error",
    "output",
    "rejected_output",
    *RUN_COLUMNS[-2:],
]


def run_history(history: Path, limit: int = 50) -> pd.DataFrame:
    """The latest runs, newest first (empty table if the job never ran).

    Read-only, so a history written before runs had a source is read as it is: its runs
    are all the inbox's.
    """
    if not Path(history).exists():
        return pd.DataFrame(columns=HISTORY_COLUMNS)
    try:
        with contextlib.closing(sqlite3.connect(f"file:{history}?mode=ro", uri=True)) as db:
            return pd.read_sql_query(
                f"SELECT {run_columns_sql(db, HISTORY_COLUMNS)} FROM runs ORDER BY id DESC LIMIT ?",
                db,
                params=(limit,),
            )
    except (sqlite3.Error, pd.errors.DatabaseError) as error:  # pandas wraps sqlite's errors
        reason = error.__cause__ or error  # sqlite's own words, not pandas' wrapping
        advice = (
            ". The next `homevalue batch inbox` sets it aside and starts a new history"
            if isinstance(reason, sqlite3.Error) and is_damaged(reason)
            else ""
        )
        raise BatchFileError(
            f"cannot read the batch history {history}: {reason}{advice}"
        ) from error


def pending_files(inbox: Path) -> list[Path]:
    """Files waiting in the inbox, oldest name first; half-copied files are left alone."""
    if not inbox.exists():
        return []
    return sorted(
        p
        for p in inbox.iterdir()
        if p.is_file() and not p.name.startswith(".") and not p.name.endswith(IGNORED_SUFFIXES)
    )


def move_aside(path: Path, folder: Path) -> Path:
    """Move `path` into `folder` without overwriting an earlier file of the same name."""
    with writing_into(folder, f"cannot move {path.name} into", FIX_FOLDER):
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / path.name
        if target.exists():
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
            target = folder / f"{path.stem}.{stamp}{path.suffix}"
        os.replace(path, target)
        fsync_dir(folder)
        fsync_dir(path.parent)
    return target


def _recover(db: sqlite3.Connection, dirs: BatchDirs) -> None:
    """Tidy after a run that died: mark its records, drop its temporary outputs."""
    db.execute(
        "UPDATE runs SET status='interrupted', finished_at=?, "
        "error='the run stopped before finishing; the file stayed in the inbox' "
        "WHERE status='running'",
        (now(),),
    )
    with contextlib.suppress(OSError):  # an outbox that cannot be read is reported per file
        for leftover in dirs.outbox.glob(".*.tmp"):
            leftover.unlink(missing_ok=True)


STAYS = "; the file stays in the inbox for the next run"


def _score_one(db, dirs: BatchDirs, path: Path, seen, model: Model, progress) -> dict:
    """Score one settled file and file it away; an unwritable folder leaves it in the inbox."""
    try:
        return _score_and_file(db, dirs, path, seen, model, progress)
    except BatchOutputError as error:
        db.execute(
            "UPDATE runs SET status='error', finished_at=?, error=? "
            "WHERE status='running' AND file=? AND pid=?",
            (now(), f"{error}{STAYS}", path.name, os.getpid()),
        )
        return {"file": path.name, "status": "error", "error": f"{error}{STAYS}"}


def _score_and_file(db, dirs: BatchDirs, path: Path, seen, model: Model, progress) -> dict:
    digest = sha256_file(path)
    earlier = db.execute(
        "SELECT id, file FROM runs WHERE sha256=? AND status='ok' AND source='inbox' "
        "ORDER BY id LIMIT 1",
        (digest,),
    ).fetchone()
    if earlier:
        moved = move_aside(path, dirs.archive)
        db.execute(
            "INSERT INTO runs (started_at, finished_at, file, sha256, status, error, "
            "model_version, pid) VALUES (?, ?, ?, ?, 'skipped', ?, ?, ?)",
            (
                now(),
                now(),
                path.name,
                digest,
                f"same content as run {earlier[0]} ({earlier[1]}); archived as {moved.name}",
                model.version,
                os.getpid(),
            ),
        )
        reason = f"same content as run {earlier[0]}"
        return {"file": path.name, "status": "skipped", "error": reason}
    run_id = db.execute(
        "INSERT INTO runs (started_at, file, sha256, status, model_version, pid) "
        "VALUES (?, ?, ?, 'running', ?, ?)",
        (now(), path.name, digest, model.version, os.getpid()),
    ).lastrowid
    try:
        result = score_file(
            path, dirs.outbox, model=model, tag=f"run{run_id}", progress=progress, seen=seen
        )
    except BatchFileError as error:
        moved = move_aside(path, dirs.failed)
        with writing_into(dirs.failed, f"cannot move {moved.name} into", FIX_FOLDER):
            (dirs.failed / f"{moved.name}.error.txt").write_text(f"{error}\n")
        _finish(db, run_id, "failed", str(error))
        return {"file": path.name, "status": "failed", "error": str(error)}
    except BatchFileChangedError as error:  # a writer was still busy: try again next run
        _finish(db, run_id, "changed", str(error))
        return {"file": path.name, "status": "waiting", "error": str(error)}
    except BatchOutputError:
        raise
    except Exception as error:
        _finish(db, run_id, "error", f"{type(error).__name__}: {error}{STAYS}")
        raise
    # Drift before "ok": a crash between the two leaves the run "interrupted", never a
    # finished run without its drift.
    record_drift(db, run_id, reference_of(model.card), result.profile)
    db.execute(
        "UPDATE runs SET status='ok', finished_at=?, rows_scored=?, rows_rejected=?, output=?, "
        "rejected_output=? WHERE id=?",
        (
            now(),
            result.rows_scored,
            result.rows_rejected,
            str(result.scored_path),
            str(result.rejected_path),
            run_id,
        ),
    )
    move_aside(path, dirs.archive)  # if this fails, the next run finds it done and archives it
    return {
        "file": path.name,
        "status": "ok",
        "rows_scored": result.rows_scored,
        "rows_rejected": result.rows_rejected,
        "output": str(result.scored_path),
    }


def _finish(db, run_id: int, status: str, error: str) -> None:
    db.execute(
        "UPDATE runs SET status=?, finished_at=?, error=? WHERE id=?",
        (status, now(), error, run_id),
    )


def settling(files: list[Path], seconds: float) -> tuple[list[Path], list[dict]]:
    """Split files into those ready to score and those modified too recently to trust."""
    ready, waiting = [], []
    now_ = time.time()
    for path in files:
        age = now_ - path.stat().st_mtime
        if age < seconds:
            waiting.append(
                {
                    "file": path.name,
                    "status": "waiting",
                    "error": f"modified {age:.0f} s ago, may still be arriving; "
                    "left for the next run",
                }
            )
        else:
            ready.append(path)
    return ready, waiting


def steady(files: list[Path], seconds: float) -> tuple[list[tuple[Path, tuple]], list[dict]]:
    """Split files into those unchanged across two looks `seconds` apart and those growing.

    Whatever the settle window (even 0), a file a writer is still appending to changes size
    or time between the looks. Each steady file comes with what was seen, so that scoring
    can check it is still the same file once read.
    """
    if not files:
        return [], []
    first = {}
    for path in files:
        with contextlib.suppress(FileNotFoundError):  # taken away meanwhile: nothing to do
            first[path] = fingerprint(path)
    time.sleep(seconds)
    steady_files, growing = [], []
    for path in first:
        with contextlib.suppress(FileNotFoundError):
            seen = fingerprint(path)
            if seen == first[path]:
                steady_files.append((path, seen))
                continue
            reason = f"still being written (its size or time changed within {seconds:g} s)"
            growing.append(
                {
                    "file": path.name,
                    "status": "waiting",
                    "error": f"{reason}; left for the next run",
                }
            )
    return steady_files, growing


def run_inbox(
    inbox: Path | str | None = None,
    *,
    model: Model | None = None,
    progress: bool | None = None,
    settle_seconds: float | None = None,
) -> list[dict]:
    """Score every pending file once; return one summary per file handled.

    Raises InboxBusy if another run holds the lock. Files that cannot be scored (wrong
    type, wrong columns, not UTF-8, over a limit...) go to `failed/` with a reason, so
    nothing waits in the inbox forever unexplained; a file whose outputs cannot be written
    ("error") stays in the inbox, and the other files are still tried.
    """
    dirs = BatchDirs(Path(inbox or config.batch_inbox()))
    dirs.create()
    with (
        exclusive_lock(dirs.lock),
        contextlib.closing(open_history(dirs.history, dirs.outbox)) as db,
    ):
        _recover(db, dirs)
        settle = config.batch_settle_seconds() if settle_seconds is None else settle_seconds
        files, summaries = settling(pending_files(dirs.inbox), settle)
        files, growing = steady(files, config.batch_look_seconds())
        summaries += growing
        if not files:
            return summaries
        model = model or load_model()
        for path, seen in files:
            summaries.append(_score_one(db, dirs, path, seen, model, progress))
        return summaries


def describe(summary: dict) -> str:
    """One line per file for the log (and cron's mail)."""
    if summary["status"] == "ok":
        line = (
            f"{summary['file']}: {summary['rows_scored']} scored, "
            f"{summary['rows_rejected']} rejected -> {summary['output']}"
        )
        # Each rejected row names its field's nearest values; the full lists, once.
        pointer = f" ({config.BATCH_SCHEMA_HINT})" if summary["rows_rejected"] else ""
        return line + pointer
    return f"{summary['file']}: {summary['status']}: {summary.get('error', '')}"
