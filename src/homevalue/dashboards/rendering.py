"""Voilà's page renders, compiling the page templates once per server instead of per viewer.

Voilà (0.5.x) builds a new nbconvert exporter, and with it a new Jinja environment, for
every page it renders: the pool renders one for every preheated kernel it starts, so once
per new viewer. Each new environment compiled every template of the page again (our
index.html.j2 and the lab and base templates it extends), the largest part of what the
server spent on a new viewer (measured: README "Server CPU per viewer").

Jinja's own hook for this is a bytecode cache: `COMPILED_TEMPLATES` keeps each template's
compiled code in memory for every environment of this process. An entry is used only when
the template's source is unchanged (its checksum: an edited template compiles again) and
the environment would compile it the same way (`compile_settings`: its syntax, extensions,
async mode, and the filters and tests it knows, which Jinja binds at compile time).

Voilà has no setting for the exporter's environment: the pool's renderer factory
(`kernels.LimitedKernelManager`) hands each renderer to `share_compiled_templates`, which
gives the exporter's environment the cache once Voilà has built that exporter. That relies
on how Voilà 0.5 renders a page, so `check_voila` refuses another Voilà with a message that
says what to check.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from types import CodeType

import jinja2
import voila
from jinja2.bccache import Bucket, BytecodeCache
from voila.notebook_renderer import NotebookRenderer

from homevalue import config

VOILA_SERIES = "0.5."  # the Voilà whose renderer and pool this module was written against


class VoilaVersionError(RuntimeError):
    """The installed Voilà is not the one this module's hook was written for."""


def check_voila(version: str | None = None) -> None:
    """Refuse a Voilà (by default the installed one) whose page rendering may differ from
    0.5's (the hook would then do nothing or break pages), with what to check first."""
    version = voila.__version__ if version is None else version
    if not version.startswith(VOILA_SERIES):
        raise VoilaVersionError(
            f"homevalue.dashboards.rendering was written for voila {VOILA_SERIES}x and this "
            f"environment has voila {version}: check that NotebookRenderer.initialize still "
            "builds the page's exporter and VoilaKernelManager._notebook_renderer_factory "
            "still makes the pool's renderers, then update VOILA_SERIES (or install the "
            "pinned voila: `make install`)"
        )


def _named(value: object) -> str:
    """A stable name for a callable setting (its module and qualified name); other values
    as their repr."""
    if callable(value):
        module = getattr(value, "__module__", None) or type(value).__module__
        name = getattr(value, "__qualname__", None) or type(value).__qualname__
        return f"{module}.{name}@{id(value)}"
    return repr(value)


def compile_settings(environment: jinja2.Environment) -> str:
    """A digest of everything besides the source that decides a template's compiled code.

    The syntax (delimiters, whitespace handling), the extensions, async mode, autoescaping
    and finalize (callables by identity: a different function is another setting), and the
    names of the filters and tests with how each wants its context: Jinja checks them and
    binds that argument when it compiles a call to one.
    """

    def known(functions: dict) -> list[tuple[str, str]]:
        return sorted(
            (name, repr(getattr(f, "jinja_pass_arg", None))) for name, f in functions.items()
        )

    settings = (
        environment.block_start_string,
        environment.block_end_string,
        environment.variable_start_string,
        environment.variable_end_string,
        environment.comment_start_string,
        environment.comment_end_string,
        environment.line_statement_prefix,
        environment.line_comment_prefix,
        environment.trim_blocks,
        environment.lstrip_blocks,
        environment.newline_sequence,
        environment.keep_trailing_newline,
        environment.optimized,
        environment.is_async,
        _named(environment.autoescape),
        _named(environment.finalize) if environment.finalize is not None else None,
        _named(environment.code_generator_class),
        sorted(environment.extensions),
        known(environment.filters),
        known(environment.tests),
    )
    return hashlib.sha1(repr(settings).encode()).hexdigest()


class CompiledTemplates(BytecodeCache):
    """Compiled template code kept in memory and shared by every Jinja environment of this
    process that compiles the same way; the least recently used goes beyond `kept`."""

    def __init__(self, kept: int = config.COMPILED_TEMPLATES_KEPT):
        self.kept = kept
        self._lock = threading.Lock()
        self._code: OrderedDict[str, tuple[str, CodeType]] = OrderedDict()
        self.hits = self.misses = 0

    def get_bucket(self, environment, name, filename, source) -> Bucket:
        key = f"{self.get_cache_key(name, filename)}-{compile_settings(environment)}"
        bucket = Bucket(environment, key, self.get_source_checksum(source))
        self.load_bytecode(bucket)
        return bucket

    def load_bytecode(self, bucket: Bucket) -> None:
        with self._lock:
            entry = self._code.get(bucket.key)
            if entry is not None and entry[0] == bucket.checksum:
                self._code.move_to_end(bucket.key)
                bucket.code = entry[1]
                self.hits += 1
            else:
                self.misses += 1

    def dump_bytecode(self, bucket: Bucket) -> None:
        if bucket.code is None:
            return
        with self._lock:
            self._code[bucket.key] = (bucket.checksum, bucket.code)
            self._code.move_to_end(bucket.key)
            while len(self._code) > self.kept:
                self._code.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._code.clear()

    def __len__(self) -> int:
        return len(self._code)


COMPILED_TEMPLATES = CompiledTemplates()


def share_compiled_templates(
    renderer: NotebookRenderer, cache: BytecodeCache | None = None
) -> NotebookRenderer:
    """The same renderer, whose page exporter compiles through `cache` (by default the
    process's COMPILED_TEMPLATES).

    Voilà builds the exporter in `renderer.initialize()` and renders with it only after;
    its Jinja environment is made on first use, so giving it the cache right after
    initialize comes before any template is loaded.
    """
    initialize = renderer.initialize
    shared = COMPILED_TEMPLATES if cache is None else cache

    async def initialize_with_shared_templates(**kwargs) -> None:
        await initialize(**kwargs)
        renderer.exporter.environment.bytecode_cache = shared

    renderer.initialize = initialize_with_shared_templates
    return renderer
