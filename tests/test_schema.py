"""validate_record and validate_frame: every refusal names the field, the value and the fix,
and the two validators give the same answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from homevalue import ValidationError
from homevalue.errors import shown
from homevalue.schema import (
    SUGGEST_DISTINCT,
    Feature,
    Schema,
    check_value,
    choices_text,
    normal_key,
    short_money,
    validate_frame,
    validate_record,
)

REQUIRED = ["Neighborhood", "Gr_Liv_Area", "Year_Built", "Longitude", "Latitude"]
DIGITS_ONLY = "must be written with the digits 0-9"
# Decimal digits of other scripts, which Python's float() and re's \d accept as numbers.
DIGIT_SETS = [
    "٠١٢٣٤٥٦٧٨٩",
    "۰۱۲۳۴۵۶۷۸۹",
    "०१२३४५६७८९",
    "０１２３４５６７８９",
    "𝟎𝟏𝟐𝟑𝟒𝟓𝟔𝟕𝟖𝟗",
    "߀߁߂߃߄߅߆߇߈߉",
]


def problems_of(schema, record) -> list:
    with pytest.raises(ValidationError) as caught:
        validate_record(schema, record)
    return caught.value.problems


def written(feature, value: float) -> str:
    """How a person writes the value: thousands grouped for areas, never for years or counts."""
    if float(value).is_integer():
        return f"{value:,.0f}" if feature.unit else f"{value:.0f}"
    return f"{value:g}"


def range_text(feature) -> str:
    unit = f" {feature.unit}" if feature.unit else ""
    return (
        f"must be between {written(feature, feature.min)} and {written(feature, feature.max)}{unit}"
    )


# --- validate_record: one error kind at a time ----------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("Gr_Liv_Area", None, "is required"),
        ("Gr_Liv_Area", "", "is required"),
        ("Gr_Liv_Area", "   ", "is required"),
        ("Neighborhood", float("nan"), "is required"),
        ("Gr_Liv_Area", "abc", "must be a number"),
        ("Gr_Liv_Area", "1_500", "must be a number"),
        ("Garage_Cars", "two", "must be a number"),
        ("Garage_Cars", [2], "must be a number, not list"),
        ("Garage_Cars", True, "must be a number, not true/false"),
        ("Gr_Liv_Area", np.bool_(False), "must be a number, not true/false"),
        ("Gr_Liv_Area", float("inf"), "must be a finite number"),
        ("Latitude", float("-inf"), "must be a finite number"),
        ("Gr_Liv_Area", "nan", "must be a finite number"),
        ("Gr_Liv_Area", " NaN ", "must be a finite number"),
        ("Gr_Liv_Area", "inf", "must be a finite number"),
        ("Lot_Area", "-Infinity", "must be a finite number"),
        ("Gr_Liv_Area", 10**400, "must be a finite number"),
        ("Gr_Liv_Area", 1500.5, "must be a whole number"),
        ("Year_Built", "1975.5", "must be a whole number"),
        ("Gr_Liv_Area", -1200, "must be between 200 and 10,000 sq ft"),
        ("Gr_Liv_Area", "10,001", "must be between 200 and 10,000 sq ft"),
        ("Lot_Area", 100, "must be between 500 and 250,000 sq ft"),
        ("Latitude", 50.5, "must be between 41.95 and 42.1 °"),
        ("Year_Built", 1700, "must be between 1800 and 2027"),
        ("Year_Remod_Add", "2,028", "must be between 1800 and 2027"),
        ("Gr_Liv_Area", "١٥٠٠", DIGITS_ONLY),  # Arabic-Indic digits
        ("Gr_Liv_Area", "𝟏𝟓𝟎𝟎", DIGITS_ONLY),  # mathematical bold digits
        ("Gr_Liv_Area", "１５００", DIGITS_ONLY),  # fullwidth digits
        ("Lot_Area", " ９,０００ ", DIGITS_ONLY),
        ("Year_Built", "१९७५", DIGITS_ONLY),  # Devanagari digits
        ("Gr_Liv_Area", "15٠0", DIGITS_ONLY),  # one foreign digit among ASCII ones
        ("Gr_Liv_Area", "ınf", "must be a number"),  # dotless i: not the word inf
        ("Gr_Liv_Area", "İNF", "must be a number"),
    ],
)
def test_each_number_problem_names_field_value_and_fix(schema, good_house, field, value, reason):
    good_house[field] = value
    problems = problems_of(schema, good_house)
    assert [(p.field, p.reason) for p in problems] == [(field, reason)]
    message = str(ValidationError(problems))
    assert f"{field} = {shown(value)}: {reason}" in message


@pytest.mark.parametrize("field", REQUIRED)
def test_every_required_field_is_required_when_absent(schema, good_house, field):
    del good_house[field]
    problems = problems_of(schema, good_house)
    assert [(p.field, p.value, p.reason) for p in problems] == [(field, None, "is required")]
    assert str(problems[0]) == f"{field} = None: is required"


@pytest.mark.parametrize(
    "feature_name", ["Neighborhood", "Overall_Cond", "Bldg_Type", "Central_Air"]
)
@pytest.mark.parametrize("value", ["Atlantis", 3, "qqqq", ["Y"]])
def test_unknown_category_says_how_many_values_and_not_every_one(
    schema, good_house, feature_name, value
):
    good_house[feature_name] = value
    [problem] = problems_of(schema, good_house)
    feature = schema.by_name[feature_name]
    assert problem.field == feature_name
    assert problem.reason == (
        f"is not one of the {len(feature.categories)} {feature.label.lower()} values "
        "(a code or a label, in any case)"
    )
    assert not any(code in problem.reason for code in feature.categories if len(code) > 1)


def test_every_number_feature_states_its_own_range(schema, good_house):
    for feature in schema.features:
        if feature.is_category:
            continue
        house = dict(good_house, **{feature.name: feature.max + 1})
        [problem] = problems_of(schema, house)
        assert (problem.field, problem.reason) == (feature.name, range_text(feature))
        assert f"{feature.name} = {feature.max + 1!r}: must be between " in str(problem)


def test_year_remodelled_earlier_than_year_built_is_refused(schema, good_house):
    good_house.update(Year_Built=1975, Year_Remod_Add=1960)
    [problem] = problems_of(schema, good_house)
    assert problem.field == "Year_Remod_Add"
    assert str(problem) == ("Year_Remod_Add = 1960: must not be earlier than Year_Built (1975)")


def test_year_remodelled_equal_to_year_built_is_fine(schema, good_house):
    good_house.update(Year_Built=1975, Year_Remod_Add="1975")
    clean, _ = validate_record(schema, good_house)
    assert clean["Year_Remod_Add"] == clean["Year_Built"] == 1975


@pytest.mark.parametrize("record", [["Gr_Liv_Area", 1500], "Gr_Liv_Area=1500", 1500, None])
def test_a_record_that_is_not_a_mapping_is_refused(schema, record):
    [problem] = problems_of(schema, record)
    assert (problem.field, problem.value) == ("record", record)
    assert "must be a mapping" in str(ValidationError([problem]))


def test_every_problem_is_reported_at_once_in_schema_order(schema, good_house):
    good_house.update(Latitude="north", Neighborhood="Atlantis", Garage_Cars=-1, Fireplaces=True)
    del good_house["Year_Built"]
    problems = problems_of(schema, good_house)
    assert [p.field for p in problems] == [
        "Neighborhood",
        "Year_Built",
        "Garage_Cars",
        "Fireplaces",
        "Latitude",
    ]
    message = str(ValidationError(problems))
    for problem in problems:
        assert str(problem) in message


# --- validate_record: what an accepted house becomes ----------------------------------------


def test_missing_optional_fields_get_defaults_and_are_flagged(schema, good_house):
    house = {name: good_house[name] for name in REQUIRED}
    clean, flags = validate_record(schema, house)
    assert list(clean) == schema.names
    optional = [f for f in schema.features if not f.required]
    for feature in optional:
        expected = clean["Year_Built"] if feature.default_from else feature.default
        assert clean[feature.name] == expected, feature.name
    assert [(f.code, f.field) for f in flags] == [("default_used", f.name) for f in optional]


def test_year_remodelled_defaults_to_year_built(schema, good_house):
    del good_house["Year_Remod_Add"]
    good_house["Year_Built"] = "1931"
    clean, flags = validate_record(schema, good_house)
    assert clean["Year_Remod_Add"] == clean["Year_Built"] == 1931.0
    [flag] = flags
    assert (flag.code, flag.field) == ("default_used", "Year_Remod_Add")
    assert "same as Year_Built" in flag.message


@pytest.mark.parametrize("missing", [None, "", " ", float("nan"), pd.NA])
def test_blank_optional_values_count_as_missing(schema, good_house, missing):
    good_house["Garage_Cars"] = missing
    clean, flags = validate_record(schema, good_house)
    assert clean["Garage_Cars"] == schema.by_name["Garage_Cars"].default
    assert [(f.code, f.field) for f in flags] == [("default_used", "Garage_Cars")]


def test_a_fully_described_ordinary_house_has_no_flags(schema, good_house):
    clean, flags = validate_record(schema, good_house)
    assert flags == []
    assert clean == good_house
    assert all(isinstance(v, str | float) for v in clean.values())


def test_values_outside_the_training_data_are_flagged_not_refused(schema, good_house):
    living, built = schema.by_name["Gr_Liv_Area"], schema.by_name["Year_Built"]
    assert living.train_max + 1 <= living.max and built.train_min - 1 >= built.min
    good_house.update(
        Gr_Liv_Area=living.train_max + 1,
        Year_Built=built.train_min - 1,
        Year_Remod_Add=built.train_min - 1,
    )
    _, flags = validate_record(schema, good_house)
    by_field = {f.field: f for f in flags}
    assert by_field["Gr_Liv_Area"].code == "above_training_range"
    assert f"highest {living.train_max:,.0f} sq ft" in by_field["Gr_Liv_Area"].message
    assert by_field["Year_Built"].code == "below_training_range"
    assert f"lowest {built.train_min:.0f})" in by_field["Year_Built"].message


def test_values_at_the_training_limits_are_not_flagged(schema, good_house):
    living = schema.by_name["Gr_Liv_Area"]
    for value in (living.train_min, living.train_max):
        _, flags = validate_record(schema, dict(good_house, Gr_Liv_Area=value))
        assert flags == []


@pytest.mark.parametrize(
    ("text", "number"),
    [
        (" 1,800 ", 1800.0),
        ("1800", 1800.0),
        ("+1800", 1800.0),
        ("1.8e3", 1800.0),
        ("1800.0", 1800.0),
    ],
)
def test_numbers_written_as_text_are_accepted(schema, good_house, text, number):
    good_house["Gr_Liv_Area"] = text
    clean, _ = validate_record(schema, good_house)
    assert clean["Gr_Liv_Area"] == number


@pytest.mark.parametrize("digits", DIGIT_SETS)
def test_only_ascii_digits_make_a_number_in_both_validators(schema, good_house, digits):
    """The README promises plain decimal numbers: "١٥٠٠" is not read as 1500 anywhere."""
    foreign = str.maketrans("0123456789", digits)
    texts = ["1500", "1,500", "1.5e3", "+1500.0"]
    houses = [{**good_house, "Gr_Liv_Area": text.translate(foreign)} for text in texts]
    for house in houses:
        assert [(p.field, p.reason) for p in problems_of(schema, house)] == [
            ("Gr_Liv_Area", DIGITS_ONLY)
        ]
    checked = validate_frame(schema, pd.DataFrame(houses, dtype=object))
    assert not checked.ok.any()
    assert [(p.row, p.field, p.reason) for p in checked.problems] == [
        (row, "Gr_Liv_Area", DIGITS_ONLY) for row in range(1, len(texts) + 1)
    ]


def test_category_text_is_stripped(schema, good_house):
    good_house.update(Neighborhood="  Old_Town ")
    clean, _ = validate_record(schema, good_house)
    assert clean["Neighborhood"] == "Old_Town"


def test_unknown_keys_are_refused_naming_the_nearest_field(schema, good_house):
    """A misspelt optional field would otherwise be replaced by its default unseen."""
    good_house.update(Garage_Car=2, colour="blue", id=17)
    problems = [(p.field, p.reason) for p in problems_of(schema, good_house)]
    assert problems == [
        ("Garage_Car", "is not a field of this model; did you mean Garage_Cars?"),
        ("colour", "is not a field of this model"),
        ("id", "is not a field of this model"),
    ]


# --- one vocabulary: codes and labels, any case, any separators -----------------------------

SWISU = "South_and_West_of_Iowa_State_University"
SPELLINGS = [  # (field, as written, code)
    ("Neighborhood", "north ames", "North_Ames"),
    ("Neighborhood", "NORTH-AMES", "North_Ames"),
    ("Neighborhood", "North_Ames", "North_Ames"),
    ("Neighborhood", "North Ames", "North_Ames"),
    ("Neighborhood", "north_ames", "North_Ames"),
    ("Neighborhood", "  North.Ames ", "North_Ames"),
    ("Neighborhood", "South & West of Iowa State University", SWISU),
    ("Neighborhood", "south and west of iowa state university", SWISU),
    ("Neighborhood", "iowa dot & rail road", "Iowa_DOT_and_Rail_Road"),
    ("Neighborhood", "Bluestem", "Blueste"),
    ("Central_Air", "y", "Y"),
    ("Central_Air", "yes", "Y"),
    ("Central_Air", "NO", "N"),
    ("Bldg_Type", "single-family detached", "OneFam"),
    ("Bldg_Type", "onefam", "OneFam"),
    ("Bldg_Type", "Townhouse, end unit", "TwnhsE"),
    ("Bldg_Type", "townhouse inside unit", "Twnhs"),
    ("Bldg_Type", "two-family conversion", "TwoFmCon"),
    ("Overall_Cond", "above average", "Above_Average"),
    ("Overall_Cond", "VERY_GOOD", "Very_Good"),
]


@pytest.mark.parametrize(("field", "written", "code"), SPELLINGS)
def test_codes_and_labels_are_accepted_in_any_case_and_spelling(
    schema, good_house, field, written, code
):
    clean, _ = validate_record(schema, dict(good_house, **{field: written}))
    assert clean[field] == code
    assert check_value(schema.by_name[field], written) == (code, None)
    checked = validate_frame(schema, pd.DataFrame([dict(good_house, **{field: written})]))
    assert checked.ok.tolist() == [True] and checked.values[field].tolist() == [code]
    assert checked.codes[field].tolist() == [code]


@pytest.mark.parametrize(
    ("field", "written"),
    [
        ("Neighborhood", "North Amesé"),  # only separators are dropped, not other letters
        ("Neighborhood", "North Ames!"),
        ("Neighborhood", "NorthAmes2"),
        ("Central_Air", "yess"),
        ("Bldg_Type", "Townhouse"),  # which one?
    ],
)
def test_other_characters_still_make_a_different_word(schema, good_house, field, written):
    [problem] = problems_of(schema, dict(good_house, **{field: written}))
    assert problem.field == field and problem.reason.startswith("is not one of the ")


def test_every_category_of_the_card_has_its_own_key_and_a_label(schema):
    """No two categories of a field read the same once case and separators are dropped, so
    the leniency cannot send a house to the wrong category; every code has a label."""
    for feature in schema.features:
        if not feature.is_category:
            continue
        assert len(feature.labels) == len(feature.categories)
        owners: dict[str, set] = {}
        for code, label in zip(feature.categories, feature.labels, strict=True):
            assert label.strip(), f"{feature.name}.{code} has no label"
            for key in (normal_key(code), normal_key(label)):
                owners.setdefault(key, set()).add(code)
        clashes = {key: codes for key, codes in owners.items() if len(codes) > 1}
        assert not clashes, f"{feature.name}: {clashes}"
        assert len(set(feature.labels)) == len(feature.labels)


def test_the_labels_are_the_words_the_form_shows(schema):
    labels = {f.name: dict(zip(f.categories, f.labels, strict=True)) for f in schema.features}
    assert labels["Neighborhood"]["North_Ames"] == "North Ames"
    assert labels["Neighborhood"]["South_and_West_of_Iowa_State_University"] == (
        "South & West of Iowa State University"
    )
    assert labels["Bldg_Type"]["OneFam"] == "Single-family detached"
    assert labels["Bldg_Type"]["TwnhsE"] == "Townhouse, end unit"
    assert labels["Central_Air"] == {"N": "No", "Y": "Yes"}
    assert labels["Overall_Cond"]["Below_Average"] == "Below average"


def test_every_field_has_a_help_text(schema):
    for feature in schema.features:
        assert len(feature.help) > 20, f"{feature.name} has no useful help text"
    assert "excluding the basement" in schema.by_name["Gr_Liv_Area"].help


def test_categories_that_read_the_same_are_refused_when_a_schema_is_built():
    with pytest.raises(ValueError, match=r"'OldTown' and 'Old_Town' read the same \('oldtown'\)"):
        Feature("N", "category", "N", categories=("Old_Town", "OldTown"))
    with pytest.raises(ValueError, match="read the same"):
        Feature("N", "category", "N", categories=("A", "B"), labels=("Same", "same"))
    with pytest.raises(ValueError, match="1 labels for 2 categories"):
        Feature("N", "category", "N", categories=("A", "B"), labels=("Only",))


def test_a_near_miss_names_the_nearest_values_by_label_and_code(schema, good_house):
    [problem] = problems_of(schema, dict(good_house, Neighborhood="Nort Ames"))
    assert 'did you mean "North Ames" (North_Ames)' in problem.reason
    [problem] = problems_of(schema, dict(good_house, Bldg_Type="Single Family"))
    assert problem.reason.endswith('did you mean "Single-family detached" (OneFam)?')
    [problem] = problems_of(schema, dict(good_house, Overall_Cond="avrage"))
    assert 'did you mean "Average", "Below average" (Below_Average) or ' in problem.reason
    [problem] = problems_of(schema, dict(good_house, Neighborhood="Atlantis"))
    assert "did you mean" not in problem.reason  # nothing near: no guess


def test_a_rejection_names_at_most_three_values_never_the_list(schema, good_house):
    neighbourhood = schema.by_name["Neighborhood"]
    [problem] = problems_of(schema, dict(good_house, Neighborhood="Ames"))
    named = [code for code in neighbourhood.categories if f"({code})" in problem.reason]
    assert 1 <= len(named) <= 3
    assert len(problem.reason) < 300
    full = choices_text(neighbourhood)  # the list said once, where a surface points to it
    assert all(label in full for label in neighbourhood.labels)


@pytest.mark.parametrize(
    "value",
    [
        "x" * 32_767,
        "north ames" * 3_276,  # starts like a label: must still not match, nor be slow
        "North Ames" + " " * 32_000 + "x",
        "&" * 32_767,
    ],
    ids=["x", "repeated-label", "label-then-spaces", "ampersands"],
)
def test_long_hostile_values_are_refused_fast(schema, good_house, value):
    """A batch cell may hold 32,767 characters: matching and suggesting look at a bounded
    prefix, so a long value costs about what a short one does (measured ~0.1 ms)."""
    import time

    house = dict(good_house, Neighborhood=value)
    started = time.perf_counter()
    for _ in range(20):
        [problem] = problems_of(schema, house)
    assert (time.perf_counter() - started) / 20 < 0.05
    assert problem.reason.startswith("is not one of the ")
    frame = pd.DataFrame([house] * 3 + [good_house], dtype=object)
    checked = validate_frame(schema, frame)
    assert checked.ok.tolist() == [False, False, False, True]
    assert {p.reason for p in checked.problems} == {problem.reason}


def test_many_distinct_near_misses_in_a_file_stay_bounded(schema, good_house):
    """A hostile file with thousands of different near misses: the first SUGGEST_DISTINCT
    get suggestions, the rest the plain reason, so the column costs no more than ~0.1 s."""
    import time

    words = [f"north ames {n}" for n in range(5_000)]
    frame = pd.DataFrame([dict(good_house, Neighborhood=w) for w in words], dtype=object)
    started = time.perf_counter()
    checked = validate_frame(schema, frame)
    elapsed = time.perf_counter() - started
    assert not checked.ok.any() and len(checked.problems) == len(words)
    suggested = sum("did you mean" in p.reason for p in checked.problems)
    assert suggested == SUGGEST_DISTINCT
    assert elapsed < 10  # generous: measured ~0.3 s


def test_labels_in_mixed_case_validate_like_codes(schema, good_house):
    """A whole frame written with labels gives the same model input as one with codes."""
    rows = []
    for feature in schema.features:
        if feature.is_category:
            for code, label in zip(feature.categories, feature.labels, strict=True):
                rows.append((dict(good_house, **{feature.name: code}), feature.name, label))
    by_code = pd.DataFrame([row for row, _, _ in rows], dtype=object)
    by_label = by_code.copy()
    for position, (_, name, label) in enumerate(rows):
        by_label.loc[position, name] = label.upper() if position % 2 else label.lower()
    coded, labelled = validate_frame(schema, by_code), validate_frame(schema, by_label)
    assert coded.ok.all() and labelled.ok.all()
    pd.testing.assert_frame_equal(coded.values, labelled.values)


# --- validate_frame ----------------------------------------------------------------------


def test_frame_applies_the_same_rules_and_numbers_rows_from_first_row(schema, good_house):
    rows = [
        good_house,
        dict(good_house, Gr_Liv_Area="-1200", Neighborhood="Atlantis"),
        dict(good_house, Year_Remod_Add=1960),
        {k: v for k, v in good_house.items() if k != "Latitude"},
        dict(good_house, Fireplaces=True, Garage_Cars="inf", Half_Bath=0.5),
    ]
    checked = validate_frame(schema, pd.DataFrame(rows, dtype=object), first_row=101)
    assert checked.ok.tolist() == [True, False, False, False, False]
    got = [(p.row, p.field, p.reason) for p in checked.problems]
    living = schema.by_name["Gr_Liv_Area"]
    neighbourhood = schema.by_name["Neighborhood"]
    unknown = f"is not one of the {len(neighbourhood.categories)} neighbourhood values (a code or"
    assert got[0][:2] == (102, "Neighborhood") and got[0][2].startswith(unknown)
    assert got[1:] == [
        (102, "Gr_Liv_Area", range_text(living)),
        (103, "Year_Remod_Add", "must not be earlier than Year_Built (1975)"),
        (104, "Latitude", "is required"),
        (105, "Garage_Cars", "must be a finite number"),
        (105, "Half_Bath", "must be a whole number"),
        (105, "Fireplaces", "must be a number, not true/false"),
    ]
    assert str(checked.problems[1]) == (
        "row 102, Gr_Liv_Area = '-1200': must be between 200 and 10,000 sq ft"
    )


def test_frame_fills_defaults_per_row(schema, good_house):
    frame = pd.DataFrame(
        [
            dict(good_house, Year_Remod_Add=None, Garage_Cars=None),
            dict(good_house, Year_Built=1920, Year_Remod_Add=None),
            good_house,
        ]
    )
    checked = validate_frame(schema, frame)
    assert checked.ok.all()
    assert checked.values["Year_Remod_Add"].tolist() == [1975, 1920, 1990]
    assert checked.values["Garage_Cars"].tolist() == [
        schema.by_name["Garage_Cars"].default,
        2,
        2,
    ]
    assert list(checked.values.columns) == schema.names


def test_a_missing_required_column_fails_every_row(schema, good_house):
    frame = pd.DataFrame([good_house, good_house]).drop(columns="Year_Built")
    checked = validate_frame(schema, frame, first_row=7)
    assert not checked.ok.any()
    assert [(p.row, p.field, p.value, p.reason) for p in checked.problems] == [
        (7, "Year_Built", None, "is required"),
        (8, "Year_Built", None, "is required"),
    ]


def test_flag_strings_name_each_rows_flags(schema, good_house):
    living = schema.by_name["Gr_Liv_Area"]
    frame = pd.DataFrame(
        [
            good_house,
            dict(good_house, Garage_Cars=None),
            dict(good_house, Gr_Liv_Area=living.train_max + 100),
            dict(good_house, Gr_Liv_Area=living.train_max + 100, Garage_Cars=None),
            good_house,
        ]
    )
    flags = validate_frame(schema, frame).flag_strings()
    assert [set(filter(None, f.split(";"))) for f in flags] == [
        set(),
        {"default_used:Garage_Cars"},
        {"above_training_range:Gr_Liv_Area"},
        {"default_used:Garage_Cars", "above_training_range:Gr_Liv_Area"},
        set(),
    ]


def test_an_empty_frame_validates_to_nothing(schema, good_house):
    checked = validate_frame(schema, pd.DataFrame([good_house]).iloc[:0])
    assert len(checked.ok) == 0 and checked.problems == []
    assert len(checked.flag_strings()) == 0


@pytest.mark.parametrize("dtype", ["bool", "boolean", "bool[pyarrow]", "object"])
def test_true_false_columns_are_refused_whatever_their_dtype(schema, good_house, dtype):
    frame = pd.DataFrame([good_house, good_house])
    frame["Garage_Cars"] = pd.Series([True, False], dtype=dtype)
    checked = validate_frame(schema, frame)
    assert not checked.ok.any()
    assert {(p.row, p.field, p.reason) for p in checked.problems} == {
        (1, "Garage_Cars", "must be a number, not true/false"),
        (2, "Garage_Cars", "must be a number, not true/false"),
    }


def test_numeric_columns_with_inf_and_nan(schema, good_house):
    frame = pd.DataFrame([good_house] * 3)
    frame["Lot_Area"] = [np.inf, np.nan, 9000.0]
    checked = validate_frame(schema, frame)
    assert checked.ok.tolist() == [False, True, True]
    assert [(p.row, p.field, p.reason) for p in checked.problems] == [
        (1, "Lot_Area", "must be a finite number")
    ]
    assert checked.values["Lot_Area"].tolist()[1:] == [schema.by_name["Lot_Area"].default, 9000]


# --- the two validators agree ------------------------------------------------------------

padding = st.sampled_from(["", " ", "  ", "\t", " \n"])


def number_text(number: st.SearchStrategy) -> st.SearchStrategy[str]:
    """Numbers as people and spreadsheets write them: padded, with commas, signs, exponents."""
    written = st.one_of(
        number.map(str),
        number.map(lambda n: f"{n:,}"),
        number.map(lambda n: f"{float(n):.6g}"),
        number.map(lambda n: f"{float(n):e}"),
    )
    return st.tuples(padding, written, padding).map("".join)


def foreign_digits(text: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """The same text with its digits, or some of them, in another script's digits."""

    def translate(pair: tuple[str, str], digits: str, every: bool) -> str:
        written, keep = pair
        foreign = str.maketrans("0123456789", digits)
        if every:
            return written.translate(foreign)
        chosen = zip(written, keep, strict=False)  # keep is longer than any text drawn
        return "".join(c.translate(foreign) if k else c for c, k in chosen)

    pairs = st.tuples(text, st.lists(st.booleans(), min_size=30, max_size=30))
    return st.builds(translate, pairs, st.sampled_from(DIGIT_SETS), st.booleans())


