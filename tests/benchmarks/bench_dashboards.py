"""Dashboard benchmarks: the three Voilà pages measured in a real browser, as viewers get them.

Run with `make bench` (after bench_core.py) or `.venv/bin/python
tests/benchmarks/bench_dashboards.py`. Writes the "dashboards" section of
docs/benchmarks.json and the part of docs/benchmarks.md between `<!-- dashboards:start -->`
and `<!-- dashboards:end -->`, keeping anything else in those files.

Voilà is started exactly as `make serve` starts it (tests/voila_server.py) and Debian's
chromium is driven headless by Playwright (never a downloaded browser). Every time is taken
inside the page with `performance.now()` (navigation start = 0), so Playwright's own
round-trips are not counted.

1. Time to interactive (TTI) of the price page: navigation start until the price is shown,
   the form has its inputs and the loading screen is gone. A preheated server (voila.json's
   kernel pools) and a cold one (`--preheat_kernel=False`) run side by side and loads
   alternate between them, each in a fresh browser context (empty cache, a first visit);
   then repeat visits to the preheated one with a warm cache. Marks along the way (HTML
   received, kernel websocket, widget state, first widget, map, chart) say where time goes.
2. Interaction latency: a form value committed -> the new price in the DOM, right after a
   load (while Voilà starts the pool's replacement kernel) and with the server idle.
3. Kernel memory per viewer: RSS, USS and PSS of each page's kernel after it loads and after
   a few interactions.
4. N concurrent viewers, each pricing its own house and checked against `predict_one`:
   success rate, TTI, total memory, and the kernel count back at the pool size once they
   leave (the page's before-unload shutdown). Then viewers that vanish without unloading (a
   crashed tab), on a server with voila.json's culling but a shortened idle timeout.

Between measurements the bench waits until every process it started (servers, kernels,
browser) is quiet, so one load's CPU (a cold kernel start, a pool refill) does not slow the
next. Not a pytest module: too slow and too machine-dependent to gate CI. `--strict` makes
it exit 1 when a target is missed.
Usage: bench_dashboards.py [--loads 10] [--viewers 5,10,20] [--arrive-within 10]
                           [--vanish 5] [--strict] [--no-write] [--docs DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import report
import report_dashboards
from measure import MIB, NEIGHBOURHOODS, memory_mib, stats
from playwright.async_api import Error as PlaywrightError
from playwright.async_api import async_playwright
from report import PROJ_ROOT
from report_dashboards import VARIANTS

sys.path.insert(0, str(PROJ_ROOT / "tests"))
from browser import chromium  # noqa: E402
from browser.screenshots import FLAGS, VIEWPORT  # noqa: E402
from voila_server import VoilaServer, serve  # noqa: E402

LIBRARIES = [
    "homevalue",
    "voila",
    "jupyter_server",
    "ipykernel",
    "ipywidgets",
    "ipyleaflet",
    "bqplot",
    "playwright",
    "psutil",
]
VOILA_JSON = PROJ_ROOT / "voila.json"
PAGES = {
    "price": "price_a_home.ipynb",
    "batch": "score_a_batch.ipynb",
    "report": "model_report.ipynb",
}


# How the bench drives the pages.
BURST = 6  # interactions per burst
COLD_BURST = 3  # on the cold page, right after its load (context only)
SPACING_S = 0.3  # between committed changes: the page folds changes < 150 ms apart
CHANGE_TIMEOUT_MS = 10_000  # no new price within this = a failed interaction
BEACON_WAIT_S = 5.0  # for a closing page to go and Voilà to act on its shutdown beacon
LOAD_TIMEOUT_MS = 120_000
VIEWER_TIMEOUT_MS = 180_000  # 20 viewers on 2 cores start 18 kernels
# "Quiet": every process the bench started together under this CPU share of one core,
# averaged over QUIET_WINDOW_S, with each server at its expected kernel count.
QUIET_CPU_PERCENT = 15.0
QUIET_WINDOW_S = 1.0
SETTLE_TIMEOUT_S = 45.0
SAMPLE_PERIOD_S = 0.2
BUSY_KERNEL_PERCENT = 20.0  # a kernel above this is starting or running its notebook
# The vanish test's server: voila.json's culling with a timeout short enough to wait for.
BENCH_CULL_TIMEOUT_S = 20
BENCH_CULL_INTERVAL_S = 5


# --- in the page --------------------------------------------------------------------------

# Marks (ms since navigation start) recorded by a MutationObserver from the first byte on.
# `tti`: the price has text, the form has an input or select, and #loading is gone.
INIT_SCRIPT = r"""
(() => {
  const m = (window.__marks = {ws_bytes: 0});
  const now = () => performance.now();
  const first = (key, cond) => { if (m[key] === undefined && cond()) m[key] = now(); };
  const check = () => {
    const loading = document.getElementById('loading');
    first('loading_seen', () => !!loading);
    first('loading_gone', () => !loading && (m.loading_seen !== undefined || m.dcl !== undefined));
    first('widget', () => !!document.querySelector('.jupyter-widgets'));
    first('form', () => !!document.querySelector('.hv-form input, .hv-form select'));
    first('price', () => {
      const p = document.querySelector('.hv-price');
      return !!(p && p.textContent.trim());
    });
    first('leaflet', () => !!document.querySelector('.leaflet-container'));
    first('bqplot', () => !!document.querySelector('.bqplot'));
    first('table', () => !!document.querySelector('.hv-table, table'));
    // The cells' outputs as Voilà sent them (the page's scripts consume them later).
    const sent = 'script[type="application/vnd.voila.cell-output+json"]';
    m.outputs = Math.max(m.outputs || 0, document.querySelectorAll(sent).length);
    const seen = (key) => m[key] !== undefined;
    first('tti', () => seen('price') && seen('form') && seen('loading_gone'));
  };
  const all = {childList: true, subtree: true, characterData: true};
  new MutationObserver(check).observe(document, all);
  document.addEventListener('DOMContentLoaded', () => { m.dcl = now(); check(); });
  // The kernel's websocket: when it opens, its first message, the widget state (big message).
  const Native = window.WebSocket;
  window.WebSocket = class extends Native {
    constructor(...args) {
      super(...args);
      if (!String(args[0]).includes('/api/kernels/')) return;
      first('ws_created', () => true);
      this.addEventListener('open', () => first('ws_open', () => true));
      this.addEventListener('message', (e) => {
        const d = e.data, size = d.length || d.byteLength || d.size || 0;
        m.ws_bytes += size;
        first('ws_first_message', () => true);
        first('ws_widget_state', () => size > 100000);
      });
    }
  };
})();
"""

# Navigation Timing, and when the page's scripts and styles had all arrived (and how many
# bytes came over the network for them: ~0 with a warm cache).
NAVIGATION_JS = """() => {
  const n = performance.getEntriesByType('navigation')[0] || {};
  const assets = performance.getEntriesByType('resource')
    .filter((e) => ['script', 'link', 'css'].includes(e.initiatorType));
  return {response_start: n.responseStart, response_end: n.responseEnd,
          dom_content_loaded: n.domContentLoadedEventEnd, load_event: n.loadEventEnd,
          page_bytes: n.transferSize, asset_count: assets.length,
          assets_loaded: Math.max(0, ...assets.map((e) => e.responseEnd)),
          asset_bytes: assets.reduce((sum, e) => sum + e.transferSize, 0)};
}"""

# Ready: the `ready` mark (and the loading screen gone). Broken: every cell has run (the
# loading screen is gone) but fewer outputs came than a healthy page has, so never ready;
# given up once the kernel's websocket is open, when the page's shutdown-on-leave is set up.
READY_JS = """([ready, outputs]) => {
  const m = window.__marks;
  if (!m || m.loading_gone === undefined) return false;
  return m[ready] !== undefined || ((m.outputs || 0) < outputs && m.ws_open !== undefined);
}"""

# The marks so far, the navigation timing, the page's kernel id and what the page shows.
SNAPSHOT_JS = (
    """() => {
  const c = document.getElementById('jupyter-config-data');
  const count = (selector) => document.querySelectorAll(selector).length;
  return {...(window.__marks || {}), navigation: ("""
    + NAVIGATION_JS
    + """)(),
          kernel_id: c ? JSON.parse(c.textContent).kernelId : null,
          shown: {output_areas: count('.jp-OutputArea-output'), widgets: count('.jupyter-widgets'),
                  price: count('.hv-price'), loading: count('#loading')}};
}"""
)

# One interaction, timed in the page: t0 right before the change is committed, t1 when a
# MutationObserver sees the price text differ. No Playwright round-trip in between.
CHANGE_JS = """([selector, value, timeoutMs]) => new Promise((resolve) => {
  const el = document.querySelector(selector);
  const price = () => (document.querySelector('.hv-price') || {}).textContent || '';
  const before = price();
  if (!el) { resolve({ms: null, error: 'no element ' + selector, before}); return; }
  let t0 = 0;
  const done = (result) => { obs.disconnect(); clearTimeout(timer); resolve(result); };
  const obs = new MutationObserver(() => {
    const now = price();
    if (now.trim() && now !== before) done({ms: performance.now() - t0, before, after: now});
  });
  const timer = setTimeout(() => done({ms: null, error: 'no new price', before}), timeoutMs);
  obs.observe(document.body, {childList: true, subtree: true, characterData: true});
  t0 = performance.now();
  el.value = value;
  el.dispatchEvent(new Event('change', {bubbles: true}));
})"""

# The form as the viewer sees it: {field: the select's value, the input's or the readout's}.
FORM_JS = """() => {
  const out = {};
  for (const row of document.querySelectorAll('.hv-form [class*="hv-row-"]')) {
    const cls = [...row.classList].find((c) => c.startsWith('hv-row-'));
    const readout = row.querySelector('.widget-readout');
    const el = row.querySelector('select, input');
    out[cls.slice(7)] = readout ? readout.textContent.trim() : el ? el.value : null;
  }
  return out;
}"""

AREA = ".hv-row-Gr_Liv_Area input"
NEIGHBOURHOOD = ".hv-row-Neighborhood select"


# --- watching the processes ---------------------------------------------------------------


@dataclass
class Sample:
    t: float  # time.time()
    cpu: float  # every process the bench started, % of one core
    kernels: dict[str, list[tuple[int, float, float]]]  # server -> [(pid, created, cpu %)]
    rss: dict[str, float]  # server -> sum of its processes' RSS, MiB
    server_cpu: dict[str, float]  # server -> its processes' CPU, % of one core


@dataclass
class Sampler:
    """A thread sampling CPU and memory of everything the bench started, 5 times a second.

    One sampler for the whole run, because psutil's cpu_percent is "since the last call on
    this Process object": two readers of the same processes would split the intervals.
    """

    servers: dict[str, VoilaServer] = field(default_factory=dict)
    samples: deque = field(default_factory=lambda: deque(maxlen=20_000))
    _cache: dict = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> None:
        threading.Thread(target=self._run, daemon=True, name="sampler").start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_PERIOD_S):
            with contextlib.suppress(psutil.Error):
                self.samples.append(self._sample())

    def _process(self, process: psutil.Process) -> psutil.Process:
        """The cached Process object (it holds the previous CPU reading)."""
        with contextlib.suppress(psutil.Error):
            key = (process.pid, process.create_time())
            if key not in self._cache:
                self._cache[key] = process
                process.cpu_percent(None)
            return self._cache[key]
        return process

    def _cpu(self, process: psutil.Process) -> float:
        with contextlib.suppress(psutil.Error):
            return self._process(process).cpu_percent(None)
        return 0.0

    def _sample(self) -> Sample:
        cpu = {p.pid: self._cpu(p) for p in psutil.Process().children(recursive=True)}
        self._cache = {key: p for key, p in self._cache.items() if key[0] in cpu}
        kernels, rss, busy = {}, {}, {}
        for name, server in list(self.servers.items()):
            kernels[name], rss[name], busy[name] = [], 0.0, 0.0
            for process in server.processes():
                with contextlib.suppress(psutil.Error):
                    own = cpu.get(process.pid, 0.0)
                    busy[name] += own
                    rss[name] += process.memory_info().rss / MIB
                    if is_kernel(process):
                        kernels[name].append((process.pid, process.create_time(), own))
        return Sample(time.time(), sum(cpu.values()), kernels, rss, busy)

    def between(self, start: float, end: float) -> list[Sample]:
        return [s for s in list(self.samples) if start <= s.t <= end]

    def recent(self, seconds: float) -> list[Sample]:
        return self.between(time.time() - seconds, float("inf"))

    def kernel_count(self, server: str) -> int | None:
        latest = self.samples[-1] if self.samples else None
        return len(latest.kernels.get(server, [])) if latest else None


def is_kernel(process: psutil.Process) -> bool:
    with contextlib.suppress(psutil.Error):
        return any("ipykernel_launcher" in part for part in process.cmdline())
    return False


async def settle(sampler: Sampler, expected: dict[str, int]) -> dict:
    """Wait until everything is quiet and each server has its expected number of kernels.

    The settle gap between loads: a cold load or a pool refill keeps both cores busy for
    seconds, which would otherwise slow the next measurement.
    """
    start = time.time()
    while time.time() - start < SETTLE_TIMEOUT_S:
        await asyncio.sleep(SAMPLE_PERIOD_S)
        window = sampler.recent(QUIET_WINDOW_S)
        if time.time() - start < QUIET_WINDOW_S or not window:
            continue
        counts_ok = all(sampler.kernel_count(name) == n for name, n in expected.items())
        if counts_ok and statistics.fmean(s.cpu for s in window) < QUIET_CPU_PERCENT:
            return {"waited_s": time.time() - start, "settled": True}
    return {"waited_s": time.time() - start, "settled": False}


async def wait_kernels(sampler: Sampler, server: str, count: int, timeout: float) -> dict:
    """Seconds until `server` runs `count` kernels (or the timeout), and the count then."""
    start = time.time()
    while time.time() - start < timeout and sampler.kernel_count(server) != count:
        await asyncio.sleep(SAMPLE_PERIOD_S)
    return {"seconds": time.time() - start, "kernels": sampler.kernel_count(server)}


def refill_busy(sampler: Sampler, server: str, since: float, at: float) -> bool:
    """Whether a kernel started after `since` was busy (starting up, running its notebook)
    in the samples around `at`: the pool's replacement kernel, competing for the CPU."""
    for sample in sampler.between(at - SAMPLE_PERIOD_S, at + 2 * SAMPLE_PERIOD_S):
        for _pid, created, cpu in sample.kernels.get(server, []):
            if created >= since - 1 and cpu >= BUSY_KERNEL_PERCENT:
                return True
    return False


