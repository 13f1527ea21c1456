"""Spillover compensation: exact NNLS, known matrices recovered, bad matrices named."""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from scipy.optimize import nnls

from itme import datasets, io, pp, tl
from itme.core.compensate import compensate_flow, compensate_nnls, nnls_many, spill_targets
from itme.errors import ItmeInputError, ItmeInputWarning, ItmeStateError

CHANNELS = ["Nd142Di", "Nd143Di", "Nd144Di", "Nd145Di", "Sm147Di", "Nd148Di", "Gd158Di"]


def _matrix() -> pd.DataFrame:
    """A known matrix: Nd143 -> Nd142/Nd144 (±1), Nd142 -> Gd158 (+16), Nd144 -> Nd148 (isotope)."""
    S = pd.DataFrame(np.eye(len(CHANNELS)), index=CHANNELS, columns=CHANNELS)
    S.loc["Nd143Di", "Nd142Di"] = 0.02
    S.loc["Nd143Di", "Nd144Di"] = 0.03
    S.loc["Nd142Di", "Gd158Di"] = 0.015
    S.loc["Nd144Di", "Nd148Di"] = 0.004
    S.loc["Sm147Di", "Nd148Di"] = 0.01
    return S


def _cells(true: np.ndarray, names: list[str] = CHANNELS) -> ad.AnnData:
    a = ad.AnnData(true.astype(np.float32), var=pd.DataFrame({"channel": names}, index=names))
    a.layers["raw"] = a.X
    return a


@pytest.mark.parametrize("seed", range(5))
def test_nnls_many_equals_scipy_on_random_problems(seed):
    rng = np.random.default_rng(seed)
    p = int(rng.integers(2, 25))
    A = rng.normal(size=(p + int(rng.integers(0, 4)), p))
    B = rng.normal(size=(A.shape[0], 60)) * 10
    X = nnls_many(A, B)
    ref = np.column_stack([nnls(A, B[:, k])[0] for k in range(B.shape[1])])
    assert np.allclose(X, ref, atol=1e-8 * (1 + np.abs(ref).max()))
    assert (X >= 0).all()


def test_nnls_compensation_equals_scipy_and_is_never_negative():
    rng = np.random.default_rng(7)
    S = datasets.simulate_spillover_matrix(CHANNELS, rng=rng).to_numpy()
    true = np.where(rng.random((500, len(CHANNELS))) < 0.5, 0.0, rng.gamma(2, 50, (500, 7)))
    measured = rng.poisson(true @ S).astype(float)
    X = compensate_nnls(measured, S)
    ref = np.array([nnls(S.T, m)[0] for m in measured])
    assert np.abs(X - ref).max() < 1e-8
    assert X.min() >= 0
    # the unconstrained inverse goes negative on the same events: NNLS is doing work
    assert compensate_flow(measured, S).min() < -0.1


def test_flow_and_nnls_invert_a_known_matrix_exactly():
    S = _matrix().to_numpy()
    true = np.random.default_rng(1).gamma(2, 100, (200, len(CHANNELS)))
    measured = true @ S
    assert np.allclose(compensate_flow(measured, S), true, rtol=1e-10)
    assert np.allclose(compensate_nnls(measured, S), true, rtol=1e-9)


def test_spill_targets_are_catalysts_interactions():
    masses, elements = [142, 143, 144, 148, 158, 160], ["Nd", "Nd", "Nd", "Nd", "Gd", "Gd"]
    t = spill_targets(masses, elements)
    assert t[1, 0] and t[1, 2]  # ±1
    assert t[0, 4]  # 142 + 16 = 158 oxide
    assert t[0, 3] and t[3, 0]  # Nd isotopes
    assert not t[4, 0]  # 158 -> 142 is not an oxide
    assert not t[0, 0]
    assert t[4, 5]  # Gd isotopes


