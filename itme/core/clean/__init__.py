"""Array numerics of cleaning: channel roles, one-sided gates, the cleaning-step table."""
