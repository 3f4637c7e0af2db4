"""``--set FIELD=VALUE`` for any input: a model field (``model.n_routed_experts=128``, Hugging Face names), a scenario
field (``scenario.batch=64``) or a hardware field (``memory.hbm.bandwidth=4TB/s``, the YAML path as written in
hardware/*.yaml). Each override is applied to the mapping the record was loaded from and the record is rebuilt by
the same strict loader, so a value gets the same checks, units and did-you-mean hints as in a YAML file."""
from __future__ import annotations

import copy
import dataclasses
import difflib
from typing import Any, Iterable

import yaml

from archsim.config.hardware import Hardware, hardware_from_dict
from archsim.config.model import ModelConfig, model_from_dict
from archsim.config.workload import Scenario, Workload, check_acceptance, check_scenario
from archsim.config.yaml_io import load_yaml
from archsim.errors import ConfigError

SECTIONS = ("model", "scenario")  # any other first component is a hardware path


@dataclasses.dataclass(frozen=True, kw_only=True)
class Setting:
    """One ``--set``: the dotted field path and the value as written."""

    path: str
    text: str

    @property
    def section(self) -> str:
        head = self.path.split(".", 1)[0]
        return head if head in SECTIONS else "hardware"

    @property
    def value(self) -> Any:
        """The value as YAML reads it: ``128`` an int, ``0.5`` and ``1e-6`` floats, ``true`` a bool, ``4TB/s`` a
        string (the loader parses quantities), ``[1, 2]`` a list."""
        try:
            value = yaml.safe_load(self.text)
        except yaml.YAMLError:
            return self.text
        if isinstance(value, str):  # YAML 1.1 reads 1e-6 (no dot) as text; a number was meant
            try:
                return float(value)
            except ValueError:
                pass
        return value


def parse_setting(text: str) -> Setting:
    """``FIELD=VALUE`` as a Setting; a ConfigError naming --set otherwise."""
    path, sep, value = text.partition("=")
    if not sep or not path.strip() or not value.strip() or path.strip().endswith("."):
        raise ConfigError(None, "--set", "FIELD=VALUE, e.g. model.n_routed_experts=128 or memory.hbm.bandwidth=4TB/s",
                          text)
    return Setting(path=path.strip(), text=value.strip())


def apply_settings(workload: Workload, hw: Hardware, settings: Iterable[Setting]) -> tuple[Workload, Hardware]:
    """The workload and hardware with every setting applied (model, then scenario, then hardware fields)."""
    settings = list(settings)
    by = {s: [x for x in settings if x.section == s] for s in ("model", "scenario", "hardware")}
    if by["model"]:
        workload = dataclasses.replace(workload, model=_model(workload.model, by["model"], workload.source_file))
    if by["model"] or by["scenario"]:
        workload = dataclasses.replace(workload, scenario=_scenario(workload, by["scenario"]))
    if by["hardware"]:
        hw = _hardware(hw, by["hardware"])
    return workload, hw


def _model(model: ModelConfig, settings: list[Setting], file: str) -> ModelConfig:
    data = _model_mapping(model)
    known = set(data)
    for s in settings:
        key = s.path.split(".", 1)[1] if "." in s.path else ""
        if key not in known:
            close = difflib.get_close_matches(key, sorted(known), n=1)
            raise ConfigError(None, f"--set {s.path}", "a model field (Hugging Face name)"
                              + (f"; did you mean 'model.{close[0]}'?" if close else ""), key)
        data[key] = s.value
    return model_from_dict(data, f"{file} with --set", "model")


def _model_mapping(model: ModelConfig) -> dict[str, Any]:
    """The model's fields as the mapping ``model_from_dict`` reads (nested records as mappings)."""
    out = {}
    for f in dataclasses.fields(model):
        value = getattr(model, f.name)
        if dataclasses.is_dataclass(value):
            value = {k: v for k, v in dataclasses.asdict(value).items() if v is not None}
        elif isinstance(value, tuple):
            value = list(value)
        out[f.name] = value
    return out


def _scenario(workload: Workload, settings: list[Setting]) -> Scenario:
    sc = workload.scenario
    names = {f.name for f in dataclasses.fields(Scenario)}
    fields = {}
    for s in settings:
        key = s.path.split(".", 1)[1] if "." in s.path else ""
        if key not in names or key in ("parallelism", "expert_load"):
            options = sorted(names - {"parallelism", "expert_load"})
            close = difflib.get_close_matches(key, options, n=1)
            raise ConfigError(None, f"--set {s.path}", "a scenario field (" + ", ".join(options) + ")"
                              + (f"; did you mean 'scenario.{close[0]}'?" if close else ""), key)
        fields[key] = s.value
    if "mtp_acceptance" in fields:
        fields["mtp_acceptance"] = check_acceptance(fields["mtp_acceptance"], workload.model, None,
                                                    "--set scenario.mtp_acceptance")
    out = dataclasses.replace(sc, **fields)
    for key, value in fields.items():  # the types the YAML loader would enforce
        expected = type(getattr(sc, key))
        if expected in (int, float, bool, str) and not isinstance(value, expected) and not (
                expected is float and isinstance(value, int) and not isinstance(value, bool)):
            raise ConfigError(None, f"--set scenario.{key}", f"a {expected.__name__}", value)
    check_scenario(out, workload.model, None, "--set scenario")
    return out


def _hardware(hw: Hardware, settings: list[Setting]) -> Hardware:
    """The chip's YAML mapping with each path set, rebuilt by the strict loader."""
    if hw.source_file in (None, "<memory>"):
        raise ConfigError(None, "--set", "a hardware loaded from a YAML file (its fields are set in that mapping)",
                          hw.name)
    data = copy.deepcopy(load_yaml(hw.source_file))
    for s in settings:
        _parent(data, s.path)[s.path.rsplit(".", 1)[-1]] = s.value
    return hardware_from_dict(data, f"{hw.source_file} with --set")


def check_hardware_path(hw: Hardware, path: str) -> None:
    """A ConfigError (with a did-you-mean hint) unless ``path`` names a field of the hardware's YAML file."""
    if hw.source_file not in (None, "<memory>"):
        _parent(load_yaml(hw.source_file), path)


def _parent(data: dict, path: str) -> dict:
    """The mapping that holds the last component of ``path`` (a dotted YAML path that must exist in ``data``)."""
    node = data
    parts = path.split(".")
    for depth, part in enumerate(parts[:-1]):
        if not isinstance(node, dict) or part not in node:
            raise _unknown_path(path, parts[:depth + 1], node)
        node = node[part]
    if not isinstance(node, dict) or parts[-1] not in node:
        raise _unknown_path(path, parts, node)
    return node


def _unknown_path(path: str, upto: list[str], node) -> ConfigError:
    known = sorted(node) if isinstance(node, dict) else []
    close = difflib.get_close_matches(upto[-1], known, n=1)
    return ConfigError(None, f"--set {path}", "a field of the hardware YAML (or model.* / scenario.*)"
                       + (f"; did you mean '{'.'.join(upto[:-1] + [close[0]])}'?" if close else ""), ".".join(upto))
