"""The feature schema, the input policy and the validation built from them.

The schema is written into the model card at training time and read back from it at
serving time, so the form, the validation and the batch column checks always describe the
model that is actually loaded. Two validators share the same rules: `validate_record` for
one house (pure Python, microseconds) and `validate_frame` for many (vectorised pandas).
`tests/test_schema.py` holds them to the same answers.

The input policy, one for every surface (`validate_record`, so `predict_one` and the API;
the price page's links), is `Schema.field_for` and `Schema.unknown_reason`:
- a key names a field by its name exactly, or by its name, label, role or one of the role's
  ALIASES in any case and with any separators ("lat", "living area", "GR_LIV_AREA");
- a key that names no field is refused, naming the nearest field ("did you mean ..."),
  so a misspelt optional field is never silently replaced by its default;
- a category is given by its code or its label, in any case (`Feature.code_for`).
A batch file is the one exception, by design: its header must name fields exactly, and
its other columns (ids, addresses) are carried through to the output untouched.

Fields have roles (ROLES): the pages find the house's location, living area, type,
neighbourhood and age through `Schema.role`, never by an Ames column name, so a model
whose card renames a field keeps working.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Literal

import numpy as np
import pandas as pd

from homevalue.errors import ModelSchemaError, Problem, ValidationError

Kind = Literal["integer", "number", "category"]

# --- one vocabulary: codes and labels, in any case and with any separators ---------------
# A category is named by its code (North_Ames) or its label (North Ames), and people and
# spreadsheets vary the rest: "north ames", "NORTH-AMES", "north_ames". Both are reduced to a
# key: casefolded, "&" read as "and", and spaces, underscores, hyphens, dots, commas,
# apostrophes and slashes dropped. Nothing else is dropped, so "North Amesé" is no match.
# tests/test_schema.py checks that no two categories of the card share a key.
SEPARATORS = re.compile(r"[\s_\-.,'/]+")
MATCH_CHARS = 200  # longer text is no code or label (the longest label has 37 characters)
SUGGEST_CHARS = 48  # a near miss is compared on its first 48 key characters (difflib is O(n*m))
SUGGEST_DISTINCT = 200  # near misses given suggestions per column of a chunk (~0.5 ms each)
SUGGESTIONS = 3
SUGGEST_CUTOFF = 0.6
# Unknown keys of one house given the nearest field's name (~0.2 ms each, difflib); the rest
# are refused without. An API request of 100 houses of 63 made-up keys each would otherwise
# cost a second of CPU; bounded, and looked for only while the API's answer has room to list
# them (`suggest`), it costs what its category near misses already may.
SUGGESTED_KEYS = 2

# --- roles: what the pages need to know a field as, whatever the card calls it -----------
# role -> other names a person may give it (a link's ?lat=42.03&lon=-93.62), besides the
# field's name, its label and the role itself. train.py gives each of these roles to one
# feature; a card that lacks one, or gives one twice, is refused at load.
ROLES: dict[str, tuple[str, ...]] = {
    "latitude": ("lat",),
    "longitude": ("lon", "lng"),
    "neighbourhood": ("neighborhood", "hood"),
    "living_area": (),
    "building_type": (),
    "year_built": (),
}


def readable(code: str) -> str:
    """A code as people read it when no label is known: North_Ames -> North Ames."""
    return str(code).replace("_", " ")


def normal_key(text: str) -> str:
    """What a code or label is matched on: "South & West" and "south_and_west" agree."""
    return SEPARATORS.sub("", text.casefold().replace("&", "and"))


def _vocabulary(codes: tuple[str, ...], labels: tuple[str, ...]) -> dict[str, str]:
    """Key of every code and label -> code; a key claimed by two categories is an error."""
    vocabulary: dict[str, str] = {}
    for code, label in zip(codes, labels, strict=True):
        for key in {normal_key(code), normal_key(label)}:
            if vocabulary.setdefault(key, code) != code:
                raise ValueError(
                    f"{code!r} and {vocabulary[key]!r} read the same ({key!r}): give them "
                    "labels that differ in more than case and separators"
                )
    return vocabulary


@dataclass(frozen=True)
class Feature:
    """One input the model needs, with everything a form or a validator must know."""

    name: str
    kind: Kind
    label: str
    unit: str = ""
    min: float | None = None
    max: float | None = None
    train_min: float | None = None
    train_max: float | None = None
    categories: tuple[str, ...] = ()
    default: float | str | None = None
    default_from: str | None = None
    at_least: str | None = None
    required: bool = False
    help: str = ""
    labels: tuple[str, ...] = ()  # one per category, as people read it; () = from the codes
    role: str | None = None  # what the pages know it as (ROLES), None for the rest
    vocabulary: dict[str, str] = field(init=False, repr=False, compare=False)
    suggested: dict[str, list[str]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.labels and len(self.labels) != len(self.categories):
            raise ValueError(
                f"{self.name}: {len(self.labels)} labels for {len(self.categories)} categories"
            )
        object.__setattr__(self, "vocabulary", _vocabulary(self.categories, self.shown_labels))
        object.__setattr__(self, "suggested", {})  # near miss key -> codes, see suggestions()

    @property
    def is_category(self) -> bool:
        return self.kind == "category"

    @property
    def shown_labels(self) -> tuple[str, ...]:
        """The label of every category; a card written before labels existed shows the code
        made readable (North_Ames -> North Ames)."""
        return self.labels or tuple(readable(code) for code in self.categories)

    def label_of(self, code: str) -> str:
        """The label the form shows for a category code (the code made readable if unknown)."""
        try:
            return self.shown_labels[self.categories.index(code)]
        except ValueError:
            return readable(code)

    def code_for(self, text: str) -> str | None:
        """The category a code or label stands for, in any case and with any separators."""
        return self.vocabulary.get(normal_key(text)) if len(text) <= MATCH_CHARS else None

    def to_dict(self) -> dict:
        values = {f.name: getattr(self, f.name) for f in fields(self) if f.init}
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in values.items()}

    @classmethod
    def from_dict(cls, data: Mapping) -> Feature:
        values = dict(data)
        values["categories"] = tuple(values.get("categories") or ())
        values["labels"] = tuple(values.get("labels") or ())
        return cls(**values)


@dataclass(frozen=True)
class Flag:
    """A warning attached to a price that is still given (e.g. input outside training data)."""

    code: str
    field: str
    message: str


@dataclass(frozen=True)
class Schema:
    """The ordered features of a model; the order is the model's column order."""

    features: tuple[Feature, ...]
    by_name: dict[str, Feature] = field(init=False, repr=False, compare=False)
    # What validate_record's fast lane reads per field, looked up once (see _fast_lane).
    fast_lane: tuple[tuple, ...] = field(init=False, repr=False, compare=False)
    at_least_pairs: tuple[tuple[str, str], ...] = field(init=False, repr=False, compare=False)
    name_set: frozenset[str] = field(init=False, repr=False, compare=False)
    # normal_key of every name, label, role and alias -> the field's name (see field_for)
    key_names: dict[str, str] = field(init=False, repr=False, compare=False)
    roles: dict[str, Feature] = field(init=False, repr=False, compare=False)
    suggested: dict[str, list[str]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "by_name", {f.name: f for f in self.features})
        object.__setattr__(self, "fast_lane", tuple(_fast_lane(f) for f in self.features))
        pairs = tuple((f.name, f.at_least) for f in self.features if f.at_least)
        object.__setattr__(self, "at_least_pairs", pairs)
        object.__setattr__(self, "name_set", frozenset(self.by_name))
        roles: dict[str, Feature] = {}
        for f in self.features:
            if f.role is None:
                continue
            if f.role not in ROLES:
                raise ValueError(f"{f.name}: role {f.role!r} is not one of {', '.join(ROLES)}")
            if f.role in roles:
                raise ValueError(f"{roles[f.role].name} and {f.name} both have the role {f.role!r}")
            roles[f.role] = f
        object.__setattr__(self, "roles", roles)
        object.__setattr__(self, "key_names", _key_names(self.features))
        object.__setattr__(self, "suggested", {})  # near miss key -> fields, see unknown_reason()

    def role(self, role: str) -> Feature:
        """The field the pages know as `role` ("latitude" -> the card's Latitude)."""
        try:
            return self.roles[role]
        except KeyError:
            raise ModelSchemaError(
                f"the model card gives no field the role {role!r}: retrain (`make model`)"
            ) from None

    @property
    def place(self) -> tuple[str, str]:
        """The (latitude, longitude) fields' names: where a house or a sale is drawn."""
        return self.role("latitude").name, self.role("longitude").name

    def check_roles(self) -> None:
        """Refuse, at load, a card without every role the pages need (ROLES)."""
        missing = [role for role in ROLES if role not in self.roles]
        if missing:
            why = " (a card written before roles existed)" if not self.roles else ""
            raise ModelSchemaError(
                f"the model card gives no field the role(s) {', '.join(missing)}, which the "
                f"pages need{why}: retrain (`make model`)"
            )

    def field_for(self, key: object) -> str | None:
        """The field a key names (the input policy, see the module's docstring), or None."""
        if key in self.name_set:
            return key  # type: ignore[return-value]
        if not isinstance(key, str) or len(key) > MATCH_CHARS:
            return None
        return self.key_names.get(normal_key(key))

    def unknown_reason(self, key: object, *, suggest: bool = True) -> str:
        """Why a key was refused, with the nearest fields' names: the same words on every
        surface (the API, `predict_one`, the price page's links). Answers are remembered
        (a client repeats its typo), in a bounded cache."""
        reason = "is not a field of this model"
        nearest = _nearest(self.key_names, self.suggested, str(key), 2) if suggest else []
        return f"{reason}; did you mean {' or '.join(nearest)}?" if nearest else reason

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.features]

    @property
    def required(self) -> list[str]:
        return [f.name for f in self.features if f.required]

    def default_record(self) -> dict:
        """Every field at its default, a `default_from` field copying its source's: the house
        the pricing form starts from and the API documents as its example."""
        record: dict = {}
        for f in self.features:
            value = record[f.default_from] if f.default_from else f.default
            record[f.name] = int(value) if f.kind == "integer" and value is not None else value
        return record

    def to_list(self) -> list[dict]:
        return [f.to_dict() for f in self.features]

    @classmethod
    def from_list(cls, items: list[Mapping]) -> Schema:
        return cls(tuple(Feature.from_dict(item) for item in items))


