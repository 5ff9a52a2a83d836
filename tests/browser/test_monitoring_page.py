"""The Monitoring page in a browser, over a history with runs: the drift grid worst first, the
runs, both charts drawn, and a new period chosen from the menu.

The runs are scored here with the library and recorded in the test server's history (as
`homevalue batch score` records them); what the page should show is recomputed from them.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import pytest
from playwright.sync_api import Page, expect

from browser.screenshots import open_page
from homevalue import config
from homevalue.batch import score_file
from homevalue.drift import drift, reference_of
from homevalue.inbox import BatchDirs, record_upload


@pytest.fixture(scope="module")
def recorded(server, model, tmp_path_factory) -> list:
    """Two runs in the server's history: one like training, one with living areas x 1.6."""
    folder = tmp_path_factory.mktemp("monitoring")
    sales = pd.read_csv(model.path / config.REFERENCE_SALES)
    history = BatchDirs(server.inbox).history
    results = []
    for name, factor, seed in (("like-training.csv", 1.0, 11), ("bigger-houses.csv", 1.6, 12)):
        frame = sales.sample(600, random_state=seed).drop(columns=["Sale_ID", "Sale_Price"])
        frame["Gr_Liv_Area"] = (frame["Gr_Liv_Area"] * factor).round().clip(upper=9_999)
        source = folder / name
        frame.to_csv(source, index=False)
        result = score_file(source, folder / "out", model=model, progress=False)
        record_upload(
            history,
            file=name,
            sha256=name,
            status="ok",
            source="cli",
            started_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            rows_scored=result.rows_scored,
            rows_rejected=result.rows_rejected,
            profile=result.profile,
            card=model.card,
        )
        results.append(result)
    return results


@pytest.fixture
def monitoring_page(page, server, recorded) -> Page:
    open_page(page, server.url, "monitoring")
    return page


def test_the_drift_grid_leads_with_the_shifted_input(monitoring_page, recorded, model):
    page = monitoring_page
    reference = reference_of(model.card)
    grid = page.locator("table.hv-drift")
    expect(grid.locator("tbody tr")).to_have_count(len(reference.names))
    expect(grid.locator("tbody tr").first.locator("th")).to_have_text("Living area")
    expect(grid.locator("tbody tr").first).to_contain_text("act")
    # the latest run's column holds that run's own PSI
    shifted = drift(reference, recorded[1].profile).psi["Gr_Liv_Area"]
    expect(grid.locator("tbody tr").first).to_contain_text(f"{shifted:.3f}")


def test_the_runs_and_both_charts_are_drawn(monitoring_page, recorded, model):
    page = monitoring_page
    runs = page.locator("table.hv-table", has=page.locator("caption", has_text="Latest runs"))
    expect(runs).to_contain_text("like-training.csv")
    expect(runs).to_contain_text("bigger-houses.csv")
    expect(runs).to_contain_text("command line")
    volume, prices = page.locator(".bqplot").all()
    expect(prices.locator("svg rect.bar")).to_have_count(reference_of(model.card).price.bins)
    for chart in (volume, prices):  # drawn with a height (a scale without a domain draws none)
        expect(chart.locator("svg rect.bar").first).to_be_attached()
        heights = chart.locator("svg rect.bar").evaluate_all(
            "rects => rects.map(r => r.getBBox().height)"
        )
        assert sum(heights) > 0 and min(heights) >= 0, heights
    line = prices.locator("svg path.line").first.get_attribute("d")  # training's shares
    assert line and "NaN" not in line


def test_choosing_a_period_reads_the_history_again(monitoring_page):
    page = monitoring_page
    page.get_by_label("Period").select_option(label="All runs")
    expect(page.locator("table.hv-drift")).to_be_visible()
    page.get_by_role("button", name="Refresh").click()
    expect(page.locator("table.hv-drift tbody tr").first.locator("th")).to_have_text("Living area")
