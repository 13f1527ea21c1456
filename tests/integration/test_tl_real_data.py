"""Clustering and annotation on real files: FlowSOM's gated reference file and PBMC/blood CyTOF."""

from __future__ import annotations

import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from helpers.metrics import f1_hungarian
from helpers.phenotypes import BODENMILLER

import itme
from itme.core.annotate.phenotypes import parse_phenotypes

FLOW_COLS = [
    8,
    11,
    13,
    14,
    15,
    16,
    17,
]  # CD8, TCRgd, TCRb, NK1.1, CD4, CD19, CD3 (FlowSOM vignette)


def read_fcs(path: Path) -> ad.AnnData:
    """One FCS file as events x markers (``$PnS`` names, ``$PnN`` when empty)."""
    try:
        from itme.io import read_fcs as itme_read_fcs
    except ImportError:  # pragma: no cover - io not built yet
        itme_read_fcs = None
    if itme_read_fcs is not None:
        adata = itme_read_fcs(path)
        names = [
            s if s else c for s, c in zip(adata.var["antigen"], adata.var["channel"], strict=True)
        ]
        X = np.asarray(adata.X, dtype=np.float32)
    else:  # pragma: no cover
        import flowio

        fd = flowio.FlowData(str(path), ignore_offset_error=True)
        X = np.reshape(np.array(fd.events, dtype=np.float32), (-1, fd.channel_count))
        names = [
            fd.channels[str(i + 1)].get("PnS") or fd.channels[str(i + 1)]["PnN"]
            for i in range(fd.channel_count)
        ]
    out = ad.AnnData(X)
    out.var_names = pd.Index([str(n) for n in names])
    out.var_names_make_unique()
    return out


def cohort(paths, type_markers) -> ad.AnnData:
    parts = []
    for path in paths:
        part = read_fcs(path)
        part.obs_names = [f"{path.stem}_{i}" for i in range(part.n_obs)]
        part.obs["sample_id"] = path.stem
        parts.append(part)
    adata = ad.concat(parts, merge="same")
    adata.obs["sample_id"] = pd.Categorical(adata.obs["sample_id"])
    adata.var["marker_class"] = pd.Categorical(
        ["type" if v in type_markers else "none" for v in adata.var_names]
    )
    adata.X = np.arcsinh(adata.X / 5).astype(np.float32)
    adata.uns["arcsinh"] = {"cofactor": np.full(adata.n_vars, 5.0)}
    return adata


@pytest.mark.shared_data
@pytest.mark.slow
def test_flowsom_reference_file_as_accurate_as_flowsom(shared_data):
    """Mean F1 (Hungarian) against the manual gates of FlowSOM's reference file.

    itme's default drives flowsom's own SOM and metaclustering: with the same seed it must
    match flowsom.FlowSOM's F1 exactly on this 19,225-event file (training set = all events).
    """
    import flowsom
    from loguru import logger

    logger.remove()
    folder = shared_data / "flowsom_68983_flow_gated"
    X = np.asarray(read_fcs(folder / "ff.fcs").X, dtype=np.float32)
    truth = pd.read_csv(folder / "gating_result.csv", header=None)[0].to_numpy()
    assert X.shape[0] == truth.size == 19_225
    ours, ref = [], []
    for seed in (0, 1, 2):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fs = flowsom.FlowSOM(
                ad.AnnData(X.copy()), cols_to_use=FLOW_COLS, n_clusters=10, seed=seed
            )
        ref.append(f1_hungarian(truth, fs.get_cell_data().obs["metaclustering"].to_numpy())[0])
        labels = itme.tl.FlowSOMModel(n_metaclusters=10, rng=seed).fit_predict(X, columns=FLOW_COLS)
        ours.append(f1_hungarian(truth, labels)[0])
    assert ours == pytest.approx(ref, abs=1e-12)
    # published/observed level for this file: FlowSOM separates the 6 gated populations well
    assert np.mean(ours) > 0.8


GATES = parse_phenotypes(
    """
name: blood_gates_test
lineages:
  T:
    markers: {CD3: hi, CD14: lo, CD66: lo}
    other: T other
    subsets:
      CD4 T: {markers: {CD4: hi, CD8a: lo}}
      CD8 T: {markers: {CD4: lo, CD8a: hi}}
  B:          # CD19 of these files carries no B-cell signal (unimodal, follows DNA)
    markers: {CD3: lo, CD14: lo, CD66: lo, HLADR: hi, CD45RA: hi, CD11c: lo, CD123: lo}
    subsets:
      B cells: {}
  NK:
    markers: {CD3: lo, CD14: lo, CD66: lo, HLADR: lo, CD7: hi}
    subsets:
      NK cells: {}
  Myeloid:
    markers: {CD3: lo, CD66: lo, CD14: hi}
    subsets:
      Monocytes: {}
  Gran:
    markers: {CD3: lo, CD66: hi}
    subsets:
      Granulocytes: {}
"""
)


