"""Contract tests of the HTTP API (homevalue.api) with FastAPI's in-process test client.

What a client relies on: a house priced exactly as `predict_one` prices it, every class of
bad request refused with homevalue's own reasons in one error shape, the limits, the
readiness of the model, no traceback ever in a response, and one access-log line per request.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import shutil
import time

import pandas as pd
import pytest
from fastapi import Request
from fastapi.testclient import TestClient

import homevalue
from homevalue import api, config, openapi
from homevalue.errors import ValidationError
from homevalue.model import write_card_pin

PREDICT = "/v1/predict"


@pytest.fixture(scope="module")
def client():
    """The app on the committed model, started (lifespan) once for the module."""
    with TestClient(api.create_app()) as started:
        yield started


@pytest.fixture
def access_lines():
    """The access-log lines written during the test, parsed."""
    lines: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: lines.append(record.getMessage())
    api.access_log.addHandler(handler)
    yield lambda: [json.loads(line) for line in lines]
    api.access_log.removeHandler(handler)


def refused(response, status: int = 422) -> list[dict]:
    """The problems of a 422, checking its shape (all of them listed: under the cap)."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "detail", "problems", "problems_total"}
    assert body["error"] == "invalid_input"
    assert body["problems_total"] == len(body["problems"])
    return body["problems"]


