"""The browser tests' chromium: found (CHROMIUM, PATH, /usr/bin/chromium) or installed with
apt-get by `make test`, else a message saying how to get one; and the `browser` marker that
lets `-m "not browser"` run every other test without it (tests/browser/chromium.py,
tests/conftest.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from browser import chromium

from homevalue import config

# Records what a collection selected and what `-m` deselected, and whether each test uses
# the `browser` fixture (directly or through another, such as `page`) and carries the marker.
MARKER_PROBE = textwrap.dedent(
    """
    import json, os

    DESELECTED = []

    def pytest_deselected(items):
        DESELECTED.extend(items)

    def row(item):
        return {"id": item.nodeid,
                "uses_browser": "browser" in getattr(item, "fixturenames", ()),
                "marked": item.get_closest_marker("browser") is not None}

    def pytest_collection_finish(session):
        with open(os.environ["MARKER_PROBE_OUT"], "w") as out:
            json.dump({"selected": [row(i) for i in session.items],
                       "deselected": [row(i) for i in DESELECTED]}, out)
    """
)


def fake_executable(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\necho 'Chromium 1.0'\n")
    path.chmod(0o755)
    return path


def test_the_chromium_variable_wins_over_path(tmp_path):
    fake_executable(tmp_path / "bin" / "chromium")
    chosen = fake_executable(tmp_path / "elsewhere" / "my-chrome")
    environ = {"PATH": str(tmp_path / "bin"), "CHROMIUM": str(chosen)}
    assert chromium.find(environ, fixed=()) == chosen
    # a command name works too, looked up on PATH
    environ["CHROMIUM"] = "chromium"
    assert chromium.find(environ, fixed=()) == tmp_path / "bin" / "chromium"


def test_a_chromium_variable_naming_nothing_is_an_error_not_a_fallback(tmp_path):
    fake_executable(tmp_path / "bin" / "chromium")
    environ = {"PATH": str(tmp_path / "bin"), "CHROMIUM": str(tmp_path / "typo")}
    with pytest.raises(chromium.ChromiumNotFound) as error:
        chromium.find(environ, fixed=())
    assert f"CHROMIUM='{tmp_path / 'typo'}'" in str(error.value)
    assert '-m "not browser"' in str(error.value)


def test_path_then_the_fixed_place(tmp_path):
    fake_executable(tmp_path / "bin" / "google-chrome")
    fixed = fake_executable(tmp_path / "usr-bin" / "chromium")
    (tmp_path / "bin" / "chromium-browser").write_text("not executable")
    environ = {"PATH": str(tmp_path / "bin")}
    assert chromium.find(environ, fixed=(fixed,)) == tmp_path / "bin" / "google-chrome"
    assert chromium.find({"PATH": str(tmp_path / "empty")}, fixed=(fixed,)) == fixed
    assert chromium.find({"PATH": str(tmp_path / "empty")}, fixed=(tmp_path / "none",)) is None


@pytest.fixture
def no_chromium_here(tmp_path, monkeypatch):
    """A machine with no chromium anywhere the lookup goes."""
    monkeypatch.delenv("CHROMIUM", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "empty-path"))
    monkeypatch.setattr(chromium, "FIXED", (tmp_path / "usr" / "bin" / "chromium",))
    return chromium.FIXED[0]


def test_without_chromium_the_message_says_how_to_get_one(no_chromium_here, monkeypatch, capsys):
    monkeypatch.setattr(chromium, "can_install", lambda: False)  # not root, or no apt-get
    monkeypatch.setattr(chromium, "install_with_apt", lambda: pytest.fail("apt-get was run"))
    assert chromium.main(["--install"]) == 1
    message = capsys.readouterr().err
    assert message.startswith("no chromium found: CHROMIUM is not set")
    for advice in ("apt-get install chromium", "CHROMIUM=/path/to/chrome", '-m "not browser"'):
        assert advice in message


def test_as_root_with_apt_get_it_installs_chromium(no_chromium_here, monkeypatch, capsys):
    installed = []

    def install():
        installed.append(fake_executable(no_chromium_here))

    monkeypatch.setattr(chromium, "can_install", lambda: True)
    monkeypatch.setattr(chromium, "install_with_apt", install)
    assert chromium.main([]) == 1 and not installed  # without --install, only a lookup
    capsys.readouterr()
    assert chromium.main(["--install"]) == 0
    assert installed and capsys.readouterr().out.strip() == str(no_chromium_here)


def test_apt_get_runs_update_then_install_and_a_failure_is_reported():
    commands = []

    def run(command, **kwargs):
        commands.append(command)
        assert kwargs["env"]["DEBIAN_FRONTEND"] == "noninteractive"
        return subprocess.CompletedProcess(command, 100 if "install" in command else 0)

    with pytest.raises(chromium.ChromiumNotFound) as error:
        chromium.install_with_apt(run)
    assert commands == [
        ["apt-get", "update"],
        ["apt-get", "install", "-y", "--no-install-recommends", "chromium"],
    ]
    assert "apt-get install -y --no-install-recommends chromium` failed (exit 100" in str(
        error.value
    )


def run_pytest(*args: str, env: dict) -> subprocess.CompletedProcess:
    """This checkout's pytest in a child process, without the suite's addopts (nbval)."""
    command = [sys.executable, "-m", "pytest", "-o", "addopts=", "-p", "no:cacheprovider"]
    return subprocess.run(
        [*command, *args],
        cwd=config.PROJ_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_pytest_stops_before_the_browser_tests_when_there_is_no_chromium(tmp_path):
    """One clear message up front, not one error per browser test."""
    env = {**os.environ, "CHROMIUM": str(tmp_path / "no-chromium")}
    done = run_pytest("tests/browser/test_pages.py", env=env)
    assert done.returncode == pytest.ExitCode.USAGE_ERROR, done.stdout + done.stderr
    assert f"CHROMIUM='{tmp_path / 'no-chromium'}'" in done.stderr
    assert " passed" not in done.stdout and " failed" not in done.stdout


def test_not_browser_deselects_every_test_that_uses_the_browser(tmp_path):
    """Collect with `-m "not browser"`: no test left uses the `browser` fixture (which
    launches chromium), and everything deselected does and is marked. The fixture lives in
    tests/browser/conftest.py, so only tests/browser/ can use it: collecting it (and a
    module outside) covers every such test."""
    (tmp_path / "marker_probe.py").write_text(MARKER_PROBE)
    out = tmp_path / "collected.json"
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "MARKER_PROBE_OUT": str(out)}
    done = run_pytest(
        "--collect-only",
        "-q",
        "-p",
        "marker_probe",
        "-m",
        "not browser",
        "tests/browser",
        "tests/test_chromium.py",
        env=env,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    collected = json.loads(out.read_text())
    left = [row["id"] for row in collected["selected"] if row["uses_browser"]]
    assert not left, f"use chromium but run under -m 'not browser': {left}"
    deselected = collected["deselected"]
    assert all(row["uses_browser"] and row["marked"] for row in deselected)
    files = {row["id"].split("::")[0] for row in deselected}
    assert {"tests/browser/test_price_page.py", "tests/browser/test_pages.py"} <= files
    assert any(row["id"].startswith("tests/test_chromium.py") for row in collected["selected"])


def test_chromium_is_launched_only_through_the_browser_fixture():
    """A test that launched chromium some other way would miss the marker, and fail where
    `-m "not browser"` promises to need none. Launching takes Playwright's entry point."""
    tests = config.PROJ_ROOT / "tests"
    allowed = {tests / "browser" / name for name in ("conftest.py", "screenshots.py")}
    launching = [
        str(path.relative_to(tests))
        for path in tests.rglob("*.py")
        if "benchmarks" not in path.parts
        and path not in allowed
        and path != Path(__file__)
        and any(start in path.read_text() for start in ("sync_playwright", "async_playwright"))
    ]
    assert not launching, (
        f"{launching} launch chromium: use the `browser` fixture (tests/browser/conftest.py), "
        "which marks the test `browser`"
    )
