"""Collective communication costs (alpha-beta with message-size efficiency) on a node/fat-tree topology,
including MoE expert-parallel dispatch/combine the way DeepEP runs it.

Per message of m bytes on a link: ``t = latency_s + (m + half_bandwidth_bytes) / (bandwidth * fraction)``.
This is Hockney's model: the effective bandwidth ``bandwidth * fraction * m / (m + n_half)`` reaches half
of the achievable rate at ``m = n_half``. ``fraction`` is the link's ``achievable_fraction`` and ``n_half``
its optional ``half_bandwidth_bytes`` (0 means no small-message penalty): both are hardware fields.
All byte counts and times are per chip; chips in a group run in parallel.
"""
from __future__ import annotations

from dataclasses import dataclass
from math import ceil, comb, log2
from typing import Literal

from archsim.config.hardware import Hardware, Link
from archsim.cost.topology import Topology, topology_for
from archsim.dtypes import BITS_PER_BYTE, DType
from archsim.errors import ConfigError

CollectiveOp = Literal["all_reduce", "all_gather", "reduce_scatter", "all_to_all", "p2p"]
Algorithm = Literal["auto", "ring", "tree", "hierarchical", "direct", "one_shot"]
OPS = ("all_reduce", "all_gather", "reduce_scatter", "all_to_all", "p2p")
ALGORITHMS = ("auto", "ring", "tree", "hierarchical", "direct", "one_shot")


@dataclass(frozen=True, kw_only=True)
class CollectiveCost:
    """Time and traffic of one collective call, seen from one chip.

    ``latency_s`` is the sum of per-step latencies (the alpha part), ``transfer_s`` the bandwidth
    part; ``time_s`` = their sum (for hierarchical or two-fabric exchanges, the sum over the
    serial phases, each phase bound by its slower fabric). ``scale_up_bytes`` / ``scale_out_bytes``
    are the bytes this chip sends on each fabric.
    """

    op: str
    algorithm: str
    bytes: float
    group: int
    time_s: float
    latency_s: float
    transfer_s: float
    scale_up_bytes: float
    scale_out_bytes: float
    energy_j: float
    steps: int


def link_time(link: Link, nbytes: float) -> float:
    """Time to move one message of ``nbytes`` over ``link``, latency excluded (Hockney n_half form)."""
    if nbytes <= 0:
        return 0.0
    return (nbytes + link.half_bandwidth_bytes) / (link.bandwidth_bytes_per_s * link.achievable_fraction)


def effective_bandwidth(link: Link, nbytes: float) -> float:
    """Achieved bytes/s for messages of ``nbytes``: bandwidth * fraction * m / (m + n_half)."""
    return nbytes / link_time(link, nbytes)


def _energy(topo: Topology, up_bytes: float, out_bytes: float) -> float:
    return BITS_PER_BYTE * (up_bytes * topo.scale_up.energy_j_per_bit + out_bytes * topo.scale_out.energy_j_per_bit)


def _flat(op: str, algorithm: str, nbytes: float, p: int, link: Link) -> tuple[float, float, float, int]:
    """(latency_s, transfer_s, bytes sent per chip, steps) of a collective over one link class.

    ``nbytes`` is the full buffer per chip: the vector reduced (all-reduce, reduce-scatter input),
    gathered (all-gather output), exchanged (all-to-all: everything a chip holds) or sent (p2p).
    Ring (Thakur et al. 2005, Patarasuk & Yuan 2009): all-reduce 2(p-1) steps of m/p;
    all-gather / reduce-scatter p-1 steps of m/p. Tree = recursive halving/doubling:
    2*ceil(log2 p) steps moving 2(p-1)/p*m in total. All-to-all (pairwise): p-1 steps of m/p.
    """
    alpha = link.latency_s
    if op == "p2p":
        return alpha, link_time(link, nbytes), nbytes, 1
    if p == 1:
        return 0.0, 0.0, 0.0, 0
    chunk = nbytes / p
    if op == "all_reduce" and algorithm == "one_shot":
        # one kernel: a flag barrier with every peer, each chip reads the p - 1 peers' whole buffers over its links
        # and reduces them, a closing barrier (vLLM csrc/custom_all_reduce.cuh cross_device_reduce_1stage)
        sent = (p - 1) * nbytes
        return 2 * alpha, link_time(link, sent), sent, 2
    if op == "all_reduce" and algorithm == "tree":
        steps = 2 * ceil(log2(p))
        sent = 2 * (p - 1) / p * nbytes
        return steps * alpha, link_time(link, sent / steps) * steps, sent, steps
    steps = 2 * (p - 1) if op == "all_reduce" else p - 1
    return steps * alpha, steps * link_time(link, chunk), steps * chunk, steps


