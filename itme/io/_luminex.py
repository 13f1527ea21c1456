"""Reading Luminex cytokine exports (``OOR <``, ``OOR >``, ``*`` values, blanks).

cytokines.csv holds ``patient_id`` and one column per analyte in pg/mL (docs/input-formats.md), as
exported by the Luminex/Bio-Plex software. Besides numbers, cells may hold:

``OOR <`` / ``OOR >``
    out of range below / above the standard curve: no number was measured.
``*12.3``
    a value extrapolated beyond the standard curve (less reliable, but a number).
blank, ``NA``, ...
    not measured.

Each cell gets a status (``measured``, ``extrapolated``, ``below_range``, ``above_range``,
``missing``, ``invalid``) kept in the result next to the value used, so every substitution
can be traced.
"""

from __future__ import annotations

import logging
import re
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from itme.errors import ItmeExclusionWarning, ItmeInputError, ItmeInputWarning, ItmeParameterError
from itme.io._tables import MISSING_TOKENS, canonical_columns, check_patient_ids, read_delimited

if TYPE_CHECKING:
    from anndata import AnnData

__all__ = ["read_cytokines"]

logger = logging.getLogger(__name__)

STATUSES = ("measured", "extrapolated", "below_range", "above_range", "missing", "invalid")
_BELOW = re.compile(r"^oor\s*<$", re.I)
_ABOVE = re.compile(r"^oor\s*>$", re.I)
_THOUSANDS = re.compile(r"^-?\d{1,3}(,\d{3})+(\.\d+)?$")
_DECIMAL_COMMA = re.compile(r"^-?\d+,\d+$")

BELOW_POLICIES = ("half_min", "min", "zero", "missing")
ABOVE_POLICIES = ("max", "missing")
EXTRAPOLATED_POLICIES = ("keep", "missing")


