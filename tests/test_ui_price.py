"""The "Price a home" page without a browser: set widget values, read what the page shows."""

from __future__ import annotations

import html
import re
import threading
import urllib.parse

import pytest

import homevalue
from homevalue.comps import neighbourhood_at, reference_centres
from homevalue.ui import PricePage, charts
from homevalue.ui import page as ui_page
from homevalue.ui.form import HouseForm, field_widget
from homevalue.ui.page import FRIENDLY
from homevalue.ui.price import HIGHLIGHT_STYLE, share_query
from homevalue.ui.render import money

LAT, LON = "Latitude", "Longitude"  # the committed model's fields of those roles


@pytest.fixture
def page(model) -> PricePage:
    return PricePage(model)


def shown_price(page: PricePage) -> str:
    return page.price_html.value


def test_the_form_is_built_from_the_card_schema(model):
    form = HouseForm(model.schema)
    assert list(form.inputs) == model.schema.names
    for feature in model.schema.features:
        widget = form.inputs[feature.name]
        assert widget.description == feature.label
        if feature.is_category:
            assert [value for _, value in widget.options] == list(feature.categories)
            assert [label for label, _ in widget.options] == list(feature.labels)


def test_each_field_shows_its_help_text_from_the_card(model):
    form = HouseForm(model.schema)
    for row, feature in zip(form.box.children, model.schema.features, strict=True):
        shown_help = row.children[1].value  # under the input, visible (not only a tooltip)
        assert 'class="hv-help"' in shown_help and feature.help
        assert html.escape(feature.help, quote=True) in shown_help
        assert form.inputs[feature.name].tooltip == feature.help
    bldg = dict(form.inputs["Bldg_Type"].options)
    assert bldg["Single-family detached"] == "OneFam"


def models_of(widget) -> set[str]:
    """The model ids a widget's view needs: itself, its layout and style, its children's."""
    found, todo = set(), [widget]
    while todo:
        w = todo.pop()
        if w.model_id in found:
            continue
        found.add(w.model_id)
        todo += [getattr(w, name) for name in ("layout", "style") if getattr(w, name, None)]
        todo += list(getattr(w, "children", ()))
    return found


def test_the_form_rows_share_their_layout_and_style_models(model):
    """A row was 16 widget models (each input, note and box its own Layout and style):
    each is a message and an object the browser builds before the page draws. Rows share
    them now: a row adds only its own widgets (input, 3 texts, 2 boxes)."""
    form = HouseForm(model.schema)
    rows = form.box.children
    shared = models_of(rows[0]) & models_of(rows[1])
    assert len(shared) == 3  # one Layout, the label style and the text style
    for row in rows:
        assert len(models_of(row) - shared) == 6
    # the label width is still every input's
    assert {w.style.description_width for w in form.inputs.values()} == {"170px"}


def test_the_sold_houses_come_once_the_browser_has_drawn_the_map(page, model):
    """~470 kB of GeoJSON left the page's first widget state: the browser reports the map's
    bounds once it has drawn it, and then the sold houses come, once, marked on the map."""
    assert page.sales_layer.data["features"] == []
    assert "hv-sales-shown" not in page.map._dom_classes
    page.map.set_trait("south", 42.0)  # what the browser's first bounds report sets
    features = page.sales_layer.data["features"]
    assert len(features) == len(page.sales)
    assert {f["properties"]["Sale_ID"] for f in features} == set(page.sales["Sale_ID"])
    assert "hv-sales-shown" in page.map._dom_classes
    page.sales_layer.data = {"type": "FeatureCollection", "features": []}
    page.map.set_trait("south", 41.9)  # panning later sends bounds again: nothing is sent twice
    assert page.sales_layer.data["features"] == []


def test_a_retrained_schema_gets_its_own_form(model):
    """A feature the notebook never heard of appears in the form with its own widget."""
    extra = homevalue.Feature(
        "Pool_Area",
        "integer",
        "Pool area",
        unit="sq ft",
        min=0,
        max=2000,
        train_min=0,
        train_max=800,
        default=0,
    )
    schema = homevalue.Schema((*model.schema.features, extra))
    form = HouseForm(schema)
    assert form.inputs["Pool_Area"].description == "Pool area"
    assert "sq ft" in form.box.children[-1].children[0].children[1].value