def population_medians(adata: ad.AnnData) -> pd.DataFrame:
    return adata.to_df().groupby(adata.obs["subset"].to_numpy()).median()


@pytest.mark.shared_data
@pytest.mark.slow
def test_bodenmiller_pbmc_populations_where_their_markers_say(shared_data):
    folder = shared_data / "bodenmiller2012_pbmc8_bcrxl_cytof"
    paths = sorted(folder.glob("*_Reference.fcs"))
    assert len(paths) == 8
    types = ["CD3", "CD45", "CD4", "CD20", "CD33", "CD123", "CD14", "IgM", "HLA-DR", "CD7"]
    adata = cohort(paths, types)
    itme.tl.flowsom(adata, n_metaclusters=20, rng=1)
    itme.tl.annotate(adata, phenotypes=BODENMILLER)
    frac = adata.obs["subset"].value_counts(normalize=True)
    med = population_medians(adata)
    lymph = ["CD4 T", "CD8 T", "B cells", "NK cells"]
    for name in [*lymph, "Monocytes"]:
        assert frac[name] > 0.01, name
    # each population is positive for its markers and negative for the others' (arcsinh scale)
    assert med.loc["CD4 T", "CD3"] > 2 and med.loc["CD4 T", "CD4"] > 2
    assert med.loc["CD8 T", "CD3"] > 2 and med.loc["CD8 T", "CD4"] < 0.5
    assert med.loc["B cells", "CD20"] > 2 and med.loc["B cells", "CD3"] < 0.5
    assert (
        med.loc["NK cells", "CD7"] > 2 and med.loc["NK cells", ["CD3", "CD20", "CD4"]].max() < 0.5
    )
    assert med.loc["Monocytes", "CD14"] > 1 and med.loc["Monocytes", "CD33"] > 1
    # and is the brightest population for its defining marker
    assert med["CD20"].idxmax() == "B cells"
    assert med["CD14"].idxmax() == "Monocytes" and med["CD33"].idxmax() == "Monocytes"
    assert med.loc[lymph, "CD4"].idxmax() == "CD4 T"
    assert med.loc[["CD4 T", "CD8 T"], "CD3"].min() > med.drop(["CD4 T", "CD8 T"])["CD3"].max()
    # PBMC: T cells are the largest lymphocyte population
    assert 0.3 < frac["CD4 T"] + frac["CD8 T"] < 0.8
    assert frac["CD4 T"] + frac["CD8 T"] > max(frac["B cells"], frac["NK cells"])


def test_gates_blood_populations_where_their_markers_say(cytonormpy_resources):
    paths = [p for p in sorted(cytonormpy_resources.glob("Gates_*.fcs")) if "dup" not in p.name]
    assert len(paths) == 6
    types = ["CD45", "CD3", "CD4", "CD8a", "CD56", "CD16", "CD14", "CD33", "CD11c", "HLADR", "CD66",
             "CD15", "CD7", "TCRgd", "CD123", "CD161", "CD45RA", "CD11b"]  # fmt: skip
    adata = cohort(paths, types)
    itme.tl.flowsom(adata, n_metaclusters=25, rng=1)
    itme.tl.annotate(adata, phenotypes=GATES)
    frac = adata.obs["subset"].value_counts(normalize=True)
    med = population_medians(adata)
    for name in ["CD4 T", "CD8 T", "B cells", "NK cells", "Monocytes", "Granulocytes"]:
        assert frac[name] > 0.01, name
    assert med.loc["CD4 T", ["CD3", "CD4"]].min() > 2 and med.loc["CD4 T", "CD8a"] < 1
    assert med.loc["CD8 T", ["CD3", "CD8a"]].min() > 2 and med.loc["CD8 T", "CD4"] < 1
    assert (
        med.loc["B cells", ["HLADR", "CD45RA"]].min() > 2
        and med.loc["B cells", ["CD3", "CD14"]].max() < 0.5
    )
    assert med.loc["NK cells", "CD7"] > 2 and med.loc["NK cells", "CD3"] < 0.5
    assert med.loc["NK cells", "CD56"] > 1.5  # NK cells carry CD56, not a table rule
    assert med.loc["Monocytes", ["CD14", "CD33"]].min() > 2
    assert med.loc["Granulocytes", ["CD66", "CD15", "CD16"]].min() > 2  # whole blood
    assert med["CD56"].idxmax() == "NK cells" and med["CD14"].idxmax() == "Monocytes"
    # per cluster: the annotation score of every named cluster is 1 (all rules hold)
    clusters = adata.uns["subset"]["clusters"]
    named = clusters[~clusters["subset"].isin(["unassigned", "T other"])]
    assert (named["score"] == 1.0).all()
