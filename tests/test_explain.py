"""Why this price: LightGBM's exact contributions, in log price and in dollars, the same
numbers from predict_one, the API, the batch job and the price page."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from homevalue import api, cli, config, predict_one, score_frame
from homevalue.batch import score_file
from homevalue.errors import BatchFileError
from homevalue.explain import (
    BASE_COLUMN,
    COLUMN_PREFIX,
    columns,
    dollar_contributions,
    signed_money,
    value_text,
)
from homevalue.predict import encode_frame, explain_prediction, finish
from homevalue.schema import validate_frame
from homevalue.ui import PricePage

PREDICT = "/v1/predict"


def priceable(reference: pd.DataFrame, schema) -> pd.DataFrame:
    """Reference sales the model can price (a neighbourhood may be missing from training)."""
    known = reference["Neighborhood"].isin(schema.by_name["Neighborhood"].categories)
    return reference[known].reset_index(drop=True)[schema.names]


@pytest.fixture(scope="module")
def reference_sales(model) -> pd.DataFrame:
    return priceable(pd.read_csv(model.path / config.REFERENCE_SALES), model.schema)


@pytest.fixture(scope="module")
def client():
    with TestClient(api.create_app()) as started:
        yield started


# --- LightGBM's contributions -------------------------------------------------------------


def test_contributions_sum_to_the_log_price_for_every_reference_sale(model, reference_sales):
    checked = validate_frame(model.schema, reference_sales)
    assert checked.ok.all()
    matrix = encode_frame(model, checked.values)
    values = model.booster.contributions(matrix, threads=2)
    assert values.shape == (len(reference_sales), len(model.schema.names) + 1)
    np.testing.assert_allclose(values.sum(axis=1), model.predict_log(matrix), rtol=0, atol=1e-9)
    assert np.ptp(values[:, -1]) == 0  # the expected value: one for the whole model
    assert np.all(values[:, :-1] != 0, axis=0).any()  # not a column of zeros pretending


def test_contributions_refuse_a_matrix_of_the_wrong_width(model):
    with pytest.raises(ValueError, match="columns given"):
        model.booster.contributions(np.zeros((1, 3)))
    assert model.booster.contributions(np.zeros((0, len(model.schema.names)))).shape == (
        0,
        len(model.schema.names) + 1,
    )


# --- dollars ------------------------------------------------------------------------------


def test_dollars_sum_to_the_shown_price_for_every_reference_sale(model, reference_sales):
    scored = score_frame(reference_sales, model=model, explain=True, threads=2).scored
    assert len(scored) == len(reference_sales)
    added = scored[[c for c in columns(model.schema) if c != BASE_COLUMN]].sum(axis=1)
    gap = (scored[BASE_COLUMN] + added - scored["predicted_price"]).abs()
    assert gap.max() <= 1, scored.loc[gap.idxmax()]


def test_dollars_are_the_log_mean_share_of_each_log_contribution():
    """LMDI: dollars_i = log_i * (R - B) / (ln R - ln B), rounded to add up exactly."""
    logs = np.array([[0.10, -0.05, 0.02], [0.0, 0.0, 0.0], [1e-12, -1e-12, 0.3]])
    base_log = np.log(150_000.0)
    raw = np.exp(base_log + logs.sum(axis=1))
    price = np.round(raw)
    dollars, base_price = dollar_contributions(logs, base_log, price, np.zeros(3, bool))
    assert base_price == 150_000
    assert list(dollars.sum(axis=1) + base_price) == list(price)
    expected = logs[0] * (raw[0] - 150_000) / logs[0].sum()
    assert np.abs(dollars[0] - expected).max() <= 1
    assert list(dollars[1]) == [0, 0, 0]
    assert np.all(np.sign(dollars[0]) == np.sign(logs[0]))


def test_dollars_near_the_typical_house_do_not_blow_up():
    """Logs summing to almost nothing: each is worth the base price per unit of log, not
    (R - B) / sum, which would divide by almost zero."""
    logs = np.array([[0.2, -0.2 + 1e-13, 0.0]])
    dollars, base_price = dollar_contributions(logs, np.log(100_000.0), np.array([100_000.0]), [0])
    assert abs(dollars[0, 0] - 20_000) <= 1 and abs(dollars[0, 1] + 20_000) <= 1
    assert dollars.sum() + base_price == 100_000


def test_a_clamped_price_is_explained_up_to_its_bound():
    logs = np.array([[3.0, 1.0, -0.5]])
    ceiling = 1_250_000.0
    dollars, base_price = dollar_contributions(logs, np.log(150_000.0), [ceiling], [True])
    assert dollars.sum() + base_price == ceiling
    assert np.all(np.sign(dollars) == np.sign(logs))
    shares = dollars[0] / dollars[0].sum()
    np.testing.assert_allclose(shares, logs[0] / logs[0].sum(), atol=1e-5)


def test_labels_read_as_the_form_shows_the_house(model):
    by_name = model.schema.by_name
    assert value_text(by_name["Gr_Liv_Area"], 1472) == "1,472 sq ft"
    assert value_text(by_name["Year_Built"], 1976) == "1976"
    assert value_text(by_name["Neighborhood"], "North_Ames") == "North Ames"
    assert signed_money(12_300) == "+$12,300" and signed_money(-4_100) == "−$4,100"


# --- one answer, wherever it is asked -----------------------------------------------------


def test_predict_one_explains_the_price_it_gives(model, good_house):
    plain = predict_one(good_house, model=model)
    explained = predict_one(good_house, model=model, explain=True)
    assert plain.explanation is None and "explanation" not in plain.to_dict()
    e = explained.explanation
    assert (explained.price, explained.low, explained.high) == (plain.price, plain.low, plain.high)
    assert e.price == explained.price
    assert e.base_price + sum(c.dollars for c in e.contributions) == explained.price
    assert [c.feature for c in e.contributions] == model.schema.names
    area = next(c for c in e.contributions if c.feature == "Gr_Liv_Area")
    assert area.text.startswith("Living area 1,500 sq ft: ")
    steps = e.steps()
    assert steps[0].end == e.base_price and steps[-1].end == e.price
    assert all(a.end == b.start for a, b in zip(steps[1:-2], steps[2:-1], strict=True))
    assert len(steps) == 9  # base, six drivers, the other ten, price


def houses(reference_sales, positions=(0, 7, 100, 1000, 2000)) -> list[dict]:
    return [
        {k: (v.item() if hasattr(v, "item") else v) for k, v in reference_sales.iloc[i].items()}
        for i in positions
    ]


def test_predict_one_the_api_and_the_batch_job_give_the_same_explanation(
    model, reference_sales, client, tmp_path
):
    chosen = houses(reference_sales)
    one = [predict_one(h, model=model, explain=True).to_dict() for h in chosen]
    answered = client.post(f"{PREDICT}?explain=true", json=chosen)
    assert answered.status_code == 200, answered.text
    assert answered.json() == one
    source = tmp_path / "houses.csv"
    pd.DataFrame(chosen).to_csv(source, index=False)
    assert cli.main(["batch", "score", str(source), "--out", str(tmp_path), "--explain"]) == 0
    batch = pd.read_csv(tmp_path / "houses.scored.csv")
    for row, answer in zip(batch.itertuples(index=False), one, strict=True):
        explanation = answer["explanation"]
        by_feature = {c["feature"]: c["dollars"] for c in explanation["contributions"]}
        assert getattr(row, BASE_COLUMN) == explanation["base_price"]
        for name in model.schema.names:
            assert getattr(row, COLUMN_PREFIX + name) == by_feature[name], name
        assert row.predicted_price == answer["price"]


def test_the_api_explains_on_request_only(client, good_house):
    plain = client.post(PREDICT, json=good_house).json()
    assert "explanation" not in plain
    asked = client.post(PREDICT, json={**good_house, "explain": True}).json()
    assert asked["explanation"]["price"] == asked["price"] == plain["price"]
    contributions = asked["explanation"]["contributions"]
    dollars = [abs(c["dollars"]) for c in contributions]
    assert dollars == sorted(dollars, reverse=True)
    assert (
        asked["explanation"]["base_price"] + sum(c["dollars"] for c in contributions)
        == (asked["price"])
    )
    declined = client.post(f"{PREDICT}?explain=1", json={**good_house, "explain": False}).json()
    assert "explanation" not in declined
    assert "explanation" not in client.post(f"{PREDICT}?explain=false", json=good_house).json()


@pytest.mark.parametrize(
    ("query", "body_extra", "field"),
    [("?explain=yes", {}, "?explain"), ("", {"explain": "true"}, "explain")],
)
def test_a_bad_explain_option_is_refused_by_name(client, good_house, query, body_extra, field):
    response = client.post(f"{PREDICT}{query}", json={**good_house, **body_extra})
    assert response.status_code == 422
    problems = response.json()["problems"]
    assert [p["field"] for p in problems] == [field]
    assert "true or false" in problems[0]["reason"]


def test_explanations_per_request_are_limited(client, good_house):
    """An explanation costs twenty prices: a list of 100 cannot all ask for one."""
    limit = config.API_MAX_EXPLAINED
    response = client.post(f"{PREDICT}?explain=true", json=[good_house] * (limit + 1))
    assert response.status_code == 422
    (problem,) = response.json()["problems"]
    assert problem["field"] == "explain" and f"at most {limit} houses" in problem["reason"]
    mixed = [{**good_house, "explain": True}] * limit + [good_house] * 5
    answers = client.post(PREDICT, json=mixed).json()
    assert ["explanation" in a for a in answers] == [True] * limit + [False] * 5
    assert client.get("/v1/model").json()["limits"]["max_explained_per_request"] == limit


def test_the_api_document_describes_explain(client):
    document = client.get("/openapi.json").json()
    operation = document["paths"][PREDICT]["post"]
    assert [p["name"] for p in operation["parameters"]] == ["explain"]
    schemas = document["components"]["schemas"]
    assert "explain" in schemas["House"]["properties"]
    assert {"base_price", "contributions"} <= set(schemas["Explanation"]["properties"])
    assert "?explain=true" in document["info"]["description"]


# --- the batch job -------------------------------------------------------------------------


def test_batch_explain_columns_only_when_asked_and_refused_in_the_input(
    model, good_house, tmp_path
):
    source = tmp_path / "in.csv"
    pd.DataFrame([good_house]).to_csv(source, index=False)
    plain = score_file(source, tmp_path / "plain", model=model)
    assert not any(c.startswith(COLUMN_PREFIX) for c in pd.read_csv(plain.scored_path).columns)
    header_only = tmp_path / "empty.csv"
    header_only.write_text(",".join(good_house) + "\n")
    empty = score_file(header_only, tmp_path / "empty", model=model, explain=True)
    assert set(columns(model.schema)) <= set(pd.read_csv(empty.scored_path).columns)
    clashing = tmp_path / "clash.csv"
    pd.DataFrame([{**good_house, "contribution_Gr_Liv_Area": 1}]).to_csv(clashing, index=False)
    score_file(clashing, tmp_path / "ok", model=model)  # a column like any other
    with pytest.raises(BatchFileError, match="contribution_Gr_Liv_Area"):
        score_file(clashing, tmp_path / "refused", model=model, explain=True)


def test_score_frame_explains_each_row_as_predict_one_does(model, good_house):
    frame = pd.DataFrame([good_house, {**good_house, "Gr_Liv_Area": -5}, good_house])
    result = score_frame(frame, model=model, explain=True)
    assert list(result.scored["row"]) == [1, 3]
    single = predict_one(good_house, model=model, explain=True).explanation
    expected = [single.base_price, *(c.dollars for c in single.contributions)]
    for _, row in result.scored.iterrows():
        assert [row[c] for c in columns(model.schema)] == expected


class Absurd:
    """A prediction backend whose every log price (99) is far over the card's ceiling."""

    name = "absurd"

    def predict(self, matrix: np.ndarray, *, threads: int = 1) -> np.ndarray:
        return np.full(len(matrix), 99.0)

    def predict_row(self, row) -> float:
        return 99.0


