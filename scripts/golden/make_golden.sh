#!/bin/sh
# Rebuild the golden files of tests/golden from R (issue 13). Run from anywhere; needs
# R >= 4.2 with DESeq2 and survival (Debian: apt-get install r-base-core r-bioc-deseq2
# r-cran-survival) and the shared airway folder. The tests never need R.
#
#   scripts/golden/make_golden.sh [AIRWAY_DIR] [INMOOSE_SDIST_DIR]
#
# 1. inputs (only when INMOOSE_SDIST_DIR is given: pasilla is copied from the inmoose sdist;
#    the simulated cohort is regenerated with itme.datasets, seed 2013) -> tests/golden/inputs
# 2. DESeq2 results, dispersions, trend, prior variance, filtering, lfcShrink -> deseq2/
# 3. survfit, survdiff, coxph, cox.zph (and lung.tsv into inputs/) -> survival/
# 4. R and package versions -> tests/golden/sessionInfo.txt
set -eu
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
AIRWAY=${1:-$ROOT/../shared/data/airway_himes2014_counts}
cd "$ROOT"
if [ "$#" -ge 2 ]; then
    PYTHONPATH=$ROOT /work/main/.venv/bin/python scripts/golden/make_inputs.py --inmoose "$2"
fi
Rscript scripts/golden/deseq2_golden.R "$AIRWAY" tests/golden/deseq2
Rscript scripts/golden/survival_golden.R tests/golden/survival
Rscript -e 'suppressPackageStartupMessages({library(DESeq2); library(survival)}); print(sessionInfo())' \
    > tests/golden/sessionInfo.txt
