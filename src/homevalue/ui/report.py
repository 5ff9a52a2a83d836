"""The model report page: how good the model is, where it errs, and where it came from.

Everything on the page comes from two files written at training time, the model card and
the test sales with their predictions (`holdout.csv`), read once when the page opens. The
pipeline itself is never loaded: the report should open fast and show the figures the model
was accepted on, not figures recomputed by whatever code happens to be installed today.
The one exception is the accuracy on sales reported since (homevalue.feedback), read from
the feedback store as the page opens and shown beside the holdout's.

The tables are built by small pure functions over the holdout frame (tested with pytest);
`ReportPage` only reads the two files and lays the results out as panels.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import ipywidgets as widgets
import numpy as np
import pandas as pd

from homevalue import config
from homevalue.errors import ModelSchemaError
from homevalue.model import FIX, band_label, dollars_of, read_card
from homevalue.model import read_holdout as model_holdout
from homevalue.schema import Schema, readable, short_money
from homevalue.ui import charts, maps, render
from homevalue.ui.feedback import live_accuracy_panel
from homevalue.ui.page import Panel, guarded, version_marker

# The card's metrics with a project target (config: the bars and their reasons).
TARGETS = {"rmsle": config.TARGET_RMSLE, "mape_percent": config.TARGET_MAPE_PERCENT}
# Below this many test sales a neighbourhood's medians are anecdotes, not evidence.
FEW_SALES = 10
# The holdout's own columns; its neighbourhood and location are the fields of those roles
# (schema.ROLES), checked against the card by `place_columns`.
HOLDOUT_COLUMNS = (
    "Sale_Price",
    "Predicted_Price",
    "Price_Low",
    "Price_High",
)
CARD_KEYS = (
    "model_version",
    "metrics",
    "interval",
    "feature_importance_gain_share",
    "data",
    "versions",
)
NOT_IN_TRAINING = "not in the training data"
PROSE_STYLE = "line-height: 1.5; font-size: var(--jp-content-font-size1); margin: 0.5em 0"
# Round prices for the log axes ($50k, $100k, $200k...), as multiples of powers of ten.
# Circles are outlined: the palette's grey (small errors) vanishes on the blank offline map.
CIRCLE_OUTLINE = "#404040"
NEIGHBOURHOOD_INTRO = (
    "Does the model lean one way in some parts of town? Each circle is a neighbourhood, drawn "
    "at the mean position of its test sales and sized by how many there are; its colour is "
    "the median signed error (red: priced too high, blue: too low). The table gives the same "
    "figures, most over-priced first."
)
HOVER_PROMPT = "Point at or tap a circle to see its neighbourhood's figures."
IMPORTANCE_CAPTION = (
    "Computed once at training time from LightGBM's split gain and stored in the card of "
    "model {version}; this page reads it and recomputes nothing. Gain says how much the trees "
    "relied on a feature to cut the error, not how a price changes when the feature does, and "
    "features that move together (year built and year remodelled) share the credit."
)


# ---------------------------------------------------------------- reading (the only I/O)


def read_holdout(folder: Path, card: dict | None = None) -> pd.DataFrame:
    """The test sales with their predictions, as training wrote them; refuses a partial file
    (homevalue.model reads it, without loading the model: this page needs only facts)."""
    return model_holdout(folder, HOLDOUT_COLUMNS, card=card)


def place_columns(schema: Schema, holdout: pd.DataFrame, folder: Path) -> tuple[str, str, str]:
    """The holdout's (neighbourhood, latitude, longitude) columns: the card's fields of those
    roles, whatever the card calls them; a holdout without them is refused."""
    columns = tuple(schema.role(r).name for r in ("neighbourhood", "latitude", "longitude"))
    missing = [c for c in columns if c not in holdout.columns]
    if missing:
        raise ModelSchemaError(f"{folder}: the holdout predictions lack {missing}: {FIX}")
    return columns  # type: ignore[return-value]


def check_card(card: dict, folder: Path) -> None:
    """Refuse a card written by an older trainer, naming what it lacks, before any panel."""
    missing = [key for key in CARD_KEYS if key not in card]
    if missing:
        raise ModelSchemaError(f"{folder}: the model card has no {missing}: {FIX}")


# ---------------------------------------------------------------- pure computations


def signed_error(holdout: pd.DataFrame) -> pd.Series:
    """Predicted / sale price - 1: positive where the model priced the house too high.

    Relative, so a $20k miss on a $400k house counts like a $5k miss on a $100k one; the
    same convention as `maps.ERROR_BANDS`.
    """
    return holdout["Predicted_Price"] / holdout["Sale_Price"] - 1


def inside_interval(holdout: pd.DataFrame) -> pd.Series:
    """True where the sale price fell inside the quoted 80% interval (ends included)."""
    return holdout["Sale_Price"].between(holdout["Price_Low"], holdout["Price_High"])


def share_within(holdout: pd.DataFrame, tolerance: float) -> float:
    """Share of test sales predicted within `tolerance` (0.10 = 10%) of their sale price."""
    return float((signed_error(holdout).abs() <= tolerance).mean())


def residuals_by_neighbourhood(
    holdout: pd.DataFrame,
    label: Callable[[str], str] = readable,
    *,
    places: tuple[str, str, str],
) -> pd.DataFrame:
    """How the model did in each neighbourhood, most over-priced first.

    `places` names the holdout's (neighbourhood, latitude, longitude) columns
    (`place_columns`). Columns: neighbourhood (its code); label (as the form names it:
    `label` of the code); n (test sales); median_price (sale price); median_ape (median
    absolute % error, as a fraction); median_bias (median signed error: + over-, - under-
    priced); inside_share (share inside the 80% interval); latitude, longitude (mean of its
    houses: where the map draws it). Sorted by bias, so systematic misses lead.
    """
    hood, lat, lon = places
    error = signed_error(holdout)
    frame = holdout.assign(bias=error, ape=error.abs(), inside=inside_interval(holdout))
    table = frame.groupby(hood).agg(
        n=("Sale_Price", "size"),
        median_price=("Sale_Price", "median"),
        median_ape=("ape", "median"),
        median_bias=("bias", "median"),
        inside_share=("inside", "mean"),
        latitude=(lat, "mean"),
        longitude=(lon, "mean"),
    )
    table = table.rename_axis("neighbourhood").reset_index()
    order = ["median_bias", "neighbourhood"]
    table = table.sort_values(order, ascending=[False, True], ignore_index=True)
    table.insert(1, "label", table["neighbourhood"].map(label))
    return table


def band_edges(card: dict) -> tuple[float, ...]:
    """The inner edges of the interval's bands of predicted price, as the card stores them."""
    return tuple(band["high"] for band in card["interval"]["bands"][:-1])


