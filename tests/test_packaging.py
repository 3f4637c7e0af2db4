"""The installed package: setup.py copies the same data folders archsim.paths looks up, an sdist carries them,
``archsim --version`` and ``archsim.__version__`` come from the metadata (or pyproject.toml), and ``python -m
archsim`` runs the CLI. Building and installing the wheel is checked by .ci/run (too slow for the suite)."""
from __future__ import annotations

import ast
import re
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest

import archsim
import archsim.version as version_module
from archsim.cli import main
from archsim.paths import DATA_FOLDERS, SOURCE_ROOT

REPO = Path(__file__).resolve().parents[1]
PYPROJECT_VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]


def test_setup_copies_the_folders_archsim_paths_looks_up() -> None:
    tree = ast.parse((REPO / "setup.py").read_text())
    assigned = {t.id: node.value for node in tree.body if isinstance(node, ast.Assign) for t in node.targets}
    assert ast.literal_eval(assigned["DATA_FOLDERS"]) == DATA_FOLDERS
    assert all((REPO / name).is_dir() for name in DATA_FOLDERS)


def test_sdist_manifest_grafts_every_data_folder() -> None:
    grafted = re.findall(r"^graft (\S+)$", (REPO / "MANIFEST.in").read_text(), flags=re.M)
    assert sorted(grafted) == sorted(DATA_FOLDERS)


def test_version_flag_prints_the_project_version(capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0 and capsys.readouterr().out == f"archsim {PYPROJECT_VERSION}\n"
    assert archsim.__version__ == PYPROJECT_VERSION


def test_version_without_metadata_reads_the_checkout_pyproject(monkeypatch, tmp_path: Path) -> None:
    def missing(name: str) -> str:
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "version", missing)  # a checkout on PYTHONPATH, never pip-installed
    assert version_module.version() == PYPROJECT_VERSION
    monkeypatch.setattr(version_module, "SOURCE_ROOT", tmp_path)  # neither metadata nor pyproject.toml
    assert version_module.version() == "unknown"


def test_python_dash_m_archsim_runs_the_cli() -> None:
    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "archsim", *args], cwd=SOURCE_ROOT, capture_output=True,
                              text=True, timeout=60)

    helped = run("--help")
    assert helped.returncode == 0 and "usage: archsim" in helped.stdout and "list" in helped.stdout
    versioned = run("--version")
    assert versioned.returncode == 0 and versioned.stdout.strip() == f"archsim {PYPROJECT_VERSION}"
    bad = run("run", "no_such_model", "--hw", "h100")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "one of deepseek_v3, kimi_k2" in bad.stderr
