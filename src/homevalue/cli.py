"""`homevalue` on the command line: the batch job for operators and cron.

    homevalue batch score FILE|FOLDER|GLOB... [--out DIR] [--explain]
                          [--workers N | --cluster tcp://HOST:8786]
                                               score CSV/Parquet files (on a Dask cluster)
    homevalue batch inbox [--inbox DIR]        score every new file in the inbox (cron)
    homevalue batch history [--inbox DIR]      show recent inbox runs
    homevalue batch schema                     the columns a file may have, and their values
    homevalue monitor [--since 7d] [--inbox DIR] [--fail-on act|watch]
                                               the period's runs: volume, rejections, drift

Exit codes: 0 done, 1 a file or the model could not be used, an output folder could not be
written or a cluster could not be used (the message says which; the other files of a run
are still scored), 2 a usage error (a bad option, such as `--since 7x`), 3 `monitor` found
drift at or over its threshold (config.EXIT_DRIFT: cron mails the summary), 75 another
inbox run is going (cron simply tries again next time). Problems are one line on stderr,
never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sqlite3
import sys
from collections.abc import Iterator
from pathlib import Path

from homevalue import config
from homevalue.errors import HomevalueError

EXIT_BUSY = 75  # EX_TEMPFAIL


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="homevalue", description="Ames home prices in batch.")
    commands = parser.add_subparsers(dest="command", required=True)
    batch = commands.add_parser("batch", help="score files of houses")
    jobs = batch.add_subparsers(dest="job", required=True)

    score = jobs.add_parser("score", help="score CSV or Parquet files: a file, a folder or a glob")
    score.add_argument(
        "paths",
        nargs="+",
        metavar="FILE|FOLDER|GLOB",
        help="files to score: a file, a folder (its .csv and .parquet files) or a quoted "
        "glob pattern such as 'data/*.csv'; several may be given",
    )
    score.add_argument("--out", type=Path, default=Path("."), help="output folder (default .)")
    score.add_argument("--chunk-rows", type=int, default=config.BATCH_CHUNK_ROWS)
    score.add_argument(
        "--explain",
        action="store_true",
        help="add why each price is what it is: base_price and contribution_<field> columns, "
        "in dollars, adding up to predicted_price (slower: about 2 ms per row per thread)",
    )
    where = score.add_mutually_exclusive_group()
    where.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="score on a Dask cluster of N worker processes on this machine, a file per "
        "task (default: one process, one file after another)",
    )
    where.add_argument(
        "--cluster",
        metavar="tcp://HOST:8786",
        help="score on an existing Dask cluster (its scheduler's address); its workers need "
        "the same homevalue and model, and the files and --out at the same paths",
    )
    score.add_argument(
        "--threads-per-worker",
        type=int,
        default=None,
        metavar="T",
        help="with --workers: files each worker scores at once (default 1)",
    )

    jobs.add_parser(
        "schema",
        help="list the columns a file may have: ranges, and every category's code "
        "and label (either is accepted, in any case)",
    )

    for name, text in (
        ("inbox", "score every new file in the inbox"),
        ("history", "show recent inbox runs"),
    ):
        job = jobs.add_parser(name, help=text)
        job.add_argument(
            "--inbox",
            type=Path,
            default=None,
            help=f"inbox folder (default {config.BATCH_INBOX}, env HOMEVALUE_BATCH_INBOX)",
        )
        if name == "history":
            job.add_argument("--limit", type=int, default=20)
        else:
            job.add_argument(
                "--settle",
                type=float,
                default=None,
                metavar="SECONDS",
                help="leave files modified more recently than this for the next run "
                f"(default {config.BATCH_SETTLE_SECONDS:g}, env HOMEVALUE_BATCH_SETTLE_SECONDS); "
                "whatever it is, a file must also look the same twice, "
                f"{config.BATCH_LOOK_SECONDS:g} s apart (env HOMEVALUE_BATCH_LOOK_SECONDS)",
            )
    _monitor_parser(commands)
    return parser


def _since(text: str):
    from homevalue.monitor import parse_since

    try:
        return parse_since(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _monitor_parser(commands) -> None:
    monitor = commands.add_parser(
        "monitor",
        help="the batch runs of a period: volume, rejections, drift against the "
        f"training data; exit {config.EXIT_DRIFT} when drift crosses a threshold (cron alert)",
    )
    monitor.add_argument(
        "--since",
        type=_since,
        default="7d",
        metavar="PERIOD",
        help="the period: 90m, 24h, 7d (default), 2w, a UTC date such as 2026-11-23, or all",
    )
    monitor.add_argument(
        "--inbox",
        type=Path,
        default=None,
        help=f"the batch job whose history to read (default {config.BATCH_INBOX}, env "
        "HOMEVALUE_BATCH_INBOX)",
    )
    monitor.add_argument(
        "--fail-on",
        choices=("act", "watch"),
        default="act",
        help=f"exit {config.EXIT_DRIFT} when a PSI reaches this threshold (act "
        f"{config.PSI_ACT:g}, default; watch {config.PSI_WATCH:g})",
    )


def _score(args) -> int:
    from homevalue.batchrun import ScoreOptions, check_outputs, input_files, score_here
    from homevalue.inbox import now
    from homevalue.model import load_model

    _check_cluster_options(args)
    files = input_files(args.paths)
    check_outputs(files, args.out)
    started = now()
    on_cluster = args.workers is not None or args.cluster is not None
    # One process scores with score_file's 2 threads; on a cluster each task has one thread,
    # and a worker scores as many files at once as it has threads.
    options = ScoreOptions(args.chunk_rows, args.explain, threads=1 if on_cluster else 2)
    if on_cluster:
        run = _score_on_cluster(args, files, load_model(), options)
    else:
        run = score_here(files, args.out, None, options)
    for result in run.files:  # by this client alone: workers never open the history
        _record_score(result.source, result, started)
    for failure in run.failures:
        print(f"homevalue: {failure.error}", file=sys.stderr)
    if run.files:
        _print_run(run, load_model().dollars_of)
    return 1 if run.failures else 0


def _check_cluster_options(args) -> None:
    from homevalue.errors import ClusterError

    if args.workers is not None and not 1 <= args.workers <= config.batch_max_workers():
        raise ClusterError(
            f"--workers {args.workers}: give 1 to {config.batch_max_workers()} (this machine's "
            "CPUs; each worker is a process with its own model copy, and scoring is CPU-bound; "
            "HOMEVALUE_BATCH_MAX_WORKERS raises the limit)"
        )
    if args.threads_per_worker is not None:
        if args.workers is None:
            raise ClusterError(
                "--threads-per-worker goes with --workers (an existing cluster's workers have "
                "the threads `dask worker --nthreads` gave them)"
            )
        if not 1 <= args.threads_per_worker <= config.batch_max_workers():
            raise ClusterError(
                f"--threads-per-worker {args.threads_per_worker}: give 1 to "
                f"{config.batch_max_workers()}"
            )


def _score_on_cluster(args, files, model, options):
    from homevalue import scaleout

    if args.cluster is not None:
        clients = scaleout.cluster_client(args.cluster)
    else:
        clients = scaleout.local_cluster(args.workers, args.threads_per_worker or 1)
    with clients as client:
        return scaleout.score_on_cluster(files, args.out, client, model, options)


def _print_run(run, dollars_of: str) -> None:
    if len(run.files) == 1 and not run.failures:
        result = run.files[0]
        print(
            f"{result.rows_scored} scored -> {result.scored_path}\n"
            f"{result.rows_rejected} rejected -> {result.rejected_path}"
        )
    else:
        for result in run.files:
            print(
                f"{result.source.name}: {result.rows_scored} scored -> {result.scored_path}, "
                f"{result.rows_rejected} rejected -> {result.rejected_path}"
            )
        print(
            f"{len(run.files)} files: {run.rows_scored} scored, {run.rows_rejected} rejected"
            + (f"; {len(run.failures)} could not be scored" if run.failures else "")
        )
    print(
        f"prices are in {dollars_of} dollars (the years of the sales the model learned "
        "from), not today's"
    )
    if run.rows_rejected:
        print(ALLOWED_VALUES)


ALLOWED_VALUES = config.BATCH_SCHEMA_HINT


def _record_score(source: Path, result, started: str) -> None:
    """Add a scored file to the batch job's history (source "cli"), with its drift, so the
    Monitoring page and `homevalue monitor` count it. A history that cannot take it is
    warned about on stderr; the outputs are written and the exit stays 0."""
    from homevalue.inbox import BatchDirs, record_upload
    from homevalue.model import load_model, sha256_file

    history = BatchDirs(config.batch_inbox()).history
    try:
        record_upload(
            history,
            file=Path(source).name,
            sha256=sha256_file(source),
            status="ok",
            started_at=started,
            rows_scored=result.rows_scored,
            rows_rejected=result.rows_rejected,
            model_version=result.model_version,
            source="cli",
            profile=result.profile,
            card=load_model().card,
        )
    except (OSError, sqlite3.Error) as error:
        logging.getLogger("homevalue").warning(
            "the run was scored but not recorded in the history %s: %s", history, error
        )


def _monitor(args) -> int:
    from homevalue.drift import reference_of
    from homevalue.inbox import BatchDirs
    from homevalue.model import read_card
    from homevalue.monitor import read_window, report

    history = BatchDirs(args.inbox or config.batch_inbox()).history
    card = read_card()
    window = read_window(history, args.since, reference_of(card))
    text, crossed = report(window, history, args.fail_on, card["model_version"])
    print(text)
    return config.EXIT_DRIFT if crossed else 0


def _schema(_args) -> int:
    from homevalue.model import load_model
    from homevalue.schema import describe_schema

    print(describe_schema(load_model().schema))
    return 0


def _inbox(args) -> int:
    from homevalue.inbox import describe, run_inbox

    summaries = run_inbox(args.inbox, settle_seconds=args.settle)
    for summary in summaries:
        print(describe(summary))
    return 1 if any(s["status"] in ("failed", "error") for s in summaries) else 0


def _history(args) -> int:
    from homevalue.inbox import BatchDirs, run_history

    history = BatchDirs(args.inbox or config.batch_inbox()).history
    table = run_history(history, limit=args.limit)
    if table.empty:
        print(f"no runs recorded in {history}")
    else:
        print(table.drop(columns=["output", "rejected_output"]).to_string(index=False))
    return 0


@contextlib.contextmanager
def _warnings_on_stderr() -> Iterator[None]:
    """The package's warnings (a history set aside...) as `homevalue: ...` lines for cron."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("homevalue: %(message)s"))
    handler.setLevel(logging.WARNING)
    logger = logging.getLogger("homevalue")
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    jobs = {"score": _score, "inbox": _inbox, "history": _history, "schema": _schema}
    action = _monitor if args.command == "monitor" else jobs[args.job]
    try:
        with _warnings_on_stderr():
            return action(args)
    except HomevalueError as error:
        from homevalue.inbox import InboxBusy

        print(f"homevalue: {error}", file=sys.stderr)
        return EXIT_BUSY if isinstance(error, InboxBusy) else 1
    except (OSError, sqlite3.Error) as error:  # a file or folder the job needs, not a bug
        print(f"homevalue: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
