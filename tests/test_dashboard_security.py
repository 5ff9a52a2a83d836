"""The dashboards' server attacked as a hostile viewer would: its kernel websockets and kernels.

Two `make serve` servers: one as configured (voila.json), and one with small limits so that
a test can reach them (at most 10 kernels, 4 new pages per client per minute, 450 MB per
kernel, 6 s for a served page's browser to connect, 127.0.0.1 trusted as a reverse proxy so
that X-Forwarded-For tells clients apart).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import requests
import websocket
from kernel_channel import KernelChannel
from voila_server import VoilaServer, kernel_id, serve

PRICE_PAGE = "voila/render/price_a_home.ipynb"
MB = 2**20
LIMITS = {
    "HOMEVALUE_MAX_KERNELS": "10",
    "HOMEVALUE_KERNELS_PER_CLIENT_PER_MINUTE": "4",
    "HOMEVALUE_KERNEL_MEMORY_MB": "450",
    "HOMEVALUE_UNCLAIMED_KERNEL_SECONDS": "6",
    "HOMEVALUE_TRUSTED_PROXIES": "127.0.0.1,::1",
}
POOL = 4  # voila.json: 2 price + 1 batch + 1 report kernels kept preheated
UNCLAIMED_SECONDS = float(LIMITS["HOMEVALUE_UNCLAIMED_KERNEL_SECONDS"])


@pytest.fixture(scope="module")
def voila(tmp_path_factory) -> Iterator[VoilaServer]:
    with serve(tmp_path_factory.mktemp("voila") / "server.log") as server:
        yield server


@pytest.fixture(scope="module")
def limited(tmp_path_factory) -> Iterator[VoilaServer]:
    with serve(tmp_path_factory.mktemp("limited") / "server.log", env=LIMITS) as server:
        wait_for_kernels(server, POOL)
        yield server


OPENED: list[tuple[VoilaServer, str]] = []


@pytest.fixture(autouse=True)
def close_pages() -> Iterator[None]:
    """Every page a test opened has its kernel shut down after it, as a closing tab does."""
    yield
    while OPENED:
        server, kernel = OPENED.pop()
        if kernel in server.kernel_ids():
            server.shutdown_kernel(kernel)


def opened(server: VoilaServer, response: requests.Response) -> str:
    kernel = kernel_id(response.text)
    OPENED.append((server, kernel))
    return kernel


def open_price_page(server: VoilaServer, query: str = "") -> str:
    response = server.get(PRICE_PAGE + query)
    assert response.status_code == 200, response.text[:300]
    return opened(server, response)


def wait_for_kernels(server: VoilaServer, count: int, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while len(server.kernel_ids()) != count:
        assert time.monotonic() < deadline, f"{len(server.kernel_ids())} kernels, not {count}"
        time.sleep(0.5)


@contextmanager
def watched(server: VoilaServer) -> Iterator[dict]:
    """While the block runs, ask the landing page every 0.1 s and sample the server's RSS;
    yields {"slowest": seconds, "rss_growth": bytes} filled in when the block ends."""
    process = server.server_process()
    start_rss = process.memory_info().rss
    found = {"slowest": 0.0, "rss_growth": 0}
    stop = threading.Event()

    def probe() -> None:
        while not stop.is_set():
            began = time.monotonic()
            try:
                requests.get(server.url + "voila/tree", timeout=5).raise_for_status()
                took = time.monotonic() - began
            except requests.RequestException:
                took = float("inf")
            growth = process.memory_info().rss - start_rss
            found["slowest"] = max(found["slowest"], took)
            found["rss_growth"] = max(found["rss_growth"], growth)
            stop.wait(0.1)

    prober = threading.Thread(target=probe, daemon=True)
    prober.start()
    try:
        yield found
        time.sleep(3)  # the damage, if any, happens after the message is sent
    finally:
        stop.set()
        prober.join(10)


def living_area_model(server: VoilaServer, kernel: str) -> str:
    with KernelChannel(server.url, kernel) as channel:
        return channel.model_id("Living area")


# --- item 1: the kernel websocket protocol --------------------------------------------------


def test_a_legacy_protocol_connection_is_refused_and_cannot_freeze_the_server(voila):
    """Upstream Voilà reads the kernel's binary replies to a legacy-protocol socket as v1
    frames and builds a list of ~10^17 offsets: the whole server froze and grew ~90 MB/s."""
    kernel = open_price_page(voila)
    model = living_area_model(voila, kernel)
    with watched(voila) as seen:
        try:
            channel = KernelChannel(voila.url, kernel, protocol=None)
        except websocket.WebSocketBadStatusException as refused:
            assert refused.status_code == 400
        else:  # the attack itself: one text frame
            channel.update(model, {"value": 1800})
    assert seen["slowest"] < 1.0, f"the server took {seen['slowest']:.1f} s to answer"
    assert seen["rss_growth"] < 50 * MB
    assert "Traceback" not in voila.log()


def test_a_v1_frame_with_forged_offsets_is_refused_and_cannot_freeze_the_server(voila):
    """jupyter_server reads an incoming frame's offset count from the frame itself."""
    kernel = open_price_page(voila)
    with watched(voila) as seen, KernelChannel(voila.url, kernel) as channel:
        channel.send_raw((2**60).to_bytes(8, "little") + bytes(64))
        with pytest.raises(websocket.WebSocketConnectionClosedException):
            for _ in range(100):  # status messages may come first; then the close
                channel.recv()
    assert seen["slowest"] < 1.0
    assert seen["rss_growth"] < 50 * MB
    assert "offsets (at most" in voila.log()


