# Golden files from R DESeq2 for itme's differential expression (issue 13).
#
# Usage (from the repository root; see scripts/golden/make_golden.sh):
#   Rscript scripts/golden/deseq2_golden.R <airway folder> <output folder>
#
# For each dataset below it runs R's defaults exactly as a user would:
#   dds <- DESeqDataSetFromMatrix(counts, coldata, design); dds <- DESeq(dds)
#   res <- results(dds, contrast = c(factor, test, reference))       # alpha = 0.1
#   shr <- lfcShrink(dds, contrast = ..., type = "normal")            # apeglm/ashr absent
# and writes, into <output folder>:
#   <name>_genes.tsv.gz   one row per gene with a non-zero count (R drops all-zero genes
#                         from every fit): results() columns (lfcSE = log2FoldChange / stat
#                         left out), gene-wise and final dispersions (dispFit = asymptDisp +
#                         extraPois / baseMean and dispMAP = dispersion where dispOutlier = 0
#                         left out), gene-wise dispersion iterations, Cook's replacement flag,
#                         lfcShrink(type="normal") log2FC; 9 significant digits
#   <name>_samples.tsv    size factors
#   <name>_filter.tsv     independent filtering: theta, number of rejections, lowess fit
#   summary.tsv           one row per dataset: design, residual df, dispersion trend
#                         coefficients (asymptDisp, extraPois), varLogDispEsts,
#                         dispPriorVar, filter threshold/theta, genes filtered, genes at
#                         padj < 0.1, elapsed seconds of DESeq() + results() and of lfcShrink
suppressPackageStartupMessages({
  library(DESeq2)
})

args <- commandArgs(trailingOnly = TRUE)
if (length(args) != 2) stop("usage: deseq2_golden.R <airway folder> <output folder>")
airway_dir <- args[1]
out_dir <- args[2]
inputs <- file.path("tests", "golden", "inputs")
dir.create(out_dir, showWarnings = FALSE, recursive = TRUE)

sig <- function(x) signif(x, 9)  # per-gene values: 9 significant digits (~1e-9 relative)
full <- function(x) signif(x, 15)  # scalars and per-sample values

write_tsv <- function(frame, path) {
  con <- if (grepl("\\.gz$", path)) gzfile(path, "w") else file(path, "w")
  write.table(frame, con, sep = "\t", quote = FALSE, row.names = FALSE, na = "NA")
  close(con)
}

read_counts <- function(path) {
  tab <- read.delim(path, check.names = FALSE, stringsAsFactors = FALSE)
  ids <- tab[[1]]
  tab <- tab[, -1, drop = FALSE]
  tab$gene_name <- NULL
  m <- as.matrix(tab)
  rownames(m) <- ids
  storage.mode(m) <- "integer"
  m
}

# ---- datasets -----------------------------------------------------------------------
datasets <- list()

# airway (Himes et al. 2014), design ~ cell + dex, dex trt vs untrt: 8 samples, 3 residual df
airway_counts <- read_counts(file.path(airway_dir, "airway_cts.tsv"))
airway_meta <- read.delim(file.path(airway_dir, "airway_metadata.tsv"), stringsAsFactors = FALSE)
airway_cd <- data.frame(
  cell = factor(airway_meta$cell),
  dex = factor(airway_meta$dex, levels = c("untrt", "trt")),
  row.names = airway_meta$Run
)
datasets$airway <- list(
  counts = airway_counts[, rownames(airway_cd)], coldata = airway_cd,
  design = ~ cell + dex, contrast = c("dex", "trt", "untrt")
)

# pasilla (Brooks et al. 2011): ~ type + condition (4 residual df) and ~ condition (5)
pas_counts <- read_counts(file.path(inputs, "pasilla_gene_counts.tsv.gz"))
pas_anno <- read.csv(file.path(inputs, "pasilla_sample_annotation.csv"), stringsAsFactors = FALSE)
rownames(pas_anno) <- sub("fb$", "", pas_anno$file)
pas_anno <- pas_anno[colnames(pas_counts), ]
pas_cd <- data.frame(
  condition = factor(pas_anno$condition, levels = c("untreated", "treated")),
  type = factor(pas_anno$type),
  row.names = rownames(pas_anno)
)
datasets$pasilla_type <- list(
  counts = pas_counts, coldata = pas_cd,
  design = ~ type + condition, contrast = c("condition", "treated", "untreated")
)
datasets$pasilla <- list(
  counts = pas_counts, coldata = pas_cd,
  design = ~ condition, contrast = c("condition", "treated", "untreated")
)

# simulated cohort (itme.datasets.simulate_cohort, seed 2013): 29 patients with an iTME
# cluster (the one without CyTOF has none and is left out, as itme does)
sim_counts <- read_counts(file.path(inputs, "simcohort_counts.tsv.gz"))
sim_clin <- read.delim(file.path(inputs, "simcohort_clinical.tsv"), stringsAsFactors = FALSE,
                       colClasses = c(itme_cluster = "character"))
