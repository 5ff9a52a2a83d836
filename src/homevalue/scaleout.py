"""Score a run's files on a Dask distributed cluster: a LocalCluster of N worker processes
(`homevalue batch score ... --workers N`) or an existing cluster (`--cluster tcp://HOST:8786`).

The unit of work is a file: one task scores one file with `batch.score_file`, as a run on
one machine does. Why not parts of a file (Parquet row groups, CSV line ranges):
- a file is already scored in bounded memory, chunk by chunk, so no file is too big for a
  worker; parts would only spread one huge file over more CPUs;
- a file's outputs are then written whole by one process (temporary name, then rename), so
  a worker that dies leaves no output and its retry writes the same bytes: nothing is lost
  or doubled. Parts would need a second, client-side step stitching part outputs together
  (CSV headers, Parquet schemas, row numbers counted from the file's first row) that could
  itself die half-way;
- a run of many files (what a folder or a glob gives) keeps every worker busy anyway.
A run of one big file uses one worker; give that worker threads instead
(`--threads-per-worker`) or split the file before the run.

Each worker loads the model once, when it joins the cluster (ModelPlugin), never per file.
The client checks every worker before giving out work: the same model card and homevalue
version as the client, and the run's files and output folder visible at the same paths (a
shared file system). Workers write only their files' outputs; the client alone combines
the outcomes (batchrun.combine_results) and reports. A worker that dies mid-file (killed,
out of memory) leaves only a hidden temporary: the scheduler gives the file to another
worker, which scores it whole, and the client removes the temporary at the end. A file
that kills every worker it is given (Dask's allowed-failures, 3 by default) is reported
as failed, like a file that cannot be read.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import re
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from distributed import Client, KilledWorker, LocalCluster, WorkerPlugin, as_completed, get_worker

from homevalue import config
from homevalue.batch import BatchResult, output_paths, writing_into
from homevalue.batchrun import (
    FileFailure,
    RunResult,
    ScoreOptions,
    combine_results,
    model_identity,
    score_one,
)
from homevalue.errors import ClusterError, HomevalueError
from homevalue.model import Model, load_model

PLUGIN_NAME = "homevalue-model"
# A task scores its file with one thread: a worker runs as many files at once as it has.
ONE_THREAD = ScoreOptions(threads=1)
ADDRESS = re.compile(r"(tcp|tls)://[^\s/]+:\d{1,5}")
SHARED = (
    "every worker must see the input files and the --out folder at the same paths as this "
    "client (a shared file system, mounted alike everywhere)"
)
SAME_INSTALL = (
    "install the same homevalue and model folder on every worker as on this client, then "
    "restart the workers"
)


class ModelPlugin(WorkerPlugin):
    """Loads the model when a worker joins the cluster (or the plugin is registered): once
    per worker process, however many files it scores.

    A model that cannot be loaded is kept as a message, not raised: the worker stays up,
    and the client's check names the worker and the reason.
    """

    name = PLUGIN_NAME

    def __init__(self) -> None:
        self.model: Model | None = None
        self.error: str | None = None

    def setup(self, worker) -> None:
        try:
            self.model = load_model()  # the worker's own model folder (HOMEVALUE_MODEL_DIR)
        except HomevalueError as error:
            self.error = str(error)


# --- on a worker --------------------------------------------------------------------------


def _worker_model(worker) -> Model:
    """The model `worker` loaded when it joined; ClusterError if it could not."""
    plugin = worker.plugins.get(PLUGIN_NAME)
    if plugin is None or (plugin.model is None and plugin.error is None):
        return load_model()  # not registered on this worker (yet): once per process too
    if plugin.error is not None:
        raise ClusterError(f"worker {worker.address} cannot load the model: {plugin.error}")
    return plugin.model


def _worker_report(sources: list[str], out_dir: str, dask_worker=None) -> dict:
    """What this worker would price with, and the first path of the run it cannot see.

    Run on every worker by `client.run`, which passes the worker as `dask_worker`.
    """
    try:
        identity, error = model_identity(_worker_model(dask_worker)), None
    except HomevalueError as problem:
        identity, error = None, str(problem)
    unseen = next((s for s in sources if not os.path.isfile(s)), None)
    if unseen is None and not os.path.isdir(out_dir):
        unseen = out_dir
    return {"identity": identity, "error": error, "unseen": unseen}


def _score_task(
    source: str, out_dir: str, options: ScoreOptions, identity: str
) -> BatchResult | FileFailure:
    """One file, scored on a worker: its result, or why not (as on one machine)."""
    try:
        model = _worker_model(get_worker())
        here = model_identity(model)
    except HomevalueError as error:
        return FileFailure(Path(source), str(error))
    if here != identity:
        return FileFailure(
            Path(source),
            f"{Path(source).name}: worker {get_worker().address} has {here}, this client "
            f"{identity}: {SAME_INSTALL}",
        )
    return score_one(Path(source), Path(out_dir), model, options, progress=False)


# --- on the client ------------------------------------------------------------------------


def check_workers(reports: dict[str, dict], identity: str) -> None:
    """Refuse a run some worker cannot do as this client would: raise ClusterError naming
    the worker, what differs, and the fix."""
    for address, report in sorted(reports.items()):
        if report["error"] is not None:
            raise ClusterError(report["error"])
        if report["identity"] != identity:
            raise ClusterError(
                f"worker {address} has {report['identity']}, this client {identity}: {SAME_INSTALL}"
            )
        if report["unseen"] is not None:
            raise ClusterError(f"worker {address} cannot see {report['unseen']}: {SHARED}")


def _outcome(future, source: Path) -> BatchResult | FileFailure:
    try:
        return future.result()
    except KilledWorker:
        return FileFailure(
            source,
            f"{source.name}: every worker given it died before finishing it (out of memory, "
            "or killed?), as many times as the scheduler allows "
            "(distributed.scheduler.allowed-failures). Nothing was written for it",
        )


def remove_temporaries(files: Sequence[Path], out_dir: Path) -> None:
    """Delete what a worker that died mid-file left: its outputs' hidden temporaries
    (`.<output name>.<pid>.tmp`, batch.AtomicFile). Called once every file is done."""
    for source in files:
        for target in output_paths(source, out_dir):
            with contextlib.suppress(OSError):
                for leftover in out_dir.glob(f".{glob.escape(target.name)}.*.tmp"):
                    leftover.unlink(missing_ok=True)


def _progress(total: int, enabled: bool | None):
    from tqdm import tqdm

    enabled = sys.stderr.isatty() if enabled is None else enabled
    return tqdm(total=total, unit="files", disable=not enabled, file=sys.stderr)


def score_on_cluster(
    files: Sequence[Path],
    out_dir: Path,
    client: Client,
    model: Model,
    options: ScoreOptions = ONE_THREAD,
    *,
    progress: bool | None = None,
) -> RunResult:
    """Score `files` into `out_dir` on the cluster behind `client`, one task per file.

    `model` is this client's: every worker must price with the same one (ClusterError
    otherwise, before any work is given out). Each task scores with `options.threads`
    threads; a worker runs as many files at once as it has threads.
    """
    files = [Path(f).absolute() for f in files]
    out_dir = Path(out_dir).absolute()
    with writing_into(
        out_dir,
        "cannot write the outputs of this run in",
        "Nothing was written; free or fix that folder and run again",
    ):
        out_dir.mkdir(parents=True, exist_ok=True)
    identity = model_identity(model)
    client.register_plugin(ModelPlugin())
    check_workers(client.run(_worker_report, [str(f) for f in files], str(out_dir)), identity)
    futures = client.map(
        _score_task,
        [str(f) for f in files],
        out_dir=str(out_dir),
        options=options,
        identity=identity,
        pure=False,
    )
    sources = {future.key: source for future, source in zip(futures, files, strict=True)}
    outcomes = {}
    with _progress(len(files), progress) as bar:
        for future in as_completed(futures, loop=client.loop):
            outcomes[future.key] = _outcome(future, sources[future.key])
            bar.update(1)
    remove_temporaries(files, out_dir)
    return combine_results(outcomes[future.key] for future in futures)


# --- which cluster ------------------------------------------------------------------------


@contextlib.contextmanager
def local_cluster(workers: int, threads_per_worker: int = 1) -> Iterator[Client]:
    """A LocalCluster of `workers` processes on loopback, closed (workers and all) on exit.

    Its ports are free ones the system picks, and it has no dashboard: a one-off run
    opens nothing an operator did not ask for. (Without a dashboard the scheduler still
    serves its health and metrics pages, on 8787 unless told otherwise: a free port here.)
    """
    cluster = LocalCluster(
        n_workers=workers,
        threads_per_worker=threads_per_worker,
        processes=True,
        host="127.0.0.1",
        scheduler_port=0,
        dashboard_address=None,
        scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
        silence_logs=logging.ERROR,
    )
    with cluster, Client(cluster, set_as_default=False) as client:
        yield client


@contextlib.contextmanager
def cluster_client(address: str, timeout: float | None = None) -> Iterator[Client]:
    """A client of the cluster whose scheduler is at `address`, once it has a worker.

    ClusterError if the address is not one, the scheduler does not answer within `timeout`
    seconds (config.dask_connect_seconds()), or it has no worker by then.
    """
    if not ADDRESS.fullmatch(address):
        raise ClusterError(
            f"--cluster {address!r} is not a Dask scheduler address: expected "
            "tcp://HOST:PORT (or tls://HOST:PORT), as `dask scheduler` prints it"
        )
    timeout = config.dask_connect_seconds() if timeout is None else timeout
    try:
        client = Client(address, timeout=timeout, set_as_default=False)
    except (OSError, TimeoutError) as error:
        raise ClusterError(
            f"cannot reach the Dask scheduler at {address} within {timeout:g} s ({error}): is "
            "`dask scheduler` running there, and its port open to this machine?"
        ) from None
    with client:
        try:
            client.wait_for_workers(1, timeout=timeout)
        except TimeoutError:
            raise ClusterError(
                f"the Dask scheduler at {address} has no worker (waited {timeout:g} s): start "
                f"some with `dask worker {address}` on machines with homevalue and the model"
            ) from None
        yield client
