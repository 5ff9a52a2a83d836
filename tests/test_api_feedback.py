"""POST /v1/feedback with FastAPI's in-process client: a report is re-priced and kept as the
price page keeps it (homevalue.feedback), and every bad report is refused in the API's one
error shape, the flood limits with 429 and Retry-After.
"""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from feedback_helpers import stored_reports

import homevalue
from homevalue import api, config, feedback
from homevalue.errors import ValidationError

FEEDBACK = "/v1/feedback"
KEY, SECOND = "k" * 20 + "-first", "s" * 20 + "-second"


@pytest.fixture(scope="module")
def client():
    with TestClient(api.create_app()) as started:
        yield started


def problems(response) -> dict[str, str]:
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["error"] == "invalid_input" and body["problems_total"] == len(body["problems"])
    return {p["field"]: p["reason"] for p in body["problems"]}


def test_a_sale_is_kept_against_the_price_this_api_gives(client, feedback_store, good_house):
    sent = {"house": good_house, "sale": {"price": 182_000, "year": 2009, "month": 6}}
    response = client.post(FEEDBACK, json=sent)
    assert response.status_code == 201, response.text
    receipt = response.json()
    expected = homevalue.predict_one(good_house)
    assert (receipt["price"], receipt["low"], receipt["high"]) == (
        expected.price,
        expected.low,
        expected.high,
    )
    assert receipt["kind"] == "sale" and receipt["model_version"] == expected.model_version
    assert receipt["dollars_of"] == expected.dollars_of
    [row] = stored_reports(feedback_store)
    assert (row["id"], row["created_at"]) == (receipt["id"], receipt["recorded_at"])
    assert (row["source"], row["sale_price"], row["sale_year"], row["sale_month"]) == (
        "api",
        182_000,
        2009,
        6,
    )
    assert row["predicted_price"] == expected.price
    assert json.loads(row["house"])["Gr_Liv_Area"] == good_house["Gr_Liv_Area"]
    assert row["client"].startswith("api:") and "testclient" not in row["client"]


def test_looks_wrong_is_kept_with_its_reason(client, feedback_store, good_house):
    sent = {
        "house": good_house,
        "looks_wrong": {
            "reason": "The range is too wide to be useful",
            "comment": "±$20k on a $150k house",
        },
    }
    response = client.post(FEEDBACK, json=sent)
    assert response.status_code == 201, response.text
    [row] = stored_reports(feedback_store)
    assert (row["kind"], row["reason"], row["comment"]) == (
        "looks_wrong",
        "range_too_wide",
        "±$20k on a $150k house",
    )


def test_a_bad_house_is_refused_with_homevalues_own_reasons(client, feedback_store, good_house):
    house = {**good_house, "Gr_Liv_Area": -5, "Neighborhood": "Atlantis", "Pool": 1}
    with pytest.raises(ValidationError) as caught:
        homevalue.predict_one(house)
    found = problems(client.post(FEEDBACK, json={"house": house, "sale": {"price": "abc"}}))
    expected = {f"house.{p.field}": p.reason for p in caught.value.problems}
    assert found == {
        **expected,
        "house.Pool": "is not a field of this model",
        "sale.price": feedback.NOT_A_PRICE,
    }
    assert stored_reports(feedback_store) == []


@pytest.mark.parametrize(
    ("body", "field", "says"),
    [
        (b"not json", "body", "not valid JSON"),
        (b"[1, 2]", "body", "must be"),
        (b'{"house": "a house", "sale": {"price": 182000}}', "house", "mapping"),
        (b'{"house": {}, "sale": {"price": 182000}}', "house.Neighborhood", "required"),
        (b'{"house": {}, "sale": {"price": 5}}', "sale.price", "not a believable"),
        (
            b'{"house": {}, "looks_wrong": {"reason": "too_high", "comment": "\\u001b[2J"}}',
            "looks_wrong.comment",
            "U+001B",
        ),
        (b'{"house": {}}', "body", "must be"),
    ],
)
def test_bad_reports_are_refused(client, feedback_store, body, field, says):
    found = problems(
        client.post(FEEDBACK, content=body, headers={"content-type": "application/json"})
    )
    assert says in found[field]
    assert stored_reports(feedback_store) == []


