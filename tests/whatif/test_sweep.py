"""Sweeps: axis parsing, sampling, agreement with estimate(), invariants, Pareto, local and Dask runs."""
import dataclasses
from pathlib import Path

import numpy as np
import pytest

from archsim.api import estimate
from archsim.config.hardware import load_hardware
from archsim.errors import ConfigError
from archsim.whatif.sweep import SweepModel, SweepSpec, pareto_front, run_sweep
from archsim.whatif.sweep_spec import parse_set, sample

ROOT = Path(__file__).resolve().parents[2]
KIMI = str(ROOT / "workloads" / "kimi_k2.yaml")
H100 = str(ROOT / "hardware" / "h100.yaml")


@pytest.fixture(scope="module")
def kimi_model():
    return SweepModel(KIMI, H100, devices=16)


def test_parse_set_forms():
    grid = parse_set("memory.hbm.bandwidth=2TB/s..20TB/s:10")
    assert (grid.low, grid.high, grid.count) == (2e12, 20e12, 10)
    assert np.allclose(grid.grid_values(), np.linspace(2e12, 20e12, 10))
    logs = parse_set("compute.tensor.peak.fp8=1PFLOPS..100PFLOPS:3:log")
    assert np.allclose(logs.grid_values(), [1e15, 1e16, 1e17])
    assert parse_set("compute.tensor.achievable_fraction=0.5,0.8").values == (0.5, 0.8)
    assert parse_set("price=$2/h").values == (2.0,)
    for bad in ("memory.hbm.bandwidth", "memory.hbm.bandwidth=2 GHz", "memory.hbm.colour=1", "power.idle=1W..2W:x"):
        with pytest.raises(ConfigError):
            parse_set(bad)


def test_grid_and_latin_hypercube_sampling():
    axes = [parse_set("memory.hbm.bandwidth=1TB/s..2TB/s:3"), parse_set("power.idle=10W,20W")]
    grid = sample(axes)
    assert len(grid["power.idle"]) == 6
    lhs = sample([parse_set("memory.hbm.bandwidth=1B/s..11B/s"), parse_set("power.idle=1W..11W")],
                 sampler="lhs", points=10, seed=3)
    # one sample in each of the 10 unit-wide strata of every axis
    for col in lhs.values():
        assert sorted(np.floor(col - 1).astype(int).tolist()) == list(range(10))
    with pytest.raises(ConfigError):
        sample(axes, sampler="random")  # needs --points


def test_agrees_with_estimate_at_a_point(kimi_model):
    hw = load_hardware(H100)
    hbm = dataclasses.replace(hw.memory["hbm"], bandwidth_bytes_per_s=5e12)
    tensor = dataclasses.replace(hw.compute["tensor"], peak_flop_per_s={**hw.compute["tensor"].peak_flop_per_s,
                                                                         "fp8": 3e15})
    variant = dataclasses.replace(hw, memory={**hw.memory, "hbm": hbm}, compute={**hw.compute, "tensor": tensor},
                                  power=dataclasses.replace(hw.power, idle_w=120.0))
    report = estimate(KIMI, variant, devices=16)
    got = kimi_model.evaluate({"memory.hbm.bandwidth": np.array([5e12]), "compute.tensor.peak.fp8": np.array([3e15]),
                               "power.idle": np.array([120.0])})
    for key in ("decode.tokens_per_s", "decode.tpot_s", "prefill.latency_s", "energy.joules_per_token",
                "energy.tops_per_watt"):
        assert got[key][0] == pytest.approx(report.get(key), rel=1e-9), key
    base = estimate(KIMI, H100, devices=16)
    assert kimi_model.evaluate({})["decode.tokens_per_s"][0] == pytest.approx(base.get("decode.tokens_per_s"), rel=1e-9)


