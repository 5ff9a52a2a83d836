"""A model whose card renames a field and adds one works end to end: the price page's form,
the API and the batch job find its fields by their roles, never by an Ames column name.

The model is trained here, by the same code as `make model`, with Gr_Liv_Area renamed
Living_Area (keeping its role, living_area), an extra field (rooms above ground) and a
small forest, so the module costs a few seconds.
"""

from __future__ import annotations

from dataclasses import replace

import pandas as pd
import pytest
from fastapi.testclient import TestClient

import homevalue
from homevalue import api, config
from homevalue.batch import score_file
from homevalue.comps import reference_sales
from homevalue.errors import BatchFileError
from homevalue.model import Model, load_model
from homevalue.schema import Feature
from homevalue.train import FEATURES, LGBM_PARAMS, train
from homevalue.ui import PricePage
from homevalue.ui.report import ReportPage

RENAMED = "Living_Area"
EXTRA = Feature(
    "TotRms_AbvGrd", "integer", "Rooms", "", 1, 20, help="Rooms above ground, baths excluded."
)


@pytest.fixture(scope="module")
def renamed(tmp_path_factory) -> Model:
    folder = tmp_path_factory.mktemp("renamed")
    features = (
        *(replace(f, name=RENAMED) if f.role == "living_area" else f for f in FEATURES),
        EXTRA,
    )
    train(
        folder,
        features=features,
        columns={RENAMED: "Gr_Liv_Area"},
        params={**LGBM_PARAMS, "n_estimators": 40},
    )
    return load_model(folder)


@pytest.fixture
def house(renamed: Model) -> dict:
    """A sold house of the reference sales, in the renamed model's own fields."""
    sale = reference_sales(renamed.path).iloc[7]
    return {
        name: getattr(sale[name], "item", lambda v=sale[name]: v)() for name in renamed.schema.names
    }


def test_the_card_carries_the_new_name_with_its_role(renamed):
    schema = renamed.schema
    assert schema.role("living_area").name == RENAMED
    assert "Gr_Liv_Area" not in schema.names and EXTRA.name in schema.names
    written = {f["name"]: f["role"] for f in renamed.card["features"]}
    assert written[RENAMED] == "living_area" and written[EXTRA.name] is None
    assert RENAMED in reference_sales(renamed.path).columns


def test_the_price_page_builds_and_prices_from_the_renamed_form(renamed):
    page = PricePage(renamed)
    assert {RENAMED, EXTRA.name} <= set(page.form.inputs)
    assert page.last == homevalue.predict_one(page.form.values(), model=renamed)
    assert len(page.comps) == 5  # the comparable sales are found by the area's role
    before = page.last.price
    page.form.inputs[RENAMED].value = 2600
    assert page.last.price != before
    assert page.last == homevalue.predict_one(page.form.values(), model=renamed)
    page.form.inputs[EXTRA.name].value = 9
    assert page.last.inputs[EXTRA.name] == 9
    assert "2,600 sq ft" in page._describe_house()


def test_a_link_takes_the_new_name_and_its_role_and_refuses_the_old(renamed):
    page = PricePage(renamed)
    page.apply_request({"living_area": "1750", "lat": "42.03", "lon": "-93.62"})
    values = page.form.values()
    assert (values[RENAMED], values["Latitude"], values["Longitude"]) == (1750, 42.03, -93.62)
    page.apply_request({"Gr_Liv_Area": "1800"})
    assert "Gr_Liv_Area is not a field of this model; did you mean Living_Area" in (
        page.status.value
    )
    assert page.form.values()[RENAMED] == 1750


def test_the_api_takes_the_new_name_and_refuses_the_old_with_a_suggestion(renamed, house):
    with TestClient(api.create_app(renamed.path)) as client:
        priced = client.post("/v1/predict", json=house)
        assert priced.status_code == 200, priced.text
        assert priced.json()["price"] == homevalue.predict_one(house, model=renamed).price
        old = {("Gr_Liv_Area" if k == RENAMED else k): v for k, v in house.items()}
        refused = client.post("/v1/predict", json=old)
        document = client.get("/openapi.json").json()
    assert refused.status_code == 422
    problems = [(p["field"], p["reason"]) for p in refused.json()["problems"]]
    assert problems == [
        (RENAMED, "is required"),
        ("Gr_Liv_Area", "is not a field of this model; did you mean Living_Area or Lot_Area?"),
    ]
    feedback = document["paths"]["/v1/feedback"]["post"]["requestBody"]["content"]
    examples = feedback["application/json"]["examples"]
    assert {RENAMED in e["value"]["house"] for e in examples.values()} == {True}


def test_a_batch_file_with_the_renamed_column_is_scored_and_its_extras_carried(renamed, tmp_path):
    sales = reference_sales(renamed.path).head(30)
    frame = sales[renamed.schema.names].assign(Address=[f"{n} Main St" for n in range(30)])
    source = tmp_path / "renamed.csv"
    frame.to_csv(source, index=False)
    result = score_file(source, tmp_path / "out", model=renamed)
    assert (result.rows_scored, result.rows_rejected) == (30, 0)
    scored = pd.read_csv(result.scored_path)
    assert scored["Address"].tolist() == frame["Address"].tolist()  # carried through
    expected = homevalue.predict_frame(frame[renamed.schema.names], model=renamed)
    assert scored["predicted_price"].tolist() == expected["predicted_price"].tolist()

    old = frame.rename(columns={RENAMED: "Gr_Liv_Area"})
    old.to_csv(source, index=False)
    with pytest.raises(BatchFileError, match="lacks required column.*Living_Area"):
        score_file(source, tmp_path / "out2", model=renamed)


def test_the_report_finds_the_neighbourhoods_by_role(renamed):
    page = ReportPage(renamed.path)
    assert "neighbourhoods" in repr(page.neighbourhoods)
    assert (renamed.path / config.HOLDOUT_PREDICTIONS).exists()
