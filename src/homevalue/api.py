"""The prediction API over HTTP: one house (or a short list) per request, answered in milliseconds.

Client applications get exactly what the dashboards get: every house goes through
`predict_one`, so the validation, its messages, the flags and the post-processing are the
same code, and the API and the pages cannot disagree. The request model in the OpenAPI
document is generated from the model card (homevalue.openapi), but it only documents: the
body is read as plain JSON and `homevalue.schema` alone decides what a valid house is.
Answers are written as JSON directly (no pydantic on the request path).

    POST /v1/predict   a house {field: value}, or a list of up to API_MAX_HOUSES of them;
                       `?explain=true` (or `"explain": true` in a house) adds why the price
                       is what it is: each field's contribution, in dollars (homevalue.explain)
    POST /v1/feedback  a house as priced with its actual sale price, or with why its price
                       looks wrong: re-priced here and kept (homevalue.feedback)
    GET  /v1/model     the model card: schema, metrics, interval, versions, limits
    GET  /healthz      the process answers (liveness)
    GET  /readyz       the model is loaded (readiness; 503 until it is)
    GET  /metrics      Prometheus metrics, for this machine or a token only (homevalue.metrics)

Run it with `make api` (uvicorn, settings in homevalue.config). One JSON line per request
goes to stderr (logger `homevalue.api.access`); nothing from the body is logged.

Access is open unless API keys are configured (homevalue.apikeys); then every route but the
probes needs `Authorization: Bearer <key>` or `X-API-Key: <key>`: 401 without one, 403 with
a wrong one, checked before routing, so a new route cannot be left open by mistake.
`/metrics` is not for API clients: it has its own guard (homevalue.metrics).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import math
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from importlib.metadata import version as installed_version
from pathlib import Path

import numpy as np
from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from homevalue import apikeys, config, feedback, openapi
from homevalue.apikeys import KeyRing
from homevalue.errors import (
    ApiKeyError,
    FeedbackLimitError,
    FeedbackStoreError,
    MetricsTokenError,
    ModelError,
    Problem,
    ValidationError,
    shown,
)
from homevalue.metrics import ApiMetrics, MetricsAccess, exposition
from homevalue.model import Model, load_model
from homevalue.predict import Prediction, predict_one
from homevalue.schema import Schema

log = logging.getLogger("homevalue.api")
access_log = logging.getLogger("homevalue.api.access")

# What GET /v1/model shows of the card: the facts a client needs, not the artifact's hashes.
CARD_KEYS = (
    "model_version",
    "trained_at",
    "target",
    "estimator",
    "features",
    "metrics",
    "cross_validation",
    "interval",
    "accuracy_here",
    "price_bounds",
    "data",
    "versions",
)
PREDICT_PATH = "/v1/predict"
FEEDBACK_PATH = "/v1/feedback"
EXPLAIN_KEY = "explain"  # in a house or the query: not a field, the option to explain
EXPLAIN_VALUES = {"true": True, "1": True, "false": False, "0": False}


# --- errors: one JSON shape for every refusal ----------------------------------------------


class ApiError(Exception):
    """A refusal with its HTTP status, a short code and a sentence saying what to do; a 422
    also lists problems (at most API_MAX_PROBLEMS) and says how many there were in all."""

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        problems: list[dict] | None = None,
        problems_total: int = 0,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(detail)
        self.status, self.code, self.detail = status, code, detail
        self.problems, self.problems_total = problems, problems_total
        self.headers = headers or {}


class JsonAnswer(JSONResponse):
    """JSON written as ASCII, so any text can be sent back, even text that is not Unicode.

    A JSON body may spell a lone surrogate (`"\\ud800"`): Python parses it into a str that
    UTF-8 cannot encode, and a refusal echoing that value made Starlette's renderer fail (a
    500). Escaping every non-ASCII character returns exactly what the client sent, and
    prices, flags and messages are ASCII anyway.
    """

    def render(self, content: object) -> bytes:
        return json.dumps(content, allow_nan=False, separators=(",", ":")).encode("ascii")


def error_response(status: int, code: str, detail: str, **extra) -> JSONResponse:
    return JsonAnswer({"error": code, "detail": detail, **extra}, status_code=status)


def echoed(value: object) -> object:
    """A refused value as it can be sent back: JSON scalars as given, long or odd ones cut.

    Non-finite floats (`1e400` parses as inf) and huge integers would make the error itself
    unsendable or enormous, so they are quoted as text instead.
    """
    if value is None or isinstance(value, bool) or isinstance(value, str) and len(value) <= 60:
        return value
    if isinstance(value, int) and abs(value) < 10**15:
        return value
    if isinstance(value, float) and math.isfinite(value):
        return value
    if isinstance(value, str):
        return value[:59] + "…"
    return shown(value)


ALLOWED_VALUES = "GET /v1/model lists every field's categories and their labels"


def invalid(
    problems: list[tuple[int | None, Problem]],
    total: int | None = None,
    *,
    schema: Schema | None = None,
) -> ApiError:
    """422 listing problems as (index in the list or None, homevalue's Problem): the first
    API_MAX_PROBLEMS of them, in `problems` and as sentences in `detail`, and how many in all.

    A key is the client's text like a value, so it is cut like one wherever it is echoed.
    A problem with a category (of `schema`) names its nearest values in its reason and
    points to the full list in `allowed_values`, said once more at the end of `detail`.
    """
    total = len(problems) if total is None else total
    shown_here = [
        (index, Problem(echoed(p.field), p.value, p.reason))
        for index, p in problems[: config.API_MAX_PROBLEMS]
    ]
    categories = {f.name for f in schema.features if f.is_category} if schema else set()
    listed = [
        {"index": index, "field": p.field, "value": echoed(p.value), "reason": p.reason}
        | ({"allowed_values": ALLOWED_VALUES} if p.field in categories else {})
        for index, p in shown_here
    ]
    detail = "; ".join(("" if i is None else f"house {i}: ") + str(p) for i, p in shown_here)
    if total > len(listed):
        detail += f"; and {total - len(listed):,} more problems (problems_total)"
    if any("allowed_values" in entry for entry in listed):
        detail += f". {ALLOWED_VALUES}"
    return ApiError(422, "invalid_input", detail, listed, total)


# --- the request: read, parse, price -------------------------------------------------------


HOUSES_ADVICE = (
    f"send at most {config.API_MAX_HOUSES} houses per request, or use the batch job for files"
)


async def read_body(request: Request, limit: int, advice: str = HOUSES_ADVICE) -> bytes:
    """The body, refused with 413 as soon as it is known to exceed `limit`, never read whole.

    Not FastAPI's `max_body_size`: when Content-Length is over the limit, Starlette replaces
    whatever the app answers with a plain-text 413, and clients here get JSON errors.
    """
    too_large = ApiError(
        413, "body_too_large", f"the request body is over {limit:,} bytes: {advice}"
    )
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise too_large
    return bytes(body)


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def check_separators(body: bytes) -> None:
    """Refuse, before parsing, a body with more ',' and ':' than API_MAX_SEPARATORS.

    Parsing is the costly part of a refusal (256 KB of keys or numbers take 6-20 ms of the
    event loop); counting two bytes takes 40 µs. Every value but the first needs a
    ',' and every key a ':', so no valid request comes near the limit, and one over it
    could not be priced anyway.
    """
    # numpy, not bytes.count: that is a byte-at-a-time loop (250 µs for 256 KB, twice over).
    view = np.frombuffer(body, dtype=np.uint8)
    separators = int(np.count_nonzero(view == ord(","))) + int(np.count_nonzero(view == ord(":")))
    if separators > config.API_MAX_SEPARATORS:
        reason = (
            f"must hold at most {config.API_MAX_SEPARATORS:,} (about two per value: "
            f"{config.API_MAX_HOUSES} houses of at most {config.API_MAX_KEYS_PER_HOUSE} keys)"
        )
        raise invalid([(None, Problem("body", f"{separators:,} ',' and ':'", reason))])


def parse_json(body: bytes) -> object:
    """A JSON body, or a 422 saying why it is not one.

    The bytes are decoded strictly first: `json.loads` would let surrogates written as bytes
    through (it decodes with "surrogatepass"), and those are not UTF-8.
    """
    check_separators(body)
    try:
        text = body.decode(json.detect_encoding(body))
    except UnicodeDecodeError as error:
        reason = f"is not valid JSON (not UTF-8: {error.reason} at byte {error.start})"
        raise invalid([(None, Problem("body", None, reason))]) from None
    try:
        data = json.loads(text, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as error:  # JSONDecodeError, NaN, nesting
        reason = f"is not valid JSON ({str(error)[:80]})"
        raise invalid([(None, Problem("body", None, reason))]) from None
    return data


def parse_houses(body: bytes, max_houses: int) -> tuple[list, bool]:
    """(houses, whether one house was sent alone) from a JSON body, or a 422 saying why not."""
    data = parse_json(body)
    if isinstance(data, dict):
        return [data], True
    if isinstance(data, list) and len(data) <= max_houses:
        return data, False
    reason = (
        f"must hold at most {max_houses} houses (send more to the batch job)"
        if isinstance(data, list)
        else "must be a house (a JSON object of field: value) or a list of houses"
    )
    value = f"a list of {len(data)} houses" if isinstance(data, list) else data
    raise invalid([(None, Problem("body", value, reason))])


def too_many_keys(schema: Schema, house: object) -> Problem | None:
    """A house with more than API_MAX_KEYS_PER_HOUSE keys, refused whole. `len` is all it
    costs, so a body of 20,000 keys is neither validated nor listed key by key."""
    limit = config.API_MAX_KEYS_PER_HOUSE
    if not isinstance(house, Mapping) or len(house) <= limit:
        return None
    reason = f"must have at most {limit} keys (this model takes {len(schema.names)} fields)"
    return Problem("record", f"an object of {len(house):,} keys", reason)


def without_option(house: object) -> object:
    """The house without its `"explain"` option, which is not a field: every other key is
    read by the schema's input policy (a key that names no field is refused, with the
    nearest field's name, as the pricing page's links and `predict_one` refuse it)."""
    if isinstance(house, Mapping) and EXPLAIN_KEY in house:
        return {k: v for k, v in house.items() if k != EXPLAIN_KEY}
    return house


def explain_query(request: Request) -> bool:
    """`?explain=true|false|1|0` (any case), false when absent; anything else is a 422."""
    given = request.query_params.getlist(EXPLAIN_KEY)
    if not given:
        return False
    wanted = EXPLAIN_VALUES.get(given[-1].strip().lower())
    if wanted is None:
        reason = "must be true or false (as in ?explain=true)"
        raise invalid([(None, Problem("?explain", given[-1], reason))])
    return wanted


def explain_wanted(house: object, default: bool) -> tuple[bool, list[Problem]]:
    """Whether to explain this house: its own `"explain": true|false`, or the query's."""
    if not isinstance(house, Mapping) or EXPLAIN_KEY not in house:
        return default, []
    wanted = house[EXPLAIN_KEY]
    if isinstance(wanted, bool):
        return wanted, []
    return default, [Problem(EXPLAIN_KEY, wanted, "must be true or false (JSON booleans)")]