@pytest.mark.parametrize("method", ["default", "classic"])
def test_estimate_spillover_recovers_a_known_matrix_from_noise_free_beads(method):
    S = _matrix()
    n = 40
    true = np.zeros((n * len(CHANNELS), len(CHANNELS)))
    stained = np.repeat(np.arange(len(CHANNELS)), n)
    true[np.arange(true.shape[0]), stained] = np.linspace(500, 3000, n).tolist() * len(CHANNELS)
    beads = _cells(true @ S.to_numpy())
    est = tl.estimate_spillover(beads, min_events=10, method=method)
    assert np.allclose(est.to_numpy(), S.to_numpy(), atol=1e-12)
    assert est.attrs["populations"]["n_events"].tolist() == [n] * len(CHANNELS)


def test_estimate_spillover_by_population_key_and_csv_roundtrip(tmp_path):
    S = datasets.simulate_spillover_matrix(CHANNELS, rng=3)
    beads = datasets.simulate_single_stains(S, n_per_channel=400, rng=4)
    out = tmp_path / "spill.csv"
    est = tl.estimate_spillover(beads, population_key="stained", path=out)
    assert np.abs(est - S).to_numpy().max() < 0.002  # 0.2 percentage points
    back = io.read_spillover(out)
    assert np.allclose(back.to_numpy(), est.to_numpy(), atol=1e-9)
    assert back.attrs["metals"]["Nd144Di"] == "Nd144"


def test_compensate_matches_by_metal_and_reports_absent_channels(tmp_path):
    S = _matrix()
    # the matrix in another naming convention and with a metal the data lack (Nd145)
    named = S.rename(index=lambda c: c[2:5] + c[:2], columns=lambda c: c[2:5] + c[:2])
    path = tmp_path / "spill.csv"
    io.write_spillover(named, path=path)
    data = [c for c in CHANNELS if c != "Nd145Di"]
    rng = np.random.default_rng(2)
    true = rng.gamma(2, 100, (300, len(CHANNELS)))
    true[:, CHANNELS.index("Nd145Di")] = 0
    measured = true @ S.to_numpy()
    keep = [CHANNELS.index(c) for c in data]
    cells = _cells(np.column_stack([measured[:, keep], np.full(300, 7.0)]), [*data, "Time"])
    pp.compensate(cells, spillover=path, method="nnls")
    comp = cells.uns["compensation"]
    assert comp["absent"] == ["Nd145"]
    assert comp["absent_spilling"] == []
    assert comp["not_in_matrix"] == []
    assert comp["channels"] == data
    assert np.allclose(cells.layers["raw"][:, :-1], true[:, keep], rtol=1e-4)
    assert (cells.layers["raw"][:, -1] == 7.0).all()  # Time untouched
    assert cells.X is cells.layers["raw"]
    cells.write_h5ad(tmp_path / "c.h5ad")
    back = ad.read_h5ad(tmp_path / "c.h5ad")
    assert back.uns["compensation"]["method"] == "nnls"
    assert np.allclose(back.uns["compensation"]["matrix"].to_numpy(), comp["matrix"].to_numpy())


def test_compensate_warns_when_an_absent_channel_spills_into_measured_ones():
    S = _matrix()
    data = [c for c in CHANNELS if c != "Nd143Di"]
    cells = _cells(np.ones((5, len(data))) * 100, data)
    with pytest.warns(ItmeInputWarning, match="Nd143 spill into measured channels"):
        pp.compensate(cells, spillover=S)
    assert cells.uns["compensation"]["absent_spilling"] == ["Nd143"]


