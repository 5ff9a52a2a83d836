"""The Voilà server as `make serve` runs it: the pages, what it refuses, how it fails.

One server (`make serve`: root voila.json, notebooks/) is shared by every test here; a second
one serves a notebook that raises. Every page a test opens has its kernel shut down after.
"""

from __future__ import annotations

import base64
import hashlib
import html.parser
import inspect
import json
import re
import sys
import time
import urllib.parse
import uuid
from pathlib import Path

import pytest
import websocket  # websocket-client, installed with jupyter_server
from ipyleaflet import TileLayer
from kernel_channel import KernelChannel
from voila import handler as voila_handler
from voila_server import (
    NOTEBOOKS,
    PROJ_ROOT,
    VoilaServer,
    code_statements,
    kernel_id,
    serve,
    visible_text,
    write_notebook,
)

from homevalue.ui.maps import ames_map

PAGES = {
    "price_a_home.ipynb": "Price a home",
    "score_a_batch.ipynb": "Score a batch",
    "model_report.ipynb": "Model report",
    "monitoring.ipynb": "Monitoring",
}
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
TRACEBACK = re.compile(r"Traceback \(most recent call last\)|\b[A-Z]\w*(?:Error|Exception): ")
FRIENDLY_BUILD_ERROR = "This page could not be built."
NOTEBOOK_JSON = ('"nbformat"', '"cell_type"')


@pytest.fixture(scope="module")
def voila(tmp_path_factory) -> VoilaServer:
    """`make serve` on notebooks/, shared by this file's tests (module scope: the server and
    its kernels are gone before the notebook tests, which run after this file, start)."""
    with serve(tmp_path_factory.mktemp("voila") / "server.log") as server:
        yield server


@pytest.fixture(scope="module")
def rendered(voila):
    """page -> its HTML, each page fetched once for all the tests that read it."""
    pages: dict[str, str] = {}

    def fetch(page: str) -> str:
        if page not in pages:
            assert (NOTEBOOKS / page).exists(), f"notebooks/{page} is missing"
            response = voila.get(f"voila/render/{page}")
            assert response.status_code == 200, f"{page}: HTTP {response.status_code}"
            pages[page] = response.text
        return pages[page]

    yield fetch
    for page in pages.values():
        voila.shutdown_kernel(kernel_id(page))


@pytest.fixture
def open_page(voila):
    """GET a page now; the kernel it started is shut down after the test."""
    kernels: list[str] = []

    def get(page: str, query: str = "") -> tuple[int, str]:
        response = voila.get(f"voila/render/{page}{query}")
        if response.status_code == 200:
            kernels.append(kernel_id(response.text))
        return response.status_code, response.text

    yield get
    for kernel in kernels:
        voila.shutdown_kernel(kernel)


# ---------------------------------------------------------------- the three pages


@pytest.mark.parametrize("page", PAGES)
def test_page_is_served_in_the_homevalue_template(rendered, page):
    body = rendered(page)
    assert 'class="hv-header"' in body
    current = rf'href="/voila/render/{re.escape(page)}"\s+aria-current="page">{PAGES[page]}<'
    assert re.search(current, body), "the header does not highlight the current page"
    assert 'id="hv-connection-lost"' in body, "no connection-lost notice"
    assert "/voila/templates/homevalue/static/homevalue.js" in body
    assert "/voila/templates/homevalue/static/homevalue.css" in body
    assert 'class="hv-footer"' in body


@pytest.mark.parametrize("page", PAGES)
def test_page_shows_widgets_and_built_without_error(rendered, page):
    body = rendered(page)
    assert WIDGET_VIEW in body, "the page renders no widget"
    assert FRIENDLY_BUILD_ERROR not in body, "a cell of the page raised while it was built"


@pytest.mark.parametrize("page", PAGES)
def test_page_shows_no_notebook_source(rendered, page):
    body = rendered(page)
    statements = code_statements(NOTEBOOKS / page)
    assert statements, f"notebooks/{page} has no code to look for"
    text = visible_text(body)
    leaked = [line for line in statements if line in text or line in body]
    assert not leaked, f"the page shows the notebook's code: {leaked}"
    assert not any(marker in body for marker in NOTEBOOK_JSON)


def _python_error(body: str) -> str | None:
    """A traceback or `SomeError: ...` line in the page, in its HTML or its text."""
    match = TRACEBACK.search(body) or TRACEBACK.search(visible_text(body))
    return match[0] if match else None


