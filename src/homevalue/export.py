"""A valuation to take away: one self-contained HTML file that reads the same in ten years.

The price page builds a `Valuation` from what it shows (the house, the price, its interval
and how often such intervals hold, what drove the price, how accurate the model is here,
the comparable sales, the what-if curve) and `valuation_html` turns it into one file: inline
CSS, charts drawn here as inline SVG, no script, nothing fetched from anywhere. A
Content-Security-Policy in the file itself backs that up: even text that slipped through
unescaped could not run or load anything.

Every value is escaped: the house's fields come from the viewer (a link can carry anything).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import pandas as pd

from homevalue.schema import fmt, short_money
from homevalue.ui.charts import linear_ticks
from homevalue.ui.render import esc, money

# Each section of the file: its id and its heading (tests look the headings up).
SECTIONS = {
    "price": "Price",
    "accuracy": "Accuracy here",
    "drivers": "Why this price",
    "inputs": "The house",
    "comps": "Comparable sales",
    "what-if": "What if",
    "about": "About this valuation",
}
# The file's own policy: styles written in it and images in data: URLs, nothing else.
POLICY = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'none'"
CHART_WIDTH, CURVE_HEIGHT = 680, 280
CURVE_MARGIN = {"top": 12, "right": 18, "bottom": 48, "left": 78}
BAR_ROW, BAR_LABEL, BAR_VALUE = 26, 230, 96  # px: a driver's row, its label, its amount
COLOURS = {
    "line": "#21918c",
    "current": "#b2182b",
    "up": "#1a9850",
    "down": "#d73027",
    "total": "#3b528b",
    "axis": "#666",
    "grid": "#ddd",
}


@dataclass(frozen=True)
class Field:
    """One input of the house as the viewer gave it: "Living area", "1,472", "sq ft"."""

    label: str
    value: str
    unit: str = ""


@dataclass(frozen=True)
class Coverage:
    """How often intervals like this one held on the test sales of `scope`."""

    share: float  # 0.8 = 80%
    scope: str  # "houses priced $100k – $150k", "all test sales"
    sales: int  # test sales it was measured on


@dataclass(frozen=True)
class Accuracy:
    """The holdout's median error for houses like this one (`scope`)."""

    median_error: float  # 0.06 = 6%
    scope: str  # "North Ames", "houses priced $100k – $150k"
    sales: int


@dataclass(frozen=True)
class Driver:
    """What one feature (or "everything else") adds to the price, in dollars."""

    label: str  # "Living area 1,472 sq ft"
    dollars: float


@dataclass(frozen=True)
class Drivers:
    """The price as a walk from the model's starting point, one driver at a time."""

    start: float  # the price before any feature is known (the average sale)
    items: tuple[Driver, ...]  # in the order they are drawn; the caller groups the rest
    start_label: str = "Average sale"


@dataclass(frozen=True)
class Table:
    """A table as shown: headers and cells already formatted as text."""

    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    numeric: tuple[bool, ...] = ()  # right-aligned columns

    @classmethod
    def from_frame(
        cls,
        frame: pd.DataFrame,
        *,
        headers: Mapping[str, str] | None = None,
        formats: Mapping[str, Callable[[object], str]] | None = None,
    ) -> Table:
        """`frame`'s columns in order, renamed by `headers`, cells formatted by `formats`."""
        headers, formats = headers or {}, formats or {}
        columns = list(frame.columns)
        rows = tuple(
            tuple(_cell(value, formats.get(c)) for c, value in zip(columns, row, strict=True))
            for row in frame.itertuples(index=False)
        )
        numeric = tuple(pd.api.types.is_numeric_dtype(frame[c]) for c in columns)
        return cls(tuple(str(headers.get(c, c)) for c in columns), rows, numeric)


