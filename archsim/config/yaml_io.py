"""Strict YAML reading: safe loader without duplicate keys or aliases, and ``Section``, a typed view that
names file and dotted field path in every error and rejects keys nobody read."""
from __future__ import annotations

import copy
import difflib
import math
import os
import re
from typing import Any, Iterator, Mapping

import yaml

from archsim.errors import ConfigError
from archsim.units import MAX_COUNT, parse_quantity

MAX_FILE_BYTES = 2**20  # 1 MiB: hardware/model/scenario files are a few KiB; larger is a mistake or an attack
MAX_INT = MAX_COUNT  # largest integer a float holds exactly (archsim.units)
MAX_DEPTH = 64  # nesting levels; real files use fewer than 10, and PyYAML's composer recurses per level
# libyaml's C parser where PyYAML was built with it (yaml.CSafeLoader; ~15x faster than the pure-Python one, which
# is the fallback): the event pre-check and the composer run in C, only the constructors (Python) build values.
_C_LOADER = getattr(yaml, "CSafeLoader", None)
_EVENT_LOADER = _C_LOADER or yaml.SafeLoader


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


class _StrictMappings:
    """Constructor mix-in: a mapping with a duplicate key, a merge key (<<) or an unhashable key is an error."""

    def construct_mapping(self, node, deep=False):  # noqa: ANN001 - PyYAML API
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                raise yaml.constructor.ConstructorError(
                    None, None, "merge keys (<<) are not allowed", key_node.start_mark)
            key = self.construct_object(key_node, deep=True)
            try:
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key!r} (first on line {seen[key]})", key_node.start_mark)
            except TypeError:
                raise yaml.constructor.ConstructorError(
                    None, None, f"unhashable key {key!r}", key_node.start_mark) from None
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


class StrictLoader(_StrictMappings, yaml.SafeLoader):
    """SafeLoader that rejects anchors/aliases (alias bombs, hidden sharing) and duplicate mapping keys (the
    pure-Python loader, used where PyYAML has no libyaml; anchors are also refused by ``_check_events``)."""

    def compose_node(self, parent, index):  # noqa: ANN001 - PyYAML API
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise _anchor_error(event)
        return super().compose_node(parent, index)


# libyaml's composer is C code that cannot be overridden: anchors and aliases are refused from the event stream
# (``_check_events``) before it runs, so the C loader only needs the strict mappings
_STRICT_LOADER = type("StrictCLoader", (_StrictMappings, _C_LOADER), {}) if _C_LOADER else StrictLoader


def _anchor_error(event) -> yaml.constructor.ConstructorError:  # noqa: ANN001 - PyYAML event
    return yaml.constructor.ConstructorError(
        None, None, "anchors and aliases (&name / *name) are not allowed", event.start_mark)


# parsed files by (real path, modification time, size): a planning tool that calls estimate() with paths in a loop
# parses each file once (parsing is ~10 ms per hardware YAML, building its record well under 1 ms); a copy is
# returned, so a caller that edits the mapping (sweep overrides) never changes the cached one
_PARSED: dict[tuple[str, int, int], dict] = {}
_PARSED_MAX = 256


def load_yaml(path: str | os.PathLike) -> dict:
    """Read a YAML file whose top level is a mapping; every problem is a ConfigError naming the file. A file
    already parsed and unchanged since (same modification time and size) is not parsed again."""
    file = os.fspath(path)
    try:
        st = os.stat(file)
        key = (os.path.realpath(file), st.st_mtime_ns, st.st_size)
    except OSError:
        key = None  # read_capped_bytes reports the problem
    if key is not None and key in _PARSED:
        return copy.deepcopy(_PARSED[key])
    parsed = _load_yaml_uncached(file)
    if key is not None:
        if len(_PARSED) >= _PARSED_MAX:
            _PARSED.clear()
        _PARSED[key] = copy.deepcopy(parsed)
    return parsed


def _load_yaml_uncached(file: str) -> dict:
    data = read_capped_bytes(file)
    if b"\x00" in data:
        raise ConfigError(file, None, "a UTF-8 YAML text file", "binary data (NUL bytes)")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(file, f"byte {err.start}", "a UTF-8 YAML text file", "invalid UTF-8") from None
    return parse_yaml_text(text, file)