# --- the server's settings ----------------------------------------------------------------


def voila_settings() -> dict:
    """Pool sizes per page and the culling settings, as voila.json gives them to viewers."""
    from homevalue.config import pool_sizes

    config = json.loads(VOILA_JSON.read_text())
    pools = pool_sizes(config["VoilaKernelManager"]["kernel_pools_config"])
    default = pools.get("default", {}).get("pool_size", 0)
    notebooks = sorted(p.name for p in (PROJ_ROOT / "notebooks").glob("*.ipynb"))
    sizes = {nb: pools.get(nb, {}).get("pool_size", default) for nb in notebooks}
    return {
        "pool_sizes": sizes,
        "pool_total": sum(sizes.values()),
        "cull": config.get("MappingKernelManager", {}),
    }


def bench_cull_args() -> str:
    return (
        f"--MappingKernelManager.cull_idle_timeout={BENCH_CULL_TIMEOUT_S} "
        f"--MappingKernelManager.cull_interval={BENCH_CULL_INTERVAL_S}"
    )


# --- pages --------------------------------------------------------------------------------


@dataclass
class Visit:
    """One viewer's page: where it was opened, its marks (ms) and navigation timing."""

    server: VoilaServer
    context: object
    page: object = None
    marks: dict = field(default_factory=dict)

    @property
    def kernel_id(self) -> str | None:
        return self.marks.get("kernel_id")


