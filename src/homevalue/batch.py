"""Score a file of houses of any size, chunk by chunk, with outputs that appear whole or not at all.

Reading, validating and scoring go a chunk at a time, so memory stays flat however large the
file is. Every input row ends in one of two outputs: `<name>.scored.<ext>` (the input's own
columns plus price, interval and flags) or `<name>.rejected.csv` (row, field, value,
reason). Both are written under temporary names and renamed into place only once complete.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import csv
import errno
import functools
import io
import os
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pandas as pd

from homevalue import config
from homevalue import explain as explaining
from homevalue.drift import Profile, reference_of
from homevalue.errors import BatchFileChangedError, BatchFileError, BatchOutputError, shown
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
    # The valid rows' histograms in the training distribution's bins (homevalue.drift):
    # additive, so the parts of a run sum to the run. None if the card has no such bins.
    profile: Profile | None = None

    @property
    def rows_read(self) -> int:
        return self.rows_scored + self.rows_rejected


# --- reading ------------------------------------------------------------------------------


@dataclass(frozen=True)
class FileLimits:
    """How wide and how long a batch file may be; config.py has the defaults and their reasons.

    Checked as the file is read, before any output is started, by the CLI, the inbox and
    the dashboard's upload alike (they all go through `score_file`).
    """

    columns: int = config.BATCH_MAX_COLUMNS
    cell_chars: int = config.BATCH_MAX_CELL_CHARS
    line_bytes: int = config.BATCH_MAX_LINE_BYTES

    @classmethod
    def from_environment(cls) -> FileLimits:
        """The limits as configured now (environment variables override the defaults)."""
        return cls(
            config.batch_max_columns(), config.batch_max_cell_chars(), config.batch_max_line_bytes()
        )


def _line_too_long(name: str, line: int, limits: FileLimits) -> BatchFileError:
    return BatchFileError(
        f"{name}: line {line} is longer than {limits.line_bytes:,} bytes, the limit "
        "(HOMEVALUE_BATCH_MAX_LINE_BYTES). Is it a CSV with one house per line? If so, shorten "
        "or drop its longest columns, or raise the limit"
    )


def _text_lines(handle: BinaryIO, limits: FileLimits, name: str) -> Iterator[str]:
    """The file's lines as text, each refused before it is held whole if over the line limit.

    Lines end in "\n", "\r\n" or (old Mac files) "\r", as pandas reads them.
    """
    encoding = "utf-8-sig"  # Excel's "CSV UTF-8" starts with a byte-order mark
    number, pending = 0, b""
    while block := handle.read(64 * 1024):
        lines = (pending + block).splitlines(keepends=True)
        pending = lines.pop()  # perhaps unfinished, or a "\r" whose "\n" comes next
        for line in lines:
            number += 1
            if len(line.rstrip(b"\r\n")) > limits.line_bytes:
                raise _line_too_long(name, number, limits)
            yield line.decode(encoding)
            encoding = "utf-8"
        if len(pending.rstrip(b"\r\n")) > limits.line_bytes:
            raise _line_too_long(name, number + 1, limits)
    if pending:
        yield pending.decode(encoding)


class _LineGuard(io.RawIOBase):
    """A binary file that refuses a line over the limit as the CSV parser reads it.

    pandas' parser has no such limit: fed a file without line ends it holds it whole. Each
    block it reads is checked here in one numpy pass, so the file is still read only once.
    """

    def __init__(self, raw: io.RawIOBase, limits: FileLimits, name: str):
        super().__init__()
        self.raw, self.limits, self.name = raw, limits, name
        self.line = 1  # the number of the line being read
        self.length = 0  # its bytes read so far
        self.after_carriage = False  # the last read ended in "\r"

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self.raw.close()
        super().close()

    def readinto(self, buffer) -> int:
        count = self.raw.readinto(buffer)
        self._check(np.frombuffer(buffer, np.uint8, count))
        return count

    def _check(self, block: np.ndarray) -> None:
        newline, carriage = block == ord("\n"), block == ord("\r")
        # A line ends at "\n", or at a "\r" not followed by one (old Mac files).
        ends = newline | carriage
        ends[:-1] &= ~(carriage[:-1] & newline[1:])
        if self.after_carriage and block.size and newline[0]:
            ends[0] = False  # the "\n" of a "\r\n" split between two reads: not a new line
            self.length -= 1
        self.after_carriage = bool(block.size and carriage[-1])
        (positions,) = np.nonzero(ends)
        if positions.size:
            lengths = np.diff(positions, prepend=-1) - 1
            lengths[0] += self.length
            over = np.flatnonzero(lengths > self.limits.line_bytes)
            if over.size:
                raise _line_too_long(self.name, self.line + int(over[0]), self.limits)
            self.line += int(positions.size)
            self.length = block.size - int(positions[-1]) - 1
        else:
            self.length += block.size
        if self.length > self.limits.line_bytes:
            raise _line_too_long(self.name, self.line, self.limits)


def _guarded_csv(path: Path, limits: FileLimits) -> io.BufferedReader:
    """`path` opened for pandas, which decodes it as it would a file opened by name."""
    return io.BufferedReader(_LineGuard(open(path, "rb", buffering=0), limits, path.name))


def _csv_header(path: Path, limits: FileLimits) -> list[str]:
    """The header as written (pandas would rename a repeated name to `name.1`).

    Read line by line under the line limit, and its width checked before pandas parses it:
    a 50,000-column header must cost milliseconds, not minutes.
    """
    try:
        with open(path, "rb") as handle:
            first = next(csv.reader(_text_lines(handle, limits, path.name)), None)
        if first is None:
            raise pd.errors.EmptyDataError
        check_width(first, limits, path.name)
        pd.read_csv(path, nrows=0, encoding="utf-8-sig")  # same parser errors as the real read
        return first
    except pd.errors.EmptyDataError as error:
        raise BatchFileError(f"{path.name} is empty: expected a CSV with a header row") from error
    except UnicodeDecodeError as error:
        raise _not_utf8(path, error) from error
    except (csv.Error, pd.errors.ParserError, ValueError) as error:
        raise BatchFileError(f"{path.name} is not a readable CSV: {error}") from error


def _not_utf8(path: Path, error: UnicodeDecodeError) -> BatchFileError:
    return BatchFileError(
        f"{path.name} is not UTF-8 text (byte 0x{error.object[error.start]:02x} near byte "
        f"{error.start} of a block): save it as 'CSV UTF-8' and drop it in again"
    )


def _read_csv(
    path: Path, chunk_rows: int, limits: FileLimits, threads: int | None = None
) -> Iterator[pd.DataFrame]:
    """The CSV in chunks of text cells: Arrow's parser while the file is regular, pandas'
    from the row where Arrow stopped otherwise.

    Arrow's reader is several times faster than pandas' and gives the same text cells for a
    regular file. Whatever it refuses (a row of another width, bytes that are not UTF-8, a
    line over the limit) is then read by pandas' parser, which says why in the words this
    job has always used ("Expected 20 fields in line 31, saw 22", "byte 0xe9"), and a short
    row is read as pandas always read it (its missing cells empty).
    """
    given = 0
    try:
        for chunk in _read_csv_arrow(path, chunk_rows, limits, threads):
            given += len(chunk)
            yield chunk
        return
    except _ArrowStopped:
        pass
    skipped = 0
    for chunk in _read_csv_pandas(path, chunk_rows, limits):
        if skipped < given:  # rows Arrow already gave (whole chunks)
            skipped += len(chunk)
            continue
        yield chunk


class _ArrowStopped(Exception):
    """Arrow's reader met something it reads differently from pandas', or refuses."""


def _read_csv_arrow(
    path: Path, chunk_rows: int, limits: FileLimits, threads: int | None
) -> Iterator[pd.DataFrame]:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    try:
        # pandas' names for the header (a repeated name becomes `name.1`), as before.
        names = list(pd.read_csv(path, nrows=0, encoding="utf-8-sig", dtype=str).columns)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as error:
        raise _ArrowStopped(str(error)) from None
    positional = [f"f{i}" for i in range(len(names))]
    options = {
        "read_options": pacsv.ReadOptions(
            column_names=positional,
            skip_rows=1,
            block_size=1 << 20,
            use_threads=_arrow_threads(threads),
        ),
        # A quoted cell may hold a line break (pandas reads it so); a row of another width
        # stops Arrow, and pandas reads the file from that chunk on.
        "parse_options": pacsv.ParseOptions(
            newlines_in_values=True, invalid_row_handler=lambda row: "error"
        ),
        # Every cell stays text, exactly as written; only an empty cell is missing (NaN),
        # as pandas' keep_default_na=False, na_values=[""] read it.
        "convert_options": pacsv.ConvertOptions(
            column_types=dict.fromkeys(positional, pa.string()),
            strings_can_be_null=True,
            quoted_strings_can_be_null=True,
            null_values=[""],
        ),
    }
    pending: list = []
    held, start = 0, 0
    try:
        with _guarded_csv(path, limits) as handle:
            reader = pacsv.open_csv(handle, **options)
            while True:
                try:
                    batch = reader.read_next_batch()
                except StopIteration:
                    break
                pending.append(batch)
                held += batch.num_rows
                while held >= chunk_rows:
                    table = pa.Table.from_batches(pending)
                    yield _arrow_frame(table.slice(0, chunk_rows), names, start)
                    rest = table.slice(chunk_rows)
                    pending, held, start = rest.to_batches(), held - chunk_rows, start + chunk_rows
    except (pa.ArrowException, BatchFileError, UnicodeDecodeError, ValueError) as error:
        raise _ArrowStopped(str(error)) from None
    if held:
        yield _arrow_frame(pa.Table.from_batches(pending), names, start)


def _arrow_frame(table, names: list[str], start: int) -> pd.DataFrame:
    frame = table.rename_columns(names).to_pandas()
    frame.index = pd.RangeIndex(start, start + len(frame))  # as pandas' chunks number rows
    return frame


def _read_csv_pandas(path: Path, chunk_rows: int, limits: FileLimits) -> Iterator[pd.DataFrame]:
    # Every cell stays text exactly as given, so ids like "00123" survive the round trip and
    # numbers come out as written: a parsed number column turns "2" into "2.0" once a chunk
    # holds a blank, and the output would then depend on the chunk size. Validation parses.
    try:
        with (
            _guarded_csv(path, limits) as handle,
            pd.read_csv(
                handle,
                dtype=str,
                chunksize=chunk_rows,
                encoding="utf-8-sig",
                keep_default_na=False,
                na_values=[""],
            ) as reader,
        ):
            yield from reader
    except UnicodeDecodeError as error:
        raise _not_utf8(path, error) from error
    except (pd.errors.ParserError, ValueError) as error:
        raise BatchFileError(f"{path.name} cannot be read as CSV: {error}") from error


def _not_parquet(path: Path, error: Exception) -> BatchFileError:
    return BatchFileError(f"{path.name} is not a readable Parquet file: {error}")


def _arrow_threads(threads: int | None) -> bool:
    """Whether Arrow's reader may use its pool. One thread means one: a Dask task or a
    1-thread run leaves Arrow's pool alone."""
    return threads is None or threads > 1


