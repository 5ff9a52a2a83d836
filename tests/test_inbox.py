"""The cron job `homevalue batch inbox`: each file scored once, nothing lost, no overlap,
recovery after a crash, a history of runs, and silence on stderr when nobody watches."""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest
from batch_helpers import (
    everything_in,
    homevalue_command,
    houses,
    read_text_csv,
    reference_text,
    write_csv,
    write_wide_csv,
)

import homevalue
from homevalue import cli, config
from homevalue.errors import BatchFileError
from homevalue.inbox import (
    BatchDirs,
    InboxBusy,
    exclusive_lock,
    now,
    record_upload,
    run_history,
    run_inbox,
)
from homevalue.model import sha256_file


@pytest.fixture(scope="module")
def model() -> homevalue.Model:
    return homevalue.load_model()


@pytest.fixture
def dirs(tmp_path) -> BatchDirs:
    dirs = BatchDirs(tmp_path / "batch" / "inbox")
    dirs.inbox.mkdir(parents=True)
    return dirs


def run(dirs: BatchDirs, model) -> list[dict]:
    return run_inbox(dirs.inbox, model=model, progress=False)


def cli_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "homevalue.cli", "batch", *args]


def with_bad_rows(n: int, bad: int) -> pd.DataFrame:
    frame = houses(n)
    frame.loc[: bad - 1, "Gr_Liv_Area"] = "-1"
    return frame


# --- one run, then the next ---------------------------------------------------------------


def test_new_files_are_scored_archived_and_recorded(dirs, model):
    write_csv(with_bad_rows(20, 2), dirs.inbox / "a.csv")
    pd.read_csv(write_csv(houses(7), dirs.root / "b.csv"), dtype={"house_id": str}).to_parquet(
        dirs.inbox / "b.parquet", index=False
    )

    summaries = run(dirs, model)

    assert [(s["file"], s["status"]) for s in summaries] == [("a.csv", "ok"), ("b.parquet", "ok")]
    assert [(s["rows_scored"], s["rows_rejected"]) for s in summaries] == [(18, 2), (7, 0)]
    assert everything_in(dirs.inbox) == []
    assert everything_in(dirs.archive) == ["a.csv", "b.parquet"]
    assert everything_in(dirs.outbox) == [
        "a.run1.rejected.csv",
        "a.run1.scored.csv",
        "b.run2.rejected.csv",
        "b.run2.scored.parquet",
    ]
    assert len(read_text_csv(dirs.outbox / "a.run1.scored.csv")) == 18
    assert len(read_text_csv(dirs.outbox / "a.run1.rejected.csv")) == 2
    assert pd.read_parquet(dirs.outbox / "b.run2.scored.parquet")["house_id"].iloc[6] == "007"
    history = run_history(dirs.history).set_index("file")
    assert history["status"].to_dict() == {"b.parquet": "ok", "a.csv": "ok"}
    assert history.loc["a.csv", ["rows_scored", "rows_rejected"]].tolist() == [18, 2]
    assert history.loc["b.parquet", ["rows_scored", "rows_rejected"]].tolist() == [7, 0]
    assert history.loc["a.csv", "output"] == str(dirs.outbox / "a.run1.scored.csv")
    assert (history["model_version"] == model.version).all()
    assert history["finished_at"].notna().all()


def test_a_second_run_with_nothing_new_does_nothing(dirs, model):
    write_csv(houses(5), dirs.inbox / "a.csv")
    run(dirs, model)
    outputs = {name: (dirs.outbox / name).read_bytes() for name in everything_in(dirs.outbox)}

    assert run(dirs, model) == []

    assert {n: (dirs.outbox / n).read_bytes() for n in everything_in(dirs.outbox)} == outputs
    assert everything_in(dirs.archive) == ["a.csv"]
    assert len(run_history(dirs.history)) == 1


