"""The model report page: its tables against hand-computed values, its panels against the
card, its map as one layer, and its refusal when the model folder is missing or partial."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest
from ipyleaflet import GeoJSON
from model_helpers import edit_card, write_table

from homevalue import config
from homevalue.errors import ModelMissingError, ModelSchemaError
from homevalue.model import read_card
from homevalue.schema import Schema
from homevalue.ui import charts, report
from homevalue.ui import page as ui_page
from homevalue.ui.page import Unavailable, build
from homevalue.ui.report import ReportPage

PLACES = ("Neighborhood", "Latitude", "Longitude")  # the holdout's place columns


def sale(where, sale_price, predicted, low, high, lat=42.0, lon=-93.6) -> dict:
    return {
        "Neighborhood": where,
        "Latitude": lat,
        "Longitude": lon,
        "Sale_Price": sale_price,
        "Predicted_Price": predicted,
        "Price_Low": low,
        "Price_High": high,
    }


@pytest.fixture
def tiny() -> pd.DataFrame:
    """Six test sales in three neighbourhoods; intervals are predicted × 0.9 to × 1.1."""
    return pd.DataFrame(
        [
            sale("A", 100_000, 110_000, 99_000, 121_000, lat=42.00),  # +10%, inside
            sale("A", 200_000, 180_000, 162_000, 198_000, lat=42.02),  # -10%, outside
            sale("B", 100_000, 125_000, 112_500, 137_500),  # +25%, outside
            sale("C", 200_000, 190_000, 171_000, 209_000),  # -5%, inside
            sale("C", 300_000, 270_000, 243_000, 300_000),  # -10%, on the upper end: inside
            sale("C", 400_000, 400_000, 360_000, 440_000),  # exact, inside
        ]
    )


@pytest.fixture(scope="module")
def page() -> ReportPage:
    return ReportPage()


@pytest.fixture(scope="module")
def card() -> dict:
    return read_card()


@pytest.fixture
def folder_copy(tmp_path):
    """The card and the holdout only: the report must not need the pipeline artifact."""
    for name in (config.CARD_JSON, config.CARD_PIN, config.HOLDOUT_PREDICTIONS):
        shutil.copy(config.model_dir() / name, tmp_path / name)
    return tmp_path


# ---------------------------------------------------------------- pure functions


def test_signed_error_and_interval(tiny):
    assert report.signed_error(tiny).round(4).tolist() == [0.1, -0.1, 0.25, -0.05, -0.1, 0.0]
    assert report.inside_interval(tiny).tolist() == [True, False, False, True, True, True]


def test_share_within(tiny):
    assert report.share_within(tiny, 0.12) == pytest.approx(5 / 6)
    assert report.share_within(tiny, 0.07) == pytest.approx(2 / 6)
    assert report.share_within(tiny, 0.30) == 1.0


def test_residuals_by_neighbourhood_by_hand(tiny):
    table = report.residuals_by_neighbourhood(tiny, places=PLACES).set_index("neighbourhood")
    assert table.index.tolist() == ["B", "A", "C"]  # most over-priced first
    assert table["n"].tolist() == [1, 2, 3]
    assert table["median_price"].tolist() == [100_000, 150_000, 300_000]
    assert table["median_ape"].round(4).tolist() == [0.25, 0.10, 0.05]
    assert table["median_bias"].round(4).tolist() == [0.25, 0.0, -0.05]
    assert table["inside_share"].tolist() == pytest.approx([0.0, 0.5, 1.0])
    assert table.loc["A", "latitude"] == pytest.approx(42.01)


def test_coverage_by_price_band_by_hand(tiny):
    bands = report.coverage_by_price_band(tiny, bands=(150_000, 300_000, 1_000_000))
    # predicted 110k, 125k | 180k, 190k, 270k | 400k; the band over $1,000k is empty
    assert bands["band"].tolist() == ["under $150k", "$150k – $300k", "$300k – $1,000k"]
    assert bands["n"].tolist() == [2, 3, 1]
    assert bands["coverage"].tolist() == pytest.approx([0.5, 2 / 3, 1.0])
    assert bands["median_width"].tolist() == [23_500, 38_000, 80_000]


def test_log_ticks_are_round_prices():
    assert charts.log_ticks(39_300, 555_000) == [50_000, 100_000, 200_000, 300_000, 500_000]
    assert charts.log_ticks(1, 10) == [1, 2, 3, 5, 10]


def test_importance_table_sorted_with_labels():
    card = {
        "feature_importance_gain_share": {"Lot_Area": 0.2, "Year_Built": 0.7, "Fireplaces": 0.1},
        "features": [{"name": "Year_Built", "label": "Year built"}, {"name": "Lot_Area"}],
    }
    table = report.importance_table(card)
    assert table["label"].tolist() == ["Year built", "Lot_Area", "Fireplaces"]
    assert table["share"].tolist() == [0.7, 0.2, 0.1]


def test_neighbourhood_notes_flag_few_and_unseen():
    table = pd.DataFrame({"neighbourhood": ["A", "B", "C"], "n": [40, 1, 3]})
    notes = report.neighbourhood_notes(table, known=["A", "C"])
    assert notes == ["", "only 1 sale; not in the training data", "only 3 sales"]


def test_geojson_one_feature_per_neighbourhood(tiny):
    data = report.neighbourhood_geojson(report.residuals_by_neighbourhood(tiny, places=PLACES))
    names = [f["properties"]["name"] for f in data["features"]]
    assert names == ["B", "A", "C"]
    styles = [f["properties"]["style"] for f in data["features"]]
    # +25% and 0% and -5%: the over-estimate band, the middle band, the -10%..-3% band
    assert [s["fillColor"] for s in styles] == ["#b2182b", "#d9d9d9", "#92c5de"]
    assert styles[0]["radius"] < styles[1]["radius"] < styles[2]["radius"]
    assert {s["color"] for s in styles} == {report.CIRCLE_OUTLINE}
    json.dumps(data)  # plain Python types only, so the widget can send it


# ---------------------------------------------------------------- panels of the real page


def test_metrics_panel_states_the_card_figures(page, card):
    text = repr(page.metrics)
    m = card["metrics"]
    assert text.startswith(
        f"Holdout metrics: {m['n_test']} test sales, RMSLE {m['rmsle']:.3f} (target ≤ 0.13 met)"
    )
    cv = card["cross_validation"]
    assert f"5-fold CV RMSLE {cv['rmsle_mean']:.3f} ± {cv['rmsle_sd']:.3f}" in text
    assert f"{cv['rmsle_mean']:.3f} ± {cv['rmsle_sd']:.3f}" in page.metrics.children[0].value
    for shown in (
        f"RMSLE {m['rmsle']:.3f}",
        f"MAPE {m['mape_percent']:.1f}%",
        f"median APE {m['median_ape_percent']:.1f}%",
        f"MAE ${m['mae_dollars']:,.0f}",
        f"R² (log price) {m['r2_log']:.3f}",
        f"model {card['model_version']}",
    ):
        assert shown in text
    markup = page.metrics.children[0].value
    assert f"{m['rmsle']:.3f}" in markup and "How to read it" in markup
    assert f'data-hv-model-version="{card["model_version"]}"' in page.metrics.children[1].value


def test_a_missed_target_is_said_plainly(folder_copy):
    edit_card(folder_copy, lambda c: c["metrics"].update(rmsle=0.2))
    text = repr(ReportPage(folder_copy).metrics)
    assert "RMSLE 0.200 (target ≤ 0.13 MISSED)" in text
    assert "(target ≤ 10% met)" in text


def test_coverage_matches_the_card(page, card):
    inside = report.inside_interval(page.holdout).mean()
    assert inside == pytest.approx(card["interval"]["coverage_test"])
    text = repr(page.coverage)
    n = card["metrics"]["n_test"]
    assert f"{card['interval']['coverage_test']:.1%} of {n} test sales inside" in text
    assert "under $100k" in text and "All test sales" in page.coverage.children[0].value


def test_coverage_table_shows_each_bands_width_and_the_one_width_baseline(page, card):
    """Bands from the card: each row's test sales and coverage recomputed from the holdout
    equal the card's, beside its range, calibration sales and the one-width coverage."""
    bands = report.coverage_by_price_band(page.holdout, report.band_edges(card))
    table = report.with_card_figures(bands, card)
    assert len(table) == len(card["interval"]["bands"])
    for row, band in zip(table.itertuples(), card["interval"]["bands"], strict=True):
        assert (row.n, row.n_calibration) == (band["n_test"], band["n_calibration"])
        assert row.coverage == pytest.approx(band["coverage_test"])
        assert row.one_width == pytest.approx(band["coverage_test_one_width"])
        assert row.halfwidth == band["log_halfwidth"]
    markup = page.coverage.children[0].value
    assert "Inside, one width for all" in markup and "Calibration sales" in markup
    first = card["interval"]["bands"][0]
    assert f"{first['coverage_test']:.1%}" in markup
    assert f"{first['coverage_test_one_width']:.1%}" in markup


