"""Weight-only formats (INT4 with group scales under a BF16 MMA: Marlin, Machete, TRT-LLM W4A16) stream their packed
weights and scales from memory through shared memory and dequantise in registers, so a GEMM's B operand is priced
on chip at its storage width, scales included, and its A operand at the activation (MMA) width
(archsim/cost/gemm.py ``b_elem_bytes``)."""
from __future__ import annotations

import pytest

import archsim
from archsim.cost import gemm
from archsim.dtypes import BF16, FP8_BLOCK128
from archsim.graph.ops import GraphBuilder
from archsim.graph.precision import WEIGHT_FORMATS, precision_from_names
from tests.cost.fixtures import tile_geometry

INT4_G32 = WEIGHT_FORMATS["int4"]  # 4-bit elements, one bf16 scale per 32 along the input dimension


def test_b_is_staged_at_its_storage_width_only_when_narrower_than_the_mma():
    # int4, group 32, bf16 scale: 4 bits + 16 bits / 32 elements = 0.5 + 0.0625 = 0.5625 B per element
    assert gemm.b_elem_bytes(INT4_G32, BF16) == 0.5625
    # FP8 block-scaled weights under an FP8 MMA: staged as FP8 (the 128 x 128 scales are a separate stream)
    assert gemm.b_elem_bytes(FP8_BLOCK128, FP8_BLOCK128) == 1.0
    assert gemm.b_elem_bytes(BF16, BF16) == 2.0


def test_int4_routed_expert_tile_bytes_by_hand():
    # Kimi K2's native format: routed experts int4 (group 32, bf16 scales), BF16 elsewhere; the GEMM runs in BF16
    b = GraphBuilder(precision_from_names("bf16", expert_weights="int4"))
    b.grouped_gemm("experts.gate_up", tokens_per_group=(1.0,), n=256, k=1024, distinct=1.0, layer=0, deps=[],
                   split="ep", layout="masked", routed_experts=True)
    op = b.graph().nodes["experts.gate_up"]["op"]
    assert op.compute_dtype is BF16
    shape = gemm.GemmShape.of(op)
    assert (shape.a_elem_bytes, shape.b_elem_bytes) == (2.0, 0.5625)
    # one 64 x 128 tile shape, 132 SMs: 1 token -> ceil(1/64) x ceil(256/128) = 2 tiles of depth k = 1024
    geom = tile_geometry(block_m=(64,), block_n=(128,), max_tile_elements=64 * 128)
    cands = gemm.tile_candidates(shape, geom)
    (config,) = cands.configs
    assert (config.tiles, config.multicast) == (2, 1)
    # each tile reads its A panel (64 rows x 1024 x 2 B, the partial m-block counted whole) and its B panel
    # (128 x 1024 x 0.5625 B) from L2 into shared memory: 2 x (131072 + 73728) = 409600 B (BF16 B: 2 x 393216)
    assert cands.l2_operand_bytes[0] == cands.smem_bytes[0] == 2 * (64 * 1024 * 2 + 128 * 1024 * 0.5625) == 409600
    # the busiest SM streams one packed 128-column weight panel from HBM: 128 x 1024 x 0.5625 = 73728 B
    assert cands.panel_stream_bytes[0] == 73728
    # main memory reads the compulsory bytes: one token's BF16 activations and the expert's packed weights + scales
    assert float(cands.hbm_read_bytes) == 1024 * 2 + INT4_G32.storage_bytes((256, 1024)) == 2048 + 147456


@pytest.fixture(scope="module")
def kimi_tpot():
    def tpot(devices: int, **precision) -> float:
        report = archsim.estimate("workloads/kimi_k2.yaml", "hardware/h200.yaml", devices=devices, batch=64,
                                  **precision)
        return report.decode.time_s
    return tpot


def test_kimi_k2_int4_decode_is_no_slower_than_fp8_and_faster_than_bf16(kimi_tpot):
    """Kimi K2 at batch 64 on H200: its native INT4-expert checkpoint decodes no slower than FP8 on 16 chips, and
    faster than BF16 on 32 (BF16, 2 TB of weights, does not fit 16). On 32 chips INT4 is not faster than FP8:
    the routed experts are (fewer bytes), but attention, the shared experts and the dense layer stay BF16 in
    that checkpoint, twice FP8's bytes, and the experts are a smaller share of the step there."""
    assert kimi_tpot(16, weights="bf16", expert_weights="int4") <= kimi_tpot(16, weights="fp8")
    assert kimi_tpot(32, weights="bf16", expert_weights="int4") < kimi_tpot(32, weights="bf16")
