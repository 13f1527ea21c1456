"""Fuzz suite of the readers: seeded mutations of real files (not shipped with itme)."""
