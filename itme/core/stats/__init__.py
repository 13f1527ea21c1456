"""Array numerics of the statistics: rank tests and effect sizes, exact Fisher, R-style survival."""