def test_small_counts_get_steppers_and_areas_unbounded_boxes(model):
    by_name = model.schema.by_name
    cars = by_name["Garage_Cars"]
    stepper = field_widget(cars)
    assert type(stepper).__name__ == "BoundedIntText"  # a number box with up/down arrows
    assert (stepper.min, stepper.max) == (cars.min, cars.max)  # the card's allowed range
    # unbounded on purpose: an out-of-range entry must reach validation and get its message
    assert type(field_widget(by_name["Gr_Liv_Area"])).__name__ == "IntText"


def test_the_default_house_is_priced_on_load_exactly_as_predict_one_prices_it(page, model):
    expected = homevalue.predict_one(page.form.values(), model=model)
    assert page.last == expected
    assert f"${expected.price:,.0f}" in shown_price(page)
    assert f"${expected.low:,.0f}" in shown_price(page) and f"${expected.high:,.0f}" in shown_price(
        page
    )
    assert len(page.comps) == 5


def test_the_price_states_its_bands_coverage_and_the_median_error_here(page, model):
    """Not a blanket "80% of similar houses": the band's measured coverage, and the
    neighbourhood's median error, or the band's when it had too few test sales."""
    p = page.last
    band = next(b for b in model.card["interval"]["bands"] if b["low"] == p.price_band["low"])
    shown = shown_price(page)
    assert "similar houses" not in shown
    assert f"({p.price_band['label']}), {band['coverage_test']:.0%} sold inside" in shown
    accuracy = model.card["accuracy_here"]
    north_ames = accuracy["neighbourhoods"]["North_Ames"]
    assert page.form.values()["Neighborhood"] == "North_Ames"
    assert (
        f"Median error here: {north_ames['median_ape_percent']:.1f}% "
        f"(North Ames, {north_ames['n_test']} test sales)"
    ) in shown
    few = next(
        n
        for n in model.schema.by_name["Neighborhood"].categories
        if n not in accuracy["neighbourhoods"]
    )
    page.form.inputs["Neighborhood"].value = few
    band = next(b for b in accuracy["bands"] if b["low"] == page.last.price_band["low"])
    assert (
        f"Median error here: {band['median_ape_percent']:.1f}% (homes priced "
        f"{page.last.price_band['label']}, {band['n_test']} test sales)"
    ) in shown_price(page)
    assert "Median error here" in repr(page.main)


def test_every_change_reprices(page, model):
    before = page.last.price
    page.form.inputs["Gr_Liv_Area"].value = 2600
    assert page.last.price != before
    assert page.last == homevalue.predict_one(page.form.values(), model=model)
    before = page.last.price
    page.form.inputs["Neighborhood"].value = "Northridge_Heights"
    assert page.last.price != before


def test_an_invalid_entry_marks_its_field_and_keeps_the_last_price(page):
    good = page.last
    page.form.inputs["Gr_Liv_Area"].value = 50_000
    assert page.last == good
    assert "$" in shown_price(page) and f"{good.price:,.0f}" in shown_price(page)
    assert "must be between 200 and 10,000 sq ft" in page.form.errors["Gr_Liv_Area"].value
    assert "last price" in page.status.value
    page.form.inputs["Gr_Liv_Area"].value = 1500
    assert page.form.errors["Gr_Liv_Area"].value == "" and page.status.value == ""


def test_remodelled_before_built_is_marked_on_the_remodel_field(page):
    page.form.inputs["Year_Remod_Add"].value = 1900
    assert "must not be earlier than Year_Built" in page.form.errors["Year_Remod_Add"].value


def test_flags_are_shown_in_plain_words(page):
    page.form.inputs["Gr_Liv_Area"].value = 5000
    assert "above anything the model was trained on" in page.flags_html.value


