"""Strict loading of validation/*.yaml: published measurements, each with its conditions and source."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Mapping

from archsim.config.yaml_io import Section, load_yaml
from archsim.errors import ConfigError
from archsim.paths import data_dir

VALIDATION_DIR = data_dir("validation")

# measured quantity -> (SI factor, unit of the SI value); the YAML keeps the source's own unit
METRICS: dict[str, tuple[float, str]] = {
    "time_us": (1e-6, "s"),
    "tflops": (1e12, "FLOP/s"),
    "gb_per_s": (1e9, "B/s"),
    "tokens_per_s_per_gpu": (1.0, "tokens/s"),
    "bytes": (1.0, "B"),
    # end-to-end serving (kernel "deployment"): per GPU throughputs, per-request latencies
    "output_tokens_per_s_per_gpu": (1.0, "tokens/s"),
    "input_tokens_per_s_per_gpu": (1.0, "tokens/s"),
    "total_tokens_per_s_per_gpu": (1.0, "tokens/s"),
    "tokens_per_s_per_user": (1.0, "tokens/s"),
    "tpot_ms": (1e-3, "s"),
    "itl_ms": (1e-3, "s"),
    "ttft_ms": (1e-3, "s"),
    "e2e_latency_ms": (1e-3, "s"),
    # energy of a serving run (kernel "energy", fidelity/energy_eval.py): board power per GPU, J per output token
    "avg_power_w_per_gpu": (1.0, "W"),
    "j_per_token": (1.0, "J"),
    # ... and of a whole node at the wall (MLPerf power: node AC power; boards plus hardware power.host_per_node)
    "node_power_w": (1.0, "W"),
    "node_j_per_token": (1.0, "J"),
    # what-if devices (fidelity/whatif_device_eval.py): a speedup (ratio) and a share of throughput lost
    "speedup": (1.0, "x"),
    "throughput_loss": (1.0, "fraction"),
}
# the quantity compared when a case lists several (they are the same measurement in other units)
PRIMARY_ORDER = ("time_us", "tflops", "gb_per_s", "tokens_per_s_per_gpu", "bytes", "output_tokens_per_s_per_gpu",
                 "total_tokens_per_s_per_gpu", "input_tokens_per_s_per_gpu", "tpot_ms", "itl_ms",
                 "tokens_per_s_per_user", "ttft_ms", "e2e_latency_ms", "speedup", "throughput_loss")
KERNELS = ("gemm", "grouped_gemm", "attention", "ep_exchange", "training_throughput", "kv_bytes_per_token",
           "ep_decode_bound", "deployment",
           "whatif_decode",  # a what-if chip's published decode tokens/s (fidelity/whatif_eval.py)
           "energy",  # power and J per token of a serving run (fidelity/energy_eval.py)
           "whatif_pim_gemv", "whatif_clock_training")  # what-if devices (fidelity/whatif_device_eval.py)


class NotModelled(Exception):
    """A published measurement whose setup the model does not represent: the case is reported as skipped, with
    this reason (raised by the end-to-end evaluators, deployment_eval, energy_eval and the what-if ones)."""


@dataclass(frozen=True, kw_only=True)
class Case:
    """One published measurement: what ran (kernel, shape, dtype, hardware), what was measured (SI), where
    it comes from. ``calibrates`` names the hardware (or stack) field this figure sets, if any (not held out)."""

    id: str
    file: str
    category: str
    kernel: str
    dtype: str
    hardware: str
    shape: Mapping[str, object]
    measured: Mapping[str, float]
    source: str
    conditions: str
    confidence: str = ""
    notes: str = ""
    calibrates: str | None = None

    @property
    def metric(self) -> str:
        """The measured quantity this case is judged on (a deployment case: the first it lists)."""
        if self.kernel in ("deployment", "energy"):
            return next(iter(self.measured))
        return next(m for m in PRIMARY_ORDER if m in self.measured)

    @property
    def measured_value(self) -> float:
        return self.measured[self.metric]


@dataclass(frozen=True, kw_only=True)
class CaseFile:
    path: str
    source: str
    cases: tuple[Case, ...] = field(default_factory=tuple)


def _shape(section: Section, file: str, path: str) -> dict[str, object]:
    out: dict[str, object] = {}
    for key in section.keys():
        value = section.raw(key)
        ok = isinstance(value, (int, str, bool))
        ok = ok or (isinstance(value, list) and value and all(isinstance(v, int) and not isinstance(v, bool)
                                                              for v in value))
        if not ok:
            raise ConfigError(file, f"{path}.{key}", "an integer, a name, true/false, or a list of integers (a grid)", value)
        out[key] = tuple(value) if isinstance(value, list) else value
    return out


def _measured(section: Section, file: str, path: str) -> dict[str, float]:
    out = {}
    for key in section.keys():
        if key not in METRICS:
            raise ConfigError(file, f"{path}.{key}", f"one of {', '.join(METRICS)}", key)
        out[key] = section.number(key, minimum=0.0) * METRICS[key][0]
        if out[key] <= 0:
            raise ConfigError(file, f"{path}.{key}", "a positive measurement", out[key])
    if not out:
        raise ConfigError(file, path, "at least one measured quantity", None)
    return out


def load_case_file(path: str | Path) -> CaseFile:
    """Read one validation file; every problem is a ConfigError naming the file and field."""
    file = str(path)
    top = Section(load_yaml(path), file)
    source = top.str("source")
    conditions = top.str("conditions")
    confidence = top.str("confidence")
    hardware = top.str("hardware")
    cases = []
    seen: set[str] = set()
    for item in top.section_list("cases"):
        case_id = item.str("id")
        if case_id in seen:
            raise ConfigError(file, item.child_path("id"), "a unique case id", case_id)
        seen.add(case_id)
        kernel = item.str("kernel", choices=KERNELS)
        make = {"deployment": _deployment_cases, "energy": _energy_cases}.get(kernel, lambda case: [case])
        cases += make(Case(
            id=case_id, file=file, category=item.str("category"), kernel=kernel, dtype=item.str("dtype"),
            hardware=item.str("hardware", default=hardware),
            shape=_shape(item.section("shape"), file, item.child_path("shape")),
            measured=_measured(item.section("measured"), file, item.child_path("measured")),
            source=item.str("source", default=source), conditions=conditions,
            confidence=item.str("confidence", default=confidence), notes=item.str("notes", default=""),
            calibrates=item.str("calibrates", default=None)))
    top.finish()
    return CaseFile(path=file, source=source, cases=tuple(cases))


# An end-to-end deployment measurement is judged on each kind of figure it reports, one case each (category
# ``<category>_<group>``, id ``<id>.<group>``): the first metric of the group the source gives.
DEPLOYMENT_GROUPS = {"throughput": ("output_tokens_per_s_per_gpu", "total_tokens_per_s_per_gpu",
                                    "input_tokens_per_s_per_gpu"),
                     "tpot": ("tpot_ms", "itl_ms", "tokens_per_s_per_user"),
                     "ttft": ("ttft_ms",)}


def _deployment_cases(case: Case, groups: Mapping[str, tuple[str, ...]] = DEPLOYMENT_GROUPS) -> list[Case]:
    """One case per metric group the measurement reports (``DEPLOYMENT_GROUPS``); every measured figure is kept
    on each, so the evaluator sees the whole measurement."""
    out = []
    for group, metrics in groups.items():
        metric = next((m for m in metrics if m in case.measured), None)
        if metric is None:
            continue
        measured = {metric: case.measured[metric], **{k: v for k, v in case.measured.items() if k != metric}}
        out.append(replace(case, id=f"{case.id}.{group}", category=f"{case.category}_{group}", measured=measured))
    return out


# An energy measurement is judged on average power and on J per output token, one case each (category
# ``<category>_power`` / ``<category>_j_per_token``).
ENERGY_GROUPS = {"power": ("avg_power_w_per_gpu", "node_power_w"), "j_per_token": ("j_per_token", "node_j_per_token")}


def _energy_cases(case: Case) -> list[Case]:
    """One case per energy figure the measurement reports (``ENERGY_GROUPS``), as ``_deployment_cases``."""
    return _deployment_cases(case, ENERGY_GROUPS)


def load_cases(directory: str | Path = VALIDATION_DIR) -> list[Case]:
    """Every case of every ``*.yaml`` file in ``directory`` (sorted by file name)."""
    files = sorted(Path(directory).glob("*.yaml"))
    if not files:
        raise ConfigError(str(directory), None, "validation/*.yaml files", "none")
    return [case for f in files for case in load_case_file(f).cases]