def page_url(server: VoilaServer, page: str = "price") -> str:
    return f"{server.url}voila/render/{PAGES[page]}"


async def new_context(browser, server: VoilaServer | None = None):
    """A fresh context (empty cache and cookies); with `server`, holding the _xsrf cookie
    the landing page sets, as for a viewer who came through the landing page."""
    context = await browser.new_context(viewport=VIEWPORT)
    await context.add_init_script(INIT_SCRIPT)
    if server is not None:
        token = (await asyncio.to_thread(server.get, "")).cookies.get("_xsrf", "")
        await context.add_cookies([{"name": "_xsrf", "value": token, "url": server.url}])
    return context


async def load(
    seen: Visit,
    page: str = "price",
    ready: str = "tti",
    timeout: int = LOAD_TIMEOUT_MS,
    outputs: int = 0,
) -> Visit:
    """Navigate the visit's tab; its marks are read even when the wait fails (how far the
    page got, and its kernel id so the kernel can be cleaned up). A page that got fewer
    than `outputs` cell outputs fails at once: it will never be ready."""
    try:
        await seen.page.goto(page_url(seen.server, page), wait_until="commit", timeout=timeout)
        await seen.page.wait_for_function(
            READY_JS, arg=[ready, outputs], timeout=timeout, polling=50
        )
    finally:
        with contextlib.suppress(Exception):
            seen.marks = await seen.page.evaluate(SNAPSHOT_JS)
    if ready not in seen.marks:
        shown = seen.marks.get("shown", {})
        raise BrokenPage(f"{seen.marks.get('outputs')} of {outputs} cell outputs: {shown}")
    return seen


