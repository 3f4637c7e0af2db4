"""The whatif validation category's system cases (fidelity/whatif_eval.py, validation/whatif_public.yaml)."""
import dataclasses
from pathlib import Path

import pytest

from archsim.api import estimate
from archsim.config.hardware import load_hardware
from archsim.config.hf import workload_from_hf_config
from archsim.errors import ConfigError
from archsim.fidelity import whatif_eval
from archsim.fidelity.cases import load_case_file
from archsim.fidelity.validate import evaluate, summarise
from archsim.graph.params import count_params

ROOT = Path(__file__).resolve().parents[2]
CASES = ROOT / "validation" / "whatif_public.yaml"
MODELS = ROOT / "validation" / "whatif_models"


@pytest.fixture(scope="module")
def cases():
    return {c.id: c for c in load_case_file(CASES).cases}


@pytest.fixture(scope="module")
def wse():
    return load_hardware("cerebras_wse3")


def test_case_file(cases):
    assert len(cases) == 7
    assert {c.category for c in cases.values()} == {"whatif"}
    assert {c.kernel for c in cases.values()} == {"whatif_decode"}
    assert {c.hardware for c in cases.values()} == {"cerebras_wse3"}
    assert all(c.metric == "tokens_per_s_per_user" for c in cases.values())


def test_speculative_cases_are_skipped_with_the_reason(cases, wse):
    results = [evaluate(c, wse) for c in cases.values()]
    skipped = {r.case.id for r in results if r.skipped}
    assert skipped == {"cs3_llama31_70b_spec", "cs3_llama33_70b", "cs3_llama31_405b", "cs3_qwen3_32b",
                       "cs3_gpt_oss_120b"}
    assert all("speculative decoding" in r.skipped for r in results if r.skipped)
    summary = summarise(results)["whatif"]
    assert summary["n"] == 2 and summary["skipped"] == 5


def test_prediction_is_estimates_decode(cases, wse):
    """The 8B launch case is 1 / TPOT of estimate() at the mean context of 1,000 + 1,000 / 2 tokens."""
    case = cases["cs3_llama31_8b_launch"]
    values, detail = whatif_eval.predict(case)
    with pytest.warns(Warning):
        r = estimate(str(MODELS / "Llama-3.1-8B"), wse, batch=1, prompt_len=1499, output_len=1, phase="decode",
                     devices=1, pp=1)
    assert values["tokens_per_s_per_user"] == pytest.approx(1.0 / r.decode.tpot_s)
    assert detail["context"] == 1500 and detail["weight_stream_s"] == 0.0 and detail["bound"] == "network"


def test_multi_system_pipeline_pays_its_links(cases, wse):
    """70B on 4 CS-3: a 4-stage pipeline; a slower scale-out link makes it slower, a faster one faster."""
    case = cases["cs3_llama31_70b_launch"]
    base = evaluate(case, wse)
    assert base.detail["layout"].startswith("TP1 EP1 PP4")
    slow = dataclasses.replace(wse, node=dataclasses.replace(
        wse.node, scale_out=dataclasses.replace(wse.node.scale_out, latency_s=wse.node.scale_out.latency_s * 10)))
    assert evaluate(case, slow).predicted < base.predicted


def test_weight_streaming_when_weights_exceed_the_wafers(cases, wse):
    """Llama-3.1-405B on 16 CS-3 (not 21) does not fit 16 x 44 GB: the step is priced as if it did, plus the
    excess weights of the busiest system streamed at 150 GB/s."""
    case = dataclasses.replace(cases["cs3_llama31_405b"],
                               shape={**cases["cs3_llama31_405b"].shape, "systems": 16, "pp": 16, "speculative": False})
    values, detail = whatif_eval.predict(case)
    r = estimate("llama3_405b", wse, batch=1, prompt_len=1499, output_len=1, phase="decode", devices=16, pp=16)
    m = r.memory
    assert not m.fits
    resident = m.capacity_bytes - (m.per_device_bytes - m.weights_bytes)
    assert detail["weight_stream_s"] == pytest.approx((m.weights_bytes - resident) / 150e9)
    assert detail["weight_stream_s"] > 0.01  # GBs at 150 GB/s: tens of ms, far above the 2 ms step
    assert values["tokens_per_s_per_user"] < 1.0 / detail["weight_stream_s"]


