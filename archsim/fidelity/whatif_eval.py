"""The ``whatif`` validation category's system cases: a published result of a what-if chip reproduced end to end.

Kernel ``whatif_decode`` (validation/whatif_public.yaml): tokens/s per user of a model decoding at a stated batch on
``systems`` chips of the case's hardware, laid out as a pipeline of ``pp`` stages (one stage per system, as Cerebras
runs Llama-3.1-70B on 4 and 405B on 21 CS-3 systems), projected as ``archsim.estimate`` projects it (decode phase,
the case's weight dtype): tokens/s per user = tokens per step / TPOT. On a wafer-scale chip every op pays its all-
reduces across the core mesh (``cost/mesh.py``) and each stage boundary the scale-out link. When the weights of a
system do not fit its on-wafer memory, the step is priced as if they did and the excess streams in from off-wafer
memory every step (``cost/mesh.weight_stream_s``); ``estimate()`` itself reports such a layout as not fitting.

A case whose setup the model cannot represent is reported as skipped with the reason (``NotModelled``): speculative
decoding whose draft model and acceptance the source does not publish, a model family archsim has no graph for.
Shape keys: ``model`` (a folder of validation/whatif_models/ holding a Hugging Face config.json, or a workload
name), ``systems``, ``pp``, ``batch``, ``prompt_len``, ``output_len``, optional ``tp`` (tensor parallel degree within
a stage, default the resolver's; Groq runs a stage over the 8 chips of a GroqNode), ``weights`` (the weight dtype,
default the case's dtype; Groq stores weights at 8 bits), ``kv_cache`` (dtype, default the case's dtype),
``speculative`` (true: the published figure used speculative decoding) and ``weights_resident``
(true: the measured run kept its weights on the wafer although the model's would not fit, as WaferLLM timed each
layer with that layer's weights resident: the step is priced as if they fitted, with no streaming).
"""
from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path
from typing import Mapping

from archsim.errors import ConfigError
from archsim.fidelity.cases import Case, NotModelled, VALIDATION_DIR
from archsim.paths import data_dir

MODELS_DIR = Path(VALIDATION_DIR) / "whatif_models"
DECODE_KEYS = ("model", "systems", "pp", "batch", "prompt_len", "output_len")


def _estimate(workload: str, hw, **overrides):
    """The Report ``archsim.estimate`` gives (the same resolve and report path; fidelity sits below the api)."""
    from archsim.config.workload import load_workload
    from archsim.fidelity.energy_eval import _hf_workload  # a placeholder scenario (Llama 2's 4096-token window)
    from archsim.mapping.resolve import resolve_deployment
    from archsim.report.metrics import report_of

    try:
        wl = load_workload(workload) if workload.endswith(".yaml") else _hf_workload(workload)
        return report_of(resolve_deployment(wl, hw, **overrides), overrides)
    except ConfigError as err:  # a model family without a graph, a layout that does not resolve
        raise NotModelled(f"the model or layout does not resolve: {err}") from None


def predict(case: Case, hw=None) -> tuple[dict[str, float], dict]:
    """Every figure a ``whatif_decode`` case can be judged on (SI, as ``fidelity.cases.METRICS``) and a detail dict,
    on ``hw`` (default: the case's hardware); NotModelled when the setup is outside the model."""
    if case.kernel != "whatif_decode":
        raise ConfigError(case.file, f"{case.id}.kernel", "whatif_decode", case.kernel)
    return decode(case, hw)


def _require(case: Case, shape: Mapping[str, object], keys: tuple[str, ...]) -> None:
    for key in keys:
        if key not in shape:
            raise ConfigError(case.file, f"{case.id}.shape.{key}", f"a value for {key}", None)


def _check_weights(case: Case, shape: Mapping[str, object]) -> None:
    """The optional ``weights`` key names a dtype archsim knows (a typo is an input error, not a skipped case)."""
    from archsim.dtypes import BY_NAME

    weights = shape.get("weights")
    if weights is not None and weights not in BY_NAME:
        raise ConfigError(case.file, f"{case.id}.shape.weights", f"one of {sorted(BY_NAME)}", weights)


