"""What a hostile link can do to a viewer's browser: nothing.

A viewer may arrive by any link. `?theme=` was printed into the page unescaped (a reflected
XSS, issue 10): now the server never reads it, the browser applies only "light" or "dark",
and the page's Content-Security-Policy (voila.json) stops any script that would still get
into a page, which these tests simulate by putting markup into a real response.
Every other browser test runs under the same policy and fails on anything it blocks.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterator

import nbformat
import pytest
from playwright.sync_api import Page, expect
from voila_server import VoilaServer, serve, write_notebook

from browser.conftest import Problems, watched_page
from browser.screenshots import READY_TIMEOUT, open_page

# The reported reproduction: closes the attribute, then an image whose onerror runs script.
XSS_THEME = 'x"><img src=x onerror=alert(document.domain)>'
# What an escaping bug would let through: an inline event handler and an inline script.
INJECTED = (
    '<img id="hv-injected" src="x" onerror="alert(document.domain)"><script>alert(2)</script>'
)
DARK, LIGHT = "JupyterLab Dark", "JupyterLab Light"
HEARTBEAT_LOG = "Ok, voila is still executing..."  # what window.voila_heartbeat() logs
# Keeps every text the loading indicator's step line shows (the page removes it when built).
RECORD_LOADING_STEPS = """window.hvSteps = [];
new MutationObserver(() => {
  const step = document.getElementById('hv-loading-step');
  const text = step && step.textContent;
  if (text && window.hvSteps[window.hvSteps.length - 1] !== text) window.hvSteps.push(text);
}).observe(document, {subtree: true, childList: true, characterData: true});"""
# True once Voilà's frontend is connected to the page's kernel and the kernel is idle: a
# page closed while its kernel is busy has it interrupted by the shutdown, and the kernel
# logs that KeyboardInterrupt as an ERROR.
KERNEL_SETTLED = """() => {
  const manager = window.jupyterapp && window.jupyterapp.widgetManager;
  const kernel = manager && manager.kernel;
  return !!kernel && kernel.connectionStatus === 'connected' && kernel.status === 'idle';
}"""


def directives(policy: str) -> dict[str, list[str]]:
    """directive -> its sources, from a Content-Security-Policy header."""
    parts = (directive.split() for directive in policy.split(";"))
    return {part[0]: part[1:] for part in parts if part}


def open_price_page(page: Page, base_url: str, query: str) -> None:
    page.goto(f"{base_url}voila/render/price_a_home.ipynb?{query}", wait_until="load")
    page.wait_for_selector("#loading", state="detached", timeout=READY_TIMEOUT)
    page.wait_for_selector(".hv-price", timeout=READY_TIMEOUT)


def theme_of(page: Page) -> str:
    return page.locator("body").get_attribute("data-jp-theme-name")


def is_dark(page: Page) -> bool:
    """What the viewer sees: a dark page background, whatever the attributes say."""
    colour = page.evaluate("() => getComputedStyle(document.body).backgroundColor")
    red, green, blue = (int(v) for v in colour[colour.index("(") + 1 : -1].split(",")[:3])
    return (0.2126 * red + 0.7152 * green + 0.0722 * blue) / 255 < 0.3


# ---------------------------------------------------------------- the reported XSS


def test_a_theme_parameter_cannot_inject_markup(page, problems, server):
    """The reported link: no dialog, no injected element, the page in its default theme."""
    open_price_page(page, server.url, "theme=" + urllib.parse.quote(XSS_THEME))
    page.wait_for_load_state("networkidle")  # an injected image would have failed by now
    assert problems.dialogs == [], "the theme parameter ran a script"
    assert page.locator("[onerror]").count() == 0, "the theme parameter became elements"
    assert "onerror" not in page.content()
    assert theme_of(page) == LIGHT and not is_dark(page)
    assert "theme-light" in page.locator("body").get_attribute("class")


# ---------------------------------------------------------------- the policy


def test_the_policy_blocks_script_that_got_into_a_page(page, problems, server):
    """As if escaping had failed: markup put into the landing page's real response (with
    its real headers) becomes elements, but neither its handler nor its script runs."""

    def inject(route):
        response = route.fetch()
        body = response.text().replace('<main class="hv-landing">', INJECTED + "<main", 1)
        assert INJECTED in body, "the landing page changed: inject elsewhere"
        route.fulfill(response=response, body=body)

    page.route(f"{server.url}voila/tree", inject)
    response = page.goto(f"{server.url}voila/tree", wait_until="load")
    page.wait_for_load_state("networkidle")
    sources = directives(response.headers.get("content-security-policy", "")).get("script-src", [])
    assert "'self'" in sources and "'unsafe-inline'" not in sources, sources
    expect(page.locator("#hv-injected")).to_have_count(1)  # the markup did get in
    blocked = [v.split(" blocked ")[0] for v in problems.csp_violations]
    assert problems.dialogs == [], "an injected script ran"
    assert "script-src-attr" in blocked, f"the inline handler was not blocked: {blocked}"
    assert "script-src-elem" in blocked, f"the inline script was not blocked: {blocked}"
    problems.take()  # the blocked script and the injected image's failed load: expected


def test_the_policy_blocks_script_added_to_a_live_page(page, problems, server):
    """On a page with a kernel: markup added to the document (as a widget showing unescaped
    text would) runs nothing, and the page keeps working."""
    open_price_page(page, server.url, "")
    page.evaluate(
        """html => {
          const box = document.createElement('div');
          box.innerHTML = html;  // innerHTML never runs a <script>; the handler is the test
          document.body.appendChild(box);
          const script = document.createElement('script');
          script.textContent = 'alert(3)';
          document.body.appendChild(script);
        }""",
        INJECTED,
    )
    page.wait_for_timeout(500)
    blocked = [v.split(" blocked ")[0] for v in problems.csp_violations]
    assert problems.dialogs == [], "an injected script ran"
    assert blocked.count("script-src-attr") == 1 and blocked.count("script-src-elem") == 1
    problems.take()
    price = page.inner_text(".hv-price")
    area = page.locator(".hv-row-Gr_Liv_Area input")
    area.fill("2500")
    area.press("Enter")
    expect(page.locator(".hv-price")).not_to_have_text(price, timeout=15_000)
    page.wait_for_function(KERNEL_SETTLED, timeout=READY_TIMEOUT)  # the rest follows the price


def test_the_reload_buttons_work_without_inline_handlers(page, server):
    """The connection-lost notice's button is wired by homevalue.js, not an onclick."""
    open_price_page(page, server.url, "theme=dark")
    page.evaluate("() => { document.getElementById('hv-connection-lost').hidden = false; }")
    with page.expect_navigation(wait_until="load"):
        page.get_by_role("button", name="Reload").click()
    assert page.url.endswith("?theme=dark")
    page.wait_for_selector(".hv-price", timeout=READY_TIMEOUT)
    page.wait_for_function(KERNEL_SETTLED, timeout=READY_TIMEOUT)


