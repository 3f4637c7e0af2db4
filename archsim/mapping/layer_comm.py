"""The collectives one decoder layer adds under a layout, for one micro-batch on one device: the attention TP
all-reduces, the context-parallel K/V exchange, and how the MoE layer's tokens meet its experts.

How tokens meet experts (``moe_exchange``) depends on where the tokens already are:
- ``replicated``: the MoE group is one attention TP group (``moe_tp * ep == tp``, no CP), so every chip already
  holds every token after the attention all-reduce; each chip runs its experts (or its slice of every expert) on
  them and the outputs are summed by the all-reduce that follows the MLP anyway (SGLang's and vLLM's TP MoE; EP
  inside the TP group). No dispatch, no combine.
- ``gather``: attention-DP replicas meet in MoE-TP groups without EP: the group all-gathers its replicas' tokens
  and reduce-scatters the expert outputs (SGLang's DP attention with a TP MoE).
- ``deepep``: expert parallel across replicas: DeepEP dispatch and combine (``throughput`` kernels for prefill,
  ``low_latency`` for decode unless the deployment says), each token copy sent to the ``moe_tp`` chips of its
  expert's rank.
"""
from __future__ import annotations

from dataclasses import dataclass

from archsim.config.hardware import Hardware
from archsim.config.model import ModelConfig
from archsim.config.stack import Stack
from archsim.cost.collectives import price_collective, price_ep_exchange
from archsim.errors import ConfigError
from archsim.graph.params import kv_elements_per_token_per_layer
from archsim.graph.precision import Precision
from archsim.mapping.parallelism import Parallelism

EP_MODES = ("throughput", "low_latency")
EXCHANGES = ("none", "replicated", "gather", "deepep")


@dataclass(frozen=True, kw_only=True)
class LayerComm:
    """Communication of one layer for one micro-batch on one device, by kind (seconds). The MoE's token
    exchange is ``ep_dispatch_s`` / ``ep_combine_s`` (DeepEP, or the all-gather / reduce-scatter of a gather)."""

    tp_all_reduce_s: float = 0.0
    ep_dispatch_s: float = 0.0
    ep_combine_s: float = 0.0
    cp_kv_exchange_s: float = 0.0
    # share of the chip's SMs the EP kernels hold while they run (DeepEP's throughput kernels); compute overlapped
    # with them runs on the rest
    ep_sm_fraction: float = 0.0

    @property
    def total_s(self) -> float:
        return self.tp_all_reduce_s + self.ep_dispatch_s + self.ep_combine_s + self.cp_kv_exchange_s


def moe_exchange(model: ModelConfig, par: Parallelism) -> str:
    """How a MoE layer's tokens reach its experts under ``par`` (module docstring): none (dense model or one chip
    per group), replicated, gather or deepep."""
    if not model.is_moe or par.moe_group == 1:
        return "none"
    if par.moe_group == par.tp and par.cp == 1:
        return "replicated"
    return "gather" if par.ep == 1 else "deepep"


def ep_exchange_mode(model: ModelConfig, par: Parallelism, phase: str, ep_mode: str | None = None) -> str | None:
    """The DeepEP kernels of a ``phase`` step's MoE layers: ``ep_mode`` when given, else throughput (normal
    kernels) for prefill and low_latency for decode; None when tokens meet experts without DeepEP
    (``moe_exchange`` is not deepep). The one rule behind the exchange priced here and the expert GEMMs' row
    layout (graph.op.expert_layout: masked after a low-latency dispatch)."""
    if ep_mode is not None and ep_mode not in EP_MODES:
        raise ConfigError(None, "ep.mode", " or ".join(EP_MODES), ep_mode)
    if moe_exchange(model, par) != "deepep":
        return None
    return ep_mode or ("throughput" if phase == "prefill" else "low_latency")


