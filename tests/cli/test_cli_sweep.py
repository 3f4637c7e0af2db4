"""``archsim sweep``: JSON rows, CSV output, bad input as one line with status 2; sweeps over model fields."""
import csv
import io
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
    (["--set", "node.scale_up.bandwith=1TB/s"], "did you mean 'node.scale_up.bandwidth'"),
    (["--set", "node.scale_up.bandwidth=fast,1TB/s"], "node.scale_up.bandwidth: expected a bandwidth"),
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


def test_a_two_point_model_sweep_gives_the_numbers_of_two_run_set_invocations(capsys):
    # the seed example: DeepSeek-V3 with 128 experts, top-2 (and the published 256, top-2)
    base = ["deepseek_v3", "--hw", "h100", "--devices", "16", "--format", "json"]
    assert main(["sweep", *base, "--set", "model.n_routed_experts=128,256", "--set", "model.num_experts_per_tok=2",
                 "--workers", "1"]) == 0
    points = json.loads(capsys.readouterr().out)["points"]
    assert [(p["model.n_routed_experts"], p["model.num_experts_per_tok"]) for p in points] == [(128, 2), (256, 2)]
    for p in points:
        assert main(["run", *base, "--set", f"model.n_routed_experts={p['model.n_routed_experts']}",
                     "--set", "model.num_experts_per_tok=2"]) == 0
        run = json.loads(capsys.readouterr().out)
        # the sweep's array path sums in another order than run's scalar path: equal to the last bits
        assert p["decode.tokens_per_s"] == pytest.approx(run["decode"]["tokens_per_s"], rel=1e-12)
        assert p["decode.tpot_s"] == pytest.approx(run["decode"]["tpot_s"], rel=1e-12)
        assert p["prefill.latency_s"] == pytest.approx(run["prefill"]["latency_s"], rel=1e-12)
        assert p["energy.joules_per_token"] == pytest.approx(run["energy"]["joules_per_token"], rel=1e-12)


def test_a_model_grid_crossed_with_a_hardware_axis_in_csv(capsys):
    assert main(["sweep", "deepseek_v3", "--hw", "h100", "--devices", "16", "--workers", "1", "--format", "csv",
                 "--set", "model.n_routed_experts=64..256:4", "--set", "memory.hbm.bandwidth=2TB/s,4TB/s"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert len(rows) == 4 * 2
    assert [int(r["model.n_routed_experts"]) for r in rows] == [64, 64, 128, 128, 192, 192, 256, 256]
    assert [float(r["memory.hbm.bandwidth"]) for r in rows] == [2e12, 4e12] * 4


@pytest.mark.parametrize("argv, fragment", [
    (["--set", "model.n_routed_expert=64,128"], "did you mean 'model.n_routed_experts'"),
    (["--set", "model.num_experts_per_tok=2,300"], "num_experts_per_tok: expected <= n_routed_experts=256"),
    (["--set", "scenario.bach=8,16"], "did you mean 'scenario.batch'"),
    (["--set", "model.n_routed_experts=64..256"], "a grid a..b:n"),
    (["--sample", "lhs", "--points", "4", "--set", "model.n_routed_experts=64,128"], "--sample"),
])
def test_bad_model_sweeps_are_one_line(capsys, argv, fragment):
    assert main(["sweep", "deepseek_v3", "--hw", "h100", "--devices", "16", "--workers", "1", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and fragment in err, err


def test_a_link_bandwidth_is_swept_by_rebuilding_the_chip(capsys):
    # node.scale_up.bandwidth is not an array field (communication is planned at the base chip): each value rebuilds
    # the chip and re-plans, so a point equals run --set with that value (and the swept HBM bandwidth)
    assert main(["sweep", "deepseek_v3", "--hw", "h100", "--devices", "16", "--workers", "1", "--format", "json",
                 "--set", "node.scale_up.bandwidth=100GB/s..500GB/s:2", "--set", "memory.hbm.bandwidth=2TB/s"]) == 0
    points = json.loads(capsys.readouterr().out)["points"]
    assert [p["node.scale_up.bandwidth"] for p in points] == [100e9, 500e9]  # SI, as the array axes
    for p in points:
        assert main(["run", "deepseek_v3", "--hw", "h100", "--devices", "16", "--format", "json", "--set",
                     f"node.scale_up.bandwidth={p['node.scale_up.bandwidth'] / 1e9:g}GB/s",
                     "--set", "memory.hbm.bandwidth=2TB/s"]) == 0
        run = json.loads(capsys.readouterr().out)
        assert p["prefill.latency_s"] == pytest.approx(run["prefill"]["latency_s"], rel=1e-12)
        assert p["decode.tpot_s"] == pytest.approx(run["decode"]["tpot_s"], rel=1e-12)
    assert points[0]["prefill.latency_s"] > points[1]["prefill.latency_s"]  # a slower link exposes more
