"""HTTP API benchmark: a real uvicorn on loopback under load, and where a request's time goes.

Run with `make bench` (after the other benchmarks) or `.venv/bin/python
tests/benchmarks/bench_api.py`. Writes the "api" section of docs/benchmarks.json and the
part of docs/benchmarks.md between `<!-- api:start -->` and `<!-- api:end -->`, keeping
anything else in those files.

The server is started as `make api` starts it (`python -m homevalue.api`, access log on, to a
file), with one uvicorn worker and with two, both running throughout and measured in turn
at each step, so a change in the machine's other load falls on both alike; every request
prices one typical house.
1. Open loop at fixed rates (100, 200, 400, 800, 1600 req/s): this script's own asyncio client
   (a thread keeps the schedule) sends each request at its due time over up to 32 keep-alive
   connections and times it from that due time, not from when it was sent, so a server that
   stalls cannot hide the queue behind it (no coordinated omission, as vegeta or wrk2
   measure; neither is packaged by Debian). The client's own lateness is reported alongside.
2. Closed loop, the maximum throughput: Debian's `wrk` at 1, 4, 16 and 64 connections
   (installed with apt-get when missing and run as root; otherwise the step is skipped with
   the command to run). The maximum sustained throughput is the best rate with no errors.
3. Where the time goes, in process, timers around each part over many calls: JSON parsing,
   validation, the model (encode, booster, post-processing), serialising the answer, the
   access-log line, the whole ASGI app without a socket, and what HTTP adds on loopback.
4. A key flood (issue 10, item 5), one worker: what an ordinary client at 200 req/s sees
   (open loop, as in 1) alone and then while 4 other clients, in another process, send back
   to back a body of just under the size limit holding ~21,000 unknown keys; and the size
   and latency of the answers the flooders get. `--key-flood-only` runs this step alone
   (and writes nothing), e.g. against another checkout's code with PYTHONPATH=<its src>.

The client and the server share the machine's cores, as do any other jobs running: before
each step the bench waits (`--quiet-wait`, up to 60 s) for the machine to be idle, and
reports the CPU everyone else used during it, so a disturbed step can be told apart.
Figures are indicative. Not a pytest module: too slow and machine-dependent to gate CI; `--strict`
makes it exit 1 when a target is missed.
Usage: bench_api.py [--duration 10] [--rates 100,200,400,800,1600] [--workers 1,2]
                    [--connections 1,4,16,64] [--calls 5000] [--quiet-wait 60] [--strict]
                    [--no-write] [--docs DIR] [--key-flood-only]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import report
import report_api
from measure import API_BODY as BODY
from measure import API_PATH as PATH
from measure import RECORD, cpu_seconds, memory_mib, own_cpu_seconds, process_tree, summary
from measure import time_calls as time_each
from report import PROJ_ROOT
from report_api import TARGET_RATE

LIBRARIES = ["homevalue", "fastapi", "starlette", "uvicorn", "pydantic", "numpy", "lightgbm"]
HOST = "127.0.0.1"
POOL = 32  # open-loop connections, at most
FLOODERS = 4  # clients sending the key flood, back to back
QUIET_SHARE = 0.15  # the machine counts as idle below this share of all cores busy
REQUEST_TIMEOUT_S = 5.0


# --- the server -------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


class Server:
    """`python -m homevalue.api` in its own process group, stopped by its pid."""

    def __init__(self, workers: int, log: Path):
        self.workers, self.port, self.log = workers, free_port(), log
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> Server:
        command = [
            sys.executable,
            "-m",
            "homevalue.api",
            "--port",
            str(self.port),
            "--workers",
            str(self.workers),
        ]
        self.handle = open(self.log, "ab")  # noqa: SIM115 (closed in __exit__)
        self.process = subprocess.Popen(
            command,
            cwd=PROJ_ROOT,
            stdout=self.handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(
                    f"the API exited at start (code {self.process.returncode}): see {self.log}"
                )
            with contextlib.suppress(OSError):
                if get(self.url("/readyz"))[0] == 200:
                    time.sleep(1.0 if self.workers > 1 else 0.2)  # the other worker too
                    return self
            time.sleep(0.2)
        self.__exit__()
        raise SystemExit(f"the API was not ready within 60 s: see {self.log}")

    def url(self, path: str = PATH) -> str:
        return f"http://{HOST}:{self.port}{path}"

    def cpu_seconds(self) -> float:
        """User+system CPU of the server and its worker processes so far."""
        return cpu_seconds(process_tree(self.process.pid))

    def rss_mib(self) -> float:
        """Resident memory of the server and its workers (each holds its own model)."""
        return memory_mib(process_tree(self.process.pid))["rss"]

    def __exit__(self, *exc) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # uvicorn's graceful stop
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)  # the group we started
                self.process.wait()
        self.handle.close()


# --- 1. open loop -----------------------------------------------------------------------


class Connection:
    """One keep-alive HTTP/1.1 connection speaking just enough to POST and read the answer."""

    def __init__(self, port: int, body: bytes):
        self.port = port
        self.request = (
            f"POST {PATH} HTTP/1.1\r\nHost: {HOST}:{port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        self.reader = self.writer = None
        self.received = 0  # bytes in the last answer's body

    async def post(self) -> int:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(HOST, self.port)
        self.writer.write(self.request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        length = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head)
        self.received = len(await self.reader.readexactly(int(length[1]) if length else 0))
        return int(head[9:12])

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def schedule(loop, due_times: asyncio.Queue, start: float, rate: float, count: int) -> None:
    """Hand each request to the event loop at its due time, from a thread: time.sleep is
    precise to tens of microseconds, asyncio's timers only to the millisecond (epoll)."""
    for i in range(count):
        due = start + i / rate
        if (wait := due - time.perf_counter()) > 0:
            time.sleep(wait)
        loop.call_soon_threadsafe(due_times.put_nowait, due)
    for _ in range(POOL):
        loop.call_soon_threadsafe(due_times.put_nowait, None)


