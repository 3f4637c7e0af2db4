"""Smoke tests of ``archsim sweep``: JSON rows, CSV output, bad input as one line with status 2."""
import csv
import json
from pathlib import Path

import pytest

from archsim.cli import main

ROOT = Path(__file__).resolve().parents[2]
KIMI = str(ROOT / "workloads" / "kimi_k2.yaml")
H100 = str(ROOT / "hardware" / "h100.yaml")


def test_sweep_json_and_csv(capsys, tmp_path):
    out = tmp_path / "rows.csv"
    code = main(["sweep", KIMI, "--hw", H100, "--devices", "16", "--set", "memory.hbm.bandwidth=2TB/s..8TB/s:3",
                 "--set", "power.idle=60W,90W", "--out", str(out), "--format", "json"])
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    assert len(data["points"]) == 6
    first = data["points"][0]
    assert first["memory.hbm.bandwidth"] == 2e12 and first["power.idle"] == 60.0
    assert first["decode.tokens_per_s"] > 0 and "energy.joules_per_token" in first
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 6 and "decode.tokens_per_s" in rows[0] and "pareto" in rows[0]
    # more bandwidth never lowers throughput
    tps = [p["decode.tokens_per_s"] for p in data["points"] if p["power.idle"] == 60.0]
    assert tps == sorted(tps)


def test_sweep_lhs_table(capsys):
    assert main(["sweep", KIMI, "--hw", H100, "--devices", "16", "--sample", "lhs", "--points", "5", "--quiet",
                 "--set", "compute.tensor.peak.fp8=1PFLOPS..4PFLOPS"]) == 0
    assert "5 points" in capsys.readouterr().out


@pytest.mark.parametrize("argv, fragment", [
    (["--set", "memory.hbm.bandwidth=fast"], "memory.hbm.bandwidth"),
    (["--set", "node.scale_up.bandwidth=1TB/s"], "sweepable"),
    (["--sample", "lhs", "--set", "power.idle=1W..2W"], "--points"),
])
def test_sweep_bad_input_is_one_line(capsys, argv, fragment):
    assert main(["sweep", KIMI, "--hw", H100, "--devices", "16", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and fragment in err


def test_sweep_layout_that_does_not_fit_gives_null_metrics(capsys):
    # Kimi K2 FP8 (~1 TB of weights) on one 80 GB H100: memory does not fit, phase metrics are null
    assert main(["sweep", KIMI, "--hw", H100, "--devices", "1", "--set", "power.idle=50W", "--format", "json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)["points"]
    assert row["memory.fits"] == 0.0 and row["decode.tokens_per_s"] is None