def test_waferllm_case_runs_on_the_wse2():
    """WaferLLM's WSE-2 measurement is compared (no speculative decoding), on hardware/cerebras_wse2.yaml, and the
    step is the mesh's: the same all-reduce count as on the WSE-3, whose mesh has the same op side, hop and clock."""
    case, _ = load_case_file(ROOT / "validation" / "whatif_waferllm.yaml").cases
    assert case.hardware == "cerebras_wse2" and case.category == "whatif"
    result = evaluate(case, load_hardware("cerebras_wse2"))
    assert result.skipped is None and result.detail["bound"] == "network"
    values, _ = whatif_eval.predict(case, load_hardware("cerebras_wse3"))
    assert result.predicted == pytest.approx(values["tokens_per_s_per_user"], rel=0.01)


def test_weights_resident_prices_a_run_that_held_one_layer():
    """WaferLLM's Qwen2-72B run held one layer's weights: 145 GB do not fit a 40 GB WSE-2, so the case is priced as if
    they did with nothing streamed; the same case without ``weights_resident`` streams the excess at 150 GB/s."""
    _, case = load_case_file(ROOT / "validation" / "whatif_waferllm.yaml").cases
    wse2 = load_hardware("cerebras_wse2")
    values, detail = whatif_eval.predict(case, wse2)
    assert detail["weights_resident"] and detail["weight_stream_s"] == 0.0
    assert detail["weights_bytes_per_system"] > wse2.main_memory.capacity_bytes
    streamed = dataclasses.replace(case, shape={**case.shape, "weights_resident": False})
    values2, detail2 = whatif_eval.predict(streamed, wse2)
    assert detail2["weight_stream_s"] > 0.5  # > 100 GB at 150 GB/s
    assert values2["tokens_per_s_per_user"] < 1.0 / detail2["weight_stream_s"] < values["tokens_per_s_per_user"]


def test_qwen2_72b_config_counts_its_parameters():
    """Qwen2-72B: embed + head 2 x 152064 x 8192; per layer q/o 2 x 8192^2 + q bias 8192, k/v 2 x (8192 x 1024 +
    1024), FFN 3 x 8192 x 29568, 2 norms; 80 layers; final norm = 72,706,203,648 (model card: 72.71B)."""
    with pytest.warns(Warning, match="does not model"):  # dropout and the like, named once
        m = workload_from_hf_config(str(MODELS / "Qwen2-72B")).model
    per_layer = 2 * 8192 ** 2 + 8192 + 2 * (8192 * 1024 + 1024) + 3 * 8192 * 29568 + 2 * 8192
    assert count_params(m).total == 2 * 152064 * 8192 + 80 * per_layer + 8192 == 72_706_203_648


def test_llama_70b_config_counts_70b_parameters():
    """Llama-3.1-70B: embed + head 2 x 128256 x 8192; per layer q/o 2 x 8192^2, k/v 2 x 8192 x 1024,
    FFN 3 x 8192 x 28672, 2 norms x 8192; 80 layers; final norm 8192 = 70,553,706,496 (model card: 70B)."""
    with pytest.warns(Warning, match="does not model"):  # dropout and the like, named once
        m = workload_from_hf_config(str(MODELS / "Llama-3.1-70B")).model
    per_layer = 2 * 8192 ** 2 + 2 * 8192 * 1024 + 3 * 8192 * 28672 + 2 * 8192
    assert count_params(m).total == 2 * 128256 * 8192 + 80 * per_layer + 8192 == 70_553_706_496


@pytest.mark.parametrize("shape, fragment", [
    ({"model": "Llama-3.1-8B", "systems": 1, "pp": 1, "batch": 1, "prompt_len": 10}, "shape.output_len"),
    ({"model": "no-such-model", "systems": 1, "pp": 1, "batch": 1, "prompt_len": 10, "output_len": 10},
     "shape.model"),
])
def test_bad_shapes_name_the_field(cases, shape, fragment):
    case = dataclasses.replace(cases["cs3_llama31_8b_launch"], shape=shape)
    with pytest.raises(ConfigError, match=fragment.replace(".", r"\.")):
        whatif_eval.predict(case)


def test_a_model_without_a_graph_is_skipped_with_the_reason(cases, wse, tmp_path, monkeypatch):
    """A case whose config.json names a model family archsim has no graph for is reported as skipped (the loader's
    ConfigError as the reason), not raised."""
    folder = tmp_path / "Unknown-1B"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "no_such_family", "architectures": ["NoSuchForCausalLM"]}')
    monkeypatch.setattr(whatif_eval, "MODELS_DIR", tmp_path)
    case = dataclasses.replace(cases["cs3_llama31_8b_launch"],
                               shape={**cases["cs3_llama31_8b_launch"].shape, "model": "Unknown-1B"})
    result = evaluate(case, wse)
    assert result.predicted is None and "does not resolve" in result.skipped