def test_clicking_the_map_moves_the_house_and_its_comps(page):
    first_comps = list(page.comps["Sale_ID"])
    page._map_clicked(type="click", coordinates=[42.05, -93.66])
    values = page.form.values()
    assert (values[LAT], values[LON]) == (42.05, -93.66)
    assert tuple(page.marker.location) == (42.05, -93.66)
    assert list(page.comps["Sale_ID"]) != first_comps
    assert len(page.comps_layer.data["features"]) == 5


def prices_on(page, monkeypatch) -> list:
    """Count the page's prices (each re-price calls predict_one once)."""
    calls = []
    real = homevalue.ui.price.predict_one

    def counting(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr("homevalue.ui.price.predict_one", counting)
    return calls


def test_choosing_a_neighbourhood_moves_the_house_there_and_reprices_once(page, monkeypatch):
    calls = prices_on(page, monkeypatch)
    centre = reference_centres(page.model.path)["Meadow_Village"]
    page.form.inputs["Neighborhood"].value = "Meadow_Village"
    values = page.form.values()
    assert (values[LAT], values[LON]) == centre
    assert tuple(page.marker.location) == centre
    assert len(calls) == 1, "one choice, one price"
    assert page.last == homevalue.predict_one(values, model=page.model)
    assert (page.comps["Neighborhood"] == "Meadow_Village").all()
    assert page.place_html.value == ""  # the centre is in the neighbourhood: they agree
    assert page.keep_button.layout.display == "flex"


@pytest.mark.parametrize("name", ["Veenker", "Northridge_Heights", "Old_Town", "Timberland"])
def test_placing_the_house_sets_its_neighbourhood_from_the_sales_around_it(page, name):
    lat, lon = reference_centres(page.model.path)[name]
    page._map_clicked(type="click", coordinates=[lat, lon])
    values = page.form.values()
    assert values["Neighborhood"] == neighbourhood_at(values[LAT], values[LON]) == name
    assert page.last.inputs["Neighborhood"] == name
    assert page.place_html.value == "" and page.keep_button.layout.display == "none"


def test_typed_coordinates_place_the_house_too(page, monkeypatch):
    calls = prices_on(page, monkeypatch)
    lat, lon = reference_centres(page.model.path)["Veenker"]
    page.form.inputs[LON].value = lon
    page.form.inputs[LAT].value = lat
    assert page.form.values()["Neighborhood"] == "Veenker"
    assert len(calls) == 2  # one per typed field


def test_a_neighbourhood_that_disagrees_with_the_spot_is_kept_with_a_notice(page):
    """Choose Meadow Village, then keep the house where it was: priced as chosen, and the
    page says the spot is in another neighbourhood until the two agree."""
    veenker = reference_centres(page.model.path)["Veenker"]
    page._map_clicked(type="click", coordinates=list(veenker))
    page.form.inputs["Neighborhood"].value = "Meadow_Village"
    page.keep_button.click()
    values = page.form.values()
    assert (values[LAT], values[LON]) == veenker
    assert values["Neighborhood"] == "Meadow_Village"
    assert page.last.inputs["Neighborhood"] == "Meadow_Village"
    notice = "This spot is in Veenker by its nearest sales; it is priced as Meadow Village"
    assert notice in page.place_html.value and notice in repr(page.main)
    assert page.keep_button.layout.display == "none"
    page.form.inputs["Gr_Liv_Area"].value = 1900  # still disagreeing: the notice stays
    assert notice in page.place_html.value
    page.form.inputs["Neighborhood"].value = "Veenker"  # moves to Veenker's centre: agree
    assert page.place_html.value == ""


def test_a_link_with_a_spot_takes_its_neighbourhood_and_one_with_both_keeps_both(page, model):
    lat, lon = reference_centres(model.path)["Veenker"]
    page.apply_request({"lat": str(lat), "lon": str(lon)})
    assert page.form.values()["Neighborhood"] == "Veenker"
    assert page.place_html.value == ""

    other = PricePage(model)
    other.apply_request({"lat": str(lat), "lon": str(lon), "Neighborhood": "Meadow_Village"})
    values = other.form.values()
    assert (values[LAT], values[LON], values["Neighborhood"]) == (lat, lon, "Meadow_Village")
    assert "This spot is in Veenker" in other.place_html.value

    third = PricePage(model)
    third.apply_request({"Neighborhood": "Veenker"})
    assert (third.form.values()[LAT], third.form.values()[LON]) == (lat, lon)


def test_the_comps_table_shows_the_models_price_beside_the_sale_price(page, model, reference):
    comps = page.comps
    assert (comps["Neighborhood"] == page.form.values()["Neighborhood"]).all()
    for _, comp in comps.iterrows():
        sale = reference[reference["Sale_ID"] == comp["Sale_ID"]].iloc[0]
        said = homevalue.predict_one({n: sale[n] for n in model.schema.names}, model=model).price
        assert comp["model_price"] == said
        row = f'${comp["Sale_Price"]:,.0f}</td><td class="num">${said:,.0f}</td>'
        assert row in page.comps_html.value
        difference = round((said / comp["Sale_Price"] - 1) * 100)
        assert (f"{difference:+d}%" if difference else "0%") in page.comps_html.value
    assert "Model says" in page.comps_html.value


def test_picking_a_comp_outlines_it_and_offers_it_without_moving_the_house(page):
    before = page.form.values()
    page.comp_choice.value = 2
    styles = [f["properties"]["style"] for f in page.comps_layer.data["features"]]
    assert [s.get("radius") for s in styles] == [None, None, HIGHLIGHT_STYLE["radius"], None, None]
    sale = page.comps.iloc[2]
    assert page.offer.layout.display == "flex"
    assert f"${sale['Sale_Price']:,.0f}" in page.offer_text.value
    assert page.form.values() == before
    page._use_offer()
    assert page.form.values()["Gr_Liv_Area"] == sale["Gr_Liv_Area"]
    assert (page.form.values()[LAT], page.form.values()[LON]) == (sale[LAT], sale[LON])
    assert page.comp_choice.value is None  # new comps: none outlined


def test_a_click_on_a_sale_stays_with_its_layer_and_never_reaches_the_map(page):
    """Leaflet passes a click on a circle up to the map unless told not to; the map's own
    click places the house (the browser test clicks a sale and sees the house stay)."""
    for layer in (page.sales_layer, page.comps_layer):
        assert layer.point_style["bubblingMouseEvents"] is False


def test_clicking_a_comp_on_the_map_picks_it(page):
    sale_id = int(page.comps["Sale_ID"].iloc[3])
    page._comp_clicked(feature={"properties": {"Sale_ID": sale_id}})
    assert page.comp_choice.value == 3
    assert page.offer.layout.display == "flex"


def test_dragging_the_marker_sets_the_location(page):
    page.marker.location = (42.02, -93.65)
    assert (page.form.values()[LAT], page.form.values()[LON]) == (42.02, -93.65)


def test_clicking_a_sale_offers_to_start_from_it(page, reference):
    sale = reference.iloc[10]
    page._sale_clicked(feature={"properties": {"Sale_ID": int(sale["Sale_ID"])}})
    assert page.offer.layout.display == "flex"
    assert f"${sale['Sale_Price']:,.0f}" in page.offer_text.value
    page._use_offer()
    values = page.form.values()
    assert values["Gr_Liv_Area"] == sale["Gr_Liv_Area"]
    assert values["Neighborhood"] == sale["Neighborhood"]
    assert page.offer.layout.display == "none"


def test_the_url_prefills_the_form_and_reports_what_it_could_not_use(page, model):
    page.apply_request(
        {
            "Gr_Liv_Area": "1800",
            "lat": "42.03",
            "lon": "-93.62",
            "Year_Built": "abc",
            "colour": "red",
            "theme": "dark",
            "token": "s3cret",
        }
    )
    values = page.form.values()
    assert (values["Gr_Liv_Area"], values[LAT], values[LON]) == (1800, 42.03, -93.62)
    assert values["Year_Built"] == model.schema.by_name["Year_Built"].default  # bad, not used
    assert "Year_Built=abc must be a number" in page.status.value
    assert "colour is not a field" in page.status.value
    assert "theme" not in page.status.value  # Voilà's own parameters
    assert "token" not in page.status.value


def test_a_link_may_name_a_category_by_its_label_in_any_case(page):
    """?Neighborhood=north+ames&Central_Air=no&Bldg_Type=Townhouse%2C+end+unit"""
    query = dict(
        urllib.parse.parse_qsl(
            "Neighborhood=north+ames&Central_Air=no&Bldg_Type=Townhouse%2C+end+unit"
        )
    )
    page.apply_request(query)
    values = page.form.values()
    assert (values["Neighborhood"], values["Central_Air"], values["Bldg_Type"]) == (
        "North_Ames",
        "N",
        "TwnhsE",
    )
    assert "not used" not in page.status.value


def test_a_link_with_a_near_miss_says_what_it_meant(page):
    page.apply_request({"Neighborhood": "Nort Ames"})
    assert "did you mean &quot;North Ames&quot; (North_Ames)" in page.status.value
    assert page.form.values()["Neighborhood"] != "Nort Ames"


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"Year_Built": "2,009"}, 2009),  # thousands comma, as a CSV or the API accepts it
        ({"Year_Built": "2009", "Year_Remod_Add": "1,950"}, 2009),  # both, one earlier
    ],
)
def test_a_link_value_valid_alone_is_used_even_when_another_field_disagrees(page, query, expected):
    """A value that passes its own field's check is used; a clash between fields is marked
    on the form like any entry (it used to reach the form as text and break the page)."""
    page.apply_request(query)
    assert page.form.values()["Year_Built"] == expected
    assert "not used" not in page.status.value
    assert "Fix the marked field" in page.status.value
    assert "must not be earlier than Year_Built" in page.form.errors["Year_Remod_Add"].value


