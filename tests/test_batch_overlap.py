"""score_file's faster paths give the bytes and errors of the plain ones: reading ahead and
writing behind on two threads, Arrow's fast paths for validation, formulas and CSV."""

from __future__ import annotations

import errno
import threading

import numpy as np
import pandas as pd
import pytest
from batch_helpers import everything_in, houses, write_csv

import homevalue
from homevalue import batch
from homevalue.batch import FORMULA_START, csv_bytes, score_file
from homevalue.errors import BatchOutputError
from homevalue.schema import validate_frame

HOSTILE = [
    "=1+1",
    "+cmd",
    "-2+3",
    "@SUM(A1)",
    "\tx",
    "a,b",
    'say "hi"',
    "line\nbreak",
    "cr\rhere",
    "",
    " 12 ",
    "1,800",
    "1,80",
    "-93.5",
    "١٥",
    "nan",
    "inf",
    "1e999",
    "north ames",
    " North_Ames ",
    "NORTH-AMES",
    "é" * 5,
    "x" * 40,
]


@pytest.fixture(scope="module")
def model() -> homevalue.Model:
    return homevalue.load_model()


def hostile_houses(n: int, seed: int = 0) -> pd.DataFrame:
    """`n` houses as text with hostile cells sprinkled over ids, numbers and categories."""
    frame = pd.concat([houses(150)] * (n // 150 + 1), ignore_index=True).head(n)
    rng = np.random.default_rng(seed)
    for column in ["house_id", "Gr_Liv_Area", "Neighborhood", "Longitude", "Central_Air"]:
        rows = rng.choice(n, n // 10, replace=False)
        frame.loc[rows, column] = rng.choice(HOSTILE, len(rows))
    frame["address"] = [f"{i} Main St, Ames" if i % 3 else "" for i in range(n)]
    return frame


def test_two_threads_write_the_bytes_of_one_whatever_the_chunks(tmp_path, model):
    source = write_csv(hostile_houses(2_000), tmp_path / "hostile.csv")

    runs = [
        score_file(
            source,
            tmp_path / f"t{threads}",
            model=model,
            progress=False,
            threads=threads,
            chunk_rows=chunk_rows,
        )
        for threads, chunk_rows in [(1, 2_000), (1, 333), (2, 333), (2, 2_000)]
    ]

    first = runs[0]
    assert first.rows_rejected > 0 and first.rows_scored > 0
    for run in runs[1:]:
        assert run.scored_path.read_bytes() == first.scored_path.read_bytes()
        assert run.rejected_path.read_bytes() == first.rejected_path.read_bytes()
        assert (run.rows_scored, run.rows_rejected) == (first.rows_scored, first.rows_rejected)
        assert run.profile.to_json() == first.profile.to_json()


@pytest.mark.parametrize("threads", [1, 2])
def test_a_failed_write_is_the_error_even_when_a_later_chunk_fails_too(
    tmp_path, model, monkeypatch, threads
):
    """In order: the write of chunk 2 fails before chunk 3 is scored, whatever the threads."""
    source = write_csv(houses(40), tmp_path / "houses.csv")
    real_write, real_score = batch._CsvSink.write, batch.score_frame
    writes = []

    def write(self, frame):
        writes.append(len(frame))
        if len(writes) == 3:  # the scored part of chunk 2 (each chunk writes two parts)
            raise OSError(errno.ENOSPC, "No space left on device")
        real_write(self, frame)

    def score(*args, **kwargs):
        if kwargs["first_row"] == 21:  # chunk 3
            raise RuntimeError("chunk 3 broke")
        return real_score(*args, **kwargs)

    monkeypatch.setattr(batch._CsvSink, "write", write)
    monkeypatch.setattr(batch, "score_frame", score)

    with pytest.raises(BatchOutputError, match="no space left on device"):
        score_file(
            source, tmp_path / "out", model=model, progress=False, threads=threads, chunk_rows=10
        )
    assert everything_in(tmp_path / "out") == []


@pytest.mark.parametrize("threads", [1, 2])
def test_one_thread_runs_on_the_callers_thread_alone(tmp_path, model, monkeypatch, threads):
    source = write_csv(houses(30), tmp_path / "houses.csv")
    real_score = batch.score_frame
    seen = []

    def score(*args, **kwargs):
        seen.append(sorted(t.name for t in threading.enumerate() if "homevalue-batch" in t.name))
        return real_score(*args, **kwargs)

    monkeypatch.setattr(batch, "score_frame", score)
    score_file(
        source, tmp_path / "out", model=model, progress=False, threads=threads, chunk_rows=10
    )

    assert len(seen) == 3
    assert all(names == [] for names in seen) == (threads == 1)
    assert not [t for t in threading.enumerate() if "homevalue-batch" in t.name]  # all ended


def test_arrow_text_validates_as_python_text(model):
    """The Arrow fast paths (every cell a number, or a code) answer as the long way does;
    an object column of the same strings always takes the long way."""
    for seed in range(4):
        frame = hostile_houses(600, seed)
        frame["Gr_Liv_Area"] = frame["Gr_Liv_Area"].where(frame.index % 7 != 0, None)
        for part in [frame, frame.head(50), frame.iloc[40:41]]:
            arrow = validate_frame(model.schema, part.astype("str"), first_row=3)
            python = validate_frame(model.schema, part.astype(object), first_row=3)
            assert arrow.problems == python.problems
            assert (arrow.ok == python.ok).all()
            pd.testing.assert_frame_equal(arrow.values, python.values)
            assert list(arrow.flag_strings()) == list(python.flag_strings())
            assert arrow.codes.keys() == python.codes.keys()
            for name, codes in arrow.codes.items():
                assert list(map(repr, codes)) == list(map(repr, python.codes[name]))
    clean = houses(150).astype("str")  # the fast paths are taken (and answer) here too
    assert validate_frame(model.schema, clean).ok.all()


def test_risky_first_characters_are_found_as_startswith_finds_them():
    cells = [*HOSTILE, None, "", "ok", "-", "=", "é=", "@", " =x"]
    series = pd.Series(cells * 3, dtype="str")
    expected = series.str.startswith(FORMULA_START).fillna(False).to_numpy(dtype=bool)
    wanted = batch._FORMULA_BYTES
    assert (batch._first_byte_in(series, wanted) == expected).all()
    chunked = pd.concat([series.iloc[5:20], series.iloc[:5], series.iloc[20:]])
    found = batch._first_byte_in(chunked.reset_index(drop=True), wanted)
    assert (found == chunked.str.startswith(FORMULA_START).fillna(False).to_numpy()).all()


@pytest.mark.parametrize(
    "cells",
    [
        ["a", "b"],
        ["", None],
        ["x,y", "plain"],
        ['q"uote', None],
        ["cr\rhere", "nl\nhere"],
        ["é", "-93.6"],
    ],
)
def test_csv_bytes_are_pandas_bytes_with_or_without_quotes(cells):
    frame = pd.DataFrame(
        {
            "row": [1, -2],
            "text": pd.Series(cells, dtype="str"),
            "n": [10**12, 0],
            "plain": pd.Series(["1", ""], dtype="str"),
        }
    )
    expected = frame.to_csv(index=False, lineterminator="\r\n").encode()
    assert csv_bytes(frame, header=True) == expected
    assert csv_bytes(frame.iloc[1:], header=False) == expected.split(b"\r\n", 2)[2]
