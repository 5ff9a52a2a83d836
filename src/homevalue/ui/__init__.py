"""The dashboard pages: widgets built from the model card and wired to `homevalue`.

Each notebook in notebooks/ builds one page here and displays its panels cell by cell, so
the notebooks stay a screen long and everything they do is unit-tested in Python.
"""

from homevalue.ui.page import Panel, build, request_query
from homevalue.ui.batch import BatchPage
from homevalue.ui.price import PricePage

__all__ = ["BatchPage", "Panel", "PricePage", "build", "request_query"]
