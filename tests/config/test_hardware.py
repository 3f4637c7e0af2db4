"""Hardware loader: every shipped file loads; exact values against the datasheet text; strictness on bad input."""
import copy
from pathlib import Path

import pytest

from archsim.config.hardware import hardware_from_dict, load_hardware
from archsim.config.yaml_io import load_yaml
from archsim.errors import ConfigError

HARDWARE_DIR = Path(__file__).resolve().parents[2] / "hardware"
SHIPPED = sorted(HARDWARE_DIR.glob("*.yaml"))


def test_the_six_files_are_shipped():
    names = {p.stem for p in SHIPPED}
    assert {"h100", "h800", "h200", "b200", "a100", "mi300x"} <= names


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_shipped_file_loads_and_is_sane(path):
    hw = load_hardware(path)
    assert hw.source_file == str(path)
    assert any(engine.peak_flop_per_s for engine in hw.compute.values())
    assert hw.main_memory is list(hw.memory.values())[-1]
    for engine in hw.compute.values():
        # every dtype with a peak has an energy, so the cost model can price any op it can time
        assert set(engine.energy_j_per_flop) == set(engine.peak_flop_per_s), engine.name
    for level in hw.memory.values():
        assert level.capacity_bytes > 0 and level.bandwidth_bytes_per_s > 0
    assert 0 <= hw.power.idle_w < hw.power.tdp_w
    assert hw.node.scale_up.bandwidth_bytes_per_s > hw.node.scale_out.bandwidth_bytes_per_s


CITATION_MARKS = ("source:", "[V]", "[S]", "[R]", "[D]", "assumption", "UNVERIFIED", "PROJECTION")


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_every_figure_has_a_source_comment(path):
    # A leaf "key: value" line with a number is cited by its own comment, or by the comment block just
    # above it (sibling value lines in between share that block), or, for the first leaf of a mapping,
    # by its header's comment or the block above the header, or by the inline citation of a sibling with the same figure. A citation names a source, a tag
    # ([V]/[S]/[R]/[D]) or says it is an assumption / UNVERIFIED / PROJECTION.
    # Structural keys (kind, name, units, chips) and values without a digit are exempt.
    lines = path.read_text(encoding="utf-8").splitlines()
    exempt = ("kind:", "units:", "name:", "chips:")

    def indent(text: str) -> int:
        return len(text) - len(text.lstrip())

    def cited(text: str) -> bool:
        return any(mark in text for mark in CITATION_MARKS)

    def block_above(j: int) -> list[str]:
        block = []
        while j >= 0 and lines[j].strip().startswith("#"):
            block.append(lines[j])
            j -= 1
        return block

    for i, line in enumerate(lines):
        body = line.split("#", 1)[0].strip()
        if not body or body.endswith(":") or body.startswith(exempt):
            continue
        if not any(ch.isdigit() for ch in body.split(":", 1)[-1]):
            continue
        if "#" in line and cited(line.split("#", 1)[1]):
            continue
        j = i - 1
        value = body.split(":", 1)[-1].strip()
        sibling_notes = []  # a sibling with the same figure shares its inline citation (fp16 / bf16 rates)
        while j >= 0 and not lines[j].strip().startswith("#") and indent(lines[j]) == indent(line) \
                and not lines[j].split("#", 1)[0].strip().endswith(":"):
            sibling, _, note = lines[j].partition("#")
            if sibling.split(":", 1)[-1].strip() == value:
                sibling_notes.append(note)
            j -= 1
        sources = block_above(j) + sibling_notes
        header = lines[j] if j >= 0 else ""
        if not any(cited(b) for b in sources) and header.split("#", 1)[0].strip().endswith(":") \
                and indent(header) < indent(line):
            sources += [header] + block_above(j - 1)
        assert any(cited(b) for b in sources), f"{path.name}:{i + 1}: figure without a source comment: {line.strip()}"


