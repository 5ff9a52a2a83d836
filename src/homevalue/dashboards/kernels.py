"""How many kernels the dashboards may run, for whom, and how large each may grow.

Every page a viewer opens costs a kernel (about 170 MB, measured), and upstream Voilà starts
one for every GET of a page, with no limit: 30 GETs without a browser left 60 kernels and
11.8 GB, and one kernel took 380 MB more from widgets sent over its websocket. Here:

- admission: a viewer gets a kernel only while the server holds fewer than `max_kernels`,
  the host has `host_memory_floor_mb` free, and their address has a kernel left in its
  budget (`kernels_per_client_per_minute`); otherwise the page answers 503 "busy" at once;
- a kernel that no browser ever connects to (a GET from a script) is shut down
  `unclaimed_seconds` after its page was ready, instead of waiting for the idle cull;
- culling: a kernel whose page has gone (its websocket closed without Voilà's shutdown
  beacon: a crashed tab, a lost network) goes after `cull_idle_timeout` idle seconds, as
  upstream culls with `cull_connected` false; a page still open keeps its kernel until it
  has been idle `connected_idle_timeout` seconds, much longer;
- a kernel over `kernel_memory_limit_mb` is shut down (its viewer sees "connection lost"),
  and when the host runs short of memory the largest viewer kernel goes first, so the
  server never meets the kernel's out-of-memory killer;
- a pool refill never starves viewers: it starts at a lower CPU priority (nice
  `REFILL_NICE`) for its imports and notebook, and gets the normal priority back once a
  viewer takes it. It is not held back while the host is busy: Voilà hands a viewer the
  pool's next kernel even while it is still starting, so a held refill would hold that
  viewer too (the bench's 20 viewers waited twice as long).

Voilà's pool of preheated kernels is built on top of this class
(`VoilaConfiguration.multi_kernel_manager_class` in voila.json), so its refills count and
wait for room like everything else.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections import OrderedDict
from dataclasses import dataclass

import psutil
from jupyter_server._tz import utcnow
from jupyter_server.services.kernels.kernelmanager import AsyncMappingKernelManager
from tornado.ioloop import IOLoop
from traitlets import Bool, Integer, TraitError

from homevalue import config
from homevalue.dashboards import rendering

MB = 2**20
WATCH_SECONDS = 1.0  # how often kernel memory and unclaimed kernels are checked
REFILL_WAIT_SECONDS = 1.0  # how often a pool refill at the cap looks for room
CLIENTS_REMEMBERED = 10_000  # addresses whose budget is tracked (least recent dropped)
# A pool refill (a kernel starting and running its notebook: about 2 CPU-s, bench) runs at
# nice REFILL_NICE until a viewer takes it: the viewers already there come first.
REFILL_NICE = 10


class KernelLimitReached(Exception):
    """No kernel for this viewer now; `retry_after` says when to try again (seconds)."""

    def __init__(self, reason: str, retry_after: int):
        super().__init__(reason)
        self.reason, self.retry_after = reason, retry_after


@dataclass
class _Bucket:
    tokens: float
    updated: float


class ClientBudget:
    """A token bucket per client address: `per_minute` kernels, refilled evenly over a minute.

    A viewer who reloads a page a few times never notices; a script that requests the page
    in a loop gets a kernel a few seconds apart at most.
    """

    def __init__(self, per_minute: int, clock=time.monotonic):
        self.per_minute = per_minute
        self.clock = clock
        self.buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def take(self, client: str) -> float:
        """Spend one kernel of `client`'s budget: 0 if it had one, else seconds until it will."""
        now = self.clock()
        bucket = self.buckets.pop(client, None) or _Bucket(float(self.per_minute), now)
        rate = self.per_minute / 60
        bucket.tokens = min(self.per_minute, bucket.tokens + (now - bucket.updated) * rate)
        bucket.updated = now
        self.buckets[client] = bucket
        while len(self.buckets) > CLIENTS_REMEMBERED:
            self.buckets.popitem(last=False)
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return 0.0
        return (1 - bucket.tokens) / rate if rate else float("inf")


