"""A Hugging Face ``config.json`` as a workload: each family's field names onto ModelConfig, the checkpoint's
``quantization_config`` onto a weight format, and the default scenario of a workload YAML.

Families, by ``model_type`` (the modeling code each mapping follows is transformers' ``models/<type>/``):
- ``llama`` (Llama 3.x): the fields are archsim's already; ``attention_bias`` biases q, k, v and o_proj.
- ``qwen2`` (Qwen2.5): Qwen2Attention has ``bias=True`` on q/k/v and none on o_proj, with no config key:
  ``qkv_bias`` is set.
- ``qwen3``: Qwen3Attention has q_norm / k_norm RMSNorms over head_dim before RoPE: ``use_qk_norm`` is set.
- ``qwen3_moe``: Qwen3 attention; ``num_experts`` routed experts of ``moe_intermediate_size``, no shared
  expert; MoE layers per ``decoder_sparse_step`` / ``mlp_only_layers``; softmax top-k router, renormalised
  when ``norm_topk_prob``, no scaling (Qwen3MoeSparseMoeBlock).
- ``mixtral``: ``num_local_experts`` routed experts whose width is ``intermediate_size``, no shared expert, every
  layer MoE; softmax top-k, always renormalised (MixtralSparseMoeBlock ``routing_weights /= sum``), no scaling.
- ``deepseek_v2``, ``deepseek_v3``, ``kimi_k2`` (DeepSeek-V2/V3/R1, Kimi K2): MLA + DeepSeekMoE, the fields
  are archsim's already.
- ``gpt_oss`` (gpt-oss-120b / -20b, GptOssForCausalLM): GQA with q/k/v/o biases (``attention_bias``), one
  learned sink logit per head (``attention_sinks``), ``layer_types`` alternating sliding-window
  (``sliding_window`` keys) and full attention; every layer MoE of ``num_local_experts`` experts of width
  ``intermediate_size`` with gate_up/down biases (``expert_bias``) and the clamped SwiGLU (``swiglu_limit``,
  alpha 1.702 in GptOssExperts: ``swiglu_alpha``); the router Linear has a bias (``router_bias``) and takes the
  top-k logits then a softmax over them (``scoring_func`` topk_softmax: the weights of softmax, top-k,
  renormalise at 5 FLOPs per chosen logit).
Sliding-window attention in the other families (Qwen2/3 ``use_sliding_window: true``, a Mixtral
``sliding_window``, ``layer_types`` with sliding layers) is not mapped: a ConfigError.

Keys that describe the computation but that archsim does not model (dropout, aux-loss coefficients, unused
sliding-window fields, unknown keys) are listed in ONE ``UnmodelledFieldsWarning``; pure metadata (token ids,
versions, ``torch_dtype`` once read) is accepted silently. A field archsim needs and cannot find is a
ConfigError naming the file and the config.json field.
"""
from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Mapping

from archsim.config.model import ModelConfig, model_from_dict
from archsim.config.workload import Workload, scenario_from_section
from archsim.config.yaml_io import Section, read_capped_bytes
from archsim.errors import ConfigError
from archsim.routing import TOPK_SOFTMAX


class UnmodelledFieldsWarning(UserWarning):
    """config.json fields archsim read but does not model (one warning per loaded file)."""


# Bookkeeping keys that describe no computation: accepted without a warning.
METADATA_KEYS = frozenset({
    "_name_or_path", "architectures", "model_type", "transformers_version", "torch_dtype", "dtype",
    "bos_token_id", "eos_token_id", "pad_token_id", "auto_map", "use_cache", "initializer_range",
    "tokenizer_class", "quantization_config",
})
# Fields every family reads under archsim's (= transformers') name when present.
COMMON = ("hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "vocab_size",
          "intermediate_size", "head_dim", "max_position_embeddings", "rope_theta", "rope_scaling", "rms_norm_eps",
          "tie_word_embeddings", "hidden_act")
GQA_REQUIRED = ("hidden_size", "num_hidden_layers", "num_attention_heads", "vocab_size", "intermediate_size")
DEEPSEEK_FIELDS = COMMON + (
    "q_lora_rank", "kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim", "moe_intermediate_size",
    "n_routed_experts", "n_shared_experts", "num_experts_per_tok", "first_k_dense_replace", "moe_layer_freq",
    "n_group", "topk_group", "topk_method", "scoring_func", "norm_topk_prob", "routed_scaling_factor",
    "num_nextn_predict_layers", "attention_bias")
