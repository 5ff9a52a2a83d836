"""The few chart shapes the pages use, all bqplot (widget-native, updates in place).

Charts are created once and updated by assigning new data to their marks, so a change of
the form moves a line instead of rebuilding a figure.
"""

from __future__ import annotations

import contextlib
import math

import bqplot as bq
import numpy as np

MARGIN = {"top": 20, "bottom": 50, "left": 75, "right": 20}
X_TICKS, Y_TICKS = 6, 5  # about how many ticks a chart's x and y axes get


def _figure(marks, axes, title: str, height: str = "300px") -> bq.Figure:
    figure = bq.Figure(
        marks=marks,
        axes=axes,
        title=title,
        fig_margin=MARGIN,
        layout={"width": "100%", "height": height},
    )
    figure.add_class("hv-chart")
    return figure


def _money_axis(scale, label: str, side: str = "left") -> bq.Axis:
    return bq.Axis(
        scale=scale,
        label=label,
        side=side,
        tick_format="$,.0f",
        label_offset="60px" if side == "left" else "36px",
        num_ticks=5,
    )


class WhatIfChart:
    """Price (with its 80% band) as one feature varies; the current value marked."""

    def __init__(self):
        self.x, self.y = bq.LinearScale(), bq.LinearScale()
        scales = {"x": self.x, "y": self.y}
        self.band = bq.Lines(
            scales=scales,
            fill="between",
            colors=["#21918c"],
            fill_colors=["#21918c"],
            fill_opacities=[0.2],
            stroke_width=0,
        )
        self.line = bq.Lines(scales=scales, colors=["#21918c"], stroke_width=3)
        self.current = bq.Scatter(scales=scales, colors=["#b2182b"], default_size=120)
        self.x_axis = bq.Axis(scale=self.x, label="", tick_format=",d")
        self.y_axis = _money_axis(self.y, "Price")
        self.figure = _figure(
            [self.band, self.line, self.current], [self.x_axis, self.y_axis], title=""
        )

    def show(self, x, price, low, high, current_x, current_price, label: str, grouping=True):
        # Each mark's x and y must travel in one message: a curve that changes length would
        # otherwise be drawn for a moment with x and y of different lengths (NaN paths).
        x_low, x_high = float(np.min(x)), float(np.max(x))
        x_ticks = linear_ticks(x_low, x_high, X_TICKS)
        y_ticks = linear_ticks(float(np.min(low)), float(np.max(high)), Y_TICKS, outer=True)
        held = (self.band, self.line, self.current, self.x_axis, self.y_axis, self.x, self.y)
        with contextlib.ExitStack() as stack:
            for widget in held:
                stack.enter_context(widget.hold_sync())
            self.x_axis.tick_format = ",d" if grouping else "d"
            self.x_axis.tick_values, self.y_axis.tick_values = x_ticks, y_ticks
            # The curve spans the whole width; the price scale ends on round prices.
            self.x.min, self.x.max = x_low, x_high
            self.y.min, self.y.max = y_ticks[0], y_ticks[-1]
            self.band.x, self.band.y = np.asarray(x), np.vstack([low, high])
            self.line.x, self.line.y = np.asarray(x), np.asarray(price)
            self.current.x, self.current.y = [current_x], [current_price]
            self.x_axis.label = label


def histogram(values, *, bins: int = 30, title: str = "", label: str = "") -> bq.Figure:
    x, y = bq.LinearScale(), bq.LinearScale(min=0)
    bars = bq.Bars(scales={"x": x, "y": y}, colors=["#3b528b"], padding=0.05)
    axes = [
        _money_axis(x, label, "bottom"),
        bq.Axis(scale=y, side="left", label="Houses", label_offset="50px"),
    ]
    figure = _figure([bars], axes, title)
    set_histogram(figure, values, bins)
    return figure


def set_histogram(figure: bq.Figure, values, bins: int = 30) -> None:
    """Bin `values` into the figure's bars; both axes get round ticks (whole houses)."""
    values = np.asarray(values, dtype=float)
    counts, edges = np.histogram(values, bins=bins)
    bars, (x_axis, y_axis) = figure.marks[0], figure.axes
    centres = (edges[:-1] + edges[1:]) / 2
    # The x scale fits the bars by itself, so its ticks stay within the bars' centres;
    # with no values there is no price to mark (np.histogram bins 0 to 1).
    x_ticks = linear_ticks(float(centres[0]), float(centres[-1]), X_TICKS) if len(values) else []
    y_ticks = linear_ticks(0, float(max(counts.max(), 1)), Y_TICKS, outer=True, integer=True)
    with bars.hold_sync(), y_axis.scale.hold_sync():
        bars.x, bars.y = centres, counts
        x_axis.tick_values, y_axis.tick_values = x_ticks, y_ticks
        y_axis.scale.max = y_ticks[-1]


LOG_TICK_STEPS = (1, 2, 3, 5)
LINEAR_TICK_STEPS = (1, 2, 2.5, 5, 10)


def linear_ticks(
    low: float, high: float, count: int, *, outer: bool = False, integer: bool = False
) -> list[float]:
    """About `count` round values for a linear axis: 100k, 125k, 150k; 1875, 1900, 1925.

    bqplot's `num_ticks` divides the data's own range evenly ($112,640, $144,059...) and
    counts get ticks like 1.5 houses. With `outer`, the ticks reach just past both ends,
    so the scale can stop on them; with `integer`, every step is a whole number.
    """
    if not high > low:
        return [low]
    raw = max((high - low) / count, 1.0) if integer else (high - low) / count
    magnitude = 10.0 ** math.floor(math.log10(raw))
    steps = (s * magnitude for s in LINEAR_TICK_STEPS)
    step = next(s for s in steps if s >= raw and not (integer and s % 1))
    first, last = math.ceil(low / step - 1e-9), math.floor(high / step + 1e-9)
    if outer:
        first, last = math.floor(low / step + 1e-9), math.ceil(high / step - 1e-9)
    return [round(k * step, 10) for k in range(first, last + 1)]


