"""One run of `homevalue batch score`: which files, one outcome per file, the run's totals.

A run takes files, folders and glob patterns, scores every file it finds (here, one after
another, or on a Dask cluster: homevalue.scaleout) and combines what each file produced in
one place, `combine_results`, so a run's totals are computed the same way wherever its
files were scored. A file that cannot be scored does not stop the others: it is one
failure, with the same message a single-file run prints.
"""

from __future__ import annotations

import glob
import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as installed_version
from pathlib import Path

from homevalue import config
from homevalue.batch import (
    PARQUET_SUFFIXES,
    BatchResult,
    output_paths,
    score_file,
)
from homevalue.errors import BatchFileError, HomevalueError
from homevalue.model import Model

# What a folder or a glob contributes: .csv and Parquet files. A .txt file is scored only
# when named (a folder's notes.txt or an inbox's x.error.txt is not a table of houses).
LISTED_SUFFIXES = {".csv"} | PARQUET_SUFFIXES
# Names a folder or a glob never contributes: hidden files, files still being copied in
# (as the inbox ignores them), and this job's own outputs (scoring those would be refused).
SKIPPED_ENDINGS = (".part", ".tmp", ".partial", ".crdownload")
OUTPUT_STEMS = (".scored", ".rejected")
GLOB_CHARACTERS = set("*?[")


@dataclass(frozen=True)
class ScoreOptions:
    """How each file of a run is scored (the `score_file` options a run passes on)."""

    chunk_rows: int = config.BATCH_CHUNK_ROWS
    explain: bool = False
    threads: int = 2


@dataclass(frozen=True)
class FileFailure:
    """A file of the run that could not be scored, and the one-line reason."""

    source: Path
    error: str


@dataclass(frozen=True)
class RunResult:
    """What a run produced: each file's result, each failure, and the totals.

    Built only by `combine_results`, whichever way the files were scored.
    """

    files: tuple[BatchResult, ...]
    failures: tuple[FileFailure, ...]
    rows_scored: int
    rows_rejected: int
    model_version: str | None

    @property
    def rows_read(self) -> int:
        return self.rows_scored + self.rows_rejected


def combine_results(outcomes: Iterable[BatchResult | FileFailure]) -> RunResult:
    """The run's result from its files' outcomes, in the order given.

    The one place a run's parts are added up, so a run scored on a cluster is accounted
    exactly as one scored here. Raises HomevalueError if the parts were priced by different
    models (a worker with another model folder): their totals would mean nothing.
    """
    outcomes = list(outcomes)
    files = tuple(o for o in outcomes if isinstance(o, BatchResult))
    failures = tuple(o for o in outcomes if isinstance(o, FileFailure))
    versions = sorted({r.model_version for r in files})
    if len(versions) > 1:
        raise HomevalueError(
            f"the files of this run were priced by different models ({', '.join(versions)}): "
            "every worker must have the same model folder as this client"
        )
    return RunResult(
        files=files,
        failures=failures,
        rows_scored=sum(r.rows_scored for r in files),
        rows_rejected=sum(r.rows_rejected for r in files),
        model_version=versions[0] if versions else None,
    )


# --- which files -------------------------------------------------------------------------


def _listed(path: Path) -> bool:
    """Whether a folder listing or a glob includes this file."""
    name = path.name
    return (
        path.suffix.lower() in LISTED_SUFFIXES
        and not name.startswith(".")
        and not name.endswith(SKIPPED_ENDINGS)
        and not path.stem.endswith(OUTPUT_STEMS)
        and path.is_file()
    )


def _expand(given: str) -> list[Path]:
    path = Path(given)
    if path.is_file():  # named: scored even if its type is wrong, to say so
        return [path]
    if path.is_dir():
        found = sorted(p for p in path.iterdir() if _listed(p))
        if not found:
            raise BatchFileError(
                f"{given} holds no file to score: expected .csv or .parquet files (hidden "
                "files, *.part and this job's *.scored.* / *.rejected.csv outputs are skipped)"
            )
        return found
    if GLOB_CHARACTERS & set(given):
        matches = [Path(m) for m in glob.glob(given)]
        found = sorted(p for p in matches if _listed(p))
        if not found:
            also = f" ({len(matches)} other name(s) matched)" if matches else ""
            raise BatchFileError(f"no .csv or .parquet file matches {given}{also}")
        return found
    if path.exists():
        raise BatchFileError(f"{given} is neither a file nor a folder")
    raise BatchFileError(f"{given}: no such file or folder")


def input_files(paths: Sequence[str | Path]) -> list[Path]:
    """The files a run scores, each once, in the order given (a folder's or a glob's files
    sorted by name). Raises BatchFileError naming a path that gives nothing to score."""
    files: dict[Path, None] = {}
    for given in paths:
        for path in _expand(str(given)):
            files.setdefault(path.absolute(), None)
    if not files:
        raise BatchFileError("no file to score: name a file, a folder or a glob pattern")
    return [Path(p) for p in files]


def check_outputs(files: Sequence[Path], out_dir: Path) -> None:
    """Refuse a run two of whose files would write the same output, or one of whose files
    is another's output: one would overwrite the other (or its own input) unseen."""
    owner: dict[Path, Path] = {}
    for source in files:
        for target in output_paths(source, out_dir):
            target = target.absolute()
            if target in owner:
                raise BatchFileError(
                    f"{owner[target]} and {source} would both write {target.name} in "
                    f"{out_dir}: score them into different --out folders, or rename one"
                )
            owner[target] = source
    sources = {s.absolute() for s in files}
    for target, source in owner.items():
        if target in sources:
            raise BatchFileError(
                f"{target} is both an input of this run and the output of {source}: "
                "choose another --out folder"
            )


# --- scoring each file --------------------------------------------------------------------


def score_one(
    source: Path,
    out_dir: Path,
    model: Model | None,
    options: ScoreOptions,
    *,
    progress: bool | None,
) -> BatchResult | FileFailure:
    """One file's outcome: its result, or why it could not be scored (no output left).

    With no `model`, score_file loads it once the file's shape is checked, so a file
    refused at once (too wide, wrong columns) costs milliseconds.
    """
    try:
        return score_file(
            source,
            out_dir,
            model=model,
            chunk_rows=options.chunk_rows,
            threads=options.threads,
            explain=options.explain,
            progress=progress,
        )
    except HomevalueError as error:
        return FileFailure(source, str(error))
    except OSError as error:  # gone or unreadable since the run listed it
        reason = (error.strerror or str(error)).lower()
        return FileFailure(source, f"{source.name} cannot be read: {reason}")


def score_here(
    files: Sequence[Path],
    out_dir: Path,
    model: Model | None = None,
    options: ScoreOptions = ScoreOptions(),
    *,
    progress: bool | None = None,
) -> RunResult:
    """Score the files one after another in this process (the default, as cron runs it)."""
    return combine_results(
        score_one(source, out_dir, model, options, progress=progress) for source in files
    )


def model_identity(model: Model) -> str:
    """What must be the same wherever a run's files are priced: the card (which holds the
    booster's and the pipeline's hashes, the intervals and the bands) and this package."""
    card = json.dumps(model.card, sort_keys=True).encode()
    try:
        package = installed_version("homevalue")
    except PackageNotFoundError:  # running from a source tree that is not installed
        package = "not installed"
    digest = hashlib.sha256(card).hexdigest()[:12]
    return f"model {model.version} (card {digest}), homevalue {package}"
