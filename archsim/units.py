"""Parse and format physical quantities ("3.35 TB/s", "80 GiB", "1.2 pJ/bit", "$2.10/h") as SI floats.

Decimal prefixes (GB = 1e9) and binary prefixes (GiB = 2**30) are never converted into each other:
the prefix written is the factor applied. Every rejection is a ConfigError naming file and field.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from decimal import Decimal, localcontext

from archsim.dtypes import BITS_PER_BYTE
from archsim.errors import ConfigError

SECONDS_PER_HOUR = 3600  # for prices per hour and GPU-hours

_MICRO = ("u", "µ", "μ")  # ASCII u, U+00B5 micro sign, U+03BC Greek mu
# Exact decimal factors, so "3.35 TB/s" is the float nearest 3.35e12 and "2.5 us" the one nearest 2.5e-6.
SI_PREFIXES: dict[str, Decimal] = {
    "": Decimal(1), "p": Decimal("1e-12"), "n": Decimal("1e-9"), **{m: Decimal("1e-6") for m in _MICRO},
    "m": Decimal("1e-3"), "k": Decimal("1e3"), "M": Decimal("1e6"), "G": Decimal("1e9"),
    "T": Decimal("1e12"), "P": Decimal("1e15"), "E": Decimal("1e18"),
}
BINARY_PREFIXES: dict[str, Decimal] = {"Ki": Decimal(2**10), "Mi": Decimal(2**20), "Gi": Decimal(2**30),
                                       "Ti": Decimal(2**40), "Pi": Decimal(2**50)}

_LARGE = ("", "k", "M", "G", "T", "P", "E")
_SMALL = ("p", "n", *_MICRO, "m", "")
_ENERGY = ("p", "n", *_MICRO, "m", "", "k", "M")


@dataclass(frozen=True, kw_only=True)
class Dimension:
    """What a dimension accepts: unit symbols (factor per symbol), allowed prefixes, whether 0 is valid."""

    name: str
    noun: str  # used in messages: "expected a bandwidth like '3.35 TB/s'"
    example: str
    units: dict[str, Decimal]
    prefixes: tuple[str, ...]
    binary: bool = False
    allow_zero: bool = False


DIMENSIONS: dict[str, Dimension] = {d.name: d for d in (
    Dimension(name="bytes", noun="a size", example="80 GB", units={"B": Decimal(1)},
              prefixes=_LARGE, binary=True),
    Dimension(name="bytes_per_s", noun="a bandwidth", example="3.35 TB/s",
              units={"B/s": Decimal(1), "b/s": Decimal(1) / BITS_PER_BYTE}, prefixes=_LARGE, binary=True),
    Dimension(name="flop_per_s", noun="a compute rate", example="989.4 TFLOPS",
              units=dict.fromkeys(("FLOPS", "FLOP/s", "OPS", "OP/s"), Decimal(1)), prefixes=_LARGE),
    Dimension(name="time_s", noun="a time", example="2.5 us", units={"s": Decimal(1)},
              prefixes=_SMALL, allow_zero=True),
    Dimension(name="power_w", noun="a power", example="700 W", units={"W": Decimal(1)},
              prefixes=("m", "", "k", "M"), allow_zero=True),
    Dimension(name="energy_j_per_bit", noun="an energy per bit", example="1.2 pJ/bit",
              units=dict.fromkeys(("J/bit", "J/b"), Decimal(1)), prefixes=_ENERGY, allow_zero=True),
    Dimension(name="energy_j_per_flop", noun="an energy per FLOP", example="0.45 pJ/FLOP",
              units=dict.fromkeys(("J/FLOP", "J/flop", "J/op", "J/OP"), Decimal(1)), prefixes=_ENERGY,
              allow_zero=True),
    Dimension(name="energy_j", noun="an energy", example="3 nJ", units={"J": Decimal(1)},
              prefixes=_ENERGY, allow_zero=True),
    Dimension(name="usd_per_hour", noun="a price", example="$2.10/h",
              units={"USD/h": Decimal(1)}, prefixes=("",), allow_zero=True),
    Dimension(name="frequency_hz", noun="a frequency", example="1.83 GHz", units={"Hz": Decimal(1)},
              prefixes=_LARGE),
)}
# Dimensions that take plain numbers rather than "number unit" strings.
PLAIN_DIMENSIONS = ("fraction", "count")

_NUMBER = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?"
_QUANTITY = re.compile(rf"^\s*({_NUMBER})\s*(\S+)\s*$")
_PRICE = re.compile(rf"^\s*\$\s*({_NUMBER})\s*/\s*(h|hr|hour)\s*$")
_PRICE_USD = re.compile(rf"^\s*({_NUMBER})\s*USD\s*/\s*(h|hr|hour)\s*$")
_PERCENT = re.compile(rf"^\s*({_NUMBER})\s*%\s*$")


def parse_quantity(value: object, dimension: str, *, file: str | None = None,
                   path: str | None = None) -> float:
    """Return ``value`` (e.g. "3.35 TB/s") as an SI float of ``dimension``; raise ConfigError otherwise.

    ``dimension`` is a key of ``DIMENSIONS`` or one of ``fraction`` (number in (0, 1] or "78%")
    and ``count`` (positive int, returned as int).
    """
    if dimension == "fraction":
        return _parse_fraction(value, file, path)
    if dimension == "count":
        return _parse_count(value, file, path)
    if dimension not in DIMENSIONS:
        raise ValueError(f"unknown dimension {dimension!r}; known: {', '.join([*DIMENSIONS, *PLAIN_DIMENSIONS])}")
    dim = DIMENSIONS[dimension]
    want = f"{dim.noun} like '{dim.example}'"
    if not isinstance(value, str):
        raise ConfigError(file, path, want, value)
    number, factor = _split(value, dim)
    if number is None:
        other = _dimension_of(value)
        hint = f" ({other.noun}, not {dim.noun})" if other is not None else ""
        raise ConfigError(file, path, want + hint, value)
    return _check(_to_float(number, factor), dim, want, value, file, path)


def _to_float(number: Decimal, factor: Decimal) -> float:
    """number x factor rounded once to float; huge exponents give inf (rejected later), not an exception."""
    with localcontext() as ctx:
        ctx.traps = {trap: False for trap in ctx.traps}
        return float(number * factor)


def _split(text: str, dim: Dimension) -> tuple[Decimal | None, Decimal]:
    """(number, unit factor) if ``text`` is a quantity of ``dim``, else (None, 0)."""
    if dim.name == "usd_per_hour":
        match = _PRICE.match(text) or _PRICE_USD.match(text)
        return (Decimal(match.group(1)), Decimal(1)) if match else (None, Decimal(0))
    match = _QUANTITY.match(text)
    if not match:
        return None, Decimal(0)
    factor = _unit_factor(match.group(2), dim)
    return (Decimal(match.group(1)), factor) if factor is not None else (None, Decimal(0))


def _unit_factor(unit: str, dim: Dimension) -> Decimal | None:
    """Factor of a prefixed unit symbol such as "TB/s" or "GiB" in ``dim``, or None if not of ``dim``."""
    for symbol, base in dim.units.items():
        if not unit.endswith(symbol):
            continue
        prefix = unit[: len(unit) - len(symbol)]
        if prefix in dim.prefixes:
            return SI_PREFIXES[prefix] * base
        if dim.binary and prefix in BINARY_PREFIXES:
            return BINARY_PREFIXES[prefix] * base
    return None


def _dimension_of(text: str) -> Dimension | None:
    """The dimension whose units ``text`` uses, to say "a size, not a bandwidth" in messages."""
    for dim in DIMENSIONS.values():
        if _split(text, dim)[0] is not None:
            return dim
    return None


def _check(result: float, dim: Dimension, want: str, value: object, file: str | None,
           path: str | None) -> float:
    if not math.isfinite(result):
        raise ConfigError(file, path, f"a finite value: {want}", value)
    if result < 0 or (result == 0 and not dim.allow_zero):
        sign = "a non-negative" if dim.allow_zero else "a positive"
        raise ConfigError(file, path, f"{sign} value: {want}", value)
    return result


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _parse_fraction(value: object, file: str | None, path: str | None) -> float:
    want = "a fraction in (0, 1] like 0.78 or '78%'"
    if isinstance(value, str):
        match = _PERCENT.match(value)
        if not match:
            raise ConfigError(file, path, want, value)
        number = _to_float(Decimal(match.group(1)), Decimal("0.01"))
    elif _is_number(value):
        number = float(value)
    else:
        raise ConfigError(file, path, want, value)
    if not (math.isfinite(number) and 0 < number <= 1):
        raise ConfigError(file, path, want, value)
    return number


MAX_COUNT = 2**53  # largest integer a float holds exactly; larger counts are mistakes and break float maths


def _parse_count(value: object, file: str | None, path: str | None) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ConfigError(file, path, "a positive integer", value)
    if value > MAX_COUNT:
        raise ConfigError(file, path, f"a positive integer <= {MAX_COUNT}", value)
    return value


def format_quantity(value: float, dimension: str) -> str:
    """Human-readable text for an SI value, e.g. ``format_quantity(3.35e12, "bytes_per_s") == "3.35 TB/s"``.

    Uses decimal prefixes and 4 significant digits; ``parse_quantity`` reads the result back.
    """
    if dimension == "fraction":
        return f"{value * 100:.4g}%"
    if dimension == "count":
        return str(int(value))
    if dimension == "usd_per_hour":
        cents = f"{value:.2f}"
        return f"${cents if float(cents) == value else format(value, '.4g')}/h"
    dim = DIMENSIONS[dimension]
    symbol = next(iter(dim.units))
    prefix = _pick_prefix(value, dim.prefixes)
    return f"{value / float(SI_PREFIXES[prefix]):.4g} {prefix}{symbol}"


def _pick_prefix(value: float, allowed: tuple[str, ...]) -> str:
    """The largest allowed prefix that keeps the mantissa >= 1 (ASCII 'u' for micro)."""
    candidates = sorted({p for p in allowed if p not in _MICRO[1:]}, key=lambda p: SI_PREFIXES[p])
    magnitude = abs(value)
    best = candidates[0]
    for prefix in candidates:
        if magnitude >= float(SI_PREFIXES[prefix]) * (1 - 1e-12):
            best = prefix
    if magnitude == 0:
        best = ""
    return best