def price_collective(op: CollectiveOp, nbytes: float, group: int, hw: Hardware, *,
                     algorithm: Algorithm = "auto", topology: Topology | None = None,
                     stride: int = 1) -> CollectiveCost:
    """Cost of collective ``op`` on ``nbytes`` per chip over ``group`` chips of ``hw``, ``stride`` ranks apart
    (1: consecutive; a context- or data-parallel group sits ``tp`` ranks apart, since tensor parallelism takes
    the consecutive chips of a node).

    ``algorithm``: ``ring`` / ``tree`` / ``direct`` run flat over the slowest link the group spans;
    ``hierarchical`` runs the intra-node phase on the scale-up fabric and the inter-node phase on
    the scale-out rails in parallel (NCCL-style: reduce-scatter in node, all-reduce across nodes on
    1/per_node of the data, all-gather in node); ``one_shot`` is a serving stack's custom all-reduce of a small
    message inside one node (2 barrier latencies + the p - 1 peers' buffers read over the scale-up link; elsewhere
    ``auto``); ``auto`` picks the cheapest applicable one of ring, tree and hierarchical.
    """
    if op not in OPS:
        raise ConfigError(None, "collective.op", f"one of {', '.join(OPS)}", op)
    if algorithm not in ALGORITHMS:
        raise ConfigError(None, "collective.algorithm", f"one of {', '.join(ALGORITHMS)}", algorithm)
    if not nbytes >= 0 or nbytes == float("inf"):
        raise ConfigError(None, "collective.bytes", "a finite byte count >= 0", nbytes)
    if not isinstance(group, int) or isinstance(group, bool) or group < 1:
        raise ConfigError(None, "collective.group", "a positive whole number of chips", group)
    if not isinstance(stride, int) or isinstance(stride, bool) or stride < 1:
        raise ConfigError(None, "collective.stride", "a positive whole number of ranks", stride)
    topo = topology or topology_for(hw, (group - 1) * stride + 1)
    span = topo.span(group, stride)
    if op == "p2p":
        link = topo.scale_out if span.crosses_nodes else topo.scale_up
        return _make(op, "direct", nbytes, group, *_flat(op, "direct", nbytes, 2, link), link is topo.scale_out, topo)
    if algorithm == "one_shot" and (op != "all_reduce" or span.crosses_nodes):
        algorithm = "auto"  # a peer-to-peer kernel over one node's fabric, for an all-reduce only
    if algorithm == "auto":
        candidates = ["ring", "tree"] if op == "all_reduce" else ["ring"]
        if span.crosses_nodes and span.per_node > 1:
            candidates.append("hierarchical")
        costs = [price_collective(op, nbytes, group, hw, algorithm=a, topology=topo, stride=stride)
                 for a in candidates]
        return min(costs, key=lambda c: c.time_s)
    if algorithm == "hierarchical" and span.crosses_nodes:
        return _hierarchical(op, nbytes, span.per_node, span.nodes, topo)
    link = topo.scale_out if span.crosses_nodes else topo.scale_up
    flat_alg = "ring" if algorithm in ("hierarchical", "direct") else algorithm
    return _make(op, algorithm, nbytes, group, *_flat(op, flat_alg, nbytes, group, link), span.crosses_nodes, topo)


def _make(op, algorithm, nbytes, group, lat, xfer, sent, steps, on_scale_out, topo) -> CollectiveCost:
    up, out = (0.0, sent) if on_scale_out else (sent, 0.0)
    return CollectiveCost(op=op, algorithm=algorithm, bytes=nbytes, group=group, time_s=lat + xfer,
                          latency_s=lat, transfer_s=xfer, scale_up_bytes=up, scale_out_bytes=out,
                          energy_j=_energy(topo, up, out), steps=steps)


