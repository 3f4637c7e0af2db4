"""archsim.routing is the one home of the MoE routing rules: config, graph and kernels all use its objects,
no other module defines them, and the graph's router op counts exactly what the rule says."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

import archsim.config.model as config_model
import archsim.kernels.router as kernel_router
import archsim.kernels.tiny as kernel_tiny
from archsim import routing
from archsim.graph.ops import GraphBuilder
from archsim.graph.precision import precision_from_names

PACKAGE = Path(__file__).resolve().parents[1] / "archsim"
RULES = ("TOPK_METHODS", "uses_correction_bias", "group_rule", "weight_rule", "router_flops", "check_topk_method")


def test_users_hold_the_routing_objects_themselves():
    assert config_model.TOPK_METHODS is routing.TOPK_METHODS
    assert config_model.uses_correction_bias is routing.uses_correction_bias
    assert kernel_tiny.uses_correction_bias is routing.uses_correction_bias
    assert kernel_router.router_flops is routing.router_flops
    assert kernel_router.group_rule is routing.group_rule and kernel_router.weight_rule is routing.weight_rule


def test_no_other_module_defines_a_routing_rule():
    """A second definition (a function or a module-level assignment of the same name) is what this test
    exists to catch; the walk covers every module of the package."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path == PACKAGE / "routing.py":
            continue
        for node in ast.parse(path.read_text()).body:
            names = ([node.name] if isinstance(node, (ast.FunctionDef, ast.ClassDef)) else
                     [t.id for t in getattr(node, "targets", [getattr(node, "target", None)])
                      if isinstance(t, ast.Name)] if isinstance(node, (ast.Assign, ast.AnnAssign)) else [])
            found += [f"{path.relative_to(PACKAGE)}:{name}" for name in names if name in RULES]
    assert found == []


def test_rules_per_method():
    assert routing.uses_correction_bias("noaux_tc")
    assert not any(routing.uses_correction_bias(m) for m in (None, "greedy", "group_limited_greedy"))
    # undeclared method with several groups: group scored by its best expert (DeepSeek-V3 inference/model.py)
    assert [routing.group_rule(m, 8) for m in (None, "greedy", "group_limited_greedy", "noaux_tc")] == \
        ["max", None, "max", "top2_sum"]
    assert all(routing.group_rule(m, 1) is None for m in (None, "group_limited_greedy", "noaux_tc"))
    assert routing.weight_rule("group_limited_greedy", 8, True) == (True, False)
    assert routing.weight_rule("noaux_tc", 8, True) == (True, True)
    assert routing.weight_rule(None, 1, True) == (False, True)
    with pytest.raises(ValueError, match="topk_method"):
        routing.group_rule("aux_tc", 8)


@pytest.mark.parametrize("method", [None, "greedy", "group_limited_greedy", "noaux_tc"])
@pytest.mark.parametrize("scoring,norm,k", [("sigmoid", True, 8), ("softmax", False, 6), ("sigmoid", True, 1)])
def test_graph_router_op_counts_the_rule(method, scoring, norm, k):
    g = 1 if method == "greedy" else 8
    bias = routing.uses_correction_bias(method)
    builder = GraphBuilder(precision_from_names("bf16", "bf16", "bf16"))
    name = builder.router("r", tokens=5, experts=64, k=k, n_group=g, norm_topk=norm, scoring=scoring, bias=bias,
                          layer=0, deps=(), topk_method=method)
    op = builder.graph().nodes[name]["op"]
    # by hand (docs/counting.md): scores, bias, group top-2 sums, normalise, scale
    normalise = norm and k > 1
    scale = method in (None, "noaux_tc") or not normalise
    want = ((3 if scoring == "sigmoid" else 5) * 5 * 64 + (5 * 64 if bias else 0)
            + (5 * g if method == "noaux_tc" else 0) + (2 * k * 5 if normalise else 0) + (k * 5 if scale else 0))
    assert op.flops == want == routing.router_flops(tokens=5, experts=64, top_k=k, topk_method=method,
                                                    scoring_func=scoring, n_group=g, norm_topk_prob=norm,
                                                    bias=bias)