def parse_yaml_text(text: str, file: str = "<input>") -> dict:
    """Parse YAML ``text`` (already read) strictly; ``file`` is used in messages."""
    try:
        _check_events(text, file)
        loaded = yaml.load(text, Loader=_STRICT_LOADER)  # noqa: S506 - a SafeLoader (C or Python) made stricter
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f"line {mark.line + 1}" if mark is not None else None
        problem = " ".join(str(err.problem or err.context or "invalid YAML").split())
        if "nesting depth" in problem:  # PyYAML >= 6.0.3 has its own depth limit; same message as ours
            raise ConfigError(file, where, f"YAML nested at most {MAX_DEPTH} levels deep", "deeper nesting") from None
        raise ConfigError(file, where, "valid YAML", problem) from None
    except yaml.YAMLError as err:
        raise ConfigError(file, None, "valid YAML", " ".join(str(err).split())) from None
    except RecursionError:  # not reached after _check_events; kept so no RecursionError can escape
        raise ConfigError(file, None, f"YAML nested at most {MAX_DEPTH} levels deep", "deeper nesting") from None
    if loaded is None:
        raise ConfigError(file, None, "a YAML mapping (key: value lines)", "an empty file")
    if not isinstance(loaded, dict):
        raise ConfigError(file, None, "a YAML mapping (key: value lines) at the top level", type(loaded).__name__)
    return loaded


def _check_events(text: str, file: str) -> None:
    """Reject deep nesting, anchors and aliases from the (iterative) event stream before the (recursive) composer
    sees them (an alias bomb is refused at its first anchor, before anything is expanded)."""
    depth = 0
    for event in yaml.parse(text, Loader=_EVENT_LOADER):
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise _anchor_error(event)
        if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            depth += 1
            if depth > MAX_DEPTH:
                raise ConfigError(file, f"line {event.start_mark.line + 1}",
                                  f"YAML nested at most {MAX_DEPTH} levels deep", "deeper nesting")
        elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            depth -= 1


def read_capped_bytes(file: str, kind: str = "YAML file") -> bytes:
    """The bytes of ``file`` (a ``kind`` such as "YAML file" or "JSON file"), at most MAX_FILE_BYTES; a
    directory, a missing, unreadable or larger file is a one-line ConfigError."""
    try:
        if os.path.isdir(file):
            raise ConfigError(file, None, f"a {kind}", "a directory")
        size = os.path.getsize(file)
        if size > MAX_FILE_BYTES:
            raise ConfigError(file, None, f"a file of at most {MAX_FILE_BYTES} bytes", f"{size} bytes")
        with open(file, "rb") as handle:
            return handle.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(file, None, "an existing file", "no such file") from None
    except OSError as err:
        raise ConfigError(file, None, "a readable file", err.strerror or type(err).__name__) from None


_PLAIN_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")