def coverage_by_price_band(
    holdout: pd.DataFrame, bands: tuple[float, ...] = maps.PRICE_BANDS
) -> pd.DataFrame:
    """Interval coverage and median width (dollars) per band of *predicted* price.

    Banded by the predicted price because that is what a viewer holds when reading an
    interval ("for houses priced around $X, how often does the range hold the sale?").
    Banding by sale price would punish the extremes, since predictions lean towards the
    middle. Columns: band (label), n, coverage, median_width; empty bands are left out.
    """
    labels = maps.band_labels(bands, short_money)
    frame = pd.DataFrame(
        {
            "band": np.digitize(holdout["Predicted_Price"].to_numpy(float), bands),
            "inside": inside_interval(holdout).to_numpy(),
            "width": (holdout["Price_High"] - holdout["Price_Low"]).to_numpy(float),
        }
    )
    table = frame.groupby("band").agg(
        n=("inside", "size"), coverage=("inside", "mean"), median_width=("width", "median")
    )
    table = table.reset_index()
    return table.assign(band=[labels[i] for i in table["band"]])


def feature_labels(card: dict) -> dict[str, str]:
    """Feature name -> the schema's label ("Year_Built" -> "Year built")."""
    return {f["name"]: f.get("label") or f["name"] for f in card.get("features", [])}


def importance_table(card: dict) -> pd.DataFrame:
    """The card's split-gain shares with readable labels, largest first; nothing recomputed."""
    shares = card["feature_importance_gain_share"]
    labels = feature_labels(card)
    frame = pd.DataFrame(
        {
            "feature": list(shares),
            "label": [labels.get(name, name) for name in shares],
            "share": [float(v) for v in shares.values()],
        }
    )
    return frame.sort_values(["share", "feature"], ascending=[False, True], ignore_index=True)