def check_explained(count: int) -> None:
    """Refuse a request asking for more than API_MAX_EXPLAINED explanations, before any."""
    limit = config.API_MAX_EXPLAINED
    if count > limit:
        reason = (
            f"may be asked for at most {limit} houses per request (each costs about 2 ms): "
            "ask for fewer, or explain a file with `homevalue batch score --explain`"
        )
        raise invalid([(None, Problem(EXPLAIN_KEY, f"{count} houses", reason))])


def price_houses(model: Model, houses: list, single: bool, explain: bool = False) -> list[dict]:
    """`predict_one` for each house; every problem in every house is counted at once, and
    the first API_MAX_PROBLEMS are listed (houses and keys per house are bounded before).
    A house is explained if it says `"explain": true`, or if `explain` and it does not say
    false."""
    wanted = [explain_wanted(house, explain) for house in houses]
    check_explained(sum(w for w, _ in wanted))
    priced, listed, total = [], [], 0
    for position, (house, (explained, option)) in enumerate(zip(houses, wanted, strict=True)):
        index = None if single else position
        room = config.API_MAX_PROBLEMS - len(listed)
        if crowded := too_many_keys(model.schema, house):
            found, count = [crowded], 1
        else:
            found, count = option, len(option)
            try:
                house = without_option(house)
                # Suggestions (difflib) only while the answer has room to list them.
                prediction = predict_one(house, model=model, explain=explained, suggest=room > 0)
                priced.append(prediction.to_dict())
            except ValidationError as error:
                found, count = error.problems + found, len(error.problems) + count
        listed += [(index, p) for p in found[:room]]
        total += count
    if total:
        raise invalid(listed, total, schema=model.schema)
    return priced


