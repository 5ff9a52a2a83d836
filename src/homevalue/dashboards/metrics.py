"""The dashboards' server in Prometheus' format: kernels, preheated pools and page loads.

`GET /metrics` on the server `make serve` runs, guarded like the API's (homevalue.metrics:
this machine only, asked directly, or the metrics token). The kernel and pool figures are
read from the kernel manager at each scrape, so they are what the server holds at that
moment; page loads are counted by the page handler as each page finishes.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from tornado import web

from homevalue import config
from homevalue.metrics import MetricsAccess, exposition

# A page request for a notebook the server does not have (a 404, or a 503 before the server
# looked) is counted under this name, never the path a client made up.
OTHER_PAGE = "other"


class KernelCollector(Collector):
    """Kernels and pools as the kernel manager holds them when scraped."""

    def __init__(self, kernel_manager):
        self.kernel_manager = kernel_manager

    def collect(self) -> Iterator[Metric]:
        manager = self.kernel_manager
        connections = getattr(manager, "_kernel_connections", {})
        limits = getattr(manager, "limits", None)
        yield GaugeMetricFamily(
            "homevalue_dashboards_kernels_alive",
            "Kernels running now, the preheated pools' included",
            value=len(manager.list_kernel_ids()),
        )
        yield GaugeMetricFamily(
            "homevalue_dashboards_kernels_starting",
            "Kernels being started now (a viewer's page, or a pool refill)",
            value=getattr(manager, "_starting", 0),
        )
        if limits is not None:
            yield GaugeMetricFamily(
                "homevalue_dashboards_kernels_max",
                "The most kernels the server runs at once (HOMEVALUE_MAX_KERNELS)",
                value=limits.max_kernels,
            )
        yield GaugeMetricFamily(
            "homevalue_dashboards_kernel_connections",
            "Open kernel websockets: pages connected to their kernel",
            value=sum(connections.values()),
        )
        yield from self._pools(manager)

    def _pools(self, manager) -> Iterator[Metric]:
        """Per notebook: the pool's configured size, and its kernels ready or starting."""
        pools = getattr(manager, "_pools", None)
        if pools is None:  # preheating is off
            return
        size = GaugeMetricFamily(
            "homevalue_dashboards_pool_size",
            "Preheated kernels a notebook's pool is kept at (voila.json, sized from memory)",
            labels=["notebook"],
        )
        kernels = GaugeMetricFamily(
            "homevalue_dashboards_pool_kernels",
            "Preheated kernels in a notebook's pool: ready for a viewer, or still starting",
            labels=["notebook", "state"],
        )
        for notebook, pool in sorted(pools.items()):
            size.add_metric([notebook], pool_target(manager.kernel_pools_config, notebook))
            ready = sum(
                task.done() and not task.cancelled() and task.exception() is None for task in pool
            )
            starting = sum(not task.done() for task in pool)
            kernels.add_metric([notebook, "ready"], ready)
            kernels.add_metric([notebook, "starting"], starting)
        yield size
        yield kernels


def pool_target(pools_config: dict, notebook: str) -> int:
    """A notebook's pool size as Voilà reads it (its entry, else "default", else 1)."""
    default = pools_config.get("default", {})
    return int(pools_config.get(notebook, default).get("pool_size", default.get("pool_size", 1)))


class DashboardMetrics:
    """The server's registry: the kernel collector, its process, and the page counters."""

    def __init__(self, kernel_manager, access: MetricsAccess):
        self.kernel_manager = kernel_manager
        self.access = access
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)  # the server's own CPU, memory, open files
        self.registry.register(KernelCollector(kernel_manager))
        self.page_loads = Counter(
            "homevalue_dashboards_page_loads",
            "Pages requested, by notebook and status (503: busy, no kernel to spare)",
            ["notebook", "status"],
            registry=self.registry,
        )
        self.page_seconds = Histogram(
            "homevalue_dashboards_page_seconds",
            "Time to serve a page (it is streamed while its cells run), for pages served",
            ["notebook"],
            buckets=config.METRICS_PAGE_BUCKETS,
            registry=self.registry,
        )

    def observe_page(self, page: str, status: int, seconds: float) -> None:
        """Count a page request; a notebook the server does not have is "other"."""
        known = getattr(self.kernel_manager, "_pools", {})
        notebook = page if page in known or status == 200 else OTHER_PAGE
        self.page_loads.labels(notebook, str(status)).inc()
        if status == 200:
            self.page_seconds.labels(notebook).observe(seconds)


class MetricsHandler(web.RequestHandler):
    """`GET /metrics`: a plain handler, outside Jupyter's login (its own guard applies)."""

    def initialize(self, metrics: DashboardMetrics) -> None:
        self.metrics = metrics

    def get(self) -> None:
        headers = self.request.headers
        refusal = self.metrics.access.refusal(
            self.request.remote_ip,
            (name.lower() for name in headers),
            headers.get("Authorization"),
        )
        if refusal is not None:
            self.set_status(refusal.status)
            if refusal.status == 401:
                self.set_header("WWW-Authenticate", 'Bearer realm="homevalue-metrics"')
            self.set_header("Content-Type", "text/plain; charset=utf-8")
            self.finish(refusal.detail + "\n")
            return
        body, content_type = exposition(self.metrics.registry, headers.get("Accept"))
        self.set_header("Content-Type", content_type)
        self.set_header("Cache-Control", "no-store")
        self.finish(body)
