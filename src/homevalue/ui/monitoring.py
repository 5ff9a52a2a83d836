"""The Monitoring page: are today's batch runs like the data the model was trained on?

Everything comes from the batch job's history (every inbox run, `homevalue batch score` and
upload on the batch page, with its profile and drift) and the model card's training
distribution; the model itself is never loaded. `homevalue monitor` prints the same figures
(homevalue.monitor builds both). The history is live data: a panel's text form (what nbval
compares) states what the card fixes (inputs, thresholds, training bins), never the runs.
"""

from __future__ import annotations

import math
from pathlib import Path

import bqplot as bq
import ipywidgets as widgets
import numpy as np
import pandas as pd

from homevalue import config, feedback
from homevalue.drift import PRICE, Reference, level, reference_of
from homevalue.errors import BatchFileError, FeedbackStoreError
from homevalue.inbox import BatchDirs
from homevalue.model import read_card
from homevalue.monitor import (
    Window,
    drift_table,
    drift_text,
    parse_since,
    price_shares,
    read_window,
    thresholds_text,
    volume_text,
)
from homevalue.schema import short_money
from homevalue.ui import charts, render
from homevalue.ui.batch import HISTORY_UNREADABLE, SOURCE_NAMES, utc_time, whole
from homevalue.ui.feedback import live_accuracy_html
from homevalue.ui.page import Panel, guarded, log, version_marker

PERIODS = [
    ("Last 24 hours", "24h"),
    ("Last 7 days", "7d"),
    ("Last 30 days", "30d"),
    ("Last 90 days", "90d"),
    ("All runs", "all"),
]
DEFAULT_PERIOD = "7d"
LEVEL_WORDS = {"act": "act", "watch": "watch", "ok": "ok", "few rows": "few rows", "none": ""}
EMPTY_STATE = (
    "No batch runs in this period. Runs appear here as soon as the batch job scores a file "
    "from its inbox (homevalue batch inbox, run by cron or Airflow), a file is scored with "
    "homevalue batch score, or a CSV is uploaded on the Score a batch page. Choose a longer "
    "period above to see older runs."
)
DRIFT_LEAD = (
    "How far each input of the period's scored rows is from the training sales, by the "
    "population stability index (PSI): 0 is the same distribution; under {watch:.2f} is no "
    "real change, {watch:.2f} to {act:.2f} is worth watching, {act:.2f} and over is a shift to "
    "act on (check the source of the files; retrain if the change is genuine). A period or "
    "run with fewer than {rows:,} rows is shown but not judged: noise alone moves PSI that "
    "much. Worst first; the last columns are the latest runs."
)
PRICE_LEAD = (
    "The share of houses in each tenth of the training sales' predicted prices: training has "
    "about a tenth in each; this period's prices, if like training, too."
)
FEEDBACK_LEAD = (
    "How close this model's prices are to the sale prices people reported back in the period "
    "(the price page's \u201cIs this price right?\u201d and the API's POST /v1/feedback), "
    "beside its accuracy on the test sales it never saw."
)
COLOURS = {"scored": "#3b528b", "rejected": "#b2182b", "training": "#8c8c8c", "period": "#21918c"}
PROSE_STYLE = "line-height: 1.5; font-size: var(--jp-content-font-size1); margin: 0.5em 0"


def _paragraph(text: str) -> str:
    return f'<p class="hv-lead" style="{PROSE_STYLE}">{render.esc(text)}</p>'


def _html(markup: str = "") -> widgets.HTML:
    return widgets.HTML(markup, layout={"width": "100%"})


def _sentence(text: str) -> str:
    """A summary line as a sentence: capital first, full stop last (the rest as it is)."""
    return f"{text[:1].upper()}{text[1:]}."


def _psi_text(value: float) -> str:
    return "" if value is None or math.isnan(value) else f"{value:.3f}"


def legend_html(entries: dict[str, str], *, line: str = "") -> str:
    """A legend above a chart, in the page's text: bqplot's own sits inside the plot, where
    on a phone it covers the bars and its label is drawn in the bar's colour. `line` names
    the entry drawn as a line rather than bars."""
    items = []
    for name, colour in entries.items():
        kind = "hv-swatch hv-swatch-line" if name == line else "hv-swatch"
        swatch = f'<span class="{kind}" style="background:{colour}"></span>'
        items.append(f'<span role="listitem">{swatch}{render.esc(name)}</span>')
    return f'<div class="hv-legend" role="list">{"".join(items)}</div>'


def bar_padding(bars: int) -> float:
    """Padding between bars as a share of each slot: a single day would otherwise be one
    bar as wide as the chart, which reads as a background rather than a count."""
    return max(0.2, 1 - 0.15 * bars)


