"""The pages' stored outputs are fresh and all compared by nbval (tests/notebook_freshness.py),
and no notebook keeps widget state (homevalue.notebook_files).

The shipped notebooks are checked as they are; the failure cases on temporary copies.
"""

from __future__ import annotations

import asyncio
import copy
import json
import shutil
from pathlib import Path

import nbformat
import pytest
from notebook_freshness import FIX, check, problems, widget_repr_pattern
from refresh_notebooks import refresh
from voila_server import write_notebook

from homevalue.notebook_files import WIDGET_VIEW, pre_save_hook, strip_widget_state

PROJ_ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted((PROJ_ROOT / "notebooks").glob("*.ipynb"))
PRICE_PAGE = PROJ_ROOT / "notebooks" / "price_a_home.ipynb"


@pytest.mark.parametrize("path", PAGES, ids=[p.name for p in PAGES])
def test_the_pages_stored_outputs_are_fresh(path):
    assert check(path) == []


@pytest.mark.parametrize("path", PAGES, ids=[p.name for p in PAGES])
def test_no_page_keeps_widget_state(path):
    notebook = json.loads(path.read_text(encoding="utf-8"))
    assert "widgets" not in notebook["metadata"]
    assert strip_widget_state(copy.deepcopy(notebook)) == 0


def price_page() -> dict:
    return json.loads(PRICE_PAGE.read_text(encoding="utf-8"))


def test_a_new_cell_never_run_fails(tmp_path):
    """The case that passed nbval: a cell added after `make notebooks`, its output never stored."""
    path = tmp_path / PRICE_PAGE.name
    shutil.copy(PRICE_PAGE, path)
    assert check(path) == []
    notebook = nbformat.read(path, as_version=4)
    notebook.cells.insert(2, nbformat.v4.new_code_cell("page.last.price / 1000"))
    nbformat.write(notebook, path)
    assert check(path) == [
        f"price_a_home.ipynb: cell 3 ('page.last.price / 1000') was never run: its output is "
        f"not stored; {FIX}"
    ]


def test_outputs_of_cells_run_out_of_order_fail():
    notebook = price_page()
    code = [c for c in notebook["cells"] if c["cell_type"] == "code"]
    code[1]["execution_count"], code[2]["execution_count"] = 3, 2
    counts = ", ".join(str(c["execution_count"]) for c in code)
    assert counts.startswith("1, 3, 2, 4")
    assert problems(notebook) == [
        "the outputs were stored from cells run out of order or more than once "
        f"(execution counts {counts}), not by running the notebook from the top"
    ]


@pytest.mark.parametrize("how", ["comment", "tag"])
def test_a_cell_that_opts_out_of_nbval_fails(how):
    notebook = price_page()
    cell = notebook["cells"][3]  # page.drivers
    if how == "comment":
        cell["source"] = "# NBVAL_IGNORE_OUTPUT\npage.drivers"
    else:
        cell["metadata"]["tags"] = ["nbval-skip"]
    (found,) = problems(notebook)
    assert found.startswith("cell 4 (") and "opts out of nbval's comparison" in found


def test_outputs_nbval_does_not_compare_fail():
    """An image, and a bare widget whose text the sanitizer masks: both could go stale."""
    notebook = price_page()
    outputs = notebook["cells"][3]["outputs"]
    outputs[0]["data"]["image/png"] = "iVBORw0KGgo="
    outputs.append(
        {
            "output_type": "display_data",
            "metadata": {},
            "data": {"text/plain": "HTML(value='$212,000 a year ago')"},
        }
    )
    found = problems(notebook)
    assert len(found) == 2
    assert "stores image/png, which nbval does not compare" in found[0]
    assert "shows a bare widget (HTML(value='$212,000 a year ago')...)" in found[1]


def test_the_bare_widget_rule_is_the_sanitizers_own_pattern():
    assert widget_repr_pattern().search("Dropdown(options=('a', 'b'), value='a')")
    assert not widget_repr_pattern().search("Why this price: the typical house ...")


def widget_laden(notebook: dict) -> dict:
    """The notebook as JupyterLab saves it after a run: widget views and widget state."""
    laden = copy.deepcopy(notebook)
    laden["metadata"]["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}}}
    for cell in laden["cells"]:
        for output in cell.get("outputs", []):
            output["data"][WIDGET_VIEW] = {"model_id": "5f0c", "version_major": 2}
    return laden


def test_widget_state_fails_and_stripping_restores_the_stored_notebook():
    clean = price_page()
    laden = widget_laden(clean)
    found = problems(laden)
    assert found[0] == "the notebook stores widget state (metadata.widgets)"
    assert "stores a widget view (its model id changes at every run)" in found[1]
    assert strip_widget_state(laden) == 1 + sum(len(c.get("outputs", [])) for c in clean["cells"])
    assert laden == clean


def test_an_output_that_was_only_a_widget_view_goes_entirely():
    notebook = {
        "metadata": {},
        "cells": [
            {
                "cell_type": "code",
                "outputs": [
                    {"output_type": "display_data", "data": {WIDGET_VIEW: {"model_id": "1"}}},
                    {"output_type": "stream", "name": "stdout", "text": "kept\n"},
                ],
            }
        ],
    }
    assert strip_widget_state(notebook) == 1
    assert notebook["cells"][0]["outputs"] == [
        {"output_type": "stream", "name": "stdout", "text": "kept\n"}
    ]


def test_jupyters_contents_manager_saves_notebooks_without_widget_state(tmp_path):
    """What `make lab` configures: a save from the browser (or "Render with Voilà") goes
    through jupyter_server's contents manager, whose pre-save hook strips the widgets."""
    from jupyter_server.services.contents.largefilemanager import AsyncLargeFileManager

    manager = AsyncLargeFileManager(
        root_dir=str(tmp_path), pre_save_hook="homevalue.notebook_files.pre_save_hook"
    )
    assert manager.pre_save_hook is pre_save_hook
    model = {"type": "notebook", "format": "json", "content": widget_laden(price_page())}
    asyncio.run(manager.save(model, "page.ipynb"))
    saved = json.loads((tmp_path / "page.ipynb").read_text(encoding="utf-8"))
    assert "widgets" not in saved["metadata"]
    assert WIDGET_VIEW not in json.dumps(saved)
    assert [c["outputs"] for c in saved["cells"] if "outputs" in c] == [
        c["outputs"] for c in price_page()["cells"] if "outputs" in c
    ]


def test_make_notebooks_makes_a_stale_notebook_fresh(tmp_path):
    """A small page with a cell never run: what `make notebooks` does to a page makes it pass."""
    path = write_notebook(tmp_path / "small.ipynb", ["x = 20", "x + 1"])
    refresh(path)
    assert check(path) == []
    notebook = nbformat.read(path, as_version=4)
    notebook.cells.insert(1, nbformat.v4.new_code_cell("x = x * 2"))
    nbformat.write(notebook, path)
    assert check(path) == [
        f"small.ipynb: cell 2 ('x = x * 2') was never run: its output is not stored; {FIX}"
    ]
    refresh(path)
    assert check(path) == []
    stored = nbformat.read(path, as_version=4)
    assert [c.execution_count for c in stored.cells] == [1, 2, 3]
    assert stored.cells[2].outputs[0].data["text/plain"] == "41"
