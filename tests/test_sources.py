"""Citations and paths inside the project: no tracked file names a path of one machine (a home or work folder, a
temporary folder, the shared reference notes beside the checkout); a citation names the public source instead.
The CI script (.ci/) may use temporary folders of the machine it runs on."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# the folders of one machine a path may start from, and the reference notes beside the checkout; the pattern is
# assembled from the bare names so that this file names no such path itself and is scanned like every other
MACHINE_FOLDERS = ("work", "home", "root", "Users", "tmp")
MACHINE_PATHS = re.compile("|".join([*(f"/{folder}/" for folder in MACHINE_FOLDERS),
                                     re.escape("..") + "/shared", r"[A-Z]:[\\/]+Users"]))


def _tracked() -> list[str]:
    try:
        out = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout (an installed copy): nothing tracked to scan")
    return [f for f in out.splitlines() if not f.startswith(".ci/")]


def test_no_tracked_file_names_a_machine_path():
    hits = []
    for name in _tracked():
        path = REPO / name
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue  # binary files (PNG plots) carry no citations
        for number, line in enumerate(text.splitlines(), 1):
            if MACHINE_PATHS.search(line):
                hits.append(f"{name}:{number}: {line.strip()[:100]}")
    assert not hits, "machine paths in tracked files:\n" + "\n".join(hits[:20])


def test_the_project_declares_its_license():
    assert (REPO / "LICENSE").read_text(encoding="utf-8").startswith("MIT License")
    text = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    assert 'license = "MIT"' in text and 'license-files = ["LICENSE"]' in text
