"""--set FIELD=VALUE on run, report, plan, serve, compare and train: the setting reaches the projection."""
from __future__ import annotations

import json

import pytest

from archsim.cli import main

TOP2 = ["--set", "model.n_routed_experts=128", "--set", "model.num_experts_per_tok=2"]


def _json(capsys, argv):
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_run_with_a_model_change(capsys):
    base = ["run", "deepseek_v3", "--hw", "h100", "--devices", "16", "--format", "json"]
    plain, top2 = _json(capsys, base), _json(capsys, base + TOP2)
    assert top2["model"]["architecture"].startswith("MLA + MoE (128 routed")
    assert top2["model"]["total_params"] < plain["model"]["total_params"]
    assert top2["decode"]["tpot_s"] < plain["decode"]["tpot_s"]  # fewer experts read per step


def test_hardware_and_scenario_fields(capsys):
    base = ["run", "deepseek_v3", "--hw", "h100", "--devices", "16", "--format", "json"]
    slow = _json(capsys, base + ["--set", "memory.hbm.bandwidth=1.675TB/s", "--set", "scenario.batch=32"])
    plain = _json(capsys, base + ["--set", "scenario.batch=32"])
    assert slow["scenario"]["batch"] == plain["scenario"]["batch"] == 32
    assert slow["decode"]["tpot_s"] > plain["decode"]["tpot_s"]  # half the HBM bandwidth


def test_plan_serve_and_compare_take_it(capsys):
    plan = ["plan", "deepseek_v3", "--hw", "h100", "--devices", "16", "--batch", "8", "--top", "1", "--format", "json",
            "--no-progress"]
    assert _json(capsys, plan + TOP2)["best"]["tpot_s"] < _json(capsys, plan)["best"]["tpot_s"]
    serve = ["serve", "deepseek_v3", "--hw", "h200", "--devices", "8", "--tp", "8", "--num-prompts", "8",
             "--prompt-len", "500", "--output-len", "10", "--format", "json"]
    assert (_json(capsys, serve + TOP2)["benchmark"]["mean_tpot_ms"]
            < _json(capsys, serve)["benchmark"]["mean_tpot_ms"])
    compare = ["compare", "deepseek_v3", "kimi_k2", "--hw", "h100", "--format", "json"]
    params = [m["total_params"] for m in _json(capsys, compare + TOP2)["models"]]
    plain = [m["total_params"] for m in _json(capsys, compare)["models"]]
    assert all(a < b for a, b in zip(params, plain))  # every model compared gets the setting


def test_a_bad_setting_is_one_line(capsys):
    assert main(["run", "deepseek_v3", "--hw", "h100", "--set", "model.n_routed_expert=128"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "did you mean 'model.n_routed_experts'" in err
