"""Smoke tests of archsim kernel | validate | calibrate through archsim.cli.main."""
from __future__ import annotations

import json

import pytest

from archsim.cli import main


def _json(capsys, argv: list[str]) -> dict:
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("argv", [
    ["kernel", "gemm", "--m", "4096", "--n", "7168", "--k", "2048", "--dtype", "fp8"],
    ["kernel", "grouped-gemm", "--groups", "4", "--m", "256", "--n", "4096", "--k", "7168"],
    ["kernel", "moe", "--tokens", "128", "--hidden", "7168", "--inter", "2048", "--topk", "8", "--experts", "256",
     "--ep", "64", "--mode", "low_latency"],
    ["kernel", "attention", "--kind", "mla", "--phase", "decode", "--heads", "128", "--batch", "64",
     "--context", "4096"],
    ["kernel", "attention", "--kind", "gqa", "--phase", "prefill", "--heads", "64", "--heads-kv", "8",
     "--head-dim", "128", "--batch", "1", "--context", "2048"],
    ["kernel", "collective", "--op", "all-reduce", "--bytes", "64 MiB", "--devices", "16"],
])
def test_kernel_json_has_time(capsys, argv: list[str]) -> None:
    out = _json(capsys, argv + ["--hw", "h800", "--format", "json"])
    assert out["time_s"] > 0 and out["bound"]
    assert out["achieved_bytes_per_s"] == pytest.approx(out["bytes"] / out["time_s"])


def test_kernel_text_names_bound_and_rates(capsys) -> None:
    assert main(["kernel", "gemm", "--m", "64", "--n", "7168", "--k", "16384"]) == 0
    text = capsys.readouterr().out
    assert "memory:hbm-bound" in text and "FLOP/s" in text and "B/s" in text


@pytest.mark.parametrize("argv, field", [
    (["kernel", "gemm", "--m", "0", "--n", "1", "--k", "1"], "m"),
    (["kernel", "gemm", "--m", "1", "--n", "1", "--k", "1", "--dtype", "fp7"], "dtype"),
    (["kernel", "gemm", "--m", "1", "--n", "1", "--k", "1", "--hw", "nochip"], "hw"),
    (["kernel", "attention", "--kind", "gqa", "--phase", "decode", "--heads", "8", "--batch", "1",
      "--context", "16"], "head_dim"),
])
def test_kernel_bad_input_is_one_line_exit_2(capsys, argv: list[str], field: str) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and field in err


def test_validate_json(capsys) -> None:
    out = _json(capsys, ["validate", "--format", "json"])
    assert {"categories", "cases"} <= set(out)
    gemm = out["categories"]["gemm_dense"]
    assert gemm["n"] == 18 and 0 <= gemm["median_abs_error"] <= gemm["max_abs_error"]
    assert all({"predicted", "measured", "error"} <= set(c) for c in out["cases"])


def test_validate_text_and_markdown(capsys) -> None:
    assert main(["validate"]) == 0
    assert "median abs error" in capsys.readouterr().out
    assert main(["validate", "--format", "markdown"]) == 0
    assert capsys.readouterr().out.startswith("| category |")


def test_calibrate_refits_saved_raw(capsys, tmp_path) -> None:
    from fidelity_synthetic_raw import synthetic_numpy_raw

    raw = tmp_path / "raw.json"
    raw.write_text(json.dumps(synthetic_numpy_raw()))
    out = _json(capsys, ["calibrate", "--backend", "numpy", "--raw", str(raw), "--out", str(tmp_path / "cal"),
                         "--format", "json"])
    paths = {f["path"] for f in out["fields"]}
    assert paths == {"kernel.ramp", "memory.cache.bandwidth", "compute.blas.achievable_fraction"}
    assert (tmp_path / "cal" / "host_cpu.calibrated.yaml").exists()


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_calibrate_unwritable_out_is_one_line(capsys, tmp_path, backend: str) -> None:
    from fidelity_synthetic_raw import synthetic_numpy_raw, synthetic_torch_raw

    raw = tmp_path / "raw.json"
    raw.write_text(json.dumps(synthetic_numpy_raw() if backend == "numpy" else synthetic_torch_raw()))
    blocker = tmp_path / "a_file"
    blocker.write_text("")  # --out below a regular file cannot be created
    assert main(["calibrate", "--backend", backend, "--raw", str(raw), "--out", str(blocker / "cal")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "writable output directory" in err


def test_calibrate_torch_without_gpu_or_raw_is_a_config_error(capsys, tmp_path) -> None:
    try:
        import torch
        if torch.cuda.is_available():
            pytest.skip("a GPU is present: this checks the no-GPU message")
    except ImportError:
        pass
    assert main(["calibrate", "--backend", "torch", "--out", str(tmp_path)]) == 2
    assert "calibrate.backend" in capsys.readouterr().err


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_calibrate_rejects_incomplete_raw(capsys, tmp_path, backend: str) -> None:
    raw = tmp_path / "raw.json"
    raw.write_text('{"copy": []}')
    assert main(["calibrate", "--backend", backend, "--raw", str(raw), "--out", str(tmp_path)]) == 2
    assert "raw measurements" in capsys.readouterr().err


@pytest.mark.parametrize("argv, field", [
    (["kernel", "collective", "--op", "all-reduce", "--devices", "8", "--bytes", "nan"], "--bytes"),
    (["kernel", "collective", "--op", "all-reduce", "--devices", "8", "--bytes", "-0.5"], "--bytes"),
    (["kernel", "moe", "--tokens", "8", "--hidden", "64", "--inter", "32", "--topk", "2", "--experts", "8",
      "--ep", "2", "--n-group", "0"], "--n-group"),
    (["kernel", "attention", "--kind", "mla", "--phase", "decode", "--heads", "8", "--batch", "1",
      "--context", "16", "--head-dim", "-1"], "--head-dim"),
])
def test_kernel_rejects_nonsense_flags_in_one_line(capsys, argv: list[str], field: str) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and field in err
