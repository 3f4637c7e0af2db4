"""ModelConfig: HF config.json loads directly; unknown keys and inconsistent fields are ConfigErrors."""
import json

import pytest

from archsim.config.model import load_model_config, model_from_dict
from archsim.errors import ConfigError

# The HF deepseek-ai/DeepSeek-V3 config.json keys and values (huggingface.co/deepseek-ai/DeepSeek-V3 [V]),
# including the keys that do not affect performance (auto_map, ids, dtype, aux loss ...).
DSV3_HF = {
    "architectures": ["DeepseekV3ForCausalLM"], "attention_bias": False, "attention_dropout": 0.0,
    "auto_map": {"AutoConfig": "configuration_deepseek.DeepseekV3Config"}, "aux_loss_alpha": 0.001,
    "bos_token_id": 0, "eos_token_id": 1, "ep_size": 1, "first_k_dense_replace": 3, "hidden_act": "silu",
    "hidden_size": 7168, "initializer_range": 0.02, "intermediate_size": 18432, "kv_lora_rank": 512,
    "max_position_embeddings": 163840, "model_type": "deepseek_v3", "moe_intermediate_size": 2048,
    "moe_layer_freq": 1, "n_group": 8, "n_routed_experts": 256, "n_shared_experts": 1,
    "norm_topk_prob": True, "num_attention_heads": 128, "num_experts_per_tok": 8,
    "num_hidden_layers": 61, "num_key_value_heads": 128, "num_nextn_predict_layers": 1,
    "pretraining_tp": 1, "q_lora_rank": 1536, "qk_nope_head_dim": 128, "qk_rope_head_dim": 64,
    "quantization_config": {"activation_scheme": "dynamic", "fmt": "e4m3", "quant_method": "fp8",
                            "weight_block_size": [128, 128]},
    "rms_norm_eps": 1e-06,
    "rope_scaling": {"beta_fast": 32, "beta_slow": 1, "factor": 40, "mscale": 1.0, "mscale_all_dim": 1.0,
                     "original_max_position_embeddings": 4096, "type": "yarn"},
    "rope_theta": 10000, "routed_scaling_factor": 2.5, "scoring_func": "sigmoid", "seq_aux": True,
    "tie_word_embeddings": False, "topk_group": 4, "topk_method": "noaux_tc", "torch_dtype": "bfloat16",
    "transformers_version": "4.46.3", "use_cache": True, "v_head_dim": 128, "vocab_size": 129280,
}


def test_hf_config_json_loads_directly(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(DSV3_HF))
    m = load_model_config(str(path))
    assert m.attention_kind == "mla" and m.is_moe
    assert m.moe_layers == 58 and not m.is_moe_layer(2) and m.is_moe_layer(3)
    assert m.rope_scaling.factor == 40 and m.rope_scaling.original_max_position_embeddings == 4096
    assert m.qk_head_dim == 192 and m.quantization_config["weight_block_size"] == [128, 128]


def test_gqa_family_and_default_head_dim():
    m = model_from_dict({"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 8,
                         "num_key_value_heads": 2, "intermediate_size": 128, "vocab_size": 100})
    assert m.attention_kind == "gqa" and not m.is_moe and m.gqa_head_dim == 8 and m.kv_heads == 2


def test_unknown_key_is_an_error_with_did_you_mean():
    bad = dict(DSV3_HF, num_hiden_layers=61)
    with pytest.raises(ConfigError) as err:
        model_from_dict(bad, "cfg.json", "model")
    assert "model.num_hiden_layers" in str(err.value) and "num_hidden_layers" in str(err.value)


def test_unknown_rope_scaling_key_is_an_error():
    bad = dict(DSV3_HF, rope_scaling=dict(DSV3_HF["rope_scaling"], fator=2))
    with pytest.raises(ConfigError, match="rope_scaling.fator"):
        model_from_dict(bad, "cfg.json")


@pytest.mark.parametrize("change,field", [
    ({"num_key_value_heads": 3}, "num_key_value_heads"),     # 128 % 3 != 0
    ({"topk_group": 9}, "topk_group"),                       # > n_group = 8
    ({"n_group": 7}, "n_group"),                             # 256 % 7 != 0
    ({"num_experts_per_tok": 300}, "num_experts_per_tok"),   # > n_routed_experts
    ({"hidden_size": "7168"}, "hidden_size"),                # text, not an integer
    ({"hidden_size": True}, "hidden_size"),                  # a bool is not an integer
    ({"attention_bias": True}, "attention_bias"),            # biases are not modelled
    ({"scoring_func": "tanh"}, "scoring_func"),
    ({"qk_rope_head_dim": 63}, "qk_rope_head_dim"),          # RoPE rotates pairs
])
def test_inconsistent_fields_are_config_errors(change, field):
    with pytest.raises(ConfigError, match=field):
        model_from_dict(dict(DSV3_HF, **change), "cfg.json")


