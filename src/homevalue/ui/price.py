"""The "Price a home" page: a form and a map in, a price with its reasons out, at every change.

Pricing is `homevalue.predict_one` (a tenth of a millisecond); what costs time is sending
widget updates, so one change re-prices once (Throttle) and the map's layers are updated in
place, never rebuilt.
"""

from __future__ import annotations

import base64
import urllib.parse
from datetime import UTC, datetime

import ipywidgets as widgets
import numpy as np
from ipyleaflet import Marker

from homevalue import export
from homevalue.comps import comparable_sales, reference_sales
from homevalue.errors import ValidationError
from homevalue.explain import Explanation
from homevalue.export import Driver
from homevalue.model import Model, load_model
from homevalue.predict import Prediction, explain_prediction, predict_one, what_if
from homevalue.schema import check_value, fmt, fmt_for
from homevalue.ui import charts, maps, render
from homevalue.ui.form import HouseForm
from homevalue.ui.page import Panel, Throttle, guarded, page_path, request_query, version_marker

LAT, LON = "Latitude", "Longitude"
QUERY_ALIASES = {"lat": LAT, "latitude": LAT, "lon": LON, "lng": LON, "longitude": LON}
# Voilà's own URL parameters (`?theme=dark`, a login `?token=`), not fields of the house.
VOILA_PARAMETERS = {"theme", "template", "token"}
WHAT_IF_POINTS = 40
SALE_PROPERTIES = ["Sale_ID"]  # a click finds the rest in self.sales


def comps_summary(comps) -> str:
    if comps is None or not len(comps):
        return "no comparable sales"
    low, high = comps["Sale_Price"].min(), comps["Sale_Price"].max()
    tolerance = comps["size_tolerance"].iloc[0]
    size = "any size" if tolerance is None or tolerance != tolerance else f"±{tolerance:.0%}"
    return (
        f"{len(comps)} comparable sales within {comps['distance_km'].max():.2f} km, "
        f"{render.money(low)} – {render.money(high)} (living area {size})"
    )


def comps_table(comps) -> str:
    shown = comps.assign(
        Neighborhood=comps["Neighborhood"].map(render.category_label),
        sold=comps["Year_Sold"].astype(str)
        + "-"
        + comps["Mo_Sold"].astype(int).map("{:02d}".format),
    )[["distance_km", "Sale_Price", "Gr_Liv_Area", "Year_Built", "Neighborhood", "sold"]]
    return render.table(
        shown,
        headers={"distance_km": "Distance (km)", "Sale_Price": "Sold for",
                 "Gr_Liv_Area": "Living area (sq ft)", "Year_Built": "Built", "sold": "Sold"},
        formats={"Sale_Price": render.money, "distance_km": "{:.2f}".format,
                 "Gr_Liv_Area": "{:,.0f}".format},
    )  # fmt: skip


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


def accuracy_sentence(p: Prediction) -> str:
    """The holdout's median error for houses like this one, and what "like" means here."""
    here = p.accuracy_here
    if not here:
        return ""
    scope = (
        render.category_label(here["value"])
        if here["scope"] == "neighbourhood"
        else f"homes priced {here['value']}"
    )
    if here["median_error_percent"] is None:
        return f"Median error here: not measured (no test sales among {scope})."
    return (
        f"Median error here: {here['median_error_percent']:.1f}% "
        f"({scope}, {here['n_test']} test sales)"
    )


