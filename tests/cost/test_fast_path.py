"""The projection's fast path equals the full path exactly.

A compact graph (graph/build.py ``compact=True``: the first decoder layer of each kind, weighted by the
layers it stands for) must give the same ops as the full graph (up to name and layer), the same priced
totals bit for bit (totals are correctly rounded sums over op instances, so order does not matter), the
same per-layer times, the same heaviest ops; and ``estimate`` (which now prices each phase once, on
compact graphs) must return the same report as pricing full graphs everywhere.
"""
from __future__ import annotations

import dataclasses

import pytest

from archsim.api import estimate
from archsim.config.workload import load_workload
from archsim.cost.phase import price_graph
from archsim.graph import build as build_mod
from archsim.graph.build import build_decode, build_prefill
from archsim.graph.precision import Shard, precision_from_names

FP8 = precision_from_names("fp8", "bf16", "bf16")
BF16 = precision_from_names("bf16", "bf16", "bf16")


@pytest.fixture(scope="module")
def models():
    return {name: load_workload(f"workloads/{name}.yaml").model for name in ("kimi_k2", "deepseek_v3", "llama3_405b")}


# (model, phase, batch, length, shard, mtp): dense-first MoE with one (Kimi K2) and three (DeepSeek-V3)
# dense layers, MTP drafts, TP and EP shards, and a dense GQA model (one layer kind only).
CASES = [
    ("kimi_k2", "prefill", 2, 512, Shard(tp=1, ep=16), False),
    ("kimi_k2", "decode", 64, 4096, Shard(tp=1, ep=16), False),
    ("deepseek_v3", "decode", 8, 2048, Shard(tp=2, ep=8), True),
    ("deepseek_v3", "prefill", 1, 1024, Shard(tp=1, ep=1), True),
    ("llama3_405b", "decode", 4, 8192, Shard(tp=8, ep=1), False),
    ("llama3_405b", "prefill", 1, 2048, Shard(tp=8, ep=1), False),
]


def _graph(model, phase, batch, length, shard, mtp, compact, precision=FP8):
    if phase == "prefill":
        return build_prefill(model, batch=batch, prompt_len=length, precision=precision, shard=shard, mtp=mtp,
                             compact=compact)
    return build_decode(model, batch=batch, context=length, precision=precision, shard=shard, mtp=mtp,
                        compact=compact)


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}-{c[1]}")
def test_compact_graph_stands_for_every_full_op(models, case):
    name, phase, batch, length, shard, mtp = case
    model = models[name]
    full = _graph(model, phase, batch, length, shard, mtp, False)
    small = _graph(model, phase, batch, length, shard, mtp, True)
    rep = small.graph["repeats"]
    # one decoder layer per kind: Kimi K2 / DeepSeek-V3 dense + MoE, Llama dense only
    kinds = {model.is_moe_layer(i) for i in range(model.num_hidden_layers)}
    assert sorted(rep.members) == sorted(min(i for i in range(model.num_hidden_layers)
                                             if model.is_moe_layer(i) == k) for k in kinds)
    assert sorted(layer for m in rep.members.values() for layer in m) == list(range(model.num_hidden_layers))
    assert rep.full_size == full.number_of_nodes()
    full_order = list(full.nodes)
    seen = set()
    for node, data in small.nodes(data=True):
        op = data["op"]
        for inst, index in rep.instances(node, op.layer):
            layer = int(inst.split(".")[1]) if inst.startswith("layers.") else op.layer
            assert full_order[index] == inst
            assert full.nodes[inst]["op"] == dataclasses.replace(op, name=inst, layer=layer)
            seen.add(inst)
    assert seen == set(full.nodes)


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}-{c[1]}")
@pytest.mark.parametrize("attention", ["flash", "naive"])
def test_compact_prices_equal_full_prices_exactly(models, h100, case, attention):
    name, phase, batch, length, shard, mtp = case
    model = models[name]
    full = price_graph(_graph(model, phase, batch, length, shard, mtp, False), h100, attention=attention)
    fast = price_graph(_graph(model, phase, batch, length, shard, mtp, True), h100, attention=attention)
    for f in dataclasses.fields(full):
        if f.name not in ("ops", "op_list", "work", "work_cost", "repeats"):  # the arrays behind the totals
            assert getattr(fast, f.name) == getattr(full, f.name), f.name
    assert len(fast.ops) == len(full.ops)
    assert list(fast.ops) == list(full.ops)
    for op_name in (*full.heaviest, "layers.0.self_attn.o_proj", f"layers.{model.num_hidden_layers - 1}.mlp.act"
                    if not model.is_moe else f"layers.{model.num_hidden_layers - 1}.mlp.experts.gate_up"):
        assert fast.ops[op_name] == full.ops[op_name]
    # every layer has its own entry and layers of one kind cost the same
    assert set(range(model.num_hidden_layers)) <= set(fast.time_s_by_layer)