# --- feedback: a house as priced, and its sale price or what looks wrong -------------------


def check_feedback(model: Model, payload: object) -> tuple[Prediction, feedback.Report]:
    """The house re-priced (the report is kept against the server's price, not one the
    client could send) and the report; every problem in both refused at once in a 422,
    the house's named `house.<field>`."""
    house, report, problems = feedback.read_request(payload, model.card)
    prediction = None
    if isinstance(payload, Mapping) and "house" in payload:
        if crowded := too_many_keys(model.schema, house):
            found = [crowded]
        else:
            found = []
            try:
                prediction = predict_one(house, model=model)
            except ValidationError as error:
                found = error.problems
        problems += [
            Problem("house" if p.field == "record" else f"house.{p.field}", p.value, p.reason)
            for p in found
        ]
    if problems or prediction is None or report is None:
        raise invalid([(None, p) for p in problems])
    return prediction, report


def feedback_sender(request: Request, keys: KeyRing | None) -> str:
    """Whom a report counts against for the flood limit: the API key it came with, or its
    address when the API is open (behind a proxy, the proxy's: one limit for all). Kept
    as a digest, never the key or the address itself."""
    if keys is not None:
        who = b"key:" + (apikeys.presented_key(request.scope["headers"]) or b"")
    else:
        who = b"addr:" + (request.client.host if request.client else "unknown").encode()
    return "api:" + hashlib.sha256(who).hexdigest()[:24]