def test_a_body_over_the_feedback_limit_is_refused(client, good_house):
    comment = "x" * config.FEEDBACK_MAX_BODY_BYTES
    sent = {"house": good_house, "looks_wrong": {"reason": "other", "comment": comment}}
    response = client.post(FEEDBACK, json=sent)
    assert response.status_code == 413
    assert response.json()["error"] == "body_too_large"
    assert "one house with its sale or looks_wrong" in response.json()["detail"]


def test_a_flood_from_one_client_gets_429_with_retry_after(
    client, feedback_store, good_house, monkeypatch
):
    monkeypatch.setenv("HOMEVALUE_FEEDBACK_PER_API_CLIENT_PER_HOUR", "2")
    sent = {"house": good_house, "sale": {"price": 182_000}}
    assert [client.post(FEEDBACK, json=sent).status_code for _ in range(2)] == [201, 201]
    response = client.post(FEEDBACK, json=sent)
    assert response.status_code == 429
    assert response.json()["error"] == "too_many_reports"
    assert "2 reports in the last hour" in response.json()["detail"]
    assert 3500 <= int(response.headers["retry-after"]) <= 3600
    assert len(stored_reports(feedback_store)) == 2


def test_the_daily_cap_is_for_everyone(client, feedback_store, good_house, monkeypatch):
    monkeypatch.setenv("HOMEVALUE_FEEDBACK_MAX_ROWS_PER_DAY", "1")
    sent = {"house": good_house, "sale": {"price": 182_000}}
    assert client.post(FEEDBACK, json=sent).status_code == 201
    response = client.post(FEEDBACK, json=sent)
    assert response.status_code == 429 and "today" in response.json()["detail"]


def test_each_api_key_is_its_own_sender(monkeypatch, feedback_store, good_house):
    monkeypatch.setenv("HOMEVALUE_API_KEYS", f"{KEY},{SECOND}")
    monkeypatch.setenv("HOMEVALUE_FEEDBACK_PER_API_CLIENT_PER_HOUR", "1")
    sent = {"house": good_house, "sale": {"price": 182_000}}
    with TestClient(api.create_app()) as keyed:
        assert keyed.post(FEEDBACK, json=sent).status_code == 401  # no key, no report
        first = {"Authorization": f"Bearer {KEY}"}
        assert keyed.post(FEEDBACK, json=sent, headers=first).status_code == 201
        assert keyed.post(FEEDBACK, json=sent, headers=first).status_code == 429
        assert keyed.post(FEEDBACK, json=sent, headers={"X-API-Key": SECOND}).status_code == 201
    senders = {row["client"] for row in stored_reports(feedback_store)}
    assert len(senders) == 2 and not any(KEY in s or SECOND in s for s in senders)


def test_a_store_that_cannot_be_written_is_a_503(client, tmp_path, monkeypatch, good_house):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("HOMEVALUE_FEEDBACK_DB", str(blocker / "feedback.sqlite"))
    response = client.post(FEEDBACK, json={"house": good_house, "sale": {"price": 182_000}})
    assert response.status_code == 503
    assert response.json() == {"error": "feedback_unavailable", "detail": feedback.UNAVAILABLE}
    assert str(blocker) not in response.text


def test_the_openapi_document_describes_feedback(client, model):
    document = client.get("/openapi.json").json()
    operation = document["paths"][FEEDBACK]["post"]
    body = operation["requestBody"]["content"]["application/json"]["schema"]
    assert body["properties"]["house"]["$ref"] == "#/components/schemas/House"
    assert body["required"] == ["house"]
    assert set(operation["responses"]) >= {"201", "413", "422", "429", "503"}
    assert "Retry-After" in operation["responses"]["429"]["headers"]
    reasons = document["components"]["schemas"]["LooksWrongReport"]["properties"]["reason"]
    assert reasons["enum"] == list(feedback.REASONS)
    examples = operation["requestBody"]["content"]["application/json"]["examples"]
    for name, example in examples.items():
        house, report, found = feedback.read_request(example["value"], model.card)
        assert not found and report is not None, name
        homevalue.predict_one(house, model=model)  # the examples are reports this API takes
