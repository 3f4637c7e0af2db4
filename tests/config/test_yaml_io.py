"""yaml_io: strict loading (duplicates, aliases, empty, binary, size) and Section's typed, path-naming accessors."""
import pytest

from archsim.config.yaml_io import MAX_FILE_BYTES, Section, load_yaml, parse_yaml_text
from archsim.errors import ConfigError


def write(tmp_path, text: str | bytes, name: str = "in.yaml") -> str:
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return str(path)


def test_load_plain_mapping(tmp_path):
    file = write(tmp_path, "a: 1\nb: {c: 2.5 us}\nlist: [1, 2]\n")
    assert load_yaml(file) == {"a": 1, "b": {"c": "2.5 us"}, "list": [1, 2]}


# (file text, fragment of the message)
BAD_FILES = [
    ("a: 1\nb: 2\na: 3\n", "line 3: expected valid YAML, got \"duplicate key 'a' (first on line 1)\""),
    ("top:\n  x: 1\n  x: 2\n", "duplicate key 'x'"),
    ("a: &anchor {b: 1}\nc: *anchor\n", "anchors and aliases"),
    ("a: [1, 2\n", "expected valid YAML"),
    ("a: 1\n  b: 2\n", "expected valid YAML"),
    ("base: {x: 1}\nd:\n  <<: {x: 1}\n", "merge keys"),
    ("", "an empty file"),
    ("# only a comment\n", "an empty file"),
    ("- 1\n- 2\n", "at the top level, got 'list'"),
    ("just text\n", "at the top level, got 'str'"),
    ("? [a, b]\n: 1\n", "unhashable key"),
    ("a: " + "[" * 3000 + "\n", "nested at most 64 levels"),
]


@pytest.mark.parametrize("text,fragment", BAD_FILES)
def test_bad_files(tmp_path, text, fragment):
    file = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_yaml(file)
    message = str(info.value)
    assert message.startswith(file + ": ")
    assert fragment in message
    assert "\n" not in message


def test_alias_bomb_is_rejected_quickly(tmp_path):
    # the "billion laughs" shape: each level refers to the previous one ten times
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 10)]
    with pytest.raises(ConfigError, match="anchors and aliases"):
        load_yaml(write(tmp_path, "\n".join(lines)))


def test_binary_garbage(tmp_path):
    with pytest.raises(ConfigError, match="binary data"):
        load_yaml(write(tmp_path, b"\x7fELF\x02\x01\x01\x00\x00\x00"))


def test_invalid_utf8(tmp_path):
    with pytest.raises(ConfigError, match="invalid UTF-8"):
        load_yaml(write(tmp_path, b"name: caf\xe9\n"))


def test_too_large(tmp_path):
    text = "a: 1\n" + "#" * MAX_FILE_BYTES
    with pytest.raises(ConfigError, match="at most 1048576 bytes"):
        load_yaml(write(tmp_path, text))


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        load_yaml(str(tmp_path / "absent.yaml"))
    with pytest.raises(ConfigError, match="a directory"):
        load_yaml(str(tmp_path))


def test_parse_text_names_given_file():
    with pytest.raises(ConfigError, match="^cli-arg: "):
        parse_yaml_text("[", "cli-arg")


# -- Section -----------------------------------------------------------------------------------

def hbm(**extra) -> Section:
    data = {"capacity": "80 GB", "bandwidth": "3.35 TB/s", "units": 132, "fraction": 0.9, "name": "HBM3",
            "on": True, "levels": [1, 2], "nested": {"x": 1}, **extra}
    return Section(data, "chip.yaml", "memory.hbm")