async def keep_feedback(prediction: Prediction, report: feedback.Report, sender: str) -> dict:
    """`feedback.record` off the event loop (it may wait for another process's write), its
    refusals as 429 and 503 with Retry-After."""
    try:
        receipt = await run_in_threadpool(
            feedback.record, prediction, report, source="api", client=sender
        )
    except FeedbackLimitError as error:
        retry = {"Retry-After": str(error.retry_after)}
        raise ApiError(429, "too_many_reports", str(error), headers=retry) from None
    except FeedbackStoreError as error:
        retry = {"Retry-After": str(error.retry_after)} if error.retry_after else {}
        raise ApiError(503, "feedback_unavailable", str(error), headers=retry) from None
    return receipt.to_dict()


# --- the model, loaded at start-up and retried until it loads ------------------------------


class ModelSlot:
    """The served model. A failed load is logged and retried at the next request, so the
    process stays alive (healthz) but not ready (readyz) and recovers after `make model`."""

    def __init__(self, folder: Path | None, metrics: ApiMetrics | None = None):
        self.folder = folder
        self.metrics = metrics
        self.model: Model | None = None
        self.card_json: dict | None = None
        self._last_error = ""

    def get(self) -> Model | None:
        if self.model is None:
            started = time.perf_counter()
            try:
                model = load_model(self.folder)
            except Exception as error:  # any reason at all: the server must keep answering
                if self.metrics:
                    self.metrics.observe_load(started, None)
                if str(error) != self._last_error:
                    # A ModelError's sentence names the file and the fix; anything else
                    # is a bug, whose traceback the operator needs.
                    trace = None if isinstance(error, ModelError) else error
                    log.error("the model could not be loaded: %s", error, exc_info=trace)
                    self._last_error = str(error)
                return None
            if self.metrics:
                self.metrics.observe_load(started, model.version)
            self.card_json = public_card(model.card)
            self.model = model
            log.info("model %s loaded from %s", model.version, model.path)
        return self.model

    def require(self) -> Model:
        model = self.get()
        if model is None:
            raise ApiError(503, "not_ready", "the model is not loaded: see the server's log")
        return model

    @property
    def version(self) -> str | None:
        return self.model.version if self.model is not None else None


def public_card(card: dict) -> dict:
    return {
        **{key: card[key] for key in CARD_KEYS if key in card},
        "limits": {
            "max_houses_per_request": config.API_MAX_HOUSES,
            "max_body_bytes": config.API_MAX_BODY_BYTES,
            "max_keys_per_house": config.API_MAX_KEYS_PER_HOUSE,
            "max_problems_listed": config.API_MAX_PROBLEMS,
            "max_explained_per_request": config.API_MAX_EXPLAINED,
            "max_feedback_body_bytes": config.FEEDBACK_MAX_BODY_BYTES,
            "max_feedback_comment_chars": config.FEEDBACK_COMMENT_MAX_CHARS,
            "feedback_reports_per_client_per_hour": (
                config.feedback_limits().per_api_client_per_hour
            ),
        },
    }


