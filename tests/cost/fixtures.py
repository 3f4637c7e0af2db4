"""H100-like Hardware record and small Op builders for the cost-model tests.

Peak rates, capacities and HBM bandwidth are H100 SXM5 datasheet figures: the NVIDIA H100 Tensor Core GPU
Architecture whitepaper as quoted by glennklockwood.com/garden/processors/h100 [S]. Achievable fractions are
DeepSeek's H800 measurements (deepseek-ai/DeepGEMM README news 2025-04-18: "up to 1550 TFLOPS" of the 1979 FP8
peak; deepseek-ai/FlashMLA README.md: "up to 3000 GB/s" of 3350 GB/s [V]). Figures those sources do not give
(L2 and SMEM bandwidth, latencies, energies, idle power) are FIXTURE PARAMETERS chosen for the tests, not
hardware claims: the tests derive every expected value from the record's fields, never from these literals.
"""
from __future__ import annotations

from archsim.config.hardware import ComputeEngine, Hardware, Link, MemoryLevel, Node, Power
from archsim.cost import gemm
from archsim.cost.geometry import Geometry
from archsim.cost.opcost import OpCost, price_work_item
from archsim.cost.traffic import op_work
from archsim.dtypes import BF16, FP8, FP32, DType
from archsim.graph.op import ExpertRowLayout, Op, Operand

KIB = 2 ** 10
SMS = 132  # H100 SXM5 SMs: Hopper whitepaper via glennklockwood.com/garden/processors/h100 [S]


def h100_like(*, hbm_bandwidth: float = 3.35e12, fp8_peak: float = 1978.9e12, sm_count: int = SMS) -> Hardware:
    tensor = ComputeEngine(
        name="tensor", kind="matrix",
        peak_flop_per_s={"fp8": fp8_peak, "bf16": 989.4e12, "tf32": 494.7e12},  # whitepaper, as above [S]
        achievable_fraction=1550 / 1979,  # DeepGEMM README news 2025-04-18, H800 [V]
        energy_j_per_flop={"fp8": 0.3e-12, "bf16": 0.6e-12, "tf32": 1.2e-12})  # fixture parameters
    vector = ComputeEngine(name="cuda", kind="vector", peak_flop_per_s={"fp32": 66.9e12},  # whitepaper [S]
                           achievable_fraction=0.5, energy_j_per_flop={"fp32": 2e-12})  # fixture parameters
    memory = {
        "registers": MemoryLevel(name="registers", capacity_bytes=256 * KIB * sm_count, bandwidth_bytes_per_s=1e15,
                                 latency_s=0.0, energy_j_per_bit=0.01e-12, achievable_fraction=1.0,
                                 per_unit_bytes=256 * KIB, units=sm_count),
        "shared": MemoryLevel(name="shared", capacity_bytes=228 * KIB * sm_count, bandwidth_bytes_per_s=3.3e13,
                              latency_s=3e-8, energy_j_per_bit=0.1e-12, achievable_fraction=0.9,
                              per_unit_bytes=228 * KIB, units=sm_count),  # 228 KB/SM: H800 trace, profile-data [V]
        "l2": MemoryLevel(name="l2", capacity_bytes=50e6, bandwidth_bytes_per_s=1.2e13, latency_s=3e-7,
                          energy_j_per_bit=0.5e-12, achievable_fraction=0.8),  # 50 MB: Hopper whitepaper [S]
        "hbm": MemoryLevel(name="hbm", capacity_bytes=80e9, bandwidth_bytes_per_s=hbm_bandwidth, latency_s=6e-7,
                           energy_j_per_bit=3.9e-12, achievable_fraction=3000 / 3350),  # 80 GB, 3.35 TB/s [S]
    }
    link = Link(name="nvlink", bandwidth_bytes_per_s=450e9, latency_s=2e-6, energy_j_per_bit=1.3e-12,
                achievable_fraction=0.8)  # 900 GB/s bidirectional [S]; 1.3 pJ/bit: NVIDIA "What is NVLink" blog [S]
    return Hardware(name="h100-like", year=2022, compute={"tensor": tensor, "cuda": vector}, memory=memory,
                    sm_count=sm_count, kernel_launch_s=2.5e-6, power=Power(tdp_w=700.0, idle_w=100.0),
                    price_usd_per_hour=2.0, node=Node(chips_per_node=8, scale_up=link, scale_out=link))


def gemm_op(name: str, m: int, n: int, k: int, *, weight: DType = FP8, act: DType = BF16) -> Op:
    """C[m,n] = A[m,k] @ W[k,n]; compute dtype is the weight dtype (FP8 GEMMs run in FP8)."""
    return Op(name=name, kind="gemm", engine="matrix", compute_dtype=weight, flops=2 * m * n * k,
              reads=(Operand.of("x", (m, k), act, "activation"), Operand.of("w", (k, n), weight, "weight")),
              writes=(Operand.of("y", (m, n), act, "output"),), params=n * k, attrs={"m": m, "n": n, "k": k})


def norm_op(name: str, rows: int, width: int, dtype: DType = BF16) -> Op:
    """RMSNorm: 4*r*d FLOPs (docs/counting.md); reads x and the weight vector, writes y."""
    return Op(name=name, kind="norm", engine="vector", compute_dtype=dtype, flops=4 * rows * width,
              reads=(Operand.of("x", (rows, width), dtype, "activation"), Operand.of("g", (width,), dtype, "weight")),
              writes=(Operand.of("y", (rows, width), dtype, "output"),), params=width)


