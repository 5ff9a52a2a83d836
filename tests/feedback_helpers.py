"""Reading the feedback store as the tests check it: every row, oldest first."""

from __future__ import annotations

import sqlite3
from pathlib import Path


def stored_reports(path: Path) -> list[dict]:
    """Every report kept in the store at `path` (none if it was never created)."""
    if not path.exists():
        return []
    with sqlite3.connect(path) as db:
        db.row_factory = sqlite3.Row
        return [dict(r) for r in db.execute("SELECT * FROM feedback ORDER BY id")]
