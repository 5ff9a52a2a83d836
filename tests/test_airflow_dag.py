"""The Airflow DAG (deploy/airflow/homevalue_batch.py) run by Airflow itself.

Airflow lives in its own virtual environment (`make airflow-venv`: .venv-airflow, pinned by
deploy/airflow/constraints.txt), never in ours. Each test gives `airflow dags test
homevalue_batch` a temporary AIRFLOW_HOME with its own SQLite metadata database and a
temporary batch folder, lets the DAG run our `homevalue` command as a deployment would, and
reads what happened from the batch folder and from Airflow's own database.

If the Airflow environment cannot be built here, the tests are skipped saying why; under CI
(CI=true) that is a failure instead, so CI always runs them.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
from batch_helpers import everything_in, houses, read_text_csv, write_csv

from homevalue.batch import score_file
from homevalue.inbox import BatchDirs, run_history

PROJ_ROOT = Path(__file__).resolve().parents[1]
AIRFLOW_VENV = Path(os.environ.get("AIRFLOW_VENV", PROJ_ROOT / ".venv-airflow"))
DAG_FOLDER = PROJ_ROOT / "deploy" / "airflow"
DAG_ID = "homevalue_batch"
TASK_ID = "score_inbox"
# Our own command, from the environment running these tests (not Airflow's).
HOMEVALUE = Path(sys.executable).parent / "homevalue"
BUILD_TIMEOUT = 1800  # a cold `make airflow-venv`: Airflow and its dependencies from PyPI
RUN_TIMEOUT = 600


def outside_make() -> dict[str, str]:
    """This environment less what must not reach a child: make's jobserver pipes (under
    `make test`), and our virtual environment's variables (Airflow has its own)."""
    dropped = {"MAKEFLAGS", "MFLAGS", "MAKELEVEL", "VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME"}
    return {k: v for k, v in os.environ.items() if k not in dropped}


@pytest.fixture(scope="module")
def airflow_venv() -> Path:
    """.venv-airflow, built by `make airflow-venv` if missing (a no-op when it is there)."""
    built = subprocess.run(
        ["make", "-s", "airflow-venv", f"AIRFLOW_VENV={AIRFLOW_VENV}"],
        cwd=PROJ_ROOT,
        env=outside_make(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT,
    )
    if built.returncode != 0:
        why = (
            f"the Airflow environment could not be built (`make airflow-venv` exited "
            f"{built.returncode}):\n{(built.stdout + built.stderr)[-3000:]}"
        )
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)
    return AIRFLOW_VENV


@dataclass
class AirflowRun:
    """One `airflow dags test`: its exit code, its output and the task logs it wrote, and
    the task's final record."""

    returncode: int
    output: str
    state: str | None
    try_number: int | None


@pytest.fixture
def dirs(tmp_path) -> BatchDirs:
    folders = BatchDirs(tmp_path / "batch" / "inbox")
    folders.inbox.mkdir(parents=True)
    return folders


@pytest.fixture
def dags_test(airflow_venv, tmp_path, dirs):
    """Run `airflow dags test homevalue_batch` with a fresh AIRFLOW_HOME and SQLite
    database (a copy of the one `make airflow-venv` migrated), the DAG folder of this
    checkout, and our homevalue command and inbox given the documented ways: the command
    as an Airflow Variable (AIRFLOW_VAR_*, Airflow's environment form of a Variable), the
    inbox as HOMEVALUE_BATCH_INBOX. Retries are one, a second apart."""

    def run(**env: str) -> AirflowRun:
        home = tmp_path / "airflow"
        home.mkdir(exist_ok=True)
        database = home / "airflow.db"
        shutil.copyfile(airflow_venv / "metadata" / "airflow.db", database)
        settings = {
            **outside_make(),
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(DAG_FOLDER),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{database}",
            "AIRFLOW_VAR_HOMEVALUE_COMMAND": str(HOMEVALUE),
            "HOMEVALUE_BATCH_INBOX": str(dirs.inbox),
            "HOMEVALUE_AIRFLOW_RETRIES": "1",
            "HOMEVALUE_AIRFLOW_RETRY_SECONDS": "1",
            **env,
        }
        done = subprocess.run(
            [str(airflow_venv / "bin" / "airflow"), "dags", "test", DAG_ID],
            cwd=tmp_path,
            env=settings,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT,
        )
        with contextlib.closing(sqlite3.connect(database)) as db:
            found = db.execute(
                "SELECT state, try_number FROM task_instance WHERE dag_id=? AND task_id=?",
                (DAG_ID, TASK_ID),
            ).fetchall()
        state, try_number = found[-1] if found else (None, None)
        logs = "".join(
            path.read_text(errors="replace") for path in sorted((home / "logs").rglob("*.log"))
        )
        return AirflowRun(done.returncode, done.stdout + done.stderr + logs, state, try_number)

    return run


