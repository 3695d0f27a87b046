"""Error types shared by every part of cellbench.

They live in the base layer (``cellbench.core``), which every other package may import.
"""

from __future__ import annotations


class CellbenchError(Exception):
    """Base class of errors that are the user's to fix (bad file, bad protocol, absent port)."""


class SchemaError(CellbenchError, ValueError):
    """A frame or a run's metadata does not follow the data model; lists every problem at once."""

    def __init__(self, what: str, problems: list[str]):
        self.what = what
        self.problems = list(problems)
        lines = "; ".join(self.problems)
        super().__init__(f"{what}: {len(self.problems)} problem(s): {lines}")
