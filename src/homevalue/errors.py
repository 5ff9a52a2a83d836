"""The package's own exceptions: every message names the problem and the fix."""

from __future__ import annotations

from dataclasses import dataclass


class HomevalueError(Exception):
    """Base class: anything homevalue raises on purpose."""


@dataclass(frozen=True)
class Problem:
    """One reason an input was refused, in terms a person can act on."""

    field: str
    value: object
    reason: str
    row: int | None = None

    def __str__(self) -> str:
        where = f"row {self.row}, " if self.row is not None else ""
        return f"{where}{self.field} = {shown(self.value)}: {self.reason}"


def shown(value: object, limit: int = 60) -> str:
    """A value as it can be quoted in a message: short, and never failing to print."""
    try:
        text = repr(value)
    except ValueError:  # e.g. an int too long for Python to print
        text = f"<{type(value).__name__} too large to show>"
    return text if len(text) <= limit else text[: limit - 1] + "…"


class ValidationError(HomevalueError, ValueError):
    """Input that does not fit the model card's schema; holds every problem found."""

    def __init__(self, problems: list[Problem]):
        self.problems = list(problems)
        super().__init__("; ".join(str(p) for p in self.problems) or "invalid input")


class ModelError(HomevalueError):
    """The model folder cannot be used as it is."""


class ModelMissingError(ModelError, FileNotFoundError):
    """The artifact or its card is absent."""


class ModelVersionError(ModelError):
    """The artifact was trained with other library versions than this environment has."""


class ModelSchemaError(ModelError):
    """The artifact and its card disagree, or the file was changed after training."""


class ModelFileError(ModelError):
    """A model file cannot be used as it is: not UTF-8 or not JSON, cut short, of the wrong
    shape, refused by LightGBM, not a regular file, or outside the model folder."""


class ModelRuntimeError(ModelError):
    """This environment cannot run the model: LightGBM's library is missing or broken."""


class BatchFileError(HomevalueError):
    """A batch file that cannot be scored at all (not a table, wrong columns, wrong encoding)."""


class BatchOutputError(HomevalueError):
    """The outputs cannot be written (folder read-only, full, not a folder).

    The input is not at fault: the inbox leaves it where it is, to be scored once the
    operator has fixed the folder.
    """


class BatchFileChangedError(HomevalueError):
    """The input changed while it was being scored: it is still being written."""


class ClusterError(HomevalueError):
    """A Dask cluster cannot score the run: unreachable, without workers, or with a worker
    that prices differently from this client or cannot see the run's files."""


class MetricsTokenError(HomevalueError):
    """HOMEVALUE_METRICS_TOKEN is set but unusable: the server refuses to start rather than
    serve its metrics to whoever reaches it. The message never shows the token."""


class ApiKeyError(HomevalueError):
    """The configured API keys cannot be used: the API refuses to start rather than run open
    by mistake. The message names the setting and the key's position, never a key."""


class FeedbackLimitError(HomevalueError):
    """A report refused because its sender (or everyone, today) has sent the most the
    store takes; nothing was written. `retry_after` is in whole seconds."""

    def __init__(self, message: str, retry_after: int):
        super().__init__(message)
        self.retry_after = retry_after


class FeedbackStoreError(HomevalueError):
    """The feedback store cannot be used now: busy past the wait, unwritable, or damaged.
    `retry_after` (seconds) is set when trying again soon may work (busy)."""

    def __init__(self, message: str, retry_after: int | None = None):
        super().__init__(message)
        self.retry_after = retry_after
