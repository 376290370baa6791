"""Progress: one line per stage in a log (with its seconds and the time since the start), a line per tenth of
the steps, a bar on a terminal, nothing where nobody asked."""

from __future__ import annotations

import io
import re

import pytest

from hqsam_edge import progress


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_lines_in_a_log():
    log = io.StringIO()
    with progress.reporting(progress.Reporter(log)):
        with progress.stage("export: trace the encoder"):
            pass
        with progress.stage("build: calibration images", total=20, unit="image") as s:
            for i in range(20):
                s.advance(detail=f"img{i}.jpg")
        progress.note("build: int8 chose 7 of 40 layers")
    lines = log.getvalue().splitlines()
    assert re.fullmatch(r"\[\s+\d+\.\d s\] export: trace the encoder \(\d+\.\d s\)", lines[0])
    steps = [ln for ln in lines if "calibration images " in ln and "/20" in ln and "(" in ln and "s," not in ln]
    assert [re.search(r"(\d+)/20", ln).group(1) for ln in steps] == ["1", "3", "5", "7", "9", "11", "13", "15", "17",
                                                                     "19"]
    assert re.search(r"build: calibration images \(\d+\.\d s, 20/20 images, img19\.jpg\)$", lines[-2])
    assert lines[-1].endswith("build: int8 chose 7 of 40 layers")


def test_a_failed_stage_says_so():
    log = io.StringIO()
    with progress.reporting(progress.Reporter(log)), pytest.raises(ValueError):
        with progress.stage("verify"):
            raise ValueError("miss")
    assert "verify failed (" in log.getvalue()


def test_nothing_without_a_reporter(capsys):
    with progress.stage("silent", total=3) as s:
        s.advance(3)
    progress.note("nobody listens")
    assert capsys.readouterr() == ("", "")


def test_a_bar_on_a_terminal():
    term = Terminal()
    with progress.reporting(progress.Reporter(term)):
        with progress.stage("bench: rows", total=4, unit="row") as s:
            for _ in range(4):
                s.advance()
    text = term.getvalue()
    assert "bench: rows" in text and "4/4" in text  # tqdm's bar, then the stage's closing line
    assert re.search(r"bench: rows \(\d+\.\d s, 4/4 rows\)", text)
