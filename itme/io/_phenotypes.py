"""Phenotype tables (lineage → subset marker rules) from YAML files or the built-in tables.

The format is documented in ``docs/clustering.md``; parsing and checking is
:func:`itme.core.annotate.phenotypes.parse_phenotypes`.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from itme.core.annotate.phenotypes import PhenotypeTable, parse_phenotypes
from itme.errors import ItmeInputError

__all__ = ["BUILTIN_PHENOTYPES", "read_phenotypes"]

#: phenotype tables shipped with itme (``itme/data/phenotypes/<name>.yaml``)
BUILTIN_PHENOTYPES = ("lymphoid_visram2021",)


def read_phenotypes(source: str | Path | PhenotypeTable) -> PhenotypeTable:
    """Load a phenotype table from a built-in name, a YAML file, or pass a table through.

    Parameters
    ----------
    source
        A :class:`PhenotypeTable`; the name of a table shipped with itme
        (``"lymphoid_visram2021"``); or the path of a YAML file.

    Returns
    -------
    PhenotypeTable
        The validated table.

    Raises
    ------
    ItmeInputError
        No such file or built-in name; a table that breaks the format (see
        :func:`itme.core.annotate.phenotypes.parse_phenotypes`).
    """
    if isinstance(source, PhenotypeTable):
        return source
    if isinstance(source, str) and source in BUILTIN_PHENOTYPES:
        ref = resources.files("itme").joinpath("data", "phenotypes", f"{source}.yaml")
        return parse_phenotypes(ref.read_text(encoding="utf-8"), source=f"{source}.yaml")
    path = Path(source)
    if not path.is_file():
        raise ItmeInputError(
            where=str(path),
            expected=f"a phenotype YAML file or one of {', '.join(BUILTIN_PHENOTYPES)}",
            found="no such file",
            fix="Check the path, or pass the name of a built-in table.",
        )
    return parse_phenotypes(path.read_text(encoding="utf-8"), source=str(path))