# --- the app -------------------------------------------------------------------------------

NO_KEY = "this API needs a key: send it as `Authorization: Bearer <key>` or `X-API-Key: <key>`"
WRONG_KEY = "this API key is not accepted here: check it with whoever runs this API"
OPEN_PATHS = frozenset(config.API_OPEN_PATHS)
# Not behind the API keys, which are the client apps': /metrics has its own guard.
KEYLESS_PATHS = OPEN_PATHS | {config.METRICS_PATH}


class RequireKey:
    """Every request but the probes' carries one of the keys, or is refused in the API's
    error shape: 401 without a key (with `WWW-Authenticate: Bearer`), 403 with a wrong one.

    An ASGI middleware rather than a route dependency: it runs before routing, so unknown
    routes, the docs and any route added later are covered, and a refusal costs no body
    read. Nothing from the headers is logged or sent back.
    """

    def __init__(self, app, keys: KeyRing | None):
        self.app, self.keys = app, keys

    async def __call__(self, scope, receive, send) -> None:
        if self.keys is None or scope["type"] != "http" or _route_path(scope) in KEYLESS_PATHS:
            await self.app(scope, receive, send)
            return
        presented = apikeys.presented_key(scope["headers"])
        if presented is not None and self.keys.matches(presented):
            await self.app(scope, receive, send)
            return
        if presented is None:
            response = error_response(401, "unauthorized", NO_KEY)
            response.headers["WWW-Authenticate"] = 'Bearer realm="homevalue"'
        else:
            response = error_response(403, "forbidden", WRONG_KEY)
        await response(scope, receive, send)


def _route_path(scope) -> str:
    """The path as the app's routes see it (without a proxy's root path, if any)."""
    path, root = scope["path"], scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


class AccessLog:
    """One JSON line per request: when, the method, the route's template (never the raw path
    or its query), the status, the latency and the model version; nothing from the body.
    The same observation goes to the request metrics."""

    def __init__(self, app, slot: ModelSlot, metrics: ApiMetrics):
        self.app, self.slot, self.metrics = app, slot, metrics

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500  # stays so if an exception escapes before a response starts

        async def observed(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, observed)
        finally:
            took = time.perf_counter() - start
            route = getattr(scope.get("route"), "path", None)
            line = {
                "ts": datetime.now(UTC).isoformat(timespec="milliseconds"),
                "method": scope["method"],
                "route": route,
                "status": status,
                "latency_ms": round(took * 1000, 3),
                "model_version": self.slot.version,
            }
            access_log.info(json.dumps(line))
            self.metrics.observe_request(route, scope["method"], status, took)


def configure_logging() -> None:
    """Our lines go to stderr whatever runs us (uvicorn configures only its own loggers)."""
    layouts = {log: "%(asctime)s %(levelname)s %(name)s: %(message)s", access_log: "%(message)s"}
    for logger, layout in layouts.items():
        if not logger.handlers:
            handler = logging.StreamHandler(sys.stderr)
            handler.setFormatter(logging.Formatter(layout))
            logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    access_log.propagate = False  # not repeated by a root handler someone else installs


async def on_api_error(request: Request, error: ApiError) -> JSONResponse:
    extra = {}
    if error.problems is not None:
        extra = {"problems": error.problems, "problems_total": error.problems_total}
    response = error_response(error.status, error.code, error.detail, **extra)
    response.headers.update(error.headers)
    return response


HTTP_ERRORS = {
    404: ("not_found", "no such route: the API is described at /docs and /openapi.json"),
    405: ("method_not_allowed", "this route does not take that method: see /docs"),
}


async def on_http_error(request: Request, error: HTTPException) -> JSONResponse:
    """The framework's own refusals (unknown route, wrong method) in our error shape."""
    code, detail = HTTP_ERRORS.get(error.status_code, ("http_error", str(error.detail)))
    response = error_response(error.status_code, code, detail)
    response.headers.update(error.headers or {})  # e.g. Allow on a 405
    return response