async def open_loop(port: int, rate: float, duration: float, body: bytes = BODY) -> dict:
    """Send `rate` requests per second for `duration` seconds, each timed from when it was
    due; a request waits (and its wait counts) when all POOL connections are busy."""
    due_times: asyncio.Queue = asyncio.Queue()
    latencies, late, statuses, failures = [], [], {}, 0
    clock = time.perf_counter

    async def worker() -> None:
        nonlocal failures
        connection = Connection(port, body)
        while (due := await due_times.get()) is not None:
            late.append(clock() - due)
            try:
                status = await asyncio.wait_for(connection.post(), REQUEST_TIMEOUT_S)
            except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError):
                failures += 1
                connection.close()
                continue
            latencies.append(clock() - due)
            statuses[status] = statuses.get(status, 0) + 1
        connection.close()

    workers = [asyncio.create_task(worker()) for _ in range(POOL)]
    count, start = int(rate * duration), clock() + 0.05
    sender = threading.Thread(
        target=schedule, args=(asyncio.get_running_loop(), due_times, start, rate, count)
    )
    sender.start()
    await asyncio.wait(workers, timeout=duration + REQUEST_TIMEOUT_S * 2)
    sender.join()
    elapsed = clock() - start
    ok = statuses.get(200, 0)
    ms = np.asarray(latencies) * 1e3
    return {
        "target_rps": rate,
        "requests": count,
        "ok": ok,
        "errors": count - ok,
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "failures": failures,
        "achieved_rps": ok / elapsed,
        **summary(ms, (50, 90, 99), unit="_ms"),
        "client_late": summary(np.asarray(late) * 1e3, unit="_ms"),
    }


def cpu_self() -> float:
    """CPU seconds of this script and of the children it has waited for (wrk)."""
    return own_cpu_seconds(children=True)


def machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, from /proc/stat."""
    ticks = [float(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    idle = ticks[3] + ticks[4]  # idle + iowait; steal counts as busy (someone else's)
    hertz = os.sysconf("SC_CLK_TCK")
    return (sum(ticks) - idle) / hertz, sum(ticks) / hertz


def wait_for_quiet(limit_s: float) -> float:
    """Wait, up to `limit_s`, until the machine is mostly idle (our servers are, between
    steps), so other jobs on a shared machine disturb fewer steps; the seconds waited."""
    start = time.monotonic()
    while time.monotonic() - start < limit_s:
        busy, total = machine_cpu()
        time.sleep(1.0)
        busy_now, total_now = machine_cpu()
        if (busy_now - busy) / max(total_now - total, 1e-9) < QUIET_SHARE:
            break
    return time.monotonic() - start


class StepCpu:
    """CPU used during a step, in % of one core: the server's, this script's (with wrk),
    and everyone else's on the machine, the last saying how disturbed the step was."""

    def __init__(self, server: Server, quiet_wait_s: float):
        self.server, self.quiet_wait_s = server, quiet_wait_s
        self.percent: dict = {}

    def __enter__(self) -> StepCpu:
        self.waited = wait_for_quiet(self.quiet_wait_s)
        self.start = (self.server.cpu_seconds(), cpu_self(), machine_cpu()[0])
        self.clock = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        wall = time.perf_counter() - self.clock
        server, client, machine = (
            now - then
            for now, then in zip(
                (self.server.cpu_seconds(), cpu_self(), machine_cpu()[0]), self.start, strict=True
            )
        )
        self.percent = {
            "server_cpu_percent": 100 * server / wall,
            "client_cpu_percent": 100 * client / wall,
            "others_cpu_percent": max(0.0, 100 * (machine - server - client) / wall),
            "waited_for_quiet_s": round(self.waited, 1),
        }


def open_loop_step(server: Server, rate: int, duration: float, quiet_wait_s: float) -> dict:
    with StepCpu(server, quiet_wait_s) as cpu:
        step = asyncio.run(open_loop(server.port, rate, duration))
    step.update(cpu.percent)
    print(
        f"  {server.workers} worker(s), open loop {rate:>5} req/s: achieved "
        f"{step['achieved_rps']:.0f}, p50 {step['p50_ms']:.2f} ms, p99 {step['p99_ms']:.2f} ms, "
        f"errors {step['errors']}; others' CPU {step['others_cpu_percent']:.0f}%",
        flush=True,
    )
    return step


def measure_open_loop(
    servers: list[Server], rates: list[int], duration: float, quiet_wait_s: float
) -> dict:
    """Each rate on each server in turn, so a change in the machine's other load between
    steps falls on every configuration alike."""
    steps: dict[int, list[dict]] = {server.workers: [] for server in servers}
    for server in servers:
        asyncio.run(open_loop(server.port, 200, 2.0))  # warm-up: connections, caches
    for rate in rates:
        for server in servers:
            done = steps[server.workers]
            if done and done[-1]["errors"] > done[-1]["requests"] // 2:
                continue  # far past saturation: higher rates only time out
            done.append(open_loop_step(server, rate, duration, quiet_wait_s))
    return steps


# --- 2. closed loop (wrk) ---------------------------------------------------------------


def find_wrk() -> str | None:
    """Debian's wrk, installed with apt-get when missing and we are root."""
    if path := shutil.which("wrk"):
        return path
    command = ["apt-get", "install", "-y", "--no-install-recommends", "wrk"]
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        print(
            "wrk not found: the closed-loop step is skipped. Install it with "
            "`sudo apt-get install wrk` and rerun.",
            flush=True,
        )
        return None
    print("wrk not found: installing Debian's package (apt-get install wrk)", flush=True)
    if subprocess.run(command, capture_output=True).returncode != 0:
        subprocess.run(["apt-get", "update"], capture_output=True)
        subprocess.run(command, capture_output=True)
    return shutil.which("wrk")


UNITS_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def parse_wrk(text: str) -> dict:
    def latency(percent: str) -> float | None:
        found = re.search(rf"^\s*{percent}%\s+([\d.]+)(us|ms|s|m)\s*$", text, re.M)
        return float(found[1]) * UNITS_MS[found[2]] if found else None

    requests = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)", text)
    socket_errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text
    )
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    errors = int(non_2xx[1]) if non_2xx else 0
    errors += sum(int(n) for n in socket_errors.groups()) if socket_errors else 0
    return {
        "requests": int(requests[1]) if requests else 0,
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", text)[1]),
        "p50_ms": latency("50"),
        "p99_ms": latency("99"),
        "errors": errors,
    }


