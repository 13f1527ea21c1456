"""Spillover compensation of mass-cytometry ion counts, on arrays (no AnnData, no files).

A spillover matrix ``S`` (CATALYST's layout: rows = emitting channels, columns = receiving
channels, diagonal 1) says that an event whose true counts are the row vector ``x`` is
measured as ``m = x @ S``. Two ways back:

- ``flow`` (:func:`compensate_flow`): ``x = m @ inv(S)``, as flowCore's ``compensate`` and
  CATALYST's ``compCytof(method="flow")``; small negative counts can come out.
- ``nnls`` (:func:`compensate_nnls`): per event ``min ||S.T x - m||`` with ``x >= 0``, as
  CATALYST's ``compCytof(method="nnls")`` (which calls ``nnls::nnls`` once per event).

Why written here: ``scipy.optimize.nnls`` solves one right-hand side per call (0.1-0.3 ms per
32-channel event in scripts/bench_compensation.py), hours for a cohort. All events share one
matrix, so :func:`nnls_many` solves them together with the block principal pivoting method of
Kim and Park (SIAM J Sci Comput 2011;33:3261), designed for exactly this (many right-hand
sides, one matrix): events whose free channels are as many are solved as one stack of small
systems. It stops only when every event satisfies the optimality (KKT) conditions, so its
result is the exact NNLS solution (tests compare it with ``scipy.optimize.nnls``); events it
has not settled after ``max_iter`` rounds (none in practice) are handed to
``scipy.optimize.nnls`` one by one.

:func:`spill_targets` gives the channel pairs between which mass-cytometry spillover is
physically plausible (CATALYST's default interactions: ±1 mass for detection sensitivity, the
same element's other isotopes for isotopic impurity, +16 for oxides), used by
:func:`estimate_spillover`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.optimize import nnls as _scipy_nnls

__all__ = [
    "compensate_block",
    "compensate_flow",
    "compensate_nnls",
    "estimate_spillover",
    "nnls_many",
    "spill_targets",
]

#: mass offsets of the default interactions besides same-element isotopes: M-1, M+1, M+16
MASS_OFFSETS = (-1, 1, 16)


def spill_targets(
    masses: Sequence[int], elements: Sequence[str], *, interactions: str = "default"
) -> np.ndarray:
    """Which channel may receive spillover from which (CATALYST's interactions).

    Parameters
    ----------
    masses, elements
        Per channel: the isotope mass (``144``) and element symbol (``"Nd"``).
    interactions
        ``"default"``: channel ``j`` receives from ``i`` when its mass is ``m_i - 1``,
        ``m_i + 1`` or ``m_i + 16`` (oxide), or it is another isotope of the same element;
        ``"all"``: every other channel.

    Returns
    -------
    Boolean ``(p, p)`` array, ``[i, j]`` True when ``i`` may spill into ``j`` (diagonal
    False).
    """
    m = np.asarray(masses, dtype=np.int64)
    p = m.size
    if interactions == "all":
        out = np.ones((p, p), dtype=bool)
    else:
        el = np.asarray(elements, dtype=object)
        delta = m[None, :] - m[:, None]
        out = np.isin(delta, MASS_OFFSETS) | (el[:, None] == el[None, :])
    np.fill_diagonal(out, False)
    return out


#: events compensated per call of the solver (bounds the float64 temporaries)
BLOCK_ROWS = 65536


def compensate_block(
    block: np.ndarray, columns: np.ndarray, spillover: np.ndarray, method: str
) -> np.ndarray:
    """Compensate the ``columns`` of a block of events; the other columns are copied.

    The kernel of ``pp.compensate``, in memory and on a cohort store (one call per block).

    Parameters
    ----------
    block
        Counts, events × all channels.
    columns
        The columns of ``block`` that ``spillover``'s rows and columns are, in its order.
    spillover
        ``(p, p)`` spillover matrix of those columns.
    method
        ``"flow"`` (:func:`compensate_flow`) or ``"nnls"`` (:func:`compensate_nnls`).

    Returns
    -------
    A new float32 array, the shape of ``block``.
    """
    out = np.array(block, dtype=np.float32)
    solve = compensate_flow if method == "flow" else compensate_nnls
    for start in range(0, out.shape[0], BLOCK_ROWS):
        rows = slice(start, start + BLOCK_ROWS)
        out[rows, columns] = solve(np.asarray(block[rows][:, columns], dtype=np.float64), spillover)
    return out


def compensate_flow(block: np.ndarray, spillover: np.ndarray) -> np.ndarray:
    """``block @ inv(spillover)``: compensation by the matrix inverse (flowCore).

    Parameters
    ----------
    block
        Measured counts, events × channels (the channels of ``spillover``, in its order).
    spillover
        ``(p, p)`` spillover matrix, rows emitting, columns receiving.

    Returns
    -------
    float64 array of compensated counts, the shape of ``block`` (may hold negatives).
    """
    S = np.asarray(spillover, dtype=np.float64)
    # x S = m  <=>  S.T x.T = m.T
    return np.linalg.solve(S.T, np.asarray(block, dtype=np.float64).T).T


def compensate_nnls(block: np.ndarray, spillover: np.ndarray, *, max_iter: int = 50) -> np.ndarray:
    """Non-negative least-squares compensation of every event (CATALYST ``method="nnls"``).

    Parameters
    ----------
    block
        Measured counts, events × channels (the channels of ``spillover``, in its order).
    spillover
        ``(p, p)`` spillover matrix, rows emitting, columns receiving.
    max_iter
        Rounds of block principal pivoting before the unsettled events (if any) go to
        ``scipy.optimize.nnls``.

    Returns
    -------
    float64 array, the shape of ``block``: per event ``argmin ||S.T x - m||, x >= 0``
    (never negative).
    """
    S = np.asarray(spillover, dtype=np.float64)
    B = np.asarray(block, dtype=np.float64).T
    return nnls_many(S.T, B, max_iter=max_iter).T


def nnls_many(A: np.ndarray, B: np.ndarray, *, max_iter: int = 50) -> np.ndarray:
    """Solve ``min ||A x_k - b_k||, x_k >= 0`` for every column ``b_k`` of ``B`` at once.

    Block principal pivoting (Kim & Park 2011, their algorithm for many right-hand sides):
    each column keeps a set ``G`` of variables held at zero (the others, ``F``, are free);
    ``x`` minimises ``||A x - b||`` with ``x_G = 0`` and ``y = A'A x - A'b`` is the
    gradient. A column is optimal when ``x_F >= 0`` and ``y_G >= 0`` (the KKT conditions).
    Otherwise every infeasible variable changes set (a full exchange), or only the largest
    one when full exchanges stopped reducing the number of infeasible variables (the backup
    rule that guarantees termination). The start is the zero set of a few projected-gradient
    steps (:func:`_warm_start`), close to the answer when ``A`` is near the identity.

    Each step needs, per column, the least-squares solution with ``x_G = 0``. With
    ``H = (A'A)^-1`` and ``u = H A'b`` the unconstrained solution, it is
    ``x = u - H[:, G] λ`` with ``H[G, G] λ = u_G``, and then ``y_G = -λ``: one small
    ``|G| x |G|`` system per column. Columns with the same ``|G|`` are solved as one stack.

    Parameters
    ----------
    A
        ``(q, p)`` design matrix of full column rank (``S.T`` for compensation).
    B
        ``(q, n)`` right-hand sides.
    max_iter
        Rounds before the columns not yet optimal go to ``scipy.optimize.nnls``.

    Returns
    -------
    ``(p, n)`` float64 solutions, every entry ``>= 0``.
    """
    A = np.asarray(A, dtype=np.float64)
    B = np.asarray(B, dtype=np.float64)
    p, n = A.shape[1], B.shape[1]
    X = np.zeros((p, n))
    if n == 0:
        return X
    AtA = A.T @ A
    H = np.linalg.inv(AtA)
    H = (H + H.T) / 2
    AtB = A.T @ B
    U = H @ AtB
    scale = np.maximum(np.abs(AtB).max(axis=0), 1.0)
    tol = 1e-10 * scale * max(1.0, float(np.abs(AtA).max()))
    G = _warm_start(AtA, AtB, U) <= 0
    Y = np.zeros((p, n))
    best = np.full(n, p + 1)
    backup = np.full(n, 3)
    todo = np.arange(n)
    for _ in range(max_iter):
        _solve_fixed(H, U, G, X, Y, todo)
        infeasible = ((X[:, todo] < -tol[todo]) & ~G[:, todo]) | (
            (Y[:, todo] < -tol[todo]) & G[:, todo]
        )
        n_inf = infeasible.sum(axis=0)
        done = n_inf == 0
        todo, infeasible, n_inf = todo[~done], infeasible[:, ~done], n_inf[~done]
        if todo.size == 0:
            break
        full = n_inf < best[todo]
        best[todo[full]] = n_inf[full]
        backup[todo[full]] = 3
        spare = ~full & (backup[todo] >= 1)
        backup[todo[spare]] -= 1
        exchange = infeasible.copy()
        single = ~full & ~spare  # backup rule: flip only the largest infeasible index
        if single.any():
            last = p - 1 - np.argmax(infeasible[::-1, single], axis=0)
            exchange[:, single] = False
            exchange[last, np.flatnonzero(single)] = True
        G[:, todo] ^= exchange
    else:
        for k in todo:  # not settled: the reference solver, one event at a time
            X[:, k] = _scipy_nnls(A, B[:, k])[0]
    np.maximum(X, 0.0, out=X)  # a -1e-13 from rounding is a zero
    return X


#: projected-gradient steps of the warm start
_WARM_STEPS = 12


def _warm_start(AtA: np.ndarray, AtB: np.ndarray, U: np.ndarray) -> np.ndarray:
    """Projected gradient from ``max(u, 0)``: a cheap guess of which variables end at zero.

    With step ``2 / (λmax + λmin)`` each step shrinks the error by ``(κ - 1) / (κ + 1)``; a
    spillover matrix is near the identity (``κ(A'A)`` about 1.1-1.5), so :data:`_WARM_STEPS`
    steps, one matrix product over all events each, find the zero set of almost every event
    and the exact pivoting then needs one round for most (it is exact whatever the guess).
    """
    eig = np.linalg.eigvalsh(AtA)
    step = 2.0 / (eig[-1] + eig[0])
    x = np.maximum(U, 0.0)
    for _ in range(_WARM_STEPS):
        x -= step * (AtA @ x - AtB)
        np.maximum(x, 0.0, out=x)
    return x


def _solve_fixed(
    H: np.ndarray, U: np.ndarray, G: np.ndarray, X: np.ndarray, Y: np.ndarray, cols: np.ndarray
) -> None:
    """``X[:, k]``, the least-squares solution with ``x = 0`` on ``G[:, k]``, and the gradient.

    ``x = u - H[:, G] λ`` with ``H[G, G] λ = u_G``; the gradient is 0 on the free variables
    and ``-λ`` on ``G``. Columns with the same number of fixed variables are one stacked
    solve, in blocks of :data:`_CHUNK` columns.
    """
    if cols.size == 0:
        return
    fixed = G[:, cols]
    size = fixed.sum(axis=0)
    for g in np.unique(size):
        members = cols[size == g]
        if g == 0:
            X[:, members] = U[:, members]
            Y[:, members] = 0.0
            continue
        for start in range(0, members.size, _CHUNK):
            ks = members[start : start + _CHUNK]
            idx = np.nonzero(G[:, ks].T)[1].reshape(ks.size, g)  # fixed variables per column
            Hgg = H[idx[:, :, None], idx[:, None, :]]
            lam = np.linalg.solve(Hgg, U[idx, ks[:, None]][:, :, None])[:, :, 0]
            # H is symmetric: H[:, G] λ is λ' H[G, :], a gather of whole rows
            x = U[:, ks].T - np.einsum("kg,kgp->kp", lam, H[idx])
            rows = np.repeat(np.arange(ks.size), g)
            x[rows, idx.ravel()] = 0.0
            y = np.zeros_like(x)
            y[rows, idx.ravel()] = -lam.ravel()
            X[:, ks] = x.T
            Y[:, ks] = y.T


#: columns per stacked solve (bounds the ``_CHUNK x p x |G|`` gather of ``H``)
_CHUNK = 8192


def estimate_spillover(
    values: np.ndarray,
    population: np.ndarray,
    stained: np.ndarray,
    targets: np.ndarray,
    *,
    method: str = "default",
    trim: float = 0.5,
    threshold: float = 1e-5,
) -> tuple[np.ndarray, np.ndarray]:
    """Spillover matrix from single-stained populations (CATALYST's ``computeSpillmat``).

    For the population stained in channel ``i`` (events ``pos``) and each channel ``j`` that
    ``targets[i, j]`` allows, with ``bg_c`` the background of channel ``c`` (the median of
    ``c`` over the populations neither stained in ``c`` nor able to spill into it; zero when
    there are none):

    - ``"default"``: the trimmed mean (``trim=0.5``: the median) over ``pos`` of
      ``(y_j - bg_j) / (y_i - bg_i)``;
    - ``"classic"``: ``T(y_j - bg_j) / T(y_i - bg_i)`` over ``pos``, ``T`` the trimmed
      mean (a line through the origin and the population's centre).

    Negative estimates and estimates below ``threshold`` become 0.

    Parameters
    ----------
    values
        Raw counts, events × channels.
    population
        Per event, the column index of its stained channel, or -1 (unassigned).
    stained
        Column indices of the stained channels (populations) to estimate rows for.
    targets
        ``(p, p)`` boolean matrix of :func:`spill_targets` over all columns.
    method
        ``"default"`` or ``"classic"``.
    trim
        Fraction trimmed from each end in ``[0, 0.5]`` (0.5 = median).
    threshold
        Estimates below this are set to 0.

    Returns
    -------
    spill
        ``(p, p)`` float64 matrix, identity outside the rows of ``stained``.
    n_events
        Events of each population of ``stained``.
    """
    values = np.asarray(values, dtype=np.float64)
    p = values.shape[1]
    spill = np.eye(p)
    n_events = np.zeros(len(stained), dtype=np.int64)
    bg = _backgrounds(values, population, targets)
    for r, i in enumerate(stained):
        pos = population == i
        n_events[r] = int(pos.sum())
        if not n_events[r]:
            continue
        yi = values[pos, i] - bg[i]
        centre_i = _centre(yi[:, None], trim)[0]
        for j in np.flatnonzero(targets[i]):
            yj = values[pos, j] - bg[j]
            if method == "classic":
                s = _centre(yj[:, None], trim)[0] / centre_i if centre_i > 0 else 0.0
            else:
                ok = yi > 0
                s = _centre((yj[ok] / yi[ok])[:, None], trim)[0] if ok.any() else 0.0
            spill[i, j] = s if np.isfinite(s) and s >= threshold else 0.0
    return spill, n_events


def _backgrounds(values: np.ndarray, population: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Per channel ``c``: the median over the populations neither stained in ``c`` nor spilling into it.

    Zero when every assigned population is stained in ``c`` or may spill into it.
    """
    p = values.shape[1]
    out = np.zeros(p)
    assigned = population >= 0
    for c in range(p):
        related = np.flatnonzero(targets[:, c]).tolist() + [c]
        rows = assigned & ~np.isin(population, related)
        if rows.any():
            out[c] = float(np.median(values[rows, c]))
    return out


def _centre(values: np.ndarray, trim: float) -> np.ndarray:
    """Column-wise trimmed mean (``trim = 0.5``: the median)."""
    if trim >= 0.5:
        return np.median(values, axis=0)
    from scipy.stats import trim_mean

    return np.asarray(trim_mean(values, trim, axis=0))
