"""Drift monitoring: PSI's arithmetic, each run's profile and drift in the history, the
Monitoring page and `homevalue monitor` (cron's alert).

Expected figures are worked out by hand (PSI) or recomputed here from the run's own input
file and the card's bins with plain numpy, never copied from the code under test.
"""

from __future__ import annotations

import contextlib
import json
import math
import shutil
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import homevalue
from homevalue import cli, config, feedback
from homevalue.batch import score_file
from homevalue.drift import (
    OTHER,
    PRICE,
    Profile,
    bin_codes,
    drift,
    numeric_edges,
    profile_rows,
    psi,
    reference_of,
    sum_profiles,
)
from homevalue.inbox import BatchDirs, connect, record_upload, run_history, run_inbox
from homevalue.model import load_model, write_card_pin
from homevalue.monitor import parse_since, read_window
from homevalue.predict import score_frame
from homevalue.ui.batch import BatchPage
from homevalue.ui.monitoring import EMPTY_STATE, MonitoringPage

# --- PSI by hand ---------------------------------------------------------------------------


def test_psi_equals_the_hand_computed_sum():
    """Training 50/30/20, run 30/30/40:
    (0.3 - 0.5) ln(0.3/0.5) + 0 + (0.4 - 0.2) ln(0.4/0.2)
    = 0.2 x 0.5108256 + 0.2 x 0.6931472 = 0.1021651 + 0.1386294 = 0.2407946."""
    assert psi(np.array([50, 30, 20]), np.array([30, 30, 40])) == pytest.approx(0.2407946, 1e-6)
    # counts, not shares: the same shares from ten times the rows give the same PSI
    assert psi([500, 300, 200], [3, 3, 4]) == pytest.approx(0.2407946, 1e-6)


def test_an_empty_bin_counts_as_epsilon():
    """Training all in bin 0, run half and half: the empty training bin is 0.0001, so
    (0.5 - 1) ln(0.5/1) + (0.5 - 0.0001) ln(0.5/0.0001) = 0.3465736 + 4.2577449 = 4.6043185."""
    assert config.PSI_EPSILON == 1e-4
    assert psi([10, 0], [5, 5]) == pytest.approx(4.6043185, 1e-6)
    assert psi([10, 0], [10, 0]) == 0.0
    assert math.isnan(psi([10, 0], [0, 0]))  # a run without rows has no PSI


def test_thresholds_are_the_conventional_ones():
    assert (config.PSI_WATCH, config.PSI_ACT) == (0.10, 0.25)


def test_bins_are_one_per_value_for_small_counts_and_deciles_otherwise():
    assert numeric_edges(np.array([0, 1, 1, 2, 2, 2, 3])) == [1, 2, 3]
    values = np.arange(1, 101, dtype=float)
    edges = numeric_edges(values)
    assert edges == [10, 20, 30, 40, 50, 60, 70, 80, 90]
    # a tenth or more of the sales at the lowest value: no empty first bin
    tied = np.r_[np.zeros(30), np.arange(1, 71)]
    assert min(numeric_edges(tied)) > 0
    assert list(bin_codes(np.array([0, 2, np.nan, 7]), 3)) == [1, 0, 1, 2]


# --- the card's reference and profiles -----------------------------------------------------


@pytest.fixture(scope="module")
def reference(model):
    found = reference_of(model.card)
    assert found is not None, "model/ has no training distribution: run `make model`"
    return found


def test_profiles_of_parts_add_up_to_the_whole(reference, model):
    sales = pd.read_csv(model.path / config.REFERENCE_SALES)
    whole = score_frame(sales, model=model)
    prices = whole.scored[PRICE].to_numpy()
    parts = [
        profile_rows(reference, whole.inputs[s], prices[s])
        for s in (slice(0, 100), slice(100, 1000), slice(1000, None))
    ]
    total = sum_profiles(parts)
    assert total.rows == len(sales)
    one = profile_rows(reference, whole.inputs, prices)
    for name in reference.names:
        assert (total.counts[name] == one.counts[name]).all(), name
    assert Profile.from_json(total.to_json()).counts.keys() == total.counts.keys()


# --- a run's stored drift is its input's --------------------------------------------------


