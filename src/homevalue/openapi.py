"""The HTTP API's OpenAPI document: the request model generated from the model card.

Clients read `/openapi.json` (and `/docs`) to learn each field's JSON type, unit, hard range,
training range, categories and default; all of it comes from the card the served model was
trained with, so the document cannot drift from the model. These pydantic models only
describe: the API never validates with them (homevalue.schema does, through `predict_one`),
and answers are written as JSON directly, so pydantic is off the request path.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, create_model

from homevalue import config
from homevalue.feedback import REASONS
from homevalue.schema import Feature, Schema, fmt_for

REF_TEMPLATE = "#/components/schemas/{model}"


def feature_field(feature: Feature) -> tuple[Any, Any]:
    """One field of the documented House: its JSON type, range or categories, unit and help."""
    unit = f" {feature.unit}" if feature.unit else ""
    if feature.is_category:
        annotation: Any = Literal[tuple(feature.categories)]
        limits, seen = {}, ""
    else:
        annotation = int if feature.kind == "integer" else float
        limits = {"ge": feature.min, "le": feature.max}
        seen = (
            f" Sold houses ranged {fmt_for(feature, feature.train_min)}–"
            f"{fmt_for(feature, feature.train_max)}{unit}: a price outside that is flagged."
        )
    extra: dict[str, Any] = {"x-unit": feature.unit} if feature.unit else {}
    if feature.is_category:  # the enum is the codes; each code's label is accepted too
        extra["x-labels"] = dict(zip(feature.categories, feature.shown_labels, strict=True))
        seen = (
            " The label of a category is accepted for its code (x-labels), in any case, "
            "with spaces, underscores or hyphens alike; answers use the code."
        )
    if feature.required:
        default, missing = ..., " Required."
    elif feature.default_from:  # no fixed default: say which field it copies
        default, missing = None, f" Optional: defaults to {feature.default_from}."
        extra["x-default-from"] = feature.default_from
    else:
        default = int(feature.default) if feature.kind == "integer" else feature.default
        missing = " Optional: defaults to the typical value."
    if feature.at_least:
        missing += f" Not earlier than {feature.at_least}."
        extra["x-at-least"] = feature.at_least
    description = f"{feature.label}{f' ({feature.unit})' if unit else ''}.{seen}{missing}"
    if feature.help:
        description += f" {feature.help}"
    field = Field(
        default,
        title=feature.label,
        description=description,
        json_schema_extra=lambda schema: _document(schema, extra, default),
        **limits,
    )
    return annotation, field


def _document(schema: dict, extra: dict, default: Any) -> None:
    """Add our x- keys; drop pydantic's `"default": null`, which no field really has."""
    schema.update(extra)
    if default is None:
        schema.pop("default", None)


EXPLAIN_HELP = (
    "Not a field of the house: true adds `explanation` to this house's answer (why the price "
    "is what it is, each field's contribution in dollars); overrides `?explain`."
)


def house_model(schema: Schema) -> type[BaseModel]:
    """A pydantic model of one house, built from the card's schema; documentation only."""
    fields: dict[str, Any] = {feature.name: feature_field(feature) for feature in schema.features}
    fields["explain"] = (bool, Field(False, title="Explain this price", description=EXPLAIN_HELP))
    settings = ConfigDict(
        extra="forbid",
        title="House",
        json_schema_extra={"examples": [schema.default_record()]},
    )
    return create_model("House", __config__=settings, **fields)


class Flag(BaseModel):
    """A reason to be wary of a price that is still given."""

    code: str = Field(description="e.g. above_training_range, default_used, price_clamped")
    field: str
    message: str = Field(description="plain words, as the dashboard shows them")


class PriceBand(BaseModel):
    """A band of predicted price; each band has its own interval, calibrated on its own."""

    low: float | None = Field(description="lowest price in the band (USD); null: no lower end")
    high: float | None = Field(description="the band ends below this (USD); null: no upper end")
    label: str = Field(description='e.g. "$150k – $200k", "under $100k", "$300k and over"')


class AccuracyHere(BaseModel):
    """How far off the model was, on the test sales, for houses like this one."""

    scope: Literal["neighbourhood", "price_band"] = Field(
        description="the house's neighbourhood when it had enough test sales, else its "
        "band of predicted price"
    )
    value: str = Field(description="the neighbourhood's code, or the band's label")
    median_error_percent: float | None = Field(
        description="median absolute % error of the model on those test sales"
    )
    n_test: int = Field(description="how many test sales that median is over")