def feature_labels(card: dict) -> dict[str, str]:
    """Input name -> its label on the form; the price is "Predicted price"."""
    labels = {f["name"]: f.get("label") or f["name"] for f in card.get("features", [])}
    return {**labels, PRICE: "Predicted price"}


def drift_grid_html(window: Window, labels: dict[str, str]) -> str:
    """The heat grid: one row per input and the price, worst first; the period's PSI and
    level, then each latest run's PSI, every cell tinted by its level and saying it."""
    table = drift_table(window)
    runs = window.runs.set_index("id") if not window.runs.empty else pd.DataFrame()
    run_columns = [c for c in table.columns if c.startswith("run ")]
    head = ["Input", "Period PSI", "Level"]
    for column in run_columns:
        run = runs.loc[int(column.split()[1])]
        head.append(f"Run {column.split()[1]}, {utc_time(run['started_at'])[:10]}")
    run_rows = {c: int(runs.loc[int(c.split()[1]), "profiled"]) for c in run_columns}
    rows = []
    pooled_rows = window.pooled.rows if window.pooled is not None else 0
    for _, record in table.iterrows():
        name = labels.get(record["feature"], record["feature"])
        cells = [f"<th scope='row'>{render.esc(name)}</th>"]
        cells.append(_level_cell(_psi_text(record["psi"]), record["level"]))
        word = LEVEL_WORDS.get(record["level"], record["level"])
        cells.append(_level_cell(word, record["level"], numeric=False))
        for column in run_columns:
            value = float(record[column])
            run_level = level(value, run_rows[column])
            text = _psi_text(value) + (f" {run_level}" if run_level in ("act", "watch") else "")
            cells.append(_level_cell(text, run_level))
        rows.append(f"<tr>{''.join(cells)}</tr>")
    header = "".join(f"<th scope='col'>{render.esc(h)}</th>" for h in head)
    caption = (
        f"PSI per input against the training sales ({pooled_rows:,} scored rows in the period)"
    )
    return (
        '<div class="hv-table-wrap" tabindex="0" role="region" aria-label="Drift by input">'
        f'<table class="hv-table hv-drift"><caption>{render.esc(caption)}</caption>'
        f"<thead><tr>{header}</tr></thead><tbody>{''.join(rows)}</tbody></table></div>"
    )


def _level_cell(text: str, judged: str, numeric: bool = True) -> str:
    css = ["num"] if numeric else []
    if judged in ("act", "watch"):
        css.append(f"hv-drift-{judged}")
    elif judged == "few rows":
        css.append("hv-drift-few")
    attribute = f' class="{" ".join(css)}"' if css else ""
    return f"<td{attribute}>{render.esc(text)}</td>"


def runs_table_html(window: Window, labels: dict[str, str]) -> str:
    """The latest runs, newest first: when, from where, what, and their worst drift."""
    runs = window.runs.tail(config.MONITOR_RUNS_SHOWN).iloc[::-1]
    scored = pd.to_numeric(runs["rows_scored"], errors="coerce")
    rejected = pd.to_numeric(runs["rows_rejected"], errors="coerce")
    read = scored.fillna(0) + rejected.fillna(0)
    shown = pd.DataFrame(
        {
            "started_at": runs["started_at"].map(utc_time),
            "source": runs["source"].map(lambda s: SOURCE_NAMES.get(s, s)),
            "file": runs["file"],
            "status": runs["status"],
            "rows_scored": runs["rows_scored"].map(whole),
            "rows_rejected": runs["rows_rejected"].map(whole),
            "rate": [
                f"{r / n:.1%}" if n else "" for r, n in zip(rejected.fillna(0), read, strict=True)
            ],
            "worst": [
                f"{labels.get(w, w)} {v:.3f}" if w else ""
                for w, v in zip(runs["worst"], runs["worst_psi"], strict=True)
            ],
        }
    )
    headers = {
        "started_at": "Started (UTC)",
        "source": "From",
        "file": "File",
        "status": "Status",
        "rows_scored": "Scored",
        "rows_rejected": "Rejected",
        "rate": "Rejected share",
        "worst": "Worst drift (PSI)",
    }
    return render.table(
        shown, headers=headers, label="Latest runs", caption="Latest runs, newest first"
    )


def price_bin_labels(edges) -> list[str]:
    """Short names for the price chart's bins: "< $111k", "$111k–128k", "≥ $282k"."""
    short = [short_money(edge).removeprefix("$") for edge in edges]
    middle = [f"${low}–{high}" for low, high in zip(short[:-1], short[1:], strict=True)]
    return [f"< ${short[0]}", *middle, f"≥ ${short[-1]}"]


def price_summary(reference: Reference | None) -> str:
    if reference is None:
        return "no training distribution in the model card"
    edges = reference.price.edges
    return (
        f"share of predicted prices in each of the {reference.price.bins} training bins "
        f"(edges {render.money(edges[0])} to {render.money(edges[-1])}), the period's against "
        f"the {reference.rows:,} training sales'"
    )


