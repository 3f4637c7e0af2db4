"""graph.params.kv_sequence_parts: one sequence's KV split into the full-attention layers' bytes per token and the
sliding layers' window, by hand on gpt-oss-20b (12 full + 12 sliding layers, 2 x 8 KV heads x 64 x 2 B = 2,048 B per
token and layer, window 128) and DeepSeek-V3 (no window: 61 x 576 x 2 = 70,272 B per token)."""
from __future__ import annotations

import warnings
from pathlib import Path

from archsim.config.hf import UnmodelledFieldsWarning
from archsim.config.workload import load_workload
from archsim.dtypes import dtype
from archsim.graph.params import kv_bytes_per_token_full_layers, kv_sequence_parts

ROOT = Path(__file__).resolve().parents[2]
BF16 = dtype("bf16")


def test_gpt_oss_sequence_is_full_layers_per_token_plus_the_window():
    with warnings.catch_warnings():  # the config's unmodelled fields are tested in tests/config/test_hf_gpt_oss.py
        warnings.simplefilter("ignore", UnmodelledFieldsWarning)
        model = load_workload(str(ROOT / "tests/data/hf_configs/gpt-oss-20b/config.json")).model
    assert kv_bytes_per_token_full_layers(model, BF16) == 12 * 2048
    assert kv_sequence_parts(model, 1024, BF16) == {
        "kv_context": 1024, "kv_bytes_per_sequence": 1024 * 24576 + 12 * 128 * 2048,
        "kv_bytes_per_token_full_layers": 24576, "kv_bytes_sliding_window": 12 * 128 * 2048, "sliding_layers": 12,
        "sliding_window": 128}
    # shorter than the window: the sliding layers hold every token so far
    assert kv_sequence_parts(model, 100, BF16)["kv_bytes_sliding_window"] == 12 * 100 * 2048


def test_model_without_windows_is_context_times_per_token():
    model = load_workload(str(ROOT / "workloads/deepseek_v3.yaml")).model
    parts = kv_sequence_parts(model, 1024, BF16)
    assert parts["kv_bytes_per_sequence"] == 1024 * 70272 == 1024 * parts["kv_bytes_per_token_full_layers"]
    assert (parts["kv_bytes_sliding_window"], parts["sliding_layers"], parts["sliding_window"]) == (0, 0, None)