def test_section_reads_and_finishes():
    sec = hbm()
    assert sec.quantity("capacity", "bytes") == 80e9
    assert sec.quantity("bandwidth", "bytes_per_s") == 3.35e12
    assert sec.int("units", minimum=1) == 132
    assert sec.number("fraction", minimum=0, maximum=1) == 0.9
    assert sec.str("name") == "HBM3"
    assert sec.bool("on") is True
    assert sec.list("levels") == [1, 2]
    nested = sec.section("nested")
    assert nested.path == "memory.hbm.nested"
    assert nested.int("x") == 1
    assert sec.keys()[:2] == ["capacity", "bandwidth"]
    assert sec.has("units") and not sec.has("absent")
    sec.finish()  # everything read: no error


def test_defaults_do_not_require_key():
    sec = Section({}, "f.yaml")
    assert sec.quantity("latency", "time_s", default=0.0) == 0.0
    assert sec.int("n", default=3) == 3
    assert sec.optional_section("power") is None
    assert sec.section("power", default={}).path == "power"
    assert sec.section_list("layers", default=[]) == []
    sec.finish()


def test_missing_required_key():
    with pytest.raises(ConfigError) as info:
        Section({"capacity": "80 GB"}, "chip.yaml", "memory.hbm").quantity("bandwidth", "bytes_per_s")
    assert str(info.value) == "chip.yaml: memory.hbm: expected key 'bandwidth'"


def test_unknown_key_did_you_mean():
    sec = Section({"bandwith": "3 TB/s", "capacity": "80 GB"}, "chip.yaml", "memory.hbm")
    sec.quantity("capacity", "bytes")
    sec.quantity("bandwidth", "bytes_per_s", default=None)
    with pytest.raises(ConfigError) as info:
        sec.finish()
    message = str(info.value)
    assert message.startswith("chip.yaml: memory.hbm.bandwith: ")
    assert "unknown key 'bandwith'; did you mean 'bandwidth'?" in message


def test_unknown_key_in_child_found_by_parent_finish():
    root = Section({"memory": {"hbm": {"capacity": "80 GB", "colour": "red"}}}, "chip.yaml")
    root.section("memory").section("hbm").quantity("capacity", "bytes")
    with pytest.raises(ConfigError, match=r"memory\.hbm\.colour: expected a known key; unknown key 'colour'"):
        root.finish()


def test_unknown_keys_all_listed():
    sec = Section({"a": 1, "zz": 2, "yy": 3}, "f.yaml")
    sec.int("a")
    with pytest.raises(ConfigError, match=r"unknown key 'zz'.*and 1 more: yy"):
        sec.finish()


# (accessor call, fragment) -- wrong types each give a ConfigError naming the dotted path
WRONG_TYPES = [
    (lambda s: s.int("bandwidth"), "memory.hbm.bandwidth: expected an integer"),
    (lambda s: s.int("units", minimum=200), "expected an integer >= 200, got 132"),
    (lambda s: s.int("on"), "expected an integer, got True"),
    (lambda s: s.int("huge"), "expected an integer and <= 9007199254740992"),
    (lambda s: s.number("name"), "expected a finite number"),
    (lambda s: s.number("fraction", maximum=0.5), "<= 0.5, got 0.9"),
    (lambda s: s.number("big"), "YAML reads 1e9 as text"),
    (lambda s: s.number("nan"), "expected a finite number"),
    (lambda s: s.str("units"), "expected a non-empty string, got 132"),
    (lambda s: s.str("name", choices=("HBM2", "HBM3e")), "one of 'HBM2', 'HBM3e'; did you mean 'HBM3e'?"),
    (lambda s: s.bool("units"), "expected true or false"),
    (lambda s: s.list("nested"), "memory.hbm.nested: expected a list"),
    (lambda s: s.section("levels"), "memory.hbm.levels: expected a mapping"),
    (lambda s: s.section("units"), "memory.hbm.units: expected a mapping"),
    (lambda s: s.section_list("levels"), r"memory.hbm.levels[0]: expected a mapping"),
    (lambda s: s.quantity("capacity", "bytes_per_s"), "a size, not a bandwidth"),
]


