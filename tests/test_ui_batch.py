"""The "Score a batch" page without a browser: feed it files, read what it shows."""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime

import ipywidgets as widgets
import pandas as pd
import pytest

from homevalue import config
from homevalue.batch import score_file
from homevalue.errors import BatchFileError
from homevalue.inbox import run_history, run_inbox
from homevalue.predict import PRICE_COLUMNS
from homevalue.ui import BatchPage, render
from homevalue.ui.batch import check_upload, sample_listings, sort_rows, utc_time
from homevalue.ui.page import FRIENDLY

XSS = "<img src=x onerror=alert(1)>"


@pytest.fixture
def page(model, tmp_path) -> BatchPage:
    return BatchPage(model, inbox=tmp_path / "batch" / "inbox")


def csv_bytes(frame: pd.DataFrame) -> bytes:
    return frame.to_csv(index=False).encode()


def upload(page: BatchPage, name: str, content: bytes) -> None:
    """What the browser's FileUpload sends when a viewer picks a file."""
    item = {
        "name": name,
        "type": "text/csv",
        "size": len(content),
        "content": memoryview(content),
        "last_modified": datetime.now(UTC),
    }
    page.upload.value = (item,)


def downloaded(page: BatchPage, which: str) -> bytes:
    links = re.findall(
        r'download="([^"]+)" href="data:text/csv;base64,([^"]*)"', page.downloads_html.value
    )
    return next(base64.b64decode(data) for name, data in links if which in name)


def test_the_page_opens_on_the_sample_with_its_bad_rows(page, model, tmp_path):
    name, content = sample_listings()
    (tmp_path / name).write_bytes(content)
    expected = score_file(tmp_path / name, tmp_path / "out", model=model)
    assert expected.rows_rejected > 0 and expected.rows_scored > 0
    assert len(page.outcome.scored) == expected.rows_scored
    assert (
        f"{expected.rows_scored} scored, {expected.rows_rejected} rejected"
        in page.summary_html.value
    )
    assert page.rejected_html.value.count("<tr>") == len(page.outcome.rejected) + 1
    # the download is byte for byte what the batch job writes
    assert downloaded(page, "scored") == expected.scored_path.read_bytes()
    assert downloaded(page, "rejected") == expected.rejected_path.read_bytes()


def test_an_upload_is_scored_and_every_row_accounted_for(page, reference):
    houses = reference.head(30).drop(columns=["Sale_Price"]).astype(object)
    houses.loc[4, "Gr_Liv_Area"] = "huge"
    houses.loc[9, "Year_Built"] = ""
    upload(page, "mine.csv", csv_bytes(houses))
    assert "mine.csv: 30 rows, 28 scored, 2 rejected" in page.summary_html.value
    assert (
        "Gr_Liv_Area" in page.rejected_html.value and "must be a number" in page.rejected_html.value
    )
    assert "Year_Built" in page.rejected_html.value and "is required" in page.rejected_html.value
    assert len(page.houses_layer.data["features"]) == 28
    assert page.progress.layout.visibility == "hidden"
    assert page.upload.value == ()  # the bytes are not kept in the kernel


def test_a_refused_category_lists_its_values_once_under_the_table(page, reference, model):
    houses = reference.head(12).drop(columns=["Sale_Price"]).astype(object)
    houses["Neighborhood"] = houses["Neighborhood"].map(str.lower)  # labels/codes, any case
    for row in (2, 5, 8):
        houses.loc[row, "Neighborhood"] = "Nort Ames"
    upload(page, "mine.csv", csv_bytes(houses))
    assert "mine.csv: 12 rows, 9 scored, 3 rejected" in page.summary_html.value
    shown = page.rejected_html.value
    assert shown.count("did you mean &quot;North Ames&quot; (North_Ames)") == 3
    neighbourhood = model.schema.by_name["Neighborhood"]
    assert shown.count("Bloomington_Heights") == 1  # the full list, once
    assert shown.count("hv-allowed") == 1 and all(
        render.esc(label) in shown for label in neighbourhood.labels
    )


def test_the_histogram_counts_the_prices_with_round_ticks(page):
    prices = page.outcome.scored["predicted_price"]
    bars, (x_axis, y_axis) = page.histogram.marks[0], page.histogram.axes
    assert bars.y.sum() == len(prices)
    # whole houses on the count axis, up to a tick at or above the tallest bar
    assert all(t == int(t) for t in y_axis.tick_values)
    assert bars.y.max() <= y_axis.tick_values[-1] == y_axis.scale.max
    # round prices, inside the bars' span
    step = x_axis.tick_values[1] - x_axis.tick_values[0]
    assert step in (25_000, 50_000, 100_000) and all(t % step == 0 for t in x_axis.tick_values)
    assert bars.x.min() <= x_axis.tick_values[0] and x_axis.tick_values[-1] <= bars.x.max()