@pytest.mark.parametrize(
    "frame",
    [
        "a text frame",
        b"short",
        (3).to_bytes(8, "little") + (10**9).to_bytes(8, "little") * 3,  # offsets past the end
        (4).to_bytes(8, "little") + bytes(32),  # no header part to read
    ],
)
def test_malformed_frames_close_the_viewers_socket_only(voila, frame):
    kernel = open_price_page(voila)
    with KernelChannel(voila.url, kernel) as channel:
        channel.send_raw(frame)
        with pytest.raises(websocket.WebSocketConnectionClosedException):
            for _ in range(100):
                channel.recv()
    # the page's kernel is still there for a well-formed socket
    with KernelChannel(voila.url, kernel) as channel:
        assert channel.model_id("Living area")


def test_a_viewer_editing_the_form_over_v1_still_reprices(voila):
    """What the page's own JavaScript does keeps working: a field's change reprices."""
    kernel = open_price_page(voila)
    with KernelChannel(voila.url, kernel) as channel:
        before = {m: s.get("value") for m, s in channel.widget_states().items()}
        channel.update(channel.model_id("Living area"), {"value": 2600})
        reply = channel.recv_until(
            lambda m: (
                m["header"]["msg_type"] == "comm_msg"
                and m["content"]["data"].get("method") == "update"
                and "$" in str(m["content"]["data"]["state"].get("value", ""))
            )
        )
    assert reply["content"]["data"]["state"]["value"] != before[reply["content"]["comm_id"]]


def test_a_viewer_cannot_create_widgets_in_the_kernel(voila):
    """The widget manager only opens the control comm; models come from the kernel. Opening
    `jupyter.widget` comms let a viewer add 20 MiB HTML widgets until the kernel was huge."""
    kernel = open_price_page(voila)
    [process] = voila.kernel_processes(kernel)
    before = process.memory_info().rss
    with KernelChannel(voila.url, kernel) as channel:
        state = {
            "_model_name": "HTMLModel",
            "_model_module": "@jupyter-widgets/controls",
            "_model_module_version": "2.0.0",
            "value": "x" * (20 * MB),
        }
        channel.send(
            "comm_open",
            {
                "comm_id": uuid.uuid4().hex,
                "target_name": "jupyter.widget",
                "data": {"state": state, "buffer_paths": []},
            },
        )
        with pytest.raises(websocket.WebSocketConnectionClosedException):
            for _ in range(100):
                channel.recv()
    time.sleep(1)
    assert process.memory_info().rss - before < 10 * MB
    assert "may not open a comm to 'jupyter.widget'" in voila.log()


# --- item 6: no traceback reaches a viewer from widget messages ------------------------------


