"""The GEMM kernel fields added for multicast and the operand feed (archsim/config/kernel_fields.py): parsed
from hardware/h800.yaml, and bad values are one-line ConfigErrors naming the field."""
from __future__ import annotations

from pathlib import Path

import pytest

from archsim.config.hardware import load_hardware
from archsim.errors import ConfigError

H800 = Path(__file__).resolve().parents[2] / "hardware" / "h800.yaml"


def test_h800_carries_the_multicast_and_operand_feed_fields() -> None:
    fields = load_hardware(H800).kernel
    assert fields.gemm_multicast == 2
    assert fields.gemm_operand_bandwidth_bytes_per_s == pytest.approx(6.0e12)


@pytest.mark.parametrize("line, fragment", [
    ("  gemm_multicast: 0", "kernel.gemm_multicast: expected an integer >= 1"),
    ("  gemm_multicast: 1.5", "kernel.gemm_multicast: expected an integer >= 1"),
    ("  gemm_operand_bandwidth: 6 us", "kernel.gemm_operand_bandwidth"),
    ("  gemm_operand_bandwidth: 0 TB/s", "kernel.gemm_operand_bandwidth"),
])
def test_bad_kernel_field_is_a_config_error(tmp_path, line: str, fragment: str) -> None:
    text = H800.read_text()
    key = line.split(":")[0]
    lines = [ln for ln in text.splitlines() if not ln.startswith(key + ":")]
    lines.insert(lines.index("kernel:") + 1, line)
    bad = tmp_path / "bad.yaml"
    bad.write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigError) as err:
        load_hardware(bad)
    assert fragment in str(err.value)
    assert "\n" not in str(err.value)


H200 = Path(__file__).resolve().parents[2] / "hardware" / "h200.yaml"


def test_sm_stream_bandwidth_is_on_h200_only() -> None:
    # measured on the H200 alone (Triton copy per CTA); other chips have no per-SM cap
    assert load_hardware(H200).kernel.sm_stream_bandwidth_bytes_per_s == pytest.approx(47e9)
    assert load_hardware(H800).kernel.sm_stream_bandwidth_bytes_per_s is None


@pytest.mark.parametrize("line, fragment", [
    ("  sm_stream_bandwidth: 0 GB/s", "kernel.sm_stream_bandwidth: expected a positive"),
    ("  sm_stream_bandwidth: 47 us", "kernel.sm_stream_bandwidth"),
])
def test_bad_sm_stream_bandwidth_is_a_config_error(tmp_path, line: str, fragment: str) -> None:
    lines = [ln for ln in H200.read_text().splitlines() if not ln.startswith("  sm_stream_bandwidth:")]
    lines.insert(lines.index("kernel:") + 1, line)
    bad = tmp_path / "bad.yaml"
    bad.write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigError) as err:
        load_hardware(bad)
    assert fragment in str(err.value)
    assert "\n" not in str(err.value)


def test_sm_stream_bandwidth_is_the_per_program_fit_of_the_measured_copy() -> None:
    """Re-derive the field from the raw H200 run: one Triton program (one CTA) copying 4 MiB in steps of
    4 KiB and of 16 KiB; time per step = latency + loaded bytes / rate, so rate = 1 / slope."""
    import json

    raw = json.loads((H200.parents[1] / "validation" / "h200_torch_raw_20261128.json").read_text())
    one = {r["block_bytes"]: r["time_s"] / (r["chunk_bytes"] / r["block_bytes"])
           for r in raw["cta_bandwidth"] if r["programs"] == 1}
    rate = (16384 - 4096) / (one[16384] - one[4096])
    latency = one[4096] - 4096 / rate
    assert 0.3e-6 < latency < 0.4e-6  # one load in flight at a time: about the loaded memory latency
    field = load_hardware(H200).kernel.sm_stream_bandwidth_bytes_per_s
    assert rate * 0.98 <= field <= rate  # rounded down
