"""One input policy (homevalue.schema): how a key names a field, what happens to a key that
names none, and a category given by its label, the same for `predict_one`, the API and the
price page's links; and the fields' roles, which a card must give, each once."""

from __future__ import annotations

import re
import shutil

import pytest
from fastapi.testclient import TestClient
from model_helpers import edit_card

import homevalue
from homevalue import api, config
from homevalue import schema as schema_module
from homevalue.batch import score_file
from homevalue.errors import BatchFileError, ModelError, ValidationError
from homevalue.model import load_model
from homevalue.schema import ROLES, SUGGESTED_KEYS, resolve_keys
from homevalue.ui import PricePage

PREDICT = "/v1/predict"
UNKNOWN = "is not a field of this model; did you mean Garage_Cars?"


@pytest.fixture(scope="module")
def client():
    with TestClient(api.create_app()) as started:
        yield started


@pytest.fixture(scope="module")
def page(model) -> PricePage:
    return PricePage(model)


def refusals(schema, record) -> list[tuple[str, str]]:
    with pytest.raises(ValidationError) as caught:
        homevalue.predict_one(record, model=homevalue.load_model())
    return [(p.field, p.reason) for p in caught.value.problems]


def test_an_unknown_key_is_refused_in_the_same_words_on_every_surface(
    model, good_house, client, page
):
    house = {**good_house, "Garage_Car": 3}
    assert refusals(model.schema, house) == [("Garage_Car", UNKNOWN)]
    problems = client.post(PREDICT, json=house).json()["problems"]
    assert [(p["field"], p["reason"]) for p in problems] == [("Garage_Car", UNKNOWN)]
    page.apply_request({"Garage_Car": "3"})
    assert f"Garage_Car {UNKNOWN}" in page.status.value


def test_a_key_far_from_every_field_gets_no_suggestion(model, good_house):
    assert refusals(model.schema, {**good_house, "colour": "blue"}) == [
        ("colour", "is not a field of this model")
    ]


@pytest.mark.parametrize(
    ("key", "field"),
    [
        ("lat", "Latitude"),  # a role's alias
        ("lng", "Longitude"),
        ("latitude", "Latitude"),  # the name in another case
        ("GR_LIV_AREA", "Gr_Liv_Area"),
        ("gr liv area", "Gr_Liv_Area"),  # other separators
        ("living_area", "Gr_Liv_Area"),  # the role
        ("Living area", "Gr_Liv_Area"),  # the label
        ("neighborhood", "Neighborhood"),
        ("Building type", "Bldg_Type"),
    ],
)
def test_a_key_names_its_field_by_name_role_alias_or_label_in_any_case(
    model, good_house, client, page, key, field
):
    value = good_house.pop(field)
    house = {**good_house, key: value}
    assert model.schema.field_for(key) == field
    expected = homevalue.predict_one({**good_house, field: value}, model=model)
    assert homevalue.predict_one(house, model=model) == expected
    answer = client.post(PREDICT, json=house)
    assert answer.status_code == 200, answer.text
    assert answer.json()["price"] == expected.price
    page.apply_request({key: str(value)})
    assert page.form.values()[field] == value


def test_a_field_given_twice_is_refused_rather_than_one_value_guessed(model, good_house):
    house = {**good_house, "lat": 42.05}
    assert refusals(model.schema, house) == [
        ("lat", "gives Latitude a second time (it was given as Latitude)")
    ]


def test_a_category_is_taken_by_its_label_on_every_surface(model, good_house, client, page):
    house = {**good_house, "Neighborhood": "north ames", "Bldg_Type": "Townhouse, end unit"}
    priced = homevalue.predict_one(house, model=model)
    assert (priced.inputs["Neighborhood"], priced.inputs["Bldg_Type"]) == ("North_Ames", "TwnhsE")
    assert client.post(PREDICT, json=house).json()["price"] == priced.price
    page.apply_request({"Bldg_Type": "Townhouse, end unit"})
    assert page.form.values()["Bldg_Type"] == "TwnhsE"


