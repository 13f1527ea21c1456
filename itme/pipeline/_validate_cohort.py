"""The cohort checks of ``itme validate`` with the config's ingest options and time points.

:func:`cohort_problems` (called by ``pipeline/_validate.py``) passes every ingest option that
changes what :func:`itme.io.read_cohort` accepts (antigen aliases, missing markers), so
``validate`` and ``run`` agree, and checks ``stats.timepoint`` against the sample sheet.
"""

from __future__ import annotations

from itme import io
from itme.errors import ItmeError
from itme.pipeline._config import Config


def cohort_problems(config: Config) -> list[str]:
    """Problems of the sample sheet, the panel and the FCS files, as ``run`` would meet them.

    Parameters
    ----------
    config
        The validated config.

    Returns
    -------
    One line per problem (empty when the cohort can be read and analysed).
    """
    i, ingest = config.inputs, config.ingest
    found = io.check_cohort(
        i.samples,
        i.panel,
        unpanelled=ingest.unpanelled,
        antigen_aliases=ingest.antigen_aliases,
        missing_markers=ingest.missing_markers,
    )
    wanted = config.stats.timepoint
    if wanted is not None and not found:
        try:
            sheet, _ = io.read_samples(i.samples)
        except ItmeError as exc:  # reported by check_cohort already; kept for safety
            return [*found, str(exc)]
        column = io.timepoint_column(sheet.columns)
        if column is None:
            found.append(
                f"stats.timepoint: {wanted!r} given, but samples.csv has no timepoint or "
                "visit column"
            )
        elif wanted not in set(sheet[column]):
            found.append(
                f"stats.timepoint: {wanted!r} is not a value of samples.csv column {column} "
                f"({', '.join(sorted(set(sheet[column])))})"
            )
    return found
