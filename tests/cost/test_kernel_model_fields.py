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