def _number(text: str, separator: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        pass
    if separator != "," and _DECIMAL_COMMA.match(text):
        return float(text.replace(",", "."))
    if _THOUSANDS.match(text):
        return float(text.replace(",", ""))
    return None


def parse_cell(text: str, separator: str = ",") -> tuple[str, float]:
    """Status and number of one Luminex cell.

    Parameters
    ----------
    text
        The cell as written.
    separator
        The file's column separator (a decimal comma is accepted unless it is ``,``).

    Returns
    -------
    ``(status, number)``: status one of :data:`STATUSES`; the number is NaN unless the cell
    is measured or extrapolated. Negative, infinite and NaN numbers are ``invalid``.
    """
    t = text.strip()
    if t.lower() in MISSING_TOKENS:
        return "missing", np.nan
    if _BELOW.match(t):
        return "below_range", np.nan
    if _ABOVE.match(t):
        return "above_range", np.nan
    status = "extrapolated" if t.startswith("*") else "measured"
    v = _number(t.lstrip("*").strip(), separator)
    # a concentration is a finite number >= 0 (a negative one is a background-subtraction
    # artefact; it would rank below the "OOR <" substitutes)
    if v is None or not np.isfinite(v) or v < 0:
        return "invalid", np.nan
    return status, v


def read_cytokines(
    path: str | Path,
    *,
    below: str = "half_min",
    above: str = "max",
    extrapolated: str = "keep",
) -> AnnData:
    """Read a Luminex cytokine table (patients × analytes, pg/mL) without failing on its flags.

    How each kind of cell is treated (recorded per cell in ``uns["luminex"]["status"]``):

    - a number: kept (``measured``);
    - ``*``-prefixed: the number without the asterisk (``extrapolated``; ``extrapolated="missing"``
      drops it);
    - ``OOR <``: below the standard curve, replaced by half the lowest number (measured or
      extrapolated) of that analyte in the file (``below="half_min"``, a common
      limit-of-detection/2 convention), or the lowest (``"min"``), ``0`` (``"zero"``) or left
      missing (``"missing"``);
    - ``OOR >``: above the curve, replaced by the highest number of that analyte
      (``above="max"``) or left missing;
    - blank / ``NA``: missing (NaN);
    - anything else, including negative or infinite numbers (a concentration is a finite
      number >= 0): ``invalid``, missing, and an ItmeInputWarning naming the cells.

    Rank tests (:func:`itme.stats.compare_cytokines`) only need the order of the values, which
    these substitutions preserve: below-range values rank lowest, above-range highest.

    Parameters
    ----------
    path
        CSV/TSV with ``patient_id`` and one column per analyte (any encoding/separator that
        :func:`itme.io.read_clinical` accepts). Columns without a single numeric or OOR value
        (e.g. a plate name) are not analytes: they are dropped and reported.
    below
        Treatment of ``OOR <``: ``"half_min"``, ``"min"``, ``"zero"`` or ``"missing"``.
    above
        Treatment of ``OOR >``: ``"max"`` or ``"missing"``.
    extrapolated
        Treatment of ``*`` values: ``"keep"`` or ``"missing"``.

    Returns
    -------
    AnnData (patients × analytes): ``X`` float pg/mL after the treatments above (NaN =
    missing); ``obs_names`` and ``obs["patient_id"]`` the patient ids; ``var`` with
    ``n_<status>`` counts per analyte and ``below_value`` / ``above_value`` (the numbers
    substituted, NaN when none); ``uns["luminex"]``: ``status`` (DataFrame of statuses, same
    shape as ``X``), ``raw`` (DataFrame of the cells as written), ``treatment`` (dict: how each
    status was handled), ``dropped_columns``, ``encoding``, ``separator``, ``path``.
    """
    import anndata as ad

    for name, value, allowed in (
        ("below", below, BELOW_POLICIES),
        ("above", above, ABOVE_POLICIES),
        ("extrapolated", extrapolated, EXTRAPOLATED_POLICIES),
    ):
        if value not in allowed:
            raise ItmeParameterError(name, allowed, value)
    df, info = read_delimited(path, what="cytokines")
    where = info["path"]
    df = canonical_columns(df, ("patient_id",))
    if "patient_id" not in df.columns:
        raise ItmeInputError(
            where=f"{where} header",
            expected="a patient_id column",
            found=f"columns {', '.join(df.columns[:10])}",
        )
    check_patient_ids(df, where, fix="Average replicate wells before export.")
    ids = df["patient_id"]
    analytes = [c for c in df.columns if c != "patient_id"]
    alike: dict[str, list[str]] = {}
    for c in analytes:
        alike.setdefault(re.sub(r"[^0-9a-z]", "", c.lower()), []).append(c)
    similar = [" / ".join(names) for names in alike.values() if len(names) > 1]
    if similar:
        warnings.warn(
            f"{where}: analyte columns that differ only in case or punctuation: "
            f"{'; '.join(similar)}; each is read as its own analyte (merge them if they are one)",
            ItmeInputWarning,
            stacklevel=2,
        )
    parsed = {c: [parse_cell(v, info["separator"]) for v in df[c]] for c in analytes}
    status = pd.DataFrame({c: [s for s, _ in parsed[c]] for c in analytes}, index=ids.to_numpy())
    values = pd.DataFrame(
        {c: [v for _, v in parsed[c]] for c in analytes}, index=ids.to_numpy(), dtype=float
    )
    useful = status.isin(["measured", "extrapolated", "below_range", "above_range"]).any()
    dropped = [c for c in analytes if not useful[c]]
    if dropped:
        warnings.warn(
            f"{where}: {len(dropped)} column(s) without any concentration or OOR flag are not "
            f"analytes and were dropped: {', '.join(dropped)}",
            ItmeExclusionWarning,
            stacklevel=2,
        )
        status, values = status.drop(columns=dropped), values.drop(columns=dropped)
    if status.shape[1] == 0:
        raise ItmeInputError(
            where=where, expected="analyte columns with concentrations", found="none"
        )
    invalid = [
        (p, c, df.loc[df.index[i], c])
        for c in status.columns
        for i, p in enumerate(status.index)
        if status.iloc[i][c] == "invalid"
    ]
    if invalid:
        shown = "; ".join(f"{p}/{c}: {t!r}" for p, c, t in invalid[:10])
        warnings.warn(
            f"{where}: {len(invalid)} unreadable, negative or infinite cell(s) left missing: "
            f"{shown}",
            ItmeInputWarning,
            stacklevel=2,
        )

    observed = values.where(status.isin(["measured", "extrapolated"]))
    if extrapolated == "missing":
        values = values.mask(status == "extrapolated")
        observed = observed.mask(status == "extrapolated")
    low, high = observed.min(), observed.max()
    below_value = {
        "half_min": low / 2,
        "min": low,
        "zero": pd.Series(0.0, index=low.index),
        "missing": low * np.nan,
    }[below]
    above_value = high if above == "max" else high * np.nan
    unresolved = []
    for c in status.columns:
        for flag, sub, policy in (
            ("below_range", below_value[c], below),
            ("above_range", above_value[c], above),
        ):
            mask = status[c] == flag
            if mask.any():
                values.loc[mask, c] = sub
                if not np.isfinite(sub) and policy != "missing":
                    unresolved.append(f"{c} ({int(mask.sum())} {flag})")
    if unresolved:
        warnings.warn(
            f"{where}: no measured value to substitute for {', '.join(unresolved)}; left missing",
            ItmeInputWarning,
            stacklevel=2,
        )
    counts = {s: (status == s).sum() for s in STATUSES}
    flagged = {
        s: int(counts[s].sum()) for s in ("below_range", "above_range", "extrapolated", "missing")
    }
    treatment = {
        "measured": "kept",
        "extrapolated": "kept without the asterisk" if extrapolated == "keep" else "left missing",
        "below_range": {
            "half_min": "half the lowest measured value of the analyte",
            "min": "the lowest measured value of the analyte",
            "zero": "0",
            "missing": "left missing",
        }[below],
        "above_range": "the highest measured value of the analyte"
        if above == "max"
        else "left missing",
        "missing": "left missing",
        "invalid": "left missing (warned)",
    }
    if any(flagged.values()):
        warnings.warn(
            f"{where}: {flagged['below_range']} OOR < set to {treatment['below_range']}; "
            f"{flagged['above_range']} OOR > set to {treatment['above_range']}; "
            f"{flagged['extrapolated']} extrapolated (*) {treatment['extrapolated']}; "
            f"{flagged['missing']} blank left missing (per-cell status in uns['luminex']['status'])",
            ItmeInputWarning,
            stacklevel=2,
        )
    var = pd.DataFrame({f"n_{s}": counts[s].astype(np.int64) for s in STATUSES})
    var["below_value"] = below_value.astype(float)
    var["above_value"] = above_value.astype(float)
    obs = pd.DataFrame({"patient_id": status.index.astype(str)}, index=status.index.astype(str))
    raw = df.set_index("patient_id")[list(status.columns)]
    raw.index = raw.index.astype(str)
    adata = ad.AnnData(X=values.to_numpy(dtype=float), obs=obs, var=var)
    adata.uns["luminex"] = {
        "status": status.set_axis(obs.index, axis=0),
        "raw": raw,
        "treatment": treatment,
        "dropped_columns": dropped,
        **{k: str(v) for k, v in info.items()},
    }
    logger.info(
        "read_cytokines: %d patients × %d analytes (%s)",
        adata.n_obs,
        adata.n_vars,
        ", ".join(f"{v} {k}" for k, v in flagged.items()),
    )
    return adata