def measure_closed_loop(
    wrk: str, servers: list[Server], connections: list[int], args: argparse.Namespace, scratch: Path
) -> dict:
    """wrk at each connection count on each server in turn (interleaved, as the open loop)."""
    script = scratch / "post.lua"
    script.write_text(
        'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
        f"wrk.body = {json.dumps(BODY.decode())}\n"
    )
    steps: dict[int, list[dict]] = {server.workers: [] for server in servers}
    for count in connections:
        for server in servers:
            command = [wrk, "-t1", f"-c{count}", f"-d{args.duration:g}s", "--latency", "-s"]
            with StepCpu(server, args.quiet_wait) as cpu:
                done = subprocess.run(
                    [*command, str(script), server.url()],
                    capture_output=True,
                    text=True,
                    timeout=args.duration + 60,
                )
            step = {"connections": count, **parse_wrk(done.stdout), **cpu.percent}
            steps[server.workers].append(step)
            print(
                f"  {server.workers} worker(s), wrk {count:>3} connections: {step['rps']:.0f} "
                f"req/s, p50 {step['p50_ms']:.2f} ms, p99 {step['p99_ms']:.2f} ms, "
                f"errors {step['errors']}; others' CPU {step['others_cpu_percent']:.0f}%",
                flush=True,
            )
    return steps


