"""The run configuration: YAML validated by pydantic models (docs/architecture.md, "Configuration").

Every model forbids unknown keys, so a typo is an error naming the key and its nearest valid
spelling. Relative paths are resolved from the config file's folder. The pipeline unpacks
these models into keyword arguments; library functions never see them.
``docs/configuration.md`` is generated from these models (``itme config-reference``).
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveInt,
    ValidationError,
    field_validator,
    model_validator,
)

from itme.core.clean.steps import GATING_COFACTOR, STEPS, canonical_step
from itme.errors import ItmeError, ItmeInputError
from itme.pp import MIN_CELLS, MIN_FRACTION_KEPT

#: step names the config accepts: every step of the table and its aliases
_STEP_NAMES_ACCEPTED = tuple(name for s in STEPS for name in (s.name, *s.aliases))
_STEP_ALIASES = ", ".join(f"{a} = {s.name}" for s in STEPS for a in s.aliases)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Inputs(_Section):
    """Input files (docs/input-formats.md). Relative paths are resolved from the config file's folder."""

    samples: Path = Field(
        description="samples.csv: file_name, sample_id, patient_id, any further columns"
    )
    panel: Path = Field(
        description="panel.csv: fcs_colname, antigen, marker_class (type/state/qc/none)"
    )
    clinical: Path | None = Field(
        None,
        description="clinical.csv: patient_id, disease_status, covariates, <endpoint>_months/_event",
    )
    counts: Path | None = Field(
        None, description="RNA-seq raw counts (genes × samples TSV/CSV, or h5ad); optional"
    )
    cytokines: Path | None = Field(
        None, description="Luminex export (patient_id + one column per analyte); optional"
    )
    spillover: Path | None = Field(
        None,
        description="spillover matrix CSV in CATALYST's layout (rows = emitting, columns = "
        "receiving channels, named by metal, diagonal 1), e.g. from itme.tl.estimate_spillover; "
        "applied to the raw counts at ingest (ingest.compensation); optional",
    )
    phenotypes: str = Field(
        "lymphoid_visram2021",
        description="phenotype table: the name of a built-in table (itme/data/phenotypes/<name>.yaml) or a YAML path",
    )


class Ingest(_Section):
    """Options of io.read_cohort."""

    unpanelled: Literal["keep", "drop"] = Field(
        "keep", description="channels in the files but not in the panel"
    )
    antigen_aliases: dict[str, list[str]] = Field(
        default_factory=dict,
        description="more antigen aliases for matching the panel to $PnS, e.g. "
        "{CD8: [CD8a]}, added to itme.io.ANTIGEN_ALIASES (docs/input-formats.md)",
    )
    missing_markers: Literal["exclude", "error"] = Field(
        "exclude",
        description="a panel channel some files lack: left out of the analysis with one "
        "warning listing the files, or an error (a panel column required = yes makes it an "
        "error for that channel)",
    )
    beads: Literal["none", "sample", "cohort"] = Field(
        "none",
        description="EQ-bead normalisation of the raw counts at ingest (pp.normalize_beads, "
        "Finck 2013): none; sample = each file's beads to its own mean (drift within files); "
        "cohort = to the mean of all files' beads (differences between files too). Beads are "
        "then removed by clean's bead step",
    )
    compensation: Literal["nnls", "flow", "none"] = Field(
        "nnls",
        description="spillover compensation of the raw counts with inputs.spillover "
        "(pp.compensate): nnls (non-negative least squares per event, CATALYST's default), "
        "flow (matrix inverse, flowCore), none (off); nothing happens without inputs.spillover",
    )


