"""Serving's KV accounting per layer: a sliding-window layer (gpt-oss) holds min(tokens, window) tokens of a
sequence, a full-attention layer all of them; admission, block allocation, the device search, swap and the
disaggregated transfer all use that rule, and a model without sliding windows is sized as before."""
from __future__ import annotations

import math
import warnings
from functools import cache

import numpy as np
import pytest

from archsim.config.hf import workload_from_hf_config
from archsim.config.workload import load_workload
from archsim.graph.params import kv_bytes_per_sequence
from archsim.graph.precision import precision_from_names
from archsim.mapping.parallelism import Parallelism
from archsim.serving.config import ReplicaSpec, SchedulerSpec, make_scheduler
from archsim.serving.cost_model import CostModelIteration, KvFit, layout_deployment
from archsim.serving.kvcache import FULL_ATTENTION, KvLayout
from archsim.serving.requests import Request
from archsim.serving.sequence import Seq
from archsim.serving.slo import throughput_at_slo

ROOT = __import__("pathlib").Path(__file__).resolve().parents[2]
GPT_OSS_20B = ROOT / "tests/data/hf_configs/gpt-oss-20b/config.json"
# gpt-oss: every other layer attends the last 128 keys (config.json sliding_window, layer_types)
WINDOW = 128
GPT_OSS = KvLayout(groups=((None, 1), (WINDOW, 1)))


@cache
def _gpt_oss_20b():
    """gpt-oss-20b's model record (the config's unmodelled-fields warning is tested in tests/config)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return workload_from_hf_config(str(GPT_OSS_20B)).model


def _replica(capacity_tokens: int, layout: KvLayout, kv_bytes_per_token: float = 1.0) -> ReplicaSpec:
    return ReplicaSpec(devices=1, kv_capacity_tokens=capacity_tokens, kv_bytes_per_token=kv_bytes_per_token,
                       peak_flop_per_s=1.0, peak_bytes_per_s=1.0, kv_layout=layout)


def _admitted(replica: ReplicaSpec, prompt: int, output: int, n: int = 100, block: int = 16) -> int:
    """Sequences of ``prompt`` + ``output`` tokens the continuous scheduler admits at once from a queue of ``n``."""
    sched = make_scheduler(SchedulerSpec(kind="continuous", max_seqs=1000, token_budget=10**9, block_tokens=block),
                           replica, np.random.default_rng(0))
    for i in range(n):
        assert sched.add(Seq(Request(id=i, arrival_s=0.0, prompt_tokens=prompt, output_tokens=output)), 0.0)
    plan = sched.next_plan(0.0)
    return len(plan.prefill)


def test_layout_of_gpt_oss_groups_layers_by_window():
    """gpt-oss-20b: 12 full + 12 sliding layers -> one unit of each (gcd 12); DeepSeek-V3: one full group."""
    model = _gpt_oss_20b()
    assert KvLayout.of(model.attention_window(i) for i in range(model.num_hidden_layers)) == GPT_OSS
    assert KvLayout.of([None] * 61) == FULL_ATTENTION and KvLayout.of([None] * 61).units == 1
    # 3 sliding : 1 full (a Llama-4-like ratio): gcd 1 of (1, 3) -> units 1 + 3
    assert KvLayout.of([64, 64, 64, None]).groups == ((None, 1), (64, 3))


def test_blocks_of_a_sequence_by_hand():
    """1000 tokens, 16-token blocks: the full layers ceil(1000/16) = 63 blocks, the sliding ones ceil(128/16) = 8;
    100 tokens: 7 + 7 (the window is not yet full)."""
    assert GPT_OSS.blocks(1000, 16) == 63 + 8
    assert GPT_OSS.blocks(100, 16) == 7 + 7
    assert FULL_ATTENTION.blocks(1000, 16) == 63
    assert list(GPT_OSS.blocks_many(np.array([100, 1000, 129]), 16)) == [14, 71, 9 + 8]


def test_concurrent_sequences_that_fit_by_hand():
    """A 10,000-token cache (a token in every layer), 16-token blocks, prompts of 1000 tokens (+ 2 output).
    Without windows: 10,000 // 16 = 625 blocks, 63 per prompt -> 625 // 63 = 9 sequences.
    gpt-oss: the cache is 10,000 tokens in each of the 2 layer units = 20,000 // 16 = 1250 blocks, each prompt
    63 + 8 = 71 blocks -> 1250 // 71 = 17 sequences (17 x 71 = 1207, 18 x 71 = 1278 > 1250)."""
    assert _admitted(_replica(10_000, FULL_ATTENTION), 1000, 2) == 9
    assert _admitted(_replica(10_000, GPT_OSS), 1000, 2) == 17
    # short prompts inside the window: every layer holds all 100 tokens, so the window saves nothing: 625 // 7 = 89
    # without windows, 1250 // 14 = 89 with them
    assert _admitted(_replica(10_000, FULL_ATTENTION), 100, 2) == _admitted(_replica(10_000, GPT_OSS), 100, 2) == 89


