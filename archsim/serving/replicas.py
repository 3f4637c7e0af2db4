"""The served Deployment: ``archsim serve`` resolves its deployment once through mapping.resolve (the record
``archsim run`` prices: scenario, layout flags, a ``deployment:`` section or file, expert load, EP kernels, CUDA
graphs, prefill chunk), and each pool becomes replicas: one CostModelIteration and ReplicaSpec per pool instance.

A pool whose device count is ``auto`` gets the smallest count (mapping.parallel.smallest_fitting over
``candidate_device_counts``, each candidate resolved by mapping.resolve) whose replica leaves room, under the KV
memory share, for the longest request: its whole context in a pool that decodes, its prompt in a prefill pool.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

from archsim.config.deployment import DeploymentSpec
from archsim.config.hardware import Hardware
from archsim.config.model import ModelConfig
from archsim.config.workload import Workload
from archsim.errors import ConfigError
from archsim.graph.build import check_shard
from archsim.graph.precision import Shard
from archsim.mapping.deployment import Deployment, Pool
from archsim.mapping.parallel import candidate_device_counts, smallest_fitting
from archsim.mapping.resolve import Resolved, resolve_deployment, written_spec
from archsim.serving.config import ReplicaSpec
from archsim.serving.cost_model import CostModelIteration, KvFit, gemm_peak_flop_per_s, kv_fit


@dataclass(frozen=True, kw_only=True)
class Longest:
    """The longest request a run can hold: its prompt and whole context, in tokens."""

    prompt: int
    context: int

    def need(self, role: str) -> int:
        """KV tokens one replica of a pool of ``role`` must hold for it."""
        return self.prompt if role == "prefill" else self.context


@dataclass(frozen=True, kw_only=True)
class ServingPool:
    """One pool of the served deployment: its replica's iteration model and spec, and its instance count."""

    pool: Pool
    model: CostModelIteration
    replica: ReplicaSpec

    @property
    def role(self) -> str:
        return self.pool.role

    @property
    def instances(self) -> int:
        return self.pool.instances


@dataclass(frozen=True, kw_only=True)
class ServedDeployment:
    """The resolved deployment (``resolved.deployment`` is the record ``archsim run`` prices) and its pools'
    replicas, in the deployment's pool order."""

    resolved: Resolved
    pools: tuple[ServingPool, ...]

    @property
    def deployment(self) -> Deployment:
        return self.resolved.deployment

    def pool(self, phase: str) -> ServingPool:
        """The pool that runs ``phase`` (the only pool of an aggregated deployment)."""
        return next(p for p in self.pools if p.role in ("both", phase))


@dataclass(frozen=True, kw_only=True)
class _Sizing:
    """How every replica of a run is sized: the longest request, the grid's seeds (sequences per iteration, the
    KV block), the KV memory share, and one price_phase cache for the run's pools."""

    longest: Longest
    max_seqs: int
    block_tokens: int
    kv_memory_fraction: float
    cache: dict

    def fit(self, dep: Deployment, pool: Pool) -> KvFit:
        return kv_fit(dep, pool, need=self.longest.need(pool.role), max_seqs=self.max_seqs,
                      max_context=self.longest.context, block_tokens=self.block_tokens,
                      kv_memory_fraction=self.kv_memory_fraction, cache=self.cache)


@dataclass(frozen=True, kw_only=True)
class _Candidate:
    """A device count tried by the search: the deployment resolved with it and the searched pool's fit."""

    resolved: Resolved
    fit: KvFit

    @property
    def fits(self) -> bool:
        return self.fit.fits


def served_deployment(wl: Workload, hw: Hardware, *, longest: Longest, output_len: int, max_seqs: int,
                      block_tokens: int, kv_memory_fraction: float, overrides: dict) -> ServedDeployment:
    """Resolve ``wl`` on ``hw`` with ``overrides`` (estimate()'s names, mapping/resolve.py) for serving: the
    deployment's lengths are the longest request's (``longest.prompt`` and ``output_len``), its batch the
    scenario's (a default only: the scheduler forms the batches). Auto device counts are searched for KV room
    (module docstring); a fixed count without room, or weights that leave none, is a ConfigError."""
    base = {**overrides, "prompt_len": longest.prompt, "output_len": output_len}
    _check_fixed_degrees(wl.model, base, _spec(wl, base))
    resolved = resolve_deployment(wl, hw, **base)  # every name and value checked before any search
    gemm_peak_flop_per_s(hw, resolved.deployment.precision)  # the same for every layout: said once, not skipped
    sizes = _Sizing(longest=longest, max_seqs=max_seqs, block_tokens=block_tokens,
                    kv_memory_fraction=kv_memory_fraction, cache={})
    if resolved.auto and not resolved.deployment.disaggregated:
        found = _search(hw, lambda n: resolve_deployment(wl, hw, **{**base, "devices": n}), 0, sizes)
        resolved = found.resolved
    elif resolved.auto:
        spec = _spec(wl, base)
        pools = list(spec.pools)
        for i, pool in enumerate(pools):
            if pool.devices is None:
                def with_devices(n: int, i: int = i) -> Resolved:
                    trial = [replace(p, devices=n) if j == i else p for j, p in enumerate(pools)]
                    return resolve_deployment(wl, hw, **{**base, "deployment": replace(spec, pools=tuple(trial))})
                found = _search(hw, with_devices, i, sizes)
                pools[i] = replace(pool, devices=found.resolved.deployment.pools[i].layout.devices)
        resolved = resolve_deployment(wl, hw, **{**base, "deployment": replace(spec, pools=tuple(pools))})
    return ServedDeployment(resolved=resolved, pools=tuple(_serving_pool(resolved.deployment, p, sizes)
                                                           for p in resolved.deployment.pools))


