"""Properties of the input layer under random input: only ConfigError ever escapes, values round-trip exactly."""
import copy
import math
from pathlib import Path

import yaml
from hypothesis import assume, given
from hypothesis import strategies as st

from archsim.config.hardware import hardware_from_dict
from archsim.config.yaml_io import Section, load_yaml, parse_yaml_text
from archsim.errors import ConfigError
from archsim.units import DIMENSIONS, PLAIN_DIMENSIONS, format_quantity, parse_quantity

H100 = load_yaml(Path(__file__).resolve().parent.parent / "hardware" / "h100.yaml")
ALL_DIMENSIONS = sorted([*DIMENSIONS, *PLAIN_DIMENSIONS])

# Anything YAML can produce, nested a little.
yaml_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20))
yaml_values = st.recursive(yaml_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)), max_leaves=12)


def one_line_config_error(err: ConfigError) -> None:
    message = str(err)
    assert message and "\n" not in message
    assert ": expected " in message


@given(value=yaml_values, dimension=st.sampled_from(ALL_DIMENSIONS))
def test_parse_quantity_accepts_or_raises_config_error(value, dimension):
    try:
        result = parse_quantity(value, dimension, file="f.yaml", path="x")
    except ConfigError as err:
        one_line_config_error(err)
        return
    assert math.isfinite(result) and result >= 0
    if dimension not in ("energy_j", "energy_j_per_bit", "energy_j_per_flop", "time_s", "power_w", "usd_per_hour"):
        assert result > 0


@given(text=st.text(max_size=30), dimension=st.sampled_from(ALL_DIMENSIONS))
def test_parse_quantity_on_arbitrary_text(text, dimension):
    try:
        result = parse_quantity(text, dimension)
    except ConfigError as err:
        one_line_config_error(err)
    else:
        assert math.isfinite(result)


@given(mantissa=st.integers(min_value=1, max_value=9999), exponent=st.integers(min_value=-15, max_value=18),
       dimension=st.sampled_from(sorted(DIMENSIONS)))
def test_format_then_parse_round_trips(mantissa, exponent, dimension):
    # a value with at most 4 significant digits survives format_quantity's 4-digit output
    value = mantissa * 10.0 ** exponent
    text = format_quantity(value, dimension)
    try:
        back = parse_quantity(text, dimension)
    except ConfigError:
        # the formatter clamps to the dimension's prefixes; tiny/huge values may not be writable
        assume(False)
    assert math.isclose(back, value, rel_tol=1e-9)


@given(data=st.binary(max_size=400))
def test_load_yaml_on_random_bytes(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("fuzz") / "in.yaml"
    path.write_bytes(data)
    try:
        loaded = load_yaml(path)
    except ConfigError as err:
        one_line_config_error(err)
        assert str(err).startswith(str(path))
    else:
        assert isinstance(loaded, dict)


@given(text=st.text(alphabet=st.sampled_from(list("ab:-[]{}&*!|>'\"#\n ,?1.")), max_size=60))
def test_parse_yaml_text_on_yaml_like_noise(text):
    try:
        loaded = parse_yaml_text(text, "noise.yaml")
    except ConfigError as err:
        one_line_config_error(err)
    else:
        assert isinstance(loaded, dict)


@given(data=st.dictionaries(st.text(max_size=6), yaml_values, max_size=5), keys=st.lists(st.text(max_size=6), max_size=4))
def test_section_accessors_raise_only_config_errors(data, keys):
    sec = Section(data, "f.yaml", "root")
    for key in keys:
        for read in (lambda k: sec.int(k), lambda k: sec.number(k), lambda k: sec.str(k), lambda k: sec.bool(k),
                     lambda k: sec.list(k), lambda k: sec.section(k), lambda k: sec.quantity(k, "bytes")):
            try:
                read(key)
            except ConfigError as err:
                one_line_config_error(err)
    try:
        sec.finish()
    except ConfigError as err:
        one_line_config_error(err)


# -- random valid hardware -----------------------------------------------------------------------

factors = st.floats(min_value=1e-3, max_value=1e3, allow_nan=False, allow_infinity=False)


@st.composite
def scaled_h100(draw):
    """The shipped H100 description with every rate, latency and energy scaled by a random factor."""
    data = copy.deepcopy(H100)
    fields = []  # (container, key, dimension)
    for engine in data["compute"].values():
        fields += [(engine["peak"], k, "flop_per_s") for k in engine["peak"]]
        fields += [(engine["energy_per_flop"], k, "energy_j_per_flop") for k in engine["energy_per_flop"]]
    for level in data["memory"].values():
        fields += [(level, "bandwidth", "bytes_per_s"), (level, "latency", "time_s"),
                   (level, "energy_per_bit", "energy_j_per_bit")]
    for link in (data["node"]["scale_up"], data["node"]["scale_out"]):
        fields += [(link, "bandwidth", "bytes_per_s"), (link, "latency", "time_s")]
    for container, key, dimension in fields:
        value = parse_quantity(container[key], dimension) * draw(factors)
        container[key] = format_quantity(value, dimension)
    return data


@given(data=scaled_h100())
def test_random_valid_hardware_loads(data):
    hw = hardware_from_dict(data, "random.yaml")
    for engine in hw.compute.values():
        assert all(math.isfinite(v) and v > 0 for v in engine.peak_flop_per_s.values())
    for level in hw.memory.values():
        assert level.bandwidth_bytes_per_s > 0 and level.latency_s >= 0
    # the YAML dump of a valid description loads to the same record (no hidden state in the loader)
    assert hardware_from_dict(yaml.safe_load(yaml.safe_dump(data, sort_keys=False)), "random.yaml") == hw


@given(path=st.sampled_from(["memory.hbm", "compute.tensor", "node.scale_up", "power", "compute.tensor.peak"]),
       key=st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=12))
def test_any_unknown_key_is_rejected_with_its_path(path, key):
    data = copy.deepcopy(H100)
    node = data
    for part in path.split("."):
        node = node[part]
    assume(key not in node)
    node[key] = "1 GB"
    try:
        hardware_from_dict(data, "x.yaml")
    except ConfigError as err:
        assert f"{path}.{key}" in str(err)
    else:
        raise AssertionError(f"unknown key {path}.{key} was accepted")


@given(file=st.one_of(st.none(), st.text(max_size=20)), path=st.one_of(st.none(), st.text(max_size=20)),
       expected=st.text(max_size=30), got=yaml_values)
def test_config_error_survives_copies(file, path, expected, got):
    # worker processes pickle exceptions and simpy rebuilds a process's exception from its args:
    # both must give the same one-line message
    import pickle

    err = ConfigError(file, path, expected, got)
    for copy_ in (pickle.loads(pickle.dumps(err)), type(err)(*err.args)):
        assert isinstance(copy_, ConfigError) and str(copy_) == str(err)
    one_line_config_error(err)
