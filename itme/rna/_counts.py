"""Reading RNA-seq count matrices (docs/input-formats.md) into samples × genes AnnData."""

from __future__ import annotations

import logging
import re
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd

from itme._adata import RNASEQ_ID, join_table
from itme._files import sha256
from itme._parsed import parsed_once
from itme.errors import ItmeExclusionWarning, ItmeInputError, ItmeParameterError

if TYPE_CHECKING:
    from anndata import AnnData

__all__ = ["read_counts"]

logger = logging.getLogger(__name__)

_ENSEMBL = re.compile(r"^ENS[A-Z]*G\d{6,}(\.\d+)?$")


#: texts that mean "no gene symbol" in a gene_name column
NO_SYMBOL = ("", "nan", "NA", "None")


def is_ensembl(ids: pd.Index | pd.Series | Sequence[str]) -> np.ndarray:
    """Whether each id looks like an Ensembl gene id (``ENSG...``, ``ENSMUSG...``)."""
    return np.array([bool(_ENSEMBL.match(str(i))) for i in ids], dtype=bool)


def no_symbol(names: pd.Index | pd.Series | Sequence[str], *, ensembl: bool = True) -> np.ndarray:
    """Boolean per gene name: missing, one of :data:`NO_SYMBOL`, or (``ensembl``) an Ensembl id.

    :func:`read_counts` stores the id as ``gene_name`` when the file gives no symbol, so an
    Ensembl id there means the symbol is unknown.
    """
    text = [None if pd.isna(n) else str(n).strip() for n in names]
    missing = np.array([t is None or t in NO_SYMBOL for t in text], dtype=bool)
    return missing | is_ensembl([t or "" for t in text]) if ensembl else missing


def check_counts(
    values: np.ndarray,
    gene_ids: Sequence[str],
    sample_ids: Sequence[str],
    *,
    where: str,
    genes_first_axis: bool,
    row_offset: int | None = None,
    row_lines: Sequence[int] | None = None,
) -> None:
    """Raise :class:`ItmeInputError` unless every value is a finite non-negative integer.

    The error names the first offending value, scanning genes in order and, within a gene,
    samples in order (the reading order of a genes × samples file).

    Parameters
    ----------
    values
        The count matrix (float or int).
    gene_ids, sample_ids
        Labels of the gene and sample axes.
    where
        File or object named in the message.
    genes_first_axis
        ``True`` when ``values`` is genes × samples, ``False`` for samples × genes.
    row_offset
        When given, the message also names the file line (gene index + ``row_offset``).
    row_lines
        The file line of each gene (overrides ``row_offset``).
    """
    mat = np.asarray(values)
    if not genes_first_axis:
        mat = mat.T
    if np.issubdtype(mat.dtype, np.integer):
        bad = mat < 0
    else:
        with np.errstate(invalid="ignore"):
            bad = ~np.isfinite(mat) | (mat < 0) | (mat != np.round(mat))
    if not bad.any():
        return
    g, s = (int(v) for v in np.argwhere(bad)[0])
    value = mat[g, s]
    kind = (
        "a missing or non-numeric value"
        if not np.isfinite(value)
        else "a negative value"
        if value < 0
        else "a non-integer value"
    )
    if row_lines is not None:
        line = f" (line {row_lines[g]})"
    else:
        line = f" (line {g + row_offset})" if row_offset is not None else ""
    raise ItmeInputError(
        f"{kind} ({int(bad.sum())} such value(s) in total)",
        where=f"{where}: gene {gene_ids[g]!s}{line}, sample {sample_ids[s]!s}",
        expected="raw non-negative integer read counts",
        found=repr(value.item() if hasattr(value, "item") else value),
        fix=(
            "Use raw counts (not TPM/FPKM/normalised values); estimated counts from "
            "salmon/RSEM can be rounded with read_counts(..., round_counts=True)"
        ),
    )


def check_nonzero_samples(
    counts: np.ndarray, sample_ids: Sequence[str], *, where: str, samples_first_axis: bool
) -> None:
    """Raise :class:`ItmeInputError` naming every sample whose counts are all zero."""
    totals = np.asarray(counts).sum(axis=1 if samples_first_axis else 0)
    zero = [str(sample_ids[i]) for i in np.flatnonzero(totals == 0)]
    if zero:
        raise ItmeInputError(
            f"{len(zero)} sample(s) with zero counts in every gene",
            where=where,
            expected="every sample with at least one read",
            found=", ".join(zero),
            fix="Remove the failed library (or fix its column) before the analysis",
        )


