"""docs/cost-model.md names each hop of a GEMM's pricing as `file:function`; every one must import, so the page
cannot outlive the code it describes."""
from __future__ import annotations

import importlib
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HOP = re.compile(r"`(archsim/[\w/]+\.py):([\w.]+)`")


def test_every_hop_named_in_the_cost_model_doc_exists():
    hops = HOP.findall((ROOT / "docs" / "cost-model.md").read_text())
    assert len(hops) >= 20  # the walk from op to joules, each hop once or more
    for path, qualname in hops:
        assert (ROOT / path).is_file(), path
        obj = importlib.import_module(path.removesuffix(".py").replace("/", "."))
        for part in qualname.split("."):
            assert hasattr(obj, part), f"{path}:{qualname}"
            obj = getattr(obj, part)
        assert callable(obj), f"{path}:{qualname}"
    names = {q for _, q in hops}
    assert {"gemm_time", "tile_candidates", "GemmShape.of", "ChipRates.of"} <= names