class PricePage:
    """The widgets of the page and the wiring between them; panels are displayed by cells."""

    def __init__(self, model: Model | None = None):
        self.model = model or load_model()
        self.schema = self.model.schema
        self.sales = reference_sales(self.model.path)
        self.form = HouseForm(self.schema)
        self.status = widgets.HTML()
        self.guard = guarded(self.status)
        self.last: Prediction | None = None
        self.comps = None
        self.curve = None
        self._build_map()
        self._build_answer()
        self._build_what_if()
        self._build_download()
        self._build_explanation()
        self.form.on_change(Throttle(self.guard(self.refresh)))
        self.refresh()

    # --- building -------------------------------------------------------------------------

    def _build_map(self) -> None:
        self.map = maps.ames_map(height="520px")
        colour = maps.colours(self.sales["Sale_Price"], maps.PRICE_BANDS, maps.BAND_COLOURS)
        self.sales_layer = maps.layer(
            "Sold houses", maps.points(self.sales, SALE_PROPERTIES, colour), opacity=0.7
        )
        self.comps_layer = maps.layer("Comparable sales", opacity=1.0, radius=9)
        values = self.form.values()
        self.marker = Marker(
            location=(values[LAT], values[LON]), draggable=True, title="This house"
        )
        for item in (self.sales_layer, self.comps_layer, self.marker):
            self.map.add(item)
        self.map.add(maps.legend("Sold for", maps.price_legend()))
        self.map.on_interaction(self.guard(self._map_clicked))
        self.marker.observe(self.guard(self._marker_moved), names="location")
        self.sales_layer.on_click(self.guard(self._sale_clicked))
        self.offer_text = widgets.HTML()
        self.offer_button = widgets.Button(description="Start from this house", icon="home")
        self.offer_button.on_click(self.guard(self._use_offer))
        self.offer = widgets.HBox([self.offer_text, self.offer_button], layout={"display": "none"})
        self.offered = None

    def _build_answer(self) -> None:
        self.price_html = widgets.HTML()
        self.flags_html = widgets.HTML()
        self.link_html = widgets.HTML()
        self.comps_html = widgets.HTML()

    def _build_what_if(self) -> None:
        numeric = [
            f for f in self.schema.features if not f.is_category and f.name not in (LAT, LON)
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

    def _importance(self, name: str) -> float:
        return self.model.card.get("feature_importance_gain_share", {}).get(name, 0.0)

    # --- panels (one per notebook cell) --------------------------------------------------

    @property
    def main(self) -> Panel:
        """The form on the left; the price, the map and the offer to start from a sale on
        the right, so the answer stays in view while the form is filled in."""
        form = widgets.VBox([widgets.HTML("<h3>The house</h3>"), self.form.box])
        answer = widgets.VBox(
            [
                version_marker(self.model.version),
                self.status, self.price_html, self.flags_html, self.link_html,
                self.download_box,
                widgets.HTML(
                    "<h3>Where it is</h3><p class='hv-hint'>Click the map or drag the marker "
                    "to set the location; click a sold house to start from it.</p>"
                ),
                self.map, self.offer,
            ]
        )  # fmt: skip
        form.layout, answer.layout = {"flex": "1 1 420px"}, {"flex": "1 1 420px"}
        box = widgets.HBox([form, answer], layout={"flex_flow": "row wrap"})
        return Panel([box], title="Price a home", summary=self._describe)

    @property
    def comparables(self) -> Panel:
        return Panel(
            [self.comps_html], title="Comparable sales", summary=lambda: comps_summary(self.comps)
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
    def sensitivity(self) -> Panel:
        return Panel(
            [self.what_if_choice, self.chart.figure], title="What if", summary=self._describe_curve
        )

    # --- summaries (the panels' text, compared by nbval) ------------------------------

    def _describe(self) -> str:
        return f"{self._describe_house()}\n{self._describe_price()}"

    def _describe_house(self) -> str:
        v = self.form.values()
        return (
            f"{render.category_label(v['Neighborhood'])}, {fmt(v['Gr_Liv_Area'])} sq ft, built "
            f"{v['Year_Built']}, at {v[LAT]:.4f}, {v[LON]:.4f}; "
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
            f"{accuracy_sentence(p)}; flags: {flags}; model {p.model_version}"
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
            return
        self.form.show_problems([])
        self.status.value = ""
        self.last = prediction
        self._show_price(prediction)
        self._update_location(values)
        self._update_what_if()
        self._update_explanation()

    def _show_price(self, p: Prediction) -> None:
        self.price_html.value = (
            f'<div class="hv-price">{render.money(p.price)}</div>'
            f'<div class="hv-interval">{render.esc(interval_sentence(p))}</div>'
            f'<div class="hv-accuracy">{render.esc(accuracy_sentence(p))}</div>'
            + render.dollars_note(p.dollars_of)
        )
        self.flags_html.value = render.bullet_list(
            f.message for f in p.flags if f.code != "default_used"
        )
        href = f"{page_path()}?{share_query(self.form.values(), self.schema)}"
        self.link_html.value = (
            f'<a class="hv-share" href="{render.esc(href)}" target="_blank">'
            "Link to this house</a> <span class='hv-hint'>(copy it to share this estimate)</span>"
        )

    def _update_location(self, values: dict) -> None:
        lat, lon = values[LAT], values[LON]
        if tuple(self.marker.location) != (lat, lon):
            self.marker.location = (lat, lon)
        self.comps = comparable_sales(lat, lon, values["Gr_Liv_Area"], folder=self.model.path)
        self.comps_html.value = comps_table(self.comps)
        data = maps.points(self.comps, SALE_PROPERTIES, ["#e66101"] * len(self.comps))
        self.comps_layer.data = data

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
            self.curve[name], self.curve["price"], self.curve["low"], self.curve["high"],
            current, self.last.price, f"{feature.label}{unit}", grouping=bool(feature.unit),
        )  # fmt: skip

    def _update_explanation(self) -> None:
        """The same numbers as `predict_one(..., explain=True)` and the API's `explain`."""
        self.explanation = explain_prediction(self.last, model=self.model).explanation
        steps = self.explanation.steps()
        self.waterfall.show(
            [s.text for s in steps], [s.start for s in steps], [s.end for s in steps],
            [s.kind == "total" for s in steps],
        )  # fmt: skip
        self.drivers_html.value = render.bullet_list((s.text for s in steps), css="hv-sr-only")

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
            title=(
                f"{render.category_label(values['Neighborhood'])}, "
                f"{fmt(values['Gr_Liv_Area'])} sq ft, "
                f"built {fmt(values['Year_Built'], grouping=False)}"
            ),
            price=p.price, low=p.low, high=p.high, level=interval["level"],
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
        )  # fmt: skip

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

    @staticmethod
    def _export_accuracy(p: Prediction) -> export.Accuracy | None:
        here = p.accuracy_here
        if not here or here["median_error_percent"] is None:
            return None
        scope = (
            render.category_label(here["value"])
            if here["scope"] == "neighbourhood"
            else f"houses priced {here['value']}"
        )
        return export.Accuracy(here["median_error_percent"] / 100, scope, here["n_test"])

    @staticmethod
    def _export_field(feature, value) -> export.Field:
        shown = render.category_label(value) if feature.is_category else fmt_for(feature, value)
        return export.Field(feature.label, shown, feature.unit)

    def _export_comps(self) -> export.Table | None:
        """The comparable sales with the columns and formats of the page's table."""
        comps = self.comps
        if comps is None or not len(comps):
            return None
        shown = comps.assign(
            Neighborhood=comps["Neighborhood"].map(render.category_label),
            sold=comps["Year_Sold"].astype(str)
            + "-"
            + comps["Mo_Sold"].astype(int).map("{:02d}".format),
        )[["distance_km", "Sale_Price", "Gr_Liv_Area", "Year_Built", "Neighborhood", "sold"]]
        return export.Table.from_frame(
            shown,
            headers={"distance_km": "Distance (km)", "Sale_Price": "Sold for",
                     "Gr_Liv_Area": "Living area (sq ft)", "Year_Built": "Built",
                     "Neighborhood": "Neighbourhood", "sold": "Sold"},
            formats={"Sale_Price": render.money, "distance_km": "{:.2f}".format,
                     "Gr_Liv_Area": "{:,.0f}".format},
        )  # fmt: skip

    def _export_curve(self) -> export.Curve | None:
        c, name = self.curve, self.what_if_choice.value
        if c is None or not len(c) or self.last is None:
            return None
        feature = self.schema.by_name[name]
        return export.Curve(
            feature.label, feature.unit,
            *(tuple(float(v) for v in c[column]) for column in (name, "price", "low", "high")),
            current_x=float(self.last.inputs[name]), current_price=self.last.price,
            grouping=bool(feature.unit),
        )  # fmt: skip

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
            valuation.valued_at, values["Neighborhood"], f"{values['Gr_Liv_Area']:.0f}sqft"
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
        if event.get("type") == "click":
            lat, lon = event["coordinates"]
            self.form.set_values({LAT: round(lat, 6), LON: round(lon, 6)})

    def _marker_moved(self, change) -> None:
        lat, lon = change["new"]
        values = self.form.values()
        if (round(lat, 6), round(lon, 6)) != (values[LAT], values[LON]):
            self.form.set_values({LAT: round(lat, 6), LON: round(lon, 6)})

    def _sale_clicked(self, feature=None, properties=None, **_event) -> None:
        props = properties or (feature or {}).get("properties", {})
        match = self.sales[self.sales["Sale_ID"] == props.get("Sale_ID")]
        if match.empty:
            return
        self.offered = match.iloc[0]
        sale = self.offered
        self.offer_text.value = (
            f"<span>Sold {render.esc(int(sale['Year_Sold']))} for "
            f"<b>{render.money(sale['Sale_Price'])}</b>: {fmt(sale['Gr_Liv_Area'])} sq ft, "
            f"built {render.esc(int(sale['Year_Built']))}, "
            f"{render.esc(render.category_label(sale['Neighborhood']))}.</span>"
        )
        self.offer.layout.display = "flex"

    def _use_offer(self, _button=None) -> None:
        if self.offered is not None:
            self.form.set_values({name: self.offered[name] for name in self.schema.names})
            self.offer.layout.display = "none"

    def apply_request(self, query: dict | None = None) -> None:
        """Prefill from the page's URL (`?Gr_Liv_Area=1800&lat=42.03&lon=-93.62`).

        The page's last cell calls this: whatever a link holds, it ends in a notice, never
        in a page that "could not be built".
        """
        self.guard(self._apply_query)(request_query() if query is None else query)

    def _apply_query(self, query: dict) -> None:
        values, problems = self.query_values(query)
        if values:
            self.form.set_values(values)
        if problems:
            self.status.value = render.notice(
                "The link had values that were not used: " + "; ".join(problems)
            )

    def query_values(self, query: dict) -> tuple[dict, list[str]]:
        """The query's fields that are valid for this model, and a reason for each that is not.

        Each value is checked alone; fields that disagree with each other (remodelled before
        built) are then marked on the form like any entry.
        """
        values, problems = {}, []
        for key, raw in query.items():
            if key in VOILA_PARAMETERS:
                continue
            name = QUERY_ALIASES.get(key.lower(), key)
            if name not in self.schema.by_name:
                problems.append(f"{key} is not a field of this model")
                continue
            value, reason = check_value(self.schema.by_name[name], raw)
            if reason:
                problems.append(f"{key}={raw!s:.40} {reason}")
            else:
                values[name] = value
        return values, problems