def _search(hw: Hardware, resolve_with: Callable[[int], Resolved], index: int, sizes: _Sizing) -> _Candidate:
    """The smallest candidate device count whose pool ``index`` leaves room for the longest request's KV."""
    def candidate(n: int) -> _Candidate:
        resolved = resolve_with(n)
        dep = resolved.deployment
        return _Candidate(resolved=resolved, fit=sizes.fit(dep, dep.pools[index]))

    try:
        found = smallest_fitting(hw, candidate)
    except ConfigError:  # no candidate count gives a valid layout for the fixed degrees
        raise ConfigError(hw.source_file, "devices", f"a device count (up to {candidate_device_counts(hw)[-1]}) "
                          "whose layout is valid for the given degrees", "none") from None
    if not found.fits:
        fit = found.fit
        role = "" if fit.model.pool.role == "both" else fit.model.pool.role + " "
        raise ConfigError(hw.source_file, "devices", f"a device count (up to {candidate_device_counts(hw)[-1]}) "
                          f"whose {role}replica leaves room for the longest request's {fit.need} KV tokens",
                          f"{fit.replica.kv_capacity_tokens if fit.replica else 0} tokens on "
                          f"{fit.model.devices} devices")
    return found


def _serving_pool(dep: Deployment, pool: Pool, sizes: _Sizing) -> ServingPool:
    """A pool's replica; a ConfigError when its weights leave no room, or too little for the longest request."""
    fit = sizes.fit(dep, pool)
    if fit.replica is None:
        fit.model.replica(kv_memory_fraction=sizes.kv_memory_fraction)  # raises: the weights leave no room
    if not fit.fits:
        role = "" if pool.role == "both" else pool.role + " "
        raise ConfigError(dep.hardware.source_file, "devices", f"room for {fit.need} KV tokens (the longest "
                          f"request) in one {role}replica",
                          f"{fit.replica.kv_capacity_tokens} on {fit.model.devices} devices")
    return ServingPool(pool=pool, model=fit.model, replica=fit.replica)


def _spec(wl: Workload, overrides: dict) -> DeploymentSpec | None:
    """The deployment spec as written (``mapping.resolve.written_spec``), before the layout flags."""
    return written_spec(wl, overrides)


def _check_fixed_degrees(model: ModelConfig, overrides: dict, spec: DeploymentSpec | None) -> None:
    """ConfigError, naming the degree and the rule, when a fixed tp / moe_tp / moe_ep cannot split the model at
    any device count (so an auto search does not end in a vaguer error): the flags, and each pool written in the
    deployment spec (a flag replaces a one-pool spec's own value)."""
    flags = {k: overrides.get(k) for k in ("tp", "moe_tp", "redundant_experts")}
    flags["moe_ep"] = overrides.get("moe_ep", overrides.get("ep"))
    flags = {k: v for k, v in flags.items() if isinstance(v, int) and not isinstance(v, bool)}
    pools = spec.pools if spec is not None else ()
    for pool in pools:
        mine = {k: getattr(pool, k) for k in ("tp", "moe_tp", "moe_ep", "redundant_experts")}
        where = "" if len(pools) == 1 else f"deployment.{pool.role}."
        if len(pools) == 1:
            mine.update(flags)
        _check_pool_degrees(model, mine, where)
    if not pools:
        _check_pool_degrees(model, flags, "")


def _check_pool_degrees(model: ModelConfig, degrees: dict, where: str) -> None:
    tp, moe_tp = degrees.get("tp") or 1, degrees.get("moe_tp") or 1
    check_shard(model, Shard(tp=tp, moe_tp=moe_tp if model.is_moe else 1))
    ep = degrees.get("moe_ep")
    if model.is_moe and ep:
        redundant = degrees.get("redundant_experts") or 0
        slots = model.n_routed_experts + redundant
        if slots % ep:
            raise ConfigError(None, f"{where}moe_ep", f"a divisor of the expert slots n_routed_experts + "
                              f"redundant_experts = {model.n_routed_experts} + {redundant} = {slots} (moe_ep, alias "
                              "ep: every EP rank holds as many slots)", ep)

