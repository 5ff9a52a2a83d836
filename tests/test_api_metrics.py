"""The API's Prometheus metrics (`GET /metrics`, homevalue.metrics): what they count, and
who may read them.

The counters are read back by scraping, as Prometheus would, and parsed with
prometheus-client's own parser. In-process tests use FastAPI's TestClient, whose client
address is chosen per test (loopback, or a name that is not an address); one test runs the
real server with two workers, where each worker counts on its own.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from homevalue import api, config
from homevalue.errors import MetricsTokenError
from homevalue.metrics import MetricsAccess, is_loopback

PREDICT = "/v1/predict"
LOCAL = ("127.0.0.1", 50000)
TOKEN = "metrics-token_0123456789abcdef"
VARIABLES = (config.METRICS_TOKEN_VARIABLE, "HOMEVALUE_API_KEYS", "HOMEVALUE_API_KEYS_FILE")


@pytest.fixture(autouse=True)
def nothing_from_outside(monkeypatch):
    """Each test sets its own token and keys (a developer's shell may have some)."""
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv(api.MULTIPROCESS_VARIABLE, raising=False)


@pytest.fixture
def local():
    """A fresh app (fresh counters), asked from this machine's loopback address."""
    with TestClient(api.create_app(), client=LOCAL) as client:
        yield client


def scrape(client, **headers) -> dict[tuple[str, frozenset], float]:
    """Every sample of a scrape, keyed by (name, labels)."""
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return samples(response.text)


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(scraped: dict, name: str, **labels: str) -> float:
    return scraped.get((name, frozenset(labels.items())), 0.0)


# --- what is counted ---------------------------------------------------------------------


def test_a_request_moves_its_route_and_status_counters(local, good_house):
    requests = "homevalue_api_requests_total"
    latency = "homevalue_api_request_duration_seconds_count"
    before = scrape(local)
    assert local.post(PREDICT, json=good_house).status_code == 200
    assert local.post(PREDICT, json={**good_house, "Gr_Liv_Area": -1}).status_code == 422
    assert local.get("/readyz").status_code == 200
    after = scrape(local)

    ok = {"route": PREDICT, "method": "POST", "status": "200"}
    refused = {**ok, "status": "422"}
    for labels in (ok, refused):
        assert value(after, requests, **labels) == value(before, requests, **labels) + 1
    ready = {"route": "/readyz", "method": "GET", "status": "200"}
    assert value(after, requests, **ready) == value(before, requests, **ready) + 1
    timed = {"route": PREDICT, "method": "POST"}
    assert value(after, latency, **timed) == value(before, latency, **timed) + 2
    assert value(after, "homevalue_api_request_duration_seconds_sum", **timed) > 0


def test_the_route_label_is_the_template_never_the_raw_path(local):
    """Unknown paths and made-up methods cannot add a time series each."""
    for path in ("/v1/predict/../../secret-path-1", "/no/such/route-xyz"):
        assert local.get(path).status_code == 404
    assert local.request("BREW", PREDICT).status_code == 405
    text = local.get("/metrics").text
    assert "secret-path" not in text and "route-xyz" not in text and "BREW" not in text
    scraped = samples(text)
    unrouted = {"route": "unrouted", "method": "GET", "status": "404"}
    assert value(scraped, "homevalue_api_requests_total", **unrouted) == 2
    other = {"route": PREDICT, "method": "other", "status": "405"}
    assert value(scraped, "homevalue_api_requests_total", **other) == 1


def test_predictions_are_counted_by_model_version_house_by_house(local, good_house, model):
    name, version = "homevalue_api_predictions_total", {"model_version": model.version}
    before = value(scrape(local), name, **version)
    local.post(PREDICT, json=[good_house, good_house, good_house])
    local.post(PREDICT, json=good_house)
    local.post(PREDICT, json=[good_house, {**good_house, "Year_Built": 1}])  # refused whole
    assert value(scrape(local), name, **version) == before + 4


def test_the_model_load_time_is_there_with_its_version(local, model):
    scraped = scrape(local)
    seconds = value(scraped, "homevalue_api_model_load_seconds", model_version=model.version)
    assert 0 < seconds < 120
    assert value(scraped, "homevalue_api_model_load_failures_total") == 0
    assert value(scraped, "process_resident_memory_bytes") > 0


def test_a_model_that_cannot_be_loaded_counts_failures(tmp_path):
    with TestClient(api.create_app(tmp_path / "no-model"), client=LOCAL) as client:
        assert client.get("/readyz").status_code == 503
        scraped = scrape(client)
    assert value(scraped, "homevalue_api_model_load_failures_total") == 2  # start-up, readyz
    assert not any(name == "homevalue_api_model_load_seconds" for name, _ in scraped)


# --- who may read them -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("client", "headers"),
    [
        (("testclient", 50000), {}),  # not an address
        (("203.0.113.9", 50000), {}),  # another machine
        (("10.0.0.5", 50000), {}),
        (LOCAL, {"X-Forwarded-For": "203.0.113.9"}),  # a proxy on this machine
        (LOCAL, {"X-Forwarded-For": "127.0.0.1"}),
        (LOCAL, {"Forwarded": "for=203.0.113.9"}),
        (LOCAL, {"X-Real-IP": "203.0.113.9"}),
    ],
    ids=["name", "public", "private", "proxied", "proxied-local", "forwarded", "real-ip"],
)
def test_without_a_token_only_this_machine_asked_directly_may_read(client, headers):
    with TestClient(api.create_app(), client=client) as outsider:
        response = outsider.get("/metrics", headers=headers)
    assert response.status_code == 403
    body = response.json()
    assert body["error"] == "forbidden"
    assert config.METRICS_TOKEN_VARIABLE in body["detail"]
    assert "homevalue_api" not in response.text