sim_clin <- sim_clin[!is.na(sim_clin$itme_cluster) & sim_clin$itme_cluster != "", ]
rownames(sim_clin) <- sim_clin$rnaseq_id
sim_cd <- data.frame(
  # the paper's merged two-level contrast: clusters 2+3 vs 1, as one two-level factor
  itme_cluster = factor(ifelse(sim_clin$itme_cluster %in% c("2", "3"), "2+3", "1"),
                        levels = c("1", "2+3")),
  itme_cluster3 = factor(sim_clin$itme_cluster, levels = c("1", "2", "3")),
  sex = factor(sim_clin$sex),
  age = as.numeric(sim_clin$age),
  row.names = rownames(sim_clin)
)
sim_counts <- sim_counts[, rownames(sim_cd)]
datasets$simcohort_merged <- list(
  counts = sim_counts, coldata = sim_cd,
  design = ~ itme_cluster, contrast = c("itme_cluster", "2+3", "1")
)
datasets$simcohort_covariates <- list(
  counts = sim_counts, coldata = sim_cd,
  design = ~ sex + age + itme_cluster, contrast = c("itme_cluster", "2+3", "1")
)
# three levels in the model, 3 vs 1 tested (cluster 2 stays its own level)
datasets$simcohort_3level <- list(
  counts = sim_counts, coldata = sim_cd,
  design = ~ itme_cluster3, contrast = c("itme_cluster3", "3", "1")
)

# ---- run ----------------------------------------------------------------------------
summary_rows <- list()
for (name in names(datasets)) {
  d <- datasets[[name]]
  message("== ", name)
  dds <- DESeqDataSetFromMatrix(d$counts, d$coldata, d$design)
  t_de <- system.time({
    dds <- DESeq(dds, quiet = TRUE)
    res <- results(dds, contrast = d$contrast, alpha = 0.1)
  })[["elapsed"]]
  t_shr <- system.time({
    shr <- suppressMessages(lfcShrink(dds, contrast = d$contrast, res = res, type = "normal"))
  })[["elapsed"]]
  mc <- mcols(dds)
  nz <- !mc$allZero
  genes <- data.frame(
    gene_id = rownames(dds)[nz],
    baseMean = sig(res$baseMean[nz]),
    log2FoldChange = sig(res$log2FoldChange[nz]),
    stat = sig(res$stat[nz]),
    pvalue = sig(res$pvalue[nz]),
    padj = sig(res$padj[nz]),
    dispGeneEst = sig(mc$dispGeneEst[nz]),
    dispGeneIter = mc$dispGeneIter[nz],
    dispersion = sig(mc$dispersion[nz]),
    dispOutlier = as.integer(mc$dispOutlier[nz]),
    replace = if (is.null(mc$replace)) 0L else as.integer(!is.na(mc$replace[nz]) & mc$replace[nz]),
    lfcShrinkNormal = sig(shr$log2FoldChange[nz])
  )
  write_tsv(genes, file.path(out_dir, paste0(name, "_genes.tsv.gz")))
  write_tsv(data.frame(sample = colnames(dds), sizeFactor = full(sizeFactors(dds))),
            file.path(out_dir, paste0(name, "_samples.tsv")))
  md <- metadata(res)
  write_tsv(data.frame(theta = full(md$filterNumRej$theta), numRej = md$filterNumRej$numRej,
                       lowess = full(md$lo.fit$y)),
            file.path(out_dir, paste0(name, "_filter.tsv")))
  fn <- dispersionFunction(dds)
  coefs <- attr(fn, "coefficients")
  mm <- model.matrix(d$design, as.data.frame(colData(dds)))
  filtered <- sum(is.na(res$padj) & !is.na(res$pvalue))
  summary_rows[[name]] <- data.frame(
    dataset = name,
    design = paste(deparse(d$design), collapse = ""),
    contrast = paste(d$contrast, collapse = ","),
    n_samples = ncol(dds),
    n_coefficients = ncol(mm),
    residual_df = ncol(dds) - ncol(mm),
    n_genes = nrow(dds),
    n_genes_nonzero = sum(nz),
    asymptDisp = full(coefs[["asymptDisp"]]),
    extraPois = full(coefs[["extraPois"]]),
    varLogDispEsts = full(attr(fn, "varLogDispEsts")),
    dispPriorVar = full(attr(fn, "dispPriorVar")),
    filterThreshold = full(unname(md$filterThreshold)),
    filterTheta = full(md$filterTheta),
    n_filtered = filtered,
    n_cooks_na = sum(is.na(res$pvalue[nz])),
    n_replaced = if (is.null(mc$replace)) 0L else sum(mc$replace, na.rm = TRUE),
    n_padj_01 = sum(res$padj < 0.1, na.rm = TRUE),
    betaPriorVar_normal = full(tail(attr(shr, "priorInfo")$betaPriorVar, 1)),
    seconds_deseq_results = t_de,
    seconds_lfcshrink_normal = t_shr
  )
}
summary <- do.call(rbind, summary_rows)
write_tsv(summary, file.path(out_dir, "summary.tsv"))
print(summary[, c("dataset", "residual_df", "asymptDisp", "extraPois", "dispPriorVar",
                  "filterThreshold", "n_filtered", "n_padj_01", "seconds_deseq_results")])
