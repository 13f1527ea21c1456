# Golden files from R's survival package for itme's survival statistics (issue 13).
#
# Usage (from the repository root; see scripts/golden/make_golden.sh):
#   Rscript scripts/golden/survival_golden.R <output folder>
#
# Datasets: the simulated cohort's clinical table (tests/golden/inputs/simcohort_clinical.tsv;
# OS and PFS, iTME cluster, age, sex) and R's own `lung` data (written to
# tests/golden/inputs/lung.tsv so that the tests do not need R; status recoded 1 = death).
# Writes into <output folder>:
#   km.tsv        survfit() curves (R's default conf.type = "log"), per dataset and stratum
#   km_median.tsv print(survfit)'s table: n, events, median and its 95% limits
#   logrank.tsv   survdiff(): chi-square, df, p, and observed / expected per group
#   coxph.tsv     coxph() (Efron ties, R's defaults): coef, se, z, p, loglik, iterations;
#                 and the same model refitted with eps = 1e-14 (coef_tight, se_tight)
#   coxzph.tsv    cox.zph() score test per term and GLOBAL, for transform "km" (R's default),
#                 "rank" and "identity"
suppressPackageStartupMessages(library(survival))

args <- commandArgs(trailingOnly = TRUE)
if (length(args) != 1) stop("usage: survival_golden.R <output folder>")
out_dir <- args[1]
inputs <- file.path("tests", "golden", "inputs")
dir.create(out_dir, showWarnings = FALSE, recursive = TRUE)
full <- function(x) signif(x, 15)
write_tsv <- function(frame, path) {
  write.table(frame, path, sep = "\t", quote = FALSE, row.names = FALSE, na = "NA")
}

lung_in <- survival::lung
lung_in <- data.frame(
  time = lung_in$time, event = as.integer(lung_in$status == 2), age = lung_in$age,
  sex = lung_in$sex, ph_ecog = lung_in$ph.ecog
)
write_tsv(lung_in, file.path(inputs, "lung.tsv"))
lung <- lung_in[complete.cases(lung_in), ]
lung$sex <- factor(lung$sex)

clin <- read.delim(file.path(inputs, "simcohort_clinical.tsv"), stringsAsFactors = FALSE,
                   colClasses = c(itme_cluster = "character"))
clin <- clin[!is.na(clin$itme_cluster) & clin$itme_cluster != "", ]
clin$itme_cluster <- factor(clin$itme_cluster, levels = c("1", "2", "3"))
clin$sex <- factor(clin$sex)

models <- list(
  sim_os = list(data = clin, time = "os_months", event = "os_event", group = "itme_cluster",
                rhs = "itme_cluster + age"),
  sim_pfs = list(data = clin, time = "pfs_months", event = "pfs_event", group = "itme_cluster",
                 rhs = "itme_cluster + age + sex"),
  lung = list(data = lung, time = "time", event = "event", group = "sex",
              rhs = "age + sex + ph_ecog")
)

km_rows <- list(); med_rows <- list(); lr_rows <- list(); cox_rows <- list(); zph_rows <- list()
for (name in names(models)) {
  m <- models[[name]]
  d <- m$data
  surv <- Surv(d[[m$time]], d[[m$event]])
  grp <- d[[m$group]]
  fit <- survfit(surv ~ grp)  # conf.type = "log", conf.int = 0.95 (R's defaults)
  strata <- rep(sub("^grp=", "", names(fit$strata)), fit$strata)
  km_rows[[name]] <- data.frame(
    dataset = name, group = strata, time = fit$time, n_risk = fit$n.risk,
    n_event = fit$n.event, n_censor = fit$n.censor, surv = full(fit$surv),
    std_err = full(fit$std.err), lower = full(fit$lower), upper = full(fit$upper)
  )
  tab <- summary(fit)$table
  med_rows[[name]] <- data.frame(
    dataset = name, group = sub("^grp=", "", rownames(tab)), n = tab[, "records"],
    events = tab[, "events"], median = tab[, "median"], lower = tab[, "0.95LCL"],
    upper = tab[, "0.95UCL"]
  )
  lr <- survdiff(surv ~ grp)
  df <- length(lr$n) - 1
  lr_rows[[name]] <- data.frame(
    dataset = name, group = sub("^grp=", "", names(lr$n)), n = as.vector(lr$n),
    observed = lr$obs, expected = full(lr$exp), chisq = full(lr$chisq), df = df,
    p = full(pchisq(lr$chisq, df, lower.tail = FALSE))
  )
  f <- as.formula(paste("Surv(", m$time, ",", m$event, ") ~", m$rhs))
  cox <- coxph(f, data = d)  # ties = "efron", eps = 1e-9, iter.max = 20
  tight <- coxph(f, data = d, control = coxph.control(eps = 1e-14, iter.max = 100))
  s <- summary(cox)$coefficients
  cox_rows[[name]] <- data.frame(
    dataset = name, term = rownames(s), coef = full(s[, "coef"]), se = full(s[, "se(coef)"]),
    z = full(s[, "z"]), p = full(s[, "Pr(>|z|)"]), loglik = full(cox$loglik[2]),
    iter = cox$iter, n = cox$n, events = cox$nevent,
    coef_tight = full(coef(tight)), se_tight = full(sqrt(diag(vcov(tight))))
  )
  for (tr in c("km", "rank", "identity")) {
    z <- if (tr == "km") cox.zph(cox) else cox.zph(cox, transform = tr)
    zph_rows[[paste(name, tr)]] <- data.frame(
      dataset = name, transform = tr, term = rownames(z$table),
      chisq = full(z$table[, "chisq"]), df = z$table[, "df"], p = full(z$table[, "p"])
    )
  }
}
write_tsv(do.call(rbind, km_rows), file.path(out_dir, "km.tsv"))
write_tsv(do.call(rbind, med_rows), file.path(out_dir, "km_median.tsv"))
write_tsv(do.call(rbind, lr_rows), file.path(out_dir, "logrank.tsv"))
write_tsv(do.call(rbind, cox_rows), file.path(out_dir, "coxph.tsv"))
write_tsv(do.call(rbind, zph_rows), file.path(out_dir, "coxzph.tsv"))
cat("cox.zph default transform:", eval(formals(cox.zph)$transform), "\n")
print(do.call(rbind, cox_rows)[, c("dataset", "term", "coef", "se", "iter")])
print(do.call(rbind, zph_rows))
