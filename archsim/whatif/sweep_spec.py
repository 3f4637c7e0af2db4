"""Sweep axes and sampling: ``--set PATH=SPEC`` strings -> axes -> points (grid, random, Latin hypercube).

SPEC forms (values carry units, as in the hardware YAML):
- ``a..b:n``     n values evenly spaced from a to b (``a..b:n:log`` spaces them geometrically);
- ``a..b``       a range, for random and Latin-hypercube sampling;
- ``v1,v2,v3``   a list; ``v`` a single value.
PATH is a hardware YAML path (``memory.hbm.bandwidth``, ``compute.tensor.peak.fp8``, ``power.idle``...);
its unit dimension comes from the last path component.

PATH may also be a model field (``model.n_routed_experts``, Hugging Face names) or a scenario field
(``scenario.batch``), as ``--set`` takes them on the other commands (config/overrides.py). Such a field changes the
graph, so its values are not array columns: each value (each combination, over several such fields) is a model
point whose workload is rebuilt by the strict loaders and whose deployment is resolved and priced again
(``model_points``); the hardware axes are then swept at every model point. Model points are always a grid:
``a..b:n`` (whole numbers when the ends are: ``64..256:4`` is 64, 128, 192, 256; ``:log`` spaces them
geometrically) or a list ``2,4,8``. A hardware field that is not an array field (links, SRAM sizes, SM count:
``whatif.sweep.array_path``) is swept the same way, each value rebuilding the chip from its YAML.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from archsim.errors import ConfigError
from archsim.serving.requests import check_seed
from archsim.units import DIMENSIONS, parse_quantity

SAMPLERS = ("grid", "random", "lhs")
# Most points one sweep may price (a policy, see docs/limits.md): 100x the 10,000-point benchmark
# (benchmarks/bench_sweep.py: 1.6 s in one process, docs/whatif.md), so about 3 minutes in one process;
# a larger sweep is an error up front instead of an hours-long run.
MAX_POINTS = 10**6

# Most model points (graph rebuilds) one sweep may price (a policy, see docs/limits.md): each rebuilds and re-prices
# the deployment (DeepSeek-V3 on 16 H100s: 16 points in 0.28 s in one process, ~18 ms each, measured on this
# project's 2-core machine), so 10,000 take about 3 minutes, as MAX_POINTS hardware points do.
MAX_MODEL_POINTS = 10**4
MODEL_SECTIONS = ("model", "scenario")

# last path component (or the component before a dtype) -> unit dimension
FIELD_DIMENSIONS = {
    "bandwidth": "bytes_per_s", "internal_bandwidth": "bytes_per_s", "capacity": "bytes", "latency": "time_s",
    "energy_per_bit": "energy_j_per_bit", "internal_energy_per_bit": "energy_j_per_bit", "power_limit": "power_w",
    "achievable_fraction": "fraction",
    "peak": "flop_per_s", "energy_per_flop": "energy_j_per_flop", "kernel_launch": "time_s", "kernel_launch_graph": "time_s", "idle": "power_w",
    "tdp": "power_w", "price": "usd_per_hour", "compute_clock_fraction": "fraction",
}


def dimension_of(path: str) -> str:
    """Unit dimension of a hardware path (ConfigError for a path with no known field)."""
    parts = path.split(".")
    for part in (parts[-1], parts[-2] if len(parts) > 1 else ""):
        if part in FIELD_DIMENSIONS:
            return FIELD_DIMENSIONS[part]
    raise ConfigError(None, f"--set {path}", f"a hardware field path ending in one of {', '.join(FIELD_DIMENSIONS)}",
                      path)


@dataclass(frozen=True, kw_only=True)
class Axis:
    """One swept field: either explicit ``values`` or a ``low..high`` range (with ``count`` for grids)."""

    path: str
    values: tuple[float, ...] = ()
    low: float | None = None
    high: float | None = None
    count: int | None = None
    log: bool = False

    def grid_values(self) -> np.ndarray:
        if self.values:
            return np.asarray(self.values, float)
        if self.count is None:
            raise ConfigError(None, f"--set {self.path}", "a grid spec 'a..b:n' (or a list) for --sample grid",
                              f"{self.low}..{self.high}")
        if self.log:
            return np.geomspace(self.low, self.high, self.count)
        return np.linspace(self.low, self.high, self.count)

    def from_unit(self, u: np.ndarray) -> np.ndarray:
        """Map uniform [0, 1) samples onto this axis (a list axis picks items)."""
        if self.values:
            idx = np.minimum((u * len(self.values)).astype(int), len(self.values) - 1)
            return np.asarray(self.values, float)[idx]
        if self.log:
            return np.exp(np.log(self.low) + u * (np.log(self.high) - np.log(self.low)))
        return self.low + u * (self.high - self.low)


def parse_set(text: str) -> Axis:
    """Parse one ``PATH=SPEC`` (see the module docstring)."""
    if "=" not in text:
        raise ConfigError(None, "--set", "PATH=SPEC, e.g. memory.hbm.bandwidth=2TB/s..20TB/s:10", text)
    path, spec = (s.strip() for s in text.split("=", 1))
    dim = dimension_of(path)
    where = f"--set {path}"
    value = lambda s: parse_quantity(_number_or_text(s.strip(), dim), dim, path=where)
    if ".." in spec:
        lo_text, rest = spec.split("..", 1)
        parts = rest.split(":")
        hi_text, count, log = parts[0], None, False
        if len(parts) >= 2:
            count = _grid_count(parts[1], where)
        if len(parts) == 3:
            if parts[2] != "log":
                raise ConfigError(None, where, "':log' or nothing after the point count", parts[2])
            log = True
        if len(parts) > 3:
            raise ConfigError(None, where, "a..b, a..b:n or a..b:n:log", spec)
        low, high = value(lo_text), value(hi_text)
        if log and (low <= 0 or high <= 0):
            raise ConfigError(None, where, "positive ends for a log grid", spec)
        return Axis(path=path, low=low, high=high, count=count, log=log)
    items = [s for s in spec.split(",") if s.strip()]
    if not items:
        raise ConfigError(None, where, "a value, a list or a range", spec)
    return Axis(path=path, values=tuple(value(s) for s in items))


def _check_points(n: int, field: str, what: str) -> None:
    if n > MAX_POINTS:
        raise ConfigError(None, field, f"at most {MAX_POINTS:,} {what} (archsim's sweep limit, see docs/limits.md)",
                          f"{n:,}")


def _number_or_text(text: str, dim: str):
    """Fractions may be written as plain numbers ("0.8"); everything else keeps its unit text."""
    if dim == "fraction":
        try:
            return float(text)
        except ValueError:
            return text
    return text


def sample(axes: list[Axis], *, sampler: str = "grid", points: int | None = None,
           seed: int = 0) -> dict[str, np.ndarray]:
    """Column per axis path: the cartesian grid, or ``points`` random / Latin-hypercube samples."""
    if sampler not in SAMPLERS:
        raise ConfigError(None, "--sample", f"one of {', '.join(SAMPLERS)}", sampler)
    if not axes:
        return {}
    if sampler == "grid":
        total = 1
        for a in axes:
            total *= len(a.values) if a.values else (a.count or 1)
        _check_points(total, "--set", "grid points over all axes")
        grids = [a.grid_values() for a in axes]
        # every combination, the last axis varying fastest (itertools.product order)
        mesh = np.meshgrid(*grids, indexing="ij")
        return {a.path: m.ravel() for a, m in zip(axes, mesh)}
    if not points or points < 1:
        raise ConfigError(None, "--points", f"a positive number of samples for --sample {sampler}", points)
    _check_points(points, "--points", "samples")
    rng = np.random.default_rng(check_seed(seed, "--seed"))
    if sampler == "random":
        u = rng.random((points, len(axes)))
    else:  # Latin hypercube: one sample per stratum on every axis, strata paired by random permutations
        u = (np.stack([rng.permutation(points) for _ in axes], axis=1) + rng.random((points, len(axes)))) / points
    return {a.path: a.from_unit(u[:, i]) for i, a in enumerate(axes)}


def is_model_path(text: str) -> bool:
    """Whether a ``--set PATH=SPEC`` (or a bare PATH) names a model or scenario field rather than a hardware field."""
    return text.split("=", 1)[0].strip().split(".", 1)[0] in MODEL_SECTIONS


@dataclass(frozen=True, kw_only=True)
class ModelAxis:
    """One swept field whose every value rebuilds the inputs (a model or scenario field, or a hardware field that
    is not an array field: ``whatif.sweep.array_path``): its values as ``--set`` text (each one read as YAML,
    checked by the loaders when applied) and as the numbers or words the output rows show."""

    path: str
    texts: tuple[str, ...]

    @property
    def values(self) -> tuple:
        """The values as rows show them: YAML-read (128, 1e-06, true), a hardware quantity in SI units (4.5e11)."""
        from archsim.config.overrides import Setting

        raw = tuple(Setting(path=self.path, text=t).value for t in self.texts)
        if is_model_path(self.path):
            return raw
        try:
            dim = dimension_of(self.path)
        except ConfigError:  # a field with no unit dimension (a count, a name): as written
            return raw
        return tuple(parse_quantity(v, dim, path=f"--set {self.path}") if isinstance(v, str) or dim == "fraction"
                     else v for v in raw)


def parse_model_set(text: str) -> ModelAxis:
    """Parse one ``PATH=SPEC`` of a field that rebuilds the inputs: ``a..b:n`` (``:log``; a hardware field's ends
    may carry units, ``100GB/s..900GB/s:3``) or a list ``v1,v2`` (see the module docstring); a range without a
    point count is an error (model points are not sampled at random)."""
    from archsim.config.overrides import parse_setting

    setting = parse_setting(text)
    path, spec = setting.path, setting.text
    where = f"--set {path}"
    if ".." not in spec:
        if spec.startswith("["):  # one list value (scenario.mtp_acceptance=[0.9,0.7]), not a list of values
            return ModelAxis(path=path, texts=(spec,))
        items = tuple(s.strip() for s in spec.split(",") if s.strip())
        if not items:
            raise ConfigError(None, where, "a value, a list v1,v2 or a grid a..b:n", spec)
        return ModelAxis(path=path, texts=items)
    lo_text, rest = spec.split("..", 1)
    parts = rest.split(":")
    expected = "a grid a..b:n or a..b:n:log (model and scenario fields rebuild the graph at each value, so they " \
               "are swept as a grid, not sampled), or a list v1,v2"
    if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] != "log"):
        raise ConfigError(None, where, expected, spec)
    count = _grid_count(parts[1], where)
    low, high, unit = _grid_ends(path, lo_text, parts[0], where)
    log = len(parts) == 3
    if log and (low <= 0 or high <= 0):
        raise ConfigError(None, where, "positive ends for a log grid", spec)
    points = np.geomspace(low, high, count) if log else np.linspace(low, high, count)
    if unit is not None:  # a hardware quantity: SI values written with the base unit, read back by the loader
        return ModelAxis(path=path, texts=tuple(f"{float(v)!r} {unit}" for v in points))
    if isinstance(low, int) and isinstance(high, int):  # a whole-number field: every point must be whole
        whole = np.rint(points)
        if not np.allclose(points, whole, rtol=0, atol=1e-9 * max(1.0, abs(high))):
            raise ConfigError(None, where, f"a grid of whole numbers ({low}..{high}:{count} gives "
                              f"{', '.join(f'{v:.4g}' for v in points[:4])}{'...' if count > 4 else ''}); pick a "
                              "count that divides the range, or a list", spec)
        texts = tuple(str(int(v)) for v in whole)
    else:
        texts = tuple(repr(float(v)) for v in points)
    return ModelAxis(path=path, texts=texts)


def _grid_ends(path: str, lo_text: str, hi_text: str, where: str) -> tuple[float, float, str | None]:
    """The ends of ``a..b:n``: plain numbers (integers when written as such), or for a hardware field quantities of
    its dimension (``1TB/s``) with the base unit symbol the grid's values are written in (None for numbers)."""
    try:
        return _number(lo_text, where), _number(hi_text, where), None
    except ConfigError:
        if is_model_path(path):
            raise
    dim = dimension_of(path)
    if dim not in DIMENSIONS:
        raise ConfigError(None, where, "numbers at both ends of a..b:n", f"{lo_text}..{hi_text}")
    low, high = (parse_quantity(t.strip(), dim, path=where) for t in (lo_text, hi_text))
    return low, high, next(iter(DIMENSIONS[dim].units))


