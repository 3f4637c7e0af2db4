"""``archsim run`` on gpt-oss's Hugging Face config.json: the projection prints with the exact parameter count,
MXFP4 experts, the checkpoint's weight bytes and a KV cache whose sliding layers hold the window only."""
from __future__ import annotations

import json

from archsim.cli import main

CONFIG = "tests/data/hf_configs/gpt-oss-120b/config.json"


def test_run_gpt_oss_120b_on_one_h100(capsys):
    assert main(["run", CONFIG, "--hw", "h100", "--format", "json"]) == 0
    out = capsys.readouterr()
    d = json.loads(out.out)
    assert d["model"]["total_params"] == 116_829_156_672
    assert d["deployment"]["devices"] == 1 and d["memory"]["fits"]   # "fits into a single 80GB GPU" (model card)
    assert d["memory"]["weights_bytes"] == 65_248_815_744             # 60.77 GiB: MXFP4 experts, the rest bf16
    # default scenario: prompt 4096 + output 1024 -> decode priced at context 5120; 18 full layers hold it all,
    # 18 sliding layers 128 tokens; K and V of 8 kv heads of 64, bf16
    assert d["memory"]["kv_cache_bytes"] == (18 * 5120 + 18 * 128) * 2 * 8 * 64 * 2
    assert d["decode"]["tpot_s"] > 0 and d["prefill"]["latency_s"] > 0
    # the fields archsim does not model are one warning line, not an error
    assert out.err.count("warning") == 1 and "router_aux_loss_coef" in out.err


def test_run_gpt_oss_table(capsys):
    assert main(["run", CONFIG, "--hw", "h100"]) == 0
    text = capsys.readouterr().out
    assert "116.83B" in text and "top-4" in text and "128 routed" in text
    # KV: what a sequence holds at the scenario's 4096 + 1024 = 5120 tokens, not a per-token figure that counts the
    # sliding layers as full: 18 full layers x 2 x 8 kv heads x 64 x 2 B = 36,864 B per token, 18 sliding layers x
    # 128 tokens x 2,048 B = 4,718,592 B; (18 x 5120 + 18 x 128) x 2,048 = 193,462,272 B
    assert "KV cache per token" not in text
    assert "KV cache per sequence        193,462,272 B at 5,120 tokens (bf16)" in text
    assert "full-attention layers      36,864 B per token (18 layers)" in text
    assert "sliding-window layers      4,718,592 B (18 layers, last 128 tokens)" in text


def test_run_json_says_what_a_sequence_holds(capsys):
    """model.kv_bytes_per_token stays a token in every layer (36 x 2,048 B); the new keys split one sequence at the
    scenario's context into the full layers' per-token growth and the sliding layers' window."""
    assert main(["run", CONFIG, "--hw", "h100", "--format", "json", "--set", "scenario.output_len=2048"]) == 0
    m = json.loads(capsys.readouterr().out)["model"]
    per_layer = 2 * 8 * 64 * 2
    assert m["kv_bytes_per_token"] == 36 * per_layer
    assert m["kv_context"] == 4096 + 2048 and m["sliding_layers"] == 18 and m["sliding_window"] == 128
    assert m["kv_bytes_per_token_full_layers"] == 18 * per_layer
    assert m["kv_bytes_sliding_window"] == 18 * 128 * per_layer
    assert m["kv_bytes_per_sequence"] == (18 * 6144 + 18 * 128) * per_layer


def test_models_without_windows_keep_their_kv_line(capsys):
    """DeepSeek-V3 (no sliding layers): the table line is KV per token as before (61 x 576 x 2 B = 70,272 B), and a
    sequence holds context x that, with no window part."""
    assert main(["run", "deepseek_v3", "--hw", "h100"]) == 0
    assert "KV cache per token           70,272 B (bf16)" in capsys.readouterr().out
    assert main(["run", "deepseek_v3", "--hw", "h100", "--format", "json"]) == 0
    m = json.loads(capsys.readouterr().out)["model"]
    assert m["kv_bytes_per_token"] == m["kv_bytes_per_token_full_layers"] == 70_272
    assert m["kv_bytes_per_sequence"] == 70_272 * (4096 + 1024) and m["kv_bytes_sliding_window"] == 0
    assert m["sliding_layers"] == 0 and m["sliding_window"] is None