class BrokenPage(Exception):
    """Voilà finished the page (loading screen gone) without all its cells' outputs."""


async def close(seen: Visit, unload: bool = True, context: bool = True) -> None:
    """Close the tab and, unless kept, its context. Normally (`unload`) before-unload runs
    and the context stays until the page is gone and Voilà has heard the shutdown beacon
    (closing the context at once could drop it); otherwise the tab just vanishes."""
    if unload and seen.page is not None:
        with contextlib.suppress(Exception):
            closed = asyncio.Event()
            seen.page.once("close", lambda _page: closed.set())
            await seen.page.close(run_before_unload=True)  # returns before the page is gone
            await asyncio.wait_for(closed.wait(), BEACON_WAIT_S)
        await beacon(seen, BEACON_WAIT_S)
    if context:
        with contextlib.suppress(Exception):
            await seen.context.close()


def beacon_outcome(server: VoilaServer, kernel_id: str) -> str | None:
    """What Voilà's log says became of a page's shutdown beacon, if anything yet."""
    for line in server.log().splitlines():
        if kernel_id in line and "Kernel shutdown" in line:
            return "shut down"
        if kernel_id in line and "api/shutdown" in line and " 403 " in f" {line} ":
            return "refused (403)"
    return None


async def beacon(seen: Visit, timeout: float) -> str:
    """The outcome of the page's shutdown beacon, waiting up to `timeout` for one."""
    if not seen.kernel_id:
        return "no kernel id"
    start = time.monotonic()
    while True:
        outcome = await asyncio.to_thread(beacon_outcome, seen.server, seen.kernel_id)
        if outcome or time.monotonic() - start > timeout:
            return outcome or "no effect"
        await asyncio.sleep(0.1)


async def clean_up(seen: Visit) -> None:
    """Shut down a kernel its page left running, so the next measurement starts from the
    pool alone (after its count has been taken)."""
    if seen.kernel_id and seen.server.kernel_processes(seen.kernel_id):
        with contextlib.suppress(Exception):
            await asyncio.to_thread(seen.server.shutdown_kernel, seen.kernel_id)


async def change(page, selector: str, value: str) -> dict:
    """Commit one change and time it in the page; `wall` is when it was sent (time.time)."""
    wall = time.time()
    result = await page.evaluate(CHANGE_JS, [selector, value, CHANGE_TIMEOUT_MS])
    result["wall"] = wall
    return result


async def burst(page, count: int) -> list[dict]:
    """`count` changes that each move the price, alternating the living area and the
    neighbourhood between two values, at least SPACING_S apart (past the page's throttle)."""
    form = await page.evaluate(FORM_JS)
    area = int(float(form["Gr_Liv_Area"]))
    home = form["Neighborhood"]
    other = "College Creek" if home != "College Creek" else "Old Town"
    steps = [
        (AREA, str(area + 400)),
        (NEIGHBOURHOOD, other),
        (AREA, str(area)),
        (NEIGHBOURHOOD, home),
    ]
    results = []
    for i in range(count):
        start = time.monotonic()
        selector, value = steps[i % len(steps)]
        results.append(await change(page, selector, value))
        await asyncio.sleep(max(0.0, SPACING_S - (time.monotonic() - start)))
    return results


# --- 1 and 2: time to interactive and interaction latency ---------------------------------


@dataclass
class Run:
    """Everything the phases share: browser, servers, sampler and the pool sizes."""

    browser: object
    sampler: Sampler
    servers: dict[str, VoilaServer]
    settings: dict
    loads: int
    arrival_s: float = 0.0  # a crowd's viewers arrive spread over this many seconds
    beacons: list[str] = field(default_factory=list)  # every normal leave's outcome
    outputs: int = 0  # cell outputs of a healthy price page, once a load has shown them

    def expected(self, **viewers: int) -> dict[str, int]:
        """Kernel counts when each named server has that many viewers open."""
        pool = self.settings["pool_total"]
        pools = {"preheated": pool, "cold": 0, "vanish": pool}
        return {name: pools[name] + viewers.get(name, 0) for name in self.servers}


@contextlib.asynccontextmanager
async def tab(run: Run, server: str, context=None):
    """A new tab, in a fresh context unless one is given. A failed load or interaction is
    noted in the visit's marks (`error`) rather than ending the run; on exit the viewer
    leaves normally and the beacon's outcome is counted."""
    own = context is None
    seen = Visit(run.servers[server], context or await new_context(run.browser))
    seen.page = await seen.context.new_page()
    try:
        yield seen
    except (PlaywrightError, BrokenPage) as error:
        seen.marks["error"] = describe(error)
        log(f"{server}: {seen.marks['error']}")
    finally:
        await close(seen, context=own)
        run.beacons.append(await beacon(seen, 0))
        await clean_up(seen)


def describe(error: Exception) -> str:
    return f"{type(error).__name__}: {str(error).splitlines()[0][:200]}"


async def preheated_load(run: Run) -> tuple[dict, list[dict], list[dict]]:
    """A fresh-cache load, a burst right away (the pool refilling), a burst when quiet."""
    started, busy, idle = time.time(), [], []
    before = cpu_account(run.servers["preheated"])
    async with tab(run, "preheated") as seen:
        await load(seen)
        loaded = cpu_account(run.servers["preheated"])
        busy = await burst(seen.page, BURST)
        for item in busy:
            item["during_refill"] = refill_busy(run.sampler, "preheated", started, item["wall"])
        seen.marks["refill_settle"] = await settle(run.sampler, run.expected(preheated=1))
        seen.marks["refill_done_after_s"] = time.time() - started - QUIET_WINDOW_S
        # The server's CPU for this viewer: until the page was interactive, and in all
        # (with the burst and the pool's replacement kernel, whose start is new_kernels_s).
        seen.marks["server_cpu"] = {
            "load": cpu_spent(before, loaded, 1),
            "with_refill": cpu_spent(before, cpu_account(run.servers["preheated"]), 1),
        }
        idle = await burst(seen.page, BURST)
    return seen.marks, busy, idle


