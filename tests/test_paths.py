"""archsim.paths: the shipped data folders are found from a checkout, from $ARCHSIM_HOME, or from the working
directory when the package was installed without them (pip install . copies only archsim/)."""
from __future__ import annotations

from pathlib import Path

import archsim.paths as paths


def test_checkout_folders_are_found_beside_the_package(monkeypatch) -> None:
    monkeypatch.delenv("ARCHSIM_HOME", raising=False)
    for name in ("hardware", "validation", "workloads"):
        assert paths.data_dir(name) == paths.SOURCE_ROOT / name
        assert (paths.data_dir(name)).is_dir()


def test_installed_package_falls_back_to_home_then_working_directory(tmp_path: Path, monkeypatch) -> None:
    site = tmp_path / "site-packages"          # an installed package: no data folders beside it
    site.mkdir()
    monkeypatch.setattr(paths, "SOURCE_ROOT", site)
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