def _key_names(features: tuple[Feature, ...]) -> dict[str, str]:
    """Each way of naming a field -> its name; a key two fields could claim names neither
    (it is refused rather than guessed; only a field's exact name always names it)."""
    claims: dict[str, set[str]] = {}
    for f in features:
        role_names = (f.role, *ROLES.get(f.role, ())) if f.role else ()
        for given in (f.name, f.label, *role_names):
            claims.setdefault(normal_key(given), set()).add(f.name)
    return {key: next(iter(names)) for key, names in claims.items() if len(names) == 1}


def resolve_keys(
    schema: Schema, record: Mapping, *, suggest: bool = True
) -> tuple[dict, list[Problem]]:
    """The record keyed by field names, and a Problem per key that names no field (the
    first SUGGESTED_KEYS with the nearest fields, unless not `suggest`) or names one a
    second time ("lat" beside "Latitude")."""
    resolved: dict = {}
    given: dict[str, object] = {}
    problems: list[Problem] = []
    for key, value in record.items():
        name = schema.field_for(key)
        if name is None:
            wanted = suggest and len(problems) < SUGGESTED_KEYS
            reason = schema.unknown_reason(key, suggest=wanted)
            problems.append(Problem(str(key), value, reason))
        elif name in given:
            reason = f"gives {name} a second time (it was given as {given[name]})"
            problems.append(Problem(str(key), value, reason))
        else:
            given[name] = key
            resolved[name] = value
    return resolved, problems


