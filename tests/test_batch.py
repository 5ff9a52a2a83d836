"""`homevalue.batch.score_file` and `homevalue batch score`: every row accounted for, outputs
whole or absent, input columns passed through as written, no formulas in the downloads."""

from __future__ import annotations

import builtins
import errno
import io
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from batch_helpers import (
    ID,
    everything_in,
    homevalue_command,
    houses,
    read_text_csv,
    write_csv,
    write_wide_csv,
)

import homevalue
from homevalue import batch, cli
from homevalue.batch import REJECTED_COLUMNS, neutralise_formulas, score_file
from homevalue.predict import PRICE_COLUMNS


@pytest.fixture(scope="module")
def model() -> homevalue.Model:
    return homevalue.load_model()


def score(source, out, model, **options) -> batch.BatchResult:
    return score_file(source, out, model=model, progress=False, **options)


# --- good files ---------------------------------------------------------------------------


def test_good_csv_scores_every_row_and_passes_input_columns_through(tmp_path, model):
    given = houses(50)
    source = write_csv(given, tmp_path / "houses.csv")

    result = score(source, tmp_path / "out", model)

    assert (result.rows_scored, result.rows_rejected, result.rows_read) == (50, 0, 50)
    assert result.scored_path == tmp_path / "out" / "houses.scored.csv"
    assert result.rejected_path == tmp_path / "out" / "houses.rejected.csv"
    assert result.model_version == model.version
    scored = read_text_csv(result.scored_path)
    assert list(scored.columns) == ["row", *given.columns, *PRICE_COLUMNS]
    pd.testing.assert_frame_equal(scored[list(given.columns)], given)
    assert scored.loc[6, ID] == "007"
    assert scored["row"].tolist() == [str(i) for i in range(1, 51)]
    for column in ["predicted_price", "price_low", "price_high"]:
        assert scored[column].str.fullmatch(r"[1-9]\d*").all(), column
    prices = scored[["predicted_price", "price_low", "price_high"]].astype(int)
    assert (prices["price_low"] <= prices["predicted_price"]).all()
    assert (prices["predicted_price"] <= prices["price_high"]).all()
    assert (scored["model_version"] == model.version).all()
    assert read_text_csv(result.rejected_path).empty
    assert list(read_text_csv(result.rejected_path).columns) == REJECTED_COLUMNS


def test_batch_prices_equal_predict_frame_on_the_same_rows(tmp_path, model):
    given = houses(50)
    source = write_csv(given, tmp_path / "houses.csv")

    scored = pd.read_csv(score(source, tmp_path / "out", model).scored_path)
    expected = homevalue.predict_frame(pd.read_csv(source), model=model)

    for column in ["predicted_price", "price_low", "price_high"]:
        assert scored[column].tolist() == expected[column].tolist(), column
    # An all-empty flags column reads back as floats (NaN): compare as text.
    assert scored["flags"].astype(object).fillna("").tolist() == expected["flags"].tolist()


def test_parquet_in_gives_parquet_out_with_the_same_prices_as_csv(tmp_path, model):
    given = houses(30)
    csv_source = write_csv(given, tmp_path / "houses.csv")
    parquet_source = tmp_path / "typed.parquet"
    pd.read_csv(csv_source, dtype={ID: str}).to_parquet(parquet_source, index=False)

    result = score(parquet_source, tmp_path / "out", model, chunk_rows=8)

    assert result.scored_path == tmp_path / "out" / "typed.scored.parquet"
    assert result.rejected_path.suffix == ".csv"
    assert (result.rows_scored, result.rows_rejected) == (30, 0)
    from_parquet = pd.read_parquet(result.scored_path)
    from_csv = pd.read_csv(score(csv_source, tmp_path / "out", model).scored_path)
    assert from_parquet[ID].tolist() == given[ID].tolist()
    assert from_parquet["row"].tolist() == list(range(1, 31))
    for column in ["predicted_price", "price_low", "price_high"]:
        assert from_parquet[column].dtype == np.int64
        assert from_parquet[column].tolist() == from_csv[column].tolist(), column


def test_excel_csv_utf8_with_a_byte_order_mark_is_read(tmp_path, model):
    """Excel's "CSV UTF-8" starts with a BOM; the first column must keep its plain name."""
    given = houses(5)[["Neighborhood", "Gr_Liv_Area", "Year_Built", "Longitude", "Latitude"]]
    source = tmp_path / "excel.csv"
    given.to_csv(source, index=False, encoding="utf-8-sig")

    result = score(source, tmp_path / "out", model)

    assert (result.rows_scored, result.rows_rejected) == (5, 0)
    assert read_text_csv(result.scored_path).columns[1] == "Neighborhood"