def sample_file(path: Path, sales: pd.DataFrame, rows: int, seed: int, **shift) -> Path:
    """`rows` reference sales (no id or sale columns), some fields scaled by `shift`, and
    two rows the batch job must reject."""
    frame = sales.sample(rows, random_state=seed, replace=rows > len(sales))
    frame = frame.drop(columns=["Sale_ID", "Sale_Price", "Year_Sold", "Mo_Sold"])
    for name, factor in shift.items():
        frame[name] = (frame[name] * factor).round().clip(upper=9_999).astype(int)
    frame = frame.astype(object)
    frame.iloc[0, frame.columns.get_loc("Gr_Liv_Area")] = "huge"
    frame.iloc[1, frame.columns.get_loc("Neighborhood")] = "Atlantis"
    frame.to_csv(path, index=False)
    return path


def expected_counts(scored: pd.DataFrame, card: dict) -> dict[str, np.ndarray]:
    """The histograms of a scored file's rows, from the card's bins, with plain numpy."""
    stored = card["training_distribution"]
    counts = {}
    for name, spec in [*stored["features"].items(), (PRICE, stored[PRICE])]:
        column = scored[name]
        if spec["kind"] == "category":
            index = {level: i for i, level in enumerate(spec["levels"])}
            codes = column.map(lambda v, index=index: index.get(v, len(index)))
            counts[name] = np.bincount(codes, minlength=len(index) + 1)
        else:
            values = pd.to_numeric(column).to_numpy(float)
            edges = np.array(spec["edges"])
            inner = zip(edges[:-1], edges[1:], strict=True)
            counts[name] = np.array(
                [np.sum(values < edges[0])]
                + [np.sum((values >= low) & (values < high)) for low, high in inner]
                + [np.sum(values >= edges[-1])]
            )
    return counts


def stored_drift(history: Path) -> pd.DataFrame:
    with contextlib.closing(sqlite3.connect(history)) as db:
        return pd.read_sql_query("SELECT run_id, feature, psi FROM drift", db)


def test_an_inbox_runs_stored_drift_is_its_inputs(tmp_path, model, reference):
    sales = pd.read_csv(model.path / config.REFERENCE_SALES)
    dirs = BatchDirs(tmp_path / "batch" / "inbox")
    dirs.inbox.mkdir(parents=True)
    sample_file(dirs.inbox / "week.csv", sales, 400, seed=1)
    [summary] = run_inbox(dirs.inbox, model=model, progress=False)
    assert summary["status"] == "ok" and summary["rows_rejected"] == 2
    scored = pd.read_csv(summary["output"], dtype=str, keep_default_na=False)
    expected = expected_counts(scored, model.card)
    stored = stored_drift(dirs.history).set_index("feature")["psi"]
    assert set(stored.index) == set(reference.names)
    for histogram in reference:
        by_hand = psi(histogram.counts, expected[histogram.name])
        assert stored[histogram.name] == pytest.approx(by_hand, abs=1e-12), histogram.name
    with contextlib.closing(sqlite3.connect(dirs.history)) as db:
        (rows,) = db.execute("SELECT rows FROM profiles").fetchone()
    assert rows == len(scored) == 398


def test_a_command_line_run_is_recorded_with_its_drift_chunk_by_chunk(tmp_path, model):
    sales = pd.read_csv(model.path / config.REFERENCE_SALES)
    source = sample_file(tmp_path / "listings.csv", sales, 250, seed=2)
    out = tmp_path / "out"
    argv = ["batch", "score", str(source), "--out", str(out), "--chunk-rows", "17"]
    assert cli.main(argv) == 0
    history = BatchDirs(config.batch_inbox()).history
    runs = run_history(history)
    assert list(runs["source"]) == ["cli"] and list(runs["rows_scored"]) == [248]
    whole = score_file(source, tmp_path / "whole", model=model, chunk_rows=10_000)
    run_id = int(runs["id"].iloc[0])
    window = read_window(history, None, reference_of(model.card))
    assert window.psi[run_id] == pytest.approx(drift(reference_of(model.card), whole.profile).psi)


def test_an_upload_on_the_batch_page_is_recorded_with_its_drift(tmp_path, model):
    sales = pd.read_csv(model.path / config.REFERENCE_SALES)
    source = sample_file(tmp_path / "upload.csv", sales, 120, seed=3)
    page = BatchPage(model, inbox=tmp_path / "batch" / "inbox")
    page.score("upload.csv", source.read_bytes(), source="page")
    window = read_window(page.dirs.history, None, reference_of(model.card))
    assert list(window.runs["source"]) == ["page"]
    assert window.pooled.rows == 118 and len(window.psi) == 1