def _read_parquet(path: Path, chunk_rows: int, threads: int | None) -> Iterator[pd.DataFrame]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
        batches = parquet.iter_batches(batch_size=chunk_rows, use_threads=_arrow_threads(threads))
        for batch in batches:
            yield batch.to_pandas()
    except (pa.ArrowException, OSError) as error:
        raise _not_parquet(path, error) from error


def _is_parquet(path: Path) -> bool:
    return path.suffix.lower() in PARQUET_SUFFIXES


def read_chunks(
    path: Path, chunk_rows: int, limits: FileLimits | None = None, *, threads: int | None = None
) -> Iterator[pd.DataFrame]:
    """The file as DataFrames of at most `chunk_rows` rows; structural problems raise early.
    `threads` = 1 parses a CSV on this thread alone (default: Arrow's thread pool)."""
    suffix = path.suffix.lower()
    if suffix in CSV_SUFFIXES:
        return _read_csv(path, chunk_rows, limits or FileLimits.from_environment(), threads)
    if _is_parquet(path):
        return _read_parquet(path, chunk_rows, threads)
    raise BatchFileError(
        f"{path.name}: unsupported file type {suffix or '(none)'}; use .csv or .parquet"
    )


def output_columns(model: Model, explain: bool = False) -> list[str]:
    """The columns scoring adds to a file's own (and replaces if the file has them)."""
    return ["row", *PRICE_COLUMNS, *(explaining.columns(model.schema) if explain else [])]


