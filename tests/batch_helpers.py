"""Input files for the batch and inbox tests, built from the sales stored beside the model.

Cells are kept as text throughout, so a test can compare what went in with what came out
character for character.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

import homevalue
from homevalue import config

ID = "house_id"


def reference_text() -> pd.DataFrame:
    """The reference sales as text, without the price the model is meant to predict."""
    path = homevalue.load_model().path / config.REFERENCE_SALES
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    return frame.drop(columns="Sale_Price")


def houses(n: int) -> pd.DataFrame:
    """`n` houses the model accepts, as text, led by ids with leading zeros ("001", "007")."""
    model = homevalue.load_model()
    frame = reference_text()
    known = frame["Neighborhood"].isin(model.schema.by_name["Neighborhood"].categories)
    frame = frame[known].head(n).reset_index(drop=True)
    assert len(frame) == n, "not enough reference sales for this test"
    frame.insert(0, ID, [f"{i:03d}" for i in range(1, n + 1)])
    return frame


def write_csv(frame: pd.DataFrame, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)
    return path


def read_text_csv(path: Path) -> pd.DataFrame:
    """An output CSV exactly as written: every cell text, empty cells empty strings."""
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def everything_in(folder: Path) -> list[str]:
    """Every name in `folder`, hidden temporaries included."""
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def write_wide_csv(path: Path, rows: int, extra_columns: int) -> Path:
    """`rows` valid houses followed by `extra_columns` columns of "1" (the wide-file attack).

    Built as text, not through pandas: 200 x 50,000 cells take milliseconds this way.
    """
    frame = houses(rows)
    extra = ",".join(["1"] * extra_columns)
    header = ",".join([*frame.columns, *(f"x{i}" for i in range(extra_columns))])
    body = (",".join(row) + "," + extra for row in frame.itertuples(index=False))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join([header, *body]) + "\n")
    return path


def homevalue_command(*args: str) -> list[str]:
    """The installed `homevalue` script of this environment, as cron would run it."""
    return [str(Path(sys.executable).with_name("homevalue")), *args]
