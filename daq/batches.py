"""Batches as the store takes them (checked, cheaply) and gives them back (uniform columns).

``append`` sits on the acquisition hot path (64 channels at 10 Hz and more), so a batch that
already follows the data model is checked in a few microseconds and stored as it is; only other
frames go through :func:`cellbench.core.schema.conform`. Optional model columns a batch lacks
are added as nulls when batches are sealed or read, so every frame a reader returns has all the
model's columns, in the model's order, then any extra (vendor) columns.
"""

from __future__ import annotations

import polars as pl

from cellbench.core import schema


def conform_batch(table: str, df: pl.DataFrame) -> pl.DataFrame:
    """``df`` itself if it follows the model; else cast via ``schema.conform`` (SchemaError)."""
    have = df.schema
    for col in schema.COLUMNS[table]:
        dtype = have.get(col.name)
        if dtype is None:
            if col.required:
                break
        elif dtype != col.dtype or (col.required and df.get_column(col.name).null_count()):
            break
    else:
        return df
    return schema.conform(table, df)


def _exprs(table: str, names: list[str]) -> list[pl.Expr]:
    model = schema.COLUMNS[table]
    present = set(names)
    exprs = [
        pl.col(c.name) if c.name in present else pl.lit(None, dtype=c.dtype).alias(c.name)
        for c in model
    ]
    known = {c.name for c in model}
    return exprs + [pl.col(n) for n in names if n not in known]


def normalize(table: str, df: pl.DataFrame) -> pl.DataFrame:
    """All model columns (absent ones as nulls) in model order, then extras; no copy if complete."""
    full = [c.name for c in schema.COLUMNS[table]]
    if df.columns[: len(full)] == full:
        return df
    return df.select(_exprs(table, df.columns))


def normalize_lazy(table: str, lf: pl.LazyFrame) -> pl.LazyFrame:
    """:func:`normalize` for a LazyFrame (reads only the schema)."""
    names = lf.collect_schema().names()
    full = [c.name for c in schema.COLUMNS[table]]
    if names[: len(full)] == full:
        return lf
    return lf.select(_exprs(table, names))


def stack(table: str, parts: list[pl.DataFrame], *, rechunk: bool = False) -> pl.DataFrame:
    """Concatenate batches that may differ in optional/extra columns, normalized.

    ``rechunk`` copies the result into one contiguous chunk: worth it for many small journal
    batches, a waste for a few large segments.
    """
    if not parts:
        return schema.empty(table, optional=True)
    if len(parts) == 1:
        df = parts[0]
    elif all(p.schema == parts[0].schema for p in parts[1:]):  # the usual case, and much faster
        df = pl.concat(parts, how="vertical", rechunk=rechunk)
    else:
        df = pl.concat(parts, how="diagonal_relaxed", rechunk=rechunk)
    return normalize(table, df)
