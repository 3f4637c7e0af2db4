"""The ``deployment:`` section (of a workload YAML or its own file): pools of devices and their layouts, strictly
validated. Degrees may be ``auto``; the mapping layer resolves them (mapping/deployment.py).

```yaml
deployment:
  prefill:                 # a disaggregated deployment: a prefill pool and a decode pool (xPyD) ...
    devices: 32
    attn_dp: 32            # attention data-parallel replicas (SGLang --dp with --enable-dp-attention)
    moe_ep: 32             # expert parallel (alias ep)
    redundant_experts: 32  # EPLB extra expert slots
    instances: 1
  decode:
    devices: 144
    moe_ep: 144
    redundant_experts: 32
    instances: 3
  # ... or one pool for both phases:
  # pool: {devices: 8, tp: 8, moe_tp: 8}
  prefill_chunk: 8192      # tokens per prefill forward of one attention replica (0: no chunking)
  cuda_graphs: true        # decode steps replayed from CUDA graphs
```
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from archsim.config.shipped import resolve_file
from archsim.config.yaml_io import Section, load_yaml
from archsim.errors import ConfigError

AUTO = "auto"
DEGREES = ("tp", "attn_dp", "moe_tp", "moe_ep", "pp", "cp", "micro_batches")
EP_MODES = ("throughput", "low_latency")


@dataclass(frozen=True, kw_only=True)
class PoolSpec:
    """One pool as written: its role, devices per instance and degrees (int, or None for auto), instances, and
    the sequences of one step of one instance (None: the scenario's batch)."""

    role: str
    devices: int | None = None
    tp: int | None = None
    attn_dp: int | None = None
    moe_tp: int | None = None
    moe_ep: int | None = None
    pp: int | None = None
    cp: int | None = None
    micro_batches: int | None = None
    redundant_experts: int = 0
    instances: int = 1
    batch: int | None = None


@dataclass(frozen=True, kw_only=True)
class DeploymentSpec:
    """Pools (one for both phases, or prefill + decode) and how steps run; None fields keep their defaults."""

    pools: tuple[PoolSpec, ...]
    prefill_chunk: int | None = None      # None: the default; 0: no chunking
    cuda_graphs: bool | None = None
    ep_mode: str | None = None


def load_deployment(path: str | os.PathLike) -> DeploymentSpec:
    """A YAML file holding one top-level ``deployment:`` mapping, given by path or shipped name
    (``deepseek_v3_h800_decode_unit``: ``deployments/deepseek_v3_h800_decode_unit.yaml``)."""
    file = resolve_file(path, "deployments", "deployment", "deployment YAML")
    root = Section(load_yaml(file), file)
    spec = deployment_from_section(root.section("deployment"))
    root.finish()
    return spec


def deployment_from_section(s: Section) -> DeploymentSpec:
    """Validate a ``deployment:`` mapping (ConfigError naming file and field)."""
    has_pool, has_split = s.has("pool"), s.has("prefill") or s.has("decode")
    if has_pool == has_split:
        raise ConfigError(s.file, s.path, "either 'pool' (one pool for both phases) or 'prefill' and/or 'decode' "
                          "pools", "both" if has_pool else "neither")
    roles = ("both",) if has_pool else tuple(r for r in ("prefill", "decode") if s.has(r))
    pools = tuple(_pool(s.section("pool" if role == "both" else role), role) for role in roles)
    chunk = s.int("prefill_chunk", minimum=0, default=None)
    spec = DeploymentSpec(pools=pools, prefill_chunk=chunk, cuda_graphs=s.bool("cuda_graphs", default=None),
                          ep_mode=s.str("ep_mode", choices=EP_MODES, default=None))
    s.finish()
    return spec


def _pool(s: Section, role: str) -> PoolSpec:
    degrees = {name: _int_or_auto(s, name) for name in DEGREES}
    for alias, name in (("ep", "moe_ep"), ("dp", "attn_dp")):
        value = _int_or_auto(s, alias)
        if value is None:
            continue
        if degrees[name] is not None and degrees[name] != value:
            raise ConfigError(s.file, s.child_path(alias), f"equal to {name} ({degrees[name]}) when both are "
                              f"given ({alias} is its alias)", value)
        degrees[name] = value
    spec = PoolSpec(role=role, devices=_int_or_auto(s, "devices"), **degrees,
                    redundant_experts=s.int("redundant_experts", minimum=0, default=0),
                    instances=s.int("instances", minimum=1, default=1), batch=s.int("batch", minimum=1, default=None))
    s.finish()
    return spec


def _int_or_auto(s: Section, key: str) -> int | None:
    value = s.raw(key, default=AUTO)
    if value == AUTO:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(s.file, s.child_path(key), "a positive integer or 'auto'", value)
    return value
