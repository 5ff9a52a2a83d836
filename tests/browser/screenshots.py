"""Screenshots of every page in light and dark theme, for the README and for review.

Usage: python tests/browser/screenshots.py [OUT_DIR [BASE_URL]]
Without BASE_URL it starts Voilà as `make serve` does (tests/voila_server.py) and stops it
afterwards; OUT_DIR defaults to docs/screenshots. Drives Debian's chromium (never a
downloaded browser) with Playwright.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from playwright.sync_api import sync_playwright

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run"]  # fmt: skip
PAGES = {
    "landing": ("", "main, body"),
    "price_a_home": ("voila/render/price_a_home.ipynb", ".hv-price"),
    "score_a_batch": ("voila/render/score_a_batch.ipynb", ".hv-table"),
    "model_report": ("voila/render/model_report.ipynb", ".bqplot"),
}


def take(base_url: str, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        for theme in ("light", "dark"):
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            for name, (path, ready) in PAGES.items():
                query = f"?theme={theme}" if theme == "dark" else ""
                page.goto(f"{base_url.rstrip('/')}/{path}{query}", wait_until="load")
                page.wait_for_selector(ready, timeout=60_000)
                page.wait_for_timeout(1500)  # let charts and the map finish drawing
                # The template scrolls inside a container, so grow the window to the content.
                height = page.evaluate(
                    "Math.max(...[...document.querySelectorAll('*')].map(e => e.scrollHeight))"
                )
                page.set_viewport_size({"width": 1280, "height": min(max(height, 900), 6000)})
                page.wait_for_timeout(500)
                target = out / f"{name}-{theme}.png"
                page.screenshot(path=str(target), full_page=True)
                written.append(target)
            page.close()
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
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else root / "docs" / "screenshots",
         sys.argv[2] if len(sys.argv) > 2 else None)  # fmt: skip
