"""A protocol as a technician reads it: one row per step, the problems at their lines.

:func:`protocol_rows` reads the TOML text itself (not the loaded protocol), so a protocol with
errors still shows every step, and each problem ``file:line: ...`` from the checks lands on the
row of the step (or the ``[safety]`` table, or the header) that holds that line. When the
protocol loads, each row also carries the step's own one-line summary (``CC 1 mA to 4.2 V``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

_HEADER = re.compile(r"^\s*(\[\[?)\s*([A-Za-z0-9_.]+)\s*\]\]?")
_KEY = re.compile(r"^\s*([A-Za-z0-9_]+)\s*=\s*(.+?)\s*$")
_PROBLEM = re.compile(r"^(?P<file>.+?):(?P<line>\d+): (?P<rest>.*)$")


@dataclass
class StepRow:
    """One row of the table: where it starts, what it is, the problems within its lines."""

    line: int  # 1-based line of its header (0: the protocol's top-level keys)
    end: int  # last line (inclusive)
    depth: int  # 0: top level, 1: inside a loop, ...
    title: str  # "step 3", "safety", "protocol"
    kind: str
    text: str  # the step's keys as written, or its summary when the protocol loads
    problems: list[str] = field(default_factory=list)


def _strip_comment(value: str) -> str:
    out, quote = [], None
    for ch in value:
        if quote:
            out.append(ch)
            if ch == quote:
                quote = None
        elif ch in "\"'":
            quote = ch
            out.append(ch)
        elif ch == "#":
            break
        else:
            out.append(ch)
    return "".join(out).strip()


def protocol_rows(text: str, problems: list[str] = (), path: Path | None = None) -> list[StepRow]:
    """Rows of the protocol ``text``; ``problems`` (``file:line: ...``) placed at their rows.

    Problems of other files (the station) or without a line go to the first row.
    """
    lines = text.splitlines()
    rows = [StepRow(0, 0, 0, "protocol", "", "")]
    count = 0
    for n, raw in enumerate(lines, start=1):
        m = _HEADER.match(raw)
        if m:
            name = m.group(2)
            rows[-1].end = n - 1
            if name.split(".")[0] == "step":
                count += 1
                rows.append(StepRow(n, n, name.count("steps"), f"step {count}", "", ""))
            else:
                rows.append(StepRow(n, n, 0, name, "", ""))
            continue
        k = _KEY.match(raw)
        if k and not raw.lstrip().startswith("#"):
            key, value = k.group(1), _strip_comment(k.group(2))
            row = rows[-1]
            if key == "type":
                row.kind = value.strip("\"'")
            else:
                row.text += ("; " if row.text else "") + f"{key} = {value}"
    rows[-1].end = len(lines)
    for problem in problems:
        m = _PROBLEM.match(problem)
        target = rows[0]
        if m and (path is None or Path(m.group("file")) == Path(path)):
            line = int(m.group("line"))
            for row in rows:
                if row.line <= line <= max(row.end, row.line):
                    target = row
            text = m.group("rest")
        else:
            text = problem
        target.problems.append(text)
    return rows


def add_summaries(rows: list[StepRow], summaries: dict[int, str]) -> None:
    """Replace the written keys of each step row by its loaded summary (keyed by header line)."""
    for row in rows:
        if row.line in summaries:
            row.text = summaries[row.line]
