"""Smoke tests of ``archsim graph``: table and JSON output, --small, bad input exits 2 with one line."""
import json
import os

from archsim.cli import main
from archsim.config.workload import load_workload
from archsim.graph import count_params

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DSV3 = os.path.join(ROOT, "workloads", "deepseek_v3.yaml")


def test_graph_json_params_equal_the_model_total(capsys):
    assert main(["graph", DSV3, "--phase", "prefill", "--length", "64", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["params"] == data["model_total_params"] == count_params(load_workload(DSV3).model).total
    assert data["phase"] == "prefill" and data["tokens"] == 64 and data["kv_bytes_per_token"] == 70272
    assert data["flops"] == sum(data["flops_by_kind"].values())


def test_graph_table_small_decode(capsys):
    assert main(["graph", DSV3, "--phase", "decode", "--small", "--batch", "4", "--length", "16", "--mtp"]) == 0
    out = capsys.readouterr().out
    assert "deepseek_v3_small: decode graph, batch 4" in out and "heaviest ops:" in out


def test_graph_bad_shard_is_one_line_exit_2(capsys):
    assert main(["graph", DSV3, "--tp", "3"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "shard.tp" in err