def test_uploaded_text_is_escaped_everywhere_it_is_shown(page, reference):
    houses = reference.head(3).drop(columns=["Sale_Price"]).astype(object)
    houses["note"] = XSS
    houses.loc[1, "Neighborhood"] = XSS
    page.score("evil.csv", csv_bytes(houses))
    shown = page.table_html.value + page.rejected_html.value + page.summary_html.value
    assert XSS not in shown
    assert "&lt;img src=x onerror=alert(1)&gt;" in page.table_html.value
    assert "&lt;img src=x onerror=alert(1)&gt;" in page.rejected_html.value


def test_formulas_are_neutralised_in_the_download(page, reference):
    houses = reference.head(2).drop(columns=["Sale_Price"]).astype(object)
    houses["note"] = ['=HYPERLINK("http://x")', "fine"]
    page.score("f.csv", csv_bytes(houses))
    assert b"'=HYPERLINK" in downloaded(page, "scored")


@pytest.mark.parametrize(
    ("name", "size", "message"),
    [
        ("houses.xlsx", 10, "is not a CSV file"),
        ("big.csv", config.UPLOAD_LIMIT_BYTES + 1, "the limit here is 50 MB"),
    ],
)
def test_wrong_type_and_too_large_are_refused_clearly(page, name, size, message):
    with pytest.raises(BatchFileError, match=message):
        check_upload(name, size)
    before = page.outcome
    upload(page, name, b"x" * size)
    assert message in page.status.value and page.outcome is before


def test_a_file_without_required_columns_is_refused_and_the_last_result_stays(page):
    before = page.outcome
    upload(page, "x.csv", b"a,b\n1,2\n")
    assert "lacks required column" in page.status.value
    assert page.outcome is before


def test_sorting_numbers_as_numbers(page):
    frame = pd.DataFrame({"predicted_price": ["900", "10000", "5"], "name": ["b", "c", "a"]})
    assert list(sort_rows(frame, "predicted_price", descending=True)["name"]) == ["c", "b", "a"]
    assert list(sort_rows(frame, "name", descending=False)["name"]) == ["a", "b", "c"]
    page.sort_by.value = "predicted_price"
    for descending, expected in (
        (True, page.outcome.prices.max()),
        (False, page.outcome.prices.min()),
    ):
        page.descending.value = descending
        first_row = page.table_html.value.split("<tbody>")[1].split("</tr>")[0]
        assert first_row.startswith(f'<tr><td class="num">{render.money(expected)}</td>')


def header_row(html: str) -> list[str]:
    return re.findall(r"<th>(.*?)</th>", html.split("</thead>")[0])


def body_rows(html: str) -> list[list[str]]:
    body = html.split("<tbody>")[1]
    return [re.findall(r"<td[^>]*>(.*?)</td>", row) for row in body.split("</tr>")[:-1]]


def test_the_table_leads_with_the_prices_as_money_and_the_download_keeps_its_order(page):
    headers = header_row(page.table_html.value)
    assert headers[:7] == [
        "Predicted price",
        "Low (80% range)",
        "High (80% range)",
        "Flags",
        "Model",
        "Dollars of",
        "Row",
    ]
    scored = page.outcome.scored
    inputs = [c for c in scored.columns if c not in PRICE_COLUMNS and c != "row"]
    assert headers[7:] == inputs
    first = body_rows(page.table_html.value)[0]
    top = page.outcome.prices.max()  # highest first
    row = scored.loc[page.outcome.prices.idxmax()]
    assert first[:3] == [
        render.money(top),
        render.money(float(row["price_low"])),
        render.money(float(row["price_high"])),
    ]
    assert first[3:7] == [row["flags"], row["model_version"], row["dollars_of"], row["row"]]
    # the download keeps the batch job's documented order: the file's columns, then prices
    header = downloaded(page, "scored").decode().splitlines()[0].split(",")
    assert header[-len(PRICE_COLUMNS) :] == PRICE_COLUMNS and header == list(scored.columns)
    # the sort menu lists the columns as the table does
    assert [label for label, _ in page.sort_by.options][:2] == headers[:2]


