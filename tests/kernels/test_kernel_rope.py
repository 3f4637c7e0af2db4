"""RoPE variants: YaRN frequencies and mscale against hand arithmetic for DeepSeek-V3 and Kimi K2."""
from __future__ import annotations

import math

import numpy as np
import pytest

from archsim.kernels.counting import Counter
from archsim.kernels.rope import (apply_rope, decayed_positions, inv_freq_lambda, inv_freq_linear, inv_freq_ntk,
                                  inv_freq_standard, inv_freq_yarn, rope_inv_freq, rope_tables, softmax_scale,
                                  yarn_correction_range, yarn_mscale)

# rope_scaling blocks as in the published configs: HF deepseek-ai/DeepSeek-V3 config.json [V]; Kimi-K2-Instruct
# (July 2025) from a derived copy of HF moonshotai/Kimi-K2-Instruct config.json [S], 4096 x 32 = 131072
DSV3 = dict(type="yarn", factor=40, beta_fast=32, beta_slow=1, mscale=1.0, mscale_all_dim=1.0,
            original_max_position_embeddings=4096)
K2 = dict(type="yarn", factor=32.0, beta_fast=1.0, beta_slow=1.0, mscale=1.0, mscale_all_dim=1.0,
          original_max_position_embeddings=4096)


def test_deepseek_v3_yarn_by_hand():
    dim, theta = 64, 10000.0
    # correction dim for r rotations: dim * ln(4096 / (2 pi r)) / (2 ln theta)
    # r = 32: 64 * ln(20.372) / 18.4207 = 64 * 3.01419 / 18.4207 = 10.47 -> floor 10
    # r = 1:  64 * ln(651.90) / 18.4207 = 64 * 6.47989 / 18.4207 = 22.51 -> ceil 23
    assert yarn_correction_range(32, 1, dim, theta, 4096) == (10, 23)
    inv = inv_freq_yarn(dim, theta, factor=40, beta_fast=32, beta_slow=1, original_max_position_embeddings=4096)
    # ramp_i = clamp((i - 10) / 13, 0, 1); freq_i = f_i * (1 - ramp_i) + f_i / 40 * ramp_i
    for i in (0, 5, 10, 11, 16, 22, 23, 31):
        f = 10000.0 ** (-2 * i / 64)
        ramp = min(max((i - 10) / 13, 0.0), 1.0)
        assert inv[i] == pytest.approx(f * (1 - ramp) + f / 40 * ramp, rel=1e-13)
    assert inv[0] == 1.0                                   # fastest dim untouched (extrapolated)
    assert inv[31] == pytest.approx(10000.0 ** (-62 / 64) / 40, rel=1e-13)   # slowest fully interpolated
    # mscale = 0.1 * 1 * ln 40 + 1 = 1.368888; softmax scale = (128 + 64)^-0.5 * mscale^2
    assert yarn_mscale(40, 1.0) == pytest.approx(0.1 * math.log(40) + 1, rel=1e-15)
    assert yarn_mscale(40, 1.0) == pytest.approx(1.3688879, abs=1e-7)
    assert softmax_scale(192, DSV3) == pytest.approx(192 ** -0.5 * 1.3688879454113936 ** 2, rel=1e-14)
    assert rope_inv_freq(64, theta, DSV3)[1] == 1.0       # cos/sin amplitude mscale/mscale_all_dim = 1


def test_kimi_k2_yarn_by_hand():
    dim, theta = 64, 50000.0
    # r = 1 for both betas: 64 * ln(651.90) / (2 ln 50000) = 64 * 6.47989 / 21.63956 = 19.165
    # -> low = floor = 19, high = ceil = 20: a one-dimension ramp
    assert yarn_correction_range(1.0, 1.0, dim, theta, 4096) == (19, 20)
    inv = inv_freq_yarn(dim, theta, factor=32.0, beta_fast=1.0, beta_slow=1.0, original_max_position_embeddings=4096)
    for i in (0, 10, 19, 20, 25, 31):
        f = 50000.0 ** (-2 * i / 64)
        expect = f if i <= 19 else f / 32
        assert inv[i] == pytest.approx(expect, rel=1e-13)
    # mscale = 0.1 ln 32 + 1 = 1.3465736
    assert yarn_mscale(32.0, 1.0) == pytest.approx(1.3465736, abs=1e-7)
    assert softmax_scale(192, K2) == pytest.approx(192 ** -0.5 * (0.1 * math.log(32) + 1) ** 2, rel=1e-14)


