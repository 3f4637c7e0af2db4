"""``archsim serve --stack``: the stack's defaults (chunked scheduler, token budget, KV page), its request overhead
in every TTFT and its host time in every decode iteration."""
from __future__ import annotations

import json

import pytest

from archsim.cli import main
from archsim.config.stack import resolve_stack

BASE = ["serve", "workloads/deepseek_v3.yaml", "--hw", "hardware/h200.yaml", "--devices", "8", "--tp", "8",
        "--num-prompts", "24", "--max-concurrency", "8", "--prompt-len", "2000", "--output-len", "100",
        "--format", "json"]


def serve(capsys, *extra):
    assert main(BASE + list(extra)) == 0
    return json.loads(capsys.readouterr().out)


def test_serve_with_a_stack(capsys):
    plain, vllm = serve(capsys), serve(capsys, "--stack", "vllm")
    stack = resolve_stack("vllm")
    dep = vllm["deployment"]
    assert dep["stack"]["name"] == "vllm" and dep["scheduler"] == "chunked" and plain["deployment"]["scheduler"] == \
        "continuous"
    # every request waits the stack's fixed request overhead before it reaches the scheduler
    assert vllm["ttft_breakdown_s"]["overhead"] == pytest.approx(stack.host.request_s, rel=1e-9)
    assert plain["ttft_breakdown_s"]["overhead"] == 0.0
    # vLLM's host time is not overlapped: every decode iteration pays it on top of a slower library's GPU time
    assert not stack.host.overlapped
    assert vllm["benchmark"]["median_tpot_ms"] > plain["benchmark"]["median_tpot_ms"] + stack.host.iteration_s * 1e3


def test_the_stacks_differ(capsys):
    tpot = {name: serve(capsys, "--stack", name)["benchmark"]["median_tpot_ms"] for name in ("sglang", "vllm", "trtllm")}
    assert len({round(v, 6) for v in tpot.values()}) == 3, tpot
