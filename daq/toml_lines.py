"""Line numbers of the keys and array elements in a TOML document.

:mod:`tomllib` gives values without positions, yet an error in a protocol or station file must
name its line. :func:`key_lines` scans the text once more, structurally (tables, arrays of tables,
dotted keys, inline tables, multi-line arrays and strings, comments), and maps every key path to
the 1-based line where it is written. Paths use the parsed document's shape: ``("step", 2,
"until", "voltage_above")`` is the key ``voltage_above`` in the inline table ``until`` of the
third ``[[step]]``; ``("step", 2, "steps", 0)`` is the first element of its ``steps`` array.

The scanner assumes text that :mod:`tomllib` has already accepted; on anything else it returns
what it found so far rather than raising.
"""

from __future__ import annotations

import bisect
import contextlib
import re
from collections.abc import Sequence

__all__ = ["KeyLines", "format_path", "key_lines"]

Path = tuple[str | int, ...]

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_WS = " \t"


class KeyLines:
    """Map of key paths to line numbers with a best-effort lookup for paths not written as such."""

    def __init__(self, lines: dict[Path, int]):
        self._lines = lines

    def __contains__(self, path: Sequence[str | int]) -> bool:
        return tuple(path) in self._lines

    def exact(self, path: Sequence[str | int]) -> int | None:
        return self._lines.get(tuple(path))

    def line(self, path: Sequence[str | int]) -> int:
        """The line of path, else of its nearest written ancestor; 0 when nothing matches."""
        p = tuple(path)
        while p:
            if p in self._lines:
                return self._lines[p]
            p = p[:-1]
        return 0

    def as_dict(self) -> dict[Path, int]:
        return dict(self._lines)


