"""``cellbench runs export RUN --metadata bdf|battinfo``: a run's metadata as the Battery Data
Format sidecar (``<run id>.bdf.meta.json``) or BattINFO JSON-LD (``<run id>.battinfo.jsonld``),
from :mod:`cellbench.analysis.metadata_export`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cellbench.core.errors import CellbenchError

METADATA_FORMATS = ("bdf", "battinfo")
SUFFIX = {"bdf": ".bdf.meta.json", "battinfo": ".battinfo.jsonld"}


def write_metadata(reader: Any, out: Path, kind: str, *, force: bool = False) -> Path:
    """Write the ``kind`` metadata of the run behind ``reader`` into ``out``; print the path."""
    from cellbench.analysis.metadata_export import battinfo_jsonld, bdf_metadata

    if kind not in METADATA_FORMATS:
        raise CellbenchError(f"--metadata {kind!r}: expected one of {', '.join(METADATA_FORMATS)}")
    meta = reader.meta
    target = out / f"{meta.run_id}{SUFFIX[kind]}"
    if target.exists() and not force:
        raise CellbenchError(f"{target} exists; use --force to overwrite")
    source = str(getattr(reader, "path", "")) or None
    doc = bdf_metadata(meta, source=source) if kind == "bdf" else battinfo_jsonld(meta)
    target.write_text(json.dumps(doc, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    print(f"{target}  ({kind} metadata)")
    return target
