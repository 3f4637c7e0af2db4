"""Model architecture as a strict record whose fields are the Hugging Face config.json names verbatim."""
from __future__ import annotations

import difflib
import json
import math
from dataclasses import dataclass, fields
from types import MappingProxyType
from typing import Any, Mapping

from archsim.config.yaml_io import load_yaml, read_capped_bytes
from archsim.errors import ConfigError
from archsim.routing import SCORING_FUNCS, TOPK_METHODS, TOPK_SOFTMAX, uses_correction_bias


@dataclass(frozen=True, kw_only=True)
class RopeScaling:
    """``rope_scaling`` of config.json (YaRN for DeepSeek/Kimi, ``llama3`` for Llama-3.1).

    RoPE scaling changes frequencies, not FLOPs or bytes; it is kept so that a config round-trips.
    """

    type: str | None = None
    rope_type: str | None = None
    factor: float | None = None
    beta_fast: float | None = None
    beta_slow: float | None = None
    mscale: float | None = None
    mscale_all_dim: float | None = None
    original_max_position_embeddings: int | None = None
    low_freq_factor: float | None = None
    high_freq_factor: float | None = None
    truncate: bool | None = None  # gpt-oss YaRN: false keeps the correction range unrounded (frequencies only)


@dataclass(frozen=True, kw_only=True)
class ModelConfig:
    """A decoder-only transformer: GQA attention (Llama, Qwen2.5, Qwen3, Mixtral) or MLA (the DeepSeek-V3
    family), with a dense SwiGLU FFN or an MoE (routed experts, optional shared experts) per layer.

    Field names are the Hugging Face config.json keys. Optional fields are ``None`` when the
    architecture does not use them (e.g. ``kv_lora_rank`` for a GQA model). Families whose config.json
    spells a field differently (Mixtral ``num_local_experts``, Qwen3-MoE ``num_experts``) are translated
    by archsim.config.hf, which also sets the fields their modeling code implies without a config key
    (``qkv_bias`` for Qwen2, ``use_qk_norm`` for Qwen3, ``routed_scaling_factor = None`` for the
    softmax-top-k routers).
    """

    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    vocab_size: int
    intermediate_size: int
    num_key_value_heads: int | None = None
    head_dim: int | None = None
    # MLA (DeepSeek-V2/V3, Kimi K2)
    q_lora_rank: int | None = None
    kv_lora_rank: int | None = None
    qk_nope_head_dim: int | None = None
    qk_rope_head_dim: int | None = None
    v_head_dim: int | None = None
    # MoE
    moe_intermediate_size: int | None = None
    n_routed_experts: int | None = None
    n_shared_experts: int | None = None
    num_experts_per_tok: int | None = None
    first_k_dense_replace: int = 0
    moe_layer_freq: int = 1
    n_group: int = 1
    topk_group: int = 1
    topk_method: str | None = None
    scoring_func: str = "softmax"
    norm_topk_prob: bool = False
    # None: the router has no scaling step and normalises whenever norm_topk_prob is set, at any k (transformers
    # MixtralSparseMoeBlock, Qwen3MoeSparseMoeBlock: softmax, top-k, ``if norm_topk_prob: w /= w.sum()``);
    # a number: DeepSeek's MoEGate rules (archsim.routing.weight_rule). Only archsim.config.hf sets None.
    routed_scaling_factor: float | None = 1.0
    # Qwen3-MoE layer pattern (transformers modeling_qwen3_moe.py Qwen3MoeDecoderLayer): a layer is MoE iff
    # it is not in mlp_only_layers and (layer + 1) % decoder_sparse_step == 0
    decoder_sparse_step: int = 1
    mlp_only_layers: tuple[int, ...] = ()
    # attention variants
    attention_bias: bool = False   # q, k, v and o_proj carry biases (transformers Llama/Qwen3 ``attention_bias``)
    qkv_bias: bool = False         # q, k, v carry biases, o_proj none (Qwen2Attention: bias=True on q/k/v only)
    use_qk_norm: bool = False      # RMSNorm over head_dim on each q and k head before RoPE (Qwen3Attention q_norm/k_norm)
    # gpt-oss (transformers models/gpt_oss/modeling_gpt_oss.py). A layer whose layer_types entry is
    # "sliding_attention" attends the last ``sliding_window`` keys (itself included) and caches at most that
    # many; "full_attention" (and every layer when layer_types is empty) attends all of them.
    sliding_window: int | None = None
    layer_types: tuple[str, ...] = ()
    attention_sinks: bool = False  # one learned logit per query head in the softmax denominator (GptOssAttention.sinks)
    router_bias: bool = False      # the router gate Linear carries a bias [E] (GptOssTopKRouter.bias)
    expert_bias: bool = False      # routed experts' gate_up [2I] and down [h] biases (GptOssExperts *_bias)
    # clamped SwiGLU of gpt-oss (GptOssExperts._apply_gate): gate clamped above at swiglu_limit, up to
    # [-limit, limit], out = (up + 1) * gate * sigmoid(swiglu_alpha * gate); None: plain silu(gate) * up
    swiglu_limit: float | None = None
    swiglu_alpha: float | None = None
    # positions, norms, misc
    max_position_embeddings: int | None = None
    rope_theta: float | None = None
    rope_scaling: RopeScaling | None = None
    rms_norm_eps: float | None = None
    num_nextn_predict_layers: int = 0
    tie_word_embeddings: bool = False
    hidden_act: str = "silu"
    model_type: str | None = None
    architectures: tuple[str, ...] = ()
    quantization_config: Mapping[str, Any] | None = None

    @property
    def attention_kind(self) -> str:
        """``"mla"`` when the model compresses KV into a latent (kv_lora_rank set), else ``"gqa"``."""
        return "mla" if self.kv_lora_rank else "gqa"

    @property
    def is_moe(self) -> bool:
        return bool(self.n_routed_experts)

    @property
    def has_correction_bias(self) -> bool:
        """Whether each MoE layer carries ``e_score_correction_bias`` [E] (see ``uses_correction_bias``)."""
        return uses_correction_bias(self.topk_method)

    @property
    def kv_heads(self) -> int:
        return self.num_key_value_heads or self.num_attention_heads

    @property
    def gqa_head_dim(self) -> int:
        """Head width of a GQA model (HF default: hidden_size / num_attention_heads)."""
        return self.head_dim or self.hidden_size // self.num_attention_heads

    @property
    def qk_head_dim(self) -> int:
        """MLA query/key width per head: nope + rope."""
        return (self.qk_nope_head_dim or 0) + (self.qk_rope_head_dim or 0)

    def is_moe_layer(self, layer: int) -> bool:
        """MoE iff layer >= first_k_dense_replace and layer % moe_layer_freq == 0 (HF DeepseekV3DecoderLayer),
        (layer + 1) % decoder_sparse_step == 0 and layer not in mlp_only_layers (HF Qwen3MoeDecoderLayer); the
        defaults of the fields a family lacks make its own rule the only one that acts."""
        return (self.is_moe and layer >= self.first_k_dense_replace and self._periodic_moe(layer)
                and layer not in self.mlp_only_layers)

    def _periodic_moe(self, layer: int) -> bool:
        return layer % self.moe_layer_freq == 0 and (layer + 1) % self.decoder_sparse_step == 0

    def moe_layers_in(self, start: int, stop: int) -> int:
        """How many of layers ``start .. stop-1`` are MoE, counted without a loop over the layers (one pass over
        the period lcm(moe_layer_freq, decoder_sparse_step) and over mlp_only_layers)."""
        lo = max(start, self.first_k_dense_replace)
        if not self.is_moe or lo >= stop:
            return 0
        period = math.lcm(self.moe_layer_freq, self.decoder_sparse_step)
        hits = [r for r in range(period) if self._periodic_moe(r)]

        def below(n: int) -> int:  # periodic MoE layers in [0, n)
            whole, rest = divmod(n, period)
            return whole * len(hits) + sum(r < rest for r in hits)
        excluded = sum(1 for i in set(self.mlp_only_layers) if lo <= i < stop and self._periodic_moe(i))
        return below(stop) - below(lo) - excluded

    @property
    def moe_layers(self) -> int:
        return self.moe_layers_in(0, self.num_hidden_layers)

    def attention_window(self, layer: int) -> int | None:
        """Keys a query of ``layer`` attends at most (its own included): ``sliding_window`` on a
        "sliding_attention" layer, None (all of them) otherwise; MTP layers (past num_hidden_layers) are full."""
        if layer < len(self.layer_types) and self.layer_types[layer] == SLIDING:
            return self.sliding_window
        return None

    def sliding_layers_in(self, start: int, stop: int) -> int:
        """How many of layers ``start .. stop-1`` attend a sliding window."""
        return sum(1 for t in self.layer_types[start:stop] if t == SLIDING)


