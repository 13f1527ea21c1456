"""Inputs of pp.clean: channel roles, user thresholds, sample rows, column loaders."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
from anndata import AnnData

from itme._chain import time_column
from itme.core.clean.channels import ROLES, detect_roles
from itme.core.clean.steps import STEPS, GateSpec
from itme.errors import ItmeInputError, ItmeParameterError
from itme.pp._subset import sample_codes

logger = logging.getLogger(__name__)

#: user thresholds as pp.clean accepts them
Thresholds = Mapping[str, tuple[float | None, float | None]] | pd.DataFrame | None
#: roles gated only with a user threshold (beadDist: its scale depends on the normaliser run)
MANUAL_ROLES = tuple(r for s in STEPS for r in s.manual)
#: largest |threshold| on the gating scale: arcsinh(raw / 5) = 15 is 8.2 million counts, far
#: beyond a CyTOF detector; a larger value is a raw count given by mistake
MAX_GATING_VALUE = 15.0


def _resolve(adata: AnnData, role: str, name: str) -> int:
    names = list(map(str, adata.var_names))
    if name in names:
        return names.index(name)
    for col in ("channel", "antigen"):
        if col in adata.var:
            hits = np.flatnonzero(adata.var[col].astype(str).to_numpy() == name)
            if hits.size == 1:
                return int(hits[0])
    raise ItmeParameterError(
        "channels", f"var names (or $PnN / antigen) of adata for role {role!r}", name
    )


def roles_of(
    adata: AnnData, channels: Mapping[str, str | Sequence[str]] | None
) -> dict[str, list[tuple[int, str]]]:
    """Role -> ``[(column, var name), ...]``: detected roles, overridden by ``channels``."""
    var = adata.var
    names = list(map(str, adata.var_names))
    chan = var["channel"].astype(str).tolist() if "channel" in var else names
    ant = var["antigen"].astype(str).tolist() if "antigen" in var else [""] * len(names)
    found = detect_roles(names, chan, ant)
    if channels:
        unknown = [r for r in channels if r not in ROLES]
        if unknown:
            raise ItmeParameterError(
                "channels", f"a mapping with keys among {', '.join(ROLES)}", unknown
            )
        for role, given in channels.items():
            given = [given] if isinstance(given, str) else list(given)
            found[role] = [_resolve(adata, role, g) for g in given]
    return {r: [(i, names[i]) for i in found[r]] for r in ROLES if found.get(r)}


def drop_manual_roles(roles: dict, thresholds: Thresholds) -> dict:
    """Leave out the manual roles (beadDist) that no user threshold names."""
    out = dict(roles)
    for role in MANUAL_ROLES:
        if role not in out:
            continue
        name = "+".join(n for _, n in out[role])
        given = False
        if isinstance(thresholds, Mapping):
            given = role in thresholds or name in thresholds
        elif isinstance(thresholds, pd.DataFrame) and "channel" in thresholds:
            given = bool((thresholds["channel"].astype(str) == name).any())
        if not given:
            logger.info("clean: %s found; it gates only with a user threshold", name)
            del out[role]
    return out


def user_thresholds(
    thresholds: Thresholds, gates: dict[str, list[GateSpec]], cofactor: float
) -> dict:
    """sample_id (None = all) -> {(step, gate name): (low, high)} on the gating scale."""
    if thresholds is None:
        return {}
    all_gates = [g for gs in gates.values() for g in gs]
    out: dict = {}
    if isinstance(thresholds, Mapping):
        keys = {g.role for g in all_gates} | {g.name for g in all_gates}
        unknown = [key for key in thresholds if key not in keys]
        if unknown:
            raise ItmeParameterError(
                "thresholds", f"keys among the roles and gate channels {sorted(keys)}", unknown
            )
        table = {}
        for g in all_gates:
            value = thresholds.get(g.name, thresholds.get(g.role))
            if value is not None:
                table[(g.step, g.name)] = _pair(value, g.name, cofactor)
        out[None] = table
        return out
    if isinstance(thresholds, pd.DataFrame):
        need = {"step", "channel", "low", "high"}
        if not need <= set(thresholds.columns):
            raise ItmeParameterError(
                "thresholds",
                "a DataFrame with columns step, channel, low, high",
                list(thresholds.columns),
            )
        known = {(g.step, g.name) for g in all_gates}
        for i, row in enumerate(thresholds.to_dict("records")):
            key = (str(row["step"]), str(row["channel"]))
            if key not in known:
                raise ItmeParameterError(
                    "thresholds", f"(step, channel) among {sorted(known)}", key
                )
            pair = _pair((row["low"], row["high"]), key[1], cofactor)
            _check_raw_columns(row, pair, cofactor, i)
            sid = row.get("sample_id")
            sid = (
                None
                if sid is None or (isinstance(sid, float) and np.isnan(sid)) or sid == ""
                else str(sid)
            )
            out.setdefault(sid, {})[key] = pair
        if None in out:  # rows for all samples fill in what per-sample rows do not set
            for sid, table in out.items():
                if sid is not None:
                    out[sid] = {**out[None], **table}
        return out
    raise ItmeParameterError("thresholds", "a mapping or a DataFrame", type(thresholds).__name__)


def _check_raw_columns(row: dict, pair: tuple[float, float], cofactor: float, i: int) -> None:
    """``low_raw`` / ``high_raw`` of a thresholds table must agree with ``low`` / ``high``."""
    for col, value in zip(("low_raw", "high_raw"), pair, strict=True):
        if col not in row:
            continue
        given = row[col]
        given = float("nan") if given is None else float(given)
        expected = cofactor * np.sinh(value) if np.isfinite(value) else float("nan")
        same = (np.isnan(given) and np.isnan(expected)) or np.isclose(
            given, expected, rtol=1e-6, atol=1e-9
        )
        if not same:
            raise ItmeParameterError(
                "thresholds",
                f"row {i}: {col} = {cofactor:g} * sinh({col.removesuffix('_raw')}); pp.clean "
                "reads low / high (the gating scale arcsinh(raw / cofactor)) only",
                given,
                fix="Edit low / high, or drop the low_raw / high_raw columns",
            )


def _pair(value: object, name: str, cofactor: float) -> tuple[float, float]:
    try:
        low, high = value
    except (TypeError, ValueError) as exc:
        raise ItmeParameterError("thresholds", f"(low, high) for {name}", value) from exc
    conv = []
    for v in (low, high):
        if v is None or (isinstance(v, float) and np.isnan(v)):
            conv.append(float("nan"))
        else:
            try:
                conv.append(float(v))
            except (TypeError, ValueError) as exc:
                raise ItmeParameterError(
                    "thresholds", f"numbers or None for {name}", value
                ) from exc
    for v in conv:
        if np.isfinite(v) and abs(v) > MAX_GATING_VALUE:
            raise ItmeParameterError(
                "thresholds",
                f"(low, high) for {name} on the gating scale arcsinh(raw / {cofactor:g}), "
                f"within ±{MAX_GATING_VALUE:g}",
                value,
                fix=f"{v:g} looks like raw counts: arcsinh({v:g} / {cofactor:g}) = "
                f"{np.arcsinh(v / cofactor):.4g}",
            )
    if conv[0] > conv[1]:  # NaN (an open side) compares False
        raise ItmeParameterError(
            "thresholds", f"(low, high) with low <= high for {name}", value,
            fix=f"Swap them: ({conv[1]:g}, {conv[0]:g})",
        )  # fmt: skip
    return conv[0], conv[1]


def sample_rows(adata: AnnData, sample_key: str) -> list[tuple[str, slice | np.ndarray]]:
    """``(sample id, rows)`` per sample; rows are a slice when the sample's events are contiguous."""
    if sample_key not in adata.obs:
        if sample_key != "sample_id":
            raise ItmeParameterError("sample_key", "an obs column", sample_key)
        logger.info("clean: obs has no 'sample_id'; gating all events as one sample 'all'")
        return [("all", slice(0, adata.n_obs))]
    codes, ids = sample_codes(adata, sample_key)
    out = []
    # contiguous blocks (read_cohort concatenates files) become slices: no gather copies
    change = np.flatnonzero(np.diff(codes)) + 1
    starts = np.concatenate([[0], change])
    stops = np.concatenate([change, [codes.size]])
    if len(set(codes[starts].tolist())) == starts.size:
        for a, b in zip(starts, stops, strict=True):
            out.append((ids[codes[a]], slice(int(a), int(b))))
        return out
    for i, name in enumerate(ids):
        rows = np.flatnonzero(codes == i)
        if rows.size:
            out.append((name, rows))
    return out


