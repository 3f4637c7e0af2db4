"""``archsim list hardware|workloads|stacks``: one line per shipped name, the name first; JSON lists the same names;
a file that does not load is listed as such and the command exits 2."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from archsim.cli import main
from archsim.config.shipped import shipped_names
from archsim.paths import data_dir


@pytest.mark.parametrize(("kind", "figure"), [("hardware", "TFLOPS"), ("workloads", "params"),
                                              ("stacks", "chunked prefill")])
def test_list_prints_one_line_per_shipped_name(kind: str, figure: str, capsys) -> None:
    assert main(["list", kind]) == 0
    lines = capsys.readouterr().out.splitlines()
    names = shipped_names(kind)
    assert [line.split()[0] for line in lines] == names
    assert all(figure in line for line in lines if "PFLOPS" not in line)


def test_list_lines_carry_the_yaml_names_and_key_figures(capsys) -> None:
    assert main(["list", "hardware"]) == 0
    h100 = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("h100 "))
    # hardware/h100.yaml: name, year, dense BF16 peak 989.4 TFLOPS, 80 GB HBM3 at 3.35 TB/s
    assert "NVIDIA H100 SXM5 80GB (2022)" in h100 and "989.4 TFLOPS bf16" in h100 and "80 GB hbm at 3.35 TB/s" in h100
    assert main(["list", "workloads"]) == 0
    kimi = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("kimi_k2 "))
    assert "Kimi K2-Instruct" in kimi and "1.03T params" in kimi and "384 routed" in kimi


def test_list_json_holds_the_same_names(capsys) -> None:
    assert main(["list", "stacks", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == shipped_names("stacks")
    assert next(r for r in rows if r["name"] == "sglang")["chunked_prefill"] == 8192


def test_list_reads_archsim_home_and_reports_a_broken_file(tmp_path: Path, monkeypatch, capsys) -> None:
    (tmp_path / "hardware").mkdir()
    shutil.copy(data_dir("hardware") / "h800.yaml", tmp_path / "hardware" / "my_chip.yaml")
    (tmp_path / "hardware" / "broken.yaml").write_text("name: [\n")
    monkeypatch.setenv("ARCHSIM_HOME", str(tmp_path))
    assert main(["list", "hardware"]) == 2
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == ["broken", "my_chip"]
    assert "does not load" in lines[0] and "broken.yaml" in lines[0] and "H800" in lines[1]


def test_list_of_an_empty_folder_says_so(tmp_path: Path, monkeypatch, capsys) -> None:
    (tmp_path / "stacks").mkdir()
    monkeypatch.setenv("ARCHSIM_HOME", str(tmp_path))
    assert main(["list", "stacks"]) == 0
    assert capsys.readouterr().out.strip() == f"no stacks files in {tmp_path / 'stacks'}"


def test_list_rejects_an_unknown_kind(capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main(["list", "chips"])
    assert info.value.code == 2 and "invalid choice: 'chips'" in capsys.readouterr().err