def test_a_clamped_price_from_the_model_is_explained_to_its_bound(model, good_house):
    """The explanation follows the price shown: finish() clamps; dollars add up to it."""
    prediction = predict_one(good_house, model=model)
    ceiling = model.card["price_bounds"]["ceiling"]
    absurd = model.with_backend(Absurd())
    _, _, _, clamped, _ = finish(absurd, np.array([99.0]))
    assert clamped[0]
    capped = explain_prediction(
        type(prediction)(ceiling, ceiling, ceiling, (), model.version, prediction.inputs),
        model=absurd,
    ).explanation
    assert capped.base_price + sum(c.dollars for c in capped.contributions) == ceiling


# --- the price page ------------------------------------------------------------------------


def test_the_pages_waterfall_is_the_apis_explanation(model, client):
    page = PricePage(model)
    page.form.inputs["Gr_Liv_Area"].value = 2400
    page.form.inputs["Neighborhood"].value = "Somerset"
    answer = client.post(f"{PREDICT}?explain=true", json=page.form.values()).json()
    assert page.explanation.to_dict() == answer["explanation"]
    steps = page.explanation.steps()
    bars = page.waterfall.bars
    assert list(bars.x) == [s.text for s in steps]
    tops = bars.y[0] + bars.y[1]
    assert list(tops) == [max(s.start, s.end) for s in steps]
    assert tops[-1] == answer["price"] and bars.y[1][0] == answer["explanation"]["base_price"]
    summary = repr(page.drivers)
    assert summary.startswith("Why this price: Typical house: $")
    assert f"Price: ${answer['price']:,.0f}" in summary
    assert (
        "Living area 2,400 sq ft" in summary
        and "Living area 2,400 sq ft" in page.drivers_html.value
    )


def test_the_waterfall_follows_every_change_and_keeps_the_last_on_bad_input(model):
    page = PricePage(model)
    first = page.explanation
    page.form.inputs["Garage_Cars"].value = 0
    assert page.explanation != first
    assert page.explanation == explain_prediction(page.last, model=model).explanation
    kept = page.explanation
    page.form.inputs["Gr_Liv_Area"].value = 50_000  # refused: marked, last answer kept
    assert page.explanation == kept
