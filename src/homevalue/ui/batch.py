"""The "Score a batch" page: a CSV in, every row priced or rejected with its reason, out again.

Scoring is `homevalue.batch.score_file`, the same code as the cron job, so an upload gets
the same checks, the same formula-safe CSV and the same row accounting. Everything shown
from a file is escaped: an upload is untrusted text.
"""

from __future__ import annotations

import base64
import hashlib
import sqlite3
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

import ipywidgets as widgets
import numpy as np
import pandas as pd

from homevalue import config
from homevalue.batch import score_file
from homevalue.drift import Profile
from homevalue.errors import BatchFileError, BatchOutputError
from homevalue.inbox import BatchDirs, now, record_upload, run_history
from homevalue.model import Model, load_model
from homevalue.predict import PRICE_COLUMNS
from homevalue.schema import choices_text
from homevalue.ui import charts, maps, render
from homevalue.ui.page import Panel, guarded, log, version_marker

SAMPLE_NAME = "new_listings.csv"
# What a viewer is told when the history cannot be read (the log has the path and reason).
HISTORY_UNREADABLE = (
    "The batch job's history file could not be read (it is damaged or not a history file). "
    "The next run of the batch job sets it aside and starts a new history."
)
SERVER_FULL = (
    "The server cannot store this file to score it just now (its temporary space is full or "
    "cannot be written). Try again later, or tell the site's operator."
)
TABLE_ROWS = 100  # rows shown in the results table; the download has them all
MAP_POINTS = 5_000  # more would make the map layer slow to send; a spread sample is shown
PRICE = "predicted_price"
MONEY_COLUMNS = ("predicted_price", "price_low", "price_high")
# The results table's names for the scored file's own columns (the input's keep theirs).
HEADERS = {
    "row": "Row",
    "predicted_price": "Predicted price",
    "price_low": "Low (80% range)",
    "price_high": "High (80% range)",
    "flags": "Flags",
    "model_version": "Model",
    "dollars_of": "Dollars of",
}
HISTORY_HEADERS = {
    "started_at": "Started (UTC)",
    "file": "File",
    "source": "From",
    "status": "Status",
    "rows_scored": "Scored",
    "rows_rejected": "Rejected",
    "error": "Error",
}
SOURCE_NAMES = {"inbox": "inbox", "page": "page upload", "cli": "command line"}


def sample_listings() -> tuple[str, bytes]:
    """The bundled sample of new listings (some rows deliberately bad)."""
    return SAMPLE_NAME, resources.files("homevalue.data").joinpath(SAMPLE_NAME).read_bytes()


def check_upload(name: str, size: int, limit: int = config.UPLOAD_LIMIT_BYTES) -> None:
    """Refuse what the page cannot score, before writing anything."""
    if not name.lower().endswith(".csv"):
        raise BatchFileError(f"{name} is not a CSV file: upload a .csv (comma-separated) file")
    if size > limit:
        raise BatchFileError(
            f"{name} is {size / 2**20:.1f} MB; the limit here is {limit / 2**20:.0f} MB. "
            "Larger files go to the batch job's inbox."
        )


@dataclass
class Outcome:
    """A scored file as the page shows it: both outputs, read back as written."""

    name: str
    scored: pd.DataFrame
    rejected: pd.DataFrame
    scored_csv: bytes
    rejected_csv: bytes
    profile: Profile | None = None  # the scored rows' histograms (homevalue.drift)

    @property
    def prices(self) -> pd.Series:
        return pd.to_numeric(self.scored[PRICE], errors="coerce")


def read_outputs(name: str, scored_path: Path, rejected_path: Path) -> Outcome:
    scored_csv, rejected_csv = scored_path.read_bytes(), rejected_path.read_bytes()
    read = {"dtype": str, "keep_default_na": False, "encoding": "utf-8"}
    scored = pd.read_csv(scored_path, **read) if scored_csv else pd.DataFrame(columns=[PRICE])
    rejected = pd.read_csv(rejected_path, **read) if rejected_csv else pd.DataFrame()
    return Outcome(name, scored, rejected, scored_csv, rejected_csv)


