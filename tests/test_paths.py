"""archsim.paths: the shipped data folders are found from $ARCHSIM_HOME, from the wheel's copy inside the package
(archsim/_data, written by setup.py), from a checkout, or from the working directory."""
from __future__ import annotations

from pathlib import Path

import archsim.paths as paths


def test_checkout_folders_are_found_beside_the_package(monkeypatch) -> None:
    monkeypatch.delenv("ARCHSIM_HOME", raising=False)
    for name in paths.DATA_FOLDERS:
        assert paths.data_dir(name) == paths.SOURCE_ROOT / name
        assert (paths.data_dir(name)).is_dir()


def test_installed_package_falls_back_to_home_then_working_directory(tmp_path: Path, monkeypatch) -> None:
    site = tmp_path / "site-packages"          # an install without the data copy: no data folders beside it
    site.mkdir()
    monkeypatch.setattr(paths, "SOURCE_ROOT", site)
    monkeypatch.setattr(paths, "PACKAGE_DATA", site / "archsim" / "_data")
    work = tmp_path / "work"
    (work / "validation").mkdir(parents=True)
    monkeypatch.chdir(work)
    monkeypatch.delenv("ARCHSIM_HOME", raising=False)
    assert paths.data_dir("validation") == work / "validation"
    home = tmp_path / "home"
    (home / "validation").mkdir(parents=True)
    monkeypatch.setenv("ARCHSIM_HOME", str(home))
    assert paths.data_dir("validation") == home / "validation"
    # nothing anywhere: the checkout path, which callers report as a missing folder
    assert paths.data_dir("hardware") == site / "hardware"


def test_the_wheel_copy_comes_before_a_same_named_folder_in_site_packages(tmp_path: Path, monkeypatch) -> None:
    # installed, SOURCE_ROOT is site-packages, where another distribution may own a top-level 'validation' package
    site = tmp_path / "site-packages"
    (site / "validation").mkdir(parents=True)
    (site / "archsim" / "_data" / "validation").mkdir(parents=True)
    monkeypatch.setattr(paths, "SOURCE_ROOT", site)
    monkeypatch.setattr(paths, "PACKAGE_DATA", site / "archsim" / "_data")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ARCHSIM_HOME", raising=False)
    assert paths.data_dir("validation") == site / "archsim" / "_data" / "validation"
    home = tmp_path / "home"
    (home / "validation").mkdir(parents=True)
    monkeypatch.setenv("ARCHSIM_HOME", str(home))
    assert paths.data_dir("validation") == home / "validation"  # the user's own folder still wins
