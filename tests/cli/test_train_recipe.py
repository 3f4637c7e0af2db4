"""archsim train: --recipe published reproduces the workload's published run from its training: section, and a
layout that does not fit is replaced by one that does (ZeRO stage, recomputation) with a note, as run picks the
smallest deployment that fits."""
from __future__ import annotations

import json

import pytest

from archsim.cli import main
from archsim.config.hardware import load_hardware
from archsim.config.workload import load_workload
from archsim.fidelity.cases import load_cases
from archsim.fidelity.validate import evaluate


def _json(capsys, argv):
    assert main(argv + ["--format", "json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_the_published_recipe_is_the_validation_case(capsys):
    out = _json(capsys, ["train", "deepseek_v3", "--hw", "h800", "--recipe", "published"])
    assert out["layout"]["label"].startswith("TP1 EP64 PP16 DP128 MB120") and out["fits"]
    # the validation case dsv3_pretrain_h800 states the same recipe field by field: the same tokens/s per GPU
    case = next(c for c in load_cases() if c.kernel == "training_throughput")
    predicted = evaluate(case, load_hardware("h800")).predicted
    recipe = load_workload("deepseek_v3").training.flags
    assert out["tokens_per_s"] / recipe["devices"] == pytest.approx(predicted, rel=1e-12)
    assert out["tokens_per_s"] * out["step_time_s"] == pytest.approx(recipe["global_batch"] * recipe["seq_len"])


def test_flags_replace_the_recipes(capsys):
    out = _json(capsys, ["train", "deepseek_v3", "--hw", "h800", "--recipe", "published", "--schedule", "1f1b"])
    base = _json(capsys, ["train", "deepseek_v3", "--hw", "h800", "--recipe", "published"])
    assert out["step_time_s"] != base["step_time_s"]  # DualPipe replaced by 1F1B


def test_a_layout_that_does_not_fit_is_replaced_with_a_note(capsys):
    out = _json(capsys, ["train", "deepseek_v3", "--hw", "h800", "--devices", "2048", "--pp", "16", "--ep", "64"])
    assert out["fits"] and "ZeRO-" in out["chosen_to_fit"] and "GB per device" in out["chosen_to_fit"]
    fixed = _json(capsys, ["train", "deepseek_v3", "--hw", "h800", "--devices", "2048", "--pp", "16", "--ep", "64",
                           "--zero", "1", "--recompute", "selective"])
    assert not fixed["fits"] and "suggestion" in fixed  # choices given are kept: nothing left to change


def test_recipe_needs_a_training_section(capsys):
    assert main(["train", "kimi_k2", "--hw", "h800", "--recipe", "published"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "training" in err
    assert main(["train", "kimi_k2", "--hw", "h800"]) == 2
    assert "--devices" in capsys.readouterr().err
