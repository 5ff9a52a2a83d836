"""Changing a copy of the model folder as training would have written it: the card re-pinned
and the hashes it holds updated, so a test reaches the check it is about rather than the
pin's or a hash's."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

from homevalue import config
from homevalue.model import write_card_pin


def edit_card(folder: Path, change: Callable[[dict], object], *, repin: bool = True) -> None:
    """Change the card; re-pin it as training would (unless `repin` is False)."""
    path = folder / config.CARD_JSON
    card = json.loads(path.read_text())
    change(card)
    path.write_text(json.dumps(card, indent=2))
    if repin:
        write_card_pin(folder)


def write_table(folder: Path, name: str, data: bytes) -> None:
    """`data` as one of the folder's tables (reference sales, holdout) whose hash the
    re-pinned card records: what a broken training run would leave."""
    (folder / name).write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    edit_card(folder, lambda card: card["tables_sha256"].update({name: digest}))