def check_columns(columns: list[str], model: Model, name: str, explain: bool = False) -> None:
    """Refuse a file the model cannot use at all, before any output is started."""
    missing = [c for c in model.schema.required if c not in columns]
    if missing and len(columns) == 1 and ";" in str(columns[0]):
        raise BatchFileError(
            f"{name} looks separated by semicolons (its header is one column: "
            f"{str(columns[0])[:80]}); save it with commas as separators"
        )
    if missing:
        # A file's header names fields exactly (its other columns are carried through): a
        # column the one-house policy would read as a missing field is named, with the fix.
        loose = [(c, model.schema.field_for(c)) for c in columns]
        renames = [f"{c} to {field}" for c, field in loose if field in missing and c != field]
        hint = f" (header names must be exact: rename {', '.join(renames)})" if renames else ""
        raise BatchFileError(
            f"{name} lacks required column(s) {', '.join(missing)}; it has "
            f"{', '.join(map(str, columns)) or 'no columns'}. Required: "
            f"{', '.join(model.schema.required)}{hint}"
        )
    clash = [c for c in output_columns(model, explain) if c in columns]
    if clash:
        raise BatchFileError(
            f"{name} already has column(s) {', '.join(clash)}: is it an output file? "
            "Rename or drop those columns"
        )
    duplicated = sorted(str(c) for c, n in Counter(columns).items() if n > 1)
    if duplicated:
        raise BatchFileError(f"{name} has duplicate column names: {', '.join(duplicated)}")