# Size limits (a policy, not hardware data). The deepest shipped model is Llama-3.1-405B (126 layers,
# workloads/llama3_405b.yaml) and the largest vocabulary Kimi K2's 163,840 (workloads/kimi_k2.yaml). The
# limits sit 32x and ~100x above them: room for any plausible design study, while a 10^9-layer or
# 10^15-token file gets a clear error at load instead of minutes of per-layer graph building (the graph
# has one set of ops per layer). Both are tested in tests/test_bad_inputs.py; docs/limits.md lists them.
MAX_HIDDEN_LAYERS = 2**12
# layer_types values (transformers >= 4.56 ``layer_types``; gpt-oss alternates them)
SLIDING, FULL = "sliding_attention", "full_attention"
LAYER_TYPES = (FULL, SLIDING)
MAX_VOCAB_SIZE = 2**24

# The routing rules (accepted ``topk_method`` values, which carry e_score_correction_bias, group score,
# normalise/scale) live in archsim.routing, shared with graph and kernels. A null topk_method (key not
# declared) is accepted: no correction bias; the router keeps the topk_group best groups scored by their
# best expert when n_group > 1 (deepseek-ai/DeepSeek-V3 inference/model.py without a bias), plain top-k
# when n_group == 1.


# HF config.json keys that do not change FLOPs, bytes or parameters: accepted and ignored.
# (Explicit allow-list; anything else is an unknown-key error.)
IGNORED_HF_KEYS = frozenset({
    "_name_or_path", "auto_map", "bos_token_id", "eos_token_id", "pad_token_id", "torch_dtype",
    "dtype", "transformers_version", "initializer_range", "use_cache", "ep_size", "pretraining_tp",
    "aux_loss_alpha", "seq_aux", "attention_dropout", "tokenizer_class", "output_router_logits",
    "router_aux_loss_coef", "use_sliding_window",
})
# Keys accepted only with the value that archsim models (an MLP bias would add parameters).
FIXED_HF_KEYS = {"mlp_bias": False}
# Other families' config.json spellings: a workload YAML takes archsim's field names, archsim.config.hf
# translates a whole config.json (the hint replaces a misleading did-you-mean).
FAMILY_KEYS = {
    "num_local_experts": "Mixtral's n_routed_experts", "num_experts": "Qwen-MoE's n_routed_experts",
    "max_window_layers": "a Qwen2/Qwen3 sliding-window field",
}