def test_with_a_token_it_is_needed_from_everywhere(monkeypatch):
    monkeypatch.setenv(config.METRICS_TOKEN_VARIABLE, TOKEN)
    with TestClient(api.create_app(), client=("203.0.113.9", 50000)) as client:
        missing = client.get("/metrics")
        wrong = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}x"})
        basic = client.get("/metrics", headers={"Authorization": f"Basic {TOKEN}"})
        right = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    with TestClient(api.create_app(), client=LOCAL) as client:
        local_missing = client.get("/metrics")
    assert missing.status_code == 401 and missing.headers["www-authenticate"].startswith("Bearer")
    assert (wrong.status_code, basic.status_code, local_missing.status_code) == (403, 401, 401)
    assert right.status_code == 200 and "homevalue_api_requests_total" in right.text
    for response in (missing, wrong, basic, local_missing):
        assert TOKEN not in response.text


def test_api_keys_neither_open_nor_close_the_metrics(monkeypatch):
    """API keys are the client apps': /metrics keeps its own guard with keys configured."""
    key = "hv_live_0123456789abcdefGHIJ"
    monkeypatch.setenv("HOMEVALUE_API_KEYS", key)
    with TestClient(api.create_app(), client=LOCAL) as client:
        assert client.get("/metrics").status_code == 200
        assert client.get("/v1/model").status_code == 401
    with TestClient(api.create_app(), client=("203.0.113.9", 50000)) as client:
        assert client.get("/metrics", headers={"X-API-Key": key}).status_code == 403


def test_a_scraper_asking_for_openmetrics_gets_it(local):
    accept = {"Accept": "application/openmetrics-text; version=1.0.0"}
    response = local.get("/metrics", headers=accept)
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    assert response.text.endswith("# EOF\n") and "homevalue_api_requests" in response.text


def test_metrics_are_not_in_the_openapi_document(local):
    assert config.METRICS_PATH not in local.get("/openapi.json").json()["paths"]


@pytest.mark.parametrize("token", ["short", "", "   ", "has spaces in it 0123456789", "é" * 20])
def test_an_unusable_token_stops_the_start(monkeypatch, token):
    monkeypatch.setenv(config.METRICS_TOKEN_VARIABLE, token)
    with pytest.raises(MetricsTokenError, match=config.METRICS_TOKEN_VARIABLE) as caught:
        api.create_app()
    assert token.strip() == "" or token not in str(caught.value)