# Unquantized checkpoints: torch_dtype -> scenario weight format.
TORCH_DTYPES = {"bfloat16": "bf16", "float16": "fp16"}
# archsim's fp8 weight format is e4m3 with one scale per 128x128 block (archsim.graph.precision.WEIGHT_FORMATS).
FP8_BLOCK = [128, 128]


@dataclass(frozen=True, kw_only=True)
class Family:
    """How one ``model_type``'s config.json becomes ModelConfig fields."""

    label: str
    fields: tuple[str, ...]                                     # read under the same name
    required: tuple[str, ...]                                   # config.json names that must be present
    renames: Mapping[str, str] = field(default_factory=dict)    # config.json name -> ModelConfig field
    implied: Mapping[str, Any] = field(default_factory=dict)    # fields the modeling code implies
    # config.json fields that are read (checked) but change nothing archsim models when valid
    checked: Callable[[Mapping[str, Any], str], tuple[str, ...]] | None = None


def _no_sliding_window(raw: Mapping[str, Any], file: str) -> tuple[str, ...]:
    """Qwen2/Qwen3: the sliding-window fields are unused unless ``use_sliding_window`` is true
    (Qwen2Attention / Qwen3Attention: ``sliding_window if config.use_sliding_window and layer_idx >=
    max_window_layers``); with it true, a ConfigError (not modelled)."""
    if raw.get("use_sliding_window", False) is not False:
        raise ConfigError(file, "use_sliding_window", "false (sliding-window attention is not modelled)",
                          raw["use_sliding_window"])
    return ("use_sliding_window",)  # sliding_window and max_window_layers, unused, go to the warning


def _mixtral_window(raw: Mapping[str, Any], file: str) -> tuple[str, ...]:
    """Mixtral attends a ``sliding_window`` whenever it is set (MixtralAttention); Mixtral-8x7B has null."""
    if raw.get("sliding_window") is not None:
        raise ConfigError(file, "sliding_window", "null (sliding-window attention is not modelled)",
                          raw["sliding_window"])
    return ("sliding_window",)


def _gpt_oss_checked(raw: Mapping[str, Any], file: str) -> tuple[str, ...]:
    """gpt-oss repeats two fields under other names (the original checkpoint's): ``experts_per_token`` must be
    ``num_experts_per_tok`` and ``initial_context_length`` YaRN's ``original_max_position_embeddings``."""
    pairs = (("experts_per_token", raw.get("num_experts_per_tok")),
             ("initial_context_length", (raw.get("rope_scaling") or {}).get("original_max_position_embeddings")))
    for key, expected in pairs:
        if key in raw and raw[key] != expected:
            raise ConfigError(file, key, f"{expected} (the same figure as the transformers field)", raw[key])
    return tuple(key for key, _ in pairs)


_SOFTMAX_TOPK = {"scoring_func": "softmax", "routed_scaling_factor": None, "topk_method": None}
# transformers GptOssExperts: ``self.alpha = 1.702`` (a constant of the modeling code, no config key)
GPT_OSS_SWIGLU_ALPHA = 1.702
QWEN3_MOE_FIELDS = COMMON + ("attention_bias", "moe_intermediate_size", "num_experts_per_tok", "norm_topk_prob",
                             "decoder_sparse_step", "mlp_only_layers")
FAMILIES: dict[str, Family] = {
    "llama": Family(label="Llama", fields=COMMON + ("attention_bias",), required=GQA_REQUIRED),
    "qwen2": Family(label="Qwen2/Qwen2.5", fields=COMMON, required=GQA_REQUIRED + ("num_key_value_heads",),
                    implied={"qkv_bias": True}, checked=_no_sliding_window),
    "qwen3": Family(label="Qwen3", fields=COMMON + ("attention_bias",),
                    required=GQA_REQUIRED + ("num_key_value_heads", "head_dim"),
                    implied={"use_qk_norm": True}, checked=_no_sliding_window),
    "qwen3_moe": Family(label="Qwen3-MoE", fields=QWEN3_MOE_FIELDS,
                        required=GQA_REQUIRED + ("num_key_value_heads", "head_dim", "num_experts",
                                                 "num_experts_per_tok", "moe_intermediate_size"),
                        renames={"num_experts": "n_routed_experts"},
                        implied={"use_qk_norm": True, **_SOFTMAX_TOPK}, checked=_no_sliding_window),
    "mixtral": Family(label="Mixtral", fields=COMMON + ("num_experts_per_tok",),
                      required=GQA_REQUIRED + ("num_key_value_heads", "num_local_experts", "num_experts_per_tok"),
                      renames={"num_local_experts": "n_routed_experts"},
                      implied={"norm_topk_prob": True, **_SOFTMAX_TOPK}, checked=_mixtral_window),
}
FAMILIES["gpt_oss"] = Family(
    label="gpt-oss", fields=COMMON + ("num_experts_per_tok", "attention_bias", "sliding_window", "layer_types",
                                      "swiglu_limit"),
    required=GQA_REQUIRED + ("num_key_value_heads", "head_dim", "num_local_experts", "num_experts_per_tok",
                             "swiglu_limit"),
    renames={"num_local_experts": "n_routed_experts"},
    implied={"norm_topk_prob": False, **_SOFTMAX_TOPK, "scoring_func": TOPK_SOFTMAX, "attention_sinks": True,
             "router_bias": True,
             "expert_bias": True, "swiglu_alpha": GPT_OSS_SWIGLU_ALPHA},
    checked=_gpt_oss_checked)