def check_width(columns: list[str], limits: FileLimits, name: str) -> None:
    """Refuse a file wider than the limit before its rows are read.

    Every later step (parsing, neutralising formulas, writing) costs columns x rows: 50,000
    columns took minutes for 200 rows. The header is also held to the cell limit.
    """
    if len(columns) > limits.columns:
        raise BatchFileError(
            f"{name} has {len(columns):,} columns; the limit is {limits.columns:,} "
            f"(HOMEVALUE_BATCH_MAX_COLUMNS), and column {limits.columns + 1:,} is "
            f"{shown(columns[limits.columns])}. Keep the model's inputs and the columns you "
            "need carried through (ids, addresses), or raise the limit"
        )
    for number, column in enumerate(columns, start=1):
        if len(str(column)) > limits.cell_chars:
            raise BatchFileError(
                f"{name}: the name of column {number:,} holds {len(str(column)):,} characters; "
                f"the limit is {limits.cell_chars:,} (HOMEVALUE_BATCH_MAX_CELL_CHARS)"
            )


def check_cells(frame: pd.DataFrame, limits: FileLimits, name: str, first_row: int) -> None:
    """Refuse a cell over the limit, naming its row and column.

    One vectorised length per text column (pandas' Arrow strings): ~20 ms per 100,000-row
    chunk of an ordinary file. A long cell may span many short lines, so the line limit
    alone would not catch it.
    """
    for column in frame.columns:
        values = frame[column]
        if not (values.dtype == object or isinstance(values.dtype, pd.StringDtype)):
            continue
        try:
            lengths = values.str.len()
        except AttributeError:  # an object column that is not text (Parquet lists, say)
            continue
        over = lengths.gt(limits.cell_chars)
        if not over.any():
            continue
        position = int(np.argmax(over.to_numpy(dtype=bool)))
        raise BatchFileError(
            f"{name}: row {first_row + position}, column {shown(column)} holds "
            f"{int(lengths.iloc[position]):,} characters; the limit is {limits.cell_chars:,} "
            "(HOMEVALUE_BATCH_MAX_CELL_CHARS). Shorten or drop that column, or raise the limit"
        )


# --- writing ------------------------------------------------------------------------------


