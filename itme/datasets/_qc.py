"""Plant CyTOF artefacts (beads, doublets, debris, dead and CD45- events) into raw ion counts.

Used by the tests of :func:`itme.pp.clean` and by the demo-cohort simulator. Every planted
event carries a truth label, so a cleaning method can be scored per class.

The numbers below are modelled on what these events look like on a Helios, on the arcsinh
(cofactor 5) scale: EQ four-element beads are very bright in Ce140, Eu151, Eu153, Ho165 and
Lu175 and carry no DNA; doublets are the sum of two cells (twice the DNA, about 1.7 times the
event length) with a larger Gaussian-fit residual and width; debris carries a few percent of a
cell's ion counts and little DNA; dead cells take up cisplatin 20-200 times more than live
ones; CD45- events (plasma cells, erythroid precursors) sit at background in CD45. The
single-cell spreads (DNA SD about 0.35 and event length SD about 0.25 on the arcsinh scale)
are close to what the Bodenmiller 2012 PBMC files show. The Gaussian-parameter values are
plausible magnitudes, not measurements: no public file with them was at hand.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from itme.core.clean.channels import ROLES
from itme.core.clean.steps import KEPT, QC_LABELS, STEPS
from itme.errors import ItmeParameterError

__all__ = ["QC_CLASSES", "plant_qc_events", "simulate_good_cells"]

#: the truth labels: the labels of :func:`itme.pp.clean` (kept, then the steps in order)
QC_CLASSES = QC_LABELS

#: roles simulated: all but those gated only with a user threshold (beadDist)
_ROLES = tuple(r for r in ROLES if not any(r in s.manual for s in STEPS))
#: the role a class needs to be planted: its step's primary (first) role
_NEEDS = {s.name: s.roles[0][0] for s in STEPS}
# share of each Ir isotope in total iridium signal (natural abundance: 191Ir 37.3 %, 193Ir 62.7 %)
_IR_SHARE = np.array([0.373, 0.627])


def plant_qc_events(
    raw: np.ndarray,
    *,
    channels: Mapping[str, int | Sequence[int]],
    fractions: Mapping[str, float],
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Return a copy of ``raw`` with QC channels filled in and artefacts planted, plus truth labels.

    Parameters
    ----------
    raw
        Float array, events x channels, of raw ion counts of good cells (live, CD45+
        singlets). Its marker channels are kept for the rows that stay cells.
    channels
        Column indices of the technical roles, each an int or a list of ints:
        ``dna`` (Ir191, Ir193), ``cisplatin`` (Pt194, Pt195, ...), ``bead`` (Ce140 first, then
        the bead lanthanides Eu151, Eu153, Ho165, Lu175, which may carry antibodies),
        ``event_length``, ``center``, ``offset``, ``width``, ``residual`` (Helios Gaussian
        parameters) and ``cd45``. Roles left out are not simulated; a class whose role is
        missing (e.g. ``dead`` without ``cisplatin``) is an error.
    fractions
        Fraction of all rows to turn into each class: keys among the step names (``bead``,
        ``debris``, ``doublet``, ``dead``, ``cd45_negative``); the rest stay ``kept``.
    rng
        A :class:`numpy.random.Generator`.

    Returns
    -------
    values
        New float32 array, same shape as ``raw``. For every row the DNA, cisplatin,
        event-length and Gaussian-parameter channels and the first bead channel (Ce140) are
        overwritten with simulated values; planted rows are replaced as described in the
        module docstring.
    truth
        String array (one label per row) from :data:`QC_CLASSES`.
    """
    raw = np.asarray(raw)
    if raw.ndim != 2:
        raise ItmeParameterError("raw", "a 2-D array (events x channels)", f"shape {raw.shape}")
    n, p = raw.shape
    roles = _normalise_channels(channels, p)
    unknown = set(fractions) - set(_NEEDS)
    if unknown:
        raise ItmeParameterError("fractions", f"keys among {sorted(_NEEDS)}", sorted(unknown))
    for cls, frac in fractions.items():
        if not 0 <= frac < 1:
            raise ItmeParameterError(f"fractions[{cls!r}]", "a number in [0, 1)", frac)
        if frac > 0 and _NEEDS[cls] not in roles:
            raise ItmeParameterError(
                "channels", f"the role(s) {[_NEEDS[cls]]} to plant {cls!r}", sorted(roles)
            )
    if sum(fractions.values()) >= 1:
        raise ItmeParameterError(
            "fractions", "values summing to less than 1", sum(fractions.values())
        )

    out = raw.astype(np.float32, copy=True)
    truth = np.full(n, KEPT, dtype=object)
    _fill_singlet_qc(out, np.arange(n), roles, rng)

    # choose disjoint rows for each class
    order = rng.permutation(n)
    start = 0
    planted: dict[str, np.ndarray] = {}
    for cls in QC_CLASSES[1:]:
        m = int(round(fractions.get(cls, 0.0) * n))
        planted[cls] = np.sort(order[start : start + m])
        truth[planted[cls]] = cls
        start += m
    good = np.sort(order[start:])

    for cls, plant in _PLANTERS.items():
        if planted[cls].size:
            plant(out, planted[cls], good, roles, rng)
    return out, truth.astype(str)


