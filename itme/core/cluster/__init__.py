"""Array numerics of clustering: nearest-code mapping, per-group medians, metacluster merging."""
