"""pp.clean and pp.cytonorm on real CyTOF files: cytonormpy's Gates files and Bodenmiller 2012.

Both sets were cleaned by their authors before publication (no beads, no cisplatin-positive
events left), so the automatic gates must remove little: only the low-DNA tail (debris) and,
on Bodenmiller, a small CD45-low tail. The CytoNorm check uses the Gates design (metadata.csv:
Control_1 = reference, Control_2 = validation aliquot of the same blood, in 3 batches) as the
CytoNorm paper does (Van Gassen et al., Cytometry A 2020): after normalisation the validation
samples of the three batches must look more alike.
"""

from __future__ import annotations

import warnings

import anndata
import numpy as np
import pandas as pd
import pytest

import itme
from itme.core.clean.steps import STEP_NAMES
from itme.errors import ItmeExclusionWarning

BODENMILLER = "bodenmiller2012_pbmc8_bcrxl_cytof"
STEPS = list(STEP_NAMES)


def _panel_from_file(path, coding: set[str] | None = None) -> pd.DataFrame:
    var = itme.io.read_fcs(path).var
    antigen = [a if a else c for a, c in zip(var["antigen"], var["channel"], strict=True)]
    if coding is None:
        classes = ["type"] * len(antigen)
    else:
        classes = ["type" if c in coding else "none" for c in var["channel"]]
    return pd.DataFrame(
        {"fcs_colname": var["channel"], "antigen": antigen, "marker_class": classes}
    )


def _gates_cohort(resources, *, all_files: bool = True):
    """Every Gates_*.fcs (the _dup file has no metadata row), or the six of metadata.csv."""
    meta = pd.read_csv(resources / "metadata.csv", dtype=str)
    if all_files:
        files = sorted(p.name for p in resources.glob("Gates_*.fcs"))
        meta = pd.DataFrame({"file_name": files}).merge(meta, how="left").fillna("none")
    meta["sample_id"] = meta["file_name"].str.removesuffix(".fcs")
    meta["patient_id"] = "control"
    coding = set((resources / "coding_detectors.txt").read_text().split())
    panel = _panel_from_file(resources / meta["file_name"].iloc[0], coding)
    return itme.io.read_cohort(meta, panel, base_dir=resources)


# cytonormpy ships Control_2 twice (the _dup file), which read_cohort rightly points out
@pytest.mark.filterwarnings("ignore:FCS files with identical contents:itme.errors.ItmeInputWarning")
def test_gates_files_keep_almost_everything(cytonormpy_resources):
    adata = _gates_cohort(cytonormpy_resources)
    itme.pp.arcsinh(adata)
    itme.pp.clean(adata)
    acc = adata.uns["qc"]["accounting"].set_index("sample_id")
    assert adata.uns["qc"]["params"]["steps"] == STEPS  # every role is found in these files
    raw = adata.layers["raw"]
    names = list(adata.var_names)
    # independent facts about the files: no event is bright (> 100 counts) in Ce140 and all
    # four bead partners, and cisplatin (Pt195) never reaches 5 counts -> nothing to remove
    bead_cols = [names.index(c) for c in adata.uns["qc"]["params"]["channels"]["bead"]]
    assert not np.any(np.all(raw[:, bead_cols] > 100, axis=1))
    assert raw[:, names.index("Pt195Di")].max() < 5
    assert (acc[["bead", "dead"]] == 0).all().all()
    # CD45 on In115 is dim on granulocytes (CD15+ CD66+) down to 0 counts: no separate
    # CD45- population, so the gate must not cut into them
    assert (acc["cd45_negative"] == 0).all()
    assert (acc["pct_kept"] >= 95).all()
    assert ((acc["debris"] >= 10) & (acc["debris"] <= 50)).all()
    # the debris removed sits well below the kept events in DNA
    dna = np.arcsinh((raw[:, names.index("DNA1")] + raw[:, names.index("DNA2")]) / 5)
    labels = adata.obs["itme_qc"].astype(str).to_numpy()
    assert np.median(dna[labels == "debris"]) < np.median(dna[labels == "kept"]) - 1.5
    # identical files, identical gates
    a = acc.loc["Gates_PTLG034_Unstim_Control_2"]
    b = acc.loc["Gates_PTLG034_Unstim_Control_2_dup"]
    pd.testing.assert_series_equal(a, b, check_names=False)


