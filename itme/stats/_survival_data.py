"""Survival data of the patients: one row per patient, Kaplan–Meier curves, option checks.

The plumbing of :mod:`itme.stats._survival` (the public survival statistics). The figure
(:func:`itme.pl.kaplan_meier`) does not fit anything: it draws what
:func:`itme.stats.kaplan_meier` stored in ``uns``. lifelines is imported inside the functions.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from itme._adata import fmt_ids, group_labels, obs_columns, one_row_per_patient
from itme.core.stats.survival import CONF_TYPES, confidence_band, greenwood_sigma
from itme.errors import ItmeExclusionWarning, ItmeInputError, ItmeParameterError

__all__ = [
    "check_conf",
    "km_curve",
    "overall_logrank",
    "survival_frame",
    "survival_groups",
]


def survival_frame(
    data: Any,
    *,
    endpoint: str,
    groupby: str | None = None,
    groups: Sequence[str] | None = None,
    covariates: Sequence[str] = (),
    what: str = "survival",
) -> pd.DataFrame:
    """One row per patient: ``duration``, ``event``, ``group`` (if asked) and covariates.

    Shared by :func:`kaplan_meier`, :func:`logrank_test` and :func:`cox_ph`; every column
    comes from ``obs`` (or the DataFrame). The samples of a patient must agree on every
    column. Bad times or events are errors naming the patients; patients with a missing
    value are excluded and named (ItmeExclusionWarning).
    """
    time_col, event_col = f"{endpoint}_months", f"{endpoint}_event"
    per_patient = [*([groupby] if groupby else []), *covariates]
    frame = one_row_per_patient(
        obs_columns(
            data, [time_col, event_col, *per_patient], param="endpoint, groupby or covariates"
        ),
        [time_col, event_col, *per_patient],
        what=what,
        fix="Keep one sample per patient for survival analyses.",
    )
    duration = pd.to_numeric(frame[time_col], errors="coerce")
    bad = frame.index[frame[time_col].notna() & (duration.isna() | (duration < 0))]
    if len(bad):
        raise ItmeInputError(
            where=f"column {time_col}",
            expected="non-negative numbers",
            found=f"{fmt_ids([f'{p}: {frame.loc[p, time_col]}' for p in bad])}",
        )
    event = pd.to_numeric(frame[event_col], errors="coerce")
    bad = frame.index[frame[event_col].notna() & ~event.isin([0, 1])]
    if len(bad):
        raise ItmeInputError(
            where=f"column {event_col}",
            expected="1 (event) or 0 (censored)",
            found=f"{fmt_ids([f'{p}: {frame.loc[p, event_col]}' for p in bad])}",
        )
    out = pd.DataFrame({"duration": duration.astype(float), "event": event}, index=frame.index)
    for c in covariates:
        out[c] = frame[c]
    incomplete = out.index[out.isna().any(axis=1)]
    if len(incomplete):
        reasons = [
            f"{p} ({', '.join(c for c in out.columns if pd.isna(out.loc[p, c]))})"
            for p in incomplete
        ]
        warnings.warn(
            ItmeExclusionWarning.listing(
                f"{what}: {len(incomplete)} patient(s) with missing values excluded", reasons
            ),
            stacklevel=3,
        )
        out = out.drop(index=incomplete)
    out["event"] = out["event"].astype(int)
    if groupby:
        labels = group_labels(frame.loc[out.index], groupby, groups=groups, min_size=1, what=what)
        out = out.loc[labels.index]
        out["group"] = labels
    if len(out) == 0:
        raise ItmeInputError(where=what, expected="patients with survival data", found="none")
    return out


def km_curve(
    duration: np.ndarray, event: np.ndarray, *, conf_type: str = "log", conf_level: float = 0.95
) -> pd.DataFrame:
    """Kaplan–Meier curve (lifelines) with R-style confidence band, one row per distinct time."""
    from lifelines import KaplanMeierFitter

    kmf = KaplanMeierFitter().fit(duration, event_observed=event)
    et = kmf.event_table
    times = et.index.to_numpy(dtype=float)
    surv = kmf.survival_function_.reindex(et.index).iloc[:, 0].to_numpy(dtype=float)
    n_risk, n_event = et["at_risk"].to_numpy(), et["observed"].to_numpy()
    sigma = greenwood_sigma(n_risk, n_event)
    lower, upper = confidence_band(surv, sigma, conf_type=conf_type, level=conf_level)
    return pd.DataFrame(
        {
            "time": times,
            "n_risk": n_risk,
            "n_event": n_event,
            "n_censor": et["censored"].to_numpy(),
            "surv": surv,
            "lower": lower,
            "upper": upper,
        }
    )


def survival_groups(frame: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """``(name, rows)`` per group of a :func:`survival_frame`, or ``[("all", frame)]``."""
    if "group" not in frame.columns:
        return [("all", frame)]
    return [(str(g), frame[frame["group"] == g]) for g in frame["group"].cat.categories]


def overall_logrank(frame: pd.DataFrame) -> tuple[float, int, float]:
    """k-group log-rank test (lifelines) of a :func:`survival_frame`: chi-square, df, p."""
    from lifelines.statistics import multivariate_logrank_test

    res = multivariate_logrank_test(
        frame["duration"], frame["group"].astype(str).to_numpy(), frame["event"]
    )
    return float(res.test_statistic), int(res.degrees_of_freedom), float(res.p_value)


def check_conf(conf_level: float, conf_type: str = "log") -> None:
    """Validate a confidence level and a band type (:data:`~itme.core.stats.survival.CONF_TYPES`)."""
    if conf_type not in CONF_TYPES:
        raise ItmeParameterError("conf_type", CONF_TYPES, conf_type)
    if not 0 < conf_level < 1:
        raise ItmeParameterError("conf_level", "a number between 0 and 1", conf_level)