def run_monday(page: BatchPage, model) -> None:
    inbox = page.dirs.inbox
    inbox.mkdir(parents=True, exist_ok=True)
    (inbox / "monday.csv").write_bytes(sample_listings()[1])
    run_inbox(inbox, model=model, settle_seconds=0)


def test_history_shows_the_batch_jobs_runs_and_opens_the_latest_output(page, model):
    assert "has not run yet" in page.history_html.value
    run_monday(page, model)
    page.show_history()
    assert "monday.csv" in page.history_html.value and ">ok<" in page.history_html.value
    page.score("other.csv", sample_listings()[1])
    page.latest_button.click()
    assert page.outcome.name == "monday.csv"
    # the confirmation is beside the button, not up at the upload
    assert "batch job&#x27;s output for monday.csv (run 1, started " in page.latest_note.value
    assert page.status.value == ""


def test_history_times_are_readable_and_counts_are_whole_numbers(page, model):
    run_monday(page, model)
    (page.dirs.inbox / "broken.csv").write_bytes(b"a,b\n1,2\n")  # failed: no counts
    run_inbox(page.dirs.inbox, model=model, settle_seconds=0)
    page.show_history()
    runs = run_history(page.dirs.history)
    shown = body_rows(page.history_html.value)
    assert header_row(page.history_html.value)[:4] == ["Started (UTC)", "File", "From", "Status"]
    started = datetime.fromisoformat(runs["started_at"].iloc[1].replace("Z", "+00:00"))
    assert shown[1][:6] == [
        started.strftime("%Y-%m-%d %H:%M UTC"),
        "monday.csv",
        "inbox",
        "ok",
        f"{runs['rows_scored'].iloc[1]:.0f}",
        f"{runs['rows_rejected'].iloc[1]:.0f}",
    ]
    assert shown[0][1] == "broken.csv" and shown[0][3:6] == ["failed", "", ""]
    assert utc_time("2026-11-30T23:05:09.123456Z") == "2026-11-30 23:05 UTC"
    assert utc_time(None) == "" and utc_time("not a time") == "not a time"


def test_open_the_latest_output_is_disabled_until_a_run_has_output(page, model):
    assert page.latest_button.disabled
    assert "has its output on disk" in page.latest_button.tooltip
    upload(page, "mine.csv", sample_listings()[1])  # a page upload has no output to open
    assert page.latest_button.disabled
    run_monday(page, model)
    page.refresh_button.click()
    assert not page.latest_button.disabled
    for output in page.dirs.outbox.iterdir():  # the outputs were cleared away
        output.unlink()
    page.refresh_button.click()
    assert page.latest_button.disabled
    page.latest_button.click()  # a page drawn before they went still says why
    assert "No finished CSV run" in page.latest_note.value


def test_page_uploads_are_recorded_in_the_history_with_their_source(page, reference):
    name, content = sample_listings()  # the sample the page opened on is not recorded
    assert run_history(page.dirs.history).empty
    houses = reference.head(10).drop(columns=["Sale_Price"]).astype(object)
    houses.loc[3, "Gr_Liv_Area"] = "huge"
    upload(page, "mine.csv", csv_bytes(houses))
    upload(page, "x.csv", b"a,b\n1,2\n")
    page.sample_button.click()

    runs = run_history(page.dirs.history)
    assert runs[["file", "source", "status"]].values.tolist() == [
        ["x.csv", "page", "failed"],
        ["mine.csv", "page", "ok"],
    ]
    assert runs["rows_scored"].tolist()[1:] == [9] and runs["rows_rejected"].tolist()[1:] == [1]
    assert runs[["rows_scored", "rows_rejected"]].iloc[0].isna().all()
    assert "lacks required column" in runs["error"].iloc[0]
    assert (runs["model_version"] == page.model.version).all()
    assert runs["output"].isna().all()  # the outputs went to the viewer
    shown = body_rows(page.history_html.value)
    assert [row[1:4] for row in shown] == [
        ["x.csv", "page upload", "failed"],
        ["mine.csv", "page upload", "ok"],
    ]


def test_a_history_that_cannot_take_an_upload_leaves_the_viewer_their_result(page, reference):
    page.dirs.history.parent.mkdir(parents=True)
    page.dirs.history.write_bytes(b"this is not a database" * 100)
    houses = reference.head(5).drop(columns=["Sale_Price"]).astype(object)
    upload(page, "mine.csv", csv_bytes(houses))
    assert page.outcome.name == "mine.csv" and page.status.value == ""
    assert page.dirs.history.read_bytes() == b"this is not a database" * 100  # left alone