def target_met(card: dict) -> dict[str, bool]:
    """For each metric with a project target: is the model at or under it?"""
    return {name: card["metrics"][name] <= bar for name, bar in TARGETS.items()}


def circle_radius(n: int) -> float:
    """Circle radius in pixels: area grows with the number of sales, 1 sale still visible."""
    return round(4 + 2 * math.sqrt(n), 1)


def neighbourhood_geojson(table: pd.DataFrame) -> dict:
    """One circle per neighbourhood: colour = median signed error band, size = test sales."""
    shown = table.assign(
        name=table["label"],
        median_bias=table["median_bias"].round(4),
        median_ape=table["median_ape"].round(4),
        inside_share=table["inside_share"].round(4),
    )
    colour = maps.colours(shown["median_bias"], maps.ERROR_BANDS, maps.ERROR_COLOURS)
    columns = ["name", "n", "median_bias", "median_ape", "inside_share"]
    data = maps.points(shown, columns, colour, at=("latitude", "longitude"))
    for feature, n in zip(data["features"], shown["n"], strict=True):
        feature["properties"]["style"].update(radius=circle_radius(int(n)), color=CIRCLE_OUTLINE)
    return data


# ---------------------------------------------------------------- words
# A panel's summary is its text form, which nbval compares: it states the figures a viewer
# sees in the panel, so a retrained model or a changed formula fails the notebook test.


def _pct(fraction: float, digits: int = 1) -> str:
    return f"{fraction:.{digits}%}"


def _signed_pct(fraction: float) -> str:
    return f"{fraction:+.1%}".replace("-", "−")


def _verdict(card: dict, name: str) -> str:
    return "met" if target_met(card)[name] else "MISSED"


def _target(name: str) -> str:
    """A target as the page writes it: 0.13, 10%."""
    return f"{TARGETS[name]:g}%" if name.endswith("_percent") else f"{TARGETS[name]:g}"


def _target_text(card: dict, name: str) -> str:
    return f"≤ {_target(name)}: {_verdict(card, name)}"


def metric_rows(card: dict) -> pd.DataFrame:
    """The headline figures with their targets and one line each on how to read them."""
    m = card["metrics"]
    rows = [
        ("RMSLE", f"{m['rmsle']:.3f}", _target_text(card, "rmsle"),
         "Root mean squared error of log prices: roughly the typical relative miss, "
         "with large misses weighing more."),
        ("MAPE", f"{m['mape_percent']:.1f}%", _target_text(card, "mape_percent"),
         "Mean absolute percentage error: on average a prediction is this far from the "
         "sale price."),
        ("Median APE", f"{m['median_ape_percent']:.1f}%", "",
         "Half of the predictions are closer to the sale price than this."),
        ("MAE", render.money(m["mae_dollars"]), "",
         "Mean absolute error in dollars (pulled up by the dearer houses)."),
        ("R² (log price)", f"{m['r2_log']:.3f}", "",
         "Share of the variation in log prices the model explains (1 would be all)."),
        ("Test sales", f"{m['n_test']:,}", "",
         "Sales kept out of training and calibration; every figure here is measured on them."),
    ]  # fmt: skip
    if cv := card.get("cross_validation"):
        rows.insert(
            1,
            (
                f"RMSLE, {cv['folds']}-fold CV",
                f"{cv['rmsle_mean']:.3f} ± {cv['rmsle_sd']:.3f}",
                "",
                f"The same measure on each fifth of the {cv['n']:,} training sales, by a model "
                "fitted on the other four: mean ± sd. What to expect of another test part.",
            ),
        )
    return pd.DataFrame(rows, columns=["Measure", "Value", "Target", "How to read it"])


def metrics_summary(card: dict) -> str:
    """The figures of the metrics table, in the order it shows them."""
    m = card["metrics"]
    return (
        f"{m['n_test']} test sales, RMSLE {m['rmsle']:.3f} "
        f"(target ≤ {_target('rmsle')} {_verdict(card, 'rmsle')}), "
        f"MAPE {m['mape_percent']:.1f}% "
        f"(target ≤ {_target('mape_percent')} {_verdict(card, 'mape_percent')}), "
        f"median APE {m['median_ape_percent']:.1f}%, MAE {render.money(m['mae_dollars'])}, "
        f"R² (log price) {m['r2_log']:.3f}{_cv_text(card)}; model {card['model_version']}"
    )


