"""Array numerics of annotation: phenotype tables (parsed) and naming clusters from medians."""
