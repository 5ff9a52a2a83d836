"""deploy/nginx/homevalue.conf in front of `make serve` and the API, as the README deploys it.

nginx (Debian's, which .ci/run installs) runs the committed file and its snippets with only
its addresses, names and certificate swapped for this test's: a self-signed certificate for
localhost, the dashboards on one TLS port and the API on another (the file tells them apart
by name).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import websocket
from kernel_channel import KernelChannel
from voila_server import PROJ_ROOT, free_port, kernel_id, serve

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
CONFIG = PROJ_ROOT / "deploy" / "nginx" / "homevalue.conf"
PRICE_PAGE = "voila/render/price_a_home.ipynb"
API_KEY = "deploy-" + uuid.uuid4().hex

pytestmark = pytest.mark.skipif(
    not Path(NGINX).exists(), reason="nginx is not installed (apt-get install nginx-light)"
)


def wait_for_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise RuntimeError(f"nothing listens on port {port}")


def certificate(folder: Path) -> tuple[Path, Path]:
    cert, key = folder / "fullchain.pem", folder / "privkey.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,DNS:api.localhost",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def site(config: str, ports: dict[str, int], cert: Path, key: Path) -> str:
    """The committed site with this test's ports, names and certificate, nothing else."""
    config = config.replace("server 127.0.0.1:8866 ", f"server 127.0.0.1:{ports['voila']} ")
    config = config.replace("server 127.0.0.1:8000;", f"server 127.0.0.1:{ports['api']};")
    config = re.sub(r"\n\s*listen \[::\]:\d+[^;]*;", "", config)
    config = config.replace("listen 80;", f"listen 127.0.0.1:{ports['http']};")
    tls = iter([ports["dashboards"], ports["tls_api"]])
    config = re.sub(
        r"listen 443 ssl http2;", lambda _: f"listen 127.0.0.1:{next(tls)} ssl;", config
    )
    config = config.replace("api.homevalue.example.org", "api.localhost")
    config = config.replace("homevalue.example.org", "localhost")
    config = config.replace("/etc/ssl/homevalue/fullchain.pem", str(cert))
    return config.replace("/etc/ssl/homevalue/privkey.pem", str(key))


@pytest.fixture(scope="module")
def deployed(tmp_path_factory) -> Iterator[dict]:
    folder = tmp_path_factory.mktemp("nginx")
    cert, key = certificate(folder)
    ports = {name: free_port() for name in ("http", "dashboards", "tls_api", "api")}
    env = {"HOMEVALUE_TRUSTED_PROXIES": "127.0.0.1", "HOMEVALUE_KERNELS_PER_CLIENT_PER_MINUTE": "3"}
    with serve(folder / "voila.log", env=env) as voila:
        ports["voila"] = voila.port
        api = subprocess.Popen(
            [sys.executable, "-m", "homevalue.api", "--port", str(ports["api"])],
            stdout=subprocess.DEVNULL,
            stderr=(folder / "api.log").open("wb"),
            env={**os.environ, "HOMEVALUE_API_KEYS": API_KEY},
        )
        (folder / "site.conf").write_text(site(CONFIG.read_text(), ports, cert, key))
        # The site's `include snippets/...` resolves next to nginx.conf, as in /etc/nginx.
        shutil.copytree(CONFIG.parent / "snippets", folder / "snippets")
        (folder / "nginx.conf").write_text(
            f"pid {folder}/nginx.pid;\nerror_log {folder}/error.log;\nevents {{}}\n"
            f"http {{\n  access_log {folder}/access.log;\n"
            + "".join(
                f"  {name}_temp_path {folder}/{name};\n"
                for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
            )
            + f"  include {folder}/site.conf;\n}}\n"
        )
        nginx = subprocess.Popen(
            [NGINX, "-p", str(folder), "-c", str(folder / "nginx.conf"), "-g", "daemon off;"],
            stderr=(folder / "nginx.stderr").open("wb"),
        )
        try:
            wait_for_port(ports["api"])
            wait_for_port(ports["dashboards"])
            yield {"voila": voila, "ports": ports, "cert": str(cert), "folder": folder}
        finally:
            for process in (nginx, api):
                process.terminate()
                process.wait(20)


