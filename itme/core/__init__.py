"""Array-level numerics: numpy/scipy only, no AnnData. The adapters in io/pp/tl/stats/rna call these."""