def _number(text: str, where: str) -> int | float:
    """A grid end: an integer when written as one, else a float (ConfigError otherwise)."""
    text = text.strip()
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            continue
    raise ConfigError(None, where, "numbers at both ends of a..b:n", text)


def model_points(axes: list[ModelAxis]) -> list[tuple[str, ...]]:
    """Every combination of the model axes' values as ``FIELD=VALUE`` settings (the last axis varying fastest);
    one empty combination without model axes."""
    import itertools

    total = 1
    for a in axes:
        total *= len(a.texts)
    if total > MAX_MODEL_POINTS:
        raise ConfigError(None, "--set", f"at most {MAX_MODEL_POINTS:,} model and scenario points (each rebuilds "
                          "the graph; archsim's sweep limit, see docs/limits.md)", f"{total:,}")
    return [tuple(f"{a.path}={t}" for a, t in zip(axes, combo))
            for combo in itertools.product(*(a.texts for a in axes))]


def _grid_count(text: str, where: str) -> int:
    """The point count after a grid's ':' (a whole number, at least 1); shared by hardware and model axes."""
    try:
        count = int(text)
    except ValueError:
        raise ConfigError(None, where, "a whole number of grid points after ':'", text) from None
    if count < 1:
        raise ConfigError(None, where, "at least one grid point", count)
    return count
