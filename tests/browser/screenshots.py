"""Screenshots of every page in light and dark theme, and on a phone and a tablet (the first
screen), for the README and for review.

Usage: python tests/browser/screenshots.py [OUT_DIR [BASE_URL]]
Without BASE_URL it starts Voilà as `make serve` does (tests/voila_server.py) and stops it
afterwards; OUT_DIR defaults to docs/screenshots. Drives the system's chromium with
Playwright (never a downloaded browser; tests/browser/chromium.py finds it, as for the
browser tests).

The browser tests use the same pieces (`launch`, `open_page`, `shoot`) and write their
screenshots to test-artifacts/screenshots/.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from playwright.sync_api import Browser, Page, Playwright, sync_playwright

if __package__:
    from browser import chromium
else:  # run as a script: `python tests/browser/screenshots.py`
    import chromium
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
VIEWPORT = {"width": 1280, "height": 900}
# A phone and a tablet, shot in the light theme only, as the first screen a viewer sees.
SIZES = {"phone": {"width": 390, "height": 844}, "tablet": {"width": 768, "height": 1024}}
THEMES = ("light", "dark")
READY_TIMEOUT = 60_000  # ms: a page whose kernel starts cold on a busy machine
# page name -> (path under the server, element that shows once the page is built)
PAGES = {
    "landing": ("", "main, body"),
    "price_a_home": ("voila/render/price_a_home.ipynb", ".hv-price"),
    "score_a_batch": ("voila/render/score_a_batch.ipynb", ".hv-table"),
    "model_report": ("voila/render/model_report.ipynb", ".bqplot"),
    "monitoring": ("voila/render/monitoring.ipynb", ".bqplot"),
}


def launch(playwright: Playwright) -> Browser:
    """The system's chromium, headless, with nothing that reaches for the network by itself."""
    return playwright.chromium.launch(executable_path=chromium.require(), args=FLAGS)


def page_url(base_url: str, name: str, theme: str = "light", query: str = "") -> str:
    """The page's URL; `query` (without "?") adds parameters, e.g. fields of the house."""
    params = "&".join(p for p in (query, "theme=dark" if theme == "dark" else "") if p)
    return f"{base_url.rstrip('/')}/{PAGES[name][0]}" + (f"?{params}" if params else "")


def open_page(page: Page, base_url: str, name: str, theme: str = "light", query: str = "") -> None:
    """Load a page and wait until it is built: its cells have run and its widgets show."""
    page.goto(page_url(base_url, name, theme, query), wait_until="load")
    page.wait_for_selector("#loading", state="detached", timeout=READY_TIMEOUT)
    page.wait_for_selector(PAGES[name][1], timeout=READY_TIMEOUT)


def shoot(page: Page, out: Path, name: str, theme: str, settle_ms: int = 1500) -> Path:
    """Screenshot the loaded page, whole, into `out/{name}-{theme}.png`.

    `settle_ms` lets charts and the map finish drawing (and their animations end) first.
    """
    out.mkdir(parents=True, exist_ok=True)
    page.wait_for_timeout(settle_ms)
    # The template scrolls inside a container, so grow the window to the content.
    height = page.evaluate(
        "Math.max(...[...document.querySelectorAll('*')].map(e => e.scrollHeight))"
    )
    page.set_viewport_size({"width": VIEWPORT["width"], "height": min(max(height, 900), 6000)})
    page.wait_for_timeout(settle_ms // 3)  # the widgets lay out again for the new size
    target = out / f"{name}-{theme}.png"
    page.screenshot(path=str(target), full_page=True)
    return target


def take(base_url: str, out: Path) -> list[Path]:
    written = []
    with sync_playwright() as p:
        browser = launch(p)
        for theme in THEMES:
            for name in PAGES:
                page = browser.new_page(viewport=VIEWPORT)
                open_page(page, base_url, name, theme)
                written.append(shoot(page, out, name, theme))
                page.close(run_before_unload=True)  # Voilà then shuts the page's kernel down
        for size, viewport in SIZES.items():
            for name in PAGES:
                page = browser.new_page(viewport=viewport)
                open_page(page, base_url, name)
                page.wait_for_timeout(1500)
                written.append(out / f"{name}-{size}.png")
                page.screenshot(path=str(written[-1]))
                page.close(run_before_unload=True)
        browser.close()
    return written


def main(out: Path, base_url: str | None) -> None:
    if base_url:
        written = take(base_url, out)
    else:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from voila_server import serve

        with tempfile.TemporaryDirectory() as folder, serve(Path(folder) / "voila.log") as server:
            written = take(server.url, out)
    for path in written:
        print(path)


if __name__ == "__main__":
    root = Path(__file__).resolve().parents[2]
    main(
        Path(sys.argv[1]) if len(sys.argv) > 1 else root / "docs" / "screenshots",
        sys.argv[2] if len(sys.argv) > 2 else None,
    )