def simulate_good_cells(
    n: int, n_channels: int, *, cd45: int | None, rng: np.random.Generator
) -> np.ndarray:
    """Raw counts of good cells for tests: each marker a negative/positive log-normal mixture.

    Parameters
    ----------
    n
        Events.
    n_channels
        Channels; each gets 0-60 % positive cells (background counts for the others).
    cd45
        Column that gets a CD45+ profile (80 % bright, median 300 counts; 20 % dim, median
        60 counts, as myeloid cells are); ``None`` for none.
    rng
        A :class:`numpy.random.Generator`.

    Returns
    -------
    Float32 array, events x channels.
    """
    out = np.empty((n, n_channels), dtype=np.float32)
    for j in range(n_channels):
        pos = rng.random(n) < rng.uniform(0.0, 0.6)
        level = np.where(pos, rng.lognormal(np.log(rng.uniform(50, 800)), 0.5, n), 0.0)
        out[:, j] = level + _background(rng, n)
    if cd45 is not None:
        dim = rng.random(n) < 0.2
        out[:, cd45] = np.where(
            dim, rng.lognormal(np.log(60), 0.4, n), rng.lognormal(np.log(300), 0.45, n)
        )
    return out


def _normalise_channels(channels: Mapping[str, int | Sequence[int]], p: int) -> dict:
    roles: dict[str, np.ndarray] = {}
    for role, idx in channels.items():
        if role not in _ROLES:
            raise ItmeParameterError("channels", f"roles among {list(_ROLES)}", role)
        arr = np.atleast_1d(np.asarray(idx, dtype=np.intp))
        if arr.size == 0:
            continue
        if arr.min() < 0 or arr.max() >= p:
            raise ItmeParameterError(
                f"channels[{role!r}]", f"column indices in 0..{p - 1}", arr.tolist()
            )
        roles[role] = arr
    return roles


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Background counts of an empty channel: mostly zero, occasionally a few ions."""
    return (rng.poisson(0.5, size) * rng.uniform(0.5, 1.5, size)).astype(np.float32)


def _lognormal(rng: np.random.Generator, median: float, sd: float, size: int) -> np.ndarray:
    return rng.lognormal(np.log(median), sd, size).astype(np.float32)


def _split_dna(total: np.ndarray, n_dna: int, rng: np.random.Generator) -> np.ndarray:
    """Split total iridium signal over the DNA channels (Ir191/Ir193 shares), with counting noise."""
    shares = _IR_SHARE if n_dna == 2 else np.full(n_dna, 1.0 / n_dna)
    parts = total[:, None] * shares[None, :]
    return (parts * rng.lognormal(0.0, 0.08, parts.shape)).astype(np.float32)


def _fill_singlet_qc(
    out: np.ndarray, rows: np.ndarray, roles: dict, rng: np.random.Generator
) -> None:
    m = rows.size
    if "dna" in roles:
        total = _lognormal(rng, 550.0, 0.35, m)
        out[np.ix_(rows, roles["dna"])] = _split_dna(total, roles["dna"].size, rng)
    if "cisplatin" in roles:
        live = _lognormal(rng, 3.0, 0.6, m)
        for c in roles["cisplatin"]:
            out[rows, c] = live / roles["cisplatin"].size + _background(rng, m)
    if "bead" in roles:
        out[rows, roles["bead"][0]] = _background(rng, m)
    if "event_length" in roles:
        length = np.clip(np.round(_lognormal(rng, 28.0, 0.22, m)), 10, 75)
        out[rows, roles["event_length"][0]] = length
    for role, median in (("center", 400.0), ("offset", 40.0), ("width", 30.0), ("residual", 25.0)):
        if role in roles:
            out[rows, roles[role][0]] = _lognormal(rng, median, 0.3, m)


def _plant_doublets(
    out: np.ndarray, rows: np.ndarray, good: np.ndarray, roles: dict, rng: np.random.Generator
) -> None:
    """A doublet is the sum of two good cells; QC channels of a doublet replaced as documented."""
    m = rows.size
    a = rng.choice(good, m)
    b = rng.choice(good, m)
    marker_cols = _marker_columns(roles, out.shape[1])
    out[np.ix_(rows, marker_cols)] = out[np.ix_(a, marker_cols)] + out[np.ix_(b, marker_cols)]
    for role in ("dna", "cisplatin"):
        if role in roles:
            cols = roles[role]
            out[np.ix_(rows, cols)] = out[np.ix_(a, cols)] + out[np.ix_(b, cols)]
    if "event_length" in roles:
        c = roles["event_length"][0]
        la, lb = out[a, c], out[b, c]
        out[rows, c] = np.clip(np.maximum(la, lb) + 0.7 * np.minimum(la, lb), 10, 75)
    for role, median, sd in (
        ("center", 560.0, 0.3),
        ("offset", 90.0, 0.3),
        ("width", 55.0, 0.25),
        ("residual", 160.0, 0.35),
    ):
        if role in roles:
            out[rows, roles[role][0]] = _lognormal(rng, median, sd, m)


def _plant_debris(
    out: np.ndarray, rows: np.ndarray, good: np.ndarray, roles: dict, rng: np.random.Generator
) -> None:
    """Cell fragments: 1-12 % of a cell's ion counts, little DNA, short events."""
    m = rows.size
    marker_cols = _marker_columns(roles, out.shape[1])
    scale = rng.uniform(0.01, 0.12, m).astype(np.float32)
    out[np.ix_(rows, marker_cols)] *= scale[:, None]
    total = _lognormal(rng, 25.0, 0.8, m)
    out[np.ix_(rows, roles["dna"])] = _split_dna(total, roles["dna"].size, rng)
    if "event_length" in roles:
        length = np.clip(np.round(_lognormal(rng, 14.0, 0.25, m)), 10, 75)
        out[rows, roles["event_length"][0]] = length
    if "center" in roles:
        out[rows, roles["center"][0]] = _lognormal(rng, 60.0, 0.6, m)


