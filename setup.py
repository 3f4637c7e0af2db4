"""Build hook: the wheel carries the data folders at the repository root as package data, ``archsim/_data/<folder>``.

The folders stay at the root in the repository (README commands and tests name ``hardware/h100.yaml`` and so on);
``[tool.setuptools.data-files]`` would install them outside the package, where no lookup finds them, so build_py
copies them into the build tree instead, and archsim.paths.data_dir finds them there. Everything else about the
build is declared in pyproject.toml."""
from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
# the same names as archsim.paths.DATA_FOLDERS (tests/test_packaging.py checks); not imported, so building needs
# nothing from the package itself
DATA_FOLDERS = ("deployments", "hardware", "stacks", "validation", "workloads")


class BuildPyWithData(build_py):
    """build_py, then a copy of each data folder under ``<build_lib>/archsim/_data``."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return  # an editable install reads the checkout's folders (archsim.paths.data_dir)
        target = Path(self.build_lib) / "archsim" / "_data"
        for name in DATA_FOLDERS:
            shutil.copytree(ROOT / name, target / name, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("__pycache__", ".*"))


setup(cmdclass={"build_py": BuildPyWithData})