class Transform(_Section):
    """Options of pp.arcsinh."""

    cofactor: float | dict[str, float] = Field(
        5.0, description="arcsinh cofactor (> 0), or one per antigen"
    )

    @field_validator("cofactor")
    @classmethod
    def _positive_cofactor(cls, v: float | dict[str, float]) -> float | dict[str, float]:
        bad = {k: c for k, c in v.items() if not c > 0} if isinstance(v, dict) else {}
        if isinstance(v, dict) and bad:
            raise ValueError(f"every cofactor must be > 0, found {bad}")
        if not isinstance(v, dict) and not v > 0:
            raise ValueError(f"the cofactor must be > 0, found {v}")
        return v


class Clean(_Section):
    """Options of pp.clean and pp.apply_qc."""

    steps: list[Literal[_STEP_NAMES_ACCEPTED]] | None = Field(  # type: ignore[valid-type]
        None,
        description="cleaning steps to run; they run in the order "
        + ", ".join(s.name for s in STEPS)
        + f" ({_STEP_ALIASES}; default: all whose channels exist)",
    )
    channels: dict[str, str | list[str]] | None = Field(
        None, description="channel roles, e.g. {dna: [DNA1, DNA2], cd45: CD45}"
    )
    thresholds: dict[str, list[float | None]] | None = Field(
        None,
        description="gates per role or channel (dna, cd45, Ce140Di, ...) as [low, high] on the "
        f"gating scale arcsinh(raw / {GATING_COFACTOR:g}), the scale of pp.clean's thresholds, "
        "of low / high in qc_thresholds.csv and of the QC figures (null = open side)",
    )
    method: Literal["auto", "mad"] = Field("auto", description="automatic threshold method")
    k: float | None = Field(
        None,
        description="robust SDs from the median for the tail rule, all steps (default: "
        + ", ".join(f"{s.name} {s.k:g}" for s in STEPS)
        + ")",
    )

    # sample-level QC (pp.sample_qc): what a failed sample is, and what happens to it
    min_cells: int = Field(
        MIN_CELLS,
        ge=0,
        description="a sample keeping fewer events after cleaning failed (500: a subset at "
        "5 % is then ~25 cells, a binomial SD of ~1 percentage point)",
    )
    min_fraction_kept: float = Field(
        MIN_FRACTION_KEPT,
        ge=0.0,
        le=1.0,
        description="a sample keeping a smaller fraction of its events failed (0.5: CyTOF "
        "samples typically keep 60-90 %; below half the acquisition or sample failed)",
    )
    on_failed_sample: Literal["exclude", "flag"] = Field(
        "exclude",
        description="failed samples are excluded from clustering and patient-level analysis, "
        "or kept and flagged (both listed in summary.json and qc_samples.csv)",
    )

    @field_validator("steps")
    @classmethod
    def _canonical_steps(cls, v: list[str] | None) -> list[str] | None:
        return None if v is None else [canonical_step(s) or s for s in v]

    @field_validator("thresholds")
    @classmethod
    def _ordered_gates(
        cls, v: dict[str, list[float | None]] | None
    ) -> dict[str, list[float | None]] | None:
        for name, gate in (v or {}).items():
            if len(gate) != 2:
                raise ValueError(f"gate {name!r} must be [low, high], found {gate}")
            low, high = gate
            if low is not None and high is not None and low > high:
                raise ValueError(
                    f"gate {name!r}: low {low:g} is above high {high:g}; write [{high:g}, {low:g}]"
                )
        return v


class Downsample(_Section):
    """Options of pp.downsample."""

    n: int | None = Field(
        None, ge=1, description="events per sample after cleaning (null: keep all)"
    )
    min_events: int | None = Field(
        None,
        ge=1,
        description="samples with fewer CD45+ events are excluded or an error (the paper: 40395)",
    )
    on_small: Literal["exclude", "error"] = Field(
        "exclude", description="what to do with samples below min_events"
    )