def test_an_older_history_without_drift_is_read_and_then_upgraded(tmp_path, model):
    history = tmp_path / "history.sqlite"
    with contextlib.closing(sqlite3.connect(history)) as db:
        db.execute(
            "CREATE TABLE runs (id INTEGER PRIMARY KEY AUTOINCREMENT, started_at TEXT NOT NULL, "
            "finished_at TEXT, file TEXT NOT NULL, sha256 TEXT NOT NULL, rows_scored INTEGER, "
            "rows_rejected INTEGER, status TEXT NOT NULL, error TEXT, output TEXT, "
            "rejected_output TEXT, model_version TEXT, pid INTEGER)"
        )
        db.execute(
            "INSERT INTO runs (started_at, file, sha256, rows_scored, rows_rejected, status) "
            "VALUES ('2026-11-01T10:00:00.000000Z', 'old.csv', 'abc', 90, 10, 'ok')"
        )
        db.commit()
    window = read_window(history, None, reference_of(model.card))
    assert window.rows_scored == 90 and window.rejection_rate == pytest.approx(0.1)
    assert window.pooled is None and list(window.runs["source"]) == ["inbox"]
    with contextlib.closing(connect(history)) as db:  # the next run adds the tables
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"runs", "profiles", "drift"} <= tables


# --- `homevalue monitor` ---------------------------------------------------------------------


def test_a_shifted_file_crosses_the_threshold_and_monitor_exits_non_zero(tmp_path, model, capsys):
    sales = pd.read_csv(model.path / config.REFERENCE_SALES)
    like_training = sample_file(tmp_path / "monday.csv", sales, 800, seed=4)
    assert cli.main(["batch", "score", str(like_training), "--out", str(tmp_path)]) == 0
    capsys.readouterr()
    assert cli.main(["monitor", "--since", "1d"]) == 0, capsys.readouterr().out
    bigger = sample_file(tmp_path / "tuesday.csv", sales, 800, seed=5, Gr_Liv_Area=1.6)
    assert cli.main(["batch", "score", str(bigger), "--out", str(tmp_path)]) == 0
    capsys.readouterr()
    assert cli.main(["monitor", "--since", "1d"]) == config.EXIT_DRIFT == 3
    out = capsys.readouterr().out
    assert "act: " in out and "Gr_Liv_Area" in out.split("act: ")[1].splitlines()[0]
    assert "1,596 scored" in out  # both files' valid rows, pooled
    assert f"exit {config.EXIT_DRIFT}" in out


@pytest.mark.parametrize("since", ["7x", "yesterday", "0d", "2099-01-01", "-3d"])
def test_monitor_refuses_a_bad_period_with_a_clear_message(since, capsys):
    with pytest.raises(SystemExit) as stopped:
        cli.main(["monitor", "--since", since])
    assert stopped.value.code == 2
    assert "argument --since" in capsys.readouterr().err


def test_periods_are_spans_dates_or_all():
    now = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    assert parse_since("7d", now) == now - timedelta(days=7)
    assert parse_since("36h", now) == now - timedelta(hours=36)
    assert parse_since("2w", now) == now - timedelta(weeks=2)
    assert parse_since("2026-11-23", now) == datetime(2026, 11, 23, tzinfo=UTC)
    assert parse_since("all", now) is None


def test_monitor_with_no_history_says_so_and_exits_zero(capsys):
    assert cli.main(["monitor"]) == 0
    assert "no batch runs recorded" in capsys.readouterr().out


# --- the page ---------------------------------------------------------------------------------


def test_the_page_without_history_shows_its_empty_state(tmp_path):
    page = MonitoringPage(inbox=tmp_path / "batch" / "inbox")
    assert EMPTY_STATE.split(".")[0] in page.volume_html.value
    assert page.volume_box.children == ()  # no chart: bqplot would draw it 0 x 0
    assert "no profiled rows" in page.drift_html.value.lower()
    assert "inputs and the predicted price" in repr(page.drift)
    assert "no sale price has been reported" in page.feedback_html.value.lower()