def test_a_semicolon_separated_file_is_refused_with_a_hint(tmp_path, model):
    source = tmp_path / "european.csv"
    houses(3).to_csv(source, index=False, sep=";")

    with pytest.raises(homevalue.BatchFileError, match="separated by semicolons"):
        score(source, tmp_path / "out", model)
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_extra_columns_are_passed_through_as_written(tmp_path, model):
    given = houses(5)
    given["note"] = ['Café, "big"', "line\nbreak", "", "  spaces  ", "0042"]
    given["Sale_Date"] = "2010-05-01"
    source = write_csv(given, tmp_path / "houses.csv")

    scored = read_text_csv(score(source, tmp_path / "out", model).scored_path)

    pd.testing.assert_frame_equal(scored[list(given.columns)], given)


def test_header_only_file_gives_empty_outputs(tmp_path, model):
    source = tmp_path / "none.csv"
    source.write_text(",".join(houses(1).columns) + "\n")

    result = score(source, tmp_path / "out", model)

    assert (result.rows_scored, result.rows_rejected) == (0, 0)
    assert everything_in(tmp_path / "out") == ["none.rejected.csv", "none.scored.csv"]
    scored = read_text_csv(result.scored_path)
    assert scored.empty
    assert list(scored.columns) == ["row", *houses(1).columns, *PRICE_COLUMNS]
    assert list(read_text_csv(result.rejected_path).columns) == REJECTED_COLUMNS


# --- chunks and row numbers ---------------------------------------------------------------


def _file_with_some_bad_rows(tmp_path):
    given = houses(50)
    given.loc[9, "Gr_Liv_Area"] = "-5"  # row 10
    given.loc[22, "Neighborhood"] = "Atlantis"  # row 23
    given.loc[43, "Lot_Area"] = "lots"  # row 44
    given.loc[3, "Garage_Cars"] = ""  # optional: scored with the default, written as ""
    given.loc[4, "Latitude"] = "42.0500"  # written as given, not as 42.05
    return given, write_csv(given, tmp_path / "houses.csv")


def test_chunk_size_changes_nothing_and_rows_are_numbered_in_the_whole_file(tmp_path, model):
    given, source = _file_with_some_bad_rows(tmp_path)

    small = score(source, tmp_path / "small", model, chunk_rows=7)
    large = score(source, tmp_path / "large", model, chunk_rows=100_000)

    assert small.scored_path.read_bytes() == large.scored_path.read_bytes()
    assert small.rejected_path.read_bytes() == large.rejected_path.read_bytes()
    scored = read_text_csv(small.scored_path)
    expected_rows = [i for i in range(1, 51) if i not in (10, 23, 44)]
    assert scored["row"].astype(int).tolist() == expected_rows
    # the row number and the id (row i has id i) say the same: no row shifted between chunks
    assert scored[ID].astype(int).tolist() == expected_rows
    assert read_text_csv(small.rejected_path)["row"].astype(int).tolist() == [10, 23, 44]
    assert scored.loc[scored[ID] == "004", "Garage_Cars"].item() == ""
    assert scored.loc[scored[ID] == "005", "Latitude"].item() == "42.0500"
    assert scored.loc[scored[ID] == "006", "Garage_Cars"].item() == given.loc[5, "Garage_Cars"]


def _many_blocks(tmp_path) -> tuple[pd.DataFrame, Path]:
    """20,000 houses (about 2.6 MB): Arrow's reader takes a CSV in blocks of 1 MiB."""
    big = pd.concat([houses(50)] * 400, ignore_index=True)
    big[ID] = [f"{i:06d}" for i in range(1, len(big) + 1)]
    big["note"] = np.resize(["plain", 'a "quoted", word', "two\nlines", "", "-7", "=1+1"], len(big))
    source = write_csv(big, tmp_path / "big.csv")
    assert source.stat().st_size > 2 * 2**20
    return big, source


def test_a_file_of_several_arrow_blocks_comes_out_row_for_row(tmp_path, model):
    big, source = _many_blocks(tmp_path)

    whole = score(source, tmp_path / "whole", model, chunk_rows=100_000)
    parts = score(source, tmp_path / "parts", model, chunk_rows=4_999)  # chunks span blocks

    assert whole.scored_path.read_bytes() == parts.scored_path.read_bytes()
    scored = read_text_csv(whole.scored_path)
    expected = big.assign(note=big["note"].where(big["note"] != "=1+1", "'=1+1"))
    pd.testing.assert_frame_equal(scored[list(big.columns)], expected)
    assert scored["row"].astype(int).tolist() == list(range(1, len(big) + 1))
    # byte for byte what pandas' writer made of the same cells
    pandas_wrote = scored.to_csv(index=False, lineterminator="\r\n").encode()
    assert whole.scored_path.read_bytes() == pandas_wrote


