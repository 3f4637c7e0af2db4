"""Corpus of bad hardware files (tests/data/bad/hardware/): each gives its expected one-line ConfigError."""
from pathlib import Path

import pytest

from archsim.config.hardware import load_hardware
from archsim.config.yaml_io import MAX_FILE_BYTES
from archsim.errors import ConfigError

CORPUS = Path(__file__).resolve().parents[1] / "data" / "bad" / "hardware"

# file -> fragment that the message must contain (after "FILE: "). Field files are hardware/h100.yaml with
# one change, named in each file's first line.
EXPECTED = {
    "alias_bomb.yaml": "line 2: expected valid YAML, got 'anchors and aliases (&name / *name) are not allowed'",
    "bad_engine_kind.yaml": "compute.tensor.kind: expected one of 'matrix', 'vector'; did you mean 'matrix'?",
    "bare_number_bandwidth.yaml": "memory.hbm.bandwidth: expected a bandwidth like '3.35 TB/s', got 3350000000000.0",
    "binary_garbage.yaml": "<root>: expected a UTF-8 YAML text file, got 'binary data (NUL bytes)'",
    "capacity_mismatch.yaml": "memory.shared.capacity: expected per_unit x units = 30818304 B",
    "chips_float.yaml": "node.chips: expected a positive integer, got 8.5",
    "chips_zero.yaml": "node.chips: expected a positive integer, got 0",
    "deep_nesting.yaml": "line 1: expected YAML nested at most 64 levels deep",
    "duplicate_key.yaml": "line 3: expected valid YAML, got \"duplicate key 'name' (first on line 1)\"",
    "empty.yaml": "<root>: expected a YAML mapping (key: value lines), got 'an empty file'",
    "energy_wrong_dimension.yaml": "memory.hbm.energy_per_bit: expected an energy per bit like '1.2 pJ/bit' (an energy, not an energy per bit)",
    "fraction_over_one.yaml": "compute.tensor.achievable_fraction: expected a fraction in (0, 1]",
    "fraction_percent_over.yaml": "memory.hbm.achievable_fraction: expected a fraction in (0, 1] like 0.78 or '78%', got '150%'",
    "huge_capacity.yaml": "memory.hbm.capacity: expected a finite value: a size like '80 GB'",
    "huge_peak_overflow.yaml": "compute.tensor.peak.fp8: expected a finite value: a compute rate",
    "idle_above_tdp.yaml": "power.idle: expected idle power no larger than tdp (700 W), got 800.0",
    "inf_peak.yaml": "compute.tensor.peak.bf16: expected a compute rate like '989.4 TFLOPS', got inf",
    "kernel_launch_power.yaml": "kernel_launch: expected a time like '2.5 us' (a power, not a time), got '4 W'",
    "latency_negative.yaml": "memory.l2.latency: expected a non-negative value: a time like '2.5 us', got '-5 ns'",
    "latin1_text.yaml": "byte 9: expected a UTF-8 YAML text file, got 'invalid UTF-8'",
    "link_as_scalar.yaml": "node.scale_out: expected a mapping (key: value), got '400 Gb/s'",
    "memory_as_list.yaml": "memory: expected a mapping (key: value), got \"a list ['hbm']\"",
    "missing_hbm_bandwidth.yaml": "memory.hbm: expected key 'bandwidth'",
    "missing_node.yaml": "<root>: expected key 'node'",
    "nan_peak.yaml": "compute.tensor.peak.bf16: expected a compute rate like '989.4 TFLOPS', got 'nan TFLOPS'",
    "negative_bandwidth.yaml": "node.scale_up.bandwidth: expected a positive value: a bandwidth like '3.35 TB/s'",
    "no_matrix_engine.yaml": "compute: expected at least one engine with kind: matrix",
    "only_comments.yaml": "<root>: expected a YAML mapping (key: value lines), got 'an empty file'",
    "per_unit_without_units.yaml": "memory.shared: expected per_unit and units for a per-SM level",
    "price_without_unit.yaml": "price: expected a price like '$2.10/h', got 2.0",
    "sm_count_huge.yaml": "sm_count: expected an integer >= 1 and <= 9007199254740992, got 1000000000000000000000000000000",
    "sm_count_string.yaml": "sm_count: expected an integer >= 1, got '132'",
    "syntax_error.yaml": "line 2: expected valid YAML",
    "top_level_list.yaml": "<root>: expected a YAML mapping (key: value lines) at the top level, got 'list'",
    "top_level_scalar.yaml": "<root>: expected a YAML mapping (key: value lines) at the top level, got 'str'",
    "unknown_dtype.yaml": "compute.tensor.peak.bf61: expected a dtype name, one of fp4, int4, fp8, int8, fp16, bf16, tf32, fp32, fp64; did you mean 'bf16'?",
    "unknown_key_typo.yaml": "memory.hbm.bandwith: expected a known key; unknown key 'bandwith'; did you mean 'bandwidth'?",
    "wrong_unit_size_for_bandwidth.yaml": "memory.hbm.bandwidth: expected a bandwidth like '3.35 TB/s' (a size, not a bandwidth), got '3.35 TB'",
    "year_bool.yaml": "year: expected an integer >= 1940, got True",
    "zero_capacity.yaml": "memory.hbm.capacity: expected a positive value: a size like '80 GB', got '0 GB'",
}


def test_table_covers_the_corpus():
    assert sorted(p.name for p in CORPUS.glob("*.yaml")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_bad_hardware_file(name):
    path = CORPUS / name
    with pytest.raises(ConfigError) as info:
        load_hardware(path)
    message = str(info.value)
    assert message.startswith(f"{path}: "), message
    assert EXPECTED[name] in message, message
    assert "\n" not in message and "Traceback" not in message


def test_file_over_the_size_limit(tmp_path):
    big = tmp_path / "big.yaml"
    big.write_text("name: x\n" + "#" * MAX_FILE_BYTES + "\n")
    with pytest.raises(ConfigError, match=r"big\.yaml: <root>: expected a file of at most 1048576 bytes"):
        load_hardware(big)
