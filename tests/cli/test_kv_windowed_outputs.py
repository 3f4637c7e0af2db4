"""serve, compare and graph say what a sliding-window model's KV really holds (gpt-oss-20b), and print what they
printed before for a model without windows (DeepSeek-V3).

gpt-oss-20b by hand (tests/data/hf_configs/gpt-oss-20b/config.json): 24 layers alternating sliding_attention /
full_attention (12 + 12), 8 KV heads x head_dim 64, bf16 KV: one token of one layer is 2 x 8 x 64 x 2 B = 2,048 B.
Every layer: 24 x 2,048 = 49,152 B per token; the 12 full-attention layers 24,576 B per token; the 12 sliding
layers keep at most 128 tokens: 12 x 128 x 2,048 = 3,145,728 B once the sequence is longer than 128 tokens.
At 1,024 tokens one sequence holds 1,024 x 24,576 + 3,145,728 = 25,165,824 + 3,145,728 = 28,311,552 B.
DeepSeek-V3 (MLA, bf16 KV): 61 layers x (512 latent + 64 rope) x 2 B = 70,272 B per token, no window.
"""
from __future__ import annotations

import json
from pathlib import Path

from archsim.cli import main

ROOT = Path(__file__).resolve().parents[2]
GPT_OSS_20B = str(ROOT / "tests/data/hf_configs/gpt-oss-20b/config.json")
DSV3 = str(ROOT / "workloads/deepseek_v3.yaml")
LLAMA = str(ROOT / "workloads/llama3_405b.yaml")

FULL_PER_TOKEN = 12 * 2 * 8 * 64 * 2          # 24,576 B
WINDOW = 12 * 128 * 2 * 8 * 64 * 2            # 3,145,728 B
AT_1024 = 1024 * FULL_PER_TOKEN + WINDOW      # 28,311,552 B
DSV3_PER_TOKEN = 61 * (512 + 64) * 2          # 70,272 B


def _serve(capsys, workload: str, fmt: str) -> str:
    assert main(["serve", workload, "--hw", "h100", "--prompt-len", "1000", "--output-len", "24",
                 "--num-prompts", "4", "--format", fmt]) == 0
    return capsys.readouterr().out


def test_serve_table_gives_gpt_oss_capacity_in_full_attention_tokens_less_the_window(capsys):
    """One full + one sliding layer unit: C tokens of every layer are 2C unit-tokens; a sequence past 128 tokens
    keeps 128 of them in the sliding unit, so the pool holds 2C tokens of the full-attention layers less 128 per
    sequence."""
    pool = json.loads(_serve(capsys, GPT_OSS_20B, "json"))["deployment"]["pools"][0]
    assert pool["kv_layout"] == [{"window": None, "layer_units": 1}, {"window": 128, "layer_units": 1}]
    c = pool["kv_capacity_tokens"]
    first = _serve(capsys, GPT_OSS_20B, "table").splitlines()[0]
    assert (f"KV {c:,} tokens/replica in every layer = {2 * c:,} tokens in the full-attention layers less 128 per "
            "sequence for the sliding layers' 128-token window, scheduler") in first


def test_serve_table_without_windows_is_as_before(capsys):
    c = json.loads(_serve(capsys, DSV3, "json"))["deployment"]["pools"][0]["kv_capacity_tokens"]
    first = _serve(capsys, DSV3, "table").splitlines()[0]
    assert first.endswith(f"MBauto), KV {c} tokens/replica, scheduler continuous")


def _compare(capsys, a: str, b: str, fmt: str) -> str:
    assert main(["compare", a, b, "--hw", "h100", "--prompt-len", "1000", "--output-len", "24", "--max-seqs", "16",
                 "--format", fmt]) == 0
    return capsys.readouterr().out


