"""axe-core, the accessibility checker, from the npm registry: fetched once, checked, run.

The pinned release is fetched with npm's own client (`npm pack`, the registry the machine is
set up for) the first time a test needs it, checked against the integrity value pinned here
(the registry's `dist.integrity` for that release, so a changed or corrupted tarball fails
closed), and its `axe.min.js` cached in the virtualenv (`.venv/share/axe-core/<version>/`),
never committed: the tarball is 0.7 MB and a release a year keeps it current by a one-line
change. axe-core is MPL-2.0; it only runs inside the test browser.

The page's Content-Security-Policy allows scripts from the server only, so the source is
run with `page.evaluate` (CSP's 'unsafe-eval' is allowed for the widget libraries), not as
an inline <script>: nothing is blocked, and the tests' policy watcher stays meaningful.

Usage: `python tests/browser/axe.py` fetches it ahead of time (e.g. before going offline).
"""

from __future__ import annotations

import base64
import hashlib
import io
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from playwright.sync_api import Page

AXE_VERSION = "4.14.1"
# `npm view axe-core@4.14.1 dist.integrity`
AXE_INTEGRITY = (
    "sha512-FHfa+lmNjQZfJz1q8wKqIDwC6DExcHt/pkjNQb09a3NPjCKg2rhu5qb2S4r76ASyFNNtuFooJpZe37"
    "OgudVGtQ=="
)
PROJ_ROOT = Path(__file__).resolve().parents[2]
CACHE = PROJ_ROOT / ".venv" / "share" / "axe-core" / AXE_VERSION / "axe.min.js"
FETCH_TIMEOUT = 180  # s for npm to fetch 0.7 MB
# What fails a page: axe's two worst impacts (a blocker for some users), not "moderate"
# or "minor" (best practices), which are reported but not failed on.
FAILING_IMPACTS = ("serious", "critical")
# WCAG 2.0/2.1/2.2 A and AA, and axe's best practices (landmarks, one main, headings).
RUN_OPTIONS = {
    "runOnly": {
        "type": "tag",
        "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa", "best-practice"],
    },
    "resultTypes": ["violations"],
}
RUN_AXE = """async ([source, context, options]) => {
  if (!window.axe) (0, eval)(source);
  const result = await window.axe.run(context, options);
  return result.violations.map(v => ({
    id: v.id, impact: v.impact, help: v.help,
    targets: v.nodes.map(n => n.target.join(' ')),
    summaries: v.nodes.map(n => n.failureSummary || ''),
  }));
}"""


@dataclass(frozen=True)
class Violation:
    """One rule axe found broken, and where."""

    id: str
    impact: str
    help: str
    targets: tuple[str, ...]
    summaries: tuple[str, ...]

    def describe(self, limit: int = 8) -> str:
        lines = [f"{self.id} ({self.impact}, {len(self.targets)} nodes): {self.help}"]
        for target, summary in list(zip(self.targets, self.summaries, strict=True))[:limit]:
            first = summary.splitlines()[1].strip() if summary.count("\n") else summary
            lines.append(f"    {target}  {first}")
        if len(self.targets) > limit:
            lines.append(f"    ... and {len(self.targets) - limit} more")
        return "\n".join(lines)


def _check(tarball: bytes) -> None:
    algorithm, _, expected = AXE_INTEGRITY.partition("-")
    digest = base64.b64encode(hashlib.new(algorithm, tarball).digest()).decode()
    if digest != expected:
        raise RuntimeError(
            f"axe-core {AXE_VERSION} from the registry does not match its pinned integrity "
            f"({algorithm} {digest} != {expected}): refusing to run it"
        )


def fetch() -> Path:
    """The cached axe.min.js, fetched with `npm pack` and checked first if it is missing."""
    if CACHE.exists():
        return CACHE
    with tempfile.TemporaryDirectory() as folder:
        try:
            subprocess.run(
                ["npm", "pack", f"axe-core@{AXE_VERSION}", "--silent"],
                cwd=folder,
                check=True,
                capture_output=True,
                text=True,
                timeout=FETCH_TIMEOUT,
            )
        except (OSError, subprocess.SubprocessError) as error:
            detail = getattr(error, "stderr", "") or error
            raise RuntimeError(
                f"could not fetch axe-core {AXE_VERSION} with npm ({detail}); install npm "
                "(Debian: apt-get install npm) and reach the npm registry, or run "
                "`python tests/browser/axe.py` where it can"
            ) from error
        tarball = (Path(folder) / f"axe-core-{AXE_VERSION}.tgz").read_bytes()
    _check(tarball)
    with tarfile.open(fileobj=io.BytesIO(tarball), mode="r:gz") as archive:
        source = archive.extractfile("package/axe.min.js").read()
    CACHE.parent.mkdir(parents=True, exist_ok=True)
    partial = CACHE.with_suffix(".part")
    partial.write_bytes(source)
    partial.replace(CACHE)  # whole or not at all
    return CACHE


def run(page: Page, context: str | dict = "body") -> list[Violation]:
    """axe's violations on the page as it is now (WCAG A/AA and best practices)."""
    found = page.evaluate(RUN_AXE, [fetch().read_text(encoding="utf-8"), context, RUN_OPTIONS])
    return [
        Violation(v["id"], v["impact"] or "", v["help"], tuple(v["targets"]), tuple(v["summaries"]))
        for v in found
    ]


def failing(violations: list[Violation]) -> list[Violation]:
    return [v for v in violations if v.impact in FAILING_IMPACTS]


if __name__ == "__main__":
    print(fetch())
    sys.exit(0)
