"""Hugging Face config.json as a workload (archsim.config.hf): every shipped family loads, its exact parameter
count equals a hand derivation and the model card's published total, unmodelled fields are one warning, and
bad input is a ConfigError naming the file and the field."""
from __future__ import annotations

import json
import os
import warnings

import pytest

from archsim.config.hf import FAMILIES, UnmodelledFieldsWarning, workload_from_hf_config
from archsim.config.model import model_from_dict
from archsim.config.workload import DEFAULT_OUTPUT_LEN, DEFAULT_PROMPT_LEN, load_workload
from archsim.errors import ConfigError
from archsim.graph.build import build_decode
from archsim.graph.params import count_params
from archsim.graph.precision import precision_from_names
from tests.config.hf_fixtures import CONFIGS, ROOT, load, raw

NAMES = sorted(d for d in os.listdir(CONFIGS) if os.path.isdir(os.path.join(CONFIGS, d)))


pytestmark = pytest.mark.filterwarnings("ignore::archsim.config.hf.UnmodelledFieldsWarning")


def quoted(count: int, published: float, digits: int) -> bool:
    """Whether an exact count is the figure a model card quotes to ``digits`` decimals of a billion: within one
    unit of the last digit (the cards truncate or round: Qwen2.5-7B's 7.6156B total is quoted 7.61B, its
    6.5256B non-embedding 6.53B; DeepSeek-V3's 37.55B activated is quoted 37B)."""
    return abs(count / 1e9 - published) < 10 ** -digits


def write(tmp_path, data) -> str:
    path = tmp_path / "config.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return str(path)


@pytest.mark.parametrize("name", NAMES)
def test_each_shipped_config_loads_with_the_yaml_default_scenario(name):
    w = load(name)
    assert w.name == name and w.source_file.endswith(os.path.join(name, "config.json"))
    s = w.scenario
    assert (s.prompt_len, s.output_len, s.batch, s.devices, s.kv_cache, s.activations, s.mtp) == \
        (DEFAULT_PROMPT_LEN, DEFAULT_OUTPUT_LEN, 1, "auto", "bf16", "bf16", False)
    # DeepSeek-V3 ships FP8 (quantization_config: e4m3, 128x128 blocks); the others are bfloat16 checkpoints
    assert s.weights == ("fp8" if name == "DeepSeek-V3" else "bf16")
    # the graph's parameters (unsharded) are the config-derived count
    g = build_decode(w.model, batch=1, context=4, precision=precision_from_names("bf16"))
    assert sum(d["op"].params for _, d in g.nodes(data=True)) == count_params(w.model).total


# Hand derivations. Per layer: 2 RMSNorm weights of h; attention q [H*d, h], k and v [KV*d, h], o [h, H*d];
# embedding and lm_head V*h each (one when tied); final norm h.
def gqa(h, H, KV, d, qkv_bias=False, qk_norm=False):
    return h * H * d + 2 * h * KV * d + H * d * h + ((H + 2 * KV) * d if qkv_bias else 0) + (2 * d if qk_norm else 0)


def test_qwen25_7b_exact_and_published():
    # Qwen2Attention: bias on q/k/v (3584 + 2*512), not on o_proj; SwiGLU FFN 3*h*I
    h, L, V, I = 3584, 28, 152064, 18944
    layer = gqa(h, 28, 4, 128, qkv_bias=True) + 3 * h * I + 2 * h
    total = 2 * V * h + h + L * layer
    assert total == 7_615_616_512
    c = count_params(load("Qwen2.5-7B").model)
    assert c.total == c.active == total
    assert quoted(total, 7.61, 2) and quoted(total - 2 * V * h, 6.53, 2)  # model card: 7.61B / 6.53B non-embedding