@pytest.mark.parametrize("digits", ["١٥٠٠", "１５００", "𝟏𝟓𝟎𝟎"])
def test_a_link_in_other_digits_is_a_notice_as_in_the_api_and_batch(page, digits):
    page.apply_request({"Gr_Liv_Area": digits})
    assert page.form.values()["Gr_Liv_Area"] != 1500
    assert "must be written with the digits 0-9" in page.status.value


def test_a_link_that_breaks_the_form_leaves_a_notice_not_a_broken_page(page, monkeypatch, caplog):
    def broken(_values):
        raise RuntimeError("a bug in the form")

    monkeypatch.setattr(page.form, "set_values", broken)
    page.apply_request({"Gr_Liv_Area": "1800"})  # must not raise: the page's last cell
    assert FRIENDLY in page.status.value
    assert "a bug in the form" in caplog.text


def test_the_what_if_curve_follows_the_form_and_marks_the_house(page, model):
    page.what_if_choice.value = "Gr_Liv_Area"
    curve = page.curve
    feature = model.schema.by_name["Gr_Liv_Area"]
    assert curve["Gr_Liv_Area"].min() == feature.train_min
    assert curve["Gr_Liv_Area"].max() == feature.train_max
    here = curve[curve["Gr_Liv_Area"] == page.last.inputs["Gr_Liv_Area"]]
    assert here["price"].iloc[0] == page.last.price
    assert list(page.chart.current.y) == [page.last.price]
    page.form.inputs["Fireplaces"].value = 3
    assert page.curve is not curve


