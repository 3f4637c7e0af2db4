"""The phase's EP mode decides the routed experts' GEMM layout: decode's low-latency exchange hands DeepGEMM's
masked kernel its [local experts, max tokens, hidden] buffer, so a decode projection prices the expert GEMMs
as kernel_model.grouped_gemm_time(row_layout="masked") does; prefill (throughput exchange) stays contiguous."""

import pytest

from archsim.cost.power import capped_time_s
from archsim.cost.kernel_model import grouped_gemm_time
from archsim.cost.phase import price_graph
from archsim.errors import ConfigError
from archsim.graph.precision import precision_from_names
from archsim.mapping.parallelism import Parallelism
from archsim.graph.expert_load import uniform_load
from archsim.mapping.experts import busiest_rank_work, place_experts
from archsim.mapping.phases import device_phase_graph, ep_exchange_mode, expert_layout, price_phase

FP8 = precision_from_names("fp8")
UP, DOWN = "layers.3.mlp.experts.gate_up", "layers.3.mlp.experts.down"


def test_ep_mode_rule(dsv3, llama):
    ep8 = Parallelism(ep=8, dp=8)
    assert ep_exchange_mode(dsv3, ep8, "decode") == "low_latency"
    assert ep_exchange_mode(dsv3, ep8, "prefill") == "throughput"
    assert ep_exchange_mode(dsv3, ep8, "decode", "throughput") == "throughput"
    assert ep_exchange_mode(dsv3, ep8, "prefill", "low_latency") == "low_latency"
    assert ep_exchange_mode(dsv3, Parallelism(dp=8), "decode") is None          # no exchange without EP
    assert ep_exchange_mode(llama, ep8, "decode") is None                        # nor in a dense model
    # EP inside one attention TP group: every chip already holds every token, no DeepEP exchange
    assert ep_exchange_mode(dsv3, Parallelism(tp=8, ep=8), "decode") is None
    assert ep_exchange_mode(dsv3, Parallelism(tp=8, moe_tp=8), "decode") is None
    assert [expert_layout(m) for m in ("low_latency", "throughput", None)] == ["masked", "contiguous", "contiguous"]
    with pytest.raises(ConfigError, match="ep.mode"):
        ep_exchange_mode(dsv3, ep8, "decode", "fast")


@pytest.mark.parametrize("phase, ep, ep_mode, layout", [
    ("decode", 32, None, "masked"), ("decode", 32, "throughput", "contiguous"), ("decode", 1, None, "contiguous"),
    ("prefill", 32, None, "contiguous"), ("prefill", 32, "low_latency", "masked")])
def test_device_graph_lays_out_experts_for_the_phase_exchange(dsv3, phase, ep, ep_mode, layout):
    g = device_phase_graph(dsv3, phase, 2, 64, FP8, 1, ep, 2.0 * ep, False, compact=True, ep_mode=ep_mode)
    assert _layout(g.nodes[UP]["op"]) == _layout(g.nodes[DOWN]["op"]) == layout


def _layout(op) -> str:
    return op.attrs["row_layout"]


def _kernel(hw, op, layout):
    a = op.attrs
    groups, m = round(a["distinct_experts"]), a["tokens_total"] / a["distinct_experts"]
    assert m == round(m)  # a whole number of rows per expert: the kernel model's shape is the op's
    return grouped_gemm_time(hw, groups=groups, m=round(m), n=a["n"], k=a["k"], dtype=op.compute_dtype,
                             row_layout=layout).time_s


def test_decode_graph_prices_experts_as_the_masked_kernel(dsv3, h800):
    # EP32 on H800, 256 sequences a device: 256 * 32 * 8 / 256 = 256 tokens on each of 8 local experts (the
    # device's mean share), a shape where the masked kernel (no TMA multicast) is slower than the contiguous one
    graph = device_phase_graph(dsv3, "decode", 256, 4096, FP8, 1, 32, 256.0 * 32, False, compact=True)
    cost = price_graph(graph, h800)
    for name in (UP, DOWN):
        op = graph.nodes[name]["op"]
        assert _layout(op) == "masked" and len(op.attrs["tokens_per_expert"]) == 8
        masked, contiguous = _kernel(h800, op, "masked"), _kernel(h800, op, "contiguous")
        assert masked > contiguous * 1.1
        # ... held at the board's power cap where the kernel would draw more (cost/power.py; the kernel API prices
        # time only)
        capped = capped_time_s(masked, cost.ops[name].energy_j, h800.power.tdp_w, h800.busy_power_w)
        assert cost.ops[name].time_s == pytest.approx(capped, rel=1e-9)


def test_decode_projection_lays_experts_out_for_its_exchange(dsv3, h800):
    par = Parallelism(ep=32, dp=32)
    cache = {}
    ll = price_phase(dsv3, h800, par, FP8, phase="decode", batch=256 * 32, length=4096, cache=cache)
    tp = price_phase(dsv3, h800, par, FP8, phase="decode", batch=256 * 32, length=4096, cache=cache,
                     ep_mode="throughput")
    # the priced graphs' expert GEMMs: masked after the low-latency dispatch, contiguous after the normal one
    # (and the cache keeps the two apart); the contiguous kernel is the faster at this shape
    assert tp.graph_cost.ops[UP].time_s < ll.graph_cost.ops[UP].time_s
    assert tp.compute_s < ll.compute_s


def test_prefill_prices_experts_contiguous(dsv3, h800):
    par = Parallelism(ep=32, dp=32, micro_batches=1)
    phase = price_phase(dsv3, h800, par, FP8, phase="prefill", batch=32, length=1024, cache={})
    # the busiest of the 32 EP ranks (mapping/experts.py) over the group's 32 x 1024 tokens
    load = uniform_load(256, 8)
    work = busiest_rank_work(load, place_experts(load, 32), 32 * 1024.0)
    graph = device_phase_graph(dsv3, "prefill", 1, 1024, FP8, 1, 32, None, False, compact=True,
                               ep_mode="throughput", rank_work=work)
    assert _layout(graph.nodes[UP]["op"]) == "contiguous"
    assert phase.graph_cost.time_s == price_graph(graph, h800).time_s
