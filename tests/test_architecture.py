"""The floors in `.importlinter` hold, on the layout a regular install produces.

The top-level folders (`engine/`, `comparisons/`, ...) install under one namespace
(`taskbench.engine`, ...) through setuptools' package-dir. import-linter's graph builder only
walks a top-level package's own folder, so the contracts are checked on a real install of the
project into a scratch `--target` folder, which also shows the regular (non-editable) install.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CONTRACTS = ROOT / ".importlinter"
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
NOT_SOURCE = (".git", ".venv", ".asv", "build", "results", "*.egg-info", "__pycache__", ".*cache")


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project installed (not editable) into a scratch folder."""
    # build from a copy: an in-tree build leaves build/lib behind, whose stale modules a
    # later build would package
    source = tmp_path_factory.mktemp("source") / "taskbench"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*NOT_SOURCE))
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
         "--target", str(target), str(source)],
        check=True, capture_output=True,
    )  # fmt: skip
    return target


def lint(site: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(site)}
    return subprocess.run(
        [str(LINT_IMPORTS), str(CONTRACTS), "--no-cache"],
        cwd=site, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_install_adds_one_top_level_name(installed: Path) -> None:
    names = {p.name for p in installed.iterdir() if not p.name.endswith(".dist-info")}
    assert names - {"bin"} == {"taskbench"}
    assert {p.name for p in (installed / "taskbench").iterdir()} >= {"engine", "comparisons"}


def test_regular_install_imports_from_the_namespace(installed: Path) -> None:
    code = (
        "import taskbench.engine.state as s, taskbench.comparisons.solutions as c;"
        "print(s.__file__); print(c.CONFIG_DIR.is_dir())"
    )
    env = {**os.environ, "PYTHONPATH": str(installed)}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=installed, env=env, capture_output=True, text=True,
        check=True,
    ).stdout.split()  # fmt: skip
    assert out[0].startswith(str(installed)) and out[1] == "True"


def test_editable_install_maps_the_namespace_onto_the_folders(tmp_path: Path) -> None:
    code = "import taskbench.engine, taskbench.comparisons as c; print(taskbench.engine.__file__)"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert Path(out) == ROOT / "engine" / "__init__.py"


def test_contracts_are_kept(installed: Path) -> None:
    result = lint(installed)
    print(result.stdout)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "planted", "contract"),
    [
        ("engine/state.py", "import taskbench.comparisons.queries", "Floors"),
        ("engine/state.py", "import threading", "The state machines are pure"),
        ("engine/comm.py", "import taskbench.engine.scheduler", "Engine floors"),
        ("comparisons/queries.py", "import taskbench.cli", "Floors"),
        ("reports/__init__.py", "import taskbench.engine.stream", "Reports read records"),
        ("reports/__init__.py", "import taskbench.comparisons.compare", "Reports read records"),
    ],
)
def test_a_planted_violation_breaks_its_contract(
    installed: Path, tmp_path: Path, module: str, planted: str, contract: str
) -> None:
    site = tmp_path / "site"
    shutil.copytree(installed, site)
    path = site / "taskbench" / module
    path.write_text(path.read_text() + f"\n{planted}  # planted\n")
    result = lint(site)
    assert result.returncode != 0
    assert "BROKEN" in result.stdout
    broken = [line for line in result.stdout.splitlines() if "BROKEN" in line]
    assert any(contract in line for line in broken), result.stdout
