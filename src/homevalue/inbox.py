"""The cron job: score every new file dropped in an inbox, once, safely, with a history.

Layout beside the inbox (default `./batch/inbox`):

    batch/inbox/     files to score (.csv/.parquet; names starting with "." or ending in
                     .part/.tmp are ignored, so copy in under such a name and rename; a
                     file modified in the last minute is left for the next run)
    batch/outbox/    <name>.run<id>.scored.csv and <name>.run<id>.rejected.csv
    batch/archive/   inputs whose outputs are safely on disk
    batch/failed/    inputs that cannot be scored, each with <name>.error.txt saying why
    batch/history.sqlite   one row per file per run
    batch/.inbox.lock      held while a run is going; a second run refuses to start

Order of work per file: record "running", write outputs atomically, record "ok", then move
the input to archive. A crash at any point leaves the input in the inbox and no partial
output under a real name; the next run marks the crashed record "interrupted" and scores
the file again. A file whose content was already scored is archived as "skipped".
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from homevalue import config
from homevalue.batch import fsync_dir, score_file
from homevalue.errors import BatchFileError, HomevalueError
from homevalue.model import Model, load_model, sha256_file

IGNORED_SUFFIXES = (".part", ".tmp", ".partial", ".crdownload")
SCHEMA = """
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
    pid INTEGER
);
CREATE INDEX IF NOT EXISTS runs_sha256 ON runs (sha256, status);
"""


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
        for folder in (self.inbox, self.outbox, self.archive, self.failed):
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
    history.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(history, isolation_level=None, timeout=30)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.executescript(SCHEMA)
    return db


def run_history(history: Path, limit: int = 50) -> pd.DataFrame:
    """The latest runs, newest first (empty table if the job never ran)."""
    columns = ["id", "started_at", "finished_at", "file", "status", "rows_scored",
               "rows_rejected", "error", "output", "rejected_output", "model_version"]  # fmt: skip
    if not Path(history).exists():
        return pd.DataFrame(columns=columns)
    try:
        with contextlib.closing(sqlite3.connect(f"file:{history}?mode=ro", uri=True)) as db:
            return pd.read_sql_query(
                f"SELECT {', '.join(columns)} FROM runs ORDER BY id DESC LIMIT ?", db,
                params=(limit,),
            )  # fmt: skip
    except (sqlite3.Error, pd.errors.DatabaseError) as error:  # pandas wraps sqlite's errors
        reason = error.__cause__ or error  # sqlite's own words, not pandas' wrapping
        raise BatchFileError(f"cannot read the batch history {history}: {reason}") from error


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
    for leftover in dirs.outbox.glob(".*.tmp"):
        leftover.unlink(missing_ok=True)


def _score_one(db, dirs: BatchDirs, path: Path, model: Model, progress) -> dict:
    digest = sha256_file(path)
    earlier = db.execute(
        "SELECT id, file FROM runs WHERE sha256=? AND status='ok' ORDER BY id LIMIT 1", (digest,)
    ).fetchone()
    if earlier:
        moved = move_aside(path, dirs.archive)
        db.execute(
            "INSERT INTO runs (started_at, finished_at, file, sha256, status, error, "
            "model_version, pid) VALUES (?, ?, ?, ?, 'skipped', ?, ?, ?)",
            (now(), now(), path.name, digest,
             f"same content as run {earlier[0]} ({earlier[1]}); archived as {moved.name}",
             model.version, os.getpid()),
        )  # fmt: skip
        reason = f"same content as run {earlier[0]}"
        return {"file": path.name, "status": "skipped", "error": reason}
    run_id = db.execute(
        "INSERT INTO runs (started_at, file, sha256, status, model_version, pid) "
        "VALUES (?, ?, ?, 'running', ?, ?)",
        (now(), path.name, digest, model.version, os.getpid()),
    ).lastrowid
    try:
        result = score_file(path, dirs.outbox, model=model, tag=f"run{run_id}", progress=progress)
    except BatchFileError as error:
        moved = move_aside(path, dirs.failed)
        (dirs.failed / f"{moved.name}.error.txt").write_text(f"{error}\n")
        db.execute(
            "UPDATE runs SET status='failed', finished_at=?, error=? WHERE id=?",
            (now(), str(error), run_id),
        )
        return {"file": path.name, "status": "failed", "error": str(error)}
    except Exception as error:
        db.execute(
            "UPDATE runs SET status='error', finished_at=?, error=? WHERE id=?",
            (now(), f"{type(error).__name__}: {error}; the file stayed in the inbox", run_id),
        )
        raise
    db.execute(
        "UPDATE runs SET status='ok', finished_at=?, rows_scored=?, rows_rejected=?, output=?, "
        "rejected_output=? WHERE id=?",
        (now(), result.rows_scored, result.rows_rejected, str(result.scored_path),
         str(result.rejected_path), run_id),
    )  # fmt: skip
    move_aside(path, dirs.archive)
    return {
        "file": path.name, "status": "ok", "rows_scored": result.rows_scored,
        "rows_rejected": result.rows_rejected, "output": str(result.scored_path),
    }  # fmt: skip


def settling(files: list[Path], seconds: float) -> tuple[list[Path], list[dict]]:
    """Split files into those ready to score and those modified too recently to trust."""
    ready, waiting = [], []
    now_ = time.time()
    for path in files:
        age = now_ - path.stat().st_mtime
        if age < seconds:
            waiting.append({"file": path.name, "status": "waiting",
                            "error": f"modified {age:.0f} s ago, may still be arriving; "
                                     "left for the next run"})  # fmt: skip
        else:
            ready.append(path)
    return ready, waiting


def run_inbox(
    inbox: Path | str | None = None,
    *,
    model: Model | None = None,
    progress: bool | None = None,
    settle_seconds: float | None = None,
) -> list[dict]:
    """Score every pending file once; return one summary per file handled.

    Raises InboxBusy if another run holds the lock. Files that cannot be scored (wrong
    type, wrong columns, not UTF-8...) go to `failed/` with a reason, so nothing waits in the
    inbox forever unexplained.
    """
    dirs = BatchDirs(Path(inbox or config.batch_inbox()))
    dirs.create()
    with exclusive_lock(dirs.lock), contextlib.closing(connect(dirs.history)) as db:
        _recover(db, dirs)
        settle = config.batch_settle_seconds() if settle_seconds is None else settle_seconds
        files, summaries = settling(pending_files(dirs.inbox), settle)
        if not files:
            return summaries
        model = model or load_model()
        for path in files:
            summaries.append(_score_one(db, dirs, path, model, progress))
        return summaries


def describe(summary: dict) -> str:
    """One line per file for the log (and cron's mail)."""
    if summary["status"] == "ok":
        return (
            f"{summary['file']}: {summary['rows_scored']} scored, "
            f"{summary['rows_rejected']} rejected -> {summary['output']}"
        )
    return f"{summary['file']}: {summary['status']}: {summary.get('error', '')}"