def test_a_request_longer_than_the_capacity_fits_when_half_its_layers_slide():
    """15,000 tokens in a 10,000-token cache: 2 x 10,000 units hold 15,000 + 128 of them, so the scheduler accepts
    it and the device search counts it as fitting; without windows neither does."""
    seq = Seq(Request(id=0, arrival_s=0.0, prompt_tokens=14_000, output_tokens=1_000))
    windowed = make_scheduler(SchedulerSpec(kind="continuous"), _replica(10_000, GPT_OSS), np.random.default_rng(0))
    full = make_scheduler(SchedulerSpec(kind="continuous"), _replica(10_000, FULL_ATTENTION), np.random.default_rng(0))
    assert windowed.fits(seq) and not full.fits(seq)
    assert KvFit(model=None, replica=_replica(10_000, GPT_OSS), need=15_000).fits
    assert not KvFit(model=None, replica=_replica(10_000, FULL_ATTENTION), need=15_000).fits


def test_decode_blocks_stop_growing_in_sliding_layers():
    """A decoding sequence past the window takes new blocks for its full layers only: 16 decode steps from 1000
    cached tokens (1001 after the first step's token) cross one 16-token boundary -> one more block, not two."""
    sched = make_scheduler(SchedulerSpec(kind="continuous", token_budget=10**6), _replica(10_000, GPT_OSS),
                           np.random.default_rng(0))
    sched.add(Seq(Request(id=0, arrival_s=0.0, prompt_tokens=1000, output_tokens=100)), 0.0)
    t = 0.0
    sched.complete(sched.next_plan(t), t)          # prefill: 71 blocks, first token
    assert sched.kv.used == 71
    for _ in range(16):                            # the cache grows from 1000 to 1016 tokens
        t += 1.0
        sched.complete(sched.next_plan(t), t)
    # the next step writes token 1017: full layers ceil(1017 / 16) = 64 blocks, sliding ones still 8
    sched.next_plan(t + 1.0)
    assert sched.kv.used == 64 + 8


def test_swap_moves_the_bytes_a_sequence_holds():
    """Preempted by swap at 1000 cached tokens: full layers move 1000 tokens, sliding ones 128; with 2 of the 4 bytes
    per token in each, 2 x 1000 + 2 x 128 = 2256 bytes (4000 without windows)."""
    for layout, expected in ((GPT_OSS, 2 * 1000 + 2 * 128), (FULL_ATTENTION, 4 * 1000)):
        sched = make_scheduler(SchedulerSpec(kind="continuous", preemption="swap"), _replica(10_000, layout, 4.0),
                               np.random.default_rng(0))
        seq = Seq(Request(id=0, arrival_s=0.0, prompt_tokens=1000, output_tokens=10))
        sched.add(seq, 0.0)
        sched.complete(sched.next_plan(0.0), 0.0)
        sched._preempt_latest()
        assert seq.kv_tokens == 1000 and sched.swap_bytes_total == expected


