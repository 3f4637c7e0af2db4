"""Stack YAMLs (config/stack.py): strict loading, the chip-family and library checks, host time per iteration."""
from __future__ import annotations

import copy

import pytest

from archsim.config.hardware import hardware_from_dict
from archsim.config.stack import HostOverhead, load_stack, stack_from_dict, stack_names
from archsim.config.yaml_io import load_yaml
from archsim.errors import ConfigError
from archsim.paths import data_dir

STACK = {
    "name": "teststack", "version": "1.0", "source": "test",
    "serving": {"chunked_prefill": 4096, "block_tokens": 16, "kv_memory_fraction": 0.9},
    "cuda_graphs": {"max_batch": 64},
    "host": {"iteration": "2 ms", "overlapped": False, "request": "10 ms"},
    "kernels": {"hopper": {"dense_gemm": "ref", "moe_gemm": "slow", "all_to_all_decode": "low_latency"}},
}


def chip(libraries: dict | None, family: str | None = "hopper"):
    """hardware/h200.yaml with the given family and kernel.libraries."""
    data = copy.deepcopy(load_yaml(data_dir("hardware") / "h200.yaml"))
    data.pop("family", None)
    if family is not None:
        data["family"] = family
    data["kernel"].pop("libraries", None)
    if libraries is not None:
        data["kernel"]["libraries"] = libraries
    return hardware_from_dict(data, "h200-test.yaml")


LIBS = {"ref": {"mma_fraction": 1.0, "bandwidth_fraction": 1.0}, "slow": {"mma_fraction": 0.5, "bandwidth_fraction": 0.8}}


def test_loads_the_fields():
    s = stack_from_dict(STACK)
    assert (s.chunked_prefill, s.block_tokens, s.kv_memory_fraction, s.cuda_graph_max_batch) == (4096, 16, 0.9, 64)
    assert s.host == HostOverhead(iteration_s=2e-3, overlapped=False, request_s=10e-3)
    assert s.max_running_requests is None and s.mixed_batches  # mixed unless the stack says otherwise
    assert s.ep_mode(chip(LIBS), "decode") == "low_latency" and s.ep_mode(chip(LIBS), "prefill") is None
    assert s.library_efficiency(chip(LIBS)) == {"dense_gemm": (1.0, 1.0), "moe_gemm": (0.5, 0.8)}


@pytest.mark.parametrize("path, value, field", [
    (("serving", "chunk"), 1, "serving.chunk"),                        # unknown key
    (("host", "iteration"), "2 GB", "host.iteration"),                  # wrong dimension
    (("kernels", "hopper", "all_to_all_decode"), "fast", "all_to_all_decode"),
    (("kernels", "hopper", "attention"), "fa3", "kernels.hopper.attention"),  # not an op kind
    (("serving", "kv_memory_fraction"), 1.5, "kv_memory_fraction"),
])
def test_bad_fields_name_the_field(path, value, field):
    data = copy.deepcopy(STACK)
    node = data
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(ConfigError) as err:
        stack_from_dict(data, "s.yaml")
    assert field in str(err.value) and "s.yaml" in str(err.value)


def test_a_chip_outside_the_stacks_families_is_refused():
    with pytest.raises(ConfigError, match="family"):
        stack_from_dict(STACK).on(chip(LIBS, family="cdna3"))
    with pytest.raises(ConfigError, match="family"):
        stack_from_dict(STACK).on(chip(LIBS, family=None))


def test_a_library_the_chip_does_not_describe_is_refused():
    with pytest.raises(ConfigError, match="kernel.libraries.slow"):
        stack_from_dict(STACK).on(chip({"ref": {}}))


def test_library_fractions_are_bounded():
    with pytest.raises(ConfigError, match="mma_fraction"):
        chip({"ref": {"mma_fraction": 0.0}})
    with pytest.raises(ConfigError, match="bandwidth_fraction"):
        chip({"ref": {"bandwidth_fraction": 2.0}})
    with pytest.raises(ConfigError, match="speed"):
        chip({"ref": {"speed": 1.0}})


def test_host_time_per_iteration():
    # serial: GPU 5 ms + host 2 ms; overlapped: the longer of the two
    assert HostOverhead(iteration_s=2e-3).step_s(5e-3) == pytest.approx(7e-3)
    assert HostOverhead(iteration_s=2e-3, overlapped=True).step_s(5e-3) == 5e-3
    assert HostOverhead(iteration_s=2e-3, overlapped=True).step_s(1e-3) == 2e-3


@pytest.mark.parametrize("name", stack_names())
def test_every_shipped_stack_loads(name):
    stack = load_stack(data_dir("stacks") / f"{name}.yaml")
    assert stack.name == name
