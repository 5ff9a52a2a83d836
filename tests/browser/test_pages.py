"""Every page, light and dark, as a browser shows it: built, clean, and screenshotted.

The screenshots (test-artifacts/screenshots/{page}-{theme}.png) are for review; they are
taken by the same code as `make screenshots`.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from voila_server import NOTEBOOKS, PROJ_ROOT, code_statements

from browser.screenshots import PAGES, THEMES, open_page, shoot

SCREENSHOTS = PROJ_ROOT / "test-artifacts" / "screenshots"
TRACEBACK = re.compile(r"Traceback \(most recent call last\)|\b[A-Z]\w*(?:Error|Exception): ")
BUILD_FAILED = ("This page could not be built.", "Execution error", "ExecutionError")


def luminance(css_colour: str) -> float:
    """0 (black) to 1 (white) for an `rgb(...)`/`rgba(...)` colour."""
    red, green, blue = (int(v) for v in re.findall(r"\d+", css_colour)[:3])
    return (0.2126 * red + 0.7152 * green + 0.0722 * blue) / 255


@pytest.mark.parametrize("theme", THEMES)
@pytest.mark.parametrize("name", PAGES)
def test_page_is_built_clean_and_screenshotted(page, problems, server, name, theme):
    """No traceback, no notebook code, no console error, the theme applied; a screenshot."""
    open_page(page, server.url, name, theme)
    html, text = page.content(), page.inner_text("body")
    error = TRACEBACK.search(text) or re.search(r"Traceback", html)
    assert error is None, f"the page shows a Python error: {error[0]!r}"
    assert not [m for m in BUILD_FAILED if m in text], "a cell failed while the page was built"
    if name != "landing":
        notebook = NOTEBOOKS / Path(PAGES[name][0]).name
        statements = code_statements(notebook)
        assert statements, f"{notebook.name} has no code to look for"
        leaked = [line for line in statements if line in text or line in html]
        assert not leaked, f"the page shows the notebook's code: {leaked}"
    background = page.evaluate("() => getComputedStyle(document.body).backgroundColor")
    dark = luminance(background) < 0.3
    assert dark == (theme == "dark"), f"{theme} theme, but the background is {background}"
    shot = shoot(page, SCREENSHOTS, name, theme, settle_ms=600)
    assert shot.stat().st_size > 10_000, f"{shot} is (nearly) empty"
    found = problems.take()
    assert not found, "\n".join(found)