@pytest.mark.parametrize("page", PAGES)
def test_page_shows_no_traceback(rendered, page):
    error = _python_error(rendered(page))
    assert error is None, f"the page shows a Python error: {error!r}"


# The pages voila.json keeps preheated kernels for (Monitoring, an operator's page opened a
# few times a day, starts its kernel when asked rather than hold 200 MB for it).
PREHEATED = [
    page
    for page, pool in json.loads((PROJ_ROOT / "voila.json").read_text())["VoilaKernelManager"][
        "kernel_pools_config"
    ].items()
    if page in PAGES and pool.get("pool_size", 0) > 0
]


def test_the_viewers_pages_are_preheated():
    assert set(PREHEATED) == set(PAGES) - {"monitoring.ipynb"}


@pytest.mark.parametrize("page", PREHEATED)
def test_page_is_served_by_a_preheated_kernel(voila, rendered, page):
    """The pool in voila.json is used with the template and theme it sets."""
    kernel = kernel_id(rendered(page))
    assert f"Using pre-heated kernel: {kernel} for {page}" in voila.log()


@pytest.mark.parametrize(
    ("page", "has_arrow"), [("price_a_home.ipynb", False), ("score_a_batch.ipynb", True)]
)
def test_only_the_batch_pages_kernel_loads_pyarrow(voila, open_page, page, has_arrow):
    """voila.json holds pyarrow back from the price page's kernels (a third of their memory);
    the batch page reads Parquet with it."""
    status, html = open_page(page)
    assert status == 200
    (kernel,) = voila.kernel_processes(kernel_id(html))
    maps = Path(f"/proc/{kernel.pid}/maps").read_text()
    assert ("libarrow" in maps) == has_arrow


def test_landing_page_lists_the_pages(voila):
    response = voila.get("")
    assert response.status_code == 200
    for page, title in PAGES.items():
        assert f'<a class="hv-page-link" href="/voila/render/{page}">' in response.text
        assert f'<span class="hv-page-title">{title}</span>' in response.text


def test_unknown_page_gets_the_friendly_404(voila):
    response = voila.get("voila/render/no_such_page.ipynb")
    assert response.status_code == 404
    assert "Page not found" in response.text
    assert 'href="/voila/tree"' in response.text
    assert _python_error(response.text) is None


# ---------------------------------------------------------------- XSS and the policy

# The reported reproduction (issue 10): it closed the attribute it was printed into.
XSS_THEME = 'x"><img src=x onerror=alert(document.domain)>'
VOILA_JSON = json.loads((PROJ_ROOT / "voila.json").read_text(encoding="utf-8"))
# The policy voila.json sets ("" when it sets none: the tests below then fail, not the file).
POLICY = (VOILA_JSON.get("Voila", {}).get("tornado_settings", {}).get("headers", {})).get(
    "Content-Security-Policy", ""
)


def directives(policy: str) -> dict[str, list[str]]:
    """directive -> its sources, from a Content-Security-Policy header."""
    parts = (directive.split() for directive in policy.split(";"))
    return {part[0]: part[1:] for part in parts if part}


def test_the_policy_runs_only_this_servers_scripts():
    """No inline script or handler may run; nothing is loaded or framed from elsewhere but
    the basemap's tiles."""
    policy = directives(POLICY)
    scripts = policy["script-src"]
    assert "'self'" in scripts
    assert not {"'unsafe-inline'", "'unsafe-hashes'", "'strict-dynamic'", "*"} & set(scripts)
    assert not [s for s in scripts if s.startswith(("'nonce-", "http", "data:", "blob:"))]
    assert "script-src-attr" not in policy and "script-src-elem" not in policy
    assert policy["default-src"] == ["'self'"] and policy["connect-src"] == ["'self'"]
    assert policy["object-src"] == ["'none'"] and policy["base-uri"] == ["'self'"]
    assert policy["frame-ancestors"] == ["'self'"] and policy["form-action"] == ["'self'"]


def test_the_policy_allows_voilas_heartbeat_by_its_hash():
    """The one inline script left: what Voilà's page handler sends while a slow cell runs
    (voila/handler.py). A Voilà that changes it needs a new hash here."""
    source = inspect.getsource(voila_handler)
    scripts = re.findall(r"<script>(.*?)</script>", source)
    assert scripts == ["window.voila_heartbeat()"], f"Voilà's inline scripts changed: {scripts}"
    digest = base64.b64encode(hashlib.sha256(scripts[0].encode()).digest()).decode()
    assert f"'sha256-{digest}'" in directives(POLICY)["script-src"]


