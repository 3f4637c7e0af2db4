"""archsim.config.shipped and the loaders that use it: a shipped name (``h100``, ``kimi_k2``, ``sglang``) and the
path of the same file give the same record, from any working directory; an unknown name is a one-line ConfigError
that lists the shipped names; a missing path still says "expected an existing file"."""
from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest

from archsim.config import workload as workload_module
from archsim.config.deployment import load_deployment
from archsim.config.hardware import hardware_names, load_hardware, resolve_hardware
from archsim.config.shipped import looks_like_path, shipped_names
from archsim.config.stack import load_stack, resolve_stack, stack_names
from archsim.config.workload import load_workload, workload_names
from archsim.config.yaml_io import load_yaml
from archsim.errors import ConfigError
from archsim.paths import data_dir

LOADERS = {"hardware": load_hardware, "workloads": load_workload, "stacks": load_stack,
           "deployments": load_deployment}


def _same(a, b) -> bool:
    """Records equal in every field but the file they were read from (a DeploymentSpec has no such field)."""
    if dataclasses.is_dataclass(a) and any(f.name == "source_file" for f in dataclasses.fields(a)):
        return dataclasses.replace(a, source_file="") == dataclasses.replace(b, source_file="")
    return a == b


@pytest.mark.parametrize("folder", sorted(LOADERS))
def test_every_shipped_name_and_its_path_load_the_same_record(folder: str, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # names must not depend on the working directory (the checkout)
    names = shipped_names(folder)
    assert names and names == sorted(p.name[:-5] for p in data_dir(folder).glob("*.yaml"))
    for name in names:
        path = data_dir(folder) / f"{name}.yaml"
        by_name, by_path = LOADERS[folder](name), LOADERS[folder](path)
        assert by_name == by_path  # same file: even source_file agrees
        shutil.copy(path, tmp_path / "mine.yaml")  # a user's own copy, given relative to the working directory
        assert _same(LOADERS[folder]("./mine.yaml"), by_name)


def test_name_lists_match_the_folders() -> None:
    assert hardware_names() == shipped_names("hardware") and "h100" in hardware_names()
    assert "h200.calibrated" in hardware_names()  # a dot inside a name is not a file suffix
    assert workload_names() == shipped_names("workloads") and "kimi_k2" in workload_names()
    assert stack_names() == shipped_names("stacks") and "sglang" in stack_names()


def test_resolvers_take_names_records_and_none() -> None:
    h100 = load_hardware("h100")
    assert resolve_hardware(h100) is h100 and resolve_hardware("h100") == h100
    assert resolve_stack(None) is None and resolve_stack("sglang") == load_stack("sglang")


@pytest.mark.parametrize(("loader", "folder", "field", "typo", "hint"), [
    (load_hardware, "hardware", "hw", "h10", "h100"),
    (load_workload, "workloads", "workload", "kimi", "kimi_k2"),
    (load_stack, "stacks", "stack", "sglan", "sglang"),
])
def test_unknown_name_is_one_line_listing_the_shipped_names(loader, folder, field, typo, hint) -> None:
    with pytest.raises(ConfigError) as info:
        loader(typo)
    message = str(info.value)
    assert "\n" not in message and info.value.path == field and info.value.got == typo
    assert ", ".join(shipped_names(folder)) in message and f"did you mean '{hint}'?" in message


@pytest.mark.parametrize("loader", [load_hardware, load_workload, load_stack, load_deployment])
def test_a_missing_path_is_still_a_missing_file(loader) -> None:
    # a path (directory part or data-file suffix) is never looked up as a name: the user meant that file
    for missing in ("no/such/file.yaml", "no_such_file.yaml", "./h100"):
        with pytest.raises(ConfigError, match=r"expected an existing file, got 'no such file'") as info:
            loader(missing)
        assert info.value.file == missing


def test_non_string_argument_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="hw: expected a hardware YAML path or a shipped name"):
        load_hardware(100)


def test_path_shapes() -> None:
    assert looks_like_path("./x") and looks_like_path("a/b") and looks_like_path("chip.YAML")
    assert looks_like_path("config.json") and looks_like_path("..")
    assert not looks_like_path("h100") and not looks_like_path("h200.calibrated")


def _hf_dir(tmp_path: Path) -> Path:
    """A checkpoint directory whose config.json holds the shipped Kimi K2 model fields (HF names, as JSON)."""
    folder = tmp_path / "Kimi-K2-Instruct"
    folder.mkdir()
    model = load_yaml(data_dir("workloads") / "kimi_k2.yaml")["model"]
    (folder / "config.json").write_text(json.dumps(model))
    return folder


def test_hf_config_goes_to_the_hf_module(tmp_path: Path, monkeypatch) -> None:
    folder = _hf_dir(tmp_path)
    seen = []
    sentinel = object()

    def fake(path):  # noqa: ANN001 - stands in for archsim.config.hf.workload_from_hf_config
        seen.append(path)
        return sentinel

    monkeypatch.setattr(workload_module, "_hf_loader", lambda: fake)
    assert load_workload(folder) is sentinel and load_workload(folder / "config.json") is sentinel
    assert seen == [str(folder / "config.json")] * 2


def test_hf_config_without_the_hf_module_reads_it_as_a_model_config(tmp_path: Path, monkeypatch) -> None:
    # until archsim.config.hf exists: the fields load as a workload YAML's `model_config:` file would, with the
    # default scenario, named after the checkpoint directory
    folder = _hf_dir(tmp_path)
    monkeypatch.setattr(workload_module, "_hf_loader", lambda: None)
    w = load_workload(str(folder))
    assert w.name == "Kimi-K2-Instruct" and w.model == load_workload("kimi_k2").model
    assert w.source_file == str(folder / "config.json") and w.scenario.batch == 1
    assert load_workload(folder / "config.json").model == w.model


def test_directory_without_config_json_is_not_a_workload(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="expected a YAML file, got 'a directory'"):
        load_workload(str(tmp_path) + "/")
