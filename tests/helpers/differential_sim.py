"""A paired cohort for differential abundance and state, built on itme.datasets' cell simulator.

Every patient gives two samples, condition ``A`` (reference) and ``B``. Subset proportions
start from the demo cohort's reference composition (``BASE_COMPOSITION``), times a patient
effect shared by both of the patient's samples (log-normal, ``patient_sd``: this is what
pairing removes) and a sample effect (``sample_sd``); the demo's filler group (``Other
CD45+``) absorbs the rest of 100 %, so the true proportion of every subset that is not
planted is the same under A and B (exact nulls; the shares are 70 % of the demo's so that
the filler stays positive). Events are drawn by
``itme.datasets._cells.simulate_cells`` from the lymphoid phenotype table (raw counts,
cofactor 5), transformed with ``itme.pp.arcsinh``, then the state markers get a donor shift
shared by the patient's samples (``donor_sd``) and the planted shifts under B.

Labels are the true subsets (no clustering): the statistics are evaluated, not the
annotation.
"""

from __future__ import annotations

import warnings

import anndata as ad
import numpy as np
import pandas as pd

import itme
from itme.datasets._cells import simulate_cells
from itme.datasets._simulate import BASE_COMPOSITION, FILLER, _panel
from itme.io import read_phenotypes

#: planted abundance fold changes under B (the filler absorbs the difference)
PLANTED_DA = {"T1": 0.5, "B": 0.5, "T16": 2.5, "NK-5": 2.5}
#: planted state shifts under B, arcsinh units: (subset, marker) -> shift
PLANTED_DS = {
    ("T14", "CD69"): 0.6,
    ("T16", "LAG-3"): 0.5,
    ("T1", "CD25"): -0.5,
    ("B", "CXCR3"): 0.5,
}
STATE = ["CCR6", "CD25", "CD69", "TIM-3", "LAG-3", "CXCR3"]
CONTRAST = ("condition", "B", "A")


def paired_cohort(
    seed: int,
    *,
    n_patients: int = 8,
    cells: int = 3000,
    patient_sd: float = 0.5,
    sample_sd: float = 0.15,
    donor_sd: float = 0.3,
    da: dict[str, float] | None = None,
    ds: dict[tuple[str | None, str], float] | None = None,
) -> ad.AnnData:
    """Events × markers (arcsinh ``X``) of ``2 * n_patients`` samples with planted effects.

    ``da`` / ``ds`` default to :data:`PLANTED_DA` / :data:`PLANTED_DS`; pass ``{}`` for a
    null cohort; a ``ds`` subset ``None`` shifts the marker in every event (a stimulation). ``obs``: ``sample_id``, ``patient_id``, ``condition``, ``subset`` (truth).
    """
    da = PLANTED_DA if da is None else da
    ds = PLANTED_DS if ds is None else ds
    rng = np.random.default_rng(seed)
    phenotypes = read_phenotypes("lymphoid_visram2021")
    panel = _panel()
    antigens = list(panel["antigen"])
    names = list(BASE_COMPOSITION)
    # 70 % of the demo's reference shares, so the filler can absorb every patient's noise:
    # the rescaling below (which would move the nulls too) is then almost never needed
    base = np.log([0.7 * BASE_COMPOSITION[s] for s in names])
    blocks, obs = [], []
    for p in range(n_patients):
        patient = rng.normal(0, patient_sd, len(names))
        donor = rng.normal(0, donor_sd, len(STATE))
        for condition in ("A", "B"):
            logx = base + patient + rng.normal(0, sample_sd, len(names))
            if condition == "B":
                logx += np.log([da.get(s, 1.0) for s in names])
            pct = np.exp(logx)
            pct *= min(1.0, 98.0 / pct.sum())  # rare (< 1 % of samples)
            props = dict(zip(names, pct, strict=True)) | {FILLER: 100.0 - pct.sum()}
            raw, labels = simulate_cells(phenotypes, antigens, cells, props, rng=rng)
            blocks.append((raw, labels, donor, condition))
            obs.append((f"p{p}{condition}", f"p{p}", condition))
    raw = np.vstack([b[0] for b in blocks])
    labels = np.concatenate([b[1] for b in blocks])
    sizes = [len(b[1]) for b in blocks]
    frame = pd.DataFrame(np.repeat(np.array(obs, dtype=object), sizes, axis=0),
                         columns=["sample_id", "patient_id", "condition"])  # fmt: skip
    frame["subset"] = labels
    frame = frame.astype("category")
    frame.index = [str(i) for i in range(len(frame))]
    var = pd.DataFrame(
        {
            "channel": panel["fcs_colname"].to_numpy(),
            "marker_class": panel["marker_class"].to_numpy(),
        },
        index=antigens,
    )
    adata = ad.AnnData(raw.astype(np.float32), obs=frame, var=var)
    adata.layers["raw"] = adata.X.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        itme.pp.arcsinh(adata, cofactor=5.0)
    X = adata.X
    start = 0
    for (_, lab, donor, condition), n in zip(blocks, sizes, strict=True):
        rows = slice(start, start + n)
        cols = adata.var_names.get_indexer(STATE)
        X[rows, cols] += donor.astype(np.float32)
        if condition == "B":
            for (subset, marker), shift in ds.items():
                idx = np.flatnonzero(lab == subset if subset else np.ones(n, bool)) + start
                X[idx, adata.var_names.get_loc(marker)] += np.float32(shift)
        start += n
    return adata