class Batch(_Section):
    """Batch (run) effects: diagnostics, and pp.correct_batch when the sample sheet has batches."""

    column: str = Field(
        "batch", description="sample-sheet column naming each sample's acquisition batch (run)"
    )
    method: Literal["auto", "cycombine", "none"] = Field(
        "auto",
        description="auto: cycombine when the column holds >= 2 batches (scripts/bench_batch.py, "
        "docs/batch.md); none: diagnostics only, no correction",
    )
    grid: tuple[int, int] = Field(
        (8, 8), description="SOM grid of the correction's coarse clusters"
    )
    diagnostics: bool = Field(
        True, description="per-sample medians by batch (figure, R2, label shares) with warnings"
    )
    drift: bool = Field(
        True,
        description="detect signal drift over each file's acquisition time (pp.correct_drift) "
        "and correct files drifting more than drift_min",
    )
    drift_min: float = Field(0.05, ge=0, lt=1, description="smallest drift corrected (fraction)")
    time_channel: str = Field("Time", description="channel (antigen) holding acquisition time")


class Cluster(_Section):
    """Options of tl.flowsom."""

    markers: list[str] | None = Field(
        None, description="clustering markers (default: marker_class type)"
    )
    grid: tuple[PositiveInt, PositiveInt] = Field((10, 10), description="SOM grid (x, y)")
    n_metaclusters: int = Field(
        40,
        ge=2,
        description="metaclusters (over-cluster: the phenotype table then names and pools them)",
    )
    metaclustering: Literal["hierarchical", "consensus"] = Field(
        "hierarchical",
        description="flowsom's metaclustering (hierarchical = flowsom.FlowSOM's default)",
    )
    train_cells: int | None = Field(
        200_000, ge=1000, description="cells the SOM is trained on (then all are mapped)"
    )
    rlen: int = Field(10, ge=1, description="SOM training passes")
    merge_floor: float | str | None = Field(
        None,
        description="merge metaclusters until the smallest median size reaches this % (or 'doublet_rate')",
    )

    @model_validator(mode="after")
    def _metaclusters_fit_the_grid(self) -> Cluster:
        cells = self.grid[0] * self.grid[1]
        if self.n_metaclusters > cells:
            raise ValueError(
                f"n_metaclusters ({self.n_metaclusters}) exceeds the {cells} SOM nodes of grid "
                f"{list(self.grid)}: lower n_metaclusters or enlarge the grid"
            )
        return self


class Annotate(_Section):
    """Options of tl.annotate."""

    mapping: dict[str, str] | None = Field(
        None, description="manual cluster → subset names (overrides the phenotype table)"
    )
    min_events: int = Field(
        20,
        ge=0,
        description="metaclusters with fewer events are not named (unassigned, counted): a "
        "median of a handful of events says little about a phenotype",
    )


class Embed(_Section):
    """Options of tl.embed."""

    enabled: bool = Field(True, description="compute a UMAP of a subsample")
    n_cells: int = Field(20_000, ge=100, description="cells in the embedding")


class Patients(_Section):
    """Options of tl.patient_clusters, tl.cluster_sensitivity, tl.cluster_stability."""

    k: int = Field(3, ge=2, description="number of iTME clusters")
    transform: Literal["zscore", "clr", "arcsine_sqrt", "none"] = Field(
        "zscore",
        description="column transform before Ward clustering (JMP's default standardisation)",
    )
    features: list[str] | None = Field(
        None,
        description="subsets to cluster on (default: every subset with events in some sample; "
        "unassigned events are never a feature)",
    )
    sensitivity_exclude: list[str] | str | None = Field(
        None,
        description="patients left out in the sensitivity re-clustering: a list of ids, or a boolean clinical column",
    )
    bootstrap: int = Field(
        200, ge=0, description="bootstrap resamples for cluster stability (0: skip)"
    )