def test_a_ragged_row_past_arrows_first_blocks_is_named_as_before(tmp_path, model):
    """Arrow stops at a row of another width; pandas' reader then says where, as always."""
    big, source = _many_blocks(tmp_path)
    lines = source.read_bytes().split(b"\n")
    at = next(i for i in range(15_000, len(lines)) if lines[i].endswith(b",plain"))
    lines[at] += b",surplus,cells"
    source.write_bytes(b"\n".join(lines))
    width = len(big.columns)

    with pytest.raises(
        homevalue.BatchFileError,
        match=rf"^big\.csv cannot be read as CSV: .*Expected {width} fields in line \d+, "
        rf"saw {width + 2}",
    ):
        score(source, tmp_path / "out", model, chunk_rows=4_999)
    assert everything_in(tmp_path / "out") == []


# --- bad rows -----------------------------------------------------------------------------


def test_every_row_is_scored_or_rejected_with_the_field_and_reason(tmp_path, model):
    given = houses(30)
    breaks = {  # row number (1 = first data row): (field, value)
        3: ("Gr_Liv_Area", "-1200"),
        5: ("Neighborhood", "Atlantis"),
        8: ("Lot_Area", "twelve thousand"),
        11: ("Year_Built", ""),
        14: ("Year_Remod_Add", str(int(given.loc[13, "Year_Built"]) - 10)),
        17: ("Total_Bsmt_SF", "inf"),
    }
    for row, (field, value) in breaks.items():
        given.loc[row - 1, field] = value
    given.loc[19, "Neighborhood"] = "Nowhere"  # row 20: two problems, one row
    given.loc[19, "Gr_Liv_Area"] = "1,5OO"
    source = write_csv(given, tmp_path / "mixed.csv")

    result = score(source, tmp_path / "out", model, chunk_rows=4)

    rejected = read_text_csv(result.rejected_path)
    scored = read_text_csv(result.scored_path)
    assert list(rejected.columns) == REJECTED_COLUMNS
    bad_rows = {int(r) for r in rejected["row"]}
    assert bad_rows == {*breaks, 20}
    assert len(scored) + len(bad_rows) == len(given) == result.rows_read
    assert (result.rows_scored, result.rows_rejected) == (23, 7)
    assert set(scored["row"].astype(int)).isdisjoint(bad_rows)
    found = {(int(r.row), r.field): (r.value, r.reason) for r in rejected.itertuples()}
    expected_fields = {(row, field) for row, (field, _) in breaks.items()}
    expected_fields |= {(20, "Neighborhood"), (20, "Gr_Liv_Area")}
    assert set(found) == expected_fields
    assert found[(3, "Gr_Liv_Area")] == ("-1200", "must be between 200 and 10,000 sq ft")
    assert found[(5, "Neighborhood")][0] == "Atlantis"
    assert found[(5, "Neighborhood")][1].startswith("is not one of the ")
    assert "North_Ames" not in found[(5, "Neighborhood")][1]  # the list is not repeated
    assert found[(8, "Lot_Area")] == ("twelve thousand", "must be a number")
    assert found[(11, "Year_Built")] == ("", "is required")
    value, reason = found[(14, "Year_Remod_Add")]
    assert value == breaks[14][1]
    built = given.loc[13, "Year_Built"]  # schema.fmt shows years as "1,990" today; either will do
    assert reason.replace(",", "") == f"must not be earlier than Year_Built ({built})"
    assert found[(17, "Total_Bsmt_SF")] == ("inf", "must be a finite number")
    assert found[(20, "Gr_Liv_Area")] == ("1,5OO", "must be a number")
    assert rejected["row"].astype(int).is_monotonic_increasing


# --- files that cannot be scored ----------------------------------------------------------


def _csv_text(frame: pd.DataFrame) -> str:
    return frame.to_csv(index=False)


def _latin1(frame: pd.DataFrame) -> bytes:
    frame = frame.copy()
    frame.loc[3, "Neighborhood"] = "Café"
    return _csv_text(frame).encode("latin-1")