junk = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from([10**400, -(10**400), 2**63, 2**64 + 1]),
    st.floats(),
    st.text(max_size=12),
    st.sampled_from(["nan", "NaN", " inf ", "-Infinity", "", " ", "1_000", "1e999", "--1", ".5"]),
    st.sampled_from(["ınf", "İNF", "ｎａｎ", "١٥٠٠", "𝟏𝟓𝟎𝟎", "１５００", "1,٥00", "²", "½"]),
    st.text(alphabet=st.characters(categories=["Nd", "No", "Nl"]), max_size=6),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


def value_for(feature) -> st.SearchStrategy:
    """Mostly plausible values for one feature (valid or just outside), sometimes junk."""
    if feature.is_category:
        words = [*feature.categories, *feature.shown_labels]
        plausible = st.one_of(
            st.sampled_from(feature.categories),
            st.tuples(padding, st.sampled_from(words), padding).map("".join),
            st.sampled_from(["Atlantis", feature.categories[0].lower()]),
            st.sampled_from(words).map(str.upper),
            st.tuples(
                st.sampled_from(words), st.sampled_from(["-", "_", " ", ".", "x", "é", ""])
            ).map(lambda pair: pair[0].replace(" ", pair[1]).replace("_", pair[1])),
            st.sampled_from(words).map(lambda word: word[:-1]),  # a near miss
        )
    else:
        low, high = feature.min, feature.max
        span = high - low
        if feature.kind == "integer":
            number = st.integers(int(low - span / 10), int(high + span / 10))
        else:
            number = st.floats(low - span / 10, high + span / 10)
        plausible = st.one_of(
            number, number_text(number), st.floats(low, high), foreign_digits(number_text(number))
        )
    return st.one_of(plausible, plausible, plausible, junk)