def key_flood(house: dict, size: int) -> bytes:
    """A house padded with unknown keys up to `size` bytes of JSON (what the attack sent)."""
    keys = ",".join(f'"{n:x}":0' for n in range(size // 7))
    body = json.dumps(house, separators=(",", ":"))[:-1] + "," + keys
    return body[: body.rindex(",", 0, size - 1)].encode() + b"}"


def homevalue_problems(house) -> list[dict]:
    """What `predict_one` says about a bad house, in the API's problem shape (values that are
    not JSON scalars, like a list, are sent back as their repr)."""
    with pytest.raises(ValidationError) as caught:
        homevalue.predict_one(house)
    schema = homevalue.load_model().schema
    return [
        {"index": None, "field": p.field, "value": api.echoed(p.value), "reason": p.reason}
        | ({"allowed_values": api.ALLOWED_VALUES} if schema.by_name[p.field].is_category else {})
        for p in caught.value.problems
    ]


def sale_records(reference: pd.DataFrame, schema, rows: int) -> list[dict]:
    """Reference sales as a client would send them (JSON values, no price)."""
    frame = reference[schema.names].head(rows).astype(object)
    return json.loads(frame.to_json(orient="records"))


# --- good requests ------------------------------------------------------------------------


def test_one_house_is_priced_exactly_as_predict_one(client, good_house):
    response = client.post(PREDICT, json=good_house)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == homevalue.predict_one(good_house).to_dict()


def test_a_price_carries_its_bands_coverage_and_the_accuracy_here(client, model, good_house):
    """The answer has what the document promises, no more: validated by its own model."""
    body = client.post(PREDICT, json=good_house).json()
    assert openapi.Prediction.model_validate(body).model_dump(exclude_unset=True) == body
    bands = model.card["interval"]["bands"]
    given = (body["price_band"]["low"], body["price_band"]["high"])
    band = next(b for b in bands if (b["low"], b["high"]) == given)
    assert body["interval_coverage"] == round(band["coverage_test"], 4)
    assert body["accuracy_here"]["n_test"] > 0
    document = client.get("/openapi.json").json()["components"]["schemas"]["Prediction"]
    assert set(document["properties"]) == set(body) | {"explanation"}  # only when asked


def test_api_and_predict_one_agree_on_a_hundred_sales(client, reference, schema):
    houses = sale_records(reference, schema, config.API_MAX_HOUSES)
    response = client.post(PREDICT, json=houses)
    assert response.status_code == 200
    assert response.json() == [homevalue.predict_one(house).to_dict() for house in houses]


@pytest.mark.parametrize(
    "change",
    [
        {"Gr_Liv_Area": 5200, "Lot_Area": 200_000},  # above the training range: flagged
        {"Overall_Cond": None, "Fireplaces": None, "Year_Remod_Add": None},  # defaults
        {"Gr_Liv_Area": "1,800", "Year_Built": "1975"},  # numbers as text, as in a CSV
        {"Gr_Liv_Area": 1800.0, "Neighborhood": " Old_Town "},  # 1800.0 is whole; spaces
    ],
    ids=["outside-training-range", "defaults", "numeric-text", "float-and-spaces"],
)
def test_flags_defaults_and_lenient_values_match_predict_one(client, good_house, change):
    house = {**good_house, **change}
    expected = homevalue.predict_one(house).to_dict()
    assert client.post(PREDICT, json=house).json() == expected
    assert client.post(PREDICT, json=[house]).json() == [expected]


def test_only_the_required_fields_are_needed(client, schema, good_house):
    house = {name: good_house[name] for name in schema.required}
    body = client.post(PREDICT, json=house).json()
    assert body == homevalue.predict_one(house).to_dict()
    assert {f["field"] for f in body["flags"] if f["code"] == "default_used"} == (
        set(schema.names) - set(schema.required)
    )


def test_a_list_keeps_its_order_and_an_empty_list_is_empty(client, good_house):
    small, large = {**good_house, "Gr_Liv_Area": 900}, {**good_house, "Gr_Liv_Area": 2900}
    prices = [p["price"] for p in client.post(PREDICT, json=[small, large, small]).json()]
    assert prices[0] == prices[2] < prices[1]
    assert client.post(PREDICT, json=[]).json() == []


# --- each class of bad request ------------------------------------------------------------


@pytest.mark.parametrize(
    "change",
    [
        {"Gr_Liv_Area": -1200},  # outside the hard range
        {"Gr_Liv_Area": 10_001},
        {"Latitude": 45.0},
        {"Neighborhood": "Downtown"},  # not one of the categories
        {"Central_Air": "maybe"},
        {"Bldg_Type": "Townhouse"},  # a near miss: two suggestions
        {"Year_Built": None},  # required
        {"Gr_Liv_Area": "big"},  # not a number
        {"Gr_Liv_Area": "١٥٠٠", "Year_Built": "１９７５"},  # other scripts' digits
        {"Garage_Cars": True},
        {"Garage_Cars": 1.5},  # not whole
        {"Lot_Area": [9000]},
        {"Year_Built": 2000, "Year_Remod_Add": 1990},  # remodelled before built
        {"Gr_Liv_Area": -1, "Neighborhood": "Nowhere", "Year_Built": None},  # all at once
    ],
)
def test_bad_values_get_422_with_homevalue_own_reasons(client, good_house, change):
    house = {**good_house, **change}
    assert refused(client.post(PREDICT, json=house)) == homevalue_problems(house)


def test_out_of_range_and_unknown_category_say_what_is_allowed(client, good_house):
    house = {**good_house, "Gr_Liv_Area": 20_000, "Neighborhood": "Downtown"}
    response = client.post(PREDICT, json=house)
    problems = {p["field"]: p for p in refused(response)}
    assert problems["Gr_Liv_Area"]["value"] == 20_000
    assert problems["Gr_Liv_Area"]["reason"] == "must be between 200 and 10,000 sq ft"
    assert problems["Neighborhood"]["reason"].startswith("is not one of the ")
    assert problems["Neighborhood"]["allowed_values"] == api.ALLOWED_VALUES
    assert "Gr_Liv_Area = 20000: must be between 200 and 10,000 sq ft" in response.json()["detail"]


@pytest.mark.parametrize(
    "change",
    [
        {"Neighborhood": "north ames"},
        {"Neighborhood": "NORTH-AMES", "Central_Air": "yes", "Bldg_Type": "single-family detached"},
        {"Overall_Cond": "above average", "Bldg_Type": "onefam"},
    ],
)
def test_labels_and_codes_in_any_case_price_like_the_codes(client, good_house, change):
    by_label = client.post(PREDICT, json={**good_house, **change})
    assert by_label.status_code == 200
    codes = {
        "north ames": "North_Ames",
        "NORTH-AMES": "North_Ames",
        "yes": "Y",
        "single-family detached": "OneFam",
        "above average": "Above_Average",
        "onefam": "OneFam",
    }
    by_code = client.post(PREDICT, json={**good_house, **{k: codes[v] for k, v in change.items()}})
    assert by_label.json() == by_code.json()


def test_a_near_miss_gets_422_with_did_you_mean_and_where_the_list_is(client, good_house):
    response = client.post(PREDICT, json={**good_house, "Neighborhood": "Nort Ames"})
    assert response.status_code == 422
    [problem] = response.json()["problems"]
    assert problem["field"] == "Neighborhood" and problem["value"] == "Nort Ames"
    assert 'did you mean "North Ames" (North_Ames)' in problem["reason"]
    assert problem["allowed_values"] == api.ALLOWED_VALUES
    assert "Bloomington_Heights" not in response.text  # nearest values only, not the list
    assert response.json()["detail"].count(api.ALLOWED_VALUES) == 1
    card = client.get("/v1/model").json()  # where it points: every code with its label
    neighbourhood = next(f for f in card["features"] if f["name"] == "Neighborhood")
    assert "North Ames" in neighbourhood["labels"] and "North_Ames" in neighbourhood["categories"]


def test_problems_in_a_list_name_the_house_and_nothing_is_priced(client, good_house):
    houses = [good_house, {**good_house, "Gr_Liv_Area": -5}, "a house", good_house]
    problems = refused(client.post(PREDICT, json=houses))
    assert [(p["index"], p["field"]) for p in problems] == [(1, "Gr_Liv_Area"), (2, "record")]
    assert problems[1]["reason"] == "must be a mapping of field to value"


def test_a_field_the_model_does_not_take_is_refused(client, good_house):
    problems = refused(client.post(PREDICT, json={**good_house, "Gr_Liv_Aera": 1800}))
    assert problems == [
        {
            "index": None,
            "field": "Gr_Liv_Aera",
            "value": 1800,
            "reason": "is not a field of this model; did you mean Gr_Liv_Area?",
        }
    ]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "is not valid JSON"),
        (b"{'Gr_Liv_Area': 1}", "is not valid JSON"),
        (b'{"Gr_Liv_Area": NaN}', "is not valid JSON (NaN is not JSON)"),
        (b"\xff\xfe{", "is not valid JSON"),
        (b"[" * 100_000, "is not valid JSON"),  # nesting deeper than the parser goes
        (b'"a house"', "must be a house (a JSON object of field: value) or a list of houses"),
        (b"42", "must be a house"),
    ],
    ids=["empty", "python-dict", "nan", "not-utf8", "deep", "string", "number"],
)
def test_a_body_that_is_not_houses_gets_422(client, body, reason):
    headers = {"content-type": "application/json"}
    problems = refused(client.post(PREDICT, content=body, headers=headers))
    assert [p["field"] for p in problems] == ["body"]
    assert problems[0]["reason"].startswith(reason)