def test_window_is_a_model_field_for_set(capsys):
    """--set model.sliding_window=4096: the sliding layers now hold 4096 of the 5120 tokens."""
    assert main(["run", CONFIG, "--hw", "h100", "--format", "json", "--set", "model.sliding_window=4096"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["memory"]["kv_cache_bytes"] == (18 * 5120 + 18 * 4096) * 2 * 8 * 64 * 2


def test_mxfp4_is_weight_only(capsys):
    """The checkpoint's MXFP4 experts compute in bf16 (weight-only); --set scenario.expert_weights=fp4 prices the
    W4A4 path instead: same weight bytes, a faster compute-bound prefill on H100 (its fp8 MMA rate)."""
    assert main(["run", CONFIG, "--hw", "h100", "--format", "json"]) == 0
    mx = json.loads(capsys.readouterr().out)
    assert main(["run", CONFIG, "--hw", "h100", "--format", "json", "--set", "scenario.expert_weights=fp4"]) == 0
    fp4 = json.loads(capsys.readouterr().out)
    assert mx["memory"]["weights_bytes"] == fp4["memory"]["weights_bytes"]
    assert mx["prefill"]["latency_s"] > fp4["prefill"]["latency_s"]


def _format_options(parser) -> dict[tuple[str, str], str]:
    """(command, option) -> help text of every --weights, --expert-weights and --kv-cache option of every command."""
    out = {}
    for action in parser._subparsers._group_actions:
        for name, sub in action.choices.items():
            for opt in sub._actions:
                for flag in ("--weights", "--expert-weights", "--kv-cache"):
                    if flag in opt.option_strings:
                        out[(name, flag)] = opt.help or ""
    return out


def test_format_help_lists_every_format_of_the_one_table():
    """Every command's --weights / --expert-weights help names every weight format archsim/dtypes.py defines
    (mxfp4 included), and --kv-cache every KV format: the texts are derived from those tables, so a new format
    appears in all of them."""
    from archsim.cli import build_parser
    from archsim.dtypes import PLAIN_FORMATS, WEIGHT_FORMATS

    options = _format_options(build_parser())
    assert {("run", "--weights"), ("serve", "--weights"), ("run", "--expert-weights"),
            ("serve", "--expert-weights")} <= set(options)
    assert "mxfp4" in WEIGHT_FORMATS
    for (command, flag), text in options.items():
        names = PLAIN_FORMATS if flag == "--kv-cache" else WEIGHT_FORMATS
        missing = [n for n in names if n not in text.replace("|", " ").split()]
        assert not missing, f"{command} {flag} help lacks {missing}: {text!r}"


def test_serve_gpt_oss_sizes_the_kv_cache_per_layer(capsys):
    """serve on gpt-oss-20b (one H100): the pool's KV layout is one full-attention and one 128-token sliding unit
    (12 layers each), and the running batch of 9,216-token requests (9,214 prompt tokens + 2 output: the cache holds
    9,214 then 9,215 tokens, 576 + 8 blocks both times) reaches what the blocks hold by hand: (2C // 16) // (576 + 8)
    with C the capacity in tokens of every layer, about twice C // 16 // 576."""
    config = "tests/data/hf_configs/gpt-oss-20b/config.json"
    assert main(["serve", config, "--hw", "h100", "--prompt-len", "9214", "--output-len", "2",
                 "--num-prompts", "300", "--max-concurrency", "300", "--max-seqs", "512", "--format", "json"]) == 0
    d = json.loads(capsys.readouterr().out)
    pool = d["deployment"]["pools"][0]
    assert pool["kv_layout"] == [{"window": None, "layer_units": 1}, {"window": 128, "layer_units": 1}]
    c = pool["kv_capacity_tokens"]
    hand = (2 * c // 16) // (9216 // 16 + 128 // 16)
    assert d["batch"]["max"] == hand > 1.9 * (c // 16 // (9216 // 16))
