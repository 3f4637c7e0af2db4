"""units: every accepted spelling gives the exact SI float; every rejection is a ConfigError naming file and field."""
import math

import pytest

from archsim.errors import ConfigError
from archsim.units import DIMENSIONS, format_quantity, parse_quantity

# (text, dimension, expected SI value); expected values are written as the arithmetic they come from.
VALID = [
    ("80 GB", "bytes", 80 * 10**9),
    ("80 GiB", "bytes", 85899345920),  # 80 * 2**30
    ("228 KiB", "bytes", 228 * 1024),
    ("50 MB", "bytes", 50 * 10**6),
    ("1 B", "bytes", 1),
    ("3.35 TB/s", "bytes_per_s", 3.35e12),
    ("450 GB/s", "bytes_per_s", 450e9),
    ("400 Gb/s", "bytes_per_s", 5e10),  # 400e9 bits / 8
    ("2 TiB/s", "bytes_per_s", 2 * 2**40),
    ("989.4 TFLOPS", "flop_per_s", 989.4e12),
    ("1979 TOPS", "flop_per_s", 1979e12),
    ("2.5 PFLOP/s", "flop_per_s", 2.5e15),
    ("66.9 TFLOP/s", "flop_per_s", 66.9e12),
    ("2.5 us", "time_s", 2.5e-6),
    ("2.5 µs", "time_s", 2.5e-6),  # U+00B5 micro sign
    ("2.5 μs", "time_s", 2.5e-6),  # U+03BC Greek mu
    ("3 ns", "time_s", 3e-9),
    ("1.5 ms", "time_s", 1.5e-3),
    ("4 s", "time_s", 4.0),
    ("0 s", "time_s", 0.0),  # zero latency is meaningful
    ("700 W", "power_w", 700.0),
    ("1.2 kW", "power_w", 1200.0),
    ("0 W", "power_w", 0.0),  # idle power may be zero
    ("1.2 pJ/bit", "energy_j_per_bit", 1.2e-12),
    ("5 pJ/b", "energy_j_per_bit", 5e-12),
    ("0.45 pJ/FLOP", "energy_j_per_flop", 0.45e-12),
    ("1.1 pJ/op", "energy_j_per_flop", 1.1e-12),
    ("3 nJ", "energy_j", 3e-9),
    ("1 J", "energy_j", 1.0),
    ("$2.10/h", "usd_per_hour", 2.10),
    ("$2.1/hr", "usd_per_hour", 2.1),
    ("2.10 USD/h", "usd_per_hour", 2.10),
    ("$0/h", "usd_per_hour", 0.0),
    ("1.83 GHz", "frequency_hz", 1.83e9),
    ("300 MHz", "frequency_hz", 300e6),
    ("3.35TB/s", "bytes_per_s", 3.35e12),  # the space is optional
    ("1e3 GB", "bytes", 1e12),
    (0.78, "fraction", 0.78),
    (1, "fraction", 1.0),
    ("78%", "fraction", 0.78),
    ("100%", "fraction", 1.0),
    (8, "count", 8),
]


@pytest.mark.parametrize("text,dimension,expected", VALID)
def test_parse_exact(text, dimension, expected):
    # exact equality: the parser rounds once, from the decimal text, to the nearest float
    assert parse_quantity(text, dimension) == expected


def test_gib_and_gb_are_never_converted_into_each_other():
    assert parse_quantity("1 GiB", "bytes") == 2**30
    assert parse_quantity("1 GB", "bytes") == 10**9
    assert parse_quantity("80 GiB", "bytes") / parse_quantity("80 GB", "bytes") == 2**30 / 10**9


def test_count_returns_int():
    assert isinstance(parse_quantity(132, "count"), int)


