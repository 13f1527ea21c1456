"""The cleaning-step table is the one definition of a step: everything else derives from it."""

from __future__ import annotations

import ast
import typing
from pathlib import Path

import numpy as np
import pytest
from helpers.qc_sim import planted_cohort

import itme
from itme.core.clean.channels import ROLES, detect_roles
from itme.core.clean.steps import (
    GATING_COFACTOR,
    KEPT,
    QC_LABELS,
    STEP_NAMES,
    STEPS,
    canonical_step,
    gates_for_roles,
)
from itme.datasets import _qc as artefacts
from itme.pipeline._config import Clean
from itme.pl._qc import QC_COLORS, _panels

ROOT = Path(__file__).resolve().parents[2]


def test_the_table_is_consistent():
    names = [n for s in STEPS for n in (s.name, *s.aliases)]
    assert len(names) == len(set(names)) and KEPT not in names
    assert QC_LABELS == (KEPT, *STEP_NAMES)
    for step in STEPS:
        roles = [r for r, _ in step.roles]
        assert set(roles) <= set(ROLES), step.name
        assert {side for _, side in step.roles} <= {"low", "high"}
        assert set(step.manual) <= set(roles) and (not step.all_of or step.all_of in roles)
        assert {r for xy in step.panels for r in xy if r} <= set(ROLES)
        assert step.panels, f"{step.name}: no QC panel shows its gates"
        assert step.k > 0 and step.min_delta > 0
    assert all(canonical_step(a) == s.name for s in STEPS for a in s.aliases)
    assert canonical_step("beads") is None


def test_role_names_are_the_detector_s():
    """detect_roles emits only ROLES, whatever the naming style."""
    names = ["Event_length", "140Ce_Beads", "89Y_CD45", "191Ir_DNA1", "195Pt_Cisplatin"]
    names += ["151Eu_CD25", "Residual", "Width", "Offset", "Center", "beadDist"]
    roles = detect_roles(names, names, [""] * len(names))
    assert set(roles) == set(ROLES)


def test_every_consumer_reads_the_table():
    # config: the accepted step names are the table's names and aliases, resolved to names
    (literal,) = typing.get_args(typing.get_args(Clean.model_fields["steps"].annotation)[0])
    assert typing.get_args(literal) == tuple(n for s in STEPS for n in (s.name, *s.aliases))
    alias_steps = [a for s in STEPS for a in s.aliases]
    assert Clean(steps=alias_steps).steps == [canonical_step(a) for a in alias_steps]
    # the artefact simulator plants one class per step, with the step's labels
    assert artefacts.QC_CLASSES == QC_LABELS
    assert set(artefacts._PLANTERS) == set(STEP_NAMES)
    # QC figures: a colour per label, a panel for every step
    assert list(QC_COLORS) == list(QC_LABELS)
    assert {s for _, _, steps in _panels() for s in steps} == set(STEP_NAMES)
    # gates: one per role found, named by the step
    roles = {r: [(i, r)] for i, r in enumerate(ROLES)}
    gates = gates_for_roles(roles, STEP_NAMES)
    assert list(gates) == list(STEP_NAMES)
    for step in STEPS:
        assert [(g.role, g.side) for g in gates[step.name]] == list(step.roles)


def test_pp_clean_writes_the_table_s_names_and_defaults():
    adata, truth = planted_cohort(2, n_per_sample=3000, n_samples=1)
    itme.pp.clean(adata)
    qc = adata.uns["qc"]
    assert tuple(adata.obs["itme_qc"].cat.categories) == QC_LABELS
    assert set(np.unique(truth)) <= set(QC_LABELS)
    acc = qc["accounting"]
    assert list(acc.columns) == ["sample_id", "events_in", *STEP_NAMES, "events_out", "pct_kept"]
    assert list(dict.fromkeys(qc["thresholds"]["step"])) == list(STEP_NAMES)
    assert qc["params"]["k"] == {s.name: s.k for s in STEPS}
    assert qc["params"]["min_delta"] == {s.name: s.min_delta for s in STEPS}
    assert qc["params"]["cofactor"] == GATING_COFACTOR


def test_docs_list_the_table():
    """docs/cleaning.md's step table has the table's rows, in order: name, description, k,
    min_delta."""
    text = (ROOT / "docs" / "cleaning.md").read_text()
    table = text.split("| step | an event fails when | combined | k | min_delta |")[1]
    rows = []
    for line in table.strip().splitlines()[1:]:
        if not line.startswith("|"):
            break
        name, fails, _, k, min_delta = (c.strip() for c in line.strip("|").split("|"))
        rows.append((name.strip("`"), fails.replace("**", ""), float(k), float(min_delta)))
    assert rows == [(s.name, s.description, s.k, s.min_delta) for s in STEPS]


# modules that may spell a step name as a string, and why (the definition is steps.py)
_ALLOWED = {
    "core/clean/steps.py": "the table",
    "datasets/_qc.py": "how each class is planted, keyed by step (checked above)",
    "datasets/_simulate.py": "the demo's share of each artefact class",
    "tl/_flowsom.py": "merge_floor='doublet_rate' reads the accounting column of doublets",
}


# step names that are also role names (bead, cd45) are spelled by the role code too
@pytest.mark.parametrize("name", [n for s in STEPS for n in (s.name, *s.aliases) if n not in ROLES])
def test_no_other_module_spells_a_step_name(name):
    """A step name appears as a string only in the table and where allowed."""
    spelled = []
    for path in sorted((ROOT / "itme").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        strings = {
            n.value
            for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and isinstance(n.value, str)
        }
        if name in strings:
            spelled.append(str(path.relative_to(ROOT / "itme")))
    assert set(spelled) <= set(_ALLOWED), spelled
    assert "core/clean/steps.py" in spelled