class Contribution(BaseModel):
    """One field's share of the price (exact TreeSHAP contributions from LightGBM)."""

    feature: str = Field(description="the field's name, as in the request")
    label: str = Field(description="the field as the dashboard names it")
    value: int | float | str = Field(description="the house's value (defaults filled in)")
    value_text: str = Field(description='the value as people write it, e.g. "1,472 sq ft"')
    log: float = Field(
        description="its contribution to the log price; base_log plus all of them is the "
        "model's log price (before the price bounds)"
    )
    dollars: int = Field(
        description="its contribution in whole dollars; base_price plus all of them is price"
    )
    text: str = Field(description='e.g. "Living area 1,472 sq ft: +$12,300"')


class Explanation(BaseModel):
    """Why the price is what it is: from a typical house's price, field by field."""

    base_price: int = Field(
        description="the typical house's price (USD): exp(base_log), to the dollar"
    )
    base_log: float = Field(description="the model's expected log price over its training sales")
    price: int = Field(description="the price explained (the answer's price)")
    contributions: list[Contribution] = Field(
        description="every field, largest effect in dollars first. Dollars are the log "
        "contributions times the logarithmic mean of base_price and price, rounded to add "
        "up exactly"
    )


class Prediction(BaseModel):
    """One priced house: what `homevalue.predict_one` returns, as JSON."""

    price: float = Field(
        description="estimated sale price (USD of the years in `dollars_of`, rounded to the dollar)"
    )
    low: float = Field(description="lower end of the 80% interval (USD of `dollars_of`)")
    high: float = Field(description="upper end of the 80% interval (USD of `dollars_of`)")
    interval_coverage: float | None = Field(
        description="share of the test sales priced in the same band (`price_band`) whose "
        "sale price fell inside their interval, e.g. 0.81"
    )
    price_band: PriceBand
    accuracy_here: AccuracyHere
    flags: list[Flag] = Field(description="reasons to be wary of this price; often empty")
    model_version: str
    dollars_of: str = Field(
        description="the years whose dollars every price is in, e.g. `2006-2010`: the years "
        "of the sales the model learned from, not today's dollars",
        examples=["2006-2010"],
    )
    explanation: Explanation | None = Field(
        None, description='only when asked for (`?explain=true`, or `"explain": true`)'
    )


class Problem(BaseModel):
    """One reason a house (or the body) was refused, in homevalue's own words."""

    index: int | None = Field(
        description="the house's position in a list (0 = first); null when one house was sent"
    )
    field: str = Field(description="the field refused, or `body` / `record` for the whole")
    value: Any = Field(description="the value as sent (long text cut)")
    reason: str = Field(
        description="why, and for a category near miss the nearest values "
        "('did you mean \"North Ames\" (North_Ames)?')"
    )
    allowed_values: str | None = Field(
        None, description="for a category field: where the full list of its values is"
    )


class Error(BaseModel):
    """Every refusal has this shape: a code to branch on and a sentence for people."""

    error: str = Field(description="not_found, body_too_large, not_ready, internal_error, ...")
    detail: str


class InvalidInput(Error):
    """422: the problems in every house at once, so a client can fix them in one go."""

    problems: list[Problem] = Field(
        description=f"the first {config.API_MAX_PROBLEMS} problems found, in order"
    )
    problems_total: int = Field(
        description="how many problems were found in all (more than are listed when over "
        f"{config.API_MAX_PROBLEMS}; `detail` says how many more)"
    )


class SaleReport(BaseModel):
    """What the house actually sold for."""

    model_config = ConfigDict(extra="forbid")
    price: float | str = Field(
        description="the sale price in whole dollars of the sale: a number, or text as "
        'written ("$182,000"); refused outside the training sales\' prices widened '
        f"{config.FEEDBACK_PRICE_FACTOR:g} times each way (GET /v1/model: data.price_range)",
        examples=[182000],
    )
    year: int | None = Field(None, description="the year it sold (optional)")
    month: int | None = Field(
        None, ge=1, le=12, description="the month it sold, 1-12 (optional; needs the year)"
    )


class LooksWrongReport(BaseModel):
    """The price looks wrong, for one of a fixed set of reasons."""

    model_config = ConfigDict(extra="forbid")
    reason: Literal[tuple(REASONS)] = Field(
        description="; ".join(f"{code}: {label}" for code, label in REASONS.items())
        + " (the label is accepted too, in any case)"
    )
    comment: str | None = Field(
        None,
        max_length=config.FEEDBACK_COMMENT_MAX_CHARS,
        description=f"optional, at most {config.FEEDBACK_COMMENT_MAX_CHARS} characters of "
        "plain text (line breaks allowed, no other control characters); required for other",
    )