def neutralise_formulas(frame: pd.DataFrame) -> pd.DataFrame:
    """Prefix text cells a spreadsheet would run as a formula with an apostrophe (OWASP).

    Plain numbers such as -93.6 are left alone: they are data, not formulas. Vectorised:
    a risky-looking cell that is a plain decimal number (every longitude) is settled by one
    regular expression; only the rest (rare) go through pandas' number parser, which has
    the last word as before.
    """
    frame = frame.copy()
    for column in frame.columns:
        values = frame[column]
        if values.dtype != object and not pd.api.types.is_string_dtype(values.dtype):
            continue
        text = values if isinstance(values.dtype, pd.StringDtype) else values.astype("string")
        risky = _first_byte_in(text, _FORMULA_BYTES)
        if risky is None:  # not plain text: pandas looks at each cell
            risky = text.str.startswith(FORMULA_START).fillna(False).to_numpy(dtype=bool, copy=True)
        if not risky.any():  # digits and words alone: nothing to look at
            continue
        (positions,) = np.nonzero(risky)
        candidates = text.iloc[positions]
        plain = candidates.str.fullmatch(PLAIN_NUMBER).fillna(False).to_numpy(dtype=bool)
        rest = positions[~plain]
        numeric = pd.to_numeric(text.iloc[rest].str.strip(), errors="coerce").notna()
        risky[positions[plain]] = False
        risky[rest[numeric.to_numpy(dtype=bool)]] = False
        if risky.any():
            frame[column] = values.where(~risky, "'" + text)
    return frame


# A subset of what pd.to_numeric reads as a number, around whitespace str.strip() drops.
PLAIN_NUMBER = r"[ \t\r\n]*[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?[ \t\r\n]*"


def csv_bytes(frame: pd.DataFrame, *, header: bool) -> bytes | None:
    """`frame` as CSV, byte for byte what `frame.to_csv(index=False, lineterminator="\\r\\n")`
    writes, by Arrow's CSV writer or built with Arrow's compute functions; None for a frame
    of other than text and whole-number columns, which pandas then writes itself.

    Python's csv module (which pandas' writer uses) quotes a cell holding a comma, a quote
    or a line break ("\\r" or "\\n"), doubling its quotes; a missing cell is empty.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    if len(frame.columns) < 2:
        return None  # csv writes a lone empty cell as "": not worth a case of its own
    cells = []
    for _, values in frame.items():
        if pd.api.types.is_integer_dtype(values.dtype) and not pd.api.types.is_bool_dtype(
            values.dtype
        ):
            cells.append(pc.cast(pa.array(values, from_pandas=True), pa.large_string()))
            continue
        if not (values.dtype == object or pd.api.types.is_string_dtype(values.dtype)):
            return None
        try:
            cells.append(pa.array(values, type=pa.large_string(), from_pandas=True))
        except (pa.ArrowInvalid, pa.ArrowTypeError):  # an object column of non-text values
            return None
    lines = b""
    if len(frame):
        try:
            lines = _plain_csv_lines(cells)
        except pa.ArrowInvalid:  # a cell that needs quotes: Arrow's writer refuses it
            lines = _quoted_csv_lines(cells)
    if not header:
        return lines
    names = io.StringIO()
    csv.writer(names, lineterminator="\r\n").writerow([str(c) for c in frame.columns])
    return names.getvalue().encode() + lines


def _plain_csv_lines(cells: list) -> bytes:
    """Rows of text cells by Arrow's CSV writer, which refuses (ArrowInvalid) a cell holding
    a quote, comma or line break rather than quote it otherwise than the csv module would:
    without one, its bytes are the csv module's, in a third of the time of joining cells."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    table = pa.table({str(i): column for i, column in enumerate(cells)})
    options = pacsv.WriteOptions(include_header=False, quoting_style="none", eol="\r\n")
    stream = pa.BufferOutputStream()
    pacsv.write_csv(table, stream, options)
    return stream.getvalue().to_pybytes()


def _quoted_csv_lines(cells: list) -> bytes:
    """Rows of text cells joined with Arrow's compute functions, quoting where csv would."""
    import pyarrow as pa
    import pyarrow.compute as pc

    def text(value: str):
        return pa.scalar(value, type=pa.large_string())

    quote, empty = text('"'), text("")
    joined = []
    for given in cells:
        if _has_special_bytes(given):  # most columns never do: no per-cell work then
            doubled = pc.replace_substring(given, '"', '""')
            quoted = pc.binary_join_element_wise(quote, doubled, quote, empty)
            needs_quotes = pc.match_substring_regex(given, '[",\r\n]')
            given = pc.if_else(needs_quotes, quoted, given)
        joined.append(pc.fill_null(given, empty))
    rows = pc.binary_join_element_wise(*joined, text(","))
    rows = pc.binary_join_element_wise(rows, empty, text("\r\n"))
    if isinstance(rows, pa.ChunkedArray):  # columns read in several Arrow blocks
        rows = rows.combine_chunks()
    offsets = np.frombuffer(rows.buffers()[1], dtype=np.int64)
    offsets = offsets[rows.offset : rows.offset + len(rows) + 1]
    return rows.buffers()[2].to_pybytes()[offsets[0] : offsets[-1]]


