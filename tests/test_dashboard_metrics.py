"""The dashboards' server's Prometheus metrics (`GET /metrics`, homevalue.dashboards.metrics).

`make serve` on a folder of two small pages, so the counters are read from the very server
viewers use without the cost of the real pages: `model_report.ipynb` has a pool of one
preheated kernel in voila.json, `plain.ipynb` none ("default"). Kernels alive is checked
against the kernel processes the server runs, found independently (their command lines).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families
from voila_server import PROJ_ROOT, VoilaServer, kernel_id, serve, write_notebook

from homevalue import config

POOLED = "model_report.ipynb"  # pool_size 1 in voila.json
PLAIN = "plain.ipynb"  # no pool
SETTLE_TIMEOUT = 90


@pytest.fixture(scope="module")
def voila(tmp_path_factory) -> VoilaServer:
    folder = tmp_path_factory.mktemp("metrics")
    notebooks = folder / "notebooks"
    write_notebook(notebooks / POOLED, ["print('a pooled page')"])
    write_notebook(notebooks / PLAIN, ["print('a plain page')"])
    with serve(folder / "server.log", notebooks=notebooks) as server:
        yield server


def scrape(server: VoilaServer, **headers) -> dict[tuple[str, frozenset], float]:
    response = server.get("metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(scraped: dict, name: str, **labels: str) -> float:
    return scraped.get((name, frozenset(labels.items())), 0.0)


def settled(server: VoilaServer) -> dict:
    """A scrape once the pool is full again and nothing is starting, and the number of
    kernels it reports is the number of kernel processes running (seen twice alike)."""
    deadline = time.monotonic() + SETTLE_TIMEOUT
    while True:
        scraped = scrape(server)
        ready = value(scraped, "homevalue_dashboards_pool_kernels", notebook=POOLED, state="ready")
        quiet = value(scraped, "homevalue_dashboards_kernels_starting") == 0
        alive = value(scraped, "homevalue_dashboards_kernels_alive")
        if ready == 1 and quiet and alive == len(server.kernel_ids()):
            return scraped
        assert time.monotonic() < deadline, (
            f"not settled: pool ready {ready}, alive {alive}, "
            f"kernel processes {len(server.kernel_ids())}\n{server.log()[-2000:]}"
        )
        time.sleep(0.5)


def test_kernels_alive_and_the_pools_are_what_the_server_runs(voila):
    scraped = settled(voila)
    assert value(scraped, "homevalue_dashboards_kernels_alive") == len(voila.kernel_ids()) == 1
    assert value(scraped, "homevalue_dashboards_pool_size", notebook=POOLED) == 1
    assert value(scraped, "homevalue_dashboards_pool_size", notebook=PLAIN) == 0
    assert value(scraped, "homevalue_dashboards_pool_kernels", notebook=PLAIN, state="ready") == 0
    assert value(scraped, "homevalue_dashboards_kernels_max") >= 4
    assert value(scraped, "process_resident_memory_bytes") > 0


def test_a_page_load_moves_its_counter_and_kernels_alive_follows(voila):
    before = settled(voila)
    loads = "homevalue_dashboards_page_loads_total"
    response = voila.get(f"voila/render/{POOLED}")
    assert response.status_code == 200
    kernel = kernel_id(response.text)
    try:
        after = settled(voila)  # the viewer's kernel, and the pool's refill
        assert value(after, loads, notebook=POOLED, status="200") == (
            value(before, loads, notebook=POOLED, status="200") + 1
        )
        timed = "homevalue_dashboards_page_seconds_count"
        assert value(after, timed, notebook=POOLED) == value(before, timed, notebook=POOLED) + 1
        assert value(after, "homevalue_dashboards_kernels_alive") == 2 == len(voila.kernel_ids())
    finally:
        voila.shutdown_kernel(kernel)
    deadline = time.monotonic() + SETTLE_TIMEOUT
    while value(scrape(voila), "homevalue_dashboards_kernels_alive") != 1:
        assert time.monotonic() < deadline, "the page's kernel was not shut down"
        time.sleep(0.5)
    assert len(voila.kernel_ids()) == 1


def test_a_page_the_server_does_not_have_is_counted_as_other(voila):
    loads = "homevalue_dashboards_page_loads_total"
    before = value(scrape(voila), loads, notebook="other", status="404")
    assert voila.get("voila/render/made-up-name-4711.ipynb").status_code == 404
    text = voila.get("metrics").text
    assert "made-up-name-4711" not in text
    scraped = scrape(voila)
    assert value(scraped, loads, notebook="other", status="404") == before + 1


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Forwarded-For": "203.0.113.9"},
        {"Forwarded": "for=203.0.113.9"},
        {"X-Real-IP": "203.0.113.9"},
    ],
    ids=["x-forwarded-for", "forwarded", "x-real-ip"],
)
def test_a_request_through_a_proxy_is_refused(voila, headers):
    response = voila.get("metrics", headers=headers)
    assert response.status_code == 403
    assert config.METRICS_TOKEN_VARIABLE in response.text
    assert "homevalue_dashboards" not in response.text


def test_an_unusable_token_stops_the_server_in_one_line(tmp_path):
    env = {**os.environ, config.METRICS_TOKEN_VARIABLE: "too-short"}
    done = subprocess.run(
        [sys.executable, "-m", "homevalue.dashboards", "--no-browser", "--port=0", str(tmp_path)],
        cwd=PROJ_ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert config.METRICS_TOKEN_VARIABLE in done.stderr
    assert "Traceback" not in done.stderr and "too-short" not in done.stderr