def test_compensate_refuses_transformed_or_compensated_data():
    cells = _cells(np.ones((5, len(CHANNELS))) * 100)
    pp.compensate(cells, spillover=_matrix(), method="flow")
    with pytest.raises(ItmeStateError, match="compensated already"):
        pp.compensate(cells, spillover=_matrix())
    fresh = _cells(np.ones((5, len(CHANNELS))) * 100)
    pp.arcsinh(fresh, channels=CHANNELS)
    with pytest.raises(ItmeStateError, match="before pp.arcsinh"):
        pp.compensate(fresh, spillover=_matrix())


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "match"),
    [
        (",Nd142Di,CD3\nNd142Di,1,0\n", r"column 'CD3'.*named by metal"),
        (",Nd142Di,Nd143Di\nNd142Di,1,0\nFoo,0,1\n", r"line 3 \(row name\).*named by metal"),
        (",Nd142Di,Nd143Di\nNd142Di,1,0,0\nNd143Di,0,1\n", r"line\(s\) 2.*3 fields"),
        (",Nd142Di,Nd143Di\nNd142Di,1,0\nNd144Di,0,1\n", r"line 3.*square.*'Nd144Di'"),
        (",Nd142Di,Nd143Di\nNd142Di,0.9,0\nNd143Di,0,1\n", r"line 2, row 'Nd142Di'.*diagonal"),
        (",Nd142Di,Nd143Di\nNd142Di,1,-0.01\nNd143Di,0,1\n", r"column 'Nd143Di'.*>= 0"),
        (",Nd142Di,Nd143Di\nNd142Di,1,x\nNd143Di,0,1\n", r"column 'Nd143Di'.*finite number"),
        (",Nd142Di,142Nd\nNd142Di,1,0\n", r"Nd142 in columns"),
    ],
)
def test_read_spillover_names_the_bad_cell(tmp_path, text, match):
    path = _write(tmp_path / "bad.csv", text)
    with pytest.raises(ItmeInputError, match=match) as err:
        io.read_spillover(path)
    assert "bad.csv" in str(err.value)


def test_catalyst_matrix_with_fewer_rows_than_columns_is_accepted(tmp_path):
    path = _write(tmp_path / "cat.csv", '"","Nd142Di","Nd143Di"\n"Nd143Di",0.02,1\n')
    m = io.read_spillover(path)
    assert m.shape == (1, 2)
    cells = _cells(np.array([[20.0, 1000.0]]), ["Nd142Di", "Nd143Di"])
    pp.compensate(cells, spillover=path, method="flow")
    assert np.allclose(cells.layers["raw"], [[0.0, 1000.0]], atol=1e-3)


def test_compensate_errors_when_no_metal_matches():
    cells = _cells(np.ones((3, 2)), ["Yb171Di", "Yb172Di"])
    with pytest.raises(ItmeInputError, match="belongs to this panel"):
        pp.compensate(cells, spillover=_matrix())


def test_compensate_a_lazy_matrix_block_by_block():
    import dask.array as da

    S = _matrix()
    true = np.random.default_rng(5).gamma(2, 100, (900, len(CHANNELS)))
    cells = _cells(true @ S.to_numpy())
    lazy = da.from_array(np.asarray(cells.X), chunks=(250, len(CHANNELS)))
    cells.layers["raw"] = lazy
    cells.X = lazy
    pp.compensate(cells, spillover=S)
    out = cells.layers["raw"]
    assert isinstance(out, da.Array) and cells.X is out
    assert np.allclose(out.compute(), true, rtol=1e-4)
    assert cells.uns["compensation"]["n_negative"] == 0  # nnls: never negative
    cells = _cells(true @ S.to_numpy())
    cells.layers["raw"] = cells.X = lazy
    pp.compensate(cells, spillover=S, method="flow")
    assert cells.uns["compensation"]["n_negative"] == -1  # flow: not computed lazily


def test_estimate_spillover_from_one_fcs_file_per_stain(tmp_path):
    S = datasets.simulate_spillover_matrix(CHANNELS, rng=8)
    beads = datasets.simulate_single_stains(S, n_per_channel=300, rng=9)
    paths, stained = [], {}
    for channel in CHANNELS:
        one = beads[(beads.obs["stained"] == channel).to_numpy()].copy()
        path = io.write_fcs(one, tmp_path / f"ss_{channel}.fcs")
        paths.append(path)
        stained[f"ss_{channel}"] = channel
    est = tl.estimate_spillover(paths, stained=stained)
    assert list(est.index) == CHANNELS
    assert np.abs(est - S).to_numpy().max() < 0.002
    with pytest.raises(ItmeInputError, match=r"stained\['ss_x'\].*'Xx999'"):
        tl.estimate_spillover(paths, stained={"ss_x": "Xx999"})