def _numbers(cells: pd.DataFrame) -> np.ndarray:
    """The cells (strings) as floats, NaN where a cell is not a number (``pd.to_numeric``).

    numpy parses a table of plain numbers at once (~2.5× faster than ``pd.to_numeric`` column
    by column on 20,000 genes); it raises on an empty or non-numeric cell and accepts
    Python's ``1_000``, which ``pd.to_numeric`` does not: those tables take the slow path.
    """
    if not any(c.str.contains("_", regex=False).any() for _, c in cells.items()):
        try:
            return cells.to_numpy(dtype=float)
        except ValueError:
            pass
    return cells.apply(lambda c: pd.to_numeric(c, errors="coerce")).to_numpy(dtype=float)


def _read_table(
    path: Path, sep: str | None, gene_name_column: str, round_counts: bool
) -> tuple[np.ndarray, list[str], list[str], list[str] | None]:
    """Genes × samples values, gene ids, sample ids and optional gene names of a text file.

    The file is read by :func:`itme.io.read_table`, like every other input table: UTF-8,
    UTF-16 or Windows-1252, ``,``/``;``/tab separators, gzip; empty, binary and ragged files
    are :class:`~itme.errors.ItmeInputError`.
    """
    from itme.io import read_table

    table = read_table(path, what="counts", sep=sep)
    cols = list(table.columns)
    if len(cols) < 2:
        raise ItmeInputError(
            where=str(path),
            expected="a gene id column followed by one column per sample",
            found=f"{len(cols)} column(s); is the separator {table.attrs['separator']!r} right?",
        )
    if len(table) == 0:
        raise ItmeInputError(where=str(path), expected="one row per gene", found="a header only")
    id_col = cols[0]
    names = None
    sample_cols = cols[1:]
    if gene_name_column in sample_cols:
        names = table[gene_name_column].tolist()
        sample_cols = [c for c in sample_cols if c != gene_name_column]
    if not sample_cols:
        raise ItmeInputError(where=str(path), expected="at least one sample column", found="none")
    gene_ids = table[id_col].tolist()
    lines = [int(i) for i in table.index]
    blank = [line for line, g in zip(lines, gene_ids, strict=True) if g == ""]
    if blank:
        raise ItmeInputError(
            where=f"{path}, column {id_col}",
            expected="a gene id on every row",
            found=f"an empty id on line(s) {', '.join(map(str, blank[:10]))}",
        )
    values = _numbers(table[sample_cols])
    if round_counts:
        finite = np.isfinite(values)
        fractional = finite & (values != np.round(values))
        if fractional.any():
            logger.info(
                "read_counts: rounded %d fractional value(s) to the nearest integer",
                int(fractional.sum()),
            )
        values = np.where(finite & (values >= 0), np.round(values), values)
    # report the text as written for a value that failed to parse
    bad = ~np.isfinite(values)
    if bad.any():
        g, s = (int(v) for v in np.argwhere(bad)[0])
        raise ItmeInputError(
            f"a missing or non-numeric value ({int(bad.sum())} such value(s) in total)",
            where=f"{path}: gene {gene_ids[g]} (line {lines[g]}), sample {sample_cols[s]}",
            expected="raw non-negative integer read counts",
            found=repr(table[sample_cols[s]].iloc[g]),
            fix=(
                f"Annotation columns other than {gene_name_column!r} are not allowed between "
                "the samples; remove them or fill the missing counts"
            ),
        )
    check_counts(
        values, gene_ids, sample_cols, where=str(path), genes_first_axis=True, row_lines=lines
    )
    return values, gene_ids, sample_cols, names