def test_qwen3_dense_exact_and_published():
    # Qwen3Attention: q_norm and k_norm weights of head_dim 128 each
    h, L, V, I = 4096, 36, 151936, 12288
    total = 2 * V * h + h + L * (gqa(h, 32, 8, 128, qk_norm=True) + 3 * h * I + 2 * h)
    assert total == 8_190_735_360 and count_params(load("Qwen3-8B").model).total == total
    assert quoted(total, 8.2, 1) and quoted(total - 2 * V * h, 6.95, 2)  # model card: 8.2B / 6.95B non-embedding
    # Qwen3-0.6B ties its embeddings: the head adds no parameters
    h, L, I = 1024, 28, 3072
    tied = V * h + h + L * (gqa(h, 16, 8, 128, qk_norm=True) + 3 * h * I + 2 * h)
    c = count_params(load("Qwen3-0.6B").model)
    assert tied == 596_049_920 and c.total == tied and c.lm_head == 0
    assert quoted(tied, 0.6, 1) and quoted(tied - V * h, 0.44, 2)  # model card: 0.6B / 0.44B non-embedding


@pytest.mark.parametrize("name,h,L,H,I,published", [
    ("Qwen3-30B-A3B", 2048, 48, 32, 768, (30.5, 3.3)),      # model card: 30.5B total, 3.3B activated
    ("Qwen3-235B-A22B", 4096, 94, 64, 1536, (235, 22)),     # model card: 235B total, 22B activated
])
def test_qwen3_moe_exact_and_published(name, h, L, H, I, published):
    # every layer MoE (decoder_sparse_step 1, mlp_only_layers []): router gate [128, h] (no bias), 128 experts of
    # 3*h*I, top-8, no shared expert; 4 kv heads of 128; q_norm/k_norm
    V, E, k = 151936, 128, 8
    base = gqa(h, H, 4, 128, qk_norm=True) + E * h + 2 * h
    total = 2 * V * h + h + L * (base + E * 3 * h * I)
    active = 2 * V * h + h + L * (base + k * 3 * h * I)
    c = count_params(load(name).model)
    assert (c.total, c.active) == (total, active)
    digits = 1 if isinstance(published[0], float) else 0
    assert quoted(total, published[0], digits) and quoted(active, published[1], digits)


def test_qwen3_moe_published_figures_are_the_derivation():
    c = count_params(load("Qwen3-30B-A3B").model)
    assert (c.total, c.active) == (30_532_122_624, 3_353_032_704)
    c = count_params(load("Qwen3-235B-A22B").model)
    assert (c.total, c.active) == (235_093_634_560, 22_190_763_520)


def test_mixtral_exact_and_published():
    # 8 experts whose width is intermediate_size 14336, top-2, router [8, h]; 8 kv heads of 128; no shared expert
    h, L, V, I, E, k = 4096, 32, 32000, 14336, 8, 2
    base = gqa(h, 32, 8, 128) + E * h + 2 * h
    total = 2 * V * h + h + L * (base + E * 3 * h * I)
    active = 2 * V * h + h + L * (base + k * 3 * h * I)
    m = load("Mixtral-8x7B-v0.1").model
    c = count_params(m)
    assert (c.total, c.active) == (total, active) == (46_702_792_704, 12_879_925_248)
    # Mistral AI's announcement: "46.7B total parameters but only uses 12.9B parameters per token"
    assert quoted(total, 46.7, 1) and quoted(active, 12.9, 1)
    assert m.moe_intermediate_size == I and not m.n_shared_experts and m.moe_layers == L
    assert m.routed_scaling_factor is None and m.norm_topk_prob and m.scoring_func == "softmax"


def test_llama31_8b_exact():
    h, L, V, I = 4096, 32, 128256, 14336
    total = 2 * V * h + h + L * (gqa(h, 32, 8, 128) + 3 * h * I + 2 * h)
    assert count_params(load("Llama-3.1-8B").model).total == total == 8_030_261_248


def test_deepseek_v3_config_json_is_the_workload_yaml_model():
    hf = load("DeepSeek-V3").model
    yaml = load_workload(os.path.join(ROOT, "workloads", "deepseek_v3.yaml")).model
    assert count_params(hf) == count_params(yaml)
    assert count_params(hf, mtp=True) == count_params(yaml, mtp=True)
    c = count_params(hf)
    assert quoted(c.total, 671, 0) and quoted(c.active, 37, 0)   # DeepSeek-V3 README: 671B, 37B activated


