"""Smoke test of ``archsim place``: per-op engines and reasons on a PIM chip."""
import json
from pathlib import Path

from archsim.cli import main

ROOT = Path(__file__).resolve().parents[2]


def test_place_json_on_pim_chip(capsys):
    code = main(["place", str(ROOT / "workloads" / "llama3_405b.yaml"), "--hw", str(ROOT / "hardware" / "h100_hbm_pim.yaml"),
                 "--batch", "1", "--length", "1024", "--format", "json"])
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    assert data["time_s"] < data["default_time_s"]          # BF16 GEMVs run faster in PIM
    q = next(o for o in data["ops"] if o["op"] == "layers.0.self_attn.q_proj")
    assert q["engine"] == "pim" and "faster than" in q["reason"]
    norm = next(o for o in data["ops"] if o["op"] == "layers.0.input_layernorm")
    assert norm["reason"].startswith("default engine")


def test_place_table_and_bad_flag(capsys):
    assert main(["place", str(ROOT / "workloads" / "kimi_k2.yaml"), "--hw", str(ROOT / "hardware" / "h100.yaml"),
                 "--batch", "2", "--length", "256"]) == 0
    assert "0 of" in capsys.readouterr().out                 # a plain H100 moves nothing
    assert main(["place", str(ROOT / "workloads" / "kimi_k2.yaml"), "--hw", str(ROOT / "hardware" / "h100.yaml"),
                 "--batch", "0"]) == 2
