"""Typed attrs of gemm / grouped_gemm ops (archsim/graph/op.py): checked when the op is made, a missing or bad
attr is a ConfigError naming the op, and ``op.attrs["m"]``-style reads keep working."""
from __future__ import annotations

import pytest

from archsim.dtypes import BF16
from archsim.errors import ConfigError
from archsim.graph.op import ExpertRowLayout, GemmAttrs, GroupedGemmAttrs, Op, Operand
from archsim.graph.ops import GraphBuilder
from archsim.graph.precision import precision_from_names


def _op(kind: str, attrs) -> Op:
    x = Operand.of("x", (4, 8), BF16, "activation")
    return Op(name="layers.0.proj", kind=kind, engine="matrix", compute_dtype=BF16, flops=0, reads=(x,), writes=(),
              attrs=attrs)


def test_builder_ops_carry_typed_attrs_with_mapping_reads():
    b = GraphBuilder(precision_from_names("fp8"))
    b.gemm("q", m=3, n=16, k=8, layer=0, deps=[], split="tp")
    b.grouped_gemm("e", tokens_per_group=(2.0, 0.0, 5.0), n=16, k=8, distinct=1.5, layer=0, deps=[], split="ep",
                   layout="masked")
    g = b.graph()
    q, e = g.nodes["q"]["op"], g.nodes["e"]["op"]
    assert isinstance(q.attrs, GemmAttrs) and (q.attrs.m, q.attrs["n"], q.attrs["split"]) == (3, 16, "tp")
    assert isinstance(e.attrs, GroupedGemmAttrs)
    # the derived counts follow tokens_per_expert: 3 groups, 7 tokens, the busiest group 5
    assert (e.attrs["groups"], e.attrs["tokens_total"], e.attrs["tokens_max"]) == (3, 7.0, 5.0)
    assert e.attrs.row_layout is ExpertRowLayout.MASKED and e.attrs["row_layout"] == "masked"
    assert e.attrs.get("m") is None and "layout" not in e.attrs


@pytest.mark.parametrize("kind, attrs, field", [
    ("gemm", {"m": 4, "n": 8}, "k"),                                              # missing
    ("gemm", {"m": 4, "n": 8, "k": 2.5}, "k"),                                     # not an integer
    ("gemm", {"m": 4, "n": 8, "k": 8, "layout": "masked"}, "layout"),              # unknown (the old name)
    ("grouped_gemm", {"n": 8, "k": 8, "tokens_per_expert": (1.0,)}, "distinct_experts"),
    ("grouped_gemm", {"n": 8, "k": 8, "tokens_per_expert": (1.0,), "distinct_experts": 2.0}, "distinct_experts"),
    ("grouped_gemm", {"n": 8, "k": 8, "tokens_per_expert": (1.0, -1.0), "distinct_experts": 1.0},
     "tokens_per_expert[1]"),
    ("grouped_gemm", {"n": 8, "k": 8, "tokens_per_expert": (1.0,), "distinct_experts": 1.0, "row_layout": "ragged"},
     "row_layout"),
    ("grouped_gemm", {"n": 8, "k": 8, "tokens_per_expert": (1.0, 3.0), "distinct_experts": 2.0, "tokens_max": 1.0},
     "tokens_max"),                                                                # disagrees with the counts
])
def test_bad_or_missing_attr_is_a_config_error_naming_the_op(kind, attrs, field):
    with pytest.raises(ConfigError) as err:
        _op(kind, attrs)
    assert f"layers.0.proj.attrs.{field}" in str(err.value)


def test_builder_rejects_an_unknown_row_layout_naming_the_op():
    b = GraphBuilder(precision_from_names("fp8"))
    with pytest.raises(ConfigError, match="experts.down.layout"):
        b.grouped_gemm("experts.down", tokens_per_group=(1.0,), n=8, k=8, distinct=1.0, layer=0, deps=[], split="ep",
                       layout="ragged")