def n_rows(rows: slice | np.ndarray) -> int:
    """Number of events in ``rows`` (a slice or integer positions)."""
    return rows.stop - rows.start if isinstance(rows, slice) else int(rows.size)


def loader(raw: np.ndarray, rows: slice | np.ndarray) -> Callable[[tuple[int, ...]], np.ndarray]:
    """``load(columns)``: the float32 sum of ``raw[rows, c]`` over the columns (a new array)."""

    def load(columns: tuple[int, ...]) -> np.ndarray:
        out = np.array(raw[rows, columns[0]], dtype=np.float32)
        for c in columns[1:]:
            out += raw[rows, c]
        return out

    return load


def dense_raw(adata: AnnData) -> np.ndarray:
    """The ion-count matrix (``layers["raw"]``, else ``X``), checked to be a dense array."""
    where = "layers['raw']" if "raw" in adata.layers else "X"
    raw = adata.layers["raw"] if "raw" in adata.layers else adata.X
    if not isinstance(raw, np.ndarray):
        raise ItmeInputError(
            where=where,
            expected="a dense numpy array of ion counts",
            found=type(raw).__name__,
            fix="Convert it with .toarray() (CyTOF data are dense)",
        )
    return raw


def event_times(adata: AnnData, time_key: str, matrix: np.ndarray, *, fix: str) -> np.ndarray:
    """Each event's acquisition time: ``obs[time_key]``, or the channel ``time_key`` of ``matrix``.

    The channel is found by its var name or by ``var["channel"]`` (the FCS ``$PnN``); ``fix``
    ends the error when neither holds it.
    """
    if time_key in adata.obs:
        return np.asarray(adata.obs[time_key], dtype=np.float64)
    column = time_column(adata, time_key)
    if column is not None:
        return np.asarray(matrix[:, column], dtype=np.float64).ravel()
    raise ItmeInputError(
        where=f"time_key={time_key!r}",
        expected="an obs column or a channel holding each event's acquisition time",
        found=f"neither (obs columns {list(adata.obs.columns)})",
        fix=fix,
    )