def test_missing_required_field_and_bad_file(tmp_path):
    data = dict(DSV3_HF)
    del data["vocab_size"]
    with pytest.raises(ConfigError, match="vocab_size"):
        model_from_dict(data)
    with pytest.raises(ConfigError, match="an existing file"):
        load_model_config(str(tmp_path / "nope.json"))
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(ConfigError, match="JSON object"):
        load_model_config(str(tmp_path / "list.json"))


def test_json_config_has_the_yaml_loaders_size_cap(tmp_path):
    """A config.json larger than yaml_io.MAX_FILE_BYTES is a one-line ConfigError, as a YAML file is;
    a file just under the cap still loads."""
    from archsim.config.yaml_io import MAX_FILE_BYTES
    text = json.dumps(DSV3_HF)
    p = tmp_path / "config.json"
    p.write_text(text + " " * (MAX_FILE_BYTES - len(text)))       # exactly the cap: loads
    assert load_model_config(str(p)).hidden_size == DSV3_HF["hidden_size"]
    p.write_text(text + " " * (MAX_FILE_BYTES + 1 - len(text)))   # one byte over
    with pytest.raises(ConfigError, match=f"at most {MAX_FILE_BYTES} bytes") as err:
        load_model_config(str(p))
    assert "\n" not in str(err.value)
    (tmp_path / "dir.json").mkdir()
    with pytest.raises(ConfigError, match="expected a JSON file, got 'a directory'"):
        load_model_config(str(tmp_path / "dir.json"))


def test_json_duplicate_keys_and_syntax_errors(tmp_path):
    p = tmp_path / "config.json"
    p.write_text('{"hidden_size": 64, "hidden_size": 128}')
    with pytest.raises(ConfigError, match="hidden_size"):
        load_model_config(str(p))
    p.write_text('{"hidden_size": 64,')
    with pytest.raises(ConfigError, match="valid JSON"):
        load_model_config(str(p))


def test_yaml_model_file_loads(tmp_path):
    p = tmp_path / "model.yaml"
    p.write_text("hidden_size: 64\nnum_hidden_layers: 2\nnum_attention_heads: 4\nintermediate_size: 128\n"
                 "vocab_size: 100\n")
    assert load_model_config(str(p)).hidden_size == 64


@pytest.mark.parametrize("field", ["routed_scaling_factor", "rms_norm_eps", "rope_theta"])
def test_infinite_float_field_is_an_error(field):
    # JSON "Infinity" / YAML .inf parse to float('inf'); an infinite scale or eps would turn the
    # kernels' outputs into inf/NaN instead of failing at load.
    with pytest.raises(ConfigError, match=f"model.{field}: expected a number, got inf"):
        model_from_dict(dict(DSV3_HF, **{field: float("inf")}), "cfg.json", "model")


@pytest.mark.parametrize("field", ["rms_norm_eps", "rope_theta", "routed_scaling_factor"])
@pytest.mark.parametrize("value", [-1, 0, -1e-6])
def test_non_positive_float_field_is_an_error(field, value):
    # eps sits under a square root beside the mean square, theta is raised to fractional powers, the routed scale
    # multiplies the MoE output: zero or a negative value is a mistake, reported as one line naming the field
    with pytest.raises(ConfigError, match=f"model.{field}: expected a number > 0") as err:
        model_from_dict(dict(DSV3_HF, **{field: value}), "cfg.json", "model")
    assert "\n" not in str(err.value)


def test_nan_float_field_is_an_error():
    with pytest.raises(ConfigError, match="model.rms_norm_eps: expected a number, got nan"):
        model_from_dict(dict(DSV3_HF, rms_norm_eps=float("nan")), "cfg.json", "model")


@pytest.mark.parametrize("key,value,expected", [
    ("factor", 0, "a number > 0"), ("factor", -40, "a number > 0"), ("beta_fast", -32, "a number > 0"),
    ("beta_slow", 0, "a number > 0"), ("mscale", -1.0, "a number >= 0"), ("mscale_all_dim", -0.5, "a number >= 0"),
    ("factor", float("nan"), "a number"),
])
def test_bad_rope_scaling_number_is_an_error(key, value, expected):
    bad = dict(DSV3_HF, rope_scaling=dict(DSV3_HF["rope_scaling"], **{key: value}))
    with pytest.raises(ConfigError, match=f"rope_scaling.{key}: expected {expected}, got"):
        model_from_dict(bad, "cfg.json", "model")


def test_zero_mscale_and_the_published_floats_load():
    # mscale 0 leaves YaRN's attention scale at 1 (0.1 * 0 * ln(factor) + 1): allowed; DeepSeek-V3's own values load
    ok = dict(DSV3_HF, rope_scaling=dict(DSV3_HF["rope_scaling"], mscale=0.0))
    assert model_from_dict(ok).rope_scaling.mscale == 0.0
    m = model_from_dict(DSV3_HF)
    assert (m.rms_norm_eps, m.rope_theta, m.routed_scaling_factor) == (1e-6, 10000.0, 2.5)
