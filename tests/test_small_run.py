"""``--small``: tiny variant on real kernels inside the simulator; checks, counts, routing, trace."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from archsim.graph.expert_load import zipf_load
from archsim.small_run import fit_zipf_s, format_small, run_small, uniform_max_over_mean

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
H100 = os.path.join(ROOT, "hardware", "h100.yaml")


@pytest.mark.parametrize("workload", ["deepseek_v3", "kimi_k2", "llama3_405b"])
def test_run_small_checks_counts_and_trace(workload, tmp_path):
    trace = tmp_path / "t.json"
    d = run_small(os.path.join(ROOT, "workloads", f"{workload}.yaml"), H100, trace_path=trace)
    assert set(d["checks"]) >= {"flash_vs_naive_prefill", "decode_vs_full_forward", "float32_vs_float64",
                                "flash_traffic_vs_cost_model"}
    assert ("mla_absorbed_vs_expanded" in d["checks"]) == (workload != "llama3_405b")
    for name, c in d["checks"].items():
        assert c["passed"], (name, c)
        assert c["max_abs_error"] <= c["tolerance"]
    assert d["counts_match"] is True
    # the trace is valid Chrome trace JSON: one complete event per executed op (prefill + decode)
    events = json.loads(trace.read_text())["traceEvents"]
    ops = [e for e in events if e["ph"] == "X"]
    assert len(ops) == d["timeline"]["prefill"]["ops"] + d["timeline"]["decode"]["ops"]
    assert all(e["dur"] >= 0 for e in ops)
    json.dumps(d, allow_nan=False)  # the JSON section serialises strictly
    assert "FAIL" not in format_small(d)
    el = d["expert_load"]
    if workload == "llama3_405b":
        assert el is None  # dense: no routing
        return
    assert el["max_over_mean"] >= 1.0
    # a decode step of 2 sequences touches between k and 2k distinct experts per MoE layer
    assert el["k"] <= el["distinct_experts_per_step"] <= 2 * el["k"]
    # every routed token picks k experts in every MoE layer
    assert all(sum(c) == el["tokens"] * el["k"] for c in el["counts_per_layer"].values())
    assert "expert load" in format_small(d)


def test_zipf_fit_inverts_imbalance():
    for s in (0.2, 0.7, 1.3):
        target = zipf_load(16, 2, s).imbalance()
        assert fit_zipf_s(target, 16, 2) == pytest.approx(s, abs=1e-9)
    assert fit_zipf_s(1.0, 16, 2) == 0.0


def test_uniform_baseline_is_above_one_and_shrinks_with_tokens():
    rng = np.random.default_rng(0)
    few, many = uniform_max_over_mean(32, 16, 2, rng), uniform_max_over_mean(2048, 16, 2, rng)
    assert few > many > 1.0


def test_cli_run_small_json(capsys, tmp_path):
    from archsim.cli import main
    trace = tmp_path / "trace.json"
    rc = main(["run", os.path.join(ROOT, "workloads", "deepseek_v3.yaml"), "--hw", H100, "--small",
               "--trace", str(trace), "--format", "json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert out["small"]["counts_match"] is True
    assert out["small"]["expert_load"]["max_over_mean"] >= 1.0
    assert "traceEvents" in json.loads(trace.read_text())


def test_projected_load_and_bad_trace_path(tmp_path):
    from archsim.errors import ConfigError
    from archsim.small_run import projected_expert_load
    wl = os.path.join(ROOT, "workloads", "deepseek_v3.yaml")
    d = run_small(wl, H100)
    load = projected_expert_load(d)
    assert load.experts == 256 and load.k == 8
    assert load.imbalance() == pytest.approx(d["expert_load"]["full_scale"]["max_over_mean"], rel=1e-12)
    with pytest.raises(ConfigError, match="--trace"):
        run_small(wl, H100, trace_path=tmp_path / "missing_dir" / "t.json")


def test_measured_routing_feeds_the_full_scale_projection():
    # the tiny model's routing, carried to full scale as a Zipf load, changes the priced decode step:
    # the busiest expert gets more tokens than under uniform routing, and fewer distinct experts are
    # touched, so fewer expert weight bytes are read (at this batch the GEMM is weight-bound, so the
    # priced time moves with the bytes)
    from archsim.config.hardware import load_hardware
    from archsim.config.workload import load_workload
    from archsim.cost.phase import price_graph
    from archsim.graph.build import build_decode
    from archsim.graph.expert_load import uniform_load
    from archsim.graph.precision import precision_from_names
    from archsim.small_run import projected_expert_load
    wl = load_workload(os.path.join(ROOT, "workloads", "deepseek_v3.yaml"))
    small = run_small(wl, H100)
    load = projected_expert_load(small)
    assert small["expert_load"]["zipf_s_fit"] > 0   # the tiny router is measurably skewed (above the uniform baseline)
    m, hw = wl.model, load_hardware(H100)
    prec = precision_from_names("fp8")
    kw = dict(batch=256, context=4096, precision=prec, compact=True)
    g_u = build_decode(m, expert_load=uniform_load(m.n_routed_experts, m.num_experts_per_tok), **kw)
    g_z = build_decode(m, expert_load=load, **kw)
    name = "layers.3.mlp.experts.gate_up"
    op_u, op_z = g_u.nodes[name]["op"], g_z.nodes[name]["op"]
    assert op_z.attrs["tokens_max"] > op_u.attrs["tokens_max"]
    assert op_z.attrs["distinct_experts"] < op_u.attrs["distinct_experts"]
    weight = {o.name: o.nbytes for o in op_z.reads}["weight"], {o.name: o.nbytes for o in op_u.reads}["weight"]
    assert weight[0] < weight[1]
    t_u, t_z = price_graph(g_u, hw), price_graph(g_z, hw)
    assert t_z.ops[name].time_s != t_u.ops[name].time_s