def _hierarchical(op: str, nbytes: float, per_node: int, nodes: int, topo: Topology) -> CollectiveCost:
    """Two-level collective: the scale-up phase(s) inside each node and the scale-out phase across nodes,
    where each of the per_node rails carries 1/per_node of the data in parallel."""
    up, out = topo.scale_up, topo.scale_out
    if op == "all_reduce":
        phases = [("reduce_scatter", nbytes, per_node, up), ("all_reduce", nbytes / per_node, nodes, out),
                  ("all_gather", nbytes, per_node, up)]
    elif op == "all_to_all":
        # Cross-node share goes straight out on the rails (rail-aligned after one NVLink hop, which
        # overlaps); the in-node share uses the scale-up fabric at the same time.
        lat_o, t_o, s_o, st_o = _flat("all_to_all", "ring", nbytes * (nodes - 1) / nodes, nodes, out)
        lat_u, t_u, s_u, st_u = _flat("all_to_all", "ring", nbytes / nodes, per_node, up)
        lat, xfer = max(lat_o, lat_u), max(t_o, t_u)
        return CollectiveCost(op=op, algorithm="hierarchical", bytes=nbytes, group=per_node * nodes,
                              time_s=lat + xfer, latency_s=lat, transfer_s=xfer, scale_up_bytes=s_u,
                              scale_out_bytes=s_o, energy_j=_energy(topo, s_u, s_o), steps=max(st_o, st_u))
    else:  # all_gather / reduce_scatter: node-local phase on the full buffer, rails on 1/per_node
        phases = [(op, nbytes, per_node, up), (op, nbytes / per_node, nodes, out)]
    lat = xfer = up_b = out_b = 0.0
    steps = 0
    for sub_op, b, p, link in phases:
        l_s, t_s, sent, st = _flat(sub_op, "ring", b, p, link)
        lat, xfer, steps = lat + l_s, xfer + t_s, steps + st
        if link is out:
            out_b += sent
        else:
            up_b += sent
    return CollectiveCost(op=op, algorithm="hierarchical", bytes=nbytes, group=per_node * nodes, time_s=lat + xfer,
                          latency_s=lat, transfer_s=xfer, scale_up_bytes=up_b, scale_out_bytes=out_b,
                          energy_j=_energy(topo, up_b, out_b), steps=steps)


# --- MoE expert-parallel dispatch / combine -----------------------------------------------------

EpMode = Literal["throughput", "low_latency"]


@dataclass(frozen=True, kw_only=True)
class EpExchangeCost:
    """One MoE layer's expert-parallel exchange for one chip: dispatch (tokens to experts) and combine
    (expert outputs back). ``dest_nodes_per_token`` / ``dest_chips_per_token`` are the expectations used."""

    mode: str
    dispatch: CollectiveCost
    combine: CollectiveCost
    dest_nodes_per_token: float
    dest_chips_per_token: float

    @property
    def time_s(self) -> float:
        return self.dispatch.time_s + self.combine.time_s


def expected_nodes_hit(*, topk: int, n_experts: int, nodes: int, n_group: int = 1, topk_group: int = 1) -> float:
    """Expected distinct nodes holding at least one of a token's ``topk`` experts.

    Experts are spread evenly over ``nodes``; the router first picks ``topk_group`` of ``n_group``
    expert groups (DeepSeek-V3 node-limited routing; n_group = 1 means no limit), then ``topk``
    distinct experts among the selected groups' experts. Both choices are taken as uniform (balanced
    load, the aim of DeepSeek's bias-based balancing). By symmetry the expectation is
    ``nodes * P(node 0 hit)``; P follows from the hypergeometric law
    ``1 - C(S - e, k) / C(S, k)`` where S experts are selectable and e of them sit on node 0.
    """
    _check_routing(topk, n_experts, nodes, n_group, topk_group)
    if nodes == 1:
        return 1.0
    per_group = n_experts // n_group
    selectable = topk_group * per_group
    if nodes >= n_group:
        # a group spans nodes / n_group nodes; node 0 is hit only if its group is selected
        on_node = n_experts // nodes
        p_hit = (topk_group / n_group) * _p_any(selectable, on_node, topk)
    else:
        # each node holds g = n_group / nodes groups; h of them may be selected (hypergeometric)
        g = n_group // nodes
        p_hit = 0.0
        for h in range(0, min(g, topk_group) + 1):
            p_h = comb(g, h) * comb(n_group - g, topk_group - h) / comb(n_group, topk_group)
            p_hit += p_h * _p_any(selectable, h * per_group, topk)
    return nodes * p_hit


def _p_any(pool: int, marked: int, draws: int) -> float:
    """P(at least one marked item among ``draws`` drawn without replacement from ``pool``)."""
    if marked <= 0:
        return 0.0
    return 1.0 - comb(pool - marked, draws) / comb(pool, draws)


