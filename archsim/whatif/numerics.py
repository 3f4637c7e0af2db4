"""Numerical effect of a chip's number formats on a small model: run the tiny model (``kernels/tiny.py``)
with its GEMMs in the format and compare the logits with the float64 run.

Scope: the linear layers, the absorbed per-head MLA products and the grouped expert GEMMs run in the
format (their operands quantized, their outputs as the format's hardware produces them); attention
scores/softmax, norms, activations and routing stay in float64, as they run on the electronic vector
units of every chip studied. Formats:
- ``fp8_block``: DeepSeek-V3 FP8: e4m3 weights with a scale per 128x128 block, activations per token per
  128 channels, higher-precision accumulation (float64 here);
- ``mxfp4``: OCP MXFP4 weights and activations, 32-element blocks along k with E8M0 scales;
- ``bf16`` / ``fp16`` (PIM units): operands and results rounded to the format;
- ``photonic``: operands converted by ``bits``-bit DACs (symmetric, per row); each dot product is summed
  optically in partial sums of ``dot_length`` products (one per wavelength), each read by an ADC of the
  same effective bits with Gaussian noise of ``noise_std`` x the partial sum's full scale
  (dot_length x max|x| x max|w|); partial sums accumulate digitally.
Metrics against float64: max |logit error|, mean KL(p_ref || p), top-1 agreement.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np

from archsim.whatif.formats import BF16, E2M1, E4M3, FP16, block_quantize, mx_quantize, round_minifloat, \
    uniform_quantize

FP8_BLOCK = 128
MX_BLOCK = 32


@dataclass(frozen=True, kw_only=True)
class Format:
    """A GEMM number format: ``kind`` in fp8_block, mxfp4, bf16, fp16, photonic, fp64 (reference)."""

    kind: str
    bits: float = 8.0
    noise_std: float = 0.0
    dot_length: int = 1
    seed: int = 0

    @property
    def label(self) -> str:
        if self.kind == "photonic":
            return f"photonic {self.bits:g}b noise {self.noise_std:g}"
        return self.kind


def photonic_format(hw, *, bits: float | None = None, seed: int = 0) -> Format:
    """The format of a chip's photonic engine (its effective bits, noise and wavelengths per dot)."""
    spec = next(e.photonic for e in hw.compute.values() if e.photonic is not None)
    return Format(kind="photonic", bits=spec.effective_bits if bits is None else bits, noise_std=spec.noise_std,
                  dot_length=spec.wavelengths, seed=seed)


class _Gemm:
    """y = x @ w.T (w [n, k]) in a format; ``x`` [..., k]."""

    def __init__(self, fmt: Format):
        self.fmt = fmt
        self.rng = np.random.default_rng(fmt.seed)

    def weight(self, w: np.ndarray) -> np.ndarray:
        f = self.fmt
        if f.kind == "fp8_block":
            return block_quantize(w, E4M3, (FP8_BLOCK, FP8_BLOCK))
        if f.kind == "mxfp4":
            return mx_quantize(w, E2M1, MX_BLOCK)
        if f.kind in ("bf16", "fp16"):
            return round_minifloat(w, BF16 if f.kind == "bf16" else FP16)
        if f.kind == "photonic":
            return uniform_quantize(w, f.bits, axis=-1)
        return w

    def act(self, x: np.ndarray) -> np.ndarray:
        f = self.fmt
        if f.kind == "fp8_block":
            *lead, k = x.shape
            return block_quantize(x.reshape(-1, k), E4M3, (1, FP8_BLOCK)).reshape(*lead, k)
        return self.weight(x)  # the other formats treat both operands alike (per row / per block along k)

    def __call__(self, x: np.ndarray, w: np.ndarray) -> np.ndarray:
        xq, wq = self.act(x), self.weight(w)
        f = self.fmt
        if f.kind != "photonic":
            y = xq @ wq.T
            return round_minifloat(y, BF16 if f.kind == "bf16" else FP16) if f.kind in ("bf16", "fp16") else y
        return self._optical(xq, wq)

    def _optical(self, x: np.ndarray, w: np.ndarray) -> np.ndarray:
        f = self.fmt
        *lead, k = x.shape
        xm = x.reshape(-1, k)
        L = max(1, f.dot_length)
        pad = -k % L
        xp = np.pad(xm, [(0, 0), (0, pad)]).reshape(xm.shape[0], -1, L)          # [m, c, L]
        wp = np.pad(w, [(0, 0), (0, pad)]).reshape(w.shape[0], -1, L)            # [n, c, L]
        partial = np.einsum("mcl,ncl->mnc", xp, wp)                               # [m, n, c]
        full = L * np.max(np.abs(xm), axis=1)[:, None, None] * np.max(np.abs(w), axis=1)[None, :, None]
        noisy = partial + self.rng.normal(size=partial.shape) * f.noise_std * full
        step = np.where(full > 0, full / (2.0 ** (f.bits - 1) - 1), 1.0)
        read = np.clip(np.rint(noisy / step) * step, -full, full)                 # ADC: effective bits
        return read.sum(axis=-1).reshape(*lead, w.shape[0])                       # digital accumulation