def test_clock_sweep_agrees_with_estimate_on_a_derated_chip():
    """Sweeping thermal.compute_clock_fraction prices every point as estimate() prices that chip on the same plan:
    the clock scales the engines, the on-chip levels and the tiled GEMMs' L2 operand feed (which binds on the
    H100 + 3D DRAM at a fixed clock fraction of 0.5, imec's halved clock)."""
    hw = dataclasses.replace(load_hardware(ROOT / "hardware" / "h100_3d_dram.yaml"), compute_clock_fraction=0.5)
    assert hw.kernel.gemm_operand_bandwidth_bytes_per_s is not None
    # micro-batches fixed: a sweep keeps the base point's choice, estimate() would choose per chip
    model = SweepModel(KIMI, hw, batch=64, micro_batches=1)
    par = model.pools["decode"].parallelism
    clocks = np.array([0.5, 0.8, 1.0])
    got = model.evaluate({"thermal.compute_clock_fraction": clocks})
    for i, clock in enumerate(clocks):
        report = estimate(KIMI, dataclasses.replace(hw, compute_clock_fraction=float(clock)), batch=64,
                          devices=model.devices, tp=par.tp, ep=par.ep, pp=par.pp, dp=par.dp,
                          micro_batches=par.micro_batches)
        for key in ("decode.tokens_per_s", "prefill.latency_s", "energy.joules_per_token"):
            assert got[key][i] == pytest.approx(report.get(key), rel=1e-9), (clock, key)
    assert np.all(np.diff(got["decode.tokens_per_s"]) > 0)  # a faster clock is faster here (operand feed binds)


def test_more_bandwidth_or_compute_never_slows(kimi_model):
    bw = np.linspace(1e12, 20e12, 40)
    out = kimi_model.evaluate({"memory.hbm.bandwidth": bw})
    assert np.all(np.diff(out["decode.tpot_s"]) <= 1e-15)
    assert np.all(np.diff(out["prefill.latency_s"]) <= 1e-15)
    peak = np.linspace(5e14, 5e15, 40)
    out = kimi_model.evaluate({"compute.tensor.peak.fp8": peak})
    assert np.all(np.diff(out["prefill.latency_s"]) <= 1e-15)
    fits = kimi_model.evaluate({"memory.hbm.capacity": np.array([1e9, 80e9])})["memory.fits"]
    assert fits.tolist() == [0.0, 1.0]
    with pytest.raises(ConfigError, match="sweepable"):
        kimi_model.evaluate({"node.scale_up.bandwidth": np.array([1e12])})


def test_pareto_front_by_hand():
    obj = {"a": np.array([1.0, 2.0, 2.0, 3.0, np.nan]), "b": np.array([1.0, 1.0, 0.5, 2.0, 0.0])}
    # maximise a, minimise b: 1 dominates 0, 2 dominates 1 (same a, lower b); 3 has the largest a; NaN excluded
    mask = pareto_front(obj, {"a": "max", "b": "min"})
    assert mask.tolist() == [False, False, True, True, False]


def test_local_pool_equals_in_process():
    spec = SweepSpec(workload=KIMI, hardware=H100, overrides=(("devices", 16),))
    cols = sample([parse_set("memory.hbm.bandwidth=1TB/s..10TB/s:8")])
    single = run_sweep(spec, cols, workers=1)
    pooled = run_sweep(spec, cols, chunk=3, workers=2)
    for key in single:
        np.testing.assert_array_equal(single[key], pooled[key])


def test_dask_local_cluster_equals_local():
    distributed = pytest.importorskip("distributed")
    spec = SweepSpec(workload=KIMI, hardware=H100, overrides=(("devices", 16),))
    cols = sample([parse_set("memory.hbm.bandwidth=1TB/s..10TB/s:6")])
    local = run_sweep(spec, cols, workers=1)
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        remote = run_sweep(spec, cols, chunk=2, cluster=client)
    for key in local:
        np.testing.assert_array_equal(local[key], remote[key])