def test_accuracy_panel(page):
    assert "531 test sales on log axes, sale prices $39,300 to $555,000" in repr(page.accuracy)
    figure = page.accuracy.children[0]
    dots = [mark for mark in figure.marks if len(mark.x) == 531]
    assert len(dots) == 1 and list(dots[0].opacities) == [0.55]
    for axis in figure.axes:
        assert list(axis.tick_values) == [50_000, 100_000, 200_000, 300_000, 500_000]


def test_map_has_one_geojson_layer_with_a_circle_per_neighbourhood(page):
    layers = [layer for layer in page.neighbourhood_map.layers if isinstance(layer, GeoJSON)]
    assert len(layers) == 1
    features = layers[0].data["features"]
    label = Schema.from_list(page.card["features"]).by_name["Neighborhood"].label_of
    expected = set(page.holdout["Neighborhood"].map(label))  # the form's words, not codes
    assert "South & West of Iowa State University" in expected
    assert len(features) == page.holdout["Neighborhood"].nunique() == len(expected)
    assert {f["properties"]["name"] for f in features} == expected


def test_neighbourhoods_name_the_unseen_one(page, card, folder_copy):
    text = repr(page.neighbourhoods)
    assert f"26 neighbourhoods, {card['metrics']['n_test']} test sales" in text
    assert "not in the training data" not in text  # every neighbourhood is learned

    def forget_green_hills(c: dict) -> None:
        feature = next(f for f in c["features"] if f["name"] == "Neighborhood")
        at = feature["categories"].index("Green_Hills")
        del feature["categories"][at], feature["labels"][at]  # a model that never saw it

    edit_card(folder_copy, forget_green_hills)
    assert "not in the training data: Green Hills" in repr(ReportPage(folder_copy).neighbourhoods)


