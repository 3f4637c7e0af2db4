"""Smoke tests of ``archsim serve`` and ``archsim compare`` through archsim.cli.main."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from archsim.cli import main

ROOT = Path(__file__).resolve().parents[2]
DSV3 = str(ROOT / "workloads/deepseek_v3.yaml")
LLAMA = str(ROOT / "workloads/llama3_405b.yaml")
H100 = str(ROOT / "hardware/h100.yaml")
SMALL = ["--rate", "2", "--duration", "5", "--prompt-len", "uniform:100:300", "--output-len", "uniform:8:24",
         "--max-seqs", "16"]


def test_serve_json_has_the_promised_keys(capsys, tmp_path):
    csv = tmp_path / "requests.csv"
    assert main(["serve", DSV3, "--hw", H100, *SMALL, "--format", "json", "--requests-csv", str(csv),
                 "--seed", "3"]) == 0
    data = json.loads(capsys.readouterr().out)
    for a, b in (("ttft_s", "p50"), ("ttft_s", "p99"), ("tpot_s", "p50"), ("tpot_s", "p99"),
                 ("throughput", "output_tokens_per_s"), ("requests", "completed"),
                 ("cost", "usd_per_million_output_tokens"), ("little", "mean_in_system"),
                 ("little", "rate_times_latency")):
        assert a in data and b in data[a], (a, b)
    assert data["requests"]["completed"] == data["requests"]["total"] > 0
    rows = csv.read_text().splitlines()
    assert rows[0].startswith("id,arrival_s,first_token_s,finish_s") and len(rows) == data["requests"]["completed"] + 1


def test_serve_table_with_a_trace_and_chunked(capsys, tmp_path):
    trace = tmp_path / "t.csv"
    trace.write_text("arrival_s,prompt_tokens,output_tokens\n0.0,200,10\n0.1,300,12\n0.2,150,4\n")
    assert main(["serve", DSV3, "--hw", H100, "--trace-file", str(trace), "--duration", "1",
                 "--scheduler", "chunked", "--token-budget", "256"]) == 0
    out = capsys.readouterr().out
    assert "completed 3" in out and "ttft_s" in out


def test_serve_bad_trace_is_one_line_exit_2(capsys, tmp_path):
    trace = tmp_path / "bad.csv"
    trace.write_text("arrival_s,prompt_tokens,output_tokens\n0.0,abc,10\n")
    assert main(["serve", DSV3, "--hw", H100, "--trace-file", str(trace)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "line 2.prompt_tokens" in err and str(trace) in err


@pytest.mark.parametrize("flags, where", [
    (["--rate", "1", "--speculative", "x"], "--speculative"),
    (["--rate", "1", "--prompt-len", "uniform:9:1"], "--prompt-len"),
    (["--duration", "5"], "--rate"),
])
def test_serve_bad_flags(capsys, flags, where):
    assert main(["serve", DSV3, "--hw", H100, *flags]) == 2
    assert where in capsys.readouterr().err


def test_serve_plot(capsys, tmp_path):
    """With matplotlib a PNG is written; without it, --plot is a one-line ConfigError (exit 2)."""
    path = tmp_path / "p.png"
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert main(["serve", DSV3, "--hw", H100, *SMALL, "--plot", str(path)]) == 2
        assert "--plot" in capsys.readouterr().err
        return
    assert main(["serve", DSV3, "--hw", H100, *SMALL, "--plot", str(path)]) == 0
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_compare_json(capsys):
    assert main(["compare", DSV3, LLAMA, "--hw", H100, "--prompt-len", "1024", "--output-len", "128",
                 "--format", "json", "--max-seqs", "32"]) == 0
    data = json.loads(capsys.readouterr().out)
    a, b = data["models"]
    assert a["total_params"] > b["total_params"] and a["active_params"] < b["active_params"]
    # MLA latent (61 x 576 x 2 B) vs GQA K and V (126 x 2 x 8 x 128 x 2 B), ISCA25 Table 1 (Zhao et al.,
    # ISCA 2025, arXiv 2505.09343, via bzhng-development/summary-of-some-paper-in-cuda [S])
    assert a["kv_bytes_per_token"] == 70_272 and b["kv_bytes_per_token"] == 516_096
    for row in (a, b):
        assert row["serving"]["output_tokens_per_s"] > 0 and row["serving"]["usd_per_million_output_tokens"] > 0
        # ZeRO: 16 bytes per parameter for full fine-tuning; LoRA keeps 2 per frozen parameter plus its adapters
        assert row["finetune"]["full_total_bytes"] == 16 * row["total_params"]
        assert row["finetune"]["lora_total_bytes"] == 2 * row["total_params"] + 16 * row["finetune"]["lora_params"]


def test_compare_table(capsys):
    assert main(["compare", DSV3, LLAMA, "--hw", H100, "--prompt-len", "512", "--output-len", "64",
                 "--max-seqs", "8"]) == 0
    out = capsys.readouterr().out
    assert "deepseek_v3" in out and "llama3_405b" in out and "KV bytes per token" in out


@pytest.mark.parametrize("flags", [
    ["--scheduler", "disagg", "--speculative", "1:0.8", "--rate", "2"],
    ["--arrival", "closed", "--users", "4", "--think-time", "0.5", "--scheduler", "static", "--timeout", "0.05"],
    ["--rate", "2", "--arrival", "gamma", "--cv", "3", "--scheduler", "dynamic", "--replicas", "2",
     "--router", "round_robin", "--prefix-hit-rate", "0.5"],
])
def test_serve_other_modes(capsys, flags):
    assert main(["serve", DSV3, "--hw", H100, "--duration", "4", "--prompt-len", "uniform:100:300",
                 "--output-len", "uniform:8:24", "--max-seqs", "16", "--format", "json", *flags]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["requests"]["completed"] == data["requests"]["total"] > 0
    if "disagg" in flags:
        assert data["requests"]["kv_transfers"] == data["requests"]["completed"]  # every output here is > 1 token


def test_serve_layout_errors_name_the_field(capsys):
    # tp 3 cannot split 128 heads: said before the layout on 16 devices is tried
    assert main(["serve", DSV3, "--hw", H100, "--rate", "1", "--devices", "16", "--tp", "3"]) == 2
    assert "shard.tp: expected a divisor of num_attention_heads=128" in capsys.readouterr().err
    # 32 EP ranks (moe_tp 1) do not divide a 16-device stage
    assert main(["serve", DSV3, "--hw", H100, "--rate", "1", "--devices", "16", "--moe-ep", "32"]) == 2
    assert "parallelism.moe_tp*ep" in capsys.readouterr().err
    # 671B FP8 parameters do not fit 8 x 80 GB with room for KV
    assert main(["serve", DSV3, "--hw", H100, "--rate", "1", "--devices", "8"]) == 2
    assert "memory.hbm.capacity" in capsys.readouterr().err
    # an A100 has no FP8 peak: said once for the auto search, not hidden behind "no device count fits"
    assert main(["serve", DSV3, "--hw", str(ROOT / "hardware/a100.yaml"), "--rate", "1"]) == 2
    assert "compute.tensor.peak.fp8: expected a peak for the GEMM dtype" in capsys.readouterr().err


def _serve_json(capsys, workload, *flags):
    assert main(["serve", workload, "--hw", str(ROOT / "hardware/h800.yaml"), "--devices", "16", *SMALL,
                 "--format", "json", *flags]) == 0
    return json.loads(capsys.readouterr().out)


def test_serve_honours_the_workloads_expert_load(capsys, tmp_path):
    # the workload's expert_load (as archsim run reads it) and --expert-load give the same skewed routing, whose
    # busiest EP rank makes decode steps slower than the uniform load's
    text = Path(DSV3).read_text()
    line = next(ln for ln in text.splitlines() if ln.startswith("  expert_load:"))
    skewed_workload = tmp_path / "dsv3_zipf.yaml"
    skewed_workload.write_text(text.replace(line, "  expert_load: {zipf: 1.2}"))
    uniform = _serve_json(capsys, DSV3)
    skewed = _serve_json(capsys, str(skewed_workload))
    flagged = _serve_json(capsys, DSV3, "--expert-load", "zipf:1.2")
    assert uniform["deployment"]["expert_load"] == {"kind": "uniform", "max_over_mean": 1.0}
    assert skewed["deployment"]["expert_load"]["kind"] == "zipf"
    assert skewed["deployment"]["expert_load"]["max_over_mean"] > 2
    assert skewed["tpot_s"] == flagged["tpot_s"]
    assert skewed["tpot_s"]["mean"] > uniform["tpot_s"]["mean"]


def test_serve_takes_run_deployment_flags(capsys):
    data = _serve_json(capsys, DSV3, "--attn-dp", "16", "--moe-ep", "16", "--redundant-experts", "16",
                       "--prefill-chunk", "128", "--no-cuda-graphs")
    dep = data["deployment"]
    assert dep["layout"] == "TP1 EP16 PP1 DP16 R16 MBauto"
    assert (dep["prefill_chunk"], dep["cuda_graphs"]) == (128, False)
