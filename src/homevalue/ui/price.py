"""The "Price a home" page: a form and a map in, a price with its reasons out, at every change.

Pricing is `homevalue.predict_one` (a tenth of a millisecond); what costs time is sending
widget updates, so one change re-prices once (Throttle) and the map's layers are updated in
place, never rebuilt.
"""

from __future__ import annotations

import base64
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import MappingProxyType

import ipywidgets as widgets
import numpy as np
import pandas as pd
from ipyleaflet import Marker

from homevalue import config, export
from homevalue.comps import (
    COMPS_RULE_TEXT,
    comparable_sales_for,
    neighbourhood_at,
    reference_centres,
)
from homevalue.errors import ValidationError
from homevalue.explain import Explanation
from homevalue.export import Driver
from homevalue.model import Model, load_model
from homevalue.predict import Prediction, explain_prediction, predict_one, what_if
from homevalue.schema import Schema, check_value, fmt, fmt_for
from homevalue.ui import charts, maps, render
from homevalue.ui.feedback import FeedbackBox
from homevalue.ui.form import HouseForm
from homevalue.ui.page import (
    Debounce,
    Hooks,
    Panel,
    Throttle,
    guarded,
    live_region,
    page_path,
    request_query,
    version_marker,
)

# Voilà's own URL parameters (`?theme=dark`, a login `?token=`), not fields of the house.
VOILA_PARAMETERS = {"theme", "template", "token"}
WHAT_IF_POINTS = 40
SALE_PROPERTIES = ["Sale_ID"]  # a click finds the rest in self.sales
COMPS_COLOUR = "#e66101"
# The comp the viewer picked: larger, with a dark outline that reads on every basemap.
HIGHLIGHT_STYLE = {"radius": 14, "weight": 4, "color": "#111111", "fillOpacity": 1.0}


def comps_summary(comps) -> str:
    if comps is None or not len(comps):
        return "no comparable sales"
    low, high = comps["Sale_Price"].min(), comps["Sale_Price"].max()
    said = comps.get("model_price")
    model = (
        ""
        if said is None or said.isna().all()
        else f"; the model says {render.money(said.min())} – {render.money(said.max())}"
    )
    return (
        f"{len(comps)} comparable sales within {comps['distance_km'].max():.2f} km "
        f"({comps['rule'].iloc[0]}), sold for {render.money(low)} – {render.money(high)}"
        f"{model}"
    )


def _percent(value: float) -> str:
    """+4%, -12%; 0% rather than a signed zero."""
    whole = round(value * 100)
    return f"{whole:+d}%" if whole else "0%"


# The comps table's columns: the sales' own fields are named by their role (schema.ROLES),
# whatever the model's card calls them.
COMPS_HEADERS = {
    "number": "#",
    "distance_km": "Distance (km)",
    "Sale_Price": "Sold for",
    "model_price": "Model says",
    "difference": "Model vs sale",
    "living_area": "Living area (sq ft)",
    "building_type": "Type",
    "year_built": "Built",
    "neighbourhood": "Neighbourhood",
    "sold": "Sold",
}
COMPS_FORMATS = {
    "Sale_Price": render.money,
    "model_price": render.money,
    "difference": _percent,
    "distance_km": "{:.2f}".format,
    "living_area": "{:,.0f}".format,
}


def comps_frame(comps, schema: Schema) -> pd.DataFrame:
    """The comps as the page and the export show them: what each sold for beside what the
    model says for it, numbered as the buttons that show one on the map. Built from plain
    columns: pandas' assign and map cost more than the whole search for the comps."""
    sold = comps["Sale_Price"].to_numpy(float)
    said = comps["model_price"].to_numpy(float) if "model_price" in comps else sold * np.nan
    kind, hood = schema.role("building_type"), schema.role("neighbourhood")
    return pd.DataFrame(
        {
            "number": np.arange(1, len(comps) + 1),
            "distance_km": comps["distance_km"].to_numpy(),
            "Sale_Price": sold,
            "model_price": said,
            "difference": said / sold - 1,
            "living_area": comps[schema.role("living_area").name].to_numpy(),
            "building_type": [kind.label_of(v) for v in comps[kind.name]],
            "year_built": comps[schema.role("year_built").name].to_numpy(),
            "neighbourhood": [hood.label_of(v) for v in comps[hood.name]],
            "sold": [f"{y}-{int(m):02d}" for y, m in comps[["Year_Sold", "Mo_Sold"]].to_numpy()],
        }
    )


def comps_table(comps, schema: Schema) -> str:
    return render.table(
        comps_frame(comps, schema),
        headers=COMPS_HEADERS,
        formats=COMPS_FORMATS,
        label="Comparable sales",
    )


