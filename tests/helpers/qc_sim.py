"""Synthetic CyTOF cohort with planted QC events, on the reference panel (tests of pp.clean)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from anndata import AnnData

from itme.core.clean.channels import detect_roles
from itme.datasets._qc import plant_qc_events, simulate_good_cells

PANEL = Path(__file__).resolve().parents[2] / "itme" / "data" / "panels" / "lymphoid_visram2021.csv"

FRACTIONS = {"bead": 0.03, "debris": 0.08, "doublet": 0.06, "dead": 0.10, "cd45_negative": 0.12}


def panel(gaussian: bool = True) -> pd.DataFrame:
    table = pd.read_csv(PANEL)
    if not gaussian:
        table = table[~table["fcs_colname"].isin(["Center", "Offset", "Width", "Residual"])]
    return table.reset_index(drop=True)


def planted_cohort(
    seed: int,
    n_per_sample: int = 30_000,
    n_samples: int = 2,
    gaussian: bool = True,
    fractions: dict[str, float] | None = None,
) -> tuple[AnnData, np.ndarray]:
    """AnnData shaped like read_cohort's output, plus the truth label of every event."""
    table = panel(gaussian)
    names = table["antigen"].tolist()
    roles = detect_roles(names, table["fcs_colname"].tolist(), names)
    channels = {r: v for r, v in roles.items() if r != "bead_distance"}
    rng = np.random.default_rng(seed)
    blocks, truths = [], []
    for _ in range(n_samples):
        good = simulate_good_cells(n_per_sample, len(names), cd45=roles["cd45"][0], rng=rng)
        x, truth = plant_qc_events(
            good, channels=channels, fractions=fractions or FRACTIONS, rng=rng
        )
        blocks.append(x)
        truths.append(truth)
    X = np.concatenate(blocks).astype(np.float32)
    sample_ids = np.repeat([f"S{i + 1}" for i in range(n_samples)], n_per_sample)
    obs = pd.DataFrame(
        {"sample_id": pd.Categorical(sample_ids), "patient_id": pd.Categorical(sample_ids)},
        index=[f"{s}_{i % n_per_sample}" for i, s in enumerate(sample_ids)],
    )
    var = pd.DataFrame(
        {
            "channel": table["fcs_colname"].to_numpy(),
            "antigen": table["antigen"].to_numpy(),
            "marker_class": pd.Categorical(
                table["marker_class"], categories=["type", "state", "qc", "none"]
            ),
            "in_panel": True,
        },
        index=pd.Index(names),
    )
    adata = AnnData(X=X, obs=obs, var=var, layers={"raw": X})
    return adata, np.concatenate(truths)
