"""CPU seconds of bead normalisation + NNLS compensation in memory and on a cohort store (#12).

Six simulated bead runs (``itme.datasets.simulate_bead_run``: 100,000 cells and 2,000 EQ
beads each, 15 metals + the 5 bead metals + Time) are written as FCS files and read into
memory and into a cohort store. Prints the CPU seconds (``time.process_time``: every thread
of this process) of ``pp.normalize_beads`` + ``pp.compensate`` in memory, of the same on the
store (fitting only: the bead gate per sample and the factors' spread), and of one read of
the store's counts as stored, bead-normalised, and normalised + compensated (what every
later stage pays when it reads the counts), and whether the store's counts equal the
in-memory ones byte for byte. Dask's threaded scheduler, 2 threads.

    python scripts/bench_store_corrections.py
"""

from __future__ import annotations

import shutil
import tempfile
import time
import warnings
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import zarr

import itme
from itme.datasets import simulate_bead_run, simulate_spillover_matrix

METALS = ["Y89Di", "Nd142Di", "Nd143Di", "Nd144Di", "Nd145Di", "Nd146Di", "Sm147Di",
          "Sm149Di", "Gd155Di", "Gd156Di", "Dy162Di", "Er166Di", "Yb172Di", "Ir191Di",
          "Ir193Di"]  # fmt: skip


def cohort(folder: Path, n_files: int = 6) -> tuple[Path, Path, list[str]]:
    rows = ["file_name,sample_id,patient_id"]
    for k in range(n_files):
        run = simulate_bead_run(METALS, n_cells=100_000, n_beads=2000, drift=0.2,
                                sample_id=f"S{k}", rng=k)  # fmt: skip
        itme.io.write_fcs(run, folder / f"f{k}.fcs")
        rows.append(f"f{k}.fcs,S{k},P{k}")
    names = list(run.var_names)
    (folder / "samples.csv").write_text("\n".join(rows) + "\n")
    panel = ["fcs_colname,antigen,marker_class", "Time,Time,none"]
    panel += [f"{c},A{c},type" for c in names[1:]]
    (folder / "panel.csv").write_text("\n".join(panel) + "\n")
    return folder / "samples.csv", folder / "panel.csv", names[1:]


def cpu(f):
    c, w = time.process_time(), time.perf_counter()
    out = f()
    return out, time.process_time() - c, time.perf_counter() - w


def main() -> None:
    folder = Path(tempfile.mkdtemp(prefix="bench_store_corrections_"))
    try:
        samples, panel, metals = cohort(folder)
        spill = simulate_spillover_matrix(metals, rng=4)

        def prep(adata) -> None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                itme.pp.normalize_beads(adata)
            itme.pp.compensate(adata, spillover=spill)

        dask.config.set(scheduler="threads", num_workers=2)
        mem = itme.io.read_cohort(samples, panel)
        print(f"{mem.n_obs} events, {mem.n_vars} channels")
        _, c, w = cpu(lambda: prep(mem))
        print(f"in memory, normalize_beads + compensate: {c:.2f} CPU s ({w:.2f} s wall)")
        store = folder / "c.zarr"
        lazy = itme.io.read_cohort(samples, panel, store=store, chunk_rows=65536)
        _, c, w = cpu(lambda: prep(lazy))
        print(f"store, normalize_beads + compensate (fit): {c:.2f} CPU s ({w:.2f} s wall)")
        itme.io.update_store(lazy)
        stored = da.from_zarr(zarr.open_group(store)["layers/raw"])
        again = itme.io.open_store(store)
        reads = {
            "stored counts": stored,
            "bead-normalised counts": itme._chain.lazy_beads(again, stored),
            "normalised + compensated counts": again.layers["raw"],
        }
        for name, array in reads.items():
            out, c, w = cpu(array.compute)
            print(f"store, one read of the {name}: {c:.2f} CPU s ({w:.2f} s wall)")
        print("store's counts == in-memory counts:", np.array_equal(out, mem.layers["raw"]))
    finally:
        shutil.rmtree(folder)


if __name__ == "__main__":
    main()
