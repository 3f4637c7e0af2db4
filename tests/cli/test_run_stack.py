"""``archsim run --stack`` and ``estimate(stack=...)``: the stack reaches the report, and bad stacks are one-line
errors."""
from __future__ import annotations

import json

import pytest
import yaml

from archsim.api import estimate
from archsim.cli import main
from tests.config.test_stack import LIBS, STACK


@pytest.fixture()
def files(tmp_path):
    import copy

    from archsim.config.yaml_io import load_yaml
    from archsim.paths import data_dir

    hw = copy.deepcopy(load_yaml(data_dir("hardware") / "h200.yaml"))
    hw["family"] = "hopper"
    hw["kernel"]["libraries"] = LIBS
    hw_file = tmp_path / "h200.yaml"
    hw_file.write_text(yaml.safe_dump(hw, sort_keys=False))  # memory levels stay innermost first
    stack_file = tmp_path / "stack.yaml"
    stack_file.write_text(yaml.safe_dump(STACK))
    return str(hw_file), str(stack_file)


def test_run_json_names_the_stack_and_its_host_time(files, capsys):
    hw, stack = files
    args = ["run", "workloads/deepseek_v3.yaml", "--hw", hw, "--devices", "8", "--tp", "8", "--batch", "4",
            "--format", "json"]
    assert main(args) == 0
    plain = json.loads(capsys.readouterr().out)
    assert main(args + ["--stack", stack]) == 0
    data = json.loads(capsys.readouterr().out)
    st = data["deployment"]["stack"]
    assert st["name"] == "teststack" and st["libraries"] == {"dense_gemm": "ref", "moe_gemm": "slow"}
    # the test stack: 2 ms of host time per iteration, not overlapped, and a half-rate MoE library
    assert data["decode"]["host_s"] == pytest.approx(2e-3)
    assert data["decode"]["tpot_s"] > plain["decode"]["tpot_s"] + 2e-3
    assert data["deployment"]["prefill_chunk"] == 4096  # the stack's default chunk


def test_estimate_takes_a_stack(files):
    hw, stack = files
    r = estimate("workloads/deepseek_v3.yaml", hw, devices=8, tp=8, batch=4, stack=stack)
    assert r.deployment.stack["name"] == "teststack"


def test_unknown_stack_is_one_line(capsys):
    assert main(["run", "workloads/deepseek_v3.yaml", "--hw", "hardware/h200.yaml", "--stack", "nosuch"]) == 2
    err = capsys.readouterr().err
    assert "stack" in err and "Traceback" not in err and err.count("\n") == 1


def test_a_stack_on_a_chip_it_does_not_run_on_is_one_line(files, capsys):
    _, stack = files
    assert main(["run", "workloads/deepseek_v3.yaml", "--hw", "hardware/mi300x.yaml", "--stack", stack]) == 2
    err = capsys.readouterr().err
    assert "family" in err and "mi300x" in err and "Traceback" not in err


def test_the_stacks_capture_limit_applies_unless_the_deployment_sets_graphs(files):
    hw, stack = files
    kw = dict(devices=8, tp=8, batch=128, stack=stack)  # the test stack captures decode batches up to 64
    default = estimate("workloads/deepseek_v3.yaml", hw, **kw)
    eager = estimate("workloads/deepseek_v3.yaml", hw, cuda_graphs=False, **kw)
    captured = estimate("workloads/deepseek_v3.yaml", hw, cuda_graphs=True, **kw)
    # batch 128 > 64: the stack's default launches kernel by kernel, as with graphs off; a deployment that turns
    # graphs on captures its own batch
    assert default.decode.tpot_s == eager.decode.tpot_s
    assert captured.decode.tpot_s < default.decode.tpot_s


def test_plan_prices_candidates_with_the_stack(files, capsys):
    hw, stack = files
    args = ["plan", "workloads/deepseek_v3.yaml", "--hw", hw, "--devices", "8", "--batch", "8", "--top", "1",
            "--no-progress", "--format", "json"]
    assert main(args) == 0
    plain = json.loads(capsys.readouterr().out)["best"]
    assert main(args + ["--stack", stack]) == 0
    with_stack = json.loads(capsys.readouterr().out)["best"]
    # the test stack: 10 ms per request before scheduling, 2 ms of host time per decode step (not overlapped)
    assert with_stack["tpot_s"] > plain["tpot_s"] + 2e-3
    assert with_stack["ttft_s"] > plain["ttft_s"] + 10e-3