def _duplicate_column(frame: pd.DataFrame) -> bytes:
    lines = _csv_text(frame).splitlines()
    lines = [lines[0] + ",Lot_Area"] + [line + ",1" for line in lines[1:]]
    return ("\n".join(lines) + "\n").encode()


def _too_many_fields(frame: pd.DataFrame) -> bytes:
    lines = _csv_text(frame).splitlines()
    lines[30] += ",surplus,cells"  # data row 30, line 31 of the file
    return ("\n".join(lines) + "\n").encode()


def _junk(frame: pd.DataFrame) -> bytes:
    return b"\x00\xff\x00" + np.random.default_rng(7).bytes(4096) + b"\x00" * 16


BROKEN = {
    "empty.csv": (lambda frame: b"", r"^empty\.csv is empty: expected a CSV with a header row$"),
    "no_area.csv": (
        lambda frame: _csv_text(frame.drop(columns="Gr_Liv_Area")).encode(),
        r"^no_area\.csv lacks required column\(s\) Gr_Liv_Area; it has house_id, ",
    ),
    "latin1.csv": (_latin1, r"^latin1\.csv is not UTF-8 text \(byte 0xe9 .*save it as 'CSV UTF-8'"),
    "junk.csv": (_junk, r"^junk\.csv is not UTF-8 text \(byte 0xff"),
    "junk.parquet": (_junk, r"^junk\.parquet is not a readable Parquet file: "),
    "houses.xlsx": (
        lambda frame: b"PK\x03\x04" + _csv_text(frame).encode(),
        r"^houses\.xlsx: unsupported file type \.xlsx; use \.csv or \.parquet$",
    ),
    "dupes.csv": (_duplicate_column, r"^dupes\.csv has duplicate column names: Lot_Area$"),
    "scored_before.csv": (
        lambda frame: _csv_text(frame.assign(predicted_price="1")).encode(),
        r"^scored_before\.csv already has column\(s\) predicted_price: is it an output file\?",
    ),
    "ragged.csv": (
        _too_many_fields,
        r"^ragged\.csv cannot be read as CSV: .*Expected 20 fields in line 31, saw 22",
    ),
}


@pytest.mark.parametrize("name", BROKEN)
def test_a_broken_file_raises_and_leaves_no_output(tmp_path, model, name):
    build, message = BROKEN[name]
    source = tmp_path / name
    source.write_bytes(build(houses(40)))
    out = tmp_path / "out"

    with pytest.raises(homevalue.BatchFileError, match=message):
        score(source, out, model, chunk_rows=7)  # ragged.csv fails after chunks were written

    assert everything_in(out) == []


def test_a_failed_run_leaves_an_earlier_output_untouched(tmp_path, model):
    source = write_csv(houses(20), tmp_path / "houses.csv")
    first = score(source, tmp_path / "out", model)
    before = first.scored_path.read_bytes(), first.rejected_path.read_bytes()
    source.write_text(source.read_text() + "1,2,3," * 10 + "\n")  # too many fields

    with pytest.raises(homevalue.BatchFileError, match="cannot be read as CSV"):
        score(source, tmp_path / "out", model, chunk_rows=7)

    assert (first.scored_path.read_bytes(), first.rejected_path.read_bytes()) == before
    assert everything_in(tmp_path / "out") == ["houses.rejected.csv", "houses.scored.csv"]


def test_a_crash_mid_file_leaves_no_output_and_no_temporaries(tmp_path, model, monkeypatch):
    source = write_csv(houses(40), tmp_path / "houses.csv")
    real_score_frame = batch.score_frame
    calls = []

    def failing_on_third_chunk(*args, **kwargs):
        calls.append(kwargs["first_row"])
        if len(calls) == 3:
            raise RuntimeError("disk on fire")
        return real_score_frame(*args, **kwargs)

    monkeypatch.setattr(batch, "score_frame", failing_on_third_chunk)

    with pytest.raises(RuntimeError, match="disk on fire"):
        score(source, tmp_path / "out", model, chunk_rows=7)

    assert calls == [1, 8, 15]
    assert everything_in(tmp_path / "out") == []


# --- formulas -----------------------------------------------------------------------------


