"""The annotate stage's UMAP in a second process: the same embedding as tl.embed in-process."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest

import itme
from itme.pipeline import _background, _second_process


def make_cells(n, seed):
    """Three populations on three type markers, one state marker."""
    rng = np.random.default_rng(seed)
    centers = np.array([[4, 0, 0, 3], [0, 4, 0, 3], [0, 0, 4, 0]], dtype=np.float32)
    X = centers[rng.integers(0, 3, n)] + rng.normal(0, 0.3, (n, 4)).astype(np.float32)
    adata = ad.AnnData(X)
    adata.var_names = ["CD3", "CD19", "CD14", "CD45RA"]
    adata.var["marker_class"] = pd.Categorical(["type", "type", "type", "state"])
    return adata


@pytest.fixture(scope="module")
def expected():
    """tl.embed in this process, with QC labels (only kept events are drawn)."""
    adata = make_cells(n=900, seed=4)
    adata.obs["itme_qc"] = pd.Categorical(np.where(np.arange(900) % 7 == 0, "bead", "kept"))
    itme.tl.embed(adata, n_cells=300, rng=5)
    return adata


def _check_same(expected, got):
    np.testing.assert_array_equal(got.obsm["X_itme_umap"], expected.obsm["X_itme_umap"])
    np.testing.assert_array_equal(
        got.obs["itme_umap_subsample"].to_numpy(), expected.obs["itme_umap_subsample"].to_numpy()
    )
    a, b = got.uns["itme_umap"], expected.uns["itme_umap"]
    assert a.keys() == b.keys()
    assert list(a.pop("markers")) == list(b["markers"]) == ["CD3", "CD19", "CD14"]
    assert a == {k: v for k, v in b.items() if k != "markers"}


def _cells(expected):
    cells = make_cells(n=900, seed=4)
    cells.obs["itme_qc"] = expected.obs["itme_qc"].copy()
    return cells


def test_second_process_gives_the_in_process_embedding(expected, monkeypatch):
    started = []
    popen = _second_process.subprocess.Popen
    monkeypatch.setattr(
        _second_process.subprocess, "Popen", lambda *a, **k: started.append(a) or popen(*a, **k)
    )
    cells = _cells(expected)
    finish = _background.start_embed(cells, n_cells=300, seed=5, threads=None)
    target = cells.copy()  # e.g. the cells after pp.split_channels: the same events
    finish(target)
    assert len(started) == 1  # the embedding was computed by the second process
    _check_same(expected, target)
    tmp = started[0][0][4]  # the input file: removed with its folder
    assert not _second_process.Path(tmp).parent.exists()


def test_failed_second_process_embeds_in_this_one(expected, monkeypatch):
    monkeypatch.setattr(_second_process, "_ENTRY", "raise SystemExit(3)")
    cells = _cells(expected)
    _background.start_embed(cells, n_cells=300, seed=5, threads=2)(cells)
    _check_same(expected, cells)


def test_one_thread_starts_no_process(expected, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("no second process with threads: 1")

    monkeypatch.setattr(_second_process.subprocess, "Popen", refuse)
    cells = _cells(expected)
    _background.start_embed(cells, n_cells=300, seed=5, threads=1)(cells)
    _check_same(expected, cells)


@pytest.fixture
def popens(monkeypatch):
    """The second processes started (their Popen objects)."""
    procs = []
    popen = _second_process.subprocess.Popen

    def record(*args, **kwargs):
        procs.append(popen(*args, **kwargs))
        return procs[-1]

    monkeypatch.setattr(_second_process.subprocess, "Popen", record)
    return procs


def test_early_start_is_taken_over_for_the_same_events(expected, popens, tmp_path):
    cells = _cells(expected)
    path = tmp_path / "events.h5ad"
    cells.write_h5ad(path)
    _background.start_early(path, cells, n_cells=300, seed=5, threads=None)
    assert len(popens) == 1
    finish = _background.take_early(path, cells, n_cells=300, seed=5, threads=None)
    assert len(popens) == 1  # taken over, not started again
    target = cells.copy()
    finish(target)
    _check_same(expected, target)
    assert not _background._EARLY


def test_early_start_for_other_events_is_stopped(expected, popens, tmp_path):
    cells = _cells(expected)
    path = tmp_path / "events.h5ad"
    cells.write_h5ad(path)
    _background.start_early(path, cells, n_cells=300, seed=6, threads=None)  # another seed
    finish = _background.take_early(path, cells, n_cells=300, seed=5, threads=None)
    assert len(popens) == 2
    assert popens[0].poll() is not None  # the early one stopped, its files removed
    assert not _second_process.Path(popens[0].args[4]).parent.exists()
    finish(cells)
    _check_same(expected, cells)
    # the file changed after the early start (e.g. the batch stage rerun): not taken over
    _background.start_early(path, cells, n_cells=300, seed=5, threads=None)
    path.write_bytes(b"rewritten")
    _background.take_early(path, cells, n_cells=300, seed=5, threads=None)
    assert len(popens) == 4
    _background.discard_early()  # what the runner does at the end of a run
    assert all(p.poll() is not None for p in popens)
    assert not any(_second_process.Path(p.args[4]).parent.exists() for p in popens)
