"""The ``whatif`` category's device cases: published results of processing-in-memory and 3D-stacked-memory systems
reproduced with archsim's own pricing (validation/whatif_devices_public.yaml).

- ``whatif_pim_gemv``: the speedup of one GEMV on a chip's PIM units over the same GEMV on its host engine, both
  priced by the cost model's placement candidates (``cost/opcost.price_candidates``): host time / PIM time.
  Shape: ``rows`` (output features), ``cols`` (input features), optional ``host`` (the published system's host chip:
  a case measured on another host than the case's hardware is reported as not modelled, with archsim's figure),
  optional ``host_library`` (the kernel library the published baseline ran the GEMV with, one of the chip's
  ``kernel.libraries``: its ``bandwidth_fraction`` and ``mma_fraction`` scale the host engine's main-memory and
  matrix rates, as a stack's library does in the cost model; the PIM side is not a library and is unscaled);
  the dtype is the case's.
- ``whatif_clock_training``: the training throughput lost when the compute clock runs at ``clock_fraction`` of its
  full value, on the case's chip at its board power (its ``thermal:`` model set aside, as the published comparison
  is between two clock settings): 1 - tokens/s at the reduced clock / tokens/s at the full clock, from the training
  model (``mapping/training.estimate_training``). Shape: ``model`` (a validation/whatif_models/ folder or a workload
  name), ``tp``, ``dp``, ``pp``, ``micro_batches``, ``seq_len``, ``global_batch``, ``clock_percent``,
  ``recompute``.
"""
from __future__ import annotations

import dataclasses
import warnings
from typing import Mapping

from archsim.config.hardware import Hardware
from archsim.errors import ConfigError
from archsim.fidelity.cases import Case, NotModelled

PIM_KEYS = ("rows", "cols")
TRAINING_KEYS = ("model", "tp", "dp", "pp", "micro_batches", "seq_len", "global_batch", "clock_percent", "recompute")
PERCENT = 100


def _require(case: Case, keys: tuple[str, ...]) -> None:
    for key in keys:
        if key not in case.shape:
            raise ConfigError(case.file, f"{case.id}.shape.{key}", f"a value for {key}", None)


def pim_gemv_speedup(case: Case, hw: Hardware) -> tuple[float, dict]:
    """Host time / PIM time of a ``rows`` x ``cols`` GEMV in the case's dtype (module docstring). A case whose
    ``host`` (the published system's host chip) is not the case's hardware is not modelled: the speedup is set by the
    host's own GEMV efficiency, which the source does not publish (NotModelled, with archsim's figure for its chip)."""
    from archsim.cost.geometry import Geometry
    from archsim.cost.opcost import price_candidates
    from archsim.cost.traffic import op_work
    from archsim.dtypes import BY_NAME
    from archsim.graph.op import Op, Operand

    _require(case, PIM_KEYS)
    if hw.pim is None:
        raise ConfigError(case.file, f"{case.id}.hardware", "a chip with a pim: section", case.hardware)
    rows, cols, dtype = int(case.shape["rows"]), int(case.shape["cols"]), BY_NAME[case.dtype]
    op = Op(name="gemv", kind="gemm", engine="matrix", compute_dtype=dtype, flops=2 * rows * cols,
            reads=(Operand.of("x", (1, cols), dtype, "activation"), Operand.of("w", (cols, rows), dtype, "weight")),
            writes=(Operand.of("y", (1, rows), dtype, "output"),), params=rows * cols,
            attrs={"m": 1, "n": rows, "k": cols})
    costs = price_candidates(op, op_work(op, Geometry.of(hw)), hw)
    if "pim" not in costs:
        raise ConfigError(case.file, f"{case.id}.dtype", f"a dtype the PIM units run ({sorted(hw.pim.peak_flop_per_s)})",
                          case.dtype)
    pim = costs["pim"]
    library = case.shape.get("host_library")
    host_hw = hw if library is None else with_library(case, hw, str(library))
    host = next(iter(price_candidates(op, op_work(op, Geometry.of(host_hw)), host_hw).values()))
    published_host = case.shape.get("host")
    if published_host is not None and published_host != case.hardware:
        raise NotModelled(f"measured on {published_host}, whose baseline GEMV efficiency is not published; on "
                          f"{case.hardware} archsim gives {host.time_s / pim.time_s:.2f}x ({host.bound} "
                          f"{host.time_s * 1e6:.1f} us on the host, {pim.bound} {pim.time_s * 1e6:.1f} us on the PIM)")
    return host.time_s / pim.time_s, {"host_s": host.time_s, "host_bound": host.bound, "pim_s": pim.time_s,
                                      "pim_bound": pim.bound, "host_library": library}


