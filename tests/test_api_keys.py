"""Opt-in API keys for the HTTP API (homevalue.apikeys, homevalue.api).

Without keys the API is open, as `make api` on localhost has always been, and says so once
at start-up. With keys every route but the probes needs one: missing is a 401, wrong a 403,
in the API's error shape. A setting that holds no usable key stops the start rather than
leaving the API open by mistake, and no key, right or wrong, ever reaches a log.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
from fastapi.testclient import TestClient

from homevalue import api, apikeys
from homevalue.errors import ApiKeyError

PREDICT = "/v1/predict"
KEY = "hv_live_0123456789abcdefGHIJ"
SECOND = "second-key.for~the/batch+team="
WRONG = "WRONG-key-that-must-never-be-logged-42"
KEY_VARIABLES = ("HOMEVALUE_API_KEYS", "HOMEVALUE_API_KEYS_FILE")


@pytest.fixture(autouse=True)
def no_keys_from_outside(monkeypatch):
    """Each test configures its own keys (a developer's shell may have some)."""
    for name in KEY_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def locked(monkeypatch):
    """The app with two keys configured in the environment."""
    monkeypatch.setenv("HOMEVALUE_API_KEYS", f" {KEY} ,{SECOND}")
    with TestClient(api.create_app()) as client:
        yield client


@pytest.fixture
def api_log_lines():
    """Messages of the API's own loggers (start-up, errors, access) during the test."""
    lines: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: lines.append(record.getMessage())
    for logger in (api.log, api.access_log):
        logger.addHandler(handler)
    yield lines
    for logger in (api.log, api.access_log):
        logger.removeHandler(handler)


# --- open by default -------------------------------------------------------------------------


def test_without_keys_the_api_is_open_and_says_so_once(good_house, api_log_lines):
    with TestClient(api.create_app()) as client:
        assert client.post(PREDICT, json=good_house).status_code == 200
        assert client.get("/v1/model").status_code == 200
        assert client.get("/openapi.json").status_code == 200
    warnings = [line for line in api_log_lines if "open" in line]
    assert len(warnings) == 1
    assert "HOMEVALUE_API_KEYS" in warnings[0]


# --- with keys --------------------------------------------------------------------------------

GUARDED = [
    ("POST", PREDICT),
    ("POST", "/v1/feedback"),
    ("GET", "/v1/model"),
    ("GET", "/docs"),
    ("GET", "/openapi.json"),
    ("GET", "/no/such/route"),  # refused before routing: no hint of what exists
]


@pytest.mark.parametrize(("method", "path"), GUARDED)
@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": f"Basic {KEY}"}, {"Authorization": "Bearer "}, {"X-API-Key": ""}],
    ids=["none", "other-scheme", "empty-bearer", "empty-header"],
)
def test_a_request_without_a_key_gets_401(locked, method, path, headers):
    response = locked.request(method, path, headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    body = response.json()
    assert set(body) == {"error", "detail"} and body["error"] == "unauthorized"
    assert "Authorization: Bearer" in body["detail"] and "X-API-Key" in body["detail"]


@pytest.mark.parametrize(("method", "path"), GUARDED)
@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": f"Bearer {WRONG}"},
        {"X-API-Key": WRONG},
        {"X-API-Key": KEY[:-1]},  # one character short
        {"X-API-Key": KEY + "x"},
        {"X-API-Key": KEY.lower()},
    ],
    ids=["bearer", "header", "prefix", "longer", "case"],
)
def test_a_wrong_key_gets_403(locked, method, path, headers):
    response = locked.request(method, path, headers=headers)
    assert response.status_code == 403
    body = response.json()
    assert set(body) == {"error", "detail"} and body["error"] == "forbidden"
    assert WRONG not in response.text and KEY not in response.text


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": f"Bearer {KEY}"},
        {"Authorization": f"bearer   {SECOND}"},  # the scheme is case-insensitive
        {"X-API-Key": KEY},
        {"x-api-key": f" {SECOND} "},
    ],
)
def test_a_right_key_in_either_header_is_let_through(locked, good_house, headers):
    assert locked.post(PREDICT, json=good_house, headers=headers).status_code == 200
    assert locked.get("/v1/model", headers=headers).status_code == 200
    assert locked.get("/openapi.json", headers=headers).status_code == 200
    assert locked.get("/no/such/route", headers=headers).status_code == 404