class Stats(_Section):
    """Options of stats.compare_groups, stats.clinical_table, survival."""

    groupby: str = Field("itme_cluster", description="grouping compared across")
    fdr: float = Field(0.05, gt=0, lt=1, description="FDR level called significant")
    clinical_variables: list[str] | None = Field(
        None, description="rows of the clinical table (default: all columns)"
    )
    endpoints: list[str] = Field(
        ["os", "pfs"], description="survival endpoints (<name>_months / <name>_event columns)"
    )
    cox_covariates: list[str] = Field(
        [], description="covariates of the Cox model besides the grouping"
    )
    reference_levels: dict[str, str] = Field(
        {}, description="reference level per categorical covariate"
    )
    # the unit of the between-patient tests when patients have several time points
    timepoint: str | None = Field(
        None,
        description="with several time points per patient, the one the between-patient "
        "tests (and RNA-seq) use, so n counts independent patients (default: each patient's "
        "first time point in samples.csv)",
    )


class Contrast(_Section):
    """One RNA-seq contrast: test levels against reference levels of one column."""

    name: str = Field(description="name used in file names")
    groupby: str = Field(
        description="column of the patients table (itme_cluster, disease_status, ...)"
    )
    test: list[str] = Field(min_length=1, description="levels merged into the test group")
    reference: list[str] = Field(min_length=1, description="levels merged into the reference group")

    @model_validator(mode="after")
    def _disjoint_levels(self) -> Contrast:
        both = sorted(set(self.test) & set(self.reference))
        if both:
            raise ValueError(
                f"contrast {self.name!r}: levels {both} are in both test and reference"
            )
        return self


class RnaSeq(_Section):
    """Options of rna.differential_expression, rna.gsea."""

    contrasts: list[Contrast] | None = Field(
        None,
        description="contrasts tested; default (null): derived from patients.k, the "
        "paper's iTME clusters 2+3 vs 1 when k = 3, otherwise each iTME cluster vs the rest. "
        "A contrast on itme_cluster that leaves a cluster out says so in a warning",
    )
    covariates: list[str] = Field([], description="clinical covariates added to the design")
    prefilter: Literal["none", "deseq2", "edger"] = Field(
        "none",
        description="low-count pre-filter before DESeq2: none (R's default; independent filtering does the job), deseq2 or edger (lossy: see docs/rnaseq.md)",
    )
    min_count: int = Field(
        10,
        ge=0,
        description="with prefilter deseq2/edger: counts a gene needs in the smallest group",
    )
    lfc_shrink: bool = Field(
        False, description="add shrunken log2 fold changes (log2FoldChange_shrunk, lfcSE_shrunk)"
    )
    gsea_rank_by: Literal["stat", "log2FoldChange_shrunk"] = Field(
        "stat", description="GSEA ranking statistic (log2FoldChange_shrunk needs lfc_shrink)"
    )
    gene_sets: str = Field(
        "hallmark",
        description="'hallmark' (bundled MSigDB v7.0) or a GMT path (relative: from the config's folder)",
    )
    permutations: int = Field(1000, ge=100, description="GSEA permutations")

    @model_validator(mode="after")
    def _shrunk_ranking_needs_shrinkage(self) -> RnaSeq:
        if self.gsea_rank_by == "log2FoldChange_shrunk" and not self.lfc_shrink:
            raise ValueError("gsea_rank_by: log2FoldChange_shrunk needs lfc_shrink: true")
        return self


def itme_contrasts(k: int) -> list[Contrast]:
    """The default RNA-seq contrasts between ``k`` iTME clusters.

    The paper (Visram et al. 2021) compared clusters 2+3 with cluster 1 (its three clusters:
    1 mostly NDMM/RMM, 2 and 3 mostly TRMM); that contrast is kept for ``k = 3``. For any
    other ``k`` the paper's grouping has no meaning, so every cluster is compared with all
    the others (``itme_<c>_vs_rest``) and no cluster is left out.

    Parameters
    ----------
    k
        Number of iTME clusters (``patients.k``).

    Returns
    -------
    The contrasts, on ``itme_cluster``.
    """
    if k == 3:
        return [
            Contrast(name="itme_23_vs_1", groupby="itme_cluster", test=["2", "3"], reference=["1"])
        ]
    levels = [str(c) for c in range(1, k + 1)]
    return [
        Contrast(
            name=f"itme_{c}_vs_rest",
            groupby="itme_cluster",
            test=[c],
            reference=[o for o in levels if o != c],
        )
        for c in levels
    ]