def test_unmodelled_fields_are_one_warning(tmp_path):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        workload_from_hf_config(os.path.join(CONFIGS, "Qwen2.5-7B", "config.json"))
    ours = [w for w in caught if issubclass(w.category, UnmodelledFieldsWarning)]
    assert len(ours) == 1
    text = str(ours[0].message)
    listed = text.split("(ignored): ")[1].split(", ")
    assert listed == ["attention_dropout", "max_window_layers", "sliding_window", "use_mrope"]
    assert "Qwen2.5-7B" in text
    # an unknown key is listed, not an error; metadata (token ids, versions) is not listed
    path = write(tmp_path, dict(raw("Qwen3-8B"), my_new_field=3))
    with pytest.warns(UnmodelledFieldsWarning, match="my_new_field") as rec:
        workload_from_hf_config(path)
    assert len(rec) == 1 and "bos_token_id" not in str(rec[0].message)


@pytest.mark.parametrize("name,field", [
    ("Mixtral-8x7B-v0.1", "num_local_experts"),
    ("Qwen3-30B-A3B", "num_experts"),
    ("Qwen3-30B-A3B", "moe_intermediate_size"),
    ("Qwen3-8B", "head_dim"),
    ("DeepSeek-V3", "kv_lora_rank"),
    ("Llama-3.1-8B", "hidden_size"),
])
def test_missing_needed_field_is_a_config_error_naming_it(tmp_path, name, field):
    data = raw(name)
    del data[field]
    path = write(tmp_path, data)
    with pytest.raises(ConfigError) as err:
        workload_from_hf_config(path)
    assert err.value.file == path and err.value.path == field


@pytest.mark.parametrize("text,where", [
    ('{"model_type": "qwen3",', "line 1"),                          # truncated
    ('{"model_type": "qwen3", "model_type": "qwen3"}', "model_type"),  # a key given twice
    ('[1, 2]', "<root>"),                                           # not an object
])
def test_bad_json_is_a_config_error(tmp_path, text, where):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        workload_from_hf_config(path)
    assert err.value.file == path and err.value.path == where


@pytest.mark.parametrize("name,change,field", [
    ("Qwen2.5-7B", {"use_sliding_window": True}, "use_sliding_window"),   # sliding windows are not modelled
    ("Mixtral-8x7B-v0.1", {"sliding_window": 4096}, "sliding_window"),
    ("Qwen3-8B", {"layer_types": ["sliding_attention"] * 36}, "layer_types"),
    ("Llama-3.1-8B", {"mlp_bias": True}, "mlp_bias"),
    ("gpt-oss-20b", {"experts_per_token": 2}, "experts_per_token"),      # must repeat num_experts_per_tok
    ("gpt-oss-20b", {"initial_context_length": 8192}, "initial_context_length"),  # YaRN's original length
    ("gpt-oss-20b", {"layer_types": ["full_attention"] * 23}, "layer_types"),     # one per layer
    ("gpt-oss-20b", {"layer_types": ["local"] * 24}, "layer_types"),
    ("gpt-oss-20b", {"sliding_window": None}, "sliding_window"),         # sliding layers need a window
    ("gpt-oss-20b", {"swiglu_limit": -1.0}, "swiglu_limit"),
    ("Llama-3.1-8B", {"model_type": "falcon"}, "model_type"),
    ("Qwen3-30B-A3B", {"num_experts": "128"}, "num_experts"),             # the file's name, not archsim's
    ("Qwen3-30B-A3B", {"mlp_only_layers": [48]}, "mlp_only_layers"),
    ("Qwen3-8B", {"torch_dtype": "float32"}, "torch_dtype"),
    ("DeepSeek-V3", {"quantization_config": {"quant_method": "fp8", "weight_block_size": [64, 64]}},
     "quantization_config.weight_block_size"),
    ("Qwen3-8B", {"quantization_config": {"quant_method": "gptq", "bits": 4}}, "quantization_config.quant_method"),
    ("Qwen3-8B", {"quantization_config": {"quant_method": "mxfp4"}}, "quantization_config.quant_method"),
])
def test_unmodelled_values_are_config_errors(tmp_path, name, change, field):
    path = write(tmp_path, dict(raw(name), **change))
    with pytest.raises(ConfigError) as err:
        workload_from_hf_config(path)
    assert err.value.path == field, str(err.value)


