"""tl.embed (subsample embedding) and the cluster figures of itme.pl."""

from __future__ import annotations

import anndata as ad
import matplotlib
import numpy as np
import pandas as pd
import pytest

import itme
from itme.errors import ItmeParameterError, ItmeStateError

matplotlib.use("Agg")


def make_cells(n=1200, seed=0):
    rng = np.random.default_rng(seed)
    centers = np.array([[4, 0, 0, 3], [0, 4, 0, 3], [0, 0, 4, 0]], dtype=np.float32)
    label = rng.integers(0, 3, n)
    X = centers[label] + rng.normal(0, 0.3, (n, 4)).astype(np.float32)
    adata = ad.AnnData(X)
    adata.var_names = ["CD3", "CD19", "CD14", "CD45RA"]
    adata.var["marker_class"] = pd.Categorical(["type", "type", "type", "state"])
    adata.obs["subset"] = pd.Categorical(np.array(["T", "B", "Mono"])[label])
    return adata


@pytest.fixture(scope="module")
def embedded():
    """UMAP of 400 of 1200 events (the first UMAP call of a session compiles numba code)."""
    adata = make_cells()
    itme.tl.embed(adata, n_cells=400, rng=3)
    return adata


def test_subsample_is_marked_and_others_are_nan(embedded):
    emb, mask = embedded.obsm["X_itme_umap"], embedded.obs["itme_umap_subsample"].to_numpy()
    assert emb.shape == (embedded.n_obs, 2) and emb.dtype == np.float32
    assert mask.sum() == 400
    assert np.isfinite(emb[mask]).all() and np.isnan(emb[~mask]).all()
    info = embedded.uns["itme_umap"]
    assert info["n_cells"] == 400 and info["seed"] == 3
    assert list(info["markers"]) == ["CD3", "CD19", "CD14"]


def test_embedding_separates_populations(embedded):
    emb = embedded.obsm["X_itme_umap"][embedded.obs["itme_umap_subsample"].to_numpy()]
    labels = embedded.obs["subset"].to_numpy()[embedded.obs["itme_umap_subsample"].to_numpy()]
    centroids = {c: emb[labels == c].mean(axis=0) for c in np.unique(labels)}
    nearest = np.array(
        [min(centroids, key=lambda c: np.linalg.norm(p - centroids[c])) for p in emb]
    )
    assert np.mean(nearest == labels) > 0.95


@pytest.mark.slow
def test_same_rng_same_embedding(embedded):
    again = itme.tl.embed(make_cells(), n_cells=400, rng=3, copy=True)
    np.testing.assert_array_equal(again.obsm["X_itme_umap"], embedded.obsm["X_itme_umap"])


def test_tsne_and_h5ad_roundtrip(tmp_path):
    from threadpoolctl import threadpool_limits

    adata = make_cells(n=300)
    with threadpool_limits(limits=1):  # OpenMP spin-waits badly on a loaded 2-core machine
        itme.tl.embed(adata, method="tsne", n_cells=1000, rng=1)
    assert adata.obs["itme_tsne_subsample"].all()
    adata.write_h5ad(tmp_path / "e.h5ad")
    back = ad.read_h5ad(tmp_path / "e.h5ad")
    np.testing.assert_array_equal(back.obsm["X_itme_tsne"], adata.obsm["X_itme_tsne"])
    assert back.uns["itme_tsne"]["seed"] == 1


def test_scanpy_umap_leaves_itme_embedding_and_provenance(embedded):
    """sc.tl.umap writes obsm["X_umap"] and uns["umap"]; itme's keys are apart (issue 14)."""
    import scanpy as sc

    adata = embedded.copy()
    before = adata.obsm["X_itme_umap"].copy()
    sc.pp.neighbors(adata, n_neighbors=10, random_state=0)
    sc.tl.umap(adata, random_state=0)
    np.testing.assert_array_equal(adata.obsm["X_itme_umap"], before)
    info = adata.uns["itme_umap"]
    assert info["seed"] == 3 and info["n_cells"] == 400 and info["method"] == "umap"
    assert adata.obs["itme_umap_subsample"].sum() == 400
    # scanpy's embedding covers every event, itme's only the subsample: both are there
    assert np.isfinite(adata.obsm["X_umap"]).all() and "umap" in adata.uns
    import matplotlib.pyplot as plt

    fig = itme.pl.embedding(adata, basis="umap", color="subset")  # scanpy's, all events
    assert sum(len(c.get_offsets()) for c in fig.axes[0].collections) == adata.n_obs
    plt.close(fig)


def test_embed_errors():
    adata = make_cells(n=50)
    with pytest.raises(ItmeParameterError, match="method"):
        itme.tl.embed(adata, method="pca")
    with pytest.raises(ItmeParameterError, match="markers"):
        itme.tl.embed(adata, markers=["CD99"])


def test_cluster_heatmap_figure():
    import matplotlib.pyplot as plt

    adata = make_cells()
    fig = itme.pl.cluster_heatmap(adata, groupby="subset", scale="marker")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["CD3", "CD19", "CD14", "CD45RA"]
    image = ax.images[0].get_array()
    assert image.shape == (3, 4) and np.nanmin(image) == 0.0 and np.nanmax(image) == 1.0
    rows = [t.get_text().split(" (")[0] for t in ax.get_yticklabels()]
    assert image[rows.index("T"), 0] == 1.0  # T cells are the CD3-brightest row
    plt.close(fig)
    with pytest.raises(ItmeStateError, match="tl.annotate"):
        itme.pl.cluster_heatmap(adata, groupby="cluster")
    with pytest.raises(ItmeParameterError, match="scale"):
        itme.pl.cluster_heatmap(adata, scale="z")
    with pytest.raises(ItmeParameterError, match=r"parameter 'markers'.*CD33 -> CD3\?"):
        itme.pl.cluster_heatmap(adata, markers=["CD33"])


def test_embedding_figure(embedded):
    import matplotlib.pyplot as plt

    fig = itme.pl.embedding(embedded, color="subset")
    ax = fig.axes[0]
    assert sum(len(c.get_offsets()) for c in ax.collections) == 400
    assert sorted(t.get_text() for t in ax.get_legend().get_texts()) == ["B", "Mono", "T"]
    plt.close(fig)
    fig = itme.pl.embedding(embedded, color="CD3")
    assert fig.axes[-1].get_ylabel() == "CD3 (arcsinh)"  # continuous colour bar
    assert len(fig.axes[0].collections[0].get_offsets()) == 400
    plt.close(fig)
    with pytest.raises(ItmeStateError, match="tl.embed"):
        itme.pl.embedding(embedded, basis="itme_tsne")
    with pytest.raises(ItmeParameterError, match="color"):
        itme.pl.embedding(embedded, color="nothing")
