"""Workload YAML: every shipped file loads; scenario fields are strict."""
import json
import os

import pytest

from archsim.config.workload import DEFAULT_OUTPUT_LEN, DEFAULT_PROMPT_LEN, load_workload
from archsim.errors import ConfigError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHIPPED = sorted(f for f in os.listdir(os.path.join(ROOT, "workloads")) if f.endswith(".yaml"))


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_workload_loads(name):
    w = load_workload(os.path.join(ROOT, "workloads", name))
    assert w.name == name[:-5] and w.scenario.batch >= 1


def test_shipped_models_have_their_families():
    dsv3 = load_workload(os.path.join(ROOT, "workloads", "deepseek_v3.yaml"))
    k2 = load_workload(os.path.join(ROOT, "workloads", "kimi_k2.yaml"))
    llama = load_workload(os.path.join(ROOT, "workloads", "llama3_405b.yaml"))
    assert (dsv3.model.attention_kind, dsv3.model.n_routed_experts, dsv3.scenario.weights) == ("mla", 256, "fp8")
    assert (k2.model.num_attention_heads, k2.model.n_routed_experts, k2.model.n_group) == (64, 384, 1)
    assert (llama.model.attention_kind, llama.model.kv_heads, llama.model.num_hidden_layers) == ("gqa", 8, 126)


def write(tmp_path, text):
    p = tmp_path / "w.yaml"
    p.write_text(text)
    return str(p)


TINY_MODEL = """model:
  hidden_size: 64
  num_hidden_layers: 2
  num_attention_heads: 4
  intermediate_size: 128
  vocab_size: 100
"""


def test_defaults_and_parallelism(tmp_path):
    w = load_workload(write(tmp_path, TINY_MODEL + "scenario:\n  parallelism: {tp: 4, ep: auto}\n"))
    s = w.scenario
    assert (s.prompt_len, s.output_len, s.batch, s.devices) == (DEFAULT_PROMPT_LEN, DEFAULT_OUTPUT_LEN, 1, "auto")
    assert (s.parallelism.tp, s.parallelism.ep, s.parallelism.dp) == (4, "auto", "auto")
    assert s.expert_load.kind == "uniform"


def test_zipf_expert_load(tmp_path):
    w = load_workload(write(tmp_path, TINY_MODEL + "scenario:\n  expert_load: {zipf: 1.1}\n"))
    assert (w.scenario.expert_load.kind, w.scenario.expert_load.zipf_s) == ("zipf", 1.1)


def test_model_config_path_is_relative_to_the_file(tmp_path):
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "config.json").write_text(json.dumps(
        {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 128,
         "vocab_size": 100, "torch_dtype": "bfloat16"}))
    w = load_workload(write(tmp_path, "model_config: cfg/config.json\nscenario: {batch: 4}\n"))
    assert w.model.hidden_size == 64 and w.scenario.batch == 4


@pytest.mark.parametrize("scenario,field", [
    ("{weights: fp7}", "scenario.weights"),
    ("{batch: 0}", "scenario.batch"),
    ("{batch: 2, bach: 3}", "scenario.bach"),
    ("{devices: many}", "scenario.devices"),
    ("{parallelism: {tp: 2, tq: 1}}", "scenario.parallelism.tq"),
    ("{mtp: true}", "scenario.mtp"),                  # tiny model has no MTP layers
    ("{expert_load: {zipf: -1}}", "scenario.expert_load.zipf"),
    ("{prompt_len: 4096, output_len: 1024}", None),   # no max_position_embeddings: fine
])
def test_bad_scenarios_name_the_field(tmp_path, scenario, field):
    path = write(tmp_path, TINY_MODEL + f"scenario: {scenario}\n")
    if field is None:
        load_workload(path)
        return
    with pytest.raises(ConfigError) as err:
        load_workload(path)
    assert field in str(err.value) and path in str(err.value)


def test_model_and_model_config_are_exclusive(tmp_path):
    with pytest.raises(ConfigError, match="exactly one"):
        load_workload(write(tmp_path, "scenario: {batch: 1}\n"))


def test_unknown_model_key_names_file_and_path(tmp_path):
    path = write(tmp_path, TINY_MODEL + "  hiden_size: 3\n")
    with pytest.raises(ConfigError, match=r"model\.hiden_size"):
        load_workload(path)


def test_mtp_acceptance_needs_mtp(tmp_path):
    import yaml

    from archsim.config.yaml_io import load_yaml
    from archsim.paths import data_dir

    data = load_yaml(data_dir("workloads") / "deepseek_v3.yaml")
    data.setdefault("scenario", {})["mtp_acceptance"] = [0.85]
    data["scenario"]["mtp"] = False
    path = tmp_path / "w.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(ConfigError, match="scenario.mtp"):
        load_workload(path)
    data["scenario"]["mtp"] = True
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    assert load_workload(path).scenario.tokens_per_decode_step == pytest.approx(1.85)
