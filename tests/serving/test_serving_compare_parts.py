"""Pieces of `archsim compare`: fine-tuning memory (hand-derived) and throughput under a TPOT target."""
from __future__ import annotations

from pathlib import Path

import pytest

from archsim.config.workload import load_workload
from archsim.serving.config import ReplicaSpec
from archsim.serving.finetune import finetune_memory
from archsim.serving.iteration import IterationBatch, IterationCost
from archsim.serving.slo import cycle, throughput_at_slo

ROOT = Path(__file__).resolve().parents[2]


def test_lora_parameters_of_deepseek_v3_by_hand():
    m = load_workload(ROOT / "workloads/deepseek_v3.yaml").model
    ft = finetune_memory(m, lora_rank=16)
    # rank r adds r * (in + out) per projection; DeepSeek-V3 MLA projections (in, out), config.json:
    per_layer = ((7168 + 1536)                # q_a_proj: hidden -> q_lora_rank
                 + (1536 + 128 * (128 + 64))  # q_b_proj: q_lora_rank -> heads * (nope + rope)
                 + (7168 + (512 + 64))        # kv_a_proj_with_mqa: hidden -> kv_lora_rank + rope
                 + (512 + 128 * (128 + 128))  # kv_b_proj: kv_lora_rank -> heads * (nope + v)
                 + (128 * 128 + 7168))        # o_proj: heads * v -> hidden
    assert per_layer == 99_392
    assert ft.lora_params == 16 * per_layer * 61 == 97_006_592
    # ZeRO sec. 3.1: 2 + 2 + 12 bytes per trained parameter; LoRA keeps the base in bf16 (2 bytes)
    from archsim.graph.params import count_params
    total = count_params(m).total
    assert ft.full_bytes == 16 * total
    assert ft.lora_bytes == 2 * total + 16 * ft.lora_params


class _Linear:
    """Prefill: 1 ms per prompt token; decode: 10 ms + 1 ms per sequence (test parameters)."""

    def iteration(self, b: IterationBatch) -> IterationCost:
        t = 1e-3 * b.prefill_tokens + ((10e-3 + 1e-3 * b.decode_seqs) if b.decode_seqs else 0.0)
        return IterationCost(time_s=t, energy_j=0.0, flops=0.0, hbm_bytes=0.0)


def test_cycle_and_slo_batch_by_hand():
    # batch b, prompt 100, output 11: prefill b * 0.1 s, then 10 decode steps of (10 + b) ms
    seconds, tokens = cycle(_Linear(), batch=4, prompt=100, output=11)
    assert seconds == pytest.approx(0.4 + 10 * 0.014) and tokens == 44
    # effective TPOT = cycle / 11: b=1 0.0191, b=2 0.0291, b=4 0.0491, b=8 0.0891 s; a 0.05 s target allows b = 4
    replica = ReplicaSpec(devices=2, kv_capacity_tokens=10_000, kv_bytes_per_token=1.0, peak_flop_per_s=1.0,
                          peak_bytes_per_s=1.0)
    point = throughput_at_slo(_Linear(), replica, prompt=100, output=11, tpot_slo_s=0.05, max_seqs=64)
    assert point.batch == 4 and point.meets_slo
    assert point.output_tokens_per_s == pytest.approx(44 / 0.54)
    # the KV cache caps the batch too: 250 tokens hold 2 contexts of 111
    small = ReplicaSpec(**{**replica.__dict__, "kv_capacity_tokens": 250})
    assert throughput_at_slo(_Linear(), small, prompt=100, output=11, tpot_slo_s=0.05, max_seqs=64).batch == 2
