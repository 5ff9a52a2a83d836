"""Monitoring: the batch runs of a period, their volume, rejections and drift, from the history.

Every batch run (the inbox job, `homevalue batch score`, an upload on the batch page) leaves
in the history (`batch/history.sqlite`) its row counts and, since drift is measured, its
profile (histogram counts in the training distribution's bins) and each input's and the
price's PSI against training. This module writes those two tables and reads a period back:
the Monitoring page and `homevalue monitor` (cron's alert) show the same `Window`.

Tables beside `runs` (created by `homevalue.inbox.connect`; a history written before them
is read as having no drift):

    profiles (run_id, reference, rows, counts)   counts: JSON {input: [count per bin]}
    drift    (run_id, feature, psi)              one row per input, and "predicted_price"
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from homevalue import config
from homevalue.drift import PRICE, Drift, Profile, Reference, drift, sum_profiles
from homevalue.errors import BatchFileError

TABLES = """
CREATE TABLE IF NOT EXISTS profiles (
    run_id INTEGER PRIMARY KEY,
    reference TEXT NOT NULL,
    rows INTEGER NOT NULL,
    counts TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS drift (
    run_id INTEGER NOT NULL,
    feature TEXT NOT NULL,
    psi REAL,
    PRIMARY KEY (run_id, feature)
);
"""
RUN_COLUMNS = [
    "id",
    "started_at",
    "finished_at",
    "file",
    "status",
    "rows_scored",
    "rows_rejected",
    "model_version",
    "source",
]
SPAN = re.compile(r"(\d{1,6})\s*([mhdw])")
UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
SINCE_HELP = (
    "a span back from now such as 90m, 24h, 7d or 2w, a UTC date or time such as 2026-11-23 "
    "or 2026-11-23T08:00, or 'all'"
)


def record_drift(
    db: sqlite3.Connection, run_id: int, reference: Reference | None, profile: Profile | None
) -> Drift | None:
    """Store a finished run's profile and its PSI per input and price; its Drift, or None
    when there is nothing to measure (no profile, or a card without training histograms)."""
    if reference is None or profile is None or profile.reference != reference.fingerprint:
        return None
    measured = drift(reference, profile)
    db.execute(
        "INSERT OR REPLACE INTO profiles (run_id, reference, rows, counts) VALUES (?, ?, ?, ?)",
        (run_id, profile.reference, profile.rows, profile.to_json()),
    )
    db.executemany(
        "INSERT OR REPLACE INTO drift (run_id, feature, psi) VALUES (?, ?, ?)",
        [(run_id, name, None if np.isnan(v) else v) for name, v in measured.psi.items()],
    )
    return measured


# --- --since -----------------------------------------------------------------------------------


def parse_since(text: str, now: datetime | None = None) -> datetime | None:
    """The start of the period `text` names (UTC), or None for "all"; ValueError, saying what
    is accepted, for anything else."""
    now = now or datetime.now(UTC)
    given = str(text).strip().lower()
    if given == "all":
        return None
    if span := SPAN.fullmatch(given):
        amount = int(span[1])
        if amount == 0:
            raise ValueError(f"--since {text!r} is an empty period: give {SINCE_HELP}")
        return now - timedelta(**{UNITS[span[2]]: amount})
    try:
        when = datetime.fromisoformat(given.upper().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"--since {text!r} is not a period: give {SINCE_HELP}") from None
    when = when if when.tzinfo else when.replace(tzinfo=UTC)
    if when > now:
        raise ValueError(f"--since {text!r} is in the future: give {SINCE_HELP}")
    return when.astimezone(UTC)


def stamp(when: datetime) -> str:
    """A time as the history writes it (inbox.now), so strings compare as times."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# --- reading a period --------------------------------------------------------------------------


@dataclass(frozen=True)
class Window:
    """The runs of a period and what they add up to.

    `runs`: one row per finished run, oldest first (RUN_COLUMNS, plus `profiled` rows and
    `worst`/`worst_psi` of its drift). `psi`: run id -> {input or price: PSI}, as stored when
    the run finished. `pooled`: the drift of every profiled row of the period together,
    against `reference` (runs binned for another model are left out of it, and counted in
    `other_model_runs`).
    """

    since: datetime | None
    runs: pd.DataFrame
    psi: dict[int, dict[str, float]]
    reference: Reference | None
    pooled: Drift | None
    pooled_profile: Profile | None = None
    other_model_runs: int = 0
    days: pd.DataFrame = field(default_factory=pd.DataFrame)

    @property
    def finished(self) -> pd.DataFrame:
        """The runs that scored a file (status ok)."""
        return self.runs[self.runs["status"] == "ok"]

    @property
    def rows_scored(self) -> int:
        return int(self.finished["rows_scored"].fillna(0).sum())

    @property
    def rows_rejected(self) -> int:
        return int(self.finished["rows_rejected"].fillna(0).sum())

    @property
    def rejection_rate(self) -> float:
        read = self.rows_scored + self.rows_rejected
        return self.rows_rejected / read if read else float("nan")

    @property
    def crossed(self) -> dict[str, str]:
        """{input or price: "watch" | "act"} for the period's pooled rows."""
        return self.pooled.crossed if self.pooled is not None else {}


def run_columns_sql(db: sqlite3.Connection, columns: list[str]) -> str:
    """The SELECT list for `columns` of the runs table. A history written before runs had
    a source is read as it is (read-only): its runs were all the inbox's."""
    present = {row[1] for row in db.execute("PRAGMA table_info(runs)")}
    old = "source" not in present
    return ", ".join("'inbox' AS source" if c == "source" and old else c for c in columns)


def _tables(db: sqlite3.Connection) -> set[str]:
    return {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}


def read_window(history: Path, since: datetime | None, reference: Reference | None) -> Window:
    """The runs started since `since` (all if None), read-only; an absent history is an empty
    window. BatchFileError (naming the file) if it cannot be read."""
    history = Path(history)
    empty = pd.DataFrame(columns=[*RUN_COLUMNS, "profiled", "worst", "worst_psi"])
    if not history.exists():
        return Window(since, empty, {}, reference, None)
    try:
        with contextlib.closing(sqlite3.connect(f"file:{history}?mode=ro", uri=True)) as db:
            runs, profiles, psi = _read(db, since)
    except (sqlite3.Error, pd.errors.DatabaseError) as error:
        reason = error.__cause__ or error
        raise BatchFileError(f"cannot read the batch history {history}: {reason}") from error
    return _window(since, runs, profiles, psi, reference)


def _read(db: sqlite3.Connection, since: datetime | None):
    tables = _tables(db)
    if "runs" not in tables:
        return pd.DataFrame(columns=RUN_COLUMNS), {}, {}
    where, params = ("WHERE started_at >= ?", (stamp(since),)) if since else ("", ())
    runs = pd.read_sql_query(
        f"SELECT {run_columns_sql(db, RUN_COLUMNS)} FROM runs {where} ORDER BY started_at, id",
        db,
        params=params,
    )
    ids = tuple(int(i) for i in runs["id"])
    profiles: dict[int, Profile] = {}
    psi: dict[int, dict[str, float]] = {}
    if ids and {"profiles", "drift"} <= tables:
        first = min(ids)  # runs since `since` have the newest ids: one range read
        for run_id, counts in db.execute(
            "SELECT run_id, counts FROM profiles WHERE run_id >= ?", (first,)
        ):
            with contextlib.suppress(ValueError, KeyError, TypeError):  # a damaged row
                profiles[int(run_id)] = Profile.from_json(counts)
        for run_id, name, value in db.execute(
            "SELECT run_id, feature, psi FROM drift WHERE run_id >= ?", (first,)
        ):
            psi.setdefault(int(run_id), {})[str(name)] = np.nan if value is None else float(value)
    wanted = set(ids)
    return (
        runs,
        {k: v for k, v in profiles.items() if k in wanted},
        {k: v for k, v in psi.items() if k in wanted},
    )


def _window(since, runs, profiles, psi, reference) -> Window:
    runs = runs.copy()
    runs["profiled"] = [profiles[i].rows if i in profiles else 0 for i in runs["id"]]
    worst = [_worst(psi.get(int(i), {})) for i in runs["id"]]
    runs["worst"] = [name for name, _ in worst]
    runs["worst_psi"] = [value for _, value in worst]
    ok = runs["status"] == "ok"
    usable = [profiles[i] for i in runs.loc[ok, "id"] if i in profiles]
    matching = [p for p in usable if reference is not None and p.reference == reference.fingerprint]
    pooled_profile = sum_profiles(matching)
    pooled = drift(reference, pooled_profile) if pooled_profile is not None else None
    return Window(
        since,
        runs,
        psi,
        reference,
        pooled,
        pooled_profile,
        len(usable) - len(matching),
        by_day(runs),
    )


def _worst(values: dict[str, float]) -> tuple[str, float]:
    known = {k: v for k, v in values.items() if not np.isnan(v)}
    if not known:
        return "", float("nan")
    name = max(known, key=known.get)
    return name, known[name]


def by_day(runs: pd.DataFrame) -> pd.DataFrame:
    """Per UTC day: runs, rows scored, rows rejected and the rejection rate (finished runs)."""
    done = runs[runs["status"] == "ok"]
    if done.empty:
        return pd.DataFrame(columns=["day", "runs", "scored", "rejected", "rejection_rate"])
    frame = pd.DataFrame(
        {
            "day": done["started_at"].str.slice(0, 10),
            "scored": pd.to_numeric(done["rows_scored"], errors="coerce").fillna(0),
            "rejected": pd.to_numeric(done["rows_rejected"], errors="coerce").fillna(0),
        }
    )
    days = frame.groupby("day").agg(
        runs=("scored", "size"), scored=("scored", "sum"), rejected=("rejected", "sum")
    )
    days = days.reset_index()
    read = days["scored"] + days["rejected"]
    days["rejection_rate"] = np.where(read > 0, days["rejected"] / read.where(read > 0, 1), np.nan)
    return days


def drift_table(window: Window) -> pd.DataFrame:
    """One row per input and the price, worst first: the period's pooled PSI and level, and
    the PSI of each of the latest profiled runs (columns "run <id>")."""
    if window.reference is None:
        return pd.DataFrame(columns=["feature", "psi", "level"])
    names = window.reference.names
    pooled = window.pooled
    table = pd.DataFrame(
        {
            "feature": names,
            "psi": [pooled.psi[n] if pooled else np.nan for n in names],
            "level": [pooled.level(n) if pooled else "none" for n in names],
        }
    )
    latest = window.runs[window.runs["profiled"] > 0].tail(config.MONITOR_RUNS_SHOWN)
    for run_id in latest["id"]:
        values = window.psi.get(int(run_id), {})
        table[f"run {int(run_id)}"] = [values.get(n, np.nan) for n in names]
    order = table["psi"].fillna(-1).to_numpy()
    return table.iloc[np.argsort(-order, kind="stable")].reset_index(drop=True)


def price_shares(window: Window) -> pd.DataFrame:
    """Per price bin: its label, the training share and the period's share of prices."""
    if window.reference is None:
        return pd.DataFrame(columns=["bin", "training", "period"])
    histogram = window.reference.price
    training = histogram.counts / max(histogram.counts.sum(), 1)
    if window.pooled_profile is not None and window.pooled_profile.rows:
        counts = window.pooled_profile.counts[PRICE]
        period = counts / counts.sum()
    else:
        period = np.full(histogram.bins, np.nan)
    return pd.DataFrame(
        {"bin": histogram.labels(money=True), "training": training, "period": period}
    )


# --- words: the same for the page and the command line ------------------------------------------


def period_text(since: datetime | None) -> str:
    return "all runs" if since is None else f"runs since {since:%Y-%m-%d %H:%M} UTC"


def volume_text(window: Window) -> str:
    runs = window.runs
    if runs.empty:
        return f"no batch runs recorded ({period_text(window.since)})"
    statuses = runs["status"].value_counts()
    counted = ", ".join(f"{n} {status}" for status, n in statuses.items())
    read = window.rows_scored + window.rows_rejected
    rate = f" ({window.rejection_rate:.1%})" if read else ""
    return (
        f"{len(runs):,} run{'s' if len(runs) != 1 else ''} ({counted}); {read:,} rows read: "
        f"{window.rows_scored:,} scored, {window.rows_rejected:,} rejected{rate}"
    )


def thresholds_text() -> str:
    return (
        f"PSI against the training data: watch at {config.PSI_WATCH:.2f}, act at "
        f"{config.PSI_ACT:.2f}; judged from {config.DRIFT_MIN_ROWS:,} rows"
    )


def drift_text(window: Window) -> str:
    """The period's drift in one line: what crossed, or that nothing did, or why not judged."""
    if window.reference is None:
        return "drift not measured: the model card has no training distribution (run `make model`)"
    pooled = window.pooled
    if pooled is None or pooled.rows == 0:
        return "no profiled rows in this period: nothing to compare with the training data"
    name, value = pooled.worst
    head = f"{pooled.rows:,} scored rows; worst {name} PSI {value:.3f}"
    if pooled.rows < config.DRIFT_MIN_ROWS:
        return f"{head}: too few rows to judge (fewer than {config.DRIFT_MIN_ROWS:,})"
    crossed = window.crossed
    if not crossed:
        return f"{head}: every input and the price under the watch threshold"
    acts = sorted(k for k, v in crossed.items() if v == "act")
    watches = sorted(k for k, v in crossed.items() if v == "watch")
    parts = ([f"act: {', '.join(acts)}"] if acts else []) + (
        [f"watch: {', '.join(watches)}"] if watches else []
    )
    return f"{head}; {'; '.join(parts)}"


def feedback_text(since: datetime | None = None, model_version: str | None = None) -> str:
    """Accuracy on the sale prices reported since `since` (homevalue.feedback), in a line."""
    from homevalue import feedback
    from homevalue.errors import FeedbackStoreError

    try:
        found = feedback.summary(since, model_version=model_version)
    except FeedbackStoreError as error:
        return f"cannot be read now ({error})"
    wrong = ", ".join(f"{reason} {n}" for reason, n in found.looks_wrong.items() if n)
    wrong = f"; 'looks wrong': {wrong}" if wrong else ""
    if not found.sales:
        return f"no sale prices reported{wrong}"
    return (
        f"{found.sales:,} reported sales, median error {found.median_ape_percent:.1f}%, "
        f"{found.inside_share:.0%} inside the predicted range{wrong}"
    )


def report(
    window: Window, history: Path, fail_on: str = "act", model_version: str | None = None
) -> tuple[str, bool]:
    """The period as text for `homevalue monitor`, and whether a threshold (`fail_on`:
    "act" or "watch") was crossed by the period's pooled rows."""
    lines = [
        f"homevalue monitor: {period_text(window.since)} in {history}",
        f"volume: {volume_text(window)}",
        f"{thresholds_text()}",
        f"drift: {drift_text(window)}",
    ]
    table = drift_table(window)
    if window.pooled is not None and window.pooled.rows:
        lines.append(f"{'input':<16} {'PSI':>7}  level")
        for row in table.itertuples(index=False):
            lines.append(f"{row.feature:<16} {row.psi:>7.3f}  {row.level}")
    if window.other_model_runs:
        lines.append(
            f"{window.other_model_runs} run(s) binned for another model's training data are "
            "left out of the drift above"
        )
    if not window.runs.empty:
        lines.append("runs (oldest first):")
        for run in window.runs.tail(config.MONITOR_RUNS_SHOWN).itertuples(index=False):
            lines.append(_run_line(run))
    lines.append(f"accuracy on reported sales: {feedback_text(window.since, model_version)}")
    levels = window.crossed.values()
    crossed = "act" in levels or (fail_on == "watch" and "watch" in levels)
    if crossed:
        lines.append(
            f"ALERT: drift {'at or over' if fail_on == 'act' else 'over'} the {fail_on} "
            f"threshold; exit {config.EXIT_DRIFT}"
        )
    return "\n".join(lines), crossed


def _run_line(run) -> str:
    scored, rejected = _whole(run.rows_scored), _whole(run.rows_rejected)
    worst = f"worst {run.worst} {run.worst_psi:.3f}" if run.worst else "no drift measured"
    return (
        f"  {int(run.id):>5} {str(run.started_at)[:16].replace('T', ' ')} {run.source:<5} "
        f"{run.status:<8} {scored:>8} scored {rejected:>7} rejected  {worst}  {run.file}"
    )


def _whole(value) -> str:
    number = pd.to_numeric(value, errors="coerce")
    return "-" if pd.isna(number) else f"{int(number):,}"