def layer_comm(model: ModelConfig, hw: Hardware, par: Parallelism, precision: Precision, layer: int, *,
               tokens: int, group_tokens: float, busiest_copies: float, phase: str,
               ep_mode: str | None, stack: Stack | None = None) -> LayerComm:
    """Collectives of one layer for one micro-batch: ``tokens`` of the busiest attention replica,
    ``group_tokens`` of its MoE group, ``busiest_copies`` routed copies the busiest EP rank receives. ``stack``:
    the serving stack whose custom all-reduce runs the TP all-reduce (Stack.all_reduce_algorithm)."""
    act = precision.activations
    tp_ar = 0.0
    if par.tp > 1:
        nbytes = tokens * model.hidden_size * act.bytes / par.cp
        algorithm = stack.all_reduce_algorithm(hw, nbytes, par.tp) if stack is not None else "auto"
        one = price_collective("all_reduce", nbytes, par.tp, hw, algorithm=algorithm).time_s
        tp_ar = 2 * one  # after o_proj, and after the dense (or shared-expert / TP-MoE) down_proj
    cp_kv = _cp_kv_exchange(model, hw, par, precision, tokens) if par.cp > 1 and phase == "prefill" else 0.0
    exchange = moe_exchange(model, par) if model.is_moe_layer(layer) else "none"
    if exchange in ("none", "replicated"):
        return LayerComm(tp_all_reduce_s=tp_ar, cp_kv_exchange_s=cp_kv)
    if exchange == "gather":
        nbytes = group_tokens * model.hidden_size * act.bytes
        gather = price_collective("all_gather", nbytes, par.moe_group, hw).time_s
        scatter = price_collective("reduce_scatter", nbytes, par.moe_group, hw).time_s
        return LayerComm(tp_all_reduce_s=tp_ar, ep_dispatch_s=gather, ep_combine_s=scatter, cp_kv_exchange_s=cp_kv)
    k = model.num_experts_per_tok
    # a chip sends its share of its replica's tokens (tp chips hold them); it also receives the copies its
    # experts take, so the busiest rank moves max(own tokens, received copies / k) tokens' worth
    own = tokens / par.tp / par.cp
    mode = ep_exchange_mode(model, par, phase, ep_mode)
    x = price_ep_exchange(tokens=max(own, busiest_copies / k), hidden=model.hidden_size, topk=k * par.moe_tp,
                          n_experts=model.n_routed_experts * par.moe_tp, ep=par.moe_group, hw=hw,
                          dispatch_dtype=dispatch_dtype(precision), combine_dtype=act, n_group=model.n_group,
                          topk_group=model.topk_group, mode=mode)
    sms = hw.node.ep_throughput_sms if mode == "throughput" else 0  # low-latency kernels hold no SM
    return LayerComm(tp_all_reduce_s=tp_ar, ep_dispatch_s=x.dispatch.time_s, ep_combine_s=x.combine.time_s,
                     cp_kv_exchange_s=cp_kv, ep_sm_fraction=min(1.0, sms / hw.sm_count))


def _cp_kv_exchange(model: ModelConfig, hw: Hardware, par: Parallelism, precision: Precision, tokens: int) -> float:
    """Ring attention: every chip's K/V (MLA: the latent + rope key) visits the other cp - 1 chips, the bytes of
    an all-gather of the layer's whole K/V over the cp group, whose members sit tp ranks apart (tp takes the
    consecutive chips of a node)."""
    per_token = kv_elements_per_token_per_layer(model) * precision.kv_cache.bytes
    if model.attention_kind != "mla":
        per_token /= par.tp
    return price_collective("all_gather", tokens * per_token, par.cp, hw, stride=par.tp).time_s


def dispatch_dtype(precision: Precision):
    """FP8 dispatch with 1x128 scales when the expert GEMMs run in FP8 (DeepEP, DSV3-TR §3.3), else the
    activation format."""
    w = precision.routed_expert_weights
    return w if w.name == "fp8" else precision.activations
