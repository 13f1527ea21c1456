"""The docs a new user reads first point to the files a run really writes (issue 14, item 9)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from itme.pipeline._runner import STATE_DIR

ROOT = Path(__file__).resolve().parents[2]


def test_quickstart_opens_the_report_in_the_templates_output_folder():
    output = yaml.safe_load((ROOT / "configs" / "template.yaml").read_text())["output"]
    text = (ROOT / "docs" / "quickstart.md").read_text()
    section = text.split("## 5. Read the results", 1)[1]
    reports = re.findall(r"`([\w./-]*report\.html)`", section)
    assert reports and all(r == f"{output}/report.html" for r in reports), reports


def test_readme_lists_every_top_level_output_of_a_run():
    text = (ROOT / "README.md").read_text()
    # what tests/e2e/test_demo_pipeline.py finds in a run folder
    for name in ("report.html", "run.json", "summary.json", "tables/", "figures/", "cells.h5ad",
                 "patients.h5ad", "work/", f"{STATE_DIR}/"):  # fmt: skip
        assert f"`{name}" in text, name


def test_readme_says_how_to_get_the_real_test_data_and_that_ci_needs_it():
    text = (ROOT / "README.md").read_text()
    assert "../shared/data" in text and "ITME_SHARED_DATA" in text and "PROVENANCE.md" in text
    assert "refuses to run without it" in text
    ci = (ROOT / ".ci" / "run").read_text()
    assert "../shared/data" in ci and "exit 1" in ci