@contextlib.contextmanager
def gemms_in(fmt: Format) -> Iterator[None]:
    """Run the tiny model's GEMM kernels in ``fmt`` inside the block (counting sites still record)."""
    from archsim.kernels import gemm, gqa, mla, moe, mtp, tiny

    g = _Gemm(fmt)
    orig_linear, orig_per_head, orig_grouped = gemm.linear, gemm.per_head, moe._grouped

    def linear(x, w, *, bias=None, cached_rows=0, site=None):
        if site is not None:  # the original records the counts; its result is replaced
            orig_linear(x, w, bias=bias, cached_rows=cached_rows, site=site)
        y = g(x, w)
        return y if bias is None else y + bias  # the bias add stays digital

    def per_head(x, w, *, transpose=False, site=None):
        if site is not None:
            orig_per_head(x, w, transpose=transpose, site=site)
        wt = w if transpose else np.swapaxes(w, 1, 2)                              # [H, n, k]
        return np.stack([g(x[..., h, :], wt[h]) for h in range(w.shape[0])], axis=-2)

    def grouped(xs, w, used, site, bias=None):
        if site is not None:
            orig_grouped(xs, w, used, site, bias)
        return [g(x, w[e]) if bias is None else g(x, w[e]) + bias[e] for e, x in zip(used, xs)]

    modules = [(m, name) for m in (tiny, mla, moe, gqa, mtp) for name in ("linear", "per_head") if hasattr(m, name)]
    saved = [(m, name, getattr(m, name)) for m, name in modules]
    try:
        for m, name in modules:
            setattr(m, name, linear if name == "linear" else per_head)
        moe._grouped = grouped
        yield
    finally:
        for m, name, value in saved:
            setattr(m, name, value)
        moe._grouped = orig_grouped


@dataclass(frozen=True, kw_only=True)
class NumericsResult:
    """Logit error of one format against float64."""

    format: str
    max_logit_error: float
    kl_divergence: float
    top1_agreement: float


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def compare(ref: np.ndarray, got: np.ndarray, label: str) -> NumericsResult:
    """Max |Δlogit|, mean KL(ref || got) over positions, and top-1 agreement."""
    lp, lq = _log_softmax(ref), _log_softmax(got)
    kl = float(np.mean(np.sum(np.exp(lp) * (lp - lq), axis=-1)))
    top1 = float(np.mean(ref.argmax(axis=-1) == got.argmax(axis=-1)))
    return NumericsResult(format=label, max_logit_error=float(np.max(np.abs(ref - got))), kl_divergence=kl,
                          top1_agreement=top1)


def evaluate_formats(model_config, formats: list[Format], *, batch: int = 2, seq: int = 16,
                     seed: int = 0, runner: Callable | None = None) -> list[NumericsResult]:
    """Run the tiny model once in float64 and once per format on the same tokens; compare logits."""
    from archsim.kernels.tiny import TinyDeepSeek

    model = TinyDeepSeek(model_config, seed=seed)
    tokens = np.random.default_rng(seed).integers(0, model_config.vocab_size, (batch, seq))
    run = runner or (lambda m, t: m.forward(t)[0])
    ref = run(model, tokens)
    results = []
    for fmt in formats:
        with gemms_in(fmt):
            got = run(model, tokens)
        results.append(compare(ref, got, fmt.label))
    return results
