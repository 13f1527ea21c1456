"""A tiny valid cohort and config for fault tests (3 patients, 3 FCS files, no clinical data)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from helpers import fcs_factory


def tiny_cohort(folder: Path) -> dict:
    """Write samples.csv, panel.csv and 3 FCS files into ``folder``; return a valid config."""
    rows = ["file_name,sample_id,patient_id"]
    for i in range(3):
        data = np.ones((20, 3), np.float32)
        fcs_factory.write(folder / f"s{i}.fcs", data, ["Y89Di", "Nd142Di", "Ir191Di"])
        rows.append(f"s{i}.fcs,S{i},P{i}")
    (folder / "samples.csv").write_text("\n".join(rows) + "\n")
    (folder / "panel.csv").write_text(
        "fcs_colname,antigen,marker_class\nY89Di,CD45,type\nNd142Di,CD19,type\nIr191Di,DNA1,none\n"
    )
    return {
        "seed": 1,
        "output": "out",
        "inputs": {"samples": "samples.csv", "panel": "panel.csv"},
        "cytokines": {"groupby": ["itme_cluster"]},
        "patients": {"k": 2},
        "rnaseq": {
            "contrasts": [
                {"name": "c21", "groupby": "itme_cluster", "test": ["2"], "reference": ["1"]}
            ]
        },
    }
