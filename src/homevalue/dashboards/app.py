"""`python -m homevalue.dashboards`: Voilà as `make serve` runs it, with a viewer's limits.

This is Voilà's own application; the one change is the page handler, which asks the kernel
manager (homevalue.dashboards.kernels) for room before a page starts or takes a kernel, so
a busy server answers 503 "busy, try again in a minute" at once instead of running out of
memory, and which lets the query's `?theme=`/`?template=` choose the preheated pool's
pages whenever Voilà would ignore them anyway (upstream compares them even when
overriding is disabled, so any such query started a cold kernel). The server also serves
Prometheus metrics at `/metrics` (homevalue.dashboards.metrics), to this machine only or
with the metrics token, and the page handler counts each page it serves there.
Everything else is configured in voila.json and read by Voilà as usual.
"""

from __future__ import annotations

import logging
import os
import re

from jupyter_server.base.handlers import FileFindHandler
from jupyter_server.utils import url_path_join
from tornado import web
from traitlets import default
from voila.app import Voila
from voila.tornado.handler import TornadoVoilaHandler

from homevalue import config
from homevalue.dashboards.kernels import KernelLimitReached
from homevalue.dashboards.metrics import DashboardMetrics, MetricsHandler
from homevalue.errors import MetricsTokenError
from homevalue.metrics import MetricsAccess

SECRET_PARAMETER = re.compile(r"(?i)([?&](?:token|_xsrf)=)[^&#]*")
# A built lab extension's file whose name carries its content hash: remoteEntry.<hash>.js,
# <chunk>.<hash>.js, <hash>.png.
CONTENT_HASHED = re.compile(r"[/.][0-9a-f]{16,}\.\w+$")
access_log = logging.getLogger("tornado.access")
METRICS_SETTING = "homevalue_metrics"  # the tornado setting the page handler counts in


def log_request(handler: web.RequestHandler) -> None:
    """Tornado's access line, with a login token in the URL masked (`?token=...` is how a
    viewer signs in, and the log must not hand it to whoever reads it). A busy page (503)
    is a warning: the handler has logged why."""
    status = handler.get_status()
    if status >= 500 and status != 503:
        level = logging.ERROR
    else:
        level = logging.WARNING if status >= 400 else logging.INFO
    request = handler.request
    uri = SECRET_PARAMETER.sub(r"\1[secret]", request.uri or "")
    took = 1000.0 * request.request_time()
    access_log.log(
        level, "%d %s %s (%s) %.2fms", status, request.method, uri, request.remote_ip, took
    )


def client_address(remote_ip: str, forwarded_for: str, trusted_proxies: tuple[str, ...]) -> str:
    """The viewer's address: the peer's, or the last hop a trusted reverse proxy added.

    Only the entry our own proxy appended can be believed; anything before it is whatever
    the client chose to send.
    """
    if remote_ip in trusted_proxies and forwarded_for.strip():
        return forwarded_for.split(",")[-1].strip()
    return remote_ip


class ViewerPageHandler(TornadoVoilaHandler):
    """Voilà's page handler, admitting a viewer only while there is room for their kernel."""

    retry_after = 60
    page: str | None = None  # the notebook this request asked for, for the page counter

    @web.authenticated
    async def get(self, path=None):
        page = path or self.notebook_path or ""
        if page.lower().endswith(".ipynb"):
            self.page = page
            limits = self.kernel_manager.limits
            address = client_address(
                self.request.remote_ip or "",
                self.request.headers.get("X-Forwarded-For", ""),
                limits.trusted_proxies,
            )
            try:
                self.kernel_manager.admit(address)
            except KernelLimitReached as busy:
                self._busy(busy)
                return
            refresh = getattr(self.kernel_manager, "refresh_edited_pools", None)
            if refresh is not None:  # never the page from before an edit (pool_refresh)
                refresh(page)
        try:
            await super().get(path)
        except KernelLimitReached as busy:  # the cap was reached while this page waited
            if self._headers_written:
                raise
            self._busy(busy)

    def _busy(self, busy: KernelLimitReached) -> None:
        self.log.warning("503 busy for %s: %s", self.request.path, busy.reason)
        self.retry_after = busy.retry_after
        self.send_error(503)

    def on_finish(self) -> None:
        metrics: DashboardMetrics | None = self.settings.get(METRICS_SETTING)
        if self.page is not None and metrics is not None:
            metrics.observe_page(self.page, self.get_status(), self.request.request_time())
        super().on_finish()

    def write_error(self, status_code: int, **kwargs) -> None:
        if status_code == 503:
            self.set_header("Retry-After", str(self.retry_after))
        super().write_error(status_code, **kwargs)

    def should_use_rendered_notebook(
        self, notebook_data, pool_size, template_name, theme, request_args
    ) -> bool:
        settings = self.voila_configuration
        if settings.allow_template_override != "YES":
            template_name = None
        if settings.allow_theme_override != "YES":
            theme = None
        return super().should_use_rendered_notebook(
            notebook_data, pool_size, template_name, theme, request_args
        )


class LabExtensionFiles(FileFindHandler):
    """Voilà serves the lab extensions' files with `no-cache`, so a returning viewer's browser
    asks for each of them again (about 80 requests for the price page, each a 304 the server
    has to work out). A file whose name carries its content hash changes name when it
    changes, so the browser may keep it; the others (style.js, package.json) are asked for
    again as before."""

    def set_headers(self) -> None:
        super().set_headers()
        if CONTENT_HASHED.search(self.request.path):
            self.set_header("Cache-Control", "public, max-age=31536000, immutable")


class DashboardServer(Voila):
    """Voilà serving our pages through ViewerPageHandler; opt-in token from the environment
    (`HOMEVALUE_DASHBOARD_TOKEN`, or `--token`), never written to the access log."""

    @default("token")
    def _token_from_environment(self) -> str | None:
        return os.environ.get(config.DASHBOARD_TOKEN_ENV) or None

    def get_default_logging_config(self) -> dict:
        """traitlets' logging, with the server's logger at `log_level` rather than DEBUG.

        traitlets keeps the application's logger at DEBUG and filters at its handler, so each
        debug call in the server (nbclient logs every kernel message of a page it builds,
        jupyter_server every kernel's activity) made a log record and looked up its caller
        only for the handler to drop it: 3% of the server's CPU per new viewer (py-spy)."""
        logging_config = super().get_default_logging_config()
        level = logging.getLevelName(self.log_level)
        for logger in logging_config.get("loggers", {}).values():
            logger["level"] = level
        return logging_config

    def init_settings(self) -> dict:
        try:  # before any kernel starts
            access = MetricsAccess.from_environment()
        except MetricsTokenError as error:  # one line, not a traceback
            self.log.critical("%s", error)
            self.exit(2)
        settings = super().init_settings()  # makes the kernel manager the metrics read
        self.metrics = DashboardMetrics(self.kernel_manager, access)
        return {**settings, "log_function": log_request, METRICS_SETTING: self.metrics}

    def init_handlers(self) -> list:
        ours = {TornadoVoilaHandler: ViewerPageHandler, FileFindHandler: LabExtensionFiles}
        metrics = (
            url_path_join(self.server_url, config.METRICS_PATH),
            MetricsHandler,
            {"metrics": self.metrics},
        )
        return [metrics] + [
            (rule[0], ours.get(rule[1], rule[1]), *rule[2:]) for rule in super().init_handlers()
        ]


main = DashboardServer.launch_instance
