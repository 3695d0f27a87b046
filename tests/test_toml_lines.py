"""Line numbers of TOML keys: cellbench.daq.toml_lines."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from cellbench.daq.toml_lines import format_path, key_lines

DOC = '''\
name = "x" # a comment with = and [brackets]
"quoted key" = 'C:\\path'
[safety]
voltage_min = "2.5 V"
[[step]]
type = "rest"
duration = "10 min"
[[step]]
type = "loop"
steps = [
  # a comment inside an array
  { type = "cc", current = "C/2", until = { voltage_above = "4.2 V" } },

  {type="eis", every=5, note="a, b ] } ="},
]
[[step]]
type = "loop"
[[step.steps]]
type = "rest"
[step.steps.until]
time = "1 h"
[[step.steps]]
type = "x"
[[step]]
a.b.c = """
multi "line" with [[fake]] header
"""
d = [1,
 [2, 3]]
e = 1979-05-27T07:32:00Z
f = "\\" still a string"
g = 2
'''


def test_every_key_gets_its_line() -> None:
    tomllib.loads(DOC)  # the fixture itself is valid TOML
    lines = key_lines(DOC)
    expected = {
        ("name",): 1,
        ("quoted key",): 2,
        ("safety",): 3,
        ("safety", "voltage_min"): 4,
        ("step", 0): 5,
        ("step", 0, "duration"): 7,
        ("step", 1): 8,
        ("step", 1, "steps"): 10,
        ("step", 1, "steps", 0): 12,
        ("step", 1, "steps", 0, "until", "voltage_above"): 12,
        ("step", 1, "steps", 1): 14,
        ("step", 1, "steps", 1, "every"): 14,
        ("step", 2): 16,
        ("step", 2, "steps", 0): 18,
        ("step", 2, "steps", 0, "until"): 20,
        ("step", 2, "steps", 0, "until", "time"): 21,
        ("step", 2, "steps", 1): 22,
        ("step", 2, "steps", 1, "type"): 23,
        ("step", 3): 24,
        ("step", 3, "a", "b", "c"): 25,
        ("step", 3, "d"): 28,
        ("step", 3, "d", 1, 0): 29,
        ("step", 3, "e"): 30,
        ("step", 3, "f"): 31,
        ("step", 3, "g"): 32,
    }
    for path, line in expected.items():
        assert lines.exact(path) == line, path
    # Nothing inside strings was taken for a table header.
    assert ("fake",) not in lines


def test_lookup_falls_back_to_the_nearest_written_ancestor() -> None:
    lines = key_lines(DOC)
    assert lines.line(("step", 1, "steps", 0, "until", "time")) == 12
    assert lines.line(("step", 0, "current")) == 5
    assert lines.line(("nothing",)) == 0


def test_array_of_tables_paths_match_tomllib(fixtures_dir: Path) -> None:
    """Every path the scanner reports exists in tomllib's parse of every protocol fixture."""
    files = sorted((fixtures_dir / "protocols").glob("*.toml"))
    files += sorted((fixtures_dir / "stations").glob("*.toml"))
    assert files
    for path in files:
        text = path.read_text()
        data = tomllib.loads(text)
        mapping = key_lines(text).as_dict()
        assert mapping, path
        for key_path, line in mapping.items():
            node = data
            for part in key_path:
                node = node[part]  # raises if the scanner invented a path
            assert 1 <= line <= text.count("\n") + 1


def test_invalid_text_does_not_raise() -> None:
    lines = key_lines('a = 1\nb = "unterminated\nc = 3\n')
    assert lines.exact(("a",)) == 1


@pytest.mark.parametrize(
    ("path", "text"),
    [
        (("step", 2, "until", "time"), "step[2].until.time"),
        (("safety",), "safety"),
        ((), ""),
        (("d", 0, 1), "d[0][1]"),
    ],
)
def test_format_path(path: tuple, text: str) -> None:
    assert format_path(path) == text