def rnaseq_contrasts(config: Config) -> list[Contrast]:
    """The contrasts a run tests: ``rnaseq.contrasts``, or :func:`itme_contrasts` of ``k``.

    Parameters
    ----------
    config
        The run's config.

    Returns
    -------
    The contrasts, in order.
    """
    given = config.rnaseq.contrasts
    return list(given) if given is not None else itme_contrasts(config.patients.k)


def clusters_left_out(contrast: Contrast, k: int) -> list[str]:
    """The iTME clusters (of ``1..k``) in neither group of a contrast on ``itme_cluster``.

    Parameters
    ----------
    contrast
        A contrast.
    k
        Number of iTME clusters.

    Returns
    -------
    The clusters left out (empty for a contrast on another column).
    """
    if contrast.groupby != "itme_cluster":
        return []
    used = set(contrast.test) | set(contrast.reference)
    return [str(c) for c in range(1, k + 1) if str(c) not in used]


class DesignContrast(_Section):
    """One contrast of the design: ``level`` against ``reference`` of one column."""

    column: str = Field(description="a column of the formula (condition, disease_status, ...)")
    level: str = Field(description="the level tested")
    reference: str = Field(description="the reference level (logFC = level - reference)")
    name: str | None = Field(
        None,
        description="name used in file names (default <column>_<level>_vs_<reference>)",
    )

    @model_validator(mode="after")
    def _two_levels(self) -> DesignContrast:
        if self.level == self.reference:
            raise ValueError(f"level and reference are both {self.level!r}")
        return self

    @property
    def label(self) -> str:
        """The name of the contrast in file names and the report."""
        return self.name or f"{self.column}_{self.level}_vs_{self.reference}"


class Design(_Section):
    """Differential abundance and state between conditions (docs/catalyst.md): stats.differential_abundance, stats.differential_state; columns from samples.csv, clinical.csv or itme_cluster; absent: nothing runs."""

    formula: str = Field(
        description='R-style right-hand side, e.g. "~ condition" or "~ condition + age"'
    )
    contrasts: list[DesignContrast] = Field(
        min_length=1, description="contrasts tested (the first writes the plain table names)"
    )
    random: str | None = Field(
        None,
        description="pairing / blocking column (patient_id for paired samples): a random "
        "intercept per level in the mixed models (state lmm, abundance glmm), a fixed block "
        "term in the others (abundance nb, state lm)",
    )
    markers: list[str] | None = Field(
        None, description="state markers tested (default: panel marker_class state)"
    )
    min_cells: int = Field(
        10, ge=1, description="events a sample × subset needs for its median to be tested"
    )
    abundance_method: Literal["nb", "glmm"] = Field(
        "nb",
        description="nb: negative-binomial GLM with sample totals as offset (diffcyt-DA-edgeR's "
        "model); glmm: binomial GLMM, random intercept per sample (diffcyt-DA-GLMM; slow)",
    )
    state_method: Literal["auto", "lmm", "lm"] = Field(
        "auto",
        description="lmm: linear mixed model with a random intercept per random level "
        "(diffcyt-DS-LMM); lm: least squares; auto: lmm with random, else lm",
    )

    @model_validator(mode="after")
    def _formula_names_the_contrasts(self) -> Design:
        from itme.stats import formula_columns

        try:
            columns = formula_columns(self.formula, param="design.formula")
        except ItmeError as exc:
            raise ValueError(str(exc)) from exc
        absent = sorted({c.column for c in self.contrasts} - set(columns))
        if absent:
            raise ValueError(
                f"contrast column(s) {absent} are not terms of the formula {self.formula!r}; "
                f"add them, e.g. '~ {' + '.join([*absent, *columns])}'"
            )
        if self.state_method == "lmm" and self.random is None:
            raise ValueError("state_method lmm needs random (the pairing column), or use lm")
        names = [c.label for c in self.contrasts]
        if len(set(names)) < len(names):
            raise ValueError(f"contrast names repeat: {names}")
        return self

    @property
    def state(self) -> str:
        """The differential-state method: ``lmm`` or ``lm`` (``auto`` resolved)."""
        if self.state_method == "auto":
            return "lmm" if self.random else "lm"
        return self.state_method