@st.composite
def records(draw, schema) -> dict:
    record = {}
    for feature in schema.features:
        if draw(st.integers(0, 9)) == 0:  # leave the field out now and then
            continue
        record[feature.name] = draw(value_for(feature))
    return record


def frame_verdict(schema, record: dict):
    checked = validate_frame(schema, pd.DataFrame([record], dtype=object))
    bad = {(p.field, p.reason) for p in checked.problems}
    assert bool(checked.ok[0]) == (not bad)
    return checked, bad


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_record_and_frame_validators_agree(schema, data):
    record = data.draw(records(schema))
    try:
        clean, flags = validate_record(schema, record)
        record_bad = set()
    except ValidationError as error:
        record_bad = {(p.field, p.reason) for p in error.problems}
    checked, frame_bad = frame_verdict(schema, record)
    assert frame_bad == record_bad
    if record_bad:
        return
    values = checked.values.iloc[0].to_dict()
    for name in schema.names:
        if isinstance(clean[name], str):
            assert values[name] == clean[name], name
        else:
            assert float(values[name]) == clean[name], name
    frame_flags = set(filter(None, checked.flag_strings()[0].split(";")))
    assert frame_flags == {f"{f.code}:{f.field}" for f in flags}


@pytest.mark.parametrize("text", ["1,5", "1,8,00", ",", "12,34"])
def test_commas_only_group_thousands(schema, good_house, text):
    """A European decimal comma must not turn 1,5 into 15 silently."""
    good_house["Total_Bsmt_SF"] = text
    assert [(p.field, p.reason) for p in problems_of(schema, good_house)] == [
        ("Total_Bsmt_SF", "must be a number")
    ]
    frame = pd.DataFrame([good_house], dtype=object)
    checked = validate_frame(schema, frame)
    assert [(p.field, p.reason) for p in checked.problems] == [
        ("Total_Bsmt_SF", "must be a number")
    ]