def _cv_text(card: dict) -> str:
    cv = card.get("cross_validation")
    if not cv:
        return ""
    return f"; {cv['folds']}-fold CV RMSLE {cv['rmsle_mean']:.3f} ± {cv['rmsle_sd']:.3f}"


def metrics_lead(card: dict) -> str:
    """One sentence that tells the story before the table gives the numbers."""
    m = card["metrics"]
    return (
        f"Tested on {m['n_test']} sales it never saw, the model misses the sale price by "
        f"{m['mape_percent']:.1f}% on average and by less than {m['median_ape_percent']:.1f}% "
        f"for half of them."
    )


def accuracy_summary(holdout: pd.DataFrame) -> str:
    """What the chart shows, in numbers a change to the model would move."""
    price = holdout["Sale_Price"]
    return (
        f"{len(holdout)} test sales on log axes, sale prices {render.money(price.min())} to "
        f"{render.money(price.max())}; {_pct(share_within(holdout, 0.10), 0)} predicted "
        f"within 10% of the sale price, {_pct(share_within(holdout, 0.20), 0)} within 20%"
    )


def accuracy_text(holdout: pd.DataFrame) -> str:
    """How to read the chart, for someone who has not met log axes."""
    return (
        f"Each dot is one of the {len(holdout)} test sales: across, the price it sold for; "
        f"up, the model's prediction. Both axes are logarithmic, so equal distances are equal "
        f"percentages. On the red diagonal the prediction was exact; "
        f"{_pct(share_within(holdout, 0.10), 0)} of the dots are within 10% of it and "
        f"{_pct(share_within(holdout, 0.20), 0)} within 20%."
    )


def _extremes(table: pd.DataFrame) -> str:
    solid = table[table["n"] >= FEW_SALES]
    if solid.empty:
        return f"no neighbourhood has {FEW_SALES} or more test sales"
    high, low = solid.iloc[0], solid.iloc[-1]
    return (
        f"among those with {FEW_SALES}+ sales, most over-priced "
        f"{high['label']} ({_signed_pct(high['median_bias'])}, "
        f"n={high['n']}), most under-priced {low['label']} "
        f"({_signed_pct(low['median_bias'])}, n={low['n']})"
    )


def neighbourhood_summary(table: pd.DataFrame, unseen: list[str]) -> str:
    """The table's extremes (among neighbourhoods with enough sales) and its warnings."""
    text = (
        f"{len(table)} neighbourhoods, {int(table['n'].sum())} test sales; {_extremes(table)}; "
        f"{int((table['n'] < FEW_SALES).sum())} with fewer than {FEW_SALES} sales"
    )
    if unseen:
        text += f"; {NOT_IN_TRAINING}: {', '.join(unseen)}"
    return text + f"; map: one layer of {len(table)} circles"


def neighbourhood_notes(table: pd.DataFrame, known: list[str]) -> list[str]:
    """A short warning per row: few sales, or a neighbourhood the model never trained on."""
    notes = []
    for name, n in zip(table["neighbourhood"], table["n"], strict=True):
        flags = [f"only {n} sale{'s' if n > 1 else ''}"] if n < FEW_SALES else []
        flags += [NOT_IN_TRAINING] if known and name not in known else []
        notes.append("; ".join(flags))
    return notes


def importance_summary(table: pd.DataFrame, version: str) -> str:
    """The five longest bars and what the rest add up to."""
    top = ", ".join(f"{r.label} {r.share:.0%}" for r in table.head(5).itertuples())
    rest = table["share"].iloc[5:]
    return (
        f"{len(table)} features, share of split gain computed at training time and read from "
        f"the card of model {version}: {top}; the other {len(rest)} together {rest.sum():.0%}"
    )


