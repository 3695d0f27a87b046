"""Imports point one way (docs/architecture.md): checked from every module's own imports.

Each module's source is parsed with :mod:`ast`; every ``import``, ``from ... import`` (relative
ones resolved) and ``importlib.import_module("...")`` with a literal name counts, at module level
or inside a function, a class or an ``if TYPE_CHECKING:`` block alike.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: The repository folders that install as ``cellbench.<folder>`` (pyproject's package-dir).
LAYERS = ("core", "analysis", "drivers", "daq", "gui", "cli", "fixtures")

#: What each layer may import of cellbench, besides itself.
ALLOWED: dict[str, frozenset[str]] = {
    "core": frozenset(),
    "analysis": frozenset({"core"}),
    "drivers": frozenset({"core"}),
    "fixtures": frozenset({"core"}),
    # daq -> analysis only for live derived quantities (the docs say which).
    "daq": frozenset({"core", "drivers", "analysis"}),
    "gui": frozenset({"core", "drivers", "analysis", "daq", "fixtures"}),
    "cli": frozenset({"core", "drivers", "analysis", "daq", "gui", "fixtures"}),
}

SIM = "cellbench.drivers.sim"
#: Modules (besides the simulators themselves and the tests) that start simulators.
SIM_STARTERS = frozenset({"cellbench.daq.simulated", "cellbench.cli.sim"})


@dataclass(frozen=True)
class Violation:
    module: str
    line: int
    imported: str
    rule: str

    def __str__(self) -> str:
        return f"{self.module}:{self.line} imports {self.imported}: {self.rule}"


def module_name(path: Path, root: Path = ROOT) -> str:
    """``daq/engine.py`` -> ``cellbench.daq.engine``; ``daq/__init__.py`` -> ``cellbench.daq``."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(["cellbench", *parts])