def _first_byte_in(values: pd.Series, wanted: np.ndarray) -> np.ndarray | None:
    """Which cells of a text column start with one of the `wanted` (ASCII) bytes, as
    `str.startswith` of those characters says, from the offsets of Arrow's array: one
    lookup per cell, where a scan of every byte and six `startswith` passes cost ~5 ms a
    column per 100,000 rows. None for a column Arrow does not take as text."""
    import pyarrow as pa

    try:
        array = pa.array(values, type=pa.large_string(), from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return None
    found = []
    for chunk in array.chunks if isinstance(array, pa.ChunkedArray) else [array]:
        offsets = np.frombuffer(chunk.buffers()[1], dtype=np.int64)
        starts = offsets[chunk.offset : chunk.offset + len(chunk)]
        ends = offsets[chunk.offset + 1 : chunk.offset + len(chunk) + 1]
        data = chunk.buffers()[2]
        first = np.zeros(len(chunk), dtype=bool)
        if data is not None:
            nonempty = ends > starts
            first[nonempty] = wanted[np.frombuffer(data, dtype=np.uint8)[starts[nonempty]]]
        if chunk.null_count:
            first &= chunk.is_valid().to_numpy(zero_copy_only=False)
        found.append(first)
    return np.concatenate(found) if found else np.zeros(0, dtype=bool)


def _byte_set(characters: str) -> np.ndarray:
    found = np.zeros(256, dtype=bool)
    found[[ord(c) for c in characters]] = True
    return found


_SPECIAL_BYTES = _byte_set('",\r\n')  # what the csv module quotes a cell for
_FORMULA_BYTES = _byte_set("".join(FORMULA_START))


def _has_special_bytes(values) -> bool:
    return _has_bytes(values, _SPECIAL_BYTES)


def _has_bytes(values, wanted: np.ndarray) -> bool:
    """Whether any cell of a text column (Arrow's, or pandas' Arrow-backed) holds one of the
    `wanted` bytes.

    One lookup over the column's character data (a few ms per million cells), where the
    per-cell regular expression, replace and join cost ~60 ms a column per 200,000 rows.
    (A byte of a cell outside the array's slice can only give a needless, harmless pass.)
    """
    import pyarrow as pa

    if isinstance(values, pd.Series):
        try:
            values = pa.array(values, type=pa.string(), from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            return True  # not plain text: let the caller look cell by cell
    chunks = values.chunks if hasattr(values, "chunks") else [values]
    for chunk in chunks:
        data = chunk.buffers()[2]
        if data is not None and wanted[np.frombuffer(data, dtype=np.uint8)].any():
            return True
    return False


class AtomicFile:
    """A file written under a hidden temporary name and renamed into place on success."""

    def __init__(self, target: Path):
        self.target = target
        self.temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        self.committed = False

    def commit(self) -> None:
        with open(self.temporary, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(self.temporary, self.target)
        self.committed = True
        fsync_dir(self.target.parent)

    def discard(self) -> None:
        with contextlib.suppress(OSError):  # absent, or the folder turned read-only
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
        safe = neutralise_formulas(frame)
        data = csv_bytes(safe, header=not self.started)
        if data is None:  # columns Arrow is not asked to format: pandas writes them
            safe.to_csv(
                self.path,
                mode="a" if self.started else "w",
                header=not self.started,
                index=False,
                lineterminator="\r\n",
            )
        else:
            with open(self.path, "ab" if self.started else "wb") as handle:
                handle.write(data)
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


def _write_chunk(writes, scored_sink, rejected_sink, result) -> None:
    with writes():
        scored_sink.write(result.scored)
        rejected_sink.write(result.rejected)


_END = object()


class _Overlap:
    """Reading the next chunk and writing the last on threads of their own while this one
    is validated and priced, when `threads` > 1; in order on the caller's thread otherwise.

    Why: Arrow's parser, its compute functions, file writes and the compiled trees all
    release the GIL, so on two cores the stages run side by side. Chunks still go through
    validation, pricing and writing one at a time and in order; an error surfaces where
    it would have without the threads (a read's when its chunk is due, a write's before
    anything after it), and at most one read and one write are in flight.
    """

    def __init__(self, threads: int):
        self.pool = None
        if threads > 1:
            self.pool = concurrent.futures.ThreadPoolExecutor(2, "homevalue-batch")
        self.reading: concurrent.futures.Future | None = None
        self.writing: concurrent.futures.Future | None = None
        self.chunks: Iterator | None = None

    def ahead(self, chunks: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        """`chunks`, the next one read on the pool while the caller works on this one."""
        if self.pool is None:
            yield from chunks
            return
        self.chunks = chunks = iter(chunks)
        self.reading = self.pool.submit(next, chunks, _END)
        while (chunk := self.reading.result()) is not _END:
            self.reading = self.pool.submit(next, chunks, _END)
            yield chunk
        self.reading = None

    def behind(self, write: Callable, *arguments) -> None:
        """`write(*arguments)` on the pool, once the previous write is done (its error, if
        it failed, is raised here, before this chunk's write begins)."""
        if self.pool is None:
            write(*arguments)
            return
        self._last_write()
        self.writing = self.pool.submit(write, *arguments)

    def finish(self) -> None:
        """Wait for the last write (raising its error) and end the threads."""
        if self.pool is not None:
            self._last_write()
            self.pool.shutdown(wait=True)

    def _last_write(self) -> None:
        writing, self.writing = self.writing, None
        if writing is not None:
            writing.result()

    def stop(self) -> BaseException | None:
        """After a failure: wait for the threads' work, close the reader, and give the error
        of a write still unreported (it happened before the failure being handled)."""
        if self.pool is None:
            return None
        failed = None
        if self.writing is not None:
            failed = self.writing.exception()
            self.writing = None
        if self.reading is not None:
            self.reading.exception()  # wait: a generator cannot be closed while it runs
            self.reading = None
        if self.chunks is not None and hasattr(self.chunks, "close"):
            self.chunks.close()  # its files and Arrow reader, now rather than at collection
        self.pool.shutdown(wait=True)
        return failed


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
    limits: FileLimits | None = None,
    seen: tuple[int, int] | None = None,
    explain: bool = False,
) -> BatchResult:
    """Score `source` into `out_dir`, or raise leaving no output.

    Raises BatchFileError if the file cannot be scored (not a table, wrong columns, over a
    `limits`), BatchOutputError if `out_dir` cannot be written (the file is not at fault),
    BatchFileChangedError if the file's size or time differ from `seen` (by default, as
    they were when scoring began) once it has been read: it is still being written.
    Memory is bounded by `chunk_rows`, not by the file's size. `on_rows` is told the number
    of rows done after each chunk (the dashboard's progress bar). With `explain`, each
    scored row also gets its base price and one column per feature, its contribution in
    dollars (homevalue.explain; about 2 ms a row, twenty times or more the cost of the
    price alone, spread over `threads`).
    """
    source, out_dir = Path(source), Path(out_dir)
    writes = functools.partial(
        writing_into,
        out_dir,
        f"cannot write the outputs of {source.name} in",
        "Nothing was written; free or fix that folder and run again",
    )
    limits = limits or FileLimits.from_environment()
    seen = seen or fingerprint(source)
    chunks = read_chunks(source, chunk_rows, limits, threads=threads)
    # The header as written (pandas renames a repeated name), no wider than the limit: a
    # file refused here costs milliseconds, and nothing is created.
    columns = _columns_of(source, limits)
    model = model or load_model()
    check_columns(columns, model, source.name, explain)
    reference = reference_of(model.card)
    profile = reference.empty_profile() if reference is not None else None
    if seen[0] >= config.BATCH_COMPILE_MIN_BYTES:
        model.compiled(build=True)  # pays for itself in a file this large; at most once
    with writes():
        out_dir.mkdir(parents=True, exist_ok=True)
    scored_path, rejected_path = output_paths(source, out_dir, tag)
    scored_file, rejected_file = AtomicFile(scored_path), AtomicFile(rejected_path)
    scored_sink = (_ParquetSink if _is_parquet(source) else _CsvSink)(scored_file.temporary)
    rejected_sink = _CsvSink(rejected_file.temporary)
    counts = {"scored": 0, "rejected_rows": 0}
    first_row = 1
    overlap = _Overlap(threads)
    try:
        with _progress(progress) as bar:
            for chunk in overlap.ahead(chunks):
                check_cells(chunk, limits, source.name, first_row)
                result = score_frame(
                    chunk, model=model, first_row=first_row, threads=threads, explain=explain
                )
                overlap.behind(_write_chunk, writes, scored_sink, rejected_sink, result)
                if profile is not None:  # drift: this chunk's valid rows, binned
                    profile.add(reference, result.inputs, result.scored["predicted_price"])
                counts["scored"] += len(result.scored)
                counts["rejected_rows"] += len(chunk) - len(result.scored)
                first_row += len(chunk)
                bar.update(len(chunk))
                if on_rows is not None:
                    on_rows(first_row - 1)
                # Held no longer than needed: each 100k-row chunk alive costs ~45 MiB. One
                # thread holds one at a time; with more, at most three (reading, scoring,
                # writing), whatever the file's size.
                del chunk, result
            overlap.finish()
        _check_unchanged(source, seen)
        with writes():
            if first_row == 1:  # header only, or an empty Parquet file
                added = output_columns(model, explain)
                empty = pd.DataFrame(columns=[added[0], *columns, *added[1:]])
                scored_sink.write(empty)
                rejected_sink.write(pd.DataFrame(columns=REJECTED_COLUMNS))
            scored_sink.close()
            rejected_sink.close()
            rejected_file.commit()
            scored_file.commit()
    except BaseException as error:
        # A write that failed behind this chunk came first: its error is the one to raise.
        earlier = overlap.stop()
        scored_file.discard()
        rejected_file.discard()
        if rejected_file.committed and not scored_file.committed:  # both or neither
            with contextlib.suppress(OSError):
                rejected_file.target.unlink()
        if earlier is not None and earlier is not error:
            raise earlier from earlier.__cause__  # its own cause (the OSError) kept
        raise
    return BatchResult(
        source,
        scored_path,
        rejected_path,
        counts["scored"],
        counts["rejected_rows"],
        model.version,
        profile,
    )


def fingerprint(path: Path) -> tuple[int, int]:
    """Size and modification time: what a writer still appending to the file changes."""
    status = os.stat(path)
    return status.st_size, status.st_mtime_ns


def _check_unchanged(source: Path, seen: tuple[int, int]) -> None:
    now = fingerprint(source)
    if now != seen:
        raise BatchFileChangedError(
            f"{source.name} changed while it was being scored ({seen[0]:,} bytes before, "
            f"{now[0]:,} after): it is still being written. Nothing was written; score it "
            "once it is complete"
        )


_UNWRITABLE = {
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.EROFS: "the file system is read-only",
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EFBIG: (
        "file too large for the file system or this process's file-size limit (ulimit -f)"
    ),
}


@contextlib.contextmanager
def writing_into(folder: Path, action: str, advice: str) -> Iterator[None]:
    """Turn a failed write in `folder` into one line an operator can act on, not a
    traceback: "<action> <folder>: <why>. <advice>" (the batch job's and the inbox's)."""
    try:
        yield
    except OSError as error:
        why = _unwritable_reason(error, folder)
        raise BatchOutputError(f"{action} {folder}: {why}. {advice}") from error


def _unwritable_reason(error: OSError, folder: Path) -> str:
    """Why `folder` cannot be written, in the words an operator would search for."""
    with contextlib.suppress(OSError):
        if folder.exists() and not folder.is_dir():
            return "it is a file, not a folder"
    if error.errno in (errno.EEXIST, errno.ENOTDIR):
        return "part of that path is a file, not a folder"
    return _UNWRITABLE.get(error.errno) or str(error.strerror or error).lower()


def _columns_of(source: Path, limits: FileLimits) -> list[str]:
    if not _is_parquet(source):
        return _csv_header(source, limits)
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(source)
        columns, leaves = list(parquet.schema_arrow.names), parquet.metadata.num_columns
    except (pa.ArrowException, OSError) as error:
        raise _not_parquet(source, error) from error
    check_width(columns, limits, source.name)
    if leaves > limits.columns:
        raise BatchFileError(
            f"{source.name} has {leaves:,} columns once its nested columns are counted; the "
            f"limit is {limits.columns:,} (HOMEVALUE_BATCH_MAX_COLUMNS). Flatten or drop them"
        )
    return columns