def test_the_policy_reads_only_keys_that_are_not_names(model, good_house):
    """Exact names (every form's and nearly every client's) skip it: the fast lane."""
    assert model.schema.name_set.issuperset(good_house)
    resolved, problems = resolve_keys(model.schema, {"LAT": 42.0, "x": 1})
    assert resolved == {"Latitude": 42.0}
    assert [p.field for p in problems] == ["x"]


def test_every_role_names_one_field_of_the_committed_card(model):
    assert set(model.schema.roles) == set(ROLES)
    assert model.schema.place == ("Latitude", "Longitude")


def feature(card: dict, name: str) -> dict:
    return next(f for f in card["features"] if f["name"] == name)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda c: feature(c, "Latitude").update(role=None),
            "gives no field the role(s) latitude",
        ),
        (
            lambda c: [f.pop("role") for f in c["features"]],
            "a card written before roles existed",
        ),
        (
            lambda c: feature(c, "Lot_Area").update(role="living_area"),
            "Gr_Liv_Area and Lot_Area both have the role 'living_area'",
        ),
        (lambda c: feature(c, "Lot_Area").update(role="garden"), "role 'garden' is not one of"),
    ],
)
def test_a_card_missing_a_role_or_giving_one_twice_is_refused_at_load(
    model, tmp_path, change, message
):
    folder = tmp_path / "model"
    shutil.copytree(model.path, folder)
    edit_card(folder, change)
    with pytest.raises(ModelError, match=re.escape(message)):
        load_model(folder)


def test_only_the_first_unknown_keys_of_a_house_get_suggestions(model, good_house):
    """A suggestion costs ~0.2 ms (difflib): a request of 100 houses of 63 made-up keys
    each must not cost a second; every key is still refused and counted."""
    typos = {"Garage_Car": 1, "Fireplace": 1, "Full_Baths": 1, "Half_Baths": 1}
    reasons = [reason for _, reason in refusals(model.schema, {**good_house, **typos})]
    assert len(reasons) == 4
    assert [("did you mean" in r) for r in reasons] == [True] * SUGGESTED_KEYS + [False] * (
        4 - SUGGESTED_KEYS
    )


def test_a_batch_header_names_fields_exactly_and_says_which_to_rename(model, good_house, tmp_path):
    """A file's other columns are carried through, so its header is not read loosely: a
    column that would name a field in a house (`lat`) is refused with the fix."""
    source = tmp_path / "loose.csv"
    house = {("lat" if k == "Latitude" else k): v for k, v in good_house.items()}
    source.write_text(",".join(house) + "\n" + ",".join(map(str, house.values())) + "\n")
    with pytest.raises(BatchFileError, match=r"header names must be exact: rename lat to Latitude"):
        score_file(source, tmp_path / "out", model=model)


def test_an_api_request_looks_for_suggestions_only_while_its_answer_can_list_them(
    client, monkeypatch
):
    """The answer lists the first API_MAX_PROBLEMS problems: a flood of made-up keys in 100
    houses must not pay difflib for houses whose problems are never shown, yet every key is
    still counted."""
    calls = []
    real = schema_module.difflib.get_close_matches
    monkeypatch.setattr(
        schema_module.difflib,
        "get_close_matches",
        lambda *a, **k: calls.append(a[0]) or real(*a, **k),
    )
    keys = config.API_MAX_KEYS_PER_HOUSE - 1
    houses = [{f"made_up_{h}_{k}": 1 for k in range(keys)} for h in range(config.API_MAX_HOUSES)]
    answer = client.post(PREDICT, json=houses).json()
    assert answer["problems_total"] >= config.API_MAX_HOUSES * keys
    assert len(answer["problems"]) == config.API_MAX_PROBLEMS
    assert len(calls) <= SUGGESTED_KEYS  # the first house alone fills the answer