def set_nice(pid: int | None, nice: int) -> bool:
    """Set a process's nice value; False if it is gone or this user may not."""
    if pid is None:
        return False
    try:
        psutil.Process(pid).nice(nice)
    except (psutil.Error, OSError):
        return False
    return True


def process_rss(pid: int | None) -> int:
    """Resident memory of a kernel process in bytes (0 if it is gone).

    The kernel alone, not its children: a viewer cannot make it start any, and listing
    children scans every process on the host (about 1 ms each, for each kernel, every second).
    """
    if pid is None:
        return 0
    try:
        return psutil.Process(pid).memory_info().rss
    except psutil.Error:
        return 0


class LimitedKernelManager(AsyncMappingKernelManager):
    """jupyter_server's kernel manager with a cap, a per-client budget and a memory ceiling."""

    connected_idle_timeout = Integer(
        0,
        config=True,
        help="""Seconds a kernel whose page is still connected may stay idle before it is
        culled (0: never). Kernels without a connection follow cull_idle_timeout; set
        cull_connected to false so that one applies only to them.""",
    )
    share_compiled_templates = Bool(
        True,
        config=True,
        help="""Compile the page templates once for all the pool's renders instead of
        once per render (homevalue.dashboards.rendering); False renders as upstream does.""",
    )

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.limits = config.dashboard_limits()
        self.budget = ClientBudget(self.limits.kernels_per_client_per_minute)
        self._starting = 0
        self._refills_due: set[asyncio.Task] = set()  # scheduled, not yet in start_kernel
        self._connected_once: set[str] = set()
        self._unclaimed_since: dict[str, float] = {}
        self._niced: set[str] = set()  # pool kernels started at REFILL_NICE, not yet taken
        self._renice_refused = False
        self.log.info(
            "kernel limits: at most %d kernels, %d new per client per minute, %d MB each, "
            "%d MB of host memory kept free; unclaimed kernels go after %g s",
            self.limits.max_kernels,
            self.limits.kernels_per_client_per_minute,
            self.limits.kernel_memory_limit_mb,
            self.limits.host_memory_floor_mb,
            self.limits.unclaimed_seconds,
        )
        IOLoop.current().add_callback(self._watch_forever)
        # Voilà's pool (when this class is its base) fills after this: size it first.
        if isinstance(getattr(self, "kernel_pools_config", None), dict):
            self.kernel_pools_config = config.pool_sizes(self.kernel_pools_config)
            self.log.info("preheated pools: %s", self.kernel_pools_config)

    def __init_subclass__(cls, **kwargs):
        """Voilà's preheated pool is a subclass of this class (voila.json): its refills
        count from the moment it schedules them (see _note_refills), and the pages it
        renders share their compiled templates (homevalue.dashboards.rendering)."""
        super().__init_subclass__(**kwargs)
        fill = cls.__dict__.get("fill_if_needed")
        if fill is None:
            return

        @functools.wraps(fill)
        def fill_if_needed(self, *args, **kwargs):
            before = self._pool_tasks()
            fill(self, *args, **kwargs)
            self._note_refills(self._pool_tasks() - before)
            self._after_fill()

        cls.fill_if_needed = fill_if_needed
        rendering.check_voila()
        make_renderer = cls.__dict__.get("_notebook_renderer_factory")
        if make_renderer is None:
            raise rendering.VoilaVersionError(
                "Voilà's preheated pool has no _notebook_renderer_factory: "
                "homevalue.dashboards.rendering cannot reach its page renders"
            )

        @functools.wraps(make_renderer)
        def _notebook_renderer_factory(self, *args, **kwargs):
            renderer = make_renderer(self, *args, **kwargs)
            if self.share_compiled_templates:
                rendering.share_compiled_templates(renderer)
            return renderer

        cls._notebook_renderer_factory = _notebook_renderer_factory

    def _after_fill(self) -> None:
        """Called after each of Voilà's pool fills, for mixins that follow the pool (e.g.
        homevalue.dashboards.pool_refresh): one wrapper of Voilà's fill_if_needed."""

    # --- admission ---------------------------------------------------------------------

    def kernel_count(self) -> int:
        """Kernels running, starting or due to start (a pool refill Voilà has scheduled),
        the preheated pool included."""
        return len(self._kernels) + self._starting + len(self._refills_due)

    def _pool_tasks(self) -> set[asyncio.Task]:
        return {task for pool in getattr(self, "_pools", {}).values() for task in pool}

    def _note_refills(self, tasks: set[asyncio.Task]) -> None:
        """Count new pool refills until they ask start_kernel for their kernel.

        Voilà schedules a refill when a viewer takes a pool kernel, but the refill first
        sleeps `fill_delay` (1 s) and reads its notebook. Counted only from start_kernel on,
        a viewer arriving in that second saw one kernel fewer than there would be, was
        admitted and took a pool kernel over the cap (the refills then waited for room).
        """
        for task in tasks:
            if not task.done():
                self._refills_due.add(task)
                task.add_done_callback(self._refills_due.discard)

    def admit(self, client: str) -> None:
        """Let `client` have a page (a kernel), or raise KernelLimitReached saying why.

        Taking a preheated kernel starts its replacement, so a viewer always needs room for
        one more kernel than there are now.
        """
        available = psutil.virtual_memory().available
        if available < self.limits.host_memory_floor_mb * MB:
            raise KernelLimitReached(
                f"host memory low ({available // MB} MB free, "
                f"floor {self.limits.host_memory_floor_mb} MB)",
                retry_after=60,
            )
        if self.kernel_count() + 1 > self.limits.max_kernels:
            raise KernelLimitReached(
                f"{self.kernel_count()} kernels running (limit {self.limits.max_kernels})",
                retry_after=60,
            )
        wait = self.budget.take(client)
        if wait:
            raise KernelLimitReached(
                f"client {client} opened {self.limits.kernels_per_client_per_minute} pages "
                "in the last minute",
                retry_after=max(1, int(wait + 0.999)),
            )

    async def start_kernel(self, **kwargs) -> str:
        """Start a kernel within the cap: a viewer's is refused, a pool refill waits for room."""
        refill = kwargs.get("env", {}).get("VOILA_PREHEAT") == "True"
        if refill:  # due no longer: it waits for room (uncounted), then counts as starting
            self._refills_due.discard(asyncio.current_task())
        while self.kernel_count() >= self.limits.max_kernels:
            if not refill:
                raise KernelLimitReached(
                    f"{self.kernel_count()} kernels running (limit {self.limits.max_kernels})",
                    retry_after=60,
                )
            await asyncio.sleep(REFILL_WAIT_SECONDS)
        self._starting += 1
        try:
            kernel_id = await super().start_kernel(**kwargs)
        finally:
            self._starting -= 1
        if refill and set_nice(self._pid(kernel_id), REFILL_NICE):
            self._niced.add(kernel_id)
        return kernel_id

    def _restore_priority(self, pooled: set[str]) -> None:
        """A refill a viewer has taken runs at the normal priority again (lowering a nice
        value needs CAP_SYS_NICE or a RLIMIT_NICE, e.g. systemd's LimitNICE=; without it
        the kernel stays at REFILL_NICE, which is said once in the log)."""
        for kernel_id in self._niced - pooled:
            self._niced.discard(kernel_id)
            if not set_nice(self._pid(kernel_id), 0) and not self._renice_refused:
                self._renice_refused = True
                self.log.warning(
                    "taken pool kernels keep nice %d: this user may not lower a nice value "
                    "(give the server CAP_SYS_NICE or RLIMIT_NICE)",
                    REFILL_NICE,
                )

    def notify_connect(self, kernel_id: str) -> None:
        self._connected_once.add(kernel_id)
        super().notify_connect(kernel_id)

    def remove_kernel(self, kernel_id: str):
        self._connected_once.discard(kernel_id)
        self._niced.discard(kernel_id)
        self._unclaimed_since.pop(kernel_id, None)
        return super().remove_kernel(kernel_id)

    # --- culling -----------------------------------------------------------------------

    async def cull_kernel_if_idle(self, kernel_id: str) -> None:
        """Upstream's culling (with `cull_connected` false: kernels whose viewer has gone),
        then the much longer idle limit for a page that is still open. A kernel still
        starting (a pool refill) has no last activity yet: upstream would read the unset
        trait and log a traceback, and a starting kernel is not idle anyway."""
        if kernel_id in self._kernels and self._seconds_idle(kernel_id) == float("inf"):
            return
        await super().cull_kernel_if_idle(kernel_id)
        kernel = self._kernels.get(kernel_id)
        if (
            kernel is None
            or self.connected_idle_timeout <= 0
            or not self._kernel_connections.get(kernel_id, 0)
            or getattr(kernel, "execution_state", None) == "busy"
        ):
            return
        idle = self._seconds_idle(kernel_id)  # finite: a started kernel has last activity
        if idle > self.connected_idle_timeout:
            await self._stop(
                kernel_id,
                f"its page is open but was idle for {idle:.0f} s "
                f"(limit {self.connected_idle_timeout} s)",
            )

    # --- the watchdog ------------------------------------------------------------------

    async def _watch_forever(self) -> None:
        while True:
            await asyncio.sleep(WATCH_SECONDS)
            try:
                await self.watch()
            except Exception:  # the watchdog must outlive any one bad check
                self.log.exception("kernel watchdog check failed")

    def _pooled(self) -> set[str]:
        """Kernels waiting in Voilà's preheated pool (not yet anyone's page)."""
        pooled = set()
        for pool in getattr(self, "_pools", {}).values():
            for task in pool:
                if task.done() and not task.cancelled() and task.exception() is None:
                    pooled.add(task.result()["kernel_id"])
        return pooled

    def _pid(self, kernel_id: str) -> int | None:
        kernel = self._kernels.get(kernel_id)
        provisioner = getattr(kernel, "provisioner", None)
        return getattr(provisioner, "pid", None)

    async def watch(self) -> None:
        """One round: memory ceiling, unclaimed kernels, host memory pressure."""
        now = time.monotonic()
        pooled = self._pooled()
        self._restore_priority(pooled)
        sizes: dict[str, int] = {}
        for kernel_id in list(self._kernels):
            rss = process_rss(self._pid(kernel_id))
            if rss > self.limits.kernel_memory_limit_mb * MB:
                await self._stop(
                    kernel_id,
                    f"it holds {rss // MB} MB (limit {self.limits.kernel_memory_limit_mb} MB)",
                )
                continue
            if kernel_id in pooled:
                self._unclaimed_since.pop(kernel_id, None)
                continue
            sizes[kernel_id] = rss
            if kernel_id not in self._connected_once:
                waited = min(
                    now - self._unclaimed_since.setdefault(kernel_id, now),
                    self._seconds_idle(kernel_id),
                )
                if waited > self.limits.unclaimed_seconds:
                    await self._stop(
                        kernel_id,
                        f"its page was ready {waited:.0f} s ago and no browser connected",
                    )
        await self._relieve_host(sizes)

    def _seconds_idle(self, kernel_id: str) -> float:
        """Seconds since the kernel last sent anything: a page still being built is busy."""
        try:  # a trait without a default: unset until the kernel has started
            last = self._kernels[kernel_id].last_activity
        except (KeyError, AttributeError, TraitError):
            return float("inf")
        return (utcnow() - last).total_seconds()

    async def _relieve_host(self, sizes: dict[str, int]) -> None:
        """Below half the memory floor, shut the largest viewer kernel down before the OS
        kills something (the floor already stops new kernels)."""
        available = psutil.virtual_memory().available
        if sizes and available < self.limits.host_memory_floor_mb * MB // 2:
            largest = max(sizes, key=sizes.get)
            await self._stop(
                largest,
                f"the host has {available // MB} MB free and it is the "
                f"largest kernel ({sizes[largest] // MB} MB)",
            )

    async def _stop(self, kernel_id: str, why: str) -> None:
        self.log.warning("shutting kernel %s down: %s", kernel_id, why)
        with contextlib.suppress(KeyError, RuntimeError):  # already gone
            await self.shutdown_kernel(kernel_id, now=True)
