"""Serving inputs checked up front: the request-count limit, seeds, the KV memory fraction and fixed degrees
that cannot split the model; one KV-fraction default shared by every caller."""
from pathlib import Path

import numpy as np
import pytest

from archsim.config.hardware import load_hardware
from archsim.config.workload import load_workload
from archsim.errors import ConfigError
from archsim.graph.precision import precision_from_names
from archsim.serving.arrivals import FixedRate, Poisson
from archsim.serving.cost_model import for_deployment
from archsim.serving.replicas import Longest, served_deployment
from archsim.serving.kvcache import DEFAULT_KV_MEMORY_FRACTION, check_kv_memory_fraction
from archsim.serving.lengths import Fixed
from archsim.serving.requests import (MAX_REQUESTS, LengthSampler, check_request_count, check_seed, generate,
                                     streams)

REPO = Path(__file__).resolve().parents[2]
LENGTHS = LengthSampler(prompt=Fixed(tokens=8), output=Fixed(tokens=4))


def test_request_limit_is_checked_before_drawing():
    assert MAX_REQUESTS == 10**6
    check_request_count(1.0, 1e6)  # exactly the limit: accepted
    assert len(generate(arrival=FixedRate(rate_per_s=4.0), lengths=LENGTHS, duration_s=2.0, seed=0)) == 8
    for rate, duration in ((1e9, 1.0), (1.0, 1e12), (2.0, 5e5 + 1)):
        with pytest.raises(ConfigError, match="rate x duration <= 1,000,000 requests"):
            generate(arrival=Poisson(rate_per_s=rate), lengths=LENGTHS, duration_s=duration, seed=0)


@pytest.mark.parametrize("seed", [-1, 1.5, True, "3"])
def test_bad_seed_is_a_config_error(seed):
    with pytest.raises(ConfigError, match="seed: expected an integer >= 0"):
        streams(seed)
    with pytest.raises(ConfigError, match="--seed: expected an integer >= 0"):
        check_seed(seed, "--seed")


def test_seed_zero_and_numpy_integers_accepted():
    assert check_seed(0) == 0 and check_seed(np.int64(7)) == 7


@pytest.mark.parametrize("fraction", [0, -0.1, 1.5, float("nan"), float("inf"), True])
def test_kv_memory_fraction_outside_0_1_rejected(fraction):
    with pytest.raises(ConfigError, match=r"expected a fraction of HBM in \(0, 1\]"):
        check_kv_memory_fraction(fraction)


def test_kv_memory_fraction_default_is_one_constant():
    import archsim.cli.serve as cli_serve
    from archsim.sim.serve_deploy import ServeOptions, with_stack_defaults

    assert DEFAULT_KV_MEMORY_FRACTION == 0.9  # vLLM EngineArgs gpu_memory_utilization default
    assert cli_serve.DEFAULT_KV_MEMORY_FRACTION is DEFAULT_KV_MEMORY_FRACTION
    # unset until a stack (or, without one, archsim's default) fills it
    assert with_stack_defaults(ServeOptions(workload="w", hw="h"), None).kv_memory_fraction == \
        DEFAULT_KV_MEMORY_FRACTION
    assert check_kv_memory_fraction(1) == 1.0  # the whole HBM is allowed


def _serve(wl, hw, overrides: dict, fraction: float = DEFAULT_KV_MEMORY_FRACTION):
    return served_deployment(wl, hw, longest=Longest(prompt=512, context=1024), output_len=512, max_seqs=8,
                             block_tokens=16, kv_memory_fraction=fraction, overrides=overrides)