class Cytokines(_Section):
    """Options of stats.compare_cytokines."""

    groupby: list[str] = Field(["itme_cluster", "disease_status"], description="groupings compared")


class Report(_Section):
    """Options of report.write_report."""

    title: str = Field("itme analysis", description="report title")


class Compute(_Section):
    """Where the cell-level work runs (docs/cluster.md), checked before any work starts."""

    backend: Literal["auto", "memory", "store"] = Field(
        "auto",
        description="memory: the events matrix in memory; store: a zarr cohort store on Dask, "
        "out of core; auto: the store when the cohort's estimated in-memory peak does not fit "
        "in the memory available or scheduler names a cluster (itme run --scheduler: store)",
    )
    scheduler: str = Field(
        "local",
        description="local, slurm, pbs, or a scheduler address such as tcp://host:8786",
    )
    workers: int | None = Field(
        None,
        ge=1,
        description="worker processes (slurm/pbs: jobs); default (local): one per CPU, fewer "
        "when each would get less than 1 GiB",
    )
    threads_per_worker: int = Field(1, ge=1, description="threads of each worker")
    memory_per_worker: str | None = Field(
        None,
        description="memory limit of each worker, e.g. '4GB'; default (local): an equal share "
        "of 80% of the memory available less the client's, else dask's share",
    )
    chunk_rows: int = Field(
        65_536, ge=1, description="events per block of the cohort store and of every task"
    )
    connect_timeout: str = Field("10s", description="how long to wait for the scheduler")
    jobqueue: dict[str, Any] = Field(
        {},
        description="extra options of dask_jobqueue.SLURMCluster / PBSCluster (queue, account, "
        "walltime, job_extra_directives, interface, python, ...)",
    )

    @field_validator("scheduler")
    @classmethod
    def _scheduler(cls, v: str) -> str:
        if v not in ("local", "slurm", "pbs") and ":" not in v:
            raise ValueError(f"expected local, slurm, pbs or an address host:port, found {v!r}")
        return v

    def settings(self) -> Any:
        """The :class:`itme._dask.ComputeSettings` of this section.

        Returns
        -------
        ComputeSettings
            The same values, for :func:`itme._dask.start_compute`.
        """
        from itme._dask import ComputeSettings

        return ComputeSettings(**self.model_dump(exclude={"backend"}))


class Config(_Section):
    """A whole itme run."""

    seed: int = Field(
        0, ge=0, description="master seed; every random step gets its own stream from it"
    )
    output: Path = Field(
        Path("itme_output"), description="output folder (itme run --out overrides)"
    )
    threads: int | None = Field(
        None, ge=1, description="threads for numerical libraries (default: all cores)"
    )
    inputs: Inputs
    ingest: Ingest = Ingest()
    transform: Transform = Transform()
    clean: Clean = Clean()
    downsample: Downsample = Downsample()
    batch: Batch = Batch()
    cluster: Cluster = Cluster()
    annotate: Annotate = Annotate()
    embed: Embed = Embed()
    patients: Patients = Patients()
    stats: Stats = Stats()
    rnaseq: RnaSeq = RnaSeq()
    cytokines: Cytokines = Cytokines()
    design: Design | None = Field(
        None,
        description="differential abundance and state between conditions (formula, contrasts, "
        "pairing); none: not run",
    )
    report: Report = Report()
    compute: Compute = Field(
        Compute(),
        description="where the cell-level stages run: in memory or on a Dask cohort store "
        "(docs/cluster.md)",
    )

    @field_validator("output", mode="before")
    @classmethod
    def _as_path(cls, v: Any) -> Any:
        return Path(v) if isinstance(v, str) else v

    @field_validator("compute", mode="before")
    @classmethod
    def _compute_defaults(cls, v: Any) -> Any:
        return {} if v is None else v  # `compute:` left empty (or null): the defaults