@pytest.mark.shared_data
def test_bodenmiller_files(shared_data):
    folder = shared_data / BODENMILLER
    files = sorted(p.name for p in folder.glob("*.fcs"))
    samples = pd.DataFrame(
        {
            "file_name": files,
            "sample_id": [f.removesuffix(".fcs").removeprefix("PBMC8_30min_") for f in files],
            "patient_id": [f.split("_")[2] for f in files],
        }
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the files' off-by-one $ENDDATA is reported by io
        adata = itme.io.read_cohort(samples, _panel_from_file(folder / files[0]), base_dir=folder)
    itme.pp.arcsinh(adata)
    itme.pp.clean(adata)
    skipped = adata.uns["qc"]["params"]["skipped"]
    assert dict(zip(skipped["step"], skipped["reason"], strict=True)) == {
        "bead": "no channel found for bead",
        "dead": "no channel found for cisplatin",
    }
    acc = adata.uns["qc"]["accounting"]
    assert len(acc) == 16 and acc["events_in"].sum() == 172_791  # PROVENANCE.md
    assert (acc["pct_kept"] >= 94).all()
    assert ((acc["cd45_negative"] / acc["events_in"]).between(0.005, 0.04)).all()
    raw = adata.layers["raw"]
    cd45 = np.arcsinh(raw[:, list(adata.var_names).index("CD45")] / 5)
    labels = adata.obs["itme_qc"].astype(str).to_numpy()
    assert np.median(cd45[labels == "cd45_negative"]) < np.median(cd45[labels == "kept"]) - 2.5
    fig = itme.pl.qc_gates(adata, sample="patient2_Reference")
    assert [ax.get_title() for ax in fig.axes if ax.get_visible()][:2] == [
        "debris / doublet",
        "cd45_negative",
    ]


def _between_batch_sd(adata, samples, channels) -> float:
    """Mean over channels of the SD across batches of the per-sample medians."""
    names = list(adata.var_names)
    cols = [names.index(c) for c in channels]
    sid = adata.obs["sample_id"].astype(str).to_numpy()
    med = np.array([np.median(adata.X[sid == s][:, cols], axis=0) for s in samples])
    return float(med.std(axis=0, ddof=1).mean())


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::itme.errors.ItmeStatisticsWarning")  # 1,000-event files
def test_cytonorm_on_gates_files(cytonormpy_resources, tmp_path):
    """Importing cytonormpy compiles numba code (15-35 s); the normalisation itself is seconds."""
    adata = _gates_cohort(cytonormpy_resources, all_files=False)
    itme.pp.arcsinh(adata)
    itme.pp.clean(adata)
    with pytest.warns(ItmeExclusionWarning):
        adata = itme.pp.apply_qc(adata)
    channels = list(adata.uns["arcsinh"]["channels"])
    validation = [s for s in adata.obs["sample_id"].cat.categories if s.endswith("_2")]
    before = _between_batch_sd(adata, validation, channels)
    runs = []
    for seed in (1, 2, 1):
        out = itme.pp.cytonorm(adata, rng=seed, min_cells=20, copy=True)
        runs.append(out)
        after = _between_batch_sd(out, validation, channels)
        assert after < 0.75 * before, (before, after)
        assert out.uns["cytonorm"]["seed"] == seed
        np.testing.assert_array_equal(out.layers["raw"], adata.layers["raw"])
    np.testing.assert_array_equal(runs[0].X, runs[2].X)  # same rng, same result
    # the R CytoNorm output shipped with cytonormpy (Norm_*.fcs): ours moves each validation
    # file towards it
    names = list(adata.var_names)
    cols = [names.index(c) for c in channels]
    chan = adata.var["channel"].to_numpy()[cols]
    sid = adata.obs["sample_id"].astype(str).to_numpy()
    for s in validation:
        ref = itme.io.read_fcs(cytonormpy_resources / f"Norm_{s}.fcs")
        r = np.arcsinh(ref[:, list(chan)].X / 5)
        idx = adata.obs_names[sid == s].str.rsplit("_", n=1).str[1].astype(int).to_numpy()
        r = r[idx]
        d_before = np.abs(adata.X[sid == s][:, cols] - r).mean()
        d_after = np.abs(runs[0].X[sid == s][:, cols] - r).mean()
        assert d_after < d_before, (s, d_before, d_after)
    shift = runs[0].uns["cytonorm"]["shift"]
    assert set(shift["sample_id"]) == set(adata.obs["sample_id"].cat.categories)
    assert (shift["mean_abs_median_shift"] > 0).all()
    runs[0].write_h5ad(tmp_path / "cn.h5ad")
    back = anndata.read_h5ad(tmp_path / "cn.h5ad").uns["cytonorm"]
    assert int(back["seed"]) == 1 and list(back["channels"]) == channels
    assert back["cytonormpy_version"] == runs[0].uns["cytonorm"]["cytonormpy_version"]
    pd.testing.assert_frame_equal(back["shift"], shift, check_dtype=False, check_index_type=False)