def score_upload(name: str, content: bytes, *, model: Model, on_rows=None) -> Outcome:
    """Score an uploaded CSV in a private temporary folder and return what it produced.

    The file is held to the batch job's limits (columns, cell and line length) by
    `score_file` itself. A server that cannot write its temporary folder is logged with
    the path; the viewer is told in plain words.
    """
    check_upload(name, len(content))
    safe = Path(name).name or "upload.csv"
    try:
        with tempfile.TemporaryDirectory(prefix="homevalue-upload-") as folder:
            source = Path(folder) / safe
            source.write_bytes(content)
            result = score_file(
                source,
                Path(folder) / "out",
                model=model,
                progress=False,
                chunk_rows=config.UPLOAD_CHUNK_ROWS,
                on_rows=on_rows,
            )
            outcome = read_outputs(safe, result.scored_path, result.rejected_path)
            outcome.profile = result.profile
            return outcome
    except (OSError, BatchOutputError) as error:
        log.error("cannot score an upload in the temporary folder: %s", error)
        raise BatchOutputError(SERVER_FULL) from error


def summary_text(outcome: Outcome) -> str:
    scored, rejected_rows = len(outcome.scored), outcome.rejected.get("row", pd.Series()).nunique()
    rows = scored + rejected_rows
    text = (
        f"{outcome.name}: {render.count(rows, 'row')}, {scored:,} scored, "
        f"{rejected_rows:,} rejected"
    )
    if scored:
        text += f"; median price {render.money(outcome.prices.median())}"
    return text


def price_statistics(prices: pd.Series, flags: pd.Series) -> list[tuple[str, str]]:
    prices = prices.dropna()
    if prices.empty:
        return [("houses priced", "0")]
    return [
        ("houses priced", f"{len(prices):,}"),
        ("lowest", render.money(prices.min())),
        ("median", render.money(prices.median())),
        ("mean", render.money(prices.mean())),
        ("highest", render.money(prices.max())),
        ("total value", render.money(prices.sum())),
        ("with a warning flag", f"{(flags.fillna('') != '').mean():.0%}"),
    ]


def sort_rows(frame: pd.DataFrame, column: str, descending: bool) -> pd.DataFrame:
    """Sort numbers as numbers and text as text (everything was read as text)."""
    if column not in frame:
        return frame
    numbers = pd.to_numeric(frame[column], errors="coerce")
    key = numbers if numbers.notna().sum() >= frame[column].ne("").sum() else frame[column]
    order = np.argsort(key.to_numpy(), kind="stable")
    if descending:
        order = order[::-1]
    return frame.iloc[order]


def shown_columns(frame: pd.DataFrame) -> list[str]:
    """The price first (what a viewer came for), then the row number and the file's own
    columns; the download keeps the batch job's documented order."""
    prices = [c for c in PRICE_COLUMNS if c in frame]
    return prices + [c for c in frame.columns if c not in prices]


def results_table(rows: pd.DataFrame, caption: str) -> str:
    """The scored rows with their prices as money (the file holds them as plain numbers)."""
    shown = rows[shown_columns(rows)].copy()
    for column in MONEY_COLUMNS:
        if column in shown:
            shown[column] = pd.to_numeric(shown[column], errors="coerce")
    formats = dict.fromkeys(MONEY_COLUMNS, render.money)
    return render.table(shown, headers=HEADERS, formats=formats, caption=caption, rows=True)


def utc_time(stamp: object) -> str:
    """2026-11-30T03:43:39.123456Z -> 2026-11-30 03:43 UTC: the history's times as people
    read them. The kernel cannot know the viewer's time zone, so the zone is said."""
    if stamp is None or pd.isna(stamp) or stamp == "":
        return ""
    try:
        when = datetime.fromisoformat(str(stamp).replace("Z", "+00:00"))
    except ValueError:
        return str(stamp)  # shown as recorded rather than hidden
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def whole(value: object) -> str:
    """A count from the history (NaN where a run has none) as an integer, or blank."""
    number = pd.to_numeric(value, errors="coerce")
    return "" if pd.isna(number) else f"{int(number):,}"