def test_the_same_content_under_another_name_is_skipped_and_archived(dirs, model):
    source = write_csv(houses(5), dirs.inbox / "monday.csv")
    content = source.read_bytes()
    run(dirs, model)
    outputs = everything_in(dirs.outbox)
    (dirs.inbox / "tuesday.csv").write_bytes(content)

    summaries = run(dirs, model)

    assert [(s["file"], s["status"]) for s in summaries] == [("tuesday.csv", "skipped")]
    assert summaries[0]["error"] == "same content as run 1"
    assert everything_in(dirs.outbox) == outputs
    assert everything_in(dirs.inbox) == []
    assert everything_in(dirs.archive) == ["monday.csv", "tuesday.csv"]
    latest = run_history(dirs.history).iloc[0]
    assert (latest["file"], latest["status"]) == ("tuesday.csv", "skipped")
    assert latest["error"].startswith("same content as run 1 (monday.csv)")


def test_a_new_file_with_an_archived_name_is_scored_and_both_inputs_kept(dirs, model):
    write_csv(houses(5), dirs.inbox / "daily.csv")
    run(dirs, model)
    write_csv(houses(6), dirs.inbox / "daily.csv")

    [summary] = run(dirs, model)

    assert (summary["status"], summary["rows_scored"]) == ("ok", 6)
    archived = everything_in(dirs.archive)
    assert len(archived) == 2 and "daily.csv" in archived
    assert sorted(len(read_text_csv(dirs.archive / name)) for name in archived) == [5, 6]
    assert "daily.run2.scored.csv" in everything_in(dirs.outbox)


def test_partial_and_hidden_files_are_left_alone(dirs, model):
    text = houses(3).to_csv(index=False)
    waiting = ["big.csv.part", ".hidden.csv", "upload.csv.tmp", "x.csv.crdownload"]
    for name in waiting:
        (dirs.inbox / name).write_text(text)

    assert run(dirs, model) == []

    assert everything_in(dirs.inbox) == sorted(waiting)
    assert everything_in(dirs.outbox) == []
    assert run_history(dirs.history).empty


def test_a_bad_file_goes_to_failed_with_the_reason_and_the_rest_still_runs(dirs, model):
    write_csv(houses(4).drop(columns="Latitude"), dirs.inbox / "a_bad.csv")
    write_csv(houses(4), dirs.inbox / "b_good.csv")

    summaries = run(dirs, model)

    assert [(s["file"], s["status"]) for s in summaries] == [
        ("a_bad.csv", "failed"),
        ("b_good.csv", "ok"),
    ]
    assert "lacks required column(s) Latitude" in summaries[0]["error"]
    assert everything_in(dirs.failed) == ["a_bad.csv", "a_bad.csv.error.txt"]
    reason = (dirs.failed / "a_bad.csv.error.txt").read_text()
    assert reason.startswith("a_bad.csv lacks required column(s) Latitude")
    assert everything_in(dirs.inbox) == []
    assert everything_in(dirs.archive) == ["b_good.csv"]
    assert everything_in(dirs.outbox) == ["b_good.run2.rejected.csv", "b_good.run2.scored.csv"]
    history = run_history(dirs.history).set_index("file")
    assert history.loc["a_bad.csv", "status"] == "failed"
    assert "Latitude" in history.loc["a_bad.csv", "error"]


def test_cli_inbox_prints_one_line_per_file_and_exits_1_when_a_file_failed(dirs, capsys):
    write_csv(with_bad_rows(6, 1), dirs.inbox / "good.csv")
    (dirs.inbox / "bad.csv").write_bytes(b"")

    code = cli.main(["batch", "inbox", "--inbox", str(dirs.inbox)])

    printed = capsys.readouterr()
    assert code == 1
    assert printed.out.splitlines() == [
        "bad.csv: failed: bad.csv is empty: expected a CSV with a header row",
        f"good.csv: 5 scored, 1 rejected -> {dirs.outbox / 'good.run2.scored.csv'}"
        f" ({config.BATCH_SCHEMA_HINT})",
    ]
    assert printed.err == ""
    assert everything_in(dirs.failed) == ["bad.csv", "bad.csv.error.txt"]

    assert cli.main(["batch", "inbox", "--inbox", str(dirs.inbox)]) == 0
    assert capsys.readouterr().out == ""


# --- no overlap ---------------------------------------------------------------------------


