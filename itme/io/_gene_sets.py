"""Gene-set collections: GMT files and the shipped MSigDB Hallmark v7.0.

The MSigDB Hallmark collection v7.0 ships as package data (``itme/data/gene_sets``, CC BY 4.0;
cite Liberzon et al., Cell Systems 2015 and MSigDB): ``gene_sets="hallmark"``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path

from itme.errors import ItmeInputError, ItmeParameterError

__all__ = ["GeneSets", "hallmark_path", "read_gene_sets", "read_gmt"]

HALLMARK_NAME = "MSigDB Hallmark v7.0 (h.all.v7.0.symbols.gmt)"
GeneSets = str | Path | Mapping[str, Sequence[str]]


def hallmark_path() -> Path:
    """Path of the shipped MSigDB Hallmark v7.0 GMT file.

    Returns
    -------
    Path
        ``itme/data/gene_sets/h.all.v7.0.symbols.gmt`` (CC BY 4.0; see the README there).
    """
    return Path(str(resources.files("itme") / "data" / "gene_sets" / "h.all.v7.0.symbols.gmt"))


def read_gmt(path: str | Path) -> dict[str, list[str]]:
    """Read a GMT file: one gene set per line, ``name<TAB>description<TAB>gene...``.

    Empty lines are skipped; genes are stripped, empty fields dropped and repeats within a
    set removed (first occurrence kept).

    Parameters
    ----------
    path
        The ``.gmt`` file (e.g. an MSigDB download).

    Returns
    -------
    dict
        Gene set name → list of gene symbols, in file order.
    """
    path = Path(path)
    if not path.is_file():
        raise ItmeInputError(where=str(path), expected="an existing GMT file", found="no such file")
    sets: dict[str, list[str]] = {}
    with path.open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            fields = line.rstrip("\r\n").split("\t")
            name = fields[0].strip()
            genes = list(dict.fromkeys(g.strip() for g in fields[2:] if g.strip()))
            if not name or not genes:
                raise ItmeInputError(
                    where=f"{path} line {number}",
                    expected="set name, description and at least one gene, tab-separated",
                    found=repr(line[:80]),
                )
            if name in sets:
                raise ItmeInputError(
                    where=f"{path} line {number}",
                    expected="unique gene set names",
                    found=f"{name!r} defined twice",
                )
            sets[name] = genes
    if not sets:
        raise ItmeInputError(where=str(path), expected="at least one gene set", found="none")
    return sets


def read_gene_sets(gene_sets: GeneSets) -> tuple[dict[str, list[str]], str]:
    """Gene sets from ``"hallmark"``, a GMT path, or a name → genes mapping.

    Parameters
    ----------
    gene_sets
        ``"hallmark"`` (the shipped MSigDB Hallmark v7.0), the path of a GMT file, or a
        mapping of set name → genes.

    Returns
    -------
    tuple
        Set name → genes (repeats removed, file order kept), and a label for provenance.
    """
    if isinstance(gene_sets, Mapping):
        sets = {}
        for name, genes in gene_sets.items():
            if isinstance(genes, str) or not isinstance(genes, Sequence | set | frozenset):
                raise ItmeParameterError(
                    "gene_sets", "a mapping of set name → list of genes", type(genes).__name__
                )
            sets[str(name)] = list(dict.fromkeys(str(g) for g in genes))
        if not sets:
            raise ItmeParameterError("gene_sets", "at least one gene set", "an empty mapping")
        return sets, "custom (dict)"
    if isinstance(gene_sets, str) and gene_sets.lower() == "hallmark":
        return read_gmt(hallmark_path()), HALLMARK_NAME
    if isinstance(gene_sets, str | Path):
        path = Path(gene_sets)
        if not path.is_file():
            raise ItmeParameterError(
                "gene_sets", "'hallmark', a path to an existing GMT file, or a dict", str(gene_sets)
            )
        return read_gmt(path), str(path)
    raise ItmeParameterError("gene_sets", "'hallmark', a GMT path or a dict", gene_sets)