def test_values_that_json_cannot_carry_back_are_quoted(client, good_house):
    body = json.dumps({**good_house, "Gr_Liv_Area": "x" * 500}).replace('"x', '1e400, "y": "x')
    problems = refused(client.post(PREDICT, content=body))
    shown = {p["field"]: p["value"] for p in problems}
    assert shown["Gr_Liv_Area"] == "inf"  # 1e400 parses as infinity
    assert len(shown["y"]) == 60 and shown["y"].endswith("…")


def test_a_lone_surrogate_is_refused_with_422_and_sent_back_as_sent(client, good_house):
    """`"\\ud800"` is a valid JSON escape but not Unicode text: it cannot be encoded as UTF-8,
    so echoing it in the 422 must not fail (it was a 500), wherever it sits."""
    house = {**good_house, "Neighborhood": "\ud800", "\udfff": 1}
    body = json.dumps(house)  # ASCII: the surrogates travel as \\ud800 escapes
    problems = refused(client.post(PREDICT, content=body))
    assert [(p["field"], p["value"]) for p in problems] == [
        ("Neighborhood", "\ud800"),
        ("\udfff", 1),
    ]
    assert problems[0]["reason"].startswith("is not one of the ")


def test_raw_surrogate_bytes_are_not_utf8_and_not_json(client, good_house):
    """The same code point written as bytes (CESU-8, ED A0 80) is not UTF-8 at all."""
    body = json.dumps({**good_house, "Neighborhood": "@"}).encode().replace(b"@", b"\xed\xa0\x80")
    problems = refused(client.post(PREDICT, content=body))
    assert [p["field"] for p in problems] == ["body"]
    assert problems[0]["reason"].startswith("is not valid JSON (not UTF-8")


