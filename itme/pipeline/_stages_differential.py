"""The differential stage: abundance and state between the conditions of the config's design.

Runs only when the config has a ``design:`` section (formula, contrasts, pairing column):
:func:`itme.stats.differential_abundance` on ``patients.h5ad`` (samples × subsets counts) and
:func:`itme.stats.differential_state` on ``cells.h5ad`` (state markers within subsets), one
pair of tables per contrast, beside the stats stage's Kruskal–Wallis tables (unchanged).
The unit of analysis is the abundance stage's (files of one patient and time point pooled),
and the design columns are those of ``patients.h5ad`` (sample sheet, clinical table,
``itme_cluster``), copied onto the cells by that unit.
"""

from __future__ import annotations

import logging
from typing import Any

import anndata as ad
import pandas as pd

from itme import io, pl, stats
from itme.errors import ItmeInputError
from itme.pipeline._config import Design, DesignContrast
from itme.pipeline._runner import Context

logger = logging.getLogger(__name__)

#: the top differential-state calls drawn as densities (markers × their subsets)
DENSITY_CALLS = 4


def design_columns(design: Design) -> list[str]:
    """Every column the design names: formula terms, contrast columns, the pairing column.

    Parameters
    ----------
    design
        The config's ``design`` section.

    Returns
    -------
    Distinct column names, formula order first.
    """
    cols = stats.formula_columns(design.formula, param="design.formula")
    cols += [c.column for c in design.contrasts]
    if design.random:
        cols.append(design.random)
    return list(dict.fromkeys(cols))


def _with_block(formula: str, random: str | None) -> str:
    """``formula`` with the pairing column as a fixed block term (models without random effects)."""
    if not random or random in stats.formula_columns(formula):
        return formula
    return f"{formula} + {random}"


def _unit_key(ctx: Context, cells: ad.AnnData, patients: ad.AnnData) -> str:
    """The obs column of ``cells`` naming the abundance stage's units (added when pooled)."""
    present = set(cells.obs["sample_id"].astype(str))
    if set(patients.obs_names) <= present:
        return "sample_id"
    sheet, _ = io.read_samples(ctx.config.inputs.samples)
    units = io.analysis_units(sheet[sheet["sample_id"].isin(present)])
    to_unit = dict(zip(units["sample_id"], units["unit_id"], strict=True))
    cells.obs["unit_id"] = pd.Categorical(cells.obs["sample_id"].astype(str).map(to_unit))
    return "unit_id"


def _design_onto_cells(cells: ad.AnnData, patients: ad.AnnData, key: str, columns: list[str]):
    """Copy the sample-level design columns of ``patients.obs`` onto the cells, by unit."""
    units = cells.obs[key].astype(str)
    for col in columns:
        if col in cells.obs:
            continue
        if col not in patients.obs:
            raise ItmeInputError(
                where=f"design: column {col!r}",
                expected="a column of samples.csv, clinical.csv, or itme_cluster",
                found=f"patients.h5ad obs columns {', '.join(map(str, patients.obs.columns))}",
                fix="Correct the design or add the column (itme validate lists this too)",
            )
        values = patients.obs[col]
        mapped = units.map(pd.Series(values.astype(object).to_numpy(), index=patients.obs_names))
        cells.obs[col] = (
            pd.Categorical(mapped)
            if not pd.api.types.is_numeric_dtype(values)
            else mapped.astype(float)
        )


def _density_figure(cells: ad.AnnData, ds: pd.DataFrame, key: str, column: str) -> Any:
    """Densities of the top state calls: their markers × their subsets, by condition."""
    top = ds[ds["padj"].notna()].sort_values(["padj", "pvalue"]).head(DENSITY_CALLS)
    markers = list(dict.fromkeys(top["marker"]))
    subsets = list(dict.fromkeys(top["subset"].astype(str)))
    return pl.expression_density(
        cells, markers=markers, condition=column, groups=subsets, sample_key=key
    )


def _one_contrast(
    ctx: Context,
    cells: ad.AnnData,
    patients: ad.AnnData,
    key: str,
    contrast: DesignContrast,
    k: int,
) -> dict[str, Any]:
    d = ctx.config.design
    fdr = ctx.config.stats.fdr
    variant = None if k == 0 else contrast.label
    con = (contrast.column, contrast.level, contrast.reference)
    glmm = d.abundance_method == "glmm"
    da = stats.differential_abundance(
        patients,
        formula=d.formula if glmm else _with_block(d.formula, d.random),
        contrast=con,
        method=d.abundance_method,
        random=d.random if glmm else None,
        min_count=d.min_cells,  # a subset with fewer events in all is not tested
        fdr="bh",
        key_added=None,
    )
    ctx.table("differential_abundance", da, variant=variant, index=False)
    method = d.state
    ds = stats.differential_state(
        cells,
        formula=d.formula if method == "lmm" else _with_block(d.formula, d.random),
        contrast=con,
        groupby="subset",
        markers=d.markers,
        random=d.random if method == "lmm" else None,
        method=method,
        sample_key=key,
        min_cells=d.min_cells,
        key_added="differential_state",
    )
    ctx.table("differential_state", ds, variant=variant, index=False)
    tested = ds[ds["padj"].notna()]
    if len(tested):
        ctx.figure("ds_heatmap", pl.ds_heatmap(cells, top=20), variant=variant)
        ctx.figure("ds_density", _density_figure(cells, ds, key, contrast.column), variant=variant)
    rec = cells.uns["differential_state"]
    top = tested.sort_values(["padj", "pvalue"]).head(3)
    return {
        "design": f"{d.formula}; {contrast.level} vs {contrast.reference}"
        + (f"; paired by {d.random}" if d.random else ""),
        "subsets tested (abundance)": int(da["pvalue"].notna().sum()),
        f"subsets at padj < {fdr:g}": int((da["padj"] < fdr).sum()),
        "state tests": len(tested),
        f"state calls at padj < {fdr:g}": int((ds["padj"] < fdr).sum()),
        "top state calls": "; ".join(
            f"{s} {m} {lfc:+.2f} (padj {p:.2g})"
            for s, m, lfc, p in zip(
                top["subset"], top["marker"], top["logFC"], top["padj"], strict=True
            )
        ),
        "sample × subset cells below min_cells": int(rec["n_excluded"]),
    }


def differential(ctx: Context) -> dict[str, Any]:
    """stats.differential_abundance and stats.differential_state per contrast → tables, figures.

    Without ``design`` in the config the stage does nothing (status ``not run``).
    """
    d = ctx.config.design
    if d is None:
        return {
            "status": "not run",
            "differential": {
                "_note": "the config has no design (formula, contrasts, pairing column)"
            },
        }
    patients = ad.read_h5ad(ctx.path("patients.h5ad"))
    cells = ad.read_h5ad(ctx.path("cells.h5ad"))
    key = _unit_key(ctx, cells, patients)
    columns = design_columns(d)
    _design_onto_cells(cells, patients, key, columns)
    summary: dict[str, Any] = {}
    for k, contrast in enumerate(d.contrasts):
        summary[contrast.label] = _one_contrast(ctx, cells, patients, key, contrast, k)
    first = d.contrasts[0].column
    ctx.figure("pbmds", pl.pbmds(cells, color=first, sample_key=key))
    return summary
