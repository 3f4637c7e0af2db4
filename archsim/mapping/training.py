"""Training and fine-tuning on many devices: step time (pipeline schedule simulated as events), memory per
device (weights, gradients, optimizer states with ZeRO, activations with recomputation), tokens/s, MFU,
GPU-hours and cost for a token budget. Pre-training, full fine-tuning and LoRA."""
from __future__ import annotations

from dataclasses import dataclass, replace

from archsim.config.hardware import Hardware
from archsim.config.model import ModelConfig
from archsim.cost.collectives import price_collective
from archsim.cost.topology import topology_for
from archsim.cost.rates import ChipRates
from archsim.cost.phase import price_graph
from archsim.dtypes import FP8
from archsim.errors import ConfigError
from archsim.graph.build import build_prefill
from archsim.graph.precision import Shard, precision_from_names
from archsim.mapping.layer_comm import moe_exchange
from archsim.mapping.device_memory import MemoryBreakdown, TrainingBytes, memory_per_device, stage_layers
from archsim.mapping.parallel import auto_ep, auto_tp, divisors
from archsim.mapping.parallelism import Parallelism
from archsim.mapping.overlap import SEGMENTS, BlockTimes, Seg, fb_span
from archsim.mapping.phases import LayerComm, price_phase, representative_model
from archsim.mapping.pipeline import ChunkTimes, pipeline_step
from archsim.mapping.training_ops import block_op_times
from archsim.mapping.training_work import (HEAD_SUFFIXES, STREAMING_KINDS, MicroBatchWork, micro_batch_work,
                                           min_max_partition, op_block, op_segment)
from archsim.units import SECONDS_PER_HOUR

TRILLION = 1e12
MODES = ("pretrain", "finetune", "lora")
# DeepEP's normal-mode notify kernels (github.com/deepseek-ai/DeepEP csrc/kernels/legacy/internode.cu, the V1
# kernels of docs/legacy.md's tables; csrc/kernels/internode.cu before the V2 split):
# messages on the critical path as (RDMA, NVLink). notify_dispatch, before a dispatch with a fresh layout: an
# RDMA and an NVLink barrier, the token counts put over RDMA, an RDMA barrier, the counts over NVLink with an
# NVLink barrier, a final RDMA and NVLink barrier. cached_notify, before a combine or a dispatch that reuses the
# layout (the backward's): an RDMA and an NVLink barrier, buffer cleaning, and both barriers again.
NOTIFY_DISPATCH_MESSAGES = (4, 3)
CACHED_NOTIFY_MESSAGES = (2, 2)


