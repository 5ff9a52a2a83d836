"""The dashboard pages: widgets built from the model card and wired to `homevalue`.

Each notebook in notebooks/ builds one page here and displays its panels cell by cell, so
the notebooks stay a screen long and everything they do is unit-tested in Python. Pages are
imported on first use: a kernel serving the report never imports the pricing page's code.
"""

from __future__ import annotations

import importlib

from homevalue.ui.page import Panel, build, request_query

_PAGES = {
    "BatchPage": "homevalue.ui.batch",
    "MonitoringPage": "homevalue.ui.monitoring",
    "PricePage": "homevalue.ui.price",
    "ReportPage": "homevalue.ui.report",
}

__all__ = [
    "BatchPage",
    "MonitoringPage",
    "Panel",
    "PricePage",
    "ReportPage",
    "build",
    "request_query",
]


def __getattr__(name: str):
    if name in _PAGES:
        return getattr(importlib.import_module(_PAGES[name]), name)
    raise AttributeError(f"module 'homevalue.ui' has no attribute {name!r}")
