"""Broken configs: ``itme validate`` and the start of ``itme run`` report the same problems.

Each variant breaks one thing of a tiny valid cohort (3 patients, 3 FCS files); validate
must name it (exit 2), and run must stop with the same list before its first stage, instead
of failing later at the stage that trips over it.
"""

from __future__ import annotations

import pytest
import yaml
from helpers.faults import tiny_cohort

from itme.cli import main
from itme.errors import ItmeInputError
from itme.pipeline import load_config, run, validate


def _set(config: dict, dotted: str, value) -> None:
    *head, last = dotted.split(".")
    node = config
    for part in head:
        node = node.setdefault(part, {})
    node[last] = value


# (id, key to set, value, text the problem must contain)
VARIANTS = [
    ("k_above_patients", "patients.k", 5, "5 iTME clusters cannot be made from the 3 patients"),
    ("k_equal_patients", "patients.k", 3, "choose k <= 2"),
    ("cofactor_zero", "transform.cofactor", 0, "transform.cofactor: the cofactor must be > 0"),
    ("cofactor_negative", "transform.cofactor", -5, "the cofactor must be > 0, found -5"),
    ("cofactor_per_antigen", "transform.cofactor", {"CD45": 5, "CD19": 0}, "'CD19': 0"),
    ("grid_zero", "cluster.grid", [0, 0], "cluster.grid.0: Input should be greater than 0"),
    ("metaclusters_above_grid", "cluster.n_metaclusters", 500, "exceeds the 100 SOM nodes"),
    (
        "contrast_overlap",
        "rnaseq.contrasts",
        [{"name": "x", "groupby": "itme_cluster", "test": ["1", "2"], "reference": ["2"]}],
        "levels ['2'] are in both test and reference",
    ),
    ("gene_sets_missing", "rnaseq.gene_sets", "nope.gmt", "nope.gmt"),
    ("counts_missing", "inputs.counts", "nope.tsv", "counts: "),
    ("phenotypes_missing", "inputs.phenotypes", "nope.yaml", "phenotypes: "),
    ("output_is_a_file", "output", "samples.csv", "samples.csv is an existing file, not a folder"),
    ("gate_reversed", "clean.thresholds", {"cd45": [5, 1]}, "gate 'cd45': low 5 is above high 1"),
    ("unknown_key", "cluster.gridd", [3, 3], "unknown key 'cluster.gridd'; did you mean 'grid'?"),
]


@pytest.mark.parametrize(
    ("key", "value", "expected"), [v[1:] for v in VARIANTS], ids=[v[0] for v in VARIANTS]
)
def test_validate_and_run_report_the_same_problem(tmp_path, capsys, key, value, expected):
    config = tiny_cohort(tmp_path)
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    assert validate(path) == []  # the unbroken config is valid
    _set(config, key, value)
    path.write_text(yaml.safe_dump(config))
    problems = validate(path)
    assert any(expected in p for p in problems), problems
    with pytest.raises(ItmeInputError, match="problem\\(s\\) in the config or its inputs") as err:
        run(path)
    assert err.value.problems == problems
    assert not (tmp_path / "out" / ".itme").exists()  # stopped before the first stage
    assert main(["-q", "validate", str(path)]) == 2
    assert expected in capsys.readouterr().out
    assert main(["-q", "run", str(path)]) == 2
    assert expected in capsys.readouterr().err


def test_config_key_errors_and_file_problems_are_listed_together(tmp_path):
    config = tiny_cohort(tmp_path)
    _set(config, "cluster.gridd", [3, 3])  # an unknown key
    _set(config, "transform.cofactor", 0)  # a value out of range
    _set(config, "patients.k", 9)  # more clusters than patients: known only from samples.csv
    _set(config, "inputs.counts", "nope.tsv")  # a missing file
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    text = "\n".join(validate(path))
    assert "unknown key 'cluster.gridd'" in text
    assert "the cofactor must be > 0" in text
    assert "9 iTME clusters cannot be made from the 3 patients" in text
    assert "nope.tsv" in text


