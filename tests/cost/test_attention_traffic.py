"""Attention traffic models against hand counts (docs/counting.md "Attention traffic model")."""
from pathlib import Path

from archsim.config.workload import load_workload
from archsim.cost.attention_traffic import flash_hbm_bytes, flash_tiles, naive_hbm_bytes
from archsim.cost.geometry import Geometry
from archsim.cost.traffic import attention_traffic
from archsim.graph.build import build_prefill
from archsim.graph.precision import precision_from_names


def test_flash_tiles_follow_algorithm_1():
    # B_c = floor(M / (4*d*e)) = floor(32 / (4*2*2)) = 2; B_r = min(B_c, d) = 2
    assert flash_tiles(32, 2, 2, 2) == (2, 2)
    # H100 228 KiB, d = max(192, 128) = 192, e = 2: B_c = floor(233472 / 1536) = 152, B_r = min(152, 192)
    assert flash_tiles(228 * 1024, 192, 128, 2) == (152, 152)
    # tiny SRAM never gives a zero tile
    assert flash_tiles(1, 64, 64, 2) == (1, 1)


SMALL = dict(batch=1, q_len=4, kv_len=4, heads_q=1, heads_kv=1, d_qk=2, d_v=2, elem_bytes=2, sram_bytes=32)


def test_flash_non_causal_by_hand():
    # Q = 4*1*2*2 = 16, O = 16; two query tiles of 2 rows each read all 4 keys: 2 * 4*(2+2)*2 = 64
    assert flash_hbm_bytes(**SMALL, causal=False) == 16 + 16 + 64


def test_flash_causal_by_hand():
    # tile 0 (positions 0,1): p_max = 1 -> key tile 0 only (tile 1 starts at 2 > 1): 2 keys -> 2*4*2 = 16
    # tile 1 (positions 2,3): p_max = 3 -> both key tiles: 4 keys -> 32
    assert flash_hbm_bytes(**SMALL, causal=True) == 16 + 16 + 16 + 32


def test_flash_gqa_packing_by_hand():
    # g = 2 query heads per kv head, q_len = 2 at absolute positions 2, 3 (2 cached keys before them).
    # rows (position, head): 4 rows, B_r = 2 -> tile 0 = position 2 (p_max 2), tile 1 = position 3 (p_max 3);
    # B_c = 2: key tiles start at 0 and 2, both <= 2, so each query tile reads all 4 keys.
    # Q = 2*2*2*2 = 16, O = 16, K/V = 2 tiles * 4 keys * (2+2) * 2 = 64
    args = dict(SMALL, q_len=2, heads_q=2)
    assert flash_hbm_bytes(**args, causal=True) == 16 + 16 + 64
    # batch and kv heads multiply
    assert flash_hbm_bytes(**dict(args, batch=3, heads_q=4, heads_kv=2), causal=True) == 3 * 2 * 96


def test_naive_by_hand():
    # (n_q*d_qk + n_kv*d_qk + n_kv*d_v + 4*n_q*n_kv + n_q*d_v) * e = (8 + 8 + 8 + 64 + 8) * 2
    assert naive_hbm_bytes(**SMALL) == 192
    assert naive_hbm_bytes(**dict(SMALL, heads_q=4, heads_kv=1), causal=True) == 4 * 192


def test_naive_grows_quadratically_flash_does_not_write_scores():
    args = dict(batch=1, heads_q=8, heads_kv=8, d_qk=128, d_v=128, elem_bytes=2, sram_bytes=228 * 1024)
    n = 4096
    naive_1 = naive_hbm_bytes(q_len=n, kv_len=n, **args)
    naive_2 = naive_hbm_bytes(q_len=2 * n, kv_len=2 * n, **args)
    # the 4*n^2 score term dominates: doubling N nearly quadruples the bytes
    assert naive_2 / naive_1 > 3.9
    flash_1 = flash_hbm_bytes(q_len=n, kv_len=n, causal=True, **args)
    # flash never materialises S: its bytes are below the 4*n^2*e score traffic alone
    assert flash_1 < 8 * 4 * n * n * 2
    assert flash_1 < naive_1


def test_shared_kv_reads_each_key_row_once_by_hand():
    # MLA absorbed: V is the first d_v columns of K. d = d_qk = 2 -> B_c = floor(32 / (4*2*2)) = 2, B_r = 2.
    # d_v = 1. Non-causal, 4 query rows in two tiles, each reads all 4 keys of width d_qk only:
    # Q = 4*2*2 = 16, O = 4*1*2 = 8, keys = 2 tiles * 4 keys * 2 * 2 = 32 (separate K and V would add 2*4*1*2 = 16)
    args = dict(SMALL, d_v=1)
    assert flash_hbm_bytes(**args, causal=False, shared_kv=True) == 16 + 8 + 32
    assert flash_hbm_bytes(**args, causal=False) == 16 + 8 + 32 + 16
    assert flash_tiles(32, 2, 1, 2, shared_kv=True) == (2, 2)


def _gqa_prefill_attention(prompt: int):
    """Layer 0's attention of a one-sequence Llama-3.1-405B prefill (128 query heads over 8 KV heads of 128)."""
    model = load_workload(Path(__file__).resolve().parents[2] / "workloads/llama3_405b.yaml").model
    graph = build_prefill(model, batch=1, prompt_len=prompt, precision=precision_from_names("bf16"))
    return next(graph.nodes[n]["op"] for n in graph.nodes if graph.nodes[n]["op"].kind == "attention")


def test_flash_kv_in_l2_moves_compulsory_bytes_else_every_reread(h100):
    """One KV head's K and V: kv_len x (128 + 128) x 2 B. At 4,096 tokens (2 MiB) they stay in the H100's 50 MB
    L2, so HBM sees Q, K, V and O once (the op's operand bytes); at 131,072 tokens (64 MiB) they do not, and HBM
    sees every query tile's re-read (flash_hbm_bytes)."""
    geom = Geometry.of(h100)
    short, long_ = _gqa_prefill_attention(4096), _gqa_prefill_attention(131072)
    a = short.attrs
    assert a["kv_len"] * (a["d_qk"] + a["d_v"]) * 2 <= geom.l2_bytes
    assert attention_traffic(short, geom, "flash").hbm == short.bytes
    # Q, K, V and O once: 4096 x (128 x 128 + 2 x 8 x 128 + 128 x 128) x 2 B
    assert short.bytes == 4096 * (128 * 128 + 2 * 8 * 128 + 128 * 128) * 2
    a = long_.attrs
    assert a["kv_len"] * (a["d_qk"] + a["d_v"]) * 2 > geom.l2_bytes
    rereads = flash_hbm_bytes(batch=1, q_len=131072, kv_len=131072, heads_q=128, heads_kv=8, d_qk=128, d_v=128,
                              elem_bytes=2, sram_bytes=geom.sram_per_sm_bytes, causal=True)
    assert attention_traffic(long_, geom, "flash").hbm == rereads
    assert rereads > 10 * long_.bytes