async def cold_load(run: Run) -> tuple[dict, list[dict]]:
    after = []
    async with tab(run, "cold") as seen:
        await load(seen)
        after = await burst(seen.page, COLD_BURST)
    return seen.marks, after


async def warm_up(run: Run) -> None:
    """One load of each server, not counted: a server's first request renders its templates
    for the first time and the browser starts its helper processes."""
    for server in run.servers:
        async with tab(run, server) as seen:
            await load(seen)
        await settle(run.sampler, run.expected())


async def warm_load(run: Run, context) -> dict:
    """A repeat visit: a new tab in the context that has loaded the page before."""
    async with tab(run, "preheated", context) as seen:
        await load(seen)
    return seen.marks


async def measure_loads(run: Run) -> dict:
    """Loads in turn: preheated fresh, cold fresh, preheated repeat visit (warm cache, one
    context primed by an uncounted visit), with a settle gap after each one."""
    out = {"preheated_fresh": [], "cold_fresh": [], "preheated_warm": []}
    latency = {"after_load": [], "idle": [], "cold_page": []}
    await warm_up(run)
    if not run.loads:  # --loads 0: only the later phases
        return {"loads": out, "latency": latency}
    warm = await new_context(run.browser)
    await warm_load(run, warm)
    for i in range(run.loads):
        marks, busy, idle = await preheated_load(run)
        marks["settle"] = await settle(run.sampler, run.expected())
        out["preheated_fresh"].append(marks)
        latency["after_load"] += busy
        latency["idle"] += idle
        marks, after = await cold_load(run)
        marks["settle"] = await settle(run.sampler, run.expected())
        out["cold_fresh"].append(marks)
        latency["cold_page"] += after
        marks = await warm_load(run, warm)
        marks["settle"] = await settle(run.sampler, run.expected())
        out["preheated_warm"].append(marks)
        progress(f"load {i + 1}/{run.loads}", out, latency)
    await warm.close()
    run.outputs = max(m.get("outputs", 0) for m in out["preheated_fresh"] if "tti" in m)
    return {"loads": out, "latency": latency}


def progress(label: str, loads: dict, latency: dict) -> None:
    tti = " ".join(f"{k} {v[-1].get('tti', float('nan')):.0f}" for k, v in loads.items())
    ms = [r["ms"] for r in latency["after_load"][-BURST:] + latency["idle"][-BURST:]]
    shown = " ".join(f"{m:.0f}" if m is not None else "timeout" for m in ms)
    log(f"{label}: TTI ms {tti}; changes {shown} ms")


# --- 3: kernel memory per viewer ----------------------------------------------------------


async def interact_price(page, scratch: Path) -> None:
    await burst(page, BURST)


async def interact_batch(page, scratch: Path) -> None:
    """Upload a file (every reference sale), then sort the results two ways."""
    async with page.expect_file_chooser() as chooser:
        await page.click(".widget-upload")
    await (await chooser.value).set_files(str(upload_file(scratch)))
    await page.wait_for_function(
        "() => /upload\\.csv:/.test(document.body.innerText)", timeout=LOAD_TIMEOUT_MS
    )
    await page.select_option(".widget-dropdown select", index=1)
    await page.get_by_role("button", name="Lowest first").click()
    await asyncio.sleep(1.0)


async def interact_report(page, scratch: Path) -> None:
    """Hover a few neighbourhoods on the map (each hover is a round-trip to the kernel)."""
    shapes = page.locator(".leaflet-overlay-pane path.leaflet-interactive")
    for i in range(min(6, await shapes.count())):
        with contextlib.suppress(Exception):
            await shapes.nth(i).hover(force=True, timeout=2000)
        await asyncio.sleep(SPACING_S)


INTERACT = {"price": interact_price, "batch": interact_batch, "report": interact_report}
READY = {"price": "tti", "batch": "table", "report": "bqplot"}


def upload_file(scratch: Path) -> Path:
    from homevalue import config
    from homevalue.comps import reference_sales

    path = scratch / "upload.csv"
    if not path.exists():
        reference_sales(config.model_dir()).drop(columns=["Sale_Price"]).to_csv(path, index=False)
    return path


async def measure_memory(run: Run, scratch: Path) -> dict:
    """Each page's kernel after load and after interactions, once everything is quiet."""
    server, out = run.servers["preheated"], {}
    for name in PAGES:
        async with tab(run, "preheated") as seen:
            await load(seen, name, READY[name])
            processes = server.kernel_processes(seen.kernel_id)
            await settle(run.sampler, run.expected(preheated=1))
            out[name] = {"after_load": memory_mib(processes)}
            await INTERACT[name](seen.page, scratch)
            await settle(run.sampler, run.expected(preheated=1))
            out[name]["after_interactions"] = memory_mib(processes)
        await settle(run.sampler, run.expected())
        log(
            f"memory {name}: "
            + ", ".join(f"RSS {m['rss']:.0f} MiB {state}" for state, m in out.get(name, {}).items())
        )
    return out


# --- 4: concurrent viewers ----------------------------------------------------------------


class Pricer:
    """The bench's own answer for the house a form shows: predict_one, formatted as shown."""

    def __init__(self):
        from homevalue import load_model

        self.model = load_model()

    def record(self, form: dict) -> dict:
        record = {}
        for feature in self.model.schema.features:
            raw = form[feature.name]
            if feature.is_category:
                record[feature.name] = raw  # the label the form shows: predict_one reads it
            elif feature.kind == "integer":
                record[feature.name] = int(float(raw.replace(",", "")))
            else:
                record[feature.name] = float(raw.replace(",", ""))
        return record

    def price(self, form: dict) -> str:
        from homevalue import predict_one
        from homevalue.ui.render import money

        return money(predict_one(self.record(form), model=self.model).price)


