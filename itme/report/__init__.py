"""HTML report and run provenance."""