# families whose layer_types may hold sliding_attention layers (the others are mapped as full attention only)
SLIDING_FAMILIES = frozenset({"gpt_oss"})
for _type in ("deepseek_v2", "deepseek_v3", "kimi_k2"):
    FAMILIES[_type] = Family(label="DeepSeek-V2/V3 (MLA + MoE)", fields=DEEPSEEK_FIELDS,
                             required=GQA_REQUIRED + ("kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim",
                                                      "v_head_dim"))
# Families seen in served checkpoints that archsim does not model yet, and why.
NOT_MODELLED: dict[str, str] = {}


def workload_from_hf_config(path: str) -> Workload:
    """The Workload of a Hugging Face ``config.json`` (``path``: the file, or a directory holding one) with
    the default scenario of a workload YAML and the weight format its ``quantization_config`` (or
    ``torch_dtype``) declares. Fields archsim does not model: one UnmodelledFieldsWarning; bad or missing
    fields: ConfigError naming the file and the field."""
    file = config_file(path)
    raw = read_config_json(file)
    model, weights, unmodelled = model_from_hf(raw, file)
    if unmodelled:
        warnings.warn(UnmodelledFieldsWarning(
            f"{file}: config.json fields archsim does not model (ignored): {', '.join(unmodelled)}"), stacklevel=2)
    scenario = scenario_from_section(Section(weights, file, "scenario"), model)
    return Workload(name=_name(file), model=model, scenario=scenario, source_file=file)


def config_file(path: str | os.PathLike) -> str:
    """``path`` itself, or ``path/config.json`` for a directory (a checkpoint or Hub snapshot folder)."""
    file = os.fspath(path)
    if os.path.isdir(file):
        file = os.path.join(file, "config.json")
    if not os.path.isfile(file):
        raise ConfigError(file, None, "a Hugging Face config.json file (or a directory holding one)", "no such file")
    return file


