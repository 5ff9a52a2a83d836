"""Re-run the pages in notebooks/ and store their outputs the way nbval compares them.

`make notebooks` runs this after a change that alters what a page shows (nbval then fails
until it is run and the new outputs are reviewed with `nbdiff`). What is stored is only
what is deterministic: each panel's text summary. Widget views (random model ids) and
widget state are dropped, so re-running an unchanged page leaves the files unchanged.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def refresh(path: Path) -> None:
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(notebook, timeout=300, store_widget_state=False,
                   resources={"metadata": {"path": str(path.parent)}}).execute()  # fmt: skip
    notebook.metadata.pop("widgets", None)
    for index, cell in enumerate(notebook.cells):
        cell.id = f"cell-{index}"
        cell.metadata.pop("execution", None)
        for output in cell.get("outputs", []):
            output.get("data", {}).pop(WIDGET_VIEW, None)
    nbformat.write(notebook, path)


if __name__ == "__main__":
    for name in sys.argv[1:] or sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")):
        refresh(NOTEBOOKS / name)
        print(f"refreshed notebooks/{name}")
