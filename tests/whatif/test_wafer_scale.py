"""hardware/cerebras_wse3.yaml: its derived figures equal the tested derivations from its sourced mesh fields, its
PROJECTION fields do not move the decode headline, and a decode step is the sum of its ops' mesh all-reduces."""
import copy
from pathlib import Path

import pytest
import yaml

from archsim.api import estimate
from archsim.config.hardware import hardware_from_dict, load_hardware
from archsim.cost import mesh
from archsim.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
FILE = ROOT / "hardware" / "cerebras_wse3.yaml"
LLAMA_8B = ROOT / "validation" / "whatif_models" / "Llama-3.1-8B"


@pytest.fixture(scope="module")
def data():
    return yaml.safe_load(FILE.read_text())


@pytest.fixture(scope="module")
def wse():
    return load_hardware(FILE)


# FP32 FLOPs per core and cycle: WSE-3 from one core's measured 0.50 FP32 FMA per cycle (silicon = simulator, the
# characterisation's sec. 3), sustained, so the peak is it over the engine's 0.365 fraction; WSE-2 a PROJECTION,
# half its 16-bit SIMD rate (4 lanes x 2 FLOP / 2)
@pytest.mark.parametrize("name, cores, simd, fp32_sustained_flop_per_cycle", [
    ("cerebras_wse3", 762 * 1172, 8, 0.5 * 2), ("cerebras_wse2", 757 * 996, 4, None)])
def test_dense_peak_is_derived_from_the_mesh(name, cores, simd, fp32_sustained_flop_per_cycle):
    """The 16-bit peaks are cores x FP16 MACs per core x 2 x 1.1 GHz (WSE-3: 762 x 1172 = 893,064 cores x 8 lanes,
    not half the quoted 125 PFLOPS; WSE-2: 757 x 996 x 4); WSE-3's FP32 sustains 893,064 x 1 FLOP x 1.1 GHz =
    0.982 PFLOPS (measured per core), the WSE-2's is half its 16-bit peak; energy is TDP / peak."""
    wse = load_hardware(name)
    spec = wse.mesh
    assert spec.cores == cores
    dense = mesh.dense_fp16_peak_flop_per_s(spec, spec.cores)
    assert dense == pytest.approx(cores * simd * 2 * 1.1e9)
    for engine in wse.compute.values():
        assert engine.peak_flop_per_s["fp16"] == pytest.approx(dense, rel=1e-12)
        assert engine.peak_flop_per_s["bf16"] == pytest.approx(dense, rel=1e-12)
    vector = wse.compute["vector"]
    if fp32_sustained_flop_per_cycle is None:
        assert vector.peak_flop_per_s["fp32"] == pytest.approx(dense / 2, rel=1e-12)
    else:
        sustained = vector.peak_flop_per_s["fp32"] * vector.achievable_fraction
        assert sustained == pytest.approx(cores * fp32_sustained_flop_per_cycle * 1.1e9, rel=1e-9)
        assert sustained == pytest.approx(0.982e15, rel=1e-3)
    # the energy bound is system power over that peak: 23 kW / 15.72 PFLOPS = 1.463 pJ
    assert wse.compute["tensor"].energy_j_per_flop["bf16"] == pytest.approx(wse.power.tdp_w / dense, rel=0.01)


@pytest.mark.parametrize("name, fabric_bits_per_s, capacity_rel", [("cerebras_wse3", 214e15, 0.01),
                                                                   ("cerebras_wse2", 220e15, 0.10)])
def test_quoted_capacity_and_fabric_agree_with_the_mesh(name, fabric_bits_per_s, capacity_rel):
    """WSE-3: 44 GB = 893,064 x 48 KiB within 1%, and 4 B/cycle links give 251 Pb/s against the quoted 214 Pb/s;
    WSE-2: the SDK's 753,972 cores x 48 KiB = 37.1 GB of the quoted 40 GB (the rest on cores its fabric does not
    expose), 212 Pb/s against 220 Pb/s. Fabric within 20% (the quoted totals' link counting is not published)."""
    wse = load_hardware(name)
    assert mesh.mesh_memory_bytes(wse.mesh) == pytest.approx(wse.main_memory.capacity_bytes, rel=capacity_rel)
    assert mesh.fabric_bytes_per_s(wse.mesh) * 8 == pytest.approx(fabric_bits_per_s, rel=0.2)


def _tokens_per_s(hw) -> float:
    r = estimate(str(LLAMA_8B), hw, batch=1, prompt_len=1999, output_len=1, phase="decode", devices=1)
    return r.decode.tokens_per_s


@pytest.fixture(scope="module")
def base_rate(wse):
    with pytest.warns(Warning):  # config.json fields archsim does not model (dropout, pretraining_tp)
        return _tokens_per_s(wse)