def test_importance_follows_the_card(folder_copy):
    shares = {"Bldg_Type": 0.6, "Year_Built": 0.3, "Gr_Liv_Area": 0.1}
    edit_card(folder_copy, lambda c: c.update(feature_importance_gain_share=shares))
    panel = ReportPage(folder_copy).importance
    bars = panel.children[0].marks[0]
    assert list(bars.x) == ["Building type", "Year built", "Living area"]
    assert list(bars.y) == [0.6, 0.3, 0.1]
    assert "3 features" in repr(panel) and "Building type 60%" in repr(panel)


def test_provenance_shows_the_whole_fingerprints(page, card):
    markup = page.provenance.children[0].value
    assert card["data"]["data_sha256"] in markup and card["artifact_sha256"] in markup
    assert "Removed: sale condition not Normal or Partial" in markup
    assert "<th>scikit-learn</th><td>1.9.1</td>" in markup
    split = card["data"]["split"]
    assert f"split train {split['train']}, test {split['test']} (seed 42)" in repr(page.provenance)


def test_page_does_not_load_the_pipeline(folder_copy, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the report loaded the pipeline")

    monkeypatch.setattr("homevalue.model.load_model", refuse)
    monkeypatch.setattr("homevalue.load_model", refuse)
    assert not (folder_copy / config.MODEL_FILE).exists()
    assert "RMSLE" in repr(ReportPage(folder_copy).metrics)


# ---------------------------------------------------------------- escaping and callbacks


def test_hover_shows_the_neighbourhood_escaped():
    status = report.widgets.HTML()
    properties = {"name": "<img src=x onerror=alert(1)>", "n": 3, "median_bias": -0.05}
    feature = {"properties": {**properties, "median_ape": 0.05, "inside_share": 1.0}}
    report.hover_handler(status)(feature=feature, event="mouseover")
    assert "<img" not in status.value and "&lt;img" in status.value
    assert "3 test sales, median error −5.0%" in status.value


def test_table_escapes_names(tiny):
    tiny.loc[2, "Neighborhood"] = "<script>x</script>"
    markup = report.neighbourhood_table_html(
        report.residuals_by_neighbourhood(tiny, places=PLACES), known=[]
    )
    assert "<script>" not in markup and "&lt;script&gt;" in markup


def test_a_table_that_may_scroll_sideways_is_a_named_tab_stop(tiny):
    """A keyboard scrolls a wide table (on a phone, every table may be) only if its box
    takes focus; a screen reader names the stop by the table's caption or label."""
    markup = report.neighbourhood_table_html(
        report.residuals_by_neighbourhood(tiny, places=PLACES), known=[]
    )
    assert '<div class="hv-table-wrap" tabindex="0" role="region" ' in markup
    assert 'aria-label="Errors by neighbourhood"' in markup


# ---------------------------------------------------------------- refusals


def test_missing_model_folder_gives_unavailable(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("HOMEVALUE_MODEL_DIR", str(tmp_path))
    monkeypatch.setattr(ui_page.log, "propagate", True)  # let caplog see the server log line
    page = build(ReportPage, "The model report")
    assert isinstance(page, Unavailable)
    first = repr(page.metrics)
    assert "The model report is unavailable: the price model could not be loaded" in first
    assert str(tmp_path) not in first  # server paths are for the log, not the viewer
    assert str(tmp_path) in caplog.text
    assert repr(page.accuracy) == "accuracy: unavailable"


def test_missing_holdout_is_refused_by_name(folder_copy):
    (folder_copy / config.HOLDOUT_PREDICTIONS).unlink()
    with pytest.raises(ModelMissingError, match="holdout"):
        ReportPage(folder_copy)
    assert isinstance(build(ReportPage, "The model report", folder=folder_copy), Unavailable)


def test_partial_holdout_and_old_card_are_refused(folder_copy):
    holdout = pd.read_csv(folder_copy / config.HOLDOUT_PREDICTIONS)
    partial = holdout.drop(columns="Price_Low").to_csv().encode()
    write_table(folder_copy, config.HOLDOUT_PREDICTIONS, partial)
    with pytest.raises(ModelSchemaError, match="Price_Low"):
        ReportPage(folder_copy)
    edit_card(folder_copy, lambda c: c.pop("interval"))
    with pytest.raises(ModelSchemaError, match="interval"):
        ReportPage(folder_copy)


def test_the_metrics_say_the_years_of_their_dollars(page):
    assert "All prices are in 2006–2010 dollars" in page.metrics.children[0].value