def test_the_policy_allows_the_basemap_tiles():
    """The maps' tiles come from the basemap's server: img-src must name it."""
    tiles = [layer.url for layer in ames_map().layers if isinstance(layer, TileLayer)]
    assert tiles, "the map has no tile layer"
    for url in tiles:
        parts = urllib.parse.urlsplit(url)
        assert f"{parts.scheme}://{parts.netloc}" in directives(POLICY)["img-src"], url


POLICED = {
    "landing": ("", 200),
    "folder listing": ("voila/tree", 200),
    "unknown page": ("voila/render/no_such_page.ipynb", 404),
    "a folder that is not there": ("voila/tree/no_such_folder", 404),
    **{page: (f"voila/render/{page}", 200) for page in PAGES},
}


@pytest.mark.parametrize("path, status", POLICED.values(), ids=POLICED)
def test_every_page_is_served_with_the_policy(voila, path, status):
    response = voila.get(path)
    try:
        assert response.status_code == status
        assert response.headers.get("Content-Security-Policy") == POLICY
    finally:
        if response.status_code == 200 and "jupyter-config-data" in response.text:
            voila.shutdown_kernel(kernel_id(response.text))


class InlineScripts(html.parser.HTMLParser):
    """The <script> elements of a page that would run inline code (no src, not data)."""

    DATA_TYPES = {"application/json", "application/vnd.voila.cell-output+json"}

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        attributes = dict(attrs)
        code = tag == "script" and "src" not in attributes
        if code and attributes.get("type") not in self.DATA_TYPES:
            self.found.append(self.get_starttag_text())
        if any(name.startswith("on") for name in attributes):  # onerror=, onclick=, ...
            self.found.append(self.get_starttag_text())


@pytest.mark.parametrize("path, status", POLICED.values(), ids=POLICED)
def test_no_page_holds_inline_script(voila, path, status):
    """What the policy would block must not be there: every script is a file (or data)."""
    response = voila.get(path)
    try:
        assert response.status_code == status
        parser = InlineScripts()
        parser.feed(response.text)
        assert parser.found == [], f"inline script or handler: {parser.found}"
    finally:
        if response.status_code == 200 and "jupyter-config-data" in response.text:
            voila.shutdown_kernel(kernel_id(response.text))


@pytest.mark.parametrize("page", ["", *PAGES])
def test_the_theme_parameter_is_never_printed(voila, page):
    """The server renders its own theme whatever ?theme= says (the browser applies a
    viewer's light or dark); the reported payload is nowhere in the page."""
    path = f"voila/render/{page}" if page else ""
    response = voila.get(path, params={"theme": XSS_THEME})
    try:
        assert response.status_code == 200
        body = response.text
        assert "onerror" not in body and "x&#34;&gt;" not in body and "x&quot;&gt;" not in body
        assert re.search(r'<body class="[^"]*theme-light[^"]*"', body)
        assert 'data-jp-theme-name="JupyterLab Light"' in body
    finally:
        if page:
            voila.shutdown_kernel(kernel_id(response.text))


# ---------------------------------------------------------------- what is never served

NOTEBOOK_URLS = [
    *(f"voila/files/{page}" for page in PAGES),
    "files/price_a_home.ipynb",
    "notebooks/price_a_home.ipynb",
    "api/contents/price_a_home.ipynb",
    "voila/tree/price_a_home.ipynb",
    "voila/static/price_a_home.ipynb",
    "voila/render/price_a_home.ipynb/../../files/price_a_home.ipynb",
]
CODE_AND_MODEL_URLS = [
    "voila/files/../src/homevalue/config.py",
    "voila/files/%2e%2e/src/homevalue/config.py",
    "voila/files/../model/pipeline.skops",
    "voila/files/%2e%2e/model/pipeline.skops",
    "voila/files/..%2fmodel/pipeline.skops",
    f"voila/files/{PROJ_ROOT}/model/pipeline.skops",
    "voila/files/../model/model_card.json",
    "voila/static/../../../../../model/pipeline.skops",
    "model/pipeline.skops",
    "voila/files/../voila.json",
]


@pytest.mark.parametrize("path", NOTEBOOK_URLS + CODE_AND_MODEL_URLS)
def test_notebooks_code_and_model_are_never_served(voila, path):
    status, body = voila.raw_get(path)
    if status in (301, 302, 307, 308):  # e.g. /voila/tree/<file>: follow the redirect
        response = voila.get(path)
        status, body = response.status_code, response.content
    assert status in (403, 404), f"/{path}: HTTP {status}"
    assert not any(marker.encode() in body for marker in NOTEBOOK_JSON)
    assert b"PK\x03\x04" not in body  # a skops file is a zip
    assert b"PROJ_ROOT" not in body  # src/homevalue/config.py