_INT = ("hidden_size", "num_hidden_layers", "num_attention_heads", "vocab_size", "intermediate_size",
        "num_key_value_heads", "head_dim", "q_lora_rank", "kv_lora_rank", "qk_nope_head_dim",
        "qk_rope_head_dim", "v_head_dim", "moe_intermediate_size", "n_routed_experts",
        "n_shared_experts", "num_experts_per_tok", "first_k_dense_replace", "moe_layer_freq",
        "n_group", "topk_group", "max_position_embeddings", "num_nextn_predict_layers", "decoder_sparse_step",
        "sliding_window")
_FLOAT = ("routed_scaling_factor", "rope_theta", "rms_norm_eps", "swiglu_limit", "swiglu_alpha")
# The float fields' ranges (beyond finite, which _check_type enforces): the RMSNorm epsilon is added to the mean
# square under a square root (x / sqrt(mean(x^2) + eps), transformers LlamaRMSNorm), so 0 or less can divide by
# zero or take a negative root; RoPE's base theta is raised to fractional powers (theta ** (-2i/d)), so it must be
# positive; the routed-expert scale multiplies the MoE output (DeepSeek-V3 MoEGate), and 0 or less would erase or
# flip it. rope_scaling's factors (YaRN, llama3: transformers modeling_rope_utils.py) scale frequencies and
# wavelengths, so they are positive; YaRN's mscale weights a log term and may be 0 (no attention-scale change).
_FLOAT_RANGES = {"rms_norm_eps": "a number > 0", "rope_theta": "a number > 0",
                 "routed_scaling_factor": "a number > 0 (or null: a plain softmax top-k router)"}