def coverage_summary(card: dict, bands: pd.DataFrame) -> str:
    """The card's coverage and width, then the coverage of each price band."""
    interval = card["interval"]
    by_band = ", ".join(f"{r.band} {_pct(r.coverage, 0)} (n={r.n})" for r in bands.itertuples())
    one = interval.get("one_width")
    baseline = f" (one width for all: {_pct(one['coverage_test'])})" if one else ""
    return (
        f"{interval['level']:.0%} interval: {_pct(interval['coverage_test'])} of "
        f"{card['metrics']['n_test']} test sales inside{baseline}, mean width "
        f"{interval['mean_width_percent_of_price']:.1f}% of the predicted price; "
        f"by predicted price: {by_band}"
    )


def coverage_lead(card: dict) -> str:
    """What the interval promises, how it was set, and whether it kept the promise."""
    interval = card["interval"]
    return (
        f"Every price comes with an {interval['level']:.0%} range, meant to hold the sale "
        f"price of about {interval['level'] * 10:.0f} houses in 10 in every band of predicted "
        f"price, not only on average: each band has its own width. It was set by "
        f"{interval['method']}. On the {card['metrics']['n_test']} test sales it held "
        f"{_pct(interval['coverage_test'])} of them; its width averages "
        f"{interval['mean_width_percent_of_price']:.1f}% of the predicted price. The last "
        f"column is what one width for all prices gives on the same sales: too wide in the "
        f"middle, too narrow at the ends."
    )


def data_pairs(card: dict) -> list[tuple[str, object]]:
    """Where the training data came from, what was dropped and how it was split."""
    data = card["data"]
    removed = [(f"Removed: {why}", f"{n:,}") for why, n in data["removed"].items()]
    split = data["split"]
    low, high = data["price_range"]
    return [
        ("Source", data["source"]),
        ("Sales in the source", f"{data['rows_raw']:,}"),
        *removed,
        ("Sales kept", f"{data['rows_clean']:,}"),
        ("Split", ", ".join(f"{part} {n:,}" for part, n in split.items())),
        ("Split seed", data["split_seed"]),
        ("Sale years", "–".join(str(y) for y in data["sale_years"])),
        ("Sale prices", f"{render.money(low)} to {render.money(high)}"),
        ("Data SHA-256", data["data_sha256"]),
    ]


def training_pairs(card: dict) -> list[tuple[str, object]]:
    """What was trained, when, with which settings, and the artifact's fingerprint."""
    target = card.get("target", {})
    params = ", ".join(f"{k}={v}" for k, v in card.get("params", {}).items())
    return [
        ("Model version", card["model_version"]),
        ("Trained at", card.get("trained_at", "")),
        ("Estimator", card.get("estimator", "")),
        ("Target", f"{target.get('name', '')} ({target.get('transform', '')})"),
        ("Parameters", params),
        ("Interval", card["interval"].get("method", "")),
        ("Artifact SHA-256", card.get("artifact_sha256", "")),
    ]


def provenance_summary(card: dict) -> str:
    """Enough to tell two models apart: version, data, split, fingerprints, versions."""
    data = card["data"]
    split = ", ".join(f"{part} {n}" for part, n in data["split"].items())
    versions = ", ".join(f"{lib} {v}" for lib, v in card["versions"].items())
    return (
        f"model {card['model_version']} trained {card.get('trained_at', '?')}; "
        f"{data['rows_raw']} sales {'–'.join(map(str, data['sale_years']))}, "
        f"{data['rows_clean']} kept ({data['rows_raw'] - data['rows_clean']} removed); "
        f"split {split} (seed {data['split_seed']}); data SHA-256 {data['data_sha256'][:12]}…; "
        f"artifact SHA-256 {card.get('artifact_sha256', '')[:12]}…; {versions}"
    )


# ---------------------------------------------------------------- the page


def _html(markup: str) -> widgets.HTML:
    return widgets.HTML(markup, layout={"width": "100%"})


def _paragraph(text: str) -> str:
    # The HTML widget's line height is a form row's (28px): prose needs its own.
    return f'<p class="hv-lead" style="{PROSE_STYLE}">{render.esc(text)}</p>'


def _panel(children: list, title: str, summary: str) -> Panel:
    return Panel(children, title=title, summary=lambda: summary)