class FeedbackReceipt(BaseModel):
    """201: the report was kept, against the price this API gave the house."""

    id: int = Field(description="the report's number in the feedback store")
    recorded_at: str = Field(description="when it was kept (UTC, ISO 8601)")
    kind: Literal["sale", "looks_wrong"]
    model_version: str
    price: float = Field(description="the price the report was kept against (USD of dollars_of)")
    low: float = Field(description="lower end of that price's 80% interval")
    high: float = Field(description="upper end of that price's 80% interval")
    dollars_of: str


class Health(BaseModel):
    """The process answers (liveness)."""

    status: Literal["ok"]


class Ready(BaseModel):
    """The model is loaded and prices can be given (readiness)."""

    status: Literal["ready"]
    model_version: str


class ModelCard(BaseModel):
    """The model card less the artifact's hashes, plus the API's limits."""

    model_config = ConfigDict(extra="allow")
    model_version: str
    features: list[dict] = Field(
        description="the schema: each field's name, kind, label, unit, min, max, train_min, "
        "train_max, categories, labels (one per category, accepted like the code), default, "
        "required and help"
    )
    metrics: dict
    versions: dict
    limits: dict


def document_request(openapi: dict, path: str, schema: Schema | None) -> dict:
    """Put the generated House model into the OpenAPI document as the body of POST `path`."""
    if schema is None:  # no model yet: the shape, not the fields
        body: dict = {"type": ["object", "array"]}
    else:
        house = house_model(schema)
        houses = Annotated[list[house], Field(max_length=config.API_MAX_HOUSES)]
        body = TypeAdapter(house | houses).json_schema(ref_template=REF_TEMPLATE)
        openapi.setdefault("components", {}).setdefault("schemas", {}).update(body.pop("$defs"))
    openapi["paths"][path]["post"]["parameters"] = [EXPLAIN_PARAMETER]
    openapi["paths"][path]["post"]["requestBody"] = {
        "required": True,
        "description": f"one house, or a list of at most {config.API_MAX_HOUSES} "
        f"(body at most {config.API_MAX_BODY_BYTES:,} bytes)",
        "content": {"application/json": {"schema": body}},
    }
    return openapi


ONE_REPORT = "a feedback report is one house with its sale or looks_wrong: send one per request"


def feedback_examples(schema: Schema) -> dict:
    """A report of each kind about the typical house, given by its required fields (the
    card's names: a model that renames a field documents the new name)."""
    typical = schema.default_record()
    house = {name: typical[name] for name in schema.required}
    return {
        "sale": {
            "summary": "the actual sale price",
            "value": {"house": house, "sale": {"price": 182000, "year": 2009, "month": 6}},
        },
        "looks_wrong": {
            "summary": "this price looks wrong",
            "value": {
                "house": house,
                "looks_wrong": {"reason": "too_low", "comment": "new roof and kitchen in 2008"},
            },
        },
    }


def document_feedback(openapi: dict, path: str, schema: Schema | None) -> dict:
    """The body of POST `path`: a house (the House of POST /v1/predict, once the model is
    loaded: `schema`) with exactly one of sale and looks_wrong."""
    reports = {model.__name__: model for model in (SaleReport, LooksWrongReport)}
    schemas = openapi.setdefault("components", {}).setdefault("schemas", {})
    for name, model in reports.items():
        schemas[name] = model.model_json_schema(ref_template=REF_TEMPLATE)
    has_house = schema is not None
    house = {"$ref": REF_TEMPLATE.format(model="House")} if has_house else {"type": "object"}
    body = {
        "type": "object",
        "properties": {
            "house": {**house, "description": "the house as priced (as sent to /v1/predict)"},
            "sale": {"$ref": REF_TEMPLATE.format(model="SaleReport")},
            "looks_wrong": {"$ref": REF_TEMPLATE.format(model="LooksWrongReport")},
        },
        "required": ["house"],
        "additionalProperties": False,
        "oneOf": [{"required": ["sale"]}, {"required": ["looks_wrong"]}],
    }
    openapi["paths"][path]["post"]["requestBody"] = {
        "required": True,
        "description": "a house as priced, with what it sold for (`sale`) or why its price "
        f"looks wrong (`looks_wrong`); body at most {config.FEEDBACK_MAX_BODY_BYTES:,} bytes",
        "content": {"application/json": {"schema": body}},
    }
    if schema is not None:
        content = openapi["paths"][path]["post"]["requestBody"]["content"]["application/json"]
        content["examples"] = feedback_examples(schema)
    return openapi