def _fast_lane(feature: Feature) -> tuple:
    """(name, feature, codes, low, high, whole, train_low, train_high) for one field.

    `codes` is the set of category codes a value may be given as exactly (None for a
    number); low/high the number's allowed range, train_low/train_high its training range
    (infinite where the card has none). A field without a range gets an empty one, so its
    values always take the full path.
    """
    inf = math.inf
    if feature.is_category:
        codes = frozenset(c for c in feature.categories if c == c.strip())
        return feature.name, feature, codes, inf, -inf, False, -inf, inf
    if feature.min is None or feature.max is None:
        low, high = inf, -inf
    else:
        low, high = float(feature.min), float(feature.max)
    train_low = -inf if feature.train_min is None else float(feature.train_min)
    train_high = inf if feature.train_max is None else float(feature.train_max)
    whole = feature.kind == "integer"
    return feature.name, feature, None, low, high, whole, train_low, train_high


def fmt(value: float, *, grouping: bool = True) -> str:
    """Numbers as people write them: 1,800 not 1800.0; years stay 1990; coordinates keep
    their decimals."""
    if float(value).is_integer() and abs(value) >= 1000 and grouping:
        return f"{value:,.0f}"
    return f"{value:.10g}"


def short_money(value: float) -> str:
    """$150k: dollars in thousands where full figures would crowd a label (price bands, axis
    ticks, bins); below $10,000 the full figure ($5,000, $0), which "k" would round away."""
    return f"${value / 1000:,.0f}k" if abs(value) >= 10_000 else f"${value:,.0f}"


def fmt_for(feature: Feature, value: float) -> str:
    """Group thousands only for quantities with a unit (areas), never for years or counts."""
    return fmt(value, grouping=bool(feature.unit))


def _range_text(feature: Feature) -> str:
    unit = f" {feature.unit}" if feature.unit else ""
    low, high = fmt_for(feature, feature.min), fmt_for(feature, feature.max)
    return f"must be between {low} and {high}{unit}"


def choices_text(feature: Feature) -> str:
    """The full list, label and code: said once per answer or file, never per row."""
    return "; ".join(_named(feature, code) for code in feature.categories)


def _named(feature: Feature, code: str) -> str:
    label = feature.label_of(code)
    return f'"{label}" ({code})' if label != code else f'"{label}"'


def unknown_text(feature: Feature, value: object, *, suggest: bool = True) -> str:
    """Why a category was refused: how many there are and, for a near miss, the nearest
    ones by label and code ('did you mean "North Ames" (North_Ames)?'). The full list is
    not repeated here: a file of bad rows would carry it on every row."""
    reason = (
        f"is not one of the {len(feature.categories)} {feature.label.lower()} values "
        "(a code or a label, in any case)"
    )
    nearest = suggestions(feature, value) if suggest and isinstance(value, str) else []
    if nearest:
        named = [_named(feature, code) for code in nearest]
        listed = ", ".join(named[:-1]) + " or " + named[-1] if len(named) > 1 else named[0]
        reason += f"; did you mean {listed}?"
    return reason


def suggestions(feature: Feature, text: str) -> list[str]:
    """The codes nearest to `text` (by its key, against every code's and label's key).

    Only the key's first SUGGEST_CHARS characters are compared, so a 32,000-character cell
    costs what a short one does; answers are remembered per feature (a file's bad cells
    repeat), in a bounded cache.
    """
    return _nearest(feature.vocabulary, feature.suggested, text, SUGGESTIONS)