def test_long_values_are_shortened_in_messages(schema, good_house):
    good_house["Neighborhood"] = "x" * 10_000
    message = str(ValidationError(problems_of(schema, good_house)))
    assert "Neighborhood = 'xxx" in message and len(message) < 1_000


def test_flags_scale_past_64_per_row():
    """A retrained model may have many more inputs; flags must not be limited by a bit width."""
    features = tuple(
        Feature(
            f"x{i}", "integer", f"X {i}", min=0, max=100, train_min=10, train_max=20, default=15
        )
        for i in range(70)
    )
    schema = Schema(features)
    columns = {f"x{i}": [50 if i % 2 else None, 15, 15] for i in range(70)}
    columns["x69"][2] = 50  # row 3: only the last of 70 flags
    frame = pd.DataFrame(columns, dtype=object)

    flags = validate_frame(schema, frame).flag_strings()

    expected = {f"above_training_range:x{i}" for i in range(1, 70, 2)}
    expected |= {f"default_used:x{i}" for i in range(0, 70, 2)}
    assert set(flags[0].split(";")) == expected
    assert list(flags[1:]) == ["", "above_training_range:x69"]


@pytest.mark.parametrize(
    ("dollars", "shown"),
    [(150_000, "$150k"), (1_000_000, "$1,000k"), (10_000, "$10k"), (9_999, "$9,999"), (0, "$0")],
)
def test_short_money_is_thousands_except_under_ten_thousand(dollars, shown):
    """The one compact money format of band labels, bins and axis ticks."""
    assert short_money(dollars) == shown