def test_h100_exact_values(h100):
    assert h100.memory["hbm"].bandwidth_bytes_per_s == 3.35e12
    assert h100.memory["hbm"].capacity_bytes == 80e9
    assert h100.memory["shared"].capacity_bytes == 228 * 1024 * 132  # per_unit x units
    assert h100.memory["registers"].capacity_bytes == 256 * 1024 * 132
    assert h100.engine_for("matrix").peak_flop_per_s["bf16"] == 989.4e12
    assert h100.engine_for("matrix").peak_flop_per_s["fp8"] == 1978.9e12
    assert h100.node.scale_up.bandwidth_bytes_per_s == 450e9  # 900 GB/s bidirectional / 2
    assert h100.node.scale_out.bandwidth_bytes_per_s == 400e9 / 8
    assert h100.kernel_launch_s == 4e-6
    assert h100.sm_count == 132 and h100.node.chips_per_node == 8


def test_h800_differs_from_h100_only_where_published(h100, h800):
    # DSV3-TR / ISCA25: H800 NVLink is 400 GB/s bidirectional (200 per direction) against 900 on H100
    assert h800.node.scale_up.bandwidth_bytes_per_s == 200e9
    assert h800.engine_for("matrix").peak_flop_per_s == h100.engine_for("matrix").peak_flop_per_s
    assert h800.memory["hbm"] == h100.memory["hbm"]
    assert h800.price_usd_per_hour == 2.0  # DSV3-TR: $2 per H800 GPU-hour


def test_h200_memory(h200):
    assert h200.memory["hbm"].capacity_bytes == 141e9
    assert h200.memory["hbm"].bandwidth_bytes_per_s == 4.8e12


# -- strictness: start from the real h100 file and break one thing at a time -------------------------

@pytest.fixture(scope="module")
def h100_data():
    return load_yaml(HARDWARE_DIR / "h100.yaml")


def broken(data, path: str, value=None, *, delete: bool = False):
    out = copy.deepcopy(data)
    *parents, last = path.split(".")
    node = out
    for key in parents:
        node = node[key]
    if delete:
        del node[last]
    else:
        node[last] = value
    return out


# (dotted field, new value or DELETE, fragment of the error message)
DELETE = object()
BAD = [
    ("memory.hbm.bandwith", "3 TB/s", "memory.hbm.bandwith: expected a known key; unknown key 'bandwith'; did you mean 'bandwidth'?"),
    ("memory.hbm.bandwidth", "3.35 TB", "memory.hbm.bandwidth: expected a bandwidth like '3.35 TB/s' (a size, not a bandwidth)"),
    ("memory.hbm.bandwidth", 3.35e12, "memory.hbm.bandwidth: expected a bandwidth"),
    ("memory.hbm.bandwidth", DELETE, "memory.hbm: expected key 'bandwidth'"),
    ("memory.hbm.achievable_fraction", 1.5, "memory.hbm.achievable_fraction: expected a fraction in (0, 1]"),
    ("memory.hbm.achievable_fraction", "89.6", "memory.hbm.achievable_fraction: expected a fraction"),
    ("compute.tensor.peak.bf61", "1 TFLOPS", "compute.tensor.peak.bf61: expected a dtype name"),
    ("compute.tensor.kind", "matrx", "compute.tensor.kind: expected one of 'matrix', 'vector'; did you mean 'matrix'?"),
    ("compute.tensor.kind", "vector", "compute: expected at least one engine with kind: matrix"),
    ("compute.tensor.peak", {}, "compute.tensor.peak: expected at least one dtype peak"),
    ("compute", {}, "compute: expected at least one compute engine"),
    ("memory", {}, "memory: expected at least one memory level"),
    ("memory", [1, 2], "memory: expected a mapping"),
    ("memory.shared.units", DELETE, "memory.shared: expected per_unit and units for a per-SM level"),
    ("memory.shared.capacity", "1 GB", "memory.shared.capacity: expected per_unit x units = 30818304 B"),
    ("memory.l2.capacity", "1 TB", "memory.l2: expected a capacity no larger than main memory 'hbm'"),
    ("memory.l2.capacity", DELETE, "memory.l2: expected key 'capacity'"),
    ("power.idle", "800 W", "power.idle: expected idle power no larger than tdp"),
    ("power.tdp", "0 W", "power.tdp: expected a positive power"),
    ("node.chips", 0, "node.chips: expected a positive integer"),
    ("node.scale_up.bandwidth", "-450 GB/s", "node.scale_up.bandwidth: expected a positive value"),
    ("node.scale_out", "400 Gb/s", "node.scale_out: expected a mapping"),
    ("sm_count", "132", "sm_count: expected an integer >= 1"),
    ("year", True, "year: expected an integer >= 1940"),
    ("price", 2.0, "price: expected a price like '$2.10/h'"),
    ("kernel_launch", "4", "kernel_launch: expected a time like '2.5 us'"),
    ("name", DELETE, "<root>: expected key 'name'"),
    ("colour", "green", "colour: expected a known key; unknown key 'colour'"),
]