async def on_unexpected(request: Request, error: Exception) -> JSONResponse:
    """A bug or a broken model: a short sentence out, the traceback only in the server's log
    (Starlette re-raises after this response, and uvicorn logs it)."""
    return error_response(
        500, "internal_error", "the server failed on this request; the details are in its log"
    )


def log_access_mode(keys: KeyRing | None) -> None:
    """Say at start-up whether the API is open: how many keys, never which."""
    if keys is None:
        log.warning(
            "the API is open: no API keys are configured (%s, %s); set them before exposing "
            "it beyond this machine",
            config.API_KEYS_VARIABLE,
            config.API_KEYS_FILE_VARIABLE,
        )
    else:
        log.info(
            "API keys are required (%d configured); open without one: %s",
            len(keys.digests),
            ", ".join(config.API_OPEN_PATHS),
        )


def metrics_response(request: Request, access: MetricsAccess, metrics: ApiMetrics) -> Response:
    """The metrics in Prometheus' text format, if this request may read them.

    With several workers (PROMETHEUS_MULTIPROC_DIR, set by `main`), every worker's figures
    are read from that folder and added up, whichever worker answers the scrape.
    """
    peer = request.client.host if request.client else None
    refusal = access.refusal(peer, request.headers.keys(), request.headers.get("authorization"))
    if refusal is not None:
        code = "unauthorized" if refusal.status == 401 else "forbidden"
        response = error_response(refusal.status, code, refusal.detail)
        if refusal.status == 401:
            response.headers["WWW-Authenticate"] = 'Bearer realm="homevalue-metrics"'
        return response
    registry = metrics.registry
    if os.environ.get(MULTIPROCESS_VARIABLE):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
    body, content_type = exposition(registry, request.headers.get("accept"))
    return Response(body, headers={"Content-Type": content_type, "Cache-Control": "no-store"})


def create_app(model_dir: Path | str | None = None) -> FastAPI:
    """The API for the model in `model_dir` (default: the configured model folder), with
    the API keys and metrics token configured now (raises ApiKeyError or MetricsTokenError
    if a setting is unusable)."""
    configure_logging()
    keys = apikeys.load_keys()
    access = MetricsAccess.from_environment()
    metrics = ApiMetrics()
    slot = ModelSlot(Path(model_dir) if model_dir else None, metrics)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        log_access_mode(keys)
        slot.get()  # load before the first request; a failure is logged and retried later
        yield

    app = FastAPI(
        title="homevalue",
        version=installed_version("homevalue"),
        description=openapi.description(PREDICT_PATH),
        lifespan=lifespan,
        redoc_url=None,
    )
    app.state.slot, app.state.keys, app.state.metrics = slot, keys, metrics
    app.add_middleware(RequireKey, keys=keys)
    app.add_middleware(AccessLog, slot=slot, metrics=metrics)  # outermost: refusals count too
    app.add_exception_handler(ApiError, on_api_error)
    app.add_exception_handler(HTTPException, on_http_error)
    app.add_exception_handler(Exception, on_unexpected)

    @app.post(
        PREDICT_PATH,
        summary="Price one house, or a list of houses",
        response_model=openapi.Prediction | list[openapi.Prediction],
        responses=openapi.ERROR_RESPONSES,
    )
    async def predict(request: Request) -> JSONResponse:
        model = slot.require()
        explain = explain_query(request)
        body = await read_body(request, config.API_MAX_BODY_BYTES)
        houses, single = parse_houses(body, config.API_MAX_HOUSES)
        priced = price_houses(model, houses, single, explain)
        metrics.predictions.labels(model.version).inc(len(priced))
        return JsonAnswer(priced[0] if single else priced)

    @app.post(
        FEEDBACK_PATH,
        summary="Report a priced house's actual sale price, or that its price looks wrong",
        status_code=201,
        response_model=openapi.FeedbackReceipt,
        responses=openapi.FEEDBACK_RESPONSES,
    )
    async def report_feedback(request: Request) -> JSONResponse:
        model = slot.require()
        body = await read_body(request, config.FEEDBACK_MAX_BODY_BYTES, openapi.ONE_REPORT)
        prediction, report = check_feedback(model, parse_json(body))
        kept = await keep_feedback(prediction, report, feedback_sender(request, keys))
        return JsonAnswer(kept, status_code=201)

    @app.get(
        "/v1/model",
        summary="The model card: schema, metrics, interval, versions, limits",
        response_model=openapi.ModelCard,
        responses={503: openapi.ERROR_RESPONSES[503]},
    )
    async def model_card() -> JSONResponse:
        slot.require()
        return JsonAnswer(slot.card_json)

    @app.get("/healthz", summary="Liveness: the process answers", response_model=openapi.Health)
    async def healthz() -> JSONResponse:
        return JsonAnswer({"status": "ok"})

    @app.get(
        "/readyz",
        summary="Readiness: the model is loaded",
        response_model=openapi.Ready,
        responses={503: openapi.ERROR_RESPONSES[503]},
    )
    async def readyz() -> JSONResponse:
        model = slot.require()
        return JsonAnswer({"status": "ready", "model_version": model.version})

    @app.get(config.METRICS_PATH, include_in_schema=False)
    async def metrics_route(request: Request) -> Response:
        return metrics_response(request, access, metrics)

    def openapi_document() -> dict:
        """Generated once the model is loaded, so the body shows the card's fields."""
        if app.openapi_schema:
            return app.openapi_schema
        document = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        model = slot.get()
        document = openapi.document_request(document, PREDICT_PATH, model.schema if model else None)
        document = openapi.document_feedback(
            document, FEEDBACK_PATH, model.schema if model else None
        )
        if keys is not None:
            document = openapi.document_keys(document, config.API_OPEN_PATHS)
        if model is not None:
            app.openapi_schema = document
        return document

    app.openapi = openapi_document
    return app


