"""The package installs as cellbench.*, and analysis imports without Qt, pyserial or pyvisa."""

import subprocess
import sys

BLOCKER = """
import sys, importlib.abc
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split('.')[0] in {'PySide6', 'serial', 'pyvisa', 'pyvisa_py', 'pyqtgraph'}:
            raise ImportError('blocked ' + name)
sys.meta_path.insert(0, Block())
import cellbench.analysis, pkgutil, importlib
for m in pkgutil.walk_packages(cellbench.analysis.__path__, 'cellbench.analysis.'):
    importlib.import_module(m.name)
print('ok')
"""


def test_analysis_imports_without_hardware_or_gui_packages(tmp_path):
    out = subprocess.run(
        [sys.executable, "-c", BLOCKER], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_cli_version_and_help(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "cellbench.cli", "--version"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0 and out.stdout.startswith("cellbench ")
    out = subprocess.run(
        [sys.executable, "-m", "cellbench.cli", "--no-such-flag"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
