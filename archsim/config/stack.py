"""Software stacks as data (``stacks/*.yaml``): how a serving framework runs a model on a chip.

A stack names, per chip family (the hardware's ``family:``), the kernel library of each op kind; its default
scheduler settings (chunked-prefill budget, KV page size, memory share, running-sequence cap); the largest decode
batch it replays as a CUDA graph; and the host time it adds per iteration and per request. The libraries'
efficiencies are chip facts and live in the hardware YAML (``kernel.libraries``, config/kernel_fields.py); a stack
only names them. docs/stacks.md lists the shipped stacks and their sources.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Mapping

import numpy as np

from archsim.config.shipped import resolve_file, shipped_names
from archsim.config.yaml_io import Section, load_yaml
from archsim.errors import ConfigError

if TYPE_CHECKING:
    from archsim.config.hardware import Hardware

# the op kinds a stack picks a library for (an op's ``library_kind``, graph/op.py)
# (``dense_gemm_unquantized``: the dense GEMMs whose weights are 16-bit, e.g. a BF16 checkpoint and every lm_head;
# without it they take ``dense_gemm``'s library, cost/work.library_kind)
LIBRARY_KINDS = ("dense_gemm", "dense_gemm_unquantized", "moe_gemm", "attention_prefill", "attention_decode")
# DeepEP kernel modes a stack uses for the MoE token exchange, per phase (mapping/layer_comm.EP_MODES)
ALL_TO_ALL_KEYS = {"all_to_all_prefill": "prefill", "all_to_all_decode": "decode"}
EP_MODES = ("throughput", "low_latency")


@dataclass(frozen=True, kw_only=True)
class HostOverhead:
    """Host (CPU) time a stack spends around the GPU's work.

    ``iteration_s``: per scheduler iteration (schedule, prepare inputs, sample, detokenise); with ``overlapped``
    the next iteration's host work runs while the GPU runs this one, so an iteration takes max(GPU, host), else
    GPU + host. ``request_s``: per request before it is scheduled (HTTP handling, tokenisation), part of TTFT.
    """

    iteration_s: float = 0.0
    overlapped: bool = False
    request_s: float = 0.0

    def step_s(self, gpu_s):
        """Wall time of one iteration whose GPU work takes ``gpu_s`` (a float, or an array of sweep points)."""
        return np.maximum(gpu_s, self.iteration_s) if self.overlapped else gpu_s + self.iteration_s


@dataclass(frozen=True, kw_only=True)
class FamilyKernels:
    """One chip family's kernel choices: a library per op kind and the DeepEP mode per phase."""

    libraries: Mapping[str, str]
    all_to_all: Mapping[str, str] = field(default_factory=dict)  # phase -> EP mode


@dataclass(frozen=True, kw_only=True)
class Stack:
    """A serving stack (module docstring). ``chunked_prefill``: the prefill tokens of one iteration;
    ``max_running_requests`` None: the stack sizes it from memory."""

    name: str
    version: str
    source: str
    chunked_prefill: int
    block_tokens: int
    kv_memory_fraction: float
    cuda_graph_max_batch: int
    host: HostOverhead
    kernels: Mapping[str, FamilyKernels]
    max_running_requests: int | None = None
    # an iteration carries decode steps and prefill chunks together (Sarathi-style); False: prefill first, decode
    # only when no prefill is waiting
    mixed_batches: bool = True
    # (group size up to, message bytes below): on the chip families ``one_shot_families`` the stack's one-shot
    # custom all-reduce runs an all-reduce of fewer bytes over at most that many chips of one node
    # (cost/collectives.py ``one_shot``); none: NCCL-style pricing
    one_shot_all_reduce: tuple[tuple[int, float], ...] = ()
    one_shot_families: tuple[str, ...] = ()
    source_file: str = "<memory>"

    def all_reduce_algorithm(self, hw: "Hardware", nbytes: float, group: int) -> str:
        """The collectives algorithm of an all-reduce of ``nbytes`` over ``group`` chips of ``hw``: ``one_shot``
        below the stack's threshold for the smallest listed group size >= ``group`` on its families, else
        ``auto``."""
        if hw.family not in self.one_shot_families:
            return "auto"
        for up_to, below in sorted(self.one_shot_all_reduce):
            if group <= up_to:
                return "one_shot" if nbytes < below else "auto"
        return "auto"

    def on(self, hw: "Hardware") -> "FamilyKernels":
        """The kernel choices for ``hw``'s family; a ConfigError naming both files when the stack has none, or
        when it names a library the chip does not describe."""
        family = hw.family
        if family is None or family not in self.kernels:
            raise ConfigError(hw.source_file, "family", f"a chip family stack {self.name!r} runs on "
                              f"({', '.join(sorted(self.kernels))}; {self.source_file})", family)
        chosen = self.kernels[family]
        known = hw.kernel.libraries if hw.kernel is not None else {}
        for kind, name in chosen.libraries.items():
            if name not in known:
                raise ConfigError(hw.source_file, f"kernel.libraries.{name}",
                                  f"the efficiency of library {name!r}, which stack {self.name!r} uses for {kind} "
                                  f"on {family} ({self.source_file})", "missing")
        return chosen

    def ep_mode(self, hw: "Hardware", phase: str) -> str | None:
        """The DeepEP mode the stack uses in ``phase`` on ``hw`` (None: the deployment's default rule)."""
        return self.on(hw).all_to_all.get(phase)

    def library_efficiency(self, hw: "Hardware") -> dict[str, tuple[float, float]]:
        """Op kind -> (mma_fraction, bandwidth_fraction) of the library the stack uses for it on ``hw``."""
        chosen = self.on(hw)
        libs = hw.kernel.libraries if hw.kernel is not None else {}
        return {kind: (libs[name].mma_fraction, libs[name].bandwidth_fraction)
                for kind, name in chosen.libraries.items()}


