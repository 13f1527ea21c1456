"""Synthetic demo cohort in the itme input contract (docs/input-formats.md).

**Everything this module writes is synthetic.** It is modelled on the numbers of Visram et
al. 2021 (Blood Cancer J 2021;11:45) so that the whole pipeline can be run, and checked against a known
truth, without patient data: 39 patients (13 NDMM, 11 RMM, 15 TRMM), one without CyTOF, three
planted iTME clusters (24 / 5 / 9 of the 38 with CyTOF; cluster 1 mostly NDMM/RMM, 2 and 3
mostly TRMM), planted subset shifts that echo the paper's Fig. 3, planted Hallmark pathway
shifts in the tumour RNA-seq (E2F, G2M, MYC up and interferon, TNFa, IL6, TGF-beta down in
clusters 2+3), survival that is better in cluster 1, and cytokines with no group difference.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from importlib import resources
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from anndata import AnnData

from itme._progress import track
from itme._random import RngLike, as_generator, draw_seed
from itme.core.annotate.phenotypes import PhenotypeTable
from itme.datasets._cells import simulate_cells
from itme.datasets._counts import simulate_counts
from itme.datasets._messy import MESSY, rename_channels
from itme.datasets._qc import plant_qc_events
from itme.errors import ItmeParameterError
from itme.io import hallmark_path, read_gmt, read_phenotypes, write_fcs

__all__ = ["simulate_cohort"]

logger = logging.getLogger(__name__)

PANEL = "lymphoid_visram2021"

#: % of CD45+ events of each subset in cluster 1 (the reference composition)
BASE_COMPOSITION = {
    "T1": 5.0, "T2": 3.0, "T6": 3.0, "T8": 3.0, "T4": 3.0, "T7": 2.5, "T9": 3.0, "T10": 1.5,
    "T11": 2.0, "T12": 3.0, "T13": 2.0, "T14": 1.5, "T15": 2.0, "T17": 2.0, "T18": 2.0,
    "T16": 1.2, "T19": 1.2, "T20": 1.2, "TCRgd-1": 1.5, "TCRgd-3": 0.8, "DN T": 1.0,
    "NK-5": 0.8, "NK CD56bright": 1.5, "NK CD16+ CD57-": 3.0, "NK CD16+ CD57+": 2.5,
    "B": 5.0, "Monocytes": 14.0, "Myeloid DC": 2.0,
}  # fmt: skip
#: what absorbs the rest of 100 % (varies with the planted subsets: neither planted nor null)
FILLER = "Other CD45+"
#: planted log2 fold changes of clusters 2 and 3 against cluster 1 (paper Fig. 3 directions)
PLANTED_SUBSETS = {
    "2": {"T1": -1.5, "T2": -1.5, "T12": -1.5, "T10": 1.6, "T16": 1.6, "T18": 1.6, "T19": 1.6,
          "T20": 1.6, "TCRgd-3": 1.6, "T14": 1.6},
    "3": {"T1": -1.5, "T2": -1.5, "T12": -1.5, "T8": -2.0, "T15": -2.0, "T9": -2.0, "T13": -2.0,
          "TCRgd-1": -2.0, "T6": -1.5, "T7": -1.5, "NK-5": 1.6},
}  # fmt: skip
#: planted Hallmark shifts (log2 fold change) of clusters 2 and 3 against cluster 1
PLANTED_PATHWAYS = {
    "HALLMARK_E2F_TARGETS": 0.8,
    "HALLMARK_G2M_CHECKPOINT": 0.8,
    "HALLMARK_MYC_TARGETS_V1": 0.8,
    "HALLMARK_INTERFERON_ALPHA_RESPONSE": -0.8,
    "HALLMARK_INTERFERON_GAMMA_RESPONSE": -0.8,
    "HALLMARK_TNFA_SIGNALING_VIA_NFKB": -0.8,
    "HALLMARK_IL6_JAK_STAT3_SIGNALING": -0.8,
    "HALLMARK_TGF_BETA_SIGNALING": -0.8,
}
#: share of each planted artefact class among the events of a file
QC_FRACTIONS = {"bead": 0.02, "debris": 0.04, "doublet": 0.04, "dead": 0.04, "cd45_negative": 0.06}
#: artefact shares of a failed sample (``failed_samples``: about 70 % of its events removed)
FAILED_QC_FRACTIONS = {
    "bead": 0.02,
    "debris": 0.30,
    "doublet": 0.04,
    "dead": 0.30,
    "cd45_negative": 0.06,
}
CYTOKINES = [
    "IL-6", "TNF alpha", "IFN gamma", "IL-10", "IL-8 (CXCL8)", "IL-1 beta", "IL-2", "IL-4",
    "IL-17A (CTLA-8)", "IP-10 (CXCL10)", "MCP-1 (CCL2)", "MIP-1 alpha (CCL3)", "SDF-1 alpha (CXCL12)",
    "BAFF", "APRIL", "HGF", "VEGF-A", "IL-2R (CD25)", "TNF-RII", "MIF",
]  # fmt: skip
STATUS_COUNTS = {"NDMM": 13, "RMM": 11, "TRMM": 15}
CLUSTER_SIZES = (24, 5, 9)
# share of each disease status within each cluster (cluster 1 mostly NDMM/RMM; 2, 3 TRMM)
_STATUS_MIX = {"1": (0.5, 0.42, 0.08), "2": (0.0, 0.2, 0.8), "3": (0.11, 0.0, 0.89)}


def _split(total: int, weights: tuple[float, ...]) -> list[int]:
    """Integer parts of ``total`` proportional to ``weights`` (largest remainders)."""
    raw = np.asarray(weights, float) / np.sum(weights) * total
    out = np.floor(raw).astype(int)
    for i in np.argsort(raw - out)[::-1][: total - out.sum()]:
        out[i] += 1
    return out.tolist()


def _patients(n: int, gen: np.random.Generator) -> pd.DataFrame:
    """Patient table: id, disease status, planted iTME cluster (empty for the one without CyTOF)."""
    statuses = ["NDMM", "RMM", "TRMM"]
    status_n = dict(zip(statuses, _split(n, tuple(STATUS_COUNTS.values())), strict=True))
    n_cytof = n - 1
    sizes = _split(n_cytof, CLUSTER_SIZES)
    pool = {s: status_n[s] for s in statuses}
    rows = []
    # fill clusters 2 and 3 first (mostly TRMM), then cluster 1 takes the rest
    for cluster, size in (("2", sizes[1]), ("3", sizes[2]), ("1", sizes[0])):
        want = _split(size, _STATUS_MIX[cluster])
        for s, m in zip(statuses, want, strict=True):
            take = min(m, pool[s])
            rows += [(s, cluster)] * take
            pool[s] -= take
        short = size - sum(1 for r in rows if r[1] == cluster)
        for _ in range(short):  # the preferred statuses ran out: take whatever is left
            s = max(pool, key=pool.get)
            rows.append((s, cluster))
            pool[s] -= 1
    leftover = [s for s in statuses for _ in range(pool[s])]
    rows.append((leftover[0] if leftover else "NDMM", ""))  # the patient without CyTOF
    order = gen.permutation(len(rows))
    table = pd.DataFrame([rows[i] for i in order], columns=["disease_status", "itme_cluster"])
    table.insert(0, "patient_id", [f"MM{i + 1:02d}" for i in range(len(table))])
    return table


def _compositions(
    clusters: pd.Series, gen: np.random.Generator, noise: float = 0.3
) -> pd.DataFrame:
    """% of CD45+ per subset per patient: cluster composition × log-normal patient noise."""
    names = list(BASE_COMPOSITION)
    base = np.log(np.array([BASE_COMPOSITION[s] for s in names]))
    rows = []
    for cluster in clusters:
        logx = base.copy()
        for subset, lfc in PLANTED_SUBSETS.get(cluster, {}).items():
            logx[names.index(subset)] += lfc * np.log(2)
        rows.append(np.exp(logx + noise * gen.standard_normal(len(names))))
    pct = pd.DataFrame(rows, columns=names, index=clusters.index)
    scale = np.minimum(1.0, 92.0 / pct.sum(axis=1))  # keep at least 8 % for the filler group
    pct = pct.mul(scale, axis=0)
    pct[FILLER] = 100.0 - pct.sum(axis=1)
    return pct


def _panel() -> pd.DataFrame:
    ref = resources.files("itme").joinpath("data", "panels", f"{PANEL}.csv")
    with resources.as_file(ref) as path:
        return pd.read_csv(path, dtype=str, keep_default_na=False)


def _fcs_events(
    panel: pd.DataFrame,
    phenotypes: PhenotypeTable,
    proportions: dict[str, float],
    n: int,
    gen: np.random.Generator,
    fractions: dict[str, float] = QC_FRACTIONS,
) -> tuple[np.ndarray, np.ndarray]:
    antigens = list(panel["antigen"])
    cells, labels = simulate_cells(phenotypes, antigens, n, proportions, rng=gen)
    col = {a: i for i, a in enumerate(antigens)}
    roles = {
        "dna": [col["DNA1"], col["DNA2"]],
        "cisplatin": [col["cisplatin_194"], col["cisplatin"]],
        "bead": [
            col["beads"],
            col["CD25"],
            col["CD161"],
            col["PD-1"],
            col["CXCR3"],
        ],  # Ce140, Eu151, Eu153, Ho165, Lu175
        "event_length": col["Event_length"],
        "center": col["Center"],
        "offset": col["Offset"],
        "width": col["Width"],
        "residual": col["Residual"],
        "cd45": col["CD45"],
    }
    values, truth = plant_qc_events(cells, channels=roles, fractions=fractions, rng=gen)
    values[:, col["Time"]] = np.sort(gen.uniform(0, 600_000, n)).astype(np.float32)
    labels = np.where(truth == "kept", labels, truth)
    return values, labels


def _messy_roles(
    cytof: pd.DataFrame, n_split: int, n_failed: int, n_relapse: int
) -> dict[str, Any]:
    """Patients of cluster 1 (in order) that get split files, a failed sample, a relapse."""
    ones = list(cytof.loc[cytof["itme_cluster"] == "1", "patient_id"])
    need = n_split + n_failed + n_relapse
    if need > len(ones):
        raise ItmeParameterError(
            "split_patients + failed_samples + relapse_patients",
            f"at most {len(ones)} (patients of cluster 1)",
            need,
        )
    threes = list(cytof.index[cytof["itme_cluster"] == "3"])
    return {
        "split": ones[:n_split],
        "failed": ones[n_split : n_split + n_failed],
        "relapse": ones[n_split + n_failed : need],
        "relapse_source": threes[0] if threes else None,
    }


def _clinical(patients: pd.DataFrame, gen: np.random.Generator) -> pd.DataFrame:
    n = len(patients)
    status = patients["disease_status"]
    cluster = patients["itme_cluster"]
    lines = np.where(
        status == "NDMM", 0, np.where(status == "RMM", gen.integers(1, 4, n), gen.integers(3, 8, n))
    )
    lines = np.where(cluster == "3", lines + 3, lines)
    # daratumumab progression at sampling: 4 of cluster 2 and 3 other TRMM patients (paper)
    dara = np.zeros(n, dtype=int)
    c2 = np.flatnonzero((cluster == "2").to_numpy())
    dara[c2[: min(4, c2.size)]] = 1
    others = np.flatnonzero(((status == "TRMM") & (cluster != "2")).to_numpy())
    dara[gen.permutation(others)[: max(0, 7 - int(dara.sum()))]] = 1
    median_os = np.select(
        [cluster == "1", cluster == "2", cluster == "3"], [90.0, 18.0, 12.0], 40.0
    )
    os_time = gen.exponential(median_os / np.log(2))
    pfs_time = np.minimum(os_time, gen.exponential(median_os / 3 / np.log(2)))
    follow = gen.uniform(24, 72, n)
    table = pd.DataFrame(
        {
            "patient_id": patients["patient_id"],
            "disease_status": status,
            "age": np.round(gen.normal(np.where(status == "NDMM", 64, 67), 8, n)).astype(int),
            "sex": gen.choice(["F", "M"], n, p=[0.4, 0.6]),
            "iss_stage": gen.choice(["I", "II", "III"], n, p=[0.35, 0.4, 0.25]),
            "high_risk_cytogenetics": gen.choice(["no", "yes"], n, p=[0.7, 0.3]),
            "prior_lines": lines,
            "dara_progressing": dara,
            "os_months": np.round(np.minimum(os_time, follow), 1),
            "os_event": (os_time <= follow).astype(int),
            "pfs_months": np.round(np.minimum(pfs_time, follow), 1),
            "pfs_event": (pfs_time <= follow).astype(int),
            "rnaseq_id": [f"RNA-{p}" for p in patients["patient_id"]],
        }
    )
    return table


def _cytokines(patients: pd.DataFrame, gen: np.random.Generator) -> pd.DataFrame:
    """Luminex-style export with no true group difference (every analyte one distribution)."""
    n = len(patients)
    table = {"patient_id": patients["patient_id"].to_numpy()}
    for k, analyte in enumerate(CYTOKINES):
        median = 10 ** gen.uniform(0.3, 3.0)
        values = median * np.exp(gen.normal(0, 0.8, n))
        lloq, uloq = median * 0.35, median * 8
        cells = []
        for v in values:
            if v < lloq:
                cells.append("OOR <")
            elif v > uloq:
                cells.append("OOR >")
            elif v < lloq * 1.3:
                cells.append(f"*{v:.2f}")  # extrapolated below the lowest standard
            else:
                cells.append(f"{v:.2f}")
        if k % 7 == 3:
            cells[int(gen.integers(n))] = ""  # a blank well
        table[analyte] = cells
    return pd.DataFrame(table)


def simulate_cohort(
    out_dir: str | PathLike[str],
    *,
    n_patients: int = 39,
    cells_per_sample: int = 20_000,
    n_genes: int = 20_000,
    rng: RngLike = None,
    messy: bool = False,
    naming: Sequence[str] | None = None,
    split_patients: int = 0,
    relapse_patients: int = 0,
    failed_samples: int = 0,
    missing_marker: str | None = None,
) -> dict[str, Path]:
    """Write a synthetic cohort in the itme input contract, with its truth.

    All data are synthetic (see the module docstring for what is planted). Files written
    into ``out_dir``: one FCS file per patient with CyTOF (36-antibody lymphoid panel plus
    DNA, cisplatin, bead, Event_length and Gaussian-parameter channels, with planted beads,
    doublets, debris, dead and CD45− events), ``samples.csv``, ``panel.csv``,
    ``clinical.csv`` (NDMM/RMM/TRMM, covariates, OS/PFS, ``rnaseq_id``), ``counts.tsv``
    (genes × samples with a ``gene_name`` column and planted Hallmark shifts),
    ``cytokines.csv`` (Luminex style with ``OOR <``, ``OOR >``, ``*`` values and blanks)
    and ``truth.json``.

    Parameters
    ----------
    out_dir
        Folder to write into (created).
    n_patients
        Patients (≥ 8); the last one drawn has no CyTOF file, as in the paper.
    cells_per_sample
        Events per FCS file, artefacts included.
    n_genes
        Genes in the count matrix.
    rng
        Seed or generator; the same value writes the same files.
    messy
        Shorthand for the cohort "as it arrives" (:data:`itme.datasets._messy.MESSY`): three
        channel namings, one split file, three patients with a relapse sample, one failed
        sample. Explicit values of the four options below take precedence when non-default.
    naming
        Channel naming convention of each acquisition run (batch ``B1``, ``B2``, ...), among
        ``Pr141Di``, ``141Pr`` (``$PnS`` ``141Pr_CD3``) and ``CD3_Pr141``; the panel keeps
        ``Pr141Di``. ``None``: every file as the panel.
    split_patients
        Patients (of iTME cluster 1) whose events are split over two files (``_a``, ``_b``)
        of one sample.
    relapse_patients
        Patients (of cluster 1) with a second sample at time point ``relapse``; the first
        of them relapses with the composition of a cluster-3 patient. A ``timepoint``
        column (``diagnosis`` / ``relapse``) is then written to samples.csv.
    failed_samples
        Patients (of cluster 1) whose only sample failed: mostly debris and dead cells,
        about 30 % of events kept.
    missing_marker
        Antigen whose channel the files of the third run (batch ``B3``) lack, as when a
        panel changed between runs (the panel still lists it).

    The effects draw from their own random stream: the other patients' files are those of
    the cohort without them, and ``truth.json`` records them under ``messy``.

    Returns
    -------
    dict mapping ``samples``, ``panel``, ``clinical``, ``counts``, ``cytokines``, ``truth``
    and ``fcs_dir`` to their paths.
    """
    if n_patients < 8:
        raise ItmeParameterError(
            "n_patients", "at least 8 (three clusters need members)", n_patients
        )
    if cells_per_sample < 1000:
        raise ItmeParameterError("cells_per_sample", "at least 1000", cells_per_sample)
    seed = draw_seed(rng)
    gen = as_generator(seed)
    streams = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(6)]
    out = Path(out_dir)
    (out / "fcs").mkdir(parents=True, exist_ok=True)
    patients = _patients(n_patients, gen)
    cytof = patients[patients["itme_cluster"] != ""].reset_index(drop=True)
    compositions = _compositions(cytof["itme_cluster"], streams[0])
    panel = _panel()
    phenotypes = read_phenotypes(PANEL)
    var = pd.DataFrame(
        {"channel": panel["fcs_colname"].to_numpy(), "antigen": panel["antigen"].to_numpy()},
        index=panel["fcs_colname"].to_numpy(),
    )
    if messy:
        naming = naming if naming is not None else MESSY["naming"]
        split_patients = split_patients or MESSY["split_patients"]
        relapse_patients = relapse_patients or MESSY["relapse_patients"]
        failed_samples = failed_samples or MESSY["failed_samples"]
        missing_marker = missing_marker or MESSY["missing_marker"]
    roles = _messy_roles(cytof, split_patients, failed_samples, relapse_patients)
    timepoints = bool(roles["relapse"])

    def write(values: np.ndarray, name: str, sample_id: str, pid: str, i: int, tp: str) -> None:
        run = i % 3
        run_var = var if naming is None else rename_channels(var, naming[run % len(naming)])
        if missing_marker is not None and run == 2:  # the third run's panel lacks it
            keep = (var["antigen"] != missing_marker).to_numpy()
            values, run_var = values[:, keep], run_var.iloc[keep]
        write_fcs(
            AnnData(values, var=run_var),
            out / "fcs" / name,
            keywords={"$CYT": "itme-simulated-CyTOF", "$DATE": "01-JAN-2021"},
        )
        sample_rows.append(
            {
                "file_name": f"fcs/{name}",
                "sample_id": sample_id,
                "patient_id": pid,
                "batch": f"B{1 + run}",
                **({"timepoint": tp} if timepoints else {}),
            }
        )

    sample_rows: list[dict[str, str]] = []
    cell_truth = {}
    for i, row in track(list(cytof.iterrows()), description="simulating FCS files"):
        proportions = compositions.loc[i].to_dict()
        values, labels = _fcs_events(panel, phenotypes, proportions, cells_per_sample, streams[1])
        pid = row["patient_id"]
        if pid in roles["failed"]:  # drawn above as usual, so the other files do not change
            values, labels = _fcs_events(
                panel, phenotypes, proportions, cells_per_sample, streams[5], FAILED_QC_FRACTIONS
            )
        if pid in roles["split"]:
            half = len(values) // 2
            write(values[:half], f"{pid}_a.fcs", f"{pid}_BM_a", pid, i, "diagnosis")
            write(values[half:], f"{pid}_b.fcs", f"{pid}_BM_b", pid, i + 1, "diagnosis")
        else:
            write(values, f"{pid}.fcs", f"{pid}_BM", pid, i, "diagnosis")
        cell_truth[pid] = pd.Series(labels).value_counts().to_dict()
    relapse_truth = {}
    for k, pid in enumerate(roles["relapse"]):
        i = int(cytof.index[cytof["patient_id"] == pid][0])
        source = roles["relapse_source"] if k == 0 else i
        proportions = compositions.loc[source].to_dict()
        values, _ = _fcs_events(panel, phenotypes, proportions, cells_per_sample, streams[5])
        write(values, f"{pid}_relapse.fcs", f"{pid}_BM_relapse", pid, i + 2, "relapse")
        relapse_truth[pid] = str(cytof.at[source, "itme_cluster"])
    paths = {"fcs_dir": out / "fcs"}
    paths["samples"] = out / "samples.csv"
    pd.DataFrame(sample_rows).to_csv(paths["samples"], index=False)
    paths["panel"] = out / "panel.csv"
    panel.to_csv(paths["panel"], index=False)
    clinical = _clinical(patients, streams[2])
    paths["clinical"] = out / "clinical.csv"
    clinical.to_csv(paths["clinical"], index=False)
    # RNA-seq of CD138+ cells for every patient; the one without CyTOF is like cluster 1
    groups = pd.Series(
        patients["itme_cluster"].replace("", "1").to_numpy(), index=clinical["rnaseq_id"].to_numpy()
    )
    shifts = {c: dict(PLANTED_PATHWAYS) for c in ("2", "3")}
    hallmark = read_gmt(hallmark_path())
    sim = simulate_counts(
        groups, gene_sets=hallmark, shifts=shifts, n_genes=n_genes, rng=streams[3]
    )
    counts = sim.counts.T
    counts.insert(0, "gene_name", sim.genes.loc[counts.index, "gene_name"].to_numpy())
    counts.index.name = "gene_id"
    paths["counts"] = out / "counts.tsv"
    counts.to_csv(paths["counts"], sep="\t")
    paths["cytokines"] = out / "cytokines.csv"
    _cytokines(patients, streams[4]).to_csv(paths["cytokines"], index=False)
    planted = sorted({s for d in PLANTED_SUBSETS.values() for s in d})
    truth = {
        "synthetic": True,
        "seed": seed,
        "itme_cluster": dict(zip(cytof["patient_id"], cytof["itme_cluster"], strict=True)),
        "no_cytof": patients.loc[patients["itme_cluster"] == "", "patient_id"].tolist(),
        "differential_subsets": planted,
        "null_subsets": sorted(s for s in BASE_COMPOSITION if s not in planted),
        "filler_subset": FILLER,
        "planted_subset_log2fc": PLANTED_SUBSETS,
        "pathways": {k: ("up" if v > 0 else "down") for k, v in PLANTED_PATHWAYS.items()},
        "pathway_contrast": {"groupby": "itme_cluster", "test": ["2", "3"], "reference": ["1"]},
        "cytokines_differ": False,
        "qc_fractions": QC_FRACTIONS,
        "composition_pct": compositions.set_axis(cytof["patient_id"])
        .round(4)
        .to_dict(orient="index"),
        "events_by_truth": cell_truth,
    }
    if (
        naming is not None
        or missing_marker is not None
        or any(roles[k] for k in ("split", "failed", "relapse"))
    ):
        truth["messy"] = {
            "naming": None
            if naming is None
            else {f"B{1 + r}": naming[r % len(naming)] for r in range(3)},
            "split": roles["split"],
            "failed": [f"{p}_BM" for p in roles["failed"]],
            "relapse_itme_cluster": relapse_truth,
            "patients_analysed": len(cytof) - len(roles["failed"]),
            "missing_marker": missing_marker,
            "files_without_marker": [
                r["file_name"].removeprefix("fcs/") for r in sample_rows if r["batch"] == "B3"
            ]
            if missing_marker
            else [],
        }
    paths["truth"] = out / "truth.json"
    paths["truth"].write_text(json.dumps(truth, indent=2) + "\n")
    logger.info("simulated %d patients (%d with CyTOF) into %s", len(patients), len(cytof), out)
    return paths
