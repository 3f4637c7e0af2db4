"""archsim calibrate --library: a library's efficiency fields fitted from measured kernel times against the chip's
reference kernel (fidelity/library_fit.py)."""
from __future__ import annotations

import json

import pytest

from archsim.cli import main
from archsim.config.hardware import resolve_hardware
from archsim.cost.kernel_model import grouped_gemm_time
from archsim.errors import ConfigError
from archsim.fidelity.library_fit import COLUMNS, fit_library, read_measurements

# an MMA-bound and a memory-bound shape on the H800 (the test asserts which is which)
SHAPES = [(8, 4096, 4096, 7168), (1, 4096, 7168, 2048), (8, 64, 4096, 7168), (1, 64, 7168, 2048)]


def rows_at(hw, mma: float, bandwidth: float) -> list[dict]:
    """Synthetic measurements: each shape's reference time divided by the fraction of its binding resource."""
    out = []
    for groups, m, n, k in SHAPES:
        ref = grouped_gemm_time(hw, groups=groups, m=m, n=n, k=k, dtype="fp8")
        slow = mma if ref.bound == "compute" else bandwidth
        out.append({"kind": "grouped_gemm" if groups > 1 else "gemm", "groups": groups, "m": m, "n": n, "k": k,
                    "dtype": "fp8", "time_s": ref.time_s / slow})
    return out


def test_the_fit_recovers_the_fractions_that_made_the_times():
    hw = resolve_hardware("hardware/h800.yaml")
    fit = fit_library(hw, rows_at(hw, 0.45, 0.57))
    assert len(fit.mma_samples) == 2 and len(fit.bandwidth_samples) == 2  # two shapes bound by each resource
    assert fit.mma_fraction == pytest.approx(0.45, rel=1e-12)
    assert fit.bandwidth_fraction == pytest.approx(0.57, rel=1e-12)
    assert "mma_fraction: 0.45, bandwidth_fraction: 0.57" in fit.yaml("triton_fused_moe")


def test_a_library_faster_than_the_reference_by_half_again_is_refused():
    hw = resolve_hardware("hardware/h800.yaml")
    with pytest.raises(ConfigError, match="mma_fraction"):
        fit_library(hw, rows_at(hw, 2.0, 1.0))


def test_cli_fits_from_a_csv(tmp_path, capsys):
    hw = resolve_hardware("hardware/h800.yaml")
    path = tmp_path / "m.csv"
    path.write_text(",".join(COLUMNS) + "\n" + "".join(
        ",".join(str(r[c]) for c in COLUMNS) + "\n" for r in rows_at(hw, 0.8, 0.6)))
    assert main(["calibrate", "--library", "cutlass", "--hw", "hardware/h800.yaml", "--measurements", str(path),
                 "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["mma_fraction"] == pytest.approx(0.8) and out["bandwidth_fraction"] == pytest.approx(0.6)


@pytest.mark.parametrize("text, field", [("kind,m\n", "header"),
                                         (",".join(COLUMNS) + "\nconv,1,2,3,4,fp8,1e-3\n", "row 1.kind"),
                                         (",".join(COLUMNS) + "\ngemm,1,0,3,4,fp8,1e-3\n", "row 1.m"),
                                         (",".join(COLUMNS) + "\ngemm,1,2,3,4,fp8,-1\n", "row 1.time_s")])
def test_bad_measurements_name_the_field(tmp_path, text, field):
    path = tmp_path / "m.csv"
    path.write_text(text)
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        read_measurements(str(path))


def test_library_flags_go_together(capsys):
    assert main(["calibrate", "--library", "x"]) == 2
    assert "--hw" in capsys.readouterr().err
