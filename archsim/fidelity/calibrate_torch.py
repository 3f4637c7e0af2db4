"""Fit a GPU's named fields from the JSON that ``microbench_torch`` writes, and write
``<base>.calibrated.yaml`` (the base hardware file with those fields replaced) beside the raw JSON."""
from __future__ import annotations

import json
import re
from pathlib import Path

from archsim.errors import ConfigError
from archsim.fidelity.calibrate import CalibratedField, Calibration, fit_ramp_and_bandwidth, write_outputs

# copies from 64 MiB up exceed the L2 (50 MB on H100, NVIDIA Hopper whitepaper / "NVIDIA Hopper Architecture
# In-Depth" blog [S]; 60 MiB on the H200, its cudaDeviceProp.l2CacheSize [M], hardware/h200.yaml): HBM-bound
LARGE_COPY_BYTES = 64 * 2 ** 20
# the SM clock settles at the power cap within the first second of back-to-back GEMMs (the 28 Nov 2026 H200
# samples: 1980 MHz at 0.02 s, 1440-1545 MHz from 0.25 s on; validation/h200_torch_clock_20261128.json [M]);
# microbench_torch takes the median of the samples from this time on
CLOCK_SETTLE_S = 1.0


def ran_shape(row: dict) -> tuple[int, int, int, float]:
    """(m, n, k, FLOPs) of the GEMM that actually ran for a microbench_torch row: an FP8 GEMM whose M
    cuBLASLt rejects is padded to ``m_run`` rows (a server pads the same way), and its time is that GEMM's."""
    m = int(row.get("m_run", row["m"]))
    return m, int(row["n"]), int(row["k"]), 2.0 * m * row["n"] * row["k"]


def best_gemm(raw: dict, base: dict, base_file: str) -> tuple[float, dict] | None:
    """(fraction of the base file's nominal peak, row) of the timed GEMM nearest its dtype's peak: the one
    whose fraction becomes the matrix engine's achievable fraction. None when no GEMM ran."""
    from archsim.units import parse_quantity

    engine = next(name for name, e in base["compute"].items() if e.get("kind") == "matrix")
    best: tuple[float, dict] | None = None
    for row in raw.get("gemm", []):
        if "time_s" not in row or row["dtype"] not in base["compute"][engine]["peak"]:
            continue
        peak = parse_quantity(base["compute"][engine]["peak"][row["dtype"]], "flop_per_s", file=base_file,
                              path=f"compute.{engine}.peak.{row['dtype']}")
        fraction = ran_shape(row)[3] / row["time_s"] / peak
        if best is None or fraction > best[0]:
            best = (fraction, row)
    return best


