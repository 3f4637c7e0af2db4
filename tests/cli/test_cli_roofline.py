"""Smoke test of ``archsim roofline``: JSON summary and a PNG when matplotlib is installed."""
import json
from pathlib import Path

import pytest

from archsim.cli import main

ROOT = Path(__file__).resolve().parents[2]
KIMI = str(ROOT / "workloads" / "kimi_k2.yaml")
H100 = str(ROOT / "hardware" / "h100.yaml")


def test_roofline_json(capsys):
    assert main(["roofline", KIMI, "--hw", H100, "--batch", "8", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["ridge_point"] == pytest.approx(data["peak_flop_per_s"] / data["bandwidth_bytes_per_s"])
    assert data["arithmetic_intensity"] < data["ridge_point"]  # decode sits left of the ridge
    assert all(p["flop_per_s"] <= data["peak_flop_per_s"] * (1 + 1e-9) for p in data["ops"])


def test_roofline_png(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    out = tmp_path / "roof.png"
    assert main(["roofline", KIMI, "--hw", H100, "--phase", "prefill", "--length", "512", "--out", str(out)]) == 0
    assert out.stat().st_size > 1000
    assert "ridge point" in capsys.readouterr().out


def test_roofline_bad_batch(capsys):
    assert main(["roofline", KIMI, "--hw", H100, "--batch", "0"]) == 2
    assert "--batch" in capsys.readouterr().err