def history_table(runs: pd.DataFrame) -> str:
    shown = pd.DataFrame(
        {
            "started_at": runs["started_at"].map(utc_time),
            "file": runs["file"],
            "source": runs["source"].map(lambda s: SOURCE_NAMES.get(s, s)),
            "status": runs["status"],
            "rows_scored": runs["rows_scored"].map(whole),
            "rows_rejected": runs["rows_rejected"].map(whole),
            "error": runs["error"].fillna(""),
        }
    )
    return render.table(shown, headers=HISTORY_HEADERS, label="Run history")


def latest_outputs(runs: pd.DataFrame) -> list:
    """The finished inbox runs whose CSV outputs are still on disk, newest first."""
    done = runs[(runs["status"] == "ok") & runs["output"].notna()]
    return [
        run
        for run in done.itertuples()
        if Path(run.output).suffix == ".csv"
        and Path(run.output).exists()
        and Path(run.rejected_output).exists()
    ]


def download_link(name: str, content: bytes, label: str) -> str:
    payload = base64.b64encode(content).decode("ascii")
    return (
        f'<a class="hv-download" download="{render.esc(name)}" '
        f'href="data:text/csv;base64,{payload}">{render.esc(label)}</a>'
    )


def downloads_html(outcome: Outcome, result: int) -> str:
    """The links of one result; `result` numbers the page's results, so the same file scored
    again is new links too (the browser clears a message about an earlier file on it)."""
    stem = Path(outcome.name).stem
    n_scored = render.count(len(outcome.scored), "row")
    n_problems = render.count(len(outcome.rejected), "problem")
    return (
        f'<p class="hv-downloads" data-hv-result="{result}">'
        + " ".join(
            [
                download_link(
                    f"{stem}.scored.csv", outcome.scored_csv, f"Download the prices ({n_scored})"
                ),
                download_link(
                    f"{stem}.rejected.csv",
                    outcome.rejected_csv,
                    f"Download the rejected rows ({n_problems})",
                ),
            ]
        )
        + "</p>"
    )


def map_sample(
    frame: pd.DataFrame, place: tuple[str, str], limit: int = MAP_POINTS
) -> pd.DataFrame:
    """Up to `limit` priced rows, evenly spread over the file, with a place to draw them at
    (`place`: the latitude and longitude columns, `Schema.place`)."""
    located = frame.assign(
        **{name: pd.to_numeric(frame[name], errors="coerce") for name in place},
        price=pd.to_numeric(frame[PRICE], errors="coerce"),
    ).dropna(subset=[*place, "price"])
    if len(located) > limit:
        located = located.iloc[np.linspace(0, len(located) - 1, limit).astype(int)]
    return located