def test_a_run_while_another_holds_the_lock_does_nothing(dirs, model, capsys):
    write_csv(houses(3), dirs.inbox / "a.csv")

    with exclusive_lock(dirs.lock):
        with pytest.raises(InboxBusy, match=r"another inbox run is in progress \(pid \d+ since"):
            run(dirs, model)
        code = cli.main(["batch", "inbox", "--inbox", str(dirs.inbox)])

    printed = capsys.readouterr()
    assert code == 75
    assert printed.err.startswith(f"homevalue: another inbox run is in progress (pid {os.getpid()}")
    assert printed.err.rstrip().endswith("this one did nothing")
    assert "Traceback" not in printed.err
    assert everything_in(dirs.inbox) == ["a.csv"]
    assert everything_in(dirs.outbox) == everything_in(dirs.archive) == []
    assert run_history(dirs.history).empty
    assert run(dirs, model)[0]["status"] == "ok"  # the lock is free again


def test_a_lock_held_by_another_process_is_respected(dirs, model):
    holder = textwrap.dedent(
        f"""
        import fcntl, sys, time
        handle = open({str(dirs.lock)!r}, "a+")
        fcntl.flock(handle, fcntl.LOCK_EX)
        handle.write("pid of the other run\\n"); handle.flush()
        print("locked", flush=True)
        time.sleep(60)
        """
    )
    write_csv(houses(3), dirs.inbox / "a.csv")
    process = subprocess.Popen([sys.executable, "-c", holder], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline() == "locked\n"
        with pytest.raises(InboxBusy, match=r"\(pid of the other run\)"):
            run(dirs, model)
    finally:
        process.kill()
        process.wait()
        process.stdout.close()
    assert everything_in(dirs.inbox) == ["a.csv"]
    assert run(dirs, model)[0]["status"] == "ok"  # the kernel let go when the holder died


# --- a crash mid-run ----------------------------------------------------------------------


@pytest.mark.slow
def test_a_killed_run_leaves_no_output_and_the_next_run_recovers(dirs, model, tmp_path):
    sales = reference_text()
    copies = 113  # ~300k rows: three chunks, so the job is killed mid-file
    body = sales.to_csv(index=False).split("\n", 1)[1]
    source = dirs.inbox / "big.csv"
    source.write_text(",".join(sales.columns) + "\n" + body * copies)
    total = len(sales) * copies
    categories = model.schema.by_name["Neighborhood"].categories
    unknown = int((~sales["Neighborhood"].isin(categories)).sum()) * copies
    log = (tmp_path / "job.log").open("w")

    job = subprocess.Popen(
        cli_command("inbox", "--inbox", str(dirs.inbox)), stdout=log, stderr=log, cwd=tmp_path
    )
    try:
        deadline = time.monotonic() + 30
        while not list(dirs.outbox.glob(".*.tmp")):
            assert job.poll() is None, "the job finished before it could be killed"
            assert time.monotonic() < deadline, "no temporary output appeared"
            time.sleep(0.02)
        job.send_signal(signal.SIGKILL)
    finally:
        job.kill()
        job.wait()
        log.close()

    assert job.returncode == -signal.SIGKILL
    assert [n for n in everything_in(dirs.outbox) if not n.startswith(".")] == []
    assert everything_in(dirs.inbox) == ["big.csv"]
    assert everything_in(dirs.archive) == []
    assert run_history(dirs.history)["status"].tolist() == ["running"]

    [summary] = run(dirs, model)

    assert summary["status"] == "ok"
    assert summary["rows_scored"] + summary["rows_rejected"] == total
    assert summary["rows_rejected"] == unknown
    history = run_history(dirs.history)
    assert history["status"].tolist() == ["ok", "interrupted"]
    assert "stopped before finishing" in history["error"].iloc[1]
    assert everything_in(dirs.outbox) == ["big.run2.rejected.csv", "big.run2.scored.csv"]
    scored_rows = pd.read_csv(dirs.outbox / "big.run2.scored.csv", usecols=["row"])["row"]
    rejected_rows = pd.read_csv(dirs.outbox / "big.run2.rejected.csv", usecols=["row"])["row"]
    assert len(scored_rows) == total - unknown
    assert sorted({*scored_rows, *rejected_rows}) == list(range(1, total + 1))
    assert everything_in(dirs.inbox) == []
    assert everything_in(dirs.archive) == ["big.csv"]


# --- history and cron ---------------------------------------------------------------------


OLD_SCHEMA = """
CREATE TABLE runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT, started_at TEXT NOT NULL, finished_at TEXT,
    file TEXT NOT NULL, sha256 TEXT NOT NULL, rows_scored INTEGER, rows_rejected INTEGER,
    status TEXT NOT NULL, error TEXT, output TEXT, rejected_output TEXT, model_version TEXT,
    pid INTEGER
);
INSERT INTO runs (started_at, file, sha256, status, rows_scored, rows_rejected)
VALUES ('2026-01-05T02:00:00.000000Z', 'old.csv', 'abc', 'ok', 3, 1);
"""


def test_a_history_from_before_sources_is_read_and_then_extended(dirs, model):
    """Histories written before runs had a source stay readable (their runs were the inbox's),
    and the first writer adds the column without losing a row."""
    with contextlib.closing(sqlite3.connect(dirs.history)) as db:
        db.executescript(OLD_SCHEMA)

    before = run_history(dirs.history)
    assert before[["file", "source"]].values.tolist() == [["old.csv", "inbox"]]

    record_upload(
        dirs.history,
        file="mine.csv",
        sha256="def",
        status="ok",
        started_at=now(),
        rows_scored=2,
        rows_rejected=0,
    )
    write_csv(houses(4), dirs.inbox / "new.csv")
    run(dirs, model)

    history = run_history(dirs.history)
    assert history[["file", "source"]].values.tolist() == [
        ["new.csv", "inbox"],
        ["mine.csv", "page"],
        ["old.csv", "inbox"],
    ]


def test_a_page_upload_of_the_same_content_does_not_stop_the_inbox_scoring_it(dirs, model):
    """A page upload's outputs went to its viewer: the inbox must still write its own."""
    path = write_csv(houses(5), dirs.inbox / "monday.csv")
    record_upload(
        dirs.history,
        file="monday.csv",
        sha256=sha256_file(path),
        status="ok",
        started_at=now(),
        rows_scored=5,
        rows_rejected=0,
    )

    (summary,) = run(dirs, model)

    assert summary["status"] == "ok" and Path(summary["output"]).exists()


def test_run_history_is_newest_first(dirs, model):
    assert run_history(dirs.history).empty
    for name in ["first.csv", "second.csv", "third.csv"]:
        write_csv(houses(3 + len(name)), dirs.inbox / name)
        run(dirs, model)

    history = run_history(dirs.history)

    assert history["file"].tolist() == ["third.csv", "second.csv", "first.csv"]
    assert history["id"].tolist() == [3, 2, 1]
    assert history["started_at"].is_monotonic_decreasing
    assert run_history(dirs.history, limit=2)["file"].tolist() == ["third.csv", "second.csv"]


def test_cli_history_prints_the_runs(dirs, model, capsys):
    assert cli.main(["batch", "history", "--inbox", str(dirs.inbox)]) == 0
    assert capsys.readouterr().out == f"no runs recorded in {dirs.history}\n"
    write_csv(houses(4), dirs.inbox / "first.csv")
    (dirs.inbox / "second.csv").write_bytes(b"")
    run(dirs, model)

    assert cli.main(["batch", "history", "--inbox", str(dirs.inbox)]) == 0

    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:5] == ["id", "started_at", "finished_at", "file", "status"]
    assert "second.csv" in lines[1] and "failed" in lines[1]
    assert "first.csv" in lines[2] and " ok " in lines[2]
    assert len(lines) == 3