def _nearest(vocabulary: dict[str, str], cache: dict, text: str, n: int) -> list[str]:
    """The `n` values of `vocabulary` (normal key -> value) whose keys are nearest `text`'s,
    by difflib on the key's first SUGGEST_CHARS characters, so a 32,000-character cell
    costs what a short one does; remembered in `cache` (bounded), as near misses repeat."""
    key = normal_key(text[: SUGGEST_CHARS * 4])[:SUGGEST_CHARS]
    if key not in cache:
        if len(cache) >= 4096:
            cache.clear()
        close = difflib.get_close_matches(key, vocabulary, n=n * 2, cutoff=SUGGEST_CUTOFF)
        cache[key] = list(dict.fromkeys(vocabulary[k] for k in close))[:n]
    return cache[key]


def describe_schema(schema: Schema) -> str:
    """Every field for people: its column, label, what it takes, whether it may be left
    empty, and its help; a category lists every code with its label (`homevalue batch
    schema`, and where a batch rejection points to)."""
    blocks = []
    for f in schema.features:
        if f.is_category:
            pairs = zip(f.categories, f.shown_labels, strict=True)
            takes = "one of (code: label, either accepted, in any case):\n" + "\n".join(
                f"    {code}: {label}" for code, label in pairs
            )
        else:
            kind = "a whole number" if f.kind == "integer" else "a number"
            takes = f"{kind}, {_range_text(f).removeprefix('must be ')}"
        if f.required:
            empty = "required"
        elif f.default_from:
            empty = f"may be empty: same as {f.default_from}"
        else:
            empty = f"may be empty: {f.default}"
        help_text = f"\n  {f.help}" if f.help else ""
        blocks.append(f"{f.name} ({f.label}; {empty}){help_text}\n  {takes}")
    return "\n".join(blocks)


def flag_message(feature: Feature | None, code: str) -> str:
    """Plain words for a flag, shared by the dashboard, the API and the batch output."""
    unit = f" {feature.unit}" if feature is not None and feature.unit else ""  # None: price flags
    if code == "above_training_range":
        return (
            f"{feature.label} is above anything the model was trained on "
            f"(highest {fmt_for(feature, feature.train_max)}{unit}): the price is a rough guess."
        )
    if code == "below_training_range":
        return (
            f"{feature.label} is below anything the model was trained on "
            f"(lowest {fmt_for(feature, feature.train_min)}{unit}): the price is a rough guess."
        )
    if code == "default_used" and feature.default_from:
        return f"{feature.label} was not given; assumed the same as {feature.default_from}."
    if code == "default_used":
        return f"{feature.label} was not given; the typical value was assumed."
    if code == "price_clamped":
        return "The model's raw estimate was outside the plausible price range and was capped."
    return code


# --- one record ---------------------------------------------------------------------------


def _is_missing(value: object) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and not value.strip()


# Plain decimal numbers only, thousands commas in groups of three ("1,800" but not "1,5"):
# the same text is accepted whether a house arrives alone or in a CSV, so Python-only forms
# such as "1_000" are refused. ASCII only, spelt out: Python's `\d`, float() and
# re.IGNORECASE accept other scripts' digits ("١٥٠٠" and "１５００" are 1500 to float) and
# fold "ı"/"İ" into "i", which pandas' own regex engine does not, so the two validators
# would disagree. `\d` is kept only to recognise, and refuse, numbers in other digits.
_NUMBER = r"[+-]?(?:(?:D{1,3}(?:,D{3})+|D+)(?:\.D*)?|\.D+)(?:[eE][+-]?D+)?"
NUMBER_TEXT = _NUMBER.replace("D", "[0-9]")
OTHER_DIGITS_TEXT = _NUMBER.replace("D", r"\d")
NON_FINITE_TEXT = r"[+-]?(?:[iI][nN][fF](?:[iI][nN][iI][tT][yY])?|[nN][aA][nN])"
DIGITS_ONLY = "must be written with the digits 0-9"
TRUE_FALSE = "must be a number, not true/false"
_NUMBER_RE = re.compile(NUMBER_TEXT)
_OTHER_DIGITS_RE = re.compile(OTHER_DIGITS_TEXT)
_NON_FINITE_RE = re.compile(NON_FINITE_TEXT)


def _type_reason(value: object) -> str:
    """Why a value's type keeps it from being a number, or "" when it may be one (text, a
    number, a missing value): the words both validators use."""
    if isinstance(value, bool | np.bool_):
        return TRUE_FALSE
    if isinstance(value, str | int | float | np.integer | np.floating) or _is_missing(value):
        return ""
    return f"must be a number, not {type(value).__name__}"


def _check_number(feature: Feature, value: object) -> tuple[float | None, str | None]:
    if type(value) is int or type(value) is float:  # a form's or the API's: the fast lane
        return _check_finite(feature, value)
    if reason := _type_reason(value):
        return None, reason
    if isinstance(value, str):
        text = value.strip()
        if _NON_FINITE_RE.fullmatch(text):
            return None, "must be a finite number"
        if not _NUMBER_RE.fullmatch(text):
            return None, DIGITS_ONLY if _OTHER_DIGITS_RE.fullmatch(text) else "must be a number"
        value = text.replace(",", "")
    return _check_finite(feature, value)