def test_quantization_config_sets_the_weight_formats(tmp_path):
    # Qwen/Qwen3-30B-A3B-FP8 declares the DeepSeek-V3 block format
    fp8 = {"activation_scheme": "dynamic", "fmt": "e4m3", "quant_method": "fp8", "weight_block_size": [128, 128]}
    w = workload_from_hf_config(write(tmp_path, dict(raw("Qwen3-30B-A3B"), quantization_config=fp8)))
    assert (w.scenario.weights, w.scenario.expert_weights) == ("fp8", None)
    assert dict(w.model.quantization_config) == fp8
    # MXFP4 (transformers quantizes the routed experts only, bf16 activations) -> archsim's weight-only mxfp4
    w = workload_from_hf_config(write(tmp_path, dict(raw("Qwen3-30B-A3B"), quantization_config={"quant_method": "mxfp4"})))
    assert (w.scenario.weights, w.scenario.expert_weights) == ("bf16", "mxfp4")


def test_directory_or_file_and_missing_path(tmp_path):
    assert load("Qwen3-8B").model == workload_from_hf_config(os.path.join(CONFIGS, "Qwen3-8B", "config.json")).model
    with pytest.raises(ConfigError, match="config.json"):
        workload_from_hf_config(str(tmp_path))


def test_qwen3_moe_layer_pattern(tmp_path):
    # Qwen3MoeDecoderLayer: MoE iff layer not in mlp_only_layers and (layer + 1) % decoder_sparse_step == 0
    w = workload_from_hf_config(write(tmp_path, dict(raw("Qwen3-30B-A3B"), decoder_sparse_step=2,
                                                     mlp_only_layers=[1, 2, 47])))
    m = w.model
    expected = [i for i in range(48) if i not in (1, 2, 47) and (i + 1) % 2 == 0]
    assert [i for i in range(48) if m.is_moe_layer(i)] == expected
    assert m.moe_layers == len(expected) == 22 and m.moe_layers_in(3, 10) == len([i for i in expected if 3 <= i < 10])
    # dense layers are the Qwen3 FFN of intermediate_size 6144
    h, I, e = 2048, 6144, 3 * 2048 * 768
    dense, moe = 48 - 22, 22
    base = gqa(h, 32, 4, 128, qk_norm=True) + 2 * h
    total = 2 * 151936 * h + h + 48 * base + dense * 3 * h * I + moe * (128 * h + 128 * e)
    assert count_params(m).total == total


def test_workload_yaml_with_a_family_field_names_the_translation():
    bad = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 8, "vocab_size": 100,
           "intermediate_size": 128, "num_local_experts": 8}
    with pytest.raises(ConfigError) as err:
        model_from_dict(bad, "w.yaml", "model")
    assert "num_local_experts" in str(err.value) and "config.json" in str(err.value)
    assert "n_shared_experts" not in str(err.value)


@pytest.mark.parametrize("name", ["Qwen3-30B-A3B", "Mixtral-8x7B-v0.1", "Qwen2.5-7B"])
def test_estimate_projects_a_config_json(name):
    from archsim.api import estimate
    w = load(name)
    report = estimate(w, os.path.join(ROOT, "hardware", "h100.yaml"))
    d = report.to_dict()
    assert d["model"]["total_params"] == count_params(w.model).total
    assert d["decode"]["time_s"] > 0 and d["prefill"]["time_s"] > 0