def test_the_dag_scores_a_file_dropped_in_the_inbox(dags_test, dirs, tmp_path, model):
    """The happy path, end to end: the file is scored exactly as `homevalue batch score`
    scores it, archived, and recorded; the task succeeds on its first try."""
    frame = houses(12)
    write_csv(frame, dirs.inbox / "houses.csv")
    expected = score_file(write_csv(frame, tmp_path / "copy" / "houses.csv"), tmp_path / "out")

    run = dags_test()

    assert (run.state, run.try_number, run.returncode) == ("success", 1, 0), run.output[-4000:]
    assert everything_in(dirs.inbox) == []
    assert everything_in(dirs.archive) == ["houses.csv"]
    scored = read_text_csv(dirs.outbox / "houses.run1.scored.csv")
    assert scored.equals(read_text_csv(expected.scored_path))
    assert len(scored) == 12
    assert pd.to_numeric(scored["predicted_price"]).gt(0).all()
    assert scored["model_version"].eq(model.version).all()
    history = run_history(dirs.history)
    assert history[["file", "status", "rows_scored"]].values.tolist() == [["houses.csv", "ok", 12]]
    assert "houses.csv: 12 scored, 0 rejected" in run.output  # the job's line, in the task log


def test_a_busy_inbox_is_retried_then_left_to_the_next_run(dags_test, dirs):
    """Exit 75 (another run holds the lock) is tried again after the retry delay; still
    busy on the last try, the task is skipped, not failed, and the file waits untouched."""
    write_csv(houses(3), dirs.inbox / "houses.csv")
    with open(dirs.lock, "a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        run = dags_test()

    # A skipped task leaves the DAG run successful: nothing for an alert to report.
    assert (run.state, run.try_number, run.returncode) == ("skipped", 2, 0), run.output[-4000:]
    assert "another inbox run is in progress" in run.output
    assert everything_in(dirs.inbox) == ["houses.csv"]
    assert not dirs.outbox.exists() or everything_in(dirs.outbox) == []


def test_a_file_that_cannot_be_scored_fails_the_task_without_retrying(dags_test, dirs):
    """Exit 1 (a file went to failed/) fails at once: a retry would meet the same file."""
    (dirs.inbox / "notes.csv").write_text("this is not a table of houses\n", encoding="utf-8")

    run = dags_test()

    assert (run.state, run.try_number, run.returncode) == ("failed", 1, 1), run.output[-4000:]
    assert everything_in(dirs.failed) == ["notes.csv", "notes.csv.error.txt"]
    assert "notes.csv: failed:" in run.output


def test_a_missing_homevalue_command_fails_without_retrying_and_says_what_to_set(
    dags_test, dirs, tmp_path
):
    write_csv(houses(2), dirs.inbox / "houses.csv")

    run = dags_test(AIRFLOW_VAR_HOMEVALUE_COMMAND=str(tmp_path / "no" / "homevalue"))

    assert (run.state, run.try_number, run.returncode) == ("failed", 1, 1), run.output[-4000:]
    assert "homevalue_command" in run.output
    assert everything_in(dirs.inbox) == ["houses.csv"]
