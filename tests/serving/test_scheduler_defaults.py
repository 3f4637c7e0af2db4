"""One definition of the scheduler defaults: SchedulerSpec, ServeOptions, `archsim serve` and the static scheduler
itself agree, and the default static batch really waits to fill (a zero timeout would start at once)."""
from __future__ import annotations

import inspect

import numpy as np

from archsim.cli import build_parser
from archsim.serving import config
from archsim.serving.config import ReplicaSpec, SchedulerSpec, make_scheduler
from archsim.serving.request_level import RequestLevelScheduler
from archsim.serving.requests import Request
from archsim.serving.sequence import Seq
from archsim.config.stack import resolve_stack
from archsim.serving.kvcache import DEFAULT_KV_MEMORY_FRACTION
from archsim.sim.serve_deploy import ServeOptions, with_stack_defaults


def _cli_defaults() -> dict:
    args = build_parser().parse_args(["serve", "w.yaml", "--hw", "h.yaml"])
    return vars(args)


def test_every_front_door_has_the_same_scheduler_defaults():
    spec, cli = SchedulerSpec(), _cli_defaults()
    # unset (None) until a stack fills them; without one, archsim's defaults
    raw = ServeOptions(workload="w.yaml", hw="h.yaml")
    assert raw.max_seqs is raw.token_budget is raw.block_size is raw.kv_memory_fraction is None
    assert cli["max_seqs"] is cli["token_budget"] is cli["block_size"] is cli["kv_memory_fraction"] is None
    opts = with_stack_defaults(raw, None)
    sched_default = inspect.signature(RequestLevelScheduler).parameters["timeout_s"].default
    assert spec.timeout_s == opts.timeout == cli["timeout"] == sched_default == config.DEFAULT_BATCH_TIMEOUT_S > 0
    assert spec.max_seqs == opts.max_seqs == config.DEFAULT_MAX_SEQS
    assert spec.token_budget == opts.token_budget == config.DEFAULT_TOKEN_BUDGET
    assert spec.block_tokens == opts.block_size == config.DEFAULT_BLOCK_TOKENS
    assert opts.kv_memory_fraction == DEFAULT_KV_MEMORY_FRACTION


def test_a_stack_fills_only_what_was_not_given():
    stack = resolve_stack("vllm")
    opts = with_stack_defaults(ServeOptions(workload="w.yaml", hw="h.yaml", block_size=32), stack)
    assert opts.block_size == 32  # given
    assert (opts.max_seqs, opts.token_budget, opts.kv_memory_fraction) == (
        stack.max_running_requests, stack.chunked_prefill, stack.kv_memory_fraction)


def test_default_static_batch_waits_for_the_timeout_to_fill():
    replica = ReplicaSpec(devices=1, kv_capacity_tokens=16_000, kv_bytes_per_token=1.0, peak_flop_per_s=1.0,
                          peak_bytes_per_s=1.0)
    sched = make_scheduler(SchedulerSpec(kind="static", max_seqs=4), replica, np.random.default_rng(0))
    sched.add(Seq(req=Request(id=0, arrival_s=0.0, prompt_tokens=10, output_tokens=2)), 0.0)
    assert sched.next_plan(0.0) is None                         # not full, has not waited: keeps waiting
    assert sched.wake_at() == config.DEFAULT_BATCH_TIMEOUT_S
    assert sched.next_plan(config.DEFAULT_BATCH_TIMEOUT_S) is not None   # timed out: starts with what it has