def test_neutralise_formulas_prefixes_risky_text_only():
    frame = pd.DataFrame(
        {
            "text": ["=1+2", "+cmd", "-cmd", "@SUM(A1)", "\tx", "\rx", "-93.6", "+7", "ok", None],
            "number": [-1.5, 2.0, -3.0, 4.0, 5.0, 6.0, -93.6, 7.0, 8.0, 9.0],
        }
    )
    original = frame.copy()

    safe = neutralise_formulas(frame)

    assert safe["text"].iloc[:-1].tolist() == [
        "'=1+2",
        "'+cmd",
        "'-cmd",
        "'@SUM(A1)",
        "'\tx",
        "'\rx",
        "-93.6",
        "+7",
        "ok",
    ]
    assert pd.isna(safe["text"].iloc[-1])
    assert safe["number"].tolist() == original["number"].tolist()
    pd.testing.assert_frame_equal(frame, original)  # the input is not changed


def test_formula_cells_are_neutralised_in_scored_and_rejected_csv(tmp_path, model):
    given = houses(10)
    risky = ["=1+2", "+cmd", "-cmd|' /C calc'!A0", "@SUM(A1)", "\tx", "\rx"]
    harmless = ["-5", "a\rb", "", ""]  # a negative number; a "\r" inside a cell
    given["note"] = risky + harmless
    given.loc[0, ID] = '=HYPERLINK("http://x")'
    given.loc[8, "Gr_Liv_Area"] = "-1200"
    given.loc[9, "Neighborhood"] = '=HYPERLINK("http://evil")'
    source = tmp_path / "houses.csv"
    given.to_csv(source, index=False, lineterminator="\r\n")  # so that "\r" cells are quoted

    result = score(source, tmp_path / "out", model)

    scored = read_text_csv(result.scored_path)
    assert scored["row"].tolist() == [str(i) for i in range(1, 9)]
    assert scored["note"].tolist() == ["'" + v for v in risky] + harmless[:2]
    assert scored.loc[0, ID] == '\'=HYPERLINK("http://x")'
    assert scored["Longitude"].tolist() == given["Longitude"][:8].tolist()  # not prefixed
    assert scored["Longitude"].str.startswith("-93.").all()
    rejected = read_text_csv(result.rejected_path)
    assert rejected["row"].tolist() == ["9", "10"]
    values = rejected.set_index("field")["value"]
    assert values["Gr_Liv_Area"] == "-1200"
    assert values["Neighborhood"] == '\'=HYPERLINK("http://evil")'


# --- command line -------------------------------------------------------------------------


def test_labels_in_mixed_case_score_like_codes_and_come_out_as_codes(tmp_path, model):
    """One vocabulary: a file written with the form's labels, in any case and spelling,
    prices every row as the same file with codes does, and the output carries the codes."""
    given = houses(40)
    spelt = given.copy()
    for feature in model.schema.features:
        if not feature.is_category:
            continue
        labels = spelt[feature.name].map(feature.label_of)
        spellings = [str.lower, str.upper, lambda t: t.replace(" ", "_"), lambda t: t]
        spelt[feature.name] = [spellings[i % 4](label) for i, label in enumerate(labels)]
    assert (spelt["Neighborhood"] != given["Neighborhood"]).any()

    by_code = score(write_csv(given, tmp_path / "codes.csv"), tmp_path / "a", model)
    by_label = score(write_csv(spelt, tmp_path / "labels.csv"), tmp_path / "b", model)

    assert by_label.rows_scored == by_code.rows_scored == len(given)
    coded, labelled = read_text_csv(by_code.scored_path), read_text_csv(by_label.scored_path)
    pd.testing.assert_frame_equal(coded, labelled)  # prices, flags and the codes themselves


def test_a_bad_neighbourhood_names_the_nearest_values_and_not_the_whole_list(
    tmp_path, model, capsys
):
    given = houses(12)
    given.loc[2, "Neighborhood"] = "Nort Ames"  # row 3: a near miss
    given.loc[5, "Neighborhood"] = "Atlantis"  # row 6: nothing near
    given.loc[8, "Neighborhood"] = "Nort Ames"  # row 9: the same near miss again
    source = write_csv(given, tmp_path / "houses.csv")
    out = tmp_path / "out"

    assert cli.main(["batch", "score", str(source), "--out", str(out)]) == 0

    rejected = read_text_csv(out / "houses.rejected.csv")
    reasons = dict(zip(rejected["row"].astype(int), rejected["reason"], strict=True))
    assert set(reasons) == {3, 6, 9}
    assert 'did you mean "North Ames" (North_Ames)' in reasons[3]
    assert reasons[9] == reasons[3]
    assert "did you mean" not in reasons[6]
    categories = model.schema.by_name["Neighborhood"].categories
    for reason in reasons.values():  # a few names at most, never the 26
        assert sum(code in reason for code in categories) <= 3
    printed = capsys.readouterr().out
    assert printed.count(cli.ALLOWED_VALUES) == 1  # the full list is pointed to once


