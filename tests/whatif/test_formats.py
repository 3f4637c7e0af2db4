"""Quantizers against hand-known values of the formats."""
import numpy as np
import pytest

from archsim.whatif.formats import BF16, E2M1, E4M3, FP16, block_quantize, mx_quantize, round_minifloat, \
    uniform_quantize


def test_e4m3_values():
    # e4m3: 3 mantissa bits; between 0.0625 and 0.125 the step is 2^-4 * 2^-3 = 2^-7
    assert round_minifloat(np.array([0.1]), E4M3)[0] == 13 * 2.0 ** -7  # 0.1015625
    assert round_minifloat(np.array([1000.0, -500.0]), E4M3).tolist() == [448.0, -448.0]  # saturation
    # subnormal step below 2^-6 is 2^-9
    assert round_minifloat(np.array([3.1 * 2.0 ** -9]), E4M3)[0] == 3 * 2.0 ** -9


def test_e2m1_grid():
    xs = np.linspace(-7, 7, 1001)
    values = set(np.abs(round_minifloat(xs, E2M1)).tolist())
    assert values == {0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0}


def test_bf16_and_fp16_resolution():
    assert round_minifloat(np.array([1 + 2.0 ** -9]), BF16)[0] == 1.0        # below half a bf16 step (2^-7)
    assert round_minifloat(np.array([1 + 2.0 ** -10]), FP16)[0] == 1 + 2.0 ** -10  # exact in fp16


def test_block_scales_are_per_block():
    w = np.ones((256, 256))
    w[:128, :128] *= 1000.0  # one loud block does not coarsen the others
    q = block_quantize(w, E4M3, (128, 128))
    np.testing.assert_array_equal(q, w)  # each block's absmax maps exactly onto 448
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 200))
    q = block_quantize(x, E4M3, (1, 128))
    rel = np.abs(q - x) / np.max(np.abs(x))
    assert rel.max() <= 2.0 ** -4  # half an e4m3 step at the top binade, relative to the block max


def test_mx_power_of_two_scales():
    x = np.array([6.0, 3.0, 1.5, 0.5] + [0.0] * 28) * 2.0 ** 5
    np.testing.assert_array_equal(mx_quantize(x, E2M1, 32), x)  # amax 6*2^5 -> scale 2^5, all representable
    y = mx_quantize(np.array([7.0] + [0.0] * 31), E2M1, 32)
    assert y[0] == 6.0  # shared exponent floor(log2 7) - 2 = 0, 7 saturates at 6


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_uniform_levels(bits):
    x = np.linspace(-1, 1, 999)[None, :]
    q = uniform_quantize(x, bits)
    assert len(np.unique(q)) == 2 ** bits - 1