def test_a_key_flood_gets_one_small_problem_fast(client, good_house, monkeypatch):
    """21,000 unknown keys in 262 KB (under the body limit) got a 2.5 MB 422 listing each key
    and held the event loop 0.15-0.2 s. Now the body is refused for its size in values
    before it is even parsed (parsing it alone takes 6-15 ms)."""
    body = key_flood(good_house, config.API_MAX_BODY_BYTES - 100)
    assert len(json.loads(body)) > 20_000 and len(body) <= config.API_MAX_BODY_BYTES
    validated = []
    monkeypatch.setattr(api, "predict_one", lambda house, **kw: validated.append(house))
    timings = []
    for _ in range(3):
        start = time.perf_counter()
        response = client.post(PREDICT, content=body)
        timings.append(time.perf_counter() - start)
    assert len(response.content) < 10_000
    separators = body.count(b",") + body.count(b":")
    assert refused(response) == [
        {
            "index": None,
            "field": "body",
            "value": f"{separators:,} ',' and ':'",
            "reason": f"must hold at most {config.API_MAX_SEPARATORS:,} (about two per value: "
            f"{config.API_MAX_HOUSES} houses of at most {config.API_MAX_KEYS_PER_HOUSE} keys)",
        }
    ]
    assert validated == []
    assert min(timings) < 0.03  # unfixed: 0.15 s


def test_the_value_budget_is_checked_before_the_body_is_parsed():
    """A body over the budget is refused on a count of bytes, whatever follows."""
    body = b"[" + b"0," * (config.API_MAX_SEPARATORS + 1)  # and never closed
    with pytest.raises(api.ApiError) as caught:
        api.parse_houses(body, config.API_MAX_HOUSES)
    assert [p["field"] for p in caught.value.problems] == ["body"]
    assert caught.value.problems[0]["reason"].startswith("must hold at most")


def test_the_largest_honest_request_is_far_under_the_value_budget(good_house):
    house = {**good_house, "Neighborhood": "South_and_West_of_Iowa_State_University"}
    house.update({name: f"{value:,}" for name, value in house.items() if isinstance(value, int)})
    body = json.dumps([house] * config.API_MAX_HOUSES, indent=4).encode()
    assert (body.count(b",") + body.count(b":")) * 3 < config.API_MAX_SEPARATORS


def test_a_house_with_too_many_keys_is_refused_whole_before_validation(
    client, good_house, monkeypatch
):
    """Under the body's budget, a house of 1,000 keys: one problem, not a thousand."""
    keys = {f"extra_{n}": n for n in range(1_000)}
    validated, real = [], api.predict_one

    def counted(house, **options):
        validated.append(house)
        return real(house, **options)

    monkeypatch.setattr(api, "predict_one", counted)
    for body, index in (({**good_house, **keys}, None), ([good_house, {**good_house, **keys}], 1)):
        problems = refused(client.post(PREDICT, json=body))
        assert problems == [
            {
                "index": index,
                "field": "record",
                "value": f"an object of {len(good_house) + len(keys):,} keys",
                "reason": f"must have at most {config.API_MAX_KEYS_PER_HOUSE} keys (this model "
                f"takes {len(homevalue.load_model().schema.names)} fields)",
            }
        ]
    assert validated == [good_house]  # the good house of the list, the big ones never


def test_the_problems_listed_are_capped_and_counted(client, good_house):
    """Every house of a full list wrong in many ways: the first problems, and how many."""
    unknown = {f"extra_{n}": n for n in range(config.API_MAX_KEYS_PER_HOUSE - 20)}
    bad = {**good_house, "Gr_Liv_Area": -1, "Neighborhood": "Atlantis", **unknown}
    houses = [bad] * config.API_MAX_HOUSES
    response = client.post(PREDICT, json=houses)
    assert response.status_code == 422
    body = response.json()
    per_house = 2 + len(unknown)
    limit = config.API_MAX_PROBLEMS
    assert body["problems_total"] == per_house * len(houses)
    assert len(body["problems"]) == limit
    assert [(p["index"], p["field"]) for p in body["problems"][:3]] == [
        (0, "Neighborhood"),
        (0, "Gr_Liv_Area"),
        (0, "extra_0"),
    ]
    more = per_house * len(houses) - limit
    assert body["detail"].endswith(
        f"; and {more:,} more problems (problems_total). {api.ALLOWED_VALUES}"
    )
    assert len(response.content) < 60_000  # unfixed: 700 KB listing 4,600 problems


def test_long_keys_and_values_are_cut_where_they_are_echoed(client, good_house):
    key, value = "k" * 100_000, "v" * 100_000
    response = client.post(PREDICT, json={**good_house, key: 1, "Neighborhood": value})
    problems = refused(response)
    assert [(len(p["field"]), p["field"][-1]) for p in problems] == [(12, "d"), (60, "…")]
    assert len(problems[0]["value"]) == 60
    assert len(response.content) < 2_000  # unfixed: 200 KB, each long text sent back twice


