"""hardware YAML ``power:``: the optional node host power and facility PUE (docs/energy.md)."""
from __future__ import annotations

import copy
from pathlib import Path

import pytest

from archsim.config.hardware import hardware_from_dict
from archsim.config.yaml_io import load_yaml
from archsim.errors import ConfigError

H100 = Path(__file__).resolve().parents[2] / "hardware" / "h100.yaml"


def _with_power(**fields):
    data = copy.deepcopy(load_yaml(H100))
    data["power"].update(fields)
    return data


def test_optional_fields_parse_in_si():
    hw = hardware_from_dict(_with_power(pue=1.25), str(H100))
    assert hw.power.host_per_node_w == 4600.0 and hw.power.pue == 1.25
    data = _with_power()
    del data["power"]["host_per_node"]
    assert hardware_from_dict(data, str(H100)).power.host_per_node_w is None


@pytest.mark.parametrize("fields, path", [({"pue": 0.9}, "power.pue"), ({"pue": "1.2 W"}, "power.pue"),
                                          ({"host_per_node": "4.6 kJ"}, "power.host_per_node"),
                                          ({"host_pernode": "1 kW"}, "power")])
def test_bad_power_fields_are_one_config_error(fields, path):
    with pytest.raises(ConfigError) as err:
        hardware_from_dict(_with_power(**fields), str(H100))
    assert path in str(err.value)
