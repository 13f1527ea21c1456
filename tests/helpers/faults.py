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
    return tiny_config()


def tiny_config() -> dict:
    """The config of :func:`tiny_cohort` (2 iTME clusters, one RNA-seq contrast)."""
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


def toy_config(folder: Path):
    """A config for :func:`toy_stages` (only its seed is used)."""
    from itme.pipeline import load_config

    (folder / "samples.csv").write_text("file_name,sample_id,patient_id\n")
    (folder / "panel.csv").write_text("fcs_colname,antigen,marker_class\n")
    return load_config(
        {"seed": 5, "inputs": {"samples": "samples.csv", "panel": "panel.csv"}}, base_dir=folder
    )


TOY_STAGES = ("draw", "scale", "summarise")


def toy_stages(pause_in: str | None = None) -> list:
    """Three stages writing tables; ``pause_in`` half-writes its table, says so and sleeps."""
    import time

    import pandas as pd

    from itme._files import atomic_path
    from itme._outputs import Output
    from itme.pipeline._runner import Stage

    def pause(ctx, name):
        if ctx.stage.name == pause_in:
            with atomic_path(ctx.path("tables", f"{name}.csv")) as tmp:
                tmp.write_text("half,written\n")
                (ctx.out / "paused").write_text(ctx.stage.name)
                time.sleep(120)  # killed here

    def draw(ctx):
        pause(ctx, "draw")
        rng = np.random.default_rng(ctx.seed)
        ctx.table("draw", pd.DataFrame({"x": rng.normal(size=50)}))
        return {"n": 50}

    def scale(ctx):
        pause(ctx, "scale")
        x = pd.read_csv(ctx.path("tables", "draw.csv"), index_col=0)
        rng = np.random.default_rng(ctx.seed)
        ctx.table("scale", x * rng.uniform(1, 2))
        return {}

    def summarise(ctx):
        pause(ctx, "summarise")
        x = pd.read_csv(ctx.path("tables", "scale.csv"), index_col=0)
        ctx.table("summarise", x.describe())
        return {}

    funcs = {"draw": draw, "scale": scale, "summarise": summarise}
    return [
        Stage(
            name,
            funcs[name],
            params=lambda c: {"seed": c.seed},
            requires=TOY_STAGES[:k],
            outputs=(Output(name, "table", "stats"),),
        )
        for k, name in enumerate(TOY_STAGES)
    ]


def run_toy(out: str, config_folder: str, pause_in: str | None = None) -> None:
    """Run :func:`toy_stages` into ``out`` (the entry point of the killed subprocess)."""
    from itme.pipeline._runner import run_stages

    run_stages(toy_config(Path(config_folder)), toy_stages(pause_in), out=Path(out))
