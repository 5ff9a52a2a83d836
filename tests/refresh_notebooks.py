"""Re-run the pages in notebooks/ and store their outputs the way nbval compares them.

`make notebooks` runs this after a change that alters what a page shows (nbval then fails
until it is run and the new outputs are reviewed with `nbdiff`). What is stored is only
what is deterministic: each panel's text summary. Widget views (random model ids) and
widget state are dropped (homevalue.notebook_files), so re-running an unchanged page leaves
the files unchanged. Every code cell is run, in order, so the stored outputs are fresh in the
sense tests/notebook_freshness.py checks.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from homevalue.notebook_files import strip_widget_state

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def refresh(path: Path) -> None:
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(
        notebook,
        timeout=300,
        store_widget_state=False,
        resources={"metadata": {"path": str(path.parent)}},
    ).execute()
    strip_widget_state(notebook)
    for index, cell in enumerate(notebook.cells):
        cell.id = f"cell-{index}"
        cell.metadata.pop("execution", None)
    nbformat.write(notebook, path)


if __name__ == "__main__":
    for name in sys.argv[1:] or sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")):
        refresh(NOTEBOOKS / name)
        print(f"refreshed notebooks/{name}")