def test_the_cron_job_is_quiet_on_stderr_without_a_terminal(dirs, tmp_path):
    write_csv(with_bad_rows(30, 3), dirs.inbox / "a.csv")

    finished = subprocess.run(
        cli_command("inbox", "--inbox", str(dirs.inbox)),
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )

    assert finished.returncode == 0, finished.stderr
    assert finished.stderr == ""  # no progress bar, no warnings: cron mails whatever appears
    assert finished.stdout == (
        f"a.csv: 27 scored, 3 rejected -> {dirs.outbox / 'a.run1.scored.csv'}"
        f" ({config.BATCH_SCHEMA_HINT})\n"
    )


def test_a_file_still_arriving_is_left_for_the_next_run(dirs, model, capsys):
    path = write_csv(houses(5), dirs.inbox / "fresh.csv")

    assert cli.main(["batch", "inbox", "--inbox", str(dirs.inbox), "--settle", "60"]) == 0

    assert "fresh.csv: waiting: modified 0 s ago" in capsys.readouterr().out
    assert path.exists() and not list(dirs.outbox.iterdir())
    assert run_history(dirs.history).empty
    old = time.time() - 120
    os.utime(path, (old, old))
    summaries = run_inbox(dirs.inbox, model=model, progress=False, settle_seconds=60)
    assert [(s["file"], s["status"]) for s in summaries] == [("fresh.csv", "ok")]
    assert not path.exists()


