"""lfm-pack: exact per-function dependency analysis, minimal relocatable packs, and a
lightweight function monitor for running one Python function on many remote cores."""

__version__ = "0.1.0"
