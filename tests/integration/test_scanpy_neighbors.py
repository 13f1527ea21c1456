"""scanpy's nearest-neighbour path for large inputs works in the pinned environment.

scanpy 1.11 switches from sklearn's brute-force search to pynndescent at 8,192 events
(euclidean); pynndescent 0.7 returns a ``csr_array`` that scanpy then calls ``.getnnz`` on,
so ``sc.pp.neighbors`` crashed on every real-sized CyTOF data set (issue 14, item 1).
"""

import numpy as np
import pytest
import scanpy as sc
from anndata import AnnData


@pytest.mark.slow
def test_pp_neighbors_pynndescent_path_recovers_two_populations() -> None:
    rng = np.random.default_rng(0)
    n = 9_000  # above scanpy's 8,192 threshold: the pynndescent transformer is used
    truth = rng.integers(0, 2, size=n)
    x = rng.normal(size=(n, 8)).astype(np.float32) + 6.0 * truth[:, None]
    adata = AnnData(x)
    sc.pp.neighbors(adata, n_neighbors=15, random_state=0)
    graph = adata.obsp["distances"].tocoo()
    # every event has at least its 14 neighbours and none crosses between the two separated blobs
    assert np.all(np.diff(adata.obsp["distances"].indptr) >= 14)
    assert np.all(truth[graph.row] == truth[graph.col])
