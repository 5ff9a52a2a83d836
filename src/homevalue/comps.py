"""Comparable sales: the nearest sold houses of similar size, fast enough for every keystroke.

The reference sales (about 2,650 rows) are loaded once into NumPy arrays; a query is one
vectorised distance computation and an argpartition, tens of microseconds.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pandas as pd

from homevalue import config
from homevalue.errors import ModelMissingError

EARTH_RADIUS_KM = 6371.0
SIZE_TOLERANCES = (0.25, 0.5, 1.0, None)  # widen until k houses qualify


@functools.lru_cache(maxsize=4)
def reference_sales(folder: Path | None = None) -> pd.DataFrame:
    """The sold houses the model was trained on (cleaned), as stored in the model folder."""
    path = Path(folder or config.model_dir()) / config.REFERENCE_SALES
    if not path.exists():
        raise ModelMissingError(f"no reference sales at {path}: run `make model`")
    return pd.read_csv(path)


@functools.lru_cache(maxsize=4)
def _arrays(folder: Path | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    sales = reference_sales(folder)
    return (
        np.radians(sales["Latitude"].to_numpy(float)),
        np.radians(sales["Longitude"].to_numpy(float)),
        sales["Gr_Liv_Area"].to_numpy(float),
    )


def distances_km(lat: float, lon: float, lats: np.ndarray, lons: np.ndarray) -> np.ndarray:
    """Equirectangular distance: exact to metres across a town, and cheap."""
    lat0 = np.radians(lat)
    x = (lons - np.radians(lon)) * np.cos((lats + lat0) / 2)
    y = lats - lat0
    return EARTH_RADIUS_KM * np.hypot(x, y)


def comparable_sales(
    lat: float,
    lon: float,
    living_area: float | None = None,
    *,
    k: int = 5,
    folder: Path | None = None,
) -> pd.DataFrame:
    """The k nearest sales to (lat, lon), preferring houses within ±25% of `living_area`.

    If fewer than k sales are that close in size the tolerance widens (±50%, ±100%, any), so
    a mansion still gets comparables; `size_tolerance` in the result says which applied.
    Sorted by distance, with `distance_km`.
    """
    lats, lons, areas = _arrays(folder)
    distance = distances_km(lat, lon, lats, lons)
    candidates = np.arange(len(distance))
    tolerance = None
    if living_area:
        for tolerance in SIZE_TOLERANCES:
            if tolerance is None:
                candidates = np.arange(len(distance))
                break
            near = np.flatnonzero(np.abs(areas - living_area) <= tolerance * living_area)
            if len(near) >= k:
                candidates = near
                break
    k = min(k, len(candidates))
    nearest = candidates[np.argpartition(distance[candidates], k - 1)[:k]] if k else candidates
    nearest = nearest[np.argsort(distance[nearest], kind="stable")]
    result = reference_sales(folder).iloc[nearest].copy()
    result["distance_km"] = distance[nearest].round(3)
    result["size_tolerance"] = tolerance
    return result.reset_index(drop=True)