@pytest.mark.parametrize("call,fragment", WRONG_TYPES)
def test_wrong_types(call, fragment):
    sec = hbm(big="1e9", nan=float("nan"), huge=10**400)
    with pytest.raises(ConfigError) as info:
        call(sec)
    message = str(info.value)
    assert message.startswith("chip.yaml: memory.hbm")
    assert fragment in message


def test_section_list_paths():
    root = Section({"layers": [{"n": 1}, {"n": "x"}]}, "m.yaml")
    first, second = root.section_list("layers")
    assert first.int("n") == 1
    with pytest.raises(ConfigError, match=r"^m\.yaml: layers\[1\]\.n: expected an integer"):
        second.int("n")


def test_non_mapping_and_non_text_keys():
    with pytest.raises(ConfigError, match="f.yaml: a.b: expected a mapping"):
        Section([1, 2], "f.yaml", "a.b")
    with pytest.raises(ConfigError, match="expected a text key"):
        Section({1: "x"}, "f.yaml")


def test_a_file_is_parsed_once_until_it_changes(tmp_path, monkeypatch):
    import os

    from archsim.config import yaml_io

    path = tmp_path / "a.yaml"
    path.write_text("x: 1\n")
    calls = []
    real = yaml_io._load_yaml_uncached
    monkeypatch.setattr(yaml_io, "_load_yaml_uncached", lambda f: calls.append(f) or real(f))
    first = yaml_io.load_yaml(path)
    first["x"] = 99  # a caller editing its copy does not change the cached mapping
    assert yaml_io.load_yaml(path) == {"x": 1} and len(calls) == 1
    path.write_text("x: 22\n")  # a different size, and a later modification time
    os.utime(path, ns=(os.stat(path).st_atime_ns, os.stat(path).st_mtime_ns + 10**9))
    assert yaml_io.load_yaml(path) == {"x": 22} and len(calls) == 2


@pytest.fixture
def pure_python_loader(monkeypatch):
    """yaml_io as on a PyYAML built without libyaml: the pure-Python strict loader and event parser."""
    import yaml

    from archsim.config import yaml_io

    monkeypatch.setattr(yaml_io, "_STRICT_LOADER", yaml_io.StrictLoader)
    monkeypatch.setattr(yaml_io, "_EVENT_LOADER", yaml.SafeLoader)


@pytest.mark.parametrize("text,fragment", BAD_FILES)
def test_bad_files_without_libyaml(tmp_path, pure_python_loader, text, fragment):
    """The pure-Python fallback refuses the same files with the same messages as the C loader."""
    test_bad_files(tmp_path, text, fragment)


def test_alias_bomb_is_rejected_without_libyaml(tmp_path, pure_python_loader):
    test_alias_bomb_is_rejected_quickly(tmp_path)


def test_the_c_loader_is_used_where_pyyaml_has_libyaml():
    import yaml

    from archsim.config import yaml_io

    if not getattr(yaml, "__with_libyaml__", False):
        pytest.skip("PyYAML built without libyaml: the pure-Python loader is the only one")
    assert issubclass(yaml_io._STRICT_LOADER, yaml.CSafeLoader) and yaml_io._EVENT_LOADER is yaml.CSafeLoader


def test_shipped_files_read_the_same_with_both_loaders(monkeypatch):
    """Every shipped hardware, workload, stack and validation YAML: the C loader's mapping equals the Python one's."""
    import glob
    import os

    import yaml

    from archsim.config import yaml_io

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    files = sorted(glob.glob(os.path.join(root, "*", "*.yaml")))
    files = [f for f in files if os.path.basename(os.path.dirname(f)) in
             ("hardware", "workloads", "stacks", "validation", "deployments")]
    assert len(files) >= 20
    fast = {f: yaml_io._load_yaml_uncached(f) for f in files}
    monkeypatch.setattr(yaml_io, "_STRICT_LOADER", yaml_io.StrictLoader)
    monkeypatch.setattr(yaml_io, "_EVENT_LOADER", yaml.SafeLoader)
    assert {f: yaml_io._load_yaml_uncached(f) for f in files} == fast