def test_malformed_widget_messages_send_no_traceback_to_the_viewer(voila):
    kernel = open_price_page(voila)
    seen = []
    with KernelChannel(voila.url, kernel) as channel:
        model = channel.model_id("Living area")
        channel.update(model, {"value": "not a number"})
        channel.update(model, {"no_such_trait": 1})
        channel.send("comm_msg", {"comm_id": model, "data": "not a dict"})
        channel.send("comm_msg", {"comm_id": "no-such-comm", "data": {"method": "update"}})
        channel.ws.settimeout(3)
        with pytest.raises(websocket.WebSocketTimeoutException):
            while True:
                seen.append(channel.recv())
    kinds = {m["header"]["msg_type"] for m in seen}
    assert "error" not in kinds
    assert not [m for m in seen if m["header"]["msg_type"] == "stream"]
    shown = str([m["content"] for m in seen])
    assert "Traceback" not in shown and "site-packages" not in shown
    # the operator still has it
    assert "(not shown to the viewer)" in voila.log()
    assert "TraitError" in voila.log() or "ValueError" in voila.log()


def test_a_bad_value_in_a_link_is_a_notice_not_a_broken_page(voila):
    """`?Year_Built=2,009` reached the form as text and the page "could not be built"."""
    for query, notice in [
        ("?Year_Built=2,009", "Fix the marked field"),
        ("?Year_Built=abc", "Year_Built=abc must be a number"),
    ]:
        response = voila.get(PRICE_PAGE + query)
        assert response.status_code == 200
        assert "could not be built" not in response.text
        with KernelChannel(voila.url, opened(voila, response)) as channel:
            shown = [str(state.get("value")) for state in channel.widget_states().values()]
        assert any(notice in value for value in shown), query


# --- item 3: query parameters and the preheated pool ---------------------------------------


def test_theme_and_template_in_the_query_still_get_a_preheated_kernel(voila):
    """Any ?theme= or ?template= used to skip the pool and start a cold kernel per GET."""
    for query in ["?theme=dark", "?template=lab&theme=x", "?theme=light"]:
        wait_for_kernels(voila, POOL)  # the pool has refilled
        kernel = open_price_page(voila, query)
        assert f"Using pre-heated kernel: {kernel}" in voila.log(), query
        voila.shutdown_kernel(kernel)


# --- item 3: limits on kernels ---------------------------------------------------------------


def get_as(server: VoilaServer, client: str) -> requests.Response:
    return server.get(PRICE_PAGE, headers={"X-Forwarded-For": f"203.0.113.9, {client}"})


def test_a_client_gets_a_few_kernels_a_minute_then_a_busy_page(limited):
    """100 GETs from one address: 4 pages, then 503 with Retry-After; others still served."""
    wait_for_kernels(limited, POOL)
    statuses = []
    began = time.monotonic()
    with watched(limited) as seen:
        for _ in range(100):
            response = get_as(limited, "198.51.100.1")
            statuses.append(response.status_code)
            if response.status_code == 503:
                busy = response
    refilled = int((time.monotonic() - began) / 15)  # the budget regains one page per 15 s
    assert 4 <= statuses.count(200) <= 4 + refilled
    assert statuses[:4] == [200] * 4 and statuses.count(503) >= 96 - refilled
    assert 1 <= int(busy.headers["Retry-After"]) <= 60
    assert "busy" in busy.text.lower() and "try again" in busy.text.lower()
    assert "Traceback" not in busy.text
    assert "opened 4 pages in the last minute" in limited.log()
    assert len(limited.kernel_ids()) <= 10
    other = get_as(limited, "198.51.100.2")  # another viewer is still served
    assert other.status_code == 200
    rss = sum(p.memory_info().rss for p in limited.processes())
    print(
        f"\nafter 100 GETs: {len(limited.kernel_ids())} kernels, {rss / MB:.0f} MB RSS in all; "
        f"slowest landing page meanwhile {seen['slowest']:.2f} s"
    )


def test_pages_no_browser_connects_to_give_their_kernels_back(limited):
    wait_for_kernels(limited, POOL, timeout=120)  # the previous test's pages, reclaimed
    served = [kernel_id(get_as(limited, f"198.51.100.{20 + i}").text) for i in range(2)]
    kept = open_price_page(limited)  # one viewer whose browser connects
    with KernelChannel(limited.url, kept):
        time.sleep(UNCLAIMED_SECONDS + 6)
        alive = set(limited.kernel_ids())
    assert not set(served) & alive
    assert kept in alive
    assert "no browser connected" in limited.log()