def test_docs_models_table_is_the_count():
    """docs/models.md quotes the exact counts: each row equals count_params of the shipped config."""
    folders = {"Qwen2.5-7B": "Qwen2.5-7B", "Qwen3-8B": "Qwen3-8B", "Qwen3-30B-A3B": "Qwen3-30B-A3B",
               "Qwen3-235B-A22B": "Qwen3-235B-A22B", "Mixtral-8x7B": "Mixtral-8x7B-v0.1", "DeepSeek-V3": "DeepSeek-V3",
               "gpt-oss-120b": "gpt-oss-120b", "gpt-oss-20b": "gpt-oss-20b"}
    with open(os.path.join(ROOT, "docs", "models.md")) as f:
        rows = [line.split("|")[1:-1] for line in f if line.startswith("| ") and line.split("|")[1].strip() in folders]
    assert len(rows) == len(folders)
    for name, total, active, _ in rows:
        c = count_params(load(folders[name.strip()]).model)
        assert int(total.split("(")[0].strip().replace(",", "")) == c.total
        assert active.strip() == "same" and c.active == c.total or int(active.strip().replace(",", "")) == c.active


def test_deepseek_v2_lite_and_kimi_k2_go_through_the_deepseek_builder(tmp_path):
    # deepseek-ai/DeepSeek-V2-Lite config.json fields (MLA without q_lora_rank; greedy softmax routing);
    # DeepSeek-V2 paper (arXiv 2405.04434) appendix B: 15.7B total, 2.4B activated
    lite = {"model_type": "deepseek_v2", "hidden_size": 2048, "num_hidden_layers": 27, "num_attention_heads": 16,
            "num_key_value_heads": 16, "q_lora_rank": None, "kv_lora_rank": 512, "qk_nope_head_dim": 128,
            "qk_rope_head_dim": 64, "v_head_dim": 128, "intermediate_size": 10944, "moe_intermediate_size": 1408,
            "n_routed_experts": 64, "n_shared_experts": 2, "num_experts_per_tok": 6, "first_k_dense_replace": 1,
            "moe_layer_freq": 1, "topk_method": "greedy", "n_group": 1, "topk_group": 1, "vocab_size": 102400,
            "scoring_func": "softmax", "norm_topk_prob": False, "routed_scaling_factor": 1.0,
            "max_position_embeddings": 163840, "rms_norm_eps": 1e-6, "tie_word_embeddings": False,
            "aux_loss_alpha": 0.001, "seq_aux": True}
    h, H, V = 2048, 16, 102400
    attn = h * H * 192 + h * (512 + 64) + 512 + 512 * H * (128 + 128) + H * 128 * h   # q, kv_a, kv_a_layernorm, kv_b, o
    expert, router = 3 * h * 1408, 64 * h
    total = 2 * V * h + h + 27 * (attn + 2 * h) + 3 * h * 10944 + 26 * (router + 2 * expert + 64 * expert)
    active = 2 * V * h + h + 27 * (attn + 2 * h) + 3 * h * 10944 + 26 * (router + 2 * expert + 6 * expert)
    c = count_params(workload_from_hf_config(write(tmp_path, lite)).model)
    assert (c.total, c.active) == (total, active)
    assert quoted(c.total, 15.7, 1) and quoted(c.active - V * h, 2.4, 1)   # the paper's 2.4B leaves out the embedding
    # Kimi K2: model_type kimi_k2 with DeepSeek-V3's field names; the workload YAML's model as a config.json
    yaml = load_workload(os.path.join(ROOT, "workloads", "kimi_k2.yaml")).model
    fields = {k: v for k, v in json.loads(json.dumps(yaml.__dict__, default=lambda o: o.__dict__)).items()
              if v is not None and k in set(FAMILIES["kimi_k2"].fields) | {"model_type", "architectures"}}
    k2 = workload_from_hf_config(write(tmp_path, dict(fields, torch_dtype="bfloat16"))).model
    assert count_params(k2) == count_params(yaml)