def test_the_page_and_monitor_show_accuracy_on_reported_sales(tmp_path, model, capsys):
    """A sale reported for this model appears on the page and in `homevalue monitor`."""
    house = pd.read_csv(model.path / config.REFERENCE_SALES).iloc[0]
    record = {name: house[name] for name in model.schema.names}
    priced = homevalue.predict_one(record, model=model)
    sale = feedback.check_sale(round(priced.price * 1.1), 2009, 6, card=model.card)
    feedback.record(priced, sale, source="api", client="api:test")
    page = MonitoringPage(inbox=tmp_path / "batch" / "inbox")
    assert "1 sale" in page.feedback_html.value
    assert cli.main(["monitor"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("accuracy"))
    assert "1 reported sales, median error 9." in line, line


def test_the_page_with_history_shows_volume_drift_and_prices(tmp_path, model, reference):
    sales = pd.read_csv(model.path / config.REFERENCE_SALES)
    history = BatchDirs(tmp_path / "batch" / "inbox").history
    for seed, shift in ((6, 1.0), (7, 1.6)):
        source = sample_file(tmp_path / f"f{seed}.csv", sales, 600, seed=seed, Gr_Liv_Area=shift)
        result = score_file(source, tmp_path / "out", model=model)
        record_upload(
            history,
            file=source.name,
            sha256=str(seed),
            status="ok",
            started_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            rows_scored=result.rows_scored,
            rows_rejected=result.rows_rejected,
            source="cli",
            profile=result.profile,
            card=model.card,
        )
    page = MonitoringPage(inbox=history.parent / "inbox")
    grid = page.drift_html.value
    assert grid.count("<tr>") == len(reference.names) + 1  # the header and one per input
    assert "hv-drift-act" in grid and "Living area" in grid
    first_row = grid.split("<tbody><tr>")[1].split("</tr>")[0]
    assert "Living area" in first_row  # worst first
    assert "f6.csv" in page.runs_html.value and "f7.csv" in page.runs_html.value
    assert "1,196 scored" in page.volume_html.value
    period, training = (mark.y for mark in page.price_chart.marks)
    assert period.sum() == pytest.approx(1) and training.sum() == pytest.approx(1)
    assert len(period) == len(training) == reference.price.bins
    assert page.volume_box.children == (page.volume_legend, page.volume_chart)
    assert "Scored" in page.volume_legend.value and "Rejected" in page.volume_legend.value
    assert page.volume_chart.marks[0].padding > 0.5  # two days: narrow bars, not a wall
    # the text forms (what nbval compares) state no live figure
    assert "1,196" not in repr(page.overview) + repr(page.drift) + repr(page.prices)


def test_the_page_says_so_when_the_history_cannot_be_read(tmp_path):
    history = BatchDirs(tmp_path / "batch" / "inbox").history
    history.parent.mkdir(parents=True)
    history.write_bytes(b"not a database at all, just text" * 10)
    page = MonitoringPage(inbox=history.parent / "inbox")
    assert "could not be read" in page.status.value


def test_other_model_profiles_are_not_pooled(tmp_path, model, reference):
    history = tmp_path / "history.sqlite"
    alien = Profile("0000000000000000", reference.empty_profile().counts)
    alien.counts[PRICE][0] = 5
    with contextlib.closing(connect(history)) as db:
        db.execute(
            "INSERT INTO runs (id, started_at, file, sha256, status, rows_scored, rows_rejected) "
            "VALUES (1, '2026-11-29T00:00:00.000000Z', 'a', 'x', 'ok', 5, 0)"
        )
        db.execute("INSERT INTO profiles VALUES (1, ?, 5, ?)", (alien.reference, alien.to_json()))
    window = read_window(history, None, reference)
    assert window.pooled is None and window.other_model_runs == 1
    assert OTHER == "other/missing"


def test_a_card_without_a_training_distribution_is_said_not_a_failure(tmp_path, model):
    """A model trained before drift was measured: scoring goes on without a profile, and
    the page and `homevalue monitor` say drift is not measured."""
    folder = tmp_path / "old-model"
    shutil.copytree(model.path, folder)
    card = json.loads((folder / config.CARD_JSON).read_text())
    del card["training_distribution"]
    (folder / config.CARD_JSON).write_text(json.dumps(card))
    write_card_pin(folder)
    page = MonitoringPage(folder, inbox=tmp_path / "batch" / "inbox")
    assert "not measured" in page.drift_html.value and "not measured" in repr(page.drift)
    assert page.price_box.children == ()
    sales = pd.read_csv(model.path / config.REFERENCE_SALES)
    source = sample_file(tmp_path / "f.csv", sales, 30, seed=9)
    result = score_file(source, tmp_path / "out", model=load_model(folder))
    assert result.profile is None and result.rows_scored == 28
