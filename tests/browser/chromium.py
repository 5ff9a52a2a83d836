"""The chromium that the browser tests, `make screenshots` and the dashboards' benchmark drive:
one lookup for all of them, and `make test`'s way of getting one.

    python tests/browser/chromium.py            print its path, or say how to get one (exit 1)
    python tests/browser/chromium.py --install  the same, but first install Debian's chromium
                                                with apt-get when none is found and this
                                                is root on a machine that has apt-get

The lookup, first match wins: the CHROMIUM environment variable (`make test CHROMIUM=...`
sets it), a path or a command name, which must then work (a typo never silently picks
another browser); the first of NAMES on PATH; /usr/bin/chromium (found even with a PATH
that lacks /usr/bin, as cron's may). Playwright drives it by path: the project never uses a
browser that Playwright downloads itself (`playwright install`), which the network here
cannot reach and no package manager keeps patched.

Standard library only: .ci/run asks it before the virtual environment exists.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

VARIABLE = "CHROMIUM"
# Debian's and Fedora's chromium, Ubuntu's, Google's Chrome (any of them runs headless).
NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
FIXED = (Path("/usr/bin/chromium"),)
APT_PACKAGE = "chromium"
HOW_TO_GET_ONE = f"""\
The browser tests (pytest's `browser` marker) and `make screenshots` drive chromium. Either
  - install it: `sudo apt-get install {APT_PACKAGE}` on Debian (`make test` does this itself
    when run as root on a machine with apt-get); any chromium or Chrome on PATH is found too;
  - or name one: `make test CHROMIUM=/path/to/chrome` (or export CHROMIUM=...);
  - or run every other test without it: `make test PYTEST_ARGS='-m "not browser"'`
    (`.venv/bin/python -m pytest -m "not browser"`)."""


class ChromiumNotFound(RuntimeError):
    """No usable chromium here; the message says where it looked and how to get one."""


def _executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def find(
    environ: Mapping[str, str] = os.environ, fixed: Sequence[Path] | None = None
) -> Path | None:
    """The chromium to drive, or None when there is none. A CHROMIUM that is set but names
    no executable raises ChromiumNotFound: the caller asked for that one browser."""
    fixed = FIXED if fixed is None else fixed
    search_path = environ.get("PATH", os.defpath)
    given = environ.get(VARIABLE, "").strip()
    if given:
        found = shutil.which(given, path=search_path)
        if found is None:
            raise ChromiumNotFound(
                f"{VARIABLE}={given!r} is neither an executable file nor a command on PATH: "
                f"point it at a chromium or Chrome, or unset it to look for one.\n{HOW_TO_GET_ONE}"
            )
        return Path(found)
    for name in NAMES:
        found = shutil.which(name, path=search_path)
        if found:
            return Path(found)
    return next((path for path in fixed if _executable(path)), None)


def can_install() -> bool:
    """apt-get is here and we may run it (root): a bare Debian machine or CI container."""
    return os.geteuid() == 0 and shutil.which("apt-get") is not None


def install_with_apt(run: Callable[..., subprocess.CompletedProcess] = subprocess.run) -> None:
    """`apt-get update`, then Debian's chromium without its recommended extras (as .ci/run).
    Raises ChromiumNotFound naming the command that failed."""
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    commands = (
        ["apt-get", "update"],
        ["apt-get", "install", "-y", "--no-install-recommends", APT_PACKAGE],
    )
    for command in commands:
        print("+", " ".join(command), file=sys.stderr, flush=True)
        done = run(command, env=env, stdin=subprocess.DEVNULL, check=False)
        if done.returncode != 0:
            raise ChromiumNotFound(
                f"no chromium found, and `{' '.join(command)}` failed (exit {done.returncode}, "
                f"its output is above).\n{HOW_TO_GET_ONE}"
            )


def not_found_message(environ: Mapping[str, str] = os.environ) -> str:
    places = ", ".join(NAMES)
    fixed = ", ".join(str(path) for path in FIXED)
    return (
        f"no chromium found: {VARIABLE} is not set, none of {places} is on PATH "
        f"({environ.get('PATH', os.defpath)}) and {fixed} does not exist.\n{HOW_TO_GET_ONE}"
    )


def require(*, install: bool = False) -> Path:
    """The chromium to drive; with `install`, Debian's is installed first where none is found
    and can_install(). Raises ChromiumNotFound with what to do."""
    found = find()
    if found is None and install and can_install():
        install_with_apt()
        found = find()
    if found is None:
        raise ChromiumNotFound(not_found_message())
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--install", action="store_true", help="install Debian's chromium if none is found"
    )
    args = parser.parse_args(argv)
    try:
        print(require(install=args.install))
    except ChromiumNotFound as error:
        print(error, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
