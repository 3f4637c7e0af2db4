"""GEMM tiling rule and traffic against hand derivations (archsim/cost/gemm_traffic.py docstring)."""
import math

from archsim.cost.gemm_traffic import gemm_tiles, gemm_traffic

KIB = 1024


def test_tile_rule_h100():
    # registers 256 KiB: T^2 * 4 <= 262144 -> T <= 256; SMEM 228 KiB, BF16: bk <= 233472 / (4*256*2) = 114 -> 64
    assert gemm_tiles(228 * KIB, 2, 256 * KIB) == (256, 64)
    # FP8: bk <= 233472 / (4*256*1) = 228 -> 128
    assert gemm_tiles(228 * KIB, 1, 256 * KIB) == (256, 128)
    # without registers: 4*T^2*2 <= 233472 -> T <= 170 -> 128
    assert gemm_tiles(228 * KIB, 2) == (128, 128)


def test_decode_gemm_moves_compulsory_bytes():
    m, n, k = 1, 7168, 7168
    a, b, c = m * k * 2, n * k * 1, m * n * 2
    t = gemm_traffic(m=m, n=n, a_bytes=a, b_bytes=b, c_bytes=c, tile=256, l2_bytes=50e6)
    assert t.hbm == a + b + c
    # L2 -> SMs: A re-read once per column panel (ceil(7168/256) = 28), B once per row panel (1)
    assert t.l2 == a * 28 + b + c


def test_large_gemm_banding_by_hand():
    m = n = k = 8192
    a, b, c = m * k * 2, k * n * 1, m * n * 2   # BF16 A, FP8 B, BF16 C
    l2 = 50e6
    panels = 8192 // 256                           # 32 panels each way
    panel_a, panel_b = a / panels, b / panels      # 4 MiB and 2 MiB
    band_a = int((l2 - panel_b) // panel_a)        # A row panels kept in L2 while B streams
    band_b = int((l2 - panel_a) // panel_b)
    order_a = a + b * math.ceil(panels / band_a)
    order_b = b + a * math.ceil(panels / band_b)
    t = gemm_traffic(m=m, n=n, a_bytes=a, b_bytes=b, c_bytes=c, tile=256, l2_bytes=l2)
    assert t.hbm == c + min(order_a, order_b)
    assert t.hbm > a + b + c  # neither operand fits the 50 MB L2


def test_operand_that_fits_l2_is_read_once():
    t = gemm_traffic(m=4096, n=4096, a_bytes=8e6, b_bytes=8e6, c_bytes=8e6, tile=256, l2_bytes=50e6)
    assert t.hbm == 24e6