def test_the_what_if_axes_have_round_ticks_around_the_curve(page):
    page.what_if_choice.value = "Year_Built"
    x_ticks, y_ticks = page.chart.x_axis.tick_values, page.chart.y_axis.tick_values
    years, low, high = page.curve["Year_Built"], page.curve["low"], page.curve["high"]
    assert all(t % 25 == 0 for t in x_ticks) and len(x_ticks) >= 4
    assert years.min() <= x_ticks[0] and x_ticks[-1] <= years.max()
    step = y_ticks[1] - y_ticks[0]
    assert all(t % step == 0 for t in y_ticks) and step in (10_000, 20_000, 25_000, 50_000)
    # The price scale stops on its outer ticks, so the whole band shows between them.
    assert (page.chart.y.min, page.chart.y.max) == (y_ticks[0], y_ticks[-1])
    assert y_ticks[0] <= low.min() and high.max() <= y_ticks[-1]


@pytest.mark.parametrize(
    ("low", "high", "count", "outer", "ticks"),
    [
        (1871, 2011, 6, False, [1875, 1900, 1925, 1950, 1975, 2000]),
        (112_640, 238_318, 5, True, [100_000, 150_000, 200_000, 250_000]),
        (100_000, 200_000, 5, True, [100_000, 120_000, 140_000, 160_000, 180_000, 200_000]),
        (0, 4, 6, False, [0, 1, 2, 3, 4]),
        (0.52, 0.87, 5, True, [0.5, 0.6, 0.7, 0.8, 0.9]),
        (5, 5, 6, False, [5]),
    ],
)
def test_linear_ticks_are_round_and_span_the_range(low, high, count, outer, ticks):
    assert charts.linear_ticks(low, high, count, outer=outer) == pytest.approx(ticks)