def _check_finite(feature: Feature, value: object) -> tuple[float | None, str | None]:
    """A value of a number's type (or its cleaned text) against the field's rules."""
    try:
        number = float(value)
    except OverflowError:
        return None, "must be a finite number"
    if not math.isfinite(number):
        return None, "must be a finite number"
    if feature.kind == "integer" and not number.is_integer():
        return None, "must be a whole number"
    if number < feature.min or number > feature.max:
        return None, _range_text(feature)
    return number, None


def _check_category(feature: Feature, value: object) -> tuple[str | None, str | None]:
    """The category's code, from its code or label in any case and with any separators."""
    if not isinstance(value, str):
        return None, unknown_text(feature, None)
    text = value.strip()
    code = text if text in feature.categories else feature.code_for(text)
    if code is None:
        return None, unknown_text(feature, text)
    return code, None


def check_value(feature: Feature, value: object) -> tuple[float | str | None, str | None]:
    """(clean value, None) or (None, reason): one field alone, as `validate_record` checks it
    before comparing fields (a link or a form sets fields one at a time)."""
    checker = _check_category if feature.is_category else _check_number
    return checker(feature, value)


def validate_record(
    schema: Schema,
    record: Mapping,
    *,
    unknown: Literal["refuse", "ignore"] = "refuse",
    suggest: bool = True,
) -> tuple[dict, list[Flag]]:
    """Check one house; return clean values (defaults filled) and flags, or raise.

    Raises ValidationError listing every problem at once, so a form can mark all bad fields.
    Keys are read by the input policy (`resolve_keys`): a key that names no field is refused.
    `unknown="ignore"` is a table's rule instead (a row of a batch file, as `validate_frame`
    reads it): fields by their exact names, other columns left alone. Without `suggest`,
    an unknown key's reason names no nearest field (a caller that will not show it saves
    the search: the API past its answer's API_MAX_PROBLEMS).
    """
    if not isinstance(record, Mapping):
        raise ValidationError([Problem("record", record, "must be a mapping of field to value")])
    clean: dict = {}
    flags: list[Flag] = []
    problems: list[Problem] = []
    keys: list[Problem] = []  # keys that name no field, or one twice
    if unknown == "refuse" and not schema.name_set.issuperset(record):  # not all exact names
        record, keys = resolve_keys(schema, record, suggest=suggest)
    for name, feature, codes, low, high, whole, train_low, train_high in schema.fast_lane:
        value = record.get(name)
        # The fast lane: a value of a form's or the API's own types that is valid as given
        # (most are) is taken as the full path below would take it, in a third of its time.
        if codes is None:
            if type(value) is float or type(value) is int:
                try:
                    number = float(value)
                except OverflowError:  # an int too large for a float: the full path says so
                    number = math.nan
                if low <= number <= high and (not whole or number.is_integer()):
                    clean[name] = number
                    if number > train_high or number < train_low:
                        flags.extend(_range_flags(feature, number))
                    continue
        elif type(value) is str and value in codes:
            clean[name] = value
            continue
        if _is_missing(value):
            if feature.required:
                problems.append(Problem(feature.name, value, "is required"))
                continue
            clean[feature.name] = (
                clean.get(feature.default_from, feature.default)
                if feature.default_from
                else feature.default
            )
            flags.append(Flag("default_used", feature.name, flag_message(feature, "default_used")))
            continue
        checked, reason = check_value(feature, value)
        if reason:
            problems.append(Problem(feature.name, value, reason))
            continue
        clean[feature.name] = checked
        if not feature.is_category:
            flags.extend(_range_flags(feature, checked))
    problems.extend(_cross_field_problems(schema, clean, record))
    problems.extend(keys)
    if problems:
        raise ValidationError(problems)
    return clean, flags


def _range_flags(feature: Feature, number: float) -> list[Flag]:
    if feature.train_max is not None and number > feature.train_max:
        code = "above_training_range"
    elif feature.train_min is not None and number < feature.train_min:
        code = "below_training_range"
    else:
        return []
    return [Flag(code, feature.name, flag_message(feature, code))]


def _cross_field_problems(schema: Schema, clean: dict, record: Mapping) -> list[Problem]:
    problems = []
    for name, other in schema.at_least_pairs:
        known = name in clean and other in clean
        if known and clean[name] < clean[other]:
            reason = f"must not be earlier than {other} ({fmt(clean[other], grouping=False)})"
            problems.append(Problem(name, record.get(name), reason))
    return problems


# --- many records -------------------------------------------------------------------------