@pytest.mark.parametrize("path, value", [
    (("compute", "tensor", "achievable_fraction"), 0.5),
    (("compute", "vector", "achievable_fraction"), 0.5),
    (("compute", "tensor", "peak", "bf16"), "7.86 PFLOPS"),
    (("compute", "vector", "peak", "fp32"), "3.93 PFLOPS"),
    (("memory", "hbm", "latency"), "16.4 ns"),
    (("memory", "hbm", "achievable_fraction"), 0.5),
])
def test_projections_do_not_move_the_decode_headline(data, base_rate, path, value):
    """Each PROJECTION or microbenchmark-derived field of the YAML, halved (or the one-clock SRAM latency raised to the
    H100's 16.4 ns), changes Llama-3.1-8B decode tokens/s on one CS-3 by less than 1%: every op with FLOPs waits on
    its mesh all-reduce."""
    changed = copy.deepcopy(data)
    node = changed
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.warns(Warning):
        rate = _tokens_per_s(hardware_from_dict(changed, "changed.yaml"))
    assert rate == pytest.approx(base_rate, rel=0.01)


def test_a_per_op_dispatch_cost_would_be_small(data, base_rate):
    """The zero launch (PROJECTION) matters only for the ops that cross no mesh line (RoPE, SwiGLU, residual adds,
    cache writes: 6 per layer): a 100 ns dispatch per op would make decode 1-5% slower."""
    changed = copy.deepcopy(data)
    changed["kernel_launch"] = "100 ns"
    with pytest.warns(Warning):
        rate = _tokens_per_s(hardware_from_dict(changed, "changed.yaml"))
    assert 0.95 * base_rate < rate < 0.99 * base_rate


def test_hop_latency_decides_the_headline(data, base_rate):
    """The sourced-but-UNVERIFIED hop latency does move it: 1 cycle per hop instead of 2 makes decode 1.5-2x
    faster (the all-reduce latency halves; the payload and memory terms stay)."""
    changed = copy.deepcopy(data)
    changed["mesh"]["hop_cycles"] = 1
    with pytest.warns(Warning):
        rate = _tokens_per_s(hardware_from_dict(changed, "changed.yaml"))
    assert 1.5 * base_rate < rate < 2.0 * base_rate


def test_decode_step_is_its_allreduces(wse, base_rate):
    """Llama-3.1-8B (32 layers): per layer 7 projections (1 all-reduce each), attention (2) and 2 RMSNorms (1 each)
    = 11, plus the final norm and the LM head: 354 all-reduces of ~ 2 x 360 hops x 2 cycles / 1.1 GHz = 1.309 us
    each, 463 us. The step is that plus the small payload and local terms: within 5%."""
    hop_s = 2 / 1.1e9
    allreduce_latency_s = 2 * (720 // 2) * hop_s
    latency_floor_s = (32 * 11 + 2) * allreduce_latency_s
    step_s = 1.0 / base_rate
    assert latency_floor_s <= step_s <= 1.05 * latency_floor_s


@pytest.mark.parametrize("edit, fragment", [
    (lambda d: d["mesh"].update(op_side=2000), "mesh.op_side"),
    (lambda d: d["mesh"].update(bogus=1), "bogus"),
    (lambda d: d["mesh"].pop("hop_cycles"), "hop_cycles"),
    (lambda d: d["mesh"].update(link_bytes_per_cycle=0), "mesh.link_bytes_per_cycle"),
    (lambda d: d["mesh"].update(clock="1.1 GB"), "mesh.clock"),
])
def test_bad_mesh_sections(data, edit, fragment):
    broken = copy.deepcopy(data)
    edit(broken)
    with pytest.raises(ConfigError, match=fragment.replace(".", r"\.")):
        hardware_from_dict(broken, "bad.yaml")


def test_sweeping_the_hop_latency_rebuilds_the_chip(capsys, data, base_rate):
    """`archsim sweep --set mesh.hop_cycles=1,2,3` rebuilds the chip from its YAML per value: every extra cycle per
    hop makes decode slower, and each point is that chip's decode (the sweep's scenario is the workload's 4K prompt,
    not this file's 2K context: at batch 1 the mesh-bound step moves by well under 2%)."""
    import json

    from archsim.cli import main

    code = main(["sweep", str(LLAMA_8B), "--hw", str(FILE), "--devices", "1", "--batch", "1",
                 "--set", "mesh.hop_cycles=1,2,3", "--format", "json"])
    assert code == 0
    points = json.loads(capsys.readouterr().out)["points"]
    rates = {p["mesh.hop_cycles"]: p["decode.tokens_per_s"] for p in points}
    assert rates[1] > rates[2] > rates[3]
    assert rates[2] == pytest.approx(base_rate, rel=0.02)
    changed = copy.deepcopy(data)
    changed["mesh"]["hop_cycles"] = 3
    with pytest.warns(Warning):
        assert rates[3] == pytest.approx(_tokens_per_s(hardware_from_dict(changed, "changed.yaml")), rel=0.02)