def _read_h5ad(
    path: Path, gene_name_column: str, round_counts: bool
) -> tuple[np.ndarray, list[str], list[str], list[str] | None, pd.DataFrame]:
    """Like :func:`_read_table` for an ``.h5ad`` file (samples × genes), plus its ``obs``."""
    import anndata as ad

    try:
        adata = ad.read_h5ad(path)
    except (OSError, KeyError, ValueError, TypeError) as err:
        raise ItmeInputError(
            where=str(path),
            expected="an AnnData .h5ad file (samples × genes counts in X)",
            found=f"unreadable: {type(err).__name__}: {str(err)[:200]}",
        ) from err
    x = adata.X
    if x is None:
        raise ItmeInputError(where=str(path), expected="counts in X", found="no X matrix")
    x = x.toarray() if hasattr(x, "toarray") else np.asarray(x)
    values = x.T.astype(float)  # genes × samples
    if round_counts:
        values = np.where(np.isfinite(values) & (values >= 0), np.round(values), values)
    gene_ids = [str(g) for g in adata.var_names]
    sample_ids = [str(s) for s in adata.obs_names]
    check_counts(values, gene_ids, sample_ids, where=str(path), genes_first_axis=True)
    names = None
    if gene_name_column in adata.var.columns:
        names = adata.var[gene_name_column].astype(str).tolist()
    obs = adata.obs.copy()
    obs.index = sample_ids
    return values, gene_ids, sample_ids, names, obs


def _parse(
    path: Path, sep: str | None, gene_name_column: str, round_counts: bool
) -> tuple[np.ndarray, list[str], list[str], list[str] | None, pd.DataFrame | None]:
    """:func:`_read_h5ad` or :func:`_read_table` (``None`` obs); the values read-only.

    The result is kept for the process (:func:`itme._parsed.parsed_once`): a run's config
    check and rnaseq stage parse the file once.
    """
    if path.suffix.lower() == ".h5ad":
        values, gene_ids, sample_ids, names, obs = _read_h5ad(path, gene_name_column, round_counts)
    else:
        values, gene_ids, sample_ids, names = _read_table(path, sep, gene_name_column, round_counts)
        obs = None
    values.flags.writeable = False  # shared by every read of the file
    return values, gene_ids, sample_ids, names, obs


def _collapse_duplicates(
    values: np.ndarray,
    gene_ids: list[str],
    names: list[str] | None,
    how: str,
    where: str,
) -> tuple[np.ndarray, list[str], list[str] | None, int]:
    ids = pd.Index(gene_ids)
    dup_mask = ids.duplicated(keep=False)
    if not dup_mask.any():
        return values, gene_ids, names, 0
    dups = list(dict.fromkeys(ids[dup_mask]))
    if how == "error":
        raise ItmeInputError(
            f"{len(dups)} gene id(s) occur more than once",
            where=where,
            expected="unique gene ids in the first column",
            found=", ".join(map(str, dups[:10])) + (" ..." if len(dups) > 10 else ""),
            fix=(
                "Use unique ids (e.g. Ensembl ids), or pass duplicates='sum' to add the "
                "counts of rows with the same id, or duplicates='first' to keep the first row"
            ),
        )
    n_extra = int(ids.duplicated(keep="first").sum())
    frame = pd.DataFrame(values, index=ids)
    if how == "sum":
        frame = frame.groupby(level=0, sort=False).sum()
        logger.info("read_counts: summed %d duplicated row(s) into %d gene(s)", n_extra, len(dups))
    else:
        frame = frame[~ids.duplicated(keep="first")]
        warnings.warn(
            ItmeExclusionWarning.listing(
                f"{where}: dropped {n_extra} row(s) whose gene id repeats an earlier row "
                "(duplicates='first')",
                dups,
            ),
            stacklevel=3,
        )
    first_pos = {g: i for i, g in reversed(list(enumerate(gene_ids)))}
    new_ids = [str(g) for g in frame.index]
    new_names = [names[first_pos[g]] for g in new_ids] if names is not None else None
    return frame.to_numpy(), new_ids, new_names, n_extra


def _match_clinical(
    sample_ids: list[str], clinical: pd.DataFrame
) -> tuple[dict[str, str], pd.DataFrame, str]:
    """Map sample id → patient id through the clinical table; return the table by patient."""
    table = clinical.copy()
    if "patient_id" not in table.columns:
        if table.index.name == "patient_id":
            table = table.reset_index()
        else:
            raise ItmeInputError(
                where="clinical table",
                expected="a patient_id column",
                found=f"columns {', '.join(map(str, table.columns))}",
            )
    table["patient_id"] = table["patient_id"].astype(str).str.strip()
    dup = table["patient_id"][table["patient_id"].duplicated()].unique().tolist()
    if dup:
        raise ItmeInputError(
            where="clinical table, column patient_id",
            expected="one row per patient",
            found=f"repeated patient id(s) {', '.join(dup)}",
        )
    if RNASEQ_ID in table.columns:
        ids = table[RNASEQ_ID]
        has = ids.notna() & (ids.astype(str).str.strip() != "")
        rna = ids[has].astype(str).str.strip()
        dup = rna[rna.duplicated()].unique().tolist()
        if dup:
            raise ItmeInputError(
                where="clinical table, column rnaseq_id",
                expected="each RNA-seq sample assigned to one patient",
                found=f"repeated rnaseq_id(s) {', '.join(dup)}",
            )
        mapping = dict(zip(rna, table.loc[has, "patient_id"], strict=True))
        matched_by = RNASEQ_ID
    else:
        mapping = {p: p for p in table["patient_id"]}
        matched_by = "patient_id"
    return {s: mapping[s] for s in sample_ids if s in mapping}, table, matched_by