def _check_routing(topk, n_experts, nodes, n_group, topk_group) -> None:
    if n_group < 1 or n_experts % n_group:
        raise ConfigError(None, "n_group", f"a divisor of n_routed_experts ({n_experts})", n_group)
    if not 1 <= topk_group <= n_group:
        raise ConfigError(None, "topk_group", f"between 1 and n_group ({n_group})", topk_group)
    if n_experts % nodes or (nodes < n_group and n_group % nodes) or (nodes >= n_group and nodes % n_group):
        raise ConfigError(None, "ep", f"a node count that divides the {n_experts} experts and aligns with "
                          f"the {n_group} expert groups", nodes)
    if not 1 <= topk <= topk_group * (n_experts // n_group):
        raise ConfigError(None, "num_experts_per_tok", "at most the experts of the selectable groups", topk)


def _nodes_hit_or_uniform(topk: int, n_experts: int, nodes: int, n_group: int, topk_group: int) -> float:
    """``expected_nodes_hit`` when experts and groups align with the nodes; otherwise (e.g. redundant
    experts making the expert count uneven) k independent uniform picks, capped by the group limit."""
    try:
        return expected_nodes_hit(topk=topk, n_experts=n_experts, nodes=nodes, n_group=n_group, topk_group=topk_group)
    except ConfigError:
        uniform = nodes * (1 - (1 - 1 / nodes) ** topk)
        return min(uniform, float(topk_group * max(1, nodes // n_group))) if n_group > 1 else uniform


def token_bytes(hidden: int, dtype: DType) -> float:
    """Bytes of one token's hidden vector in ``dtype``, block scales included (a 1 x hidden row:
    FP8 with 128-wide blocks carries hidden/128 float32 scales, as DeepEP sends them)."""
    return dtype.storage_bytes((1, hidden))


def price_ep_exchange(*, tokens: float, hidden: int, topk: int, n_experts: int, ep: int, hw: Hardware,
                      dispatch_dtype: DType, combine_dtype: DType, n_group: int = 1, topk_group: int = 1,
                      mode: EpMode = "throughput", remote_nodes_per_token: float | None = None,
                      topology: Topology | None = None) -> EpExchangeCost:
    """EP dispatch + combine for ``tokens`` tokens held by one chip, experts spread over ``ep`` chips.

    ``throughput`` (DeepEP normal kernels, prefill and training): a token crosses the network once per
    distinct destination *node* (to the chip on the same rail), then fans out over the scale-up fabric
    to the destination chips; the RDMA and NVLink legs are pipelined, so each phase takes the slower leg.
    ``low_latency`` (DeepEP low-latency kernels, small decode batches): every (token, expert) copy goes
    straight to its chip, off-node copies over the network and on-node ones over the scale-up fabric,
    plus a fixed per-call cost ``hw.node.ep_low_latency_call_s``; the call gets slower with EP size
    because a larger share of copies leaves the node.
    ``remote_nodes_per_token`` overrides the routing expectation of off-node destinations per token in
    throughput mode (e.g. to reproduce a paper's setup where every expert sits on another node).
    Combine moves the same copies back in ``combine_dtype``.
    """
    if mode not in ("throughput", "low_latency"):
        raise ConfigError(None, "ep.mode", "throughput or low_latency", mode)
    if not tokens >= 0:
        raise ConfigError(None, "tokens", "a token count >= 0", tokens)
    topo = topology or topology_for(hw, ep)
    span = topo.span(ep)
    dest_nodes = _nodes_hit_or_uniform(topk, n_experts, span.nodes, n_group, topk_group)
    # a node is remote with probability (nodes - 1) / nodes by symmetry
    remote_nodes = dest_nodes * (span.nodes - 1) / span.nodes if remote_nodes_per_token is None \
        else float(remote_nodes_per_token)
    dest_chips = min(_nodes_hit_or_uniform(topk, n_experts, ep, 1, 1), float(topk))
    phases = []
    for name, dtype in (("dispatch", dispatch_dtype), ("combine", combine_dtype)):
        per_copy = token_bytes(hidden, dtype)
        if mode == "throughput":
            out_b = tokens * per_copy * remote_nodes
            # on each destination node the landing chip forwards to the other destination chips there
            up_b = tokens * per_copy * dest_chips * (1 - 1 / span.per_node) if span.per_node > 1 else 0.0
            base = 0.0
        else:
            local_share = span.per_node / ep
            out_b = tokens * per_copy * topk * (1 - local_share)
            up_b = tokens * per_copy * topk * local_share
            base = hw.node.ep_low_latency_call_s
        t_out = topo.scale_out.latency_s + link_time(topo.scale_out, out_b) if out_b > 0 else 0.0
        t_up = topo.scale_up.latency_s + link_time(topo.scale_up, up_b) if up_b > 0 else 0.0
        xfer = max(t_out, t_up)
        phases.append(CollectiveCost(op=f"ep_{name}", algorithm=mode, bytes=out_b + up_b, group=ep,
                                     time_s=base + xfer, latency_s=base, transfer_s=xfer, scale_up_bytes=up_b,
                                     scale_out_bytes=out_b, energy_j=_energy(topo, up_b, out_b), steps=1))
    return EpExchangeCost(mode=mode, dispatch=phases[0], combine=phases[1], dest_nodes_per_token=dest_nodes,
                          dest_chips_per_token=dest_chips)
