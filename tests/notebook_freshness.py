"""Is every output a page notebook stores fresh, and compared by nbval? The gaps nbval leaves.

nbval re-runs each notebook and compares the outputs, but not all of them: a cell stored
without ever being run (`execution_count` null) is run and never compared, so a new cell
whose output was never stored passes; so does a cell that opts out (`# NBVAL_SKIP`,
`# NBVAL_IGNORE_OUTPUT`, the `nbval-*` tags); images are not compared (without `--nbdime`);
and a bare widget's text (`HTML(value=...)`) is compared only as `HTML(...)`, since
tests/nbval_sanitize.cfg masks widget reprs, so whatever it showed may be stale. Outputs
stored from cells run out of order, or twice, are not what running the notebook gives.

`problems(notebook)` lists each such gap in words that end in the fix; tests/
test_notebook_freshness.py runs it on notebooks/ in `make test`. With none left, nbval's
comparison covers every output, so "fresh" is: nothing here, and nbval passes. The fix is
always the same: `make notebooks` (tests/refresh_notebooks.py) runs every page and stores
its outputs this way.
"""

from __future__ import annotations

import configparser
import json
import re
import sys
from pathlib import Path
from typing import Any

from homevalue.notebook_files import WIDGET_VIEW

PROJ_ROOT = Path(__file__).resolve().parents[1]
SANITIZE = PROJ_ROOT / "tests" / "nbval_sanitize.cfg"
FIX = "run `make notebooks` to re-run the pages and store their outputs"
# What nbval compares of an output's data (it skips images and widget views).
COMPARED = {"text/plain", "text/html", "text/markdown", "text/latex", "application/json"}
OPT_OUTS = re.compile(r"^\s*#\s*(NBVAL_SKIP|NBVAL_IGNORE_OUTPUT|NBVAL_RAISES_EXCEPTION)\b", re.M)
OPT_OUT_TAGS = {"nbval-skip", "nbval-ignore-output", "raises-exception"}


def widget_repr_pattern(path: Path = SANITIZE) -> re.Pattern:
    """The sanitizer that masks bare widget reprs (its `[widget_reprs]` section)."""
    sections = configparser.ConfigParser(interpolation=None)
    sections.read(path, encoding="utf-8")
    return re.compile(sections["widget_reprs"]["regex"])


def _first_line(cell: dict[str, Any]) -> str:
    source = "".join(cell.get("source", ""))
    line = next((s.strip() for s in source.splitlines() if s.strip()), "")
    return line if len(line) <= 60 else line[:57] + "..."


def problems(notebook: dict[str, Any], widget_repr: re.Pattern | None = None) -> list[str]:
    """Each way the notebook's stored outputs may be missing or stale, or escape nbval."""
    widget_repr = widget_repr or widget_repr_pattern()
    found = []
    if "widgets" in notebook.get("metadata", {}):
        found.append("the notebook stores widget state (metadata.widgets)")
    counts = []
    for number, cell in enumerate(notebook.get("cells", []), start=1):
        if cell.get("cell_type") != "code" or not "".join(cell.get("source", "")).strip():
            continue
        where = f"cell {number} ({_first_line(cell)!r})"
        if cell.get("execution_count") is None:
            found.append(f"{where} was never run: its output is not stored")
        else:
            counts.append(cell["execution_count"])
        found += [f"{where} {p}" for p in _cell_problems(cell, widget_repr)]
    if counts and counts != list(range(1, len(counts) + 1)):
        shown = ", ".join(map(str, counts[:12])) + (", ..." if len(counts) > 12 else "")
        found.append(
            f"the outputs were stored from cells run out of order or more than once "
            f"(execution counts {shown}), not by running the notebook from the top"
        )
    return found


def _cell_problems(cell: dict[str, Any], widget_repr: re.Pattern) -> list[str]:
    found = []
    opt_out = OPT_OUTS.search("".join(cell.get("source", "")))
    tags = OPT_OUT_TAGS & set(cell.get("metadata", {}).get("tags", []))
    if opt_out or tags:
        marker = opt_out[1] if opt_out else sorted(tags)[0]
        found.append(
            f"opts out of nbval's comparison ({marker}): its output is never checked; mask "
            "only what truly varies, in tests/nbval_sanitize.cfg"
        )
    for output in cell.get("outputs", []):
        kind = output.get("output_type")
        if kind == "error":
            found.append(f"stored an error ({output.get('ename', 'an exception')})")
        data = output.get("data", {})
        if WIDGET_VIEW in data:
            found.append("stores a widget view (its model id changes at every run)")
        unchecked = sorted(set(data) - COMPARED - {WIDGET_VIEW})
        if unchecked:
            found.append(
                f"stores {', '.join(unchecked)}, which nbval does not compare: show a panel "
                "whose text summary says what the viewer sees (homevalue.ui.page.Panel)"
            )
        text = "".join(data.get("text/plain", ""))
        if text and widget_repr.search(text):
            found.append(
                f"shows a bare widget ({text.splitlines()[0][:40]}...), whose text nbval "
                "compares only as a masked repr: wrap it in a Panel with a summary"
            )
    return found


def check(path: Path) -> list[str]:
    """`problems` of a notebook file, each naming the file and ending in the fix."""
    notebook = json.loads(path.read_text(encoding="utf-8"))
    return [f"{path.name}: {problem}; {FIX}" for problem in problems(notebook)]


if __name__ == "__main__":
    paths = [Path(a) for a in sys.argv[1:]] or sorted((PROJ_ROOT / "notebooks").glob("*.ipynb"))
    found = [line for path in paths for line in check(path)]
    print("\n".join(found) or f"{len(paths)} notebooks: outputs fresh and all compared by nbval")
    sys.exit(1 if found else 0)
