"""``archsim serve`` takes the Deployment ``archsim run`` takes: a --deployment file or the workload's
``deployment:`` section, the layout flags, the instance counts; disaggregated pools keep their own layouts, and
an auto pool is searched for room for the longest request its role holds."""
from __future__ import annotations

from pathlib import Path

import pytest

from archsim.config.hardware import load_hardware
from archsim.config.workload import load_workload
from archsim.errors import ConfigError
from archsim.mapping.deployment import pool_memory
from archsim.serving.cost_model import CostModelIteration, layout_deployment
from archsim.serving.replicas import Longest, served_deployment
from archsim.sim.serve_deploy import ServeOptions, run_deployment

ROOT = Path(__file__).resolve().parents[2]
DSV3 = str(ROOT / "workloads/deepseek_v3.yaml")
H800 = str(ROOT / "hardware/h800.yaml")
ONE_P_THREE_D = str(ROOT / "deployments/deepseek_v3_h800_1p3d.yaml")
SMALL = dict(rate=2.0, duration=5.0, prompt_len="uniform:100:300", output_len="uniform:8:24", max_seqs=16)


def _run(**options):
    return run_deployment(ServeOptions(workload=DSV3, hw=H800, **{**SMALL, **options}))


def _link(hw_path: str, devices: int) -> float:
    link = load_hardware(hw_path).node.scale_out
    return link.bandwidth_bytes_per_s * link.achievable_fraction * devices


def test_a_disaggregated_deployment_file_gives_each_pool_its_layout():
    # deployments/deepseek_v3_h800_1p3d.yaml: one prefill instance of 32 GPUs (EP32, 32 redundant experts) and three
    # decode instances of 16 (EP16 DP16); no --scheduler: disaggregation is implied
    result, meta = _run(deployment=ONE_P_THREE_D)
    pools = {p["role"]: p for p in meta["pools"]}
    assert meta["scheduler"] == "disagg" and meta["disaggregated"]
    assert (pools["prefill"]["replicas"], pools["prefill"]["devices_per_replica"], pools["prefill"]["layout"]) == \
        (1, 32, "TP1 EP32 PP1 DP32 R32 MBauto")
    assert (pools["decode"]["replicas"], pools["decode"]["devices_per_replica"], pools["decode"]["layout"]) == \
        (3, 16, "TP1 EP16 PP1 DP16 MBauto")
    assert result.summary["devices"] == 32 + 3 * 16 and result.summary["replicas"] == 4
    # the KV crosses the scale-out network, one NIC per device of the sending (prefill) instance
    assert meta["kv_link_bytes_per_s"] == pytest.approx(_link(H800, 32), rel=1e-12)
    s = result.summary["requests"]
    assert s["kv_transfers"] == s["completed"] == s["total"] > 0
    # the decode pool prices only decode steps, the prefill pool only prefills
    assert pools["prefill"]["decode_grid_points"] == 0 and pools["decode"]["prefill_grid_points"] == 0


def test_replica_flags_override_the_pools_instances():
    _, meta = _run(deployment=ONE_P_THREE_D, prefill_replicas=2, decode_replicas=1)
    assert [(p["role"], p["replicas"], p["devices_per_replica"]) for p in meta["pools"]] == \
        [("prefill", 2, 32), ("decode", 1, 16)]


def test_a_disaggregated_deployment_with_another_scheduler_is_an_error():
    with pytest.raises(ConfigError, match="--scheduler: expected disagg .* for a disaggregated deployment"):
        _run(deployment=ONE_P_THREE_D, scheduler="chunked")


def test_one_pool_disaggregated_shares_the_layout():
    # --scheduler disagg on a one-pool deployment: both pools are that layout, as before pools had their own
    result, meta = _run(scheduler="disagg", devices=16, prefill_replicas=2, decode_replicas=1)
    assert [(p["role"], p["replicas"], p["layout"]) for p in meta["pools"]] == \
        [("prefill", 2, "TP1 EP16 PP1 DP16 MBauto"), ("decode", 1, "TP1 EP16 PP1 DP16 MBauto")]
    assert meta["kv_link_bytes_per_s"] == pytest.approx(_link(H800, 16), rel=1e-12)
    assert result.summary["devices"] == 3 * 16


def test_the_workloads_deployment_section_is_honoured(tmp_path):
    # two instances of 32 GPUs (an auto search would stop at 16), no CUDA graphs
    section = "deployment:\n  pool: {devices: 32, moe_ep: 32, attn_dp: 32, instances: 2}\n  cuda_graphs: false\n"
    path = tmp_path / "dsv3_pool.yaml"
    path.write_text(Path(DSV3).read_text() + section)
    result, meta = run_deployment(ServeOptions(workload=str(path), hw=H800, **SMALL))
    assert (meta["layout"], meta["cuda_graphs"], result.summary["replicas"]) == ("TP1 EP32 PP1 DP32 MBauto", False, 2)
    # a layout flag replaces the section's degree for this run, as in archsim run
    _, meta = run_deployment(ServeOptions(workload=str(path), hw=H800, moe_ep=16, replicas=1, **SMALL))
    assert meta["layout"] == "TP1 EP16 PP1 DP32 MBauto"


def test_the_deployment_options_reach_the_grid():
    # the same layout without CUDA graphs launches every decode kernel from the CPU: slower steps, same FLOPs
    base, _ = _run(devices=16, seed=1)
    eager, meta = _run(devices=16, seed=1, cuda_graphs=False)
    assert meta["cuda_graphs"] is False
    assert eager.summary["tpot_s"]["mean"] > base.summary["tpot_s"]["mean"]


def test_an_auto_prefill_pool_needs_room_for_the_prompt_only(tmp_path, h100):
    # KV share set so that a 16-H100 replica (TP1 EP16 DP16) holds 16 x floor(0.4 GB / 70,272 B) = 91,072 tokens:
    # a 90,000-token prompt fits, its 100,000-token context does not. With both pools auto, the prefill pool takes
    # 16 devices and the decode pool the next count with room: 24, whose auto layout is three pipeline stages of 8
    # (TP1 EP8 PP3 DP8: a third of the layers, and of their KV, per GPU)
    wl = load_workload(DSV3)
    it16 = CostModelIteration(deployment=layout_deployment(wl.model, h100, _precision(wl),
                                                           _layout(tp=1, ep=16, dp=16)), max_seqs=8, max_context=16)
    weights = pool_memory(it16.deployment, it16.par, batch=0, context=0).weights_bytes
    fraction = (weights + 0.4e9) / h100.main_memory.capacity_bytes
    assert it16.kv_capacity_tokens(fraction) == 16 * int(0.4e9 // 70_272) == 91_072
    spec = tmp_path / "pd_auto.yaml"
    spec.write_text("deployment:\n  prefill: {devices: auto}\n  decode: {devices: auto}\n")
    served = served_deployment(wl, h100, longest=Longest(prompt=90_000, context=100_000), output_len=10_000,
                               max_seqs=8, block_tokens=16, kv_memory_fraction=fraction,
                               overrides={"deployment": str(spec)})
    assert served.pool("prefill").model.par.devices == 16
    assert served.pool("decode").model.par.label() == "TP1 EP8 PP3 DP8 MBauto"
    assert served.pool("decode").replica.kv_capacity_tokens >= 100_000


def _precision(wl):
    from archsim.graph.precision import scenario_precision
    return scenario_precision(wl.scenario)


def _layout(**degrees):
    from archsim.mapping.parallelism import Parallelism
    return Parallelism(**degrees)