def read_counts(
    path: str | Path,
    *,
    clinical: pd.DataFrame | None = None,
    gene_name_column: str = "gene_name",
    duplicates: Literal["error", "sum", "first"] = "error",
    round_counts: bool = False,
    sep: str | None = None,
) -> AnnData:
    """Read raw RNA-seq counts into an AnnData of samples × genes.

    Text files are genes × samples (docs/input-formats.md): the first column holds the gene id
    (Ensembl id or symbol), an optional ``gene_name`` column holds symbols (as
    nf-core/rnaseq writes ``*.gene_counts.tsv``), every other column is one sample. An
    ``.h5ad`` file is read as samples × genes with counts in ``X`` (and symbols in
    ``var[gene_name_column]`` when present).

    Counts must be non-negative integers: the first offending value is named by gene,
    sample and line. A sample whose counts are all zero is an error.

    The last file parsed is kept for the process (:mod:`itme._parsed`): reading the same
    content with the same options again (a run's config check, then its rnaseq stage) does
    not parse it again, and shows the same warnings.

    Duplicate symbols in ``gene_name`` are kept as they are (ids stay unique);
    :func:`itme.rna.gsea` collapses them to the gene with the largest ranking statistic.
    Duplicate *ids* (a symbol-indexed table) are an error unless ``duplicates`` says how to
    combine them.

    Samples are matched to patients through ``clinical``: through its ``rnaseq_id`` column
    when present (sample column = ``rnaseq_id``), otherwise directly (sample column =
    ``patient_id``). Samples without a patient are dropped with an
    :class:`~itme.errors.ItmeExclusionWarning` naming them; the clinical columns are joined
    into ``obs`` (the join of :func:`itme.io.add_clinical`: text as categoricals, numbers
    numeric) so they can be used in the design of :func:`~itme.rna.differential_expression`.
    Further per-patient columns (e.g. ``itme_cluster`` from the patients AnnData) are joined
    with :func:`itme.io.add_clinical`.

    Parameters
    ----------
    path
        TSV/CSV (optionally gzipped) genes × samples, or ``.h5ad`` samples × genes.
    clinical
        Optional clinical table with ``patient_id`` (and optionally ``rnaseq_id``). Without
        it, sample ids are taken to be patient ids.
    gene_name_column
        Name of the symbol column (text files) or ``var`` column (h5ad).
    duplicates
        What to do with repeated gene ids: ``"error"``, ``"sum"`` their counts, or keep the
        ``"first"`` row (the others are reported).
    round_counts
        Round fractional counts (salmon/RSEM estimated counts) to integers instead of
        raising an error. Negative or missing values are errors either way.
    sep
        Column separator; default: the one of ``,``, ``;`` and tab the header uses most.
        Text files are read like every input table (:func:`itme.io.read_table`): UTF-8,
        UTF-16 or Windows-1252 (warned), optionally gzipped; an empty, binary or ragged file
        is an :class:`~itme.errors.ItmeInputError`.

    Returns
    -------
    AnnData
        Samples × genes: ``X`` int64 counts; ``var_names`` gene ids; ``var["gene_name"]``
        symbols (the id where no symbol is given); ``obs["patient_id"]`` and the clinical
        columns; ``uns["read_counts"]`` with ``path``, ``sha256``, ``n_genes``,
        ``n_samples_in_file``, ``matched_by`` (``rnaseq_id``, ``patient_id`` or ``none``),
        ``n_unmatched_samples`` and ``unmatched_samples`` (comma-separated ids of the
        dropped samples, ``""`` when none), ``duplicates`` and ``n_duplicate_rows``.
    """
    import anndata as ad

    start = time.perf_counter()
    if duplicates not in ("error", "sum", "first"):
        raise ItmeParameterError("duplicates", ["error", "sum", "first"], duplicates)
    path = Path(path)
    if not path.is_file():
        raise ItmeInputError(
            where=str(path), expected="an existing counts file", found="no such file"
        )
    logger.info("read_counts: reading %s", path)
    digest = sha256(path)
    values, gene_ids, sample_ids, names, extra_obs = parsed_once(
        "read_counts",
        (str(path.resolve()), digest, sep, gene_name_column, round_counts),
        lambda: _parse(path, sep, gene_name_column, round_counts),
    )
    gene_ids, sample_ids = list(gene_ids), list(sample_ids)
    names = None if names is None else list(names)
    extra_obs = None if extra_obs is None else extra_obs.copy()
    n_samples_in_file = len(sample_ids)
    values, gene_ids, names, n_dup = _collapse_duplicates(
        values, gene_ids, names, duplicates, str(path)
    )
    check_nonzero_samples(values, sample_ids, where=str(path), samples_first_axis=False)

    if names is None:
        gene_names = list(gene_ids)
    else:
        blank = no_symbol(names, ensembl=False)
        gene_names = [
            g if b else str(n).strip() for g, n, b in zip(gene_ids, names, blank, strict=True)
        ]

    unmatched: list[str] = []
    matched_by = "none"
    obs = pd.DataFrame(index=pd.Index(sample_ids, name=None))
    if clinical is not None:
        mapping, table, matched_by = _match_clinical(sample_ids, clinical)
        unmatched = [s for s in sample_ids if s not in mapping]
        if not mapping:
            raise ItmeInputError(
                where=f"{path} sample columns vs clinical table ({matched_by})",
                expected="sample ids that match the clinical table",
                found=f"no match; samples {', '.join(sample_ids[:5])}...",
                fix=(
                    "Add an rnaseq_id column to the clinical table mapping each RNA-seq "
                    "sample to its patient, or name the sample columns by patient_id"
                ),
            )
        if unmatched:
            warnings.warn(
                ItmeExclusionWarning.listing(
                    f"{path}: {len(unmatched)} of {len(sample_ids)} RNA-seq sample(s) have no "
                    f"patient in the clinical table (matched by {matched_by}) and were dropped",
                    unmatched,
                ),
                stacklevel=2,
            )
        keep = [i for i, s in enumerate(sample_ids) if s in mapping]
        values = values[:, keep]
        sample_ids = [sample_ids[i] for i in keep]
        patients = [mapping[s] for s in sample_ids]
        without = sorted(set(table["patient_id"]) - set(patients))
        if without:
            logger.info(
                "read_counts: %d patient(s) of the clinical table have no RNA-seq sample: %s",
                len(without),
                ", ".join(without),
            )
        obs = pd.DataFrame({"patient_id": patients}, index=pd.Index(sample_ids))
        joined, _ = join_table(obs, table, where="clinical table")
        obs = pd.concat([obs, joined], axis=1)
    elif extra_obs is not None:
        obs = extra_obs.loc[sample_ids].copy()
        if "patient_id" not in obs.columns:
            obs["patient_id"] = sample_ids
    else:
        obs["patient_id"] = sample_ids
    for col in obs.columns:
        if obs[col].dtype == object or isinstance(obs[col].dtype, pd.StringDtype):
            obs[col] = pd.Categorical(obs[col].astype(str).where(obs[col].notna()))
    obs["patient_id"] = pd.Categorical(obs["patient_id"].astype(str))

    var = pd.DataFrame({"gene_name": gene_names}, index=pd.Index(gene_ids))
    adata = ad.AnnData(X=np.ascontiguousarray(values.T.astype(np.int64)), obs=obs, var=var)
    adata.uns["read_counts"] = {
        "path": str(path),
        "sha256": digest,
        "n_genes": int(adata.n_vars),
        "n_samples_in_file": int(n_samples_in_file),
        "matched_by": matched_by,
        "n_unmatched_samples": len(unmatched),
        "unmatched_samples": ",".join(unmatched),
        "duplicates": duplicates,
        "n_duplicate_rows": int(n_dup),
    }
    logger.info(
        "read_counts: %d samples × %d genes in %.2f s",
        adata.n_obs,
        adata.n_vars,
        time.perf_counter() - start,
    )
    return adata