def test_the_server_never_holds_more_kernels_than_its_cap(limited):
    """Viewers from many addresses, each using their page: the cap of 10 kernels holds."""
    wait_for_kernels(limited, POOL, timeout=120)
    statuses, channels = [], []
    try:
        for i in range(8):
            response = get_as(limited, f"198.51.100.{100 + i}")
            statuses.append(response.status_code)
            if response.status_code == 200:  # its browser connects, as a viewer's does
                channels.append(KernelChannel(limited.url, opened(limited, response)))
        assert statuses == [200] * 6 + [503] * 2  # the pool of 4 and 6 viewers fill the cap
        assert len(limited.kernel_ids()) <= 10
        assert "kernels running (limit 10)" in limited.log()
    finally:
        for channel in channels:
            channel.close()


def drained(channel: KernelChannel) -> threading.Thread:
    """Read (and drop) whatever the kernel sends, as a browser does, until the socket ends."""

    def drain() -> None:
        try:
            while True:
                channel.ws.recv()
        except (websocket.WebSocketException, OSError):
            pass

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    return reader


def test_a_kernel_over_its_memory_limit_is_shut_down(limited):
    """Upstream, 15 widget values of 20 MiB took one kernel from 187 to 567 MB, unbounded."""
    wait_for_kernels(limited, POOL, timeout=120)
    kernel = open_price_page(limited)
    [process] = limited.kernel_processes(kernel)
    with KernelChannel(limited.url, kernel, timeout=60) as channel:
        html = [m for m, s in channel.widget_states().items() if s["_model_name"] == "HTMLModel"]
        reader = drained(channel)
        for model in html[:15]:
            try:
                channel.update(model, {"value": "x" * (20 * MB)})
            except (websocket.WebSocketException, OSError):
                break  # the kernel was shut down on the way
        reader.join(30)  # the socket closes once the kernel is gone
    process.wait(timeout=10)  # TimeoutExpired if the kernel lives on
    assert f"shutting kernel {kernel} down: it holds" in limited.log()
    assert "(limit 450 MB)" in limited.log()


# --- item 7: opt-in access control ----------------------------------------------------------

TOKEN = "tok-" + uuid.uuid4().hex


@pytest.fixture(scope="module")
def guarded(tmp_path_factory) -> Iterator[VoilaServer]:
    env = {"HOMEVALUE_DASHBOARD_TOKEN": TOKEN}
    with serve(tmp_path_factory.mktemp("token") / "server.log", env=env) as server:
        yield server


def test_with_a_token_a_page_needs_it_and_then_works_from_its_cookie(guarded):
    kernels = len(guarded.kernel_ids())
    anonymous = requests.get(guarded.url + PRICE_PAGE, timeout=30, allow_redirects=False)
    assert anonymous.status_code == 302 and "/login" in anonymous.headers["Location"]
    wrong = requests.get(guarded.url + PRICE_PAGE + "?token=nope", timeout=30)
    assert "jupyter-config-data" not in wrong.text  # the login form, no page
    assert len(guarded.kernel_ids()) == kernels  # nobody got a kernel
    with requests.Session() as viewer:
        page = viewer.get(f"{guarded.url}{PRICE_PAGE}?token={TOKEN}&Gr_Liv_Area=1900", timeout=120)
        assert page.status_code == 200
        kernel = opened(guarded, page)
        cookie = "; ".join(f"{k}={v}" for k, v in viewer.cookies.items())
        again = viewer.get(guarded.url + PRICE_PAGE, timeout=120)  # the cookie is enough
        assert again.status_code == 200
        opened(guarded, again)
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        KernelChannel(guarded.url, kernel)  # a websocket without the cookie
    assert refused.value.status_code == 403
    with KernelChannel(guarded.url, kernel, cookie=cookie) as channel:
        states = channel.widget_states()
    living = next(s for s in states.values() if s.get("description") == "Living area")
    assert living["value"] == 1900  # the link's query reached the preheated kernel
    assert not any("token" in str(s.get("value")) for s in states.values())
    assert TOKEN not in guarded.log()  # the access log masks it
