"""Orchestration: config models, stages, run()."""
