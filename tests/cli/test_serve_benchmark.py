"""``archsim serve`` as a benchmark client: --num-prompts / --max-concurrency / --rate / --burstiness / ramp-up /
--random-range-ratio / --warmup-requests, the ``benchmark`` JSON under vllm bench serve's names, goodput only with
an SLO, and one time syntax for every time-valued flag of serve and plan."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from archsim.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[2]
DSV3 = str(ROOT / "workloads/deepseek_v3.yaml")
H100 = str(ROOT / "hardware/h100.yaml")
BENCH = ["serve", DSV3, "--hw", H100, "--prompt-len", "256", "--output-len", "16", "--max-seqs", "16"]

# The keys `vllm bench serve --save-result` writes for these metrics (vllm-project/vllm,
# vllm/benchmarks/serve.py: the ``result`` dict of ``benchmark`` and ``process_one_metric``'s
# f"mean_{metric}_ms", f"median_{metric}_ms", f"std_{metric}_ms", f"p{p}_{metric}_ms").
VLLM_KEYS = {"duration", "completed", "failed", "total_input_tokens", "total_output_tokens", "request_throughput",
             "request_goodput", "output_throughput", "total_token_throughput", "max_concurrent_requests",
             *(f"{stat}_{metric}_ms" for metric in ("ttft", "tpot", "itl", "e2el")
               for stat in ("mean", "median", "std", "p90", "p99"))}


def _json(capsys, *flags) -> dict:
    assert main([*BENCH, *flags, "--format", "json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_benchmark_json_has_vllms_keys_and_counts(capsys):
    # 30 prompts of 256 + 16 tokens, at most 4 in flight, sent at 10 requests/s with burstiness 0.5
    data = _json(capsys, "--num-prompts", "30", "--max-concurrency", "4", "--rate", "10", "--burstiness", "0.5")
    b = data["benchmark"]
    assert VLLM_KEYS <= set(b), VLLM_KEYS - set(b)
    assert (b["completed"], b["failed"]) == (30, 0)
    assert (b["total_input_tokens"], b["total_output_tokens"]) == (30 * 256, 30 * 16)
    assert b["output_throughput"] == pytest.approx(30 * 16 / b["duration"])
    assert b["total_token_throughput"] == pytest.approx(30 * (256 + 16) / b["duration"])
    assert 1 <= b["max_concurrent_requests"] <= 4
    assert b["request_goodput"] is None and "goodput" in data  # no SLO: no goodput (the old section stays)
    assert b["mean_ttft_ms"] == pytest.approx(1e3 * data["ttft_s"]["mean"])  # same requests, ms vs s
    assert data["measurement"]["steady_state"] in (True, False) and data["measurement"]["steady_state_reason"]


def test_goodput_is_printed_only_with_an_slo(capsys):
    assert main([*BENCH, "--num-prompts", "8"]) == 0
    plain = capsys.readouterr().out
    assert "goodput" not in plain and "benchmark  8 completed, 0 failed" in plain
    assert main([*BENCH, "--num-prompts", "8", "--slo-ttft", "30s"]) == 0
    assert "goodput" in capsys.readouterr().out


def test_warmup_and_range_ratio_reach_the_output(capsys):
    # 1,024-token prompts with r = 0.5 span [512, 1536]; 5 of 25 prompts are warm-up
    data = _json(capsys, "--num-prompts", "25", "--warmup-requests", "5", "--random-range-ratio", "0.5",
                 "--prompt-len", "1024", "--max-concurrency", "5")
    m = data["measurement"]
    assert (m["warmup_requests"], m["measured_requests"], data["benchmark"]["completed"]) == (5, 20, 20)
    assert data["requests"]["completed"] == 25
    mean_prompt = data["benchmark"]["total_input_tokens"] / 20
    assert 512 <= mean_prompt <= 1536 and mean_prompt != 1024
    assert main([*BENCH, "--num-prompts", "25", "--warmup-requests", "5", "--max-concurrency", "5"]) == 0
    assert "the first 5 (warm-up) requests are left out" in capsys.readouterr().out


@pytest.mark.parametrize("flags, where", [
    (["--num-prompts", "5", "--duration", "10"], "--duration"),
    (["--num-prompts", "5", "--arrival", "gamma"], "--arrival"),
    (["--rate", "1", "--burstiness", "2"], "--burstiness"),
    (["--num-prompts", "5", "--ramp-up-strategy", "linear", "--ramp-up-start-rps", "1"], "--ramp-up-end-rps"),
    (["--num-prompts", "5", "--rate", "2", "--ramp-up-strategy", "linear", "--ramp-up-start-rps", "1",
      "--ramp-up-end-rps", "2"], "--rate"),
    (["--num-prompts", "5", "--warmup-requests", "5"], "--warmup-requests"),
    (["--arrival", "closed", "--users", "2", "--max-concurrency", "2"], "--max-concurrency"),
    (["--rate", "inf"], "--rate"),
])
def test_benchmark_flag_conflicts_are_one_line_errors(capsys, flags, where):
    assert main([*BENCH, *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and where in err


def test_one_time_syntax_for_serve_and_plan():
    parser = build_parser()
    plan = ["plan", DSV3, "--hw", H100, "--devices", "16"]
    serve = ["serve", DSV3, "--hw", H100]
    # "2", "2s", "2 s" and "2000ms" are the same 2 s for serve and plan alike; "200 ms" is 0.2 s
    for text in ("2", "2s", "2 s", "2000ms"):
        assert parser.parse_args([*plan, "--slo-ttft", text]).slo_ttft == pytest.approx(2.0)
        assert parser.parse_args([*serve, "--slo-ttft", text]).slo_ttft == pytest.approx(2.0)
    assert parser.parse_args([*plan, "--slo-tpot", "200 ms"]).slo_tpot == pytest.approx(0.2)
    args = parser.parse_args([*serve, "--slo-tpot", "50ms", "--duration", "1.5s", "--think-time", "250ms",
                              "--timeout", "0"])
    assert (args.slo_tpot, args.duration, args.think_time, args.timeout) == pytest.approx((0.05, 1.5, 0.25, 0.0))


@pytest.mark.parametrize("argv", [
    ["plan", DSV3, "--hw", H100, "--devices", "16", "--slo-ttft", "2 parsecs"],
    ["serve", DSV3, "--hw", H100, "--slo-ttft", "0"],
    ["serve", DSV3, "--hw", H100, "--duration=-5s"],
    ["serve", DSV3, "--hw", H100, "--think-time", "2 GB"],
    ["serve", DSV3, "--hw", H100, "--timeout", "inf"],
])
def test_bad_times_are_one_line_argparse_errors(capsys, argv):
    with pytest.raises(SystemExit) as stop:
        main(argv)
    err = capsys.readouterr().err.strip()
    assert stop.value.code == 2 and err.count("\n") == 0
    assert err.startswith("archsim: error: argument --") and "a time with its unit (2s, 200ms, 200 ms)" in err


def test_ramp_up_run_sends_every_prompt(capsys):
    data = _json(capsys, "--num-prompts", "12", "--ramp-up-strategy", "exponential", "--ramp-up-start-rps", "1",
                 "--ramp-up-end-rps", "8")
    assert data["benchmark"]["completed"] + data["benchmark"]["failed"] == 12
    # the 11 gaps at rates 1 x 8^(i/11), i = 0..10, average at least 1/8 s: the last send is after 11/8 s
    assert data["little"]["window_s"] > 11 / 8