@pytest.mark.parametrize(
    ("high", "ticks"),
    [
        (1, [0, 1]),
        (2, [0, 1, 2]),
        (7, [0, 2, 4, 6, 8]),
        (12, [0, 5, 10, 15]),
        (30, [0, 10, 20, 30]),
    ],
)
def test_integer_ticks_count_whole_houses(high, ticks):
    assert charts.linear_ticks(0, high, 5, outer=True, integer=True) == ticks


def test_what_if_built_later_raises_the_remodel_year_with_it(model, good_house):
    curve = homevalue.predict.what_if(good_house, "Year_Built", [1950, 2005], model=model)
    assert list(curve["Year_Built"]) == [1950, 2005]  # 2005 > remodel 1990, kept


def test_a_bug_in_a_callback_shows_a_friendly_message_and_is_logged(page, caplog, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("secret internals")

    monkeypatch.setattr("homevalue.ui.price.predict_one", broken)
    monkeypatch.setattr(ui_page.log, "propagate", True)  # let caplog see the server log line
    with caplog.at_level("ERROR", logger="homevalue.ui"):
        page.guard(page.refresh)()
    assert "Something went wrong" in page.status.value
    assert "secret internals" not in page.status.value
    assert "secret internals" in caplog.text


def test_panels_describe_what_the_viewer_sees(page):
    text = repr(page.main)
    assert f"${page.last.price:,.0f}" in text and f"model {page.model.version}" in text
    assert repr(page.comparables).startswith("Comparable sales: 5 comparable sales")
    assert repr(page.sensitivity).startswith("What if: ")


def _voila_environment(monkeypatch, port: int) -> None:
    """What Voilà puts in a preheated kernel's environment before its viewer arrives (set
    through monkeypatch, so what the request adds is undone after the test)."""
    variables = {
        "VOILA_PREHEAT": "True",
        "VOILA_KERNEL_ID": "k-1",
        "VOILA_APP_PORT": str(port),
        "VOILA_SERVER_URL": "/",
        "QUERY_STRING": "",
        "SCRIPT_NAME": "",
    }
    for name, value in variables.items():
        monkeypatch.setenv(name, value)


def test_a_preheated_kernel_reads_its_viewers_query_from_voila(monkeypatch):
    """The request arrives over Voilà's `voila/query/<kernel id>` websocket, as one JSON."""
    from websockets.sync.server import serve

    paths = []

    def hand_over(websocket):
        paths.append(websocket.request.path)
        websocket.send('{"QUERY_STRING": "Gr_Liv_Area=1800&lat=42.03", "SCRIPT_NAME": "/p"}')

    with serve(hand_over, "127.0.0.1", 0) as server:
        _voila_environment(monkeypatch, server.socket.getsockname()[1])
        threading.Thread(target=server.serve_forever, daemon=True).start()
        query = ui_page.request_query()
        server.shutdown()
    assert paths == ["/voila/query/k-1"]
    assert query == {"Gr_Liv_Area": "1800", "lat": "42.03"}
    assert ui_page.page_path() == "/p"


def test_without_voilas_answer_the_page_keeps_its_defaults(monkeypatch):
    """Nothing listens on the port: no query and no exception (a server log line)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    _voila_environment(monkeypatch, port)
    assert ui_page.request_query() == {}


def test_the_price_says_the_years_of_its_dollars(page):
    assert "All prices are in 2006–2010 dollars" in page.price_html.value


def address_of(page: PricePage) -> str | None:
    """The query the page asks the browser to keep in its address (homevalue.js), if any."""
    found = re.search(r'data-hv-address="([^"]*)"', page.link_html.value)
    return html.unescape(found[1]) if found else None


def test_the_address_follows_the_house_once_the_viewer_has_the_page(page, model):
    """A preheated kernel's page (built before anyone asked) leaves the address alone; from
    the viewer's request on, every reprice asks for the canonical share query."""
    assert address_of(page) is None
    page.apply_request({})
    assert address_of(page) is None  # a plain first visit keeps its plain address
    page.form.inputs["Gr_Liv_Area"].value = 2345
    assert address_of(page) == "?" + share_query(page.form.values(), model.schema)
    assert "Gr_Liv_Area=2345" in address_of(page)


def test_a_whole_house_in_the_address_is_kept_and_said_so(page, model):
    page.form.inputs["Gr_Liv_Area"].value = 2222
    query = dict(urllib.parse.parse_qsl(share_query(page.form.values(), model.schema)))
    returning = PricePage(model)
    returning.apply_request(query)
    assert returning.last == page.last  # the share link prices the same house
    assert "Gr_Liv_Area=2222" in page.link_html.value
    kept = returning.kept_html.value
    assert "Your house from before was kept" in kept
    assert "2,222 sq ft" in kept
    assert 'class="hv-start-again" href="?"' in kept  # outside Voilà: the page, no query
    assert address_of(returning) == "?" + share_query(page.form.values(), model.schema)
    returning.form.inputs["Fireplaces"].value = 3
    assert returning.kept_html.value == ""  # said once; the viewer has moved on


def test_a_partial_link_is_not_said_to_be_kept(page):
    page.apply_request({"Gr_Liv_Area": "1800", "lat": "42.03", "lon": "-93.62"})
    assert page.kept_html.value == ""
    assert "Gr_Liv_Area=1800" in address_of(page)


@pytest.mark.parametrize(
    "query",
    [
        {"Gr_Liv_Area": "1" * 3000},
        {f"field{i}": "1" for i in range(100)},
    ],
)
def test_a_link_too_long_is_refused_whole_and_replaced_by_the_canonical_one(page, model, query):
    before = page.form.values()
    page.apply_request(query)
    assert "The link is too long" in page.status.value
    assert "nothing from it was used" in page.status.value
    assert page.form.values() == before
    assert address_of(page) == "?" + share_query(before, model.schema)


def test_a_link_with_many_bad_values_lists_a_few_and_counts_the_rest(page, model):
    query = {f"{'x' * 100}{i}": "<script>alert(1)</script>" for i in range(9)}
    query["Year_Built"] = "<img src=x onerror=alert(1)>"
    page.apply_request(query)
    status = page.status.value
    assert status.count("is not a field of this model") == 5
    assert "and 5 more" in status
    assert "x" * 41 not in status  # a key is shown cut to 40 characters
    assert "<script" not in status and "<img" not in status  # escaped
    assert address_of(page) == "?" + share_query(page.form.values(), model.schema)
    assert page.kept_html.value == ""


def test_the_live_region_says_the_settled_price_or_the_field_to_fix(page, model):
    """What a screen reader hears: the price and its range, or which field stops a price."""
    p = page.last
    assert page.announcement.value == (
        f"Price {money(p.price)}, between {money(p.low)} and {money(p.high)}."
    )
    page.form.inputs["Gr_Liv_Area"].value = 50_000
    label = model.schema.by_name["Gr_Liv_Area"].label
    assert page.announcement.value == f"Price not updated: fix {label}."
    page.form.inputs["Gr_Liv_Area"].value = 2_000
    assert page.announcement.value == f"Price {money(page.last.price)}, between " + (
        f"{money(page.last.low)} and {money(page.last.high)}."
    )
    assert page.last.price != p.price
