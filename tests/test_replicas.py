"""`make serve-replicas`: nginx's sticky routing over several Voilà servers, without a browser.

The replicas run without preheated kernels here (nothing below needs a page): which replica
a request reached is read from that replica's own log (a GET of a unique missing path, see
`Replicas.probe`). The tests run in file order on one `make serve-replicas`: the last two
kill a replica and then stop the whole thing with Ctrl-C's signal. Pages through the proxy,
each repriced by its own kernel, are in tests/browser/test_replicas.py.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import requests
from replicas_server import Replicas, serve_replicas

from homevalue.config import POOL_MEMORY_SHARE
from homevalue.dashboards import replicas as launcher
from homevalue.dashboards.replicas import (
    TEMPLATE,
    nginx_config,
    replica_environment,
    replica_ports,
)

NEW_VIEWERS = 40  # cookie-less requests; each replica gets one with probability 1 - 2e-12

needs_nginx = pytest.mark.skipif(
    not (shutil.which("nginx") or Path("/usr/sbin/nginx").exists()),
    reason="nginx is not installed (apt-get install nginx-light)",
)


@pytest.fixture(scope="module")
def replicas(tmp_path_factory) -> Iterator[Replicas]:
    run_dir = tmp_path_factory.mktemp("replicas")
    with serve_replicas(run_dir, voila_args="--preheat_kernel=False") as running:
        yield running


def route_of(answer) -> str:
    """The hv_route cookie the proxy set on an answer ('' if it set none)."""
    match = re.search(r"\bhv_route=([^;]+)", answer.headers.get("Set-Cookie", ""))
    return match[1] if match else ""


def test_replica_ports_default_to_the_ones_after_the_proxys_and_bad_lists_are_refused():
    assert replica_ports(8866, 3) == [8867, 8868, 8869]
    assert replica_ports(8866, 2, "9001, 9002") == [9001, 9002]
    for count, given, says in [
        (0, "", "at least one replica"),
        (2, "9001", "give 2 different ports"),
        (2, "9001,9001", "give 2 different ports"),
        (2, "8866,9001", "none of them PORT=8866"),
        (2, "90a1,9002", "port numbers separated by commas"),
    ]:
        with pytest.raises(SystemExit, match=says):
            replica_ports(8866, count, given)


def test_without_a_checkouts_nginx_configuration_it_says_so_and_starts_nothing(
    tmp_path, monkeypatch
):
    """An installed wheel has no deploy/nginx: a clear refusal, not a traceback."""
    monkeypatch.setattr(launcher, "TEMPLATE", tmp_path / "replicas.conf.template")
    with pytest.raises(SystemExit, match="needs nginx's configuration from a checkout"):
        launcher.main(["--port", "1", "--replicas", "1"])


def test_the_replicas_trust_the_local_proxy_and_share_the_kernel_and_pool_budgets(monkeypatch):
    monkeypatch.setattr("homevalue.config.default_max_kernels", lambda: 90)
    env = replica_environment(3, {"HOMEVALUE_TRUSTED_PROXIES": "10.0.0.5", "MAKEFLAGS": "-j"})
    assert env["HOMEVALUE_TRUSTED_PROXIES"] == "10.0.0.5,127.0.0.1"
    assert env["HOMEVALUE_MAX_KERNELS"] == "30"
    assert float(env["HOMEVALUE_POOL_MEMORY_SHARE"]) == pytest.approx(POOL_MEMORY_SHARE / 3)
    assert "MAKEFLAGS" not in env
    chosen = replica_environment(
        3, {"HOMEVALUE_MAX_KERNELS": "12", "HOMEVALUE_POOL_MEMORY_SHARE": "0.2"}
    )
    assert chosen["HOMEVALUE_MAX_KERNELS"] == "12"  # an operator's numbers are kept
    assert chosen["HOMEVALUE_POOL_MEMORY_SHARE"] == "0.2"


def test_the_config_lists_every_replica_and_uses_the_shared_snippets(tmp_path):
    text = nginx_config(
        TEMPLATE.read_text(), listen="127.0.0.1:9", ports=[11, 12, 13], run_dir=tmp_path
    )
    assert text.count("server 127.0.0.1:1") == 3 and "hash $hv_route consistent;" in text
    assert "include " + str(TEMPLATE.parent / "snippets") in text
    assert f"pid {tmp_path}/nginx.pid;" in text and "listen 127.0.0.1:9;" in text
    with pytest.raises(ValueError, match="placeholder"):
        nginx_config("listen @OTHER@;", listen="x", ports=[1], run_dir=tmp_path)


@needs_nginx
def test_new_viewers_are_spread_over_the_replicas_and_each_stays_on_its_own(replicas):
    first_stops: dict[str, int] = {}
    for _ in range(NEW_VIEWERS):
        number, answer = replicas.probe()
        route = route_of(answer)
        assert route, "a request without a route got no hv_route cookie"
        assert "HttpOnly" in answer.headers["Set-Cookie"]
        first_stops[route] = number
    spread = Counter(first_stops.values())
    assert set(spread) == {1, 2}, f"all {NEW_VIEWERS} new viewers went to one replica"
    for route, number in first_stops.items():
        for _ in range(3):
            again, answer = replicas.probe({"hv_route": route})
            assert again == number, f"viewer {route} moved from replica {number} to {again}"
            assert not route_of(answer), "a viewer who has a route was given another"


@needs_nginx
def test_the_proxy_keeps_the_single_servers_limits(replicas):
    """The shared snippet's body limit: nginx refuses a big body before any replica sees it."""
    answer = requests.post(replicas.url + "voila/api/shutdown/x", data=b"x" * (2 << 20), timeout=30)
    assert answer.status_code == 413
    assert "nginx" in answer.headers.get("Server", "")


@needs_nginx
def test_a_dead_replica_is_routed_around(replicas):
    """Its viewers (and new ones) reach the other replica; the launcher says what happened."""
    routes = {}
    while len(routes) < 2:
        number, answer = replicas.probe()
        routes.setdefault(number, route_of(answer))
    dying = replicas.server(1)
    for process in [*dying.children(recursive=True), dying]:
        process.kill()  # and its kernels, as a machine dying would
    for route in (routes[1], routes[2], None):
        number, answer = replicas.probe({"hv_route": route} if route else None)
        assert number == 2 and answer.status_code == 404  # the replica's own answer, not 502
    deadline = time.monotonic() + 10
    while "replica 1 " not in replicas.output.read_text():
        assert time.monotonic() < deadline, "the launcher did not report the dead replica"
        time.sleep(0.2)
    assert "new viewers go to the others" in replicas.output.read_text()


@needs_nginx
def test_ctrl_c_stops_nginx_the_replicas_and_their_kernels(replicas):
    page = requests.get(replicas.url + "voila/render/price_a_home.ipynb", timeout=120)
    assert page.status_code == 200  # a page, so a kernel, on the replica still alive
    processes = replicas.processes()
    kernels = [p for p in processes if "ipykernel_launcher" in " ".join(p.cmdline())]
    nginx = [p for p in processes if p.name() == "nginx"]
    assert kernels and nginx, "no kernel or no nginx among the launcher's processes"
    os.killpg(replicas.process.pid, signal.SIGINT)
    _, alive = psutil.wait_procs(processes, timeout=30)
    assert not alive, f"still running 30 s after Ctrl-C: {[p.pid for p in alive]}"
    assert not (replicas.run_dir / "nginx.pid").exists()
    assert "Stopping nginx and the replicas" in replicas.output.read_text()