class MonitoringPage:
    """Runs over time, drift per input against the thresholds, prices against training,
    and the place for accuracy on reported sales; re-read on Refresh or a new period.

    Raises a ModelError (so `build` shows `Unavailable`) when the card cannot be read.
    """

    def __init__(self, folder: Path | str | None = None, *, inbox: Path | None = None):
        self.card = read_card(folder)
        self.reference = reference_of(self.card)
        self.labels = feature_labels(self.card)
        self.dirs = BatchDirs(Path(inbox or config.batch_inbox()))
        self.window: Window | None = None
        self.status = _html()
        guard = guarded(self.status)
        self.period = widgets.Dropdown(options=PERIODS, value=DEFAULT_PERIOD, description="Period")
        self.period.observe(guard(lambda _: self.refresh()), names="value")
        self.refresh_button = widgets.Button(description="Refresh", icon="refresh")
        self.refresh_button.on_click(guard(lambda _: self.refresh()))
        self.volume_html, self.runs_html = _html(), _html()
        self.volume_chart = self._volume_chart()
        # A chart is in the page only while it has something to draw: bqplot drawing a
        # hidden (0 x 0) figure sets negative sizes, which the browser logs as errors.
        self.volume_box = widgets.VBox(layout={"width": "100%"})
        self.drift_html = _html()
        self.price_html = _html()
        self.price_chart = self._price_chart()
        self.volume_legend = _html(
            legend_html({"Scored": COLOURS["scored"], "Rejected": COLOURS["rejected"]})
        )
        price_legend = _html(
            legend_html(
                {"This period": COLOURS["period"], "Training": COLOURS["training"]},
                line="Training",
            )
        )
        self.price_box = widgets.VBox([price_legend, self.price_chart], layout={"width": "100%"})
        self.feedback_html = _html()
        self.refresh()

    def apply_request(self, query=None) -> None:
        """Nothing on this page depends on the URL."""

    # --- panels -------------------------------------------------------------------------

    @property
    def overview(self) -> Panel:
        controls = widgets.HBox(
            [self.period, self.refresh_button],
            layout={"flex_flow": "row wrap", "align_items": "center"},
        )
        children = [
            version_marker(self.card["model_version"]),
            controls,
            self.status,
            self.volume_html,
            self.volume_box,
            self.runs_html,
        ]
        return Panel(
            children,
            title="Runs over time",
            summary=lambda: (
                "rows scored and rejected per day, and the latest runs (inbox, "
                "command line, page uploads) from the batch job's history; period last 7 days, "
                "others on demand"
            ),
        )

    @property
    def drift(self) -> Panel:
        lead = DRIFT_LEAD.format(
            watch=config.PSI_WATCH, act=config.PSI_ACT, rows=config.DRIFT_MIN_ROWS
        )
        return Panel(
            [_html(_paragraph(lead)), self.drift_html],
            title="Drift by input",
            summary=lambda: self._drift_summary(),
        )

    @property
    def prices(self) -> Panel:
        dollars = render.dollars_note(
            "-".join(str(y) for y in self.card.get("data", {}).get("sale_years", ["?", "?"]))
        )
        children = [_html(_paragraph(PRICE_LEAD) + dollars), self.price_box, self.price_html]
        return Panel(
            children,
            title="Predicted prices against training",
            summary=lambda: price_summary(self.reference),
        )

    @property
    def feedback(self) -> Panel:
        """Accuracy on the sale prices reported in the period, re-read with the rest."""
        return Panel(
            [_html(_paragraph(FEEDBACK_LEAD)), self.feedback_html],
            title="Accuracy on reported sales",
            summary=lambda: (
                "this model's accuracy on the sale prices reported in the period, "
                "beside the test sales'"
            ),
        )

    def _drift_summary(self) -> str:
        if self.reference is None:
            return "drift not measured: the model card has no training distribution"
        return (
            f"{len(self.reference.features)} inputs and the predicted price against the "
            f"training distribution of model {self.card['model_version']} "
            f"({self.reference.rows:,} sales); {thresholds_text()}"
        )

    # --- charts ---------------------------------------------------------------------------

    @staticmethod
    def _volume_chart() -> bq.Figure:
        x, y = bq.OrdinalScale(), bq.LinearScale(min=0)
        bars = bq.Bars(
            scales={"x": x, "y": y},
            type="stacked",
            padding=0.2,
            colors=[COLOURS["scored"], COLOURS["rejected"]],
            labels=["Scored", "Rejected"],
        )
        axes = [
            bq.Axis(scale=x, label="Day (UTC)"),
            bq.Axis(scale=y, side="left", label="Rows", tick_format=",d", label_offset="60px"),
        ]
        figure = bq.Figure(
            marks=[bars],
            axes=axes,
            fig_margin=charts.MARGIN,
            layout={"width": "100%", "height": "260px"},
        )
        figure.add_class("hv-chart")
        return figure

    @staticmethod
    def _price_chart() -> bq.Figure:
        """The period's share per bin as bars, training's as a line with dots over them."""
        x, y = bq.OrdinalScale(), bq.LinearScale(min=0, max=0.2)
        scales = {"x": x, "y": y}
        bars = bq.Bars(
            scales=scales, padding=0.2, colors=[COLOURS["period"]], labels=["This period"]
        )
        training = bq.Lines(
            scales=scales,
            colors=[COLOURS["training"]],
            marker="circle",
            stroke_width=2,
            labels=["Training"],
        )
        axes = [
            bq.Axis(scale=x, label="Predicted price"),
            bq.Axis(
                scale=y,
                side="left",
                label="Share of houses",
                tick_format=".0%",
                label_offset="50px",
            ),
        ]
        figure = bq.Figure(
            marks=[bars, training],
            axes=axes,
            fig_margin=charts.MARGIN,
            layout={"width": "100%", "height": "320px"},
        )
        figure.add_class("hv-chart")
        return figure

    # --- refreshing -------------------------------------------------------------------------

    def refresh(self) -> None:
        """Read the chosen period from the history and show it in every panel at once."""
        since = parse_since(self.period.value)
        try:
            window = read_window(self.dirs.history, since, self.reference)
        except BatchFileError as error:  # damaged, or not a history file
            log.error("%s", error)
            self.status.value = render.notice(HISTORY_UNREADABLE)
            return
        self.window = window
        self.status.value = ""
        self._show_volume(window)
        self._show_drift(window)
        self._show_prices(window)
        self._show_feedback(since)

    def _show_feedback(self, since) -> None:
        version = self.card["model_version"]
        try:
            found = feedback.summary(since, model_version=version)
        except FeedbackStoreError as error:
            self.feedback_html.value = render.notice(
                f"The reported sales cannot be read now: {error}."
            )
            return
        self.feedback_html.value = live_accuracy_html(found, self.card)

    def _show_volume(self, window: Window) -> None:
        if window.runs.empty:
            self.volume_html.value = render.ok(EMPTY_STATE)
            self.volume_box.children = ()
            self.runs_html.value = ""
            return
        self.volume_html.value = _paragraph(_sentence(volume_text(window)))
        days = window.days
        bars = self.volume_chart.marks[0]
        with bars.hold_sync():
            bars.padding = bar_padding(len(days))
            bars.x = list(days["day"])
            bars.y = np.vstack([days["scored"].to_numpy(float), days["rejected"].to_numpy(float)])
        self.volume_box.children = () if days.empty else (self.volume_legend, self.volume_chart)
        self.runs_html.value = runs_table_html(window, self.labels)

    def _show_drift(self, window: Window) -> None:
        if self.reference is None:
            self.drift_html.value = render.notice(
                "Drift is not measured: the model card has no training distribution. "
                "Retrain the model (make model) to add it."
            )
            return
        text = _paragraph(_sentence(drift_text(window)))
        if window.pooled is None or window.pooled.rows == 0:
            self.drift_html.value = text
            return
        crossed = window.crossed
        box = render.notice if "act" in crossed.values() else render.ok
        self.drift_html.value = (
            box(_sentence(drift_text(window)))
            if crossed or window.pooled.rows >= config.DRIFT_MIN_ROWS
            else text
        ) + drift_grid_html(window, self.labels)

    def _show_prices(self, window: Window) -> None:
        if self.reference is None:
            self.price_box.children = ()
            self.price_html.value = _paragraph("No training prices to compare with (see above).")
            return
        shares = price_shares(window)
        bars, training = self.price_chart.marks
        period = shares["period"].fillna(0).to_numpy(float)
        highest = float(max(period.max(initial=0), shares["training"].max()))
        ticks = charts.linear_ticks(0, highest, charts.Y_TICKS, outer=True)
        scale, axis = bars.scales["y"], self.price_chart.axes[1]
        with bars.hold_sync(), training.hold_sync(), scale.hold_sync(), axis.hold_sync():
            scale.max, axis.tick_values = ticks[-1], ticks
            labels = price_bin_labels(self.reference.price.edges)
            bars.x, bars.y = labels, period
            training.x, training.y = labels, shares["training"].to_numpy(float)
        if window.pooled is None or window.pooled.rows == 0:
            self.price_html.value = _paragraph(
                "No prices in this period: the line shows the training sales alone."
            )
            return
        value, judged = window.pooled.psi[PRICE], window.pooled.level(PRICE)
        self.price_html.value = _paragraph(
            f"Price PSI {value:.3f} over {window.pooled.rows:,} priced houses ({judged})."
        )
