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
from archsim.sim.serve_deploy import ServeOptions


def _cli_defaults() -> dict:
    args = build_parser().parse_args(["serve", "w.yaml", "--hw", "h.yaml"])
    return vars(args)


def test_every_front_door_has_the_same_scheduler_defaults():
    spec, opts, cli = SchedulerSpec(), ServeOptions(workload="w.yaml", hw="h.yaml"), _cli_defaults()
    sched_default = inspect.signature(RequestLevelScheduler).parameters["timeout_s"].default
    assert spec.timeout_s == opts.timeout == cli["timeout"] == sched_default == config.DEFAULT_BATCH_TIMEOUT_S > 0
    assert spec.max_seqs == opts.max_seqs == cli["max_seqs"] == config.DEFAULT_MAX_SEQS
    assert spec.token_budget == opts.token_budget == cli["token_budget"] == config.DEFAULT_TOKEN_BUDGET
    assert spec.block_tokens == opts.block_size == cli["block_size"] == config.DEFAULT_BLOCK_TOKENS


def test_default_static_batch_waits_for_the_timeout_to_fill():
    replica = ReplicaSpec(devices=1, kv_capacity_tokens=16_000, kv_bytes_per_token=1.0, peak_flop_per_s=1.0,
                          peak_bytes_per_s=1.0)
    sched = make_scheduler(SchedulerSpec(kind="static", max_seqs=4), replica, np.random.default_rng(0))
    sched.add(Seq(req=Request(id=0, arrival_s=0.0, prompt_tokens=10, output_tokens=2)), 0.0)
    assert sched.next_plan(0.0) is None                         # not full, has not waited: keeps waiting
    assert sched.wake_at() == config.DEFAULT_BATCH_TIMEOUT_S
    assert sched.next_plan(config.DEFAULT_BATCH_TIMEOUT_S) is not None   # timed out: starts with what it has
