"""Energy cases (validation kind ``energy``): a public measurement of GPU board power and energy per output token of
a serving run, predicted from the deployment's priced steps (docs/energy.md).

A benchmark that keeps ``batch`` sequences running (vLLM's ``max_num_seqs``, a closed loop of many more requests)
is in steady state a sequence of iterations, each decoding ``batch`` tokens and prefilling the prompts that replace
the sequences that finished: ``batch / output_len`` prompts per iteration on average. So

    E_iteration = E_decode step + (batch / output_len) x E_prefill per prompt
    T_iteration = T_decode step + (batch / output_len) x T_prefill per prompt
    J per output token = E_iteration / batch;  average power per GPU = E_iteration / T_iteration / devices

with the decode step priced at the mean context of a generation (prompt + output / 2) and a prompt's prefill at the
batched rate of one forward of ``prefill_chunk`` tokens (vLLM's ``max_num_batched_tokens``). Every energy is the
whole instance's (each device's dynamic energy plus static power over the step: report/metrics.py), so it is board
power, what NVML reports (ML.ENERGY measures it with Zeus through NVML).

A node-level measurement (MLPerf power: the node's AC input) is predicted as ``node_figures``: the boards of the
``instances_per_node`` instances side by side plus the hardware's ``power.host_per_node``, an upper bound
(validation/energy_mlperf.yaml). Shape keys beyond the deployment's: ``power_limit_w`` (the board power limit the
run set, replacing the TDP as the cap), ``batch_rule: largest_fit`` (the stated batch is an engine cap; the running
batch is the largest whose KV cache fits), ``instances_per_node``.
"""
from __future__ import annotations

import warnings
from dataclasses import replace
from functools import lru_cache
from pathlib import Path
from typing import Mapping

from archsim.errors import ConfigError
from archsim.fidelity.cases import Case, NotModelled
from archsim.fidelity.deployment_eval import _overrides
from archsim.paths import data_dir

# Hugging Face config.json files of models without a workload YAML (validation/whatif_models/README.md)
HF_MODELS_DIR = "whatif_models"

# vLLM's default max_num_batched_tokens for chunked prefill when the case does not state it (the ML.ENERGY v3 configs
# set 8192: github.com/ml-energy/benchmark configs/vllm/lm-arena-chat/*/monolithic.config.yaml)
DEFAULT_PREFILL_CHUNK = 8192


def predict(case: Case) -> tuple[dict[str, float], dict]:
    """``avg_power_w_per_gpu`` and ``j_per_token`` of the case's serving run (SI: W, J), with ``node_power_w`` and
    ``node_j_per_token`` when the hardware states ``power.host_per_node``, and a detail dict. NotModelled when the
    case measures a figure the hardware cannot price."""
    values, detail = _predict(case.hardware, case.dtype, tuple(sorted(case.shape.items())))
    missing = [k for k in getattr(case, "measured", {}) if k not in values]
    if missing:
        raise NotModelled(f"{', '.join(missing)} needs power.host_per_node in hardware/{case.hardware}.yaml")
    return values, detail


