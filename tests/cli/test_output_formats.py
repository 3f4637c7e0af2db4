"""One --format grammar: every command that prints results takes table|json|csv. The CSV parses with csv.DictReader,
has the command's columns and one row per record (phase, case, point, layout, op, ...), and its numbers are the
JSON output's numbers (the same run, another rendering)."""
from __future__ import annotations

import csv
import importlib.util
import io
import json
import shutil
from pathlib import Path

import pytest
import yaml

from archsim.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[2]
FIDELITY = ROOT / "tests" / "fidelity"


def _out(capsys, argv: list[str]) -> str:
    assert main(argv) == 0, capsys.readouterr().err
    return capsys.readouterr().out


def _csv(capsys, argv: list[str]) -> tuple[list[str], list[dict]]:
    """(header, rows) of a command's --format csv output."""
    reader = csv.DictReader(io.StringIO(_out(capsys, argv + ["--format", "csv"])))
    rows = list(reader)
    return list(reader.fieldnames or []), rows


def _json(capsys, argv: list[str]):
    return json.loads(_out(capsys, argv + ["--format", "json"]))


def _format_choices(parser) -> dict[str, tuple]:
    """Every (sub)command's --format choices, by command path ("kernel gemm")."""
    out = {}

    def walk(p, name):
        for action in p._actions:
            if action.option_strings == ["--format"]:
                out[name] = tuple(action.choices)
            if hasattr(action, "choices") and isinstance(action.choices, dict):
                for sub_name, sub in action.choices.items():
                    walk(sub, f"{name} {sub_name}".strip())
    walk(parser, "")
    return out


def test_every_command_that_prints_results_offers_table_json_csv():
    choices = _format_choices(build_parser())
    expected = {"run", "serve", "plan", "sweep", "compare", "train", "validate", "list", "place", "graph",
                "roofline", "calibrate", "kernel gemm", "kernel grouped-gemm", "kernel moe", "kernel attention",
                "kernel collective"}
    assert expected <= set(choices)
    for name in expected:
        assert choices[name][:3] == ("table", "json", "csv"), name
    assert choices["validate"] == ("table", "json", "csv", "markdown")  # plus the README table
    assert "report" not in choices  # it writes an HTML page, not a table


def test_text_is_still_accepted_as_the_table(capsys):
    table = _out(capsys, ["kernel", "gemm", "--m", "64", "--n", "7168", "--k", "2048"])
    assert _out(capsys, ["kernel", "gemm", "--m", "64", "--n", "7168", "--k", "2048", "--format", "text"]) == table


