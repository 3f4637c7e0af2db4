"""The whatif category's SRAM-dataflow cases: Groq LPU decode per user (validation/whatif_sram_public.yaml,
fidelity/whatif_eval.py with the shape keys ``tp`` and ``weights``)."""
import dataclasses
import warnings
from pathlib import Path

import pytest

from archsim.config.hardware import load_hardware
from archsim.errors import ConfigError
from archsim.config.hf import config_file, model_from_hf, read_config_json
from archsim.fidelity import whatif_eval
from archsim.fidelity.cases import load_case_file, load_cases
from archsim.fidelity.validate import evaluate, summarise
from archsim.graph.params import count_params

ROOT = Path(__file__).resolve().parents[2]
CASES = ROOT / "validation" / "whatif_sram_public.yaml"
MODELS = ROOT / "validation" / "whatif_models"
SRAM_BYTES = 230e6  # hardware/groq_lpu.yaml


@pytest.fixture(scope="module")
def cases():
    return {c.id: c for c in load_case_file(CASES).cases}


@pytest.fixture(scope="module")
def groq():
    return load_hardware("groq_lpu")


def _with_c2c_latency(hw, latency_s):
    node = hw.node
    return dataclasses.replace(hw, node=dataclasses.replace(
        node, scale_up=dataclasses.replace(node.scale_up, latency_s=latency_s),
        scale_out=dataclasses.replace(node.scale_out, latency_s=latency_s)))


def test_case_file(cases):
    assert set(cases) == {"groq_llama2_70b", "groq_llama2_7b", "groq_mixtral_8x7b", "groq_llama31_70b"}
    assert {c.hardware for c in cases.values()} == {"groq_lpu"}
    assert {c.kernel for c in cases.values()} == {"whatif_decode"}
    assert all(c.shape["weights"] == "fp8" and c.shape["systems"] == c.shape["tp"] * c.shape["pp"]
               for c in cases.values())


def test_three_compared_one_skipped_because_it_does_not_fit(cases, groq):
    results = {c.id: evaluate(c, groq) for c in cases.values()}
    assert {k for k, r in results.items() if r.skipped} == {"groq_llama31_70b"}
    assert "does not fit" in results["groq_llama31_70b"].skipped
    summary = summarise(list(results.values()))["whatif"]
    assert summary["n"] == 3 and summary["skipped"] == 1


def test_llama2_70b_one_layer_per_groqnode(cases):
    """TP8 PP80: one layer on each GroqNode's 8 chips. A layer at 8 bits: q/o 2 x 8192^2, k/v 2 x 8192 x 1024,
    FFN 3 x 8192 x 28672 = 855,638,016 B, over 8 chips = 106.95 MB per chip; the busiest chip adds its share of the
    embedding and LM head (32000 x 8192 / 8 each; archsim reports the heaviest stage as holding both) and stays
    under 230 MB (the norms, a few 10 kB, are the 0.1% left)."""
    values, detail = whatif_eval.predict(cases["groq_llama2_70b"])
    layer = 2 * 8192 ** 2 + 2 * 8192 * 1024 + 3 * 8192 * 28672
    assert detail["layout"].startswith("TP8 ") and "PP80" in detail["layout"]
    assert detail["weights_bytes_per_system"] == pytest.approx((layer + 2 * 32000 * 8192) / 8, rel=1e-3)
    assert detail["weights_bytes_per_system"] < SRAM_BYTES and detail["weight_stream_s"] == 0.0


def test_bf16_weights_do_not_fit_576_chips(cases):
    """138 GB of BF16 Llama-2-70B weights exceed 640 x 230 MB at one layer per stage: the case is not modelled."""
    case = dataclasses.replace(cases["groq_llama2_70b"], shape={**cases["groq_llama2_70b"].shape, "weights": "bf16"})
    with pytest.raises(whatif_eval.NotModelled, match="does not fit"):
        whatif_eval.predict(case)


def test_batch1_pipeline_is_bound_by_the_c2c_latency(cases, groq):
    """At batch 1 the step is the stages' times in series; the weights alone (70 GB at 8 bits over a stage's 8 chips
    x 80 TB/s, 0.11 ms) are a small part of it, so a third of the C2C latency is well over twice as fast."""
    case = cases["groq_llama2_70b"]
    slow, _ = whatif_eval.predict(case, groq)
    fast, _ = whatif_eval.predict(case, _with_c2c_latency(groq, 1e-6))
    layer = 2 * 8192 ** 2 + 2 * 8192 * 1024 + 3 * 8192 * 28672  # bytes at 8 bits
    weights_only_s = (80 * layer + 2 * 32000 * 8192) / (8 * 80e12)  # 68.97 GB over 640 TB/s = 0.108 ms
    assert weights_only_s == pytest.approx(1.078e-4, rel=1e-3)
    assert 1.0 / slow["tokens_per_s_per_user"] > 10 * weights_only_s
    assert fast["tokens_per_s_per_user"] > 2.0 * slow["tokens_per_s_per_user"]


def test_unknown_weight_dtype_names_the_field(cases):
    case = dataclasses.replace(cases["groq_llama2_7b"], shape={**cases["groq_llama2_7b"].shape, "weights": "fp9"})
    with pytest.raises(ConfigError, match=r"groq_llama2_7b\.shape\.weights"):
        whatif_eval.predict(case)


def test_tp_key_sets_the_tensor_parallel_degree(cases):
    case = cases["groq_mixtral_8x7b"]
    _, detail = whatif_eval.predict(case)
    assert detail["layout"].startswith("TP8 ") and "PP32" in detail["layout"]


def test_llama2_7b_config_counts_its_parameters():
    """Llama-2-7B: embed + head 2 x 32000 x 4096; per layer 4 x 4096^2 (32 KV heads: no GQA), FFN 3 x 4096 x 11008,
    2 norms; 32 layers; final norm 4096 = 6,738,415,616 (model card: 7B)."""
    file = config_file(str(MODELS / "Llama-2-7b-chat-hf"))  # the model alone: Llama 2's window is 4096 tokens
    with warnings.catch_warnings():  # the config fields archsim does not model (named once per process)
        warnings.simplefilter("ignore")
        m, _, _ = model_from_hf(read_config_json(file), file)
    per_layer = 4 * 4096 ** 2 + 3 * 4096 * 11008 + 2 * 4096
    assert count_params(m).total == 2 * 32000 * 4096 + 32 * per_layer + 4096 == 6_738_415_616


def test_whatif_category_has_ten_cases_of_four_kinds():
    """issue 17: >= 10 compared published results of >= 3 chip kinds (wafer-scale, PIM, 3D DRAM, SRAM dataflow)."""
    kinds = {"cerebras_wse3": "wafer", "cerebras_wse2": "wafer", "mi100_hbm2_pim": "pim", "h100_3d_dram": "dram3d",
             "groq_lpu": "sram_dataflow"}
    results = [evaluate(c, load_hardware(c.hardware)) for c in load_cases() if c.category == "whatif"]
    compared = [r for r in results if not r.skipped]
    assert len(compared) >= 10
    assert len({kinds[r.case.hardware] for r in compared}) >= 3
    assert summarise(results)["whatif"]["n"] == len(compared)