# (value, dimension, fragment the message must contain)
INVALID = [
    (3.35, "bytes_per_s", "expected a bandwidth like '3.35 TB/s'"),  # bare number where a unit is required
    (80, "bytes", "expected a size like '80 GB'"),
    ("3.35 TB", "bytes_per_s", "a size, not a bandwidth"),  # wrong dimension
    ("3.35 TB/s", "bytes", "a bandwidth, not a size"),
    ("700 W", "time_s", "a power, not a time"),
    ("989 TFLOPS", "bytes_per_s", "a compute rate, not a bandwidth"),
    ("nan B", "bytes", "expected a size"),
    ("inf TB/s", "bytes_per_s", "expected a bandwidth"),
    (float("nan"), "bytes", "expected a size"),
    ("1e999 B", "bytes", "finite"),
    ("1e999999999999999999 B", "bytes", "finite"),  # decimal overflow is an error, not an exception
    ("-1 GB", "bytes", "positive"),
    ("0 GB", "bytes", "positive"),
    ("0 TB/s", "bytes_per_s", "positive"),
    ("0 TFLOPS", "flop_per_s", "positive"),
    ("0 Hz", "frequency_hz", "positive"),
    ("-2.5 us", "time_s", "non-negative"),
    ("-1 W", "power_w", "non-negative"),
    ("-$2/h", "usd_per_hour", "a price"),
    ("$-2/h", "usd_per_hour", "non-negative"),
    (True, "bytes", "expected a size"),
    (None, "bytes", "expected a size"),
    ([80], "bytes", "expected a size"),
    ("", "bytes", "expected a size"),
    ("GB", "bytes", "expected a size"),
    ("80 XB", "bytes", "expected a size"),
    ("80 KB", "bytes", "expected a size"),  # capital K is neither decimal k nor binary Ki: ambiguous, rejected
    ("80 mB", "bytes", "expected a size"),  # milli-bytes make no sense
    ("80 GiB/s extra", "bytes_per_s", "expected a bandwidth"),
    ("3 ks", "time_s", "expected a time"),
    ("2 PiFLOPS", "flop_per_s", "expected a compute rate"),  # binary prefixes only for bytes
    ("2.10 EUR/h", "usd_per_hour", "expected a price"),
    (0, "fraction", "fraction in (0, 1]"),
    (1.5, "fraction", "fraction in (0, 1]"),
    (-0.2, "fraction", "fraction in (0, 1]"),
    ("150%", "fraction", "fraction in (0, 1]"),
    ("0.78", "fraction", "fraction in (0, 1]"),
    (float("nan"), "fraction", "fraction in (0, 1]"),
    (True, "fraction", "fraction in (0, 1]"),
    (0, "count", "positive integer"),
    (-3, "count", "positive integer"),
    (2.0, "count", "positive integer"),
    ("8", "count", "positive integer"),
    (True, "count", "positive integer"),
    (2**53 + 1, "count", "a positive integer <= 9007199254740992"),  # beyond exact float integers
]


@pytest.mark.parametrize("value,dimension,fragment", INVALID)
def test_rejects_with_file_and_field(value, dimension, fragment):
    with pytest.raises(ConfigError) as info:
        parse_quantity(value, dimension, file="chip.yaml", path="memory.hbm.bandwidth")
    message = str(info.value)
    assert message.startswith("chip.yaml: memory.hbm.bandwidth: expected ")
    assert fragment in message
    assert "\n" not in message


def test_unknown_dimension_is_a_programming_error():
    with pytest.raises(ValueError, match="unknown dimension"):
        parse_quantity("1 B", "bites")


FORMATTED = [
    (3.35e12, "bytes_per_s", "3.35 TB/s"),
    (80e9, "bytes", "80 GB"),
    (989.4e12, "flop_per_s", "989.4 TFLOPS"),
    (2.5e-6, "time_s", "2.5 us"),
    (0.0, "time_s", "0 s"),
    (700.0, "power_w", "700 W"),
    (1.2e-12, "energy_j_per_bit", "1.2 pJ/bit"),
    (2.1, "usd_per_hour", "$2.10/h"),
    (1.83e9, "frequency_hz", "1.83 GHz"),
    (0.78, "fraction", "78%"),
    (132, "count", "132"),
]


@pytest.mark.parametrize("value,dimension,text", FORMATTED)
def test_format(value, dimension, text):
    assert format_quantity(value, dimension) == text


@pytest.mark.parametrize("dimension", sorted(DIMENSIONS))
def test_format_parses_back(dimension):
    # 4 significant digits: a value with at most 4 round-trips exactly
    value = parse_quantity(DIMENSIONS[dimension].example, dimension)
    assert math.isclose(parse_quantity(format_quantity(value, dimension), dimension), value, rel_tol=1e-12)