def what_if_grid(feature, current: float) -> np.ndarray:
    """Evenly spaced values over what the model saw, plus the house's own value."""
    low, high = min(feature.train_min, current), max(feature.train_max, current)
    grid = np.linspace(low, high, WHAT_IF_POINTS)
    if feature.kind == "integer":
        grid = np.round(grid)
    return np.unique(np.append(grid, current))


def share_query(values: dict, schema) -> str:
    """The form as a URL query: every field, so the link prices the same house anywhere."""
    pairs = {}
    for feature in schema.features:
        value = values[feature.name]
        pairs[feature.name] = value if feature.is_category else fmt(value, grouping=False)
    return urllib.parse.urlencode(pairs)


def interval_sentence(p: Prediction) -> str:
    """The range, and how often such ranges held for the test sales priced like this one
    (its band's measured coverage, not a blanket 80%)."""
    between = f"Between {render.money(p.low)} and {render.money(p.high)}"
    if p.interval_coverage is None:
        return f"{between} (80% range)."
    return (
        f"{between}: in the test sales priced like this one ({p.price_band['label']}), "
        f"{p.interval_coverage:.0%} sold inside such a range."
    )


def held_for(p: Prediction) -> str:
    """(held for 81% of the test sales priced $150k – $200k), for the panel's summary."""
    if p.interval_coverage is None:
        return ""
    return f" (held for {p.interval_coverage:.0%} of the test sales priced {p.price_band['label']})"


def accuracy_sentence(p: Prediction, schema: Schema) -> str:
    """The holdout's median error for houses like this one, and what "like" means here."""
    here = p.accuracy_here
    if not here:
        return ""
    scope = (
        schema.role("neighbourhood").label_of(here["value"])
        if here["scope"] == "neighbourhood"
        else f"homes priced {here['value']}"
    )
    if here["median_error_percent"] is None:
        return f"Median error here: not measured (no test sales among {scope})."
    return (
        f"Median error here: {here['median_error_percent']:.1f}% "
        f"({scope}, {here['n_test']} test sales)"
    )


def _copy(frame: pd.DataFrame | None) -> pd.DataFrame | None:
    return None if frame is None else frame.copy()


@dataclass(frozen=True)
class Priced:
    """One repricing as the page shows it, all of one house: what `on_priced` hands on.

    `house` is the record that was priced, as `predict_one` cleaned it (codes, not labels;
    read-only); `prediction`, `comps`, `explanation` and `curve` (the what-if) are its own,
    the tables as copies.
    """

    house: Mapping[str, object]
    prediction: Prediction
    comps: pd.DataFrame | None
    explanation: Explanation | None
    curve: pd.DataFrame | None
    model: Model


