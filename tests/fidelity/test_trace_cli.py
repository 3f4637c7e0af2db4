"""``archsim validate --trace``: DeepSeek's shipped training trace beside the model, as table, JSON and CSV."""
import csv
import io
import json
from pathlib import Path

import pytest

from archsim.cli import main

REPO = Path(__file__).resolve().parents[2]
TRACE = str(REPO / "validation" / "deepseek_profile_train.json.gz")


def test_validate_trace_json_matches_the_trace_and_the_model(capsys):
    assert main(["validate", "--trace", TRACE, "--workload", "deepseek_v3", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    ops = {r["name"]: r for r in data["ops"]}
    # the trace side: DeepEP's 8 combine kernels, 16 expert GEMMs; the model side prices both
    assert ops["combine"]["count"] == 8 and ops["expert_gemm"]["count"] == 16
    assert ops["expert_gemm"]["modelled_s"] > 0 and ops["combine"]["modelled_s"] > 0
    assert ops["expert_gemm"]["ratio"] == pytest.approx(ops["expert_gemm"]["modelled_s"]
                                                        / ops["expert_gemm"]["measured_s"])
    # the notify kernels are priced at their messages' link latency (training.ep_notify_s: 4 MoE layers x
    # (21.19 + 3 x 12.26) us = 0.232 ms), far below the trace's 33 ms of waiting (docs/training_trace.md)
    assert ops["notify"]["modelled_s"] == pytest.approx(4 * (21.19e-6 + 3 * 12.26e-6))
    assert ops["notify"]["ratio"] < 0.02
    streams = {r["name"].split(" (")[0]: r for r in data["streams"]}
    assert streams["main compute stream 7"]["measured_s"] == pytest.approx(118.2e-3, abs=0.05e-3)
    assert data["unknown"] == []


def test_validate_trace_csv_and_table(capsys):
    assert main(["validate", "--trace", TRACE, "--workload", "deepseek_v3", "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert {r["table"] for r in rows} == {"streams", "ops", "passes"}
    wgrad = next(r for r in rows if r["table"] == "ops" and r["name"] == "wgrad_gemm")
    assert int(wgrad["count"]) == 60
    assert main(["validate", "--trace", TRACE, "--workload", "deepseek_v3"]) == 0
    out = capsys.readouterr().out
    assert "| op | kernels | measured ms | modelled ms | ratio | within 15% |" in out


def test_validate_trace_alone_without_a_workload(capsys):
    """Without --workload the trace is read alone (any user's trace): busy and summed time per op and stream."""
    assert main(["validate", "--trace", TRACE]) == 0
    out = capsys.readouterr().out
    assert "| 7 | 907 | 118.17 |" in out
    # the Wgrad GEMMs overlap across streams 7 and 23: busy below summed
    assert "| wgrad_gemm | 60 | 27.49 | 32.76 |" in out
    assert main(["validate", "--trace", TRACE, "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["ops"]["combine"]["count"] == 8 and data["unknown"] == []
    assert main(["validate", "--trace", TRACE, "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert sum(int(r["count"]) for r in rows if r["table"] == "ops") == 963


@pytest.mark.parametrize("argv, message", [
    (["--trace", TRACE, "--workload", "kimi_k2"], "training: section"),
    (["--trace", TRACE, "--workload", "deepseek_v3", "--moe-layers", "0"], "--moe-layers"),
    (["--trace", "no_such_trace.json", "--workload", "deepseek_v3"], "readable trace file"),
])
def test_validate_trace_bad_input_is_one_line(argv, message, capsys):
    assert main(["validate", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_deepseek_chunk_pair_ops_within_15_percent_of_the_trace(h800):
    """docs/training_trace.md: with the sustained GEMM clock, the FP32 Wgrad accumulation at DeepGEMM's Wgrad
    rate, FlashAttention's backward passes and expanded MLA's K/V assembly copies, these ops of the model's chunk
    pair are within 15% of DeepSeek's kernel trace (busy time); the FP8 casts, norms, RoPE, routing and DeepEP
    calls are not yet (documented there, guarded here so that they cannot silently pass 15% either way without
    the docs changing)."""
    from archsim.fidelity.profile_trace import read_trace
    from archsim.fidelity.trace_compare import compare_trace, published_recipe
    from archsim.config.workload import load_workload

    workload = load_workload("deepseek_v3")
    par, setup = published_recipe(workload)
    result = compare_trace(read_trace(TRACE), workload.model, h800, par, setup, moe_layers=4)
    ops = {r.name: r for r in result["ops"]}
    within = {name for name, r in ops.items() if r.within(0.15)}
    assert within == {"attention_forward", "attention_backward", "expert_gemm", "dense_gemm", "permute",
                      "activation", "wgrad_gemm", "elementwise"}
    # every op the model prices low is still low (none overshoots by more than 15%)
    assert all(r.ratio is None or r.ratio <= 1.15 for r in ops.values())
