"""Score a file of houses of any size, chunk by chunk, with outputs that appear whole or not at all.

Reading, validating and scoring go a chunk at a time, so memory stays flat however large the
file is. Every input row ends in one of two outputs: `<name>.scored.<ext>` (the input's own
columns plus price, interval and flags) or `<name>.rejected.csv` (row, field, value,
reason). Both are written under temporary names and renamed into place only once complete.
"""

from __future__ import annotations

import contextlib
import csv
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from homevalue import config
from homevalue.errors import BatchFileError
from homevalue.model import Model, load_model
from homevalue.predict import PRICE_COLUMNS, score_frame

CSV_SUFFIXES = {".csv", ".txt"}
PARQUET_SUFFIXES = {".parquet", ".pq"}
REJECTED_COLUMNS = ["row", "field", "value", "reason"]
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True)
class BatchResult:
    """What one file produced."""

    source: Path
    scored_path: Path
    rejected_path: Path
    rows_scored: int
    rows_rejected: int
    model_version: str

    @property
    def rows_read(self) -> int:
        return self.rows_scored + self.rows_rejected


# --- reading ------------------------------------------------------------------------------


def _csv_header(path: Path) -> list[str]:
    """The header as written (pandas would rename a repeated name to `name.1`).

    Files are read as "utf-8-sig": Excel's "CSV UTF-8" starts with a byte-order mark that
    would otherwise stick to the first column's name.
    """
    try:
        with open(path, encoding="utf-8-sig", newline="") as handle:
            first = next(csv.reader(handle), None)
        if first is None:
            raise pd.errors.EmptyDataError
        pd.read_csv(path, nrows=0, encoding="utf-8-sig")  # same parser errors as the real read
        return first
    except pd.errors.EmptyDataError as error:
        raise BatchFileError(f"{path.name} is empty: expected a CSV with a header row") from error
    except UnicodeDecodeError as error:
        raise _not_utf8(path, error) from error
    except (pd.errors.ParserError, ValueError) as error:
        raise BatchFileError(f"{path.name} is not a readable CSV: {error}") from error


def _not_utf8(path: Path, error: UnicodeDecodeError) -> BatchFileError:
    return BatchFileError(
        f"{path.name} is not UTF-8 text (byte 0x{error.object[error.start]:02x} near byte "
        f"{error.start} of a block): save it as 'CSV UTF-8' and drop it in again"
    )


def _read_csv(path: Path, chunk_rows: int) -> Iterator[pd.DataFrame]:
    # Every cell stays text exactly as given, so ids like "00123" survive the round trip and
    # numbers come out as written: a parsed number column turns "2" into "2.0" once a chunk
    # holds a blank, and the output would then depend on the chunk size. Validation parses.
    reader = pd.read_csv(
        path,
        dtype=str,
        chunksize=chunk_rows,
        encoding="utf-8-sig",
        keep_default_na=False,
        na_values=[""],
    )
    try:
        with reader:
            yield from reader
    except UnicodeDecodeError as error:
        raise _not_utf8(path, error) from error
    except (pd.errors.ParserError, ValueError) as error:
        raise BatchFileError(f"{path.name} cannot be read as CSV: {error}") from error


def _not_parquet(path: Path, error: Exception) -> BatchFileError:
    return BatchFileError(f"{path.name} is not a readable Parquet file: {error}")


def _read_parquet(path: Path, chunk_rows: int) -> Iterator[pd.DataFrame]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
        for batch in parquet.iter_batches(batch_size=chunk_rows):
            yield batch.to_pandas()
    except (pa.ArrowException, OSError) as error:
        raise _not_parquet(path, error) from error


def _is_parquet(path: Path) -> bool:
    return path.suffix.lower() in PARQUET_SUFFIXES


def read_chunks(path: Path, chunk_rows: int) -> Iterator[pd.DataFrame]:
    """The file as DataFrames of at most `chunk_rows` rows; structural problems raise early."""
    suffix = path.suffix.lower()
    if suffix in CSV_SUFFIXES:
        return _read_csv(path, chunk_rows)
    if _is_parquet(path):
        return _read_parquet(path, chunk_rows)
    raise BatchFileError(
        f"{path.name}: unsupported file type {suffix or '(none)'}; use .csv or .parquet"
    )


def check_columns(columns: list[str], model: Model, name: str) -> None:
    """Refuse a file the model cannot use at all, before any output is started."""
    missing = [c for c in model.schema.required if c not in columns]
    if missing and len(columns) == 1 and ";" in str(columns[0]):
        raise BatchFileError(
            f"{name} looks separated by semicolons (its header is one column: "
            f"{str(columns[0])[:80]}); save it with commas as separators"
        )
    if missing:
        raise BatchFileError(
            f"{name} lacks required column(s) {', '.join(missing)}; it has "
            f"{', '.join(map(str, columns)) or 'no columns'}. Required: "
            f"{', '.join(model.schema.required)}"
        )
    clash = [c for c in ["row", *PRICE_COLUMNS] if c in columns]
    if clash:
        raise BatchFileError(
            f"{name} already has column(s) {', '.join(clash)}: is it an output file? "
            "Rename or drop those columns"
        )
    duplicated = sorted({str(c) for c in columns if columns.count(c) > 1})
    if duplicated:
        raise BatchFileError(f"{name} has duplicate column names: {', '.join(duplicated)}")


# --- writing ------------------------------------------------------------------------------