def test_the_settle_window_defaults_to_a_minute(dirs, model, monkeypatch):
    monkeypatch.delenv("HOMEVALUE_BATCH_SETTLE_SECONDS")
    write_csv(houses(5), dirs.inbox / "fresh.csv")
    assert [s["status"] for s in run(dirs, model)] == ["waiting"]


def test_an_unreadable_history_is_refused_with_its_path(tmp_path):
    history = tmp_path / "history.sqlite"
    history.write_bytes(b"this is not a database" * 100)
    with pytest.raises(BatchFileError, match="cannot read the batch history .*history.sqlite"):
        run_history(history)


# --- hostile and unlucky files: limits, a damaged history, an unwritable outbox -------------


def test_a_wide_file_goes_to_failed_with_the_limit_and_the_rest_still_runs(dirs, model):
    write_wide_csv(dirs.inbox / "a_wide.csv", rows=20, extra_columns=1_000)
    write_csv(houses(4), dirs.inbox / "b_good.csv")

    summaries = run(dirs, model)

    assert [(s["file"], s["status"]) for s in summaries] == [
        ("a_wide.csv", "failed"),
        ("b_good.csv", "ok"),
    ]
    reason = (dirs.failed / "a_wide.csv.error.txt").read_text()
    assert reason.startswith("a_wide.csv has 1,020 columns; the limit is 500")
    assert "HOMEVALUE_BATCH_MAX_COLUMNS" in reason
    assert everything_in(dirs.failed) == ["a_wide.csv", "a_wide.csv.error.txt"]
    assert everything_in(dirs.outbox) == ["b_good.run2.rejected.csv", "b_good.run2.scored.csv"]


def _random_bytes(history):
    history.write_bytes(os.urandom(40_000))
    for suffix in ("-wal", "-shm"):  # what a crashed WAL database leaves beside it
        history.with_name(history.name + suffix).write_bytes(os.urandom(1_000))


