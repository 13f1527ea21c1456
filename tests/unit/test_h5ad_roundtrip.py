"""Everything itme stores survives write_h5ad → read_h5ad (docs/data-model.md, STYLE.md §2).

The whole chain runs on a tiny synthetic cohort: read_cohort → arcsinh → clean → apply_qc →
flowsom → annotate → split_channels → embed → abundance → add_clinical → patient_clusters → sensitivity →
stability → kaplan_meier → read_counts + add_clinical → pathway_scores, cytokines +
add_clinical; each object is written and read back and compared key by key.
"""

from __future__ import annotations

import warnings

import pandas as pd
import pytest
from helpers.h5ad import roundtrip

import itme


@pytest.mark.slow
def test_every_key_of_the_chain_survives_h5ad(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        paths = itme.datasets.simulate_cohort(
            tmp_path / "in", n_patients=12, cells_per_sample=1500, n_genes=5000, rng=3
        )
        cells = itme.io.read_cohort(paths["samples"], paths["panel"])
        itme.pp.arcsinh(cells)
        itme.pp.clean(cells)
        roundtrip(cells, tmp_path / "raw.h5ad")
        cells = itme.pp.apply_qc(cells)
        cells = itme.pp.downsample(cells, n=800, rng=1)
        itme.tl.flowsom(cells, n_metaclusters=12, train_cells=5000, rng=1)
        itme.tl.annotate(cells, phenotypes="lymphoid_visram2021")
        cells = itme.pp.split_channels(cells)
        itme.tl.embed(cells, n_cells=1000, rng=1)
        roundtrip(cells, tmp_path / "cells.h5ad")
        patients = itme.tl.abundance(cells, phenotypes="lymphoid_visram2021")
        clinical = itme.io.read_clinical(paths["clinical"])
        itme.io.add_clinical(patients, clinical)
        itme.tl.patient_clusters(patients, k=3, rng=1)
        itme.tl.cluster_sensitivity(patients, exclude=list(patients.obs["patient_id"][:2]))
        itme.tl.cluster_stability(patients, n_boot=10, rng=1)
        itme.stats.kaplan_meier(patients, endpoint="os", groupby="itme_cluster", times=[0, 12])
        back = roundtrip(patients, tmp_path / "patients.h5ad")
        counts = itme.rna.read_counts(paths["counts"], clinical=back.uns["clinical"]["table"])
        itme.io.add_clinical(
            counts, patients.obs[["patient_id", "itme_cluster"]], key_added="patients"
        )
        itme.rna.pathway_scores(counts)
        roundtrip(counts, tmp_path / "rna.h5ad")
        cyt = itme.io.read_cytokines(paths["cytokines"])
        itme.io.add_clinical(cyt, back.uns["clinical"]["table"])
        roundtrip(cyt, tmp_path / "cytokines.h5ad")
    # the joined clinical columns keep their values and dtypes through h5ad
    for col in clinical.columns:
        pd.testing.assert_series_equal(back.obs[col], patients.obs[col], check_categorical=True)
    # the stored clinical table gives read_counts the same join as the file itself
    direct = itme.rna.read_counts(paths["counts"], clinical=clinical)
    pd.testing.assert_frame_equal(direct.obs, counts.obs.drop(columns="itme_cluster"))