def test_duplicate_key_names_the_key_and_both_lines(tmp_path, capsys):
    config = tiny_cohort(tmp_path)
    text = yaml.safe_dump(config, sort_keys=False)
    assert text.startswith("seed: 1\n")
    path = tmp_path / "c.yaml"
    path.write_text(text + "seed: 7\n")
    n_lines = text.count("\n") + 1
    problems = validate(path)
    assert problems == [
        f"{path}: the key 'seed' appears twice in one mapping, at line 1 and at line {n_lines}. "
        "Keep one of them (YAML would silently use the last)"
    ]
    with pytest.raises(ItmeInputError, match="'seed' appears twice"):
        load_config(path)
    assert main(["-q", "run", str(path)]) == 2
    assert f"at line 1 and at line {n_lines}" in capsys.readouterr().err


def test_duplicate_key_in_a_nested_section(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("inputs:\n  samples: a.csv\n  panel: p.csv\n  samples: b.csv\n")
    with pytest.raises(ItmeInputError, match="'samples' appears twice .* line 2 and at line 4"):
        load_config(path)


def test_yaml_merge_keys_are_not_duplicates(tmp_path):
    config = tiny_cohort(tmp_path)
    path = tmp_path / "c.yaml"
    text = yaml.safe_dump(config, sort_keys=False)
    path.write_text(
        text + "report: &r\n  title: a\nembed:\n  <<: {enabled: true}\n  n_cells: 500\n"
    )
    assert load_config(path).embed.n_cells == 500


def test_latin1_config_names_the_file_and_byte(tmp_path, capsys):
    config = tiny_cohort(tmp_path)
    path = tmp_path / "c.yaml"
    body = "# r\xe9sum\xe9\n" + yaml.safe_dump(config)
    path.write_bytes(body.encode("latin-1"))
    problems = validate(path)
    assert len(problems) == 1
    assert f"{path}: not UTF-8 text" in problems[0]
    assert "byte 0xe9 at byte position 3 (line 1)" in problems[0]
    assert main(["-q", "run", str(path)]) == 2
    assert "byte position 3" in capsys.readouterr().err


def test_gene_sets_path_resolves_from_the_config_folder(tmp_path):
    config = tiny_cohort(tmp_path)
    (tmp_path / "sets.gmt").write_text("SET_A\tna\tCD3E\tCD4\tCD8A\n")
    _set(config, "rnaseq.gene_sets", "sets.gmt")
    _set(config, "inputs.counts", "counts.tsv")
    (tmp_path / "counts.tsv").write_text("gene\tS0\tS1\tS2\nCD3E\t1\t2\t3\nCD4\t4\t5\t6\n")
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    assert load_config(path).rnaseq.gene_sets == str(tmp_path.resolve() / "sets.gmt")
    assert not any("gene_sets" in p for p in validate(path))


def test_a_section_check_hidden_by_a_key_error_is_still_reported(tmp_path):
    config = tiny_cohort(tmp_path)
    _set(config, "cluster.gridd", [3, 3])  # rejected: the section's own checks wait for it
    _set(config, "cluster.n_metaclusters", 500)
    _set(config, "rnaseq.contrasts", [
        {"name": "a", "groupby": "itme_cluster", "test": ["1"], "reference": ["1"]},
        {"name": "b", "groupby": "itme_cluster", "test": ["2"], "reference": []},
    ])  # fmt: skip
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    text = "\n".join(validate(path))
    assert "unknown key 'cluster.gridd'" in text
    assert "n_metaclusters (500) exceeds the 100 SOM nodes" in text
    assert "contrast 'a': levels ['1'] are in both test and reference" in text
    assert "rnaseq.contrasts.1.reference: List should have at least 1 item" in text


def test_an_invalid_required_key_is_one_problem_not_also_missing(tmp_path):
    config = tiny_cohort(tmp_path)
    _set(config, "inputs.samples", ["a.csv", "b.csv"])
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    problems = validate(path)
    assert len(problems) == 1 and "inputs.samples: Input is not a valid path" in problems[0]