async def price_house(seen: Visit, pricer: Pricer, area: int, home: str) -> dict:
    """Set the viewer's own house, then wait for the price `predict_one` gives for the form."""
    label = pricer.model.schema.by_name["Neighborhood"].label_of(home)
    await seen.page.select_option(NEIGHBOURHOOD, value=label)
    await change(seen.page, AREA, str(area))
    form = await seen.page.evaluate(FORM_JS)
    expected = pricer.price(form)
    await seen.page.wait_for_function(
        "([want]) => (document.querySelector('.hv-price') || {}).textContent === want",
        arg=[expected],
        timeout=60_000,
        polling=100,
    )
    shown = await seen.page.inner_text(".hv-price")
    mine = int(form["Gr_Liv_Area"]) == area and form["Neighborhood"] == label
    return {"expected": expected, "shown": shown, "ok": mine and shown == expected}


async def viewer(run: Run, server: str, pricer: Pricer, i: int, via_landing: bool) -> dict:
    """One viewer: open the price page, price its own house, check the answer shown."""
    area, home = 1000 + 50 * i, NEIGHBOURHOODS[i % len(NEIGHBOURHOODS)]
    target = run.servers[server]
    context = await new_context(run.browser, target if via_landing else None)
    out = {"i": i, "area": area, "neighbourhood": home, "via_landing": via_landing, "ok": False}
    out["visit"] = seen = Visit(target, context, await context.new_page())
    try:
        await load(seen, timeout=VIEWER_TIMEOUT_MS, outputs=run.outputs)
        out["tti_ms"] = seen.marks["tti"]
        # The server's part: the page's HTML complete (every cell run and sent), before
        # the browser starts the widgets.
        out["page_ready_ms"] = mark(seen.marks, "response_end")
        out.update(await price_house(seen, pricer, area, home))
    except Exception as error:  # a timeout, a crashed page: counted, not fatal
        out["error"] = describe(error)
        out["reached"] = reached(seen.marks)
        with contextlib.suppress(Exception):
            out["shown"] = await seen.page.inner_text(".hv-price", timeout=1000)
    return out


async def arrive(run: Run, server: str, pricer: Pricer, i: int, n: int) -> dict:
    """Viewer i of n, arriving evenly spread over `run.arrival_s` (0: all at once)."""
    await asyncio.sleep(run.arrival_s * i / max(1, n - 1))
    return await viewer(run, server, pricer, i, via_landing=i % 2 == 1)


def reached(marks: dict) -> dict:
    """How far a failed page got: its last mark, and the outputs and widgets it shows."""
    timed = {k: v for k, v in marks.items() if isinstance(v, int | float) and k != "ws_bytes"}
    last = max(timed, key=timed.get, default=None)
    return {"last_mark": last, "at_ms": timed.get(last), **marks.get("shown", {})}


def server_memory(server: VoilaServer) -> dict:
    processes = server.processes()
    kernels = [p for p in processes if is_kernel(p)]
    total = memory_mib(processes)
    each = [memory_mib([k]) for k in kernels]
    return {
        **total,
        "kernels": len(kernels),
        **{f"kernel_{key}": stats([m[key] for m in each]) for key in ("rss", "uss", "pss")},
    }


# Process accounting: what the server itself spends, apart from the browser on this machine.
ProcessKey = tuple[int, float]  # (pid, start time): a pid reused later is another process


def cpu_account(server: VoilaServer) -> dict[ProcessKey, tuple[float, bool]]:
    """CPU-seconds (user + system) so far of each of the server's processes, with the
    children they have reaped (a kernel that exited is counted by the Voilà process that
    waited for it), and whether each is a kernel."""
    out = {}
    for process in server.processes():
        with contextlib.suppress(psutil.Error):
            t = process.cpu_times()
            spent = t.user + t.system + t.children_user + t.children_system
            out[(process.pid, process.create_time())] = (spent, is_kernel(process))
    return out


def cpu_spent(before: dict, after: dict, viewers: int) -> dict:
    """CPU-seconds the server spent between two accounts: the Voilà process (and make),
    the kernels (new ones whole, the pool's since `before`), and per new viewer. A process
    gone by `after` was reaped by its parent, whose children's times now hold it whole, so
    its share in `before` is taken off."""
    kernels = voila = fresh = 0.0
    for key, (spent, kernel) in after.items():
        delta = spent - before.get(key, (0.0, kernel))[0]
        if kernel:
            kernels += delta
            fresh += delta if key not in before else 0.0
        else:
            voila += delta
    voila -= sum(spent for key, (spent, _k) in before.items() if key not in after)
    new = sum(1 for key, (_s, kernel) in after.items() if kernel and key not in before)
    total = voila + kernels
    return {
        "voila_s": voila,
        "kernels_s": kernels,
        "new_kernels_s": fresh,
        "total_s": total,
        "new_kernels": new,
        "per_viewer_s": total / viewers if viewers else None,
    }


async def crowd(run: Run, server: str, n: int, pricer: Pricer) -> tuple[list[dict], dict]:
    """N viewers arriving within `run.arrival_s` (every other one came through the landing
    page, so has the _xsrf cookie); the server's CPU (process accounting),
    the peak RSS while they load and the memory once all are done."""
    start, dropped = time.time(), iopub_timeouts(run.servers[server])
    before = cpu_account(run.servers[server])
    viewers = await asyncio.gather(*(arrive(run, server, pricer, i, n) for i in range(n)))
    spent = cpu_spent(before, cpu_account(run.servers[server]), n)
    memory = server_memory(run.servers[server])
    memory["accounting"] = spent
    memory["iopub_timeouts"] = iopub_timeouts(run.servers[server]) - dropped
    samples = run.sampler.between(start, time.time())
    memory["peak_rss"] = max([s.rss.get(server, 0.0) for s in samples] + [memory["rss"]])
    memory["cpu_s"] = cpu_seconds(samples, server)
    memory["load_s"] = time.time() - start
    return viewers, memory


