"""Exact per-group medians by distributed selection: a few histogram passes over the events.

The median of ``n`` values needs the order statistics of rank ``(n - 1) // 2`` and
``n // 2``. Each value is mapped to an order-preserving unsigned key (its float bits with the
sign bit set, or all bits flipped for negative values; -0.0 counted as +0.0), so ordering the
keys orders the values. The key is then found digit by digit, from the highest:

1. the first pass counts, for every (group, column), the values (NaN left out) in each bin of
   the key's top digit; the bins' running totals give the digit of both target ranks, and
   their rank among the values of that digit;
2. every later pass counts, for each target whose higher digits (its prefix) are known, the
   values whose key starts with that prefix, in the bins of the next digit (the two targets
   of a (group, column) share one histogram while their prefixes agree);
3. after the last digit the key, hence the exact value, of each target is known.

Each pass is a sum of per-block histograms (:func:`histogram_block`, one call per block of
events, in any order and on any worker); :class:`GroupSelection` holds the state between
passes on the client (a few arrays of groups × columns). The histograms say how many values
share each target's known prefix: when those keys fit in a caller's budget
(:meth:`GroupSelection.collects`) while more than one histogram pass is left, one last pass
collects them instead (:func:`candidates_block`, the keys of each block grouped by target;
:meth:`GroupSelection.take`) and the client picks each target's rank among them: e.g. 2
passes instead of 3 or 4 when the values in the bins of the first digit fit. The result is
:func:`itme.core.cluster.codebook.group_medians` bit for bit (float64 ``np.median`` of the
values: the middle value, or ``(a + b) / 2`` of the two middle ones; NaN when the group's
column holds a NaN; NaN rows for empty groups), except that a median of zero is always +0.0
where numpy may return -0.0.

Digit widths: 11/11/10 bits (3 passes) for float32 when histograms of 2,048 bins per
(group, column) stays within :data:`RESULT_BYTES`, else 8/8/8/8 (4 passes, 256 bins); float64
values take 64-bit keys (6 or 8 passes). Other dtypes are selected as float64, as
``group_medians`` computes on them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

__all__ = [
    "GroupSelection",
    "SelectionStep",
    "candidates_block",
    "cross_counts",
    "digit_widths",
    "group_counts",
    "histogram_block",
    "regroup_histogram",
    "select_medians",
    "value_dtype",
]

#: largest histogram one block returns (bytes): groups × columns × bins × 4
RESULT_BYTES = 16 * 2**20

#: events handled at once by :func:`group_counts` and :func:`regroup_histogram` (their
#: temporary copies as intp: 8 bytes an event, 32 MB a part, not 0.8 GB at 10^8 events)
PART_EVENTS = 1 << 22

#: digit widths from the highest, per key size (bits): few passes with wide digits, or
#: small histograms with narrow ones
WIDE = {32: (11, 11, 10), 64: (11, 11, 11, 11, 10, 10)}
NARROW = {32: (8, 8, 8, 8), 64: (8,) * 8}

_KEY = {32: np.uint32, 64: np.uint64}
_FLOAT = {32: np.float32, 64: np.float64}
_INF = {32: 0x7F800000, 64: 0x7FF0000000000000}


def value_dtype(dtype: np.dtype) -> np.dtype:
    """The float dtype the values are selected in: float32 stays, everything else float64.

    Parameters
    ----------
    dtype
        dtype of the matrix.

    Returns
    -------
    numpy.dtype
        ``float32`` or ``float64``.
    """
    return np.dtype(np.float32) if np.dtype(dtype) == np.float32 else np.dtype(np.float64)


def digit_widths(n_bits: int, n_cells: int, *, result_bytes: int | None = None) -> tuple[int, ...]:
    """Digit widths from the highest, for keys of ``n_bits`` and ``n_cells`` histograms.

    Parameters
    ----------
    n_bits
        Bits of a key (32 or 64).
    n_cells
        Histograms per pass (groups × columns).
    result_bytes
        Largest histogram array of one block (4-byte counts); default :data:`RESULT_BYTES`.

    Returns
    -------
    tuple of int
        Widths summing to ``n_bits``: :data:`WIDE` when ``n_cells`` histograms of its widest
        digit fit in ``result_bytes``, else :data:`NARROW`.
    """
    wide = WIDE[n_bits]
    result_bytes = RESULT_BYTES if result_bytes is None else result_bytes
    return wide if n_cells * 2 ** max(wide) * 4 <= result_bytes else NARROW[n_bits]


@dataclass(frozen=True)
class SelectionStep:
    """One pass: which (group, column, target) cells count which values, into which bins.

    Attributes
    ----------
    cell
        int64 ``(n_groups, n_columns, n_targets)``: the histogram row of each target
        (``-1``: not counted in this pass).
    prefix
        uint64 ``(n_rows,)``: the known higher digits of each row's keys (unused on the first
        pass).
    first
        Whether this is the first pass (no prefix).
    shift, width
        The digit counted: ``(key >> shift) & (2**width - 1)``.
    n_bits
        Bits of a key (32: float32 values, 64: float64).
    n_rows
        Rows of the histogram.
    count_dtype
        dtype of the counts (uint32, or uint64 for 2**32 events or more).
    collect
        A collecting pass: the keys whose bits above ``width`` (all the remaining bits,
        ``shift`` 0) are a row's prefix are returned (:func:`candidates_block`), not counted.
    """

    cell: np.ndarray
    prefix: np.ndarray
    first: bool
    shift: int
    width: int
    n_bits: int
    n_rows: int
    count_dtype: np.dtype
    collect: bool = False

    @property
    def n_bins(self) -> int:
        """Bins of the histogram (``2**width``)."""
        return 1 << self.width


def histogram_block(
    X: np.ndarray, labels: np.ndarray, columns: np.ndarray, step: SelectionStep
) -> np.ndarray:
    """The histogram of one block of events for one pass of :class:`GroupSelection`.

    Parameters
    ----------
    X
        A block of events × channels (any rows: the histograms of all blocks are summed).
    labels
        Integer group of each event of the block (negative or ``>= n_groups``: left out).
    columns
        Column positions of ``X`` to summarise.
    step
        The pass (:meth:`GroupSelection.step`).

    Returns
    -------
    numpy.ndarray
        ``(step.n_rows, step.n_bins)`` counts of ``step.count_dtype``.
    """
    from itme.core.cluster._select_jit import histogram

    out = np.zeros((step.n_rows, step.n_bins), dtype=step.count_dtype)
    bits, args, consts = _kernel_args(X, labels, columns, step)
    histogram(bits, *args, step.first, np.uint64(step.shift), np.uint64(step.width), *consts, out)
    return out


def candidates_block(
    X: np.ndarray, labels: np.ndarray, columns: np.ndarray, step: SelectionStep
) -> tuple[np.ndarray, np.ndarray]:
    """The keys of one block of events for a collecting pass (``step.collect``).

    Parameters
    ----------
    X, labels, columns
        As :func:`histogram_block`.
    step
        The collecting pass (:meth:`GroupSelection.step` with ``collect=True``).

    Returns
    -------
    counts : numpy.ndarray
        int64 ``(step.n_rows,)``: keys of each row in this block.
    keys : numpy.ndarray
        uint32 (float32 values) or uint64 keys whose higher bits are their row's prefix,
        grouped by row (row 0's first).
    """
    from itme.core.cluster._select_jit import candidates

    bits, args, consts = _kernel_args(X, labels, columns, step)
    counts = np.zeros(step.n_rows, dtype=np.int64)
    high = np.uint64(step.width)
    candidates(bits, *args, high, *consts, counts, np.zeros(0, dtype=bits.dtype))
    keys = np.empty(int(counts.sum()), dtype=bits.dtype)
    candidates(bits, *args, high, *consts, counts, keys)
    return counts, keys


def _kernel_args(
    X: np.ndarray, labels: np.ndarray, columns: np.ndarray, step: SelectionStep
) -> tuple[np.ndarray, tuple[np.ndarray, ...], tuple[np.uint64, ...]]:
    """The raw bits of a block and the other arguments of the kernels."""
    values = np.asarray(X, dtype=_FLOAT[step.n_bits])
    if not values.flags.c_contiguous:
        values = np.ascontiguousarray(values)
    sign = np.uint64(1) << np.uint64(step.n_bits - 1)
    args = (
        np.asarray(columns, dtype=np.intp),
        np.asarray(labels, dtype=np.intp),
        np.ascontiguousarray(step.cell, dtype=np.int64),
        np.ascontiguousarray(step.prefix, dtype=np.uint64),
    )
    consts = (sign, (sign - np.uint64(1)) | sign, np.uint64(_INF[step.n_bits]))
    return values.view(_KEY[step.n_bits]), args, consts


class GroupSelection:
    """The state of an exact per-group median selection between histogram passes.

    Use: ``while not sel.done: sel.update(sum of histogram_block(block, ..., sel.step()))``,
    then :meth:`medians`.

    Parameters
    ----------
    counts
        Events of each group (labels in ``0 .. n_groups - 1``).
    n_columns
        Columns summarised.
    dtype
        dtype of the matrix (float32 keeps 32-bit keys; anything else is selected as float64).
    widths
        Digit widths from the highest (default :func:`digit_widths`).
    """

    def __init__(
        self,
        counts: np.ndarray,
        n_columns: int,
        dtype: np.dtype,
        *,
        widths: tuple[int, ...] | None = None,
    ) -> None:
        counts = np.asarray(counts, dtype=np.int64)
        self.n_groups, self.n_columns = counts.size, int(n_columns)
        self.n_bits = 8 * value_dtype(dtype).itemsize
        self.widths = widths or digit_widths(self.n_bits, self.n_groups * self.n_columns)
        if sum(self.widths) != self.n_bits:
            raise ValueError(f"digit widths {self.widths} do not sum to {self.n_bits} bits")
        self.counts = counts
        self.count_dtype = np.dtype(np.uint32 if counts.sum() < 2**32 else np.uint64)
        shape = (self.n_groups, self.n_columns, 2)
        self.rank = np.zeros(shape, dtype=np.int64)  # rank left within the known prefix
        self.prefix = np.zeros(shape, dtype=np.uint64)
        self.valid = np.zeros(shape, dtype=bool)  # a value to find (no NaN, events)
        self.inside = np.zeros(shape, dtype=np.int64)  # values with the known prefix
        self.nan = np.zeros((self.n_groups, self.n_columns), dtype=bool)
        self.passes = 0  # passes done
        self._rows: np.ndarray | None = None  # histogram row of each target in this pass
        if self.n_groups * self.n_columns == 0 or not counts.any():
            self.passes = len(self.widths)

    @property
    def done(self) -> bool:
        """Whether every target's key is known (no pass left)."""
        return self.passes >= len(self.widths)

    def _shift(self) -> int:
        return self.n_bits - sum(self.widths[: self.passes + 1])

    def _own(self) -> np.ndarray:
        """Targets with a row of their own (the second shares the first's while they agree)."""
        own = self.valid.copy()
        own[..., 1] &= ~(self.valid[..., 0] & (self.prefix[..., 1] == self.prefix[..., 0]))
        return own

    def collects(self, max_bytes: int) -> bool:
        """Whether the next pass should collect the keys (:func:`candidates_block`).

        Parameters
        ----------
        max_bytes
            Largest size of the keys collected (all blocks together).

        Returns
        -------
        bool
            ``True`` after the first pass when more than one histogram pass is left and the
            values sharing the targets' known prefixes take at most ``max_bytes`` as keys.
        """
        if self.passes == 0 or len(self.widths) - self.passes < 2:
            return False
        return int(self.inside[self._own()].sum()) * self.n_bits // 8 <= max_bytes

    def step(self, *, collect: bool = False) -> SelectionStep:
        """The next pass.

        Parameters
        ----------
        collect
            A collecting pass (after the first): every remaining bit at once, the keys
            returned by :func:`candidates_block` and passed to :meth:`take`.

        Returns
        -------
        SelectionStep
            What :func:`histogram_block` counts (or :func:`candidates_block` collects) in
            this pass.
        """
        width, shift = self.widths[self.passes], self._shift()
        if collect:
            if self.passes == 0:
                raise RuntimeError("the first pass counts: no prefix is known yet")
            width, shift = self.n_bits - sum(self.widths[: self.passes]), 0
        if self.passes == 0:
            cell = np.arange(self.n_groups * self.n_columns, dtype=np.int64)
            cell = cell.reshape(self.n_groups, self.n_columns, 1)
            prefix = np.zeros(0, dtype=np.uint64)
        else:
            own = self._own()
            rows = np.full(self.valid.shape, -1, dtype=np.int64)
            rows[own] = np.arange(int(own.sum()))
            cell = rows.copy()
            shared = self.valid[..., 1] & ~own[..., 1]
            rows[..., 1] = np.where(shared, rows[..., 0], rows[..., 1])
            self._rows = rows
            prefix = self.prefix[own]
        return SelectionStep(
            cell=cell,
            prefix=prefix,
            first=self.passes == 0,
            shift=shift,
            width=width,
            n_bits=self.n_bits,
            n_rows=int(cell.max(initial=-1)) + 1,
            count_dtype=self.count_dtype,
            collect=collect,
        )

    def take(self, parts: Iterable[tuple[np.ndarray, np.ndarray]]) -> None:
        """Take the keys of a collecting pass and find every target's among them.

        Parameters
        ----------
        parts
            :func:`candidates_block` of every block of events, in any order (each is copied
            into place and may be dropped at once: the client holds the keys once).
        """
        rows = self._rows
        own = self._own()
        n_rows = int(own.sum())
        total = np.zeros(n_rows, dtype=np.int64)
        total[rows[own]] = self.inside[own]  # known from the last histogram
        end = np.cumsum(total)
        fill = end - total
        keys = np.empty(int(end[-1]) if n_rows else 0, dtype=_KEY[self.n_bits])
        for counts, part in parts:
            counts = np.asarray(counts, dtype=np.int64)
            if (fill + counts > end).any():
                raise RuntimeError("more keys than the histogram counted: blocks changed")
            row = np.repeat(np.arange(n_rows), counts)
            first = np.cumsum(counts) - counts  # of each row in ``part``
            keys[fill[row] + np.arange(row.size) - first[row]] = part
            fill += counts
        if (fill != end).any():
            raise RuntimeError("fewer keys than the histogram counted: blocks missing")
        for t in np.flatnonzero(self.valid):
            r, rank = rows.reshape(-1)[t], int(self.rank.reshape(-1)[t])
            segment = keys[end[r] - total[r] : end[r]]
            self.prefix.reshape(-1)[t] = np.partition(segment, rank)[rank]
        self.passes = len(self.widths)

    def update(self, hist: np.ndarray) -> None:
        """Take the summed histogram of the pass from :meth:`step`.

        Parameters
        ----------
        hist
            ``(n_rows, n_bins)`` counts summed over every block of events.
        """
        width = self.widths[self.passes]
        hist = np.asarray(hist, dtype=np.int64)
        if self.passes == 0:
            hist = hist.reshape(self.n_groups, self.n_columns, -1)
            seen = hist.sum(axis=2)
            n = self.counts[:, None]
            self.nan = seen < n  # np.median is NaN when a value is
            ok = (n > 0) & ~self.nan
            self.valid[...] = ok[..., None]
            self.rank[..., 0] = np.where(ok, (n - 1) // 2, 0)
            self.rank[..., 1] = np.where(ok, n // 2, 0)
            rows = np.broadcast_to(
                np.arange(self.n_groups * self.n_columns).reshape(self.n_groups, -1)[..., None],
                self.valid.shape,
            )
            hist = hist.reshape(self.n_groups * self.n_columns, -1)
        else:
            rows = self._rows
        targets = np.flatnonzero(self.valid)
        if targets.size:
            row = rows.reshape(-1)[targets]
            rank = self.rank.reshape(-1)[targets]
            cum = np.cumsum(hist, axis=1)
            # the first bin whose running total exceeds the rank, every target at once: the
            # rows laid end to end, each offset past the previous one's total
            span = int(cum[:, -1].max(initial=0)) + 1
            offset = np.arange(cum.shape[0], dtype=np.int64) * span
            flat = (cum + offset[:, None]).reshape(-1)
            pos = np.searchsorted(flat, rank + offset[row], side="right")
            digit = pos - row * cum.shape[1]
            below = np.where(digit > 0, flat[np.maximum(pos - 1, 0)] - offset[row], 0)
            self.inside.reshape(-1)[targets] = hist[row, digit]
            self.rank.reshape(-1)[targets] = rank - below
            prefix = self.prefix.reshape(-1)
            prefix[targets] = (prefix[targets] << np.uint64(width)) | digit.astype(np.uint64)
        self.passes += 1
        if not targets.size:  # only NaN or empty: nothing left to count
            self.passes = len(self.widths)

    def medians(self) -> np.ndarray:
        """The medians, once :attr:`done`.

        Returns
        -------
        numpy.ndarray
            float64 ``(n_groups, n_columns)``: the middle value (odd counts) or the mean of
            the two middle values (even counts, ``(a + b) / 2`` in float64 as ``np.median``);
            NaN for a (group, column) holding a NaN and for empty groups.
        """
        if not self.done:
            raise RuntimeError(f"{len(self.widths) - self.passes} selection passes left")
        n_bits = self.n_bits
        sign = np.uint64(1) << np.uint64(n_bits - 1)
        full = (sign - np.uint64(1)) | sign
        key = self.prefix
        bits = np.where(key & sign, key ^ sign, key ^ full).astype(_KEY[n_bits])
        value = bits.view(_FLOAT[n_bits]).astype(np.float64)
        odd = (self.counts % 2 == 1)[:, None]
        with np.errstate(invalid="ignore"):  # -inf and +inf: NaN, as np.median
            out = np.where(odd, value[..., 0], (value[..., 0] + value[..., 1]) / 2)
        out[~self.valid[..., 0]] = np.nan
        return out


def select_medians(
    X: np.ndarray,
    labels: np.ndarray,
    n_groups: int,
    *,
    columns: np.ndarray | None = None,
    block_rows: int | None = None,
    widths: tuple[int, ...] | None = None,
    collect_bytes: int = -1,
) -> np.ndarray:
    """:func:`~itme.core.cluster.codebook.group_medians` by histogram passes over a numpy array.

    The in-memory driver of :class:`GroupSelection` (the dask one is
    :func:`itme._dask.lazy_group_medians`): each pass sums the histograms of blocks of
    ``block_rows`` events.

    Parameters
    ----------
    X
        Events × channels.
    labels
        Integer group of each event (negative or ``>= n_groups``: left out).
    n_groups
        Number of groups.
    columns
        Column positions (all when ``None``).
    block_rows
        Events per block (all at once when ``None``).
    widths
        Digit widths (default :func:`digit_widths`).
    collect_bytes
        Collect the keys in one last pass once they take at most this many bytes
        (:meth:`GroupSelection.collects`; negative: never).

    Returns
    -------
    numpy.ndarray
        float64 ``(n_groups, n_columns)``, as :meth:`GroupSelection.medians`.
    """
    labels = np.asarray(labels)
    columns = np.arange(X.shape[1]) if columns is None else np.asarray(columns, dtype=np.intp)
    sel = GroupSelection(group_counts(labels, n_groups), columns.size, X.dtype, widths=widths)
    step_rows = max(1, block_rows or X.shape[0])
    blocks = [slice(a, a + step_rows) for a in range(0, X.shape[0], step_rows)]
    while not sel.done:
        step = sel.step(collect=sel.collects(collect_bytes))
        if step.collect:
            sel.take(candidates_block(X[b], labels[b], columns, step) for b in blocks)
            continue
        total = np.zeros((step.n_rows, step.n_bins), dtype=step.count_dtype)
        for b in blocks:
            total += histogram_block(X[b], labels[b], columns, step)
        sel.update(total)
    return sel.medians()


def _parts(*arrays: np.ndarray) -> Iterator[tuple[np.ndarray, ...]]:
    """The arrays in parts of :data:`PART_EVENTS` events (views), side by side."""
    for start in range(0, arrays[0].shape[0], PART_EVENTS):
        yield tuple(a[start : start + PART_EVENTS] for a in arrays)


def _counted_parts(
    mask: np.ndarray | None, *arrays: np.ndarray
) -> Iterator[tuple[np.ndarray, ...]]:
    """:func:`_parts` of ``arrays``, each part's events of ``mask`` only (all when ``None``)."""
    if mask is None:
        yield from _parts(*arrays)
        return
    for m, *parts in _parts(np.asarray(mask, dtype=bool), *arrays):
        yield tuple(p[m] for p in parts)


def group_counts(
    labels: np.ndarray, n_groups: int, *, mask: np.ndarray | None = None
) -> np.ndarray:
    """Events of each group (labels outside ``0 .. n_groups - 1`` left out).

    Parameters
    ----------
    labels
        Integer group of each event.
    n_groups
        Number of groups.
    mask
        Events counted (all when ``None``), one boolean per event.

    Returns
    -------
    numpy.ndarray
        int64 ``(n_groups,)``.
    """
    labels = np.asarray(labels)
    out = np.zeros(n_groups, dtype=np.int64)
    for (part,) in _counted_parts(mask, labels):  # bincount's intp copy: a part, not all
        kept = part[(part >= 0) & (part < n_groups)]
        out += np.bincount(kept.astype(np.intp), minlength=n_groups)[:n_groups]
    return out


def cross_counts(
    a: np.ndarray, n_a: int, b: np.ndarray, n_b: int, *, mask: np.ndarray | None = None
) -> np.ndarray:
    """Events of each pair of groups ``(a, b)``, in parts (no intp copy of every event).

    Parameters
    ----------
    a, b
        Integer groups of each event, ``0 .. n_a - 1`` and ``0 .. n_b - 1``.
    n_a, n_b
        Numbers of groups.
    mask
        Events counted (all when ``None``).

    Returns
    -------
    numpy.ndarray
        int64 ``(n_a, n_b)``.
    """
    out = np.zeros(n_a * n_b, dtype=np.int64)
    for part_a, part_b in _counted_parts(mask, np.asarray(a), np.asarray(b)):
        pairs = part_a.astype(np.intp) * n_b + part_b
        out += np.bincount(pairs, minlength=n_a * n_b)
    return out.reshape(n_a, n_b)


def regroup_histogram(
    hist: np.ndarray,
    labels: np.ndarray,
    new_labels: np.ndarray,
    n_new: int,
    positions: np.ndarray,
) -> np.ndarray | None:
    """A first-pass histogram of coarser groups, summed from that of finer ones.

    The first pass counts every value of a (group, column) by its top digit, whatever the
    other groups, so when every group of ``labels`` lies within one group of ``new_labels``
    (e.g. metaclusters and the subsets named from them) the first pass of ``new_labels`` is
    the sum of the histograms of its groups: no pass over the events.

    Parameters
    ----------
    hist
        ``(n_groups, n_columns, n_bins)`` first-pass counts of ``labels``.
    labels
        The group of each event that ``hist`` counts (negative or ``>= n_groups``: left out).
    new_labels
        The new group of each event (negative or ``>= n_new``: left out).
    n_new
        Number of new groups.
    positions
        The new columns among the columns of ``hist``.

    Returns
    -------
    numpy.ndarray or None
        ``(n_new * len(positions), n_bins)`` counts, as :meth:`GroupSelection.update` takes
        them after the first :meth:`GroupSelection.step`; ``None`` when a group of
        ``labels`` is split between new groups, or a new group holds events that
        ``labels`` leaves out.
    """
    labels, new_labels = np.asarray(labels), np.asarray(new_labels)
    if labels.shape != new_labels.shape:
        return None
    n_old = hist.shape[0]
    target = np.full(n_old, -2, dtype=np.intp)  # the new group of each old one (-2: none yet)
    for old_part, new_part in _parts(labels, new_labels):  # bounded copies, as group_counts
        old_in = (old_part >= 0) & (old_part < n_old)
        new_in = (new_part >= 0) & (new_part < n_new)
        if (new_in & ~old_in).any():
            return None
        old = old_part[old_in].astype(np.intp)
        new = np.where(new_in, new_part, -1)[old_in].astype(np.intp)
        unseen = target[old] == -2
        target[old[unseen]] = new[unseen]
        if not np.array_equal(target[old], new):  # an old group split
            return None
    kept = np.flatnonzero(target >= 0)
    out = np.zeros((n_new, len(positions), hist.shape[2]), dtype=np.int64)
    np.add.at(out, target[kept], hist[kept][:, np.asarray(positions, dtype=np.intp)])
    return out.reshape(n_new * len(positions), hist.shape[2])
