"""Read a cohort of FCS files into one AnnData.

Two passes: the TEXT segment of every file first (channels, event counts; every problem in
every file is collected before anything is read), then the events, file by file, straight
into one preallocated float32 matrix.
"""

from __future__ import annotations

import difflib
import hashlib
import logging
import threading
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Literal

import anndata
import numpy as np
import pandas as pd
from anndata import AnnData

from itme._progress import track
from itme.errors import (
    ItmeExclusionWarning,
    ItmeInputError,
    ItmeInputWarning,
    ItmeParameterError,
)
from itme.io._channels import alias_table, file_channels, match_panel, parse_channel
from itme.io._cohort_panel import batch_panels, drop_partial_markers, warn_conventions
from itme.io._fcs_events import read_events
from itme.io._fcs_format import FcsFile, parse_fcs
from itme.io._tables import MARKER_CLASSES, TableSource, read_panel, read_samples

__all__ = ["check_cohort", "read_cohort"]

logger = logging.getLogger(__name__)


@dataclass
class _Plan:
    """Where one file's columns go."""

    sample_id: str
    path: Path
    text: FcsFile
    columns: np.ndarray  # column index in the file for each var of the cohort
    matched_by: str


def _resolve_files(table: pd.DataFrame, folder: Path | None, base_dir: Path | None) -> list[Path]:
    root = base_dir or folder or Path.cwd()
    paths, missing, seen = [], [], {}
    for i, name in table["file_name"].items():
        path = Path(name) if Path(name).is_absolute() else root / name
        paths.append(path)
        if not path.is_file():
            missing.append(f"line {i}: {path}")
        else:
            seen.setdefault(path.resolve(), []).append(f"{i} ({table.at[i, 'sample_id']})")
    if missing:
        raise ItmeInputError(
            f"{len(missing)} FCS file(s) listed in the sample sheet do not exist: {'; '.join(missing)}",
            where="samples.csv, column file_name",
            fix=f"file_name is resolved relative to {root}; correct the names or the folder",
        )
    twice = [f"{p.name} on lines {', '.join(rows)}" for p, rows in seen.items() if len(rows) > 1]
    if twice:
        raise ItmeInputError(
            "the same FCS file is listed for several samples: " + "; ".join(twice),
            where="samples.csv, column file_name",
            expected="one row per FCS file",
            fix="Each sample is one file: remove the repeated rows or correct file_name",
        )
    return paths