def attention_op(name: str, *, batch: int, q_len: int, kv_len: int, heads_q: int, heads_kv: int, d_qk: int,
                 d_v: int, causal: bool, dtype: DType = BF16) -> Op:
    """Attention core with docs/counting.md FLOPs: pairs * heads * (2*d_qk + 5 + 2*d_v)."""
    if causal:
        start = kv_len - q_len
        pairs = sum(start + i + 1 for i in range(q_len))
    else:
        pairs = q_len * kv_len
    flops = batch * heads_q * pairs * (2 * d_qk + 5 + 2 * d_v)
    reads = (Operand.of("q", (batch, q_len, heads_q, d_qk), dtype, "activation"),
             Operand.of("k", (batch, kv_len, heads_kv, d_qk), dtype, "cache"),
             Operand.of("v", (batch, kv_len, heads_kv, d_v), dtype, "cache"))
    writes = (Operand.of("o", (batch, q_len, heads_q, d_v), dtype, "output"),)
    return Op(name=name, kind="attention", engine="matrix", compute_dtype=dtype, flops=flops, reads=reads,
              writes=writes, attrs=dict(batch=batch, q_len=q_len, kv_len=kv_len, heads_q=heads_q,
                                        heads_kv=heads_kv, d_qk=d_qk, d_v=d_v, causal=causal))


def grouped_op(name: str, *, tokens_per_expert: tuple[float, ...], n: int, k: int, weight: DType = FP8,
               act: DType = BF16) -> Op:
    """Grouped expert GEMM over the experts with tokens; weights of the touched experts only."""
    touched = [t for t in tokens_per_expert if t > 0]
    tokens = sum(touched)
    w = Operand(name="w", shape=(len(touched), k, n), dtype=weight, role="weight",
                nbytes=len(touched) * weight.storage_bytes((k, n)))
    return Op(name=name, kind="grouped_gemm", engine="matrix", compute_dtype=weight, flops=2 * tokens * n * k,
              reads=(Operand(name="x", shape=(int(tokens), k), dtype=act, role="activation",
                             nbytes=tokens * k * act.bytes), w),
              writes=(Operand(name="y", shape=(int(tokens), n), dtype=act, role="output", nbytes=tokens * n * act.bytes),),
              attrs=dict(n=n, k=k, tokens_per_expert=tuple(tokens_per_expert), distinct_experts=len(touched),
                         tokens_total=tokens))


def price_op(op: Op, hw: Hardware, *, attention: str = "flash") -> OpCost:
    """The scalar path's price of one op on ``hw`` (``attention``: "flash" or "naive"); the array path
    (``cost/phase.price_graph``) is what projections use, and the tests hold the two equal."""
    return price_work_item(op, op_work(op, Geometry.of(hw), attention=attention), hw)


def least_padded_tile(*, m: int, n: int, groups: int, sm_count: int, block_m_options, block_n_options,
                      max_tile_elements: int, score=None) -> gemm.TileConfig:
    """The menu tile of least ``score`` (default: padded outputs per SM, to which the MMA time is proportional);
    ties to the fewest waves, then the fullest last wave, then the wider block_n. A rate-free pick for tests."""
    score = score or (lambda tile: float(tile.padded_elements_per_sm))
    tiles = gemm.tile_configs(groups=groups, m=m, n=n, sm_count=sm_count, block_m_options=tuple(block_m_options),
                              block_n_options=tuple(block_n_options), max_tile_elements=max_tile_elements)
    return min(tiles, key=lambda t: (score(t), t.waves, -t.last_wave_tiles, -t.block_n))


def tile_geometry(*, block_m, block_n, max_tile_elements: int, sm_count: int = SMS, multicast: int = 1,
                  l2_bytes: float = 50e6) -> Geometry:
    """An H100-like geometry (228 KiB SMEM and 256 KiB registers per SM) with the given GEMM tile menu."""
    return Geometry(level_names=("registers", "shared", "l2", "hbm"), main="hbm", sram_per_sm_bytes=228 * KIB,
                    l2_bytes=l2_bytes, register_per_sm_bytes=256 * KIB, sm_count=sm_count,
                    gemm_block_m=tuple(block_m), gemm_block_n=tuple(block_n), gemm_max_tile_elements=max_tile_elements,
                    gemm_multicast=multicast, matrix_dtypes=("fp8", "bf16"))


def gemm_shape(*, m: float, n: int, k: int, groups: int = 1, dtype: DType = FP8, out: DType = BF16,
               row_layout: ExpertRowLayout = ExpertRowLayout.CONTIGUOUS, b_elem_bytes: float | None = None,
               busiest: float | None = None) -> gemm.GemmShape:
    """``groups`` equal GEMMs of m x n x k (A and B in ``dtype``, C in ``out``), operands read once; ``b_elem_bytes``
    overrides B's on-chip width (a weight-only format), ``busiest`` the busiest group's rows (default m)."""
    return gemm.GemmShape(rows_total=float(groups * m), groups_touched=float(groups),
                          busiest_group_rows=float(m if busiest is None else busiest), n=n, k=k,
                          row_layout=row_layout, mma_dtype=dtype, a_elem_bytes=dtype.bytes,
                          b_elem_bytes=dtype.bytes if b_elem_bytes is None else b_elem_bytes,
                          a_bytes=groups * m * k * dtype.bytes, b_bytes=groups * k * n * dtype.bytes,
                          c_bytes=groups * m * n * out.bytes, flops=2.0 * groups * m * n * k, l2_banding=False)
