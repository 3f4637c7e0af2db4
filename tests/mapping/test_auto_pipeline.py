"""Auto deployment of dense models uses pipeline stages; large device counts and deep models stay cheap to
search (grouped layer kinds, distinct stages, bounded divisor enumeration)."""
from math import ceil
from pathlib import Path

import pytest

from archsim.config.hardware import load_hardware
from archsim.config.workload import load_workload
from archsim.graph.precision import precision_from_names
from archsim.mapping.device_memory import kv_cache_bytes, memory_per_device, stage_layers
from archsim.mapping.parallel import Parallelism, candidate_device_counts, plan_layout
from archsim.mapping.weights import layer_weight_bytes, stage_weight_bytes

REPO = Path(__file__).resolve().parents[2]
BF16 = precision_from_names("bf16")
FP8 = precision_from_names("fp8")


@pytest.fixture(scope="module")
def h100():
    return load_hardware(REPO / "hardware/h100.yaml")


def _model(name):
    return load_workload(REPO / f"workloads/{name}.yaml").model


def test_llama_405b_bf16_auto_fits_on_the_smallest_count_with_a_pipeline(h100):
    m = _model("llama3_405b")
    # Llama-3.1-405B (h=16384, 126 layers, 128 heads of 128, 8 KV heads, FFN 53248, vocab 128256):
    # per layer q,o 16384^2 each + k,v 16384*1024 each + SwiGLU 3*16384*53248 + 2 norms of 16384
    layer = 2 * 16384**2 + 2 * 16384 * 1024 + 3 * 16384 * 53248 + 2 * 16384
    params = 126 * layer + 2 * 128256 * 16384 + 16384  # + embedding, lm_head, final norm
    assert params == 405_853_388_800
    weight_bytes = 2 * params  # BF16, no block scales
    capacity = h100.main_memory.capacity_bytes
    assert capacity == 80e9
    # the weights alone need ceil(811.7 GB / 80 GB) = 11 devices: 8 (one node) cannot hold them, so the
    # smallest searched count that can is the next candidate, 16 (two nodes)
    needed = ceil(weight_bytes / capacity)
    assert needed == 11
    smallest = min(n for n in candidate_device_counts(h100) if n >= needed)
    assert smallest == 16
    plan = plan_layout(m, h100, devices="auto", batch=1, prompt_len=4096, output_len=1024, precision=BF16)
    assert plan.fits
    assert plan.parallelism.devices == smallest
    assert plan.parallelism.pp > 1  # TP stops at a node (8 chips), so the second node must be a stage
    assert plan.parallelism.tp * plan.parallelism.pp * plan.parallelism.dp == 16
    assert plan.memory.weights_bytes >= weight_bytes / 16  # the worst stage holds at least an even share


def test_moe_auto_layouts_unchanged(h100):
    # DeepSeek-V3 and Kimi K2 in FP8 keep their attention-DP + EP layouts (pipeline depth 1) on H100
    for name in ("deepseek_v3", "kimi_k2"):
        plan = plan_layout(_model(name), h100, devices="auto", batch=1, prompt_len=4096, output_len=1024,
                           precision=FP8)
        assert plan.fits and plan.parallelism.tp == 1 and plan.parallelism.pp == 1, (name, plan.parallelism)


def test_grouped_stage_weights_equal_the_layer_by_layer_sum():
    m = _model("deepseek_v3")  # 3 dense layers then 58 MoE: stages mix both kinds
    for pp in (1, 2, 3, 7):
        for stage, layers in enumerate(stage_layers(m, pp)):
            grouped = stage_weight_bytes(m, FP8, tp=2, ep=8, layers=layers, first=False, last=False)
            by_layer: dict[str, float] = {}
            for layer in layers:
                for comp, value in layer_weight_bytes(m, layer, FP8, tp=2, ep=8).items():
                    by_layer[comp] = by_layer.get(comp, 0.0) + value
            assert set(grouped) == set(by_layer)  # (embedding / head / final norm excluded: first=last=False)
            for comp, value in by_layer.items():
                assert grouped[comp] == pytest.approx(value, rel=1e-12), (pp, stage, comp)


def test_worst_stage_over_distinct_stages_is_the_worst_of_all(h100):
    m = _model("deepseek_v3")
    for pp in (2, 5, 61):
        par = Parallelism(tp=1, ep=8, pp=pp, dp=8)
        worst = memory_per_device(m, par, FP8, capacity_bytes=h100.main_memory.capacity_bytes, batch=16,
                                  context=5120)
        # brute force over every stage: its exact weight bytes plus its KV cache
        totals = []
        for stage, layers in enumerate(stage_layers(m, pp)):
            w = sum(stage_weight_bytes(m, FP8, tp=1, ep=8, layers=layers, first=stage == 0,
                                       last=stage == pp - 1).values())
            totals.append(w + kv_cache_bytes(m, par, FP8, batch=16, context=5120, stage=stage))
        assert worst.total_bytes == pytest.approx(max(totals), rel=1e-12)
        assert worst.stage == totals.index(max(totals))


def test_absurd_device_count_resolves_without_enumerating_it(h100):
    # 10^15 devices: divisor searches are bounded by the node size, the expert count and the depth
    plan = plan_layout(_model("deepseek_v3"), h100, devices=10**15, batch=1, prompt_len=128, output_len=16,
                       precision=FP8)
    par = plan.parallelism
    assert par.devices == 10**15 and par.tp * par.pp * par.dp * par.cp == 10**15


def test_divisor_search_is_bounded_by_the_limit_not_the_device_count():
    from itertools import islice

    from archsim.mapping.parallel import divisors
    from archsim.mapping.plan import enumerate_layouts

    # 10^15 = 2^15 * 5^15: its divisors up to 8 are 1, 2, 4, 5, 8 — found without scanning to 10^15
    assert list(divisors(10 ** 15, 8)) == [1, 2, 4, 5, 8]
    model = load_workload("workloads/deepseek_v3.yaml").model
    first = list(islice(enumerate_layouts(model, load_hardware("hardware/h800.yaml"), 10 ** 15), 3))
    assert first and all(p.devices == 10 ** 15 for p in first)
