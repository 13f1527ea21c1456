"""What a run does with unassigned events, empty subsets, contrasts and warnings (issue 14)."""

from __future__ import annotations

import logging
import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from helpers.patients_sim import simulate_patients

import itme
from itme.cli import _WarningLog
from itme.errors import ItmeExclusionWarning, ItmeStatisticsWarning
from itme.pipeline._config import (
    Contrast,
    clusters_left_out,
    itme_contrasts,
    load_config,
    rnaseq_contrasts,
)
from itme.pipeline._left_out import not_tested, subsets_found
from itme.pipeline._stages_cells import apply_additions, metacluster_summary


def _patients_with_unassigned_and_an_empty_subset() -> ad.AnnData:
    adata, _ = simulate_patients(0)
    x = adata.X.copy()
    counts = adata.layers["counts"].copy()
    n = adata.n_obs
    unassigned = np.full((n, 1), 0.5)
    empty = np.zeros((n, 1))
    out = ad.AnnData(
        X=np.hstack([x, empty, unassigned]),
        obs=adata.obs.copy(),
        var=pd.DataFrame(index=[*adata.var_names, "NK other", "unassigned"]),
        layers={
            "counts": np.hstack(
                [counts, np.zeros((n, 1), dtype=np.int64), np.full((n, 1), 7, dtype=np.int64)]
            )
        },
    )
    out.obsm["derived"] = adata.obsm["derived"]
    return out


def test_unassigned_is_neither_clustered_on_nor_tested():
    adata = _patients_with_unassigned_and_an_empty_subset()
    found, absent = subsets_found(adata)
    assert "unassigned" not in found and "unassigned" not in absent
    assert absent == ["NK other"]
    with warnings.catch_warnings(), pytest.warns(ItmeExclusionWarning) as caught:
        warnings.simplefilter("ignore", ItmeStatisticsWarning)
        itme.tl.patient_clusters(adata, k=3, rng=0, gap_refs=0)  # library default
    assert [str(w.message) for w in caught] == [
        "patient_clusters: 1 feature(s) constant, not used for clustering: NK other"
    ]
    assert "unassigned" not in adata.uns["itme_cluster"]["features"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ItmeStatisticsWarning)
        tests = itme.stats.compare_groups(adata, groupby="itme_cluster", features=found)
    assert "unassigned" not in set(tests["feature"]) and (tests["note"] == "").all()
    table = not_tested(adata, absent, {"subset_tests": tests})
    rows = table.set_index("feature")
    assert rows.loc["unassigned", "events"] == 7 * adata.n_obs  # its events are counted
    assert rows.loc["NK other", "reason"] == "no events in any sample"
    assert list(table["feature"]) == ["unassigned", "NK other"]


def test_default_contrasts_follow_k_and_no_cluster_is_left_out():
    paper = itme_contrasts(3)
    assert [(c.name, c.test, c.reference) for c in paper] == [("itme_23_vs_1", ["2", "3"], ["1"])]
    four = itme_contrasts(4)
    assert [c.name for c in four] == [f"itme_{c}_vs_rest" for c in "1234"]
    for c in four:
        assert clusters_left_out(c, 4) == []
        assert sorted(c.test + c.reference) == ["1", "2", "3", "4"]
    assert clusters_left_out(paper[0], 4) == ["4"]  # the paper's contrast would drop cluster 4
    other = Contrast(name="s", groupby="disease_status", test=["TRMM"], reference=["NDMM"])
    assert clusters_left_out(other, 4) == []


def test_config_without_contrasts_uses_the_k_derived_ones(tmp_path):
    (tmp_path / "samples.csv").write_text("file_name,sample_id,patient_id\n")
    (tmp_path / "panel.csv").write_text("fcs_colname,antigen,marker_class\n")
    base = {"inputs": {"samples": "samples.csv", "panel": "panel.csv"}}
    k4 = load_config({**base, "patients": {"k": 4}}, base_dir=tmp_path)
    assert k4.rnaseq.contrasts is None
    assert [c.name for c in rnaseq_contrasts(k4)] == [f"itme_{c}_vs_rest" for c in "1234"]
    k3 = load_config(base, base_dir=tmp_path)
    assert [c.name for c in rnaseq_contrasts(k3)] == ["itme_23_vs_1"]
    given = load_config(
        {
            **base,
            "rnaseq": {
                "contrasts": [
                    {"name": "x", "groupby": "itme_cluster", "test": ["2"], "reference": ["1"]}
                ]
            },
        },  # fmt: skip
        base_dir=tmp_path,
    )
    assert [c.name for c in rnaseq_contrasts(given)] == ["x"]


def test_additions_keep_metaclusters_in_numeric_order_with_empty_ones(tmp_path):
    names = [f"e{i}" for i in range(30)]
    cats = [str(i) for i in range(1, 13)]  # metacluster 7 is empty
    labels = pd.Categorical([cats[i % 12] if i % 12 != 6 else "1" for i in range(30)], cats)
    stored = ad.AnnData(obs=pd.DataFrame({"metacluster": labels}, index=names))
    stored.write_h5ad(tmp_path / "add.h5ad")
    cells = ad.AnnData(obs=pd.DataFrame(index=names))
    apply_additions(cells, tmp_path / "add.h5ad")
    assert list(cells.obs["metacluster"].cat.categories) == cats  # 1, 2, ..., 10, not 1, 10
    summary = metacluster_summary(
        {"n_metaclusters": 12, "n_metaclusters_final": 12, "merges": pd.DataFrame()},
        cells.obs["metacluster"],
    )
    assert summary["metaclusters asked"] == 12 and summary["metaclusters with events"] == 11
    assert summary["empty (their SOM nodes received no events)"] == ["7"]


def test_metacluster_summary_names_the_empty_ones_flowsom_left_out_of_the_categories():
    labels = pd.Series(pd.Categorical(["1", "2", "4", "4"], categories=["1", "2", "4"]))
    info = {
        "n_metaclusters": 5,
        "n_metaclusters_final": 5,
        "merges": pd.DataFrame(),
        "empty_metaclusters": np.array([3, 5]),
    }
    summary = metacluster_summary(info, labels)
    assert summary["metaclusters asked"] == 5 and summary["metaclusters with events"] == 3
    assert summary["empty (their SOM nodes received no events)"] == ["3", "5"]


def test_cli_warnings_one_line_per_fact_without_source_echo(caplog):
    log = logging.getLogger("test.polish.warnings")
    show = _WarningLog(log)
    with caplog.at_level(logging.WARNING, logger="test.polish.warnings"):
        for _ in range(3):  # the same caveat from three call sites
            show(ItmeStatisticsWarning("group 2 is small"), ItmeStatisticsWarning, "x.py", 10)
        show(
            ItmeExclusionWarning("MM13 has no sample"), ItmeExclusionWarning, "y.py", 2, None, "src"
        )
    assert caplog.messages == [
        "ItmeStatisticsWarning: group 2 is small",
        "ItmeExclusionWarning: MM13 has no sample",
    ]


def test_correlate_summarises_long_lists_of_untested_pairs():
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(20, 50)), columns=[f"SET_{i}" for i in range(50)])
    for j in range(6):
        frame[f"empty subset {j}"] = 0.0
    with pytest.warns(ItmeExclusionWarning) as caught:
        itme.stats.correlate(
            frame, x=[f"SET_{i}" for i in range(50)], y=[f"empty subset {j}" for j in range(6)]
        )
    text = str(caught[0].message)
    assert "300 pair(s) not tested" in text and "6 constant variable(s)" in text
    assert len(text) < 400