EXPLAIN_PARAMETER = {
    "name": "explain",
    "in": "query",
    "required": False,
    "description": "true (or 1) adds `explanation` to every house's answer: each field's "
    "contribution in dollars, from a typical house's price to this one's; a house's own "
    f'`"explain"` overrides it. At most {config.API_MAX_EXPLAINED} houses per request.',
    "schema": {"type": "boolean", "default": False},
}

KEY_RESPONSES = {
    "401": {
        "description": "no API key was sent (with `WWW-Authenticate: Bearer`)",
        "content": {"application/json": {"schema": {"$ref": REF_TEMPLATE.format(model="Error")}}},
    },
    "403": {
        "description": "the API key sent is not accepted",
        "content": {"application/json": {"schema": {"$ref": REF_TEMPLATE.format(model="Error")}}},
    },
}


def document_keys(openapi: dict, open_paths: tuple[str, ...]) -> dict:
    """Declare the two ways to send a key, required everywhere but `open_paths`."""
    schemes = openapi.setdefault("components", {}).setdefault("securitySchemes", {})
    schemes["bearer"] = {"type": "http", "scheme": "bearer"}
    schemes["apiKey"] = {"type": "apiKey", "in": "header", "name": "X-API-Key"}
    openapi["components"].setdefault("schemas", {}).setdefault(
        "Error", Error.model_json_schema(ref_template=REF_TEMPLATE)
    )
    openapi["security"] = [{"bearer": []}, {"apiKey": []}]
    for path, operations in openapi["paths"].items():
        for operation in operations.values():
            if path in open_paths:
                operation["security"] = []
            else:
                operation.setdefault("responses", {}).update(KEY_RESPONSES)
    return openapi


def description(path: str) -> str:
    """The document's introduction."""
    return f"""House prices for Ames, Iowa, one request per house, from the same model,
validation and post-processing as the homevalue dashboards.

`POST {path}` takes a house (an object of field: value) or a list of at most
{config.API_MAX_HOUSES}; it answers with the price, its 80% interval (with how often such
intervals held on the test sales priced in the same band), the model's median error for
houses like it, flags (inputs outside
what the model was trained on, defaults assumed, a capped price) and the model version, or
422 with the problems found (house index, field, value, reason; the first
{config.API_MAX_PROBLEMS} listed, all counted in `problems_total`). A house may have at most
{config.API_MAX_KEYS_PER_HOUSE} keys. `GET /v1/model` is the model card: every field's type,
unit, range, categories and default, the metrics, versions and limits.

**Prices are in the dollars of the years the model's sales were made, not today's**: 2006–2010
for the shipped model (the Ames sales it learned from). Each answer says so in `dollars_of`,
and `GET /v1/model` gives the years in `data.sale_years`.

**Why this price.** `?explain=true` (or `"explain": true` in a house) adds `explanation`:
the price of a typical house (`base_price`) and every field's contribution to this
house's price, largest first, in log price (exact TreeSHAP values from LightGBM, adding up
to the model's log price) and in whole dollars that add up exactly to `price`; at most
{config.API_MAX_EXPLAINED} houses per request.

**Feedback.** `POST /v1/feedback` takes a house as priced with what it actually sold for
(`sale`) or why its price looks wrong (`looks_wrong`: a reason, an optional comment). The
house is priced again here and the report kept against that price (201, with the price it
was kept against); the accuracy on reported sales is shown beside the test sales' on the
Model report page. At most {config.FEEDBACK_PER_API_CLIENT_PER_HOUR} reports an hour per
API key (per address when the API is open), and a cap per day for everyone: over either,
429 with `Retry-After`."""


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    413: {"model": Error, "description": "the body is over the size limit"},
    422: {
        "model": InvalidInput,
        "description": "a house or the body was refused: each problem (the first "
        f"{config.API_MAX_PROBLEMS}) with its field, value and reason, and how many in all",
    },
    503: {"model": Error, "description": "the model is not loaded (see /readyz)"},
}

RETRY_AFTER = {"Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}}
FEEDBACK_RESPONSES: dict[int | str, dict[str, Any]] = {
    413: {"model": Error, "description": "the body is over the size limit"},
    422: {
        "model": InvalidInput,
        "description": "the house (its fields named `house.<field>`) or the report was "
        "refused: each problem with its field, value and reason",
    },
    429: {
        "model": Error,
        "description": "too many reports from this API key (or address) in the last hour, or "
        "from everyone today; nothing was kept",
        "headers": RETRY_AFTER,
    },
    503: {
        "model": Error,
        "description": "the model is not loaded, or the feedback store cannot be written now "
        "(with Retry-After when it is only busy)",
        "headers": RETRY_AFTER,
    },
}
