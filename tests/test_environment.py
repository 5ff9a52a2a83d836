"""The three places that pin versions agree with each other.

pyproject.toml (runtime dependencies + the ``test`` extra) is the source of truth;
environment.yml (conda-forge) must pin the same packages at the same versions, and
.ci/constraints.txt (the full lock written by ``make lock``) must hold every one of
them at that version too, and every locked package must install on the oldest Python
that requires-python allows (Debian 12's python3 is 3.11.2; CI runs there).
"""

import re
import tomllib
from importlib.metadata import distributions
from pathlib import Path

import pytest
import yaml  # PyYAML: pulled in by jupyter_server -> jupyter-events
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

PROJ_ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = PROJ_ROOT / "pyproject.toml"
ENVIRONMENT_YML = PROJ_ROOT / "environment.yml"
CONSTRAINTS = PROJ_ROOT / ".ci" / "constraints.txt"

# Conda entries that are not Python packages of ours: the interpreter and pip itself.
CONDA_NON_PACKAGES = {"python", "pip"}


def normalise(name: str) -> str:
    """Return a package name in canonical form: lowercase, runs of ``-_.`` -> ``-``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def pyproject_pins(pyproject: dict) -> dict[str, str]:
    """Map package -> exact version from ``dependencies`` and the ``test`` extra.

    Raises ``ValueError`` naming the requirement when one is not a single ``==`` pin.
    """
    project = pyproject["project"]
    requirements = project["dependencies"] + project["optional-dependencies"].get("test", [])
    pins: dict[str, str] = {}
    for text in requirements:
        requirement = Requirement(text)
        specifiers = list(requirement.specifier)
        if len(specifiers) != 1 or specifiers[0].operator != "==":
            raise ValueError(
                f"pyproject.toml: {text!r} is not an exact pin: write it as "
                f"'{requirement.name}==<version>'"
            )
        pins[normalise(requirement.name)] = specifiers[0].version
    return pins


def conda_pins(environment: dict) -> tuple[dict[str, str], str | None]:
    """Return (package -> version, python version) from an environment.yml mapping.

    Entries look like ``name=1.2.3`` (or ``name==1.2.3``); the nested ``pip:`` list and
    the bare ``pip`` entry are skipped. Raises ``ValueError`` for any other package that
    is not pinned to one version.
    """
    pins: dict[str, str] = {}
    python_version = None
    for entry in environment["dependencies"]:
        if not isinstance(entry, str):  # the `pip: [-e .]` mapping
            continue
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)\s*(?:==?\s*([A-Za-z0-9_.+!]+))?", entry.strip())
        name = normalise(match[1]) if match else entry
        if name == "python":
            python_version = match[2]
        elif name in CONDA_NON_PACKAGES:
            continue
        elif match is None or match[2] is None:
            raise ValueError(
                f"environment.yml: {entry!r} is not an exact pin: write it as '{name}=<version>'"
            )
        else:
            pins[name] = match[2]
    return pins, python_version


def constraint_pins(text: str) -> dict[str, str]:
    """Map package -> version from ``name==version`` lines of a pip constraints file."""
    pins: dict[str, str] = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            pins[normalise(name)] = version.split(";", 1)[0].strip()
    return pins


def python_floor(requires_python: str) -> str:
    """Return the lowest version a ``requires-python`` string allows, from its ``>=``."""
    floors = [spec.version for spec in SpecifierSet(requires_python) if spec.operator == ">="]
    if len(floors) != 1:
        raise ValueError(
            f"pyproject.toml: requires-python {requires_python!r} needs exactly one '>=' bound"
        )
    return floors[0]


def pin_differences(
    expected: dict[str, str], actual: dict[str, str], *, expected_in: str, actual_in: str
) -> list[str]:
    """Describe, one line per package, where ``actual`` lacks or differs from ``expected``.

    Packages only in ``actual`` are not reported: the constraints file is a superset by
    design, and the caller adds that check where it matters.
    """
    problems = []
    for name in sorted(expected.keys() - actual.keys()):
        problems.append(
            f"{name}: pinned at {expected[name]} in {expected_in} but missing from {actual_in}"
        )
    for name in sorted(expected.keys() & actual.keys()):
        if expected[name] != actual[name]:
            problems.append(
                f"{name}: {expected_in} pins {expected[name]}, {actual_in} pins {actual[name]}"
            )
    return problems


@pytest.fixture(scope="module")
def pyproject() -> dict:
    return tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def environment() -> dict:
    return yaml.safe_load(ENVIRONMENT_YML.read_text(encoding="utf-8"))


def test_environment_yml_pins_the_same_packages_and_versions_as_pyproject(pyproject, environment):
    expected = pyproject_pins(pyproject)
    actual, _ = conda_pins(environment)
    problems = pin_differences(
        expected, actual, expected_in="pyproject.toml", actual_in="environment.yml"
    )
    problems += [
        f"{name}: pinned at {actual[name]} in environment.yml but not in pyproject.toml "
        "(add it to [project] dependencies or the test extra, or drop it)"
        for name in sorted(actual.keys() - expected.keys())
    ]
    assert not problems, "pyproject.toml and environment.yml disagree:\n" + "\n".join(problems)


def test_environment_yml_python_satisfies_requires_python(pyproject, environment):
    requires_python = SpecifierSet(pyproject["project"]["requires-python"])
    _, python_version = conda_pins(environment)
    assert python_version, "environment.yml: add 'python=3.11' to dependencies"
    assert requires_python.contains(python_version), (
        f"environment.yml pins python={python_version}, outside pyproject.toml's "
        f"requires-python {requires_python}"
    )


def test_constraints_hold_every_pin_at_the_same_version(pyproject):
    expected = pyproject_pins(pyproject)
    locked = constraint_pins(CONSTRAINTS.read_text(encoding="utf-8"))
    problems = pin_differences(
        expected, locked, expected_in="pyproject.toml", actual_in=".ci/constraints.txt"
    )
    assert not problems, (
        "pyproject.toml and .ci/constraints.txt disagree; to relock, run "
        "`.venv/bin/python -m pip install -e '.[test]'` (no -c) then `make lock`:\n"
        + "\n".join(problems)
    )


def test_locked_packages_install_on_the_oldest_allowed_python(pyproject):
    # Only the installed distributions carry metadata; CI installs exactly the lock.
    floor = python_floor(pyproject["project"]["requires-python"])
    locked = constraint_pins(CONSTRAINTS.read_text(encoding="utf-8"))
    problems = []
    for dist in distributions():
        name = normalise(dist.metadata["Name"])
        requires_python = dist.metadata.get("Requires-Python")
        if locked.get(name) != dist.version or not requires_python:
            continue
        if not SpecifierSet(requires_python).contains(floor):
            problems.append(
                f"{name}=={dist.version} requires Python {requires_python}: pin a release "
                f"that supports {floor} in .ci/constraints.txt, or raise requires-python"
            )
    assert not problems, (
        f"pyproject.toml allows Python {floor}, but the lock cannot install there:\n"
        + "\n".join(sorted(problems))
    )


# The checks above must fail loudly and say which package differs and how.


def test_pin_differences_names_missing_and_mismatched_packages():
    problems = pin_differences(
        {"pandas": "3.1.1", "numpy": "2.4.6"},
        {"pandas": "3.1.0"},
        expected_in="pyproject.toml",
        actual_in="environment.yml",
    )
    assert problems == [
        "numpy: pinned at 2.4.6 in pyproject.toml but missing from environment.yml",
        "pandas: pyproject.toml pins 3.1.1, environment.yml pins 3.1.0",
    ]


def test_names_are_compared_in_canonical_form():
    pins, _ = conda_pins({"dependencies": ["Scikit_Learn=1.9.1", "python=3.11"]})
    assert pins == {"scikit-learn": "1.9.1"}
    assert constraint_pins("# header\njupyter_server==2.21.1\n") == {"jupyter-server": "2.21.1"}


def test_unpinned_requirements_are_rejected_with_the_fix():
    with pytest.raises(ValueError, match=r"'pandas>=3' is not an exact pin"):
        pyproject_pins({"project": {"dependencies": ["pandas>=3"], "optional-dependencies": {}}})
    with pytest.raises(ValueError, match=r"'lightgbm' is not an exact pin"):
        conda_pins({"dependencies": ["lightgbm", "pip", {"pip": ["-e ."]}]})
    with pytest.raises(ValueError, match=r"exactly one '>=' bound"):
        python_floor("<3.12")
    assert python_floor(">=3.11,<3.12") == "3.11"
