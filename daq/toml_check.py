"""Checking a TOML file a technician wrote: every problem at once, each with its file and line.

Protocols (:mod:`cellbench.daq.protocol`), stations (:mod:`cellbench.daq.station`) and the engine
options a station may set (``[engine]``, :mod:`cellbench.daq.engine_options`) are all read the
same way:

* :func:`read_toml_file` / :func:`parse_toml` read the text; a syntax error becomes one
  :class:`Problem` with its line and column (and a hint for the common multi-line inline table);
* a :class:`Checker` collects problems as the loader finds them, each placed on the line of its
  key (:mod:`cellbench.daq.toml_lines`), so one error lists all of them, sorted by line;
* :class:`Table` reads one table: values through parsers that raise :class:`Invalid` or
  :class:`~cellbench.core.units.UnitError` with a message for the technician, required keys, and
  at the end the keys nobody asked for, each with the closest known key ("did you mean").

Each kind of file raises its own subclass of :class:`TomlFileError`
(:class:`~cellbench.daq.protocol.ProtocolError`, :class:`~cellbench.daq.station.StationError`).
"""

from __future__ import annotations

import difflib
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from cellbench.core.errors import CellbenchError
from cellbench.core.units import UnitError
from cellbench.daq.toml_lines import KeyLines, format_path, key_lines

__all__ = [
    "Checker",
    "Invalid",
    "KeyPath",
    "Problem",
    "Table",
    "TomlFileError",
    "did_you_mean",
    "parse_toml",
    "read_toml_file",
]

#: A key's place in the parsed document: ``("step", 2, "until", "time")``.
KeyPath = tuple[str | int, ...]


@dataclass(frozen=True)
class Problem:
    """One problem in a file: where (file, 1-based line, 0 if unknown; dotted key) and what."""

    file: str
    line: int
    key: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.key}: {self.message}" if self.key else f"{where}: {self.message}"


class TomlFileError(CellbenchError, ValueError):
    """A file that cannot be used; ``problems`` lists every problem, one per line of the message."""

    def __init__(self, problems: Iterable[Problem]):
        self.problems: tuple[Problem, ...] = tuple(problems)
        head = f"{len(self.problems)} problem(s)"
        if self.problems:
            head += f" in {self.problems[0].file}"
        super().__init__(head + ":\n" + "\n".join(str(p) for p in self.problems))


class Invalid(ValueError):
    """A value of the wrong type or out of range; the message is for the technician."""


def did_you_mean(word: str, known: Iterable[str], *, what: str = "") -> str:
    """``"did you mean 'x'?"`` with the closest of ``known``, else ``"known: a, b, c"``."""
    choices = list(known)
    close = difflib.get_close_matches(word, choices, n=1)
    if close:
        return f"did you mean {close[0]!r}?"
    return "known: " + ", ".join(choices) if choices else f"no {what or 'value'} is known here"


# --------------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------------


