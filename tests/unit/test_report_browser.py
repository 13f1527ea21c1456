"""The report renders in headless Chromium (scripts/check_report_browser.py)."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parents[2] / "scripts" / "check_report_browser.py"


def _need_chromium(checker) -> None:
    if checker.CHROMIUM.is_file():
        return
    if os.environ.get("ITME_REQUIRE_BROWSER") == "1":
        pytest.fail(f"ITME_REQUIRE_BROWSER=1 but {checker.CHROMIUM} is missing")
    pytest.skip("headless Chromium not installed (apt-get install -y chromium)")


def _load():
    spec = importlib.util.spec_from_file_location("check_report_browser", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_example_report_renders_in_chromium(tmp_path, capsys):
    checker = _load()
    _need_chromium(checker)
    report = checker.build_example(tmp_path / "run")
    shot = tmp_path / "shot.png"
    ok = checker.check(report, shot)
    out = capsys.readouterr().out
    assert ok, out
    assert out.count("ok  ") == 6
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_checker_catches_external_and_broken_images(tmp_path, capsys):
    checker = _load()
    _need_chromium(checker)
    report = checker.build_example(tmp_path / "run")
    text = report.read_text()
    bad = tmp_path / "bad.html"
    bad.write_text(
        text.replace(
            "<main>",
            '<main><img src="https://example.org/x.png"><img src="data:image/png;base64,AAAA">',
            1,
        )
    )
    assert not checker.check(bad, tmp_path / "bad.png")
    out = capsys.readouterr().out
    assert "FAIL  no CSP violation" in out and "example.org" in out
    assert "FAIL  every image decoded" in out and "2 broken" in out
