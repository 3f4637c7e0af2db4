"""The text report groups the same op of consecutive layers into one row (report/table.py)."""
from __future__ import annotations

from types import SimpleNamespace as Op

from archsim.report.table import group_layers


def test_consecutive_identical_layers_share_a_row():
    ops = [Op(name="lm_head", time_s=5e-5, bound="memory:hbm")]
    ops += [Op(name=f"layers.{i}.mlp.experts.gate_up", time_s=4e-5, bound="memory:hbm") for i in (3, 4, 5, 6, 7)]
    ops += [Op(name="layers.9.mlp.experts.gate_up", time_s=4e-5, bound="memory:hbm")]   # not consecutive
    ops += [Op(name="layers.10.mlp.experts.gate_up", time_s=3e-5, bound="memory:hbm")]  # another time
    names = [(name, count) for name, _, count in group_layers(ops)]
    assert names == [("lm_head", 1), ("layers.3..7.mlp.experts.gate_up", 5), ("layers.9.mlp.experts.gate_up", 1),
                     ("layers.10.mlp.experts.gate_up", 1)]
