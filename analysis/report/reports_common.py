"""What the per-kind report modules share: file-name tags and number formatting.

The reports themselves: :mod:`.reports_cycling` (cycling, fade, CCD), :mod:`.reports_eis`
(impedance), :mod:`.reports_conductivity` (Arrhenius) and :mod:`.reports` (a whole run).
"""

from __future__ import annotations

import math
import re
from pathlib import Path

from .document import Report, ReportFiles


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", str(name)).strip("-.") or "x"


def _suffix(tag: str) -> str:
    return f"_{_safe(tag)}" if tag else ""


def _fmt_pm(v: float | None, s: float | None, unit: str = "") -> str:
    if v is None or not math.isfinite(v):
        return "–"
    text = f"{v:.4g}"
    if s is not None and math.isfinite(s):
        text += f" ± {s:.2g}"
    return f"{text} {unit}".rstrip()


def _write(rep: Report, out_dir: Path | str) -> ReportFiles:
    return rep.write(out_dir)