class Section:
    """A strict, typed view of one YAML mapping.

    Every accessor marks its key as read; ``finish()`` raises for any key never read (with a
    "did you mean" hint), recursing into child sections. Errors name ``file`` and the dotted path.
    """

    def __init__(self, data: object, file: str | None, path: str = ""):
        self.file = file or "<input>"
        self.path = path
        if not isinstance(data, Mapping):
            raise ConfigError(self.file, path or None, "a mapping (key: value)", _kind(data))
        for key in data:
            if not isinstance(key, str):
                raise ConfigError(self.file, self.child_path(str(key)), "a text key", key)
        self._data = data
        self._read: set[str] = set()
        self._asked: set[str] = set()
        self._children: list[Section] = []

    # -- paths and presence -------------------------------------------------
    def child_path(self, key: str) -> str:
        """Dotted path of ``key`` inside this section, e.g. ``memory.hbm.bandwidth``."""
        return f"{self.path}.{key}" if self.path else key

    def keys(self) -> list[str]:
        """Keys present in the mapping, in file order (does not mark them read)."""
        return list(self._data)

    def has(self, key: str) -> bool:
        """True if ``key`` is present (does not mark it read)."""
        self._asked.add(key)
        return key in self._data

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def _get(self, key: str, default: Any) -> tuple[bool, Any]:
        """(present, value); marks ``key`` read; raises if absent and required."""
        self._asked.add(key)
        if key in self._data:
            self._read.add(key)
            return True, self._data[key]
        if default is MISSING:
            raise ConfigError(self.file, self.path or None, f"key '{key}'", None)
        return False, default

    def _error(self, key: str, expected: str, got: object) -> ConfigError:
        return ConfigError(self.file, self.child_path(key), expected, got)

    # -- typed accessors ----------------------------------------------------
    def raw(self, key: str, default: Any = MISSING) -> Any:
        """The value as loaded, unchecked."""
        return self._get(key, default)[1]

    def quantity(self, key: str, dimension: str, default: Any = MISSING) -> Any:
        """A unit-checked quantity as an SI float (see ``archsim.units.parse_quantity``)."""
        present, value = self._get(key, default)
        if not present:
            return value
        return parse_quantity(value, dimension, file=self.file, path=self.child_path(key))

    def int(self, key: str, *, minimum: int | None = None, maximum: int = MAX_INT, default: Any = MISSING) -> Any:
        """An integer (not a bool, not a float) within [minimum, maximum] (maximum defaults to 2**53)."""
        present, value = self._get(key, default)
        if not present:
            return value
        bound = "" if minimum is None else f" >= {minimum}"
        if not isinstance(value, int) or isinstance(value, bool) or (minimum is not None and value < minimum):
            raise self._error(key, f"an integer{bound}", value)
        if value > maximum:
            raise self._error(key, f"an integer{bound} and <= {maximum}", value)
        return value

    def number(self, key: str, *, minimum: float | None = None, maximum: float | None = None,
               default: Any = MISSING) -> Any:
        """A finite number (int or float, not bool) within [minimum, maximum]; returned as float."""
        present, value = self._get(key, default)
        if not present:
            return value
        lo = "" if minimum is None else f" >= {minimum:g}"
        hi = "" if maximum is None else f" <= {maximum:g}"
        want = f"a finite number{lo}{' and' if lo and hi else ''}{hi}"
        if isinstance(value, str) and _PLAIN_NUMBER.match(value.strip()):
            raise self._error(key, f"{want} (write e.g. 1.0e9: YAML reads 1e9 as text)", value)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            raise self._error(key, want, value)
        if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
            raise self._error(key, want, value)
        return float(value)

    def str(self, key: str, *, choices: tuple[str, ...] | list[str] | None = None,
            default: Any = MISSING) -> Any:
        """A non-empty string, optionally one of ``choices`` (with a "did you mean" hint)."""
        present, value = self._get(key, default)
        if not present:
            return value
        if not isinstance(value, str) or not value.strip():
            raise self._error(key, "a non-empty string", value)
        if choices is not None and value not in choices:
            raise self._error(key, f"one of {', '.join(map(repr, choices))}{did_you_mean(value, choices)}", value)
        return value

    def bool(self, key: str, default: Any = MISSING) -> Any:
        """true or false."""
        present, value = self._get(key, default)
        if present and not isinstance(value, bool):
            raise self._error(key, "true or false", value)
        return value

    def list(self, key: str, default: Any = MISSING) -> Any:
        """A YAML sequence as a Python list (items unchecked; see ``item_path`` for messages)."""
        present, value = self._get(key, default)
        if present and not isinstance(value, list):
            raise self._error(key, "a list", _kind(value))
        return value

    def item_path(self, key: str, index: int) -> str:
        """Path of list item ``index`` under ``key``, e.g. ``layers[3]``."""
        return f"{self.child_path(key)}[{index}]"

    def section_list(self, key: str, default: Any = MISSING) -> Any:
        """A list of mappings as Sections with paths ``key[i]`` (finished with this section)."""
        present, items = self._get(key, default)
        if not present:
            return items
        if not isinstance(items, list):
            raise self._error(key, "a list of mappings", _kind(items))
        sections = [Section(item, self.file, self.item_path(key, i)) for i, item in enumerate(items)]
        self._children.extend(sections)
        return sections

    def section(self, key: str, default: Any = MISSING) -> Any:
        """A nested mapping as a Section (finished with this section). A mapping ``default`` is wrapped."""
        present, value = self._get(key, default)
        if not present and not isinstance(value, Mapping):
            return value
        child = Section(value, self.file, self.child_path(key))
        self._children.append(child)
        return child

    def optional_section(self, key: str) -> Section | None:
        """The nested Section, or None if ``key`` is absent."""
        return self.section(key, default=None)

    # -- closing --------------------------------------------------------------
    def finish(self) -> None:
        """Raise ConfigError for the first key never read (here or in child sections)."""
        unknown = [key for key in self._data if key not in self._read]
        if unknown:
            key = unknown[0]
            known = sorted(self._asked - set(unknown))
            more = f" (and {len(unknown) - 1} more: {', '.join(unknown[1:])})" if len(unknown) > 1 else ""
            hint = did_you_mean(key, known) or (f"; known keys: {', '.join(known)}" if known else "")
            raise ConfigError(self.file, self.child_path(key),
                              f"a known key; unknown key '{key}'{hint}{more}", None)
        for child in self._children:
            child.finish()


def did_you_mean(word: str, candidates) -> str:  # noqa: ANN001
    """"; did you mean 'X'?" for the closest of ``candidates``, or "" when none is close."""
    close = difflib.get_close_matches(word, list(candidates), n=1)
    return f"; did you mean '{close[0]}'?" if close else ""


def _kind(value: object) -> object:
    """A short description of a wrong-typed value for messages."""
    if isinstance(value, (list, dict)):
        return f"a {type(value).__name__} {value!r}" if len(repr(value)) < 40 else f"a {type(value).__name__}"
    return value
