"""Numerics of formats on the tiny model: exact reference, ordering of errors, counts unchanged."""
from pathlib import Path

import numpy as np
import pytest

from archsim.config.hardware import load_hardware
from archsim.config.workload import load_workload
from archsim.graph.small import small_variant
from archsim.kernels.counting import Counter
from archsim.kernels.tiny import TinyDeepSeek
from archsim.whatif.numerics import Format, evaluate_formats, gemms_in, photonic_format

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tiny_k2():
    return small_variant(load_workload(ROOT / "workloads" / "kimi_k2.yaml").model)


def test_float64_format_is_exact(tiny_k2):
    (r,) = evaluate_formats(tiny_k2, [Format(kind="fp64")])
    assert r.max_logit_error < 1e-12 and r.top1_agreement == 1.0


def test_photonic_error_grows_as_precision_falls(tiny_k2):
    for noise in (0.0, 0.0028):
        res = evaluate_formats(tiny_k2, [Format(kind="photonic", bits=b, noise_std=noise, dot_length=12)
                                         for b in (12, 8, 6, 4)])
        kl = [r.kl_divergence for r in res]
        assert kl == sorted(kl), (noise, kl)
        assert res[0].top1_agreement >= res[-1].top1_agreement


def test_wider_formats_are_more_accurate(tiny_k2):
    fp16, bf16, fp8, fp4 = evaluate_formats(tiny_k2, [Format(kind=k) for k in ("fp16", "bf16", "fp8_block", "mxfp4")])
    assert fp16.kl_divergence < bf16.kl_divergence < fp8.kl_divergence < fp4.kl_divergence
    assert fp16.top1_agreement >= fp4.top1_agreement


def test_chip_photonic_format_and_counts_unchanged(tiny_k2):
    fmt = photonic_format(load_hardware(ROOT / "hardware" / "photonic_dota_l.yaml"))
    # the analog result carries min(8-bit converters, the ADC's 6.5 ENOB) bits (config/derive_photonic.py)
    assert (fmt.bits, fmt.dot_length, fmt.noise_std) == (6.5, 12, 0.0028)
    model = TinyDeepSeek(tiny_k2, seed=0)
    tokens = np.random.default_rng(0).integers(0, tiny_k2.vocab_size, (1, 8))
    plain, quant = Counter(), Counter()
    model.forward(tokens, counter=plain)
    with gemms_in(fmt):
        model.forward(tokens, counter=quant)
    assert plain.total_flops == quant.total_flops > 0