def cpu_seconds(samples: list[Sample], server: str) -> dict[str, float]:
    """CPU time of the server (Voilà and kernels) and of the rest the bench started (the
    browser), from the samples: on this machine the viewers' browser shares the cores."""
    period = SAMPLE_PERIOD_S / 100  # % of one core over a period -> core-seconds
    own = sum(s.server_cpu.get(server, 0.0) for s in samples) * period
    return {"server": own, "browser": sum(s.cpu for s in samples) * period - own}


def iopub_timeouts(server: VoilaServer) -> int:
    """Voilà's "Timeout waiting for IOPub output" warnings so far: each is a cell whose
    output the executor stopped waiting for (nbclient's iopub_timeout), missing from a page."""
    return server.log().count("Timeout waiting for IOPub output")


def crowd_summary(viewers: list[dict], memory: dict) -> dict:
    ok = sum(v["ok"] for v in viewers)
    keep = (
        "i",
        "area",
        "neighbourhood",
        "via_landing",
        "ok",
        "tti_ms",
        "page_ready_ms",
        "expected",
        "shown",
        "error",
        "reached",
        "beacon",
    )
    return {
        "viewers": len(viewers),
        "ok": ok,
        "success_rate": ok / len(viewers),
        "tti_ms": stats([v.get("tti_ms") for v in viewers]),
        "page_ready_ms": stats([v.get("page_ready_ms") for v in viewers]),
        "memory": memory,
        "errors": [v["error"] for v in viewers if "error" in v][:5],
        "each": [{k: v[k] for k in keep if k in v} for v in viewers],
    }


def leftover(viewers: list[dict]) -> dict[str, int]:
    """Viewers whose kernel still runs, by how they arrived."""
    left = {"direct link": 0, "via landing page": 0}
    for v in viewers:
        seen = v["visit"]
        if seen.kernel_id and seen.server.kernel_processes(seen.kernel_id):
            left["via landing page" if v["via_landing"] else "direct link"] += 1
    return left


async def measure_viewers(run: Run, counts: list[int], pricer: Pricer) -> dict:
    """For each N: N viewers price their houses, then all leave normally (before-unload)."""
    pool, out = run.settings["pool_total"], {}
    for n in counts:
        viewers, memory = await crowd(run, "preheated", n, pricer)
        summary = crowd_summary(viewers, memory)
        left = time.time()
        await asyncio.gather(*(close(v["visit"]) for v in viewers))
        back = await wait_kernels(run.sampler, "preheated", pool, timeout=15)
        back.update(
            seconds=time.time() - left,
            leaked=max(0, (back["kernels"] or 0) - pool),
            leaked_by_arrival=leftover(viewers),
        )
        for v in viewers:
            summary["each"][v["i"]]["beacon"] = outcome = await beacon(v["visit"], 0)
            run.beacons.append(outcome)
            await clean_up(v["visit"])
        summary["after_leaving"] = back
        out[str(n)] = summary
        log_crowd(summary)
        await settle(run.sampler, run.expected())
    return out


def log_crowd(s: dict) -> None:
    t, m, back = s["tti_ms"], s["memory"], s["after_leaving"]
    log(
        f"{s['viewers']} viewers: {s['ok']} correct, TTI median {t.get('median', 0):.0f} max "
        f"{t.get('max', 0):.0f} ms, RSS {m['rss']:.0f} (peak {m['peak_rss']:.0f}) MiB, kernels "
        f"{m['kernels']} -> {back['kernels']} {back['leaked_by_arrival']}"
    )


async def measure_vanish(run: Run, n: int, pricer: Pricer) -> dict:
    """N viewers price, then vanish without unload (their contexts closed, like a crashed
    tab): the kernels stay until the culler takes them, on the vanish server's settings."""
    pool = run.settings["pool_total"]
    await settle(run.sampler, run.expected())
    viewers, memory = await crowd(run, "vanish", n, pricer)
    summary = crowd_summary(viewers, memory)
    gone = time.time()
    await asyncio.gather(*(close(v["visit"], unload=False) for v in viewers))
    await asyncio.sleep(2)
    summary["kernels_2s_after_vanishing"] = run.sampler.kernel_count("vanish")
    timeout = BENCH_CULL_TIMEOUT_S + 3 * BENCH_CULL_INTERVAL_S + 30
    back = await wait_kernels(run.sampler, "vanish", pool, timeout=timeout)
    back.update(seconds=time.time() - gone, leaked=max(0, (back["kernels"] or 0) - pool))
    summary["after_vanishing"] = back
    log(
        f"vanish {n}: {summary['ok']}/{n} correct; kernels 2 s after "
        f"{summary['kernels_2s_after_vanishing']}, {back['kernels']} after "
        f"{back['seconds']:.0f} s"
    )
    return summary


# --- the run ------------------------------------------------------------------------------


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


async def start_server(stack, sampler: Sampler, name: str, folder: Path, voila_args: str = ""):
    """Start `make serve` (in a thread: it blocks until Voilà answers) and watch it."""
    # The pools as viewers get them: sized from memory (the tests' servers are not).
    from homevalue.config import POOL_MEMORY_SHARE

    share = os.environ.get("HOMEVALUE_POOL_MEMORY_SHARE", str(POOL_MEMORY_SHARE))
    env = {"HOMEVALUE_POOL_MEMORY_SHARE": share}
    server = await asyncio.to_thread(
        stack.enter_context, serve(folder / f"voila-{name}.log", env=env, voila_args=voila_args)
    )
    sampler.servers[name] = server
    log(f"{name} server on {server.url} {voila_args}")
    return server


def stop_server(stack: contextlib.ExitStack, sampler: Sampler, name: str) -> None:
    sampler.servers.pop(name, None)
    stack.close()


