"""Help text that needs a heavy import, filled in only when the help is shown.

Registering the commands must stay cheap (``cellbench --help`` imports no numpy, polars or scipy;
tests/test_cli_startup.py checks it), but some descriptions name things that live in heavy modules:
the file formats the readers know, the circuits the EIS fit chooses among, the templates of the
blocking-electrode fit. Such a text or list of choices is computed by a function called when it is
first needed (``--help`` formats it, or a parse checks a value against it), so it never goes stale
and costs nothing otherwise.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator, Sequence


def describe_when_shown(parser: argparse.ArgumentParser, describe: Callable[[], str]) -> None:
    """Give ``parser`` the description ``describe()`` returns, computed when its help is shown."""
    plain_format_help = parser.format_help

    def format_help() -> str:
        if parser.description is None:
            parser.description = describe()
        return plain_format_help()

    parser.format_help = format_help  # type: ignore[method-assign]


class LazyChoices(Sequence[str]):
    """An argument's ``choices`` listed by ``names()``, called on the first look (a parse that
    reaches the argument, or its help), so registering the argument imports nothing heavy."""

    def __init__(self, names: Callable[[], Sequence[str]]) -> None:
        self._names = names
        self._cache: tuple[str, ...] | None = None

    def _all(self) -> tuple[str, ...]:
        if self._cache is None:
            self._cache = tuple(self._names())
        return self._cache

    def __getitem__(self, index):  # type: ignore[override]
        return self._all()[index]

    def __len__(self) -> int:
        return len(self._all())

    def __contains__(self, value: object) -> bool:
        return value in self._all()

    def __iter__(self) -> Iterator[str]:
        return iter(self._all())
