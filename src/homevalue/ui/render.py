"""HTML fragments for the pages: escaped, small, styled by the template's `hv-` classes.

Everything that reaches the page as HTML goes through here, and every value is escaped,
because uploaded files are viewer input (`<img onerror=...>` must show as text).
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Mapping

import pandas as pd


def esc(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def count(n: int, noun: str) -> str:
    """1,204 rows; 1 row (nouns here take an s)."""
    return f"{n:,} {noun}" + ("" if n == 1 else "s")


def money(value: float | None) -> str:
    """$176,000; an em dash for missing."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"${value:,.0f}"


def dollars_text(years: str) -> str:
    """The caveat every page that shows a price carries, in words: "2006-2010" prices read
    as today's would be wrong by the inflation since."""
    return (
        f"All prices are in {years.replace('-', '–')} dollars, the years of the Ames sales "
        "the model learned from, not today's."
    )


def dollars_note(years: str) -> str:
    return f'<p class="hv-dollars">{esc(dollars_text(years))}</p>'


def category_label(value: object) -> str:
    """A category as people read it: North_Ames -> North Ames."""
    return str(value).replace("_", " ")


def notice(message: str) -> str:
    return f'<div class="hv-notice" role="alert">{esc(message)}</div>'


def ok(message: str) -> str:
    return f'<div class="hv-ok">{esc(message)}</div>'


def field_error(message: str) -> str:
    return f'<span class="hv-field-error">{esc(message)}</span>' if message else ""


def version_marker(version: str) -> str:
    return f'<span data-hv-model-version="{esc(version)}"></span>'


def bullet_list(items: Iterable[str], css: str = "hv-flags") -> str:
    items = [f"<li>{esc(item)}</li>" for item in items]
    return f'<ul class="{css}">{"".join(items)}</ul>' if items else ""


def _cell(value: object, fmt) -> str:
    if (
        fmt is not None
        and value is not None
        and not (isinstance(value, float) and math.isnan(value))
    ):
        text = fmt(value)
    else:
        text = "" if value is None or (isinstance(value, float) and math.isnan(value)) else value
    numeric = isinstance(value, int | float) and not isinstance(value, bool)
    css = ' class="num"' if numeric else ""
    return f"<td{css}>{esc(text)}</td>"


def table(
    frame: pd.DataFrame,
    *,
    headers: Mapping[str, str] | None = None,
    formats: Mapping[str, object] | None = None,
    caption: str = "",
    rows: bool = False,
    label: str = "",
) -> str:
    """A small HTML table; `headers` renames columns, `formats` maps column -> callable.

    `label` names the table's scrolling box for screen readers (short; else the caption).

    `rows=True` keeps each row on one line (a file's own rows, many columns wide).
    """
    headers, formats = headers or {}, formats or {}
    head = "".join(f"<th>{esc(headers.get(c, c))}</th>" for c in frame.columns)
    body = "".join(
        "<tr>"
        + "".join(_cell(v, formats.get(c)) for c, v in zip(frame.columns, row, strict=True))
        + "</tr>"
        for row in frame.itertuples(index=False)
    )
    cap = f"<caption>{esc(caption)}</caption>" if caption else ""
    # The wrap scrolls sideways when the table is wider than the screen: a tab stop with a
    # name, so a keyboard can scroll it too (axe: scrollable-region-focusable).
    name = esc(label or caption or "Table")
    return (
        f'<div class="hv-table-wrap" tabindex="0" role="region" aria-label="{name}">'
        f'<table class="hv-table{" hv-rows" if rows else ""}">'
        f"{cap}<thead><tr>{head}</tr>"
        f"</thead><tbody>{body}</tbody></table></div>"
    )


def definition_table(pairs: Iterable[tuple[str, object]]) -> str:
    """Two columns, label and value: for metrics, versions and provenance."""
    rows = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in pairs)
    return f'<table class="hv-table hv-pairs"><tbody>{rows}</tbody></table>'
