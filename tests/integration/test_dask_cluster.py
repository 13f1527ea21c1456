"""The cell-level pipeline on a real Dask cluster equals the in-memory run.

A ``dask scheduler`` and two ``dask worker`` processes are started on loopback (127.0.0.1,
interface lo); the cohort is converted to a store and run through arcsinh → clean → apply_qc
→ downsample → flowsom → annotate → cluster_phenotypes → abundance, and every table is
compared with the in-memory run of the same functions on the same files and seed.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from helpers.dask_cluster import dask_cluster

import itme
from itme import pp, tl

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(120),
    # the cohort's planted artefacts are removed (and said so) in both runs alike
    pytest.mark.filterwarnings("ignore::itme.errors.ItmeExclusionWarning"),
]

PHENOTYPES = "lymphoid_visram2021"


def cell_tables(cells) -> dict[str, object]:
    """The cell-level stages as the pipeline runs them; every table they produce."""
    pp.arcsinh(cells)
    pp.clean(cells)
    kept = pp.downsample(pp.apply_qc(cells), n=500, rng=3)
    tl.flowsom(kept, grid=(5, 5), n_metaclusters=8, train_cells=2000, rng=3)
    tl.annotate(kept, phenotypes=PHENOTYPES)
    return {
        "qc_events": cells.uns["qc"]["accounting"],
        "qc_thresholds": cells.uns["qc"]["thresholds"],
        "cluster_phenotypes": tl.cluster_phenotypes(kept, groupby="metacluster"),
        "cluster_annotation": kept.uns["subset"]["clusters"],
        "subset_frequencies": tl.abundance(kept, phenotypes=PHENOTYPES).to_df(),
        "codes": kept.uns["flowsom"]["codes"],
        "metacluster": kept.obs["metacluster"].astype(str).to_numpy(),
    }


def assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        if isinstance(a[key], pd.DataFrame):
            pd.testing.assert_frame_equal(a[key], b[key], check_exact=True, obj=key)
        else:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    from itme.datasets import simulate_cohort

    out = tmp_path_factory.mktemp("cohort")
    paths = simulate_cohort(out, n_patients=8, cells_per_sample=1000, n_genes=4400, rng=5)
    return paths["samples"], paths["panel"]


@pytest.fixture(scope="module")
def in_memory(cohort):
    return cell_tables(itme.io.read_cohort(*cohort))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """``dask scheduler`` + two ``dask worker`` processes on loopback; their address."""
    with dask_cluster(tmp_path_factory.mktemp("dask"), workers=2) as address:
        yield address


def test_two_workers_give_the_in_memory_tables(cohort, in_memory, cluster, tmp_path):
    from itme._dask import ComputeSettings, start_compute

    settings = ComputeSettings(scheduler=cluster, chunk_rows=1500)
    with start_compute(settings, n_channels=47) as client:
        client.wait_for_workers(2, timeout=30)
        cells = itme.io.read_cohort(*cohort, store=tmp_path / "c.zarr", chunk_rows=1500)
        lazy = cell_tables(cells)
        # the work ran on both workers (one task per file, blocks of the mapping)
        assert len(client.scheduler_info()["workers"]) == 2
    assert_same(in_memory, lazy)


def test_chunk_size_and_worker_count_do_not_change_results(cohort, in_memory, tmp_path):
    from itme._dask import ComputeSettings, start_compute

    for workers, chunk in [(1, 333), (2, 4000)]:
        settings = ComputeSettings(
            scheduler="local", workers=workers, chunk_rows=chunk, memory_per_worker="1GB"
        )
        with start_compute(settings, n_channels=47):
            store = tmp_path / f"c{workers}_{chunk}.zarr"
            cells = itme.io.read_cohort(*cohort, store=store, chunk_rows=chunk)
            assert cells.X.chunks[0][0] == chunk
            assert_same(in_memory, cell_tables(cells))