def test_fixed_degrees_that_cannot_split_the_model_fail_before_any_search():
    wl = load_workload(REPO / "workloads/deepseek_v3.yaml")
    hw = load_hardware(REPO / "hardware/h100.yaml")
    # 3 does not divide DeepSeek-V3's 128 heads: the error names the shard, for auto and explicit devices
    for devices in ("auto", 3):
        with pytest.raises(ConfigError, match="shard.tp: expected a divisor of num_attention_heads=128, got 3"):
            _serve(wl, hw, {"devices": devices, "tp": 3})
    # 7 EP ranks cannot hold 256 + 0 expert slots evenly; 256 + 24 = 280 = 7 x 40 can
    with pytest.raises(ConfigError, match=r"moe_ep: expected a divisor of the expert slots n_routed_experts \+ "
                                          r"redundant_experts = 256 \+ 0 = 256 \(moe_ep, alias ep"):
        _serve(wl, hw, {"ep": 7})
    with pytest.raises(ConfigError, match="moe_ep: expected a divisor of the expert slots"):
        _serve(wl, hw, {"moe_ep": 7, "redundant_experts": 1})
    with pytest.raises(ConfigError, match="kv_memory_fraction: expected a fraction of HBM"):
        _serve(wl, hw, {"devices": 16}, fraction=1.5)
    # the layout-only path (archsim compare) checks the shard alike
    fp8 = precision_from_names("fp8")
    with pytest.raises(ConfigError, match="shard.tp: expected a divisor of num_attention_heads=128, got 3"):
        for_deployment(wl.model, hw, fp8, devices="auto", max_seqs=8, max_context=1024,
                       kv_memory_fraction=DEFAULT_KV_MEMORY_FRACTION, min_kv_tokens=1024, degrees={"tp": 3})


def test_redundant_experts_make_seven_ep_ranks_valid():
    # 256 + 24 = 280 slots over EP7 (40 per rank): the degree check passes. The search needs a count whose
    # pipeline stage holds whole EP7 groups (7 divides tp*dp) among 1, 2, 4, 8, 16, ... (whole 8-GPU nodes): 56 is
    # the first. One stage of 56 puts 40 of 256 experts' slots on a device (121 GB of weights > 80 GB), so the
    # auto pipeline depth is 2 (28 devices a stage, 62 GB each)
    wl = load_workload(REPO / "workloads/deepseek_v3.yaml")
    hw = load_hardware(REPO / "hardware/h100.yaml")
    served = _serve(wl, hw, {"ep": 7, "redundant_experts": 24})
    par = served.pool("decode").model.par
    assert (par.ep, par.redundant_experts, par.devices, par.pp, par.dp) == (7, 24, 56, 2, 28)


def test_closed_loop_stops_at_the_request_limit(monkeypatch):
    import archsim.sim.serve as serve
    from archsim.sim.serve_deploy import ServeOptions, run_deployment

    # the up-front bound (4 users x 2 s / shortest request) passes; the in-loop guarantee, lowered to 3
    # requests here, stops a run that would submit a 4th
    opts = ServeOptions(workload=str(REPO / "workloads/deepseek_v3.yaml"), hw=str(REPO / "hardware/h100.yaml"),
                        arrival="closed", users=4, duration=2.0, prompt_len="64", output_len="2")
    monkeypatch.setattr(serve, "MAX_REQUESTS", 3)
    with pytest.raises(ConfigError, match="closed_loop: expected at most 3 requests in a run, got 4"):
        run_deployment(opts)


def test_serve_on_10_15_devices_answers_without_nan(capsys):
    # 10^15 devices per replica: the decode set's rows grow with the sequences that exist (not max_seqs x dp,
    # 2.6e17 rows), and statistics of an empty run print as n/a, not nan
    from archsim.cli import main

    code = main(["serve", str(REPO / "workloads/deepseek_v3.yaml"), "--hw", str(REPO / "hardware/h100.yaml"),
                 "--devices", str(10**15), "--rate", "1", "--duration", "1"])
    out = capsys.readouterr().out
    assert code == 0
    assert "1000000000000000 devices" in out and "nan" not in out


def test_decode_set_grows_past_its_first_rows():
    from archsim.serving.continuous import _DecodeSet
    from archsim.serving.requests import Request
    from archsim.serving.sequence import Seq

    d = _DecodeSet(10**12)
    assert len(d.last) == 1024  # not 10^12 rows up front
    for i in range(3000):
        d.add(Seq(Request(id=i, arrival_s=0.0, prompt_tokens=4, output_tokens=9 + i)))
    assert d.n == 3000 and len(d.last) == 4096
    assert list(d.cols["out"][:3000]) == [9 + i for i in range(3000)]  # rows kept across two doublings