@pytest.mark.parametrize("page", PAGES)
def test_contents_api_gives_no_notebook_content(voila, page):
    """The landing page's listing API answers for notebooks, but never with their cells."""
    response = voila.get(f"voila/api/contents/{page}")
    if response.status_code == 200:
        assert response.json()["content"] is None
    assert not any(marker in response.text for marker in NOTEBOOK_JSON)


def test_a_returning_viewer_keeps_the_lab_extensions_content_hashed_files(voila):
    """Named by their content, they may be kept a year; Voilà said `no-cache` for all, so
    every return asked again for ~80 files. Files without a hash in the name still ask."""
    static = Path(sys.prefix) / "share/jupyter/labextensions/jupyter-leaflet/static"
    (entry,) = [p.name for p in static.glob("remoteEntry.*.js")]
    chunk = next(p.name for p in static.glob("*.js") if p.name[0].isdigit())
    for name, expected in [
        (entry, "public, max-age=31536000, immutable"),
        (chunk, "public, max-age=31536000, immutable"),
        ("style.js", "no-cache"),
    ]:
        response = voila.get(f"voila/labextensions/jupyter-leaflet/static/{name}")
        assert response.status_code == 200, name
        assert response.headers["Cache-Control"] == expected, name


def test_template_assets_are_served(voila):
    """The refusals above are the allowlist's doing, not a broken static route."""
    assert voila.get("voila/templates/homevalue/static/homevalue.css").status_code == 200
    assert voila.get("voila/templates/homevalue/static/homevalue.js").status_code == 200


# ---------------------------------------------------------------- the kernel websocket


def test_a_client_cannot_execute_code_over_the_kernel_websocket(voila, open_page, tmp_path):
    status, body = open_page("price_a_home.ipynb")
    assert status == 200
    marker = tmp_path / "executed"
    with KernelChannel(voila.url, kernel_id(body), timeout=20) as channel:
        code = f"open({str(marker)!r}, 'w').write('the browser ran code')"
        execute = channel.send(
            "execute_request",
            {"code": code, "silent": False, "store_history": False, "user_expressions": {}},
        )
        info = channel.send("kernel_info_request", {})
        received = channel.replies_until(info["header"]["msg_id"], "kernel_info_reply", 30)
        time.sleep(3)  # room for a late execution
        received += channel.replies_until("", "", 1)
    answered = [m for m in received if m["parent_header"].get("msg_id") == info["header"]["msg_id"]]
    assert any(m["header"]["msg_type"] == "kernel_info_reply" for m in answered), (
        "the websocket did not answer a kernel_info_request"
    )
    executed = [
        m for m in received if m["parent_header"].get("msg_id") == execute["header"]["msg_id"]
    ]
    assert not executed, f"the kernel answered the execute_request: {executed[:2]}"
    assert not marker.exists(), "code sent over the websocket was executed"


def test_a_50_mb_upload_fits_through_the_kernel_websocket(voila, open_page):
    """tornado closes a websocket on a message over 10 MiB unless voila.json raises it."""
    status, body = open_page("score_a_batch.ipynb")
    assert status == 200
    try:
        with KernelChannel(voila.url, kernel_id(body), timeout=20) as channel:
            blob = "x" * (50 * 2**20 + 1)  # the page's upload limit, and then some
            channel.send("comm_msg", {"comm_id": uuid.uuid4().hex, "data": {"blob": blob}})
            info = channel.send("kernel_info_request", {})
            received = channel.replies_until(info["header"]["msg_id"], "kernel_info_reply", 60)
    except (websocket.WebSocketException, OSError) as error:
        pytest.fail(f"the server closed the kernel websocket on a 50 MB message: {error!r}")
    assert any(m["header"]["msg_type"] == "kernel_info_reply" for m in received)


# ---------------------------------------------------------------- failures


def test_the_page_survives_its_kernel_dying(voila, open_page):
    status, body = open_page("price_a_home.ipynb")
    assert status == 200
    dead = kernel_id(body)
    voila.kill_kernel(dead)

    status, body = open_page("price_a_home.ipynb")
    assert status == 200
    assert kernel_id(body) != dead
    assert WIDGET_VIEW in body
    assert FRIENDLY_BUILD_ERROR not in body
    # the viewer of the dead kernel's page is told, by the template's notice and script
    assert 'id="hv-connection-lost"' in body
    assert "static/homevalue.js" in body
    assert voila.process.poll() is None, "the server died with the kernel"