async def run_phases(args, folder: Path, sampler: Sampler, browser) -> dict:
    settings = voila_settings()
    pricer = Pricer()
    found: dict = {"settings": settings}
    with contextlib.ExitStack() as hot, contextlib.ExitStack() as cold:
        servers = {
            "preheated": await start_server(hot, sampler, "preheated", folder),
            "cold": await start_server(cold, sampler, "cold", folder, "--preheat_kernel=False"),
        }
        run = Run(browser, sampler, servers, settings, args.loads, args.arrive_within)
        found["initial_settle"] = await settle(sampler, run.expected())
        found.update(await measure_loads(run))
        stop_server(cold, sampler, "cold")
        del servers["cold"]
        found["memory"] = await measure_memory(run, folder)
        found["viewers"] = await measure_viewers(run, args.viewers, pricer)
        found["beacons"] = dict(Counter(run.beacons))
    sampler.servers.clear()
    if args.vanish:
        with contextlib.ExitStack() as stack:
            vanish = await start_server(stack, sampler, "vanish", folder, bench_cull_args())
            run = Run(
                browser, sampler, {"vanish": vanish}, settings, args.loads, outputs=run.outputs
            )
            found["vanish"] = await measure_vanish(run, args.vanish, pricer)
        sampler.servers.clear()
    return found


async def run_benchmarks(args) -> dict:
    with report.run_record("bench_dashboards.py", LIBRARIES) as record:
        found = await measure(args)
    return summarise(record, found, args)


async def measure(args) -> dict:
    """Every phase, in one browser, with the sampler watching."""
    sampler = Sampler()
    sampler.start()
    try:
        with tempfile.TemporaryDirectory(prefix="homevalue-bench-") as scratch:
            async with async_playwright() as p:
                browser = await p.chromium.launch(executable_path=chromium.require(), args=FLAGS)
                found = await run_phases(args, Path(scratch), sampler, browser)
                found["browser"] = f"chromium {browser.version}"
                await browser.close()
    finally:
        sampler.stop()
    return found


# --- summary ------------------------------------------------------------------------------


def mark(marks: dict, key: str) -> float | None:
    value = marks.get(key, marks.get("navigation", {}).get(key))
    return value if isinstance(value, int | float) and value > 0 else None


def timeline(loads: list[dict]) -> dict[str, float]:
    """Median time of each mark over the loads, in ms since navigation start."""
    found = {}
    for key in report_dashboards.TIMELINE:
        values = [v for v in (mark(m, key) for m in loads) if v is not None]
        if values:
            found[key] = statistics.median(values)
    return found


def server_cpu_per_load(loads: list[dict]) -> dict:
    """Per preheated load (one viewer, server otherwise quiet): the server's CPU-seconds
    until interactive, in all (with the burst and the pool's replacement kernel), and the
    replacement kernel's own start."""
    cpu = [m["server_cpu"] for m in loads if "server_cpu" in m]
    return {
        "load": stats([c["load"]["total_s"] for c in cpu]),
        "load_voila": stats([c["load"]["voila_s"] for c in cpu]),
        "with_refill": stats([c["with_refill"]["total_s"] for c in cpu]),
        "refill_kernel": stats([c["with_refill"]["new_kernels_s"] for c in cpu]),
    }


def latency_summary(latency: dict) -> dict:
    groups = dict(latency)
    groups["during_refill"] = [r for r in latency["after_load"] if r.get("during_refill")]
    return {
        name: {
            **stats([r["ms"] for r in rows]),
            "errors": sorted({r["error"] for r in rows if "error" in r}),
        }
        for name, rows in groups.items()
    }


def summarise(record: dict, found: dict, args) -> dict:
    loads = found.pop("loads")
    latency = found.pop("latency")
    out = {
        **record,
        "browser": found.pop("browser"),
        "conditions": conditions(args, found.pop("settings")),
        "tti_ms": {name: stats([m.get("tti") for m in loads[name]]) for name in VARIANTS},
        "timeline_ms": {name: timeline(loads[name]) for name in VARIANTS},
        "server_cpu_per_load_s": server_cpu_per_load(loads["preheated_fresh"]),
        "refill_done_after_load_s": stats(
            [m.get("refill_done_after_s") for m in loads["preheated_fresh"]]
        ),
        "latency_ms": latency_summary(latency),
        **found,
        "loads": loads,
        "latency_samples": latency,
        "target_settings": report_dashboards.SETTINGS,
    }
    out["targets"] = report_dashboards.targets(out)
    out["notes"] = report_dashboards.notes(out)
    return out


def conditions(args, settings: dict) -> dict:
    return {
        "loads": args.loads,
        "viewers": args.viewers,
        "vanish_viewers": args.vanish,
        "arrive_within_s": args.arrive_within,
        "interactions_per_burst": BURST,
        "interaction_spacing_ms": SPACING_S * 1000,
        "pool_sizes": settings["pool_sizes"],
        "pool_total": settings["pool_total"],
        "cull_voila_json": settings["cull"],
        "cull_vanish_server": {
            **settings["cull"],
            "cull_idle_timeout": BENCH_CULL_TIMEOUT_S,
            "cull_interval": BENCH_CULL_INTERVAL_S,
        },
        "settle": (
            f"after every load, until all processes the bench started use < "
            f"{QUIET_CPU_PERCENT:g}% of one core over {QUIET_WINDOW_S:g} s and each server "
            f"runs its pool size (at most {SETTLE_TIMEOUT_S:g} s)"
        ),
    }


# --- main ---------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loads", type=int, default=10, help="page loads per variant")
    parser.add_argument("--viewers", default="5,10,20", help="concurrent viewer counts")
    parser.add_argument(
        "--arrive-within",
        type=float,
        default=10.0,
        help="a crowd's viewers arrive spread over this many seconds",
    )
    parser.add_argument("--vanish", type=int, default=5, help="viewers that vanish (0: skip)")
    report.add_output_options(parser)
    args = parser.parse_args(argv)
    args.viewers = sorted({int(n) for n in args.viewers.split(",") if n.strip()})
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = asyncio.run(run_benchmarks(args))
    return report.publish("dashboards", out, report_dashboards.markdown(out), args)


if __name__ == "__main__":
    sys.exit(main())
