"""The homevalue inbox job on Airflow: `homevalue batch inbox` on a schedule, with retries.

Airflow runs the project's own command, from the project's own virtual environment, as cron
does (README, "The inbox"); Airflow and homevalue never share a Python environment. Copy
this file into the DAGs folder (or point a DAG bundle at deploy/airflow/).

Where homevalue is (Airflow Variables, read when the task runs; each can also be given as
an environment variable of the worker, and a Variable wins):

    homevalue_command      the homevalue executable, e.g. /srv/homevalue/.venv/bin/homevalue
                           (env HOMEVALUE_COMMAND; default: `homevalue` on the worker's PATH)
    homevalue_batch_inbox  the inbox folder, e.g. /srv/homevalue/batch/inbox
                           (env HOMEVALUE_BATCH_INBOX; default: homevalue's own, the
                           project's batch/inbox)

The rest of homevalue's settings (HOMEVALUE_MODEL_DIR, HOMEVALUE_BATCH_SETTLE_SECONDS, ...)
reach the job through the worker's environment, as they reach it under cron.

When and how often (environment of the DAG processor, read when the file is parsed):

    HOMEVALUE_AIRFLOW_SCHEDULE         cron expression (default "*/30 * * * *")
    HOMEVALUE_AIRFLOW_RETRIES          tries after the first when the inbox is busy (3)
    HOMEVALUE_AIRFLOW_RETRY_SECONDS    wait before each (300)
    HOMEVALUE_AIRFLOW_TIMEOUT_SECONDS  longest a run may take before it is stopped (21600)

The job's exit codes (homevalue/cli.py), and what the task does with each:

    0   success.
    75  EX_TEMPFAIL: another inbox run holds the inbox's lock (a long run, a cron line
        left in place, someone by hand). Retried after the retry delay; still busy on the
        last try, the task is *skipped*, not failed: the run holding the lock is doing the
        work, and the next scheduled run takes whatever is left, as cron would.
    1   a file could not be scored (it is in failed/ with its reason), an output folder
        could not be written (the file stays in the inbox), or the model could not be
        loaded; 2 is a usage error. The task *fails at once, without retries*: a retry
        minutes later meets the same file, the same read-only folder or the same broken
        model. The job's own lines, in the task log, say which; files left in the inbox
        are tried again by the next scheduled run.
    any other (killed by a signal: the OOM killer, a stop; a crash): an ordinary failure,
        *retried*: the job is crash-safe (the next run marks the interrupted record and
        scores the file again), and such a death may well not happen twice.

The homevalue command not being found is a configuration error: failed without retries.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
from datetime import UTC, datetime, timedelta

from airflow.sdk import DAG, Variable, get_current_context, task
from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSkipException

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_BUSY = 75  # EX_TEMPFAIL, homevalue.cli.EXIT_BUSY
EXIT_FAILED = 1  # a file, a folder or the model: see the job's lines
EXIT_USAGE = 2  # argparse's
STOP_GRACE_SECONDS = 10  # after SIGTERM, before SIGKILL, when the task itself is stopped

COMMAND_VARIABLE, COMMAND_ENV = "homevalue_command", "HOMEVALUE_COMMAND"
INBOX_VARIABLE, INBOX_ENV = "homevalue_batch_inbox", "HOMEVALUE_BATCH_INBOX"


def _setting(name: str, default: str) -> str:
    return os.environ.get(name, "").strip() or default


SCHEDULE = _setting("HOMEVALUE_AIRFLOW_SCHEDULE", "*/30 * * * *")
RETRIES = int(_setting("HOMEVALUE_AIRFLOW_RETRIES", "3"))
RETRY_DELAY = timedelta(seconds=float(_setting("HOMEVALUE_AIRFLOW_RETRY_SECONDS", "300")))
TIMEOUT = timedelta(seconds=float(_setting("HOMEVALUE_AIRFLOW_TIMEOUT_SECONDS", "21600")))


def configured(variable: str, env: str) -> str | None:
    """An Airflow Variable if set, else the worker's environment variable, else None."""
    value = Variable.get(variable, default=None)
    if value is None or not str(value).strip():
        value = os.environ.get(env)
    return str(value).strip() if value and str(value).strip() else None


def homevalue_command() -> str:
    """The homevalue executable, checked; a missing one fails the task without retries."""
    given = configured(COMMAND_VARIABLE, COMMAND_ENV) or "homevalue"
    found = shutil.which(given)
    if found is None:
        raise AirflowFailException(
            f"the homevalue command {given!r} was not found or is not executable: set the "
            f"Airflow Variable {COMMAND_VARIABLE} (or {COMMAND_ENV} in the worker's "
            "environment) to the project's .venv/bin/homevalue"
        )
    return found


def run_logged(argv: list[str]) -> int:
    """Run the job, each line it prints going to the task log as it comes; its exit code.

    If the task is stopped meanwhile (timeout, marked failed), the job gets SIGTERM and,
    STOP_GRACE_SECONDS later, SIGKILL; it is crash-safe, so the next run picks up.
    """
    log.info("running %s", " ".join(argv))
    process = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
    )
    try:
        assert process.stdout is not None
        for line in process.stdout:
            log.info("%s", line.rstrip("\n"))
        return process.wait()
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(STOP_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def outcome(code: int, *, last_try: bool) -> tuple[str, str]:
    """(what the task does, why) for the job's exit code: "success", "retry", "skip" or
    "fail" (fail without retries). The module's docstring says why each."""
    if code == EXIT_OK:
        return "success", "the inbox job finished"
    if code == EXIT_BUSY:
        if last_try:
            return "skip", (
                "the inbox is still busy with another run (exit 75) after every retry: that "
                "run is doing the work; the next scheduled run takes whatever is left"
            )
        return "retry", "another inbox run holds the lock (exit 75): trying again later"
    if code in (EXIT_FAILED, EXIT_USAGE):
        return "fail", (
            f"the inbox job exited {code}: a file, a folder or the model needs the operator "
            "(the job's lines above say which); retrying now would meet the same problem"
        )
    how = f"was killed by signal {-code}" if code < 0 else f"exited {code}"
    return "retry", f"the inbox job {how}; it is crash-safe, so it is tried again"


@task(retries=RETRIES, retry_delay=RETRY_DELAY, execution_timeout=TIMEOUT)
def score_inbox() -> None:
    """Score every new file in the inbox (`homevalue batch inbox`), mapping its exit code."""
    argv = [homevalue_command(), "batch", "inbox"]
    inbox = configured(INBOX_VARIABLE, INBOX_ENV)
    if inbox is not None:
        argv += ["--inbox", inbox]
    code = run_logged(argv)
    ti = get_current_context()["ti"]  # max_tries: the retries, more if the run was cleared
    action, why = outcome(code, last_try=ti.try_number > ti.max_tries)
    log.info("%s (try %d of %d)", why, ti.try_number, ti.max_tries + 1)
    if action == "skip":
        raise AirflowSkipException(why)
    if action == "fail":
        raise AirflowFailException(why)
    if action == "retry":
        raise AirflowException(why)


with DAG(
    dag_id="homevalue_batch",
    description="Score the new files in homevalue's batch inbox",
    schedule=SCHEDULE,
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,  # a missed slot is not made up: the next run scores everything waiting
    max_active_runs=1,
    tags=["homevalue"],
    doc_md=__doc__,
):
    score_inbox()