@dataclass
class ValidatedFrame:
    """Result of validating a chunk: model-ready values for good rows, reasons for bad ones."""

    values: pd.DataFrame  # one column per feature, defaults filled, NaN where invalid
    ok: np.ndarray  # bool per row
    problems: list[Problem]
    flag_masks: list[np.ndarray]  # one bool array per flag that some row has
    flag_names: list[str]  # name of each mask, e.g. "default_used:Garage_Cars"
    # Per category column given: the code of each cell given by code or label (None where
    # the cell was empty or refused), so outputs can carry the canonical code.
    codes: dict[str, np.ndarray] = field(default_factory=dict)

    def flag_strings(self) -> np.ndarray:
        """Flags per row as 'code:field;code:field', built once per distinct combination."""
        n = len(self.ok)
        if not self.flag_masks:
            return np.full(n, "", dtype=object)
        names = np.array(self.flag_names, dtype=object)
        if len(self.flag_masks) > 63:  # more flags than bits in a key: rows compared whole
            patterns, inverse = np.unique(
                np.column_stack(self.flag_masks), axis=0, return_inverse=True
            )
        else:  # each row's flags as the bits of one integer: a 1-D unique, ~10x faster
            keys = np.zeros(n, dtype=np.uint64)
            for bit, mask in enumerate(self.flag_masks):
                keys |= mask.astype(np.uint64) << np.uint64(bit)
            distinct, inverse = np.unique(keys, return_inverse=True)
            bits = np.uint64(1) << np.arange(len(self.flag_masks), dtype=np.uint64)
            patterns = (distinct[:, None] & bits) != 0
        texts = np.array([";".join(names[pattern]) for pattern in patterns], dtype=object)
        return texts[inverse.reshape(-1)]


def _text_cells(column: pd.Series) -> pd.Series:
    return column.astype("string").str.strip()


def _collect(problems, mask, rows, feature_name, raw, reason_for):
    """A Problem per row of `mask`; `reason_for` is one reason, or an array of one per row."""
    per_row = isinstance(reason_for, np.ndarray)
    for position in np.flatnonzero(mask):
        value = raw.iat[position]
        shown = None if _is_missing(value) else value
        reason = reason_for[position] if per_row else reason_for
        problems.append(Problem(feature_name, shown, reason, int(rows[position])))


def validate_frame(schema: Schema, frame: pd.DataFrame, *, first_row: int = 1) -> ValidatedFrame:
    """Check many houses at once with the same rules as `validate_record`.

    Rows are numbered from `first_row` (1 = the first data row under the header), so a
    batch read in chunks reports the row number in the whole file.
    """
    n = len(frame)
    rows = np.arange(first_row, first_row + n)
    ok = np.ones(n, dtype=bool)
    problems: list[Problem] = []
    values: dict[str, np.ndarray | pd.Series] = {}
    flag_masks: list[np.ndarray] = []
    flag_names: list[str] = []
    codes: dict[str, np.ndarray] = {}

    def add_flag(mask: np.ndarray, code: str, name: str) -> None:
        if mask.any():
            flag_masks.append(mask)
            flag_names.append(f"{code}:{name}")

    for feature in schema.features:
        raw = frame[feature.name] if feature.name in frame else pd.Series([None] * n, dtype=object)
        raw = raw.reset_index(drop=True)
        parse = _categories if feature.is_category else _numbers
        column, missing, bad, reasons = parse(feature, raw)
        if feature.is_category and feature.name in frame:
            codes[feature.name] = np.asarray(column, dtype=object)
        for reason, mask in reasons:
            _collect(problems, mask, rows, feature.name, raw, reason)
        ok &= ~bad
        if feature.required:
            _collect(problems, missing, rows, feature.name, raw, "is required")
            ok &= ~missing
        else:
            default = values[feature.default_from] if feature.default_from else feature.default
            column = _fill(column, missing, default)
            add_flag(missing, "default_used", feature.name)
        values[feature.name] = column

    for feature in schema.features:
        if feature.at_least:
            later = np.asarray(values[feature.name], dtype=float)
            earlier = np.asarray(values[feature.at_least], dtype=float)
            with np.errstate(invalid="ignore"):
                bad = later < earlier
            for position in np.flatnonzero(bad):
                problems.append(
                    Problem(
                        feature.name,
                        frame[feature.name].iat[position] if feature.name in frame else None,
                        f"must not be earlier than {feature.at_least} "
                        f"({fmt(earlier[position], grouping=False)})",
                        int(rows[position]),
                    )
                )
            ok &= ~bad

    for feature in schema.features:
        if not feature.is_category:
            number = np.asarray(values[feature.name], dtype=float)
            with np.errstate(invalid="ignore"):
                add_flag(number > feature.train_max, "above_training_range", feature.name)
                add_flag(number < feature.train_min, "below_training_range", feature.name)

    problems.sort(key=lambda p: (p.row, schema.names.index(p.field)))
    return ValidatedFrame(pd.DataFrame(values), ok, problems, flag_masks, flag_names, codes)


def _fill(column, missing: np.ndarray, default):
    if isinstance(column, pd.Series):
        column = column.to_numpy(dtype=object, copy=True)
    else:
        column = np.array(column, copy=True)
    if missing.any():
        column[missing] = default[missing] if isinstance(default, np.ndarray) else default
    return column


