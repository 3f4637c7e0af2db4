"""Smoke tests of ``archsim run``."""
from __future__ import annotations

import json

import pytest

from archsim.cli import main


def test_run_json(capsys):
    assert main(["run", "workloads/kimi_k2.yaml", "--hw", "hardware/h100.yaml", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["deployment"]["devices"] >= 2
    assert data["decode"]["tpot_s"] > 0 and data["prefill"]["latency_s"] > 0


def test_run_table_names_sections(capsys):
    assert main(["run", "workloads/deepseek_v3.yaml", "--hw", "hardware/h800.yaml", "--batch", "8"]) == 0
    out = capsys.readouterr().out
    for section in ("Model:", "Memory per device", "Prefill", "Decode", "Energy", "Heaviest decode ops"):
        assert section in out


def test_run_bad_file_is_one_line_exit_2(capsys, tmp_path):
    bad = tmp_path / "hw.yaml"
    bad.write_text("name: x\nmemroy: {}\n")
    assert main(["run", "workloads/kimi_k2.yaml", "--hw", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(bad) in err and "Traceback" not in err


def test_run_bad_flag_exit_2(capsys):
    with pytest.raises(SystemExit) as stop:  # argparse rejects the value before anything runs
        main(["run", "workloads/kimi_k2.yaml", "--hw", "hardware/h100.yaml", "--batch", "zero"])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "--batch" in err
    # a value the model rejects (after parsing) is one error line and exit 2 too
    assert main(["run", "workloads/kimi_k2.yaml", "--hw", "hardware/h100.yaml", "--devices", "16",
                 "--moe-ep", "7"]) == 2
    assert capsys.readouterr().err.count("archsim: error:") == 1


def test_run_deployment_flags_and_pools(capsys):
    assert main(["run", "workloads/deepseek_v3.yaml", "--hw", "hardware/h200.yaml", "--devices", "8", "--tp", "8",
                 "--moe-tp", "8", "--batch", "16", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert (data["deployment"]["layout"]["moe_tp"], data["deployment"]["layout"]["moe_ep"]) == (8, 1)
    assert main(["run", "workloads/deepseek_v3.yaml", "--hw", "hardware/h800.yaml", "--deployment",
                 "deployments/deepseek_v3_h800_1p3d.yaml", "--batch", "64"]) == 0
    text = capsys.readouterr().out
    assert "prefill pool" in text and "decode pool" in text and "System (steady state" in text


def test_run_small_json_and_measured_expert_load(capsys, tmp_path):
    trace = tmp_path / "t.json"
    assert main(["run", "workloads/deepseek_v3.yaml", "--hw", "hardware/h100.yaml", "--expert-load", "measured",
                 "--trace", str(trace), "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    small = data["small"]
    assert small["counts_match"] is True
    assert all(check["passed"] for check in small["checks"].values())
    assert small["expert_load"]["max_over_mean"] >= 1.0
    assert "traceEvents" in json.loads(trace.read_text())
