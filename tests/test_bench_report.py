"""The benchmarks' reporting module (tests/benchmarks/report.py), on known records: no
benchmark is run here."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "benchmarks"))
import report  # noqa: E402


def test_a_table_of_known_records_renders_the_expected_markdown():
    rows = [
        {"method": "ours", "rows/s": 55312.4, "threads": 2, "wall s": 18.16, "note": None},
        {"method": "naive", "rows/s": 20881.0, "threads": 2, "wall s": 47.93, "note": "slow"},
    ]
    text = report.table(rows, {"rows/s": ",.0f", "wall s": ".2f"})
    assert text.splitlines() == [
        "| method   |   rows/s |   threads |   wall s | note   |",
        "|:---------|---------:|----------:|---------:|:-------|",
        "| ours     |   55,312 |         2 |    18.16 | —      |",
        "| naive    |   20,881 |         2 |    47.93 | slow   |",
    ]


def test_a_dataframe_renders_like_its_records():
    import pandas as pd

    rows = [
        {"method": "ours", "rows/s": 55312.4, "threads": 2},
        {"method": "naive", "rows/s": None, "threads": 12000},
    ]
    formats = {"rows/s": ",.0f"}
    assert report.table(pd.DataFrame(rows), formats) == report.table(rows, formats)


def test_cells_keep_their_text_and_a_function_formats_a_column():
    rows = [{"part": "**total**", "s": "**2.161**", "share": 0.25, "tti": 1439.0}]
    text = report.table(rows, {"share": ".0%", "tti": lambda ms: f"{ms / 1000:.2f} s"})
    # strings that look like numbers are not re-parsed ("2.161" stays, "1.40" is not "1.4")
    assert text.splitlines()[2] == "| **total** | **2.161** |     25% | 1.44 s |"


def test_align_letters_must_match_the_columns():
    with pytest.raises(ValueError, match="2 letters for 3 columns"):
        report.table([{"a": 1, "b": 2, "c": 3}], align="lr")
    assert report.table([]) == ""


def test_the_targets_table_shows_a_result_for_each_target():
    text = report.targets_table(
        [
            {"target": "p50 <= 5 ms", "measured": "1.29 ms", "pass": True},
            {"target": "batch >= 300,000 rows/s", "measured": "55,312 rows/s", "pass": False},
            {"target": "warm cache", "measured": "1.16 s", "pass": None},
        ]
    )
    assert [line.split("|")[-2].strip() for line in text.splitlines()[2:]] == [
        "PASS",
        "**FAIL**",
        "context",
    ]
    assert report.missed([{"target": "a", "pass": False}, {"figure": "b", "pass": None}]) == ["a"]
    assert report.targets_table([]) == ""


def test_join_separates_blocks_and_drops_empty_ones():
    assert report.join("## A", ["- one", "- two"], None, "", [], "end") == (
        "## A\n\n- one\n- two\n\nend\n"
    )


def record(**extra) -> dict:
    return {
        "generated_at": "2026-11-30T09:37:21Z",
        "command": ".venv/bin/python tests/benchmarks/bench_x.py",
        "duration_s": 12.3,
        "load_average": {"start": [1.0, 1.0, 1.0], "end": [2.0, 1.5, 1.0]},
        "machine": {
            "cpu_count": 2,
            "cpus_usable": 2,
            "cpu_model": "CPU",
            "memory_gib": 4.0,
            "os": "Linux 6",
            "python": "3.11.7",
            "libraries": {"pandas": "3.1.1"},
            "git": "abc1234",
        },
        **extra,
    }


def test_the_heading_names_the_command_the_machine_and_the_load():
    lines = report.heading("Core benchmarks", record())
    assert lines[0] == "## Core benchmarks"
    assert "by `.venv/bin/python tests/benchmarks/bench_x.py` (12 s; git abc1234)" in lines[2]
    assert "pandas 3.1.1" in lines[4]
    assert "at start [1.0, 1.0, 1.0], at end [2.0, 1.5, 1.0]" in lines[4]


DOC = """# Benchmarks

Intro kept.

<!-- core:start -->
old core
<!-- core:end -->

Between, kept.

<!-- api:start -->
old api
<!-- api:end -->
"""


def test_a_section_rewrite_keeps_the_other_sections(tmp_path):
    (tmp_path / "benchmarks.md").write_text(DOC)
    (tmp_path / "benchmarks.json").write_text(json.dumps({"api": {"kept": 1}, "core": {"x": 0}}))
    report.write_section(tmp_path, "core", {"x": 2}, "## Core\n\nnew core\n")
    assert (tmp_path / "benchmarks.md").read_text() == DOC.replace(
        "old core\n", "## Core\n\nnew core\n"
    )
    assert json.loads((tmp_path / "benchmarks.json").read_text()) == {
        "api": {"kept": 1},
        "core": {"x": 2},
    }
    report.write_section(tmp_path, "security", {"y": 1}, "new security\n")
    text = (tmp_path / "benchmarks.md").read_text()
    assert text.startswith(DOC.replace("old core\n", "## Core\n\nnew core\n").rstrip("\n"))
    assert text.endswith("\n\n<!-- security:start -->\nnew security\n<!-- security:end -->\n")
    assert not list(tmp_path.glob(".*.tmp"))


def test_a_report_that_is_not_json_is_left_alone(tmp_path):
    (tmp_path / "benchmarks.json").write_text("[1, 2")
    with pytest.raises(SystemExit, match="is not a JSON object"):
        report.write_section(tmp_path, "core", {}, "x\n")
    assert (tmp_path / "benchmarks.json").read_text() == "[1, 2"
    assert not (tmp_path / "benchmarks.md").exists()


def test_publish_writes_unless_told_not_and_fails_a_missed_target_when_strict(tmp_path, capsys):
    missed = record(targets=[{"target": "t", "measured": "m", "pass": False}])
    args = argparse.Namespace(no_write=True, strict=True, docs=tmp_path)
    assert report.publish("core", missed, "## Core\n", args) == 1
    assert not list(tmp_path.iterdir())
    args = argparse.Namespace(no_write=False, strict=False, docs=tmp_path)
    assert report.publish("core", missed, "## Core\n", args) == 0
    assert (tmp_path / "benchmarks.md").read_text().startswith("# Benchmarks\n")
    assert "targets missed: t" in capsys.readouterr().err