# ---------------------------------------------------------------- the viewer's theme


def test_a_chosen_theme_follows_the_links_between_pages(page, server):
    open_page(page, server.url, "landing", "dark")
    assert theme_of(page) == DARK and is_dark(page)
    page.get_by_role("link", name="Price a home").last.click()  # the card, not the header
    page.wait_for_selector(".hv-price", timeout=READY_TIMEOUT)
    page.wait_for_function(KERNEL_SETTLED, timeout=READY_TIMEOUT)  # before leaving it
    assert urllib.parse.urlsplit(page.url).query == "theme=dark"
    assert theme_of(page) == DARK and is_dark(page)
    page.locator(".hv-brand").click()
    page.wait_for_selector(".hv-landing")
    assert urllib.parse.urlsplit(page.url).query == "theme=dark"
    assert theme_of(page) == DARK and is_dark(page)


def test_an_error_page_keeps_the_chosen_theme(page, problems, server):
    response = page.goto(f"{server.url}voila/render/no_such_page.ipynb?theme=dark")
    assert response.status == 404
    assert "content-security-policy" in response.headers
    assert theme_of(page) == DARK and is_dark(page)
    home = page.get_by_role("link", name="Go to the list of pages")
    assert home.get_attribute("href").endswith("/voila/tree?theme=dark")
    problems.take()  # the 404 itself is reported as a failed load


def test_an_unknown_theme_is_ignored(page, server):
    open_page(page, server.url, "landing", query="theme=solarized")
    assert theme_of(page) == LIGHT and not is_dark(page)
    assert "solarized" not in page.content()
    assert "theme=" not in page.get_by_role("link", name="Price a home").last.get_attribute("href")


# ---------------------------------------------------------------- a dark server