def test_compare_gives_each_model_s_sequence_at_the_serving_context(capsys):
    rows = {r["name"]: r for r in json.loads(_compare(capsys, GPT_OSS_20B, DSV3, "json"))["models"]}
    oss, ds = rows["gpt-oss-20b"], rows["deepseek_v3"]
    assert (oss["kv_context"], oss["kv_bytes_per_sequence"], oss["kv_bytes_sliding_window"]) == (1024, AT_1024, WINDOW)
    assert oss["kv_bytes_per_token"] == 49152 and oss["kv_bytes_per_token_full_layers"] == FULL_PER_TOKEN
    assert ds["kv_bytes_per_sequence"] == 1024 * DSV3_PER_TOKEN and ds["sliding_layers"] == 0
    lines = _compare(capsys, GPT_OSS_20B, DSV3, "table").splitlines()
    per_sequence = next(line for line in lines if line.startswith("KV cache per sequence"))
    assert "28,311,552 B at 1,024 tokens (bf16)" in per_sequence and "71,958,528 B at 1,024 tokens" in per_sequence
    full = next(line for line in lines if line.startswith("  full-attention layers"))
    assert "24,576 B per token (12 layers)" in full and "70,272 B per token (61 layers)" in full
    window = next(line for line in lines if line.startswith("  sliding-window layers"))
    assert "3,145,728 B (12 layers, last 128 tokens)" in window and window.endswith(" none")


def test_compare_without_windows_is_as_before(capsys):
    lines = _compare(capsys, DSV3, LLAMA, "table").splitlines()
    assert not any("per sequence" in line or "full-attention" in line for line in lines)
    kv = [i for i, line in enumerate(lines) if line.startswith("KV bytes per token")]
    assert len(kv) == 1 and lines[kv[0] + 1].startswith("serving layout")


def test_graph_gives_gpt_oss_sequence_at_kv_len(capsys):
    assert main(["graph", GPT_OSS_20B, "--phase", "decode", "--length", "1024", "--format", "json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert (d["kv_len"], d["kv_bytes_per_sequence"], d["sliding_layers"], d["sliding_window"]) == (1024, AT_1024, 12,
                                                                                                    128)
    assert main(["graph", GPT_OSS_20B, "--phase", "decode", "--length", "1024"]) == 0
    assert ("KV bytes/sequence 28,311,552 B at 1,024 tokens (bf16): full-attention layers 24,576 B per token "
            "(12 layers) + sliding-window layers 3,145,728 B (12 layers, last 128 tokens)") in capsys.readouterr().out


def test_graph_without_windows_is_as_before(capsys):
    assert main(["graph", DSV3, "--phase", "decode", "--length", "1024"]) == 0
    out = capsys.readouterr().out
    assert "; KV bytes/token 70,272\n" in out and "per sequence" not in out and "sequence" not in out


def test_serve_capacity_text_for_other_layouts():
    """3 sliding units (window 64) per full one: C tokens of every layer are 4C unit-tokens, i.e. 4C tokens of the
    full-attention layers less 3 x 64 = 192 per sequence; with every layer sliding only the window is said."""
    from archsim.cli.serve import _kv_capacity

    three_to_one = {"kv_capacity_tokens": 1000, "kv_layout": [{"window": None, "layer_units": 1},
                                                              {"window": 64, "layer_units": 3}]}
    assert _kv_capacity(three_to_one) == ("1,000 tokens/replica in every layer = 4,000 tokens in the full-attention "
                                          "layers less 192 per sequence for the sliding layers' 64-token window")
    all_sliding = {"kv_capacity_tokens": 1000, "kv_layout": [{"window": 4096, "layer_units": 1}]}
    assert _kv_capacity(all_sliding) == ("1,000 tokens/replica in every layer (all layers keep a 4,096-token window "
                                         "per sequence)")
    assert _kv_capacity({"kv_capacity_tokens": 1000, "kv_layout": [{"window": None, "layer_units": 1}]}) == \
        "1000 tokens/replica"