def test_sequence_bytes_equal_the_graph_rule():
    """The replica's bytes per sequence are graph.params.kv_bytes_per_sequence, at contexts inside and past the
    window; gpt-oss-20b bf16: 24 layers x 2 x 8 kv heads x 64 x 2 B = 49,152 B per token in every layer."""
    model = _gpt_oss_20b()
    precision = precision_from_names("bf16", "bf16", "bf16")
    layout = KvLayout.of(model.attention_window(i) for i in range(model.num_hidden_layers))
    per_token = 24 * 2 * 8 * 64 * 2
    replica = _replica(1, layout, per_token)
    for tokens in (1, 100, 128, 129, 5000):
        expected = kv_bytes_per_sequence(model, tokens, precision.kv_cache)
        assert replica.kv_sequence_bytes(tokens) == expected
        assert expected == 12 * 2 * 8 * 64 * 2 * (tokens + min(tokens, WINDOW))


@pytest.fixture(scope="module")
def gpt_oss_20b_replica(h100):
    model = _gpt_oss_20b()
    precision = precision_from_names("bf16", "bf16", "bf16", expert_weights="mxfp4")
    it = CostModelIteration(deployment=layout_deployment(model, h100, precision, Parallelism()), max_seqs=64,
                            max_context=9216)
    return it, it.replica()


def test_gpt_oss_20b_on_one_h100_holds_the_hand_count(gpt_oss_20b_replica):
    """gpt-oss-20b on one H100 (bf16 KV): the capacity C is (80 GB x 0.9 - weights) / 49,152 B (a token in all 24
    layers); the cache has 2C // 16 blocks, a 9,216-token sequence 576 + 8 of them. Concurrent sequences:
    (2C // 16) // 584, against (C // 16) // 576 when every layer held the whole context (~1.97x)."""
    it, replica = gpt_oss_20b_replica
    free, _ = it._free_bytes(0.9)
    capacity = math.floor(free / (24 * 2 * 8 * 64 * 2))
    assert replica.kv_capacity_tokens == capacity and replica.kv_layout == GPT_OSS
    hand = (2 * capacity // 16) // (9216 // 16 + WINDOW // 16)
    full = (capacity // 16) // (9216 // 16)
    assert _admitted(replica, 9215, 1, n=hand + 5) == hand
    assert hand > 1.9 * full
    # the token-level count the SLO scan uses: 2C // (9216 + 128)
    assert replica.kv_layout.sequences_that_fit(capacity, 9216) == 2 * capacity // (9216 + WINDOW)


def test_models_without_windows_are_sized_as_before(h100):
    """Llama-3.1-405B (no sliding window): one full group; the cache's blocks are C // 16 and a 9,216-token
    sequence takes 576 of them, as when the allocator counted tokens of every layer."""
    wl = load_workload(ROOT / "workloads/llama3_405b.yaml")
    precision = precision_from_names(wl.scenario.weights, wl.scenario.activations, wl.scenario.kv_cache)
    it = CostModelIteration(deployment=layout_deployment(wl.model, h100, precision, Parallelism(tp=8, pp=2)),
                            max_seqs=64, max_context=9216)
    replica = it.replica()
    assert replica.kv_layout == FULL_ATTENTION
    sched = make_scheduler(SchedulerSpec(kind="continuous"), replica, np.random.default_rng(0))
    assert sched.kv.num_blocks == replica.kv_capacity_tokens // 16
    assert sched.kv.blocks_for(9216) == 576 and sched.kv.capacity_tokens == replica.kv_capacity_tokens // 16 * 16


def test_slo_scan_counts_sequences_under_the_layout():
    """throughput_at_slo stops at the sequences the cache holds: 10,000 tokens, 1000-token requests: 10 without
    windows (scan 1, 2, 4, 8), 2 x 10,000 // 1128 = 17 with them (scan reaches 16)."""
    class Flat:
        def iteration(self, batch):
            from archsim.serving.iteration import IterationCost
            return IterationCost(time_s=1e-3, energy_j=0.0, flops=0.0, hbm_bytes=0.0)

    for layout, largest in ((FULL_ATTENTION, 8), (GPT_OSS, 16)):
        point = throughput_at_slo(Flat(), _replica(10_000, layout), prompt=900, output=100, tpot_slo_s=1.0,
                                  max_seqs=1000)
        assert point.batch == largest
