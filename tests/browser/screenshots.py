"""Screenshots of every page in light and dark theme, for the README and for review.

Usage: python tests/browser/screenshots.py BASE_URL OUT_DIR
Drives Debian's chromium (never a downloaded browser) with Playwright.
"""

from __future__ import annotations

import sys
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


if __name__ == "__main__":
    for path in take(sys.argv[1], Path(sys.argv[2])):
        print(path)