def _cell(value: object, format_: Callable[[object], str] | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return format_(value) if format_ else str(value)


@dataclass(frozen=True)
class Curve:
    """The what-if curve: price and interval as one feature varies, this house marked."""

    label: str  # "Year built"
    unit: str
    x: tuple[float, ...]
    price: tuple[float, ...]
    low: tuple[float, ...]
    high: tuple[float, ...]
    current_x: float
    current_price: float
    grouping: bool = True  # 1,472 sq ft; but 1976, not 1,976


@dataclass(frozen=True)
class Valuation:
    """Everything the file shows. Optional sections are left out when they are None."""

    title: str  # "North Ames, 1,472 sq ft, built 1976"
    price: float
    low: float
    high: float
    level: float  # the interval's nominal level: 0.8
    inputs: tuple[Field, ...]
    model_version: str
    valued_at: datetime
    caveat: str  # which years' dollars
    trained_at: str = ""
    flags: tuple[str, ...] = ()
    coverage: Coverage | None = None
    accuracy: Accuracy | None = None
    drivers: Drivers | None = None
    comps: Table | None = None
    comps_note: str = ""  # "5 comparable sales within 1.03 km ..."
    curve: Curve | None = None


def valuation_filename(valued_at: datetime, *parts: object) -> str:
    """homevalue-valuation-2026-11-30-North_Ames-1500sqft.html: safe on every file system."""
    words = [re.sub(r"[^A-Za-z0-9_-]+", "_", str(p)).strip("_")[:40] for p in parts]
    stem = "-".join(["homevalue-valuation", valued_at.strftime("%Y-%m-%d"), *filter(None, words)])
    return f"{stem}.html"


# --- the file ------------------------------------------------------------------------------


def valuation_html(valuation: Valuation) -> str:
    """The whole file: readable with JavaScript off, offline, printed, in any browser."""
    v = valuation
    body = "".join(
        part
        for part in (
            _price_section(v),
            _accuracy_section(v.accuracy),
            _drivers_section(v.drivers, v.price),
            _inputs_section(v.inputs),
            _comps_section(v.comps, v.comps_note),
            _curve_section(v.curve),
            _about_section(v),
        )
        if part
    )
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{esc(POLICY)}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>Valuation: {esc(v.title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
        "<header>\n<h1>Home valuation</h1>\n"
        f'<p class="lede">{esc(v.title)}</p>\n'
        f'<p class="caveat">{esc(v.caveat)}</p>\n'
        f'<p class="meta">Valued {esc(_when(v.valued_at))} by homevalue, '
        f"model {esc(v.model_version)}</p>\n</header>\n"
        f"<main>\n{body}</main>\n</body>\n</html>\n"
    )


def _section(key: str, content: str) -> str:
    return f'<section id="{key}">\n<h2>{esc(SECTIONS[key])}</h2>\n{content}</section>\n'


def _when(moment: datetime) -> str:
    """30 November 2026, 02:15 UTC."""
    return f"{moment.day} {moment:%B %Y, %H:%M} {moment.tzname() or ''}".strip()


def _percent(share: float, digits: int = 0) -> str:
    return f"{share * 100:.{digits}f}%"


def _price_section(v: Valuation) -> str:
    lines = [
        f'<p class="price">{esc(money(v.price))}</p>',
        f'<p class="interval">{esc(_percent(v.level))} interval: '
        f"{esc(money(v.low))} – {esc(money(v.high))}</p>",
    ]
    if v.coverage is not None:
        c = v.coverage
        lines.append(
            f'<p class="coverage">Coverage: intervals like this one held for '
            f"{esc(_percent(c.share, 1))} of {esc(f'{c.sales:,}')} test sales "
            f"({esc(c.scope)}).</p>"
        )
    if v.flags:
        items = "".join(f"<li>{esc(flag)}</li>" for flag in v.flags)
        lines.append(f'<ul class="flags">{items}</ul>')
    return _section("price", "\n".join(lines) + "\n")


def _accuracy_section(accuracy: Accuracy | None) -> str:
    if accuracy is None:
        return ""
    a, error = accuracy, esc(_percent(accuracy.median_error, 1))
    return _section(
        "accuracy",
        f'<p><span class="figure">{error}</span> median error on {esc(f"{a.sales:,}")} test '
        f"sales ({esc(a.scope)}): for half of them the model's price was within {error} of "
        "the actual sale price.</p>\n",
    )


def _drivers_section(drivers: Drivers | None, price: float) -> str:
    """The waterfall alone: its labels and amounts are text in the SVG (found, copied, read)."""
    if drivers is None:
        return ""
    return _section("drivers", f"{waterfall_svg(drivers, price)}\n")


def _signed_money(dollars: float) -> str:
    sign = "+" if dollars >= 0 else "−"
    return f"{sign}{money(abs(dollars))}"


def _inputs_section(inputs: Sequence[Field]) -> str:
    rows = "".join(
        f'<tr><th scope="row">{esc(f.label)}</th><td>{esc(f.value)}'
        f"{' ' + esc(f.unit) if f.unit else ''}</td></tr>"
        for f in inputs
    )
    return _section("inputs", f'<table class="pairs"><tbody>{rows}</tbody></table>\n')


def _comps_section(comps: Table | None, note: str) -> str:
    if comps is None or not comps.rows:
        return _section("comps", "<p>No comparable sales were found.</p>\n")
    return _section("comps", (f"<p>{esc(note)}.</p>\n" if note else "") + table_html(comps))


def table_html(table: Table) -> str:
    numeric = table.numeric or (False,) * len(table.headers)

    def cell(tag: str, text: str, is_number: bool) -> str:
        return f"<{tag}{' class=num' if is_number else ''}>{esc(text)}</{tag}>"

    head = "".join(cell("th", h, n) for h, n in zip(table.headers, numeric, strict=True))
    body = "".join(
        "<tr>" + "".join(cell("td", c, n) for c, n in zip(row, numeric, strict=True)) + "</tr>"
        for row in table.rows
    )
    return f'<table class="grid"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>\n'


def _curve_section(curve: Curve | None) -> str:
    if curve is None or not curve.x:
        return ""
    unit = f" {curve.unit}" if curve.unit else ""
    low, high = min(curve.x), max(curve.x)
    caption = (
        f"Price (line) and its interval (band) as {curve.label.lower()} goes from "
        f"{fmt(low, grouping=curve.grouping)} to {fmt(high, grouping=curve.grouping)}{unit}, "
        f"everything else held: from {money(min(curve.price))} to {money(max(curve.price))}. "
        f"The red dot is this house ({fmt(curve.current_x, grouping=curve.grouping)}{unit})."
    )
    return _section(
        "what-if",
        f"<figure>{curve_svg(curve)}\n<figcaption>{esc(caption)}</figcaption></figure>\n",
    )


def _about_section(v: Valuation) -> str:
    pairs = [
        ("Valued on", _when(v.valued_at)),
        ("Model version", v.model_version),
        *([("Model trained", v.trained_at)] if v.trained_at else []),
        ("Dollars", v.caveat),
        (
            "What this is",
            "An estimate by a statistical model from the house's description "
            "and location, not an appraisal.",
        ),
    ]
    rows = "".join(f'<tr><th scope="row">{esc(k)}</th><td>{esc(val)}</td></tr>' for k, val in pairs)
    return _section("about", f'<table class="pairs"><tbody>{rows}</tbody></table>\n')


# --- charts: SVG drawn here, so the file needs no script ----------------------------------


class _Scale:
    """A linear map from data to pixels."""

    def __init__(self, low: float, high: float, start: float, end: float):
        self.low, self.span = low, (high - low) or 1.0
        self.start, self.end = start, end

    def __call__(self, value: float) -> float:
        return round(self.start + (value - self.low) / self.span * (self.end - self.start), 2)


def _text(
    x: float, y: float, text: str, anchor: str = "middle", css: str = "tick", turn: int = 0
) -> str:
    rotate = f' transform="rotate({turn} {x} {y})"' if turn else ""
    return f'<text x="{x}" y="{y}" text-anchor="{anchor}" class="{css}"{rotate}>{esc(text)}</text>'


def _points(xs: Iterable[float], ys: Iterable[float]) -> str:
    return " ".join(f"{x},{y}" for x, y in zip(xs, ys, strict=True))


def curve_svg(curve: Curve) -> str:
    """Price with its interval band as one feature varies; the house as a red dot."""
    m, w, h = CURVE_MARGIN, CHART_WIDTH, CURVE_HEIGHT
    x_low, x_high = min(curve.x), max(curve.x)
    y_ticks = linear_ticks(min(curve.low), max(curve.high), 5, outer=True)
    x_ticks = linear_ticks(x_low, x_high, 6)
    sx = _Scale(x_low, x_high, m["left"], w - m["right"])
    sy = _Scale(y_ticks[0], y_ticks[-1], h - m["bottom"], m["top"])
    xs = [sx(x) for x in curve.x]
    band = _points(xs + xs[::-1], [sy(y) for y in curve.high] + [sy(y) for y in curve.low][::-1])
    parts = [
        *(
            f'<line x1="{m["left"]}" x2="{w - m["right"]}" y1="{sy(t)}" y2="{sy(t)}" '
            f'class="grid"/>{_text(m["left"] - 6, sy(t) + 4, money(t), "end")}'
            for t in y_ticks
        ),
        *(
            f'<line x1="{sx(t)}" x2="{sx(t)}" y1="{h - m["bottom"]}" y2="{h - m["bottom"] + 5}" '
            f'class="axis"/>{_text(sx(t), h - m["bottom"] + 18, fmt(t, grouping=curve.grouping))}'
            for t in x_ticks
        ),
        f'<polygon points="{band}" fill="{COLOURS["line"]}" fill-opacity="0.2"/>',
        f'<polyline points="{_points(xs, [sy(p) for p in curve.price])}" fill="none" '
        f'stroke="{COLOURS["line"]}" stroke-width="3"/>',
        f'<circle cx="{sx(curve.current_x)}" cy="{sy(curve.current_price)}" r="6" '
        f'fill="{COLOURS["current"]}"/>',
        f'<line x1="{m["left"]}" x2="{w - m["right"]}" y1="{h - m["bottom"]}" '
        f'y2="{h - m["bottom"]}" class="axis"/>',
        _text(
            (m["left"] + w - m["right"]) / 2,
            h - 8,
            f"{curve.label}{f' ({curve.unit})' if curve.unit else ''}",
            css="label",
        ),
        _text(16, (m["top"] + h - m["bottom"]) / 2, "Price", css="label", turn=-90),
    ]
    return _svg(w, h, f"What if: price as {curve.label.lower()} varies", parts)


def waterfall_svg(drivers: Drivers, price: float) -> str:
    """The walk from the starting price to this house's: one floating bar per driver."""
    totals = [drivers.start]
    for item in drivers.items:
        totals.append(totals[-1] + item.dollars)
    ticks = linear_ticks(min(*totals, price), max(*totals, price), 5, outer=True)
    rows = len(drivers.items) + 2
    top, axis_y = 6, 6 + rows * BAR_ROW
    w, h = CHART_WIDTH, axis_y + 30
    sx = _Scale(ticks[0], ticks[-1], BAR_LABEL, w - BAR_VALUE)
    parts = [
        f'<line x1="{sx(t)}" x2="{sx(t)}" y1="{top}" y2="{axis_y}" class="grid"/>'
        f"{_text(sx(t), axis_y + 18, short_money(t))}"
        for t in ticks
    ]

    def row(i: int, label: str, amount: str, shape: str) -> None:
        middle = top + i * BAR_ROW + BAR_ROW / 2
        parts.append(_text(BAR_LABEL - 8, middle + 4, label, "end", "label"))
        parts.append(_text(w - BAR_VALUE + 8, middle + 4, amount, "start", "amount"))
        parts.append(shape.format(y=top + i * BAR_ROW + 4, h=BAR_ROW - 8, middle=middle))

    def marker(value: float, colour: str) -> str:
        return f'<rect x="{sx(value) - 2}" y="{{y}}" width="4" height="{{h}}" fill="{colour}"/>'

    row(0, drivers.start_label, money(drivers.start), marker(drivers.start, COLOURS["total"]))
    for i, item in enumerate(drivers.items, start=1):
        before, after = totals[i - 1], totals[i]
        left, right = sorted((sx(before), sx(after)))
        colour = COLOURS["up"] if item.dollars >= 0 else COLOURS["down"]
        bar = (
            f'<rect x="{left}" y="{{y}}" width="{max(right - left, 1)}" height="{{h}}" '
            f'fill="{colour}"/>'
        )
        row(i, item.label, _signed_money(item.dollars), bar)
    row(rows - 1, "This house", money(price), marker(price, COLOURS["total"]))
    parts.append(
        f'<line x1="{BAR_LABEL}" x2="{w - BAR_VALUE}" y1="{axis_y}" y2="{axis_y}" class="axis"/>'
    )
    return _svg(w, h, "Why this price: what each feature adds to the starting price", parts, "")


def _svg(width: int, height: int, title: str, parts: Iterable[str], role: str = "img") -> str:
    """`role="img"` for a chart read as a picture; none where its text is the content."""
    role = f' role="{role}"' if role else ""
    return (
        f'<svg viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}"{role}><title>{esc(title)}</title>'
        + "".join(parts)
        + "</svg>"
    )


STYLE = """
:root { color-scheme: light; }
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
  color: #1b1b1b; background: #fff; max-width: 760px; margin: 24px auto; padding: 0 20px; }
h1 { font-size: 1.6rem; margin: 0 0 4px; }
h2 { font-size: 1.15rem; margin: 28px 0 8px; padding-bottom: 4px; border-bottom: 1px solid #ccc; }
.lede { font-size: 1.1rem; margin: 0 0 4px; }
.meta, figcaption, .caveat { color: #555; font-size: 0.9rem; }
.caveat { font-weight: 600; }
.price { font-size: 2.4rem; font-weight: 700; margin: 0; font-variant-numeric: tabular-nums; }
.interval { font-size: 1.05rem; margin: 2px 0 6px; }
.figure { font-size: 1.3rem; font-weight: 700; }
.flags { border-left: 4px solid #e8a33d; background: #fdf5e6; padding: 6px 10px 6px 28px; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; margin: 6px 0; }
th, td { padding: 4px 10px; border-bottom: 1px solid #ddd; text-align: left; vertical-align: top; }
thead th { border-bottom-color: #999; }
.grid tbody tr:nth-child(even) { background: #f5f5f5; }
.num { text-align: right; }
.pairs th { font-weight: 600; padding-right: 24px; white-space: nowrap; }
svg { max-width: 100%; height: auto; display: block; font: 12px system-ui, sans-serif; }
svg .tick { fill: #444; }
svg .label { fill: #222; font-size: 13px; }
svg .amount { fill: #222; font-weight: 600; }
svg .grid { stroke: #ddd; }
svg .axis { stroke: #666; }
figure { margin: 8px 0; }
@media print {
  body { margin: 0; max-width: none; font-size: 11pt; }
  section, table, figure, svg { break-inside: avoid; page-break-inside: avoid; }
  h2 { break-after: avoid; page-break-after: avoid; }
  * { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
}
"""