class PricePage:
    """The widgets of the page and the wiring between them; panels are displayed by cells."""

    def __init__(self, model: Model | None = None):
        self.model = model or load_model()
        self.schema = self.model.schema
        # The fields the page works with by name, found by their roles (schema.ROLES).
        self.lat, self.lon = self.schema.place
        self.hood = self.schema.role("neighbourhood").name
        self.area = self.schema.role("living_area").name
        self.built = self.schema.role("year_built").name
        self.sales = self.model.reference_sales()
        self.form = HouseForm(self.schema)
        self.status = widgets.HTML()
        self.guard = guarded(self.status)
        self.last: Prediction | None = None
        self.comps = None
        self.curve = None
        self.centres = reference_centres(self.model.path)
        self.moved_from: tuple[float, float] | None = None  # the spot before a chosen move
        # Whether the share link also tells the browser to keep the house in its address
        # (homevalue.js, "address"): from the viewer's request on, never for the page a
        # preheated kernel builds before anyone asked for it.
        self.address_follows = False
        self.kept: dict | None = None  # the house a returning viewer's address brought back
        self._build_map()
        self._build_answer()
        self._build_what_if()
        self._build_download()
        self._build_explanation()
        self.feedback_box = FeedbackBox(self.model.card, self._priced, guard=self.guard)
        self.form.on_implied(self.guard(self._implied))
        self.form.on_change(Throttle(self.guard(self.refresh)))
        self.after_pricing = Hooks(self.status)  # on_priced's callbacks
        self.refresh()

    # --- building -------------------------------------------------------------------------

    def _build_map(self) -> None:
        self.map = maps.ames_map(height="520px")
        # The sold houses (~470 kB of GeoJSON) were most of the page's widget state, which
        # the browser receives and builds before it draws anything: they come once the
        # browser has drawn the map (it reports the map's bounds then), after first paint.
        self.sales_layer = maps.layer("Sold houses", opacity=0.7)
        self.sales_shown = False
        self.map.observe(self.guard(self.show_sales), names="south")
        self.comps_layer = maps.layer("Comparable sales", opacity=1.0, radius=9)
        self.comps_layer.on_click(self.guard(self._comp_clicked))
        values = self.form.values()
        self.marker = Marker(
            location=(values[self.lat], values[self.lon]), draggable=True, title="This house"
        )
        for item in (self.sales_layer, self.comps_layer, self.marker):
            self.map.add(item)
        self.map.add(maps.legend("Sold for", maps.price_legend()))
        self.map.on_interaction(self.guard(self._map_clicked))
        self.marker.observe(self.guard(self._marker_moved), names="location")
        self.sales_layer.on_click(self.guard(self._sale_clicked))
        self.offer_text = widgets.HTML()
        self.offer_button = widgets.Button(
            description="Start from this house",
            icon="home",
            layout={"flex": "0 0 auto", "width": "auto"},
        )
        self.offer_button.on_click(self.guard(self._use_offer))
        self.offer = widgets.HBox([self.offer_text, self.offer_button], layout={"display": "none"})
        self.offered = None
        self.place_html = widgets.HTML()
        self.keep_button = widgets.Button(
            description="Keep the previous spot", icon="undo", layout={"width": "auto"}
        )
        self.keep_button.on_click(self.guard(self._keep_spot))
        self.keep_button.layout.display = "none"

    def show_sales(self, _change=None) -> None:
        """Fill the sold houses' layer, once; the map's class `hv-sales-shown` says so."""
        if self.sales_shown:
            return
        self.sales_shown = True
        colour = maps.colours(self.sales["Sale_Price"], maps.PRICE_BANDS, maps.BAND_COLOURS)
        self.sales_layer.data = maps.points(
            self.sales, SALE_PROPERTIES, colour, at=self.schema.place
        )
        self.map.add_class("hv-sales-shown")

    def _build_answer(self) -> None:
        self.price_html = widgets.HTML()
        # What a screen reader says after a change: the price settled on, once.
        self.announcement = live_region()
        self._announce = Debounce(self.guard(self._announce_price))
        self.flags_html = widgets.HTML()
        self.link_html = widgets.HTML()
        self.kept_html = widgets.HTML()
        self.comps_html = widgets.HTML()
        self.comp_choice = widgets.ToggleButtons(
            options=[],
            value=None,
            description="Show on the map",
            style={"description_width": "auto", "button_width": "48px"},
        )
        self.comp_choice.observe(self.guard(self._comp_chosen), names="value")
        self.comp_choice.add_class("hv-comp-choice")

    def _build_what_if(self) -> None:
        numeric = [
            f for f in self.schema.features if not f.is_category and f.name not in self.schema.place
        ]
        self.what_if_choice = widgets.Dropdown(
            options=[(f.label, f.name) for f in numeric],
            value=max(numeric, key=lambda f: self._importance(f.name)).name,
            description="Vary",
        )
        self.what_if_choice.observe(self.guard(lambda _: self._update_what_if()), names="value")
        self.chart = charts.WhatIfChart()

    def _build_download(self) -> None:
        """A button: the file is built on demand, never on the hot path of every change."""
        self.download_button = widgets.Button(
            description="Download this valuation",
            icon="download",
            tooltip="One HTML file",
            layout={"width": "auto"},
        )
        self.download_button.add_class("hv-download-button")
        self.download_button.on_click(self.guard(self._download))
        self.download_link = widgets.HTML()
        self.downloads = 0
        self.download_box = widgets.HBox(
            [self.download_button, self.download_link],
            layout={"align_items": "center", "flex_flow": "row wrap"},
        )
        self.download_box.add_class("hv-download-box")

    def _build_explanation(self) -> None:
        """The "Why this price" waterfall and its words (what a screen reader reads);
        `explanation` is the current one, for whoever shows or exports the page."""
        self.explanation: Explanation | None = None
        self.waterfall = charts.WaterfallChart()
        self.drivers_html = widgets.HTML()

    def _label(self, code: str) -> str:
        """A neighbourhood as the form names it (the card's label)."""
        return self.schema.role("neighbourhood").label_of(code)

    def _importance(self, name: str) -> float:
        return self.model.card.get("feature_importance_gain_share", {}).get(name, 0.0)

    # --- panels (one per notebook cell) --------------------------------------------------

    @property
    def main(self) -> Panel:
        """The form on the left; the price, the map and the offer to start from a sale on
        the right, so the answer stays in view while the form is filled in."""
        form = widgets.VBox([widgets.HTML("<h3>The house</h3>"), self.form.box])
        # Two parts, so a phone's one column can put the price first and the map after the
        # form (homevalue.css); side by side they read as one column.
        top = widgets.VBox(
            [
                version_marker(self.model.version),
                self.kept_html,
                self.status,
                self.price_html,
                self.announcement,
                self.flags_html,
                self.link_html,
                self.download_box,
            ]
        )
        where = widgets.VBox(
            [
                widgets.HTML(
                    "<h3>Where it is</h3><p class='hv-hint'>Click the map or drag the marker "
                    "to place the house (its neighbourhood follows the sales around it); "
                    "choose a neighbourhood to move it there; click a sold house to start "
                    "from it.</p>"
                ),
                self.place_html,
                self.keep_button,
                self.map,
                self.offer,
            ]
        )
        answer = widgets.VBox([top, where])
        form.layout, answer.layout = {"flex": "1 1 420px"}, {"flex": "1 1 420px"}
        box = widgets.HBox([form, answer], layout={"flex_flow": "row wrap"})
        for widget, css in (
            (box, "hv-main"),
            (answer, "hv-answer"),
            (top, "hv-answer-top"),
            (where, "hv-answer-map"),
        ):
            widget.add_class(css)
        return Panel([box], title="Price a home", summary=self._describe)

    @property
    def comparables(self) -> Panel:
        hint = widgets.HTML(
            f"<p class='hv-hint'>{render.esc(COMPS_RULE_TEXT)} “Model says” is this model's "
            "price for each sale. Pick one to outline it on the map and start from it.</p>"
        )
        return Panel(
            [hint, self.comp_choice, self.comps_html],
            title="Comparable sales",
            summary=lambda: comps_summary(self.comps),
        )

    @property
    def drivers(self) -> Panel:
        """Why this price: from a typical house's price, the largest drivers one by one, the
        rest together, to this house's price."""
        return Panel(
            [self.waterfall.figure, self.drivers_html],
            title="Why this price",
            summary=lambda: self.explanation.summary() if self.explanation else "no price yet",
        )

    @property
    def feedback(self) -> Panel:
        """Is this price right?: the actual sale price, or what looks wrong, for the house
        priced (homevalue.feedback keeps it; the report page shows the accuracy)."""
        return Panel(
            self.feedback_box.children(),
            title="Is this price right?",
            summary=self.feedback_box.describe,
        )

    def _priced(self) -> Prediction | None:
        """The price shown for the house in the form; None while a field is marked."""
        return None if any(e.value for e in self.form.errors.values()) else self.last

    @property
    def sensitivity(self) -> Panel:
        return Panel(
            [self.what_if_choice, self.chart.figure], title="What if", summary=self._describe_curve
        )

    # --- summaries (the panels' text, compared by nbval) ------------------------------

    def _describe(self) -> str:
        place = self._place_problem(self.form.values())
        return f"{self._describe_house()}\n{self._describe_price()}" + (
            f"\n{place}" if place else ""
        )

    def _describe_house(self) -> str:
        v = self.form.values()
        return (
            f"{self._label(v[self.hood])}, {fmt(v[self.area])} sq ft, built "
            f"{v[self.built]}, at {v[self.lat]:.4f}, {v[self.lon]:.4f}; "
            f"{fmt(len(self.sales))} sold houses on the map"
        )

    def _describe_price(self) -> str:
        p = self.last
        if p is None:
            return "no price yet"
        flags = "; ".join(f.message for f in p.flags) or "none"
        return (
            f"Price {render.money(p.price)}, 80% interval "
            f"{render.money(p.low)} – {render.money(p.high)}{held_for(p)}; "
            f"{accuracy_sentence(p, self.schema)}; flags: {flags}; model {p.model_version}"
        )

    def _describe_curve(self) -> str:
        c, name = self.curve, self.what_if_choice.value
        if c is None or not len(c):
            return "no curve"
        feature = self.schema.by_name[name]
        low, high = fmt_for(feature, c[name].min()), fmt_for(feature, c[name].max())
        unit = f" {feature.unit}" if feature.unit else ""
        return (
            f"{feature.label} from {low} to {high}{unit}: "
            f"{render.money(c['price'].min())} – {render.money(c['price'].max())}"
        )

    # --- reacting -------------------------------------------------------------------------

    def refresh(self) -> None:
        """Re-price from the form; on bad input mark the fields and keep the last answer."""
        values = self.form.values()
        try:
            prediction = predict_one(values, model=self.model)
        except ValidationError as error:
            self.form.show_problems(error.problems)
            self.status.value = render.notice(
                "Fix the marked field to update the price; the last price is shown below."
                if self.last
                else "Fix the marked field to get a price."
            )
            self._announce()
            return
        self.form.show_problems([])
        self.status.value = ""
        if self.kept is not None and values != self.kept:
            self.kept, self.kept_html.value = None, ""  # said once; the house is theirs now
        self.last = prediction
        self._announce()
        self._show_price(prediction)
        self._update_location(values)
        self._update_what_if()
        self._update_explanation()
        if self.after_pricing:
            self.after_pricing.run(self.last_priced())

    def on_priced(
        self, callback: Callable[[Priced], None], *, status: widgets.HTML | None = None
    ) -> None:
        """Call `callback(priced)` after every repricing, and now for the price shown.

        The way for a panel to follow the house: a callback on the form's changes would run
        before the throttled repricing and read the previous price. It is not called while
        a field is marked invalid (the page keeps the last price). If it raises, the page
        and the other callbacks go on; the error is logged and a short line says so in
        `status` (the callback's panel's own line; the page's status line if not given).
        """
        self.after_pricing.add(callback, status)
        if self.last is not None:
            self.after_pricing.run_one(callback, status, self.last_priced())

    def last_priced(self) -> Priced | None:
        """The last repricing, with copies of its tables (a callback may change them)."""
        p = self.last
        if p is None:
            return None
        return Priced(
            house=MappingProxyType(dict(p.inputs)),
            prediction=p,
            comps=_copy(self.comps),
            explanation=self.explanation,
            curve=_copy(self.curve),
            model=self.model,
        )

    def _show_price(self, p: Prediction) -> None:
        self.price_html.value = (
            f'<div class="hv-price">{render.money(p.price)}</div>'
            f'<div class="hv-interval">{render.esc(interval_sentence(p))}</div>'
            f'<div class="hv-accuracy">{render.esc(accuracy_sentence(p, self.schema))}</div>'
            + render.dollars_note(p.dollars_of)
        )
        self.flags_html.value = render.bullet_list(
            f.message for f in p.flags if f.code != "default_used"
        )
        self._show_link()

    def _show_link(self) -> None:
        """The share link; once the viewer has the page, it also carries the query for the
        browser's address (data-hv-address), so Reload, a bookmark or a new kernel brings
        this house back. Always the canonical query, never what a link was typed as."""
        query = share_query(self.form.values(), self.schema)
        address = f' data-hv-address="?{render.esc(query)}"' if self.address_follows else ""
        self.link_html.value = (
            f'<a class="hv-share" href="{render.esc(f"{page_path()}?{query}")}"{address} '
            'target="_blank">Link to this house</a> '
            "<span class='hv-hint'>(copy it to share this estimate)</span>"
        )

    def _announce_price(self) -> None:
        """Say the price (and range) the form has settled on, or that a field needs fixing:
        a short sentence, unlike the panel, so hearing it after each change is bearable."""
        p, problems = self.last, [n for n, e in self.form.errors.items() if e.value]
        if problems:
            labels = ", ".join(self.schema.by_name[n].label for n in problems)
            text = f"Price not updated: fix {labels}."
        elif p is None:
            text = ""
        else:
            low, high = render.money(p.low), render.money(p.high)
            text = f"Price {render.money(p.price)}, between {low} and {high}."
        self.announcement.value = render.esc(text)  # unchanged words: traitlets sends nothing

    def _update_location(self, values: dict) -> None:
        lat, lon = values[self.lat], values[self.lon]
        if tuple(self.marker.location) != (lat, lon):
            self.marker.location = (lat, lon)
        self._show_place(values)
        self.comps = comparable_sales_for(values, folder=self.model.path, with_model_price=True)
        self.comps_html.value = comps_table(self.comps, self.schema)
        options = [(str(i + 1), i) for i in range(len(self.comps))]
        if list(self.comp_choice.options) != options:
            self.comp_choice.options = options
        self.comp_choice.tooltips = [
            f"Outline sale {i + 1} ({render.money(p)}) on the map"
            for i, p in enumerate(self.comps["Sale_Price"])
        ]
        if self.comp_choice.value is None:
            self._draw_comps()
        else:
            self.comp_choice.value = None  # new comps: none picked yet (redraws them)

    def _draw_comps(self, chosen: int | None = None) -> None:
        styles = [HIGHLIGHT_STYLE if i == chosen else {} for i in range(len(self.comps))]
        self.comps_layer.data = maps.points(
            self.comps,
            SALE_PROPERTIES,
            [COMPS_COLOUR] * len(self.comps),
            styles,
            at=self.schema.place,
        )

    # --- location and neighbourhood -------------------------------------------------

    def _place_problem(self, values: dict) -> str:
        """The notice when the chosen neighbourhood is not the one the spot is in."""
        located = neighbourhood_at(values[self.lat], values[self.lon], folder=self.model.path)
        if located == values[self.hood]:
            return ""
        return (
            f"This spot is in {self._label(located)} by its nearest sales; it is "
            f"priced as {self._label(values[self.hood])}, as chosen. Choose "
            f"{self._label(located)}, or place the house in "
            f"{self._label(values[self.hood])}, to make them agree."
        )

    def _show_place(self, values: dict) -> None:
        problem = self._place_problem(values)
        self.place_html.value = render.notice(problem) if problem else ""
        centre = self.centres.get(values[self.hood])
        moved = self.moved_from is not None and centre == (values[self.lat], values[self.lon])
        if not moved:
            self.moved_from = None
        self.keep_button.layout.display = "flex" if moved else "none"

    def _implied(self, name: str | None, value) -> dict | None:
        """A viewer's change that implies others: a chosen neighbourhood moves the house to
        its centre (inside it by construction, so placing there names it again); typed
        coordinates place the house, and its neighbourhood follows."""
        values = self.form.values()
        if name == self.hood and value in self.centres:
            self.moved_from = (values[self.lat], values[self.lon])
            lat, lon = self.centres[value]
            return {self.lat: lat, self.lon: lon}
        if name in self.schema.place:
            self.moved_from = None
            return {self.hood: self._located(values[self.lat], values[self.lon])}
        return None

    def _located(self, lat: float, lon: float) -> str:
        """The neighbourhood of a spot, if the form offers it (else the current choice)."""
        hood = neighbourhood_at(lat, lon, folder=self.model.path)
        hood_field = self.schema.by_name[self.hood]
        return hood if hood in hood_field.categories else self.form.values()[self.hood]

    def place(self, lat: float, lon: float) -> None:
        """Put the house at (lat, lon): its neighbourhood is the one its sales say."""
        lat, lon = round(lat, 6), round(lon, 6)
        self.moved_from = None
        self.form.set_values({self.lat: lat, self.lon: lon, self.hood: self._located(lat, lon)})

    def _keep_spot(self, _button=None) -> None:
        """Undo the move a chosen neighbourhood made, keeping the choice: an override."""
        if self.moved_from is not None:
            lat, lon = self.moved_from
            self.moved_from = None
            self.form.set_values({self.lat: lat, self.lon: lon})

    def _update_what_if(self) -> None:
        if self.last is None:
            return
        name = self.what_if_choice.value
        feature = self.schema.by_name[name]
        current = self.last.inputs[name]
        self.curve = what_if(
            self.last.inputs, name, what_if_grid(feature, current), model=self.model
        )
        unit = f" ({feature.unit})" if feature.unit else ""
        self.chart.show(
            self.curve[name],
            self.curve["price"],
            self.curve["low"],
            self.curve["high"],
            current,
            self.last.price,
            f"{feature.label}{unit}",
            grouping=bool(feature.unit),
        )

    def _update_explanation(self) -> None:
        """The same numbers as `predict_one(..., explain=True)` and the API's `explain`."""
        self.explanation = explain_prediction(self.last, model=self.model).explanation
        steps = self.explanation.steps()
        self.waterfall.show(
            [s.text for s in steps],
            [s.start for s in steps],
            [s.end for s in steps],
            [s.kind == "total" for s in steps],
        )
        # Read by screen readers; shown instead of the chart on a phone (homevalue.css).
        words = (s.text for s in steps)
        self.drivers_html.value = render.bullet_list(words, css="hv-sr-only hv-drivers-list")

    # --- the valuation to take away ----------------------------------------------------

    def valuation(self, valued_at: datetime | None = None) -> export.Valuation | None:
        """The page's answer as it stands (the last good price and what came with it).

        The one place the export's sections are filled from the page.
        """
        p, card = self.last, self.model.card
        if p is None:
            return None
        values = p.inputs
        interval = card["interval"]
        return export.Valuation(
            title=self._house_title(values),
            price=p.price,
            low=p.low,
            high=p.high,
            level=interval["level"],
            inputs=tuple(self._export_field(f, values[f.name]) for f in self.schema.features),
            model_version=p.model_version,
            valued_at=valued_at or datetime.now(UTC),
            caveat=render.dollars_text(self.model.dollars_of),
            trained_at=card.get("trained_at", ""),
            flags=tuple(f.message for f in p.flags if f.code != "default_used"),
            coverage=self._export_coverage(p),
            accuracy=self._export_accuracy(p),
            drivers=self._export_drivers(),
            comps=self._export_comps(),
            comps_note=comps_summary(self.comps),
            curve=self._export_curve(),
        )

    def _house_title(self, values: dict) -> str:
        """North Ames, 1,800 sq ft, built 1960: a house in a few words."""
        return (
            f"{self._label(values[self.hood])}, {fmt(values[self.area])} sq ft, "
            f"built {fmt(values[self.built], grouping=False)}"
        )

    def _export_drivers(self) -> export.Drivers | None:
        """The waterfall's steps (the same top drivers and "other features" as the page)."""
        if self.explanation is None:
            return None
        steps = self.explanation.steps()
        items = [Driver(step.label.rsplit(": ", 1)[0], step.dollars) for step in steps[1:-1]]
        return export.Drivers(self.explanation.base_price, tuple(items), steps[0].label)

    def _export_coverage(self, p: Prediction) -> export.Coverage | None:
        """How often the interval held for the test sales in this price's own band."""
        if p.interval_coverage is None:
            return None
        band = int(self.model.bands.index(p.price))
        sales = self.model.card["interval"]["bands"][band]["n_test"]
        return export.Coverage(p.interval_coverage, f"houses priced {p.price_band['label']}", sales)

    def _export_accuracy(self, p: Prediction) -> export.Accuracy | None:
        here = p.accuracy_here
        if not here or here["median_error_percent"] is None:
            return None
        scope = (
            self._label(here["value"])
            if here["scope"] == "neighbourhood"
            else f"houses priced {here['value']}"
        )
        return export.Accuracy(here["median_error_percent"] / 100, scope, here["n_test"])

    def _export_field(self, feature, value) -> export.Field:
        shown = feature.label_of(value) if feature.is_category else fmt_for(feature, value)
        return export.Field(feature.label, shown, feature.unit)

    def _export_comps(self) -> export.Table | None:
        """The comparable sales with the columns and formats of the page's table."""
        comps = self.comps
        if comps is None or not len(comps):
            return None
        return export.Table.from_frame(
            comps_frame(comps, self.schema), headers=COMPS_HEADERS, formats=COMPS_FORMATS
        )

    def _export_curve(self) -> export.Curve | None:
        c, name = self.curve, self.what_if_choice.value
        if c is None or not len(c) or self.last is None:
            return None
        feature = self.schema.by_name[name]
        return export.Curve(
            feature.label,
            feature.unit,
            *(tuple(float(v) for v in c[column]) for column in (name, "price", "low", "high")),
            current_x=float(self.last.inputs[name]),
            current_price=self.last.price,
            grouping=bool(feature.unit),
        )

    def _download(self, _button=None) -> None:
        """Build the file and hand it to the browser: the template clicks the fresh link once
        (one-click download); the link stays for a browser that held the click back."""
        valuation = self.valuation()
        if valuation is None:
            self.status.value = render.notice("There is no price to download yet.")
            return
        content = export.valuation_html(valuation).encode("utf-8")
        values = self.last.inputs
        name = export.valuation_filename(
            valuation.valued_at, values[self.hood], f"{values[self.area]:.0f}sqft"
        )
        self.downloads += 1
        payload = base64.b64encode(content).decode("ascii")
        self.download_link.value = (
            f'<span class="hv-hint">If the download did not start: </span>'
            f'<a class="hv-download" data-autoclick="{self.downloads}" '
            f'download="{render.esc(name)}" href="data:text/html;base64,{payload}">'
            f"{render.esc(name)}</a>"
        )

    def _map_clicked(self, **event) -> None:
        # A click on a sold house stays with its layer (maps.layer), so this is the map.
        if event.get("type") == "click":
            self.place(*event["coordinates"])

    def _marker_moved(self, change) -> None:
        lat, lon = change["new"]
        values = self.form.values()
        if (round(lat, 6), round(lon, 6)) != (values[self.lat], values[self.lon]):
            self.place(lat, lon)

    def _sale_clicked(self, feature=None, properties=None, **_event) -> None:
        props = properties or (feature or {}).get("properties", {})
        match = self.sales[self.sales["Sale_ID"] == props.get("Sale_ID")]
        if not match.empty:
            self._offer(match.iloc[0])

    def _comp_clicked(self, feature=None, properties=None, **_event) -> None:
        props = properties or (feature or {}).get("properties", {})
        found = np.flatnonzero(self.comps["Sale_ID"].to_numpy() == props.get("Sale_ID"))
        if len(found):
            self.comp_choice.value = int(found[0])

    def _comp_chosen(self, change) -> None:
        chosen = change["new"]
        self._draw_comps(chosen)
        if chosen is not None:
            sale = self.comps.iloc[chosen]
            self._offer(self.sales[self.sales["Sale_ID"] == sale["Sale_ID"]].iloc[0])

    def _offer(self, sale) -> None:
        """Offer to start from a sold house; the viewer's house stays until they accept."""
        self.offered = sale
        self.offer_text.value = (
            f"<span>Sold {render.esc(int(sale['Year_Sold']))} for "
            f"<b>{render.money(sale['Sale_Price'])}</b>: {fmt(sale[self.area])} sq ft, "
            f"built {render.esc(int(sale[self.built]))}, "
            f"{render.esc(self._label(sale[self.hood]))}.</span>"
        )
        self.offer.layout.display = "flex"

    def _use_offer(self, _button=None) -> None:
        if self.offered is not None:
            self.moved_from = None
            self.form.set_values({name: self.offered[name] for name in self.schema.names})
            self.offer.layout.display = "none"

    def apply_request(self, query: dict | None = None) -> None:
        """Prefill from the page's URL (`?Gr_Liv_Area=1800&lat=42.03&lon=-93.62`): keys are
        read by the schema's input policy (`Schema.field_for`), as the API reads them.

        The page's last cell calls this: whatever a link holds, it ends in a notice, never
        in a page that "could not be built".
        """
        self.guard(self._apply_query)(request_query() if query is None else query)

    def _apply_query(self, query: dict) -> None:
        """Fill the form from the link; from here on the browser's address follows the house
        (a link that changed nothing is replaced by the canonical one for the house shown)."""
        self.address_follows = True
        house = {k: v for k, v in query.items() if k not in VOILA_PARAMETERS}
        size = sum(len(str(k)) + len(str(v)) + 2 for k, v in house.items())
        if size > config.LINK_MAX_CHARS or len(house) > config.LINK_MAX_FIELDS:
            self.status.value = render.notice(
                f"The link is too long ({size:,} characters in {len(house):,} fields; a house "
                f"takes at most {config.LINK_MAX_CHARS:,} characters in "
                f"{config.LINK_MAX_FIELDS} fields): nothing from it was used."
            )
            self._show_link()
            return
        values, problems = self.query_values(house)
        values = self._agree(values)
        if values:
            self.form.set_values(values)
        if problems:
            shown = problems[: config.LINK_PROBLEMS_SHOWN]
            more = len(problems) - len(shown)
            self.status.value = render.notice(
                "The link had values that were not used: "
                + "; ".join(shown)
                + (f"; and {more:,} more" if more else "")
            )
        elif set(values) >= set(self.schema.names):
            self._say_kept()
        if house and self.last is not None:
            self._show_link()

    def _say_kept(self) -> None:
        """A whole house in the address (this page wrote it, or a shared link): say it was
        kept, and offer the typical house (the page without its query)."""
        self.kept = self.form.values()
        self.kept_html.value = (
            '<div class="hv-kept" role="status">Your house from before was kept: '
            f"{render.esc(self._house_title(self.kept))}. "
            f'<a class="hv-start-again" href="{render.esc(page_path() or "?")}">Start again</a>'
            " with a typical house.</div>"
        )

    def _agree(self, values: dict) -> dict:
        """A link's place and neighbourhood, as the form would set them: a spot without a
        neighbourhood takes the spot's; a neighbourhood without a spot moves the house to
        its centre; both are kept as given (the page says if they disagree)."""
        spot = self.lat in values or self.lon in values
        if spot and self.hood not in values:
            here = {**self.form.values(), **values}
            return {**values, self.hood: self._located(here[self.lat], here[self.lon])}
        if self.hood in values and not spot and values[self.hood] in self.centres:
            lat, lon = self.centres[values[self.hood]]
            return {**values, self.lat: lat, self.lon: lon}
        return values

    def query_values(self, query: dict) -> tuple[dict, list[str]]:
        """The query's fields that are valid for this model, and a reason for each that is not.

        Each value is checked alone; fields that disagree with each other (remodelled before
        built) are then marked on the form like any entry.
        """
        values, problems = {}, []
        for key, raw in query.items():
            if key in VOILA_PARAMETERS:
                continue
            name = self.schema.field_for(key)
            if name is None:
                problems.append(f"{key!s:.40} {self.schema.unknown_reason(key)}")
                continue
            value, reason = check_value(self.schema.by_name[name], raw)
            if reason:
                problems.append(f"{key}={raw!s:.40} {reason}")
            else:
                values[name] = value
        return values, problems