class BatchPage:
    """Upload or sample in; validation summary, results, downloads and the job's history out."""

    def __init__(self, model: Model | None = None, *, inbox: Path | None = None):
        self.model = model or load_model()
        self.dirs = BatchDirs(Path(inbox or config.batch_inbox()))
        self.outcome: Outcome | None = None
        self.status = widgets.HTML()
        guard = guarded(self.status)
        self.upload = widgets.FileUpload(accept=".csv", multiple=False, description="Upload CSV")
        self.upload.observe(guard(self._uploaded), names="value")
        self._quiet = False  # True while show() sets the sort controls itself
        self._results = 0  # results shown so far
        self.sample_button = widgets.Button(
            description="Use the sample listings", icon="table", layout={"width": "auto"}
        )
        self.sample_button.on_click(guard(lambda _: self.score(*sample_listings())))
        self.progress = widgets.FloatProgress(
            min=0, max=1, description="Scoring", layout={"visibility": "hidden"}
        )
        self.summary_html = widgets.HTML()
        self.rejected_html = widgets.HTML()
        self._build_results(guard)
        self._build_history(guard)
        self.score(*sample_listings())

    def _build_results(self, guard) -> None:
        self.stats_html = widgets.HTML()
        self.histogram = charts.histogram([], title="", label="Predicted price")
        self.sort_by = widgets.Dropdown(description="Sort by", options=[PRICE])
        self.descending = widgets.ToggleButtons(
            options=[("Highest first", True), ("Lowest first", False)]
        )
        for control in (self.sort_by, self.descending):
            control.observe(guard(lambda _: self._quiet or self._show_table()), names="value")
        self.table_html = widgets.HTML()
        self.downloads_html = widgets.HTML()
        self.map = maps.ames_map(height="380px")
        self.houses_layer = maps.layer("Scored houses")
        self.map.add(self.houses_layer)
        self.map.add(maps.legend("Predicted price", maps.price_legend()))
        self.map_note = widgets.HTML()

    def _build_history(self, guard) -> None:
        self.history_html = widgets.HTML()
        self.refresh_button = widgets.Button(description="Refresh", icon="refresh")
        self.refresh_button.on_click(guard(lambda _: self.show_history()))
        self.latest_button = widgets.Button(
            description="Open the latest output",
            icon="folder-open",
            layout={"width": "auto"},
            disabled=True,
        )
        # What the button did (or why it could not), beside it rather than up at the upload.
        self.latest_note = widgets.HTML()
        self.latest_button.on_click(guarded(self.latest_note)(lambda _: self.open_latest()))
        self.show_history()

    # --- panels ---------------------------------------------------------------------------

    @property
    def controls(self) -> Panel:
        schema = self.model.schema
        # The template's upload guard (homevalue.js) reads the limit here, and finds the
        # upload's file input through Voilà's widget manager by this model id.
        limit = (
            f'<span data-hv-upload-limit-bytes="{config.UPLOAD_LIMIT_BYTES}" '
            f'data-hv-upload-model="{render.esc(self.upload.model_id)}"></span>'
        )
        hint = widgets.HTML(
            f"{limit}<p class='hv-hint'>A CSV with a header row, one house per row, up to "
            f"{config.UPLOAD_LIMIT_BYTES // 2**20} MB. Required columns: "
            f"{render.esc(', '.join(self.model.schema.required))}; optional: "
            f"{render.esc(', '.join(n for n in schema.names if n not in schema.required))}. "
            "Other columns are kept as they are.</p>"
        )
        buttons = widgets.HBox([self.upload, self.sample_button])
        children = [version_marker(self.model.version), hint, buttons, self.progress, self.status]
        return Panel(
            children,
            title="Score a batch",
            summary=lambda: f"upload limit {config.UPLOAD_LIMIT_BYTES // 2**20} MB",
        )

    @property
    def validation(self) -> Panel:
        return Panel(
            [self.summary_html, self.rejected_html],
            title="Validation",
            summary=self._describe_validation,
        )

    @property
    def results(self) -> Panel:
        charts_row = widgets.HBox(
            [self.stats_html, self.histogram], layout={"flex_flow": "row wrap"}
        )
        self.histogram.layout.flex = "1 1 400px"
        dollars = widgets.HTML(render.dollars_note(self.model.dollars_of))
        children = [
            dollars,
            self.downloads_html,
            charts_row,
            widgets.HBox([self.sort_by, self.descending]),
            self.table_html,
            self.map,
            self.map_note,
        ]
        return Panel(children, title="Results", summary=self._describe_results)

    @property
    def history(self) -> Panel:
        buttons = widgets.HBox(
            [self.refresh_button, self.latest_button, self.latest_note],
            layout={"flex_flow": "row wrap", "align_items": "center"},
        )
        return Panel(
            [buttons, self.history_html],
            title="Batch job history",
            summary=lambda: "the latest runs of the batch job, newest first, from its history file",
        )

    def _describe_validation(self) -> str:
        if self.outcome is None:
            return "no file scored yet"
        reasons = self.outcome.rejected.get("field", pd.Series(dtype=str)).value_counts()
        by_field = ", ".join(f"{field} {count}" for field, count in sorted(reasons.items()))
        return summary_text(self.outcome) + (f"; problems by field: {by_field}" if by_field else "")

    def _describe_results(self) -> str:
        if self.outcome is None or self.outcome.scored.empty:
            return "no prices"
        stats = dict(price_statistics(self.outcome.prices, self.outcome.scored["flags"]))
        return ", ".join(f"{k} {v}" for k, v in stats.items())

    # --- actions ----------------------------------------------------------------------------

    def _uploaded(self, change) -> None:
        files = change["new"]
        if not files:
            return
        item = files[0]
        try:
            self.score(item["name"], bytes(item["content"]), source="page")
        finally:
            # Drop the bytes (up to 50 MB held by the widget) and let the same file be
            # chosen again; the resulting empty change is ignored above.
            self.upload.value = ()

    def score(self, name: str, content: bytes, *, source: str | None = None) -> None:
        """Score a file's bytes and show the outcome; a refused file leaves the last one shown.

        A viewer's upload (`source="page"`) goes into the batch job's history, refused or
        not, as an inbox run does; the bundled sample does not (every page opens on it).
        """
        started = now()
        self.status.value = ""
        total = max(content.count(b"\n"), 1)
        self.progress.value, self.progress.layout.visibility = 0, "visible"
        try:
            outcome = score_upload(
                name, content, model=self.model, on_rows=lambda n: self._progressed(n, total)
            )
        except (BatchFileError, BatchOutputError) as error:
            status = "failed" if isinstance(error, BatchFileError) else "error"
            self._record(source, name, content, started, status, error=str(error))
            raise
        finally:
            self.progress.layout.visibility = "hidden"
        self.show(outcome)
        self._record(source, name, content, started, "ok", outcome=outcome)

    def _record(self, source, name, content, started, status, *, outcome=None, error=None):
        """Add an upload to the history; a history that cannot take it is logged, and the
        viewer keeps their result (the history is the operator's to fix)."""
        if source is None:
            return
        counts = {}
        if outcome is not None:
            rejected_rows = outcome.rejected.get("row", pd.Series(dtype=str)).nunique()
            counts = {"rows_scored": len(outcome.scored), "rows_rejected": int(rejected_rows)}
        try:
            record_upload(
                self.dirs.history,
                file=Path(name).name or name,
                started_at=started,
                sha256=hashlib.sha256(content).hexdigest(),
                status=status,
                error=error,
                model_version=self.model.version,
                **counts,
                profile=outcome.profile if outcome is not None else None,
                card=self.model.card,
            )
        except (sqlite3.Error, OSError) as problem:
            log.error("cannot record an upload in the history %s: %s", self.dirs.history, problem)
            return
        self.show_history()

    def _progressed(self, rows: int, total: int) -> None:
        self.progress.value = min(rows / total, 1.0)

    def show(self, outcome: Outcome, *, latest: str = "") -> None:
        """Show a scored file in every panel in one step, with `latest` beside its button.

        Everything is rendered before any widget changes, so a failure on the way leaves the
        previous file shown whole (and the error), never one file's downloads beside
        another's table; the messages are replaced in the same step, so none about an
        earlier file outlives this one.
        """
        scored = outcome.scored
        summary = summary_text(outcome)
        summary = render.ok(summary) if outcome.rejected.empty else render.notice(summary)
        rejected = self._rejected_table(outcome.rejected)
        flags = scored.get("flags", pd.Series(dtype=str))
        stats = render.definition_table(price_statistics(outcome.prices, flags))
        columns = shown_columns(scored)
        sort_column = PRICE if PRICE in columns else columns[0]
        table = self._table(scored, sort_column, self.descending.value)
        downloads = downloads_html(outcome, self._results + 1)
        place = self.model.schema.place
        located = map_sample(scored, place)
        colour = maps.colours(located["price"], maps.PRICE_BANDS, maps.BAND_COLOURS)
        layer = maps.points(located, ["price"], colour, at=place)
        map_note = (
            f"<p class='hv-hint'>{len(located):,} of {len(scored):,} priced houses on the map.</p>"
        )
        # From here on only assignments: the page changes as a whole.
        self.outcome, self._results = outcome, self._results + 1
        self._quiet = True
        try:
            self.sort_by.options = [(HEADERS.get(c, c), c) for c in columns]
            self.sort_by.value = sort_column
        finally:
            self._quiet = False
        self.status.value, self.latest_note.value = "", latest
        self.summary_html.value, self.rejected_html.value = summary, rejected
        self.stats_html.value, self.table_html.value = stats, table
        self.downloads_html.value = downloads
        self.houses_layer.data, self.map_note.value = layer, map_note
        charts.set_histogram(self.histogram, outcome.prices.dropna())

    def _rejected_table(self, rejected: pd.DataFrame) -> str:
        if rejected.empty:
            return ""
        shown = rejected.head(TABLE_ROWS)
        caption = f"Rejected rows: {render.count(len(rejected), 'problem')}" + (
            f" (first {TABLE_ROWS} shown)" if len(rejected) > TABLE_ROWS else ""
        )
        table = render.table(
            shown,
            caption=caption,
            headers={"row": "Row", "field": "Field", "value": "Value", "reason": "Why"},
        )
        return table + self._allowed_values(set(rejected["field"]))

    def _allowed_values(self, fields: set) -> str:
        """Each refused category's full list, once under the table (a row names only the
        nearest values)."""
        by_name = self.model.schema.by_name
        listed = [by_name[f] for f in sorted(fields) if f in by_name and by_name[f].is_category]
        return "".join(
            f'<p class="hv-hint hv-allowed">{render.esc(f.label)} ({render.esc(f.name)}) takes '
            f"a code or a label, in any case: {render.esc(choices_text(f))}.</p>"
            for f in listed
        )

    def _show_table(self) -> None:
        if self.outcome is None:
            return
        self.table_html.value = self._table(
            self.outcome.scored, self.sort_by.value, self.descending.value
        )

    @staticmethod
    def _table(scored: pd.DataFrame, column: str, descending: bool) -> str:
        rows = sort_rows(scored, column, descending)
        caption = f"{render.count(len(rows), 'priced house')}" + (
            f" (first {TABLE_ROWS} shown; the download has all)" if len(rows) > TABLE_ROWS else ""
        )
        return results_table(rows.head(TABLE_ROWS), caption)

    def show_history(self) -> None:
        """The latest runs; "Open the latest output" is enabled only when one has output."""
        try:
            runs = self._runs(limit=200)
        except BatchFileError as error:
            self.latest_button.disabled = True
            self.history_html.value = render.notice(str(error))
            return
        self.latest_button.disabled = not latest_outputs(runs)
        self.latest_button.tooltip = (
            ""
            if not self.latest_button.disabled
            else "No run of the batch job has its output on disk yet."
        )
        if runs.empty:
            self.history_html.value = "<p class='hv-hint'>The batch job has not run yet.</p>"
            return
        self.history_html.value = history_table(runs.head(20))

    def _runs(self, limit: int) -> pd.DataFrame:
        """The job's latest runs; if unreadable, the reason is logged and the viewer told."""
        try:
            return run_history(self.dirs.history, limit=limit)
        except BatchFileError as error:  # locked for long, damaged, or not a history file
            log.error("%s", error)
            raise BatchFileError(HISTORY_UNREADABLE) from error

    def open_latest(self) -> None:
        """Show the newest successful run's outputs, as if the file had been uploaded here."""
        found = latest_outputs(self._runs(limit=200))
        if not found:
            raise BatchFileError("No finished CSV run of the batch job has its output on disk yet.")
        run = found[0]
        outcome = read_outputs(run.file, Path(run.output), Path(run.rejected_output))
        self.show(
            outcome,
            latest=render.ok(
                f"Showing the batch job's output for {run.file} "
                f"(run {run.id}, started {utc_time(run.started_at)})."
            ),
        )