def test_batch_schema_lists_every_column_code_and_label(model, capsys):
    assert cli.main(["batch", "schema"]) == 0
    printed = capsys.readouterr().out
    for feature in model.schema.features:
        assert printed.count(f"{feature.name} ({feature.label}") == 1
        assert feature.help in printed
        for code, label in zip(feature.categories, feature.labels, strict=True):
            assert f"    {code}: {label}\n" in printed


def test_cli_score_prints_counts(tmp_path, capsys):
    given = houses(12)
    given.loc[4, "Neighborhood"] = "Atlantis"
    source = write_csv(given, tmp_path / "houses.csv")
    out = tmp_path / "out"

    code = cli.main(["batch", "score", str(source), "--out", str(out), "--chunk-rows", "5"])

    printed = capsys.readouterr()
    assert code == 0
    assert printed.out == (
        f"11 scored -> {out / 'houses.scored.csv'}\n1 rejected -> {out / 'houses.rejected.csv'}\n"
        "prices are in 2006-2010 dollars (the years of the sales the model learned from), "
        "not today's\n"
        f"{cli.ALLOWED_VALUES}\n"
    )
    assert len(read_text_csv(out / "houses.scored.csv")) == 11


def test_cli_score_of_a_bad_file_exits_1_with_a_message_and_no_traceback(tmp_path, capsys):
    source = write_csv(houses(3).drop(columns="Latitude"), tmp_path / "houses.csv")

    code = cli.main(["batch", "score", str(source), "--out", str(tmp_path / "out")])

    printed = capsys.readouterr()
    assert code == 1
    assert printed.out == ""
    assert printed.err.startswith("homevalue: houses.csv lacks required column(s) Latitude")
    assert "Traceback" not in printed.err
    assert everything_in(tmp_path / "out") == []


def test_progress_bar_shows_when_asked(tmp_path, model, capsys):
    source = write_csv(houses(5), tmp_path / "houses.csv")

    score_file(source, tmp_path / "out", model=model, progress=True)

    assert "rows" in capsys.readouterr().err


# --- limits: files too wide or too long to be honest ---------------------------------------


def test_a_wide_csv_is_refused_at_once_by_the_real_command(tmp_path):
    """The attack: 200 rows x 50,000 extra columns (20 MB) took 541 s and 2 GB to score."""
    source = write_wide_csv(tmp_path / "wide.csv", rows=200, extra_columns=50_000)
    out = tmp_path / "out"

    started = time.monotonic()
    finished = subprocess.run(
        homevalue_command("batch", "score", str(source), "--out", str(out)),
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=30,
    )
    elapsed = time.monotonic() - started

    assert finished.returncode == 1, finished.stderr
    assert finished.stdout == ""
    assert finished.stderr == (
        "homevalue: wide.csv has 50,020 columns; the limit is 500 "
        "(HOMEVALUE_BATCH_MAX_COLUMNS), and column 501 is 'x480'. Keep the model's inputs and "
        "the columns you need carried through (ids, addresses), or raise the limit\n"
    )
    assert everything_in(out) == []
    print(f"refused in {elapsed:.2f} s (process start and imports included)")


def test_columns_past_the_limit_are_refused_and_the_limit_is_configurable(
    tmp_path, model, monkeypatch
):
    at_limit = write_wide_csv(tmp_path / "at.csv", rows=5, extra_columns=480)  # 500 in all
    over = write_wide_csv(tmp_path / "over.csv", rows=5, extra_columns=481)

    assert score(at_limit, tmp_path / "out", model).rows_scored == 5
    with pytest.raises(homevalue.BatchFileError, match=r"^over\.csv has 501 columns; the limit"):
        score(over, tmp_path / "out2", model)
    assert everything_in(tmp_path / "out2") == []

    monkeypatch.setenv("HOMEVALUE_BATCH_MAX_COLUMNS", "22")
    assert score(write_wide_csv(tmp_path / "two.csv", 5, 2), tmp_path / "out3", model).rows_read
    with pytest.raises(
        homevalue.BatchFileError,
        match=r"^three\.csv has 23 columns; the limit is 22 \(HOMEVALUE_BATCH_MAX_COLUMNS\), "
        r"and column 23 is 'x2'\.",
    ):
        score(write_wide_csv(tmp_path / "three.csv", 5, 3), tmp_path / "out4", model)