def dashboards_url(deployed: dict) -> str:
    return f"https://localhost:{deployed['ports']['dashboards']}/"


def test_the_proxy_serves_a_page_over_tls_and_its_kernel_websocket(deployed):
    url = dashboards_url(deployed)
    page = requests.get(url + PRICE_PAGE, verify=deployed["cert"], timeout=120)
    assert page.status_code == 200
    assert page.headers["Strict-Transport-Security"].startswith("max-age=")
    # The sticky route (for several servers), only over TLS from the browser.
    assert re.search(r"hv_route=[^,]+; HttpOnly; SameSite=Lax; Secure", page.headers["Set-Cookie"])
    ssl = {"ca_certs": deployed["cert"]}
    with KernelChannel(url, kernel_id(page.text), sslopt=ssl) as channel:
        channel.update(channel.model_id("Living area"), {"value": 2600})
        reply = channel.recv_until(
            lambda m: (
                m["header"]["msg_type"] == "comm_msg"
                and "$" in str(m["content"]["data"].get("state", {}).get("value", ""))
            )
        )
    assert reply["channel"] == "iopub"


def test_plain_http_is_redirected_to_https(deployed):
    port = deployed["ports"]["http"]
    answer = requests.get(f"http://localhost:{port}/voila/tree", allow_redirects=False, timeout=10)
    assert answer.status_code == 301
    assert answer.headers["Location"] == "https://localhost/voila/tree"


def test_the_api_answers_through_the_proxy_to_its_key_holders(deployed, good_house):
    url = f"https://localhost:{deployed['ports']['tls_api']}/"
    verify = deployed["cert"]  # per request: REQUESTS_CA_BUNDLE would override a Session's
    assert requests.get(url + "healthz", verify=verify, timeout=10).json() == {"status": "ok"}
    anonymous = requests.post(url + "v1/predict", json=good_house, verify=verify, timeout=30)
    assert anonymous.status_code == 401 and anonymous.json()["error"] == "unauthorized"
    key = {"Authorization": f"Bearer {API_KEY}"}
    priced = requests.post(
        url + "v1/predict", json=good_house, headers=key, verify=verify, timeout=30
    )
    assert priced.status_code == 200 and priced.json()["price"] > 0


def test_metrics_are_refused_through_the_proxy_and_served_to_this_machine(deployed):
    """/metrics is for this machine (or a token holder): nginx runs on this machine too, so
    what it forwards must be told apart (its X-Forwarded-For), on both names."""
    ports = deployed["ports"]
    for port in (ports["dashboards"], ports["tls_api"]):
        answer = requests.get(
            f"https://localhost:{port}/metrics", verify=deployed["cert"], timeout=10
        )
        assert answer.status_code == 403, answer.text
        assert "HOMEVALUE_METRICS_TOKEN" in answer.text and "homevalue_" not in answer.text
    for port, name in ((ports["voila"], "homevalue_dashboards_"), (ports["api"], "homevalue_api_")):
        answer = requests.get(f"http://localhost:{port}/metrics", timeout=10)
        assert answer.status_code == 200 and name in answer.text


def test_a_websocket_through_the_proxy_without_the_v1_protocol_is_refused(deployed):
    url = dashboards_url(deployed)
    page = requests.get(url + PRICE_PAGE, verify=deployed["cert"], timeout=120)
    assert page.status_code == 200
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        KernelChannel(
            url, kernel_id(page.text), protocol=None, sslopt={"ca_certs": deployed["cert"]}
        )
    assert refused.value.status_code == 400


def test_the_per_client_budget_sees_the_address_nginx_saw_not_a_forged_one(deployed):
    """Every request comes from 127.0.0.1; a forged X-Forwarded-For does not buy a new budget."""
    url = dashboards_url(deployed)
    statuses = []
    for i in range(6):
        forged = {"X-Forwarded-For": f"198.51.100.{i}"}
        answer = requests.get(
            url + PRICE_PAGE, headers=forged, verify=deployed["cert"], timeout=120
        )
        statuses.append(answer.status_code)
    assert 503 in statuses  # the earlier tests spent two of its three pages
    assert "client 127.0.0.1 opened 3 pages" in deployed["voila"].log()