def read_toml_file(
    path: Path | str, *, what: str, error: type[TomlFileError] = TomlFileError
) -> str:
    """The text of ``path``; a missing or unreadable file is an ``error`` naming it (``what``:
    "protocol", "station"...)."""
    path = Path(path)
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error([Problem(str(path), 0, "", f"no such {what} file")]) from None
    except IsADirectoryError:
        raise error([Problem(str(path), 0, "", f"is a folder, not a {what} file")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise error([Problem(str(path), 0, "", f"cannot read: {exc}")]) from None


def parse_toml(
    text: str, source: str, *, error: type[TomlFileError] = TomlFileError
) -> dict[str, Any]:
    """:mod:`tomllib` with its syntax errors turned into an ``error`` naming the file and line."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        line, column = getattr(exc, "lineno", 0) or 0, getattr(exc, "colno", 0) or 0
        m = re.search(r"\s*\(at line (\d+), column (\d+)\)", message)
        if m:  # Python < 3.14 gives the position only in the message
            line, column = line or int(m.group(1)), column or int(m.group(2))
            message = message[: m.start()] + message[m.end() :]
        if column:
            message += f" (column {column})"
        if line and _inside_inline_table(text, line, column):
            message += (
                "; an inline table { ... } must be on one line: write a long step as its "
                "own [[step]] or [[step.steps]] table"
            )
        raise error([Problem(source, line, "", f"TOML syntax: {message}")]) from None


def _inside_inline_table(text: str, line: int, column: int) -> bool:
    """True if (line, column) lies inside an unclosed ``{`` (strings and comments skipped)."""
    lines = text.splitlines(keepends=True)
    end = sum(len(x) for x in lines[: line - 1]) + max(column - 1, 0)
    depth = 0
    i = 0
    while i < min(end, len(text)):
        c = text[i]
        if c == "#":
            nl = text.find("\n", i)
            i = len(text) if nl < 0 else nl
            continue
        if c in "\"'":
            quote = c * 3 if text.startswith(c * 3, i) else c
            j = i + len(quote)
            while j < len(text) and not text.startswith(quote, j):
                if c == '"' and text[j] == "\\":
                    j += 1
                elif len(quote) == 1 and text[j] == "\n":
                    break
                j += 1
            i = j + len(quote)
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth = max(depth - 1, 0)
        i += 1
    return depth > 0


# --------------------------------------------------------------------------------------------------
# Checking
# --------------------------------------------------------------------------------------------------


class Checker:
    """Collects the problems of one file, each on the line of its key.

    ``lines`` maps key paths to lines (:func:`~cellbench.daq.toml_lines.key_lines` of the text);
    a problem about a key not written as such goes on its nearest written ancestor's line.
    """

    def __init__(self, source: str, lines: KeyLines | str):
        self.source = source
        self.lines = key_lines(lines) if isinstance(lines, str) else lines
        self.problems: list[Problem] = []

    def error(self, path: KeyPath, message: str) -> None:
        """Record a problem at ``path`` (``()``: the file as a whole)."""
        self.problems.append(
            Problem(self.source, self.lines.line(path), format_path(path), message)
        )

    def line(self, path: KeyPath) -> int:
        return self.lines.line(path)

    def unknown_keys(self, data: Mapping[str, Any], path: KeyPath, known: Iterable[str]) -> bool:
        """Report every key of ``data`` not in ``known`` (with the closest known one); True if
        there was any."""
        allowed = list(known)
        found = False
        for key in data:
            if key not in allowed:
                self.error((*path, key), "unknown key; " + did_you_mean(key, sorted(allowed)))
                found = True
        return found

    def table(self, data: Mapping[str, Any], path: KeyPath = ()) -> Table:
        """A :class:`Table` reader over ``data`` (a table of this file at ``path``)."""
        return Table(self, data, path)

    def sorted_problems(self) -> list[Problem]:
        return sorted(self.problems, key=lambda p: (p.line, p.key))

    def raise_if_any(self, error: type[TomlFileError]) -> None:
        """Raise ``error`` listing every problem (by line), if there is one."""
        if self.problems:
            raise error(self.sorted_problems())

    def fail(self, error: type[TomlFileError]) -> NoReturn:
        raise error(self.sorted_problems())


class Table:
    """A TOML table being read: parsed values by key; unknown keys are reported by :meth:`finish`.

    ``failed`` turns True once one of its values was missing or bad (a caller builds nothing
    from a failed table, but keeps checking, so that every problem is found in one pass).
    """

    def __init__(self, checker: Checker, data: Mapping[str, Any], path: KeyPath):
        self.checker = checker
        self.data = data
        self.path = path
        self.used: set[str] = set()
        self.failed = False

    def error(self, key: str | None, message: str) -> None:
        """A problem with ``key`` of this table (None: the table itself); marks it failed."""
        self.checker.error(self.path if key is None else (*self.path, key), message)
        self.failed = True

    def has(self, key: str) -> bool:
        self.used.add(key)
        return key in self.data

    def get(self, key: str, parse: Callable[[Any], Any], default: Any = None) -> Any:
        """The parsed value of key, ``default`` if absent, None after reporting a bad value."""
        self.used.add(key)
        if key not in self.data:
            return default
        try:
            return parse(self.data[key])
        except (UnitError, Invalid) as exc:
            self.error(key, str(exc))
            return None

    def need(self, key: str, parse: Callable[[Any], Any], hint: str = "") -> Any:
        """The parsed value of a required key (None after reporting it missing or bad)."""
        if key not in self.data:
            self.used.add(key)
            self.error(None, f"missing {key!r}" + (f" ({hint})" if hint else ""))
            return None
        return self.get(key, parse)

    def table(self, key: str) -> Table | None:
        """The sub-table ``key`` (None if absent, or after reporting that it is not a table)."""
        self.used.add(key)
        if key not in self.data:
            return None
        value = self.data[key]
        if not isinstance(value, dict):
            self.error(key, f"must be a table like {{ key = value }}, got {value!r}")
            return None
        return Table(self.checker, value, (*self.path, key))

    def finish(self, known: Iterable[str] | None = None) -> None:
        """Report keys nobody asked for (typos), with the closest of ``known`` (default: the keys
        asked for)."""
        if self.checker.unknown_keys(self.data, self.path, self.used if known is None else known):
            self.failed = True


# --------------------------------------------------------------------------------------------------
# Value parsers shared by the file kinds (each raises Invalid with the technician's message)
# --------------------------------------------------------------------------------------------------


def text_value(value: Any) -> str:
    """Text in quotes."""
    if not isinstance(value, str):
        raise Invalid(f"must be text in quotes, got {value!r}")
    return value


def positive_int(value: Any) -> int:
    """A whole number >= 1."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise Invalid(f"must be a whole number, got {value!r}")
    if value < 1:
        raise Invalid(f"must be at least 1, got {value}")
    return value
