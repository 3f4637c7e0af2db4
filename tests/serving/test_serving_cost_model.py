"""CostModelIteration: grid interpolation against direct pricing, KV capacity, and a full simulation on it."""
from __future__ import annotations

import math

import numpy as np
import pytest

from archsim.config.workload import load_workload
from archsim.graph.precision import precision_from_names
from archsim.mapping.device_memory import memory_per_device
from archsim.mapping.parallelism import Parallelism
from archsim.serving.cost_model import CostModelIteration, for_deployment, layout_deployment
from archsim.serving.iteration import IterationBatch, chunk_pairs

ROOT = __import__("pathlib").Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def dsv3():
    w = load_workload(ROOT / "workloads/deepseek_v3.yaml")
    return w.model, precision_from_names(w.scenario.weights, w.scenario.activations, w.scenario.kv_cache)


def _iteration(dsv3, hw, par):
    model, precision = dsv3
    return CostModelIteration(deployment=layout_deployment(model, hw, precision, par), max_seqs=256,
                              max_context=16384)


@pytest.fixture(scope="module")
def model_16(dsv3, h100):
    return _iteration(dsv3, h100, Parallelism(tp=16, ep=16))


@pytest.fixture(scope="module")
def model_dp16(dsv3, h100):
    # attention-DP: prefills spread over busy ranks, the grid's rank axis; micro-batches chosen by price
    return _iteration(dsv3, h100, Parallelism(tp=1, ep=16, dp=16, micro_batches=None))


def _errors(it, batches) -> np.ndarray:
    """Per batch, the largest relative error of the grid against direct pricing over time, energy, FLOPs and HBM
    bytes."""
    out = []
    for batch in batches:
        a, d = it.iteration(batch), it.direct(batch)
        out.append(max(abs(getattr(a, f) / getattr(d, f) - 1) for f in ("time_s", "energy_j", "flops", "hbm_bytes")))
    return np.array(out)


def _samples(dp: int, n: int = 12) -> dict[str, list[IterationBatch]]:
    """Random off-grid points: decode (batch 3-249, context 100-7999), one fresh prompt (40-7999 tokens), and with
    attention-DP one fresh prompt on each of 2..dp busy ranks (40-3999 tokens each)."""
    rng = np.random.default_rng(0)
    out = {"decode": [IterationBatch(decode_seqs=int(b), decode_tokens=int(b), decode_context_tokens=int(b * c))
                      for b, c in zip(rng.integers(3, 250, n), rng.integers(100, 8000, n))],
           "prefill": [IterationBatch(prefill_tokens=int(t), prefill_pairs=chunk_pairs(0, int(t)), prefill_seqs=1)
                       for t in rng.integers(40, 8000, n)]}
    if dp > 1:
        out["prefill on several ranks"] = [
            IterationBatch(prefill_tokens=int(r * t), prefill_pairs=int(r) * chunk_pairs(0, int(t)),
                           prefill_seqs=int(r)) for r, t in zip(rng.integers(2, dp + 1, n), rng.integers(40, 4000, n))]
    return out


def test_interpolation_error_against_direct_pricing(model_16, model_dp16):
    # 12 random off-grid points of each kind, per point the worst of time / energy / FLOPs / HBM bytes. Measured
    # (2026-12-01), mean (max): TP16 decode 0.9 % (2.8 %), prefill 0.3 % (0.7 %); DP16 decode 0.8 % (2.4 %),
    # prefill 0.9 % (1.8 %), prefill on 2-16 ranks 1.9 % (7.5 %). FLOPs are exact; the largest errors are prefill
    # times across a tile step of the busiest EP rank's grouped GEMMs (docs/serving.md). The bounds leave room for
    # cost-model changes but catch a wrong grid (an off-by-one in a bracket is > 10 % on average).
    for it in (model_16, model_dp16):
        for kind, batches in _samples(it.par.dp).items():
            errors = _errors(it, batches)
            assert errors.mean() < 0.03 and errors.max() < 0.10, (it.par.label(), kind, errors)


def test_prefill_ranks_are_priced_busy_not_all(model_dp16):
    # one prompt on a 16-rank replica: one busy rank, priced as such (price_phase at batch 1), cheaper in time and
    # work than the same prompt on every rank, and a sixteenth of the work of 16 ranks at most
    one = model_dp16.iteration(IterationBatch(prefill_tokens=1024, prefill_pairs=chunk_pairs(0, 1024), prefill_seqs=1))
    every = model_dp16.iteration(IterationBatch(prefill_tokens=16 * 1024, prefill_pairs=16 * chunk_pairs(0, 1024),
                                                prefill_seqs=16))
    assert one.time_s < every.time_s
    assert one.flops == pytest.approx(every.flops / 16, rel=0.02)


def test_grid_points_are_exact(model_16):
    batch = IterationBatch(decode_seqs=64, decode_tokens=64, decode_context_tokens=64 * (2048 - 1))
    assert model_16.iteration(batch).time_s == pytest.approx(model_16.direct(batch).time_s, rel=1e-12)


def test_chunk_after_offset_costs_more_than_a_fresh_chunk(model_16):
    fresh = IterationBatch(prefill_tokens=512, prefill_pairs=chunk_pairs(0, 512), prefill_seqs=1)
    late = IterationBatch(prefill_tokens=512, prefill_pairs=chunk_pairs(8000, 512), prefill_seqs=1)
    assert model_16.iteration(late).time_s > model_16.iteration(fresh).time_s
    assert model_16.iteration(late).flops > model_16.iteration(fresh).flops


def test_more_context_or_batch_never_cheaper(model_16):
    times = [model_16.iteration(IterationBatch(decode_seqs=b, decode_tokens=b, decode_context_tokens=b * c)).time_s
             for b, c in ((8, 1000), (8, 4000), (32, 4000), (128, 4000))]
    assert times == sorted(times)


def test_kv_capacity_from_hbm_minus_weights(model_16, dsv3, h100):
    model, precision = dsv3
    replica = model_16.replica(kv_memory_fraction=0.9)
    weights = memory_per_device(model, Parallelism(tp=16, ep=16), precision,
                                capacity_bytes=h100.main_memory.capacity_bytes).weights_bytes
    assert replica.kv_capacity_tokens == model_16.kv_capacity_tokens(0.9)
    # MLA caches the latent (512) + rope key (64) per layer, 61 layers, BF16, replicated over TP ranks:
    # 61 * 576 * 2 = 70,272 B per token per device (ISCA25 Table 1: Zhao et al., ISCA 2025, arXiv 2505.09343,
    # via bzhng-development/summary-of-some-paper-in-cuda [S])
    assert replica.kv_bytes_per_token == 70_272
    assert replica.kv_capacity_tokens == math.floor((0.9 * 80e9 - weights) / 70_272)
    assert replica.devices == 16 and replica.price_usd_per_hour == pytest.approx(16 * h100.price_usd_per_hour)


def test_deployment_auto_finds_the_smallest_fitting_count(dsv3, h100):
    model, precision = dsv3
    it, replica = for_deployment(model, h100, precision, devices="auto", max_seqs=64, max_context=4096,
                                 kv_memory_fraction=0.9, min_kv_tokens=4096)
    # 671e9 FP8 parameters (~ 0.69 TB with scales) cannot fit 8 x 80 GB, so the smallest count is above 8
    assert replica.devices > 8 and replica.kv_capacity_tokens >= 4096
