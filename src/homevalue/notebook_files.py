"""What a stored page notebook keeps: its cells and their text outputs, never widget state.

JupyterLab (and its "Render with Voilà" button, which saves the notebook first) writes the
widgets a notebook displayed into the file: an `application/vnd.jupyter.widget-view+json`
output for each, whose model id is new at every run, and, with the widget manager's
`saveState` on, the whole widget state under `metadata.widgets`. Neither means anything once
the kernel has gone, and together they turned re-running an unchanged page into a 15-line
diff. What nbval compares, and what a reviewer reads, is each panel's text summary.

`strip_widget_state` removes both: `make notebooks` (tests/refresh_notebooks.py) calls it
before writing, and `make lab` has Jupyter's contents manager call it before every save
(`pre_save_hook`, deploy/jupyterlab/jupyter_server_config.json).
"""

from __future__ import annotations

from typing import Any

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"

__all__ = ["WIDGET_VIEW", "pre_save_hook", "strip_widget_state"]


def strip_widget_state(notebook: dict[str, Any]) -> int:
    """Remove widget state and widget views from a notebook (its JSON, changed in place).

    An output left with nothing but the widget view goes; one with a text form keeps it.
    Returns how many things were removed (0: the notebook was already clean).
    """
    removed = int(notebook.get("metadata", {}).pop("widgets", None) is not None)
    for cell in notebook.get("cells", []):
        outputs = cell.get("outputs")
        if not outputs:
            continue
        kept = []
        for output in outputs:
            data = output.get("data")
            if isinstance(data, dict) and WIDGET_VIEW in data:
                del data[WIDGET_VIEW]
                removed += 1
                if not data:
                    continue
            kept.append(output)
        cell["outputs"] = kept
    return removed


def pre_save_hook(model: dict[str, Any], **_context: Any) -> None:
    """jupyter_server's `ContentsManager.pre_save_hook`: strip a notebook before it is written.

    Called with the model the browser sent (`type`, `content`, ...) and the path; anything
    that is not a notebook is left alone.
    """
    content = model.get("content")
    if model.get("type") == "notebook" and isinstance(content, dict):
        strip_widget_state(content)