@pytest.mark.parametrize("field,value,fragment", BAD, ids=[b[0] + ":" + str(b[2])[:30] for b in BAD])
def test_bad_field_names_file_and_path(h100_data, field, value, fragment):
    data = broken(h100_data, field, delete=value is DELETE) if value is DELETE else broken(h100_data, field, value)
    with pytest.raises(ConfigError) as info:
        hardware_from_dict(data, "h100.yaml")
    message = str(info.value)
    assert message.startswith("h100.yaml: "), message
    assert fragment in message, message
    assert "\n" not in message


def test_main_memory_must_be_chip_wide(h100_data):
    data = copy.deepcopy(h100_data)
    data["memory"] = {"hbm": data["memory"]["hbm"], "shared": data["memory"]["shared"]}
    with pytest.raises(ConfigError, match="memory.shared: expected the last level to be main memory"):
        hardware_from_dict(data, "h100.yaml")


def test_load_errors_name_the_file(tmp_path):
    bad = tmp_path / "chip.yaml"
    bad.write_text("name: x\nname: y\n")
    with pytest.raises(ConfigError, match=r"chip\.yaml: line 2: .*duplicate key 'name'"):
        load_hardware(bad)


def _mapping_paths(node, prefix=""):
    if isinstance(node, dict):
        yield prefix
        for key, value in node.items():
            yield from _mapping_paths(value, f"{prefix}.{key}" if prefix else key)


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_unknown_key_rejected_in_every_section(path):
    # strictness holds in every mapping of every shipped file, including sections added later
    data = load_yaml(path)
    for where in _mapping_paths(data):
        broken_data = copy.deepcopy(data)
        node = broken_data
        for part in where.split(".") if where else []:
            node = node[part]
        node["zz_unknown"] = 1
        with pytest.raises(ConfigError) as info:
            hardware_from_dict(broken_data, path.name)
        full = f"{where}.zz_unknown" if where else "zz_unknown"
        assert full in str(info.value), (where, str(info.value))


def test_active_baseline_is_optional_and_bounded(h100_data):
    """power.active_baseline (docs/energy.md): 0 W when absent; negative, or idle plus it above the TDP: an error
    naming the field."""
    data = copy.deepcopy(h100_data)
    data["power"].pop("active_baseline", None)
    hw = hardware_from_dict(data, "h100.yaml")
    assert hw.power.active_baseline_w == 0.0 and hw.busy_power_w == hw.static_power_w
    data["power"]["active_baseline"] = "25.1 W"
    hw = hardware_from_dict(data, "h100.yaml")
    assert hw.busy_power_w == pytest.approx(hw.power.idle_w + 25.1)
    for bad in ("-1 W", "650 W"):  # 80.3 + 650 > 700
        data["power"]["active_baseline"] = bad
        with pytest.raises(ConfigError, match="power.active_baseline: expected"):
            hardware_from_dict(data, "h100.yaml")