@lru_cache(maxsize=256)
def _predict(hardware: str, dtype: str, shape_items: tuple) -> tuple[dict[str, float], dict]:
    shape = dict(shape_items)
    batch, prompt, output = (int(shape.get(k, 0)) for k in ("batch", "prompt_len", "output_len"))
    if batch < 1 or prompt < 1 or output < 1:
        raise NotModelled("batch, prompt_len and output_len must all be stated")
    devices = int(shape["devices"])
    hw = _hardware(hardware, shape)
    if shape.get("batch_rule", "largest_fit") != "largest_fit":
        raise NotModelled(f"batch_rule {shape['batch_rule']!r}: the one rule is largest_fit")
    decode = _decode(shape, dtype, hw, batch, prompt + output // 2)
    if decode.decode is None:
        if shape.get("batch_rule") != "largest_fit":
            raise NotModelled(f"does not fit at batch {batch}: {decode.memory.needs}")
        batch, decode = _largest_fit(shape, dtype, hw, batch, prompt + output // 2)
    chunk = int(shape.get("prefill_chunk", DEFAULT_PREFILL_CHUNK))
    per_forward = max(1, chunk // prompt)  # whole prompts in one chunked-prefill forward
    prefill = _estimate(shape, dtype, hw, batch=per_forward, prompt_len=prompt, output_len=1, phase="prefill")
    if prefill.prefill is None:
        raise NotModelled(f"the prefill of {per_forward} prompts does not fit: {prefill.memory.needs}")
    values, detail = _steady_state(decode, prefill, batch=batch, prompt=prompt, output=output,
                                   per_forward=per_forward, devices=devices)
    detail["batch"] = batch
    if hw.power.host_per_node_w is not None:
        instances = int(shape.get("instances_per_node", 1))
        nodes = -(-instances * devices // hw.node.chips_per_node)  # the nodes the instances occupy
        node = node_figures(values, detail, devices=devices, instances=instances, batch=batch,
                            host_w=hw.power.host_per_node_w * nodes)
        values.update(node)
        detail["node_power_w_boards_only"] = node["node_power_w"] - hw.power.host_per_node_w * nodes
    return values, detail


def _decode(shape: Mapping, dtype: str, hw, batch: int, context: int):
    """The decode step's Report at ``batch`` sequences of mean context ``context``."""
    return _estimate(shape, dtype, hw, batch=batch, prompt_len=context, output_len=1, phase="decode")


def _largest_fit(shape: Mapping, dtype: str, hw, batch: int, context: int):
    """(batch, decode Report) of the largest running batch below the stated cap whose KV cache fits (bisection):
    an engine's batch setting is a cap, and a paged KV cache holds only as many sequences as memory allows
    (``batch_rule: largest_fit``, validation/energy_mlperf.yaml)."""
    low, high, best = 1, batch - 1, None
    while low <= high:
        mid = (low + high) // 2
        report = _decode(shape, dtype, hw, mid, context)
        if report.decode is not None:
            low, best = mid + 1, (mid, report)
        else:
            high = mid - 1
    if best is None:
        raise NotModelled(f"does not fit even at batch 1 (cap {batch})")
    return best


def _hardware(name: str, shape: Mapping):
    """The case's chip; ``power_limit_w`` (the board power limit the run set, e.g. ``nvidia-smi -pl``) replaces
    the datasheet TDP as the cap of cost/power.py."""
    from archsim.config.hardware import resolve_hardware

    hw = resolve_hardware(name)
    limit = shape.get("power_limit_w")
    if limit is None:
        return hw
    numeric = isinstance(limit, (int, float)) and not isinstance(limit, bool)
    if not numeric or not hw.power.idle_w < limit <= hw.power.tdp_w:
        raise NotModelled(f"power_limit_w {limit} must lie above idle ({hw.power.idle_w} W) and at most the TDP "
                          f"({hw.power.tdp_w} W)")
    return replace(hw, power=replace(hw.power, tdp_w=float(limit)))


def node_figures(values: Mapping[str, float], detail: Mapping, *, devices: int, instances: int, batch: int,
                 host_w: float) -> dict[str, float]:
    """Node (wall) power and J per output token of ``instances`` copies of the instance side by side, each of
    ``devices`` GPUs, plus the host power of the nodes they occupy (``host_w``: nodes x ``power.host_per_node``):

        node power = instances x devices x board power per GPU + host
        node J per output token = node power x iteration time / (instances x batch)
    """
    node_w = instances * devices * values["avg_power_w_per_gpu"] + host_w
    return {"node_power_w": node_w, "node_j_per_token": node_w * detail["iteration_s"] / (instances * batch)}


def _steady_state(decode, prefill, *, batch: int, prompt: int, output: int, per_forward: int,
                  devices: int) -> tuple[dict[str, float], dict]:
    """The iteration of the module docstring from the two priced reports."""
    step_j = decode.energy.joules_per_token * batch            # one decode step, every device of the instance
    step_s = decode.decode.time_s
    prompt_j = prefill.energy.prefill_joules_per_token * prompt
    prompt_s = prefill.prefill.latency_s / per_forward
    arriving = batch / output
    iteration_j = step_j + arriving * prompt_j
    iteration_s = step_s + arriving * prompt_s
    values = {"avg_power_w_per_gpu": iteration_j / iteration_s / devices, "j_per_token": iteration_j / batch}
    detail = {"decode_step_s": step_s, "decode_power_w_per_gpu": step_j / step_s / devices,
              "prefill_power_w_per_gpu": prompt_j / prompt_s / devices, "iteration_s": iteration_s,
              "prefill_share_of_energy": arriving * prompt_j / iteration_j,
              "layout": decode.deployment.layout["label"]}
    return values, detail


@lru_cache(maxsize=16)
def _workload(model: str):
    """``workloads/<model>.yaml``, else the config.json in ``validation/whatif_models/<model>/``."""
    from archsim.config.workload import load_workload

    yaml = data_dir("workloads") / f"{model}.yaml"
    if yaml.exists():
        return load_workload(yaml)
    folder = data_dir("validation") / HF_MODELS_DIR / model
    if not folder.is_dir():
        raise NotModelled(f"no workload for model {model} (workloads/ or validation/{HF_MODELS_DIR}/)")
    with warnings.catch_warnings():  # the config fields archsim ignores (dropout, ...) are named in the README
        warnings.simplefilter("ignore")
        return _hf_workload(str(folder))


def _hf_workload(folder: str):
    """``workload_from_hf_config`` with a placeholder scenario of 1 + 1 tokens: the default scenario (4096 + 1024)
    exceeds the 4096-token window of Llama 2, and every case replaces the lengths with its own."""
    from archsim.config.hf import config_file, model_from_hf, read_config_json
    from archsim.config.workload import Workload, scenario_from_section
    from archsim.config.yaml_io import Section

    file = config_file(folder)
    model, weights, _ = model_from_hf(read_config_json(file), file)
    scenario = scenario_from_section(Section({**weights, "prompt_len": 1, "output_len": 1}, file, "scenario"), model)
    return Workload(name=Path(folder).name, model=model, scenario=scenario, source_file=file)


def _estimate(shape: Mapping, dtype: str, hardware, **kw):
    """The Report ``archsim.estimate`` gives for the case's layout (deployment_eval's resolve and report path, with
    the workload from ``_workload``)."""
    from archsim.mapping.resolve import resolve_deployment
    from archsim.report.metrics import report_of

    overrides = {**_overrides(shape, dtype), **kw}
    try:
        return report_of(resolve_deployment(_workload(str(shape["model"])), hardware, **overrides), overrides)
    except ConfigError as err:
        raise NotModelled(f"the layout does not resolve: {err}") from None


def shape_summary(shape: Mapping) -> str:
    """One line of the case's configuration, for reports."""
    return (f"{shape.get('model')} on {shape.get('devices')} GPUs (TP{shape.get('tp', 1)}), batch {shape.get('batch')}, "
            f"prompt {shape.get('prompt_len')} / output {shape.get('output_len')} tokens")
