"""`homevalue batch score` over many files, in one process and on Dask (homevalue.scaleout).

A real LocalCluster of 2 worker processes on loopback (free ports, no dashboard) scores the
holdout sales split into several files: the outputs must be the very bytes one process
writes, every row must be accounted once even when a worker is killed mid-file, and each
worker must load the model once.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from batch_helpers import everything_in, homevalue_command, read_text_csv

import homevalue
from homevalue import batchrun, cli, config, scaleout
from homevalue.batchrun import FileFailure, ScoreOptions
from homevalue.errors import BatchFileError, ClusterError

# Small chunks: each file is written in several appends, as a large file would be, and the
# big file of the kill test is long enough (22 chunks) to be caught half-written.
CHUNK_ROWS = 50
BAD_ROWS = {3: ("Gr_Liv_Area", "-5"), 7: ("Neighborhood", "Atlantis"), 10: ("Latitude", "")}


@pytest.fixture(scope="module")
def model() -> homevalue.Model:
    return homevalue.load_model()


@pytest.fixture(scope="module")
def client():
    """One cluster for the module (starting one costs seconds on a shared 2-core machine);
    closed with its workers at the end, whatever happened."""
    with scaleout.local_cluster(2) as client:
        yield client


def holdout() -> pd.DataFrame:
    """The holdout sales as text, with their recorded prices carried through as extra columns."""
    path = homevalue.load_model().path / config.HOLDOUT_PREDICTIONS
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def holdout_files(folder: Path, parts: int = 4) -> list[Path]:
    """The holdout split into `parts` files: CSV, the second with BAD_ROWS, the last Parquet."""
    folder.mkdir(parents=True, exist_ok=True)
    frame = holdout()
    files = []
    for number, rows in enumerate(np.array_split(np.arange(len(frame)), parts), start=1):
        part = frame.iloc[rows].reset_index(drop=True)
        if number == 2:
            for row, (field, value) in BAD_ROWS.items():
                part.loc[row - 1, field] = value
        if number == parts:
            path = folder / f"part{number}.parquet"
            part.to_parquet(path, index=False)
        else:
            path = folder / f"part{number}.csv"
            part.to_csv(path, index=False)
        files.append(path)
    return files


def outputs(folder: Path) -> dict[str, bytes]:
    """Every file in `folder`, hidden temporaries included, with its bytes."""
    return {name: (folder / name).read_bytes() for name in everything_in(folder)}


def counts(run: batchrun.RunResult) -> list[tuple[str, int, int]]:
    return [(r.source.name, r.rows_scored, r.rows_rejected) for r in run.files]


def worker_pids(client) -> set[int]:
    return set(client.run(os.getpid).values())


OPTIONS = ScoreOptions(chunk_rows=CHUNK_ROWS, threads=1)


# --- the same bytes wherever a file is scored ----------------------------------------------


def test_a_cluster_writes_the_bytes_one_process_writes_and_counts_alike(tmp_path, client, model):
    files = holdout_files(tmp_path / "in")

    here = batchrun.score_here(files, tmp_path / "here", model, OPTIONS, progress=False)
    there = scaleout.score_on_cluster(files, tmp_path / "there", client, model, OPTIONS)

    assert outputs(tmp_path / "there") == outputs(tmp_path / "here")
    assert len(outputs(tmp_path / "here")) == 2 * len(files)  # scored + rejected, nothing else
    assert counts(there) == counts(here)
    assert (there.rows_scored, there.rows_rejected) == (here.rows_scored, here.rows_rejected)
    assert here.rows_read == len(holdout())  # every row scored or rejected, once
    assert not here.failures and not there.failures
    rejected = read_text_csv(tmp_path / "there" / "part2.rejected.csv")
    assert set(rejected["row"].astype(int)) == set(BAD_ROWS)
    assert there.rows_rejected == here.rows_rejected >= len(BAD_ROWS)


def test_the_cli_on_an_existing_cluster_matches_the_cli_in_one_process(tmp_path, client, capsys):
    holdout_files(tmp_path / "in")
    address = client.scheduler.address

    assert cli.main(["batch", "score", str(tmp_path / "in"), "--out", str(tmp_path / "here")]) == 0
    printed_here = capsys.readouterr().out
    code = cli.main(
        [
            "batch",
            "score",
            str(tmp_path / "in"),
            "--out",
            str(tmp_path / "there"),
            "--cluster",
            address,
        ]
    )
    printed_there = capsys.readouterr()

    assert code == 0, printed_there.err
    assert outputs(tmp_path / "there") == outputs(tmp_path / "here")
    # The same summary, each file's line naming its own folder's outputs.
    assert printed_there.out == printed_here.replace(
        str(tmp_path / "here"), str((tmp_path / "there").absolute())
    )
    assert "4 files: " in printed_there.out
    assert printed_there.out.count(cli.ALLOWED_VALUES) == 1


def test_the_real_command_with_workers_starts_and_closes_its_own_cluster(tmp_path, model):
    files = holdout_files(tmp_path / "in")
    batchrun.score_here(files, tmp_path / "here", model, OPTIONS, progress=False)

    finished = subprocess.run(
        homevalue_command(
            "batch",
            "score",
            str(tmp_path / "in"),
            "--out",
            str(tmp_path / "there"),
            "--workers",
            "2",
            "--chunk-rows",
            str(CHUNK_ROWS),
        ),
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=180,
    )

    assert finished.returncode == 0, finished.stderr
    assert finished.stderr == ""  # no log lines from Dask: cron mails only what matters
    assert outputs(tmp_path / "there") == outputs(tmp_path / "here")
    assert "4 files: " in finished.stdout


def test_each_worker_loads_the_model_once_however_many_files_and_runs(tmp_path, client, model):
    files = holdout_files(tmp_path / "in", parts=6)

    for run in ("first", "second"):
        result = scaleout.score_on_cluster(files, tmp_path / run, client, model, OPTIONS)
        assert len(result.files) == 6

    # homevalue.model caches loaded models per process; its misses are the real loads.
    loads = client.run(lambda: __import__("homevalue.model").model._load_cached.cache_info().misses)
    assert sorted(loads.values()) == [1, 1], loads


# --- a worker that dies mid-file ----------------------------------------------------------


def test_a_worker_killed_mid_file_is_replaced_and_no_row_is_lost_or_doubled(
    tmp_path, client, model
):
    files = holdout_files(tmp_path / "in")
    # A file big enough to be caught half-written: the holdout twice over.
    big = tmp_path / "in" / "big.csv"
    pd.concat([holdout()] * 2).to_csv(big, index=False)
    files.insert(0, big)
    reference = batchrun.score_here(files, tmp_path / "here", model, OPTIONS, progress=False)
    out = tmp_path / "there"
    workers = worker_pids(client)
    runs: list = []
    running = threading.Thread(
        target=lambda: runs.append(scaleout.score_on_cluster(files, out, client, model, OPTIONS))
    )

    running.start()
    try:
        temporary = wait_for(lambda: next(out.glob(".big.scored.csv.*.tmp"), None), running)
        pid = int(temporary.name.split(".")[-2])
        assert pid in workers, f"{temporary.name} is not a worker's ({workers})"
        os.kill(pid, signal.SIGKILL)
        assert temporary.exists(), "the worker finished the file before it was killed"
    finally:
        running.join(timeout=120)
    assert not running.is_alive() and runs, "the run did not finish"

    run = runs[0]
    assert pid not in worker_pids(client)  # the killed worker is gone; its file went elsewhere
    assert not run.failures
    assert counts(run) == counts(reference)
    assert run.rows_read == reference.rows_read == 3 * len(holdout())
    assert outputs(out) == outputs(tmp_path / "here")  # whole, once, no temporary left


def wait_for(found, running: threading.Thread, seconds: float = 60.0):
    deadline = time.monotonic() + seconds
    while (value := found()) is None:
        assert running.is_alive(), "the run ended before the big file was seen half-written"
        assert time.monotonic() < deadline, "the big file was never seen half-written"
        time.sleep(0.005)
    return value


# --- what a run is given ------------------------------------------------------------------


def test_a_folder_or_a_glob_gives_its_data_files_and_skips_outputs_and_hidden_files(tmp_path):
    folder = tmp_path / "in"
    holdout_files(folder)
    for name in ("part1.scored.csv", "part1.rejected.csv", ".hidden.csv", "notes.txt", "x.part"):
        (folder / name).write_text("id\n1\n")

    from_folder = batchrun.input_files([folder])
    from_glob = batchrun.input_files([str(folder / "part*")])

    names = ["part1.csv", "part2.csv", "part3.csv", "part4.parquet"]
    assert [p.name for p in from_folder] == names
    assert from_glob == from_folder
    assert batchrun.input_files([folder, folder / "part1.csv"]) == from_folder  # each once


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ("missing.csv", "missing.csv: no such file or folder"),
        ("empty", "empty holds no file to score: expected .csv or .parquet files"),
        ("*.xlsx", "no .csv or .parquet file matches *.xlsx (1 other name(s) matched)"),
        ("nothing*.csv", "no .csv or .parquet file matches nothing*.csv\n"),
        ("fifo", "fifo is neither a file nor a folder"),
    ],
)
def test_paths_that_give_nothing_to_score_are_one_line_and_exit_1(
    tmp_path, monkeypatch, capsys, given, message
):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty").mkdir()
    (tmp_path / "sheet.xlsx").write_bytes(b"PK")
    os.mkfifo(tmp_path / "fifo")

    code = cli.main(["batch", "score", given, "--out", "out"])

    printed = capsys.readouterr()
    assert code == 1
    assert printed.err.startswith(f"homevalue: {message}")
    assert printed.err.count("\n") == 1 and "Traceback" not in printed.err
    assert printed.out == ""
    assert not (tmp_path / "out").exists()


def test_two_files_that_would_write_the_same_outputs_are_refused_before_any_work(tmp_path):
    for folder in ("a", "b"):
        holdout_files(tmp_path / folder, parts=2)

    with pytest.raises(BatchFileError, match=r"part1\.csv and .*part1\.csv would both write "):
        batchrun.check_outputs(
            batchrun.input_files([tmp_path / "a", tmp_path / "b"]), tmp_path / "out"
        )
    with pytest.raises(BatchFileError, match="is both an input of this run and the output of"):
        batchrun.check_outputs(
            [tmp_path / "a" / "part1.csv", tmp_path / "a" / "part1.scored.csv"], tmp_path / "a"
        )


def test_a_bad_file_fails_alone_and_the_others_are_scored(tmp_path, capsys):
    files = holdout_files(tmp_path / "in")
    pd.read_csv(files[0]).drop(columns="Latitude").to_csv(files[0], index=False)
    out = tmp_path / "out"

    code = cli.main(["batch", "score", str(tmp_path / "in"), "--out", str(out)])

    printed = capsys.readouterr()
    assert code == 1
    assert printed.err == (
        "homevalue: part1.csv lacks required column(s) Latitude; it has "
        f"{', '.join(pd.read_csv(files[0], nrows=0).columns)}. Required: "
        f"{', '.join(homevalue.load_model().schema.required)}\n"
    )
    assert "3 files: " in printed.out and "1 could not be scored" in printed.out
    assert [n for n in everything_in(out) if n.startswith("part1")] == []
    assert len(everything_in(out)) == 6


# --- a cluster that cannot be used --------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--cluster", "localhost:8786"], "--cluster 'localhost:8786' is not a Dask scheduler"),
        (["--workers", "0"], "--workers 0: give 1 to "),
        (["--threads-per-worker", "2"], "--threads-per-worker goes with --workers"),
        (["--cluster", "tcp://127.0.0.1:{port}"], "cannot reach the Dask scheduler at tcp://"),
    ],
)
def test_a_cluster_that_cannot_be_used_is_one_line_and_exit_1(
    tmp_path, monkeypatch, capsys, options, message
):
    monkeypatch.setenv("HOMEVALUE_DASK_CONNECT_SECONDS", "1")
    holdout_files(tmp_path / "in", parts=1)
    options = [o.format(port=free_port()) for o in options]

    given = ["batch", "score", str(tmp_path / "in"), "--out", str(tmp_path / "out"), *options]
    code = cli.main(given)

    printed = capsys.readouterr()
    assert code == 1
    assert printed.err.startswith(f"homevalue: {message}"), printed.err
    assert printed.err.count("\n") == 1 and "Traceback" not in printed.err
    assert printed.out == ""
    assert not (tmp_path / "out").exists()


def test_a_worker_that_cannot_see_a_file_stops_the_run_before_any_work(tmp_path, client, model):
    files = holdout_files(tmp_path / "in", parts=2)
    files.append(tmp_path / "elsewhere" / "part9.csv")  # listed here, absent for the workers

    with pytest.raises(ClusterError, match=r"worker tcp://127\.0\.0\.1:\d+ cannot see .*part9"):
        scaleout.score_on_cluster(files, tmp_path / "out", client, model, OPTIONS)
    assert everything_in(tmp_path / "out") == []


def test_a_worker_with_another_model_is_named_with_the_fix():
    fine = {"error": None, "unseen": None}
    reports = {
        "tcp://10.0.0.7:4001": {"identity": "model 1.1.0 (card aaa)", **fine},
        "tcp://10.0.0.8:4001": {"identity": "model 1.0.0 (card bbb)", **fine},
    }

    with pytest.raises(ClusterError) as refused:
        scaleout.check_workers(reports, "model 1.1.0 (card aaa)")

    assert str(refused.value) == (
        "worker tcp://10.0.0.8:4001 has model 1.0.0 (card bbb), this client model 1.1.0 "
        f"(card aaa): {scaleout.SAME_INSTALL}"
    )


def test_combining_results_of_different_models_is_refused(tmp_path, model):
    files = holdout_files(tmp_path / "in", parts=2)
    run = batchrun.score_here(files, tmp_path / "out", model, OPTIONS, progress=False)
    other = dataclasses.replace(run.files[1], model_version="0.9.0")

    with pytest.raises(homevalue.HomevalueError, match="priced by different models"):
        batchrun.combine_results([run.files[0], other])
    failure = FileFailure(files[0], "why")
    assert batchrun.combine_results([failure]).failures == (failure,)