@dataclass(frozen=True, kw_only=True)
class TrainingSetup:
    """What is trained and how.

    ``precision``: ``fp8`` (DeepSeek-V3 recipe: FP8 GEMMs, BF16 weights copy, FP32 master weights and
    gradients, BF16 AdamW moments, DSV3-TR §3.3) or ``bf16`` (mixed precision: BF16 weights and
    gradients, FP32 master + moments, Rajbhandari et al. 2020 "2 + 2 + 12 bytes"). ``optimizer``:
    ``adamw`` (two moments) or ``muon`` (one momentum buffer, Jordan et al. 2024; Kimi K2's MuonClip).
    ``recompute``: ``none`` (keep every activation), ``selective`` (recompute norms, activations
    functions and RoPE: their outputs are not kept, their time is paid again in backward) or ``full``
    (keep only each layer's input, recompute the whole forward). ``mode``: ``pretrain``, ``finetune``
    (all weights trained) or ``lora`` (base frozen; rank ``lora_rank`` adapters on
    ``lora_targets``). ``comm_sms``: streaming multiprocessors reserved for communication kernels
    (DeepSeek-V3 uses 20 of 132, DSV3-TR §3.2.2); compute runs on the rest. ``fp8_activation_cache``:
    activations saved for backward are stored in FP8 (1 byte) instead of the activation format
    (DSV3-TR §3.3.3 caches Linear inputs in FP8; K2-TR §2.4 stores MoE inputs in FP8); applied to every
    saved activation, an approximation that slightly overstates the saving. ``recompute_projections``:
    GEMMs (op-name suffixes) whose forward ``selective`` recomputation also re-runs in backward
    (DeepSeek-V3 recomputes the MLA up-projections ``q_b_proj`` and ``kv_b_proj``, DSV3-TR §3.3.3).
    ``attention_output_format``: the format the attention output (the input of the Linear after it) is
    cached in for the attention backward: ``bf16`` (kept as computed) or ``e5m6`` (DSV3-TR §3.3.3: "a
    customized E5M6 data format exclusively for these activations": cast in the forward, cast back in backward).
    """

    seq_len: int
    global_batch: int
    precision: str = "bf16"
    optimizer: str = "adamw"
    recompute: str = "selective"
    mode: str = "pretrain"
    schedule: str = "1f1b"
    virtual_chunks: int = 2
    lora_rank: int = 16
    lora_targets: tuple[str, ...] = ("q_b_proj", "kv_b_proj", "o_proj", "q_proj", "k_proj", "v_proj")
    comm_sms: int = 0
    mtp: bool = False
    fp8_activation_cache: bool = False
    recompute_projections: tuple[str, ...] = ()
    attention_output_format: str = "bf16"

    def __post_init__(self) -> None:
        checks = (("precision", ("bf16", "fp8")), ("optimizer", ("adamw", "muon")),
                  ("recompute", ("none", "selective", "full")), ("mode", MODES),
                  ("schedule", ("1f1b", "interleaved", "dualpipe")),
                  ("attention_output_format", ("bf16", "e5m6")))
        for name, allowed in checks:
            if getattr(self, name) not in allowed:
                raise ConfigError(None, f"training.{name}", f"one of {', '.join(allowed)}", getattr(self, name))
        for name in ("seq_len", "global_batch", "lora_rank", "virtual_chunks"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(None, f"training.{name}", "a positive integer", v)
        if not isinstance(self.recompute_projections, tuple) or not all(
                isinstance(p, str) and p for p in self.recompute_projections):
            raise ConfigError(None, "training.recompute_projections", "a tuple of op names",
                              self.recompute_projections)
        if isinstance(self.comm_sms, bool) or not isinstance(self.comm_sms, int) or self.comm_sms < 0:
            raise ConfigError(None, "training.comm_sms", "an integer >= 0", self.comm_sms)


@dataclass(frozen=True, kw_only=True)
class TrainingEstimate:
    """One training step and what it implies for a token budget."""

    parallelism: Parallelism
    setup: TrainingSetup
    memory: MemoryBreakdown
    step_time_s: float
    tokens_per_step: int
    model_flops_per_token: float
    # the FLOPs MFU counts: the main model's (an MTP module's excluded), the convention of the source's MFU
    mfu_flops_per_token: float
    devices: int
    peak_flop_per_s: float
    price_usd_per_hour: float
    breakdown: dict
    pipeline: tuple | None = None  # (schedule kind, ChunkTimes, virtual chunks) for the event simulation

    @property
    def fits(self) -> bool:
        return self.memory.fits

    @property
    def tokens_per_s(self) -> float:
        """Trained tokens per second across the deployment."""
        return self.tokens_per_step / self.step_time_s

    @property
    def mfu(self) -> float:
        """Model FLOPs of the main model (3 x forward, causal attention counted once per attended pair, the
        MTP module left out) per second over the devices' dense BF16 peak: the convention of DeepSeek-V3's
        38.94% (ISCA25 Table 4, "MFU (causal)"). ISCA25 Table 2 gives DeepSeek-V3 250 GFLOPs per token of
        training compute; its Table 4's 272.80B tokens a day on 2048 H800s are 1541.7 tokens/s per GPU, and
        1541.7 x 250e9 / 989.4e12 = 38.96%: the 250 is the main model's 3 x forward without the MTP module
        (archsim: 250.8 GFLOPs without it, 261.0 with it; ``mfu_flops_per_token``)."""
        return self.tokens_per_s * self.mfu_flops_per_token / (self.devices * self.peak_flop_per_s)

    @property
    def gpu_hours_per_trillion_tokens(self) -> float:
        """Device-hours to train on 10^12 tokens."""
        return TRILLION / self.tokens_per_s * self.devices / SECONDS_PER_HOUR

    def cost_usd(self, tokens: float) -> float:
        """Rental cost of training on ``tokens`` tokens at the hardware's price per device-hour."""
        return tokens / self.tokens_per_s * self.devices / SECONDS_PER_HOUR * self.price_usd_per_hour

    def to_dict(self, tokens: float | None = None) -> dict:
        """JSON form. A layout that does not fit keeps its memory breakdown and a ``reason``; its timing
        keys are null (it is reported as not fitting, never priced as if it ran)."""
        out = {"layout": {**self.parallelism.to_dict(), "label": self.parallelism.label()},
               "setup": {k: getattr(self.setup, k) for k in ("seq_len", "global_batch", "precision", "optimizer",
                                                             "recompute", "mode", "schedule", "comm_sms",
                                                             "attention_output_format")},
               "fits": self.fits, "memory": self.memory.to_dict(), "tokens_per_step": self.tokens_per_step,
               "model_flops_per_token": self.model_flops_per_token,
               "mfu_flops_per_token": self.mfu_flops_per_token}
        timing = {"step_time_s": self.step_time_s, "tokens_per_s": self.tokens_per_s, "mfu": self.mfu,
                  "gpu_hours_per_trillion_tokens": self.gpu_hours_per_trillion_tokens,
                  "breakdown_s": dict(self.breakdown)}
        if tokens is not None:
            out["tokens"] = tokens
            timing["gpu_hours"] = tokens / TRILLION * self.gpu_hours_per_trillion_tokens
            timing["cost_usd"] = self.cost_usd(tokens)
        if not self.fits:
            m = self.memory
            out["reason"] = (f"needs {m.total_bytes / 1e9:.1f} GB per device on stage {m.stage}, "
                             f"capacity {m.capacity_bytes / 1e9:.1f} GB")
            timing = {k: None for k in timing}
        out.update(timing)
        return out


def training_bytes(setup: TrainingSetup) -> TrainingBytes:
    """Bytes per trained parameter (see ``TrainingSetup``): weights copy, gradients, optimizer states."""
    if setup.precision == "fp8":
        weights, grads, master, moment = 2.0, 4.0, 4.0, 2.0  # DSV3-TR §3.3: FP32 master + grads, BF16 moments
    else:
        weights, grads, master, moment = 2.0, 2.0, 4.0, 4.0  # ZeRO paper: 2 + 2 + (4 + 4 + 4)
    moments = 2 if setup.optimizer == "adamw" else 1
    copies = 2 if setup.schedule == "dualpipe" else 1  # DualPipe keeps two parameter copies (DSV3-TR Table 2)
    return TrainingBytes(weights=weights, gradients=grads, optimizer=master + moments * moment, weight_copies=copies)


def in_flight_micro_batches(setup: TrainingSetup, pp: int, micro_batches: int) -> float:
    """Micro-batches whose activations the first stage holds at the peak: 1F1B PP, interleaved
    PP (1 + (PP - 1) / (PP v)) (Narayanan et al. 2021), DualPipe PP + 1 (DSV3-TR Table 2)."""
    if setup.schedule == "dualpipe":
        n = pp + 1
    elif setup.schedule == "interleaved":
        n = pp * (1 + (pp - 1) / (pp * setup.virtual_chunks))
    else:
        n = pp
    return min(n, micro_batches) if pp > 1 else 1


def estimate_training(model: ModelConfig, hw: Hardware, par: Parallelism, setup: TrainingSetup) -> TrainingEstimate:
    """Step time, memory and throughput of one training step of ``setup`` on layout ``par``.

    Per micro-batch (``micro_batches`` splits each DP replica's ``global_batch / dp`` sequences), every
    block of the model (decoder layer, head, MTP module) is priced by named terms
    (``archsim.mapping.training_work``: forward, Dgrad, Wgrad, attention and element-wise backward, FP8
    casts, recomputation, logits at every position) on the SMs that communication kernels leave. Blocks
    are split into ``pp`` stages (exact min-max partition); the heaviest rank (under DualPipe: stage r
    with stage PP-1-r) sets the chunk times. EP, TP and CP communication runs forward and backward.
    Exposed communication depends on the schedule: DualPipe's F&B blocks hide communication under compute
    as far as the dependencies allow (the two-stream schedule of ``archsim.mapping.overlap.fb_span``);
    1F1B and interleaved chunks pay it. The pipeline step follows
    the schedule analytically (``archsim.mapping.pipeline``; ``archsim.sim.step`` executes it as events
    and agrees). Then the ZeRO gradient reduce-scatter and parameter all-gather over the DP replicas
    (counted as exposed), and the optimizer update (HBM-bound). Memory is reported for the even layer
    split of ``stage_layers`` (the time's min-max split may move a layer; not reflected in memory).
    """
    if setup.global_batch % par.dp:
        raise ConfigError(None, "training.global_batch", f"a multiple of dp={par.dp}", setup.global_batch)
    peak = _bf16_peak(hw)
    seqs_per_replica = setup.global_batch // par.dp
    if seqs_per_replica % par.micro_batches:
        raise ConfigError(None, "parallelism.micro_batches", f"a divisor of global_batch/dp = {seqs_per_replica}",
                          par.micro_batches)
    mb_seqs = seqs_per_replica // par.micro_batches
    precision = precision_from_names(setup.precision)  # the weights format; activations BF16
    mtp = setup.mtp and bool(model.num_nextn_predict_layers)
    # the whole model as one stage: every layer's communication for one micro-batch
    whole = price_phase(model, hw, replace(par, micro_batches=1, pp=1), precision, phase="prefill",
                        batch=mb_seqs * par.dp, length=setup.seq_len, mtp=mtp, overlap=False)
    stats = _stage_graph_stats(model, hw, par, precision, mb_seqs, setup)
    frozen = setup.mode == "lora"
    sm_share = (hw.sm_count - setup.comm_sms) / hw.sm_count
    stages = _stage_work(model, hw, par, setup, stats, whole, mtp, frozen, sm_share)
    act_bytes = mb_seqs * setup.seq_len * model.hidden_size * precision.activations.bytes
    p2p = price_collective("p2p", act_bytes, par.devices, hw).time_s if par.pp > 1 else 0.0
    rank = _bottleneck_rank(stages, setup.schedule, par.pp, p2p)
    f_comp, b_comp, w_comp = rank["work"].f_s, rank["work"].b_s, rank["work"].w_s
    f_comm = b_comm = rank["comm_s"]  # backward dispatch / combine mirror the forward ones
    chunk = ChunkTimes(f_s=f_comp + f_comm, b_s=b_comp + b_comm, w_s=w_comp, fb_s=rank["fb_s"], p2p_s=p2p)
    step_pipe, bubble, timeline = _pipeline_time(setup, par, chunk)
    mem_params = memory_per_device(model, par, precision, capacity_bytes=hw.main_memory.capacity_bytes)
    trained = sum(mem_params.by_category.values()) if not frozen else _lora_params(model, par, setup)
    dp_sync, opt_s = _dp_and_optimizer(hw, par, setup, trained)
    step = step_pipe + dp_sync + opt_s
    memory = _training_memory(model, hw, par, precision, setup, stats, frozen, trained)
    flops_per_token = 3 * stats["forward_flops_per_token"]
    breakdown = {"forward_compute_per_micro_batch": f_comp, "backward_compute_per_micro_batch": b_comp,
                 "forward_communication_per_micro_batch": f_comm, "fb_block_per_micro_batch": rank["fb_s"],
                 "fb_exposed_per_micro_batch": max(0.0, rank["fb_s"] - max(f_comp + b_comp, f_comm + b_comm)),
                 "pipeline": step_pipe, "bubble": bubble, "dp_gradient_sync": dp_sync, "optimizer": opt_s,
                 "terms_per_micro_batch": rank["work"].to_dict(), "stage_layers": rank["layers"]}
    return TrainingEstimate(parallelism=par, setup=setup, memory=memory, step_time_s=step,
                            tokens_per_step=setup.global_batch * setup.seq_len, model_flops_per_token=flops_per_token,
                            mfu_flops_per_token=3 * stats["main_flops_per_token"],
                            devices=par.devices, peak_flop_per_s=peak, price_usd_per_hour=hw.price_usd_per_hour,
                            breakdown=breakdown, pipeline=timeline)


def _bf16_peak(hw: Hardware) -> float:
    """The matrix engine's dense BF16 peak, against which training MFU is quoted (see ``TrainingEstimate.mfu``)."""
    engine = hw.engine_for("matrix")
    if "bf16" not in engine.peak_flop_per_s:
        raise ConfigError(hw.source_file, f"compute.{engine.name}.peak", "a bf16 peak (training MFU is quoted "
                          "against it)", sorted(engine.peak_flop_per_s))
    return engine.peak_flop_per_s["bf16"]


def moe_chunk_pair(model: ModelConfig, hw: Hardware, par: Parallelism, setup: TrainingSetup, *,
                   moe_layers: int) -> dict:
    """One DualPipe forward-and-backward chunk pair of ``moe_layers`` MoE layers on one device (the unit
    DeepSeek's profile-data ``train.json`` shows): compute and communication seconds, the span of their
    two-stream schedule (``archsim.mapping.overlap.fb_span``), the EP dispatch / combine seconds of one
    forward call (without its notify kernel), ``blocks``: the layers' ``BlockTimes``, and ``ops``: seconds by
    (profiler-trace op, pass) for the whole pair (``archsim.mapping.training_ops``), communication included."""
    if not model.is_moe:
        raise ConfigError(None, "model", "a MoE model", model.name)
    if isinstance(moe_layers, bool) or not isinstance(moe_layers, int) or moe_layers < 1:
        raise ConfigError(None, "moe_layers", "a positive integer", moe_layers)
    mb_seqs = setup.global_batch // par.dp // par.micro_batches
    precision = precision_from_names(setup.precision)
    whole = price_phase(model, hw, replace(par, micro_batches=1, pp=1), precision, phase="prefill",
                        batch=max(1, mb_seqs) * par.dp, length=setup.seq_len, mtp=False, overlap=False)
    stats = _stage_graph_stats(model, hw, par, precision, max(1, mb_seqs), setup)
    moe = next(layer for layer in range(model.num_hidden_layers) if model.is_moe_layer(layer))
    sm_share = (hw.sm_count - setup.comm_sms) / hw.sm_count
    key = stats["kind_of"](moe)
    kw = dict(tokens=stats["tokens"], topk=model.num_experts_per_tok, hidden=model.hidden_size,
              recompute=setup.recompute, recompute_projections=setup.recompute_projections,
              frozen=setup.mode == "lora", gradient_bytes=training_bytes(setup).gradients,
              fp8_activation_cache=setup.fp8_activation_cache,
              attention_output_format=setup.attention_output_format)
    segs = {seg: micro_batch_work(stats["graph"], stats["cost"], hw, count=lambda op, seg=seg: 1 if op_block(
        op, stats["small_layers"]) == key and op_segment(op.name) == seg else 0, **kw).scaled(1.0 / sm_share)
        for seg in SEGMENTS}
    comm = whole.layer_comm[moe]
    notify_dispatch, cached_notify = ep_notify_s(hw, model, par) if comm.ep_dispatch_s > 0 else (0.0, 0.0)
    layer = _block_times(segs, comm, (notify_dispatch, cached_notify))
    blocks = [layer] * moe_layers
    compute = moe_layers * layer.compute_s
    communication = moe_layers * layer.comm_s  # forward and backward each dispatch and combine
    ops = {k: moe_layers * v for k, v in block_op_times(stats["graph"], stats["cost"], hw, block=key,
                                                        small_layers=stats["small_layers"], sm_share=sm_share,
                                                        **kw).items()}
    # the backward's calls mirror the forward's (a combine's gradient goes out as a dispatch, a dispatch's
    # comes back as a combine; the model prices them as the forward calls); TP and CP calls ride with them
    # the notify kernels are ops of their own: notify_dispatch and a cached_notify in the forward, two
    # cached_notify in the backward (``ep_notify_s``; ``_block_times`` folds them into the calls)
    dispatch_notify, combine_notify = (notify_dispatch + cached_notify) / 2, cached_notify
    for pass_ in ("forward", "backward"):
        ops[("dispatch", pass_)] = moe_layers * (layer.dispatch_s - dispatch_notify)
        ops[("combine", pass_)] = moe_layers * (layer.combine_s - combine_notify)
        if layer.gather_s:
            ops[("collective", pass_)] = moe_layers * layer.gather_s
    if cached_notify:
        ops[("notify", "forward")] = moe_layers * (notify_dispatch + cached_notify)
        ops[("notify", "backward")] = moe_layers * 2 * cached_notify
    return {"compute_s": compute, "communication_s": communication, "span_s": fb_span(blocks, blocks),
            "dispatch_s": comm.ep_dispatch_s, "combine_s": comm.ep_combine_s, "blocks": blocks, "ops": ops}


def _stage_work(model, hw, par, setup, stats, whole, mtp, frozen, sm_share) -> list[dict]:
    """Per pipeline stage, one micro-batch: its training work (``MicroBatchWork`` on the SMs left by
    communication kernels), its EP/TP communication, its blocks and their parts for the F&B schedule
    (``archsim.mapping.overlap.BlockTimes``). Blocks (decoder layers, then the final head, then the MTP
    module) are split into ``pp`` contiguous stages minimising the heaviest stage."""
    g, cost = stats["graph"], stats["cost"]
    small_layers = stats["small_layers"]
    kw = dict(tokens=stats["tokens"], topk=model.num_experts_per_tok if model.is_moe else 1,
              hidden=model.hidden_size, recompute=setup.recompute,
              recompute_projections=setup.recompute_projections, frozen=frozen,
              gradient_bytes=training_bytes(setup).gradients, fp8_activation_cache=setup.fp8_activation_cache,
              attention_output_format=setup.attention_output_format)
    keys = {op_block(g.nodes[n]["op"], small_layers) for n in g.nodes}
    parts = {(key, seg): micro_batch_work(
        g, cost, hw, count=lambda op, key=key, seg=seg: 1 if op_block(op, small_layers) == key
        and op_segment(op.name) == seg else 0, **kw).scaled(1.0 / sm_share)
        for key in keys for seg in SEGMENTS}
    zero = parts[(stats["kind_of"](0), "pre")].scaled(0.0)
    work = {key: _sum(parts[(key, seg)] for seg in SEGMENTS) for key in keys}
    moe_layer = next((c for layer, c in enumerate(whole.layer_comm) if model.is_moe_layer(layer)), None)
    no_comm = LayerComm()

    notify = ep_notify_s(hw, model, par)

    def block(name, keys_, comm):
        segs = {seg: _sum([parts.get((k, seg), zero) for k in keys_]) for seg in SEGMENTS}
        times = _block_times(segs, comm, notify)
        return name, _sum([work.get(k, zero) for k in keys_]), times.comm_s / 2, times

    blocks = [block(f"layer {layer}", [stats["kind_of"](layer)] + (["embed"] if layer == 0 else []),
                    whole.layer_comm[layer]) for layer in range(model.num_hidden_layers)]
    blocks.append(block("head", ["head"], no_comm))
    if mtp:
        blocks.append(block("mtp", ["mtp"], moe_layer or no_comm))
    split = min_max_partition([w.f_s + w.b_s for _, w, _, _ in blocks], min(par.pp, len(blocks)))
    out = []
    for r in split:
        out.append({"work": _sum(blocks[i][1] for i in r), "comm_s": sum(blocks[i][2] for i in r),
                    "blocks": [blocks[i][3] for i in r],
                    "layers": f"{blocks[r.start][0]}..{blocks[r.stop - 1][0]}"})
    return out


def ep_notify_s(hw: Hardware, model: ModelConfig, par: Parallelism) -> tuple[float, float]:
    """Seconds of DeepEP's normal-mode notify kernels (``NOTIFY_DISPATCH_MESSAGES``, ``CACHED_NOTIFY_MESSAGES``)
    with every message at its fabric's latency (``node.scale_out.latency``, ``node.scale_up.latency``; no RDMA
    message when the EP group sits in one node): (notify_dispatch, cached_notify). (0, 0) when the layout
    has no DeepEP exchange. A lower bound: the kernels also wait for the slowest peer and for the host to
    reset the receive counters (the trace's notify kernels take 0.75-3.8 ms; docs/training_trace.md)."""
    if moe_exchange(model, par) != "deepep":
        return 0.0, 0.0
    topo = topology_for(hw, par.moe_group)
    internode = topo.span(par.moe_group).nodes > 1

    def latency(messages: tuple[int, int]) -> float:
        rdma, nvlink = messages
        return (rdma * topo.scale_out.latency_s if internode else 0.0) + nvlink * topo.scale_up.latency_s
    return latency(NOTIFY_DISPATCH_MESSAGES), latency(CACHED_NOTIFY_MESSAGES)


def _block_times(segs: dict[str, MicroBatchWork], comm: LayerComm,
                 notify: tuple[float, float] = (0.0, 0.0)) -> BlockTimes:
    """A block's parts for the F&B schedule (``archsim.mapping.overlap.BlockTimes``) from its training work
    per segment and its layer's communication: the context-parallel K/V exchange before the attention, the
    EP dispatch after it and the combine after the experts; of the TP all-reduces (after ``o_proj`` and
    after the dense or shared-expert ``down_proj``), one goes with the dispatch and one with the combine.
    A layer with an EP exchange adds ``notify`` (``ep_notify_s``): the forward dispatch waits for a
    notify_dispatch and the backward's for a cached_notify (their mean goes with the dispatch, which the
    backward mirrors), each combine for a cached_notify."""
    nd, nc = notify if comm.ep_dispatch_s > 0 else (0.0, 0.0)
    return BlockTimes(**{seg: Seg(f=w.f_s, b=w.b_s - w.w_s, w=w.w_s) for seg, w in segs.items()},
                      gather_s=comm.cp_kv_exchange_s,
                      dispatch_s=comm.ep_dispatch_s + comm.tp_all_reduce_s / 2 + (nd + nc) / 2,
                      combine_s=comm.ep_combine_s + comm.tp_all_reduce_s / 2 + nc)


def _sum(works) -> MicroBatchWork:
    works = list(works)
    out = works[0]
    for w in works[1:]:
        out = _add(out, w)
    return out


def _add(a: MicroBatchWork, b: MicroBatchWork) -> MicroBatchWork:
    return MicroBatchWork(**{k: v + getattr(b, k) for k, v in a.to_dict().items()})


def _bottleneck_rank(stages: list[dict], schedule: str, pp: int, p2p_s: float = 0.0) -> dict:
    """The pipeline rank that sets the pace, per micro-batch, with its F&B block time ``fb_s`` (the
    two-stream schedule of ``archsim.mapping.overlap.fb_span``). DualPipe places stage r and stage PP-1-r on
    rank r (DSV3-TR §3.2.1) and runs one micro-batch of each per pair of slots: the rank's average of the
    two stages, and of its two F&B blocks (forward of stage r with backward of stage PP-1-r, and the
    reverse); the rank with the longest F&B block. In the steady state each DualPipe F&B block also carries
    two pipeline sends (one activation forward, one gradient backward, ``p2p_s`` each) on the communication
    stream (DSV3-TR Figure 4's PP slot). Other schedules: the heaviest stage (its F&B block overlaps one
    micro-batch's forward with another's backward of the same stage)."""
    if schedule == "dualpipe" and len(stages) > 1:
        ranks = []
        for r in range(len(stages) // 2):
            a, b = stages[r], stages[len(stages) - 1 - r]
            fb = (fb_span(a["blocks"], b["blocks"], 2 * p2p_s) + fb_span(b["blocks"], a["blocks"], 2 * p2p_s)) / 2
            ranks.append({"work": _add(a["work"], b["work"]).scaled(0.5), "comm_s": (a["comm_s"] + b["comm_s"]) / 2,
                          "layers": f"{a['layers']} + {b['layers']}", "fb_s": fb})
        return max(ranks, key=lambda x: x["fb_s"])
    stage = max(stages, key=lambda s: s["work"].f_s + s["work"].b_s)
    return {**stage, "fb_s": fb_span(stage["blocks"], stage["blocks"])}


def _pipeline_time(setup, par, chunk: ChunkTimes):
    """(step seconds, bubble seconds, (schedule kind, chunk times, virtual chunks) or None without a pipeline)."""
    m, pp = par.micro_batches, par.pp
    if pp == 1:
        # no pipeline: with two or more micro-batches one's forward overlaps another's backward (the F&B
        # block); with one, everything is serial
        return (m * chunk.fb if m >= 2 else chunk.f_s + chunk.b_s), 0.0, None
    chunks = 1
    if setup.schedule == "interleaved":
        chunks = v = setup.virtual_chunks
        chunk = ChunkTimes(f_s=chunk.f_s / v, b_s=chunk.b_s / v, w_s=chunk.w_s / v, fb_s=chunk.fb / v,
                           p2p_s=chunk.p2p_s)
    step, bubble = pipeline_step(setup.schedule, pp, m, chunk, chunks)
    return step, bubble, (setup.schedule, chunk, chunks)


def _stage_graph_stats(model, hw, par, precision, mb_seqs, setup) -> dict:
    """From the per-device forward graph of one micro-batch: the graph and its cost (for the training
    terms), how often the full model runs each op, model FLOPs per token (full model, logits at every
    position) and the bottleneck stage's saved activation bytes. Graphs are built for the
    representative model (one layer per kind) and mapped to every layer."""
    tokens = mb_seqs * setup.seq_len
    mtp = setup.mtp and bool(model.num_nextn_predict_layers)
    routed = tokens * max(par.ep, par.tp) / par.tp if model.is_moe else None
    rep = representative_model(model)
    small, index = rep if rep else (model, None)

    def kind_of(layer: int) -> int:
        return index[model.is_moe_layer(layer)] if index is not None else layer

    g = build_prefill(small, batch=mb_seqs, prompt_len=setup.seq_len, precision=precision,
                      shard=Shard(tp=par.tp, ep=par.ep if model.is_moe else 1), mtp=mtp, routed_tokens=routed)
    cost = price_graph(g, hw)
    saved_by: dict = {}
    for name in g.nodes:
        op = g.nodes[name]["op"]
        if op.layer is None or op.layer >= small.num_hidden_layers:
            continue
        if setup.recompute == "none" or op.kind not in STREAMING_KINDS:
            saved_by[op.layer] = saved_by.get(op.layer, 0.0) + sum(
                o.nbytes for o in op.writes if o.role in ("activation", "output"))
    worst = max(stage_layers(model, par.pp), key=len)
    saved = sum(saved_by.get(kind_of(layer), 0.0) for layer in worst)
    if setup.recompute == "full":
        saved = len(worst) * tokens * model.hidden_size * precision.activations.bytes
    if setup.fp8_activation_cache:
        saved *= FP8.bytes / precision.activations.bytes
    full = build_prefill(small, batch=1, prompt_len=setup.seq_len, precision=precision, mtp=mtp)
    flops_by: dict = {}
    head_flops = {"main": 0.0, "mtp": 0.0}
    for name in full.nodes:
        op = full.nodes[name]["op"]
        key = op.layer if op.layer is not None and op.layer < small.num_hidden_layers else "other"
        if name.startswith("mtp."):
            key = "mtp"
        flops_by[key] = flops_by.get(key, 0.0) + op.flops
        if name.endswith(HEAD_SUFFIXES):
            head_flops["mtp" if name.startswith("mtp.") else "main"] += op.flops
    main_flops = flops_by.get("other", 0.0) + sum(flops_by.get(kind_of(layer), 0.0)
                                                  for layer in range(model.num_hidden_layers))
    main_flops += head_flops["main"] * (setup.seq_len - 1)
    mtp_flops = flops_by.get("mtp", 0.0) + head_flops["mtp"] * (setup.seq_len - 1)
    return {"forward_flops_per_token": (main_flops + mtp_flops) / setup.seq_len,
            "main_flops_per_token": main_flops / setup.seq_len,
            "saved_activation_bytes": saved, "graph": g, "cost": cost, "tokens": tokens,
            "small_layers": small.num_hidden_layers, "kind_of": kind_of}


def _lora_params(model: ModelConfig, par: Parallelism, setup: TrainingSetup) -> float:
    """Trainable LoRA parameters per device: r x (in + out) per targeted projection per layer of a stage."""
    h, r = model.hidden_size, setup.lora_rank
    shapes = {}
    if model.attention_kind == "mla":
        H, qk = model.num_attention_heads, model.qk_nope_head_dim + model.qk_rope_head_dim
        shapes = {"q_b_proj": ((model.q_lora_rank or h), H * qk),
                  "kv_b_proj": (model.kv_lora_rank, H * (model.qk_nope_head_dim + model.v_head_dim)),
                  "o_proj": (H * model.v_head_dim, h)}
    else:
        d, H, kv = model.gqa_head_dim, model.num_attention_heads, model.kv_heads
        shapes = {"q_proj": (h, H * d), "k_proj": (h, kv * d), "v_proj": (h, kv * d), "o_proj": (H * d, h)}
    per_layer = sum(r * (i + o) for name, (i, o) in shapes.items() if name in setup.lora_targets)
    return per_layer * max(len(s) for s in stage_layers(model, par.pp)) / par.tp


def _dp_and_optimizer(hw, par, setup, trained_params: float) -> tuple[float, float]:
    """ZeRO-1/2: reduce-scatter the gradients and all-gather the updated weights over the DP replicas;
    then the optimizer reads and writes its shard of master weights, moments and gradients (HBM-bound). A chip's
    replicas sit tp ranks apart (tp takes the consecutive chips of a node)."""
    tb = training_bytes(setup)
    replicas = par.dp * par.cp
    sync = 0.0
    if replicas > 1:
        grad_bytes = trained_params * tb.gradients
        sync = price_collective("reduce_scatter", grad_bytes, replicas, hw, stride=par.tp).time_s \
            + price_collective("all_gather", trained_params * tb.weights, replicas, hw, stride=par.tp).time_s
    shard = trained_params / (replicas if par.zero_stage >= 1 else 1)
    opt = 2 * shard * (tb.optimizer + tb.gradients + tb.weights) / ChipRates.of(hw).main_bytes_per_s
    return sync, opt


def _training_memory(model, hw, par, precision, setup, stats, frozen, trained) -> MemoryBreakdown:
    tb = training_bytes(setup)
    in_flight = in_flight_micro_batches(setup, par.pp, par.micro_batches)
    acts = stats["saved_activation_bytes"] * in_flight
    if not frozen:
        return memory_per_device(model, par, precision, capacity_bytes=hw.main_memory.capacity_bytes,
                                 activation_bytes_per_stage=acts, training=tb)
    base = memory_per_device(model, par, precision, capacity_bytes=hw.main_memory.capacity_bytes,
                             activation_bytes_per_stage=acts)
    # adapters: BF16 weights and FP32 gradients; the optimizer states follow the setup as in full training
    # (FP32 master + one or two moments in the precision recipe's format: ``training_bytes``)
    lora = TrainingBytes(weights=2.0, gradients=4.0, optimizer=training_bytes(setup).optimizer)
    return replace(base, weights_bytes=base.weights_bytes + trained * lora.weights,
                   gradients_bytes=trained * lora.gradients, optimizer_bytes=trained * lora.optimizer)


def smallest_training_layout(model, hw, setup: TrainingSetup, devices: int, **fixed) -> Parallelism:
    """A training layout on ``devices``: the degrees given in ``fixed`` (None = choose); otherwise TP 1,
    EP = the largest divisor of the stage's chips that divides the routed experts, PP = the smallest
    divisor whose memory fits (the largest tried if none fits, reported as not fitting), micro-batches
    = one sequence each."""
    if isinstance(devices, bool) or not isinstance(devices, int) or devices < 1:
        raise ConfigError(None, "devices", "a positive integer", devices)
    cp = fixed.get("cp") or 1
    tp = fixed.get("tp") or auto_tp(model, hw, devices // cp if devices % cp == 0 else 1)
    if devices % (tp * cp):
        raise ConfigError(None, "parallelism.tp", f"tp*cp dividing devices ({devices})", tp * cp)
    rest = devices // (tp * cp)
    if fixed.get("pp"):
        options = [fixed["pp"]]
    elif fixed.get("dp"):
        options = [rest // fixed["dp"]] if rest % fixed["dp"] == 0 else []
    else:
        options = list(divisors(rest, model.num_hidden_layers))
    if not options or rest % options[0]:
        raise ConfigError(None, "parallelism", f"tp*cp*dp*pp = devices ({devices})", fixed)
    zero = 1 if fixed.get("zero_stage") is None else fixed["zero_stage"]
    precision = precision_from_names(setup.precision)
    par = None
    for pp in options:
        dp = rest // pp
        ep = fixed.get("ep") or auto_ep(model, tp, tp * cp * dp)
        mb = fixed.get("micro_batches") or max(1, setup.global_batch // dp)
        par = Parallelism(tp=tp, cp=cp, dp=dp, pp=pp, ep=ep, micro_batches=mb, zero_stage=zero)
        mem = memory_per_device(model, par, precision, capacity_bytes=hw.main_memory.capacity_bytes,
                                training=training_bytes(setup))
        if mem.fits:
            return par
    return par