SLOW_NOTEBOOK = "slow_page.ipynb"
SLOW_SECONDS = 3  # longer than the heartbeat interval below
# A notebook whose file name is markup: the landing page lists it, its page is titled by it.
HOSTILE_NOTEBOOK = 'x"><img src=x onerror=alert(document.domain)>.ipynb'


@pytest.fixture(scope="module")
def dark_server(tmp_path_factory) -> Iterator[VoilaServer]:
    """`make serve VOILA_ARGS=--theme=dark` on a page whose cell outlasts Voilà's heartbeat
    interval (1 s here), so the heartbeat's inline script arrives while it is built, and a
    page whose file name is markup."""
    folder = tmp_path_factory.mktemp("dark")
    notebooks = folder / "notebooks"
    slow = [
        nbformat.v4.new_markdown_cell("# A slow page"),
        f"import time\ntime.sleep({SLOW_SECONDS})",
        'print("built")',
    ]
    write_notebook(notebooks / SLOW_NOTEBOOK, slow)
    hostile = [nbformat.v4.new_markdown_cell("A page with a hostile file name.")]
    write_notebook(notebooks / HOSTILE_NOTEBOOK, hostile)
    args = "--theme=dark --VoilaConfiguration.http_keep_alive_timeout=1"
    with serve(folder / "server.log", notebooks=notebooks, voila_args=args) as server:
        yield server


@pytest.fixture
def dark_page(browser, dark_server, problems) -> Iterator[Page]:
    with watched_page(browser, dark_server, problems) as tab:
        yield tab


def open_slow_page(page: Page, server: VoilaServer, query: str = "") -> list[str]:
    """Open the slow page; the console's log messages while it was built."""
    logged: list[str] = []
    page.on("console", lambda message: logged.append(message.text))
    page.goto(f"{server.url}voila/render/{SLOW_NOTEBOOK}{query}", wait_until="load")
    page.wait_for_selector("#loading", state="detached", timeout=READY_TIMEOUT)
    expect(page.get_by_text("built", exact=True)).to_be_visible()
    page.wait_for_function(KERNEL_SETTLED, timeout=READY_TIMEOUT)
    return logged


def test_a_dark_server_serves_dark_pages_and_its_heartbeat_runs(
    dark_page, problems: Problems, dark_server
):
    """`--theme=dark`: the server's default is dark; Voilà's heartbeat (the one inline
    script left, allowed by its hash) runs under the policy, and the loading indicator
    counts the cells without the lab template's inline script per cell."""
    dark_page.add_init_script(RECORD_LOADING_STEPS)
    logged = open_slow_page(dark_page, dark_server)
    assert theme_of(dark_page) == DARK and is_dark(dark_page)
    assert HEARTBEAT_LOG in logged, "no heartbeat ran while the slow cell was executed"
    assert problems.csp_violations == []
    steps = dark_page.evaluate("window.hvSteps")
    assert steps and steps[-1] == "Preparing the page: step 3 of 3", steps


def test_a_dark_server_serves_a_dark_landing_page(dark_page, dark_server):
    dark_page.goto(dark_server.url)
    assert theme_of(dark_page) == DARK and is_dark(dark_page)
    link = dark_page.get_by_role("link", name=SLOW_NOTEBOOK)
    assert "theme=" not in link.get_attribute("href")  # the server's theme needs no parameter


def test_a_viewer_can_choose_light_on_a_dark_server(dark_page, dark_server):
    open_slow_page(dark_page, dark_server, "?theme=light")
    assert theme_of(dark_page) == LIGHT and not is_dark(dark_page)
    assert "theme-light" in dark_page.locator("body").get_attribute("class")
    assert "theme-dark" not in dark_page.locator("body").get_attribute("class")


def test_a_file_name_is_shown_as_text(dark_page, problems, dark_server):
    """The landing page and the page itself print the notebook's name: as text only."""
    page = dark_page
    page.goto(dark_server.url)
    link = page.get_by_role("link", name=HOSTILE_NOTEBOOK)
    expect(link).to_have_count(1)
    link.click()
    page.wait_for_selector("#loading", state="detached", timeout=READY_TIMEOUT)
    expect(page.get_by_text("A page with a hostile file name.")).to_be_visible()
    assert page.title() == HOSTILE_NOTEBOOK.removesuffix(".ipynb")
    page.wait_for_function(KERNEL_SETTLED, timeout=READY_TIMEOUT)
    assert page.locator("[onerror]").count() == 0
    assert problems.dialogs == [] and problems.csp_violations == []