def log_ticks(low: float, high: float, steps: tuple[int, ...] = LOG_TICK_STEPS) -> list[float]:
    """Round values between `low` and `high` for a log axis: 50k, 100k, 200k, 300k, 500k.

    bqplot spreads `num_ticks` evenly over a log scale ($39,001, $169,064...), which no one
    can read percentages off.
    """
    exponents = range(math.floor(math.log10(low)), math.ceil(math.log10(high)) + 1)
    values = (step * 10.0**e for e in exponents for step in steps)
    return [v for v in values if low <= v <= high]


def predicted_vs_actual(actual, predicted, *, title: str = "") -> bq.Figure:
    """Holdout sales: each dot a house; on the diagonal the model was exactly right.

    Log axes with round ticks and a near-square frame, so the diagonal is at 45° and equal
    distances are equal percentages.
    """
    low = float(min(np.min(actual), np.min(predicted)))
    high = float(max(np.max(actual), np.max(predicted)))
    x, y = bq.LogScale(min=low, max=high), bq.LogScale(min=low, max=high)
    scales = {"x": x, "y": y}
    dots = bq.Scatter(
        x=np.asarray(actual),
        y=np.asarray(predicted),
        scales=scales,
        colors=["#3b528b"],
        default_size=16,
        opacities=[0.55],
    )
    diagonal = bq.Lines(x=[low, high], y=[low, high], scales=scales, colors=["#b2182b"])
    axes = [_money_axis(x, "Sale price", "bottom"), _money_axis(y, "Predicted price")]
    for axis in axes:
        axis.tick_values = log_ticks(low, high)
        axis.tick_format = "$~s"
    figure = _figure([diagonal, dots], axes, title, height="520px")
    figure.layout.max_width = "640px"
    return figure


def horizontal_bars(labels, values, *, title: str = "", label: str = "", fmt: str = ".0%"):
    """Bars with category labels down the side (importance, errors by group)."""
    y, x = bq.OrdinalScale(reverse=True), bq.LinearScale(min=0)
    bars = bq.Bars(
        x=list(labels),
        y=np.asarray(values, dtype=float),
        scales={"x": y, "y": x},
        orientation="horizontal",
        colors=["#21918c"],
        padding=0.15,
    )
    axes = [
        bq.Axis(scale=y, side="left"),
        bq.Axis(scale=x, side="bottom", tick_format=fmt, label=label, num_ticks=5),
    ]
    figure = _figure([bars], axes, title, height=f"{max(220, 26 * len(labels) + 80)}px")
    figure.fig_margin = {**MARGIN, "left": 170}
    return figure


WATERFALL_COLOURS = {"total": "#3b528b", "up": "#21918c", "down": "#b2182b"}
WATERFALL_ROW_PX = 34


class WaterfallChart:
    """A horizontal waterfall: bars from a start to an end value, one row each, labelled
    down the side; totals (the base, the price) drawn from the axis.

    One stacked Bars mark: an invisible first layer carries each bar out to its start,
    the visible second layer spans start to end. Updated in place like WhatIfChart.
    """

    def __init__(self, rows: int = 9):
        self.y, self.x = bq.OrdinalScale(reverse=True), bq.LinearScale()
        self.bars = bq.Bars(
            scales={"x": self.y, "y": self.x},
            orientation="horizontal",
            type="stacked",
            color_mode="no_group",
            opacity_mode="no_group",
            padding=0.25,
            stroke_width=0,
        )
        self.label_axis = bq.Axis(scale=self.y, side="left")
        self.money_axis = bq.Axis(scale=self.x, side="bottom", tick_format="$,.0f", num_ticks=5)
        height = f"{rows * WATERFALL_ROW_PX + 70}px"
        self.figure = _figure([self.bars], [self.label_axis, self.money_axis], "", height)
        self.figure.add_class("hv-waterfall")
        self.figure.fig_margin = {**MARGIN, "left": 300, "right": 50}

    def show(self, labels: list[str], starts, ends, totals) -> None:
        """Row i goes from starts[i] to ends[i]; a total (totals[i]) from the axis to ends[i]."""
        starts, ends = np.asarray(starts, dtype=float), np.asarray(ends, dtype=float)
        totals = np.asarray(totals, dtype=bool)
        low, high = np.minimum(starts, ends), np.maximum(starts, ends)
        shown_low = float(np.min(np.where(totals, high, low)))
        ticks = linear_ticks(shown_low, float(np.max(high)), X_TICKS, outer=True)
        if len(ticks) > 1:  # a step of room on the left, so the shortest total still shows
            ticks = [ticks[0] - (ticks[1] - ticks[0]), *ticks]
        offset = np.where(totals, 0.0, low)
        colours, opacities = [], []
        for total, start, end in zip(totals, starts, ends, strict=True):
            kind = "total" if total else ("up" if end >= start else "down")
            colours += [WATERFALL_COLOURS[kind], WATERFALL_COLOURS[kind]]
            opacities += [0.0, 1.0]
        with self.bars.hold_sync(), self.x.hold_sync(), self.money_axis.hold_sync():
            self.x.min, self.x.max = ticks[0], ticks[-1]
            self.money_axis.tick_values = ticks
            self.bars.x = list(labels)
            self.bars.y = np.vstack([offset, high - offset])
            self.bars.colors, self.bars.opacities = colours, opacities