def test_a_line_past_the_limit_is_refused_with_its_number(tmp_path, model):
    given = houses(40)
    given["note"] = "short"
    given.loc[29, "note"] = "y" * (2 * 2**20)  # data row 30, line 31 of the file: 2 MiB
    source = write_csv(given, tmp_path / "long.csv")

    with pytest.raises(
        homevalue.BatchFileError,
        match=r"^long\.csv: line 31 is longer than 1,048,576 bytes, the limit "
        r"\(HOMEVALUE_BATCH_MAX_LINE_BYTES\)",
    ):
        score(source, tmp_path / "out", model, chunk_rows=7)  # after chunks were written
    assert everything_in(tmp_path / "out") == []


@pytest.mark.parametrize(
    "content",
    [b"a" * (3 * 2**20), b"Neighborhood," + b"b" * (2**20) + b"\n1\n"],
    ids=["no line end at all", "one giant name"],
)
def test_a_header_line_past_the_limit_is_refused(tmp_path, model, content):
    source = tmp_path / "header.csv"
    source.write_bytes(content)

    with pytest.raises(homevalue.BatchFileError, match=r"^header\.csv: line 1 is longer than"):
        score(source, tmp_path / "out", model)
    assert everything_in(tmp_path / "out") == []


@pytest.mark.parametrize("line_end", ["\r", "\r\n"], ids=["old Mac", "Windows"])
def test_every_kind_of_line_end_counts_as_one_for_the_line_limit(tmp_path, model, line_end):
    given = pd.concat([houses(2_000)] * 5, ignore_index=True)  # ~1.2 MB: over the limit as one line
    source = tmp_path / "lines.csv"
    given.to_csv(source, index=False, lineterminator=line_end)

    assert score(source, tmp_path / "out", model).rows_scored == 10_000

    given.loc[6_999, ID] = "y" * (2**20 + 1)  # line 7,001
    given.to_csv(source, index=False, lineterminator=line_end)
    with pytest.raises(homevalue.BatchFileError, match=r"^lines\.csv: line 7001 is longer than"):
        score(source, tmp_path / "out2", model, chunk_rows=3_000)


class Trickle(io.RawIOBase):
    """Hands out a few bytes per read, so line ends fall across reads (even a "\r\n")."""

    def __init__(self, data: bytes, step: int):
        self.data, self.step = io.BytesIO(data), step

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        return self.data.readinto(memoryview(buffer)[: self.step])


@pytest.mark.parametrize("step", [1, 2, 3, 5, 64])
def test_the_line_guard_numbers_lines_as_a_reader_would_whatever_the_reads(step):
    text = b"ab\r\ncd\ref\nghij\r\nklm\r\r\n" + b"x" * 9 + b"\nok\n"  # line 7 is 9 bytes
    guard = batch._LineGuard(Trickle(text, step), batch.FileLimits(line_bytes=8), "t.csv")

    with pytest.raises(homevalue.BatchFileError, match=r"^t\.csv: line 7 is longer than 8 bytes"):
        while guard.read(step):
            pass

    relaxed = batch._LineGuard(Trickle(text, step), batch.FileLimits(line_bytes=9), "t.csv")
    assert b"".join(iter(lambda: relaxed.read(step), b"")) == text
    assert relaxed.line == 9  # 8 line ends read: the next line would be the 9th


def test_a_cell_past_the_limit_is_refused_with_its_row_and_column(tmp_path, model):
    given = houses(20)
    given["note"] = "fine"
    # 40,000 characters over 500 short lines: no line is long, the cell is.
    given.loc[11, "note"] = ("z" * 79 + "\n") * 500
    given.loc[3, "note"] = "w" * 32_767  # exactly at the limit: fine
    source = write_csv(given, tmp_path / "cell.csv")

    with pytest.raises(
        homevalue.BatchFileError,
        match=r"^cell\.csv: row 12, column 'note' holds 40,000 characters; the limit is 32,767 "
        r"\(HOMEVALUE_BATCH_MAX_CELL_CHARS\)",
    ):
        score(source, tmp_path / "out", model, chunk_rows=5)
    assert everything_in(tmp_path / "out") == []

    given.loc[11, "note"] = "fine again"
    scored = score(write_csv(given, tmp_path / "ok.csv"), tmp_path / "out", model, chunk_rows=5)
    assert scored.rows_scored == 20