def test_a_result_that_fails_to_show_leaves_the_previous_one_whole(page, reference, monkeypatch):
    """Summary, table, downloads and messages change together: never one file's downloads
    beside another's table, and no message about an earlier file beside a newer result."""
    houses = reference.head(8).drop(columns=["Sale_Price"]).astype(object)
    upload(page, "first.csv", csv_bytes(houses))
    shown = [w.value for w in (page.summary_html, page.table_html, page.downloads_html)]

    def broken(_frame, _place):
        raise RuntimeError("the map cannot be drawn")

    monkeypatch.setattr("homevalue.ui.batch.map_sample", broken)
    upload(page, "second.csv", csv_bytes(houses.head(4)))
    assert page.status.value == render.notice(FRIENDLY)
    assert page.outcome.name == "first.csv"
    assert [w.value for w in (page.summary_html, page.table_html, page.downloads_html)] == shown

    monkeypatch.undo()
    upload(page, "third.csv", csv_bytes(houses.head(4)))
    assert page.status.value == "" and "third.csv: 4 rows" in page.summary_html.value
    assert 'download="third.scored.csv"' in page.downloads_html.value


def test_an_older_message_goes_when_a_newer_result_is_shown(page, model):
    run_monday(page, model)
    page.refresh_button.click()
    page.latest_button.click()
    assert "monday.csv" in page.latest_note.value
    page.sample_button.click()  # a newer result: the note about monday's output goes
    assert page.latest_note.value == "" and page.outcome.name == "new_listings.csv"
    before = page.downloads_html.value
    page.sample_button.click()  # the same file again is a new result, with new links
    assert page.downloads_html.value != before
    assert page.downloads_html.value.replace('"4"', '"3"') == before


def test_an_unreadable_history_is_reported_not_fatal(model, tmp_path):
    inbox = tmp_path / "batch" / "inbox"
    inbox.parent.mkdir(parents=True)
    (inbox.parent / "history.sqlite").write_bytes(b"this is not a database" * 100)
    page = BatchPage(model, inbox=inbox)
    assert page.history_html.value == render.notice(
        "The batch job's history file could not be read (it is damaged or not a history "
        "file). The next run of the batch job sets it aside and starts a new history."
    )
    assert str(inbox.parent) not in page.history_html.value  # no server paths for viewers
    assert len(page.outcome.scored) > 0  # the rest of the page works
    assert page.latest_button.disabled
    page.latest_button.click()  # a page drawn before the history broke
    assert "history file could not be read" in page.latest_note.value
    assert str(inbox.parent) not in page.latest_note.value


def test_a_wide_upload_is_refused_with_the_limit_and_the_last_result_stays(page, tmp_path):
    from batch_helpers import write_wide_csv

    wide = write_wide_csv(tmp_path / "wide.csv", rows=200, extra_columns=1_000).read_bytes()
    before = page.outcome

    upload(page, "wide.csv", wide)

    assert "wide.csv has 1,020 columns; the limit is 500" in page.status.value
    assert "Traceback" not in page.status.value
    assert page.outcome is before
    assert page.progress.layout.visibility == "hidden"


def test_a_long_cell_in_an_upload_is_refused_with_its_row_and_column(page, reference):
    houses = reference.head(30).drop(columns=["Sale_Price"]).astype(object)
    houses["note"] = ""
    houses.loc[24, "note"] = "=" + "x" * 40_000
    before = page.outcome

    upload(page, "long.csv", csv_bytes(houses))

    assert "long.csv: row 25, column &#x27;note&#x27; holds 40,001 characters" in page.status.value
    assert page.outcome is before


def test_a_full_server_disk_is_a_plain_notice_without_server_paths(page, monkeypatch, tmp_path):
    import tempfile

    from test_batch import FullDisk

    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    monkeypatch.setattr("builtins.open", FullDisk(scratch, room=0).open)
    name, content = sample_listings()
    before = page.outcome

    upload(page, "mine.csv", content)

    assert page.status.value == render.notice(
        "The server cannot store this file to score it just now (its temporary space is full "
        "or cannot be written). Try again later, or tell the site's operator."
    )
    assert page.outcome is before
    assert list(scratch.iterdir()) == []  # the private folder is gone, nothing left behind


def test_the_results_say_the_years_of_their_dollars(page):
    shown = " ".join(
        child.value for child in page.results.children if isinstance(child, widgets.HTML)
    )
    assert "All prices are in 2006–2010 dollars" in shown
