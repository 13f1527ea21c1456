"""Write the golden-file inputs that itme generates or extracts (run once; outputs committed).

- ``simcohort_counts.tsv.gz`` / ``simcohort_clinical.tsv``: the synthetic cohort of
  :func:`itme.datasets.simulate_cohort` (30 patients, 13,000 genes, ``rng=2013``), with the
  planted iTME cluster of each patient (``truth.json``) added to the clinical table (empty
  for the patient without CyTOF, as in the simulator). Committed so that the golden files do
  not depend on the simulator staying byte-identical.
- ``pasilla_gene_counts.tsv.gz`` / ``pasilla_sample_annotation.csv``: copied from the
  ``inmoose`` sdist (``pip download --no-binary :all: --no-deps inmoose==0.9.1``), which
  ships the Bioconductor ``pasilla`` counts (see tests/golden/README.md).
- ``lung.tsv``: R ``survival``'s ``lung`` data (written by ``survival_golden.R``, not here).

Usage::

    PYTHONPATH=$PWD /work/main/.venv/bin/python scripts/golden/make_inputs.py \
        --inmoose /tmp/inmoose-0.9.1 [--out tests/golden/inputs]
"""

from __future__ import annotations

import argparse
import gzip
import json
import shutil
import tempfile
import warnings
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[2]
SEED = 2013
N_PATIENTS = 30
N_GENES = 13_000


def write_gzip(frame: pd.DataFrame, path: Path, **kwargs) -> None:
    """gzip TSV without a timestamp in the header (the same input writes the same bytes)."""
    text = frame.to_csv(sep="\t", **kwargs)
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz:
        gz.write(text.encode())


def simulated_cohort(out: Path) -> None:
    from itme.datasets import simulate_cohort

    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        paths = simulate_cohort(
            tmp, n_patients=N_PATIENTS, cells_per_sample=1000, n_genes=N_GENES, rng=SEED
        )
        counts = pd.read_csv(paths["counts"], sep="\t", index_col=0)
        clinical = pd.read_csv(paths["clinical"])
        truth = json.loads(Path(paths["truth"]).read_text())
    clinical["itme_cluster"] = clinical["patient_id"].map(truth["itme_cluster"])
    write_gzip(counts, out / "simcohort_counts.tsv.gz")
    clinical.to_csv(out / "simcohort_clinical.tsv", sep="\t", index=False)


def pasilla(inmoose: Path, out: Path) -> None:
    data = inmoose / "inmoose" / "data" / "pasilla"
    counts = pd.read_csv(data / "pasilla_gene_counts.tsv", sep="\t", index_col=0)
    write_gzip(counts, out / "pasilla_gene_counts.tsv.gz")
    shutil.copyfile(data / "pasilla_sample_annotation.csv", out / "pasilla_sample_annotation.csv")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inmoose", type=Path, help="extracted inmoose sdist folder")
    parser.add_argument("--out", type=Path, default=ROOT / "tests" / "golden" / "inputs")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    simulated_cohort(args.out)
    if args.inmoose is not None:
        pasilla(args.inmoose, args.out)


if __name__ == "__main__":
    main()
