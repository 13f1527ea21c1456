"""io.read_cytokines: Luminex exports with OOR <, OOR >, * values and blanks."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pytest

import itme
from itme.errors import ItmeExclusionWarning, ItmeInputError, ItmeInputWarning, ItmeParameterError

EXPORT = (
    "patient_id,IL-6,TNF alpha,IP-10 (CXCL10),plate\n"
    "P1,12.5,OOR <,300,A\n"
    "P2,*3.1,45,OOR >,A\n"
    "P3,OOR >,,250.5,A\n"
    "P4,8,OOR >,*990,B\n"
    "P5,oor<,2.0,NA,B\n"
)


def _read(tmp_path, text=EXPORT, **kwargs):
    path = tmp_path / "cytokines.csv"
    path.write_text(text)
    with pytest.warns(ItmeInputWarning, match="OOR < set to"):
        return itme.io.read_cytokines(path, **kwargs)


def test_each_kind_of_cell_is_treated_and_recorded(tmp_path):
    with pytest.warns(ItmeExclusionWarning, match="dropped: plate"):
        cyt = _read(tmp_path)
    assert list(cyt.var_names) == ["IL-6", "TNF alpha", "IP-10 (CXCL10)"]
    status = cyt.uns["luminex"]["status"]
    assert (
        status.loc["P1", "TNF alpha"] == "below_range" and status.loc["P5", "IL-6"] == "below_range"
    )
    assert status.loc["P3", "IL-6"] == "above_range" and status.loc["P2", "IL-6"] == "extrapolated"
    assert (
        status.loc["P3", "TNF alpha"] == "missing"
        and status.loc["P5", "IP-10 (CXCL10)"] == "missing"
    )
    x = cyt.to_df()
    assert x.loc["P2", "IL-6"] == 3.1  # asterisk stripped, value kept
    assert x.loc["P5", "IL-6"] == pytest.approx(3.1 / 2)  # OOR <: half the lowest value of IL-6
    assert x.loc["P3", "IL-6"] == 12.5  # OOR >: the highest value of IL-6
    assert x.loc["P1", "TNF alpha"] == pytest.approx(1.0)
    assert np.isnan(x.loc["P3", "TNF alpha"])
    assert x.loc["P2", "IP-10 (CXCL10)"] == 990.0
    assert (
        cyt.var.loc["IL-6", "n_below_range"] == 1 and cyt.var.loc["TNF alpha", "n_above_range"] == 1
    )
    assert cyt.uns["luminex"]["raw"].loc["P2", "IL-6"] == "*3.1"
    assert cyt.uns["luminex"]["treatment"]["below_range"].startswith("half the lowest")


def test_policies(tmp_path):
    with pytest.warns(ItmeExclusionWarning):
        cyt = _read(tmp_path, below="missing", above="missing", extrapolated="missing")
    x = cyt.to_df()
    assert (
        np.isnan(x.loc["P5", "IL-6"])
        and np.isnan(x.loc["P3", "IL-6"])
        and np.isnan(x.loc["P2", "IL-6"])
    )
    with pytest.warns(ItmeExclusionWarning):
        cyt = _read(tmp_path, below="zero")
    assert cyt.to_df().loc["P1", "TNF alpha"] == 0.0
    with pytest.raises(ItmeParameterError, match="parameter 'below'"):
        itme.io.read_cytokines(tmp_path / "cytokines.csv", below="lod")


def test_invalid_cells_and_unresolvable_substitutions_warn(tmp_path):
    text = "patient_id,IL-6,IL-10\nP1,abc,OOR <\nP2,4,OOR <\n"
    path = tmp_path / "c.csv"
    path.write_text(text)
    with (
        pytest.warns(
            ItmeInputWarning,
            match=r"1 unreadable, negative or infinite cell\(s\) left missing: P1/IL-6: 'abc'",
        ),
        pytest.warns(
            ItmeInputWarning, match=r"no measured value to substitute for IL-10 \(2 below_range\)"
        ),
        pytest.warns(ItmeInputWarning, match="OOR < set to"),
    ):
        cyt = itme.io.read_cytokines(path)
    assert cyt.uns["luminex"]["status"].loc["P1", "IL-6"] == "invalid"
    assert np.isnan(cyt.to_df()["IL-10"]).all()


def test_duplicate_patients_are_an_error(tmp_path):
    path = tmp_path / "c.csv"
    path.write_text("patient_id,IL-6\nP1,3\nP1,4\n")
    with pytest.raises(ItmeInputError, match="one row per patient, found duplicated P1"):
        itme.io.read_cytokines(path)


def test_european_export_and_roundtrip(tmp_path):
    path = tmp_path / "c.csv"
    path.write_text("patient_id;IL-6;IL-8\nP1;12,5;OOR >\nP2;*3,1;1 200\nP3;1.234,5;7\n")
    with pytest.warns(ItmeInputWarning):
        cyt = itme.io.read_cytokines(path)
    x = cyt.to_df()
    assert x.loc["P1", "IL-6"] == 12.5 and x.loc["P2", "IL-6"] == 3.1
    assert cyt.uns["luminex"]["status"].loc["P2", "IL-8"] == "invalid"  # "1 200" is not a number
    cyt.write_h5ad(tmp_path / "c.h5ad")
    back = ad.read_h5ad(tmp_path / "c.h5ad")
    assert back.uns["luminex"]["status"].equals(cyt.uns["luminex"]["status"])
    assert back.uns["luminex"]["treatment"] == cyt.uns["luminex"]["treatment"]