@pytest.mark.parametrize(
    ("peer", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),
        ("10.0.0.1", False),
        ("::ffff:10.0.0.1", False),
        ("203.0.113.9", False),
        ("localhost", False),  # a name is not an address: never trusted
        ("", False),
        (None, False),
    ],
)
def test_what_counts_as_this_machine(peer, loopback):
    assert is_loopback(peer) is loopback
    refusal = MetricsAccess(None).refusal(peer, [], None)
    assert (refusal is None) is loopback


def test_the_token_is_kept_as_a_digest_only(monkeypatch):
    monkeypatch.setenv(config.METRICS_TOKEN_VARIABLE, TOKEN)
    access = MetricsAccess.from_environment()
    assert TOKEN not in repr(access) and TOKEN.encode() not in access.token_digest


# --- the real server, two workers --------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def call(port: int, path: str, body: bytes | None = None) -> tuple[int, str]:
    headers = {"Content-Type": "application/json"} if body else {}
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", body, headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def per_worker(folder: Path, name: str, **labels: str) -> list[float]:
    """A counter's value in each worker's own file of the shared folder."""
    found = []
    for path in sorted(folder.glob("counter_*.db")):
        merged = MultiProcessCollector.merge([str(path)], accumulate=True)
        text = "".join(
            f"{sample.name} {sample.value}\n"
            for metric in merged
            for sample in metric.samples
            if sample.name == name and sample.labels == labels
        )
        found.append(float(text.split()[-1]) if text else 0.0)
    return found


def test_two_workers_report_the_same_totals_whichever_answers(tmp_path, good_house):
    """`python -m homevalue.api --workers 2`: requests sent at once reach both workers, and
    every scrape, answered by either, counts them all (each worker alone counts only its
    own share). The workers' shared folder is made in TMPDIR and removed at stop."""
    port, log, scratch = free_port(), tmp_path / "server.log", tmp_path / "tmp"
    scratch.mkdir()
    command = [sys.executable, "-m", "homevalue.api", "--port", str(port), "--workers", "2"]
    env = {k: v for k, v in os.environ.items() if k not in VARIABLES}
    env.pop(api.MULTIPROCESS_VARIABLE, None)
    env["TMPDIR"] = str(scratch)
    labels = {"route": PREDICT, "method": "POST", "status": "200"}
    with open(log, "wb") as output:
        server = subprocess.Popen(
            command, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        deadline = time.monotonic() + 120
        while len(list(scratch.glob("homevalue-metrics-*/gauge_max_*.db"))) < 2:
            # each worker has loaded its model (its load time is in its own file)
            assert time.monotonic() < deadline and server.poll() is None, log.read_text()
            time.sleep(0.3)
        assert _quietly(port) == 200
        body, sent = json.dumps(good_house).encode(), 60
        with ThreadPoolExecutor(max_workers=8) as pool:  # a new connection each
            statuses = list(pool.map(lambda _: call(port, PREDICT, body)[0], range(sent)))
        assert statuses == [200] * sent
        counts = []
        for _ in range(8):  # a new connection each time: either worker may answer
            status, text = call(port, "/metrics")
            assert status == 200, text
            counts.append(value(samples(text), "homevalue_api_requests_total", **labels))
        (shared,) = scratch.glob("homevalue-metrics-*")
        shares = per_worker(shared, "homevalue_api_requests_total", **labels)
        files = sorted(p.name for p in shared.iterdir())
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=30)
    # Both workers served some (a file per process: one uvicorn restarted has two).
    assert sum(share > 0 for share in shares) >= 2 and sum(shares) == sent, (shares, files)
    assert counts == [sent] * len(counts), log.read_text()[-3000:]
    assert list(scratch.iterdir()) == []


def _quietly(port: int) -> int | None:
    try:
        return call(port, "/readyz")[0]
    except OSError:
        return None