def workload_path(case: Case, model: str) -> str:
    """The case's model: validation/whatif_models/<model>/ (a config.json) or workloads/<model>.yaml."""
    folder = MODELS_DIR / model
    if (folder / "config.json").exists():
        return str(folder)
    workload = data_dir("workloads") / f"{model}.yaml"
    if workload.exists():
        return str(workload)
    raise ConfigError(case.file, f"{case.id}.shape.model",
                      f"a folder of {MODELS_DIR} with a config.json, or a workload name", model)


def decode(case: Case, hw=None) -> tuple[dict[str, float], dict]:
    """Decode tokens/s per user of the case's deployment on ``hw`` (default: the case's hardware; module
    docstring)."""
    from archsim.config.hardware import resolve_hardware

    s = case.shape
    _require(case, s, DECODE_KEYS)
    if s.get("speculative"):
        raise NotModelled("the published figure used (or, published with a stack that implements it, may have used) "
                          "speculative decoding, whose draft model and acceptance rate are not published: the tokens "
                          "per step cannot be priced (the case's notes say which)")
    _check_weights(case, s)
    hw = resolve_hardware(case.hardware if hw is None else hw)
    systems, batch = int(s["systems"]), int(s["batch"])
    context = int(s["prompt_len"]) + int(s["output_len"]) // 2  # the mean context over the generated tokens
    options = dict(devices=systems, pp=int(s["pp"]), batch=batch, prompt_len=context - 1, output_len=1,
                   phase="decode", weights=str(s.get("weights", case.dtype)),
                   kv_cache=str(s.get("kv_cache", case.dtype)), activations=case.dtype)
    if "tp" in s:  # tensor parallel within each stage (Groq: a stage's layers over the 8 chips of a node)
        options["tp"] = int(s["tp"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # config.json fields archsim does not model (dropout, pretraining_tp)
        report = _estimate(workload_path(case, str(s["model"])), hw, **options)
        stream_s = 0.0
        if not report.memory.fits:
            report, stream_s = _streamed(case, hw, report, options, resident_run=bool(s.get("weights_resident")))
    step_s = report.decode.tpot_s * report.decode.tokens_per_step + stream_s
    per_user = report.decode.tokens_per_step / step_s
    return ({"tokens_per_s_per_user": per_user, "tpot_ms": 1.0 / per_user,
             "output_tokens_per_s_per_gpu": per_user * batch / systems},
            {"layout": report.deployment.layout["label"], "context": context, "bound": report.decode.bound,
             "weights_bytes_per_system": report.memory.weights_bytes, "weight_stream_s": stream_s,
             "weights_resident": bool(s.get("weights_resident")),
             "communication_s": report.decode.communication_s})


def _streamed(case: Case, hw, report, options: dict, *, resident_run: bool = False):
    """A deployment whose weights do not fit its systems' memory, on a wafer-scale chip: the step priced as if they
    fitted, and the seconds per step to stream the excess weights in from off-wafer memory (0 when the measured run
    kept them resident, ``resident_run``)."""
    from archsim.cost.mesh import weight_stream_s

    if hw.mesh is None:
        raise NotModelled(f"does not fit: {report.memory.needs}")
    m = report.memory
    resident = m.capacity_bytes - (m.per_device_bytes - m.weights_bytes)  # memory left for weights
    if resident <= 0:
        raise NotModelled(f"the KV cache and activations alone exceed the memory: {m.needs}")
    main = hw.main_memory
    roomy = dataclasses.replace(main, capacity_bytes=2 * m.per_device_bytes)  # room to spare; no rate depends on it
    big = dataclasses.replace(hw, memory={**hw.memory, main.name: roomy})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fitted = _estimate(workload_path(case, str(case.shape["model"])), big, **options)
    if fitted.decode is None:
        raise NotModelled(f"does not fit even with the weights streamed: {fitted.memory.needs}")
    return fitted, 0.0 if resident_run else weight_stream_s(m.weights_bytes, resident, hw.mesh)