def imported_names(source: str, module: str, *, is_package: bool = False) -> list[tuple[str, int]]:
    """Every module name ``source`` imports, with its line (relative imports resolved)."""
    tree = ast.parse(source)
    package = module if is_package else module.rpartition(".")[0]
    out: list[tuple[str, int]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            # "from cellbench import daq" imports cellbench.daq; "from x.y import f" imports x.y.
            out.append((target, node.lineno))
            out += [(f"{target}.{alias.name}", node.lineno) for alias in node.names]
        elif isinstance(node, ast.Call) and _is_import_module(node.func) and node.args:
            arg = node.args[0]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                out.append((arg.value, node.lineno))
    return out


def _is_import_module(func: ast.expr) -> bool:
    if isinstance(func, ast.Attribute):
        return func.attr in ("import_module", "__import__")
    return isinstance(func, ast.Name) and func.id in ("import_module", "__import__")


def _layer(name: str) -> str | None:
    parts = name.split(".")
    if len(parts) >= 2 and parts[0] == "cellbench" and parts[1] in LAYERS:
        return parts[1]
    return None


def check_module(module: str, source: str, *, is_package: bool = False) -> list[Violation]:
    """The import rules ``module`` (a ``cellbench.*`` name) breaks with ``source``."""
    here = _layer(module)
    out: list[Violation] = []
    seen: set[tuple[str, int]] = set()
    for name, line in imported_names(source, module, is_package=is_package):
        if (name, line) in seen:
            continue
        seen.add((name, line))
        there = _layer(name)
        if there is None:
            continue  # not cellbench, or "from cellbench import <layer>" counted by its name
        if here is not None and there != here and there not in ALLOWED[here]:
            may = ", ".join(sorted(ALLOWED[here])) or "nothing else of cellbench"
            out.append(Violation(module, line, name, f"{here} may import only {may}"))
        is_sim = name == SIM or name.startswith(SIM + ".")
        own_sim = module == SIM or module.startswith(SIM + ".")
        if is_sim and not own_sim and module not in SIM_STARTERS:
            out.append(
                Violation(
                    module,
                    line,
                    name,
                    "only drivers/sim, the tests, daq/simulated.py and cli/sim.py import the "
                    "simulators",
                )
            )
    return out


def project_modules(root: Path = ROOT) -> list[Path]:
    return sorted(p for layer in LAYERS for p in (root / layer).rglob("*.py"))


# -- the rules hold for the code -------------------------------------------------------------------


def test_every_module_keeps_the_import_rules() -> None:
    modules = project_modules()
    assert len(modules) > 50  # the walk found the code
    violations = [
        v
        for path in modules
        for v in check_module(
            module_name(path),
            path.read_text(encoding="utf-8"),
            is_package=path.name == "__init__.py",
        )
    ]
    assert not violations, "import rules broken:\n" + "\n".join(map(str, violations))


# -- the checker catches what it must --------------------------------------------------------------


@pytest.mark.parametrize(
    ("module", "source", "rule"),
    [
        ("cellbench.analysis.fade", "from cellbench.daq.store import open_run", "analysis may"),
        ("cellbench.analysis.x", "import cellbench.gui.app", "analysis may"),
        ("cellbench.analysis.x", "def f():\n    from cellbench.cli import main", "analysis may"),
        ("cellbench.analysis.x", "from cellbench.drivers import transport", "analysis may"),
        ("cellbench.drivers.hioki", "from cellbench.daq import engine", "drivers may"),
        ("cellbench.drivers.hioki", "from cellbench.analysis.schema import X", "drivers may"),
        ("cellbench.core.units", "from cellbench.analysis import cycling", "core may"),
        ("cellbench.core.units", "from .. import daq", "core may"),
        ("cellbench.gui.window", "from cellbench.cli.run import fixtures_dir", "gui may"),
        ("cellbench.gui.window", "from ..cli import run", "gui may"),
        (
            "cellbench.gui.window",
            "import importlib\nimportlib.import_module('cellbench.cli.run')",
            "gui may",
        ),
        ("cellbench.daq.engine", "from cellbench.drivers.sim.clock import WallClock", "simulators"),
        (
            "cellbench.daq.aux",
            "class A:\n    def f(self):\n        import cellbench.drivers.sim",
            "simulators",
        ),
        ("cellbench.gui.app", "from cellbench.drivers import sim", "simulators"),
        ("cellbench.cli.run", "from cellbench.drivers.sim.bench import start", "simulators"),
    ],
)
def test_checker_reports_a_violation(module: str, source: str, rule: str) -> None:
    violations = check_module(module, source)
    assert violations, f"{module}: {source!r} passed"
    assert any(rule in v.rule for v in violations), violations


@pytest.mark.parametrize(
    ("module", "source"),
    [
        ("cellbench.analysis.fade", "from cellbench.core.errors import CellbenchError"),
        ("cellbench.analysis.fade", "from .cycling import cycle_summary"),
        ("cellbench.drivers.sim.bench", "from cellbench.drivers.sim import cell"),
        ("cellbench.drivers.sim.bench", "from cellbench.drivers.transport import Transport"),
        ("cellbench.daq.simulated", "from cellbench.drivers.sim.bench import start_simulators"),
        ("cellbench.cli.sim", "from cellbench.drivers.sim.bench import start_simulators"),
        ("cellbench.gui.window", "from cellbench.daq.session import prepare"),
        ("cellbench.cli.gui", "from cellbench.gui.app import main"),
        ("cellbench.core.units", "import math\nimport numpy"),
    ],
)
def test_checker_accepts_allowed_imports(module: str, source: str) -> None:
    assert check_module(module, source) == []


def test_relative_imports_resolve_from_packages_and_modules() -> None:
    assert ("cellbench.daq.store", 1) in imported_names(
        "from .store import open_run", "cellbench.daq.engine"
    )
    assert ("cellbench.daq.store", 1) in imported_names(
        "from .store import open_run", "cellbench.daq", is_package=True
    )
    assert ("cellbench.cli", 1) in imported_names("from ..cli import run", "cellbench.gui.window")