_ROPE_POSITIVE = ("factor", "beta_fast", "beta_slow", "low_freq_factor", "high_freq_factor")
_ROPE_NON_NEGATIVE = ("mscale", "mscale_all_dim")
_BOOL = ("norm_topk_prob", "tie_word_embeddings", "attention_bias", "qkv_bias", "use_qk_norm", "attention_sinks",
         "router_bias", "expert_bias")
_STR = ("topk_method", "scoring_func", "hidden_act", "model_type")
_REQUIRED = ("hidden_size", "num_hidden_layers", "num_attention_heads", "vocab_size", "intermediate_size")
_ROPE_INT = ("original_max_position_embeddings",)
_ROPE_STR = ("type", "rope_type")


def _unknown(file: str | None, path: str, key: str, known: set[str]) -> ConfigError:
    if key in FAMILY_KEYS:
        return ConfigError(file, f"{path}{key}", f"archsim's field names ({key} is {FAMILY_KEYS[key]}: pass the "
                           "config.json itself as the workload, archsim.config.hf translates it)", key)
    close = difflib.get_close_matches(key, sorted(known), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return ConfigError(file, f"{path}{key}", f"a known key{hint}", key)


def _check_type(file, path, key, value, kind):
    if value is None:
        return None
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(file, path + key, "an integer", value)
        if value < 0:
            raise ConfigError(file, path + key, "a non-negative integer", value)
        return value
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ConfigError(file, path + key, "a number", value)
        return float(value)
    if kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(file, path + key, "true or false", value)
        return value
    if not isinstance(value, str):
        raise ConfigError(file, path + key, "a string", value)
    return value


def _rope_scaling(raw: Any, file: str | None, path: str) -> RopeScaling | None:
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise ConfigError(file, path.rstrip("."), "a mapping or null", raw)
    known = {f.name for f in fields(RopeScaling)}
    out = {}
    for key, value in raw.items():
        if key not in known:
            raise _unknown(file, path, key, known)
        kind = int if key in _ROPE_INT else str if key in _ROPE_STR else bool if key == "truncate" else float
        out[key] = _check_type(file, path, key, value, kind)
        if out[key] is not None and ((key in _ROPE_POSITIVE and out[key] <= 0)
                                     or (key in _ROPE_NON_NEGATIVE and out[key] < 0)):
            raise ConfigError(file, path + key, "a number > 0" if key in _ROPE_POSITIVE else "a number >= 0", value)
    return RopeScaling(**out)


def model_from_dict(data: Mapping[str, Any], file: str | None = None, path: str = "") -> ModelConfig:
    """Validate a config.json-style mapping and return a ModelConfig (ConfigError on bad input).

    ``path`` is the YAML path prefix of ``data`` (e.g. ``"model"``) used in error messages.
    """
    prefix = f"{path}." if path else ""
    if not isinstance(data, Mapping):
        raise ConfigError(file, path or None, "a mapping of Hugging Face config fields", data)
    known = {f.name for f in fields(ModelConfig)}
    values: dict[str, Any] = {}
    for key, value in data.items():
        if key in IGNORED_HF_KEYS:
            continue
        if key in FIXED_HF_KEYS:
            if value != FIXED_HF_KEYS[key]:
                raise ConfigError(file, prefix + key, f"{FIXED_HF_KEYS[key]} (biases are not modelled)", value)
            continue
        if key not in known:
            raise _unknown(file, prefix, key, known | IGNORED_HF_KEYS | set(FIXED_HF_KEYS))
        if key in _INT:
            values[key] = _check_type(file, prefix, key, value, int)
        elif key in _FLOAT:
            values[key] = _check_type(file, prefix, key, value, float)
            if key in _FLOAT_RANGES and values[key] is not None and not values[key] > 0:
                raise ConfigError(file, prefix + key, _FLOAT_RANGES[key], value)
        elif key in _BOOL:
            values[key] = _check_type(file, prefix, key, value, bool)
        elif key in _STR:
            values[key] = _check_type(file, prefix, key, value, str)
        elif key == "rope_scaling":
            values[key] = _rope_scaling(value, file, prefix + key + ".")
        elif key == "mlp_only_layers":
            if not isinstance(value, list) or not all(type(v) is int and v >= 0 for v in value):
                raise ConfigError(file, prefix + key, "a list of layer indices", value)
            values[key] = tuple(value)
        elif key == "layer_types":
            if not isinstance(value, list) or not all(v in LAYER_TYPES for v in value):
                raise ConfigError(file, prefix + key, f"a list of {' or '.join(LAYER_TYPES)}, one per layer", value)
            values[key] = tuple(value)
        elif key == "architectures":
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ConfigError(file, prefix + key, "a list of strings", value)
            values[key] = tuple(value)
        elif key == "quantization_config":
            if value is not None and not isinstance(value, Mapping):
                raise ConfigError(file, prefix + key, "a mapping or null", value)
            values[key] = None if value is None else MappingProxyType(dict(value))
    for key in _REQUIRED:
        if values.get(key) is None:
            raise ConfigError(file, prefix + key, "a positive integer (required)", None)
    # null in config.json means "use the default" for fields that have non-None defaults
    values = {k: v for k, v in values.items()
              if v is not None or ModelConfig.__dataclass_fields__[k].default is None}
    model = ModelConfig(**values)
    validate_model(model, file, path)
    return model


def validate_model(m: ModelConfig, file: str | None = None, path: str = "") -> None:
    """Cross-field consistency checks (ConfigError naming the offending field)."""
    p = f"{path}." if path else ""

    def need(cond: bool, key: str, expected: str, got: object) -> None:
        if not cond:
            raise ConfigError(file, p + key, expected, got)

    for key in _REQUIRED:
        need(getattr(m, key) > 0, key, "a positive integer", getattr(m, key))
    need(m.num_hidden_layers <= MAX_HIDDEN_LAYERS, "num_hidden_layers",
         f"at most {MAX_HIDDEN_LAYERS} layers (archsim's size limit, see docs/limits.md)", m.num_hidden_layers)
    need(m.vocab_size <= MAX_VOCAB_SIZE, "vocab_size",
         f"at most {MAX_VOCAB_SIZE} tokens (archsim's size limit, see docs/limits.md)", m.vocab_size)
    need(m.num_attention_heads % m.kv_heads == 0, "num_key_value_heads",
         f"a divisor of num_attention_heads={m.num_attention_heads}", m.num_key_value_heads)
    if m.attention_kind == "mla":
        for key in ("qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim"):
            need(bool(getattr(m, key)), key, "a positive integer (required with kv_lora_rank)", getattr(m, key))
        need(m.qk_rope_head_dim % 2 == 0, "qk_rope_head_dim", "an even number (RoPE rotates pairs)",
             m.qk_rope_head_dim)
    else:
        need(m.gqa_head_dim % 2 == 0, "head_dim", "an even number (RoPE rotates pairs)", m.gqa_head_dim)
        need(m.head_dim is not None or m.hidden_size % m.num_attention_heads == 0, "head_dim",
             "set, or hidden_size divisible by num_attention_heads", m.head_dim)
    if m.is_moe:
        for key in ("moe_intermediate_size", "num_experts_per_tok"):
            need(bool(getattr(m, key)), key, "a positive integer (required with n_routed_experts)", getattr(m, key))
        E, k = m.n_routed_experts, m.num_experts_per_tok
        need(k <= E, "num_experts_per_tok", f"<= n_routed_experts={E}", k)
        need(m.n_group >= 1, "n_group", "a positive integer", m.n_group)
        need(E % m.n_group == 0, "n_group", f"a divisor of n_routed_experts={E}", m.n_group)
        need(1 <= m.topk_group <= m.n_group, "topk_group", f"between 1 and n_group={m.n_group}", m.topk_group)
        need(k <= m.topk_group * (E // m.n_group), "num_experts_per_tok",
             f"<= topk_group * experts per group = {m.topk_group * (E // m.n_group)}", k)
        need(m.moe_layer_freq >= 1, "moe_layer_freq", "a positive integer", m.moe_layer_freq)
        need(m.first_k_dense_replace <= m.num_hidden_layers, "first_k_dense_replace",
             f"<= num_hidden_layers={m.num_hidden_layers}", m.first_k_dense_replace)
        need(m.scoring_func in SCORING_FUNCS, "scoring_func", " or ".join(SCORING_FUNCS), m.scoring_func)
        need(m.topk_method is None or m.topk_method in TOPK_METHODS, "topk_method",
             f"null or one of {', '.join(TOPK_METHODS)}", m.topk_method)
        need(m.topk_method != "greedy" or m.n_group == 1, "topk_method",
             f"group_limited_greedy or noaux_tc with n_group={m.n_group} (greedy ignores groups)", m.topk_method)
        need(m.decoder_sparse_step >= 1, "decoder_sparse_step", "a positive integer", m.decoder_sparse_step)
        need(all(i < m.num_hidden_layers for i in m.mlp_only_layers), "mlp_only_layers",
             f"layer indices below num_hidden_layers={m.num_hidden_layers}", list(m.mlp_only_layers))
        if m.routed_scaling_factor is None:  # the softmax-top-k router (Mixtral, Qwen-MoE) has no groups or bias
            need(m.topk_method is None and m.n_group == 1 and m.scoring_func in ("softmax", TOPK_SOFTMAX),
                 "routed_scaling_factor",
                 "a number unless the router is plain softmax top-k (topk_method null, n_group 1)", None)
        if m.scoring_func == TOPK_SOFTMAX:  # gpt-oss's router: no groups, bias term, renormalising or scaling
            need(m.routed_scaling_factor in (None, 1.0) and not m.norm_topk_prob and m.topk_method is None
                 and m.n_group == 1, "scoring_func", "softmax or sigmoid unless the router is plain (topk_method "
                 "null, n_group 1, norm_topk_prob false, routed_scaling_factor null or 1)", m.scoring_func)
    need(m.hidden_act in ("silu", "swiglu"), "hidden_act", "silu (SwiGLU FFN)", m.hidden_act)
    need(not m.layer_types or len(m.layer_types) == m.num_hidden_layers, "layer_types",
         f"one entry per layer ({m.num_hidden_layers})", len(m.layer_types))
    if SLIDING in m.layer_types:
        need(bool(m.sliding_window), "sliding_window", "a positive integer (layer_types has sliding_attention "
             "layers)", m.sliding_window)
    for key in ("swiglu_limit", "swiglu_alpha"):
        need(getattr(m, key) is None or getattr(m, key) > 0, key, "a positive number or null", getattr(m, key))
    need((m.swiglu_limit is None) == (m.swiglu_alpha is None), "swiglu_alpha",
         "set together with swiglu_limit (gpt-oss's clamped SwiGLU)", m.swiglu_alpha)
    need(not (m.router_bias or m.expert_bias) or m.is_moe, "router_bias", "false on a dense model", True)
    need(not (m.attention_bias and m.qkv_bias), "qkv_bias", "false with attention_bias (which already biases "
         "q, k and v)", m.qkv_bias)
    if m.attention_kind == "mla":  # biases and QK-norm are modelled on the GQA projections only
        for key in ("attention_bias", "qkv_bias", "use_qk_norm", "attention_sinks"):
            need(not getattr(m, key), key, "false with MLA attention (modelled for GQA attention only)", True)


def load_model_config(path: str) -> ModelConfig:
    """Load a Hugging Face config.json (or a JSON/YAML file of the same keys) into a ModelConfig.

    Strict like every loader: a key given twice is an error, not "last one wins"."""
    file = str(path)
    if not file.endswith(".json"):
        return model_from_dict(load_yaml(file), file, "")
    data = read_capped_bytes(file, "JSON file")  # the YAML loader's size cap (MAX_FILE_BYTES) holds here too
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(file, None, "a UTF-8 JSON file", "invalid UTF-8") from None
    try:
        data = json.loads(text, object_pairs_hook=lambda pairs: _unique(pairs, file))
    except json.JSONDecodeError as exc:
        raise ConfigError(file, f"line {exc.lineno}", "valid JSON", exc.msg) from None
    if not isinstance(data, Mapping):
        raise ConfigError(file, None, "a JSON object of Hugging Face config fields", type(data).__name__)
    return model_from_dict(data, file, "")


def _unique(pairs: list[tuple[str, Any]], file: str) -> dict:
    out: dict = {}
    for key, value in pairs:
        if key in out:
            raise ConfigError(file, key, "each key once", "a duplicate key")
        out[key] = value
    return out