def main(argv: list[str] | None = None) -> None:
    """`python -m homevalue.api`: uvicorn on config.API_HOST:API_PORT (what `make api` runs)."""
    parser = argparse.ArgumentParser(
        prog="python -m homevalue.api", description="Serve the homevalue prediction API."
    )
    parser.add_argument("--host", default=config.API_HOST, help="default %(default)s")
    parser.add_argument("--port", type=int, default=config.API_PORT, help="default %(default)s")
    parser.add_argument(
        "--workers", type=int, default=config.API_WORKERS, help="processes (default %(default)s)"
    )
    args = parser.parse_args(argv)
    try:  # checked here too, so a bad setting is one line, not each worker's traceback
        keys = apikeys.load_keys()
        MetricsAccess.from_environment()
    except (ApiKeyError, MetricsTokenError) as error:
        parser.exit(2, f"{parser.prog}: {error}\n")
    import uvicorn  # only the server needs it; tests use the app in-process

    access = "open: no API keys" if keys is None else f"{len(keys.digests)} API key(s)"
    print(
        f"Serving the homevalue API on http://{args.host}:{args.port}/ "
        f"(docs at /docs, {args.workers} worker(s), {access}; Ctrl-C to stop)",
        file=sys.stderr,
        flush=True,
    )
    with shared_metrics(args.workers):
        uvicorn.run(
            "homevalue.api:app",
            host=args.host,
            port=args.port,
            workers=args.workers,
            access_log=False,  # ours is structured (AccessLog)
            log_level="info",
            # The C event loop and parser: about 40% more throughput and a quarter less latency
            # here, and uvloop sets TCP_NODELAY on connections the multi-worker supervisor
            # accepts, which asyncio does not (uvicorn#3149: +40 ms per keep-alive request).
            loop="uvloop",
            http="httptools",
        )


MULTIPROCESS_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"


@contextlib.contextmanager
def shared_metrics(workers: int) -> Iterator[None]:
    """With several workers, a fresh folder where each keeps its figures, so a scrape
    (answered by any one worker) reports them all; removed when the server stops.

    The variable must be set before the workers import prometheus_client, which they do
    after this (uvicorn spawns them). An operator's own PROMETHEUS_MULTIPROC_DIR is used as
    it is (then emptying it between runs is theirs to do, as prometheus-client says).
    """
    if workers <= 1 or os.environ.get(MULTIPROCESS_VARIABLE):
        yield
        return
    folder = tempfile.mkdtemp(prefix="homevalue-metrics-")
    os.environ[MULTIPROCESS_VARIABLE] = folder
    try:
        yield
    finally:
        del os.environ[MULTIPROCESS_VARIABLE]
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()  # uvicorn then imports this module by name, which creates `app` below
else:
    app = create_app()