def test_an_unknown_format_is_one_line(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["list", "hardware", "--format", "xml"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "table" in err and "csv" in err


RUN = ["run", "deepseek_v3", "--hw", "h100", "--devices", "16"]


def test_run_csv_one_row_per_phase_with_the_json_numbers(capsys):
    header, rows = _csv(capsys, RUN)
    data = _json(capsys, RUN)
    assert header[:8] == ["workload", "hardware", "devices", "layout", "batch", "prompt_len", "output_len", "phase"]
    assert {"time_s", "tokens_per_s", "energy_j_per_token", "bound", "mfu"} <= set(header)
    assert [r["phase"] for r in rows] == ["prefill", "decode"]
    prefill, decode = rows
    assert float(prefill["time_s"]) == data["prefill"]["latency_s"]
    assert float(decode["time_s"]) == data["decode"]["tpot_s"]
    assert float(decode["energy_j_per_token"]) == data["energy"]["joules_per_token"]
    assert decode["bound"] == data["decode"]["bound"] and decode["devices"] == "16"


def test_run_csv_of_one_phase_and_of_a_deployment_that_does_not_fit(capsys):
    _, rows = _csv(capsys, RUN + ["--phase", "decode"])
    assert [r["phase"] for r in rows] == ["decode"]
    # DeepSeek-V3 FP8 (~671 GB of weights) on one 80 GB H100: not priced, the metric cells are empty
    _, rows = _csv(capsys, ["run", "deepseek_v3", "--hw", "h100", "--devices", "1"])
    assert [r["phase"] for r in rows] == ["prefill", "decode"]
    assert all(r["fits"] == "False" and r["time_s"] == "" and float(r["per_device_bytes"]) > 80e9 for r in rows)


def test_run_csv_of_a_disaggregated_deployment_names_each_phases_pool(capsys):
    argv = ["run", "deepseek_v3", "--hw", "h800", "--deployment",
            str(ROOT / "deployments" / "deepseek_v3_h800_1p3d.yaml")]
    _, rows = _csv(capsys, argv)
    pools = {p["role"]: p for p in _json(capsys, argv)["deployment"]["pools"]}
    assert [r["phase"] for r in rows] == ["prefill", "decode"]
    for row in rows:
        pool = pools[row["phase"]]
        assert row["layout"] == pool["layout"]["label"] and int(row["batch"]) == pool["batch"]
        assert int(row["instance_devices"]) == pool["devices_per_instance"]


def test_serve_csv_one_row_with_unit_suffixed_statistics(capsys):
    argv = ["serve", "llama3_405b", "--hw", "h100", "--rate", "2", "--duration", "5"]
    header, rows = _csv(capsys, argv)
    data = _json(capsys, argv)
    assert len(rows) == 1
    assert {"ttft_p50_s", "tpot_p99_s", "e2e_mean_s", "itl_p90_s", "output_tokens_per_s"} <= set(header)
    assert all(c.endswith(("_s", "_per_s", "_per_device", "_token", "_tokens", "_per_request")) or c in (
        "workload", "hardware", "scheduler", "devices", "replicas", "requests_completed", "requests_rejected",
        "preemptions", "mfu", "kv_occupancy_peak", "iterations") for c in header), header
    row = rows[0]
    assert int(row["requests_completed"]) == data["requests"]["completed"]
    assert float(row["ttft_p50_s"]) == data["ttft_s"]["p50"]
    assert row["ttft_slo_s"] == ""  # no SLO given: empty, not inf


def test_plan_csv_one_row_per_listed_layout(capsys):
    argv = ["plan", "deepseek_v3", "--hw", "h800", "--devices", "16", "--top", "3", "--no-progress", "--batch", "256"]
    header, rows = _csv(capsys, argv)
    data = _json(capsys, argv)
    assert len(rows) == len(data["plans"]) == 3
    assert [int(r["rank"]) for r in rows] == [1, 2, 3]
    assert {"layout", "tp", "moe_ep", "batch", "tpot_s", "ttft_s", "pareto"} <= set(header)
    for row, plan in zip(rows, data["plans"]):
        assert row["layout"] == plan["layout"]["label"] and float(row["tpot_s"]) == plan["tpot_s"]
        assert (row["pareto"] == "True") == (plan in data["pareto"])


def test_sweep_csv_one_row_per_point(capsys):
    argv = ["sweep", "kimi_k2", "--hw", "h100", "--devices", "16", "--set", "memory.hbm.bandwidth=2TB/s..8TB/s:3",
            "--set", "power.idle=60W,90W", "--workers", "1"]
    header, rows = _csv(capsys, argv)
    assert len(rows) == 3 * 2
    assert header[:2] == ["memory.hbm.bandwidth", "power.idle"] and header[-1] == "pareto"
    assert {"decode.tokens_per_s", "decode.tpot_s", "prefill.latency_s"} <= set(header)
    assert [float(r["memory.hbm.bandwidth"]) for r in rows] == [2e12, 2e12, 5e12, 5e12, 8e12, 8e12]


def test_compare_csv_one_row_per_model(capsys):
    argv = ["compare", "deepseek_v3", "kimi_k2", "--hw", "h100", "--max-seqs", "16"]
    header, rows = _csv(capsys, argv)
    data = _json(capsys, argv)
    assert [r["name"] for r in rows] == ["deepseek_v3", "kimi_k2"]
    assert {"total_params", "kv_bytes_per_token", "tpot_s", "output_tokens_per_s",
            "usd_per_million_output_tokens", "lora_per_device_bytes"} <= set(header)
    for row, model in zip(rows, data["models"]):
        assert int(row["total_params"]) == model["total_params"]
        assert float(row["tpot_s"]) == model["serving"]["tpot_s"]


def test_train_csv_one_row(capsys):
    argv = ["train", "deepseek_v3", "--hw", "h800", "--recipe", "published"]
    header, rows = _csv(capsys, argv)
    data = _json(capsys, argv)
    assert len(rows) == 1
    (row,) = rows
    assert row["layout"] == data["layout"]["label"] and int(row["devices"]) == 2048
    assert float(row["step_time_s"]) == data["step_time_s"] and float(row["mfu"]) == data["mfu"]
    assert {"per_device_bytes", "gpu_hours", "cost_usd", "bubble_s"} <= set(header)


@pytest.mark.parametrize("argv", [
    ["kernel", "gemm", "--m", "4096", "--n", "4096", "--k", "4096"],
    ["kernel", "collective", "--op", "all-reduce", "--bytes", "64 MiB", "--devices", "8"],
])
def test_kernel_csv_one_row(capsys, argv):
    header, rows = _csv(capsys, argv)
    data = _json(capsys, argv)
    assert len(rows) == 1
    assert header[:4] == ["kind", "hardware", "time_s", "bound"]
    assert set(data["parts"]) <= set(header)  # the time parts, already named *_s
    assert float(rows[0]["time_s"]) == data["time_s"]


def test_validate_csv_one_row_per_case(capsys, tmp_path):
    shutil.copy(ROOT / "validation" / "flashmla_h800.yaml", tmp_path)
    cases = yaml.safe_load((ROOT / "validation" / "flashmla_h800.yaml").read_text())["cases"]
    header, rows = _csv(capsys, ["validate", "--dir", str(tmp_path)])
    assert len(rows) == len(cases)
    assert {"id", "metric", "unit", "measured", "predicted", "error"} <= set(header)
    for r in rows:  # SI values: the error is predicted / measured - 1
        assert float(r["error"]) == pytest.approx(float(r["predicted"]) / float(r["measured"]) - 1, rel=1e-9)


@pytest.mark.parametrize("kind, figures", [("hardware", {"peak_flop_per_s", "memory_bytes", "memory_bytes_per_s"}),
                                           ("workloads", {"total_params", "active_params", "layers"}),
                                           ("stacks", {"chunked_prefill", "kv_memory_fraction"})])
def test_list_csv_one_row_per_name(capsys, kind, figures):
    from archsim.config.shipped import shipped_names

    header, rows = _csv(capsys, ["list", kind])
    assert header[:3] == ["name", "title", "summary"] and figures <= set(header)
    assert [r["name"] for r in rows] == list(shipped_names(kind))


def test_graph_csv_one_row_per_op(capsys):
    argv = ["graph", "deepseek_v3", "--phase", "decode", "--batch", "4"]
    header, rows = _csv(capsys, argv)
    data = _json(capsys, argv)
    assert header == ["name", "kind", "flops", "params", "read_bytes", "write_bytes"]
    assert len(rows) == data["ops"]
    assert sum(float(r["flops"]) for r in rows) == pytest.approx(data["flops"], rel=1e-12)


def test_roofline_csv_one_row_per_op(capsys):
    argv = ["roofline", "deepseek_v3", "--hw", "h100"]
    header, rows = _csv(capsys, argv)
    data = _json(capsys, argv)
    assert header == ["label", "kind", "intensity_flop_per_byte", "flop_per_s", "time_s", "bound"]
    assert len(rows) == len(data["ops"])
    assert [r["label"] for r in rows] == [p["label"] for p in data["ops"]]


def test_place_csv_one_row_per_op(capsys):
    argv = ["place", "deepseek_v3", "--hw", "h100_hbm_pim", "--batch", "4"]
    header, rows = _csv(capsys, argv)
    data = _json(capsys, argv)
    assert header == ["op", "engine", "time_s", "energy_j", "bound", "reason"]
    assert len(rows) == len(data["ops"])
    assert sum(float(r["time_s"]) for r in rows) > 0


def _synthetic_raw() -> dict:
    spec = importlib.util.spec_from_file_location("fidelity_synthetic_raw", FIDELITY / "fidelity_synthetic_raw.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.synthetic_numpy_raw()


def test_calibrate_csv_one_row_per_field(capsys, tmp_path):
    raw = tmp_path / "raw.json"
    raw.write_text(json.dumps(_synthetic_raw()))
    argv = ["calibrate", "--backend", "numpy", "--raw", str(raw), "--out", str(tmp_path / "cal")]
    header, rows = _csv(capsys, argv)
    data = _json(capsys, argv)
    assert header == ["role", "path", "value", "unit", "how"]
    assert len(rows) == len(data["fields"]) + len(data["derived"])
    assert [r["path"] for r in rows if r["role"] == "calibrated"] == [f["path"] for f in data["fields"]]
