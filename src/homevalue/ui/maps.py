"""The map of Ames: one ipyleaflet Map, houses drawn as single GeoJSON layers.

Each Marker is its own widget and thousands of them hang the page, so every set of houses
(2,650 reference sales, a scored batch) is one GeoJSON layer of circles whose colours are
computed here. Offline the basemap tiles do not load; the layers still show the town.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from ipyleaflet import GeoJSON, LegendControl, Map, ScaleControl

from homevalue.schema import short_money

# Price bands for colouring, and the colours (viridis, readable on light and dark).
PRICE_BANDS = (100_000, 150_000, 200_000, 300_000)
BAND_COLOURS = ("#440154", "#3b528b", "#21918c", "#5ec962", "#fde725")
# Signed error of the model (predicted / actual - 1): blue under-, red over-estimates.
ERROR_BANDS = (-0.10, -0.03, 0.03, 0.10)
ERROR_COLOURS = ("#2166ac", "#92c5de", "#d9d9d9", "#f4a582", "#b2182b")
AMES_CENTER = (42.0308, -93.6319)


def band_labels(bands, fmt) -> list[str]:
    """Legend labels for the bins that `np.digitize(values, bands)` makes."""
    edges = [fmt(b) for b in bands]
    return (
        [f"under {edges[0]}"]
        + [f"{low} – {high}" for low, high in zip(edges, edges[1:], strict=False)]
        + [f"{edges[-1]} and over"]
    )


def price_legend() -> dict[str, str]:
    return dict(zip(band_labels(PRICE_BANDS, short_money), BAND_COLOURS, strict=True))


def error_legend() -> dict[str, str]:
    labels = band_labels(ERROR_BANDS, lambda b: f"{b:+.0%}")
    return dict(zip(labels, ERROR_COLOURS, strict=True))


def colours(values, bands, palette) -> list[str]:
    return [palette[i] for i in np.digitize(np.asarray(values, dtype=float), bands)]


def points(
    frame: pd.DataFrame,
    properties: list[str],
    colour: list[str],
    styles: list[dict] | None = None,
    *,
    at: tuple[str, str],
) -> dict:
    """A FeatureCollection of circles; each feature carries its colour and chosen columns.

    The reference sales are most of a page's widget state (the browser waits for all of it
    before drawing anything), so features carry only what a click or a style needs: the
    size is the layer's, coordinates are rounded to 5 decimals (about a metre). `styles`
    adds to a feature's style (a highlighted circle: larger, outlined). `at` names the
    (latitude, longitude) columns: `Schema.place`.
    """
    features = []
    lat, lon = frame[at[0]].to_numpy(float), frame[at[1]].to_numpy(float)
    records = frame[properties].to_dict("records")
    styles = styles or [{}] * len(records)
    for x, y, props, fill, extra in zip(lon, lat, records, colour, styles, strict=True):
        props = {k: (v.item() if hasattr(v, "item") else v) for k, v in props.items()}
        props["style"] = {"fillColor": fill, "color": fill, **extra}
        features.append(
            {
                "type": "Feature",
                "geometry": {"type": "Point", "coordinates": [round(x, 5), round(y, 5)]},
                "properties": props,
            }
        )
    return {"type": "FeatureCollection", "features": features}


def layer(name: str, data: dict | None = None, *, opacity: float = 0.8, radius=4) -> GeoJSON:
    """One GeoJSON layer of circle markers (colours come from each feature).

    A click on a circle stays with the layer (Leaflet's `bubblingMouseEvents`): otherwise
    the map hears it too, and a page that places the house on a map click would move the
    house when the viewer only meant to look at a sale.
    """
    style = {"radius": radius, "weight": 1, "fillOpacity": opacity, "opacity": opacity}
    return GeoJSON(
        name=name,
        data=data or {"type": "FeatureCollection", "features": []},
        point_style={**style, "bubblingMouseEvents": False},
    )


def ames_map(*, height: str = "420px", zoom: int = 12) -> Map:
    """An empty map of Ames with a scale bar; callers add their layers and legend."""
    m = Map(center=AMES_CENTER, zoom=zoom, scroll_wheel_zoom=True, layout={"height": height})
    m.add(ScaleControl(position="bottomleft", imperial=True, metric=True))
    m.add_class("hv-map")
    return m


def legend(title: str, entries: dict[str, str]) -> LegendControl:
    return LegendControl(entries, title=title, position="topright")
