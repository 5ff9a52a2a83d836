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


def house_model(schema: Schema) -> type[BaseModel]:
    """A pydantic model of one house, built from the card's schema; documentation only."""
    fields = {feature.name: feature_field(feature) for feature in schema.features}
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


class Prediction(BaseModel):
    """One priced house: what `homevalue.predict_one` returns, as JSON."""

    price: float = Field(description="estimated sale price (USD, rounded to the dollar)")
    low: float = Field(description="lower end of the 80% interval (USD)")
    high: float = Field(description="upper end of the 80% interval (USD)")
    flags: list[Flag] = Field(description="reasons to be wary of this price; often empty")
    model_version: str


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
    openapi["paths"][path]["post"]["requestBody"] = {
        "required": True,
        "description": f"one house, or a list of at most {config.API_MAX_HOUSES} "
        f"(body at most {config.API_MAX_BODY_BYTES:,} bytes)",
        "content": {"application/json": {"schema": body}},
    }
    return openapi


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
{config.API_MAX_HOUSES}; it answers with the price, its 80% interval, flags (inputs outside
what the model was trained on, defaults assumed, a capped price) and the model version, or
422 with the problems found (house index, field, value, reason; the first
{config.API_MAX_PROBLEMS} listed, all counted in `problems_total`). A house may have at most
{config.API_MAX_KEYS_PER_HOUSE} keys. `GET /v1/model` is the model card: every field's type,
unit, range, categories and default, the metrics, versions and limits."""


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    413: {"model": Error, "description": "the body is over the size limit"},
    422: {
        "model": InvalidInput,
        "description": "a house or the body was refused: each problem (the first "
        f"{config.API_MAX_PROBLEMS}) with its field, value and reason, and how many in all",
    },
    503: {"model": Error, "description": "the model is not loaded (see /readyz)"},
}