def test_totals_do_not_depend_on_op_order(h100, models):
    """fsum totals: pricing the ops of a full graph in reverse gives the same totals bit for bit."""
    g = _graph(models["kimi_k2"], "decode", 16, 1024, Shard(tp=1, ep=8), False, False)
    ops = [g.nodes[n]["op"] for n in g.nodes]
    fwd, rev = price_graph(ops, h100), price_graph(ops[::-1], h100)
    for field in ("time_s", "flops", "dynamic_energy_j", "energy_j", "bytes_by_level", "time_s_by_bound",
                  "time_s_by_layer", "mfu"):
        assert getattr(fwd, field) == getattr(rev, field), field


def _force_full_graphs(monkeypatch) -> list[bool]:
    """Make every builder call build the full graph, as before the fast path existed; returns the
    ``compact`` flags the callers asked for."""
    real = build_mod._build
    asked: list[bool] = []

    def full(*args, compact=False, **kwargs):
        asked.append(compact)
        return real(*args, compact=False, **kwargs)

    monkeypatch.setattr(build_mod, "_build", full)
    return asked


@pytest.mark.parametrize("kwargs", [
    dict(workload="workloads/kimi_k2.yaml", devices=16),
    dict(workload="workloads/kimi_k2.yaml", devices=16, attention="naive", batch=32),
    dict(workload="workloads/deepseek_v3.yaml", devices=32, mtp=True, prompt_len=1024),
    dict(workload="workloads/llama3_405b.yaml", devices=16, pp=2, batch=8),
], ids=["kimi16", "kimi-naive", "dsv3-mtp", "llama16"])
def test_estimate_fast_equals_full(monkeypatch, kwargs):
    kwargs = dict(kwargs)
    workload = kwargs.pop("workload")
    fast = estimate(workload, "hardware/h100.yaml", **kwargs).to_dict()
    asked = _force_full_graphs(monkeypatch)
    full = estimate(workload, "hardware/h100.yaml", **kwargs).to_dict()
    assert any(asked)  # the fast path did ask for compact graphs, so this compares two paths
    assert fast == full
    assert fast["decode"] is not None and fast["prefill"] is not None


def test_auto_search_shares_caches_without_changing_the_plan(h100):
    """plan_layout(devices="auto") shares one cache (priced shards, weight bytes) across candidates; the
    plan it returns equals the plan priced from scratch at the device count it chose."""
    from archsim.mapping.parallel import plan_layout
    wl = load_workload("workloads/kimi_k2.yaml")
    sc = wl.scenario
    precision = precision_from_names(sc.weights, sc.activations, sc.kv_cache)
    kw = dict(batch=sc.batch, prompt_len=sc.prompt_len, output_len=sc.output_len, precision=precision)
    cache: dict = {}
    auto = plan_layout(wl.model, h100, devices="auto", cache=cache, **kw)
    assert auto.fits and any(k[0] == "weights" for k in cache) and any(k[0] == "graph" for k in cache)
    fresh = plan_layout(wl.model, h100, devices=auto.parallelism.devices, **kw)
    assert auto.to_dict() == fresh.to_dict()
    assert auto.prefill == fresh.prefill and auto.decode == fresh.decode and auto.memory == fresh.memory
