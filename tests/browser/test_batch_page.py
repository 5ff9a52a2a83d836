"""The "Score a batch" page in a browser: a real file chooser, the tables, the downloads.

The page opens on the bundled sample; every upload here is another file, so what the page
shows after it can only come from the upload. Expected counts and rows come from scoring
the same bytes with the library in the test process.
"""

from __future__ import annotations

import base64
import csv
import io
from importlib import resources
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from browser.screenshots import open_page
from homevalue import config
from homevalue.ui.batch import Outcome, score_upload, summary_text

SCORE_TIMEOUT = 30_000  # ms: the upload crosses the websocket and is scored in the kernel
XSS = "<img src=x onerror=alert(1)>"


@pytest.fixture
def sent_bytes(page) -> list[int]:
    """The size of every websocket frame the page sends, from before it opens."""
    sizes: list[int] = []
    page.on("websocket", lambda ws: ws.on("framesent", lambda data: sizes.append(len(data))))
    return sizes


@pytest.fixture
def batch_page(page, server, sent_bytes) -> Page:
    open_page(page, server.url, "score_a_batch")
    return page


@pytest.fixture(scope="module")
def sample_rows() -> list[dict]:
    text = resources.files("homevalue.data").joinpath("new_listings.csv").read_text("utf-8")
    return list(csv.DictReader(io.StringIO(text)))


