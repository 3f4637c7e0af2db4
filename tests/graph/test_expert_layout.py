"""The routed experts' grouped GEMMs carry the row layout the EP dispatch hands them (attr ``row_layout``):
contiguous by default, masked when the builder is told so; the layout changes no work, only the kernel."""
import pytest
from helpers_graph import model, tiny

from archsim.errors import ConfigError
from archsim.graph.build import build_decode, build_prefill
from archsim.graph.precision import Shard, precision_from_names

FP8 = precision_from_names("fp8")
ROUTED = ("mlp.experts.gate_up", "mlp.experts.down")


def _grouped(g):
    return {n: d["op"] for n, d in g.nodes(data=True) if d["op"].kind == "grouped_gemm"}


def test_routed_expert_gemms_default_to_contiguous():
    g = build_decode(model("deepseek_v3"), batch=8, context=128, precision=FP8, shard=Shard(ep=8), compact=True)
    ops = _grouped(g)
    assert {op.attrs["row_layout"] for op in ops.values()} == {"contiguous"}
    assert g.graph["expert_layout"] == "contiguous"


@pytest.mark.parametrize("build", ["decode", "prefill"])
def test_masked_layout_reaches_every_routed_expert_gemm_and_nothing_else(build):
    m = tiny()
    kw = dict(precision=FP8, shard=Shard(ep=2), mtp=True, expert_layout="masked")
    g = (build_decode(m, batch=4, context=16, **kw) if build == "decode"
         else build_prefill(m, batch=2, prompt_len=8, **kw))
    routed = {n: op for n, op in _grouped(g).items() if n.endswith(ROUTED)}
    # the MoE decoder layer and the MTP module's MoE layer, gate_up and down each
    assert len(routed) == 4 and all(op.attrs["row_layout"] == "masked" for op in routed.values())
    others = {n: op for n, op in _grouped(g).items() if n not in routed}
    assert all(op.attrs["row_layout"] == "contiguous" for op in others.values())  # absorbed MLA projections
    assert g.graph["expert_layout"] == "masked"


def test_layout_changes_no_work():
    m = model("kimi_k2")
    graphs = [build_decode(m, batch=16, context=512, precision=FP8, shard=Shard(ep=16), routed_tokens=256,
                           compact=True, expert_layout=layout) for layout in ("contiguous", "masked")]
    a, b = (_grouped(g) for g in graphs)
    assert a.keys() == b.keys()
    for name in a:
        assert (a[name].flops, a[name].bytes, a[name].params) == (b[name].flops, b[name].bytes, b[name].params)
        assert {k: v for k, v in a[name].attrs.items() if k != "row_layout"} == \
               {k: v for k, v in b[name].attrs.items() if k != "row_layout"}


@pytest.mark.parametrize("bad", ["ragged", "", None, "Masked"])
def test_unknown_layout_is_a_config_error(bad):
    with pytest.raises(ConfigError, match="expert_layout"):
        build_decode(tiny(), batch=1, context=4, precision=FP8, expert_layout=bad)