def _categories(feature: Feature, raw: pd.Series):
    """Match a column against the categories' codes and labels (as `_check_category` does).

    Exact codes (nearly every cell of a file written by a program) are matched in one
    vectorised pass; only the other cells' distinct values go through `code_for` and, when
    they match nothing, `unknown_text`, so a column costs what its distinct spellings do.
    Past SUGGEST_DISTINCT distinct near misses in one column, the rest are refused without
    suggestions (the one way the reasons can differ from validate_record's).
    """
    plain = _plain_categories(feature, raw)
    if plain is not None:
        column, missing = plain
        return column, missing, np.zeros(len(raw), dtype=bool), []
    text = _text_cells(raw)
    missing = (text.isna() | (text == "")).to_numpy(dtype=bool)
    exact = text.isin(feature.categories).to_numpy(dtype=bool)
    column = text.where(exact, other=None).astype(object)
    bad = np.zeros(len(raw), dtype=bool)
    others = ~missing & ~exact
    if not others.any():
        return column, missing, bad, []
    reasons = np.full(len(raw), "", dtype=object)
    positions = np.flatnonzero(others)
    spelt, spellings = pd.factorize(text.iloc[positions])
    is_text = _is_text(raw.iloc[positions]).to_numpy(dtype=bool)
    # One answer per (spelling, whether it was text): 3 and "3" get different reasons.
    distinct, inverse = np.unique(spelt * 2 + is_text, return_inverse=True)
    # Near misses get suggestions up to SUGGEST_DISTINCT distinct spellings: a hostile
    # file of a million different words must not cost a million difflib searches.
    answers = [
        _category_answer(feature, spellings[d // 2], bool(d % 2), i < SUGGEST_DISTINCT)
        for i, d in enumerate(distinct)
    ]
    codes = np.array([code for code, _ in answers], dtype=object)
    why = np.array([reason for _, reason in answers], dtype=object)
    found = codes[inverse]
    column.iloc[positions] = found
    bad[positions] = pd.isna(found)
    reasons[positions] = why[inverse]
    return column, missing, bad, [(reasons, bad)]


def _arrow_text(raw: pd.Series):
    """(text, empty) of a column of Arrow-backed text, its cells trimmed as pandas' strip
    trims them, or None for any other column (it goes the long way)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if not (isinstance(raw.dtype, pd.StringDtype) and raw.dtype.storage == "pyarrow"):
        return None
    given = pa.array(raw.array)
    if isinstance(given, pa.ChunkedArray):
        given = given.combine_chunks()
    text = pc.utf8_trim_whitespace(given)
    return text, pc.fill_null(pc.equal(text, ""), True)


def _plain_categories(feature: Feature, raw: pd.Series) -> tuple[pd.Series, np.ndarray] | None:
    """(codes, missing) for a column of Arrow-backed text whose every cell is empty or a
    code as written (a file written by a program); None otherwise. `_categories`' answer
    for such a column, from Arrow's array in a few passes instead of pandas' dozen."""
    import pyarrow as pa
    import pyarrow.compute as pc

    arrow = _arrow_text(raw)
    if arrow is None:
        return None
    text, empty = arrow
    codes = pa.array(feature.categories, type=text.type)
    exact = pc.fill_null(pc.is_in(text, value_set=codes), False)
    if not pc.all(pc.or_(exact, empty)).as_py():
        return None
    missing = np.asarray(empty.to_numpy(zero_copy_only=False), dtype=bool)
    column = text.to_numpy(zero_copy_only=False)
    column[missing] = pd.NA  # as pandas' text.where(exact, other=None).astype(object) gives
    return pd.Series(column, dtype=object), missing


def _category_answer(
    feature: Feature, text: str, is_text: bool, suggest: bool
) -> tuple[str | None, str]:
    """(code, "") or (None, reason) for one distinct spelling of a column."""
    code = feature.code_for(text) if is_text else None
    if code is not None:
        return code, ""
    return None, unknown_text(feature, text if is_text else None, suggest=suggest)


def _is_text(values: pd.Series) -> pd.Series:
    """Which cells are text, as validate_record requires of a category (3 or ["Y"] are not)."""
    if values.dtype == object:
        return values.map(lambda v: isinstance(v, str)).astype(bool)
    return pd.Series(pd.api.types.is_string_dtype(values.dtype), index=values.index)


def _parse_numbers(cells: pd.Series) -> np.ndarray:
    """Cells that matched NUMBER_TEXT, as floats: "1,800" is 1800.0.

    Arrow's cast of the whole column at once (correctly rounded, as Python's float(): the
    same value for every such text, checked on 300,000 of them); pandas' own conversion
    went through a Python object per cell and was half the time of validating a batch.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    try:
        text = pa.array(cells, type=pa.string(), from_pandas=True)
        parsed = pc.cast(pc.replace_substring(text, ",", ""), pa.float64())
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        return cells.str.replace(",", "", regex=False).astype(float).to_numpy()
    if isinstance(parsed, pa.ChunkedArray):
        parsed = parsed.combine_chunks()
    return parsed.to_numpy(zero_copy_only=False)


def _ascii_digits(cells: pd.Series) -> np.ndarray:
    """Which cells are one or more of the digits 0-9 and nothing else (Arrow's ASCII test:
    other scripts' digits are not ASCII, so they are left to the regular expressions)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    try:
        text = pa.array(cells, type=pa.string(), from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return np.zeros(len(cells), dtype=bool)
    found = pc.fill_null(pc.ascii_is_decimal(text), False)
    return np.asarray(found.to_numpy(zero_copy_only=False), dtype=bool).copy()


def _plain_numbers(raw: pd.Series) -> tuple[np.ndarray, np.ndarray] | None:
    """(numbers, missing) for a column of Arrow-backed text (a batch file's) whose every
    cell is empty or matches NUMBER_TEXT; None otherwise, and the cells go the long way.

    The same Arrow functions as the long way (pandas' strip, RE2 for the regular expression,
    the cast), on the column's own Arrow array: a tenth of the time, without the ~15
    pandas round trips a column. Nearly every column of a real file takes this path.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    arrow = _arrow_text(raw)
    if arrow is None:
        return None
    text, empty = arrow
    number = pc.fill_null(pc.ascii_is_decimal(text), False)
    if not pc.all(pc.or_(number, empty)).as_py():
        matched = pc.match_substring_regex(text, f"^(?:{NUMBER_TEXT})$")
        number = pc.fill_null(matched, False)
        if not pc.all(pc.or_(number, empty)).as_py():
            return None
    cells = pc.if_else(empty, pa.scalar(None, text.type), text)
    if pc.any(pc.match_substring(cells, ",")).as_py():
        cells = pc.replace_substring(cells, ",", "")
    try:
        parsed = pc.cast(cells, pa.float64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    missing = np.asarray(empty.to_numpy(zero_copy_only=False), dtype=bool)
    return np.asarray(parsed.to_numpy(zero_copy_only=False), dtype=float), missing


def _read_numbers(raw: pd.Series, bool_column: bool):
    """The long way for any column: (numbers, missing, type reasons, "inf"/"nan" text,
    numbers in other digits), cell types checked as validate_record checks them."""
    if bool_column:
        type_reasons = np.where(raw.notna().to_numpy(dtype=bool), TRUE_FALSE, "").astype(object)
    elif raw.dtype == object:  # Python values of any type, as validate_record gets them
        type_reasons = raw.map(_type_reason).to_numpy(dtype=object)
    else:
        type_reasons = np.full(len(raw), "", dtype=object)
    wrong_type = type_reasons != ""
    non_finite_text = np.zeros(len(raw), dtype=bool)
    other_digits = np.zeros(len(raw), dtype=bool)
    if pd.api.types.is_numeric_dtype(raw.dtype) and not bool_column:
        number = raw.to_numpy(dtype=float, na_value=np.nan)
        missing = np.isnan(number)
    else:
        cells = _text_cells(raw.where(~wrong_type, other=None))
        missing = (cells.isna() | (cells == "")).to_numpy(dtype=bool) & ~wrong_type
        # Digits alone (nearly every cell of an integer column) are a number without the
        # regular expression: one ASCII test, a third of its time; the rest are matched.
        is_number = _ascii_digits(cells)
        rest = ~is_number & ~missing
        if rest.any():
            matched = cells[rest].str.fullmatch(NUMBER_TEXT).fillna(False)
            is_number[rest] = matched.to_numpy(dtype=bool)
        # pandas runs `\d` through Python's re whenever a cell is not ASCII, as validate_record.
        # Only cells that are not ASCII numbers can be one, or "inf"/"nan": matching every
        # cell cost as much as the number match itself (20 ms per 200,000 cells) a column.
        suspects = ~is_number & ~missing
        if suspects.any():
            unusual = cells[suspects]
            non_finite_text[suspects] = (
                unusual.str.fullmatch(NON_FINITE_TEXT).fillna(False).to_numpy(dtype=bool)
            )
            other = unusual.str.fullmatch(OTHER_DIGITS_TEXT).fillna(False)
            other_digits[suspects] = other.to_numpy(dtype=bool)
        number = np.full(len(raw), np.nan)
        number[is_number] = _parse_numbers(cells[is_number])
    return number, missing, type_reasons, non_finite_text, other_digits


def _numbers(feature: Feature, raw: pd.Series):
    """Parse a column to floats and say, per row, why a value is not acceptable."""
    bool_column = pd.api.types.is_bool_dtype(raw.dtype)  # numpy bool, "boolean", bool[pyarrow]
    plain = None if bool_column else _plain_numbers(raw)
    if plain is not None:  # text cells, every one a number or empty
        number, missing = plain
        wrong_type = non_finite_text = other_digits = np.zeros(len(raw), dtype=bool)
        type_reasons = np.broadcast_to(np.array("", dtype=object), len(raw))  # a view: free
    else:
        number, missing, type_reasons, non_finite_text, other_digits = _read_numbers(
            raw, bool_column
        )
        wrong_type = type_reasons != ""
    with np.errstate(invalid="ignore"):
        not_finite = np.isinf(number) | non_finite_text
        not_number = ~missing & np.isnan(number) & ~wrong_type & ~not_finite & ~other_digits
        not_whole = (
            np.isfinite(number) & (number != np.round(number))
            if feature.kind == "integer"
            else np.zeros(len(raw), dtype=bool)
        )
        out_of_range = (
            np.isfinite(number) & ~not_whole & ((number < feature.min) | (number > feature.max))
        )
    reasons = [
        *((reason, type_reasons == reason) for reason in sorted(set(type_reasons[wrong_type]))),
        ("must be a number", not_number),
        (DIGITS_ONLY, other_digits),
        ("must be a finite number", not_finite),
        ("must be a whole number", not_whole),
        (_range_text(feature), out_of_range),
    ]
    bad = wrong_type | not_number | other_digits | not_finite | not_whole | out_of_range
    number = np.where(bad, np.nan, number)
    return number, missing, bad, reasons