def abundance(cells: ad.AnnData) -> ad.AnnData:
    """Samples × subsets counts (``layers["counts"]``) with the sample design in ``obs``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        patients = itme.tl.abundance(cells, phenotypes="lymphoid_visram2021")
    design = cells.obs.groupby("sample_id", observed=True)[["patient_id", "condition"]].first()
    for col in ("patient_id", "condition"):
        patients.obs[col] = design.loc[patients.obs_names, col].astype(str).to_numpy()
    return patients


def score(called: set, planted: set, tested: set) -> dict[str, float]:
    """True and false calls of a run: power over ``planted``, false-discovery proportion.

    ``tested`` are the nulls and planted tests that were evaluated (others, such as the
    filler group, are neither).
    """
    tp = len(called & planted)
    fp = len((called - planted) & tested)
    return {
        "tp": tp,
        "fp": fp,
        "power": tp / len(planted) if planted else float("nan"),
        "fdp": fp / max(tp + fp, 1),
    }


#: the designs compared: name -> (function, keyword arguments)
DA_DESIGNS = {
    "DA nb paired (~ condition + patient_id)": {"formula": "~ condition + patient_id"},
    "DA nb unpaired (~ condition)": {"formula": "~ condition"},
}
DS_DESIGNS = {
    "DS lmm paired (random patient_id)": {"formula": "~ condition", "method": "lmm"},
    "DS lm paired (~ condition + patient_id)": {
        "formula": "~ condition + patient_id",
        "method": "lm",
        "random": None,
    },
    "DS lm unpaired (~ condition)": {"formula": "~ condition", "method": "lm", "random": None},
}


def evaluate(
    seed: int,
    *,
    n_patients: int = 8,
    cells: int = 3000,
    null: bool = False,
    designs: list[str] | None = None,
    markers: list[str] = STATE,
) -> list[dict]:
    """The designs of :data:`DA_DESIGNS` and :data:`DS_DESIGNS` on one simulated cohort.

    ``null=True``: nothing planted (every test is a null); ``designs``: the names to run
    (default all); ``markers``: the state markers tested. Returns one row per design with
    :func:`score`'s fields and the seed.
    """
    da_planted = set() if null else set(PLANTED_DA)
    ds_planted = set() if null else {k for k in PLANTED_DS if k[1] in markers}
    cells_ = paired_cohort(
        seed, n_patients=n_patients, cells=cells, da={} if null else None, ds={} if null else None
    )
    patients = abundance(cells_)
    rows = []
    for name, kw in DA_DESIGNS.items():
        if designs is not None and name not in designs:
            continue
        res = itme.stats.differential_abundance(
            patients, contrast=CONTRAST, min_count=10, key_added=None, **kw
        )
        tested = set(res.loc[res["padj"].notna(), "subset"]) - {FILLER}
        called = set(res.loc[res["padj"] < 0.05, "subset"])
        rows.append({"design": name, "seed": seed, **score(called, da_planted, tested)})
    for name, kw in DS_DESIGNS.items():
        if designs is not None and name not in designs:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # sample × subset cells below min_cells
            res = itme.stats.differential_state(
                cells_, contrast=CONTRAST, markers=markers, key_added=None, **kw
            )
        ok = res["padj"].notna().to_numpy()
        tested = set(zip(res.loc[ok, "subset"], res.loc[ok, "marker"], strict=True))
        sig = res["padj"] < 0.05
        called = set(zip(res.loc[sig, "subset"], res.loc[sig, "marker"], strict=True))
        rows.append({"design": name, "seed": seed, **score(called, ds_planted, tested)})
    return rows
