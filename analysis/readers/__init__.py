"""Readers of vendor files into the canonical frames of :mod:`cellbench.analysis.schema`."""