def test_yarn_equal_bounds_use_the_reference_nudge():
    # when floor and ceil coincide (integer correction dim) the reference adds 0.001 to high
    from archsim.kernels.rope import yarn_ramp
    assert list(yarn_ramp(3, 3, 6)) == [0, 0, 0, 0, 1, 1]


def test_standard_linear_ntk_and_lambda():
    f = inv_freq_standard(8, 10000.0)
    assert f == pytest.approx([1, 10000 ** -0.25, 10000 ** -0.5, 10000 ** -0.75], rel=1e-15)
    assert inv_freq_linear(8, 10000.0, 4) == pytest.approx(f / 4, rel=1e-15)
    # NTK-aware: base' = 10000 * 4^(8/6); the slowest frequency becomes f_3 / 4 exactly:
    # base'^(-6/8) = 10000^(-6/8) * 4^(-1)
    ntk = inv_freq_ntk(8, 10000.0, 4)
    assert ntk[0] == 1.0 and ntk[3] == pytest.approx(f[3] / 4, rel=1e-13)
    # theta'_i = theta_i * lambda^(i/d) with d = 4 pairs: lambda = 16 -> factors 1, 2, 4, 8
    assert inv_freq_lambda(8, 10000.0, 16.0) == pytest.approx(f * [1, 2, 4, 8], rel=1e-14)
    assert list(decayed_positions(np.arange(6), 3, 0.5)) == [0, 1, 2, 3, 3.5, 4.0]
    with pytest.raises(ValueError):
        rope_inv_freq(8, 10000.0, {"type": "bogus", "factor": 2})


def test_rope_rotation_is_relative_and_counted():
    rng = np.random.default_rng(0)
    inv, amp = rope_inv_freq(16, 10000.0, DSV3)
    q, k = rng.standard_normal(16), rng.standard_normal(16)
    cos, sin = rope_tables(np.array([3, 10, 103, 110]), inv, amp)
    rq = apply_rope(np.stack([q, q, q, q]), cos, sin)
    rk = apply_rope(np.stack([k, k, k, k]), cos, sin)
    # <R_m q, R_n k> depends only on m - n: (10, 3) and (110, 103) give the same score
    assert rq[1] @ rk[0] == pytest.approx(rq[3] @ rk[2], rel=1e-12)
    assert np.linalg.norm(rq[2]) == pytest.approx(np.linalg.norm(q), rel=1e-13)
    c = Counter()
    x = rng.standard_normal((2, 4, 3, 16))  # [b, s, H, d]
    apply_rope(x, cos[:, None, :], sin[:, None, :], site=c.site("rope"))
    assert c.records[0].flops == 3 * 16 * (2 * 4 * 3)  # 3 d per vector


def test_llama3_scaling_by_hand():
    from archsim.kernels.rope import inv_freq_llama3
    # Llama 3.1: theta 500000, factor 8, low 1, high 4, original 8192; head dim 128.
    # wavelength_i = 2 pi / f_i; < 8192/4 = 2048 keep; > 8192/1 = 8192 divide by 8; between: blend.
    dim, theta = 128, 500000.0
    inv = inv_freq_llama3(dim, theta, factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
                          original_max_position_embeddings=8192)
    for i in range(64):
        f = theta ** (-2 * i / dim)
        wl = 2 * math.pi / f
        if wl < 2048:
            expect = f
        elif wl > 8192:
            expect = f / 8
        else:
            smooth = (8192 / wl - 1) / (4 - 1)
            expect = (1 - smooth) * f / 8 + smooth * f
        assert inv[i] == pytest.approx(expect, rel=1e-13)
    # i = 0 (wavelength 2 pi) kept; i = 63 (wavelength ~ 2 pi * 500000^(126/128) ~ 2.6e6) divided by 8
    assert inv[0] == 1.0 and inv[63] == pytest.approx(theta ** (-126 / 128) / 8, rel=1e-13)
    # some dims fall in the blended band: wavelength between 2048 and 8192
    assert any(2048 <= 2 * math.pi / theta ** (-2 * i / dim) <= 8192 for i in range(64))