class ReportPage:
    """The model report: card and holdout read once, one panel per section of the story.

    Raises ModelMissingError / ModelSchemaError (so `build` shows `Unavailable`) when the
    model folder lacks the card or the holdout predictions, or either is incomplete.
    """

    def __init__(self, folder: Path | str | None = None):
        self.folder = Path(folder or config.model_dir())
        self.card = read_card(self.folder)
        check_card(self.card, self.folder)
        self.schema = Schema.from_list(self.card["features"])  # the fields' roles and labels
        self.holdout = read_holdout(self.folder, self.card)
        self.metrics = self._metrics()
        self.accuracy = self._accuracy()
        self.neighbourhoods = self._neighbourhoods()
        self.importance = self._importance()
        self.coverage = self._coverage()
        # Reported sales are read from the feedback store, the only figures here not
        # written at training time: this model's, as the page opens.
        self.live = live_accuracy_panel(self.card, model_version=self.card["model_version"])
        self.provenance = self._provenance()

    def apply_request(self, query=None) -> None:
        """Nothing on this page depends on the URL."""

    def _metrics(self) -> Panel:
        table = render.table(metric_rows(self.card), caption="Accuracy on the test sales")
        dollars = render.dollars_note(dollars_of(self.card))
        body = _html(_paragraph(metrics_lead(self.card)) + dollars + table)
        marker = version_marker(self.card["model_version"])
        return _panel([body, marker], "Holdout metrics", metrics_summary(self.card))

    def _accuracy(self) -> Panel:
        chart = charts.predicted_vs_actual(
            self.holdout["Sale_Price"], self.holdout["Predicted_Price"]
        )
        text = _html(_paragraph(accuracy_text(self.holdout)))
        return _panel([chart, text], "Predicted vs actual", accuracy_summary(self.holdout))

    def _neighbourhoods(self) -> Panel:
        known, labels = self._known_neighbourhoods()
        table = residuals_by_neighbourhood(
            self.holdout,
            lambda code: labels.get(code, readable(code)),
            places=place_columns(self.schema, self.holdout, self.folder),
        )
        unseen = [r.label for r in table.itertuples() if known and r.neighbourhood not in known]
        self.neighbourhood_map, status = self._neighbourhood_map(table)
        children = [
            _html(_paragraph(NEIGHBOURHOOD_INTRO)),
            self.neighbourhood_map,
            status,
            _html(neighbourhood_table_html(table, known)),
        ]
        return _panel(children, "Residuals by neighbourhood", neighbourhood_summary(table, unseen))

    def _known_neighbourhoods(self) -> tuple[list[str], dict[str, str]]:
        """The neighbourhoods the model learned, and their labels (the card's vocabulary)."""
        feature = self.schema.role("neighbourhood")
        labels = dict(zip(feature.categories, feature.shown_labels, strict=True))
        return list(feature.categories), labels

    def _neighbourhood_map(self, table: pd.DataFrame):
        status = _html(_paragraph(HOVER_PROMPT))
        layer = maps.layer("Median error by neighbourhood", neighbourhood_geojson(table))
        layer.hover_style = {"weight": 3, "fillOpacity": 1}
        layer.on_hover(guarded(status)(hover_handler(status)))
        layer.on_click(guarded(status)(hover_handler(status)))  # a touch screen has no hover
        m = maps.ames_map()
        m.add(layer)
        m.add(maps.legend("Median error (predicted vs sale)", maps.error_legend()))
        return m, status

    def _importance(self) -> Panel:
        table = importance_table(self.card)
        bars = charts.horizontal_bars(
            table["label"],
            table["share"],
            label="Share of total split gain",
            fmt=".0%",
            title="What the trees split on",
        )
        caption = _html(_paragraph(IMPORTANCE_CAPTION.format(version=self.card["model_version"])))
        summary = importance_summary(table, self.card["model_version"])
        return _panel([bars, caption], "Feature importance", summary)

    def _coverage(self) -> Panel:
        bands = coverage_by_price_band(self.holdout, band_edges(self.card))
        table = coverage_table_html(self.holdout, with_card_figures(bands, self.card), self.card)
        body = _paragraph(coverage_lead(self.card)) + table
        return _panel([_html(body)], "Interval coverage", coverage_summary(self.card, bands))

    def _provenance(self) -> Panel:
        sections = [
            ("Data", data_pairs(self.card)),
            ("Training", training_pairs(self.card)),
            ("Library versions at training time", list(self.card["versions"].items())),
        ]
        body = "".join(
            f"<h4>{render.esc(title)}</h4>{render.definition_table(pairs)}"
            for title, pairs in sections
        )
        # A hash or a long source breaks inside its cell (homevalue.css, .hv-pairs td).
        return _panel([_html(body)], "Provenance", provenance_summary(self.card))