def test_parquet_is_held_to_the_same_width_and_cell_limits(tmp_path, model):
    given = houses(12)
    wide = pd.concat([given, pd.DataFrame({f"x{i}": ["1"] * 12 for i in range(481)})], axis=1)
    wide.to_parquet(tmp_path / "wide.parquet", index=False)
    with pytest.raises(homevalue.BatchFileError, match=r"^wide\.parquet has 501 columns; the"):
        score(tmp_path / "wide.parquet", tmp_path / "out", model)

    given["note"] = "fine"
    given.loc[9, "note"] = "q" * 40_000
    given.to_parquet(tmp_path / "cell.parquet", index=False)
    with pytest.raises(
        homevalue.BatchFileError, match=r"^cell\.parquet: row 10, column 'note' holds 40,000"
    ):
        score(tmp_path / "cell.parquet", tmp_path / "out", model, chunk_rows=4)
    assert everything_in(tmp_path / "out") == []


# --- an output folder that cannot be written ----------------------------------------------


def test_an_output_folder_that_is_a_file_is_one_line_from_the_real_command(tmp_path):
    source = write_csv(houses(5), tmp_path / "houses.csv")
    (tmp_path / "results").write_text("not a folder")

    finished = subprocess.run(
        homevalue_command("batch", "score", str(source), "--out", str(tmp_path / "results")),
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )

    assert finished.returncode == 1
    assert finished.stderr == (
        f"homevalue: cannot write the outputs of houses.csv in {tmp_path / 'results'}: "
        "it is a file, not a folder. Nothing was written; free or fix that folder and run "
        "again\n"
    )
    assert everything_in(tmp_path) == ["houses.csv", "results"]


def unprivileged(command: list[str]) -> list[str]:
    """`command` run as nobody: root (as in these tests' containers) ignores permissions."""
    if os.geteuid() != 0:
        return command
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root and setpriv is not installed")
    return [setpriv, "--reuid=nobody", "--regid=nogroup", "--clear-groups", *command]


@pytest.fixture
def shared_tmp():
    """A folder outside pytest's private (0700) tmp tree, that nobody can traverse."""
    folder = Path(tempfile.mkdtemp(prefix="homevalue-test-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_a_read_only_output_folder_is_one_line_from_the_real_command(shared_tmp):
    source = write_csv(houses(5), shared_tmp / "houses.csv")
    read_only = shared_tmp / "results"
    read_only.mkdir(mode=0o555)

    finished = subprocess.run(
        unprivileged(homevalue_command("batch", "score", str(source), "--out", str(read_only))),
        capture_output=True,
        text=True,
        cwd=shared_tmp,
        timeout=60,
    )

    assert finished.returncode == 1, finished.stderr
    assert finished.stderr == (
        f"homevalue: cannot write the outputs of houses.csv in {read_only}: permission denied. "
        "Nothing was written; free or fix that folder and run again\n"
    )
    assert everything_in(read_only) == []


class FullDisk:
    """Files opened for writing under `folder` take `room` bytes, then fail like a full disk.

    Patched at the boundary every CSV write goes through (the built-in open), so the code
    under test meets the same OSError(ENOSPC) a real full disk raises from write().
    """

    def __init__(self, folder: Path, room: int):
        self.folder, self.room, self.real_open = folder.resolve(), room, builtins.open

    def open(self, file, mode="r", *args, **kwargs):
        handle = self.real_open(file, mode, *args, **kwargs)
        inside = isinstance(file, (str, os.PathLike)) and self.folder in Path(file).parents
        return self.Limited(handle, self) if inside and ("w" in mode or "a" in mode) else handle

    class Limited:
        def __init__(self, handle, disk):
            self._handle, self._disk = handle, disk

        def write(self, text):
            if len(text) > self._disk.room:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), self._handle.name)
            self._disk.room -= len(text)
            return self._handle.write(text)

        def __getattr__(self, name):
            return getattr(self._handle, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self._handle.close()


def test_a_full_disk_mid_file_leaves_no_output_and_says_which_folder(tmp_path, model, monkeypatch):
    out = tmp_path / "out"
    source = write_csv(houses(200), tmp_path / "houses.csv")
    earlier = score(write_csv(houses(3), tmp_path / "houses.csv"), out, model)
    before = earlier.scored_path.read_bytes()
    write_csv(houses(200), source)
    monkeypatch.setattr(builtins, "open", FullDisk(out, room=20_000).open)

    with pytest.raises(
        homevalue.HomevalueError,
        match=rf"^cannot write the outputs of houses\.csv in {re.escape(str(out))}: no space "
        r"left on device\. Nothing was written",
    ):
        score(source, out, model, chunk_rows=30)

    assert everything_in(out) == ["houses.rejected.csv", "houses.scored.csv"]  # no temporaries
    assert earlier.scored_path.read_bytes() == before
