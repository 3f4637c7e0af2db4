"""A stack changes a step by named effects only (mapping/phases.py): host time per iteration, the kernel library of
each op kind (its MMA and bandwidth factors, cost/work.py), the DeepEP mode and the CUDA-graph batch limit."""
from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest

from archsim.config.stack import HostOverhead, stack_from_dict
from archsim.config.workload import load_workload
from archsim.cost.work import extract_work, hardware_arrays, price_work
from archsim.graph.build import build_decode
from archsim.graph.precision import Shard, scenario_precision
from archsim.mapping.parallelism import Parallelism
from archsim.mapping.phases import price_phase
from archsim.paths import data_dir
from tests.config.test_stack import STACK, chip

LIBS = {"ref": {}, "half": {"mma_fraction": 0.5, "bandwidth_fraction": 0.5}}


def stack(**changes):
    data = copy.deepcopy(STACK)
    data["kernels"] = {"hopper": {"dense_gemm": "ref", "moe_gemm": "ref", "attention_decode": "ref"}}
    for path, value in changes.items():
        section, key = path.split("__")
        data[section][key] = value
    return stack_from_dict(data)


@pytest.fixture(scope="module")
def setup():
    wl = load_workload(data_dir("workloads") / "deepseek_v3.yaml")
    return wl.model, chip(LIBS), scenario_precision(wl.scenario)


def decode(setup, batch=8, cuda_graph=True, **kw):
    model, hw, precision = setup
    par = Parallelism(tp=8, moe_tp=8)
    return price_phase(model, hw, par, precision, phase="decode", batch=batch, length=2048, cuda_graph=cuda_graph,
                       **kw)


def test_host_time_adds_to_a_serial_stack_and_hides_in_an_overlapped_one(setup):
    base = decode(setup)
    serial = decode(setup, stack=stack(host__overlapped=False, host__iteration="2 ms"))
    # every op on the reference library, so the GPU part is unchanged; one decode forward = one iteration
    assert serial.time_s - base.time_s == pytest.approx(2e-3, rel=1e-9)
    assert serial.host_s == pytest.approx(2e-3, rel=1e-12)
    hidden = decode(setup, stack=stack(host__overlapped=True, host__iteration="1 us"))
    assert hidden.time_s == pytest.approx(base.time_s, rel=1e-12) and hidden.host_s == 0.0
    longer = decode(setup, stack=stack(host__overlapped=True, host__iteration="1 s"))
    assert longer.time_s == pytest.approx(1.0, rel=1e-12)  # max(GPU, host): the host's 1 s


def test_cuda_graphs_stop_at_the_largest_captured_batch(setup):
    model, hw, _ = setup
    inside = decode(setup, batch=8, graph_max_batch=8)
    outside = decode(setup, batch=8, graph_max_batch=4)
    # batch 8 on one replica: captured when the limit is 8, launched kernel by kernel when it is 4
    eager = decode(setup, batch=8, cuda_graph=False)
    assert hw.kernel_launch_s > hw.graph_launch_s
    assert outside.time_s > inside.time_s
    assert outside.time_s == eager.time_s


def test_a_half_rate_library_prices_its_op_kind_as_a_chip_at_half_the_rates(setup):
    """A library at half the MMA rate and half the main-memory rate prices each grouped-GEMM row exactly as the
    reference kernel on a chip whose tensor peaks, HBM bandwidth and per-SM stream are halved; other rows are
    untouched."""
    model, hw, precision = setup
    graph = build_decode(model, batch=64, context=4096, precision=precision, shard=Shard(tp=8), compact=True)
    ops = [graph.nodes[n]["op"] for n in graph.nodes]
    ref = extract_work(ops, hw)
    half = extract_work(ops, hw, libraries=(("grouped_gemm", 0.5, 0.5), ("gemm", 1.0, 1.0)))
    slow_hw = halved_chip()
    a, b = price_work(ref, hardware_arrays(hw, ref)), price_work(half, hardware_arrays(hw, half))
    c = price_work(ref, hardware_arrays(slow_hw, ref))
    grouped = np.array([k == "grouped_gemm" for k in ref.kinds])
    assert grouped.any()
    assert np.allclose(b.time_s[grouped], c.time_s[grouped], rtol=1e-12)
    assert np.allclose(b.compute_s[grouped], c.compute_s[grouped], rtol=1e-12)
    assert (b.time_s[grouped] >= a.time_s[grouped]).all()  # launch-bound rows (4 us) stay at the launch floor
    assert (b.time_s[grouped] > 1.9 * a.time_s[grouped]).any()
    assert np.array_equal(b.time_s[~grouped], a.time_s[~grouped])  # every other op bit for bit


def halved_chip():
    from archsim.config.hardware import hardware_from_dict
    from archsim.config.yaml_io import load_yaml
    from archsim.units import parse_quantity

    data = copy.deepcopy(load_yaml(data_dir("hardware") / "h200.yaml"))
    data["family"] = "hopper"
    data["kernel"]["libraries"] = LIBS
    peaks = data["compute"]["tensor"]["peak"]
    for key, text in peaks.items():
        number, unit = text.split(" ", 1)
        peaks[key] = f"{float(number) / 2} {unit}"
    hbm = data["memory"]["hbm"]
    number, unit = hbm["bandwidth"].split(" ", 1)
    hbm["bandwidth"] = f"{float(number) / 2} {unit}"
    number, unit = data["kernel"]["sm_stream_bandwidth"].split(" ", 1)
    data["kernel"]["sm_stream_bandwidth"] = f"{float(number) / 2} {unit}"
    return hardware_from_dict(data, "h200-half.yaml")


def test_the_stacks_library_reaches_the_step(setup):
    model, hw, precision = setup
    slow = stack()
    slow = dataclasses.replace(slow, kernels={"hopper": dataclasses.replace(
        slow.kernels["hopper"], libraries={**slow.kernels["hopper"].libraries, "moe_gemm": "half"})})
    ref, halved = decode(setup, stack=stack(host__iteration="0 s")), decode(setup, stack=dataclasses.replace(
        slow, host=HostOverhead()))
    assert halved.time_s > ref.time_s