def _plan(
    table: pd.DataFrame,
    paths: list[Path],
    panel: pd.DataFrame,
    unpanelled: str,
    aliases: Mapping[str, str] | None = None,
    missing: str = "exclude",
) -> tuple[list[_Plan], pd.DataFrame, list[str], pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Read every TEXT segment, match the panel, and collect all problems before failing.

    Returns the plan of each file, the var rows of the unpanelled channels kept, the
    names of the channels left out, the channel map (which channel each panel row took), the
    panel without the markers left out (missing from some files) and those markers.
    """
    texts, problems = [], []
    for path in track(paths, description="reading FCS TEXT"):
        try:
            texts.append(parse_fcs(path, only_text=True))
        except ItmeInputError as exc:
            problems.append(str(exc))
    if problems:  # unreadable TEXT: nothing else about the files can be checked
        raise ItmeInputError(
            "; ".join(problems), where="cohort", fix="Export the files listed again"
        )
    full, file_names = batch_panels(panel, table)  # per file: each variable's fcs_colname
    matches = [
        match_panel(fcs.channels, names, file=fcs.path.name, aliases=aliases)
        for fcs, names in zip(texts, file_names, strict=True)
    ]
    panel, matches, ignored, excluded = drop_partial_markers(full, texts, matches, missing)
    kept_rows = [full.index.get_loc(i) for i in panel.index]
    file_names = [[names[r] for r in kept_rows] for names in file_names]
    for fcs, match, wanted in zip(texts, matches, file_names, strict=True):
        found = match.columns
        problems.extend(match.problems)
        absent = [name for name, idx in zip(wanted, found, strict=True) if idx is None]
        if absent:
            names = list(fcs.channels["PnN"]) + [s for s in fcs.channels["PnS"] if s]
            hints = []
            metal_names = [n for n in names if parse_channel(n).metal]
            for name in absent:
                # a metal-named channel is compared with metal-named channels only: similar
                # spelling across kinds misleads (Dy161Di is not CD161)
                pool = metal_names if parse_channel(name).metal else names
                close = difflib.get_close_matches(name, pool, n=1, cutoff=0.6)
                hints.append(f"{name}" + (f" (closest: {close[0]})" if close else ""))
            problems.append(
                f"{fcs.path.name}: panel channel(s) not in the file's $PnN or $PnS: {', '.join(hints)}"
            )
        if fcs.n_events == 0:
            problems.append(f"{fcs.path.name}: the file holds no events ($TOT = 0)")
        if fcs.layout.error is not None:
            problems.append(str(fcs.layout.error))
    if problems:
        raise ItmeInputError(
            "; ".join(problems),
            where="cohort",
            fix="Correct fcs_colname in the panel (a $PnN or $PnS of every file, or the "
            "metal in any common form: Pr141Di, 141Pr, Pr141, CD3(Pr141)Di, CD3_Pr141), "
            "remove empty files from the sample sheet",
        )
    warn_conventions(texts, matches)
    # channels outside the panel: keep (as marker_class none) or drop, never silently; they
    # are the same channel across files when they carry the same metal (naming may differ)
    extras: list[dict[str, int]] = []  # per file: metal (or $PnN) → column
    shown_as: dict[str, str] = {}  # metal (or $PnN) → $PnN in the first file that has it
    labels: dict[str, str] = {}
    for fcs, match, skip in zip(texts, matches, ignored, strict=True):
        taken = {i for i in match.columns if i is not None} | skip
        parts = file_channels(fcs.channels)
        keys: dict[str, int] = {}
        for i, (pnn, metal) in enumerate(zip(parts["PnN"], parts["metal"], strict=True)):
            if i not in taken:
                key = metal or pnn
                keys[key] = i
                shown_as.setdefault(key, pnn)
                labels.setdefault(key, str(parts.at[i, "PnS"]))
        extras.append(keys)
    keys_union = list(dict.fromkeys(k for ex in extras for k in ex))
    union = [shown_as[k] for k in keys_union]
    extra_var = pd.DataFrame(columns=["fcs_colname", "antigen", "marker_class"])
    if union and unpanelled == "keep":
        differing = []
        for fcs, ex in zip(texts, extras, strict=True):
            missing = [shown_as[k] for k in keys_union if k not in ex]
            if missing:
                shown = ", ".join(missing[:10]) + (
                    f" and {len(missing) - 10} more" if len(missing) > 10 else ""
                )
                differing.append(f"{fcs.path.name} lacks {shown}")
        if differing:
            raise ItmeInputError(
                "the files' channel sets differ outside the panel: " + "; ".join(differing),
                where="cohort",
                expected="the same channels in every file",
                fix="Add the channels to the panel if they matter, or pass unpanelled='drop' "
                "to leave out channels that are not in the panel",
            )
        extra_var = pd.DataFrame(
            {
                "fcs_colname": union,
                "antigen": [labels[k] for k in keys_union],
                "marker_class": "none",
            }
        )
        warnings.warn(
            f"{len(union)} channel(s) present in every file but absent from the panel are kept "
            f"with marker_class 'none' (var['in_panel'] is False): {', '.join(union)}",
            ItmeInputWarning,
            stacklevel=3,
        )
    elif union:
        warnings.warn(
            f"left out {len(union)} channel(s) that are not in the panel (unpanelled='drop', "
            f"listed in uns['io']['dropped_channels']): {', '.join(union)}",
            ItmeExclusionWarning,
            stacklevel=3,
        )
    dropped = sorted(union) if unpanelled == "drop" else []
    plans, mapping = [], []
    for sid, path, fcs, match, wanted in zip(
        table["sample_id"], paths, texts, matches, file_names, strict=True
    ):
        kept = extras[len(plans)]
        cols = [*match.columns, *(kept[k] for k in keys_union)] if len(extra_var) else match.columns
        plans.append(_Plan(sid, path, fcs, np.asarray(cols, dtype=np.intp), match.matched_by))
        for name, col, how in zip(wanted, match.columns, match.how, strict=True):
            mapping.append(
                {
                    "sample_id": sid,
                    "file_name": path.name,
                    "panel_channel": name,
                    "PnN": str(fcs.channels["PnN"].iloc[col]),
                    "PnS": str(fcs.channels["PnS"].iloc[col]),
                    "matched_by": how,
                }
            )
    channel_map = pd.DataFrame(
        mapping,
        columns=["sample_id", "file_name", "panel_channel", "PnN", "PnS", "matched_by"],
    )
    return plans, extra_var, dropped, channel_map, panel, excluded


def _var(panel: pd.DataFrame, extra: pd.DataFrame) -> pd.DataFrame:
    rows = pd.concat(
        [
            panel[["fcs_colname", "antigen", "marker_class"]].assign(in_panel=True),
            extra.assign(in_panel=False),
        ],
        ignore_index=True,
    )
    antigen = rows["antigen"].astype(str)
    use_antigen = bool((antigen != "").all() and antigen.is_unique)
    named = antigen[antigen != ""]
    repeated = sorted(set(named[named.duplicated()]))
    measured = rows["marker_class"].isin(["type", "state"]) & rows["in_panel"]
    unnamed = list(rows.loc[measured & (antigen == ""), "fcs_colname"])
    if repeated or unnamed:
        parts = []
        if repeated:
            channels = [
                f"{a} ({', '.join(rows.loc[antigen == a, 'fcs_colname'])})" for a in repeated
            ]
            parts.append(f"antigen(s) on several channels: {'; '.join(channels)}")
        if unnamed:
            parts.append(f"type/state channel(s) without an antigen: {', '.join(unnamed)}")
        warnings.warn(
            f"panel: {'; '.join(parts)}; var_names are the channel names, so markers are "
            "named by their channel in tables and plots",
            ItmeInputWarning,
            stacklevel=3,
        )
    elif not use_antigen:
        logger.info("some antigens are empty; var_names are the FCS channel names")
    var = pd.DataFrame(
        {
            "channel": rows["fcs_colname"].astype(str).to_numpy(),
            "antigen": antigen.to_numpy(),
            "marker_class": pd.Categorical(rows["marker_class"], categories=list(MARKER_CLASSES)),
            "in_panel": rows["in_panel"].astype(bool).to_numpy(),
        },
        index=pd.Index(antigen if use_antigen else rows["fcs_colname"].astype(str)),
    )
    var.index.name = None
    return var


def _obs(table: pd.DataFrame, counts: np.ndarray, *, named: bool = True) -> pd.DataFrame:
    """Per-event sample-sheet columns as categoricals, built from codes (no per-event strings).

    The index: ``<sample_id>_<event index>`` when ``named``, else the events' positions (a
    ``pd.RangeIndex``: the cohort store names its events on disk, :mod:`itme.io._store`).
    """
    obs = {}
    order = [
        "sample_id",
        "patient_id",
        *[c for c in table.columns if c not in ("sample_id", "patient_id")],
    ]
    for col in order:
        values = table[col].astype(str)
        categories = list(dict.fromkeys(values))
        codes = pd.Categorical(values, categories=categories).codes
        obs[col] = pd.Categorical.from_codes(np.repeat(codes, counts), categories=categories)
    if not named:
        return pd.DataFrame(obs, index=pd.RangeIndex(int(np.sum(counts))), copy=False)
    names = [event_names(sid, n) for sid, n in zip(table["sample_id"], counts, strict=True)]
    return pd.DataFrame(obs, index=pd.Index(np.concatenate(names).astype(object)))


#: event indices whose decimal strings are built once per process and kept (16 MB)
_KEPT_INDICES = 1 << 20
_indices = np.empty(0, dtype=np.dtypes.StringDType())
_indices_lock = threading.Lock()


def _index_strings(n: int, first: int = 0) -> np.ndarray:
    """``str(first)``, …, ``str(first + n - 1)`` as numpy strings.

    Converting integers to numpy strings costs about as much as everything else in
    :func:`event_names` twice over (numpy goes through a Python string per number), and
    every file of a cohort numbers its events from 0: the strings of the first
    :data:`_KEPT_INDICES` indices are built once (the first call that needs them) and the
    files' names are views of them; those of any further events are built per call.
    """
    global _indices
    strings = np.dtypes.StringDType()
    stop = first + n
    if _indices.size < min(stop, _KEPT_INDICES):
        with _indices_lock:
            if _indices.size < min(stop, _KEPT_INDICES):
                _indices = np.arange(_KEPT_INDICES).astype(strings)
    kept = _indices
    if stop <= kept.size:
        return kept[first:stop]
    rest = np.arange(max(first, kept.size), stop).astype(strings)
    return np.concatenate([kept[first:], rest]) if first < kept.size else rest


def event_names(sample_id: str, n: int, first: int = 0) -> np.ndarray:
    """``obs_names`` of a file's ``n`` events from event ``first``: ``<sample_id>_<event index>``.

    A numpy string array (``StringDType``, the dtype zarr writes ``obs/_index`` from), built
    without a Python string per event, from the indices' strings kept by
    :func:`_index_strings`.
    """
    strings = np.dtypes.StringDType()
    return np.strings.add(np.array(f"{sample_id}_", dtype=strings), _index_strings(n, first))


def _warn_files(plans: list[_Plan], records: list[dict]) -> None:
    """One warning for the inconsistent files that were read, one for repeated contents."""
    inconsistent = [f"{p.path.name}: {'; '.join(p.text.warned)}" for p in plans if p.text.warned]
    if inconsistent:
        warnings.warn(
            f"{len(inconsistent)} FCS file(s) are inconsistent and were read anyway (notes in "
            f"uns['io']['files']): {' | '.join(inconsistent)}",
            ItmeInputWarning,
            stacklevel=3,
        )
    by_content: dict[str, list[str]] = {}
    for rec in records:
        if rec["sha256"]:
            by_content.setdefault(rec["sha256"], []).append(
                f"{rec['file_name']} ({rec['sample_id']})"
            )
    same = [" = ".join(names) for names in by_content.values() if len(names) > 1]
    if same:
        warnings.warn(
            f"FCS files with identical contents (SHA-256) under different names: {'; '.join(same)}; "
            "is one sample listed twice?",
            ItmeInputWarning,
            stacklevel=3,
        )


def read_cohort(
    samples: TableSource,
    panel: TableSource,
    *,
    base_dir: str | PathLike[str] | None = None,
    unpanelled: Literal["keep", "drop"] = "keep",
    checksums: bool = True,
    antigen_aliases: Mapping[str, list[str]] | None = None,
    missing_markers: Literal["exclude", "error"] = "exclude",
    store: str | PathLike[str] | None = None,
    chunk_rows: int | None = None,
) -> AnnData:
    """Read every FCS file of a sample sheet into one AnnData of events × panel channels.

    Panel channels are found in each file by ``$PnN``, then ``$PnS``, then by metal (mass and
    element, read from any common convention: ``Pr141Di``, ``141Pr``, ``141Pr_CD3``,
    ``CD3_Pr141``, ``CD3(Pr141)Di``, ``CD3(110:114)Dd``, ...; see
    :func:`itme.io.parse_channel`), then by antigen (through :data:`itme.io.ANTIGEN_ALIASES`),
    so one panel serves files of different instrument software. All TEXT
    segments are read and checked first and every problem is reported at once; then events
    are read file by file into one preallocated float32 matrix.

    Parameters
    ----------
    samples
        samples.csv (``file_name``, ``sample_id``, ``patient_id`` + any columns) or a DataFrame.
        CATALYST metadata files load unchanged.
    panel
        panel.csv (``fcs_colname``, ``antigen``, ``marker_class``) or a DataFrame.
        CATALYST panels load unchanged.
    base_dir
        Folder that ``file_name`` is relative to. Default: the sample sheet's folder (or the
        working directory when ``samples`` is a DataFrame).
    unpanelled
        Channels present in the files but not in the panel: ``"keep"`` them as
        ``marker_class`` ``none`` with a warning (they must then be in every file), or
        ``"drop"`` them (logged and listed in ``uns["io"]["dropped_channels"]``).
    checksums
        Record the SHA-256 of every file in ``uns["io"]["files"]``.
    antigen_aliases
        More antigen aliases (canonical name → other names), added to
        :data:`itme.io.ANTIGEN_ALIASES` for matching panel antigens to ``$PnS``.
    missing_markers
        A panel channel found in some files but not in others (a panel that changed between
        runs): ``"exclude"`` it from the analysis with one
        :class:`~itme.errors.ItmeExclusionWarning` listing the files that lack it (unless the
        panel's optional ``required`` column says ``yes`` for it), or treat it as an
        ``"error"``. A channel absent from every file is always an error.
    store
        Out of core: convert the files into this new AnnData zarr store in parallel (one
        dask task per file, see ``itme.io._store``) and return it opened lazily
        (:func:`itme.io.open_store`: ``X`` and ``layers["raw"]`` are one dask array).
    chunk_rows
        Events per chunk of the store (default 65,536).

    Returns
    -------
    AnnData (events × channels) with

    - ``X`` and ``layers["raw"]``: the same float32 array of values as stored.
    - ``var`` indexed by ``antigen`` (or ``channel`` when antigens are empty or repeated),
      columns ``channel``, ``antigen``, ``marker_class``, ``in_panel``.
    - ``obs``: ``sample_id``, ``patient_id`` and every other sample-sheet column as
      categoricals; ``obs_names`` are ``<sample_id>_<event index>``.
    - ``uns["io"]``: ``files`` (DataFrame: sample_id, file_name, path, sha256, n_events,
      n_channels, fcs_version, matched_by, notes), ``panel`` (DataFrame), ``keywords``
      (sample_id → FCS TEXT keywords), ``dropped_channels`` and ``channel_map`` (DataFrame,
      one row per file and panel row: sample_id, file_name, panel_channel, PnN, PnS,
      matched_by — ``$PnN``, ``$PnS``, ``metal`` or ``antigen``) and ``excluded_markers``
      (DataFrame: fcs_colname, antigen, files_without — panel channels left out because
      some files lack them).

    Raises
    ------
    ItmeInputError
        Missing files, the same file listed twice, duplicate or missing (``NA``) sample ids,
        missing columns, unknown marker classes, unreadable or truncated FCS files, panel
        channels absent from a file, a panel channel that matches two channels of a file
        (one metal or one antigen twice; both named), differing channel sets, empty files.

    Warns
    -----
    ItmeInputWarning
        Files whose channels were matched to the panel by metal (one warning per naming
        convention, listing its files); inconsistent FCS files that could still be read (their notes are listed), files with
        identical contents under two names (``checksums=True``), channels outside the panel
        (kept), an antigen on several channels or a type/state channel without an antigen.
    ItmeExclusionWarning
        Channels outside the panel left out (``unpanelled="drop"``); panel channels missing
        from some files left out (``missing_markers="exclude"``).
    """
    if unpanelled not in ("keep", "drop"):
        raise ItmeParameterError("unpanelled", "'keep' or 'drop'", unpanelled)
    start = time.perf_counter()
    table, folder = read_samples(samples)
    panel_table = read_panel(panel)
    paths = _resolve_files(table, folder, Path(base_dir) if base_dir is not None else None)
    if missing_markers not in ("exclude", "error"):
        raise ItmeParameterError("missing_markers", "'exclude' or 'error'", missing_markers)
    plans, extra, dropped, channel_map, used_panel, excluded = _plan(
        table, paths, panel_table, unpanelled, alias_table(antigen_aliases), missing_markers
    )
    var = _var(used_panel, extra)
    counts = np.array([p.text.n_events for p in plans], dtype=np.int64)
    if store is not None:  # out of core: the same result, as a lazily opened zarr store
        from itme.io._store import read_into_store

        info = {
            "panel": panel_table,
            "dropped": dropped,
            "channel_map": channel_map,
            "excluded": excluded,
            "table": table,
            "start": start,
        }
        return read_into_store(store, plans, counts, var, info, checksums, chunk_rows)
    # np.zeros (calloc: the kernel hands out zeroed pages lazily) first-touches faster here than
    # np.empty, whose huge-page advice can stall on compaction (measured in scripts/bench_io.py)
    matrix = np.zeros((int(counts.sum()), var.shape[0]), dtype=np.float32)
    logger.info(
        "reading %d files, %d events × %d channels (%.1f MB float32)",
        len(plans),
        matrix.shape[0],
        matrix.shape[1],
        matrix.nbytes / 1e6,
    )
    rows = np.concatenate([[0], np.cumsum(counts)])
    records, keywords = [], {}
    buffer = None
    for k, plan in enumerate(track(plans, description="reading FCS files")):
        fcs = plan.text  # TEXT and DATA layout from the first pass; events go straight into place
        digest = hashlib.sha256() if checksums else None  # fed by the one read of the file
        buffer = read_events(
            fcs, matrix[rows[k] : rows[k + 1]], plan.columns, buffer, digest=digest
        )
        keywords[plan.sample_id.replace("/", "_")] = fcs.keywords
        records.append(
            {
                "sample_id": plan.sample_id,
                "file_name": table["file_name"].iloc[k],
                "path": str(plan.path),
                "sha256": digest.hexdigest() if digest is not None else "",
                "n_events": int(fcs.n_events),
                "n_channels": int(fcs.channels.shape[0]),
                "fcs_version": fcs.version,
                "matched_by": plan.matched_by,
                "notes": "; ".join(fcs.notes),
            }
        )
        for note in fcs.notes:
            logger.info("%s: %s", plan.path.name, note)
    del buffer
    _warn_files(plans, records)
    obs = _obs(table, counts)
    # obs_names are unique by construction (validated unique sample_id + event index), so
    # anndata's own check, a hash of every name (~0.5 µs per event), is skipped
    with anndata.settings.override(check_uniqueness=False):
        adata = AnnData(X=matrix, obs=obs, var=var, layers={"raw": matrix})
    adata.uns["io"] = {
        "files": pd.DataFrame(records),
        "panel": panel_table.reset_index(drop=True),
        "keywords": keywords,
        "dropped_channels": dropped,
        "channel_map": channel_map,
        "excluded_markers": excluded,
    }
    logger.info(
        "read %d events from %d files in %.2f s",
        adata.n_obs,
        len(plans),
        time.perf_counter() - start,
    )
    return adata


def check_cohort(
    samples: TableSource,
    panel: TableSource,
    *,
    base_dir: str | PathLike[str] | None = None,
    unpanelled: Literal["keep", "drop"] = "keep",
    antigen_aliases: Mapping[str, list[str]] | None = None,
    missing_markers: Literal["exclude", "error"] = "exclude",
) -> list[str]:
    """Everything :func:`read_cohort` checks, without reading events; problems as lines.

    Parameters
    ----------
    samples
        samples.csv (path or DataFrame), as for :func:`read_cohort`.
    panel
        panel.csv (path or DataFrame), as for :func:`read_cohort`.
    base_dir
        Folder ``file_name`` is relative to, as for :func:`read_cohort`.
    unpanelled
        As for :func:`read_cohort`.
    antigen_aliases
        As for :func:`read_cohort`.
    missing_markers
        As for :func:`read_cohort`.

    Returns
    -------
    One line per problem (the messages of the errors :func:`read_cohort` would raise);
    empty when the cohort can be read.
    """
    found: list[str] = []
    table = folder = panel_table = None
    try:
        table, folder = read_samples(samples)
    except ItmeInputError as exc:
        found.append(str(exc))
    try:
        panel_table = read_panel(panel)
    except ItmeInputError as exc:
        found.append(str(exc))
    if table is None or panel_table is None:
        return found
    try:
        paths = _resolve_files(table, folder, Path(base_dir) if base_dir is not None else None)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ItmeInputWarning)
            warnings.simplefilter("ignore", ItmeExclusionWarning)
            _plan(
                table,
                paths,
                panel_table,
                unpanelled,
                alias_table(antigen_aliases),
                missing_markers,
            )
    except ItmeInputError as exc:
        found.append(str(exc))
    return found