def test_the_list_limit(client, good_house):
    limit = config.API_MAX_HOUSES
    assert len(client.post(PREDICT, json=[good_house] * limit).json()) == limit
    problems = refused(client.post(PREDICT, json=[good_house] * (limit + 1)))
    assert problems == [
        {
            "index": None,
            "field": "body",
            "value": f"a list of {limit + 1} houses",
            "reason": f"must hold at most {limit} houses (send more to the batch job)",
        }
    ]


def test_a_body_over_the_size_limit_gets_413_declared_or_streamed(client, good_house):
    padded = json.dumps(good_house, indent=config.API_MAX_BODY_BYTES // 16).encode()
    assert len(padded) > config.API_MAX_BODY_BYTES
    declared = client.post(PREDICT, content=padded)
    streamed = client.post(PREDICT, content=iter([padded[:1000], padded[1000:]]))
    for response in (declared, streamed):
        assert response.status_code == 413
        assert response.json()["error"] == "body_too_large"
    assert "transfer-encoding" in streamed.request.headers  # no Content-Length to trust


def test_a_declared_oversize_body_is_refused_without_reading_it():
    async def receive():
        raise AssertionError("the body was read")

    scope = {
        "type": "http",
        "method": "POST",
        "path": PREDICT,
        "headers": [(b"content-length", str(config.API_MAX_BODY_BYTES + 1).encode())],
    }
    request = Request(scope, receive)
    with pytest.raises(api.ApiError) as refused_early:
        asyncio.run(api.read_body(request, config.API_MAX_BODY_BYTES))
    assert refused_early.value.status == 413


def test_the_largest_list_fits_the_body_limit_even_indented(good_house):
    houses = [{**good_house, "Neighborhood": "South_and_West_of_Iowa_State_University"}]
    body = json.dumps(houses * config.API_MAX_HOUSES, indent=4).encode()
    assert len(body) < config.API_MAX_BODY_BYTES


def test_unknown_route_404_and_wrong_method_405_in_the_error_shape(client):
    missing = client.get("/v1/predict/house")
    assert missing.status_code == 404
    assert missing.json()["error"] == "not_found"
    wrong = client.get(PREDICT)
    assert wrong.status_code == 405
    assert wrong.json()["error"] == "method_not_allowed"
    assert wrong.headers["allow"] == "POST"


def test_no_traceback_leaves_the_server(monkeypatch, good_house, access_lines):
    def broken(record, *, model=None):
        raise RuntimeError("secret internal state /srv/model")

    monkeypatch.setattr(api, "predict_one", broken)
    with TestClient(api.create_app(), raise_server_exceptions=False) as client:
        response = client.post(PREDICT, json=good_house)
    assert response.status_code == 500
    assert response.json() == {
        "error": "internal_error",
        "detail": "the server failed on this request; the details are in its log",
    }
    assert "Traceback" not in response.text and "secret" not in response.text
    assert [line["status"] for line in access_lines()] == [500]


# --- health, readiness and the model card -------------------------------------------------


def test_healthz_and_readyz(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "model_version": homevalue.load_model().version}


def test_not_ready_without_a_model_then_ready_once_it_appears(tmp_path, good_house, model):
    folder = tmp_path / "model"
    with TestClient(api.create_app(folder)) as client:
        assert client.get("/healthz").status_code == 200  # alive, so not restarted in a loop
        for response in (client.get("/readyz"), client.post(PREDICT, json=good_house)):
            assert response.status_code == 503
            assert response.json()["error"] == "not_ready"
        shutil.copytree(model.path, folder)  # e.g. `make model` finished
        assert client.get("/readyz").status_code == 200
        assert client.post(PREDICT, json=good_house).status_code == 200


def test_a_garbage_booster_leaves_the_api_alive_not_ready_and_says_why(tmp_path, model):
    """A booster.json of garbage whose hash the (re-pinned) card records: a raw
    UnicodeDecodeError in the log before; now one line naming the file and the fix."""
    folder = tmp_path / "model"
    shutil.copytree(model.path, folder)
    garbage = b"\x89garbage\xff"
    (folder / config.BOOSTER_FILE).write_bytes(garbage)
    card = json.loads((folder / config.CARD_JSON).read_text())
    card["booster_sha256"] = hashlib.sha256(garbage).hexdigest()
    (folder / config.CARD_JSON).write_text(json.dumps(card))
    write_card_pin(folder)
    errors: list[logging.LogRecord] = []
    handler = logging.Handler(logging.ERROR)
    handler.emit = errors.append
    api.log.addHandler(handler)
    try:
        with TestClient(api.create_app(folder)) as client:
            assert client.get("/healthz").status_code == 200
            for response in (client.get("/readyz"), client.get("/readyz")):
                assert response.status_code == 503
                assert response.json()["error"] == "not_ready"
    finally:
        api.log.removeHandler(handler)
    assert len(errors) == 1  # logged once, not at every retry
    message = errors[0].getMessage()
    assert str(folder / config.BOOSTER_FILE) in message and "make model" in message
    assert errors[0].exc_info is None  # the sentence says it all: no traceback


def test_the_model_card(client, model):
    card = client.get("/v1/model").json()
    assert card["features"] == model.card["features"]
    assert card["metrics"] == model.card["metrics"]
    for section in ("cross_validation", "interval", "accuracy_here"):
        assert card[section] == model.card[section], section
    assert card["versions"] == model.card["versions"]
    assert card["model_version"] == model.version
    assert card["limits"] == {
        "max_houses_per_request": config.API_MAX_HOUSES,
        "max_body_bytes": config.API_MAX_BODY_BYTES,
        "max_keys_per_house": config.API_MAX_KEYS_PER_HOUSE,
        "max_problems_listed": config.API_MAX_PROBLEMS,
        "max_explained_per_request": config.API_MAX_EXPLAINED,
        "max_feedback_body_bytes": config.FEEDBACK_MAX_BODY_BYTES,
        "max_feedback_comment_chars": config.FEEDBACK_COMMENT_MAX_CHARS,
        "feedback_reports_per_client_per_hour": config.FEEDBACK_PER_API_CLIENT_PER_HOUR,
    }
    assert "artifact_sha256" not in card


def test_openapi_documents_each_field_from_the_card(client, schema):
    document = client.get("/openapi.json").json()
    house = document["components"]["schemas"]["House"]
    assert sorted(house["required"]) == sorted(schema.required)
    assert house["additionalProperties"] is False
    for feature in schema.features:
        field = house["properties"][feature.name]
        assert field["title"] == feature.label
        if feature.is_category:
            assert field["type"] == "string" and field["enum"] == list(feature.categories)
        else:
            assert field["type"] == feature.kind
            assert (field["minimum"], field["maximum"]) == (feature.min, feature.max)
            assert field.get("x-unit", "") == feature.unit
            assert feature.unit in field["description"]
    request_body = document["paths"][PREDICT]["post"]["requestBody"]
    assert f"at most {config.API_MAX_HOUSES} " in request_body["description"]
    shapes = request_body["content"]["application/json"]["schema"]["anyOf"]
    assert shapes[1]["maxItems"] == config.API_MAX_HOUSES
    example = house["examples"][0]
    assert client.post(PREDICT, json=example).status_code == 200


# --- the access log -----------------------------------------------------------------------


def test_one_access_line_per_request_and_nothing_from_the_body(client, good_house, access_lines):
    house = {**good_house, "Neighborhood": "Sawyer_West", "Lot_Area": 12345}
    client.post(PREDICT, json=house)
    client.post(PREDICT, json={**house, "Gr_Liv_Area": -1})
    client.get("/readyz?who=someone@example.com")
    client.get("/no/such/route")
    lines = access_lines()
    assert [(line["method"], line["route"], line["status"]) for line in lines] == [
        ("POST", PREDICT, 200),
        ("POST", PREDICT, 422),
        ("GET", "/readyz", 200),
        ("GET", None, 404),
    ]
    for line in lines:
        assert set(line) == {"ts", "method", "route", "status", "latency_ms", "model_version"}
        assert line["latency_ms"] >= 0 and line["model_version"] == homevalue.load_model().version
    text = json.dumps(lines)
    for private in ("Sawyer_West", "12345", "someone", "/no/such"):
        assert private not in text


def test_the_document_and_every_answer_say_whose_dollars(client, good_house):
    document = client.get("/openapi.json").json()
    assert "2006–2010" in document["info"]["description"]
    assert "dollars_of" in document["components"]["schemas"]["Prediction"]["required"]
    assert client.post(PREDICT, json=good_house).json()["dollars_of"] == "2006-2010"