def _plant_dead(
    out: np.ndarray, rows: np.ndarray, good: np.ndarray, roles: dict, rng: np.random.Generator
) -> None:
    """Dead cells: 20-200 fold cisplatin, slightly lower marker and DNA signal."""
    m = rows.size
    marker_cols = _marker_columns(roles, out.shape[1])
    out[np.ix_(rows, marker_cols)] *= rng.uniform(0.5, 1.0, m).astype(np.float32)[:, None]
    dead = (3.0 * np.exp(rng.uniform(np.log(20), np.log(200), m))).astype(np.float32)
    for c in roles["cisplatin"]:
        out[rows, c] = dead / roles["cisplatin"].size * rng.lognormal(0.0, 0.1, m)


def _plant_beads(
    out: np.ndarray, rows: np.ndarray, good: np.ndarray, roles: dict, rng: np.random.Generator
) -> None:
    """EQ four-element beads: bright in every bead channel, background elsewhere, no DNA."""
    m = rows.size
    for j in range(out.shape[1]):
        out[rows, j] = _background(rng, m)
    for c in roles["bead"]:
        out[rows, c] = _lognormal(rng, 2000.0, 0.3, m)
    if "event_length" in roles:
        out[rows, roles["event_length"][0]] = np.clip(
            np.round(_lognormal(rng, 22.0, 0.15, m)), 10, 75
        )
    for role, median in (("center", 900.0), ("offset", 40.0), ("width", 25.0), ("residual", 25.0)):
        if role in roles:
            out[rows, roles[role][0]] = _lognormal(rng, median, 0.3, m)


def _plant_cd45_negative(
    out: np.ndarray, rows: np.ndarray, good: np.ndarray, roles: dict, rng: np.random.Generator
) -> None:
    """CD45- events (plasma cells, erythroid precursors): background counts in CD45."""
    for c in roles["cd45"]:
        out[rows, c] = _background(rng, rows.size)


#: how each class is planted, in the order they are planted (the order of the random
#: stream: doublets first, from good cells; beads last, overwriting every channel)
_PLANTERS = {
    "doublet": _plant_doublets,
    "debris": _plant_debris,
    "dead": _plant_dead,
    "cd45_negative": _plant_cd45_negative,
    "bead": _plant_beads,
}


def _marker_columns(roles: dict, n_channels: int) -> np.ndarray:
    """Columns that are not QC channels (the first bead channel counts as QC, its partners not)."""
    cols = [
        roles[r]
        for r in ("dna", "cisplatin", "event_length", "center", "offset", "width", "residual")
        if r in roles
    ]
    if "bead" in roles:
        cols.append(roles["bead"][:1])
    qc = np.unique(np.concatenate(cols)) if cols else np.array([], dtype=np.intp)
    return np.setdiff1d(np.arange(n_channels), qc)