def _truncated(history):
    history.write_bytes(history.read_bytes()[: history.stat().st_size // 2])


@pytest.mark.parametrize("damage", [_random_bytes, _truncated], ids=["random bytes", "truncated"])
def test_a_damaged_history_is_set_aside_and_scoring_goes_on(dirs, model, capsys, damage):
    write_csv(houses(5), dirs.inbox / "daily.csv")
    for i in range(40):  # enough runs for the history to span several pages
        (dirs.inbox / f"old{i:02d}.csv").write_bytes(b"")
    run(dirs, model)
    damage(dirs.history)
    damaged = dirs.history.read_bytes()
    write_csv(houses(6), dirs.inbox / "daily.csv")

    code = cli.main(["batch", "inbox", "--inbox", str(dirs.inbox)])

    printed = capsys.readouterr()
    assert code == 0
    [aside] = [p for p in dirs.root.glob("history.sqlite.corrupt-*") if p.name.endswith("Z")]
    assert aside.read_bytes() == damaged
    reason = (
        "file is not a database" if damage is _random_bytes else "database disk image is malformed"
    )
    assert printed.err == (
        f"homevalue: the batch history {dirs.history} could not be read ({reason}); it was "
        f"moved to {aside} and a new history was started\n"
    )
    # run ids go on above those in the outbox, so no earlier output is overwritten
    new_output = dirs.outbox / "daily.run3.scored.csv"
    assert printed.out == f"daily.csv: 6 scored, 0 rejected -> {new_output}\n"
    assert everything_in(dirs.outbox) == [
        "daily.run1.rejected.csv",
        "daily.run1.scored.csv",
        "daily.run3.rejected.csv",
        "daily.run3.scored.csv",
    ]
    if damage is _random_bytes:
        beside = sorted(p.name.removeprefix(aside.name) for p in dirs.root.glob(aside.name + "*"))
        assert beside == ["", "-shm", "-wal"]
    history = run_history(dirs.history)
    assert history[["id", "file", "status"]].values.tolist() == [
        [3, "daily.csv", "ok"],
        [2, "history.sqlite", "reset"],
    ]
    assert history["error"].iloc[1] == (
        f"the previous history could not be read ({reason}); it was moved to {aside.name}"
    )
    assert len(read_text_csv(new_output)) == 6


def test_history_commands_say_a_damaged_history_is_unreadable(dirs, capsys):
    dirs.history.write_bytes(b"this is not a database" * 100)

    assert cli.main(["batch", "history", "--inbox", str(dirs.inbox)]) == 1

    printed = capsys.readouterr()
    assert printed.out == ""
    assert printed.err == (
        f"homevalue: cannot read the batch history {dirs.history}: file is not a database. "
        "The next `homevalue batch inbox` sets it aside and starts a new history\n"
    )


def test_an_unwritable_outbox_leaves_every_file_in_the_inbox_with_a_reason(
    dirs, model, monkeypatch, capsys
):
    from test_batch import FullDisk  # the same full-disk double as the single-file tests

    write_csv(houses(300), dirs.inbox / "a.csv")
    write_csv(houses(200), dirs.inbox / "b.csv")
    dirs.create()
    monkeypatch.setattr("builtins.open", FullDisk(dirs.outbox, room=10_000).open)

    code = cli.main(["batch", "inbox", "--inbox", str(dirs.inbox)])

    printed = capsys.readouterr()
    assert code == 1
    assert printed.out.splitlines() == [
        f"{name}: error: cannot write the outputs of {name} in {dirs.outbox}: no space left on "
        "device. Nothing was written; free or fix that folder and run again; the file stays in "
        "the inbox for the next run"
        for name in ("a.csv", "b.csv")
    ]
    assert "Traceback" not in printed.err
    assert everything_in(dirs.inbox) == ["a.csv", "b.csv"]
    assert everything_in(dirs.outbox) == everything_in(dirs.failed) == []
    assert everything_in(dirs.archive) == []
    assert run_history(dirs.history)["status"].tolist() == ["error", "error"]

    monkeypatch.undo()  # room again: the next run scores both
    monkeypatch.setenv("HOMEVALUE_BATCH_SETTLE_SECONDS", "0")
    assert [s["status"] for s in run(dirs, model)] == ["ok", "ok"]
    assert everything_in(dirs.archive) == ["a.csv", "b.csv"]


def _file_size_limit(limit: int):
    def apply():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def test_a_write_failing_mid_file_in_a_real_run_keeps_that_file_and_scores_the_next(dirs):
    """A real process under a 1 MiB file-size limit: write() fails like a full disk."""
    big = pd.concat([houses(2_000)] * 5, ignore_index=True)  # ~2 MB of output
    write_csv(big, dirs.inbox / "a_big.csv")
    write_csv(houses(10), dirs.inbox / "b_small.csv")

    finished = subprocess.run(
        homevalue_command("batch", "inbox", "--inbox", str(dirs.inbox)),
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=_file_size_limit(2**20),
    )

    assert finished.returncode == 1, finished.stderr
    assert finished.stderr == ""
    assert finished.stdout.splitlines() == [
        f"a_big.csv: error: cannot write the outputs of a_big.csv in {dirs.outbox}: file too "
        "large for the file system or this process's file-size limit (ulimit -f). Nothing was "
        "written; free or fix that folder and run again; the file stays in the inbox for the "
        "next run",
        f"b_small.csv: 10 scored, 0 rejected -> {dirs.outbox / 'b_small.run2.scored.csv'}",
    ]
    assert everything_in(dirs.inbox) == ["a_big.csv"]
    assert everything_in(dirs.outbox) == ["b_small.run2.rejected.csv", "b_small.run2.scored.csv"]
    assert everything_in(dirs.archive) == ["b_small.csv"]


# --- a file still being written -------------------------------------------------------------


def test_a_file_growing_between_two_looks_is_left_for_the_next_run(dirs, model, monkeypatch):
    from homevalue import inbox

    source = write_csv(houses(5), dirs.inbox / "growing.csv")
    looks = []

    def writer_busy_meanwhile(seconds):
        looks.append(seconds)
        with open(source, "a") as handle:
            handle.write(houses(6).iloc[5:].to_csv(index=False, header=False))

    monkeypatch.setattr(inbox.time, "sleep", writer_busy_meanwhile)
    monkeypatch.setenv("HOMEVALUE_BATCH_LOOK_SECONDS", "1.5")

    [summary] = run(dirs, model)

    assert looks == [1.5]
    assert summary["status"] == "waiting"
    assert summary["error"].startswith("still being written (its size or time changed within")
    assert everything_in(dirs.inbox) == ["growing.csv"]
    assert everything_in(dirs.outbox) == []
    assert run_history(dirs.history).empty


def test_a_file_changed_while_it_was_scored_is_not_archived_half_scored(dirs, model, monkeypatch):
    from homevalue import batch

    source = write_csv(houses(30), dirs.inbox / "late.csv")
    real_score_frame = batch.score_frame

    def writer_resumes(*args, **kwargs):
        with open(source, "a") as handle:
            handle.write(houses(31).iloc[30:].to_csv(index=False, header=False))
        return real_score_frame(*args, **kwargs)

    monkeypatch.setattr(batch, "score_frame", writer_resumes)

    [summary] = run_inbox(dirs.inbox, model=model, progress=False)

    assert summary["status"] == "waiting"
    assert summary["error"].startswith("late.csv changed while it was being scored")
    assert everything_in(dirs.inbox) == ["late.csv"]
    assert everything_in(dirs.outbox) == []
    assert everything_in(dirs.archive) == []
    assert run_history(dirs.history)["status"].tolist() == ["changed"]


WRITER = """
import sys, time
header, rows, pause = sys.argv[1], sys.argv[2:], 0.05
with open({path!r}, "w") as handle:
    handle.write(header + "\\n")
    handle.flush()
    print("started", flush=True)
    for row in rows:
        time.sleep(pause)
        handle.write(row + "\\n")
        handle.flush()
"""


@pytest.mark.slow
def test_a_file_written_slowly_during_a_real_run_with_settle_0_is_not_scored_half(dirs):
    """The reproduction: `--settle 0` scored 95 of 200 rows of a file still being written."""
    given = houses(200)
    rows = [",".join(row) for row in given.itertuples(index=False)]
    source = dirs.inbox / "slow.csv"
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER.format(path=str(source)), ",".join(given.columns), *rows],
        stdout=subprocess.PIPE,
        text=True,
    )
    environment = {k: v for k, v in os.environ.items() if not k.startswith("HOMEVALUE_BATCH_")}
    try:
        assert writer.stdout.readline() == "started\n"
        job = subprocess.run(
            homevalue_command("batch", "inbox", "--inbox", str(dirs.inbox), "--settle", "0"),
            capture_output=True,
            text=True,
            timeout=60,
            env=environment,
        )
        assert writer.poll() is None, "the writer finished before the run: nothing was tested"
    finally:
        writer.wait(timeout=60)
        writer.stdout.close()

    assert job.returncode == 0, job.stderr
    assert job.stdout.startswith("slow.csv: waiting: ")
    assert everything_in(dirs.inbox) == ["slow.csv"]
    assert everything_in(dirs.outbox) == everything_in(dirs.archive) == []

    again = subprocess.run(
        homevalue_command("batch", "inbox", "--inbox", str(dirs.inbox), "--settle", "0"),
        capture_output=True,
        text=True,
        timeout=60,
        env=environment,
    )

    assert again.stdout == (
        f"slow.csv: 200 scored, 0 rejected -> {dirs.outbox / 'slow.run1.scored.csv'}\n"
    )
    assert everything_in(dirs.archive) == ["slow.csv"]