def test_a_kernel_shut_down_by_the_server_closes_its_websocket(voila, open_page):
    """jupyter_server leaves a shut-down kernel's websockets open and silent; ours tells the
    page its kernel is dead (the status a failed restart gets), then closes the socket."""
    status, body = open_page("price_a_home.ipynb")
    assert status == 200
    with KernelChannel(voila.url, kernel_id(body), timeout=20) as channel:
        info = channel.send("kernel_info_request", {})
        channel.replies_until(info["header"]["msg_id"], "kernel_info_reply", 30)
        voila.shutdown_kernel(kernel_id(body))  # as idle culling or another tab's beacon
        channel.ws.settimeout(15)
        received = []
        with pytest.raises(websocket.WebSocketConnectionClosedException):
            while True:  # what the kernel sent before it went, then the closing frame
                received.append(channel.recv())
    last = received[-1]
    assert (last["header"]["msg_type"], last["content"]) == ("status", {"execution_state": "dead"})
    assert "shut down, closing its viewer's websocket" in voila.log()


BROKEN_NOTEBOOK = "model_report.ipynb"  # has a pooled kernel in voila.json


@pytest.fixture(scope="module", params=["preheated-kernel", "new-kernel"])
def broken_voila(tmp_path_factory, request) -> VoilaServer:
    """`make serve` on a folder whose notebook raises while the page is built, its page
    taken from the preheated pool, or (pool off) from a kernel started for the request."""
    options = "--VoilaConfiguration.preheat_kernel=False" if request.param == "new-kernel" else ""
    folder = tmp_path_factory.mktemp("broken")
    notebooks = folder / "notebooks"
    cells = [
        "import ipywidgets\nipywidgets.IntSlider()",
        'raise RuntimeError("boom-secret")',
        'print("never printed")',
    ]
    write_notebook(notebooks / BROKEN_NOTEBOOK, cells)
    with serve(folder / "server.log", notebooks=notebooks, voila_args=options) as server:
        yield server


def test_a_cell_that_raises_shows_a_friendly_message(broken_voila):
    response = broken_voila.get(f"voila/render/{BROKEN_NOTEBOOK}")
    try:
        assert response.status_code in (200, 500)
        body = response.text
        assert FRIENDLY_BUILD_ERROR in body
        assert "The error has been logged on the server." in body
        assert "boom-secret" not in body
        assert "RuntimeError" not in body
        assert _python_error(body) is None
        log = broken_voila.log()
        assert "Error at server while executing cell" in log
        assert "boom-secret" in log, "the server log does not have the error"
    finally:
        if response.status_code == 200:
            broken_voila.shutdown_kernel(kernel_id(response.text))


@pytest.fixture(scope="module")
def modelless_voila(tmp_path_factory) -> tuple[VoilaServer, Path]:
    """`make serve` on the real pages with HOMEVALUE_MODEL_DIR pointing at an empty folder."""
    folder = tmp_path_factory.mktemp("modelless")
    empty = folder / "no-model-here"
    empty.mkdir()
    with serve(folder / "server.log", env={"HOMEVALUE_MODEL_DIR": str(empty)}) as server:
        yield server, empty


@pytest.mark.parametrize("page", PAGES)
def test_a_page_without_its_model_says_so_and_logs_why(modelless_voila, page):
    server, empty = modelless_voila
    response = server.get(f"voila/render/{page}")
    try:
        assert response.status_code == 200
        body = response.text
        assert "is unavailable: the price model could not be loaded" in body
        assert str(empty) not in body, "a server path reached the viewer"
        assert _python_error(body) is None
        # the reason (with the path) is in the server's log, not in the page
        assert f"no model card at {empty}" in server.log()
    finally:
        if response.status_code == 200:
            server.shutdown_kernel(kernel_id(response.text))


def test_the_template_stylesheet_closes_every_block():
    """A block left open swallows every rule after it without a word from the browser (a
    merge once dropped the print block's two closing braces, and with them the map's height
    and the help texts' indent)."""
    css = (PROJ_ROOT / "share/jupyter/voila/templates/homevalue/static/homevalue.css").read_text()
    text = re.sub(r"/\*.*?\*/", "", css, flags=re.S)
    depth = 0
    for line, row in enumerate(text.splitlines(), 1):
        depth += row.count("{") - row.count("}")
        assert depth >= 0, f"a block closes twice by line {line}"
    assert depth == 0, f"{depth} block(s) left open at the end of homevalue.css"
