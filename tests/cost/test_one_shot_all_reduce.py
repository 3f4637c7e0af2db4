"""A serving stack's one-shot custom all-reduce (cost/collectives.py ``one_shot``; config/stack.py ``all_reduce``):
two flag barriers plus the p - 1 peers' buffers read over the scale-up link, inside one node."""
from __future__ import annotations

import copy

import pytest

from archsim.config.hardware import resolve_hardware
from archsim.config.stack import load_stack, stack_from_dict
from archsim.cost.collectives import price_collective
from archsim.errors import ConfigError
from tests.config.test_stack import STACK


def test_one_shot_by_hand():
    hw = resolve_hardware("h100")
    link = hw.node.scale_up
    # 8 chips, 128 KiB each: 2 x alpha + 7 x 131072 B / (bandwidth x achievable fraction), no half-bandwidth term
    assert link.half_bandwidth_bytes == 0
    expected = 2 * link.latency_s + 7 * 131072 / (link.bandwidth_bytes_per_s * link.achievable_fraction)
    c = price_collective("all_reduce", 131072, 8, hw, algorithm="one_shot")
    assert (c.algorithm, c.steps, c.scale_up_bytes, c.scale_out_bytes) == ("one_shot", 2, 7 * 131072, 0.0)
    assert c.time_s == pytest.approx(expected, rel=1e-12)


def test_one_shot_is_an_in_node_all_reduce_only():
    hw = resolve_hardware("h100")
    across = price_collective("all_reduce", 131072, 16, hw, algorithm="one_shot")  # 16 chips: two 8-GPU nodes
    assert across == price_collective("all_reduce", 131072, 16, hw)
    gather = price_collective("all_gather", 131072, 8, hw, algorithm="one_shot")
    assert gather == price_collective("all_gather", 131072, 8, hw)


def test_below_the_eager_measurements_of_vllms_kernel_where_the_tree_is_above():
    """sgl-project/sglang#2904 (H100, vLLM's custom all-reduce, 100 back-to-back eager calls on FP32 tensors, so
    each time is an upper bound on the kernel): TP8 128 KiB 11.8 us, TP4 128 KiB 9.2 us, TP8 2 KiB 10.1 us."""
    hw = resolve_hardware("h100")
    for group, nbytes, measured_us in ((8, 131072, 11.8), (4, 131072, 9.2), (8, 2048, 10.1)):
        assert price_collective("all_reduce", nbytes, group, hw, algorithm="one_shot").time_s < measured_us * 1e-6
    assert price_collective("all_reduce", 131072, 8, hw).time_s > 11.8e-6  # NCCL-style tree: 6 latencies


# vLLM's custom all-reduce thresholds (csrc/custom_all_reduce.cuh, as a walkthrough of the file quotes them [S]):
# one-shot below 512 KB at up to 4 GPUs and 256 KB at up to 8; at 2 GPUs always (up to its 8 MiB buffer)
VLLM_ONE_SHOT = {"families": ["hopper"], "one_shot": [{"up_to": 2, "below": "8 MiB"}, {"up_to": 4, "below": "512 KiB"},
                                                       {"up_to": 8, "below": "256 KiB"}]}


def test_stack_picks_one_shot_below_its_threshold():
    s = stack_from_dict({**STACK, "all_reduce": VLLM_ONE_SHOT})
    h100, mi300x = resolve_hardware("h100"), resolve_hardware("mi300x")
    assert s.one_shot_all_reduce == ((2, 8 * 2**20), (4, 512 * 2**10), (8, 256 * 2**10))
    assert s.all_reduce_algorithm(h100, 256 * 1024 - 1, 8) == "one_shot"
    assert s.all_reduce_algorithm(h100, 256 * 1024, 8) == "auto"      # two-shot: priced as NCCL-style
    assert s.all_reduce_algorithm(h100, 300 * 1024, 3) == "one_shot"  # up to 4 GPUs: 512 KiB
    assert s.all_reduce_algorithm(h100, 10, 16) == "auto"             # beyond one node's group sizes
    assert s.all_reduce_algorithm(mi300x, 10, 8) == "auto"            # only on the listed families
    assert stack_from_dict(STACK).all_reduce_algorithm(h100, 10, 8) == "auto"  # no all_reduce section
    assert load_stack("vllm").one_shot_all_reduce == ()  # not enabled in the shipped stacks (docs/stacks.md)


def test_a_stack_with_one_shot_prices_the_tp_all_reduce_with_it():
    """Llama-3.1-70B TP4 decode at batch 8 on H100: 160 all-reduces of 8 x 8192 x 2 B = 128 KiB per step."""
    import warnings

    import archsim
    from archsim.paths import data_dir

    def comm(stack):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return archsim.estimate(data_dir("validation") / "whatif_models" / "Llama-3.1-70B", "h100", devices=4, tp=4,
                                    batch=8, prompt_len=500, output_len=380, phase="decode", kv_cache="bf16",
                                    stack=stack).decode.communication_s

    hw = resolve_hardware("h100")
    base = stack_from_dict({**STACK, "kernels": {"hopper": {}}})
    one_shot = stack_from_dict({**STACK, "kernels": {"hopper": {}}, "all_reduce": VLLM_ONE_SHOT})
    per_call = {alg: price_collective("all_reduce", 8 * 8192 * 2, 4, hw, algorithm=alg).time_s
                for alg in ("auto", "one_shot")}
    assert comm(base) == pytest.approx(160 * per_call["auto"], rel=1e-9)
    assert comm(one_shot) == pytest.approx(160 * per_call["one_shot"], rel=1e-9)


def test_bad_thresholds_name_the_field():
    data = copy.deepcopy(STACK)
    data["all_reduce"] = {"families": ["hopper"],
                          "one_shot": [{"up_to": 8, "below": "256 KiB"}, {"up_to": 4, "below": "512 KiB"}]}
    with pytest.raises(ConfigError, match="all_reduce.one_shot"):
        stack_from_dict(data)
    data["all_reduce"] = {"families": ["hopper"], "one_shot": [{"up_to": 8, "below": "256 KiB", "above": 1}]}
    with pytest.raises(ConfigError, match="above"):
        stack_from_dict(data)
    data["all_reduce"] = {"families": "hopper", "one_shot": [{"up_to": 8, "below": "256 KiB"}]}
    with pytest.raises(ConfigError, match="all_reduce.families"):
        stack_from_dict(data)