def write_csv(path: Path, rows: list[dict]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.DictWriter(out, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def upload(page: Page, path: Path) -> None:
    """Pick the file as a viewer does: the upload button opens the file chooser."""
    with page.expect_file_chooser() as chooser:
        page.locator(".widget-upload").click()
    chooser.value.set_files(path)


def table_rows(table) -> list[list[str]]:
    return table.locator("tbody tr").evaluate_all(
        "rows => rows.map(r => [...r.cells].map(c => c.textContent))"
    )


def dollars(cells: list[str]) -> list[int]:
    """$139,331 -> 139331: the table's prices as the file holds them."""
    return [int(c.replace("$", "").replace(",", "")) for c in cells]


def column(table, name: str) -> list[str]:
    headers = table.locator("thead th").all_inner_texts()
    return [row[headers.index(name)] for row in table_rows(table)]


def link_csv(page: Page, kind: str) -> tuple[str, bytes]:
    """The download attribute and the decoded data of the "scored"/"rejected" link."""
    link = page.locator(f"a.hv-download[download$='.{kind}.csv']")
    href = link.get_attribute("href")
    assert href.startswith("data:text/csv;base64,"), href[:40]
    return link.get_attribute("download"), base64.b64decode(href.split(",", 1)[1])


def expected_outcome(path: Path, model) -> Outcome:
    """What the page should show for the file: the library's scoring of the same bytes."""
    return score_upload(path.name, path.read_bytes(), model=model)


def shows_summary(page: Page, outcome: Outcome) -> None:
    """Wait for the validation summary of this outcome (name, rows, scored, rejected), then
    for its download link, which the page sets last: every panel shows this file by then."""
    summary = page.get_by_text(summary_text(outcome), exact=True)
    expect(summary).to_be_visible(timeout=SCORE_TIMEOUT)
    stem = Path(outcome.name).stem
    expect(page.locator(f'a[download="{stem}.scored.csv"]')).to_have_count(1)


def rejected_table(page: Page):
    return page.locator("table.hv-table", has=page.locator("caption", has_text="Rejected"))


def test_an_upload_shows_counts_rejections_results_and_downloads(
    batch_page, model, sample_rows, tmp_path
):
    page = batch_page
    path = write_csv(tmp_path / "listings_part.csv", sample_rows[:30])
    outcome = expected_outcome(path, model)
    scored, rejected_rows = len(outcome.scored), outcome.rejected["row"].nunique()
    assert scored and rejected_rows and scored + rejected_rows == 30, "the file needs both"
    upload(page, path)

    shows_summary(page, outcome)
    counts = f"listings_part.csv: 30 rows, {scored} scored, {rejected_rows} rejected"
    expect(page.locator(".hv-notice", has_text=counts)).to_have_count(1)
    rejected = rejected_table(page)
    reasons = outcome.rejected[["row", "field", "value", "reason"]]
    assert table_rows(rejected) == reasons.to_numpy(str).tolist()
    results = page.locator("table.hv-rows")
    expect(results.locator("caption")).to_have_text(f"{scored} priced houses")
    headers = results.locator("thead th").all_inner_texts()
    assert headers[:3] == ["Predicted price", "Low (80% range)", "High (80% range)"]
    prices = dollars(column(results, "Predicted price"))
    assert prices == sorted(outcome.prices.astype(int), reverse=True)  # highest first
    first_cell = results.locator("tbody tr").first.locator("td").first
    assert first_cell.bounding_box()["x"] < page.viewport_size["width"] / 2  # on screen

    name, data = link_csv(page, "scored")
    assert (name, data) == ("listings_part.scored.csv", outcome.scored_csv)
    assert len(data.decode().splitlines()) == scored + 1  # a header and every priced house
    assert link_csv(page, "rejected") == ("listings_part.rejected.csv", outcome.rejected_csv)

    # the upload is in the job's history, as a page upload; the page has no output to open
    history = page.locator("table.hv-table", has=page.locator("th", has_text="Started (UTC)"))
    upload_row = history.locator("tbody tr").first
    expect(upload_row).to_contain_text("listings_part.csv")
    assert table_rows(history)[0][1:6] == [
        "listings_part.csv",
        "page upload",
        "ok",
        str(scored),
        str(rejected_rows),
    ]
    expect(page.get_by_role("button", name="Open the latest output")).to_be_disabled()

    page.get_by_label("Sort by").select_option("Gr_Liv_Area")
    page.get_by_role("button", name="Lowest first").click()
    areas = sorted(outcome.scored["Gr_Liv_Area"].astype(int))
    area_cell = results.locator("thead th").all_inner_texts().index("Gr_Liv_Area")
    expect(results.locator("tbody tr").first.locator("td").nth(area_cell)).to_have_text(
        str(areas[0])
    )
    assert [int(a) for a in column(results, "Gr_Liv_Area")] == areas


def test_markup_in_an_upload_is_shown_as_text_and_never_run(
    batch_page, problems, model, sample_rows, tmp_path
):
    """A viewer's file is untrusted: its name and cells reach the page as text only."""
    page = batch_page
    good = {**sample_rows[0], "listing_id": XSS, "note": XSS}
    bad = {**sample_rows[1], "Neighborhood": XSS}
    path = write_csv(tmp_path / f"{XSS}.csv", [good, bad])
    outcome = expected_outcome(path, model)
    upload(page, path)

    shows_summary(page, outcome)
    rejected = rejected_table(page)
    assert [row[2] for row in table_rows(rejected)] == [XSS]
    results = page.locator("table.hv-rows")
    expect(results.locator("caption")).to_have_text("1 priced house")  # this file's table
    assert column(results, "listing_id") == [XSS] and column(results, "note") == [XSS]
    assert link_csv(page, "scored")[0] == f"{XSS}.scored.csv"
    page.wait_for_load_state("networkidle")  # an injected image would have failed by now
    assert page.locator("img[onerror], [onerror]").count() == 0, "markup became elements"
    assert problems.dialogs == [], "the upload ran a script"


def refused_before_sending(page: Page, sent_bytes: list[int], path: Path, message: str) -> None:
    """Pick the file: the template's guard shows `message` and nothing goes to the kernel
    (no websocket frame at all while the page settles; the file's bytes would be one)."""
    summary = page.locator(".hv-ok, .hv-notice").first.inner_text()
    page.wait_for_timeout(500)  # the page's own start-up traffic is over
    before = len(sent_bytes)
    upload(page, path)
    expect(page.locator(".hv-upload-error")).to_contain_text(message)
    page.wait_for_timeout(2000)  # room for a read and a send that should not happen
    assert sent_bytes[before:] == [], f"the page sent frames of {sent_bytes[before:]} bytes"
    assert page.locator(".hv-ok, .hv-notice").first.inner_text() == summary


def test_a_file_that_is_not_a_csv_is_refused_in_the_browser(batch_page, sent_bytes, tmp_path):
    """The template's guard stops it before it is sent; the sample's results stay."""
    page = batch_page
    path = tmp_path / "listings.xlsx"
    path.write_bytes(b"PK\x03\x04 not a csv")
    refused_before_sending(page, sent_bytes, path, "“listings.xlsx” is not a CSV file")
    error = page.locator(".hv-upload-error")

    # a newer result (the sample again, scored anew) takes the old message away
    old_links = page.locator("a.hv-download").element_handles()
    page.get_by_role("button", name="Use the sample listings").click()
    expect(error).to_have_count(0, timeout=SCORE_TIMEOUT)
    assert all(not link.evaluate("e => e.isConnected") for link in old_links)  # new links


def test_a_file_over_the_limit_is_refused_in_the_browser(batch_page, sent_bytes, tmp_path):
    """Over the upload limit (config.UPLOAD_LIMIT_BYTES) by one byte: the viewer is told
    why and what to do, and not one byte of it crosses the websocket."""
    path = tmp_path / "listings.csv"
    with path.open("wb") as big:
        big.truncate(config.UPLOAD_LIMIT_BYTES + 1)  # sparse: no 50 MB written to disk
    limit_mb = config.UPLOAD_LIMIT_BYTES // 2**20
    refused_before_sending(
        batch_page, sent_bytes, path, f"“listings.csv” is {limit_mb} MB; the limit is {limit_mb} MB"
    )
    expect(batch_page.locator(".hv-upload-error")).to_contain_text("Split it into smaller files")


def test_a_download_link_saves_its_file(batch_page, tmp_path):
    """A click saves the file the link holds (homevalue.js turns the data: URL into a Blob):
    nothing in the page's Content-Security-Policy stands in the way."""
    page = batch_page
    name, data = link_csv(page, "scored")
    with page.expect_download() as download:
        page.locator(f"a.hv-download[download='{name}']").click()
    saved = tmp_path / "saved.csv"
    download.value.save_as(saved)
    assert download.value.suggested_filename == name
    assert saved.read_bytes() == data
