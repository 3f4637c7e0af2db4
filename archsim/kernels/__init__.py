"""Numpy reference kernels (float64 / float32) that count what they execute.

Families: norm (RMSNorm), activations (SiLU, SwiGLU, residual add), gemm (dense and per-head),
tiled_gemm (output-stationary tiles, banded L2 raster, counted SMEM and HBM bytes),
rope (standard, linear, NTK, YaRN, llama3, lambda-scaled), attention (naive MHA/GQA/MQA), flash
(tiled, online softmax, HBM<->SRAM bytes), mla (expanded / absorbed), gqa, router and moe
(DeepSeek group-limited top-k per topk_method, softmax + Switch aux loss, aux-loss-free bias update,
grouped experts), mtp. ``counting.Counter`` collects what they record; ``tiny`` is a seeded tiny
model of the DeepSeek-V3 / Kimi K2 / dense GQA families and ``nodes`` runs it one graph node at a
time. Kernels depend only on numpy and the op descriptions (archsim.graph.op, archsim.dtypes).
"""