def sequential_ms(server: Server, body: bytes, calls: int) -> dict:
    """One connection, one request at a time: the latency a lone client sees."""

    async def run() -> list[float]:
        connection, times = Connection(server.port, body), []
        for _ in range(calls):
            start = time.perf_counter()
            status = await connection.post()
            times.append(time.perf_counter() - start)
            if status != 200:
                raise SystemExit(f"the API answered {status} to the benchmark's house")
        connection.close()
        return times

    times = np.asarray(asyncio.run(run())[calls // 10 :]) * 1e3  # the first tenth warms up
    return {"calls": len(times), **summary(times, unit="_ms")}


# --- 3. where the time goes ---------------------------------------------------------------


def timed_us(call, calls: int) -> dict:
    times = time_each(call, calls, warmup=calls // 10) * 1e6
    return {"p50_us": float(np.percentile(times, 50)), "mean_us": float(times.mean())}


def asgi_us(app, body: bytes, calls: int) -> dict:
    """One POST through the whole app in process (no socket), timed like `timed_us`, all
    calls in one event loop as uvicorn runs them."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": PATH,
        "raw_path": PATH.encode(),
        "query_string": b"",
        "root_path": "",
        "client": (HOST, 50000),
        "server": (HOST, 8000),
        "state": {},
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ],
    }
    statuses = []

    async def receive():
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message):
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    async def timed() -> np.ndarray:
        times, clock = np.empty(calls), time.perf_counter
        for _ in range(calls // 10):
            await app(dict(scope), receive, send)
        for i in range(calls):
            start = clock()
            await app(dict(scope), receive, send)
            times[i] = clock() - start
        return times * 1e6

    times = asyncio.run(timed())
    if set(statuses) != {200}:
        raise SystemExit(f"the app answered {sorted(set(statuses))} to the benchmark's house")
    return {"p50_us": float(np.percentile(times, 50)), "mean_us": float(times.mean())}


def measure_parts(calls: int) -> dict:
    """Each part of a request timed alone, then the whole app, in this process."""
    from fastapi.responses import JSONResponse

    from homevalue import api
    from homevalue.predict import encode, finish, predict_one
    from homevalue.schema import validate_record

    app = api.create_app()
    model = app.state.slot.get()
    clean, _ = validate_record(model.schema, RECORD)
    prediction = predict_one(RECORD, model=model)
    devnull = open(os.devnull, "w")  # noqa: SIM115 (the access log's stream while timing)
    handlers = api.access_log.handlers
    api.access_log.handlers = [api.logging.StreamHandler(devnull)]
    line = {
        "ts": datetime.now(UTC).isoformat(),
        "method": "POST",
        "route": PATH,
        "status": 200,
        "latency_ms": 1.234,
        "model_version": model.version,
    }
    try:
        parts = {
            "parse JSON body": timed_us(lambda: api.parse_houses(BODY, 100), calls),
            "validate (validate_record)": timed_us(
                lambda: validate_record(model.schema, RECORD), calls
            ),
            "model (encode, booster, finish)": timed_us(
                lambda: finish(model, model.predict_log(encode(model, clean))), calls
            ),
            "serialise (to_dict, JSON)": timed_us(
                lambda: JSONResponse(prediction.to_dict()).body, calls
            ),
            "access-log line": timed_us(lambda: api.access_log.info(json.dumps(line)), calls),
        }
        whole = {
            "predict_one (validate + model)": timed_us(
                lambda: predict_one(RECORD, model=model), calls
            ),
            "whole app in process (ASGI, no socket)": asgi_us(app, BODY, calls),
        }
    finally:
        api.access_log.handlers = handlers
        devnull.close()
    return {"parts": parts, "whole": whole}


# --- 4. a key flood ---------------------------------------------------------------------


def key_flood_body() -> bytes:
    """RECORD padded with unknown keys to just under the body limit: the body of issue 10's
    amplification attack (21,004 keys in 262 KB)."""
    from homevalue import config  # PYTHONPATH may point at another checkout's code

    limit = config.API_MAX_BODY_BYTES - 64
    keys = ",".join(f'"k{n:06d}":1' for n in range(limit // 12))
    body = json.dumps(RECORD, separators=(",", ":"))[:-1] + "," + keys
    return body[: body.rindex(",", 0, limit)].encode() + b"}"


def flood(port: int, body: bytes, duration: float, clients: int, results) -> None:
    """`clients` connections each sending `body` as soon as the last answer is read, for
    `duration` seconds; puts (latency s, status, answer bytes) per request on `results`.
    Run in its own process, so reading big answers does not slow the measuring client."""

    async def client() -> list[tuple[float, int, int]]:
        connection, done = Connection(port, body), []
        end = time.perf_counter() + duration
        while time.perf_counter() < end:
            start = time.perf_counter()
            try:
                status = await asyncio.wait_for(connection.post(), REQUEST_TIMEOUT_S * 4)
            except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError):
                connection.close()
                done.append((time.perf_counter() - start, 0, 0))
                continue
            done.append((time.perf_counter() - start, status, connection.received))
        connection.close()
        return done

    async def every_client() -> list:
        return await asyncio.gather(*(client() for _ in range(clients)))

    results.put([answer for answers in asyncio.run(every_client()) for answer in answers])


def open_loop_summary(step: dict) -> dict:
    keys = ("requests", "ok", "errors", "p50_ms", "p90_ms", "p99_ms", "max_ms", "client_late")
    return {key: step[key] for key in keys}


def measure_key_flood(server: Server, rate: int, duration: float, quiet_wait_s: float) -> dict:
    """The ordinary client at `rate` alone, then during the flood (started half a second
    before it, and running until after it ends)."""
    body = key_flood_body()
    asyncio.run(open_loop(server.port, rate, 2.0))  # warm-up
    wait_for_quiet(quiet_wait_s)
    cpu_start = server.cpu_seconds()
    alone = asyncio.run(open_loop(server.port, rate, duration))
    ordinary_cpu = (server.cpu_seconds() - cpu_start) / max(alone["requests"], 1)
    wait_for_quiet(quiet_wait_s)
    context = multiprocessing.get_context("fork")  # no thread runs here at this point
    answers = context.Queue()
    flooder = context.Process(
        target=flood, args=(server.port, body, duration + 1.0, FLOODERS, answers)
    )
    cpu_start = server.cpu_seconds()
    flooder.start()
    time.sleep(0.5)
    flooded = asyncio.run(open_loop(server.port, rate, duration))
    sent = answers.get(timeout=duration + 120)
    flooder.join()
    # The server's CPU while the flood ran, less what the ordinary requests cost alone.
    flood_cpu = server.cpu_seconds() - cpu_start - ordinary_cpu * flooded["requests"]
    seconds = np.asarray([s for s, _, _ in sent])
    statuses: dict[str, int] = {}
    for _, status, _ in sent:
        statuses[str(status)] = statuses.get(str(status), 0) + 1
    answered = [size for _, status, size in sent if status]
    return {
        "rate": rate,
        "duration_s": duration,
        "alone": open_loop_summary(alone),
        "flooded": open_loop_summary(flooded),
        "flood": {
            "clients": FLOODERS,
            "body_bytes": len(body),
            "keys": len(json.loads(body)),
            "requests": len(sent),
            "per_second": len(sent) / (duration + 1.0),
            "statuses": statuses,
            "answer_bytes": int(np.median(answered)) if answered else None,
            **summary(seconds * 1e3, unit="_ms"),
            "server_cpu_ms_each": 1e3 * flood_cpu / max(len(sent), 1),
        },
    }


# --- main ---------------------------------------------------------------------------------


def server_stack() -> dict:
    """Which event loop and HTTP parser uvicorn picks here ("auto" prefers the C ones)."""
    import importlib.util

    def has(name: str) -> bool:
        return importlib.util.find_spec(name) is not None

    return {
        "loop": "uvloop" if has("uvloop") else "asyncio",
        "http": "httptools" if has("httptools") else "h11",
    }


def run(args: argparse.Namespace) -> dict:
    # The scheduling thread waits at most this long for the GIL (default 5 ms) when the event
    # loop is busy, so requests leave on time.
    sys.setswitchinterval(0.0005)
    with report.run_record("bench_api.py", LIBRARIES) as results:
        measure(args, results)
    results["targets"] = report_api.targets(results)
    return results


def measure(args: argparse.Namespace, results: dict) -> None:
    results.update(
        server=server_stack(),
        step_s=args.duration,
        quiet_wait_s=args.quiet_wait,
        calls=args.calls,
        target_settings=report_api.SETTINGS,
        configs={},
    )
    print("Where the time goes (in process)...", flush=True)
    results["breakdown"] = measure_parts(args.calls)
    wrk = find_wrk()
    list_body = json.dumps([RECORD] * 100).encode()
    with (
        tempfile.TemporaryDirectory(prefix="bench_api_") as scratch,
        contextlib.ExitStack() as stack,
    ):
        servers = [
            stack.enter_context(Server(workers, Path(scratch) / f"server_{workers}.log"))
            for workers in args.workers
        ]
        print(f"uvicorn with {', '.join(str(s.workers) for s in servers)} worker(s)", flush=True)
        configs = {
            server.workers: {
                "sequential": {
                    "one house": sequential_ms(server, BODY, 2000),
                    "100 houses": sequential_ms(server, list_body, 200),
                }
            }
            for server in servers
        }
        opened = measure_open_loop(servers, args.rates, args.duration, args.quiet_wait)
        for workers, steps in opened.items():
            configs[workers]["open_loop"] = steps
        if wrk:
            closed = measure_closed_loop(wrk, servers, args.connections, args, Path(scratch))
            for workers, steps in closed.items():
                configs[workers]["closed_loop"] = steps
        one = next(server for server in servers if server.workers == 1)
        results["key_flood"] = measure_key_flood(one, TARGET_RATE, args.duration, args.quiet_wait)
        print(report_api.key_flood_markdown(results["key_flood"]), flush=True)
        for server in servers:
            configs[server.workers]["rss_mib"] = server.rss_mib()
    for workers, config in configs.items():
        config["max_sustained"] = report_api.max_sustained(config)
        results["configs"][str(workers)] = config


def numbers(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per load step")
    parser.add_argument(
        "--rates", type=numbers, default=[100, 200, 400, 800, 1600], help="open-loop request rates"
    )
    parser.add_argument("--workers", type=numbers, default=[1, 2], help="uvicorn workers")
    parser.add_argument(
        "--connections", type=numbers, default=[1, 4, 16, 64], help="wrk connections"
    )
    parser.add_argument("--calls", type=int, default=5000, help="in-process timed calls")
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=60.0,
        help="seconds to wait, before each step, for other jobs to leave the machine idle",
    )
    report.add_output_options(parser)
    parser.add_argument(
        "--key-flood-only",
        action="store_true",
        help="run only the key-flood step (one worker) and print it; writes nothing",
    )
    args = parser.parse_args(argv)
    if 1 not in args.workers or TARGET_RATE not in args.rates:
        parser.error(f"the targets need --workers with 1 and --rates with {TARGET_RATE}")
    return args


def key_flood_only(args: argparse.Namespace) -> int:
    """Step 4 alone, printed (with its figures as JSON): for before/after comparisons."""
    sys.setswitchinterval(0.0005)
    with (
        tempfile.TemporaryDirectory(prefix="bench_api_") as scratch,
        Server(1, Path(scratch) / "server_1.log") as server,
    ):
        result = measure_key_flood(server, TARGET_RATE, args.duration, args.quiet_wait)
    print(report_api.key_flood_markdown(result))
    print(json.dumps(result, indent=1))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.key_flood_only:
        return key_flood_only(args)
    results = run(args)
    return report.publish("api", results, report_api.markdown(results), args)


if __name__ == "__main__":
    sys.exit(main())