def sustained_clock(raw: dict) -> tuple[float, str] | None:
    """(SM clock in MHz under sustained GEMM load, how it was read) from a microbench_torch JSON: the median of
    the ``clock.samples`` ([t_s, MHz]) from CLOCK_SETTLE_S to the end of the GEMMs (``clock.seconds``), else
    ``clock.sm_mhz_sustained``, else the old single read ``sm_clock_mhz_after_gemm``; None when none is there."""
    clock = raw.get("clock") if isinstance(raw.get("clock"), dict) else {}
    end = clock.get("seconds") or float("inf")
    try:
        late = sorted(float(mhz) for t, mhz in clock.get("samples") or [] if CLOCK_SETTLE_S <= float(t) <= end)
    except (TypeError, ValueError):
        raise ConfigError("raw measurements", "clock.samples", "[t_s, sm_mhz] pairs", clock.get("samples")) from None
    if late:
        median = late[len(late) // 2]  # the upper median, as microbench_torch takes it
        run = f" of {clock['seconds']:.1f} s" if clock.get("seconds") else ""
        where = f"; samples from {clock['samples_from']}" if clock.get("samples_from") else ""
        return median, (f"nvidia-smi SM clock sampled while BF16 8192^3 GEMMs ran back to back: median of "
                        f"{len(late)} samples from {CLOCK_SETTLE_S:g} s to the end{run}, {median:.0f} MHz "
                        f"({late[0]:.0f}-{late[-1]:.0f}){where}")
    if clock.get("sm_mhz_sustained"):
        return float(clock["sm_mhz_sustained"]), ("nvidia-smi SM clock while BF16 GEMMs run back to back "
                                                  "(microbench_torch's median after the first second)")
    if raw.get("sm_clock_mhz_after_gemm"):
        return float(raw["sm_clock_mhz_after_gemm"]), "nvidia-smi SM clock read once after the GEMMs"
    return None


def _fit(raw: dict, base: dict, base_file: str) -> list[CalibratedField]:
    from archsim.units import parse_quantity

    fields: list[CalibratedField] = []
    copies = [r for r in raw.get("copy", []) if r["size_bytes"] >= LARGE_COPY_BYTES and "time_s" in r]
    if len(copies) >= 2:
        # the faster of the two timings: the graph-replayed copy is floor-free, but a captured copy of 512 MiB
        # or more ran at 2.7 TB/s against 4.2 TB/s launched eagerly on the H200 (a memcpy graph node taking
        # another path); from 64 MiB up the eager single call's ~8 us floor is a few percent at most
        times = [min(r["time_s"], r.get("time_event_s", r["time_s"])) for r in copies]
        bw, ramp = fit_ramp_and_bandwidth([r["bytes"] for r in copies], times)
        hbm_name = list(base["memory"])[-1]
        nominal = parse_quantity(base["memory"][hbm_name]["bandwidth"], "bytes_per_s", file=base_file,
                                 path=f"memory.{hbm_name}.bandwidth")
        fields.append(CalibratedField(path=f"memory.{hbm_name}.achievable_fraction", value=bw / nominal,
                                      unit="fraction", how=f"copy slope {bw / 1e12:.4g} TB/s / nominal"))
        # The copy intercept is not written to kernel.ramp: over copies of 64 MiB and up it extrapolates far
        # outside the measured sizes, and the small copies are dominated by the timer's own overhead (the first
        # H200 run measured ~23 us for 1-4 MiB copies), so the base file's DeepGEMM-fitted ramp stays.
        del ramp
    engine = next(name for name, e in base["compute"].items() if e.get("kind") == "matrix")
    best = best_gemm(raw, base, base_file)
    if best is not None:
        m, n, k, _ = ran_shape(best[1])
        fields.append(CalibratedField(path=f"compute.{engine}.achievable_fraction", value=best[0], unit="fraction",
                                      how=f"best GEMM ({best[1]['dtype']} {m}x{n}x{k}) / nominal peak"))
    clock = sustained_clock(raw)
    boost = (base.get("kernel") or {}).get("clock_boost")
    boost_hz = parse_quantity(boost, "frequency_hz", file=base_file, path="kernel.clock_boost") if boost else None
    # a clock above the base file's boost clock was read before the power cap pulled it down (the first
    # 28 Nov 2026 run read nvidia-smi once, at the start of the GEMM queue: 1980 MHz): not a clock under load
    if clock and (boost_hz is None or clock[0] * 1e6 <= boost_hz):
        fields.append(CalibratedField(path="kernel.clock_under_load", value=clock[0] * 1e6, unit="Hz", how=clock[1]))
    return fields


def _derive_energy(text: str, base: dict, yaml_name: str) -> list[CalibratedField]:
    """The matrix engine's energy per FLOP re-derived by the TDP rule (archsim/fidelity/tdp_energy.py) on the
    hardware ``text`` describes, i.e. at the calibrated rates: the base file's figures were derived at its
    own rates, and the faster calibrated ones would otherwise draw more than TDP on large GEMMs."""
    from archsim.config.hardware import hardware_from_dict
    from archsim.config.yaml_io import parse_yaml_text
    from archsim.fidelity.tdp_energy import derived_energy_per_flop

    hw = hardware_from_dict(parse_yaml_text(text, yaml_name), yaml_name)
    engine = next(name for name, e in base["compute"].items() if e.get("kind") == "matrix")
    if "energy_per_flop" not in base["compute"][engine]:
        return []
    return [CalibratedField(path=f"compute.{engine}.energy_per_flop.{d.dtype}", value=d.energy_j_per_flop,
                            unit="J/FLOP", how=d.how) for d in derived_energy_per_flop(hw).values()]


def _quantity(path: str, value: float, base: dict | None = None) -> object:
    if ".energy_per_flop." in path:
        # the base file's unit text (pJ/FLOP, pJ/op), the value at the derivation's 0.01 pJ rounding
        node = base
        for key in path.split("."):
            node = node[key]
        return f"{value * 1e12:.2f} {str(node).split()[-1]}"
    if path.endswith("achievable_fraction"):
        return round(value, 4)
    if path == "kernel.ramp":
        return f"{value * 1e6:.4g} us"
    if path == "kernel.clock_under_load":
        return f"{value / 1e6:.4g} MHz"
    raise ConfigError(None, path, "a calibrated field this writer knows", path)


def _replace_value(text: str, path: str, value: object, comment: str, file: str) -> str:
    """``text`` (a hardware YAML) with the value at dotted ``path`` replaced and ``comment`` as its inline
    comment; every other line, comments included, is kept verbatim (yaml.safe_dump would drop the sources)."""
    keys = path.split(".")
    lines = text.splitlines()
    parents: list[tuple[int, str]] = []  # (indent, key) of the mappings enclosing the current line
    for i, line in enumerate(lines):
        body = line.split("#", 1)[0].rstrip()
        if not body.strip() or ":" not in body:
            continue
        indent = len(line) - len(line.lstrip())
        parents = [(ind, key) for ind, key in parents if ind < indent]
        key = body.strip().split(":", 1)[0]
        if [k for _, k in parents] + [key] == keys:
            note = f"  # {comment}" if comment else ("  #" + line.split("#", 1)[1] if "#" in line else "")
            lines[i] = f"{' ' * indent}{key}: {value}{note}"
            return "\n".join(lines) + "\n"
        if body.rstrip().endswith(":"):
            parents.append((indent, key))
    raise ConfigError(file, path, "a field present in the base hardware file", "missing")


def calibrate_torch(out_dir: str | Path, *, raw: dict | None = None, base: str = "h200") -> Calibration:
    """Fit ``raw`` (a microbench_torch JSON; measured now when None and a CUDA GPU is present) against the
    base hardware file and write ``<base>.calibrated.yaml`` and ``<base>.raw.json`` into ``out_dir``."""
    from archsim.config.hardware import HARDWARE_DIR, load_hardware
    from archsim.config.yaml_io import load_yaml

    if raw is None:
        try:
            import torch  # noqa: F401 - optional extra, imported only here
        except ImportError:
            raise ConfigError(None, "calibrate.backend", "PyTorch installed (pip install archsim[torch])",
                              "torch") from None
        import torch

        if not torch.cuda.is_available():
            raise ConfigError(None, "calibrate.backend", "a CUDA GPU (or --raw with a saved microbench_torch JSON)",
                              "no CUDA device")
        from archsim.fidelity import microbench_torch

        raw_path = Path(out_dir) / f"{base}.raw.json"
        raw_path.parent.mkdir(parents=True, exist_ok=True)
        microbench_torch.main(["--out", str(raw_path)])
        raw = json.loads(raw_path.read_text(encoding="utf-8"))
    if not isinstance(raw, dict) or "copy" not in raw or "gemm" not in raw:
        raise ConfigError("raw measurements", None, "a microbench_torch JSON object (keys copy, gemm, ...)",
                          sorted(raw) if isinstance(raw, dict) else type(raw).__name__)
    base_file = HARDWARE_DIR / f"{base}.yaml"
    data = load_yaml(base_file)
    fields = _fit(raw, data, str(base_file))
    yaml_name, raw_name = f"{base}.calibrated.yaml", f"{base}.raw.json"
    device = f"{raw.get('device', '?')}, torch {raw.get('torch', '?')}"
    text = base_file.read_text(encoding="utf-8")
    for f in fields:
        text = _replace_value(text, f.path, _quantity(f.path, f.value),
                              f"source: [M] measured on {device} ({raw_name}): {f.how}", str(base_file))
    derived = _derive_energy(text, data, yaml_name)
    for f in derived:
        text = _replace_value(text, f.path, _quantity(f.path, f.value, data),
                              f"[D] at the calibrated rates (archsim/fidelity/tdp_energy.py): {f.how}", str(base_file))
    text = _replace_value(text, "name", f"{data['name']} (calibrated)", "", str(base_file))
    header = [f"# {base}.yaml with fields fitted by `archsim calibrate --backend torch` from {raw_name}",
              f"# ({device}). Fitted fields carry their measurement ([M]); the matrix engine's energy per FLOP",
              "# is re-derived at the fitted rates by the TDP rule ([D]); every other field and its source is",
              "# the base file's, kept verbatim below."]
    text = "\n".join(header) + "\n" + text
    yaml_path = write_outputs(out_dir, {yaml_name: text, raw_name: json.dumps(raw, indent=1)}) / yaml_name
    load_hardware(yaml_path)  # the written file must load strictly
    return Calibration(fields=tuple(fields), raw=raw, hardware_yaml=str(yaml_path), loop={}, derived=tuple(derived))


# FlashAttention-2 (PyTorch's flash SDPA backend) issues Ampere-style mma.sync, not Hopper's wgmma.
# source: FlashAttention-3 paper (Shah, Bikshandi, Zhang, Thakkar, Ramani, Dao 2024, arXiv 2407.08608), abstract:
# "FlashAttention-2 achieves only 35% utilization on H100 GPUs" [S] (quoted by several secondary pages).
FA2_MMA_PEAK_PERCENT = 35
_FLASH_TRAITS = re.compile(r"Flash_fwd_kernel_traits<(\d+), (\d+), (\d+), (\d+)")


def flash_tiles(kernels: list[dict]) -> tuple[int, int] | None:
    """(q_tile, kv_tile) = (kBlockM, kBlockN) of the first FlashAttention-2 kernel in a profiled call:
    its template is Flash_fwd_kernel_traits<head_dim, kBlockM, kBlockN, warps, ...>."""
    for k in kernels:
        m = _FLASH_TRAITS.search(k.get("name", ""))
        if m:
            return int(m.group(2)), int(m.group(3))
    return None


def _kernel_note(kernels: list[dict]) -> str:
    names = [re.sub(r"^void ", "", k["name"]).split("<")[0] + (
        "<" + ",".join(k["name"].split("<", 1)[1].split(",")[:4]) + ",...>" if "<" in k["name"] else "")
        for k in kernels if "name" in k]
    return "kernels: " + " + ".join(names)


def validation_cases(raw: dict, *, base: str = "h200") -> list[dict]:
    """The held-out H200 cases of validation/h200_torch.yaml from a microbench_torch JSON: every timed GEMM
    (metric tflops, in the shape that ran: ``m_run`` rows where M was padded; the one ``_fit`` turns into the
    tensor engine's achievable fraction against hardware/<base>.yaml's peaks is marked ``calibrates``) and
    every flash attention call (metric time_us, with the kernel's tiles read from its profiled name and
    FlashAttention-2's published MMA utilisation)."""
    from archsim.config.hardware import HARDWARE_DIR
    from archsim.config.yaml_io import load_yaml

    base_file = HARDWARE_DIR / f"{base}.yaml"
    gemms = [(r, "gemm_h200_measured", "") for r in raw.get("gemm", []) if "time_s" in r]
    # DeepSeek-V3 pre-training shapes (microbench_torch.TRAINING_GEMM_SHAPES): fprop, dgrad, wgrad
    gemms += [(r, "gemm_h200_training", "train_") for r in raw.get("training_gemm", []) if "time_s" in r]
    best = best_gemm(raw, load_yaml(base_file), str(base_file))
    cases = []
    for r, category, prefix in gemms:
        m, n, k, flops = ran_shape(r)
        padded = f"_run{m}" if m != r["m"] else ""
        note = f"M padded from {r['m']} to {m} to run; " if padded else ""
        case = {"id": f"torch_{prefix}{r['dtype']}_m{r['m']}{padded}_n{n}_k{k}", "category": category,
                "kernel": "gemm", "dtype": r["dtype"], "shape": {"m": m, "n": n, "k": k},
                "measured": {"tflops": round(flops / r["time_s"] / 1e12, 1)},
                "notes": note + _kernel_note(r.get("kernels", []))}
        if best is not None and r is best[1]:
            case["calibrates"] = "compute.tensor.achievable_fraction"
        cases.append(case)
    for r in raw.get("attention", []):
        tiles = flash_tiles(r.get("kernels", []))
        if "time_s" not in r or tiles is None:
            continue
        phase = "prefill" if r["causal"] and r["q_len"] == r["kv_len"] else "decode"
        shape = {"kind": "mha" if r["heads"] == r["kv_heads"] else "gqa", "phase": phase, "batch": r["batch"],
                 "heads": r["heads"], "heads_kv": r["kv_heads"], "context": r["kv_len"], "head_dim": r["head_dim"]}
        if phase == "decode":
            shape["q_len"] = r["q_len"]
        shape.update({"q_tile": tiles[0], "kv_tile": tiles[1], "mma_peak_percent": FA2_MMA_PEAK_PERCENT})
        cases.append({"id": f"torch_sdpa_{phase}_b{r['batch']}_h{r['heads']}_kv{r['kv_heads']}_l{r['kv_len']}",
                      "category": "attention_h200_measured", "kernel": "attention", "dtype": r["dtype"],
                      "shape": shape, "measured": {"time_us": round(r["time_s"] * 1e6, 2)},
                      "notes": f"SDPA backend {r.get('backend')}; " + _kernel_note(r.get("kernels", []))})
    return cases


def _flow(value: object) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_flow(v)}" for k, v in value.items()) + "}"
    if isinstance(value, str):
        return json.dumps(value) if any(c in value for c in ":{}[],#<>'\"") else value
    return str(value)