def neutralise_formulas(frame: pd.DataFrame) -> pd.DataFrame:
    """Prefix text cells a spreadsheet would run as a formula with an apostrophe (OWASP).

    Plain numbers such as -93.6 are left alone: they are data, not formulas.
    """
    frame = frame.copy()
    for column in frame.columns:
        values = frame[column]
        if values.dtype != object and not pd.api.types.is_string_dtype(values.dtype):
            continue
        text = values.astype("string")
        risky = text.str.startswith(FORMULA_START).fillna(False)
        if risky.any():
            numeric = pd.to_numeric(text[risky].str.strip(), errors="coerce").notna()
            risky.loc[risky[risky].index[numeric.to_numpy()]] = False
            frame[column] = values.where(~risky, "'" + text)
    return frame


class AtomicFile:
    """A file written under a hidden temporary name and renamed into place on success."""

    def __init__(self, target: Path):
        self.target = target
        self.temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")

    def commit(self) -> None:
        with open(self.temporary, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(self.temporary, self.target)
        fsync_dir(self.target.parent)

    def discard(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.temporary.unlink()


def fsync_dir(folder: Path) -> None:
    """Make a rename durable: the directory entry must reach the disk too."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _CsvSink:
    def __init__(self, path: Path):
        self.path = path
        self.started = False

    def write(self, frame: pd.DataFrame) -> None:
        # "\r\n" (RFC 4180) also makes the csv writer quote a cell holding a bare "\r"; with
        # "\n" such a cell is written unquoted and every reader splits the row there.
        neutralise_formulas(frame).to_csv(
            self.path,
            mode="a" if self.started else "w",
            header=not self.started,
            index=False,
            lineterminator="\r\n",
        )
        self.started = True

    def close(self) -> None:
        if not self.started:
            self.path.write_text("")


class _ParquetSink:
    def __init__(self, path: Path):
        self.path = path
        self.writer = None

    def write(self, frame: pd.DataFrame) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pandas(frame, preserve_index=False)
        if self.writer is None:
            self.writer = pq.ParquetWriter(self.path, table.schema)
        self.writer.write_table(table.cast(self.writer.schema))

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        else:
            self.path.write_bytes(b"")


# --- scoring ------------------------------------------------------------------------------


def output_paths(source: Path, out_dir: Path, tag: str = "") -> tuple[Path, Path]:
    """Where a file's results go: `<stem>[.tag].scored.<ext>` and `<stem>[.tag].rejected.csv`."""
    stem = source.stem + (f".{tag}" if tag else "")
    ext = ".parquet" if _is_parquet(source) else ".csv"
    return out_dir / f"{stem}.scored{ext}", out_dir / f"{stem}.rejected.csv"


def _progress(enabled: bool | None):
    from tqdm import tqdm

    enabled = sys.stderr.isatty() if enabled is None else enabled
    return tqdm(unit="rows", unit_scale=True, disable=not enabled, file=sys.stderr)


def score_file(
    source: Path,
    out_dir: Path,
    *,
    model: Model | None = None,
    chunk_rows: int = config.BATCH_CHUNK_ROWS,
    tag: str = "",
    progress: bool | None = None,
    threads: int = 2,
    on_rows: Callable[[int], None] | None = None,
) -> BatchResult:
    """Score `source` into `out_dir`; raise BatchFileError, leaving no output, if it cannot.

    Memory is bounded by `chunk_rows`, not by the file's size. `on_rows` is told the number
    of rows done after each chunk (the dashboard's progress bar).
    """
    model = model or load_model()
    source, out_dir = Path(source), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    scored_path, rejected_path = output_paths(source, out_dir, tag)
    scored_file, rejected_file = AtomicFile(scored_path), AtomicFile(rejected_path)
    scored_sink = (_ParquetSink if _is_parquet(source) else _CsvSink)(scored_file.temporary)
    rejected_sink = _CsvSink(rejected_file.temporary)
    counts = {"scored": 0, "rejected_rows": 0}
    first_row = 1
    try:
        chunks = read_chunks(source, chunk_rows)
        columns = _columns_of(source)  # the header as written: pandas renames a repeated name
        check_columns(columns, model, source.name)
        with _progress(progress) as bar:
            for chunk in chunks:
                result = score_frame(chunk, model=model, first_row=first_row, threads=threads)
                scored_sink.write(result.scored)
                rejected_sink.write(result.rejected)
                counts["scored"] += len(result.scored)
                counts["rejected_rows"] += len(chunk) - len(result.scored)
                first_row += len(chunk)
                bar.update(len(chunk))
                if on_rows is not None:
                    on_rows(first_row - 1)
                # Drop this chunk before the reader parses the next: otherwise two chunks'
                # frames are alive at once and the peak is ~2 chunks (+45 MiB per 100k rows).
                del chunk, result
        if first_row == 1:  # header only, or an empty Parquet file
            empty = pd.DataFrame(columns=["row", *columns, *PRICE_COLUMNS])
            scored_sink.write(empty)
            rejected_sink.write(pd.DataFrame(columns=REJECTED_COLUMNS))
        scored_sink.close()
        rejected_sink.close()
        rejected_file.commit()
        scored_file.commit()
    except BaseException:
        scored_file.discard()
        rejected_file.discard()
        raise
    return BatchResult(
        source, scored_path, rejected_path, counts["scored"], counts["rejected_rows"],
        model.version,
    )  # fmt: skip


def _columns_of(source: Path) -> list[str]:
    if _is_parquet(source):
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            return list(pq.ParquetFile(source).schema_arrow.names)
        except (pa.ArrowException, OSError) as error:
            raise _not_parquet(source, error) from error
    return _csv_header(source)
