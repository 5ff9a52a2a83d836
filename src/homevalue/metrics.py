"""Prometheus metrics for operators: who may read them, and the API's own.

Both servers serve `GET /metrics` in Prometheus' text format (prometheus-client): the API
(requests by route and status, latency, prices by model version, model load time; this
module) and the dashboards' server (kernels, preheated pools, page loads;
homevalue.dashboards.metrics).

Metrics are not for anonymous viewers: they tell the traffic, the load and the model
version. By default they are served only to this machine, asked directly: a loopback peer
whose request came through no proxy (a reverse proxy on the same machine is a loopback
peer too, but it says whom it forwards for, so a request carrying X-Forwarded-For,
Forwarded or X-Real-IP is refused). With HOMEVALUE_METRICS_TOKEN set, anyone presenting it
as `Authorization: Bearer <token>` may read them, and nobody else, loopback included.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector
from prometheus_client.exposition import choose_encoder

from homevalue import config
from homevalue.errors import MetricsTokenError

# What a proxy adds to say whom it forwards for (lower case, as ASGI and HTTP/2 spell them).
PROXY_HEADERS = frozenset({"x-forwarded-for", "forwarded", "x-real-ip"})
_TOKEN = re.compile(r"[A-Za-z0-9._~+/-]+=*")  # RFC 6750's b64token, as API keys
MAKE_ONE = 'make one with `python -c "import secrets; print(secrets.token_urlsafe(32))"`'
LOCAL_ONLY = (
    "metrics are served only to this machine, asked directly (not through a proxy); "
    f"set {config.METRICS_TOKEN_VARIABLE} to let a scraper elsewhere read them with it"
)
NO_TOKEN = "metrics need the metrics token: send it as `Authorization: Bearer <token>`"
WRONG_TOKEN = "this metrics token is not accepted here: check the scraper's token"


@dataclass(frozen=True)
class Refusal:
    """Why a request may not read the metrics: its HTTP status and a sentence."""

    status: int
    detail: str


@dataclass(frozen=True)
class MetricsAccess:
    """Who may read /metrics: holders of the token, or (without one) this machine alone.

    Only the token's SHA-256 digest is kept, and a presented token is compared with
    `hmac.compare_digest`.
    """

    token_digest: bytes | None

    @classmethod
    def from_environment(cls) -> MetricsAccess:
        """The configured access; MetricsTokenError if the token is set but unusable, so a
        typo never leaves the metrics open to whoever reaches the server."""
        token = config.metrics_token()
        if token is None:
            return cls(None)
        token = token.strip()
        if len(token) < config.METRICS_TOKEN_MIN_LENGTH or not _TOKEN.fullmatch(token):
            raise MetricsTokenError(
                f"{config.METRICS_TOKEN_VARIABLE} is not a usable token: at least "
                f"{config.METRICS_TOKEN_MIN_LENGTH} characters of letters, digits and "
                f"- . _ ~ + / (then = signs); {MAKE_ONE}, or unset it to serve the metrics "
                "to this machine only"
            )
        return cls(hashlib.sha256(token.encode("ascii")).digest())

    def refusal(
        self, peer: str | None, header_names: Iterable[str], authorization: str | None
    ) -> Refusal | None:
        """None if this request may read the metrics, else why not.

        `peer` is the connection's address, `header_names` the request's header names in
        lower case, `authorization` its Authorization header (or None).
        """
        if self.token_digest is None:
            proxied = any(name in PROXY_HEADERS for name in header_names)
            return None if is_loopback(peer) and not proxied else Refusal(403, LOCAL_ONLY)
        scheme, _, token = (authorization or "").strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return Refusal(401, NO_TOKEN)
        digest = hashlib.sha256(token.strip().encode("utf-8", "replace")).digest()
        return None if hmac.compare_digest(digest, self.token_digest) else Refusal(403, WRONG_TOKEN)

    def __repr__(self) -> str:
        return "MetricsAccess(token)" if self.token_digest else "MetricsAccess(this machine)"


def is_loopback(peer: str | None) -> bool:
    """Whether an address is this machine's loopback (127.0.0.0/8, ::1, ::ffff:127.x)."""
    if not peer:
        return False
    try:
        address = ipaddress.ip_address(peer.split("%", 1)[0])
    except ValueError:  # a Unix socket's path, a test client's name: not an IP
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return (mapped or address).is_loopback


def exposition(registry: CollectorRegistry, accept: str | None) -> tuple[bytes, str]:
    """(body, content type) of a scrape, in the format the scraper's Accept header asks for
    (Prometheus' text format, or OpenMetrics), as prometheus-client's own servers do."""
    encoder, content_type = choose_encoder(accept or "")
    return encoder(registry), content_type


# The methods a route can take; anything else a client invents is counted as "other", so a
# client cannot add a time series per made-up method.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNROUTED = "unrouted"  # refused before routing (no such route, no API key): never the raw path


class ApiMetrics:
    """The API's metrics, in a registry of their own (one per app, so tests can make many).

    Labels take only bounded values: the route's template (or "unrouted"), a known method,
    the status code, the model version.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)  # the worker's CPU, memory, open files
        self.requests = Counter(
            "homevalue_api_requests",
            "Requests answered, by route template, method and status",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "homevalue_api_request_duration_seconds",
            "Time from a request's arrival to the end of its answer, by route and method",
            ["route", "method"],
            buckets=config.METRICS_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.predictions = Counter(
            "homevalue_api_predictions",
            "Houses priced, by model version (a list of houses counts each one)",
            ["model_version"],
            registry=self.registry,
        )
        self.model_load_seconds = Gauge(
            "homevalue_api_model_load_seconds",
            "How long loading the served model took (its card, booster and pipeline)",
            ["model_version"],
            registry=self.registry,
            multiprocess_mode="max",  # several workers: the slowest one's load
        )
        self.model_load_failures = Counter(
            "homevalue_api_model_load_failures",
            "Attempts to load the model that failed (the server retries at the next request)",
            registry=self.registry,
        )

    def observe_request(self, route: str | None, method: str, status: int, seconds: float):
        route = route or UNROUTED
        method = method if method in KNOWN_METHODS else "other"
        self.requests.labels(route, method, str(status)).inc()
        self.latency.labels(route, method).observe(seconds)

    def observe_load(self, started: float, version: str | None) -> None:
        """A load that began at `started` (time.perf_counter()): its time, or a failure."""
        if version is None:
            self.model_load_failures.inc()
        else:
            self.model_load_seconds.labels(version).set(time.perf_counter() - started)