def hover_handler(status: widgets.HTML) -> Callable:
    """The map's hover callback: the neighbourhood's figures, escaped, in `status`."""

    def show(feature=None, **_ignored) -> None:
        p = (feature or {}).get("properties", {})
        status.value = _paragraph(
            f"{p['name']}: {p['n']} test sales, median error {_signed_pct(p['median_bias'])}, "
            f"typical miss {_pct(p['median_ape'])}, {_pct(p['inside_share'], 0)} inside the "
            f"interval."
        )

    return show


def neighbourhood_table_html(table: pd.DataFrame, known: list[str]) -> str:
    """The residuals table as shown: readable names, percentages, a note on weak rows."""
    shown = table.assign(
        neighbourhood=table["label"],
        note=neighbourhood_notes(table, known),
    )
    columns = ["neighbourhood", "n", "median_price", "median_bias", "median_ape", "inside_share"]
    return render.table(
        shown[[*columns, "note"]],
        label="Errors by neighbourhood",
        headers={
            "neighbourhood": "Neighbourhood",
            "n": "Test sales",
            "median_price": "Median sale",
            "median_bias": "Median error",
            "median_ape": "Median miss",
            "inside_share": "Inside interval",
            "note": "Note",
        },
        formats={
            "median_price": render.money,
            "median_bias": _signed_pct,
            "median_ape": _pct,
            "inside_share": lambda v: _pct(v, 0),
        },
        caption="Error = predicted / sale price − 1; miss = its size, either way",
    )


def with_card_figures(bands: pd.DataFrame, card: dict) -> pd.DataFrame:
    """The holdout's bands plus what the card says of each: the range's half-width, the
    calibration sales that set it, and the coverage one width for all would have had."""
    by_label = {band_label(b["low"], b["high"]): b for b in card["interval"]["bands"]}
    figures = [by_label.get(label, {}) for label in bands["band"]]
    return bands.assign(
        halfwidth=[b.get("log_halfwidth", math.nan) for b in figures],
        n_calibration=[b.get("n_calibration") for b in figures],
        one_width=[_or_nan(b.get("coverage_test_one_width")) for b in figures],
    )


def _or_nan(value: float | None) -> float:
    return math.nan if value is None else value


def _plus_minus(log_halfwidth: float) -> str:
    return "—" if math.isnan(log_halfwidth) else f"±{math.exp(log_halfwidth) - 1:.0%}"


def coverage_table_html(
    holdout: pd.DataFrame, bands: pd.DataFrame, card: dict | None = None
) -> str:
    """Coverage per band of predicted price, with all test sales as the last row."""
    overall = pd.DataFrame(
        {
            "band": ["All test sales"],
            "n": [len(holdout)],
            "coverage": [inside_interval(holdout).mean()],
            "median_width": [(holdout["Price_High"] - holdout["Price_Low"]).median()],
        }
    )
    if card and "one_width" in card["interval"]:
        overall["one_width"] = card["interval"]["one_width"]["coverage_test"]
        overall["n_calibration"] = sum(b["n_calibration"] for b in card["interval"]["bands"])
    columns = ["band", "n", "coverage", "median_width"]
    extra = [c for c in ("halfwidth", "n_calibration", "one_width") if c in bands]
    table = pd.concat([bands[columns + extra], overall], ignore_index=True)
    return render.table(
        table,
        label="Interval coverage by price band",
        headers={
            "band": "Predicted price",
            "n": "Test sales",
            "coverage": "Sale inside the range",
            "median_width": "Median range width",
            "halfwidth": "Range",
            "n_calibration": "Calibration sales",
            "one_width": "Inside, one width for all",
        },
        formats={
            "coverage": _pct,
            "median_width": render.money,
            "halfwidth": _plus_minus,
            "n_calibration": lambda v: "" if v is None or v != v else f"{int(v):,}",
            "one_width": lambda v: "" if v != v else _pct(v),
        },
        caption="Coverage by band of predicted price",
    )
