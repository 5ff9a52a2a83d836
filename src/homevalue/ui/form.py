"""The house form, built from the model card's schema, never from a list in a notebook.

A retrained model with other features gets the right form without anyone editing a page:
categories become dropdowns, small counts steppers, everything else a number box whose
range and training range are written beside it. Number boxes are not bounded on purpose:
an out-of-range entry must reach validation and get its message, not be silently clamped.

A count (bathrooms, cars) is a stepper: a number box bounded to the card's range, with the
browser's own up/down arrows, typed digits and arrow keys, 44 px tall (homevalue.css). A
slider's 34 px handle was hard to hit on a touch screen and had no accessible name. Every
input's description is a <label for=...> of it (ipywidgets 8 links the two for text,
number and select inputs), so a screen reader reads "Garage size" and Playwright's
`get_by_label("Garage size")` finds the input.

Every row's parts share one Layout and one style model (`_Shared`): ipywidgets otherwise
gives each widget its own, and a row was 16 models. Each model is a message and a JavaScript
object the browser builds before the page can draw; nothing changes these shared ones.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import ipywidgets as widgets
from ipywidgets.widgets.widget_description import DescriptionStyle
from ipywidgets.widgets.widget_string import HTMLStyle

from homevalue.errors import Problem
from homevalue.schema import Feature, Schema, fmt_for
from homevalue.ui import render

STEPPER_MAX_STEPS = 10  # counts (bathrooms, cars) get a stepper; areas and years a box
LABEL_WIDTH = "170px"  # fits the longest label, "Central air conditioning"


def _range_hint(feature: Feature) -> str:
    unit = f" {feature.unit}" if feature.unit else ""
    low, high = fmt_for(feature, feature.train_min), fmt_for(feature, feature.train_max)
    return f"sold houses: {low} – {high}{unit}"


class _Shared:
    """The Layout and style models a form's rows share (built once per form: a model
    belongs to the kernel that made it). Never changed after: a change would show on
    every row."""

    def __init__(self):
        self.layout = widgets.Layout()
        self.label = DescriptionStyle(description_width=LABEL_WIDTH)
        self.html = HTMLStyle()

    def html_widget(self, value: str = "") -> widgets.HTML:
        return widgets.HTML(value, layout=self.layout, style=self.html)

    def box(self, kind: type[widgets.Box], children: list) -> widgets.Box:
        return kind(children, layout=self.layout)


def field_widget(
    feature: Feature, value=None, shared: _Shared | None = None
) -> widgets.ValueWidget:
    """The input widget for one feature, starting at `value` (default: the feature's)."""
    value = feature.default if value is None else value
    style = shared.label if shared else {"description_width": LABEL_WIDTH}
    common = {"description": feature.label, "style": style, "continuous_update": False}
    if shared:
        common["layout"] = shared.layout
    if feature.help:
        common["tooltip"] = feature.help  # the label and input's title, on hover
    if feature.is_category:
        # The card's labels show; the values stay codes (what predict_one gets back).
        options = list(zip(feature.shown_labels, feature.categories, strict=True))
        common.pop("continuous_update")
        return widgets.Dropdown(options=options, value=value, **common)
    if feature.kind == "integer" and feature.max - feature.min <= STEPPER_MAX_STEPS:
        # Each arrow press or typed digit re-prices (throttled); the bounds are the card's
        # allowed range, so a count is never out of range (as a slider never was).
        common["continuous_update"] = True
        stepper = widgets.BoundedIntText(
            value=int(value), min=int(feature.min), max=int(feature.max), **common
        )
        stepper.add_class("hv-stepper")
        return stepper
    if feature.kind == "integer":
        return widgets.IntText(value=int(value or 0), **common)
    return widgets.FloatText(value=value, step=0.0005, **common)


class HouseForm:
    """One row per feature: the input, its unit and training range, and its error message."""

    def __init__(self, schema: Schema):
        self.schema = schema
        start = schema.default_record()  # e.g. remodelled = built unless said otherwise
        self._shared = _Shared()
        self.inputs = {
            f.name: field_widget(f, start[f.name], self._shared) for f in schema.features
        }
        self.errors = {f.name: self._shared.html_widget() for f in schema.features}
        self._callbacks: list[Callable[[], None]] = []
        self._implications: list[Callable[[str, object], Mapping | None]] = []
        self._names = {id(widget): name for name, widget in self.inputs.items()}
        self._holding = False
        for widget in self.inputs.values():
            widget.observe(self._changed, names="value")
        self.box = widgets.VBox([self._row(f) for f in schema.features])
        self.box.add_class("hv-form")

    def _row(self, feature: Feature) -> widgets.Widget:
        hint = "" if feature.is_category else _range_hint(feature)
        shared = self._shared
        note = shared.html_widget(f'<span class="hv-hint">{render.esc(hint)}</span>')
        # The card's help text, visible under the input (a tooltip alone is lost on touch
        # screens and to screen readers).
        help_text = shared.html_widget(
            f'<div class="hv-help">{render.esc(feature.help)}</div>' if feature.help else ""
        )
        line = shared.box(widgets.HBox, [self.inputs[feature.name], note])
        row = shared.box(widgets.VBox, [line, help_text, self.errors[feature.name]])
        row.add_class(f"hv-row-{feature.name}")  # a stable handle for browser tests and CSS
        return row

    def on_change(self, callback: Callable[[], None]) -> None:
        self._callbacks.append(callback)

    def on_implied(self, rule: Callable[[str, object], Mapping | None]) -> None:
        """Let a viewer's change of one field set others before anyone is told of it.

        `rule(name, value)` returns the fields that change implies (a chosen neighbourhood
        moves the house to it), so the page re-prices once per change, not once per field.
        Values set by `set_values` imply nothing: whoever sets them says what they mean.
        """
        self._implications.append(rule)

    def _changed(self, change=None) -> None:
        if self._holding:
            return
        if change is not None and self._implications:
            name = self._names.get(id(change["owner"]))
            implied: dict = {}
            for rule in self._implications:
                implied.update(rule(name, change["new"]) or {})
            self._set_held(implied)
        for callback in self._callbacks:
            callback()

    def values(self) -> dict:
        return {name: widget.value for name, widget in self.inputs.items()}

    def set_values(self, record: Mapping) -> None:
        """Fill the form from a record (a sold house, a link) with one change notification."""
        self._set_held(record)
        self._changed()

    def _set_held(self, record: Mapping) -> None:
        self._holding = True
        try:
            for name, value in record.items():
                if name in self.inputs:
                    self.inputs[name].value = self._coerce(name, value)
        finally:
            self._holding = False

    def _coerce(self, name: str, value):
        widget = self.inputs[name]
        if isinstance(widget, widgets.Dropdown):
            return value
        number = float(value)
        whole = isinstance(widget, widgets.IntText | widgets.BoundedIntText)
        return int(number) if whole else number

    def show_problems(self, problems: list[Problem]) -> None:
        """Mark each bad field with its reason and clear the others."""
        reasons = {p.field: p.reason for p in problems}
        for name, label in self.errors.items():
            reason = reasons.get(name, "")
            label.value = render.field_error(
                f"{self.schema.by_name[name].label} {reason}" if reason else ""
            )