def format_path(path: Sequence[str | int]) -> str:
    """``("step", 2, "until", "time")`` -> ``"step[2].until.time"``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + part
    return out


def key_lines(text: str) -> KeyLines:
    """Scan TOML text and return the line of every key, table header and array element."""
    scanner = _Scanner(text)
    with contextlib.suppress(IndexError, ValueError):  # text tomllib rejects: keep what was found
        scanner.document()
    return KeyLines(scanner.lines)


class _Scanner:
    def __init__(self, text: str):
        self.s = text
        self.i = 0
        self.n = len(text)
        self.newlines = [m.start() for m in re.finditer("\n", text)]
        self.lines: dict[Path, int] = {}
        # Arrays of tables seen so far: concrete path -> number of elements.
        self.aot: dict[Path, int] = {}
        # Sub-table counts per array element are tracked by concrete paths, so nested
        # [[a.b]] inside the latest [[a]] element resolves to ("a", k, "b", j).

    def line_at(self, pos: int) -> int:
        return bisect.bisect_left(self.newlines, pos) + 1

    def mark(self, path: Path, pos: int) -> None:
        self.lines.setdefault(path, self.line_at(pos))

    # -- lexical helpers ---------------------------------------------------------------------------
    def skip_ws(self) -> None:
        while self.i < self.n and self.s[self.i] in _WS:
            self.i += 1

    def skip_ws_comments_newlines(self) -> None:
        while self.i < self.n:
            c = self.s[self.i]
            if c in _WS or c in "\r\n":
                self.i += 1
            elif c == "#":
                self.skip_comment()
            else:
                break

    def skip_comment(self) -> None:
        end = self.s.find("\n", self.i)
        self.i = self.n if end < 0 else end

    def skip_to_line_end(self) -> None:
        self.skip_ws()
        if self.i < self.n and self.s[self.i] == "#":
            self.skip_comment()

    def read_string(self) -> str:
        """Read a basic, literal or multi-line string starting at self.i; return its raw body."""
        s = self.s
        q = s[self.i]
        if s.startswith(q * 3, self.i):
            start = self.i + 3
            j = start
            while True:
                j = s.index(q * 3, j)
                if q == '"' and _escaped(s, j):
                    j += 1
                    continue
                # A closing delimiter may be followed by up to two more quotes (part of the body).
                end = j
                while end + 3 < len(s) and s[end + 3] == q and end - j < 2:
                    end += 1
                self.i = end + 3
                return s[start:end]
        start = self.i + 1
        j = start
        while True:
            c = s[j]
            if c == "\n":
                raise ValueError("unterminated string")
            if q == '"' and c == "\\":
                j += 2
                continue
            if c == q:
                self.i = j + 1
                return s[start:j]
            j += 1

    def read_key(self) -> list[str]:
        """A dotted key (bare and/or quoted parts)."""
        parts: list[str] = []
        while True:
            self.skip_ws()
            c = self.s[self.i]
            if c in "\"'":
                parts.append(self.read_string())
            else:
                m = _BARE_KEY.match(self.s, self.i)
                if not m:
                    raise ValueError(f"expected a key at {self.i}")
                parts.append(m.group())
                self.i = m.end()
            self.skip_ws()
            if self.i < self.n and self.s[self.i] == ".":
                self.i += 1
                continue
            return parts

    # -- grammar -----------------------------------------------------------------------------------
    def document(self) -> None:
        current: Path = ()
        while True:
            self.skip_ws_comments_newlines()
            if self.i >= self.n:
                return
            start = self.i
            if self.s.startswith("[[", self.i):
                self.i += 2
                parts = self.read_key()
                self.i += 2  # ]]
                current = self.resolve(parts, new_array_element=True)
                self.mark(current, start)
            elif self.s[self.i] == "[":
                self.i += 1
                parts = self.read_key()
                self.i += 1  # ]
                current = self.resolve(parts, new_array_element=False)
                self.mark(current, start)
            else:
                self.key_value(current)
            self.skip_to_line_end()

    def resolve(self, parts: list[str], *, new_array_element: bool) -> Path:
        """Concrete path of a table header; arrays of tables resolve to their latest element."""
        path: Path = ()
        for k, part in enumerate(parts):
            path = (*path, part)
            last = k == len(parts) - 1
            if last and new_array_element:
                count = self.aot.get(path, 0)
                self.aot[path] = count + 1
                self.mark(path, self.i)
                return (*path, count)
            if path in self.aot:
                path = (*path, self.aot[path] - 1)
        return path

    def key_value(self, table: Path) -> None:
        start = self.i
        parts = self.read_key()
        path = (*table, *parts)
        for depth in range(len(table) + 1, len(path) + 1):
            self.mark(path[:depth], start)
        self.skip_ws()
        self.i += 1  # =
        self.skip_ws()
        self.value(path)

    def value(self, path: Path) -> None:
        c = self.s[self.i]
        if c in "\"'":
            self.read_string()
        elif c == "[":
            self.array(path)
        elif c == "{":
            self.inline_table(path)
        else:  # number, bool, date: runs to a delimiter
            while self.i < self.n and self.s[self.i] not in ",]}#\r\n":
                self.i += 1

    def array(self, path: Path) -> None:
        self.i += 1  # [
        index = 0
        while True:
            self.skip_ws_comments_newlines()
            if self.s[self.i] == "]":
                self.i += 1
                return
            self.mark((*path, index), self.i)
            self.value((*path, index))
            index += 1
            self.skip_ws_comments_newlines()
            if self.s[self.i] == ",":
                self.i += 1

    def inline_table(self, path: Path) -> None:
        self.i += 1  # {
        while True:
            self.skip_ws_comments_newlines()  # newlines are TOML 1.1; tolerate them
            if self.s[self.i] == "}":
                self.i += 1
                return
            self.key_value(path)
            self.skip_ws_comments_newlines()
            if self.s[self.i] == ",":
                self.i += 1


def _escaped(s: str, j: int) -> bool:
    """True if the character at j is preceded by an odd number of backslashes."""
    k = j - 1
    count = 0
    while k >= 0 and s[k] == "\\":
        count += 1
        k -= 1
    return count % 2 == 1