def with_library(case: Case, hw: Hardware, name: str) -> Hardware:
    """``hw`` as the kernel library ``name`` (one of its ``kernel.libraries``) runs on it: the main memory's
    achievable fraction times the library's ``bandwidth_fraction``, every matrix engine's times its
    ``mma_fraction`` (the factors a stack's library puts on the default engine, cost/work.py ``_main_scale``)."""
    libraries = hw.kernel.libraries if hw.kernel is not None else {}
    if name not in libraries:
        raise ConfigError(case.file, f"{case.id}.shape.host_library", f"one of {sorted(libraries)} (the "
                          f"kernel.libraries of {case.hardware})", name)
    lib = libraries[name]
    main = hw.main_memory
    memory = {**hw.memory, main.name: dataclasses.replace(
        main, achievable_fraction=main.achievable_fraction * lib.bandwidth_fraction)}
    compute = {key: dataclasses.replace(e, achievable_fraction=e.achievable_fraction * lib.mma_fraction)
               if e.kind == "matrix" else e for key, e in hw.compute.items()}
    return dataclasses.replace(hw, memory=memory, compute=compute)


def clock_training_loss(case: Case, hw: Hardware) -> tuple[float, dict]:
    """1 - training tokens/s at ``clock_percent`` / at the full clock, at the board power (module docstring)."""
    from archsim.mapping.parallelism import Parallelism
    from archsim.mapping.training import TrainingSetup, estimate_training

    _require(case, TRAINING_KEYS)
    s = case.shape
    model = _model(case, str(s["model"]))
    par = Parallelism(tp=int(s["tp"]), ep=1, pp=int(s["pp"]), dp=int(s["dp"]), micro_batches=int(s["micro_batches"]))
    setup = TrainingSetup(seq_len=int(s["seq_len"]), global_batch=int(s["global_batch"]), precision=case.dtype,
                          recompute=str(s["recompute"]))
    board = _at_board_power(hw)
    clock = int(s["clock_percent"]) / PERCENT
    full = estimate_training(model, board, par, setup)
    slow = estimate_training(model, dataclasses.replace(board, compute_clock_fraction=clock), par, setup)
    return 1.0 - slow.tokens_per_s / full.tokens_per_s, {"tokens_per_s_full": full.tokens_per_s,
                                                         "tokens_per_s_reduced": slow.tokens_per_s,
                                                         "mfu_full": full.mfu, "board_power_w": board.power.tdp_w}


def _at_board_power(hw: Hardware) -> Hardware:
    """``hw`` without its stacked die's thermal cap: the power cap back at the board TDP the YAML states."""
    if hw.thermal is None or hw.thermal.board_tdp_w is None:
        return hw
    return dataclasses.replace(hw, thermal=None, power=dataclasses.replace(hw.power, tdp_w=hw.thermal.board_tdp_w))


def _model(case: Case, name: str):
    from archsim.fidelity.whatif_eval import workload_path

    path = workload_path(case, name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # config.json fields archsim does not model
        if path.endswith(".yaml"):
            from archsim.config.workload import load_workload
            return load_workload(path).model
        from archsim.config.hf import workload_from_hf_config
        return workload_from_hf_config(path).model


EVALUATORS: Mapping[str, object] = {"whatif_pim_gemv": pim_gemv_speedup, "whatif_clock_training": clock_training_loss}


def predict(case: Case, hw: Hardware) -> tuple[float, dict]:
    """The case's predicted figure (in its metric's SI unit) and a detail dict."""
    if case.kernel not in EVALUATORS:
        raise ConfigError(case.file, f"{case.id}.kernel", " or ".join(EVALUATORS), case.kernel)
    return EVALUATORS[case.kernel](case, hw)
