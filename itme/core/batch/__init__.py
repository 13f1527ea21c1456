"""Batch-effect numerics: per-batch scaling, per-cluster alignment bounds, drift windows, diagnostics."""
