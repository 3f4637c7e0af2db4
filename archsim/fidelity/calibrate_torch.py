"""Fit a GPU's named fields from the JSON that ``microbench_torch`` writes, and write
``<base>.calibrated.yaml`` (the base hardware file with those fields replaced) beside the raw JSON."""
from __future__ import annotations

import json
from pathlib import Path

from archsim.cost.efficiency import fit_ramp_and_bandwidth
from archsim.errors import ConfigError
from archsim.fidelity.calibrate import CalibratedField, Calibration, write_outputs

LARGE_COPY_BYTES = 64 * 2 ** 20  # copies from 64 MiB up exceed the L2 (50 MB on H100/H200): HBM-bound


def _fit(raw: dict, base: dict, base_file: str) -> list[CalibratedField]:
    from archsim.units import parse_quantity

    fields: list[CalibratedField] = []
    copies = [r for r in raw.get("copy", []) if r["size_bytes"] >= LARGE_COPY_BYTES]
    if len(copies) >= 2:
        bw, ramp = fit_ramp_and_bandwidth([r["bytes"] for r in copies], [r["time_s"] for r in copies])
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
    best: tuple[float, str] | None = None
    for row in raw.get("gemm", []):
        if "time_s" not in row or row["dtype"] not in base["compute"][engine]["peak"]:
            continue
        peak = parse_quantity(base["compute"][engine]["peak"][row["dtype"]], "flop_per_s", file=base_file,
                              path=f"compute.{engine}.peak.{row['dtype']}")
        fraction = row["flops"] / row["time_s"] / peak
        if best is None or fraction > best[0]:
            best = (fraction, f"{row['dtype']} {row['m']}x{row['n']}x{row['k']}")
    if best is not None:
        fields.append(CalibratedField(path=f"compute.{engine}.achievable_fraction", value=best[0], unit="fraction",
                                      how=f"best GEMM ({best[1]}) / nominal peak"))
    clock = raw.get("sm_clock_mhz_after_gemm")
    if clock:
        fields.append(CalibratedField(path="kernel.clock_under_load", value=clock * 1e6, unit="Hz",
                                      how="nvidia-smi SM clock while large BF16 GEMMs run"))
    return fields


def _quantity(path: str, value: float) -> object:
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
    from archsim.config.hardware import load_hardware
    from archsim.config.yaml_io import load_yaml
    from archsim.cost.kernel_model import HARDWARE_DIR

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
    text = _replace_value(text, "name", f"{data['name']} (calibrated)", "", str(base_file))
    header = [f"# {base}.yaml with fields fitted by `archsim calibrate --backend torch` from {raw_name}",
              f"# ({device}). Calibrated fields (each line carries its measurement); every other field and",
              "# its source is the base file's, kept verbatim below."]
    text = "\n".join(header) + "\n" + text
    yaml_path = write_outputs(out_dir, {yaml_name: text, raw_name: json.dumps(raw, indent=1)}) / yaml_name
    load_hardware(yaml_path)  # the written file must load strictly
    return Calibration(fields=tuple(fields), raw=raw, hardware_yaml=str(yaml_path), loop={})