def _fields(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """Valid keys at ``loc`` (for suggestions)."""
    for part in loc[:-1]:
        field = model.model_fields.get(str(part))
        if field is None:
            return []
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            model = ann
        else:
            return []
    return list(model.model_fields)


def format_errors(exc: ValidationError, source: str, errors: list[Any] | None = None) -> list[str]:
    """One line per problem of a pydantic validation.

    Parameters
    ----------
    exc
        The validation error of :class:`Config`.
    source
        The config's name in messages (its path).
    errors
        The errors to format (default: all of ``exc``).

    Returns
    -------
    Lines naming where, what was expected and what was found, and for an unknown key the
    nearest valid spelling.
    """
    out = []
    for err in exc.errors() if errors is None else errors:
        loc = tuple(err["loc"])
        where = ".".join(str(p) for p in loc) or "(top level)"
        if err["type"] == "extra_forbidden":
            valid = _fields(Config, loc)
            close = difflib.get_close_matches(str(loc[-1]), valid, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; valid keys: {', '.join(valid)}"
            out.append(f"{source}: unknown key {where!r}{hint}")
        elif err["type"] == "missing":
            out.append(f"{source}: {where} is required")
        else:
            msg = err["msg"].removeprefix("Value error, ")
            found = err.get("input")
            shown = "" if isinstance(found, dict) else f" (found {found!r})"  # a whole section
            out.append(f"{source}: {where}: {msg}{shown}")
    return out


def _resolve(config: Config, base: Path) -> Config:
    inputs = {}
    for name, value in config.inputs.model_dump().items():
        if isinstance(value, Path) and not value.is_absolute():
            value = base / value
        inputs[name] = value
    ph = config.inputs.phenotypes
    if ph.endswith((".yaml", ".yml")) and not Path(ph).is_absolute():
        inputs["phenotypes"] = str(base / ph)
    output = config.output if config.output.is_absolute() else base / config.output
    update: dict[str, Any] = {"inputs": Inputs(**inputs), "output": output}
    gmt = config.rnaseq.gene_sets
    if gmt.lower() != "hallmark" and not Path(gmt).is_absolute():
        update["rnaseq"] = config.rnaseq.model_copy(update={"gene_sets": str(base / gmt)})
    return config.model_copy(update=update)


def load_config(source: str | Path | dict[str, Any], *, base_dir: Path | None = None) -> Config:
    """Read and validate a config (YAML path or dict); resolve relative paths.

    Parameters
    ----------
    source
        A YAML file, or the config as a dict.
    base_dir
        Folder relative paths are resolved from. Default: the file's folder (the working
        directory for a dict).

    Returns
    -------
    The validated :class:`Config`, its input and output paths absolute.

    Raises
    ------
    ItmeInputError
        Listing every problem in the file at once (a file that is not UTF-8, not YAML or
        repeats a key is one problem).
    """
    from itme.pipeline._config_check import check_config, read_config

    if not isinstance(source, dict):
        read_config(source)  # a file that cannot be read raises its own error
    config, problems = check_config(source, base_dir=base_dir)
    if problems or config is None:
        raise ItmeInputError(
            f"{len(problems)} problem(s) in the config:\n  " + "\n  ".join(problems),
            problems=problems,
        )
    return config