def test_the_probes_stay_open_for_load_balancers(locked):
    assert locked.get("/healthz").json() == {"status": "ok"}
    assert locked.get("/readyz").status_code == 200


def test_refusals_are_logged_by_status_and_nothing_else(locked, api_log_lines):
    locked.get("/v1/model")
    locked.get("/v1/model", headers={"X-API-Key": WRONG})
    locked.get("/v1/model", headers={"Authorization": f"Bearer {KEY}"})
    access = [json.loads(line) for line in api_log_lines if line.startswith("{")]
    assert [line["status"] for line in access] == [401, 403, 200]
    text = "\n".join(api_log_lines)
    assert WRONG not in text and KEY not in text


def test_only_hashes_of_the_keys_are_kept(locked):
    ring = locked.app.state.keys
    assert len(ring.digests) == 2 and all(len(digest) == 32 for digest in ring.digests)
    assert KEY not in repr(ring) and KEY.encode() not in b"".join(ring.digests)


def test_the_openapi_document_declares_the_keys(locked):
    document = locked.get("/openapi.json", headers={"X-API-Key": KEY}).json()
    schemes = document["components"]["securitySchemes"]
    assert schemes["bearer"] == {"type": "http", "scheme": "bearer"}
    assert schemes["apiKey"] == {"type": "apiKey", "in": "header", "name": "X-API-Key"}
    assert document["security"] == [{"bearer": []}, {"apiKey": []}]
    assert document["paths"]["/healthz"]["get"]["security"] == []
    responses = document["paths"][PREDICT]["post"]["responses"]
    assert {"401", "403"} <= set(responses)


# --- where keys come from ---------------------------------------------------------------------


def test_keys_from_a_file_one_per_line_with_comments(tmp_path, monkeypatch, good_house):
    keys = tmp_path / "api_keys"
    keys.write_text(f"# the shop's app\n{KEY}\n\n   {SECOND}   # the batch team\n")
    monkeypatch.setenv("HOMEVALUE_API_KEYS_FILE", str(keys))
    with TestClient(api.create_app()) as client:
        for key in (KEY, SECOND):
            assert client.post(PREDICT, json=good_house, headers={"X-API-Key": key}).is_success
        assert client.post(PREDICT, json=good_house).status_code == 401


