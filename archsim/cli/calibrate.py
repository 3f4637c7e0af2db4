"""``archsim calibrate --backend numpy|torch``: measure microbenchmarks, fit the named efficiency fields,
write a hardware YAML with the raw measurements beside it, and report every calibrated field."""
from __future__ import annotations

import argparse
import json

from archsim.cli._common import add_format_arg, write_csv

# calibrate --format csv: one row per field (value in SI units, named by the unit column); --library: one row
FIELD_COLUMNS = ("role", "path", "value", "unit", "how")
LIBRARY_COLUMNS = ("library", "mma_fraction", "bandwidth_fraction", "mma_samples", "bandwidth_samples")


def add_parser(sub) -> None:  # noqa: ANN001 - argparse subparsers
    p = sub.add_parser("calibrate", help="fit efficiency fields from microbenchmarks on this machine")
    p.add_argument("--backend", choices=("numpy", "torch"), default="numpy")
    p.add_argument("--out", default="calibration", help="output directory (default: calibration/)")
    p.add_argument("--raw", default=None, help="re-fit from a saved raw JSON instead of measuring")
    add_format_arg(p, "field (calibrated, then derived; --library: one row with the fitted fractions)")
    p.add_argument("--library", help="fit this kernel library's kernel.libraries fields on --hw from --measurements "
                                     "instead of measuring (docs/stacks.md)")
    p.add_argument("--hw", help="with --library: the hardware (name or YAML path) whose reference kernel the library is compared to")
    p.add_argument("--measurements", help="with --library: CSV of timed kernels (kind,groups,m,n,k,dtype,time_s)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from archsim.errors import ConfigError

    if args.library or args.measurements:
        return _library(args)

    raw = None
    if args.raw:
        try:
            with open(args.raw, encoding="utf-8") as fh:
                raw = json.load(fh)
        except (OSError, json.JSONDecodeError) as err:
            raise ConfigError(args.raw, None, "a raw measurement JSON written by archsim calibrate", str(err)) from None
    if args.backend == "torch":
        from archsim.fidelity.calibrate_torch import calibrate_torch

        result = calibrate_torch(args.out, raw=raw)
    else:
        from archsim.fidelity.calibrate import calibrate_numpy

        result = calibrate_numpy(args.out, raw=raw)
    if args.format == "json":
        print(json.dumps({"hardware_yaml": result.hardware_yaml,
                          "fields": [vars(f) for f in result.fields],
                          "derived": [vars(f) for f in result.derived],
                          "loop": {k: v for k, v in result.loop.items() if k != "rows"}}))
        return 0
    if args.format == "csv":
        write_csv([{"role": role, **vars(f)} for role, fields in (("calibrated", result.fields),
                                                                   ("derived", result.derived)) for f in fields],
                  FIELD_COLUMNS)
        return 0
    print(f"wrote {result.hardware_yaml} (raw measurements beside it)")
    print("calibrated fields:")
    for f in result.fields:
        print(f"  {f.path} = {f.value:.4g} {f.unit}  ({f.how})")
    if result.derived:
        print("derived from them:")
    for f in result.derived:
        print(f"  {f.path} = {f.value:.4g} {f.unit}  ({f.how})")
    if result.loop:
        print(f"held-out kernels: median |error| {result.loop['median_abs_error']:.1%}, "
              f"max {result.loop['max_abs_error']:.1%} over {len(result.loop['rows'])} kernels")
    return 0


def _library(args: argparse.Namespace) -> int:
    """``--library NAME --hw HW --measurements CSV``: the library's fitted fields and the YAML entry to paste."""
    from archsim.config.hardware import resolve_hardware
    from archsim.errors import ConfigError
    from archsim.fidelity.library_fit import fit_library, read_measurements

    for flag, value in (("--library", args.library), ("--hw", args.hw), ("--measurements", args.measurements)):
        if not value:
            raise ConfigError(None, flag, "--library, --hw and --measurements together", None)
    fit = fit_library(resolve_hardware(args.hw), read_measurements(args.measurements))
    if args.format == "json":
        print(json.dumps({"library": args.library, "mma_fraction": fit.mma_fraction,
                          "bandwidth_fraction": fit.bandwidth_fraction, "mma_samples": list(fit.mma_samples),
                          "bandwidth_samples": list(fit.bandwidth_samples)}))
        return 0
    if args.format == "csv":  # the sample counts behind each fraction
        write_csv([{"library": args.library, "mma_fraction": fit.mma_fraction,
                    "bandwidth_fraction": fit.bandwidth_fraction, "mma_samples": len(fit.mma_samples),
                    "bandwidth_samples": len(fit.bandwidth_samples)}], LIBRARY_COLUMNS)
        return 0
    print(f"kernel.libraries entry for {args.hw} (paste under kernel: libraries:):")
    print("  " + fit.yaml(args.library))
    return 0