def stack_names() -> list[str]:
    """Names of the shipped stacks (``stacks/*.yaml``)."""
    return shipped_names("stacks")


def resolve_stack(stack: "Stack | str | os.PathLike | None") -> Stack | None:
    """A Stack from a record, a YAML path or a shipped name (``sglang``); None stays None."""
    if stack is None or isinstance(stack, Stack):
        return stack
    return load_stack(stack)


def load_stack(path: str | os.PathLike) -> Stack:
    """Load and validate a stack YAML (layout: docs/stacks.md), given by path or shipped name; unknown keys are
    errors."""
    file = resolve_file(path, "stacks", "stack", "stack YAML")
    return stack_from_dict(load_yaml(file), file)


def stack_from_dict(data: Mapping, file: str = "<memory>") -> Stack:
    """A Stack from a parsed mapping, as strictly as the loader."""
    root = Section(data, file)
    serving = root.section("serving")
    graphs = root.section("cuda_graphs")
    host = root.section("host")
    stack = Stack(
        name=root.str("name"),
        version=str(root.raw("version")),
        source=root.str("source"),
        chunked_prefill=serving.int("chunked_prefill", minimum=1),
        block_tokens=serving.int("block_tokens", minimum=1),
        kv_memory_fraction=serving.number("kv_memory_fraction", minimum=0.0, maximum=1.0),
        max_running_requests=serving.int("max_running_requests", minimum=1, default=None),
        mixed_batches=serving.bool("mixed_batches", default=True),
        cuda_graph_max_batch=graphs.int("max_batch", minimum=0),
        host=HostOverhead(iteration_s=host.quantity("iteration", "time_s"), overlapped=host.bool("overlapped"),
                          request_s=host.quantity("request", "time_s")),
        kernels=_kernels(root.section("kernels")),
        **_one_shot(root.optional_section("all_reduce"), file),
        source_file=file,
    )
    if not stack.kv_memory_fraction > 0:
        raise ConfigError(file, "serving.kv_memory_fraction", "a fraction in (0, 1]", stack.kv_memory_fraction)
    for key, value in (("iteration", stack.host.iteration_s), ("request", stack.host.request_s)):
        if not 0 <= value < float("inf"):
            raise ConfigError(file, f"host.{key}", "a finite time >= 0 s", value)
    root.finish()
    return stack


def _kernels(section: Section) -> dict[str, FamilyKernels]:
    """``kernels:``: family -> {op kind: library, all_to_all_prefill / _decode: EP mode}."""
    out = {}
    for family in section.keys():
        entry = section.section(family)
        libraries = {kind: entry.str(kind) for kind in LIBRARY_KINDS if entry.has(kind)}
        modes = {phase: entry.str(key, choices=EP_MODES) for key, phase in ALL_TO_ALL_KEYS.items() if entry.has(key)}
        entry.finish()
        out[family] = FamilyKernels(libraries=libraries, all_to_all=modes)
    if not out:
        raise ConfigError(section.file, "kernels", "at least one chip family", "none")
    return out


def _one_shot(section: Section | None, file: str) -> dict:
    """``all_reduce``: ``families`` (chip families it runs on) and ``one_shot``, a list of {up_to: group size,
    below: message size}, group sizes increasing."""
    if section is None:
        return {}
    families = section.raw("families")
    if not isinstance(families, list) or not families or not all(isinstance(f, str) for f in families):
        raise ConfigError(file, "all_reduce.families", "a list of chip family names", families)
    out = [(entry.int("up_to", minimum=2), entry.quantity("below", "bytes")) for entry in section.section_list("one_shot")]
    sizes = [g for g, _ in out]
    if not sizes or sizes != sorted(set(sizes)):
        raise ConfigError(file, "all_reduce.one_shot", "entries with increasing, distinct up_to group sizes", sizes)
    return {"one_shot_all_reduce": tuple(out), "one_shot_families": tuple(families)}
