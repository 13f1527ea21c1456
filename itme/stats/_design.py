"""Sample-level designs for the differential tests: formula columns, contrasts, sample tables.

Shared by :func:`itme.stats.differential_state` and :func:`itme.stats.differential_abundance`
(adapters over statsmodels). A formula is written R-style without a response
(``"~ condition + patient_id"``); a contrast is either the name of one model coefficient
(``"age"``, ``"condition[T.BCRXL]"``) or ``(column, level, reference)``, which makes
``reference`` the baseline of ``column`` so that the coefficient is ``level - reference``.
"""

from __future__ import annotations

import ast
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from itme._adata import fmt_ids
from itme.errors import ItmeInputError, ItmeParameterError

#: names a formula may use that are not columns (patsy helpers and numpy)
_FORMULA_FUNCTIONS = {"C", "Treatment", "Sum", "Q", "I", "np", "center", "standardize", "scale"}


@dataclass(frozen=True)
class Contrast:
    """A resolved contrast: the coefficient to test and how it was asked for."""

    column: str | None
    level: str | None
    reference: str | None
    coefficient: str | None

    def describe(self) -> str:
        """Human-readable form (``"condition: BCRXL vs Ref"`` or the coefficient)."""
        if self.column is not None:
            return f"{self.column}: {self.level} vs {self.reference}"
        return str(self.coefficient)


def formula_columns(formula: str, *, param: str = "formula") -> list[str]:
    """The column names an R-style right-hand side formula refers to, in order.

    Parameters
    ----------
    formula
        R-style right-hand side without a response, e.g. ``"~ condition + age"``; patsy
        helpers (``C(x)``, ``np.log(x)``) are allowed.
    param
        Name of the parameter in error messages.

    Returns
    -------
    The distinct column names, in the order they first appear.

    Raises
    ------
    ItmeParameterError
        Not a string starting with ``~``, no term, or a formula patsy cannot parse.
    """
    if not isinstance(formula, str) or not formula.strip().startswith("~"):
        raise ItmeParameterError(
            param, 'an R-style formula without a response, e.g. "~ condition"', formula
        )
    rhs = formula.strip()[1:].strip()
    if not rhs:
        raise ItmeParameterError(param, "a formula with at least one term", formula)
    import patsy

    try:
        desc = patsy.ModelDesc.from_formula(rhs)
    except patsy.PatsyError as err:
        raise ItmeParameterError(param, "a formula patsy can parse", formula, fix=str(err)) from err
    names: list[str] = []
    for term in desc.rhs_termlist:
        for factor in term.factors:
            tree = ast.parse(factor.code, mode="eval")
            callees = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)} | {
                id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Attribute)
            }
            for node in ast.walk(tree):
                if (
                    isinstance(node, ast.Name)
                    and id(node) not in callees
                    and node.id not in _FORMULA_FUNCTIONS
                ):
                    names.append(node.id)
    return list(dict.fromkeys(names))


def resolve_contrast(
    contrast: str | Sequence[str], data: pd.DataFrame, *, param: str = "contrast"
) -> tuple[Contrast, pd.DataFrame]:
    """Check ``contrast`` against the sample table; for a level contrast, set the baseline.

    Returns the resolved contrast and a copy of ``data`` whose contrast column is a
    categorical with ``reference`` first (so patsy's treatment coding tests level - reference).
    """
    if isinstance(contrast, str):
        return Contrast(None, None, None, contrast), data
    parts = list(contrast) if isinstance(contrast, Sequence) else []
    if len(parts) != 3 or not all(isinstance(p, str) for p in parts):
        raise ItmeParameterError(
            param,
            "a coefficient name or (column, level, reference)",
            contrast,
            fix='e.g. contrast=("condition", "BCRXL", "Ref")',
        )
    column, level, reference = parts
    if column not in data.columns:
        raise ItmeParameterError(
            param, f"a column of the sample table ({fmt_ids(data.columns)})", column
        )
    values = data[column].astype(str)
    present = sorted(values.unique())
    missing = [v for v in (level, reference) if v not in present]
    if missing or level == reference:
        raise ItmeParameterError(
            param,
            f"two different levels of {column!r} ({fmt_ids(present)})",
            (level, reference),
        )
    out = data.copy()
    cats = [reference, level, *[v for v in present if v not in (reference, level)]]
    out[column] = pd.Categorical(values, categories=cats)
    return Contrast(column, level, reference, None), out


def coefficient_name(contrast: Contrast, names: Sequence[str], formula: str) -> str:
    """The model coefficient of ``contrast`` among the fitted parameter ``names``."""
    if contrast.coefficient is not None:
        if contrast.coefficient not in names:
            raise ItmeParameterError(
                "contrast",
                f"a coefficient of the model {formula!r} ({fmt_ids(names)})",
                contrast.coefficient,
            )
        return contrast.coefficient
    suffix = f"[T.{contrast.level}]"
    hits = [n for n in names if n.endswith(suffix) and contrast.column in n]
    if len(hits) != 1:
        raise ItmeParameterError(
            "contrast",
            f"one coefficient for {contrast.describe()} in {fmt_ids(names)}",
            hits,
            fix="Write the formula with the contrast column as a plain term, e.g. '~ condition'.",
        )
    return hits[0]


def sample_table(
    obs: pd.DataFrame, sample_key: str, columns: Sequence[str], *, what: str
) -> pd.DataFrame:
    """One row per sample (index = sample id, str) with ``columns`` constant within a sample."""
    missing = [c for c in [sample_key, *columns] if c not in obs.columns]
    if missing:
        raise ItmeInputError(
            where=f"{what}: obs",
            expected=f"the columns named by the formula, contrast and sample key ({fmt_ids([sample_key, *columns])})",
            found=f"no column {fmt_ids(missing)} (obs has {fmt_ids(obs.columns)})",
            fix="Correct the formula, or join the column first (itme.io.add_clinical).",
        )
    frame = obs[[sample_key, *columns]].copy()
    frame[sample_key] = frame[sample_key].astype(str)
    grouped = frame.groupby(sample_key, sort=True, observed=True)
    if columns:
        varying = [c for c in columns if (grouped[c].nunique(dropna=False) > 1).any()]
        if varying:
            raise ItmeInputError(
                where=f"{what}: obs columns {fmt_ids(varying)}",
                expected=f"one value per {sample_key} (a sample-level design)",
                found="several values within a sample",
                fix="Use sample-level columns (condition, patient_id, clinical data) in the formula.",
            )
    table = grouped.first()
    table.index = table.index.astype(str)
    for c in columns:
        col = table[c]
        if col.isna().any():
            raise ItmeInputError(
                where=f"{what}: obs column {c!r}",
                expected="a value for every sample",
                found=f"missing for {fmt_ids(table.index[col.isna()])}",
                fix="Drop those samples or fill the column.",
            )
        if not pd.api.types.is_numeric_dtype(col):
            table[c] = col.astype(str)
    return table


def design_columns(formula: str, contrast: str | Sequence[str], random: Sequence[str]) -> list[str]:
    """Every column the formula, a level contrast and the random-effect columns need."""
    cols = formula_columns(formula)
    if not isinstance(contrast, str) and isinstance(contrast, Sequence) and len(contrast) == 3:
        cols.append(str(contrast[0]))
    cols.extend(random)
    return list(dict.fromkeys(cols))


def finite(values: np.ndarray) -> np.ndarray:
    """Boolean mask of finite entries."""
    return np.isfinite(np.asarray(values, dtype=float))
