"""The torch microbenchmark script without torch (plan, kernel-name parsing, operand rotation), the H200 data
it produced (validation/h200_torch_raw_20261128*.json) and the validation cases generated from it."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from archsim.cost.kernel_model import attended_pairs, attention_time
from archsim.errors import ConfigError
from archsim.fidelity import microbench_torch as mb
from archsim.fidelity.calibrate_torch import _fit, flash_tiles, validation_cases, validation_yaml
from archsim.config.yaml_io import load_yaml

REPO = Path(__file__).resolve().parents[2]
RAW_NAME = "h200_torch_raw_20261128.json"


@pytest.fixture(scope="module")
def raw() -> dict:
    return json.loads((REPO / "validation" / RAW_NAME).read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def raw2() -> dict:
    return json.loads((REPO / "validation" / "h200_torch_raw_20261128_run2.json").read_text(encoding="utf-8"))


def test_dry_run_needs_no_torch(capsys) -> None:
    assert mb.main(["--dry-run"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert len(plan["gemm"]) == 2 * len(mb.GEMM_SHAPES)
    assert {(g["m"]) for g in plan["gemm"]} >= {1, 8, 64, 4096, 8192}
    assert len(plan["attention"]) == len(mb.ATTENTION_SHAPES) >= 12
    # each case rotates over enough operand bytes that the L2 cannot hold them (up to the copy cap)
    for g in plan["gemm"]:
        per_call = (2 if g["dtype"] == "bf16" else 1) * (g["m"] * g["k"] + g["n"] * g["k"]) + 2 * g["m"] * g["n"]
        assert g["copies"] * per_call >= mb.COLD_BYTES or g["copies"] == mb.MAX_COPIES


def test_operand_rotation_and_calls_per_replay() -> None:
    assert mb.operand_copies(30e6) == 9            # 240 MiB / 30 MB, rounded up
    assert mb.operand_copies(500e6) == 1
    assert mb.operand_copies(1e3) == mb.MAX_COPIES
    assert mb.calls_per_replay(10e-6, 9) == 200     # 2 ms of 10 us calls
    assert mb.calls_per_replay(10e-3, 1) == mb.MIN_CALLS
    assert mb.calls_per_replay(1e-6, 9) == mb.MAX_CALLS
    assert mb.calls_per_replay(1e-3, 64) == 64      # at least one pass over every copy


@pytest.mark.parametrize("name, tile, split", [
    ("nvjet_sm90_tst_64x8_64x16_4x1_v_bz_splitK_TNT", [64, 8, 64], True),
    ("nvjet_sm90_qqtst_128x128_128x6_2x1_v_bz_coopA_algo2_TNT", [128, 128, 128], False),
    ("sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n_tilesize128x256x64_warpgroupsize2x1x1_execute_segment_k_off_kernel",
     [128, 256, 64], False),
    ("void cublasLt::splitKreduce_kernel<32, 16, int, float, __nv_bfloat16>", None, True),
])
def test_kernel_names_give_tile_and_split_k(name: str, tile, split: bool) -> None:
    info = mb.describe_kernel(name)
    assert info.get("tile") == tile
    assert info.get("split_k", False) is split


def test_flash_tiles_from_kernel_template() -> None:
    name = "void pytorch_flash::flash_fwd_splitkv_kernel<Flash_fwd_kernel_traits<128, 64, 128, 4, false, false>>"
    assert flash_tiles([{"name": "other"}, {"name": name}]) == (64, 128)
    assert flash_tiles([{"name": "nvjet_sm90_tst_64x8"}]) is None


def test_raw_run_is_complete_and_floor_free(raw: dict, raw2: dict) -> None:
    """Every planned case ran; CUDA-graph per-call times sit below the old single-call event times for the
    small kernels (the floor removed) and repeat within 10% between the two runs (median within 2%)."""
    assert raw["device"] == "NVIDIA H200" and raw["l2_bytes"] == 62914560
    assert all("time_s" in r and r["timing"] == "cuda_graph" for r in raw["gemm"]), "a GEMM was skipped"
    assert all(r.get("backend") == "FLASH_ATTENTION" for r in raw["attention"])
    small = [r for r in raw["gemm"] if r["m"] <= 128]
    assert all(r["time_s"] < r["time_event_s"] for r in small)
    ratios = sorted(r2["time_s"] / r1["time_s"] for r1, r2 in zip(raw["gemm"] + raw["attention"],
                                                                  raw2["gemm"] + raw2["attention"]))
    assert 0.9 < ratios[0] and ratios[-1] < 1.1
    assert abs(ratios[len(ratios) // 2] - 1.0) < 0.02


def test_cta_bandwidth_rises_with_programs_and_bytes_in_flight(raw: dict) -> None:
    rows = {(r["block"], r["programs"]): r["bytes"] / r["time_s"] for r in raw["cta_bandwidth"]}
    for block in mb.CTA_BLOCKS:
        rates = [rows[(block, p)] for p in mb.CTA_PROGRAMS]
        assert all(b >= a * 0.98 for a, b in zip(rates, rates[1:]))        # more programs, never slower
    assert rows[(4096, 1)] > 2 * rows[(1024, 1)]    # one program: 4x the bytes in flight, > 2x the rate
    assert 3.5e12 < rows[(4096, 1056)] < 4.8e12     # saturates near the copy bandwidth


def test_committed_validation_file_is_generated_from_the_raw_run(raw: dict) -> None:
    text = (REPO / "validation" / "h200_torch.yaml").read_text(encoding="utf-8")
    assert text == validation_yaml(raw, raw_name=RAW_NAME)
    cases = validation_cases(raw)
    assert sum(c["category"] == "gemm_h200_measured" for c in cases) == len(raw["gemm"])
    assert sum(c["category"] == "attention_h200_measured" for c in cases) == len(raw["attention"])
    assert [c["id"] for c in cases if "calibrates" in c] == ["torch_bf16_m4096_n4096_k7168"]


def test_fit_uses_the_faster_copy_timing(raw: dict) -> None:
    base = load_yaml(REPO / "hardware" / "h200.yaml")
    fields = {f.path: f.value for f in _fit(raw, base, "h200.yaml")}
    assert 0.85 < fields["memory.hbm.achievable_fraction"] < 0.92     # 4.22 TB/s of 4.8
    assert fields["compute.tensor.achievable_fraction"] == pytest.approx(794.1e12 / 989.4e12, rel=0.01)
    # this run's single nvidia-smi read (1980 MHz) exceeds the 1830 MHz boost clock: not a clock under load
    assert "kernel.clock_under_load" not in fields
    sampled = {**raw, "clock": {"sm_mhz_sustained": 1485.0}}
    assert {f.path: f.value for f in _fit(sampled, base, "h200.yaml")}["kernel.clock_under_load"] == 1485e6


def test_tiled_attention_pads_decode_rows_and_packs_gqa() -> None:
    common = dict(phase="decode", batch=16, context=4096, head_dim=128, mma_peak_fraction=0.35)
    mha = attention_time("h200", kind="mha", heads=128, q_tile=128, kv_tile=64, **common)
    assert mha.detail["executed_mma_flops"] == pytest.approx(128 * mha.detail["mma_flops"])  # 1 row -> 128
    gqa = attention_time("h200", kind="gqa", heads=32, heads_kv=8, q_tile=128, kv_tile=64, **common)
    assert gqa.detail["executed_mma_flops"] == pytest.approx(32 * gqa.detail["mma_flops"])  # 4 rows -> 128
    untiled = attention_time("h200", kind="gqa", heads=32, heads_kv=8, **common)
    assert untiled.detail["executed_mma_flops"] == untiled.detail["mma_flops"]
    prefill = attention_time("h200", kind="mha", phase="prefill", batch=1, heads=32, context=4096, head_dim=128,
                             q_tile=128, kv_tile=64)
    pairs = 32 * attended_pairs(q_len=4096, kv_len=4096, causal=True)
    assert 1.0 < prefill.detail["executed_mma_flops"] / (2 * pairs * 256) < 1.04  # diagonal tiles only


def test_mma_peak_fraction_must_be_a_fraction() -> None:
    with pytest.raises(ConfigError):
        attention_time("h200", kind="mha", phase="decode", batch=1, heads=8, context=64, head_dim=128,
                       mma_peak_fraction=1.5)


# --- calibration from hardware/h200.raw.json (the documented `archsim calibrate --backend torch --raw` command)

def _calibrate_committed_raw(tmp_path: Path, capsys) -> Path:
    from archsim.cli import main

    assert main(["calibrate", "--backend", "torch", "--raw", str(REPO / "hardware" / "h200.raw.json"),
                 "--out", str(tmp_path)]) == 0
    capsys.readouterr()
    return tmp_path / "h200.calibrated.yaml"


def test_documented_command_reproduces_the_sampled_clock_and_stays_within_tdp(tmp_path, capsys) -> None:
    from archsim.config.hardware import load_hardware
    from archsim.cost.phase import price_graph
    from archsim.fidelity.tdp_energy import SHAPES, gemm_graph

    written = _calibrate_committed_raw(tmp_path, capsys)
    hw = load_hardware(written)
    # the raw file's own single read (1980 MHz, before the power cap acted) is not used: its clock samples are
    assert hw.kernel.clock_under_load_hz == 1485e6
    assert "median of 21 samples" in written.read_text(encoding="utf-8")
    # the raw JSON is written back unchanged (so `--out hardware` rewrites it byte for byte)
    assert (tmp_path / "h200.raw.json").read_bytes() == (REPO / "hardware" / "h200.raw.json").read_bytes()
    # the energy per FLOP re-derived at the calibrated rates: no large GEMM above TDP, the binding one within 3%
    tensor = hw.engine_for("matrix")
    base = load_hardware(REPO / "hardware" / "h200.yaml").engine_for("matrix")
    assert tensor.achievable_fraction > base.achievable_fraction
    for dtype in ("bf16", "fp8"):
        watts = [(lambda p: p.energy_j / p.time_s)(price_graph(gemm_graph(dtype, *s), hw)) for s in SHAPES]
        assert hw.power.tdp_w * 0.97 <= max(watts) <= hw.power.tdp_w * (1 + 1e-9), (dtype, watts)  # capped at TDP
    assert tensor.energy_j_per_flop["tf32"] == pytest.approx(2 * tensor.energy_j_per_flop["bf16"])
    assert written.read_text(encoding="utf-8").count("[D] at the calibrated rates") == len(tensor.energy_j_per_flop)


def test_committed_calibrated_file_is_the_documented_command_output(tmp_path, capsys) -> None:
    """hardware/h200.calibrated.yaml is exactly what the command writes from hardware/h200.raw.json and
    hardware/h200.yaml: regenerate it (`archsim calibrate --backend torch --raw hardware/h200.raw.json
    --out hardware`) after changing either."""
    written = _calibrate_committed_raw(tmp_path, capsys)
    committed = (REPO / "hardware" / "h200.calibrated.yaml").read_text(encoding="utf-8")
    assert committed == written.read_text(encoding="utf-8")


def test_raw_clock_block_names_its_source() -> None:
    clock = json.loads((REPO / "hardware" / "h200.raw.json").read_text(encoding="utf-8"))["clock"]
    sampled = json.loads((REPO / "validation" / "h200_torch_clock_20261128.json").read_text(encoding="utf-8"))
    assert clock["samples_from"] == "validation/h200_torch_clock_20261128.json"
    assert clock["samples"] == [[s["t_s"], s["sm_mhz"]] for s in sampled["samples"]]
    assert clock["sm_mhz_sustained"] == sampled["sm_mhz_median_1s_to_end"] == 1485.0


@pytest.mark.parametrize("clock, top, expected", [
    # samples after the GEMMs ended (clock back up at 1950 MHz) and in the first second are left out
    ({"samples": [[0.02, 1980.0], [0.5, 1500.0], [1.2, 1450.0], [2.0, 1470.0], [3.0, 1460.0], [3.3, 1950.0]],
      "seconds": 3.1, "sm_mhz_sustained": 1490.0}, 1900.0, 1460.0),
    ({"sm_mhz_sustained": 1490.0}, 1900.0, 1490.0),   # no samples: the script's median
    ({}, 1650.0, 1650.0),                             # the old single read
    ({}, None, None),
])
def test_sustained_clock_prefers_samples(clock: dict, top, expected) -> None:
    from archsim.fidelity.calibrate_torch import sustained_clock

    raw = {"clock": clock} | ({"sm_clock_mhz_after_gemm": top} if top else {})
    got = sustained_clock(raw)
    assert (got[0] if got else None) == expected


def test_clock_samples_must_be_pairs() -> None:
    from archsim.fidelity.calibrate_torch import sustained_clock

    with pytest.raises(ConfigError, match="clock.samples"):
        sustained_clock({"clock": {"samples": [[1.5]]}})


def _gemm_row(dtype: str, m: int, tflops: float, **extra) -> dict:
    m_run = extra.get("m_run", m)
    return {"dtype": dtype, "m": m, "n": 4096, "k": 4096, "flops": 2.0 * m * 4096 * 4096,
            "time_s": 2.0 * m_run * 4096 * 4096 / (tflops * 1e12), "timing": "cuda_graph", **extra}


def test_padded_gemm_is_validated_in_the_shape_that_ran() -> None:
    raw = {"gemm": [_gemm_row("fp8", 1, 30.0, m_run=16), _gemm_row("fp8", 16, 30.0)], "attention": []}
    padded, plain = validation_cases(raw)
    assert padded["shape"] == {"m": 16, "n": 4096, "k": 4096} and padded["measured"] == {"tflops": 30.0}
    assert padded["id"] != plain["id"] and "padded from 1 to 16" in padded["notes"]
    assert plain["shape"]["m"] == 16 and plain["measured"] == {"tflops": 30.0}


def test_calibrating_gemm_is_the_fits_choice_against_the_yaml_peaks() -> None:
    # A100 has no FP8 peak: the fit skips the FP8 row however fast it is (a fixed FP8 = 2 x BF16 rule picked it)
    raw = {"gemm": [_gemm_row("fp8", 4096, 1000.0), _gemm_row("bf16", 4096, 300.0)], "attention": []}
    marked = [c["dtype"] for c in validation_cases(raw, base="a100") if "calibrates" in c]
    assert marked == ["bf16"]
    base = load_yaml(REPO / "hardware" / "a100.yaml")
    how = {f.path: f.how for f in _fit(raw, base, "a100.yaml")}["compute.tensor.achievable_fraction"]
    assert "bf16 4096x4096x4096" in how
    # on the H200 the FP8 row is nearer its peak (1000 / 1978.9 > 300 / 989.4) and is the one marked
    assert [c["dtype"] for c in validation_cases(raw) if "calibrates" in c] == ["fp8"]


TRAINING_RAW = "h200_torch_training_20261128.json"


def test_training_shapes_file_is_generated_from_its_raw_run() -> None:
    """validation/h200_torch_training.yaml: the DeepSeek-V3 pre-training GEMMs timed on the H200, every one
    held out (none sets a field), one case per timed shape and dtype."""
    raw = json.loads((REPO / "validation" / TRAINING_RAW).read_text(encoding="utf-8"))
    text = (REPO / "validation" / "h200_torch_training.yaml").read_text(encoding="utf-8")
    assert text == validation_yaml(raw, raw_name=TRAINING_RAW)
    cases = validation_cases(raw)
    timed = [r for r in raw["training_gemm"] if "time_s" in r]
    assert len(timed) == 2 * len(mb.TRAINING_GEMM_SHAPES)
    assert [c["category"] for c in cases] == ["gemm_h200_training"] * len(timed)
    assert not any("calibrates" in c for c in cases)
    # a sanity check of the committed measurement (it fails only if the raw file is edited): the attention
    # forward/backward rows have the backward slower per FLOP than the forward, both below the BF16 peak
    for row in raw["training_attention"]:
        fwd = row["forward_mma_flops"] / row["forward_s"]
        bwd = row["backward_mma_flops"] / row["backward_s"]
        assert 0.5 * fwd < bwd < fwd < 989.4e12