def read_config_json(file: str) -> dict[str, Any]:
    """The JSON object of ``file``, strictly: valid UTF-8 JSON, an object at the top, each key once."""
    data = read_capped_bytes(file, "JSON file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(file, None, "a UTF-8 JSON file", "invalid UTF-8") from None

    def unique(pairs: list[tuple[str, Any]]) -> dict:
        out: dict = {}
        for key, value in pairs:
            if key in out:
                raise ConfigError(file, key, "each key once", "a duplicate key")
            out[key] = value
        return out
    try:
        raw = json.loads(text, object_pairs_hook=unique)
    except json.JSONDecodeError as exc:
        raise ConfigError(file, f"line {exc.lineno}", "valid JSON", exc.msg) from None
    if not isinstance(raw, dict):
        raise ConfigError(file, None, "a JSON object of Hugging Face config fields", type(raw).__name__)
    return raw


def model_from_hf(raw: Mapping[str, Any], file: str) -> tuple[ModelConfig, dict[str, str], list[str]]:
    """(ModelConfig, scenario weight fields, unmodelled config.json keys) of one parsed config.json."""
    model_type = raw.get("model_type")
    if model_type in NOT_MODELLED:
        raise ConfigError(file, "model_type", f"a supported family ({NOT_MODELLED[model_type]})", model_type)
    family = FAMILIES.get(model_type) if isinstance(model_type, str) else None
    if family is None:
        raise ConfigError(file, "model_type", f"one of {', '.join(sorted(FAMILIES))}", model_type)
    for key in family.required:
        if raw.get(key) is None:
            raise ConfigError(file, key, f"a value ({family.label} config.json field archsim needs)", None)
    checked = family.checked(raw, file) if family.checked else ()
    if model_type not in SLIDING_FAMILIES:
        checked += _layer_types(raw, file)
    mapped: dict[str, Any] = {"model_type": model_type}
    if "architectures" in raw:
        mapped["architectures"] = raw["architectures"]
    for key in family.fields:
        if key in raw:
            mapped[key] = raw[key]
    for key, target in family.renames.items():
        if type(raw[key]) is not int or raw[key] < 1:  # checked here so that the error names the file's field
            raise ConfigError(file, key, "a positive integer", raw[key])
        mapped[target] = raw[key]
    if "quantization_config" in raw:
        mapped["quantization_config"] = raw["quantization_config"]
    if model_type in ("mixtral", "gpt_oss"):  # every layer MoE; an expert is the FFN of intermediate_size
        mapped["moe_intermediate_size"] = raw["intermediate_size"]
    if raw.get("mlp_bias", False) is not False:  # LlamaMLP(bias=mlp_bias): not modelled
        raise ConfigError(file, "mlp_bias", "false (MLP biases are not modelled)", raw["mlp_bias"])
    implied = {k: v for k, v in family.implied.items() if v is not None}
    unset = [k for k, v in family.implied.items() if v is None]
    model = model_from_dict({**mapped, **implied}, file, "")
    if unset:  # model_from_dict reads null as "the default"; these fields are None on purpose
        model = replace(model, **{k: None for k in unset})
    weights = _weight_formats(raw, file, model)
    consumed = set(family.fields) | set(family.renames) | set(checked) | METADATA_KEYS | {"mlp_bias"}
    unmodelled = sorted(k for k in raw if k not in consumed)
    return model, weights, unmodelled


def _layer_types(raw: Mapping[str, Any], file: str) -> tuple[str, ...]:
    """transformers >= 4.56 writes ``layer_types`` (one attention kind per layer): only full attention is
    modelled."""
    kinds = raw.get("layer_types")
    if kinds is None:
        return ("layer_types",) if "layer_types" in raw else ()
    if not isinstance(kinds, list) or any(k != "full_attention" for k in kinds):
        raise ConfigError(file, "layer_types", "full_attention on every layer (sliding-window attention is not "
                          "modelled)", sorted(set(map(str, kinds))) if isinstance(kinds, list) else kinds)
    return ("layer_types",)


def _weight_formats(raw: Mapping[str, Any], file: str, model: ModelConfig) -> dict[str, str]:
    """Scenario ``weights`` (and ``expert_weights``) from ``quantization_config``, else from ``torch_dtype``."""
    q = raw.get("quantization_config")
    if q is None:
        dtype = raw.get("torch_dtype", raw.get("dtype", "bfloat16"))
        if dtype not in TORCH_DTYPES:
            key = "torch_dtype" if "torch_dtype" in raw else "dtype"
            raise ConfigError(file, key, f"one of {', '.join(TORCH_DTYPES)} (archsim's unquantized weight "
                              "formats)", dtype)
        return {"weights": TORCH_DTYPES[dtype]}
    if not isinstance(q, Mapping):
        raise ConfigError(file, "quantization_config", "a mapping", q)
    method = q.get("quant_method")
    if method == "fp8":
        # deepseek-ai/DeepSeek-V3 README_WEIGHTS.md: e4m3, 128x128 blocks with one float32 scale each
        if q.get("fmt", "e4m3") != "e4m3":
            raise ConfigError(file, "quantization_config.fmt", "e4m3 (archsim's fp8 weight format)", q.get("fmt"))
        if q.get("weight_block_size") != FP8_BLOCK:
            raise ConfigError(file, "quantization_config.weight_block_size",
                              f"{FP8_BLOCK} (archsim's fp8 format: one scale per 128x128 block)",
                              q.get("weight_block_size"))
        return {"weights": "fp8"}
    if method == "mxfp4":
        # transformers' Mxfp4 quantizer converts the routed experts only (integrations/mxfp4.py) and runs them
        # with bf16 activations: archsim's weight-only mxfp4 format (32-element blocks, E8M0 scale; OCP MX v1.0)
        if not model.is_moe:
            raise ConfigError(file, "quantization_config.quant_method", "mxfp4 on an MoE model (transformers "
                              "quantizes the routed experts)", method)
        dtype = raw.get("torch_dtype", raw.get("dtype", "bfloat16"))
        return {"weights": TORCH_DTYPES.get(dtype, "bf16"), "expert_weights": "mxfp4"}
    raise ConfigError(file, "quantization_config.quant_method", "fp8 (128x128 blocks) or mxfp4: the weight "
                      "formats archsim maps (others are not modelled)", method)


def _name(file: str) -> str:
    """The workload's name: the folder of a ``config.json`` (e.g. Qwen3-30B-A3B), else the file's stem."""
    base = os.path.basename(file)
    if base == "config.json":
        return os.path.basename(os.path.dirname(os.path.abspath(file))) or "config"
    return os.path.splitext(base)[0]
