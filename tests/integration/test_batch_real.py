"""pp.correct_batch and tl.batch_diagnostics on real CyTOF: cytonormpy's three-batch Gates files.

The Gates design (cytonormpy's metadata.csv): two aliquots of the same control blood
(Control_1, Control_2) acquired in each of three batches. Whatever differs between the
batches' Control_2 medians is batch effect; CytoNorm, trained on Control_1, brings their
between-batch SD from 0.120 to 0.067 (tests/integration/test_pp_real_files.py). The
cyCombine-style correction uses no controls. The files are read from the installed
cytonormpy package (``cytonormpy_resources`` fixture), not copied into itme.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import itme
from itme.errors import ItmeExclusionWarning, ItmeStatisticsWarning


def _gates(resources):
    meta = pd.read_csv(resources / "metadata.csv", dtype=str)
    meta["sample_id"] = meta["file_name"].str.removesuffix(".fcs")
    meta["patient_id"] = "control"
    coding = set((resources / "coding_detectors.txt").read_text().split())
    var = itme.io.read_fcs(resources / meta["file_name"].iloc[0]).var
    panel = pd.DataFrame(
        {
            "fcs_colname": var["channel"],
            "antigen": [a or c for a, c in zip(var["antigen"], var["channel"], strict=True)],
            "marker_class": ["type" if c in coding else "none" for c in var["channel"]],
        }
    )
    adata = itme.io.read_cohort(meta, panel, base_dir=resources)
    itme.pp.arcsinh(adata)
    itme.pp.clean(adata)
    with pytest.warns(ItmeExclusionWarning):
        return itme.pp.apply_qc(adata)


def _between_batch_sd(adata, samples, channels) -> float:
    """Mean over channels of the SD across batches of the per-sample medians."""
    cols = [list(adata.var_names).index(c) for c in channels]
    sid = adata.obs["sample_id"].astype(str).to_numpy()
    med = np.array([np.median(adata.X[sid == s][:, cols], axis=0) for s in samples])
    return float(med.std(axis=0, ddof=1).mean())


def test_cycombine_brings_control_medians_together(cytonormpy_resources):
    adata = _gates(cytonormpy_resources)
    channels = list(adata.uns["arcsinh"]["channels"])
    validation = [s for s in adata.obs["sample_id"].cat.categories if s.endswith("_2")]
    before = _between_batch_sd(adata, validation, channels)
    assert before == pytest.approx(0.120, abs=0.005)
    for seed in (1, 2, 3):
        # ~2,000 events per batch: a 5 x 5 SOM leaves almost no node-batch below min_cells
        out = itme.pp.correct_batch(adata, batch_key="batch", grid=(5, 5), rng=seed, copy=True)
        after = _between_batch_sd(out, validation, channels)
        assert after < 0.6 * before, (seed, before, after)
        assert out.uns["batch_correction"]["events_left_unchanged"] < 0.05 * out.n_obs
        np.testing.assert_array_equal(out.layers["raw"], adata.layers["raw"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ItmeStatisticsWarning)  # six samples: flags expected
        res_before = itme.tl.batch_diagnostics(adata, groupby=None, n_perm=199, rng=0)
        res_after = itme.tl.batch_diagnostics(out, groupby=None, n_perm=199, rng=0)
    assert res_after["r2"] < res_before["r2"]