def validation_yaml(raw: dict, *, raw_name: str, base: str = "h200") -> str:
    """validation/h200_torch.yaml's text (header + one flow mapping per case) from a microbench_torch JSON."""
    smi = raw.get("nvidia_smi_start", {})
    cases = validation_cases(raw, base=base)
    categories = {c["category"] for c in cases}
    head = [
        f"# Kernels timed on a real {raw.get('device', '?')} by archsim/fidelity/microbench_torch.py (raw data:",
        f"# validation/{raw_name}; regenerate with archsim.fidelity.calibrate_torch.validation_yaml).",
        "# Timing: a CUDA graph of N back-to-back calls between one CUDA-event pair, the calls rotating over enough",
        "# operand copies (>= 240 MiB) that the 60 MiB L2 holds none of them: per-call time without the event/launch",
        "# floor that the first run's single-call timing carried. BF16 GEMMs are torch.matmul (cuBLAS), FP8 GEMMs",
        "# torch._scaled_mm with per-tensor scales (cuBLASLt), not DeepGEMM's block-scaled kernels; each case's",
        "# notes name the kernels one call launched (torch.profiler)."]
    if "attention_h200_measured" in categories:
        head += [
            "# Attention is scaled_dot_product_attention with the flash backend (FlashAttention-2), BF16, head_dim",
            "# 128; q_tile/kv_tile are that kernel's kBlockM/kBlockN read from its name, mma_peak_percent",
            "# FlashAttention-2's published 35% MMA utilisation on Hopper (calibrate_torch.FA2_MMA_PEAK_PERCENT):",
            "# neither is fitted to these times."]
    head += ["# Priced on the uncalibrated hardware/h200.yaml."]
    if any("calibrates" in c for c in cases):
        head += ["# The one case marked `calibrates` is the GEMM whose fraction of peak `archsim calibrate",
                 "# --backend torch` writes into h200.calibrated.yaml."]
    if "gemm_h200_training" in categories:
        head += ["# Category gemm_h200_training holds DeepSeek-V3 pre-training shapes",
                 "# (microbench_torch.TRAINING_GEMM_SHAPES: fprop, dgrad and wgrad of a 4K-token micro-batch)."]
    body = [f"source: archsim microbench_torch run on {raw.get('device', '?')}, torch {raw.get('torch', '?')}, "
            f"CUDA {raw.get('cuda', '?')}, driver {smi.get('driver_version', '?')} ({raw.get('date_utc', '?')[:10]})",
            "confidence: measured", "hardware: h200",
            f"conditions: one {raw.get('device', '?')}, SM clock max {smi.get('clocks.max.sm', '?')}, power limit "
            f"{smi.get('power.limit', '?')}, CUDA-graph replay over L2-cold operand copies, BF16 output",
            "cases:"]
    body += [f"  - {_flow(c)}" for c in cases]
    return "\n".join(head + body) + "\n"
