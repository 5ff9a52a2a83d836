"""Comparable sales and where a spot lies: fast enough for every keystroke and every click.

The reference sales (about 2,650 rows) are loaded once into NumPy arrays; a query is one
vectorised distance computation and an argpartition, tens of microseconds. The same arrays
say which neighbourhood a spot is in (its nearest sales vote) and where each neighbourhood's
centre is (the sale nearest all its others), so the page can keep location and
neighbourhood in agreement without a map of boundaries, which the data does not have.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from homevalue.schema import Schema

EARTH_RADIUS_KM = 6371.0
SIZE_TOLERANCES = (0.25, 0.5, 1.0, None)  # widen until k houses qualify
NEIGHBOURS = 7  # sales that vote on a spot's neighbourhood
NEAR_KM = 0.01  # votes weigh 1 / (distance + 10 m): a sale on the spot all but decides it


@dataclass(frozen=True)
class Step:
    """One step of the comparables rule: what must match, and how close in size."""

    same_neighbourhood: bool
    same_type: bool
    size: float | None  # ±share of the house's living area; None: any size

    def describe(self) -> str:
        parts = []
        if self.same_neighbourhood:
            parts.append("same neighbourhood")
        if self.same_type:
            parts.append("same building type")
        parts.append("any size" if self.size is None else f"living area ±{self.size:.0%}")
        return ", ".join(parts)


# The comparables rule, strictest first: the first step with k sales is used, and its
# sales are ranked by distance. A house like many others gets its own neighbourhood's
# houses of its type and size; an unusual one still gets the nearest that fit best.
COMPS_RULE = (
    Step(True, True, 0.25),
    Step(True, True, 0.5),
    Step(True, False, 0.25),
    Step(True, False, 0.5),
    Step(False, True, 0.25),
    Step(False, True, 0.5),
    Step(False, False, 0.5),
    Step(False, False, 1.0),
    Step(False, False, None),
)
COMPS_RULE_TEXT = (
    "Comparable sales are the nearest sales in the same neighbourhood, of the same building "
    "type, within ±25% of its living area; if fewer than five qualify the rule widens step "
    "by step (±50%, then any building type, then nearby neighbourhoods, then any size)."
)


def reference_sales(folder: Path | None = None) -> pd.DataFrame:
    """The sold houses the model was trained on (cleaned): `Model.reference_sales` of the
    model in `folder` (default: the served one), which reads and checks the file once."""
    from homevalue.model import load_model

    return load_model(folder).reference_sales()


@dataclass(frozen=True)
class _Arrays:
    lats: np.ndarray  # radians
    lons: np.ndarray
    areas: np.ndarray
    hoods: np.ndarray  # codes into hood_names
    types: np.ndarray
    hood_names: tuple[str, ...]
    type_codes: dict[str, int]
    columns: dict[str, np.ndarray]  # every column of the sales, for building results


def _schema(folder: Path | None) -> Schema:
    """The loaded model's schema: its roles name the sales' columns (a card may rename them)."""
    from homevalue.model import load_model

    return load_model(folder).schema


@functools.lru_cache(maxsize=4)
def _arrays(folder: Path | None) -> _Arrays:
    sales = reference_sales(folder)
    column = {role: f.name for role, f in _schema(folder).roles.items()}
    hoods, hood_names = pd.factorize(sales[column["neighbourhood"]].astype(str), sort=True)
    types, type_names = pd.factorize(sales[column["building_type"]].astype(str), sort=True)
    return _Arrays(
        np.radians(sales[column["latitude"]].to_numpy(float)),
        np.radians(sales[column["longitude"]].to_numpy(float)),
        sales[column["living_area"]].to_numpy(float),
        hoods,
        types,
        tuple(hood_names),
        {name: code for code, name in enumerate(type_names)},
        {name: sales[name].to_numpy() for name in sales.columns},
    )


def distances_km(lat: float, lon: float, lats: np.ndarray, lons: np.ndarray) -> np.ndarray:
    """Equirectangular distance: exact to metres across a town, and cheap."""
    lat0 = np.radians(lat)
    x = (lons - np.radians(lon)) * np.cos((lats + lat0) / 2)
    y = lats - lat0
    return EARTH_RADIUS_KM * np.hypot(x, y)


def _vote(distance: np.ndarray, hoods: np.ndarray, n_hoods: int, k: int = NEIGHBOURS) -> int:
    k = min(k, len(distance))
    nearest = np.argpartition(distance, k - 1)[:k]
    weights = 1.0 / (distance[nearest] + NEAR_KM)
    return int(np.bincount(hoods[nearest], weights=weights, minlength=n_hoods).argmax())


def neighbourhood_at(lat: float, lon: float, *, folder: Path | None = None) -> str:
    """The neighbourhood of a spot by its sold neighbours: the 7 nearest sales vote, each
    weighted by 1 / (distance + 10 m).

    The data has no boundaries, only sales; leaving each sale out, this vote names its
    own neighbourhood for 97% of them (the rest sit on borders).
    """
    a = _arrays(folder)
    distance = distances_km(lat, lon, a.lats, a.lons)
    return a.hood_names[_vote(distance, a.hoods, len(a.hood_names))]


def medoid(lats: np.ndarray, lons: np.ndarray) -> int:
    """Index of the point with the least total distance to the others (radians in)."""
    x = (lons[:, None] - lons[None, :]) * np.cos((lats[:, None] + lats[None, :]) / 2)
    y = lats[:, None] - lats[None, :]
    return int(np.argmin(np.hypot(x, y).sum(axis=1)))


def neighbourhood_centres(sales: pd.DataFrame, schema: Schema) -> dict[str, tuple[float, float]]:
    """(lat, lon) of each neighbourhood's centre: its medoid sale, so a point inside it.

    A mean could fall outside a curved or split neighbourhood; a sale of it cannot, and
    the medoid is the sale nearest the rest of them. `schema`'s roles name the columns.
    """
    hood, lat, lon = (schema.role(r).name for r in ("neighbourhood", "latitude", "longitude"))
    centres = {}
    for name, group in sales.groupby(sales[hood].astype(str), sort=True):
        lats = np.radians(group[lat].to_numpy(float))
        lons = np.radians(group[lon].to_numpy(float))
        best = group.iloc[medoid(lats, lons)]
        centres[name] = (float(best[lat]), float(best[lon]))
    return centres


@functools.lru_cache(maxsize=4)
def reference_centres(folder: Path | None = None) -> dict[str, tuple[float, float]]:
    """The centre of each neighbourhood of the reference sales, once per process."""
    return neighbourhood_centres(reference_sales(folder), _schema(folder))


@functools.lru_cache(maxsize=4)
def _model_price_memo(folder: Path | None) -> tuple[np.ndarray, np.ndarray]:
    """Per process: each reference sale's model price (NaN where the model refuses it) and
    whether it has been worked out yet."""
    count = len(reference_sales(folder))
    return np.full(count, np.nan), np.zeros(count, dtype=bool)


def model_prices(rows: np.ndarray | None = None, folder: Path | None = None) -> np.ndarray:
    """What the model says for these reference sales (all when `rows` is None; NaN where it
    refuses one), each priced once per process when first asked for. The comps table shows
    it beside the price the house sold for. Pricing all 2,930 sales up front cost every new
    price-page kernel 0.2 CPU-s; a page shows five at a time (predict_one: 0.2 ms each)."""
    from homevalue.errors import ValidationError
    from homevalue.model import load_model
    from homevalue.predict import predict_one

    prices, known = _model_price_memo(folder)
    rows = np.arange(len(prices)) if rows is None else np.asarray(rows, dtype=np.intp)
    missing = np.unique(rows[~known[rows]])
    if len(missing):
        model = load_model(folder)
        records = reference_sales(folder).iloc[missing][model.schema.names].to_dict("records")
        for row, record in zip(missing, records, strict=True):
            with contextlib.suppress(ValidationError):
                prices[row] = predict_one(record, model=model).price
        known[missing] = True  # after the prices, so a sale marked known has its price
    return prices[rows]


def _candidates(
    a: _Arrays, step: Step, living_area: float | None, hood: int | None, kind: int | None
) -> np.ndarray:
    mask = np.ones(len(a.areas), dtype=bool)
    if step.same_neighbourhood and hood is not None:
        mask &= a.hoods == hood
    if step.same_type and kind is not None:
        mask &= a.types == kind
    if step.size is not None and living_area:
        mask &= np.abs(a.areas - living_area) <= step.size * living_area
    return np.flatnonzero(mask)


def comparable_sales(
    lat: float,
    lon: float,
    living_area: float | None = None,
    *,
    neighbourhood: str | None = None,
    building_type: str | None = None,
    k: int = 5,
    folder: Path | None = None,
    with_model_price: bool = False,
) -> pd.DataFrame:
    """The k comparable sales of a house, by COMPS_RULE, sorted by distance.

    The first step of the rule that k sales pass is used (a criterion that is not given,
    such as no neighbourhood, is not applied); `size_tolerance` and `rule` in the result
    say which step that was. `distance_km` is from (lat, lon); with `with_model_price`,
    `model_price` is what the model says for each sale.
    """
    a = _arrays(folder)
    distance = distances_km(lat, lon, a.lats, a.lons)
    hood = a.hood_names.index(neighbourhood) if neighbourhood in a.hood_names else None
    kind = a.type_codes.get(building_type) if building_type is not None else None
    for step in COMPS_RULE:
        candidates = _candidates(a, step, living_area, hood, kind)
        if len(candidates) >= k:
            break
    applied = Step(
        step.same_neighbourhood and hood is not None,
        step.same_type and kind is not None,
        step.size if living_area else None,
    )
    k = min(k, len(candidates))
    nearest = candidates[np.argpartition(distance[candidates], k - 1)[:k]] if k else candidates
    nearest = nearest[np.argsort(distance[nearest], kind="stable")]
    # One DataFrame from column slices: indexing the stored frame and adding columns to
    # it took ten times as long as the search itself.
    result = {name: column[nearest] for name, column in a.columns.items()}
    result["distance_km"] = distance[nearest].round(3)
    result["size_tolerance"] = np.full(len(nearest), applied.size, dtype=object)
    result["rule"] = np.full(len(nearest), applied.describe(), dtype=object)
    if with_model_price:
        result["model_price"] = model_prices(nearest, folder)
    return pd.DataFrame(result, copy=False)


def comparable_sales_for(
    house: Mapping, *, folder: Path | None = None, with_model_price: bool = False
) -> pd.DataFrame:
    """The comparable sales of a house given as {field: value} (the form's values, a sale):
    its location, size, neighbourhood and type read by their roles, as the page finds them."""
    field = {role: f.name for role, f in _schema(folder).roles.items()}
    return comparable_sales(
        house[field["latitude"]],
        house[field["longitude"]],
        house[field["living_area"]],
        neighbourhood=house[field["neighbourhood"]],
        building_type=house.get(field["building_type"]),
        folder=folder,
        with_model_price=with_model_price,
    )
