"""Shared fixtures: where the public datasets live, and a guard that never skips silently in CI."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def _shared_root() -> Path:
    return Path(os.environ.get("HWLAT_SHARED", PROJECT_ROOT.parent / "shared")).resolve()


def skip_or_fail(message: str) -> None:
    """Skip the test locally; fail it when CI=true, where nothing may be skipped silently."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


def require_shared(relative: str) -> Path:
    """Path of a file under the shared folder; skip when absent locally, fail when CI=true."""
    path = _shared_root() / relative
    if not path.exists():
        skip_or_fail(f"shared data missing: {path} (set HWLAT_SHARED)")
    return path


def render_in_chromium(page: Path, folder: Path) -> str:
    """The DOM of the HTML file `page` after headless Chromium ran its scripts, once a screenshot (in `folder`)
    showed it draws; skips without chromium locally, fails in CI (.ci/run installs the Debian package)."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        skip_or_fail("chromium not installed (Debian package chromium; .ci/run installs it)")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--window-size=1200,1400", "--virtual-time-budget=5000"]
    shot = folder / "shot.png"
    subprocess.run([browser, *flags, f"--screenshot={shot}", page.as_uri()], capture_output=True, timeout=120,
                   check=True)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
    return subprocess.run([browser, *flags, "--dump-dom", page.as_uri()], capture_output=True, text=True,
                          timeout=120, check=True).stdout


@pytest.fixture
def shared_data() -> Path:
    """The shared `data/` folder (HELP latencies, NATS-Bench accuracies)."""
    return require_shared("data")


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory, monkeypatch):
    """Keep every test away from the user's registry and default database."""
    home = tmp_path_factory.mktemp("hwlat_home")
    monkeypatch.setenv("HWLAT_HOME", str(home))
    monkeypatch.chdir(home)


@pytest.fixture
def hwlat(monkeypatch, capsys):
    """Run the `hwlat` command in this process (TVM is imported once); returns (exit code, stdout, stderr)."""
    from hwlat.cli import main

    def run(*args: str) -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "argv", ["hwlat", *args])
        capsys.readouterr()
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = exc.code or 0
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.fixture(scope="module")
def nb201():
    """HELP's NAS-Bench-201 latency dataset from the shared folder."""
    from hwlat.datasets import load_help

    return load_help(require_shared("data/help"), "nb201")


@pytest.fixture(scope="module")
def fitted(nb201):
    """hwlat's predictor fitted on HELP's NB201 meta-train devices as HELP meta-trains (their source view)."""
    from hwlat.predictors import HELP_SPLITS, OpPriorPredictor, source_view

    return OpPriorPredictor().fit(source_view(nb201, HELP_SPLITS["nb201"]["meta_train"]))
