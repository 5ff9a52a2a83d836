"""CONTRIBUTING.md's worked example ("Add a panel") still works as printed.

The guide's panel module, its test and its notebook cells are taken from the guide's code
blocks and run here (the panel does not ship in notebooks/), so a change to `on_priced`,
`Priced` or the freshness check that would break the guide fails `make test`.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import sys
from pathlib import Path

import nbformat
import pytest
from notebook_freshness import check

from homevalue.ui import PricePage

PROJ_ROOT = Path(__file__).resolve().parents[1]
GUIDE = PROJ_ROOT / "CONTRIBUTING.md"
PRICE_PAGE = PROJ_ROOT / "notebooks" / "price_a_home.ipynb"
MODULE = "homevalue.ui.price_per_sqft"


def block(language: str, starting: str) -> str:
    """The guide's code block in `language` whose text starts with `starting`."""
    blocks = re.findall(rf"```{language}\n(.*?)```", GUIDE.read_text(encoding="utf-8"), re.S)
    found = [b for b in blocks if b.startswith(starting)]
    assert len(found) == 1, f"CONTRIBUTING.md has {len(found)} {language} blocks {starting!r}"
    return found[0]


@pytest.fixture
def example(tmp_path, monkeypatch):
    """The guide's module, imported under the name the guide gives it."""
    path = tmp_path / "price_per_sqft.py"
    path.write_text(block("python", '"""Price per square foot'), encoding="utf-8")
    spec = importlib.util.spec_from_file_location(MODULE, path)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, MODULE, module)
    spec.loader.exec_module(module)
    return module


def test_the_guides_panel_passes_the_guides_test(example, model, reference):
    namespace: dict = {}
    exec(compile(block("python", '"""The price-per-square-foot panel'), "guide", "exec"), namespace)
    namespace["test_the_panel_follows_each_repricing"](model, reference)


def test_the_guides_cell_shows_the_panel_following_the_page(example, model):
    page = PricePage(model)
    *imports, shown = block("python", "from homevalue.ui.price_per_sqft").strip().splitlines()
    namespace = {"page": page}
    exec("\n".join(imports), namespace)
    panel = eval(shown, namespace)
    assert repr(panel).startswith("Price per square foot: $")
    before = repr(panel)
    page.form.inputs["Gr_Liv_Area"].value = 2500
    assert repr(panel) != before and " per sq ft, " in repr(panel)


def test_the_guides_freshness_message_is_what_the_check_says(tmp_path):
    """Step 4's cells added to a copy of the page, never run: the check fails as quoted."""
    path = tmp_path / PRICE_PAGE.name
    shutil.copy(PRICE_PAGE, path)
    notebook = nbformat.read(path, as_version=4)
    markdown = block("markdown", "## Price per square foot")
    code = block("python", "from homevalue.ui.price_per_sqft").strip()
    last = notebook.cells.pop()
    notebook.cells += [nbformat.v4.new_markdown_cell(markdown), nbformat.v4.new_code_cell(code)]
    notebook.cells.append(last)
    nbformat.write(notebook, path)
    # The guide's cell number is the shipped page's; a page with more cells numbers it later.
    (found,) = check(path)
    quoted = block("text", "price_a_home.ipynb: ").strip()
    number = re.compile(r"cell \d+ ")
    assert number.sub("cell N ", found) == number.sub("cell N ", quoted)