def test_keys_from_both_places_all_count(tmp_path, monkeypatch):
    keys = tmp_path / "api_keys"
    keys.write_text(f"{SECOND}\n")
    monkeypatch.setenv("HOMEVALUE_API_KEYS_FILE", str(keys))
    monkeypatch.setenv("HOMEVALUE_API_KEYS", KEY)
    assert len(apikeys.load_keys().digests) == 2


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("HOMEVALUE_API_KEYS", "", "holds no key"),
        ("HOMEVALUE_API_KEYS", " , ,", "holds no key"),
        ("HOMEVALUE_API_KEYS", f"{KEY},short-key", "key 2 of HOMEVALUE_API_KEYS"),
        ("HOMEVALUE_API_KEYS", f"{KEY[:8]} {KEY[8:]}", "key 1 of HOMEVALUE_API_KEYS"),
        ("HOMEVALUE_API_KEYS", f"{KEY[:-1]}é", "key 1 of HOMEVALUE_API_KEYS"),
        ("HOMEVALUE_API_KEYS_FILE", "", "holds no file name"),
        ("HOMEVALUE_API_KEYS_FILE", "{tmp}/no-such-file", "cannot be read"),
        ("HOMEVALUE_API_KEYS_FILE", "{tmp}", "cannot be read"),  # a folder
        ("HOMEVALUE_API_KEYS_FILE", "{tmp}/only-comments", "holds no key"),
        ("HOMEVALUE_API_KEYS_FILE", "{tmp}/bad-line", "line 2 of"),
    ],
    ids=[
        "empty",
        "only-commas",
        "too-short",
        "with-a-space",
        "not-ascii",
        "empty-file-name",
        "missing-file",
        "a-folder",
        "only-comments",
        "bad-line",
    ],
)
def test_a_setting_without_usable_keys_stops_the_start(
    tmp_path, monkeypatch, variable, value, says
):
    """Fail closed: a mistyped setting must not leave the API open (or half open)."""
    (tmp_path / "only-comments").write_text("# keys go here\n\n")
    (tmp_path / "bad-line").write_text(f"{KEY}\n{KEY[:10]}\n")
    monkeypatch.setenv(variable, value.format(tmp=tmp_path))
    with pytest.raises(ApiKeyError) as caught:
        api.create_app()
    message = str(caught.value)
    assert says in message, message
    assert KEY[:10] not in message  # a key is never repeated, even a bad one
    assert "secrets.token_urlsafe" in message or "unset" in message


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_the_server_refuses_to_start_with_a_bad_setting_in_one_line(monkeypatch):
    env = {**os.environ, "HOMEVALUE_API_KEYS": "tiny"}
    done = subprocess.run(
        [sys.executable, "-m", "homevalue.api", "--port", str(free_port())],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr and "tiny" not in done.stderr
    assert "key 1 of HOMEVALUE_API_KEYS" in done.stderr


def call(port: int, path: str, headers: dict, body: bytes | None = None) -> int:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", body, headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_no_key_reaches_the_real_servers_logs(tmp_path, good_house):
    """`python -m homevalue.api` (uvicorn, as `make api`), keys from a file: every log line
    it writes, start-up to shut-down, for right, wrong and missing keys."""
    keys = tmp_path / "api_keys"
    keys.write_text(f"{KEY}\n{SECOND}\n")
    port, log = free_port(), tmp_path / "server.log"
    env = {k: v for k, v in os.environ.items() if k not in KEY_VARIABLES}
    env["HOMEVALUE_API_KEYS_FILE"] = str(keys)
    with open(log, "wb") as output:
        server = subprocess.Popen(
            [sys.executable, "-m", "homevalue.api", "--port", str(port)],
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 90
            while call_quietly(port, "/readyz") != 200:
                assert time.monotonic() < deadline and server.poll() is None, log.read_text()
                time.sleep(0.2)
            body, json_type = json.dumps(good_house).encode(), "application/json"
            statuses = [
                call(port, PREDICT, {"Content-Type": json_type, "X-API-Key": KEY}, body),
                call(port, PREDICT, {"Authorization": f"Bearer {SECOND}"}, body),
                call(port, PREDICT, {"Authorization": f"Bearer {WRONG}"}, body),
                call(port, "/v1/model", {"X-API-Key": WRONG}),
                call(port, "/v1/model", {}),
                call(port, "/v1/model", {"X-API-Key": f"{KEY}\u00e9".encode().decode("latin-1")}),
            ]
        finally:
            server.send_signal(signal.SIGINT)
            server.wait(timeout=30)
    assert statuses == [200, 200, 403, 403, 401, 403]
    text = log.read_text(errors="replace")
    assert "API keys are required" in text  # the start-up line: how many, never which
    for secret in (KEY, SECOND, WRONG, KEY[:12], WRONG[:12]):
        assert secret not in text, f"{secret!r} is in the server's log"


def call_quietly(port: int, path: str) -> int | None:
    try:
        return call(port, path, {})
    except OSError:
        return None


def test_keys_are_compared_by_their_hash_in_constant_time(monkeypatch):
    """Every configured key is compared, with hmac.compare_digest, whatever matches first."""
    compared = []
    real = apikeys.hmac.compare_digest

    def counting(a, b):
        compared.append((len(a), len(b)))
        return real(a, b)

    monkeypatch.setattr(apikeys.hmac, "compare_digest", counting)
    ring = apikeys.KeyRing.of([KEY, SECOND])
    assert ring.matches(KEY.encode()) and not ring.matches(WRONG.encode())
    assert compared == [(32, 32)] * 4
