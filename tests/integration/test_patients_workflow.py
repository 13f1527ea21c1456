"""The patient-level chain of issue 5 on files: clinical.csv + cytokines.csv + a patients table.

clusters -> robustness -> subset tests -> Table 1 -> survival -> cytokines -> figures -> h5ad.
"""

from __future__ import annotations

import warnings

import anndata as ad
import matplotlib
import numpy as np
import pandas as pd
import pytest

matplotlib.use("Agg")

from helpers.patients_sim import PLANTED_SUBSETS, simulate_clinical, simulate_patients
from sklearn.metrics import adjusted_rand_score

import itme
from itme.errors import ItmeExclusionWarning, ItmeInputWarning, ItmeStatisticsWarning


@pytest.mark.slow
def test_patient_level_workflow_from_files(tmp_path):
    patients, truth = simulate_patients(11)
    clinical = simulate_clinical(patients, 11, extra_patients=["P99"])  # 39 patients, 38 with CyTOF
    clinical["daratumumab_progression"] = np.where(np.arange(len(clinical)) % 6 == 0, 1, 0)
    path = tmp_path / "clinical.csv"
    path.write_text(clinical.to_csv(index=False), encoding="utf-8-sig")  # Excel-style BOM
    clinical = itme.io.read_clinical(path)
    assert clinical.attrs["endpoints"] == ["os", "pfs"]

    lines = ["patient_id,IL-6,TNF alpha"] + [
        f"{p},{'OOR <' if i % 9 == 0 else f'{2 + i % 5}.5'},{'*' if i % 4 == 0 else ''}{10 + i}"
        for i, p in enumerate(clinical.index)
    ]
    (tmp_path / "cytokines.csv").write_text("\n".join(lines) + "\n")
    with pytest.warns(ItmeInputWarning, match="OOR <"):
        cytokines = itme.io.read_cytokines(tmp_path / "cytokines.csv")

    del patients.obs["disease_status"]  # abundance does not know it: it comes from clinical.csv
    with pytest.warns(ItmeExclusionWarning, match="P99"):
        itme.io.add_clinical(patients, clinical)  # the one join; nothing below joins again
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ItmeStatisticsWarning)
        itme.tl.patient_clusters(patients, k=3, rng=0)
    assert adjusted_rand_score(truth, patients.obs["itme_cluster"]) >= 0.9
    assert patients.uns["itme_cluster"]["composition_pvalue"] < 0.05

    dara = clinical.index[clinical["daratumumab_progression"] == 1].intersection(
        patients.obs["patient_id"]
    )
    itme.tl.cluster_sensitivity(patients, exclude=list(dara))
    itme.tl.cluster_stability(patients, n_boot=30, rng=1)
    assert patients.uns["itme_cluster_sensitivity"]["kappa"] > 0.8
    assert (patients.uns["itme_cluster_stability"]["clusters"]["mean_jaccard"] > 0.8).all()

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tests = itme.stats.compare_groups(patients, groupby="itme_cluster").set_index("feature")
        dunn = itme.stats.posthoc_dunn(patients, groupby="itme_cluster", features=PLANTED_SUBSETS)
        derived = itme.stats.compare_groups(patients, groupby="itme_cluster", source="derived")
        table1 = itme.stats.clinical_table(patients, groupby="itme_cluster")
        km = itme.stats.kaplan_meier(patients, groupby="itme_cluster", times=[0, 12])
        cox = itme.stats.cox_ph(
            patients, covariates=["itme_cluster", "age"], reference={"itme_cluster": "1"}
        )
        cyt = itme.stats.compare_cytokines(cytokines, groupby="itme_cluster", patients=patients)
    # P99 (clinical row and cytokines, no CyTOF sample) is reported once more, by the
    # cytokine test that leaves it out; the patients analyses do not repeat the join's report
    p99 = [str(w.message) for w in caught if "P99" in str(w.message)]
    assert len(p99) == 1 and p99[0].startswith("compare_cytokines:")
    assert (tests.loc[PLANTED_SUBSETS, "padj"] < 0.05).all()
    assert len(dunn) == 3 * len(PLANTED_SUBSETS)
    assert set(derived["feature"]) == {"T_total", "CD4", "CD8", "CD4_CD8_ratio"}
    assert table1.iloc[0]["overall"] == "38"
    assert km["n"].sum() == 38 and "n_risk_12" in km.columns
    assert cox["term"].tolist()[:2] == ["itme_cluster: 2 vs 1", "itme_cluster: 3 vs 1"]
    assert len(cyt) == 2 and cyt["n_below_range"].iloc[0] > 0

    heatmap = itme.pl.patient_heatmap(patients)
    km_fig = itme.pl.kaplan_meier(patients)  # draws uns["kaplan_meier_os"]
    figs = [
        heatmap,
        km_fig,
        itme.pl.subset_boxplots(patients, results=tests.reset_index()),
        itme.pl.compartment_bars(patients),
    ]
    for fig in figs:
        fig.savefig(tmp_path / "f.png")
    matplotlib.pyplot.close("all")

    patients.write_h5ad(tmp_path / "patients.h5ad")
    back = ad.read_h5ad(tmp_path / "patients.h5ad")
    pd.testing.assert_series_equal(back.obs["itme_cluster"], patients.obs["itme_cluster"])
    pd.testing.assert_frame_equal(
        back.uns["kaplan_meier_os"]["curves"],
        patients.uns["kaplan_meier_os"]["curves"],
        check_dtype=False,
    )
    assert list(back.uns["clinical"]["patients_without_sample"]) == ["P99"]
    pd.testing.assert_frame_equal(
        back.uns["itme_cluster"]["composition"], patients.uns["itme_cluster"]["composition"]
    )
    assert (
        back.uns["itme_cluster_sensitivity"]["kappa"]
        == patients.uns["itme_cluster_sensitivity"]["kappa"]
    )
