"""The package as users and maintainers meet it: a light import with lazy entry points, and no dead code."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_package_root_reexports_entry_points_lazily():
    code = ("import sys, hwlat; assert 'torch' not in sys.modules and 'sklearn' not in sys.modules; "
            "assert hwlat.get_space('nb201').name == 'nb201'; "
            "assert all(getattr(hwlat, name) is not None for name in hwlat.__all__)")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_no_unused_imports_or_undefined_names():
    """pyflakes' checks through ruff: unused imports and variables, undefined names, syntax errors."""
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "--select", "F,E9", "--no-cache",
                             "hwlat", "tests", "benchmarks"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
